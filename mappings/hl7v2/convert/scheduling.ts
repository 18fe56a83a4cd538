/**
 * Scheduling (SIU): SCH + TQ1 + AIS/AIG/AIL/AIP → Appointment, AIG equipment → Device. The
 * Appointment is built when its group ends (`closeAppointment`: the next SCH or the end of the
 * message), once every resource segment of it is read; the group's Z-segments go onto it then.
 */
import type { Hl7Segment } from '../message';
import { HubError } from '../../outcome';
import { cweToCodeableConcept, toDateTime, toNumber, type CodeableConcept } from '../datatypes';
import { applyRules } from './fieldRules';
import { EXPLICIT_NULL_URL, SEGMENT_PATH_URL, addMeta, codeKeyOf, placerFiller, type Conversion, type Json, type Ref } from './conversion';

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

export function appointmentResource(conv: Conversion, segment: Hl7Segment): void {
  const appt = conv.appointment;
  if (!appt) return;
  const at = (field: number) => conv.path(segment, field);
  let actor: Ref | undefined;
  let type: CodeableConcept | undefined;
  switch (segment.name) {
    case 'AIS':
      appt.ais.push(segment);
      return;
    case 'AIP':
      for (let rep = 0; rep < segment.repetitions(3).length && !actor; rep++) actor = conv.practitioner(segment, 3, rep);
      type = segment.isExplicitNull(4) ? undefined : cweToCodeableConcept(segment.components(4), conv.member);
      break;
    case 'AIL':
      actor = conv.location(segment, 3);
      type = segment.isExplicitNull(4) ? undefined : cweToCodeableConcept(segment.components(4), conv.member);
      break;
    case 'AIG': {
      if (segment.isExplicitNull(3)) break;
      const cc = cweToCodeableConcept(segment.components(3), conv.member);
      const codeKey = codeKeyOf(cc);
      if (!cc || !codeKey) break;
      const identifier = (cc.coding ?? []).filter((c) => c.code).map((c) => ({ ...(c.system ? { system: c.system } : {}), value: c.code! }));
      const name = cc.coding?.find((c) => c.display)?.display ?? cc.text;
      actor = conv.add(
        'Device',
        `device:${codeKey}`,
        { ...(identifier.length ? { identifier } : {}), status: 'active', ...(name ? { deviceName: [{ name, type: 'user-friendly-name' }] } : {}) },
        at(3),
        true,
      );
      type = segment.isExplicitNull(4) ? undefined : cweToCodeableConcept(segment.components(4), conv.member);
      break;
    }
  }
  if (actor && !appt.participants.some((p) => (p.actor as Ref).reference === actor!.reference)) appt.participants.push({ ...(type ? { type: [type] } : {}), actor });
}

export function closeAppointment(conv: Conversion): void {
  const appt = conv.appointment;
  if (!appt) return;
  conv.appointment = undefined;
  const sch = appt.sch;
  const body: Json = {};
  const nulls = applyRules(conv, body, sch, conv.maps.SCH!);
  // a bare table-0276 code (no coding system sent) is v2-0276
  const type = body.appointmentType as CodeableConcept | undefined;
  const first = type?.coding?.[0];
  if (first?.code && APPOINTMENT_REASONS.has(first.code.toUpperCase()) && (sch.value(7, 0, 3).trim() === '' || /^HL70276$/i.test(sch.value(7, 0, 3).trim()))) {
    first.system = 'http://terminology.hl7.org/CodeSystem/v2-0276';
    first.code = first.code.toUpperCase();
  }
  const ei = (field: number) => (sch.isExplicitNull(field) ? undefined : sch.components(field));
  const ids = placerFiller(conv, ei(1), ei(2), 'appt');
  const identifier = ids.identifier;
  const key = ids.key ?? `${conv.msgScope}|${conv.path(sch)}`;
  const trigger = conv.message.msh.value(9, 0, 2).trim().toUpperCase();
  const status = appointmentStatusByFiller[sch.value(25).trim().toUpperCase()] ?? appointmentStatusByEvent[trigger] ?? 'booked';
  // start/end: TQ1-7/8 (v2.5+), else SCH-11 TQ start/end (components 4/5), else the first AIS start + duration
  let start: string | undefined;
  let end: string | undefined;
  if (appt.tq1) {
    start = toDateTime(appt.tq1.value(7), conv.offset);
    end = toDateTime(appt.tq1.value(8), conv.offset);
  }
  if (!start && !sch.isExplicitNull(11)) {
    start = toDateTime(sch.value(11, 0, 4), conv.offset);
    end = toDateTime(sch.value(11, 0, 5), conv.offset);
  }
  const ais = appt.ais[0];
  if (!start && ais) {
    start = toDateTime(ais.value(4), conv.offset);
    end = undefined;
  }
  if (start && !end) {
    for (const seg of appt.ais) {
      const minutes = durationMinutes(seg.value(7), seg.value(8));
      const from = toDateTime(seg.value(4), conv.offset);
      if (minutes !== undefined && from === start) end = addMinutes(start, minutes);
    }
  }
  const serviceType = appt.ais
    .filter((s) => !s.isExplicitNull(3))
    .map((s) => cweToCodeableConcept(s.components(3), conv.member))
    .filter((x): x is CodeableConcept => x !== undefined);
  const participantStatus = status === 'proposed' || status === 'pending' || status === 'waitlist' ? 'needs-action' : 'accepted';
  const participant = [...(conv.patient ? [{ actor: conv.patient.ref }] : []), ...appt.participants].map((p) => ({ ...p, status: participantStatus }));
  if (participant.length === 0) throw new HubError('structure', 'SIU: the appointment has no participant (no PID, AIP, AIL or AIG)', conv.path(sch));
  const paths = [sch, ...(appt.tq1 ? [appt.tq1] : []), ...appt.ais].map((x) => conv.path(x));
  const ref = conv.add(
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
  const resource = conv.resourceOf(ref);
  for (const p of paths.slice(1)) addMeta(resource, SEGMENT_PATH_URL, p);
  for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
  conv.attachZ(resource, conv.pendingZ.splice(0));
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
