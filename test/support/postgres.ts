/**
 * A private PostgreSQL cluster for one test: Debian's server binaries (/usr/lib/postgresql/<version>/bin,
 * the newest installed version), a data directory and unix socket directory in a temp dir, a free
 * TCP port on 127.0.0.1. A test may fast-stop it, start it again on the same port and data, crash it
 * (immediate stop) and finally destroy it. The shared server on 5432 is never touched.
 *
 * initdb and postgres refuse to run as root: when this process is root, every server command runs
 * as the `postgres` system user (runuser) and the temp dir is handed to that user.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './processes';

const run = promisify(execFile);

/** Every cluster started in this test process, so stopAllClusters() (afterAll) can stop exactly those. */
const live = new Set<PostgresCluster>();

/** bin directory of the newest PostgreSQL major version installed the Debian way. */
export function postgresBinDir(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => /^\d+$/.test(v) && existsSync(path.join(base, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries under ${base}/<version>/bin: install the Debian package postgresql`);
  return path.join(base, versions[0]!, 'bin');
}

/** The system user the server runs as when we are root (initdb: "cannot be run as root"). */
function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root and there is no `postgres` user to run a private PostgreSQL cluster as');
  const [, , uid, gid] = line.split(':');
  return { name: 'postgres', uid: Number(uid), gid: Number(gid) };
}

export class PostgresCluster {
  /** Set when the server was last started (pg_ctl start returned), for recovery timings. */
  startedAt = 0;
  private running = false;

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly bin: string,
    private readonly user: { name: string; uid: number; gid: number } | undefined,
  ) {}

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  get socketDir(): string {
    return path.join(this.dir, 'sock');
  }

  get logFile(): string {
    return path.join(this.dir, 'server.log');
  }

  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** initdb a new cluster in a temp dir and start it on a free port. */
  static async create(label = 'test'): Promise<PostgresCluster> {
    const user = serverUser();
    const dir = mkdtempSync(path.join(os.tmpdir(), `yilian-pg-${label.replace(/\W/g, '_')}-`));
    if (user) chownSync(dir, user.uid, user.gid);
    const cluster = new PostgresCluster(dir, await freePort(), postgresBinDir(), user);
    live.add(cluster);
    try {
      await cluster.exec('mkdir', ['-p', cluster.socketDir]);
      // --no-sync: a test cluster need not survive a power cut, and initdb's fsync of ~1,000 files takes seconds.
      await cluster.exec(path.join(cluster.bin, 'initdb'), ['-D', cluster.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
      await cluster.start();
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  /** Run a command, as the server user when we are root. */
  private async exec(file: string, args: string[], timeoutMs = 120_000): Promise<string> {
    const [cmd, argv] = this.user ? ['runuser', ['-u', this.user.name, '--', file, ...args]] : [file, args];
    try {
      const { stdout, stderr } = await run(cmd, argv, { timeout: timeoutMs, encoding: 'utf8' });
      return stdout + stderr;
    } catch (error) {
      const e = error as Error & { stdout?: string; stderr?: string };
      throw new Error(`${path.basename(file)} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}\nserver log tail:\n${this.logTail()}`);
    }
  }

  /**
   * pg_ctl start (waits until the server accepts connections). fsync=off: the tests kill processes,
   * never the machine, so the OS keeps what was written and fsync would only slow a busy CI box;
   * synchronous_commit stays on, so a commit the hub ACKs is in the WAL (OS cache) before the ACK,
   * and an immediate stop (crash) loses none of it.
   */
  async start(): Promise<void> {
    const options = [
      `-p ${this.port}`,
      `-c listen_addresses=127.0.0.1`,
      `-c unix_socket_directories=${this.socketDir}`,
      '-c fsync=off',
      '-c full_page_writes=off',
      '-c max_connections=200',
      '-c shared_buffers=64MB',
    ].join(' ');
    await this.exec(path.join(this.bin, 'pg_ctl'), ['start', '-w', '-t', '120', '-D', this.dataDir, '-l', this.logFile, '-o', options]);
    this.running = true;
    this.startedAt = Date.now();
  }

  /** pg_ctl stop -m fast: clients are disconnected, the server shuts down cleanly. */
  async stopFast(): Promise<void> {
    await this.exec(path.join(this.bin, 'pg_ctl'), ['stop', '-w', '-t', '120', '-m', 'fast', '-D', this.dataDir]);
    this.running = false;
  }

  /** pg_ctl stop -m immediate: the server quits without a shutdown checkpoint, like a crash (recovery on the next start). */
  async crash(): Promise<void> {
    await this.exec(path.join(this.bin, 'pg_ctl'), ['stop', '-w', '-t', '60', '-m', 'immediate', '-D', this.dataDir]);
    this.running = false;
  }

  /** A database of its own on this cluster; returns its URL. */
  async createDatabase(name: string): Promise<string> {
    const admin = new pg.Client({ connectionString: this.url() });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    return this.url(name);
  }

  /** The last lines of the server log (for failure messages). */
  logTail(lines = 40): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no server log)';
    }
  }

  /** The postmaster's pid from its pid file, if one is there. */
  private postmasterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Stop the server whatever its state (immediate; SIGKILL of its postmaster if pg_ctl fails) and remove its files. */
  async destroy(): Promise<void> {
    const pid = this.postmasterPid();
    if (pid !== undefined) {
      try {
        await this.exec(path.join(this.bin, 'pg_ctl'), ['stop', '-w', '-t', '30', '-m', 'immediate', '-D', this.dataDir], 40_000);
      } catch {
        // pg_ctl could not stop it: kill our own postmaster by its pid (never anything by name).
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    this.running = false;
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

/** Destroy every cluster this test process started and has not destroyed yet (for afterAll). */
export async function stopAllClusters(): Promise<void> {
  for (const cluster of [...live]) await cluster.destroy();
}
