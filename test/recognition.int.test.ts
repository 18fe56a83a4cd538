/**
 * Mutual recognition on real PostgreSQL, fed through the real pipeline (HL7 v2 ADT and ORU →
 * resources → patient index → recognition index): one person seen at three members (lead tertiary,
 * county secondary, community primary — only the first two hold an EQA accreditation). The check
 * returns the county result inside its window with the value converted to the canonical unit,
 * refuses it after expiry, refuses the non-accredited lab and a unit that cannot be converted;
 * another member's local code resolves. The duplicate report on this fixture gives exactly the
 * known repeats, avoided and wasted cost equal the hand-computed sums, CSV follows the contract;
 * `rules set` makes a new approved version that changes the outcome; scopes are enforced.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import type { MemberConfig } from '../hub/config';
import { createApi } from '../api/server';
import { encodeAs, simAdt, simImagingReport, simOru, type SimPatient } from '../cli/simulate';
import { runPipeline } from '../pipeline/runner';
import { decideReview, exportLinks } from '../hub/mpi/review';
import { makeResidentId } from '../hub/mpi/residentId';
import { syncRecognitionIndex } from '../hub/recognition/resultIndex';
import { recognitionCheck, type CheckResponse } from '../hub/recognition/check';
import { duplicateReport, repeatsOf } from '../hub/recognition/duplicates';
import { listRules, shippedRuleSet } from '../hub/recognition/rules';
import { ingestResults } from './support/results';
import { startTestHub, type TestHub } from './support/hub';

const run = promisify(execFile);
const cli = path.join(__dirname, '..', 'dist', 'cli', 'yilian.js');

const members = [
  { id: 'lead', name: 'Provincial People’s Hospital', tier: 'tertiary' },
  { id: 'county', name: 'Qingshan County Hospital', tier: 'secondary' },
  { id: 'community', name: 'Donghu Community Health Centre', tier: 'primary' },
].map((m) => ({ ...m, channels: [{ id: 'his', kind: 'mllp', port: 0 }], conversion: { residentIdField: 19 } }));
const recognition = {
  currency: 'CNY',
  accreditation: [
    { member: 'lead', scheme: 'NCCL-EQA', validFrom: '2026-01-01', validTo: '2026-12-31' },
    { member: 'county', scheme: 'NCCL-EQA', validFrom: '2026-01-01', validTo: '2026-12-31' },
  ],
  priceLists: [
    { member: 'lead', version: '2026', effectiveFrom: '2026-01-01', prices: { '14749-6': 10, '718-7': 20, '36643-5': 60 } },
    { member: 'county', version: '2026', effectiveFrom: '2026-01-01', prices: { '14749-6': 8, '718-7': 15, '36643-5': 45 } },
    { member: 'community', version: '2026', effectiveFrom: '2026-01-01', prices: { '14749-6': 6, '718-7': 12 } },
  ],
};
const ADMIN = 'admin-key-0123456789abcdef';
const CLINIC = 'clinic-key-0123456789abcdef';
const FEED = 'feed-key-0123456789abcdef0';
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
let hub: TestHub;
let server: Server;
let base: string;
let control = 0;
let golden: string;

const rid = makeResidentId('330106', '19700512', 321, 'F');
const person = (mrn: string): SimPatient => ({ mrn, family: '陈', given: '秀英', birth: '19700512', sex: 'F' });
const facility: Record<string, string> = { lead: 'LEAD', county: 'COUNTY', community: 'DONGHU' };
const glucose = (value: string, unit: string) => ({ code: '14749-6', name: '葡萄糖', value, unit, range: '', system: 'LN' });
const hgb = (value: string) => ({ code: 'HGB', name: '血红蛋白', value, unit: 'g/L', range: '115-150' });

/** An ADT with the resident ID in PID-19 (the patient index links the three members' numbers). */
function adt(member: string, mrn: string): string {
  const text = simAdt({ controlId: `A${++control}`, patient: person(mrn), sendingFacility: facility[member], time: '20261101080000', charset: 'UNICODE UTF-8' }, 'A04');
  return text.replace(/^(PID\|[^\r]*)/m, (pid) => {
    const fields = pid.split('|');
    while (fields.length < 20) fields.push('');
    fields[19] = rid;
    return fields.join('|');
  });
}

