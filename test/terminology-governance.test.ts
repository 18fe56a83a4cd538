/** Pure parts of governance and suggestions: ConceptMap validation, the WHO release-file loader, equivalences, diffs, ranking. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readWhoTable, validateConceptMap, whoConceptMap, whoEquivalences } from '../mappings/terminology/conceptmap';
import { diffMaps } from '../hub/terminology/versions';
import { applyProposal, type Proposal } from '../hub/terminology/workflow';
import { jsonDiff } from '../hub/terminology/impact';
import { displaySimilarity, normaliseDisplay, suggest } from '../mappings/terminology/suggest';

import { Terminology } from '../mappings/terminology/translator';
import { ICD10, ICD11_MMS, LOINC } from '../mappings/terminology/systems';
import { activeTerminology } from '../hub/terminology/active';

test('ConceptMap validation names the bad field', () => {
  const good = { resourceType: 'ConceptMap', id: 'm', url: 'u', group: [{ source: 's', target: ICD11_MMS, element: [{ code: 'a', target: [{ code: '1A00&XN8P1', equivalence: 'equivalent' }] }] }] };
  expect(validateConceptMap(good)).toMatchObject({ id: 'm', version: '1', status: 'active' });
  expect(() => validateConceptMap({ ...good, resourceType: 'ValueSet' })).toThrow(/resourceType: expected ConceptMap/);
  expect(() => validateConceptMap({ ...good, group: [{ ...good.group[0], element: [{ code: 'a', target: [{ code: 'x', equivalence: 'same' }] }] }] })).toThrow(/group\[0\]\.element\[0\]\.target\[0\]\.equivalence/);
  expect(() => validateConceptMap({ ...good, group: [{ ...good.group[0], element: [{ code: 'a', target: [{ code: '1A00&', equivalence: 'wider' }] }] }] })).toThrow(/invalid ICD-11 code "1A00&": empty extension/);
  expect(() => validateConceptMap({ ...good, group: [{ ...good.group[0], element: [{ code: 'a' }, { code: 'a' }] }] })).toThrow(/appears twice/);
});

test('the loader reads the official tab-separated release file by column name, "No Mapping" as unmatched', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'who-'));
  const file = path.join(dir, '10To11MapToOneCategory.txt');
  writeFileSync(
    file,
    '\uFEFF10ClassKind\t10DepthInKind\ticd10Code\ticd10Chapter\ticd10Title\t11ClassKind\t11DepthInKind\ticd11Id\ticd11Code\ticd11Chapter\ticd11Title\r\n' +
      'category\t1\tE11\t04\tNon-insulin-dependent diabetes mellitus\tcategory\t1\t119724091\t5A11\t05\tType 2 diabetes mellitus\r\n' +
      'category\t2\tU07.1\t22\tCOVID-19\t\t\t\tNo Mapping\t\t\r\n',
  );
  const rows = readWhoTable(file);
  expect(rows).toEqual([
    { icd10: 'E11', icd11: '5A11', icd10Title: 'Non-insulin-dependent diabetes mellitus', icd11Title: 'Type 2 diabetes mellitus' },
    { icd10: 'U07.1', icd11: '', icd10Title: 'COVID-19' },
  ]);
  const map = whoConceptMap(rows, { version: '2', sourceNote: '' });
  const t = new Terminology([map]);
  expect(t.translate(ICD10, 'E11', ICD11_MMS).matches[0]!.concept).toEqual({ system: ICD11_MMS, code: '5A11', display: 'Type 2 diabetes mellitus' });
  expect(t.translate(ICD10, 'U07.1', ICD11_MMS)).toMatchObject({ result: false, matches: [{ equivalence: 'unmatched' }] });
});

test('equivalence read from the table shape: the common ancestor is equivalent, its children wider', () => {
  expect(whoEquivalences([
    { icd10: 'J18', icd11: 'CA40.Z' },
    { icd10: 'J18.0', icd11: 'CA40.Z' },
    { icd10: 'J18.9', icd11: 'CA40.Z' },
    { icd10: 'E10', icd11: '5A10' },
    { icd10: 'I10', icd11: 'BA00.Z' },
    { icd10: 'I15.9', icd11: 'BA00.Z' },
  ])).toEqual(['equivalent', 'wider', 'wider', 'equivalent', 'wider', 'wider']);
});

const proposal = (over: Partial<Proposal>): Proposal =>
  ({ id: 1, concept_map_url: 'https://yilian.example/fhir/ConceptMap/local-x-L', source_system: 'urn:yilian:x:L', source_code: 'HB', source_display: '血红蛋白', target_system: LOINC, target_code: '718-7', target_display: null, equivalence: 'equivalent', state: 'proposed', base_version: null, result_version: null, proposed_by: 'a', proposed_at: new Date(), comment: '', ...over }) as Proposal;

test('applying and retiring a proposal, and the element diff between versions', () => {
  const v1 = applyProposal(undefined, proposal({}));
  expect(v1.group).toEqual([{ source: 'urn:yilian:x:L', target: LOINC, element: [{ code: 'HB', display: '血红蛋白', target: [{ code: '718-7', equivalence: 'equivalent' }] }] }]);
  const v2 = applyProposal(v1, proposal({ source_code: 'GLU', source_display: '葡萄糖', target_code: '14749-6' }));
  const v3 = applyProposal(v2, proposal({ target_code: '4548-4', equivalence: 'inexact' }));
  const v4 = applyProposal(v3, proposal({ target_code: '4548-4', equivalence: 'inexact' }), true);
  expect(diffMaps(v1, v2)).toEqual([expect.objectContaining({ code: 'GLU', change: 'added' })]);
  expect(diffMaps(v2, v3)).toEqual([expect.objectContaining({ code: 'HB', change: 'changed', before: expect.objectContaining({ target: [{ code: '718-7', equivalence: 'equivalent' }] }) })]);
  expect(diffMaps(v3, v4)).toEqual([expect.objectContaining({ code: 'HB', change: 'removed' })]);
  expect(jsonDiff({ a: [1, { b: 2 }] }, { a: [1, { b: 3 }, 4] })).toEqual([
    { path: 'a[1].b', before: 2, after: 3 },
    { path: 'a[2]', after: 4 },
  ]);
});

test('display similarity folds traditional/simplified, case, spacing and punctuation', () => {
  expect(normaliseDisplay('血紅蛋白 (HGB)')).toBe('血红蛋白hgb');
  expect(displaySimilarity('血紅蛋白', '血红蛋白')).toBe(1);
  expect(displaySimilarity('總膽固醇', '总胆固醇')).toBe(1);
  expect(displaySimilarity('Hemoglobin', 'hemoglobin')).toBe(1);
  expect(displaySimilarity('血红蛋白', '葡萄糖')).toBe(0);
});

test('suggestions are ranked, explained, and never applied', () => {
  const t = activeTerminology();
  const before = t.translate('urn:yilian:north:L', 'TC', LOINC);
  const items = suggest(t, { memberId: 'north', system: 'urn:yilian:north:L', code: 'TC', display: '總膽固醇' });
  expect(items[0]).toMatchObject({ system: LOINC, code: '14647-2' });
  expect(items[0]!.reasons.join(' ')).toMatch(/member lead maps "总胆固醇" \(CHOL\)/);
  expect(items.map((i) => i.score)).toEqual([...items.map((i) => i.score)].sort((a, b) => b - a));
  expect(t.translate('urn:yilian:north:L', 'TC', LOINC)).toBe(before);
  const structural = suggest(t, { memberId: 'north', system: 'urn:yilian:north:dx', code: 'E11.900' });
  expect(structural[0]).toMatchObject({ system: ICD11_MMS, code: '5A11', reasons: [expect.stringMatching(/clinical edition E11.900 → ICD-10 E11.9 → WHO map \(wider\)/)] });
});

test('a code with several WHO rows (multiple categories) keeps every target, each narrower', () => {
  const map = whoConceptMap(
    [
      { icd10: 'A01', icd11: '1A07.Z' },
      { icd10: 'A01', icd11: '1A08' },
      { icd10: 'A02', icd11: '1A09' },
    ],
    { version: '1', sourceNote: '' },
  );
  expect(map.group[0]!.element).toEqual([
    { code: 'A01', target: [{ code: '1A07.Z', equivalence: 'narrower' }, { code: '1A08', equivalence: 'narrower' }] },
    { code: 'A02', target: [{ code: '1A09', equivalence: 'equivalent' }] },
  ]);
  expect(validateConceptMap(JSON.parse(JSON.stringify(map)))).toBeTruthy();
});
