/**
 * Row 2 in the real process: `yilian serve --listeners-only` with a file channel. A file whose name
 * is too long to archive with its timestamp used to end the process (unhandled rejection from the
 * poll timer) one second after every restart. Run `npx tsc -p .` first: this spawns dist/.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { simAdt, simPatient } from '../cli/simulate';
import { createTestDatabase, dropTestDatabase, REDIS_URL, waitFor } from './support/hub';
import { assertBuildIsFresh, CLI, stopProcess, waitForOutput, type Proc } from './support/processes';

let work: string;
let databaseUrl: string;
let proc: Proc | undefined;
let client: pg.Client;

beforeAll(async () => {
  assertBuildIsFresh();
  work = mkdtempSync(path.join(os.tmpdir(), 'yilian-serve-file-'));
  databaseUrl = await createTestDatabase('fileserve');
});

afterAll(async () => {
  if (proc) await stopProcess(proc);
  await client?.end();
  await dropTestDatabase(databaseUrl);
  rmSync(work, { recursive: true, force: true });
});

test('serve survives a file whose name is too long to archive as it is, and keeps processing later files', async () => {
  const dir = path.join(work, 'drop');
  mkdirSync(dir);
  // 236 characters as in the report, 242 bytes of UTF-8: with the 16-byte timestamp prefix past 255.
  const longName = 'x'.repeat(230) + '检验.hl7';
  // Dropped before the start, as after a restart of the crash loop.
  writeFileSync(path.join(dir, longName), simAdt({ controlId: 'SERVE-LONG', patient: simPatient(1, 'S') }));
  const config = path.join(work, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      members: [{ id: 'chc', name: '社区', tier: 'primary', channels: [{ id: 'drop', kind: 'file', dir, stableMs: 200, pollIntervalMs: 200 }] }],
      pipeline: { queuePrefix: `yt-fileserve-${randomBytes(3).toString('hex')}`, partitions: 2 },
    }),
  );
  const child = spawn(process.execPath, [CLI, 'serve', '--listeners-only'], {
    env: { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL, YILIAN_CONFIG: config },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  proc = { child, output: () => out, exited };
  await waitForOutput(proc, /file chc\/drop watching/);
  client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const stored = async (controlId: string) => (await client.query(`SELECT 1 FROM raw_message WHERE control_id = $1`, [controlId])).rowCount === 1;
  const alive = () => child.exitCode === null && child.signalCode === null;

  await waitFor(async () => !alive() || (!existsSync(path.join(dir, longName)) && (await stored('SERVE-LONG'))), 30_000, 'the long-named file archived');
  expect({ alive: alive(), out }).toEqual({ alive: true, out: expect.any(String) });
  const archived = readdirSync(path.join(dir, 'archive')).filter((n) => n.endsWith('.hl7'));
  expect(archived).toHaveLength(1);
  expect(Buffer.byteLength(`${archived[0]!}.reason.txt`)).toBeLessThanOrEqual(255);

  // Later files: the same poller goes on.
  for (const i of [1, 2]) {
    writeFileSync(path.join(dir, `later-${i}.hl7`), simAdt({ controlId: `SERVE-LATER-${i}`, patient: simPatient(1 + i, 'S') }));
    await waitFor(async () => !alive() || (await stored(`SERVE-LATER-${i}`)), 30_000, `later file ${i} stored`);
    expect(alive()).toBe(true);
  }
  expect(out).not.toMatch(/unhandled|ENAMETOOLONG/i);
});