const mrnOf: Record<string, string> = { lead: 'L1', county: 'C1', community: 'D1' };
function oru(member: string, time: string, results: Parameters<typeof simOru>[1], status = 'F'): string {
  return simOru({ controlId: `R${++control}`, patient: person(mrnOf[member]!), sendingFacility: facility[member], time, charset: 'UNICODE UTF-8' }, results, status);
}

const ingest = (messages: Array<[string, string]>) => ingestResults(hub, messages, channel);

async function check(body: unknown, key = CLINIC): Promise<{ status: number; json: CheckResponse & { code?: string } }> {
  const res = await fetch(`${base}/recognition/check`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as CheckResponse & { code?: string } };
}

beforeAll(async () => {
  hub = await startTestHub('recognition', {
    members,
    recognition,
    api: { keys: [{ name: 'ops', key: ADMIN, scopes: ['admin'] }, { name: 'lead-his', key: CLINIC, scopes: ['patient.read'] }, { name: 'cost-system', key: FEED, scopes: ['feed.read'] }] },
  });
  server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  // Times are the members' local time (+08:00): 20261120093000 is 2026-11-20T01:30:00Z.
  await ingest([
    ['lead', adt('lead', 'L1')],
    ['county', adt('county', 'C1')],
    ['community', adt('community', 'D1')],
    // county: glucose in mg/dL (converted to mmol/L by the map stage), HGB under its local code
    ['county', oru('county', '20261120093000', [glucose('108', 'mg/dL'), hgb('135')])],
    // community: glucose, not accredited
    ['community', oru('community', '20261121093000', [glucose('5.4', 'mmol/L')])],
    // county: creatinine in a unit that cannot become umol/L
    ['county', oru('county', '20261120093000', [{ code: '14682-9', name: '肌酐', value: '80', unit: 'mg', range: '', system: 'LN' }])],
    // county: a preliminary sodium
    ['county', oru('county', '20261120093000', [{ code: '2951-2', name: '钠', value: '140', unit: 'mmol/L', range: '', system: 'LN' }], 'P')],
  ]);
  const links = (await exportLinks(hub.runtime.db)).filter((l) => ['L1', 'C1', 'D1'].includes(l.mrn));
  expect(new Set(links.map((l) => l.patient)).size).toBe(1);
  golden = links[0]!.patient;
}, 120_000);

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await hub?.close();
});

test('the shipped rule set is valid and loaded as approved version 1', async () => {
  expect(shippedRuleSet().length).toBeGreaterThanOrEqual(20);
  const rules = await listRules(hub.runtime.db);
  expect(rules.find((r) => r.code === '14749-6')).toMatchObject({ version: 1, status: 'approved', validFrom: '-infinity', content: { windowDays: 7, requireAccreditation: true } });
  expect(rules.find((r) => r.code === '2823-3')?.content.recognised).toBe(false);
});

test('inside the window: the county glucose is recognisable, converted to mmol/L with the original mg/dL; the community lab is refused as not accredited', async () => {
  const { status, json } = await check({ patient: { member: 'lead', mrn: 'L1' }, tests: ['14749-6'], at: '2026-11-23T02:00:00Z', requestingMember: 'lead' });
  expect(status).toBe(200);
  expect(json.patient).toBe(golden);
  expect(json.sourcePatients).toBe(3);
  const t = json.tests[0]!;
  expect(t.recognisable).toHaveLength(1);
  const r = t.recognisable[0]!;
  expect(r).toMatchObject({ member: 'county', tier: 'secondary', time: '2026-11-20T01:30:00.000Z', expires: '2026-11-27T01:30:00.000Z', status: 'final' });
  expect(r.value.unit).toBe('mmol/L');
  expect(r.value.value).toBeCloseTo(108 / 18.0156, 2);
  expect(r.original).toEqual({ value: 108, unit: 'mg/dL' });
  expect(t.refused).toEqual([expect.objectContaining({ member: 'community', reason: 'lab-not-accredited' })]);
});

