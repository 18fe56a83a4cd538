/**
 * A pipeline worker: one BullMQ Worker per partition queue, each with concurrency 1 (the queues'
 * global concurrency of 1 keeps per-patient order across processes). Run as many `yilian worker`
 * processes as wanted, on any machine that reaches Redis and PostgreSQL. close() is graceful:
 * in-flight jobs finish; a killed worker's jobs are detected as stalled and run again (idempotent).
 *
 * A job is one message, but a worker that takes one also runs the jobs waiting behind it in its
 * partition, up to BATCH (`runBatch`: one read, one link step for all), then removes them: while
 * the job is active no other worker can take them (global concurrency 1), so order holds, and if
 * the worker dies first they are still queued and run again as `already-done` where merged.
 */
import { syncTerminology } from '../hub/terminology/versions';
import { startTerminologySync } from '../hub/terminology/reprocess';
import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import { partitionQueueName, type PipelineJob, type PipelineQueues } from './queues';
import { redisConnection, type RedisConnection } from '../hub/redis';
import { Reconciler } from './reconciler';
import { postgresAnswers } from '../hub/probe';
import { runBatch, type RunnerContext, type RunOutcome } from './runner';

/** A worker whose heartbeat is this old is no longer counted (it beats three times as often). */
const HEARTBEAT_TTL_MS = 15_000;

const STORE_PROBE_MS = 500;
/** A store that does not answer a trivial query within this is away (a pool connect may wait far longer). */
const STORE_ANSWER_MS = 1000;
const storeAnswers = async (db: RunnerContext['db']) => (await postgresAnswers(db, STORE_ANSWER_MS)) === undefined;

/**
 * How long a process holding more than its share of busy partitions leaves one of them to the
 * others (`yieldIfOverShare`): long enough for a waiting process to take the partition's next job.
 */
const YIELD_MS = 500;

/** Messages per batch, the taken job's included. */
const BATCH = 64;
const JOB_RAW_ID = /^raw-(\d+)(?:-|$)/;


export interface WorkerOptions {
  /** Lock on an active job; a worker that stops renewing it (killed) loses the job after this. */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  reconcile?: boolean;
  log?: (text: string) => void;
  /** Called after each job (tests and `ingest` wait on progress with it). */
  onProcessed?: (rawId: number, outcome: RunOutcome) => void;
}

export class PipelineWorker {
  private readonly workers: Worker<PipelineJob>[] = [];
  private readonly connection: RedisConnection;
  private reconciler?: Reconciler;
  private stopTerminologySync?: () => void;
  private heartbeat?: NodeJS.Timeout;
  private closing = false;
  private readonly id = randomUUID();
  /** Partitions whose job this process is running now. */
  private readonly busy = new Set<number>();
  /** Partitions this process paused to leave to another (`yieldIfOverShare`), until their job has completed. */
  private readonly yielded = new Set<number>();
  /** Worker processes of this hub, as of this process's last heartbeat or share check. */
  private liveWorkers = 1;

  constructor(
    private readonly ctx: RunnerContext,
    private readonly queues: PipelineQueues,
    private readonly options: WorkerOptions = {},
  ) {
    this.connection = redisConnection(queues.options.redisUrl);
  }

  async start(): Promise<void> {
    await this.queues.enforceOrdering();
    // approved maps (hub/terminology/versions.ts) reach this process before its first job, then every 5 s
    await syncTerminology(this.ctx.db);
    this.stopTerminologySync = startTerminologySync(this.ctx.db, 5000, this.options.log);
    const { prefix, partitions, attempts } = this.queues.options;
    for (let p = 0; p < partitions; p++) {
      const worker = new Worker<PipelineJob>(partitionQueueName(p), (job) => this.process(job, p, attempts), {
        connection: this.connection,
        prefix,
        concurrency: 1,
        lockDuration: this.options.lockDurationMs ?? 15_000,
        stalledInterval: this.options.stalledIntervalMs ?? 5_000,
        maxStalledCount: 10,
      });
      worker.on('error', (error) => this.options.log?.(`worker p${p}: ${error.message}`));
      const handedOver = () => {
        if (this.yielded.delete(p)) void this.wakeOthers(p);
      };
      worker.on('completed', handedOver);
      worker.on('failed', handedOver);
      this.workers.push(worker);
    }
    // Heartbeat, so that `status` and `ingest` count this hub's workers only (queues.workerCount).
    const beat = () =>
      this.queues
        .beat(this.id, HEARTBEAT_TTL_MS)
        .then((live) => {
          this.liveWorkers = Math.max(1, live);
        })
        .catch((error: Error) => this.options.log?.(`worker heartbeat: ${error.message}`));
    await beat();
    this.heartbeat = setInterval(() => void beat(), HEARTBEAT_TTL_MS / 3);
    this.heartbeat.unref();
    if (this.options.reconcile !== false) {
      this.reconciler = new Reconciler(this.ctx.db, this.queues, { log: this.options.log });
      this.reconciler.start();
    }
  }

