/**
 * Wires one process: the hub store, Redis (a configured one, or an embedded redis-server for the
 * one-command demo), the partition queues and the intake. Every CLI command starts here.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ApiContext } from '../api/context';
import type { HubConfig } from '../hub/config';
import { RawIntake } from '../adapters/intake';
import { PipelineQueues, redisClient } from '../pipeline/queues';
import { HubError } from '../mappings/outcome';
import { openHubDb } from '../hub/db';
import { upsertMembers } from '../hub/rawStore';

/** One process's hub: what the API is handed (api/context.ts), plus how to reach and close it. */
export interface Runtime extends ApiContext {
  redisUrl: string;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  log?: (text: string) => void;
  /** PostgreSQL pool size for this process. */
  poolSize?: number;
}

export async function openRuntime(config: HubConfig, options: RuntimeOptions = {}): Promise<Runtime> {
  const log = options.log ?? ((t: string) => process.stderr.write(`${t}\n`));
  let embeddedRedis: EmbeddedRedis | undefined;
  let redisUrl = config.redisUrl;
  if (!redisUrl) {
    embeddedRedis = await startEmbeddedRedis();
    redisUrl = embeddedRedis.url;
  }
  let db: Awaited<ReturnType<typeof openHubDb>> | undefined;
  try {
    db = await openHubDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: options.poolSize });
    await upsertMembers(db, config.members);
  } catch (error) {
    // The embedded redis-server is this process's child: it is not left running when the store cannot be opened.
    await db?.close().catch(() => undefined);
    await embeddedRedis?.stop();
    throw error;
  }
  const queues = new PipelineQueues({ redisUrl, ...config.pipeline, prefix: config.pipeline.queuePrefix });
  const intake = new RawIntake(db, queues, { log });
  return {
    config,
    db,
    queues,
    intake,
    redisUrl,
    async close() {
      await intake.drain();
      await queues.close();
      await db.close();
      await embeddedRedis?.stop();
    },
  };
}

interface EmbeddedRedis {
  url: string;
  stop(): Promise<void>;
}

/**
 * The demo's own redis-server (Debian package `redis-server`), on a private unix socket, keeping
 * nothing on disk. Not for production: there REDIS_URL points at a managed Redis.
 */
async function startEmbeddedRedis(): Promise<EmbeddedRedis> {
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const binary = which.stdout.trim();
  if (!binary) {
    throw new HubError('invalid', 'REDIS_URL is not set and no redis-server is installed for the embedded default: install the Debian package `redis-server` (apt-get install redis-server) or set REDIS_URL');
  }
  const dir = path.join(os.tmpdir(), `yilian-redis-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'redis.sock');
  const child: ChildProcess = spawn(binary, ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
  const probe = redisClient(socket);
  await probe.ping();
  probe.disconnect();
  return {
    url: socket,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
