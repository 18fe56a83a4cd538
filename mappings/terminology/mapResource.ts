/**
 * The pure part of the pipeline stage "map": one FHIR resource in, the same resource with standard
 * codings added. Every coded element (`code` of a Condition, Observation, DiagnosticReport,
 * ServiceRequest, Procedure; Observation.component.code) keeps its original codings and gains the
 * ICD-11 / LOINC coding its ConceptMap gives, marked with the map (url|version) and equivalence; an
 * Observation's quantity and reference range are converted to the LOINC test's canonical UCUM unit
 * with the original quantity kept beside them. Resource.meta says which map versions were used,
 * which source codings were mapped and which were not (the unmapped worklist and the coverage
 * counters are derived from exactly that), and tags the resource `unmapped` when anything was left.
 *
 * Idempotent: what a previous run added is removed first, so re-deriving a stored resource after a
 * mapping change (reprocess) gives the same result as running the message again. Never drops data:
 * an unmapped code or an inconvertible unit leaves the original as it was.
 */
import type { Terminology } from './translator';
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
const CODED_TYPES = new Set(['Condition', 'Observation', 'DiagnosticReport', 'ServiceRequest', 'Procedure']);

/** Map one resource in place; returns what was used and found. */
export function mapResource(resource: Json, options: MapOptions): ResourceMapping {
  const out: ResourceMapping = { versions: new Set(), mapped: [], unmapped: [] };
  stripDerived(resource);
  const type = resource.resourceType as string;
  if (!CODED_TYPES.has(type)) return out;
  const withAliases = !!options.aliases && Object.keys(options.aliases).length > 0;
  const code = resource.code as CodeableConcept | undefined;
  if (code) mapConcept(code, options, out, withAliases);
  if (type === 'Observation') {
    for (const component of (resource.component as Array<{ code?: CodeableConcept; valueQuantity?: Quantity }> | undefined) ?? []) {
      if (component.code) mapConcept(component.code, options, out, withAliases);
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
  visitConcept(resource.code as CodeableConcept | undefined);
  if (resource.valueQuantity) resource.valueQuantity = restore(resource.valueQuantity as Quantity);
  for (const range of (resource.referenceRange as Json[] | undefined) ?? []) {
    if (range.low) range.low = restore(range.low as Quantity);
    if (range.high) range.high = restore(range.high as Quantity);
  }
  for (const component of (resource.component as Json[] | undefined) ?? []) {
    visitConcept(component.code as CodeableConcept | undefined);
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
    for (const match of translation.matches) {
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
