/**
 * Patient administration — what ADT says, and the PID and PV1 every family's message carries:
 * PID (+ GT1, DB1, IN2) → Patient, PV1/PV2 → Encounter, DG1 and PDA → Condition,
 * AL1 → AllergyIntolerance, IN1 → Coverage and its payor, MRG → the retired Patient of a merge.
 * Sets the conversion's patient and encounter, which the other families' resources refer to.
 */
import type { Hl7Segment } from '../message';
import { cxToIdentifier, hdToSystem, patientClass, type CodeableConcept, type Identifier } from '../datatypes';
import { applyRules } from './fieldRules';
import { EXPLICIT_NULL_URL, SEGMENT_PATH_URL, absentCode, addMeta, codeKeyOf, eiSystem, type Conversion, type Json, type Ref } from './conversion';

/** On the retired Patient of a merge: only `active` and `link` are news; merge them into the stored record, do not replace it. */
export const LINK_ONLY_TAG = { system: 'urn:yilian:merge', code: 'link-only', display: 'merge: set active and link only' } as const;

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

const participantType: ReadonlyArray<[number, string]> = [
  [7, 'ATND'],
  [8, 'REF'],
  [9, 'CON'],
  [17, 'ADM'],
];

export function pid(conv: Conversion, segment: Hl7Segment): void {
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.PID!);
  if (body.deceasedDateTime !== undefined) delete body.deceasedBoolean;
  const key = patientKey(conv, segment);
  const ref = conv.add('Patient', key, body, conv.path(segment), true);
  for (const n of nulls) addMeta(conv.resourceOf(ref), EXPLICIT_NULL_URL, n);
  conv.patient = { ref, key };
}

/** GT1, DB1, IN2: what they say about the patient (their maps' `when` say when that is) onto the Patient. */
export function extendPatient(conv: Conversion, segment: Hl7Segment): void {
  if (!conv.patient) return;
  const patient = conv.resourceOf(conv.patient.ref);
  const size = () => ['identifier', 'name', 'address', 'telecom'].reduce((n, k) => n + ((patient[k] as unknown[] | undefined)?.length ?? 0), 0);
  const before = size();
  applyRules(conv, patient, segment, conv.maps[segment.name]!);
  if (size() !== before) addMeta(patient, SEGMENT_PATH_URL, conv.path(segment));
}

/** PID-3: the repetition typed MR, else the first; else PID-2; else message-scoped. */
function patientKey(conv: Conversion, pid: Hl7Segment): string {
  for (const field of [3, 2]) {
    const reps = pid.repetitions(field).map((_, i) => pid.components(field, i));
    const pick = reps.find((c) => (c[4] ?? '').trim().toUpperCase() === 'MR' && (c[0] ?? '').trim()) ?? reps.find((c) => (c[0] ?? '').trim());
    if (pick) return `mrn:${hdToSystem(pick[3] ?? '', conv.member, conv.sub) ?? ''}|${pick[0]!.trim()}`;
  }
  return `${conv.msgScope}|${conv.path(pid)}`;
}

export function pv1(conv: Conversion, segment: Hl7Segment): void {
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.PV1!);
  const classCode = segment.value(2).trim().toUpperCase();
  const trigger = conv.message.msh.value(9, 0, 2).toUpperCase();
  const period = body.period as { start?: string; end?: string } | undefined;
  const status = encounterStatusByEvent[trigger] ?? (period?.end ? 'finished' : period?.start ? 'in-progress' : 'unknown');
  // The visit number names the encounter; without one, the patient's admission at PV1-44 (one
  // patient is not admitted twice at the same instant); without that, this message only.
  const visit = segment.components(19);
  const admitted = period?.start;
  const key = visit[0]?.trim()
    ? `visit:${hdToSystem(visit[3] ?? '', conv.member, conv.sub) ?? ''}|${visit[0].trim()}`
    : admitted && conv.patient
      ? `${conv.patient.key}|admitted:${admitted}`
      : `${conv.msgScope}|${conv.path(segment)}`;
  const participant: Json[] = [];
  for (const [field, code] of participantType) {
    segment.repetitions(field).forEach((_, rep) => {
      const who = conv.practitioner(segment, field, rep);
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
    const where = conv.location(segment, field);
    if (where && !location.some((l) => (l.location as Ref).reference === where.reference)) location.push({ location: where, status: locationStatus });
  }
  const resourceBody: Json = {
    status,
    class: patientClass[classCode] ?? { system: 'http://terminology.hl7.org/CodeSystem/v3-NullFlavor', code: 'UNK', display: 'unknown' },
    ...body,
    ...(conv.patient ? { subject: conv.patient.ref } : {}),
    ...(participant.length ? { participant } : {}),
    ...(location.length ? { location } : {}),
  };
  const ref = conv.add('Encounter', key, resourceBody, conv.path(segment), true);
  const resource = conv.resourceOf(ref);
  for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
  conv.encounter = { ref: ref, key, resource };
}

/** PV2 adds to its PV1's Encounter: the field rules, and PV2-1 prior pending location (planned). */
export function pv2(conv: Conversion, segment: Hl7Segment): void {
  const encounter = conv.encounter;
  if (!encounter) return;
  applyRules(conv, encounter.resource, segment, conv.maps.PV2!);
  const pending = conv.location(segment, 1);
  const location = (encounter.resource.location as Json[] | undefined) ?? [];
  if (pending && !location.some((l) => (l.location as Ref).reference === pending.reference)) {
    location.push({ location: pending, status: 'planned' });
    encounter.resource.location = location;
  }
}

export function dg1(conv: Conversion, segment: Hl7Segment): void {
  const patient = conv.requirePatient(segment);
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.DG1!);
  const id = segment.components(20);
  const code = body.code as CodeableConcept | undefined;
  const codeKey = codeKeyOf(code);
  const scope = conv.encounter?.key ?? patient.key;
  const key = id[0]?.trim()
    ? `dg1:${eiSystem(id, conv.member, conv.sub) ?? ''}|${id[0].trim()}`
    : codeKey
      ? `${scope}|dx:${codeKey}|type:${segment.value(6).trim()}`
      : `${conv.msgScope}|${conv.path(segment)}`;
  if (!code) body.code = absentCode();
  const ref = conv.add(
    'Condition',
    key,
    {
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'encounter-diagnosis', display: 'Encounter Diagnosis' }] }],
      ...body,
      subject: patient.ref,
      ...(conv.encounter ? { encounter: conv.encounter.ref } : {}),
    },
    conv.path(segment),
    false,
  );
  for (const n of nulls) addMeta(conv.resourceOf(ref), EXPLICIT_NULL_URL, n);
}

