/**
 * Sources new to the index (an initial load, new registrations), matched in bulk: blocks read into
 * the run's copy (blockCache.ts), scoring in JavaScript only, and all it decided written in one
 * statement — three steps, so that a sync can overlap them (sync.ts). Must never be given a source
 * already in the index or merged by its member: those go one by one (matchRun.ts `matchSource`).
 */
import { randomUUID } from 'node:crypto';
import type { Sql } from '../sql';
import { blockingKeys, featuresOf, type PersonFeatures, type PersonRecord } from './features';
import { bridgedGoldens, decide, reviewAlternatives, type Candidate, type MatchModel } from './matcher';
import { BULK_RECORDS, countSharedValues, withSharedCounts } from './sharedValues';
import { survivorship } from './survivorship';
import { RECORD_VERSION, recordOfSource, type SourceRow } from './sourceRecord';
import { BLOCK_CAP, explain, type MatchRun } from './matchRun';

/** A source patient new to the index, as its bulk matching carries it. */
export interface NewSource {
  row: SourceRow;
  record: PersonRecord;
  features: PersonFeatures;
  keys: string[];
}

export function newSources(rows: SourceRow[]): NewSource[] {
  return rows.map((row) => {
    const record = recordOfSource(row);
    const features = featuresOf(record);
    return { row, record, features, keys: blockingKeys(features) };
  });
}

/** Sources new to the index, in bulk: candidates from the run's block copy, whatever keys it lacks read in one query. */
export async function matchNewSources(tx: Sql, model: MatchModel, rows: SourceRow[], run: MatchRun): Promise<void> {
  const items = newSources(rows);
  if (!items.length) return;
  await writeNewSources(tx, scoreNewSources(await readBlocks(tx, tx, model, items, run), items, run), run);
}

/**
 * Before new sources are scored: count their shared values (they are part of the population they
 * are matched in), read the blocks of their keys the run's copy lacks, and return the model with
 * the counts of the values they and their candidates state.
 */
export async function readBlocks(tx: Sql, reader: Sql, model: MatchModel, items: NewSource[], run: MatchRun): Promise<MatchModel> {
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
export function scoreNewSources(model: MatchModel, sources: NewSource[], run: MatchRun): ScoredSources {
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
    for (const alt of reviewAlternatives(decision)) proposals.push({ goldenId: alt.goldenId, rule: alt.rule ?? null, score: alt.weight, breakdown: { against: alt.candidateId, outcome: alt.outcome, fields: alt.fields } });
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
export function writeNewSources(tx: Sql, scored: ScoredSources, run: MatchRun): Promise<unknown> {
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
       INSERT INTO mpi_source (member_id, mrn, record, block_keys, patient_resource_id, event_time, source_updated_at, record_version)
       SELECT x.member_id, x.mrn, x.record, x.block_keys, x.patient_resource_id, x.event_time, x.source_updated_at, ${RECORD_VERSION}
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
