/** Code-system syntax: ICD-11 MMS expressions, ICD-10 and the China clinical edition; $lookup / $validate-code. */
import { parseIcd11 } from '../mappings/terminology/icd11';
import { icd10Parent, reduceClinicalEdition } from '../mappings/terminology/icd10';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadIcd11Tabulation, loadLoincTable, lookup, validateCode } from '../mappings/terminology/codeSystems';

import { ICD10, ICD10_CN, ICD11_MMS, LOINC, UCUM } from '../mappings/terminology/systems';
import { activeTerminology } from '../hub/terminology/active';

test.each(['5A11', 'BA00.Z', '5A00.04', '5A0Z', 'CA40.Z', '1A00&XN8P1', 'BC00/BB7Z&XA19J4', 'BA01/BD1Z', 'BD55&XA2K99', 'CA42.Y&XN4NV', 'DA26.00/DB96.0'])('valid ICD-11 %s', (code) => {
  const parsed = parseIcd11(code);
  expect(parsed.ok).toBe(true);
});

test('ICD-11 expressions keep their structure', () => {
  expect(parseIcd11('BC00/BB7Z&XA19J4')).toEqual({ ok: true, clusters: [{ stem: 'BC00', extensions: [] }, { stem: 'BB7Z', extensions: ['XA19J4'] }], codes: ['BC00', 'BB7Z', 'XA19J4'] });
});

test.each([
  ['', /empty/],
  ['XN8P1', /extension code XN8P1/],
  ['XN8P1&1A00', /extension code/],
  ['1A00&', /empty extension/],
  ['1A00&&XN8P1', /empty extension/],
  ['1A00&BA00', /stem code.*"\/"/],
  ['/1A00', /starts with "\/"/],
  ['1A00/', /ends with "\/"/],
  ['1A00//BA00', /empty cluster/],
  ['1A00 &XN8P1', /whitespace/],
  ['1I00', /not an ICD-11 MMS stem/],
  ['1A00.123', /not an ICD-11 MMS stem/],
  ['E11.9', /not an ICD-11 MMS stem/],
  ['1A00&XN8P1&XN8P1', /repeats/],
  ['1A00&X1', /not an ICD-11 extension/],
])('invalid ICD-11 %p is rejected with a reason', (code, reason) => {
  const parsed = parseIcd11(code);
  expect(parsed.ok).toBe(false);
  if (!parsed.ok) expect(parsed.reason).toMatch(reason);
});

test('clinical-edition reduction and ICD-10 parents', () => {
  expect(reduceClinicalEdition('E11.900')).toEqual({ icd10: 'E11.9', refines: false });
  expect(reduceClinicalEdition('J18.900')).toEqual({ icd10: 'J18.9', refines: false });
  expect(reduceClinicalEdition('I10.x00')).toEqual({ icd10: 'I10', refines: false });
  expect(reduceClinicalEdition('I10.x00x002')).toEqual({ icd10: 'I10', refines: true });
  expect(reduceClinicalEdition('J18.901')).toEqual({ icd10: 'J18.9', refines: true });
  expect(reduceClinicalEdition('I10.X00')).toEqual({ icd10: 'I10', refines: false });
  expect(reduceClinicalEdition('10.x00')).toBeUndefined();
  expect(icd10Parent('E11.9')).toBe('E11');
  expect(icd10Parent('E11')).toBeUndefined();
});

