/** Matching rules of the unified shared resources (hub/resources/rules.ts): keys, vetoes, survivorship. */
import { compare, derivedRole, isOrganizationCode, isUscc, locationHierarchy, matchKeys, survive, type SharedSource } from '../hub/resources/rules';

const none = () => undefined;
const src = (resourceType: SharedSource['resourceType'], memberId: string, content: Record<string, unknown>, sourceId = `${memberId}-x`): SharedSource => ({ resourceType, sourceId, memberId, content, updatedAt: new Date('2026-11-01T00:00:00Z') });
const side = (s: SharedSource) => ({ content: s.content, keys: matchKeys(s, none) });
const firstShared = (a: SharedSource, b: SharedSource) => {
  const ka = matchKeys(a, none);
  const kb = matchKeys(b, none);
  const all = [...kb.strong, ...kb.weak];
  return [...ka.strong, ...ka.weak].find((k) => all.includes(k));
};

test('a CT reported by two members with its serial in AIG-3 (coding system SN) is one device, whatever its local code', () => {
  const lead = src('Device', 'lead', { identifier: [{ system: 'urn:yilian:lead:L', value: 'CT01' }, { system: 'urn:yilian:lead:SN', value: 'sn88231' }], deviceName: [{ name: '西门子 SOMATOM Force CT' }] });
  const county = src('Device', 'county', { identifier: [{ system: 'urn:yilian:county:L', value: 'LEADCT' }, { system: 'urn:yilian:county:SN', value: 'SN88231' }], deviceName: [{ name: '联盟共享CT' }] });
  const key = firstShared(lead, county);
  expect(key).toBe('sn:SN88231');
  expect(compare(side(lead), side(county), key!)).toMatchObject({ same: true, rule: 'sn' });
});

test('two CTs of the same model and name at one member stay apart when their serials differ', () => {
  const a = src('Device', 'lead', { identifier: [{ system: 'urn:yilian:lead:SN', value: 'SN88231' }], deviceName: [{ name: '西门子 SOMATOM Force CT' }] });
  const b = src('Device', 'lead', { identifier: [{ system: 'urn:yilian:lead:SN', value: 'SN99120' }], deviceName: [{ name: '西门子 SOMATOM Force CT' }] });
  const key = firstShared(a, b);
  expect(key).toMatch(/^name:/);
  expect(compare(side(a), side(b), key!)).toMatchObject({ same: false, rule: 'veto' });
  // without serials, manufacturer + model + owner + name: a second unit named differently is another device
  const m = (name: string) => src('Device', 'lead', { manufacturer: 'Siemens', modelNumber: 'SOMATOM Force', deviceName: [{ name }] });
  expect(firstShared(m('CT 1号机'), m('CT 2号机'))).toBeUndefined();
  expect(firstShared(m('CT 1号机'), m('CT 1號機'))).toMatch(/^model:/);
});

test('a practitioner with a national licence number is one person across members; homophones with different characters are not', () => {
  const licence = { system: 'urn:oid:2.16.156.10011.1.4', value: '110330000012345' };
  const lead = src('Practitioner', 'lead', { identifier: [licence], name: [{ family: '王', given: ['建国'], text: '王建国', suffix: ['主任医师'] }] });
  const comm = src('Practitioner', 'comm', { identifier: [licence], name: [{ family: '王', given: ['建國'], text: '王建國' }] });
  expect(compare(side(lead), side(comm), firstShared(lead, comm)!)).toMatchObject({ same: true, rule: 'identifier' });
  const homophone = src('Practitioner', 'comm', { identifier: [{ system: 'urn:yilian:comm:id:COMM', value: 'D017' }], name: [{ family: '汪', given: ['建国'], text: '汪建国', suffix: ['主任医师'] }] });
  const key = firstShared(lead, homophone);
  expect(key).toBe('sound:wangjianguo|q:主任医师');
  expect(compare(side(lead), side(homophone), key!)).toMatchObject({ same: false, rule: 'homophone' });
  // a pinyin-only report with the same qualification agrees with the Hanzi one by sound
  const pinyin = src('Practitioner', 'county', { name: [{ family: 'WANG', given: ['JIANGUO'], suffix: ['主任医师'] }] });
  expect(compare(side(lead), side(pinyin), 'sound:wangjianguo|q:主任医师')).toMatchObject({ same: true, rule: 'name-sound+qualification' });
  // the same name at two members without a qualification is not evidence across members
  expect(firstShared(src('Practitioner', 'a', { name: [{ text: '张伟' }] }), src('Practitioner', 'b', { name: [{ text: '張偉' }] }))).toBeUndefined();
  expect(firstShared(src('Practitioner', 'a', { name: [{ text: '张伟' }] }), src('Practitioner', 'a', { name: [{ text: '張偉' }] }))).toBe('name:张伟|member:a');
  // two staff numbers of one assigning authority: two people, even with one name
  const z1 = src('Practitioner', 'a', { identifier: [{ system: 'urn:yilian:a:id:HIS', value: '1' }], name: [{ text: '张伟' }] });
  const z2 = src('Practitioner', 'a', { identifier: [{ system: 'urn:yilian:a:id:HIS', value: '2' }], name: [{ text: '张伟' }] });
  expect(compare(side(z1), side(z2), 'name:张伟|member:a')).toMatchObject({ same: false, rule: 'veto' });
});