test('after the window the county result is refused as expired (and the community one still as not accredited)', async () => {
  const { json } = await check({ patient: golden, tests: ['14749-6'], at: '2026-11-28T02:00:00Z', requestingMember: 'lead' });
  const t = json.tests[0]!;
  expect(t.recognisable).toEqual([]);
  expect(t.refused.find((x) => x.member === 'county')?.reason).toBe('expired');
  expect(t.reasons.sort()).toEqual(['expired', 'lab-not-accredited']);
});

test('local codes of another member resolve through the approved ConceptMaps; unknown codes and never-recognised items say so', async () => {
  const { json } = await check({
    patient: { member: 'community', mrn: 'D1' },
    tests: [{ member: 'lead', code: 'GLU' }, { system: 'urn:yilian:county:L', code: 'HGB' }, 'urn:yilian:lead:L|NOPE', '2823-3', '1742-6'],
    at: '2026-11-23T02:00:00Z',
    requestingMember: 'community',
  });
  expect(json.patient).toBe(golden);
  const [glu, hb, nope, potassium, alt] = json.tests;
  expect(glu).toMatchObject({ code: '14749-6' });
  expect(glu!.recognisable.map((r) => r.member)).toEqual(['county']);
  expect(hb).toMatchObject({ code: '718-7' });
  expect(hb!.recognisable[0]).toMatchObject({ member: 'county', value: { value: 135, unit: 'g/L' } });
  expect(nope).toMatchObject({ code: null, reasons: ['unknown-code'] });
  expect(potassium!.reasons).toEqual(['not-recognised-item']);
  expect(alt!.reasons).toEqual(['none-found']);
});

test('a unit that cannot be converted and a preliminary result are refused with their reasons', async () => {
  const { json } = await check({ patient: golden, tests: ['14682-9', '2951-2'], at: '2026-11-21T00:00:00Z', requestingMember: 'lead' });
  expect(json.tests[0]!.reasons).toEqual(['unit-incompatible']);
  expect(json.tests[1]!.reasons).toEqual(['status-not-final']);
});

test('the check is audited, and needs patient.read: no key → 401, a feed.read key → 403, bad input → 400', async () => {
  const audits = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_event WHERE entity_type = 'recognition_check' AND patient_key = $1 AND actor = 'lead-his'`, [golden]);
  expect(audits.rows[0]!.n).toBeGreaterThanOrEqual(3);
  const body = JSON.stringify({ patient: golden, tests: ['14749-6'], requestingMember: 'lead' });
  const anon = await fetch(`${base}/recognition/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  expect(anon.status).toBe(401);
  expect((await check({ patient: golden, tests: ['14749-6'], requestingMember: 'lead' }, FEED)).status).toBe(403);
  expect((await fetch(`${base}/recognition/duplicates`, { headers: { authorization: `Bearer ${FEED}` } })).status).toBe(403);
  const bad = await check({ patient: golden, tests: [], requestingMember: 'lead' });
  expect(bad.status).toBe(400);
  expect(bad.json.code).toBe('invalid');
});

