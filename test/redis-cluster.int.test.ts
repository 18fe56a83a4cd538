/**
 * The pipeline on a real Redis Cluster: 6 private redis-server processes (3 masters, 3 replicas,
 * `--cluster-enabled yes`, joined by `redis-cli --cluster create … --cluster-replicas 1`), the hub's
 * queues under a hash-tagged prefix (`{…}`: every queue key, heartbeat and the epoch in one slot),
 * the intake in this process and two `yilian worker` processes. Mid-stream the master that serves
 * the prefix's slot is SIGKILLed; a replica must be promoted and the pipeline must carry on.
 *
 * What must hold, checked in PostgreSQL (the hub's durable state; Redis holds work in progress):
 * every stored message processed exactly once (one patient event, one Provenance, every report
 * written once), each patient's final state is their last message, and each patient's messages
 * applied in arrival order. The one allowed exception is what Redis itself can lose: replication is
 * asynchronous, so a job the old master acknowledged just before it died may be missing on the
 * promoted replica; the reconciler sees the new server (its run id) and re-enqueues it from the raw
 * store, behind later messages of its patient. So an inversion must involve a message stored
 * before the kill, and the merge's rule (latest event time wins) still leaves the right final state.
 *
 * Needs `npx tsc -p .` first (the workers run dist/).
 */
import pg from 'pg';
import { parseConfig, type MemberConfig } from '../hub/config';
import { openRuntime, type Runtime } from '../cli/runtime';
import { bloodCount, encodeAs, simAdt, simOru, simPatient } from '../cli/simulate';
import { createTestDatabase, dropTestDatabase, listenApi, waitFor } from './support/hub';
import { assertBuildIsFresh, removeWorkerConfig, spawnWorker, stopProcess, writeWorkerConfig, outputTail, type Proc } from './support/processes';
import { RedisClusterProcesses, type ClusterNodeInfo } from './support/redisCluster';
import { hashPassword } from '../api/console/password';
import { LOCK_AFTER_FAILURES, SessionStore } from '../api/console/session';

