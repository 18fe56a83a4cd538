/**
 * Alliance KPIs (`GET /api/kpi`, `yilian kpi`): device utilisation and sharing, two-way referral
 * rates, expert outreach, duplicate tests and recognition, mapping coverage. Aggregates only: no
 * patient data and no patient key leaves this module. Owns the definitions (docs/cost-feed.md);
 * the figures come from the cost event feed (current state of each source: events no later event
 * corrects, voids excluded), the duplicate-test report (hub/recognition/duplicates.ts) and the
 * terminology coverage counters (hub/terminology/worklist.ts `coverage`) — neither is re-implemented here.
 *
 * Definitions, per month (the member's local day of the event):
 * - referrals: up/down = referral events by direction; upRate = up / visits at members that can
 *   refer up (not tertiary); downRate = down / visits at members that can refer down (the lead and
 *   other upper tiers: not primary). Rates are null when the denominator is 0. With a member
 *   filter: referrals from or to it, visits at it.
 * - outreach: days = distinct (expert, member, day) of outreach sessions; patients = distinct
 *   patients seen in them; experts = distinct experts.
 * - devices: exams and minutes of device-usage; otherMemberExams = exams of patients whose home
 *   member (the member of their first visit in the feed) is not the device's owner.
 */
import type { HubConfig } from '../config';
import type { HubDb } from '../sql';
import { coverage } from '../terminology/worklist';
import { duplicateReport, type DuplicateReport, type RulesMode } from '../recognition/duplicates';

export interface KpiRange {
  from: string; // YYYY-MM
  to: string; // YYYY-MM
  member?: string;
  /** Rules the duplicate figures are judged by: at-time (default) or current (what-if, the dashboard's toggle). */
  rules?: RulesMode;
}

interface RecognitionKpi { recognised: number; repeats: number; rate: number | null }
interface DuplicatesKpi { repeats: number; avoidedCost: number; wastedCost: number; currency: string }
interface ReferralsKpi { up: number; down: number; upRate: number | null; downRate: number | null }
interface OutreachKpi { days: number; patients: number; experts: number }
interface DevicesKpi { exams: number; minutes: number; otherMemberExams: number; sharingRate: number | null }

export interface KpiReport {
  from: string;
  to: string;
  member: string | null;
  /** The rules the duplicate and recognition figures were judged by. */
  rules: RulesMode;
  totals: {
    recognition: RecognitionKpi;
    duplicates: DuplicatesKpi;
    referrals: ReferralsKpi;
    outreach: OutreachKpi;
    devices: DevicesKpi;
    mappingCoverage: { occurrences: number | null; distinct: number | null };
  };
  months: Array<{ month: string; recognition: RecognitionKpi; duplicates: DuplicatesKpi; referrals: ReferralsKpi; outreach: OutreachKpi; devices: DevicesKpi }>;
  devices: Array<{ deviceId: string; name: string | null; modality: string | null; ownerMember: string; exams: number; minutes: number; otherMemberExams: number; sharingRate: number | null }>;
  memberPairs: Array<{ firstMember: string; repeatMember: string; repeats: number; wastedCost: number }>;
  coverage: Array<{ member: string; system: string; occurrences: number | null; distinct: number | null }>;
}

const rate = (n: number, d: number): number | null => (d > 0 ? n / d : null);

/** Months from..to inclusive, YYYY-MM. */
export function monthsBetween(from: string, to: string): string[] {
  const out: string[] = [];
  let [y, m] = from.split('-').map(Number) as [number, number];
  const [ty, tm] = to.split('-').map(Number) as [number, number];
  while (y < ty || (y === ty && m <= tm)) {
    out.push(`${y}-${String(m).padStart(2, '0')}`);
    m += 1;
    if (m > 12) {
      m = 1;
      y += 1;
    }
  }
  return out;
}

