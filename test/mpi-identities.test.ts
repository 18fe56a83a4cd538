/**
 * The patient index on real-world identities (issue 20): identifiers of every type placed in their
 * identity systems with their own checks, phones in E.164 with the member's country, names in any
 * script, nicknames, generational suffixes, addresses without their type code, name-only
 * evidence, and the production path — an HL7 v2 message read by the pipeline's own stages and
 * `recordOfSource` — carrying all of it. Pure: no store.
 */
import { IdentityTable, identityConfigSchema, normaliseIdentity } from '../hub/mpi/identity';
import { normalisePhone } from '../hub/mpi/phones';
import { addressKey } from '../hub/mpi/addresses';
import { areAliases } from '../hub/mpi/nicknames';
import { normaliseName } from '../hub/mpi/names';
import { blockingKeys, featuresOf, type PersonRecord } from '../hub/mpi/features';
import { makeResidentId } from '../hub/mpi/residentId';
import { modelForPopulation, scorePair, type MatchModel } from '../hub/mpi/matcher';
import { parseConfig } from '../hub/config';
import defaultModel from '../hub/mpi/defaultModel.json';
import { parseStage } from '../pipeline/stages/parse';
import { convertStage } from '../pipeline/stages/convert';
import { identifyStage } from '../pipeline/stages/identify';
import { recordOfSource, type SourceRow } from '../hub/mpi/sourceRecord';
import { hl7Of, recordViaFhir, recordViaHl7 } from '../bench/mpiRecords';
import { generateWorldSet, worldIdentityTable } from '../bench/mpiWorld';

const model = modelForPopulation(defaultModel as unknown as MatchModel, 10_000);
const table = new IdentityTable(identityConfigSchema.parse({ memberCountries: { us: 'US' }, systems: [{ authority: 'HKMO', system: 'cn-hkmo-permit' }] }));
const ids = (member: string, list: Array<{ value: string; type?: string; authority?: string }>) => table.identities(member, list).map((i) => `${i.system}|${i.valid ? '' : '!'}${i.value}`);
const score = (a: Omit<PersonRecord, 'id'>, b: Omit<PersonRecord, 'id'>) => scorePair(model, featuresOf({ id: 'a', ...a }), featuresOf({ id: 'b', ...b }));
const level = (s: ReturnType<typeof scorePair>, field: string) => s.fields.find((f) => f.field === field)!.label;

describe('identity systems', () => {
  test('each identifier goes to its system by type and authority, with its own check; record numbers are not identities', () => {
    expect(ids('m1', [{ value: 'MRN-1', type: 'MR' }, { value: 'p1234567', type: 'PPN', authority: 'urn:yilian:m1:id:USA' }])).toEqual(['passport:US|P1234567']);
    expect(ids('m1', [{ value: '078-05-1120', type: 'SS' }, { value: '000-12-3456', type: 'SS' }])).toEqual(['us-ssn|078051120', 'us-ssn|!000123456']);
    // The Home Return Permit's two-digit renewal count is not part of the person's number (configured authority, by its CX-4 namespace).
    expect(ids('m1', [{ value: 'H1234567801', authority: 'urn:yilian:m1:id:HKMO' }])).toEqual(['cn-hkmo-permit|H12345678']);
    // The 2017 foreigner's permanent residence ID: 18 characters starting with 9, MOD 11-2.
    const pr = makeResidentId('933156', '19800101', 12, 'M');
    expect(normaliseIdentity('cn-foreigner-pr', pr)).toEqual({ system: 'cn-foreigner-pr', value: pr, valid: true });
    expect(normaliseIdentity('cn-foreigner-pr', pr.slice(0, 17) + (pr[17] === '1' ? '2' : '1'))!.valid).toBe(false);
    // A resident ID in PID-19 (typed SS) of a member whose mapping is not configured is still the resident ID.
    const rid = makeResidentId('330106', '19800101', 5, 'M');
    expect(ids('m1', [{ value: rid, type: 'SS' }])).toEqual([`cn-resident|${rid}`]);
    expect(ids('m1', [{ value: 'X1', type: 'NNRUS' }, { value: 'AB123', type: 'NNRUS' }])).toEqual(['ni:RU|!X1', 'ni:RU|AB123']);
  });

  test('the identity table is part of the hub configuration and is checked there', () => {
    expect(() => parseConfig({ identity: { systems: [{ system: 'passport:US' }] } })).toThrow(/authority or type/);
    expect(() => parseConfig({ identity: { memberCountries: { m1: 'usa' } } })).toThrow(/identity\.memberCountries/);
    expect(parseConfig({ identity: { memberCountries: { m1: 'US' } } }).identity.memberCountries).toEqual({ m1: 'US' });
  });

  test('same passport links (with the family name); two passports of one country never auto-link; a lifelong checked number that differs is two people', () => {
    const base = { family: 'Smith', given: 'John', birthDate: '19800101' };
    expect(score({ ...base, identities: ['passport:US|123456789'] }, { family: 'Smith', given: 'Jon', identities: ['passport:US|123456789'] })).toMatchObject({ outcome: 'MATCH', rule: 'identifier' });
    const two = score({ ...base, phone: '2135550101', country: 'US', identities: ['passport:US|123456789'] }, { ...base, phone: '2135550101', country: 'US', identities: ['passport:US|987654321'] });
    expect(two.rule).toBe('identifier-differs');
    expect(two.outcome).not.toBe('MATCH');
    // An SSN in common says the other passport is a renewed one.
    expect(score({ ...base, identities: ['passport:US|123456789', 'us-ssn|078051120'] }, { ...base, identities: ['passport:US|987654321', 'us-ssn|078051120'] }).outcome).toBe('MATCH');
    const pr1 = makeResidentId('933156', '19800101', 12, 'M');
    const pr2 = makeResidentId('933156', '19800101', 24, 'M');
    expect(score({ ...base, identities: [`cn-foreigner-pr|${pr1}`] }, { ...base, identities: [`cn-foreigner-pr|${pr2}`] })).toMatchObject({ outcome: 'NO_MATCH', rule: 'identifier-conflict' });
  });
});

