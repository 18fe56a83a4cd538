/**
 * Debian's chromium driven by playwright-core, as the console's browser tests use it: a private
 * profile, a 1366×768 viewport (the smallest screen the console must serve), and every page script
 * error collected so that each test can assert there was none. Screenshots go to RESULTS (CI artifacts).
 * `consoleLogin` logs in through the console's login form, as a person does; `checkedPageErrors`
 * gives a test file the list to hand to openConsoleBrowser, checked empty after each test.
 */
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const RESULTS = path.join(__dirname, '..', '..', 'test-results');

export interface ConsoleBrowser {
  context: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

/** Launch chromium; script errors of the page are pushed onto `pageErrors`. */
export async function openConsoleBrowser(pageErrors: string[]): Promise<ConsoleBrowser> {
  mkdirSync(RESULTS, { recursive: true });
  const profile = mkdtempSync(path.join(os.tmpdir(), 'yilian-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1366, height: 768 },
    locale: 'en-US',
  });
  context.setDefaultTimeout(60_000);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (error) => pageErrors.push(error.message));
  return {
    context,
    page,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Log in through the login form at `base` and wait for the page it leads to (or back to the form). */
export async function consoleLogin(page: Page, base: string, name: string, password: string): Promise<void> {
  await page.goto(`${base}/console/login`);
  await page.fill('input[name=user]', name);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('form#login button[type=submit]')]);
}

/** The page script errors of a test file, to pass to openConsoleBrowser: every test must end with none. */
export function checkedPageErrors(): string[] {
  const errors: string[] = [];
  afterEach(() => {
    expect(errors.splice(0)).toEqual([]);
  });
  return errors;
}
