/**
 * The patient index on real PostgreSQL, fed through the real pipeline (HL7 v2 → source_patient →
 * the identify stage's link, with syncPatientIndex as the safety net): one person at three members becomes one golden patient; twins stay apart; an
 * A40 merge inside a member links both numbers to one golden patient; out-of-order A08 updates end
 * in the latest state; a manual not-link survives re-matching; the review queue and decisions; the
 * `yilian mpi export --format csv` contract.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MemberConfig } from '../hub/config';
import { encodeAs } from '../cli/simulate';
import { runPipeline } from '../pipeline/runner';
import { decideReview, exportLinks, goldenPatient, reviewQueue } from '../hub/mpi/review';
import { startPatientIndexSync, syncPatientIndex } from '../hub/mpi/sync';
import { makeResidentId } from '../hub/mpi/residentId';
import { generateChineseSet } from '../bench/mpiData';
import { startTestHub, type TestHub } from './support/hub';

// m1 and m2 have their PID-19 resident-ID mapping configured; m3 has not (its IDs arrive as plain SS identifiers).
const members = ['m1', 'm2', 'm3'].map((id) => ({ id, name: `Member ${id}`, tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', port: 0 }], ...(id === 'm3' ? {} : { conversion: { residentIdField: 19 } }) }));
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
let hub: TestHub;
let control = 0;

beforeAll(async () => {
  hub = await startTestHub('mpi_index', { members });
});
afterAll(async () => {
  await hub?.close();
});

interface Pid {
  mrn: string;
  family: string;
  given: string;
  birth: string;
  sex: 'M' | 'F';
  rid?: string;
  address?: string;
  phone?: string;
}

function adt(member: string, p: Pid, opts: { trigger?: string; time?: string; mrg?: string } = {}): string {
  const t = opts.time ?? '20261123093000';
  const trigger = opts.trigger ?? 'A08';
  return [
    `MSH|^~\\&|HIS|${member.toUpperCase()}|YILIAN|HUB|${t}||ADT^${trigger}^ADT_A01|C${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
    `EVN|${trigger}|${t}`,
    `PID|1||${p.mrn}^^^${member.toUpperCase()}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}|||${p.address ?? ''}||${p.phone ?? ''}||||||${p.rid ?? ''}`,
    ...(opts.mrg ? [`MRG|${opts.mrg}^^^${member.toUpperCase()}^MR`] : []),
  ].join('\r') + '\r';
}

/** Store and run each message through every stage (in the order given), then match. */
async function ingest(messages: Array<[string, string]>): Promise<void> {
  for (const [memberId, text] of messages) {
    const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
    const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
    expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
  }
  await syncPatientIndex(hub.runtime.db);
}

async function goldenOf(member: string, mrn: string): Promise<string> {
  const link = (await exportLinks(hub.runtime.db)).find((l) => l.member === member && l.mrn === mrn);
  if (!link) throw new Error(`${member}|${mrn} not in the index`);
  return link.patient;
}

const rid1 = makeResidentId('330106', '19800315', 123, 'M');

test('one person at three members (simplified, traditional, pinyin-only; ID mistyped at one) is one golden patient', async () => {
  await ingest([
    ['m1', adt('m1', { mrn: 'A1', family: '张', given: '伟华', birth: '19800315', sex: 'M', rid: rid1, address: '浙江省杭州市西湖区文一路10号', phone: '13800138001' })],
    ['m2', adt('m2', { mrn: 'B7', family: '張', given: '偉華', birth: '19800315', sex: 'M', rid: rid1.slice(0, 17) + (rid1[17] === 'X' ? 'x' : rid1[17]), phone: '13800138001' })],
    ['m3', adt('m3', { mrn: 'C3', family: 'ZHANG', given: 'Weihua', birth: '19801503'.replace('19801503', '19800315'), sex: 'M', rid: rid1.slice(0, 5) + ((Number(rid1[5]) + 1) % 10) + rid1.slice(6), phone: '13800138001' })],
  ]);
  const g = await goldenOf('m1', 'A1');
  expect(await goldenOf('m2', 'B7')).toBe(g);
  expect(await goldenOf('m3', 'C3')).toBe(g);
  const golden = (await goldenPatient(hub.runtime.db, g))!;
  expect(golden.sources.map((s) => `${s.member}|${s.mrn}`)).toEqual(['m1|A1', 'm2|B7', 'm3|C3']);
  // Survivorship: the Hanzi name, the valid resident ID.
  expect(golden.survivor).toMatchObject({ family: '张', given: '伟华', residentId: rid1, residentIdValid: true, birthDate: '19800315', sex: 'M' });
  expect(golden.sources.every((s) => s.patientResourceId)).toBe(true);
});

