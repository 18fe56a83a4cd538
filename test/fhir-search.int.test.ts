/**
 * FHIR R4 search, http and operations as R4 (and HAPI/Medplum users) expect them, on real
 * PostgreSQL through the real pipeline (issue 22): string parameters by prefix, case- and
 * accent-insensitive, Hanzi and pinyin; token, date, reference, one level of chaining; _sort,
 * _total, _summary, _elements, _include, _revinclude; unknown parameters ignored and left out of the
 * self link, or 400 with Prefer: handling=strict, alike on every type; search audits only the
 * patients it returns; content negotiation (fhir+json, 406), 405, OperationOutcome errors; vread
 * and _history from stored versions; the CapabilityStatement generated from the search table.
 */
import { encodeAs } from '../cli/simulate';
import { syncPatientIndex } from '../hub/mpi/sync';
import { searchTables } from '../api/fhirSearchParams';
import { receiveProcessed, startApiTestHub, type ApiTestHub } from './support/hub';

const members = ['m1', 'm2'].map((id) => ({ id, name: `Member ${id}`, tier: 'primary', channels: [{ id: 'his', kind: 'mllp', port: 0 }], conversion: { residentIdField: 19 } }));
const READER = 'reader-key-0123456789abcdef';
const TERM = 'terminology-key-0123456789ab';
const ADMIN = 'admin-key-0123456789abcdef0';
let hub: ApiTestHub;
let base: string;
let control = 0;

interface Person {
  member: string;
  mrn: string;
  family: string;
  given: string;
  birth: string;
  sex: 'M' | 'F';
  phone: string;
  street: string;
  city: string;
}

const people: Person[] = [
  { member: 'm1', mrn: 'P01', family: '欧阳', given: '娜娜', birth: '19900501', sex: 'F', phone: '13900001111', street: '建国路1号', city: '北京市' },
  { member: 'm1', mrn: 'P02', family: 'Everyman', given: 'Adam', birth: '19700101', sex: 'M', phone: '13900002222', street: '12 Main Street', city: 'Springfield' },
  { member: 'm1', mrn: 'P03', family: 'Álvarez', given: 'José', birth: '19820315', sex: 'M', phone: '13900003333', street: 'Calle Mayor 3', city: 'Sevilla' },
  { member: 'm2', mrn: 'P04', family: '吕', given: '娜', birth: '19950720', sex: 'F', phone: '13900004444', street: '人民路8号', city: '杭州市' },
  { member: 'm2', mrn: 'P05', family: '王', given: '伟', birth: '19600202', sex: 'M', phone: '13900005555', street: '解放路2号', city: '杭州市' },
  { member: 'm2', mrn: 'P06', family: '张', given: '三', birth: '20010909', sex: 'M', phone: '13900006666', street: '中山路5号', city: '宁波市' },
];

function adt(p: Person, event: 'A04' | 'A08', time: string, phone = p.phone): string {
  const F = p.member.toUpperCase();
  return [
    `MSH|^~\\&|HIS|${F}|YILIAN|HUB|${time}||ADT^${event}^ADT_A01|C${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
    `EVN|${event}|${time}`,
    `PID|1||${p.mrn}^^^${F}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}|||${p.street}^^${p.city}||${phone}`,
    `PV1|1|O|内科^^^${F}`,
  ].join('\r') + '\r';
}

function oru(p: Person, code: string, value: string, day: number): string {
  const F = p.member.toUpperCase();
  const time = `202611${String(day).padStart(2, '0')}090000`;
  return [
    `MSH|^~\\&|LIS|${F}|YILIAN|HUB|${time}||ORU^R01^ORU_R01|C${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
    `PID|1||${p.mrn}^^^${F}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}`,
    `OBR|1|ORD${control}|FIL${control}|CBC^血常规^L|||${time}`,
    `OBX|1|NM|${code}^${code}^L||${value}|g/L|115-150|N|||F|||${time}`,
  ].join('\r') + '\r';
}

async function send(memberId: string, text: string): Promise<void> {
  await receiveProcessed(hub, memberId, encodeAs(text, 'UTF-8'));
}

