/**
 * Addresses as the index compares them: the street part (lines; the XAD-7 type code and the
 * city, postcode and country components are separate fields, or dropped), and a key of street +
 * house number + city for blocking, so that two records at one address meet even when names and
 * birth dates both differ (Medina Sentosa / M Sentosa). Chinese addresses: the road (…路, 街,
 * 大道, 巷, 弄, 胡同) and its number (…号), after the province, city and district prefixes;
 * Latin ones: the house number and the street name with its type abbreviated (Street → st,
 * Road → rd). Pure.
 */
import { hasHan, normaliseName } from './names';

const STREET_TYPES: Record<string, string> = {
  street: 'st', str: 'st', road: 'rd', avenue: 'ave', av: 'ave', drive: 'dr', lane: 'ln', court: 'ct', place: 'pl', boulevard: 'blvd',
  crescent: 'cres', terrace: 'tce', highway: 'hwy', parade: 'pde', circuit: 'cct', close: 'cl', square: 'sq', parkway: 'pkwy',
};
/** Words that introduce a flat or unit within the building (not the street). */
const UNIT_WORDS = new Set(['apt', 'apartment', 'unit', 'flat', 'suite', 'ste', 'room', 'rm', 'floor', 'fl', 'level', 'lvl']);

/** Road and number of a Chinese address: 浙江省杭州市西湖区文一路12号3幢 → 文一路12号. */
const HAN_ROAD = /([\p{Script=Han}\d]{1,12}?(?:大道|大街|路|街|巷|弄|胡同|道|里))(\d+)号/u;
const HAN_PREFIX = /^(?:.{2,8}?(?:省|自治区))?(?:.{2,8}?市)?(?:.{1,8}?(?:区|县|市|旗))?/u;

/** The key of an address for blocking: street + number + city (undefined: no street or no number). */
export function addressKey(address: string | undefined, city: string | undefined): string | undefined {
  if (!address) return undefined;
  if (hasHan(address)) {
    const text = normaliseName(address) ?? '';
    const road = HAN_ROAD.exec(text.replace(HAN_PREFIX, '')) ?? HAN_ROAD.exec(text);
    if (!road) return undefined;
    // The road's own name without a district or town before it (西湖区文一路 and 文一路 agree).
    const name = road[1]!.replace(/^.*(?:区|县|镇|乡|街道)/u, '');
    return `${name}${road[2]}`;
  }
  const words = address.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim().split(' ').filter(Boolean);
  const out: string[] = [];
  let number: string | undefined;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (UNIT_WORDS.has(w)) {
      i++; // its number
      continue;
    }
    if (/^\d+[a-z]?$/.test(w)) {
      number ??= w;
      continue;
    }
    out.push(STREET_TYPES[w] ?? w);
  }
  if (!number || !out.length) return undefined;
  const town = city?.toLowerCase().replace(/[^a-z0-9\p{L}]+/gu, '') ?? '';
  return `${number} ${out.join(' ')}|${town}`;
}
