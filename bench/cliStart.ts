/**
 * How long `yilian status` takes from the shell (issue 19, target 7: < 1 s on PostgreSQL and Redis,
 * < 3 s on the embedded store), hyperfine-style: each case run N times as a new process, the cases
 * interleaved round by round so a change in the machine's load falls on all of them, min / median /
 * p90 of the wall time from spawn to exit. Peers in the same run: `node -e 0` (the floor of any
 * Node program), `psql -c 'select 1'` and `redis-cli ping` (a client's connect and one round trip).
 *
 *   npx tsc -p . && node dist/bench/cliStart.js [runs] [--baseline <dir with an older build's dist/>]
 *
 * The stores are private: a new database on the machine's PostgreSQL, a new queue prefix on its
 * Redis, an embedded store in a temp dir. Each store's first command (which creates the schema) is
 * timed apart from the rest. --baseline adds the same cases run by another build (e.g. the commit
 * before a change, unpacked with `git archive` and built), for a before/after in one run.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PipelineQueues } from '../pipeline/queues';
import { percentile, PG_ADMIN_URL, REDIS_URL } from './support';

interface Case {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** One run: wall milliseconds; a failed run stops the benchmark (a fast failure is not a fast start). */
function timeOnce(c: Case): number {
  const started = performance.now();
  const ran = spawnSync(c.command, c.args, { env: c.env ?? process.env, cwd: c.cwd, encoding: 'utf8', timeout: 120_000 });
  const ms = performance.now() - started;
  if (ran.status !== 0) throw new Error(`${c.name}: exit ${ran.status ?? ran.signal}: ${ran.stderr || ran.error?.message}`);
  return ms;
}

function summary(values: number[]): string {
  const f = (ms: number) => `${Math.round(ms)}`.padStart(5);
  return `min ${f(Math.min(...values))} ms  median ${f(percentile(values, 50))} ms  p90 ${f(percentile(values, 90))} ms`;
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 15);
  const baselineAt = process.argv.indexOf('--baseline');
  const baseline = baselineAt > 0 ? path.resolve(process.argv[baselineAt + 1]!) : undefined;
  const cli = path.join(__dirname, '..', 'cli', 'yilian.js');

  const dbName = `yilian_bench_clistart_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const databaseUrl = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${dbName}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-clistart-'));
  const prefix = `bench-clistart-${randomBytes(3).toString('hex')}`;
  // JSON, not YAML: the configuration a deployment would pass, with this run's private queue prefix.
  const pgConfig = path.join(dir, 'pg.json');
  writeFileSync(pgConfig, JSON.stringify({ pipeline: { queuePrefix: prefix } }));
  const embeddedConfig = path.join(dir, 'embedded.json');
  writeFileSync(embeddedConfig, JSON.stringify({ dataDir: path.join(dir, 'store') }));
  const bare = { ...process.env };
  delete bare.DATABASE_URL;
  delete bare.REDIS_URL;
  delete bare.YILIAN_CONFIG;
  const onServers = { ...bare, DATABASE_URL: databaseUrl, REDIS_URL, YILIAN_CONFIG: pgConfig };
  const embedded = { ...bare, YILIAN_CONFIG: embeddedConfig };
  const pgUrl = new URL(databaseUrl);
  const redisUrl = new URL(REDIS_URL);

  const builds: Array<[string, string]> = [['', cli], ...(baseline ? [['baseline ', path.join(baseline, 'dist', 'cli', 'yilian.js')] as [string, string]] : [])];
  const cases: Case[] = [
    { name: 'node -e 0', command: process.execPath, args: ['-e', '0'] },
    { name: "psql -c 'select 1'", command: 'psql', args: ['-h', pgUrl.hostname, '-p', pgUrl.port || '5432', '-U', pgUrl.username || 'postgres', '-d', dbName, '-Atqc', 'select 1'] },
    { name: 'redis-cli ping', command: 'redis-cli', args: ['-h', redisUrl.hostname, '-p', redisUrl.port || '6379', 'ping'] },
    ...builds.flatMap(([label, file]): Case[] => [
      { name: `${label}yilian status (PostgreSQL + Redis)`, command: process.execPath, args: [file, 'status'], env: onServers },
      { name: `${label}yilian status (embedded store)`, command: process.execPath, args: [file, 'status'], env: embedded },
    ]),
  ];
  try {
    const loadBefore = os.loadavg()[0]!;
    // The first command on each store creates its schema: timed apart, not part of the figures.
    const first = [`first yilian status on a new database: ${Math.round(timeOnce(cases[3]!))} ms`, `first yilian status on a new embedded store: ${Math.round(timeOnce(cases[4]!))} ms`];
    const times = new Map<string, number[]>(cases.map((c) => [c.name, []]));
    for (let round = 0; round < runs; round++) for (const c of cases) times.get(c.name)!.push(timeOnce(c));
    const loadAfter = os.loadavg()[0]!;
    console.log(`yilian status start time, ${runs} runs per case, interleaved (${new Date().toISOString()}, node ${process.version}, ${os.cpus().length} cores)`);
    console.log(`  machine load average (1 min) before / after: ${loadBefore.toFixed(1)} / ${loadAfter.toFixed(1)}`);
    for (const line of first) console.log(`  ${line}`);
    for (const c of cases) console.log(`  ${c.name.padEnd(46)} ${summary(times.get(c.name)!)}`);
  } finally {
    // BullMQ writes each queue's meta key when a command opens it: this run's prefix goes with it.
    const queues = new PipelineQueues({ redisUrl: REDIS_URL, prefix, partitions: 16, attempts: 1, backoffMs: 1 });
    await queues.removeAllKeys();
    await queues.close();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
