/**
 * The master patient index in PostgreSQL: golden patients, the links of each member's source
 * patients to them, the review queue, merge history. Fed lazily from `source_patient` (the merge
 * stage's output): `syncPatientIndex` matches every source patient that is new or changed since it
 * was last matched, so it can run after each ingest, before a read, or on a timer, and any number of
 * times (an advisory lock makes concurrent runs take turns).
 *
 * Rules it keeps: a golden id is issued once and never changes; a MANUAL link is never changed by
 * the matcher; a manual not-link keeps that source away from that golden patient on every re-match;
 * a member's own merge (ADT A34/A39/A40/A47, `merged_into`) links the retired number to the
 * survivor's golden patient. It never deletes history.
 */
import { randomUUID } from 'node:crypto';
import type { HubDb, Sql } from '../sql';
import { HubError } from '../../mappings/outcome';
import { BlockCache } from './blockCache';
import { blockingKeys, featuresOf, type PersonFeatures, type PersonRecord } from './features';
import { bridgedGoldens, decide, mayJoin, modelForPopulation, scorePair, trainModel, type Candidate, type MatchDecision, type MatchModel, type PairScore } from './matcher';
import { backfillSharedValues, BULK_RECORDS, carriersOf, countSharedValues, withSharedCounts, type CrossedValue } from './sharedValues';
import { survivorship, type GoldenDemographics } from './survivorship';
import defaultModelJson from './defaultModel.json';

const RESIDENT_ID_SYSTEM = 'urn:oid:2.16.156.10011.1.3';
const LOCK = 7317005;
const MAX_CANDIDATES = 500;

export type LinkState = 'MATCH' | 'POSSIBLE_MATCH' | 'NO_MATCH';
export type LinkMode = 'AUTO' | 'MANUAL';

interface SourceRow {
  member_id: string;
  mrn: string;
  demographics: Record<string, string>;
  event_time: Date | null;
  merged_into: string | null;
  updated_at: Date;
  /** updated_at to the microsecond (a JS Date drops them, and the row would stay "changed" for ever). */
  updated_text: string;
  patient: { id?: string; identifier?: Array<{ system?: string; value?: string }>; name?: Array<{ family?: string; given?: string[] }> } | null;
  /** Already in the index (else: a new source, matched in bulk). */
  known?: boolean;
}

interface LinkRow {
  member_id: string;
  mrn: string;
  golden_id: string;
  state: LinkState;
  mode: LinkMode;
}

export interface SyncSummary {
  matched: number;
  created: number;
  linked: number;
  review: number;
  memberMerges: number;
  /** Golden patients joined into another because a record matched both (a bridge). */
  joined: number;
  /** Batches that found the index changed by another writer since the sync's last batch (the block copy was read again). */
  overtaken: number;
}

/** What one matching transaction (a sync's batch, a pipeline link) carries through its steps. */
interface MatchRun {
  actor: string;
  summary: SyncSummary;
  /** Golden patients whose survivorship is recomputed at the end. */
  touched: Set<string>;
  /** Values this run's counting made shared (their carriers are matched again). */
  crossed: CrossedValue[];
  /** Records that linked across golden patients (`bridgedGoldens`): joined, if they may be, when the run finishes. */
  bridges: Bridge[];
  blocks: BlockCache;
}

interface Bridge {
  /** The golden patient the record joined, and another it also matched. */
  into: string;
  from: string;
  via: string;
}

/**
 * The exclusive lock of the index's writers, and a write number (migration 15): taken after the
 * lock, so numbers follow the order of lock holders, and a sync's block copy that finds a number
 * it did not take between its rounds knows it was overtaken.
 */
async function lockIndex(tx: Sql): Promise<bigint> {
  await tx.query(`SELECT pg_advisory_xact_lock(${LOCK})`);
  return BigInt((await tx.query<{ n: string }>(`SELECT nextval('mpi_index_writes')::text AS n`)).rows[0]!.n);
}

/** The stored model (yilian mpi train), else the built-in one trained on the Chinese generator. */
export async function loadModel(sql: Sql): Promise<MatchModel> {
  const stored = await sql.query<{ model: MatchModel }>(`SELECT model FROM mpi_model WHERE id = 1`);
  return stored.rows[0]?.model ?? (defaultModelJson as unknown as MatchModel);
}

/** A source patient as the matcher sees it: the member's demographics, the resident ID from its converted Patient. */
export function recordOfSource(row: Pick<SourceRow, 'member_id' | 'mrn' | 'demographics' | 'patient'>): PersonRecord {
  const d = row.demographics ?? {};
  // The member's configured resident-ID field (system set by the converter), else any other
  // identifier shaped like one (a member whose PID-19 mapping is not configured yet).
  const ids = (row.patient?.identifier ?? []).filter((i) => i.value && i.value !== row.mrn);
  const rid = ids.find((i) => i.system === RESIDENT_ID_SYSTEM)?.value ?? ids.find((i) => /^\d{17}[\dXx]$/.test(i.value!))?.value;
  const name = row.patient?.name?.[0];
  return {
    id: `${row.member_id}|${row.mrn}`,
    family: d.family ?? name?.family,
    given: d.given ?? name?.given?.join(' '),
    birthDate: d.birthDate,
    sex: d.sex,
    residentId: d.residentId ?? rid,
    phone: d.phone,
    address: d.address,
  };
}