test('$lookup and $validate-code', () => {
  const t = activeTerminology();
  const hb = lookup(t, LOINC, '718-7');
  expect(hb.parameter).toContainEqual({ name: 'display', valueString: 'Hemoglobin [Mass/volume] in Blood' });
  expect(hb.parameter).toContainEqual({ name: 'designation', part: [{ name: 'language', valueCode: 'zh' }, { name: 'value', valueString: '血红蛋白' }] });
  expect(lookup(t, ICD10_CN, 'I10.x00x002').parameter).toContainEqual({ name: 'property', part: [{ name: 'code', valueCode: 'parent' }, { name: 'value', valueCode: 'I10' }] });
  expect(() => lookup(t, LOINC, '99999-9')).toThrow(/not in the LOINC subset/);
  const result = (p: ReturnType<typeof validateCode>) => p.parameter.find((x) => x.name === 'result')!.valueBoolean;
  expect(result(validateCode(t, ICD11_MMS, '1A00&XN8P1'))).toBe(true);
  const bad = validateCode(t, ICD11_MMS, 'XN8P1&1A00');
  expect(result(bad)).toBe(false);
  expect(bad.parameter.find((x) => x.name === 'message')!.valueString).toMatch(/extension code/);
  expect(result(validateCode(t, UCUM, 'mmol/L'))).toBe(true);
  expect(result(validateCode(t, UCUM, 'μmol/L'))).toBe(false);
  expect(result(validateCode(t, ICD10, 'E11.9'))).toBe(true);
  expect(result(validateCode(t, ICD10, 'E11.900'))).toBe(false);
  expect(result(validateCode(t, LOINC, '718-7', '血红蛋白'))).toBe(true);
  expect(result(validateCode(t, LOINC, '718-7', 'Glucose'))).toBe(false);
  expect(result(validateCode(t, 'urn:unknown', 'x'))).toBe(false);
});

test('a site\'s release files: the LOINC table and the ICD-11 tabulation (English and Chinese titles, existence)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'release-'));
  writeFileSync(path.join(dir, 'Loinc.csv'), '"LOINC_NUM","COMPONENT","LONG_COMMON_NAME"\n"2339-0","Glucose","Glucose [Mass/volume] in Blood"\n"1-8","Acyclovir","Acyclovir [Susceptibility], ""quoted"""\n');
  expect(loadLoincTable(path.join(dir, 'Loinc.csv'))).toBe(2);
  const t = activeTerminology();
  expect(lookup(t, LOINC, '2339-0').parameter).toContainEqual({ name: 'display', valueString: 'Glucose [Mass/volume] in Blood' });
  expect(lookup(t, LOINC, '1-8').parameter).toContainEqual({ name: 'display', valueString: 'Acyclovir [Susceptibility], "quoted"' });
  expect(lookup(t, LOINC, '718-7').parameter).toContainEqual({ name: 'display', valueString: 'Hemoglobin [Mass/volume] in Blood' });
  writeFileSync(path.join(dir, 'mms-en.txt'), 'Foundation URI\tLinearization URI\tCode\tBlockId\tTitle\n\t\t5A11\t\t- - Type 2 diabetes mellitus\n\t\t1A00\t\tCholera\n\t\tXN8P1\t\tVibrio cholerae\n');
  writeFileSync(path.join(dir, 'mms-zh.txt'), 'Foundation URI\tLinearization URI\tCode\tBlockId\tTitle\n\t\t5A11\t\t2型糖尿病\n');
  loadIcd11Tabulation(path.join(dir, 'mms-en.txt'), 'en');
  loadIcd11Tabulation(path.join(dir, 'mms-zh.txt'), 'zh');
  const diabetes = lookup(t, ICD11_MMS, '5A11');
  expect(diabetes.parameter).toContainEqual({ name: 'display', valueString: 'Type 2 diabetes mellitus' });
  expect(diabetes.parameter).toContainEqual({ name: 'designation', part: [{ name: 'language', valueCode: 'zh' }, { name: 'value', valueString: '2型糖尿病' }] });
  const result = (p: ReturnType<typeof validateCode>) => p.parameter.find((x) => x.name === 'result')!.valueBoolean;
  expect(result(validateCode(t, ICD11_MMS, '1A00&XN8P1'))).toBe(true);
  const missing = validateCode(t, ICD11_MMS, '1A00&XN8P2');
  expect(result(missing)).toBe(false);
  expect(missing.parameter.find((x) => x.name === 'message')!.valueString).toMatch(/not in the loaded MMS tabulation: extension code XN8P2/);
});
