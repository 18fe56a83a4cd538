/**
 * The match model the index scores with: the stored one (`yilian mpi train`, table `mpi_model`),
 * else the built-in one; scaled to the population. Every matching transaction (the sync's rounds,
 * the pipeline's link, a review's re-match, `yilian mpi rematch`) asks `activeModel`, which reads
 * only the stored row's version and training time and reuses a copy of the model while they stay
 * the same: a model stored by any process is the one all processes match with from their next
 * transaction on, without reading the model itself for every message.
 */
import type { HubDb, Sql } from '../sql';
import { featuresOf } from './features';
import { modelForPopulation, trainModel, type MatchModel } from './matcher';
import { recordOfSource, SOURCE_SELECT, type SourceRow } from './sourceRecord';
import defaultModelJson from './defaultModel.json';

const BUILT_IN = defaultModelJson as unknown as MatchModel;

/** The model matching uses now, and which one it is (version 0: the built-in one, nothing stored). */
export interface ActiveModel {
  model: MatchModel;
  version: number;
  /** When `yilian mpi train` stored it (PostgreSQL's text, to the microsecond); null for the built-in model. */
  trainedAt: string | null;
  builtIn: boolean;
}

/**
 * Copies of stored models, by their row's version and training time (a process may serve several
 * hubs: tests do, and each hub's version 1 is another model). A few entries: a new one comes only
 * with a new training.
 */
const copies = new Map<string, MatchModel>();
const COPIES = 8;

export async function activeModel(sql: Sql): Promise<ActiveModel> {
  const row = (await sql.query<{ version: number; trained_at: string }>(`SELECT version, trained_at::text AS trained_at FROM mpi_model WHERE id = 1`, [], 'mpi_model_version')).rows[0];
  if (!row) return { model: BUILT_IN, version: 0, trainedAt: null, builtIn: true };
  const key = `${row.version}|${row.trained_at}`;
  let model = copies.get(key);
  if (!model) {
    // Read by the same key: a training that committed between the two reads is met next time.
    const stored = (await sql.query<{ model: MatchModel }>(`SELECT model FROM mpi_model WHERE id = 1 AND version = $1 AND trained_at::text = $2`, [row.version, row.trained_at])).rows[0];
    if (!stored) return activeModel(sql);
    model = completed(stored.model);
    if (copies.size >= COPIES) copies.delete(copies.keys().next().value!);
    copies.set(key, model);
  }
  return { model, version: Number(row.version), trainedAt: row.trained_at, builtIn: false };
}

/**
 * A model stored before the matcher compared a field has no parameters for it: that field weighs
 * as the built-in model says until the hub trains again (scoring a field without parameters threw).
 */
function completed(model: MatchModel): MatchModel {
  const missing = Object.keys(BUILT_IN.fields).filter((f) => !(f in model.fields));
  return missing.length ? { ...model, fields: { ...BUILT_IN.fields, ...model.fields } } : model;
}

/** The active model (see `activeModel`). */
export async function loadModel(sql: Sql): Promise<MatchModel> {
  return (await activeModel(sql)).model;
}

/**
 * The model scaled to the population (the prior depends on it). One message must not count a
 * million rows: above 10,000 source patients the planner's estimate is close enough (the prior
 * moves with the logarithm of the population).
 */
export async function populationModel(_db: HubDb, tx: Sql): Promise<MatchModel> {
  const estimate = Number((await tx.query<{ n: number }>(`SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = 'source_patient'::regclass`)).rows[0]?.n ?? 0);
  const population = estimate > 10_000 ? estimate : Number((await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM source_patient`)).rows[0]!.n);
  return modelForPopulation(await loadModel(tx), population);
}

/**
 * Train the model on this hub's own source patients and store it as the next version. Existing
 * links stay as they were made until `yilian mpi rematch` applies it to them (hub/mpi/rematch.ts);
 * new and changed sources are matched with it at once.
 */
export async function trainStoredModel(db: HubDb): Promise<ActiveModel> {
  const rows = await db.query<SourceRow>(`${SOURCE_SELECT} WHERE sp.merged_into IS NULL`);
  const model = trainModel(rows.rows.map((r) => featuresOf(recordOfSource(r))));
  const stored = await db.query<{ version: number; trained_at: string }>(
    `INSERT INTO mpi_model (id, model, version) VALUES (1, $1, 1)
     ON CONFLICT (id) DO UPDATE SET model = excluded.model, trained_at = clock_timestamp(), version = mpi_model.version + 1
     RETURNING version, trained_at::text AS trained_at`,
    [JSON.stringify(model)],
  );
  return { model, version: Number(stored.rows[0]!.version), trainedAt: stored.rows[0]!.trained_at, builtIn: false };
}
