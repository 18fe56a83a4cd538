/**
 * Poison beside good traffic (issue row 0), end to end: a spawned `yilian serve --with-worker` on a
 * fresh PostgreSQL database, 8 MLLP connections sending good ORU^R01s over distinct patients (each
 * a new registration for the patient index, so every job takes the index's exclusive lock) and a
 * ninth sending 60 messages with a NUL in MSH-10 (some in MSH-3, MSH-9, PID-3). On the product this
 * wedged the whole hub after ~155 messages (a session `idle in transaction` holding
 * pg_advisory_xact_lock(7317005), nine waiting on it, the pool used up). Asserts: every good message
 * AA'd and processed, every poisoned one answered (AE naming its field: never silence, never AR
 * "resend later") and quarantined, and — sampled all along, not only at the end — no session of the
 * database left `idle in transaction` for long, and none at the end.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { bloodCount, simOru, simPatient } from '../cli/simulate';
import { createTestDatabase, dropTestDatabase, REDIS_URL, waitFor } from './support/hub';
import { assertBuildIsFresh, freePort, outputTail, removeWorkerConfig, spawnCli, stopProcess, writeHubConfig, type Proc } from './support/processes';

const GOOD_SENDERS = 8;
const GOOD_PER_SENDER = 40;
const POISON = 60;
/** Longest wait for one ACK: far above a healthy round trip (milliseconds), far below the test's bound. */
const ACK_TIMEOUT_MS = 20_000;

let databaseUrl: string;
let configFile: string | undefined;
let serve: Proc | undefined;
let admin: pg.Client;
const prefix = `yt-poison-${randomBytes(3).toString('hex')}`;

/** One MLLP connection in original mode: send, wait for the ACK frame, next. Silence fails the test. */
class Sender {
  private socket!: net.Socket;
  private buffer = Buffer.alloc(0);
  private waiting?: { resolve: (ack: Buffer) => void; reject: (e: Error) => void };

  static async open(port: number): Promise<Sender> {
    const sender = new Sender();
    await new Promise<void>((resolve, reject) => {
      sender.socket = net.connect(port, '127.0.0.1', () => resolve());
      sender.socket.once('error', reject);
    });
    sender.socket.on('data', (chunk: Buffer) => sender.read(chunk));
    sender.socket.on('close', () => sender.waiting?.reject(new Error('connection closed while waiting for an ACK')));
    sender.socket.on('error', () => undefined);
    return sender;
  }

  private read(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    const start = this.buffer.indexOf(0x0b);
    const end = this.buffer.indexOf(Buffer.from([0x1c, 0x0d]));
    if (start < 0 || end < start) return;
    const ack = Buffer.from(this.buffer.subarray(start + 1, end));
    this.buffer = this.buffer.subarray(end + 2);
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve(ack);
  }

