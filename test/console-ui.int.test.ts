/**
 * The operations console in a real browser (Debian's Chromium driven by playwright-core) against a
 * real hub: PostgreSQL, Redis, an MLLP listener, the pipeline worker and the HTTP API on a port.
 * Messages are sent over MLLP. Proves: login (and a refused password), a channel's counters moving
 * after messages arrive, a quarantined message's hex view showing its GB18030 bytes, a processed
 * message's produced resources, replay from the dead letters, the audit trail of those reads, the
 * language switch, and that a viewer has no replay button and is refused by the API (403).
 * Screenshots of each page go to test-results/ (CI artifacts).
 */
import { createHash } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { MllpListener } from '../adapters/mllp/listener';
import type { MllpChannelConfig } from '../hub/config';
import { createApi } from '../api/server';
import { hashPassword } from '../api/console/password';
import { SessionStore } from '../api/console/session';
import { bloodCount, encodeAs, MllpClient, simAdt, simOru, simPatient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { consoleLogin, openConsoleBrowser, RESULTS, type ConsoleBrowser } from './support/browser';
import { startTestHub, waitFor, type TestHub } from './support/hub';

const API_KEY = 'console-test-key-0123456789';
const users = { admin: ['ops-admin', 'admin-pass-0001'], viewer: ['guest', 'viewer-pass-0001'] } as const;

let hub: TestHub;
let listener: MllpListener;
let labListener: MllpListener;
let labPort: number;
let worker: PipelineWorker;
let server: Server;
let base: string;
let mllpPort: number;
let browser: ConsoleBrowser;
let context: BrowserContext;
let page: Page;

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}

beforeAll(async () => {
  mllpPort = await freePort();
  labPort = await freePort();
  // Low scrypt cost keeps the test fast; production hashes use the default (N = 2^15).
  const cheap = { N: 1024 };
  hub = await startTestHub('console', {
    members: [
      {
        id: 'm1',
        name: 'County Hospital',
        tier: 'secondary',
        channels: [
          { id: 'his', kind: 'mllp', host: '127.0.0.1', port: mllpPort },
          { id: 'lab', kind: 'mllp', host: '127.0.0.1', port: labPort },
        ],
      },
    ],
    api: { port: 0, keys: [{ name: 'ops-cli', key: API_KEY, scopes: ['integration'] }] },
    console: {
      users: [
        { name: users.admin[0], role: 'admin', passwordHash: await hashPassword(users.admin[1], cheap) },
        { name: users.viewer[0], role: 'viewer', passwordHash: await hashPassword(users.viewer[1], cheap) },
      ],
      alerts: { channels: { 'm1/his': { silenceMinutes: 30 }, 'm1/lab': { silenceMinutes: 30, minBaselinePerHour: 0.1 } } },
    },
  });
  const member = hub.config.members[0]!;
  listener = new MllpListener(member, member.channels[0] as MllpChannelConfig, hub.runtime.intake);
  await listener.start();
  labListener = new MllpListener(member, member.channels[1] as MllpChannelConfig, hub.runtime.intake);
  await labListener.start();
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues);
  await worker.start();
  server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  browser = await openConsoleBrowser(pageErrors);
  ({ context, page } = browser);
});

/** Script errors in the pages: every test ends by checking there were none. */
const pageErrors: string[] = [];
afterEach(() => {
  expect(pageErrors.splice(0)).toEqual([]);
});

afterAll(async () => {
  await browser?.close();
  if (server) await new Promise((r) => server.close(r));
  await listener?.close();
  await labListener?.close();
  await worker?.close();
  await hub?.close();
});

const login = (name: string, password: string) => consoleLogin(page, base, name, password);

const counter = (name: string) => page.locator(`tr[data-member="m1"][data-channel="his"] td[data-counter="${name}"]`);

