/**
 * The unmapped worklist (unmapped_code) and the coverage counters (coded_element_day) as the
 * committee reads them. Both are fed by the trigger in schema.ts, never counted here; the one write
 * is resolving the worklist entries a new map version covers. Beside them, the approved maps whose
 * observed units do not fit the target's property (`unitMismatches`): a mass unit under a
 * substance-concentration code or the reverse.
 */
import type { Sql } from '../sql';
import type { ConceptMap } from '../../mappings/terminology/conceptmap';
import { Terminology } from '../../mappings/terminology/translator';
import { analyteOf, concentrationKind } from '../../mappings/terminology/analytes';
import { loincSubset } from '../../mappings/terminology/shipped';
import { LOINC, ORIGINAL_QUANTITY_URL, UCUM, WHO_MAP_URL, localSystemMember } from '../../mappings/terminology/systems';
import { resolveUnit, unitConversion } from '../../mappings/terminology/ucum';

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
  /** Distinct source codes of this member and system whose approved map's target does not fit the units they arrive in (channel-independent). */
  unitMismatchCodes: number;
}

export interface CoverageReport {
  from: string | null;
  to: string | null;
  rows: CoverageRow[];
  /** All members (or the one asked for) together, per day. */
  trend: Array<{ day: string; occurrences: number; mappedOccurrences: number; occurrencePct: number }>;
  /** The same per day and per member, channel and code system: how each one's coverage moves. */
  trendBy: Array<{ day: string; member: string; channel: string; system: string; occurrences: number; mappedOccurrences: number; occurrencePct: number }>;
  /** Approved maps whose observed units do not fit the target code's property (all time: units are read from the stored results). */
  unitMismatches: UnitMismatch[];
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
  const mismatches = await unitMismatches(db, { member: options.member });
  const mismatchCodes = (member: string, system: string) => new Set(mismatches.filter((m) => m.member === member && m.system === system).map((m) => m.code)).size;
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
      unitMismatchCodes: mismatchCodes(r.member, r.system),
    })),
    trend: trend.rows.map((t) => ({ day: t.day, occurrences: Number(t.occurrences), mappedOccurrences: Number(t.mapped), occurrencePct: pct(Number(t.mapped), Number(t.occurrences)) })),
    trendBy: trendBy.rows.map((t) => ({ day: t.day, member: t.member, channel: t.channel, system: t.system, occurrences: Number(t.occurrences), mappedOccurrences: Number(t.mapped), occurrencePct: pct(Number(t.mapped), Number(t.occurrences)) })),
    unitMismatches: mismatches,
  };
}

/**
 * Unit fit of approved maps. A local code mapped to a mass-concentration LOINC code (2345-7, MCnc)
 * that arrives in a substance unit (mmol/L) — or the other way round — is stored correctly since the
 * map stage converts through the analyte's molar mass, but the committee should know: the member
 * reports the substance, and the substance code of the pair is the faithful target. The observed
 * units are read from the stored Observations (the original quantity the map stage kept, else the
 * value as stored), found through the source-code GIN index (`resource_mapping_sources`), so nothing
 * is added to the merge.
 */
export type ConcentrationKind = 'mass' | 'substance';

const KIND_WORD: Record<ConcentrationKind, string> = { mass: 'mass concentration', substance: 'substance concentration' };

/**
 * Whether a unit (as sent; resolved to UCUM as the map stage does) is a mass or a substance
 * concentration: ucum-lhc keeps the mole as its own dimension, so a unit converts to mmol/L without a
 * molar mass only if it is an amount of substance per volume, and to g/L only if it is a mass per
 * volume (counts, enzyme activity, equivalents and fractions are neither).
 */
export function unitConcentrationKind(unit: string): ConcentrationKind | undefined {
  const resolved = resolveUnit(unit);
  if (!resolved.ok) return undefined;
  if (unitConversion(resolved.code, 'mmol/L').ok) return 'substance';
  if (unitConversion(resolved.code, 'g/L').ok) return 'mass';
  return undefined;
}

