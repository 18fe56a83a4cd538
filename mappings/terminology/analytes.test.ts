import { analyteOf, analytes, itemCodes, recognitionItem } from './analytes';
import { loincSubset } from './shipped';

/** IUPAC/CIAAW 2021 abridged standard atomic weights, as the table's notice cites them. */
const ATOMIC_WEIGHT: Record<string, number> = { H: 1.008, C: 12.011, N: 14.007, O: 15.999, P: 30.974, Mg: 24.305, Ca: 40.078, Fe: 55.845 };

function molarMassOf(formula: string): number {
  let total = 0;
  for (const [, element, count] of formula.matchAll(/([A-Z][a-z]?)(\d*)/g)) {
    const weight = ATOMIC_WEIGHT[element!];
    if (weight === undefined) throw new Error(`no atomic weight for ${element} in ${formula}`);
    total += weight * (count ? Number(count) : 1);
  }
  return total;
}

describe('the analyte table', () => {
  it('states each molar mass as its formula gives it', () => {
    for (const a of analytes()) expect({ id: a.id, molarMass: a.molarMass }).toEqual({ id: a.id, molarMass: Number(molarMassOf(a.formula).toFixed(3)) });
  });

  it('pairs a mass (MCnc) code with a substance (SCnc) code of the shipped LOINC subset, each code in one pair only', () => {
    const loinc = new Map(loincSubset().map((c) => [c.code, c]));
    const seen = new Set<string>();
    for (const a of analytes()) {
      expect([a.id, loinc.get(a.mass)?.property, loinc.get(a.substance)?.property]).toEqual([a.id, 'MCnc', 'SCnc']);
      for (const code of [a.mass, a.substance]) {
        expect(seen.has(code)).toBe(false);
        seen.add(code);
      }
      expect(a.source).toMatch(/PubChem CID \d+/);
    }
  });

  it('makes both codes of a pair one recognition item, and leaves other codes alone', () => {
    expect(recognitionItem('2345-7')).toBe('analyte:glucose');
    expect(recognitionItem('14749-6')).toBe('analyte:glucose');
    expect(itemCodes('14749-6')).toEqual(['2345-7', '14749-6']);
    expect(recognitionItem('718-7')).toBe('718-7');
    expect(itemCodes('718-7')).toEqual(['718-7']);
    expect(analyteOf('2160-0')?.molarMass).toBe(113.12);
  });
});
