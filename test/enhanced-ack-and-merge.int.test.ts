/**
 * Enhanced acknowledgment mode (MSH-15/16, commit ACKs) and the idle timeout over MLLP, and ADT^A40
 * merges through the pipeline: routed with the retired number so the merge follows everything sent under it.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ackCode, encodeAs, MllpClient, simAdt, simPatient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { SHARED_DATA, waitFor } from './support/hub';
import { startMllpHub, type ListeningHub } from './support/mllp';

let listening: ListeningHub;

beforeAll(async () => {
  listening = await startMllpHub('enhanced', [
    { id: 'auto', ackMode: 'auto' },
    { id: 'enh', ackMode: 'enhanced' },
    { id: 'idle', idleTimeoutMs: 300 },
  ]);
});

afterAll(async () => {
  await listening.close();
});

const sample = (name: string) => Buffer.from(readFileSync(path.join(SHARED_DATA, 'hl7v2', 'fhir-converter', 'messages', name), 'utf8').replace(/^\uFEFF/, '').replace(/\r?\n/g, '\r'));

test('auto mode: a message with MSH-15 AL gets a commit ACK CA after it is stored; one without MSH-15/16 gets AA', async () => {
  const client = await MllpClient.connect(listening.ports.auto!);
  const iz = sample('IZ_1_1.1_Admin_Child_Max_Message.hl7'); // MSH-15 AL, MSH-16 ER
  expect(ackCode(await client.send(iz))).toBe('CA');
  const plain = encodeAs(simAdt({ controlId: 'PLAIN-1', patient: simPatient(1, 'X') }), 'UTF-8');
  expect(ackCode(await client.send(plain))).toBe('AA');
  await client.close();
  const stored = await listening.hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE channel_id = 'auto'`);
  expect(stored.rows[0]!.n).toBe(2);
});

test('enhanced mode: MSH-15 NE gets no ACK at all (the next ACK on the connection belongs to the next message); errors get CE/CR', async () => {
  const client = await MllpClient.connect(listening.ports.enh!);
  const silent = encodeAs(simAdt({ controlId: 'NE-1', patient: simPatient(2, 'X') }).replace('|P|2.5|||||CHN|', '|P|2.5|||NE|NE|CHN|'), 'UTF-8');
  const next = encodeAs(simAdt({ controlId: 'AL-1', patient: simPatient(3, 'X') }).replace('|P|2.5|||||CHN|', '|P|2.5|||AL|NE|CHN|'), 'UTF-8');
  client.write(Buffer.concat([Buffer.from([0x0b]), silent, Buffer.from([0x1c, 0x0d])]));
  const ack = await client.send(next);
  expect(ackCode(ack)).toBe('CA');
  expect(ack.toString('latin1')).toContain('MSA|CA|AL-1');
  const garbage = await client.send(Buffer.from('MSH|^~\\&|A|B|C|D|20260101||ADT^A01|BAD-1|P|2.5|||AL|NE\rPID|1\r\xff', 'latin1'));
  expect(['CE', 'CR']).toContain(ackCode(garbage));
  await client.close();
  const rows = await listening.hub.runtime.db.query<{ control_id: string; status: string }>(`SELECT control_id, status FROM raw_message WHERE channel_id = 'enh' ORDER BY id`);
  expect(rows.rows).toEqual([
    { control_id: 'NE-1', status: 'queued' },
    { control_id: 'AL-1', status: 'queued' },
    { control_id: 'BAD-1', status: 'quarantined' },
  ]);
});

test('ADT^A40 from the FHIR-Converter samples: routed by the retired number, the retired record points at the survivor', async () => {
  const hub = listening.hub;
  const member = hub.config.members[0]!;
  const channel = { id: 'merge', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  const a40 = sample('ADT-A40-01.hl7');
  const text = a40.toString('utf8');
  const retired = /\rMRG\|([^|^]+)/.exec(text)![1]!;
  const survivor = /\rPID\|[^|]*\|[^|]*\|([^|^]+)/.exec(text)![1]!;
  expect(retired).not.toBe(survivor);
  // An update under the old number first, then the merge.
  const oldPatient = { ...simPatient(5, 'X'), mrn: retired };
  const before = encodeAs(simAdt({ controlId: 'OLD-1', patient: oldPatient, sendingFacility: 'BCBS', time: '20190423150000' }), 'UTF-8');
  const stored = [await hub.runtime.intake.receive({ member, channel, bytes: before }), await hub.runtime.intake.receive({ member, channel, bytes: a40 })];
  const rawKeys = await hub.runtime.db.query<{ patient_key: string }>(`SELECT patient_key FROM raw_message WHERE id = ANY($1::bigint[]) ORDER BY id`, [stored.map((s) => s.rawId)]);
  expect(rawKeys.rows.map((r) => r.patient_key)).toEqual([`m1|${retired}`, `m1|${retired}`]); // same partition key: the merge follows the old number's updates
  await hub.runtime.intake.drain();
  const worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { reconcile: false });
  await worker.start();
  try {
    await waitFor(async () => (await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE channel_id = 'merge' AND status = 'processed'`)).rows[0]!.n === 2, 30_000, 'merge processed');
  } finally {
    await worker.close();
  }
  const patients = await hub.runtime.db.query<{ mrn: string; merged_into: string | null }>(`SELECT mrn, merged_into FROM source_patient WHERE mrn = ANY($1::text[]) ORDER BY mrn`, [[retired, survivor]]);
  expect(Object.fromEntries(patients.rows.map((p) => [p.mrn, p.merged_into]))).toEqual({ [retired]: survivor, [survivor]: null });
  // the retired Patient resource keeps what OLD-1 said about it and gains active=false + the link
  const resources = await hub.runtime.db.query<{ content: any }>(`SELECT content FROM resource WHERE resource_type = 'Patient' AND content->'identifier' @> $1::jsonb`, [JSON.stringify([{ value: retired }])]);
  expect(resources.rows).toHaveLength(1);
  const retiredPatient = resources.rows[0]!.content;
  expect(retiredPatient.name[0].family).toBe(oldPatient.family);
  expect(retiredPatient.birthDate).toBe(`${oldPatient.birth.slice(0, 4)}-${oldPatient.birth.slice(4, 6)}-${oldPatient.birth.slice(6, 8)}`);
  expect(retiredPatient.active).toBe(false);
  expect(retiredPatient.link).toEqual([{ other: expect.objectContaining({ reference: expect.stringMatching(/^Patient\//) }), type: 'replaced-by' }]);
});

test('a connection silent for longer than idleTimeoutMs is closed by the hub; a busy one is not', async () => {
  const socket = net.connect(listening.ports.idle!, '127.0.0.1');
  const opened = Date.now();
  await new Promise((r) => socket.once('connect', r));
  await new Promise((r) => socket.once('close', r));
  const lived = Date.now() - opened;
  expect(lived).toBeGreaterThanOrEqual(250);
  expect(lived).toBeLessThan(5000);
  const busy = await MllpClient.connect(listening.ports.idle!);
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 150)); // each gap is shorter than the timeout
    expect(ackCode(await busy.send(encodeAs(simAdt({ controlId: `IDLE-${i}`, patient: simPatient(9, 'X') }), 'UTF-8')))).toBe('AA');
  }
  await busy.close();
});
