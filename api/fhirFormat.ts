/**
 * Content negotiation of the FHIR API (R4 http page): answers are `application/fhir+json;
 * fhirVersion=4.0`; a request may send `application/fhir+json` or `application/json`; a client
 * asking for XML (or anything but JSON) by `_format` or `Accept` gets 406 with an OperationOutcome,
 * not JSON it did not ask for. An interaction this server does not offer on a type it serves (PUT,
 * DELETE, PATCH…) is 405 with an `Allow` header, not 404.
 */
import type { NextFunction, Request, Response } from 'express';
import { FHIR_JSON, sendClientError } from './errors';

export { FHIR_JSON };

/** `_format` values meaning JSON (R4 http §2.21.0.6: the mime type or the short form). */
const JSON_FORMATS = new Set(['json', 'application/json', 'application/fhir+json', 'application/json+fhir']);

/** Send `body` as FHIR JSON. */
export function sendFhir(res: Response, body: unknown, status = 200): void {
  // A Buffer, so that express leaves the media type as written (for a string it re-formats it,
  // lower-casing the fhirVersion parameter).
  res.status(status).setHeader('Content-Type', FHIR_JSON);
  res.send(Buffer.from(JSON.stringify(body)));
}

/** 406 for a `_format` or `Accept` this server cannot answer in; otherwise on. */
export function negotiate(req: Request, res: Response, next: NextFunction): void {
  const format = req.query._format;
  if (format !== undefined) {
    const value = String(Array.isArray(format) ? format[format.length - 1] : format)
      .split(';')[0]!
      .trim()
      .toLowerCase();
    if (!JSON_FORMATS.has(value)) return sendClientError(res, 406, 'not-acceptable', `_format ${value} not supported: this server answers in JSON only (application/fhir+json)`, '_format', true);
    return next();
  }
  const accept = req.header('accept');
  if (accept && !req.accepts(['application/fhir+json', 'application/json'])) {
    return sendClientError(res, 406, 'not-acceptable', `Accept ${accept} not supported: this server answers in JSON only (application/fhir+json)`, 'Accept', true);
  }
  next();
}

/** 405 with what the path allows: the interactions this server does not offer on a type it serves. */
export function methodNotAllowed(allow: string[]) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (allow.includes(req.method) || (req.method === 'HEAD' && allow.includes('GET'))) return next(); // an allowed method that named nothing: 404 further on
    res.set('Allow', allow.join(', '));
    sendClientError(res, 405, 'not-allowed', `${req.method} is not supported here: this FHIR server is read-only (allowed: ${allow.join(', ')})`, undefined, true);
  };
}
