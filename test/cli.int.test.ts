/**
 * The `yilian` command as users and other checks run it: the compiled CLI in a child process.
 * `ingest --json` ends with the summary line; with no configuration and no DATABASE_URL/REDIS_URL
 * it runs on the embedded defaults (PGlite, its own redis-server) and still runs every stage.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { PipelineQueues } from '../pipeline/queues';
import { createTestDatabase, dropTestDatabase, REDIS_URL, SHARED_DATA } from './support/hub';

const run = promisify(execFile);
const cli = path.join(__dirname, '..', 'dist', 'cli', 'yilian.js');

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!extra.DATABASE_URL) delete env.DATABASE_URL;
  if (!extra.REDIS_URL) delete env.REDIS_URL;
  delete env.YILIAN_CONFIG;
  return env;
}

test('ingest on PostgreSQL and Redis: samples, a resend and garbage, summary as the last JSON line', async () => {
  const databaseUrl = await createTestDatabase('cli');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-cli-'));
  const config = path.join(dir, 'config.json');
  const prefix = `yt-cli-${process.pid}`;
  writeFileSync(config, JSON.stringify({ pipeline: { queuePrefix: prefix, partitions: 4 } }));
  const samples = path.join(SHARED_DATA, 'hl7v2', 'fhir-converter', 'messages');
  const files = ['ADT-A01-01.hl7', 'ORU-R01-01.hl7', 'LRI_2.0-NG_CBC_Typ_Message.hl7', 'ADT04-23.hl7'].map((f) => path.join(samples, f));
  writeFileSync(path.join(dir, 'garbage.hl7'), 'not hl7 at all\n');
  try {
    const env = cleanEnv({ DATABASE_URL: databaseUrl, REDIS_URL, YILIAN_CONFIG: config });
    const first = await run(process.execPath, [cli, 'ingest', '--member', 'newmember', '--json', ...files, path.join(dir, 'garbage.hl7')], { env });
    const summary = JSON.parse(first.stdout.trim().split('\n').pop()!);
    expect(summary).toEqual({ received: 5, stored: 5, duplicates: 0, quarantined: 1, failed: 0 });
    expect(first.stderr).toMatch(/member newmember is not configured/);
    const again = await run(process.execPath, [cli, 'ingest', '--member', 'newmember', '--json', files[0]!], { env });
    expect(JSON.parse(again.stdout.trim().split('\n').pop()!)).toEqual({ received: 1, stored: 0, duplicates: 1, quarantined: 0, failed: 0 });
    const status = await run(process.execPath, [cli, 'status', '--json'], { env });
    const parsed = JSON.parse(status.stdout);
    expect(parsed.channels).toContainEqual(expect.objectContaining({ member: 'newmember', channel: 'ingest', received: 5, processed: 4, quarantined: 1, duplicates: 1 }));
  } finally {
    await dropTestDatabase(databaseUrl);
    const queues = new PipelineQueues({ redisUrl: REDIS_URL, prefix, partitions: 4, attempts: 1, backoffMs: 1 });
    await queues.removeAllKeys();
    await queues.close();
  }
});

test('ingest with no configuration at all runs on the embedded defaults', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-embedded-'));
  const file = path.join(dir, 'adt.hl7');
  writeFileSync(file, encodeAs(simAdt({ controlId: 'EMB-1', patient: simPatient(1, 'E'), charset: 'GB18030', segmentEnd: '\n' }), 'GB18030'));
  const result = await run(process.execPath, [cli, 'ingest', '--member', 'solo', '--json', file], { env: cleanEnv(), cwd: dir });
  expect(JSON.parse(result.stdout.trim().split('\n').pop()!)).toEqual({ received: 1, stored: 1, duplicates: 0, quarantined: 0, failed: 0 });
  expect(readdirSync(path.join(dir, '.yilian'))).toContain('pglite');
  // A second run opens the same embedded store: its seeded data (the shipped ConceptMaps) is found, not seeded again.
  writeFileSync(file, encodeAs(simAdt({ controlId: 'EMB-2', patient: simPatient(2, 'E'), charset: 'GB18030', segmentEnd: '\n' }), 'GB18030'));
  const second = await run(process.execPath, [cli, 'ingest', '--member', 'solo', '--json', file], { env: cleanEnv(), cwd: dir });
  expect(JSON.parse(second.stdout.trim().split('\n').pop()!)).toEqual({ received: 1, stored: 1, duplicates: 0, quarantined: 0, failed: 0 });
});

test('a bad configuration exits non-zero naming the bad field', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-badcfg-'));
  const config = path.join(dir, 'bad.json');
  writeFileSync(config, JSON.stringify({ members: [{ id: 'm1', name: 'M1', tier: 'tertiary', channels: [{ id: 'his', kind: 'mllp', port: 'twenty' }] }] }));
  await expect(run(process.execPath, [cli, 'status', '--config', config], { env: cleanEnv() })).rejects.toMatchObject({
    code: 2,
    stderr: expect.stringContaining('members.0.channels.0.port'),
  });
});