describe('phones, addresses', () => {
  test('phones are E.164 with the member\'s country as default', () => {
    expect(normalisePhone('818-892-2818', 'US')).toBe('+18188922818');
    expect(normalisePhone('18188922818', 'US')).toBe('+18188922818');
    expect(normalisePhone('+1 (818) 892-2818', 'CN')).toBe('+18188922818');
    expect(normalisePhone('138 0013 8000')).toBe('+8613800138000');
    expect(normalisePhone('+7 (4812) 12-34-56')).toBe('+74812123456');
    expect(normalisePhone('0086 13800138000')).toBe('+8613800138000');
    expect(level(score({ family: 'Smith', given: 'Ann', phone: '818-892-2818', country: 'US' }, { family: 'Smith', given: 'Ann', phone: '+1 818 892 2818' }), 'phone')).toBe('same');
  });

  test('address keys: street + number (+ city), Chinese and Latin; another house number is another address', () => {
    expect(addressKey('浙江省杭州市西湖区文一路12号3幢', undefined)).toBe('文一路12');
    expect(addressKey('杭州市西湖区文一路12号', undefined)).toBe('文一路12');
    expect(addressKey('12 Main Street Apt 4', 'Burbank')).toBe(addressKey('12 main st', 'BURBANK'));
    const s = score({ family: 'Lau', given: 'Mei Ling', address: '杭州市西湖区天目山路110号' }, { family: 'Lau', given: 'Mei Ling', address: '杭州市西湖区天目山路76号' });
    expect(level(s, 'address')).not.toMatch(/same|close/);
    // Medina Sentosa / M Sentosa at one address meet on the address key.
    const a = featuresOf({ id: 'a', family: 'Sentosa', given: 'Medina', address: '12 Main Street', city: 'Burbank' });
    const b = featuresOf({ id: 'b', family: 'Sentosa', given: 'M', address: '12 Main St', city: 'Burbank', birthDate: '19800101' });
    expect(blockingKeys(a).filter((k) => blockingKeys(b).includes(k))).toContain(`ad:${a.addressKey}`);
  });
});

