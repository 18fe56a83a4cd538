/**
 * Labelled records through the production path: each record is written as the message a member
 * would send — an HL7 v2 ADT^A04 (PID-3 repetitions with their types and authorities, PID-5 with
 * the suffix in XPN-4, PID-11, PID-13 phone and e-mail, PID-19, PID-20) or a FHIR Patient — and read
 * by the pipeline's own stages (parse → convert → identify, or fhirIdentify) and then by
 * `recordOfSource`, exactly as the sync reads a source patient. So the benchmark measures the
 * matcher users get, not a richer in-memory record.
 */
import type { Patient } from 'fhir/r4';
import type { PersonRecord } from '../hub/mpi/features';
import { IdentityTable, type StatedIdentifier } from '../hub/mpi/identity';
import { recordOfSource, type SourceRow } from '../hub/mpi/sourceRecord';
import { parseStage } from '../pipeline/stages/parse';
import { convertStage } from '../pipeline/stages/convert';
import { identifyStage } from '../pipeline/stages/identify';
import { fhirIdentifyStage } from '../pipeline/stages/fhirIdentify';
import type { LabelledRecord } from './mpiData';

const RESIDENT_ID_AUTHORITY = '&2.16.156.10011.1.3&ISO';

function esc(value: string | undefined): string {
  return (value ?? '').replace(/\\/g, '\\E\\').replace(/\|/g, '\\F\\').replace(/\^/g, '\\S\\').replace(/&/g, '\\T\\').replace(/~/g, '\\R\\').replace(/[\r\n]/g, ' ');
}

/** HL7 birth date: digits only (the pipeline drops one it cannot read, as it would from a member). */
function hl7Date(value: string | undefined): string {
  return (value ?? '').replace(/[-/.\s]/g, '');
}

/** The ADT^A04 a member would send for this record. */
export function hl7Of(r: LabelledRecord, member: string, mrn: string): string {
  const ids = [`${esc(mrn)}^^^${esc(member)}^MR`];
  if (r.residentId) ids.push(`${esc(r.residentId)}^^^${RESIDENT_ID_AUTHORITY}^NNCHN`);
  let ssn = '';
  let dl = '';
  for (const id of r.stated ?? []) {
    if (id.type === 'SS' && !id.authority && !ssn) ssn = esc(id.value);
    else if (id.type === 'DL' && !dl) dl = `${esc(id.value)}^${esc(id.authority)}`;
    else ids.push(`${esc(id.value)}^^^${esc(id.authority)}^${esc(id.type)}`);
  }
  // FEBRL's soc_sec_id: a hand-typed national number without a check, under the member's
  // authority SOCSEC, which the bench's identity table maps to system `other` (evidence by weight only).
  if (r.otherId) ids.push(`${esc(r.otherId)}^^^SOCSEC^SS`);
  const telecom = [r.phone ? `${esc(r.phone)}^PRN^PH` : '', r.email ? `^NET^Internet^${esc(r.email)}` : ''].filter(Boolean).join('~');
  const address = r.address || r.city || r.postcode ? `${esc(r.address)}^^${esc(r.city)}^^${esc(r.postcode)}^^H` : '';
  const name = `${esc(r.family)}^${esc(r.given)}^^${esc(r.suffix)}`;
  const sex = r.sex ? (/^(m|male|1|男)$/i.test(r.sex) ? 'M' : /^(f|female|2|女)$/i.test(r.sex) ? 'F' : 'U') : '';
  const pid = ['PID', '1', '', ids.join('~'), '', name, '', hl7Date(r.birthDate), sex, '', '', address, '', telecom, '', '', '', '', '', ssn, dl];
  return [
    `MSH|^~\\&|HIS|${esc(member)}|YILIAN|HUB|20260101120000||ADT^A04^ADT_A01|${esc(mrn)}|P|2.5|||||||UNICODE UTF-8`,
    'EVN|A04|20260101120000',
    pid.join('|'),
    'PV1|1|O',
  ].join('\r');
}

/** A source patient as the merge stage leaves it: the member's demographics and its converted Patient. */
export type SourceOfRecord = Pick<SourceRow, 'member_id' | 'mrn' | 'demographics' | 'patient'>;

/** The source patient of this registration, sent as HL7 v2 by `member` under `mrn`: parse → convert → identify. */
export function sourceViaHl7(r: LabelledRecord, member: string, mrn: string): SourceOfRecord {
  const parsed = parseStage({ bytes: Buffer.from(hl7Of(r, member, mrn), 'utf8'), policy: { defaultCharset: 'UTF-8' } });
  const converted = convertStage(parsed, { memberId: member, channelId: 'bench', rawId: 1, utcOffsetMinutes: 480 });
  const identified = identifyStage({ ...converted, mappingVersions: [], unmappedCount: 0 }, 480);
  const patient = converted.resources.find((x) => x.resourceType === 'Patient') as SourceRow['patient'];
  return { member_id: member, mrn, demographics: (identified.patient?.demographics ?? {}) as Record<string, string>, patient };
}

