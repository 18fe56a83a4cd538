/**
 * The duplicate-test report. A repeat is a result produced at one member while a recognisable
 * result of ANOTHER member for the same recognition item (a standard code; either code of a
 * mass/substance pair, mappings/terminology/analytes.ts) on the same golden patient was still
 * inside its window (the rule of the repeat's code in force at the time of the repeat gives the
 * window; `rules: 'current'` judges by today's rules instead). Results are Observations, and for
 * imaging rules ImagingStudy and DiagnosticReport; one member's results of one item at one instant
 * are one test. Each repeat is
 * reported once, paired with the most recent such earlier result. "Recognisable" is what the check
 * API would have offered (hub/recognition/check.ts): rule not "never", status final/amended/
 * corrected, canonical unit, tier or named member, accreditation valid when the earlier result was
 * produced — a repeat of a result the check would have refused is justified, not a duplicate.
 *
 * One pass in SQL: results joined to their golden patient (through the MPI, as it stands now),
 * then, per (golden patient, item) ordered by time, a window aggregate per member gives the time of
 * that member's last recognisable result before each row; the greatest over the other members is
 * the candidate. Totals, recognition rate (from the check log) and money (price lists in config)
 * are computed here too. Reads only; writes nothing.
 */
import type { HubDb, Sql } from '../sql';
import { utcOffsetOf, type HubConfig } from '../config';
import { syncTerminology } from '../terminology/versions';
import { priceAt } from './config';
import { localTime } from './localTime';
import { ruleBook, RuleBook, type RecognitionRuleVersion } from './rules';
import type { Terminology } from '../../mappings/terminology/translator';
import { itemCodes, recognitionItem } from '../../mappings/terminology/analytes';

export interface DuplicateTest {
  patient: string; // golden patient id
  code: string; // LOINC or standard imaging code
  firstMember: string;
  firstTime: string;
  firstResourceId: string; // times: ISO 8601 with the UTC offset of the member that did the test
  repeatMember: string;
  repeatTime: string;
  repeatResourceId: string;
  wastedCost: number; // price of the repeat at the repeating member's price list (0 if no price)
}

/**
 * Which rules judge the results: `at-time` (the default, and what the cost feed and the KPIs use)
 * the version in force when each result was produced; `current` (what-if) the version in force
 * now, as if it had always been.
 */
export type RulesMode = 'at-time' | 'current';
export const RULES_MODES: readonly RulesMode[] = ['at-time', 'current'];

export interface DuplicateReport {
  from?: string;
  to?: string;
  rules: RulesMode;
  pairs: DuplicateTest[];
  totals: { repeats: number; recognised: number; recognitionRate: number | null; avoidedCost: number; wastedCost: number; currency: string };
  byMemberPair: Array<{ firstMember: string; repeatMember: string; repeats: number; wastedCost: number }>;
  byTest: Array<{ code: string; repeats: number; wastedCost: number }>;
  byMonth: Array<{ month: string /* YYYY-MM */; repeats: number; recognised: number; avoidedCost: number; wastedCost: number }>;
}

const DAY_MS = 86_400_000;

/**
 * The what-if view of a rule book: for every code, the version in force at `now`, in force over
 * all time (-infinity to infinity); a code whose rule is retired (none in force now) has none, so
 * its results take no part. Built from the book's public API only (rules.ts is not changed).
 */
export function currentRulesView(book: RuleBook, now = new Date()): RuleBook {
  const versions: RecognitionRuleVersion[] = [];
  for (const code of book.codes()) {
    const v = book.ruleAt(code, now);
    if (v) versions.push({ ...v, validFrom: '-infinity', validTo: null });
  }
  return new RuleBook(book.key, versions);
}

/**
 * The recognition item of every code that has a rule (either code of a mass/substance pair →
 * `analyte:<id>`, else the code itself), as two arrays for SQL. Codes of a pair that has a rule
 * for one code only are listed too, so a result under the other code still finds its partner.
 */
function itemMap(book: RuleBook): { codes: string[]; items: string[] } {
  const byCode = new Map<string, string>();
  for (const code of book.codes()) for (const c of itemCodes(code)) byCode.set(c, recognitionItem(c));
  return { codes: [...byCode.keys()], items: [...byCode.values()] };
}

