/**
 * The matcher: field comparisons with graded agreement levels, a Fellegi–Sunter model whose m and
 * u probabilities are estimated from the records themselves, term-frequency adjustment (rare names
 * count more; a phone, address or identifier many different people carry — a registration desk's
 * placeholder — counts less, down to nothing), a few deterministic rules that outrank the score,
 * and the three outcomes. Every decision
 * carries its explanation (each field's level and weight). Pure: owns no storage, never decides
 * anything a person decided (the store filters candidates before they get here).
 *
 * Training is deliberately not plain EM, which collapses on some data (it may converge to "same
 * city" instead of "same person"): u comes from random pairs (almost all non-matches), m from pairs
 * of several blocking rules, each field's m estimated only on rules that do not block on that field
 * and with that field left out of the posterior that weighs the pair (leave-one-out), so a field
 * cannot vouch for itself.
 */
import { editDistance, jaroWinkler } from './names';
import { blockingKeys, type PersonFeatures } from './features';
import { checked, identityTable, sameSystem } from './identity';
import { areAliases } from './nicknames';
import { sameSkeleton } from './scripts';
import { seededRandom } from '../seededRandom';

export type FieldName = 'family' | 'given' | 'birth' | 'sex' | 'rid' | 'phone' | 'email' | 'address' | 'city' | 'postcode' | 'otherId';
export type Outcome = 'MATCH' | 'POSSIBLE_MATCH' | 'NO_MATCH';

interface Comparison {
  field: FieldName;
  /** Level labels, best agreement first, full disagreement last. */
  levels: string[];
  /** Level index, or null when either side lacks the field (it then weighs nothing). */
  level(a: PersonFeatures, b: PersonFeatures): number | null;
  /** Term-frequency table the agreeing levels use (the value of either side; the commoner one counts). */
  tf?: (f: PersonFeatures) => string | undefined;
  tfLevels?: number[];
  /**
   * How a value's frequency moves the weight. `rare` (names, city): a value rarer than average counts
   * more, a common one never less than average; a value missing from the table is rare. `shared`
   * (contact data and identifiers): a value is normally one person's or one household's, which the
   * average u already describes; a value more different people carry than a household (a
   * placeholder phone, the hospital's address) counts less, down to nothing; a value missing from
   * the table is ordinary.
   */
  tfMode?: 'rare' | 'shared';
  /** A model trained before levels were added (stored by `yilian mpi train`) has fewer: level → its level. */
  legacy?: Record<number, number[]>;
}

function nameLevel(a?: string, b?: string, sa?: string, sb?: string): number | null {
  if (!a || !b) return null;
  if (a === b) return 0;
  if (sa && sa === sb) return 1;
  const x = sa ?? a;
  const y = sb ?? b;
  const jw = jaroWinkler(x, y);
  if (jw >= 0.92) return 2;
  if (jw >= 0.8 || (Math.min(x.length, y.length) >= 3 && (x.startsWith(y) || y.startsWith(x)))) return 3;
  return 4;
}

function birthLevel(a?: string, b?: string): number | null {
  if (!a || !b) return null;
  if (a === b) return 0;
  const [ya, ma, da] = [a.slice(0, 4), a.slice(4, 6), a.slice(6, 8)];
  const [yb, mb, db] = [b.slice(0, 4), b.slice(4, 6), b.slice(6, 8)];
  if (ya === yb && ma === db && da === mb) return 1;
  // One part off: a mistyped day or month, or a year one keystroke away (not a parent's birth year).
  if (ya === yb ? ma === mb || da === db : ma === mb && da === db && editDistance(ya, yb, 1) <= 1) return 2;
  // Within a month, also after a year one keystroke away (1977 vs 1976, 2008 vs 2018): a mistyped or
  // misremembered date. Within two years: weaker still (a sibling can be that close; its weight is
  // learned from the data, and the household guard treats it as a different birth date).
  const apart = Math.abs(dayNumber(ya, ma, da) - dayNumber(yb, mb, db));
  if (apart <= 31 || (editDistance(ya, yb, 1) <= 1 && Math.abs(dayNumber(ya, ma, da) - dayNumber(ya, mb, db)) <= 31)) return 3;
  if (apart <= 731) return 4;
  // Within ten years (Splink's last date level): a decade mistyped (1986 / 1996) on a date itself
  // misremembered, or an age guessed. Weak (its weight is learned, usually below nothing); it is
  // no "different" birth date for the rules — a mother and daughter are further apart, and
  // siblings differ by given name (household guard).
  if (apart <= 3653) return 5;
  return 6;
}

function dayNumber(y: string, m: string, d: string): number {
  return Date.UTC(Number(y), Number(m) - 1, Number(d)) / 86_400_000;
}

function simpleLevel(a: string | undefined, b: string | undefined, close: (x: string, y: string) => boolean): number | null {
  if (!a || !b) return null;
  if (a === b) return 0;
  return close(a, b) ? 1 : 2;
}

/**
 * Family and given name compared together: a swapped order or a split compound surname (欧阳|娜 vs
 * 欧|阳娜) counts as the same sound; so do a Latin given name and its alias (Robert / Bob, from
 * data/nicknames), and, when either name was written in another script, names whose consonant
 * skeletons agree (محمد → mhmd / Mohammed, Дмитрий / Dmitry).
 */
function nameLevels(a: PersonFeatures, b: PersonFeatures): [number | null, number | null] {
  let family = nameLevel(a.family, b.family, a.familySound, b.familySound);
  let given = nameLevel(a.given, b.given, a.givenSound, b.givenSound);
  if (given !== null && given >= 2 && !a.han && !b.han && areAliases(a.givenSound!, b.givenSound!)) given = 1;
  if (a.translit || b.translit) {
    if (family !== null && family >= 2 && sameSkeleton(a.familySound!, b.familySound!)) family = 1;
    if (given !== null && given >= 2 && sameSkeleton(a.givenSound!, b.givenSound!)) given = 1;
  }
  if ((family ?? 0) <= 1 && (given ?? 0) <= 1) return [family, given];
  if (a.familySound && a.givenSound && b.familySound && b.givenSound) {
    const swapped = a.familySound === b.givenSound && a.givenSound === b.familySound;
    const resplit = a.familySound + a.givenSound === b.familySound + b.givenSound;
    if (swapped || resplit) return [1, 1];
    if (jaroWinkler(a.familySound, b.givenSound) >= 0.92 && jaroWinkler(a.givenSound, b.familySound) >= 0.92) return [2, 2];
    // Swapped with a typo in one part (MOORE|OSCAR vs OSACAR|MOORE): one part agrees in sound, the
    // other is similar — credited no more than a close spelling and a similar one.
    const x = nameLevel(a.family, b.given, a.familySound, b.givenSound)!;
    const y = nameLevel(a.given, b.family, a.givenSound, b.familySound)!;
    if (Math.min(x, y) <= 1 && Math.max(x, y) <= 3 && (family ?? 4) + (given ?? 4) > 5) return x <= y ? [2, 3] : [3, 2];
  }
  return [family, given];
}

