/**
 * End-to-end pipeline throughput: messages already stored and queued, then N `yilian worker`
 * processes run every stage (parse → convert → map → identify → merge, the patient-index link
 * included) until all are processed.
 *   node dist/bench/pipeline.js [messages] [--workers 1,2,4,8] [--identity-changes]
 * Peers in the same run: BullMQ's no-op job rate on the same Redis (one hop), PostgreSQL's
 * multi-row insert ceiling for the rows the pipeline writes (the converted resources of the same
 * messages, into the hub's own resource table), and our intake-only rate (storing and queueing the
 * same messages); end to end is printed as a share of each.
 * endToEnd and bullmqNoop are the harness bench/redisCluster.ts runs on a Redis Cluster too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { ensureMember } from '../hub/config';
import { bloodCount, encodeAs, simAdt, simOru, simPatient } from '../cli/simulate';
import { benchHub, REDIS_URL } from './support';
import { parseStage } from '../pipeline/stages/parse';
import { convertStage } from '../pipeline/stages/convert';
import { mapStage } from '../pipeline/stages/map';
import { clusterTarget, redisConnection } from '../hub/redis';

const args = process.argv.slice(2);
const workersAt = args.indexOf('--workers');
const workerCounts = (workersAt >= 0 ? args[workersAt + 1] ?? '' : '1,2').split(',').map(Number);
const messages = Number(args.find((a, i) => /^\d+$/.test(a) && i !== workersAt + 1) ?? 20_000);
/**
 * `--identity-changes`: every ADT states a new address, so each is a changed identity for the
 * patient index (matched again under its exclusive lock, hub/mpi/links.ts) instead of one whose
 * times only follow — half the messages, the worst case of a feed of demographic updates.
 */
const identityChanges = args.includes('--identity-changes');

/** The ADT/ORU mix: message i of `total`, for 2,000 patients (one in ten messages a registration at 20,000). */
function mixMessage(i: number): string {
  const patient = simPatient(i % 2000, 'E');
  if (i % 2) return simOru({ controlId: `E${i}`, patient, charset: 'UNICODE UTF-8' }, bloodCount);
  return simAdt({ controlId: `E${i}`, patient, charset: 'UNICODE UTF-8', ...(identityChanges ? { address: `解放路${i}号` } : {}) });
}

/** CPU seconds a process on this machine has used (Linux /proc; USER_HZ is 100 on mainstream kernels), undefined elsewhere. */
function cpuSeconds(pid: number | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // the name may hold spaces
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime
  } catch {
    return undefined;
  }
}