const SOURCE_SELECT = `
  SELECT sp.member_id, sp.mrn, sp.demographics, sp.event_time, sp.merged_into, sp.updated_at, sp.updated_at::text AS updated_text,
         (SELECT r.content FROM resource r
           WHERE r.resource_type = 'Patient' AND r.member_id = sp.member_id
             AND r.content->'identifier' @> jsonb_build_array(jsonb_build_object('value', sp.mrn))
           ORDER BY (r.content->>'active') = 'false', r.updated_at DESC LIMIT 1) AS patient
    FROM source_patient sp`;

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
  // at everything (the CLI's `mpi sync --full`, and the first sync).
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
    const done = await db.transaction(async (tx) => {
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
        const pending = readDirtyBatch(tx, db, model, run, { batch, since, after });
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
        AND NOT EXISTS (SELECT 1 FROM mpi_source s WHERE s.member_id = sp.member_id AND s.mrn = sp.mrn AND s.source_updated_at >= sp.updated_at)
      ORDER BY sp.updated_at, sp.member_id, sp.mrn LIMIT $1`,
    [at.batch, at.since, at.after?.at ?? null, at.after?.member ?? null, at.after?.mrn ?? null],
  );
  const items = newSources(dirty.rows.filter((r) => !r.known && !r.merged_into));
  return { rows: dirty.rows, items, model: await readBlocks(tx, reader, model, items, run) };
}

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
     s.source_updated_at >= sp.updated_at AS current, l.golden_id,
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
      `UPDATE mpi_source s SET event_time = sp.event_time, source_updated_at = sp.updated_at, patient_resource_id = coalesce($3, s.patient_resource_id)
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
  for (const k of keys) if ((a as unknown as Record<string, unknown>)[k] !== (b as unknown as Record<string, unknown>)[k]) return false;
  return true;
}

/**
 * The model scaled to the population (the prior depends on it). One message must not count a
 * million rows: above 10,000 source patients the planner's estimate is close enough (the prior
 * moves with the logarithm of the population).
 */
async function populationModel(db: HubDb, tx: Sql): Promise<MatchModel> {
  const estimate = Number((await tx.query<{ n: number }>(`SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = 'source_patient'::regclass`)).rows[0]?.n ?? 0);
  const population = estimate > 10_000 ? estimate : Number((await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM source_patient`)).rows[0]!.n);
  return modelForPopulation(await cachedModel(db, tx), population);
}

const modelCache = new WeakMap<HubDb, { model: MatchModel; at: number }>();
/** The stored model changes only with `yilian mpi train`: read it at most every 10 s per hub and process. */
async function cachedModel(db: HubDb, tx: Sql): Promise<MatchModel> {
  let cached = modelCache.get(db);
  if (!cached || Date.now() - cached.at > 10_000) modelCache.set(db, (cached = { model: await loadModel(tx), at: Date.now() }));
  return cached.model;
}

async function matchSource(tx: Sql, model: MatchModel, row: SourceRow, run: MatchRun): Promise<void> {
  run.summary.matched++;
  const record = recordOfSource(row);
  const features = featuresOf(record);
  const keys = blockingKeys(features);
  const golden = await relinkSource(tx, model, row, record, features, keys, run);
  // The sync's copy of the blocks follows: this source now has these features, keys and golden patient.
  run.blocks.replace(features.id, golden, features, keys);
}

/** matchSource's work: store the record, then follow the member's merge, a manual link, or the matcher. Returns the source's golden patient. */
async function relinkSource(tx: Sql, model: MatchModel, row: SourceRow, record: PersonRecord, features: PersonFeatures, keys: string[], run: MatchRun): Promise<string> {
  const { actor, summary, touched } = run;
  run.crossed.push(...(await countSharedValues(tx, [features])));
  await tx.query(
    `INSERT INTO mpi_source (member_id, mrn, record, block_keys, patient_resource_id, event_time, source_updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (member_id, mrn) DO UPDATE SET record = excluded.record, block_keys = excluded.block_keys, patient_resource_id = coalesce(excluded.patient_resource_id, mpi_source.patient_resource_id),
       event_time = excluded.event_time, source_updated_at = excluded.source_updated_at, matched_at = clock_timestamp()`,
    // source_updated_at as read, to the microsecond (as in writeNewSources): a row changed since stays dirty and is matched again.
    [row.member_id, row.mrn, JSON.stringify(record), keys, row.patient?.id ?? null, row.event_time, row.updated_text],
  );
  const links = (await tx.query<LinkRow>(`SELECT member_id, mrn, golden_id, state, mode FROM mpi_link WHERE member_id = $1 AND mrn = $2`, [row.member_id, row.mrn])).rows;
  const current = links.find((l) => l.state === 'MATCH');
  if (current) touched.add(current.golden_id);

  if (row.merged_into) {
    // A member merged this number into another of its own: same person, the member says so.
    const survivor = (await tx.query<{ golden_id: string }>(`SELECT golden_id FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND state = 'MATCH'`, [row.member_id, row.merged_into])).rows[0];
    let target = survivor?.golden_id;
    if (!target) {
      target = await createGolden(tx, actor, row.member_id, row.merged_into, 'member merge survivor');
      await setLink(tx, row.member_id, row.merged_into, target, 'MATCH', 'AUTO', { rule: 'member-merge' });
    }
    touched.add(target);
    if (current?.golden_id === target) return target;
    summary.memberMerges++;
    if (current) {
      // Moves every source of the old golden patient: the sync's block copy starts again.
      run.blocks.clear();
      await mergeGolden(tx, current.golden_id, target, actor, { reason: 'member merge', member: row.member_id, retired: row.mrn, survivor: row.merged_into });
    } else {
      await setLink(tx, row.member_id, row.mrn, target, 'MATCH', 'AUTO', { rule: 'member-merge' });
      await history(tx, actor, 'member-merge', target, row.member_id, row.mrn, { survivor: row.merged_into });
    }
    return target;
  }
  if (current?.mode === 'MANUAL') return current.golden_id; // a person decided; the matcher only refreshes the features

  const notLinked = new Set(links.filter((l) => l.state === 'NO_MATCH' && l.mode === 'MANUAL').map((l) => l.golden_id));
  if (current) {
    // Golden patients one of whose sources was manually declared not to be this record's golden patient.
    const reverse = await tx.query<{ golden_id: string }>(
      `SELECT DISTINCT m.golden_id FROM mpi_link n JOIN mpi_link m ON m.member_id = n.member_id AND m.mrn = n.mrn AND m.state = 'MATCH'
        WHERE n.golden_id = $1 AND n.state = 'NO_MATCH' AND n.mode = 'MANUAL'`,
      [current.golden_id],
    );
    for (const r of reverse.rows) notLinked.add(r.golden_id);
  }
  const candidates = await candidatesFor(tx, keys, row.member_id, row.mrn, notLinked);
  model = await withSharedCounts(tx, model, [features, ...candidates.map((c) => c.features)]);
  const decision = decide(model, features, candidates);
  const explanation = explain(decision);
  let golden = current?.golden_id;
  if (decision.outcome === 'MATCH' && decision.goldenId && decision.goldenId !== current?.golden_id) {
    const alone = current ? Number((await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM mpi_link WHERE golden_id = $1 AND state = 'MATCH'`, [current.golden_id])).rows[0]!.n) === 1 : false;
    // A record that has company in its golden patient stays there unless it no longer matches them.
    const stays = current && !alone && (await stillBelongs(tx, model, features, current.golden_id, row.member_id, row.mrn));
    if (!stays) {
      if (current) await tx.query(`DELETE FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND golden_id = $3`, [row.member_id, row.mrn, current.golden_id]);
      await setLink(tx, row.member_id, row.mrn, decision.goldenId, 'MATCH', 'AUTO', explanation);
      await history(tx, actor, current ? 'relink' : 'link', decision.goldenId, row.member_id, row.mrn, { from: current?.golden_id ?? null, score: explanation.score });
      if (current && alone) await retireEmpty(tx, current.golden_id, decision.goldenId, actor);
      golden = decision.goldenId;
      summary.linked++;
    }
  } else if (current && decision.goldenId === current.golden_id) {
    await setLink(tx, row.member_id, row.mrn, current.golden_id, 'MATCH', 'AUTO', explanation);
  }
  if (golden && golden === decision.goldenId) for (const from of bridgedGoldens(decision)) run.bridges.push({ into: golden, from, via: features.id });
  if (!golden) {
    golden = await createGolden(tx, actor, row.member_id, row.mrn, 'new person');
    await setLink(tx, row.member_id, row.mrn, golden, 'MATCH', 'AUTO', { rule: 'new-person', score: decision.best?.weight ?? null, breakdown: decision.best ? { nearest: explanation.breakdown } : {} });
    summary.created++;
  }
  touched.add(golden);
  // Review items: every golden patient this record possibly matches (the reviewer sees them all).
  const proposals = decision.outcome === 'POSSIBLE_MATCH' && decision.goldenId ? [{ goldenId: decision.goldenId, why: explanation }] : [];
  for (const alt of decision.alternatives) if (alt.outcome !== 'NO_MATCH') proposals.push({ goldenId: alt.goldenId, why: { rule: alt.rule, score: alt.weight, breakdown: { against: alt.candidateId, outcome: alt.outcome, fields: alt.fields } } });
  await tx.query(`DELETE FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND state = 'POSSIBLE_MATCH' AND mode = 'AUTO' AND NOT (golden_id = ANY($3::text[]))`, [row.member_id, row.mrn, proposals.map((p) => p.goldenId)]);
  for (const p of proposals) {
    if (p.goldenId === golden || links.some((l) => l.golden_id === p.goldenId && l.mode === 'MANUAL')) continue;
    await setLink(tx, row.member_id, row.mrn, p.goldenId, 'POSSIBLE_MATCH', 'AUTO', p.why);
    summary.review++;
  }
  return golden;
}