/**
 * Two e-mail addresses one edit apart (a letter or a punctuation mark added, dropped or replaced)
 * with the same digits in the same order: a typo. A digit that differs is not counted as one —
 * numbers are how a provider tells namesakes apart (robert.smith12 / robert.smith13).
 */
function emailTypo(x: string, y: string): boolean {
  if (Math.abs(x.length - y.length) > 1 || x.length < 6) return false;
  return editDistance(x, y, 1) <= 1 && x.replace(/\D+/g, '') === y.replace(/\D+/g, '');
}

/** The street and number of an address key (without its city: a city spelt otherwise is the same address). */
function streetOf(key: string): string {
  const bar = key.indexOf('|');
  return bar < 0 ? key : key.slice(0, bar);
}

export const comparisons: Comparison[] = [
  {
    field: 'family',
    levels: ['exact', 'same sound', 'close spelling', 'similar', 'different'],
    level: (a, b) => nameLevels(a, b)[0],
    tf: (f) => f.familySound,
    tfLevels: [0, 1],
    tfMode: 'rare',
  },
  {
    field: 'given',
    levels: ['exact', 'same sound', 'close spelling', 'similar', 'different'],
    level: (a, b) => nameLevels(a, b)[1],
    tf: (f) => f.givenSound,
    tfLevels: [0, 1],
    tfMode: 'rare',
  },
  {
    field: 'birth',
    levels: ['exact', 'day/month transposed', 'one part differs', 'within a month', 'within two years', 'within ten years', 'different'],
    level: (a, b) => birthLevel(a.birth, b.birth),
    legacy: { 4: [0, 1, 2, 2, 3, 3, 3], 6: [0, 1, 2, 3, 4, 5, 5] },
  },
  { field: 'sex', levels: ['same', 'different'], level: (a, b) => (a.sex && b.sex ? (a.sex === b.sex ? 0 : 1) : null) },
  {
    field: 'rid',
    levels: ['same valid ID', 'same ID, weak (check digit fails or contradicts the record)', 'close (typo)', 'different', 'different valid IDs'],
    level: (a, b) => {
      if (!a.rid || !b.rid) return null;
      if (a.rid.value === b.rid.value) return a.ridStrong && b.ridStrong ? 0 : 1;
      if (a.rid.valid && b.rid.valid && a.ridStrong && b.ridStrong) return 4;
      return editDistance(a.rid.value, b.rid.value, 2) <= 2 ? 2 : 3;
    },
    // A dummy number typed for patients without papers (a weak one: its check digit fails or its birth date is not theirs).
    tf: (f) => f.rid?.value,
    tfLevels: [0, 1],
    tfMode: 'shared',
  },
  { field: 'phone', levels: ['same', 'one digit off', 'different'], level: (a, b) => simpleLevel(a.phone, b.phone, (x, y) => editDistance(x, y, 1) <= 1), tf: (f) => f.phone, tfLevels: [0], tfMode: 'shared' },
  {
    // "One typo" is one address mistyped (j.t@pierce.biz / j.t@pierce.bi, emmalloyd / emmallod); "close"
    // also holds what two namesakes have (john.smith12 / john.smith83 @gmail.com), so the rules count
    // only the first as the same e-mail (`sharesIdentifier`, `agreesBeyondName`, `bridgeable`).
    field: 'email',
    levels: ['same', 'one typo', 'close', 'different'],
    level: (a, b) => {
      if (!a.email || !b.email) return null;
      if (a.email === b.email) return 0;
      if (emailTypo(a.email, b.email)) return 1;
      return jaroWinkler(a.email, b.email) >= 0.9 ? 2 : 3;
    },
    tf: (f) => f.email,
    tfLevels: [0, 1],
    tfMode: 'shared',
    legacy: { 3: [0, 1, 1, 2] },
  },
  {
    field: 'address',
    levels: ['same', 'close', 'similar', 'different'],
    level: (a, b) => {
      if (!a.address || !b.address) return null;
      if (a.address === b.address) return 0;
      const jw = jaroWinkler(a.address, b.address);
      // Another house number on the same street (文一路12号 / 文一路76号, 4812 / 4621 Oak Road) is
      // another address, however alike the text: at best similar.
      if (a.addressKey && b.addressKey && streetOf(a.addressKey) !== streetOf(b.addressKey)) return jw >= 0.8 ? 2 : 3;
      return jw >= 0.92 ? 1 : jw >= 0.8 ? 2 : 3;
    },
    // "Close" too: the desk's address typed with and without the province is still the desk's.
    tf: (f) => f.address,
    tfLevels: [0, 1],
    tfMode: 'shared',
  },
  { field: 'city', levels: ['same', 'close', 'different'], level: (a, b) => simpleLevel(a.city, b.city, (x, y) => jaroWinkler(x, y) >= 0.88), tf: (f) => f.city, tfLevels: [0], tfMode: 'rare' },
  { field: 'postcode', levels: ['same', 'one digit off', 'different'], level: (a, b) => simpleLevel(a.postcode, b.postcode, (x, y) => editDistance(x, y, 1) <= 1) },
  {
    // Every identity of the two records in a common system (hub/mpi/identity.ts): the closest pair.
    field: 'otherId',
    levels: ['same', 'one character off', 'two characters off', 'different'],
    level: (a, b) => {
      if (!a.ids || !b.ids) return null;
      let best: number | null = null;
      for (const x of a.ids) {
        for (const y of b.ids) {
          if (!sameSystem(x.system, y.system)) continue;
          if (x.value === y.value) return 0;
          const d = editDistance(x.value, y.value, 2);
          const level = d <= 1 ? 1 : d === 2 ? 2 : 3;
          if (best === null || level < best) best = level;
        }
      }
      return best;
    },
    tf: (f) => f.otherId,
    tfLevels: [0],
    tfMode: 'shared',
  },
];

/**
 * People who may share a phone, an address or even a resident ID (a newborn under a parent's)
 * without it being a placeholder: a household. Up to this many different people a value is
 * ordinary (the household guard tells them apart); each one beyond makes it weaker evidence.
 */
export const HOUSEHOLD = 4;

/**
 * People are told apart by name: the sound keys of family and given name, in either order (a
 * swapped order is the same person). Undefined without a name (such a record is not counted).
 */
export function personKey(f: PersonFeatures): string | undefined {
  if (!f.familySound && !f.givenSound) return undefined;
  return [f.familySound ?? '', f.givenSound ?? ''].sort().join('|');
}

/**
 * The population's own term frequencies of the `shared` fields: for each value, how many different
 * people (by `personKey`) carry it, among how many records. Kept current as records are added
 * (`SharedValueTally` in memory, table `mpi_shared_value` in the store); attached to a model by
 * `modelForPopulation` (in memory) or `withSharedCounts` (hub/mpi/sharedValues.ts), never stored with it.
 */
