/**
 * Replay: a GB18030 message on a channel configured as UTF-8 is quarantined at intake (`charset`);
 * replayed while the cause is still there it lands in quarantine again (a new entry); once the
 * channel's configuration is corrected (the parse stage reads the policy at processing time) a
 * replay processes it and the Chinese name — including a four-byte GB18030 character — is decoded
 * correctly. Replay by member + status selects only that member's quarantined messages.
 */
import type { MemberConfig, MllpChannelConfig } from '../hub/config';
import type { IntakeResult } from '../adapters/intake';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { replay } from '../pipeline/replay';
import { PipelineWorker } from '../pipeline/worker';
import { startTestHub, waitFor, type TestHub } from './support/hub';

const members = [
  { id: 'm1', name: 'Member 1', tier: 'tertiary', channels: [{ id: 'his', kind: 'mllp', port: 0 }] },
  { id: 'm2', name: 'Member 2', tier: 'primary', channels: [{ id: 'lab', kind: 'mllp', port: 0 }] },
];

let hub: TestHub;
let worker: PipelineWorker | undefined;
/** Every job the worker ran: [raw id, outcome]. */
const runs: Array<[number, string]> = [];

beforeAll(async () => {
  hub = await startTestHub('replay', { members });
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { onProcessed: (rawId, outcome) => runs.push([rawId, outcome]) });
  await worker.start();
});

afterAll(async () => {
  await worker?.close();
  await hub?.close();
});

function memberOf(id: string): MemberConfig {
  return hub.config.members.find((m) => m.id === id)!;
}

/** Store a message as the member's channel receives it: the intake sees the channel as UTF-8. */
async function send(memberId: string, text: string, charset: 'UTF-8' | 'GB18030') {
  const member = memberOf(memberId);
  const channel = { id: member.channels[0]!.id, policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  return hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, charset) });
}

interface QuarantineRow {
  stage: string;
  code: string;
  state: string;
}

async function quarantineOf(rawId: number): Promise<QuarantineRow[]> {
  return (await hub.runtime.db.query<QuarantineRow>(`SELECT stage, code, state FROM quarantine WHERE raw_id = $1 ORDER BY id`, [rawId])).rows;
}