describe('names in any script, nicknames, generations, name-only evidence', () => {
  test('Cyrillic, Arabic and Khmer names are transliterated and agree with their Latin spellings', () => {
    expect(normaliseName('Дмитрий')).toBe('dmitriy');
    expect(normaliseName('សុខ')).toBeTruthy();
    const ru = score({ family: 'Иванов', given: 'Дмитрий', birthDate: '19800101' }, { family: 'Ivanov', given: 'Dmitry', birthDate: '19800101' });
    expect([level(ru, 'family'), level(ru, 'given')]).toEqual(['exact', 'same sound']);
    const ar = score({ family: 'حداد', given: 'محمد', birthDate: '19800101' }, { family: 'Haddad', given: 'Mohammed', birthDate: '19800101' });
    expect([level(ar, 'family'), level(ar, 'given')]).toEqual(['same sound', 'same sound']);
    const km = score({ family: 'សុខ', given: 'ដារ៉ា', birthDate: '19800101' }, { family: 'Sok', given: 'Dara', birthDate: '19800101' });
    expect(level(km, 'family')).toMatch(/exact|same sound/);
  });

  test('a nickname is the same given name (and meets it in blocking); generations are two people', () => {
    expect(areAliases('robert', 'bob')).toBe(true);
    expect(areAliases('margaret', 'peggy')).toBe(true);
    expect(areAliases('robert', 'margaret')).toBe(false);
    const bob = score({ family: 'Smith', given: 'Bob', birthDate: '19700101', phone: '2135550101', country: 'US' }, { family: 'Smith', given: 'Robert', birthDate: '19700101', phone: '2135550101', country: 'US' });
    expect([level(bob, 'given'), bob.outcome]).toEqual(['same sound', 'MATCH']);
    const keys = (given: string) => blockingKeys(featuresOf({ id: given, family: 'Smith', given }));
    expect(keys('Bob').some((k) => k.startsWith('fa:') && keys('Robert').includes(k))).toBe(true);
    const sr = { family: 'Smith', given: 'John', birthDate: '19500101', phone: '2135550101', country: 'US', address: '12 Main St', city: 'Burbank' };
    expect(score({ ...sr, suffix: 'sr' }, { ...sr, given: 'John', suffix: 'jr', birthDate: '19780101' })).toMatchObject({ outcome: 'NO_MATCH', rule: 'generation-conflict' });
    expect(score({ ...sr, given: 'John III' }, { ...sr, given: 'John II' }).rule).toBe('generation-conflict');
  });

  test('name-only agreement never auto-links', () => {
    const s = score({ family: 'Smith', given: 'Robert', email: 'bob@example.com' }, { family: 'Smith', given: 'Robert', birthDate: '19700101', phone: '2135550101', country: 'US' });
    expect(s.outcome).not.toBe('MATCH');
  });
});

describe('the production path', () => {
  test('an ADT^A04 read by the pipeline stages and recordOfSource carries every identifier, e-mail, city, postcode, the suffix; the type code is not in the address', () => {
    const text = [
      'MSH|^~\\&|HIS|us|YILIAN|HUB|20260101120000||ADT^A04^ADT_A01|1|P|2.5|||||||UNICODE UTF-8',
      'EVN|A04|20260101120000',
      'PID|1||MRN9^^^us^MR~X1234567^^^RUS^PPN~H1234567801^^^HKMO^XX||Smith^Robert^^Jr||19800101|M|||12 Main Street^^Burbank^CA^91501^USA^H||(818) 892-2818^PRN^PH~^NET^Internet^Bob@Example.com||||||078-05-1120|D1234567^CA',
      'PV1|1|O',
    ].join('\r');
    const parsed = parseStage({ bytes: Buffer.from(text), policy: { defaultCharset: 'UTF-8' } });
    const converted = convertStage(parsed, { memberId: 'us', channelId: 'his', rawId: 1, utcOffsetMinutes: -480 });
    const identified = identifyStage({ ...converted, mappingVersions: [], unmappedCount: 0 }, -480);
    expect(identified.patient!.demographics).toMatchObject({ address: '12 Main Street', city: 'Burbank', postcode: '91501', email: 'Bob@Example.com', phone: '(818) 892-2818' });
    const patient = converted.resources.find((r) => r.resourceType === 'Patient') as SourceRow['patient'];
    const tableWithPermit = new IdentityTable(identityConfigSchema.parse({ memberCountries: { us: 'US' }, systems: [{ authority: 'HKMO', system: 'cn-hkmo-permit' }] }));
    const record = recordOfSource({ member_id: 'us', mrn: 'MRN9', demographics: identified.patient!.demographics as Record<string, string>, patient }, tableWithPermit);
    expect(record).toMatchObject({ email: 'Bob@Example.com', city: 'Burbank', postcode: '91501', suffix: 'jr', country: 'US' });
    // The licence with its issuing state (PID-20's DLN-2, read with the demographics).
    expect(record.identities).toEqual(['cn-hkmo-permit|H12345678', 'dl:CA|D1234567', 'passport:RU|X1234567', 'us-ssn|078051120']);
    expect(featuresOf(record).phone).toBe('+18188922818');
  });

  test('the benchmark\'s HL7 and FHIR forms of one record read the same', () => {
    const world = generateWorldSet({ persons: 200 });
    const t = worldIdentityTable();
    let compared = 0;
    for (const r of world.slice(0, 150)) {
      const member = r.id.split(':')[0]!;
      // (sex arrives as F from PID-8 and as female from FHIR: the same feature)
      expect(featuresOf(recordViaFhir(r, member, 'M1', t))).toEqual(featuresOf(recordViaHl7(r, member, 'M1', t)));
      compared++;
    }
    expect(compared).toBe(150);
    expect(hl7Of(world[0]!, 'cn', 'M1')).toContain('ADT^A04');
  });
});
