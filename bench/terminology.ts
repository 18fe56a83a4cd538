/**
 * Terminology figures (printed, not asserted):
 * - `$translate` lookups/s in-process — the call the map stage makes — over the seed WHO rows,
 *   walked-up ICD-10 codes, clinical-edition codes and local lab codes;
 * - `$translate` over HTTP (GET, API key, keep-alive) with N concurrent clients, p50/p95/p99;
 * - the coverage report on 1M stored coded elements (stored through the resource trigger, which is
 *   timed too).
 * Run: `npx tsc -p . && node dist/bench/terminology.js [--no-http] [--no-coverage] [elements]`;
 * `--merge-overhead`: what migration 4's trigger and index add to the merge's resource upsert.
 */
import type { AddressInfo } from 'node:net';
import { createApi } from '../api/server';
import { syncTerminology } from '../hub/terminology/versions';
import { coverage } from '../hub/terminology/worklist';
import { MAPPED_SOURCE_URL, UNMAPPED_SOURCE_URL, ICD10, ICD10_CN, ICD11_MMS, LOINC } from '../mappings/terminology/systems';
import { readConceptMapDir, shippedConceptMapDir } from '../mappings/terminology/shipped';
import { Terminology } from '../mappings/terminology/translator';
import { benchHub, percentile } from './support';
import { parseStage } from '../pipeline/stages/parse';
import { convertStage } from '../pipeline/stages/convert';
import { mapStage } from '../pipeline/stages/map';
import { bloodCount, encodeAs, simOru, simPatient } from '../cli/simulate';

const args = process.argv.slice(2);
const elements = Number(args.find((a) => /^\d+$/.test(a)) ?? 1_000_000);
const out = (line: string) => process.stdout.write(`${line}\n`);

const terminology = new Terminology(readConceptMapDir(shippedConceptMapDir()));
const who = terminology.maps.get('https://yilian.example/fhir/ConceptMap/who-icd10-icd11')!;
const requests: Array<[string, string, string]> = [];
for (const e of who.group[0]!.element) requests.push([ICD10, e.code, ICD11_MMS]);
for (const c of ['E11.9', 'E11.900', 'J18.900', 'I10.x00', 'I10.x00x002', 'E14.9']) requests.push([c.length > 5 ? ICD10_CN : ICD10, c, ICD11_MMS]);
for (const c of ['HGB', 'WBC', 'PLT', 'GLU']) requests.push(['urn:yilian:lead:L', c, LOINC]);

function inProcess(label: string, n: number): void {
  let found = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const r = requests[i % requests.length]!;
    if (terminology.translate(r[0], r[1], r[2]).result) found++;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  out(`${label}: ${n.toLocaleString('en')} lookups in ${seconds.toFixed(3)} s = ${Math.round(n / seconds).toLocaleString('en')} lookups/s (${found.toLocaleString('en')} found)`);
}

async function overHttp(): Promise<void> {
  const key = 'bench-key-0123456789abcdef';
  const hub = await benchHub('termhttp');
  hub.runtime.config.api.keys.push({ name: 'bench', key, scopes: ['integration'] });
  await syncTerminology(hub.runtime.db);
  const server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const urls = requests.map(([system, code, target]) => `${base}/fhir/ConceptMap/$translate?${new URLSearchParams({ system, code, targetsystem: target })}`);
  for (const concurrency of [1, 16]) {
    const latencies: number[] = [];
    const seconds = 5;
    const end = performance.now() + seconds * 1000;
    let i = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          const t = performance.now();
          const res = await fetch(urls[i++ % urls.length]!, { headers: { authorization: `Bearer ${key}` } });
          await res.arrayBuffer();
          if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
          latencies.push(performance.now() - t);
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    out(`HTTP GET $translate, ${concurrency} client(s): ${latencies.length.toLocaleString('en')} requests in ${elapsed.toFixed(1)} s = ${Math.round(latencies.length / elapsed).toLocaleString('en')} req/s; p50 ${percentile(latencies, 50).toFixed(2)} ms, p95 ${percentile(latencies, 95).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms`);
  }
  await new Promise((r) => server.close(r));
  await hub.close();
}

