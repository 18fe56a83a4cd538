/**
 * A process that starts re-adds every queued message (pipeline/reconciler.ts), not only the stale
 * ones: the process before it may have been killed after committing and ACKing a message but
 * before its job reached Redis, and the stale sweep would leave that message waiting for minutes.
 */
import { RawIntake, type Inbound } from '../adapters/intake';
import type { MemberConfig } from '../hub/config';
import { Reconciler } from '../pipeline/reconciler';
import { bloodCount, simOru, simPatient } from '../cli/simulate';
import { startTestHub, type TestHub } from './support/hub';

const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'lis', kind: 'mllp', port: 0 }] };
const channel = { id: 'lis', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

let hub: TestHub;

beforeAll(async () => {
  hub = await startTestHub('reconciler_start', { members: [memberConfig] });
});

afterAll(async () => {
  await hub?.close();
});

it('the first sweep of a starting process re-adds a just-stored message whose hand-over was lost', async () => {
  const { db, queues } = hub.runtime;
  const member = hub.config.members[0]! as MemberConfig;
  const inbound: Inbound = { member, channel, bytes: Buffer.from(simOru({ controlId: 'LOST-1', patient: simPatient(1, 'L') }, bloodCount), 'utf8') };
  // Stored and ACKed, never handed over: the listener was killed in between.
  const intake = new RawIntake(db, { enqueue: () => Promise.reject(new Error('killed')) }, { log: () => undefined });
  const stored = await intake.receive(inbound);
  await intake.drain();
  const { patient_key: patientKey } = (await db.query<{ patient_key: string | null }>(`SELECT patient_key FROM raw_message WHERE id = $1`, [stored.rawId])).rows[0]!;
  const jobKey = queues.queues[queues.partitionFor({ rawId: stored.rawId, patientKey })]!.toKey(`raw-${stored.rawId}`);
  expect(await queues.redis.exists(jobKey)).toBe(0);
  // This Redis has not lost anything (its epoch is current): only the start sweep can find the message.
  await queues.redisLostState();
  await queues.markRedisRestored();
  const reconciler = new Reconciler(db, queues);
  await reconciler.tick();
  expect(await queues.redis.exists(jobKey)).toBe(1);
  // Later ticks are the stale sweep again: a message received a moment ago is left alone.
  await queues.redis.del(jobKey);
  await reconciler.tick();
  expect(await queues.redis.exists(jobKey)).toBe(0);
});