export interface SharedValueCounts {
  records: number;
  people: Partial<Record<FieldName, { get(value: string): number | undefined }>>;
}

/** The `shared` values of a record: (field, value) for each such field it states. */
export function sharedValues(f: PersonFeatures): Array<{ field: FieldName; value: string }> {
  const out: Array<{ field: FieldName; value: string }> = [];
  for (const c of comparisons) {
    if (c.tfMode !== 'shared') continue;
    const value = c.tf!(f);
    if (value !== undefined) out.push({ field: c.field, value });
  }
  return out;
}

/** Distinct people per shared value, in memory (training; the store keeps them in `mpi_shared_value`). */
export class SharedValueTally implements SharedValueCounts {
  records = 0;
  private readonly names = new Map<FieldName, Map<string, Set<string>>>();
  readonly people: SharedValueCounts['people'] = {};

  constructor() {
    for (const c of comparisons) {
      if (c.tfMode !== 'shared') continue;
      const byValue = new Map<string, Set<string>>();
      this.names.set(c.field, byValue);
      this.people[c.field] = { get: (value) => byValue.get(value)?.size };
    }
  }

  add(f: PersonFeatures): void {
    this.records++;
    const person = personKey(f);
    if (person === undefined) return;
    for (const { field, value } of sharedValues(f)) {
      const byValue = this.names.get(field)!;
      const set = byValue.get(value);
      if (set) set.add(person);
      else byValue.set(value, new Set([person]));
    }
  }

  /** Values more people carry than a household, with their share: (people − HOUSEHOLD) / records. */
  table(field: FieldName): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [value, set] of this.names.get(field) ?? []) if (set.size > HOUSEHOLD) out[value] = sharedShare(set.size, this.records);
    return out;
  }
}

/**
 * The share that stands for u when two records agree on a value that `people` different people
 * carry: only the people beyond a household count (see HOUSEHOLD).
 */
function sharedShare(people: number, records: number): number {
  return Math.max(0, people - HOUSEHOLD) / Math.max(records, 1);
}

export interface FieldParameters {
  /** P(level | same person). */
  m: number[];
  /** P(level | different people). */
  u: number[];
}

export interface MatchModel {
  /** log2 of the prior odds that two records picked at random are the same person. */
  priorLog2: number;
  fields: Record<FieldName, FieldParameters>;
  /**
   * Per field with term frequencies: value → share. `rare` fields: share of records with it (common
   * values only); `shared` fields: (different people carrying it − HOUSEHOLD) / records, for values
   * more people carry than a household.
   */
  tf: Partial<Record<FieldName, Record<string, number>>>;
  /** Share below which a value counts as rare (1 / records). */
  tfFloor: number;
  /** The population's own counts of shared values (set by `modelForPopulation`; not stored). */
  shared?: SharedValueCounts;
  /** The number of records the prior is scaled to (set by `modelForPopulation`; not stored). */
  population?: number;
  /** Match weight (log2 posterior odds) at or above which a pair links automatically. */
  matchThreshold: number;
  /** At or above this (and below matchThreshold) a pair goes to review. */
  reviewThreshold: number;
  trainedOn: { records: number; randomPairs: number; blockedPairs: Record<string, number> };
}

export interface FieldScore {
  field: FieldName;
  level: number | null;
  label: string;
  /** log2 Bayes factor this field contributes (0 when missing). */
  weight: number;
  /**
   * Term frequency used instead of u, when the agreement was on a common value (a `shared` field:
   * only when that value's share exceeded the average, i.e. the agreement was discounted).
   */
  tf?: number;
}

export interface PairScore {
  /** log2 posterior odds: prior + Σ field weights. */
  weight: number;
  probability: number;
  fields: FieldScore[];
  /** A deterministic rule that decided (or capped) the outcome. */
  rule?:
    | 'resident-id'
    | 'resident-id-conflict'
    | 'identifier'
    | 'identifier-conflict'
    | 'identifier-differs'
    | 'generation-conflict'
    | 'twin-guard'
    | 'household-guard'
    | 'name-conflict'
    | 'surname-conflict'
    | 'given-name-conflict'
    | 'sex-conflict'
    | 'birth-conflict'
    | 'contact-conflict'
    | 'name-only';
  outcome: Outcome;
}

export function pairLevels(a: PersonFeatures, b: PersonFeatures): Array<number | null> {
  const levels = new Array<number | null>(comparisons.length);
  // Family and given name are compared together once (their `level`s each ask for the pair).
  const [family, given] = nameLevels(a, b);
  levels[0] = family;
  levels[1] = given;
  for (let i = 2; i < comparisons.length; i++) levels[i] = comparisons[i]!.level(a, b);
  return levels;
}

/** A trained field level as the model has it (a model trained before levels were added has fewer). */
function modelLevel(p: FieldParameters, c: Comparison, level: number): number {
  return p.m.length === c.levels.length ? level : (c.legacy?.[p.m.length]?.[level] ?? Math.min(level, p.m.length - 1));
}

const levelWeightCache = new WeakMap<MatchModel['fields'], number[][]>();
/**
 * log2(m / u) of every field and level, computed once per trained model (scoring computed it for
 * every field of every pair); term-frequency levels are weighed by `fieldWeight` instead.
 */
function levelWeights(model: MatchModel): number[][] {
  let table = levelWeightCache.get(model.fields);
  if (!table) {
    table = comparisons.map((c) => {
      const p = model.fields[c.field];
      return c.levels.map((_, level) => Math.log2(p.m[modelLevel(p, c, level)]! / p.u[modelLevel(p, c, level)]!));
    });
    levelWeightCache.set(model.fields, table);
  }
  return table;
}

function fieldWeight(model: MatchModel, c: Comparison, level: number, a: PersonFeatures, b: PersonFeatures): { weight: number; tf?: number } {
  const p = model.fields[c.field];
  level = modelLevel(p, c, level);
  const m = p.m[level]!;
  let u = p.u[level]!;
  let tf: number | undefined;
  if (c.tf && c.tfLevels?.includes(level)) {
    const table = model.tf[c.field];
    if (c.tfMode === 'shared') {
      // The commoner of the two values (they differ only on a "close" level), by the trained table
      // and by the population's own counts, whichever says it is shared more widely.
      const share = Math.max(sharedShareOf(model, c.field, c.tf(a)), sharedShareOf(model, c.field, c.tf(b)));
      if (share > u) {
        tf = share;
        // Less credit than average, down to none (never evidence against: agreeing is not disagreeing).
        u = Math.min(share, m);
      }
    } else {
      const value = c.tf(a);
      if (value !== undefined && table) {
        tf = table[value] ?? model.tfFloor;
        // The level's u scaled by how rare the value is against the average one (Splink's adjustment:
        // on "same sound", 杨 / YANG keeps that level's own rarity); never more credit than an exact
        // agreement on the rarest value, never less than on the average one.
        const average = Math.max(u, p.u[0]!);
        u = (Math.min(Math.max(tf, model.tfFloor), average) / average) * u;
      }
    }
  }
  return { weight: Math.log2(m / u), tf };
}