async function statusOf(rawId: number): Promise<string> {
  return (await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1`, [rawId])).rows[0]!.status;
}

let quarantinedId: number;
let processedId: number;

test('login: a wrong password is refused, the right one opens the channels page with the session cookie', async () => {
  await page.goto(`${base}/console/channels`);
  expect(new URL(page.url()).pathname).toBe('/console/login');
  await login(users.admin[0], 'not-the-password');
  await expect(page.locator('#login-error').textContent()).resolves.toMatch(/Wrong user name or password/);
  await page.screenshot({ path: path.join(RESULTS, 'console-login.png') });

  await login(users.admin[0], users.admin[1]);
  expect(new URL(page.url()).pathname).toBe('/console/channels');
  const cookie = (await context.cookies(base)).find((c) => c.name === 'yilian_console')!;
  expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
  expect(await page.locator('#role').textContent()).toBe('admin');
  // The channel is listed before any traffic, up (its port accepts connections), with zero counters.
  await expect(counter('received-hour').textContent()).resolves.toBe('0');
  expect(await page.locator('tr[data-member="m1"][data-channel="his"] td[data-state]').getAttribute('data-state')).toBe('up');
});

test('a channel’s counters move after messages are sent over MLLP', async () => {
  const client = await MllpClient.connect(mllpPort);
  const acks: Buffer[] = [];
  for (let i = 0; i < 3; i++) acks.push(await client.send(encodeAs(simAdt({ controlId: `CON-${i}`, patient: simPatient(40 + i, 'C'), charset: 'UNICODE UTF-8' }), 'UTF-8')));
  // 黄䶮 in GB18030, no MSH-18, on a UTF-8 channel: NAKed (AE) and quarantined at intake.
  acks.push(await client.send(encodeAs(simAdt({ controlId: 'CON-GB', patient: simPatient(6, 'G') }), 'GB18030')));
  await client.close();
  expect(acks.map((a) => /MSA\|(\w\w)/.exec(a.toString('latin1'))?.[1])).toEqual(['AA', 'AA', 'AA', 'AE']);

  // The page refreshes itself every 10 s; the button does it now.
  await waitFor(async () => {
    await page.click('#refresh');
    await page.waitForTimeout(300);
    return (await counter('received-hour').textContent()) === '4';
  }, 60_000, 'received counter at 4');
  expect(await counter('acked-hour').textContent()).toBe('3');
  expect(await counter('nacked-hour').textContent()).toBe('1');
  expect(await counter('quarantined-hour').textContent()).toBe('1');
  expect(await counter('received-day').textContent()).toBe('4');
  expect(await page.locator('tr[data-channel="his"] td[data-last-error]').textContent()).toMatch(/^charset: /);
  await page.screenshot({ path: path.join(RESULTS, 'console-channels.png'), fullPage: true });

  const ids = (await hub.runtime.db.query<{ id: number; control_id: string }>(`SELECT id, control_id FROM raw_message ORDER BY id`)).rows;
  quarantinedId = Number(ids.find((r) => r.control_id === 'CON-GB')!.id);
  processedId = Number(ids.find((r) => r.control_id === 'CON-0')!.id);
});

test('silence and volume-drop alerts: a channel that received ten messages two hours ago and nothing since', async () => {
  const client = await MllpClient.connect(labPort);
  for (let i = 0; i < 10; i++) await client.send(encodeAs(simOru({ controlId: `LAB-${i}`, patient: simPatient(60 + i, 'L') }, bloodCount), 'UTF-8'));
  await client.close();
  // The raw store as it will look two hours from now (received_at is when the hub stored a message).
  await hub.runtime.db.query(`UPDATE raw_message SET received_at = received_at - interval '2 hours' WHERE channel_id = 'lab'`);
  await page.click('#refresh');
  const lab = page.locator('tr[data-member="m1"][data-channel="lab"]');
  await lab.locator('[data-alert="volume-drop"]').waitFor();
  expect(await lab.locator('[data-alert="silence"]').textContent()).toMatch(/^silent 1[12]\d min \(threshold 30\)$/);
  expect(await lab.locator('[data-alert="volume-drop"]').textContent()).toBe('volume drop: 0 in the last hour, 0.4/h before');
  expect(await lab.locator('td[data-counter="received-hour"]').textContent()).toBe('0');
  expect(await lab.locator('td[data-counter="received-day"]').textContent()).toBe('10');
  // The busy channel raises none.
  expect(await page.locator('tr[data-channel="his"] .alert').count()).toBe(0);
  await page.screenshot({ path: path.join(RESULTS, 'console-channels-alerts.png'), fullPage: true });
});

test('the message browser finds the quarantined message; its hex view shows the GB18030 bytes', async () => {
  await page.goto(`${base}/console/messages?status=quarantined`);
  const row = page.locator(`#messages tbody tr[data-raw-id="${quarantinedId}"]`);
  await row.waitFor();
  expect(await page.locator('#messages tbody tr').count()).toBe(1);
  await page.screenshot({ path: path.join(RESULTS, 'console-messages.png'), fullPage: true });

  await Promise.all([page.waitForNavigation(), row.locator('a').click()]);
  expect(new URL(page.url()).pathname).toBe(`/console/messages/${quarantinedId}`);
  await page.locator('#hex span.hi').first().waitFor();
  const hex = (await page.locator('#hex').textContent())!;
  // 黄䶮: 黄 is BB C6 in GB18030, 䶮 (U+4DAE) FE 9F as iconv-lite encodes it; not valid UTF-8.
  expect(hex.replace(/\s+/g, ' ')).toMatch(/bb c6 5e fe 9f/);
  expect(hex).toMatch(/^00000000  4d 53 48 7c/); // MSH|
  expect(await page.locator('#decode-error').isVisible()).toBe(true);
  // The console tells which charset would read the bytes: the fix is `charset: GB18030` on the channel.
  expect(await page.locator('#alternatives pre[data-charset="GB18030"]').textContent()).toContain('PID|1||G100006^^^HOSP^MR||黄^');
  expect(await page.locator('#quarantine tbody tr').first().textContent()).toMatch(/intake.*charset/);
  expect(await page.locator('#replay-one').isVisible()).toBe(true);
  await page.screenshot({ path: path.join(RESULTS, 'console-message-quarantined.png'), fullPage: true });
});