beforeAll(async () => {
  hub = await startApiTestHub('fhir_search', {
    members,
    api: {
      port: 0,
      keys: [
        { name: 'clinic-his', key: READER, scopes: ['patient.read'] },
        { name: 'lis', key: TERM, scopes: ['integration'] },
        { name: 'ops', key: ADMIN, scopes: ['admin'] },
      ],
    },
  });
  for (const p of people) await send(p.member, adt(p, 'A04', '20261101080000'));
  await send('m1', oru(people[0]!, 'HGB', '120', 2));
  await send('m1', oru(people[0]!, 'WBC', '5.1', 3));
  await send('m1', oru(people[1]!, 'HGB', '150', 4));
  await syncPatientIndex(hub.runtime.db);
  base = hub.base;
});

afterAll(async () => {
  await hub?.close();
});

const get = async (path: string, headers: Record<string, string> = {}, key = READER) => {
  const res = await fetch(path.startsWith('http') ? path : `${base}${path}`, { headers: { authorization: `Bearer ${key}`, ...headers } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', headers: res.headers, body: (await res.json()) as any };
};
const names = (body: any) => (body.entry ?? []).filter((e: any) => e.search.mode === 'match').map((e: any) => `${e.resource.name?.[0]?.family}${e.resource.name?.[0]?.given?.[0] ?? ''}`).sort();
const goldenOf = async (mrn: string) => (await get(`/fhir/Patient?identifier=${mrn}`)).body.entry[0].resource.id as string;

test('name: Hanzi full or partial, traditional, pinyin with or without spaces, any case; the self link shows it', async () => {
  for (const q of ['欧阳', '歐陽', '欧', '欧阳娜娜', 'ouyang', 'OuYang', 'ou yang', 'ouyang nana', 'ouyangnana', '娜娜', 'nana']) {
    const res = await get(`/fhir/Patient?name=${encodeURIComponent(q)}`);
    expect([q, res.status, names(res.body)]).toEqual([q, 200, ['欧阳娜娜']]);
    expect(res.body.total).toBe(1);
    expect(new URL(res.body.link.find((l: any) => l.relation === 'self').url).searchParams.get('name')).toBe(q);
  }
  expect(names((await get(`/fhir/Patient?family=OUYANG`)).body)).toEqual(['欧阳娜娜']);
  expect(names((await get(`/fhir/Patient?family=${encodeURIComponent('欧')}`)).body)).toEqual(['欧阳娜娜']);
  expect(names((await get(`/fhir/Patient?name=lu%20na`)).body)).toEqual(['吕娜']);
});

test('string matching: case- and accent-insensitive prefix, :exact, :contains', async () => {
  for (const q of ['Everyman', 'EVERYMAN', 'every']) expect(names((await get(`/fhir/Patient?family=${q}`)).body)).toEqual(['EverymanAdam']);
  expect(names((await get(`/fhir/Patient?family:exact=Everyman`)).body)).toEqual(['EverymanAdam']);
  expect(names((await get(`/fhir/Patient?family:exact=EVERYMAN`)).body)).toEqual([]);
  expect(names((await get(`/fhir/Patient?family:contains=ryma`)).body)).toEqual(['EverymanAdam']);
  expect(names((await get(`/fhir/Patient?family=ryma`)).body)).toEqual([]);
  expect(names((await get(`/fhir/Patient?name=alvarez`)).body)).toEqual(['ÁlvarezJosé']);
  expect(names((await get(`/fhir/Patient?given=JOSE`)).body)).toEqual(['ÁlvarezJosé']);
  expect(names((await get(`/fhir/Patient?name=adam%20everyman`)).body)).toEqual(['EverymanAdam']);
  // comma is OR, a repeated parameter is AND
  expect(names((await get(`/fhir/Patient?family=everyman,${encodeURIComponent('王')}`)).body)).toEqual(['EverymanAdam', '王伟']);
  expect(names((await get(`/fhir/Patient?name=everyman&name=adam`)).body)).toEqual(['EverymanAdam']);
  expect(names((await get(`/fhir/Patient?name=everyman&name=jose`)).body)).toEqual([]);
});

test('gender, birthdate with prefixes, phone, address, address-city; :not', async () => {
  expect(names((await get(`/fhir/Patient?gender=male`)).body)).toEqual(['EverymanAdam', 'ÁlvarezJosé', '张三', '王伟'].sort());
  expect(names((await get(`/fhir/Patient?gender:not=male`)).body)).toEqual(['吕娜', '欧阳娜娜'].sort());
  expect(names((await get(`/fhir/Patient?birthdate=1990`)).body)).toEqual(['欧阳娜娜']);
  expect(names((await get(`/fhir/Patient?birthdate=1990-05-01`)).body)).toEqual(['欧阳娜娜']);
  expect(names((await get(`/fhir/Patient?birthdate=ge1990-01-01`)).body)).toEqual(['吕娜', '张三', '欧阳娜娜'].sort());
  expect(names((await get(`/fhir/Patient?birthdate=lt1970-01-02&birthdate=gt1965`)).body)).toEqual(['EverymanAdam']);
  expect(names((await get(`/fhir/Patient?phone=139-0000-1111`)).body)).toEqual(['欧阳娜娜']);
  expect(names((await get(`/fhir/Patient?address=${encodeURIComponent('建国路')}`)).body)).toEqual(['欧阳娜娜']);
  expect(names((await get(`/fhir/Patient?address=main`)).body)).toEqual(['EverymanAdam']);
  expect((await get(`/fhir/Patient?birthdate=yesterday`)).status).toBe(400);
  expect((await get(`/fhir/Patient?_lastUpdated=gt2000-01-01`)).body.total).toBe(people.length);
  expect((await get(`/fhir/Patient?_lastUpdated=lt2000-01-01`)).body.total).toBe(0);
});

test('unknown parameters: ignored and out of the self link, or 400 with Prefer: handling=strict — alike on every type; unknown modifiers are 400', async () => {
  const all = await get(`/fhir/Patient?_count=100`);
  for (const type of ['Patient', 'Observation', 'Organization']) {
    const res = await get(`/fhir/${type}?foo=bar&_count=100`);
    expect(res.status).toBe(200);
    if (type === 'Patient') expect(res.body.entry.length).toBe(all.body.entry.length);
    expect(res.body.link.find((l: any) => l.relation === 'self').url).not.toContain('foo');
    const strict = await get(`/fhir/${type}?foo=bar`, { prefer: 'handling=strict' });
    expect(strict.status).toBe(400);
    expect(strict.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] });
    expect(strict.type).toMatch(/^application\/fhir\+json; ?fhirVersion=4\.0/);
  }
  expect((await get(`/fhir/Patient?name:sounds=x`)).status).toBe(400);
});