function nextMonth(month: string): string {
  const [y, m] = month.split('-').map(Number) as [number, number];
  return m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, '0')}`;
}

/** Default period: the twelve months up to the current one. */
export function defaultRange(now = new Date()): { from: string; to: string } {
  const to = now.toISOString().slice(0, 7);
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1));
  return { from: d.toISOString().slice(0, 7), to };
}

/** Current events of the period: the latest state of each source, voids and superseded states left out. */
const CURRENT = `
  current AS (
    SELECT e.* FROM cost_event e
     WHERE e.local_day >= $1::date AND e.local_day < $2::date AND e.status = 'active'
       AND NOT EXISTS (SELECT 1 FROM cost_event c WHERE c.corrects = e.id)
  )`;

export async function computeKpis(db: HubDb, config: HubConfig, range: KpiRange): Promise<KpiReport> {
  const start = `${range.from}-01`;
  const end = `${nextMonth(range.to)}-01`;
  const member = range.member ?? null;
  const months = monthsBetween(range.from, range.to);
  const tertiary = config.members.filter((m) => m.tier === 'tertiary').map((m) => m.id);
  const primary = config.members.filter((m) => m.tier === 'primary').map((m) => m.id);
  const params = [start, end, member, tertiary, primary];

  const referralRows = await db.query<{ month: string; up: number; down: number; lower_visits: number; upper_visits: number }>(
    `WITH ${CURRENT}
     SELECT to_char(local_day, 'YYYY-MM') AS month,
            count(*) FILTER (WHERE kind = 'referral' AND event->'referral'->>'direction' = 'up'
                             AND ($3::text IS NULL OR event->'referral'->>'toMember' = $3 OR event->'referral'->>'fromMember' = $3))::int AS up,
            count(*) FILTER (WHERE kind = 'referral' AND event->'referral'->>'direction' = 'down'
                             AND ($3::text IS NULL OR event->'referral'->>'toMember' = $3 OR event->'referral'->>'fromMember' = $3))::int AS down,
            count(*) FILTER (WHERE kind = 'encounter' AND NOT member_id = ANY($4::text[]) AND ($3::text IS NULL OR member_id = $3))::int AS lower_visits,
            count(*) FILTER (WHERE kind = 'encounter' AND NOT member_id = ANY($5::text[]) AND ($3::text IS NULL OR member_id = $3))::int AS upper_visits
       FROM current WHERE kind IN ('referral', 'encounter') GROUP BY 1`,
    params,
  );
  const outreachSql = (group: string) => `WITH ${CURRENT}
     SELECT ${group} count(DISTINCT (event->'resources'->>'practitionerKey', member_id, local_day))::int AS days,
            count(DISTINCT patient_key)::int AS patients, count(DISTINCT event->'resources'->>'practitionerKey')::int AS experts
       FROM current WHERE kind = 'outreach-session' AND ($3::text IS NULL OR member_id = $3)`;
  const outreachMonths = await db.query<{ month: string; days: number; patients: number; experts: number }>(`${outreachSql(`to_char(local_day, 'YYYY-MM') AS month,`)} GROUP BY 1`, params.slice(0, 3));
  const outreachTotal = (await db.query<{ days: number; patients: number; experts: number }>(outreachSql(''), params.slice(0, 3))).rows[0]!;

  // A patient's home member: where their first visit in the feed was (all time, not only the period).
  const deviceSql = `WITH ${CURRENT},
     home AS (
       SELECT DISTINCT ON (patient_key) patient_key, member_id FROM cost_event e
        WHERE kind = 'encounter' AND status = 'active' AND patient_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cost_event c WHERE c.corrects = e.id)
        ORDER BY patient_key, occurred_at, seq
     )
     SELECT to_char(u.local_day, 'YYYY-MM') AS month, u.event->'resources'->>'device' AS device, max(u.event->'resources'->>'deviceName') AS name,
            max(u.event->'resources'->>'modality') AS modality, u.member_id AS owner, count(*)::int AS exams,
            coalesce(sum((u.event->>'quantity')::numeric), 0)::float8 AS minutes,
            count(*) FILTER (WHERE h.member_id IS NOT NULL AND h.member_id <> u.member_id)::int AS other
       FROM current u LEFT JOIN home h ON h.patient_key = u.patient_key
      WHERE u.kind = 'device-usage' AND ($3::text IS NULL OR u.member_id = $3)
      GROUP BY 1, 2, 5`;
  const deviceRows = (await db.query<{ month: string; device: string; name: string | null; modality: string | null; owner: string; exams: number; minutes: number; other: number }>(deviceSql, params.slice(0, 3))).rows;

  const duplicates: DuplicateReport = await duplicateReport(db, config, { from: new Date(`${start}T00:00:00Z`), to: new Date(`${end}T00:00:00Z`), member: member ?? undefined, rules: range.rules ?? 'at-time' });
  const currency = duplicates.totals.currency;

  const byMonth = new Map(months.map((m) => [m, {
    month: m,
    recognition: { recognised: 0, repeats: 0, rate: null as number | null },
    duplicates: { repeats: 0, avoidedCost: 0, wastedCost: 0, currency },
    referrals: { up: 0, down: 0, upRate: null as number | null, downRate: null as number | null },
    outreach: { days: 0, patients: 0, experts: 0 },
    devices: { exams: 0, minutes: 0, otherMemberExams: 0, sharingRate: null as number | null },
  }]));
  let lowerVisits = 0;
  let upperVisits = 0;
  for (const r of referralRows.rows) {
    const m = byMonth.get(r.month);
    if (!m) continue;
    m.referrals = { up: r.up, down: r.down, upRate: rate(r.up, r.lower_visits), downRate: rate(r.down, r.upper_visits) };
    lowerVisits += r.lower_visits;
    upperVisits += r.upper_visits;
  }
  for (const r of outreachMonths.rows) {
    const m = byMonth.get(r.month);
    if (m) m.outreach = { days: r.days, patients: r.patients, experts: r.experts };
  }
  const devices = new Map<string, KpiReport['devices'][number]>();
  for (const r of deviceRows) {
    const m = byMonth.get(r.month);
    if (m) {
      m.devices.exams += r.exams;
      m.devices.minutes += r.minutes;
      m.devices.otherMemberExams += r.other;
    }
    const d = devices.get(r.device) ?? { deviceId: r.device, name: r.name, modality: r.modality, ownerMember: r.owner, exams: 0, minutes: 0, otherMemberExams: 0, sharingRate: null };
    d.exams += r.exams;
    d.minutes += r.minutes;
    d.otherMemberExams += r.other;
    d.sharingRate = rate(d.otherMemberExams, d.exams);
    devices.set(r.device, d);
  }
  for (const m of byMonth.values()) m.devices.sharingRate = rate(m.devices.otherMemberExams, m.devices.exams);
  for (const d of duplicates.byMonth) {
    const m = byMonth.get(d.month);
    if (!m) continue;
    m.recognition = { recognised: d.recognised, repeats: d.repeats, rate: rate(d.recognised, d.recognised + d.repeats) };
    m.duplicates = { repeats: d.repeats, avoidedCost: d.avoidedCost, wastedCost: d.wastedCost, currency };
  }

  // Mapping coverage: the terminology counters (hub/terminology/worklist.ts), as fractions.
  const lastDay = new Date(Date.parse(`${end}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
  const cov = await coverage(db, { from: start, to: lastDay, member: member ?? undefined });
  const perSystem = new Map<string, { member: string; system: string; n: number; m: number; dn: number; dm: number }>();
  for (const row of cov.rows) {
    const key = `${row.member}\u0000${row.system}`;
    const s = perSystem.get(key) ?? { member: row.member, system: row.system, n: 0, m: 0, dn: 0, dm: 0 };
    s.n += row.occurrences;
    s.m += row.mappedOccurrences;
    s.dn += row.distinctCodes;
    s.dm += row.mappedCodes;
    perSystem.set(key, s);
  }
  const all = [...perSystem.values()].reduce((a, s) => ({ n: a.n + s.n, m: a.m + s.m, dn: a.dn + s.dn, dm: a.dm + s.dm }), { n: 0, m: 0, dn: 0, dm: 0 });

  const monthList = [...byMonth.values()];
  const sum = (f: (m: (typeof monthList)[number]) => number) => monthList.reduce((a, m) => a + f(m), 0);
  const up = sum((m) => m.referrals.up);
  const down = sum((m) => m.referrals.down);
  const exams = sum((m) => m.devices.exams);
  const other = sum((m) => m.devices.otherMemberExams);
  return {
    from: range.from,
    to: range.to,
    member,
    rules: range.rules ?? 'at-time',
    totals: {
      recognition: { recognised: duplicates.totals.recognised, repeats: duplicates.totals.repeats, rate: duplicates.totals.recognitionRate },
      duplicates: { repeats: duplicates.totals.repeats, avoidedCost: duplicates.totals.avoidedCost, wastedCost: duplicates.totals.wastedCost, currency },
      referrals: { up, down, upRate: rate(up, lowerVisits), downRate: rate(down, upperVisits) },
      outreach: { days: outreachTotal.days, patients: outreachTotal.patients, experts: outreachTotal.experts },
      devices: { exams, minutes: sum((m) => m.devices.minutes), otherMemberExams: other, sharingRate: rate(other, exams) },
      mappingCoverage: { occurrences: rate(all.m, all.n), distinct: rate(all.dm, all.dn) },
    },
    months: monthList,
    devices: [...devices.values()].sort((a, b) => b.exams - a.exams || a.deviceId.localeCompare(b.deviceId)),
    memberPairs: (duplicates.byMemberPair).map((p) => ({ firstMember: p.firstMember, repeatMember: p.repeatMember, repeats: p.repeats, wastedCost: p.wastedCost })),
    coverage: [...perSystem.values()].map((s) => ({ member: s.member, system: s.system, occurrences: rate(s.m, s.n), distinct: rate(s.dm, s.dn) })),
  };
}

