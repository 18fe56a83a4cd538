/**
 * Per-patient order across worker processes: two `yilian worker` processes share 4 partition queues
 * (so patients share partitions); updates of one patient must be applied in arrival order even when
 * their event times are equal (arrival order is then the only thing that decides the final state).
 * And out-of-order event times: the latest event time wins, a late older update is recorded as not
 * applied.
 */
import type { MemberConfig } from '../hub/config';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { partitionOf } from '../pipeline/queues';
import { startTestHub, REDIS_URL, waitFor, type TestHub } from './support/hub';
import { assertBuildIsFresh, removeWorkerConfig, spawnWorker, stopProcess, writeWorkerConfig, type Proc, type WorkerEnv } from './support/processes';

const PARTITIONS = 4;
const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', port: 0 }] };
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

let hub: TestHub;
let configFile: string | undefined;
const workers: Proc[] = [];

beforeAll(async () => {
  assertBuildIsFresh();
  hub = await startTestHub('ordering', { members: [memberConfig], pipeline: { partitions: PARTITIONS } });
  const env: WorkerEnv = { databaseUrl: hub.databaseUrl, redisUrl: REDIS_URL, prefix: hub.prefix, partitions: PARTITIONS, members: hub.config.members };
  configFile = writeWorkerConfig(env);
  workers.push(...(await Promise.all([spawnWorker(env, configFile), spawnWorker(env, configFile)])));
  await waitFor(async () => (await hub.runtime.queues.workerCount()) >= 2, 10_000, 'both workers connected');
});

afterAll(async () => {
  await Promise.all(workers.map((w) => stopProcess(w)));
  if (configFile) removeWorkerConfig(configFile);
  await hub?.close();
});

