/**
 * The embedded store (PGlite in dataDir) as users meet it, through the compiled CLI:
 * - `yilian demo` leaves its store and configuration in dataDir, and every command its closing
 *   lines suggest works on them afterwards;
 * - a second process on a store that a `yilian serve` holds stops with one line naming the holder
 *   (exit 2), no wasm abort, and starts no redis-server of its own that outlives it;
 * - the holder's private redis-server ends with it, however it ends (SIGTERM, SIGKILL), and a
 *   holder that died leaves a store the next command can open.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { assertBuildIsFresh, cleanEnv, CLI, runCli, type Ran } from './support/processes';

/** Whether a process still runs from the private redis-server directory of CLI process `pid`. */
async function redisRunningFor(pid: number): Promise<boolean> {
  const ps = await new Promise<string>((resolve) => execFile('ps', ['-eo', 'args'], (_e, out) => resolve(out)));
  return ps.includes(`yilian-redis-${pid}/`);
}

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const stackLine = /^\s+at .+\(.+:\d+:\d+\)$|RuntimeError|Aborted\(\)/m;

beforeAll(() => assertBuildIsFresh());

test('the demo leaves its store in dataDir, and each command its closing lines suggest works on it', async () => {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'yilian-demo-store-'));
  const demo = await runCli(['demo', '--quick'], { cwd, env: cleanEnv() });
  expect(demo.stderr.split('\n').filter((l) => l.startsWith('yilian:'))).toEqual([]);
  expect(demo.code).toBe(0);
  const lines = demo.stdout.split('\n');
  const next = lines.findIndex((l) => l.startsWith('== Next: the demo\'s store stays in .yilian'));
  expect(next).toBeGreaterThan(0);
  expect(lines[next + 1]).toBe('export YILIAN_CONFIG=.yilian/demo.json');
  const suggested = lines.slice(next + 2).filter((l) => l.startsWith('  yilian ')).map((l) => l.trim().split(/\s+/).slice(1));
  expect(suggested.map((a) => a.slice(0, 2).join(' '))).toEqual(
    expect.arrayContaining(['status', 'replay --raw-id', 'mpi export', 'mpi review', 'mappings coverage', 'quarantine list']),
  );
  const env = cleanEnv({ YILIAN_CONFIG: '.yilian/demo.json' });
  for (const args of suggested) {
    const ran = await runCli(args, { cwd, env });
    expect({ args, code: ran.code, errors: ran.stderr.split('\n').filter((l) => l.startsWith('yilian:')) }).toEqual({ args, code: 0, errors: [] });
    expect(ran.stdout.trim().length).toBeGreaterThan(0);
    // Each command started its own redis-server (or none) and left none behind.
    expect(await redisRunningFor(ran.pid)).toBe(false);
    if (args[0] === 'replay') {
      // No worker is up: the stages ran in the command, the message did not stay queued in a Redis that ended with it.
      const outcome = JSON.parse(ran.stdout.trim().split('\n').pop()!) as { replayed: number; outcome: Record<string, number> };
      expect(outcome.replayed).toBe(1);
      expect(outcome.outcome.queued).toBeUndefined();
      const shown = await runCli(['quarantine', 'show', args[2]!], { cwd, env });
      expect(shown.stdout).not.toMatch(/status queued/);
    }
  }
  // Status without the demo's configuration still reads the store in the default dataDir.
  const status = await runCli(['status', '--json'], { cwd, env: cleanEnv() });
  const channels = (JSON.parse(status.stdout) as { channels: Array<{ member: string; processed: number }> }).channels;
  expect(channels.map((c) => c.member).sort()).toEqual(expect.arrayContaining(['community', 'county', 'lead']));
  expect(channels.every((c) => c.processed > 0)).toBe(true);
}, 600_000);

