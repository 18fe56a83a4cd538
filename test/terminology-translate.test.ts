/** $translate over the shipped ConceptMaps, checked against the WHO seed table itself. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { readConceptMapDir, shippedConceptMapDir, terminologyDataDir } from '../mappings/terminology/shipped';
import { Terminology } from '../mappings/terminology/translator';
import { readTranslateRequest, translateRequest, translationParameters } from '../mappings/terminology/operations';
import { ICD10, ICD10_CN, ICD11_MMS, LOINC, UCUM } from '../mappings/terminology/systems';
import { SHARED_DATA } from './support/hub';

const terminology = new Terminology(readConceptMapDir(shippedConceptMapDir()));
const WHO = `${SHARED_DATA}/terminology/icd10-to-icd11-one-category.E-I-J-K.csv`;
const seedRows = readFileSync(WHO, 'utf8')
  .trim()
  .split(/\r?\n/)
  .slice(1)
  .map((line) => line.split(',') as [string, string]);

test('the shipped extract is the seed table unaltered', () => {
  expect(readFileSync(path.join(terminologyDataDir(), 'who', 'icd10-to-icd11-one-category.E-I-J-K.csv'), 'utf8')).toBe(readFileSync(WHO, 'utf8'));
  expect(seedRows).toHaveLength(1178);
});

test('every row of the seed extract: $translate returns exactly the table target', () => {
  for (const [icd10, icd11] of seedRows) {
    const t = terminology.translate(ICD10, icd10, ICD11_MMS);
    expect({ icd10, result: t.result, targets: t.matches.map((m) => m.concept?.code) }).toEqual({ icd10, result: true, targets: [icd11] });
    expect(t.matches[0]!.source).toBe('https://yilian.example/fhir/ConceptMap/who-icd10-icd11|1');
    expect(['equivalent', 'wider']).toContain(t.matches[0]!.equivalence);
  }
});

test('postcoordinated targets are kept whole', () => {
  expect(terminology.translate(ICD10, 'I08.0', ICD11_MMS).matches[0]!.concept!.code).toBe('BC00/BB7Z&XA19J4');
});

test('a 4-character code absent from the table walks up to its parent, marked wider', () => {
  expect(seedRows.find(([c]) => c === 'E11.9')).toBeUndefined();
  const t = terminology.translate(ICD10, 'E11.9', ICD11_MMS);
  expect(t.result).toBe(true);
  expect(t.matches).toEqual([expect.objectContaining({ equivalence: 'wider', concept: { system: ICD11_MMS, code: '5A11' } })]);
  expect(t.message).toMatch(/parent E11/);
  // cached: the same frozen object the second time
  expect(terminology.translate(ICD10, 'E11.9', ICD11_MMS)).toBe(t);
});

test('clinical-edition codes resolve through their ICD-10 code and translate', () => {
  const e11 = terminology.translate(ICD10_CN, 'E11.900', ICD11_MMS);
  expect(e11.matches.map((m) => [m.concept!.code, m.equivalence])).toEqual([['5A11', 'wider']]);
  const j18 = terminology.translate(ICD10_CN, 'J18.900', ICD11_MMS);
  expect(j18.matches.map((m) => m.concept!.code)).toEqual(['CA40.Z']);
  // J18.900 is J18.9 itself: the table's own equivalence is kept
  expect(j18.matches[0]!.equivalence).toBe(terminology.translate(ICD10, 'J18.9', ICD11_MMS).matches[0]!.equivalence);
  const i10 = terminology.translate(ICD10_CN, 'I10.x00', ICD11_MMS);
  expect(i10.matches.map((m) => m.concept!.code)).toEqual(['BA00.Z']);
  const i10detail = terminology.translate(ICD10_CN, 'I10.x00x002', ICD11_MMS);
  expect(i10detail.matches.map((m) => [m.concept!.code, m.equivalence])).toEqual([['BA00.Z', 'wider']]);
  expect(terminology.translate(ICD10_CN, 'not-a-code', ICD11_MMS).result).toBe(false);
  expect(terminology.translate(ICD10, 'Z99.9', ICD11_MMS).result).toBe(false);
});

test('local lab codes translate per member; another member\'s code system does not', () => {
  expect(terminology.translate('urn:yilian:lead:L', 'HGB', LOINC).matches[0]!.concept).toMatchObject({ system: LOINC, code: '718-7' });
  expect(terminology.translate('urn:yilian:community:L', 'HGB', LOINC).result).toBe(false);
  expect(terminology.canonicalUnit('14749-6')).toMatchObject({ unit: 'mmol/L', molarMass: 180.156 });
  expect(terminology.translate(LOINC, '718-7', UCUM).matches[0]!.concept!.code).toBe('g/L');
});

test('$translate input (GET query, POST Parameters) and R4 output', () => {
  const get = readTranslateRequest({ query: { system: ICD10, code: 'E11.9', targetsystem: ICD11_MMS } });
  const post = readTranslateRequest({ body: { resourceType: 'Parameters', parameter: [{ name: 'coding', valueCoding: { system: ICD10, code: 'E11.9' } }, { name: 'targetsystem', valueUri: ICD11_MMS }] } });
  expect(post).toEqual(get);
  const out = translationParameters(translateRequest(terminology, get));
  expect(out.parameter[0]).toEqual({ name: 'result', valueBoolean: true });
  const match = out.parameter.find((p) => p.name === 'match')!;
  expect(match.part).toEqual([
    { name: 'equivalence', valueCode: 'wider' },
    { name: 'concept', valueCoding: { system: ICD11_MMS, code: '5A11' } },
    { name: 'source', valueUri: 'https://yilian.example/fhir/ConceptMap/who-icd10-icd11|1' },
  ]);
  expect(() => readTranslateRequest({ query: { system: ICD10 } })).toThrow(/code/);
  expect(() => readTranslateRequest({ query: { code: 'E11' } })).toThrow(/system/);
});

test('reverse (R4): the source codes that map to a target, relation read from the other side', () => {
  // J18.0…J18.9 are wider-mapped into CA40.x targets; take one target shared by several rows
  const target = seedRows.find(([c]) => c === 'E11')![1];
  const sources = seedRows.filter(([, t]) => t === target).map(([c]) => c);
  const r = terminology.reverse(ICD11_MMS, target, ICD10);
  expect(r.result).toBe(true);
  expect(r.matches.map((m) => m.concept!.code).sort()).toEqual(sources.sort());
  for (const m of r.matches) {
    const forward = terminology.translate(ICD10, m.concept!.code, ICD11_MMS).matches[0]!;
    expect(m.equivalence).toBe(forward.equivalence === 'wider' ? 'narrower' : forward.equivalence);
    expect(m.source).toBe(forward.source);
    expect(m.concept!.system).toBe(ICD10);
  }
  // over the operation: GET reverse=true; targetsystem names the system of the answers
  const request = readTranslateRequest({ query: { system: LOINC, code: '718-7', targetsystem: 'urn:yilian:lead:L', reverse: 'true' } });
  const out = translationParameters(translateRequest(terminology, request));
  expect(out.parameter.filter((p) => p.name === 'match').map((p) => p.part!.find((x) => x.name === 'concept')!.valueCoding)).toEqual([{ system: 'urn:yilian:lead:L', code: 'HGB', display: '血红蛋白' }]);
  expect(terminology.reverse(ICD11_MMS, 'XX99', ICD10).result).toBe(false);
  expect(() => readTranslateRequest({ query: { system: LOINC, code: 'x', reverse: 'maybe' } })).toThrow(/reverse/);
});

test('equivalence inversion: wider ↔ narrower, subsumes ↔ specializes, the rest symmetric', () => {
  const { invertEquivalence } = jest.requireActual('../mappings/terminology/translator') as typeof import('../mappings/terminology/translator');
  expect(['wider', 'narrower', 'subsumes', 'specializes', 'equivalent', 'inexact', 'relatedto'].map((e) => invertEquivalence(e as never))).toEqual(['narrower', 'wider', 'specializes', 'subsumes', 'equivalent', 'inexact', 'relatedto']);
});
