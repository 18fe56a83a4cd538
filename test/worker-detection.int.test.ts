/**
 * Two hubs on one Redis server — another database, the same queue prefix — never count each other's
 * workers (issue 18, row 11: BullMQ's getWorkers() reads CLIENT LIST, which is server-wide, so
 * `yilian ingest` on one hub waited 600 s for a worker of the other). Workers are counted by their
 * heartbeats, in a registry under this hub's prefix in this hub's database.
 */
import { PipelineQueues } from '../pipeline/queues';
import { PipelineWorker } from '../pipeline/worker';
import { REDIS_URL, startTestHub, waitFor, type TestHub } from './support/hub';

let hub: TestHub;
let other: PipelineQueues;
let worker: PipelineWorker | undefined;

beforeAll(async () => {
  hub = await startTestHub('workerdetect');
  // The other hub: the same prefix, Redis database 15 of the same server.
  other = new PipelineQueues({ ...hub.runtime.queues.options, redisUrl: `${REDIS_URL}/15` });
});

afterAll(async () => {
  await worker?.close();
  await other.removeAllKeys();
  await other.close();
  await hub.close();
});

test("a hub counts its own workers only, and a stopped worker's heartbeat goes with it", async () => {
  expect(await hub.runtime.queues.workerCount()).toBe(0);
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { reconcile: false });
  await worker.start();
  await waitFor(async () => (await hub.runtime.queues.workerCount()) === 1, 30_000, 'the worker counted by its hub');
  // The other hub's view: BullMQ's server-wide CLIENT LIST shows this worker's connections under
  // the same queue names; the heartbeat count does not.
  expect((await other.queues[0]!.getWorkers()).length).toBeGreaterThan(0);
  expect(await other.workerCount()).toBe(0);
  await worker.close();
  worker = undefined;
  expect(await hub.runtime.queues.workerCount()).toBe(0);
});

test('a worker that stopped without saying so (killed) stops being counted when its heartbeat runs out, and the registry goes with the last one', async () => {
  const queues = hub.runtime.queues;
  expect(await queues.beat('killed-worker', 60_000)).toBe(1);
  expect(await queues.beat('short-lived', 400)).toBe(2);
  expect(await queues.workerCount()).toBe(2);
  await waitFor(async () => (await queues.workerCount()) === 1, 30_000, 'the short heartbeat run out');
  await queues.endBeat('killed-worker');
  expect(await queues.workerCount()).toBe(0);
  // Its last beat's TTL bounds the registry's life: nothing is left under a retired prefix.
  await queues.beat('last', 300);
  await waitFor(async () => (await queues.redis.exists(`${queues.options.prefix}:workers`)) === 0, 30_000, 'the registry expired with its last heartbeat');
});
