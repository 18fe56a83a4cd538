/**
 * FHIR R4 ConceptMap: the types the hub uses, validation of an incoming map (import, proposals), and
 * builders for the base maps — the WHO ICD-10 → ICD-11 table (the seed extract, or the full official
 * release files a site downloads) and the per-LOINC canonical units. Maps are data: they are kept as
 * JSON under mappings/conceptmaps/ and as versions in the governance store, never as code.
 */
import { readFileSync } from 'node:fs';
import { HubError } from '../outcome';
import { parseIcd11 } from './icd11';
import { icd10Parent } from './icd10';
import { CONCEPT_MAP_BASE, ICD10, ICD11_MMS, LOINC, UCUM } from './systems';

export type Equivalence = 'relatedto' | 'equivalent' | 'equal' | 'wider' | 'subsumes' | 'narrower' | 'specializes' | 'inexact' | 'unmatched' | 'disjoint';
export const EQUIVALENCES: readonly Equivalence[] = ['relatedto', 'equivalent', 'equal', 'wider', 'subsumes', 'narrower', 'specializes', 'inexact', 'unmatched', 'disjoint'];

export interface ConceptMapProduct {
  property: string;
  system?: string;
  value: string;
  display?: string;
}

export interface ConceptMapTarget {
  code?: string;
  display?: string;
  equivalence: Equivalence;
  comment?: string;
  product?: ConceptMapProduct[];
}

export interface ConceptMapElement {
  code: string;
  display?: string;
  target?: ConceptMapTarget[];
}

export interface ConceptMapGroup {
  source: string;
  sourceVersion?: string;
  target: string;
  targetVersion?: string;
  element: ConceptMapElement[];
}

export interface ConceptMap {
  resourceType: 'ConceptMap';
  id: string;
  url: string;
  version: string;
  name?: string;
  title?: string;
  status: 'draft' | 'active' | 'retired' | 'unknown';
  date?: string;
  publisher?: string;
  description?: string;
  copyright?: string;
  group: ConceptMapGroup[];
}

/** Product property on a canonical-unit target: the analyte's molar mass in g/mol (mass ↔ substance conversions). */
export const MOLAR_MASS_PROPERTY = 'https://yilian.example/fhir/ConceptMap/property/molar-mass';

const ID = /^[A-Za-z0-9\-.]{1,64}$/;

/** Validate a parsed JSON value as a ConceptMap the hub can load; throws HubError('invalid') with the path. */
export function validateConceptMap(input: unknown, where = 'ConceptMap'): ConceptMap {
  const fail = (path: string, text: string): never => {
    throw new HubError('invalid', `${where}${path}: ${text}`, `${where}${path}`);
  };
  if (typeof input !== 'object' || input === null || Array.isArray(input)) fail('', 'not a JSON object');
  const map = input as Record<string, unknown>;
  if (map.resourceType !== 'ConceptMap') fail('.resourceType', `expected ConceptMap, got ${JSON.stringify(map.resourceType)}`);
  if (typeof map.id !== 'string' || !ID.test(map.id)) fail('.id', 'a FHIR id (letters, digits, - and ., at most 64)');
  if (typeof map.url !== 'string' || map.url === '') fail('.url', 'required');
  if (map.version !== undefined && typeof map.version !== 'string') fail('.version', 'a string');
  if (!Array.isArray(map.group)) fail('.group', 'an array of groups');
  (map.group as unknown[]).forEach((g, gi) => {
    const group = g as Record<string, unknown>;
    const at = `.group[${gi}]`;
    if (typeof group.source !== 'string' || !group.source) fail(`${at}.source`, 'the source code system URI is required');
    if (typeof group.target !== 'string' || !group.target) fail(`${at}.target`, 'the target code system URI is required');
    if (!Array.isArray(group.element)) fail(`${at}.element`, 'an array');
    const seen = new Set<string>();
    (group.element as unknown[]).forEach((e, ei) => {
      const element = e as Record<string, unknown>;
      const eat = `${at}.element[${ei}]`;
      if (typeof element.code !== 'string' || element.code === '') fail(`${eat}.code`, 'required');
      if (seen.has(element.code as string)) fail(`${eat}.code`, `${element.code} appears twice in the group`);
      seen.add(element.code as string);
      ((element.target as unknown[] | undefined) ?? []).forEach((t, ti) => {
        const target = t as Record<string, unknown>;
        const tat = `${eat}.target[${ti}]`;
        if (!EQUIVALENCES.includes(target.equivalence as Equivalence)) fail(`${tat}.equivalence`, `one of ${EQUIVALENCES.join(', ')}`);
        if (target.equivalence !== 'unmatched' && (typeof target.code !== 'string' || target.code === '')) fail(`${tat}.code`, 'required unless equivalence is unmatched');
        if (group.target === ICD11_MMS && typeof target.code === 'string') {
          const parsed = parseIcd11(target.code);
          if (!parsed.ok) fail(`${tat}.code`, `invalid ICD-11 code "${target.code}": ${parsed.reason}`);
        }
      });
    });
  });
  return { status: 'active', version: '1', ...(map as object) } as ConceptMap;
}

