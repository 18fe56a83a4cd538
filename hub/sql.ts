/**
 * What the hub asks of its database: a query, a transaction, and a handle for re-derivable writes.
 * The two implementations (PostgreSQL through `pg`, PGlite embedded) live in db.ts; this contract is
 * apart from them so that the migrations, which db.ts runs, need not import db.ts back.
 */
export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Sql {
  /**
   * `prepared`: a statement name for hot queries — PostgreSQL parses and plans it once per
   * connection instead of on every call (the name must always go with the same text).
   */
  query<T = Record<string, unknown>>(text: string, params?: unknown[], prepared?: string): Promise<QueryResult<T>>;
}

export interface HubDb extends Sql {
  readonly kind: 'postgres' | 'pglite';
  /**
   * For writes that can be re-derived from the raw store (pipeline results): its commits do not
   * wait for the WAL flush (synchronous_commit off). A crash loses at most the last few hundred
   * milliseconds of them — the messages stay `queued` and are run again — never a raw message.
   */
  readonly derived: Sql;
  /**
   * Inside `work`, a query on this handle (or `derived`), or a nested transaction, is part of the
   * transaction: code called from a transaction never waits for a second connection.
   */
  transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T>;
  /**
   * A transaction and, beside it, a second connection for reads that run while the transaction
   * writes (a sync's round: blocks read ahead while the last batch is written). Both connections
   * are taken before BEGIN, so a transaction holding a lock never waits for a connection.
   */
  transactionWithReader<T>(work: (tx: Sql, reader: Sql) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
