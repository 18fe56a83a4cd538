/**
 * Stage "merge": apply identified messages to the hub, each atomically with marking its raw message
 * processed. Idempotent: patient_event is keyed by raw id, so a redelivered or replayed message
 * changes nothing twice. Out-of-order safe: each demographic field of a source patient keeps the
 * value of the latest event time that stated it (ties: the later raw id), whatever order messages
 * are applied in, and so does each resource as a whole. A message states only the fields it
 * carries (an ORU has no address): those overwrite if newer, the others are kept.
 *
 * Several messages go in one statement (a "round", `mergeRounds`): one round trip, one commit and
 * one firing of the resource table's statement triggers for all of them, and a resource that every
 * message restates unchanged (the member's Organization, the ward's Location, the attending
 * Practitioner) is written and row-locked once per round, not once per message — those hot rows
 * were where concurrent partitions waited on each other (bench/RESULTS.md, lock-wait sampling).
 */
import { storableJson } from '../../hub/pgErrors';
import type { Sql } from '../../hub/sql';
import type { IdentifiedMessage } from './identify';

export interface MergeContext {
  rawId: number;
  memberId: string;
  charset: string;
}

/** What merge reads of an identified message (HL7 v2 or FHIR branch). */
export type MergeInput = Pick<IdentifiedMessage, 'patient' | 'merge' | 'eventTime' | 'eventType' | 'resources' | 'mappingVersions'>;

/** The message is the source patient's latest as a whole (ties: the later raw id; no time: it applies). */
const WHOLE_NEWER = `(source_patient.event_time IS NULL OR excluded.event_time IS NULL
   OR (excluded.event_time, excluded.last_raw_id) >= (source_patient.event_time, source_patient.last_raw_id))`;
/** Field e.key of the message is newer than what set the stored one (or nothing set it yet). */
const FIELD_NEWER = `(NOT source_patient.demographics ? e.key OR excluded.event_time IS NULL
   OR (excluded.event_time, excluded.last_raw_id) >= (coalesce((source_patient.field_times->e.key->>0)::timestamptz, source_patient.event_time, '-infinity'),
                                                      coalesce((source_patient.field_times->e.key->>1)::bigint, source_patient.last_raw_id)))`;

/** One message of a merge: what it says and where it came from. */
export interface MergeItem {
  message: MergeInput;
  ctx: MergeContext;
}

/** What the statement reads of one message (jsonb_to_recordset below). */
interface MessageRow {
  raw_id: number;
  member_id: string;
  mrn: string | null;
  target_mrn: string;
  authority: string;
  demographics: unknown;
  event_time: Date | null;
  event_type: string;
  charset: string;
  retired_mrn: string | null;
  retired_authority: string;
}

/** One resource to upsert, already JSON text (storable: hub/pgErrors.ts). */
interface ResourceEntry {
  key: string;
  json: string;
  rawId: number;
  memberId: string;
  eventTime: Date | null;
  mappingVersions: string[];
}

/** A message ready for a round: its row, its resources as JSON, and the rows it upserts (its keys). */
export interface PreparedMerge {
  item: MergeItem;
  row: MessageRow;
  resources: ResourceEntry[];
  patientKeys: string[];
}

function prepareMerge(item: MergeItem): PreparedMerge {
  const { message, ctx } = item;
  const patient = message.patient;
  const target = message.merge ? message.merge.survivor : patient;
  const eventTime = message.eventTime ?? null;
  const row: MessageRow = {
    raw_id: ctx.rawId,
    member_id: ctx.memberId,
    mrn: patient?.mrn ?? null,
    target_mrn: target?.mrn ?? '',
    authority: target?.authority ?? '',
    demographics: target?.demographics ?? {},
    event_time: eventTime,
    event_type: message.eventType,
    charset: ctx.charset,
    retired_mrn: message.merge?.retired.mrn ?? null,
    retired_authority: message.merge?.retired.authority ?? '',
  };
  // Every value from the message goes in storable (hub/pgErrors.ts): a NUL in an OBX value, a name
  // or a FHIR string becomes the visible escape `\u0000` in the resource, instead of a jsonb error
  // (22P05) that no retry can cure. The bytes as received stay in the raw store.
  const resources = message.resources.map((resource) => ({
    key: `${resource.resourceType}/${resource.id}`,
    json: storableJson(resource),
    rawId: ctx.rawId,
    memberId: ctx.memberId,
    eventTime,
    mappingVersions: message.mappingVersions,
  }));
  const patientKeys = patient ? [row.target_mrn, ...(row.retired_mrn !== null ? [row.retired_mrn] : [])].map((mrn) => `${ctx.memberId}\0${mrn}`) : [];
  return { item, row, resources, patientKeys };
}

