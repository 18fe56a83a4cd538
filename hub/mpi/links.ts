/**
 * The patient index as messages arrive (the identify stage, pipeline/stages/identify.ts): a known
 * identity that did not change only follows its times; any other is matched exactly as a sync
 * would match it (matchRun.ts), so the pipeline and the safety-net sync agree.
 */
import type { HubDb, Sql } from '../sql';
import { BlockCache } from './blockCache';
import type { PersonRecord } from './features';
import { refreshGolden, refreshGoldens } from './golden';
import { populationModel } from './model';
import { countSharedValues, type CrossedValue } from './sharedValues';
import { RECORD_VERSION, recordOfSource, SOURCE_SELECT, type SourceRow } from './sourceRecord';
import { BLOCK_CAP, finishRun, LOCK, lockIndex, matchSource, type MatchRun } from './matchRun';
import { matchNewSources, newSources, readBlocks, scoreNewSources, writeNewSources, type NewSource } from './newSources';

/** A member's source patient. */
export interface SourceRef {
  memberId: string;
  mrn: string;
}

const refKey = (memberId: string, mrn: string) => `${memberId}|${mrn}`;

/**
 * The pipeline's link (stages identify → merge, pipeline/runner.ts): after a batch of messages has
 * been applied to `source_patient`, bring their source patients into the index, so a new
 * registration has its golden patient when its message is processed. The requests of one process
 * (its partitions' batches) are linked together in rounds, as the intake commits raw messages: while
 * a round runs, the next one gathers, so sixteen partitions registering patients make one matching
 * transaction, not sixteen that wait for each other's keys. Returns `member|mrn` → golden id.
 */
export function linkSources(db: HubDb, refs: SourceRef[], actor = 'pipeline'): Promise<Map<string, string>> {
  let byActor = roundsOf.get(db);
  if (!byActor) roundsOf.set(db, (byActor = new Map()));
  let rounds = byActor.get(actor);
  if (!rounds) byActor.set(actor, (rounds = new LinkRounds(db, actor)));
  return rounds.link(refs);
}

const roundsOf = new WeakMap<HubDb, Map<string, LinkRounds>>();

class LinkRounds {
  private pending: Array<{ refs: SourceRef[]; resolve: (linked: Map<string, string>) => void; reject: (error: unknown) => void }> = [];
  private running = false;

  constructor(
    private readonly db: HubDb,
    private readonly actor: string,
  ) {}

  link(refs: SourceRef[]): Promise<Map<string, string>> {
    return new Promise((resolve, reject) => {
      this.pending.push({ refs, resolve, reject });
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.pending.length) {
        const round = this.pending.splice(0);
        try {
          const linked = await linkRound(this.db, round.flatMap((r) => r.refs), this.actor);
          for (const r of round) r.resolve(linked);
        } catch (error) {
          for (const r of round) r.reject(error);
        }
      }
    } finally {
      this.running = false;
    }
  }
}

/**
 * One round of `linkSources`. It matches each source patient's *current* state (event time
 * already decided by the merge), never the message, so the outcome does not depend on arrival
 * order, and a redelivered or replayed message finds the index already current (no write). One
 * read for the round, then by what each source needs:
 * - known and unchanged (results, orders, a repeated A08 — most messages): its times follow, one
 *   statement for all of them, no lock; under the index's shared lock and the golden patient's row
 *   when its survivorship must be recomputed;
 * - new to the index (registrations): matched together under the locks of their blocking keys
 *   (`matchNewUnderKeys`), so worker processes registering different people do not wait for
 *   each other;
 * - anything else (a changed identity, a member's merge): together under the exclusive lock, as
 *   `syncPatientIndex`, re-matching and review decisions write.
 * Returns `member|mrn` → golden id.
 */
