/**
 * HL7 v2 segment → FHIR R4 resource maps, as data. One map per segment, reused by every message
 * type that carries the segment (the way the FHIR-Converter reuses its segment and data-type
 * templates): PID is read the same way in an ADT^A01, an ORU^R01 or an SIU^S12.
 *
 * A map says which resource a segment feeds and, per field, which data-type map reads it
 * (mappings/hl7v2/datatypes.ts) and where the result goes. What cannot be said as "field → path"
 * (resource ids, references between resources, OBX-5 whose type is in OBX-2, OBX-7 reference
 * ranges, Encounter.status from the trigger event, PL → Location, XCN → Practitioner) is code in
 * the conversion (convert.ts and convert/); the maps below name the fields that code reads so the whole picture is here.
 *
 * Per-member overrides (`MemberConfig.conversion`, hub/config.ts) are applied on top with
 * `withOverrides`: an override for segment S field N replaces every rule for S-N (or removes it,
 * with `to: null`). `residentIdField: N` is shorthand for "PID-N holds the 居民身份证号 (resident ID)";
 * "PID-5 may hold only pinyin" is `{ segment: 'PID', field: 5, type: 'XPN-pinyin', to: 'name[]', repeat: true }`.
 *
 * Mapping choices follow HL7's v2-to-FHIR IG (segment maps PID[Patient], PV1[Encounter],
 * DG1[Condition], AL1[AllergyIntolerance], IN1[Coverage], OBR[DiagnosticReport], OBX[Observation],
 * SPM[Specimen], ORC+OBR[ServiceRequest], SCH+AIS/AIG/AIL/AIP[Appointment]), restricted to what the
 * hub uses.
 */

/** Data-type readers a field rule can name. Each reads one repetition of the field. */
export const fieldDataTypes = [
  'ST', // string, whole field (components re-joined), trimmed
  'ID', // coded value (component 1), through `table`
  'XPN', // → HumanName
  'XPN-called-by', // XPN-15 → a HumanName of its own, use nickname (IG XPN[HumanName] row 15)
  'XPN-pinyin', // → HumanName; Latin-only names tagged zh-Latn-pinyin (a member whose names are pinyin only)
  'CX', // → Identifier
  'EI', // → Identifier (EI-1 value, system from EI-2..4)
  'XAD', // → Address
  'XTN', // → ContactPoint
  'CWE', // CWE/CE/CNE → CodeableConcept
  'CWE-interpretation', // OBX-8 abnormal flag → CodeableConcept in v3-ObservationInterpretation
  'DTM', // TS/DTM (component 1) → dateTime, with the member's UTC offset when none is stated
  'DT', // → date
  'NM', // → number
  'ST-Identifier', // string → Identifier { system (rule.system), type (rule.identifierType), value }
  'DLN', // driver's licence → Identifier { type DL, value DLN-1, period.end DLN-3 }
] as const;
export type FieldDataType = (typeof fieldDataTypes)[number];

export type TableName = 'administrativeGender' | 'yesNo' | 'allergyCategory' | 'allergyCriticality';

export interface FieldRule {
  field: number;
  datatype: FieldDataType;
  /**
   * Path in the resource: `a.b` sets a value (objects created on the way); `a[]` appends one array
   * element; `a[].b` appends an object and sets `b` on it.
   */
  to: string;
  /** Every repetition (default: the first one only). */
  repeat?: boolean;
  /** For ID: the code table (convert/fieldRules.ts `tables`) the code goes through; unmapped codes are dropped. */
  table?: TableName;
  /** Only set when the target is still empty (a fallback behind an earlier rule). */
  fallback?: boolean;
  /** For ST-Identifier: Identifier.system. */
  system?: string;
  /** For ST-Identifier: Identifier.type, a v2-0203 code. */
  identifierType?: string;
  /**
   * Only when a coded field has one of these values: a field of this segment, or of the last
   * `segment` before it (IN2 rules look at IN1-17, the insured's relationship to the patient).
   */
  when?: { segment?: string; field: number; in: readonly string[] };
}