/** Rule intervals and accreditations as SQL rows (jsonb parameters). */
function ruleRows(book: RuleBook, terminology: Terminology): unknown[] {
  return book.intervals().map((i) => ({
    code: i.code,
    vfrom: i.from === -Infinity ? '-infinity' : new Date(i.from).toISOString(),
    vto: i.to === Infinity ? 'infinity' : new Date(i.to).toISOString(),
    window_days: i.rule.windowDays,
    kind: i.rule.kind,
    recognised: i.rule.recognised,
    tiers: i.rule.tiers,
    members: i.rule.members,
    accred: i.rule.requireAccreditation,
    statuses: i.rule.statuses,
    canon_unit: i.rule.requireCanonicalUnit ? (terminology.canonicalUnit(i.code)?.unit ?? null) : null,
    specimen: i.rule.specimen ?? null,
  }));
}

function accreditationRows(config: HubConfig): unknown[] {
  const bound = (v: string | undefined, end: boolean) => (v === undefined ? 'infinity' : v.length === 10 ? new Date(Date.parse(`${v}T00:00:00Z`) + (end ? DAY_MS : 0)).toISOString() : v);
  return config.recognition.accreditation.map((a) => ({ member: a.member, lab: a.lab ?? null, codes: a.codes, vfrom: bound(a.validFrom, false), vto: bound(a.validTo, true) }));
}

interface RepeatRow {
  golden: string;
  item: string;
  code: string;
  first_member: string;
  first_time: Date;
  first_resource: string;
  repeat_member: string;
  repeat_time: Date;
  repeat_resource: string;
  /** Another result of the same member, item and instant (the same test) stands for this one. */
  shadowed: boolean;
}

interface Scope {
  from?: Date;
  to?: Date;
  member?: string;
  goldens?: string[];
  codes?: string[];
}

/**
 * The results the report counts, per rule kind: Observations (the result of a test), and for
 * imaging rules also ImagingStudy and DiagnosticReport (a RIS report is a DiagnosticReport whose
 * OBX carries only the finding's code: dropping it would lose every imaging exam sent that way).
 * A lab DiagnosticReport is the container of its Observations (the OBR carries the OBX's code):
 * counting it printed every repeat twice (issue 21). Several results of one member, item and
 * instant (a report and its finding, an ImagingStudy and its report) are one test: the first by
 * RESULT_PREFERENCE stands for them and the others are marked shadowed.
 */
const COUNTED = `(%.resource_type = 'Observation' OR (%kind = 'imaging' AND %.resource_type IN ('DiagnosticReport', 'ImagingStudy')))`;
const RESULT_PREFERENCE = `CASE %.resource_type WHEN 'ImagingStudy' THEN 0 WHEN 'DiagnosticReport' THEN 1 ELSE 2 END`;
const counted = (row: string, kind: string) => COUNTED.replace(/%kind/g, kind).replace(/%/g, row);
const preference = (row: string) => RESULT_PREFERENCE.replace(/%/g, row);

/**
 * The repeats (each with its earlier result) whose repeat time is inside the scope. Results are
 * partitioned by (golden patient, recognition item): either code of a mass/substance pair is one
 * test. Each row is still judged by the rule of its own code in force at its time (in `book`), and
 * the window is the repeat's rule's.
 */
