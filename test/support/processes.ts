/**
 * Real processes for integration tests: `yilian worker` children (the compiled CLI, so run
 * `npx tsc -p .` first) and private redis-server instances that a test may kill and restart.
 * Every process started here is tracked so afterAll can stop exactly those, by pid.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { MemberConfig } from '../../hub/config';

const root = path.join(__dirname, '..', '..');
export const CLI = path.join(root, 'dist', 'cli', 'yilian.js');

/**
 * The spawned workers run dist/, not the sources jest compiles: refuse to test a stale build
 * (a fix in pipeline/*.ts would otherwise not be what the worker processes run).
 */
export function assertBuildIsFresh(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p .\` before these tests`);
  for (const dir of ['pipeline', 'hub', 'adapters', 'cli', 'mappings']) {
    for (const file of walk(path.join(root, dir))) {
      if (!file.endsWith('.ts') || file.endsWith('.test.ts') || file.endsWith('.d.ts')) continue;
      const built = path.join(root, 'dist', path.relative(root, file)).replace(/\.ts$/, '.js');
      if (!existsSync(built) || statSync(built).mtimeMs < statSync(file).mtimeMs) {
        throw new Error(`${path.relative(root, built)} is older than its source: run \`npx tsc -p .\` before these tests`);
      }
    }
  }
}

function* walk(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else yield full;
  }
}

export interface Proc {
  child: ChildProcess;
  /** stdout and stderr so far (for failure messages). */
  output(): string;
  exited: Promise<number | null>;
}

function track(child: ChildProcess): Proc {
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  return { child, output: () => out, exited };
}

/** Wait until `pattern` appears in the process output, failing early if the process exits. */
export async function waitForOutput(proc: Proc, pattern: RegExp, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(proc.output())) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`process exited before ${pattern}: ${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}: ${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stop one process: SIGTERM (graceful), SIGKILL if it is still there after `graceMs`. */
export async function stopProcess(proc: Proc, graceMs = 10_000): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  await proc.exited;
  clearTimeout(timer);
}

export async function killHard(proc: Proc): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGKILL');
  await proc.exited;
}

export interface WorkerEnv {
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  partitions: number;
  members?: MemberConfig[];
}

/** Config file for spawned workers: the test's queue prefix and partitions, and its members (charset policies). */
export function writeWorkerConfig(env: WorkerEnv): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-int-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ members: env.members ?? [], pipeline: { queuePrefix: env.prefix, partitions: env.partitions } }));
  return file;
}

export function removeWorkerConfig(file: string): void {
  rmSync(path.dirname(file), { recursive: true, force: true });
}

/** `node dist/cli/yilian.js worker`; resolves once the worker says it is up. */
export async function spawnWorker(env: WorkerEnv, configFile: string): Promise<Proc> {
  const child = spawn(process.execPath, [CLI, 'worker'], {
    env: { ...process.env, DATABASE_URL: env.databaseUrl, REDIS_URL: env.redisUrl, YILIAN_CONFIG: configFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = track(child);
  await waitForOutput(proc, /worker up/);
  return proc;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A private, empty, non-persistent redis-server on `port`; resolves once it answers PING. */
export async function startRedisServer(port: number): Promise<Proc> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = track(child);
  void proc.exited.then(() => rmSync(dir, { recursive: true, force: true }));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server on ${port} exited: ${proc.output()}`);
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      if ((await probe.ping()) === 'PONG') return proc;
    } catch {
      // not listening yet
    } finally {
      probe.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not answer: ${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The last `lines` lines of a process's output (failure messages name what each process said last). */
export function outputTail(proc: Proc, lines = 30): string {
  return proc.output().split('\n').slice(-lines).join('\n');
}

/** A config file with the given content (members with their channels, pipeline, …) in a temp dir; remove with removeWorkerConfig. */
export function writeHubConfig(content: Record<string, unknown>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-int-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

export interface CliEnv {
  databaseUrl: string;
  redisUrl: string;
}

/**
 * `node dist/cli/yilian.js <args>` (e.g. `serve --listeners-only`) with the test's stores and config
 * file; resolves once its output matches `ready` (fails early if it exits first).
 */
export async function spawnCli(args: string[], env: CliEnv, configFile: string, ready: RegExp, timeoutMs = 60_000): Promise<Proc> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, DATABASE_URL: env.databaseUrl, REDIS_URL: env.redisUrl, YILIAN_CONFIG: configFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = track(child);
  await waitForOutput(proc, ready, timeoutMs);
  return proc;
}

/** `yilian serve --listeners-only`; resolves once every MLLP channel in the config reports its port. */
export async function spawnListeners(env: CliEnv, configFile: string, mllpChannels: number, timeoutMs = 60_000): Promise<Proc> {
  const ready = new RegExp(`(?:MLLP \\S+ on port \\d+[^]*){${mllpChannels}}`);
  return spawnCli(['serve', '--listeners-only'], env, configFile, ready, timeoutMs);
}

/** What a CLI run that went to its end left: exit code (null when killed), output, its pid. */
export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  pid: number;
}

/** This process's environment without the store and config settings a test did not ask for. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'YILIAN_CONFIG']) if (!extra[name]) delete env[name];
  return env;
}

/** Runs the built CLI to its end, whatever the exit code. */
export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: options.env ?? cleanEnv(), cwd: options.cwd, timeout: options.timeoutMs ?? 0, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr, pid: child.pid! }),
    );
  });
}
