/**
 * The patient index as messages arrive (the identify stage, pipeline/stages/identify.ts): a known
 * identity that did not change only follows its times; any other is matched exactly as a sync
 * would match it (matchRun.ts), so the pipeline and the safety-net sync agree.
 */
import type { HubDb, Sql } from '../sql';
import { BlockCache } from './blockCache';
import type { PersonRecord } from './features';
import { refreshGolden } from './golden';
import { populationModel } from './model';
import { RECORD_VERSION, recordOfSource, SOURCE_SELECT, type SourceRow } from './sourceRecord';
import { BLOCK_CAP, finishRun, LOCK, lockIndex, matchSource, type MatchRun } from './matchRun';
import { matchNewSources } from './newSources';

/**
 * The pipeline's link (stages identify → merge, pipeline/runner.ts): after a message has been applied
 * to `source_patient`, bring these source patients of one member into the index at once, so a new
 * registration has its golden patient when its message is processed. It matches the source
 * patient's *current* state (event time already decided by the merge), never the message, so the
 * outcome does not depend on arrival order, and a redelivered or replayed message finds the index
 * already current (no write). Concurrency: a new or changed identity is matched under the same
 * exclusive lock as `syncPatientIndex` and review decisions (two registrations of one person in two
 * partitions see each other); the common case — a known patient whose identity record did not
 * change (results, orders, a repeated A08) — takes no lock (one read, one write), or the lock
 * shared and the golden patient's row when survivorship must be recomputed, so partitions do not
 * queue behind each other. Returns member MRN → golden id.
 */
export async function linkSourcePatients(db: HubDb, memberId: string, mrns: string[], actor = 'pipeline'): Promise<Map<string, string>> {
  const linked = new Map<string, string>();
  for (const mrn of mrns) {
    const golden = (await followUnchanged(db, memberId, mrn)) ?? (await matchChanged(db, memberId, mrn, actor));
    if (golden) linked.set(mrn, golden);
  }
  return linked;
}

const INDEXED_SELECT = `${SOURCE_SELECT.replace(
  'FROM source_patient sp',
  `, s.record AS indexed_record, s.patient_resource_id AS indexed_resource, s.event_time AS indexed_event_time,
     s.source_updated_at >= sp.updated_at AND s.record_version >= ${RECORD_VERSION} AS current, l.golden_id,
     (SELECT count(*)::int FROM mpi_link m WHERE m.golden_id = l.golden_id AND m.state = 'MATCH') AS golden_sources
    FROM source_patient sp
    LEFT JOIN mpi_source s ON s.member_id = sp.member_id AND s.mrn = sp.mrn
    LEFT JOIN mpi_link l ON l.member_id = sp.member_id AND l.mrn = sp.mrn AND l.state = 'MATCH'`,
)} WHERE sp.member_id = $1 AND sp.mrn = $2`;

interface IndexedSourceRow extends SourceRow {
  indexed_record: PersonRecord | null;
  indexed_resource: string | null;
  indexed_event_time: Date | null;
  current: boolean | null;
  golden_id: string | null;
  golden_sources: number;
}

/**
 * The fast path: already current (a replay: one read), or the identity record as matched is
 * unchanged and only the times moved (a result or an order for a known patient: one read, one
 * write). Undefined: needs matching.
 */
async function followUnchanged(db: HubDb, memberId: string, mrn: string): Promise<string | undefined> {
  // On the pipeline's own pool (db.derived): the fast path must not wait for a connection behind
  // jobs queued on the exclusive lock with a connection of the main pool each.
  const row = (await db.derived.query<IndexedSourceRow>(INDEXED_SELECT, [memberId, mrn], 'mpi_indexed_source')).rows[0];
  if (!row?.golden_id || !row.indexed_record || row.merged_into) return undefined;
  if (row.current) return row.golden_id;
  const resourceId = row.patient?.id ?? null;
  if (!sameRecord(recordOfSource(row), row.indexed_record) || (resourceId && resourceId !== row.indexed_resource)) return undefined;
  // Same identity record: same blocking keys, same decision; only the times follow. Survivorship
  // (latest phone and address by event time) can move only when the event time did and the golden
  // patient has other sources: then under the shared lock and the golden row's lock, so that
  // concurrent refreshes of one golden patient take turns and the last one sees every source.
  const follow = (sql: Sql) =>
    sql.query(
      `UPDATE mpi_source s SET event_time = sp.event_time, source_updated_at = sp.updated_at, patient_resource_id = coalesce($3, s.patient_resource_id), record_version = ${RECORD_VERSION}
         FROM source_patient sp WHERE sp.member_id = s.member_id AND sp.mrn = s.mrn AND s.member_id = $1 AND s.mrn = $2`,
      [memberId, mrn, resourceId],
      'mpi_follow_source',
    );
  const moved = (row.event_time?.getTime() ?? null) !== (row.indexed_event_time?.getTime() ?? null);
  // Nothing here issues or moves a golden id, and all of it is re-derived from source_patient if a
  // PostgreSQL crash loses it (the sync sees source_updated_at behind): so it does not wait for the
  // WAL flush, like the merge. New links and golden patients (matchChanged) do.
  if (!moved || Number(row.golden_sources) <= 1) {
    await follow(db.derived);
    return row.golden_id;
  }
  return db.transaction(async (tx) => {
    await tx.query(`SET LOCAL synchronous_commit = off`);
    await tx.query(`SELECT pg_advisory_xact_lock_shared(${LOCK})`);
    const still = (await tx.query<{ golden_id: string }>(`SELECT golden_id FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND state = 'MATCH'`, [memberId, mrn])).rows[0]?.golden_id;
    if (!still) return undefined;
    await tx.query(`SELECT 1 FROM mpi_golden WHERE id = $1 FOR UPDATE`, [still]);
    await follow(tx);
    await refreshGolden(tx, still);
    return still;
  });
}

async function matchChanged(db: HubDb, memberId: string, mrn: string, actor: string): Promise<string | undefined> {
  return db.transaction(async (tx) => {
    await lockIndex(tx);
    // Read again under the lock: a sync or another partition may have matched it meanwhile.
    const row = (await tx.query<IndexedSourceRow>(INDEXED_SELECT, [memberId, mrn], 'mpi_indexed_source')).rows[0];
    if (!row) return undefined;
    if (row.current && row.golden_id) return row.golden_id;
    const model = await populationModel(db, tx);
    const run: MatchRun = { actor, summary: { matched: 0, created: 0, linked: 0, review: 0, memberMerges: 0, joined: 0, overtaken: 0 }, touched: new Set(), crossed: [], bridges: [], blocks: new BlockCache(BLOCK_CAP) };
    // Exactly what a sync does with this row, so the pipeline and the safety-net sync agree.
    if (row.indexed_record || row.golden_id || row.merged_into) await matchSource(tx, model, row, run);
    else await matchNewSources(tx, model, [row], run);
    await finishRun(tx, model, run.crossed, run);
    return (await tx.query<{ golden_id: string }>(`SELECT golden_id FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND state = 'MATCH'`, [memberId, mrn])).rows[0]?.golden_id;
  });
}

function sameRecord(a: PersonRecord, b: PersonRecord): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const x = (a as unknown as Record<string, unknown>)[k];
    const y = (b as unknown as Record<string, unknown>)[k];
    // identities: a sorted list of strings
    if (Array.isArray(x) && Array.isArray(y) ? x.length !== y.length || x.some((v, i) => v !== y[i]) : x !== y) return false;
  }
  return true;
}
