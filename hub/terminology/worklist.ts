/**
 * The unmapped worklist (unmapped_code) and the coverage counters (coded_element_day) as the
 * committee reads them. Both are fed by the trigger in schema.ts, never counted here; the one write
 * is resolving the worklist entries a new map version covers.
 */
import type { Sql } from '../sql';
import type { ConceptMap } from '../../mappings/terminology/conceptmap';
import { Terminology } from '../../mappings/terminology/translator';

export interface WorklistFilter {
  member?: string;
  system?: string;
  state?: 'open' | 'resolved';
  limit?: number;
}

export async function worklist(db: Sql, filter: WorklistFilter = {}): Promise<unknown[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(sql.replace('?', `$${params.length}`));
  };
  add('state = ?', filter.state ?? 'open');
  if (filter.member) add('member_id = ?', filter.member);
  if (filter.system) add('system = ?', filter.system);
  params.push(filter.limit ?? 200);
  const rows = await db.query(
    `SELECT member_id AS member, system, code, display, occurrences AS count, first_seen, last_seen, example_raw_id, state FROM unmapped_code WHERE ${where.join(' AND ')} ORDER BY occurrences DESC, system, code LIMIT $${params.length}`,
    params,
  );
  return rows.rows;
}

/** Worklist entries a map now covers are resolved. */
export async function resolveWorklist(tx: Sql, map: ConceptMap): Promise<void> {
  const terminology = new Terminology([map]);
  const open = await tx.query<{ member_id: string; system: string; code: string }>(`SELECT member_id, system, code FROM unmapped_code WHERE state = 'open' AND system = ANY($1::text[])`, [map.group.map((g) => g.source)]);
  for (const row of open.rows) {
    if (terminology.translate(row.system, row.code).result) {
      await tx.query(`UPDATE unmapped_code SET state = 'resolved', resolved_at = clock_timestamp() WHERE member_id = $1 AND system = $2 AND code = $3`, [row.member_id, row.system, row.code]);
    }
  }
}

export interface CoverageRow {
  member: string;
  channel: string;
  system: string;
  occurrences: number;
  mappedOccurrences: number;
  occurrencePct: number;
  distinctCodes: number;
  mappedCodes: number;
  distinctPct: number;
}

export interface CoverageReport {
  from: string | null;
  to: string | null;
  rows: CoverageRow[];
  /** All members (or the one asked for) together, per day. */
  trend: Array<{ day: string; occurrences: number; mappedOccurrences: number; occurrencePct: number }>;
  /** The same per day and per member, channel and code system: how each one's coverage moves. */
  trendBy: Array<{ day: string; member: string; channel: string; system: string; occurrences: number; mappedOccurrences: number; occurrencePct: number }>;
}

const pct = (a: number, b: number) => (b === 0 ? 0 : Math.round((a / b) * 10_000) / 100);

/**
 * Coverage per member, channel and source code system: % of occurrences mapped and % of distinct
 * codes mapped (a code counts as mapped when its occurrences were mapped when stored), plus the
 * daily trend, overall and per member, channel and system. Sums over coded_element_day only.
 */
export async function coverage(db: Sql, options: { from?: string; to?: string; member?: string } = {}): Promise<CoverageReport> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (options.from) where.push(`day >= $${params.push(options.from)}::date`);
  if (options.to) where.push(`day <= $${params.push(options.to)}::date`);
  if (options.member) where.push(`member_id = $${params.push(options.member)}`);
  const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const rows = await db.query<{ member: string; channel: string; system: string; occurrences: number; mapped_occurrences: number; distinct_codes: number; mapped_codes: number }>(
    `WITH per_code AS (
       SELECT member_id, channel_id, system, code, sum(occurrences) AS n, sum(occurrences) FILTER (WHERE mapped) AS m
         FROM coded_element_day ${w} GROUP BY member_id, channel_id, system, code
     )
     SELECT member_id AS member, channel_id AS channel, system, sum(n)::bigint AS occurrences, coalesce(sum(m), 0)::bigint AS mapped_occurrences,
            count(*)::int AS distinct_codes, count(*) FILTER (WHERE m = n)::int AS mapped_codes
       FROM per_code GROUP BY member_id, channel_id, system ORDER BY member_id, channel_id, system`,
    params,
  );
  const trend = await db.query<{ day: string; occurrences: number; mapped: number }>(
    `SELECT day::text AS day, sum(occurrences)::bigint AS occurrences, coalesce(sum(occurrences) FILTER (WHERE mapped), 0)::bigint AS mapped FROM coded_element_day ${w} GROUP BY day ORDER BY day`,
    params,
  );
  const trendBy = await db.query<{ day: string; member: string; channel: string; system: string; occurrences: number; mapped: number }>(
    `SELECT day::text AS day, member_id AS member, channel_id AS channel, system, sum(occurrences)::bigint AS occurrences, coalesce(sum(occurrences) FILTER (WHERE mapped), 0)::bigint AS mapped
       FROM coded_element_day ${w} GROUP BY day, member_id, channel_id, system ORDER BY day, member_id, channel_id, system`,
    params,
  );
  return {
    from: options.from ?? null,
    to: options.to ?? null,
    rows: rows.rows.map((r) => ({
      member: r.member,
      channel: r.channel,
      system: r.system,
      occurrences: Number(r.occurrences),
      mappedOccurrences: Number(r.mapped_occurrences),
      occurrencePct: pct(Number(r.mapped_occurrences), Number(r.occurrences)),
      distinctCodes: r.distinct_codes,
      mappedCodes: r.mapped_codes,
      distinctPct: pct(r.mapped_codes, r.distinct_codes),
    })),
    trend: trend.rows.map((t) => ({ day: t.day, occurrences: Number(t.occurrences), mappedOccurrences: Number(t.mapped), occurrencePct: pct(Number(t.mapped), Number(t.occurrences)) })),
    trendBy: trendBy.rows.map((t) => ({ day: t.day, member: t.member, channel: t.channel, system: t.system, occurrences: Number(t.occurrences), mappedOccurrences: Number(t.mapped), occurrencePct: pct(Number(t.mapped), Number(t.occurrences)) })),
  };
}
