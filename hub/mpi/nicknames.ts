/**
 * Latin given names that are one person's: Robert / Bob, Margaret / Peggy, Edward / Eddie,
 * Susan / Suzie. From the public "nickname-and-diminutive-names-lookup" list (data/nicknames/
 * names.csv, Apache-2.0, data/nicknames/LICENSE): each row is a name and the names it is known by.
 * Two given names are aliases when either's row lists the other (one step only: chains such as
 * Robert → Bob → Bert → Albert would make everyone an alias). Loaded once, on first use. Pure.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

let aliases: Map<string, Set<string>> | undefined;

/** data/nicknames/names.csv, found upwards from here (sources and dist/ sit at different depths). */
function dataFile(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'data', 'nicknames', 'names.csv');
    try {
      readFileSync(candidate, { flag: 'r' }).length;
      return candidate;
    } catch {
      // not at this level
    }
  }
  throw new Error('data/nicknames/names.csv not found');
}

function table(): Map<string, Set<string>> {
  if (aliases) return aliases;
  const out = new Map<string, Set<string>>();
  const add = (a: string, b: string) => {
    let set = out.get(a);
    if (!set) out.set(a, (set = new Set()));
    set.add(b);
  };
  for (const line of readFileSync(dataFile(), 'utf8').split(/\r?\n/)) {
    const names = line.split(',').map((n) => n.trim().toLowerCase().replace(/[^a-z]/g, '')).filter(Boolean);
    const [first, ...rest] = names;
    if (!first) continue;
    for (const n of rest) {
      if (n === first) continue;
      add(first, n);
      add(n, first);
    }
  }
  aliases = out;
  return out;
}

/** Folded Latin given names (lower-case a–z) that are aliases of each other. */
export function areAliases(a: string, b: string): boolean {
  return a !== b && (table().get(a)?.has(b) ?? false);
}

/** The names a folded given name is also known by (empty for names not in the list). */
export function aliasesOf(name: string): ReadonlySet<string> {
  return table().get(name) ?? EMPTY;
}
const EMPTY: ReadonlySet<string> = new Set();
