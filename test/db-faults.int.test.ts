/**
 * The hub's database handle under faults (hub/db.ts), on the machine's PostgreSQL:
 * - a session killed by the server while its transaction runs (what a fast shutdown does to every
 *   session: 57P01) fails that transaction, never the process, and the pool goes on;
 * - code called from inside a transaction never waits for a second pool connection (the wedge of
 *   issue 18: a lock holder waiting for a connection that the lock's waiters hold);
 * - a lock wait is bounded: a transaction queued behind a holder that never ends fails with
 *   55P03 and can be retried, instead of holding its connection (and its job's partition) forever.
 */
import pg from 'pg';
import { openHubDb } from '../hub/db';
import type { HubDb } from '../hub/sql';
import { createTestDatabase, dropTestDatabase } from './support/hub';

let url: string;
let admin: pg.Client;

beforeAll(async () => {
  url = await createTestDatabase('dbfaults');
  admin = new pg.Client({ connectionString: url });
  await admin.connect();
});

afterAll(async () => {
  await admin.end();
  await dropTestDatabase(url);
});

async function withDb<T>(options: Parameters<typeof openHubDb>[0], work: (db: HubDb) => Promise<T>): Promise<T> {
  const db = await openHubDb(options);
  try {
    return await work(db);
  } finally {
    await db.close();
  }
}

test('a session terminated inside a transaction fails that transaction only; the process and the pool go on', async () => {
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  try {
    await withDb({ databaseUrl: url, poolSize: 2 }, async (db) => {
      const failed = db.transaction(async (tx) => {
        const pid = (await tx.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows[0]!.pid;
        // What `pg_ctl stop -m fast` does to every session: terminate it with 57P01.
        await admin.query(`SELECT pg_terminate_backend($1)`, [pid]);
        await tx.query(`SELECT pg_sleep(5)`);
      });
      // Which words depend on timing: the server's 57P01 reached the next query, or pg had already
      // marked the client broken ("has encountered a connection error"). Either way, this transaction fails.
      await expect(failed).rejects.toThrow(/terminat|connection error/i);
      // The broken client was destroyed, not handed out again: both connections work.
      const rows = await Promise.all([db.query<{ one: number }>(`SELECT 1 AS one`), db.query<{ one: number }>(`SELECT 1 AS one`)]);
      expect(rows.map((r) => r.rows[0]!.one)).toEqual([1, 1]);
      await expect(db.transaction((tx) => tx.query(`SELECT 1`))).resolves.toBeDefined();
    });
  } finally {
    process.off('uncaughtException', onUncaught);
  }
  expect(uncaught).toEqual([]);
});

test('a query on the handle from inside a transaction runs in that transaction, so a lock holder never waits for the pool', async () => {
  await withDb({ databaseUrl: url, poolSize: 2 }, async (db) => {
    await db.query(`CREATE TABLE IF NOT EXISTS t_inside (v int)`);
    // The other connection of the pool waits for the lock the transaction holds: before, the
    // holder's db.query would have waited for that connection, and neither would ever end.
    let locked!: () => void;
    const hasLock = new Promise<void>((resolve) => (locked = resolve));
    let waiterQueued!: () => void;
    const queued = new Promise<void>((resolve) => (waiterQueued = resolve));
    const holder = db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(991)`);
      await tx.query(`INSERT INTO t_inside VALUES (1)`);
      locked();
      await queued;
      const seen = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM t_inside`);
      const viaDerived = await db.derived.query<{ n: number }>(`SELECT count(*)::int AS n FROM t_inside`);
      return [seen.rows[0]!.n, viaDerived.rows[0]!.n];
    });
    await hasLock;
    // Started here, outside the holder's callback: a transaction of its own, on the pool's other connection.
    const waiter = db.transaction((other) => other.query(`SELECT pg_advisory_xact_lock(991)`));
    const waiting = async () =>
      (await admin.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 991 AND NOT granted`)).rows[0].n === 1;
    while (!(await waiting())) await new Promise((r) => setTimeout(r, 20));
    waiterQueued();
    // Both reads saw the uncommitted row: they ran inside the transaction.
    await expect(holder).resolves.toEqual([1, 1]);
    await waiter;
  });
});

test('transactionWithReader takes both connections before BEGIN; the reader sees committed data only', async () => {
  await withDb({ databaseUrl: url, poolSize: 2 }, async (db) => {
    await db.query(`CREATE TABLE IF NOT EXISTS t_reader (v int)`);
    const counts = await db.transactionWithReader(async (tx, reader) => {
      await tx.query(`INSERT INTO t_reader VALUES (1)`);
      const [inTx, beside] = await Promise.all([
        tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM t_reader`),
        reader.query<{ n: number }>(`SELECT count(*)::int AS n FROM t_reader`),
      ]);
      return [inTx.rows[0]!.n, beside.rows[0]!.n];
    });
    expect(counts).toEqual([1, 0]);
  });
});

test('a lock wait is bounded: behind a holder that never lets go, the transaction fails with 55P03', async () => {
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  try {
    await holder.query(`BEGIN`);
    await holder.query(`SELECT pg_advisory_xact_lock(992)`);
    await withDb({ databaseUrl: url, poolSize: 2, timeouts: { lockMs: 500 } }, async (db) => {
      const started = Date.now();
      const waited = db.transaction((tx) => tx.query(`SELECT pg_advisory_xact_lock(992)`));
      await expect(waited).rejects.toMatchObject({ code: '55P03' });
      expect(Date.now() - started).toBeLessThan(30_000);
      // And the connection it used is good for the next transaction.
      await expect(db.transaction((tx) => tx.query(`SELECT 1`))).resolves.toBeDefined();
    });
  } finally {
    await holder.query(`ROLLBACK`);
    await holder.end();
  }
});

test('a transaction left idle by its caller is ended by the server, and its locks released', async () => {
  await withDb({ databaseUrl: url, poolSize: 2, timeouts: { idleInTransactionMs: 500 } }, async (db) => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const stuck = db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(993)`);
      await gate; // the caller waits on something outside the database (a bug, a hung peer)
      await tx.query(`SELECT 1`);
    });
    stuck.catch(() => undefined);
    // Another session gets the lock once the server has ended the idle one.
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    try {
      await other.query(`SET lock_timeout = '30s'`);
      await other.query(`SELECT pg_advisory_lock(993)`);
      await other.query(`SELECT pg_advisory_unlock(993)`);
    } finally {
      await other.end();
    }
    release();
    await expect(stuck).rejects.toThrow();
  });
});
