/**
 * Analytes in two units (issue 21): the molar mass of each mass/substance pair comes from the
 * analyte table and is on BOTH codes of the shipped canonical-units map, so the map stage converts a
 * result reported under the "wrong" code of its pair (mmol/L under the mass code 2345-7) instead of
 * tagging it unmapped; the check converts a result of the twin code into the asked code's unit.
 * Expected values are hand-computed from the molar masses (e.g. 7.43 mmol/L × 180.156 g/mol / 10 =
 * 133.856 mg/dL), not read back from the code under test.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { analytes } from '../mappings/terminology/analytes';
import { buildBaseMaps } from '../mappings/terminology/build';
import { canonicalUnitsConceptMap, MOLAR_MASS_PROPERTY } from '../mappings/terminology/conceptmap';
import { mapResource } from '../mappings/terminology/mapResource';
import { loincSubset, readConceptMapDir, shippedConceptMapDir, terminologyDataDir } from '../mappings/terminology/shipped';
import { LOINC, MAPPING_STATUS_SYSTEM, ORIGINAL_QUANTITY_URL, UCUM, UNMAPPED_SOURCE_URL } from '../mappings/terminology/systems';
import { Terminology } from '../mappings/terminology/translator';
import { inAskedUnit } from '../hub/recognition/check';

const terminology = new Terminology(readConceptMapDir(shippedConceptMapDir()));

/** An Observation coded directly with LOINC (a member that sends standard codes), value as sent. */
function observation(loinc: string, value: number, unit: string, range?: [number, number]): Record<string, any> {
  return {
    resourceType: 'Observation',
    id: 'o1',
    status: 'final',
    code: { coding: [{ system: LOINC, code: loinc }] },
    valueQuantity: { value, unit },
    ...(range ? { referenceRange: [{ low: { value: range[0] }, high: { value: range[1] }, text: `${range[0]}-${range[1]}` }] } : {}),
  };
}

describe('the molar mass: one source (the analyte table), on both codes of each pair', () => {
  test('the LOINC subset states no molar mass; the shipped canonical-units map has the table one on the mass and the substance code', () => {
    expect(readFileSync(path.join(terminologyDataDir(), 'loinc-subset.json'), 'utf8')).not.toMatch(/molarMass/);
    for (const a of analytes()) {
      expect([a.id, terminology.canonicalUnit(a.mass)?.molarMass, terminology.canonicalUnit(a.substance)?.molarMass]).toEqual([a.id, a.molarMass, a.molarMass]);
    }
    // A code outside every pair gets none: haemoglobin in mmol/L must stay refused.
    expect(terminology.canonicalUnit('718-7')?.molarMass).toBeUndefined();
    const withMolarMass = terminology.maps.get('https://yilian.example/fhir/ConceptMap/loinc-canonical-units')!.group[0]!.element.filter((e) => e.target?.[0]?.product?.some((p) => p.property === MOLAR_MASS_PROPERTY));
    expect(withMolarMass).toHaveLength(analytes().length * 2);
  });

  test('the build refuses a pair whose code is missing or of the wrong property', () => {
    const concepts = loincSubset();
    expect(() => canonicalUnitsConceptMap(concepts, '1', [{ id: 'x', mass: '14749-6', substance: '2345-7', molarMass: 1 }])).toThrow(/14749-6 has property SCnc, expected MCnc/);
    expect(() => canonicalUnitsConceptMap(concepts, '1', [{ id: 'x', mass: '99999-9', substance: '14749-6', molarMass: 1 }])).toThrow(/99999-9 is not in the LOINC subset/);
  });

  test('the shipped ConceptMaps are exactly what the build gives (regenerate with `yilian mappings build`)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-build-'));
    try {
      buildBaseMaps({ outDir: dir });
      const built = readdirSync(dir).sort();
      expect(built).toEqual(readdirSync(shippedConceptMapDir()).filter((f) => f.endsWith('.json')).sort());
      for (const f of built) expect([f, readFileSync(path.join(shippedConceptMapDir(), f), 'utf8')]).toEqual([f, readFileSync(path.join(dir, f), 'utf8')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every LOINC code of the subset has a valid check digit (mod 10), so a mistyped new code is caught', () => {
    const mod10 = (digits: string) => {
      // LOINC's check digit: Luhn over the digits before the hyphen.
      let sum = 0;
      [...digits].reverse().forEach((d, i) => {
        const n = Number(d) * (i % 2 === 0 ? 2 : 1);
        sum += n > 9 ? n - 9 : n;
      });
      return (10 - (sum % 10)) % 10;
    };
    for (const c of loincSubset()) {
      const [body, check] = c.code.split('-');
      expect([c.code, mod10(body!)]).toEqual([c.code, Number(check)]);
    }
    // Sanity of the helper on codes whose check digit is known.
    expect(mod10('2345')).toBe(7);
    expect(mod10('14749')).toBe(6);
  });
});