test('search audits only the patients it returns', async () => {
  const id = await goldenOf('P01');
  const count = async () => (await hub.runtime.db.query<{ n: number; p: string[] }>(`SELECT count(*)::int AS n, array_agg(patient_key) AS p FROM audit_event WHERE action = 'search' AND entity_type = 'Patient'`)).rows[0]!;
  const before = await count();
  await get(`/fhir/Patient?name=${encodeURIComponent('欧阳')}`);
  const after = await count();
  expect(after.n - before.n).toBe(1);
  expect(after.p).toContain(id);
});

test('_total, _summary=count, _count paging to the end with next/previous links, _sort', async () => {
  expect((await get(`/fhir/Patient`)).body.total).toBe(people.length);
  expect((await get(`/fhir/Patient?_total=none`)).body.total).toBeUndefined();
  expect((await get(`/fhir/Patient?_total=accurate&_count=2`)).body.total).toBe(people.length);
  const estimate = await get(`/fhir/Patient?_total=estimate&_count=2`);
  expect(estimate.body.total).toBeGreaterThanOrEqual(3);
  const counted = await get(`/fhir/Patient?gender=male&_summary=count`);
  expect(counted.body).toMatchObject({ total: 4, entry: [] });
  const seen: string[] = [];
  let next: string | undefined = `${base}/fhir/Patient?_count=4&_sort=birthdate`;
  let pages = 0;
  while (next) {
    const page = await get(next);
    expect(page.body.total).toBe(people.length);
    seen.push(...page.body.entry.map((e: any) => e.resource.birthDate));
    next = page.body.link.find((l: any) => l.relation === 'next')?.url;
    if (pages++ === 1) expect(page.body.link.map((l: any) => l.relation)).toEqual(['self', 'first', 'previous']);
  }
  expect(seen).toEqual([...seen].sort());
  expect(seen).toHaveLength(people.length);
  const desc = (await get(`/fhir/Patient?_sort=-birthdate&_count=1`)).body.entry[0].resource.birthDate;
  expect(desc).toBe('2001-09-09');
});