test('a processed message shows its parsed segments and the resources it produced', async () => {
  await waitFor(async () => (await statusOf(processedId)) === 'processed', 60_000, 'message processed');
  await page.goto(`${base}/console/messages/${processedId}`);
  await page.locator('#resources tbody tr').first().waitFor();
  const segments = await page.locator('#segments td.seg').allTextContents();
  expect(segments.slice(0, 3)).toEqual(['MSH', 'EVN', 'PID']);
  // The MSH row wraps inside the page instead of running off it; the resources' first column is the resource type.
  const msh = page.locator('#segments tbody tr').first();
  const rowBox = (await msh.boundingBox())!;
  const lastField = (await msh.locator('td').last().boundingBox())!;
  const viewport = page.viewportSize()!;
  expect(lastField.x + lastField.width).toBeLessThanOrEqual(rowBox.x + rowBox.width + 1);
  expect(rowBox.x + rowBox.width).toBeLessThanOrEqual(viewport.width);
  expect(await page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth)).toBe(true);
  expect(await page.locator('#resources thead th').first().textContent()).toMatch(/^(Resource type|资源类型)$/);
  const resourceTypes = await page.locator('#resources tbody tr td:first-child').allTextContents();
  expect(resourceTypes).toEqual(expect.arrayContaining(['Patient', 'Provenance']));
  const provenanceRow = page.locator('#resources tbody tr', { hasText: 'Provenance' }).first();
  expect(await provenanceRow.locator('td').nth(4).textContent()).toMatch(/Patient\//);
  await page.screenshot({ path: path.join(RESULTS, 'console-message-processed.png'), fullPage: true });
});

test('dead letters list the quarantined message with its reason; an admin replays it', async () => {
  await page.goto(`${base}/console/dead-letters`);
  const row = page.locator(`#dead-letters tbody tr[data-raw-id="${quarantinedId}"]`);
  await row.waitFor();
  expect(await row.textContent()).toMatch(/intake.*charset/);
  await page.screenshot({ path: path.join(RESULTS, 'console-dead-letters.png'), fullPage: true });
  await row.locator('input[type=checkbox]').check();
  await page.click('#replay-selected');
  await page.waitForFunction(() => /1 replayed/.test(document.getElementById('notice')!.textContent ?? ''));
  // The cause is still there: the replay closes the intake entry and the parse stage opens a new one.
  await waitFor(async () => {
    const q = await hub.runtime.db.query<{ stage: string; state: string }>(`SELECT stage, state FROM quarantine WHERE raw_id = $1 ORDER BY id`, [quarantinedId]);
    return q.rows.map((r) => `${r.stage}:${r.state}`).join(',') === 'intake:replayed,parse:open';
  }, 60_000, 'replayed and quarantined again');
});

test('the mapping worklist lists the lab messages’ local codes by frequency, linked to an example message', async () => {
  const labIds = (await hub.runtime.db.query<{ id: string }>(`SELECT id FROM raw_message WHERE channel_id = 'lab'`)).rows.map((r) => Number(r.id));
  await waitFor(async () => (await Promise.all(labIds.map(statusOf))).every((s) => s === 'processed'), 60_000, 'lab messages processed');
  await page.goto(`${base}/console/mappings`);
  await page.locator('#worklist tbody[data-loaded]').waitFor({ state: 'attached' });
  const hgb = page.locator('#worklist tbody tr', { hasText: 'HGB' });
  expect(await hgb.locator('td').nth(4).textContent()).toBe('10');
  const example = Number((await hgb.locator('a').getAttribute('href'))!.replace('/console/messages/', ''));
  expect(labIds).toContain(example);
  expect(await page.locator('p.notice').textContent()).toMatch(/most frequent first/);
  await page.screenshot({ path: path.join(RESULTS, 'console-mappings-admin.png'), fullPage: true });
});

