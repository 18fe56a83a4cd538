/**
 * The terminology this process maps with: the ConceptMaps shipped under mappings/conceptmaps/ (the
 * demo and first start), replaced by the approved versions in the governance store once a process
 * syncs with it (versions.ts `syncTerminology`). The map stage reads `activeTerminology()`; it
 * never reads files or the database itself.
 */
import { readConceptMapDir, shippedConceptMapDir } from '../../mappings/terminology/shipped';
import { Terminology } from '../../mappings/terminology/translator';

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
