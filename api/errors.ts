/**
 * How the HTTP API answers a failure: every answer is an OperationOutcome. A client's mistake is a
 * 4xx naming what was wrong (400 a bad parameter or body, 404, 409, 413 too large, 415 a media type,
 * encoding or charset we do not take); a 5xx is only for our own faults and never quotes what
 * failed inside (a PostgreSQL message names tables, columns and values): the details go to the
 * server's log under an id, and the answer carries the same id so an operator can find the line.
 *
 * On the FHIR read API's paths (isFhirApiPath) the body is the bare OperationOutcome; elsewhere it
 * is the OperationOutcome plus the API's `{code, message}` (what the CLI and the console read) and
 * the nested `outcome` those routes always carried (the terminology operations and the rest-hook
 * under /fhir included: their clients read it).
 */
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { HubError, type OperationOutcome } from '../mappings/outcome';

export interface ErrorAnswer {
  status: number;
  /** The API's machine-readable code (`invalid`, `not-found`, `too-large`, `unsupported-media-type`, `internal`…). */
  code: string;
  /** Safe to show the client: never text from the database or a stack. */
  message: string;
  /** The request field at fault, when known. */
  expression?: string;
  /** Set for 5xx: the id the log line carries too. */
  errorId?: string;
}

/** FHIR issue-type (http://hl7.org/fhir/issue-type) for each API code. */
const issueType: Record<string, string> = {
  invalid: 'invalid',
  'not-found': 'not-found',
  conflict: 'conflict',
  'too-large': 'too-long',
  'unsupported-media-type': 'not-supported',
  unauthenticated: 'login',
  forbidden: 'forbidden',
  'not-allowed': 'not-supported',
  'not-supported': 'not-supported',
  'not-acceptable': 'not-supported',
  'not-ready': 'transient',
  unavailable: 'transient',
  internal: 'exception',
};

/**
 * Paths the FHIR read router (api/fhir.ts) serves: /fhir/* but the terminology operations
 * (api/terminology.ts) and the subscription rest-hook, which keep the API's error shape.
 */
export function isFhirApiPath(originalUrl: string): boolean {
  return /^\/fhir(\/|\?|$)/.test(originalUrl) && !/^\/fhir\/(ConceptMap|CodeSystem|subscription)([/?$]|$)/.test(originalUrl);
}

export function operationOutcome(answer: ErrorAnswer): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: answer.status >= 500 ? 'fatal' : 'error',
        code: issueType[answer.code] ?? 'processing',
        diagnostics: answer.message,
        ...(answer.expression ? { expression: [answer.expression] } : {}),
        details: { coding: [{ system: 'urn:yilian:error', code: answer.code }] },
      },
    ],
  };
}

/** The body of an error answer: see the module comment for the two shapes. */
export function errorBody(answer: ErrorAnswer, fhir: boolean): Record<string, unknown> {
  const outcome = operationOutcome(answer);
  if (fhir) return { ...outcome, ...(answer.errorId ? { id: answer.errorId } : {}) };
  return { ...outcome, code: answer.code, message: answer.message, outcome, ...(answer.errorId ? { errorId: answer.errorId } : {}) };
}

/** The media type of every FHIR API answer (R4 http: the fhirVersion parameter names the release). */
export const FHIR_JSON = 'application/fhir+json; fhirVersion=4.0; charset=utf-8';

export function sendError(res: Response, answer: ErrorAnswer, fhir = false): void {
  // A Buffer: express would re-format a string's media type (lower-casing fhirVersion).
  res.status(answer.status).setHeader('Content-Type', fhir ? FHIR_JSON : 'application/json; charset=utf-8');
  res.send(Buffer.from(JSON.stringify(errorBody(answer, fhir))));
}

/** A client mistake answered directly by a route or middleware. */
/** (On a FHIR API path the answer is the bare OperationOutcome unless `fhir` says otherwise: 401 and 403 included.) */
export function sendClientError(res: Response, status: number, code: string, message: string, expression?: string, fhir = isFhirApiPath(res.req?.originalUrl ?? '')): void {
  sendError(res, { status, code, message, expression }, fhir);
}

/** HubError codes that describe what the client sent: a 4xx. */
/** (Keyed by string: a code added to HubErrorCode later falls to the 5xx default until listed here.) */
const hubStatus: Record<string, [number, string]> = {
  invalid: [400, 'invalid'],
  charset: [400, 'invalid'],
  'not-hl7': [400, 'invalid'],
  structure: [400, 'invalid'],
  incomplete: [400, 'invalid'],
  framing: [400, 'invalid'],
  unsupported: [400, 'invalid'],
  unstorable: [400, 'invalid'],
  'not-found': [404, 'not-found'],
  conflict: [409, 'conflict'],
  'too-large': [413, 'too-large'],
};

