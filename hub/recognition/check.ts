/**
 * The recognition check: "does this patient already have a recognisable result for these tests?"
 * The patient is a golden id or any member's identifier; a test is a standard code or any member's
 * local code (resolved through the approved ConceptMaps — the one translation entry point, never
 * re-implemented here). The golden patient's source patients are read from the MPI at query time,
 * so a link or merge decided a second ago counts; each source's results come from the recognition
 * index in one index probe. Every candidate is judged by the rule in force at `at`; those refused
 * say why. Each check is logged (recognition rate) and audited (it reads patient data).
 *
 * An analyte measured both as a mass and as a substance concentration (glucose 2345-7 mg/dL and
 * 14749-6 mmol/L, mappings/terminology/analytes.ts) is one recognition item: asking for either code
 * finds the results stored under both, each judged by the rule of the code asked (the requesting
 * clinic is about to order that test, so its window and tiers are the ones that matter; the
 * shipped rules give both codes of a pair the same window), and a result stored under the other
 * code is shown in the asked code's canonical unit, converted through the molar mass of the
 * canonical-units map, with the value and unit as sent kept in `original` and the code it is
 * stored under in `code`.
 */
import { z } from 'zod';
import type { HubDb, Sql } from '../sql';
import type { HubConfig } from '../config';
import { recordAudit } from '../audit';
import { HubError } from '../../mappings/outcome';
import { syncTerminology } from '../terminology/versions';
import { LOINC, localSystemMember } from '../../mappings/terminology/systems';
import type { Terminology } from '../../mappings/terminology/translator';
import { itemCodes } from '../../mappings/terminology/analytes';
import { roundConverted, unitConversion } from '../../mappings/terminology/ucum';
import { accreditationFor } from './config';
import { ruleBook, type RecognitionRuleVersion } from './rules';

const DAY_MS = 86_400_000;

const testSchema = z.union([
  z.string().min(1).max(256),
  z.object({ code: z.string().min(1).max(128), system: z.string().min(1).max(256).optional(), member: z.string().min(1).max(64).optional() }).strict(),
]);

export const checkRequestSchema = z
  .object({
    /** A golden id, `system|value`, or an object: {id} / {system, value} / {member, mrn}. */
    patient: z.union([
      z.string().min(1).max(256),
      z.object({ id: z.string().min(1).max(64) }).strict(),
      z.object({ system: z.string().min(1).max(256), value: z.string().min(1).max(128) }).strict(),
      z.object({ member: z.string().min(1).max(64), mrn: z.string().min(1).max(128) }).strict(),
    ]),
    /** Standard codes (`718-7`), `system|code`, or {code, system} / {code, member} for a member's local code. */
    tests: z.array(testSchema).min(1).max(50),
    /** When the test would be ordered; default now. */
    at: z.iso.datetime({ offset: true }).optional(),
    /** The member about to order the tests. */
    requestingMember: z.string().min(1).max(64),
  })
  .strict();

export type CheckRequest = z.infer<typeof checkRequestSchema>;

export type RefusalReason = 'expired' | 'lab-not-accredited' | 'member-not-recognised' | 'unit-incompatible' | 'status-not-final' | 'specimen-mismatch' | 'not-recognised-item' | 'none-found' | 'unknown-code';

export interface RecognisableResult {
  resourceType: string;
  resourceId: string;
  /** The standard code the result is stored under: the other code of a mass/substance pair when it was reported in the other unit. */
  code: string;
  member: string;
  tier: string;
  lab: string | null;
  time: string;
  expires: string;
  status: string;
  value: { value: number | null; unit: string | null };
  original: { value: number | null; unit: string | null };
  accreditation?: { scheme: string; validTo: string | null };
}

export interface TestAnswer {
  requested: z.infer<typeof testSchema>;
  code: string | null;
  display?: string;
  rule: { version: number; windowDays: number; recognised: boolean } | null;
  recognisable: RecognisableResult[];
  refused: Array<{ resourceId: string; code: string; member: string; time: string; reason: RefusalReason; detail?: string }>;
  /** Why nothing is recognisable (empty when something is). */
  reasons: RefusalReason[];
}

export interface CheckResponse {
  patient: string | null;
  sourcePatients: number;
  at: string;
  requestingMember: string;
  tests: TestAnswer[];
}

interface ResultRow {
  resource_type: string;
  resource_id: string;
  code: string;
  member_id: string;
  patient_id: string;
  effective_at: Date;
  value: number | null;
  unit: string | null;
  original_value: number | null;
  original_unit: string | null;
  status: string;
  specimen: string | null;
  lab: string | null;
}