/** Store messages in the given order (one intake batch, so raw ids follow that order). */
async function storeInOrder(texts: string[]): Promise<number[]> {
  const member = hub.config.members[0] as MemberConfig;
  const results = await Promise.all(texts.map((text) => hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') })));
  expect(results.map((r) => r.outcome)).toEqual(texts.map(() => 'stored'));
  return results.map((r) => r.rawId);
}

async function waitProcessed(rawIds: number[]): Promise<void> {
  await waitFor(
    async () => {
      const r = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE id = ANY($1::bigint[]) AND status = 'processed'`, [rawIds]);
      return r.rows[0]!.n === rawIds.length;
    },
    60_000,
    `${rawIds.length} messages processed`,
  );
}

interface EventRow {
  raw_id: number;
  mrn: string;
  applied: boolean;
  applied_seq: number;
}

test('200 interleaved updates of 20 patients with equal event times are applied in arrival order', async () => {
  const t0 = Date.now();
  const PATIENTS = 20;
  const UPDATES = 10;
  const texts: string[] = [];
  const mrnOf: string[] = [];
  for (let k = 0; k < UPDATES; k++) {
    for (let i = 0; i < PATIENTS; i++) {
      const patient = simPatient(i, 'O');
      texts.push(simAdt({ controlId: `O${k}-${i}`, patient, address: `update-${k}`, time: '20261123093000' }));
      mrnOf.push(patient.mrn);
    }
  }
  const rawIds = await storeInOrder(texts);
  expect([...rawIds].sort((a, b) => a - b)).toEqual(rawIds); // ids are the arrival order
  await waitProcessed(rawIds);

  const events = (await hub.runtime.db.query<EventRow>(`SELECT raw_id, mrn, applied, applied_seq FROM patient_event WHERE raw_id = ANY($1::bigint[]) ORDER BY applied_seq`, [rawIds])).rows;
  expect(events).toHaveLength(rawIds.length);
  // Per patient: the order updates were applied in is the order they arrived in.
  const partitionsUsed = new Set<number>();
  for (let i = 0; i < PATIENTS; i++) {
    const mrn = simPatient(i, 'O').mrn;
    partitionsUsed.add(partitionOf(`m1|${mrn}`, PARTITIONS));
    const arrived = rawIds.filter((_, j) => mrnOf[j] === mrn);
    const applied = events.filter((e) => e.mrn === mrn).map((e) => e.raw_id);
    expect({ mrn, applied }).toEqual({ mrn, applied: arrived });
  }
  // Patients really shared partitions (more patients than partitions, every partition used).
  expect(partitionsUsed.size).toBe(PARTITIONS);
  // Per partition: one job at a time in FIFO order across both processes (the mechanism behind the
  // per-patient guarantee: global concurrency 1 on each partition queue).
  for (let p = 0; p < PARTITIONS; p++) {
    const arrived = rawIds.filter((_, j) => partitionOf(`m1|${mrnOf[j]}`, PARTITIONS) === p);
    const applied = events.filter((e) => partitionOf(`m1|${e.mrn}`, PARTITIONS) === p).map((e) => e.raw_id);
    expect({ partition: p, applied }).toEqual({ partition: p, applied: arrived });
  }
  // Equal event times: each later arrival wins, so every update applied and the last one is the state.
  expect(events.every((e) => e.applied)).toBe(true);
  const patients = (
    await hub.runtime.db.query<{ mrn: string; address: string; last_raw_id: number }>(
      `SELECT mrn, demographics->>'address' AS address, last_raw_id FROM source_patient WHERE mrn LIKE 'O%' ORDER BY mrn`,
    )
  ).rows;
  expect(patients).toHaveLength(PATIENTS);
  for (const p of patients) {
    expect(p.address.split(' ')[0]).toBe('update-9');
    expect(p.last_raw_id).toBe(rawIds[(UPDATES - 1) * PATIENTS + mrnOf.indexOf(p.mrn)]);
  }
  // Neither worker process died.
  for (const w of workers) expect(w.child.exitCode).toBeNull();
  process.stderr.write(`ordering: 200 interleaved updates applied in order in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
});

test('out-of-order event times: the latest event time wins; the late older update is recorded as not applied', async () => {
  const PATIENTS = 5;
  const texts: string[] = [];
  for (let i = 0; i < PATIENTS; i++) {
    const patient = simPatient(i, 'L');
    // Newer first (10:00), then the older one (09:00) arriving late.
    texts.push(simAdt({ controlId: `L-new-${i}`, patient, address: 'newer', time: '20261123100000' }));
    texts.push(simAdt({ controlId: `L-old-${i}`, patient, address: 'older', time: '20261123090000' }));
  }
  const rawIds = await storeInOrder(texts);
  await waitProcessed(rawIds);

  for (let i = 0; i < PATIENTS; i++) {
    const mrn = simPatient(i, 'L').mrn;
    const newerId = rawIds[2 * i]!;
    const olderId = rawIds[2 * i + 1]!;
    const patient = (
      await hub.runtime.db.query<{ address: string; event_time: Date; last_raw_id: number }>(
        `SELECT demographics->>'address' AS address, event_time, last_raw_id FROM source_patient WHERE member_id = 'm1' AND mrn = $1`,
        [mrn],
      )
    ).rows;
    expect(patient).toHaveLength(1);
    expect(patient[0]!.address.split(' ')[0]).toBe('newer');
    expect(patient[0]!.event_time.toISOString()).toBe('2026-11-23T02:00:00.000Z'); // 10:00 at +08:00
    expect(patient[0]!.last_raw_id).toBe(newerId);

    const events = (await hub.runtime.db.query<EventRow>(`SELECT raw_id, mrn, applied, applied_seq FROM patient_event WHERE mrn = $1 ORDER BY applied_seq`, [mrn])).rows;
    expect(events.map((e) => [e.raw_id, e.applied])).toEqual([
      [newerId, true],
      [olderId, false],
    ]);
  }
  const status = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE id = ANY($1::bigint[]) AND status = 'processed'`, [rawIds]);
  expect(status.rows[0]!.n).toBe(rawIds.length); // the late one is processed (not quarantined), just not applied
});
