/**
 * The HTTP API against a hostile or careless client, on the real PostgreSQL and Redis:
 * - every route (enumerated from the express router, so a new route cannot be left out) answers the
 *   usual bad inputs with a 4xx OperationOutcome and never with database text;
 * - our own faults are a 5xx with an id the server log carries too, and no database text;
 * - console logins are counted atomically: parallel wrong passwords lock the name after five, and a
 *   right password sent with them is refused;
 * - every answer carrying patient identifiers or message text is audited, reading the audit trail too;
 * - /ready answers within a second, naming Redis, when Redis hangs or is gone.
 */
import { gzipSync } from 'node:zlib';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import type express from 'express';
import { createApi } from '../api/server';
import type { ApiContext } from '../api/context';
import { hashPassword } from '../api/console/password';
import { LOCK_AFTER_FAILURES } from '../api/console/session';
import { ensureMember } from '../hub/config';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { openHubDb } from '../hub/db';
import { startTestHub, waitFor, type TestHub } from './support/hub';
import { PgRelay } from './support/pgRelay';
import { freePort, killHard, startRedisServer, type Proc } from './support/processes';

const ADMIN = 'hardening-admin-key-0123456789';
const METRICS_ONLY = 'hardening-metrics-key-0123456789';
const USER = 'li.ops';
const PASSWORD = 'right-password-0001';
const OTHER_USER = 'zhao.ops';

let hub: TestHub;
let app: express.Express;
let server: Server;
let base: string;
const logged: Array<Record<string, unknown>> = [];

async function listen(api: express.Express): Promise<{ server: Server; base: string }> {
  const s = api.listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  return { server: s, base: `http://127.0.0.1:${(s.address() as AddressInfo).port}` };
}

beforeAll(async () => {
  // The default scrypt cost (about 50 ms a check): parallel logins overlap as they would in production.
  const hash = await hashPassword(PASSWORD);
  hub = await startTestHub('hardening', {
    api: { port: 0, keys: [{ name: 'ops', key: ADMIN, scopes: ['admin'] }, { name: 'scraper', key: METRICS_ONLY, scopes: ['metrics'] }] },
    console: {
      users: [
        { name: USER, role: 'admin', passwordHash: hash },
        { name: OTHER_USER, role: 'admin', passwordHash: hash },
      ],
    },
  });
  app = createApi(hub.runtime, { log: (entry) => logged.push(entry) });
  ({ server, base } = await listen(app));
}, 60_000);

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await hub.close();
});

/** What PostgreSQL's messages look like: none of it may reach a client. */
const DATABASE_TEXT = /syntax|relation|violates|SQLSTATE|invalid input syntax|invalid byte sequence|out of range for type|bigint|column|pg_|constraint|postgres/i;

interface Answer {
  status: number;
  type: string;
  text: string;
  body: any;
}

async function call(path: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(`${base}${path}`, { redirect: 'manual', ...init, headers: { authorization: `Bearer ${ADMIN}`, ...(init.headers as Record<string, string> | undefined) } });
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, type: res.headers.get('content-type') ?? '', text, body };
}

// ---------------------------------------------------------------------------------------------
// Every route, every bad input

interface RouteEntry {
  method: string;
  path: string;
}

/** Every route the app serves, from the router itself (router 2's listRoutes, recursing into mounted routers). */
function routesOf(router: { listRoutes(): Array<{ path: string | RegExp; methods?: string[]; router?: any }> }, prefix = ''): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const r of router.listRoutes()) {
    const path = typeof r.path === 'string' ? r.path : String(r.path);
    const full = `${prefix}${path === '/' && r.router ? '' : path}`;
    if (r.router) out.push(...routesOf(r.router, full));
    else for (const m of r.methods ?? []) if (m !== 'HEAD' && m !== '*') out.push({ method: m, path: full });
  }
  return out;
}