/**
 * A blocking key with this many sources is full: no longer a source of candidates (a key that
 * common says little — 张伟 has thousands of holders, and the first hundred are no better
 * candidates than any other). As in hub/mpi/linker.ts. In memory at 200,000 generated records:
 * comparisons per record 20.9 → 12.6, time −40 %, recall 0.9951 → 0.9946, precision unchanged.
 */
const BLOCK_CAP = 100;

/** A source patient new to the index, as its bulk matching carries it. */
interface NewSource {
  row: SourceRow;
  record: PersonRecord;
  features: PersonFeatures;
  keys: string[];
}

function newSources(rows: SourceRow[]): NewSource[] {
  return rows.map((row) => {
    const record = recordOfSource(row);
    const features = featuresOf(record);
    return { row, record, features, keys: blockingKeys(features) };
  });
}

/** Sources new to the index, in bulk: candidates from the run's block copy, whatever keys it lacks read in one query. */
async function matchNewSources(tx: Sql, model: MatchModel, rows: SourceRow[], run: MatchRun): Promise<void> {
  const items = newSources(rows);
  if (!items.length) return;
  await writeNewSources(tx, scoreNewSources(await readBlocks(tx, tx, model, items, run), items, run), run);
}

/**
 * Before new sources are scored: count their shared values (they are part of the population they
 * are matched in), read the blocks of their keys the run's copy lacks, and return the model with
 * the counts of the values they and their candidates state.
 */