async function findRepeats(db: Sql, config: HubConfig, book: RuleBook, terminology: Terminology, scope: Scope): Promise<RepeatRow[]> {
  const members = (await db.query<{ id: string }>(`SELECT id FROM member ORDER BY id`)).rows.map((r) => r.id);
  for (const m of config.members) if (!members.includes(m.id)) members.push(m.id);
  if (members.length < 2) return [];
  const maxWindow = Math.max(0, ...book.intervals().map((i) => i.rule.windowDays));
  const items = itemMap(book);
  const params: unknown[] = [JSON.stringify(ruleRows(book, terminology)), JSON.stringify(accreditationRows(config)), items.codes, items.items];
  const p = (v: unknown) => `$${params.push(v)}`;
  const where: string[] = [`r.resource_type IN ('Observation', 'DiagnosticReport', 'ImagingStudy')`];
  let lookBack = '';
  if (scope.from) {
    where.push(`r.effective_at >= ${p(new Date(scope.from.getTime() - maxWindow * DAY_MS).toISOString())}::timestamptz`);
    // Each code's own look-back before the range, not the longest of all codes: a month's report
    // of 7-day tests reads a month and a week, not four months. A code's look-back is the longest
    // window (any rule version) of any code of its item: a repeat under 14749-6 pairs with an
    // earlier 2345-7 as far back as 14749-6's window reaches.
    const codeWindows = new Map<string, number>();
    for (const i of book.intervals()) codeWindows.set(i.code, Math.max(codeWindows.get(i.code) ?? 0, i.rule.windowDays));
    const itemWindows = new Map<string, number>();
    items.codes.forEach((c, k) => itemWindows.set(items.items[k]!, Math.max(itemWindows.get(items.items[k]!) ?? 0, codeWindows.get(c) ?? 0)));
    lookBack = `JOIN unnest(${p(items.codes)}::text[], ${p(items.items.map((it) => itemWindows.get(it) ?? 0))}::int[]) AS cw(code, days)
                  ON cw.code = r.code AND r.effective_at >= ${p(scope.from.toISOString())}::timestamptz - make_interval(days => cw.days)`;
  }
  if (scope.to) where.push(`r.effective_at < ${p(scope.to.toISOString())}::timestamptz`);
  if (scope.codes) where.push(`r.code = ANY(${p(scope.codes)}::text[])`);
  const goldFilter = scope.goldens ? `AND l.golden_id = ANY(${p(scope.goldens)}::text[])` : '';
  const memberParams = members.map((m) => p(m));
  const lastCols = memberParams.map((mp, k) => `max(effective_at) FILTER (WHERE ok AND member_id = ${mp}) OVER w AS last_${k}`).join(',\n           ');
  const others = memberParams.map((mp, k) => `CASE WHEN member_id <> ${mp} THEN last_${k} END`).join(', ');
  const candidates = memberParams.map((mp, k) => `(${mp}, last_${k})`).join(', ');
  const repeatWhere: string[] = [];
  if (scope.from) repeatWhere.push(`effective_at >= ${p(scope.from.toISOString())}::timestamptz`);
  if (scope.member) repeatWhere.push(`member_id = ${p(scope.member)}`);
  const rows = await db.query<RepeatRow>(
    `WITH rules AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(code text, vfrom timestamptz, vto timestamptz, window_days int, kind text, recognised boolean, tiers text[], members text[], accred boolean, statuses text[], canon_unit text, specimen text)
     ), accr AS (
       SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(member text, lab text, codes text[], vfrom timestamptz, vto timestamptz)
     ), items AS (
       -- code → recognition item (analyte:<id> for either code of a mass/substance pair, else the code)
       SELECT * FROM unnest($3::text[], $4::text[]) AS i(code, item)
     ), gold AS ${scope.goldens ? '' : 'MATERIALIZED'} (
       -- MATCH links always point at an active golden patient (a merged one is emptied first, hub/mpi/golden.ts)
       SELECT s.patient_resource_id AS patient_id, l.golden_id AS golden
         FROM mpi_link l JOIN mpi_source s ON s.member_id = l.member_id AND s.mrn = l.mrn
        WHERE l.state = 'MATCH' AND s.patient_resource_id IS NOT NULL ${goldFilter}
     ), rr AS ${!scope.goldens && (scope.from || scope.to) ? 'MATERIALIZED' : ''} (
       -- A whole range: read its results and the patient index once each and hash-join them (the
       -- planner, misled by the rule intervals, otherwise probes an index per row: measured 2-3x
       -- slower); a few patients (repeatsOf): index probes are right, so nothing is materialised.
       SELECT r.* FROM recognition_result r ${lookBack} WHERE ${where.join(' AND ')}
     ), res AS (
       SELECT r.resource_id, r.code, it.item, r.member_id, r.effective_at, gold.golden, ru.window_days, ru.kind, ${preference('r')} AS pref,
              (ru.recognised AND r.status = ANY(ru.statuses)
               AND (ru.canon_unit IS NULL OR r.value IS NULL OR r.unit = ru.canon_unit)
               AND (ru.specimen IS NULL OR r.specimen IS NULL OR r.specimen = ru.specimen)
               AND (m.tier = ANY(ru.tiers) OR r.member_id = ANY(ru.members))
               AND (NOT ru.accred OR EXISTS (SELECT 1 FROM accr a WHERE a.member = r.member_id AND (a.lab IS NULL OR a.lab = r.lab)
                                             AND (cardinality(a.codes) = 0 OR r.code = ANY(a.codes)) AND a.vfrom <= r.effective_at AND r.effective_at < a.vto))) AS ok
         FROM rr r
         JOIN gold ON gold.patient_id = r.patient_id
         JOIN rules ru ON ru.code = r.code AND ru.vfrom <= r.effective_at AND r.effective_at < ru.vto
         JOIN items it ON it.code = r.code
         LEFT JOIN member m ON m.id = r.member_id
        WHERE ${counted('r', 'ru.kind')}
     ), lasts AS (
       SELECT resource_id, code, item, member_id, effective_at, golden, window_days, kind,
              -- the row before in the same partition is the same member at the same instant: one test, that row stands for it
              coalesce(lag(member_id) OVER w = member_id AND lag(effective_at) OVER w = effective_at, false) AS shadowed,
           ${lastCols}
         FROM res
       WINDOW w AS (PARTITION BY golden, item ORDER BY effective_at, member_id, pref, resource_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
     ), repeats AS (
       SELECT *, greatest(${others}) AS first_time FROM lasts
     ), found AS (
       SELECT * FROM repeats
        WHERE first_time IS NOT NULL AND first_time < effective_at AND effective_at < first_time + make_interval(days => window_days)
          ${repeatWhere.length ? `AND ${repeatWhere.join(' AND ')}` : ''}
     )
     SELECT f.golden, f.item, f.code, fm.member AS first_member, f.first_time, fr.resource_id AS first_resource,
            f.member_id AS repeat_member, f.effective_at AS repeat_time, f.resource_id AS repeat_resource, f.shadowed
       FROM found f
       CROSS JOIN LATERAL (SELECT c.m AS member FROM (VALUES ${candidates}) AS c(m, t) WHERE c.m <> f.member_id AND c.t = f.first_time ORDER BY c.m LIMIT 1) fm
       -- the earlier result itself (any code of the item), by index probes (res is not materialised: it is read once, above)
       CROSS JOIN LATERAL (SELECT x.resource_id FROM mpi_link l JOIN mpi_source s ON s.member_id = l.member_id AND s.mrn = l.mrn JOIN recognition_result x ON x.patient_id = s.patient_resource_id
                            WHERE l.golden_id = f.golden AND l.state = 'MATCH' AND x.code IN (SELECT i.code FROM items i WHERE i.item = f.item)
                              AND x.member_id = fm.member AND x.effective_at = f.first_time AND ${counted('x', 'f.kind')}
                            ORDER BY ${preference('x')}, x.resource_id LIMIT 1) fr
      ORDER BY f.effective_at, f.golden, f.code, f.resource_id`,
    params,
  );
  return rows.rows;
}

