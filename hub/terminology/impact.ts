/**
 * The impact of a proposal on stored records before it is approved: a dry run that re-derives the
 * affected resources with the proposal applied and reports what would change. Also owns which
 * stored resources a source code reaches (affectedWhere), the selection reprocess.ts then runs
 * over. Never writes resources; the sample it shows is patient data, so reading it is audited.
 */
import type { HubDb } from '../sql';
import { recordAudit } from '../audit';
import { mapResource } from '../../mappings/terminology/mapResource';
import { Terminology } from '../../mappings/terminology/translator';
import { ICD10, ICD10_CN } from '../../mappings/terminology/systems';
import { activeMaps } from './versions';
import { applyProposal, getProposal } from './workflow';

export interface SourceCode {
  system: string;
  code: string;
}

/**
 * Stored resources whose map-stage output names one of these source codes (mapped or not). An
 * ICD-10 code also reaches the codes that resolve through it: its subcategories and the clinical
 * edition codes that refine it (`E11.9` → `E11.900`), which walk up to it when they have no row of
 * their own; the re-derivation then tells which of them really change.
 */
export function affectedWhere(codes: SourceCode[], firstParam: number): { sql: string; params: string[] } {
  const params: string[] = [];
  const terms: string[] = [];
  for (const c of codes) {
    // The first condition is what the index (migration 4, resource_mapping_sources) answers.
    params.push(JSON.stringify([c.code]));
    params.push(JSON.stringify([{ valueCoding: { system: c.system, code: c.code } }]));
    terms.push(
      `(jsonb_path_query_array(content, '$.meta.extension[*].valueCoding.code') @> $${firstParam + params.length - 2}::jsonb AND content->'meta'->'extension' @> $${firstParam + params.length - 1}::jsonb)`,
    );
    if (c.system === ICD10 || c.system === ICD10_CN) {
      params.push(JSON.stringify({ a: ICD10, b: ICD10_CN, c: c.code }));
      terms.push(`jsonb_path_exists(content, '$.meta.extension[*].valueCoding ? ((@.system == $a || @.system == $b) && @.code starts with $c)', $${firstParam + params.length - 1}::jsonb)`);
    }
  }
  return { sql: `(${terms.join(' OR ')})`, params };
}

export interface FieldChange {
  path: string;
  before?: unknown;
  after?: unknown;
}

/** Field-level difference of two JSON values (paths like `code.coding[1].code`). */
export function jsonDiff(before: unknown, after: unknown, at = ''): FieldChange[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (Array.isArray(before) && Array.isArray(after)) {
    const out: FieldChange[] = [];
    for (let i = 0; i < Math.max(before.length, after.length); i++) out.push(...jsonDiff(before[i], after[i], `${at}[${i}]`));
    return out;
  }
  if (isObj(before) && isObj(after)) {
    const out: FieldChange[] = [];
    for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) out.push(...jsonDiff(before[k], after[k], at ? `${at}.${k}` : k));
    return out;
  }
  return [{ path: at, ...(before !== undefined ? { before } : {}), ...(after !== undefined ? { after } : {}) }];
}

export interface ImpactReport {
  proposalId: number;
  affected: number;
  wouldChange: number;
  byResourceType: Record<string, number>;
  sample: Array<{ resourceType: string; id: string; memberId: string; changes: FieldChange[] }>;
}

/**
 * Dry run: which stored records the proposal would change and how (a field-level diff of a
 * sample), computed with the current maps plus the proposal; nothing is written. The sample is
 * patient data: reading it is audited.
 */
export async function impactOfProposal(db: HubDb, id: number, actor: string, sampleSize = 10): Promise<ImpactReport> {
  const p = await getProposal(db, id);
  const maps = await activeMaps(db);
  const current = maps.find((m) => m.url === p.concept_map_url);
  // The version an approval would make, so the sample shows exactly what reprocess will write.
  const candidate = { ...applyProposal(current, p, p.state === 'approved'), version: String((Number(current?.version) || 0) + 1) };
  const terminology = new Terminology([...maps.filter((m) => m.url !== p.concept_map_url), candidate]);
  const where = affectedWhere([{ system: p.source_system, code: p.source_code }], 3);
  const report: ImpactReport = { proposalId: id, affected: 0, wouldChange: 0, byResourceType: {}, sample: [] };
  // In key-ordered pages, so a code on a million records does not sit in memory at once.
  let lastType = '';
  let lastId = '';
  for (;;) {
    const rows = await db.query<{ resource_type: string; id: string; member_id: string; content: Record<string, unknown> }>(
      `SELECT resource_type, id, member_id, content FROM resource WHERE (resource_type, id) > ($1, $2) AND ${where.sql} ORDER BY resource_type, id LIMIT 500`,
      [lastType, lastId, ...where.params],
    );
    if (rows.rowCount === 0) break;
    report.affected += rows.rowCount;
    for (const row of rows.rows) {
      const after = JSON.parse(JSON.stringify(row.content)) as Record<string, unknown>;
      mapResource(after, { terminology });
      const changes = jsonDiff(row.content, after);
      if (!changes.length) continue;
      report.wouldChange++;
      report.byResourceType[row.resource_type] = (report.byResourceType[row.resource_type] ?? 0) + 1;
      if (report.sample.length < sampleSize) report.sample.push({ resourceType: row.resource_type, id: row.id, memberId: row.member_id, changes });
    }
    const tail = rows.rows[rows.rows.length - 1]!;
    lastType = tail.resource_type;
    lastId = tail.id;
  }
  if (report.sample.length) {
    await recordAudit(db, { actor, action: 'read', entityType: 'resource', entityId: `impact of mapping proposal ${id}`, detail: { resources: report.sample.map((s) => `${s.resourceType}/${s.id}`) } });
  }
  return report;
}
