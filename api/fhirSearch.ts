/**
 * FHIR R4 search, the part every type shares: the search-parameter model (one table per type in
 * api/fhirSearchParams.ts drives parsing, SQL and the CapabilityStatement), parsing a query into
 * clauses (modifiers, comma = OR, repeats = AND, one level of chaining), the result parameters
 * (`_count`, `_offset`, `_sort`, `_total`, `_summary`, `_elements`, `_include`, `_revinclude`), how
 * unknown parameters are handled (ignored and left out of the self link by default, 400 with
 * `Prefer: handling=strict`, for every type alike), the SQL for string, token and date values, and
 * the self/next/previous links.
 */
import type { Request } from 'express';
import { HubError } from '../mappings/outcome';

export type ParamType = 'string' | 'token' | 'date' | 'reference' | 'number' | 'uri' | 'special';

/** Positional parameters of one SQL statement. */
export class SqlParams {
  readonly values: unknown[] = [];
  constructor(initial: unknown[] = []) {
    this.values.push(...initial);
  }
  /** `$n` for `value`. */
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

export interface SearchParamDef {
  name: string;
  type: ParamType;
  description: string;
  /** Modifiers accepted besides those every parameter of the type has (see TYPE_MODIFIERS). */
  modifiers?: string[];
  /** Reference parameters: the types they point to (a chain follows the first unless `:Type` says). */
  target?: string[];
  /** JSON paths of a reference (for _include): where the references are in the presented resource. */
  referencePaths?: string[];
  /** The SQL condition for one occurrence (its comma-separated values ORed). */
  where?(values: string[], modifier: string | undefined, p: SqlParams): string | Promise<string>;
  /** The SQL expression `_sort` orders by. */
  sort?: string;
  /** A parameter that narrows to one patient or a few ids: a count of what it matches is cheap. */
  selective?: boolean;
}

/** Modifiers of each type that this server implements (others are refused: R4 search §3.1.1.5). */
const TYPE_MODIFIERS: Record<ParamType, string[]> = {
  string: ['exact', 'contains'],
  token: ['not'],
  date: [],
  reference: [],
  number: [],
  uri: [],
  special: [],
};

/** Result parameters: not criteria, never "unknown". */
export const RESULT_PARAMETERS = ['_count', '_offset', '_sort', '_total', '_summary', '_elements', '_include', '_revinclude', '_format', '_pretty'] as const;

export interface Clause {
  def: SearchParamDef;
  modifier?: string;
  values: string[];
  /** One level of chaining (`subject:Patient.identifier=…`): the clause on the target type. */
  chain?: { type: string; clause: Clause };
}

export interface Include {
  source: string;
  param: SearchParamDef;
  target?: string;
}

export interface ParsedSearch {
  type: string;
  clauses: Clause[];
  count: number;
  offset: number;
  sort: Array<{ def: SearchParamDef; desc: boolean }>;
  total?: 'none' | 'estimate' | 'accurate';
  summary?: 'true' | 'text' | 'data' | 'count' | 'false';
  elements?: string[];
  include: Include[];
  revinclude: Include[];
  /** The parameters as understood: what the self link shows. */
  used: Array<[string, string]>;
  /** Unknown parameters left out (lenient handling). */
  ignored: string[];
}

export type ParamTables = Record<string, SearchParamDef[]>;

/** Whether the client asked for strict handling of unknown parameters (R4 search §3.1.1.4). */
export function strict(req: Request): boolean {
  return /(^|[,;\s])handling\s*=\s*strict\b/i.test(req.header('prefer') ?? '');
}

function splitOr(value: string): string[] {
  // `\,` is an escaped comma (R4 search §3.1.1.9: escaping).
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && i + 1 < value.length && ',$|\\'.includes(value[i + 1]!)) {
      cur += value[++i]!;
    } else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.filter((v) => v !== '');
}

function intValue(raw: string, name: string, min: number, max: number): number {
  const n = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new HubError('invalid', `query.${name}: an integer ${min}–${max}`, name);
  return n;
}

export interface ParseOptions {
  tables: ParamTables;
  strict: boolean;
  defaultCount?: number;
  maxCount?: number;
}

