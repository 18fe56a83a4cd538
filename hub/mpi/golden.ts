/**
 * Golden patients and the rows that tie sources to them: issuing a golden id, writing a link,
 * folding one golden patient into another, retiring one left empty, survivorship, and the history
 * of all of it. Runs inside the caller's transaction, under the lock it holds.
 *
 * Rules it keeps: a golden id is issued once and never changes. It never deletes history.
 */
import { randomUUID } from 'node:crypto';
import type { Sql } from '../sql';
import type { PersonRecord } from './features';
import { survivorship, type GoldenDemographics } from './survivorship';

export type LinkState = 'MATCH' | 'POSSIBLE_MATCH' | 'NO_MATCH';
export type LinkMode = 'AUTO' | 'MANUAL';

export async function setLink(tx: Sql, memberId: string, mrn: string, goldenId: string, state: LinkState, mode: LinkMode, why: { rule?: string; score?: number | null; breakdown?: Record<string, unknown> }, decidedBy?: string): Promise<void> {
  await tx.query(
    `INSERT INTO mpi_link (member_id, mrn, golden_id, state, mode, rule, score, breakdown, decided_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (member_id, mrn, golden_id) DO UPDATE SET state = excluded.state, mode = excluded.mode, rule = excluded.rule, score = excluded.score,
       breakdown = excluded.breakdown, decided_by = excluded.decided_by, updated_at = clock_timestamp()`,
    [memberId, mrn, goldenId, state, mode, why.rule ?? null, why.score ?? null, JSON.stringify(why.breakdown ?? {}), decidedBy ?? null],
  );
}

export async function createGolden(tx: Sql, actor: string, memberId: string, mrn: string, reason: string): Promise<string> {
  const id = randomUUID();
  await tx.query(`INSERT INTO mpi_golden (id) VALUES ($1)`, [id]);
  await history(tx, actor, 'create', id, memberId, mrn, { reason });
  return id;
}

export async function history(tx: Sql, actor: string, action: string, goldenId: string | null, memberId: string | null, mrn: string | null, detail: Record<string, unknown>): Promise<void> {
  await tx.query(`INSERT INTO mpi_history (actor, action, golden_id, member_id, mrn, detail) VALUES ($1, $2, $3, $4, $5, $6)`, [actor, action, goldenId, memberId, mrn, JSON.stringify(detail)]);
}

/** Fold golden `from` into `into`: its sources, not-links and history follow; `from` keeps pointing at `into`. */
export async function mergeGolden(tx: Sql, from: string, into: string, actor: string, detail: Record<string, unknown>): Promise<void> {
  if (from === into) return;
  // The sources move in two statements whatever their number (a row per source was a round trip
  // each). A manual link stays manual: the person's decision (this source is that person) holds for
  // the merged patient, and an AUTO row would let the matcher move the source at its next update.
  await tx.query(
    `DELETE FROM mpi_link i USING mpi_link f WHERE f.golden_id = $1 AND f.state = 'MATCH' AND i.golden_id = $2 AND i.member_id = f.member_id AND i.mrn = f.mrn`,
    [from, into],
  );
  const moved = await tx.query<{ member_id: string; mrn: string }>(
    `UPDATE mpi_link SET golden_id = $2, rule = CASE WHEN mode = 'AUTO' THEN 'golden-merge' ELSE rule END, score = CASE WHEN mode = 'AUTO' THEN NULL ELSE score END,
       breakdown = CASE WHEN mode = 'AUTO' THEN $3::jsonb ELSE breakdown END, updated_at = clock_timestamp()
     WHERE golden_id = $1 AND state = 'MATCH' RETURNING member_id, mrn`,
    [from, into, JSON.stringify({ mergedFrom: from, ...detail })],
  );
  // Not-links and open review items against the retired golden now stand against the survivor
  // (unless they are now its members: those proposals go below). A source already linked to the
  // survivor keeps that link: a not-link of the retired golden patient overwriting it left the
  // source in no golden patient at all (an A40 after a reviewer's not-link).
  await tx.query(
    `INSERT INTO mpi_link (member_id, mrn, golden_id, state, mode, rule, score, breakdown, decided_by)
     SELECT member_id, mrn, $2, state, mode, rule, score, breakdown, decided_by FROM mpi_link WHERE golden_id = $1 AND state <> 'MATCH'
     ON CONFLICT (member_id, mrn, golden_id) DO UPDATE SET state = excluded.state, mode = excluded.mode, rule = excluded.rule, score = excluded.score,
       breakdown = excluded.breakdown, decided_by = excluded.decided_by, updated_at = clock_timestamp()
       WHERE excluded.mode = 'MANUAL' AND mpi_link.mode = 'AUTO' AND mpi_link.state <> 'MATCH'`,
    [from, into],
  );
  await tx.query(`DELETE FROM mpi_link WHERE golden_id = $1 AND state <> 'MATCH'`, [from]);
  await tx.query(`DELETE FROM mpi_link p USING mpi_link m WHERE p.golden_id = $1 AND p.state = 'POSSIBLE_MATCH' AND m.member_id = p.member_id AND m.mrn = p.mrn AND m.golden_id = $1 AND m.state = 'MATCH'`, [into]);
  await tx.query(`UPDATE mpi_golden SET state = 'merged', merged_into = $2, updated_at = clock_timestamp() WHERE id = $1`, [from, into]);
  await tx.query(`UPDATE mpi_golden SET merged_into = $2 WHERE merged_into = $1`, [from, into]);
  await history(tx, actor, 'merge', into, null, null, { from, sources: moved.rows.map((s) => `${s.member_id}|${s.mrn}`), ...detail });
}

