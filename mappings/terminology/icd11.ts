/**
 * ICD-11 MMS code syntax: stem codes (`5A11`, `BA00.Z`, `5A00.04`), extension codes (`XN8P1`),
 * and postcoordinated expressions — a stem with extension codes joined by `&` (`1A00&XN8P1`), and
 * stem clusters joined by `/` (`BC00/BB7Z&XA19J4`). Parsing keeps the whole expression; validation
 * says precisely why a string is not one. Existence of a code is checked against the tabulation
 * when one is loaded (mappings/terminology/codeSystems.ts); syntax never needs data.
 */

/**
 * Stem code: chapter character (1–9, or a letter for chapters 10+; never I, O or X), a letter (never
 * I or O, so they cannot be read as digits), a digit, a digit or letter; then up to two more levels
 * after a dot. Residual categories end in Y (other specified) or Z (unspecified).
 */
const STEM = /^[1-9A-HJ-NP-WY-Z][A-HJ-NP-Z][0-9][0-9A-HJ-NP-Z](?:\.[0-9A-HJ-NP-Z]{1,2})?$/;
/** Extension code (chapter X): X, a letter, then 2–4 digits or letters (`XK9K`, `XN8P1`, `XA19J4`). */
const EXTENSION = /^X[A-HJ-NP-Z][0-9A-HJ-NP-Z]{2,4}$/;

export interface Icd11Cluster {
  stem: string;
  extensions: string[];
}

export type Icd11Parse = { ok: true; clusters: Icd11Cluster[]; codes: string[] } | { ok: false; reason: string };

export function isIcd11Stem(code: string): boolean {
  return STEM.test(code);
}

export function isIcd11Extension(code: string): boolean {
  return EXTENSION.test(code);
}

/** Parse an ICD-11 MMS code or postcoordinated expression. */
export function parseIcd11(expression: string): Icd11Parse {
  if (expression === '') return { ok: false, reason: 'empty ICD-11 code' };
  if (expression !== expression.trim()) return { ok: false, reason: 'leading or trailing whitespace' };
  if (/\s/.test(expression)) return { ok: false, reason: 'whitespace inside the expression' };
  const clusters: Icd11Cluster[] = [];
  const parts = expression.split('/');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === '') return { ok: false, reason: i === 0 ? 'expression starts with "/"' : i === parts.length - 1 ? 'expression ends with "/"' : 'empty cluster between "/" and "/"' };
    const [stem, ...extensions] = part.split('&');
    if (stem === '') return { ok: false, reason: `cluster ${i + 1} starts with "&": a stem code must come first` };
    if (isIcd11Extension(stem!)) return { ok: false, reason: `cluster ${i + 1} starts with extension code ${stem}: an extension code cannot stand alone or first` };
    if (!isIcd11Stem(stem!)) return { ok: false, reason: `"${stem}" is not an ICD-11 MMS stem code` };
    for (const ext of extensions) {
      if (ext === '') return { ok: false, reason: `empty extension after "&" in cluster ${i + 1}` };
      if (isIcd11Stem(ext)) return { ok: false, reason: `"${ext}" after "&" is a stem code: stem codes are combined with "/", extension codes with "&"` };
      if (!isIcd11Extension(ext)) return { ok: false, reason: `"${ext}" is not an ICD-11 extension code` };
    }
    if (new Set(extensions).size !== extensions.length) return { ok: false, reason: `an extension code repeats in cluster ${i + 1}` };
    clusters.push({ stem: stem!, extensions });
  }
  return { ok: true, clusters, codes: clusters.flatMap((c) => [c.stem, ...c.extensions]) };
}

/** The parent of a stem code in the MMS hierarchy by syntax (`5A00.04` → `5A00.0` → `5A00`), or undefined. */
export function icd11SyntacticParent(code: string): string | undefined {
  const dot = code.indexOf('.');
  if (dot < 0) return undefined;
  const tail = code.slice(dot + 1);
  return tail.length > 1 ? code.slice(0, -1) : code.slice(0, dot);
}
