/**
 * Unit fit of approved maps (issue 21), on the real pipeline and PostgreSQL: a member's local
 * glucose code arrives in mmol/L and is mapped to the mass-concentration code 2345-7. Approving
 * that mapping goes through with a warning (function and HTTP route); the worklist and coverage then
 * flag it with the committee's sentence naming the substance code of the pair. Codes whose units
 * fit their target (creatinine in µmol/L under 14682-9) are not flagged, and a mass unit under a
 * substance code is flagged the other way round.
 */
import type { Server } from 'node:http';
import { simOru, simPatient, type SimResult } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { syncTerminology } from '../hub/terminology/versions';
import { approve, propose } from '../hub/terminology/workflow';
import { coverage, unitConcentrationKind, unitMismatches, worklist } from '../hub/terminology/worklist';
import { LOINC } from '../mappings/terminology/systems';
import { listenApi, startTestHub, type TestHub } from './support/hub';
import { sendToWorker } from './support/results';

const LOCAL = 'urn:yilian:county:L';
const GOVERNANCE = 'governance-key-0123456789ab';
const INTEGRATION = 'integration-key-0123456789ab';
let hub: TestHub;
let worker: PipelineWorker;
let server: Server;
let base: string;
let control = 0;

beforeAll(async () => {
  hub = await startTestHub('unitfit', { api: { keys: [{ name: 'committee', key: GOVERNANCE, scopes: ['governance'] }, { name: 'county-it', key: INTEGRATION, scopes: ['integration'] }] } });
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

/** One ORU per patient through intake and the pipeline worker; waits until the worker has processed it. */
async function send(patient: number, results: SimResult[]): Promise<void> {
  await sendToWorker(hub, 'county', simOru({ controlId: `UF-${++control}`, patient: simPatient(patient, 'U') }, results));
}

const glu = (value: string): SimResult => ({ code: 'GLU', name: '葡萄糖', value, unit: 'mmol/L', range: '3.9-6.1' });
const cre = (value: string): SimResult => ({ code: 'CRE', name: '肌酐', value, unit: 'µmol/L', range: '44-133' });
const chol = (value: string): SimResult => ({ code: 'CHOL', name: '总胆固醇', value, unit: 'mg/dL', range: '' });

async function proposeAndApprove(code: string, display: string, target: string): Promise<{ id: number; warnings: string[] }> {
  const p = await propose(hub.runtime.db, { sourceSystem: LOCAL, sourceCode: code, sourceDisplay: display, targetSystem: LOINC, targetCode: target, equivalence: 'equivalent' }, 'li.integration');
  const approved = await approve(hub.runtime.db, p.id, 'zhao.committee', 'unit fit test');
  expect(approved.proposal.state).toBe('approved'); // a warning never blocks
  return { id: p.id, warnings: approved.warnings };
}

test('a unit is a mass or a substance concentration by commensurability in UCUM, never by its spelling', () => {
  expect(unitConcentrationKind('mmol/L')).toBe('substance');
  expect(unitConcentrationKind('μmol/L')).toBe('substance');
  expect(unitConcentrationKind('umol/l')).toBe('substance');
  expect(unitConcentrationKind('mg/dL')).toBe('mass');
  expect(unitConcentrationKind('g/L')).toBe('mass');
  expect(unitConcentrationKind('ug/dL')).toBe('mass');
  // counts, activities, fractions and equivalents are neither (equivalents need a charge)
  expect(unitConcentrationKind('10^9/L')).toBeUndefined();
  expect(unitConcentrationKind('U/L')).toBeUndefined();
  expect(unitConcentrationKind('%')).toBeUndefined();
  expect(unitConcentrationKind('mEq/L')).toBeUndefined();
  expect(unitConcentrationKind('not a unit')).toBeUndefined();
});

test('approving GLU (arrives in mmol/L) → 2345-7 warns and names the substance code; the worklist and coverage flag it; fitting maps are not flagged', async () => {
  for (let i = 0; i < 3; i++) await send(i, [glu(`5.${i}`), cre(`7${i}`), chol(`19${i}`)]);

  const gluApproval = await proposeAndApprove('GLU', '葡萄糖', '2345-7');
  expect(gluApproval.warnings).toEqual(['GLU arrives in mmol/L; 2345-7 is a mass concentration; 14749-6 is the substance concentration (3 of 3 stored results)']);
  const creApproval = await proposeAndApprove('CRE', '肌酐', '14682-9');
  expect(creApproval.warnings).toEqual([]);
  const cholApproval = await proposeAndApprove('CHOL', '总胆固醇', '14647-2');
  expect(cholApproval.warnings).toEqual(['CHOL arrives in mg/dL; 14647-2 is a substance concentration; 2093-3 is the mass concentration (3 of 3 stored results)']);

  // Results stored after the approval (mapped, and converted or refused by the map stage) still show the unit sent.
  await send(10, [glu('6.4'), cre('88')]);

  const flagged = await unitMismatches(hub.runtime.db, { member: 'county' });
  expect(flagged.map((m) => [m.code, m.target, m.unit, m.count, m.total])).toEqual([
    ['GLU', '2345-7', 'mmol/L', 4, 4],
    ['CHOL', '14647-2', 'mg/dL', 3, 3],
  ]);
  expect(flagged[0]).toMatchObject({
    member: 'county',
    system: LOCAL,
    targetKind: 'mass',
    unitKind: 'substance',
    pairCode: '14749-6',
    proposalId: gluApproval.id,
    message: 'GLU arrives in mmol/L; 2345-7 is a mass concentration; 14749-6 is the substance concentration',
  });
  // The unmapped worklist itself no longer holds the approved codes.
  expect(((await worklist(hub.runtime.db, { member: 'county' })) as Array<{ code: string }>).map((w) => w.code)).not.toContain('GLU');
  expect(await unitMismatches(hub.runtime.db, { member: 'another' })).toEqual([]);

  const report = await coverage(hub.runtime.db, { member: 'county' });
  expect(report.unitMismatches.map((m) => m.message)).toEqual(flagged.map((m) => m.message));
  expect(report.rows.find((r) => r.system === LOCAL)).toMatchObject({ unitMismatchCodes: 2 });

  // Over HTTP: the worklist and coverage carry the flags.
  const headers = { authorization: `Bearer ${GOVERNANCE}`, 'content-type': 'application/json' };
  const list = (await (await fetch(`${base}/api/terminology/worklist?member=county`, { headers })).json()) as { unitMismatches: Array<{ message: string }> };
  expect(list.unitMismatches.map((m) => m.message)).toEqual(flagged.map((m) => m.message));
  const cover = (await (await fetch(`${base}/api/terminology/coverage?member=county`, { headers })).json()) as { unitMismatches: unknown[] };
  expect(cover.unitMismatches).toHaveLength(2);
}, 120_000);

test('the approve route returns the warning and records it on the approve event; the approval is made', async () => {
  await send(20, [{ code: 'UA', name: '尿酸', value: '360', unit: 'µmol/L', range: '' }]);
  const headers = { authorization: `Bearer ${GOVERNANCE}`, 'content-type': 'application/json' };
  // Proposed by the county's integration key: four eyes, the committee cannot approve its own proposal.
  const created = await fetch(`${base}/api/terminology/proposals`, {
    method: 'POST',
    headers: { ...headers, authorization: `Bearer ${INTEGRATION}` },
    body: JSON.stringify({ sourceSystem: LOCAL, sourceCode: 'UA', sourceDisplay: '尿酸', targetSystem: LOINC, targetCode: '3084-1', equivalence: 'equivalent' }),
  });
  expect(created.status).toBe(201);
  const { id } = (await created.json()) as { id: number };
  const res = await fetch(`${base}/api/terminology/proposals/${id}/approve`, { method: 'POST', headers, body: JSON.stringify({ comment: 'as the county names it' }) });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { proposal: { state: string }; warnings: string[] };
  expect(body.proposal.state).toBe('approved');
  expect(body.warnings).toEqual(['UA arrives in µmol/L; 3084-1 is a mass concentration; 14933-6 is the substance concentration (1 of 1 stored results)']);
  const event = await hub.runtime.db.query<{ detail: { warnings?: string[] } }>(`SELECT detail FROM mapping_event WHERE proposal_id = $1 AND action = 'approve'`, [id]);
  expect(event.rows[0]!.detail.warnings).toEqual(body.warnings);
}, 60_000);
