/** The terminology routes over HTTP: authenticated like the others, FHIR R4 operation shapes, governance by the committee's keys. */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createApi } from '../api/server';
import { ICD10, ICD10_CN, ICD11_MMS, LOINC } from '../mappings/terminology/systems';
import { startTestHub, type TestHub } from './support/hub';

let hub: TestHub;
let server: Server;
let base: string;
const COMMITTEE = 'committee-key-0123456789ab';
const IT = 'integration-key-0123456789';
const FEED = 'feed-only-key-0123456789ab';
const ADMIN = 'admin-key-0123456789abcdef';
const METRICS = 'metrics-key-0123456789abcd';

beforeAll(async () => {
  hub = await startTestHub('termapi', {
    api: {
      port: 0,
      keys: [
        { name: 'wang.committee', key: COMMITTEE, scopes: ['governance'] },
        { name: 'ops-admin', key: ADMIN, scopes: ['admin'] },
        { name: 'dashboards', key: METRICS, scopes: ['metrics'] },
        { name: 'county-it', key: IT, scopes: ['integration'] },
        { name: 'cost-system', key: FEED, scopes: ['feed.read'] },
      ],
    },
  });
  server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await hub.close();
});

const get = (path: string, key?: string) => fetch(`${base}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
const post = (path: string, body: unknown, key?: string) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body) });
const q = (o: Record<string, string>) => new URLSearchParams(o).toString();

test('every terminology route needs a key with the right scope: integration or governance read, governance decides', async () => {
  const reads = [
    '/fhir/ConceptMap/$translate?' + q({ system: ICD10, code: 'E11' }),
    '/fhir/CodeSystem/$lookup?' + q({ system: LOINC, code: '718-7' }),
    '/api/terminology/worklist',
    '/api/terminology/coverage',
    '/api/terminology/proposals',
    '/api/terminology/suggestions?' + q({ member: 'north', system: 'urn:yilian:north:L', code: 'X' }),
    '/api/terminology/maps/who-icd10-icd11/history',
  ];
  for (const path of reads) {
    expect((await get(path)).status).toBe(401);
    expect((await get(path, FEED)).status).toBe(403);
    expect((await get(path, METRICS)).status).toBe(403);
    expect((await get(path, IT)).status).toBe(200);
    expect((await get(path, COMMITTEE)).status).toBe(200);
    expect((await get(path, ADMIN)).status).toBe(200);
  }
  // proposing: integration or governance
  const proposal = { sourceSystem: 'urn:yilian:scope:L', sourceCode: 'S1', targetSystem: LOINC, targetCode: '718-7', equivalence: 'equivalent' };
  expect((await post('/api/terminology/proposals', proposal, FEED)).status).toBe(403);
  expect((await post('/api/terminology/proposals', proposal, IT)).status).toBe(201);
  const byCommittee = await post('/api/terminology/proposals', { ...proposal, sourceCode: 'S2' }, COMMITTEE);
  expect(byCommittee.status).toBe(201);
  const { id } = (await byCommittee.json()) as any;
  // deciding: governance (admin implies it); integration is refused on every decision route
  const decisions: Array<[string, () => Promise<Response>, (key: string) => Promise<Response>]> = [
    ['impact', () => get(`/api/terminology/proposals/${id}/impact`, IT), (k) => get(`/api/terminology/proposals/${id}/impact`, k)],
    ['reject', () => post(`/api/terminology/proposals/${id}/reject`, {}, IT), (k) => post(`/api/terminology/proposals/${id}/reject`, { comment: 'no' }, k)],
    ['import', () => post('/api/terminology/import', [], IT), (k) => post('/api/terminology/import', [], k)],
  ];
  for (const [, asIntegration, asKey] of decisions) {
    expect((await asIntegration()).status).toBe(403);
    expect((await asKey(FEED)).status).toBe(403);
    expect((await asKey(COMMITTEE)).status).toBe(200);
  }
  for (const action of ['approve', 'retire', 'reprocess']) expect((await post(`/api/terminology/proposals/${id}/${action}`, {}, IT)).status).toBe(403);
  // admin implies governance: a second proposal approved and retired by the admin key
  const other = (await (await post('/api/terminology/proposals', { ...proposal, sourceCode: 'S3' }, IT)).json()) as any;
  expect((await post(`/api/terminology/proposals/${other.id}/approve`, {}, ADMIN)).status).toBe(200);
  expect((await post(`/api/terminology/proposals/${other.id}/retire`, {}, COMMITTEE)).status).toBe(200);
  const steps = ((await (await get(`/api/terminology/proposals/${other.id}`, COMMITTEE)).json()) as any).steps.map((s: any) => [s.action, s.actor]);
  expect(steps).toEqual([
    ['propose', 'county-it'],
    ['approve', 'ops-admin'],
    ['retire', 'wang.committee'],
  ]);
});

test('$translate reverse and map precedence over HTTP: the committee map first, the WHO base map after', async () => {
  const proposal = { sourceSystem: ICD10, sourceCode: 'K29.7', targetSystem: ICD11_MMS, targetCode: 'DA42.0', equivalence: 'narrower', comment: 'committee refinement' };
  const { id } = (await (await post('/api/terminology/proposals', proposal, IT)).json()) as any;
  await post(`/api/terminology/proposals/${id}/approve`, {}, COMMITTEE);
  const forward = (await (await get('/fhir/ConceptMap/$translate?' + q({ system: ICD10, code: 'K29.7', targetsystem: ICD11_MMS }), IT)).json()) as any;
  const matches = forward.parameter.filter((p: any) => p.name === 'match').map((m: any) => [m.part.find((x: any) => x.name === 'concept').valueCoding.code, m.part.find((x: any) => x.name === 'source').valueUri]);
  expect(matches).toEqual([
    ['DA42.0', 'https://yilian.example/fhir/ConceptMap/icd10-icd11-committee|1'],
    ['DA42.Z', 'https://yilian.example/fhir/ConceptMap/who-icd10-icd11|1'],
  ]);
  const reverse = (await (await post('/fhir/ConceptMap/$translate', { resourceType: 'Parameters', parameter: [{ name: 'system', valueUri: ICD11_MMS }, { name: 'code', valueCode: 'DA42.0' }, { name: 'reverse', valueBoolean: true }] }, IT)).json()) as any;
  const rmatch = reverse.parameter.find((p: any) => p.name === 'match');
  expect(rmatch.part).toContainEqual({ name: 'equivalence', valueCode: 'wider' });
  expect(rmatch.part).toContainEqual({ name: 'concept', valueCoding: { system: ICD10, code: 'K29.7' } });
  expect((await get('/fhir/ConceptMap/$translate?' + q({ system: ICD11_MMS, code: 'DA42.0', reverse: 'sometimes' }), IT)).status).toBe(400);
});

test('$translate GET and POST return R4 Parameters', async () => {
  const viaGet = await get('/fhir/ConceptMap/$translate?' + q({ system: ICD10_CN, code: 'E11.900', targetsystem: ICD11_MMS }), IT);
  expect(viaGet.status).toBe(200);
  const body = (await viaGet.json()) as any;
  expect(body.resourceType).toBe('Parameters');
  expect(body.parameter[0]).toEqual({ name: 'result', valueBoolean: true });
  const match = body.parameter.find((p: any) => p.name === 'match');
  expect(match.part).toContainEqual({ name: 'concept', valueCoding: { system: ICD11_MMS, code: '5A11' } });
  expect(match.part).toContainEqual({ name: 'equivalence', valueCode: 'wider' });
  const viaPost = await post('/fhir/ConceptMap/who-icd10-icd11/$translate', { resourceType: 'Parameters', parameter: [{ name: 'system', valueUri: ICD10 }, { name: 'code', valueCode: 'I08.0' }] }, IT);
  const posted = (await viaPost.json()) as any;
  expect(posted.parameter.find((p: any) => p.name === 'match').part).toContainEqual({ name: 'concept', valueCoding: { system: ICD11_MMS, code: 'BC00/BB7Z&XA19J4' } });
  const none = (await (await get('/fhir/ConceptMap/$translate?' + q({ system: ICD10, code: 'Z99.9' }), IT)).json()) as any;
  expect(none.parameter[0]).toEqual({ name: 'result', valueBoolean: false });
  const bad = await get('/fhir/ConceptMap/$translate?' + q({ code: 'E11' }), IT);
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as any).outcome.resourceType).toBe('OperationOutcome');
  expect((await get('/fhir/ConceptMap/no-such-map/$translate?' + q({ system: ICD10, code: 'E11' }), IT)).status).toBe(404);
});

test('$lookup and $validate-code', async () => {
  const hb = (await (await get('/fhir/CodeSystem/$lookup?' + q({ system: LOINC, code: '718-7' }), IT)).json()) as any;
  expect(hb.parameter).toContainEqual({ name: 'display', valueString: 'Hemoglobin [Mass/volume] in Blood' });
  expect((await get('/fhir/CodeSystem/$lookup?' + q({ system: LOINC, code: '1-1' }), IT)).status).toBe(404);
  const invalid = (await (await post('/fhir/CodeSystem/$validate-code', { resourceType: 'Parameters', parameter: [{ name: 'url', valueUri: ICD11_MMS }, { name: 'code', valueCode: '1A00&BA00' }] }, IT)).json()) as any;
  expect(invalid.parameter[0]).toEqual({ name: 'result', valueBoolean: false });
  expect(invalid.parameter[1].valueString).toMatch(/extension codes with "&"/);
});

test('proposals: anyone integrating may propose; only the committee decides, and the trail names them', async () => {
  const proposal = { sourceSystem: 'urn:yilian:west:L', sourceCode: 'GLU1', sourceDisplay: '葡萄糖', targetSystem: LOINC, targetCode: '14749-6', equivalence: 'equivalent', comment: 'fasting glucose' };
  expect((await post('/api/terminology/proposals', { ...proposal, equivalence: 'same' }, IT)).status).toBe(400);
  const created = await post('/api/terminology/proposals', proposal, IT);
  expect(created.status).toBe(201);
  const { id } = (await created.json()) as any;
  expect((await post(`/api/terminology/proposals/${id}/approve`, { comment: 'ok' }, IT)).status).toBe(403);
  const approved = await post(`/api/terminology/proposals/${id}/approve`, { comment: 'ok' }, COMMITTEE);
  expect(approved.status).toBe(200);
  expect(((await approved.json()) as any).proposal.state).toBe('approved');
  const detail = (await (await get(`/api/terminology/proposals/${id}`, IT)).json()) as any;
  expect(detail.steps.map((s: any) => [s.action, s.actor])).toEqual([
    ['propose', 'county-it'],
    ['approve', 'wang.committee'],
  ]);
  const translated = (await (await get('/fhir/ConceptMap/$translate?' + q({ system: 'urn:yilian:west:L', code: 'GLU1' }), IT)).json()) as any;
  expect(translated.parameter[0].valueBoolean).toBe(true);
  const history = (await (await get('/api/terminology/maps/local-west-L/history', IT)).json()) as any;
  expect(history.versions).toEqual([expect.objectContaining({ version: 1, created_by: 'wang.committee', origin: 'proposal' })]);
});

test('suggestions rank structure, display (traditional or simplified) and other members\' choices', async () => {
  const byStructure = (await (await get('/api/terminology/suggestions?' + q({ member: 'north', system: 'urn:yilian:north:local', code: 'J18.900', display: '肺炎' }), IT)).json()) as any;
  expect(byStructure.items[0]).toMatchObject({ system: ICD11_MMS, code: 'CA40.Z' });
  const traditional = (await (await get('/api/terminology/suggestions?' + q({ member: 'north', system: 'urn:yilian:north:L', code: 'XHB', display: '血紅蛋白' }), IT)).json()) as any;
  expect(traditional.items[0]).toMatchObject({ system: LOINC, code: '718-7' });
  expect(traditional.items[0].reasons.join(' ')).toMatch(/member (lead|county) maps "血红蛋白"/);
});

test('worklist, coverage, impact and reprocess over HTTP; ConceptMaps readable as FHIR', async () => {
  const list = (await (await get('/fhir/ConceptMap', IT)).json()) as any;
  expect(list.entry.map((e: any) => e.resource.id)).toEqual(expect.arrayContaining(['who-icd10-icd11', 'loinc-canonical-units', 'local-west-L']));
  expect(((await (await get('/fhir/ConceptMap/loinc-canonical-units', IT)).json()) as any).group[0].source).toBe(LOINC);
  const worklist = (await (await get('/api/terminology/worklist?member=west', IT)).json()) as any;
  expect(worklist.items).toEqual([]);
  const coverage = (await (await get('/api/terminology/coverage?from=2026-01-01', IT)).json()) as any;
  expect(coverage).toMatchObject({ from: '2026-01-01', rows: [], trend: [] });
  expect((await get('/api/terminology/coverage?from=yesterday', IT)).status).toBe(400);
  const proposal = (await (await post('/api/terminology/proposals', { sourceSystem: 'urn:yilian:west:L', sourceCode: 'K1', targetSystem: LOINC, targetCode: '2823-3', equivalence: 'equivalent' }, IT)).json()) as any;
  expect((await get(`/api/terminology/proposals/${proposal.id}/impact`, IT)).status).toBe(403);
  expect(((await (await get(`/api/terminology/proposals/${proposal.id}/impact`, COMMITTEE)).json()) as any)).toMatchObject({ affected: 0, wouldChange: 0 });
  expect((await post(`/api/terminology/proposals/${proposal.id}/reprocess`, {}, COMMITTEE)).status).toBe(400); // not approved yet
  await post(`/api/terminology/proposals/${proposal.id}/approve`, {}, COMMITTEE);
  const started = await post(`/api/terminology/proposals/${proposal.id}/reprocess`, {}, COMMITTEE);
  expect(started.status).toBe(202);
  const job = (await started.json()) as any;
  let state = job.state;
  for (let i = 0; i < 100 && state !== 'done'; i++) {
    await new Promise((r) => setTimeout(r, 20));
    state = ((await (await get(`/api/terminology/reprocess/${job.id}`, IT)).json()) as any).state;
  }
  expect(state).toBe('done');
  const diff = (await (await get('/api/terminology/maps/local-west-L/diff?from=1&to=2', IT)).json()) as any;
  expect(diff.changes).toEqual([expect.objectContaining({ code: 'K1', change: 'added' })]);
});