/** The kind of concentration a LOINC code measures (its property), from the shipped subset. */
let loincKinds: Map<string, { kind: ConcentrationKind; display: string }> | undefined;
export function loincConcentrationKind(code: string): ConcentrationKind | undefined {
  loincKinds ??= new Map(
    loincSubset().flatMap((c) => {
      const kind = concentrationKind(c.property);
      return kind ? [[c.code, { kind, display: c.display }] as const] : [];
    }),
  );
  return loincKinds.get(code)?.kind;
}

export interface UnitMismatch {
  member: string | null;
  system: string;
  code: string;
  display: string | null;
  /** The approved target (LOINC) and what it measures. */
  target: string;
  targetKind: ConcentrationKind;
  /** The unit as the member sent it, and what it measures (null: neither a mass nor a substance concentration). */
  unit: string;
  unitKind: ConcentrationKind | null;
  /** Stored Observations of the code in this unit, and of the code in any unit. */
  count: number;
  total: number;
  /** The other code of the analyte pair, which measures what the unit measures. */
  pairCode: string | null;
  conceptMapUrl: string;
  conceptMapVersion: string | null;
  /** The approved proposal that made the mapping, when it was made by one. */
  proposalId: number | null;
  message: string;
}

export interface ConcentrationMapping {
  system: string;
  code: string;
  display?: string | null;
  target: string;
  conceptMapUrl: string;
  conceptMapVersion?: string | null;
}

/** The rows of the active local maps whose target is a mass or substance concentration. */
async function concentrationMappings(db: Sql, filter: { member?: string; system?: string }): Promise<ConcentrationMapping[]> {
  const maps = await db.query<{ content: ConceptMap }>(`SELECT content FROM concept_map_version WHERE status = 'active' AND url <> $1`, [WHO_MAP_URL]);
  const out: ConcentrationMapping[] = [];
  for (const { content: map } of maps.rows) {
    for (const group of map.group) {
      // Maps into LOINC from a member's codes (the canonical-unit map goes LOINC → UCUM and is skipped).
      if (group.target !== LOINC || !group.source || group.source === LOINC) continue;
      if (filter.system && group.source !== filter.system) continue;
      if (filter.member && localSystemMember(group.source) !== filter.member) continue;
      for (const element of group.element) {
        for (const target of element.target ?? []) {
          if (!target.code || target.equivalence === 'unmatched' || target.equivalence === 'disjoint') continue;
          if (!loincConcentrationKind(target.code)) continue;
          out.push({ system: group.source, code: element.code, display: element.display ?? null, target: target.code, conceptMapUrl: map.url, conceptMapVersion: map.version ?? null });
        }
      }
    }
  }
  return out;
}

/**
 * Units observed per source code, from the stored Observations carrying it (one statement; each
 * wanted code is a probe of the source-code GIN index). The unit is the one sent: the original
 * quantity the map stage kept when it converted, else the stored valueQuantity.
 */
async function observedUnits(db: Sql, codes: Array<{ system: string; code: string }>): Promise<Map<string, Array<{ unit: string; count: number }>>> {
  const out = new Map<string, Array<{ unit: string; count: number }>>();
  if (codes.length === 0) return out;
  const rows = await db.query<{ system: string; code: string; q_system: string | null; q_code: string | null; q_unit: string | null; n: string }>(
    `WITH wanted AS (SELECT DISTINCT system, code FROM unnest($1::text[], $2::text[]) AS w(system, code))
     SELECT w.system, w.code, q->>'system' AS q_system, q->>'code' AS q_code, q->>'unit' AS q_unit, count(*) AS n
       FROM wanted w
       JOIN resource r ON jsonb_path_query_array(r.content, '$.meta.extension[*].valueCoding.code') @> jsonb_build_array(w.code)
      CROSS JOIN LATERAL (
        SELECT coalesce(
                 (SELECT e->'valueQuantity' FROM jsonb_array_elements(CASE WHEN jsonb_typeof(r.content->'valueQuantity'->'extension') = 'array' THEN r.content->'valueQuantity'->'extension' ELSE '[]'::jsonb END) AS e
                   WHERE e->>'url' = $3 LIMIT 1),
                 r.content->'valueQuantity') AS q) AS sent
      WHERE r.resource_type = 'Observation'
        AND r.content->'code'->'coding' @> jsonb_build_array(jsonb_build_object('system', w.system, 'code', w.code))
        AND sent.q IS NOT NULL
      GROUP BY 1, 2, 3, 4, 5`,
    [codes.map((c) => c.system), codes.map((c) => c.code), ORIGINAL_QUANTITY_URL],
  );
  for (const row of rows.rows) {
    // The unit as the map stage reads it (mapResource convertQuantity): the UCUM code, else the text.
    const unit = row.q_system === UCUM && row.q_code ? row.q_code : (row.q_unit ?? row.q_code ?? '');
    const key = `${row.system}\u0000${row.code}`;
    const list = out.get(key) ?? [];
    const same = list.find((u) => u.unit === unit);
    if (same) same.count += Number(row.n);
    else list.push({ unit, count: Number(row.n) });
    out.set(key, list);
  }
  return out;
}