/**
 * Split messages into rounds that one statement each can apply. Within a statement PostgreSQL lets
 * an upsert touch a row once, so a round holds at most one message per source patient (its own or
 * the one a merge retires) and one statement per resource — except a resource several messages
 * state with the same content, which the round writes once with the newest statement's time and raw
 * id (what applying them one by one leaves). A message goes in the round after the last one holding
 * any of its keys, so messages that share a key keep their order.
 */
export function mergeRounds(items: MergeItem[]): PreparedMerge[][] {
  const rounds: PreparedMerge[][] = [];
  const lastPatient = new Map<string, number>();
  const lastResource = new Map<string, { round: number; json: string }>();
  for (const prepared of items.map(prepareMerge)) {
    let round = 0;
    for (const key of prepared.patientKeys) round = Math.max(round, (lastPatient.get(key) ?? -1) + 1);
    for (const { key, json } of prepared.resources) {
      const seen = lastResource.get(key);
      if (seen) round = Math.max(round, seen.json === json ? seen.round : seen.round + 1);
    }
    (rounds[round] ??= []).push(prepared);
    for (const key of prepared.patientKeys) lastPatient.set(key, round);
    for (const { key, json } of prepared.resources) lastResource.set(key, { round, json });
  }
  return rounds;
}

/**
 * Apply one round (mergeRounds) in one statement: atomic for the whole round, so a failure leaves
 * every message of it unprocessed (the runner then merges them one by one, so that one message's
 * bad data fails that message only).
 */
