/**
 * HL7 v2 message → FHIR R4 Bundle. Pure: no I/O, no terminology, no clock except when MSH-7 is
 * unreadable (Provenance.recorded must be an instant).
 *
 * The engine walks the segments in order and applies the segment maps of segments.ts (data), with
 * the member's overrides on top; what is not "field → path" is code here (ids, references, OBX-5
 * value[x], OBX-7 ranges, Encounter status, locations, practitioners).
 *
 * Output (the contract other stages rely on):
 * - Bundle.type `batch`, every entry `request: PUT <Type>/<id>` (as the FHIR-Converter does), so a
 *   FHIR server or the hub upserts idempotently; references between resources are `<Type>/<id>`.
 *   PUT replaces the whole resource: a conversion is a snapshot of what the message says.
 * - Bundle.identifier: system `urn:yilian:<member>:message-control-id`, value MSH-10; timestamp MSH-7.
 * - Deterministic ids: `resourceId(member, type, business key)` = first 40 hex digits of
 *   sha256(member NUL type NUL key) — a valid FHIR id, the same for the same key on every run,
 *   160 bits so different keys do not collide in practice. Keys (see each builder): Patient the MR
 *   identifier (system|value); Encounter PV1-19; DiagnosticReport OBR-3 (else OBR-2); Observation
 *   report (or order, or dose, or visit; else patient + effective time) + OBX-3 code + OBX-4 sub-id;
 *   Encounter without PV1-19 the patient + PV1-44; Condition DG1-20 else encounter + DG1-3 + DG1-6; … Where
 *   ServiceRequest (ORM/OML/OMG) `order-filler:` ORC-3 (else OBR-3), else `order-placer:` ORC-2 (else
 *   OBR-2); Specimen SPM-2, or (v2.3) the order + OBR-15; Appointment (SIU) `appt-filler:` SCH-2,
 *   else `appt-placer:` SCH-1; Device (AIG-3) `device:` + the AIG-3 code (system|code) — member +
 *   code, so the member's shared CT/MRI is one Device across all its appointments; ChargeItem
 *   (DFT) `txn:` FT1-2, else message-scoped + FT1-1; Account `account:` PID-18 (system|value);
 *   DocumentReference (MDM) `doc:` TXA-12 (system|value); Immunization (VXU) `imm-filler:` ORC-3,
 *   else `imm:` patient key + RXA-5 code + RXA-3; manufacturer Organization `manufacturer:` RXA-17
 *   code; the retired Patient of a merge (A34/A39/A40/A47) MRG-1 the way PID-3 is read. Where
 *   the message has no business identifier the key is message-scoped (`raw:<rawId>`, else
 *   sender + MSH-7 + MSH-10, plus the segment path): re-processing the same message gives the same
 *   id, a different message a different one. Two different things in one message that would get
 *   the same key (e.g. the same OBX-3 twice without OBX-4) get `#2`, `#3` … in input order; the same
 *   thing named twice (a practitioner, a location, a payor) is one resource.
 * - Provenance: one per message, `target` → every produced resource, `entity` (role source) → the
 *   raw message (`urn:yilian:raw:<rawId>`, else the MSH-10), `agent` → the member as an Organization
 *   (in the bundle) and the channel. The segment a resource comes from is on the resource itself:
 *   `meta.extension` `SEGMENT_PATH_URL` valueString `PID`, `OBX[3]`, `PV1-7` (a resource named by
 *   several segments carries several). `NAME` when the message has one such segment, `NAME[n]`
 *   (1-based) otherwise.
 * - Z-segments: kept as received on the resource of the segment before them (`Z_SEGMENT_URL`
 *   extension, the segment text with its escapes), on the Provenance when no resource precedes them.
 *   The Provenance also carries the message's conformance findings (`CONFORMANCE_URL`, dictionary.ts).
 * - Explicit null (`""`): the field produces no element (so the PUT removes what was there) and
 *   the resource's meta.extension `EXPLICIT_NULL_URL` names the field (`PID-8`), so a merge that
 *   does not replace whole resources can still tell "delete" from "not sent".
 *
 * Errors: HubError `structure` (a segment the mapping needs is missing) or `invalid` (a value
 * that cannot be what its type says, e.g. OBX-2 NM with OBX-5 "abc"), located like `OBX[2]-5`.
 */
import { hash } from 'node:crypto';
import type { ConversionOptions } from './options';
import type { Hl7Message, Hl7Segment } from './message';
import { parseHl7Time } from './time';
import { HubError } from '../outcome';
import {
  asPinyin,
  abnormalFlagToInterpretation,
  administrativeGender,
  cqToQuantity,
  cweToCodeableConcept,
  diagnosticReportStatus,
  hdToSystem,
  nmToQuantity,
  observationStatus,
  patientClass,
  snToValue,
  toDate,
  toDateTime,
  toNumber,
  unitsOf,
  cxToIdentifier,
  xadToAddress,
  xcnToPractitioner,
  xpnCalledBy,
  xpnToHumanName,
  xtnToContactPoint,
  type CodeableConcept,
  type Identifier,
  type Quantity,
} from './datatypes';
import { conformance } from './dictionary';
import { profileFor, withOverrides, type FieldRule, type SegmentMap, type TableName } from './segments';

export const SEGMENT_PATH_URL = 'https://yilian.example/fhir/StructureDefinition/segment-path';
export const EXPLICIT_NULL_URL = 'https://yilian.example/fhir/StructureDefinition/explicit-null';
/**
 * A Z-segment (site-defined, outside the standard) as received, escapes and all, on the resource it
 * follows: nothing the member sent is dropped, and a per-member map can be written for it later.
 */
export const Z_SEGMENT_URL = 'https://yilian.example/fhir/StructureDefinition/hl7v2-z-segment';
/** On the retired Patient of a merge: only `active` and `link` are news; merge them into the stored record, do not replace it. */
export const LINK_ONLY_TAG = { system: 'urn:yilian:merge', code: 'link-only', display: 'merge: set active and link only' } as const;
/** On the Provenance: one finding of the message against its version's dictionary (mappings/hl7v2/dictionary.ts). */
export const CONFORMANCE_URL = 'https://yilian.example/fhir/StructureDefinition/conformance-issue';
/** At most this many findings are carried; a message with more says how many it left out. */
const MAX_CONFORMANCE_ISSUES = 20;
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
type Json = Record<string, unknown>;

export interface BundleEntry {
  resource: Resource;
  request: { method: 'PUT'; url: string };
}
export interface Bundle {
  resourceType: 'Bundle';
  type: 'batch';
  identifier: { system: string; value: string };
  timestamp?: string;
  entry: BundleEntry[];
}

/** Deterministic FHIR id for a business key (see the header). */
export function resourceId(memberId: string, type: string, key: string): string {
  // crypto.hash: the one-shot form, half the cost of createHash().update().digest() per id
  return hash('sha256', `${memberId}\u0000${type}\u0000${key}`, 'hex').slice(0, 40);
}

export function convertMessage(message: Hl7Message, ctx: ConvertContext): Bundle {
  return convertWithKeys(message, ctx).bundle;
}

/** The bundle and, per `Type/id`, the business key it was made from (for identity checks). */
export function convertWithKeys(message: Hl7Message, ctx: ConvertContext): { bundle: Bundle; keys: Map<string, string> } {
  return new Conversion(message, ctx).run();
}

// ---------------------------------------------------------------------------------------------

type Ref = { reference: string };

/** Code tables named by field rules. */
const tables: Readonly<Record<TableName, Readonly<Record<string, unknown>>>> = {
  administrativeGender,
  yesNo: { Y: true, N: false },
  /** Table 0127 allergen type → AllergyIntolerance.category (MA, MC: no category). */
  allergyCategory: { DA: 'medication', FA: 'food', EA: 'environment', AA: 'environment', PA: 'environment', LA: 'environment' },
  /** Table 0128 allergy severity → criticality. */
  allergyCriticality: { SV: 'high', MO: 'low', MI: 'low', U: 'unable-to-assess' },
};

/** Trigger events → Encounter.status; other events derive it from PV1-44/45. */
const encounterStatusByEvent: Readonly<Record<string, string>> = {
  A01: 'in-progress',
  A02: 'in-progress',
  A03: 'finished',
  A05: 'planned',
  A06: 'in-progress',
  A07: 'in-progress',
  A11: 'cancelled',
  A12: 'in-progress',
  A13: 'in-progress',
  A14: 'planned',
  A27: 'cancelled',
  A38: 'cancelled',
};

/** Table 0038 order status → ServiceRequest.status (v2-to-FHIR ConceptMap OrderStatus). */
const serviceRequestStatusByOrderStatus: Readonly<Record<string, string>> = {
  A: 'active',
  CA: 'revoked',
  CM: 'completed',
  DC: 'revoked',
  ER: 'entered-in-error',
  HD: 'on-hold',
  IP: 'active',
  RP: 'revoked',
  SC: 'active',
};

/** Table 0119 order control → ServiceRequest.status, when ORC-5 is empty. */
const serviceRequestStatusByOrderControl: Readonly<Record<string, string>> = {
  NW: 'active',
  OK: 'active',
  SC: 'active',
  SN: 'active',
  XO: 'active',
  XX: 'active',
  RO: 'active',
  RL: 'active',
  CA: 'revoked',
  OC: 'revoked',
  CR: 'revoked',
  DC: 'revoked',
  OD: 'revoked',
  DR: 'revoked',
  HD: 'on-hold',
  OH: 'on-hold',
};

/** TQ1-9 priority (table 0485) → ServiceRequest.priority. */
const priorityByCode: Readonly<Record<string, string>> = { S: 'stat', A: 'asap', R: 'routine' };

/** Table 0278 filler status (SCH-25) → Appointment.status. */
const appointmentStatusByFiller: Readonly<Record<string, string>> = {
  PENDING: 'pending',
  WAITLIST: 'waitlist',
  BOOKED: 'booked',
  OVERBOOK: 'booked',
  STARTED: 'arrived',
  COMPLETE: 'fulfilled',
  CANCELLED: 'cancelled',
  DC: 'cancelled',
  DELETED: 'entered-in-error',
  NOSHOW: 'noshow',
};

