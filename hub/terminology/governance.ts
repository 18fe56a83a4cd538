/**
 * Mapping governance: the ConceptMap versions every process maps with, and the committee's
 * workflow over them — import/export as files, proposal → approved / rejected → retired (each step
 * with who, when and a comment in mapping_event), history and diff between versions, the impact
 * of a proposal on stored records before it is approved, and reprocessing after. Owns the tables of
 * migration 4; never writes resources except through reprocess, which re-derives only the map
 * stage's own output (mappings/terminology/mapResource.ts is idempotent).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { HubDb, Sql } from '../sql';
import { recordAudit } from '../audit';
import { HubError } from '../../mappings/outcome';
import { EQUIVALENCES, validateConceptMap, type ConceptMap, type ConceptMapElement, type Equivalence } from '../../mappings/terminology/conceptmap';
import { describeCode } from '../../mappings/terminology/codeSystems';
import { mapResource, recordOnProvenance } from '../../mappings/terminology/mapResource';
import { readConceptMapDir, shippedConceptMapDir } from '../../mappings/terminology/shipped';
import { Terminology } from '../../mappings/terminology/translator';
import { CONCEPT_MAP_BASE, ICD10, ICD10_CN, ICD11_MMS, LOINC, MAP_VERSION_URL, UCUM, WHO_MAP_URL, localSystemMember } from '../../mappings/terminology/systems';
import { activeTerminology, activeTerminologyKey, setActiveTerminology } from './active';

export interface MapVersionRow {
  url: string;
  version: number;
  map_id: string;
  status: 'active' | 'superseded' | 'retired';
  origin: string;
  created_by: string;
  created_at: Date;
  comment: string;
  proposal_id: number | null;
}

/** Load the shipped maps as version 1 the first time a store is used (one process does it). */
export async function ensureSeeded(db: HubDb): Promise<void> {
  const any = await db.query(`SELECT 1 FROM concept_map_version LIMIT 1`);
  if (any.rowCount > 0) return;
  await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(7317004)`);
    if ((await tx.query(`SELECT 1 FROM concept_map_version LIMIT 1`)).rowCount > 0) return;
    for (const map of readConceptMapDir(shippedConceptMapDir())) {
      const version = Number.parseInt(map.version, 10) || 1;
      await tx.query(`INSERT INTO concept_map_version (url, version, map_id, status, content, origin, created_by, comment) VALUES ($1, $2, $3, 'active', $4, 'shipped', 'system', 'shipped with the hub')`, [
        map.url,
        version,
        map.id,
        JSON.stringify({ ...map, version: String(version) }),
      ]);
      await tx.query(`INSERT INTO mapping_event (actor, action, concept_map_url, version, comment) VALUES ('system', 'seed', $1, $2, 'shipped with the hub')`, [map.url, version]);
    }
  });
}

export async function activeMaps(db: Sql): Promise<ConceptMap[]> {
  const rows = await db.query<{ content: ConceptMap }>(`SELECT content FROM concept_map_version WHERE status = 'active' ORDER BY url`);
  return rows.rows.map((r) => r.content);
}

/**
 * Bring this process's terminology up to the approved versions in the store; cheap when nothing
 * changed (one small query). Pipeline workers call it periodically, the API per request.
 */
const seeded = new WeakSet<HubDb>();

export async function syncTerminology(db: HubDb): Promise<Terminology> {
  if (!seeded.has(db)) {
    await ensureSeeded(db);
    seeded.add(db);
  }
  const rows = await db.query<{ url: string; version: number }>(`SELECT url, version FROM concept_map_version WHERE status = 'active' ORDER BY url`);
  const key = rows.rows.map((r) => `${r.url}|${r.version}`).join(' ');
  if (key === activeTerminologyKey()) return activeTerminology();
  const terminology = new Terminology(await activeMaps(db));
  setActiveTerminology(terminology, key);
  return terminology;
}

/**
 * Periodic sync for long-running processes (workers); returns a stop function. Every 30 s it also
 * resumes reprocess jobs whose runner died (resumeStaleReprocessJobs): any worker may pick one up,
 * the job's lease keeps it to one runner.
 */
export function startTerminologySync(db: HubDb, intervalMs = 5000, log?: (text: string) => void): () => void {
  let lastSweep = Date.now();
  const timer = setInterval(() => {
    syncTerminology(db).catch((error) => log?.(`terminology sync: ${(error as Error).message}`));
    if (Date.now() - lastSweep >= STALE_JOB_GRACE_MS) {
      lastSweep = Date.now();
      resumeStaleReprocessJobs(db, log).catch((error) => log?.(`reprocess sweep: ${(error as Error).message}`));
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** How long past its lease (or since it was created, if nobody took it) a running job waits before another process resumes it. */
const STALE_JOB_GRACE_MS = 30_000;

/**
 * Resume, in the background, the reprocess jobs left `running` by a runner that is gone: lease
 * expired for more than STALE_JOB_GRACE_MS (or never taken for that long). Returns the job ids
 * started; each runs under its own lease, so two processes sweeping at once do not both run one.
 */
export async function resumeStaleReprocessJobs(db: HubDb, log?: (text: string) => void): Promise<number[]> {
  const stale = await db.query<{ id: number }>(
    `SELECT id FROM reprocess_job WHERE state = 'running' AND coalesce(lease_until, updated_at) < clock_timestamp() - $1 * interval '1 millisecond' ORDER BY id LIMIT 5`,
    [STALE_JOB_GRACE_MS],
  );
  const ids = stale.rows.map((r) => Number(r.id));
  for (const id of ids) {
    runReprocess(db, id).then(
      (job) => log?.(`reprocess job ${id} resumed: ${job.done}/${job.total}, ${job.changed} changed`),
      (error) => log?.(`reprocess job ${id}: ${(error as Error).message}`),
    );
  }
  return ids;
}

async function event(tx: Sql, e: { actor: string; action: string; url?: string; version?: number; proposalId?: number; comment?: string; detail?: unknown }): Promise<void> {
  await tx.query(`INSERT INTO mapping_event (actor, action, concept_map_url, version, proposal_id, comment, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
    e.actor,
    e.action,
    e.url ?? null,
    e.version ?? null,
    e.proposalId ?? null,
    e.comment ?? '',
    JSON.stringify(e.detail ?? {}),
  ]);
}

