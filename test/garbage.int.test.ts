/**
 * Bad input over MLLP is data, not a crash: every bad frame is NAKed with an ERR segment, its bytes
 * are kept in raw_message (status quarantined) with a quarantine row carrying a machine-readable
 * code, and the connection stays usable. Also: oversize frames (HL7 error 104, first bytes kept,
 * flag `truncated`), bytes outside any frame (`framing`) and a connection closed mid-frame
 * (`incomplete`).
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { frame } from '../adapters/mllp/framer';
import { sha256 } from '../hub/rawStore';
import { encodeAs, MllpClient, simAdt, simPatient } from '../cli/simulate';
import { waitFor } from './support/hub';
import { countRows, type ListeningHub, msaOf, quarantineOf, rawRows, type RawRow, segmentOf, sleep, startMllpHub } from './support/mllp';

const valid = (controlId: string) => encodeAs(simAdt({ controlId, patient: simPatient(7) }, 'A08'), 'UTF-8');

describe('garbage over MLLP', () => {
  let env: ListeningHub;

  beforeAll(async () => {
    env = await startMllpHub('garbage', [{ id: 'his' }, { id: 'small', maxMessageBytes: 4096 }]);
  });

  afterAll(async () => {
    await env?.close();
  });

  async function rowsWithContent(bytes: Buffer): Promise<RawRow[]> {
    return rawRows(env.hub, 'sha256 = $1', [sha256(bytes)]);
  }

  /** The one quarantined raw row holding exactly `bytes`, and its quarantine codes. */
  async function quarantined(bytes: Buffer): Promise<{ row: RawRow; codes: string[] }> {
    const rows = await rowsWithContent(bytes);
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.content.equals(bytes)).toBe(true);
    expect(row.status).toBe('quarantined');
    const entries = await quarantineOf(env.hub, row.id);
    for (const q of entries) {
      expect(q.stage).toBe('intake');
      expect(q.outcome.resourceType).toBe('OperationOutcome');
      expect(q.outcome.issue[0]!.details!.coding[0]!.code).toBe(q.code);
    }
    return { row, codes: entries.map((q) => q.code) };
  }

  function expectNak(ack: Buffer, codes: string[], conditions: string[]): string[] {
    expect(codes).toContain(msaOf(ack).code);
    const err = segmentOf(ack, 'ERR');
    expect(err).toBeDefined();
    expect(conditions).toContain((err![3] ?? '').split('^')[0]);
    expect(err![3]).toMatch(/\^HL70357$/);
    return err!;
  }

  it('one connection: not-HL7, bad delimiters, truncated MSH, 10 MB of random bytes, then a valid message', async () => {
    const client = await MllpClient.connect(env.ports.his!);
    try {
      // 1. Text that is not HL7 at all.
      const notHl7 = Buffer.from('Hello, this is a status report, not an HL7 message.\r', 'utf8');
      let ack = await client.sendRaw(frame(notHl7));
      expect(msaOf(ack).code).toBe('AR');
      expect(expectNak(ack, ['AR'], ['100'])[8]).toMatch(/^not-hl7: /);
      expect((await quarantined(notHl7)).codes).toEqual(['not-hl7']);

      // 2. MSH with broken delimiters.
      const badDelimiters = Buffer.from('MSH|^~ garbage garbage garbage\rPID|1\r', 'latin1');
      ack = await client.sendRaw(frame(badDelimiters));
      expectNak(ack, ['AE', 'AR'], ['100']);
      expect((await quarantined(badDelimiters)).codes).toEqual(['structure']);

      // 3. Cut in the middle of MSH-9: no MSH-10.
      const truncated = Buffer.from('MSH|^~\\&|HIS|HOSP|YILIAN|HUB|20261123093000||ADT^A0', 'latin1');
      ack = await client.sendRaw(frame(truncated));
      expect(msaOf(ack).code).toBe('AE');
      const err = expectNak(ack, ['AE'], ['100']);
      expect(err[8]).toMatch(/^structure: MSH-10/);
      // ERR-2 names MSH-10. (Its ERL components are escaped into one: a known bug, pinned with
      // it.failing in adapters/ack.test.ts; accept either form here.)
      expect(['MSH^1^10', 'MSH\\S\\1\\S\\10']).toContain(err[2]);
      const truncatedRow = await quarantined(truncated);
      expect(truncatedRow.codes).toEqual(['structure']);
      expect(truncatedRow.row.sender).toBe('HIS|HOSP');

      // 4. 10 MB of random bytes (no FS inside, so it stays one frame).
      const random = randomBytes(10 * 1024 * 1024);
      for (let i = 0; i < random.length; i++) if (random[i] === 0x1c) random[i] = 0x00;
      ack = await client.sendRaw(frame(random));
      expectNak(ack, ['AE', 'AR'], ['100', '102']);
      const randomRow = await quarantined(random);
      expect(randomRow.codes).toHaveLength(1);
      expect(['charset', 'not-hl7', 'structure']).toContain(randomRow.codes[0]);

      // 5. The connection still works.
      const good = valid('AFTER-GARBAGE');
      ack = await client.send(good);
      expect(msaOf(ack)).toEqual({ code: 'AA', controlId: 'AFTER-GARBAGE' });
      const rows = await rowsWithContent(good);
      expect(rows.map((r) => r.status)).toEqual(['queued']);
    } finally {
      client.destroy();
    }
  });

  it('a frame above maxMessageBytes (4096) → AR with ERR-3 104, first bytes kept with flag truncated, connection usable', async () => {
    const client = await MllpClient.connect(env.ports.small!);
    try {
      const big = Buffer.from(simAdt({ controlId: 'TOO-BIG', patient: simPatient(8) }, 'A08').replace(/\r$/, `|${'y'.repeat(10_000)}\r`), 'utf8');
      expect(big.length).toBeGreaterThan(10_000);
      const ack = await client.sendRaw(frame(big));
      expect(msaOf(ack)).toEqual({ code: 'AR', controlId: 'TOO-BIG' });
      const err = expectNak(ack, ['AR'], ['104']);
      expect(err[3]).toBe('104^Value too long^HL70357');

      const head = big.subarray(0, 4096);
      const { row, codes } = await quarantined(head);
      expect(codes).toEqual(['too-large']);
      expect(row.flags).toContain('truncated');
      expect(row.control_id).toBe('TOO-BIG');
      expect(row.channel_id).toBe('small');

      const good = valid('AFTER-BIG');
      const next = await client.send(good);
      expect(msaOf(next)).toEqual({ code: 'AA', controlId: 'AFTER-BIG' });
    } finally {
      client.destroy();
    }
  });

  it('bytes outside any frame are stored and quarantined `framing`; the next frame is ACKed normally', async () => {
    const client = await MllpClient.connect(env.ports.his!);
    try {
      const junk = Buffer.from(`stray bytes between frames ${randomBytes(4).toString('hex')}`, 'latin1');
      const good = valid('AFTER-JUNK');
      const ack = await client.sendRaw(Buffer.concat([junk, frame(good)]));
      // Exactly one ACK, for the message: bytes outside a frame are not answered.
      expect(msaOf(ack)).toEqual({ code: 'AA', controlId: 'AFTER-JUNK' });
      await waitFor(async () => (await rowsWithContent(junk)).length === 1, 10_000, 'the junk row');
      expect((await quarantined(junk)).codes).toEqual(['framing']);
    } finally {
      client.destroy();
    }
  });

  it('a peer that sends 10 KB without any framing: every byte is kept (framing), a later frame is still ACKed', async () => {
    const client = await MllpClient.connect(env.ports.small!);
    try {
      const unframed = Buffer.from(randomBytes(5000).toString('hex'), 'latin1'); // 10,000 bytes, no VT
      const ack = await client.sendRaw(Buffer.concat([unframed, frame(valid('AFTER-UNFRAMED'))]));
      expect(msaOf(ack)).toEqual({ code: 'AA', controlId: 'AFTER-UNFRAMED' });
      const framingRows = async () =>
        (
          await env.hub.runtime.db.query<{ content: Buffer }>(
            `SELECT r.content FROM raw_message r JOIN quarantine q ON q.raw_id = r.id
              WHERE r.channel_id = 'small' AND q.code = 'framing' AND r.status = 'quarantined' ORDER BY r.id`,
          )
        ).rows;
      await waitFor(async () => (await framingRows()).reduce((n, r) => n + r.content.length, 0) >= unframed.length, 10_000, 'the unframed bytes');
      // In order, nothing lost, nothing added (possibly in several pieces of at most a few KB).
      expect(Buffer.concat((await framingRows()).map((r) => r.content)).equals(unframed)).toBe(true);
    } finally {
      client.destroy();
    }
  });

  it('bytes outside a frame just before the sender closes are quarantined `framing` too', async () => {
    const client = await MllpClient.connect(env.ports.his!);
    const junk = Buffer.from(`trailing junk ${randomBytes(4).toString('hex')}`, 'latin1');
    const ack = await client.sendRaw(Buffer.concat([frame(valid('BEFORE-TRAILING')), junk]));
    expect(msaOf(ack).code).toBe('AA');
    await client.close();
    await waitFor(async () => (await rowsWithContent(junk)).length === 1, 10_000, 'the trailing junk row');
    expect((await quarantined(junk)).codes).toEqual(['framing']);
  });

  it('a connection closed mid-frame leaves a quarantined `incomplete` raw row with the bytes received', async () => {
    const controlId = `CUT-${randomBytes(3).toString('hex')}`;
    const partial = Buffer.from(`MSH|^~\\&|HIS|HOSP|YILIAN|HUB|20261123093000||ADT^A08^ADT_A01|${controlId}|P|2.5\rPID|1||P1`, 'latin1');
    const before = await countRows(env.hub);
    const socket = net.connect(env.ports.his!, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    await new Promise<void>((resolve) => socket.write(Buffer.concat([Buffer.from([0x0b]), partial]), () => resolve()));
    await sleep(50);
    socket.destroy();
    // Stored as received: the start block and the partial message.
    const received = Buffer.concat([Buffer.from([0x0b]), partial]);
    await waitFor(async () => (await rowsWithContent(received)).length === 1, 10_000, 'the incomplete row');
    const { row, codes } = await quarantined(received);
    expect(codes).toEqual(['incomplete']);
    // The header is still read from what arrived, so the row can be found by its control id.
    expect(row.control_id).toBe(controlId);
    expect(await countRows(env.hub)).toBe(before + 1);
  });
});
