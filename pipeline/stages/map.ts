/**
 * Stage "map": local codes → ICD-11, LOINC, UCUM and shared service codes. The terminology issue
 * fills it; until then codings pass through unchanged and no mapping version is recorded.
 */
import type { ConvertedMessage } from './convert';

export interface MappedMessage extends ConvertedMessage {
  /** ConceptMap id|version pairs that were applied (recorded in provenance). */
  mappingVersions: string[];
}

export function mapStage(converted: ConvertedMessage): MappedMessage {
  return { ...converted, mappingVersions: [] };
}
