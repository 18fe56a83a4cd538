/**
 * ICD-11 MMS tabulation: the loader reads the WHO SimpleTabulation layout named in the hub config.
 * The fixture (test/terminology-fixtures/) is a HAND-MADE file in the official column layout — a
 * dozen rows, placeholder URIs, not WHO data.
 */
import path from 'node:path';
import { parseConfig } from '../hub/config';
import { configuredWhoMapFiles, lookup, useSiteTerminologyFiles, validateCode, loadIcd11Tabulation } from '../mappings/terminology/codeSystems';

import { ICD11_MMS } from '../mappings/terminology/systems';
import { activeTerminology } from '../hub/terminology/active';

const fixtures = path.join(__dirname, 'terminology-fixtures');
const t = activeTerminology();
const result = (p: ReturnType<typeof validateCode>) => p.parameter.find((x) => x.name === 'result')!.valueBoolean;
const message = (p: ReturnType<typeof validateCode>) => p.parameter.find((x) => x.name === 'message')?.valueString;

test('without a tabulation, ICD-11 is checked for syntax only and $validate-code says so', () => {
  useSiteTerminologyFiles(undefined, {});
  const known = validateCode(t, ICD11_MMS, '5A11');
  expect(result(known)).toBe(true);
  expect(message(known)).toMatch(/syntax checked only: no MMS tabulation is loaded.*a loaded map uses this code/);
  const invented = validateCode(t, ICD11_MMS, '5A1Y');
  expect(result(invented)).toBe(true);
  expect(message(invented)).toMatch(/syntax checked only/);
  expect(lookup(t, ICD11_MMS, '5A11').parameter.find((p) => p.name === 'display')).toBeUndefined();
});

test('the release files are named in the hub config; environment variables override', () => {
  const config = parseConfig({
    terminology: {
      whoMapOneCategory: '/release/10To11MapToOneCategory.txt',
      whoMapMultipleCategories: '/release/10To11MapToMultipleCategories.txt',
      icd11Tabulation: { en: path.join(fixtures, 'SimpleTabulation-ICD-11-MMS-en.txt'), zh: path.join(fixtures, 'SimpleTabulation-ICD-11-MMS-zh.txt') },
      loincTable: '/release/Loinc.csv',
    },
  });
  expect(() => parseConfig({ terminology: { icd11Tabulation: { fr: 'x' } } })).toThrow(/terminology.icd11Tabulation/);
  const files = useSiteTerminologyFiles(config.terminology, { YILIAN_LOINC_TABLE: '/elsewhere/Loinc.csv' });
  expect(files.loincTable).toBe('/elsewhere/Loinc.csv');
  expect(configuredWhoMapFiles()).toEqual({ oneCategory: '/release/10To11MapToOneCategory.txt', multipleCategories: '/release/10To11MapToMultipleCategories.txt' });
  // the LOINC path is not real: loading fails loudly, naming the file
  expect(() => useSiteTerminologyFiles(config.terminology, { YILIAN_LOINC_TABLE: '/elsewhere/Loinc.csv' }, true)).toThrow(/Loinc.csv/);
  // with only the tabulation configured, it loads
  useSiteTerminologyFiles({ icd11Tabulation: config.terminology!.icd11Tabulation }, {}, true);
});

test('titles in English and Chinese, depth markers removed; chapters and blocks are not codes', () => {
  const diabetes = lookup(t, ICD11_MMS, '5A11');
  expect(diabetes.parameter).toContainEqual({ name: 'display', valueString: 'Type 2 diabetes mellitus' });
  expect(diabetes.parameter).toContainEqual({ name: 'designation', part: [{ name: 'language', valueCode: 'zh' }, { name: 'value', valueString: '2型糖尿病' }] });
  expect(diabetes.parameter).toContainEqual({ name: 'property', part: [{ name: 'code', valueCode: 'chapter' }, { name: 'value', valueString: '05' }] });
  expect(diabetes.parameter).toContainEqual({ name: 'property', part: [{ name: 'code', valueCode: 'leaf' }, { name: 'value', valueBoolean: true }] });
  expect(lookup(t, ICD11_MMS, 'BA00.Z').parameter).toContainEqual({ name: 'property', part: [{ name: 'code', valueCode: 'residual' }, { name: 'value', valueBoolean: true }] });
  // the extension code has no Chinese row: English display, no designation
  const ext = lookup(t, ICD11_MMS, 'XN8P1');
  expect(ext.parameter).toContainEqual({ name: 'display', valueString: 'Vibrio cholerae' });
  expect(ext.parameter.some((p) => p.name === 'designation')).toBe(false);
  const ok = validateCode(t, ICD11_MMS, '5A11');
  expect([result(ok), message(ok)]).toEqual([true, undefined]);
  expect(result(validateCode(t, ICD11_MMS, '5A11', '2型糖尿病'))).toBe(true);
  expect(result(validateCode(t, ICD11_MMS, '5A11', 'Type 1 diabetes mellitus'))).toBe(false);
});

test('existence of stem and extension codes, each named; postcoordinated titles from the parts', () => {
  const combined = lookup(t, ICD11_MMS, '1A00&XN8P1');
  expect(combined.parameter).toContainEqual({ name: 'display', valueString: 'Cholera & Vibrio cholerae' });
  const invented = validateCode(t, ICD11_MMS, '5A1Y');
  expect([result(invented), message(invented)]).toEqual([false, 'not in the loaded MMS tabulation: stem code 5A1Y']);
  const badExt = validateCode(t, ICD11_MMS, '1A00&XN8P2');
  expect([result(badExt), message(badExt)]).toEqual([false, 'not in the loaded MMS tabulation: extension code XN8P2']);
  const badCluster = validateCode(t, ICD11_MMS, 'CA40.Z/BB7Z&XA19J4');
  expect(message(badCluster)).toBe('not in the loaded MMS tabulation: stem code BB7Z, extension code XA19J4');
  // syntax is still checked first
  expect(message(validateCode(t, ICD11_MMS, 'XN8P1&1A00'))).toMatch(/extension code/);
  expect(() => lookup(t, ICD11_MMS, '5A1Y')).toThrow(/stem code 5A1Y/);
});

test('the spreadsheet form is refused with the way out; a file without Code and Title is refused', () => {
  expect(() => loadIcd11Tabulation('/x/SimpleTabulation-ICD-11-MMS-en.xlsx', 'en')).toThrow(/save it as tab-separated text/);
  expect(() => loadIcd11Tabulation(path.join(fixtures, 'README.md'), 'en')).toThrow(/needs Code and Title columns/);
});