test('Observation: token system|code and :not, date prefixes, chaining, _include and _revinclude, _summary and _elements', async () => {
  const id = await goldenOf('P01');
  expect((await get(`/fhir/Observation?patient=${id}`)).body.total).toBe(2);
  expect((await get(`/fhir/Observation?patient=${id}&code=HGB`)).body.entry).toHaveLength(1);
  expect((await get(`/fhir/Observation?code=HGB`)).body.entry).toHaveLength(2);
  expect((await get(`/fhir/Observation?patient=${id}&code:not=HGB`)).body.entry.map((e: any) => e.resource.code.coding[0].code)).toEqual(['WBC']);
  expect((await get(`/fhir/Observation?patient=${id}&date=ge2026-11-03`)).body.entry).toHaveLength(1);
  expect((await get(`/fhir/Observation?patient=${id}&date=2026-11`)).body.entry).toHaveLength(2);
  // one level of chaining, by identifier and by name
  expect((await get(`/fhir/Observation?subject:Patient.identifier=urn:yilian:m1:mrn|P01`)).body.entry).toHaveLength(2);
  expect((await get(`/fhir/Observation?patient.name=${encodeURIComponent('欧阳')}`)).body.entry).toHaveLength(2);
  expect((await get(`/fhir/Observation?patient.name=nobody`)).body.entry).toHaveLength(0);
  // _include: the golden patient each result references
  const inc = await get(`/fhir/Observation?patient=${id}&_include=Observation:patient`);
  expect(inc.body.entry.filter((e: any) => e.search.mode === 'include').map((e: any) => e.resource.id)).toEqual([id]);
  // _revinclude: the observations of each patient found
  const rev = await get(`/fhir/Patient?_id=${id}&_revinclude=Observation:subject`);
  expect(rev.body.entry.filter((e: any) => e.search.mode === 'include').map((e: any) => e.resource.resourceType)).toEqual(['Observation', 'Observation']);
  // _summary=true drops what the R4 definitions mark not-in-summary (referenceRange); _elements keeps what is named
  const summary = await get(`/fhir/Observation?patient=${id}&_summary=true`);
  expect(summary.body.entry[0].resource.referenceRange).toBeUndefined();
  expect(summary.body.entry[0].resource.code).toBeDefined();
  expect(summary.body.entry[0].resource.meta.tag).toContainEqual(expect.objectContaining({ code: 'SUBSETTED' }));
  const elements = await get(`/fhir/Observation?patient=${id}&_elements=code`);
  expect(Object.keys(elements.body.entry[0].resource).sort()).toEqual(expect.arrayContaining(['code', 'id', 'meta', 'resourceType']));
  expect(elements.body.entry[0].resource.valueQuantity).toBeUndefined();
  expect((await get(`/fhir/Observation?patient=${id}&_sort=-date`)).body.entry[0].resource.code.coding[0].code).toBe('WBC');
});

