/**
 * Backpressure and lag (issue 19, target 6): with no worker the intake keeps ACKing, and the age of
 * the oldest stored-but-unprocessed message rises on /metrics and on the console's channels data;
 * a worker brings it back to 0. A replayed old message waits from its replay, not from its arrival.
 * The alert rules shipped in deploy/prometheus are checked (and unit-tested with promtool when it is
 * installed).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { MllpListener } from '../adapters/mllp/listener';
import type { MllpChannelConfig } from '../hub/config';
import { ackCode, encodeAs, MllpClient, simAdt, simPatient } from '../cli/simulate';
import { PipelineWorker } from '../pipeline/worker';
import { replay } from '../pipeline/replay';
import { LAG_WARNING_SECONDS, OLDEST_QUEUED_SQL } from '../pipeline/status';
import { hashPassword } from '../api/console/password';
import { checkedPageErrors, consoleLogin, openConsoleBrowser, type ConsoleBrowser } from './support/browser';
import { listenApi, startTestHub, waitFor, type TestHub } from './support/hub';

const OPS = 'ops-key-lag-0123456789abcdef';
const N = 24;
const RULES = path.join(__dirname, '..', 'deploy', 'prometheus', 'alerts.yml');

let hub: TestHub;
let listener: MllpListener;
let port: number;
let api: Awaited<ReturnType<typeof listenApi>>;
let browser: ConsoleBrowser;
const pageErrors = checkedPageErrors();
const ADMIN = ['lag-admin', 'lag-admin-password-1'] as const;

beforeAll(async () => {
  hub = await startTestHub('lag', {
    api: { port: 0, keys: [{ name: 'ops', key: OPS, scopes: ['admin'] }] },
    console: { users: [{ name: ADMIN[0], role: 'admin', passwordHash: await hashPassword(ADMIN[1], { N: 1024 }) }] },
    members: [{ id: 'm1', name: 'M1', tier: 'secondary', channels: [{ id: 'adt', kind: 'mllp', port: 0, host: '127.0.0.1' }] }],
  });
  const member = hub.config.members[0]!;
  listener = new MllpListener(member, member.channels[0] as MllpChannelConfig, hub.runtime.intake);
  port = await listener.start();
  api = await listenApi(hub.runtime);
  browser = await openConsoleBrowser(pageErrors);
});

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => api?.server.close(r));
  await listener?.close();
  await hub?.close();
});

/** The lag gauges as one scrape of GET /metrics reports them. */
async function scrape(): Promise<{ age: number; queued: number }> {
  const res = await fetch(`${api.base}/metrics`, { headers: { authorization: `Bearer ${OPS}` } });
  expect(res.status).toBe(200);
  const text = await res.text();
  const value = (name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    if (!line) throw new Error(`${name} not in the scrape`);
    return Number(line.split(' ')[1]);
  };
  return { age: value('yilian_pipeline_oldest_queued_age_seconds'), queued: value('yilian_pipeline_queued_messages') };
}

