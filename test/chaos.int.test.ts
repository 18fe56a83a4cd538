/**
 * Chaos: the whole hub as processes — a private PostgreSQL cluster, a private redis-server, one
 * `yilian serve --listeners-only` and two `yilian worker`s — takes a paced stream of 5,000 HL7 v2
 * messages (simulated ADT^A08 and ORU^R01, 1,000 patients) from 8 senders that behave like member
 * systems (one message at a time, resend after a NAK or a lost connection), while the test in turn
 * SIGKILLs a worker (and starts a replacement, as a supervisor would), SIGKILLs Redis and starts it
 * again empty, stops PostgreSQL (fast) for 20 s and starts it again, and SIGKILLs the listener
 * process in the middle of a frame (and starts it again, as systemd would).
 *
 * What must hold: every AA'd message is stored once and processed once; every other answer is a NAK
 * or a closed connection, never silence; only the killed processes exit; the first AA comes within
 * 5 s of PostgreSQL's return; the backlog drains without anyone touching it. Recovery times are
 * printed (console.log) for bench/RESULTS.md.
 *
 * Needs `npx tsc -p .` first (the processes run dist/).
 */
import net from 'node:net';
import pg from 'pg';
import { bloodCount, encodeAs, simAdt, simOru, simPatient } from '../cli/simulate';
import { waitFor } from './support/hub';
import { type Attempt, ResendingSender, sleep } from './support/mllp';
import { PostgresCluster, stopAllClusters } from './support/postgres';
import {
  assertBuildIsFresh,
  freePort,
  killHard,
  outputTail,
  removeWorkerConfig,
  spawnListeners,
  spawnWorker,
  startRedisServer,
  stopProcess,
  writeHubConfig,
  type Proc,
  type WorkerEnv,
} from './support/processes';

const TOTAL = 5000;
const SENDERS = 8;
const PATIENTS = 1000;
const PARTITIONS = 4;
/** Messages per second over all senders: slow enough that every fault lands while the stream still runs (~90 s of sending). */
const RATE = 55;
/** An attempt with neither an ACK nor a close within this long is silence: a failure. Generous: the PostgreSQL outage is 20 s. */
const ACK_TIMEOUT_MS = 30_000;
/** Resend and reconnect delay of the senders: short, so the recovery times measure the hub and not the senders' patience. */
const RETRY_MS = 250;
const PG_OUTAGE_MS = 20_000;
const PREFIX = 'chaos';

const t0 = Date.now();
const since = (t: number) => `+${((t - t0) / 1000).toFixed(1)} s`;

/** A process the test started, and whether the test itself killed it (any other exit is a failure). */
interface Tracked {
  label: string;
  proc: Proc;
  killedByTest: boolean;
}
const tracked: Tracked[] = [];
const unexpectedExits: string[] = [];
let tearingDown = false;

function watch(label: string, proc: Proc): Tracked {
  const entry: Tracked = { label, proc, killedByTest: false };
  tracked.push(entry);
  void proc.exited.then((code) => {
    if (entry.killedByTest || tearingDown) return;
    unexpectedExits.push(
      `${label} (pid ${proc.child.pid}) exited at ${since(Date.now())} with code ${code}, signal ${proc.child.signalCode}; output tail:\n${outputTail(proc, 40)}`,
    );
  });
  return entry;
}

async function kill9(entry: Tracked): Promise<void> {
  entry.killedByTest = true;
  await killHard(entry.proc);
}

let cluster: PostgresCluster | undefined;
let databaseUrl = '';
let redisPort = 0;
let listenPort = 0;
let configFile: string | undefined;
let env: WorkerEnv;
let redis: Tracked | undefined;
let listener: Tracked | undefined;
const workers: Tracked[] = [];
let db: pg.Pool | undefined;
const senders: ResendingSender[] = [];

beforeAll(async () => {
  assertBuildIsFresh();
  cluster = await PostgresCluster.create('chaos');
  databaseUrl = await cluster.createDatabase('hub');
  redisPort = await freePort();
  redis = watch('redis-server', await startRedisServer(redisPort));
  listenPort = await freePort();
  const member = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', host: '127.0.0.1', port: listenPort, charset: 'UTF-8' }] };
  env = { databaseUrl, redisUrl: `redis://127.0.0.1:${redisPort}`, prefix: PREFIX, partitions: PARTITIONS };
  // The product's defaults for attempts and backoff: the faults below are what a deployment meets.
  configFile = writeHubConfig({ members: [member], pipeline: { queuePrefix: PREFIX, partitions: PARTITIONS } });
  // The listener first: its runtime migrates the new database before the workers open it.
  listener = watch('listener', await spawnListeners(env, configFile, 1));
  workers.push(watch('worker A', await spawnWorker(env, configFile)));
  workers.push(watch('worker B', await spawnWorker(env, configFile)));
  db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  db.on('error', () => undefined); // the test stops PostgreSQL on purpose; its idle clients may see that
}, 120_000);

