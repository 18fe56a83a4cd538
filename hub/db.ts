/**
 * The hub's database handle: PostgreSQL through `pg` in production and tests, PGlite (the same
 * PostgreSQL, compiled to WebAssembly, in-process, no fsync) as the embedded demo default. Both run
 * the same SQL; this module hides only how a query and a transaction are issued.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import pg from 'pg';
import { migrate } from './migrations';
import type { HubDb, QueryResult, Sql } from './sql';

// bigint ids and counts come back as JS numbers (ids stay far below 2^53).
pg.types.setTypeParser(20, (v) => Number(v));

class PostgresDb implements HubDb {
  readonly kind = 'postgres' as const;
  readonly derived: Sql;

  constructor(
    private readonly pool: pg.Pool,
    private readonly derivedPool: pg.Pool,
  ) {
    this.derived = { query: (text, params, prepared) => PostgresDb.run(this.derivedPool, text, params, prepared) };
  }

  private static async run<T>(on: pg.Pool | pg.PoolClient, text: string, params?: unknown[], prepared?: string): Promise<QueryResult<T>> {
    const result = await on.query(prepared ? { name: prepared, text, values: params as unknown[] } : { text, values: params as unknown[] });
    return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
  }

  query<T>(text: string, params?: unknown[], prepared?: string): Promise<QueryResult<T>> {
    return PostgresDb.run<T>(this.pool, text, params, prepared);
  }

  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const tx: Sql = { query: (text, params, prepared) => PostgresDb.run(client, text, params, prepared) };
      const value = await work(tx);
      await client.query('COMMIT');
      return value;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.derivedPool.end()]);
  }
}

/** PGlite returns bytea as Uint8Array and int8 as bigint; normalise to what `pg` returns. */
function normaliseRow(row: Record<string, unknown>): Record<string, unknown> {
  for (const key of Object.keys(row)) {
    const value = row[key];
    if (value instanceof Uint8Array && !Buffer.isBuffer(value)) row[key] = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    else if (typeof value === 'bigint') row[key] = Number(value);
  }
  return row;
}

type PGliteLike = {
  query<T>(text: string, params?: unknown[]): Promise<{ rows: T[]; affectedRows?: number }>;
  transaction<T>(work: (tx: { query<R>(text: string, params?: unknown[]): Promise<{ rows: R[]; affectedRows?: number }> }) => Promise<T>): Promise<T>;
  close(): Promise<void>;
};

class PgliteDb implements HubDb {
  readonly kind = 'pglite' as const;
  /** PGlite has no fsync to skip: derived writes go through the same handle. */
  readonly derived: Sql = this;
  constructor(private readonly lite: PGliteLike) {}

  private static wrap<T>(result: { rows: T[]; affectedRows?: number }): QueryResult<T> {
    const rows = result.rows.map((r) => normaliseRow(r as Record<string, unknown>) as T);
    // PGlite reports affectedRows 0 for a SELECT; node-postgres's rowCount is the rows returned there.
    return { rows, rowCount: rows.length > 0 ? Math.max(rows.length, result.affectedRows ?? 0) : (result.affectedRows ?? 0) };
  }

  /**
   * The transaction whose callback is running, per async context. PGlite has one connection, which
   * an open transaction holds until it ends: code written for a pool (a read through the db handle,
   * or a nested transaction, from inside a transaction's callback) would wait for it forever. Here
   * such a query runs inside that transaction, and a nested transaction becomes part of it.
   */
  private readonly current = new AsyncLocalStorage<Sql>();

  async query<T>(text: string, params?: unknown[]): Promise<QueryResult<T>> {
    const tx = this.current.getStore();
    if (tx) return tx.query<T>(text, params);
    return PgliteDb.wrap(await this.lite.query<T>(text, params));
  }

  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    const enclosing = this.current.getStore();
    if (enclosing) return work(enclosing);
    return this.lite.transaction(async (inner) => {
      const tx: Sql = { query: async <R>(text: string, params?: unknown[]) => PgliteDb.wrap(await inner.query<R>(text, params)) };
      return this.current.run(tx, () => work(tx));
    });
  }

  async close(): Promise<void> {
    await this.lite.close();
  }
}

export interface OpenDbOptions {
  /** postgres://… ; when absent, PGlite in `dataDir`. */
  databaseUrl?: string;
  dataDir?: string;
  /** Pool size per process for PostgreSQL. */
  poolSize?: number;
}

/** Open the hub store and bring its schema up to date (forward-only migrations). */
export async function openHubDb(options: OpenDbOptions): Promise<HubDb> {
  let db: HubDb;
  if (options.databaseUrl) {
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolSize ?? 10 });
    const derivedPool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolSize ?? 10, options: '-c synchronous_commit=off' });
    // An idle client losing its server must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    derivedPool.on('error', () => undefined);
    db = new PostgresDb(pool, derivedPool);
  } else {
    const { PGlite } = await import('@electric-sql/pglite');
    const dir = options.dataDir ?? '.yilian';
    mkdirSync(dir, { recursive: true });
    db = new PgliteDb((await PGlite.create(`${dir}/pglite`)) as unknown as PGliteLike);
  }
  await migrate(db);
  return db;
}
