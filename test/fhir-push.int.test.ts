/**
 * The rest-hook endpoint for FHIR Subscriptions: authenticated per member and channel, validated,
 * answered only once stored; R4 single-resource, R4B (history) and R5 (subscription-notification)
 * notification bundles; the resources go through the pipeline like pulled ones.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { hashApiKey } from '../hub/config';
import { createApi } from '../api/server';
import { hubIdOf } from '../pipeline/stages/fhirConvert';
import { PipelineWorker } from '../pipeline/worker';
import { SYNTHEA_DIR } from './support/fhirServer';
import { startTestHub, waitFor, type TestHub } from './support/hub';

const TOKEN_A = 'member-a-push-token-0123456789';
const TOKEN_B = 'member-b-push-token-9876543210';
const SOURCE = 'https://emr.member-a.example/fhir';

describe('FHIR subscription push endpoint', () => {
  let hub: TestHub;
  let server: http.Server;
  let base: string;
  let worker: PipelineWorker;
  const patients = readFileSync(path.join(SYNTHEA_DIR, 'Patient.000.ndjson'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; meta?: object });

  beforeAll(async () => {
    hub = await startTestHub('fhirpush', {
      members: [
        { id: 'a', name: 'Member A', tier: 'tertiary', channels: [{ id: 'push', kind: 'fhir-subscription', baseUrl: SOURCE, tokenSha256: hashApiKey(TOKEN_A) }] },
        { id: 'b', name: 'Member B', tier: 'primary', channels: [{ id: 'push', kind: 'fhir-subscription', baseUrl: 'https://b.example/fhir', tokenSha256: hashApiKey(TOKEN_B) }] },
      ],
      api: { keys: [{ name: 'admin', key: 'admin-key-0123456789abcdef', scopes: ['admin'] }] },
    });
    server = createApi(hub.runtime).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { reconcile: false });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.close();
    await new Promise((r) => server?.close(r));
    await hub?.close();
  });

  const post = (url: string, body: unknown, token?: string, type = 'application/fhir+json') =>
    fetch(`${base}${url}`, { method: 'POST', headers: { 'content-type': type, ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: typeof body === 'string' ? body : JSON.stringify(body) });

  test('refuses callers without the channel token, with another member\'s token, or with an API key', async () => {
    expect((await post('/fhir/subscription/a/push', patients[0])).status).toBe(401);
    expect((await post('/fhir/subscription/a/push', patients[0], TOKEN_B)).status).toBe(401);
    expect((await post('/fhir/subscription/a/push', patients[0], 'admin-key-0123456789abcdef')).status).toBe(401);
    expect((await post('/fhir/subscription/a/nope', patients[0], TOKEN_A)).status).toBe(401);
    const stored = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message`);
    expect(stored.rows[0]!.n).toBe(0);
  });

  test('refuses a body that is not a notification, with a 400 and an OperationOutcome', async () => {
    const bad = await post('/fhir/subscription/a/push', '{"hello": 1}', TOKEN_A);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { outcome: { resourceType: string } }).outcome.resourceType).toBe('OperationOutcome');
    expect((await post('/fhir/subscription/a/push', '{not json', TOKEN_A)).status).toBe(400);
  });

  test('R4 single resource, R4B history and R5 subscription-notification bundles are stored and merged', async () => {
    const single = await post('/fhir/subscription/a/push', patients[0], TOKEN_A, 'application/json');
    expect(await single.json()).toMatchObject({ kind: 'resource', stored: 1 });
    const r4b = {
      resourceType: 'Bundle',
      type: 'history',
      entry: [
        { fullUrl: 'urn:uuid:1', resource: { resourceType: 'Parameters', parameter: [{ name: 'type', valueCode: 'event-notification' }] } },
        { fullUrl: `${SOURCE}/Patient/${patients[1]!.id}`, resource: patients[1], request: { method: 'PUT', url: `Patient/${patients[1]!.id}` } },
        { fullUrl: `${SOURCE}/Patient/${patients[2]!.id}`, resource: { ...patients[2], gender: 'robot' }, request: { method: 'PUT', url: `Patient/${patients[2]!.id}` } },
      ],
    };
    expect(await (await post('/fhir/subscription/a/push', r4b, TOKEN_A)).json()).toMatchObject({ kind: 'bundle', received: 2, stored: 2, skipped: 1 });
    const r5 = {
      resourceType: 'Bundle',
      type: 'subscription-notification',
      entry: [{ resource: { resourceType: 'SubscriptionStatus', status: 'active', type: 'event-notification' } }, { resource: patients[3] }],
    };
    expect(await (await post('/fhir/subscription/a/push', r5, TOKEN_A)).json()).toMatchObject({ stored: 1, skipped: 1 });
    // The same notification again (a server retrying): a duplicate, not a second record.
    expect(await (await post('/fhir/subscription/a/push', r5, TOKEN_A)).json()).toMatchObject({ stored: 0, duplicates: 1 });
    // A ping (empty body) is answered and stores nothing.
    expect(await (await post('/fhir/subscription/a/push', '', TOKEN_A)).json()).toMatchObject({ kind: 'ping', received: 0 });

    await waitFor(async () => (await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE status = 'queued'`)).rows[0]!.n === 0);
    const statuses = await hub.runtime.db.query<{ control_id: string; status: string }>(`SELECT control_id, status FROM raw_message ORDER BY id`);
    expect(statuses.rows.map((r) => r.status)).toEqual(['processed', 'processed', 'quarantined', 'processed']);
    const merged = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Patient' AND id = ANY($1)`, [
      [0, 1, 3].map((i) => hubIdOf('a', SOURCE, 'Patient', patients[i]!.id)),
    ]);
    expect(merged.rows[0]!.n).toBe(3);
  });
});
