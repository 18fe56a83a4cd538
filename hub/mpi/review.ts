/**
 * Reads and decisions on the patient index: the review queue and a person's decision on an item,
 * golden patients as the API shows them, the export of every link, and scoring a person without
 * storing anything. Reads take no lock; a decision takes the index's exclusive lock, like a sync.
 */
import type { HubDb, Sql } from '../sql';
import { HubError } from '../../mappings/outcome';
import { blockingKeys, featuresOf, type PersonRecord } from './features';
import { modelForPopulation, scorePair, type PairScore } from './matcher';
import { withSharedCounts } from './sharedValues';
import type { GoldenDemographics } from './survivorship';
import { createGolden, history, refreshGolden, retireEmpty, setLink, type LinkMode } from './golden';
import { loadModel } from './model';
import { candidatesFor, lockIndex } from './matchRun';

export interface ReviewItem {
  member: string;
  mrn: string;
  goldenId: string;
  currentGoldenId: string | null;
  score: number | null;
  rule: string | null;
  since: string;
  source: PersonRecord | null;
  candidate: GoldenDemographics | null;
  breakdown: Record<string, unknown>;
}

/** Open review items, oldest first: the record, the proposed golden patient side by side, and the score breakdown. */
export async function reviewQueue(sql: Sql, limit = 100): Promise<ReviewItem[]> {
  const rows = await sql.query<{ member_id: string; mrn: string; golden_id: string; current: string | null; score: number | null; rule: string | null; updated_at: Date; record: PersonRecord | null; survivor: GoldenDemographics | null; breakdown: Record<string, unknown> }>(
    `SELECT p.member_id, p.mrn, p.golden_id, m.golden_id AS current, p.score, p.rule, p.updated_at, s.record, g.survivor, p.breakdown
       FROM mpi_link p
       LEFT JOIN mpi_link m ON m.member_id = p.member_id AND m.mrn = p.mrn AND m.state = 'MATCH'
       LEFT JOIN mpi_source s ON s.member_id = p.member_id AND s.mrn = p.mrn
       LEFT JOIN mpi_golden g ON g.id = p.golden_id
      WHERE p.state = 'POSSIBLE_MATCH' ORDER BY p.updated_at, p.member_id, p.mrn LIMIT $1`,
    [limit],
  );
  return rows.rows.map((r) => ({
    member: r.member_id,
    mrn: r.mrn,
    goldenId: r.golden_id,
    currentGoldenId: r.current,
    score: r.score,
    rule: r.rule,
    since: r.updated_at.toISOString(),
    source: r.record,
    candidate: r.survivor,
    breakdown: r.breakdown,
  }));
}

export interface ReviewDecision {
  member: string;
  mrn: string;
  goldenId: string;
  decision: 'link' | 'not-link';
  actor: string;
  reason?: string;
}

/**
 * A person's decision on a source patient and a golden patient. `link`: the source joins it (MANUAL
 * MATCH; its old golden patient, if left empty, points at this one). `not-link`: a MANUAL NO_MATCH
 * that every later re-match respects; if the source was in that golden patient it gets a new one.
 */
