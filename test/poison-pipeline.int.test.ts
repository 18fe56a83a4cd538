/**
 * Poison in the pipeline (issue row 4), real PostgreSQL and Redis, a real PipelineWorker with 5
 * attempts: a NUL in a segment body (an OBX value, a patient name) no longer fails the merge — the
 * FHIR resource and the demographics carry the visible escape `\u0000` and the message is
 * processed; data PostgreSQL still refuses (here an MRN too large for source_patient's key,
 * SQLSTATE 54000) is quarantined on the first attempt with PostgreSQL's reason, never retried into
 * an `exhausted` dead letter. Good messages beside them are processed as usual.
 */
import { randomBytes } from 'node:crypto';
import type { MemberConfig } from '../hub/config';
import { PipelineWorker } from '../pipeline/worker';
import type { RunOutcome } from '../pipeline/runner';
import { bloodCount, simImagingReport, simOru, simPatient } from '../cli/simulate';
import { startTestHub, waitFor, type TestHub } from './support/hub';
import { quarantineOf } from './support/mllp';

const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'lis', kind: 'mllp', port: 0 }] };
const channel = { id: 'lis', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

let hub: TestHub;
let worker: PipelineWorker | undefined;
const runs = new Map<number, RunOutcome[]>();

beforeAll(async () => {
  // 5 attempts with a short backoff: a message treated as transient would be run 5 times within seconds.
  hub = await startTestHub('poison_pipeline', { members: [memberConfig], pipeline: { partitions: 2, attempts: 5, backoffMs: 100 } });
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, {
    reconcile: false,
    onProcessed: (rawId, outcome) => runs.set(rawId, [...(runs.get(rawId) ?? []), outcome]),
  });
  await worker.start();
});

afterAll(async () => {
  await worker?.close();
  await hub?.close();
});

async function store(text: string): Promise<number> {
  const result = await hub.runtime.intake.receive({ member: hub.config.members[0] as MemberConfig, channel, bytes: Buffer.from(text, 'utf8') });
  expect(result).toMatchObject({ outcome: 'stored', ackCode: 'AA' });
  return result.rawId;
}

async function statusOf(rawId: number): Promise<{ status: string; attempts: number }> {
  return (await hub.runtime.db.query<{ status: string; attempts: number }>(`SELECT status, attempts FROM raw_message WHERE id = $1`, [rawId])).rows[0]!;
}

test('NUL in an OBX value and in a name: processed, escaped in the resource and demographics; a value PostgreSQL refuses: quarantined at once', async () => {
  const obxNul = await store(simImagingReport({ controlId: 'P-1', patient: simPatient(1, 'P') }, { code: '36643-5', name: 'XR Chest' }, '未见\u0000异常'));
  const nameNul = await store(simOru({ controlId: 'P-2', patient: { ...simPatient(2, 'P'), family: '王\u0000' } }, bloodCount));
  const hugeMrn = randomBytes(4000).toString('hex');
  const refused = await store(simOru({ controlId: 'P-3', patient: { ...simPatient(3, 'P'), mrn: hugeMrn } }, bloodCount));
  const goods = [];
  for (let i = 10; i < 20; i++) goods.push(await store(simOru({ controlId: `P-${i}`, patient: simPatient(i, 'P') }, bloodCount)));
  const all = [obxNul, nameNul, refused, ...goods];

  await waitFor(async () => all.every((id) => runs.has(id)), 60_000, 'every message run once');
  // Wait until no message is queued any more: a retried message would still be queued here.
  await waitFor(async () => (await Promise.all(all.map(statusOf))).every((s) => s.status !== 'queued'), 60_000, 'no message queued');

  expect(runs.get(obxNul)).toEqual(['processed']);
  expect(runs.get(nameNul)).toEqual(['processed']);
  for (const id of goods) expect(runs.get(id)).toEqual(['processed']);
  expect(runs.get(refused)).toEqual(['quarantined']);
  expect(await statusOf(refused)).toMatchObject({ status: 'quarantined', attempts: 1 });
  const [q] = await quarantineOf(hub, refused);
  expect(q).toMatchObject({ stage: 'merge', code: 'unstorable' });
  expect(q!.reason).toContain('54000');

  // The escape is visible in what the hub serves; the bytes keep the NUL.
  const observation = await hub.runtime.db.query<{ content: { valueString?: string } }>(
    `SELECT content FROM resource WHERE raw_id = $1 AND resource_type = 'Observation'`,
    [obxNul],
  );
  expect(JSON.stringify(observation.rows.map((r) => r.content))).toContain('未见\\\\u0000异常');
  const patient = await hub.runtime.db.query<{ family: string }>(`SELECT demographics->>'family' AS family FROM source_patient WHERE mrn = $1`, [simPatient(2, 'P').mrn]);
  expect(patient.rows[0]!.family).toBe('王\\u0000');
  const raw = await hub.runtime.db.query<{ content: Buffer }>(`SELECT content FROM raw_message WHERE id = $1`, [obxNul]);
  expect(raw.rows[0]!.content.includes(0)).toBe(true);
});