async function linkRound(db: HubDb, refs: SourceRef[], actor: string): Promise<Map<string, string>> {
  const linked = new Map<string, string>();
  const unique = [...new Map(refs.map((r) => [refKey(r.memberId, r.mrn), r])).values()];
  if (!unique.length) return linked;
  // On the pipeline's own pool (db.derived): the fast path must not wait for a connection behind
  // jobs queued on the exclusive lock with a connection of the main pool each.
  const rows = await readIndexed(db.derived, unique);
  const follow: Array<IndexedSourceRow & { golden_id: string }> = [];
  const fresh: IndexedSourceRow[] = [];
  /** Matched under the exclusive lock, or (`follow-locked`) first tried under the golden row's lock. */
  const rest: Array<{ row: IndexedSourceRow; followLocked: boolean }> = [];
  for (const ref of unique) {
    const row = rows.get(refKey(ref.memberId, ref.mrn));
    if (!row) continue;
    const path = pathOf(row);
    if (path === 'current') linked.set(refKey(row.member_id, row.mrn), row.golden_id!);
    else if (path === 'follow') follow.push(row as IndexedSourceRow & { golden_id: string });
    else if (path === 'new') fresh.push(row);
    else rest.push({ row, followLocked: path === 'follow-locked' });
  }
  if (follow.length) {
    await followTimes(db.derived, follow);
    for (const row of follow) linked.set(refKey(row.member_id, row.mrn), row.golden_id);
  }
  let crossed: CrossedValue[] = [];
  if (fresh.length) {
    try {
      for (const [key, golden] of await matchNewUnderKeys(db, fresh, actor)) linked.set(key, golden);
    } catch (error) {
      // Rolled back: nothing of it was written. A deadlock between two golden patients' rows is
      // broken by PostgreSQL after deadlock_timeout; the loser matches under the exclusive lock.
      if (!(error instanceof NeedsExclusive) && (error as { code?: string }).code !== '40P01') throw error;
      if (error instanceof NeedsExclusive) crossed = error.crossed;
      rest.unshift(...fresh.map((row) => ({ row, followLocked: false })));
    }
  }
  const exclusive: SourceRef[] = [];
  for (const { row, followLocked } of rest) {
    const golden = followLocked ? await followUnderLock(db, row) : undefined;
    if (golden) linked.set(refKey(row.member_id, row.mrn), golden);
    else exclusive.push({ memberId: row.member_id, mrn: row.mrn });
  }
  if (exclusive.length) for (const [key, golden] of await matchExclusive(db, exclusive, actor, crossed)) linked.set(key, golden);
  return linked;
}

/** One member's source patients (the single-message form of `linkSources`). Returns MRN → golden id. */
export async function linkSourcePatients(db: HubDb, memberId: string, mrns: string[], actor = 'pipeline'): Promise<Map<string, string>> {
  const linked = await linkSources(db, mrns.map((mrn) => ({ memberId, mrn })), actor);
  return new Map(mrns.flatMap((mrn) => (linked.has(refKey(memberId, mrn)) ? [[mrn, linked.get(refKey(memberId, mrn))!] as const] : [])));
}

const INDEXED_SELECT = `${SOURCE_SELECT.replace(
  'FROM source_patient sp',
  `, s.record AS indexed_record, s.patient_resource_id AS indexed_resource, s.event_time AS indexed_event_time,
     s.source_updated_at >= sp.updated_at AND s.record_version >= ${RECORD_VERSION} AS current, l.golden_id,
     (SELECT count(*)::int FROM mpi_link m WHERE m.golden_id = l.golden_id AND m.state = 'MATCH') AS golden_sources
    FROM unnest($1::text[], $2::text[]) AS x(member_id, mrn)
    JOIN source_patient sp ON sp.member_id = x.member_id AND sp.mrn = x.mrn
    LEFT JOIN mpi_source s ON s.member_id = sp.member_id AND s.mrn = sp.mrn
    LEFT JOIN mpi_link l ON l.member_id = sp.member_id AND l.mrn = sp.mrn AND l.state = 'MATCH'`,
)}`;

async function readIndexed(sql: Sql, refs: SourceRef[]): Promise<Map<string, IndexedSourceRow>> {
  const rows = await sql.query<IndexedSourceRow>(INDEXED_SELECT, [refs.map((r) => r.memberId), refs.map((r) => r.mrn)], 'mpi_indexed_sources');
  return new Map(rows.rows.map((r) => [refKey(r.member_id, r.mrn), r]));
}

interface IndexedSourceRow extends SourceRow {
  indexed_record: PersonRecord | null;
  indexed_resource: string | null;
  indexed_event_time: Date | null;
  current: boolean | null;
  golden_id: string | null;
  golden_sources: number;
}

/**
 * What a source needs: nothing (already current: a replay), its times to follow (the identity
 * record as matched is unchanged — same blocking keys, same decision), the same under locks (its
 * event time moved and its golden patient has other sources: the survivorship — latest phone and
 * address — is recomputed), a first match, or matching again.
 */
function pathOf(row: IndexedSourceRow): 'current' | 'follow' | 'follow-locked' | 'new' | 'match' {
  if (isNew(row)) return 'new';
  if (!row.golden_id || !row.indexed_record || row.merged_into) return 'match';
  if (row.current) return 'current';
  const resourceId = row.patient?.id ?? null;
  if (!sameRecord(recordOfSource(row), row.indexed_record) || (resourceId && resourceId !== row.indexed_resource)) return 'match';
  const moved = (row.event_time?.getTime() ?? null) !== (row.indexed_event_time?.getTime() ?? null);
  return moved && Number(row.golden_sources) > 1 ? 'follow-locked' : 'follow';
}

