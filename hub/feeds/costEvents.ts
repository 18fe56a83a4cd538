/**
 * The cost event: one service the alliance delivered, as the cost-accounting system receives it.
 * This zod schema is the single source of the event's shape: the builder validates every event
 * against it before appending, and the published JSON Schema (`GET /feeds/cost/schema`) is
 * generated from it. Owns the shape and its CSV projection; never holds identities — the patient is
 * a keyed pseudonym (hub/feeds/pseudonym.ts), and no field may carry a name, resident ID, phone,
 * address or MRN.
 *
 * Versioning: COST_EVENT_SCHEMA_VERSION changes with any change of shape (semver: a new optional
 * field is a minor version, a removed or retyped field a major one). Every event carries the
 * version it was written with; history is never rewritten, so old events keep their version.
 */
import { z } from 'zod';

export const COST_EVENT_SCHEMA_VERSION = '1.0.0';

export const costEventKinds = ['encounter', 'lab-test', 'imaging-exam', 'procedure', 'charge', 'referral', 'outreach-session', 'device-usage'] as const;
export type CostEventKind = (typeof costEventKinds)[number];

const coding = z
  .object({
    system: z.string().nullable().describe('Code system URI (ICD-11 MMS, LOINC, the member\'s local charge code system …).'),
    code: z.string(),
    display: z.string().nullable().optional(),
  })
  .strict();

export const costEventSchema = z
  .object({
    schemaVersion: z.string().describe('Version of this schema the event was written with.'),
    id: z.string().describe('Stable event id (never reused).'),
    cursor: z.number().int().positive().describe('Position in the feed: strictly increasing in commit order; read with GET /feeds/cost?after=<cursor>.'),
    kind: z.enum(costEventKinds),
    status: z.enum(['active', 'void']).describe('void: the source no longer yields this service (e.g. an appointment cancelled); always a correction of an earlier event.'),
    occurredAt: z.string().nullable().describe('When the service took place (ISO 8601 with offset).'),
    localDate: z.string().nullable().describe('The day of occurredAt in the member\'s time zone (YYYY-MM-DD).'),
    member: z.string().describe('The member that delivered the service.'),
    memberTier: z.enum(['tertiary', 'secondary', 'primary', 'unknown']),
    department: z.string().nullable().describe('The member\'s department (hospital service or point of care) of the visit.'),
    patientKey: z.string().nullable().describe('Pseudonymous patient key: HMAC-SHA256 (hex) of the golden patient id under the hub\'s feed secret. Equal for the same person across members and events; null when the patient is not yet in the patient index.'),
    diagnosis: coding.nullable().describe('ICD-11 MMS principal diagnosis of the visit (null when the visit has no ICD-11-coded diagnosis).'),
    serviceCode: coding.nullable().describe('Shared service code: LOINC for tests, the imaging or charge code, the encounter class.'),
    sourceStatus: z.string().nullable().describe('Status of the source record (final, corrected, amended, billable, booked …): a corrected result is a correction event even when nothing else changed.'),
    quantity: z.number().nullable().describe('How many (minutes for device-usage).'),
    unit: z.string().nullable().describe('Unit of quantity: "1" or "min".'),
    unitPrice: z.number().nullable().describe('Price of one unit: from the charge itself, else the member\'s price list in force then; null when unknown.'),
    currency: z.string().nullable(),
    resources: z
      .object({
        device: z.string().nullable().describe('Device resource id (the member\'s shared scanner).'),
        deviceName: z.string().nullable(),
        modality: z.string().nullable(),
        practitioner: z.string().nullable().describe('Practitioner resource id of the hub record.'),
        practitionerKey: z.string().nullable().describe('Cross-member identity of the practitioner: assigning authority | staff number.'),
        location: z.string().nullable().describe('Location (ward, room, bed) resource id.'),
      })
      .strict(),
    referral: z
      .object({
        direction: z.enum(['up', 'down', 'lateral']),
        fromMember: z.string(),
        toMember: z.string(),
      })
      .strict()
      .nullable()
      .describe('For referral events: direction by member tiers (up: to a higher tier).'),
    duplicate: z
      .object({ repeat: z.boolean(), earlierMember: z.string().nullable() })
      .strict()
      .nullable()
      .describe('For tests and exams: whether this is a repeat of another member\'s result still inside its recognition window (hub/recognition).'),
    source: z
      .object({
        resourceType: z.string(),
        resourceId: z.string(),
        resourceVersion: z.number().int(),
        rawMessageId: z.number().int().nullable(),
        mappingVersions: z.array(z.string()),
      })
      .strict()
      .describe('Provenance: the hub resource (and its version) the event was derived from, the raw message, the mapping versions.'),
    corrects: z.string().nullable().describe('The id of the event this one corrects (same source, earlier state); null for a first event.'),
    recordedAt: z.string().describe('When the event was appended to the feed.'),
  })
  .strict();

export type CostEvent = z.infer<typeof costEventSchema>;

/** The published JSON Schema of an event (draft 2020-12), with its version. */
export function costEventJsonSchema(): Record<string, unknown> {
  return {
    ...(z.toJSONSchema(costEventSchema) as Record<string, unknown>),
    $id: `https://yilian.example/schemas/cost-event/${COST_EVENT_SCHEMA_VERSION}`,
    title: 'Yilian Hub cost event',
    version: COST_EVENT_SCHEMA_VERSION,
  };
}

/** CSV columns (flattened), in order: the export's header. */
export const costEventCsvColumns = [
  'cursor', 'id', 'kind', 'status', 'occurred_at', 'local_date', 'member', 'member_tier', 'department', 'patient_key',
  'diagnosis_system', 'diagnosis_code', 'service_system', 'service_code', 'source_status', 'quantity', 'unit', 'unit_price', 'currency',
  'device', 'modality', 'practitioner', 'practitioner_key', 'location', 'referral_direction', 'referral_from', 'referral_to',
  'repeat', 'repeat_of_member', 'source_type', 'source_id', 'source_version', 'raw_message_id', 'mapping_versions', 'corrects', 'recorded_at', 'schema_version',
] as const;

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function costEventCsvRow(e: CostEvent): string {
  const values = [
    e.cursor, e.id, e.kind, e.status, e.occurredAt, e.localDate, e.member, e.memberTier, e.department, e.patientKey,
    e.diagnosis?.system, e.diagnosis?.code, e.serviceCode?.system, e.serviceCode?.code, e.sourceStatus, e.quantity, e.unit, e.unitPrice, e.currency,
    e.resources.device, e.resources.modality, e.resources.practitioner, e.resources.practitionerKey, e.resources.location,
    e.referral?.direction, e.referral?.fromMember, e.referral?.toMember,
    e.duplicate ? (e.duplicate.repeat ? 'true' : 'false') : '', e.duplicate?.earlierMember,
    e.source.resourceType, e.source.resourceId, e.source.resourceVersion, e.source.rawMessageId, e.source.mappingVersions.join(' '), e.corrects, e.recordedAt, e.schemaVersion,
  ];
  return values.map(csvCell).join(',');
}
