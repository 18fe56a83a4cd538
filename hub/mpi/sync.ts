/**
 * The patient index's sync from `source_patient` (the merge stage's output): `syncPatientIndex`
 * matches every source patient that is new or changed since it was last matched, so it can run
 * after each ingest, before a read, or on a timer, and any number of times (an advisory lock makes
 * concurrent runs take turns). The safety net behind the pipeline's link (links.ts), the bulk load
 * of a member's back catalogue, and `yilian serve`'s timer.
 */
import type { HubDb, Sql } from '../sql';
import { BlockCache } from './blockCache';
import { modelForPopulation, type MatchModel } from './matcher';
import { backfillSharedValues } from './sharedValues';
import { loadModel } from './model';
import { RECORD_VERSION, SOURCE_SELECT, type SourceRow } from './sourceRecord';
import { BLOCK_CAP, finishRun, LOCK, lockIndex, matchSource, type MatchRun, type SyncSummary } from './matchRun';
import { newSources, readBlocks, scoreNewSources, writeNewSources, type NewSource } from './newSources';
import { runPeriodically } from '../periodic';

/**
 * Whether a source patient is already in the index (matched before, or given a golden patient as a
 * merge survivor). Scalar subqueries, not EXISTS: PostgreSQL turned the EXISTS pair into hashed
 * subplans that read all of mpi_source and mpi_link for every batch (68 ms at 50,000 records,
 * growing with the index; EXPLAIN ANALYZE), where a batch needs 2 × 2,000 index probes.
 */
const KNOWN_SELECT = `SELECT coalesce((SELECT true FROM mpi_source k WHERE k.member_id = sp.member_id AND k.mrn = sp.mrn LIMIT 1),
     (SELECT true FROM mpi_link k WHERE k.member_id = sp.member_id AND k.mrn = sp.mrn AND k.state = 'MATCH' LIMIT 1), false) AS known, sp.member_id`;