/** Content that matters for "did it change" (version and date are ours). */
function sameContent(a: ConceptMap, b: ConceptMap): boolean {
  const strip = (m: ConceptMap) => canonicalJson({ ...m, version: undefined, date: undefined });
  return strip(a) === strip(b);
}

/** JSON with object keys sorted (jsonb does not keep key order; files and requests do). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Store a new active version of a map (superseding the current one) inside a transaction. */
async function newVersion(tx: Sql, map: ConceptMap, meta: { origin: string; actor: string; comment: string; proposalId?: number; status?: 'active' | 'retired' }): Promise<number> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [map.url]);
  const last = await tx.query<{ v: number | null }>(`SELECT max(version) AS v FROM concept_map_version WHERE url = $1`, [map.url]);
  const version = (last.rows[0]?.v ?? 0) + 1;
  await tx.query(`UPDATE concept_map_version SET status = 'superseded' WHERE url = $1 AND status = 'active'`, [map.url]);
  const content: ConceptMap = { ...map, version: String(version), date: new Date().toISOString(), status: meta.status === 'retired' ? 'retired' : 'active' };
  await tx.query(
    `INSERT INTO concept_map_version (url, version, map_id, status, content, origin, created_by, comment, proposal_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [map.url, version, map.id, meta.status ?? 'active', JSON.stringify(content), meta.origin, meta.actor, meta.comment, meta.proposalId ?? null],
  );
  return version;
}

export interface ImportResult {
  url: string;
  version: number | null;
  unchanged: boolean;
}

/** `yilian mappings import`: each map becomes the approved (active) version, recorded as imported by `actor`. */
export async function importConceptMaps(db: HubDb, maps: unknown[], actor: string, comment = ''): Promise<ImportResult[]> {
  await ensureSeeded(db);
  const validated = maps.map((m, i) => validateConceptMap(m, `ConceptMap[${i}]`));
  const results = await db.transaction(async (tx) => {
    const out: ImportResult[] = [];
    for (const map of validated) {
      const current = await tx.query<{ content: ConceptMap; version: number }>(`SELECT content, version FROM concept_map_version WHERE url = $1 AND status = 'active'`, [map.url]);
      if (current.rows[0] && sameContent(current.rows[0].content, { ...map, status: 'active' })) {
        out.push({ url: map.url, version: current.rows[0].version, unchanged: true });
        continue;
      }
      const version = await newVersion(tx, { ...map, status: 'active' }, { origin: 'import', actor, comment: comment || `imported ${map.id} (file version ${map.version})` });
      await event(tx, { actor, action: 'import', url: map.url, version, comment, detail: { fileVersion: map.version } });
      await resolveWorklist(tx, map);
      out.push({ url: map.url, version, unchanged: false });
    }
    return out;
  });
  await syncTerminology(db);
  return results;
}

/** `yilian mappings export`: the active versions as ConceptMap JSON files, one per map. */
export async function exportConceptMaps(db: HubDb, dir: string): Promise<string[]> {
  await ensureSeeded(db);
  mkdirSync(dir, { recursive: true });
  return (await activeMaps(db)).map((map) => {
    const file = path.join(dir, `${map.id}.json`);
    writeFileSync(file, `${JSON.stringify(map, null, 2)}\n`);
    return file;
  });
}

/** Worklist entries a map now covers are resolved. */
async function resolveWorklist(tx: Sql, map: ConceptMap): Promise<void> {
  const terminology = new Terminology([map]);
  const open = await tx.query<{ member_id: string; system: string; code: string }>(`SELECT member_id, system, code FROM unmapped_code WHERE state = 'open' AND system = ANY($1::text[])`, [map.group.map((g) => g.source)]);
  for (const row of open.rows) {
    if (terminology.translate(row.system, row.code).result) {
      await tx.query(`UPDATE unmapped_code SET state = 'resolved', resolved_at = clock_timestamp() WHERE member_id = $1 AND system = $2 AND code = $3`, [row.member_id, row.system, row.code]);
    }
  }
}

// ---- proposals ---------------------------------------------------------------------------------

export interface ProposalInput {
  sourceSystem: string;
  sourceCode: string;
  sourceDisplay?: string;
  targetSystem: string;
  targetCode?: string;
  targetDisplay?: string;
  equivalence: Equivalence;
  comment?: string;
  /** Default: the map for this source and target system (a member's local map is created when it has none). */
  conceptMapUrl?: string;
}

export interface Proposal {
  id: number;
  concept_map_url: string;
  source_system: string;
  source_code: string;
  source_display: string | null;
  target_system: string;
  target_code: string | null;
  target_display: string | null;
  equivalence: Equivalence;
  state: 'proposed' | 'approved' | 'rejected' | 'retired';
  base_version: number | null;
  result_version: number | null;
  proposed_by: string;
  proposed_at: Date;
  comment: string;
}

/** The map a proposal for (source → target) belongs to: an existing active one, or a new local one. */
export function defaultMapUrl(maps: ConceptMap[], sourceSystem: string, targetSystem: string): string {
  const found = maps.find((m) => m.url !== WHO_MAP_URL && m.group.some((g) => g.source === sourceSystem && g.target === targetSystem));
  if (found) return found.url;
  const member = localSystemMember(sourceSystem);
  const name = sourceSystem.split(':').pop()!;
  if (member) return `${CONCEPT_MAP_BASE}/${`local-${member}-${decodeURIComponent(name)}`.replace(/[^A-Za-z0-9\-.]/g, '-')}`;
  // The committee's own ICD-10 / clinical-edition additions: the WHO table is never edited (CC BY-ND).
  if (sourceSystem === ICD10 && targetSystem === ICD11_MMS) return `${CONCEPT_MAP_BASE}/icd10-icd11-committee`;
  if (sourceSystem === ICD10_CN) return `${CONCEPT_MAP_BASE}/icd10cn-icd11-committee`;
  throw new HubError('invalid', `no map from ${sourceSystem} to ${targetSystem}; name one with conceptMapUrl`, 'conceptMapUrl');
}

export { WHO_MAP_URL };

export async function propose(db: HubDb, input: ProposalInput, actor: string): Promise<Proposal> {
  await ensureSeeded(db);
  if (!EQUIVALENCES.includes(input.equivalence)) throw new HubError('invalid', `equivalence must be one of ${EQUIVALENCES.join(', ')}`, 'equivalence');
  if (input.equivalence !== 'unmatched' && !input.targetCode) throw new HubError('invalid', 'targetCode is required unless equivalence is unmatched', 'targetCode');
  if (input.targetCode && [ICD11_MMS, LOINC, ICD10, UCUM].includes(input.targetSystem)) {
    const info = describeCode(activeTerminology(), input.targetSystem, input.targetCode);
    if (!info.valid) throw new HubError('invalid', `target ${input.targetSystem}#${input.targetCode}: ${info.message}`, 'targetCode');
  }
  const maps = await activeMaps(db);
  const url = input.conceptMapUrl ?? defaultMapUrl(maps, input.sourceSystem, input.targetSystem);
  if (url === WHO_MAP_URL) throw new HubError('invalid', 'the WHO ICD-10 → ICD-11 table is shipped unaltered (CC BY-ND 3.0 IGO): propose into the committee map instead (leave conceptMapUrl out)', 'conceptMapUrl');
  const current = await db.query<{ version: number }>(`SELECT version FROM concept_map_version WHERE url = $1 AND status = 'active'`, [url]);
  return db.transaction(async (tx) => {
    const row = await tx.query<Proposal>(
      `INSERT INTO mapping_proposal (concept_map_url, source_system, source_code, source_display, target_system, target_code, target_display, equivalence, state, base_version, proposed_by, comment)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'proposed', $9, $10, $11) RETURNING *`,
      [url, input.sourceSystem, input.sourceCode, input.sourceDisplay ?? null, input.targetSystem, input.targetCode ?? null, input.targetDisplay ?? null, input.equivalence, current.rows[0]?.version ?? null, actor, input.comment ?? ''],
    );
    const proposal = row.rows[0]!;
    await event(tx, { actor, action: 'propose', url, proposalId: proposal.id, comment: input.comment });
    return proposal;
  });
}

