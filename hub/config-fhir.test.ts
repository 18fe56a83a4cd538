import { parseConfig } from './config';

const member = (channel: Record<string, unknown>) => ({ members: [{ id: 'm', name: 'M', tier: 'primary', channels: [channel] }] });

describe('FHIR channel configuration', () => {
  test('defaults and a trailing slash on the base URL', () => {
    const config = parseConfig(member({ id: 'r', kind: 'fhir-rest', baseUrl: 'https://s.example/fhir/', resourceTypes: ['Patient'] }));
    expect(config.members[0]!.channels[0]).toMatchObject({ baseUrl: 'https://s.example/fhir', pageSize: 100, maxAttempts: 6, auth: { type: 'none' } });
  });

  test.each([
    [{ id: 'r', kind: 'fhir-rest', baseUrl: 'https://s/fhir', resourceTypes: [] }, /resourceTypes/],
    [{ id: 'r', kind: 'fhir-rest', baseUrl: 'https://s/fhir', resourceTypes: ['patient'] }, /resource type/],
    [{ id: 'r', kind: 'fhir-rest', baseUrl: 'not a url', resourceTypes: ['Patient'] }, /baseUrl/],
    [{ id: 'r', kind: 'fhir-rest', baseUrl: 'https://s/fhir', resourceTypes: ['Patient'], auth: { type: 'smart-backend', clientId: 'c' } }, /exactly one of privateKeyPath or privateKeyEnv/],
    [{ id: 'r', kind: 'fhir-rest', baseUrl: 'https://s/fhir', resourceTypes: ['Patient'], auth: { type: 'smart-backend', clientId: 'c', privateKeyEnv: 'K', alg: 'HS256' } }, /alg/],
    [{ id: 's', kind: 'fhir-subscription', baseUrl: 'https://s/fhir', tokenSha256: 'plain-token' }, /tokenSha256/],
  ])('refused: %j', (channel, message) => {
    expect(() => parseConfig(member(channel))).toThrow(message);
  });
});
