/**
 * A pipeline worker: one BullMQ Worker per partition queue, each with concurrency 1 (the queues'
 * global concurrency of 1 keeps per-patient order across processes). Run as many `yilian worker`
 * processes as wanted, on any machine that reaches Redis and PostgreSQL. close() is graceful:
 * in-flight jobs finish; a killed worker's jobs are detected as stalled and run again (idempotent).
 */
import { syncTerminology } from '../hub/terminology/versions';
import { startTerminologySync } from '../hub/terminology/reprocess';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { partitionQueueName, redisClient, type PipelineJob, type PipelineQueues } from './queues';
import { Reconciler } from './reconciler';
import { runPipeline, type RunnerContext, type RunOutcome } from './runner';

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
  private readonly connection: Redis;
  private reconciler?: Reconciler;
  private stopTerminologySync?: () => void;

  constructor(
    private readonly ctx: RunnerContext,
    private readonly queues: PipelineQueues,
    private readonly options: WorkerOptions = {},
  ) {
    this.connection = redisClient(queues.options.redisUrl);
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
    if (this.options.reconcile !== false) {
      this.reconciler = new Reconciler(this.ctx.db, this.queues, { log: this.options.log });
      this.reconciler.start();
    }
  }

  private async process(job: Job<PipelineJob>, attempts: number): Promise<RunOutcome> {
    const outcome = await runPipeline(this.ctx, job.data.rawId, job.attemptsMade + 1 >= attempts);
    this.options.onProcessed?.(job.data.rawId, outcome);
    return outcome;
  }

  /** Stop taking jobs and wait for the ones in flight. */
  async close(): Promise<void> {
    this.reconciler?.stop();
    this.stopTerminologySync?.();
    await Promise.all(this.workers.map((w) => w.close()));
    this.connection.disconnect();
  }
}