/** The query of a search on `type`, parsed (a 400 for what cannot be answered as asked). */
export function parseSearch(type: string, query: URLSearchParams, options: ParseOptions): ParsedSearch {
  const defs = options.tables[type] ?? [];
  const byName = new Map(defs.map((d) => [d.name, d]));
  const out: ParsedSearch = { type, clauses: [], count: options.defaultCount ?? 50, offset: 0, sort: [], include: [], revinclude: [], used: [], ignored: [] };
  const unknown = (key: string, why: string) => {
    if (options.strict) throw new HubError('invalid', `${why} (Prefer: handling=strict)`, key);
    out.ignored.push(key);
  };
  for (const [key, value] of query) {
    if ((RESULT_PARAMETERS as readonly string[]).includes(key)) {
      if (result(out, key, value, options, byName, unknown)) out.used.push([key, value]);
      continue;
    }
    const dot = key.indexOf('.');
    const head = dot >= 0 ? key.slice(0, dot) : key;
    const [name, modifier] = head.split(':', 2) as [string, string | undefined];
    const def = byName.get(name);
    if (!def) {
      unknown(key, `unknown search parameter ${name} for ${type}`);
      continue;
    }
    if (dot >= 0) {
      // Chaining: a reference parameter, then a parameter of the type it points to.
      const target = modifier ?? (def.target?.length === 1 ? def.target[0] : undefined);
      if (def.type !== 'reference' || !target || !def.target?.includes(target)) throw new HubError('invalid', `${key}: chaining needs a reference parameter with one target type (or name it: ${name}:Type.param)`, key);
      const rest = key.slice(dot + 1);
      if (rest.includes('.')) throw new HubError('invalid', `${key}: this server follows one level of chaining`, key);
      const [chainedName, chainedModifier] = rest.split(':', 2) as [string, string | undefined];
      const chainedDef = options.tables[target]?.find((d) => d.name === chainedName);
      if (!chainedDef) {
        unknown(key, `unknown search parameter ${chainedName} for ${target} in chain ${key}`);
        continue;
      }
      checkModifier(chainedDef, chainedModifier, key);
      out.clauses.push({ def, values: [], chain: { type: target, clause: { def: chainedDef, modifier: chainedModifier, values: splitOr(value) } } });
      out.used.push([key, value]);
      continue;
    }
    checkModifier(def, modifier, key);
    const values = splitOr(value);
    if (!values.length) continue; // `name=`: no criterion (R4: an empty value is ignored)
    out.clauses.push({ def, modifier, values });
    out.used.push([key, value]);
  }
  return out;
}

function checkModifier(def: SearchParamDef, modifier: string | undefined, key: string): void {
  if (modifier === undefined) return;
  if (def.type === 'reference' && def.target?.includes(modifier)) return;
  if (![...TYPE_MODIFIERS[def.type], ...(def.modifiers ?? [])].includes(modifier)) {
    // Unsupported modifiers are refused whatever the handling: ignoring one would widen the search.
    throw new HubError('invalid', `${key}: modifier :${modifier} is not supported on ${def.type} parameter ${def.name}`, key);
  }
}

/** A result parameter into `out`; false when it was ignored (lenient handling). */
function result(out: ParsedSearch, key: string, value: string, options: ParseOptions, byName: Map<string, SearchParamDef>, unknown: (key: string, why: string) => void): boolean {
  switch (key) {
    case '_count':
      out.count = intValue(value, key, 1, options.maxCount ?? 500);
      return true;
    case '_offset':
      out.offset = intValue(value, key, 0, Number.MAX_SAFE_INTEGER);
      return true;
    case '_sort':
      for (const one of value.split(',').filter(Boolean)) {
        const desc = one.startsWith('-');
        const def = byName.get(desc ? one.slice(1) : one);
        if (!def?.sort) {
          unknown(key, `cannot sort ${out.type} by ${one}`);
          return false;
        }
        out.sort.push({ def, desc });
      }
      return true;
    case '_total':
      if (value !== 'none' && value !== 'estimate' && value !== 'accurate') throw new HubError('invalid', `_total must be none, estimate or accurate`, key);
      out.total = value;
      return true;
    case '_summary':
      if (!['true', 'text', 'data', 'count', 'false'].includes(value)) throw new HubError('invalid', `_summary must be true, text, data, count or false`, key);
      out.summary = value as ParsedSearch['summary'];
      return true;
    case '_elements':
      out.elements = value.split(',').map((e) => e.trim()).filter(Boolean);
      return true;
    case '_include':
    case '_revinclude': {
      const [source, name, target] = value.split(':');
      const def = source ? options.tables[source]?.find((d) => d.name === name && d.type === 'reference') : undefined;
      const fits = key === '_include' ? source === out.type : def?.target?.includes(out.type);
      if (!def || !fits || (target && !def.target?.includes(target))) {
        unknown(key, `${key}=${value} is not supported on ${out.type}`);
        return false;
      }
      (key === '_include' ? out.include : out.revinclude).push({ source: source!, param: def, target });
      return true;
    }
    default:
      return true; // _format (api/fhirFormat.ts), _pretty
  }
}

/** Search text folded for comparison: NFKC, lower case, accents stripped, spaces collapsed. */
export function foldText(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .normalize('NFKC')
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim();
}