test('vread and _history from stored versions: a member Patient and its golden patient after a demographics update', async () => {
  const id = await goldenOf('P02');
  const v1 = await get(`/fhir/Patient/${id}`);
  expect(v1.body.meta.versionId).toBe('1');
  await send('m1', adt(people[1]!, 'A08', '20261105080000', '13999999999'));
  await syncPatientIndex(hub.runtime.db);
  const v2 = await get(`/fhir/Patient/${id}`);
  expect(v2.body.meta.versionId).toBe('2');
  expect(v2.body.telecom[0].value).toBe('13999999999');
  expect(v2.headers.get('etag')).toBe('W/"2"');
  const named = (await get(`/fhir/Patient/${id}?_elements=name`)).body;
  expect([named.name[0].family, named.telecom, named.meta.tag.map((t: any) => t.code)]).toEqual(['Everyman', undefined, ['golden', 'SUBSETTED']]);
  const old = await get(`/fhir/Patient/${id}/_history/1`);
  expect(old.body.telecom[0].value).toBe('13900002222');
  const history = await get(`/fhir/Patient/${id}/_history`);
  expect(history.body).toMatchObject({ resourceType: 'Bundle', type: 'history', total: 2 });
  expect(history.body.entry.map((e: any) => e.resource.meta.versionId)).toEqual(['2', '1']);
  // the member's own Patient resource: versions written by the merge stage
  const source = v2.body.link.find((l: any) => l.other.display === 'm1|P02').other.reference;
  // (its ORU restated it too: ADT, ORU, A08 — three versions, newest first)
  const sourceHistory = await get(`/fhir/${source}/_history`);
  expect(sourceHistory.body.entry.map((e: any) => e.resource.meta.versionId)).toEqual(['3', '2', '1']);
  expect(sourceHistory.body.entry[0].resource.telecom[0].value).toBe('13999999999');
  expect((await get(`/fhir/${source}/_history/1`)).body.telecom?.[0]?.value).toBe('13900002222');
  expect((await get(`/fhir/${source}/_history/9`)).status).toBe(404);
  const obs = (await get(`/fhir/Observation?code=WBC`)).body.entry[0].resource;
  expect((await get(`/fhir/Observation/${obs.id}/_history/1`)).body.id).toBe(obs.id);
});

test('http: fhir+json in and out, 406 for XML, 405 for writes, OperationOutcome for 401/403/404', async () => {
  const ok = await get(`/fhir/Patient?_count=1`);
  expect(ok.type).toMatch(/^application\/fhir\+json; ?fhirVersion=4\.0/);
  for (const res of [await get(`/fhir/Patient?_format=xml`), await get(`/fhir/Patient`, { accept: 'application/fhir+xml' }), await get(`/fhir/metadata?_format=application/fhir%2Bxml`)]) {
    expect(res.status).toBe(406);
    expect(res.body.resourceType).toBe('OperationOutcome');
  }
  expect((await get(`/fhir/Patient`, { accept: 'application/fhir+json' })).status).toBe(200);
  expect((await get(`/fhir/Patient?_format=json`)).status).toBe(200);
  for (const method of ['PUT', 'DELETE', 'PATCH']) {
    const res = await fetch(`${base}/fhir/Patient/abc`, { method, headers: { authorization: `Bearer ${READER}`, 'content-type': 'application/fhir+json' }, body: '{"resourceType":"Patient"}' });
    expect([method, res.status]).toEqual([method, 405]);
    expect(res.headers.get('allow')).toBe('GET');
    expect(((await res.json()) as any).resourceType).toBe('OperationOutcome');
  }
  expect((await fetch(`${base}/fhir/Observation`, { method: 'POST', headers: { authorization: `Bearer ${READER}`, 'content-type': 'application/fhir+json' }, body: '{"resourceType":"Observation"}' })).status).toBe(405);
  const anon = await fetch(`${base}/fhir/Patient`);
  expect(anon.status).toBe(401);
  expect(anon.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
  const anonBody = (await anon.json()) as any;
  expect(anonBody).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'login' }] });
  expect(anonBody.code).toBeUndefined();
  const forbidden = await get(`/fhir/AuditEvent`);
  expect(forbidden.status).toBe(403);
  expect(forbidden.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'forbidden' }] });
  expect((await get(`/fhir/Observation/nope`)).body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'not-found' }] });
});