/** body-parser's (http-errors) error types, each a client mistake with our own wording. */
const bodyErrors: Record<string, [number, string, string]> = {
  'entity.parse.failed': [400, 'invalid', 'request body is not valid JSON'],
  'entity.too.large': [413, 'too-large', 'request body is larger than this route takes (after decompression)'],
  'parameters.too.many': [413, 'too-large', 'request body has too many parameters'],
  'encoding.unsupported': [415, 'unsupported-media-type', 'Content-Encoding not supported: send identity, gzip, deflate or br'],
  'charset.unsupported': [415, 'unsupported-media-type', 'request body charset not supported: send UTF-8'],
  'request.size.invalid': [400, 'invalid', 'request body length does not match Content-Length'],
  'request.aborted': [400, 'invalid', 'request body was cut off'],
};

/** A PostgreSQL error (node-postgres DatabaseError): a five-character SQLSTATE and a severity. */
function sqlState(error: unknown): string | undefined {
  const e = error as { code?: unknown; severity?: unknown } | null;
  return e && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string' ? e.code : undefined;
}

/**
 * What to answer for `error`. A PostgreSQL data exception (class 22: a value out of range, a NUL or
 * malformed text reaching a query) can only come from a value the request carried, because the
 * param checks (sanitise.ts, input.ts) should have refused it first: it is still the client's
 * mistake (400), but named generically and logged, as it marks a check we lack.
 */
export function classify(error: unknown): ErrorAnswer & { log: boolean } {
  if (error instanceof HubError) {
    const client = hubStatus[error.code];
    if (client) return { status: client[0], code: client[1], message: error.message, expression: error.location, log: false };
    return { status: error.transient ? 503 : 500, code: error.transient ? 'unavailable' : 'internal', message: error.transient ? 'a service the hub needs is unavailable; try again' : 'internal error', log: true };
  }
  const type = (error as { type?: unknown } | null)?.type;
  if (typeof type === 'string' && bodyErrors[type]) {
    const [status, code, message] = bodyErrors[type]!;
    return { status, code, message, expression: 'body', log: false };
  }
  const state = sqlState(error);
  if (state?.startsWith('22')) return { status: 400, code: 'invalid', message: 'a value in the request is malformed or out of range', log: true };
  if (state === '23505' || state === '23P01') return { status: 409, code: 'conflict', message: 'the request conflicts with stored state', log: true };
  if (state && (state.startsWith('08') || state.startsWith('53') || state === '57P01' || state === '57014')) {
    return { status: 503, code: 'unavailable', message: 'the database is unavailable or busy; try again', log: true };
  }
  // Other http-errors with a 4xx (express decoding a malformed `%` in a path parameter, …): the
  // client's mistake; their messages are written for clients (`expose`), but ours are plainer.
  const status = (error as { status?: unknown; statusCode?: unknown } | null)?.status ?? (error as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    if (status === 413) return { status, code: 'too-large', message: 'request is larger than this route takes', log: false };
    if (status === 415) return { status, code: 'unsupported-media-type', message: 'request body media type, encoding or charset not supported', log: false };
    return { status: 400, code: 'invalid', message: 'the request is malformed (a path or query value could not be decoded)', log: false };
  }
  return { status: 500, code: 'internal', message: 'internal error', log: true };
}

export type ErrorLog = (entry: Record<string, unknown>) => void;

/** One JSON line on stderr: the operator's side of an error answer. */
export const stderrErrorLog: ErrorLog = (entry) => process.stderr.write(`${JSON.stringify(entry)}\n`);

/**
 * The express error handler: answers as `classify` says; logs what it hides (and every 5xx) with an
 * id that the answer carries too.
 */
export function errorHandler(log: ErrorLog, fhir: (req: Request) => boolean) {
  return (error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const answer = classify(error);
    if (answer.log || answer.status >= 500) {
      answer.errorId = randomUUID();
      const e = error as { message?: unknown; code?: unknown; stack?: unknown; detail?: unknown; where?: unknown };
      log({ level: answer.status >= 500 ? 'error' : 'warn', errorId: answer.errorId, status: answer.status, method: req.method, path: req.path, error: String(e?.message ?? error), code: e?.code, detail: e?.detail, stack: e?.stack });
      if (answer.status < 500) answer.message = `${answer.message} (reference ${answer.errorId})`;
      else answer.message = `${answer.message}: reference ${answer.errorId}`;
    }
    // A response already under way (a streamed export) cannot be answered again: cut it off.
    if (res.headersSent) return void res.destroy(error instanceof Error ? error : undefined);
    sendError(res, answer, fhir(req));
  };
}
