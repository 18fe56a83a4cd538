/**
 * A `yilian pull` process killed (SIGKILL) in the middle of paging: the next pull resumes from the
 * persisted cursor, and in the end every resource is in the raw store exactly once — nothing lost,
 * nothing twice.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestFhirServer } from './support/fhirServer';
import { startTestHub, type TestHub } from './support/hub';
import { assertBuildIsFresh, CLI, killHard, waitForOutput, type Proc } from './support/processes';

function spawnPull(env: NodeJS.ProcessEnv, configFile: string): Proc {
  const child = spawn(process.execPath, [CLI, 'pull', '--member', 'emr', '--channel', 'emr-fhir', '--json'], {
    env: { ...process.env, ...env, YILIAN_CONFIG: configFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

describe('FHIR REST pull killed mid-paging', () => {
  let server: TestFhirServer;
  let hub: TestHub;
  let dir: string;

  beforeAll(async () => {
    assertBuildIsFresh();
    server = new TestFhirServer();
    await server.loadSynthea(['Encounter']);
    await server.start();
    hub = await startTestHub('fhircrash');
    dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-fhir-crash-'));
  });

  afterAll(async () => {
    await hub?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('resumes from the cursor without loss or duplicates', async () => {
    const config = {
      members: [{ id: 'emr', name: 'Lead EMR', tier: 'tertiary', channels: [{ id: 'emr-fhir', kind: 'fhir-rest', baseUrl: server.baseUrl, resourceTypes: ['Encounter'], pageSize: 25 }] }],
      pipeline: { queuePrefix: hub.prefix, partitions: 4 },
    };
    const configFile = path.join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify(config));
    const env = { DATABASE_URL: hub.databaseUrl, REDIS_URL: hub.config.redisUrl };
    const count = async () =>
      (await hub.runtime.db.query<{ n: number; ids: number }>(`SELECT count(*)::int AS n, count(DISTINCT control_id)::int AS ids FROM raw_message WHERE channel_id = 'emr-fhir'`)).rows[0]!;

    server.delayMs = 60; // slow enough to kill it while it pages
    const first = spawnPull(env, configFile);
    await waitForOutput(first, /Encounter page 8 stored/, 60_000);
    await killHard(first);
    const afterCrash = await count();
    expect(afterCrash.n).toBeGreaterThanOrEqual(8 * 25);
    expect(afterCrash.n).toBeLessThan(1215);
    const cursor = (await hub.runtime.db.query<{ last_updated: string }>(`SELECT last_updated FROM fhir_cursor WHERE channel_id = 'emr-fhir'`)).rows[0]?.last_updated;
    expect(cursor).toBeDefined();

    server.delayMs = 0;
    const requestsBefore = server.requests.length;
    const second = spawnPull(env, configFile);
    expect(await second.exited).toBe(0);
    const summary = JSON.parse(second.output().trim().split('\n').pop()!) as { stored: number; duplicates: number };
    // It started from the cursor, not from the beginning.
    const firstRequest = server.requests.slice(requestsBefore).find((r) => r.startsWith('GET /fhir/Encounter'))!;
    expect(decodeURIComponent(firstRequest)).toContain(`_lastUpdated=ge${cursor}`);
    const final = await count();
    expect(final).toEqual({ n: 1215, ids: 1215 });
    expect(summary.stored).toBe(1215 - afterCrash.n);
    // What the killed process stored and the resumed one read again is counted as a duplicate, never stored twice.
    const dupes = await hub.runtime.db.query<{ n: number }>(`SELECT coalesce(sum(duplicate_count), 0)::int AS n FROM raw_message`);
    expect(dupes.rows[0]!.n).toBe(summary.duplicates);
  });
});