export async function getProposal(db: Sql, id: number): Promise<Proposal> {
  const row = await db.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1`, [id]);
  if (!row.rows[0]) throw new HubError('not-found', `proposal ${id} not found`);
  return row.rows[0];
}

/** Proposals (newest first, at most 500; or the one with `id`), each with its steps (who, when, comment). */
export async function listProposals(db: Sql, state?: string, id?: number): Promise<Array<Proposal & { steps: unknown[] }>> {
  const rows =
    id !== undefined
      ? await db.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1`, [id])
      : await db.query<Proposal>(`SELECT * FROM mapping_proposal ${state ? 'WHERE state = $1' : ''} ORDER BY id DESC LIMIT 500`, state ? [state] : []);
  const steps = await db.query<{ proposal_id: number; action: string; actor: string; at: Date; comment: string; version: number | null }>(
    `SELECT proposal_id, action, actor, at, comment, version FROM mapping_event WHERE proposal_id = ANY($1::bigint[]) ORDER BY id`,
    [rows.rows.map((r) => r.id)],
  );
  return rows.rows.map((p) => ({ ...p, steps: steps.rows.filter((s) => s.proposal_id === p.id).map(({ proposal_id: _, ...s }) => s) }));
}

/** The map as it would be with the proposal applied (`remove`: with its mapping taken out). */
export function applyProposal(map: ConceptMap | undefined, p: Proposal, remove = false): ConceptMap {
  const base: ConceptMap = map
    ? (JSON.parse(JSON.stringify(map)) as ConceptMap)
    : {
        resourceType: 'ConceptMap',
        id: p.concept_map_url.split('/').pop()!,
        url: p.concept_map_url,
        version: '0',
        title: `${p.source_system} → ${p.target_system}`,
        status: 'active',
        publisher: 'Yilian Hub data-governance committee',
        group: [],
      };
  let group = base.group.find((g) => g.source === p.source_system && g.target === p.target_system);
  if (!group) base.group.push((group = { source: p.source_system, target: p.target_system, element: [] }));
  const index = group.element.findIndex((e) => e.code === p.source_code);
  if (remove) {
    if (index >= 0) {
      const element = group.element[index]!;
      element.target = (element.target ?? []).filter((t) => !(t.code === (p.target_code ?? undefined) && t.equivalence === p.equivalence));
      if (element.target.length === 0) group.element.splice(index, 1);
    }
    return base;
  }
  const element: ConceptMapElement = {
    code: p.source_code,
    ...(p.source_display ? { display: p.source_display } : {}),
    target: [{ ...(p.target_code ? { code: p.target_code } : {}), ...(p.target_display ? { display: p.target_display } : {}), equivalence: p.equivalence, ...(p.comment ? { comment: p.comment } : {}) }],
  };
  if (index >= 0) group.element[index] = element;
  else group.element.push(element);
  return base;
}