/** A concrete URL for a route pattern: each `:param` replaced (by `value`), escapes removed. */
function concrete(pattern: string, value = '1'): string {
  return pattern.replace(/:(\w+)/g, (_m, name: string) => (value !== '1' ? value : name === 'decision' ? 'approve' : name === 'member' ? 'm1' : name === 'channel' ? 'c1' : '1')).replace(/\\/g, '');
}

const hasParam = (pattern: string) => /:\w+/.test(pattern);
/** The console's HTML pages (for a browser; a well-formed request that names nothing gets a page, not JSON). */
const htmlPage = (route: RouteEntry) => route.method === 'GET' && route.path.startsWith('/console');
/** Routes whose body is a form (the console's login and logout), not JSON. */
const formRoute = (path: string) => path.startsWith('/console/');

function expectOutcome(what: string, answer: Answer, status: number | [number, number]): void {
  const [lo, hi] = Array.isArray(status) ? status : [status, status];
  const context = `${what} → ${answer.status} ${answer.text.slice(0, 300)}`;
  expect({ context, inRange: answer.status >= lo && answer.status <= hi }).toEqual({ context, inRange: true });
  expect({ context, json: /json/.test(answer.type), resourceType: answer.body?.resourceType }).toEqual({ context, json: true, resourceType: 'OperationOutcome' });
  expect({ context, databaseText: DATABASE_TEXT.test(answer.text) }).toEqual({ context, databaseText: false });
}

const TOO_BIG = '9223372036854775808'; // 2^63: past bigint, rounded by JavaScript

test('the route walk finds every route of the API, mounted routers included', () => {
  const routes = routesOf(app.router as never);
  const names = routes.map((r) => `${r.method} ${r.path}`);
  // A few from each module: an enumeration that silently found nothing would pass the walk below.
  for (const known of ['GET /api/raw-messages/:id', 'POST /api/replay', 'GET /fhir/Patient/:id', 'GET /fhir/AuditEvent', 'GET /fhir/Device', 'GET /api/messages', 'GET /api/dead-letters', 'POST /console/login', 'GET /api/mpi/review', 'POST /recognition/check', 'GET /feeds/cost', 'GET /api/terminology/worklist', 'POST /fhir/subscription/:member/:channel', 'GET /ready']) {
    expect(names).toContain(known);
  }
  expect(routes.length).toBeGreaterThan(60);
});

