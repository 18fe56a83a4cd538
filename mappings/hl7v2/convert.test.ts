import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { memberSchema } from '../../hub/config';
import { bloodCount, simAdt, simOru, simPatient } from '../../cli/simulate';
import { inspectMessage } from './header';
import { Hl7Message } from './message';
import { HubError } from '../outcome';
import { validateBundle, validateResource } from '../fhir/validate';
import { convertMessage, convertWithKeys, type Bundle } from './convert';
import { EXPLICIT_NULL_URL, SEGMENT_PATH_URL, Z_SEGMENT_URL, resourceId, type ConvertContext, type Resource } from './convert/conversion';
import { LANGUAGE_EXTENSION } from './datatypes';
import { RESIDENT_ID_SYSTEM, profileFor, segmentMaps, withOverrides } from './segments';

const samplesDir = path.join(__dirname, '..', '..', '..', 'shared', 'data', 'hl7v2', 'fhir-converter', 'messages');
const samples = readdirSync(samplesDir).filter((f) => f.endsWith('.hl7')).sort();
const ctx: ConvertContext = { memberId: 'm1', channelId: 'files', utcOffsetMinutes: 8 * 60 };

function load(file: string): Hl7Message {
  return inspectMessage(readFileSync(path.join(samplesDir, file)), { defaultCharset: 'UTF-8' }).message;
}

/** Every reference `Type/id` found anywhere in a resource. */
function referencesIn(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) referencesIn(v, out);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'reference' && typeof v === 'string') out.push(v);
      else referencesIn(v, out);
    }
  }
  return out;
}

/** The test-side guard (not in the hot path): convert, then validate the bundle and every resource, and resolve every reference. */
function convertValidated(message: Hl7Message, context: ConvertContext = ctx): Bundle {
  const bundle = convertMessage(message, context);
  const issues = validateBundle(bundle).map((i) => `${i.path}: ${i.message}`);
  const urls = new Set<string>();
  for (const [i, entry] of bundle.entry.entries()) {
    const r = entry.resource;
    issues.push(...validateResource(r).map((x) => `${r.resourceType}/${r.id} ${x.path}: ${x.message}`));
    if (entry.request.url !== `${r.resourceType}/${r.id}`) issues.push(`entry ${i}: request.url ${entry.request.url} is not ${r.resourceType}/${r.id}`);
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(r.id)) issues.push(`entry ${i}: id ${r.id} is not a FHIR id`);
    if (urls.has(entry.request.url)) issues.push(`entry ${i}: ${entry.request.url} twice`);
    urls.add(entry.request.url);
  }
  for (const entry of bundle.entry) for (const ref of referencesIn(entry.resource)) if (!urls.has(ref)) issues.push(`${entry.request.url} refers to ${ref}, not in the bundle`);
  if (issues.length) throw new Error(`invalid conversion:\n${issues.join('\n')}`);
  return bundle;
}

const ofType = (bundle: Bundle, type: string): Resource[] => bundle.entry.map((e) => e.resource).filter((r) => r.resourceType === type);
const one = (bundle: Bundle, type: string): any => {
  const found = ofType(bundle, type);
  expect(found).toHaveLength(1);
  return found[0];
};
const ref = (r: Resource) => ({ reference: `${r.resourceType}/${r.id}` });
const resource = (bundle: Bundle, reference: { reference: string }): any => bundle.entry.find((e) => e.request.url === reference.reference)!.resource;
const segmentPaths = (r: Resource) => (r.meta?.extension ?? []).filter((x) => x.url === SEGMENT_PATH_URL).map((x) => x.valueString);

describe('the sample set (83 FHIR-Converter messages)', () => {
  test('there are 83 samples', () => {
    expect(samples).toHaveLength(83);
  });

  test.each(samples)('%s converts, every resource is valid FHIR R4 and every reference resolves', (file) => {
    const message = load(file);
    const bundle = convertValidated(message);
    expect(bundle.type).toBe('batch');
    expect(bundle.identifier.value).toBe(message.msh.value(10));
    expect(bundle.entry.every((e) => e.request.method === 'PUT')).toBe(true);
    // one Provenance naming every other produced resource (not the member Organization, the agent)
    const provenance = one(bundle, 'Provenance');
    const others = bundle.entry.map((e) => e.resource).filter((r) => r.resourceType !== 'Provenance' && !(r.resourceType === 'Organization' && segmentPaths(r).length === 0));
    expect(provenance.target).toEqual(others.map(ref));
    for (const r of others) expect(segmentPaths(r).length).toBeGreaterThan(0);
    // the narrow profiles produce only their own resource types: a document (MDM) makes no
    // Observations of its OBX lines, a merge (A34/A39/A40/A47) only the linked Patients
    const profile = profileFor(message.msh.value(9, 0, 1), message.msh.value(9, 0, 2));
    if (profile.includes('TXA') || profile.includes('MRG')) {
      const allowed = new Set(['Patient', 'Encounter', 'Practitioner', 'Location', 'Organization', 'Provenance']);
      if (profile.includes('TXA')) allowed.add('DocumentReference');
      expect(bundle.entry.filter((e) => !allowed.has(e.resource.resourceType))).toEqual([]);
    }
  });

  test('identity: the same business key always gets the same id, different keys never share one', () => {
    const keyOf = new Map<string, string>(); // Type/id → member|key
    const idOf = new Map<string, string>(); // member|Type|key → Type/id
    for (const context of [ctx, { ...ctx, memberId: 'm2' }]) {
      for (const file of samples) {
        const message = load(file);
        const first = convertWithKeys(message, context);
        const again = convertWithKeys(load(file), context);
        expect(again.bundle).toEqual(first.bundle); // re-processing is byte-for-byte the same
        for (const [url, key] of first.keys) {
          const type = url.split('/')[0]!;
          const scoped = `${context.memberId}|${type}|${key}`;
          const seenKey = keyOf.get(url);
          if (seenKey !== undefined) expect(seenKey).toBe(scoped);
          keyOf.set(url, scoped);
          const seenId = idOf.get(scoped);
          if (seenId !== undefined) expect(seenId).toBe(url);
          idOf.set(scoped, url);
          expect(url).toBe(`${type}/${resourceId(context.memberId, type, key)}`);
        }
      }
    }
    expect(keyOf.size).toBe(idOf.size);
    expect(keyOf.size).toBeGreaterThan(350); // distinct resources over both members
  });
});

