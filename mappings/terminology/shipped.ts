/**
 * The terminology data the hub ships: the ConceptMaps under mappings/conceptmaps/ and the LOINC
 * subset under mappings/terminology/data/. Reads only these files of the package itself (as a JSON
 * import would); what a process maps with is hub/terminology/active.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { validateConceptMap, type ConceptMap, type LoincConcept } from './conceptmap';

/** The repository root (holds package.json): the same from sources (jest) and from dist/. */
export function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'mappings'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find the repository root from ${__dirname}`);
}

export function shippedConceptMapDir(): string {
  return path.join(repoRoot(), 'mappings', 'conceptmaps');
}

export function terminologyDataDir(): string {
  return path.join(repoRoot(), 'mappings', 'terminology', 'data');
}

/** Every `*.json` ConceptMap in a directory, validated, sorted by file name. */
export function readConceptMapDir(dir: string): ConceptMap[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => validateConceptMap(JSON.parse(readFileSync(path.join(dir, f), 'utf8')), f));
}

let loinc: LoincConcept[] | undefined;

/** The LOINC subset the hub ships (mappings/terminology/data/loinc-subset.json, with its notice). */
export function loincSubset(): LoincConcept[] {
  loinc ??= (JSON.parse(readFileSync(path.join(terminologyDataDir(), 'loinc-subset.json'), 'utf8')) as { concepts: LoincConcept[] }).concepts;
  return loinc;
}