async function readBlocks(tx: Sql, reader: Sql, model: MatchModel, items: NewSource[], run: MatchRun): Promise<MatchModel> {
  if (!items.length) return model;
  const { blocks } = run;
  const missing = blocks.missing(new Set(items.flatMap((i) => i.keys)));
  // Counting (a write, in the transaction) and reading the blocks (on `reader`) at the same time.
  // (Tried: each source once with the keys it was found under, joined back for its record —
  // 40 % fewer rows but a sort and a second index probe per source; slower in EXPLAIN ANALYZE.)
  const [crossed, existing] = await Promise.all([
    countSharedValues(tx, items.map((i) => i.features)),
    missing.length
      ? reader.query<{ key: string; member_id: string; mrn: string; record: PersonRecord; golden_id: string }>(
          `SELECT k.key, s.member_id, s.mrn, s.record, l.golden_id
             FROM unnest($1::text[]) AS k(key)
             CROSS JOIN LATERAL (SELECT member_id, mrn, record FROM mpi_source WHERE block_keys && ARRAY[k.key] LIMIT ${BLOCK_CAP}) s
             JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH'`,
          [missing],
        )
      : undefined,
  ]);
  run.crossed.push(...crossed);
  if (existing) {
    blocks.load(
      missing,
      existing.rows.map((r) => {
        const id = `${r.member_id}|${r.mrn}`;
        return { key: r.key, id, goldenId: r.golden_id, features: () => featuresOf({ ...r.record, id }) };
      }),
    );
  }
  // The shared-value counts of the batch and of the candidates it has before it starts (a batch
  // alone above BULK_RECORDS reads them all: its candidates need not be collected).
  const counted = new Set<PersonFeatures>(items.map((i) => i.features));
  if (items.length <= BULK_RECORDS) for (const item of items) for (const key of item.keys) for (const c of blocks.under(key)) if (!c.stale) counted.add(c.features);
  return withSharedCounts(tx, model, [...counted]);
}

/** What scoring new sources decided, to be written. */
interface ScoredSources {
  items: Array<NewSource & { golden: string }>;
  /** Golden patients created, with their first source (its survivorship is that record's). */
  goldens: Map<string, NewSource>;
  links: Array<Record<string, unknown>>;
  events: Array<Record<string, unknown>>;
}

