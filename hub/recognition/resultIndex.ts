/**
 * The recognition index: recognition_result, one row per stored result (Observation,
 * DiagnosticReport, ImagingStudy) and standard code — who (the member's Patient id), what (LOINC or
 * imaging code), where (member, lab), when (effective time), the value in the canonical unit with
 * the original beside it, status and specimen. Derived from the resource table, never from
 * messages: the merge stage has already settled out-of-order and replayed messages there (latest
 * event time wins), so deriving from the current resource state is correct whatever the arrival
 * order, and deriving twice gives the same rows (idempotent).
 *
 * Kept in step by a sync (like the patient index's startPatientIndexSync) rather than inside the
 * merge statement: the merge is the pipeline's hottest statement, measured and prepared, and this
 * keeps recognition out of its transaction; the index may lag the record by one sync interval
 * (2 s in `yilian serve`). The sync reads resource.updated_at past a watermark, re-reading a 10 s
 * overlap so a transaction that committed late with an earlier timestamp is not missed.
 *
 * A DiagnosticReport whose code is the code of one of its result Observations (an ORU whose OBR-4
 * names the very test its OBX reports: GLU / GLU) is the container of that result, not a second
 * result: it has no row (IS_CONTAINER). It is judged through its Observation, so the
 * check does not list it as a refused result (a report's status is often not `final`), and the
 * duplicate report, the cost feed and the KPIs, which all read this index, never count the test
 * twice. A report whose results have other codes (an imaging report with its impression
 * Observation, a CBC panel) stays: it is the result of its code. The rule is applied in the batch
 * that writes either side, so it holds whatever order the report and its Observations arrive in,
 * and a full re-derivation gives the same rows.
 *
 * Owns recognition_result and recognition_sync; reads resource; writes nothing else.
 */
import type { HubDb } from '../sql';
import { LOINC, ORIGINAL_QUANTITY_URL } from '../../mappings/terminology/systems';
import { runPeriodically } from '../periodic';

export const INDEXED_TYPES = ['Observation', 'DiagnosticReport', 'ImagingStudy'] as const;
/** Code systems whose codes the index keeps: LOINC (tests, and imaging through the LOINC/RSNA playbook). */
export const STANDARD_RESULT_SYSTEMS = new Set([LOINC]);
/**
 * A report's row is the row of a container when one of the report's `result` references is an
 * Observation whose own index row has the same code (`d`: the report's row, `dr`: its resource).
 */
const IS_CONTAINER = `d.resource_type = 'DiagnosticReport' AND dr.resource_type = 'DiagnosticReport' AND dr.id = d.resource_id
   AND EXISTS (
     SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(dr.content->'result') WHEN 'array' THEN dr.content->'result' ELSE '[]'::jsonb END) AS e(ref)
       JOIN recognition_result o ON o.resource_type = 'Observation' AND o.code = d.code AND o.resource_id = substring(e.ref->>'reference' from '(?:^|/)Observation/([^/]+)$'))`;
/** The container rows among the reports just written ($1: report ids; primary-key probes). */
const CONTAINERS_OF_REPORTS = `DELETE FROM recognition_result d USING resource dr WHERE d.resource_id = ANY($1::text[]) AND ${IS_CONTAINER}`;
/**
 * Reports written earlier that contain an Observation just written ($1/$2: its patient and code;
 * probes recognition_result_patient). Two statements, not one with OR: an OR over both would not
 * use either index.
 */
const CONTAINERS_OF_OBSERVATIONS = `DELETE FROM recognition_result d USING resource dr, unnest($1::text[], $2::text[]) AS o(p, c) WHERE d.patient_id = o.p AND d.code = o.c AND ${IS_CONTAINER}`;
/** Every container row (migration 17: rows derived before this rule existed). */
export const DELETE_CONTAINER_REPORTS_SQL = `DELETE FROM recognition_result d USING resource dr WHERE ${IS_CONTAINER}`;

/** Re-read before the watermark on every sync (late commits with earlier timestamps). */
const OVERLAP_SECONDS = 10;

export interface IndexedResult {
  resourceType: string;
  resourceId: string;
  code: string;
  memberId: string;
  patientId: string;
  effectiveAt: string;
  value: number | null;
  unit: string | null;
  originalValue: number | null;
  originalUnit: string | null;
  status: string;
  specimen: string | null;
  lab: string | null;
}

