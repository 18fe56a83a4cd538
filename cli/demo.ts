/**
 * `yilian demo`: three simulated members of an alliance send real HL7 v2 traffic through the whole
 * spine on embedded defaults (PGlite, a private redis-server): the lead hospital over MLLP in UTF-8
 * (the FHIR-Converter sample messages and Chinese ADT/ORU), the county hospital over MLLP in GB18030
 * on several connections, the community centre as a GB18030 batch file in a drop folder. Then
 * resends, a corrected result, out-of-order updates, a bad charset and garbage. It ends with what
 * an information department looks at: per-channel counters, ACK latency, the quarantine, the
 * unified source-patient records with their Chinese names intact, and the FHIR R4 resources stored.
 * Last, mutual recognition: people seen at several members, recognition checks before ordering,
 * and the duplicate-test report with its costs (hub/recognition).
 */
import { ingestFiles } from './ingest';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../hub/config';
import { openRuntime } from './runtime';
import { hubStatus } from '../pipeline/status';
import { PipelineWorker } from '../pipeline/worker';
import { ackCode, bloodCount, encodeAs, MllpClient, recognitionTraffic, simAdt, simOru, simPatient } from './simulate';
import { syncPatientIndex } from '../hub/mpi/sync';
import { coverage, worklist } from '../hub/terminology/worklist';
import { syncRecognitionIndex } from '../hub/recognition/resultIndex';
import { recognitionCheck } from '../hub/recognition/check';
import { duplicateReport } from '../hub/recognition/duplicates';
import { costFeedSummary } from '../hub/feeds/summary';
import { readPage } from '../hub/feeds/read';
import { computeKpis, formatKpis } from '../hub/feeds/kpi';
import { startListeners } from './listeners';
import { claimEmbeddedStore } from './embeddedStore';
import { UsageError } from './usageError';

