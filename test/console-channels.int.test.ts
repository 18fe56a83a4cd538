/**
 * The channels page's counters with the hourly rollup (hub/console/channels.ts, migration 11), on
 * real PostgreSQL and a real MLLP listener: messages received at known times (moved into the past
 * before the page is first read, as if they had arrived then) give exact hour / day / baseline
 * counts; whole hours come from the rollup afterwards (their raw rows can even be gone); quarantined
 * counts stay live; a second rollup adds nothing.
 */
import { createServer, type AddressInfo } from 'node:net';
import { MllpListener } from '../adapters/mllp/listener';
import type { MllpChannelConfig } from '../hub/config';
import { channelOverview, rollUpChannelHours } from '../hub/console/channels';
import { encodeAs, MllpClient, simAdt, simPatient } from '../cli/simulate';
import { startTestHub, type TestHub } from './support/hub';

let hub: TestHub;
let listener: MllpListener;
let port: number;

beforeAll(async () => {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  hub = await startTestHub('console_channels', { members: [{ id: 'm1', name: 'County', tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', host: '127.0.0.1', port }] }] });
  const member = hub.config.members[0]!;
  listener = new MllpListener(member, member.channels[0] as MllpChannelConfig, hub.runtime.intake);
  await listener.start();
});

afterAll(async () => {
  await listener?.close();
  await hub?.close();
});

let control = 0;
/** Send n messages over MLLP (GB18030 bytes on this UTF-8 channel are NAKed and quarantined), then date them `ago` back. */
async function receivedAgo(ago: string, n: number, charset: 'UTF-8' | 'GB18030' = 'UTF-8'): Promise<number[]> {
  const client = await MllpClient.connect(port);
  for (let i = 0; i < n; i++) {
    const text = simAdt({ controlId: `R-${++control}`, patient: simPatient(control, 'R'), ...(charset === 'UTF-8' ? { charset: 'UNICODE UTF-8' } : {}) });
    await client.send(encodeAs(text, charset));
  }
  await client.close();
  const ids = (await hub.runtime.db.query<{ id: string }>(`SELECT id FROM raw_message ORDER BY id DESC LIMIT $1`, [n])).rows.map((r) => Number(r.id));
  await hub.runtime.db.query(`UPDATE raw_message SET received_at = received_at - $2::interval WHERE id = ANY($1::bigint[])`, [ids, ago]);
  return ids;
}

const his = async () => (await channelOverview(hub.runtime.db, hub.config)).find((c) => c.channel === 'his')!;

test('exact windows from the rollup plus the raw edges; whole hours are read from the rollup; quarantined stays live', async () => {
  await receivedAgo('0 minutes', 2);
  const threeHours = await receivedAgo('3 hours', 3);
  await receivedAgo('23 hours 30 minutes', 4);
  await receivedAgo('24 hours 30 minutes', 5);
  await receivedAgo('26 hours', 6);
  const [quarantined] = await receivedAgo('5 hours', 1, 'GB18030');

  const first = await his();
  expect(first.hour).toEqual({ received: 2, acked: 2, nacked: 0, quarantined: 0 });
  expect(first.day).toEqual({ received: 10, acked: 9, nacked: 1, quarantined: 1 });
  // The 24 hours before the last one: 3 + 4 + 5 + 1.
  expect(first.baselinePerHour).toBeCloseTo(13 / 24, 10);

  // Every closed hour older than two hours went into the rollup (the 26-hour-old ones too: the
  // rollup starts at the 26th hour back), none of the last two hours.
  const rolled = await hub.runtime.db.query<{ received: number; acked: number; nacked: number }>(
    `SELECT sum(received)::int AS received, sum(acked)::int AS acked, sum(nacked)::int AS nacked FROM console_channel_hour WHERE member_id = 'm1' AND channel_id = 'his'`,
  );
  expect(rolled.rows[0]).toEqual({ received: 3 + 4 + 5 + 6 + 1, acked: 18, nacked: 1 });
  const state = await hub.runtime.db.query<{ lag_ok: boolean }>(`SELECT rolled_until = date_trunc('hour', now() - interval '2 hours') AS lag_ok FROM console_rollup_state`);
  expect(state.rows).toEqual([{ lag_ok: true }]);

  // A second rollup in the same hour adds nothing; the figures are the same.
  await rollUpChannelHours(hub.runtime.db);
  const again = await hub.runtime.db.query<{ n: number }>(`SELECT sum(received)::int AS n FROM console_channel_hour`);
  expect(again.rows[0]!.n).toBe(19);
  expect(await his()).toMatchObject({ hour: first.hour, day: first.day, baselinePerHour: first.baselinePerHour });

  // Whole hours come from the rollup: the three-hour-old messages count even once their raw rows are gone.
  await hub.runtime.db.query(`DELETE FROM raw_message WHERE id = ANY($1::bigint[])`, [threeHours]);
  expect((await his()).day.received).toBe(10);

  // Quarantined is live: the message fixed (here: marked processed) leaves the count at once.
  await hub.runtime.db.query(`UPDATE raw_message SET status = 'processed' WHERE id = $1`, [quarantined]);
  const fixed = await his();
  expect(fixed.day).toEqual({ received: 10, acked: 9, nacked: 1, quarantined: 0 });
});