interface RecognisedRow {
  at: Date;
  requesting_member: string;
  code: string;
}

/**
 * Checks that offered a recognisable result and were not followed by a repeat at the requesting
 * member before it expired (a result under any code of the item: mg/dL glucose after an offered
 * mmol/L one is a repeat, not a recognition).
 */
async function recognisedChecks(db: Sql, items: { codes: string[]; items: string[] }, range: { from?: Date; to?: Date; member?: string }): Promise<RecognisedRow[]> {
  const params: unknown[] = [items.codes, items.items];
  const where = ['c.recognisable'];
  if (range.from) where.push(`c.at >= $${params.push(range.from.toISOString())}::timestamptz`);
  if (range.to) where.push(`c.at < $${params.push(range.to.toISOString())}::timestamptz`);
  if (range.member) where.push(`c.requesting_member = $${params.push(range.member)}`);
  const rows = await db.query<RecognisedRow>(
    `SELECT DISTINCT ON (c.requesting_member, c.golden_id, c.code, c.result_resource_id) c.at, c.requesting_member, c.code
       FROM recognition_check c
      WHERE ${where.join(' AND ')}
        AND NOT EXISTS (
          SELECT 1 FROM mpi_link l JOIN mpi_source s ON s.member_id = l.member_id AND s.mrn = l.mrn
            JOIN recognition_result r ON r.patient_id = s.patient_resource_id
           WHERE l.golden_id = (SELECT coalesce(g.merged_into, g.id) FROM mpi_golden g WHERE g.id = c.golden_id) AND l.state = 'MATCH'
             AND (r.code = c.code OR r.code IN (SELECT i2.code FROM unnest($1::text[], $2::text[]) AS i1(code, item) JOIN unnest($1::text[], $2::text[]) AS i2(code, item) ON i2.item = i1.item WHERE i1.code = c.code))
             AND r.member_id = c.requesting_member AND r.effective_at > c.at AND r.effective_at < c.expires_at)
      ORDER BY c.requesting_member, c.golden_id, c.code, c.result_resource_id, c.at`,
    params,
  );
  return rows.rows;
}

