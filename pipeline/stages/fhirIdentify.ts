/**
 * Stage "identify", FHIR branch: a Patient from a member's FHIR server is a source patient of that
 * member (its MR-typed identifier, else the first identifier, else `fhir:<server>|<id>`), with the
 * demographics it states; any other resource changes only its own record. The event time is
 * meta.lastUpdated (newer versions win in merge, whatever the arrival order). Pure; after the merge,
 * the Patient's source patient is linked in the patient index like an HL7 one (`sourcesToLink`
 * in ./identify, which reads only `patient`).
 */
import type { Patient } from 'fhir/r4';
import type { SourceDemographics } from './identify';
import type { PatientRef } from '../../mappings/hl7v2/header';
import type { ConvertedFhirResource } from './fhirConvert';

export interface IdentifiedFhirResource extends ConvertedFhirResource {
  mappingVersions: string[];
  eventType: string;
  eventTime?: Date;
  patient?: PatientRef & { demographics: SourceDemographics };
}

export function fhirIdentifyStage(mapped: ConvertedFhirResource & { mappingVersions: string[] }, server: string): IdentifiedFhirResource {
  const source = mapped.parsed.resource;
  const lastUpdated = source.meta?.lastUpdated;
  const eventTime = lastUpdated && !Number.isNaN(Date.parse(lastUpdated)) ? new Date(lastUpdated) : undefined;
  const eventType = `FHIR:${source.resourceType}`;
  if (source.resourceType !== 'Patient') return { ...mapped, eventType, eventTime };
  const patient = source as Patient & { id: string };
  const identifiers = patient.identifier ?? [];
  const mr = identifiers.find((i) => i.type?.coding?.some((c) => c.code === 'MR') && i.value) ?? identifiers.find((i) => i.value);
  const ref = mr?.value ? { mrn: mr.value, authority: mr.system ?? '' } : { mrn: `fhir:${server}|${patient.id}`, authority: '' };
  return { ...mapped, eventType, eventTime, patient: { ...ref, demographics: patientDemographics(patient) } };
}

/** A FHIR Patient's demographics as the patient index reads them (also Patient/$match's input, api/fhir.ts). */
export function patientDemographics(patient: Patient): SourceDemographics {
  const name = patient.name?.find((n) => n.use === 'official') ?? patient.name?.[0];
  const address = patient.address?.[0];
  const demographics: SourceDemographics = {
    family: name?.family,
    given: name?.given?.join(' '),
    birthDate: patient.birthDate?.replace(/-/g, ''),
    sex: patient.gender,
    // As the HL7 v2 branch: the street part, with city and postcode as fields of their own.
    address: address ? [...(address.line ?? []), address.district].filter(Boolean).join(' ') || address.text || undefined : undefined,
    city: address?.city,
    postcode: address?.postalCode,
    phone: patient.telecom?.find((t) => t.system === 'phone' && t.value)?.value,
    email: patient.telecom?.find((t) => t.system === 'email' && t.value)?.value,
  };
  return Object.fromEntries(Object.entries(demographics).filter(([, v]) => v !== undefined)) as SourceDemographics;
}
