/**
 * The one code-translation entry point ($translate semantics, FHIR R4) used in-process by the
 * pipeline and behind the HTTP operation. A Terminology is compiled from a set of ConceptMap
 * versions into nested maps (source system → target system → code → result); results are frozen
 * and shared, so a lookup allocates nothing. Hierarchical sources are resolved on a miss and the
 * answer cached: an ICD-10 code absent from the map walks up to its parent (`E11.9` → `E11`, the
 * match marked wider), a clinical-edition code is reduced to its ICD-10 code first (`I10.x00` →
 * `I10`). It never guesses across code systems and never invents a target a map does not hold.
 */
import type { ConceptMap, ConceptMapProduct, Equivalence } from './conceptmap';
import { MOLAR_MASS_PROPERTY } from './conceptmap';
import { icd10Parent, isIcd10Code, reduceClinicalEdition } from './icd10';
import { ICD10, ICD10_CN, LOINC, UCUM, mapPrecedence } from './systems';

export interface TranslatedConcept {
  readonly system: string;
  readonly code: string;
  readonly display?: string;
}

export interface TranslationMatch {
  readonly equivalence: Equivalence;
  /** Absent for an `unmatched` row (the map says explicitly that nothing fits). */
  readonly concept?: TranslatedConcept;
  /** The ConceptMap that made the match: `url|version`. */
  readonly source: string;
  readonly product?: readonly ConceptMapProduct[];
}

export interface Translation {
  /** True when at least one match is not `unmatched` / `disjoint` (R4 $translate `result`). */
  readonly result: boolean;
  /** In map precedence order (systems.ts `mapPrecedence`): the committee's maps before the WHO base map. */
  readonly matches: readonly TranslationMatch[];
  readonly message?: string;
}

export interface CanonicalUnit {
  readonly unit: string;
  readonly molarMass?: number;
  readonly source: string;
}

const NO_MATCH: Translation = Object.freeze({ result: false, matches: Object.freeze([]) as readonly TranslationMatch[], message: 'no mapping for this code' });
const MAX_DERIVED = 200_000;
const NO_REVERSE: Translation = Object.freeze({ result: false, matches: Object.freeze([]) as readonly TranslationMatch[], message: 'no map has this code as a target' });

type CodeIndex = Map<string, Translation>;

export class Terminology {
  /** source → target → code → translation, exactly as the maps say. */
  private readonly index = new Map<string, Map<string, CodeIndex>>();
  /** source → code → translation over every target system. */
  private readonly anyTarget = new Map<string, CodeIndex>();
  /** Results derived on a miss (walk up, clinical edition), cached with the same nesting. */
  private readonly derived = new Map<string, Map<string, CodeIndex>>();
  private derivedCount = 0;
  /** LOINC code → canonical UCUM unit (from LOINC → UCUM maps). */
  readonly canonicalUnits = new Map<string, CanonicalUnit>();
  /** Every map loaded, by url. */
  readonly maps = new Map<string, ConceptMap>();
  /** Displays of target codes seen in maps: system → code → display (for $lookup and suggestions). */
  readonly targetDisplays = new Map<string, Map<string, string>>();