async function coverageOnStoredElements(): Promise<void> {
  const hub = await benchHub('termcov');
  const db = hub.runtime.db;
  await db.query(`INSERT INTO raw_message (member_id, channel_id, control_id, sha256, content, size_bytes, status) SELECT 'm' || (g % 5), 'lis', 'c' || g, '\\x00', '\\x00', 1, 'processed' FROM generate_series(1, 50) g`);
  // 5 coded elements per resource, ~85 % mapped, 2,000 distinct local codes per member, 5 members.
  const perResource = 5;
  const resources = Math.ceil(elements / perResource);
  const batch = 50_000;
  const t0 = performance.now();
  for (let from = 0; from < resources; from += batch) {
    await db.query(
      `INSERT INTO resource (resource_type, id, member_id, content, raw_id)
       SELECT 'Observation', 'o' || g, 'm' || (g % 5),
              jsonb_build_object('resourceType', 'Observation', 'id', 'o' || g, 'meta', jsonb_build_object('extension',
                (SELECT jsonb_agg(jsonb_build_object('url', CASE WHEN (g * 7 + k) % 100 < 85 THEN '${MAPPED_SOURCE_URL}' ELSE '${UNMAPPED_SOURCE_URL}' END,
                                                     'valueCoding', jsonb_build_object('system', 'urn:yilian:m' || (g % 5) || ':L', 'code', 'C' || ((g * 31 + k * 17) % 2000), 'display', '项目')))
                   FROM generate_series(1, ${perResource}) k))),
              1 + (g % 50)
         FROM generate_series($1::int, $2::int) g`,
      [from + 1, Math.min(resources, from + batch)],
    );
  }
  const stored = (performance.now() - t0) / 1000;
  const counted = await db.query<{ n: number }>(`SELECT sum(occurrences)::bigint AS n FROM coded_element_day`);
  out(`stored ${resources.toLocaleString('en')} resources with ${Number(counted.rows[0]!.n).toLocaleString('en')} coded elements (trigger counting included) in ${stored.toFixed(1)} s = ${Math.round(Number(counted.rows[0]!.n) / stored).toLocaleString('en')} elements/s`);
  const times: number[] = [];
  let rows = 0;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    rows = (await coverage(db)).rows.length;
    times.push(performance.now() - t);
  }
  out(`coverage report over ${Number(counted.rows[0]!.n).toLocaleString('en')} coded elements (${rows} member/channel/system rows): median ${percentile(times, 50).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms (5 runs)`);
  await hub.close();
}

/**
 * What the terminology schema adds to the merge's resource upsert (counting trigger + GIN index on
 * meta.extension): the same mapped ORU resources upserted one message per statement, with and
 * without them.
 */