/** Match every source patient that is new or changed since it was last matched. */
export async function syncPatientIndex(
  db: HubDb,
  /** `onRound`: after each round of batches has committed (progress of a long sync; the lock is not held then). */
  options: { actor?: string; batch?: number; full?: boolean; onRound?: (summary: SyncSummary) => unknown } = {},
): Promise<SyncSummary> {
  const summary: SyncSummary = { matched: 0, created: 0, linked: 0, review: 0, memberMerges: 0, joined: 0, overtaken: 0 };
  const batch = options.batch ?? 500;
  let analysedAt = 1000;
  // Only source patients changed since shortly before the newest one already matched are looked
  // at (index on updated_at): a sync with nothing to do costs one index probe, not a scan. The
  // margin covers merge statements that committed a little after their clock time; `full` looks
  // at everything (the CLI's `mpi sync --full`, and the first sync), and there also re-derives the
  // records of sources matched with an older RECORD_VERSION.
  const since = options.full
    ? null
    : ((await db.query<{ since: Date | null }>(`SELECT max(source_updated_at) - interval '5 minutes' AS since FROM mpi_source`)).rows[0]?.since ?? null);
  // Keyset cursor over (updated_at, member, mrn): each batch starts after the last one, so a long
  // sync does not re-skip every row it already matched (that anti-join made the initial load
  // quadratic). A row changed meanwhile gets a later updated_at and is met again further on.
  let cursor: { at: string; member: string; mrn: string } | null = null;
  // Counted once: the prior moves with the logarithm of the population, and counting a million
  // rows for every batch cost more than matching it.
  const population = Number((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM source_patient`)).rows[0]!.n);
  // The blocks read by earlier batches (and the keys found full), while nobody else writes the index.
  const blocks = new BlockCache(BLOCK_CAP);
  const actor = options.actor ?? 'matcher';
  // Sources matched before the shared-value counts existed (migration 14) are counted first, and
  // links made on values they show to be shared are looked at again.
  const backfilled = await backfillSharedValues(db, LOCK);
  if (backfilled.length) {
    await db.transaction(async (tx) => {
      await lockIndex(tx);
      const run: MatchRun = { actor, summary, touched: new Set(), crossed: [], bridges: [], blocks: new BlockCache(BLOCK_CAP) };
      await finishRun(tx, modelForPopulation(await loadModel(tx), population), backfilled, run);
    });
  }
  for (;;) {
    // The reader connection is taken with the transaction's, before the lock: a round holding the
    // index's lock must never wait for a pool connection that jobs queued on the lock hold.
    const done = await db.transactionWithReader(async (tx, reader) => {
      if (!blocks.claim(await lockIndex(tx))) summary.overtaken++;
      // The index tables grow inside this transaction faster than statistics follow: a planner that
      // still believes them empty scans them whole for every candidate look-up (quadratic cost).
      await tx.query(`SET LOCAL enable_seqscan = off`);
      // With seq scans disabled, a plan that still needs one is costed at 1e10 and PostgreSQL
      // JIT-compiles it: 100–200 ms a query (seen in EXPLAIN ANALYZE of the candidate query).
      await tx.query(`SET LOCAL jit = off`);
      blocks.trim();
      const model = modelForPopulation(await loadModel(tx), population);
      const run: MatchRun = { actor, summary, touched: new Set(), crossed: [], bridges: [], blocks };
      // A round of batches under one lock, overlapped: while JavaScript scores batch k, PostgreSQL
      // writes batch k − 1 and reads batch k + 1's dirty rows; then batch k + 1's blocks and counts
      // are read (the blocks it lacks are none of batch k's keys, which the copy already holds)
      // before batch k's writes are sent. Two cores, each busy: scoring and writing took turns.
      const readNext = (after: typeof cursor) => {
        const pending = readDirtyBatch(tx, reader, model, run, { batch, since, after });
        pending.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
        return pending;
      };
      const known: SourceRow[] = [];
      const writes: Array<Promise<unknown>> = [];
      let read = await readNext(cursor);
      let exhausted = false;
      for (let n = 0; n < ROUND_BATCHES && read.rows.length; n++) {
        const last = read.rows[read.rows.length - 1]!;
        cursor = { at: last.updated_text, member: last.member_id, mrn: last.mrn };
        exhausted = read.rows.length < batch;
        const next = !exhausted && n + 1 < ROUND_BATCHES ? readNext(cursor) : undefined;
        // New sources (an initial load, new registrations) in bulk; known ones (updates, merges,
        // sources a manual decision touched) one by one after the round.
        const scored = scoreNewSources(read.model, read.items, run);
        known.push(...read.rows.filter((r) => r.known || r.merged_into));
        const following = next && (await next);
        const written = writeNewSources(tx, scored, run);
        written.catch(() => undefined);
        writes.push(written);
        if (!following) break;
        read = following;
      }
      if (!read.rows.length) exhausted = true;
      for (const w of writes) await w;
      // (a member merge whose survivor comes in a later batch creates the survivor's golden patient itself)
      for (const row of known) await matchSource(tx, model, row, run);
      await finishRun(tx, model, run.crossed, run);
      return exhausted;
    });
    await options.onRound?.(summary);
    if (summary.matched >= analysedAt * 2) {
      await db.query(`ANALYZE mpi_source, mpi_link, mpi_golden`);
      analysedAt = summary.matched;
    }
    if (done) return summary;
  }
}

/**
 * Batches of a sync's round. More per round: fewer rounds of lock and commit, but the pipeline's
 * new registrations wait for a whole round (at 2,000 a batch, 8,000 records: about 4–5 s late in
 * the 1M bench run, from its rate).
 */
const ROUND_BATCHES = 4;

/**
 * A sync's next batch of dirty source patients, with what scoring its new ones needs (counted,
 * blocks read). `reader`, another connection than the round's transaction, reads the dirty rows
 * and the blocks, so they run beside the transaction's writes: it sees the index as the round
 * found it (nobody else writes while the round holds the lock), and the round's own sources are
 * in the block copy under all their keys.
 */
async function readDirtyBatch(
  tx: Sql,
  reader: Sql,
  model: MatchModel,
  run: MatchRun,
  at: { batch: number; since: Date | null; after: { at: string; member: string; mrn: string } | null },
): Promise<{ rows: SourceRow[]; items: NewSource[]; model: MatchModel }> {
  const dirty = await reader.query<SourceRow>(
    `${SOURCE_SELECT.replace('SELECT sp.member_id', KNOWN_SELECT)}
      WHERE ($2::timestamptz IS NULL OR sp.updated_at > $2)
        AND ($3::timestamptz IS NULL OR (sp.updated_at, sp.member_id, sp.mrn) > ($3::timestamptz, $4::text, $5::text))
        AND NOT EXISTS (SELECT 1 FROM mpi_source s WHERE s.member_id = sp.member_id AND s.mrn = sp.mrn AND s.source_updated_at >= sp.updated_at AND s.record_version >= ${RECORD_VERSION})
      ORDER BY sp.updated_at, sp.member_id, sp.mrn LIMIT $1`,
    [at.batch, at.since, at.after?.at ?? null, at.after?.member ?? null, at.after?.mrn ?? null],
  );
  const items = newSources(dirty.rows.filter((r) => !r.known && !r.merged_into));
  return { rows: dirty.rows, items, model: await readBlocks(tx, reader, model, items, run) };
}

/**
 * Keep the index following source_patient in a long-running process (`yilian serve`): a sync every
 * `intervalMs`, never two at once (a large backlog takes longer than the interval). Returns stop.
 */
export function startPatientIndexSync(db: HubDb, intervalMs = 5000, log?: (text: string) => void): () => void {
  return runPeriodically('patient index sync', intervalMs, () => syncPatientIndex(db, { actor: 'serve' }), log);
}