/** Member tiers, re-read at most every 5 s (members change by configuration, rarely). */
const tierCache = new WeakMap<object, { at: number; tiers: Map<string, string> }>();
async function memberTiers(db: Sql, config: HubConfig): Promise<Map<string, string>> {
  const cached = tierCache.get(db);
  if (cached && Date.now() - cached.at < 5000) return cached.tiers;
  const tiers = new Map((await db.query<{ id: string; tier: string }>(`SELECT id, tier FROM member`, [], 'recognition_member_tiers')).rows.map((r) => [r.id, r.tier]));
  for (const m of config.members) tiers.set(m.id, m.tier);
  tierCache.set(db, { at: Date.now(), tiers });
  return tiers;
}

/** The approved maps, re-synced at most every second (the check is a hot path). */
const termCache = new WeakMap<object, { at: number; terminology: Terminology }>();
async function terminologyOf(db: HubDb): Promise<Terminology> {
  const cached = termCache.get(db);
  if (cached && Date.now() - cached.at < 1000) return cached.terminology;
  const terminology = await syncTerminology(db);
  termCache.set(db, { at: Date.now(), terminology });
  return terminology;
}

const LOINC_CODE = /^\d{1,7}-\d$/;

/** A requested test → its standard code (undefined: unknown). */
export function resolveTestCode(terminology: Terminology, test: z.infer<typeof testSchema>): { code?: string; display?: string } {
  const spec = typeof test === 'string' ? (test.includes('|') ? { system: test.slice(0, test.lastIndexOf('|')), code: test.slice(test.lastIndexOf('|') + 1) } : { code: test }) : test;
  const system = spec.system;
  if (!system && !('member' in spec && spec.member)) return LOINC_CODE.test(spec.code) ? { code: spec.code } : {};
  if (system === LOINC) return { code: spec.code };
  const systems = system
    ? [system]
    : // A member's local code without its system: every local system of that member a map translates from.
      [...terminology.maps.values()].flatMap((m) => m.group.map((g) => g.source)).filter((s, i, all) => localSystemMember(s) === (spec as { member: string }).member && all.indexOf(s) === i);
  for (const s of systems) {
    const translation = terminology.translate(s, spec.code, LOINC);
    const match = translation.matches.find((m) => m.concept && m.equivalence !== 'unmatched' && m.equivalence !== 'disjoint');
    if (match?.concept) return { code: match.concept.code, display: match.concept.display };
  }
  return {};
}

/** The golden patient and its source patients' Patient resource ids. */
async function resolvePatient(db: Sql, patient: CheckRequest['patient']): Promise<{ golden: string | null; patientIds: string[] }> {
  const sourcesOf = async (golden: string) =>
    (
      await db.query<{ id: string }>(
        `SELECT s.patient_resource_id AS id FROM mpi_link l JOIN mpi_source s ON s.member_id = l.member_id AND s.mrn = l.mrn
          WHERE l.golden_id = $1 AND l.state = 'MATCH' AND s.patient_resource_id IS NOT NULL`,
        [golden],
        'recognition_golden_sources',
      )
    ).rows.map((r) => r.id);
  // By the Patient resources that carry the identifier: their golden patient, or (not yet indexed) themselves.
  const byResources = async (ids: string[]) => {
    if (!ids.length) return { golden: null, patientIds: [] };
    const goldens = [
      ...new Set(
        (
          await db.query<{ g: string }>(
            `SELECT DISTINCT l.golden_id AS g FROM mpi_source s JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH' WHERE s.patient_resource_id = ANY($1::text[])`,
            [ids],
          )
        ).rows.map((r) => r.g),
      ),
    ];
    if (goldens.length > 1) throw new HubError('invalid', `the identifier belongs to ${goldens.length} different patients; give the golden id`, 'patient');
    if (goldens.length === 1) return { golden: goldens[0]!, patientIds: [...new Set([...(await sourcesOf(goldens[0]!)), ...ids])] };
    return { golden: null, patientIds: ids };
  };
  const byIdentifier = async (system: string, value: string) =>
    byResources(
      (await db.query<{ id: string }>(`SELECT id FROM resource WHERE resource_type = 'Patient' AND content->'identifier' @> $1::jsonb`, [JSON.stringify([{ system, value }])])).rows.map((r) => r.id),
    );
  if (typeof patient === 'string' && patient.includes('|')) return byIdentifier(patient.slice(0, patient.lastIndexOf('|')), patient.slice(patient.lastIndexOf('|') + 1));
  if (typeof patient === 'string' || 'id' in patient) {
    // One round trip: the golden patient (or the one it was merged into) and its sources' Patient ids.
    const id = typeof patient === 'string' ? patient : patient.id;
    const rows = (
      await db.query<{ g: string; id: string | null }>(
        `SELECT g.g, s.patient_resource_id AS id
           FROM (SELECT coalesce(merged_into, id) AS g FROM mpi_golden WHERE id = $1) g
           LEFT JOIN mpi_link l ON l.golden_id = g.g AND l.state = 'MATCH'
           LEFT JOIN mpi_source s ON s.member_id = l.member_id AND s.mrn = l.mrn`,
        [id],
        'recognition_golden_with_sources',
      )
    ).rows;
    if (!rows.length) throw new HubError('not-found', `no golden patient ${id}`);
    return { golden: rows[0]!.g, patientIds: rows.map((r) => r.id).filter((x): x is string => !!x) };
  }
  if ('system' in patient) return byIdentifier(patient.system, patient.value);
  const linked = (await db.query<{ g: string }>(`SELECT golden_id AS g FROM mpi_link WHERE member_id = $1 AND mrn = $2 AND state = 'MATCH'`, [patient.member, patient.mrn])).rows[0]?.g;
  if (linked) return { golden: linked, patientIds: await sourcesOf(linked) };
  // Not indexed yet: the member's Patient with that MRN.
  return byResources(
    (await db.query<{ id: string }>(`SELECT id FROM resource WHERE resource_type = 'Patient' AND member_id = $1 AND content->'identifier' @> $2::jsonb`, [patient.member, JSON.stringify([{ value: patient.mrn }])])).rows.map((r) => r.id),
  );
}

