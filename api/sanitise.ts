/**
 * The one check every request passes before any route (api/server.ts mounts it first): the path and
 * query must decode (no malformed `%`), carry no control characters (NUL cannot even be stored by
 * PostgreSQL; the others are never part of an id, a code or a name), numeric paging parameters must
 * be integers a 64-bit column and JavaScript both hold exactly, and a request body sent to a JSON
 * route must be JSON. Each refusal is a 4xx OperationOutcome naming the field; routes then validate
 * their own parameters (api/input.ts), knowing these cannot reach them.
 */
import type { NextFunction, Request, Response } from 'express';
import { isFhirApiPath, sendClientError } from './errors';

// eslint-disable-next-line no-control-regex
export const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Query parameters that are counts, offsets or ids wherever they appear. A digits-only value beyond
 * Number.MAX_SAFE_INTEGER would be rounded by JavaScript and may overflow bigint in SQL. (Not every
 * digits-only parameter: a resident id or an MRN is digits too, and is text.)
 */
const NUMERIC = new Set(['_count', '_offset', 'limit', 'before', 'after', 'offset', 'count', 'sample', 'version']);

/** Under these paths a request body is JSON (FHIR JSON included); the FHIR rest-hook takes any body. */
const JSON_BODY_PATHS = /^\/(api|fhir|recognition|feeds)(\/|$)/;
const ANY_BODY_PATHS = /^\/fhir\/subscription\//;

function decode(raw: string, plus: boolean): string | undefined {
  try {
    return decodeURIComponent(plus ? raw.replace(/\+/g, ' ') : raw);
  } catch {
    return undefined;
  }
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
}

export function sanitiseRequest(req: Request, res: Response, next: NextFunction): void {
  const fhir = isFhirApiPath(req.originalUrl);
  const refuse = (status: number, code: string, message: string, where: string) => sendClientError(res, status, code, message, where, fhir);
  const url = req.originalUrl;
  const q = url.indexOf('?');
  const rawPath = q >= 0 ? url.slice(0, q) : url;
  for (const segment of rawPath.split('/')) {
    const decoded = decode(segment, false);
    if (decoded === undefined) return refuse(400, 'invalid', 'path: malformed percent-encoding', 'path');
    if (CONTROL.test(decoded)) return refuse(400, 'invalid', 'path: control characters (such as NUL) are not allowed', 'path');
  }
  if (q >= 0) {
    for (const pair of url.slice(q + 1).split('&')) {
      if (!pair) continue;
      const eq = pair.indexOf('=');
      const name = decode(eq >= 0 ? pair.slice(0, eq) : pair, true);
      const value = decode(eq >= 0 ? pair.slice(eq + 1) : '', true);
      const where = `query.${name ?? '?'}`;
      if (name === undefined || value === undefined) return refuse(400, 'invalid', `${where}: malformed percent-encoding`, where);
      if (CONTROL.test(name) || CONTROL.test(value)) return refuse(400, 'invalid', `${where}: control characters (such as NUL) are not allowed`, where);
      if (NUMERIC.has(name) && /^\s*[+-]?\d+\s*$/.test(value) && !Number.isSafeInteger(Number(value))) {
        return refuse(400, 'invalid', `${where}: out of range (at most ${Number.MAX_SAFE_INTEGER})`, where);
      }
    }
  }
  if (req.method !== 'GET' && req.method !== 'HEAD' && hasBody(req) && JSON_BODY_PATHS.test(req.path) && !ANY_BODY_PATHS.test(req.path)) {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type && type !== 'application/json' && type !== 'application/fhir+json' && !type.endsWith('+json')) {
      return refuse(415, 'unsupported-media-type', `Content-Type ${type} not supported: send application/json or application/fhir+json`, 'body');
    }
  }
  next();
}