describe('ADT-A01-01 field by field', () => {
  const bundle = convertValidated(load('ADT-A01-01.hl7'));
  const patient = one(bundle, 'Patient');
  const encounter = one(bundle, 'Encounter');

  test('bundle header from MSH', () => {
    expect(bundle.identifier).toEqual({ system: 'urn:yilian:m1:message-control-id', value: 'MSG00001' });
    expect(bundle.timestamp).toBe('1989-08-18T09:11:00.000Z'); // 198908181126+0215
  });

  test('Patient identifiers, name, birth date, gender, address, telecom', () => {
    expect(patient.identifier).toContainEqual(expect.objectContaining({ value: 'PATID1234', system: 'urn:yilian:m1:id:test1', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } }));
    expect(patient.identifier).toContainEqual(expect.objectContaining({ value: '123456789', system: 'urn:yilian:m1:id:USSSA' }));
    expect(patient.identifier).toContainEqual(expect.objectContaining({ value: '1234567' })); // PID-2
    expect(patient.identifier).toContainEqual(expect.objectContaining({ value: 'PATID567' })); // PID-4
    expect(patient.identifier).toContainEqual({ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'DL' }] }, value: 'DLN-123', period: { end: '2001-01-23' } }); // PID-20 (DLN-3 expiry)
    expect(patient.identifier).toContainEqual(expect.objectContaining({ value: '1516' })); // GT1-2, guarantor is SEL
    expect(patient.identifier).toContainEqual(expect.objectContaining({ value: 'DB123' })); // DB1-3, DB1-2 PT
    expect(patient.identifier).toContainEqual(expect.objectContaining({ value: 'PNM1234' })); // IN2-61 patient member number
    // IN2-6 Medicare number belongs to the insured, who is the spouse (IN1-17 SPO): not the patient's
    expect(patient.identifier.map((i: { value: string }) => i.value)).not.toContain('Medicare-12345');
    expect(patient.name[0]).toEqual(expect.objectContaining({ family: 'EVERYMAN', given: ['ADAM', 'A'], prefix: ['Dr.'], use: 'usual' }));
    expect(patient.name[1]).toEqual(expect.objectContaining({ family: 'Josh', use: 'official' }));
    expect(patient.name).toContainEqual({ use: 'nickname', given: ['Addsm'] }); // XPN-15 called by
    expect(patient.birthDate).toBe('1988-08-18');
    expect(patient.gender).toBe('male');
    // PID-11, then the guarantor's address: GT1-11 is SEL, the guarantor is the patient
    expect(patient.address).toEqual([
      expect.objectContaining({ line: ['1000', 'Ste. 123'], city: 'Ann Arbor', state: 'MI', postalCode: '99999', country: 'USA', type: 'postal' }),
      expect.objectContaining({ line: ['1619 SOUTH UNIVERSITY'], city: 'MADISON' }),
    ]);
    expect(patient.telecom).toContainEqual(expect.objectContaining({ system: 'phone', value: '2222', use: 'mobile', rank: 18 }));
    expect(patient.telecom).toContainEqual(expect.objectContaining({ system: 'phone', value: '7777' })); // PID-14
    expect(patient.deceasedDateTime).toBe('2008-08-25T11:16:30+01:15');
    expect(patient.deceasedBoolean).toBeUndefined(); // PID-30 Y, but the date says more and R4 allows one
    expect(segmentPaths(patient)).toEqual(['PID', 'DB1', 'GT1', 'IN2']); // the segments that said something about the patient
  });

  test('Encounter class, status, period, identifier, locations, participants', () => {
    expect(encounter.class).toEqual({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PRENC', display: 'pre-admission' });
    expect(encounter.status).toBe('in-progress'); // A01
    expect(encounter.period).toEqual({ start: '2015-02-08T11:34:19+01:10' });
    expect(encounter.identifier).toEqual([expect.objectContaining({ value: '40007716' })]);
    expect(encounter.subject).toEqual(ref(patient));
    const locations = ofType(bundle, 'Location') as any[];
    const named = (l: { location: { reference: string } }) => resource(bundle, l.location).name;
    // assigned PV1-3, prior PV1-6, temporary PV1-11, pending PV1-42, prior temporary PV1-43, PV2-1 prior pending
    expect(encounter.location.map((l: any) => [named(l), l.status])).toEqual([
      ['HUH AE OMU / OMU B / Bed 03', 'active'],
      ['4 East, room 136, bed B 4E / 136 / B', 'completed'],
      ['Internal Medicine', 'active'],
      ['POC / Room-2 / Bed-103', 'planned'],
      ['Nursing home', 'completed'],
      ['ROOM1 / BED1', 'planned'],
    ]);
    expect(encounter.location[0].location).toEqual(ref(locations[0]));
    expect(locations[0]).toEqual(expect.objectContaining({ name: 'HUH AE OMU / OMU B / Bed 03', mode: 'instance' }));
    expect(locations[0].physicalType.coding[0].code).toBe('bd');
    expect(segmentPaths(locations[0])).toEqual(['PV1-3']);
    const codes = encounter.participant.map((p: any) => p.type[0].coding[0].code);
    expect(codes).toEqual(['ATND', 'REF', 'CON', 'ADM']);
    const attending = bundle.entry.find((e) => e.request.url === encounter.participant[0].individual.reference)!.resource as any;
    expect(attending.identifier[0].value).toBe('1122334');
    expect(attending.name[0]).toEqual(expect.objectContaining({ family: 'Alaz', given: ['Mohammed', 'Mahi'] }));
    expect(encounter.reasonCode[0].coding[0]).toEqual({ system: 'http://snomed.info/sct', code: '140004', display: 'Chronic pharyngitis' }); // PV2-3
  });

  test('Condition (DG1, PDA-1 cause of death), AllergyIntolerance (AL1), Coverage (IN1), Observation (OBX)', () => {
    const [condition, causeOfDeath] = ofType(bundle, 'Condition') as any[];
    expect(causeOfDeath.code.coding[0]).toEqual({ system: 'http://hl7.org/fhir/sid/icd-10', code: 'I21', display: 'Acute myocardial infarction' });
    expect(causeOfDeath.subject).toEqual(ref(patient));
    expect(segmentPaths(causeOfDeath)).toEqual(['PDA']);
    expect(condition.code.coding[0]).toEqual({ system: 'http://snomed.info/sct', code: '422504002', display: 'Ischemic stroke(disorder)' });
    expect(condition.subject).toEqual(ref(patient));
    expect(condition.encounter).toEqual(ref(encounter));
    expect(condition.onsetDateTime).toBe('2004-01-25T11:40:25+04:20');
    const allergy = one(bundle, 'AllergyIntolerance');
    expect(allergy).toEqual(expect.objectContaining({ patient: ref(patient), category: ['environment'], criticality: 'low', onsetDateTime: '2021-08-24' }));
    expect(allergy.code.text).toBe('PENICILLIN');
    const coverage = one(bundle, 'Coverage');
    expect(coverage).toEqual(expect.objectContaining({ status: 'active', beneficiary: ref(patient), subscriberId: 'PN-145', period: { start: '1989-10-01', end: '2050-10-01' } }));
    const payor = bundle.entry.find((e) => e.request.url === coverage.payor[0].reference)!.resource as any;
    expect(payor).toEqual(expect.objectContaining({ resourceType: 'Organization', name: 'Blue Cross Blue Shield of Texas' }));
    // OBX-5 "60~120" (NM, repeated): one component per repetition, units from OBX-6
    const observation = one(bundle, 'Observation');
    expect(observation.valueQuantity).toBeUndefined();
    expect(observation.component.map((c: any) => c.valueQuantity)).toEqual([
      { value: 60, unit: 'beats/min' },
      { value: 120, unit: 'beats/min' },
    ]);
    expect(observation.status).toBe('preliminary'); // OBX-11 S
    expect(observation.referenceRange).toEqual([{ low: { value: 70, unit: 'beats/min' }, high: { value: 80, unit: 'beats/min' }, text: '70-80' }]);
  });
});

