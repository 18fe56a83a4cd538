/**
 * Guards the duplicate report across units and codes (issue 21): a generated alliance of three
 * members (bench/unitsAlliance.ts) reports glucose, creatinine, cholesterol, triglyceride and urate
 * in mg/dL at one member and in mmol/L / µmol/L at two, mapped to the mass code at some members, the
 * substance code at others, and substance units under a mass code at one (the held-out case). A few
 * hundred results go through the real path (intake → pipeline workers → recognition index) and the
 * report — in-process and `yilian recognition duplicates --format csv` — must find the known repeats
 * with precision and recall ≥ 0.99. The same harness is bench/recognitionUnits.ts at scale.
 */
import path from 'node:path';
import { generateAlliance, allianceConfig } from '../bench/unitsAlliance';
import { explainMissed, runAlliance } from '../bench/unitsRun';
import { startTestHub, type TestHub } from './support/hub';

const cli = path.join(__dirname, '..', 'dist', 'cli', 'yilian.js');
let hub: TestHub;

beforeAll(async () => {
  hub = await startTestHub('recunits', allianceConfig() as Record<string, unknown>);
}, 60_000);

afterAll(async () => {
  await hub?.close();
});

test('the duplicate report finds the known repeats across mass and substance codes and units: precision and recall ≥ 0.99', async () => {
  const alliance = generateAlliance(70, 2112);
  const truth = alliance.results.filter((r) => r.repeatOf !== null);
  // The fixture itself must exercise the cases: repeats between every pair of members and across the pair's two codes.
  expect(alliance.results.length).toBeGreaterThanOrEqual(250);
  expect(truth.length).toBeGreaterThanOrEqual(40);
  expect(truth.some((r) => r.local.target !== alliance.results[r.repeatOf!]!.local.target)).toBe(true);
  expect(truth.some((r) => r.member === 'community' && ['0301', '0302', '0305'].includes(r.local.code))).toBe(true);

  const outcome = await runAlliance(hub.runtime, alliance, { workers: 2, cli, databaseUrl: hub.databaseUrl });
  expect(outcome.failed).toBe(0);
  // The truth is per generated person: the patient index must see each person as one golden patient.
  expect(outcome.goldenPatients).toBe(70);
  // The held-out maps (substance units under a mass code) are flagged for the committee.
  expect(new Set(outcome.unitMismatches.map((m) => `${m.member}:${m.code}`))).toEqual(new Set(['community:0301', 'community:0302', 'community:0305']));

  // When recall falls, the failure names the missed member/code pairs and what the index holds for them.
  const why = outcome.report.recall < 0.99 ? await explainMissed(hub.runtime, alliance, outcome.report) : [];
  expect(why).toEqual([]);
  expect(outcome.report.precision).toBeGreaterThanOrEqual(0.99);
  expect(outcome.report.recall).toBeGreaterThanOrEqual(0.99);
  expect(outcome.csv!.precision).toBeGreaterThanOrEqual(0.99);
  expect(outcome.csv!.recall).toBeGreaterThanOrEqual(0.99);
}, 240_000);