async function consoleLag(): Promise<{ queued: number; oldestQueuedAgeSeconds: number; oldestQueuedAt: string | null; warnAfterSeconds: number }> {
  const res = await fetch(`${api.base}/api/channels`, { headers: { authorization: `Bearer ${OPS}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { pipeline: never }).pipeline;
}

async function drainWithWorker(): Promise<void> {
  const worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { reconcile: false });
  await worker.start();
  try {
    await waitFor(async () => (await scrape()).queued === 0, 120_000, 'the worker to process every queued message');
  } finally {
    await worker.close();
  }
}

test('with no worker the intake ACKs everything and the oldest queued age rises; a worker brings it to 0', async () => {
  expect(await scrape()).toEqual({ age: 0, queued: 0 });
  const client = await MllpClient.connect(port);
  try {
    for (let i = 0; i < N; i++) {
      const ack = await client.send(encodeAs(simAdt({ controlId: `LAG-${i}`, patient: simPatient(i, 'L') }), 'UTF-8'));
      expect(ackCode(ack)).toBe('AA'); // stored and ACKed although nothing processes it
    }
  } finally {
    await client.close();
  }
  const first = await scrape();
  expect(first.queued).toBe(N);
  expect(first.age).toBeGreaterThan(0);
  // Still no worker: the age keeps rising between scrapes (polled, no fixed sleep).
  await waitFor(async () => (await scrape()).age >= first.age + 1, 30_000, 'the oldest queued age to rise');
  const shown = await consoleLag();
  expect(shown.queued).toBe(N);
  expect(shown.oldestQueuedAgeSeconds).toBeGreaterThanOrEqual(first.age + 1);
  expect(Date.parse(shown.oldestQueuedAt!)).toBeLessThan(Date.now());
  expect(shown.warnAfterSeconds).toBe(LAG_WARNING_SECONDS);
  // The console's channels page, in a browser, says so above the table.
  const { page } = browser;
  await consoleLogin(page, api.base, ADMIN[0], ADMIN[1]);
  expect(new URL(page.url()).pathname).toBe('/console/channels');
  const line = page.locator(`#pipeline-lag[data-queued="${N}"]`);
  await line.waitFor();
  expect(await line.textContent()).toMatch(new RegExp(`^Pipeline backlog: ${N} ACKed and waiting, the oldest for \\d+ s$`));
  expect(Number(await line.getAttribute('data-oldest-age-seconds'))).toBeGreaterThanOrEqual(Math.floor(first.age));

  await drainWithWorker();
  expect(await scrape()).toEqual({ age: 0, queued: 0 });
  expect(await consoleLag()).toMatchObject({ queued: 0, oldestQueuedAgeSeconds: 0, oldestQueuedAt: null });
  await page.click('#refresh');
  await page.locator('#pipeline-lag[data-queued="0"]').waitFor();
  expect(await page.locator('#pipeline-lag').textContent()).toBe('Pipeline: nothing waiting');
}, 180_000);

test('a replayed message received a day ago waits from its replay, not from its arrival', async () => {
  const { rows } = await hub.runtime.db.query<{ id: number }>(`UPDATE raw_message SET received_at = now() - interval '1 day' WHERE id = (SELECT min(id) FROM raw_message) RETURNING id`);
  const rawId = rows[0]!.id;
  const result = await replay(hub.runtime.db, hub.runtime.queues, { rawIds: [rawId] });
  expect(result.replayed).toBe(1);
  const lag = await scrape();
  expect(lag.queued).toBe(1);
  expect(lag.age).toBeLessThan(600); // not 86,400: the trigger of migration 21 noted when it was put back
  await drainWithWorker();
  expect(await scrape()).toEqual({ age: 0, queued: 0 });
}, 180_000);

test('the oldest queued message is found through the partial index, not a scan of the store', async () => {
  // A few rows make a scan and a sort the cheaper plan; with both ruled out, only an index ordered by
  // the waiting time can serve the query without a Sort node.
  const plan = await hub.runtime.db.transaction(async (tx) => {
    await tx.query(`SET LOCAL enable_seqscan = off`);
    await tx.query(`SET LOCAL enable_sort = off`);
    const explained = await tx.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${OLDEST_QUEUED_SQL}`);
    return JSON.stringify(explained.rows[0]!['QUERY PLAN']);
  });
  expect(plan).toContain('raw_message_queued_since');
  expect(plan).not.toContain('"Sort"');
});

test('the alert rules are valid and fire on the lag gauge (promtool when installed)', () => {
  const doc = YAML.parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ name: string; rules: Array<{ alert: string; expr: string; for: string; labels: { severity: string }; annotations: { summary: string } }> }> };
  const rules = doc.groups.flatMap((g) => g.rules);
  const byName = Object.fromEntries(rules.map((r) => [r.alert, r]));
  expect(Object.keys(byName).sort()).toEqual(['YilianPipelineLagUnknown', 'YilianPipelineLagging', 'YilianPipelineStalled']);
  for (const rule of rules) {
    expect(rule.expr).toContain('yilian_pipeline_oldest_queued_age_seconds');
    expect(rule.for).toMatch(/^\d+[smh]$/);
    expect(['warning', 'critical']).toContain(rule.labels.severity);
    expect(rule.annotations.summary).toBeTruthy();
  }
  // The console flags the lag from the same age as the warning rule.
  expect(byName.YilianPipelineLagging!.expr).toMatch(new RegExp(`>= ${LAG_WARNING_SECONDS}$`));
  const promtool = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();
  if (!promtool) {
    process.stderr.write('promtool not installed (Debian package prometheus): the rules were checked structurally only\n');
    return;
  }
  const check = spawnSync(promtool, ['check', 'rules', RULES], { encoding: 'utf8' });
  expect(`${check.stdout}${check.stderr}`).toMatch(/SUCCESS: 3 rules found/);
  expect(check.status).toBe(0);
  const unit = spawnSync(promtool, ['test', 'rules', path.join(path.dirname(RULES), 'alerts.test.yml')], { encoding: 'utf8' });
  expect(`${unit.stdout}${unit.stderr}`).toMatch(/SUCCESS/);
  expect(unit.status).toBe(0);
});
