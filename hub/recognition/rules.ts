/**
 * Recognition rules as governed data: per standard test (LOINC) or imaging procedure code, a
 * validity window, which members are recognised (by tier, by name), whether the lab needs a valid
 * external-quality-assessment accreditation, the conditions a result must meet (status, canonical
 * unit, specimen), or that the item is never recognised. Versioned like the ConceptMaps in
 * hub/terminology/workflow.ts: proposed → approved (in force from its approval) → superseded / retired, or
 * rejected, each step in recognition_rule_event with who, when and a comment. The shipped set
 * (defaultRules.json) is version 1 of each code, in force since -infinity (a code added by an
 * upgrade: from the upgrade, see ensureRulesSeeded).
 *
 * Each process holds a rule book (every version with its validity) keyed by the last event id, so a
 * decision taken anywhere counts at the next check. Owns the recognition_rule tables; never writes
 * anything else.
 */
import { z } from 'zod';
import type { HubDb, Sql } from '../sql';
import { HubError } from '../../mappings/outcome';
import { LOINC } from '../../mappings/terminology/systems';
import shippedRules from './defaultRules.json';

export const tierSchema = z.enum(['tertiary', 'secondary', 'primary', 'unknown']);

export const ruleContentSchema = z
  .object({
    code: z.string().min(1).max(64),
    /** Code system of `code`: LOINC for tests and for imaging (LOINC/RSNA radiology playbook). */
    system: z.string().min(1).default(LOINC),
    display: z.string().optional(),
    kind: z.enum(['lab', 'imaging']).default('lab'),
    /** false: never recognised (the item must always be done again). */
    recognised: z.boolean().default(true),
    /** A result is recognisable until effective time + windowDays. */
    windowDays: z.number().int().min(0).max(3650),
    /** Member tiers whose results are recognised. */
    tiers: z.array(tierSchema).default(['tertiary', 'secondary']),
    /** Members recognised whatever their tier. */
    members: z.array(z.string().min(1)).default([]),
    /** The producing lab must hold an accreditation (config recognition.accreditation) valid when the result was produced. */
    requireAccreditation: z.boolean().default(false),
    /** Result statuses that count (FHIR Observation/DiagnosticReport status; ImagingStudy `available`). */
    statuses: z.array(z.string().min(1)).default(['final', 'amended', 'corrected', 'available']),
    /** The result must be in the LOINC code's canonical UCUM unit (i.e. the map stage could convert it). */
    requireCanonicalUnit: z.boolean().default(true),
    /** Specimen type the code implies; a result that states a different specimen is refused. */
    specimen: z.string().optional(),
    note: z.string().default(''),
  })
  .strict();

export type RecognitionRuleContent = z.infer<typeof ruleContentSchema>;
export type RuleStatus = 'proposed' | 'approved' | 'superseded' | 'rejected' | 'retired';

export interface RecognitionRuleVersion {
  code: string;
  version: number;
  status: RuleStatus;
  content: RecognitionRuleContent;
  createdBy: string;
  createdAt: string;
  comment: string;
  decidedBy: string | null;
  decidedAt: string | null;
  validFrom: string | null;
  validTo: string | null;
}

interface RuleRow {
  code: string;
  version: number;
  status: RuleStatus;
  content: RecognitionRuleContent;
  created_by: string;
  created_at: Date;
  comment: string;
  decided_by: string | null;
  decided_at: Date | null;
  valid_from: Date | null;
  from_start: boolean;
  valid_to: Date | null;
}

function iso(value: Date | null): string | null {
  return value === null ? null : value.toISOString();
}

function fromRow(r: RuleRow): RecognitionRuleVersion {
  return {
    code: r.code,
    version: r.version,
    status: r.status,
    content: ruleContentSchema.parse(r.content),
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    comment: r.comment,
    decidedBy: r.decided_by,
    decidedAt: iso(r.decided_at),
    validFrom: r.from_start ? '-infinity' : iso(r.valid_from),
    validTo: iso(r.valid_to),
  };
}

// -infinity (the shipped set) comes back as a flag: JS dates have no -infinity.
const RULE_COLUMNS = `code, version, status, content, created_by, created_at, comment, decided_by, decided_at,
  CASE WHEN valid_from = '-infinity' THEN NULL ELSE valid_from END AS valid_from, coalesce(valid_from = '-infinity', false) AS from_start, valid_to`;