/** The commands the demo's closing lines suggest, on its store (`YILIAN_CONFIG` names its configuration). */
export function nextCommands(quarantinedRawId: number | undefined): string[] {
  return [
    'yilian status',
    'yilian quarantine list',
    ...(quarantinedRawId === undefined ? [] : [`yilian quarantine show ${quarantinedRawId}`, `yilian replay --raw-id ${quarantinedRawId}`]),
    'yilian mpi export --format csv',
    'yilian mpi review',
    'yilian mappings coverage',
    'yilian mappings worklist',
    'yilian recognition duplicates',
    'yilian kpi',
  ];
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

export interface DemoOptions {
  log: (t: string) => void;
  /** Where the demo's store and configuration stay for the commands it suggests (the configured dataDir; default `.yilian`). */
  dataDir: string;
  /** A tenth of the traffic: the same steps and reports in a few seconds (smoke tests). */
  quick?: boolean;
}

/** The demo's configuration, written beside its store: `YILIAN_CONFIG=<dataDir>/demo.json yilian …` works on what the demo left. */
const DEMO_CONFIG = 'demo.json';

/**
 * The demo starts from an empty store: a previous demo's store in `dataDir` is replaced, but a
 * store the demo did not make (no demo.json beside it) is never touched.
 */
function resetDemoStore(dataDir: string): void {
  if (!existsSync(path.join(dataDir, 'pglite'))) return;
  if (!existsSync(path.join(dataDir, DEMO_CONFIG))) {
    throw new UsageError(`${dataDir} holds a hub store the demo did not make; run the demo with a configuration naming another dataDir (--config), or remove ${path.join(dataDir, 'pglite')}`);
  }
  // Claimed while it is removed: a `yilian serve` still using the last demo's store stops this here.
  const release = claimEmbeddedStore(dataDir);
  try {
    rmSync(path.join(dataDir, 'pglite'), { recursive: true, force: true });
    rmSync(path.join(dataDir, 'drop-community'), { recursive: true, force: true });
  } finally {
    release();
  }
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const out = (t = '') => process.stdout.write(`${t}\n`);
  const dataDir = path.resolve(options.dataDir);
  resetDemoStore(dataDir);
  const scale = options.quick ? 10 : 1;
  const dropDir = path.join(dataDir, 'drop-community');
  const configPath = path.join(dataDir, DEMO_CONFIG);
  const input = {
    dataDir,
    members: [
      // PID-19 holds the 居民身份证号 (resident ID) at all three: the patient index links one person's numbers by it.
      { id: 'lead', name: '省人民医院 Provincial People’s Hospital', tier: 'tertiary', channels: [{ id: 'his', kind: 'mllp', port: 0, charset: 'UTF-8' }], conversion: { residentIdField: 19 } },
      { id: 'county', name: '青山县人民医院 Qingshan County Hospital', tier: 'secondary', channels: [{ id: 'lis', kind: 'mllp', port: 0, charset: 'GB18030' }], conversion: { residentIdField: 19 } },
      { id: 'community', name: '东湖社区卫生服务中心 Donghu Community Health Centre', tier: 'primary', channels: [{ id: 'drop', kind: 'file', dir: dropDir, charset: 'GB18030', pollIntervalMs: 200, stableMs: 300 }], conversion: { residentIdField: 19 } },
      { id: 'platform', name: '区域健康信息平台 Regional Health Platform (FHIR R4)', tier: 'unknown', channels: [] },
    ],
    // Mutual recognition: the labs' external quality assessment (the community's covers HbA1c only) and price lists.
    recognition: {
      accreditation: [
        { member: 'lead', scheme: 'NCCL-EQA', validFrom: '2026-01-01', validTo: '2026-12-31' },
        { member: 'county', scheme: 'ZJ-CCL-EQA', validFrom: '2026-01-01', validTo: '2026-12-31' },
        { member: 'community', scheme: 'ZJ-CCL-EQA', codes: ['4548-4'], validFrom: '2026-01-01', validTo: '2026-12-31' },
      ],
      priceLists: [
        { member: 'lead', version: '2026', effectiveFrom: '2026-01-01', prices: { '14749-6': 12, '718-7': 20, '36643-5': 90, '4548-4': 70 } },
        { member: 'county', version: '2026', effectiveFrom: '2026-01-01', prices: { '14749-6': 10, '718-7': 16, '36643-5': 70, '4548-4': 60 } },
        { member: 'community', version: '2026', effectiveFrom: '2026-01-01', prices: { '14749-6': 8, '718-7': 12, '4548-4': 50 } },
      ],
    },
  };
  const config = parseConfig(input);
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(configPath, `${JSON.stringify(input, null, 2)}\n`);
  out('Yilian Hub demo — embedded PGlite and a private redis-server; four members connect (three HL7 v2, one FHIR R4).');
  const started = Date.now();
  const runtime = await openRuntime(config, { log: options.log });
  const ports: Record<string, number> = {};
  const stops = await startListeners(runtime, (line) => {
    out(`  ${line}`);
    const m = /^MLLP (\w+)\/\w+ on port (\d+)/.exec(line);
    if (m) ports[m[1]!] = Number(m[2]);
  });
  const worker = new PipelineWorker({ db: runtime.db, config }, runtime.queues, { log: options.log });
  await worker.start();
  const latencies: number[] = [];
  const ackCodes = new Map<string, number>();
  const timedSend = async (client: MllpClient, bytes: Buffer) => {
    const t0 = process.hrtime.bigint();
    const ack = await client.send(bytes);
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    ackCodes.set(ackCode(ack), (ackCodes.get(ackCode(ack)) ?? 0) + 1);
    return ack;
  };

  try {
    // 1. Lead hospital: the public sample messages, then Chinese ADT and lab results, UTF-8.
    out(`\n[lead] sending the FHIR-Converter sample messages and ${200 / scale} Chinese ADT/ORU messages over MLLP (UTF-8)…`);
    const lead = await MllpClient.connect(ports.lead!);
    // Sources sit beside this file; the compiled CLI runs from dist/cli and reads them from the source tree.
    const samplesDir = [path.join(__dirname, 'demo-data'), path.join(__dirname, '..', '..', 'cli', 'demo-data')].find((d) => existsSync(d))!;
    const sampleFiles = readdirSync(samplesDir).filter((f) => f.endsWith('.hl7'));
    for (const f of sampleFiles) await timedSend(lead, Buffer.from(readFileSync(path.join(samplesDir, f), 'utf8').replace(/^\uFEFF/, '').replace(/\r?\n/g, '\r')));
    for (let i = 0; i < 100 / scale; i++) {
      const patient = simPatient(i, 'L');
      await timedSend(lead, encodeAs(simAdt({ controlId: `L-ADT-${i}`, patient, charset: 'UNICODE UTF-8', sendingFacility: 'LEAD', visit: `V${patient.mrn}` }, 'A04'), 'UTF-8'));
      await timedSend(lead, encodeAs(simOru({ controlId: `L-ORU-${i}`, patient, charset: 'UNICODE UTF-8', sendingFacility: 'LEAD' }, bloodCount), 'UTF-8'));
    }
    out('[lead] resending 5 messages (network retry) and a corrected result under a reused control id…');
    for (let i = 0; i < 5; i++) await timedSend(lead, encodeAs(simAdt({ controlId: `L-ADT-${i}`, patient: simPatient(i, 'L'), charset: 'UNICODE UTF-8', sendingFacility: 'LEAD', visit: `VL${100000 + i}` }, 'A04'), 'UTF-8'));
    const corrected = bloodCount.map((r) => (r.code === 'HGB' ? { ...r, value: '128' } : r));
    await timedSend(lead, encodeAs(simOru({ controlId: 'L-ORU-0', patient: simPatient(0, 'L'), charset: 'UNICODE UTF-8', sendingFacility: 'LEAD' }, corrected, 'C'), 'UTF-8'));
    await lead.close();

    // 2. County hospital: GB18030 over four connections at once, updates sent out of order.
    out(`[county] sending ${300 / scale} GB18030 messages over 4 connections, some updates out of order…`);
    await Promise.all(
      [0, 1, 2, 3].map(async (c) => {
        const client = await MllpClient.connect(ports.county!);
        for (let i = c; i < (75 / scale) * 4; i += 4) {
          const patient = simPatient(i % 50, 'C');
          // Every patient gets updates whose event times run backwards on some connections.
          const time = `2026112${3 - (i % 3)}1000${String(i % 60).padStart(2, '0')}`;
          await timedSend(client, encodeAs(simAdt({ controlId: `C-${i}`, patient, charset: 'GB18030', sendingFacility: 'COUNTY', time, address: `解放路${i}号`, visit: `V${patient.mrn}` }), 'GB18030'));
        }
        await client.close();
      }),
    );
    out('[county] a message whose bytes are not valid GB18030, and a frame of garbage…');
    const county = await MllpClient.connect(ports.county!);
    const bad = Buffer.concat([encodeAs(simAdt({ controlId: 'C-BAD', patient: simPatient(7, 'C'), charset: 'GB18030' }), 'GB18030').subarray(0, 120), Buffer.from([0x81, 0x20]), Buffer.from('\r')]);
    await timedSend(county, bad);
    await timedSend(county, Buffer.from('this is not HL7 at all'));
    await county.close();

    // 3. Community centre: a GB18030 batch file with CRLF line ends, dropped with the rename protocol.
    out('[community] dropping a GB18030 batch file (FHS/BHS … BTS/FTS, CRLF) into its folder…');
    const batch = ['FHS|^~\\&|CHC|DONGHU|YILIAN|HUB|20261123080000', 'BHS|^~\\&|CHC|DONGHU|YILIAN|HUB|20261123080000'];
    for (let i = 0; i < 40 / scale; i++) batch.push(simAdt({ controlId: `D-${i}`, patient: simPatient(i, 'D'), charset: 'GB18030', sendingFacility: 'DONGHU', segmentEnd: '\r\n' }, 'A28').trimEnd());
    batch.push(`BTS|${40 / scale}`, 'FTS|1');
    mkdirSync(dropDir, { recursive: true });
    writeFileSync(path.join(dropDir, '.incoming.tmp'), encodeAs(batch.join('\r\n') + '\r\n', 'GB18030'));
    renameSync(path.join(dropDir, '.incoming.tmp'), path.join(dropDir, 'donghu-20261123.hl7'));

    // 4. Regional platform: a FHIR Bulk Data export (NDJSON) imported the way `yilian ingest` does.
    out('[platform] importing a FHIR Bulk Data export (Synthea NDJSON: Patient, AllergyIntolerance, Immunization)…');
    const fhirDir = path.join(samplesDir, 'fhir');
    const platform = config.members.find((m) => m.id === 'platform')!;
    const ndjson = readdirSync(fhirDir).filter((f) => f.endsWith('.ndjson')).map((f) => path.join(fhirDir, f));
    await ingestFiles(runtime, platform, ndjson, { fhirSource: 'https://platform.example/fhir', noWait: true });

    // 5. Mutual recognition traffic: six people seen at several members, results repeated inside and outside their windows.
    out('[recognition] six patients seen at the lead, the county and the community: lab results, chest X-rays, repeats…');
    const traffic = recognitionTraffic();
    const recLead = await MllpClient.connect(ports.lead!);
    const recCounty = await MllpClient.connect(ports.county!);
    for (const m of traffic) {
      if (m.member === 'lead') await timedSend(recLead, encodeAs(m.text, 'UTF-8'));
      else if (m.member === 'county') await timedSend(recCounty, encodeAs(m.text, 'GB18030'));
    }
    await recLead.close();
    await recCounty.close();
    const communityTraffic = traffic.filter((m) => m.member === 'community').map((m) => m.text.trimEnd().replace(/\r/g, '\r\n'));
    writeFileSync(path.join(dropDir, '.recognition.tmp'), encodeAs(communityTraffic.join('\r\n') + '\r\n', 'GB18030'));
    renameSync(path.join(dropDir, '.recognition.tmp'), path.join(dropDir, 'donghu-recognition.hl7'));
    const dropExpected = 40 / scale + communityTraffic.length;

    // Wait for the file to be picked up and every stored message to be through every stage — and
    // for the last job to end: a batch's messages are processed when its merge commits, and its
    // patient-index link follows before the job completes.
    for (let i = 0; i < 600; i++) {
      const left = await runtime.db.query<{ queued: number; drop: number }>(
        `SELECT count(*) FILTER (WHERE status = 'queued')::int AS queued, count(*) FILTER (WHERE channel_id = 'drop')::int AS drop FROM raw_message`,
      );
      const jobs = await runtime.queues.depths();
      if (left.rows[0]!.queued === 0 && left.rows[0]!.drop >= dropExpected && jobs.waiting + jobs.active + jobs.delayed === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const seconds = (Date.now() - started) / 1000;

    const status = await hubStatus(runtime.db, runtime.queues);
    out('\n== Channels ==');
    out(`${'member/channel'.padEnd(20)}${'received'.padStart(9)}${'processed'.padStart(10)}${'quarantined'.padStart(12)}${'duplicates'.padStart(11)}`);
    for (const c of status.channels) out(`${`${c.member}/${c.channel}`.padEnd(20)}${String(c.received).padStart(9)}${String(c.processed).padStart(10)}${String(c.quarantined).padStart(12)}${String(c.duplicates).padStart(11)}`);
    const sorted = [...latencies].sort((a, b) => a - b);
    out(`\nACKs: ${[...ackCodes].map(([k, v]) => `${k} ${v}`).join(', ')}; ACK latency (sent → ACK, stored first) p50 ${percentile(sorted, 50).toFixed(2)} ms, p99 ${percentile(sorted, 99).toFixed(2)} ms`);

    const quarantine = await runtime.db.query<{ raw_id: number; member_id: string; stage: string; code: string; reason: string }>(
      `SELECT q.raw_id, r.member_id, q.stage, q.code, q.reason FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE q.state = 'open' ORDER BY q.id`,
    );
    out('\n== Quarantine (kept with their bytes; fix and `yilian replay --raw-id N`) ==');
    for (const q of quarantine.rows) out(`raw ${q.raw_id} ${q.member_id} ${q.stage}/${q.code}: ${q.reason}`);

    const revised = await runtime.db.query<{ id: number; control_id: string; revision: number; flags: string[] }>(`SELECT id, control_id, revision, flags FROM raw_message WHERE revision > 1`);
    out('\n== Corrected results (same MSH-10, different content: stored as a new revision, not a duplicate) ==');
    for (const r of revised.rows) out(`raw ${r.id} control id ${r.control_id} revision ${r.revision} flags ${r.flags.join(',')}`);

    const patients = await runtime.db.query<{ member_id: string; mrn: string; demographics: Record<string, string>; event_time: Date; updates: number; stale: number }>(
      `SELECT p.member_id, p.mrn, p.demographics, p.event_time,
              (SELECT count(*)::int FROM patient_event e WHERE e.member_id = p.member_id AND e.mrn = p.mrn) AS updates,
              (SELECT count(*)::int FROM patient_event e WHERE e.member_id = p.member_id AND e.mrn = p.mrn AND NOT e.applied) AS stale
         FROM source_patient p WHERE p.mrn IN ('L100000', 'C100001', 'D100002', 'C100007') ORDER BY 1, 2`,
    );
    out('\n== Source patient records (latest event time wins, whatever the arrival order) ==');
    for (const p of patients.rows) {
      const d = p.demographics;
      out(`${p.member_id}/${p.mrn}: ${d.family ?? ''}${d.given ?? ''} ${d.sex ?? ''} born ${d.birthDate ?? '?'}, ${d.address ?? ''} — ${p.updates} updates, ${p.stale} arrived late and were not applied; state as of ${new Date(p.event_time).toISOString()}`);
    }
    const resources = await runtime.db.query<{ resource_type: string; n: number }>(`SELECT resource_type, count(*)::int AS n FROM resource GROUP BY 1 ORDER BY 2 DESC`);
    out('\n== FHIR R4 resources converted and stored (deterministic ids: a resend or update changes the same record) ==');
    out(resources.rows.map((r) => `${r.resource_type} ${r.n}`).join(', '));
    const example = await runtime.db.query<{ content: { name?: Array<{ text?: string }>; identifier?: Array<{ value?: string }>; birthDate?: string; gender?: string }; version: number }>(
      `SELECT content, version FROM resource WHERE resource_type = 'Patient' AND member_id = 'county' AND content->'identifier'->0->>'value' = 'C100001'`,
    );
    const p = example.rows[0];
    if (p) out(`e.g. Patient ${p.content.name?.[0]?.text ?? ''} (MRN ${p.content.identifier?.[0]?.value}, ${p.content.gender}, born ${p.content.birthDate}), version ${p.version} after its updates`);
    const totals = await runtime.db.query<{ n: number; patients: number }>(`SELECT (SELECT count(*)::int FROM raw_message) AS n, (SELECT count(*)::int FROM source_patient) AS patients`);

    // The committee's view: how much of what arrived maps to the shared standards, and what does not yet.
    const cover = await coverage(runtime.db);
    out('\n== Code mapping coverage (local codes → ICD-11 / LOINC / UCUM; `yilian mappings coverage`, `worklist`) ==');
    for (const c of cover.rows) out(`${`${c.member}/${c.channel}`.padEnd(20)}${c.system.padEnd(44)} ${String(c.occurrencePct).padStart(6)} % of ${c.occurrences} occurrences, ${c.mappedCodes}/${c.distinctCodes} codes`);
    const unmapped = (await worklist(runtime.db, { limit: 5 })) as Array<{ member: string; system: string; code: string; display: string | null; count: number }>;
    if (unmapped.length) out(`most frequent unmapped: ${unmapped.map((u) => `${u.member} ${u.code}${u.display ? ` (${u.display})` : ''} ×${u.count}`).join('; ')}`);

    // One person = one record across members: what the patient index made of the source patients.
    await syncPatientIndex(runtime.db, { actor: 'demo' });
    const index = await runtime.db.query<{ golden: number; multi: number; largest: number; review: number; manual: number }>(
      `WITH g AS (SELECT golden_id, count(*) AS n FROM mpi_link WHERE state = 'MATCH' GROUP BY golden_id)
       SELECT (SELECT count(*)::int FROM g) AS golden, (SELECT count(*)::int FROM g WHERE n > 1) AS multi, (SELECT coalesce(max(n), 0)::int FROM g) AS largest,
              (SELECT count(*)::int FROM mpi_link WHERE state = 'POSSIBLE_MATCH') AS review, (SELECT count(*)::int FROM mpi_link WHERE mode = 'MANUAL') AS manual`,
    );
    const idx = index.rows[0]!;
    out('\n== Patient index (golden patients across members; `yilian mpi export --format csv`, `mpi review`) ==');
    out(`${totals.rows[0]!.patients} source patients → ${idx.golden} golden patients; ${idx.multi} of them registered at more than one member (at most ${idx.largest} source records on one); ${idx.review} pairs waiting for review, ${idx.manual} manual decisions`);

    // Mutual recognition: what a clinician's HIS asks before ordering, and what management sees.
    await syncRecognitionIndex(runtime.db);
    out('\n== Mutual recognition: the community asks before ordering (patient by its own MRN, tests by code or the lead\'s local code) ==');
    const asked = [
      { at: '2026-11-12T00:00:00Z', tests: ['14749-6', { member: 'lead', code: 'HGB' }, '36643-5', '2823-3'] },
      { at: '2026-11-20T00:00:00Z', tests: ['14749-6', '36643-5'] },
    ];
    for (const q of asked) {
      const answer = await recognitionCheck(runtime.db, config, { patient: { member: 'community', mrn: simPatient(503, 'DR').mrn }, tests: q.tests, at: q.at, requestingMember: 'community' }, 'demo');
      out(`check at ${q.at.slice(0, 10)} for golden patient ${answer.patient} (${answer.sourcePatients} source patients):`);
      for (const t of answer.tests) {
        const name = `${typeof t.requested === 'string' ? t.requested : `${t.requested.member}:${t.requested.code}`}${t.code && t.code !== t.requested ? ` → ${t.code}` : ''} ${t.display ?? ''}`.trim();
        const r = t.recognisable[0];
        if (r) out(`  ${name}: recognisable — ${r.value.value === null ? `${r.resourceType} (report)` : `${r.value.value} ${r.value.unit ?? ''}`}${r.original.unit && r.original.unit !== r.value.unit ? ` (sent as ${r.original.value} ${r.original.unit})` : ''} from ${r.member} on ${r.time.slice(0, 10)}, valid until ${r.expires.slice(0, 10)}`);
        else out(`  ${name}: not recognisable — ${t.reasons.join(', ')}`);
      }
    }
    const duplicates = await duplicateReport(runtime.db, config, {});
    out('\n== Duplicate tests (a repeat while another member\'s result was still valid; `yilian recognition duplicates --format csv`) ==');
    for (const d of duplicates.pairs) out(`patient ${d.patient.slice(0, 8)} ${d.code} ${d.firstMember} ${d.firstTime.slice(0, 10)} → repeated at ${d.repeatMember} ${d.repeatTime.slice(0, 10)} (${d.wastedCost} ${duplicates.totals.currency})`);
    const rate = duplicates.totals.recognitionRate;
    out(`totals: ${duplicates.totals.repeats} repeats, wasted ${duplicates.totals.wastedCost} ${duplicates.totals.currency}; ${duplicates.totals.recognised} checks recognised (avoided ${duplicates.totals.avoidedCost} ${duplicates.totals.currency}); recognition rate ${rate === null ? 'n/a' : `${(rate * 100).toFixed(0)} %`}`);
    // What the cost-accounting system pulls, and the indicators the alliance is judged on.
    const feed = await costFeedSummary(runtime.db, config);
    out('\n== Cost event feed (pseudonymous patient keys, never names or IDs; `yilian feed cost --format ndjson`) ==');
    out(`${feed.events} events up to cursor ${feed.lastCursor}, ${feed.patients} pseudonymous patients, ${feed.corrections} corrections: ${Object.entries(feed.byKind).map(([kind, n]) => `${kind} ${n}`).join(', ')}`);
    const sample = (await readPage(runtime.db, 0, 1000)).events.map((e) => JSON.parse(e) as { kind: string; duplicateOf?: unknown }).find((e) => e.kind === 'lab-test');
    if (sample) out(`e.g. ${JSON.stringify(sample)}`);
    out('\n== Alliance KPIs (`yilian kpi`) ==');
    // From the demo's first results (2026-09) to this month: mapping coverage counts codes on the day they were stored.
    const thisMonth = new Date().toISOString().slice(0, 7);
    out(formatKpis(await computeKpis(runtime.db, config, { from: '2026-09', to: thisMonth > '2026-11' ? thisMonth : '2026-11' })).trimEnd());
    out(`\n${totals.rows[0]!.n} messages stored, ${totals.rows[0]!.patients} source patients, in ${seconds.toFixed(1)} s. Queues: ${JSON.stringify(status.queues)}`);
    // What to look at next, on the store the demo leaves (each of these is run on it by test/demo-store.int.test.ts).
    const shownConfig = path.relative(process.cwd(), configPath) || configPath;
    const firstQuarantined = quarantine.rows[0]?.raw_id;
    out(`\n== Next: the demo's store stays in ${path.relative(process.cwd(), dataDir) || dataDir} ==`);
    out(`export YILIAN_CONFIG=${shownConfig.startsWith('..') ? configPath : shownConfig}`);
    for (const command of nextCommands(firstQuarantined)) out(`  ${command}`);
    out('then `yilian serve` (console and API on port 8080; see README), `yilian worker` on as many machines as needed.');
    return 0;
  } finally {
    await worker.close();
    for (const stop of stops.reverse()) await stop();
    await runtime.close();
  }
}
