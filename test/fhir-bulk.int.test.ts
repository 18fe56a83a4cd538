/**
 * Bulk Data $export import against the test FHIR server: the status URL answers 202 with
 * Retry-After several times before the manifest; files are streamed and imported; the next export
 * asks only for what changed (_since); a 200 MB NDJSON import stays under 300 MB RSS in the
 * importing process; `yilian ingest` takes NDJSON and Bundle files from disk.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Patient } from 'fhir/r4';
import type { FhirBulkChannelConfig, MemberConfig } from '../hub/config';
import { BulkImporter } from '../adapters/fhir/bulk';
import { clientFor } from '../adapters/fhir/connect';
import { FhirIntake } from '../adapters/fhir/store';
import { ingestFiles } from '../cli/ingest';
import { SYNTHEA_DIR, TestFhirServer } from './support/fhirServer';
import { SHARED_DATA, startTestHub, type TestHub } from './support/hub';
import { assertBuildIsFresh, CLI } from './support/processes';

const syntheaLines = () =>
  readdirSync(SYNTHEA_DIR)
    .filter((f) => f.endsWith('.000.ndjson'))
    .reduce((n, f) => n + readFileSync(path.join(SYNTHEA_DIR, f), 'utf8').split('\n').filter(Boolean).length, 0);

describe('FHIR Bulk Data import', () => {
  let server: TestFhirServer;
  let hub: TestHub;
  let member: MemberConfig;
  let channel: FhirBulkChannelConfig;
  let dir: string;

  beforeAll(async () => {
    server = new TestFhirServer();
    await server.loadSynthea();
    const baseUrl = await server.start();
    hub = await startTestHub('fhirbulk', { members: [{ id: 'emr', name: 'Lead EMR', tier: 'tertiary', channels: [{ id: 'emr-bulk', kind: 'fhir-bulk', baseUrl }] }] });
    member = hub.config.members[0]!;
    channel = member.channels[0] as FhirBulkChannelConfig;
    dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-fhir-bulk-'));
  });

  afterAll(async () => {
    await hub?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const importer = () => new BulkImporter(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, channel, clientFor(channel));

  test('polls 202 + Retry-After until the manifest, then imports every file', async () => {
    server.bulkPolls = 3;
    const started = Date.now();
    const result = await importer().run();
    expect(result.polls).toBe(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
    const statusPolls = server.requests.filter((r) => r.startsWith('GET /fhir/bulkstatus/'));
    expect(statusPolls).toHaveLength(4);
    const lines = syntheaLines();
    expect(result.lines).toBe(lines);
    expect(result.stored).toBe(lines);
    expect(result.quarantined).toBe(0);
    const rows = await hub.runtime.db.query<{ n: number }>(`SELECT count(DISTINCT control_id)::int AS n FROM raw_message WHERE channel_id = 'emr-bulk'`);
    expect(rows.rows[0]!.n).toBe(lines);
    const job = await hub.runtime.db.query<{ state: string; files_done: string[] }>(`SELECT state, files_done FROM fhir_bulk_export ORDER BY id DESC LIMIT 1`);
    expect(job.rows[0]!.state).toBe('imported');
    expect(job.rows[0]!.files_done).toHaveLength(13);
  });

  test('the next export asks _since the last transactionTime and stores only what changed', async () => {
    server.bulkPolls = 1;
    const patients = (await server.repo.searchResources({ resourceType: 'Patient', count: 2 } as never)) as unknown as Patient[];
    for (const p of patients) await server.repo.updateResource({ ...p, active: false } as never);
    const result = await importer().run();
    const kickoff = server.requests.filter((r) => r.startsWith('GET /fhir/$export')).pop()!;
    expect(decodeURIComponent(kickoff)).toMatch(/_since=\d{4}-/);
    expect(result.stored).toBe(2);
  });

  test('an import that failed on one file resumes the same export and skips the files already imported', async () => {
    server.bulkPolls = 0;
    const kickoffs = () => server.requests.filter((r) => r.startsWith('GET /fhir/$export')).length;
    const downloads = () => server.requests.filter((r) => r.startsWith('GET /fhir/bulkfiles/')).length;
    const k0 = kickoffs();
    const d0 = downloads();
    // The 5th file (Encounter, in manifest order) fails with a 503 and this run has no retry left.
    server.faults.push({ path: /\/bulkfiles\/.*\/Encounter\.ndjson/, status: 503, times: 1 });
    const once = { ...channel, maxAttempts: 1 };
    await expect(new BulkImporter(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, once, clientFor(once)).run()).rejects.toMatchObject({ code: 'exhausted' });
    expect(kickoffs() - k0).toBe(1);
    const job = await hub.runtime.db.query<{ state: string; files_done: string[] }>(`SELECT state, files_done FROM fhir_bulk_export ORDER BY id DESC LIMIT 1`);
    expect(job.rows[0]!.state).toBe('requested');
    const done = job.rows[0]!.files_done.length;
    expect(done).toBeGreaterThan(0);
    const d1 = downloads();
    const result = await importer().run();
    expect(kickoffs() - k0).toBe(1); // no new export: the same status URL was polled again
    expect(downloads() - d1).toBe(13 - done);
    expect(d1 - d0).toBe(done + 1);
    expect(result.files).toBe(13 - done);
  });

  test('an export the server no longer has (404 on its status URL) is given up and a new one requested', async () => {
    server.bulkPolls = 1;
    const kickoffs = () => server.requests.filter((r) => r.startsWith('GET /fhir/$export')).length;
    const k0 = kickoffs();
    // First run: kicked off, then the server is unreachable while polling: the export stays requested.
    server.faults.push({ path: /\/bulkstatus\//, status: 503, times: 1 });
    const once = { ...channel, maxAttempts: 1 };
    await expect(new BulkImporter(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, once, clientFor(once)).run()).rejects.toMatchObject({ code: 'exhausted' });
    const first = await hub.runtime.db.query<{ id: number; state: string }>(`SELECT id, state FROM fhir_bulk_export ORDER BY id DESC LIMIT 1`);
    expect(first.rows[0]!.state).toBe('requested');
    // Then the server has forgotten it: 404 on the status URL → failed, and a new export.
    server.jobs.clear();
    const result = await importer().run();
    expect(kickoffs() - k0).toBe(2);
    const states = await hub.runtime.db.query<{ id: number; state: string }>(`SELECT id, state FROM fhir_bulk_export WHERE id >= $1 ORDER BY id`, [first.rows[0]!.id]);
    expect(states.rows.map((r) => r.state)).toEqual(['failed', 'imported']);
    expect(result.exportId).toBe(states.rows[1]!.id);
  });

  test('Group-level kick-off', async () => {
    server.bulkPolls = 0;
    const groupChannel = { ...channel, id: 'emr-group', level: 'group' as const, groupId: 'alliance-1', resourceTypes: ['Patient'] };
    const result = await new BulkImporter(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, groupChannel, clientFor(groupChannel)).run();
    expect(server.requests.filter((r) => r.startsWith('GET /fhir/Group/alliance-1/$export?')).length).toBe(1);
    expect(decodeURIComponent(server.requests.find((r) => r.startsWith('GET /fhir/Group/alliance-1/$export?'))!)).toContain('_type=Patient');
    expect(result.files).toBe(1);
  });

  test('yilian ingest takes NDJSON and FHIR Bundle files; invalid entries are quarantined, neighbours imported', async () => {
    const ndjson = path.join(SYNTHEA_DIR, 'Immunization.000.ndjson');
    const expectedDir = path.join(SHARED_DATA, 'hl7v2/fhir-converter/expected');
    const bundles = readdirSync(expectedDir).map((f) => path.join(expectedDir, f));
    // DELETE entries carry no resource to take in: skipped.
    const entries = bundles.reduce((n, f) => n + ((JSON.parse(readFileSync(f, 'utf8')) as { entry?: Array<{ request?: { method?: string } }> }).entry ?? []).filter((e) => e.request?.method !== 'DELETE').length, 0);
    const bad = path.join(dir, 'bad.ndjson');
    writeFileSync(bad, ['{"resourceType":"Patient","id":"ok-1","gender":"male"}', 'not json', '{"resourceType":"Patient","id":"bad-2","gender":"robot"}', '{"resourceType":"Patient","gender":"female"}', '{"resourceType":"Patient","id":"ok-3"}'].join('\n'));
    const summary = await ingestFiles(hub.runtime, member, [ndjson, bad, ...bundles], { fhirSource: 'https://his.example/fhir' });
    expect(summary.received).toBe(161 + 5 + entries);
    const byStatus = await hub.runtime.db.query<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM raw_message WHERE channel_id = 'ingest' AND sender = 'https://his.example/fhir' GROUP BY 1 ORDER BY 1`);
    const counts = Object.fromEntries(byStatus.rows.map((r) => [r.status, r.n]));
    expect(counts.failed).toBeUndefined();
    const reasons = await hub.runtime.db.query<{ stage: string; reason: string }>(
      `SELECT q.stage, q.reason FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE r.channel_id = 'ingest' ORDER BY q.id`,
    );
    const text = reasons.rows.map((r) => `${r.stage}: ${r.reason}`).join('\n');
    expect(text).toMatch(/intake: line 2: not JSON/);
    expect(text).toMatch(/intake: line 4: Patient has no valid id/);
    expect(text).toMatch(/parse: not a valid FHIR R4 resource: Patient\.gender: value "robot"/);
    const ok = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE control_id IN ('Patient/ok-1/_history/', 'Patient/ok-3/_history/') AND status = 'processed'`);
    expect(ok.rows[0]!.n).toBe(2);
    expect(counts.processed).toBeGreaterThan(161 + 2);
  });
  test('a 200 MB NDJSON file is streamed and imported under 300 MB RSS', async () => {
    assertBuildIsFresh(); // the import runs in the built CLI
    // 200 MB of DocumentReferences: the Synthea ones repeated under new ids.
    const source = readFileSync(path.join(SYNTHEA_DIR, 'DocumentReference.000.ndjson'), 'utf8').split('\n').filter(Boolean);
    const file = path.join(dir, 'big.ndjson');
    const out = createWriteStream(file);
    let written = 0;
    let lines = 0;
    for (let round = 0; written < 200 * 1024 * 1024; round++) {
      for (const line of source) {
        const resource = JSON.parse(line) as { id: string };
        resource.id = `${resource.id.slice(0, 24)}-r${round}`;
        const text = `${JSON.stringify(resource)}\n`;
        written += Buffer.byteLength(text);
        lines++;
        if (!out.write(text)) await new Promise<void>((r) => out.once('drain', () => r()));
      }
    }
    await new Promise<void>((r) => out.end(() => r()));
    expect(statSync(file).size).toBeGreaterThanOrEqual(200 * 1024 * 1024);
    server.bulkPolls = 0;
    const configFile = path.join(dir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        members: ['emr-capped', 'emr-big'].map((id) => ({ id, name: id, tier: 'tertiary', channels: [{ id: 'bulk', kind: 'fhir-bulk', baseUrl: server.baseUrl, resourceTypes: ['DocumentReference'] }] })),
        pipeline: { queuePrefix: hub.prefix, partitions: 4 },
      }),
    );
    /** `yilian pull` of a Bulk export whose manifest also lists `extra`; its peak RSS, its own and as watched from outside. */
    const importIn = async (memberId: string, extra: string, nodeArgs: string[] = []) => {
      server.extraBulkFiles = [{ type: 'DocumentReference', file: extra }];
      const child = spawn(process.execPath, [...nodeArgs, CLI, 'pull', '--member', memberId, '--channel', 'bulk', '--json'], {
        env: { ...process.env, DATABASE_URL: hub.databaseUrl, REDIS_URL: hub.config.redisUrl, YILIAN_CONFIG: configFile },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      let watchedKb = 0;
      const watch = setInterval(() => {
        try {
          watchedKb = Math.max(watchedKb, Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0));
        } catch {
          // exited
        }
      }, 100);
      const code = await new Promise<number | null>((r) => child.once('exit', r));
      clearInterval(watch);
      expect({ code, output: code === 0 ? '' : output }).toEqual({ code: 0, output: '' });
      return { ...(JSON.parse(output.trim().split('\n').pop()!) as { lines: number; stored: number; maxRssKb: number }), watchedKb };
    };
    const big = await importIn('emr-big', file);
    expect(big.lines).toBe(lines + source.length);
    expect(big.stored).toBe(lines + source.length);
    // Flat whatever the file size: the same 200 MB import with V8's heap capped at 64 MB completes —
    // it would run out of memory if any part of the file were held (the peak RSS above is mostly
    // how much garbage V8 lets pile up before collecting, not what is kept).
    const capped = await importIn('emr-capped', file, ['--max-old-space-size=64']);
    expect(capped.stored).toBe(lines + source.length);
    process.stdout.write(
      `Bulk import of ${lines} lines (${Math.round(statSync(file).size / 1048576)} MB): peak RSS ${Math.round(big.maxRssKb / 1024)} MB ` +
        `(watched ${Math.round(big.watchedKb / 1024)} MB); with the heap capped at 64 MB: ${Math.round(capped.maxRssKb / 1024)} MB\n`,
    );
    expect(big.maxRssKb).toBeLessThan(300 * 1024);
    expect(big.watchedKb).toBeLessThan(300 * 1024);
  });

});