async function activeMap(tx: Sql, url: string): Promise<{ content: ConceptMap; version: number } | undefined> {
  return (await tx.query<{ content: ConceptMap; version: number }>(`SELECT content, version FROM concept_map_version WHERE url = $1 AND status = 'active'`, [url])).rows[0];
}

/** Approve: a new map version with the mapping; the worklist entry is resolved. Nothing else changes until reprocess. */
export async function approve(db: HubDb, id: number, actor: string, comment = ''): Promise<{ proposal: Proposal; version: number }> {
  const result = await db.transaction(async (tx) => {
    const locked = await tx.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1 FOR UPDATE`, [id]);
    const p = locked.rows[0];
    if (!p) throw new HubError('not-found', `proposal ${id} not found`);
    if (p.state !== 'proposed') throw new HubError('invalid', `proposal ${id} is ${p.state}; only a proposed mapping can be approved`, 'state');
    const current = await activeMap(tx, p.concept_map_url);
    const map = applyProposal(current?.content, p);
    const version = await newVersion(tx, map, { origin: 'proposal', actor, comment: comment || `approved proposal ${id}`, proposalId: id });
    const updated = await tx.query<Proposal>(`UPDATE mapping_proposal SET state = 'approved', result_version = $2 WHERE id = $1 RETURNING *`, [id, version]);
    await event(tx, { actor, action: 'approve', url: p.concept_map_url, version, proposalId: id, comment });
    await resolveWorklist(tx, map);
    return { proposal: updated.rows[0]!, version };
  });
  await syncTerminology(db);
  return result;
}

export async function reject(db: HubDb, id: number, actor: string, comment = ''): Promise<Proposal> {
  return db.transaction(async (tx) => {
    const p = (await tx.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1 FOR UPDATE`, [id])).rows[0];
    if (!p) throw new HubError('not-found', `proposal ${id} not found`);
    if (p.state !== 'proposed') throw new HubError('invalid', `proposal ${id} is ${p.state}; only a proposed mapping can be rejected`, 'state');
    const updated = await tx.query<Proposal>(`UPDATE mapping_proposal SET state = 'rejected' WHERE id = $1 RETURNING *`, [id]);
    await event(tx, { actor, action: 'reject', url: p.concept_map_url, proposalId: id, comment });
    return updated.rows[0]!;
  });
}

