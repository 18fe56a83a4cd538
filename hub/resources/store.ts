/**
 * The unified shared-resource index in PostgreSQL (tables of migration 12, hub/resources/schema.ts):
 * every member's report of an Organization, Location, Device, Practitioner, PractitionerRole or
 * HealthcareService (a `resource` row), every alliance member itself, and every role a message
 * implies (an expert scheduled at a community member, SIU AIP-3) is linked to one unified record.
 *
 * Fed incrementally from the `resource` table, like the patient index from `source_patient`:
 * `syncSharedResources` matches the reports that are new or whose version changed since they were
 * last matched, so it can run on a timer (`yilian serve`), before an API read, or from the CLI, any
 * number of times (an advisory lock makes concurrent runs take turns; a run with nothing to do is
 * one index probe). It never touches the pipeline's tables.
 *
 * Rules it keeps: a unified id is issued once (derived from the report that founded it) and never
 * changes; a report stays with its unified record as long as the rules still link it; two unified
 * records found to be one are merged into the older, the other keeps its row with `merged_into`
 * so its id still resolves. Types are matched in dependency order (organisations before the
 * devices, services and roles whose keys name them).
 */
import { createHash } from 'node:crypto';
import type { HubDb, Sql } from '../sql';
import { runPeriodically } from '../periodic';
import {
  compare,
  derivedRole,
  matchKeys,
  MEMBER_SYSTEM,
  MEMBER_TIER_SYSTEM,
  nameOf,
  normaliseLabel,
  SHARED_RESOURCE_TYPES,
  survive,
  veto,
  type MatchKeys,
  type SharedResourceType,
  type SharedSource,
} from './rules';

const LOCK = 7317012;
const MAX_CANDIDATES = 200;
/** Rules whose evidence is an identity (a serial, a licence number), not a name. */
const STRONG_RULES = ['sn', 'udi', 'uscc', 'orgcode', 'identifier', 'role'];
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface SharedSyncSummary {
  seen: number;
  created: number;
  linked: number;
  moved: number;
  merged: number;
  unchanged: number;
  ms: number;
}

interface StoredSource {
  resource_type: string;
  source_id: string;
  member_id: string;
  unified_id: string;
  strong_keys: string[];
  weak_keys: string[];
  rule: string;
  content: Json;
  source_version: number;
  source_updated_at: Date;
}

interface PendingSource extends SharedSource {
  version: number;
  /** False when the dirty query saw no `shared_source` row (saves a look-up per new report). */
  known?: boolean;
}

/**
 * The id a report founds: deterministic, so the same founding report gives the same id on a
 * rebuild. An alliance member founds its Organization under its own readable id (`member-<id>`,
 * the id the FHIR API has always given members).
 */
function foundingId(type: string, sourceId: string, n: number): string {
  if (type === 'Organization' && n === 0 && /^member-[A-Za-z0-9\-.]{1,50}$/.test(sourceId)) return sourceId;
  return createHash('sha256').update(`unified\0${type}\0${sourceId}\0${n}`).digest('hex').slice(0, 40);
}

/** Caches of one sync run (cleared on every merge): unified id → live id, reference → unified id. */
interface SyncState {
  live: Map<string, string>;
  refs: Map<string, string | undefined>;
}

/** Follow merges to the live unified record. */
async function live(tx: Sql, id: string, state?: SyncState): Promise<string> {
  const cached = state?.live.get(id);
  if (cached) return cached;
  const found = await followMerges(tx, id);
  state?.live.set(id, found);
  return found;
}

async function followMerges(tx: Sql, id: string): Promise<string> {
  let current = id;
  for (let i = 0; i < 50; i++) {
    const row = (await tx.query<{ merged_into: string | null }>(`SELECT merged_into FROM shared_unified WHERE id = $1`, [current])).rows[0];
    if (!row?.merged_into) return current;
    current = row.merged_into;
  }
  return current;
}

/**
 * The unified id of a member's report (`resourceType`, its `resource.id`), following merges; a
 * unified id answers itself. Undefined when the report has not been matched yet (or does not exist).
 * For the cost feed (an expert's sessions at other members are one Practitioner) and the FHIR API.
 */