/** Score each new source against its candidates, in order (later ones see the earlier ones); JavaScript only. */
function scoreNewSources(model: MatchModel, sources: NewSource[], run: MatchRun): ScoredSources {
  const { summary, touched, blocks } = run;
  const out: ScoredSources = { items: [], goldens: new Map(), links: [], events: [] };
  const { links, events } = out;
  for (const source of sources) {
    // The sources read before the batch, and those of the batch matched before this one, each once
    // (the stamp marks the record that last took a candidate: a number, not a Set per record).
    const candidates: Candidate[] = [];
    const stamp = blocks.stamp();
    for (const key of source.keys)
      for (const c of blocks.under(key)) {
        if (c.stamp === stamp || c.stale) continue;
        c.stamp = stamp;
        c.goldenId = blocks.current(c.goldenId);
        candidates.push(c);
      }
    const decision = decide(model, source.features, candidates);
    const explanation = explain(decision);
    const { member_id: member, mrn } = source.row;
    let golden: string;
    if (decision.outcome === 'MATCH' && decision.goldenId) {
      golden = decision.goldenId;
      touched.add(golden);
      links.push({ member_id: member, mrn, golden_id: golden, state: 'MATCH', rule: explanation.rule ?? null, score: explanation.score, breakdown: explanation.breakdown });
      events.push({ action: 'link', golden_id: golden, member_id: member, mrn, detail: { from: null, score: explanation.score } });
      summary.linked++;
      for (const from of bridgedGoldens(decision)) run.bridges.push({ into: golden, from, via: source.features.id });
    } else {
      golden = randomUUID();
      out.goldens.set(golden, source);
      links.push({ member_id: member, mrn, golden_id: golden, state: 'MATCH', rule: 'new-person', score: decision.best?.weight ?? null, breakdown: decision.best ? { nearest: explanation.breakdown } : {} });
      events.push({ action: 'create', golden_id: golden, member_id: member, mrn, detail: { reason: 'new person' } });
      summary.created++;
    }
    out.items.push({ ...source, golden });
    const proposals = decision.outcome === 'POSSIBLE_MATCH' && decision.goldenId ? [{ goldenId: decision.goldenId, rule: explanation.rule ?? null, score: explanation.score, breakdown: explanation.breakdown }] : [];
    for (const alt of decision.alternatives) if (alt.outcome !== 'NO_MATCH') proposals.push({ goldenId: alt.goldenId, rule: alt.rule ?? null, score: alt.weight, breakdown: { against: alt.candidateId, outcome: alt.outcome, fields: alt.fields } });
    for (const p of proposals) {
      if (p.goldenId === golden) continue;
      links.push({ member_id: member, mrn, golden_id: p.goldenId, state: 'POSSIBLE_MATCH', rule: p.rule, score: p.score, breakdown: p.breakdown });
      summary.review++;
    }
    summary.matched++;
    // Later records of this batch, and later batches, see this one.
    blocks.add(source.features.id, golden, source.features, source.keys);
  }
  return out;
}

/**
 * Write what scoring decided: one statement (its parts are data-modifying WITH queries; the links'
 * foreign keys are checked at its end, after the golden patients are in), so PostgreSQL runs all of
 * it while the caller scores the next batch — node-postgres sends a queued query only when
 * JavaScript is free to, so five statements would wait for the scoring after the first.
 */
function writeNewSources(tx: Sql, scored: ScoredSources, run: MatchRun): Promise<unknown> {
  if (!scored.items.length) return Promise.resolve();
  // A golden patient with one source (most of an initial load) gets its survivorship here; those
  // another record joined are recomputed at the end of the run (refreshGoldens) with the rest.
  const lone = [...scored.goldens].filter(([id]) => !run.touched.has(id));
  const joined = [...scored.goldens.keys()].filter((id) => run.touched.has(id));
  return tx.query(
    `WITH lone AS (
       INSERT INTO mpi_golden (id, survivor) SELECT id, survivor FROM jsonb_to_recordset($1::jsonb) AS x(id text, survivor jsonb)),
     joined AS (INSERT INTO mpi_golden (id) SELECT unnest($2::text[])),
     sources AS (
       INSERT INTO mpi_source (member_id, mrn, record, block_keys, patient_resource_id, event_time, source_updated_at)
       SELECT x.member_id, x.mrn, x.record, x.block_keys, x.patient_resource_id, x.event_time, x.source_updated_at
         FROM jsonb_to_recordset($3::jsonb) AS x(member_id text, mrn text, record jsonb, block_keys text[], patient_resource_id text, event_time timestamptz, source_updated_at timestamptz)),
     links AS (
       INSERT INTO mpi_link (member_id, mrn, golden_id, state, mode, rule, score, breakdown)
       SELECT member_id, mrn, golden_id, state, 'AUTO', rule, score, breakdown FROM jsonb_to_recordset($4::jsonb)
           AS x(member_id text, mrn text, golden_id text, state text, rule text, score double precision, breakdown jsonb)
       ON CONFLICT (member_id, mrn, golden_id) DO NOTHING)
     INSERT INTO mpi_history (actor, action, golden_id, member_id, mrn, detail)
     SELECT $6, action, golden_id, member_id, mrn, detail FROM jsonb_to_recordset($5::jsonb) AS x(action text, golden_id text, member_id text, mrn text, detail jsonb)`,
    [
      JSON.stringify(lone.map(([id, s]) => ({ id, survivor: survivorship([{ memberId: s.row.member_id, mrn: s.row.mrn, record: s.record, eventTime: s.row.event_time?.toISOString() ?? null }]) }))),
      joined,
      // source_updated_at as read (to the microsecond): a row changed since then stays dirty and is matched again.
      JSON.stringify(
        scored.items.map((i) => ({ member_id: i.row.member_id, mrn: i.row.mrn, record: i.record, block_keys: i.keys, patient_resource_id: i.row.patient?.id ?? null, event_time: i.row.event_time, source_updated_at: i.row.updated_text })),
      ),
      JSON.stringify(scored.links),
      JSON.stringify(scored.events),
      run.actor,
    ],
  );
}

/**
 * The end of every matching transaction: links made on values that just became shared are looked
 * at again, golden patients a record bridged are joined, and the survivorship of every golden
 * patient touched is recomputed.
 */