export async function retireEmpty(tx: Sql, goldenId: string, into: string, actor: string): Promise<void> {
  await tx.query(`UPDATE mpi_golden SET state = 'merged', merged_into = $2, updated_at = clock_timestamp() WHERE id = $1`, [goldenId, into]);
  await tx.query(`UPDATE mpi_golden SET merged_into = $2 WHERE merged_into = $1`, [goldenId, into]);
  await tx.query(`DELETE FROM mpi_link WHERE golden_id = $1 AND state = 'POSSIBLE_MATCH' AND mode = 'AUTO'`, [goldenId]);
  await history(tx, actor, 'merge', into, null, null, { from: goldenId, reason: 'its only source joined this golden patient' });
}

/** Recompute the survivorship of many golden patients: one read, one write. */
export async function refreshGoldens(tx: Sql, goldenIds: string[]): Promise<void> {
  if (!goldenIds.length) return;
  const sources = await tx.query<{ golden_id: string; member_id: string; mrn: string; record: PersonRecord; event_time: Date | null }>(
    `SELECT l.golden_id, s.member_id, s.mrn, s.record, s.event_time FROM mpi_link l JOIN mpi_source s USING (member_id, mrn) WHERE l.golden_id = ANY($1::text[]) AND l.state = 'MATCH'`,
    [goldenIds],
  );
  const byGolden = new Map<string, Array<{ memberId: string; mrn: string; record: PersonRecord; eventTime: string | null }>>(goldenIds.map((g) => [g, []]));
  for (const s of sources.rows) byGolden.get(s.golden_id)!.push({ memberId: s.member_id, mrn: s.mrn, record: s.record, eventTime: s.event_time?.toISOString() ?? null });
  await tx.query(
    `UPDATE mpi_golden g SET survivor = x.survivor, state = CASE WHEN g.state = 'merged' THEN g.state WHEN x.active THEN 'active' ELSE 'empty' END, updated_at = clock_timestamp()
       FROM jsonb_to_recordset($1::jsonb) AS x(id text, survivor jsonb, active boolean) WHERE g.id = x.id`,
    [JSON.stringify([...byGolden.entries()].map(([id, list]) => ({ id, survivor: survivorship(list), active: list.length > 0 })))],
  );
}

/** Recompute a golden patient's survivorship from its current sources. */
export async function refreshGolden(tx: Sql, goldenId: string): Promise<void> {
  const sources = await tx.query<{ member_id: string; mrn: string; record: PersonRecord; event_time: Date | null }>(
    `SELECT s.member_id, s.mrn, s.record, s.event_time FROM mpi_link l JOIN mpi_source s USING (member_id, mrn) WHERE l.golden_id = $1 AND l.state = 'MATCH'`,
    [goldenId],
  );
  const survivor: GoldenDemographics = survivorship(sources.rows.map((s) => ({ memberId: s.member_id, mrn: s.mrn, record: s.record, eventTime: s.event_time?.toISOString() ?? null })));
  await tx.query(
    `UPDATE mpi_golden SET survivor = $2, state = CASE WHEN state = 'merged' THEN state WHEN $3 THEN 'active' ELSE 'empty' END, updated_at = clock_timestamp() WHERE id = $1`,
    [goldenId, JSON.stringify(survivor), sources.rows.length > 0],
  );
}