export async function decideReview(db: HubDb, d: ReviewDecision): Promise<{ goldenId: string }> {
  return db.transaction(async (tx) => {
    await lockIndex(tx);
    const source = await tx.query(`SELECT 1 FROM mpi_source WHERE member_id = $1 AND mrn = $2`, [d.member, d.mrn]);
    if (!source.rows.length) throw new HubError('not-found', `no source patient ${d.member}|${d.mrn} in the patient index`);
    const target = await resolveGolden(tx, d.goldenId);
    if (!target) throw new HubError('not-found', `no golden patient ${d.goldenId}`);
    const current = (await tx.query<{ golden_id: string }>(`SELECT golden_id FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND state = 'MATCH'`, [d.member, d.mrn])).rows[0]?.golden_id;
    const why = { rule: 'manual', breakdown: { reason: d.reason ?? null } };
    let result = current ?? target;
    if (d.decision === 'link') {
      if (current && current !== target) await tx.query(`DELETE FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND golden_id = $3`, [d.member, d.mrn, current]);
      await setLink(tx, d.member, d.mrn, target, 'MATCH', 'MANUAL', why, d.actor);
      await history(tx, d.actor, 'manual-link', target, d.member, d.mrn, { from: current ?? null, reason: d.reason ?? null });
      const left = current && current !== target ? Number((await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM mpi_link WHERE golden_id = $1 AND state = 'MATCH'`, [current])).rows[0]!.n) : 1;
      if (current && current !== target && left === 0) await retireEmpty(tx, current, target, d.actor);
      else if (current && current !== target) await refreshGolden(tx, current);
      result = target;
    } else {
      if (current === target) {
        // Unlink: the source leaves this golden patient for a new one of its own.
        await tx.query(`DELETE FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND golden_id = $3`, [d.member, d.mrn, target]);
        result = await createGolden(tx, d.actor, d.member, d.mrn, 'unlinked by review');
        await setLink(tx, d.member, d.mrn, result, 'MATCH', 'MANUAL', why, d.actor);
        await refreshGolden(tx, result);
      }
      await setLink(tx, d.member, d.mrn, target, 'NO_MATCH', 'MANUAL', why, d.actor);
      await history(tx, d.actor, 'manual-not-link', target, d.member, d.mrn, { reason: d.reason ?? null });
    }
    await refreshGolden(tx, target);
    return { goldenId: result };
  });
}

/** A golden id as given, or the golden patient it was merged into (ids stay valid after merges). */
export async function resolveGolden(sql: Sql, id: string): Promise<string | undefined> {
  const row = (await sql.query<{ id: string; merged_into: string | null }>(`SELECT id, merged_into FROM mpi_golden WHERE id = $1`, [id])).rows[0];
  if (!row) return undefined;
  return row.merged_into ?? row.id;
}

export interface GoldenPatient {
  id: string;
  state: string;
  mergedInto: string | null;
  survivor: GoldenDemographics;
  sources: Array<{ member: string; mrn: string; patientResourceId: string | null; mode: LinkMode; rule: string | null; score: number | null }>;
}

export async function goldenPatient(sql: Sql, id: string): Promise<GoldenPatient | undefined> {
  const row = (await sql.query<{ id: string; state: string; merged_into: string | null; survivor: GoldenDemographics }>(`SELECT id, state, merged_into, survivor FROM mpi_golden WHERE id = $1`, [id])).rows[0];
  if (!row) return undefined;
  const sources = await sql.query<{ member_id: string; mrn: string; patient_resource_id: string | null; mode: LinkMode; rule: string | null; score: number | null }>(
    `SELECT l.member_id, l.mrn, s.patient_resource_id, l.mode, l.rule, l.score FROM mpi_link l LEFT JOIN mpi_source s USING (member_id, mrn)
      WHERE l.golden_id = $1 AND l.state = 'MATCH' ORDER BY l.member_id, l.mrn`,
    [row.merged_into ?? row.id],
  );
  return {
    id: row.id,
    state: row.state,
    mergedInto: row.merged_into,
    survivor: row.survivor,
    sources: sources.rows.map((s) => ({ member: s.member_id, mrn: s.mrn, patientResourceId: s.patient_resource_id, mode: s.mode, rule: s.rule, score: s.score })),
  };
}

/** Every source patient known to the index with its golden patient (retired numbers of a member merge included). */
export async function exportLinks(sql: Sql): Promise<Array<{ member: string; mrn: string; patient: string }>> {
  const rows = await sql.query<{ member_id: string; mrn: string; golden_id: string }>(`SELECT member_id, mrn, golden_id FROM mpi_link WHERE state = 'MATCH' ORDER BY member_id, mrn`);
  return rows.rows.map((r) => ({ member: r.member_id, mrn: r.mrn, patient: r.golden_id }));
}

/** Golden patient of a member's converted Patient resource id (clinical resources reference those). */
export async function goldenOfPatientResource(sql: Sql, patientResourceIds: string[]): Promise<Map<string, string>> {
  if (!patientResourceIds.length) return new Map();
  const rows = await sql.query<{ patient_resource_id: string; golden_id: string }>(
    `SELECT s.patient_resource_id, l.golden_id FROM mpi_source s JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH' WHERE s.patient_resource_id = ANY($1::text[])`,
    [patientResourceIds],
  );
  return new Map(rows.rows.map((r) => [r.patient_resource_id, r.golden_id]));
}

/** Score a person against the index without storing anything (FHIR Patient/$match). */
export async function matchPerson(sql: Sql, record: PersonRecord, limit = 10): Promise<Array<{ goldenId: string; score: PairScore }>> {
  const population = Number((await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM mpi_source`)).rows[0]!.n);
  const model = modelForPopulation(await loadModel(sql), population + 1);
  const features = featuresOf(record);
  const candidates = await candidatesFor(sql, blockingKeys(features), '', '', new Set());
  // Read only: the person asked about is not counted (nothing of a $match is stored).
  const counted = await withSharedCounts(sql, model, [features, ...candidates.map((c) => c.features)]);
  const best = new Map<string, PairScore>();
  for (const c of candidates) {
    const s = scorePair(counted, features, c.features);
    const prev = best.get(c.goldenId);
    if (!prev || s.weight > prev.weight) best.set(c.goldenId, s);
  }
  return [...best.entries()].map(([goldenId, score]) => ({ goldenId, score })).filter((x) => x.score.outcome !== 'NO_MATCH' || x.score.probability > 0.05).sort((a, b) => b.score.weight - a.score.weight).slice(0, limit);
}
