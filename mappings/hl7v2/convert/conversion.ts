/**
 * The state of one HL7 v2 → FHIR conversion and what every message family builds with: the
 * resources made so far under their business keys (`add`; ids by `resourceId`), segment paths,
 * the patient, encounter, report, order … the walk is in, Z-segments waiting for their resource,
 * the practitioners and locations any segment may name. Also the output vocabulary the contract
 * (the header of ../convert.ts) names: the meta and extension URLs, `Resource`, `ConvertContext`.
 * The walk and the Bundle are ../convert.ts; each family's builders are a module beside this one,
 * functions taking the conversion. Must never import them or ../convert.ts: they all import this.
 */
import { hash } from 'node:crypto';
import type { ConversionOptions } from '../options';
import type { Hl7Message, Hl7Segment } from '../message';
import { HubError } from '../../outcome';
import { hdToSystem, xcnToPractitioner, type CodeableConcept } from '../datatypes';
import { profileFor, withOverrides, type SegmentMap } from '../segments';

export const SEGMENT_PATH_URL = 'https://yilian.example/fhir/StructureDefinition/segment-path';
export const EXPLICIT_NULL_URL = 'https://yilian.example/fhir/StructureDefinition/explicit-null';
/**
 * A Z-segment (site-defined, outside the standard) as received, escapes and all, on the resource it
 * follows: nothing the member sent is dropped, and a per-member map can be written for it later.
 */
export const Z_SEGMENT_URL = 'https://yilian.example/fhir/StructureDefinition/hl7v2-z-segment';
/** Members as Organizations: Organization.identifier system. */
export const MEMBER_SYSTEM = 'urn:yilian:member';

export interface ConvertContext {
  memberId: string;
  channelId: string;
  /** raw_message id in the raw store; absent for `yilian convert`. */
  rawId?: number;
  /** Offset of the member's clocks, for times sent without one. */
  utcOffsetMinutes: number;
  /** For per-member overrides (`conversion`) and the member's name. */
  member?: { id: string; name: string; conversion?: ConversionOptions };
}

export type Resource = { resourceType: string; id: string; meta?: { extension?: Array<{ url: string; valueString: string }> }; [k: string]: unknown };
export type Json = Record<string, unknown>;
export type Ref = { reference: string };

/** Deterministic FHIR id for a business key (see the header of ../convert.ts). */
export function resourceId(memberId: string, type: string, key: string): string {
  // crypto.hash: the one-shot form, half the cost of createHash().update().digest() per id
  return hash('sha256', `${memberId}\u0000${type}\u0000${key}`, 'hex').slice(0, 40);
}

interface Entry {
  resource: Resource;
  key: string;
}

export class Conversion {
  readonly entries = new Map<string, Entry>();
  readonly maps: Readonly<Record<string, SegmentMap>>;
  readonly active: ReadonlySet<string>;
  readonly paths = new Map<Hl7Segment, string>();
  readonly sub: string;
  readonly compSep: string;
  readonly msgScope: string;
  readonly member: string;
  readonly offset: number;
  // walking state
  readonly lastOf = new Map<string, Hl7Segment>();
  /** Z-segments waiting for their resource: those after SCH/TXA, whose resource is built at the group's end, and those before any resource. */
  pendingZ: Hl7Segment[] = [];
  patient?: { ref: Ref; key: string };
  encounter?: { ref: Ref; key: string; resource: Resource };
  report?: { resource: Resource; key: string; observations: Resource[]; specimens: Ref[]; effective?: string };
  last?: Resource;
  order?: { orc?: Hl7Segment; tq1?: Hl7Segment; resource?: Resource; key?: string; specimens: Ref[] };
  appointment?: { sch: Hl7Segment; tq1?: Hl7Segment; ais: Hl7Segment[]; participants: Json[] };
  document?: { txa: Hl7Segment; obx: Hl7Segment[] };
  immunizationOrc?: Hl7Segment;
  referral?: { rf1: Hl7Segment; providers: Hl7Segment[] };
  immunization?: Resource;
  immunizationKey?: string;