export async function unifiedIdOf(db: Sql, resourceType: string, sourceId: string): Promise<string | undefined> {
  const row = (
    await db.query<{ unified_id: string }>(
      `SELECT unified_id FROM shared_source WHERE resource_type = $1 AND source_id = $2
       UNION ALL SELECT id FROM shared_unified WHERE resource_type = $1 AND id = $2 LIMIT 1`,
      [resourceType, sourceId],
    )
  ).rows[0];
  return row ? live(db, row.unified_id) : undefined;
}

/** Batch form of `unifiedIdOf`: source id → live unified id, for the ids that are matched. */
export async function unifiedIdsOf(db: Sql, resourceType: string, sourceIds: string[]): Promise<Map<string, string>> {
  const rows = await db.query<{ source_id: string; unified_id: string }>(
    `SELECT s.source_id, COALESCE(u.merged_into, u.id) AS unified_id FROM shared_source s JOIN shared_unified u ON u.id = s.unified_id
      WHERE s.resource_type = $1 AND s.source_id = ANY($2::text[])`,
    [resourceType, sourceIds],
  );
  const out = new Map<string, string>();
  for (const r of rows.rows) out.set(r.source_id, await live(db, r.unified_id));
  return out;
}

/** Resolve the references a report's keys and survivorship need (`Organization/<source id>` → unified id). */
async function resolverFor(tx: Sql, contents: Json[], state?: SyncState, extra: string[] = []): Promise<(reference: string | undefined) => string | undefined> {
  const refs = new Set<string>(extra);
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const ref = (v as Json).reference;
      if (typeof ref === 'string' && /^[A-Za-z]+\/[^/]+$/.test(ref)) refs.add(ref);
      for (const [k, x] of Object.entries(v as Json)) if (k !== 'meta' && k !== 'extension') walk(x);
    }
  };
  contents.forEach(walk);
  const map = new Map<string, string>();
  for (const ref of refs) {
    if (state?.refs.has(ref)) {
      const known = state.refs.get(ref);
      if (known) map.set(ref, known);
      continue;
    }
    const [type, id] = ref.split('/') as [string, string];
    const unified = await unifiedIdOf(tx, type, id);
    if (unified) map.set(ref, unified);
    // an unknown reference is not cached: the report it names may be matched later in this run
    if (unified) state?.refs.set(ref, unified);
  }
  return (reference) => (reference ? map.get(reference) : undefined);
}

function memberSource(m: { id: string; name: string; tier: string; updated_at: Date }): PendingSource {
  return {
    resourceType: 'Organization',
    sourceId: `member-${m.id}`,
    memberId: m.id,
    version: 1,
    updatedAt: m.updated_at,
    content: {
      resourceType: 'Organization',
      identifier: [{ system: MEMBER_SYSTEM, value: m.id }],
      active: true,
      name: m.name,
      type: [{ coding: [{ system: MEMBER_TIER_SYSTEM, code: m.tier }] }],
    },
  };
}

