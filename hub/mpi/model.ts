/**
 * The match model the index scores with: the stored one (`yilian mpi train`, table `mpi_model`),
 * else the built-in one; scaled to the population, and cached per hub for the pipeline's link, which
 * must not read it for every message. Training stores a new model and drops the cache.
 */
import type { HubDb, Sql } from '../sql';
import { featuresOf } from './features';
import { modelForPopulation, trainModel, type MatchModel } from './matcher';
import { recordOfSource, SOURCE_SELECT, type SourceRow } from './sourceRecord';
import defaultModelJson from './defaultModel.json';

/** The stored model (yilian mpi train), else the built-in one trained on the Chinese generator. */
export async function loadModel(sql: Sql): Promise<MatchModel> {
  const stored = await sql.query<{ model: MatchModel }>(`SELECT model FROM mpi_model WHERE id = 1`);
  return stored.rows[0]?.model ?? (defaultModelJson as unknown as MatchModel);
}

/**
 * The model scaled to the population (the prior depends on it). One message must not count a
 * million rows: above 10,000 source patients the planner's estimate is close enough (the prior
 * moves with the logarithm of the population).
 */
export async function populationModel(db: HubDb, tx: Sql): Promise<MatchModel> {
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

/** Train the model on this hub's own source patients and store it. */
export async function trainStoredModel(db: HubDb): Promise<MatchModel> {
  const rows = await db.query<SourceRow>(`${SOURCE_SELECT} WHERE sp.merged_into IS NULL`);
  const model = trainModel(rows.rows.map((r) => featuresOf(recordOfSource(r))));
  await db.query(`INSERT INTO mpi_model (id, model) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET model = excluded.model, trained_at = clock_timestamp()`, [JSON.stringify(model)]);
  modelCache.delete(db);
  return model;
}
