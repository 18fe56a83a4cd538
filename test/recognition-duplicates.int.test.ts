/**
 * The duplicate-test report after issue 21, on real PostgreSQL. Report logic on recognition-index
 * rows written directly (golden patients and their sources too), so each case states exactly the
 * results it judges: either code of a mass/substance pair is one test (glucose mg/dL 2345-7 at one
 * member, mmol/L 14749-6 at another: one repeat); a DiagnosticReport that contains the Observation
 * of the same code is not a second result (one line, not two), while a RIS imaging report — a
 * DiagnosticReport whose OBX carries only the finding — still is one; times carry the offset of the
 * member that did the test (CSV, JSON, HTTP, CLI); `--rules current` judges by today's rules (a
 * window lengthened later catches a repeat the rules of the time did not), the default does not; the
 * cost feed's flag (repeatsOf) and the KPIs count each repeat once. Then one case end to end through
 * the real pipeline (HL7 v2 ORU whose OBR carries its OBX's code → resources → index → report).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import { simAdt, type SimPatient } from '../cli/simulate';
import { exportLinks } from '../hub/mpi/review';
import { duplicateReport, repeatsOf, type DuplicateReport } from '../hub/recognition/duplicates';
import { duplicatesCsv, DUPLICATES_CSV_HEADER } from '../hub/recognition/format';
import { setRule } from '../hub/recognition/rules';
import { computeKpis } from '../hub/feeds/kpi';
import { ingestResults } from './support/results';
import { listenApi, startTestHub, type TestHub } from './support/hub';

const run = promisify(execFile);
const cli = path.join(__dirname, '..', 'dist', 'cli', 'yilian.js');

// west is a member six hours east of UTC (+06:00), the others +08:00: the offsets must differ to show
// that each time carries the offset of the member that did the test.
const members = [
  { id: 'lead', name: 'Provincial People’s Hospital', tier: 'tertiary' },
  { id: 'county', name: 'Qingshan County Hospital', tier: 'secondary' },
  { id: 'west', name: 'Kashgar Prefecture Hospital', tier: 'secondary', utcOffset: '+06:00' },
].map((m) => ({ ...m, channels: [{ id: 'his', kind: 'mllp', port: 0 }], conversion: { residentIdField: 19 } }));
const recognition = {
  currency: 'CNY',
  accreditation: ['lead', 'county', 'west'].map((member) => ({ member, scheme: 'NCCL-EQA', validFrom: '2026-01-01', validTo: '2026-12-31' })),
  priceLists: ['lead', 'county', 'west'].map((member) => ({ member, version: '2026', effectiveFrom: '2026-01-01', prices: { '2345-7': 8, '14749-6': 10, '718-7': 20, '2160-0': 9, '14682-9': 9, '30799-1': 300, '36643-5': 60 } })),
};
const ADMIN = 'admin-key-0123456789abcdef';

let hub: TestHub;
let server: Server;
let base: string;

/** A golden patient with one source patient (member, MRN, Patient resource id) per member. */
async function golden(id: string): Promise<Record<string, string>> {
  const db = hub.runtime.db;
  await db.query(`INSERT INTO mpi_golden (id) VALUES ($1)`, [id]);
  const patients: Record<string, string> = {};
  for (const m of members) {
    const mrn = `${id}-${m.id}`;
    patients[m.id] = `pat-${mrn}`;
    await db.query(`INSERT INTO mpi_source (member_id, mrn, record, block_keys, patient_resource_id, source_updated_at) VALUES ($1, $2, '{}', '{}', $3, now())`, [m.id, mrn, patients[m.id]]);
    await db.query(`INSERT INTO mpi_link (member_id, mrn, golden_id, state, mode) VALUES ($1, $2, $3, 'MATCH', 'MANUAL')`, [m.id, mrn, id]);
  }
  return patients;
}

interface Row {
  type?: 'Observation' | 'DiagnosticReport' | 'ImagingStudy';
  id: string;
  code: string;
  member: string;
  patient: string;
  at: string;
  value?: number | null;
  unit?: string | null;
  status?: string;
}
/** A recognition-index row as resultIndex.ts writes it (the report reads nothing else of a result). */
async function result(r: Row): Promise<void> {
  await hub.runtime.db.query(
    `INSERT INTO recognition_result (resource_type, resource_id, code, member_id, patient_id, effective_at, value, unit, original_value, original_unit, status, specimen, lab, source_updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $8, $9, NULL, NULL, now())`,
    [r.type ?? 'Observation', r.id, r.code, r.member, r.patient, r.at, r.value ?? null, r.unit ?? null, r.status ?? 'final'],
  );
}

