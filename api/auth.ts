/**
 * Authentication with scopes: API keys, and JWT bearer tokens when `api.jwt` is configured
 * (api/jwt.ts: HS256 / RS256 / ES256, exp, nbf, iss, aud, scopes from the `scope` claim). Keys
 * are compared by their sha256 in constant time; the configuration may hold only hashes. `admin`
 * implies every scope.
 */
import { timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { hashApiKey, type HubConfig } from '../hub/config';
import type { Scope } from '../hub/scopes';
import { jwtVerifier, JwtRefused, looksLikeJwt } from './jwt';
import { sendClientError } from './errors';

export interface Principal {
  name: string;
  scopes: Scope[];
}

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

export function authenticator(config: HubConfig, env: NodeJS.ProcessEnv = process.env) {
  const keys = config.api.keys.map((k) => ({ name: k.name, scopes: k.scopes, hash: Buffer.from(k.sha256 ?? hashApiKey(k.key!), 'hex') }));
  const verifyJwt = config.api.jwt ? jwtVerifier(config.api.jwt, env) : undefined;
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.header('authorization');
    const presented = header?.startsWith('Bearer ') ? header.slice(7) : req.header('x-api-key');
    if (!presented) return void sendClientError(res.set('WWW-Authenticate', 'Bearer'), 401, 'unauthenticated', 'an API key or a token is required (Authorization: Bearer <key or JWT>)');
    if (verifyJwt && looksLikeJwt(presented)) {
      try {
        req.principal = verifyJwt(presented);
      } catch (error) {
        if (!(error instanceof JwtRefused)) throw error;
        return void sendClientError(res.set('WWW-Authenticate', 'Bearer error="invalid_token"'), 401, 'unauthenticated', `token refused: ${error.message}`);
      }
      return next();
    }
    const hash = Buffer.from(hashApiKey(presented), 'hex');
    const match = keys.find((k) => timingSafeEqual(k.hash, hash));
    if (!match) return void sendClientError(res, 401, 'unauthenticated', 'unknown API key');
    req.principal = { name: match.name, scopes: match.scopes };
    next();
  };
}

/** Whether a principal's scopes allow something any of `wanted` allows: `admin` implies every scope. */
export function hasScope(scopes: readonly Scope[], ...wanted: Scope[]): boolean {
  return scopes.includes('admin') || wanted.some((s) => scopes.includes(s));
}

export function requireScope(scope: Scope) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (hasScope(req.principal?.scopes ?? [], scope)) return next();
    sendClientError(res, 403, 'forbidden', `scope ${scope} required`);
  };
}

/** For routes any of several scopes may use (`admin` implies all): the one such guard, used by the API and the console. */
export function requireAnyScope(...wanted: Scope[]) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (hasScope(req.principal?.scopes ?? [], ...wanted)) return next();
    sendClientError(res, 403, 'forbidden', `one of the scopes ${wanted.join(', ')} required`);
  };
}
