/**
 * SMART Backend Services against the test server's token endpoint, which verifies our signed JWT
 * assertion (RS384 and ES384) with the registered public key: the token is fetched once and reused
 * across pages, renewed before it expires, and — when the server says 401 because it expired on its
 * side — fetched again and the request retried. A wrong key is refused, not retried.
 */
import { generateKeyPairSync } from 'node:crypto';
import { parseConfig, type FhirRestChannelConfig, type MemberConfig } from '../hub/config';
import { authProviderFor, SmartBackendAuth } from '../adapters/fhir/auth';
import { clientFor } from '../adapters/fhir/connect';
import { RestPuller } from '../adapters/fhir/restPull';
import { FhirIntake } from '../adapters/fhir/store';
import { TestFhirServer } from './support/fhirServer';
import { startTestHub, type TestHub } from './support/hub';

describe('FHIR SMART Backend Services auth', () => {
  let server: TestFhirServer;
  let hub: TestHub;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const env = {
    RSA_KEY: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    EC_KEY: ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    OTHER_KEY: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };

  beforeAll(async () => {
    server = new TestFhirServer();
    await server.loadSynthea(['Patient', 'Condition']);
    await server.start();
    hub = await startTestHub('fhirauth');
  });

  afterAll(async () => {
    await hub?.close();
    await server?.stop();
  });

  function setup(channelId: string, alg: 'RS384' | 'ES384', keyEnv: string): { member: MemberConfig; channel: FhirRestChannelConfig } {
    const config = parseConfig({
      members: [{ id: 'emr', name: 'EMR', tier: 'tertiary', channels: [{ id: channelId, kind: 'fhir-rest', baseUrl: server.baseUrl, resourceTypes: ['Condition'], pageSize: 100, backoffMs: 50, maxAttempts: 3, auth: { type: 'smart-backend', clientId: 'yilian-hub', alg, privateKeyEnv: keyEnv, scope: 'system/*.read' } }] }],
    });
    return { member: config.members[0]!, channel: config.members[0]!.channels[0] as FhirRestChannelConfig };
  }

  test('RS384: one token for every page, renewed before expiry, refreshed after a 401', async () => {
    server.smart = { clientId: 'yilian-hub', publicKey: rsa.publicKey, alg: 'RS384', tokenTtlSeconds: 300 };
    server.tokensIssued = 0;
    const { member, channel } = setup('smart-rs', 'RS384', 'RSA_KEY');
    // The client's clock, moved forward below: how long the first pull takes on a busy machine
    // must not decide whether its token is still fresh.
    let aheadMs = 0;
    const auth = authProviderFor(channel.auth, channel.baseUrl, { env, now: () => Date.now() + aheadMs }) as SmartBackendAuth;
    const client = clientFor(channel, { auth });
    const puller = () => new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, channel, client);
    const first = await puller().pullType('Condition');
    expect(first.stored).toBe(555);
    expect(first.pages).toBe(6);
    expect(server.tokensIssued).toBe(1); // discovered the token endpoint, signed one assertion, reused the token
    expect(server.requests.filter((r) => r.startsWith('GET /fhir/.well-known/smart-configuration'))).toHaveLength(1);

    // The token has 300 s; we renew 10 s before expiry: 291 s later the next request gets a new one first.
    aheadMs = 291_000;
    await puller().pullType('Condition');
    expect(server.tokensIssued).toBe(2);
    expect(client.retries.unauthorized).toBe(0);

    // The server expires it early (revoked, clocks apart): 401, a new token, the request again.
    server.expireTokens();
    const again = await puller().pullType('Condition');
    expect(again.stored).toBe(0);
    expect(client.retries.unauthorized).toBe(1);
    expect(server.tokensIssued).toBe(3);
    expect(auth.tokensIssued).toBe(3);
  });

  test('ES384 assertion is accepted', async () => {
    server.smart = { clientId: 'yilian-hub', publicKey: ec.publicKey, alg: 'ES384', tokenTtlSeconds: 300 };
    const { member, channel } = setup('smart-es', 'ES384', 'EC_KEY');
    const result = await new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, channel, clientFor(channel, { env })).pullType('Condition');
    expect(result.pages).toBe(6);
  });

  test('an assertion signed with another key is refused and not retried', async () => {
    server.smart = { clientId: 'yilian-hub', publicKey: rsa.publicKey, alg: 'RS384', tokenTtlSeconds: 300 };
    const before = server.requests.filter((r) => r.startsWith('POST /auth/token')).length;
    const { member, channel } = setup('smart-bad', 'RS384', 'OTHER_KEY');
    const pull = new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, channel, clientFor(channel, { env })).pullType('Condition');
    await expect(pull).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/token endpoint .* answered 400: .*bad signature/) });
    expect(server.requests.filter((r) => r.startsWith('POST /auth/token')).length - before).toBe(1);
  });

  test('no token, no data: the server answers 401 without one', async () => {
    server.smart = { clientId: 'yilian-hub', publicKey: rsa.publicKey, alg: 'RS384', tokenTtlSeconds: 300 };
    const config = parseConfig({ members: [{ id: 'emr', name: 'EMR', tier: 'tertiary', channels: [{ id: 'anon', kind: 'fhir-rest', baseUrl: server.baseUrl, resourceTypes: ['Patient'], maxAttempts: 2, backoffMs: 10 }] }] });
    const channel = config.members[0]!.channels[0] as FhirRestChannelConfig;
    await expect(new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), config.members[0]!, channel, clientFor(channel)).pullType('Patient')).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/HTTP 401/) });
  });
});
