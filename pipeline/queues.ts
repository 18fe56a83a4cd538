/**
 * The pipeline's queues on Redis (BullMQ). Why partitions: messages of one patient must be applied
 * in the order they arrived, while different patients run in parallel. BullMQ's group feature is
 * paid, so we hash member+MRN onto N ordinary queues and give each queue a *global* concurrency of 1
 * (BullMQ's open-source Queue.setGlobalConcurrency): whatever the number of worker processes, one
 * job per partition runs at a time, in FIFO order. N bounds the parallelism (default 16; 2 cores
 * need far fewer). Messages without a patient are spread by their raw id.
 */
import { Job, Queue } from 'bullmq';
import os from 'node:os';
import { deleteKeys, prefixProblem, redisConnection, scanKeys, valueAndRunId, type RedisConnection } from '../hub/redis';
import { HubError } from '../mappings/outcome';

export interface PipelineJob {
  rawId: number;
}

export interface QueueOptions {
  /** A single Redis or a `redis+cluster://` URL (hub/redis.ts). */
  redisUrl: string;
  prefix: string;
  partitions: number;
  attempts: number;
  backoffMs: number;
}

export interface EnqueueItem {
  rawId: number;
  patientKey: string | null;
}

/** FNV-1a: stable across processes and releases (a partition must not move when code changes). */
export function partitionOf(key: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

export function partitionQueueName(partition: number): string {
  return `pipeline-p${partition}`;
}

export class PipelineQueues {
  readonly queues: Queue<PipelineJob>[];
  /** Shared by the producers of every partition (non-blocking commands only). */
  readonly redis: RedisConnection;
  /** The Redis server (run id) the last redisLostState() saw: markRedisRestored() vouches for that one only. */
  private checkedRunId?: string;
  /** BullMQ's client of the partition queues (one connection for all), once it has been resolved. */
  private client?: Awaited<Queue<PipelineJob>['backend']['client']>;

  constructor(readonly options: QueueOptions) {
    const problem = prefixProblem(options.redisUrl, options.prefix);
    if (problem) throw new HubError('invalid', problem, 'pipeline.queuePrefix');
    this.redis = redisConnection(options.redisUrl);
    this.queues = Array.from(
      { length: options.partitions },
      (_, p) =>
        new Queue<PipelineJob>(partitionQueueName(p), {
          connection: this.redis,
          prefix: options.prefix,
          defaultJobOptions: {
            attempts: options.attempts,
            backoff: { type: 'exponential', delay: options.backoffMs },
            // The raw store keeps the history; Redis keeps only work in progress.
            removeOnComplete: true,
            // Dead letters live in the quarantine table. A failed job left in Redis would keep its id
            // `raw-<id>` and make the reconciler's re-add a no-op if the dead-letter write itself failed.
            removeOnFail: true,
          },
        }),
    );
    // A Queue is an EventEmitter: unhandled, a connection error while Redis is away would end the
    // process. The commands themselves wait for the reconnect (hub/redis.ts), so nothing is lost here.
    for (const queue of this.queues) queue.on('error', () => undefined);
    // Known before the first hand-over, so that enqueue() writes its jobs without waiting (see there).
    this.queues[0]!.backend.client.then(
      (client) => (this.client ??= client),
      () => undefined, // a connection that never comes up fails the commands themselves
    );
  }

  partitionFor(item: EnqueueItem): number {
    return partitionOf(item.patientKey ?? `raw:${item.rawId}`, this.options.partitions);
  }

  /**
   * Add jobs in the given order. `jobId` is `raw-<id>`: adding a message that is already waiting is a
   * no-op (the reconciler relies on that). Replays pass a suffix so a finished job id cannot block them.
   * All partitions go in one Redis pipeline — one socket write and one round trip per call — where
   * `addBulk` per partition made a pipeline each (ioredis copies every loaded script into each
   * pipeline) and wrote once per partition, about once per message on the MLLP path: one pipeline
   * cut the listener's CPU per ACKed message by 19–24 % (bench/RESULTS.md, MLLP). Each job is still
   * BullMQ's own `addJob` script on its partition's keys, so ids, options and order within a
   * partition are as with `addBulk`.
   * Under a Redis Cluster the prefix carries a hash tag (prefixProblem), so every key of every
   * partition is in one slot and one pipeline may hold them all.
   */
  async enqueue(items: EnqueueItem[], jobIdSuffix = ''): Promise<void> {
    if (items.length === 0) return;
    // Once the client is known the jobs are written before this returns its promise: the intake
    // hands a group over before it lets the ACKs go (adapters/intake.ts settle()).
    const client = this.client ?? (this.client = await this.queues[0]!.backend.client);
    const pipeline = client.pipeline();
    const added: Array<Promise<string>> = [];
    for (const item of items) {
      const queue = this.queues[this.partitionFor(item)]!;
      const jobId = `raw-${item.rawId}${jobIdSuffix}`;
      const job = new Job<PipelineJob>(queue, 'message', { rawId: item.rawId }, { ...queue.jobsOpts, jobId }, jobId);
      // Settles once the pipeline has run; its rejection (a script's error code) is read below.
      const result = job.addJob(pipeline);
      result.catch(() => undefined);
      added.push(result);
    }
    const replies = await pipeline.exec();
    if (!replies) throw new Error('the Redis pipeline of an enqueue was discarded');
    for (const [error] of replies) if (error) throw error;
    await Promise.all(added);
  }

  /** One active job per partition across all workers: the per-patient order guarantee. Idempotent; re-applied after Redis loses its data. */
  async enforceOrdering(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.setGlobalConcurrency(1)));
  }

  /**
   * Detects a Redis that may have lost data: restart without persistence (our epoch key is gone),
   * and any change of the server holding our keys — a restart, or a failover to a replica, which
   * lacks whatever the old master acknowledged but had not yet replicated (replication is
   * asynchronous). The epoch key holds the run id of the server the reconciler last swept for.
   */
  async redisLostState(): Promise<boolean> {
    const { value, runId } = await valueAndRunId(this.redis, this.epochKey());
    this.checkedRunId = runId;
    return value !== runId;
  }

  /**
   * Set once everything Redis lost has been put back: a sweep cut short is redone at the next
   * check, and so is one during which the server changed again (the script records the server
   * that was checked, and only if it still holds the key).
   */
  async markRedisRestored(): Promise<void> {
    if (!this.checkedRunId) await this.redisLostState();
    await this.redis.eval(MARK_EPOCH, 1, this.epochKey(), this.checkedRunId!);
  }

  private epochKey(): string {
    return `${this.options.prefix}:epoch`;
  }

  async depths(): Promise<Record<'waiting' | 'active' | 'delayed' | 'failed' | 'prioritized', number>> {
    const totals = { waiting: 0, active: 0, delayed: 0, failed: 0, prioritized: 0 };
    const counts = await Promise.all(this.queues.map((q) => q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized')));
    for (const c of counts) for (const k of Object.keys(totals) as Array<keyof typeof totals>) totals[k] += c[k] ?? 0;
    return totals;
  }

  /**
   * Worker processes of this hub: those whose heartbeat (beat()) has not run out, in the registry
   * under this prefix in this Redis database. Not BullMQ's getWorkers(): it reads CLIENT LIST, which
   * is server-wide, so two hubs on one Redis server (another database, the same prefix) counted each
   * other's workers and `yilian ingest` waited for work nobody took. One sorted set (member: the
   * worker, score: when its heartbeat runs out, on the Redis server's clock) rather than a key per
   * worker: counting those scanned the whole keyspace — a backlog's million job keys — every
   * heartbeat of every worker.
   */
  async workerCount(): Promise<number> {
    return Number(await this.redis.eval(COUNT_WORKERS, 1, this.workersKey()));
  }

  /** A worker says it is alive for the next `ttlMs`; endBeat() removes it when it stops. Returns the live workers. */
  async beat(workerId: string, ttlMs: number): Promise<number> {
    return Number(await this.redis.eval(BEAT, 1, this.workersKey(), registryEntry(workerId), ttlMs));
  }

  async endBeat(workerId: string): Promise<void> {
    await this.redis.zrem(this.workersKey(), registryEntry(workerId));
  }

  private workersKey(): string {
    return `${this.options.prefix}:workers`;
  }

  /** Delete every key under this prefix (queues, events, epoch): for retiring a prefix, and for tests and benchmarks that share a Redis. */
  async removeAllKeys(): Promise<void> {
    await deleteKeys(this.redis, await scanKeys(this.redis, `${this.options.prefix}:*`));
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()));
    this.redis.disconnect();
  }
}

/** A worker in the registry: its id, and where it runs for whoever reads the set (ZRANGE). */
function registryEntry(workerId: string): string {
  return `${workerId}@${os.hostname()}:${process.pid}`;
}

/** Redis's own clock for heartbeats: workers on several machines need not agree on the time. */
const NOW_MS = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// The registry expires with the heartbeat that runs out last, so a retired prefix leaves nothing behind.
const BEAT = `${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return redis.call('ZCARD', KEYS[1])`;

const COUNT_WORKERS = `${NOW_MS}
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')`;

const MARK_EPOCH = `
local info = redis.call('INFO', 'server')
if string.match(info, 'run_id:(%x+)') == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`;
