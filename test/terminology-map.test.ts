/** Stage "map" on real converted HL7 v2 messages: standard codings added, units converted, originals kept, unmapped flagged. */
import { parseStage } from '../pipeline/stages/parse';
import { convertStage } from '../pipeline/stages/convert';
import { mapStage } from '../pipeline/stages/map';
import { mapResource } from '../mappings/terminology/mapResource';
import { parseConfig } from '../hub/config';
import { localLabMap } from '../mappings/terminology/build';
import { Terminology } from '../mappings/terminology/translator';
import { codingSystemUri } from '../mappings/hl7v2/datatypes';

import { activeTerminology } from '../hub/terminology/active';
import {
  DERIVED_FROM_URL,
  EQUIVALENCE_URL,
  ICD10_CN,
  ICD11_MMS,
  LOINC,
  MAPPED_SOURCE_URL,
  MAP_VERSION_URL,
  ORIGINAL_QUANTITY_URL,
  UCUM,
  UNMAPPED_SOURCE_URL,
} from '../mappings/terminology/systems';

const T = '20261123093000';
function convert(member: string, segments: string[]) {
  const text = [`MSH|^~\\&|LIS|HOSP|YILIAN|HUB|${T}||ORU^R01^ORU_R01|C1|P|2.5|||||CHN|UNICODE UTF-8`, `PID|1||A1^^^HOSP^MR||张^三||19800101|M`, ...segments].join('\r') + '\r';
  const parsed = parseStage({ bytes: Buffer.from(text, 'utf8'), policy: { defaultCharset: 'UTF-8' } });
  return convertStage(parsed, { memberId: member, channelId: 'lis', rawId: 1, utcOffsetMinutes: 480 });
}
const observations = (m: { resources: any[] }) => m.resources.filter((r) => r.resourceType === 'Observation');

test('local lab codes gain LOINC, values and reference ranges move to the canonical unit, originals kept', () => {
  const mapped = mapStage(
    convert('lead', [
      `OBR|1|C1|C1|CHEM^生化^L|||${T}`,
      `OBX|1|NM|HGB^血红蛋白^L||13.5|g/dL|11.5-15.0|N|||F|||${T}`,
      `OBX|2|NM|GLU^葡萄糖^L||100|mg/dL|70-110|N|||F|||${T}`,
      `OBX|3|NM|CREA^肌酐^L||1.0|mg/dL|0.6-1.2|N|||F|||${T}`,
      `OBX|4|NM|XYZ^某项目^L||3|mmol/L||N|||F|||${T}`,
    ]),
  );
  const [hgb, glu, crea, xyz] = observations(mapped);
  expect(hgb.code.coding[0]).toEqual({ system: 'urn:yilian:lead:L', code: 'HGB', display: '血红蛋白' });
  expect(hgb.code.coding[1]).toEqual({
    extension: [
      { url: DERIVED_FROM_URL, valueCanonical: 'https://yilian.example/fhir/ConceptMap/local-lead-L|1' },
      { url: EQUIVALENCE_URL, valueCode: 'equivalent' },
    ],
    system: LOINC,
    code: '718-7',
    display: 'Hemoglobin [Mass/volume] in Blood',
  });
  expect(hgb.valueQuantity).toEqual({ extension: [{ url: ORIGINAL_QUANTITY_URL, valueQuantity: { value: 13.5, unit: 'g/dL' } }], value: 135, unit: 'g/L', system: UCUM, code: 'g/L' });
  expect(hgb.referenceRange[0].low.value).toBe(115);
  expect(hgb.referenceRange[0].high.value).toBe(150);
  expect(hgb.referenceRange[0].text).toBe('11.5-15.0');
  expect(glu.valueQuantity).toMatchObject({ value: 5.55074, code: 'mmol/L' });
  expect(glu.referenceRange[0].low.value).toBeCloseTo(3.8855, 3);
  expect(crea.valueQuantity).toMatchObject({ value: 88.4017, code: 'umol/L' });
  // unmapped: record kept, coding untouched, flagged with the source coding
  expect(xyz.code.coding).toEqual([{ system: 'urn:yilian:lead:L', code: 'XYZ', display: '某项目' }]);
  expect(xyz.valueQuantity).toEqual({ value: 3, unit: 'mmol/L' });
  expect(xyz.meta.tag).toContainEqual(expect.objectContaining({ code: 'unmapped' }));
  expect(xyz.meta.extension).toContainEqual({ url: UNMAPPED_SOURCE_URL, valueCoding: { system: 'urn:yilian:lead:L', code: 'XYZ', display: '某项目' } });
  expect(hgb.meta.extension).toContainEqual({ url: MAP_VERSION_URL, valueCanonical: 'https://yilian.example/fhir/ConceptMap/loinc-canonical-units|1' });
  expect(hgb.meta.extension).toContainEqual({ url: MAPPED_SOURCE_URL, valueCoding: { system: 'urn:yilian:lead:L', code: 'HGB', display: '血红蛋白' } });
  expect(mapped.mappingVersions).toEqual(['https://yilian.example/fhir/ConceptMap/local-lead-L|1', 'https://yilian.example/fhir/ConceptMap/loinc-canonical-units|1']);
  expect(mapped.unmappedCount).toBe(2); // XYZ and the OBR's CHEM panel code
  const provenance = mapped.resources.find((r: any) => r.resourceType === 'Provenance') as any;
  expect(provenance.entity).toContainEqual({ role: 'derivation', what: { identifier: { system: 'urn:ietf:rfc:3986', value: 'https://yilian.example/fhir/ConceptMap/local-lead-L|1' }, display: 'ConceptMap local-lead-L version 1' } });
});