afterAll(async () => {
  tearingDown = true;
  for (const s of senders) s.close();
  // Hub processes first (a graceful stop still talks to PostgreSQL and Redis), then the stores.
  const alive = (t: Tracked) => t.proc.child.exitCode === null && t.proc.child.signalCode === null;
  await Promise.all(tracked.filter((t) => t.label !== 'redis-server' && alive(t)).map((t) => stopProcess(t.proc, 10_000)));
  await Promise.all(tracked.filter((t) => t.label === 'redis-server' && alive(t)).map((t) => stopProcess(t.proc, 5_000)));
  await db?.end().catch(() => undefined);
  await stopAllClusters();
  if (configFile) removeWorkerConfig(configFile);
}, 120_000);

/** The last lines of every process the test started, and of the PostgreSQL log: for failure messages. */
function processTails(): string {
  const tails = tracked.map((t) => `--- ${t.label} (pid ${t.proc.child.pid}${t.killedByTest ? ', killed by the test' : ''}) output tail:\n${outputTail(t.proc, 25)}`);
  return `${tails.join('\n')}\n--- PostgreSQL log tail:\n${cluster?.logTail(15) ?? ''}`;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const result = await db!.query<{ n: string }>(sql, params);
  return Number(result.rows[0]!.n);
}

/** YYYYMMDDHHMMSS, k seconds after a fixed start: a patient's later message is its newer event. */
function hl7Time(k: number): string {
  return new Date(Date.UTC(2026, 10, 23, 0, 0, 0) + k * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/** Message k: patient k mod 1,000; even k an ADT^A08 (address update-k), odd k an ORU^R01 (one report, three results). */
function message(k: number): { controlId: string; bytes: Buffer; oru: boolean } {
  const controlId = `CH-${k}`;
  const patient = simPatient(k % PATIENTS, 'C');
  const oru = k % 2 === 1;
  const text = oru
    ? simOru({ controlId, patient, time: hl7Time(k) }, bloodCount.map((r, j) => ({ ...r, value: String(100 + ((k + j) % 50)) })))
    : simAdt({ controlId, patient, time: hl7Time(k), address: `update-${k}` }, 'A08');
  return { controlId, bytes: encodeAs(text, 'UTF-8'), oru };
}

test('5,000 messages over 8 senders through a worker kill, a Redis restart, a 20 s PostgreSQL outage and a listener kill', async () => {
  const deadline = Date.now() + 210_000;
  const attempts: Attempt[] = [];
  const aaAt: number[] = [];
  const delivered = new Set<string>();
  const onAttempt = (a: Attempt) => {
    attempts.push(a);
    if (a.outcome === 'ack' && !a.detail && (a.code === 'AA' || a.code === 'CA')) {
      aaAt.push(a.endedAt);
      delivered.add(a.controlId);
    }
  };
  const firstAaAfter = (t: number) => aaAt.find((x) => x > t);

  // One global pace for new messages (resends are not paced: a sender resends when it must).
  let nextSlot = Date.now();
  const pace = async () => {
    const now = Date.now();
    const at = Math.max(now, nextSlot);
    nextSlot = at + 1000 / RATE;
    if (at > now) await sleep(at - now);
  };
  const streams = Array.from({ length: SENDERS }, async (_, s) => {
    const sender = new ResendingSender(s, { port: listenPort, ackTimeoutMs: ACK_TIMEOUT_MS, retryDelayMs: RETRY_MS, deadline, onAttempt });
    senders.push(sender);
    try {
      // Patient i is always sent by sender i mod 8: one patient's messages leave in order.
      for (let k = s; k < TOTAL; k += SENDERS) {
        await pace();
        const m = message(k);
        await sender.deliver(m.controlId, m.bytes);
      }
    } finally {
      sender.close();
    }
  });
  const streamsDone = Promise.allSettled(streams);
  let streaming = true;
  void streamsDone.then(() => (streaming = false));
  /** Wait for the stream to reach `n` AA'd messages; if it ended (senders gave up) or stalled, fail with everything known. */
  const untilDelivered = async (n: number, what: string) => {
    await waitFor(async () => delivered.size >= n || !streaming, 120_000, `${n} AA'd before ${what}`).catch((e: Error) => fail(`${e.message} (${delivered.size} AA'd)`));
    if (delivered.size < n) {
      const settled = await streamsDone;
      fail(`the stream ended with ${delivered.size} AA'd before ${what}: ${settled.map((r, s) => (r.status === 'rejected' ? `sender ${s}: ${(r.reason as Error).message}` : '')).filter(Boolean).join('; ')}`);
    }
  };
  const fail = (reason: string): never => {
    throw new Error(`${reason}\nunexpected exits: ${unexpectedExits.join('\n') || 'none'}\nfigures so far:\n${figures.join('\n')}\n${processTails()}\n\n(repeated) ${reason}`);
  };
  const figures: string[] = [];
  const log = (line: string) => {
    figures.push(line);
    console.log(`chaos: ${line}`);
  };

  // 1. A worker SIGKILLed mid-run; a replacement started (the supervisor's job).
  await untilDelivered(400, 'the worker kill');
  await kill9(workers[0]!);
  workers.push(watch('worker C (replacement)', await spawnWorker(env, configFile!)));
  log(`worker A SIGKILLed at ${delivered.size} AA'd (${since(Date.now())}); replacement up`);

  // 2. Redis SIGKILLed and started again empty on the same port.
  await untilDelivered(900, 'the Redis kill');
  // Kill it with work waiting in it when there is some: the killed worker's partitions wait out its
  // job locks (15 s) meanwhile, so a backlog usually builds; after 15 s the kill goes ahead regardless.
  const backlogWaitUntil = Date.now() + 15_000;
  await waitFor(async () => Date.now() > backlogWaitUntil || (await count(`SELECT count(*) AS n FROM raw_message WHERE status = 'queued'`)) >= 100, 20_000, 'a backlog');
  await kill9(redis!);
  redis = watch('redis-server (restarted)', await startRedisServer(redisPort));
  const redisBackAt = Date.now();
  const lastIdBefore = await count(`SELECT coalesce(max(id), 0) AS n FROM raw_message`);
  const queuedAtRestart = await count(`SELECT count(*) AS n FROM raw_message WHERE status = 'queued' AND id <= $1`, [lastIdBefore]);
  // Drained: every message stored before Redis came back is processed (later ones are new work).
  await waitFor(async () => (await count(`SELECT count(*) AS n FROM raw_message WHERE status = 'queued' AND id <= $1`, [lastIdBefore])) === 0, 90_000, 'the backlog of the Redis restart drained');
  const redisDrainMs = Date.now() - redisBackAt;
  log(`Redis SIGKILLed and restarted empty at ${since(redisBackAt)}: ${queuedAtRestart} stored messages waiting; Redis back → backlog drained ${redisDrainMs} ms`);

  // 3. PostgreSQL stopped (fast shutdown: sessions terminated) for 20 s, then started.
  await untilDelivered(1600, 'the PostgreSQL outage');
  await cluster!.stopFast();
  const pgDownAt = Date.now();
  const attemptsBeforeOutage = attempts.length;
  // The outage itself is the scenario: its length is fixed, nothing is being waited for.
  await sleep(PG_OUTAGE_MS);
  const pgStartIssuedAt = Date.now();
  await cluster!.start();
  const pgBackAt = cluster!.startedAt;
  await waitFor(async () => firstAaAfter(pgBackAt) !== undefined || !streaming, 60_000, 'an AA after PostgreSQL returned');
  const pgFirstAaMs = firstAaAfter(pgBackAt)! - pgBackAt;
  // Nothing can be stored while the server is down: an AA for a message sent after the stop and
  // answered before the start was even issued would be an ACK without a commit.
  const aaWhileDown = attempts
    .slice(attemptsBeforeOutage)
    .filter((a) => a.outcome === 'ack' && (a.code === 'AA' || a.code === 'CA') && a.sentAt >= pgDownAt && a.endedAt < pgStartIssuedAt);
  const outage = attempts.slice(attemptsBeforeOutage).filter((a) => a.sentAt >= pgDownAt && a.sentAt < pgBackAt);
  log(
    `PostgreSQL down ${pgBackAt - pgDownAt} ms: ${outage.length} attempts meanwhile (${outage.filter((a) => a.outcome === 'ack').length} answered ` +
      `${[...new Set(outage.filter((a) => a.outcome === 'ack').map((a) => a.code))].join('/') || '-'}, ${outage.filter((a) => a.outcome === 'closed').length} closed); ` +
      `store back → first AA ${pgFirstAaMs} ms`,
  );

  // 4. The listener process SIGKILLed while a frame is half received, then started again on its port.
  await untilDelivered(2600, 'the listener kill');
  const half = message(TOTAL + 1).bytes; // control id CH-5001: none of the stream's
  const midFrame = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(listenPort, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  const midFrameClosed = new Promise<void>((resolve) => midFrame.once('close', () => resolve()));
  midFrame.on('error', () => undefined);
  await new Promise<void>((resolve) => midFrame.write(Buffer.concat([Buffer.from([0x0b]), half.subarray(0, half.length >> 1)]), () => resolve()));
  // The listener has the bytes when they are in its socket buffer: wait for the kernel to have taken
  // them (write callback) and for the process to have read them (its CPU time is not ours to see;
  // the frame stays half either way, which is the point).
  const listenerKilledAt = Date.now();
  await kill9(listener!);
  await midFrameClosed;
  listener = watch('listener (restarted)', await spawnListeners(env, configFile!, 1));
  const listenerBackAt = Date.now();
  await waitFor(async () => firstAaAfter(listenerBackAt) !== undefined || !streaming, 60_000, 'an AA after the listener restart');
  const killedAttempts = attempts.filter((a) => a.sentAt <= listenerKilledAt && a.endedAt >= listenerKilledAt);
  log(
    `listener SIGKILLed mid-frame at ${since(listenerKilledAt)} (${killedAttempts.filter((a) => a.outcome === 'closed').length} senders cut off waiting for an ACK); ` +
      `restarted in ${listenerBackAt - listenerKilledAt} ms; listener back → first AA ${(firstAaAfter(listenerBackAt) ?? NaN) - listenerBackAt} ms`,
  );

  // The stream finishes; every sender must have had each of its messages AA'd.
  const settled = await streamsDone;
  const senderFailures = settled.flatMap((r, s) => (r.status === 'rejected' ? [`sender ${s}: ${(r.reason as Error).message}`] : []));
  const streamEndAt = Math.max(...aaAt);

  // The backlog drains on its own: nothing is replayed or nudged by the test.
  let drained = true;
  await waitFor(async () => (await count(`SELECT count(*) AS n FROM raw_message WHERE status = 'queued'`)) === 0, 120_000, 'every stored message processed').catch(() => (drained = false));
  const drainMs = Date.now() - streamEndAt;

  const byCode = new Map<string, number>();
  for (const a of attempts) byCode.set(a.outcome === 'ack' ? a.code! : a.outcome, (byCode.get(a.outcome === 'ack' ? a.code! : a.outcome) ?? 0) + 1);
  const rawStats = (await db!.query<{ rows: string; dupes: string }>(`SELECT count(*) AS rows, coalesce(sum(duplicate_count), 0) AS dupes FROM raw_message`)).rows[0]!;
  log(
    `${attempts.length} attempts for ${TOTAL} messages: ${[...byCode].map(([k, v]) => `${k} ${v}`).join(', ')}; ` +
      `${rawStats.rows} raw rows, ${rawStats.dupes} resends recognised as duplicates; last AA at ${since(streamEndAt)}; ` +
      `last AA → backlog drained ${drained ? `${drainMs} ms` : 'NOT within 120 s'}`,
  );

  // ---- what must hold ----
  const problems: Record<string, unknown> = {};
  const note = (what: string, list: unknown[]) => {
    if (list.length) problems[what] = list.length > 25 ? [...list.slice(0, 25), `… ${list.length - 25} more`] : list;
  };
  note('senders that gave up', senderFailures);
  note('AA\'d while PostgreSQL was down', aaWhileDown.map((a) => `${a.controlId} sent ${since(a.sentAt)}, AA'd ${since(a.endedAt)}`));
  note('processes that exited without being killed', unexpectedExits);
  note(
    'attempts answered by silence (neither ACK nor close within 30 s)',
    attempts.filter((a) => a.outcome === 'silence').map((a) => `${a.controlId} (sender ${a.sender}) sent ${since(a.sentAt)}`),
  );
  note(
    'attempts answered with a wrong or unreadable ACK',
    attempts.filter((a) => a.outcome === 'ack' && a.detail).map((a) => `${a.controlId}: ${a.detail}`),
  );
  note(
    'attempts answered with a code that is neither AA nor a NAK',
    attempts.filter((a) => a.outcome === 'ack' && !['AA', 'CA', 'AE', 'AR', 'CE', 'CR'].includes(a.code!)).map((a) => `${a.controlId}: ${a.code}`),
  );

  const rows = (
    await db!.query<{ control_id: string; n: string; statuses: string[]; revisions: number[]; events: string; provenances: string }>(
      `SELECT r.control_id, count(*) AS n, array_agg(r.status ORDER BY r.id) AS statuses, array_agg(r.revision ORDER BY r.id) AS revisions,
              sum((SELECT count(*) FROM patient_event e WHERE e.raw_id = r.id)) AS events,
              sum((SELECT count(*) FROM resource p WHERE p.raw_id = r.id AND p.resource_type = 'Provenance')) AS provenances
         FROM raw_message r GROUP BY r.control_id`,
    )
  ).rows;
  const byControl = new Map(rows.map((r) => [r.control_id, r]));
  const lost = [...delivered].filter((c) => !byControl.has(c));
  note("AA'd but not in raw_message (lost)", lost);
  note(
    "AA'd and stored more than once",
    [...delivered].filter((c) => Number(byControl.get(c)?.n ?? 0) > 1).map((c) => `${c}: ${byControl.get(c)!.n} rows, revisions ${byControl.get(c)!.revisions}`),
  );
  note(
    "AA'd and stored but not processed",
    [...delivered].filter((c) => byControl.has(c) && byControl.get(c)!.statuses.some((s) => s !== 'processed')).map((c) => `${c}: ${byControl.get(c)!.statuses}`),
  );
  note(
    "AA'd and processed but not exactly one patient event",
    [...delivered].filter((c) => byControl.has(c) && Number(byControl.get(c)!.events) !== 1).map((c) => `${c}: ${byControl.get(c)!.events} events`),
  );
  note(
    "AA'd and processed but not exactly one Provenance",
    [...delivered].filter((c) => byControl.has(c) && Number(byControl.get(c)!.provenances) !== 1).map((c) => `${c}: ${byControl.get(c)!.provenances} Provenances`),
  );
  note(
    'stored rows no sender had AA\'d',
    rows.filter((r) => !delivered.has(r.control_id)).map((r) => `${r.control_id}: ${r.n} rows ${r.statuses}`),
  );
  note(
    'messages never AA\'d',
    Array.from({ length: TOTAL }, (_, k) => `CH-${k}`).filter((c) => !delivered.has(c)),
  );
  // Each ORU's report (DiagnosticReport keyed by OBR-3, the control id) exists once, written once.
  const reports = await db!.query<{ id: string; version: number; control_id: string }>(
    `SELECT p.id, p.version, r.control_id FROM resource p JOIN raw_message r ON r.id = p.raw_id WHERE p.resource_type = 'DiagnosticReport'`,
  );
  const oruCount = [...delivered].filter((c) => Number(c.slice(3)) % 2 === 1).length;
  if (reports.rows.length !== oruCount) problems['DiagnosticReports (one per AA\'d ORU)'] = `${reports.rows.length}, expected ${oruCount}`;
  note('DiagnosticReports written more than once', reports.rows.filter((r) => r.version !== 1).map((r) => `${r.control_id}: version ${r.version}`));
  const patients = await count(`SELECT count(*) AS n FROM source_patient`);
  if (patients !== PATIENTS) problems['source patients'] = `${patients}, expected ${PATIENTS}`;
  note('quarantine entries', (await db!.query<{ raw_id: number; stage: string; code: string; reason: string }>(`SELECT raw_id, stage, code, reason FROM quarantine ORDER BY id`)).rows);
  if (!drained) problems['backlog'] = `${await count(`SELECT count(*) AS n FROM raw_message WHERE status = 'queued'`)} messages still queued 120 s after the last AA`;
  if (!(pgFirstAaMs <= 5000)) problems['first AA after PostgreSQL returned'] = `${pgFirstAaMs} ms (bound 5,000 ms)`;
  // Still running at the end: the current listener, workers and Redis (their exits were watched all along).
  for (const t of tracked.filter((t) => !t.killedByTest)) {
    if (t.proc.child.exitCode !== null || t.proc.child.signalCode !== null) problems[`${t.label} not running at the end`] = outputTail(t.proc, 40);
  }

  if (Object.keys(problems).length > 0) {
    // The problems again at the end: CI keeps the head and the tail of a long output, not its middle.
    const listed = JSON.stringify(problems, null, 2);
    throw new Error(`chaos run failed:\n${listed}\n\nfigures:\n${figures.join('\n')}\n\n${processTails()}\n\nchaos run failed (repeated):\n${listed}`);
  }
}, 300_000);
