/**
 * Analytes measured both as a mass and as a substance concentration (glucose in mg/dL or mmol/L):
 * LOINC gives each its own code (2345-7 / 14749-6), yet a county hospital's mg/dL glucose and the
 * lead hospital's mmol/L glucose are one test on one person. The pair is one recognition item, and
 * a value under either code converts to the other's unit through the analyte's molar mass (UCUM
 * through ucum-lhc, ucum.ts). The table, with the source of every molar mass, is shipped data
 * (data/analytes.json, with its notice); analytes.test.ts recomputes each molar mass from its formula.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { terminologyDataDir } from './shipped';

export interface Analyte {
  /** Stable id of the recognition item (`glucose`). */
  id: string;
  name: string;
  zh: string;
  /** LOINC code of the mass concentration (property MCnc). */
  mass: string;
  /** LOINC code of the substance concentration (property SCnc). */
  substance: string;
  formula: string;
  /** g/mol. */
  molarMass: number;
  source: string;
}

let table: { analytes: Analyte[]; byCode: Map<string, Analyte> } | undefined;

function load(): NonNullable<typeof table> {
  if (!table) {
    const analytes = (JSON.parse(readFileSync(path.join(terminologyDataDir(), 'analytes.json'), 'utf8')) as { analytes: Analyte[] }).analytes;
    const byCode = new Map<string, Analyte>();
    for (const a of analytes) {
      byCode.set(a.mass, a);
      byCode.set(a.substance, a);
    }
    table = { analytes, byCode };
  }
  return table;
}

/** Every analyte of the shipped table. */
export function analytes(): readonly Analyte[] {
  return load().analytes;
}

/** The analyte a LOINC code measures, when it is one of a mass/substance pair. */
export function analyteOf(loinc: string): Analyte | undefined {
  return load().byCode.get(loinc);
}

/**
 * The recognition item of a code: `analyte:<id>` for either code of a pair, else the code itself.
 * Results of one item are one test for the check and the duplicate report.
 */
export function recognitionItem(loinc: string): string {
  const analyte = analyteOf(loinc);
  return analyte ? `analyte:${analyte.id}` : loinc;
}

/** The codes of an item: both codes of a pair, else the code alone. */
export function itemCodes(loinc: string): string[] {
  const analyte = analyteOf(loinc);
  return analyte ? [analyte.mass, analyte.substance] : [loinc];
}

/** Whether a LOINC property is a mass (MCnc) or substance (SCnc) concentration: what a unit must fit. */
export function concentrationKind(property: string | undefined): 'mass' | 'substance' | undefined {
  return property === 'MCnc' ? 'mass' : property === 'SCnc' ? 'substance' : undefined;
}
