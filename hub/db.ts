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

/**
 * Bounds on every wait of a pooled connection, so that no fault (a lock holder that never ends, a
 * server that vanished without a reset, a pool used up) stops the hub: the statement fails, the
 * message is NAKed or its job retried, and the process goes on. Server side: a statement, a lock
 * wait (advisory locks included) and a transaction left idle are cut by PostgreSQL itself; client
 * side: waiting for a free pool connection, and for any answer at all from the socket.
 */
export interface DbTimeouts {
  statementMs: number;
  lockMs: number;
  idleInTransactionMs: number;
  connectMs: number;
}

export const DEFAULT_DB_TIMEOUTS: DbTimeouts = {
  // A sync round or a bulk merge of thousands of rows stays well under this; anything longer is stuck.
  statementMs: 120_000,
  // A pipeline job waiting this long for the patient index's lock fails and is retried later
  // instead of holding its partition (and a pool connection) behind a stuck holder.
  lockMs: 30_000,
  idleInTransactionMs: 60_000,
  connectMs: 15_000,
};

/** A pooled client checked out for a transaction, and whether that transaction is still running. */
interface OpenTransaction {
  sql: Sql;
  open: boolean;
}

class PostgresDb implements HubDb {
  readonly kind = 'postgres' as const;
  readonly derived: Sql;
  /**
   * The transaction whose callback is running, per async context. A query on the db handle (or on
   * `derived`), or a nested transaction, from inside a transaction's callback runs inside that
   * transaction — as on PGlite — instead of waiting for a second pool connection: with the pool
   * used up by callers queued on a lock this transaction holds, that wait would never end (the
   * wedge of issue 18: a sync holding the patient index's lock waited for a connection held by
   * pipeline jobs waiting for the lock).
   */
  private readonly current = new AsyncLocalStorage<OpenTransaction>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly derivedPool: pg.Pool,
  ) {
    this.derived = {
      query: (text, params, prepared) => {
        const tx = this.enclosing();
        return tx ? tx.query(text, params, prepared) : PostgresDb.run(this.derivedPool, text, params, prepared);
      },
    };
  }

  private static async run<T>(on: pg.Pool | pg.PoolClient, text: string, params?: unknown[], prepared?: string): Promise<QueryResult<T>> {
    const result = await on.query(prepared ? { name: prepared, text, values: params as unknown[] } : { text, values: params as unknown[] });
    return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
  }

  private enclosing(): Sql | undefined {
    const tx = this.current.getStore();
    return tx?.open ? tx.sql : undefined;
  }

  query<T>(text: string, params?: unknown[], prepared?: string): Promise<QueryResult<T>> {
    const tx = this.enclosing();
    return tx ? tx.query<T>(text, params, prepared) : PostgresDb.run<T>(this.pool, text, params, prepared);
  }

  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    const enclosing = this.enclosing();
    if (enclosing) return work(enclosing);
    const client = await this.pool.connect();
    return this.runTransaction(client, work);
  }

  async transactionWithReader<T>(work: (tx: Sql, reader: Sql) => Promise<T>): Promise<T> {
    const enclosing = this.enclosing();
    if (enclosing) return work(enclosing, enclosing);
    // Both connections are taken before the transaction begins (and so before any lock it takes).
    const client = await this.pool.connect();
    let readerClient: pg.PoolClient;
    try {
      readerClient = await this.pool.connect();
    } catch (error) {
      client.release();
      throw error;
    }
    const readerFailed = watch(readerClient);
    const reader: Sql = { query: (text, params, prepared) => PostgresDb.run(readerClient, text, params, prepared) };
    try {
      return await this.runTransaction(client, (tx) => work(tx, reader));
    } finally {
      readerFailed.stop();
      readerClient.release(readerFailed.error);
    }
  }

  /**
   * BEGIN … COMMIT on a checked-out client, released on every path. A client that failed (its
   * server went away: 57P01 on a fast shutdown, a reset socket) is destroyed, not returned to the
   * pool, and its 'error' event is handled while it is checked out — pg emits it there, and
   * unhandled it would end the process.
   */
  private async runTransaction<T>(client: pg.PoolClient, work: (tx: Sql) => Promise<T>): Promise<T> {
    const failed = watch(client);
    const open: OpenTransaction = { sql: { query: (text, params, prepared) => PostgresDb.run(client, text, params, prepared) }, open: true };
    try {
      await client.query('BEGIN');
      const value = await this.current.run(open, () => work(open.sql));
      await client.query('COMMIT');
      return value;
    } catch (error) {
      // A failed ROLLBACK means the connection is broken: it is destroyed below, and the server
      // ends the transaction with the session.
      await client.query('ROLLBACK').catch((rollbackError: Error) => (failed.error ??= rollbackError));
      throw error;
    } finally {
      open.open = false;
      failed.stop();
      client.release(failed.error);
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.derivedPool.end()]);
  }
}

/** Handles a checked-out client's 'error' events, and remembers the first so the client is destroyed on release. */
function watch(client: pg.PoolClient): { error?: Error; stop(): void } {
  const state: { error?: Error; stop(): void } = {
    stop: () => client.off('error', onError),
  };
  const onError = (error: Error) => {
    state.error ??= error;
  };
  client.on('error', onError);
  return state;
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

  /** One connection: the reader is the transaction itself. */
  transactionWithReader<T>(work: (tx: Sql, reader: Sql) => Promise<T>): Promise<T> {
    return this.transaction((tx) => work(tx, tx));
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
  timeouts?: Partial<DbTimeouts>;
}

/** Open the hub store and bring its schema up to date (forward-only migrations). */
export async function openHubDb(options: OpenDbOptions): Promise<HubDb> {
  let db: HubDb;
  if (options.databaseUrl) {
    const t = { ...DEFAULT_DB_TIMEOUTS, ...options.timeouts };
    const bounded = `-c statement_timeout=${t.statementMs} -c lock_timeout=${t.lockMs} -c idle_in_transaction_session_timeout=${t.idleInTransactionMs}`;
    const poolOptions: pg.PoolConfig = {
      connectionString: options.databaseUrl,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: t.connectMs,
      // The server's statement_timeout cannot fire if the server is gone without a reset (a
      // pulled cable, a frozen VM): the client gives up a little after it would have.
      query_timeout: t.statementMs + 10_000,
      keepAlive: true,
    };
    const pool = new pg.Pool({ ...poolOptions, options: bounded });
    const derivedPool = new pg.Pool({ ...poolOptions, options: `${bounded} -c synchronous_commit=off` });
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
