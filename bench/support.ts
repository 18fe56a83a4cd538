/** Shared by the benchmarks: a hub on the machine's PostgreSQL and Redis, and percentiles. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { parseConfig } from '../hub/config';
import { openRuntime, type Runtime } from '../cli/runtime';
import { clusterTarget } from '../hub/redis';

export const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** `redisUrl` may name a Redis Cluster (`redis+cluster://…`): the prefix then gets a hash tag. */
export async function benchHub(label: string, members: unknown[] = [], redisUrl = REDIS_URL): Promise<{ runtime: Runtime; databaseUrl: string; prefix: string; close(): Promise<void> }> {
  const name = `yilian_bench_${label}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const databaseUrl = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  const tag = `bench-${randomBytes(3).toString('hex')}`;
  const prefix = clusterTarget(redisUrl) ? `{${tag}}` : tag;
  const config = parseConfig({ members, databaseUrl, redisUrl, pipeline: { queuePrefix: prefix } });
  const runtime = await openRuntime(config, { log: () => undefined });
  return {
    runtime,
    databaseUrl,
    prefix,
    async close() {
      // The benchmark's queues (jobs no worker took, e.g. in the MLLP benchmark) go with it.
      await runtime.queues.removeAllKeys();
      await runtime.close();
      const a = new pg.Client({ connectionString: PG_ADMIN_URL });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}