async function finishRun(tx: Sql, model: MatchModel, crossed: CrossedValue[], run: MatchRun): Promise<void> {
  await rematchCarriers(tx, model, crossed, run);
  await joinBridges(tx, model, run);
  await refreshGoldens(tx, [...run.touched]);
}

/**
 * Join the golden patients the run's records bridged, where they may be one person: no pair across
 * them is told apart by a guard rule (`mayJoin`), no person said one of their sources is not the
 * other (a manual not-link), and neither holds a manual link (what a person decided is not
 * restructured by the matcher: the bridge stays a review item). Few per run: in the generated
 * 1,000,000-record set about one record in 1,500 bridges.
 */
async function joinBridges(tx: Sql, model: MatchModel, run: MatchRun): Promise<void> {
  const bridges = run.bridges.splice(0);
  for (const bridge of bridges) {
    // Either side may have been joined to another already (mpi_golden.merged_into is kept final).
    const current = await tx.query<{ id: string; golden: string }>(`SELECT id, coalesce(merged_into, id) AS golden FROM mpi_golden WHERE id = ANY($1::text[])`, [[bridge.into, bridge.from]]);
    const now = new Map(current.rows.map((r) => [r.id, r.golden]));
    const into = now.get(bridge.into);
    const from = now.get(bridge.from);
    if (!into || !from || into === from) continue;
    const sources = await tx.query<{ golden_id: string; member_id: string; mrn: string; record: PersonRecord; mode: LinkMode }>(
      `SELECT l.golden_id, s.member_id, s.mrn, s.record, l.mode FROM mpi_link l JOIN mpi_source s USING (member_id, mrn) WHERE l.golden_id = ANY($1::text[]) AND l.state = 'MATCH'`,
      [[into, from]],
    );
    if (sources.rows.some((r) => r.mode === 'MANUAL')) continue;
    const notLinked = await tx.query(
      `SELECT 1 FROM mpi_link n JOIN mpi_link m ON m.member_id = n.member_id AND m.mrn = n.mrn AND m.state = 'MATCH'
        WHERE n.state = 'NO_MATCH' AND ((n.golden_id = $1 AND m.golden_id = $2) OR (n.golden_id = $2 AND m.golden_id = $1)) LIMIT 1`,
      [into, from],
    );
    if (notLinked.rows.length) continue;
    const features = (golden: string) => sources.rows.filter((r) => r.golden_id === golden).map((r) => featuresOf({ ...r.record, id: `${r.member_id}|${r.mrn}` }));
    const [a, b] = [features(into), features(from)];
    if (!mayJoin(await withSharedCounts(tx, model, [...a, ...b]), a, b)) continue;
    await mergeGolden(tx, from, into, run.actor, { reason: 'bridge', via: bridge.via });
    run.blocks.join(from, into);
    run.touched.delete(from);
    run.touched.add(into);
    run.summary.joined++;
  }
}

/**
 * Values that just became shared (more different people carry them than a household): a source
 * linked to others while such a value still looked like one household's is matched again, with
 * the new counts, if none of its golden patient's other sources still matches it — it leaves that
 * golden patient and is matched as if new (a review item with it when the pair is still possible).
 * Manual links and member merges stand.
 */
async function rematchCarriers(tx: Sql, model: MatchModel, crossed: CrossedValue[], run: MatchRun): Promise<void> {
  const carriers = await carriersOf(tx, crossed);
  if (!carriers.length) return;
  // Read for all carriers at once (one value crossing in a bulk sync has up to a few dozen; at
  // 1,000,000 records 132,807 carriers cost four queries each, 110 s). Checked in order; once one
  // leaves its golden patient the others' company may have changed, so the rest are read again
  // one by one (none left in the 1M run).
  const links = await carrierLinks(tx, carriers);
  // A golden patient a member merged into stays as the member said (its retired and surviving numbers).
  const checked = carriers.filter((c) => {
    const l = links.get(`${c.member_id}|${c.mrn}`);
    return l && l.mode !== 'MANUAL' && !l.member_merge && Number(l.company) >= 2;
  });
  if (!checked.length) return;
  const rows = await sourceRows(tx, checked);
  const company = new Map<string, PersonFeatures[]>();
  for (const o of (
    await tx.query<{ golden_id: string; member_id: string; mrn: string; record: PersonRecord }>(
      `SELECT l.golden_id, s.member_id, s.mrn, s.record FROM mpi_link l JOIN mpi_source s USING (member_id, mrn) WHERE l.golden_id = ANY($1::text[]) AND l.state = 'MATCH'`,
      [[...new Set(checked.map((c) => links.get(`${c.member_id}|${c.mrn}`)!.golden_id))]],
    )
  ).rows) {
    const list = company.get(o.golden_id) ?? [];
    list.push(featuresOf({ ...o.record, id: `${o.member_id}|${o.mrn}` }));
    company.set(o.golden_id, list);
  }
  const own = new Map([...rows].map(([id, row]) => [id, featuresOf(recordOfSource(row))]));
  const counted = await withSharedCounts(tx, model, [...own.values(), ...[...company.values()].flat()]);
  let prefetched = true;
  for (const c of checked) {
    const id = `${c.member_id}|${c.mrn}`;
    const row = prefetched ? rows.get(id) : (await sourceRows(tx, [c])).get(id);
    if (!row || row.merged_into) continue;
    const link = prefetched ? links.get(id) : (await carrierLinks(tx, [c])).get(id);
    if (!link || link.mode === 'MANUAL' || link.member_merge || Number(link.company) < 2) continue;
    const features = prefetched ? own.get(id)! : featuresOf(recordOfSource(row));
    const belongs = prefetched
      ? matchesAny(counted, features, (company.get(link.golden_id) ?? []).filter((o) => o.id !== id))
      : await stillBelongs(tx, model, features, link.golden_id, c.member_id, c.mrn);
    if (belongs) continue;
    await tx.query(`DELETE FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND golden_id = $3`, [c.member_id, c.mrn, link.golden_id]);
    await history(tx, run.actor, 'unlink', link.golden_id, c.member_id, c.mrn, { reason: 'linked on a value since found shared', field: c.field, value: c.value });
    run.touched.add(link.golden_id);
    // (its values were counted when it was first matched: nothing more crosses)
    await matchSource(tx, model, row, { ...run, crossed: [] });
    prefetched = false;
  }
}