export async function mergeStage(sql: Sql, round: PreparedMerge[]): Promise<void> {
  const resources = new Map<string, ResourceEntry>();
  for (const prepared of round) {
    for (const entry of prepared.resources) {
      const held = resources.get(entry.key);
      // mergeRounds lets a key appear twice in a round only with the same content: the newest statement stays
      if (!held || isNewer(entry, held)) resources.set(entry.key, entry);
    }
  }
  // In key order: rounds of concurrent partitions lock the rows they share (the member's
  // Organization, a ward, a doctor) in one order, so they wait for each other but never deadlock.
  const resourceJson = `[${[...resources.values()]
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map((r) => `{"content":${r.json},"raw_id":${r.rawId},"member_id":${JSON.stringify(r.memberId)},"event_time":${JSON.stringify(r.eventTime)},"mapping_versions":${JSON.stringify(r.mappingVersions)}}`)
    .join(',')}]`;
  await sql.query(
    `WITH message AS (
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS m(raw_id bigint, member_id text, mrn text, target_mrn text, authority text, demographics jsonb,
                                                       event_time timestamptz, event_type text, charset text, retired_mrn text, retired_authority text)
     ), fresh AS (
       SELECT m.* FROM message m WHERE m.mrn IS NOT NULL AND NOT EXISTS (SELECT 1 FROM patient_event e WHERE e.raw_id = m.raw_id)
     ), applied AS (
       -- Event time wins per field (field_times: each field's [event time, raw id]): a late older
       -- message changes only the fields no newer message has stated, so a source patient ends in
       -- the same state whatever order its messages arrive in (and the patient index matches that).
       INSERT INTO source_patient (member_id, mrn, authority, demographics, event_time, last_raw_id, field_times)
       SELECT f.member_id, f.target_mrn, f.authority, f.demographics, f.event_time, f.raw_id,
              (SELECT coalesce(jsonb_object_agg(k, jsonb_build_array(f.event_time, f.raw_id)), '{}'::jsonb) FROM jsonb_object_keys(f.demographics) AS k)
         FROM fresh f
       ON CONFLICT (member_id, mrn) DO UPDATE
          SET authority = CASE WHEN ${WHOLE_NEWER} THEN excluded.authority ELSE source_patient.authority END,
              demographics = source_patient.demographics
                || (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}'::jsonb) FROM jsonb_each(excluded.demographics) AS e WHERE ${FIELD_NEWER}),
              field_times = source_patient.field_times
                || (SELECT coalesce(jsonb_object_agg(e.key, jsonb_build_array(excluded.event_time, excluded.last_raw_id)), '{}'::jsonb) FROM jsonb_each(excluded.demographics) AS e WHERE ${FIELD_NEWER}),
              event_time = CASE WHEN ${WHOLE_NEWER} THEN excluded.event_time ELSE source_patient.event_time END,
              last_raw_id = CASE WHEN ${WHOLE_NEWER} THEN excluded.last_raw_id ELSE source_patient.last_raw_id END,
              updated_at = clock_timestamp()
        WHERE ${WHOLE_NEWER}
           OR EXISTS (SELECT 1 FROM jsonb_each(excluded.demographics) AS e WHERE ${FIELD_NEWER} AND source_patient.demographics->e.key IS DISTINCT FROM e.value)
       RETURNING member_id, mrn
     ), logged AS ( -- data-modifying CTEs always run to completion, referenced or not
       INSERT INTO patient_event (raw_id, member_id, mrn, event_type, event_time, applied)
       SELECT f.raw_id, f.member_id, f.mrn, f.event_type, f.event_time, EXISTS (SELECT 1 FROM applied a WHERE a.member_id = f.member_id AND a.mrn = f.target_mrn)
         FROM fresh f
       ON CONFLICT (raw_id) DO NOTHING
       RETURNING 1
     ), retired AS ( -- the patient index follows merged_into
       INSERT INTO source_patient (member_id, mrn, authority, demographics, event_time, last_raw_id, merged_into)
       SELECT f.member_id, f.retired_mrn, f.retired_authority, '{}', f.event_time, f.raw_id, f.target_mrn FROM fresh f WHERE f.retired_mrn IS NOT NULL
       ON CONFLICT (member_id, mrn) DO UPDATE SET merged_into = excluded.merged_into, last_raw_id = excluded.last_raw_id, updated_at = clock_timestamp()
       RETURNING 1
     ), resources AS (
       -- Each converted resource: newer (event time, raw id) wins; the same message again changes nothing.
       INSERT INTO resource (resource_type, id, member_id, content, event_time, raw_id, mapping_versions)
       SELECT r.content->>'resourceType', r.content->>'id', r.member_id, r.content, r.event_time, r.raw_id, r.mapping_versions
         FROM jsonb_to_recordset($2::jsonb) AS r(content jsonb, raw_id bigint, member_id text, event_time timestamptz, mapping_versions text[])
       ON CONFLICT (resource_type, id) DO UPDATE
          -- the retired Patient of a merge (tag link-only, mappings/hl7v2/convert/patientAdministration.ts) keeps what the
          -- stored record says and takes only active and link
          SET content = CASE WHEN excluded.content->'meta'->'tag' @> '[{"system":"urn:yilian:merge","code":"link-only"}]'::jsonb
                             THEN resource.content || jsonb_build_object('active', excluded.content->'active', 'link', excluded.content->'link')
                             ELSE excluded.content END,
              event_time = excluded.event_time, raw_id = excluded.raw_id,
              mapping_versions = excluded.mapping_versions, version = resource.version + 1, updated_at = clock_timestamp()
        WHERE (coalesce(excluded.event_time, '-infinity'), excluded.raw_id) > (coalesce(resource.event_time, '-infinity'), resource.raw_id)
       RETURNING 1
     )
     UPDATE raw_message r SET status = 'processed', processed_at = clock_timestamp(), last_stage = 'merge', charset = m.charset
       FROM message m WHERE r.id = m.raw_id`,
    [storableJson(round.map((p) => p.row)), resourceJson],
    // Prepared: measured 1,058 msg/s end to end against 796 unprepared (the parse and plan of this
    // statement on every call cost more than its large JSON parameter does).
    'merge_round_v1',
  );
}

/** Newer statement: later event time (none counts as oldest), ties broken by the later raw id — the statement's own WHERE. */
function isNewer(a: ResourceEntry, b: ResourceEntry): boolean {
  const ta = a.eventTime?.getTime() ?? -Infinity;
  const tb = b.eventTime?.getTime() ?? -Infinity;
  return ta !== tb ? ta > tb : a.rawId > b.rawId;
}
