/**
 * The pure part of the pipeline stage "map": one FHIR resource in, the same resource with standard
 * codings added. Every coded element named in CODED_ELEMENTS (the one list of what is mapped) keeps
 * its original codings and gains the ICD-11 / LOINC coding its ConceptMap gives, marked with the map
 * (url|version) and equivalence — the first map in precedence order that holds the code; an
 * Observation's quantity and reference range are converted to the LOINC test's canonical UCUM unit
 * with the original quantity kept beside them. Resource.meta says which map versions were used,
 * which source codings were mapped and which were not (the unmapped worklist and the coverage
 * counters are derived from exactly that), and tags the resource `unmapped` when anything was left.
 *
 * Idempotent: what a previous run added is removed first, so re-deriving a stored resource after a
 * mapping change (reprocess) gives the same result as running the message again. Never drops data:
 * an unmapped code or an inconvertible unit leaves the original as it was.
 */
import { preferredMatches, type Terminology } from './translator';
import { resolveUnit, roundConverted, unitConversion } from './ucum';
import {
  DERIVED_FROM_URL,
  EQUIVALENCE_URL,
  ICD10,
  ICD10_CN,
  ICD11_MMS,
  LOINC,
  MAPPED_SOURCE_URL,
  MAPPING_STATUS_SYSTEM,
  MAP_VERSION_URL,
  ORIGINAL_QUANTITY_URL,
  UCUM,
  UNMAPPED_SOURCE_URL,
  isGovernedSource,
  isStandardTarget,
} from './systems';

type Json = Record<string, unknown>;
interface Extension {
  url: string;
  [k: string]: unknown;
}
export interface Coding {
  system?: string;
  code?: string;
  display?: string;
  extension?: Extension[];
  [k: string]: unknown;
}
interface CodeableConcept {
  coding?: Coding[];
  text?: string;
}
interface Quantity {
  value?: number;
  unit?: string;
  system?: string;
  code?: string;
  extension?: Extension[];
  [k: string]: unknown;
}

export interface MapOptions {
  terminology: Terminology;
  /** The member's coding-system aliases: v2 coding-system name → standard system URI (`ICD10-CN` → clinical edition). */
  aliases?: Readonly<Record<string, string>>;
}

export interface SourceCoding {
  system: string;
  code: string;
  display?: string;
}

export interface ResourceMapping {
  /** ConceptMap url|version used on this resource. */
  versions: Set<string>;
  mapped: SourceCoding[];
  unmapped: SourceCoding[];
}

const OUR_META_EXTENSIONS = new Set([MAP_VERSION_URL, MAPPED_SOURCE_URL, UNMAPPED_SOURCE_URL]);

/**
 * Every coded element the map stage maps, per resource type: CodeableConcept paths, `x[]` meaning
 * each element of the array x. These are the clinical codes the committee governs (diagnoses,
 * tests and results, reasons, allergens, vaccines, specimens, medications, charges), in the
 * resources the HL7 v2 conversion produces (mappings/hl7v2/segments.ts) and those member FHIR
 * servers send as they are. Not here on purpose: administrative HL7-table codes (Encounter.type
 * and serviceType, Condition.category, Observation.method / bodySite / interpretation,
 * Coverage.type, Patient.maritalStatus), which are bound to HL7 value sets rather than mapped, and
 * Encounter.diagnosis, which references Conditions that are mapped themselves. A coded element
 * whose source code no map covers goes to the worklist whichever path it is on.
 */
export const CODED_ELEMENTS: Readonly<Record<string, readonly string[]>> = {
  Condition: ['code'],
  Observation: ['code', 'valueCodeableConcept', 'component[].code', 'component[].valueCodeableConcept'],
  DiagnosticReport: ['code', 'conclusionCode[]'],
  ServiceRequest: ['code', 'reasonCode[]'],
  Procedure: ['code', 'reasonCode[]'],
  Encounter: ['reasonCode[]'],
  AllergyIntolerance: ['code'],
  Immunization: ['vaccineCode'],
  Specimen: ['type'],
  ChargeItem: ['code'],
  MedicationRequest: ['medicationCodeableConcept', 'reasonCode[]'],
  MedicationStatement: ['medicationCodeableConcept'],
  MedicationAdministration: ['medicationCodeableConcept'],
  MedicationDispense: ['medicationCodeableConcept'],
  Medication: ['code'],
};

/** A path split once: each step a property name, and whether it walks every element of an array. */
type Step = { key: string; each: boolean };
const compiledPaths = new Map<string, Step[][]>(
  Object.entries(CODED_ELEMENTS).map(([type, paths]) => [type, paths.map((p) => p.split('.').map((part) => (part.endsWith('[]') ? { key: part.slice(0, -2), each: true } : { key: part, each: false })))]),
);