/**
 * The times of unchanged sources follow their source patients. Nothing here issues or moves a
 * golden id, and all of it is re-derived from source_patient if a PostgreSQL crash loses it (the
 * sync sees source_updated_at behind): so it does not wait for the WAL flush, like the merge.
 * New links and golden patients do.
 */
function followTimes(sql: Sql, rows: IndexedSourceRow[]): Promise<unknown> {
  return sql.query(
    `UPDATE mpi_source s SET event_time = sp.event_time, source_updated_at = sp.updated_at, patient_resource_id = coalesce(x.resource_id, s.patient_resource_id), record_version = ${RECORD_VERSION}
       FROM unnest($1::text[], $2::text[], $3::text[]) AS x(member_id, mrn, resource_id), source_patient sp
      WHERE s.member_id = x.member_id AND s.mrn = x.mrn AND sp.member_id = s.member_id AND sp.mrn = s.mrn`,
    [rows.map((r) => r.member_id), rows.map((r) => r.mrn), rows.map((r) => r.patient?.id ?? null)],
    'mpi_follow_sources',
  );
}

/**
 * `followTimes` for a source whose golden patient's survivorship moves: under the shared lock and
 * the golden row's lock, so that concurrent refreshes of one golden patient take turns and the last
 * one sees every source. Undefined: it lost its link meanwhile (matched again instead).
 */
function followUnderLock(db: HubDb, row: IndexedSourceRow): Promise<string | undefined> {
  return db.transaction(async (tx) => {
    await tx.query(`SET LOCAL synchronous_commit = off`);
    await tx.query(`SELECT pg_advisory_xact_lock_shared(${LOCK})`);
    const still = (await tx.query<{ golden_id: string }>(`SELECT golden_id FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND state = 'MATCH'`, [row.member_id, row.mrn])).rows[0]?.golden_id;
    if (!still) return undefined;
    await tx.query(`SELECT 1 FROM mpi_golden WHERE id = $1 FOR UPDATE`, [still]);
    await followTimes(tx, [row]);
    await refreshGolden(tx, still);
    return still;
  });
}

const isNew = (row: IndexedSourceRow) => !row.indexed_record && !row.golden_id && !row.merged_into;

/** A shared-lock match that found it would change more than its own keys cover. */
class NeedsExclusive extends Error {
  /** Values its count made shared: their carriers are matched again under the exclusive lock. */
  constructor(readonly crossed: CrossedValue[] = []) {
    super('needs the exclusive lock');
  }
}

/**
 * Blocking keys known to be full (BLOCK_CAP holders or more: no longer a source of candidates,
 * `candidatesFor`, `readBlocks`). A key only gains holders, so once full it stays full and its lock
 * guards nothing: a registration desk's placeholder phone, a common surname in the alliance's city.
 * Bounded; forgetting costs one index probe.
 */
const fullKeys = new Set<string>();
const FULL_KEYS_KEPT = 100_000;

/**
 * Match sources new to the index under the shared lock of the index and the exclusive locks of
 * their blocking keys, taken in one statement in hash order (so two such matches never wait for
 * each other in a cycle). The invariant: two records that could match share a blocking key (every
 * candidate is found under one: `readBlocks`, `candidatesFor`), so whichever locks it second reads
 * the first one's committed link, and one person registered at two members at once gets one golden
 * patient; records with no key in common never wait for each other. A full key (BLOCK_CAP holders)
 * is not locked: it gives no candidates, and stays full. What keys cannot guard makes the batch
 * start again under the exclusive lock: a value that becomes shared (its other carriers are matched
 * again), a record that bridges two golden patients (they are joined), a golden patient merged
 * meanwhile. Writers under the exclusive lock (sync, review decisions, re-matching) exclude these
 * altogether; golden patients whose survivorship is recomputed are locked by row, in id order, as
 * `followUnderLock` locks them. Returns `member|mrn` → golden id.
 */
