/**
 * The console's governance pages in a real browser (Debian's Chromium driven by playwright-core)
 * against a real hub: PostgreSQL, Redis, MLLP listeners for three members, the pipeline worker and
 * the HTTP API. Lab results and patients arrive over MLLP. Proves: an integration user proposes a
 * mapping for an unmapped local code from the worklist's suggestions; the governance reviewer sees
 * the dry-run impact (field-level diff), approves, reprocesses, and the stored Observations carry
 * the LOINC coding (seen in the browser on the message page); coverage chart and version history
 * with a diff; the patient-match review shows the pair side by side with the score breakdown and a
 * not-link decision resolves it (merge history on the golden patient page); the alliance dashboard;
 * an integration user and a viewer cannot approve (no button; the API answers 403 to their
 * sessions). Screenshots (1366×768) of each page go to test-results/ (CI artifacts).
 */
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { MllpListener } from '../adapters/mllp/listener';
import type { MllpChannelConfig } from '../hub/config';
import { createApi } from '../api/server';
import { hashPassword } from '../api/console/password';
import { makeResidentId } from '../hub/mpi/residentId';
import { bloodCount, encodeAs, MllpClient, simOru, simPatient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { approve } from '../hub/terminology/workflow';
import { openConsoleBrowser, RESULTS, type ConsoleBrowser } from './support/browser';
import { startTestHub, waitFor, type TestHub } from './support/hub';

const LOINC = 'http://loinc.org';
const users = {
  it: ['wang.it', 'integration-pass-1', 'integration'],
  gov: ['li.gov', 'governance-pass-1', 'governance'],
  viewer: ['guest', 'viewer-pass-0001', 'viewer'],
} as const;

let hub: TestHub;
const listeners: MllpListener[] = [];
const ports: Record<string, number> = {};
let worker: PipelineWorker;
let server: Server;
let base: string;
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
  for (const k of ['m1/his', 'm1/lab', 'm2/his', 'm3/his']) ports[k] = await freePort();
  const cheap = { N: 1024 };
  // m1 and m2 map PID-19 to the resident ID; m3 does not (its patients arrive without one).
  const member = (id: string, channels: string[]) => ({
    id,
    name: `Member ${id}`,
    tier: id === 'm1' ? 'tertiary' : 'secondary',
    channels: channels.map((c) => ({ id: c, kind: 'mllp', host: '127.0.0.1', port: ports[`${id}/${c}`] })),
    ...(id === 'm3' ? {} : { conversion: { residentIdField: 19 } }),
  });
  hub = await startTestHub('console_gov', {
    members: [member('m1', ['his', 'lab']), member('m2', ['his']), member('m3', ['his'])],
    api: { port: 0, keys: [] },
    console: { users: await Promise.all(Object.values(users).map(async ([name, password, role]) => ({ name, role, passwordHash: await hashPassword(password, cheap) }))) },
  });
  for (const m of hub.config.members) {
    for (const c of m.channels) {
      const listener = new MllpListener(m, c as MllpChannelConfig, hub.runtime.intake);
      await listener.start();
      listeners.push(listener);
    }
  }
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
  for (const l of listeners) await l.close();
  await worker?.close();
  await hub?.close();
});

async function login(user: readonly [string, string, string]): Promise<void> {
  await page.context().clearCookies();
  await page.goto(`${base}/console/login`);
  await page.fill('input[name=user]', user[0]);
  await page.fill('input[name=password]', user[1]);
  await Promise.all([page.waitForNavigation(), page.click('form#login button[type=submit]')]);
  expect(await page.locator('#role').textContent()).toBe(user[2]);
}

async function send(key: string, messages: string[]): Promise<void> {
  const client = await MllpClient.connect(ports[key]!);
  for (const m of messages) {
    const ack = (await client.send(encodeAs(m, 'UTF-8'))).toString('latin1');
    expect(/MSA\|(\w\w)/.exec(ack)?.[1]).toBe('AA');
  }
  await client.close();
}