test('the audit page shows who read which patient’s data; the language switch relabels the pages', async () => {
  await page.goto(`${base}/console/audit?actor=console:${users.admin[0]}`);
  await page.locator('#audit tbody tr').first().waitFor();
  const rows = await page.locator('#audit tbody tr').allTextContents();
  // The processed message names its patient; the charset-quarantined one could not be read for one.
  expect(rows.some((r) => r.includes(`raw_message ${processedId}`) && r.includes('m1|C100040'))).toBe(true);
  expect(rows.some((r) => r.includes(`raw_message ${quarantinedId}`))).toBe(true);
  expect(rows.every((r) => r.includes(`console:${users.admin[0]}`))).toBe(true);
  await page.screenshot({ path: path.join(RESULTS, 'console-audit.png'), fullPage: true });

  expect(await page.locator('header nav a').allTextContents()).toEqual(['Channels', 'Messages', 'Dead letters', 'Mappings', 'Match review', 'Dashboards', 'Audit']);
  await Promise.all([page.waitForNavigation(), page.click('#lang-switch')]);
  expect(new URL(page.url()).pathname).toBe('/console/audit');
  expect(await page.locator('header nav a').allTextContents()).toEqual(['通道', '消息', '死信', '映射治理', '患者匹配审核', '联盟看板', '审计']);
  await page.goto(`${base}/console/channels`);
  await counter('received-hour').waitFor();
  await page.screenshot({ path: path.join(RESULTS, 'console-channels-zh.png'), fullPage: true });
  await Promise.all([page.waitForNavigation(), page.click('#lang-switch')]);
});