/** The record the index reads for this registration, sent as HL7 v2 by `member` under `mrn`. */
export function recordViaHl7(r: LabelledRecord, member: string, mrn: string, table: IdentityTable): PersonRecord {
  return recordOfSource(sourceViaHl7(r, member, mrn), table);
}

/** The FHIR Patient a member's server would hold for this record. */
export function fhirOf(r: LabelledRecord, mrn: string): Patient & { id: string } {
  const identifier: NonNullable<Patient['identifier']> = [{ system: 'urn:member:mrn', value: mrn, type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } }];
  if (r.residentId) identifier.push({ system: 'urn:oid:2.16.156.10011.1.3', value: r.residentId });
  for (const id of r.stated ?? []) identifier.push({ ...(id.authority ? { system: id.authority } : {}), value: id.value, ...(id.type ? { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: id.type }] } } : {}) });
  if (r.otherId) identifier.push({ system: 'SOCSEC', value: r.otherId, type: { coding: [{ code: 'SS' }] } });
  const telecom: NonNullable<Patient['telecom']> = [];
  if (r.phone) telecom.push({ system: 'phone', value: r.phone });
  if (r.email) telecom.push({ system: 'email', value: r.email });
  const birth = hl7Date(r.birthDate);
  const sex = r.sex ? (/^(m|male|1|男)$/i.test(r.sex) ? 'male' : /^(f|female|2|女)$/i.test(r.sex) ? 'female' : 'unknown') : undefined;
  return {
    resourceType: 'Patient',
    id: mrn,
    identifier,
    name: [{ ...(r.family ? { family: r.family } : {}), ...(r.given ? { given: [r.given] } : {}), ...(r.suffix ? { suffix: [r.suffix] } : {}) }],
    ...(/^\d{8}$/.test(birth) ? { birthDate: `${birth.slice(0, 4)}-${birth.slice(4, 6)}-${birth.slice(6, 8)}` } : {}),
    ...(sex ? { gender: sex as Patient['gender'] } : {}),
    ...(telecom.length ? { telecom } : {}),
    ...(r.address || r.city || r.postcode ? { address: [{ ...(r.address ? { line: [r.address] } : {}), ...(r.city ? { city: r.city } : {}), ...(r.postcode ? { postalCode: r.postcode } : {}) }] } : {}),
  };
}

/** The source patient of this registration, sent as a FHIR Patient by `member`'s server: fhirIdentify. */
export function sourceViaFhir(r: LabelledRecord, member: string, mrn: string): SourceOfRecord {
  const resource = fhirOf(r, mrn);
  const identified = fhirIdentifyStage({ parsed: { resource } as never, resources: [resource as never], hubId: mrn, sourceVersion: '1', mappingVersions: [] }, 'bench');
  return { member_id: member, mrn, demographics: (identified.patient?.demographics ?? {}) as Record<string, string>, patient: resource as SourceRow['patient'] };
}

/** The record the index reads for this registration, sent as a FHIR Patient by `member`'s server. */
export function recordViaFhir(r: LabelledRecord, member: string, mrn: string, table: IdentityTable): PersonRecord {
  return recordOfSource(sourceViaFhir(r, member, mrn), table);
}

/**
 * Every labelled record as the merge stage leaves it (null: a message the pipeline would
 * quarantine, which never reaches the index): the member is the record id's prefix (`m1:17`), else
 * one of three; the MRN is `MRN<index>`; every `fhirEvery`-th record comes by FHIR.
 */
export function productionSources(records: LabelledRecord[], options: { fhirEvery?: number } = {}): Array<SourceOfRecord | null> {
  return records.map((r, i) => {
    const prefix = /^(m\d+|[a-z]{2}):/.exec(r.id)?.[1];
    const member = prefix ?? `m${(i % 3) + 1}`;
    const mrn = `MRN${i}`;
    try {
      const viaFhir = options.fhirEvery !== undefined && i % options.fhirEvery === 0;
      return viaFhir ? sourceViaFhir(r, member, mrn) : sourceViaHl7(r, member, mrn);
    } catch {
      return null;
    }
  });
}

/** Every labelled record as the index reads it (`productionSources`, then `recordOfSource`); a record the pipeline could not read has nothing (never linked). */
export function productionRecords(records: LabelledRecord[], options: { table?: IdentityTable; fhirEvery?: number } = {}): { records: PersonRecord[]; failed: number } {
  const table = options.table ?? new IdentityTable();
  const sources = productionSources(records, options);
  return {
    records: sources.map((s, i) => (s ? { ...recordOfSource(s, table), id: records[i]!.id } : { id: records[i]!.id })),
    failed: sources.filter((s) => !s).length,
  };
}

export type { StatedIdentifier };