test('duplicate report: exactly the known repeats, each paired with the most recent recognisable earlier result of another member; costs as hand-computed', async () => {
  await ingest([
    // lead repeats glucose 2 days after the county's (the community's of 11-21 is not accredited, so the county's is the pair)
    ['lead', oru('lead', '20261122100000', [glucose('6.0', 'mmol/L')])],
    // lead repeats HGB 4 days after the county's
    ['lead', oru('lead', '20261124100000', [{ code: 'HGB', name: '血红蛋白', value: '130', unit: 'g/L', range: '' }])],
    // county repeats glucose: the most recent other member's is now the lead's of 11-22
    ['county', oru('county', '20261125100000', [glucose('99', 'mg/dL')])],
    // county again HGB 2 days after its own: same member, not a repeat
    ['county', oru('county', '20261122090000', [hgb('133')])],
    // community HGB after every window closed: not a repeat
    ['community', oru('community', '20261205090000', [{ code: '718-7', name: '血红蛋白', value: '128', unit: 'g/L', range: '', system: 'LN' }])],
  ]);
  const report = await duplicateReport(hub.runtime.db, hub.config, {});
  const pairs = report.pairs.map((p) => `${p.code} ${p.firstMember}@${p.firstTime.slice(0, 16)} → ${p.repeatMember}@${p.repeatTime.slice(0, 16)} ${p.wastedCost}`);
  // The community's glucose of 11-21 was itself a repeat (the county's was valid; that the community
  // lab is not accredited makes its own result unrecognisable, not its test free).
  // Times as the members' clocks showed them (+08:00), with the offset.
  expect(pairs).toEqual([
    '14749-6 county@2026-11-20T09:30 → community@2026-11-21T09:30 6',
    '14749-6 county@2026-11-20T09:30 → lead@2026-11-22T10:00 10',
    '718-7 county@2026-11-22T09:00 → lead@2026-11-24T10:00 20',
    '14749-6 lead@2026-11-22T10:00 → county@2026-11-25T10:00 8',
  ]);
  expect(report.pairs[0]).toMatchObject({ firstTime: '2026-11-20T09:30:00+08:00', repeatTime: '2026-11-21T09:30:00+08:00' });
  expect(report.rules).toBe('at-time');
  expect(report.pairs.every((p) => p.patient === golden)).toBe(true);
  // Recognised: the lead's glucose check of 11-23 (no lead glucose followed before 11-27: 10), and the
  // community's 11-23 checks, followed by nothing at the community inside the windows: glucose (6), HGB (12).
  expect(report.totals).toEqual({ repeats: 4, recognised: 3, recognitionRate: 3 / 7, avoidedCost: 10 + 6 + 12, wastedCost: 6 + 10 + 20 + 8, currency: 'CNY' });
  expect(report.byMemberPair).toEqual([
    { firstMember: 'county', repeatMember: 'lead', repeats: 2, wastedCost: 30 },
    { firstMember: 'county', repeatMember: 'community', repeats: 1, wastedCost: 6 },
    { firstMember: 'lead', repeatMember: 'county', repeats: 1, wastedCost: 8 },
  ]);
  expect(report.byTest).toEqual([
    { code: '14749-6', repeats: 3, wastedCost: 24 },
    { code: '718-7', repeats: 1, wastedCost: 20 },
  ]);
  expect(report.byMonth).toEqual([{ month: '2026-11', repeats: 4, recognised: 3, avoidedCost: 28, wastedCost: 44 }]);
  // A range keeps the earlier results before it as pairs, reporting only repeats inside it.
  const late = await duplicateReport(hub.runtime.db, hub.config, { from: new Date('2026-11-23T00:00:00Z') });
  expect(late.pairs.map((p) => p.repeatResourceId)).toEqual(report.pairs.slice(2).map((p) => p.repeatResourceId));
  expect((await duplicateReport(hub.runtime.db, hub.config, { member: 'lead' })).pairs.map((p) => p.repeatMember)).toEqual(['lead', 'lead']);
  // The cost feed's flag agrees with the report.
  const flags = await repeatsOf(hub.runtime.db, hub.config, [...report.pairs.map((p) => p.repeatResourceId), report.pairs[0]!.firstResourceId]);
  expect(flags.size).toBe(4);
  for (const p of report.pairs) expect(flags.get(p.repeatResourceId)).toEqual({ earlierResourceId: p.firstResourceId, earlierMember: p.firstMember });
  // Over HTTP: CSV and JSON, audited as an export; bad input is a 400.
  const get = (q: string) => fetch(`${base}/recognition/duplicates${q}`, { headers: { authorization: `Bearer ${CLINIC}` } });
  const csv = await get('?format=csv&from=2026-11-01&to=2026-11-30');
  expect(csv.status).toBe(200);
  expect((await csv.text()).trim().split('\n')).toHaveLength(5);
  expect(((await (await get('?from=2026-11-23')).json()) as { totals: { repeats: number } }).totals.repeats).toBe(2);
  expect((await get('?format=xml')).status).toBe(400);
  expect((await get('?from=yesterday')).status).toBe(400);
  const exports = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_event WHERE entity_type = 'recognition_duplicates' AND action = 'export'`);
  expect(exports.rows[0]!.n).toBe(2);
});

test('re-deriving the index (replay, full resync) changes nothing', async () => {
  const before = await hub.runtime.db.query(`SELECT * FROM recognition_result ORDER BY resource_id, code`);
  await syncRecognitionIndex(hub.runtime.db, { full: true });
  await syncRecognitionIndex(hub.runtime.db);
  const after = await hub.runtime.db.query(`SELECT * FROM recognition_result ORDER BY resource_id, code`);
  expect(after.rows).toEqual(before.rows);
});

describe('the command line (compiled CLI; build first with npx tsc -p .)', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let configFile: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-recognition-'));
    configFile = path.join(dir, 'hub.json');
    writeFileSync(configFile, JSON.stringify({ members: members.map(({ channels: _c, ...m }) => m), recognition }));
    env = { ...process.env, DATABASE_URL: hub.databaseUrl, USER: 'dr-wang' };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('recognition duplicates --format csv prints the contract header and ISO 8601 times with the member\'s offset', async () => {
    const { stdout } = await run('node', [cli, 'recognition', 'duplicates', '--format', 'csv', '--config', configFile, '--from', '2026-11-01', '--to', '2026-11-30'], { env });
    expect(stdout.trim().split('\n')).toEqual([
      'patient,code,first_member,first_time,repeat_member,repeat_time',
      `${golden},14749-6,county,2026-11-20T09:30:00+08:00,community,2026-11-21T09:30:00+08:00`,
      `${golden},14749-6,county,2026-11-20T09:30:00+08:00,lead,2026-11-22T10:00:00+08:00`,
      `${golden},718-7,county,2026-11-22T09:00:00+08:00,lead,2026-11-24T10:00:00+08:00`,
      `${golden},14749-6,lead,2026-11-22T10:00:00+08:00,county,2026-11-25T10:00:00+08:00`,
    ]);
    // --rules is validated: a bad value is a one-line usage error, exit 2, before anything is read.
    const bad = await run('node', [cli, 'recognition', 'duplicates', '--format', 'csv', '--rules', 'today', '--config', configFile], { env }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual(['yilian: invalid: rules: at-time or current, not today', 'see yilian recognition duplicates --help']);
    const json = JSON.parse((await run('node', [cli, 'recognition', 'duplicates', '--format', 'json', '--config', configFile], { env })).stdout);
    expect(json.totals.repeats).toBe(4);
  }, 60_000);

  test('rules set makes a new approved version (who: the OS user or --actor) and changes the outcome', async () => {
    // HGB results: county 11-20 and 11-22, lead 11-24, community 12-05 (not accredited).
    const at = '2026-12-21T00:00:00Z';
    const before = (await check({ patient: golden, tests: ['718-7'], at, requestingMember: 'community' })).json.tests[0]!;
    expect(before.recognisable).toEqual([]);
    expect(before.rule).toEqual({ version: 1, windowDays: 7, recognised: true });
    const { stdout } = await run('node', [cli, 'recognition', 'rules', 'set', '--code', '718-7', '--window-days', '30', '--tiers', 'tertiary', '--config', configFile], { env });
    expect(stdout).toContain('718-7 version 2 approved');
    const rules = await listRules(hub.runtime.db, { code: '718-7', all: true });
    expect(rules.map((r) => [r.version, r.status, r.content.windowDays, r.createdBy, r.decidedBy])).toEqual([
      [1, 'superseded', 7, 'system', 'system'],
      [2, 'approved', 30, 'dr-wang', 'dr-wang'],
    ]);
    const after = (await check({ patient: golden, tests: ['718-7'], at, requestingMember: 'community' })).json.tests[0]!;
    expect(after.rule).toEqual({ version: 2, windowDays: 30, recognised: true });
    expect(after.recognisable.map((r) => [r.member, r.expires])).toEqual([['lead', '2026-12-24T02:00:00.000Z']]);
    expect(after.refused.map((r) => `${r.member} ${r.time.slice(0, 10)} ${r.reason}`)).toEqual(['community 2026-12-05 member-not-recognised', 'county 2026-11-22 member-not-recognised', 'county 2026-11-20 member-not-recognised']);
    await run('node', [cli, 'recognition', 'rules', 'set', '--code', '718-7', '--window-days', '5', '--actor', 'committee-li', '--config', configFile], { env });
    expect((await listRules(hub.runtime.db, { code: '718-7' }))[0]).toMatchObject({ version: 3, status: 'approved', decidedBy: 'committee-li' });
    const viaCli = JSON.parse((await run('node', [cli, 'recognition', 'check', '--patient', golden, '--code', '718-7', '--at', at, '--member', 'community', '--json', '--config', configFile], { env })).stdout);
    expect(viaCli.tests[0].rule).toEqual({ version: 3, windowDays: 5, recognised: true });
    expect(viaCli.tests[0].recognisable).toEqual([]);
    const listed = (await run('node', [cli, 'recognition', 'rules', 'list', '--config', configFile], { env })).stdout;
    expect(listed).toMatch(/718-7\s+3 approved\s+5d/);
  }, 60_000);
});

test('imaging: a chest X-ray report of the county is recognised at the lead for 30 days', async () => {
  await ingest([['county', simImagingReport({ controlId: `I${++control}`, patient: person('C1'), sendingFacility: 'COUNTY', time: '20261110080000', charset: 'UNICODE UTF-8' }, { code: '36643-5', name: '胸部X线正侧位' }, '两肺未见明显异常')]]);
  const { json } = await check({ patient: golden, tests: ['36643-5'], at: '2026-11-23T00:00:00Z', requestingMember: 'lead' });
  expect(json.tests[0]!.recognisable).toEqual([expect.objectContaining({ resourceType: 'DiagnosticReport', member: 'county', expires: '2026-12-10T00:00:00.000Z' })]);
});

test('a link decided in the patient index counts at the very next check (golden patients resolved at query time)', async () => {
  const other: SimPatient = { mrn: 'D9', family: '林', given: '小红', birth: '19950101', sex: 'F' };
  await ingest([
    ['community', simAdt({ controlId: `A${++control}`, patient: other, sendingFacility: 'DONGHU', time: '20261101080000', charset: 'UNICODE UTF-8' }, 'A04')],
    ['community', simOru({ controlId: `R${++control}`, patient: other, sendingFacility: 'DONGHU', time: '20261123080000', charset: 'UNICODE UTF-8' }, [glucose('5.0', 'mmol/L')])],
  ]);
  const seen = async () => (await check({ patient: golden, tests: ['14749-6'], at: '2026-11-24T00:00:00Z', requestingMember: 'lead' })).json.tests[0]!.refused.filter((r) => r.time.startsWith('2026-11-23'));
  expect(await seen()).toEqual([]);
  await decideReview(hub.runtime.db, { member: 'community', mrn: 'D9', goldenId: golden, decision: 'link', actor: 'reviewer' });
  expect((await seen()).map((r) => [r.member, r.reason])).toEqual([['community', 'lab-not-accredited']]);
});

test('out of order: a correction that arrives before the result it corrects stays in the index; replaying the late original changes nothing', async () => {
  const p8: SimPatient = { mrn: 'C8', family: '吴', given: '磊', birth: '19660606', sex: 'M' };
  const hba1c = (value: string) => [{ code: '4548-4', name: '糖化血红蛋白', value, unit: '%', range: '4-6', system: 'LN' }];
  const original = simOru({ controlId: 'LAB-77', patient: p8, sendingFacility: 'COUNTY', time: '20261120093000', charset: 'UNICODE UTF-8' }, hba1c('6.4'));
  // The same order (OBR-3 LAB-77, so the same Observation), corrected that afternoon (MSH-7 later, OBX-11 C).
  const correction = simOru({ controlId: 'LAB-77', patient: p8, sendingFacility: 'COUNTY', time: '20261120093000', charset: 'UNICODE UTF-8' }, hba1c('6.9'), 'C')
    .replace('|20261120093000||ORU^R01^ORU_R01|LAB-77|', '|20261120150000||ORU^R01^ORU_R01|LAB-77-C|');
  await ingest([['county', correction], ['county', original]]);
  const row = async () => (await hub.runtime.db.query<{ status: string; value: number }>(`SELECT status, value FROM recognition_result WHERE code = '4548-4' AND member_id = 'county'`)).rows;
  expect(await row()).toEqual([{ status: 'corrected', value: 6.9 }]);
  const member = hub.config.members.find((m) => m.id === 'county') as MemberConfig;
  const again = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(original, 'UTF-8') });
  await runPipeline({ db: hub.runtime.db, config: hub.config }, again.rawId, true);
  await syncRecognitionIndex(hub.runtime.db);
  expect(await row()).toEqual([{ status: 'corrected', value: 6.9 }]);
});
