/**
 * PipelineQueues.enqueue (pipeline/queues.ts) writes the jobs of every partition in one Redis
 * pipeline: each job must still land in its own partition, in the order given, with the queue's
 * default options (attempts, backoff, removal), and a job id already waiting must stay a no-op
 * (the reconciler relies on that).
 */
import { randomBytes } from 'node:crypto';
import { PipelineQueues, type EnqueueItem } from '../pipeline/queues';
import { REDIS_URL } from './support/hub';

const PARTITIONS = 4;
let queues: PipelineQueues;

beforeAll(() => {
  queues = new PipelineQueues({ redisUrl: REDIS_URL, prefix: `test-enqueue-${randomBytes(3).toString('hex')}`, partitions: PARTITIONS, attempts: 7, backoffMs: 123 });
});

afterAll(async () => {
  await queues.removeAllKeys();
  await queues.close();
});

it('one call spreads jobs over their partitions, in order, with the default options; a waiting id is not added twice', async () => {
  const items: EnqueueItem[] = Array.from({ length: 40 }, (_, i) => ({ rawId: 1000 + i, patientKey: i % 3 === 0 ? null : `m1|MRN${i % 7}` }));
  await queues.enqueue(items);
  // Again, with two of them and one new: only the new one is added.
  await queues.enqueue([items[5]!, { rawId: 2000, patientKey: 'm1|MRN1' }, items[9]!]);
  const all = [...items, { rawId: 2000, patientKey: 'm1|MRN1' }];
  for (let p = 0; p < PARTITIONS; p++) {
    const expected = all.filter((item) => queues.partitionFor(item) === p).map((item) => `raw-${item.rawId}`);
    const jobs = await queues.queues[p]!.getJobs(['waiting'], 0, -1, true);
    expect(jobs.map((job) => job.id)).toEqual(expected);
    for (const job of jobs) {
      expect(job.name).toBe('message');
      expect(job.data).toEqual({ rawId: Number(job.id!.slice('raw-'.length)) });
      expect(job.opts).toMatchObject({ attempts: 7, backoff: { type: 'exponential', delay: 123 }, removeOnComplete: true, removeOnFail: true });
    }
  }
  expect((await queues.depths()).waiting).toBe(41);
});

it('a replay suffix makes a new job id; an empty call writes nothing', async () => {
  await queues.enqueue([]);
  await queues.enqueue([{ rawId: 1000, patientKey: null }], '-replay-1');
  const p = queues.partitionFor({ rawId: 1000, patientKey: null });
  const ids = (await queues.queues[p]!.getJobs(['waiting'], 0, -1, true)).map((job) => job.id);
  expect(ids).toContain('raw-1000-replay-1');
  expect((await queues.depths()).waiting).toBe(42);
});

it('the jobs are written when enqueue() is called, before any later command on the connection', async () => {
  // The intake releases its ACKs right after calling enqueue() (adapters/intake.ts): a process
  // killed after an ACK must already have written that message's job.
  const item = { rawId: 3000, patientKey: 'm1|MRN3000' };
  const handedOver = queues.enqueue([item]);
  const jobKey = queues.queues[queues.partitionFor(item)]!.toKey('raw-3000');
  // Sent on the same connection after the call returned, so Redis runs it after whatever the call wrote.
  expect(await queues.redis.exists(jobKey)).toBe(1);
  await handedOver;
});
