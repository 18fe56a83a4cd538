/**
 * Credentials for a member's FHIR server: none, HTTP basic, a static bearer token, or SMART Backend
 * Services (client-credentials grant with a JWT assertion signed RS384 or ES384 by node:crypto).
 * Owns token caching: a SMART token is reused until shortly before it expires, and dropped when the
 * server answers 401 (revoked early, clocks apart) so the next request gets a fresh one. Never logs
 * or stores a secret.
 */
import { createPrivateKey, randomUUID, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FhirAuthConfig } from '../../hub/config';
import { HubError } from '../../mappings/outcome';

export interface AuthProvider {
  /** The Authorization header value, or undefined for none. */
  header(): Promise<string | undefined>;
  /** The server said 401: forget cached credentials. Returns true when retrying may help (a new token can be fetched). */
  invalidate(): boolean;
}

export interface SmartBackendOptions {
  clientId: string;
  /** Token endpoint, or a function finding it (SMART discovery). */
  tokenUrl: string | (() => Promise<string>);
  scope: string;
  alg: 'RS384' | 'ES384';
  kid?: string;
  privateKey: KeyObject;
  /** Renew this long before expiry (clock skew, request time). */
  renewBeforeMs?: number;
  timeoutMs?: number;
  now?: () => number;
}

const base64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** A signed JWT (compact form) for the client-credentials grant (SMART Backend Services §4.1). */
export function signClientAssertion(options: { clientId: string; audience: string; alg: 'RS384' | 'ES384'; kid?: string; privateKey: KeyObject; nowSeconds: number }): string {
  const header = { alg: options.alg, typ: 'JWT', ...(options.kid ? { kid: options.kid } : {}) };
  const payload = { iss: options.clientId, sub: options.clientId, aud: options.audience, exp: options.nowSeconds + 300, jti: randomUUID() };
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  // ES384 in a JWT is the raw r||s pair (IEEE P1363), not DER.
  const signature = sign('sha384', Buffer.from(input), options.alg === 'ES384' ? { key: options.privateKey, dsaEncoding: 'ieee-p1363' } : options.privateKey);
  return `${input}.${base64url(signature)}`;
}

export class SmartBackendAuth implements AuthProvider {
  private token?: { value: string; expiresAt: number };
  private pending?: Promise<string>;
  /** Tokens obtained so far (observability, tests). */
  tokensIssued = 0;

  constructor(private readonly options: SmartBackendOptions) {}

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  async header(): Promise<string> {
    if (this.token && this.now() < this.token.expiresAt - (this.options.renewBeforeMs ?? 10_000)) return `Bearer ${this.token.value}`;
    // One token request at a time, shared by concurrent callers.
    this.pending ??= this.fetchToken().finally(() => (this.pending = undefined));
    return `Bearer ${await this.pending}`;
  }

  invalidate(): boolean {
    this.token = undefined;
    return true;
  }

  private async fetchToken(): Promise<string> {
    const tokenUrl = typeof this.options.tokenUrl === 'string' ? this.options.tokenUrl : await this.options.tokenUrl();
    const assertion = signClientAssertion({ ...this.options, audience: tokenUrl, nowSeconds: Math.floor(this.now() / 1000) });
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      scope: this.options.scope,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    });
    let response: Response;
    try {
      response = await fetch(tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
      });
    } catch (error) {
      throw new HubError('internal', `token endpoint ${tokenUrl} unreachable: ${(error as Error).message}`, 'auth', true);
    }
    const text = await response.text();
    if (!response.ok) {
      // 4xx: our registration or key is wrong — retrying will not help; 5xx: the server's problem.
      throw new HubError(response.status >= 500 ? 'internal' : 'invalid', `token endpoint ${tokenUrl} answered ${response.status}: ${text.slice(0, 300)}`, 'auth', response.status >= 500);
    }
    let parsed: { access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new HubError('invalid', `token endpoint ${tokenUrl} answered with something that is not JSON`, 'auth');
    }
    if (typeof parsed.access_token !== 'string' || !parsed.access_token) throw new HubError('invalid', `token endpoint ${tokenUrl} gave no access_token`, 'auth');
    const expiresIn = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 300;
    this.token = { value: parsed.access_token, expiresAt: this.now() + expiresIn * 1000 };
    this.tokensIssued++;
    return parsed.access_token;
  }
}

class StaticAuth implements AuthProvider {
  constructor(private readonly value: string | undefined) {}
  async header(): Promise<string | undefined> {
    return this.value;
  }
  invalidate(): boolean {
    return false;
  }
}

function secretFromEnv(name: string, env: NodeJS.ProcessEnv): string {
  const value = env[name];
  if (!value) throw new HubError('invalid', `environment variable ${name} (named in the channel's auth) is not set`, 'auth');
  return value;
}

/** SMART discovery: token_endpoint of <baseUrl>/.well-known/smart-configuration. */
async function discoverTokenUrl(baseUrl: string, timeoutMs: number): Promise<string> {
  const url = `${baseUrl}/.well-known/smart-configuration`;
  const response = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(timeoutMs) }).catch((error: Error) => {
    throw new HubError('internal', `${url} unreachable: ${error.message}`, 'auth', true);
  });
  if (!response.ok) throw new HubError('invalid', `${url} answered ${response.status}: set auth.tokenUrl`, 'auth');
  const config = (await response.json()) as { token_endpoint?: unknown };
  if (typeof config.token_endpoint !== 'string') throw new HubError('invalid', `${url} names no token_endpoint: set auth.tokenUrl`, 'auth');
  return config.token_endpoint;
}

export function authProviderFor(auth: FhirAuthConfig, baseUrl: string, options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; now?: () => number } = {}): AuthProvider {
  const env = options.env ?? process.env;
  switch (auth.type) {
    case 'none':
      return new StaticAuth(undefined);
    case 'basic':
      return new StaticAuth(`Basic ${Buffer.from(`${auth.username}:${secretFromEnv(auth.passwordEnv, env)}`).toString('base64')}`);
    case 'bearer':
      return new StaticAuth(`Bearer ${secretFromEnv(auth.tokenEnv, env)}`);
    case 'smart-backend': {
      const pem = auth.privateKeyPath ? readFileSync(auth.privateKeyPath, 'utf8') : secretFromEnv(auth.privateKeyEnv!, env);
      let privateKey: KeyObject;
      try {
        privateKey = createPrivateKey(pem);
      } catch (error) {
        throw new HubError('invalid', `the SMART private key cannot be read: ${(error as Error).message}`, 'auth');
      }
      const expected = auth.alg === 'RS384' ? 'rsa' : 'ec';
      if (privateKey.asymmetricKeyType !== expected) throw new HubError('invalid', `alg ${auth.alg} needs an ${expected.toUpperCase()} key, got ${privateKey.asymmetricKeyType}`, 'auth');
      let discovered: string | undefined;
      const tokenUrl = auth.tokenUrl ?? (async () => (discovered ??= await discoverTokenUrl(baseUrl, options.timeoutMs ?? 30_000)));
      return new SmartBackendAuth({ clientId: auth.clientId, tokenUrl, scope: auth.scope, alg: auth.alg, kid: auth.kid, privateKey, timeoutMs: options.timeoutMs, now: options.now });
    }
  }
}