test('the pipeline links a new registration while it processes the message: no sync needed, and a replay writes nothing', async () => {
  const run = async (memberId: string, text: string) => {
    const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
    const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
    expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
    return stored.rawId;
  };
  const rid = makeResidentId('330106', '19850704', 321, 'F');
  const first = await run('m1', adt('m1', { mrn: 'P1', family: '黄', given: '丽娟', birth: '19850704', sex: 'F', rid, phone: '13500000001' }, { trigger: 'A04' }));
  const golden = await goldenOf('m1', 'P1'); // no syncPatientIndex call in this test
  // Two members registering the same person at the same moment (two partitions): one golden patient.
  await Promise.all([
    run('m2', adt('m2', { mrn: 'P2', family: '黃', given: '麗娟', birth: '19850704', sex: 'F', rid, phone: '13500000001' }, { trigger: 'A04' })),
    run('m3', adt('m3', { mrn: 'P3', family: 'HUANG', given: 'Lijuan', birth: '19850704', sex: 'F', rid, phone: '13500000001' }, { trigger: 'A04' })),
  ]);
  expect(await goldenOf('m2', 'P2')).toBe(golden);
  expect(await goldenOf('m3', 'P3')).toBe(golden);
  // Replay of the first message (status back to queued, as `yilian replay` does): the index is current, nothing is written.
  const before = await hub.runtime.db.query(`SELECT (SELECT count(*)::int FROM mpi_history) AS history, (SELECT max(matched_at) FROM mpi_source) AS matched, (SELECT max(updated_at) FROM mpi_link) AS links`);
  await hub.runtime.db.query(`UPDATE raw_message SET status = 'queued' WHERE id = $1`, [first]);
  expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, first, true)).toBe('processed');
  const after = await hub.runtime.db.query(`SELECT (SELECT count(*)::int FROM mpi_history) AS history, (SELECT max(matched_at) FROM mpi_source) AS matched, (SELECT max(updated_at) FROM mpi_link) AS links`);
  expect(after.rows).toEqual(before.rows);
  // A result for a known patient (identity unchanged) takes the fast path: same golden, no history.
  await run('m1', adt('m1', { mrn: 'P1', family: '黄', given: '丽娟', birth: '19850704', sex: 'F', rid, phone: '13500000001' }, { time: '20261124093000' }));
  expect(await goldenOf('m1', 'P1')).toBe(golden);
  expect((await hub.runtime.db.query(`SELECT count(*)::int AS n FROM mpi_history`)).rows).toEqual([{ n: before.rows[0]!.history }]);
});

test('the pipeline matching does not depend on arrival order (event time wins before the index sees the record)', async () => {
  // The same story twice, for two different persons, delivered in opposite orders.
  // The registration (oldest) is the only message stating the address: it must survive arriving last.
  const story = (tag: string, rid: string, family: string, given: string): Array<[string, string]> => [
    ['m1', adt('m1', { mrn: `${tag}1`, family, given, birth: '19700210', sex: 'M', phone: '13100000001', address: '仅登记时有的地址' }, { trigger: 'A04', time: '20261101080000' })],
    ['m1', adt('m1', { mrn: `${tag}1`, family, given, birth: '19700210', sex: 'M', rid, phone: '13100000002' }, { time: '20261110080000' })],
    ['m2', adt('m2', { mrn: `${tag}2`, family, given, birth: '19700210', sex: 'M', rid }, { trigger: 'A04', time: '20261105080000' })],
  ];
  const run = async (messages: Array<[string, string]>) => {
    for (const [memberId, text] of messages) {
      const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
      const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
      expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
    }
  };
  await run(story('Q', makeResidentId('330106', '19700210', 51, 'M'), '钱', '国栋'));
  await run(story('W', makeResidentId('330106', '19700210', 53, 'M'), '魏', '建业').reverse());
  for (const tag of ['Q', 'W']) {
    const g = await goldenOf('m1', `${tag}1`);
    expect(await goldenOf('m2', `${tag}2`)).toBe(g);
    const golden = (await goldenPatient(hub.runtime.db, g))!;
    expect(golden.sources).toHaveLength(2);
    expect(golden.survivor).toMatchObject({ phone: '13100000002', address: '仅登记时有的地址', residentIdValid: true });
  }
  // Same source state in both orders (per-field event times in the merge stage).
  const states = await hub.runtime.db.query<{ mrn: string; demographics: Record<string, string>; event_time: Date }>(`SELECT mrn, demographics, event_time FROM source_patient WHERE mrn IN ('Q1', 'W1') ORDER BY mrn`);
  const [q, w] = states.rows;
  expect(Object.keys(q!.demographics).sort()).toEqual(Object.keys(w!.demographics).sort());
  expect([q!.demographics.phone, q!.demographics.address]).toEqual([w!.demographics.phone, w!.demographics.address]);
  expect(q!.event_time).toEqual(w!.event_time);
});

