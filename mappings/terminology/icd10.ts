/**
 * ICD-10 (WHO) codes and China's national clinical edition (国家临床版) codes as *source* codes.
 * A clinical-edition code extends an ICD-10 code (`E11.900`, `J18.900`, `I10.x00`, `I10.x00x002`);
 * it is reduced to the ICD-10 code it refines before lookup, and the original coding is kept by the
 * caller. Codes absent from a map resolve by walking up (`E11.9` → `E11`), and such a match is wider.
 */

/** WHO ICD-10: letter, two digits, optionally a dot and one digit (some tables use a fifth character, e.g. `E10.10` in modifications; accepted). */
const ICD10_CODE = /^[A-Z][0-9]{2}(?:\.[0-9]{1,2})?$/;
/**
 * Clinical edition: the ICD-10 category (`I10`), then `.` + the ICD-10 subcategory digit or `x` when
 * the category has no subdivision, two extension digits, and optionally `x` + three more digits.
 */
const CLINICAL = /^([A-Z][0-9]{2})(?:\.([0-9x])([0-9]{2})(x[0-9]{3})?)?$/;

export function isIcd10Code(code: string): boolean {
  return ICD10_CODE.test(code);
}

export interface ClinicalReduction {
  /** The WHO ICD-10 code this clinical-edition code refines. */
  icd10: string;
  /** True when the clinical code adds detail beyond the ICD-10 code (so a match of the ICD-10 code is wider). */
  refines: boolean;
}

/**
 * `E11.900` → E11.9 (refines: false — the `00` suffix is the ICD-10 category itself), `I10.x00` →
 * I10, `I10.x00x002` → I10 (refines: true), `J18.901` → J18.9 (refines: true). Undefined when the
 * code is not clinical-edition syntax. Case-insensitive on letters, upper-cased on output.
 */
export function reduceClinicalEdition(code: string): ClinicalReduction | undefined {
  const m = CLINICAL.exec(code.trim().replace(/X/g, 'x').replace(/^[a-z]/, (c) => c.toUpperCase()));
  if (!m) return undefined;
  const [, category, sub, ext, more] = m;
  if (sub === undefined) return { icd10: category!, refines: false };
  const icd10 = sub === 'x' ? category! : `${category}.${sub}`;
  return { icd10, refines: ext !== '00' || more !== undefined };
}

/** Parent ICD-10 code: `E11.9` → `E11`; `E10.10` → `E10.1`; a category has none. */
export function icd10Parent(code: string): string | undefined {
  const dot = code.indexOf('.');
  if (dot < 0) return undefined;
  return code.length - dot > 2 ? code.slice(0, -1) : code.slice(0, dot);
}