function sharedShareOf(model: MatchModel, field: FieldName, value: string | undefined): number {
  if (value === undefined) return 0;
  const trained = model.tf[field]?.[value] ?? 0;
  const people = model.shared?.people[field]?.get(value);
  return Math.max(trained, people === undefined ? 0 : sharedShare(people, model.shared!.records));
}

// pairLevels compares the two names together, in these two places.
if (comparisons[0]!.field !== 'family' || comparisons[1]!.field !== 'given') throw new Error('comparisons must start with family, given');

/** Position of each field in `comparisons`. */
const FIELD_INDEX = Object.fromEntries(comparisons.map((c, i) => [c.field, i])) as Record<FieldName, number>;

export function scorePair(model: MatchModel, a: PersonFeatures, b: PersonFeatures): PairScore {
  return score(model, a, b, true) as PairScore;
}

/**
 * The pair's weight, outcome and rule; with `explain`, also each field's level and weight
 * (`decide` explains only the pairs it reports: building eleven field objects for every candidate
 * was much of the bulk sync's allocation).
 */
function score(model: MatchModel, a: PersonFeatures, b: PersonFeatures, explain: boolean): Omit<PairScore, 'fields'> & { fields?: FieldScore[] } {
  const fields: FieldScore[] | undefined = explain ? [] : undefined;
  let weight = model.priorLog2;
  const levels = pairLevels(a, b);
  const base = levelWeights(model);
  /** Fields whose agreement was on a value many different people carry. */
  let discounted = 0;
  for (let i = 0; i < comparisons.length; i++) {
    const c = comparisons[i]!;
    const level = levels[i]!;
    if (level === null) {
      fields?.push({ field: c.field, level: null, label: 'missing', weight: 0 });
      continue;
    }
    let w = base[i]![level]!;
    let tf: number | undefined;
    if (c.tf && c.tfLevels!.includes(level)) ({ weight: w, tf } = fieldWeight(model, c, level, a, b));
    weight += w;
    // For the rules, a value is shared once more people beyond a household carry it than another
    // household: a person whose name was spelt six ways (FEBRL 3) is not a placeholder, even where
    // the average value is one person's (u from random pairs without their matches, `uFromRandomPairs`).
    if (c.tfMode === 'shared' && tf !== undefined && tf > HOUSEHOLD / (model.population ?? model.trainedOn.records)) discounted |= 1 << i;
    fields?.push({ field: c.field, level, label: c.levels[level]!, weight: round(w), ...(tf !== undefined ? { tf } : {}) });
  }
  const probability = 1 / (1 + 2 ** -weight);
  const levelOf = (field: FieldName) => {
    const i = FIELD_INDEX[field];
    // An agreement on a value many different people carry is no identifier in common (a dummy
    // resident ID, a placeholder e-mail): for the rules it is as if the field were missing.
    return discounted & (1 << i) ? null : levels[i];
  };
  const rid = levelOf('rid');
  const family = levelOf('family');
  const given = levelOf('given');
  const birth = levelOf('birth');
  let outcome: Outcome = weight >= model.matchThreshold ? 'MATCH' : weight >= model.reviewThreshold ? 'POSSIBLE_MATCH' : 'NO_MATCH';
  let rule: PairScore['rule'];
  const ids = identityEvidence(a, b);
  if (rid === 4) {
    // Two valid, different resident IDs that each agree with their record: two people (twins too).
    outcome = 'NO_MATCH';
    rule = 'resident-id-conflict';
  } else if (ids.conflict === 'lifelong') {
    // Two different values of a number kept for life, both passing its check character (the
    // foreigner's permanent residence ID, a medical insurance number): two people.
    outcome = 'NO_MATCH';
    rule = 'identifier-conflict';
  } else if (a.suffix && b.suffix && a.suffix !== b.suffix) {
    // John Smith Jr / John Smith Sr (II / III): father and son, often at one address and phone.
    outcome = 'NO_MATCH';
    rule = 'generation-conflict';
  } else if (rid === 0 && family !== null && family <= 2 && (given === null || given <= 3) && !ids.conflict) {
    outcome = 'MATCH';
    rule = 'resident-id';
  } else if (ids.conflict === 'renewable' && !ids.agrees) {
    // Two different passports (travel permits, licences; SSNs, which have no check) of one issuer and no number of another
    // system in common (an SSN that agrees says: a renewed passport): a renewed document or two
    // people; the weight counts the difference against, and a person decides at best.
    if (outcome === 'MATCH') outcome = 'POSSIBLE_MATCH';
    rule = 'identifier-differs';
  } else if (ids.agrees && levelOf('otherId') === 0 && family !== null && family <= 2 && (given === null || given <= 3) && (birth === null || birth <= 3)) {
    // The same valid value in a system that is one per person (passport of one country, travel
    // permit, SSN, foreigner's permanent residence ID) with the family name agreeing.
    outcome = 'MATCH';
    rule = 'identifier';
  } else if (outcome !== 'NO_MATCH' && family !== null && family <= 1 && birth === 0 && given !== null && (given === 4 || (given === 3 && a.han && b.han)) && !sharesIdentifier(levelOf)) {
    // Same family, same birth date, different given names (in Hanzi even merely similar ones:
    // 小红 / 小兰) and no identifier in common: twins look like this. Never auto-link; of different
    // sex they are two people.
    outcome = levelOf('sex') === 1 ? 'NO_MATCH' : 'POSSIBLE_MATCH';
    rule = 'twin-guard';
  } else if (outcome !== 'NO_MATCH' && birth !== null && birth !== undefined && birth >= 4 && given !== null && given >= 3 && !sharesIdentifier(levelOf)) {
    // Only the household agrees (family name, phone, address, perhaps a parent's ID under which a
    // newborn was registered) while birth date and given name differ: two members of one family.
    outcome = 'NO_MATCH';
    rule = 'household-guard';
  } else if (outcome === 'MATCH' && birth === null && given === 4 && !sharesIdentifier(levelOf)) {
    // The same, with no birth date on one side to tell them by: family name and contact data (one
    // phone) agree, the given names differ outright (Kris / Shirley Miller) — a spouse or a
    // daughter as likely as a renamed record. A person decides.
    outcome = 'POSSIBLE_MATCH';
    rule = 'household-guard';
  } else if (outcome !== 'NO_MATCH' && family === 4 && given === 4 && !sharesIdentifier(levelOf)) {
    // Neither family nor given name agrees even by sound, and no identifier does: what agrees is
    // contact data (a shared or placeholder phone such as 13800138000, an institution's address),
    // which many people share. A person's whole name does not change between members: two people.
    outcome = 'NO_MATCH';
    rule = 'name-conflict';
  } else if (outcome === 'MATCH' && family === 4 && a.han && b.han && !sharesIdentifier(levelOf)) {
    // Family names in Hanzi that differ even by sound (王 / 李), and no identifier in common: the
    // rest (given name, birth date, sex) is what two strangers born the same day share — 欧阳明轩
    // and 司马明轩 scored 17.7. A Hanzi surname is seldom mistyped and does not change at
    // marriage in China; a person decides.
    outcome = 'POSSIBLE_MATCH';
    rule = 'surname-conflict';
  } else if (outcome === 'MATCH' && given !== null && given >= 3 && a.han && b.han && !sharesIdentifier(levelOf)) {
    // Given names in Hanzi that differ (homophones and variant characters agree by sound) and no
    // identifier in common: a sibling or spouse at one address with a near or transposed birth
    // date (冯瑞秀 / 馮宏梅, 0506 / 0605) — the twin guard's case without the exact date. In Latin
    // script a different given name is often a nickname or a typo (FEBRL), so only Hanzi.
    outcome = 'POSSIBLE_MATCH';
    rule = 'given-name-conflict';
  } else if (outcome === 'MATCH' && levelOf('sex') === 1 && given !== null && given >= 2 && !sharesIdentifier(levelOf)) {
    // Sex differs and the given names do not agree even by sound (周涛飞 F / 周濤偉 M, one birth
    // date, one phone): twins of different sex, not one person with a slip in the sex field.
    outcome = 'POSSIBLE_MATCH';
    rule = 'sex-conflict';
  } else if (outcome === 'MATCH' && birth === BIRTH_DIFFERENT && !sharesIdentifier(levelOf)) {
    // Birth dates that differ outright (not a transposition, a typo or a near date) and no identifier
    // in common: name and contact data alone (a mother and daughter with homophone names at one
    // address) never link on their own; a person decides.
    outcome = 'POSSIBLE_MATCH';
    rule = 'birth-conflict';
  } else if (outcome === 'MATCH' && contactDiffers(levels) && !sharesIdentifier(levelOf)) {
    // Name and birth date, but every way to reach them that both records state (three or more of
    // phone, e-mail, address, city, postcode) differs outright and no identifier is in common:
    // a namesake born the same day looks like this as much as a person who moved and changed
    // number. A person decides. (An exact birth date weighs what it should only since u is
    // counted without the matches among random pairs: such pairs moved from review to MATCH.)
    outcome = 'POSSIBLE_MATCH';
    rule = 'contact-conflict';
  } else if (outcome !== 'NO_MATCH' && !agreesBeyondName(levelOf)) {
    // Only the name agrees (Robert Smith / Robert Smith, one record with name and e-mail only):
    // a rare name weighs enough to pass the threshold, but a name is not a person — a person
    // decides; a name that does not even weigh that much (Ольга Волкова) is a namesake.
    outcome = outcome === 'MATCH' ? 'POSSIBLE_MATCH' : 'NO_MATCH';
    rule = 'name-only';
  }
  return { weight: round(weight), probability, ...(fields ? { fields } : {}), outcome, ...(rule ? { rule } : {}) };
}

