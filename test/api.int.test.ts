/** The HTTP API: health open, everything else authenticated with scoped keys, zod-validated, audited. */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createApi } from '../api/server';
import { ensureMember } from '../hub/config';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { startTestHub, type TestHub } from './support/hub';

let hub: TestHub;
let server: Server;
let base: string;
const ADMIN = 'admin-key-0123456789abcdef';
const INTEGRATION = 'integration-key-0123456789';
const FEED = 'feed-only-key-0123456789ab';

beforeAll(async () => {
  hub = await startTestHub('api', {
    api: {
      port: 0,
      keys: [
        { name: 'ops', key: ADMIN, scopes: ['admin'] },
        { name: 'county-it', key: INTEGRATION, scopes: ['integration'] },
        { name: 'cost-system', key: FEED, scopes: ['feed.read'] },
      ],
    },
  });
  server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await hub.close();
});

const get = (path: string, key?: string) => fetch(`${base}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

test('health and readiness need no key', async () => {
  expect((await get('/health')).status).toBe(200);
  const ready = await get('/ready');
  expect(ready.status).toBe(200);
  expect(await ready.json()).toEqual({ status: 'ready' });
});

test('every other route refuses a missing or unknown key, and a key without the scope', async () => {
  for (const path of ['/metrics', '/api/status', '/api/raw-messages', '/api/quarantine']) {
    const none = await get(path);
    expect(none.status).toBe(401);
    expect(((await none.json()) as any).code).toBe('unauthenticated');
    expect((await get(path, 'not-a-real-key-at-all')).status).toBe(401);
    expect((await get(path, FEED)).status).toBe(403);
  }
});

test('metrics expose the pipeline counters to a key with the metrics scope', async () => {
  const res = await get('/metrics', ADMIN);
  expect(res.status).toBe(200);
  const text = await res.text();
  for (const name of ['yilian_messages_received_total', 'yilian_acks_sent_total', 'yilian_stage_duration_seconds', 'yilian_queue_depth']) expect(text).toContain(name);
});

test('reading a raw message is audited; input is validated', async () => {
  const member = ensureMember(hub.config, 'm1', () => undefined);
  const stored = await hub.runtime.intake.receive({
    member,
    channel: { id: 'his', policy: { defaultCharset: 'UTF-8' }, ackMode: 'original' },
    bytes: encodeAs(simAdt({ controlId: 'API-1', patient: simPatient(1, 'A'), charset: 'UNICODE UTF-8' }), 'UTF-8'),
  });
  const res = await get(`/api/raw-messages/${stored.rawId}`, INTEGRATION);
  expect(res.status).toBe(200);
  const body = (await res.json()) as any;
  expect(Buffer.from(body.contentBase64, 'base64').toString('utf8')).toContain('API-1');
  const audit = await hub.runtime.db.query<{ actor: string; entity_id: string; patient_key: string }>(`SELECT actor, entity_id, patient_key FROM audit_event WHERE entity_type = 'raw_message'`);
  expect(audit.rows).toContainEqual({ actor: 'county-it', entity_id: String(stored.rawId), patient_key: 'm1|A100001' });

  const bad = await get('/api/raw-messages/not-a-number', INTEGRATION);
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as any).code).toBe('invalid');
  expect((await get('/api/raw-messages/999999', INTEGRATION)).status).toBe(404);
  const badReplay = await fetch(`${base}/api/replay`, { method: 'POST', headers: { authorization: `Bearer ${INTEGRATION}`, 'content-type': 'application/json' }, body: JSON.stringify({ rawIds: ['x'] }) });
  expect(badReplay.status).toBe(400);
  expect(((await badReplay.json()) as any).message).toMatch(/rawIds/);
  const emptyReplay = await fetch(`${base}/api/replay`, { method: 'POST', headers: { authorization: `Bearer ${INTEGRATION}`, 'content-type': 'application/json' }, body: '{}' });
  expect(emptyReplay.status).toBe(400);
});

test('status reports queues, dead letters and per-channel counters', async () => {
  const res = await get('/api/status', INTEGRATION);
  expect(res.status).toBe(200);
  const status = (await res.json()) as any;
  expect(status.queues).toHaveProperty('waiting');
  expect(status.channels.find((c: { member: string }) => c.member === 'm1')).toMatchObject({ channel: 'his', received: 1 });
});
