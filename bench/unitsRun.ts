/**
 * Sends a generated alliance (bench/unitsAlliance.ts) through the real path and scores the duplicate
 * report: the members' ConceptMaps proposed and approved by the committee's workflow; every ADT and
 * ORU^R01 received by the intake (raw store + queue) and processed by pipeline workers; the patient
 * index and the recognition index synced; then `duplicateReport` in-process and, when a built CLI is
 * given, `yilian recognition duplicates --format csv` in a child process. Shared by the benchmark
 * and its CI-sized test so both measure the same thing.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { HubConfig, MemberConfig } from '../hub/config';
import type { Runtime } from '../cli/runtime';
import { encodeAs } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { approve, propose } from '../hub/terminology/workflow';
import { syncTerminology } from '../hub/terminology/versions';
import { unitMismatches, type UnitMismatch } from '../hub/terminology/worklist';
import { syncPatientIndex } from '../hub/mpi/sync';
import { exportLinks } from '../hub/mpi/review';
import { syncRecognitionIndex } from '../hub/recognition/resultIndex';
import { duplicateReport } from '../hub/recognition/duplicates';
import { analyteOf } from '../mappings/terminology/analytes';
import { LOINC } from '../mappings/terminology/systems';
import { allianceConfig, allianceMappings, score, truthGroupedBy, type GeneratedAlliance, type Scored } from './unitsAlliance';

const run = promisify(execFile);

export interface AllianceRun {
  approvalWarnings: string[];
  unitMismatches: UnitMismatch[];
  processed: number;
  failed: number;
  ingestSeconds: number;
  indexRows: number;
  report: Scored;
  /** The same report scored against the truth on the patient index's golden patients (persons it linked count as one). */
  reportByGolden: Scored;
  goldenPatients: number;
  reportSeconds: number;
  csv?: Scored & { seconds: number };
}

/** The analyte (or the code itself) of a reported code: both codes of a pair are one item. */
const itemOf = (code: string) => analyteOf(code)?.id ?? code;

/** A CSV time: ISO 8601 with an offset, or HL7 `YYYYMMDDHHMMSS` in UTC (the older contract). */
function parseCsvTime(text: string): number {
  const hl7 = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(text);
  if (hl7) return Date.UTC(+hl7[1]!, +hl7[2]! - 1, +hl7[3]!, +hl7[4]!, +hl7[5]!, +hl7[6]!);
  return Date.parse(text);
}

