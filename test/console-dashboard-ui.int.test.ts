/**
 * The alliance dashboard in a real browser (Debian's Chromium, playwright-core) on real KPIs: the
 * cost-feed story of test/cost-feed-fixture.ts (a lead hospital, a county hospital and a community
 * clinic; visits, labs, a shared CT, referrals, an expert's outreach clinics) arrives over MLLP, goes
 * through the pipeline worker, the cost feed is built as `yilian serve` builds it, and the page
 * draws GET /api/kpi (hub/feeds/kpi.ts). Proves the cards, the SVG charts and the tables show the
 * hand-computed figures of that story, that the member and month filters change them, and that a
 * viewer (scope metrics: aggregates only) may see it. Screenshots go to test-results/.
 */
import { createServer, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { MllpListener } from '../adapters/mllp/listener';
import type { MllpChannelConfig } from '../hub/config';
import { createApi } from '../api/server';
import { hashPassword } from '../api/console/password';
import { buildCostFeed } from '../hub/feeds/builder';
import { syncTerminology } from '../hub/terminology/versions';
import { syncRecognitionIndex } from '../hub/recognition/resultIndex';
import { encodeAs, MllpClient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { members, story } from './cost-feed-fixture';
import { openConsoleBrowser, RESULTS, type ConsoleBrowser } from './support/browser';
import { startTestHub, waitFor, type TestHub } from './support/hub';

const viewer = ['board.viewer', 'viewer-pass-0001'] as const;

let hub: TestHub;
const listeners: MllpListener[] = [];
const ports: Record<string, number> = {};
let worker: PipelineWorker;
let server: Server;
let base: string;
let browser: ConsoleBrowser;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}

/** One message over MLLP, then wait until the pipeline has processed it (the story's order matters). */
async function send(member: string, text: string): Promise<void> {
  const client = await MllpClient.connect(ports[member]!);
  const ack = (await client.send(encodeAs(text, 'UTF-8'))).toString('latin1');
  await client.close();
  expect(/MSA\|(\w\w)/.exec(ack)?.[1]).toBe('AA');
  const control = text.split('\r')[0]!.split('|')[9]!;
  await waitFor(async () => {
    const r = await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE member_id = $1 AND control_id = $2`, [member, control]);
    return r.rows[0]?.status === 'processed';
  }, 60_000, `${member} ${control} processed`);
}

/** The cost-feed test's story (test/cost-feed-fixture.ts) without the imaging report, sent over MLLP. */
async function sendStory(): Promise<void> {
  for (const { member, text } of story({ imagingReport: false })) await send(member, text);
}

beforeAll(async () => {
  for (const m of members) ports[m.id] = await freePort();
  hub = await startTestHub('console_kpi', {
    members: members.map((m) => ({ ...m, channels: [{ id: 'his', kind: 'mllp', host: '127.0.0.1', port: ports[m.id] }] })),
    api: { port: 0, keys: [] },
    recognition: {
      accreditation: [{ member: 'county', validFrom: '2026-01-01' }, { member: 'lead', validFrom: '2026-01-01' }],
      priceLists: [{ member: 'lead', version: '2026-01', effectiveFrom: '2026-01-01', prices: { '4548-4': 80 } }],
    },
    console: { users: [{ name: viewer[0], role: 'viewer', passwordHash: await hashPassword(viewer[1], { N: 1024 }) }] },
  });
  await syncTerminology(hub.runtime.db);
  for (const m of hub.config.members) {
    const listener = new MllpListener(m, m.channels[0] as MllpChannelConfig, hub.runtime.intake);
    await listener.start();
    listeners.push(listener);
  }
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues);
  await worker.start();
  server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await sendStory();
  // What `yilian serve`'s recognition-index sync and cost-feed builder do every few seconds.
  await syncRecognitionIndex(hub.runtime.db);
  expect((await buildCostFeed(hub.runtime.db, hub.config, { secret: Buffer.from('console-dashboard-test-secret-0123') })).pending).toBe(0);

  browser = await openConsoleBrowser(pageErrors);
  ({ context, page } = browser);
}, 180_000);

afterEach(() => {
  expect(pageErrors.splice(0)).toEqual([]);
});

afterAll(async () => {
  await browser?.close();
  if (server) await new Promise((r) => server.close(r));
  for (const l of listeners) await l.close();
  await worker?.close();
  await hub?.close();
});

const card = (key: string) => page.locator(`#kpi-cards .card[data-kpi="${key}"] .value`).textContent();
const bar = (chart: string, series: string, month: string) => page.locator(`#${chart} svg [data-series="${series}"][data-category="${month}"]`).getAttribute('data-value');

/** The page's own API answer for the same filters, from the viewer's session. */
async function kpiJson(query: string): Promise<any> {
  return page.evaluate(async (q) => (await fetch(`/api/kpi?${q}`, { credentials: 'same-origin' })).json(), query);
}

test('a viewer sees the alliance KPIs of March–April 2026: cards, charts and tables with the hand-computed figures', async () => {
  await page.goto(`${base}/console/login`);
  await page.fill('input[name=user]', viewer[0]);
  await page.fill('input[name=password]', viewer[1]);
  await Promise.all([page.waitForNavigation(), page.click('form#login button[type=submit]')]);
  expect(await page.locator('header nav a').allTextContents()).toEqual(['Channels', 'Messages', 'Dead letters', 'Match review', 'Dashboards']);

  await page.goto(`${base}/console/dashboard?from=2026-03&to=2026-04`);
  await page.locator('#kpi[data-loaded]').waitFor();
  expect(await page.inputValue('#filter input[name=from]')).toBe('2026-03');
  // Referrals: up 2 of 6 visits below the lead, down 3 of 4 above the community tier.
  expect(await card('referrals')).toBe('2 / 3 (33.3% / 75%)');
  expect(await bar('chart-referrals', 'up', '2026-03')).toBe('2');
  expect(await bar('chart-referrals', 'down', '2026-03')).toBe('1');
  expect(await bar('chart-referrals', 'down', '2026-04')).toBe('2');
  // The county's CT: 3 exams, 45 minutes, 2 for other members' patients.
  expect(await card('sharing')).toBe('66.7% · 3 Exams');
  // The owner by its configured name, not its id (the id stays in the tooltip).
  expect(await page.locator('#kpi-devices tbody tr').allTextContents()).toEqual(['64排CTCT县人民医院345266.7%']);
  expect(await page.locator('#kpi-devices tbody tr td[data-member-id="county"]').getAttribute('title')).toBe('county');
  expect(await page.locator('#chart-devices svg rect[data-series="sharing"]').getAttribute('data-value')).toBe('66.7');
  // Duplicates and recognition: what the route answers (the recognition helper's report), drawn per month.
  const kpi = await kpiJson('from=2026-03&to=2026-04');
  expect(kpi.totals.duplicates.repeats).toBeGreaterThan(0);
  expect(await card('repeats')).toBe(String(kpi.totals.duplicates.repeats));
  expect(await card('avoided')).toBe(`${kpi.totals.duplicates.avoidedCost} CNY`);
  expect(await bar('chart-duplicates', 'repeats', '2026-03')).toBe(String(kpi.months[0].duplicates.repeats));
  expect(await bar('chart-duplicates', 'avoidedCost', '2026-03')).toBe(String(kpi.months[0].duplicates.avoidedCost));
  expect(await card('recognition')).toBe(kpi.totals.recognition.rate === null ? '—' : `${Math.round(kpi.totals.recognition.rate * 1000) / 10}%`);
  // Usable at 1366×768: nothing wider than the window.
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(1366);
  await page.screenshot({ path: path.join(RESULTS, 'console-dashboard.png'), fullPage: true });
});

test('the "judged by" toggle redraws with today\'s rules at once, and names the rules it used', async () => {
  expect(await page.locator('#kpi-rules').getAttribute('data-rules')).toBe('at-time');
  const before = await page.locator('#kpi').getAttribute('data-loaded');
  await page.selectOption('#filter select[name=rules]', 'current');
  await page.waitForFunction((b) => document.getElementById('kpi')!.getAttribute('data-loaded') !== b, before);
  expect(await page.locator('#kpi-rules').getAttribute('data-rules')).toBe('current');
  const whatIf = await kpiJson('from=2026-03&to=2026-04&rules=current');
  expect(whatIf.rules).toBe('current');
  expect(await card('repeats')).toBe(String(whatIf.totals.duplicates.repeats));
  await page.selectOption('#filter select[name=rules]', 'at-time');
  await page.waitForFunction(() => document.getElementById('kpi-rules')!.getAttribute('data-rules') === 'at-time');
});

test('filtering by member: the clinic’s referrals (from or to it) and no device exams', async () => {
  await page.selectOption('#filter select[name=member]', 'clinic');
  const before = await page.locator('#kpi').getAttribute('data-loaded');
  await page.click('#filter button[type=submit]');
  await page.waitForFunction((b) => document.getElementById('kpi')!.getAttribute('data-loaded') !== b, before);
  expect(await card('referrals')).toMatch(/^1 \/ 3 /);
  expect(await card('sharing')).toBe('— · 0 Exams');
  expect(await page.locator('#kpi-devices tbody tr').count()).toBe(0);
  // Usable at 1366×768: nothing wider than the window.
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(1366);
  await page.screenshot({ path: path.join(RESULTS, 'console-dashboard-clinic.png'), fullPage: true });

  // A month with no data: empty months, zero bars, no error.
  await page.goto(`${base}/console/dashboard?from=2026-06&to=2026-06`);
  await page.locator('#kpi[data-loaded]').waitFor();
  expect(await card('referrals')).toBe('0 / 0 (— / —)');
  // Bad input is the route's 400, shown as such rather than as figures.
  await page.goto(`${base}/console/dashboard?from=2026-05&to=2026-03`);
  await page.locator('#kpi-unavailable:not([hidden])').waitFor();
  expect(await page.locator('#kpi-unavailable').textContent()).toMatch(/400 .*from must not be after to/);
  // A month that is no month is refused visibly (the month input would drop it and show every month).
  const bad = await page.goto(`${base}/console/dashboard?from=2026-13`);
  expect(bad!.status()).toBe(400);
  expect(await page.locator('#bad-request').textContent()).toBe('400: from "2026-13" is not a month (YYYY-MM, month 01–12)');
  expect(await page.locator('#kpi').isHidden()).toBe(true);
  expect(await page.locator('#kpi').getAttribute('data-loaded')).toBeNull();
});
