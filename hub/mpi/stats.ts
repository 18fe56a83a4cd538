/**
 * `yilian mpi stats`: the patient index in figures — golden patients, sources, links by state and
 * mode, records in review and their share of the sources (the review share had to be counted in
 * SQL before), the model in use and the last rematch that applied one. Reads only, no lock: counts
 * of one moment (each a statement of its own while the pipeline may be linking).
 */
import type { Sql } from '../sql';
import { activeModel } from './model';

export interface PatientIndexStats {
  golden: { active: number; merged: number; empty: number };
  /** Source patients in the index (member + MRN), and those the merge stage holds that the index has not matched yet. */
  sources: { indexed: number; notInIndex: number };
  /** state → mode → count of mpi_link rows (MATCH: belongs to; POSSIBLE_MATCH: a review item; NO_MATCH: a not-link). */
  links: Record<string, Record<string, number>>;
  /** Sources with at least one open review item, the items, and the sources' share of indexed sources. */
  review: { records: number; items: number; share: number };
  model: { version: number; builtIn: boolean; trainedAt: string | null; trainedOnRecords: number };
  /** The last `yilian mpi rematch` applied (not dry runs): when, and with which model version. */
  lastRematch: { at: string; modelVersion: number } | null;
}

export async function patientIndexStats(sql: Sql): Promise<PatientIndexStats> {
  const golden = { active: 0, merged: 0, empty: 0 };
  for (const r of (await sql.query<{ state: keyof typeof golden; n: number }>(`SELECT state, count(*)::int AS n FROM mpi_golden GROUP BY state`)).rows) golden[r.state] = Number(r.n);
  const counts = (
    await sql.query<{ indexed: number; patients: number; review_records: number }>(
      `SELECT (SELECT count(*)::int FROM mpi_source) AS indexed, (SELECT count(*)::int FROM source_patient) AS patients,
              (SELECT count(*)::int FROM (SELECT DISTINCT member_id, mrn FROM mpi_link WHERE state = 'POSSIBLE_MATCH') r) AS review_records`,
    )
  ).rows[0]!;
  const links: PatientIndexStats['links'] = { MATCH: {}, POSSIBLE_MATCH: {}, NO_MATCH: {} };
  for (const r of (await sql.query<{ state: string; mode: string; n: number }>(`SELECT state, mode, count(*)::int AS n FROM mpi_link GROUP BY state, mode ORDER BY state, mode`)).rows) {
    (links[r.state] ??= {})[r.mode] = Number(r.n);
  }
  const items = Object.values(links.POSSIBLE_MATCH!).reduce((a, b) => a + b, 0);
  const indexed = Number(counts.indexed);
  const active = await activeModel(sql);
  // (golden_id IS NULL: by the index on (golden_id, id), not a walk back through all history)
  const last = (await sql.query<{ at: Date; version: number }>(`SELECT at, (detail->'model'->>'version')::int AS version FROM mpi_history WHERE golden_id IS NULL AND action = 'rematch' ORDER BY id DESC LIMIT 1`)).rows[0];
  return {
    golden,
    sources: { indexed, notInIndex: Math.max(0, Number(counts.patients) - indexed) },
    links,
    review: { records: Number(counts.review_records), items, share: indexed ? Number(counts.review_records) / indexed : 0 },
    model: { version: active.version, builtIn: active.builtIn, trainedAt: active.trainedAt, trainedOnRecords: active.model.trainedOn.records },
    lastRematch: last ? { at: last.at.toISOString(), modelVersion: Number(last.version) } : null,
  };
}
