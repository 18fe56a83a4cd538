/**
 * Fix-and-replay in the operations console, in a real browser (Debian's Chromium, playwright-core)
 * against a real hub: PostgreSQL, Redis, an MLLP listener, the pipeline worker and the HTTP API.
 * Lab results whose haemoglobin was typed as letters arrive over MLLP (ACKed: the intake stores
 * them) and are quarantined at convert. An integration user opens the dead letter, corrects the
 * value in the textarea (one segment a line), writes the comment and submits: the page moves to the
 * new message, which is processed and says which message it fixes; the original says it was fixed
 * and by which message, its dead letter is gone and it offers neither fix nor replay. A viewer and a
 * governance reviewer see no fix form, and the API refuses them (403). Screenshots go to test-results/.
 */
import path from 'node:path';
import type { Server } from 'node:http';
import type { Page } from 'playwright-core';
import { MllpListener } from '../adapters/mllp/listener';
import type { MllpChannelConfig } from '../hub/config';
import { hashPassword } from '../api/console/password';
import { bloodCount, encodeAs, MllpClient, simOru, simPatient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { checkedPageErrors, consoleLogin, openConsoleBrowser, RESULTS, type ConsoleBrowser } from './support/browser';
import { listenApi, startTestHub, waitFor, type TestHub } from './support/hub';
import { freePort } from './support/processes';

const users = { it: ['wang.it', 'integration-pass-01'], viewer: ['guest', 'viewer-pass-0001'], gov: ['li.gov', 'governance-pass-01'] } as const;

let hub: TestHub;
let listener: MllpListener;
let worker: PipelineWorker;
let server: Server;
let base: string;
let mllpPort: number;
let browser: ConsoleBrowser;
let page: Page;

beforeAll(async () => {
  mllpPort = await freePort();
  const cheap = { N: 1024 }; // low scrypt cost keeps the test fast
  hub = await startTestHub('console_fix', {
    members: [{ id: 'm1', name: 'County Hospital', tier: 'secondary', channels: [{ id: 'lab', kind: 'mllp', host: '127.0.0.1', port: mllpPort }] }],
    api: { port: 0, keys: [] },
    console: {
      users: [
        { name: users.it[0], role: 'integration', passwordHash: await hashPassword(users.it[1], cheap) },
        { name: users.viewer[0], role: 'viewer', passwordHash: await hashPassword(users.viewer[1], cheap) },
        { name: users.gov[0], role: 'governance', passwordHash: await hashPassword(users.gov[1], cheap) },
      ],
    },
  });
  const member = hub.config.members[0]!;
  listener = new MllpListener(member, member.channels[0] as MllpChannelConfig, hub.runtime.intake);
  await listener.start();
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues);
  await worker.start();
  ({ server, base } = await listenApi(hub.runtime));
  browser = await openConsoleBrowser(pageErrors);
  page = browser.page;
});

const pageErrors = checkedPageErrors();

afterAll(async () => {
  await browser?.close();
  if (server) await new Promise((r) => server.close(r));
  for (const stop of [() => listener?.close(), () => worker?.close(), () => hub?.close()]) await stop();
});