test('$translate takes application/fhir+json like application/json', async () => {
  const body = JSON.stringify({ resourceType: 'Parameters', parameter: [{ name: 'system', valueUri: 'urn:yilian:m1:lab' }, { name: 'code', valueCode: 'HGB' }, { name: 'target', valueUri: 'http://loinc.org' }] });
  const answers = [];
  for (const type of ['application/fhir+json', 'application/json']) {
    const res = await fetch(`${base}/fhir/ConceptMap/$translate`, { method: 'POST', headers: { authorization: `Bearer ${TERM}`, 'content-type': type }, body });
    expect([type, res.status]).toEqual([type, 200]);
    expect(res.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    answers.push(await res.json());
  }
  expect(answers[0]).toEqual(answers[1]);
  expect((answers[0] as any).resourceType).toBe('Parameters');
  expect((await get(`/fhir/ConceptMap/$translate?system=urn:yilian:m1:lab&code=HGB&_format=xml`, {}, TERM)).status).toBe(406);
  const maps = await get(`/fhir/ConceptMap?url=${encodeURIComponent('https://yilian.example/fhir/ConceptMap/local-county-L')}&foo=bar`, {}, TERM);
  expect(maps.body.entry.map((e: any) => e.resource.id)).toEqual(['local-county-L']);
  expect((await get(`/fhir/ConceptMap?foo=bar`, { prefer: 'handling=strict' }, TERM)).status).toBe(400);
});

test('$validate checks a resource against the R4 definitions', async () => {
  const post = (type: string, body: unknown) => fetch(`${base}/fhir/${type}/$validate`, { method: 'POST', headers: { authorization: `Bearer ${READER}`, 'content-type': 'application/fhir+json' }, body: JSON.stringify(body) });
  const good = await post('Observation', { resourceType: 'Observation', status: 'final', code: { text: 'HGB' } });
  expect(good.status).toBe(200);
  expect(((await good.json()) as any).issue).toEqual([expect.objectContaining({ severity: 'information' })]);
  const bad = (await (await post('Patient', { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient', gender: 'mail', birthDate: '1990-13-45' } }] })).json()) as any;
  expect(bad.issue.filter((i: any) => i.severity === 'error').length).toBeGreaterThanOrEqual(2);
  expect((await post('Observation', { resourceType: 'Patient' })).status).toBe(400);
});

test('the CapabilityStatement is open and lists every search parameter the search table answers, with operations and their definitions', async () => {
  const res = await fetch(`${base}/fhir/metadata`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/fhir\+json; ?fhirVersion=4\.0/);
  const cs = (await res.json()) as any;
  expect(cs).toMatchObject({ resourceType: 'CapabilityStatement', fhirVersion: '4.0.1', kind: 'instance', format: expect.arrayContaining(['application/fhir+json']) });
  expect(Number.isNaN(Date.parse(cs.date))).toBe(false);
  expect(cs.rest[0].security.description).toMatch(/Bearer/);
  const byType = new Map<string, any>(cs.rest[0].resource.map((r: any) => [r.type, r]));
  for (const [type, defs] of Object.entries(searchTables(hub.runtime.db))) {
    expect(byType.get(type).searchParam.map((p: any) => [p.name, p.type])).toEqual(defs.map((d) => [d.name, d.type]));
  }
  const patient = byType.get('Patient');
  expect(patient.searchParam).toContainEqual(expect.objectContaining({ name: 'name', type: 'string', definition: 'http://hl7.org/fhir/SearchParameter/Patient-name' }));
  expect(patient.interaction.map((i: any) => i.code)).toEqual(['read', 'vread', 'history-instance', 'search-type']);
  expect(patient.operation).toContainEqual({ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' });
  expect(byType.get('Observation').searchRevInclude ?? []).toEqual([]);
  expect(patient.searchRevInclude).toContain('Observation:subject');
  expect(byType.get('ConceptMap').operation).toContainEqual({ name: 'translate', definition: 'http://hl7.org/fhir/OperationDefinition/ConceptMap-translate' });
  expect(byType.get('CodeSystem')).toBeDefined();
});
