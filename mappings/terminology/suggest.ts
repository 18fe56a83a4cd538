/**
 * Ranked suggestions for an unmapped code, for the committee to review — never applied by
 * themselves. Three sources of evidence, combined per candidate target:
 * - code structure: a code that reads as ICD-10 or China clinical edition (`E11.900` sent under a
 *   local system) goes through clinical edition → ICD-10 → the WHO map;
 * - display similarity against the LOINC subset (English and Chinese names) and every target
 *   display the maps hold, on text normalised to simplified Chinese (OpenCC), case and spacing
 *   folded, scored by character-bigram overlap (Dice), so 血紅蛋白 matches 血红蛋白;
 * - what other members mapped the same (or a very similar) display to.
 */
import { reduceClinicalEdition, isIcd10Code } from './icd10';
import { loincSubset } from './shipped';
import type { Terminology } from './translator';
import { ICD10, ICD10_CN, ICD11_MMS, LOINC, localSystemMember } from './systems';

let converter: ((text: string) => string) | undefined;
/** Traditional → simplified (OpenCC). Loaded on first use: its dictionaries cost every CLI start otherwise. */
function toSimplified(text: string): string {
  if (!converter) {
    // opencc-js ships ESM types only; its CommonJS build is what this CommonJS module loads.
    const { Converter } = require('opencc-js/t2cn') as { Converter: (o: { from: string; to: string }) => (text: string) => string };
    converter = Converter({ from: 't', to: 'cn' });
  }
  return converter(text);
}

export interface UnmappedCode {
  memberId: string;
  system: string;
  code: string;
  display?: string;
}

export interface Suggestion {
  system: string;
  code: string;
  display?: string;
  /** 0..1; evidence from several sources raises it (1 − Π(1 − sᵢ)). */
  score: number;
  reasons: string[];
}

/** Simplified Chinese, lower case, without spaces and punctuation (ASCII and full-width). */
export function normaliseDisplay(text: string): string {
  return toSimplified(text.normalize('NFKC'))
    .toLowerCase()
    .replace(/[\s\p{P}\p{S}]+/gu, '');
}

function bigrams(text: string): string[] {
  const chars = [...text];
  if (chars.length < 2) return chars;
  const out: string[] = [];
  for (let i = 0; i < chars.length - 1; i++) out.push(chars[i]! + chars[i + 1]!);
  return out;
}

/** Dice coefficient over character bigrams of normalised text (1 for equal texts). */
export function displaySimilarity(a: string, b: string): number {
  const x = normaliseDisplay(a);
  const y = normaliseDisplay(b);
  if (!x || !y) return 0;
  if (x === y) return 1;
  const bx = bigrams(x);
  const by = bigrams(y);
  const counts = new Map<string, number>();
  for (const g of bx) counts.set(g, (counts.get(g) ?? 0) + 1);
  let common = 0;
  for (const g of by) {
    const n = counts.get(g) ?? 0;
    if (n > 0) {
      common++;
      counts.set(g, n - 1);
    }
  }
  return (2 * common) / (bx.length + by.length);
}

const MIN_SIMILARITY = 0.4;

export function suggest(terminology: Terminology, unmapped: UnmappedCode, limit = 10): Suggestion[] {
  const found = new Map<string, { system: string; code: string; display?: string; scores: number[]; reasons: string[] }>();
  const add = (system: string, code: string, display: string | undefined, score: number, reason: string) => {
    const key = `${system}|${code}`;
    let entry = found.get(key);
    if (!entry) found.set(key, (entry = { system, code, ...(display ? { display } : {}), scores: [], reasons: [] }));
    if (!entry.display && display) entry.display = display;
    entry.scores.push(score);
    entry.reasons.push(reason);
  };

  // 1. code structure
  const code = unmapped.code.trim();
  const reduced = isIcd10Code(code) ? { icd10: code, refines: false } : reduceClinicalEdition(code);
  if (reduced) {
    const t = terminology.translate(unmapped.system === ICD10 ? ICD10 : ICD10_CN, code, ICD11_MMS);
    for (const m of t.matches) {
      if (!m.concept) continue;
      const via = reduced.icd10 !== code ? `clinical edition ${code} → ICD-10 ${reduced.icd10}` : `ICD-10 ${code}`;
      add(m.concept.system, m.concept.code, m.concept.display, m.equivalence === 'equivalent' || m.equivalence === 'equal' ? 0.9 : 0.75, `code structure: ${via} → WHO map (${m.equivalence})`);
    }
  }

  const display = unmapped.display?.trim();
  if (display) {
    // 2. display similarity with LOINC names and with target displays in the maps
    for (const concept of loincSubset()) {
      const s = Math.max(displaySimilarity(display, concept.display), concept.zh ? displaySimilarity(display, concept.zh) : 0);
      if (s >= MIN_SIMILARITY) add(LOINC, concept.code, concept.display, 0.8 * s, `display "${display}" is like LOINC ${concept.code} "${concept.zh ?? concept.display}" (${s.toFixed(2)})`);
    }
    for (const [system, displays] of terminology.targetDisplays) {
      if (system === LOINC) continue;
      for (const [targetCode, targetDisplay] of displays) {
        const s = displaySimilarity(display, targetDisplay);
        if (s >= MIN_SIMILARITY) add(system, targetCode, targetDisplay, 0.7 * s, `display "${display}" is like "${targetDisplay}" (${s.toFixed(2)})`);
      }
    }
    // 3. what other members mapped the same display to
    for (const map of terminology.maps.values()) {
      for (const group of map.group) {
        const member = localSystemMember(group.source);
        if (!member || group.source === unmapped.system) continue;
        for (const element of group.element) {
          if (!element.display) continue;
          const s = displaySimilarity(display, element.display);
          if (s < 0.8) continue;
          for (const target of element.target ?? []) {
            if (!target.code || target.equivalence === 'unmatched' || target.equivalence === 'disjoint') continue;
            add(group.target, target.code, target.display, 0.95 * s, `member ${member} maps "${element.display}" (${element.code}) to ${target.code}`);
          }
        }
      }
    }
  }

  return [...found.values()]
    .map((e) => ({ system: e.system, code: e.code, ...(e.display ? { display: e.display } : {}), score: Math.round((1 - e.scores.reduce((p, s) => p * (1 - s), 1)) * 1000) / 1000, reasons: e.reasons }))
    .sort((a, b) => b.score - a.score || a.code.localeCompare(b.code))
    .slice(0, limit);
}
