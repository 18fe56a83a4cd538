/**
 * JWT bearer tokens on the real HTTP API (createApi over a test hub): HS256 with a shared secret
 * from the environment, RS256 from a PEM public key, ES256 from a JWKS file. Valid tokens pass with
 * the scopes of their `scope` claim; expired, not-yet-valid, wrong issuer, wrong audience, wrong
 * signature, `alg: none` and HS256-signed-with-the-public-key are refused with 401; a token without
 * the route's scope gets 403; API keys keep working next to tokens; a JWT read is audited under the
 * token's subject.
 */
import { createHmac, createSign, generateKeyPairSync, sign as signWith, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../hub/config';
import { jwtVerifier } from '../api/jwt';
import { receiveProcessed, startApiTestHub, type ApiTestHub } from './support/hub';

const SECRET = 'a-shared-secret-of-at-least-32-bytes!!';
const API_KEY = 'reader-key-0123456789abcdef';
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const dir = mkdtempSync(path.join(os.tmpdir(), 'jwt-'));
const jwksFile = path.join(dir, 'jwks.json');
writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', use: 'sig', alg: 'ES256' }] }));

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}) => ({ iss: 'https://idp.yilian.example', aud: 'yilian-hub', sub: 'dr-wang', exp: now() + 300, scope: 'patient.read', ...extra });