/** A value for LIKE, its wildcards escaped (backslash is PostgreSQL's default LIKE escape). */
export function likeEscape(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** `[prefix, value]` of a date or number search value. */
export function prefixed(raw: string): [string, string] {
  const m = /^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(.*)$/.exec(raw)!;
  return [m[1] ?? 'eq', m[2] ?? ''];
}

const DATE = /^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/**
 * A date search value against `expr`, an ISO 8601 text expression. A value of lower precision is
 * the range it spans (R4 search §3.1.1.5.6): `eq2026-11` matches every time in November 2026;
 * `gt` is after that range, `ge` in or after it, and so on. Times with an offset are compared as
 * text after normalising the value to UTC when the stored text is UTC (as `_lastUpdated` is).
 */
export function dateClause(expr: string, raw: string, p: SqlParams): string {
  const [prefix, value] = prefixed(raw);
  if (!DATE.test(value)) throw new HubError('invalid', `date value ${raw} is not a FHIR date (optionally prefixed eq, ne, gt, lt, ge, le, sa, eb)`, 'date');
  const v = p.add(value);
  const within = `starts_with(${expr}, ${v})`;
  switch (prefix) {
    case 'gt':
    case 'sa':
      return `(${expr} > ${v} AND NOT ${within})`;
    case 'lt':
    case 'eb':
      return `(${expr} < ${v} AND NOT ${within})`;
    case 'ge':
      return `(${expr} >= ${v} OR ${within})`;
    case 'le':
      return `(${expr} <= ${v} OR ${within})`;
    case 'ne':
      return `NOT ${within}`;
    case 'ap':
      throw new HubError('invalid', `date prefix ap is not supported`, 'date');
    default:
      return within;
  }
}

/** `system|code`, `|code` (no system), `code` (any system): a JSONPath test on the codings at `path`. */
export function tokenClause(path: string, values: string[], p: SqlParams, column = 'content'): string {
  const ors = values.map((one) => {
    const bar = one.indexOf('|');
    const system = bar >= 0 ? one.slice(0, bar) : undefined;
    const code = bar >= 0 ? one.slice(bar + 1) : one;
    if (bar >= 0 && !code) {
      const v = p.add(JSON.stringify({ s: system }));
      return `jsonb_path_exists(${column}, '${path} ? (@.system == $s)', ${v}::jsonb)`;
    }
    const v = p.add(JSON.stringify(system ? { c: code, s: system } : { c: code }));
    return `jsonb_path_exists(${column}, '${path} ? (@.code == $c${system ? ' && @.system == $s' : system === '' ? ' && !(exists(@.system))' : ''})', ${v}::jsonb)`;
  });
  return `(${ors.join(' OR ')})`;
}

/** The code of a token value for a plain code element (`status`, `gender`): its system, if given, ignored. */
export function codeOf(value: string): string {
  const bar = value.indexOf('|');
  return bar >= 0 ? value.slice(bar + 1) : value;
}

/** The id of a reference search value: `Type/id`, a full URL ending so, or a bare id. */
export function referenceId(value: string, type: string): string | undefined {
  const m = new RegExp(`(?:^|/)${type}/([^/]+)(?:/_history/[^/]+)?$`).exec(value);
  if (m) return m[1];
  return value.includes('/') ? undefined : value;
}

/** The SQL of a search's criteria (chains resolved by `chainIds`), ANDed. */
export async function criteria(search: ParsedSearch, p: SqlParams, chainIds: (type: string, clause: Clause) => Promise<string[]>): Promise<string[]> {
  const where: string[] = [];
  for (const clause of search.clauses) {
    const values = clause.chain ? (await chainIds(clause.chain.type, clause.chain.clause)).map((id) => `${clause.chain!.type}/${id}`) : clause.values;
    if (clause.chain && !values.length) {
      where.push('false');
      continue;
    }
    const sql = await clause.def.where!(values, clause.chain ? undefined : clause.modifier === 'not' ? undefined : clause.modifier, p);
    where.push(clause.modifier === 'not' && !clause.chain ? `NOT coalesce(${sql}, false)` : sql);
  }
  return where;
}

/** Whether a count of the matches is cheap (default `_total`): a parameter narrowing to a patient or a few ids. */
export function cheapToCount(search: ParsedSearch): boolean {
  return search.clauses.some((c) => c.def.selective || c.chain);
}

export function orderBy(search: ParsedSearch, fallback: string, tiebreak: string): string {
  if (!search.sort.length) return fallback;
  return [...search.sort.map((s) => `${s.def.sort} ${s.desc ? 'DESC' : 'ASC'} NULLS LAST`), tiebreak].join(', ');
}

/** The URL of this search with the parameters understood (R4: the self link shows what was applied). */
export function searchUrl(req: Request, search: ParsedSearch, offset?: number): string {
  const url = new URL(`${req.baseUrl}${req.path}`, `${req.protocol}://${req.get('host') ?? 'localhost'}`);
  for (const [k, v] of search.used) if (k !== '_offset') url.searchParams.append(k, v);
  const at = offset ?? search.offset;
  if (at) url.searchParams.set('_offset', String(at));
  return url.toString();
}

/** self, and next / previous / first when paging. */
export function pageLinks(req: Request, search: ParsedSearch, hasMore: boolean): Array<{ relation: string; url: string }> {
  const links = [{ relation: 'self', url: searchUrl(req, search) }];
  if (search.offset > 0) {
    links.push({ relation: 'first', url: searchUrl(req, search, 0) });
    links.push({ relation: 'previous', url: searchUrl(req, search, Math.max(0, search.offset - search.count)) });
  }
  if (hasMore) links.push({ relation: 'next', url: searchUrl(req, search, search.offset + search.count) });
  return links;
}
