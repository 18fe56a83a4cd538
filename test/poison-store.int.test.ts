/**
 * Poison input at the raw store (issue rows 3 and 4), on the real PostgreSQL: a NUL in a message
 * that identifies it, or data PostgreSQL refuses, never fails the other messages of its group
 * commit; the poisoned message is stored byte-exact and quarantined with its reason, answered AE;
 * a store that is down still rejects every message at once. And the error classification of
 * hub/pgErrors.ts against errors the server really raises.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { RawIntake, type Inbound, type IntakeResult } from '../adapters/intake';
import { openHubDb } from '../hub/db';
import type { MemberConfig } from '../hub/config';
import { isDataDbError, isTransientDbError } from '../hub/pgErrors';
import type { HubDb } from '../hub/sql';
import { bloodCount, simOru, simPatient } from '../cli/simulate';
import { startTestHub, type TestHub } from './support/hub';
import { PgRelay } from './support/pgRelay';
import { msaOf, quarantineOf, rawRows, segmentOf } from './support/mllp';

const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'lis', kind: 'mllp', port: 0 }] };
const channel = { id: 'lis', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

let hub: TestHub;
let member: MemberConfig;

beforeAll(async () => {
  hub = await startTestHub('poison_store', { members: [memberConfig] });
  member = hub.config.members[0]! as MemberConfig;
});

afterAll(async () => {
  await hub?.close();
});

function good(tag: string, i: number): Buffer {
  return Buffer.from(simOru({ controlId: `${tag}-${i}`, patient: simPatient(i, tag) }, bloodCount), 'utf8');
}

/** A good message with one field poisoned: `edit` rewrites its text. */
function poisoned(tag: string, i: number, edit: (text: string) => string): Buffer {
  return Buffer.from(edit(simOru({ controlId: `${tag}-${i}`, patient: simPatient(i, tag) }, bloodCount)), 'utf8');
}

const inbound = (bytes: Buffer): Inbound => ({ member, channel, bytes });

/** Received in one tick: one group commit (RawIntake batches what arrives before setImmediate). */
function receiveTogether(intake: RawIntake, messages: Buffer[]): Promise<Array<PromiseSettledResult<IntakeResult>>> {
  return Promise.allSettled(messages.map((bytes) => intake.receive(inbound(bytes))));
}