type Json = Record<string, unknown>;
interface Coding {
  system?: string;
  code?: string;
}
interface Quantity {
  value?: number;
  unit?: string;
  code?: string;
  extension?: Array<{ url: string; valueQuantity?: Quantity }>;
}

function standardCodes(concepts: Array<{ coding?: Coding[] } | undefined>): string[] {
  const codes = new Set<string>();
  for (const concept of concepts) for (const c of concept?.coding ?? []) if (c.system && c.code && STANDARD_RESULT_SYSTEMS.has(c.system)) codes.add(c.code);
  return [...codes];
}

function referenceId(ref: unknown): string | undefined {
  const reference = (ref as { reference?: string } | undefined)?.reference;
  const m = reference ? /^(?:.*\/)?Patient\/([^/]+)$/.exec(reference) : null;
  return m?.[1];
}

function display(ref: unknown): string | null {
  const r = ref as { display?: string; reference?: string } | undefined;
  return r?.display ?? r?.reference ?? null;
}

/** Pure: the index rows of one stored resource (none when it has no standard code, subject or time). */
export function indexEntriesOf(resource: Json, memberId: string): IndexedResult[] {
  const type = resource.resourceType as string;
  const id = resource.id as string;
  const patientId = referenceId(resource.subject ?? resource.patient);
  if (!patientId || !id) return [];
  let codes: string[];
  let time: string | undefined;
  let status = String(resource.status ?? 'unknown');
  let quantity: Quantity | undefined;
  let specimen: string | null = null;
  let lab: string | null = null;
  if (type === 'Observation' || type === 'DiagnosticReport') {
    codes = standardCodes([resource.code as { coding?: Coding[] }]);
    time = (resource.effectiveDateTime as string | undefined) ?? (resource.effectivePeriod as { start?: string } | undefined)?.start ?? (resource.issued as string | undefined);
    if (type === 'Observation') quantity = resource.valueQuantity as Quantity | undefined;
    const spec = resource.specimen as { display?: string; reference?: string } | Array<{ display?: string }> | undefined;
    specimen = Array.isArray(spec) ? (spec[0]?.display ?? null) : (spec?.display ?? null);
    lab = display((resource.performer as unknown[] | undefined)?.[0]);
  } else if (type === 'ImagingStudy') {
    codes = standardCodes((resource.procedureCode as Array<{ coding?: Coding[] }> | undefined) ?? []);
    time = resource.started as string | undefined;
    lab = display(resource.location ?? (resource.referrer as unknown));
    status = String(resource.status ?? 'unknown');
  } else return [];
  const at = time ? Date.parse(time) : NaN;
  if (!codes.length || !Number.isFinite(at)) return [];
  const original = quantity?.extension?.find((e) => e.url === ORIGINAL_QUANTITY_URL)?.valueQuantity;
  const value = typeof quantity?.value === 'number' ? quantity.value : null;
  const unit = quantity ? (quantity.code ?? quantity.unit ?? null) : null;
  return codes.map((code) => ({
    resourceType: type,
    resourceId: id,
    code,
    memberId,
    patientId,
    effectiveAt: new Date(at).toISOString(),
    value,
    unit,
    originalValue: original ? (typeof original.value === 'number' ? original.value : null) : value,
    originalUnit: original ? (original.unit ?? original.code ?? null) : unit,
    status,
    specimen,
    lab,
  }));
}

export interface IndexSyncSummary {
  resources: number;
  rows: number;
}

/**
 * Bring the index up to the resource table. `full`: re-derive every result (after a change to
 * this derivation). Batches are transactions under one advisory lock, so two processes syncing at
 * once take turns instead of racing.
 */