/**
 * The report sorts every result of the range by (golden patient, code, time): with the default
 * 4 MB of work_mem that sort spills to disk; 256 MB for this one transaction keeps a month in memory.
 * JIT off: compiling this statement's many expressions cost about 0.5 s and saved nothing measurable.
 */
async function inReportTransaction<T>(db: HubDb, work: (tx: Sql) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.query(`SET LOCAL work_mem = '256MB'`);
    await tx.query(`SET LOCAL jit = off`);
    return work(tx);
  });
}

const month = (d: Date) => d.toISOString().slice(0, 7);
const round2 = (n: number) => Math.round(n * 100) / 100;

/** The rule book a report judges by: the versions in force at each result's time, or today's over all time. */
async function bookFor(db: HubDb, rules: RulesMode): Promise<RuleBook> {
  const book = await ruleBook(db);
  return rules === 'current' ? currentRulesView(book) : book;
}

/**
 * The report. Pair times are ISO 8601 with the UTC offset of the member that did the test
 * (members[].utcOffset): a committee reads them as the members' clocks showed them. Months
 * (byMonth) and the range stay in UTC, as the bounds are.
 */
export async function duplicateReport(db: HubDb, config: HubConfig, range: { from?: Date; to?: Date; member?: string; rules?: RulesMode }): Promise<DuplicateReport> {
  const rules = range.rules ?? 'at-time';
  const [book, terminology] = [await bookFor(db, rules), await syncTerminology(db)];
  const repeats = (await inReportTransaction(db, (tx) => findRepeats(tx, config, book, terminology, range))).filter((r) => !r.shadowed);
  const pairs: Array<DuplicateTest & { at: Date }> = repeats.map((r) => ({
    patient: r.golden,
    code: r.code,
    firstMember: r.first_member,
    firstTime: localTime(r.first_time, utcOffsetOf(config, r.first_member)),
    firstResourceId: r.first_resource,
    repeatMember: r.repeat_member,
    repeatTime: localTime(r.repeat_time, utcOffsetOf(config, r.repeat_member)),
    repeatResourceId: r.repeat_resource,
    wastedCost: priceAt(config.recognition, r.repeat_member, r.code, r.repeat_time),
    at: r.repeat_time,
  }));
  const recognised = await recognisedChecks(db, itemMap(book), range);
  const pairKey = new Map<string, { firstMember: string; repeatMember: string; repeats: number; wastedCost: number }>();
  const testKey = new Map<string, { code: string; repeats: number; wastedCost: number }>();
  const monthKey = new Map<string, { month: string; repeats: number; recognised: number; avoidedCost: number; wastedCost: number }>();
  const monthOf = (m: string) => monthKey.get(m) ?? monthKey.set(m, { month: m, repeats: 0, recognised: 0, avoidedCost: 0, wastedCost: 0 }).get(m)!;
  let wasted = 0;
  for (const d of pairs) {
    wasted += d.wastedCost;
    const pk = `${d.firstMember}\u0000${d.repeatMember}`;
    const mp = pairKey.get(pk) ?? pairKey.set(pk, { firstMember: d.firstMember, repeatMember: d.repeatMember, repeats: 0, wastedCost: 0 }).get(pk)!;
    mp.repeats++;
    mp.wastedCost += d.wastedCost;
    const t = testKey.get(d.code) ?? testKey.set(d.code, { code: d.code, repeats: 0, wastedCost: 0 }).get(d.code)!;
    t.repeats++;
    t.wastedCost += d.wastedCost;
    const m = monthOf(month(d.at));
    m.repeats++;
    m.wastedCost += d.wastedCost;
  }
  let avoided = 0;
  for (const c of recognised) {
    // The test the requesting member did not do, at its own price.
    const price = priceAt(config.recognition, c.requesting_member, c.code, c.at);
    avoided += price;
    const m = monthOf(month(c.at));
    m.recognised++;
    m.avoidedCost += price;
  }
  const total = recognised.length + pairs.length;
  return {
    ...(range.from ? { from: range.from.toISOString() } : {}),
    ...(range.to ? { to: range.to.toISOString() } : {}),
    rules,
    pairs: pairs.map(({ at: _at, ...p }) => p),
    totals: { repeats: pairs.length, recognised: recognised.length, recognitionRate: total ? recognised.length / total : null, avoidedCost: round2(avoided), wastedCost: round2(wasted), currency: config.recognition.currency },
    byMemberPair: [...pairKey.values()].map((v) => ({ ...v, wastedCost: round2(v.wastedCost) })).sort((a, b) => b.repeats - a.repeats || a.firstMember.localeCompare(b.firstMember) || a.repeatMember.localeCompare(b.repeatMember)),
    byTest: [...testKey.values()].map((v) => ({ ...v, wastedCost: round2(v.wastedCost) })).sort((a, b) => b.repeats - a.repeats || a.code.localeCompare(b.code)),
    byMonth: [...monthKey.values()].map((v) => ({ ...v, avoidedCost: round2(v.avoidedCost), wastedCost: round2(v.wastedCost) })).sort((a, b) => a.month.localeCompare(b.month)),
  };
}

