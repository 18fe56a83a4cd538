/**
 * A source patient as the index reads it: the row of `source_patient` (the merge stage's output)
 * with the member's converted Patient resource, and the record the matcher sees. Shared by every
 * reader of source patients (sync, the pipeline's link, re-matching, training); it writes nothing.
 */
import type { PersonRecord } from './features';
import { encodeIdentity, identityTable, type IdentityTable, type StatedIdentifier } from './identity';

/**
 * Bumped when `recordOfSource` reads more or differently: sources matched with an older version
 * are matched again by the next sync (`mpi_source.record_version`, migration 19), so a hub's
 * existing records gain what the new version reads. 2: identities of every type, e-mail, city,
 * postcode, the generational suffix and the member's country (2026-12-07). 3: identifiers from the
 * demographics too (a later message's Patient may state the record number only).
 */
export const RECORD_VERSION = 3;

interface FhirIdentifier {
  system?: string;
  value?: string;
  type?: { coding?: Array<{ system?: string; code?: string }>; text?: string };
}

export interface SourceRow {
  member_id: string;
  mrn: string;
  demographics: Record<string, string>;
  event_time: Date | null;
  merged_into: string | null;
  updated_at: Date;
  /** updated_at to the microsecond (a JS Date drops them, and the row would stay "changed" for ever). */
  updated_text: string;
  patient: {
    id?: string;
    identifier?: FhirIdentifier[];
    name?: Array<{ use?: string; family?: string; given?: string[]; suffix?: string[] }>;
    telecom?: Array<{ system?: string; value?: string }>;
    address?: Array<{ line?: string[]; city?: string; district?: string; postalCode?: string }>;
  } | null;
  /** Already in the index (else: a new source, matched in bulk). */
  known?: boolean;
}

/**
 * A source patient as the matcher sees it: the member's demographics (merged field by field by
 * event time: pipeline/stages/merge.ts) and, from its converted Patient, every identifier placed
 * in its identity system (hub/mpi/identity.ts: resident ID, passports, permits, SSN, licences,
 * insurance numbers — not the member's own record number), the generational suffix, and what the
 * demographics of an older version did not carry (e-mail, city, postcode). The same function for
 * HL7 v2 and FHIR members, the sync, the pipeline's link and the benchmark (bench/mpiRecords.ts).
 */
export function recordOfSource(row: Pick<SourceRow, 'member_id' | 'mrn' | 'demographics' | 'patient'>, table: IdentityTable = identityTable()): PersonRecord {
  const d = row.demographics ?? {};
  const patient = row.patient;
  const stated: StatedIdentifier[] = [
    ...(patient?.identifier ?? []).filter((i) => i.value && i.value !== row.mrn).map((i) => ({ value: i.value!, type: i.type?.coding?.find((c) => c.code)?.code, authority: i.system })),
    // What the member's messages stated, kept field by field (pipeline/stages/identify.ts): the
    // converted Patient is the latest message's, whose PID may carry the record number only.
    ...demographicIdentifiers(d.identifiers),
  ];
  const identities = table.identities(row.member_id, stated, row.mrn);
  // The resident ID has its own field (its check character, birth date and sex are read there).
  const rid = identities.find((i) => i.system === 'cn-resident');
  // A licence read from PID-20 knows its issuing state (DLN-2); the converted Patient's copy does not.
  const licensed = new Set(identities.filter((i) => i.system.startsWith('dl:') && i.system !== 'dl:unknown').map((i) => i.value));
  const others = identities.filter((i) => i.system !== 'cn-resident' && !(i.system === 'dl:unknown' && licensed.has(i.value))).map(encodeIdentity).sort();
  const name = patient?.name?.find((n) => n.use === 'official') ?? patient?.name?.[0];
  const suffix = name?.suffix?.find((x) => /^(jr|jnr|sr|snr|ii|iii|iv|2nd|3rd|4th|junior|senior)\.?$/i.test(x.trim()));
  const address = patient?.address?.[0];
  const record: PersonRecord = {
    id: `${row.member_id}|${row.mrn}`,
    family: d.family ?? name?.family,
    given: d.given ?? name?.given?.join(' '),
    birthDate: d.birthDate,
    sex: d.sex,
    residentId: d.residentId ?? rid?.value,
    phone: d.phone,
    email: d.email ?? patient?.telecom?.find((t) => t.system === 'email' && t.value)?.value,
    address: d.address,
    city: d.city ?? address?.city,
    postcode: d.postcode ?? address?.postalCode,
    ...(others.length ? { identities: others } : {}),
    ...(suffix ? { suffix: suffix.replace(/\./g, '').toLowerCase() } : {}),
  };
  const country = table.countryOf(row.member_id);
  if (country !== 'CN') record.country = country;
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as unknown as PersonRecord;
}

export const SOURCE_SELECT = `
  SELECT sp.member_id, sp.mrn, sp.demographics, sp.event_time, sp.merged_into, sp.updated_at, sp.updated_at::text AS updated_text,
         (SELECT r.content FROM resource r
           WHERE r.resource_type = 'Patient' AND r.member_id = sp.member_id
             AND r.content->'identifier' @> jsonb_build_array(jsonb_build_object('value', sp.mrn))
           ORDER BY (r.content->>'active') = 'false', r.updated_at DESC LIMIT 1) AS patient
    FROM source_patient sp`;

function demographicIdentifiers(json: string | undefined): StatedIdentifier[] {
  if (!json) return [];
  try {
    const parsed = JSON.parse(json) as unknown;
    return Array.isArray(parsed) ? parsed.filter((i): i is StatedIdentifier => typeof i?.value === 'string' && i.value !== '') : [];
  } catch {
    return []; // stored by a newer or older reader in another shape: the Patient's identifiers still count
  }
}