describe('LRI CBC (ORU^R01) field by field', () => {
  const bundle = convertValidated(load('LRI_2.0-NG_CBC_Typ_Message.hl7'));
  const report = one(bundle, 'DiagnosticReport');
  const observations = ofType(bundle, 'Observation') as any[];
  const patient = one(bundle, 'Patient');
  const specimen = one(bundle, 'Specimen');

  test('DiagnosticReport status, code, identifiers, result, specimen', () => {
    expect(report.status).toBe('final'); // OBR-25 F
    expect(report.code.coding[0]).toEqual({ system: 'http://loinc.org', code: '57021-8', display: 'CBC W Auto Differential panel in Blood' });
    expect(report.identifier.map((i: any) => i.value)).toEqual(['ORD666555', 'R-991133']);
    expect(report.effectiveDateTime).toBe('2011-01-03T14:34:28-08:00');
    expect(report.issued).toBe('2011-01-04T17:00:28-08:00');
    expect(report.subject).toEqual(ref(patient));
    expect(observations).toHaveLength(28);
    expect(report.result).toEqual(observations.map(ref));
    expect(report.specimen).toEqual([ref(specimen)]);
    expect(specimen.type.coding[0]).toEqual({ system: 'http://snomed.info/sct', code: '119297000', display: 'BLD' });
  });

  test('numeric Observation: code, value, UCUM unit, reference range, interpretation, status, effective', () => {
    const hgb = observations[1];
    expect(hgb.code.coding[0]).toEqual({ system: 'http://loinc.org', code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood' });
    const gml = { unit: 'grams per milliliter', system: 'http://unitsofmeasure.org', code: 'g/mL' };
    expect(hgb.valueQuantity).toEqual({ value: 12.5, ...gml });
    expect(hgb.referenceRange).toEqual([{ low: { value: 13, ...gml }, high: { value: 18, ...gml }, text: '13 to 18' }]);
    expect(hgb.interpretation).toEqual([{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'L' }] }]);
    expect(hgb.status).toBe('final');
    expect(hgb.effectiveDateTime).toBe('2011-01-03T14:34:28-08:00');
    expect(hgb.subject).toEqual(ref(patient));
    expect(hgb.specimen).toEqual(ref(specimen));
    expect(segmentPaths(hgb)).toEqual(['OBX[2]']);
    expect(observations[3].interpretation[0].coding[0].code).toBe('HH');
  });

  test('coded (CWE) and text (TX) values', () => {
    expect(observations[19].valueCodeableConcept).toEqual({ coding: [{ system: 'http://snomed.info/sct', code: '260348001', display: 'Present ++ out of ++++' }], text: 'Moderate Anisocytosis' });
    expect(observations[25].valueString).toBe('Many spherocytes present.');
  });
});

describe('orders (ORM^O01, OML^O21): ServiceRequest, Specimen', () => {
  const typed = (code: string) => ({ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code }] });

  test('ORM-O01-01: identifiers, status, intent, code, subject, encounter, requester, authoredOn, occurrence', () => {
    const bundle = convertValidated(load('ORM-O01-01.hl7'));
    expect(profileFor('ORM', 'O01')).toContain('ORC');
    expect(ofType(bundle, 'DiagnosticReport')).toEqual([]); // an order's OBR is not a report
    const sr = one(bundle, 'ServiceRequest');
    expect(sr.identifier).toEqual([
      { type: typed('PLAC'), system: 'urn:yilian:m1:id:GHHPlacer', value: '1101' },
      { type: typed('FILL'), system: 'urn:yilian:m1:id:GHHFiller', value: '1201' },
    ]);
    expect(sr.status).toBe('active'); // ORC-5 SC (peer: active)
    expect(sr.intent).toBe('order');
    expect(sr.code.coding[0]).toEqual({ system: 'http://loinc.org', code: '24725-4', display: 'CT Head' });
    expect(sr.subject).toEqual(ref(one(bundle, 'Patient')));
    expect(sr.encounter).toEqual(ref(one(bundle, 'Encounter')));
    expect(sr.authoredOn).toBe('2021-10-20T11:26:00+02:15'); // ORC-9 (peer: 2021-10-20T14:41:00+05:30, the same instant)
    expect(sr.occurrenceDateTime).toBe('2021-10-20T12:00:00+02:15'); // OBR-7
    const requester = bundle.entry.find((e) => e.request.url === sr.requester.reference)!.resource as any;
    expect(requester.resourceType).toBe('Practitioner');
    expect(requester.identifier[0].value).toBe('3850'); // ORC-12
    expect(requester.name[0]).toEqual(expect.objectContaining({ family: 'ORDPROVIDER', given: ['JONES', 'A'] }));
    expect(segmentPaths(sr)).toEqual(['ORC', 'OBR']);
    expect(sr.id).toBe(resourceId('m1', 'ServiceRequest', 'order-filler:urn:yilian:m1:id:GHHFiller|1201'));
  });

  test('ORM-O01-05: ORC-5 CA wins over ORC-1 NW → revoked; LAB-ORM-1 (v2.3): ORC-1 NW → active, no OBR-15 no Specimen', () => {
    expect(one(convertValidated(load('ORM-O01-05.hl7')), 'ServiceRequest').status).toBe('revoked');
    const lab = convertValidated(load('LAB-ORM-1.hl7'));
    const sr = one(lab, 'ServiceRequest');
    expect(sr.status).toBe('active');
    expect(sr.identifier.map((i: any) => i.value)).toEqual(['88502218', '82503246']);
    expect(ofType(lab, 'Specimen')).toEqual([]);
  });

  test('OML-O21-01: TQ1 priority, SPM Specimen linked both ways', () => {
    const bundle = convertValidated(load('OML-O21-01.hl7'));
    const sr = one(bundle, 'ServiceRequest');
    const specimen = one(bundle, 'Specimen');
    expect(sr.priority).toBe('routine'); // TQ1-9 R
    expect(sr.code.coding[0].code).toBe('57698-3');
    expect(sr.specimen).toEqual([ref(specimen)]);
    expect(specimen.request).toEqual([ref(sr)]);
    expect(specimen.identifier.map((i: any) => i.value)).toEqual(['2012999999', '2012545']);
    expect(specimen.subject).toEqual(ref(one(bundle, 'Patient')));
  });

  test('TQ1-7/8 → occurrencePeriod; OBR-15 (v2.3 specimen source) → Specimen; one ORC with two OBRs → two ServiceRequests', () => {
    const text = [
      'MSH|^~\\&|LIS|H1|HUB|Y|20260101120000||ORM^O01|O-1|P|2.3',
      'PID|1||P100^^^H1^MR||王^五||19800101|M',
      'ORC|NW|PL-1|FL-1||IP||||20260101113000|||0101^李^医生',
      'TQ1|1||||||20260102080000|20260102090000|S',
      'OBR|1|PL-1|FL-1|CBC^血常规^L|||20260101110000||||||||BLD&Blood&HL70070^^^LA&Left arm&HL70163',
      'OBR|2|PL-1|FL-1|CRP^C反应蛋白^L',
    ].join('\r');
    const bundle = convertValidated(Hl7Message.parse(text));
    const [first, second] = ofType(bundle, 'ServiceRequest') as any[];
    expect(first.status).toBe('active'); // ORC-5 IP
    expect(first.priority).toBe('stat');
    expect(first.occurrencePeriod).toEqual({ start: '2026-01-02T08:00:00+08:00', end: '2026-01-02T09:00:00+08:00' });
    expect(first.authoredOn).toBe('2026-01-01T11:30:00+08:00');
    expect(first.requester).toEqual(second.requester); // the ORC-12 of both
    expect(second.code.coding[0].code).toBe('CRP');
    expect(second.id).not.toBe(first.id); // the same order numbers twice: #2, not a collision
    const specimen = one(bundle, 'Specimen');
    expect(specimen.type.coding[0]).toEqual(expect.objectContaining({ code: 'BLD', display: 'Blood' }));
    expect(specimen.collection.bodySite.coding[0].code).toBe('LA');
    expect(first.specimen).toEqual([ref(specimen)]);
    expect(second.specimen).toBeUndefined();
    expect(segmentPaths(specimen)).toEqual(['OBR[1]-15']);
  });

  test('an ORC without an OBR is still a ServiceRequest (code data-absent); an order needs a patient', () => {
    const sr = one(convertValidated(Hl7Message.parse('MSH|^~\\&|A|B|C|D|20260101120000||ORM^O01|O-2|P|2.5\rPID|1||P1^^^H1^MR\rORC|CA|PL-9\r')), 'ServiceRequest');
    expect(sr.status).toBe('revoked');
    expect(sr.code.extension[0].valueCode).toBe('unknown');
    expect(() => convertMessage(Hl7Message.parse('MSH|^~\\&|A|B|C|D|20260101120000||ORM^O01|O-3|P|2.5\rORC|NW|PL-9\r'), ctx)).toThrow(HubError);
  });
});