/** Retire an approved mapping: a new map version without it. */
export async function retire(db: HubDb, id: number, actor: string, comment = ''): Promise<{ proposal: Proposal; version: number }> {
  const result = await db.transaction(async (tx) => {
    const p = (await tx.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1 FOR UPDATE`, [id])).rows[0];
    if (!p) throw new HubError('not-found', `proposal ${id} not found`);
    if (p.state !== 'approved') throw new HubError('invalid', `proposal ${id} is ${p.state}; only an approved mapping can be retired`, 'state');
    const current = await activeMap(tx, p.concept_map_url);
    const version = await newVersion(tx, applyProposal(current?.content, p, true), { origin: 'retirement', actor, comment: comment || `retired proposal ${id}`, proposalId: id });
    const updated = await tx.query<Proposal>(`UPDATE mapping_proposal SET state = 'retired' WHERE id = $1 RETURNING *`, [id]);
    await event(tx, { actor, action: 'retire', url: p.concept_map_url, version, proposalId: id, comment });
    return { proposal: updated.rows[0]!, version };
  });
  await syncTerminology(db);
  return result;
}

// ---- history and diff --------------------------------------------------------------------------

export async function mapHistory(db: Sql, url: string): Promise<{ versions: MapVersionRow[]; events: unknown[] }> {
  const versions = await db.query<MapVersionRow>(`SELECT url, version, map_id, status, origin, created_by, created_at, comment, proposal_id FROM concept_map_version WHERE url = $1 ORDER BY version`, [url]);
  if (versions.rowCount === 0) throw new HubError('not-found', `no ConceptMap ${url}`);
  const events = await db.query(`SELECT at, actor, action, version, proposal_id, comment FROM mapping_event WHERE concept_map_url = $1 ORDER BY id`, [url]);
  return { versions: versions.rows, events: events.rows };
}

export interface MapDiffEntry {
  source: string;
  target: string;
  code: string;
  change: 'added' | 'removed' | 'changed';
  before?: ConceptMapElement;
  after?: ConceptMapElement;
}

/** Element-level difference between two versions of a map (or two maps). */
export function diffMaps(before: ConceptMap, after: ConceptMap): MapDiffEntry[] {
  const index = (m: ConceptMap) => {
    const out = new Map<string, { source: string; target: string; element: ConceptMapElement }>();
    for (const g of m.group) for (const e of g.element) out.set(`${g.source}\u0000${g.target}\u0000${e.code}`, { source: g.source, target: g.target, element: e });
    return out;
  };
  const a = index(before);
  const b = index(after);
  const out: MapDiffEntry[] = [];
  for (const [key, x] of a) {
    const y = b.get(key);
    if (!y) out.push({ source: x.source, target: x.target, code: x.element.code, change: 'removed', before: x.element });
    else if (JSON.stringify(x.element) !== JSON.stringify(y.element)) out.push({ source: x.source, target: x.target, code: x.element.code, change: 'changed', before: x.element, after: y.element });
  }
  for (const [key, y] of b) if (!a.has(key)) out.push({ source: y.source, target: y.target, code: y.element.code, change: 'added', after: y.element });
  return out;
}

export async function diffVersions(db: Sql, url: string, from: number, to: number): Promise<MapDiffEntry[]> {
  const rows = await db.query<{ version: number; content: ConceptMap }>(`SELECT version, content FROM concept_map_version WHERE url = $1 AND version = ANY($2::int[])`, [url, [from, to]]);
  const before = rows.rows.find((r) => r.version === from);
  const after = rows.rows.find((r) => r.version === to);
  if (!before || !after) throw new HubError('not-found', `${url}: version ${!before ? from : to} not found`);
  return diffMaps(before.content, after.content);
}

// ---- impact and reprocess ----------------------------------------------------------------------

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
function affectedWhere(codes: SourceCode[], firstParam: number): { sql: string; params: string[] } {
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

export interface ReprocessJob {
  id: number;
  state: 'running' | 'done' | 'failed';
  source_codes: SourceCode[];
  reason: string;
  total: number;
  done: number;
  changed: number;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  error: string | null;
  /** Who runs it now (host:pid:random) and until when its lease holds; null when nobody does. */
  runner: string | null;
  lease_until: Date | null;
}

/** Create a reprocess job for the records carrying these source codes (run it with runReprocess). */
export async function createReprocessJob(db: HubDb, codes: SourceCode[], actor: string, reason = ''): Promise<ReprocessJob> {
  if (!codes.length) throw new HubError('invalid', 'give at least one source code to reprocess', 'codes');
  const where = affectedWhere(codes, 1);
  const total = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM resource WHERE ${where.sql}`, where.params);
  return db.transaction(async (tx) => {
    const job = await tx.query<ReprocessJob>(`INSERT INTO reprocess_job (state, source_codes, reason, total, created_by) VALUES ('running', $1, $2, $3, $4) RETURNING *`, [
      JSON.stringify(codes),
      reason,
      total.rows[0]!.n,
      actor,
    ]);
    await event(tx, { actor, action: 'reprocess', comment: reason, detail: { job: job.rows[0]!.id, codes } });
    return job.rows[0]!;
  });
}

/** The reprocess job for an approved (or retired) proposal's source code. */
export async function reprocessProposal(db: HubDb, id: number, actor: string): Promise<ReprocessJob> {
  const p = await getProposal(db, id);
  if (p.state !== 'approved' && p.state !== 'retired') throw new HubError('invalid', `proposal ${id} is ${p.state}: reprocess follows an approval or a retirement`, 'state');
  return createReprocessJob(db, [{ system: p.source_system, code: p.source_code }], actor, `proposal ${id} ${p.state}`);
}

export async function getReprocessJob(db: Sql, id: number): Promise<ReprocessJob> {
  const job = (await db.query<ReprocessJob>(`SELECT * FROM reprocess_job WHERE id = $1`, [id])).rows[0];
  if (!job) throw new HubError('not-found', `reprocess job ${id} not found`);
  return job;
}

/** A runner's identity on the job row: host, process and a random part (two runs in one process differ). */
function runnerId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/** Thrown when the job is held by another runner whose lease has not run out. */
function heldBy(job: { id: number; runner: string | null; lease_until: Date | null }): HubError {
  return new HubError('invalid', `reprocess job ${job.id} is being run by ${job.runner} (lease until ${job.lease_until?.toISOString()}); it resumes here once that lease runs out`, 'job', true);
}

/**
 * Run (or resume) a job: re-derive the map stage's output on each affected resource with the
 * active maps, in key order, batch by batch, recording the last key after each batch. Idempotent:
 * a resource already up to date is not written; running a finished or interrupted job again is safe.
 *
 * One runner at a time (migration 9): the runner takes a lease on the job row, renews it with every
 * batch and on a timer between, and writes each batch only while it still holds the lease — a
 * second runner is refused while the lease is live, and takes over (from the last key) once a
 * crashed runner's lease has run out. Each batch also rewrites, for the messages whose resources
 * changed, every row's `mapping_versions` and the message Provenance's ConceptMap entities, so the
 * record of which map versions derived the stored state stays true after a reprocess.
 */
export async function runReprocess(db: HubDb, id: number, options: { batchSize?: number; leaseMs?: number; onProgress?: (job: ReprocessJob) => unknown } = {}): Promise<ReprocessJob> {
  const terminology = await syncTerminology(db);
  const me = runnerId();
  const leaseMs = options.leaseMs ?? 30_000;
  const current = await getReprocessJob(db, id);
  if (current.state === 'done') return current;
  const taken = await db.query<ReprocessJob & { last_type: string | null; last_id: string | null }>(
    `UPDATE reprocess_job SET runner = $2, lease_until = clock_timestamp() + $3 * interval '1 millisecond', state = 'running', error = NULL, updated_at = clock_timestamp()
      WHERE id = $1 AND state <> 'done' AND (runner IS NULL OR lease_until IS NULL OR lease_until < clock_timestamp())
      RETURNING *`,
    [id, me, leaseMs],
  );
  if (taken.rowCount === 0) {
    const now = await getReprocessJob(db, id);
    if (now.state === 'done') return now;
    throw heldBy(now);
  }
  let job: ReprocessJob = taken.rows[0]!;
  let lost = false;
  const heartbeat = setInterval(() => {
    db.query(`UPDATE reprocess_job SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' WHERE id = $1 AND runner = $2`, [id, me, leaseMs])
      .then((r) => {
        if (r.rowCount === 0) lost = true;
      })
      .catch(() => undefined);
  }, Math.max(50, Math.floor(leaseMs / 3)));
  heartbeat.unref();
  const codes = job.source_codes;
  const where = affectedWhere(codes, 3);
  const batchSize = options.batchSize ?? 200;
  let lastType = taken.rows[0]!.last_type ?? '';
  let lastId = taken.rows[0]!.last_id ?? '';
  try {
    for (;;) {
      if (lost) throw new HubError('invalid', `reprocess job ${id}: this runner lost its lease; another runner continues`, 'job', true);
      const rows = await db.query<{ resource_type: string; id: string; raw_id: number; content: Record<string, unknown> }>(
        `SELECT resource_type, id, raw_id, content FROM resource WHERE (resource_type, id) > ($1, $2) AND ${where.sql} ORDER BY resource_type, id LIMIT ${batchSize}`,
        [lastType, lastId, ...where.params],
      );
      if (rows.rowCount === 0) break;
      await db.transaction(async (tx) => {
        // Fencing first: the batch is written only by the lease holder, and the lease is renewed.
        const held = await tx.query(`UPDATE reprocess_job SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' WHERE id = $1 AND runner = $2`, [id, me, leaseMs]);
        if (held.rowCount === 0) {
          lost = true;
          throw new HubError('invalid', `reprocess job ${id}: this runner lost its lease; another runner continues`, 'job', true);
        }
        let changed = 0;
        const messages = new Set<number>();
        for (const row of rows.rows) {
          const content = JSON.parse(JSON.stringify(row.content)) as Record<string, unknown>;
          mapResource(content, { terminology });
          if (canonicalJson(content) === canonicalJson(row.content)) continue;
          // Same raw id: the counting trigger does not see a new occurrence.
          const updated = await tx.query(
            `UPDATE resource SET content = $3, version = version + 1, updated_at = clock_timestamp() WHERE resource_type = $1 AND id = $2 AND content = $4::jsonb`,
            [row.resource_type, row.id, JSON.stringify(content), JSON.stringify(row.content)],
          );
          changed += updated.rowCount;
          if (updated.rowCount) messages.add(Number(row.raw_id));
        }
        for (const rawId of messages) await rewriteMessageProvenance(tx, rawId);
        const tail = rows.rows[rows.rows.length - 1]!;
        lastType = tail.resource_type;
        lastId = tail.id;
        await tx.query(`UPDATE reprocess_job SET done = done + $2, changed = changed + $3, last_type = $4, last_id = $5, updated_at = clock_timestamp() WHERE id = $1 AND runner = $6`, [
          id,
          rows.rowCount,
          changed,
          lastType,
          lastId,
          me,
        ]);
      });
      job = await getReprocessJob(db, id);
      await options.onProgress?.(job);
    }
    const finished = await db.query(
      `UPDATE reprocess_job SET state = 'done', error = NULL, runner = NULL, lease_until = NULL, finished_at = clock_timestamp(), updated_at = clock_timestamp() WHERE id = $1 AND runner = $2`,
      [id, me],
    );
    if (finished.rowCount === 0) throw new HubError('invalid', `reprocess job ${id}: this runner lost its lease; another runner continues`, 'job', true);
  } catch (error) {
    // Only the lease holder records the failure and lets go; a runner that lost the lease leaves the row to the new one.
    await db.query(`UPDATE reprocess_job SET state = 'failed', error = $2, runner = NULL, lease_until = NULL, updated_at = clock_timestamp() WHERE id = $1 AND runner = $3`, [id, (error as Error).message, me]);
    throw error;
  } finally {
    clearInterval(heartbeat);
  }
  return getReprocessJob(db, id);
}

/**
 * After a reprocess changed resources of one message: the map versions that derived what is stored
 * from it (the union over its current resources' meta, as the map stage computes it) go on every
 * row of the message (`mapping_versions`, as the merge writes it) and on its Provenance as
 * ConceptMap entities (mappings/terminology/mapResource.ts `recordOnProvenance`, the same function the map stage uses).
 */
async function rewriteMessageProvenance(tx: Sql, rawId: number): Promise<void> {
  const rows = await tx.query<{ resource_type: string; id: string; content: Record<string, unknown>; mapping_versions: string[] }>(
    `SELECT resource_type, id, content, mapping_versions FROM resource WHERE raw_id = $1 ORDER BY resource_type, id`,
    [rawId],
  );
  const versions = new Set<string>();
  for (const row of rows.rows) {
    const meta = row.content.meta as { extension?: Array<{ url: string; valueCanonical?: string }> } | undefined;
    for (const e of meta?.extension ?? []) if (e.url === MAP_VERSION_URL && e.valueCanonical) versions.add(e.valueCanonical);
  }
  const mappingVersions = [...versions].sort();
  for (const row of rows.rows) {
    if (row.resource_type === 'Provenance') {
      const content = JSON.parse(JSON.stringify(row.content)) as Record<string, unknown>;
      recordOnProvenance(content, mappingVersions);
      if (canonicalJson(content) !== canonicalJson(row.content)) {
        await tx.query(`UPDATE resource SET content = $3, mapping_versions = $4, version = version + 1, updated_at = clock_timestamp() WHERE resource_type = $1 AND id = $2`, [row.resource_type, row.id, JSON.stringify(content), mappingVersions]);
        continue;
      }
    }
    if (row.mapping_versions.join(' ') !== mappingVersions.join(' ')) {
      await tx.query(`UPDATE resource SET mapping_versions = $3 WHERE resource_type = $1 AND id = $2`, [row.resource_type, row.id, mappingVersions]);
    }
  }
}

// ---- worklist and coverage ---------------------------------------------------------------------

export interface WorklistFilter {
  member?: string;
  system?: string;
  state?: 'open' | 'resolved';
  limit?: number;
}

export async function worklist(db: Sql, filter: WorklistFilter = {}): Promise<unknown[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(sql.replace('?', `$${params.length}`));
  };
  add('state = ?', filter.state ?? 'open');
  if (filter.member) add('member_id = ?', filter.member);
  if (filter.system) add('system = ?', filter.system);
  params.push(filter.limit ?? 200);
  const rows = await db.query(
    `SELECT member_id AS member, system, code, display, occurrences AS count, first_seen, last_seen, example_raw_id, state FROM unmapped_code WHERE ${where.join(' AND ')} ORDER BY occurrences DESC, system, code LIMIT $${params.length}`,
    params,
  );
  return rows.rows;
}

export interface CoverageRow {
  member: string;
  channel: string;
  system: string;
  occurrences: number;
  mappedOccurrences: number;
  occurrencePct: number;
  distinctCodes: number;
  mappedCodes: number;
  distinctPct: number;
}

export interface CoverageReport {
  from: string | null;
  to: string | null;
  rows: CoverageRow[];
  /** All members (or the one asked for) together, per day. */
  trend: Array<{ day: string; occurrences: number; mappedOccurrences: number; occurrencePct: number }>;
  /** The same per day and per member, channel and code system: how each one's coverage moves. */
  trendBy: Array<{ day: string; member: string; channel: string; system: string; occurrences: number; mappedOccurrences: number; occurrencePct: number }>;
}

const pct = (a: number, b: number) => (b === 0 ? 0 : Math.round((a / b) * 10_000) / 100);

/**
 * Coverage per member, channel and source code system: % of occurrences mapped and % of distinct
 * codes mapped (a code counts as mapped when its occurrences were mapped when stored), plus the
 * daily trend, overall and per member, channel and system. Sums over coded_element_day only.
 */
export async function coverage(db: Sql, options: { from?: string; to?: string; member?: string } = {}): Promise<CoverageReport> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (options.from) where.push(`day >= $${params.push(options.from)}::date`);
  if (options.to) where.push(`day <= $${params.push(options.to)}::date`);
  if (options.member) where.push(`member_id = $${params.push(options.member)}`);
  const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const rows = await db.query<{ member: string; channel: string; system: string; occurrences: number; mapped_occurrences: number; distinct_codes: number; mapped_codes: number }>(
    `WITH per_code AS (
       SELECT member_id, channel_id, system, code, sum(occurrences) AS n, sum(occurrences) FILTER (WHERE mapped) AS m
         FROM coded_element_day ${w} GROUP BY member_id, channel_id, system, code
     )
     SELECT member_id AS member, channel_id AS channel, system, sum(n)::bigint AS occurrences, coalesce(sum(m), 0)::bigint AS mapped_occurrences,
            count(*)::int AS distinct_codes, count(*) FILTER (WHERE m = n)::int AS mapped_codes
       FROM per_code GROUP BY member_id, channel_id, system ORDER BY member_id, channel_id, system`,
    params,
  );
  const trend = await db.query<{ day: string; occurrences: number; mapped: number }>(
    `SELECT day::text AS day, sum(occurrences)::bigint AS occurrences, coalesce(sum(occurrences) FILTER (WHERE mapped), 0)::bigint AS mapped FROM coded_element_day ${w} GROUP BY day ORDER BY day`,
    params,
  );
  const trendBy = await db.query<{ day: string; member: string; channel: string; system: string; occurrences: number; mapped: number }>(
    `SELECT day::text AS day, member_id AS member, channel_id AS channel, system, sum(occurrences)::bigint AS occurrences, coalesce(sum(occurrences) FILTER (WHERE mapped), 0)::bigint AS mapped
       FROM coded_element_day ${w} GROUP BY day, member_id, channel_id, system ORDER BY day, member_id, channel_id, system`,
    params,
  );
  return {
    from: options.from ?? null,
    to: options.to ?? null,
    rows: rows.rows.map((r) => ({
      member: r.member,
      channel: r.channel,
      system: r.system,
      occurrences: Number(r.occurrences),
      mappedOccurrences: Number(r.mapped_occurrences),
      occurrencePct: pct(Number(r.mapped_occurrences), Number(r.occurrences)),
      distinctCodes: r.distinct_codes,
      mappedCodes: r.mapped_codes,
      distinctPct: pct(r.mapped_codes, r.distinct_codes),
    })),
    trend: trend.rows.map((t) => ({ day: t.day, occurrences: Number(t.occurrences), mappedOccurrences: Number(t.mapped), occurrencePct: pct(Number(t.mapped), Number(t.occurrences)) })),
    trendBy: trendBy.rows.map((t) => ({ day: t.day, member: t.member, channel: t.channel, system: t.system, occurrences: Number(t.occurrences), mappedOccurrences: Number(t.mapped), occurrencePct: pct(Number(t.mapped), Number(t.occurrences)) })),
  };
}