/** The CodeableConcepts at a compiled path (none when absent or not objects). */
function conceptsAt(resource: Json, steps: Step[], out: CodeableConcept[] = []): CodeableConcept[] {
  const walk = (value: unknown, i: number): void => {
    if (value === null || typeof value !== 'object') return;
    if (i === steps.length) {
      if (!Array.isArray(value)) out.push(value as CodeableConcept);
      return;
    }
    const step = steps[i]!;
    const next = (value as Json)[step.key];
    if (step.each) {
      if (Array.isArray(next)) for (const item of next) walk(item, i + 1);
    } else walk(next, i + 1);
  };
  walk(resource, 0);
  return out;
}

/** Every coded element of a resource, in CODED_ELEMENTS order. */
export function codedElements(resource: Json): CodeableConcept[] {
  const paths = compiledPaths.get(resource.resourceType as string);
  if (!paths) return [];
  const out: CodeableConcept[] = [];
  for (const steps of paths) conceptsAt(resource, steps, out);
  return out;
}

/** Map one resource in place; returns what was used and found. */
export function mapResource(resource: Json, options: MapOptions): ResourceMapping {
  const out: ResourceMapping = { versions: new Set(), mapped: [], unmapped: [] };
  stripDerived(resource);
  const type = resource.resourceType as string;
  if (!compiledPaths.has(type)) return out;
  const withAliases = !!options.aliases && Object.keys(options.aliases).length > 0;
  for (const concept of codedElements(resource)) mapConcept(concept, options, out, withAliases);
  if (type === 'Observation') {
    const code = resource.code as CodeableConcept | undefined;
    for (const component of (resource.component as Array<{ code?: CodeableConcept; valueQuantity?: Quantity }> | undefined) ?? []) {
      if (component.valueQuantity && component.code) convertQuantity(component.code, component.valueQuantity, undefined, options, out);
    }
    if (code && resource.valueQuantity) convertQuantity(code, resource.valueQuantity as Quantity, resource.referenceRange as Json[] | undefined, options, out);
  }
  writeMeta(resource, out);
  return out;
}

/** Remove what an earlier run of mapResource added, restoring originals. */
export function stripDerived(resource: Json): void {
  const visitConcept = (cc: CodeableConcept | undefined) => {
    // Fresh from convert there is nothing to strip: look before allocating.
    if (!cc?.coding?.some((c) => c.extension)) return;
    cc.coding = cc.coding.filter((c) => !c.extension?.some((e) => e.url === DERIVED_FROM_URL));
  };
  const restore = (q: Quantity | undefined): Quantity | undefined => {
    const original = q?.extension?.find((e) => e.url === ORIGINAL_QUANTITY_URL)?.valueQuantity as Quantity | undefined;
    return original ? { ...original } : q;
  };
  for (const concept of codedElements(resource)) visitConcept(concept);
  if (resource.valueQuantity) resource.valueQuantity = restore(resource.valueQuantity as Quantity);
  for (const range of (resource.referenceRange as Json[] | undefined) ?? []) {
    if (range.low) range.low = restore(range.low as Quantity);
    if (range.high) range.high = restore(range.high as Quantity);
  }
  for (const component of (resource.component as Json[] | undefined) ?? []) {
    if (component.valueQuantity) component.valueQuantity = restore(component.valueQuantity as Quantity);
  }
  const meta = resource.meta as { extension?: Extension[]; tag?: Coding[] } | undefined;
  if (meta) {
    if (meta.extension) {
      meta.extension = meta.extension.filter((e) => !OUR_META_EXTENSIONS.has(e.url));
      if (meta.extension.length === 0) delete meta.extension;
    }
    if (meta.tag) {
      meta.tag = meta.tag.filter((t) => t.system !== MAPPING_STATUS_SYSTEM);
      if (meta.tag.length === 0) delete meta.tag;
    }
    if (Object.keys(meta).length === 0) delete resource.meta;
  }
}

function resolveAlias(system: string, options: MapOptions): string {
  if (!options.aliases) return system;
  const m = /^urn:yilian:[^:]+:([^:]+)$/.exec(system);
  if (!m) return system;
  const name = decodeURIComponent(m[1]!);
  return options.aliases[name] ?? options.aliases[name.toUpperCase()] ?? system;
}