  constructor(conceptMaps: readonly ConceptMap[]) {
    const staging = new Map<string, Map<string, Map<string, TranslationMatch[]>>>();
    // Matches are listed in map precedence order, whatever order the maps came in.
    const ordered = [...conceptMaps].sort((a, b) => mapPrecedence(a.url) - mapPrecedence(b.url) || (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
    for (const map of ordered) {
      this.maps.set(map.url, map);
      const source = `${map.url}|${map.version}`;
      for (const group of map.group) {
        let byTarget = staging.get(group.source);
        if (!byTarget) staging.set(group.source, (byTarget = new Map()));
        let byCode = byTarget.get(group.target);
        if (!byCode) byTarget.set(group.target, (byCode = new Map()));
        for (const element of group.element) {
          const list = byCode.get(element.code) ?? [];
          for (const target of element.target ?? []) {
            list.push(
              Object.freeze({
                equivalence: target.equivalence,
                ...(target.code ? { concept: Object.freeze({ system: group.target, code: target.code, ...(target.display ? { display: target.display } : {}) }) } : {}),
                source,
                ...(target.product?.length ? { product: Object.freeze(target.product.map((p) => Object.freeze({ ...p }))) } : {}),
              }),
            );
            if (target.code && target.display) {
              let displays = this.targetDisplays.get(group.target);
              if (!displays) this.targetDisplays.set(group.target, (displays = new Map()));
              displays.set(target.code, target.display);
            }
            if (group.source === LOINC && group.target === UCUM && target.code) {
              const mm = target.product?.find((p) => p.property === MOLAR_MASS_PROPERTY);
              this.canonicalUnits.set(element.code, Object.freeze({ unit: target.code, ...(mm ? { molarMass: Number(mm.value) } : {}), source }));
            }
          }
          byCode.set(element.code, list);
        }
      }
    }
    for (const [sourceSystem, byTarget] of staging) {
      const compiled = new Map<string, CodeIndex>();
      const any: CodeIndex = new Map();
      const anyLists = new Map<string, TranslationMatch[]>();
      for (const [targetSystem, byCode] of byTarget) {
        const codes: CodeIndex = new Map();
        for (const [code, matches] of byCode) {
          codes.set(code, freezeTranslation(matches));
          anyLists.set(code, [...(anyLists.get(code) ?? []), ...matches]);
        }
        compiled.set(targetSystem, codes);
      }
      for (const [code, matches] of anyLists) any.set(code, freezeTranslation(byPrecedence(matches)));
      this.index.set(sourceSystem, compiled);
      this.anyTarget.set(sourceSystem, any);
    }
  }

  /** Source systems some map translates from. */
  sourceSystems(): string[] {
    return [...this.index.keys()];
  }

  /** Whether some map translates from this system (e.g. a member FHIR server's own code system URL). */
  isSource(system: string): boolean {
    return this.index.has(system);
  }

  /** Whether a map holds this exact code (no walking up): the committee's notion of "mapped". */
  hasExact(system: string, code: string): boolean {
    return this.anyTarget.get(system)?.has(code) ?? false;
  }

  /**
   * Translate a code. `targetSystem` restricts matches to one target code system. The result object
   * is shared and frozen: do not modify it.
   */
  translate(system: string, code: string, targetSystem?: string): Translation {
    const exact = targetSystem === undefined ? this.anyTarget.get(system)?.get(code) : this.index.get(system)?.get(targetSystem)?.get(code);
    if (exact) return exact;
    if (system !== ICD10 && system !== ICD10_CN) return NO_MATCH;
    const key = targetSystem ?? '';
    const cached = this.derived.get(system)?.get(key)?.get(code);
    if (cached) return cached;
    const result = this.resolveHierarchical(system, code, targetSystem);
    if (this.derivedCount < MAX_DERIVED) {
      let byTarget = this.derived.get(system);
      if (!byTarget) this.derived.set(system, (byTarget = new Map()));
      let codes = byTarget.get(key);
      if (!codes) byTarget.set(key, (codes = new Map()));
      codes.set(code, result);
      this.derivedCount++;
    }
    return result;
  }

  private lookupIcd10(code: string, targetSystem: string | undefined): Translation | undefined {
    return targetSystem === undefined ? this.anyTarget.get(ICD10)?.get(code) : this.index.get(ICD10)?.get(targetSystem)?.get(code);
  }

  private resolveHierarchical(system: string, code: string, targetSystem: string | undefined): Translation {
    let icd10 = code;
    let refines = false;
    const via: string[] = [];
    if (system === ICD10_CN || !isIcd10Code(code)) {
      const reduced = isIcd10Code(code) ? { icd10: code, refines: false } : reduceClinicalEdition(code);
      if (!reduced) return NO_MATCH;
      icd10 = reduced.icd10;
      refines = reduced.refines;
      if (icd10 !== code) via.push(`clinical edition ${code} → ICD-10 ${icd10}`);
      const direct = this.lookupIcd10(icd10, targetSystem);
      if (direct) return refines || via.length ? widen(direct, via.join('; '), refines) : direct;
    }
    for (let parent = icd10Parent(icd10); parent; parent = icd10Parent(parent)) {
      const found = this.lookupIcd10(parent, targetSystem);
      if (found) {
        via.push(`${icd10} is not in the map; its parent ${parent} is`);
        return widen(found, via.join('; '), true);
      }
    }
    return NO_MATCH;
  }

  /** target system → target code → the rows that reach it (built on the first reverse lookup). */
  private reverseIndex?: Map<string, Map<string, Array<{ sourceSystem: string; code: string; display?: string; equivalence: Equivalence; source: string }>>>;

  /**
   * R4 `$translate` with `reverse=true`: the source codes that map to this (target) code, from every
   * map (`sourceSystem` narrows to one source code system, R4's `targetsystem` in reverse). The
   * relation is read from the other side: wider ↔ narrower, subsumes ↔ specializes; the others are
   * symmetric. Exact rows only (no walking up); in map precedence order like forward matches.
   */
  reverse(system: string, code: string, sourceSystem?: string): Translation {
    if (!this.reverseIndex) {
      this.reverseIndex = new Map();
      for (const map of [...this.maps.values()].sort((a, b) => mapPrecedence(a.url) - mapPrecedence(b.url) || (a.url < b.url ? -1 : 1))) {
        for (const group of map.group) {
          let byCode = this.reverseIndex.get(group.target);
          if (!byCode) this.reverseIndex.set(group.target, (byCode = new Map()));
          for (const element of group.element) for (const target of element.target ?? []) {
            if (!target.code) continue;
            const list = byCode.get(target.code) ?? [];
            list.push({ sourceSystem: group.source, code: element.code, ...(element.display ? { display: element.display } : {}), equivalence: target.equivalence, source: `${map.url}|${map.version}` });
            byCode.set(target.code, list);
          }
        }
      }
    }
    const key = `${system}\u0000${code}\u0000${sourceSystem ?? ''}`;
    const cached = this.reverseCache.get(key);
    if (cached) return cached;
    const rows = (this.reverseIndex.get(system)?.get(code) ?? []).filter((r) => sourceSystem === undefined || r.sourceSystem === sourceSystem);
    const result =
      rows.length === 0
        ? NO_REVERSE
        : freezeTranslation(rows.map((r) => Object.freeze({ equivalence: invertEquivalence(r.equivalence), concept: Object.freeze({ system: r.sourceSystem, code: r.code, ...(r.display ? { display: r.display } : {}) }), source: r.source })));
    if (this.reverseCache.size < MAX_DERIVED) this.reverseCache.set(key, result);
    return result;
  }

  /** Reverse answers, computed once (frozen and shared like forward ones). */
  private readonly reverseCache = new Map<string, Translation>();

  /** Canonical unit of a LOINC test, when a LOINC → UCUM map names one. */
  canonicalUnit(loinc: string): CanonicalUnit | undefined {
    return this.canonicalUnits.get(loinc);
  }
}

const precedenceOf = (source: string): number => mapPrecedence(source.slice(0, source.lastIndexOf('|')));

/** Stable sort of matches by their map's precedence. */
function byPrecedence(matches: TranslationMatch[]): TranslationMatch[] {
  return matches.map((m, i) => [m, i] as const).sort(([a, i], [b, j]) => precedenceOf(a.source) - precedenceOf(b.source) || i - j).map(([m]) => m);
}

/**
 * The matches the pipeline applies: those of the first map (in precedence order) that holds the
 * code. A map may give several targets (the WHO multiple-categories rows); all of them are kept.
 */
export function preferredMatches(translation: Translation): readonly TranslationMatch[] {
  const first = translation.matches[0];
  if (!first || translation.matches.every((m) => m.source === first.source)) return translation.matches;
  return translation.matches.filter((m) => m.source === first.source);
}

/** The relation read from the target's side (R4 ConceptMapEquivalence): source wider than target ⇔ target narrower than source. */
export function invertEquivalence(e: Equivalence): Equivalence {
  switch (e) {
    case 'wider':
      return 'narrower';
    case 'narrower':
      return 'wider';
    case 'subsumes':
      return 'specializes';
    case 'specializes':
      return 'subsumes';
    default:
      return e;
  }
}

function freezeTranslation(matches: TranslationMatch[]): Translation {
  const result = matches.some((m) => m.equivalence !== 'unmatched' && m.equivalence !== 'disjoint');
  return Object.freeze({ result, matches: Object.freeze([...matches]), ...(result ? {} : { message: 'the map says this code has no match' }) });
}

/**
 * A match reached from a narrower source code: the target is wider than the code asked about. An
 * equivalent/equal match becomes wider; wider stays wider; other relations become inexact.
 */
function widen(found: Translation, message: string, narrowerSource: boolean): Translation {
  const matches = found.matches.map((m) => {
    if (!narrowerSource) return m;
    const equivalence: Equivalence = m.equivalence === 'equivalent' || m.equivalence === 'equal' || m.equivalence === 'wider' ? 'wider' : m.equivalence === 'unmatched' ? 'unmatched' : 'inexact';
    return Object.freeze({ ...m, equivalence });
  });
  return Object.freeze({ result: found.result, matches: Object.freeze(matches), message });
}