/** Table 0276 appointment reason codes (SCH-7). */
const APPOINTMENT_REASONS: ReadonlySet<string> = new Set(['ROUTINE', 'WALKIN', 'CHECKUP', 'FOLLOWUP', 'EMERGENCY']);

/** Table 0283 referral status → R4 request-status (A accepted, P pending, R rejected, E expired). */
const referralStatus: Record<string, string> = { A: 'active', P: 'on-hold', R: 'revoked', E: 'completed' };
/** Table 0280 referral priority → R4 request-priority. */
const referralPriority: Record<string, string> = { S: 'stat', A: 'asap', R: 'routine' };

/** SIU trigger event → Appointment.status when SCH-25 says nothing usable. */
const appointmentStatusByEvent: Readonly<Record<string, string>> = {
  S12: 'booked',
  S13: 'booked',
  S14: 'booked',
  S15: 'cancelled',
  S16: 'cancelled',
  S17: 'entered-in-error',
  S26: 'noshow',
};

const participantType: ReadonlyArray<[number, string]> = [
  [7, 'ATND'],
  [8, 'REF'],
  [9, 'CON'],
  [17, 'ADM'],
];

const mimeBySubtype: Readonly<Record<string, string>> = {
  PDF: 'application/pdf',
  RTF: 'application/rtf',
  HTML: 'text/html',
  XML: 'text/xml',
  JPEG: 'image/jpeg',
  JPG: 'image/jpeg',
  PNG: 'image/png',
  GIF: 'image/gif',
  TIFF: 'image/tiff',
  PLAIN: 'text/plain',
  TEXT: 'text/plain',
  'OCTET-STREAM': 'application/octet-stream',
};

/** Table 0271 document completion status (TXA-17) → DocumentReference.docStatus. */
const documentCompletionStatus: Readonly<Record<string, string>> = {
  AU: 'final',
  LA: 'final',
  IP: 'preliminary',
  IN: 'preliminary',
  PA: 'preliminary',
  DI: 'preliminary',
  DO: 'preliminary',
};

interface Entry {
  resource: Resource;
  key: string;
}

class Conversion {
  private readonly entries = new Map<string, Entry>();
  private readonly maps: Readonly<Record<string, SegmentMap>>;
  private readonly active: ReadonlySet<string>;
  private readonly paths = new Map<Hl7Segment, string>();
  private readonly sub: string;
  private readonly compSep: string;
  private readonly msgScope: string;
  private readonly member: string;
  private readonly offset: number;
  // walking state
  private readonly lastOf = new Map<string, Hl7Segment>();
  /** Z-segments waiting for their resource: those after SCH/TXA, whose resource is built at the group's end, and those before any resource. */
  private pendingZ: Hl7Segment[] = [];
  private patient?: { ref: Ref; key: string };
  private encounter?: { ref: Ref; key: string; resource: Resource };
  private report?: { resource: Resource; key: string; observations: Resource[]; specimens: Ref[]; effective?: string };
  private last?: Resource;
  private order?: { orc?: Hl7Segment; tq1?: Hl7Segment; resource?: Resource; key?: string; specimens: Ref[] };
  private appointment?: { sch: Hl7Segment; tq1?: Hl7Segment; ais: Hl7Segment[]; participants: Json[] };
  private document?: { txa: Hl7Segment; obx: Hl7Segment[] };
  private immunizationOrc?: Hl7Segment;
  private referral?: { rf1: Hl7Segment; providers: Hl7Segment[] };
  private immunization?: Resource;
  private immunizationKey?: string;

  constructor(
    private readonly message: Hl7Message,
    private readonly ctx: ConvertContext,
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

  run(): { bundle: Bundle; keys: Map<string, string> } {
    const msh = this.message.msh;
    const controlId = msh.value(10);
    if (!controlId) throw new HubError('structure', 'MSH-10 (message control id) is empty', 'MSH-10');
    for (const segment of this.message.segments) {
      this.lastOf.set(segment.name, segment);
      if (segment.name.startsWith('Z')) {
        this.zSegment(segment);
        continue;
      }
      if (segment.name === 'NTE') this.note(segment);
      if (!this.active.has(segment.name)) continue;
      switch (segment.name) {
        case 'PID':
          this.pid(segment);
          break;
        case 'PV1':
          this.pv1(segment);
          break;
        case 'PV2':
          this.pv2(segment);
          break;
        case 'DG1':
          this.dg1(segment);
          break;
        case 'AL1':
          this.al1(segment);
          break;
        case 'PDA':
          this.pda(segment);
          break;
        case 'IN1':
          this.in1(segment);
          break;
        case 'GT1':
        case 'DB1':
        case 'IN2':
          this.extendPatient(segment);
          break;
        case 'OBR':
          if (this.active.has('ORC')) this.orderObr(segment);
          else this.obr(segment);
          break;
        case 'ORC':
          if (this.active.has('RXA')) this.immunizationOrc = segment;
          else this.orc(segment);
          break;
        case 'TQ1':
          if (this.appointment && !this.appointment.tq1) this.appointment.tq1 = segment;
          else if (this.order && !this.order.resource && !this.order.tq1) this.order.tq1 = segment;
          break;
        case 'SCH':
          this.closeAppointment();
          this.appointment = { sch: segment, ais: [], participants: [] };
          break;
        case 'AIS':
        case 'AIG':
        case 'AIL':
        case 'AIP':
          this.appointmentResource(segment);
          break;
        case 'OBX':
          if (this.active.has('TXA')) this.document?.obx.push(segment);
          else this.obx(segment);
          break;
        case 'FT1':
          this.ft1(segment);
          break;
        case 'TXA':
          this.closeDocument();
          this.document = { txa: segment, obx: [] };
          break;
        case 'RXA':
          this.rxa(segment);
          break;
        case 'RXR':
          this.rxr(segment);
          break;
        case 'MRG':
          this.mrg(segment);
          break;
        case 'SPM':
          this.spm(segment);
          break;
        case 'RF1':
          this.referral = { rf1: segment, providers: [] };
          break;
        case 'PRD':
          this.referral?.providers.push(segment);
          break;
      }
    }
    // In REF_I12 the PID follows RF1 and PRD: the referral is built once the whole message is read.
    this.closeReferral();
    this.closeReport();
    this.closeOrder();
    this.closeAppointment();
    this.closeDocument();

    const recordedTime = parseHl7Time(msh.value(7), this.offset);
    const timestamp = recordedTime?.instant.toISOString();
    const unattached = this.pendingZ;
    this.pendingZ = [];
    const targets = [...this.entries.values()].map((e) => ({ reference: `${e.resource.resourceType}/${e.resource.id}` }));
    // Nothing converted (no segment of the message type's profile): an empty batch, no Provenance.
    if (targets.length > 0) this.provenance(targets, controlId, timestamp, unattached);
    const keys = new Map<string, string>();
    const entry: BundleEntry[] = [];
    for (const [url, e] of this.entries) {
      keys.set(url, e.key);
      entry.push({ resource: e.resource, request: { method: 'PUT', url } });
    }
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      identifier: { system: `urn:yilian:${this.member}:message-control-id`, value: controlId },
      ...(timestamp ? { timestamp } : {}),
      entry,
    };
    return { bundle, keys };
  }

  /** The sending member as an Organization (one per bundle): the Provenance's agent, a referral's default requester. */
  private memberOrganization(): Ref {
    return this.add('Organization', `member:${this.member}`, { identifier: [{ system: MEMBER_SYSTEM, value: this.member }], name: this.ctx.member?.name ?? this.member, active: true }, undefined, true);
  }

