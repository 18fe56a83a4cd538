import { generateKeyPairSync, verify } from 'node:crypto';
import { authProviderFor, signClientAssertion } from './auth';
import { retryAfterMs } from './client';

describe('FHIR auth providers', () => {
  test('basic and bearer take their secrets from the environment', async () => {
    const env = { PW: 'pa:ss', TOKEN: 'abc' };
    expect(await authProviderFor({ type: 'basic', username: 'hub', passwordEnv: 'PW' }, 'http://x', { env }).header()).toBe(`Basic ${Buffer.from('hub:pa:ss').toString('base64')}`);
    expect(await authProviderFor({ type: 'bearer', tokenEnv: 'TOKEN' }, 'http://x', { env }).header()).toBe('Bearer abc');
    expect(await authProviderFor({ type: 'none' }, 'http://x').header()).toBeUndefined();
    expect(() => authProviderFor({ type: 'bearer', tokenEnv: 'MISSING' }, 'http://x', { env })).toThrow(/MISSING/);
  });

  test.each([
    ['RS384', generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['ES384', generateKeyPairSync('ec', { namedCurve: 'P-384' })],
  ] as const)('%s client assertion verifies with the public key and carries the SMART claims', (alg, keys) => {
    const jwt = signClientAssertion({ clientId: 'c1', audience: 'https://auth.example/token', alg, kid: 'k1', privateKey: keys.privateKey, nowSeconds: 1_000_000 });
    const [h, p, s] = jwt.split('.');
    expect(JSON.parse(Buffer.from(h!, 'base64url').toString())).toEqual({ alg, typ: 'JWT', kid: 'k1' });
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    expect(claims).toMatchObject({ iss: 'c1', sub: 'c1', aud: 'https://auth.example/token', exp: 1_000_300 });
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    const key = alg === 'ES384' ? { key: keys.publicKey, dsaEncoding: 'ieee-p1363' as const } : keys.publicKey;
    expect(verify('sha384', Buffer.from(`${h}.${p}`), key, Buffer.from(s!, 'base64url'))).toBe(true);
    expect(verify('sha384', Buffer.from(`${h}.${p}x`), key, Buffer.from(s!, 'base64url'))).toBe(false);
  });

  test('a key of the wrong kind for the alg is refused', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(() => authProviderFor({ type: 'smart-backend', clientId: 'c', alg: 'RS384', scope: 's', privateKeyEnv: 'K' }, 'http://x', { env: { K: ec } })).toThrow(/RS384 needs an RSA key/);
  });

  test('Retry-After: seconds or an HTTP date', () => {
    expect(retryAfterMs('3')).toBe(3000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
  });
});