/** Match every report that is new or changed since it was last matched (`full`: look at all of them). */
export async function syncSharedResources(db: HubDb, options: { full?: boolean } = {}): Promise<SharedSyncSummary> {
  const started = Date.now();
  const summary: SharedSyncSummary = { seen: 0, created: 0, linked: 0, moved: 0, merged: 0, unchanged: 0, ms: 0 };
  await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(${LOCK})`);
    // The index tables grow inside this transaction faster than statistics follow: a planner that
    // still believes them empty scans them whole for every look-up (quadratic cost).
    await tx.query(`SET LOCAL enable_seqscan = off`);
    const state: SyncState = { live: new Map(), refs: new Map() };
    // Reports changed since shortly before the newest one matched (the partial index
    // resource_shared_changes); the margin covers merges that committed after their clock time.
    const since = options.full
      ? null
      : ((
          await tx.query<{ since: Date | null }>(
            `SELECT max(source_updated_at) - interval '5 minutes' AS since FROM shared_source WHERE source_id NOT LIKE 'member-%'`,
          )
        ).rows[0]?.since ?? null);
    const dirty = await tx.query<{ resource_type: SharedResourceType; id: string; member_id: string; version: number; content: Json; updated_at: Date; known: boolean }>(
      `SELECT r.resource_type, r.id, r.member_id, r.version, r.content, r.updated_at, s.source_id IS NOT NULL AS known FROM resource r
         LEFT JOIN shared_source s ON s.resource_type = r.resource_type AND s.source_id = r.id
        WHERE r.resource_type IN ('Organization', 'Location', 'Device', 'Practitioner', 'PractitionerRole', 'HealthcareService')
          AND ($1::timestamptz IS NULL OR r.updated_at > $1)
          AND (s.source_id IS NULL OR s.source_version <> r.version)
        ORDER BY r.updated_at, r.id`,
      [since],
    );
    const members = await tx.query<{ id: string; name: string; tier: string; updated_at: Date }>(
      `SELECT m.id, m.name, m.tier, m.updated_at FROM member m
        WHERE NOT EXISTS (SELECT 1 FROM shared_source s WHERE s.resource_type = 'Organization' AND s.source_id = 'member-' || m.id
                             AND s.content->>'name' = m.name AND s.content->'type'->0->'coding'->0->>'code' = m.tier)
        ORDER BY m.id`,
    );
    const byType = new Map<string, PendingSource[]>(SHARED_RESOURCE_TYPES.map((t) => [t, []]));
    byType.get('Organization')!.push(...members.rows.map(memberSource));
    for (const r of dirty.rows) byType.get(r.resource_type)!.push({ resourceType: r.resource_type, sourceId: r.id, memberId: r.member_id, version: r.version, content: r.content, updatedAt: r.updated_at, known: r.known });
    const touched = new Set<string>();
    const dependents = new Set<string>();
    for (const type of SHARED_RESOURCE_TYPES) {
      const pending = byType.get(type)!;
      // Reports whose keys name a unified record merged away in an earlier phase are matched again.
      if (dependents.size && type !== 'Organization') {
        const again = await tx.query<{ source_id: string; member_id: string; content: Json; source_version: number; source_updated_at: Date }>(
          `SELECT source_id, member_id, content, source_version, source_updated_at FROM shared_source WHERE resource_type = $1 AND source_id <> ALL($2::text[])
              AND EXISTS (SELECT 1 FROM unnest(strong_keys || weak_keys) k WHERE k LIKE ANY($3::text[]))`,
          [type, pending.map((p) => p.sourceId), [...dependents].map((d) => `%${d}%`)],
        );
        pending.push(...again.rows.map((r) => ({ resourceType: type, sourceId: r.source_id, memberId: r.member_id, content: r.content, version: r.source_version, updatedAt: r.source_updated_at })));
      }
      for (const source of pending) {
        summary.seen++;
        const outcome = await matchSource(tx, state, source, touched, dependents, summary);
        if (type === 'Practitioner') {
          const role = derivedRole(source);
          if (role) {
            byType.get('PractitionerRole')!.push({
              resourceType: 'PractitionerRole',
              sourceId: `derived-${source.sourceId}`,
              memberId: source.memberId,
              version: source.version,
              updatedAt: source.updatedAt,
              content: { ...role.content, meta: { tag: [{ system: 'https://yilian.example/fhir/CodeSystem/derived-from', code: role.segments.join(',') }] } },
            });
          } else if (outcome === 'merged' || outcome === 'moved') {
            // a role derived earlier follows its practitioner to the new unified record
            const old = await tx.query<{ content: Json; source_version: number; source_updated_at: Date }>(`SELECT content, source_version, source_updated_at FROM shared_source WHERE resource_type = 'PractitionerRole' AND source_id = $1`, [`derived-${source.sourceId}`]);
            if (old.rows[0]) byType.get('PractitionerRole')!.push({ resourceType: 'PractitionerRole', sourceId: `derived-${source.sourceId}`, memberId: source.memberId, version: old.rows[0].source_version, updatedAt: old.rows[0].source_updated_at, content: old.rows[0].content });
          }
        }
      }
    }
    await refreshUnified(tx, state, [...touched]);
  });
  summary.ms = Date.now() - started;
  return summary;
}

type Outcome = 'created' | 'linked' | 'moved' | 'merged' | 'unchanged';

async function matchSource(tx: Sql, state: SyncState, source: PendingSource, touched: Set<string>, dependents: Set<string>, summary: SharedSyncSummary): Promise<Outcome> {
  const resolve = await resolverFor(tx, [source.content], state, [`Organization/member-${source.memberId}`]);
  const keys = matchKeys(source, resolve);
  const all = [...keys.strong, ...keys.weak];
  const existing = source.known === false ? undefined : (await tx.query<StoredSource>(`SELECT * FROM shared_source WHERE resource_type = $1 AND source_id = $2`, [source.resourceType, source.sourceId])).rows[0];
  // identity keys and name keys looked up apart: many reports sharing a common name never crowd out a serial
  const candidates: StoredSource[] = [];
  for (const [column, list] of [['strong_keys', keys.strong], ['weak_keys', keys.weak]] as const) {
    if (!list.length) continue;
    const found = await tx.query<StoredSource>(`SELECT * FROM shared_source WHERE resource_type = $1 AND ${column} && $2::text[] AND source_id <> $3 ORDER BY matched_at, source_id LIMIT ${MAX_CANDIDATES}`, [source.resourceType, list, source.sourceId]);
    for (const c of found.rows) if (!candidates.some((x) => x.source_id === c.source_id)) candidates.push(c);
  }
  const me = { content: source.content, keys };
  // unified id → the first evidence that links this report to it
  const accepted = new Map<string, { rule: string; detail: string; with: string }>();
  const refused: Array<{ with: string; rule: string; detail: string }> = [];
  for (const c of candidates) {
    const other = { content: c.content, keys: { strong: c.strong_keys, weak: c.weak_keys } as MatchKeys };
    const shared = [...keys.strong.filter((k) => c.strong_keys.includes(k)), ...all.filter((k) => c.strong_keys.includes(k) || c.weak_keys.includes(k))];
    let decision: ReturnType<typeof compare> | undefined;
    for (const k of new Set(shared)) {
      decision = compare(me, other, k);
      if (decision.same || decision.rule === 'veto') break;
    }
    if (!decision) continue;
    const unified = await live(tx, c.unified_id, state);
    if (!decision.same) {
      refused.push({ with: c.source_id, rule: decision.rule, detail: decision.detail });
      continue;
    }
    if (!accepted.has(unified)) accepted.set(unified, { rule: decision.rule, detail: decision.detail, with: c.source_id });
  }
  // A link on weak evidence must not contradict any report already in that unified record
  // (a name agreeing with one report of a CT whose other report has a different serial).
  for (const [unified, why] of [...accepted]) {
    if (STRONG_RULES.includes(why.rule)) continue;
    const members = await tx.query<StoredSource>(`SELECT * FROM shared_source WHERE unified_id = $1 AND source_id <> $2`, [unified, source.sourceId]);
    const conflict = members.rows.map((m) => ({ m, why: veto(me, { content: m.content, keys: { strong: m.strong_keys, weak: m.weak_keys } }) })).find((x) => x.why);
    if (conflict) {
      accepted.delete(unified);
      refused.push({ with: conflict.m.source_id, rule: 'veto', detail: conflict.why! });
    }
  }
  // Strong evidence may show two unified records to be one (they are merged). Weak evidence (a
  // name) reaching two records is ambiguous — WANG JIANGUO sounds like both 王建国 and 汪建国 —
  // and links to neither.
  const strongTargets = [...accepted].filter(([, w]) => STRONG_RULES.includes(w.rule)).map(([u]) => u);
  const weakTargets = [...accepted].filter(([u, w]) => !STRONG_RULES.includes(w.rule) && !strongTargets.includes(u)).map(([u]) => u);
  const current = existing ? await live(tx, existing.unified_id, state) : undefined;
  if (weakTargets.length > 1) {
    // several records fit on weak evidence alone: link to none of them (but stay where it was)
    for (const u of weakTargets) refused.push({ with: accepted.get(u)!.with, rule: 'ambiguous', detail: `weak evidence (${accepted.get(u)!.rule}) also fits ${weakTargets.length - 1} other record(s)` });
    for (const u of weakTargets) if (u !== current) accepted.delete(u);
  }
  const others = current ? Number((await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM shared_source WHERE unified_id = $1 AND source_id <> $2`, [current, source.sourceId])).rows[0]!.n) : 0;
  // The records this report is one thing with: those it matches, and its own record when it is
  // still linked there or is the only report in it (then that record is the same thing too).
  const pool = new Set(accepted.keys());
  if (current && (pool.has(current) || (others === 0 && pool.size > 0))) pool.add(current);
  let target: string;
  let outcome: Outcome;
  if (pool.size === 0) {
    // no match: a known report keeps its record unless others remain there that it no longer matches
    if (current && others === 0) [target, outcome] = [current, 'unchanged'];
    else {
      [target, outcome] = [await newUnified(tx, source), current ? 'moved' : 'created'];
      if (current) touched.add(current);
    }
  } else {
    // the oldest record survives: its id was issued first
    target = pool.size === 1 ? [...pool][0]! : (await tx.query<{ id: string }>(`SELECT id FROM shared_unified WHERE id = ANY($1::text[]) ORDER BY created_at, id LIMIT 1`, [[...pool]])).rows[0]!.id;
    outcome = !current ? 'linked' : pool.has(current) ? 'unchanged' : 'moved';
    for (const other of pool) {
      if (other === target) continue;
      await tx.query(`UPDATE shared_source SET unified_id = $1 WHERE unified_id = $2`, [target, other]);
      await tx.query(`UPDATE shared_unified SET merged_into = $1, updated_at = clock_timestamp() WHERE id = $2 OR merged_into = $2`, [target, other]);
      dependents.add(other);
      state.live.clear();
      state.refs.clear();
      summary.merged++;
      if (outcome === 'unchanged' || outcome === 'linked') outcome = 'merged';
    }
    if (current && !pool.has(current)) touched.add(current);
  }
  const why = accepted.get(target);
  const rule = why?.rule ?? (outcome === 'created' || outcome === 'moved' ? 'new' : (existing?.rule ?? 'new'));
  const evidence = { ...(why ? { with: why.with, detail: why.detail } : {}), ...(refused.length ? { refused: refused.slice(0, 10) } : {}) };
  await tx.query(
    `INSERT INTO shared_source (resource_type, source_id, member_id, unified_id, strong_keys, weak_keys, rule, evidence, content, source_version, source_updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (resource_type, source_id) DO UPDATE SET unified_id = EXCLUDED.unified_id, member_id = EXCLUDED.member_id, strong_keys = EXCLUDED.strong_keys, weak_keys = EXCLUDED.weak_keys,
       rule = CASE WHEN shared_source.unified_id = EXCLUDED.unified_id AND EXCLUDED.rule = 'new' THEN shared_source.rule ELSE EXCLUDED.rule END,
       evidence = EXCLUDED.evidence, content = EXCLUDED.content, source_version = EXCLUDED.source_version, source_updated_at = EXCLUDED.source_updated_at, matched_at = clock_timestamp()`,
    [source.resourceType, source.sourceId, source.memberId, target, keys.strong, keys.weak, rule, JSON.stringify(evidence), JSON.stringify(source.content), source.version, source.updatedAt],
  );
  touched.add(target);
  summary[outcome === 'merged' ? 'linked' : outcome]++;
  return outcome;
}

