/**
 * MLLP framing and throughput shapes against the real listener, intake and PostgreSQL: a frame
 * dribbled one byte per TCP chunk, 1,000 pipelined messages on one connection (ACKs in order),
 * 20 concurrent connections, and group commit (fewer raw-store writes than messages).
 */
import net from 'node:net';
import { frame, MllpFramer } from '../adapters/mllp/framer';
import { bloodCount, encodeAs, MllpClient, simAdt, simOru, simPatient } from '../cli/simulate';
import { countRows, type ListeningHub, msaOf, rawRows, sleep, startMllpHub } from './support/mllp';

describe('MLLP framing over real sockets', () => {
  let env: ListeningHub;

  beforeAll(async () => {
    env = await startMllpHub('mllp_framing', [{ id: 'his' }]);
  });

  afterAll(async () => {
    jest.restoreAllMocks();
    await env?.close();
  });

  it('one frame written as 500 separate one-byte TCP chunks → one AA, one row', async () => {
    const controlId = 'DRIP-1';
    const base = simAdt({ controlId, patient: simPatient(1) }, 'A08');
    // Pad PV1 so that the framed message is exactly 500 bytes.
    const padding = 500 - frame(encodeAs(base, 'UTF-8')).length;
    expect(padding).toBeGreaterThan(0);
    const message = encodeAs(base.replace(/\r$/, `|${'x'.repeat(padding - 1)}\r`), 'UTF-8');
    const framed = frame(message);
    expect(framed).toHaveLength(500);

    const before = await countRows(env.hub);
    // A pass-through spy (behaviour unchanged) shows how the bytes really arrived at the listener.
    const push = jest.spyOn(MllpFramer.prototype, 'push');
    const socket = net.connect(env.ports.his!, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const received: Buffer[] = [];
    socket.on('data', (c: Buffer) => received.push(c));
    try {
      for (let i = 0; i < framed.length; i++) {
        await new Promise<void>((resolve, reject) => socket.write(framed.subarray(i, i + 1), (e) => (e ? reject(e) : resolve())));
        await sleep(1);
      }
      await waitForBytes(received, (all) => all.includes(Buffer.from([0x1c, 0x0d])));
      await sleep(200); // room for a wrong second ACK to show up
    } finally {
      socket.destroy();
    }
    await sleep(200); // and for a wrongly left-over partial frame to be stored on close
    const chunkSizes = push.mock.calls.map(([chunk]) => chunk.length);
    push.mockRestore();
    expect(chunkSizes.reduce((a, b) => a + b, 0)).toBe(500);
    // Nagle is off and we waited between writes: nearly every byte is its own chunk.
    expect(chunkSizes.filter((n) => n === 1).length).toBeGreaterThanOrEqual(400);

    const acks = splitFrames(Buffer.concat(received));
    expect(acks).toHaveLength(1);
    expect(msaOf(acks[0]!)).toEqual({ code: 'AA', controlId });
    const rows = await rawRows(env.hub, 'control_id = $1', [controlId]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.content.equals(message)).toBe(true);
    expect(rows[0]!.status).toBe('queued');
    expect(await countRows(env.hub)).toBe(before + 1);
  });

  it('1,000 pipelined messages on one connection → 1,000 ACKs in order, 1,000 rows, group-committed', async () => {
    const query = jest.spyOn(env.hub.runtime.db, 'query');
    const client = await MllpClient.connect(env.ports.his!);
    try {
      const ids = Array.from({ length: 1000 }, (_, i) => `PIPE-${String(i).padStart(4, '0')}`);
      const frames = ids.map((controlId, i) => frame(encodeAs(simOru({ controlId, patient: simPatient(i) }, bloodCount), 'UTF-8')));
      // Register every ACK waiter before writing: the client drops ACKs nobody waits for.
      const acks = ids.map(() => client.nextAck());
      client.write(Buffer.concat(frames));
      const received = await Promise.all(acks);
      expect(received.map((a) => msaOf(a))).toEqual(ids.map((controlId) => ({ code: 'AA', controlId })));
    } finally {
      await client.close();
    }
    const rows = await rawRows(env.hub, `control_id LIKE 'PIPE-%'`);
    expect(rows).toHaveLength(1000);
    expect(new Set(rows.map((r) => r.control_id)).size).toBe(1000);
    expect(rows.every((r) => r.status === 'queued' && r.revision === 1)).toBe(true);
    // Stored in arrival order (ids ascend with control ids).
    expect(rows.map((r) => r.control_id)).toEqual([...rows.map((r) => r.control_id)].sort());
    // Each group commit is one multi-row INSERT into raw_message.
    const transactions = query.mock.calls.filter(([text]) => text.includes('INSERT INTO raw_message')).length;
    query.mockRestore();
    expect(transactions).toBeGreaterThan(0);
    expect(transactions).toBeLessThan(1000 / 5);
  });

  it('20 concurrent connections × 50 messages → 1,000 AA and 1,000 rows', async () => {
    const before = await countRows(env.hub);
    const clients = await Promise.all(Array.from({ length: 20 }, () => MllpClient.connect(env.ports.his!)));
    try {
      const results = await Promise.all(
        clients.map(async (client, c) => {
          const codes: Array<{ code: string; controlId: string }> = [];
          for (let i = 0; i < 50; i++) {
            const controlId = `CONC-${c}-${i}`;
            const ack = await client.send(encodeAs(simAdt({ controlId, patient: simPatient(c * 50 + i) }, 'A08'), 'UTF-8'));
            codes.push(msaOf(ack));
            expect(msaOf(ack)).toEqual({ code: 'AA', controlId });
          }
          return codes;
        }),
      );
      expect(results.flat().filter((r) => r.code === 'AA')).toHaveLength(1000);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
    expect((await countRows(env.hub)) - before).toBe(1000);
    const rows = await rawRows(env.hub, `control_id LIKE 'CONC-%'`);
    expect(rows).toHaveLength(1000);
    expect(new Set(rows.map((r) => r.control_id)).size).toBe(1000);
  });
});

/** Bodies of the complete MLLP frames in `bytes`. */
function splitFrames(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const start = bytes.indexOf(0x0b, at);
    const end = bytes.indexOf(Buffer.from([0x1c, 0x0d]), start);
    if (start < 0 || end < 0) return out;
    out.push(bytes.subarray(start + 1, end));
    at = end + 2;
  }
}

async function waitForBytes(received: Buffer[], done: (all: Buffer) => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done(Buffer.concat(received))) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the ACK');
    await sleep(10);
  }
}
