/**
 * Redis restarting empty (no persistence) loses the queues, never a message: the raw store is the
 * source of truth, the reconciler notices the missing epoch key and re-enqueues every stored
 * message still queued, and every ioredis client (intake producer, worker connections) reconnects
 * on its own. A private redis-server is killed with SIGKILL and started again on the same port.
 */
import type { MemberConfig } from '../hub/config';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { startTestHub, waitFor, type TestHub } from './support/hub';
import {
  assertBuildIsFresh,
  freePort,
  killHard,
  removeWorkerConfig,
  spawnWorker,
  startRedisServer,
  stopProcess,
  writeWorkerConfig,
  type Proc,
  type WorkerEnv,
} from './support/processes';

const PATIENTS = 200;
const PARTITIONS = 4;
const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', port: 0 }] };
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

let port: number;
let redis: Proc | undefined;
let hub: TestHub | undefined;
let worker: PipelineWorker | undefined;
let spawned: Proc | undefined;
let configFile: string | undefined;
const workerLog: string[] = [];

beforeAll(async () => {
  assertBuildIsFresh();
  port = await freePort();
  redis = await startRedisServer(port);
  hub = await startTestHub('redisrestart', { members: [memberConfig], redisUrl: `redis://127.0.0.1:${port}`, pipeline: { partitions: PARTITIONS } });
});

afterAll(async () => {
  if (spawned) await stopProcess(spawned);
  await worker?.close();
  await hub?.close();
  if (configFile) removeWorkerConfig(configFile);
  if (redis) await stopProcess(redis);
});

async function count(sql: string): Promise<number> {
  const result = await hub!.runtime.db.query<{ n: number }>(sql);
  return Number(result.rows[0]!.n);
}

let sent = 0;
/** Store `n` more updates (round-robin over the patients, event time growing with the update) and wait until they are stored. */
async function store(n: number): Promise<void> {
  const member = hub!.config.members[0] as MemberConfig;
  const batch = [];
  for (let j = 0; j < n; j++, sent++) {
    const k = Math.floor(sent / PATIENTS);
    const text = simAdt({ controlId: `R${sent}`, patient: simPatient(sent % PATIENTS, 'R'), address: `update-${k}`, time: `2026112309${String(k).padStart(2, '0')}00` });
    batch.push(hub!.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') }));
  }
  const results = await Promise.all(batch);
  expect(results.every((r) => r.outcome === 'stored')).toBe(true);
}

test('messages stored before, during and after a Redis restart are all processed, once', async () => {
  const t0 = Date.now();
  const { runtime, config, databaseUrl, prefix } = hub!;
  // One worker in this process (its clients can be inspected) and one `yilian worker` process.
  worker = new PipelineWorker({ db: runtime.db, config }, runtime.queues, { log: (t) => workerLog.push(t) });
  await worker.start();
  const env: WorkerEnv = { databaseUrl, redisUrl: `redis://127.0.0.1:${port}`, prefix, partitions: PARTITIONS, members: config.members };
  configFile = writeWorkerConfig(env);
  spawned = await spawnWorker(env, configFile);

  // 1,000 stored while the workers run; Redis dies with work still waiting in it.
  for (let i = 0; i < 10; i++) await store(100);
  await runtime.intake.drain();
  const processedBefore = await count(`SELECT count(*) AS n FROM raw_message WHERE status = 'processed'`);
  await killHard(redis!);
  const queuedAtKill = await count(`SELECT count(*) AS n FROM raw_message WHERE status = 'queued'`);
  expect(queuedAtKill).toBeGreaterThan(0); // otherwise nothing was lost and the reconciler is not tested

  // 500 stored while Redis is down: durable at once; their enqueue waits for Redis.
  await store(500);
  redis = await startRedisServer(port);

  // 500 more after the restart, through the same (reconnected) producer client.
  for (let i = 0; i < 5; i++) await store(100);
  const total = sent;
  expect(total).toBe(2000);

  await waitFor(async () => (await count(`SELECT count(*) AS n FROM raw_message WHERE status = 'processed'`)) === total, 90_000, 'every stored message processed');
  const seconds = (Date.now() - t0) / 1000;
  process.stderr.write(`redis-restart: ${processedBefore} processed and ${queuedAtKill} queued when Redis was killed; all ${total} processed after ${seconds.toFixed(1)} s\n`);

  expect(await count(`SELECT count(*) AS n FROM raw_message`)).toBe(total);
  expect(await count(`SELECT count(*) AS n FROM raw_message WHERE status <> 'processed'`)).toBe(0);
  expect(await count(`SELECT count(*) AS n FROM patient_event`)).toBe(total);
  expect(await count(`SELECT count(DISTINCT raw_id) AS n FROM patient_event`)).toBe(total);
  expect(await count(`SELECT count(*) AS n FROM source_patient`)).toBe(PATIENTS);
  expect(await count(`SELECT count(*) AS n FROM source_patient WHERE demographics->>'address' NOT LIKE 'update-9%'`)).toBe(0);
  expect(await count(`SELECT count(*) AS n FROM quarantine`)).toBe(0);
  // The reconciler re-enqueued what the new Redis did not have.
  expect(workerLog.join('\n') + spawned.output()).toMatch(/Redis had lost its queues; re-enqueued \d+ stored messages/);

  // Every client came back: producer, workers (the spawned one did not die), and Redis again has the
  // epoch and the ordering setting.
  expect(runtime.queues.redis.status).toBe('ready');
  expect(await runtime.queues.redis.ping()).toBe('PONG');
  expect(spawned.child.exitCode).toBeNull();
  expect(await runtime.queues.redis.exists(`${prefix}:epoch`)).toBe(1);
  for (const queue of runtime.queues.queues) expect(await queue.getGlobalConcurrency()).toBe(1);
  // Both workers' heartbeats come back within a beat of the empty Redis.
  await waitFor(async () => (await runtime.queues.workerCount()) >= 2, 30_000, 'both workers counted again');
});
