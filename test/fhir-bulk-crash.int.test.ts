/**
 * A `yilian pull` of a Bulk export killed (SIGKILL) in the middle of an NDJSON file: the next run
 * polls the same export (no new kick-off), skips the file it had finished, reads the cut-off file
 * again from its start — what was stored before the kill is a duplicate — and in the end every line
 * is in the raw store exactly once.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SYNTHEA_DIR, TestFhirServer } from './support/fhirServer';
import { startTestHub, waitFor, type TestHub } from './support/hub';
import { assertBuildIsFresh, CLI, killHard, waitForOutput, type Proc } from './support/processes';

describe('Bulk import killed mid-file', () => {
  let server: TestFhirServer;
  let hub: TestHub;
  let dir: string;

  beforeAll(async () => {
    assertBuildIsFresh();
    server = new TestFhirServer();
    await server.loadSynthea(['Patient']);
    await server.start();
    hub = await startTestHub('fhirbulkcrash');
    dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-fhir-bulk-crash-'));
  });

  afterAll(async () => {
    await hub?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('resumes the same export without loss or duplicates', async () => {
    // ~40 MB of Encounters under new ids, listed in the manifest after the Patient file.
    const source = readFileSync(path.join(SYNTHEA_DIR, 'Encounter.000.ndjson'), 'utf8').split('\n').filter(Boolean);
    const lines: string[] = [];
    for (let round = 0; lines.length < 25_000; round++) {
      for (const line of source) {
        const resource = JSON.parse(line) as { id: string };
        resource.id = `${resource.id.slice(0, 24)}-r${round}`;
        lines.push(JSON.stringify(resource));
      }
    }
    const file = path.join(dir, 'encounters.ndjson');
    writeFileSync(file, lines.join('\n') + '\n');
    server.bulkPolls = 1;
    server.bulkRetryAfterSeconds = 1;
    server.extraBulkFiles = [{ type: 'Encounter', file }];
    const configFile = path.join(dir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        members: [{ id: 'emr', name: 'EMR', tier: 'tertiary', channels: [{ id: 'bulk', kind: 'fhir-bulk', baseUrl: server.baseUrl, resourceTypes: ['Patient'], batchSize: 200 }] }],
        pipeline: { queuePrefix: hub.prefix, partitions: 4 },
      }),
    );
    const run = (): Proc => {
      const child = spawn(process.execPath, [CLI, 'pull', '--member', 'emr', '--channel', 'bulk', '--json'], {
        env: { ...process.env, DATABASE_URL: hub.databaseUrl, REDIS_URL: hub.config.redisUrl, YILIAN_CONFIG: configFile },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      return { child, output: () => out, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
    };
    const stored = async () => (await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE control_id LIKE 'Encounter/%'`)).rows[0]!.n;
    const kickoffs = () => server.requests.filter((r) => r.startsWith('GET /fhir/$export')).length;

    const first = run();
    await waitForOutput(first, /Patient 13 lines/, 60_000);
    await waitFor(async () => (await stored()) >= 2000, 60_000, 'part of the Encounter file stored');
    await killHard(first);
    const before = await stored();
    expect(before).toBeLessThan(lines.length);
    expect(kickoffs()).toBe(1);

    const second = run();
    expect(await second.exited).toBe(0);
    const summary = JSON.parse(second.output().trim().split('\n').pop()!) as { files: number; lines: number; stored: number; duplicates: number };
    expect(kickoffs()).toBe(1); // the same export, polled again
    expect(summary.files).toBe(1); // the Patient file was done: not read again
    expect(summary.lines).toBe(lines.length);
    expect(summary.stored + summary.duplicates).toBe(lines.length);
    expect(summary.duplicates).toBeGreaterThanOrEqual(before);
    const final = await hub.runtime.db.query<{ n: number; ids: number }>(`SELECT count(*)::int AS n, count(DISTINCT control_id)::int AS ids FROM raw_message WHERE control_id LIKE 'Encounter/%'`);
    expect(final.rows[0]).toEqual({ n: lines.length, ids: lines.length });
    const patients = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE control_id LIKE 'Patient/%'`);
    expect(patients.rows[0]!.n).toBe(13);
  });
});
