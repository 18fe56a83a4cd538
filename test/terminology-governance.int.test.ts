/**
 * Governance a committee can use (issue 22), on the real pipeline and PostgreSQL: four eyes (the
 * proposer cannot approve their own mapping or recognition rule; configurable off), a map's current
 * entries (function, HTTP, CLI), the impact dry run as a table per record, and coverage agreeing
 * with the worklist after an approval is reprocessed.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseConfig } from '../hub/config';
import { simOru, simPatient, type SimResult } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { currentEntries, syncTerminology } from '../hub/terminology/versions';
import { approve, propose } from '../hub/terminology/workflow';
import { impactOfProposal } from '../hub/terminology/impact';
import { reprocessProposal, runReprocess } from '../hub/terminology/reprocess';
import { coverage, worklist } from '../hub/terminology/worklist';
import { decideRule, listRules, proposeRule } from '../hub/recognition/rules';
import { LOINC } from '../mappings/terminology/systems';
import { listenApi, startTestHub, type TestHub } from './support/hub';
import { sendToWorker } from './support/results';

const run = promisify(execFile);
const LOCAL = 'urn:yilian:county:L';
const COMMITTEE = 'committee-key-0123456789abcd';
const IT = 'integration-key-0123456789ab';
let hub: TestHub;
let worker: PipelineWorker;
let server: Server;
let base: string;
let control = 0;

beforeAll(async () => {
  hub = await startTestHub('governance22', {
    members: [{ id: 'county', name: '青山县人民医院', tier: 'secondary' }],
    api: {
      keys: [
        { name: 'wang.committee', key: COMMITTEE, scopes: ['governance'] },
        { name: 'county-it', key: IT, scopes: ['integration'] },
      ],
    },
  });
  await syncTerminology(hub.runtime.db);
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { reconcile: false });
  await worker.start();
  ({ server, base } = await listenApi(hub.runtime));
}, 60_000);

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await worker?.close();
  await hub?.close();
});

async function send(patient: number, results: SimResult[]): Promise<void> {
  await sendToWorker(hub, 'county', simOru({ controlId: `GV-${++control}`, patient: simPatient(patient, 'G') }, results));
}

const glu = (value: string): SimResult => ({ code: 'GLU', name: '葡萄糖', value, unit: 'mmol/L', range: '3.9-6.1' });
const k = (value: string): SimResult => ({ code: 'K', name: '钾', value, unit: 'mmol/L', range: '3.5-5.3' });
const http = (method: string, url: string, key: string, body?: unknown) =>
  fetch(`${base}${url}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });

test('four eyes by default: the proposer cannot approve their own proposal (function, HTTP 409 OperationOutcome); another member can', async () => {
  expect(parseConfig({}).governance.fourEyes).toBe(true);
  const p = await propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: 'NA', targetSystem: LOINC, targetCode: '2951-2', equivalence: 'equivalent' }, 'zhang');
  await expect(approve(hub.runtime.db, p.id, 'zhang')).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/proposed by zhang; four-eyes rule/) });
  // fourEyes off (a one-person hub): the same person may approve.
  const solo = await propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: 'CL', targetSystem: LOINC, targetCode: '3084-1', equivalence: 'equivalent' }, 'zhang');
  expect((await approve(hub.runtime.db, solo.id, 'zhang', '', { fourEyes: false })).proposal.state).toBe('approved');

  // Over HTTP: the committee key proposes, then tries to approve its own proposal.
  const created = (await (await http('POST', '/api/terminology/proposals', COMMITTEE, { sourceSystem: LOCAL, sourceCode: 'CA', targetSystem: LOINC, targetCode: '6690-2', equivalence: 'equivalent' })).json()) as { id: number };
  const refused = await http('POST', `/api/terminology/proposals/${created.id}/approve`, COMMITTEE, {});
  expect(refused.status).toBe(409);
  const body = (await refused.json()) as { resourceType: string; code: string; message: string; issue: Array<{ code: string; diagnostics: string }> };
  expect(body.resourceType).toBe('OperationOutcome');
  expect(body.issue[0]).toMatchObject({ code: 'conflict', diagnostics: expect.stringMatching(/proposed by wang\.committee/) });
  // Still proposed; the proposer's refusal wrote no step.
  const steps = ((await (await http('GET', `/api/terminology/proposals/${created.id}`, COMMITTEE)).json()) as { state: string; steps: Array<{ action: string }> });
  expect(steps.state).toBe('proposed');
  expect(steps.steps.map((s) => s.action)).toEqual(['propose']);
  // Another committee member approves.
  expect((await approve(hub.runtime.db, p.id, 'li.committee')).proposal.state).toBe('approved');
});

test('four eyes for recognition rules: the proposer of a rule version cannot approve it; off by option', async () => {
  const v = await proposeRule(hub.runtime.db, { code: '718-7', windowDays: 14 }, 'zhang');
  await expect(decideRule(hub.runtime.db, '718-7', v.version, 'approve', 'zhang')).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/proposed by zhang; four-eyes rule/) });
  await decideRule(hub.runtime.db, '718-7', v.version, 'approve', 'li.committee');
  expect((await listRules(hub.runtime.db, { code: '718-7' }))[0]).toMatchObject({ version: v.version, status: 'approved', decidedBy: 'li.committee' });
  const solo = await proposeRule(hub.runtime.db, { code: '718-7', windowDays: 10 }, 'zhang');
  await decideRule(hub.runtime.db, '718-7', solo.version, 'approve', 'zhang', '', { fourEyes: false });
  expect((await listRules(hub.runtime.db, { code: '718-7' }))[0]).toMatchObject({ version: solo.version, status: 'approved', decidedBy: 'zhang' });
});

test('the CLI refuses a self-approval with one line and a non-zero exit; governance.fourEyes: false lets it through', async () => {
  const dir = path.join(os.tmpdir(), `yilian-gov-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const strict = path.join(dir, 'strict.json');
  const solo = path.join(dir, 'solo.json');
  writeFileSync(strict, JSON.stringify({ databaseUrl: hub.config.databaseUrl }));
  writeFileSync(solo, JSON.stringify({ databaseUrl: hub.config.databaseUrl, governance: { fourEyes: false } }));
  // The built CLI, as test/mapping-cli.int.test.ts runs it (npm run build first).
  const cli = path.join(__dirname, '..', 'dist', 'cli', 'yilian.js');
  const env = { ...process.env };
  delete env.DATABASE_URL;
  delete env.YILIAN_CONFIG;
  const yilian = (args: string[]) => run(process.execPath, [cli, ...args], { env, timeout: 60_000 });
  const p = await propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: 'MG', targetSystem: LOINC, targetCode: '14682-9', equivalence: 'equivalent' }, 'zhang');
  const failed = await yilian(['mappings', 'approve', String(p.id), '--by', 'zhang', '--config', strict]).then(
    () => undefined,
    (e: { code: number; stderr: string }) => e,
  );
  expect(failed?.code).not.toBe(0);
  const lines = failed!.stderr.trim().split('\n');
  expect(failed!.code).toBe(1);
  expect(lines).toEqual([expect.stringMatching(/^yilian: conflict: proposal \d+ was proposed by zhang; four-eyes rule/)]);
  const ok = JSON.parse((await yilian(['mappings', 'approve', String(p.id), '--by', 'zhang', '--config', solo])).stdout);
  expect(ok.proposal.state).toBe('approved');
  // `mappings entries`: the map's entries in force, by id, as JSON and as lines.
  const mapId = p.concept_map_url.split('/').pop()!;
  const listed = JSON.parse((await yilian(['mappings', 'entries', mapId, '--json', '--config', strict])).stdout);
  expect(listed.entries.find((e: { sourceCode: string }) => e.sourceCode === 'MG')).toMatchObject({ targetCode: '14682-9', approvedBy: 'zhang', proposalId: p.id });
  const text = (await yilian(['mappings', 'entries', p.concept_map_url, '--config', strict])).stdout;
  expect(text).toMatch(new RegExp(`urn:yilian:county:L#MG → http://loinc.org#14682-9 \\(equivalent\\)  v\\d+ proposal by zhang .* \\(proposal ${p.id}\\)`));
}, 120_000);

test('coverage agrees with the worklist after an approval is reprocessed; the impact reads as a table per record; the map lists its current entries', async () => {
  for (let i = 0; i < 3; i++) await send(i, [glu(`5.${i}`), k(`4.${i}`)]);
  const open = (await worklist(hub.runtime.db, { member: 'county' })) as Array<{ code: string }>;
  expect(open.map((w) => w.code)).toContain('GLU');
  const gluCoverage = async () => {
    const rows = await hub.runtime.db.query<{ mapped: boolean; n: string }>(`SELECT mapped, sum(occurrences)::text AS n FROM coded_element_day WHERE member_id = 'county' AND code = 'GLU' GROUP BY mapped ORDER BY mapped`);
    return rows.rows.map((r) => [r.mapped, Number(r.n)]);
  };
  expect(await gluCoverage()).toEqual([[false, 3]]);

  const p = await propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: 'GLU', sourceDisplay: '葡萄糖', targetSystem: LOINC, targetCode: '14749-6', equivalence: 'equivalent' }, 'county-it');
  // The dry run, per record: element label, before and after as code + display; records × elements.
  const impact = await impactOfProposal(hub.runtime.db, p.id, 'wang.committee');
  expect(impact.wouldChange).toBe(3);
  expect(impact.elements.find((e) => e.element === 'Observation.code')).toMatchObject({ label: { zh: '检验项目', en: 'Test' }, records: 3 });
  const code = impact.sample[0]!.elements.find((e) => e.element === 'Observation.code')!;
  expect(code.before).toBe('GLU 葡萄糖');
  expect(code.after).toMatch(/^\+ LOINC 14749-6 Glucose \[Moles\/volume\]/);
  expect(impact.sample[0]!.changes.length).toBeGreaterThan(0); // the raw diff is still there
  const overHttp = (await (await http('GET', `/api/terminology/proposals/${p.id}/impact`, COMMITTEE)).json()) as { elements: unknown[] };
  expect(overHttp.elements).toEqual(JSON.parse(JSON.stringify(impact.elements)));

  await approve(hub.runtime.db, p.id, 'wang.committee');
  expect(((await worklist(hub.runtime.db, { member: 'county' })) as Array<{ code: string }>).map((w) => w.code)).not.toContain('GLU');
  const job = await runReprocess(hub.runtime.db, (await reprocessProposal(hub.runtime.db, p.id, 'wang.committee')).id);
  expect(job).toMatchObject({ state: 'done', changed: 3 });
  // The stored records are mapped now, and coverage says so (it said 0 % before the fix).
  expect(await gluCoverage()).toEqual([[true, 3]]);
  const report = await coverage(hub.runtime.db, { member: 'county' });
  const row = report.rows.find((r) => r.system === LOCAL)!;
  expect(row.mappedCodes).toBe(row.distinctCodes - open.filter((w) => w.code !== 'GLU').length);
  // Reprocessing again moves nothing twice.
  await runReprocess(hub.runtime.db, (await reprocessProposal(hub.runtime.db, p.id, 'wang.committee')).id);
  expect(await gluCoverage()).toEqual([[true, 3]]);

  // The map's entries in force, by id or url, with who approved each and its history.
  const entries = await currentEntries(hub.runtime.db, p.concept_map_url.split('/').pop()!);
  expect(entries.url).toBe(p.concept_map_url);
  const gluEntry = entries.entries.find((e) => e.sourceCode === 'GLU')!;
  expect(gluEntry).toMatchObject({ sourceSystem: LOCAL, sourceDisplay: '葡萄糖', targetSystem: LOINC, targetCode: '14749-6', equivalence: 'equivalent', approvedBy: 'wang.committee', origin: 'proposal', proposalId: p.id, version: entries.version });
  expect(entries.entries.find((e) => e.sourceCode === 'NA')).toMatchObject({ approvedBy: 'li.committee' });
  expect(entries.entries.find((e) => e.sourceCode === 'CA')).toBeUndefined(); // still only proposed
  expect(entries.history.console).toBe(`/console/mappings/history?map=${entries.id}`);
  expect((await currentEntries(hub.runtime.db, p.concept_map_url)).entries).toHaveLength(entries.entries.length);
  const viaHttp = (await (await http('GET', `/api/terminology/maps/${entries.id}/entries`, IT)).json()) as { entries: Array<{ sourceCode: string }> };
  expect(viaHttp.entries.map((e) => e.sourceCode)).toEqual(entries.entries.map((e) => e.sourceCode));
  expect((await http('GET', '/api/terminology/maps/no-such-map/entries', IT)).status).toBe(404);
}, 180_000);