/** The birth-date level "different" (the last one). */
const BIRTH_DIFFERENT = 6;

/**
 * Evidence of the two records' identities (hub/mpi/identity.ts) beyond the weight: `agrees`, a
 * valid value of a system that is one per person is the same on both; `conflict`, a system both
 * state with valid values that differ by more than a typo (two characters or more) and no value
 * of it in common — `lifelong` if a person keeps it for life and both values pass its check
 * character (hub/mpi/identity.ts `checked`), else `renewable` (at most review).
 */
const NO_IDENTITY_EVIDENCE: { agrees: boolean; conflict?: 'lifelong' | 'renewable' } = Object.freeze({ agrees: false });

function identityEvidence(a: PersonFeatures, b: PersonFeatures): { agrees: boolean; conflict?: 'lifelong' | 'renewable' } {
  // (scored tens of millions of times in a bulk sync: no allocation when there is nothing to compare)
  if (!a.ids || !b.ids) return NO_IDENTITY_EVIDENCE;
  const table = identityTable();
  let agrees = false;
  let conflict: 'lifelong' | 'renewable' | undefined;
  const differing = new Set<string>();
  const same = new Set<string>();
  for (const x of a.ids) {
    for (const y of b.ids) {
      if (!sameSystem(x.system, y.system)) continue;
      const system = table.system(x.system);
      const base = x.system.split(':')[0]!;
      if (x.value === y.value) {
        same.add(base);
        if (system.unique && x.valid && y.valid) agrees = true;
      } else if (system.unique && x.valid && y.valid && editDistance(x.value, y.value, 2) >= 2) {
        differing.add(`${base}\u0000${system.lifelong && checked(x) && checked(y) ? 'lifelong' : 'renewable'}`);
      }
    }
  }
  for (const d of differing) {
    const [base, kind] = d.split('\u0000') as [string, 'lifelong' | 'renewable'];
    if (same.has(base)) continue; // an old and a new passport, one of them on both records
    if (kind === 'lifelong' || !conflict) conflict = kind;
  }
  return conflict ? { agrees, conflict } : { agrees };
}

/**
 * Anything but the name agrees: birth date (to within a month), an identifier, phone, e-mail
 * (the same or one typo: a close one, john.smith12 / john.smith83, is what two John Smiths have), address
 * (close), postcode. Sex and city are shared by too many to count.
 */
function agreesBeyondName(levelOf: (field: FieldName) => number | null | undefined): boolean {
  const at = (field: FieldName, most: number) => {
    const level = levelOf(field);
    return level !== null && level !== undefined && level <= most;
  };
  return at('birth', 3) || at('rid', 2) || at('otherId', 2) || at('phone', 1) || at('email', 1) || at('address', 1) || at('postcode', 0);
}

/** Contact fields and the worst level at which each still agrees (one digit off, a typo, a close address; an e-mail merely close). */
const CONTACT_FIELDS = (['phone', 'email', 'address', 'city', 'postcode'] as FieldName[]).map((f) => [FIELD_INDEX[f], f === 'email' ? 2 : 1] as const);

/**
 * At least three contact fields stated on both records, and none of them agreeing even closely
 * (a phone one digit off, a city misspelt, an address with a typo agree; "#297 Street 149" and
 * "#228 Street 401", merely similar, do not). Two are a move (a new phone and a new street address: the Chinese generator's people,
 * 41 of its true pairs held back at two); a new city, phone and address beside one name and birth
 * date is as often a namesake (bench/mpiWorld.ts's strangers).
 */