/**
 * Pure: a stored result's value in the canonical unit of the code asked. A result stored under the
 * asked code is as stored; one stored under the other code of its pair (in that code's canonical
 * unit, as the map stage left it) is converted through the molar mass the canonical-units map gives
 * (the asked code's, else its twin's). Anything else is returned as stored, so the judgement
 * refuses it as unit-incompatible rather than guessing.
 */
export function inAskedUnit(result: { code: string; value: number | null; unit: string | null }, asked: string, terminology: Pick<Terminology, 'canonicalUnit'>): { value: number | null; unit: string | null } {
  const stored = { value: result.value, unit: result.unit };
  if (result.code === asked || result.value === null) return stored;
  const to = terminology.canonicalUnit(asked);
  const from = terminology.canonicalUnit(result.code);
  if (!to || !from || result.unit !== from.unit) return stored;
  const conversion = unitConversion(from.unit, to.unit, to.molarMass ?? from.molarMass);
  if (!conversion.ok) return stored;
  return { value: roundConverted(conversion.convert(result.value)), unit: to.unit };
}

/** The accreditation of the lab for the result's analyte (an EQA scheme assesses the analyte, whichever of its codes the lab reports under). */
function accreditationOfItem(config: HubConfig, result: { code: string; member_id: string; lab: string | null; effective_at: Date }): ReturnType<typeof accreditationFor> {
  for (const code of [result.code, ...itemCodes(result.code).filter((c) => c !== result.code)]) {
    const found = accreditationFor(config.recognition, result.member_id, result.lab, code, result.effective_at);
    if (found) return found;
  }
  return undefined;
}

/** Pure: why a stored result may not be recognised under `rule` at `at` (undefined: it may). */
export function judgeResult(
  result: { code: string; member_id: string; lab: string | null; effective_at: Date; status: string; unit: string | null; value: number | null; specimen: string | null },
  rule: RecognitionRuleVersion['content'],
  context: { at: Date; tier: string; canonicalUnit?: string; config: HubConfig },
): { reason: RefusalReason; detail?: string } | undefined {
  if (!rule.recognised) return { reason: 'not-recognised-item' };
  if (!rule.statuses.includes(result.status)) return { reason: 'status-not-final', detail: `status ${result.status}` };
  if (rule.requireCanonicalUnit && context.canonicalUnit && result.value !== null && result.unit !== context.canonicalUnit)
    return { reason: 'unit-incompatible', detail: `${result.unit ?? 'no unit'} cannot be converted to ${context.canonicalUnit}` };
  if (rule.specimen && result.specimen && result.specimen !== rule.specimen) return { reason: 'specimen-mismatch', detail: `${result.specimen}, not ${rule.specimen}` };
  if (!rule.tiers.includes(context.tier as never) && !rule.members.includes(result.member_id)) return { reason: 'member-not-recognised', detail: `tier ${context.tier}` };
  if (rule.requireAccreditation && !accreditationOfItem(context.config, result))
    return { reason: 'lab-not-accredited', detail: `no external quality assessment valid on ${result.effective_at.toISOString().slice(0, 10)}` };
  if (result.effective_at.getTime() + rule.windowDays * DAY_MS <= context.at.getTime()) return { reason: 'expired', detail: `window ${rule.windowDays} days` };
  return undefined;
}