/** The shipped default rules, validated (a bad file is a build error, caught by the tests). */
export function shippedRuleSet(): RecognitionRuleContent[] {
  return (shippedRules as { rules: unknown[] }).rules.map((r, i) => {
    const parsed = ruleContentSchema.safeParse(r);
    if (!parsed.success) throw new HubError('invalid', `defaultRules.json rules[${i}]: ${parsed.error.issues[0]!.message}`);
    return parsed.data;
  });
}

const seeded = new WeakSet<object>();

/**
 * Load the shipped rules as approved version 1 the first time a store is used (one process does
 * it). On a store seeded by an earlier release, a shipped code that has no rule at all (never
 * decided on: a code added to defaultRules.json since) is added as its approved version 1, in force
 * from now rather than since -infinity, so a rule added by an upgrade does not turn earlier results
 * into repeats; a code the committee has decided on (changed, retired) is never touched.
 */
export async function ensureRulesSeeded(db: HubDb): Promise<void> {
  if (seeded.has(db)) return;
  const shipped = shippedRuleSet();
  const missing = async (sql: Sql): Promise<RecognitionRuleContent[]> => {
    const present = new Set((await sql.query<{ code: string }>(`SELECT DISTINCT code FROM recognition_rule WHERE code = ANY($1::text[])`, [shipped.map((r) => r.code)])).rows.map((r) => r.code));
    return shipped.filter((r) => !present.has(r.code));
  };
  if ((await missing(db)).length > 0) {
    await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(7317007)`);
      const fresh = (await tx.query(`SELECT 1 FROM recognition_rule LIMIT 1`)).rowCount === 0;
      const comment = fresh ? 'shipped with the hub' : 'shipped with a hub upgrade (the code had no rule): in force from now';
      for (const rule of await missing(tx)) {
        await tx.query(
          `INSERT INTO recognition_rule (code, version, status, content, origin, created_by, comment, decided_by, decided_at, valid_from)
           VALUES ($1, 1, 'approved', $2, 'shipped', 'system', $3, 'system', clock_timestamp(), ${fresh ? `'-infinity'` : 'clock_timestamp()'})`,
          [rule.code, JSON.stringify(rule), comment],
        );
        await tx.query(`INSERT INTO recognition_rule_event (actor, action, code, version, comment) VALUES ('system', 'seed', $1, 1, $2)`, [rule.code, comment]);
      }
    });
  }
  seeded.add(db);
}

/** Every version of every code that is or was in force, for judging results at any time. */
export class RuleBook {
  private readonly byCode = new Map<string, Array<{ from: number; to: number; rule: RecognitionRuleVersion }>>();

  constructor(
    readonly key: number,
    versions: RecognitionRuleVersion[],
  ) {
    for (const v of versions) {
      if (v.validFrom === null) continue;
      const from = v.validFrom === '-infinity' ? -Infinity : Date.parse(v.validFrom);
      const to = v.validTo ? Date.parse(v.validTo) : Infinity;
      const list = this.byCode.get(v.code) ?? [];
      list.push({ from, to, rule: v });
      this.byCode.set(v.code, list);
    }
  }

  /** The version in force at `at` (retired or never-existing: undefined). */
  ruleAt(code: string, at: Date): RecognitionRuleVersion | undefined {
    const t = at.getTime();
    // A retired version keeps the interval it was in force; after it, nothing covers the code.
    return this.byCode.get(code)?.find((e) => e.from <= t && t < e.to)?.rule;
  }

  /** All in-force intervals (for the duplicate report's SQL). */
  intervals(): Array<{ code: string; from: number; to: number; rule: RecognitionRuleContent; version: number }> {
    const out: Array<{ code: string; from: number; to: number; rule: RecognitionRuleContent; version: number }> = [];
    for (const [code, list] of this.byCode) for (const e of list) out.push({ code, from: e.from, to: e.to, rule: e.rule.content, version: e.rule.version });
    return out;
  }

  codes(): string[] {
    return [...this.byCode.keys()];
  }
}

const books = new WeakMap<object, RuleBook>();
const checkedAt = new WeakMap<object, number>();

/** The rule book of this store, reloaded only when a decision was recorded since (one small query). */
export async function ruleBook(db: HubDb, maxAgeMs = 0): Promise<RuleBook> {
  const held = books.get(db);
  // maxAgeMs > 0 trades freshness for a query; the check passes none: a decision taken in another
  // process (yilian recognition rules set) must count at the very next check.
  if (held && maxAgeMs > 0 && Date.now() - (checkedAt.get(db) ?? 0) < maxAgeMs) return held;
  checkedAt.set(db, Date.now());
  await ensureRulesSeeded(db);
  const key = Number((await db.query<{ k: number }>(`SELECT coalesce(max(id), 0)::int AS k FROM recognition_rule_event`, [], 'recognition_rule_key')).rows[0]!.k);
  const cached = books.get(db);
  if (cached && cached.key === key) return cached;
  const rows = await db.query<RuleRow>(`SELECT ${RULE_COLUMNS} FROM recognition_rule WHERE valid_from IS NOT NULL ORDER BY code, version`);
  const book = new RuleBook(key, rows.rows.map(fromRow));
  books.set(db, book);
  return book;
}

export async function listRules(db: HubDb, options: { code?: string; all?: boolean } = {}): Promise<RecognitionRuleVersion[]> {
  await ensureRulesSeeded(db);
  const where: string[] = [];
  const params: unknown[] = [];
  if (options.code) where.push(`code = $${params.push(options.code)}`);
  if (!options.all) where.push(`status IN ('approved', 'proposed')`);
  const rows = await db.query<RuleRow>(`SELECT ${RULE_COLUMNS} FROM recognition_rule ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY code, version`, params);
  return rows.rows.map(fromRow);
}

async function event(tx: Sql, actor: string, action: string, code: string, version: number | null, comment: string, detail: unknown = {}): Promise<void> {
  await tx.query(`INSERT INTO recognition_rule_event (actor, action, code, version, comment, detail) VALUES ($1, $2, $3, $4, $5, $6)`, [actor, action, code, version, comment, JSON.stringify(detail)]);
}

async function nextVersion(tx: Sql, code: string): Promise<number> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext('recognition_rule:' || $1))`, [code]);
  return Number((await tx.query<{ v: number }>(`SELECT coalesce(max(version), 0)::int AS v FROM recognition_rule WHERE code = $1`, [code])).rows[0]!.v) + 1;
}