test('an incompatible unit is refused and flagged, the value left as sent', () => {
  const [hgb] = observations(mapStage(convert('lead', [`OBR|1|C1|C1|CBC^血常规^L|||${T}`, `OBX|1|NM|HGB^血红蛋白^L||8.4|mmol/L||N|||F|||${T}`])));
  expect(hgb.code.coding[1].code).toBe('718-7');
  expect(hgb.valueQuantity).toEqual({ value: 8.4, unit: 'mmol/L' });
  expect(hgb.meta.extension).toContainEqual({ url: UNMAPPED_SOURCE_URL, valueCoding: expect.objectContaining({ system: UCUM, code: 'mmol/L' }) });
});

test('diagnoses: ICD-10 and clinical-edition codes (through a member alias) gain ICD-11', () => {
  const text = [`MSH|^~\\&|HIS|HOSP|YILIAN|HUB|${T}||ADT^A08^ADT_A01|C2|P|2.5|||||CHN|UNICODE UTF-8`, `EVN|A08|${T}`, `PID|1||A1^^^HOSP^MR||张^三||19800101|M`, `PV1|1|I`, `DG1|1||E11.900^2型糖尿病^ICD10-CN|||A`, `DG1|2||E11.9^Type 2 diabetes^I10|||A`, `DG1|3||ZZZ^不明^ICD10-CN|||A`].join('\r') + '\r';
  const parsed = parseStage({ bytes: Buffer.from(text, 'utf8'), policy: { defaultCharset: 'UTF-8' } });
  const converted = convertStage(parsed, { memberId: 'county', channelId: 'his', rawId: 2, utcOffsetMinutes: 480 });
  const mapped = mapStage(converted, { member: { id: 'county', codingSystemAliases: { 'ICD10-CN': ICD10_CN } } });
  const [cn, who, bad] = mapped.resources.filter((r: any) => r.resourceType === 'Condition') as any[];
  expect(cn.code.coding[0]).toEqual({ system: ICD10_CN, code: 'E11.900', display: '2型糖尿病' });
  expect(cn.code.coding[1]).toMatchObject({ system: ICD11_MMS, code: '5A11', extension: [expect.anything(), { url: EQUIVALENCE_URL, valueCode: 'wider' }] });
  expect(who.code.coding[1]).toMatchObject({ system: ICD11_MMS, code: '5A11' });
  expect(bad.meta.tag).toContainEqual(expect.objectContaining({ code: 'unmapped' }));
  expect(mapped.mappingVersions).toEqual(['https://yilian.example/fhir/ConceptMap/who-icd10-icd11|1']);
});

test('mapping a resource twice gives the same resource (reprocess is exact)', () => {
  const [, glu] = observations(mapStage(convert('lead', [`OBR|1|C1|C1|CHEM^生化^L|||${T}`, `OBX|1|NM|HGB^血红蛋白^L||13.5|g/dL|11.5-15.0|N|||F|||${T}`, `OBX|2|NM|GLU^葡萄糖^L||100|mg/dL|70-110|N|||F|||${T}`])));
  const once = JSON.parse(JSON.stringify(glu));
  mapResource(glu, { terminology: activeTerminology() });
  expect(glu).toEqual(once);
});

