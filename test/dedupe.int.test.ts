/**
 * Dedupe and revisions over MLLP: an identical resend is answered with the very ACK bytes of the
 * first delivery and stored once (duplicate_count counts it); the same MSH-10 with changed content
 * (a corrected result) is a new revision, flagged, and gets its own AA.
 */
import { frame } from '../adapters/mllp/framer';
import { bloodCount, encodeAs, MllpClient, simOru, simPatient } from '../cli/simulate';
import { countRows, type ListeningHub, msaOf, rawRows, startMllpHub } from './support/mllp';

describe('dedupe and revisions over MLLP', () => {
  let env: ListeningHub;
  let client: MllpClient;

  beforeAll(async () => {
    env = await startMllpHub('dedupe', [{ id: 'lis' }]);
    client = await MllpClient.connect(env.ports.lis!);
  });

  afterAll(async () => {
    client?.destroy();
    await env?.close();
  });

  const controlId = 'ORU-DEDUPE-1';
  const patient = simPatient(42);
  const original = encodeAs(simOru({ controlId, patient }, bloodCount), 'UTF-8');
  const corrected = encodeAs(
    simOru({ controlId, patient }, bloodCount.map((r) => (r.code === 'HGB' ? { ...r, value: '128' } : r)), 'C'),
    'UTF-8',
  );
  let firstAck: Buffer;
  let revisedAck: Buffer;

  it('first delivery → AA, one row, revision 1, no duplicates', async () => {
    firstAck = await client.send(original);
    expect(msaOf(firstAck)).toEqual({ code: 'AA', controlId });
    const rows = await rawRows(env.hub);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ control_id: controlId, revision: 1, flags: [], duplicate_count: 0, status: 'queued' });
    expect(rows[0]!.content.equals(original)).toBe(true);
    expect(rows[0]!.ack!.equals(firstAck)).toBe(true);
  });

  it('an identical resend → the same ACK bytes, still one row, duplicate_count 1', async () => {
    const again = await client.send(Buffer.from(original));
    expect(again.equals(firstAck)).toBe(true);
    const rows = await rawRows(env.hub);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.duplicate_count).toBe(1);
  });

  it('a resend on a new connection is a duplicate too', async () => {
    const other = await MllpClient.connect(env.ports.lis!);
    try {
      const again = await other.send(Buffer.from(original));
      expect(again.equals(firstAck)).toBe(true);
    } finally {
      other.destroy();
    }
    const rows = await rawRows(env.hub);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.duplicate_count).toBe(2);
  });

  it('same MSH-10 with a changed OBX value → a second row, revision 2, flagged revised, a new AA', async () => {
    expect(corrected.equals(original)).toBe(false);
    revisedAck = await client.send(corrected);
    expect(msaOf(revisedAck)).toEqual({ code: 'AA', controlId });
    // A fresh ACK (its own MSH-10), not the stored one of revision 1.
    expect(revisedAck.equals(firstAck)).toBe(false);

    const rows = await rawRows(env.hub);
    expect(rows).toHaveLength(2);
    const [first, second] = rows;
    expect(first).toMatchObject({ revision: 1, duplicate_count: 2 });
    expect(first!.flags).not.toContain('revised');
    expect(second).toMatchObject({ control_id: controlId, sender: first!.sender, revision: 2, duplicate_count: 0, status: 'queued' });
    expect(second!.flags).toContain('revised');
    expect(second!.content.equals(corrected)).toBe(true);
    expect(second!.ack!.equals(revisedAck)).toBe(true);
  });

  it('resends of either revision are answered with that revision’s ACK and create no rows', async () => {
    const pipelined = [client.nextAck(), client.nextAck()];
    client.write(Buffer.concat([frame(corrected), frame(original)]));
    const [a, b] = await Promise.all(pipelined);
    expect(a!.equals(revisedAck)).toBe(true);
    expect(b!.equals(firstAck)).toBe(true);
    expect(await countRows(env.hub)).toBe(2);
    const rows = await rawRows(env.hub);
    expect(rows.map((r) => [r.revision, r.duplicate_count])).toEqual([
      [1, 3],
      [2, 1],
    ]);
  });

  it('within one group commit: two new revisions get 3 and 4, and an in-batch resend is a duplicate with the same ACK', async () => {
    const v3 = encodeAs(simOru({ controlId, patient }, bloodCount.map((r) => (r.code === 'WBC' ? { ...r, value: '6.3' } : r)), 'C'), 'UTF-8');
    const v4 = encodeAs(simOru({ controlId, patient }, bloodCount.map((r) => (r.code === 'WBC' ? { ...r, value: '6.4' } : r)), 'C'), 'UTF-8');
    const query = jest.spyOn(env.hub.runtime.db, 'query');
    const acks = [client.nextAck(), client.nextAck(), client.nextAck()];
    client.write(Buffer.concat([frame(v3), frame(v3), frame(v4)]));
    const [a3, a3again, a4] = await Promise.all(acks);
    // Each group commit is one multi-row INSERT into raw_message.
    const transactions = query.mock.calls.filter(([text]) => text.includes('INSERT INTO raw_message')).length;
    query.mockRestore();
    expect(transactions).toBe(1); // one write, one batch: this is the case being tested
    expect(msaOf(a3!)).toEqual({ code: 'AA', controlId });
    expect(a3again!.equals(a3!)).toBe(true);
    expect(msaOf(a4!)).toEqual({ code: 'AA', controlId });
    expect(a4!.equals(a3!)).toBe(false);

    const rows = await rawRows(env.hub);
    expect(rows.map((r) => [r.revision, r.duplicate_count, r.flags.includes('revised')])).toEqual([
      [1, 3, false],
      [2, 1, true],
      [3, 1, true],
      [4, 0, true],
    ]);
    expect(rows[2]!.content.equals(v3)).toBe(true);
    expect(rows[3]!.content.equals(v4)).toBe(true);
  });
});