export async function recognitionCheck(db: HubDb, config: HubConfig, request: CheckRequest, actor: string): Promise<CheckResponse> {
  const at = request.at ? new Date(request.at) : new Date();
  const [terminology, book, tiers] = [await terminologyOf(db), await ruleBook(db), await memberTiers(db, config)];
  const { golden, patientIds } = await resolvePatient(db, request.patient);
  const resolved = request.tests.map((t) => ({ requested: t, ...resolveTestCode(terminology, t) }));
  // Both codes of a mass/substance pair: one recognition item.
  const codes = [...new Set(resolved.flatMap((r) => (r.code ? itemCodes(r.code) : [])))];
  const rows =
    patientIds.length && codes.length
      ? (
          await db.query<ResultRow>(
            `SELECT resource_type, resource_id, code, member_id, patient_id, effective_at, value, unit, original_value, original_unit, status, specimen, lab
               FROM recognition_result WHERE patient_id = ANY($1::text[]) AND code = ANY($2::text[]) AND effective_at <= $3 ORDER BY effective_at DESC, resource_id LIMIT 500`,
            [patientIds, codes, at.toISOString()],
            'recognition_check_results',
          )
        ).rows
      : [];
  const tests: TestAnswer[] = resolved.map((r) => {
    const answer: TestAnswer = { requested: r.requested, code: r.code ?? null, ...(r.display ? { display: r.display } : {}), rule: null, recognisable: [], refused: [], reasons: [] };
    if (!r.code) {
      answer.reasons = ['unknown-code'];
      return answer;
    }
    const rule = book.ruleAt(r.code, at);
    if (rule) answer.rule = { version: rule.version, windowDays: rule.content.windowDays, recognised: rule.content.recognised };
    if (rule?.content.display && !answer.display) answer.display = rule.content.display;
    if (!rule || !rule.content.recognised) {
      answer.reasons = ['not-recognised-item'];
      return answer;
    }
    const canonicalUnit = terminology.canonicalUnit(r.code)?.unit;
    const item = new Set(itemCodes(r.code));
    for (const row of rows) {
      if (!item.has(row.code)) continue;
      const tier = tiers.get(row.member_id) ?? 'unknown';
      const shown = inAskedUnit(row, r.code, terminology);
      const refusal = judgeResult({ ...row, ...shown }, rule.content, { at, tier, canonicalUnit, config });
      const time = row.effective_at.toISOString();
      if (refusal) {
        answer.refused.push({ resourceId: row.resource_id, code: row.code, member: row.member_id, time, reason: refusal.reason, ...(refusal.detail ? { detail: refusal.detail } : {}) });
        continue;
      }
      const accreditation = rule.content.requireAccreditation ? accreditationOfItem(config, row) : undefined;
      answer.recognisable.push({
        resourceType: row.resource_type,
        resourceId: row.resource_id,
        code: row.code,
        member: row.member_id,
        tier,
        lab: row.lab,
        time,
        expires: new Date(row.effective_at.getTime() + rule.content.windowDays * DAY_MS).toISOString(),
        status: row.status,
        value: shown,
        original: { value: row.original_value, unit: row.original_unit },
        ...(accreditation ? { accreditation: { scheme: accreditation.scheme, validTo: accreditation.validTo ?? null } } : {}),
      });
    }
    if (!answer.recognisable.length) answer.reasons = answer.refused.length ? [...new Set(answer.refused.map((x) => x.reason))] : ['none-found'];
    return answer;
  });
  // The log (one row per test) and the audit event: this read patient data.
  const log = tests
    .filter((t) => t.code)
    .map((t) => ({ code: t.code, recognisable: t.recognisable.length > 0, resource: t.recognisable[0]?.resourceId ?? null, member: t.recognisable[0]?.member ?? null, expires: t.recognisable[0]?.expires ?? null }));
  // One transaction, so one WAL flush for both writes (the check's largest fixed cost).
  await db.transaction(async (tx) => {
    if (log.length)
      await tx.query(
        `INSERT INTO recognition_check (at, actor, requesting_member, golden_id, code, recognisable, result_resource_id, result_member, expires_at)
         SELECT $1, $2, $3, $4, code, recognisable, resource, member, expires FROM jsonb_to_recordset($5::jsonb) AS x(code text, recognisable boolean, resource text, member text, expires timestamptz)`,
        [at.toISOString(), actor, request.requestingMember, golden, JSON.stringify(log)],
        'recognition_check_log',
      );
    await recordAudit(tx, {
    actor,
    action: 'read',
    entityType: 'recognition_check',
    entityId: golden ?? patientIds.join(',') ?? '',
    patientKey: golden,
    detail: { requestingMember: request.requestingMember, codes, results: tests.reduce((n, t) => n + t.recognisable.length, 0) },
    });
  });
  return { patient: golden, sourcePatients: patientIds.length, at: at.toISOString(), requestingMember: request.requestingMember, tests };
}