const TOTAL = 1500;
const PATIENTS = 150;
const PARTITIONS = 4;
/** Messages per second from the intake: the stream lasts ~25 s, so the failover lands in its middle. */
const RATE = 60;
const KILL_AT = 500;
const PREFIX = `{yt-rcluster-${process.pid}}`;
const memberConfig = { id: 'm1', name: 'Member 1', tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', port: 0 }] };
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

let cluster: RedisClusterProcesses | undefined;
let databaseUrl: string | undefined;
let runtime: Runtime | undefined;
let configFile: string | undefined;
const workers: Proc[] = [];
let db: pg.Pool | undefined;
const logs: string[] = [];

beforeAll(async () => {
  assertBuildIsFresh();
  cluster = await RedisClusterProcesses.start({ masters: 3, replicas: 1, nodeTimeoutMs: 3000 });
  databaseUrl = await createTestDatabase('rcluster');
  const config = parseConfig({ members: [memberConfig], databaseUrl, redisUrl: cluster.url, pipeline: { partitions: PARTITIONS, queuePrefix: PREFIX } });
  runtime = await openRuntime(config, { log: (t) => logs.push(t) });
  configFile = writeWorkerConfig({ databaseUrl, redisUrl: cluster.url, prefix: PREFIX, partitions: PARTITIONS, members: config.members });
  const env = { databaseUrl, redisUrl: cluster.url, prefix: PREFIX, partitions: PARTITIONS };
  workers.push(...(await Promise.all([spawnWorker(env, configFile), spawnWorker(env, configFile)])));
  await waitFor(async () => (await runtime!.queues.workerCount()) === 2, 30_000, 'both workers beating on the cluster');
  db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
}, 180_000);

afterAll(async () => {
  // Everything this file started goes, whatever failed: workers first (their shutdown talks to Redis and PostgreSQL).
  await Promise.all(workers.map((w) => stopProcess(w, 10_000).catch(() => undefined)));
  await runtime?.close().catch(() => undefined);
  await db?.end().catch(() => undefined);
  await cluster?.stop();
  if (configFile) removeWorkerConfig(configFile);
  if (databaseUrl) await dropTestDatabase(databaseUrl).catch(() => undefined);
}, 120_000);

/** YYYYMMDDHHMMSS, k seconds after a fixed start: a patient's later message is its newer event. */
function hl7Time(k: number): string {
  return new Date(Date.UTC(2026, 11, 7, 0, 0, 0) + k * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/** Message k: patient k mod PATIENTS; even k an ADT^A08 (address update-k), odd k an ORU^R01. */
function message(k: number): Buffer {
  const controlId = `RC-${k}`;
  const patient = simPatient(k % PATIENTS, 'R');
  const text =
    k % 2 === 1
      ? simOru({ controlId, patient, time: hl7Time(k) }, bloodCount.map((r, j) => ({ ...r, value: String(100 + ((k + j) % 50)) })))
      : simAdt({ controlId, patient, time: hl7Time(k), address: `update-${k}` }, 'A08');
  return encodeAs(text, 'UTF-8');
}

const workerTails = () => workers.map((w, i) => `--- worker ${i} (pid ${w.child.pid}):\n${outputTail(w, 20)}`).join('\n');

test('3 masters + 3 replicas: the master of the queues killed mid-stream, a replica takes over, every message processed once in per-patient order', async () => {
  const member = runtime!.config.members[0] as MemberConfig;
  const victim = await cluster!.ownerOf(`${PREFIX}:epoch`);
  expect(victim.replicas.length).toBe(1);
  // The hash tag really puts the queues in that slot: a queue key lives on the same master.
  expect((await cluster!.ownerOf(`${PREFIX}:pipeline-p0:meta`)).slot).toBe(victim.slot);

  const rawIds: number[] = [];
  let killAt = 0;
  let killedAfterRawId = 0;
  let promotedAt = 0;
  let promoted: ClusterNodeInfo | undefined;
  const t0 = Date.now();
  for (let k = 0; k < TOTAL; k++) {
    // The scenario's pace (a stream still running when the master dies and after), not a wait for a condition.
    const at = t0 + (k * 1000) / RATE;
    if (at > Date.now()) await new Promise((r) => setTimeout(r, at - Date.now()));
    const result = await runtime!.intake.receive({ member, channel, bytes: message(k) });
    expect(result.outcome).toBe('stored');
    rawIds.push(result.rawId);
    if (k === KILL_AT) {
      await cluster!.kill9(victim.master.port);
      killAt = Date.now();
      killedAfterRawId = result.rawId;
      // The promotion is watched beside the stream, which goes on meanwhile (its enqueues wait for it).
      void waitFor(
        async () => {
          const nodes = await cluster!.clusterNodes();
          const replica = nodes.find((n) => n.id === victim.replicas[0]!.id);
          if (!replica?.flags.includes('master') || !replica.slots.some(([a, b]) => victim.slot >= a && victim.slot <= b)) return false;
          promoted = replica;
          promotedAt = Date.now();
          return true;
        },
        90_000,
        'the replica promoted',
      ).catch(() => undefined);
    }
  }
  const streamEnd = Date.now();
  await runtime!.intake.drain();
  await waitFor(async () => promoted !== undefined, 90_000, 'the replica promoted').catch(() => undefined);
  expect({ promoted: promoted?.port ?? 'not promoted within 90 s' }).toEqual({ promoted: victim.replicas[0]!.port });
  await cluster!.waitHealthy(60_000);
  const dead = (await cluster!.clusterNodes()).find((n) => n.id === victim.master.id);
  expect(dead?.flags).toEqual(expect.arrayContaining(['fail']));

  let processedAt = 0;
  await waitFor(
    async () => {
      const r = await db!.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE status = 'queued'`);
      return r.rows[0]!.n === 0;
    },
    300_000,
    'every stored message processed',
  ).catch((e: Error) => {
    throw new Error(`${e.message}\nlogs: ${logs.join('\n')}\n${workerTails()}`);
  });
  processedAt = Date.now();

  // ---- exactly once ----
  const rows = (
    await db!.query<{ id: number; status: string; events: number; provenances: number }>(
      `SELECT r.id::int AS id, r.status,
              (SELECT count(*)::int FROM patient_event e WHERE e.raw_id = r.id) AS events,
              (SELECT count(*)::int FROM resource p WHERE p.raw_id = r.id AND p.resource_type = 'Provenance') AS provenances
         FROM raw_message r ORDER BY r.id`,
    )
  ).rows;
  expect(rows.map((r) => r.id)).toEqual(rawIds);
  expect(rows.filter((r) => r.status !== 'processed')).toEqual([]);
  expect(rows.filter((r) => r.events !== 1).map((r) => `${r.id}: ${r.events} events`)).toEqual([]);
  expect(rows.filter((r) => r.provenances !== 1).map((r) => `${r.id}: ${r.provenances} Provenances`)).toEqual([]);
  const reports = (await db!.query<{ version: number }>(`SELECT version FROM resource WHERE resource_type = 'DiagnosticReport'`)).rows;
  expect(reports.length).toBe(TOTAL / 2);
  expect(reports.filter((r) => r.version !== 1)).toEqual([]);
  expect((await db!.query(`SELECT 1 FROM quarantine`)).rowCount).toBe(0);

  // ---- per-patient order ----
  const events = (await db!.query<{ raw_id: number; mrn: string }>(`SELECT raw_id::int AS raw_id, mrn FROM patient_event ORDER BY applied_seq`)).rows;
  const appliedByPatient = new Map<string, number[]>();
  for (const e of events) appliedByPatient.set(e.mrn, [...(appliedByPatient.get(e.mrn) ?? []), e.raw_id]);
  expect(appliedByPatient.size).toBe(PATIENTS);
  const inversions: Array<[number, number]> = [];
  for (const applied of appliedByPatient.values()) {
    for (let i = 0; i < applied.length; i++) for (let j = i + 1; j < applied.length; j++) if (applied[i]! > applied[j]!) inversions.push([applied[j]!, applied[i]!]);
  }
  // Only a job the dying master had acknowledged (stored before the kill) may have been lost and put back late.
  expect(inversions.filter(([earlier]) => earlier > killedAfterRawId)).toEqual([]);
  const requeuedLate = new Set(inversions.map(([earlier]) => earlier));
  // Whatever the order, each patient ends at their last message (latest event time wins).
  const finals = (await db!.query<{ mrn: string; last_raw_id: number }>(`SELECT mrn, last_raw_id::int AS last_raw_id FROM source_patient`)).rows;
  expect(finals.length).toBe(PATIENTS);
  const lastOf = new Map<string, number>();
  for (const e of events) lastOf.set(e.mrn, Math.max(lastOf.get(e.mrn) ?? 0, e.raw_id));
  expect(finals.filter((f) => f.last_raw_id !== lastOf.get(f.mrn))).toEqual([]);

  for (const w of workers) expect(w.child.exitCode).toBeNull();
  // The pause the failover caused: the longest gap between two merges.
  const gap = (
    await db!.query<{ ms: number }>(
      `SELECT coalesce(max(extract(epoch FROM processed_at - prev) * 1000), 0)::int AS ms
         FROM (SELECT processed_at, lag(processed_at) OVER (ORDER BY processed_at) AS prev FROM raw_message) t`,
    )
  ).rows[0]!.ms;
  process.stderr.write(
    `redis-cluster: ${TOTAL} messages at ${RATE}/s; master :${victim.master.port} (slot ${victim.slot}) SIGKILLed at ${((killAt - t0) / 1000).toFixed(1)} s; ` +
      `replica :${promoted!.port} master after ${promotedAt - killAt} ms; longest pause between two merges ${gap} ms; stream ended ${((streamEnd - t0) / 1000).toFixed(1)} s; ` +
      `all processed ${((processedAt - t0) / 1000).toFixed(1)} s; messages applied out of patient order (lost by the failover, re-enqueued): ${requeuedLate.size}\n`,
  );
}, 600_000);

test('the API on the cluster: /ready, console sessions and the login lockout script', async () => {
  // Runs after the failover above: the clients follow the promoted replica.
  const { server, base } = await listenApi(runtime!);
  try {
    const ready = await fetch(`${base}/ready`);
    expect({ status: ready.status, body: await ready.json() }).toEqual({ status: 200, body: { status: 'ready' } });
  } finally {
    await new Promise((r) => server.close(r));
  }
  const config = parseConfig({
    members: [memberConfig],
    redisUrl: cluster!.url,
    pipeline: { partitions: PARTITIONS, queuePrefix: PREFIX },
    console: { users: [{ name: 'ops', role: 'admin', passwordHash: await hashPassword('right', { N: 1024 }) }] },
  });
  const sessions = new SessionStore(runtime!.queues.redis, config, PREFIX);
  const ok = await sessions.login('ops', 'right');
  if (!('token' in ok)) throw new Error(`login refused: ${ok.error}`);
  expect(await sessions.find(ok.token)).toEqual({ user: 'ops', role: 'admin' });
  for (let i = 0; i < LOCK_AFTER_FAILURES; i++) expect(await sessions.login('ops', 'wrong')).toEqual({ error: 'wrong' });
  expect(await sessions.login('ops', 'right')).toEqual({ error: 'locked' });
  await sessions.logout(ok.token);
  expect(await sessions.find(ok.token)).toBeUndefined();
}, 60_000);