  constructor(
    readonly message: Hl7Message,
    readonly ctx: ConvertContext,
  ) {
    this.member = ctx.memberId;
    this.offset = ctx.utcOffsetMinutes;
    this.sub = message.delimiters.subcomponent;
    this.compSep = message.delimiters.component;
    this.maps = withOverrides(ctx.member?.conversion);
    const msh = message.msh;
    this.active = new Set(profileFor(msh.value(9, 0, 1), msh.value(9, 0, 2)));
    this.msgScope = ctx.rawId !== undefined ? `raw:${ctx.rawId}` : `msg:${msh.value(3)}|${msh.value(4)}|${msh.value(7)}|${msh.value(10)}`;
    const counts = new Map<string, number>();
    for (const s of message.segments) counts.set(s.name, (counts.get(s.name) ?? 0) + 1);
    const seen = new Map<string, number>();
    for (const s of message.segments) {
      const n = (seen.get(s.name) ?? 0) + 1;
      seen.set(s.name, n);
      this.paths.set(s, counts.get(s.name) === 1 ? s.name : `${s.name}[${n}]`);
    }
  }

  /** The sending member as an Organization (one per bundle): the Provenance's agent, a referral's default requester. */
  memberOrganization(): Ref {
    return this.add('Organization', `member:${this.member}`, { identifier: [{ system: MEMBER_SYSTEM, value: this.member }], name: this.ctx.member?.name ?? this.member, active: true }, undefined, true);
  }

  /** A Z-segment belongs to the resource of the segment before it (ZPI after PID → Patient, ZOB after OBX → Observation). */
  zSegment(segment: Hl7Segment): void {
    if (this.appointment || this.document || !this.last) {
      this.pendingZ.push(segment);
      return;
    }
    this.attachZ(this.last, [segment]);
  }

  attachZ(resource: Resource, segments: Hl7Segment[]): void {
    if (segments.length === 0) return;
    resource.extension = [...((resource.extension as Json[] | undefined) ?? []), ...segments.map((z) => this.zExtension(z))];
    for (const z of segments) addMeta(resource, SEGMENT_PATH_URL, this.path(z));
  }

  zExtension(z: Hl7Segment): Json {
    return { url: Z_SEGMENT_URL, valueString: z.fields.join(this.message.delimiters.field) };
  }

  // ---- resources ------------------------------------------------------------------------------

  /**
   * Register a resource under its business key. `same`: the same key twice means the same thing
   * (one resource, one more segment path); otherwise the second one is a different thing and gets
   * `key#2`. Returns its reference.
   */
  add(type: string, key: string, body: Json, path: string | undefined, same: boolean): Ref {
    let k = key;
    for (let n = 2; ; n++) {
      const id = resourceId(this.member, type, k);
      const url = `${type}/${id}`;
      const existing = this.entries.get(url);
      if (!existing) {
        const resource = { resourceType: type, id, ...body } as Resource;
        if (path) addMeta(resource, SEGMENT_PATH_URL, path);
        this.entries.set(url, { resource, key: k });
        this.last = resource;
        return { reference: url };
      }
      if (same) {
        if (path && !existing.resource.meta?.extension?.some((x) => x.url === SEGMENT_PATH_URL && x.valueString === path)) addMeta(existing.resource, SEGMENT_PATH_URL, path);
        return { reference: url };
      }
      k = `${key}#${n}`;
    }
  }

  resourceOf(ref: Ref): Resource {
    return this.entries.get(ref.reference)!.resource;
  }

  path(segment: Hl7Segment, field?: number): string {
    const p = this.paths.get(segment)!;
    return field === undefined ? p : `${p}-${field}`;
  }

  /** XCN → Practitioner; the same identifier (or, without one, the same name in this message) is one resource. */
  practitioner(segment: Hl7Segment, field: number, rep: number): Ref | undefined {
    if (segment.isExplicitNull(field)) return undefined;
    const p = xcnToPractitioner(segment.components(field, rep), this.member, this.sub, this.offset);
    if (!p || (!p.identifier && !p.name)) return undefined;
    const key = p.identifier ? `xcn:${p.identifier.system ?? ''}|${p.identifier.value}` : `${this.msgScope}|name:${p.name?.text ?? JSON.stringify(p.name)}`;
    return this.add('Practitioner', key, { ...(p.identifier ? { identifier: [p.identifier] } : {}), ...(p.name ? { name: [p.name] } : {}) }, this.path(segment, field), true);
  }

