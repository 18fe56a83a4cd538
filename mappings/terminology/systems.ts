/**
 * Code-system URIs and the hub's own extension / tag URLs for terminology. One place for these names:
 * the map stage, the operations and the governance store all read them from here.
 */

export const ICD10 = 'http://hl7.org/fhir/sid/icd-10';
/** China's national clinical edition (国家临床版) of ICD-10: a source system only, reduced to ICD-10 for mapping. */
export const ICD10_CN = 'urn:yilian:icd-10-cn';
export const ICD11_MMS = 'http://id.who.int/icd/release/11/mms';
export const LOINC = 'http://loinc.org';
export const UCUM = 'http://unitsofmeasure.org';
export const SNOMED = 'http://snomed.info/sct';

/** On a coding the map stage added: the ConceptMap (url|version) that produced it. */
export const DERIVED_FROM_URL = 'https://yilian.example/fhir/StructureDefinition/derived-from-conceptmap';
/** On a coding the map stage added: the ConceptMap equivalence of the match (equivalent, wider, …). */
export const EQUIVALENCE_URL = 'https://yilian.example/fhir/StructureDefinition/conceptmap-equivalence';
/** On a converted valueQuantity / range bound: the quantity exactly as the member sent it. */
export const ORIGINAL_QUANTITY_URL = 'https://yilian.example/fhir/StructureDefinition/original-quantity';
/** Resource.meta.extension: a ConceptMap url|version used to derive codes on this resource. */
export const MAP_VERSION_URL = 'https://yilian.example/fhir/StructureDefinition/conceptmap-version';
/** Resource.meta.extension: a source coding that was mapped to a standard code (coverage counts it). */
export const MAPPED_SOURCE_URL = 'https://yilian.example/fhir/StructureDefinition/mapped-source';
/** Resource.meta.extension: a source coding (or unit) that could not be mapped (the unmapped worklist counts it). */
export const UNMAPPED_SOURCE_URL = 'https://yilian.example/fhir/StructureDefinition/unmapped-source';
/** Resource.meta.tag system: the mapping state of the resource (`unmapped` when anything was left unmapped). */
export const MAPPING_STATUS_SYSTEM = 'https://yilian.example/fhir/CodeSystem/mapping-status';

/** Base URL of the hub's ConceptMaps (`<base>/<id>`). */
export const CONCEPT_MAP_BASE = 'https://yilian.example/fhir/ConceptMap';

/** The WHO ICD-10 → ICD-11 table: a base map, replaced only by importing a WHO release, never edited by proposals. */
export const WHO_MAP_URL = `${CONCEPT_MAP_BASE}/who-icd10-icd11`;

/**
 * Precedence of maps that hold the same source code (lower first): the committee's approved maps
 * (member local maps, the committee's ICD-10 / clinical-edition additions, anything imported) come
 * before the base maps published by others (the WHO table), because the committee approves a row
 * precisely to correct or refine the base for this alliance. `$translate` lists matches in this
 * order (FHIR `match` order) and the map stage applies the first map's answer.
 */
export function mapPrecedence(url: string): number {
  return url === WHO_MAP_URL ? 1 : 0;
}

/** A member's local code system: `urn:yilian:<member>:<v2 coding system name>` (identifier namespaces `…:id:…` excluded). */
const LOCAL_SYSTEM = /^urn:yilian:([^:]+):(?!id:)([^:]+)$/;

export function localSystemMember(system: string): string | undefined {
  const m = LOCAL_SYSTEM.exec(system);
  return m && m[1] !== 'icd-10-cn' ? m[1] : undefined;
}

/** Systems whose codes the committee maps (sources); everything else is either standard or not ours to map. */
export function isGovernedSource(system: string): boolean {
  return system === ICD10 || system === ICD10_CN || localSystemMember(system) !== undefined;
}

/** Standard target systems: a coded element that already carries one of these is mapped. */
export function isStandardTarget(system: string): boolean {
  return system === ICD11_MMS || system === LOINC || system === SNOMED;
}