describe('a store held by `yilian serve`', () => {
  let cwd: string;
  let serve: ChildProcess | undefined;
  let serveOutput = '';
  const env = () => cleanEnv({ YILIAN_CONFIG: path.join(cwd, 'config.json') });

  async function startServe(): Promise<ChildProcess> {
    serveOutput = '';
    const child = spawn(process.execPath, [CLI, 'serve', '--api-only'], { cwd, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (serveOutput += d));
    child.stderr!.on('data', (d) => (serveOutput += d));
    await until(() => /API on/.test(serveOutput) || child.exitCode !== null, 'serve up', 60_000);
    if (child.exitCode !== null) throw new Error(`serve exited: ${serveOutput}`);
    return child;
  }

  beforeAll(() => {
    cwd = mkdtempSync(path.join(os.tmpdir(), 'yilian-held-'));
    writeFileSync(path.join(cwd, 'config.json'), JSON.stringify({ api: { host: '127.0.0.1', port: 0 }, members: [{ id: 'solo', name: 'Solo', tier: 'unknown', channels: [] }] }));
    writeFileSync(path.join(cwd, 'adt.hl7'), encodeAs(simAdt({ controlId: 'HELD-1', patient: simPatient(1, 'H'), charset: 'UNICODE UTF-8', segmentEnd: '\n' }), 'UTF-8'));
  });
  afterEach(async () => {
    if (serve && serve.exitCode === null && serve.signalCode === null) {
      serve.kill('SIGKILL');
      await new Promise((resolve) => serve!.once('exit', resolve));
    }
  });

  test('a second process stops with one line naming the holder, exit 2, and leaves no redis-server', async () => {
    serve = await startServe();
    const holder = JSON.parse(readFileSync(path.join(cwd, '.yilian', 'pglite.holder'), 'utf8')) as { pid: number; command: string };
    expect(holder).toEqual(expect.objectContaining({ pid: serve.pid, command: 'yilian serve' }));
    const expected = `yilian: the embedded store ${path.join(cwd, '.yilian')} is in use by yilian serve (pid ${serve.pid}); stop it, or set DATABASE_URL to a PostgreSQL database`;
    for (const args of [['ingest', '--member', 'solo', 'adt.hl7'], ['status'], ['replay', '--raw-id', '1'], ['mpi', 'review'], ['quarantine', 'list']]) {
      const ran = await runCli(args, { cwd, env: env() });
      expect({ args, code: ran.code, stderr: ran.stderr }).toEqual({ args, code: 2, stderr: `${expected}\n` });
      expect(ran.stderr).not.toMatch(stackLine);
      expect(await redisRunningFor(ran.pid)).toBe(false);
    }
    // The holder is unharmed: a graceful stop ends it, its redis-server and its claim.
    serve.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => (serve!.exitCode !== null ? resolve(serve!.exitCode) : serve!.once('exit', resolve)));
    expect(code).toBe(0);
    expect(existsSync(path.join(cwd, '.yilian', 'pglite.holder'))).toBe(false);
    expect(await redisRunningFor(serve.pid!)).toBe(false);
    const ingest = await runCli(['ingest', '--member', 'solo', '--json', 'adt.hl7'], { cwd, env: env() });
    expect(JSON.parse(ingest.stdout.trim().split('\n').pop()!)).toEqual(expect.objectContaining({ stored: 1, failed: 0 }));
  }, 180_000);

  test('a holder killed with SIGKILL: its redis-server ends with it, and the next command takes the store over', async () => {
    serve = await startServe();
    await until(() => redisRunningFor(serve!.pid!), 'serve\'s redis-server running');
    serve.kill('SIGKILL');
    await new Promise((resolve) => (serve!.signalCode !== null ? resolve(null) : serve!.once('exit', resolve)));
    // The parent-death signal (setpriv --pdeathsig) ends the redis-server without any handler of the CLI running.
    await until(async () => !(await redisRunningFor(serve!.pid!)), 'the killed serve\'s redis-server to end', 15_000);
    expect(existsSync(path.join(cwd, '.yilian', 'pglite.holder'))).toBe(true); // stale: its process is gone
    const status = await runCli(['status', '--json'], { cwd, env: env() });
    expect(status.stderr).not.toMatch(/^yilian:/m);
    expect(status.code).toBe(0);
    expect((JSON.parse(status.stdout) as { channels: Array<{ member: string; received: number }> }).channels).toContainEqual(expect.objectContaining({ member: 'solo', received: 1 }));
    expect(existsSync(path.join(cwd, '.yilian', 'pglite.holder'))).toBe(false);
  }, 180_000);
});
