/**
 * A pipeline worker: one BullMQ Worker per partition queue, each with concurrency 1 (the queues'
 * global concurrency of 1 keeps per-patient order across processes). Run as many `yilian worker`
 * processes as wanted, on any machine that reaches Redis and PostgreSQL. close() is graceful:
 * in-flight jobs finish; a killed worker's jobs are detected as stalled and run again (idempotent).
 */
import { syncTerminology } from '../hub/terminology/versions';
import { startTerminologySync } from '../hub/terminology/reprocess';
import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import { partitionQueueName, type PipelineJob, type PipelineQueues } from './queues';
import { redisConnection, type RedisConnection } from '../hub/redis';
import { Reconciler } from './reconciler';
import { postgresAnswers } from '../hub/probe';
import { runPipeline, type RunnerContext, type RunOutcome } from './runner';

/** A worker whose heartbeat is this old is no longer counted (it beats three times as often). */
const HEARTBEAT_TTL_MS = 15_000;

const STORE_PROBE_MS = 500;
/** A store that does not answer a trivial query within this is away (a pool connect may wait far longer). */
const STORE_ANSWER_MS = 1000;
const storeAnswers = async (db: RunnerContext['db']) => (await postgresAnswers(db, STORE_ANSWER_MS)) === undefined;


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
      const worker = new Worker<PipelineJob>(partitionQueueName(p), (job) => this.process(job, attempts), {
        connection: this.connection,
        prefix,
        concurrency: 1,
        lockDuration: this.options.lockDurationMs ?? 15_000,
        stalledInterval: this.options.stalledIntervalMs ?? 5_000,
        maxStalledCount: 10,
      });
      worker.on('error', (error) => this.options.log?.(`worker p${p}: ${error.message}`));
      this.workers.push(worker);
    }
    // Heartbeat, so that `status` and `ingest` count this hub's workers only (queues.workerCount).
    const beat = () =>
      this.queues.beat(this.id, HEARTBEAT_TTL_MS).catch((error: Error) => this.options.log?.(`worker heartbeat: ${error.message}`));
    await beat();
    this.heartbeat = setInterval(() => void beat(), HEARTBEAT_TTL_MS / 3);
    this.heartbeat.unref();
    if (this.options.reconcile !== false) {
      this.reconciler = new Reconciler(this.ctx.db, this.queues, { log: this.options.log });
      this.reconciler.start();
    }
  }

  private async process(job: Job<PipelineJob>, attempts: number): Promise<RunOutcome> {
    for (;;) {
      try {
        const outcome = await runPipeline(this.ctx, job.data.rawId, job.attemptsMade + 1 >= attempts);
        this.options.onProcessed?.(job.data.rawId, outcome);
        return outcome;
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
