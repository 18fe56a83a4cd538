/**
 * The pipeline's convert and merge stages together: converted FHIR resources are stored under their
 * deterministic ids, with provenance, and the latest event time wins whatever the arrival order.
 */
import { bloodCount, simAdt, simOru, simPatient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { startTestHub, waitFor, type TestHub } from './support/hub';
import { sendToWorker } from './support/results';

let hub: TestHub;
let worker: PipelineWorker;

beforeAll(async () => {
  hub = await startTestHub('resources');
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { reconcile: false });
  await worker.start();
});

afterAll(async () => {
  await worker.close();
  await hub.close();
});

const send = (text: string) => sendToWorker(hub, 'county', text);

test('an ORU^R01 is stored as Patient, DiagnosticReport, Observations and Provenance, each pointing at its raw message', async () => {
  const patient = simPatient(1, 'R');
  const rawId = await send(simOru({ controlId: 'RES-ORU-1', patient, charset: 'UNICODE UTF-8', sendingFacility: 'COUNTY' }, bloodCount));
  const rows = await hub.runtime.db.query<{ resource_type: string; n: number }>(`SELECT resource_type, count(*)::int AS n FROM resource WHERE raw_id = $1 GROUP BY 1 ORDER BY 1`, [rawId]);
  const counts = Object.fromEntries(rows.rows.map((r) => [r.resource_type, r.n]));
  expect(counts).toMatchObject({ Patient: 1, DiagnosticReport: 1, Observation: bloodCount.length, Provenance: 1 });
  const hgb = await hub.runtime.db.query<{ content: { valueQuantity?: { value: number }; status: string } }>(
    `SELECT content FROM resource WHERE resource_type = 'Observation' AND raw_id = $1 AND content->'code'->'coding'->0->>'code' = 'HGB'`,
    [rawId],
  );
  expect(hgb.rows[0]!.content).toMatchObject({ status: 'final', valueQuantity: { value: 135 } });
  const status = await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1`, [rawId]);
  expect(status.rows[0]!.status).toBe('processed');
});

test('a corrected result replaces the stored observation (same id, version 2); an older update arriving late does not', async () => {
  const patient = simPatient(2, 'R');
  const first = await send(simOru({ controlId: 'RES-ORU-2', patient, time: '20261123100000' }, bloodCount));
  const corrected = bloodCount.map((r) => (r.code === 'HGB' ? { ...r, value: '128' } : r));
  await send(simOru({ controlId: 'RES-ORU-2', patient, time: '20261123110000' }, corrected, 'C'));
  const late = await send(simOru({ controlId: 'RES-ORU-2', patient, time: '20261123090000' }, bloodCount.map((r) => (r.code === 'HGB' ? { ...r, value: '99' } : r))));
  const hgb = await hub.runtime.db.query<{ version: number; raw_id: number; content: { valueQuantity: { value: number }; status: string } }>(
    `SELECT version, raw_id, content FROM resource WHERE resource_type = 'Observation' AND content->'code'->'coding'->0->>'code' = 'HGB' AND content->'subject'->>'reference' = (
       SELECT 'Patient/' || id FROM resource WHERE resource_type = 'Patient' AND content->'identifier'->0->>'value' = $1)`,
    [patient.mrn],
  );
  expect(hgb.rows).toHaveLength(1);
  expect(hgb.rows[0]!.content).toMatchObject({ status: 'corrected', valueQuantity: { value: 128 } });
  expect(hgb.rows[0]!.version).toBe(2);
  expect(hgb.rows[0]!.raw_id).not.toBe(late);
  expect(hgb.rows[0]!.raw_id).not.toBe(first);
});

test('the same message processed twice (redelivery) changes nothing', async () => {
  const rawId = await send(simAdt({ controlId: 'RES-ADT-1', patient: simPatient(3, 'R') }));
  const before = await hub.runtime.db.query<{ version: number }>(`SELECT version FROM resource WHERE raw_id = $1 ORDER BY resource_type, id`, [rawId]);
  await hub.runtime.db.query(`UPDATE raw_message SET status = 'queued' WHERE id = $1`, [rawId]);
  await hub.runtime.queues.enqueue([{ rawId, patientKey: 'county|R100003' }], '-again');
  await waitFor(async () => (await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1`, [rawId])).rows[0]!.status === 'processed', 30_000, 'reprocessing');
  const after = await hub.runtime.db.query<{ version: number }>(`SELECT version FROM resource WHERE raw_id = $1 ORDER BY resource_type, id`, [rawId]);
  expect(after.rows).toEqual(before.rows);
});
