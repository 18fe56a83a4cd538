/**
 * HL7 v2 message → FHIR R4 Bundle. Pure: no I/O, no terminology, no clock except when MSH-7 is
 * unreadable (Provenance.recorded must be an instant).
 *
 * The engine walks the segments in order and applies the segment maps of segments.ts (data), with
 * the member's overrides on top; what is not "field → path" is code (ids, references, OBX-5
 * value[x], OBX-7 ranges, Encounter status, locations, practitioners). Here: the walk, the Bundle
 * and the Provenance; convert/conversion.ts: the state, `resourceId` and what every builder uses;
 * convert/fieldRules.ts: the field rules; convert/<family>.ts: each message family's builders.
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
import type { Hl7Message, Hl7Segment } from './message';
import { parseHl7Time } from './time';
import { HubError } from '../outcome';
import { conformance } from './dictionary';
import { Conversion, type ConvertContext, type Json, type Ref, type Resource } from './convert/conversion';
import { al1, dg1, extendPatient, in1, mrg, pda, pid, pv1, pv2 } from './convert/patientAdministration';
import { closeReport, note, obr, obx, spm } from './convert/results';
import { closeOrder, orc, orderObr } from './convert/orders';
import { appointmentResource, closeAppointment } from './convert/scheduling';
import { closeReferral } from './convert/referrals';
import { ft1 } from './convert/financial';
import { closeDocument } from './convert/documents';
import { rxa, rxr } from './convert/immunization';

/** On the Provenance: one finding of the message against its version's dictionary (mappings/hl7v2/dictionary.ts). */
export const CONFORMANCE_URL = 'https://yilian.example/fhir/StructureDefinition/conformance-issue';
/** At most this many findings are carried; a message with more says how many it left out. */
const MAX_CONFORMANCE_ISSUES = 20;

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

export function convertMessage(message: Hl7Message, ctx: ConvertContext): Bundle {
  return convertWithKeys(message, ctx).bundle;
}

/** The bundle and, per `Type/id`, the business key it was made from (for identity checks). */
export function convertWithKeys(message: Hl7Message, ctx: ConvertContext): { bundle: Bundle; keys: Map<string, string> } {
  return run(new Conversion(message, ctx));
}

// ---------------------------------------------------------------------------------------------