describe('scheduling (SIU^S12–S26): Appointment, Device', () => {
  const s12 = convertValidated(load('SIU-S12-01.hl7'));
  const appointment = one(s12, 'Appointment');
  const actor = (type: string) => appointment.participant.find((p: any) => p.actor.reference.startsWith(`${type}/`));

  test('SIU-S12-01: identifiers, status, start/end, appointmentType, serviceType', () => {
    expect(appointment.identifier.map((i: any) => [i.type.coding[0].code, i.value])).toEqual([
      ['PLAC', '12345'],
      ['FILL', '36996'],
    ]);
    expect(appointment.status).toBe('booked');
    // TQ1-7/8 (peer: 2021-09-24T12:45:00+05:30 → 13:35+05:30, the same instants)
    expect(appointment.start).toBe('2021-09-24T09:30:00+02:15');
    expect(appointment.end).toBe('2021-09-24T10:20:00+02:15');
    expect(appointment.appointmentType.coding[0]).toEqual({ system: 'http://terminology.hl7.org/CodeSystem/v2-0276', code: 'EMERGENCY' }); // SCH-7, as the peer
    expect(appointment.serviceType[0].coding[0]).toEqual({ system: 'http://snomed.info/sct', code: '76164006', display: 'Biopsy of colon (procedure)' }); // AIS-3
    expect(appointment.id).toBe(resourceId('m1', 'Appointment', 'appt-filler:|36996'));
  });

  test('participants: Patient, Device (AIG-3), Location (AIL-3), Practitioner (AIP-3)', () => {
    expect(appointment.participant.map((p: any) => p.actor.reference.split('/')[0])).toEqual(['Patient', 'Device', 'Location', 'Practitioner']);
    expect(appointment.participant.every((p: any) => p.status === 'accepted')).toBe(true);
    expect(actor('Patient').actor).toEqual(ref(one(s12, 'Patient')));
    const device = one(s12, 'Device');
    expect(actor('Device').actor).toEqual(ref(device));
    expect(device.identifier[0]).toEqual({ system: 'urn:yilian:m1:L', value: '5001' });
    expect(device.deviceName).toEqual([{ name: 'EVIS X12 Video Colonoscope', type: 'user-friendly-name' }]);
    expect(device.id).toBe(resourceId('m1', 'Device', 'device:urn:yilian:m1:L|5001'));
    expect(actor('Device').type[0].coding[0]).toEqual({ system: 'urn:yilian:m1:L', code: '101', display: 'Equipment' }); // AIG-4, as the peer
    const location = s12.entry.find((e) => e.request.url === actor('Location').actor.reference)!.resource as any;
    expect(location.name).toBe('055 / Room01');
    expect(segmentPaths(location)).toEqual(['PV1-3', 'AIL-3']); // the visit's room is the appointment's
    const practitioner = s12.entry.find((e) => e.request.url === actor('Practitioner').actor.reference)!.resource as any;
    expect(practitioner.identifier[0].value).toBe('1210');
    expect(practitioner.name[0]).toEqual(expect.objectContaining({ family: 'GE', given: ['Robert', 'C'] }));
    expect(actor('Practitioner').type[0].coding[0].code).toBe('010'); // AIP-4
    expect(segmentPaths(device)).toEqual(['AIG-3']);
  });

  test('status per trigger / SCH-25, the same Appointment and Device across the events', () => {
    const status = (file: string) => one(convertValidated(load(file)), 'Appointment');
    const events = ['SIU-S13-01', 'SIU-S14-01', 'SIU-S15-01', 'SIU-S16-01', 'SIU-S17-01', 'SIU-S26-01'].map((f) => status(`${f}.hl7`));
    expect(events.map((a) => a.status)).toEqual(['booked', 'booked', 'cancelled', 'cancelled', 'entered-in-error', 'noshow']);
    for (const a of events) expect(a.id).toBe(appointment.id);
    expect(one(convertValidated(load('SIU-S15-01.hl7')), 'Device').id).toBe(one(s12, 'Device').id);
    // without SCH-25 the trigger decides
    const bare = (trigger: string) =>
      one(convertValidated(Hl7Message.parse(`MSH|^~\\&|A|B|C|D|20260101120000||SIU^${trigger}|S-${trigger}|P|2.5\rSCH|A1|F1\rPID|1||P1^^^H1^MR\r`)), 'Appointment').status;
    expect(['S12', 'S15', 'S17', 'S26'].map(bare)).toEqual(['booked', 'cancelled', 'entered-in-error', 'noshow']);
  });

  test('start from AIS-4 + AIS-7/8 duration when neither TQ1 nor SCH-11 says; a shared CT is one Device per member', () => {
    const siu = (id: string, appt: string) =>
      Hl7Message.parse(
        [`MSH|^~\\&|RIS|H1|HUB|Y|20260101120000||SIU^S12|${id}|P|2.5`, `SCH|${appt}|${appt}F`, 'PID|1||P1^^^H1^MR', 'RGS|1', 'AIS|1|A|CT-HEAD^头颅CT^L|20260105100000|||30|min', 'AIG|1|A|CT01^CT 1号机^L|E^Equipment'].join('\r'),
      );
    const a = convertValidated(siu('S-1', 'A1'));
    const b = convertValidated(siu('S-2', 'A2'));
    expect(one(a, 'Appointment')).toEqual(expect.objectContaining({ start: '2026-01-05T10:00:00+08:00', end: '2026-01-05T10:30:00+08:00' }));
    expect(one(a, 'Appointment').id).not.toBe(one(b, 'Appointment').id);
    expect(one(a, 'Device').id).toBe(one(b, 'Device').id);
    expect(one(convertValidated(siu('S-1', 'A1'), { ...ctx, memberId: 'm2' }), 'Device').id).not.toBe(one(a, 'Device').id);
  });
});