async function newUnified(tx: Sql, source: PendingSource): Promise<string> {
  for (let n = 0; ; n++) {
    const id = foundingId(source.resourceType, source.sourceId, n);
    const inserted = await tx.query(`INSERT INTO shared_unified (id, resource_type, content) VALUES ($1, $2, '{}') ON CONFLICT (id) DO NOTHING`, [id, source.resourceType]);
    if (inserted.rowCount) return id;
  }
}

/** Survivorship for the unified records whose sources changed. */
async function refreshUnified(tx: Sql, state: SyncState, ids: string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 500) {
    const chunk = ids.slice(i, i + 500);
    const unifiedRows = await tx.query<{ id: string; resource_type: SharedResourceType }>(`SELECT id, resource_type FROM shared_unified WHERE id = ANY($1::text[]) AND merged_into IS NULL`, [chunk]);
    const sourceRows = await tx.query<StoredSource>(`SELECT * FROM shared_source WHERE unified_id = ANY($1::text[]) ORDER BY member_id, source_id`, [chunk]);
    const byUnified = new Map<string, StoredSource[]>();
    for (const s of sourceRows.rows) byUnified.set(s.unified_id, [...(byUnified.get(s.unified_id) ?? []), s]);
    for (const unified of unifiedRows.rows) await refreshOne(tx, state, unified.id, unified.resource_type, byUnified.get(unified.id) ?? []);
  }
}