/** The `yilian kpi` table. */
export function formatKpis(r: KpiReport): string {
  const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(1)}%`);
  const t = r.totals;
  const lines = [
    `KPIs ${r.from} … ${r.to}${r.member ? ` for ${r.member}` : ''}`,
    `  referrals        up ${t.referrals.up} (${pct(t.referrals.upRate)} of lower-tier visits), down ${t.referrals.down} (${pct(t.referrals.downRate)} of upper-tier visits)`,
    `  outreach         ${t.outreach.days} expert-days, ${t.outreach.patients} patients, ${t.outreach.experts} experts`,
    `  devices          ${t.devices.exams} exams, ${t.devices.minutes} min, ${t.devices.otherMemberExams} for other members' patients (${pct(t.devices.sharingRate)})`,
    `  duplicates       ${t.duplicates.repeats} repeats, wasted ${t.duplicates.wastedCost} ${t.duplicates.currency}, avoided ${t.duplicates.avoidedCost} ${t.duplicates.currency}`,
    `  recognition      ${t.recognition.recognised} recognised, rate ${pct(t.recognition.rate)}`,
    `  mapping coverage ${pct(t.mappingCoverage.occurrences)} of occurrences, ${pct(t.mappingCoverage.distinct)} of distinct codes`,
    '',
    `  ${'month'.padEnd(8)} ${'up'.padStart(4)} ${'down'.padStart(5)} ${'outr.d'.padStart(6)} ${'exams'.padStart(6)} ${'shared'.padStart(7)} ${'repeats'.padStart(7)} ${'wasted'.padStart(9)}`,
  ];
  for (const m of r.months) {
    lines.push(`  ${m.month.padEnd(8)} ${String(m.referrals.up).padStart(4)} ${String(m.referrals.down).padStart(5)} ${String(m.outreach.days).padStart(6)} ${String(m.devices.exams).padStart(6)} ${pct(m.devices.sharingRate).padStart(7)} ${String(m.duplicates.repeats).padStart(7)} ${String(m.duplicates.wastedCost).padStart(9)}`);
  }
  if (r.devices.length) {
    lines.push('', `  ${'device'.padEnd(14)} ${'owner'.padEnd(10)} ${'modality'.padEnd(8)} ${'exams'.padStart(6)} ${'minutes'.padStart(8)} ${'shared'.padStart(7)}`);
    for (const d of r.devices) lines.push(`  ${(d.name ?? d.deviceId.slice(0, 12)).padEnd(14)} ${d.ownerMember.padEnd(10)} ${(d.modality ?? '-').padEnd(8)} ${String(d.exams).padStart(6)} ${String(d.minutes).padStart(8)} ${pct(d.sharingRate).padStart(7)}`);
  }
  return lines.join('\n') + '\n';
}