async function statusOf(rawId: number): Promise<string> {
  return (await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1`, [rawId])).rows[0]!.status;
}

async function sourcePatient(memberId: string, mrn: string) {
  return (
    await hub.runtime.db.query<{ demographics: { family?: string; given?: string } }>(`SELECT demographics FROM source_patient WHERE member_id = $1 AND mrn = $2`, [memberId, mrn])
  ).rows;
}

// Patient 6 is 黄䶮: 䶮 (U+4DAE, CJK extension A) is a four-byte sequence in GB18030.
const patient = simPatient(6, 'G');

test('a charset-quarantined message is processed after the channel is fixed and it is replayed by raw id', async () => {
  expect(`${patient.family}${patient.given}`).toBe('黄䶮');
  // No MSH-18: the channel's charset (UTF-8) applies, and GB18030 bytes are not valid UTF-8.
  const received = await send('m1', simAdt({ controlId: 'GB-1', patient }), 'GB18030');
  expect(received.outcome).toBe('quarantined');
  expect(received.ackCode).toBe('AE');
  expect(received.error?.code).toBe('charset');
  const rawId = received.rawId;
  expect(await statusOf(rawId)).toBe('quarantined');
  expect(await quarantineOf(rawId)).toEqual([{ stage: 'intake', code: 'charset', state: 'open' }]);

  // Replayed while the configuration is still wrong: quarantined again, at parse, with a new entry.
  expect(await replay(hub.runtime.db, hub.runtime.queues, { rawIds: [rawId] })).toEqual({ replayed: 1, rawIds: [rawId] });
  await waitFor(async () => (await quarantineOf(rawId)).length === 2 && (await statusOf(rawId)) === 'quarantined', 30_000, 'second quarantine entry');
  expect(await quarantineOf(rawId)).toEqual([
    { stage: 'intake', code: 'charset', state: 'replayed' },
    { stage: 'parse', code: 'charset', state: 'open' },
  ]);
  expect(await sourcePatient('m1', patient.mrn)).toHaveLength(0);

  // The same job delivered again (BullMQ is at-least-once: a worker killed after its commit, a
  // reconciler sweep racing a replay) must not quarantine the message a second time.
  const before = runs.length;
  await hub.runtime.queues.enqueue([{ rawId, patientKey: null }]);
  await waitFor(async () => runs.slice(before).some(([id]) => id === rawId), 30_000, 'redelivered job run');
  expect(runs.slice(before).filter(([id]) => id === rawId)).toEqual([[rawId, 'already-done']]);
  expect((await quarantineOf(rawId)).map((q) => q.state)).toEqual(['replayed', 'open']);
  expect(await statusOf(rawId)).toBe('quarantined');

  // Fix the channel (the runner reads the charset policy from the configuration when it runs).
  (memberOf('m1').channels[0] as MllpChannelConfig).forceCharset = 'GB18030';
  expect(await replay(hub.runtime.db, hub.runtime.queues, { rawIds: [rawId] })).toEqual({ replayed: 1, rawIds: [rawId] });
  await waitFor(async () => (await statusOf(rawId)) === 'processed', 30_000, 'replayed message processed');

  expect((await quarantineOf(rawId)).map((q) => q.state)).toEqual(['replayed', 'replayed']);
  const rows = await sourcePatient('m1', patient.mrn);
  expect(rows).toHaveLength(1);
  expect(rows[0]!.demographics.family).toBe('黄');
  expect(rows[0]!.demographics.given).toBe('䶮');
  const raw = (await hub.runtime.db.query<{ charset: string; last_stage: string }>(`SELECT charset, last_stage FROM raw_message WHERE id = $1`, [rawId])).rows[0]!;
  expect(raw).toEqual({ charset: 'GB18030', last_stage: 'merge' });
  expect((await hub.runtime.db.query(`SELECT 1 FROM patient_event WHERE raw_id = $1`, [rawId])).rowCount).toBe(1);
});

test('replay by member and status takes only that member’s quarantined messages', async () => {
  // m2: three GB18030 messages quarantined, one UTF-8 message processed normally.
  const bad: IntakeResult[] = [];
  for (let i = 0; i < 3; i++) bad.push(await send('m2', simAdt({ controlId: `M2-GB-${i}`, patient: simPatient(10 + i, 'H') }), 'GB18030'));
  const good = await send('m2', simAdt({ controlId: 'M2-UTF', patient: simPatient(20, 'H') }), 'UTF-8');
  // m1: another quarantined message (its channel is fixed already, so selecting it would process it).
  const other = await send('m1', simAdt({ controlId: 'M1-EBCDIC', patient: simPatient(30, 'G'), charset: 'EBCDIC' }), 'UTF-8');
  expect(bad.map((b) => b.outcome)).toEqual(['quarantined', 'quarantined', 'quarantined']);
  expect(good.outcome).toBe('stored');
  expect(other.outcome).toBe('quarantined');
  await waitFor(async () => (await statusOf(good.rawId)) === 'processed', 30_000, 'UTF-8 message processed');
  const goodProcessedAt = (await hub.runtime.db.query<{ processed_at: Date }>(`SELECT processed_at FROM raw_message WHERE id = $1`, [good.rawId])).rows[0]!.processed_at;

  (memberOf('m2').channels[0] as MllpChannelConfig).charset = 'GB18030'; // MSH-18 is empty: the channel default decides
  const result = await replay(hub.runtime.db, hub.runtime.queues, { member: 'm2', status: ['quarantined'] });
  expect(result.replayed).toBe(3);
  expect(result.rawIds).toEqual(bad.map((b) => b.rawId));
  await waitFor(async () => (await Promise.all(bad.map((b) => statusOf(b.rawId)))).every((s) => s === 'processed'), 30_000, 'm2 replays processed');

  for (let i = 0; i < 3; i++) {
    const p = simPatient(10 + i, 'H');
    const rows = await sourcePatient('m2', p.mrn);
    expect(rows.map((r) => [r.demographics.family, r.demographics.given])).toEqual([[p.family, p.given]]);
    expect(await quarantineOf(bad[i]!.rawId)).toEqual([{ stage: 'intake', code: 'charset', state: 'replayed' }]);
  }
  // Not selected: m2's processed message and m1's quarantined one are untouched.
  const goodNow = (await hub.runtime.db.query<{ processed_at: Date; status: string }>(`SELECT processed_at, status FROM raw_message WHERE id = $1`, [good.rawId])).rows[0]!;
  expect(goodNow).toEqual({ processed_at: goodProcessedAt, status: 'processed' });
  expect(await statusOf(other.rawId)).toBe('quarantined');
  expect(await quarantineOf(other.rawId)).toEqual([{ stage: 'intake', code: 'charset', state: 'open' }]);
});