export type ResourceType =
  | 'Patient'
  | 'Encounter'
  | 'Condition'
  | 'AllergyIntolerance'
  | 'Coverage'
  | 'DiagnosticReport'
  | 'Observation'
  | 'Specimen'
  | 'ServiceRequest'
  | 'Appointment';

export interface SegmentMap {
  segment: string;
  /** The resource this segment creates (or, with `extends`, adds to). */
  resource: ResourceType;
  /** Adds to the resource of its group instead of creating one: PV2 to the Encounter of its PV1, GT1/DB1/IN2 to the Patient. */
  extends?: boolean;
  fields: FieldRule[];
  /** Fields read by code in the conversion (convert/*.ts) (documentation only: ids, references, value[x]). */
  byCode?: string;
}

/**
 * 居民身份证号 (PRC resident identity card number) system: the OID that China's health information
 * sharing document standards (WS/T 483 series, CDA headers `<id root="2.16.156.10011.1.3">`) use
 * for it. Identifier.type is v2-0203 `NNCHN` (national person identifier, China).
 */
export const RESIDENT_ID_SYSTEM = 'urn:oid:2.16.156.10011.1.3';
export const RESIDENT_ID_TYPE = 'NNCHN';

const GUARANTOR_IS_PATIENT = { field: 11, in: ['SEL'] } as const;
const INSURED_IS_PATIENT = { segment: 'IN1', field: 17, in: ['SEL'] } as const;