export interface WhoRow {
  icd10: string;
  icd11: string;
  icd10Title?: string;
  icd11Title?: string;
}

/**
 * Rows of a WHO ICD-10 → ICD-11 table: the seed CSV (`icd10Code,icd11Code`) or the official release
 * file (`10To11MapToOneCategory.txt`, tab-separated, columns named icd10Code / icd11Code / …Title).
 * Columns are found by header name; an empty ICD-11 code (or "No Mapping") is an unmatched row.
 */
export function readWhoTable(path: string): WhoRow[] {
  const text = readFileSync(path, 'utf8').replace(/^\uFEFF/, '');
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const separator = lines[0]!.includes('\t') ? '\t' : ',';
  const header = lines[0]!.split(separator).map((h) => h.trim().replace(/^"|"$/g, ''));
  const col = (name: string) => header.findIndex((h) => h.toLowerCase() === name.toLowerCase());
  const c10 = col('icd10Code');
  const c11 = col('icd11Code');
  if (c10 < 0 || c11 < 0) throw new HubError('invalid', `${path}: needs columns icd10Code and icd11Code (found ${header.join(', ')})`, path);
  const t10 = col('icd10Title');
  const t11 = col('icd11Title');
  const rows: WhoRow[] = [];
  for (const line of lines.slice(1)) {
    const cells = line.split(separator).map((c) => c.trim().replace(/^"|"$/g, ''));
    const icd10 = cells[c10] ?? '';
    if (!icd10) continue;
    const icd11raw = cells[c11] ?? '';
    rows.push({
      icd10,
      icd11: /^no mapping$/i.test(icd11raw) ? '' : icd11raw,
      ...(t10 >= 0 && cells[t10] ? { icd10Title: cells[t10] } : {}),
      ...(t11 >= 0 && cells[t11] ? { icd11Title: cells[t11] } : {}),
    });
  }
  return rows;
}

/**
 * The equivalence the hub records for each row (the table itself has one target per source and no
 * equivalence): a target reached from one ICD-10 code is `equivalent`; when several ICD-10 codes
 * share a target, the one that is an ancestor of all the others (`J18` among `J18.0…J18.9`) is
 * `equivalent` and the others are `wider` (the target is wider than them); with no such ancestor,
 * all are `wider`. Empty targets are `unmatched`. Codes and targets are never changed.
 */
export function whoEquivalences(rows: WhoRow[]): Equivalence[] {
  const byTarget = new Map<string, string[]>();
  for (const r of rows) if (r.icd11) byTarget.set(r.icd11, [...(byTarget.get(r.icd11) ?? []), r.icd10]);
  const isAncestor = (a: string, b: string) => {
    for (let p = icd10Parent(b); p; p = icd10Parent(p)) if (p === a) return true;
    return false;
  };
  return rows.map((r) => {
    if (!r.icd11) return 'unmatched';
    const sources = byTarget.get(r.icd11)!;
    if (sources.length === 1) return 'equivalent';
    return sources.every((s) => s === r.icd10 || isAncestor(r.icd10, s)) ? 'equivalent' : 'wider';
  });
}

export function whoConceptMap(rows: WhoRow[], options: { version: string; date?: string; sourceNote: string }): ConceptMap {
  const equivalences = whoEquivalences(rows);
  return {
    resourceType: 'ConceptMap',
    id: 'who-icd10-icd11',
    url: `${CONCEPT_MAP_BASE}/who-icd10-icd11`,
    version: options.version,
    name: 'WhoIcd10ToIcd11',
    title: 'WHO ICD-10 → ICD-11 MMS (one category)',
    status: 'active',
    ...(options.date ? { date: options.date } : {}),
    publisher: 'World Health Organization (mapping table); Yilian Hub (ConceptMap form)',
    description: `WHO 10To11MapToOneCategory as a ConceptMap. ${options.sourceNote}`,
    copyright: '© World Health Organization. CC BY-ND 3.0 IGO (https://creativecommons.org/licenses/by-nd/3.0/igo/): attribute the WHO; the mappings are not altered.',
    group: [
      {
        source: ICD10,
        target: ICD11_MMS,
        element: whoElements(rows, equivalences),
      },
    ],
  };
}

