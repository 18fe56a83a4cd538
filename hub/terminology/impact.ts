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
import { ICD10, ICD10_CN, ICD11_MMS, LOINC, SNOMED, UCUM } from '../../mappings/terminology/systems';
import { activeMaps } from './versions';
import { activeTerminology } from './active';
import { describeCode } from '../../mappings/terminology/codeSystems';
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

/** One element of a record as the committee reads it: its label, before and after as code + display. */
export interface ElementChange {
  /** `Observation.code`, `Observation.valueQuantity`… */
  element: string;
  label: { zh: string; en: string };
  /** Before, as code + display (`GLU 葡萄糖`); `—` when absent. */
  before: string;
  /** After: the codings added (`+ LOINC 14749-6 Glucose [Moles/volume]`) and removed (`− …`), or the new value. */
  after: string;
}

export interface ImpactReport {
  proposalId: number;
  affected: number;
  wouldChange: number;
  byResourceType: Record<string, number>;
  /** Records × elements: how many of the changing records change in each element. */
  elements: Array<{ element: string; label: { zh: string; en: string }; records: number }>;
  /** `elements`: the readable table per record; `changes`: the raw field-level diff. */
  sample: Array<{ resourceType: string; id: string; memberId: string; elements: ElementChange[]; changes: FieldChange[] }>;
}

/** Labels of the elements a mapping changes; others are named by their path. */
const ELEMENT_LABELS: Record<string, { zh: string; en: string }> = {
  'Observation.code': { zh: '检验项目', en: 'Test' },
  'Observation.valueQuantity': { zh: '结果', en: 'Result' },
  'Observation.referenceRange': { zh: '参考范围', en: 'Reference range' },
  'Observation.interpretation': { zh: '结果解释', en: 'Interpretation' },
  'DiagnosticReport.code': { zh: '报告项目', en: 'Report' },
  'Condition.code': { zh: '诊断', en: 'Diagnosis' },
  'Procedure.code': { zh: '手术操作', en: 'Procedure' },
  'Encounter.reasonCode': { zh: '就诊原因', en: 'Reason for visit' },
  'Encounter.diagnosis': { zh: '诊断', en: 'Diagnosis' },
  'ServiceRequest.code': { zh: '申请项目', en: 'Requested test' },
  'MedicationRequest.medicationCodeableConcept': { zh: '药品', en: 'Medication' },
};

const SYSTEM_NAMES: Record<string, string> = { [LOINC]: 'LOINC', [ICD11_MMS]: 'ICD-11', [ICD10]: 'ICD-10', [ICD10_CN]: 'ICD-10 国家临床版', [UCUM]: 'UCUM', [SNOMED]: 'SNOMED CT' };