export const segmentMaps: Readonly<Record<string, SegmentMap>> = {
  PID: {
    segment: 'PID',
    resource: 'Patient',
    byCode: 'id from PID-3 (the MR repetition, else the first), else PID-2; deceasedBoolean only without deceasedDateTime',
    fields: [
      { field: 3, datatype: 'CX', to: 'identifier[]', repeat: true },
      { field: 2, datatype: 'CX', to: 'identifier[]' },
      { field: 4, datatype: 'CX', to: 'identifier[]', repeat: true },
      { field: 19, datatype: 'ST-Identifier', to: 'identifier[]', identifierType: 'SS' },
      { field: 20, datatype: 'DLN', to: 'identifier[]' },
      { field: 5, datatype: 'XPN', to: 'name[]', repeat: true },
      { field: 5, datatype: 'XPN-called-by', to: 'name[]', repeat: true },
      { field: 9, datatype: 'XPN', to: 'name[]', repeat: true },
      { field: 7, datatype: 'DT', to: 'birthDate' },
      { field: 8, datatype: 'ID', to: 'gender', table: 'administrativeGender' },
      { field: 11, datatype: 'XAD', to: 'address[]', repeat: true },
      { field: 13, datatype: 'XTN', to: 'telecom[]', repeat: true },
      { field: 14, datatype: 'XTN', to: 'telecom[]', repeat: true },
      { field: 40, datatype: 'XTN', to: 'telecom[]', repeat: true },
      { field: 15, datatype: 'CWE', to: 'communication[].language' },
      { field: 16, datatype: 'CWE', to: 'maritalStatus' },
      { field: 25, datatype: 'NM', to: 'multipleBirthInteger' },
      { field: 29, datatype: 'DTM', to: 'deceasedDateTime' },
      { field: 30, datatype: 'ID', to: 'deceasedBoolean', table: 'yesNo' },
    ],
  },
  /** The guarantor, when GT1-11 says it is the patient (`SEL`): more of the patient's own identifiers and contacts. */
  GT1: {
    segment: 'GT1',
    resource: 'Patient',
    extends: true,
    fields: [
      { field: 2, datatype: 'CX', to: 'identifier[]', repeat: true, when: GUARANTOR_IS_PATIENT },
      { field: 12, datatype: 'ST-Identifier', to: 'identifier[]', identifierType: 'SS', when: GUARANTOR_IS_PATIENT },
      { field: 3, datatype: 'XPN', to: 'name[]', repeat: true, when: GUARANTOR_IS_PATIENT },
      { field: 5, datatype: 'XAD', to: 'address[]', repeat: true, when: GUARANTOR_IS_PATIENT },
      { field: 6, datatype: 'XTN', to: 'telecom[]', repeat: true, when: GUARANTOR_IS_PATIENT },
      { field: 7, datatype: 'XTN', to: 'telecom[]', repeat: true, when: GUARANTOR_IS_PATIENT },
    ],
  },
  /** Disability: DB1-3 is the patient's disability id when DB1-2 says the disabled person is the patient (`PT`). */
  DB1: {
    segment: 'DB1',
    resource: 'Patient',
    extends: true,
    fields: [{ field: 3, datatype: 'CX', to: 'identifier[]', repeat: true, when: { field: 2, in: ['PT'] } }],
  },
  /**
   * Insurance additional information: IN2-61 is the patient's member number; IN2-6/-8/-10 are the
   * insured's Medicare, Medicaid and military numbers — the patient's only when the insured is the
   * patient (IN1-17 `SEL`), otherwise they identify someone else (often the spouse).
   */
  IN2: {
    segment: 'IN2',
    resource: 'Patient',
    extends: true,
    fields: [
      { field: 61, datatype: 'CX', to: 'identifier[]', repeat: true },
      { field: 6, datatype: 'ST-Identifier', to: 'identifier[]', identifierType: 'MC', when: INSURED_IS_PATIENT },
      { field: 8, datatype: 'ST-Identifier', to: 'identifier[]', identifierType: 'MA', when: INSURED_IS_PATIENT },
      { field: 10, datatype: 'ST-Identifier', to: 'identifier[]', identifierType: 'MI', when: INSURED_IS_PATIENT },
    ],
  },
  PV1: {
    segment: 'PV1',
    resource: 'Encounter',
    byCode:
      'id from PV1-19 (visit number), else message-scoped; status from PV1-45 / trigger event; class from PV1-2 (table 0004); PV1-3 (and PV1-6 prior) → Location; PV1-7/8/9/17 → Practitioner participants',
    fields: [
      { field: 19, datatype: 'CX', to: 'identifier[]' },
      { field: 10, datatype: 'CWE', to: 'serviceType' },
      { field: 4, datatype: 'CWE', to: 'type[]' },
      { field: 14, datatype: 'CWE', to: 'hospitalization.admitSource' },
      { field: 36, datatype: 'CWE', to: 'hospitalization.dischargeDisposition' },
      { field: 44, datatype: 'DTM', to: 'period.start' },
      { field: 45, datatype: 'DTM', to: 'period.end' },
    ],
  },
  PV2: {
    segment: 'PV2',
    resource: 'Encounter',
    extends: true,
    fields: [{ field: 3, datatype: 'CWE', to: 'reasonCode[]' }],
  },
  /** Patient death and autopsy: the cause of death (PDA-1) is a Condition of the patient. */
  PDA: {
    segment: 'PDA',
    resource: 'Condition',
    byCode: 'id from the patient + PDA-1 code; category problem-list-item; subject',
    fields: [{ field: 1, datatype: 'CWE', to: 'code' }],
  },
  DG1: {
    segment: 'DG1',
    resource: 'Condition',
    byCode: 'id from DG1-20 (diagnosis identifier), else encounter/patient + DG1-3 code; subject, encounter',
    fields: [
      { field: 20, datatype: 'EI', to: 'identifier[]' },
      { field: 3, datatype: 'CWE', to: 'code' },
      { field: 4, datatype: 'ST', to: 'code.text', fallback: true },
      { field: 5, datatype: 'DTM', to: 'onsetDateTime' },
      { field: 19, datatype: 'DTM', to: 'recordedDate' },
    ],
  },
  AL1: {
    segment: 'AL1',
    resource: 'AllergyIntolerance',
    byCode: 'id from patient + AL1-3 allergen; patient reference',
    fields: [
      { field: 3, datatype: 'CWE', to: 'code' },
      { field: 2, datatype: 'ID', to: 'category[]', table: 'allergyCategory' },
      { field: 4, datatype: 'ID', to: 'criticality', table: 'allergyCriticality' },
      { field: 5, datatype: 'ST', to: 'reaction[].manifestation[].text', repeat: true },
      { field: 6, datatype: 'DT', to: 'onsetDateTime' },
    ],
  },
  IN1: {
    segment: 'IN1',
    resource: 'Coverage',
    byCode: 'id from patient + IN1-2 plan + IN1-3 company + IN1-36 policy; payor → Organization from IN1-3/IN1-4; beneficiary',
    fields: [
      { field: 2, datatype: 'CWE', to: 'type' },
      { field: 12, datatype: 'DTM', to: 'period.start' },
      { field: 13, datatype: 'DTM', to: 'period.end' },
      { field: 36, datatype: 'ST', to: 'subscriberId' },
      { field: 17, datatype: 'CWE', to: 'relationship' },
    ],
  },
  OBR: {
    segment: 'OBR',
    resource: 'DiagnosticReport',
    byCode: 'id from OBR-3 filler order number, else OBR-2 placer, else message-scoped; status OBR-25 (table 0123); result → the OBX of its group; specimen → the SPM of its group; issued OBR-22 when it is an instant',
    fields: [
      { field: 2, datatype: 'EI', to: 'identifier[]' },
      { field: 3, datatype: 'EI', to: 'identifier[]' },
      { field: 4, datatype: 'CWE', to: 'code' },
      { field: 7, datatype: 'DTM', to: 'effectiveDateTime' },
    ],
  },
  OBX: {
    segment: 'OBX',
    resource: 'Observation',
    byCode:
      'id from the report (or patient) + OBX-3 code + OBX-4 sub-id; value[x] from OBX-5 by OBX-2; units OBX-6; referenceRange OBX-7; status OBX-11 (table 0085); effective OBX-14 else OBR-7; performer OBX-16',
    fields: [
      { field: 3, datatype: 'CWE', to: 'code' },
      { field: 8, datatype: 'CWE-interpretation', to: 'interpretation[]', repeat: true },
      { field: 14, datatype: 'DTM', to: 'effectiveDateTime' },
      { field: 17, datatype: 'CWE', to: 'method' },
      { field: 20, datatype: 'CWE', to: 'bodySite' },
    ],
  },
  SPM: {
    segment: 'SPM',
    resource: 'Specimen',
    byCode: 'id from SPM-2 (specimen id), else the report + SPM-1; subject',
    fields: [
      { field: 4, datatype: 'CWE', to: 'type' },
      { field: 8, datatype: 'CWE', to: 'collection.bodySite' },
      { field: 17, datatype: 'DTM', to: 'collection.collectedDateTime' },
      { field: 18, datatype: 'DTM', to: 'receivedTime' },
    ],
  },
  /**
   * Order messages (ORM, OML, OMG): ORC + OBR are one ServiceRequest (the OBR map above is the
   * DiagnosticReport of a result; in an order the same OBR fields feed the ServiceRequest by code).
   */
  ORC: {
    segment: 'ORC',
    resource: 'ServiceRequest',
    byCode:
      'id from ORC-3/OBR-3 filler order number, else ORC-2/OBR-2 placer, else message-scoped; identifiers typed PLAC/FILL; status ORC-5 (table 0038), else ORC-1 (table 0119); intent order; code OBR-4; requester ORC-12 else OBR-16 → Practitioner; occurrence TQ1-7/8 else OBR-7; priority TQ1-9; specimen → SPM of the order (or OBR-15 specimen source, v2.3); subject, encounter',
    fields: [{ field: 9, datatype: 'DTM', to: 'authoredOn' }],
  },
  /**
   * Referrals (REF^I12–I15, RRI^I12–I15): RF1 is a ServiceRequest of category "patient referral"
   * (SNOMED CT 3457005); the PRD segments name the referring (RP) and referred-to (RT) providers,
   * whose facilities are the requester and performer Organizations — what the cost feed counts as
   * a referral between members.
   */
  RF1: {
    segment: 'RF1',
    resource: 'ServiceRequest',
    byCode:
      'id from RF1-6 originating referral id, else RF1-11 external id, else message-scoped; status RF1-1 (table 0283), a cancel (I14) revoked; intent order; priority RF1-2 (table 0280); category 3457005 + RF1-3; requester the RP provider\'s facility (PRD-4.4, PRD-4.9), else the sending member; performer the RT provider\'s facility; subject',
    fields: [
      { field: 3, datatype: 'CWE', to: 'category[]' },
      { field: 6, datatype: 'EI', to: 'identifier[]' },
      { field: 11, datatype: 'EI', to: 'identifier[]' },
      { field: 7, datatype: 'DTM', to: 'authoredOn' },
      { field: 10, datatype: 'CWE', to: 'reasonCode[]', repeat: true },
    ],
  },
  /** Scheduling (SIU^S12–S26): SCH + the AIS/AIG/AIL/AIP resources are one Appointment. */
  SCH: {
    segment: 'SCH',
    resource: 'Appointment',
    byCode:
      'id from SCH-2 filler appointment id, else SCH-1 placer, else message-scoped; identifiers typed PLAC/FILL; status SCH-25 (table 0278), else the trigger event; start/end TQ1-7/8, else SCH-11.4/.5, else AIS-4 + AIS-7/8 duration; participants the Patient (PID), Practitioners (AIP-3), Locations (AIL-3), Devices (AIG-3); serviceType AIS-3',
    // SCH-7 appointment reason is table 0276, which is R4's Appointment.appointmentType binding
    fields: [{ field: 7, datatype: 'CWE', to: 'appointmentType' }],
  },
};

