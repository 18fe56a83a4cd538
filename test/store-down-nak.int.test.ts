/**
 * While PostgreSQL is away, a listener answers every frame with a NAK in the sender's
 * acknowledgment mode — AR (original) or CR (enhanced) with ERR 207, "resend later" — never AA and
 * never silence; once the store is back, the next message is AA'd at once (the pool reconnects on
 * its next query). The store goes away for real: the hub reaches PostgreSQL through a TCP relay
 * that the test closes.
 */
import net from 'node:net';
import { RawIntake } from '../adapters/intake';
import { MllpListener } from '../adapters/mllp/listener';
import { frame } from '../adapters/mllp/framer';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { mllpChannelSchema, type MemberConfig } from '../hub/config';
import { openHubDb } from '../hub/db';
import type { HubDb } from '../hub/sql';
import { startTestHub, type TestHub } from './support/hub';
import { AckFrames, segmentOf } from './support/mllp';
import { PgRelay } from './support/pgRelay';

let hub: TestHub;
let relay: PgRelay;
let db: HubDb;
const listeners: MllpListener[] = [];

beforeAll(async () => {
  hub = await startTestHub('storedown');
  relay = new PgRelay();
  await relay.listen();
  db = await openHubDb({ databaseUrl: relay.urlThrough(hub.databaseUrl), poolSize: 2 });
});

afterAll(async () => {
  for (const l of listeners) await l.close();
  await db.close().catch(() => undefined);
  await relay.close();
  await hub.close();
});

async function listen(ackMode: 'original' | 'enhanced'): Promise<number> {
  const member: MemberConfig = { id: 'm1', name: 'M1', tier: 'secondary', utcOffset: '+08:00', channels: [] } as unknown as MemberConfig;
  const channel = mllpChannelSchema.parse({ id: `his-${ackMode}`, kind: 'mllp', host: '127.0.0.1', port: 0, ackMode });
  const listener = new MllpListener(member, channel, new RawIntake(db, hub.runtime.queues));
  listeners.push(listener);
  return listener.start();
}

/** One frame on a new connection: the ACK's segments, or 'closed' if the connection ends without one. */
function exchange(port: number, bytes: Buffer): Promise<string[][] | 'closed'> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(frame(bytes)));
    const acks = new AckFrames();
    socket.on('data', (chunk: Buffer) => {
      const ack = acks.push(chunk)[0];
      if (!ack) return;
      socket.destroy();
      resolve(['MSH', 'MSA', 'ERR'].map((name) => segmentOf(ack, name) ?? []));
    });
    socket.on('close', () => resolve('closed'));
    socket.on('error', () => undefined);
  });
}

const message = (controlId: string, enhanced: boolean) => {
  const text = simAdt({ controlId, patient: simPatient(1, 'N'), address: 'x', time: '20261206080000' });
  // MSH-15 AL: the sender asks for accept ACKs (enhanced mode).
  return encodeAs(enhanced ? text.replace(/^(MSH(?:\|[^|\r]*){13})\|[^|\r]*/, '$1|AL') : text, 'UTF-8');
};

test('store away: AR (original) and CR (enhanced) with ERR 207; store back: AA within 5 s', async () => {
  const original = await listen('original');
  const enhanced = await listen('enhanced');
  expect(await exchange(original, message('UP-1', false))).not.toBe('closed');

  await relay.close();
  const [msh, msa, err] = (await exchange(original, message('DOWN-1', false))) as string[][];
  expect(msh![0]).toBe('MSH');
  expect(msa!.slice(0, 3)).toEqual(['MSA', 'AR', 'DOWN-1']);
  expect(err!.join('|')).toContain('207');
  const enhancedAnswer = (await exchange(enhanced, message('DOWN-2', true))) as string[][];
  expect(enhancedAnswer[1]!.slice(0, 3)).toEqual(['MSA', 'CR', 'DOWN-2']);
  expect(enhancedAnswer[2]!.join('|')).toContain('207');

  await relay.listen();
  const back = Date.now();
  let answer: string[][] | 'closed' = 'closed';
  for (let i = 0; Date.now() - back < 5000; i++) {
    answer = await exchange(original, message(`BACK-${i}`, false));
    if (answer !== 'closed' && answer[1]![1] === 'AA') break;
  }
  expect(answer !== 'closed' && answer[1]![1]).toBe('AA');
  console.log(`store-down: store back → first AA ${Date.now() - back} ms`);
  const stored = await hub.runtime.db.query<{ control_id: string }>(`SELECT control_id FROM raw_message WHERE control_id LIKE 'DOWN-%'`);
  expect(stored.rows).toEqual([]);
});