/** CPU seconds of the PostgreSQL backends serving the bench database, by pid (local PostgreSQL only). */
async function backendCpu(db: { query<T>(sql: string): Promise<{ rows: T[] }> }): Promise<Map<number, number>> {
  const pids = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`);
  return new Map(pids.rows.flatMap((r) => { const s = cpuSeconds(r.pid); return s === undefined ? [] : [[r.pid, s] as [number, number]]; }));
}

/** CPU seconds the Redis server has used, all its clients' work included (INFO cpu). */
async function redisCpu(redis: { info(section: string): Promise<string> }): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** CPU milliseconds a message cost: the worker processes, the bench database's PostgreSQL backends (local only), the Redis server. */
export interface CpuPerMessage {
  workers: number;
  postgres?: number;
  redis?: number;
}

/**
 * Messages/s end to end, from the workers' spawn to the last message processed; `intake` gets the
 * rate at which the same messages were stored and queued, `cpu` the CPU milliseconds a message cost
 * the worker processes and PostgreSQL's backends (when PostgreSQL runs on this machine): what the
 * two cores are spent on. `steady` gets the rate while the 10th to the 90th percent of the messages
 * were merged: without each process's start (about 1.2 s of CPU: loading, migrations check, the
 * terminology) and its code's first, unoptimised runs, which a worker pays once in its life and
 * the end-to-end figure pays once per process, nor the tail, where the partitions left are fewer
 * than the processes.
 */
export async function endToEnd(workers: number, redisUrl = REDIS_URL, total = messages, intake?: { rate: number }, cpu?: CpuPerMessage, steady?: { rate: number }): Promise<number> {
  const hub = await benchHub(`e2e${workers}`, [], redisUrl);
  const member = ensureMember(hub.runtime.config, 'bench', () => undefined);
  const channel = { id: 'bench', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  const texts = Array.from({ length: total }, (_, i) => encodeAs(mixMessage(i), 'UTF-8'));
  const s0 = performance.now();
  await Promise.all(texts.map((bytes) => hub.runtime.intake.receive({ member, channel, bytes })));
  await hub.runtime.intake.drain();
  if (intake) intake.rate = total / ((performance.now() - s0) / 1000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-bench-'));
  const configFile = path.join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify({ pipeline: { queuePrefix: hub.prefix, partitions: 16 } }));
  const children: ChildProcess[] = [];
  const backendsBefore = await backendCpu(hub.runtime.db);
  const redisBefore = await redisCpu(hub.runtime.queues.redis);
  const t0 = performance.now();
  for (let w = 0; w < workers; w++) {
    children.push(
      // BENCH_WORKER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the workers.
      spawn(process.execPath, [...(process.env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? []), path.join(__dirname, '..', 'cli', 'yilian.js'), 'worker'], {
        env: { ...process.env, DATABASE_URL: hub.databaseUrl, REDIS_URL: redisUrl, YILIAN_CONFIG: configFile },
        stdio: 'ignore',
      }),
    );
  }
  const crossed: { at10?: number; at90?: number } = {};
  for (;;) {
    // EXISTS on the partial index of queued messages: a count here cost PostgreSQL ~10 ms per poll
    // at 20,000 queued (29 s of its time in one run, taken from the workers being measured); 100 ms apart, not 20.
    // Progress from the sequence of patient_event (one row a merged message, every bench message has a patient): no scan.
    const r = await hub.runtime.db.query<{ any: boolean; merged: string }>(
      `SELECT EXISTS (SELECT 1 FROM raw_message WHERE status = 'queued') AS any,
              (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM patient_event_applied_seq_seq) AS merged`,
    );
    const merged = Number(r.rows[0]!.merged);
    if (merged >= total * 0.1) crossed.at10 ??= performance.now();
    if (merged >= total * 0.9) crossed.at90 ??= performance.now();
    if (!r.rows[0]!.any) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const seconds = (performance.now() - t0) / 1000;
  if (steady && crossed.at10 !== undefined && crossed.at90 !== undefined && crossed.at90 > crossed.at10) steady.rate = (total * 0.8) / ((crossed.at90 - crossed.at10) / 1000);
  if (cpu) {
    cpu.workers = (children.reduce((sum, c) => sum + (cpuSeconds(c.pid) ?? 0), 0) * 1000) / total;
    const backends = await backendCpu(hub.runtime.db);
    cpu.redis = ((await redisCpu(hub.runtime.queues.redis)) - redisBefore) * 1000 / total;
    if (backends.size) cpu.postgres = ([...backends].reduce((sum, [pid, s]) => sum + s - (backendsBefore.get(pid) ?? 0), 0) * 1000) / total;
  }
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => new Promise((r) => c.once('exit', r))));
  const processed = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE status = 'processed'`);
  await hub.close();
  if (processed.rows[0]!.n !== total) throw new Error(`only ${processed.rows[0]!.n} of ${total} processed`);
  return total / seconds; // includes worker start-up (~0.5 s)
}

export async function bullmqNoop(jobs: number, redisUrl = REDIS_URL): Promise<number> {
  const prefix = clusterTarget(redisUrl) ? `{bench-noop-${process.pid}}` : `bench-noop-${process.pid}`;
  const connection = redisConnection(redisUrl);
  const queue = new Queue('noop', { connection, prefix });
  for (let i = 0; i < jobs; i += 1000) await queue.addBulk(Array.from({ length: 1000 }, (_, k) => ({ name: 'j', data: { i: i + k }, opts: { removeOnComplete: true } })));
  let done = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const worker = new Worker('noop', async () => undefined, { connection, prefix, concurrency: 16 });
    worker.on('completed', () => {
      if (++done === jobs) void worker.close().then(() => resolve());
    });
  });
  const rate = jobs / ((performance.now() - t0) / 1000);
  await queue.obliterate({ force: true });
  await queue.close();
  connection.disconnect();
  return rate;
}

/**
 * PostgreSQL's ceiling for what the pipeline writes: the converted and mapped resources of the same
 * messages (the real stages, in this process), inserted 1,000 rows a statement into the hub's own
 * `resource` table (its indexes and triggers), on a fresh database. Returns messages/s.
 */