/** Sources' MATCH links (by `member|mrn`), how many sources their golden patient has, and whether a member merge made it. */
async function carrierLinks(tx: Sql, sources: Array<{ member_id: string; mrn: string }>): Promise<Map<string, { golden_id: string; mode: LinkMode; company: number; member_merge: boolean }>> {
  const rows = await tx.query<{ member_id: string; mrn: string; golden_id: string; mode: LinkMode; company: number; member_merge: boolean }>(
    `SELECT l.member_id, l.mrn, l.golden_id, l.mode, (SELECT count(*)::int FROM mpi_link m WHERE m.golden_id = l.golden_id AND m.state = 'MATCH') AS company,
            EXISTS (SELECT 1 FROM mpi_link m WHERE m.golden_id = l.golden_id AND m.state = 'MATCH' AND m.rule = 'member-merge') AS member_merge
       FROM unnest($1::text[], $2::text[]) AS c(member_id, mrn) JOIN mpi_link l ON l.member_id = c.member_id AND l.mrn = c.mrn AND l.state = 'MATCH'`,
    [sources.map((c) => c.member_id), sources.map((c) => c.mrn)],
  );
  return new Map(rows.rows.map((l) => [`${l.member_id}|${l.mrn}`, l]));
}

/** Source patients (by `member|mrn`) as the matcher reads them. */
async function sourceRows(tx: Sql, sources: Array<{ member_id: string; mrn: string }>): Promise<Map<string, SourceRow>> {
  const rows = await tx.query<SourceRow>(`${SOURCE_SELECT} JOIN unnest($1::text[], $2::text[]) AS c(member_id, mrn) ON c.member_id = sp.member_id AND c.mrn = sp.mrn`, [
    sources.map((c) => c.member_id),
    sources.map((c) => c.mrn),
  ]);
  return new Map(rows.rows.map((r) => [`${r.member_id}|${r.mrn}`, r]));
}

async function candidatesFor(tx: Sql, keys: string[], memberId: string, mrn: string, excluded: Set<string>): Promise<Candidate[]> {
  if (!keys.length) return [];
  // Per key at most BLOCK_CAP, and a full key none, as in bulk matching: one crowded key (a phone
  // shared by a whole ward's test patients, a common name) must not fill the candidates.
  const rows = await tx.query<{ key: string; member_id: string; mrn: string; record: PersonRecord; golden_id: string }>(
    `SELECT k.key, s.member_id, s.mrn, s.record, l.golden_id
       FROM unnest($1::text[]) AS k(key)
       CROSS JOIN LATERAL (SELECT member_id, mrn, record FROM mpi_source WHERE block_keys && ARRAY[k.key] AND NOT (member_id = $2 AND mrn = $3) LIMIT ${BLOCK_CAP}) s
       JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH'`,
    [keys, memberId, mrn],
  );
  const perKey = new Map<string, number>();
  for (const r of rows.rows) perKey.set(r.key, (perKey.get(r.key) ?? 0) + 1);
  const candidates = new Map<string, Candidate>();
  for (const r of rows.rows) {
    const id = `${r.member_id}|${r.mrn}`;
    if (perKey.get(r.key)! >= BLOCK_CAP || excluded.has(r.golden_id) || candidates.has(id)) continue;
    candidates.set(id, { goldenId: r.golden_id, features: featuresOf({ ...r.record, id }) });
    if (candidates.size >= MAX_CANDIDATES) break;
  }
  return [...candidates.values()];
}