/**
 * For the cost feed's flag: which of these stored results (resource ids of Observation/
 * DiagnosticReport/ImagingStudy) are repeats, and of what — by the rules in force at the time, the
 * same query as the report. A result another one of its test stands for (an imaging report's
 * finding, the report of an ImagingStudy: same member, item and instant) gets that test's flag, so
 * whichever resource the feed derives the event from carries it; a lab DiagnosticReport (a container
 * of Observations) is never a result and never flagged.
 */
export async function repeatsOf(db: HubDb, config: HubConfig, resourceIds: string[]): Promise<Map<string, { earlierResourceId: string; earlierMember: string }>> {
  const out = new Map<string, { earlierResourceId: string; earlierMember: string }>();
  if (!resourceIds.length) return out;
  // Ids may come bare or as Type/id.
  const bare = new Map(resourceIds.map((id) => [id.includes('/') ? id.slice(id.lastIndexOf('/') + 1) : id, id]));
  const wanted = await db.query<{ golden: string; code: string }>(
    `SELECT DISTINCT l.golden_id AS golden, r.code
       FROM recognition_result r JOIN mpi_source s ON s.patient_resource_id = r.patient_id
       JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH'
      WHERE r.resource_id = ANY($1::text[])`,
    [[...bare.keys()]],
  );
  if (!wanted.rows.length) return out;
  const [book, terminology] = [await ruleBook(db), await syncTerminology(db)];
  // Every code of the wanted results' items: the earlier result may be under the other code of a pair.
  const codes = [...new Set(wanted.rows.flatMap((r) => itemCodes(r.code)))];
  const repeats = await inReportTransaction(db, (tx) => findRepeats(tx, config, book, terminology, { goldens: [...new Set(wanted.rows.map((r) => r.golden))], codes }));
  for (const r of repeats) {
    const asked = bare.get(r.repeat_resource);
    if (asked !== undefined && !out.has(asked)) out.set(asked, { earlierResourceId: r.first_resource, earlierMember: r.first_member });
  }
  return out;
}