test('every route answers bad parameters, paths and bodies with a 4xx OperationOutcome and no database text', async () => {
  const routes = routesOf(app.router as never);
  const bomb = gzipSync(Buffer.from(`{"a":"${'0'.repeat(64 * 1024 * 1024)}"}`)); // 64 MiB inflated, a few tens of KiB sent
  const large = JSON.stringify({ a: 'x'.repeat(3 * 1024 * 1024) });
  let checked = 0;
  for (const route of routes) {
    const url = concrete(route.path);
    const where = `${route.method} ${route.path}`;
    // Queries: a NUL, malformed percent-encoding, and paging numbers past 2^63.
    for (const query of ['q=%00', 'name=a%00b', 'limit=%00', 'x=%E0%A4%A', '%ZZ=1', `_offset=${TOO_BIG}`, `_count=${TOO_BIG}`, `limit=${TOO_BIG}`, `before=${TOO_BIG}`, `after=${TOO_BIG}`]) {
      expectOutcome(`${where}?${query}`, await call(`${url}?${query}`, { method: route.method }), 400);
      checked++;
    }
    // Paths: a NUL, malformed percent-encoding and an id past 2^63 in each parameter.
    if (hasParam(route.path)) {
      expectOutcome(`${where} with %00`, await call(concrete(route.path, '%00'), { method: route.method }), 400);
      expectOutcome(`${where} with %E0%A4%A`, await call(concrete(route.path, '%E0%A4%A'), { method: route.method }), 400);
      // Past 2^63: a bad numeric id (400), or a text id that names nothing (404, 401 for a channel)
      // or is simply a code made of digits (200). Never our fault, never database text.
      const big = await call(concrete(route.path, TOO_BIG), { method: route.method });
      expect({ where, status: big.status < 500, databaseText: DATABASE_TEXT.test(big.text) }).toEqual({ where, status: true, databaseText: false });
      if (big.status >= 400 && !htmlPage(route)) expectOutcome(`${where} with ${TOO_BIG}`, big, [400, 499]);
      checked += 3;
    }
    if (route.method === 'GET') continue;
    const json = { 'content-type': 'application/json' };
    expectOutcome(`${where} malformed JSON`, await call(url, { method: route.method, headers: json, body: '{"a": ' }), 400);
    expectOutcome(`${where} over the limit`, await call(url, { method: route.method, headers: json, body: large }), 413);
    expectOutcome(`${where} gzip bomb`, await call(url, { method: route.method, headers: { ...json, 'content-encoding': 'gzip' }, body: bomb }), 413);
    expectOutcome(`${where} charset=klingon`, await call(url, { method: route.method, headers: { 'content-type': 'application/json; charset=klingon' }, body: '{}' }), 415);
    expectOutcome(`${where} unknown content encoding`, await call(url, { method: route.method, headers: { ...json, 'content-encoding': 'x-klingon' }, body: '{}' }), 415);
    checked += 5;
    if (!formRoute(route.path) && !route.path.startsWith('/fhir/subscription/')) {
      expectOutcome(`${where} text/plain`, await call(url, { method: route.method, headers: { 'content-type': 'text/plain' }, body: 'hello' }), 415);
      // NUL inside a JSON body: refused by the input layer, or (for a route that ignores its body)
      // anything but a 5xx.
      const nul = await call(url, { method: route.method, headers: json, body: JSON.stringify({ text: 'a\u0000b', comment: 'x\u0000', code: 'X\u0000', rawIds: [1] }) });
      expect({ where, status: nul.status < 500, databaseText: DATABASE_TEXT.test(nul.text) }).toEqual({ where, status: true, databaseText: false });
      if (nul.status >= 400) expectOutcome(`${where} NUL in body`, nul, [400, 499]);
      checked += 2;
    }
  }
  expect(checked).toBeGreaterThan(500);
  // The reports named in the issue, by name.
  expectOutcome('GET /fhir/Patient/%00', await call('/fhir/Patient/%00'), 400);
  const fhirPage = await call(`/fhir/Patient?_offset=${TOO_BIG}`);
  expectOutcome('FHIR _offset past 2^63', fhirPage, 400);
  expect(fhirPage.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', expression: ['query._offset'] }] });
  expect(fhirPage.body.code).toBeUndefined(); // under /fhir: the bare OperationOutcome
  const api = await call('/api/raw-messages?limit=abc');
  expect(api.body).toMatchObject({ resourceType: 'OperationOutcome', code: 'invalid', message: expect.stringMatching(/^query\.limit: /) });
}, 300_000);

test('no key (401) and a key without the scope (403) are OperationOutcomes too, on the API and the FHIR API', async () => {
  for (const path of ['/api/messages', '/fhir/Patient', '/recognition/rules', '/api/terminology/proposals']) {
    const none = await fetch(`${base}${path}`);
    expect([path, none.status, ((await none.json()) as { resourceType?: string }).resourceType]).toEqual([path, 401, 'OperationOutcome']);
    const scoped = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${METRICS_ONLY}` } });
    const body = (await scoped.json()) as { resourceType?: string; issue?: Array<{ code: string }> };
    expect([path, scoped.status, body.resourceType, body.issue?.[0]?.code]).toEqual([path, 403, 'OperationOutcome', 'forbidden']);
  }
});

test('our own fault is a 500 OperationOutcome with an id the log carries, and no database text', async () => {
  // A table gone from under the API (this test's own database): PostgreSQL's error names it.
  await hub.runtime.db.query('ALTER TABLE quarantine RENAME TO quarantine_moved');
  let answer: Answer;
  try {
    answer = await call('/api/quarantine');
  } finally {
    await hub.runtime.db.query('ALTER TABLE quarantine_moved RENAME TO quarantine');
  }
  expectOutcome('GET /api/quarantine without its table', answer, 500);
  const id = answer.body.errorId as string;
  expect(id).toMatch(/^[0-9a-f-]{36}$/);
  expect(answer.body.message).toContain(id);
  expect(answer.text).not.toContain('quarantine_moved');
  expect(answer.text).not.toMatch(/does not exist/);
  const line = logged.find((l) => l.errorId === id);
  expect(line).toMatchObject({ level: 'error', status: 500, path: '/api/quarantine', code: '42P01', error: expect.stringMatching(/relation "quarantine" does not exist/) });
});

// ---------------------------------------------------------------------------------------------
// Console lockout

async function login(user: string, password: string): Promise<'ok' | 'wrong' | 'locked'> {
  const res = await fetch(`${base}/console/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ user, password, next: '/console/channels' }).toString(),
  });
  expect(res.status).toBe(303);
  const location = res.headers.get('location') ?? '';
  if (/error=locked/.test(location)) return 'locked';
  if (/error=/.test(location)) return 'wrong';
  expect(res.headers.get('set-cookie')).toMatch(/yilian_console=/);
  return 'ok';
}

