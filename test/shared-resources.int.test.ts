/**
 * Unified shared resources on real PostgreSQL, data through the real pipeline (HL7 v2 SIU, ADT,
 * ORU of three members): the lead hospital's CT reported by the lead and by a county member (its
 * serial in AIG-3) is one Device with two sources, a second CT of the same model stays apart; the
 * lead's expert scheduled at a community member is one Practitioner with roles at both; a ward
 * reported under two codes is one Location; ids survive re-sync, replay and a changed report; the
 * FHIR API serves the unified records and refuses an unauthenticated request; the CLI lists them.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { MemberConfig } from '../hub/config';
import { createApi } from '../api/server';
import { encodeAs } from '../cli/simulate';
import { runPipeline } from '../pipeline/runner';
import { sharedResourcesCommand } from '../cli/resources';
import { syncSharedResources, unifiedIdOf, unifiedIdsOf } from '../hub/resources/store';
import { startTestHub, type TestHub } from './support/hub';

const members = [
  { id: 'lead', name: '市第一人民医院', tier: 'tertiary' },
  { id: 'county', name: '青山县人民医院', tier: 'secondary' },
  { id: 'comm', name: '城东社区卫生服务中心', tier: 'primary' },
].map((m) => ({ ...m, channels: [{ id: 'his', kind: 'mllp', port: 0 }] }));
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
const READER = 'reader-key-0123456789abcdef';
let hub: TestHub;
let server: Server;
let base: string;
let control = 0;
const rawIds: number[] = [];

const EXPERT = '110330000012345^王^建国^^^^主任医师^^&2.16.156.10011.1.4&ISO';
const EXPERT_TW = '110330000012345^王^建國^^^^^^&2.16.156.10011.1.4&ISO';

function siu(member: string, appt: string, when: string, aig: string, aip?: string): string {
  const F = member.toUpperCase();
  return [
    `MSH|^~\\&|RIS|${F}|YILIAN|HUB|${when}||SIU^S12^SIU_S12|C${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
    `SCH|${appt}|${appt}F|||||||30|min|^^^${when.slice(0, 8)}100000^${when.slice(0, 8)}103000`,
    `PID|1||${member.toUpperCase()}-P${control}^^^${F}^MR||李^明||19700101|M`,
    'RGS|1',
    `AIS|1|A|CT-HEAD^头颅CT平扫^L|${when.slice(0, 8)}100000|||30|min`,
    `AIG|1|A|${aig}|E^Equipment`,
    ...(aip ? [`AIP|1|A|${aip}|D^Doctor`] : []),
  ].join('\r') + '\r';
}

function adt(member: string, pv1Location: string, attending: string, when: string): string {
  const F = member.toUpperCase();
  return [
    `MSH|^~\\&|HIS|${F}|YILIAN|HUB|${when}||ADT^A01^ADT_A01|C${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
    `EVN|A01|${when}`,
    `PID|1||${F}-P${control}^^^${F}^MR||赵^六||19800101|F`,
    `PV1|1|I|${pv1Location}|||| ${attending}`.replace('| ', '|'),
  ].join('\r') + '\r';
}

function oru(member: string, pv1Location: string, when: string): string {
  const F = member.toUpperCase();
  return [
    `MSH|^~\\&|LIS|${F}|YILIAN|HUB|${when}||ORU^R01^ORU_R01|C${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
    `PID|1||${F}-P${control}^^^${F}^MR||钱^七||19750101|M`,
    `PV1|1|I|${pv1Location}`,
    `OBR|1|ORD${control}|FIL${control}|CBC^血常规^L|||${when}`,
    `OBX|1|NM|HGB^血红蛋白^L||135|g/L|130-175|N|||F|||${when}`,
  ].join('\r') + '\r';
}

async function send(memberId: string, text: string): Promise<number> {
  const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
  const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
  expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
  rawIds.push(stored.rawId);
  return stored.rawId;
}

const sourceIds = async (type: string, member: string, where = 'true') =>
  (await hub.runtime.db.query<{ id: string }>(`SELECT id FROM resource WHERE resource_type = $1 AND member_id = $2 AND ${where} ORDER BY id`, [type, member])).rows.map((r) => r.id);
const snapshot = async () => (await hub.runtime.db.query<{ resource_type: string; source_id: string; unified_id: string }>(`SELECT resource_type, source_id, unified_id FROM shared_source ORDER BY 1, 2`)).rows;
const get = async (path: string, key?: string) => {
  const res = await fetch(`${base}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  return { status: res.status, body: (await res.json()) as any };
};

beforeAll(async () => {
  hub = await startTestHub('shared_resources', { members, api: { port: 0, keys: [{ name: 'clinic-his', key: READER, scopes: ['patient.read'] }] } });
  await send('lead', siu('lead', 'A1', '20261102090000', 'CT01^西门子 SOMATOM Force CT^L^SN88231^^SN', EXPERT));
  await send('lead', siu('lead', 'A2', '20261102091000', 'CT02^西门子 SOMATOM Force CT^L^SN99120^^SN'));
  await send('lead', adt('lead', '0301^12^3^LEAD^^^^^心内科一病区', EXPERT, '20261102080000'));
  await send('lead', oru('lead', 'XNK1^12^3^LEAD^^^^^心內科一病區', '20261102100000'));
  await send('comm', siu('comm', 'B1', '20261103090000', 'DR1^DR摄影机^L', EXPERT_TW));
  await send('comm', adt('comm', 'NK^^^COMM', 'D017^汪^建国^^^^主任医师^^COMM', '20261103080000'));
  server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await hub?.close();
});

test('the same CT from two members is one unified Device with two sources; a second CT of the same model stays apart', async () => {
  await syncSharedResources(hub.runtime.db);
  const [ct01, ct02] = await sourceIds('Device', 'lead', `content->'identifier' @> '[{"value":"SN88231"}]'`).then(async (a) => [a[0]!, (await sourceIds('Device', 'lead', `content->'identifier' @> '[{"value":"SN99120"}]'`))[0]!]);
  const unified = await unifiedIdOf(hub.runtime.db, 'Device', ct01);
  expect(unified).toBeDefined();
  expect(await unifiedIdOf(hub.runtime.db, 'Device', ct02)).not.toBe(unified);
  // the county books a patient on the lead's CT (its own code, the same serial) after the first sync
  await send('county', siu('county', 'C1', '20261104090000', 'LEADCT^联盟共享CT^L^SN88231^^SN'));
  const summary = await syncSharedResources(hub.runtime.db);
  expect(summary.linked).toBeGreaterThanOrEqual(1);
  const [countyCt] = await sourceIds('Device', 'county');
  expect(await unifiedIdOf(hub.runtime.db, 'Device', countyCt!)).toBe(unified);
  const sources = await hub.runtime.db.query<{ member_id: string; rule: string }>(`SELECT member_id, rule FROM shared_source WHERE unified_id = $1 ORDER BY member_id`, [unified]);
  expect(sources.rows).toEqual([
    { member_id: 'county', rule: 'sn' },
    { member_id: 'lead', rule: 'new' },
  ]);
});

test('the lead expert scheduled at the community member is one Practitioner with roles at both members; a homophone stays apart', async () => {
  await syncSharedResources(hub.runtime.db);
  const [leadDoc] = await sourceIds('Practitioner', 'lead');
  const commDocs = await sourceIds('Practitioner', 'comm');
  const ids = await unifiedIdsOf(hub.runtime.db, 'Practitioner', [leadDoc!, ...commDocs]);
  const expert = ids.get(leadDoc!)!;
  expect(commDocs.filter((d) => ids.get(d) === expert)).toHaveLength(1);
  expect(commDocs.filter((d) => ids.get(d) !== expert)).toHaveLength(1); // 汪建国
  const roles = await hub.runtime.db.query<{ content: any }>(`SELECT content FROM shared_unified WHERE resource_type = 'PractitionerRole' AND merged_into IS NULL AND content->'practitioner'->>'reference' = $1`, [`Practitioner/${expert}`]);
  const orgs = roles.rows.map((r) => r.content.organization.reference.slice('Organization/'.length));
  expect(orgs).toHaveLength(2);
  expect(new Set(orgs)).toEqual(new Set([await unifiedIdOf(hub.runtime.db, 'Organization', 'member-lead'), await unifiedIdOf(hub.runtime.db, 'Organization', 'member-comm')]));
  expect(roles.rows.map((r) => r.content.code[0].text).sort()).toEqual(['scheduled session', 'scheduled session']);
  // a pinyin-only WANG JIANGUO (same title, no licence) at the county sounds like both 王建国 and 汪建国: linked to neither
  await send('county', adt('county', 'WK^^^COUNTY', '^WANG^JIANGUO^^^^主任医师', '20261103100000'));
  await syncSharedResources(hub.runtime.db);
  const [pinyin] = await sourceIds('Practitioner', 'county');
  const pinyinUnified = await unifiedIdOf(hub.runtime.db, 'Practitioner', pinyin!);
  expect([...new Set(ids.values())]).not.toContain(pinyinUnified);
  const evidence = await hub.runtime.db.query<{ rule: string; evidence: { refused?: Array<{ rule: string }> } }>(`SELECT rule, evidence FROM shared_source WHERE resource_type = 'Practitioner' AND source_id = $1`, [pinyin]);
  expect(evidence.rows[0]!.rule).toBe('new');
  expect(evidence.rows[0]!.evidence.refused?.filter((r) => r.rule === 'ambiguous')).toHaveLength(2);
});

test('a ward bed reported by HIS and LIS under different codes is one Location', async () => {
  const beds = await sourceIds('Location', 'lead', `content->'physicalType'->'coding'->0->>'code' = 'bd'`);
  expect(beds).toHaveLength(2);
  const ids = await unifiedIdsOf(hub.runtime.db, 'Location', beds);
  expect(new Set(ids.values()).size).toBe(1);
});

test('unified ids survive a full re-sync, a replay of every message and a changed report', async () => {
  const before = await snapshot();
  expect(before.length).toBeGreaterThan(10);
  const full = await syncSharedResources(hub.runtime.db, { full: true });
  expect(full.created + full.moved + full.merged).toBe(0);
  for (const rawId of rawIds) {
    await hub.runtime.db.query(`UPDATE raw_message SET status = 'queued' WHERE id = $1`, [rawId]);
    expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, rawId, true)).toBe('processed');
  }
  await syncSharedResources(hub.runtime.db);
  expect(await snapshot()).toEqual(before);
  // the lead renames its CT in a later message: a new version of the report, the same unified record
  const [ct01] = await sourceIds('Device', 'lead', `content->'identifier' @> '[{"value":"SN88231"}]'`);
  const unified = await unifiedIdOf(hub.runtime.db, 'Device', ct01!);
  await send('lead', siu('lead', 'A3', '20261105090000', 'CT01^CT 1号机（西门子 Force）^L^SN88231^^SN'));
  await syncSharedResources(hub.runtime.db);
  expect(await unifiedIdOf(hub.runtime.db, 'Device', ct01!)).toBe(unified);
  const record = await hub.runtime.db.query<{ content: any }>(`SELECT content FROM shared_unified WHERE id = $1`, [unified]);
  expect(record.rows[0]!.content.deviceName[0].name).toBe('CT 1号机（西门子 Force）');
});

test('the FHIR API serves the unified records with their sources; a member id reads its unified record; unauthenticated is refused', async () => {
  const [countyCt] = await sourceIds('Device', 'county');
  const unified = await unifiedIdOf(hub.runtime.db, 'Device', countyCt!);
  const search = await get(`/fhir/Device?identifier=${encodeURIComponent('urn:yilian:county:SN|SN88231')}`, READER);
  expect(search.status).toBe(200);
  expect(search.body.total).toBe(1);
  const device = search.body.entry[0].resource;
  expect(device.id).toBe(unified);
  const refs = device.extension.filter((e: any) => /shared-source$/.test(e.url)).map((e: any) => e.extension.find((x: any) => x.url === 'source').valueReference.reference);
  expect(refs).toHaveLength(2);
  expect(refs).toContain(`Device/${countyCt}`);
  const read = await get(`/fhir/Device/${countyCt}`, READER);
  expect(read.status).toBe(200);
  expect(read.body.id).toBe(unified);
  expect((await get(`/fhir/Device/${unified}`, READER)).body.id).toBe(unified);
  const byName = await get(`/fhir/Practitioner?name=${encodeURIComponent('王建國')}`, READER);
  expect(byName.body.total).toBe(1);
  expect(byName.body.entry[0].resource.name[0]).toMatchObject({ family: '王', given: ['建国'], suffix: ['主任医师'] }); // the fullest report's name
  expect(byName.body.entry[0].resource.identifier).toEqual(expect.arrayContaining([{ system: 'urn:oid:2.16.156.10011.1.4', value: '110330000012345' }]));
  const orgs = await get(`/fhir/Organization?identifier=${encodeURIComponent('urn:yilian:member|comm')}`, READER);
  expect(orgs.body.total).toBe(1);
  expect(orgs.body.entry[0].resource).toMatchObject({ id: 'member-comm', name: '城东社区卫生服务中心', type: [{ coding: [{ code: 'primary' }] }] });
  expect((await get(`/fhir/Device?_count=0`, READER)).status).toBe(400);
  expect((await get(`/fhir/Device/nope-not-here`, READER)).status).toBe(404);
  const anonymous = await get(`/fhir/Device`);
  expect(anonymous.status).toBe(401);
  expect((await get(`/fhir/Device/${unified}`)).status).toBe(401);
});

test('a report showing two unified records to be one merges them into the older; the other id still resolves', async () => {
  await send('lead', siu('lead', 'M1', '20261106090000', 'CT3^CT 3号机^L'));
  await send('county', siu('county', 'M2', '20261106091000', 'LCT3^共享CT3^L^SN7^^SN'));
  await syncSharedResources(hub.runtime.db);
  const [leadCt3] = await sourceIds('Device', 'lead', `content->'deviceName'->0->>'name' = 'CT 3号机'`);
  const [countyCt3] = await sourceIds('Device', 'county', `content->'identifier' @> '[{"value":"SN7"}]'`);
  const older = (await unifiedIdOf(hub.runtime.db, 'Device', leadCt3!))!;
  const younger = (await unifiedIdOf(hub.runtime.db, 'Device', countyCt3!))!;
  expect(older).not.toBe(younger);
  // the lead's PACS reports its CT 3 with the serial: the same name at the lead, the county's serial
  await send('lead', siu('lead', 'M3', '20261106092000', 'CT-3^CT 3号机^L^SN7^^SN'));
  const summary = await syncSharedResources(hub.runtime.db);
  expect(summary.merged).toBe(1);
  expect(await unifiedIdOf(hub.runtime.db, 'Device', countyCt3!)).toBe(older);
  expect(await unifiedIdOf(hub.runtime.db, 'Device', younger)).toBe(older);
  const read = await get(`/fhir/Device/${younger}`, READER);
  expect(read.body.id).toBe(older);
  expect(read.body.extension.filter((e: any) => /shared-source$/.test(e.url))).toHaveLength(3);
});

test('yilian resources list --type Device --json lists the unified devices with their sources', async () => {
  const out: string[] = [];
  const saved = process.env.DATABASE_URL;
  process.env.DATABASE_URL = hub.databaseUrl;
  try {
    expect(await sharedResourcesCommand(['list', '--type', 'Device', '--json'], (t) => void out.push(t))).toBe(0);
  } finally {
    if (saved === undefined) delete process.env.DATABASE_URL;
    else process.env.DATABASE_URL = saved;
  }
  const devices = JSON.parse(out.join('')) as Array<{ name: string; sources: Array<{ memberId: string }> }>;
  expect(devices).toHaveLength(4); // the shared CT, the second CT, the community's DR, CT 3
  expect(devices.find((d) => d.sources.length === 2)!.sources.map((s) => s.memberId).sort()).toEqual(['county', 'lead']);
});