test('member coding-system aliases are configuration: URIs only, absent by default', () => {
  const config = parseConfig({ members: [{ id: 'county', name: 'County', tier: 'secondary', codingSystemAliases: { 'ICD10-CN': ICD10_CN } }, { id: 'east', name: 'East', tier: 'primary' }] });
  expect(config.members[0]!.codingSystemAliases).toEqual({ 'ICD10-CN': ICD10_CN });
  expect(config.members[1]!.codingSystemAliases).toBeUndefined();
  expect(() => parseConfig({ members: [{ id: 'x', name: 'X', tier: 'primary', codingSystemAliases: { 'ICD10-CN': 'clinical edition' } }] })).toThrow(/codingSystemAliases.ICD10-CN: a code system URI/);
  // the v2 reader honours them too when given (codingSystemUri), and knows the ICD10 name
  expect(codingSystemUri('ICD10-CN', 'county', config.members[0]!.codingSystemAliases)).toBe(ICD10_CN);
  expect(codingSystemUri('ICD10', 'county')).toBe('http://hl7.org/fhir/sid/icd-10');
  expect(codingSystemUri('ICD10-CN', 'east')).toBe('urn:yilian:east:ICD10-CN');
  expect(codingSystemUri('', 'east')).toBe('urn:yilian:east:local');
});

test('a FHIR member\'s own code system URL is mapped once a map translates from it', () => {
  const terminology = new Terminology([localLabMap('lead', 'L', [['HGB', '血红蛋白', '718-7']]), { ...localLabMap('south', 'x', [['0102', '血红蛋白', '718-7']]), group: [{ source: 'http://south.example/fhir/CodeSystem/lis', target: LOINC, element: [{ code: '0102', target: [{ code: '718-7', equivalence: 'equivalent' }] }] }] }]);
  const observation: any = { resourceType: 'Observation', id: 'o', code: { coding: [{ system: 'http://south.example/fhir/CodeSystem/lis', code: '0102' }] } };
  const other: any = { resourceType: 'Observation', id: 'p', code: { coding: [{ system: 'http://elsewhere.example/cs', code: '0102' }] } };
  expect(mapResource(observation, { terminology }).mapped).toHaveLength(1);
  expect(observation.code.coding[1]).toMatchObject({ system: LOINC, code: '718-7' });
  const untouched = mapResource(other, { terminology });
  expect(untouched).toMatchObject({ mapped: [], unmapped: [] });
  expect(other.code.coding).toHaveLength(1);
});

test('every coded element in CODED_ELEMENTS is mapped: reasons, allergens, specimens, coded results; unmapped ones are flagged', () => {
  // A real converted message: PV2-3 admit reason (ICD-10), AL1-3 allergen and SPM-4 specimen type
  // (member-local codes), an OBX whose value is a coded local answer.
  const text = [
    `MSH|^~\\&|HIS|HOSP|YILIAN|HUB|${T}||ORU^R01^ORU_R01|C9|P|2.5|||||CHN|UNICODE UTF-8`,
    `PID|1||A1^^^HOSP^MR||张^三||19800101|M`,
    `PV1|1|I`,
    `PV2|||J18.9^Pneumonia^I10`,
    `AL1|1|DA|PEN^青霉素^L`,
    `OBR|1|C9|C9|CULT^培养^L|||${T}`,
    `OBX|1|CWE|HGB^血红蛋白^L||POS^阳性^L||||||F|||${T}`,
    `SPM|1|S1||BLD^全血^L`,
  ].join('\r') + '\r';
  const parsed = parseStage({ bytes: Buffer.from(text, 'utf8'), policy: { defaultCharset: 'UTF-8' } });
  const converted = convertStage(parsed, { memberId: 'lead', channelId: 'lis', rawId: 3, utcOffsetMinutes: 480 });
  const terminology = new Terminology([
    ...activeTerminology().maps.values(),
    { ...localLabMap('lead', 'L', [['HGB', '血红蛋白', '718-7'], ['BLD', '全血', '31208-2']]), id: 'local-lead-L-extra', url: 'https://yilian.example/fhir/ConceptMap/local-lead-L-extra' },
  ]);
  const mapped = mapStage(converted, { terminology });
  const of = (type: string) => mapped.resources.find((r: any) => r.resourceType === type) as any;
  const encounter = of('Encounter');
  expect(encounter.reasonCode[0].coding).toEqual([
    { system: 'http://hl7.org/fhir/sid/icd-10', code: 'J18.9', display: 'Pneumonia' },
    expect.objectContaining({ system: ICD11_MMS, code: 'CA40.Z' }),
  ]);
  expect(encounter.meta.extension).toContainEqual({ url: MAPPED_SOURCE_URL, valueCoding: { system: 'http://hl7.org/fhir/sid/icd-10', code: 'J18.9', display: 'Pneumonia' } });
  // allergen: no map covers PEN → stored as sent, flagged, listed for the worklist
  const allergy = of('AllergyIntolerance');
  expect(allergy.code.coding).toHaveLength(1);
  expect(allergy.meta.tag).toContainEqual(expect.objectContaining({ code: 'unmapped' }));
  expect(allergy.meta.extension).toContainEqual({ url: UNMAPPED_SOURCE_URL, valueCoding: { system: 'urn:yilian:lead:L', code: 'PEN', display: '青霉素' } });
  // specimen type mapped by the member's map; the coded result value is unmapped (no map has POS)
  expect(of('Specimen').type.coding[1]).toMatchObject({ system: LOINC, code: '31208-2' });
  const observation = of('Observation');
  expect(observation.valueCodeableConcept.coding).toHaveLength(1);
  expect(observation.meta.extension).toContainEqual({ url: UNMAPPED_SOURCE_URL, valueCoding: { system: 'urn:yilian:lead:L', code: 'POS', display: '阳性' } });
  // re-deriving is exact on every path
  for (const r of mapped.resources as any[]) {
    const once = JSON.parse(JSON.stringify(r));
    mapResource(r, { terminology });
    expect(r).toEqual(once);
  }
});