async function allProcessed(): Promise<void> {
  await waitFor(async () => {
    const r = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE status <> 'processed'`);
    return r.rows[0]!.n === 0;
  }, 60_000, 'every message processed');
}

/** Usable at 1366×768: nothing wider than the window (no sideways scrolling). */
async function expectFits(): Promise<void> {
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(1366);
}

/** The call a button makes, from the current page's session (cookie and console header). */
async function apiAs(method: string, url: string, body?: unknown): Promise<{ status: number; body: any }> {
  return page.evaluate(
    async ({ method, url, body }) => {
      const res = await fetch(url, { method, credentials: 'same-origin', headers: { 'content-type': 'application/json', 'x-yilian-console': '1' }, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    },
    { method, url, body },
  );
}

let labRawIds: number[] = [];
let proposalId: number;

/** Observations whose code carries the standard LOINC coding `code`. */
async function observationsWithLoinc(code: string): Promise<number> {
  const r = await hub.runtime.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Observation' AND content->'code'->'coding' @> $1::jsonb`,
    [JSON.stringify([{ system: LOINC, code }])],
  );
  return r.rows[0]!.n;
}

test('an integration user finds the unmapped local code on the worklist and proposes a mapping from its suggestions', async () => {
  await send(
    'm1/lab',
    Array.from({ length: 4 }, (_, i) => simOru({ controlId: `LAB-${i}`, patient: simPatient(70 + i, 'L') }, bloodCount)),
  );
  await allProcessed();
  labRawIds = (await hub.runtime.db.query<{ id: string }>(`SELECT id FROM raw_message WHERE channel_id = 'lab' ORDER BY id`)).rows.map((r) => Number(r.id));
  expect(await observationsWithLoinc('718-7')).toBe(0);

  await login(users.it);
  expect(await page.locator('header nav a').allTextContents()).toEqual(['Channels', 'Messages', 'Dead letters', 'Mappings', 'Dashboards']);
  await page.goto(`${base}/console/mappings`);
  await page.locator('#worklist tbody[data-loaded]').waitFor({ state: 'attached' });
  // Most frequent first: each of the blood-count codes occurred four times.
  const counts = (await page.locator('#worklist tbody tr td:nth-child(5)').allTextContents()).map(Number);
  expect(counts).toEqual([...counts].sort((a, b) => b - a));
  const hgb = page.locator('#worklist tbody tr', { hasText: 'HGB' });
  expect(await hgb.locator('td').nth(4).textContent()).toBe('4');
  await hgb.locator('button.suggest').click();
  const suggestion = page.locator('#suggestions tbody tr[data-target="http://loinc.org|718-7"]');
  await suggestion.waitFor();
  await suggestion.locator('button.use').click();
  expect(await page.inputValue('#propose input[name=targetCode]')).toBe('718-7');
  await page.fill('#propose textarea[name=comment]', 'Hemoglobin, mass/volume in blood');
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-mappings-worklist.png'), fullPage: true });
  await page.click('#propose-submit');
  const link = page.locator('#proposal-link');
  await link.waitFor();
  proposalId = Number(await link.getAttribute('data-proposal'));
  const stored = await hub.runtime.db.query(`SELECT source_code, target_system, target_code, state, proposed_by FROM mapping_proposal WHERE id = $1`, [proposalId]);
  expect(stored.rows[0]).toEqual({ source_code: 'HGB', target_system: LOINC, target_code: '718-7', state: 'proposed', proposed_by: 'console:wang.it' });
});

test('an integration user sees the proposal but no approve button, and the API refuses the approval with 403', async () => {
  await page.goto(`${base}/console/mappings/proposals?id=${proposalId}`);
  await page.locator(`#proposal-detail[data-proposal="${proposalId}"]`).waitFor();
  expect(await page.locator('#approve').count()).toBe(0);
  expect(await page.locator('#run-impact').count()).toBe(0);
  const refused = await apiAs('POST', `/api/terminology/proposals/${proposalId}/approve`, { comment: 'self-approval' });
  expect(refused.status).toBe(403);
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-proposals-integration.png'), fullPage: true });
});

test('the governance reviewer sees the dry-run impact, approves, reprocesses, and the Observations carry LOINC 718-7', async () => {
  await login(users.gov);
  await page.goto(`${base}/console/mappings/proposals?id=${proposalId}`);
  await page.locator(`#proposal-detail[data-proposal="${proposalId}"][data-state="proposed"]`).waitFor();
  await page.click('#run-impact');
  const summary = page.locator('#impact-summary[data-would-change]');
  await summary.waitFor();
  expect(await summary.getAttribute('data-affected')).toBe('4');
  expect(await summary.getAttribute('data-would-change')).toBe('4');
  // Field-level diff of a sample record: the standard coding appears.
  const firstSample = page.locator('#impact-sample table.impact').first();
  expect(await firstSample.getAttribute('data-resource')).toMatch(/^Observation\//);
  const added = await firstSample.locator('tbody tr').allTextContents();
  expect(added.some((r) => /code\.coding\[\d\]/.test(r) && r.includes('718-7'))).toBe(true);
  // As the committee reads it: the element's label, before and after as code + display; records × elements above.
  const readable = page.locator('#impact-sample table.impact-record').first().locator('tr[data-element="Observation.code"]');
  expect(await readable.locator('td.diff-before').textContent()).toContain('HGB');
  expect(await readable.locator('td.diff-after').textContent()).toMatch(/^\+ LOINC 718-7/);
  expect(await page.locator('#impact-elements tr[data-element="Observation.code"] td.num').textContent()).toBe('4');
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-proposal-impact.png'), fullPage: true });
  expect(await observationsWithLoinc('718-7')).toBe(0); // a dry run writes nothing

  await page.fill('#decision-comment', 'agreed at the committee meeting');
  await page.click('#approve');
  await page.locator(`#proposal-detail[data-proposal="${proposalId}"][data-state="approved"]`).waitFor();
  expect(await page.locator('#steps tbody tr[data-action="approve"]').textContent()).toContain('console:li.gov');
  await page.click('#reprocess');
  await page.locator('#job[data-state="done"]').waitFor();
  expect(await page.locator('#job').textContent()).toMatch(/4\/4, 4 updated/);
  expect(await observationsWithLoinc('718-7')).toBe(4);
  // The map's entries in force: HGB → 718-7, approved by the reviewer, with the history one click away.
  const mapUrl = (await hub.runtime.db.query<{ url: string }>(`SELECT concept_map_url AS url FROM mapping_proposal WHERE id = $1`, [proposalId])).rows[0]!.url;
  await page.goto(`${base}/console/mappings/entries?map=${mapUrl.split('/').pop()}`);
  await page.locator('#map-entries tbody[data-loaded]').waitFor({ state: 'attached' });
  const entry = page.locator('#map-entries tbody tr[data-code$="|HGB"]');
  expect(await entry.locator('td').nth(3).textContent()).toBe('718-7');
  expect(await entry.locator('td').nth(7).textContent()).toBe('console:li.gov');
  expect(await page.getAttribute('#history-link', 'href')).toBe(`/console/mappings/history?map=${mapUrl.split('/').pop()}`);
  await page.goto(`${base}/console/mappings/proposals?id=${proposalId}`);
  await page.locator(`#proposal-detail[data-proposal="${proposalId}"][data-state="approved"]`).waitFor();
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-proposal-approved.png'), fullPage: true });

  // The affected record, seen in the browser: the message's Observation now carries the standard coding.
  await page.goto(`${base}/console/messages/${labRawIds[0]}`);
  await page.locator('#resources tbody tr').first().waitFor();
  const observations = await page.locator('#resources tbody tr', { hasText: 'Observation' }).allTextContents();
  expect(observations.some((o) => o.includes('"system": "http://loinc.org"') && o.includes('"code": "718-7"'))).toBe(true);
});

test('coverage per member as a chart; version history and the diff between two versions', async () => {
  // A second approved proposal (through the same API, as the CLI would) gives the map a second version.
  const localSystem = (await hub.runtime.db.query<{ system: string }>(`SELECT source_system AS system FROM mapping_proposal WHERE id = $1`, [proposalId])).rows[0]!.system;
  const second = await apiAs('POST', '/api/terminology/proposals', { sourceSystem: localSystem, sourceCode: 'WBC', targetSystem: LOINC, targetCode: '6690-2', equivalence: 'equivalent' });
  expect(second.status).toBe(201);
  // Four eyes: the reviewer cannot approve what they proposed themselves (409, the reason named)…
  const own = await apiAs('POST', `/api/terminology/proposals/${second.body.id}/approve`, { comment: 'ok' });
  expect(own.status).toBe(409);
  expect(own.body.message).toMatch(/proposed by console:li\.gov; four-eyes/);
  // …and the page does not offer it: no approve button for the proposer, the reason shown; rejecting stays theirs.
  await page.goto(`${base}/console/mappings/proposals?id=${second.body.id}`);
  await page.locator(`#proposal-detail[data-proposal="${second.body.id}"]`).waitFor();
  expect(await page.locator('#approve').isVisible()).toBe(false);
  expect(await page.locator('#own-proposal').isVisible()).toBe(true);
  expect(await page.locator('#own-proposal').textContent()).toMatch(/four-eyes/);
  expect(await page.locator('#reject').isVisible()).toBe(true);
  // Another proposal (the integration user's) is the reviewer's to approve: the button is there.
  await page.locator(`#proposals tbody tr[data-proposal="${proposalId}"]`).click();
  await page.locator(`#proposal-detail[data-proposal="${proposalId}"]`).waitFor();
  expect(await page.locator('#own-proposal').isVisible()).toBe(false);
  // …a second committee member does.
  await approve(hub.runtime.db, second.body.id, 'wang.committee', 'ok');

  // Coverage counts codes as mapped when stored or re-derived: two more blood counts arrive with HGB and WBC mapped.
  await send('m1/lab', [0, 1].map((i) => simOru({ controlId: `LAB-NEW-${i}`, patient: simPatient(80 + i, 'L') }, bloodCount)));
  await allProcessed();
  await page.goto(`${base}/console/mappings/coverage`);
  await page.locator('#coverage tbody[data-loaded]').waitFor({ state: 'attached' });
  const row = page.locator('#coverage tbody tr[data-member="m1"]');
  const occurrences = Number(await row.locator('td').nth(3).textContent());
  // 2 messages × (HGB, WBC) mapped when stored, and the 4 HGB results reprocessed after the approval
  const mappedPct = Math.round((8 / occurrences) * 10_000) / 100;
  expect(await row.locator('td').nth(4).textContent()).toBe(`${mappedPct}%`);
  expect(await page.locator('#coverage-chart svg rect[data-series="occurrences"][data-category="m1"]').getAttribute('data-value')).toBe(String(Math.round((8 / occurrences) * 1000) / 10));
  // HGB is a code whose every stored occurrence is mapped now (its earlier results were reprocessed): one of the four.
  expect(await page.locator('#coverage-chart svg rect[data-series="distinct"][data-category="m1"]').getAttribute('data-value')).toBe('25');
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-mappings-coverage.png'), fullPage: true });

  const mapUrl = (await hub.runtime.db.query<{ concept_map_url: string }>(`SELECT concept_map_url FROM mapping_proposal WHERE id = $1`, [proposalId])).rows[0]!.concept_map_url;
  const mapId = mapUrl.split('/').pop()!;
  await page.goto(`${base}/console/mappings/history?map=${encodeURIComponent(mapId)}`);
  await page.locator('#map-diff tbody[data-loaded]').waitFor({ state: 'attached' });
  expect(await page.locator('#versions tbody tr').count()).toBe(2);
  expect(await page.inputValue('#diff-from')).toBe('1');
  expect(await page.inputValue('#diff-to')).toBe('2');
  const diff = page.locator('#map-diff tbody tr');
  expect(await diff.count()).toBe(1);
  expect(await diff.first().getAttribute('data-change')).toBe('added');
  expect(await diff.first().getAttribute('data-code')).toBe('WBC');
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-mappings-history.png'), fullPage: true });
});

test('a rejection needs a comment; retiring an approved mapping makes a new map version without it', async () => {
  const localSystem = (await hub.runtime.db.query<{ system: string }>(`SELECT source_system AS system FROM mapping_proposal WHERE id = $1`, [proposalId])).rows[0]!.system;
  const plt = await apiAs('POST', '/api/terminology/proposals', { sourceSystem: localSystem, sourceCode: 'PLT', targetSystem: LOINC, targetCode: '718-7', equivalence: 'equivalent' });
  expect(plt.status).toBe(201);
  await page.goto(`${base}/console/mappings/proposals?id=${plt.body.id}`);
  await page.locator(`#proposal-detail[data-proposal="${plt.body.id}"][data-state="proposed"]`).waitFor();
  await page.click('#reject');
  expect(await page.locator('#notice').textContent()).toBe('A rejection needs a comment');
  await page.fill('#decision-comment', 'PLT is the platelet count, not hemoglobin');
  await page.click('#reject');
  await page.locator(`#proposal-detail[data-proposal="${plt.body.id}"][data-state="rejected"]`).waitFor();
  expect(await page.locator('#steps tbody tr[data-action="reject"]').textContent()).toContain('PLT is the platelet count');
  expect(await page.locator('#approve').isHidden()).toBe(true);

  const wbc = (await hub.runtime.db.query<{ id: string }>(`SELECT id FROM mapping_proposal WHERE source_code = 'WBC'`)).rows[0]!.id;
  await page.goto(`${base}/console/mappings/proposals?id=${wbc}`);
  await page.locator(`#proposal-detail[data-proposal="${wbc}"][data-state="approved"]`).waitFor();
  await page.fill('#decision-comment', 'superseded by the analyser-specific code');
  await page.click('#retire');
  await page.locator(`#proposal-detail[data-proposal="${wbc}"][data-state="retired"]`).waitFor();
  const mapUrl = (await hub.runtime.db.query<{ concept_map_url: string }>(`SELECT concept_map_url FROM mapping_proposal WHERE id = $1`, [proposalId])).rows[0]!.concept_map_url;
  await page.goto(`${base}/console/mappings/history?map=${encodeURIComponent(mapUrl.split('/').pop()!)}`);
  await page.locator('#map-diff tbody[data-loaded]').waitFor({ state: 'attached' });
  expect(await page.locator('#versions tbody tr').count()).toBe(3);
  expect(await page.locator('#map-diff tbody tr').first().getAttribute('data-change')).toBe('removed');
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-mappings-history-retired.png'), fullPage: true });

  // Every label of the governance pages has its Chinese form.
  await Promise.all([page.waitForNavigation(), page.click('#lang-switch')]);
  expect(await page.locator('nav.tabs a').allTextContents()).toEqual(['未映射待办', '映射提议', '映射覆盖率', '当前条目', '版本历史']);
  expect(await page.locator('header nav a').allTextContents()).toEqual(['通道', '消息', '死信', '映射治理', '患者匹配审核', '联盟看板']);
  await page.goto(`${base}/console/mappings/proposals?id=${proposalId}`);
  await page.locator(`#proposal-detail[data-proposal="${proposalId}"]`).waitFor();
  expect(await page.locator('#reprocess').textContent()).toBe('重新处理受影响记录');
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-proposals-zh.png'), fullPage: true });
  await Promise.all([page.waitForNavigation(), page.click('#lang-switch')]);
});

function adt(member: string, control: string, p: { mrn: string; family: string; given: string; birth: string; sex: 'M' | 'F'; rid?: string; address?: string; phone?: string }): string {
  const t = '20261123093000';
  return (
    [
      `MSH|^~\\&|HIS|${member.toUpperCase()}|YILIAN|HUB|${t}||ADT^A08^ADT_A01|${control}|P|2.5|||||CHN|UNICODE UTF-8`,
      `EVN|A08|${t}`,
      `PID|1||${p.mrn}^^^${member.toUpperCase()}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}|||${p.address ?? ''}||${p.phone ?? ''}||||||${p.rid ?? ''}`,
    ].join('\r') + '\r'
  );
}

test('patient match review: the pair side by side with the score breakdown; a not-link decision resolves it; merge history', async () => {
  // Twins at one address: the two with resident IDs stay apart; the one without an ID at m3 goes to review.
  const home = { family: '李', birth: '20100601', address: '浙江省杭州市上城区人民路5号', phone: '13900000001' };
  await send('m1/his', [adt('m1', 'T-1', { mrn: 'T1', ...home, given: '明', sex: 'M', rid: makeResidentId('330102', '20100601', 11, 'M') })]);
  await send('m2/his', [adt('m2', 'T-2', { mrn: 'T2', ...home, given: '亮', sex: 'M', rid: makeResidentId('330102', '20100601', 13, 'M') })]);
  await allProcessed();
  await send('m3/his', [adt('m3', 'T-3', { mrn: 'T3', ...home, given: '亮', sex: 'M' }), adt('m3', 'T-4', { mrn: 'T4', ...home, given: '红', sex: 'M' })]);
  await allProcessed();

  // A viewer sees the queue (patient data, audited) but has no buttons, and the API refuses its decision.
  await login(users.viewer);
  await page.goto(`${base}/console/review`);
  await page.locator('#review-queue[data-loaded]').waitFor({ state: 'attached' });
  const viewerPair = page.locator('section.pair[data-member="m3"][data-mrn="T4"]').first();
  await viewerPair.waitFor();
  expect(await page.locator('section.pair button.link').count()).toBe(0);
  const goldenId = (await viewerPair.getAttribute('data-golden'))!;
  const refused = await apiAs('POST', '/api/mpi/review/decision', { member: 'm3', mrn: 'T4', goldenId, decision: 'link' });
  expect(refused.status).toBe(403);
  // …and has no mapping pages at all; the terminology API refuses its approval too.
  expect((await page.goto(`${base}/console/mappings/proposals`))!.status()).toBe(403);
  expect((await apiAs('POST', `/api/terminology/proposals/${proposalId}/approve`, {})).status).toBe(403);

  await login(users.gov);
  await page.goto(`${base}/console/review`);
  const pairs = page.locator('section.pair[data-member="m3"][data-mrn="T4"]');
  await pairs.first().waitFor();
  const first = pairs.first();
  // The member by its configured name, its id on hover.
  expect(await first.locator('strong[data-member-id="m3"]').textContent()).toBe('Member m3 · T4');
  expect(await first.locator('strong[data-member-id="m3"]').getAttribute('title')).toBe('m3|T4');
  // Side by side: the family agrees, the given name does not; the breakdown names field, level and weight.
  expect(await first.locator('table.side-by-side tr[data-field="family"] td.agree').count()).toBe(2);
  expect(await first.locator('table.side-by-side tr[data-field="given"] td.disagree').count()).toBe(2);
  const given = (await first.locator('table.breakdown tr[data-field="given"]').textContent())!;
  expect(given).toMatch(/different/);
  expect(given).toMatch(/-\d/);
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-review.png'), fullPage: true });

  const candidates = await pairs.count();
  for (let i = 0; i < candidates; i++) {
    const pair = page.locator('section.pair[data-member="m3"][data-mrn="T4"]').first();
    await pair.locator('input.reason').fill('twin brother, different given name');
    await pair.locator('button.not-link').click();
    await page.waitForFunction((n) => document.querySelectorAll('section.pair[data-member="m3"][data-mrn="T4"]').length === n, candidates - i - 1);
  }
  const decided = await hub.runtime.db.query<{ state: string; mode: string; decided_by: string }>(`SELECT state, mode, decided_by FROM mpi_link WHERE member_id = 'm3' AND mrn = 'T4' AND golden_id = $1`, [goldenId]);
  expect(decided.rows).toEqual([{ state: 'NO_MATCH', mode: 'MANUAL', decided_by: 'console:li.gov' }]);

  await page.goto(`${base}/console/patients/${goldenId}`);
  await page.locator('#golden-history tbody[data-loaded]').waitFor({ state: 'attached' });
  expect(await page.locator('#golden-history tbody tr[data-action="manual-not-link"]').first().textContent()).toMatch(/console:li\.gov.*m3.*T4.*twin brother/);
  expect(await page.locator('#golden-sources tbody tr').count()).toBeGreaterThanOrEqual(1);
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-golden-patient.png'), fullPage: true });
  const audited = await hub.runtime.db.query(`SELECT 1 FROM audit_event WHERE actor = 'console:li.gov' AND entity_type = 'mpi_golden' AND entity_id = $1`, [goldenId]);
  expect(audited.rowCount).toBe(1);
});

test('alliance dashboard: KPI cards and charts from GET /api/kpi, or an honest "unavailable" state', async () => {
  await login(users.gov);
  await page.goto(`${base}/console/dashboard`);
  const kpiRoute = existsSync(path.join(__dirname, '..', 'hub', 'feeds', 'kpi.ts'));
  if (!kpiRoute) {
    await page.locator('#kpi-unavailable:not([hidden])').waitFor();
    expect(await page.locator('#kpi-unavailable').textContent()).toMatch(/The KPI route \/api\/kpi is not available: 404/);
    expect(await page.locator('#kpi').isHidden()).toBe(true);
  } else {
    await page.locator('#kpi[data-loaded], #kpi-unavailable:not([hidden])').first().waitFor();
    expect(await page.locator('#kpi-unavailable').isHidden() || (await page.locator('#kpi-unavailable').textContent())).toBe(true);
    expect(await page.locator('#kpi-cards .card').count()).toBe(6);
  }
  await expectFits();
  await page.screenshot({ path: path.join(RESULTS, 'console-dashboard-empty.png'), fullPage: true });
});