export async function runAlliance(
  runtime: Runtime,
  alliance: GeneratedAlliance,
  options: { workers?: number; cli?: string; databaseUrl?: string; log?: (line: string) => void } = {},
): Promise<AllianceRun> {
  const db = runtime.db;
  const config = runtime.config as HubConfig;
  const log = options.log ?? (() => undefined);
  await syncTerminology(db);

  // 1. The committee's maps: one proposal per member code, approved (the warning says nothing yet: no result is stored).
  const approvalWarnings: string[] = [];
  for (const m of allianceMappings()) {
    const p = await propose(db, { sourceSystem: m.system, sourceCode: m.code, sourceDisplay: m.display, targetSystem: LOINC, targetCode: m.target, equivalence: 'equivalent' }, 'bench.integration');
    approvalWarnings.push(...(await approve(db, p.id, 'bench.committee', 'generated alliance')).warnings);
  }

  // 2. Intake (raw store + queue), then pipeline workers until nothing is queued.
  const channel = { id: 'lis', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  const t0 = Date.now();
  const workers = Array.from({ length: options.workers ?? 2 }, () => new PipelineWorker({ db, config }, runtime.queues, { reconcile: false }));
  // ADTs first and processed before the results (a result's patient is then already known to the index).
  const adts = alliance.messages.filter((m) => m.result === undefined);
  const orus = alliance.messages.filter((m) => m.result !== undefined);
  for (const w of workers) await w.start();
  try {
    for (const batch of [adts, orus]) {
      for (let i = 0; i < batch.length; i += 200) {
        await Promise.all(
          batch.slice(i, i + 200).map((m) => runtime.intake.receive({ member: config.members.find((x) => x.id === m.member) as MemberConfig, channel, bytes: encodeAs(m.text, 'UTF-8') })),
        );
      }
      await runtime.intake.drain();
      // Poll the raw store (the workers report through it); a short interval, not a fixed sleep for the work.
      for (;;) {
        const q = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE status = 'queued'`);
        if (q.rows[0]!.n === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      if (batch === adts) await syncPatientIndex(db);
    }
  } finally {
    for (const w of workers) await w.close();
  }
  const status = await db.query<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM raw_message GROUP BY status`);
  const processed = status.rows.find((r) => r.status === 'processed')?.n ?? 0;
  const failed = status.rows.filter((r) => r.status !== 'processed').reduce((s, r) => s + r.n, 0);
  const ingestSeconds = (Date.now() - t0) / 1000;
  log(`ingested ${alliance.messages.length} messages (${orus.length} results) in ${ingestSeconds.toFixed(1)} s: ${processed} processed, ${failed} not`);

  // 3. The indexes the report reads.
  await syncPatientIndex(db);
  const sync = await syncRecognitionIndex(db, { full: true });
  log(`recognition index: ${sync.rows} rows from ${sync.resources} resources`);

  // Which generated result each Observation is: its message's control id is `U<index>`.
  const byResource = new Map<string, number>();
  const ids = await db.query<{ id: string; control_id: string }>(`SELECT r.id, m.control_id FROM resource r JOIN raw_message m ON m.id = r.raw_id WHERE r.resource_type = 'Observation'`);
  for (const row of ids.rows) if (/^U\d+$/.test(row.control_id)) byResource.set(row.id, Number(row.control_id.slice(1)));
  // Which golden patient each person is (the CSV names golden patients, not resources).
  const golden = new Map<string, number>();
  const mrnToPerson = new Map(alliance.persons.map((p) => [p.patient.mrn, p.index]));
  for (const link of await exportLinks(db)) {
    const person = mrnToPerson.get(link.mrn);
    if (person !== undefined) golden.set(link.patient, person);
  }

  const links = await exportLinks(db);
  const goldens = new Set(links.filter((l) => mrnToPerson.has(l.mrn)).map((l) => l.patient)).size;
  const goldenOfRecord = new Map(links.map((l) => [`${l.member}|${l.mrn}`, l.patient]));
  const byGolden = truthGroupedBy(alliance, (r) => goldenOfRecord.get(`${r.member}|${alliance.persons[r.person]!.patient.mrn}`) ?? `person ${r.person}`);
  log(`patient index: ${alliance.persons.length} persons → ${goldens} golden patients`);

  // 4. The report, in-process.
  const t1 = Date.now();
  const report = await duplicateReport(db, config, {});
  const reportSeconds = (Date.now() - t1) / 1000;
  const reported = new Map<number | string, number | null>();
  for (const pair of report.pairs) {
    const repeat = byResource.get(pair.repeatResourceId);
    reported.set(repeat ?? `resource ${pair.repeatResourceId}`, byResource.get(pair.firstResourceId) ?? null);
  }
  const scored = score(alliance, reported);
  const scoredByGolden = score(alliance, reported, (r) => byGolden.get(r.index) ?? null);

  // 5. The same through the CLI's CSV, matched on (golden patient → person, analyte, repeat member, repeat instant).
  let csv: AllianceRun['csv'];
  if (options.cli && options.databaseUrl) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-units-'));
    try {
      const file = path.join(dir, 'config.json');
      // The alliance's own config input (not the parsed config: dates and defaults stay as a site writes them).
      writeFileSync(file, JSON.stringify({ databaseUrl: options.databaseUrl, ...allianceConfig() }));
      const t2 = Date.now();
      const { stdout } = await run(process.execPath, [options.cli, 'recognition', 'duplicates', '--format', 'csv', '--config', file], { env: { ...process.env, YILIAN_CONFIG: file, DATABASE_URL: options.databaseUrl }, maxBuffer: 256 * 1024 * 1024 });
      const seconds = (Date.now() - t2) / 1000;
      const [header, ...lines] = stdout.trim().split('\n');
      const cols = header!.split(',');
      const col = (name: string) => cols.indexOf(name);
      const key = (person: number, item: string, member: string, at: number) => `${person}|${item}|${member}|${at}`;
      const results = new Map(alliance.results.map((r) => [key(r.person, r.analyte, r.member, r.at), r.index]));
      // Results' instants as the hub reads them: the member's wall time at its UTC offset.
      const offsetMs = (member: string) => {
        const o = (config.members.find((m) => m.id === member) as { utcOffset?: string } | undefined)?.utcOffset ?? '+08:00';
        const sign = o.startsWith('-') ? -1 : 1;
        return sign * (Number(o.slice(1, 3)) * 60 + Number(o.slice(4, 6))) * 60_000;
      };
      const fromCsv = new Map<number | string, number | null>();
      for (const line of lines.filter(Boolean)) {
        const f = line.split(',');
        const person = golden.get(f[col('patient')]!);
        const item = itemOf(f[col('code')]!);
        const repeatMember = f[col('repeat_member')]!;
        const firstMember = f[col('first_member')]!;
        const repeat = person === undefined ? undefined : results.get(key(person, item, repeatMember, parseCsvTime(f[col('repeat_time')]!) + offsetMs(repeatMember)));
        const first = person === undefined ? undefined : results.get(key(person, item, firstMember, parseCsvTime(f[col('first_time')]!) + offsetMs(firstMember)));
        fromCsv.set(repeat ?? `csv ${line}`, first ?? null);
      }
      csv = { ...score(alliance, fromCsv), seconds };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const indexRows = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM recognition_result`)).rows[0]!.n;
  return { approvalWarnings, unitMismatches: await unitMismatches(db), processed, failed, ingestSeconds, indexRows, report: scored, reportByGolden: scoredByGolden, goldenPatients: goldens, reportSeconds, csv };
}

/** Why a missed repeat was missed, from what the index holds for it and its earlier result. */
export async function explainMissed(runtime: Runtime, alliance: GeneratedAlliance, scored: Scored, limit = 20): Promise<string[]> {
  const out: string[] = [];
  const byPair = new Map<string, number>();
  for (const r of scored.missed) {
    const first = alliance.results[r.repeatOf!]!;
    const k = `${first.member}:${first.local.code}(${first.local.unit}→${first.local.target}) → ${r.member}:${r.local.code}(${r.local.unit}→${r.local.target})`;
    byPair.set(k, (byPair.get(k) ?? 0) + 1);
  }
  for (const [k, n] of [...byPair].sort((a, b) => b[1] - a[1])) out.push(`missed ${n}: ${k}`);
  for (const r of scored.missed.slice(0, limit)) {
    const rows = await runtime.db.query<{ code: string; member_id: string; effective_at: Date; value: number | null; unit: string | null; original_unit: string | null; status: string }>(
      `SELECT i.code, i.member_id, i.effective_at, i.value, i.unit, i.original_unit, i.status FROM recognition_result i JOIN resource r ON r.resource_type = i.resource_type AND r.id = i.resource_id JOIN raw_message m ON m.id = r.raw_id WHERE m.control_id = ANY($1::text[])`,
      [[`U${r.repeatOf}`, `U${r.index}`]],
    );
    out.push(`  result U${r.index} (${r.member} ${r.local.code} ${r.value} ${r.local.unit}) repeats U${r.repeatOf}: index ${JSON.stringify(rows.rows)}`);
  }
  return out;
}
