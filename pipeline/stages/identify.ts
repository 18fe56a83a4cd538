/**
 * Stage "identify": whose record does this message change? Reads the member's patient number
 * (PID-3, MR-typed repetition first), the surviving patient of a merge (PID-3 when MRG-1 names the
 * retired one), the event time and the demographics the member states. Pure; then, once the merge
 * has applied the message to the member's source patient, the runner gives the `sourcesToLink`
 * their golden (cross-member) patients in the same job (hub/mpi/links.ts `linkSources`) — the one
 * part of this stage that does I/O, kept apart from the pure part.
 */
import { parseHl7Time } from '../../mappings/hl7v2/time';
import type { Hl7Segment } from '../../mappings/hl7v2/message';
import { xtnToContactPoint } from '../../mappings/hl7v2/datatypes';
import { RECORD_TYPES, type StatedIdentifier } from '../../hub/mpi/identity';
import type { PatientRef } from '../../mappings/hl7v2/header';
import type { MappedMessage } from './map';

export interface SourceDemographics {
  family?: string;
  given?: string;
  birthDate?: string;
  sex?: string;
  /** The street part of the first address (lines and district), without city, postcode or the type code. */
  address?: string;
  city?: string;
  postcode?: string;
  phone?: string;
  email?: string;
  /** JSON list of the identities the PID states (statedIdentifiers), for hub/mpi/sourceRecord.ts. */
  identifiers?: string;
}

export interface IdentifiedMessage extends MappedMessage {
  eventType: string;
  eventTime?: Date;
  patient?: PatientRef & { demographics: SourceDemographics };
  /** Set for merges: the retired record (MRG-1) is folded into `survivor` (PID-3). */
  merge?: { retired: PatientRef; survivor: PatientRef & { demographics: SourceDemographics } };
}

export function identifyStage(mapped: MappedMessage, utcOffsetMinutes: number): IdentifiedMessage {
  const { message, header } = mapped.parsed;
  const eventType = `${header.messageCode}^${header.triggerEvent}`;
  const evn = message.segment('EVN');
  const eventTime = parseHl7Time(evn?.value(2) || header.dateTime, utcOffsetMinutes)?.instant;
  const pid = message.segment('PID');
  const ref = mapped.parsed.patient;
  if (!ref) return { ...mapped, eventType, eventTime };
  const demographics = pid ? demographicsOf(pid, utcOffsetMinutes, ref.mrn) : {};
  const mrg = message.segment('MRG');
  const survivorMrn = pid?.value(3, mrTypedRepetition(pid), 1);
  if (mrg && pid && survivorMrn && survivorMrn !== ref.mrn) {
    const survivor = { mrn: survivorMrn, authority: pid.value(3, mrTypedRepetition(pid), 4), demographics };
    return { ...mapped, eventType, eventTime, patient: { ...ref, demographics: {} }, merge: { retired: ref, survivor } };
  }
  return { ...mapped, eventType, eventTime, patient: { ...ref, demographics } };
}

/**
 * The member's source patients a message changes, in the order the index must see them: a merge's
 * survivor before the retired number (which joins the survivor's golden patient).
 */
export function sourcesToLink(message: Pick<IdentifiedMessage, 'patient' | 'merge'>): string[] {
  if (message.merge) return [message.merge.survivor.mrn, message.merge.retired.mrn];
  return message.patient ? [message.patient.mrn] : [];
}

function mrTypedRepetition(pid: Hl7Segment): number {
  const i = pid.repetitions(3).findIndex((_, r) => pid.value(3, r, 5).toUpperCase() === 'MR');
  return i < 0 ? 0 : i;
}

function demographicsOf(pid: Hl7Segment, utcOffsetMinutes: number, mrn: string): SourceDemographics {
  const birth = parseHl7Time(pid.value(7), utcOffsetMinutes);
  // XAD: street (1, its first subcomponent), other designation (2), district (9); city (3) and
  // postcode (5) are fields of their own; state, country and the type code (7: H, M) are not compared.
  const street = [pid.value(11, 0, 1), pid.value(11, 0, 2), pid.value(11, 0, 9)].filter(Boolean).join(' ');
  // PID-13 (home) then PID-14 (business): the first phone and the first e-mail, as the converter reads XTN.
  const telecom = [13, 14].flatMap((field) => pid.repetitions(field).map((_, rep) => xtnToContactPoint(pid.components(field, rep), utcOffsetMinutes)));
  const out: SourceDemographics = {
    family: pid.value(5, 0, 1) || undefined,
    given: pid.value(5, 0, 2) || undefined,
    birthDate: birth ? pid.value(7).slice(0, 8) : undefined,
    sex: pid.value(8) || undefined,
    address: street || undefined,
    city: pid.value(11, 0, 3) || undefined,
    postcode: pid.value(11, 0, 5) || undefined,
    phone: telecom.find((t) => t?.system === 'phone' || t?.system === 'sms')?.value,
    email: telecom.find((t) => t?.system === 'email')?.value,
    identifiers: statedIdentifiers(pid, mrn),
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as SourceDemographics;
}

/**
 * The identifiers a PID states beside the member's record numbers: PID-3 repetitions (CX-1, type
 * CX-5, authority CX-4), PID-19 (type SS) and PID-20 (driver's licence, issuing state DLN-2). Kept
 * in the demographics because the merge stage keeps a field a newer message lacks: an ORU's short
 * PID (record number only) must not erase the resident ID or passport its ADT stated, as replacing
 * the converted Patient does (a look-alike then lost the identifier that kept them apart).
 */
function statedIdentifiers(pid: Hl7Segment, mrn: string): string | undefined {
  const ids: StatedIdentifier[] = [];
  pid.repetitions(3).forEach((_, rep) => {
    const value = pid.value(3, rep, 1);
    const type = pid.value(3, rep, 5).toUpperCase();
    if (value && value !== mrn && !RECORD_TYPES.has(type)) ids.push({ value, type: type || undefined, authority: pid.value(3, rep, 4) || undefined });
  });
  const ssn = pid.value(19);
  if (ssn) ids.push({ value: ssn, type: 'SS' });
  const licence = pid.value(20, 0, 1);
  if (licence) ids.push({ value: licence, type: 'DL', authority: pid.value(20, 0, 2) || undefined });
  return ids.length ? JSON.stringify(ids) : undefined;
}