describe('one group commit with poisoned messages among good ones', () => {
  it('NUL in MSH-10, MSH-3, MSH-9 and PID-3: every good one stored and AA, each poisoned one stored byte-exact, quarantined, AE naming the field', async () => {
    const poisons: Array<[string, Buffer]> = [
      ['MSH-10', poisoned('N', 100, (t) => t.replace('|N-100|', '|N-1\u000000|'))],
      ['MSH-3', poisoned('N', 101, (t) => t.replace('MSH|^~\\&|LIS|', 'MSH|^~\\&|L\u0000IS|'))],
      ['MSH-9', poisoned('N', 102, (t) => t.replace('ORU^R01^ORU_R01', 'ORU^R\u000001^ORU_R01'))],
      ['PID-3', poisoned('N', 103, (t) => t.replace('N100103^', 'N100\u0000103^'))],
      ['MSH-10', poisoned('N', 104, (t) => t.replace('|N-104|', '|N-104\\X00\\|'))],
    ];
    const goods = Array.from({ length: 40 }, (_, i) => good('G', i));
    // poisoned ones spread among the good ones
    const messages = [...goods];
    poisons.forEach(([, bytes], k) => messages.splice(k * 9 + 3, 0, bytes));
    const settled = await receiveTogether(hub.runtime.intake, messages);
    await hub.runtime.intake.drain();
    expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
    const results = settled.map((s) => (s as PromiseFulfilledResult<IntakeResult>).value);

    for (const bytes of goods) {
      const r = results[messages.indexOf(bytes)]!;
      expect(r.outcome).toBe('stored');
      expect(r.ackCode).toBe('AA');
    }
    // Arrival order kept: raw ids of the good ones grow with their order of arrival.
    const goodIds = goods.map((b) => results[messages.indexOf(b)]!.rawId);
    expect([...goodIds].sort((a, b) => a - b)).toEqual(goodIds);

    for (const [location, bytes] of poisons) {
      const r = results[messages.indexOf(bytes)]!;
      expect(r).toMatchObject({ outcome: 'quarantined', ackCode: 'AE' });
      expect(r.error).toMatchObject({ code: 'unstorable', location, transient: false });
      const err = segmentOf(r.ack!, 'ERR')!;
      expect(err[2]).toBe(`${location.slice(0, 3)}^1^${location.slice(4)}`);
      expect(err[3]).toBe('102^Data type error^HL70357');
      expect(r.ack!.includes(0)).toBe(false);
      const [row] = await rawRows(hub, 'id = $1', [r.rawId]);
      expect(row!.status).toBe('quarantined');
      expect(Buffer.compare(row!.content, bytes)).toBe(0);
      const [q] = await quarantineOf(hub, r.rawId);
      expect(q).toMatchObject({ stage: 'intake', code: 'unstorable' });
      expect(q!.reason).toContain(location);
    }
    // The derived text columns hold the visible escape; the bytes hold the NUL.
    const msh10 = results[messages.indexOf(poisons[0]![1])]!;
    const [row10] = await rawRows(hub, 'id = $1', [msh10.rawId]);
    expect(row10!.control_id).toBe('N-1\\u000000');
    expect(msaOf(msh10.ack!).controlId).toBe('N-1\\X00\\00');
  });

  it('a resend of a NUL-poisoned message is a duplicate with the same AE (not a new row, not an error)', async () => {
    const bytes = poisoned('R', 1, (t) => t.replace('|R-1|', '|R-\u00001|'));
    const first = await hub.runtime.intake.receive(inbound(bytes));
    const again = await hub.runtime.intake.receive(inbound(bytes));
    expect(first.outcome).toBe('quarantined');
    expect(again).toMatchObject({ outcome: 'duplicate', rawId: first.rawId, ackCode: 'AE' });
    expect(Buffer.compare(again.ack!, first.ack!)).toBe(0);
  });

  it('data PostgreSQL refuses (an MSH-10 too large for the dedupe index, SQLSTATE 54000): the group is split, the good ones AA, the culprit stored quarantined', async () => {
    // Random hex does not compress: the index row stays above btree's 2,704-byte limit.
    const huge = randomBytes(4000).toString('hex');
    const culprit = poisoned('B', 7, (t) => t.replace('|B-7|', `|${huge}|`));
    const goods = Array.from({ length: 30 }, (_, i) => good('B', i + 100));
    const messages = [...goods.slice(0, 11), culprit, ...goods.slice(11)];
    const settled = await receiveTogether(hub.runtime.intake, messages);
    await hub.runtime.intake.drain();
    expect(settled.filter((s) => s.status === 'rejected')).toEqual([]);
    const results = settled.map((s) => (s as PromiseFulfilledResult<IntakeResult>).value);
    for (const bytes of goods) expect(results[messages.indexOf(bytes)]).toMatchObject({ outcome: 'stored', ackCode: 'AA' });
    const goodIds = goods.map((b) => results[messages.indexOf(b)]!.rawId);
    expect([...goodIds].sort((a, b) => a - b)).toEqual(goodIds);
    const r = results[11]!;
    expect(r).toMatchObject({ outcome: 'quarantined', ackCode: 'AE' });
    expect(r.error!.code).toBe('unstorable');
    expect(r.error!.message).toContain('54000');
    const [row] = await rawRows(hub, 'id = $1', [r.rawId]);
    expect(Buffer.compare(row!.content, culprit)).toBe(0);
    expect(row!.control_id.length).toBeLessThanOrEqual(200);
    expect((await quarantineOf(hub, r.rawId))[0]).toMatchObject({ stage: 'intake', code: 'unstorable' });
  });

  it('the `within` path: a refused message is stored quarantined with its work; a throw of the work itself stores nothing and rejects with it', async () => {
    const huge = randomBytes(4000).toString('hex');
    const culprit = poisoned('W', 1, (t) => t.replace('|W-1|', `|${huge}|`));
    const seen: IntakeResult[] = [];
    const result = await hub.runtime.intake.receive(inbound(culprit), async (tx, r) => {
      seen.push(r);
      await tx.query(`SELECT 1`);
    });
    expect(result).toMatchObject({ outcome: 'quarantined', ackCode: 'AE' });
    expect(seen.map((r) => r.outcome)).toEqual(['quarantined']);
    expect(seen[0]!.rawId).toBe(result.rawId);
    const [row] = await rawRows(hub, 'id = $1', [result.rawId]);
    expect(Buffer.compare(row!.content, culprit)).toBe(0);

    const own = new Error('the fix is refused');
    const before = (await rawRows(hub)).length;
    await expect(hub.runtime.intake.receive(inbound(good('W', 2)), async () => Promise.reject(own))).rejects.toBe(own);
    expect((await rawRows(hub)).length).toBe(before);
  });
});

