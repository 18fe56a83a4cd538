import { Readable } from 'node:stream';
import { ndjsonLines } from './ndjson';
import { resourcesOfBundle } from './ndjson';
import { controlIdOf, nameResource } from './resource';
import { resourcesOfNotification } from './subscription';

const source = { memberId: 'm', channelId: 'c', server: 'https://s.example/fhir' };

async function lines(chunks: string[]): Promise<Array<[number, string]>> {
  const out: Array<[number, string]> = [];
  for await (const l of ndjsonLines(Readable.from(chunks.map((c) => Buffer.from(c))))) out.push([l.line, l.bytes.toString()]);
  return out;
}

describe('NDJSON lines', () => {
  test('lines split across chunks, CRLF, blank lines, no final newline', async () => {
    expect(await lines(['{"a"', ':1}\r\n\n{"b":2}\n{"c', '":3}'])).toEqual([
      [1, '{"a":1}'],
      [3, '{"b":2}'],
      [4, '{"c":3}'],
    ]);
  });

  test('multi-byte characters split across chunks are kept byte for byte', async () => {
    const text = Buffer.from('{"name":"张三"}\n');
    const chunks = [text.subarray(0, 12), text.subarray(12)];
    const out = [];
    for await (const l of ndjsonLines(Readable.from(chunks))) out.push(l.bytes);
    expect(Buffer.concat(out).toString()).toBe('{"name":"张三"}');
  });
});

describe('naming resources', () => {
  test('control id by version, lastUpdated, or nothing', () => {
    expect(controlIdOf('Patient', 'p1', { versionId: '3', lastUpdated: '2024-01-01T00:00:00Z' })).toBe('Patient/p1/_history/3');
    expect(controlIdOf('Patient', 'p1', { lastUpdated: '2024-01-01T00:00:00Z' })).toBe('Patient/p1/_history/2024-01-01T00:00:00Z');
    expect(controlIdOf('Patient', 'p1', undefined)).toBe('Patient/p1/_history/');
  });

  test('a resource is named for the raw store with its patient routing key and event time', () => {
    const named = nameResource(source, Buffer.from('{"resourceType":"Encounter","id":"e1","meta":{"versionId":"2","lastUpdated":"2024-05-01T08:00:00Z"},"subject":{"reference":"Patient/p1"}}'));
    expect(named.problem).toBeUndefined();
    expect(named.row).toMatchObject({ sender: source.server, controlId: 'Encounter/e1/_history/2', messageType: 'FHIR:Encounter', status: 'queued', patientKey: `m|fhir:${source.server}|Patient/p1` });
    expect(named.row.eventTime?.toISOString()).toBe('2024-05-01T08:00:00.000Z');
  });

  test.each([
    ['not json', /not JSON/],
    ['[1,2]', /must be a JSON object/],
    ['{"id":"x"}', /resourceType is missing/],
    ['{"resourceType":"Patient"}', /Patient has no valid id/],
    ['{"resourceType":"Patient","id":"has space"}', /Patient has no valid id/],
  ])('%s is stored for quarantine under its content hash', (text, reason) => {
    const named = nameResource(source, Buffer.from(text));
    expect(named.problem?.message).toMatch(reason);
    expect(named.row.status).toBe('quarantined');
    expect(named.row.controlId).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('Bundles and notifications', () => {
  test('Bundle entries: DELETE and search outcomes skipped; a message Bundle refused', () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Patient', id: 'p1' }, request: { method: 'PUT' } },
        { resource: { resourceType: 'Patient', id: 'p2' }, request: { method: 'DELETE' } },
        { request: { method: 'DELETE', url: 'Patient/p3' } },
        { resource: { resourceType: 'Observation' }, request: { method: 'POST' } },
      ],
    };
    const { named, skipped } = resourcesOfBundle(bundle, source, 'f.json');
    expect(skipped).toBe(2);
    expect(named.map((n) => n.row.controlId.startsWith('sha256:') ? n.problem?.location : n.row.controlId)).toEqual(['Patient/p1/_history/', 'Bundle.entry[3]']);
    expect(() => resourcesOfBundle({ resourceType: 'Bundle', type: 'message' }, source, 'f.json')).toThrow(/not one whose entries are taken in/);
  });

  test('notifications: ping, single resource, topic-based bundle without its status entry, garbage refused', () => {
    expect(resourcesOfNotification(undefined, source).kind).toBe('ping');
    expect(resourcesOfNotification({ resourceType: 'Patient', id: 'p' }, source).named).toHaveLength(1);
    const r5 = resourcesOfNotification({ resourceType: 'Bundle', type: 'subscription-notification', entry: [{ resource: { resourceType: 'SubscriptionStatus' } }, { resource: { resourceType: 'Patient', id: 'p' } }] }, source);
    expect([r5.named.length, r5.skipped]).toEqual([1, 1]);
    expect(() => resourcesOfNotification({ hello: 1 }, source)).toThrow(/body/);
  });
});