  private async process(job: Job<PipelineJob>, partition: number, attempts: number): Promise<RunOutcome> {
    this.busy.add(partition);
    try {
      return await this.runJob(job, partition, attempts);
    } finally {
      // A failure here must not fail the job: the partition just stays with this process.
      await this.yieldIfOverShare(partition).catch((error: Error) => this.options.log?.(`worker p${partition}: fair share: ${error.message}`));
      this.busy.delete(partition);
    }
  }

  /**
   * BullMQ gives a partition's next job to the worker that completes the last one, in the same
   * Redis call (fetch-next), and the queue's global concurrency of 1 keeps everyone else out: a
   * process started behind a backlog would get a partition only when one ran dry. So a process
   * running more partitions than its share (partitions / live workers, rounded up) pauses this
   * partition's Worker before the job completes (the completion then fetches nothing) and resumes
   * it YIELD_MS later, by when a waiting process has taken the partition's next job. Order holds:
   * still one job of a partition at a time. A process that would be over its share with one more
   * worker counts the workers again (one ZCOUNT), so a newcomer is seen at the next job.
   */
  private async yieldIfOverShare(partition: number): Promise<void> {
    const partitions = this.queues.options.partitions;
    if (this.closing || this.busy.size <= Math.ceil(partitions / (this.liveWorkers + 1))) return;
    this.liveWorkers = Math.max(1, await this.queues.workerCount());
    if (this.liveWorkers < 2 || this.busy.size <= Math.ceil(partitions / this.liveWorkers)) return;
    const worker = this.workers[partition]!;
    await worker.pause(true); // true: not waiting for the active job, which is this one
    this.yielded.add(partition);
    setTimeout(() => {
      if (!this.closing) void worker.resume(); // resume reports its own failures as the Worker's 'error'
    }, YIELD_MS).unref();
  }

  /**
   * The yielded job has completed, fetching nothing, and every Worker of the partition (the other
   * processes', and this one's once it resumes) is asleep on its marker, which only an add sets:
   * the partition would stand still until one of them polls again (BullMQ's drainDelay, 5 s, ten
   * times the yield) — a second process joined a backlog 5.7 s late (bench/RESULTS.md). Setting the
   * marker as an add does (`ZADD marker 0 "0"`) wakes one of them now.
   */
  private async wakeOthers(partition: number): Promise<void> {
    try {
      await this.queues.redis.zadd(this.queues.queues[partition]!.keys.marker!, 0, '0');
    } catch (error) {
      this.options.log?.(`worker p${partition}: waking the other workers: ${(error as Error).message}`); // they poll anyway
    }
  }

  private async runJob(job: Job<PipelineJob>, partition: number, attempts: number): Promise<RunOutcome> {
    // A retried job runs alone: its attempts are its own, and a final one must not dead-letter
    // messages that never failed.
    const behind = job.attemptsMade === 0 ? await this.waitingBehind(partition, job.id) : [];
    const rawIds = [job.data.rawId, ...behind.map((b) => b.rawId)];
    for (;;) {
      try {
        const outcomes = await runBatch(this.ctx, rawIds, job.attemptsMade + 1 >= attempts, this.options.onProcessed);
        await this.removeRun(partition, behind.map((b) => b.jobId));
        return outcomes.get(job.data.rawId)!;
      } catch (error) {
        // PostgreSQL away (a restart, a failover) is no message's fault: the job waits for it and
        // runs again without spending one of its attempts — else a long outage would dead-letter
        // every message it met as `exhausted`. Any other failure is the job's, retried by BullMQ.
        if (this.closing || (await storeAnswers(this.ctx.db))) throw error;
        this.options.log?.(`worker: PostgreSQL does not answer (${(error as Error).message}); raw ${job.data.rawId} waits for it`);
        while (!this.closing && !(await storeAnswers(this.ctx.db))) await new Promise((r) => setTimeout(r, STORE_PROBE_MS));
      }
    }
  }

  /**
   * The jobs next in line in this partition (the wait list's right end is its head), oldest first:
   * one LRANGE of their ids (`raw-<id>`, a replay's with a suffix).
   */
  private async waitingBehind(partition: number, taken?: string): Promise<Array<{ jobId: string; rawId: number }>> {
    const queue = this.queues.queues[partition]!;
    const ids = await this.queues.redis.lrange(queue.keys.wait!, -(BATCH - 1), -1);
    return ids.reverse().flatMap((jobId) => {
      const m = JOB_RAW_ID.exec(jobId);
      return m && jobId !== taken ? [{ jobId, rawId: Number(m[1]) }] : [];
    });
  }

  /** The jobs a batch ran besides its own. One that could not be removed (taken meanwhile) runs as `already-done`. */
  private async removeRun(partition: number, jobIds: string[]): Promise<void> {
    const queue = this.queues.queues[partition]!;
    await Promise.all(jobIds.map((id) => queue.remove(id)));
  }

  /** Stop taking jobs and wait for the ones in flight. */
  async close(): Promise<void> {
    this.closing = true;
    this.reconciler?.stop();
    this.stopTerminologySync?.();
    clearInterval(this.heartbeat);
    await Promise.all(this.workers.map((w) => w.close()));
    await this.queues.endBeat(this.id).catch(() => undefined); // gone anyway once its TTL runs out
    this.connection.disconnect();
  }
}
