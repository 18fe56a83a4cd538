/**
 * The hub's database handle: PostgreSQL through `pg` in production and tests, PGlite (the same
 * PostgreSQL, compiled to WebAssembly, in-process, no fsync) as the embedded demo default. Both run
 * the same SQL; this module hides only how a query and a transaction are issued.
 */
import { mkdirSync } from 'node:fs';
import pg from 'pg';
import { migrate } from './migrations';

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Sql {
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<T>>;
}

export interface HubDb extends Sql {
  readonly kind: 'postgres' | 'pglite';
  transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

// bigint ids and counts come back as JS numbers (ids stay far below 2^53).
pg.types.setTypeParser(20, (v) => Number(v));

class PostgresDb implements HubDb {
  readonly kind = 'postgres' as const;
  constructor(private readonly pool: pg.Pool) {}

  async query<T>(text: string, params?: unknown[]): Promise<QueryResult<T>> {
    const result = await this.pool.query(text, params as unknown[]);
    return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
  }

  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const tx: Sql = {
        query: async <R>(text: string, params?: unknown[]) => {
          const result = await client.query(text, params as unknown[]);
          return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
        },
      };
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
    await this.pool.end();
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
  constructor(private readonly lite: PGliteLike) {}

  private static wrap<T>(result: { rows: T[]; affectedRows?: number }): QueryResult<T> {
    const rows = result.rows.map((r) => normaliseRow(r as Record<string, unknown>) as T);
    return { rows, rowCount: result.affectedRows ?? rows.length };
  }

  async query<T>(text: string, params?: unknown[]): Promise<QueryResult<T>> {
    return PgliteDb.wrap(await this.lite.query<T>(text, params));
  }

  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    return this.lite.transaction(async (inner) => work({ query: async <R>(text: string, params?: unknown[]) => PgliteDb.wrap(await inner.query<R>(text, params)) }));
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
    // An idle client losing its server must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    db = new PostgresDb(pool);
  } else {
    const { PGlite } = await import('@electric-sql/pglite');
    const dir = options.dataDir ?? '.yilian';
    mkdirSync(dir, { recursive: true });
    db = new PgliteDb((await PGlite.create(`${dir}/pglite`)) as unknown as PGliteLike);
  }
  await migrate(db);
  return db;
}