describe('members, overrides and HL7 semantics', () => {
  const patient = simPatient(3, 'ZJ');
  const withResidentId = (text: string, id: string) => text.replace(/^(PID\|[^\r]*)/m, `$1||||||${id}`);

  test('Chinese ADT: PID-19 resident ID through the member override; names and address in Chinese', () => {
    const text = withResidentId(simAdt({ controlId: 'CN-1', patient, sendingFacility: 'XIANYY' }, 'A01'), '330102199001011234');
    const message = Hl7Message.parse(text);
    expect(message.segment('PID')!.value(19)).toBe('330102199001011234');
    const member = memberSchema.parse({ id: 'm2', name: '县人民医院', tier: 'secondary', conversion: { residentIdField: 19 } });
    const bundle = convertValidated(message, { memberId: 'm2', channelId: 'mllp', utcOffsetMinutes: 480, member });
    const p = one(bundle, 'Patient');
    expect(p.identifier).toContainEqual({ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'NNCHN' }] }, system: RESIDENT_ID_SYSTEM, value: '330102199001011234' });
    expect(p.identifier.filter((i: any) => i.type?.coding?.[0]?.code === 'SS')).toEqual([]);
    expect(p.name[0]).toEqual({ text: `${patient.family}${patient.given}`, family: patient.family, given: [patient.given] });
    expect(p.address[0]).toEqual(expect.objectContaining({ line: ['人民路1号'], city: '杭州市', state: '浙江省', postalCode: '310000', country: 'CHN' }));
    expect(p.gender).toBe(patient.sex === 'M' ? 'male' : 'female');
    const organization = bundle.entry.map((e) => e.resource as any).find((r) => r.resourceType === 'Organization' && r.identifier[0].system === 'urn:yilian:member');
    expect(organization.name).toBe('县人民医院');
    expect(one(bundle, 'Provenance').agent[0].who.reference).toBe(`Organization/${organization.id}`);
    // times without an offset are the member's local time
    expect(bundle.timestamp).toBe('2026-11-23T01:30:00.000Z');
    // without the override PID-19 is the default SSN mapping (no system)
    const plain = one(convertValidated(message), 'Patient');
    expect(plain.identifier).toContainEqual({ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'SS' }] }, value: '330102199001011234' });
    // an override can also switch a field off
    const off = memberSchema.parse({ id: 'm3', name: 'm3', tier: 'primary', conversion: { overrides: [{ segment: 'PID', field: 19, to: null }] } });
    expect(one(convertValidated(message, { ...ctx, member: off }), 'Patient').identifier).toHaveLength(1);
  });

  test('M3 sends PID-5 in pinyin only: the override tags Latin-only names zh-Latn-pinyin, Hanzi names stay as they are', () => {
    const text = 'MSH|^~\\&|HIS|M3|HUB|R|20260101120000||ADT^A04|P-1|P|2.5\rPID|1||M3-001^^^M3^MR||ZHANG^SAN~张^三||19900101|M\r';
    const m3 = memberSchema.parse({
      id: 'm3',
      name: '社区卫生服务中心',
      tier: 'primary',
      conversion: { overrides: [{ segment: 'PID', field: 5, type: 'XPN-pinyin', to: 'name[]', repeat: true }] },
    });
    const names = one(convertValidated(Hl7Message.parse(text), { ...ctx, member: m3 }), 'Patient').name;
    expect(names[0]).toEqual({ extension: [{ url: LANGUAGE_EXTENSION, valueCode: 'zh-Latn-pinyin' }], text: 'SAN ZHANG', family: 'ZHANG', given: ['SAN'] });
    expect(names[1].extension).toBeUndefined();
    expect(names[1].family).toBe('张');
    // without the override the same name is a plain (foreign-looking) name
    expect(one(convertValidated(Hl7Message.parse(text)), 'Patient').name[0].extension).toBeUndefined();
  });

  test('ORC and SCH take per-member overrides like every other mapped segment', () => {
    const member = memberSchema.parse({
      id: 'm4',
      name: 'm4',
      tier: 'primary',
      conversion: {
        overrides: [
          { segment: 'ORC', field: 9, to: null }, // this member's ORC-9 is the print time, not the order time
          { segment: 'SCH', field: 7, type: 'ST', to: 'comment' },
        ],
      },
    });
    const order = (m?: typeof member) => one(convertValidated(load('ORM-O01-01.hl7'), { ...ctx, member: m }), 'ServiceRequest');
    expect(order().authoredOn).toBeDefined();
    expect(order(member).authoredOn).toBeUndefined();
    const appt = (m?: typeof member) => one(convertValidated(load('SIU-S12-01.hl7'), { ...ctx, member: m }), 'Appointment');
    expect(appt().appointmentType).toBeDefined();
    expect(appt(member).appointmentType).toBeUndefined();
    expect(appt(member).comment).toBe(load('SIU-S12-01.hl7').segment('SCH')!.components(7).join('^'));
  });

  test('member conversion config is validated', () => {
    expect(memberSchema.safeParse({ id: 'x', name: 'x', tier: 'primary', conversion: { overrides: [{ segment: 'ZZZ', field: 1, type: 'ST', to: 'note' }] } }).success).toBe(false);
    expect(memberSchema.safeParse({ id: 'x', name: 'x', tier: 'primary', conversion: { overrides: [{ segment: 'PID', field: 20, to: 'identifier[]' }] } }).success).toBe(false); // no type
    expect(memberSchema.safeParse({ id: 'x', name: 'x', tier: 'primary', conversion: { overrides: [{ segment: 'PID', field: 20, type: 'XYZ', to: 'identifier[]' }] } }).success).toBe(false);
    expect(memberSchema.safeParse({ id: 'x', name: 'x', tier: 'primary', conversion: { overrides: [{ segment: 'PID', field: 20, type: 'ST-Identifier', to: 'identifier[]', system: 'urn:oid:1.2.3' }] } }).success).toBe(true);
  });

  test('an update of the same patient keeps its ids; a different patient gets different ones', () => {
    const a01 = convertValidated(Hl7Message.parse(simAdt({ controlId: 'U-1', patient }, 'A01')));
    const a08 = convertValidated(Hl7Message.parse(simAdt({ controlId: 'U-2', patient, address: '解放路2号', time: '20261124080000' }, 'A08')));
    const other = convertValidated(Hl7Message.parse(simAdt({ controlId: 'U-3', patient: simPatient(4, 'ZJ') }, 'A08')));
    expect(one(a08, 'Patient').id).toBe(one(a01, 'Patient').id);
    expect(one(a08, 'Patient').address[0].line).toEqual(['解放路2号']);
    expect(one(other, 'Patient').id).not.toBe(one(a01, 'Patient').id);
    expect(one(a08, 'Practitioner').id).toBe(one(a01, 'Practitioner').id); // PV1-7 0101
    expect(one(a08, 'Location').id).toBe(one(a01, 'Location').id);
    // no PV1-19 visit number and no PV1-44 admit time: the encounter is message-scoped, so two messages are two encounters
    expect(one(a08, 'Encounter').id).not.toBe(one(a01, 'Encounter').id);
    expect(one(a01, 'Encounter').status).toBe('in-progress');
    // no visit number but the same PV1-44 admission time: the same encounter
    const admittedAt = (text: string, at: string) => Hl7Message.parse(text.replace(/^(PV1\|[^\r]*)/m, (pv1) => pv1 + '|'.repeat(Math.max(0, 44 - (pv1.split('|').length - 1))) + at));
    const [e1, e2, e3] = [
      admittedAt(simAdt({ controlId: 'U-4', patient }, 'A01'), '20261120083000'),
      admittedAt(simAdt({ controlId: 'U-5', patient }, 'A08'), '20261120083000'),
      admittedAt(simAdt({ controlId: 'U-6', patient }, 'A01'), '20261122090000'),
    ].map((m) => one(convertValidated(m), 'Encounter'));
    expect(e1.period.start).toBe('2026-11-20T08:30:00+08:00');
    expect(e2.id).toBe(e1.id);
    expect(e3.id).not.toBe(e1.id);
  });

  test('PV1-19 visit number makes A01 → A03 → A11 one encounter whose status follows the event', () => {
    const withVisit = (trigger: string, id: string) => Hl7Message.parse(simAdt({ controlId: id, patient }, trigger).replace(/^(PV1\|[^\r]*)/m, '$1||||||||||||V2026-001^^^XIANYY^VN'));
    const [a01, a03, a11] = [withVisit('A01', 'V-1'), withVisit('A03', 'V-2'), withVisit('A11', 'V-3')].map((m) => one(convertValidated(m), 'Encounter'));
    expect(a03.id).toBe(a01.id);
    expect(a11.id).toBe(a01.id);
    expect([a01.status, a03.status, a11.status]).toEqual(['in-progress', 'finished', 'cancelled']);
    expect(a01.identifier[0].value).toBe('V2026-001');
  });

  test('"" in PID-8 produces no gender and records the explicit null; an empty PID-8 records nothing', () => {
    const text = simAdt({ controlId: 'N-1', patient });
    const nulled = one(convertValidated(Hl7Message.parse(text.replace(`||${patient.birth}|${patient.sex}|`, `||${patient.birth}|""|`))), 'Patient');
    expect(nulled.gender).toBeUndefined();
    expect(nulled.meta.extension).toContainEqual({ url: EXPLICIT_NULL_URL, valueString: 'PID-8' });
    const empty = one(convertValidated(Hl7Message.parse(text.replace(`||${patient.birth}|${patient.sex}|`, `||${patient.birth}||`))), 'Patient');
    expect(empty.gender).toBeUndefined();
    expect(empty.meta.extension.some((x: any) => x.url === EXPLICIT_NULL_URL)).toBe(false);
  });

  test('ORU: corrected result (OBX-11 C), units, ranges, and ids stable across re-conversion', () => {
    const final = convertValidated(Hl7Message.parse(simOru({ controlId: 'L-1', patient }, bloodCount, 'F')));
    const corrected = convertValidated(Hl7Message.parse(simOru({ controlId: 'L-1', patient }, bloodCount.map((r) => (r.code === 'HGB' ? { ...r, value: '128' } : r)), 'C')));
    const hgb = (b: Bundle) => ofType(b, 'Observation').find((o: any) => o.code.coding[0].code === 'HGB') as any;
    expect(hgb(final).status).toBe('final');
    expect(hgb(corrected).status).toBe('corrected');
    expect(hgb(corrected).id).toBe(hgb(final).id); // the correction replaces the same Observation
    expect(hgb(corrected).valueQuantity).toEqual({ value: 128, unit: 'g/L' });
    expect(hgb(final).referenceRange).toEqual([{ low: { value: 115, unit: 'g/L' }, high: { value: 150, unit: 'g/L' }, text: '115-150' }]);
    expect(hgb(final).code.coding[0]).toEqual({ system: 'urn:yilian:m1:L', code: 'HGB', display: '血红蛋白' });
    expect(one(final, 'DiagnosticReport').status).toBe('unknown'); // no OBR-25
    expect(one(corrected, 'DiagnosticReport').id).toBe(one(final, 'DiagnosticReport').id);
    expect(convertMessage(Hl7Message.parse(simOru({ controlId: 'L-1', patient }, bloodCount, 'F')), ctx)).toEqual(final);
  });

  test('the same test twice in one report without OBX-4: two Observations, not a silent collision', () => {
    const bundle = convertValidated(Hl7Message.parse(simOru({ controlId: 'D-1', patient }, [bloodCount[0]!, { ...bloodCount[0]!, value: '140' }])));
    const observations = ofType(bundle, 'Observation') as any[];
    expect(observations).toHaveLength(2);
    expect(new Set(observations.map((o) => o.id)).size).toBe(2);
    expect(observations.map((o) => o.valueQuantity.value)).toEqual([135, 140]);
  });

  test('Provenance entity is the raw message when the raw id is known', () => {
    const bundle = convertValidated(Hl7Message.parse(simOru({ controlId: 'R-1', patient }, bloodCount)), { ...ctx, rawId: 42 });
    const provenance = one(bundle, 'Provenance');
    expect(provenance.entity).toEqual([{ role: 'source', what: { identifier: { system: 'urn:ietf:rfc:3986', value: 'urn:yilian:raw:42' }, display: 'HL7 v2 ORU^R01 R-1' } }]);
    expect(provenance.agent[1].who.identifier).toEqual({ system: 'urn:yilian:m1:channel', value: 'files' });
    expect(provenance.recorded).toBe('2026-11-23T01:30:00.000Z');
  });

  test('overrides never change the shared segment maps', () => {
    const before = JSON.stringify(segmentMaps);
    const maps = withOverrides({ residentIdField: 19, overrides: [{ segment: 'PID', field: 5, to: null }] });
    expect(maps.PID!.fields.some((r) => r.field === 5)).toBe(false);
    expect(maps.PID!.fields.filter((r) => r.field === 19)).toEqual([expect.objectContaining({ datatype: 'ST-Identifier', system: RESIDENT_ID_SYSTEM })]);
    expect(JSON.stringify(segmentMaps)).toBe(before);
    expect(withOverrides(undefined)).toBe(segmentMaps);
  });

  test('NTE after an OBX is the Observation note', () => {
    const text = simOru({ controlId: 'T-1', patient }, bloodCount.slice(0, 1)) + 'NTE|1|L|溶血标本\r';
    const observation = one(convertValidated(Hl7Message.parse(text)), 'Observation');
    expect(observation.note).toEqual([{ text: '溶血标本' }]);
  });

  test('a message with nothing to convert is an empty batch (no Provenance)', () => {
    const bundle = convertValidated(Hl7Message.parse('MSH|^~\\&|A|B|C|D|20260101120000||QRY^A19|Q1|P|2.5\rQRD|20260101|R|I|Q1\r'));
    expect(bundle.entry).toEqual([]);
    expect(bundle.identifier.value).toBe('Q1');
  });

  test('conversion errors are HubErrors with a code and an HL7 location', () => {
    const oru = simOru({ controlId: 'E-1', patient }, bloodCount);
    const expectError = (text: string, code: string, location: string) => {
      let error: unknown;
      try {
        convertMessage(Hl7Message.parse(text), ctx);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(HubError);
      expect(error).toMatchObject({ code, location });
    };
    expectError(oru.replace('|NM|WBC^白细胞计数^L||6.2|', '|NM|WBC^白细胞计数^L||six|'), 'invalid', 'OBX[2]-5');
    expectError(oru.replace('OBX|1|NM|', 'OBX|1|ZZ|'), 'invalid', 'OBX[1]-2');
    expectError('MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5\rPV1|1|I\rDG1|1||I10^x^I10\r', 'structure', 'DG1');
  });
});

