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
import type { HubDb } from '../hub/sql';
import type { RawIntake } from '../adapters/intake';
import type { PipelineQueues } from '../pipeline/queues';
import { redisConnection } from '../hub/redis';
import { HubError } from '../mappings/outcome';
import { openStore } from './embeddedStore';
import { upsertMembers } from '../hub/rawStore';

// Required when used: BullMQ and the intake (with its HL7 v2 reader and metrics) are a third of a
// read-only command's start (bench/cliStart.ts), and openReader on the embedded store needs neither.
const queuesModule = () => require('../pipeline/queues') as typeof import('../pipeline/queues');
const intakeModule = () => require('../adapters/intake') as typeof import('../adapters/intake');

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
  // The store first: an embedded store held by another process stops the command here, before a
  // redis-server is started for it (cli/embeddedStore.ts).
  const db = await openStore(config, options.poolSize);
  let embeddedRedis: EmbeddedRedis | undefined;
  let redisUrl = config.redisUrl;
  try {
    await upsertMembers(db, config.members);
    if (!redisUrl) {
      embeddedRedis = await startEmbeddedRedis();
      redisUrl = embeddedRedis.url;
    }
  } catch (error) {
    // The embedded redis-server is this process's child: it is not left running when the store cannot be set up.
    await embeddedRedis?.stop();
    await db.close().catch(() => undefined);
    throw error;
  }
  const queues = new (queuesModule().PipelineQueues)({ redisUrl, ...config.pipeline, prefix: config.pipeline.queuePrefix });
  const intake: RawIntake = new (intakeModule().RawIntake)(db, queues, { log });
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

/** What a read-only command (`yilian status`) reads: the store, and the queues when there are any to read. */
export interface Reader {
  db: HubDb;
  /** Absent on the embedded defaults (see openReader). */
  queues?: PipelineQueues;
  close(): Promise<void>;
}

/**
 * The store and, with a configured Redis, the queues: no members written, no intake. With the
 * embedded defaults no redis-server is started: it would be private to this command, so it could
 * hold nothing to read (what waits is in the store: pipeline/status.ts, pipelineLag).
 */
export async function openReader(config: HubConfig): Promise<Reader> {
  const db = await openStore(config);
  let queues: PipelineQueues | undefined;
  try {
    if (config.redisUrl) queues = new (queuesModule().PipelineQueues)({ redisUrl: config.redisUrl, ...config.pipeline, prefix: config.pipeline.queuePrefix });
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  return {
    db,
    queues,
    async close() {
      await queues?.close();
      await db.close();
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
  const args = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir];
  // Linux ends the server when this process dies without running any handler (SIGKILL, OOM):
  // util-linux's setpriv sets its parent-death signal before it becomes redis-server.
  const setpriv = spawnSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).stdout.trim();
  const child: ChildProcess = setpriv ? spawn(setpriv, ['--pdeathsig', 'KILL', binary, ...args], { stdio: 'ignore' }) : spawn(binary, args, { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  // However this process ends — an error, process.exit (a failed start, a forced shutdown), a signal
  // nobody else handles — its redis-server ends with it: it is never left running on its own.
  const killNow = () => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    // `serve` and `worker` handle their signals (a graceful shutdown that stops this server); a
    // one-shot command has no other handler and would otherwise end without running exit hooks.
    if (process.listenerCount(signal) > 1) return;
    killNow();
    process.exit(128 + (os.constants.signals[signal] ?? 1));
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  process.on('exit', killNow);
  for (const s of signals) process.on(s, onSignal);
  const forget = () => {
    process.off('exit', killNow);
    for (const s of signals) process.off(s, onSignal);
  };
  try {
    for (let i = 0; i < 100 && !existsSync(socket) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    const probe = redisConnection(socket);
    await probe.ping();
    probe.disconnect();
  } catch (error) {
    forget();
    killNow();
    throw error;
  }
  return {
    url: socket,
    async stop() {
      forget();
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