function mapConcept(concept: CodeableConcept, options: MapOptions, out: ResourceMapping, withAliases: boolean): void {
  const codings = concept.coding;
  if (!codings?.length) return;
  if (withAliases) for (const c of codings) if (c.system) c.system = resolveAlias(c.system, options);
  let first: SourceCoding | undefined;
  let standard: SourceCoding | undefined;
  let mapped = false;
  const added: Coding[] = [];
  for (const coding of codings) {
    if (!coding.system || !coding.code) continue;
    if (isStandardTarget(coding.system)) {
      standard ??= source(coding, concept);
      continue;
    }
    // Governed: ICD-10, the clinical edition, `urn:yilian:<member>:…`, and any system a map
    // translates from (a member FHIR server's own code system URL, once the committee maps it).
    if (!isGovernedSource(coding.system) && !options.terminology.isSource(coding.system)) continue;
    first ??= source(coding, concept);
    const target = coding.system === ICD10 || coding.system === ICD10_CN ? ICD11_MMS : undefined;
    const translation = options.terminology.translate(coding.system, coding.code, target);
    if (!translation.result) continue;
    for (const match of preferredMatches(translation)) {
      if (!match.concept || match.equivalence === 'unmatched' || match.equivalence === 'disjoint') continue;
      const { system, code } = match.concept;
      if (codings.some((c) => c.system === system && c.code === code) || added.some((c) => c.system === system && c.code === code)) continue;
      added.push({
        extension: [
          { url: DERIVED_FROM_URL, valueCanonical: match.source },
          { url: EQUIVALENCE_URL, valueCode: match.equivalence },
        ],
        system,
        code,
        ...(match.concept.display ? { display: match.concept.display } : {}),
      });
      out.versions.add(match.source);
      mapped = true;
    }
  }
  if (added.length) codings.push(...added);
  if (first) {
    if (mapped || standard) out.mapped.push(first);
    else out.unmapped.push(first);
  } else if (standard) out.mapped.push(standard);
}

function source(coding: Coding, concept: CodeableConcept): SourceCoding {
  const display = coding.display ?? concept.text;
  return { system: coding.system!, code: coding.code!, ...(display ? { display } : {}) };
}

function convertQuantity(code: CodeableConcept, quantity: Quantity, ranges: Json[] | undefined, options: MapOptions, out: ResourceMapping): void {
  if (typeof quantity.value !== 'number') return;
  const loinc = code.coding?.find((c) => c.system === LOINC && c.code)?.code;
  if (!loinc) return;
  const canonical = options.terminology.canonicalUnit(loinc);
  if (!canonical) return;
  const sent = quantity.system === UCUM && quantity.code ? quantity.code : (quantity.unit ?? quantity.code ?? '');
  const unit = resolveUnit(sent);
  const refuse = (reason: string): void => void out.unmapped.push({ system: UCUM, code: sent === '' ? '(none)' : sent, display: `unit for LOINC ${loinc}: ${reason}` });
  if (!unit.ok) return refuse(unit.reason);
  // The molar mass is on both codes of a mass/substance pair (analytes.json through the canonical-units
  // map), so mmol/L under the mass code 2345-7 converts to mg/dL instead of being refused.
  const conversion = unitConversion(unit.code, canonical.unit, canonical.molarMass);
  if (!conversion.ok) return refuse(conversion.reason);
  out.versions.add(canonical.source);
  const apply = (q: Quantity): Quantity => {
    if (typeof q.value !== 'number') return q;
    if (q.value === roundConverted(conversion.convert(q.value)) && q.system === UCUM && q.code === canonical.unit && q.unit === canonical.unit) return q;
    return {
      extension: [{ url: ORIGINAL_QUANTITY_URL, valueQuantity: { ...q } }],
      value: roundConverted(conversion.convert(q.value)),
      ...(q.comparator ? { comparator: q.comparator } : {}),
      unit: canonical.unit,
      system: UCUM,
      code: canonical.unit,
    };
  };
  const converted = apply(quantity);
  if (converted !== quantity) {
    for (const k of Object.keys(quantity)) delete quantity[k];
    Object.assign(quantity, converted);
  }
  for (const range of ranges ?? []) {
    // A bound without a unit of its own is in the result's unit (HL7 v2 OBX-7 with OBX-6).
    for (const side of ['low', 'high'] as const) {
      const bound = range[side] as Quantity | undefined;
      if (bound && typeof bound.value === 'number') range[side] = apply(bound);
    }
  }
}

function writeMeta(resource: Json, out: ResourceMapping): void {
  if (out.versions.size === 0 && out.mapped.length === 0 && out.unmapped.length === 0) return;
  const meta = ((resource.meta as Json | undefined) ?? {}) as { extension?: Extension[]; tag?: Coding[] };
  const extension = meta.extension ?? [];
  for (const v of [...out.versions].sort()) extension.push({ url: MAP_VERSION_URL, valueCanonical: v });
  for (const c of out.mapped) extension.push({ url: MAPPED_SOURCE_URL, valueCoding: { ...c } });
  for (const c of out.unmapped) extension.push({ url: UNMAPPED_SOURCE_URL, valueCoding: { ...c } });
  meta.extension = extension;
  if (out.unmapped.length) meta.tag = [...(meta.tag ?? []), { system: MAPPING_STATUS_SYSTEM, code: 'unmapped', display: 'has codes or units no approved map covers' }];
  resource.meta = meta;
}

/**
 * The message's Provenance names each ConceptMap version as an entity the targets were derived with
 * (replacing what an earlier run recorded). Used by the map stage (pipeline/stages/map.ts) and by reprocess (hub/terminology) to rewrite it.
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