export async function syncRecognitionIndex(db: HubDb, options: { batch?: number; full?: boolean } = {}): Promise<IndexSyncSummary> {
  const batch = options.batch ?? 2000;
  const summary: IndexSyncSummary = { resources: 0, rows: 0 };
  const mark = (await db.query<{ w: string | null }>(`SELECT (watermark - make_interval(secs => ${OVERLAP_SECONDS}))::text AS w FROM recognition_sync WHERE id = 1`)).rows[0]?.w;
  let after: [string, string, string] = [options.full || !mark ? '-infinity' : mark, '', ''];
  for (;;) {
    const page = await db.query<{ resource_type: string; id: string; member_id: string; content: Json; updated: string }>(
      // Rows of the overlap already derived from this very state are skipped (the index says so), except in a full re-derivation.
      `SELECT r.resource_type, r.id, r.member_id, r.content, r.updated_at::text AS updated FROM resource r
        WHERE r.resource_type IN ('Observation', 'DiagnosticReport', 'ImagingStudy') AND (r.updated_at, r.resource_type, r.id) > ($1::timestamptz, $2, $3)
          AND ($5 OR NOT EXISTS (SELECT 1 FROM recognition_result x WHERE x.resource_type = r.resource_type AND x.resource_id = r.id AND x.source_updated_at = r.updated_at))
        ORDER BY r.updated_at, r.resource_type, r.id LIMIT $4`,
      [...after, batch, !!options.full],
    );
    if (!page.rows.length) break;
    const entries = page.rows.flatMap((r) => indexEntriesOf(r.content, r.member_id).map((e) => ({ ...e, updated: r.updated })));
    const last = page.rows[page.rows.length - 1]!;
    await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(7317071)`);
      // A resource that lost a code (a corrected mapping) loses its row: delete, then insert what it says now.
      await tx.query(`DELETE FROM recognition_result r USING unnest($1::text[], $2::text[]) AS k(t, i) WHERE r.resource_type = k.t AND r.resource_id = k.i`, [page.rows.map((r) => r.resource_type), page.rows.map((r) => r.id)]);
      if (entries.length)
        await tx.query(
          `INSERT INTO recognition_result (resource_type, resource_id, code, member_id, patient_id, effective_at, value, unit, original_value, original_unit, status, specimen, lab, source_updated_at)
           SELECT "resourceType", "resourceId", code, "memberId", "patientId", "effectiveAt", value, unit, "originalValue", "originalUnit", status, specimen, lab, updated
             FROM jsonb_to_recordset($1::jsonb) AS x("resourceType" text, "resourceId" text, code text, "memberId" text, "patientId" text, "effectiveAt" timestamptz, value double precision, unit text,
                                                      "originalValue" double precision, "originalUnit" text, status text, specimen text, lab text, updated timestamptz)
           ON CONFLICT (resource_type, resource_id, code) DO UPDATE SET member_id = excluded.member_id, patient_id = excluded.patient_id, effective_at = excluded.effective_at, value = excluded.value,
             unit = excluded.unit, original_value = excluded.original_value, original_unit = excluded.original_unit, status = excluded.status, specimen = excluded.specimen, lab = excluded.lab,
             source_updated_at = excluded.source_updated_at`,
          [JSON.stringify(entries)],
        );
      // Reports written now that contain one of their Observations, and reports written earlier that
      // contain an Observation written now (a report that arrived before its results).
      const reports = entries.filter((e) => e.resourceType === 'DiagnosticReport');
      const observations = entries.filter((e) => e.resourceType === 'Observation');
      if (reports.length) await tx.query(CONTAINERS_OF_REPORTS, [reports.map((e) => e.resourceId)], 'recognition_containers_of_reports');
      if (observations.length) await tx.query(CONTAINERS_OF_OBSERVATIONS, [observations.map((e) => e.patientId), observations.map((e) => e.code)], 'recognition_containers_of_observations');
      await tx.query(
        `INSERT INTO recognition_sync (id, watermark) VALUES (1, $1::timestamptz) ON CONFLICT (id) DO UPDATE SET watermark = greatest(recognition_sync.watermark, excluded.watermark), synced_at = clock_timestamp()`,
        [last.updated],
      );
    });
    summary.resources += page.rows.length;
    summary.rows += entries.length;
    after = [last.updated, last.resource_type, last.id];
    if (page.rows.length < batch) break;
  }
  return summary;
}

/** Keep the index following the resource table in a long-running process; never two syncs at once. Returns stop. */
export function startRecognitionIndexSync(db: HubDb, intervalMs = 2000, log?: (text: string) => void): () => void {
  return runPeriodically('recognition index sync', intervalMs, () => syncRecognitionIndex(db), log);
}