describe('the map stage converts a result under the other code of its pair', () => {
  const cases: Array<[string, string, number, string, number, string]> = [
    // [what, code, value, unit sent, expected, canonical unit]
    ['glucose mmol/L under the mass code', '2345-7', 7.43, 'mmol/L', 133.856, 'mg/dL'], // 7.43 × 18.0156
    ['glucose mg/dL under the substance code', '14749-6', 108, 'mg/dL', 5.99480, 'mmol/L'], // 108 / 18.0156
    ['creatinine µmol/L under the mass code', '2160-0', 88.4, 'μmol/L', 0.999981, 'mg/dL'], // 88.4 × 0.011312
    ['cholesterol mmol/L under the mass code', '2093-3', 5.2, 'mmol/L', 201.065, 'mg/dL'], // 5.2 × 38.6664
    ['urea nitrogen mmol/L under the mass code', '3094-0', 10, 'mmol/L', 28.014, 'mg/dL'], // 10 × 2.8014
    ['urea nitrogen mg/dL under the substance code', '14937-7', 28, 'mg/dL', 9.99500, 'mmol/L'], // 28 / 2.8014
    ['triglyceride mg/dL under the substance code', '14927-8', 150, 'mg/dL', 1.69405, 'mmol/L'], // 150 / 88.5453
    ['iron µmol/L under the mass code', '2498-4', 20, 'umol/L', 111.69, 'ug/dL'], // 20 × 5.5845
  ];
  test.each(cases)('%s', (_what, code, value, unit, expected, canonical) => {
    const o = observation(code, value, unit, [value, value * 2]);
    const result = mapResource(o, { terminology });
    expect(result.unmapped).toEqual([]);
    expect(o.meta?.tag).toBeUndefined();
    expect(o.valueQuantity.value).toBeCloseTo(expected, 3);
    expect(o.valueQuantity).toMatchObject({ unit: canonical, system: UCUM, code: canonical });
    expect(o.valueQuantity.extension).toEqual([{ url: ORIGINAL_QUANTITY_URL, valueQuantity: { value, unit } }]);
    // The reference range moves with the same factor.
    expect(o.referenceRange[0].low.value).toBeCloseTo(expected, 3);
    expect(o.referenceRange[0].high.value).toBeCloseTo(expected * 2, 2);
    // Re-deriving (reprocess) gives the same resource.
    const again = JSON.parse(JSON.stringify(o));
    mapResource(again, { terminology });
    expect(again).toEqual(o);
  });

  test('a unit no molar mass makes commensurable is still refused and tagged unmapped', () => {
    const o = observation('718-7', 8.4, 'mmol/L');
    mapResource(o, { terminology });
    expect(o.valueQuantity).toEqual({ value: 8.4, unit: 'mmol/L' });
    expect(o.meta.tag).toEqual([expect.objectContaining({ system: MAPPING_STATUS_SYSTEM, code: 'unmapped' })]);
    expect(o.meta.extension).toContainEqual({ url: UNMAPPED_SOURCE_URL, valueCoding: expect.objectContaining({ system: UCUM, code: 'mmol/L' }) });
  });
});

describe('the check shows a result of the twin code in the asked code’s unit', () => {
  test('converted through the molar mass when stored in its own canonical unit; otherwise as stored', () => {
    expect(inAskedUnit({ code: '14749-6', value: 7.43, unit: 'mmol/L' }, '2345-7', terminology)).toEqual({ value: 133.856, unit: 'mg/dL' });
    expect(inAskedUnit({ code: '2345-7', value: 133.856, unit: 'mg/dL' }, '14749-6', terminology).value).toBeCloseTo(7.43, 4);
    expect(inAskedUnit({ code: '2160-0', value: 1, unit: 'mg/dL' }, '14682-9', terminology).value).toBeCloseTo(88.4017, 3);
    // The asked code itself, and a value the map stage could not convert: untouched.
    expect(inAskedUnit({ code: '14749-6', value: 5, unit: 'mmol/L' }, '14749-6', terminology)).toEqual({ value: 5, unit: 'mmol/L' });
    expect(inAskedUnit({ code: '14749-6', value: 5, unit: 'mg' }, '2345-7', terminology)).toEqual({ value: 5, unit: 'mg' });
    expect(inAskedUnit({ code: '14749-6', value: null, unit: null }, '2345-7', terminology)).toEqual({ value: null, unit: null });
  });
});