async function refreshOne(tx: Sql, state: SyncState, id: string, type: SharedResourceType, sources: StoredSource[]): Promise<void> {
  if (!sources.length) return;
  const resolve = await resolverFor(
    tx,
    sources.map((s) => s.content),
    state,
  );
  const content = survive(
    type,
    id,
    sources.map((s) => ({
      content: s.content,
      updatedAt: s.source_updated_at,
      link: { sourceId: s.source_id, memberId: s.member_id, rule: s.rule, ...(/^(member|derived)-/.test(s.source_id) ? {} : { reference: `${s.resource_type}/${s.source_id}` }) },
    })),
    (_type, reference) => resolve(reference),
  );
  const identifiers = [...new Set(sources.flatMap((s) => ((s.content.identifier as Json[] | undefined) ?? []).filter((i) => i.value).flatMap((i) => [`${i.system ?? ''}|${i.value}`, `|${i.value}`])))];
  const lastUpdated = new Date(Math.max(...sources.map((s) => s.source_updated_at.getTime())));
  content.meta = { lastUpdated: lastUpdated.toISOString(), source: 'urn:yilian:unified' };
  await tx.query(`UPDATE shared_unified SET content = $2, name_key = $3, identifiers = $4, updated_at = clock_timestamp() WHERE id = $1`, [id, JSON.stringify(content), normaliseLabel(nameOf(content)) ?? null, identifiers]);
}