describe('Z-segments', () => {
  test('kept as received on the resource of the segment before them; before any resource, on the Provenance', () => {
    const text = [
      'MSH|^~\\&|LIS|H1|HUB|R|20260101120000+0800||ORU^R01|Z-1|P|2.5.1',
      'ZHD|batch 7',
      'PID|1||P1^^^H1^MR||李^四',
      'ZPI|1|医保卡^S\\F\\1|""',
      'OBR|1||F1|718-7^Hemoglobin^LN',
      'OBX|1|NM|718-7^Hemoglobin^LN||132|g/L|115-150||||F',
      'ZOB|仪器A~仪器B',
    ].join('\r');
    const bundle = convertValidated(Hl7Message.parse(text));
    const zOf = (r: any) => (r.extension ?? []).filter((e: any) => e.url === Z_SEGMENT_URL).map((e: any) => e.valueString);
    const patient = one(bundle, 'Patient');
    expect(zOf(patient)).toEqual(['ZPI|1|医保卡^S\\F\\1|""']); // escapes and "" as received
    expect(segmentPaths(patient)).toEqual(['PID', 'ZPI']);
    expect(zOf(one(bundle, 'Observation'))).toEqual(['ZOB|仪器A~仪器B']);
    expect(zOf(one(bundle, 'Provenance'))).toEqual(['ZHD|batch 7']);
    expect(zOf(one(bundle, 'DiagnosticReport'))).toEqual([]);
  });

  test('after SCH they go on the Appointment built at the end of the group', () => {
    const text = 'MSH|^~\\&|HIS|H1|HUB|R|20260101120000+0800||SIU^S12|Z-2|P|2.5\rSCH|A1|A1\rZSC|room note\rPID|1||P1^^^H1^MR||李^四\rTQ1|1||||||20260102090000+0800|20260102093000+0800';
    const appt = one(convertValidated(Hl7Message.parse(text)), 'Appointment');
    expect(appt.extension).toEqual([{ url: Z_SEGMENT_URL, valueString: 'ZSC|room note' }]);
  });
});

