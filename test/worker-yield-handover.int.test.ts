/**
 * A partition a process yields goes to the waiting process at once (pipeline/worker.ts
 * `wakeOthers`). The yielded job's completion fetches nothing and, unlike an add, sets no BullMQ
 * marker, and every Worker of that partition — the waiting process's, and the yielder's own once
 * it resumes after 500 ms — was asleep on that marker: the partition stood still until one of them
 * polled again (drainDelay, 5 s), and a second process joined a 20,000-message backlog 5.7 s late
 * (bench/RESULTS.md). Two in-process workers on one hub, two partitions: the first runs both until
 * the second starts; the partition the first then yields must run again within a batch or two of
 * the first's other partition. Without the wake this run measured 18.
 */
import type { MemberConfig } from '../hub/config';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { partitionOf } from '../pipeline/queues';
import { PipelineWorker } from '../pipeline/worker';
import { startTestHub, TEST_CHANNEL, waitFor, type TestHub } from './support/hub';

const PARTITIONS = 2;
const PATIENTS = 40;
const MESSAGES = 2560;
const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', port: 0 }] };

let hub: TestHub;
const workers: PipelineWorker[] = [];

beforeAll(async () => {
  hub = await startTestHub('yield_handover', { members: [memberConfig], pipeline: { partitions: PARTITIONS } });
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.close()));
  await hub?.close();
});

test('the partition a process yields is taken at once by the waiting process, not left standing until its next poll', async () => {
  const member = hub.config.members[0] as MemberConfig;
  for (let i = 0; i < MESSAGES; i += 512) {
    await Promise.all(
      Array.from({ length: Math.min(512, MESSAGES - i) }, (_, k) =>
        hub.runtime.intake.receive({ member, channel: TEST_CHANNEL, bytes: encodeAs(simAdt({ controlId: `Y${i + k}`, patient: simPatient((i + k) % PATIENTS, 'Y') }), 'UTF-8') }),
      ),
    );
  }
  await hub.runtime.intake.drain();
  const partitionOfRaw = new Map(
    (await hub.runtime.db.query<{ id: string; patient_key: string }>(`SELECT id, patient_key FROM raw_message`)).rows.map((r) => [Number(r.id), partitionOf(r.patient_key, PARTITIONS)]),
  );

  const ctx = { db: hub.runtime.db, config: hub.config };
  // Both workers' batches on one timeline. runner.ts `runBatch` reports a batch's messages in one
  // synchronous loop, so a report after a microtask has run starts another batch.
  const timeline: Array<{ worker: 'first' | 'second'; partition: number; batch: number }> = [];
  let batch = 0;
  let inBatch = false;
  const report = (worker: 'first' | 'second') => (rawId: number) => {
    if (!inBatch) {
      batch++;
      inBatch = true;
      queueMicrotask(() => (inBatch = false));
    }
    timeline.push({ worker, partition: partitionOfRaw.get(rawId)!, batch });
  };
  const first = new PipelineWorker(ctx, hub.runtime.queues, { reconcile: false, onProcessed: report('first') });
  workers.push(first);
  await first.start();
  await waitFor(() => new Set(timeline.map((r) => r.partition)).size === PARTITIONS, 120_000, 'the first worker running both partitions');

  const second = new PipelineWorker(ctx, hub.runtime.queues, { reconcile: false, onProcessed: report('second') });
  workers.push(second);
  await second.start();
  await waitFor(
    async () => (await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE status = 'processed'`)).rows[0]!.n === MESSAGES,
    300_000,
    'the backlog drained',
  );

  // The partition the second worker took, and what the first ran between its last batch of that
  // partition and the second's first: its other partition's batches, while the taken one stood
  // still. With the wake, the second's first batch (and the first's one beside it, sharing the
  // CPU); without it, batch after batch for the second's whole 5 s poll.
  const bySecond = timeline.filter((r) => r.worker === 'second');
  const taken = bySecond[0]!.partition;
  const handedAt = timeline.findIndex((r) => r.worker === 'second' && r.partition === taken);
  const lastByFirst = timeline.findLastIndex((r, i) => i < handedAt && r.worker === 'first' && r.partition === taken);
  const meanwhile = new Set(timeline.slice(lastByFirst + 1, handedAt).filter((r) => r.worker === 'first').map((r) => r.batch)).size;
  expect({ secondRan: bySecond.length > MESSAGES / 4, stoodStill: meanwhile <= 4, meanwhile }).toEqual({ secondRan: true, stoodStill: true, meanwhile });
}, 600_000);
