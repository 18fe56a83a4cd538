/**
 * A batch merged in rounds (pipeline/stages/merge.ts: many messages in one statement) leaves the
 * hub as merging its messages one at a time does — source patients field by field, resources,
 * patient events — with messages of one patient out of event-time order, shared resources restated
 * by every message, a renamed ward and an A40 merge in the same batch; and a message PostgreSQL
 * refuses fails alone: the rest of its round is processed.
 */
import { randomBytes } from 'node:crypto';
import { RawIntake } from '../adapters/intake';
import type { MemberConfig } from '../hub/config';
import { runBatch, type RunOutcome } from '../pipeline/runner';
import { bloodCount, simAdt, simOru, simPatient } from '../cli/simulate';
import { startTestHub, type TestHub } from './support/hub';

const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', port: 0 }] };
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

let together: TestHub;
let oneByOne: TestHub;

beforeAll(async () => {
  [together, oneByOne] = await Promise.all([startTestHub('merge_rounds_a', { members: [memberConfig] }), startTestHub('merge_rounds_b', { members: [memberConfig] })]);
});

afterAll(async () => {
  await Promise.all([together?.close(), oneByOne?.close()]);
});

/** Patients 0–4, three messages each, the second older than the first; one ward renamed midway; patient 5 merged into 4. */
function messages(): string[] {
  const out: string[] = [];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 5; i++) {
      const time = `2026112308${String([20, 10, 30][round]! + i).padStart(2, '0')}00`;
      const patient = simPatient(i, 'R');
      const adt = simAdt({ controlId: `R-${round}-${i}`, patient, time, address: `路${round}-${i}` }, 'A08');
      if (round === 1) out.push(simOru({ controlId: `R-${round}-${i}`, patient, time }, bloodCount.map((r) => ({ ...r, value: String(100 + i) }))));
      // the ward's name changes for the last two patients of the third round
      else out.push(round === 2 && i > 2 ? adt.replace('内科^^^', '内科病区^^^') : adt);
    }
  }
  const merge = simAdt({ controlId: 'R-merge', patient: simPatient(4, 'R'), time: '20261123090000' }, 'A40').replace(/(PID[^\r]*\r)/, `$1MRG|${simPatient(5, 'R').mrn}^^^HOSP^MR\r`);
  out.splice(3, 0, simAdt({ controlId: 'R-5', patient: simPatient(5, 'R'), time: '20261123080000' }, 'A04'));
  out.push(merge);
  return out;
}

async function store(hub: TestHub, texts: string[]): Promise<number[]> {
  const intake = new RawIntake(hub.runtime.db, { enqueue: async () => undefined });
  const ids: number[] = [];
  for (const text of texts) ids.push((await intake.receive({ member: hub.config.members[0] as MemberConfig, channel, bytes: Buffer.from(text, 'utf8') })).rawId);
  return ids;
}

async function state(hub: TestHub): Promise<unknown> {
  const q = async (sql: string) => (await hub.runtime.db.query(sql)).rows;
  return {
    patients: await q(`SELECT member_id, mrn, authority, demographics, field_times, event_time, last_raw_id, merged_into FROM source_patient ORDER BY mrn`),
    resources: await q(`SELECT resource_type, id, content, event_time, raw_id FROM resource ORDER BY resource_type, id`),
    events: await q(`SELECT raw_id, mrn, event_type, event_time, applied FROM patient_event ORDER BY raw_id`),
    raws: await q(`SELECT id, status FROM raw_message ORDER BY id`),
  };
}

it('one batch in rounds ends as the same messages merged one at a time', async () => {
  const texts = messages();
  const [a, b] = await Promise.all([store(together, texts), store(oneByOne, texts)]);
  expect(a).toEqual(b);
  const ctxOf = (hub: TestHub) => ({ db: hub.runtime.db, config: hub.config });
  const outcomes = await runBatch(ctxOf(together), a, false);
  expect([...outcomes.values()].every((o) => o === 'processed')).toBe(true);
  for (const id of b) expect(await runBatch(ctxOf(oneByOne), [id], false)).toEqual(new Map([[id, 'processed']]));
  const merged = (await together.runtime.db.query(`SELECT count(*)::int AS n FROM source_patient WHERE merged_into IS NOT NULL`)).rows[0];
  expect(merged).toEqual({ n: 1 });
  expect(await state(together)).toEqual(await state(oneByOne));
});

it('a message PostgreSQL refuses is quarantined alone; the rest of its round is processed', async () => {
  const hugeMrn = randomBytes(4000).toString('hex');
  const texts = [0, 1, 2, 3].map((i) => simOru({ controlId: `Q-${i}`, patient: i === 2 ? { ...simPatient(20 + i, 'Q'), mrn: hugeMrn } : simPatient(20 + i, 'Q') }, bloodCount));
  const ids = await store(together, texts);
  const outcomes = await runBatch({ db: together.runtime.db, config: together.config }, ids, false);
  expect(ids.map((id) => outcomes.get(id))).toEqual<RunOutcome[]>(['processed', 'processed', 'quarantined', 'processed']);
});