  /** One Provenance per message: target every produced resource; entity the raw message; agents the member (an Organization in the bundle) and the channel. */
  private provenance(targets: Ref[], controlId: string, timestamp: string | undefined, unattachedZ: Hl7Segment[]): void {
    const msh = this.message.msh;
    const memberOrg = this.memberOrganization();
    const raw =
      this.ctx.rawId !== undefined
        ? { system: 'urn:ietf:rfc:3986', value: `urn:yilian:raw:${this.ctx.rawId}` }
        : { system: `urn:yilian:${this.member}:message-control-id`, value: controlId };
    this.add(
      'Provenance',
      `provenance:${this.msgScope}`,
      {
        target: targets,
        recorded: timestamp ?? new Date().toISOString(),
        activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }] },
        agent: [
          {
            type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }] },
            who: { ...memberOrg, display: this.ctx.member?.name ?? this.member },
          },
          {
            type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'assembler' }] },
            who: { identifier: { system: `urn:yilian:${this.member}:channel`, value: this.ctx.channelId }, display: `channel ${this.member}/${this.ctx.channelId}` },
          },
        ],
        entity: [{ role: 'source', what: { identifier: raw, display: `HL7 v2 ${msh.value(9, 0, 1)}^${msh.value(9, 0, 2)} ${controlId}` } }],
        ...this.conformanceExtension(unattachedZ),
      },
      'MSH',
      false,
    );
  }

  /** The message's conformance findings as Provenance extensions (`PID-3 required: …`). */
  private conformanceExtension(unattachedZ: Hl7Segment[]): Json {
    const issues = conformance(this.message, this.paths);
    const shown = issues.slice(0, MAX_CONFORMANCE_ISSUES).map((i) => ({ url: CONFORMANCE_URL, valueString: `${i.location} ${i.code}: ${i.text}` }));
    if (issues.length > shown.length) shown.push({ url: CONFORMANCE_URL, valueString: `… and ${issues.length - shown.length} more` });
    const extension = [...shown, ...unattachedZ.map((z) => this.zExtension(z))];
    return extension.length ? { extension } : {};
  }

  /** A Z-segment belongs to the resource of the segment before it (ZPI after PID → Patient, ZOB after OBX → Observation). */
  private zSegment(segment: Hl7Segment): void {
    if (this.appointment || this.document || !this.last) {
      this.pendingZ.push(segment);
      return;
    }
    this.attachZ(this.last, [segment]);
  }

  private attachZ(resource: Resource, segments: Hl7Segment[]): void {
    if (segments.length === 0) return;
    resource.extension = [...((resource.extension as Json[] | undefined) ?? []), ...segments.map((z) => this.zExtension(z))];
    for (const z of segments) addMeta(resource, SEGMENT_PATH_URL, this.path(z));
  }

  private zExtension(z: Hl7Segment): Json {
    return { url: Z_SEGMENT_URL, valueString: z.fields.join(this.message.delimiters.field) };
  }

  // ---- resources ------------------------------------------------------------------------------

  /**
   * Register a resource under its business key. `same`: the same key twice means the same thing
   * (one resource, one more segment path); otherwise the second one is a different thing and gets
   * `key#2`. Returns its reference.
   */
  private add(type: string, key: string, body: Json, path: string | undefined, same: boolean): Ref {
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

  private resourceOf(ref: Ref): Resource {
    return this.entries.get(ref.reference)!.resource;
  }

  private path(segment: Hl7Segment, field?: number): string {
    const p = this.paths.get(segment)!;
    return field === undefined ? p : `${p}-${field}`;
  }

  private pid(segment: Hl7Segment): void {
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.PID!);
    if (body.deceasedDateTime !== undefined) delete body.deceasedBoolean;
    const key = this.patientKey(segment);
    const ref = this.add('Patient', key, body, this.path(segment), true);
    for (const n of nulls) addMeta(this.resourceOf(ref), EXPLICIT_NULL_URL, n);
    this.patient = { ref, key };
  }

  /** GT1, DB1, IN2: what they say about the patient (their maps' `when` say when that is) onto the Patient. */
  private extendPatient(segment: Hl7Segment): void {
    if (!this.patient) return;
    const patient = this.resourceOf(this.patient.ref);
    const size = () => ['identifier', 'name', 'address', 'telecom'].reduce((n, k) => n + ((patient[k] as unknown[] | undefined)?.length ?? 0), 0);
    const before = size();
    this.applyRules(patient, segment, this.maps[segment.name]!);
    if (size() !== before) addMeta(patient, SEGMENT_PATH_URL, this.path(segment));
  }

  /** PID-3: the repetition typed MR, else the first; else PID-2; else message-scoped. */
  private patientKey(pid: Hl7Segment): string {
    for (const field of [3, 2]) {
      const reps = pid.repetitions(field).map((_, i) => pid.components(field, i));
      const pick = reps.find((c) => (c[4] ?? '').trim().toUpperCase() === 'MR' && (c[0] ?? '').trim()) ?? reps.find((c) => (c[0] ?? '').trim());
      if (pick) return `mrn:${hdToSystem(pick[3] ?? '', this.member, this.sub) ?? ''}|${pick[0]!.trim()}`;
    }
    return `${this.msgScope}|${this.path(pid)}`;
  }

  private pv1(segment: Hl7Segment): void {
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.PV1!);
    const classCode = segment.value(2).trim().toUpperCase();
    const trigger = this.message.msh.value(9, 0, 2).toUpperCase();
    const period = body.period as { start?: string; end?: string } | undefined;
    const status = encounterStatusByEvent[trigger] ?? (period?.end ? 'finished' : period?.start ? 'in-progress' : 'unknown');
    // The visit number names the encounter; without one, the patient's admission at PV1-44 (one
    // patient is not admitted twice at the same instant); without that, this message only.
    const visit = segment.components(19);
    const admitted = period?.start;
    const key = visit[0]?.trim()
      ? `visit:${hdToSystem(visit[3] ?? '', this.member, this.sub) ?? ''}|${visit[0].trim()}`
      : admitted && this.patient
        ? `${this.patient.key}|admitted:${admitted}`
        : `${this.msgScope}|${this.path(segment)}`;
    const participant: Json[] = [];
    for (const [field, code] of participantType) {
      segment.repetitions(field).forEach((_, rep) => {
        const who = this.practitioner(segment, field, rep);
        if (who) participant.push({ type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code }] }], individual: who });
      });
    }
    // PV1-3 assigned (as the encounter stands), PV1-6 prior, PV1-11 temporary, PV1-42 pending,
    // PV1-43 prior temporary (v2-to-FHIR IG PV1[Encounter]); one entry per distinct Location
    const location: Json[] = [];
    const assignedStatus = status === 'finished' ? 'completed' : status === 'planned' ? 'planned' : 'active';
    for (const [field, locationStatus] of [
      [3, assignedStatus],
      [6, 'completed'],
      [11, 'active'],
      [42, 'planned'],
      [43, 'completed'],
    ] as const) {
      const where = this.location(segment, field);
      if (where && !location.some((l) => (l.location as Ref).reference === where.reference)) location.push({ location: where, status: locationStatus });
    }
    const resourceBody: Json = {
      status,
      class: patientClass[classCode] ?? { system: 'http://terminology.hl7.org/CodeSystem/v3-NullFlavor', code: 'UNK', display: 'unknown' },
      ...body,
      ...(this.patient ? { subject: this.patient.ref } : {}),
      ...(participant.length ? { participant } : {}),
      ...(location.length ? { location } : {}),
    };
    const ref = this.add('Encounter', key, resourceBody, this.path(segment), true);
    const resource = this.resourceOf(ref);
    for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
    this.encounter = { ref: ref, key, resource };
  }

  /** PV2 adds to its PV1's Encounter: the field rules, and PV2-1 prior pending location (planned). */
  private pv2(segment: Hl7Segment): void {
    const encounter = this.encounter;
    if (!encounter) return;
    this.applyRules(encounter.resource, segment, this.maps.PV2!);
    const pending = this.location(segment, 1);
    const location = (encounter.resource.location as Json[] | undefined) ?? [];
    if (pending && !location.some((l) => (l.location as Ref).reference === pending.reference)) {
      location.push({ location: pending, status: 'planned' });
      encounter.resource.location = location;
    }
  }

  /** XCN → Practitioner; the same identifier (or, without one, the same name in this message) is one resource. */
  private practitioner(segment: Hl7Segment, field: number, rep: number): Ref | undefined {
    if (segment.isExplicitNull(field)) return undefined;
    const p = xcnToPractitioner(segment.components(field, rep), this.member, this.sub, this.offset);
    if (!p || (!p.identifier && !p.name)) return undefined;
    const key = p.identifier ? `xcn:${p.identifier.system ?? ''}|${p.identifier.value}` : `${this.msgScope}|name:${p.name?.text ?? JSON.stringify(p.name)}`;
    return this.add('Practitioner', key, { ...(p.identifier ? { identifier: [p.identifier] } : {}), ...(p.name ? { name: [p.name] } : {}) }, this.path(segment, field), true);
  }

  /** PL → Location (point of care / room / bed at a facility); physicalType from the most specific part. */
  private location(segment: Hl7Segment, field: number): Ref | undefined {
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

  private requirePatient(segment: Hl7Segment): { ref: Ref; key: string } {
    if (!this.patient) throw new HubError('structure', `${segment.name} needs a patient: no PID before it`, this.path(segment));
    return this.patient;
  }

  private dg1(segment: Hl7Segment): void {
    const patient = this.requirePatient(segment);
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.DG1!);
    const id = segment.components(20);
    const code = body.code as CodeableConcept | undefined;
    const codeKey = codeKeyOf(code);
    const scope = this.encounter?.key ?? patient.key;
    const key = id[0]?.trim()
      ? `dg1:${eiSystem(id, this.member, this.sub) ?? ''}|${id[0].trim()}`
      : codeKey
        ? `${scope}|dx:${codeKey}|type:${segment.value(6).trim()}`
        : `${this.msgScope}|${this.path(segment)}`;
    if (!code) body.code = absentCode();
    const ref = this.add(
      'Condition',
      key,
      {
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'encounter-diagnosis', display: 'Encounter Diagnosis' }] }],
        ...body,
        subject: patient.ref,
        ...(this.encounter ? { encounter: this.encounter.ref } : {}),
      },
      this.path(segment),
      false,
    );
    for (const n of nulls) addMeta(this.resourceOf(ref), EXPLICIT_NULL_URL, n);
  }

  private pda(segment: Hl7Segment): void {
    const patient = this.requirePatient(segment);
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.PDA!);
    const codeKey = codeKeyOf(body.code as CodeableConcept | undefined);
    if (!codeKey) return; // a PDA without a cause of death says nothing a Condition could hold
    const ref = this.add(
      'Condition',
      `${patient.key}|cause-of-death:${codeKey}`,
      {
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'problem-list-item', display: 'Problem List Item' }] }],
        ...body,
        subject: patient.ref,
      },
      this.path(segment),
      true,
    );
    for (const n of nulls) addMeta(this.resourceOf(ref), EXPLICIT_NULL_URL, n);
  }

  private al1(segment: Hl7Segment): void {
    const patient = this.requirePatient(segment);
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.AL1!);
    const codeKey = codeKeyOf(body.code as CodeableConcept | undefined);
    const key = codeKey ? `${patient.key}|allergen:${codeKey}` : `${this.msgScope}|${this.path(segment)}`;
    const ref = this.add('AllergyIntolerance', key, { ...body, patient: patient.ref }, this.path(segment), false);
    for (const n of nulls) addMeta(this.resourceOf(ref), EXPLICIT_NULL_URL, n);
  }

  private in1(segment: Hl7Segment): void {
    const patient = this.requirePatient(segment);
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.IN1!);
    const company = segment.isExplicitNull(3) ? undefined : cxToIdentifier(segment.components(3), this.member, this.sub, this.offset);
    const companyName = segment.isExplicitNull(4) ? '' : segment.value(4).trim();
    let payor: Json;
    if (company || companyName) {
      const key = company ? `org:${company.system ?? ''}|${company.value}` : `${this.msgScope}|payor:${companyName}`;
      payor = this.add('Organization', key, { ...(company ? { identifier: [company] } : {}), ...(companyName ? { name: companyName } : {}) }, this.path(segment, 3), true);
    } else {
      payor = { display: 'unknown payor (IN1-3 and IN1-4 empty)' };
    }
    const key = `${patient.key}|coverage:${segment.value(2).trim()}|${company?.system ?? ''}|${company?.value ?? companyName}|${segment.value(36).trim()}`;
    const ref = this.add('Coverage', key, { status: 'active', ...body, beneficiary: patient.ref, payor: [payor] }, this.path(segment), false);
    for (const n of nulls) addMeta(this.resourceOf(ref), EXPLICIT_NULL_URL, n);
  }

  private obr(segment: Hl7Segment): void {
    this.closeReport();
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.OBR!);
    if (!body.code) body.code = absentCode();
    const filler = segment.components(3);
    const placer = segment.components(2);
    const key = filler[0]?.trim()
      ? `filler:${eiSystem(filler, this.member, this.sub) ?? ''}|${filler[0].trim()}`
      : placer[0]?.trim()
        ? `placer:${eiSystem(placer, this.member, this.sub) ?? ''}|${placer[0].trim()}`
        : `${this.msgScope}|${this.path(segment)}`;
    const status = diagnosticReportStatus[segment.value(25).trim().toUpperCase()] ?? 'unknown';
    const issued = toDateTime(segment.value(22), this.offset);
    const ref = this.add(
      'DiagnosticReport',
      key,
      {
        status,
        ...body,
        ...(this.patient ? { subject: this.patient.ref } : {}),
        ...(this.encounter ? { encounter: this.encounter.ref } : {}),
        ...(issued?.includes('T') ? { issued } : {}),
      },
      this.path(segment),
      false,
    );
    const resource = this.resourceOf(ref);
    for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
    this.report = { resource, key: this.entries.get(ref.reference)!.key, observations: [], specimens: [], effective: body.effectiveDateTime as string | undefined };
  }

  /** End of an OBR group: results and specimens onto the report, a lone specimen onto its observations. */
  private closeReport(): void {
    const report = this.report;
    if (!report) return;
    if (report.observations.length) report.resource.result = report.observations.map((o) => ({ reference: `Observation/${o.id}` }));
    if (report.specimens.length) {
      report.resource.specimen = report.specimens;
      if (report.specimens.length === 1) for (const o of report.observations) o.specimen = report.specimens[0];
    }
    this.report = undefined;
  }

  private obx(segment: Hl7Segment): void {
    const at = (f: number) => this.path(segment, f);
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.OBX!);
    const code = (body.code as CodeableConcept | undefined) ?? absentCode();
    body.code = code;
    const status = observationStatus[segment.value(11).trim().toUpperCase()] ?? 'unknown';
    const values = this.obxValues(segment);
    const value: Json = {};
    if (values.length === 1) Object.assign(value, r4Value(values[0]!, R5_OBSERVATION_VALUE));
    else if (values.length > 1) value.component = values.map((v) => ({ code, ...r4Value(v, R5_COMPONENT_VALUE) }));
    const referenceRange = this.referenceRange(segment);
    const performer: Ref[] = [];
    segment.repetitions(16).forEach((_, rep) => {
      const who = this.practitioner(segment, 16, rep);
      if (who) performer.push(who);
    });
    if (!body.effectiveDateTime && this.report?.effective) body.effectiveDateTime = this.report.effective;
    // What the observation belongs to: its report, order or dose; else the visit; else the patient
    // at the observation's time (without one, this message only: two undated readings of one code
    // in different messages are different things).
    const owner = this.report?.key ?? this.order?.key ?? this.immunizationKey ?? this.encounter?.key;
    const scope = owner ?? `${this.patient?.key ?? this.msgScope}|at:${(body.effectiveDateTime as string | undefined) ?? this.msgScope}`;
    const codeKey = codeKeyOf(code);
    const key = codeKey ? `${scope}|obx:${codeKey}|sub:${segment.value(4).trim()}` : `${this.msgScope}|${this.path(segment)}`;
    const ref = this.add(
      'Observation',
      key,
      {
        status,
        ...body,
        ...(this.patient ? { subject: this.patient.ref } : {}),
        ...(this.encounter ? { encounter: this.encounter.ref } : {}),
        ...(performer.length ? { performer } : {}),
        ...value,
        ...(referenceRange ? { referenceRange: [referenceRange] } : {}),
      },
      this.path(segment),
      false,
    );
    const resource = this.resourceOf(ref);
    for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
    if (this.report) this.report.observations.push(resource);
    else if (this.order?.resource) {
      // OBX of an order: answers and observations the orderer supplies (v2-to-FHIR IG: ServiceRequest.supportingInfo)
      const info = (this.order.resource.supportingInfo as Ref[] | undefined) ?? [];
      info.push(ref);
      this.order.resource.supportingInfo = info;
    } else if (this.immunization && this.immunizationKey) resource.partOf = [{ reference: `Immunization/${this.immunization.id}` }];
  }

  /** OBX-5 by OBX-2 → one `{ value[x] }` per repetition (text types: one, repetitions joined by line breaks). */
  private obxValues(segment: Hl7Segment): Json[] {
    const at = this.path(segment, 5);
    if (segment.isExplicitNull(5)) return [];
    const type = segment.value(2).trim().toUpperCase();
    const reps = segment.repetitions(5).map((_, i) => segment.components(5, i));
    const nonEmpty = reps.filter((c) => c.some((x) => x.trim() !== ''));
    if (nonEmpty.length === 0) return [];
    const units = segment.isExplicitNull(6) || !segment.raw(6) ? undefined : segment.components(6);
    const text = (c: readonly string[]) => c.join(this.compSep);
    switch (type) {
      case 'ST':
      case 'TX':
      case 'FT':
        return [{ valueString: reps.map(text).join('\n').trim() }];
      case '':
        throw new HubError('invalid', 'OBX-2 (value type) is empty but OBX-5 is valued', this.path(segment, 2));
    }
    return nonEmpty.map((c): Json => {
      switch (type) {
        case 'NM': {
          const q = nmToQuantity(c[0] ?? '', units, this.sub);
          if (!q) throw new HubError('invalid', `OBX-5 "${c[0]}" is not a number (OBX-2 NM)`, at);
          return { valueQuantity: q };
        }
        case 'SN': {
          const sn = snToValue(c, units, this.sub);
          if (!sn) return {};
          if (sn.kind === 'quantity') return { valueQuantity: sn.quantity };
          if (sn.kind === 'range') return { valueRange: sn.range };
          if (sn.kind === 'ratio') return { valueRatio: sn.ratio };
          return { valueString: sn.value };
        }
        case 'CQ': {
          const q = cqToQuantity(c, this.sub);
          if (!q) throw new HubError('invalid', `OBX-5 "${text(c)}" is not a quantity (OBX-2 CQ)`, at);
          return { valueQuantity: q };
        }
        case 'MO':
        case 'CP': {
          const n = toNumber((c[0] ?? '').split(this.sub)[0] ?? '');
          if (n === undefined) throw new HubError('invalid', `OBX-5 "${text(c)}" is not an amount (OBX-2 ${type})`, at);
          const currency = type === 'MO' ? (c[1] ?? '').trim() : ((c[0] ?? '').split(this.sub)[1] ?? '').trim();
          return { valueQuantity: { value: n, ...(currency ? { unit: currency, system: 'urn:iso:std:iso:4217', code: currency } : {}) } };
        }
        case 'CE':
        case 'CWE':
        case 'CNE':
        case 'CF':
        case 'ID':
        case 'IS': {
          const cc = cweToCodeableConcept(c, this.member);
          if (!cc) throw new HubError('invalid', `OBX-5 "${text(c)}" holds no code (OBX-2 ${type})`, at);
          return { valueCodeableConcept: cc };
        }
        case 'DT':
        case 'TS':
        case 'DTM': {
          const v = toDateTime(c[0] ?? '', this.offset);
          if (!v) throw new HubError('invalid', `OBX-5 "${c[0]}" is not a date/time (OBX-2 ${type})`, at);
          return { valueDateTime: v };
        }
        case 'TM': {
          const m = /^(\d{2})(\d{2})?(\d{2})?/.exec((c[0] ?? '').trim());
          if (!m || Number(m[1]) > 23 || Number(m[2] ?? 0) > 59 || Number(m[3] ?? 0) > 59) throw new HubError('invalid', `OBX-5 "${c[0]}" is not a time (OBX-2 TM)`, at);
          return { valueTime: `${m[1]}:${m[2] ?? '00'}:${m[3] ?? '00'}` };
        }
        case 'DR': {
          const start = toDateTime((c[0] ?? '').split(this.sub)[0] ?? '', this.offset);
          const end = toDateTime((c[1] ?? '').split(this.sub)[0] ?? '', this.offset);
          if (!start && !end) throw new HubError('invalid', `OBX-5 "${text(c)}" is not a date range (OBX-2 DR)`, at);
          return { valuePeriod: { ...(start ? { start } : {}), ...(end ? { end } : {}) } };
        }
        case 'ED':
          return { valueAttachment: this.edAttachment(c, at) };
        case 'RP': {
          const pointer = (c[0] ?? '').trim();
          const contentType = mimeOf((c[3] ?? '').trim(), (c[2] ?? '').trim());
          return { valueAttachment: { ...(contentType ? { contentType } : {}), url: pointer.replace(/\s/g, '%20') } };
        }
        case 'HD':
        case 'EI':
        case 'CX':
        case 'XPN':
        case 'XAD':
        case 'XCN':
        case 'XON':
        case 'XTN':
        case 'PN':
        case 'AD':
        case 'NA':
          return { valueString: c.flatMap((x) => x.split(this.sub)).map((x) => x.trim()).filter((x) => x !== '').join(' ') };
        default:
          throw new HubError('invalid', `OBX-2 value type "${type}" is not supported`, this.path(segment, 2));
      }
    });
  }

  /** ED (source^type^subtype^encoding^data) → Attachment; the data is carried as base64. */
  private edAttachment(c: readonly string[], at: string): Json {
    const contentType = mimeOf((c[2] ?? '').trim(), (c[1] ?? '').trim());
    const encoding = (c[3] ?? '').trim().toUpperCase();
    const data = (c[4] ?? '').replace(/\s/g, '');
    let base64: string | undefined;
    if (data === '') base64 = undefined;
    else if (encoding === 'BASE64') {
      if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(data)) throw new HubError('invalid', 'OBX-5 ED data is not valid Base64', at);
      base64 = data;
    } else if (encoding === 'HEX') {
      if (!/^(?:[0-9A-Fa-f]{2})*$/.test(data)) throw new HubError('invalid', 'OBX-5 ED data is not valid hex', at);
      base64 = Buffer.from(data, 'hex').toString('base64');
    } else base64 = Buffer.from(c[4] ?? '', 'utf8').toString('base64');
    return { ...(contentType ? { contentType } : {}), ...(base64 ? { data: base64 } : {}) };
  }

  /** OBX-7 → referenceRange: "a-b", "a to b", "<b", "<=b", ">a", ">=a" with OBX-6 units; always the text as sent. */
  private referenceRange(segment: Hl7Segment): Json | undefined {
    if (segment.isExplicitNull(7)) return undefined;
    const text = segment.components(7).join(this.compSep).trim();
    if (!text) return undefined;
    const units = segment.raw(6) && !segment.isExplicitNull(6) ? unitsOf(segment.components(6), this.sub) : {};
    const q = (v: string): Quantity | undefined => {
      const n = toNumber(v);
      return n === undefined ? undefined : { value: n, ...units };
    };
    const between = RANGE_BETWEEN.exec(text);
    const bound = RANGE_BOUND.exec(text);
    let range: Json = {};
    if (between) range = { low: q(between[1]!), high: q(between[2]!) };
    else if (bound) range = bound[1]!.startsWith('<') || bound[1] === '≤' ? { high: q(bound[2]!) } : { low: q(bound[2]!) };
    return { ...range, text };
  }

  private spm(segment: Hl7Segment): void {
    const body: Json = {};
    const nulls = this.applyRules(body, segment, this.maps.SPM!);
    const c = segment.components(2);
    const placer = (c[0] ?? '').split(this.sub)[0]!.trim();
    const filler = (c[1] ?? '').split(this.sub)[0]!.trim();
    const identifier = [filler, placer].filter((x) => x !== '').map((value) => ({ value }));
    const key = filler || placer ? `spm:${filler}|${placer}` : `${this.report?.key ?? this.msgScope}|${this.path(segment)}`;
    const ref = this.add('Specimen', key, { ...(identifier.length ? { identifier } : {}), ...body, ...(this.patient ? { subject: this.patient.ref } : {}) }, this.path(segment), false);
    for (const n of nulls) addMeta(this.resourceOf(ref), EXPLICIT_NULL_URL, n);
    this.report?.specimens.push(ref);
    if (this.order?.resource) {
      this.order.specimens.push(ref);
      const specimen = this.resourceOf(ref);
      specimen.request = [...((specimen.request as Ref[] | undefined) ?? []), { reference: `ServiceRequest/${this.order.resource.id}` }];
    }
  }

  // ---- orders (ORM^O01, OML^O21): ORC + OBR → ServiceRequest ----------------------------------

  private orc(segment: Hl7Segment): void {
    this.closeOrder();
    this.order = { orc: segment, specimens: [] };
  }

  /** An OBR after its ORC (or after an earlier OBR of the same ORC, or with no ORC at all). */
  private orderObr(segment: Hl7Segment): void {
    if (this.order?.resource) {
      const orc = this.order.orc;
      this.closeOrder();
      this.order = { orc, specimens: [] };
    }
    this.order ??= { specimens: [] };
    this.serviceRequest(this.order, segment);
  }

  /** End of an order group: an ORC without OBR still is a ServiceRequest; specimens onto it. */
  private closeOrder(): void {
    const order = this.order;
    if (!order) return;
    if (!order.resource && order.orc) this.serviceRequest(order, undefined);
    if (order.resource && order.specimens.length) order.resource.specimen = [...(order.resource.specimen as Ref[] | undefined ?? []), ...order.specimens];
    this.order = undefined;
  }

  /** Builds the order's ServiceRequest (and an OBR-15 Specimen) onto `order`. */
  private serviceRequest(order: NonNullable<Conversion['order']>, obr: Hl7Segment | undefined): void {
    const { orc, tq1 } = order;
    const anchor = (orc ?? obr)!;
    const patient = this.requirePatient(anchor);
    const body: Json = {};
    const nulls = orc ? this.applyRules(body, orc, this.maps.ORC!) : [];
    const ei = (field: number): { c: string[]; seg: Hl7Segment } | undefined => {
      for (const seg of [orc, obr]) if (seg && !seg.isExplicitNull(field) && (seg.components(field)[0] ?? '').trim()) return { c: seg.components(field), seg };
      return undefined;
    };
    const placer = ei(2);
    const filler = ei(3);
    const identifier = (
      [
        [placer, 'PLAC'],
        [filler, 'FILL'],
      ] as const
    )
      .filter(([x]) => x !== undefined)
      .map(([x, type]) => {
        const system = eiSystem(x!.c, this.member, this.sub);
        return { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: type }] }, ...(system ? { system } : {}), value: x!.c[0]!.trim() };
      });
    const key = filler
      ? `order-filler:${eiSystem(filler.c, this.member, this.sub) ?? ''}|${filler.c[0]!.trim()}`
      : placer
        ? `order-placer:${eiSystem(placer.c, this.member, this.sub) ?? ''}|${placer.c[0]!.trim()}`
        : `${this.msgScope}|${this.path(anchor)}`;
    const orderStatusCode = orc?.value(5).trim().toUpperCase() ?? '';
    const controlCode = orc?.value(1).trim().toUpperCase() ?? '';
    const status = serviceRequestStatusByOrderStatus[orderStatusCode] ?? serviceRequestStatusByOrderControl[controlCode] ?? 'unknown';
    const code = (obr && !obr.isExplicitNull(4) ? cweToCodeableConcept(obr.components(4), this.member) : undefined) ?? absentCode();
    let requester: Ref | undefined;
    for (const [seg, field] of [
      [orc, 12],
      [obr, 16],
    ] as const) {
      if (requester || !seg) continue;
      for (let rep = 0; rep < seg.repetitions(field).length && !requester; rep++) requester = this.practitioner(seg, field, rep);
    }
    const occurrence: Json = {};
    const tqStart = tq1 ? toDateTime(tq1.value(7), this.offset) : undefined;
    const tqEnd = tq1 ? toDateTime(tq1.value(8), this.offset) : undefined;
    if (tqStart || tqEnd) occurrence.occurrencePeriod = { ...(tqStart ? { start: tqStart } : {}), ...(tqEnd ? { end: tqEnd } : {}) };
    else if (obr) {
      const at = toDateTime(obr.value(7), this.offset);
      if (at) occurrence.occurrenceDateTime = at;
    }
    const priority = tq1 ? priorityByCode[tq1.value(9).trim().toUpperCase()] : undefined;
    const paths = [orc, obr].filter((x): x is Hl7Segment => x !== undefined).map((x) => this.path(x));
    const ref = this.add(
      'ServiceRequest',
      key,
      {
        ...(identifier.length ? { identifier } : {}),
        status,
        intent: 'order',
        ...(priority ? { priority } : {}),
        code,
        subject: patient.ref,
        ...(this.encounter ? { encounter: this.encounter.ref } : {}),
        ...occurrence,
        ...body,
        ...(requester ? { requester } : {}),
      },
      paths[0],
      false,
    );
    const resource = this.resourceOf(ref);
    for (const p of paths.slice(1)) addMeta(resource, SEGMENT_PATH_URL, p);
    for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
    const srKey = this.entries.get(ref.reference)!.key;
    order.resource = resource;
    order.key = srKey;
    // v2.3 OBR-15 specimen source (SPS: CWE specimen source name or code ^ additives ^ … ^ body site)
    if (obr && !obr.isExplicitNull(15)) {
      const c = obr.components(15);
      const type = cweToCodeableConcept((c[0] ?? '').split(this.sub), this.member);
      const site = cweToCodeableConcept((c[3] ?? '').split(this.sub), this.member);
      if (type || site) {
        const spec = this.add(
          'Specimen',
          `${srKey}|obr15`,
          { ...(type ? { type } : {}), subject: patient.ref, request: [ref], ...(site ? { collection: { bodySite: site } } : {}) },
          this.path(obr, 15),
          true,
        );
        order.specimens.push(spec);
      }
    }
  }

  // ---- scheduling (SIU): SCH + AIS/AIG/AIL/AIP → Appointment ---------------------------------

  private appointmentResource(segment: Hl7Segment): void {
    const appt = this.appointment;
    if (!appt) return;
    const at = (field: number) => this.path(segment, field);
    let actor: Ref | undefined;
    let type: CodeableConcept | undefined;
    switch (segment.name) {
      case 'AIS':
        appt.ais.push(segment);
        return;
      case 'AIP':
        for (let rep = 0; rep < segment.repetitions(3).length && !actor; rep++) actor = this.practitioner(segment, 3, rep);
        type = segment.isExplicitNull(4) ? undefined : cweToCodeableConcept(segment.components(4), this.member);
        break;
      case 'AIL':
        actor = this.location(segment, 3);
        type = segment.isExplicitNull(4) ? undefined : cweToCodeableConcept(segment.components(4), this.member);
        break;
      case 'AIG': {
        if (segment.isExplicitNull(3)) break;
        const cc = cweToCodeableConcept(segment.components(3), this.member);
        const codeKey = codeKeyOf(cc);
        if (!cc || !codeKey) break;
        const identifier = (cc.coding ?? []).filter((c) => c.code).map((c) => ({ ...(c.system ? { system: c.system } : {}), value: c.code! }));
        const name = cc.coding?.find((c) => c.display)?.display ?? cc.text;
        actor = this.add(
          'Device',
          `device:${codeKey}`,
          { ...(identifier.length ? { identifier } : {}), status: 'active', ...(name ? { deviceName: [{ name, type: 'user-friendly-name' }] } : {}) },
          at(3),
          true,
        );
        type = segment.isExplicitNull(4) ? undefined : cweToCodeableConcept(segment.components(4), this.member);
        break;
      }
    }
    if (actor && !appt.participants.some((p) => (p.actor as Ref).reference === actor!.reference)) appt.participants.push({ ...(type ? { type: [type] } : {}), actor });
  }

  private closeAppointment(): void {
    const appt = this.appointment;
    if (!appt) return;
    this.appointment = undefined;
    const sch = appt.sch;
    const body: Json = {};
    const nulls = this.applyRules(body, sch, this.maps.SCH!);
    // a bare table-0276 code (no coding system sent) is v2-0276
    const type = body.appointmentType as CodeableConcept | undefined;
    const first = type?.coding?.[0];
    if (first?.code && APPOINTMENT_REASONS.has(first.code.toUpperCase()) && (sch.value(7, 0, 3).trim() === '' || /^HL70276$/i.test(sch.value(7, 0, 3).trim()))) {
      first.system = 'http://terminology.hl7.org/CodeSystem/v2-0276';
      first.code = first.code.toUpperCase();
    }
    const ei = (field: number) => (sch.isExplicitNull(field) ? undefined : sch.components(field));
    const placer = ei(1);
    const filler = ei(2);
    const identifier = (
      [
        [placer, 'PLAC'],
        [filler, 'FILL'],
      ] as const
    )
      .filter(([c]) => (c?.[0] ?? '').trim() !== '')
      .map(([c, type]) => {
        const system = eiSystem(c!, this.member, this.sub);
        return { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: type }] }, ...(system ? { system } : {}), value: c![0]!.trim() };
      });
    const key = (filler?.[0] ?? '').trim()
      ? `appt-filler:${eiSystem(filler!, this.member, this.sub) ?? ''}|${filler![0]!.trim()}`
      : (placer?.[0] ?? '').trim()
        ? `appt-placer:${eiSystem(placer!, this.member, this.sub) ?? ''}|${placer![0]!.trim()}`
        : `${this.msgScope}|${this.path(sch)}`;
    const trigger = this.message.msh.value(9, 0, 2).trim().toUpperCase();
    const status = appointmentStatusByFiller[sch.value(25).trim().toUpperCase()] ?? appointmentStatusByEvent[trigger] ?? 'booked';
    // start/end: TQ1-7/8 (v2.5+), else SCH-11 TQ start/end (components 4/5), else the first AIS start + duration
    let start: string | undefined;
    let end: string | undefined;
    if (appt.tq1) {
      start = toDateTime(appt.tq1.value(7), this.offset);
      end = toDateTime(appt.tq1.value(8), this.offset);
    }
    if (!start && !sch.isExplicitNull(11)) {
      start = toDateTime(sch.value(11, 0, 4), this.offset);
      end = toDateTime(sch.value(11, 0, 5), this.offset);
    }
    const ais = appt.ais[0];
    if (!start && ais) {
      start = toDateTime(ais.value(4), this.offset);
      end = undefined;
    }
    if (start && !end) {
      for (const seg of appt.ais) {
        const minutes = durationMinutes(seg.value(7), seg.value(8));
        const from = toDateTime(seg.value(4), this.offset);
        if (minutes !== undefined && from === start) end = addMinutes(start, minutes);
      }
    }
    const serviceType = appt.ais
      .filter((s) => !s.isExplicitNull(3))
      .map((s) => cweToCodeableConcept(s.components(3), this.member))
      .filter((x): x is CodeableConcept => x !== undefined);
    const participantStatus = status === 'proposed' || status === 'pending' || status === 'waitlist' ? 'needs-action' : 'accepted';
    const participant = [...(this.patient ? [{ actor: this.patient.ref }] : []), ...appt.participants].map((p) => ({ ...p, status: participantStatus }));
    if (participant.length === 0) throw new HubError('structure', 'SIU: the appointment has no participant (no PID, AIP, AIL or AIG)', this.path(sch));
    const paths = [sch, ...(appt.tq1 ? [appt.tq1] : []), ...appt.ais].map((x) => this.path(x));
    const ref = this.add(
      'Appointment',
      key,
      {
        ...(identifier.length ? { identifier } : {}),
        status,
        ...(serviceType.length ? { serviceType } : {}),
        ...body,
        // R4 app-2: start and end together or neither; a lone start is the requested period
        ...(start && end ? { start, end } : start ? { requestedPeriod: [{ start }] } : {}),
        participant,
      },
      paths[0],
      false,
    );
    const resource = this.resourceOf(ref);
    for (const p of paths.slice(1)) addMeta(resource, SEGMENT_PATH_URL, p);
    for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
    this.attachZ(resource, this.pendingZ.splice(0));
  }

  // ---- referrals (REF/RRI^I12–I15): RF1 + PRD → ServiceRequest ------------------------------

  private closeReferral(): void {
    const referral = this.referral;
    if (!referral) return;
    this.referral = undefined;
    const rf1 = referral.rf1;
    const body: Json = {};
    const nulls = this.applyRules(body, rf1, this.maps.RF1!);
    const trigger = this.message.msh.value(9, 0, 2).trim().toUpperCase();
    const status = trigger === 'I14' ? 'revoked' : (referralStatus[rf1.value(1).trim().toUpperCase()] ?? 'active');
    const priority = referralPriority[rf1.value(2).trim().toUpperCase()];
    const category = [{ coding: [{ system: 'http://snomed.info/sct', code: '3457005', display: 'Patient referral' }] }, ...((body.category as Json[] | undefined) ?? [])];
    const idOf = (field: number) => {
      const c = rf1.isExplicitNull(field) ? undefined : rf1.components(field);
      return (c?.[0] ?? '').trim() ? `referral:${eiSystem(c!, this.member, this.sub) ?? ''}|${c![0]!.trim()}` : undefined;
    };
    const key = idOf(6) ?? idOf(11) ?? `${this.msgScope}|${this.path(rf1)}`;
    const facility = (role: string) => {
      const prd = referral.providers.find((p) => p.value(1, 0, 1).trim().toUpperCase() === role);
      if (!prd) return undefined;
      const id = prd.value(4, 0, 4).split(this.sub)[0]!.trim();
      const name = prd.value(4, 0, 9).trim() || id;
      if (!id && !name) return undefined;
      return this.add('Organization', `facility:${id || name}`, { ...(id ? { identifier: [{ system: `urn:yilian:${this.member}:facility`, value: id }] } : {}), name }, this.path(prd, 4), true);
    };
    const requester = facility('RP') ?? this.memberOrganization();
    const performer = facility('RT');
    const ref = this.add(
      'ServiceRequest',
      key,
      {
        ...body,
        status,
        intent: 'order',
        ...(priority ? { priority } : {}),
        category,
        ...(this.patient ? { subject: this.patient.ref } : {}),
        requester,
        ...(performer ? { performer: [performer] } : {}),
      },
      this.path(rf1),
      false,
    );
    if (!this.patient) throw new HubError('structure', `${this.message.msh.value(9, 0, 1)}: the referral has no patient (no PID)`, this.path(rf1));
    const resource = this.resourceOf(ref);
    for (const p of referral.providers) addMeta(resource, SEGMENT_PATH_URL, this.path(p));
    for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
  }

  // ---- financial (DFT^P03/P11): FT1 → ChargeItem, PID-18 → Account ---------------------------

  /** PID-18 patient account number → Account (status active, subject the Patient); key member + the account number. */
  private account(): Ref | undefined {
    const pid = this.message.segments.find((s) => s.name === 'PID');
    if (!pid || !this.patient || pid.isExplicitNull(18)) return undefined;
    const c = pid.components(18);
    const value = (c[0] ?? '').trim();
    if (!value) return undefined;
    const identifier = cxToIdentifier(c, this.member, this.sub, this.offset);
    const system = hdToSystem(c[3] ?? '', this.member, this.sub) ?? '';
    return this.add('Account', `account:${system}|${value}`, { ...(identifier ? { identifier: [identifier] } : {}), status: 'active', subject: [this.patient.ref] }, this.path(pid, 18), true);
  }

  private ft1(segment: Hl7Segment): void {
    const patient = this.requirePatient(segment);
    const at = (f: number) => (segment.isExplicitNull(f) ? undefined : segment.components(f));
    const txn = at(2);
    const txnValue = (txn?.[0] ?? '').trim();
    const identifier = txnValue ? cxToIdentifier(txn!, this.member, this.sub, this.offset) : undefined;
    const key = txnValue ? `txn:${txnValue}` : `${this.msgScope}|ft1:${segment.value(1).trim() || this.path(segment)}`;
    const code = (at(7) && cweToCodeableConcept(at(7)!, this.member)) || absentCode();
    const occurrence = toDateTime(segment.value(4, 0, 1, 1), this.offset);
    const entered = toDateTime(segment.value(5, 0, 1, 1), this.offset);
    const quantity = at(10) ? toNumber(at(10)![0] ?? '') : undefined;
    const amount = at(11) ? (at(11)![0] ?? '').split(this.sub) : [];
    const price = toNumber(amount[0] ?? '');
    const currency = (amount[1] ?? '').trim().toUpperCase();
    // FT1-20 performed by; FT1-21 ordered by (ordering provider, table 0443 OP); FT1-24 entered by
    const performer: Json[] = [];
    for (const [field, role] of [
      [20, undefined],
      [21, { system: 'http://terminology.hl7.org/CodeSystem/v2-0443', code: 'OP', display: 'Ordering Provider' }],
    ] as const) {
      segment.repetitions(field).forEach((_, rep) => {
        const who = this.practitioner(segment, field, rep);
        if (who && !performer.some((p) => (p.actor as Ref).reference === who.reference)) performer.push({ ...(role ? { function: { coding: [role] } } : {}), actor: who });
      });
    }
    const enterer = this.practitioner(segment, 24, 0);
    const reason = segment.isExplicitNull(19)
      ? []
      : segment
          .repetitions(19)
          .map((_, rep) => cweToCodeableConcept(segment.components(19, rep), this.member))
          .filter((x): x is CodeableConcept => x !== undefined);
    const account = this.account();
    this.add(
      'ChargeItem',
      key,
      {
        ...(identifier ? { identifier: [identifier] } : {}),
        status: 'billable',
        code,
        subject: patient.ref,
        ...(this.encounter ? { context: this.encounter.ref } : {}),
        ...(occurrence ? { occurrenceDateTime: occurrence } : {}),
        ...(performer.length ? { performer } : {}),
        ...(enterer ? { enterer } : {}),
        ...(entered ? { enteredDate: entered } : {}),
        ...(quantity !== undefined ? { quantity: { value: quantity } } : {}),
        ...(price !== undefined ? { priceOverride: { value: price, ...(/^[A-Z]{3}$/.test(currency) ? { currency } : {}) } } : {}),
        ...(reason.length ? { reason } : {}),
        ...(account ? { account: [account] } : {}),
      },
      this.path(segment),
      false,
    );
  }

  // ---- documents (MDM^T01–T11): TXA + OBX → DocumentReference --------------------------------

  private closeDocument(): void {
    const doc = this.document;
    if (!doc) return;
    this.document = undefined;
    const txa = doc.txa;
    const patient = this.requirePatient(txa);
    const ei = !txa.isExplicitNull(12) ? txa.components(12) : undefined;
    const number = (ei?.[0] ?? '').trim();
    const system = number ? eiSystem(ei!, this.member, this.sub) : undefined;
    const key = number ? `doc:${system ?? ''}|${number}` : `${this.msgScope}|${this.path(txa)}`;
    const type = txa.isExplicitNull(2) ? undefined : cweToCodeableConcept(txa.components(2), this.member);
    const availability = txa.value(19).trim().toUpperCase();
    const docStatus = documentCompletionStatus[txa.value(17).trim().toUpperCase()];
    const author: Ref[] = [];
    for (const field of [9, 5]) {
      txa.repetitions(field).forEach((_, rep) => {
        const who = this.practitioner(txa, field, rep);
        if (who && !author.some((a) => a.reference === who.reference)) author.push(who);
      });
    }
    const date = [toDateTime(txa.value(4, 0, 1, 1), this.offset), toDateTime(txa.value(6, 0, 1, 1), this.offset)].find((d) => d !== undefined && isInstant(d));
    // OBX-5: text types are lines of one text/plain attachment (first); ED values are attachments of their own type
    const lines: string[] = [];
    const attachments: Json[] = [];
    for (const obx of doc.obx) {
      if (obx.isExplicitNull(5)) continue;
      const vt = obx.value(2).trim().toUpperCase();
      const reps = obx.repetitions(5).map((_, i) => obx.components(5, i));
      if (vt === 'TX' || vt === 'FT' || vt === 'ST') lines.push(...reps.map((c) => c.join(this.compSep)));
      else if (vt === 'ED') for (const c of reps) if (c.some((x) => x.trim() !== '')) attachments.push(this.edAttachment(c, this.path(obx, 5)));
    }
    const text = lines.join('\n');
    const content: Json[] = [
      ...(text.trim() ? [{ attachment: { contentType: 'text/plain; charset=utf-8', data: Buffer.from(text, 'utf8').toString('base64') } }] : []),
      ...attachments.filter((a) => Object.keys(a).length > 0).map((attachment) => ({ attachment })),
    ];
    // R4 content is 1..*: a document announced without its content carries data-absent-reason
    if (content.length === 0) content.push({ attachment: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] } });
    const ref = this.add(
      'DocumentReference',
      key,
      {
        ...(number ? { masterIdentifier: { ...(system ? { system } : {}), value: number } } : {}),
        status: availability === 'OB' ? 'superseded' : 'current',
        ...(docStatus ? { docStatus } : {}),
        ...(type ? { type } : {}),
        subject: patient.ref,
        ...(date ? { date } : {}),
        ...(author.length ? { author } : {}),
        content,
        ...(this.encounter ? { context: { encounter: [this.encounter.ref] } } : {}),
      },
      this.path(txa),
      false,
    );
    const resource = this.resourceOf(ref);
    for (const obx of doc.obx) addMeta(resource, SEGMENT_PATH_URL, this.path(obx));
    this.attachZ(resource, this.pendingZ.splice(0));
  }

  // ---- immunization (VXU^V04): RXA (+ RXR) → Immunization -----------------------------------

  private rxa(segment: Hl7Segment): void {
    const patient = this.requirePatient(segment);
    const at = (f: number) => (segment.isExplicitNull(f) ? undefined : segment.components(f));
    const vaccineCode = (at(5) && cweToCodeableConcept(at(5)!, this.member)) || absentCode();
    const occurrence = toDateTime(segment.value(3, 0, 1, 1), this.offset);
    if (!occurrence) throw new HubError('structure', 'RXA-3 (date/time start of administration) is empty or unreadable', this.path(segment, 3));
    const amount = segment.value(6).trim();
    const dose = amount && toNumber(amount) !== 999 ? nmToQuantity(amount, at(7), this.sub) : undefined;
    const completion = segment.value(20).trim().toUpperCase();
    const action = segment.value(21).trim().toUpperCase();
    const status = action === 'D' ? 'entered-in-error' : completion === 'RE' || completion === 'NA' ? 'not-done' : 'completed';
    const statusReason = status === 'not-done' && at(18) ? cweToCodeableConcept(at(18)!, this.member) : undefined;
    const origin = segment.value(9).trim();
    const primarySource = origin === '00' ? true : /^0[1-8]$/.test(origin) ? false : undefined;
    const lot = segment.value(15).trim();
    const expiration = toDate(segment.value(16, 0, 1, 1).trim());
    let manufacturer: Ref | undefined;
    const mvx = at(17) ? cweToCodeableConcept(at(17)!, this.member) : undefined;
    const mvxKey = codeKeyOf(mvx);
    if (mvx && mvxKey) {
      const coding = mvx.coding?.find((c) => c.code);
      const name = mvx.coding?.find((c) => c.display)?.display ?? mvx.text;
      manufacturer = this.add(
        'Organization',
        `manufacturer:${mvxKey}`,
        { ...(coding ? { identifier: [{ ...(coding.system ? { system: coding.system } : {}), value: coding.code! }] } : {}), active: true, ...(name ? { name } : {}) },
        this.path(segment, 17),
        true,
      );
    }
    const performer: Json[] = [];
    segment.repetitions(10).forEach((_, rep) => {
      const who = this.practitioner(segment, 10, rep);
      if (who && !performer.some((p) => (p.actor as Ref).reference === who.reference))
        performer.push({ function: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0443', code: 'AP', display: 'Administering Provider' }] }, actor: who });
    });
    const orc = this.immunizationOrc;
    const filler = orc && !orc.isExplicitNull(3) ? orc.components(3) : undefined;
    const fillerValue = (filler?.[0] ?? '').trim();
    const fillerSystem = fillerValue ? eiSystem(filler!, this.member, this.sub) : undefined;
    const key = fillerValue ? `imm-filler:${fillerSystem ?? ''}|${fillerValue}` : `imm:${patient.key}|${codeKeyOf(vaccineCode) ?? ''}|${occurrence}`;
    const ref = this.add(
      'Immunization',
      key,
      {
        ...(fillerValue ? { identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'FILL' }] }, ...(fillerSystem ? { system: fillerSystem } : {}), value: fillerValue }] } : {}),
        status,
        ...(statusReason ? { statusReason } : {}),
        vaccineCode,
        patient: patient.ref,
        ...(this.encounter ? { encounter: this.encounter.ref } : {}),
        occurrenceDateTime: occurrence,
        ...(primarySource !== undefined ? { primarySource } : {}),
        ...(manufacturer ? { manufacturer } : {}),
        ...(lot ? { lotNumber: lot } : {}),
        ...(expiration ? { expirationDate: expiration } : {}),
        ...(dose ? { doseQuantity: dose } : {}),
        ...(performer.length ? { performer } : {}),
        ...(completion === 'PA' && status === 'completed' ? { isSubpotent: true } : {}),
      },
      this.path(segment),
      false,
    );
    this.immunization = this.resourceOf(ref);
    this.immunizationKey = this.entries.get(ref.reference)!.key;
    if (orc) addMeta(this.immunization, SEGMENT_PATH_URL, this.path(orc));
  }

  /** RXR after an RXA: route RXR-1, site RXR-2 of that Immunization. */
  private rxr(segment: Hl7Segment): void {
    const imm = this.immunization;
    if (!imm) return;
    const route = segment.isExplicitNull(1) ? undefined : cweToCodeableConcept(segment.components(1), this.member);
    const site = segment.isExplicitNull(2) ? undefined : cweToCodeableConcept(segment.components(2), this.member);
    if (route) imm.route = route;
    if (site) imm.site = site;
    if (route || site) addMeta(imm, SEGMENT_PATH_URL, this.path(segment));
  }

  // ---- merges (ADT^A34/A39/A40/A47): MRG-1 → the retired Patient, linked to the survivor -----

  private mrg(segment: Hl7Segment): void {
    const survivor = this.requirePatient(segment);
    if (segment.isExplicitNull(1)) return;
    const reps = segment.repetitions(1).map((_, i) => segment.components(1, i));
    const pick = reps.find((c) => (c[4] ?? '').trim().toUpperCase() === 'MR' && (c[0] ?? '').trim()) ?? reps.find((c) => (c[0] ?? '').trim());
    if (!pick) return;
    const key = `mrn:${hdToSystem(pick[3] ?? '', this.member, this.sub) ?? ''}|${pick[0]!.trim()}`;
    if (key === survivor.key) return;
    const identifier = reps.map((c) => cxToIdentifier(c, this.member, this.sub, this.offset)).filter((x): x is Identifier => x !== undefined);
    // Tagged link-only: the hub's merge sets active and link on the stored record and keeps the rest
    // (name, birth date … that earlier messages gave it); a plain FHIR server gets the whole skeleton.
    const retired = this.add(
      'Patient',
      key,
      { meta: { tag: [LINK_ONLY_TAG] }, identifier, active: false, link: [{ other: survivor.ref, type: 'replaced-by' }] },
      this.path(segment, 1),
      true,
    );
    const resource = this.resourceOf(survivor.ref);
    const links = (resource.link as Json[] | undefined) ?? [];
    if (!links.some((l) => (l.other as Ref).reference === retired.reference)) links.push({ other: retired, type: 'replaces' });
    resource.link = links;
  }

  /** NTE after an OBX → Observation.note (only inside the profiles that convert OBX). */
  private note(segment: Hl7Segment): void {
    if (!this.active.has('OBX') || this.last?.resourceType !== 'Observation') return;
    const text = segment
      .repetitions(3)
      .map((_, i) => segment.components(3, i).join(this.compSep))
      .join('\n')
      .trim();
    if (!text) return;
    const notes = (this.last.note as Json[] | undefined) ?? [];
    notes.push({ text });
    this.last.note = notes;
  }

  // ---- the data-driven part -------------------------------------------------------------------

  /** Apply a segment map's field rules to `target`; returns the fields sent as `""`. */
  private applyRules(target: Json, segment: Hl7Segment, map: SegmentMap): string[] {
    const nulls: string[] = [];
    for (const rule of map.fields) {
      if (rule.when) {
        const on = rule.when.segment ? this.lastOf.get(rule.when.segment) : segment;
        if (!on || !rule.when.in.includes(on.value(rule.when.field).trim().toUpperCase())) continue;
      }
      if (segment.isExplicitNull(rule.field)) {
        const where = `${segment.name}-${rule.field}`;
        if (!nulls.includes(where)) nulls.push(where);
        continue;
      }
      const reps = segment.repetitions(rule.field);
      const count = rule.repeat ? reps.length : Math.min(1, reps.length);
      for (let rep = 0; rep < count; rep++) {
        const value = this.read(segment, rule, rep);
        if (value === undefined) continue;
        if (rule.fallback && getPath(target, rule.to) !== undefined) continue;
        // the same identifier, name or contact said twice (PID-3 and GT1-2, say) is kept once
        if (rule.to.endsWith('[]') && !rule.to.includes('.') && isDuplicate(target[rule.to.slice(0, -2)], value)) continue;
        setPath(target, rule.to, value);
      }
    }
    return nulls;
  }

  private read(segment: Hl7Segment, rule: FieldRule, rep: number): unknown {
    const c = segment.components(rule.field, rep);
    const first = (c[0] ?? '').split(this.sub)[0]!.trim();
    switch (rule.datatype) {
      case 'ST': {
        const v = c.join(this.compSep).trim();
        return v === '' ? undefined : v;
      }
      case 'ID': {
        if (!first) return undefined;
        return rule.table ? tables[rule.table][first.toUpperCase()] : first;
      }
      case 'XPN':
        return xpnToHumanName(c, this.sub, this.offset);
      case 'XPN-called-by':
        return xpnCalledBy(c);
      case 'XPN-pinyin': {
        const name = xpnToHumanName(c, this.sub, this.offset);
        return name && asPinyin(name);
      }
      case 'CX':
        return cxToIdentifier(c, this.member, this.sub, this.offset);
      case 'EI': {
        const value = (c[0] ?? '').trim();
        if (!value) return undefined;
        const system = eiSystem(c, this.member, this.sub);
        return { ...(system ? { system } : {}), value } satisfies Identifier;
      }
      case 'XAD':
        return xadToAddress(c, this.sub, this.offset);
      case 'XTN':
        return xtnToContactPoint(c, this.offset);
      case 'CWE':
        return cweToCodeableConcept(c, this.member);
      case 'CWE-interpretation':
        return abnormalFlagToInterpretation(c, this.member);
      case 'DTM':
        return toDateTime(first, this.offset);
      case 'DT':
        return toDate(first);
      case 'NM': {
        const n = toNumber(first);
        return n !== undefined && (!rule.to.endsWith('Integer') || Number.isInteger(n)) ? n : undefined;
      }
      case 'DLN': {
        const value = first;
        if (!value) return undefined;
        const expires = toDate((c[2] ?? '').trim());
        return {
          type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'DL' }] },
          value,
          ...(expires ? { period: { end: expires } } : {}),
        } satisfies Identifier;
      }
      case 'ST-Identifier': {
        const value = c.join(this.compSep).trim();
        if (!value) return undefined;
        return {
          ...(rule.identifierType ? { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: rule.identifierType }] } } : {}),
          ...(rule.system ? { system: rule.system } : {}),
          value,
        } satisfies Identifier;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * R4 Observation.value[x] has no Attachment (R5 added it): ED and RP values travel in the R5
 * cross-version extension for Observation.value (and .component.value), as FHIR prescribes for
 * elements of a later version.
 */
