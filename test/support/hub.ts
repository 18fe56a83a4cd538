/**
 * Test harness on the real services: a fresh PostgreSQL database per test file (on the machine's
 * server, 127.0.0.1:5432, user postgres) and a private BullMQ prefix on the machine's Redis, so test
 * files can run in parallel without seeing each other's data.
 */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { parseConfig, type HubConfig, type MemberConfig } from '../../hub/config';
import { openRuntime, type Runtime } from '../../cli/runtime';
import { runPipeline } from '../../pipeline/runner';

export const PG_ADMIN_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const SHARED_DATA = `${__dirname}/../../../shared/data`;

export async function createTestDatabase(label: string): Promise<string> {
  const name = `yilian_test_${label.replace(/\W/g, '_')}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
}

export async function dropTestDatabase(url: string): Promise<void> {
  const name = url.replace(/^.*\//, '');
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}

export interface TestHub {
  runtime: Runtime;
  config: HubConfig;
  databaseUrl: string;
  prefix: string;
  close(): Promise<void>;
}

/** A runtime on a new database and a new queue prefix; `configInput` is merged into the config. */
export async function startTestHub(label: string, configInput: Record<string, unknown> = {}): Promise<TestHub> {
  const databaseUrl = await createTestDatabase(label);
  const prefix = `yt-${label}-${randomBytes(3).toString('hex')}`;
  const config = parseConfig({
    ...configInput,
    databaseUrl,
    redisUrl: (configInput.redisUrl as string | undefined) ?? REDIS_URL,
    pipeline: { partitions: 4, backoffMs: 200, ...(configInput.pipeline as object | undefined), queuePrefix: prefix },
  });
  const runtime = await openRuntime(config, { log: () => undefined });
  return {
    runtime,
    config,
    databaseUrl,
    prefix,
    async close() {
      await runtime.intake.drain();
      await runtime.queues.removeAllKeys();
      await runtime.close();
      await dropTestDatabase(databaseUrl);
    },
  };
}

/** The hub's HTTP API (and console) on a free port of 127.0.0.1; `base` is its URL. */
export async function listenApi(runtime: Runtime): Promise<{ server: Server; base: string }> {
  // Loaded here, not at the top: most tests of this harness never serve the API and need not load all its routers.
  const { createApi } = require('../../api/server') as typeof import('../../api/server');
  const server = createApi(runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** A test hub with its HTTP API listening (see listenApi); `close` stops the server, then the hub. */
export interface ApiTestHub extends TestHub {
  server: Server;
  base: string;
}

/** startTestHub, then listenApi on its runtime. */
export async function startApiTestHub(label: string, configInput: Record<string, unknown> = {}): Promise<ApiTestHub> {
  const hub = await startTestHub(label, configInput);
  const { server, base } = await listenApi(hub.runtime);
  return {
    ...hub,
    server,
    base,
    async close() {
      await new Promise((r) => server.close(r));
      await hub.close();
    },
  };
}

/** The HL7 v2 channel in-process tests receive on: UTF-8 unless MSH-18 says otherwise, original-mode ACKs. */
export const TEST_CHANNEL = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

/**
 * One HL7 v2 message as member `memberId` sends it on TEST_CHANNEL: stored by intake, then run
 * through the stages in this process, where it must end `processed`. Returns its raw id.
 */
export async function receiveProcessed(hub: TestHub, memberId: string, bytes: Buffer): Promise<number> {
  const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
  const stored = await hub.runtime.intake.receive({ member, channel: TEST_CHANNEL, bytes });
  expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
  return stored.rawId;
}

/** Poll until `check` is true (integration tests wait on real processes, never on fixed sleeps). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 60_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
