/**
 * Where the in-process terminology comes from: the ConceptMaps shipped under mappings/conceptmaps/
 * (the demo and first start), replaced by the approved versions in the governance store once a
 * process syncs with it (hub/governance.ts `syncTerminology`). The map stage reads `activeTerminology()`;
 * it never reads files or the database itself.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { validateConceptMap, type ConceptMap, type LoincConcept } from './conceptmap';
import { Terminology } from './translator';

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

let active: Terminology | undefined;
let activeKey = 'shipped';

/** The terminology the pipeline maps with in this process. */
export function activeTerminology(): Terminology {
  active ??= new Terminology(readConceptMapDir(shippedConceptMapDir()));
  return active;
}

/** Replace the process's terminology (after a sync with the governance store). `key` names what it was built from. */
export function setActiveTerminology(terminology: Terminology, key: string): void {
  active = terminology;
  activeKey = key;
}

/** What the active terminology was built from ('shipped', or a digest of the approved versions). */
export function activeTerminologyKey(): string {
  return activeKey;
}
