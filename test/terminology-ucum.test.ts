/** UCUM: unit strings as LIS systems send them, conversions against hand-checked values, refusals. */
import { resolveUnit, roundConverted, unitConversion } from '../mappings/terminology/ucum';

function convert(value: number, from: string, to: string, molarMass?: number): number {
  const c = unitConversion(from, to, molarMass);
  if (!c.ok) throw new Error(c.reason);
  return roundConverted(c.convert(value));
}

test('hand-checked conversions', () => {
  // glucose 100 mg/dL = 1 g/L; / 180.156 g/mol = 5.5507 mmol/L (clinical factor 0.0555)
  expect(convert(100, 'mg/dL', 'mmol/L', 180.156)).toBeCloseTo(5.5507, 4);
  // creatinine 1 mg/dL = 0.01 g/L; / 113.12 g/mol = 88.40 µmol/L (clinical factor 88.4)
  expect(convert(1, 'mg/dL', 'umol/L', 113.12)).toBeCloseTo(88.4017, 3);
  // cholesterol 200 mg/dL = 2 g/L; / 386.65 g/mol = 5.1726 mmol/L (clinical factor 0.02586)
  expect(convert(200, 'mg/dL', 'mmol/L', 386.65)).toBeCloseTo(5.1726, 4);
  // and back: 5.2 mmol/L cholesterol = 201.06 mg/dL
  expect(convert(5.2, 'mmol/L', 'mg/dL', 386.65)).toBeCloseTo(201.058, 2);
  // haemoglobin 13.5 g/dL = 135 g/L (no molar mass needed)
  expect(convert(13.5, 'g/dL', 'g/L')).toBe(135);
  expect(convert(6.2, '10*9/L', '10*9/L')).toBe(6.2);
  expect(convert(6200, '/uL', '10*9/L')).toBe(6.2);
});

test('incompatible units are refused, not guessed', () => {
  const noMolarMass = unitConversion('mg/dL', 'mmol/L');
  expect(noMolarMass.ok).toBe(false);
  const wrongKind = unitConversion('g/L', '10*9/L');
  expect(wrongKind.ok).toBe(false);
  if (!wrongKind.ok) expect(wrongKind.reason).toMatch(/cannot convert g\/L to 10\*9\/L/);
  expect(unitConversion('%', 'g/L').ok).toBe(false);
});

test('unit strings as sent resolve to UCUM codes', () => {
  expect(resolveUnit('g/L')).toEqual({ ok: true, code: 'g/L' });
  expect(resolveUnit('μmol/L')).toEqual({ ok: true, code: 'umol/L' });
  expect(resolveUnit('µmol/L')).toEqual({ ok: true, code: 'umol/L' });
  expect(resolveUnit('10^9/L')).toEqual({ ok: true, code: '10*9/L' });
  expect(resolveUnit('×10^12/L')).toEqual({ ok: true, code: '10*12/L' });
  expect(resolveUnit('g/dl')).toEqual({ ok: true, code: 'g/dL' });
  expect(resolveUnit('mmol/l')).toEqual({ ok: true, code: 'mmol/L' });
  expect(resolveUnit('克/升').ok).toBe(false);
  expect(resolveUnit('').ok).toBe(false);
});