  send(bytes: Buffer): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ACK within ${ACK_TIMEOUT_MS} ms (silence)`)), ACK_TIMEOUT_MS);
      this.waiting = {
        resolve: (ack) => (clearTimeout(timer), resolve(ack)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      this.socket.write(Buffer.concat([Buffer.from([0x0b]), bytes, Buffer.from([0x1c, 0x0d])]));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

function fieldsOf(ack: Buffer, segment: string): string[] {
  return (
    ack
      .toString('latin1')
      .split('\r')
      .map((s) => s.split('|'))
      .find((s) => s[0] === segment) ?? []
  );
}

/** The poisoned messages: mostly MSH-10, some MSH-3, MSH-9, PID-3; each with the field its ACK must name. */
function poisonMessage(i: number): { bytes: Buffer; location: string } {
  const text = simOru({ controlId: `X-${i}`, patient: simPatient(i, 'X'), sendingFacility: 'POISON' }, bloodCount);
  const kind = i % 10;
  if (kind === 7) return { location: 'MSH-3', bytes: Buffer.from(text.replace('MSH|^~\\&|LIS|', 'MSH|^~\\&|L\u0000IS|'), 'utf8') };
  if (kind === 8) return { location: 'MSH-9', bytes: Buffer.from(text.replace('ORU^R01^ORU_R01', 'ORU^R01\u0000^ORU_R01'), 'utf8') };
  if (kind === 9) return { location: 'PID-3', bytes: Buffer.from(text.replace(`|${simPatient(i, 'X').mrn}^`, `|${simPatient(i, 'X').mrn}\u0000^`), 'utf8') };
  return { location: 'MSH-10', bytes: Buffer.from(text.replace(`|X-${i}|`, `|X-${i}\u0000|`), 'utf8') };
}

/** What the monitor saw of the database's sessions while the traffic ran. */
const seen = { longestIdleInTransactionMs: 0, mostLockWaiters: 0, samples: 0, worst: '' };

beforeAll(async () => {
  assertBuildIsFresh();
  databaseUrl = await createTestDatabase('poison');
  admin = new pg.Client({ connectionString: databaseUrl.replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
});

afterAll(async () => {
  if (serve) await stopProcess(serve);
  if (configFile) removeWorkerConfig(configFile);
  await admin?.end();
  if (databaseUrl) await dropTestDatabase(databaseUrl);
  // The queue prefix's keys in the shared Redis.
  const { Redis } = await import('ioredis');
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

test('8 good senders and 1 poisoning sender: every good message AA and processed, every poisoned one AE and quarantined, no session left idle in transaction', async () => {
  const [goodPort, poisonPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  configFile = writeHubConfig({
    members: [
      { id: 'lab', name: 'Lab', tier: 'secondary', channels: [{ id: 'lis', kind: 'mllp', host: '127.0.0.1', port: goodPort }] },
      { id: 'bad', name: 'Bad sender', tier: 'primary', channels: [{ id: 'his', kind: 'mllp', host: '127.0.0.1', port: poisonPort }] },
    ],
    api: { host: '127.0.0.1', port: apiPort },
    // the product's defaults (16 partitions, 5 attempts), a private prefix
    pipeline: { queuePrefix: prefix },
  });
  serve = await spawnCli(['serve', '--with-worker'], { databaseUrl, redisUrl: REDIS_URL }, configFile, /MLLP [^]*MLLP /, 60_000);
  const dbName = databaseUrl.replace(/^.*\//, '');

  // The monitor: every 250 ms, how long the oldest `idle in transaction` session of this database
  // has been so, and how many sessions wait on a lock (the wedge's signature: one holder idle, the
  // rest waiting, growing and never clearing).
  let monitoring = true;
  const monitor = (async () => {
    while (monitoring) {
      const r = await admin.query<{ idle_ms: number | null; waiters: number; worst: string | null }>(
        `SELECT max(extract(epoch FROM clock_timestamp() - state_change) * 1000) FILTER (WHERE state = 'idle in transaction') AS idle_ms,
                count(*) FILTER (WHERE wait_event_type = 'Lock')::int AS waiters,
                (array_agg(left(query, 120) ORDER BY state_change) FILTER (WHERE state = 'idle in transaction'))[1] AS worst
           FROM pg_stat_activity WHERE datname = $1`,
        [dbName],
      );
      const row = r.rows[0]!;
      seen.samples++;
      if ((row.idle_ms ?? 0) > seen.longestIdleInTransactionMs) {
        seen.longestIdleInTransactionMs = Number(row.idle_ms);
        seen.worst = row.worst ?? '';
      }
      seen.mostLockWaiters = Math.max(seen.mostLockWaiters, row.waiters);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();

  const t0 = Date.now();
  try {
    const goodAcks: string[] = [];
    const goodSenders = Array.from({ length: GOOD_SENDERS }, async (_, s) => {
      const sender = await Sender.open(goodPort);
      try {
        for (let k = 0; k < GOOD_PER_SENDER; k++) {
          const i = s * GOOD_PER_SENDER + k;
          const controlId = `G-${i}`;
          const ack = await sender.send(Buffer.from(simOru({ controlId, patient: simPatient(i, 'G') }, bloodCount), 'utf8'));
          const msa = fieldsOf(ack, 'MSA');
          expect(msa[2]).toBe(controlId);
          goodAcks.push(msa[1] ?? '');
        }
      } finally {
        sender.close();
      }
    });
    const poisonAcks: Array<{ code: string; location: string; err2: string; err3: string }> = [];
    const poisonSender = (async () => {
      const sender = await Sender.open(poisonPort);
      try {
        for (let i = 0; i < POISON; i++) {
          const { bytes, location } = poisonMessage(i);
          const ack = await sender.send(bytes);
          const err = fieldsOf(ack, 'ERR');
          poisonAcks.push({ code: fieldsOf(ack, 'MSA')[1] ?? '', location, err2: err[2] ?? '', err3: err[3] ?? '' });
        }
      } finally {
        sender.close();
      }
    })();
    await Promise.all([...goodSenders, poisonSender]);
    const acked = Date.now();

    expect(goodAcks).toHaveLength(GOOD_SENDERS * GOOD_PER_SENDER);
    expect(goodAcks.filter((c) => c !== 'AA')).toEqual([]);
    expect(poisonAcks).toHaveLength(POISON);
    for (const p of poisonAcks) {
      expect(p.code).toBe('AE');
      expect(p.err2).toBe(`${p.location.slice(0, 3)}^1^${p.location.slice(4)}`);
      expect(p.err3).toBe('102^Data type error^HL70357');
    }

    const hubDb = new pg.Client({ connectionString: databaseUrl });
    await hubDb.connect();
    try {
      const n = async (sql: string) => Number((await hubDb.query<{ n: number }>(sql)).rows[0]!.n);
      await waitFor(
        async () => (await n(`SELECT count(*) AS n FROM raw_message WHERE member_id = 'lab' AND status = 'processed'`)) === GOOD_SENDERS * GOOD_PER_SENDER,
        45_000,
        'every good message processed',
      ).catch(async (error: Error) => {
        throw new Error(`${error.message}; statuses ${JSON.stringify((await hubDb.query(`SELECT status, count(*) FROM raw_message GROUP BY 1`)).rows)}; serve said:\n${outputTail(serve!)}`);
      });
      expect(await n(`SELECT count(*) AS n FROM raw_message WHERE member_id = 'bad' AND status = 'quarantined'`)).toBe(POISON);
      expect(await n(`SELECT count(*) AS n FROM raw_message WHERE member_id = 'bad'`)).toBe(POISON);
      expect(await n(`SELECT count(*) AS n FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE r.member_id = 'bad' AND q.code = 'unstorable' AND q.stage = 'intake'`)).toBe(POISON);
      expect(await n(`SELECT count(*) AS n FROM raw_message WHERE member_id = 'bad' AND position('\\x00'::bytea IN content) > 0`)).toBe(POISON);
      expect(await n(`SELECT count(*) AS n FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE r.member_id = 'lab'`)).toBe(0);
      expect(await n(`SELECT count(*) AS n FROM source_patient WHERE member_id = 'lab'`)).toBe(GOOD_SENDERS * GOOD_PER_SENDER);
    } finally {
      await hubDb.end();
    }
    // At the end: no session of this database idle in a transaction for more than a moment (a
    // periodic sync may be between two statements of a live round: that lasts milliseconds).
    await waitFor(
      async () =>
        Number(
          (
            await admin.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'idle in transaction'`,
              [dbName],
            )
          ).rows[0]!.n,
        ) === 0,
      5_000,
      'no session idle in transaction',
    );
    process.stderr.write(
      `poison: ${GOOD_SENDERS * GOOD_PER_SENDER} good + ${POISON} poisoned ACKed in ${((acked - t0) / 1000).toFixed(1)} s, all processed after ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
        `longest idle in transaction seen ${Math.round(seen.longestIdleInTransactionMs)} ms (${seen.worst || '-'}), most sessions waiting on a lock ${seen.mostLockWaiters}, ${seen.samples} samples\n`,
    );
    // Sampled all along: a transaction idle for seconds is a holder waiting on something outside
    // it (the wedge), never a healthy hub.
    expect(seen.longestIdleInTransactionMs).toBeLessThan(10_000);
  } finally {
    monitoring = false;
    await monitor;
    // On a failure too: what the sessions looked like is the evidence of a wedge.
    process.stderr.write(`poison monitor: ${JSON.stringify(seen)}\n`);
  }
});