interface Coding {
  system?: string;
  code?: string;
  display?: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A coding as read aloud: a standard one with its system's short name (and its title when the coding has none); a member's local one by code + display. */
function codingText(c: Coding): string {
  const system = c.system ? SYSTEM_NAMES[c.system] : undefined;
  let display = c.display;
  if (!display && system && c.system && c.code) {
    try {
      display = describeCode(activeTerminology(), c.system, c.code).display;
    } catch {
      display = undefined; // a title is a courtesy: never let it fail the dry run
    }
  }
  return [system, c.code, display].filter(Boolean).join(' ');
}

function codingsOf(value: unknown): Coding[] {
  const concepts = Array.isArray(value) ? value : [value];
  return concepts.flatMap((c) => (isObject(c) && Array.isArray(c.coding) ? (c.coding as Coding[]) : []));
}

/** A quantity as read aloud: value and unit, and its UCUM code once it has one (`5.6 mmol/L [UCUM mmol/L]`). */
function quantityText(q: Record<string, unknown>): string {
  const text = [q.value, q.unit ?? q.code].filter((x) => x !== undefined && x !== null).join(' ');
  return q.system === UCUM && q.code !== undefined ? `${text} [UCUM ${String(q.code)}]` : text;
}

const isQuantity = (v: unknown): v is Record<string, unknown> => isObject(v) && ('value' in v || 'unit' in v || 'code' in v) && !('coding' in v);

function valueText(value: unknown): string {
  if (value === undefined || value === null) return '—';
  if (Array.isArray(value) && value.length && value.every((v) => isObject(v) && ('low' in v || 'high' in v))) {
    // Reference ranges: low – high, as the lab prints them.
    return value.map((r: Record<string, unknown>) => `${isQuantity(r.low) ? quantityText(r.low) : ''} – ${isQuantity(r.high) ? quantityText(r.high) : ''}`.trim()).join('; ');
  }
  if (isQuantity(value)) return quantityText(value);
  if (codingsOf(value).length) return codingsOf(value).map(codingText).join('; ');
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * The raw diff folded into the elements a committee reads: per top-level element (the resource's
 * own bookkeeping in `meta` left to the raw diff), before and after as code + display; a coded
 * element shows the codings added (+) and removed (−).
 */
export function elementChanges(resourceType: string, before: Record<string, unknown>, after: Record<string, unknown>): ElementChange[] {
  const out: ElementChange[] = [];
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (key === 'meta' || JSON.stringify(before[key]) === JSON.stringify(after[key])) continue;
    const element = `${resourceType}.${key}`;
    const label = ELEMENT_LABELS[element] ?? { zh: key, en: key };
    const b = codingsOf(before[key]);
    const a = codingsOf(after[key]);
    let afterText: string;
    if (b.length || a.length) {
      const same = (x: Coding, y: Coding) => x.system === y.system && x.code === y.code && x.display === y.display;
      const added = a.filter((x) => !b.some((y) => same(x, y)));
      const removed = b.filter((x) => !a.some((y) => same(x, y)));
      afterText = [...added.map((c) => `+ ${codingText(c)}`), ...removed.map((c) => `− ${codingText(c)}`)].join('; ') || valueText(after[key]);
    } else afterText = valueText(after[key]);
    out.push({ element, label, before: valueText(before[key]), after: afterText });
  }
  return out;
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
  const report: ImpactReport = { proposalId: id, affected: 0, wouldChange: 0, byResourceType: {}, elements: [], sample: [] };
  const perElement = new Map<string, { element: string; label: { zh: string; en: string }; records: number }>();
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
      const elements = elementChanges(row.resource_type, row.content, after);
      for (const e of elements) {
        const seen = perElement.get(e.element) ?? { element: e.element, label: e.label, records: 0 };
        seen.records++;
        perElement.set(e.element, seen);
      }
      if (report.sample.length < sampleSize) report.sample.push({ resourceType: row.resource_type, id: row.id, memberId: row.member_id, elements, changes });
    }
    const tail = rows.rows[rows.rows.length - 1]!;
    lastType = tail.resource_type;
    lastId = tail.id;
  }
  report.elements = [...perElement.values()].sort((a, b) => b.records - a.records || a.element.localeCompare(b.element));
  if (report.sample.length) {
    await recordAudit(db, { actor, action: 'read', entityType: 'resource', entityId: `impact of mapping proposal ${id}`, detail: { resources: report.sample.map((s) => `${s.resourceType}/${s.id}`) } });
  }
  return report;
}

/** An element's label as the CLI prints it: Chinese and English when they differ (`检验项目 Test`). */
function labelText(label: { zh: string; en: string }): string {
  return label.zh === label.en ? label.zh : `${label.zh} ${label.en}`;
}

/**
 * The dry run as text, for `yilian mappings impact`: the summary, records × elements, then per
 * sampled record its elements with before → after as code + display — the same ElementChange
 * rows the console's proposal page lays out as tables (its raw diff is `--json`).
 */
export function formatImpact(report: ImpactReport, memberName: (id: string) => string = (id) => id): string {
  const lines = [
    `proposal ${report.proposalId}: ${report.affected} stored records carry the source code, ${report.wouldChange} would change${
      Object.keys(report.byResourceType).length ? ` (${Object.entries(report.byResourceType).map(([type, n]) => `${type} ${n}`).join(', ')})` : ''
    }`,
  ];
  if (report.elements.length) {
    lines.push('', 'records × elements:');
    // Padded by terminal columns: a Chinese character takes two.
    const columns = (text: string) => [...text].reduce((n, c) => n + (/[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/.test(c) ? 2 : 1), 0);
    const names = report.elements.map((e) => `${labelText(e.label)} (${e.element})`);
    const width = Math.max(...names.map(columns));
    report.elements.forEach((e, i) => lines.push(`  ${names[i]}${' '.repeat(width - columns(names[i]!))}  ${String(e.records).padStart(6)} of ${report.wouldChange}`));
  }
  for (const s of report.sample) {
    const name = memberName(s.memberId);
    lines.push('', `${s.resourceType}/${s.id} · ${name === s.memberId ? name : `${name} (${s.memberId})`}`);
    for (const e of s.elements) lines.push(`  ${labelText(e.label)}: ${e.before} → ${e.after}`);
  }
  if (report.sample.length < report.wouldChange) lines.push('', `(${report.sample.length} of ${report.wouldChange} records shown; --json for the raw field diff)`);
  else if (report.sample.length) lines.push('', '(--json for the raw field diff)');
  return `${lines.join('\n')}\n`;
}