async function statusOf(rawId: number): Promise<string> {
  return (await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1`, [rawId])).rows[0]!.status;
}

/** The Status field of the message page's summary. */
const shownStatus = () => page.locator('#summary dt:text-is("Status") + dd').textContent();

let firstId: number;
let secondId: number;

test('an integration user fixes a dead letter: edits the text, comments, and the new message is processed; the original is marked fixed', async () => {
  const client = await MllpClient.connect(mllpPort);
  const acks: string[] = [];
  for (const [controlId, n] of [['LAB-TYPO-1', 1], ['LAB-TYPO-2', 2]] as const) {
    const text = simOru({ controlId, patient: simPatient(n, 'L') }, bloodCount.map((r) => (r.code === 'HGB' ? { ...r, value: 'abc' } : r)));
    acks.push((await client.send(encodeAs(text, 'UTF-8'))).toString('latin1'));
  }
  await client.close();
  expect(acks.map((a) => /MSA\|(\w\w)/.exec(a)?.[1])).toEqual(['AA', 'AA']);
  const ids = (await hub.runtime.db.query<{ id: number; control_id: string }>(`SELECT id, control_id FROM raw_message ORDER BY id`)).rows;
  firstId = ids.find((r) => r.control_id === 'LAB-TYPO-1')!.id;
  secondId = ids.find((r) => r.control_id === 'LAB-TYPO-2')!.id;
  await waitFor(async () => (await statusOf(firstId)) === 'quarantined' && (await statusOf(secondId)) === 'quarantined', 60_000, 'both quarantined at convert');

  await consoleLogin(page, base, users.it[0], users.it[1]);
  expect(await page.locator('#role').textContent()).toBe('integration');
  await page.goto(`${base}/console/dead-letters`);
  const row = page.locator(`#dead-letters tbody tr[data-raw-id="${firstId}"]`);
  await row.waitFor();
  expect(await row.textContent()).toMatch(/convert.*invalid.*OBX-5 "abc" is not a number/);
  await Promise.all([page.waitForNavigation(), row.locator('a').click()]);
  expect(new URL(page.url()).pathname).toBe(`/console/messages/${firstId}`);

  // The form holds the text as the hub decodes it, one segment a line.
  const textarea = page.locator('#fix-text');
  await page.locator('#fix').waitFor({ state: 'visible' });
  const lines = (await textarea.inputValue()).split('\n');
  expect(lines[0]).toMatch(/^MSH\|\^~\\&\|LIS\|HOSP\|.*\|LAB-TYPO-1\|/);
  expect(lines.map((l) => l.slice(0, 3))).toEqual(['MSH', 'PID', 'OBR', 'OBX', 'OBX', 'OBX', '']);
  expect(lines[3]).toContain('OBX|1|NM|HGB^血红蛋白^L||abc|');
  await textarea.fill(lines.join('\n').replace('||abc|', '||135|'));

  // A blank comment passes the browser's `required` but not the API: its 400 is shown, nothing stored.
  await page.fill('#fix-comment', '   ');
  await page.click('#fix-submit');
  await page.waitForFunction(() => /comment is required/.test(document.getElementById('fix-notice')!.textContent ?? ''));
  expect(await page.locator('#fix-notice').getAttribute('class')).toBe('error');
  expect(new URL(page.url()).pathname).toBe(`/console/messages/${firstId}`);
  expect(await statusOf(firstId)).toBe('quarantined');

  await page.fill('#fix-comment', 'HGB typed as "abc" at the analyser; the printout says 135 g/L');
  await page.screenshot({ path: path.join(RESULTS, 'console-fix-form.png'), fullPage: true });
  await Promise.all([page.waitForURL((url) => /^\/console\/messages\/\d+$/.test(url.pathname) && url.pathname !== `/console/messages/${firstId}`), page.click('#fix-submit')]);
  const fixId = Number(new URL(page.url()).pathname.split('/').pop());
  expect(fixId).toBeGreaterThan(secondId);

  // The new message: says which one it fixes; processed once the worker ran it, with its Observations.
  await waitFor(async () => (await statusOf(fixId)) === 'processed', 60_000, 'fix processed');
  await page.reload();
  await page.locator('#resources tbody tr').first().waitFor();
  expect(await shownStatus()).toBe('processed');
  const fixOf = page.locator('#fix-of');
  expect(await fixOf.isVisible()).toBe(true);
  expect(await fixOf.textContent()).toMatch(new RegExp(`^Fix of message #${firstId} \\(fixed\\) · console:wang\\.it · .+ · HGB typed as "abc"`));
  expect(await page.locator('#fixed-by').isVisible()).toBe(false);
  expect(await page.locator('#raw').textContent()).toContain('OBX|1|NM|HGB^血红蛋白^L||135|');
  expect(await page.locator('#resources tbody tr td:first-child').allTextContents()).toEqual(expect.arrayContaining(['Observation', 'Patient', 'Provenance']));
  expect(await page.locator('#fix').isVisible()).toBe(false);
  await page.screenshot({ path: path.join(RESULTS, 'console-fix-new-message.png'), fullPage: true });

  // The original, reached by the link: fixed, pointing at its fix; its bytes shown as they arrived.
  await Promise.all([page.waitForNavigation(), fixOf.locator('a').click()]);
  expect(new URL(page.url()).pathname).toBe(`/console/messages/${firstId}`);
  await page.locator('#fixed-by a').waitFor();
  expect(await shownStatus()).toBe('fixed');
  expect(await page.locator('#fixed-by').textContent()).toMatch(new RegExp(`^Fixed by message #${fixId} \\(processed\\) · console:wang\\.it · `));
  expect(await page.locator('#fixed-by a').getAttribute('href')).toBe(`/console/messages/${fixId}`);
  expect(await page.locator('#quarantine tbody tr').first().getAttribute('data-state')).toBe('fixed');
  expect(await page.locator('#raw').textContent()).toContain('||abc|');
  expect(await page.locator('#fix').isVisible()).toBe(false);
  expect(await page.locator('#replay-one').isVisible()).toBe(false);
  await page.screenshot({ path: path.join(RESULTS, 'console-fix-original.png'), fullPage: true });

  // Out of the dead letters; the other typo is still there.
  await page.goto(`${base}/console/dead-letters`);
  await page.locator(`#dead-letters tbody tr[data-raw-id="${secondId}"]`).waitFor();
  expect(await page.locator(`#dead-letters tbody tr[data-raw-id="${firstId}"]`).count()).toBe(0);
});

test('a viewer and a governance reviewer see no fix form, and the API refuses their fix (403)', async () => {
  for (const [name, password] of [users.viewer, users.gov]) {
    await page.context().clearCookies();
    await consoleLogin(page, base, name, password);
    await page.goto(`${base}/console/messages/${secondId}`);
    await page.locator('#hex').filter({ hasText: '00000000' }).waitFor();
    expect(await shownStatus()).toBe('quarantined');
    expect(await page.locator('#fix').count()).toBe(0);
    expect(await page.locator('#fix-submit').count()).toBe(0);
    if (name === users.viewer[0]) await page.screenshot({ path: path.join(RESULTS, 'console-fix-viewer.png'), fullPage: true });
    // The same call the integration user's button makes, from this session.
    const refused = await page.evaluate(async (rawId) => {
      const res = await fetch(`/api/raw-messages/${rawId}/fix`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json', 'x-yilian-console': '1' },
        body: JSON.stringify({ text: 'MSH|^~\\&|LIS|HOSP|YILIAN|HUB|20261123093000||ORU^R01|LAB-TYPO-2|P|2.5\r', comment: 'not mine to fix' }),
      });
      return { status: res.status, body: await res.json() };
    }, secondId);
    expect(refused).toMatchObject({ status: 403, body: { resourceType: 'OperationOutcome', code: 'forbidden', message: 'scope integration required' } });
  }
  expect(await statusOf(secondId)).toBe('quarantined');
  expect((await hub.runtime.db.query(`SELECT 1 FROM raw_message_fix WHERE original_id = $1`, [secondId])).rowCount).toBe(0);
});
