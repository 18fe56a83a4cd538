/**
 * ConceptMap versions: the approved maps every process maps with (concept_map_version, exactly one
 * active version per map) and the governance trail (mapping_event: each step with who, when and a
 * comment). Seeds the shipped maps, syncs this process's terminology with the store, imports and
 * exports maps as files, stores each new version (for the workflow too) and gives history and diff
 * between versions. Never writes resources: a new version reaches stored records only through
 * reprocess.ts.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { HubDb, Sql } from '../sql';
import { HubError } from '../../mappings/outcome';
import { validateConceptMap, type ConceptMap, type ConceptMapElement } from '../../mappings/terminology/conceptmap';
import { readConceptMapDir, shippedConceptMapDir } from '../../mappings/terminology/shipped';
import { Terminology } from '../../mappings/terminology/translator';
import { activeTerminology, activeTerminologyKey, setActiveTerminology } from './active';
import { resolveWorklist } from './worklist';

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

/** One step of the governance trail (mapping_event), written in the transaction of the step it records. */
export async function event(tx: Sql, e: { actor: string; action: string; url?: string; version?: number; proposalId?: number; comment?: string; detail?: unknown }): Promise<void> {
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
export async function newVersion(tx: Sql, map: ConceptMap, meta: { origin: string; actor: string; comment: string; proposalId?: number; status?: 'active' | 'retired' }): Promise<number> {
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

// ---- current entries ---------------------------------------------------------------------------

export interface MapEntry {
  sourceSystem: string;
  sourceCode: string;
  sourceDisplay: string | null;
  targetSystem: string;
  targetCode: string | null;
  targetDisplay: string | null;
  equivalence: string;
  /** The map version in which this entry took its current form. */
  version: number;
  /** Who made that version (the approver for a proposal, the importer for an import) and when. */
  approvedBy: string;
  approvedAt: Date;
  origin: string;
  proposalId: number | null;
}

export interface MapEntries {
  url: string;
  id: string;
  title: string | null;
  version: number;
  entries: MapEntry[];
  /** Where the map's versions, trail and diffs are (API and console). */
  history: { api: string; console: string };
}

/** A map named by its canonical url or by its id (the last path segment). */
export async function mapUrlOf(db: Sql, urlOrId: string): Promise<string> {
  const rows = await db.query<{ url: string }>(`SELECT DISTINCT url FROM concept_map_version WHERE url = $1 OR map_id = $1`, [urlOrId]);
  if (rows.rows.length === 0) throw new HubError('not-found', `no ConceptMap ${urlOrId}`);
  if (rows.rows.length > 1) throw new HubError('invalid', `${urlOrId} names several maps (${rows.rows.map((r) => r.url).join(', ')}): give the url`, 'map');
  return rows.rows[0]!.url;
}

/**
 * `yilian mappings entries` and GET /api/terminology/maps/:id/entries: the mappings in force now
 * (the active version), each with the version it took its current form in and who made that version.
 */
export async function currentEntries(db: Sql, urlOrId: string): Promise<MapEntries> {
  const url = await mapUrlOf(db, urlOrId);
  const versions = await db.query<MapVersionRow & { content: ConceptMap }>(
    `SELECT url, version, map_id, status, origin, created_by, created_at, comment, proposal_id, content FROM concept_map_version WHERE url = $1 ORDER BY version`,
    [url],
  );
  const active = versions.rows.find((v) => v.status === 'active');
  if (!active) throw new HubError('not-found', `ConceptMap ${url} has no version in force (retired)`);
  // Walk the versions up to the active one: an entry's "since" moves whenever its content changes.
  const since = new Map<string, { json: string; row: MapVersionRow }>();
  for (const row of versions.rows) {
    if (row.version > active.version) break;
    for (const g of row.content.group) {
      for (const e of g.element) {
        const key = `${g.source}\u0000${g.target}\u0000${e.code}`;
        const json = canonicalJson(e);
        if (since.get(key)?.json !== json) since.set(key, { json, row });
      }
    }
  }
  const entries: MapEntry[] = [];
  for (const g of active.content.group) {
    for (const e of g.element) {
      const made = since.get(`${g.source}\u0000${g.target}\u0000${e.code}`)!.row;
      for (const target of e.target?.length ? e.target : [{ equivalence: 'unmatched' as const }]) {
        entries.push({
          sourceSystem: g.source,
          sourceCode: e.code,
          sourceDisplay: e.display ?? null,
          targetSystem: g.target,
          targetCode: target.code ?? null,
          targetDisplay: target.display ?? null,
          equivalence: target.equivalence,
          version: made.version,
          approvedBy: made.created_by,
          approvedAt: made.created_at,
          origin: made.origin,
          proposalId: made.proposal_id,
        });
      }
    }
  }
  return {
    url,
    id: active.map_id,
    title: active.content.title ?? null,
    version: active.version,
    entries,
    history: { api: `/api/terminology/maps/${active.map_id}/history`, console: `/console/mappings/history?map=${encodeURIComponent(active.map_id)}` },
  };
}