function contactDiffers(levels: Array<number | null>): boolean {
  let differing = 0;
  for (const [i, agrees] of CONTACT_FIELDS) {
    const level = levels[i];
    if (level === null || level === undefined) continue;
    if (level <= agrees) return false;
    differing++;
  }
  return differing >= 3;
}

/** An identifier agrees: a strong resident ID, another national number, or e-mail (the same or one typo; a weak resident ID may be a parent's). */
function sharesIdentifier(levelOf: (field: FieldName) => number | null | undefined): boolean {
  const rid = levelOf('rid');
  const other = levelOf('otherId');
  const email = levelOf('email');
  return rid === 0 || (other !== null && other !== undefined && other <= 1) || (email !== null && email !== undefined && email <= 1);
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** A record already in the index, and the enterprise (golden) patient it belongs to. */
export interface Candidate {
  goldenId: string;
  features: PersonFeatures;
}

export interface MatchDecision {
  outcome: Outcome;
  /** The golden patient linked to (MATCH) or proposed (POSSIBLE_MATCH). */
  goldenId?: string;
  best?: PairScore & { candidateId: string };
  /** Other golden patients that scored at review level or above (for the reviewer). */
  alternatives: Array<{ goldenId: string; candidateId: string; weight: number; outcome: Outcome; rule?: string; fields: FieldScore[] }>;
}

/** Score a record against its candidates; per golden patient its best-scoring source record counts. */
export function decide(model: MatchModel, record: PersonFeatures, candidates: Candidate[]): MatchDecision {
  const perGolden = new Map<string, { rank: number; outcome: Outcome; candidate: PersonFeatures }>();
  const vetoed = new Set<string>();
  for (const c of candidates) {
    const s = score(model, record, c.features, false);
    // One source of a golden record with a different valid resident ID (or another lifelong number, or another generation) vetoes that golden record.
    if (s.rule === 'resident-id-conflict' || s.rule === 'identifier-conflict' || s.rule === 'generation-conflict') vetoed.add(c.goldenId);
    const prev = perGolden.get(c.goldenId);
    const r = rank(s);
    if (!prev || r > prev.rank) perGolden.set(c.goldenId, { rank: r, outcome: s.outcome, candidate: c.features });
  }
  // Explained (scored again with each field): only the pairs reported — the best one, and the other
  // golden patients at review level or above.
  const ranked = [...perGolden.entries()]
    .filter(([g]) => !vetoed.has(g))
    .sort((x, y) => y[1].rank - x[1].rank)
    .filter(([, best], i) => i === 0 || best.outcome !== 'NO_MATCH')
    .map(([g, best]): [string, PairScore & { candidateId: string }] => [g, { ...scorePair(model, record, best.candidate), candidateId: best.candidate.id }]);
  const alternatives = ranked.slice(1).filter(([, s]) => s.outcome !== 'NO_MATCH').map(([goldenId, s]) => ({ goldenId, candidateId: s.candidateId, weight: s.weight, outcome: s.outcome, rule: s.rule, fields: s.fields }));
  const top = ranked[0];
  if (!top || top[1].outcome === 'NO_MATCH') return { outcome: 'NO_MATCH', alternatives, ...(top ? { best: top[1] } : {}) };
  return { outcome: top[1].outcome, goldenId: top[0], best: top[1], alternatives };
}

/**
 * Guard rules that hold a pair back on evidence that it is two people: two relatives (twins, a
 * sibling or spouse, a mother and daughter, a household without a birth date to tell them by), two
 * documents of one kind with different numbers (`identifier-differs`: a renewed passport or two
 * people), or a namesake born the same day reached by none of the record's contact data
 * (`contact-conflict`). Not `name-only` or a plain review-band weight: those say there is too
 * little evidence either way, which is a reviewer's question.
 */
const TWO_PEOPLE_RULES = new Set<PairScore['rule']>(['twin-guard', 'given-name-conflict', 'sex-conflict', 'surname-conflict', 'birth-conflict', 'household-guard', 'identifier-differs', 'contact-conflict']);

/**
 * The other golden patients a record goes to review with, beside the one it matched or was
 * proposed: every alternative at review level or above — except, once the record links to a
 * golden patient, those a guard holds back as two people (`TWO_PEOPLE_RULES`). A record that found
 * its person and resembles that person's twin, or a namesake with another passport, is no question
 * for a reviewer (the guard already says the two are most likely two people); a plain weight in
 * the review band, a MATCH-level alternative a bridge could not join or a name-only one still is
 * (a possible duplicate of its golden patient). A record that links to no one is proposed with
 * every alternative. Measured through the store (bench/mpiMisses.ts, 2026-12-07): the Chinese
 * generator's twin-guard alternatives of linked records were 68 of its 102 review records; the
 * world set's identifier-differs and contact-conflict alternatives of linked records were 60
 * items of other people against 4 of the record's own person.
 */
export function reviewAlternatives(decision: MatchDecision): MatchDecision['alternatives'] {
  return decision.alternatives.filter((a) => a.outcome !== 'NO_MATCH' && !(decision.outcome === 'MATCH' && TWO_PEOPLE_RULES.has(a.rule as PairScore['rule'])));
}

/** Fields of identity: one that disagrees outright (its "different" level) contradicts a pair. */
const IDENTITY_FIELDS = new Set<FieldName>(['family', 'given', 'birth', 'sex', 'rid']);

/** Rules that say two records are (or may be) two people, whatever their weight. */
const GUARD_RULES = new Set<PairScore['rule']>(['resident-id-conflict', 'identifier-conflict', 'identifier-differs', 'generation-conflict', 'twin-guard', 'household-guard', 'name-conflict', 'surname-conflict', 'given-name-conflict', 'sex-conflict', 'birth-conflict']);

/**
 * Other golden patients a record links across (a bridge): it matched them as well as the one it
 * joins, and with no identity field contradicting. Two earlier records of one person can share too
 * little to match each other (a typo in the name here, a missing birth date there) while a third
 * matches both; incremental matching alone leaves that person split in two, with a review item.
 * The store joins such golden patients at the end of its round when `mayJoin` allows it. Measured
 * (bench/mpi.ts): Splink fake_1000 F1 0.850 → 0.917, the Chinese generator 0.9956 → 0.9968, no
 * wrong link more on any set; without the identity-field condition, a spouse at one address with
 * a birth date ten days apart was joined.
 */
export function bridgedGoldens(decision: MatchDecision): string[] {
  if (decision.outcome !== 'MATCH') return [];
  return decision.alternatives.filter((a) => a.outcome === 'MATCH' && bridgeable(a.fields)).map((a) => a.goldenId);
}

/**
 * No identity field contradicts — or one name part or the birth date does (a scrambled given
 * name, a birth year ten years off) while an identifier agrees as strongly as one person's number
 * does (its weight, after any discount for a shared value, at least BRIDGE_IDENTIFIER_BITS). Splink
 * fake_1000: 11 bridges of one person's records held back by a birth date ten years off or a
 * scrambled given name beside the same e-mail.
 */
function bridgeable(fields: FieldScore[]): boolean {
  const different = fields.filter((f) => IDENTITY_FIELDS.has(f.field) && f.label.startsWith('different'));
  if (!different.length) return true;
  if (different.length > 1 || (different[0]!.field !== 'family' && different[0]!.field !== 'given' && different[0]!.field !== 'birth')) return false;
  return fields.some((f) => (f.field === 'otherId' || f.field === 'rid' ? f.level === 0 : f.field === 'email' && f.level !== null && f.level <= 1) && f.weight >= BRIDGE_IDENTIFIER_BITS);
}

/** An identifier's agreement this strong (log2: a coincidence of one in a thousand) carries a bridge across one contradicting identity field. */
const BRIDGE_IDENTIFIER_BITS = 10;

/**
 * Whether two golden patients' sources may be one person: no pair across them is one a guard rule
 * tells apart (different valid resident IDs, twins, a household, whole names or birth dates that
 * differ). A bridge never joins what its two sides' own records say are two people.
 */
export function mayJoin(model: MatchModel, a: PersonFeatures[], b: PersonFeatures[]): boolean {
  for (const x of a) for (const y of b) if (GUARD_RULES.has(score(model, x, y, false).rule)) return false;
  return true;
}

function rank(s: Pick<PairScore, 'outcome' | 'weight'>): number {
  return (s.outcome === 'MATCH' ? 2000 : s.outcome === 'POSSIBLE_MATCH' ? 1000 : 0) + s.weight;
}

// ---------------------------------------------------------------- training

/** Training blocking rules: which fields each one blocks on (those fields learn nothing from it). */
const TRAINING_RULES: Array<{ name: string; blocks: FieldName[]; key: (f: PersonFeatures) => string | undefined }> = [
  { name: 'family+birth', blocks: ['family', 'birth'], key: (f) => (f.familySound && f.birth ? `${f.familySound}|${f.birth}` : undefined) },
  { name: 'given+birth year', blocks: ['given', 'birth'], key: (f) => (f.givenSound && f.birth ? `${f.givenSound}|${f.birth.slice(0, 4)}` : undefined) },
  { name: 'family+given', blocks: ['family', 'given'], key: (f) => (f.familySound && f.givenSound ? `${f.familySound}|${f.givenSound}` : undefined) },
  { name: 'resident id', blocks: ['rid'], key: (f) => f.rid?.value },
  { name: 'phone', blocks: ['phone'], key: (f) => f.phone },
  { name: 'other id', blocks: ['otherId'], key: (f) => f.otherId },
  { name: 'email', blocks: ['email'], key: (f) => f.email },
];

/** Starting m: most matches agree, a few are off by a level or two. */
function initialM(levels: number): number[] {
  const m = Array.from({ length: levels }, (_, i) => (i === 0 ? 0.85 : 0.15 / (levels - 1)));
  return m;
}

export interface TrainOptions {
  seed?: number;
  randomPairs?: number;
  /** Records sharing a training key beyond this many are skipped (a common name says little). */
  maxBlock?: number;
  matchThreshold?: number;
  reviewThreshold?: number;
}

export function trainModel(records: PersonFeatures[], options: TrainOptions = {}): MatchModel {
  const random = seededRandom(options.seed ?? 42); // training is reproducible
  const n = records.length;
  const F = comparisons.length;
  // Term frequencies: of records (rare-value fields), of different people (shared-value fields).
  const tf: MatchModel['tf'] = {};
  const tally = new SharedValueTally();
  for (const r of records) tally.add(r);
  for (const c of comparisons) {
    if (!c.tf) continue;
    if (c.tfMode === 'shared') {
      tf[c.field] = tally.table(c.field);
      continue;
    }
    const counts = new Map<string, number>();
    let total = 0;
    for (const r of records) {
      const v = c.tf(r);
      if (v === undefined) continue;
      counts.set(v, (counts.get(v) ?? 0) + 1);
      total++;
    }
    const table: Record<string, number> = {};
    const common = [...counts.entries()].filter(([, k]) => k >= 2).sort((x, y) => y[1] - x[1]).slice(0, 50_000);
    for (const [v, k] of common) table[v] = k / total;
    tf[c.field] = table;
  }
  // u from random pairs. A pair agreeing on a widely shared value (a placeholder) is left out of
  // that field's u: its own share stands for it, and counted in the average it would make every
  // ordinary phone or address look as weak as the placeholder.
  const randomLevels: Array<Array<number | null>> = [];
  const wanted = Math.min(options.randomPairs ?? 200_000, (n * (n - 1)) / 2);
  for (let k = 0; k < wanted && n > 1; k++) {
    const i = Math.floor(random() * n);
    let j = Math.floor(random() * (n - 1));
    if (j >= i) j++;
    const levels = pairLevels(records[i]!, records[j]!);
    for (let f = 0; f < F; f++) {
      const level = levels[f];
      if (level === null) continue;
      const c = comparisons[f]!;
      if (c.tfMode === 'shared' && c.tfLevels!.includes(level) && (isShared(tf, c, records[i]!) || isShared(tf, c, records[j]!))) levels[f] = null;
    }
    randomLevels.push(levels);
  }
  const drawn = randomLevels.length;
  let u = uFromRandomPairs(randomLevels, null);
  // m per blocking rule, leave-one-out posteriors.
  const maxBlock = options.maxBlock ?? 60;
  const blockedPairs: Record<string, number> = {};
  const rulePairs: Array<{ blocks: Set<number>; levels: Array<Array<number | null>> }> = [];
  for (const rule of TRAINING_RULES) {
    const groups = new Map<string, number[]>();
    records.forEach((r, i) => {
      const key = rule.key(r);
      if (key === undefined) return;
      const g = groups.get(key);
      if (g) g.push(i);
      else groups.set(key, [i]);
    });
    const levels: Array<Array<number | null>> = [];
    for (const members of groups.values()) {
      if (members.length < 2 || members.length > maxBlock) continue;
      for (let x = 0; x < members.length; x++) for (let y = x + 1; y < members.length; y++) levels.push(pairLevels(records[members[x]!]!, records[members[y]!]!));
    }
    if (levels.length > 400_000) levels.length = 400_000;
    blockedPairs[rule.name] = levels.length;
    const blocks = new Set(rule.blocks.map((b) => comparisons.findIndex((c) => c.field === b)));
    rulePairs.push({ blocks, levels });
  }
  let m = comparisons.map((c) => initialM(c.levels.length));
  // Two rounds: m from the blocked pairs with the u of the round; then u again from the random
  // pairs, each counted by how likely it is two different people (`uFromRandomPairs`).
  for (let round = 0; round < 2; round++) {
    if (round > 0) u = uFromRandomPairs(randomLevels, m, n);
    for (let iteration = 0; iteration < 4; iteration++) {
      const mCounts = comparisons.map((c) => new Array<number>(c.levels.length).fill(0));
      for (const { blocks, levels } of rulePairs) {
        if (!levels.length) continue;
        // λ of this block: the mean posterior, itself re-estimated (start at one half).
        let lambda = 0.5;
        for (let pass = 0; pass < 2; pass++) {
          let sum = 0;
          for (const pair of levels) sum += posterior(pair, m, u, blocks, -1, lambda);
          lambda = Math.min(0.999, Math.max(0.001, sum / levels.length));
        }
        for (const pair of levels) {
          for (let f = 0; f < F; f++) {
            if (blocks.has(f) || pair[f] === null) continue;
            mCounts[f]![pair[f]!]! += posterior(pair, m, u, blocks, f, lambda);
          }
        }
      }
      m = mCounts.map((counts, f) => (counts.reduce((a, b) => a + b, 0) >= 5 ? smooth(counts, 0.5) : m[f]!));
    }
  }
  // Prior: the expected matching pairs among the candidate pairs the runtime blocking produces.
  const fields = Object.fromEntries(comparisons.map((c, f) => [c.field, { m: m[f]!.map(round6), u: u[f]!.map(round6) }])) as Record<FieldName, FieldParameters>;
  const model: MatchModel = {
    priorLog2: 0,
    fields,
    tf,
    tfFloor: 1 / Math.max(n, 1),
    matchThreshold: options.matchThreshold ?? 6,
    reviewThreshold: options.reviewThreshold ?? 0,
    trainedOn: { records: n, randomPairs: drawn, blockedPairs },
  };
  model.priorLog2 = round(estimatePriorLog2(model, records, random));
  return model;
}

/**
 * u of every field and level from random pairs. Without m (`null`), every pair counts as two
 * different people; with m, each pair counts by its posterior of being two different people, λ
 * (the share of random pairs that are one person) estimated along. Random pairs are almost all
 * non-matches in a large population, but not in a small one full of duplicates: in Splink's
 * fake_1000 (1,000 records of 251 people) one random pair in 250 is one person, and the matches
 * among the random pairs made up most of the pairs agreeing on birth date or e-mail — an exact
 * birth date weighed 7.9 bits where two different people share one at 13.5 (counted with the
 * labels). In a population of a million the correction changes nothing.
 */
function uFromRandomPairs(pairs: Array<Array<number | null>>, m: number[][] | null, records = 2): number[][] {
  const counts = comparisons.map((c) => new Array<number>(c.levels.length).fill(0));
  const plain = () => {
    for (const pair of pairs) for (let f = 0; f < pair.length; f++) if (pair[f] !== null) counts[f]![pair[f]!]!++;
    return counts.map((k) => smooth(k, 0.5));
  };
  const u0 = plain();
  if (!m || !pairs.length) return u0;
  const none = new Set<number>();
  let u = u0;
  // A start: about one other record of one's own among the population.
  let lambda = 1 / Math.max(records, 2);
  for (let iteration = 0; iteration < 5; iteration++) {
    for (const k of counts) k.fill(0);
    let matches = 0;
    for (const pair of pairs) {
      const p = posterior(pair, m, u, none, -1, lambda);
      matches += p;
      for (let f = 0; f < pair.length; f++) if (pair[f] !== null) counts[f]![pair[f]!]! += 1 - p;
    }
    lambda = Math.min(0.5, Math.max(1e-9, matches / pairs.length));
    u = counts.map((k) => smooth(k, 0.5));
  }
  return u;
}

function isShared(tf: MatchModel['tf'], c: Comparison, f: PersonFeatures): boolean {
  const value = c.tf!(f);
  return value !== undefined && tf[c.field]?.[value] !== undefined;
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

function smooth(counts: number[], pseudo: number): number[] {
  const total = counts.reduce((a, b) => a + b, 0) + pseudo * counts.length;
  return counts.map((k) => (k + pseudo) / total);
}

function posterior(pair: Array<number | null>, m: number[][], u: number[][], blocks: Set<number>, leaveOut: number, lambda: number): number {
  let logOdds = Math.log2(lambda / (1 - lambda));
  for (let f = 0; f < pair.length; f++) {
    const level = pair[f];
    if (level === null || f === leaveOut || blocks.has(f)) continue;
    logOdds += Math.log2(m[f]![level]! / u[f]![level]!);
  }
  return 1 / (1 + 2 ** -Math.min(60, Math.max(-60, logOdds)));
}

/**
 * The prior odds: matching pairs expected among all pairs. Counted on the candidate pairs of the
 * runtime blocking (where nearly all matches are) with a flat prior, each pair weighted by its
 * posterior; the few matches blocking misses do not move a log-odds prior noticeably.
 */
function estimatePriorLog2(model: MatchModel, records: PersonFeatures[], random: () => number): number {
  const n = records.length;
  if (n < 2) return -10;
  const sample = n > 20_000 ? records.filter(() => random() < 20_000 / n) : records;
  const scale = n / sample.length;
  const index = new Map<string, number[]>();
  sample.forEach((r, i) => {
    for (const k of blockingKeys(r)) {
      const g = index.get(k);
      if (g) g.push(i);
      else index.set(k, [i]);
    }
  });
  const seen = new Set<string>();
  let expected = 0;
  const flat = { ...model, priorLog2: 0 };
  for (const members of index.values()) {
    if (members.length > 60) continue;
    for (let x = 0; x < members.length; x++) {
      for (let y = x + 1; y < members.length; y++) {
        const key = `${members[x]}:${members[y]}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const s = scorePair(flat, sample[members[x]!]!, sample[members[y]!]!);
        expected += s.probability > 0.5 ? 1 : 0;
      }
    }
  }
  // Matches in a sample of share s scale with s², pairs too: the ratio needs no correction beyond the sampled pair count.
  void scale;
  const pairs = (sample.length * (sample.length - 1)) / 2;
  return Math.log2(Math.max(expected, 1) / pairs);
}

/**
 * The same model for a population of another size: the prior odds that two records picked at
 * random match scale with 1 / records (each person has a few records, pairs grow with the square).
 * The term-frequency floor is 1 / records, but never below the floor of the records the model was
 * trained on: a name missing from the training table is only known to be rarer than that sample can
 * tell, not to be one in the whole population (at 200,000 records a floor of 1 / 200,000 credited
 * two different people sharing an ordinary given name with ~17 bits and sent them to review).
 * `shared`: the population's own counts of shared values (a hub's placeholder phone is its own, not
 * the training set's); a value counts as shared as widely as either the training table or the
 * population says.
 */
export function modelForPopulation(model: MatchModel, records: number, shared?: SharedValueCounts): MatchModel {
  const n = Math.max(records, 2);
  return { ...model, priorLog2: model.priorLog2 + Math.log2(model.trainedOn.records / n), tfFloor: Math.max(1 / n, model.tfFloor), population: n, ...(shared ? { shared } : {}) };
}