/** OBX-7 `a-b`, `a – b`, `a~b`, `a to b` */
const RANGE_BETWEEN = /^([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:-|–|~|to)\s*([+-]?(?:\d+\.?\d*|\.\d+))$/i;
/** OBX-7 `<b`, `<=b`, `>a`, `>=a`, `≤b`, `≥a` */
const RANGE_BOUND = /^(<=?|>=?|≤|≥)\s*([+-]?(?:\d+\.?\d*|\.\d+))$/;
const R5_OBSERVATION_VALUE = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value';
const R5_COMPONENT_VALUE = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.component.value';

function r4Value(v: Json, url: string): Json {
  if (!('valueAttachment' in v)) return v;
  return { extension: [{ url, valueAttachment: v.valueAttachment }] };
}

/**
 * A required code the message leaves empty (OBX-3, OBR-4, DG1-3): FHIR's data-absent-reason
 * extension instead of an invented code; the key of such a resource is message-scoped.
 */
function absentCode(): CodeableConcept {
  return { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] } as CodeableConcept;
}

/** EI (entity id^namespace^universal id^type) → system. */
function eiSystem(c: readonly string[], memberId: string, sub: string): string | undefined {
  return hdToSystem([c[1] ?? '', c[2] ?? '', c[3] ?? ''].join(sub), memberId, sub);
}

