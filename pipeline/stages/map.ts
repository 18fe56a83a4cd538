/**
 * Stage "map": local codes → ICD-11, LOINC and UCUM (mappings/terminology). Pure: every converted
 * resource gets the standard codings added (originals kept), quantities in the canonical unit
 * (originals kept), and the ConceptMap versions used recorded on the resource and in
 * `mappingVersions` (→ resource.mapping_versions). An unmapped code never stops a message: the
 * resource is stored, tagged `unmapped`, and the merge's write feeds the unmapped worklist
 * (hub/migrations.ts 4, trigger on `resource`).
 */
import type { MemberConfig } from '../../hub/config';
import { mapResource, recordOnProvenance } from '../../mappings/terminology/mapResource';

import type { Terminology } from '../../mappings/terminology/translator';
import type { ConvertedMessage } from './convert';
import { activeTerminology } from '../../hub/terminology/active';

export interface MappedMessage extends ConvertedMessage {
  /** ConceptMap id|version pairs that were applied (recorded in provenance). */
  mappingVersions: string[];
  /** Coded elements and units left unmapped in this message. */
  unmappedCount?: number;
}

export interface MapContext {
  /** Default: the process's active terminology (shipped maps, or the approved versions once synced). */
  terminology?: Terminology;
  /** For the member's coding-system aliases (`codingSystemAliases`). */
  member?: Pick<MemberConfig, 'id' | 'codingSystemAliases'>;
}

/** Generic over what was converted: converted HL7 v2 messages and resources read from FHIR servers take the same step. */
export function mapStage<T extends Pick<ConvertedMessage, 'resources'>>(converted: T, ctx: MapContext = {}): T & { mappingVersions: string[]; unmappedCount: number } {
  const terminology = ctx.terminology ?? activeTerminology();
  const aliases = ctx.member?.codingSystemAliases;
  const versions = new Set<string>();
  let unmappedCount = 0;
  const provenances: Array<Record<string, unknown>> = [];
  for (const resource of converted.resources) {
    if (resource.resourceType === 'Provenance') provenances.push(resource as Record<string, unknown>);
    const result = mapResource(resource as Record<string, unknown>, { terminology, aliases });
    for (const v of result.versions) versions.add(v);
    unmappedCount += result.unmapped.length;
  }
  const mappingVersions = [...versions].sort();
  for (const provenance of provenances) recordOnProvenance(provenance, mappingVersions);
  return { ...converted, mappingVersions, unmappedCount };
}