function token(alg: string, payload: Record<string, unknown>, key?: KeyObject | string, header: Record<string, unknown> = {}): string {
  const signed = `${b64({ alg, typ: 'JWT', ...header })}.${b64(payload)}`;
  if (alg === 'none') return `${signed}.`;
  if (alg === 'HS256') return `${signed}.${createHmac('sha256', key as string).update(signed).digest('base64url')}`;
  if (alg === 'RS256') return `${signed}.${createSign('sha256').update(signed).sign(key as KeyObject).toString('base64url')}`;
  return `${signed}.${signWith('sha256', Buffer.from(signed), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

let hub: ApiTestHub;
let base: string;

beforeAll(async () => {
  process.env.YILIAN_TEST_JWT_SECRET = SECRET;
  hub = await startApiTestHub('jwt', {
    members: [{ id: 'm1', name: 'Member 1', tier: 'tertiary', channels: [{ id: 'his', kind: 'mllp', port: 0 }] }],
    api: {
      keys: [{ name: 'clinic-his', key: API_KEY, scopes: ['patient.read'] }],
      jwt: {
        issuer: 'https://idp.yilian.example',
        audience: 'yilian-hub',
        hs256SecretEnv: 'YILIAN_TEST_JWT_SECRET',
        publicKeys: [{ kid: 'rsa-1', alg: 'RS256', pem: rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString() }],
        jwksFile,
        scopeMap: { 'hub/patient.read': 'patient.read', 'hub/admin': 'admin' },
      },
    },
  });
  base = hub.base;
});

afterAll(async () => {
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function read(credential: string, route = '/fhir/Patient?_count=1'): Promise<{ status: number; body: { code?: string; message?: string } }> {
  const res = await fetch(`${base}${route}`, { headers: { authorization: `Bearer ${credential}` } });
  // Under /fhir an error is the bare OperationOutcome (issue 22): its code and diagnostics.
  const body = (await res.json()) as { code?: string; message?: string; issue?: Array<{ diagnostics?: string; details?: { coding?: Array<{ code?: string }> } }> };
  return { status: res.status, body: { code: body.code ?? body.issue?.[0]?.details?.coding?.[0]?.code, message: body.message ?? body.issue?.[0]?.diagnostics } };
}

test('valid tokens: HS256 (secret from the environment), RS256 (PEM), ES256 (JWKS file); a mapped provider scope works', async () => {
  expect((await read(token('HS256', claims(), SECRET))).status).toBe(200);
  expect((await read(token('RS256', claims(), rsa.privateKey, { kid: 'rsa-1' }))).status).toBe(200);
  expect((await read(token('ES256', claims({ aud: ['other', 'yilian-hub'] }), ec.privateKey, { kid: 'ec-1' }))).status).toBe(200);
  expect((await read(token('RS256', claims({ scope: 'openid hub/patient.read' }), rsa.privateKey))).status).toBe(200);
});

test('expired, not yet valid, without exp, wrong issuer, wrong audience: 401 with the reason', async () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [claims({ exp: now() - 120 }), 'token expired'],
    [claims({ nbf: now() + 600 }), 'not yet valid'],
    [claims({ exp: undefined }), 'exp is required'],
    [claims({ iss: 'https://evil.example' }), 'wrong issuer'],
    [claims({ aud: 'someone-else' }), 'wrong audience'],
  ];
  for (const [payload, reason] of cases) {
    const r = await read(token('HS256', payload, SECRET));
    expect(r.status).toBe(401);
    expect(r.body.message).toContain(reason);
  }
  // within the clock skew (60 s) an exp just passed is still accepted
  expect((await read(token('HS256', claims({ exp: now() - 10 }), SECRET))).status).toBe(200);
});

test('wrong signatures and algorithm tricks are refused: another key, a tampered payload, alg none, HS256 keyed with the public key', async () => {
  const wrongKey = await read(token('RS256', claims(), otherRsa.privateKey));
  expect(wrongKey.status).toBe(401);
  expect(wrongKey.body.message).toContain('signature does not verify');
  expect((await read(token('HS256', claims(), 'another-secret-that-is-32-bytes-long!!'))).status).toBe(401);
  const [h, , s] = token('HS256', claims(), SECRET).split('.');
  expect((await read(`${h}.${b64(claims({ scope: 'admin' }))}.${s}`)).status).toBe(401);
  const none = await read(token('none', claims({ scope: 'admin' })));
  expect(none.status).toBe(401);
  expect(none.body.message).toContain('algorithm none is not accepted');
  const publicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  expect((await read(token('HS256', claims(), publicPem))).status).toBe(401);
  expect((await read(token('RS256', claims(), rsa.privateKey, { kid: 'unknown' }))).status).toBe(401);
});

test('a valid token without the route scope gets 403; admin in the token implies it; API keys still work', async () => {
  const feedOnly = await read(token('HS256', claims({ scope: 'feed.read metrics' }), SECRET));
  expect(feedOnly.status).toBe(403);
  expect(feedOnly.body.code).toBe('forbidden');
  expect((await read(token('HS256', claims({ scope: '' }), SECRET))).status).toBe(403);
  expect((await read(token('HS256', claims({ scope: 'hub/admin' }), SECRET))).status).toBe(200);
  expect((await read(API_KEY)).status).toBe(200);
  expect((await read('not-a-known-key-0123456789')).status).toBe(401);
});

test('a patient read with a token is audited under the token subject', async () => {
  const adt = ['MSH|^~\\&|HIS|M1|YILIAN|HUB|20261101080000||ADT^A04^ADT_A01|J1|P|2.5|||||CHN|UNICODE UTF-8', 'EVN|A04|20261101080000', 'PID|1||J100^^^M1^MR||王^芳||19800101|F', 'PV1|1|O|内科^^^M1'].join('\r') + '\r';
  await receiveProcessed(hub, 'm1', Buffer.from(adt));
  const golden = (await hub.runtime.db.query<{ golden_id: string }>(`SELECT golden_id FROM mpi_link WHERE member_id = 'm1' AND mrn = 'J100' AND state = 'MATCH'`)).rows[0]!.golden_id;
  expect((await read(token('HS256', claims({ sub: 'dr-li' }), SECRET), `/fhir/Patient/${golden}`)).status).toBe(200);
  const audit = await hub.runtime.db.query(`SELECT actor, patient_key FROM audit_event WHERE actor = 'jwt:dr-li'`);
  expect(audit.rows).toEqual([{ actor: 'jwt:dr-li', patient_key: golden }]);
});

test('configuration: a short HS256 secret and a key of the wrong kind are refused at start', () => {
  const short = parseConfig({ api: { jwt: { issuer: 'i', audience: 'a', hs256SecretEnv: 'S' } } }).api.jwt!;
  expect(() => jwtVerifier(short, { S: 'too-short' })).toThrow(/at least 32 bytes/);
  const wrongKind = parseConfig({ api: { jwt: { issuer: 'i', audience: 'a', publicKeys: [{ alg: 'ES256', pem: rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString() }] } } }).api.jwt!;
  expect(() => jwtVerifier(wrongKind, {})).toThrow(/not a P-256 EC public key/);
  expect(() => parseConfig({ api: { jwt: { issuer: 'i', audience: 'a' } } })).toThrow(/give a key/);
});