/** A CodeableConcept's identity for keys: its first coding's system|code, else its text. */
function codeKeyOf(cc: CodeableConcept | undefined): string | undefined {
  const coding = cc?.coding?.find((c) => c.code);
  if (coding) return `${coding.system ?? ''}|${coding.code}`;
  return cc?.text ? `text:${cc.text}` : undefined;
}

/** AIx-7 duration with AIx-8 units (CNE; minutes when absent) → minutes. */
function durationMinutes(value: string, unit: string): number | undefined {
  const n = toNumber(value);
  if (n === undefined || n < 0) return undefined;
  const u = unit.trim().toLowerCase();
  const factor = u === '' || u === 'min' || u === 'm' ? 1 : u === 's' ? 1 / 60 : u === 'h' || u === 'hr' ? 60 : u === 'd' ? 1440 : undefined;
  return factor === undefined ? undefined : n * factor;
}

/** A FHIR dateTime with a time and an offset, plus minutes, in the same offset. */
function addMinutes(dateTime: string, minutes: number): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(dateTime);
  if (!m) return undefined;
  const local = new Date(Date.parse(`${m[1]}Z`) + minutes * 60000);
  return `${local.toISOString().slice(0, 19)}${m[2]}`;
}

/** A FHIR dateTime precise to the second with an offset (what an `instant` element takes). */
function isInstant(v: string): boolean {
  return /T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v);
}

