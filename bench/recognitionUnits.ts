/**
 * Duplicate report across units and codes (issue 21): a generated alliance (bench/unitsAlliance.ts:
 * lead tertiary, county secondary, community primary; glucose, creatinine, cholesterol,
 * triglyceride, urate; one member in mg/dL under the mass codes, two in mmol/L / µmol/L, one of them
 * with substance units under mass codes) sent through the real path (bench/unitsRun.ts: committee
 * approvals, intake, pipeline workers, patient and recognition index, `duplicateReport` and
 * `yilian recognition duplicates --format csv`), scored against the known truth. Target: precision
 * and recall ≥ 0.99 each. When below, the missed repeats are listed by member/code pair with what
 * the recognition index holds for them.
 * Run: `npx tsc -p . && node dist/bench/recognitionUnits.js [--persons N] [--seed S] [--workers N]`.
 */
import path from 'node:path';
import { parseConfig } from '../hub/config';
import { allianceConfig, generateAlliance } from './unitsAlliance';
import { explainMissed, runAlliance } from './unitsRun';
import { benchHub } from './support';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, fallback: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback);
  const persons = arg('--persons', 1500);
  const seed = arg('--seed', 21);
  const out = (t: string) => process.stdout.write(`${t}\n`);
  const input = allianceConfig();
  const hub = await benchHub('recunits', input.members);
  // The bench hub is opened with members only; the recognition config is the alliance's (accreditation, prices).
  Object.assign(hub.runtime.config.recognition, parseConfig({ recognition: input.recognition }).recognition);
  try {
    const alliance = generateAlliance(persons, seed);
    const truth = alliance.results.filter((r) => r.repeatOf !== null);
    const cross = truth.filter((r) => r.local.target !== alliance.results[r.repeatOf!]!.local.target);
    const heldOut = truth.filter((r) => ['0301', '0302', '0305'].includes(r.local.code) || ['0301', '0302', '0305'].includes(alliance.results[r.repeatOf!]!.local.code));
    out(`alliance: ${persons} persons, ${alliance.results.length} results, ${truth.length} true repeats (${cross.length} across the two codes of a pair, ${heldOut.length} involving substance units under a mass code), seed ${seed}`);
    const run = await runAlliance(hub.runtime, alliance, { workers: arg('--workers', 2), cli: path.join(__dirname, '..', 'cli', 'yilian.js'), databaseUrl: hub.databaseUrl, log: out });
    out(`approval warnings: ${run.approvalWarnings.length} (maps approved before any result was stored)`);
    out(`unit mismatches flagged after ingest: ${run.unitMismatches.length}`);
    for (const m of run.unitMismatches) out(`  ${m.member}: ${m.message} (${m.count} of ${m.total})`);
    const line = (name: string, s: typeof run.report, seconds: number) =>
      out(`${name}: reported ${s.reported}, true ${s.truth}, true positives ${s.truePositives}; precision ${s.precision.toFixed(4)}, recall ${s.recall.toFixed(4)}; paired with the right earlier result ${s.pairedRight}/${s.truePositives}; ${seconds.toFixed(2)} s`);
    line('duplicateReport (in-process)', run.report, run.reportSeconds);
    line(`duplicateReport against the truth on the index's ${run.goldenPatients} golden patients`, run.reportByGolden, run.reportSeconds);
    if (run.csv) line('yilian recognition duplicates --format csv', run.csv, run.csv.seconds);
    const target = run.report.precision >= 0.99 && run.report.recall >= 0.99 && (!run.csv || (run.csv.precision >= 0.99 && run.csv.recall >= 0.99));
    out(`target precision and recall ≥ 0.99: ${target ? 'met' : 'NOT met'}`);
    if (run.report.missed.length) for (const l of await explainMissed(hub.runtime, alliance, run.report)) out(l);
    if (run.report.spurious.length) out(`spurious (first 10): ${run.report.spurious.slice(0, 10).join('; ')}`);
  } finally {
    await hub.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