/** The committee's sentence: "GLU arrives in mmol/L; 2345-7 is a mass concentration; 14749-6 is the substance concentration". */
export function unitMismatchMessage(code: string, unit: string, target: string, targetKind: ConcentrationKind, pairCode: string | null, unitKind: ConcentrationKind | null): string {
  const head = `${code} arrives in ${unit === '' ? '(no unit)' : unit}; ${target} is a ${KIND_WORD[targetKind]}`;
  if (pairCode && unitKind && unitKind !== targetKind) return `${head}; ${pairCode} is the ${KIND_WORD[unitKind]}`;
  return head;
}

/**
 * Approved maps (or the `mappings` given) whose observed units do not fit the target's property:
 * one entry per source code, target and unit, most results first.
 */
export async function unitMismatches(db: Sql, filter: { member?: string; system?: string; mappings?: ConcentrationMapping[] } = {}): Promise<UnitMismatch[]> {
  const mappings = (filter.mappings ?? (await concentrationMappings(db, filter))).filter((m) => loincConcentrationKind(m.target));
  if (mappings.length === 0) return [];
  const units = await observedUnits(db, mappings);
  const proposals = await db.query<{ id: number; concept_map_url: string; source_system: string; source_code: string; target_code: string }>(
    `SELECT id, concept_map_url, source_system, source_code, target_code FROM mapping_proposal WHERE state = 'approved' AND source_code = ANY($1::text[])`,
    [mappings.map((m) => m.code)],
  );
  const out: UnitMismatch[] = [];
  for (const m of mappings) {
    const targetKind = loincConcentrationKind(m.target)!;
    const seen = units.get(`${m.system}\u0000${m.code}`) ?? [];
    const total = seen.reduce((s, u) => s + u.count, 0);
    const analyte = analyteOf(m.target);
    for (const { unit, count } of seen) {
      const unitKind = unitConcentrationKind(unit) ?? null;
      if (unitKind === targetKind) continue;
      const pairCode = analyte ? (m.target === analyte.mass ? analyte.substance : analyte.mass) : null;
      const proposal = proposals.rows.filter((p) => p.concept_map_url === m.conceptMapUrl && p.source_system === m.system && p.source_code === m.code && p.target_code === m.target).sort((a, b) => Number(b.id) - Number(a.id))[0];
      out.push({
        member: localSystemMember(m.system) ?? null,
        system: m.system,
        code: m.code,
        display: m.display ?? null,
        target: m.target,
        targetKind,
        unit,
        unitKind,
        count,
        total,
        pairCode,
        conceptMapUrl: m.conceptMapUrl,
        conceptMapVersion: m.conceptMapVersion ?? null,
        proposalId: proposal ? Number(proposal.id) : null,
        message: unitMismatchMessage(m.code, unit, m.target, targetKind, pairCode, unitKind),
      });
    }
  }
  return out.sort((a, b) => b.count - a.count || a.system.localeCompare(b.system) || a.code.localeCompare(b.code) || a.unit.localeCompare(b.unit));
}