async function mergeOverhead(messages: number): Promise<void> {
  const bodies: string[] = [];
  for (let i = 0; i < messages; i++) {
    const bytes = encodeAs(simOru({ controlId: `M${i}`, patient: simPatient(i, 'O'), charset: 'UNICODE UTF-8' }, bloodCount), 'UTF-8');
    const mapped = mapStage(convertStage(parseStage({ bytes, policy: { defaultCharset: 'UTF-8' } }), { memberId: i % 2 ? 'lead' : 'other', channelId: 'lis', rawId: 1, utcOffsetMinutes: 480 }));
    bodies.push(JSON.stringify(mapped.resources));
  }
  const hub = await benchHub('termmerge');
  const db = hub.runtime.db;
  await db.query(`INSERT INTO raw_message (member_id, channel_id, control_id, sha256, content, size_bytes, status) VALUES ('lead', 'lis', 'x', '\\x00', '\\x00', 1, 'processed')`);
  const run = async (label: string, offset: number) => {
    const t0 = performance.now();
    for (let i = 0; i < bodies.length; i++) {
      // The merge writes through `derived` (synchronous_commit off), so this does too.
      await db.derived.query(
        `INSERT INTO resource (resource_type, id, member_id, content, raw_id) SELECT r.content->>'resourceType', (r.content->>'id') || $2, 'lead', r.content, 1 FROM jsonb_array_elements($1::jsonb) AS r(content)
         ON CONFLICT (resource_type, id) DO UPDATE SET content = excluded.content`,
        [bodies[i], `-${offset}`],
      );
    }
    const seconds = (performance.now() - t0) / 1000;
    out(`merge-like upsert of ${bodies.length} mapped ORU messages (${label}): ${Math.round(bodies.length / seconds)} msg/s`);
  };
  // Alternating rounds, so load from other processes on the machine falls on all alike.
  const configure = async (trigger: boolean, index: boolean) => {
    for (const t of ['resource_count_inserted', 'resource_count_updated']) await db.query(`ALTER TABLE resource ${trigger ? 'ENABLE' : 'DISABLE'} TRIGGER ${t}`);
    await db.query(index ? `CREATE INDEX IF NOT EXISTS resource_mapping_sources ON resource USING gin (jsonb_path_query_array(content, '$.meta.extension[*].valueCoding.code'))` : `DROP INDEX IF EXISTS resource_mapping_sources`);
  };
  let offset = 0;
  for (let round = 1; round <= 2; round++) {
    for (const [trigger, index, label] of [
      [true, true, 'trigger + index'],
      [false, false, 'neither'],
      [true, false, 'trigger only'],
      [false, true, 'index only'],
    ] as const) {
      await configure(trigger, index);
      await run(`round ${round}, ${label}`, ++offset);
    }
  }
  await hub.close();
}

/** Reverse lookups (R4 reverse=true) over the WHO targets: not on the pipeline's path, measured for scale. */
function reverseInProcess(n: number): void {
  const targets = who.group[0]!.element.flatMap((e) => (e.target ?? []).map((t) => t.code!)).filter(Boolean);
  let found = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (terminology.reverse(ICD11_MMS, targets[i % targets.length]!, ICD10).result) found++;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  out(`in-process reverse $translate: ${n.toLocaleString('en')} lookups in ${seconds.toFixed(3)} s = ${Math.round(n / seconds).toLocaleString('en')} lookups/s (${found.toLocaleString('en')} found)`);
}

/** The map stage on converted ORU messages (OBR + blood count OBX): every element of CODED_ELEMENTS walked, units converted. */
function mapStagePerMessage(messages: number): void {
  const converted = Array.from({ length: messages }, (_, i) =>
    convertStage(parseStage({ bytes: encodeAs(simOru({ controlId: `S${i}`, patient: simPatient(i, 'S'), charset: 'UNICODE UTF-8' }, bloodCount), 'UTF-8'), policy: { defaultCharset: 'UTF-8' } }), { memberId: i % 2 ? 'lead' : 'other', channelId: 'lis', rawId: 1, utcOffsetMinutes: 480 }),
  );
  for (const label of ['mapped (member lead) and unmapped (member other), warm-up', 'mapped (member lead) and unmapped (member other)']) {
    const copies = converted.map((c) => ({ ...c, resources: JSON.parse(JSON.stringify(c.resources)) as typeof c.resources }));
    const start = process.hrtime.bigint();
    for (const c of copies) mapStage(c, { terminology });
    const us = Number(process.hrtime.bigint() - start) / 1e3 / messages;
    out(`map stage, ${label}: ${us.toFixed(1)} µs per ORU message (${messages} messages, ${converted[0]!.resources.length} resources each)`);
  }
}

async function main(): Promise<void> {
  if (args.includes('--merge-overhead')) return mergeOverhead(2000);
  inProcess('warm-up', 1_000_000);
  for (let i = 1; i <= 3; i++) inProcess(`in-process $translate run ${i}`, 5_000_000);
  reverseInProcess(1_000_000);
  mapStagePerMessage(2000);
  if (!args.includes('--no-http')) await overHttp();
  if (!args.includes('--no-coverage')) await coverageOnStoredElements();
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(1);
  },
);
