/**
 * The governance loop on the real pipeline and PostgreSQL: an unmapped local lab code is stored
 * and flagged, the worklist counts it; a proposal is dry-run, approved (audited), and reprocess
 * re-derives exactly the affected records; import/export, history and diff; coverage.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simOru, simPatient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { diffVersions, exportConceptMaps, importConceptMaps, mapHistory, syncTerminology } from '../hub/terminology/versions';
import { approve, listProposals, propose, reject, retire } from '../hub/terminology/workflow';
import { impactOfProposal } from '../hub/terminology/impact';
import { createReprocessJob, getReprocessJob, reprocessProposal, resumeStaleReprocessJobs, runReprocess } from '../hub/terminology/reprocess';
import { coverage, worklist } from '../hub/terminology/worklist';
import { LOINC, UNMAPPED_SOURCE_URL } from '../mappings/terminology/systems';
import { startTestHub, waitFor, type TestHub } from './support/hub';
import { sendToWorker } from './support/results';

let hub: TestHub;
let worker: PipelineWorker;
const LOCAL = 'urn:yilian:east:L';

beforeAll(async () => {
  hub = await startTestHub('mapping');
  await syncTerminology(hub.runtime.db);
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { reconcile: false });
  await worker.start();
});

afterAll(async () => {
  await worker.close();
  await hub.close();
});

const send = (text: string) => sendToWorker(hub, 'east', text);

const observationsOf = async (code: string) =>
  (
    await hub.runtime.db.query<{ id: string; version: number; raw_id: number; content: any; mapping_versions: string[] }>(
      `SELECT id, version, raw_id, content, mapping_versions FROM resource WHERE resource_type = 'Observation' AND content->'code'->'coding'->0->>'code' = $1 ORDER BY id`,
      [code],
    )
  ).rows;

test('unmapped local code: stored and flagged, counted; proposal dry-run, approval (audited), reprocess of exactly the affected records', async () => {
  const results = [
    { code: 'HB01', name: '血红蛋白', value: '13.5', unit: 'g/dL', range: '11.5-15.0' },
    { code: 'K01', name: '钾', value: '4.1', unit: 'mmol/L', range: '3.5-5.3' },
  ];
  const raw1 = await send(simOru({ controlId: 'MAP-1', patient: simPatient(1, 'M') }, results));
  const raw2 = await send(simOru({ controlId: 'MAP-2', patient: simPatient(2, 'M') }, results));
  await send(simOru({ controlId: 'MAP-3', patient: simPatient(3, 'M') }, [results[1]!]));
  expect((await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = ANY($1::bigint[])`, [[raw1, raw2]])).rows.map((r) => r.status)).toEqual(['processed', 'processed']);

  const hb = await observationsOf('HB01');
  expect(hb).toHaveLength(2);
  for (const o of hb) {
    expect(o.content.code.coding).toHaveLength(1); // nothing added
    expect(o.content.valueQuantity).toEqual({ value: 13.5, unit: 'g/dL' });
    expect(o.content.meta.tag).toContainEqual(expect.objectContaining({ code: 'unmapped' }));
    expect(o.content.meta.extension).toContainEqual({ url: UNMAPPED_SOURCE_URL, valueCoding: { system: LOCAL, code: 'HB01', display: '血红蛋白' } });
  }
  let list = (await worklist(hub.runtime.db, { member: 'east' })) as any[];
  expect(list.find((w) => w.code === 'HB01')).toMatchObject({ member: 'east', system: LOCAL, display: '血红蛋白', count: 2, example_raw_id: raw2 });
  expect(list.find((w) => w.code === 'K01')).toMatchObject({ count: 3 });

  // a replayed message adds no occurrence (idempotent counting)
  await hub.runtime.db.query(`UPDATE raw_message SET status = 'queued' WHERE id = $1`, [raw1]);
  await hub.runtime.queues.enqueue([{ rawId: raw1, patientKey: null }], '-test-replay');
  await waitFor(async () => (await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1`, [raw1])).rows[0]!.status !== 'queued', 30_000, 'replay');
  list = (await worklist(hub.runtime.db, { member: 'east' })) as any[];
  expect(list.find((w) => w.code === 'HB01').count).toBe(2);

  // a wrong proposal is rejected; the right one is dry-run, approved, reprocessed
  const wrong = await propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: 'HB01', targetSystem: LOINC, targetCode: '2345-7', equivalence: 'equivalent' }, 'li.lab');
  await reject(hub.runtime.db, wrong.id, 'wang.committee', 'glucose, not haemoglobin');
  await expect(approve(hub.runtime.db, wrong.id, 'wang.committee')).rejects.toThrow(/rejected/);
  await expect(propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: 'HB01', targetSystem: LOINC, targetCode: '0000-0', equivalence: 'equivalent' }, 'li.lab')).rejects.toThrow(/LOINC subset/);

  const proposal = await propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: 'HB01', sourceDisplay: '血红蛋白', targetSystem: LOINC, targetCode: '718-7', equivalence: 'equivalent', comment: 'LIS manual: HB01 is whole-blood haemoglobin' }, 'li.lab');
  expect(proposal.state).toBe('proposed');
  const impact = await impactOfProposal(hub.runtime.db, proposal.id, 'wang.committee', 5);
  expect(impact).toMatchObject({ affected: 2, wouldChange: 2, byResourceType: { Observation: 2 } });
  const changes = impact.sample[0]!.changes;
  expect(changes).toContainEqual({ path: 'code.coding[1]', after: expect.objectContaining({ system: LOINC, code: '718-7' }) });
  expect(changes).toContainEqual(expect.objectContaining({ path: 'meta.extension[1].valueCanonical', after: 'https://yilian.example/fhir/ConceptMap/local-east-L|1' }));
  expect(changes).toContainEqual({ path: 'valueQuantity.value', before: 13.5, after: 135 });
  // the dry run wrote nothing
  expect((await observationsOf('HB01')).map((o) => o.content.code.coding.length)).toEqual([1, 1]);

  const approved = await approve(hub.runtime.db, proposal.id, 'wang.committee', 'checked against the LIS manual');
  expect(approved.version).toBe(1);
  expect(approved.proposal.state).toBe('approved');
  const [entry] = (await listProposals(hub.runtime.db)).filter((p) => p.id === proposal.id) as any[];
  expect(entry.steps.map((s: any) => [s.action, s.actor, s.comment])).toEqual([
    ['propose', 'li.lab', 'LIS manual: HB01 is whole-blood haemoglobin'],
    ['approve', 'wang.committee', 'checked against the LIS manual'],
  ]);
  expect(((await worklist(hub.runtime.db, { member: 'east', state: 'resolved' })) as any[]).map((w) => w.code)).toEqual(['HB01']);

  const before = await hub.runtime.db.query<{ resource_type: string; id: string; version: number; content: unknown }>(`SELECT resource_type, id, version, content FROM resource ORDER BY 1, 2`);
  const job = await reprocessProposal(hub.runtime.db, proposal.id, 'wang.committee');
  expect(job).toMatchObject({ state: 'running', total: 2, done: 0 });
  // stopped after its first batch (a crash, a restart): the job keeps its place
  await expect(
    runReprocess(hub.runtime.db, job.id, {
      batchSize: 1,
      onProgress: () => {
        throw new Error('worker stopped');
      },
    }),
  ).rejects.toThrow('worker stopped');
  expect(await getReprocessJob(hub.runtime.db, job.id)).toMatchObject({ state: 'failed', done: 1, changed: 1, error: 'worker stopped' });
  const progress: number[] = [];
  const finished = await runReprocess(hub.runtime.db, job.id, { batchSize: 1, onProgress: (j) => progress.push(j.done) });
  expect(finished).toMatchObject({ state: 'done', total: 2, done: 2, changed: 2 });
  expect(progress).toEqual([2]);
  const after = await hub.runtime.db.query<{ resource_type: string; id: string; version: number; content: unknown }>(`SELECT resource_type, id, version, content FROM resource ORDER BY 1, 2`);
  const changed = after.rows.filter((r, i) => JSON.stringify(r.content) !== JSON.stringify(before.rows[i]!.content)).map((r) => `${r.resource_type}/${r.id}`);
  // exactly the affected records, and the Provenance of each message they came from
  const provenances = await hub.runtime.db.query<{ id: string; raw_id: number; content: any; mapping_versions: string[] }>(
    `SELECT id, raw_id, content, mapping_versions FROM resource WHERE resource_type = 'Provenance' AND raw_id = ANY($1::bigint[]) ORDER BY id`,
    [[raw1, raw2]],
  );
  expect(provenances.rows).toHaveLength(2);
  expect(changed.sort()).toEqual([...hb.map((o) => `Observation/${o.id}`), ...provenances.rows.map((p) => `Provenance/${p.id}`)].sort());
  const derivedWith = ['https://yilian.example/fhir/ConceptMap/local-east-L|1', 'https://yilian.example/fhir/ConceptMap/loinc-canonical-units|1'];
  for (const p of provenances.rows) {
    expect(p.content.entity.filter((e: any) => e.role === 'derivation').map((e: any) => e.what.identifier.value)).toEqual(derivedWith);
    expect(p.content.entity[0]).toMatchObject({ role: 'source' });
    expect(p.mapping_versions).toEqual(derivedWith);
    // every row of the message says the same, as the merge would have written it
    const rows = await hub.runtime.db.query<{ mapping_versions: string[] }>(`SELECT mapping_versions FROM resource WHERE raw_id = $1`, [p.raw_id]);
    expect(new Set(rows.rows.map((r) => r.mapping_versions.join(' ')))).toEqual(new Set([derivedWith.join(' ')]));
  }
  for (const o of await observationsOf('HB01')) {
    expect(o.content.code.coding[1]).toMatchObject({ system: LOINC, code: '718-7' });
    expect(o.content.valueQuantity).toMatchObject({ value: 135, code: 'g/L' });
    expect(o.content.meta.tag ?? []).not.toContainEqual(expect.objectContaining({ code: 'unmapped' }));
    expect(o.mapping_versions).toContain('https://yilian.example/fhir/ConceptMap/local-east-L|1');
    expect(o.version).toBe(hb.find((x) => x.id === o.id)!.version + 1);
  }
  // running it again changes nothing (idempotent, resumable)
  expect(await runReprocess(hub.runtime.db, job.id)).toMatchObject({ state: 'done', changed: 2, runner: null });
  const again = await createReprocessJob(hub.runtime.db, [{ system: LOCAL, code: 'HB01' }], 'wang.committee', 'again');
  expect(await runReprocess(hub.runtime.db, again.id)).toMatchObject({ state: 'done', total: 2, done: 2, changed: 0 });
  const unchanged = await hub.runtime.db.query<{ content: unknown }>(`SELECT content FROM resource ORDER BY resource_type, id`);
  expect(unchanged.rows.map((r) => r.content)).toEqual(after.rows.map((r) => r.content));
  // a new message with the code is mapped in the pipeline now
  await send(simOru({ controlId: 'MAP-4', patient: simPatient(4, 'M') }, [results[0]!]));
  expect((await observationsOf('HB01')).filter((o) => o.content.code.coding.length === 2)).toHaveLength(3);

  // history, diff, retire
  const url = 'https://yilian.example/fhir/ConceptMap/local-east-L';
  const retired = await retire(hub.runtime.db, proposal.id, 'wang.committee', 'LIS replaced');
  expect(retired.version).toBe(2);
  const history = await mapHistory(hub.runtime.db, url);
  expect(history.versions.map((v) => [v.version, v.status, v.origin, v.created_by])).toEqual([
    [1, 'superseded', 'proposal', 'wang.committee'],
    [2, 'active', 'retirement', 'wang.committee'],
  ]);
  expect(await diffVersions(hub.runtime.db, url, 1, 2)).toEqual([expect.objectContaining({ code: 'HB01', change: 'removed' })]);

  // coverage: per member/channel/system, occurrences and distinct codes
  const report = await coverage(hub.runtime.db, { member: 'east' });
  const local = report.rows.find((r) => r.system === LOCAL && r.channel === 'lis')!;
  // HB01 ×2 stored unmapped and then reprocessed (mapped now: coverage follows the stored records, as
  // the worklist does), HB01 ×1 stored mapped; K01 ×3 and the OBR panel code CBC ×4 unmapped. The
  // retirement is not reprocessed yet, so HB01's records (and its counts) are still mapped.
  expect(local).toMatchObject({ occurrences: 10, mappedOccurrences: 3, distinctCodes: 3, mappedCodes: 1 });
  expect(report.trend).toHaveLength(1);
  // the trend per member, channel and system: today's line of the local system carries the same counts
  expect(report.trendBy.filter((t) => t.system === LOCAL && t.channel === 'lis')).toEqual([expect.objectContaining({ member: 'east', occurrences: 10, mappedOccurrences: 3, occurrencePct: 30 })]);
});

test('import and export ConceptMap files: approved versions recorded with who imported them', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-maps-'));
  const files = await exportConceptMaps(hub.runtime.db, dir);
  expect(files.map((f) => path.basename(f))).toEqual(expect.arrayContaining(['who-icd10-icd11.json', 'local-east-L.json']));
  const lead = JSON.parse(readFileSync(path.join(dir, 'local-lead-L.json'), 'utf8'));
  // unchanged content: no new version
  expect(await importConceptMaps(hub.runtime.db, [lead], 'zhao.it')).toEqual([{ url: lead.url, version: 1, unchanged: true }]);
  lead.group[0].element.push({ code: 'K01X', display: '钾', target: [{ code: '2823-3', equivalence: 'equivalent' }] });
  const [imported] = await importConceptMaps(hub.runtime.db, [lead], 'zhao.it', 'from the committee repo');
  expect(imported).toMatchObject({ version: 2, unchanged: false });
  const history = await mapHistory(hub.runtime.db, lead.url);
  expect(history.versions.at(-1)).toMatchObject({ version: 2, origin: 'import', created_by: 'zhao.it', status: 'active' });
  expect(history.events.at(-1)).toMatchObject({ action: 'import', actor: 'zhao.it' });
  await expect(importConceptMaps(hub.runtime.db, [{ ...lead, group: [{ source: 'x', target: 'http://id.who.int/icd/release/11/mms', element: [{ code: 'a', target: [{ code: 'XN8P1&1A00', equivalence: 'equivalent' }] }] }] }], 'zhao.it')).rejects.toThrow(/invalid ICD-11/);
});

test('an ICD-10 change reaches the clinical-edition codes that resolve through it; the impact sample read is audited', async () => {
  const adt = (controlId: string, dg1: string) =>
    [`MSH|^~\\&|HIS|HOSP|YILIAN|HUB|20261123093000||ADT^A08^ADT_A01|${controlId}|P|2.5|||||CHN|UNICODE UTF-8`, 'EVN|A08|20261123093000', `PID|1||D${controlId}^^^HOSP^MR||张^三||19800101|M`, 'PV1|1|I', dg1].join('\r') + '\r';
  await send(adt('DX-1', 'DG1|1||E11.900^2型糖尿病^I10|||A'));
  await send(adt('DX-2', 'DG1|1||E10.9^1型糖尿病^I10|||A'));
  const conditions = async () =>
    (await hub.runtime.db.query<{ content: any }>(`SELECT content FROM resource WHERE resource_type = 'Condition' ORDER BY content->'code'->'coding'->0->>'code'`)).rows.map((r) => r.content);
  const [e10, e11] = await conditions();
  expect(e11.code.coding[1]).toMatchObject({ system: 'http://id.who.int/icd/release/11/mms', code: '5A11', extension: [expect.anything(), { url: expect.any(String), valueCode: 'wider' }] });
  const p = await propose(hub.runtime.db, { sourceSystem: 'http://hl7.org/fhir/sid/icd-10', sourceCode: 'E11.9', targetSystem: 'http://id.who.int/icd/release/11/mms', targetCode: '5A11', equivalence: 'equivalent' }, 'li.coder');
  // the WHO table is never edited: the addition goes to the committee's own map
  expect(p.concept_map_url).toBe('https://yilian.example/fhir/ConceptMap/icd10-icd11-committee');
  await expect(
    propose(hub.runtime.db, { sourceSystem: 'http://hl7.org/fhir/sid/icd-10', sourceCode: 'E11.9', targetSystem: 'http://id.who.int/icd/release/11/mms', targetCode: '5A11', equivalence: 'equivalent', conceptMapUrl: 'https://yilian.example/fhir/ConceptMap/who-icd10-icd11' }, 'li.coder'),
  ).rejects.toThrow(/unaltered/);
  const impact = await impactOfProposal(hub.runtime.db, p.id, 'wang.committee');
  expect(impact.wouldChange).toBe(1);
  expect(impact.sample.map((s) => s.id)).toEqual([e11.id]);
  expect(impact.sample[0]!.changes).toContainEqual({ path: 'code.coding[1].extension[1].valueCode', before: 'wider', after: 'equivalent' });
  expect(e10.code.coding[1].code).toBe('5A10');
  const audit = await hub.runtime.db.query<{ actor: string; action: string; detail: any }>(`SELECT actor, action, detail FROM audit_event WHERE entity_id = $1`, [`impact of mapping proposal ${p.id}`]);
  expect(audit.rows).toEqual([{ actor: 'wang.committee', action: 'read', detail: { resources: [`Condition/${e11.id}`] } }]);
});

test('one runner per reprocess job: a second runner is refused while the lease lives; a crashed runner\'s job resumes', async () => {
  const results = [{ code: 'NA01', name: '钠', value: '140', unit: 'mmol/L', range: '135-145' }];
  for (let i = 0; i < 4; i++) await send(simOru({ controlId: `LEASE-${i}`, patient: simPatient(20 + i, 'F') }, results));
  const proposal = await propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: 'NA01', targetSystem: LOINC, targetCode: '2951-2', equivalence: 'equivalent' }, 'li.lab');
  await approve(hub.runtime.db, proposal.id, 'wang.committee');

  // two runners started together on one job: never both at work; the job is done exactly once
  const job = await reprocessProposal(hub.runtime.db, proposal.id, 'wang.committee');
  const outcomes = await Promise.allSettled([runReprocess(hub.runtime.db, job.id, { batchSize: 1 }), runReprocess(hub.runtime.db, job.id, { batchSize: 1 })]);
  const refused = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[];
  for (const r of refused) expect(String(r.reason)).toMatch(/is being run by .*lease until/);
  expect(await getReprocessJob(hub.runtime.db, job.id)).toMatchObject({ state: 'done', total: 4, done: 4, changed: 4, runner: null });

  // a runner that crashed mid-job (its row still names it, lease live): others are refused until the lease passes, then resume from its last key
  const second = await createReprocessJob(hub.runtime.db, [{ system: LOCAL, code: 'NA01' }], 'wang.committee', 'crash test');
  await hub.runtime.db.query(`UPDATE reprocess_job SET runner = 'crashed-host:4242:dead', lease_until = clock_timestamp() + interval '1500 milliseconds', done = 2, last_type = 'Observation', last_id = (SELECT id FROM resource WHERE resource_type = 'Observation' AND content->'code'->'coding'->0->>'code' = 'NA01' ORDER BY id OFFSET 1 LIMIT 1) WHERE id = $1`, [second.id]);
  await expect(runReprocess(hub.runtime.db, second.id)).rejects.toThrow(/being run by crashed-host:4242:dead/);
  expect(await getReprocessJob(hub.runtime.db, second.id)).toMatchObject({ state: 'running', runner: 'crashed-host:4242:dead' });
  await new Promise((r) => setTimeout(r, 1600));
  const progress: number[] = [];
  const resumed = await runReprocess(hub.runtime.db, second.id, { batchSize: 1, onProgress: (j) => progress.push(j.done) });
  // resumed after the crashed runner's last key: the last two records only
  expect(progress).toEqual([3, 4]);
  expect(resumed).toMatchObject({ state: 'done', done: 4, changed: 0, runner: null, lease_until: null });

  // nobody runs it by hand: a worker's periodic sweep resumes a job whose runner died long enough ago
  const orphan = await createReprocessJob(hub.runtime.db, [{ system: LOCAL, code: 'NA01' }], 'wang.committee', 'orphaned');
  await hub.runtime.db.query(`UPDATE reprocess_job SET runner = 'crashed-host:4242:dead', lease_until = clock_timestamp() - interval '5 minutes' WHERE id = $1`, [orphan.id]);
  const fresh = await createReprocessJob(hub.runtime.db, [{ system: LOCAL, code: 'NA01' }], 'wang.committee', 'just created, its creator about to run it');
  expect(await resumeStaleReprocessJobs(hub.runtime.db)).toEqual([orphan.id]);
  await waitFor(async () => (await getReprocessJob(hub.runtime.db, orphan.id)).state === 'done', 10_000, 'orphaned job resumed');
  expect(await getReprocessJob(hub.runtime.db, fresh.id)).toMatchObject({ state: 'running', runner: null, done: 0 });

  // a runner that loses its lease mid-run (paused past it, another took over) stops instead of writing beside the new one
  const third = await createReprocessJob(hub.runtime.db, [{ system: LOCAL, code: 'NA01' }], 'wang.committee', 'stolen lease');
  await expect(
    runReprocess(hub.runtime.db, third.id, {
      batchSize: 1,
      onProgress: async () => {
        await hub.runtime.db.query(`UPDATE reprocess_job SET runner = 'other-host:1:x', lease_until = clock_timestamp() + interval '1 minute' WHERE id = $1`, [third.id]);
      },
    }),
  ).rejects.toThrow(/lost its lease/);
  expect(await getReprocessJob(hub.runtime.db, third.id)).toMatchObject({ runner: 'other-host:1:x', state: 'running' });
});

test('coded elements beyond code go through the same loop: an unmapped allergen and admit reason reach the worklist; the record is stored', async () => {
  const T = '20261120080000';
  const text = [
    `MSH|^~\\&|HIS|EAST|YILIAN|HUB|${T}||ADT^A01^ADT_A01|ALG-1|P|2.5|||||CHN|UNICODE UTF-8`,
    `EVN|A01|${T}`,
    `PID|1||E900^^^EAST^MR||赵^六||19700101|F`,
    `PV1|1|I|||||||||||||||||V900`,
    `PV2|||J18.9^肺炎^I10`,
    `AL1|1|DA|QMS^青霉素^L`,
  ].join('\r');
  const icd10 = async () => (await coverage(hub.runtime.db, { member: 'east' })).rows.find((r) => r.system === 'http://hl7.org/fhir/sid/icd-10') ?? { occurrences: 0, mappedOccurrences: 0 };
  const before = await icd10();
  await send(text);
  const allergy = (await hub.runtime.db.query<{ content: any }>(`SELECT content FROM resource WHERE resource_type = 'AllergyIntolerance' AND content->'code'->'coding'->0->>'code' = 'QMS'`)).rows[0]!.content;
  expect(allergy.meta.tag).toContainEqual(expect.objectContaining({ code: 'unmapped' }));
  const list = (await worklist(hub.runtime.db, { member: 'east' })) as any[];
  expect(list.find((w) => w.code === 'QMS')).toMatchObject({ system: LOCAL, display: '青霉素', count: 1 });
  // the admit reason (ICD-10) was mapped to ICD-11 on the Encounter and counted as mapped
  const encounter = (await hub.runtime.db.query<{ content: any }>(`SELECT content FROM resource WHERE resource_type = 'Encounter' AND content->'reasonCode' IS NOT NULL AND raw_id = (SELECT max(id) FROM raw_message)`)).rows[0]!.content;
  expect(encounter.reasonCode[0].coding[1]).toMatchObject({ system: 'http://id.who.int/icd/release/11/mms', code: 'CA40.Z' });
  expect(await icd10()).toMatchObject({ occurrences: before.occurrences + 1, mappedOccurrences: before.mappedOccurrences + 1 });
});
