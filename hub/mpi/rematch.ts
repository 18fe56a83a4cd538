/**
 * `yilian mpi rematch`: apply the active model (`yilian mpi train`, hub/mpi/model.ts) to the links
 * the index already holds. A sync matches only sources that are new or changed, so without this a
 * stored model decided nothing about existing links.
 *
 * Every source of the index is matched again, in batches (keyset over mpi_source's key), each batch
 * one transaction under the index's exclusive lock (`lockIndex`, as a sync's round and a review
 * decision: the pipeline's links wait for a batch, a sync's block copy learns it was overtaken):
 * 1. the golden patients of the batch's sources are split where the model no longer ties their
 *    sources together — the sources form groups of pairs the model scores MATCH, and each group but
 *    the largest gets a golden patient of its own (before: a source left only when it matched none
 *    of the others, `rematchCarriers` in matchRun.ts — two couples in one golden patient stayed one);
 * 2. each source is matched as a sync matches a known one (`matchSource`: a source alone may join
 *    the golden patient it now matches, review items follow the new scores), and the run ends as a
 *    sync's does (`finishRun`: bridges join, survivorship).
 * What a person or a member decided stands: a MANUAL link is never touched, a golden patient holding
 * one is not split (nor joined: `finishRun`), a manual not-link keeps its golden patient out of the
 * candidates and follows a split to both parts, a member's own merge (A40) stays.
 *
 * The report is a diff of the batches: sources whose golden patient changed (links made: now with
 * sources they were not with; broken: now apart from sources they were with), sources sent to
 * review and out of it. `dryRun` rolls each batch back after measuring it. A second rematch with the
 * same model changes nothing (tested, test/mpi-rematch.int.test.ts).
 */
import type { HubDb, Sql } from '../sql';
import { HubError } from '../../mappings/outcome';
import { BlockCache } from './blockCache';
import { featuresOf, type PersonFeatures, type PersonRecord } from './features';
import { modelForPopulation, scorePair, type MatchModel } from './matcher';
import { carriersOf, withSharedCounts } from './sharedValues';
import { createGolden, history, setLink, type LinkMode } from './golden';
import { activeModel, type ActiveModel } from './model';
import { recordOfSource, SOURCE_SELECT, type SourceRow } from './sourceRecord';
import { BLOCK_CAP, finishRun, lockIndex, matchSource, type MatchRun } from './matchRun';

export interface RematchOptions {
  dryRun?: boolean;
  /** Sources per batch (one transaction under the index's lock). */
  batch?: number;
  actor?: string;
  /** How many changes the report lists (the counts cover all). */
  sample?: number;
}

export interface RematchChange {
  /** `member|mrn` */
  source: string;
  before: string | null;
  after: string | null;
  /** linked: now with sources it was not with; unlinked: now apart from sources it was with; moved: both. */
  change: 'linked' | 'unlinked' | 'moved';
}

export interface RematchReport {
  dryRun: boolean;
  model: { version: number; trainedAt: string | null; builtIn: boolean };
  /** Sources of the index looked at. */
  sources: number;
  /** Sources not matched again: a person linked them (MANUAL), or they are a member's retired number. */
  kept: { manual: number; memberMerge: number };
  /** Sources now in a golden patient with sources they were not with before. */
  made: number;
  /** Sources now apart from sources they were with before. */
  broken: number;
  /** Sources that now have an open review item and had none, and the other way round. */
  review: { sent: number; left: number };
  /** Golden patients split in two or more, and joined into another by a bridge. */
  split: number;
  joined: number;
  changes: RematchChange[];
  reviewChanges: Array<{ source: string; golden: string; change: 'opened' | 'closed' }>;
}

/** Matching one source costs several statements: a batch of 250 holds the lock about a second. */
const DEFAULT_BATCH = 250;
/** A golden patient with more sources than this is not checked for a split (pairs grow with the square). */
const SPLIT_CHECK_MAX = 100;

/** Thrown to roll a dry run's batch back once it is measured. */
class DryRun extends Error {}

