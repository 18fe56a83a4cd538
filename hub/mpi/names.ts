/**
 * Name normalisation for matching: traditional → simplified Hanzi (OpenCC's Hong Kong/Taiwan →
 * mainland tables, opencc-js), Hanzi → toneless pinyin with surname readings (pinyin-pro's surname
 * mode: 单 shan, 曾 zeng, 仇 qiu, 区 ou), and Latin spellings folded to one sound key (ü, v, yu after
 * l/n → u, so LV / LU / LYU / LÜ all give `lu`). Caches both conversions: names repeat. Pure.
 */
import { pinyin } from 'pinyin-pro';
import { toLatin } from './scripts';

// opencc-js types are ESM-only declarations; its CommonJS build is what `require` loads.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const OpenCC = require('opencc-js') as { Converter(options: { from: string; to: string }): (text: string) => string };
const toSimplifiedHk = OpenCC.Converter({ from: 'hk', to: 'cn' });
const toSimplifiedTw = OpenCC.Converter({ from: 'tw', to: 'cn' });
const HAN = /\p{Script=Han}/u;

const simplifiedCache = new Map<string, string>();
const pinyinCache = new Map<string, string>();

export function hasHan(text: string): boolean {
  return HAN.test(text);
}

/** Simplified Hanzi, whitespace and punctuation removed; Latin text lower-cased; other scripts transliterated to Latin first (hub/mpi/scripts.ts). */
export function normaliseName(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const trimmed = text.normalize('NFKC').trim();
  if (!trimmed) return undefined;
  if (!hasHan(trimmed)) return foldLatin(toLatin(trimmed)) || undefined;
  let out: string | undefined = simplifiedCache.get(trimmed);
  if (out === undefined) {
    out = toSimplifiedTw(toSimplifiedHk(trimmed)).replace(/[\s·・.,，、\-]/g, '');
    if (simplifiedCache.size > 200_000) simplifiedCache.clear();
    simplifiedCache.set(trimmed, out);
  }
  return out;
}

/** Lower-case Latin letters only (diacritics folded; ü kept as v, the pinyin input convention). */
export function foldLatin(text: string): string {
  return text
    .toLowerCase()
    .replace(/ü|u:/g, 'v')
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^a-z]/g, '');
}

/**
 * The sound of a name part: toneless pinyin of the simplified Hanzi (`surname`: read as a surname),
 * or the folded Latin spelling; then lv/lyu/nv/nyu → lu/nu so the spellings of 吕 and 女 agree.
 */
export function soundKey(normalised: string | undefined, surname: boolean): string | undefined {
  if (!normalised) return undefined;
  let latin: string;
  if (hasHan(normalised)) {
    const key = (surname ? 's:' : 'g:') + normalised;
    const cached = pinyinCache.get(key);
    if (cached !== undefined) return cached;
    latin = pinyin(normalised, { mode: surname ? 'surname' : 'normal', toneType: 'none', type: 'array', v: true, nonZh: 'removed' }).join('');
    latin = foldSound(foldLatin(latin));
    if (pinyinCache.size > 200_000) pinyinCache.clear();
    pinyinCache.set(key, latin);
    return latin;
  }
  return foldSound(normalised);
}

const SOUNDEX: Record<string, string> = { b: '1', f: '1', p: '1', v: '1', c: '2', g: '2', j: '2', k: '2', q: '2', s: '2', x: '2', z: '2', d: '3', t: '3', l: '4', m: '5', n: '5', r: '6' };

/** American Soundex of a folded Latin name (a–z): its first letter and three consonant classes. */
export function soundex(latin: string): string {
  let out = latin.charAt(0);
  let last = SOUNDEX[out];
  for (let i = 1; i < latin.length && out.length < 4; i++) {
    const ch = latin.charAt(i);
    const code = SOUNDEX[ch];
    if (code && code !== last) out += code;
    // h and w do not separate two letters of one class; vowels do.
    if (ch !== 'h' && ch !== 'w') last = code;
  }
  return out.padEnd(4, '0');
}

function foldSound(latin: string): string {
  return latin.replace(/([ln])(?:yu|v)/g, '$1u');
}

/**
 * Scratch rows for the two comparisons below, grown as needed and reused: the matcher calls them
 * tens of millions of times in a bulk sync, and two fresh arrays per call were a large part of its
 * garbage (the results are the same; JavaScript runs one call at a time).
 */
let flagsA = new Uint8Array(64);
let flagsB = new Uint8Array(64);
let rowPrev = new Int32Array(64);
let rowCur = new Int32Array(64);

/** Jaro–Winkler similarity (0…1), for spelling slips in Latin names and sound keys. */
export function jaroWinkler(a: string, b: string): number {
  if (a === b) return 1;
  const la = a.length;
  const lb = b.length;
  if (!la || !lb) return 0;
  if (flagsA.length < la) flagsA = new Uint8Array(la * 2);
  if (flagsB.length < lb) flagsB = new Uint8Array(lb * 2);
  const ma = flagsA;
  const mb = flagsB;
  ma.fill(0, 0, la);
  mb.fill(0, 0, lb);
  const window = Math.max(0, Math.floor(Math.max(la, lb) / 2) - 1);
  let matches = 0;
  for (let i = 0; i < la; i++) {
    const lo = Math.max(0, i - window);
    const hi = Math.min(lb - 1, i + window);
    const ch = a.charCodeAt(i);
    for (let j = lo; j <= hi; j++) {
      if (mb[j] || ch !== b.charCodeAt(j)) continue;
      ma[i] = mb[j] = 1;
      matches++;
      break;
    }
  }
  if (!matches) return 0;
  let t = 0;
  let k = 0;
  for (let i = 0; i < la; i++) {
    if (!ma[i]) continue;
    while (!mb[k]) k++;
    if (a.charCodeAt(i) !== b.charCodeAt(k)) t++;
    k++;
  }
  const jaro = (matches / la + matches / lb + (matches - t / 2) / matches) / 3;
  let prefix = 0;
  while (prefix < 4 && prefix < la && prefix < lb && a.charCodeAt(prefix) === b.charCodeAt(prefix)) prefix++;
  return jaro + prefix * 0.1 * (1 - jaro);
}

/** Levenshtein distance, stopping early past `max` (returns max + 1). */
export function editDistance(a: string, b: string, max = 3): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  const lb = b.length;
  if (rowPrev.length <= lb) {
    rowPrev = new Int32Array(lb * 2 + 1);
    rowCur = new Int32Array(lb * 2 + 1);
  }
  let prev = rowPrev;
  let cur = rowCur;
  for (let j = 0; j <= lb; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    let best = i;
    const ch = a.charCodeAt(i - 1);
    for (let j = 1; j <= lb; j++) {
      const v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (ch === b.charCodeAt(j - 1) ? 0 : 1));
      cur[j] = v;
      if (v < best) best = v;
    }
    if (best > max) return max + 1;
    const swap = prev;
    prev = cur;
    cur = swap;
  }
  return prev[lb]!;
}
