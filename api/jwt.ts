/**
 * JWT bearer tokens for the HTTP API, next to API keys (api/auth.ts). Owns verification only:
 * it never issues tokens (the identity provider of the alliance or a member does).
 *
 * Accepted: compact JWS with `alg` HS256 (a shared secret from an environment variable or a file,
 * never the config itself), RS256 or ES256 (public keys in the config as PEM, or a JWKS file). The
 * algorithm is fixed by the key, not by the token: a token cannot choose `none`, nor HS256 with a
 * public key as the secret (the classic confusion). `exp` is required; `nbf`, `iss` and `aud` are
 * checked with a small clock skew. Scopes come from the `scope` claim (space separated, RFC 8693 /
 * OAuth style; an `scp` array is accepted too), each mapped onto ours through `scopeMap` or taken
 * as is when it already is one of ours; unknown scopes are ignored, so a token without any of ours
 * authenticates but every guarded route answers 403. node:crypto only (no dependency): the three
 * algorithms are a few lines each, and a library would bring its own algorithm negotiation.
 */
import { createHmac, createPublicKey, timingSafeEqual, verify as verifySignature, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { JwtConfig } from '../hub/config';
import { scopeSchema, type Scope } from '../hub/scopes';
import { HubError } from '../mappings/outcome';

export interface JwtPrincipal {
  name: string;
  scopes: Scope[];
}

type Alg = 'HS256' | 'RS256' | 'ES256';
interface VerificationKey {
  kid?: string;
  alg: Alg;
  key: KeyObject | Buffer;
}

/** Why a token was refused (the 401's message; never the token itself). */
export class JwtRefused extends Error {}

/**
 * A verifier for one configuration (keys read once, at start: a missing or weak key is a
 * configuration error, HubError 'invalid'); it throws JwtRefused with the reason.
 */
export function jwtVerifier(config: JwtConfig, env: NodeJS.ProcessEnv = process.env): (token: string) => JwtPrincipal {
  const keys = verificationKeys(config, env);
  const skew = config.clockSkewSeconds;
  return (token) => {
    const parts = token.split('.');
    if (parts.length !== 3) throw refused('not a compact JWS');
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
    const header = decodeJson(headerPart, 'header') as { alg?: unknown; kid?: unknown; typ?: unknown; crit?: unknown };
    if (header.crit !== undefined) throw refused('critical header extensions are not supported');
    const alg = header.alg;
    if (alg !== 'HS256' && alg !== 'RS256' && alg !== 'ES256') throw refused(`algorithm ${String(alg)} is not accepted`);
    const candidates = keys.filter((k) => k.alg === alg && (header.kid === undefined || k.kid === undefined || k.kid === header.kid));
    if (!candidates.length) throw refused(`no ${alg} key${header.kid !== undefined ? ` with kid ${String(header.kid)}` : ''} is configured`);
    const signed = Buffer.from(`${headerPart}.${payloadPart}`, 'ascii');
    const signature = Buffer.from(signaturePart, 'base64url');
    if (!candidates.some((k) => signatureValid(k, signed, signature))) throw refused('signature does not verify');

    const claims = decodeJson(payloadPart, 'payload') as Record<string, unknown>;
    const now = Math.floor(Date.now() / 1000);
    if (typeof claims.exp !== 'number') throw refused('exp is required');
    if (now > claims.exp + skew) throw refused('token expired');
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || now + skew < claims.nbf)) throw refused('token not yet valid (nbf)');
    if (claims.iss !== config.issuer) throw refused('wrong issuer');
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(config.audience)) throw refused('wrong audience');

    const granted = typeof claims.scope === 'string' ? claims.scope.split(' ') : Array.isArray(claims.scp) ? claims.scp.map(String) : [];
    const scopes = new Set<Scope>();
    for (const s of granted.filter(Boolean)) {
      const mapped = config.scopeMap[s] ?? (scopeSchema.safeParse(s).success ? (s as Scope) : undefined);
      if (mapped) scopes.add(mapped);
    }
    const subject = typeof claims.sub === 'string' && claims.sub ? claims.sub : typeof claims.client_id === 'string' ? claims.client_id : 'unknown';
    return { name: `jwt:${subject}`, scopes: [...scopes] };
  };
}

/** A bearer credential shaped like a JWT (three base64url parts, the first a JSON object). API keys never are. */
export function looksLikeJwt(credential: string): boolean {
  return /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/.test(credential);
}

function signatureValid(k: VerificationKey, signed: Buffer, signature: Buffer): boolean {
  if (k.alg === 'HS256') {
    const expected = createHmac('sha256', k.key as Buffer).update(signed).digest();
    return expected.length === signature.length && timingSafeEqual(expected, signature);
  }
  if (k.alg === 'ES256') {
    // JWS carries ECDSA signatures as r‖s (64 bytes for P-256), not DER.
    if (signature.length !== 64) return false;
    return verifySignature('sha256', signed, { key: k.key as KeyObject, dsaEncoding: 'ieee-p1363' }, signature);
  }
  return verifySignature('sha256', signed, k.key as KeyObject, signature);
}

function verificationKeys(config: JwtConfig, env: NodeJS.ProcessEnv): VerificationKey[] {
  const keys: VerificationKey[] = [];
  const secret = config.hs256SecretEnv && env[config.hs256SecretEnv] ? env[config.hs256SecretEnv]! : config.hs256SecretFile ? readFileSync(config.hs256SecretFile, 'utf8').trim() : undefined;
  if (secret !== undefined) {
    // RFC 7518 §3.2: an HS256 key must be at least as long as the hash.
    if (Buffer.byteLength(secret) < 32) throw new HubError('invalid', 'api.jwt: the HS256 secret must be at least 32 bytes', 'api.jwt');
    keys.push({ alg: 'HS256', key: Buffer.from(secret) });
  }
  for (const k of config.publicKeys) keys.push({ kid: k.kid, alg: k.alg, key: checkedKey(createPublicKey(k.pem), k.alg, k.kid) });
  if (config.jwksFile) {
    const jwks = JSON.parse(readFileSync(config.jwksFile, 'utf8')) as { keys?: Array<JsonWebKey & { kid?: string; alg?: string; use?: string }> };
    for (const jwk of jwks.keys ?? []) {
      if (jwk.use && jwk.use !== 'sig') continue;
      const alg: Alg | undefined = jwk.kty === 'RSA' ? 'RS256' : jwk.kty === 'EC' && jwk.crv === 'P-256' ? 'ES256' : undefined;
      if (!alg || (jwk.alg && jwk.alg !== alg)) continue;
      keys.push({ kid: jwk.kid, alg, key: checkedKey(createPublicKey({ key: jwk, format: 'jwk' }), alg, jwk.kid) });
    }
  }
  if (!keys.length) throw new HubError('invalid', 'api.jwt: no verification key (HS256 secret not set, no publicKeys, empty JWKS)', 'api.jwt');
  return keys;
}

function checkedKey(key: KeyObject, alg: Alg, kid?: string): KeyObject {
  const ok = alg === 'RS256' ? key.asymmetricKeyType === 'rsa' : key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  if (!ok) throw new HubError('invalid', `api.jwt: key ${kid ?? ''} is not a${alg === 'RS256' ? 'n RSA' : ' P-256 EC'} public key`, 'api.jwt');
  return key;
}

function decodeJson(part: string, what: string): unknown {
  try {
    const value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value;
  } catch {
    throw refused(`${what} is not base64url JSON`);
  }
}

function refused(reason: string): JwtRefused {
  return new JwtRefused(reason);
}
