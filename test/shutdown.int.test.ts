/**
 * A signalled `serve` ends within its 30 s grace whatever is in flight (issue 18, row 0: SIGTERM left
 * it at "finishing in-flight work" forever behind a wedged store). Here the raw store is held by
 * another session's ACCESS EXCLUSIVE lock, so a message's insert — and the ACK behind it — cannot
 * finish; SIGTERM must still end the process, the sender must not get an AA for what was not
 * stored, and once the lock is gone a restarted hub stores the resent message.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { createTestDatabase, dropTestDatabase, REDIS_URL, waitFor } from './support/hub';
import { AckFrames, readMsa } from './support/mllp';
import { assertBuildIsFresh, freePort, outputTail, removeWorkerConfig, spawnCli, stopProcess, writeHubConfig, type Proc } from './support/processes';
import { frame } from '../adapters/mllp/framer';

let databaseUrl: string;
let configFile: string | undefined;
let serve: Proc | undefined;
let admin: pg.Client | undefined;
let port: number;
const prefix = `yt-shutdown-${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  assertBuildIsFresh();
  databaseUrl = await createTestDatabase('shutdown');
  port = await freePort();
  configFile = writeHubConfig({
    members: [{ id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', host: '127.0.0.1', port }] }],
    pipeline: { partitions: 2, queuePrefix: prefix },
  });
});

afterAll(async () => {
  if (serve) await stopProcess(serve, 1000);
  await admin?.query('ROLLBACK').catch(() => undefined);
  await admin?.end();
  if (configFile) removeWorkerConfig(configFile);
  await dropTestDatabase(databaseUrl);
});

const start = () => spawnCli(['serve', '--listeners-only'], { databaseUrl, redisUrl: REDIS_URL }, configFile!, /MLLP m1\/his on port/);

/** Send one frame; resolve with the ACK's MSA code, or 'closed' when the connection ends without one. */
function send(bytes: Buffer): { answered: Promise<string>; socket: net.Socket } {
  const socket = net.connect(port, '127.0.0.1');
  const acks = new AckFrames();
  const answered = new Promise<string>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      const ack = acks.push(chunk)[0];
      if (ack) resolve(readMsa(ack)?.code ?? 'no MSA');
    });
    socket.on('close', () => resolve('closed'));
    socket.on('error', () => undefined);
  });
  socket.on('connect', () => socket.write(frame(bytes)));
  return { answered, socket };
}

test('SIGTERM ends serve within 30 s while a message waits on a locked raw store; nothing unstored is AA’d', async () => {
  serve = await start();
  admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query('BEGIN');
  await admin.query('LOCK TABLE raw_message IN ACCESS EXCLUSIVE MODE');

  const message = encodeAs(simAdt({ controlId: 'SHUT-1', patient: simPatient(1, 'S'), address: 'x', time: '20261206080000' }), 'UTF-8');
  const first = send(message);
  // The intake's insert is queued behind the test's lock.
  await waitFor(
    async () => (await admin!.query(`SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'raw_message'::regclass AND NOT granted`)).rows[0].n > 0,
    30_000,
    'the insert waiting on the lock',
  );

  const signalled = Date.now();
  serve.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([serve.exited, new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), 45_000)))]);
  clearTimeout(timer);
  const tookMs = Date.now() - signalled;
  if (code === 'still running') throw new Error(`serve did not exit within 45 s of SIGTERM:\n${outputTail(serve)}`);
  console.log(`shutdown: serve exited ${tookMs} ms after SIGTERM (code ${code}) with a message in flight on a locked store`);
  expect(tookMs).toBeLessThan(35_000);
  expect(serve.output()).toMatch(/SIGTERM: shutting down/);
  // Never an AA for bytes that were not stored: a NAK or a closed connection.
  expect(['AR', 'closed']).toContain(await first.answered);
  first.socket.destroy();

  await admin.query('ROLLBACK');
  serve = await start();
  const again = send(message);
  expect(await again.answered).toBe('AA');
  again.socket.destroy();
  const stored = await admin.query(`SELECT count(*)::int AS n FROM raw_message WHERE control_id = 'SHUT-1'`);
  expect(stored.rows[0].n).toBe(1);
}, 120_000);
