/**
 * The cost feed builder: derives cost events from the hub's resource table and appends them to the
 * cost_event log. Owns the derivation rules (which resource yields which event kind, how referral
 * direction, outreach, department and diagnosis are worked out) and the log's write discipline.
 * Never updates or deletes an event (the table refuses it), never reads or writes an identity into
 * an event: patients appear only as the keyed pseudonym of their golden id.
 *
 * Write discipline, the reason a consumer that stores its cursor gets every event exactly once:
 * every append runs in a transaction holding one advisory lock (so builders in several processes
 * run one at a time), and the cursor (seq) is max(seq)+1 read under that lock. The lock is held
 * until commit, so a batch with lower cursors is always committed before any batch with higher
 * ones begins: a reader can never see cursor n+1 while n is still invisible.
 *
 * Incremental and idempotent: resources are read in (updated_at, type, id) order from a watermark
 * (minus an overlap for transactions that committed after their clock time); each (resource,
 * kind) remembers the hash of the content it last produced, so the same state never yields a second
 * event, a changed state yields a correction naming the earlier event, and a resource that no longer
 * yields a kind (a cancelled appointment, a result entered in error) yields a `void` correction.
 *
 * Derivation rules (docs/cost-feed.md):
 * - Encounter → encounter; plus referral when the same golden patient's previous visit within
 *   feeds.cost.referralWindowDays was at another member (direction by tiers) that sends no referral
 *   messages of its own; plus outreach-session
 *   when a practitioner of the visit also works at a tertiary (lead) member and this member is not one.
 * - Observation of a result message (ORU/OUL) or with category laboratory, status final/amended/
 *   corrected → lab-test. DiagnosticReport with an imaging category or an imaging code (the
 *   recognition rules' imaging codes), and ImagingStudy → imaging-exam.
 * - Procedure (completed) → procedure. ChargeItem (billable/billed) → charge.
 * - Appointment with a Device participant, not cancelled → device-usage (quantity: minutes).
 * - ServiceRequest with a referral category (SNOMED CT 3457005) → referral, from the requester's
 *   member to the performer's member (Organizations matched to members by id or name).
 * - A new or changed lab/imaging result also re-derives the published later results of the same
 *   golden patient and code inside the longest window: an earlier result arriving late sets (or,
 *   withdrawn, clears) their duplicate flag by a correction.
 */
import { createHash } from 'node:crypto';
import { utcOffsetOf, type HubConfig } from '../config';
import type { HubDb, Sql } from '../sql';
import { HubError } from '../../mappings/outcome';
import { ICD11_MMS, LOINC } from '../../mappings/terminology/systems';
import { syncPatientIndex } from '../mpi/sync';
import { priceAt } from '../recognition/config';
import { repeatsOf } from '../recognition/duplicates';
import { analytes } from '../../mappings/terminology/analytes';
import { listRules } from '../recognition/rules';
import { syncRecognitionIndex } from '../recognition/resultIndex';
import { COST_EVENT_SCHEMA_VERSION, costEventSchema, type CostEvent, type CostEventKind } from './costEvents';
import { feedSecret, pseudonymiser, type Pseudonymiser } from './pseudonym';
import { runPeriodically } from '../periodic';

/** pg advisory lock of the feed's writers (one builder at a time, cursors in commit order). */
export const COST_FEED_LOCK = 7317008;
/** Re-read this much before the watermark: pipeline transactions commit a little after their updated_at. */
const OVERLAP_MS = 60_000;
/** A resource whose patient is still unknown after this long is appended without a patient key. */
const PENDING_LIMIT_MS = 24 * 3600_000;

const SOURCE_TYPES = ['Encounter', 'Observation', 'DiagnosticReport', 'ImagingStudy', 'Procedure', 'ChargeItem', 'Appointment', 'ServiceRequest'];
const TIER_RANK: Record<string, number> = { tertiary: 3, secondary: 2, primary: 1, unknown: 0 };
/**
 * A ServiceRequest that is a referral: SNOMED CT 3457005 "Patient referral", or the v2-to-FHIR IG's
 * category for RF1 (REF^I12–I15).
 */
const REFERRAL_CATEGORIES = new Set(['http://snomed.info/sct|3457005', 'http://example.com/v2-to-fhir-converter/CodeSystem/additional-service-request-category-codes|patient-referral-request']);
const IMAGING_CATEGORIES = new Set(['RAD', 'IMG', 'CT', 'MR', 'MRI', 'US', 'XR', 'NMR', 'CUS', 'RX', 'DX', 'IMAGING']);

type Json = Record<string, any>; // FHIR content as stored

interface SourceRow {
  resource_type: string;
  id: string;
  member_id: string;
  version: number;
  content: Json;
  event_time: Date | null;
  raw_id: number | null;
  mapping_versions: string[];
  updated_at: Date;
  /** updated_at exactly (microseconds; a JS Date keeps milliseconds): the keyset and the seen-state compare on it. */
  updated_at_exact: string;
  message_type: string | null;
  pending_since: Date | null;
}

export interface BuildSummary {
  scanned: number;
  appended: number;
  corrections: number;
  voided: number;
  pending: number;
  lastCursor: number;
}

export interface BuildOptions {
  /** Resources per transaction. */
  batch?: number;
  /** The pseudonym secret; default: from configuration (hub/feeds/pseudonym.ts). */
  secret?: Buffer;
  /** Bring the patient index and the recognition index up to date first (default true), so events get their golden patient and their duplicate flag. */
  syncPatients?: boolean;
  now?: () => Date;
}