test('a viewer sees messages but has no replay button, and the API refuses the replay with 403', async () => {
  await Promise.all([page.waitForNavigation(), page.click('form.logout button')]);
  expect(new URL(page.url()).pathname).toBe('/console/login');
  await login(users.viewer[0], users.viewer[1]);
  expect(await page.locator('header nav a').allTextContents()).toEqual(['Channels', 'Messages', 'Dead letters', 'Match review', 'Dashboards']);

  await page.goto(`${base}/console/messages`);
  await page.locator(`#messages tbody tr[data-raw-id="${quarantinedId}"]`).waitFor();
  expect(await page.locator('#replay-selected').count()).toBe(0);
  expect(await page.locator('#messages tbody input[type=checkbox]').count()).toBe(0);
  await page.goto(`${base}/console/messages/${quarantinedId}`);
  await page.locator('#hex span.hi').first().waitFor();
  expect(await page.locator('#replay-one').count()).toBe(0);
  await page.screenshot({ path: path.join(RESULTS, 'console-viewer-message.png'), fullPage: true });

  // The same call the admin's button makes, from the viewer's session.
  const refused = await page.evaluate(async (rawId) => {
    const res = await fetch('/api/replay', { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json', 'x-yilian-console': '1' }, body: JSON.stringify({ rawIds: [rawId] }) });
    return { status: res.status, body: await res.json() };
  }, quarantinedId);
  expect(refused).toMatchObject({ status: 403, body: { resourceType: 'OperationOutcome', code: 'forbidden', message: 'scope integration required' } });
  expect((await page.goto(`${base}/console/audit`))!.status()).toBe(403);
  expect(await statusOf(quarantinedId)).toBe('quarantined');
});

test('the console API takes the CLI’s API keys too, and a session cannot change things without the console header', async () => {
  const withKey = await fetch(`${base}/api/channels`, { headers: { authorization: `Bearer ${API_KEY}` } });
  expect(withKey.status).toBe(200);
  expect(((await withKey.json()) as { items: Array<{ channel: string }> }).items.map((c) => c.channel)).toEqual(['his', 'lab']);
  expect((await fetch(`${base}/api/channels`)).status).toBe(401);
  expect((await fetch(`${base}/api/messages?status=bogus`, { headers: { authorization: `Bearer ${API_KEY}` } })).status).toBe(400);
  expect((await fetch(`${base}/api/audit`, { headers: { authorization: `Bearer ${API_KEY}` } })).status).toBe(403);

  // Search filters, as the messages page sends them.
  const search = async (query: string) => {
    const res = await fetch(`${base}/api/messages?${query}`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { items: Array<{ id: string; control_id: string }> }).items.map((m) => m.control_id).sort();
  };
  expect(await search('patient=C100040')).toEqual(['CON-0']);
  expect(await search('patient=m1%7CC100041')).toEqual(['CON-1']);
  expect(await search('type=ADT&channel=his&status=processed')).toEqual(['CON-0', 'CON-1', 'CON-2']);
  expect(await search('type=ORU%5ER01&controlId=LAB-3')).toEqual(['LAB-3']);
  expect(await search(`member=m1&channel=lab&to=${encodeURIComponent(new Date(Date.now() - 3600_000).toISOString())}`)).toHaveLength(10);
  expect(await search(`channel=lab&from=${encodeURIComponent(new Date(Date.now() - 3600_000).toISOString())}`)).toEqual([]);
  // Every search lists patients (patient_key): each is a read of their data, audited once per
  // patient listed. A search by patient records just that patient.
  const audited = await hub.runtime.db.query<{ actor: string; patient_key: string | null; filter: Record<string, string> }>(
    `SELECT actor, patient_key, detail->'filter' AS filter FROM audit_event WHERE action = 'search' AND entity_type = 'raw_message' AND actor = 'ops-cli' ORDER BY id`,
  );
  expect(audited.rows.filter((r) => r.filter.patient)).toEqual([
    { actor: 'ops-cli', patient_key: 'm1|C100040', filter: { patient: 'C100040' } },
    { actor: 'ops-cli', patient_key: 'm1|C100041', filter: { patient: 'm1|C100041' } },
  ]);
  const byType = audited.rows.filter((r) => r.filter.type === 'ADT' && r.filter.channel === 'his');
  expect(byType.map((r) => r.patient_key).sort()).toEqual(['m1|C100040', 'm1|C100041', 'm1|C100042']);
  // A search that lists nobody still records who searched, for what.
  expect(audited.rows.filter((r) => r.filter.channel === 'lab' && r.filter.from)).toEqual([{ actor: 'ops-cli', patient_key: null, filter: expect.objectContaining({ channel: 'lab' }) }]);
  expect((await fetch(`${base}/console/no-such-page`)).status).toBe(404);

  // A cross-site form post carries no custom header: refused even with the session cookie.
  const session = (await context.cookies(base)).find((c) => c.name === 'yilian_console')!;
  const noHeader = await fetch(`${base}/api/replay`, { method: 'POST', headers: { cookie: `yilian_console=${session.value}`, 'content-type': 'application/json' }, body: JSON.stringify({ rawIds: [quarantinedId] }) });
  expect(noHeader.status).toBe(403);
  expect((await fetch(`${base}/api/session`, { headers: { cookie: 'yilian_console=forged-token' } })).status).toBe(401);
});

test('five wrong passwords lock the name in every API process: the count is in Redis, not in one process', async () => {
  // A second API process's session store (same Redis, same prefix) takes the five wrong passwords…
  const otherProcess = new SessionStore(hub.runtime.queues.redis, hub.config, hub.config.pipeline.queuePrefix);
  for (let i = 0; i < 4; i++) expect(await otherProcess.login(users.viewer[0], 'guess-' + i)).toEqual({ error: 'wrong' });
  // …four are not enough, and a success would clear them; the fifth locks.
  expect(await otherProcess.login(users.viewer[0], 'guess-4')).toEqual({ error: 'wrong' });
  expect(await otherProcess.login(users.viewer[0], users.viewer[1])).toEqual({ error: 'locked' });
  // This process (the browser's) refuses the right password too.
  await page.context().clearCookies();
  await login(users.viewer[0], users.viewer[1]);
  expect(new URL(page.url()).pathname).toBe('/console/login');
  expect(await page.locator('#login-error').textContent()).toBe('Too many failed attempts: try again in a minute');
  // Another name is not locked by them.
  await login(users.admin[0], users.admin[1]);
  expect(new URL(page.url()).pathname).toBe('/console/channels');
  const ttl = await hub.runtime.queues.redis.pttl(`${hub.config.pipeline.queuePrefix}:console:login-failures:${createHash('sha256').update(users.viewer[0]).digest('hex')}`);
  expect(ttl).toBeGreaterThan(50_000);
  expect(ttl).toBeLessThanOrEqual(60_000);
});
