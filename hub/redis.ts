/**
 * Every Redis connection the hub opens comes from redisConnection(): the partition queues and their
 * workers, heartbeats, the reconciler's epoch, console sessions and login lockout. One setting says
 * where Redis is (`redisUrl`, REDIS_URL):
 *   - a single Redis: `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS), or a unix socket path;
 *   - a Redis Cluster: `redis+cluster://[user:password@]host:port,host:port,…` (`rediss+cluster://` for
 *     TLS). The nodes are seeds: ioredis learns the others (and every failover) from CLUSTER SLOTS,
 *     so two or three are enough. One string, so REDIS_URL, child processes and compose files carry
 *     a cluster the same way as a single Redis.
 * On a cluster, BullMQ's scripts touch several keys of one queue, which must share a hash slot: the
 * queue prefix must hold a hash tag (`{yilian}`), which also puts the hub's own keys (heartbeats,
 * epoch, sessions) in that slot. See docs/scaling.md "Redis Cluster".
 */
import { Cluster, Redis } from 'ioredis';
import { HubError } from '../mappings/outcome';

export type RedisConnection = Redis | Cluster;

export interface ClusterTarget {
  nodes: Array<{ host: string; port: number }>;
  username?: string;
  password?: string;
  tls: boolean;
}

const CLUSTER_SCHEME = /^(rediss?)\+cluster:\/\/(.*)$/i;

/** The cluster a `redis+cluster://` URL names; undefined for a single Redis. Throws on a malformed cluster URL. */
export function clusterTarget(url: string): ClusterTarget | undefined {
  const match = CLUSTER_SCHEME.exec(url.trim());
  if (!match) return undefined;
  let rest = match[2]!.replace(/\/+$/, '');
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userinfo.indexOf(':');
    username = decodeURIComponent(colon >= 0 ? userinfo.slice(0, colon) : userinfo) || undefined;
    password = colon >= 0 ? decodeURIComponent(userinfo.slice(colon + 1)) : undefined;
  }
  const nodes = rest.split(',').map((hostPort) => {
    let parsed: URL;
    try {
      parsed = new URL(`redis://${hostPort.trim()}`);
    } catch {
      throw new HubError('invalid', `Redis Cluster URL: "${hostPort}" is not host:port`, 'redisUrl');
    }
    if (!parsed.hostname || parsed.pathname.replace(/^\/$/, '') || parsed.search) throw new HubError('invalid', `Redis Cluster URL: "${hostPort}" is not host:port (a cluster has no database number)`, 'redisUrl');
    return { host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(parsed.port || 6379) };
  });
  return { nodes, username, password, tls: match[1]!.toLowerCase() === 'rediss' };
}

/** Why `prefix` cannot be used on the Redis `url` names (a cluster needs a hash tag), or undefined. */
export function prefixProblem(url: string, prefix: string): string | undefined {
  if (!clusterTarget(url)) return undefined;
  if (/\{[^}]+\}/.test(prefix)) return undefined;
  return `on a Redis Cluster the queue prefix must hold a hash tag, e.g. "{${prefix}}" (BullMQ's scripts touch several keys of a queue, which must share a slot); pipeline.queuePrefix is "${prefix}"`;
}

/**
 * A connection as BullMQ wants it: commands wait for a reconnect (or, on a cluster, for a replica's
 * promotion) instead of failing after 20 retries, so a Redis restart or failover delays work rather
 * than losing it. What Redis itself lost, the reconciler restores from the raw store.
 */
export function redisConnection(url: string): RedisConnection {
  const cluster = clusterTarget(url);
  const client = cluster
    ? new Cluster(cluster.nodes, {
        redisOptions: {
          username: cluster.username,
          password: cluster.password,
          tls: cluster.tls ? {} : undefined,
          maxRetriesPerRequest: null,
          enableReadyCheck: true,
        },
        enableReadyCheck: true,
        // Seeds unreachable (the whole cluster restarting): keep trying, as for a single Redis.
        clusterRetryStrategy: (times) => Math.min(times * 100, 2000),
        // A master killed: its slots answer "connection closed", then CLUSTERDOWN until a replica is
        // promoted (cluster-node-timeout, 15 s by default, plus the election). 60 tries 500 ms apart
        // ride that out; a command still failing after it is retried by BullMQ, and a lost enqueue is
        // put back by the reconciler.
        retryDelayOnFailover: 500,
        retryDelayOnClusterDown: 500,
        retryDelayOnTryAgain: 500,
        maxRedirections: 60,
        slotsRefreshTimeout: 2000,
      })
    : new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: (times) => Math.min(times * 100, 2000) });
  client.on('error', () => undefined); // reconnects on its own; errors surface on the commands
  return client;
}

/** Keys matching `pattern`: SCAN on a single Redis, on every master of a cluster (SCAN is per node). */
export async function scanKeys(redis: RedisConnection, pattern: string): Promise<string[]> {
  // A cluster knows its masters once connected: a command waits for that (an empty list would count nothing).
  if (redis instanceof Cluster && redis.status !== 'ready') await redis.ping();
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const keys: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      keys.push(...found);
      cursor = next;
    } while (cursor !== '0');
  }
  return keys;
}

/** Delete keys; on a cluster one command per key (a multi-key DEL must not span slots). */
export async function deleteKeys(redis: RedisConnection, keys: string[]): Promise<void> {
  if (!keys.length) return;
  if (!(redis instanceof Cluster)) {
    for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
    return;
  }
  for (let i = 0; i < keys.length; i += 200) await Promise.all(keys.slice(i, i + 200).map((key) => redis.del(key)));
}

/**
 * The run id of the Redis server that holds `key` (on a cluster, the master of its slot), read in
 * the same script as the key's value. A restart or a failover to a replica changes it: the new
 * server may lack the last writes the old one acknowledged (replication is asynchronous).
 */
const VALUE_AND_RUN_ID = `
local info = redis.call('INFO', 'server')
return { redis.call('GET', KEYS[1]) or '', string.match(info, 'run_id:(%x+)') }`;

export async function valueAndRunId(redis: RedisConnection, key: string): Promise<{ value: string | null; runId: string }> {
  const [value, runId] = (await redis.eval(VALUE_AND_RUN_ID, 1, key)) as [string, string];
  return { value: value === '' ? null : value, runId };
}