function run(conv: Conversion): { bundle: Bundle; keys: Map<string, string> } {
  const msh = conv.message.msh;
  const controlId = msh.value(10);
  if (!controlId) throw new HubError('structure', 'MSH-10 (message control id) is empty', 'MSH-10');
  for (const segment of conv.message.segments) {
    conv.lastOf.set(segment.name, segment);
    if (segment.name.startsWith('Z')) {
      conv.zSegment(segment);
      continue;
    }
    if (segment.name === 'NTE') note(conv, segment);
    if (!conv.active.has(segment.name)) continue;
    switch (segment.name) {
      case 'PID':
        pid(conv, segment);
        break;
      case 'PV1':
        pv1(conv, segment);
        break;
      case 'PV2':
        pv2(conv, segment);
        break;
      case 'DG1':
        dg1(conv, segment);
        break;
      case 'AL1':
        al1(conv, segment);
        break;
      case 'PDA':
        pda(conv, segment);
        break;
      case 'IN1':
        in1(conv, segment);
        break;
      case 'GT1':
      case 'DB1':
      case 'IN2':
        extendPatient(conv, segment);
        break;
      case 'OBR':
        if (conv.active.has('ORC')) orderObr(conv, segment);
        else obr(conv, segment);
        break;
      case 'ORC':
        if (conv.active.has('RXA')) conv.immunizationOrc = segment;
        else orc(conv, segment);
        break;
      case 'TQ1':
        if (conv.appointment && !conv.appointment.tq1) conv.appointment.tq1 = segment;
        else if (conv.order && !conv.order.resource && !conv.order.tq1) conv.order.tq1 = segment;
        break;
      case 'SCH':
        closeAppointment(conv);
        conv.appointment = { sch: segment, ais: [], participants: [] };
        break;
      case 'AIS':
      case 'AIG':
      case 'AIL':
      case 'AIP':
        appointmentResource(conv, segment);
        break;
      case 'OBX':
        if (conv.active.has('TXA')) conv.document?.obx.push(segment);
        else obx(conv, segment);
        break;
      case 'FT1':
        ft1(conv, segment);
        break;
      case 'TXA':
        closeDocument(conv);
        conv.document = { txa: segment, obx: [] };
        break;
      case 'RXA':
        rxa(conv, segment);
        break;
      case 'RXR':
        rxr(conv, segment);
        break;
      case 'MRG':
        mrg(conv, segment);
        break;
      case 'SPM':
        spm(conv, segment);
        break;
      case 'RF1':
        conv.referral = { rf1: segment, providers: [] };
        break;
      case 'PRD':
        conv.referral?.providers.push(segment);
        break;
    }
  }
  // In REF_I12 the PID follows RF1 and PRD: the referral is built once the whole message is read.
  closeReferral(conv);
  closeReport(conv);
  closeOrder(conv);
  closeAppointment(conv);
  closeDocument(conv);

  const recordedTime = parseHl7Time(msh.value(7), conv.offset);
  const timestamp = recordedTime?.instant.toISOString();
  const unattached = conv.pendingZ;
  conv.pendingZ = [];
  const targets = [...conv.entries.values()].map((e) => ({ reference: `${e.resource.resourceType}/${e.resource.id}` }));
  // Nothing converted (no segment of the message type's profile): an empty batch, no Provenance.
  if (targets.length > 0) provenance(conv, targets, controlId, timestamp, unattached);
  const keys = new Map<string, string>();
  const entry: BundleEntry[] = [];
  for (const [url, e] of conv.entries) {
    keys.set(url, e.key);
    entry.push({ resource: e.resource, request: { method: 'PUT', url } });
  }
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'batch',
    identifier: { system: `urn:yilian:${conv.member}:message-control-id`, value: controlId },
    ...(timestamp ? { timestamp } : {}),
    entry,
  };
  return { bundle, keys };
}

/** One Provenance per message: target every produced resource; entity the raw message; agents the member (an Organization in the bundle) and the channel. */
function provenance(conv: Conversion, targets: Ref[], controlId: string, timestamp: string | undefined, unattachedZ: Hl7Segment[]): void {
  const msh = conv.message.msh;
  const memberOrg = conv.memberOrganization();
  const raw =
    conv.ctx.rawId !== undefined
      ? { system: 'urn:ietf:rfc:3986', value: `urn:yilian:raw:${conv.ctx.rawId}` }
      : { system: `urn:yilian:${conv.member}:message-control-id`, value: controlId };
  conv.add(
    'Provenance',
    `provenance:${conv.msgScope}`,
    {
      target: targets,
      recorded: timestamp ?? new Date().toISOString(),
      activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }] },
      agent: [
        {
          type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }] },
          who: { ...memberOrg, display: conv.ctx.member?.name ?? conv.member },
        },
        {
          type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'assembler' }] },
          who: { identifier: { system: `urn:yilian:${conv.member}:channel`, value: conv.ctx.channelId }, display: `channel ${conv.member}/${conv.ctx.channelId}` },
        },
      ],
      entity: [{ role: 'source', what: { identifier: raw, display: `HL7 v2 ${msh.value(9, 0, 1)}^${msh.value(9, 0, 2)} ${controlId}` } }],
      ...conformanceExtension(conv, unattachedZ),
    },
    'MSH',
    false,
  );
}

/** The message's conformance findings as Provenance extensions (`PID-3 required: …`). */
function conformanceExtension(conv: Conversion, unattachedZ: Hl7Segment[]): Json {
  const issues = conformance(conv.message, conv.paths);
  const shown = issues.slice(0, MAX_CONFORMANCE_ISSUES).map((i) => ({ url: CONFORMANCE_URL, valueString: `${i.location} ${i.code}: ${i.text}` }));
  if (issues.length > shown.length) shown.push({ url: CONFORMANCE_URL, valueString: `… and ${issues.length - shown.length} more` });
  const extension = [...shown, ...unattachedZ.map((z) => conv.zExtension(z))];
  return extension.length ? { extension } : {};
}