export function startSharedResourceSync(db: HubDb, intervalMs = 5000, log?: (text: string) => void): () => void {
  return runPeriodically('shared resource sync', intervalMs, () => syncSharedResources(db), log);
}

export interface UnifiedRecord {
  id: string;
  resourceType: SharedResourceType;
  content: Json;
  updatedAt: Date;
  sources: Array<{ sourceId: string; memberId: string; rule: string; evidence: Json }>;
}

/** Live unified records, optionally of one type, name (contains, normalised) and identifier (`system|value` or `value`). */
export async function listUnified(db: Sql, filter: { type?: string; name?: string; identifier?: string; id?: string; limit?: number; offset?: number } = {}): Promise<{ total: number; records: UnifiedRecord[] }> {
  const params: unknown[] = [];
  const where = ['u.merged_into IS NULL', `u.content <> '{}'::jsonb`];
  if (filter.type) {
    params.push(filter.type);
    where.push(`u.resource_type = $${params.length}`);
  }
  if (filter.id) {
    params.push(filter.id);
    where.push(`u.id = $${params.length}`);
  }
  const name = filter.name ? normaliseLabel(filter.name) : undefined;
  if (name) {
    params.push(`%${name.replace(/[%_\\]/g, '\\$&')}%`);
    where.push(`u.name_key LIKE $${params.length}`);
  }
  if (filter.identifier) {
    params.push(filter.identifier.includes('|') ? filter.identifier : `|${filter.identifier}`);
    where.push(`u.identifiers @> ARRAY[$${params.length}::text]`);
  }
  const total = Number((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM shared_unified u WHERE ${where.join(' AND ')}`, params)).rows[0]!.n);
  const rows = await db.query<{ id: string; resource_type: SharedResourceType; content: Json; updated_at: Date; sources: UnifiedRecord['sources'] }>(
    `SELECT u.id, u.resource_type, u.content, u.updated_at,
            (SELECT json_agg(json_build_object('sourceId', s.source_id, 'memberId', s.member_id, 'rule', s.rule, 'evidence', s.evidence) ORDER BY s.member_id, s.source_id)
               FROM shared_source s WHERE s.unified_id = u.id) AS sources
       FROM shared_unified u WHERE ${where.join(' AND ')} ORDER BY u.resource_type, u.id LIMIT ${filter.limit ?? 1000} OFFSET ${filter.offset ?? 0}`,
    params,
  );
  return { total, records: rows.rows.map((r) => ({ id: r.id, resourceType: r.resource_type, content: r.content, updatedAt: r.updated_at, sources: r.sources ?? [] })) };
}
