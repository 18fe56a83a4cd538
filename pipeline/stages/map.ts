/**
 * Stage "map": local codes → ICD-11, LOINC and UCUM (mappings/terminology). Pure: every converted
 * resource gets the standard codings added (originals kept), quantities in the canonical unit
 * (originals kept), and the ConceptMap versions used recorded on the resource and in
 * `mappingVersions` (→ resource.mapping_versions). An unmapped code never stops a message: the
 * resource is stored, tagged `unmapped`, and the merge's write feeds the unmapped worklist
 * (hub/migrations.ts 4, trigger on `resource`).
 */
import type { MemberConfig } from '../../adapters/config';
import { mapResource } from '../../mappings/terminology/mapResource';
import { activeTerminology } from '../../mappings/terminology/store';
import type { Terminology } from '../../mappings/terminology/translator';
import type { ConvertedMessage } from './convert';

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
  member?: Pick<MemberConfig, 'id'> & { codingSystemAliases?: Record<string, string> };
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

/**
 * The message's Provenance names each ConceptMap version as an entity the targets were derived with
 * (replacing what an earlier run recorded). Also used by reprocess (hub/governance.ts) to rewrite it.
 */
export function recordOnProvenance(provenance: Record<string, unknown>, mappingVersions: string[]): void {
  type Entity = { role: string; what: { identifier?: { system?: string; value?: string }; display?: string } };
  const entities = ((provenance.entity as Entity[] | undefined) ?? []).filter((e) => !(e.role === 'derivation' && e.what.identifier?.system === CONCEPT_MAP_IDENTIFIER));
  for (const v of mappingVersions) {
    const [url, version] = v.split('|');
    entities.push({ role: 'derivation', what: { identifier: { system: CONCEPT_MAP_IDENTIFIER, value: v }, display: `ConceptMap ${url!.split('/').pop()} version ${version}` } });
  }
  if (entities.length) provenance.entity = entities;
  else delete provenance.entity;
}

/** Provenance.entity identifier system for a ConceptMap canonical (url|version). */
const CONCEPT_MAP_IDENTIFIER = 'urn:ietf:rfc:3986';