async function insertCeiling(total: number): Promise<{ messagesPerSecond: number; rowsPerMessage: number }> {
  const hub = await benchHub('ceiling');
  const member = ensureMember(hub.runtime.config, 'bench', () => undefined);
  const channel = { id: 'bench', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  const texts = Array.from({ length: total }, (_, i) => encodeAs(mixMessage(i), 'UTF-8'));
  // The raw messages first (the resources reference them), not timed.
  const stored = await Promise.all(texts.map((bytes) => hub.runtime.intake.receive({ member, channel, bytes })));
  const rows: Array<{ content: unknown; raw_id: number }> = [];
  texts.forEach((bytes, i) => {
    const rawId = stored[i]!.rawId;
    const converted = convertStage(parseStage({ bytes, policy: { defaultCharset: 'UTF-8' } }), { memberId: 'bench', channelId: 'bench', rawId, utcOffsetMinutes: 480, member });
    // Each message's own copy of a shared resource (its Organization) made unique: a multi-row
    // INSERT cannot write one key twice, and the ceiling is for rows, not for conflicts.
    for (const r of mapStage(converted, { member }).resources) rows.push({ content: { ...r, id: `${r.id}-${i}` }, raw_id: rawId });
  });
  const t0 = performance.now();
  for (let i = 0; i < rows.length; i += 1000) {
    await hub.runtime.db.query(
      `INSERT INTO resource (resource_type, id, member_id, content, raw_id, mapping_versions)
       SELECT x.content->>'resourceType', x.content->>'id', 'bench', x.content, x.raw_id, '{}' FROM jsonb_to_recordset($1::jsonb) AS x(content jsonb, raw_id bigint)`,
      [JSON.stringify(rows.slice(i, i + 1000))],
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  await hub.close();
  return { messagesPerSecond: total / seconds, rowsPerMessage: rows.length / total };
}

async function main() {
  const noop = await bullmqNoop(20_000);
  const ceiling = await insertCeiling(messages);
  const rates: Array<[number, number, CpuPerMessage, number]> = [];
  const intake = { rate: 0 };
  for (const n of workerCounts) {
    const cpu: CpuPerMessage = { workers: 0 };
    const steady = { rate: NaN };
    rates.push([n, await endToEnd(n, REDIS_URL, messages, n === workerCounts[0] ? intake : undefined, cpu, steady), cpu, steady.rate]);
  }
  const best = Math.max(...rates.map(([, r]) => r));
  const share = (peer: number) => `${((best / peer) * 100).toFixed(1)} %`;
  console.log(`Pipeline end-to-end (${messages} stored ADT/ORU messages for 2,000 patients${identityChanges ? ', every ADT a changed identity' : ''}, 16 partitions, all five stages and the patient-index link, PostgreSQL + Redis on this machine)`);
  for (const [n, rate, cpu, steady] of rates) {
    const postgres = cpu.postgres === undefined ? '' : `, PostgreSQL backends ${cpu.postgres.toFixed(2)} ms`;
    const redis = cpu.redis === undefined ? '' : `, Redis ${cpu.redis.toFixed(2)} ms`;
    console.log(`  ${String(n).padStart(2)} worker process${n === 1 ? ' ' : 'es'}: ${rate.toFixed(0)} msg/s, steady ${steady.toFixed(0)} msg/s (CPU a message: workers ${cpu.workers.toFixed(2)} ms${postgres}${redis})`);
  }
  console.log(`  (msg/s: from the workers' spawn to the last message; steady: while the 10th to the 90th percent were merged)`);
  console.log(`  peers (best end to end as a share of each):`);
  console.log(`    BullMQ no-op jobs, 1 process, concurrency 16        : ${noop.toFixed(0)} jobs/s (${share(noop)})`);
  console.log(`    PostgreSQL multi-row INSERT of the same resources     : ${ceiling.messagesPerSecond.toFixed(0)} msg/s, ${ceiling.rowsPerMessage.toFixed(1)} rows a message (${share(ceiling.messagesPerSecond)})`);
  console.log(`    intake only (stored durably and queued, same messages): ${intake.rate.toFixed(0)} msg/s (${share(intake.rate)})`);
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
