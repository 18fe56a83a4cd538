/**
 * FHIR adapter throughput on this machine:
 *   node dist/bench/fhir.js [ndjsonMegabytes=200]
 * 1. REST pull: the Synthea bulk export (10 patients, 7,160 resources) loaded into the test FHIR
 *    server (Medplum's router, in this process), pulled with `_count=100` pages into the raw store:
 *    resources stored per second; then the FHIR branch of the pipeline on them (one in-process worker).
 * 2. NDJSON import: `yilian ingest --no-wait` of an N MB NDJSON file (Synthea DocumentReferences
 *    repeated under new ids) in a child process: resources stored per second and its peak RSS.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig, type FhirRestChannelConfig } from '../hub/config';
import { clientFor } from '../adapters/fhir/connect';
import { RestPuller } from '../adapters/fhir/restPull';
import { FhirIntake } from '../adapters/fhir/store';
import { waitForPipeline } from '../cli/ingest';
import { SYNTHEA_DIR, TestFhirServer } from '../test/support/fhirServer';
import { benchHub, REDIS_URL } from './support';

const megabytes = Number(process.argv[2] ?? 200);

async function restPull(): Promise<void> {
  const server = new TestFhirServer();
  const loaded = await server.loadSynthea();
  await server.start();
  const hub = await benchHub('fhirpull');
  try {
    const config = parseConfig({ members: [{ id: 'emr', name: 'EMR', tier: 'tertiary', channels: [{ id: 'rest', kind: 'fhir-rest', baseUrl: server.baseUrl, resourceTypes: ['Patient', 'Organization', 'Location', 'Practitioner', 'PractitionerRole', 'Device', 'Encounter', 'Condition', 'Procedure', 'MedicationRequest', 'Immunization', 'AllergyIntolerance', 'DocumentReference'], pageSize: 100 }] }] });
    const member = config.members[0]!;
    const channel = member.channels[0] as FhirRestChannelConfig;
    const t0 = performance.now();
    const results = await new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, channel, clientFor(channel)).pullAll();
    const seconds = (performance.now() - t0) / 1000;
    const stored = results.reduce((n, r) => n + r.stored, 0);
    const pages = results.reduce((n, r) => n + r.pages, 0);
    console.log(`REST pull (test server in this process, _count=100): ${stored} of ${loaded} resources in ${pages} pages, ${seconds.toFixed(2)} s → ${Math.round(stored / seconds)} resources/s stored`);
    const queued = results.flatMap((r) => r.queuedIds);
    const t1 = performance.now();
    const statuses = await waitForPipeline(hub.runtime, queued);
    const s1 = (performance.now() - t1) / 1000;
    console.log(`  then the pipeline's FHIR branch (validate, convert, merge; 1 in-process worker): ${queued.length} in ${s1.toFixed(2)} s → ${Math.round(queued.length / s1)} resources/s (${JSON.stringify(statuses)})`);
  } finally {
    await hub.close();
    await server.stop();
  }
}

async function ndjsonImport(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-bench-fhir-'));
  const hub = await benchHub('fhirndjson');
  try {
    const source = readFileSync(path.join(SYNTHEA_DIR, 'DocumentReference.000.ndjson'), 'utf8').split('\n').filter(Boolean);
    const file = path.join(dir, 'big.ndjson');
    const out = createWriteStream(file);
    let written = 0;
    let lines = 0;
    for (let round = 0; written < megabytes * 1024 * 1024; round++) {
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
    const configFile = path.join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({ pipeline: { queuePrefix: hub.prefix } }));
    const t0 = performance.now();
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'cli', 'yilian.js'), 'ingest', '--member', 'bench', '--no-wait', '--json', file], {
      env: { ...process.env, DATABASE_URL: hub.databaseUrl, REDIS_URL, YILIAN_CONFIG: configFile },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    let peakKb = 0;
    const watch = setInterval(() => {
      try {
        peakKb = Math.max(peakKb, Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0));
      } catch {
        // exited
      }
    }, 50);
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    clearInterval(watch);
    const seconds = (performance.now() - t0) / 1000;
    const summary = JSON.parse(output.trim().split('\n').pop() ?? '{}') as { stored?: number };
    console.log(
      `NDJSON import (yilian ingest --no-wait, child process): ${summary.stored} of ${lines} resources, ${Math.round(statSync(file).size / 1048576)} MB in ${seconds.toFixed(1)} s → ` +
        `${Math.round((summary.stored ?? 0) / seconds)} resources/s, ${(statSync(file).size / 1048576 / seconds).toFixed(1)} MB/s stored; peak RSS ${Math.round(peakKb / 1024)} MB (exit ${code})`,
    );
  } finally {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  await restPull();
  await ndjsonImport();
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
