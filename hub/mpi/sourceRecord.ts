/**
 * A source patient as the index reads it: the row of `source_patient` (the merge stage's output)
 * with the member's converted Patient resource, and the record the matcher sees. Shared by every
 * reader of source patients (sync, the pipeline's link, re-matching, training); it writes nothing.
 */
import type { PersonRecord } from './features';

const RESIDENT_ID_SYSTEM = 'urn:oid:2.16.156.10011.1.3';

export interface SourceRow {
  member_id: string;
  mrn: string;
  demographics: Record<string, string>;
  event_time: Date | null;
  merged_into: string | null;
  updated_at: Date;
  /** updated_at to the microsecond (a JS Date drops them, and the row would stay "changed" for ever). */
  updated_text: string;
  patient: { id?: string; identifier?: Array<{ system?: string; value?: string }>; name?: Array<{ family?: string; given?: string[] }> } | null;
  /** Already in the index (else: a new source, matched in bulk). */
  known?: boolean;
}

/** A source patient as the matcher sees it: the member's demographics, the resident ID from its converted Patient. */
export function recordOfSource(row: Pick<SourceRow, 'member_id' | 'mrn' | 'demographics' | 'patient'>): PersonRecord {
  const d = row.demographics ?? {};
  // The member's configured resident-ID field (system set by the converter), else any other
  // identifier shaped like one (a member whose PID-19 mapping is not configured yet).
  const ids = (row.patient?.identifier ?? []).filter((i) => i.value && i.value !== row.mrn);
  const rid = ids.find((i) => i.system === RESIDENT_ID_SYSTEM)?.value ?? ids.find((i) => /^\d{17}[\dXx]$/.test(i.value!))?.value;
  const name = row.patient?.name?.[0];
  return {
    id: `${row.member_id}|${row.mrn}`,
    family: d.family ?? name?.family,
    given: d.given ?? name?.given?.join(' '),
    birthDate: d.birthDate,
    sex: d.sex,
    residentId: d.residentId ?? rid,
    phone: d.phone,
    address: d.address,
  };
}

export const SOURCE_SELECT = `
  SELECT sp.member_id, sp.mrn, sp.demographics, sp.event_time, sp.merged_into, sp.updated_at, sp.updated_at::text AS updated_text,
         (SELECT r.content FROM resource r
           WHERE r.resource_type = 'Patient' AND r.member_id = sp.member_id
             AND r.content->'identifier' @> jsonb_build_array(jsonb_build_object('value', sp.mrn))
           ORDER BY (r.content->>'active') = 'false', r.updated_at DESC LIMIT 1) AS patient
    FROM source_patient sp`;
