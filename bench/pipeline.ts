/**
 * End-to-end pipeline throughput: messages already stored and queued, then 1 or 2 `yilian worker`
 * processes run every stage (parse → convert → map → identify → merge) until all are processed.
 *   node dist/bench/pipeline.js [messages]
 * Also prints the no-op BullMQ rate on the same Redis as the peer figure for one hop.
 * endToEnd and bullmqNoop are the harness bench/redisCluster.ts runs on a Redis Cluster too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { ensureMember } from '../hub/config';
import { bloodCount, encodeAs, simAdt, simOru, simPatient } from '../cli/simulate';
import { benchHub, REDIS_URL } from './support';
import { clusterTarget, redisConnection } from '../hub/redis';

const messages = Number(process.argv[2] ?? 20_000);

export async function endToEnd(workers: number, redisUrl = REDIS_URL, total = messages): Promise<number> {
  const hub = await benchHub(`e2e${workers}`, [], redisUrl);
  const member = ensureMember(hub.runtime.config, 'bench', () => undefined);
  const channel = { id: 'bench', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  const stored = [];
  for (let i = 0; i < total; i++) {
    const patient = simPatient(i % 2000, 'E');
    const text = i % 2 ? simOru({ controlId: `E${i}`, patient, charset: 'UNICODE UTF-8' }, bloodCount) : simAdt({ controlId: `E${i}`, patient, charset: 'UNICODE UTF-8' });
    stored.push(hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') }));
  }
  await Promise.all(stored);
  await hub.runtime.intake.drain();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-bench-'));
  const configFile = path.join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify({ pipeline: { queuePrefix: hub.prefix, partitions: 16 } }));
  const children: ChildProcess[] = [];
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
  for (;;) {
    const r = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE status = 'queued'`);
    if (r.rows[0]!.n === 0) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  const seconds = (performance.now() - t0) / 1000;
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

async function main() {
  const noop = await bullmqNoop(20_000);
  const one = await endToEnd(1);
  const two = await endToEnd(2);
  console.log(`Pipeline end-to-end (${messages} stored ADT/ORU messages, 16 partitions, all five stages, PostgreSQL + Redis on this machine)`);
  console.log(`  peer: BullMQ no-op jobs, 1 process, concurrency 16 : ${noop.toFixed(0)} jobs/s`);
  console.log(`  1 worker process : ${one.toFixed(0)} msg/s`);
  console.log(`  2 worker processes: ${two.toFixed(0)} msg/s`);
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
