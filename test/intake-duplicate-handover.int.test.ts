/**
 * A resend of a message that is stored but still queued is handed to the pipeline again
 * (adapters/intake.ts): a listener killed between the commit and its hand-over leaves the message
 * out of Redis, and the sender, which got no ACK, resends it as a duplicate. A resend of a message
 * already processed is not handed over.
 */
import { RawIntake, type Inbound } from '../adapters/intake';
import { openHubDb } from '../hub/db';
import type { MemberConfig } from '../hub/config';
import type { HubDb } from '../hub/sql';
import { bloodCount, simOru, simPatient } from '../cli/simulate';
import { startTestHub, type TestHub } from './support/hub';

const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'lis', kind: 'mllp', port: 0 }] };
const channel = { id: 'lis', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

let hub: TestHub;
let member: MemberConfig;
let db: HubDb;

beforeAll(async () => {
  hub = await startTestHub('intake_dup_handover', { members: [memberConfig] });
  member = hub.config.members[0]! as MemberConfig;
  db = await openHubDb({ databaseUrl: hub.databaseUrl, poolSize: 2 });
});

afterAll(async () => {
  await db?.close();
  await hub?.close();
});

const inbound = (i: number): Inbound => ({ member, channel, bytes: Buffer.from(simOru({ controlId: `DUP-${i}`, patient: simPatient(i, 'D') }, bloodCount), 'utf8') });

it('a resend of a queued message is handed over again, once per batch; of a processed one, not', async () => {
  const handed: number[][] = [];
  // The first hand-over is lost, as when the listener is killed right after the commit.
  let lose = true;
  const intake = new RawIntake(db, {
    enqueue: async (items) => {
      if (lose) {
        lose = false;
        throw new Error('listener gone');
      }
      handed.push(items.map((i) => i.rawId));
    },
  }, { log: () => undefined });
  const first = await intake.receive(inbound(1));
  expect(first.outcome).toBe('stored');
  await intake.drain();
  expect(handed).toEqual([]);
  // Two resends in one batch: one hand-over of the message.
  const resends = await Promise.all([intake.receive(inbound(1)), intake.receive(inbound(1))]);
  expect(resends.map((r) => [r.outcome, r.rawId])).toEqual([
    ['duplicate', first.rawId],
    ['duplicate', first.rawId],
  ]);
  await intake.drain();
  expect(handed).toEqual([[first.rawId]]);
  // Processed: a resend is only counted.
  await db.query(`UPDATE raw_message SET status = 'processed' WHERE id = $1`, [first.rawId]);
  expect((await intake.receive(inbound(1))).outcome).toBe('duplicate');
  await intake.drain();
  expect(handed).toEqual([[first.rawId]]);
});

it('hand-overs go one at a time in commit order; with none in flight, a group is handed over before its ACKs', async () => {
  const calls: number[][] = [];
  const events: string[] = [];
  let replyToFirst!: () => void;
  const intake = new RawIntake(db, {
    enqueue: (items) => {
      calls.push(items.map((i) => i.rawId));
      events.push(`handed ${items.map((i) => i.rawId).join(',')}`);
      // The first hand-over's reply is slow (Redis busy, a failover): what follows must wait for it.
      return calls.length === 1 ? new Promise<void>((resolve) => (replyToFirst = resolve)) : Promise.resolve();
    },
  });
  const first = await intake.receive(inbound(10));
  events.push(`acked ${first.rawId}`);
  // Nothing was in flight: the jobs were written before the ACK was released.
  expect(events).toEqual([`handed ${first.rawId}`, `acked ${first.rawId}`]);
  const more = [await intake.receive(inbound(11)), await intake.receive(inbound(12))];
  expect(calls).toEqual([[first.rawId]]);
  replyToFirst();
  await intake.drain();
  // Then the two stored meanwhile, together and in their order.
  expect(calls).toEqual([[first.rawId], more.map((r) => r.rawId)]);
});