const failureKey = async (user: string) => `${hub.prefix}:console:login-failures:${(await import('node:crypto')).createHash('sha256').update(user).digest('hex')}`;

test('60 wrong passwords in parallel: five are checked, the rest refused, and the right one is then refused', async () => {
  const answers = await Promise.all(Array.from({ length: 60 }, (_, i) => login(USER, `wrong-${i}`)));
  expect(answers.filter((a) => a === 'wrong')).toHaveLength(LOCK_AFTER_FAILURES);
  expect(answers.filter((a) => a === 'locked')).toHaveLength(60 - LOCK_AFTER_FAILURES);
  expect(await login(USER, PASSWORD)).toBe('locked');
  await hub.runtime.queues.redis.del(await failureKey(USER));
  expect(await login(USER, PASSWORD)).toBe('ok');
}, 60_000);

test('40 wrong and the right password in parallel: the right one is refused, the name stays locked', async () => {
  // The right password goes last: by the time it is counted the wrong ones ahead of it have taken
  // the five attempts (before the fix, all 41 read a count of 0 and the right one logged in).
  const attempts = [...Array.from({ length: 40 }, (_, i) => login(OTHER_USER, `wrong-${i}`)), login(OTHER_USER, PASSWORD)];
  const answers = await Promise.all(attempts);
  expect(answers[40]).toBe('locked');
  expect(answers.filter((a) => a === 'wrong')).toHaveLength(LOCK_AFTER_FAILURES);
  expect(await login(OTHER_USER, PASSWORD)).toBe('locked');
  // The lock lasts a minute from the fifth checked failure; refused attempts do not extend it.
  const ttl = await hub.runtime.queues.redis.pttl(await failureKey(OTHER_USER));
  expect(ttl).toBeGreaterThan(30_000);
  expect(ttl).toBeLessThanOrEqual(60_000);
}, 60_000);

test('four wrong passwords and then the right one: logged in, and the count starts over', async () => {
  const user = USER;
  await hub.runtime.queues.redis.del(await failureKey(user));
  for (let i = 0; i < LOCK_AFTER_FAILURES - 1; i++) expect(await login(user, `nope-${i}`)).toBe('wrong');
  expect(await login(user, PASSWORD)).toBe('ok');
  expect(await hub.runtime.queues.redis.exists(await failureKey(user))).toBe(0);
}, 60_000);

// ---------------------------------------------------------------------------------------------
// Audit of every read of patient data