/** A per-member override, as configured (hub/config.ts `conversion.overrides`). */
export interface FieldOverride {
  segment: string;
  field: number;
  /** The data type reading the field; ignored when `to` is null. */
  type?: FieldDataType;
  /** Target path; null: the field is not converted for this member. */
  to: string | null;
  repeat?: boolean;
  system?: string;
  identifierType?: string;
}

export interface ConversionOverrides {
  /** PID field holding the 居民身份证号 (often PID-19, sometimes PID-20 or PID-3): → Patient.identifier, system RESIDENT_ID_SYSTEM. */
  residentIdField?: number;
  overrides?: FieldOverride[];
}

/** The segment maps with a member's overrides applied; the shared maps are never modified. */
export function withOverrides(conversion: ConversionOverrides | undefined): Readonly<Record<string, SegmentMap>> {
  const overrides: FieldOverride[] = [];
  if (conversion?.residentIdField !== undefined) {
    overrides.push({ segment: 'PID', field: conversion.residentIdField, type: 'ST-Identifier', to: 'identifier[]', system: RESIDENT_ID_SYSTEM, identifierType: RESIDENT_ID_TYPE });
  }
  overrides.push(...(conversion?.overrides ?? []));
  if (overrides.length === 0) return segmentMaps;
  const maps: Record<string, SegmentMap> = {};
  for (const [name, map] of Object.entries(segmentMaps)) maps[name] = { ...map, fields: [...map.fields] };
  for (const o of overrides) {
    const map = maps[o.segment];
    if (!map) continue; // a segment this conversion does not map: validated away in config, ignored here
    map.fields = map.fields.filter((r) => r.field !== o.field);
    if (o.to !== null) {
      map.fields.push({
        field: o.field,
        datatype: o.type ?? 'ST',
        to: o.to,
        repeat: o.repeat,
        system: o.system,
        identifierType: o.identifierType,
      });
    }
  }
  return maps;
}