test('organisations: USCC and organization code check characters; a USCC carries the organization code', () => {
  expect(isUscc('91350100M000100Y43')).toBe(true);
  expect(isUscc('91350100M000100Y44')).toBe(false);
  expect(isOrganizationCode('M000100Y4')).toBe(true);
  const a = src('Organization', 'lead', { identifier: [{ system: 'urn:yilian:lead:id:USCC', value: '91350100M000100Y43' }], name: '某市第一人民医院' });
  const b = src('Organization', 'comm', { identifier: [{ system: 'urn:yilian:comm:id:ORG', value: 'M000100Y4' }], name: '市一院' });
  expect(firstShared(a, b)).toBe('orgcode:M000100Y4');
});

test('a ward reported under two codes with the same description (traditional or simplified) has one hierarchy', () => {
  const his = { name: '0301 / 12 / 3', description: '心内科一病区', physicalType: { coding: [{ code: 'bd' }] } };
  const lis = { name: 'XNK1 / 12 / 3', description: '心內科一病區', physicalType: { coding: [{ code: 'bd' }] } };
  expect(locationHierarchy(his)).toEqual(locationHierarchy(lis));
  expect(firstShared(src('Location', 'lead', his), src('Location', 'lead', lis))).toMatch(/^loc:member:lead\|/);
  expect(firstShared(src('Location', 'lead', his), src('Location', 'comm', lis))).toBeUndefined();
  expect(firstShared(src('Location', 'lead', his), src('Location', 'lead', { ...lis, name: 'XNK1 / 12 / 4' }))).toBeUndefined();
});

test('roles: an AIP-3 practitioner has a session role at the reporting member; a referring doctor does not', () => {
  const p = (path: string) => src('Practitioner', 'comm', { meta: { extension: [{ url: 'https://yilian.example/fhir/StructureDefinition/segment-path', valueString: path }] }, name: [{ text: '王建国' }] }, 'p1');
  expect(derivedRole(p('AIP-3'))?.content).toMatchObject({ practitioner: { reference: 'Practitioner/p1' }, organization: { reference: 'Organization/member-comm' }, code: [{ text: 'scheduled session' }] });
  expect(derivedRole(p('PV1-8'))).toBeUndefined();
  const resolve = (r?: string) => (r === 'Practitioner/p1' ? 'U-P' : r === 'Organization/member-comm' ? 'U-O' : undefined);
  expect(matchKeys({ ...src('PractitionerRole', 'comm', derivedRole(p('AIP[2]-3'))!.content) }, resolve).strong).toEqual(['role:U-P|U-O']);
});

test('survivorship: the latest report leads, gaps filled from others, identifiers unioned, Hanzi name first, every source linked', () => {
  const at = (d: string) => new Date(d);
  const out = survive(
    'Practitioner',
    'U1',
    [
      { content: { name: [{ family: 'WANG', given: ['JIANGUO'] }], identifier: [{ system: 's', value: '1' }], gender: 'male' }, updatedAt: at('2026-11-02'), link: { sourceId: 'b', memberId: 'county', rule: 'identifier', reference: 'Practitioner/b' } },
      { content: { name: [{ text: '王建国' }], identifier: [{ system: 's', value: '1' }, { system: 't', value: '9' }], birthDate: '1970-01-01' }, updatedAt: at('2026-11-01'), link: { sourceId: 'a', memberId: 'lead', rule: 'new', reference: 'Practitioner/a' } },
    ],
    () => undefined,
  );
  expect(out).toMatchObject({ resourceType: 'Practitioner', id: 'U1', gender: 'male', birthDate: '1970-01-01' });
  expect(out.identifier).toHaveLength(2);
  expect(out.name[0]).toEqual({ text: '王建国' });
  expect(out.extension.map((e: any) => e.extension[0].valueReference.reference)).toEqual(['Practitioner/b', 'Practitioner/a']);
});

test('services by provider and type; roles by unified practitioner and organisation; references resolved to unified ids', () => {
  const resolve = (r?: string) => ({ 'Organization/o-lead': 'U-LEAD', 'Organization/o-lead-2': 'U-LEAD', 'Practitioner/p1': 'U-P', 'Practitioner/p2': 'U-P' })[r ?? ''] as string | undefined;
  const hs = (org: string, code: string) => matchKeys(src('HealthcareService', 'lead', { providedBy: { reference: org }, type: [{ coding: [{ system: 'urn:yilian:lead:svc', code }] }] }), resolve).weak;
  expect(hs('Organization/o-lead', 'CT')).toEqual(hs('Organization/o-lead-2', 'CT'));
  expect(hs('Organization/o-lead', 'CT')).not.toEqual(hs('Organization/o-lead', 'MR'));
  const role = (p: string, m: string) => matchKeys(src('PractitionerRole', m, { practitioner: { reference: p }, organization: { reference: 'Organization/o-lead' } }), resolve).strong;
  expect(role('Practitioner/p1', 'lead')).toEqual(role('Practitioner/p2', 'comm'));
  const out = survive('PractitionerRole', 'R1', [{ content: { practitioner: { reference: 'Practitioner/p2' }, organization: { reference: 'Organization/o-lead' }, code: [{ text: 'a' }] }, updatedAt: new Date(), link: { sourceId: 'x', memberId: 'lead', rule: 'new' } }], (_t, r) => resolve(r));
  expect(out).toMatchObject({ practitioner: { reference: 'Practitioner/U-P' }, organization: { reference: 'Organization/U-LEAD' } });
});