test('FHIR resources of other types: vaccine, medication, charge item, report conclusion, component value', () => {
  const terminology = new Terminology([localLabMap('south', 'L', [['X1', 'x', '718-7']])]);
  const local = (code: string) => ({ coding: [{ system: 'urn:yilian:south:L', code }] });
  const resources: any[] = [
    { resourceType: 'Immunization', id: 'i', vaccineCode: local('X1') },
    { resourceType: 'MedicationRequest', id: 'm', medicationCodeableConcept: local('X1'), reasonCode: [local('NOPE')] },
    { resourceType: 'ChargeItem', id: 'c', code: local('X1') },
    { resourceType: 'DiagnosticReport', id: 'd', code: local('X1'), conclusionCode: [local('X1'), local('NOPE2')] },
    { resourceType: 'Observation', id: 'o', code: local('X1'), component: [{ code: local('X1'), valueCodeableConcept: local('X1') }] },
    { resourceType: 'Procedure', id: 'p', code: local('X1'), reasonCode: [local('X1')] },
    { resourceType: 'ServiceRequest', id: 's', code: local('X1'), reasonCode: [local('X1')] },
    { resourceType: 'Patient', id: 'pt', maritalStatus: local('X1') },
  ];
  const results = resources.map((r) => mapResource(r, { terminology }));
  expect(results.map((r) => [r.mapped.length, r.unmapped.length])).toEqual([[1, 0], [1, 1], [1, 0], [2, 1], [3, 0], [2, 0], [2, 0], [0, 0]]);
  expect(resources[0].vaccineCode.coding[1]).toMatchObject({ system: LOINC, code: '718-7' });
  expect(resources[4].component[0].valueCodeableConcept.coding[1]).toMatchObject({ system: LOINC, code: '718-7' });
  // not a governed element: left alone
  expect(resources[7].maritalStatus.coding).toHaveLength(1);
});

test('precedence: the committee map\'s answer is applied before the WHO base map\'s, and both are listed', () => {
  const shipped = [...activeTerminology().maps.values()];
  const committee = {
    resourceType: 'ConceptMap' as const,
    id: 'icd10-icd11-committee',
    url: 'https://yilian.example/fhir/ConceptMap/icd10-icd11-committee',
    version: '3',
    status: 'active' as const,
    group: [{ source: 'http://hl7.org/fhir/sid/icd-10', target: ICD11_MMS, element: [{ code: 'J18.9', target: [{ code: 'CA40.0', equivalence: 'narrower' as const }] }] }],
  };
  // whatever order the maps are given in
  for (const maps of [[...shipped, committee], [committee, ...shipped].reverse()]) {
    const terminology = new Terminology(maps);
    const t = terminology.translate('http://hl7.org/fhir/sid/icd-10', 'J18.9', ICD11_MMS);
    expect(t.matches.map((m) => [m.concept!.code, m.source])).toEqual([
      ['CA40.0', 'https://yilian.example/fhir/ConceptMap/icd10-icd11-committee|3'],
      ['CA40.Z', 'https://yilian.example/fhir/ConceptMap/who-icd10-icd11|1'],
    ]);
    const condition: any = { resourceType: 'Condition', id: 'c', code: { coding: [{ system: 'http://hl7.org/fhir/sid/icd-10', code: 'J18.9' }] } };
    const result = mapResource(condition, { terminology });
    expect(condition.code.coding.slice(1)).toEqual([expect.objectContaining({ code: 'CA40.0', extension: [{ url: DERIVED_FROM_URL, valueCanonical: 'https://yilian.example/fhir/ConceptMap/icd10-icd11-committee|3' }, { url: EQUIVALENCE_URL, valueCode: 'narrower' }] })]);
    expect([...result.versions]).toEqual(['https://yilian.example/fhir/ConceptMap/icd10-icd11-committee|3']);
    expect(condition.meta.extension).toContainEqual({ url: MAP_VERSION_URL, valueCanonical: 'https://yilian.example/fhir/ConceptMap/icd10-icd11-committee|3' });
  }
});