/**
 * Which segment maps a message type uses. Results (ORU, OUL), orders (ORM, OML, OMG), schedules
 * (SIU), charges (DFT), documents (MDM), immunizations (VXU), referrals (REF, RRI) and ADT merges
 * have profiles of their own; their special segments (ORC, SCH/AIx, FT1, TXA, RXA/RXR, MRG, RF1/PRD) are read by code in
 * convert/ (a module per family). Everything else, ADT included, gets the common profile.
 */
export const messageProfiles: Readonly<Record<string, readonly string[]>> = {
  /**
   * ADT (but merges) and every message type without a profile of its own (BAR, RDE, RDS …):
   * what any structure may carry about the patient and the visit.
   */
  common: ['PID', 'PV1', 'PV2', 'DG1', 'AL1', 'GT1', 'DB1', 'IN1', 'IN2', 'OBX', 'FT1', 'PDA'],
  /** ORU^R01, OUL^R22–R24 (results: OBR is a DiagnosticReport). */
  oru: ['PID', 'PV1', 'PV2', 'DG1', 'AL1', 'OBR', 'OBX', 'SPM', 'FT1'],
  /** ORM^O01, OML^O21, OMG^O19: OBR is a ServiceRequest here (the ORC map); OBX are the order's supporting observations. */
  order: ['PID', 'PV1', 'PV2', 'DG1', 'AL1', 'GT1', 'IN1', 'IN2', 'ORC', 'TQ1', 'OBR', 'OBX', 'SPM', 'FT1'],
  /** SIU^S12–S26 (TQ1 is the appointment's timing). */
  schedule: ['SCH', 'TQ1', 'PID', 'PV1', 'PV2', 'DG1', 'OBX', 'AIS', 'AIG', 'AIL', 'AIP'],
  /** DFT^P03/P11: FT1 → ChargeItem (+ Account from PID-18). */
  financial: ['PID', 'PV1', 'PV2', 'DG1', 'GT1', 'DB1', 'IN1', 'IN2', 'OBX', 'FT1'],
  /** MDM^T01–T11: TXA + its OBX → one DocumentReference (OBX is the document's content here, not Observations). */
  document: ['PID', 'PV1', 'PV2', 'TXA', 'OBX'],
  /** VXU^V04: RXA (+ RXR) → Immunization; ORC only for the filler order number (the id key); OBX about the dose → Observations. */
  immunization: ['PID', 'PV1', 'PV2', 'ORC', 'RXA', 'RXR', 'OBX'],
  /** ADT^A34/A39/A40/A47: the survivor (PID) and the retired (MRG-1) Patient, linked. */
  merge: ['PID', 'PV1', 'PV2', 'MRG'],
  /** REF/RRI^I12–I15: the common profile plus RF1 (+ its PRD providers) → a referral ServiceRequest. */
  referral: ['PID', 'PV1', 'PV2', 'DG1', 'AL1', 'GT1', 'DB1', 'IN1', 'IN2', 'OBX', 'FT1', 'PDA', 'RF1', 'PRD'],
};