function mimeOf(subtype: string, type: string): string | undefined {
  if (subtype.includes('/')) return subtype;
  return mimeBySubtype[subtype.toUpperCase()] ?? (type.toUpperCase() === 'TEXT' ? 'text/plain' : undefined);
}

function addMeta(resource: Resource, url: string, valueString: string): void {
  resource.meta ??= {};
  (resource.meta.extension ??= []).push({ url, valueString });
}

/** `a.b` sets, `a[]` appends, `a[].b` appends an object and sets b on it. */
export function setPath(target: Json, path: string, value: unknown): void {
  const parts = path.split('.');
  let obj = target;
  parts.forEach((part, i) => {
    const last = i === parts.length - 1;
    const isArray = part.endsWith('[]');
    const key = isArray ? part.slice(0, -2) : part;
    if (isArray) {
      const arr = (obj[key] ??= []) as unknown[];
      if (last) arr.push(value);
      else {
        const next: Json = {};
        arr.push(next);
        obj = next;
      }
    } else if (last) obj[key] = value;
    else obj = (obj[key] ??= {}) as Json;
  });
}

function isDuplicate(list: unknown, value: unknown): boolean {
  if (!Array.isArray(list) || list.length === 0) return false;
  const v = JSON.stringify(value);
  return list.some((x) => JSON.stringify(x) === v);
}

function getPath(target: Json, path: string): unknown {
  let cur: unknown = target;
  for (const part of path.split('.')) {
    if (cur === undefined || cur === null) return undefined;
    const key = part.endsWith('[]') ? part.slice(0, -2) : part;
    cur = (cur as Json)[key];
    if (Array.isArray(cur)) cur = cur[cur.length - 1];
  }
  return cur;
}