const line = (p: DuplicateReport['pairs'][number]) => `${p.code} ${p.firstMember}@${p.firstTime} → ${p.repeatMember}@${p.repeatTime}`;
const of = (report: DuplicateReport, patient: string) => report.pairs.filter((p) => p.patient === patient).map(line);

beforeAll(async () => {
  hub = await startTestHub('recdup', { members, recognition, api: { keys: [{ name: 'ops', key: ADMIN, scopes: ['admin'] }] } });
  ({ server, base } = await listenApi(hub.runtime));
}, 120_000);

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await hub?.close();
});

describe('report logic on index rows', () => {
  let g: Record<string, Record<string, string>>;
  beforeAll(async () => {
    g = { pair: await golden('G-PAIR'), dr: await golden('G-DR'), img: await golden('G-IMG'), ris: await golden('G-RIS'), whatif: await golden('G-WHATIF'), far: await golden('G-FAR') };
    // 1. Glucose: county in mg/dL (2345-7), then the lead in mmol/L (14749-6) 2 days later — inside
    //    the 7-day window: one test on one person, one repeat. Then west in mg/dL again a day later:
    //    a repeat of the lead's (the most recent other member's), across the pair the other way.
    await result({ id: 'pair-county', code: '2345-7', member: 'county', patient: g.pair!.county!, at: '2026-04-09T02:00:00Z', value: 99, unit: 'mg/dL' });
    await result({ id: 'pair-lead', code: '14749-6', member: 'lead', patient: g.pair!.lead!, at: '2026-04-11T00:54:00Z', value: 5.6, unit: 'mmol/L' });
    await result({ id: 'pair-west', code: '2345-7', member: 'west', patient: g.pair!.west!, at: '2026-04-12T03:00:00Z', value: 101, unit: 'mg/dL' });
    // 2. Creatinine by the OBR/OBX shape: each member's DiagnosticReport carries its Observation's code
    //    at the same instant. One repeat (lead's Observation), not two.
    for (const [member, at] of [['county', '2026-04-01T01:00:00Z'], ['lead', '2026-04-05T01:00:00Z']] as const) {
      await result({ type: 'DiagnosticReport', id: `dr-${member}-report`, code: '14682-9', member, patient: g.dr![member]!, at });
      await result({ id: `dr-${member}-obs`, code: '14682-9', member, patient: g.dr![member]!, at, value: 80, unit: 'umol/L' });
    }
    // 3. Head CT from a RIS whose OBX repeats the OBR's code (report + finding, same instant): one exam each.
    for (const [member, at] of [['county', '2026-04-02T01:00:00Z'], ['lead', '2026-04-12T01:00:00Z']] as const) {
      await result({ type: 'DiagnosticReport', id: `img-${member}-report`, code: '30799-1', member, patient: g.img![member]!, at });
      await result({ id: `img-${member}-finding`, code: '30799-1', member, patient: g.img![member]!, at });
    }
    // 4. Chest X-ray from a RIS whose OBX carries only the impression (19005-8): the report is the exam.
    await result({ type: 'DiagnosticReport', id: 'ris-county', code: '36643-5', member: 'county', patient: g.ris!.county!, at: '2026-04-03T01:00:00Z' });
    await result({ type: 'DiagnosticReport', id: 'ris-lead', code: '36643-5', member: 'lead', patient: g.ris!.lead!, at: '2026-04-13T01:00:00Z' });
    // 5. Haemoglobin 10 days apart: outside the 7-day window in force then (what-if below lengthens it).
    await result({ id: 'whatif-county', code: '718-7', member: 'county', patient: g.whatif!.county!, at: '2026-04-01T01:00:00Z', value: 130, unit: 'g/L' });
    await result({ id: 'whatif-lead', code: '718-7', member: 'lead', patient: g.whatif!.lead!, at: '2026-04-11T01:00:00Z', value: 131, unit: 'g/L' });
    // 6. Glucose pair 9 days apart: outside both codes' 7-day windows, no repeat (the pairing does not widen anything).
    await result({ id: 'far-county', code: '2345-7', member: 'county', patient: g.far!.county!, at: '2026-04-01T01:00:00Z', value: 99, unit: 'mg/dL' });
    await result({ id: 'far-lead', code: '14749-6', member: 'lead', patient: g.far!.lead!, at: '2026-04-10T01:00:00Z', value: 5.5, unit: 'mmol/L' });
  });

  test('a mass/substance pair is one test: glucose mg/dL then mmol/L at another member is one repeat, reported under the repeat’s code', async () => {
    const report = await duplicateReport(hub.runtime.db, hub.config, {});
    expect(of(report, 'G-PAIR')).toEqual([
      '14749-6 county@2026-04-09T10:00:00+08:00 → lead@2026-04-11T08:54:00+08:00',
      '2345-7 lead@2026-04-11T08:54:00+08:00 → west@2026-04-12T09:00:00+06:00',
    ]);
    const [first, second] = report.pairs.filter((p) => p.patient === 'G-PAIR');
    expect([first!.firstResourceId, first!.repeatResourceId, second!.firstResourceId, second!.repeatResourceId]).toEqual(['pair-county', 'pair-lead', 'pair-lead', 'pair-west']);
    // the wasted cost is the repeat's own code at the repeating member's list
    expect([first!.wastedCost, second!.wastedCost]).toEqual([10, 8]);
    expect(of(report, 'G-FAR')).toEqual([]);
  });

  test('a DiagnosticReport beside its Observation is not a second result: one line per repeat; a RIS report without such an Observation still counts', async () => {
    const report = await duplicateReport(hub.runtime.db, hub.config, {});
    expect(of(report, 'G-DR')).toEqual(['14682-9 county@2026-04-01T09:00:00+08:00 → lead@2026-04-05T09:00:00+08:00']);
    expect(report.pairs.find((p) => p.patient === 'G-DR')).toMatchObject({ firstResourceId: 'dr-county-obs', repeatResourceId: 'dr-lead-obs' });
    // imaging: the report and its finding are one exam; the report stands for it
    expect(of(report, 'G-IMG')).toEqual(['30799-1 county@2026-04-02T09:00:00+08:00 → lead@2026-04-12T09:00:00+08:00']);
    expect(report.pairs.find((p) => p.patient === 'G-IMG')).toMatchObject({ firstResourceId: 'img-county-report', repeatResourceId: 'img-lead-report' });
    expect(of(report, 'G-RIS')).toEqual(['36643-5 county@2026-04-03T09:00:00+08:00 → lead@2026-04-13T09:00:00+08:00']);
    // no repeat appears twice, in any form
    const keys = report.pairs.map((p) => `${p.patient} ${p.repeatMember} ${p.repeatTime}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(report.totals.repeats).toBe(report.pairs.length);
  });

  test('the cost feed’s flag: each test flagged once; a lab DiagnosticReport never, an imaging report and its finding alike', async () => {
    const flags = await repeatsOf(hub.runtime.db, hub.config, ['pair-county', 'pair-lead', 'pair-west', 'dr-lead-obs', 'DiagnosticReport/dr-lead-report', 'img-lead-report', 'img-lead-finding', 'ris-lead', 'whatif-lead', 'far-lead']);
    expect(Object.fromEntries(flags)).toEqual({
      'pair-lead': { earlierResourceId: 'pair-county', earlierMember: 'county' },
      'pair-west': { earlierResourceId: 'pair-lead', earlierMember: 'lead' },
      'dr-lead-obs': { earlierResourceId: 'dr-county-obs', earlierMember: 'county' },
      'img-lead-report': { earlierResourceId: 'img-county-report', earlierMember: 'county' },
      'img-lead-finding': { earlierResourceId: 'img-county-report', earlierMember: 'county' },
      'ris-lead': { earlierResourceId: 'ris-county', earlierMember: 'county' },
    });
  });

  test('CSV: the contract header, one line per repeat, ISO 8601 times with the offset of the member that did the test', async () => {
    const report = await duplicateReport(hub.runtime.db, hub.config, { from: new Date('2026-04-01T00:00:00Z'), to: new Date('2026-05-01T00:00:00Z') });
    const csv = duplicatesCsv(report).trim().split('\n');
    expect(csv[0]).toBe(DUPLICATES_CSV_HEADER);
    expect(csv).toHaveLength(1 + 5);
    expect(csv).toContain('G-PAIR,2345-7,lead,2026-04-11T08:54:00+08:00,west,2026-04-12T09:00:00+06:00');
    for (const l of csv.slice(1)) for (const t of [l.split(',')[3]!, l.split(',')[5]!]) expect(t).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/);
    // the same instants as the JSON of the index: 2026-04-12T09:00:00+06:00 is 03:00Z
    expect(Date.parse('2026-04-12T09:00:00+06:00')).toBe(Date.parse('2026-04-12T03:00:00Z'));
  });

  test('KPIs count each repeat once (the container report adds nothing)', async () => {
    const kpi = await computeKpis(hub.runtime.db, hub.config, { from: '2026-04', to: '2026-04' });
    expect(kpi.rules).toBe('at-time');
    // G-PAIR 2, G-DR 1, G-IMG 1, G-RIS 1
    expect(kpi.totals.duplicates.repeats).toBe(5);
    expect(kpi.totals.recognition.repeats).toBe(5);
    expect(kpi.months.map((m) => m.duplicates.repeats)).toEqual([5]);
  });

  // Last of this block: it approves a new rule version that later cases would see.
  test('--rules current judges by today’s rules: a window lengthened later catches a repeat the rules of the time did not; the default does not', async () => {
    const before = await duplicateReport(hub.runtime.db, hub.config, { rules: 'current' });
    expect(of(before, 'G-WHATIF')).toEqual([]);
    await setRule(hub.runtime.db, { code: '718-7', windowDays: 30 }, 'committee-li', 'haemoglobin stable for a month');
    const atTime = await duplicateReport(hub.runtime.db, hub.config, {});
    expect(atTime.rules).toBe('at-time');
    expect(of(atTime, 'G-WHATIF')).toEqual([]);
    const current = await duplicateReport(hub.runtime.db, hub.config, { rules: 'current' });
    expect(current.rules).toBe('current');
    expect(of(current, 'G-WHATIF')).toEqual(['718-7 county@2026-04-01T09:00:00+08:00 → lead@2026-04-11T09:00:00+08:00']);
    // the pairing is the same under either rules
    expect(of(current, 'G-PAIR')).toEqual(of(atTime, 'G-PAIR'));
    expect(current.totals.repeats).toBe(atTime.totals.repeats + 1);
    // the cost feed keeps at-time
    expect((await repeatsOf(hub.runtime.db, hub.config, ['whatif-lead'])).size).toBe(0);
    // the dashboard's KPIs offer both
    expect((await computeKpis(hub.runtime.db, hub.config, { from: '2026-04', to: '2026-04', rules: 'current' })).totals.duplicates.repeats).toBe(6);
    expect((await computeKpis(hub.runtime.db, hub.config, { from: '2026-04', to: '2026-04' })).totals.duplicates.repeats).toBe(5);

    // Over HTTP: ?rules=current, default at-time, anything else a 400.
    const get = (q: string) => fetch(`${base}/recognition/duplicates${q}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const overHttp = async (q: string) => ((await (await get(q)).json()) as DuplicateReport).pairs.filter((p) => p.patient === 'G-WHATIF').length;
    expect(await overHttp('?rules=current')).toBe(1);
    expect(await overHttp('')).toBe(0);
    expect((await get('?rules=today')).status).toBe(400);
    const csv = await (await get('?format=csv&rules=current&from=2026-04-01&to=2026-04-30')).text();
    expect(csv).toContain('G-WHATIF,718-7,county,2026-04-01T09:00:00+08:00,lead,2026-04-11T09:00:00+08:00\n');
    const kpi = await fetch(`${base}/api/kpi?from=2026-04&to=2026-04&rules=current`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(((await kpi.json()) as { rules: string; totals: { duplicates: { repeats: number } } })).toMatchObject({ rules: 'current', totals: { duplicates: { repeats: 6 } } });
    expect((await fetch(`${base}/api/kpi?rules=today`, { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(400);
  });

  describe('the command line (compiled CLI; build first with npx tsc -p .)', () => {
    let dir: string;
    let configFile: string;
    let env: NodeJS.ProcessEnv;
    beforeAll(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-recdup-'));
      configFile = path.join(dir, 'hub.json');
      writeFileSync(configFile, JSON.stringify({ members: members.map(({ channels: _c, ...m }) => m), recognition }));
      env = { ...process.env, DATABASE_URL: hub.databaseUrl, USER: 'dr-wang' };
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const cliCsv = async (...extra: string[]) =>
      (await run('node', [cli, 'recognition', 'duplicates', '--format', 'csv', '--from', '2026-04-01', '--to', '2026-04-30', '--config', configFile, ...extra], { env })).stdout.trim().split('\n');

    test('--rules current adds the what-if repeat, --rules at-time is the default, a bad value exits 2 with one line', async () => {
      const atTime = await cliCsv();
      expect(atTime[0]).toBe('patient,code,first_member,first_time,repeat_member,repeat_time');
      expect(await cliCsv('--rules', 'at-time')).toEqual(atTime);
      expect(atTime).toContain('G-PAIR,14749-6,county,2026-04-09T10:00:00+08:00,lead,2026-04-11T08:54:00+08:00');
      expect(atTime.filter((l) => l.startsWith('G-WHATIF,'))).toEqual([]);
      const current = await cliCsv('--rules', 'current');
      expect(current.filter((l) => l.startsWith('G-WHATIF,'))).toEqual(['G-WHATIF,718-7,county,2026-04-01T09:00:00+08:00,lead,2026-04-11T09:00:00+08:00']);
      expect(current).toHaveLength(atTime.length + 1);
      const bad = await cliCsv('--rules', 'yesterday').then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(bad.code).toBe(2);
      expect(bad.stderr.trim().split('\n')).toEqual(['yilian: invalid: rules: at-time or current, not yesterday', 'see yilian recognition duplicates --help']);
    }, 60_000);
  });
});

describe('end to end through the pipeline', () => {
  const person: SimPatient = { mrn: '', family: '赵', given: '敏', birth: '19610303', sex: 'F' };
  const facility: Record<string, string> = { lead: 'LEAD', county: 'COUNTY', west: 'WEST' };
  let control = 0;

  /** An ORU whose OBR-4 carries the same LOINC code as its one OBX (a DiagnosticReport and an Observation of one code). */
  function oru(member: string, mrn: string, time: string, code: string, value: string, unit: string): string {
    return [
      `MSH|^~\\&|LIS|${facility[member]}|YILIAN|HUB|${time}||ORU^R01^ORU_R01|E${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
      `PID|1||${mrn}^^^${facility[member]}^MR||${person.family}^${person.given}||${person.birth}|${person.sex}`,
      `OBR|1|E${control}|E${control}|${code}^葡萄糖^LN|||${time}`,
      `OBX|1|NM|${code}^葡萄糖^LN||${value}|${unit}||N|||F|||${time}`,
    ].join('\r') + '\r';
  }
  function adt(member: string, mrn: string): string {
    return simAdt({ controlId: `EA${++control}`, patient: { ...person, mrn }, sendingFacility: facility[member], time: '20260301080000', charset: 'UNICODE UTF-8' }, 'A04').replace(/^(PID\|[^\r]*)/m, (pid) => {
      const fields = pid.split('|');
      while (fields.length < 20) fields.push('');
      fields[19] = '110101196103031234';
      return fields.join('|');
    });
  }

  test('glucose mg/dL at the county then mmol/L at the lead, each an OBR+OBX: one repeat, one line, local times', async () => {
    const messages: Array<[string, string]> = [
      ['county', adt('county', 'EC1')],
      ['lead', adt('lead', 'EL1')],
      // members' local time (+08:00): 2026-05-06 09:15 at the county, 2026-05-08 10:20 at the lead
      ['county', oru('county', 'EC1', '20260506091500', '2345-7', '104', 'mg/dL')],
      ['lead', oru('lead', 'EL1', '20260508102000', '14749-6', '5.9', 'mmol/L')],
    ];
    await ingestResults(hub, messages);
    const links = (await exportLinks(hub.runtime.db)).filter((l) => ['EC1', 'EL1'].includes(l.mrn));
    expect(new Set(links.map((l) => l.patient)).size).toBe(1);
    const patient = links[0]!.patient;
    // The index may or may not hold the DiagnosticReports (resultIndex.ts decides); the report must not count them either way.
    const indexed = await hub.runtime.db.query<{ resource_type: string }>(`SELECT r.resource_type FROM recognition_result r JOIN mpi_source s ON s.patient_resource_id = r.patient_id WHERE s.mrn IN ('EC1', 'EL1')`);
    expect(indexed.rows.filter((r) => r.resource_type === 'Observation')).toHaveLength(2);
    const report = await duplicateReport(hub.runtime.db, hub.config, { from: new Date('2026-05-01T00:00:00Z'), to: new Date('2026-06-01T00:00:00Z') });
    const mine = report.pairs.filter((p) => p.patient === patient);
    expect(mine.map((p) => `${p.firstMember}@${p.firstTime} → ${p.repeatMember}@${p.repeatTime}`)).toEqual(['county@2026-05-06T09:15:00+08:00 → lead@2026-05-08T10:20:00+08:00']);
    const flags = await repeatsOf(hub.runtime.db, hub.config, [mine[0]!.repeatResourceId]);
    expect(flags.get(mine[0]!.repeatResourceId)).toEqual({ earlierResourceId: mine[0]!.firstResourceId, earlierMember: 'county' });
  }, 60_000);
});
