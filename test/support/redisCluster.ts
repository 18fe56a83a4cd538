/**
 * A private Redis Cluster for a test or a benchmark: `masters` redis-server processes with
 * `--cluster-enabled yes` and `replicas` replicas each, on free local ports, joined with
 * `redis-cli --cluster create … --cluster-replicas N`. Each node has its own temporary directory
 * (append-only file on). stop() kills every node it started, by pid, and removes the directories.
 * startPrivateRedis(): one node with the same settings but no cluster, the peer for benchmarks.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

export interface ClusterNodeProcess {
  port: number;
  dir: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<void>;
}

/** One line of CLUSTER NODES. */
export interface ClusterNodeInfo {
  id: string;
  port: number;
  flags: string[];
  masterId: string | null;
  slots: Array<[number, number]>;
}

/** Free on 127.0.0.1 both as `port` and as its cluster bus port (`port` + 10000). */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  const canListen = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    if (taken.has(port) || taken.has(port + 10_000) || taken.has(port - 10_000)) continue;
    if ((await canListen(port)) && (await canListen(port + 10_000))) return port;
  }
  throw new Error('no free port pair for a cluster node');
}

async function pollUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A one-shot command to one node (no reconnects: a dead node fails at once). */
export async function nodeCommand(port: number, ...args: string[]): Promise<string> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return String(await client.call(args[0]!, ...args.slice(1)));
  } finally {
    client.disconnect();
  }
}

export function parseClusterNodes(text: string): ClusterNodeInfo[] {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.split(' ');
      const slots: Array<[number, number]> = [];
      for (const s of f.slice(8)) {
        if (s.startsWith('[')) continue; // a slot being migrated
        const [a, b] = s.split('-').map(Number);
        slots.push([a!, b ?? a!]);
      }
      return { id: f[0]!, port: Number(f[1]!.split('@')[0]!.split(':').pop()), flags: f[2]!.split(','), masterId: f[3] === '-' ? null : f[3]!, slots };
    });
}

export class RedisClusterProcesses {
  readonly nodes: ClusterNodeProcess[] = [];

  private constructor(private readonly nodeTimeoutMs: number) {}

  /** Starts the nodes, creates the cluster and waits until every node says cluster_state:ok. */
  static async start(options: { masters?: number; replicas?: number; nodeTimeoutMs?: number } = {}): Promise<RedisClusterProcesses> {
    const masters = options.masters ?? 3;
    const replicas = options.replicas ?? 1;
    const cluster = new RedisClusterProcesses(options.nodeTimeoutMs ?? 3000);
    try {
      const taken = new Set<number>();
      for (let i = 0; i < masters * (1 + replicas); i++) {
        const port = await freeClusterPort(taken);
        taken.add(port);
        cluster.nodes.push(cluster.startNode(port));
      }
      await Promise.all(cluster.nodes.map((n) => pollUntil(async () => (await nodeCommand(n.port, 'PING')) === 'PONG', 15_000, `cluster node ${n.port} up`)));
      const create = spawnSync(
        'redis-cli',
        ['--cluster', 'create', ...cluster.nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
        { encoding: 'utf8', timeout: 120_000 },
      );
      if (create.status !== 0) throw new Error(`redis-cli --cluster create failed (${create.status}): ${create.stdout}\n${create.stderr}`);
      await cluster.waitHealthy(60_000);
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /** One node with the same settings, not clustered (startPrivateRedis). */
  static async startSingle(): Promise<RedisClusterProcesses> {
    const single = new RedisClusterProcesses(0);
    const port = await freeClusterPort(new Set());
    single.nodes.push(single.startNode(port, false));
    try {
      await pollUntil(async () => (await nodeCommand(port, 'PING')) === 'PONG', 15_000, `redis-server ${port} up`);
    } catch (error) {
      await single.stop();
      throw error;
    }
    return single;
  }

  private startNode(port: number, clusterEnabled = true): ClusterNodeProcess {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-rcluster-'));
    const child = spawn(
      'redis-server',
      [
        '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
        ...(clusterEnabled ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(this.nodeTimeoutMs)] : []),
        '--appendonly', 'yes', '--save', '',
        // Replicas take their first copy over the socket at once (no RDB file, no 5 s delay).
        '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout?.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-20_000)));
    child.stderr?.on('data', (c: Buffer) => (out = (out + c.toString()).slice(-20_000)));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    void exited.then(() => rmSync(dir, { recursive: true, force: true }));
    return { port, dir, child, output: () => out, exited };
  }

  /** `redis+cluster://` URL with every node as a seed (hub/redis.ts). */
  get url(): string {
    return `redis+cluster://${this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`;
  }

  alive(): ClusterNodeProcess[] {
    return this.nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
  }

  /** CLUSTER NODES as one living node sees it. */
  async clusterNodes(fromPort = this.alive()[0]!.port): Promise<ClusterNodeInfo[]> {
    return parseClusterNodes(await nodeCommand(fromPort, 'CLUSTER', 'NODES'));
  }

  /** Every living node answers cluster_state:ok, and (seen from each) every slot has a master not flagged failing. */
  async healthy(): Promise<boolean> {
    for (const n of this.alive()) {
      if (!/cluster_state:ok/.test(await nodeCommand(n.port, 'CLUSTER', 'INFO'))) return false;
    }
    return true;
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    await pollUntil(() => this.healthy(), timeoutMs, 'cluster_state:ok on every node');
  }

  /** The master serving `key`'s slot, and its replicas. */
  async ownerOf(key: string): Promise<{ slot: number; master: ClusterNodeInfo; replicas: ClusterNodeInfo[] }> {
    const port = this.alive()[0]!.port;
    const slot = Number(await nodeCommand(port, 'CLUSTER', 'KEYSLOT', key));
    const nodes = await this.clusterNodes(port);
    const master = nodes.find((n) => n.flags.includes('master') && !n.flags.includes('fail') && n.slots.some(([a, b]) => slot >= a && slot <= b));
    if (!master) throw new Error(`no master serves slot ${slot}`);
    return { slot, master, replicas: nodes.filter((n) => n.masterId === master.id) };
  }

  /** SIGKILL the node on `port` (no shutdown, no last writes flushed) and wait for its exit. */
  async kill9(port: number): Promise<void> {
    const node = this.nodes.find((n) => n.port === port)!;
    node.child.kill('SIGKILL');
    await node.exited;
  }

  /** Kills every node this object started (by its pid) and removes their directories. */
  async stop(): Promise<void> {
    await Promise.all(
      this.alive().map(async (n) => {
        n.child.kill('SIGKILL');
        await n.exited;
      }),
    );
    for (const n of this.nodes) rmSync(n.dir, { recursive: true, force: true });
  }
}

/** One private redis-server with the cluster nodes' settings (append-only file on), not clustered. */
export async function startPrivateRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const single = await RedisClusterProcesses.startSingle();
  return { url: `redis://127.0.0.1:${single.nodes[0]!.port}`, stop: () => single.stop() };
}