async function stillBelongs(tx: Sql, model: MatchModel, features: ReturnType<typeof featuresOf>, goldenId: string, memberId: string, mrn: string): Promise<boolean> {
  const others = await tx.query<{ member_id: string; mrn: string; record: PersonRecord }>(
    `SELECT s.member_id, s.mrn, s.record FROM mpi_link l JOIN mpi_source s USING (member_id, mrn) WHERE l.golden_id = $1 AND l.state = 'MATCH' AND NOT (l.member_id = $2 AND l.mrn = $3)`,
    [goldenId, memberId, mrn],
  );
  const theirs = others.rows.map((o) => featuresOf({ ...o.record, id: `${o.member_id}|${o.mrn}` }));
  return matchesAny(await withSharedCounts(tx, model, [features, ...theirs]), features, theirs);
}

/** Whether a record still matches one of these others (its golden patient's other sources). */
function matchesAny(model: MatchModel, features: PersonFeatures, others: PersonFeatures[]): boolean {
  return others.some((o) => scorePair(model, features, o).outcome === 'MATCH');
}

function explain(decision: MatchDecision): { rule?: string; score: number | null; breakdown: Record<string, unknown> } {
  const best = decision.best;
  if (!best) return { score: null, breakdown: {} };
  return {
    rule: best.rule ?? (decision.outcome === 'MATCH' ? 'fellegi-sunter' : undefined),
    score: best.weight,
    breakdown: { against: best.candidateId, probability: best.probability, outcome: best.outcome, fields: best.fields, alternatives: decision.alternatives },
  };
}

async function setLink(tx: Sql, memberId: string, mrn: string, goldenId: string, state: LinkState, mode: LinkMode, why: { rule?: string; score?: number | null; breakdown?: Record<string, unknown> }, decidedBy?: string): Promise<void> {
  await tx.query(
    `INSERT INTO mpi_link (member_id, mrn, golden_id, state, mode, rule, score, breakdown, decided_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (member_id, mrn, golden_id) DO UPDATE SET state = excluded.state, mode = excluded.mode, rule = excluded.rule, score = excluded.score,
       breakdown = excluded.breakdown, decided_by = excluded.decided_by, updated_at = clock_timestamp()`,
    [memberId, mrn, goldenId, state, mode, why.rule ?? null, why.score ?? null, JSON.stringify(why.breakdown ?? {}), decidedBy ?? null],
  );
}

async function createGolden(tx: Sql, actor: string, memberId: string, mrn: string, reason: string): Promise<string> {
  const id = randomUUID();
  await tx.query(`INSERT INTO mpi_golden (id) VALUES ($1)`, [id]);
  await history(tx, actor, 'create', id, memberId, mrn, { reason });
  return id;
}

async function history(tx: Sql, actor: string, action: string, goldenId: string | null, memberId: string | null, mrn: string | null, detail: Record<string, unknown>): Promise<void> {
  await tx.query(`INSERT INTO mpi_history (actor, action, golden_id, member_id, mrn, detail) VALUES ($1, $2, $3, $4, $5, $6)`, [actor, action, goldenId, memberId, mrn, JSON.stringify(detail)]);
}

/** Fold golden `from` into `into`: its sources, not-links and history follow; `from` keeps pointing at `into`. */
async function mergeGolden(tx: Sql, from: string, into: string, actor: string, detail: Record<string, unknown>): Promise<void> {
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

async function retireEmpty(tx: Sql, goldenId: string, into: string, actor: string): Promise<void> {
  await tx.query(`UPDATE mpi_golden SET state = 'merged', merged_into = $2, updated_at = clock_timestamp() WHERE id = $1`, [goldenId, into]);
  await tx.query(`UPDATE mpi_golden SET merged_into = $2 WHERE merged_into = $1`, [goldenId, into]);
  await tx.query(`DELETE FROM mpi_link WHERE golden_id = $1 AND state = 'POSSIBLE_MATCH' AND mode = 'AUTO'`, [goldenId]);
  await history(tx, actor, 'merge', into, null, null, { from: goldenId, reason: 'its only source joined this golden patient' });
}

/** Recompute the survivorship of many golden patients: one read, one write. */
async function refreshGoldens(tx: Sql, goldenIds: string[]): Promise<void> {
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
async function refreshGolden(tx: Sql, goldenId: string): Promise<void> {
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

// ---------------------------------------------------------------- reads and decisions

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
/**
 * Keep the index following source_patient in a long-running process (`yilian serve`): a sync every
 * `intervalMs`, never two at once (a large backlog takes longer than the interval). Returns stop.
 */
export function startPatientIndexSync(db: HubDb, intervalMs = 5000, log?: (text: string) => void): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    syncPatientIndex(db, { actor: 'serve' })
      .catch((error) => log?.(`patient index sync: ${(error as Error).message}`))
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

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

/** Train the model on this hub's own source patients and store it. */
export async function trainStoredModel(db: HubDb): Promise<MatchModel> {
  const rows = await db.query<SourceRow>(`${SOURCE_SELECT} WHERE sp.merged_into IS NULL`);
  const model = trainModel(rows.rows.map((r) => featuresOf(recordOfSource(r))));
  await db.query(`INSERT INTO mpi_model (id, model) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET model = excluded.model, trained_at = clock_timestamp()`, [JSON.stringify(model)]);
  modelCache.delete(db);
  return model;
}
