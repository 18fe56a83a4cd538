/**
 * The embedded store (PGlite in `dataDir`) belongs to one process at a time: PGlite runs the
 * database inside that process, and a second process opening the same directory aborts inside
 * WebAssembly (`RuntimeError: Aborted()`) or corrupts it. The holder writes `<dataDir>/pglite.holder`
 * (its pid and command) before opening the store and removes it when it closes or exits; a second
 * CLI process reads it and stops with one line naming the holder, before it starts anything else
 * (a redis-server, a listener). A holder file whose process is gone (killed with SIGKILL, a crash)
 * is stale and taken over. PostgreSQL (DATABASE_URL) needs none of this.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { HubConfig } from '../hub/config';
import { openHubDb } from '../hub/db';
import type { HubDb } from '../hub/sql';
import { UsageError } from './usageError';

interface Holder {
  pid: number;
  command: string;
  since: string;
}

/** This process as a person would name it: `yilian serve`, or the script that runs it. */
function thisCommand(): string {
  const script = path.basename(process.argv[1] ?? 'node');
  const words = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  return /^yilian(\.js|\.ts)?$/.test(script) ? `yilian ${words.slice(0, 2).join(' ')}`.trim() : `node ${script}`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user — it holds the store all the same.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(file: string): Holder | undefined {
  try {
    const holder = JSON.parse(readFileSync(file, 'utf8')) as Holder;
    return Number.isSafeInteger(holder.pid) ? holder : undefined;
  } catch {
    return undefined; // gone meanwhile, or half written by a holder that died: stale
  }
}

/**
 * Claims the embedded store in `dataDir` for this process, or throws a UsageError naming the
 * process that holds it. Returns how to release the claim (idempotent; also run on process exit).
 */
export function claimEmbeddedStore(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'pglite.holder');
  const mine: Holder = { pid: process.pid, command: thisCommand(), since: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      // O_EXCL: of two processes starting together, one creates the file and the other reads it.
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, JSON.stringify(mine));
      closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw error;
      const holder = readHolder(file);
      if (holder && holder.pid !== process.pid && alive(holder.pid)) {
        throw new UsageError(`the embedded store ${path.resolve(dataDir)} is in use by ${holder.command} (pid ${holder.pid}); stop it, or set DATABASE_URL to a PostgreSQL database`);
      }
      if (holder?.pid === process.pid) throw new UsageError(`the embedded store ${path.resolve(dataDir)} is already open in this process`);
      try {
        unlinkSync(file); // stale: its process is gone
      } catch {
        // removed by another process taking it over; the next attempt decides
      }
    }
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    // Only our own claim is removed: never a file another process wrote after ours was taken as stale.
    if (readHolder(file)?.pid === process.pid) unlinkSync(file);
  };
  process.on('exit', release);
  return release;
}

/**
 * The hub store of a CLI command: PostgreSQL when configured, else the embedded store, claimed
 * for this process first and released when the handle is closed.
 */
export async function openStore(config: HubConfig, poolSize?: number): Promise<HubDb> {
  if (config.databaseUrl) return openHubDb({ databaseUrl: config.databaseUrl, poolSize });
  const release = claimEmbeddedStore(config.dataDir);
  let db: HubDb;
  try {
    db = await openHubDb({ dataDir: config.dataDir, poolSize });
  } catch (error) {
    release();
    throw error;
  }
  const close = db.close.bind(db);
  // The claim ends with the handle: the next command may open the store as soon as this one closed it.
  db.close = async () => {
    try {
      await close();
    } finally {
      release();
    }
  };
  return db;
}