/** Referral message types converted with the referral profile. */
export const referralMessages: ReadonlySet<string> = new Set(['REF^I12', 'REF^I13', 'REF^I14', 'REF^I15', 'RRI^I12', 'RRI^I13', 'RRI^I14', 'RRI^I15']);

/** Financial message types (DFT) converted with the financial profile. */
export const financialMessages: ReadonlySet<string> = new Set(['DFT^P03', 'DFT^P11']);
/** MDM trigger events converted with the document profile. */
export const documentEvents: ReadonlySet<string> = new Set(['T01', 'T02', 'T03', 'T04', 'T05', 'T06', 'T07', 'T08', 'T09', 'T10', 'T11']);
/** ADT merge events converted with the merge profile. */
export const mergeEvents: ReadonlySet<string> = new Set(['A34', 'A39', 'A40', 'A47']);

/** Order message types converted with the order profile. */
export const orderMessages: ReadonlySet<string> = new Set(['ORM^O01', 'OML^O21', 'OMG^O19']);
/** Result message types converted with the result profile. */
export const resultMessages: ReadonlySet<string> = new Set(['ORU^R01', 'OUL^R22', 'OUL^R23', 'OUL^R24']);
/** SIU trigger events converted with the schedule profile. */
export const scheduleEvents: ReadonlySet<string> = new Set(['S12', 'S13', 'S14', 'S15', 'S16', 'S17', 'S26']);

export function profileFor(messageCode: string, triggerEvent: string): readonly string[] {
  const code = messageCode.trim().toUpperCase();
  const event = triggerEvent.trim().toUpperCase();
  if (resultMessages.has(`${code}^${event}`)) return messageProfiles.oru!;
  if (orderMessages.has(`${code}^${event}`)) return messageProfiles.order!;
  if (code === 'SIU' && scheduleEvents.has(event)) return messageProfiles.schedule!;
  if (financialMessages.has(`${code}^${event}`)) return messageProfiles.financial!;
  if (code === 'MDM' && documentEvents.has(event)) return messageProfiles.document!;
  if (code === 'VXU' && event === 'V04') return messageProfiles.immunization!;
  if (code === 'ADT' && mergeEvents.has(event)) return messageProfiles.merge!;
  if (referralMessages.has(`${code}^${event}`)) return messageProfiles.referral!;
  return messageProfiles.common!;
}