/**
 * One element per ICD-10 code. A code with several rows (the WHO `…MapToMultipleCategories` file)
 * gets every target, each `narrower` (the source is split across them); rows are never dropped.
 */
function whoElements(rows: WhoRow[], equivalences: Equivalence[]): ConceptMapElement[] {
  const byCode = new Map<string, ConceptMapElement>();
  rows.forEach((r, i) => {
    let element = byCode.get(r.icd10);
    if (!element) byCode.set(r.icd10, (element = { code: r.icd10, ...(r.icd10Title ? { display: r.icd10Title } : {}), target: [] }));
    const target: ConceptMapTarget = r.icd11 ? { code: r.icd11, ...(r.icd11Title ? { display: r.icd11Title } : {}), equivalence: equivalences[i]! } : { equivalence: 'unmatched' };
    if (!element.target!.some((t) => t.code === target.code)) element.target!.push(target);
  });
  for (const element of byCode.values()) {
    const matched = element.target!.filter((t) => t.code);
    if (matched.length > 1) for (const t of matched) t.equivalence = 'narrower';
    if (matched.length > 0) element.target = matched;
  }
  return [...byCode.values()];
}

export interface LoincConcept {
  code: string;
  display: string;
  zh?: string;
  property: string;
  canonicalUnit: string;
}

/** What the canonical-units map needs of an analyte (analytes.ts): its two codes and its molar mass. */
export interface MolarMassPair {
  id: string;
  mass: string;
  substance: string;
  molarMass: number;
}

/**
 * Per-LOINC canonical UCUM unit, with the analyte's molar mass on BOTH codes of a mass/substance
 * pair (analytes.json is the one source of the molar masses): a result sent in mmol/L under the
 * mass code 2345-7 converts to mg/dL exactly as a mg/dL result under 14749-6 converts to mmol/L.
 * A pair whose codes are not in `concepts` with the properties MCnc / SCnc is a data error (thrown:
 * the build fails rather than ship a molar mass on the wrong kind of code).
 */
export function canonicalUnitsConceptMap(concepts: LoincConcept[], version: string, pairs: readonly MolarMassPair[]): ConceptMap {
  const byCode = new Map(concepts.map((c) => [c.code, c]));
  const molarMass = new Map<string, number>();
  for (const pair of pairs) {
    for (const [code, property] of [
      [pair.mass, 'MCnc'],
      [pair.substance, 'SCnc'],
    ] as const) {
      const concept = byCode.get(code);
      if (!concept) throw new HubError('invalid', `analyte ${pair.id}: LOINC ${code} is not in the LOINC subset`);
      if (concept.property !== property) throw new HubError('invalid', `analyte ${pair.id}: LOINC ${code} has property ${concept.property}, expected ${property}`);
      if (molarMass.has(code)) throw new HubError('invalid', `analyte ${pair.id}: LOINC ${code} is in two pairs`);
      molarMass.set(code, pair.molarMass);
    }
  }
  return {
    resourceType: 'ConceptMap',
    id: 'loinc-canonical-units',
    url: `${CONCEPT_MAP_BASE}/loinc-canonical-units`,
    version,
    name: 'LoincCanonicalUnits',
    title: 'Canonical UCUM unit per LOINC test',
    status: 'active',
    publisher: 'Yilian Hub data-governance committee',
    description:
      'For each LOINC test the unit results are stored in. A result in another commensurable unit is converted (value and reference range), the original kept; a molar-mass product (on both codes of a mass/substance pair, from the analyte table mappings/terminology/data/analytes.json) allows mass ↔ substance concentration.',
    copyright: 'This material contains content from LOINC (http://loinc.org), copyright Regenstrief Institute, Inc., available at no cost under http://loinc.org/license.',
    group: [
      {
        source: LOINC,
        target: UCUM,
        element: concepts.map((c) => {
          const mm = molarMass.get(c.code);
          return {
            code: c.code,
            display: c.display,
            target: [{ code: c.canonicalUnit, equivalence: 'relatedto' as const, ...(mm ? { product: [{ property: MOLAR_MASS_PROPERTY, value: String(mm) }] } : {}) }],
          };
        }),
      },
    ],
  };
}