interface Key {
  member_id: string;
  mrn: string;
}
const keyOf = (k: Key) => `${k.member_id}|${k.mrn}`;

/** A source's links that the diff compares: its golden patient and its open review items. */
interface LinkView {
  match: string | null;
  review: Set<string>;
}

export async function rematchPatientIndex(db: HubDb, options: RematchOptions = {}): Promise<RematchReport> {
  const batch = options.batch ?? DEFAULT_BATCH;
  const actor = options.actor ?? 'rematch';
  const sample = options.sample ?? 20;
  const pinned = await activeModel(db);
  const report: RematchReport = {
    dryRun: !!options.dryRun,
    model: { version: pinned.version, trainedAt: pinned.trainedAt, builtIn: pinned.builtIn },
    sources: 0,
    kept: { manual: 0, memberMerge: 0 },
    made: 0,
    broken: 0,
    review: { sent: 0, left: 0 },
    split: 0,
    joined: 0,
    changes: [],
    reviewChanges: [],
  };
  // As a sync: the population counted once (the prior moves with its logarithm).
  const population = Number((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM source_patient`)).rows[0]!.n);
  let after: Key | null = null;
  for (;;) {
    let keys: Key[] = [];
    try {
      await db.transaction(async (tx) => {
        await lockIndex(tx);
        await tx.query(`SET LOCAL jit = off`);
        const active = await activeModel(tx);
        if (active.version !== pinned.version || active.trainedAt !== pinned.trainedAt) {
          throw new HubError('conflict', `a new model (version ${active.version}) was stored while rematch applied version ${pinned.version}: run rematch again`);
        }
        keys = (
          await tx.query<Key>(`SELECT member_id, mrn FROM mpi_source WHERE ($1::text IS NULL OR (member_id, mrn) > ($1, $2)) ORDER BY member_id, mrn LIMIT $3`, [
            after?.member_id ?? null,
            after?.mrn ?? null,
            batch,
          ])
        ).rows;
        if (!keys.length) return;
        await rematchBatch(tx, modelForPopulation(active.model, population), active, keys, { actor, report, sample });
        if (options.dryRun) throw new DryRun();
      });
    } catch (error) {
      if (!(error instanceof DryRun)) throw error;
    }
    if (keys.length < batch) break;
    after = keys[keys.length - 1]!;
  }
  if (!options.dryRun) {
    const { changes: _c, reviewChanges: _r, ...counts } = report;
    await history(db, actor, 'rematch', null, null, null, counts);
  }
  return report;
}

async function rematchBatch(tx: Sql, model: MatchModel, active: ActiveModel, keys: Key[], ctx: { actor: string; report: RematchReport; sample: number }): Promise<void> {
  const { report } = ctx;
  const rows = await sourceRows(tx, keys);
  const before = new Map<string, LinkView>();
  await snapshot(tx, keys, [], before);
  const run: MatchRun = {
    actor: ctx.actor,
    summary: { matched: 0, created: 0, linked: 0, review: 0, memberMerges: 0, joined: 0, overtaken: 0 },
    touched: new Set(),
    crossed: [],
    bridges: [],
    blocks: new BlockCache(BLOCK_CAP),
  };
  const moved = await splitGoldens(tx, model, active, rows, before, run, report);
  const inBatch = new Set(rows.keys());
  const outside = moved.filter((k) => !rows.has(keyOf(k)));
  for (const [id, row] of outside.length ? await sourceRows(tx, outside) : []) rows.set(id, row);
  const modes = await matchModes(tx, [...rows.values()]);
  for (const row of rows.values()) {
    const counted = inBatch.has(keyOf(row));
    if (row.merged_into) {
      if (counted) report.kept.memberMerge++;
      continue;
    }
    if (modes.get(keyOf(row)) === 'MANUAL') {
      if (counted) report.kept.manual++;
      continue;
    }
    await matchSource(tx, model, row, run);
  }
  report.sources += keys.length;
  // What the run's end may move besides the batch: the golden patients the batch bridged, and the
  // carriers of values that became shared. Their state now is their state before the batch.
  const bridged = run.bridges.flatMap((b) => [b.into, b.from]);
  const resolved = bridged.length ? (await tx.query<{ golden: string }>(`SELECT DISTINCT coalesce(merged_into, id) AS golden FROM mpi_golden WHERE id = ANY($1::text[])`, [bridged])).rows.map((r) => r.golden) : [];
  await snapshot(tx, await carriersOf(tx, run.crossed), resolved, before);
  await finishRun(tx, model, run.crossed, run);
  report.joined += run.summary.joined;
  await measure(tx, before, ctx);
}

/**
 * Step 1: golden patients of the batch whose sources the model no longer ties together (groups of
 * pairs scoring MATCH) are split: the largest group keeps the golden patient (its id is what others
 * hold), each other group gets a new one. Not split: one holding a manual link or a member's merge,
 * or with more than SPLIT_CHECK_MAX sources. Returns the sources moved.
 */
async function splitGoldens(tx: Sql, model: MatchModel, active: ActiveModel, rows: Map<string, SourceRow>, before: Map<string, LinkView>, run: MatchRun, report: RematchReport): Promise<Key[]> {
  const goldens = [...new Set([...rows.keys()].map((k) => before.get(k)?.match).filter((g): g is string => !!g))];
  if (!goldens.length) return [];
  const members = await tx.query<{ golden_id: string; member_id: string; mrn: string; mode: LinkMode; rule: string | null; record: PersonRecord }>(
    `SELECT l.golden_id, l.member_id, l.mrn, l.mode, l.rule, s.record FROM mpi_link l JOIN mpi_source s USING (member_id, mrn)
      WHERE l.golden_id = ANY($1::text[]) AND l.state = 'MATCH' ORDER BY l.golden_id, l.member_id, l.mrn`,
    [goldens],
  );
  const byGolden = new Map<string, typeof members.rows>();
  for (const m of members.rows) byGolden.set(m.golden_id, [...(byGolden.get(m.golden_id) ?? []), m]);
  // Each golden patient is checked once, in the batch of its first source by key (batches follow key
  // order): a dry run, which forgets each batch, would otherwise count its split in every batch
  // holding one of its sources.
  const checked = [...byGolden.entries()].filter(
    ([, list]) => list.length >= 2 && list.length <= SPLIT_CHECK_MAX && rows.has(keyOf(list[0]!)) && list.every((m) => m.mode === 'AUTO' && m.rule !== 'member-merge'),
  );
  if (!checked.length) return [];
  // A source of the batch as source_patient states it now (matchSource stores that); others as stored.
  const features = new Map<string, PersonFeatures>();
  for (const [, list] of checked)
    for (const m of list) {
      const row = rows.get(keyOf(m));
      features.set(keyOf(m), featuresOf(row ? recordOfSource(row) : { ...m.record, id: keyOf(m) }));
    }
  const counted = await withSharedCounts(tx, model, [...features.values()]);
  const moved: Key[] = [];
  for (const [golden, list] of checked) {
    const groups = matchGroups(counted, list.map((m) => features.get(keyOf(m))!));
    if (groups.length < 2) continue;
    report.split++;
    run.touched.add(golden);
    // The largest group keeps the golden patient; ties: the group of the first source by key.
    groups.sort((a, b) => b.length - a.length || a[0]! - b[0]!);
    for (const group of groups.slice(1)) {
      const first = list[group[0]!]!;
      const into = await createGolden(tx, run.actor, first.member_id, first.mrn, `split from ${golden} by rematch (model version ${active.version})`);
      // A person said these sources are not that golden patient: neither part of it is them.
      await tx.query(
        `INSERT INTO mpi_link (member_id, mrn, golden_id, state, mode, rule, score, breakdown, decided_by)
         SELECT member_id, mrn, $2, state, mode, rule, score, breakdown, decided_by FROM mpi_link WHERE golden_id = $1 AND state = 'NO_MATCH' AND mode = 'MANUAL'
         ON CONFLICT (member_id, mrn, golden_id) DO NOTHING`,
        [golden, into],
      );
      for (const i of group) {
        const m = list[i]!;
        await tx.query(`DELETE FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND golden_id = $3`, [m.member_id, m.mrn, golden]);
        await setLink(tx, m.member_id, m.mrn, into, 'MATCH', 'AUTO', { rule: 'rematch-split', breakdown: { from: golden, modelVersion: active.version } });
        await history(tx, run.actor, 'unlink', golden, m.member_id, m.mrn, { reason: 'rematch: the model no longer ties it to the others of its golden patient', to: into, modelVersion: active.version });
        moved.push(m);
      }
      run.touched.add(into);
    }
  }
  return moved;
}

/** Groups (indexes into `list`) of records connected by pairs the model scores MATCH. */
function matchGroups(model: MatchModel, list: PersonFeatures[]): number[][] {
  const parent = list.map((_, i) => i);
  const root = (i: number): number => (parent[i] === i ? i : (parent[i] = root(parent[i]!)));
  for (let i = 0; i < list.length; i++)
    for (let j = i + 1; j < list.length; j++) {
      if (root(i) === root(j)) continue;
      if (scorePair(model, list[i]!, list[j]!).outcome === 'MATCH') parent[root(j)] = root(i);
    }
  const groups = new Map<number, number[]>();
  list.forEach((_, i) => groups.set(root(i), [...(groups.get(root(i)) ?? []), i]));
  return [...groups.values()];
}

async function sourceRows(tx: Sql, keys: Key[]): Promise<Map<string, SourceRow>> {
  const rows = await tx.query<SourceRow>(`${SOURCE_SELECT} JOIN unnest($1::text[], $2::text[]) AS k(member_id, mrn) ON k.member_id = sp.member_id AND k.mrn = sp.mrn ORDER BY sp.member_id, sp.mrn`, [
    keys.map((k) => k.member_id),
    keys.map((k) => k.mrn),
  ]);
  return new Map(rows.rows.map((r) => [keyOf(r), r]));
}

async function matchModes(tx: Sql, keys: Key[]): Promise<Map<string, LinkMode>> {
  const rows = await tx.query<Key & { mode: LinkMode }>(
    `SELECT l.member_id, l.mrn, l.mode FROM unnest($1::text[], $2::text[]) AS k(member_id, mrn) JOIN mpi_link l ON l.member_id = k.member_id AND l.mrn = k.mrn AND l.state = 'MATCH'`,
    [keys.map((k) => k.member_id), keys.map((k) => k.mrn)],
  );
  return new Map(rows.rows.map((r) => [keyOf(r), r.mode]));
}

/**
 * Record, for sources not yet recorded, their golden patient and open review items: these sources,
 * every source of their golden patients and of `goldens`, and the sources with a review item
 * against those golden patients (a merge moves such items, a retired golden patient's go).
 */
async function snapshot(tx: Sql, sources: Key[], goldens: string[], into: Map<string, LinkView>): Promise<void> {
  const rows = await tx.query<Key & { golden_id: string | null; state: string | null }>(
    `WITH given AS (SELECT * FROM unnest($1::text[], $2::text[]) AS g(member_id, mrn)),
     gold AS (SELECT l.golden_id FROM given JOIN mpi_link l ON l.member_id = given.member_id AND l.mrn = given.mrn AND l.state = 'MATCH'
              UNION SELECT unnest($3::text[])),
     s AS (SELECT member_id, mrn FROM given
           UNION SELECT l.member_id, l.mrn FROM gold JOIN mpi_link l ON l.golden_id = gold.golden_id AND l.state IN ('MATCH', 'POSSIBLE_MATCH'))
     SELECT s.member_id, s.mrn, l.golden_id, l.state FROM s LEFT JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state IN ('MATCH', 'POSSIBLE_MATCH')`,
    [sources.map((k) => k.member_id), sources.map((k) => k.mrn), goldens],
  );
  const fresh = new Map<string, LinkView>();
  for (const r of rows.rows) {
    const id = keyOf(r);
    if (into.has(id)) continue;
    let view = fresh.get(id);
    if (!view) fresh.set(id, (view = { match: null, review: new Set() }));
    if (r.state === 'MATCH') view.match = r.golden_id;
    else if (r.state === 'POSSIBLE_MATCH') view.review.add(r.golden_id!);
  }
  for (const [id, view] of fresh) into.set(id, view);
}

/** The batch's diff: the recorded sources as they are now against `before`. */
async function measure(tx: Sql, before: Map<string, LinkView>, ctx: { report: RematchReport; sample: number }): Promise<void> {
  const { report, sample } = ctx;
  const ids = [...before.keys()].sort(); // (the sample lists them in key order)
  const split = ids.map((id) => id.split('|'));
  const now = new Map<string, LinkView>(ids.map((id) => [id, { match: null, review: new Set<string>() }]));
  const rows = await tx.query<Key & { golden_id: string; state: string }>(
    `SELECT l.member_id, l.mrn, l.golden_id, l.state FROM unnest($1::text[], $2::text[]) AS k(member_id, mrn)
       JOIN mpi_link l ON l.member_id = k.member_id AND l.mrn = k.mrn AND l.state IN ('MATCH', 'POSSIBLE_MATCH')`,
    [split.map((s) => s[0]!), split.map((s) => s.slice(1).join('|'))],
  );
  for (const r of rows.rows) {
    const view = now.get(keyOf(r))!;
    if (r.state === 'MATCH') view.match = r.golden_id;
    else view.review.add(r.golden_id);
  }
  const changed = ids.filter((id) => before.get(id)!.match !== now.get(id)!.match);
  // Company before: the recorded sources of that golden patient (all of its sources were recorded);
  // company after: read.
  const beforeCompany = new Map<string, Set<string>>();
  for (const [id, view] of before) if (view.match) beforeCompany.set(view.match, (beforeCompany.get(view.match) ?? new Set()).add(id));
  const afterGoldens = [...new Set(changed.map((id) => now.get(id)!.match).filter((g): g is string => !!g))];
  const afterCompany = new Map<string, Set<string>>();
  if (afterGoldens.length) {
    const members = await tx.query<Key & { golden_id: string }>(`SELECT golden_id, member_id, mrn FROM mpi_link WHERE golden_id = ANY($1::text[]) AND state = 'MATCH'`, [afterGoldens]);
    for (const m of members.rows) afterCompany.set(m.golden_id, (afterCompany.get(m.golden_id) ?? new Set()).add(keyOf(m)));
  }
  for (const id of changed) {
    const b = before.get(id)!.match;
    const a = now.get(id)!.match;
    const was = [...(b ? (beforeCompany.get(b) ?? []) : [])].filter((x) => x !== id);
    const is = a ? (afterCompany.get(a) ?? new Set<string>()) : new Set<string>();
    const made = [...is].some((x) => x !== id && !was.includes(x));
    const broken = was.some((x) => !is.has(x));
    if (!made && !broken) continue; // a new id for the same company (cannot happen today; not a change of links)
    if (made) report.made++;
    if (broken) report.broken++;
    if (report.changes.length < sample) report.changes.push({ source: id, before: b, after: a, change: made && broken ? 'moved' : made ? 'linked' : 'unlinked' });
  }
  for (const id of ids) {
    const b = before.get(id)!.review;
    const a = now.get(id)!.review;
    if (!b.size && a.size) report.review.sent++;
    if (b.size && !a.size) report.review.left++;
    for (const g of [...a].sort()) if (!b.has(g) && report.reviewChanges.length < sample) report.reviewChanges.push({ source: id, golden: g, change: 'opened' });
    for (const g of [...b].sort()) if (!a.has(g) && report.reviewChanges.length < sample) report.reviewChanges.push({ source: id, golden: g, change: 'closed' });
  }
}