async function matchNewUnderKeys(db: HubDb, seen: IndexedSourceRow[], actor: string): Promise<Map<string, string>> {
  const seenItems = new Map(newSources(seen).map((item) => [refKey(item.row.member_id, item.row.mrn), item]));
  // Counted first, on its own (idempotent: a person counts once per value): the counter of a value
  // many people carry (a placeholder phone, the hospital's address) is one row, which a count
  // inside the match would hold locked until the match commits, for every registration in turn.
  const crossed = await countSharedValues(db.derived, [...seenItems.values()].map((i) => i.features));
  if (crossed.length) throw new NeedsExclusive(crossed);
  const keys = new Set([...seenItems.values()].flatMap((i) => i.keys));
  const open = [...keys].filter((k) => !fullKeys.has(k));
  return db.transaction(async (tx) => {
    // Which keys are full is read before the locks, in the same statement: safe, as full stays full.
    const locked = await tx.query<{ full_keys: string[] | null }>(
      `WITH keys AS (
         SELECT k, (SELECT count(*) FROM (SELECT FROM mpi_source WHERE block_keys && ARRAY[k] LIMIT ${BLOCK_CAP}) AS f) >= ${BLOCK_CAP} AS is_full FROM unnest($1::text[]) AS k)
       SELECT pg_advisory_xact_lock_shared(${LOCK}), nextval('mpi_index_writes'), (SELECT array_agg(k) FROM keys WHERE is_full) AS full_keys,
              (SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtextextended(k, ${LOCK}) AS h FROM keys WHERE NOT is_full ORDER BY 1) AS sorted)`,
      [open],
      'mpi_lock_keys',
    );
    if (fullKeys.size > FULL_KEYS_KEPT) fullKeys.clear();
    for (const k of locked.rows[0]!.full_keys ?? []) fullKeys.add(k);
    // Read again under the locks: a sync may have matched them, or a newer message changed their keys.
    const linked = new Map<string, string>();
    const now = await readIndexed(tx, seen.map((r) => ({ memberId: r.member_id, mrn: r.mrn })));
    const items: NewSource[] = [];
    for (const row of now.values()) {
      const key = refKey(row.member_id, row.mrn);
      if (row.golden_id && row.current) linked.set(key, row.golden_id);
      else if (!isNew(row)) throw new NeedsExclusive();
      else {
        // Unchanged since read: the record (and its keys) computed then; else read it again.
        const before = seenItems.get(key);
        const item = before && before.row.updated_text === row.updated_text ? { ...before, row } : newSources([row])[0]!;
        if (item.keys.some((k) => !keys.has(k))) throw new NeedsExclusive(); // keys changed: not all locked
        items.push(item);
      }
    }
    const run = newRun(actor);
    const model = await readBlocks(tx, tx, await populationModel(db, tx), items, run);
    if (run.crossed.length) throw new NeedsExclusive();
    const scored = scoreNewSources(model, items, run);
    if (run.bridges.length) throw new NeedsExclusive();
    await writeNewSources(tx, scored, run);
    const touched = [...run.touched].sort();
    if (touched.length) {
      const goldens = await tx.query<{ state: string }>(`SELECT state FROM mpi_golden WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`, [touched]);
      if (goldens.rows.length !== touched.length || goldens.rows.some((g) => g.state === 'merged')) throw new NeedsExclusive();
      await refreshGoldens(tx, touched);
    }
    for (const item of scored.items) linked.set(refKey(item.row.member_id, item.row.mrn), item.golden);
    return linked;
  });
}

function newRun(actor: string): MatchRun {
  return { actor, summary: { matched: 0, created: 0, linked: 0, review: 0, memberMerges: 0, joined: 0, overtaken: 0 }, touched: new Set(), crossed: [], bridges: [], blocks: new BlockCache(BLOCK_CAP) };
}

/**
 * Sources under the exclusive lock, in one transaction, exactly as a sync matches them (so the
 * pipeline and the safety-net sync agree): those new to the index in bulk, then the others in
 * order (a member merge's retired number after its survivor). Returns `member|mrn` → golden id.
 */
async function matchExclusive(db: HubDb, refs: SourceRef[], actor: string, crossed: CrossedValue[]): Promise<Map<string, string>> {
  return db.transaction(async (tx) => {
    await lockIndex(tx);
    // Read again under the lock: a sync or another partition may have matched them meanwhile.
    const rows = await readIndexed(tx, refs);
    const stale = [...rows.values()].filter((r) => !(r.current && r.golden_id));
    const model = await populationModel(db, tx);
    const run = newRun(actor);
    run.crossed.push(...crossed);
    const fresh = stale.filter(isNew);
    if (fresh.length) await matchNewSources(tx, model, fresh, run);
    for (const row of stale) if (!isNew(row)) await matchSource(tx, model, row, run);
    await finishRun(tx, model, run.crossed, run);
    const links = await tx.query<{ member_id: string; mrn: string; golden_id: string }>(
      `SELECT l.member_id, l.mrn, l.golden_id FROM unnest($1::text[], $2::text[]) AS x(member_id, mrn) JOIN mpi_link l ON l.member_id = x.member_id AND l.mrn = x.mrn AND l.state = 'MATCH'`,
      [refs.map((r) => r.memberId), refs.map((r) => r.mrn)],
    );
    return new Map(links.rows.map((l) => [refKey(l.member_id, l.mrn), l.golden_id]));
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
