/**
 * One matching transaction of the patient index (a sync's round, the pipeline's link of a changed
 * identity): the exclusive lock of the index's writers, what a run carries, matching a source
 * patient one by one (`matchSource`: known sources, member merges, re-matches), and the end of
 * every run (`finishRun`). Sources new to the index are matched in bulk (newSources.ts).
 *
 * Rules it keeps: a MANUAL link is never changed by the matcher; a manual not-link keeps that
 * source away from that golden patient on every re-match; a member's own merge (ADT
 * A34/A39/A40/A47, `merged_into`) links the retired number to the survivor's golden patient.
 */
import type { Sql } from '../sql';
import type { BlockCache } from './blockCache';
import { blockingKeys, featuresOf, type PersonFeatures, type PersonRecord } from './features';
import { bridgedGoldens, decide, mayJoin, reviewAlternatives, scorePair, type Candidate, type MatchDecision, type MatchModel } from './matcher';
import { carriersOf, countSharedValues, withSharedCounts, type CrossedValue } from './sharedValues';
import { createGolden, history, mergeGolden, refreshGoldens, retireEmpty, setLink, type LinkMode, type LinkState } from './golden';
import { RECORD_VERSION, recordOfSource, SOURCE_SELECT, type SourceRow } from './sourceRecord';

export const LOCK = 7317005;
const MAX_CANDIDATES = 500;

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
export interface MatchRun {
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
export async function lockIndex(tx: Sql): Promise<bigint> {
  await tx.query(`SELECT pg_advisory_xact_lock(${LOCK})`);
  return BigInt((await tx.query<{ n: string }>(`SELECT nextval('mpi_index_writes')::text AS n`)).rows[0]!.n);
}

export async function matchSource(tx: Sql, model: MatchModel, row: SourceRow, run: MatchRun): Promise<void> {
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
    `INSERT INTO mpi_source (member_id, mrn, record, block_keys, patient_resource_id, event_time, source_updated_at, record_version)
     VALUES ($1, $2, $3, $4, $5, $6, $7, ${RECORD_VERSION})
     ON CONFLICT (member_id, mrn) DO UPDATE SET record = excluded.record, block_keys = excluded.block_keys, patient_resource_id = coalesce(excluded.patient_resource_id, mpi_source.patient_resource_id),
       event_time = excluded.event_time, source_updated_at = excluded.source_updated_at, matched_at = clock_timestamp(), record_version = excluded.record_version`,
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
  // Review items: the golden patient proposed, and the others it possibly matches (`reviewAlternatives`).
  const proposals = decision.outcome === 'POSSIBLE_MATCH' && decision.goldenId ? [{ goldenId: decision.goldenId, why: explanation }] : [];
  for (const alt of reviewAlternatives(decision)) proposals.push({ goldenId: alt.goldenId, why: { rule: alt.rule, score: alt.weight, breakdown: { against: alt.candidateId, outcome: alt.outcome, fields: alt.fields } } });
  await tx.query(`DELETE FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND state = 'POSSIBLE_MATCH' AND mode = 'AUTO' AND NOT (golden_id = ANY($3::text[]))`, [row.member_id, row.mrn, proposals.map((p) => p.goldenId)]);
  for (const p of proposals) {
    if (p.goldenId === golden || links.some((l) => l.golden_id === p.goldenId && l.mode === 'MANUAL')) continue;
    await setLink(tx, row.member_id, row.mrn, p.goldenId, 'POSSIBLE_MATCH', 'AUTO', p.why);
    summary.review++;
  }
  return golden;
}

/**
 * The end of every matching transaction: links made on values that just became shared are looked
 * at again, golden patients a record bridged are joined, and the survivorship of every golden
 * patient touched is recomputed.
 */
export async function finishRun(tx: Sql, model: MatchModel, crossed: CrossedValue[], run: MatchRun): Promise<void> {
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

/**
 * A blocking key with this many sources is full: no longer a source of candidates (a key that
 * common says little — 张伟 has thousands of holders, and the first hundred are no better
 * candidates than any other). Measured in memory at 200,000 generated records:
 * comparisons per record 20.9 → 12.6, time −40 %, recall 0.9951 → 0.9946, precision unchanged.
 */
export const BLOCK_CAP = 100;

export async function candidatesFor(tx: Sql, keys: string[], memberId: string, mrn: string, excluded: Set<string>): Promise<Candidate[]> {
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

export function explain(decision: MatchDecision): { rule?: string; score: number | null; breakdown: Record<string, unknown> } {
  const best = decision.best;
  if (!best) return { score: null, breakdown: {} };
  return {
    rule: best.rule ?? (decision.outcome === 'MATCH' ? 'fellegi-sunter' : undefined),
    score: best.weight,
    breakdown: { against: best.candidateId, probability: best.probability, outcome: best.outcome, fields: best.fields, alternatives: decision.alternatives },
  };
}
