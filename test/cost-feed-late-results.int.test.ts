/**
 * Out-of-order results and the cost feed's duplicate flag, on the real pipeline and PostgreSQL.
 * Event time wins, not arrival time: when a member's earlier result arrives after another member's
 * later repeat was already published unflagged, the feed appends one correction of the repeat's
 * event with the flag set (history untouched); when the earlier result is then withdrawn (OBX-11 W,
 * entered in error), the flag goes off again by a correction. The feed agrees with repeatsOf after
 * every build, and a build with nothing new appends nothing.
 */
import type { MemberConfig } from '../hub/config';
import { encodeAs } from '../cli/simulate';
import { runPipeline } from '../pipeline/runner';
import { syncTerminology } from '../hub/terminology/versions';
import { buildCostFeed } from '../hub/feeds/builder';
import type { CostEvent } from '../hub/feeds/costEvents';
import { repeatsOf } from '../hub/recognition/duplicates';
import { startTestHub, type TestHub } from './support/hub';
import { lab, members, people } from './cost-feed-fixture';

const SECRET = 'cost-feed-test-secret-0123456789';
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
let hub: TestHub;

async function send(memberId: string, text: string): Promise<void> {
  const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
  const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
  expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
}

const build = () => buildCostFeed(hub.runtime.db, hub.config, { secret: Buffer.from(SECRET) });
const allEvents = async () => (await hub.runtime.db.query<{ event: CostEvent }>(`SELECT event FROM cost_event ORDER BY seq`)).rows.map((r) => r.event);
/** The current state of each lab-test source: its last event. */
const current = (events: CostEvent[], member: string) => events.filter((e) => e.kind === 'lab-test' && e.member === member).pop();

async function expectFeedAgreesWithRecognition(events: CostEvent[]): Promise<void> {
  const labs = ['lead', 'county'].map((m) => current(events, m)).filter((e): e is CostEvent => !!e && e.status === 'active');
  const repeats = await repeatsOf(hub.runtime.db, hub.config, labs.map((l) => l.source.resourceId));
  for (const l of labs) expect(l.duplicate).toEqual({ repeat: repeats.has(l.source.resourceId), earlierMember: repeats.get(l.source.resourceId)?.earlierMember ?? null });
}

beforeAll(async () => {
  hub = await startTestHub('costfeedlate', {
    members,
    recognition: { accreditation: [{ member: 'county', validFrom: '2026-01-01' }, { member: 'lead', validFrom: '2026-01-01' }], priceLists: [] },
  });
  await syncTerminology(hub.runtime.db);
}, 120_000);

afterAll(async () => {
  await hub.close();
});

test('an earlier result arriving after the repeat was published flags it by one correction; withdrawing it unflags it', async () => {
  const { p1 } = people;
  // The lead's HbA1c on 10 May arrives and is published first: no earlier result known, not a repeat.
  await send('lead', lab({ member: 'lead', p: p1, control: 'L-L9', time: '20260510093000', order: 'LO9', loinc: '4548-4', value: '8.1', unit: '%' }));
  expect((await build()).appended).toBe(1);
  const original = current(await allEvents(), 'lead')!;
  expect(original.duplicate).toEqual({ repeat: false, earlierMember: null });
  const originalRow = (await hub.runtime.db.query(`SELECT event::text AS event FROM cost_event WHERE id = $1`, [original.id])).rows;

  // The county's accredited HbA1c of 4 May (window 90 days) arrives late.
  await send('county', lab({ member: 'county', p: p1, control: 'C-L9', time: '20260504093000', order: 'CO9', loinc: '4548-4', value: '7.9', unit: '%' }));
  const second = await build();
  expect(second).toMatchObject({ appended: 2, corrections: 1 });
  let events = await allEvents();
  const corrections = events.filter((e) => e.corrects !== null);
  expect(corrections).toHaveLength(1);
  expect(corrections[0]).toMatchObject({ kind: 'lab-test', member: 'lead', corrects: original.id, status: 'active', duplicate: { repeat: true, earlierMember: 'county' }, source: { resourceId: original.source.resourceId } });
  expect(current(events, 'county')!.duplicate).toEqual({ repeat: false, earlierMember: null });
  await expectFeedAgreesWithRecognition(events);
  // History is not rewritten, and a rebuild appends nothing.
  expect((await hub.runtime.db.query(`SELECT event::text AS event FROM cost_event WHERE id = $1`, [original.id])).rows).toEqual(originalRow);
  expect((await build()).appended).toBe(0);

  // The county withdraws its result (OBX-11 W): its event is voided and the lead's flag goes off, each by a correction.
  await send('county', lab({ member: 'county', p: p1, control: 'C-L9-W', time: '20260504093000', order: 'CO9', loinc: '4548-4', value: '7.9', unit: '%', status: 'W' }));
  const third = await build();
  expect(third).toMatchObject({ appended: 2, corrections: 2, voided: 1 });
  events = await allEvents();
  const lead = current(events, 'lead')!;
  expect(lead).toMatchObject({ corrects: corrections[0]!.id, status: 'active', duplicate: { repeat: false, earlierMember: null } });
  expect(current(events, 'county')).toMatchObject({ status: 'void' });
  await expectFeedAgreesWithRecognition(events);
  expect((await build()).appended).toBe(0);
});