  /** PL → Location (point of care / room / bed at a facility); physicalType from the most specific part. */
  location(segment: Hl7Segment, field: number): Ref | undefined {
    if (segment.isExplicitNull(field)) return undefined;
    const c = segment.components(field);
    const first = (i: number) => (c[i - 1] ?? '').split(this.sub)[0]!.trim();
    const [pointOfCare, room, bed, facility, building, floor] = [first(1), first(2), first(3), first(4), first(7), first(8)];
    const description = (c[8] ?? '').trim();
    // a PL with only its facility (`^^^BMGPED`) names the facility
    const parts = [pointOfCare, room, bed].filter((x) => x !== '');
    if (parts.length === 0 && facility) parts.push(facility);
    if (parts.length === 0 && !description) return undefined;
    const physical = bed ? ['bd', 'Bed'] : room ? ['ro', 'Room'] : pointOfCare ? ['wa', 'Ward'] : undefined;
    const key = `pl:${[facility, building, floor, pointOfCare, room, bed].join('|')}|${parts.length ? '' : description}`;
    return this.add(
      'Location',
      key,
      {
        status: 'active',
        name: parts.length ? parts.join(' / ') : description,
        ...(description && parts.length ? { description } : {}),
        mode: 'instance',
        ...(physical ? { physicalType: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/location-physical-type', code: physical[0], display: physical[1] }] } } : {}),
      },
      this.path(segment, field),
      true,
    );
  }

  requirePatient(segment: Hl7Segment): { ref: Ref; key: string } {
    if (!this.patient) throw new HubError('structure', `${segment.name} needs a patient: no PID before it`, this.path(segment));
    return this.patient;
  }
}

/**
 * A required code the message leaves empty (OBX-3, OBR-4, DG1-3): FHIR's data-absent-reason
 * extension instead of an invented code; the key of such a resource is message-scoped.
 */
export function absentCode(): CodeableConcept {
  return { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] } as CodeableConcept;
}

/** EI (entity id^namespace^universal id^type) → system. */
export function eiSystem(c: readonly string[], memberId: string, sub: string): string | undefined {
  return hdToSystem([c[1] ?? '', c[2] ?? '', c[3] ?? ''].join(sub), memberId, sub);
}

/**
 * An order's or appointment's placer and filler numbers (EI; an empty one is left out) → Identifiers
 * typed PLAC / FILL (table 0203), and its business key: the filler number, else the placer number,
 * under `keyPrefix` (`order`, `appt`); undefined when neither was sent.
 */
export function placerFiller(
  conv: Conversion,
  placer: readonly string[] | undefined,
  filler: readonly string[] | undefined,
  keyPrefix: string,
): { identifier: Json[]; key: string | undefined } {
  const sent = (c: readonly string[] | undefined): c is readonly string[] => (c?.[0] ?? '').trim() !== '';
  const identifier = (
    [
      [placer, 'PLAC'],
      [filler, 'FILL'],
    ] as const
  )
    .filter(([c]) => sent(c))
    .map(([c, type]) => {
      const system = eiSystem(c!, conv.member, conv.sub);
      return { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: type }] }, ...(system ? { system } : {}), value: c![0]!.trim() };
    });
  const keyOf = (c: readonly string[], role: string) => `${keyPrefix}-${role}:${eiSystem(c, conv.member, conv.sub) ?? ''}|${c[0]!.trim()}`;
  const key = sent(filler) ? keyOf(filler, 'filler') : sent(placer) ? keyOf(placer, 'placer') : undefined;
  return { identifier, key };
}

/** A CodeableConcept's identity for keys: its first coding's system|code, else its text. */
export function codeKeyOf(cc: CodeableConcept | undefined): string | undefined {
  const coding = cc?.coding?.find((c) => c.code);
  if (coding) return `${coding.system ?? ''}|${coding.code}`;
  return cc?.text ? `text:${cc.text}` : undefined;
}

export function addMeta(resource: Resource, url: string, valueString: string): void {
  resource.meta ??= {};
  (resource.meta.extension ??= []).push({ url, valueString });
}