describe('the store is down', () => {
  it('every member of the group is rejected (NAK, resend later) within seconds, none stored, the error transient', async () => {
    const proxy = new PgRelay();
    await proxy.listen();
    const db: HubDb = await openHubDb({ databaseUrl: proxy.urlThrough(hub.databaseUrl), poolSize: 4 });
    const enqueued: number[] = [];
    const intake = new RawIntake(db, { enqueue: async (items) => void enqueued.push(...items.map((i) => i.rawId)) });
    try {
      // Up: stored.
      expect((await intake.receive(inbound(good('D', 0)))).outcome).toBe('stored');
      await proxy.close();
      const t0 = Date.now();
      const settled = await receiveTogether(intake, Array.from({ length: 60 }, (_, i) => good('D', i + 1)));
      const seconds = (Date.now() - t0) / 1000;
      expect(settled.every((s) => s.status === 'rejected')).toBe(true);
      for (const s of settled) expect(isTransientDbError((s as PromiseRejectedResult).reason)).toBe(true);
      // Bounded: one group attempt and one probe, not 60 single attempts.
      expect(seconds).toBeLessThan(10);
      expect(enqueued).toHaveLength(1);
      expect((await rawRows(hub, `control_id LIKE 'D-%'`)).map((r) => r.control_id)).toEqual(['D-0']);
    } finally {
      await db.close().catch(() => undefined);
      await proxy.close().catch(() => undefined);
    }
  });
});

describe('hub/pgErrors.ts classifies what PostgreSQL really raises', () => {
  const clients: pg.Client[] = [];
  async function client(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: hub.databaseUrl });
    c.on('error', () => undefined); // a terminated session reports here too
    await c.connect();
    clients.push(c);
    return c;
  }
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  });
  const failure = (p: Promise<unknown>) => p.then(
    () => {
      throw new Error('expected the statement to fail');
    },
    (error: unknown) => error,
  );

  it('data errors (22021 NUL in text, 22P05 NUL in jsonb, 22P02, 23505, 54000) are permanent', async () => {
    const c = await client();
    await c.query(`CREATE TEMP TABLE t (k text PRIMARY KEY)`);
    await c.query(`INSERT INTO t VALUES ('one')`);
    const errors = [
      await failure(c.query(`SELECT $1::text`, ['a\u0000b'])),
      await failure(c.query(`SELECT $1::jsonb`, [JSON.stringify({ v: 'a\u0000b' })])),
      await failure(c.query(`SELECT 'x'::int`)),
      await failure(c.query(`INSERT INTO t VALUES ('one')`)),
      await failure(c.query(`INSERT INTO t VALUES ($1)`, [randomBytes(4000).toString('hex')])),
    ];
    expect(errors.map((e) => (e as { code: string }).code)).toEqual(['22021', '22P05', '22P02', '23505', '54000']);
    for (const e of errors) {
      expect(isDataDbError(e)).toBe(true);
      expect(isTransientDbError(e)).toBe(false);
    }
  });

  it('statement timeout (57014), lock timeout (55P03), deadlock (40P01), a terminated session (57P01) and a refused connection are transient', async () => {
    const [a, b, c] = [await client(), await client(), await client()];
    const timeout = await failure(a.query(`SET statement_timeout = 50; SELECT pg_sleep(2)`));
    await a.query(`SET statement_timeout = 0`);
    await a.query(`BEGIN; SELECT pg_advisory_xact_lock(99173)`);
    const lock = await failure(b.query(`SET lock_timeout = 50; SELECT pg_advisory_lock(99173)`));
    await a.query(`ROLLBACK`);
    await b.query(`SET lock_timeout = 0`);
    // Deadlock: each holds one lock and waits for the other's.
    await a.query(`BEGIN; SELECT pg_advisory_xact_lock(99174)`);
    await b.query(`BEGIN; SELECT pg_advisory_xact_lock(99175)`);
    const [ra, rb] = await Promise.allSettled([a.query(`SELECT pg_advisory_xact_lock(99175)`), b.query(`SELECT pg_advisory_xact_lock(99174)`)]);
    const deadlock = [ra, rb].find((r) => r.status === 'rejected') as PromiseRejectedResult;
    await a.query(`ROLLBACK`).catch(() => undefined);
    await b.query(`ROLLBACK`).catch(() => undefined);
    const pid = (await c.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows[0]!.pid;
    const sleeping = failure(c.query(`SELECT pg_sleep(10)`));
    await a.query(`SELECT pg_terminate_backend($1)`, [pid]);
    const terminated = await sleeping;
    const closedPort = await (async () => {
      const server = net.createServer();
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const port = (server.address() as net.AddressInfo).port;
      await new Promise((r) => server.close(r));
      const refused = new pg.Client({ connectionString: hub.databaseUrl.replace('127.0.0.1:5432', `127.0.0.1:${port}`) });
      return failure(refused.connect());
    })();
    const errors = { timeout, lock, deadlock: deadlock.reason, terminated, closedPort };
    expect(Object.fromEntries(Object.entries(errors).map(([k, e]) => [k, (e as { code?: string }).code]))).toEqual({
      timeout: '57014',
      lock: '55P03',
      deadlock: '40P01',
      terminated: '57P01',
      closedPort: 'ECONNREFUSED',
    });
    for (const e of Object.values(errors)) {
      expect(isTransientDbError(e)).toBe(true);
      expect(isDataDbError(e)).toBe(false);
    }
  });
});
