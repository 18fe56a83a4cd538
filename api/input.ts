/**
 * Request input validation shared by every route module (api/server.ts, api/console/api.ts,
 * api/terminology.ts): a zod schema or a 400 that names the field. Before the schema, every string
 * in the value is checked: no NUL anywhere (PostgreSQL's text cannot hold it, and it would come back
 * as a database error), and in a path or query no control character at all (api/sanitise.ts refuses
 * those for every route already; this keeps a route safe when it parses a value from elsewhere).
 */
import { z } from 'zod';
import { HubError } from '../mappings/outcome';

// eslint-disable-next-line no-control-regex
const ANY_CONTROL = /[\u0000-\u001f\u007f]/;
/** In a body: what PostgreSQL text and jsonb cannot hold (NUL; a lone UTF-16 surrogate, which JSON's `\udXXX` can spell). */
const BODY_UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** The path of the first string in `value` that `bad` matches (depth-bounded: bodies are size-limited). */
function findString(value: unknown, bad: RegExp, path: Array<string | number> = [], depth = 0): Array<string | number> | undefined {
  if (typeof value === 'string') return bad.test(value) ? path : undefined;
  if (depth > 64 || value === null || typeof value !== 'object') return undefined;
  for (const [k, v] of Object.entries(value)) {
    if (bad.test(k)) return [...path, k];
    const found = findString(v, bad, [...path, Array.isArray(value) ? Number(k) : k], depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** Parse `value` with `schema`; a failure is HubError `invalid` located at `where.path`. */
export function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const at = findString(value, where === 'body' ? BODY_UNSTORABLE : ANY_CONTROL);
  if (at) throw new HubError('invalid', `${where}${at.length ? '.' + at.join('.') : ''}: ${where === 'body' ? 'NUL characters and unpaired surrogates are' : 'control characters (such as NUL) are'} not allowed`, where);
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new HubError('invalid', `${where}${issue.path.length ? '.' + issue.path.join('.') : ''}: ${issue.message}`, where);
  }
  return result.data;
}

/**
 * A numeric `:id` route parameter: a positive integer that JavaScript holds exactly (zod's int is
 * a safe integer), so it fits the bigint id columns.
 */
export const idParam = z.object({ id: z.coerce.number().int().positive() });

/** An integer query parameter (`_count`, `_offset`, `limit`…) between `min` and `max`, or a 400 naming it. */
export function intParam(raw: unknown, name: string, min: number, max: number, fallback: number): number {
  const value = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  if (value === undefined || value === '') return fallback;
  const n = typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new HubError('invalid', `query.${name}: an integer ${min}–${max}`, name);
  return n;
}