test('the periodic sync stays a safety net: a source patient the pipeline did not link (its link step failed) is linked by startPatientIndexSync', async () => {
  // As if the worker died between the merge's commit and the index link.
  await hub.runtime.db.query(`INSERT INTO source_patient (member_id, mrn, demographics, event_time, last_raw_id) VALUES ('m1', 'S0', '{"family":"周","given":"敏","birthDate":"19750102","sex":"F"}', now(), 0)`);
  expect((await exportLinks(hub.runtime.db)).some((l) => l.member === 'm1' && l.mrn === 'S0')).toBe(false);
  const stop = startPatientIndexSync(hub.runtime.db, 100);
  try {
    const deadline = Date.now() + 20_000;
    while (!(await exportLinks(hub.runtime.db)).some((l) => l.member === 'm1' && l.mrn === 'S0')) {
      if (Date.now() > deadline) throw new Error('the background sync never linked m1|S0');
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    stop();
  }
});

test('twins (same family, birth date, address and phone; own IDs) stay two golden patients; without IDs they go to review, not linked', async () => {
  const home = { family: '李', birth: '20100601', address: '浙江省杭州市上城区人民路5号', phone: '13900000001' };
  await ingest([
    ['m1', adt('m1', { mrn: 'T1', ...home, given: '明', sex: 'M', rid: makeResidentId('330102', '20100601', 11, 'M') })],
    ['m2', adt('m2', { mrn: 'T2', ...home, given: '亮', sex: 'M', rid: makeResidentId('330102', '20100601', 13, 'M') })],
    ['m3', adt('m3', { mrn: 'T3', ...home, given: '亮', sex: 'M' })],
    ['m3', adt('m3', { mrn: 'T4', ...home, given: '红', sex: 'M' })],
  ]);
  expect(await goldenOf('m1', 'T1')).not.toBe(await goldenOf('m2', 'T2'));
  expect(await goldenOf('m3', 'T3')).toBe(await goldenOf('m2', 'T2'));
  expect(await goldenOf('m3', 'T4')).not.toBe(await goldenOf('m1', 'T1'));
  expect(await goldenOf('m3', 'T4')).not.toBe(await goldenOf('m2', 'T2'));
  const review = await reviewQueue(hub.runtime.db);
  const item = review.find((r) => r.member === 'm3' && r.mrn === 'T4');
  expect(item).toBeDefined();
  expect(item!.rule).toBe('twin-guard');
  expect((item!.breakdown.fields as Array<{ field: string; label: string }>).find((f) => f.field === 'given')!.label).toBe('different');
});

test('a review decision links, and a manual not-link survives re-matching', async () => {
  const items = (await reviewQueue(hub.runtime.db)).filter((r) => r.member === 'm3' && r.mrn === 'T4');
  // Both brothers' golden patients are proposed (T1 with an ID, T2+T3).
  expect(items).toHaveLength(2);
  for (const i of items) await decideReview(hub.runtime.db, { member: 'm3', mrn: 'T4', goldenId: i.goldenId, decision: 'not-link', actor: 'reviewer-1', reason: 'twin brother' });
  const item = items[0]!;
  expect((await reviewQueue(hub.runtime.db)).find((r) => r.member === 'm3' && r.mrn === 'T4')).toBeUndefined();
  const before = await goldenOf('m3', 'T4');
  // An update making T4 look even more like the other golden patient: still not linked, no new review item.
  await ingest([['m3', adt('m3', { mrn: 'T4', family: '李', given: '红', birth: '20100601', sex: 'M', address: '浙江省杭州市上城区人民路5号', phone: '13900000001' }, { time: '20261124100000' })]]);
  expect(await goldenOf('m3', 'T4')).toBe(before);
  expect(await goldenOf('m3', 'T4')).not.toBe(item.goldenId);
  expect((await reviewQueue(hub.runtime.db)).find((r) => r.member === 'm3' && r.mrn === 'T4')).toBeUndefined();
  const links = await hub.runtime.db.query(`SELECT state, mode, decided_by FROM mpi_link WHERE member_id = 'm3' AND mrn = 'T4' ORDER BY state`);
  expect(links.rows).toEqual([
    { state: 'MATCH', mode: 'AUTO', decided_by: null },
    { state: 'NO_MATCH', mode: 'MANUAL', decided_by: 'reviewer-1' },
    { state: 'NO_MATCH', mode: 'MANUAL', decided_by: 'reviewer-1' },
  ]);

  // Unlinking an automatic link: T3 leaves T2's golden patient for good.
  const shared = await goldenOf('m2', 'T2');
  const moved = await decideReview(hub.runtime.db, { member: 'm3', mrn: 'T3', goldenId: shared, decision: 'not-link', actor: 'reviewer-1' });
  expect(moved.goldenId).not.toBe(shared);
  await ingest([['m3', adt('m3', { mrn: 'T3', family: '李', given: '亮', birth: '20100601', sex: 'M', address: '浙江省杭州市上城区人民路5号', phone: '13900000001' }, { time: '20261125100000' })]]);
  expect(await goldenOf('m3', 'T3')).toBe(moved.goldenId);
  // And a manual link is never undone by the matcher.
  await decideReview(hub.runtime.db, { member: 'm3', mrn: 'T3', goldenId: shared, decision: 'link', actor: 'reviewer-2' });
  await ingest([['m3', adt('m3', { mrn: 'T3', family: '王', given: '芳', birth: '19700101', sex: 'F' }, { time: '20261126100000' })]]);
  expect(await goldenOf('m3', 'T3')).toBe(shared);
});

test('a long sync overtaken between its rounds (a reviewer moved a source) reads the index again instead of its copy of the blocks', async () => {
  // Source patients the pipeline did not link, in this order: a person, four strangers, the person
  // again elsewhere — with one record a batch, K1 is in the sync's first round, K3 in its second.
  const person = '"family":"钱","given":"学森","birthDate":"19111211","sex":"M","phone":"13700000011"';
  const strangers = ['孙立人', '赵一曼', '周树人', '林徽因'].map((name, i) => `('m2', 'K2${i}', '{"family":"${name[0]}","given":"${name.slice(1)}","birthDate":"1900080${i + 1}","sex":"M"}', now(), 0, clock_timestamp() + interval '${i + 1} ms')`);
  await hub.runtime.db.query(
    `INSERT INTO source_patient (member_id, mrn, demographics, event_time, last_raw_id, updated_at) VALUES
       ('m1', 'K1', '{${person}}', now(), 0, clock_timestamp()), ${strangers.join(', ')},
       ('m3', 'K3', '{${person}}', now(), 0, clock_timestamp() + interval '9 ms')`,
  );
  let moved: string | undefined;
  const summary = await syncPatientIndex(hub.runtime.db, {
    batch: 1,
    onRound: async () => {
      // Between rounds, once K1 is indexed: a reviewer takes K1 out of its golden patient.
      const k1 = (await exportLinks(hub.runtime.db)).find((l) => l.member === 'm1' && l.mrn === 'K1');
      if (k1 && !moved) moved = (await decideReview(hub.runtime.db, { member: 'm1', mrn: 'K1', goldenId: k1.patient, decision: 'not-link', actor: 'reviewer-3' })).goldenId;
    },
  });
  expect(moved).toBeDefined();
  expect(summary.overtaken).toBeGreaterThanOrEqual(1);
  // K3 joins K1 where it is now, not the golden patient the sync's first round saw it in.
  expect(await goldenOf('m1', 'K1')).toBe(moved);
  expect(await goldenOf('m3', 'K3')).toBe(moved);
  expect(await goldenOf('m2', 'K20')).not.toBe(moved);
});

test('a bulk sync in many overlapped batches stores every source once, current, and decides as one big batch does', async () => {
  // Generated people at several members (Chinese noise), loaded as a member's back catalogue is,
  // into two fresh hubs: one syncs in batches of 7 (rounds of four, overlapped), one in one batch.
  const people = generateChineseSet({ persons: 400, seed: 11 });
  const rows = people.map((p) => {
    const [member, n] = p.id.split(':');
    const { id: _id, entity: _e, ...demo } = p;
    void _id;
    void _e;
    return { member_id: member, mrn: `G${n}`, demographics: Object.fromEntries(Object.entries(demo).filter(([, v]) => v !== undefined)) };
  });
  const partitions: string[][] = [];
  for (const [name, batch] of [['mpi_bulk_small', 7], ['mpi_bulk_big', 100_000]] as const) {
    const other = await startTestHub(name, { members });
    try {
      const db = other.runtime.db;
      await db.query(
        `INSERT INTO source_patient (member_id, mrn, demographics, event_time, last_raw_id)
         SELECT member_id, mrn, demographics, now(), 0 FROM jsonb_to_recordset($1::jsonb) AS x(member_id text, mrn text, demographics jsonb)`,
        [JSON.stringify(rows)],
      );
      expect((await syncPatientIndex(db, { batch })).matched).toBe(people.length);
      const checks = await db.query<{ sources: number; current: number; one_match: number }>(
        `SELECT count(*)::int AS sources,
                count(*) FILTER (WHERE s.source_updated_at = sp.updated_at)::int AS current,
                count(*) FILTER (WHERE (SELECT count(*) FROM mpi_link l JOIN mpi_golden g ON g.id = l.golden_id WHERE l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH') = 1)::int AS one_match
           FROM mpi_source s JOIN source_patient sp USING (member_id, mrn)`,
      );
      expect(checks.rows[0]).toEqual({ sources: people.length, current: people.length, one_match: people.length });
      // The partition into persons (golden ids differ between hubs): the records sharing each golden patient.
      const byGolden = new Map<string, string[]>();
      for (const l of await exportLinks(db)) byGolden.set(l.patient, [...(byGolden.get(l.patient) ?? []), `${l.member}|${l.mrn}`]);
      partitions.push([...byGolden.values()].map((g) => g.sort().join(' ')).sort());
    } finally {
      await other.close();
    }
  }
  expect(partitions[0]).toEqual(partitions[1]);
  expect(partitions[0]!.length).toBeLessThan(people.length * 0.75);
});

test('a record that matches two golden patients joins them (a bridge): in the pipeline and in a bulk sync, never across a manual not-link', async () => {
  // One person: A's birth date mistyped and no address, B's given name misspelt and no phone — too
  // little in common to match each other; C, with the phone of one and the address of the other, matches both.
  const address = '浙江省杭州市滨江区江南大道588号3幢1201室';
  // (Three people, years apart: born the same day, two 明轩 of other family names would be each other's review items.)
  const person = (family: string, tag: string, phone: string, year: number) => ({
    a: { mrn: `${tag}A`, family, given: '明轩', birth: `${year}0611`, sex: 'M' as const, phone },
    b: { mrn: `${tag}B`, family, given: '民选', birth: `${year + 1}0812`, sex: 'M' as const, address: `${address}${tag}` },
    c: { mrn: `${tag}C`, family, given: '明轩', birth: `${year + 1}0812`, sex: 'M' as const, phone, address: `${address}${tag}` },
  });
  const history = (golden: string) =>
    hub.runtime.db.query<{ detail: { reason?: string; via?: string; from?: string } }>(`SELECT detail FROM mpi_history WHERE golden_id = $1 AND action = 'merge' ORDER BY id`, [golden]);

  // In the pipeline: each registration is linked as its message is processed.
  const p = person('欧阳', 'BR', '13912345601', 1975);
  await ingest([['m1', adt('m1', p.a)], ['m2', adt('m2', p.b)]]);
  const [ga, gb] = [await goldenOf('m1', 'BRA'), await goldenOf('m2', 'BRB')];
  expect(ga).not.toBe(gb);
  await ingest([['m3', adt('m3', p.c)]]);
  const joined = await goldenOf('m3', 'BRC');
  expect(await goldenOf('m1', 'BRA')).toBe(joined);
  expect(await goldenOf('m2', 'BRB')).toBe(joined);
  const retired = joined === ga ? gb : ga;
  expect((await goldenPatient(hub.runtime.db, retired))!.mergedInto).toBe(joined);
  expect((await history(joined)).rows.map((r) => r.detail)).toContainEqual(expect.objectContaining({ reason: 'bridge', via: 'm3|BRC', from: retired }));
  // The review item C raised against the other golden patient went with the join.
  expect((await reviewQueue(hub.runtime.db)).filter((r) => r.mrn.startsWith('BR'))).toEqual([]);

  // A reviewer said B is not A's person: C links to one of them, the other stays apart (a review item).
  const q = person('诸葛', 'NL', '13912345602', 1965);
  await ingest([['m1', adt('m1', q.a)], ['m2', adt('m2', q.b)]]);
  await decideReview(hub.runtime.db, { member: 'm2', mrn: 'NLB', goldenId: await goldenOf('m1', 'NLA'), decision: 'not-link', actor: 'reviewer-4' });
  await ingest([['m3', adt('m3', q.c)]]);
  expect(await goldenOf('m1', 'NLA')).not.toBe(await goldenOf('m2', 'NLB'));
  expect((await reviewQueue(hub.runtime.db)).filter((r) => r.member === 'm3' && r.mrn === 'NLC')).toHaveLength(1);

  // In a bulk sync (source patients the pipeline did not link, scored in one batch): joined at the end of the round.
  const r = person('司马', 'BK', '13912345603', 1955);
  const row = (member: string, x: Pid, ms: number) =>
    `('${member}', '${x.mrn}', '${JSON.stringify({ family: x.family, given: x.given, birthDate: x.birth, sex: x.sex, ...(x.phone ? { phone: x.phone } : {}), ...(x.address ? { address: x.address } : {}) })}', now(), 0, clock_timestamp() + interval '${ms} ms')`;
  await hub.runtime.db.query(`INSERT INTO source_patient (member_id, mrn, demographics, event_time, last_raw_id, updated_at) VALUES ${row('m1', r.a, 1)}, ${row('m2', r.b, 2)}, ${row('m3', r.c, 3)}`);
  const summary = await syncPatientIndex(hub.runtime.db);
  expect(summary).toMatchObject({ matched: 3, joined: 1 });
  const bulk = await goldenOf('m3', 'BKC');
  expect([await goldenOf('m1', 'BKA'), await goldenOf('m2', 'BKB')]).toEqual([bulk, bulk]);
});

test('ADT A40 inside a member: both numbers listed with the surviving golden patient; the merge is in the history', async () => {
  await ingest([
    ['m1', adt('m1', { mrn: 'S1', family: '周', given: '晓峰', birth: '19750102', sex: 'M', phone: '13600000001' })],
    ['m1', adt('m1', { mrn: 'R1', family: '邹', given: '小凤', birth: '19760203', sex: 'F' })],
  ]);
  const survivor = await goldenOf('m1', 'S1');
  const retired = await goldenOf('m1', 'R1');
  expect(retired).not.toBe(survivor);
  await ingest([['m1', adt('m1', { mrn: 'S1', family: '周', given: '晓峰', birth: '19750102', sex: 'M', phone: '13600000001' }, { trigger: 'A40', time: '20261124120000', mrg: 'R1' })]]);
  expect(await goldenOf('m1', 'S1')).toBe(survivor);
  expect(await goldenOf('m1', 'R1')).toBe(survivor);
  const old = (await goldenPatient(hub.runtime.db, retired))!;
  expect(old).toMatchObject({ state: 'merged', mergedInto: survivor });
  const history = await hub.runtime.db.query<{ action: string; detail: { from?: string } }>(`SELECT action, detail FROM mpi_history WHERE golden_id = $1 ORDER BY id`, [survivor]);
  expect(history.rows.some((h) => h.action === 'merge' && h.detail.from === retired)).toBe(true);
});

test('a member merge keeps every link: a reviewer\'s not-link against the retired golden patient unlinks no one, a manual link stays manual', async () => {
  // X (m2) is S2's person; a reviewer said X is not R2's, and that Y (m3) is. Then m1 says R2 is S2 (A40).
  const s2 = { mrn: 'S2', family: '韩', given: '立新', birth: '19690407', sex: 'M' as const, phone: '13600000021' };
  await ingest([
    ['m1', adt('m1', s2)],
    ['m2', adt('m2', { ...s2, mrn: 'X2' })],
    ['m1', adt('m1', { mrn: 'R2', family: '黄', given: '丽娟', birth: '19700509', sex: 'F' })],
    ['m3', adt('m3', { mrn: 'Y2', family: '黄', given: '立娟', birth: '19700905', sex: 'F' })],
  ]);
  const survivor = await goldenOf('m1', 'S2');
  expect(await goldenOf('m2', 'X2')).toBe(survivor);
  const retired = await goldenOf('m1', 'R2');
  await decideReview(hub.runtime.db, { member: 'm2', mrn: 'X2', goldenId: retired, decision: 'not-link', actor: 'reviewer-5' });
  await decideReview(hub.runtime.db, { member: 'm3', mrn: 'Y2', goldenId: retired, decision: 'link', actor: 'reviewer-5' });
  await ingest([['m1', adt('m1', s2, { trigger: 'A40', time: '20261124130000', mrg: 'R2' })]]);
  expect(await goldenOf('m1', 'R2')).toBe(survivor);
  expect(await goldenOf('m2', 'X2')).toBe(survivor);
  expect(await goldenOf('m3', 'Y2')).toBe(survivor);
  const links = await hub.runtime.db.query<{ mrn: string; state: string; mode: string; decided_by: string | null }>(
    `SELECT mrn, state, mode, decided_by FROM mpi_link WHERE mrn IN ('X2', 'Y2') AND state = 'MATCH' ORDER BY mrn`,
  );
  expect(links.rows).toEqual([
    { mrn: 'X2', state: 'MATCH', mode: 'AUTO', decided_by: null },
    { mrn: 'Y2', state: 'MATCH', mode: 'MANUAL', decided_by: 'reviewer-5' },
  ]);
});

test('out-of-order A08 updates end in the latest state', async () => {
  const base = { mrn: 'O1', family: '陈', given: '静', birth: '19900909', sex: 'F' as const };
  await ingest([
    ['m2', adt('m2', { ...base, address: '新地址 3号', phone: '13700000003' }, { time: '20261120120000' })],
    ['m2', adt('m2', { ...base, address: '旧地址 1号', phone: '13700000001' }, { time: '20261101120000' })],
  ]);
  const golden = (await goldenPatient(hub.runtime.db, await goldenOf('m2', 'O1')))!;
  expect(golden.survivor).toMatchObject({ address: '新地址 3号', phone: '13700000003' });
});

test('a registration desk\'s placeholder phone and address link no strangers; the counts behind that are kept and rebuilt', async () => {
  // 13800138000 and the hospital's own address, typed for every patient who gave none (as the demo's
  // simulated desks do). Without the population's counts, 刘芳 and 林芳 (similar family names, birth
  // dates a day apart) were linked on them.
  const desk = { address: '浙江省杭州市人民路1号', phone: '13800138000' };
  const families = ['王', '李', '张', '陈', '杨', '赵'];
  const givens = ['伟', '娜', '敏', '静'];
  const crowd: Array<[string, string]> = [];
  for (let i = 0; i < 24; i++) {
    crowd.push(['m1', adt('m1', { mrn: `D${i}`, family: families[i % 6]!, given: givens[Math.floor(i / 6)]!, birth: `19${50 + i}0${1 + (i % 9)}1${i % 10}`, sex: i % 2 ? 'M' : 'F', ...desk })]);
  }
  await ingest([
    ...crowd,
    ['m1', adt('m1', { mrn: 'DL1', family: '刘', given: '芳', birth: '19800315', sex: 'F', ...desk })],
    ['m2', adt('m2', { mrn: 'DL2', family: '林', given: '芳', birth: '19800316', sex: 'F', ...desk })],
    ['m3', adt('m3', { mrn: 'DL3', family: '刘', given: '芳', birth: '19800315', sex: 'F', ...desk })],
  ]);
  const liu = await goldenOf('m1', 'DL1');
  expect(await goldenOf('m2', 'DL2')).not.toBe(liu);
  // The same person still links with the same placeholder contact data.
  expect(await goldenOf('m3', 'DL3')).toBe(liu);
  const crowdGoldens = new Set(await Promise.all(crowd.map((_, i) => goldenOf('m1', `D${i}`))));
  expect(crowdGoldens.size).toBe(24);
  // The decision says why: the phone agreed, on a value many people carry, for little weight.
  const link = (await hub.runtime.db.query<{ breakdown: { nearest?: { fields?: Array<{ field: string; weight: number; tf?: number }> } } }>(
    `SELECT breakdown FROM mpi_link WHERE member_id = 'm2' AND mrn = 'DL2' AND state = 'MATCH'`,
  )).rows[0]!;
  const phone = link.breakdown.nearest!.fields!.find((f) => f.field === 'phone')!;
  expect(phone.tf).toBeGreaterThan(0.1);
  expect(phone.weight).toBeLessThan(3);
  const counts = async () =>
    (await hub.runtime.db.query<{ field: string; people: number }>(`SELECT field, people FROM mpi_shared_value WHERE value IN ('+8613800138000') OR field = '#backfill' ORDER BY field`)).rows;
  const before = await counts();
  // 24 + 刘芳 + 林芳 (the second 刘芳 is the same person by name); phones are counted as the matcher compares them, in E.164.
  expect(before).toEqual([{ field: 'phone', people: 26 }]);
  // A hub upgraded from before the counts existed: migration 14 leaves a marker; the next sync counts every indexed source.
  for (const sql of [`DELETE FROM mpi_shared_person`, `DELETE FROM mpi_shared_value`, `INSERT INTO mpi_shared_value (field, value, people) VALUES ('#backfill', '', 0)`]) await hub.runtime.db.query(sql);
  // … and where the matcher of that time linked strangers on them (林芳 into 刘芳's golden patient), it undoes the link.
  await hub.runtime.db.query(`DELETE FROM mpi_link WHERE member_id = 'm2' AND mrn = 'DL2' AND golden_id = $1`, [liu]);
  await hub.runtime.db.query(`UPDATE mpi_link SET golden_id = $1 WHERE member_id = 'm2' AND mrn = 'DL2' AND state = 'MATCH'`, [liu]);
  await syncPatientIndex(hub.runtime.db);
  expect(await counts()).toEqual(before);
  expect(await goldenOf('m2', 'DL2')).not.toBe(liu);
  expect(await goldenOf('m3', 'DL3')).toBe(liu);
  const undone = await hub.runtime.db.query<{ detail: { field: string } }>(`SELECT detail FROM mpi_history WHERE action = 'unlink' AND member_id = 'm2' AND mrn = 'DL2'`);
  expect(undone.rows.map((r) => r.detail.field)).toContain('phone');
});

test('yilian mpi export --format csv prints member,mrn,patient for every source patient', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mpi-cli-'));
  try {
    const configFile = path.join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({ members, databaseUrl: hub.databaseUrl }));
    const cli = path.join(__dirname, '..', 'dist', 'cli', 'yilian.js');
    const { stdout } = await promisify(execFile)('node', [cli, 'mpi', 'export', '--format', 'csv', '--config', configFile], { env: { ...process.env, DATABASE_URL: hub.databaseUrl } });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toBe('member,mrn,patient');
    const rows = lines.slice(1).map((l) => l.split(','));
    const sources = await hub.runtime.db.query<{ member_id: string; mrn: string }>(`SELECT member_id, mrn FROM source_patient ORDER BY member_id, mrn`);
    expect(rows.map(([m, mrn]) => `${m}|${mrn}`).sort()).toEqual(sources.rows.map((s) => `${s.member_id}|${s.mrn}`).sort());
    const links = await exportLinks(hub.runtime.db);
    expect(rows).toEqual(links.map((l) => [l.member, l.mrn, l.patient]));
    expect(rows.find(([m, mrn]) => m === 'm1' && mrn === 'R1')![2]).toBe(rows.find(([m, mrn]) => m === 'm1' && mrn === 'S1')![2]);
    // `mpi sync` (nothing left to match here) with its batch, and a batch that is no number refused.
    const env = { ...process.env, DATABASE_URL: hub.databaseUrl };
    const synced = JSON.parse((await promisify(execFile)('node', [cli, 'mpi', 'sync', '--batch', '300', '--config', configFile], { env })).stdout);
    expect(synced).toMatchObject({ matched: 0, joined: 0 });
    await expect(promisify(execFile)('node', [cli, 'mpi', 'sync', '--batch', 'lots', '--config', configFile], { env })).rejects.toMatchObject({ stderr: expect.stringContaining('--batch must be a whole number') });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