test('message lists, quarantine, dead letters and the audit trail are audited per patient they show', async () => {
  const member = ensureMember(hub.config, 'm1', () => undefined);
  const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  // Two stored messages of two patients.
  const a = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(simAdt({ controlId: 'AUD-1', patient: simPatient(11, 'A'), charset: 'UNICODE UTF-8' }), 'UTF-8') });
  const b = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(simAdt({ controlId: 'AUD-2', patient: simPatient(12, 'A'), charset: 'UNICODE UTF-8' }), 'UTF-8') });
  expect([a.outcome, b.outcome]).toEqual(['stored', 'stored']);
  const keys = await hub.runtime.db.query<{ patient_key: string }>(`SELECT patient_key FROM raw_message WHERE id = ANY($1::bigint[]) ORDER BY id`, [[a.rawId, b.rawId]]);
  const [keyA, keyB] = keys.rows.map((r) => r.patient_key);
  expect(keyA).toMatch(/^m1\|/);
  // Message A quarantined, as the convert stage would leave it: the reason quotes the message's text.
  await hub.runtime.db.query(`INSERT INTO quarantine (raw_id, stage, code, reason, outcome, state) VALUES ($1, 'convert', 'invalid', 'PID-5 "ZHANG^SAN" unreadable', '{}', 'open')`, [a.rawId]);
  await hub.runtime.db.query(`UPDATE raw_message SET status = 'quarantined' WHERE id = $1`, [a.rawId]);

  const auditOf = async (entityType: string) =>
    (await hub.runtime.db.query<{ actor: string; patient_key: string | null }>(`SELECT actor, patient_key FROM audit_event WHERE entity_type = $1 ORDER BY id`, [entityType])).rows;

  // /api/messages: no patient filter, and still two patients' MRNs in the answer.
  const messages = await call('/api/messages?channel=his');
  expect(messages.status).toBe(200);
  expect(messages.body.items.map((m: { patient_key: string }) => m.patient_key).sort()).toEqual([keyA, keyB].sort());
  expect((await auditOf('raw_message')).map((r) => r.patient_key).sort()).toEqual([keyA, keyB].sort());

  // /api/quarantine and /api/dead-letters quote message text: audited with the patient, the shape unchanged.
  const quarantine = await call('/api/quarantine');
  expect(quarantine.status).toBe(200);
  expect(quarantine.body.items).toHaveLength(1);
  expect(Object.keys(quarantine.body.items[0]).sort()).toEqual(['channel_id', 'code', 'control_id', 'created_at', 'id', 'location', 'member_id', 'raw_id', 'reason', 'stage'].sort());
  const dead = await call('/api/dead-letters');
  expect(dead.status).toBe(200);
  expect(dead.body.items).toHaveLength(1);
  expect(dead.body.items[0].patient_key).toBeUndefined();
  expect(await auditOf('quarantine')).toEqual([
    { actor: 'ops', patient_key: keyA },
    { actor: 'ops', patient_key: keyA },
  ]);

  // Reading the audit trail names those patients: audited too, through FHIR and the console API.
  const before = Number((await hub.runtime.db.query<{ n: string }>(`SELECT count(*) AS n FROM audit_event`)).rows[0]!.n);
  const fhirAudit = await call('/fhir/AuditEvent?_count=50');
  expect(fhirAudit.status).toBe(200);
  expect(fhirAudit.body.entry.length).toBe(before);
  const fhirRead = await auditOf('AuditEvent');
  expect(fhirRead.map((r) => r.patient_key).sort()).toEqual([keyA, keyB].sort());
  const consoleAudit = await call('/api/audit');
  expect(consoleAudit.status).toBe(200);
  expect((await auditOf('audit_event')).map((r) => r.patient_key).sort()).toEqual([keyA, keyB].sort());
  // An empty page still leaves one event (who looked, for what).
  expect((await call('/fhir/AuditEvent?agent=nobody')).status).toBe(200);
  expect((await auditOf('AuditEvent')).filter((r) => r.patient_key === null)).toHaveLength(1);
});

// ---------------------------------------------------------------------------------------------
// Readiness