/** Put an approved version in force now: the current one is superseded from this instant. */
async function putInForce(tx: Sql, code: string, version: number, actor: string): Promise<void> {
  await tx.query(`UPDATE recognition_rule SET status = 'superseded', valid_to = clock_timestamp() WHERE code = $1 AND status = 'approved'`, [code]);
  await tx.query(`UPDATE recognition_rule SET status = 'approved', decided_by = $3, decided_at = clock_timestamp(), valid_from = clock_timestamp() WHERE code = $1 AND version = $2`, [code, version, actor]);
}

export interface RuleChange {
  code: string;
  windowDays?: number;
  tiers?: Array<z.infer<typeof tierSchema>>;
  members?: string[];
  recognised?: boolean;
  requireAccreditation?: boolean;
  display?: string;
  kind?: 'lab' | 'imaging';
}

/** The current rule of a code (or a fresh one for a code that has none) with `change` applied. */
async function changedContent(tx: Sql, change: RuleChange): Promise<RecognitionRuleContent> {
  const current = (await tx.query<{ content: RecognitionRuleContent }>(`SELECT content FROM recognition_rule WHERE code = $1 AND status = 'approved'`, [change.code])).rows[0]?.content;
  const base: Record<string, unknown> = current ? { ...current } : { code: change.code, windowDays: change.windowDays ?? 0 };
  for (const [k, v] of Object.entries(change)) if (v !== undefined) base[k] = v;
  const parsed = ruleContentSchema.safeParse(base);
  if (!parsed.success) throw new HubError('invalid', `rule ${change.code}: ${parsed.error.issues[0]!.path.join('.')} ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

/**
 * `yilian recognition rules set`: a new version, approved and in force at once, recorded as decided
 * by `actor` (the committee member who ran it).
 */
export async function setRule(db: HubDb, change: RuleChange, actor: string, comment = ''): Promise<RecognitionRuleVersion> {
  await ensureRulesSeeded(db);
  const version = await db.transaction(async (tx) => {
    const content = await changedContent(tx, change);
    const v = await nextVersion(tx, change.code);
    await tx.query(`INSERT INTO recognition_rule (code, version, status, content, origin, created_by, comment) VALUES ($1, $2, 'proposed', $3, 'set', $4, $5)`, [change.code, v, JSON.stringify(content), actor, comment]);
    await putInForce(tx, change.code, v, actor);
    await event(tx, actor, 'set', change.code, v, comment, { change });
    return v;
  });
  return (await listRules(db, { code: change.code, all: true })).find((r) => r.version === version)!;
}

/** A proposal: stored, not in force until approved. */
export async function proposeRule(db: HubDb, change: RuleChange, actor: string, comment = ''): Promise<RecognitionRuleVersion> {
  await ensureRulesSeeded(db);
  const version = await db.transaction(async (tx) => {
    const content = await changedContent(tx, change);
    const v = await nextVersion(tx, change.code);
    await tx.query(`INSERT INTO recognition_rule (code, version, status, content, origin, created_by, comment) VALUES ($1, $2, 'proposed', $3, 'proposal', $4, $5)`, [change.code, v, JSON.stringify(content), actor, comment]);
    await event(tx, actor, 'propose', change.code, v, comment, { change });
    return v;
  });
  return (await listRules(db, { code: change.code, all: true })).find((r) => r.version === version)!;
}

/**
 * approve (in force now), reject (never in force), retire (the code's current rule stops; nothing is
 * recognised for it). Four eyes (default, `options.fourEyes`): whoever proposed a version cannot approve it.
 */
export async function decideRule(db: HubDb, code: string, version: number | undefined, decision: 'approve' | 'reject' | 'retire', actor: string, comment = '', options: { fourEyes?: boolean } = {}): Promise<void> {
  await ensureRulesSeeded(db);
  await db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('recognition_rule:' || $1))`, [code]);
    if (decision === 'retire') {
      const done = await tx.query<{ version: number }>(`UPDATE recognition_rule SET status = 'retired', valid_to = clock_timestamp(), decided_by = $2, decided_at = clock_timestamp() WHERE code = $1 AND status = 'approved' RETURNING version`, [code, actor]);
      if (!done.rows[0]) throw new HubError('not-found', `no rule in force for ${code}`);
      await event(tx, actor, 'retire', code, done.rows[0].version, comment);
      return;
    }
    const row = (await tx.query<{ status: RuleStatus; created_by: string }>(`SELECT status, created_by FROM recognition_rule WHERE code = $1 AND version = $2`, [code, version])).rows[0];
    if (!row) throw new HubError('not-found', `no rule version ${code} v${version}`);
    if (row.status !== 'proposed') throw new HubError('invalid', `rule ${code} v${version} is ${row.status}, not proposed`);
    if (decision === 'approve' && (options.fourEyes ?? true) && row.created_by === actor) {
      throw new HubError('conflict', `rule ${code} v${version} was proposed by ${actor}; four-eyes rule: another committee member must approve it (governance.fourEyes in the hub config)`, 'actor');
    }
    if (decision === 'approve') await putInForce(tx, code, version!, actor);
    else await tx.query(`UPDATE recognition_rule SET status = 'rejected', decided_by = $3, decided_at = clock_timestamp() WHERE code = $1 AND version = $2`, [code, version, actor]);
    await event(tx, actor, decision, code, version!, comment);
  });
}

export async function ruleHistory(db: HubDb, code: string): Promise<Array<{ at: string; actor: string; action: string; version: number | null; comment: string }>> {
  const rows = await db.query<{ at: Date; actor: string; action: string; version: number | null; comment: string }>(`SELECT at, actor, action, version, comment FROM recognition_rule_event WHERE code = $1 ORDER BY id`, [code]);
  return rows.rows.map((r) => ({ at: r.at.toISOString(), actor: r.actor, action: r.action, version: r.version, comment: r.comment }));
}