export function pda(conv: Conversion, segment: Hl7Segment): void {
  const patient = conv.requirePatient(segment);
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.PDA!);
  const codeKey = codeKeyOf(body.code as CodeableConcept | undefined);
  if (!codeKey) return; // a PDA without a cause of death says nothing a Condition could hold
  const ref = conv.add(
    'Condition',
    `${patient.key}|cause-of-death:${codeKey}`,
    {
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'problem-list-item', display: 'Problem List Item' }] }],
      ...body,
      subject: patient.ref,
    },
    conv.path(segment),
    true,
  );
  for (const n of nulls) addMeta(conv.resourceOf(ref), EXPLICIT_NULL_URL, n);
}

export function al1(conv: Conversion, segment: Hl7Segment): void {
  const patient = conv.requirePatient(segment);
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.AL1!);
  const codeKey = codeKeyOf(body.code as CodeableConcept | undefined);
  const key = codeKey ? `${patient.key}|allergen:${codeKey}` : `${conv.msgScope}|${conv.path(segment)}`;
  const ref = conv.add('AllergyIntolerance', key, { ...body, patient: patient.ref }, conv.path(segment), false);
  for (const n of nulls) addMeta(conv.resourceOf(ref), EXPLICIT_NULL_URL, n);
}

export function in1(conv: Conversion, segment: Hl7Segment): void {
  const patient = conv.requirePatient(segment);
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.IN1!);
  const company = segment.isExplicitNull(3) ? undefined : cxToIdentifier(segment.components(3), conv.member, conv.sub, conv.offset);
  const companyName = segment.isExplicitNull(4) ? '' : segment.value(4).trim();
  let payor: Json;
  if (company || companyName) {
    const key = company ? `org:${company.system ?? ''}|${company.value}` : `${conv.msgScope}|payor:${companyName}`;
    payor = conv.add('Organization', key, { ...(company ? { identifier: [company] } : {}), ...(companyName ? { name: companyName } : {}) }, conv.path(segment, 3), true);
  } else {
    payor = { display: 'unknown payor (IN1-3 and IN1-4 empty)' };
  }
  const key = `${patient.key}|coverage:${segment.value(2).trim()}|${company?.system ?? ''}|${company?.value ?? companyName}|${segment.value(36).trim()}`;
  const ref = conv.add('Coverage', key, { status: 'active', ...body, beneficiary: patient.ref, payor: [payor] }, conv.path(segment), false);
  for (const n of nulls) addMeta(conv.resourceOf(ref), EXPLICIT_NULL_URL, n);
}

// ---- merges (ADT^A34/A39/A40/A47): MRG-1 → the retired Patient, linked to the survivor -------

export function mrg(conv: Conversion, segment: Hl7Segment): void {
  const survivor = conv.requirePatient(segment);
  if (segment.isExplicitNull(1)) return;
  const reps = segment.repetitions(1).map((_, i) => segment.components(1, i));
  const pick = reps.find((c) => (c[4] ?? '').trim().toUpperCase() === 'MR' && (c[0] ?? '').trim()) ?? reps.find((c) => (c[0] ?? '').trim());
  if (!pick) return;
  const key = `mrn:${hdToSystem(pick[3] ?? '', conv.member, conv.sub) ?? ''}|${pick[0]!.trim()}`;
  if (key === survivor.key) return;
  const identifier = reps.map((c) => cxToIdentifier(c, conv.member, conv.sub, conv.offset)).filter((x): x is Identifier => x !== undefined);
  // Tagged link-only: the hub's merge sets active and link on the stored record and keeps the rest
  // (name, birth date … that earlier messages gave it); a plain FHIR server gets the whole skeleton.
  const retired = conv.add(
    'Patient',
    key,
    { meta: { tag: [LINK_ONLY_TAG] }, identifier, active: false, link: [{ other: survivor.ref, type: 'replaced-by' }] },
    conv.path(segment, 1),
    true,
  );
  const resource = conv.resourceOf(survivor.ref);
  const links = (resource.link as Json[] | undefined) ?? [];
  if (!links.some((l) => (l.other as Ref).reference === retired.reference)) links.push({ other: retired, type: 'replaces' });
  resource.link = links;
}