test('/ready answers 503 within a second naming Redis when Redis hangs, is killed, or was never there', async () => {
  const port = await freePort();
  let redisServer: Proc | undefined = await startRedisServer(port);
  const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: null, retryStrategy: () => 200 });
  redis.on('error', () => undefined); // reconnection errors are expected here
  const nowhere = new Redis({ host: '127.0.0.1', port: await freePort(), maxRetriesPerRequest: null, retryStrategy: () => 200 });
  nowhere.on('error', () => undefined);
  // The hub's own queues object, reaching Redis through another connection.
  const withRedis = (r: Redis): ApiContext => ({ ...hub.runtime, queues: Object.create(hub.runtime.queues, { redis: { value: r } }) });
  const apis = [await listen(createApi(withRedis(redis), { log: () => undefined })), await listen(createApi(withRedis(nowhere), { log: () => undefined }))];
  const ready = async (at: string) => {
    const started = Date.now();
    const res = await fetch(`${at}/ready`, { signal: AbortSignal.timeout(10_000) });
    return { status: res.status, body: (await res.json()) as any, ms: Date.now() - started };
  };
  const expectRedisDown = (r: { status: number; body: any; ms: number }) => {
    expect(r.status).toBe(503);
    expect(r.ms).toBeLessThan(1000);
    expect(r.body).toMatchObject({ resourceType: 'OperationOutcome', code: 'not-ready', down: ['Redis'], message: expect.stringMatching(/Redis/) });
  };
  try {
    await waitFor(async () => redis.status === 'ready', 10_000, 'the private Redis connection');
    expect((await ready(apis[0]!.base)).status).toBe(200);
    // Hanging: the process stopped, its socket open — the PING is sent and never answered.
    redisServer.child.kill('SIGSTOP');
    expectRedisDown(await ready(apis[0]!.base));
    // Gone: the connection drops and the client reconnects in vain.
    await killHard(redisServer);
    redisServer = undefined;
    await waitFor(async () => redis.status !== 'ready', 10_000, 'the client to notice Redis is gone');
    expectRedisDown(await ready(apis[0]!.base));
    // Never there at all.
    expectRedisDown(await ready(apis[1]!.base));
  } finally {
    if (redisServer) await killHard(redisServer);
    for (const api of apis) await new Promise((r) => api.server.close(r));
    redis.disconnect();
    nowhere.disconnect();
  }
  // The main API, on the machine's Redis and PostgreSQL, is ready.
  expect(await (await fetch(`${base}/ready`)).json()).toEqual({ status: 'ready' });
}, 60_000);

test('/ready answers 503 within a second naming PostgreSQL when it is gone, and 200 once it is back', async () => {
  const relay = new PgRelay();
  await relay.listen();
  const db = await openHubDb({ databaseUrl: relay.urlThrough(hub.databaseUrl), poolSize: 2 });
  const api = await listen(createApi({ ...hub.runtime, db }, { log: () => undefined }));
  const ready = async () => {
    const started = Date.now();
    const res = await fetch(`${api.base}/ready`, { signal: AbortSignal.timeout(10_000) });
    return { status: res.status, body: (await res.json()) as any, ms: Date.now() - started };
  };
  try {
    expect((await ready()).status).toBe(200);
    // Gone, as in a fast shutdown: open connections cut, new ones refused.
    await relay.close();
    const down = await ready();
    expect(down.status).toBe(503);
    expect(down.ms).toBeLessThan(1000);
    expect(down.body).toMatchObject({ resourceType: 'OperationOutcome', code: 'not-ready', down: ['PostgreSQL'] });
    // Accepting connections and resetting each (a server going down or restarting): still bounded.
    relay.mode = 'dropping';
    await relay.listen();
    expect((await ready()).ms).toBeLessThan(1000);
    // Accepting and never answering (a frozen server): the check gives up within its bound.
    relay.mode = 'frozen';
    const frozen = await ready();
    expect([frozen.status, frozen.ms < 1000]).toEqual([503, true]);
    relay.cut();
    relay.mode = 'up';
    await waitFor(async () => (await ready()).status === 200, 10_000, 'ready again once PostgreSQL is back');
  } finally {
    await new Promise((r) => api.server.close(r));
    await db.close().catch(() => undefined);
    await relay.close();
  }
}, 60_000);