describe('DFT, MDM, VXU and ADT merge profiles', () => {

  test('DFT^P03: one ChargeItem per FT1, Account from PID-18, ids from FT1-2 (else the set id, message-scoped)', () => {
    const bundle = convertValidated(load('DFT-P03-01.hl7'));
    const items = ofType(bundle, 'ChargeItem') as any[];
    expect(items).toHaveLength(2);
    const [xray, visit] = items;
    expect(xray).toEqual(
      expect.objectContaining({
        identifier: [{ value: '12345' }],
        status: 'billable',
        occurrenceDateTime: '2019-11-22',
        quantity: { value: 2 },
        priceOverride: { value: 100, currency: 'USD' }, // FT1-11 extended amount; FT1-12 unit cost is not carried
        subject: ref(one(bundle, 'Patient')),
        context: ref(one(bundle, 'Encounter')),
        account: [ref(one(bundle, 'Account'))],
      }),
    );
    expect(xray.code.coding[0]).toEqual({ system: 'http://www.ama-assn.org/go/cpt', code: '71045', display: 'Xray exam chest 1 view' });
    expect(xray.reason.map((r: any) => r.coding[0].code)).toEqual(['29857009', '68235000']);
    expect(resource(bundle, xray.performer[0].actor).identifier[0].value).toBe('9941339108'); // FT1-20 performed by
    expect(xray.performer).toHaveLength(1); // FT1-21 ordered by is empty
    expect(resource(bundle, xray.enterer).identifier[0].value).toBe('9941339116'); // FT1-24 entered by
    expect(xray.id).toBe(resourceId('m1', 'ChargeItem', 'txn:12345'));
    expect(visit.identifier).toBeUndefined();
    expect(visit.code.coding[0].code).toBe('626.2');
    expect(visit.priceOverride).toEqual({ value: 120, currency: 'USD' });
    expect(one(bundle, 'Account')).toEqual(expect.objectContaining({ status: 'active', subject: [ref(one(bundle, 'Patient'))] }));
    expect(one(bundle, 'Account').identifier[0].value).toBe('4000776');
    // the same FT1-2 in another message is the same ChargeItem; the set-id one is message-scoped
    const again = convertValidated(load('DFT-P03-01.hl7'), { ...ctx, rawId: 99 });
    const ids = (ofType(again, 'ChargeItem') as any[]).map((r) => r.id);
    expect(ids[0]).toBe(xray.id);
    expect(ids[1]).not.toBe(visit.id);
    // P11 too; no stated currency → no currency
    expect(ofType(convertValidated(load('DFT-P11-01.hl7')), 'ChargeItem')).toHaveLength(2);
    const bare = convertValidated(
      Hl7Message.parse('MSH|^~\\&|A|B|C|D|20260101120000||DFT^P03|D-1|P|2.5\rPID|1||P1^^^H1^MR\rFT1|1|T9||20260101|||X1^Thing^L|||1|35.5\r'),
    );
    expect(one(bare, 'ChargeItem').priceOverride).toEqual({ value: 35.5 });
    expect(ofType(bare, 'Account')).toEqual([]);
  });

  test('MDM^T02: DocumentReference from TXA; OBX text lines are one text/plain attachment; ED keeps its type', () => {
    const text = convertValidated(load('MDM-T02-03.hl7'));
    expect(ofType(text, 'Observation')).toEqual([]);
    const doc = one(text, 'DocumentReference');
    expect(doc).toEqual(
      expect.objectContaining({
        masterIdentifier: { value: '2RWRVAJ627408' },
        status: 'current',
        docStatus: 'preliminary', // TXA-17 IP
        date: '2021-08-01T09:06:42+02:15',
        subject: ref(one(text, 'Patient')),
        context: { encounter: [ref(one(text, 'Encounter'))] },
      }),
    );
    expect(doc.type.coding[0].code).toBe('DS');
    expect(resource(text, doc.author[0]).identifier[0].value).toBe('C006');
    expect(doc.content).toHaveLength(1);
    expect(doc.content[0].attachment.contentType).toBe('text/plain; charset=utf-8');
    const lines = Buffer.from(doc.content[0].attachment.data, 'base64').toString('utf8').split('\n');
    expect(lines).toHaveLength(29);
    expect(lines[0]).toBe('Toilet cylinder crackers model step-mother visor opening communication');
    expect(doc.id).toBe(resourceId('m1', 'DocumentReference', 'doc:|2RWRVAJ627408'));
    expect(segmentPaths(doc)).toContain('OBX[29]');

    const ed = one(convertValidated(load('MDM-T02-01.hl7')), 'DocumentReference');
    expect(ed).toEqual(expect.objectContaining({ masterIdentifier: { value: '1.2.840.317.5947431.51.20080131160038' }, docStatus: 'final', date: '2008-01-31T15:55:00+02:15' }));
    expect(ed.content).toEqual([{ attachment: { contentType: 'application/pdf' } }]);

    const mdm = (txa: string, obx: string) =>
      one(convertValidated(Hl7Message.parse(`MSH|^~\\&|A|B|C|D|20260101120000||MDM^T04|M-1|P|2.5\rPID|1||P1^^^H1^MR\r${txa}\r${obx}`)), 'DocumentReference');
    const obsolete = mdm('TXA|1|CN|TX|20260101120000||||||||D-9|||||LA||OB', 'OBX|1|ED|DOC^doc^L||^application^pdf^Base64^SGVsbG8=||||||F\r');
    expect(obsolete).toEqual(expect.objectContaining({ status: 'superseded', docStatus: 'final', date: '2026-01-01T12:00:00+08:00' }));
    expect(obsolete.content).toEqual([{ attachment: { contentType: 'application/pdf', data: 'SGVsbG8=' } }]);
    const empty = mdm('TXA|1|CN|TX|202601', '');
    expect(empty.date).toBeUndefined(); // not an instant
    expect(empty.content[0].attachment.extension[0].valueCode).toBe('unknown');
  });

  test('VXU^V04: Immunization from RXA + RXR, id from ORC-3, manufacturer Organization, administering performer', () => {
    const bundle = convertValidated(load('IZ_1_1.1_Admin_Child_Max_Message.hl7'));
    const imm = one(bundle, 'Immunization');
    expect(imm).toEqual(
      expect.objectContaining({
        status: 'completed',
        occurrenceDateTime: '2012-08-14',
        lotNumber: 'Z0860BB',
        expirationDate: '2012-11-04',
        primarySource: true,
        patient: ref(one(bundle, 'Patient')),
      }),
    );
    expect(imm.vaccineCode.coding[0]).toEqual({ system: 'http://hl7.org/fhir/sid/cvx', code: '140', display: 'Influenza, seasonal, injectable, preservative free' });
    expect(imm.doseQuantity).toEqual(expect.objectContaining({ value: 0.5, system: 'http://unitsofmeasure.org', code: 'mL' }));
    expect(imm.route.coding[0]).toEqual(expect.objectContaining({ system: 'http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl', code: 'C28161' })); // NCIT
    expect(imm.site.coding[0].code).toBe('LD');
    expect(imm.performer[0].function.coding[0].code).toBe('AP');
    expect(resource(bundle, imm.performer[0].actor).identifier[0].value).toBe('7832-1');
    expect(resource(bundle, imm.manufacturer)).toEqual(expect.objectContaining({ name: 'CSL Behring', identifier: [{ system: 'http://terminology.hl7.org/CodeSystem/MVX', value: 'CSL' }] }));
    expect(imm.identifier[0].value).toBe('IZ-783274');
    expect(ofType(bundle, 'ServiceRequest')).toEqual([]);
    // the OBX after RXA (funding eligibility, VIS dates) are Observations part of that dose
    const obs = ofType(bundle, 'Observation');
    expect(obs.length).toBeGreaterThan(0);
    for (const o of obs) expect(o.partOf).toEqual([ref(imm)]);
    expect(obs.map((o) => (o.code as { coding: Array<{ code: string }> }).coding[0]!.code)).toContain('64994-7');
    const v04 = one(convertValidated(load('VXU-V04-01.hl7')), 'Immunization');
    expect(v04).toEqual(expect.objectContaining({ lotNumber: '315841', expirationDate: '2021-12-16', status: 'completed' }));
    expect(v04.vaccineCode.coding[0].code).toBe('49281021588');

    const vxu = (rxa: string) => one(convertValidated(Hl7Message.parse(`MSH|^~\\&|A|B|C|D|20260101120000||VXU^V04|V-1|P|2.5\rPID|1||P1^^^H1^MR\r${rxa}\r`)), 'Immunization');
    const refused = vxu('RXA|0|1|20260101||08^HepB^CVX|999|||01|||||||||00^Parental decision^NIP002||RE');
    expect(refused.status).toBe('not-done');
    expect(refused.doseQuantity).toBeUndefined();
    expect(refused.primarySource).toBe(false);
    expect(refused.statusReason.coding[0].code).toBe('00');
    expect(refused.id).toBe(resourceId('m1', 'Immunization', 'imm:mrn:urn:yilian:m1:id:H1|P1|http://hl7.org/fhir/sid/cvx|08|2026-01-01'));
    const partial = vxu('RXA|0|1|20260101||08^HepB^CVX|0.25|mL^mL^UCUM||00|||||||||||PA');
    expect(partial).toEqual(expect.objectContaining({ status: 'completed', isSubpotent: true }));
    expect(vxu('RXA|0|1|20260101||08^HepB^CVX|0.5|mL^mL^UCUM||00|||||||||||CP|D').status).toBe('entered-in-error');
  });

  test('ADT^A40: the retired Patient (MRG-1) is inactive and replaced-by the survivor, which replaces it', () => {
    const bundle = convertValidated(load('ADT-A40-01.hl7'));
    const patients = ofType(bundle, 'Patient') as any[];
    expect(patients).toHaveLength(2);
    const [survivor, retired] = patients;
    expect(survivor.identifier[0].value).toBe('12345');
    expect(survivor.link).toEqual([{ other: ref(retired), type: 'replaces' }]);
    expect(retired).toEqual(expect.objectContaining({ active: false, link: [{ other: ref(survivor), type: 'replaced-by' }] }));
    expect(retired.identifier[0].value).toBe('56789');
    expect(retired.id).toBe(resourceId('m1', 'Patient', 'mrn:urn:yilian:m1:id:BCBS|56789'));
    expect(segmentPaths(retired)).toEqual(['MRG-1']);
    // the retired id is the one that patient had before the merge
    const before = one(convertValidated(Hl7Message.parse('MSH|^~\\&|A|B|C|D|20260101120000||ADT^A08|X-1|P|2.5\rPID|1||56789^^^BCBS^MR\r')), 'Patient');
    expect(before.id).toBe(retired.id);
    for (const event of ['A34', 'A39', 'A47']) {
      const p = ofType(convertValidated(Hl7Message.parse(`MSH|^~\\&|A|B|C|D|20260101120000||ADT^${event}|X-2|P|2.5\rPID|1||1^^^H^MR\rMRG|2^^^H^MR\r`)), 'Patient') as any[];
      expect(p.map((x) => x.link[0].type)).toEqual(['replaces', 'replaced-by']);
    }
  });
});