/** Build the feed up to date; safe to run from several processes at once (they take turns). */
export async function buildCostFeed(db: HubDb, config: HubConfig, options: BuildOptions = {}): Promise<BuildSummary> {
  const pseudonym = pseudonymiser(options.secret ?? feedSecret(config, { embedded: db.kind === 'pglite' }));
  if (options.syncPatients !== false) {
    await syncPatientIndex(db, { actor: 'cost-feed' });
    await syncRecognitionIndex(db);
  }
  const batch = options.batch ?? 2000;
  const now = options.now ?? (() => new Date());
  const summary: BuildSummary = { scanned: 0, appended: 0, corrections: 0, voided: 0, pending: 0, lastCursor: 0 };
  // Imaging procedure codes: those the recognition rules call imaging (results messages carry no category).
  const rules = await listRules(db, { all: true });
  const imagingCodes = new Set(rules.filter((r) => r.content.kind === 'imaging').map((r) => r.code));
  // How far after a result its presence can make another member's result a repeat (any rule version).
  const maxWindowDays = Math.max(0, ...rules.map((r) => r.content.windowDays ?? 0));
  // Members that send referral messages (read once per build; a batch adds the senders it holds).
  const referringMembers = new Set(
    (await db.query<{ member_id: string }>(`SELECT DISTINCT member_id FROM cost_event WHERE kind = 'referral' AND source_type = 'ServiceRequest'`)).rows.map((r) => r.member_id),
  );
  let after: { at: string; type: string; id: string } | undefined;
  let retriedPending = false;
  for (;;) {
    const more = await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(${COST_FEED_LOCK})`);
      if (!after) {
        const state = (await tx.query<{ watermark: Date | null }>(`SELECT watermark FROM cost_feed_state WHERE id = 1`)).rows[0];
        after = { at: new Date((state?.watermark?.getTime() ?? 0) - OVERLAP_MS).toISOString(), type: '', id: '' };
      }
      let rows: SourceRow[] = [];
      if (!retriedPending) {
        retriedPending = true;
        rows = (
          await tx.query<SourceRow>(
            `SELECT r.resource_type, r.id, r.member_id, r.version, r.content, r.event_time, r.raw_id, r.mapping_versions, r.updated_at, r.updated_at::text AS updated_at_exact, m.message_type, s.pending_since
               FROM cost_feed_seen s JOIN resource r ON r.resource_type = s.resource_type AND r.id = s.resource_id
               LEFT JOIN raw_message m ON m.id = r.raw_id
              WHERE s.pending_since IS NOT NULL ORDER BY s.pending_since LIMIT $1`,
            [batch],
          )
        ).rows;
      }
      if (!rows.length) {
        rows = (
          await tx.query<SourceRow>(
            `SELECT r.resource_type, r.id, r.member_id, r.version, r.content, r.event_time, r.raw_id, r.mapping_versions, r.updated_at, r.updated_at::text AS updated_at_exact, m.message_type, s.pending_since
               FROM resource r
               LEFT JOIN raw_message m ON m.id = r.raw_id
               LEFT JOIN cost_feed_seen s ON s.resource_type = r.resource_type AND s.resource_id = r.id
              WHERE (r.updated_at, r.resource_type, r.id) > ($1::timestamptz, $2::text, $3::text) AND r.resource_type = ANY($4::text[])
              ORDER BY r.updated_at, r.resource_type, r.id LIMIT $5`,
            [after.at, after.type, after.id, SOURCE_TYPES, batch],
          )
        ).rows;
        if (!rows.length) return false;
        const last = rows[rows.length - 1]!;
        after = { at: last.updated_at_exact, type: last.resource_type, id: last.id };
        // The watermark only moves forward (an overlap re-read must not move it back).
        await tx.query(
          `INSERT INTO cost_feed_state (id, watermark, built_at) VALUES (1, $1, clock_timestamp())
             ON CONFLICT (id) DO UPDATE SET watermark = GREATEST(cost_feed_state.watermark, EXCLUDED.watermark), built_at = EXCLUDED.built_at`,
          [last.updated_at],
        );
      }
      // Already derived in this state (the overlap re-read): skipped without deriving.
      const seen = await seenStates(tx, rows);
      const fresh = rows.filter((r) => r.pending_since || seen.get(`${r.resource_type}/${r.id}`) !== r.updated_at_exact);
      // A new or changed result can make later results of other members repeats (or stop them being):
      // their events are derived again; an unchanged flag hashes the same and appends nothing.
      if (fresh.length) fresh.push(...(await laterResultsOfSameTests(tx, fresh, maxWindowDays)));
      summary.scanned += rows.length;
      if (fresh.length) await deriveAndAppend(db, tx, config, imagingCodes, referringMembers, pseudonym, fresh, summary, now());
      return true;
    });
    if (!more) break;
  }
  summary.lastCursor = Number((await db.query<{ seq: number | null }>(`SELECT max(seq) AS seq FROM cost_event`)).rows[0]?.seq ?? 0);
  return summary;
}

/** Each code of a mass/substance pair with its partner, both ways (two arrays for SQL). */
function pairPartners(): [string[], string[]] {
  const pairs = analytes().flatMap((a) => [[a.mass, a.substance], [a.substance, a.mass]]);
  return [pairs.map((p) => p[0]!), pairs.map((p) => p[1]!)];
}

/**
 * The already-published results that share a golden patient and test (standard code, or either code of a mass/substance pair) with the given
 * changed results and fall inside the longest window after them — after the result's time now or
 * in its last published event (a result whose time moved affects those after its old time too).
 * Only results with an event are returned: the others are derived when the scan reaches them.
 * Keeps the duplicate flag of the feed converging on what repeatsOf says, whatever the arrival order.
 */
async function laterResultsOfSameTests(tx: Sql, changed: SourceRow[], maxWindowDays: number): Promise<SourceRow[]> {
  const tests = changed.filter((r) => ['Observation', 'DiagnosticReport', 'ImagingStudy'].includes(r.resource_type));
  if (!tests.length) return [];
  const found = await tx.query<SourceRow>(
    `WITH changed AS (
       SELECT r.resource_type, r.resource_id, r.code, r.patient_id, r.effective_at FROM recognition_result r
         JOIN unnest($1::text[], $2::text[]) AS k(t, i) ON r.resource_type = k.t AND r.resource_id = k.i
     ), since AS (
       SELECT l.golden_id AS golden, c.code, least(c.effective_at, e.occurred_at) AS t
         FROM changed c
         JOIN mpi_source s ON s.patient_resource_id = c.patient_id
         JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH'
         LEFT JOIN cost_feed_source f ON f.source_type = c.resource_type AND f.source_id = c.resource_id AND f.kind IN ('lab-test', 'imaging-exam')
         LEFT JOIN cost_event e ON e.id = f.last_event_id
     ), later AS (
       SELECT DISTINCT x.resource_type, x.resource_id
         FROM since g
         JOIN mpi_link l ON l.golden_id = g.golden AND l.state = 'MATCH'
         JOIN mpi_source s ON s.member_id = l.member_id AND s.mrn = l.mrn
         -- the same test: the code, or the other code of its mass/substance pair (glucose 2345-7 and 14749-6 are one)
         JOIN recognition_result x ON x.patient_id = s.patient_resource_id
                                  AND (x.code = g.code OR x.code IN (SELECT pp.other FROM unnest($4::text[], $5::text[]) AS pp(code, other) WHERE pp.code = g.code))
                                  AND x.effective_at > g.t AND x.effective_at <= g.t + make_interval(days => $3)
        WHERE EXISTS (SELECT 1 FROM cost_feed_source f WHERE f.source_type = x.resource_type AND f.source_id = x.resource_id)
     )
     SELECT r.resource_type, r.id, r.member_id, r.version, r.content, r.event_time, r.raw_id, r.mapping_versions, r.updated_at, r.updated_at::text AS updated_at_exact, m.message_type, s.pending_since
       FROM later x JOIN resource r ON r.resource_type = x.resource_type AND r.id = x.resource_id
       LEFT JOIN raw_message m ON m.id = r.raw_id
       LEFT JOIN cost_feed_seen s ON s.resource_type = r.resource_type AND s.resource_id = r.id`,
    [tests.map((r) => r.resource_type), tests.map((r) => r.id), maxWindowDays, ...pairPartners()],
  );
  const inBatch = new Set(changed.map((r) => `${r.resource_type}/${r.id}`));
  return found.rows.filter((r) => !inBatch.has(`${r.resource_type}/${r.id}`));
}

async function seenStates(tx: Sql, rows: SourceRow[]): Promise<Map<string, string>> {
  if (!rows.length) return new Map();
  const found = await tx.query<{ resource_type: string; resource_id: string; updated_at: string }>(
    `SELECT s.resource_type, s.resource_id, s.updated_at::text AS updated_at FROM cost_feed_seen s
       JOIN unnest($1::text[], $2::text[]) AS k(t, i) ON s.resource_type = k.t AND s.resource_id = k.i`,
    [rows.map((r) => r.resource_type), rows.map((r) => r.id)],
  );
  return new Map(found.rows.map((r) => [`${r.resource_type}/${r.resource_id}`, r.updated_at]));
}

/** What a batch's derivation needs to know beyond the resources themselves (looked up once per batch). */
interface Context {
  config: HubConfig;
  golden: Map<string, string>;
  encounters: Map<string, Json & { member_id: string }>;
  diagnoses: Map<string, { system: string; code: string; display: string | null }>;
  locations: Map<string, string>;
  practitioners: Map<string, string | null>;
  devices: Map<string, string | null>;
  experts: Set<string>;
  repeats: Map<string, { earlierResourceId: string; earlierMember: string }>;
  imagingCodes: Set<string>;
  /** Organization id → the member it is (by identifier value = member id, or name = member name). */
  organisations: Map<string, string>;
  /** Members that send referral messages: no referral is inferred from their visits (docs/cost-feed.md). */
  referringMembers: Set<string>;
}

type Draft = Omit<CostEvent, 'schemaVersion' | 'id' | 'cursor' | 'corrects' | 'recordedAt' | 'status'>;

const refId = (ref: unknown, type: string): string | undefined => {
  const reference = (ref as { reference?: string } | undefined)?.reference;
  return reference?.startsWith(`${type}/`) ? reference.slice(type.length + 1) : undefined;
};

const subjectOf = (c: Json): string | undefined =>
  refId(c.subject, 'Patient') ?? refId(c.patient, 'Patient') ?? (c.participant as Json[] | undefined)?.map((p) => refId(p.actor, 'Patient')).find(Boolean);

const encounterOf = (type: string, c: Json): string | undefined => (type === 'Encounter' ? undefined : refId(c.encounter, 'Encounter') ?? refId(c.context, 'Encounter'));

function practitionersOf(type: string, c: Json): string[] {
  const refs: unknown[] = [];
  if (type === 'Encounter') for (const p of (c.participant as Json[] | undefined) ?? []) refs.push(p.individual);
  if (type === 'Appointment') for (const p of (c.participant as Json[] | undefined) ?? []) refs.push(p.actor);
  if (type === 'ChargeItem') for (const p of (c.performer as Json[] | undefined) ?? []) refs.push(p.actor);
  if (type === 'Observation' || type === 'DiagnosticReport') refs.push(...((c.performer as unknown[] | undefined) ?? []));
  if (type === 'Procedure') for (const p of (c.performer as Json[] | undefined) ?? []) refs.push(p.actor);
  if (type === 'ServiceRequest') refs.push(c.requester, ...((c.performer as unknown[] | undefined) ?? []));
  return refs.map((r) => refId(r, 'Practitioner')).filter((x): x is string => !!x);
}

/**
 * A practitioner's identity across members: the converter scopes an identifier system to its member
 * (`urn:yilian:<member>:id:<authority>`), so the assigning authority and staff number are the key.
 */
export function practitionerKey(content: Json): string | null {
  const identifier = (content.identifier as Json[] | undefined)?.find((i) => i.value);
  if (!identifier) return null;
  const system = String(identifier.system ?? '');
  const scoped = /^urn:yilian:[^:]+:id:(.+)$/.exec(system);
  return `${scoped ? scoped[1] : system}|${identifier.value}`;
}

async function loadContext(db: HubDb, tx: Sql, config: HubConfig, imagingCodes: Set<string>, referringMembers: Set<string>, rows: SourceRow[]): Promise<Context> {
  const patientIds = new Set<string>();
  const encounterIds = new Set<string>();
  const practitionerIds = new Set<string>();
  const deviceIds = new Set<string>();
  for (const r of rows) {
    const subject = subjectOf(r.content);
    if (subject) patientIds.add(subject);
    const enc = r.resource_type === 'Encounter' ? r.id : encounterOf(r.resource_type, r.content);
    if (enc) encounterIds.add(enc);
    for (const p of practitionersOf(r.resource_type, r.content)) practitionerIds.add(p);
    if (r.resource_type === 'Appointment') for (const p of (r.content.participant as Json[] | undefined) ?? []) {
      const d = refId(p.actor, 'Device');
      if (d) deviceIds.add(d);
    }
  }
  const golden = new Map(
    (
      await tx.query<{ patient_resource_id: string; golden: string }>(
        `SELECT s.patient_resource_id, coalesce(g.merged_into, g.id) AS golden
           FROM mpi_source s JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH' JOIN mpi_golden g ON g.id = l.golden_id
          WHERE s.patient_resource_id = ANY($1::text[])`,
        [[...patientIds]],
      )
    ).rows.map((r) => [r.patient_resource_id, r.golden]),
  );
  const encounterRows = (await tx.query<{ id: string; member_id: string; content: Json }>(`SELECT id, member_id, content FROM resource WHERE resource_type = 'Encounter' AND id = ANY($1::text[])`, [[...encounterIds]])).rows;
  const encounters = new Map(encounterRows.map((e) => [e.id, { ...e.content, member_id: e.member_id }]));
  for (const e of encounterRows) for (const p of practitionersOf('Encounter', e.content)) practitionerIds.add(p);
  const locationIds = encounterRows.flatMap((e) => ((e.content.location as Json[] | undefined) ?? []).map((l) => refId(l.location, 'Location')).filter((x): x is string => !!x));
  const locations = new Map(
    (await tx.query<{ id: string; name: string | null }>(`SELECT id, content->>'name' AS name FROM resource WHERE resource_type = 'Location' AND id = ANY($1::text[])`, [locationIds])).rows.map((l) => [l.id, l.name ?? '']),
  );
  // Principal diagnosis of a visit: its ICD-11-coded Condition from the first DG1 (segment path order), else any.
  const diagnoses = new Map<string, { system: string; code: string; display: string | null }>();
  const conditions = await tx.query<{ encounter: string; content: Json }>(
    `SELECT content->'encounter'->>'reference' AS encounter, content FROM resource
      WHERE resource_type = 'Condition' AND content->'encounter'->>'reference' = ANY($1::text[])`,
    [[...encounterIds].map((id) => `Encounter/${id}`)],
  );
  const ranked = conditions.rows
    .map((c) => ({ encounter: c.encounter.slice('Encounter/'.length), content: c.content, path: String((c.content.meta?.extension as Json[] | undefined)?.find((x) => /segment-path$/.test(x.url))?.valueString ?? '~') }))
    .sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true }));
  for (const c of ranked) {
    if (diagnoses.has(c.encounter)) continue;
    const icd11 = (c.content.code?.coding as Json[] | undefined)?.find((x) => x.system === ICD11_MMS && x.code);
    if (icd11) diagnoses.set(c.encounter, { system: ICD11_MMS, code: icd11.code, display: icd11.display ?? null });
  }
  const practitioners = new Map(
    (await tx.query<{ id: string; content: Json }>(`SELECT id, content FROM resource WHERE resource_type = 'Practitioner' AND id = ANY($1::text[])`, [[...practitionerIds]])).rows.map((p) => [p.id, practitionerKey(p.content)]),
  );
  const devices = new Map(
    (await tx.query<{ id: string; name: string | null }>(`SELECT id, content->'deviceName'->0->>'name' AS name FROM resource WHERE resource_type = 'Device' AND id = ANY($1::text[])`, [[...deviceIds]])).rows.map((d) => [d.id, d.name]),
  );
  const tertiary = config.members.filter((m) => m.tier === 'tertiary').map((m) => m.id);
  const experts = new Set<string>();
  if (tertiary.length) {
    const rowsOfExperts = await tx.query<{ content: Json }>(`SELECT content FROM resource WHERE resource_type = 'Practitioner' AND member_id = ANY($1::text[])`, [tertiary]);
    for (const p of rowsOfExperts.rows) {
      const key = practitionerKey(p.content);
      if (key) experts.add(key);
    }
  }
  const testIds = rows.filter((r) => ['Observation', 'DiagnosticReport', 'ImagingStudy'].includes(r.resource_type)).map((r) => r.id);
  const repeats = testIds.length ? await repeatsOf(db, config, testIds) : new Map();
  const organisationIds = rows
    .filter((r) => r.resource_type === 'ServiceRequest')
    .flatMap((r) => [r.content.requester, ...((r.content.performer as unknown[] | undefined) ?? [])].map((ref) => refId(ref, 'Organization')))
    .filter((x): x is string => !!x);
  const organisations = new Map<string, string>();
  if (organisationIds.length) {
    const orgs = await tx.query<{ id: string; content: Json }>(`SELECT id, content FROM resource WHERE resource_type = 'Organization' AND id = ANY($1::text[])`, [organisationIds]);
    for (const o of orgs.rows) {
      const member = memberOfOrganisation(config, o.content);
      if (member) organisations.set(o.id, member);
    }
  }
  for (const r of rows) if (r.resource_type === 'ServiceRequest' && isReferral(r.content)) referringMembers.add(r.member_id);
  return { config, golden, encounters, diagnoses, locations, practitioners, devices, experts, repeats, imagingCodes, organisations, referringMembers };
}

function isReferral(c: Json): boolean {
  return ((c.category as Json[] | undefined) ?? []).some((cat) => ((cat.coding as Json[] | undefined) ?? []).some((x) => REFERRAL_CATEGORIES.has(`${x.system}|${x.code}`)));
}

/** The member an Organization resource is: an identifier whose value is a member id, else the member's configured name. */
function memberOfOrganisation(config: HubConfig, org: Json): string | undefined {
  const values = new Set(((org.identifier as Json[] | undefined) ?? []).map((i) => String(i.value ?? '')));
  return config.members.find((m) => values.has(m.id))?.id ?? config.members.find((m) => m.name === org.name)?.id;
}

function tierOf(config: HubConfig, member: string): CostEvent['memberTier'] {
  return config.members.find((m) => m.id === member)?.tier ?? 'unknown';
}

function instant(value: unknown): Date | undefined {
  if (typeof value !== 'string' || !value) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t);
}

function codingOf(cc: Json | undefined, prefer?: string): { system: string | null; code: string; display?: string | null } | null {
  const codings = ((cc?.coding as Json[] | undefined) ?? []).filter((c) => c.code);
  const chosen = (prefer && codings.find((c) => c.system === prefer)) || codings[0];
  return chosen ? { system: chosen.system ?? null, code: String(chosen.code), display: chosen.display ?? null } : null;
}

function departmentOf(encounter: Json | undefined, ctx: Context): string | null {
  if (!encounter) return null;
  const service = codingOf(encounter.serviceType);
  if (service) return service.display ?? service.code;
  const location = ((encounter.location as Json[] | undefined) ?? []).map((l) => refId(l.location, 'Location')).find(Boolean);
  const name = location ? ctx.locations.get(location) : undefined;
  return name ? name.split(' / ')[0]! : null;
}

/** The events one resource yields in its current state, per kind. */
function derive(r: SourceRow, ctx: Context, pseudonym: Pseudonymiser): Map<CostEventKind, Draft> {
  const out = new Map<CostEventKind, Draft>();
  const c = r.content;
  const subject = subjectOf(c);
  const golden = subject ? ctx.golden.get(subject) : undefined;
  const encounterId = r.resource_type === 'Encounter' ? r.id : encounterOf(r.resource_type, c);
  const encounter = encounterId ? ctx.encounters.get(encounterId) : undefined;
  const practitioner = practitionersOf(r.resource_type, c)[0] ?? (encounter ? practitionersOf('Encounter', encounter)[0] : undefined);
  const location = encounter ? ((encounter.location as Json[] | undefined) ?? []).map((l) => refId(l.location, 'Location')).filter(Boolean).pop() : undefined;
  const base = (kind: CostEventKind, occurred: Date | undefined): Draft => ({
    kind,
    occurredAt: occurred?.toISOString() ?? null,
    localDate: occurred ? new Date(occurred.getTime() + utcOffsetOf(ctx.config, r.member_id) * 60_000).toISOString().slice(0, 10) : null,
    member: r.member_id,
    memberTier: tierOf(ctx.config, r.member_id),
    department: departmentOf(encounter, ctx),
    patientKey: golden ? pseudonym(golden) : null,
    diagnosis: encounterId ? ctx.diagnoses.get(encounterId) ?? null : null,
    serviceCode: null,
    sourceStatus: typeof c.status === 'string' ? c.status : null,
    quantity: 1,
    unit: '1',
    unitPrice: null,
    currency: null,
    resources: { device: null, deviceName: null, modality: null, practitioner: practitioner ?? null, practitionerKey: practitioner ? ctx.practitioners.get(practitioner) ?? null : null, location: location ?? null },
    referral: null,
    duplicate: null,
    source: { resourceType: r.resource_type, resourceId: r.id, resourceVersion: r.version, rawMessageId: r.raw_id, mappingVersions: r.mapping_versions },
  });
  const listPrice = (code: string | undefined, at: Date | undefined) => {
    if (!code || !at) return { unitPrice: null, currency: null };
    const price = priceAt(ctx.config.recognition, r.member_id, code, at);
    return price > 0 ? { unitPrice: price, currency: ctx.config.recognition.currency } : { unitPrice: null, currency: null };
  };
  const occurredOf = (...values: unknown[]) => values.map(instant).find(Boolean) ?? r.event_time ?? undefined;
  switch (r.resource_type) {
    case 'Encounter': {
      if (['cancelled', 'entered-in-error'].includes(c.status)) break;
      const at = occurredOf(c.period?.start, c.period?.end);
      out.set('encounter', { ...base('encounter', at), serviceCode: c.class?.code ? { system: c.class.system ?? null, code: c.class.code, display: c.class.display ?? null } : null });
      // Outreach: a lead-hospital practitioner working at a member that is not a lead hospital.
      if (tierOf(ctx.config, r.member_id) !== 'tertiary') {
        const expert = practitionersOf('Encounter', c).find((p) => {
          const key = ctx.practitioners.get(p);
          return key && ctx.experts.has(key);
        });
        if (expert) out.set('outreach-session', { ...base('outreach-session', at), resources: { ...base('outreach-session', at).resources, practitioner: expert, practitionerKey: ctx.practitioners.get(expert) ?? null } });
      }
      break;
    }
    case 'Observation': {
      const lab = /^(ORU|OUL)/.test(r.message_type ?? '') || ((c.category as Json[] | undefined) ?? []).some((cat) => (cat.coding as Json[] | undefined)?.some((x) => x.code === 'laboratory'));
      const code = codingOf(c.code, LOINC);
      // The findings of an imaging report are not lab tests (the report is the imaging exam).
      if (!lab || !['final', 'amended', 'corrected'].includes(c.status) || (code?.system === LOINC && ctx.imagingCodes.has(code.code))) break;
      const at = occurredOf(c.effectiveDateTime, c.effectivePeriod?.start, c.issued);
      const repeat = ctx.repeats.get(r.id);
      out.set('lab-test', { ...base('lab-test', at), serviceCode: code, ...listPrice(code?.code, at), duplicate: { repeat: !!repeat, earlierMember: repeat?.earlierMember ?? null } });
      break;
    }
    case 'DiagnosticReport': {
      const code = codingOf(c.code, LOINC);
      const imaging =
        ((c.category as Json[] | undefined) ?? []).some((cat) => (cat.coding as Json[] | undefined)?.some((x) => IMAGING_CATEGORIES.has(String(x.code).toUpperCase()))) ||
        (code?.system === LOINC && ctx.imagingCodes.has(code.code));
      if (!imaging || ['cancelled', 'entered-in-error', 'registered', 'partial'].includes(c.status)) break;
      const at = occurredOf(c.effectiveDateTime, c.effectivePeriod?.start, c.issued);
      const repeat = ctx.repeats.get(r.id);
      out.set('imaging-exam', { ...base('imaging-exam', at), serviceCode: code, ...listPrice(code?.code, at), duplicate: { repeat: !!repeat, earlierMember: repeat?.earlierMember ?? null } });
      break;
    }
    case 'ImagingStudy': {
      if (['cancelled', 'entered-in-error', 'registered'].includes(c.status)) break;
      const at = occurredOf(c.started);
      const code = codingOf((c.procedureCode as Json[] | undefined)?.[0], LOINC);
      const repeat = ctx.repeats.get(r.id);
      const b = base('imaging-exam', at);
      const modality = (c.modality as Json[] | undefined)?.[0]?.code ?? (c.series as Json[] | undefined)?.[0]?.modality?.code ?? null;
      out.set('imaging-exam', { ...b, serviceCode: code, ...listPrice(code?.code, at), duplicate: { repeat: !!repeat, earlierMember: repeat?.earlierMember ?? null }, resources: { ...b.resources, modality } });
      break;
    }
    case 'Procedure': {
      if (c.status !== 'completed') break;
      const at = occurredOf(c.performedDateTime, c.performedPeriod?.start);
      const code = codingOf(c.code);
      out.set('procedure', { ...base('procedure', at), serviceCode: code, ...listPrice(code?.code, at) });
      break;
    }
    case 'ChargeItem': {
      if (!['billable', 'billed'].includes(c.status)) break;
      const at = occurredOf(c.occurrenceDateTime, c.occurrencePeriod?.start, c.enteredDate);
      const code = codingOf(c.code);
      const quantity = typeof c.quantity?.value === 'number' ? c.quantity.value : 1;
      // The converter puts FT1-11 (extended amount, the line total) in priceOverride: the unit price is total / quantity.
      const total = typeof c.priceOverride?.value === 'number' ? c.priceOverride.value : undefined;
      const priced = total !== undefined && quantity > 0 ? { unitPrice: Math.round((total / quantity) * 10000) / 10000, currency: c.priceOverride.currency ?? ctx.config.recognition.currency } : listPrice(code?.code, at);
      out.set('charge', { ...base('charge', at), serviceCode: code, quantity, ...priced });
      break;
    }
    case 'ServiceRequest': {
      // A referral message (REF^I12, or a member's FHIR ServiceRequest): from the requester's member
      // (else the sender) to the performer's member; only when both are members and differ.
      if (!isReferral(c) || ['revoked', 'entered-in-error', 'draft'].includes(c.status)) break;
      const from = refId(c.requester, 'Organization') ? ctx.organisations.get(refId(c.requester, 'Organization')!) : r.member_id;
      const to = ((c.performer as unknown[] | undefined) ?? []).map((p) => refId(p, 'Organization')).map((o) => (o ? ctx.organisations.get(o) : undefined)).find(Boolean);
      if (!from || !to || from === to) break;
      const at = occurredOf(c.authoredOn, c.occurrencePeriod?.start, c.occurrenceDateTime);
      out.set('referral', { ...base('referral', at), referral: directionOf(ctx.config, from, to) });
      break;
    }
    case 'Appointment': {
      if (['cancelled', 'noshow', 'entered-in-error', 'proposed', 'waitlist', 'pending'].includes(c.status)) break;
      const deviceParticipant = ((c.participant as Json[] | undefined) ?? []).find((p) => refId(p.actor, 'Device'));
      if (!deviceParticipant) break;
      const device = refId(deviceParticipant.actor, 'Device')!;
      const start = instant(c.start);
      const end = instant(c.end);
      const minutes = typeof c.minutesDuration === 'number' ? c.minutesDuration : start && end ? Math.round((end.getTime() - start.getTime()) / 60_000) : null;
      const modality = codingOf(deviceParticipant.type?.[0]);
      const code = codingOf(c.serviceType?.[0]);
      const b = base('device-usage', occurredOf(c.start));
      out.set('device-usage', {
        ...b,
        serviceCode: code,
        quantity: minutes,
        unit: 'min',
        ...listPrice(code?.code, start),
        resources: { ...b.resources, device, deviceName: ctx.devices.get(device) ?? null, modality: modality?.code ?? null },
      });
      break;
    }
  }
  return out;
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** Hash of what the event says, without its provenance: a re-conversion giving the same service is not a change. */
function stateHash(draft: Draft, status: string): string {
  const { source: _source, ...content } = draft;
  return createHash('sha256').update(canonical({ ...content, status })).digest('hex');
}

interface Appender {
  seq: number;
}

async function append(tx: Sql, appender: Appender, draft: Draft, status: 'active' | 'void', previous: string | null, hash: string, recordedAt: Date): Promise<CostEvent> {
  appender.seq += 1;
  const id = `ce_${createHash('sha256').update(`${draft.source.resourceType}|${draft.source.resourceId}|${draft.kind}|${hash}|${previous ?? ''}`).digest('hex').slice(0, 32)}`;
  const event = costEventSchema.parse({ schemaVersion: COST_EVENT_SCHEMA_VERSION, id, cursor: appender.seq, status, ...draft, corrects: previous, recordedAt: recordedAt.toISOString() });
  await tx.query(
    `INSERT INTO cost_event (seq, id, kind, status, member_id, occurred_at, local_day, patient_key, source_type, source_id, corrects, event, recorded_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
    [event.cursor, id, event.kind, status, event.member, event.occurredAt, event.localDate, event.patientKey, event.source.resourceType, event.source.resourceId, previous, JSON.stringify(event), recordedAt],
  );
  return event;
}

async function deriveAndAppend(db: HubDb, tx: Sql, config: HubConfig, imagingCodes: Set<string>, referringMembers: Set<string>, pseudonym: Pseudonymiser, rows: SourceRow[], summary: BuildSummary, now: Date): Promise<void> {
  const ctx = await loadContext(db, tx, config, imagingCodes, referringMembers, rows);
  const appender: Appender = { seq: Number((await tx.query<{ seq: number | null }>(`SELECT max(seq) AS seq FROM cost_event`)).rows[0]?.seq ?? 0) };
  const previous = await tx.query<{ source_type: string; source_id: string; kind: string; state_hash: string; last_event_id: string }>(
    `SELECT f.source_type, f.source_id, f.kind, f.state_hash, f.last_event_id FROM cost_feed_source f
       JOIN unnest($1::text[], $2::text[]) AS k(t, i) ON f.source_type = k.t AND f.source_id = k.i`,
    [rows.map((r) => r.resource_type), rows.map((r) => r.id)],
  );
  const before = new Map<string, { hash: string; eventId: string }>();
  for (const p of previous.rows) before.set(`${p.source_type}/${p.source_id}/${p.kind}`, { hash: p.state_hash, eventId: p.last_event_id });
  // Visits in the order they happened, so a referral finds the visit before it in the same batch.
  const visitTime = (r: SourceRow) => (r.resource_type === 'Encounter' ? instant(r.content.period?.start)?.getTime() ?? 0 : Number.MAX_SAFE_INTEGER);
  const ordered = [...rows].sort((a, b) => visitTime(a) - visitTime(b));
  for (const r of ordered) {
    const drafts = derive(r, ctx, pseudonym);
    const subject = subjectOf(r.content);
    const unresolved = !!subject && !ctx.golden.has(subject);
    if (unresolved && now.getTime() - (r.pending_since ?? now).getTime() < PENDING_LIMIT_MS) {
      summary.pending += 1;
      await markSeen(tx, r, r.pending_since ?? now);
      continue;
    }
    const enc = drafts.get('encounter');
    if (enc?.patientKey && enc.occurredAt) {
      const referral = await referralOf(tx, config, enc, ctx.referringMembers);
      if (referral) drafts.set('referral', { ...enc, kind: 'referral', referral });
    }
    const kinds = new Set<string>([...drafts.keys(), ...[...before.keys()].filter((k) => k.startsWith(`${r.resource_type}/${r.id}/`)).map((k) => k.split('/')[2]!)]);
    for (const kind of kinds) {
      const key = `${r.resource_type}/${r.id}/${kind}`;
      const prior = before.get(key);
      const draft = drafts.get(kind as CostEventKind);
      let event: CostEvent | undefined;
      let hash: string;
      if (draft) {
        hash = stateHash(draft, 'active');
        if (prior?.hash === hash) continue;
        event = await append(tx, appender, draft, 'active', prior?.eventId ?? null, hash, now);
      } else {
        // The source no longer yields this kind: void the last event (once).
        const last = (await tx.query<{ event: CostEvent }>(`SELECT event FROM cost_event WHERE id = $1`, [prior!.eventId])).rows[0]!.event;
        if (last.status === 'void') continue;
        const { schemaVersion: _v, id: _i, cursor: _c, corrects: _x, recordedAt: _r, status: _s, ...content } = last;
        const voided: Draft = { ...content, source: { resourceType: r.resource_type, resourceId: r.id, resourceVersion: r.version, rawMessageId: r.raw_id, mappingVersions: r.mapping_versions } };
        hash = stateHash(voided, 'void');
        event = await append(tx, appender, voided, 'void', prior!.eventId, hash, now);
        summary.voided += 1;
      }
      summary.appended += 1;
      if (prior) summary.corrections += 1;
      await tx.query(
        `INSERT INTO cost_feed_source (source_type, source_id, kind, state_hash, last_event_id) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (source_type, source_id, kind) DO UPDATE SET state_hash = EXCLUDED.state_hash, last_event_id = EXCLUDED.last_event_id`,
        [r.resource_type, r.id, kind, hash, event.id],
      );
    }
    await markSeen(tx, r, null);
  }
}

async function markSeen(tx: Sql, r: SourceRow, pendingSince: Date | null): Promise<void> {
  await tx.query(
    `INSERT INTO cost_feed_seen (resource_type, resource_id, updated_at, pending_since) VALUES ($1, $2, $3::timestamptz, $4)
       ON CONFLICT (resource_type, resource_id) DO UPDATE SET updated_at = EXCLUDED.updated_at, pending_since = EXCLUDED.pending_since`,
    [r.resource_type, r.id, r.updated_at_exact, pendingSince],
  );
}

/** The patient's previous visit within the window, if at another member: a referral from there to here. */
async function referralOf(tx: Sql, config: HubConfig, visit: Draft, referringMembers: Set<string>): Promise<CostEvent['referral']> {
  const previous = (
    await tx.query<{ member_id: string }>(
      `SELECT e.member_id FROM cost_event e
        WHERE e.patient_key = $1 AND e.kind = 'encounter' AND e.status = 'active' AND e.occurred_at < $2 AND e.occurred_at >= $2::timestamptz - make_interval(days => $3)
          AND e.source_id <> $4 AND NOT EXISTS (SELECT 1 FROM cost_event c WHERE c.corrects = e.id)
        ORDER BY e.occurred_at DESC, e.seq DESC LIMIT 1`,
      [visit.patientKey, visit.occurredAt, config.feeds.cost.referralWindowDays, visit.source.resourceId],
    )
  ).rows[0];
  // A member that sends referral messages has its referrals from them, not inferred from visits.
  if (!previous || previous.member_id === visit.member || referringMembers.has(previous.member_id)) return null;
  return directionOf(config, previous.member_id, visit.member);
}

function directionOf(config: HubConfig, fromMember: string, toMember: string): NonNullable<CostEvent['referral']> {
  const from = TIER_RANK[tierOf(config, fromMember)] ?? 0;
  const to = TIER_RANK[tierOf(config, toMember)] ?? 0;
  return { direction: to > from ? 'up' : to < from ? 'down' : 'lateral', fromMember, toMember };
}

/** `yilian serve`: build every few seconds, never two at once in this process (other processes wait on the lock). */
export function startCostFeedBuilder(db: HubDb, config: HubConfig, log?: (text: string) => void): () => void {
  let secret: Buffer;
  try {
    secret = feedSecret(config, { embedded: db.kind === 'pglite' });
  } catch (error) {
    log?.(`cost feed not built: ${(error as HubError).message}`);
    return () => undefined;
  }
  return runPeriodically('cost feed build', config.feeds.cost.intervalSeconds * 1000, () => buildCostFeed(db, config, { secret }), log);
}
