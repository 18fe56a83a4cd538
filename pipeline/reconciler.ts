/**
 * Puts back on the queues what Redis does not have: messages stored (and ACKed) whose job was lost
 * — Redis restarted without persistence, or the enqueue after the store failed. The raw store is
 * the source of truth; jobs are `raw-<id>`, so re-adding one that still exists is a no-op.
 */
import type { HubDb } from '../hub/sql';
import type { PipelineQueues } from './queues';

export interface ReconcilerOptions {
  /** A queued message older than this without progress is re-enqueued (lost enqueue). */
  staleAfterMs: number;
  /** How often to check whether Redis lost its data. */
  epochCheckMs: number;
  log?: (text: string) => void;
}

const defaults: ReconcilerOptions = { staleAfterMs: 5 * 60_000, epochCheckMs: 2000 };

export class Reconciler {
  private timer?: NodeJS.Timeout;
  private lastStaleSweep = 0;
  /** The first sweep of a process takes every queued message, not only the stale ones (see tick()). */
  private sweptSinceStart = false;
  private running = false;
  private readonly options: ReconcilerOptions;

  constructor(
    private readonly db: HubDb,
    private readonly queues: PipelineQueues,
    options: Partial<ReconcilerOptions> = {},
  ) {
    this.options = { ...defaults, ...options };
  }

  start(): void {
    const tick = async () => {
      if (this.running) return;
      this.running = true;
      try {
        await this.tick();
      } catch (error) {
        this.options.log?.(`reconciler: ${(error as Error).message}`);
      } finally {
        this.running = false;
      }
    };
    void tick();
    this.timer = setInterval(tick, this.options.epochCheckMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async tick(): Promise<void> {
    const lost = await this.queues.redisLostState();
    if (lost || !this.sweptSinceStart) {
      // Every queued message, not only the stale ones: Redis lost its queues, or this process is
      // starting and may follow one killed between a commit and its hand-over to Redis (the
      // intake's ACKs may go out while an earlier hand-over is still in flight) — those messages
      // are recent, so the stale sweep would leave them for minutes. Re-adding a message whose job
      // exists is a no-op.
      if (lost) await this.queues.enforceOrdering();
      const n = await this.requeue(0);
      if (lost) await this.queues.markRedisRestored();
      this.sweptSinceStart = true;
      this.lastStaleSweep = Date.now();
      if (n > 0) this.options.log?.(lost ? `reconciler: Redis had lost its queues; re-enqueued ${n} stored messages` : `reconciler: checked ${n} queued messages at start`);
    } else if (Date.now() - this.lastStaleSweep > this.options.staleAfterMs / 2) {
      this.lastStaleSweep = Date.now();
      await this.requeue(this.options.staleAfterMs);
    }
  }

  /** Re-enqueue queued messages received more than `olderThanMs` ago, in arrival order. */
  async requeue(olderThanMs: number): Promise<number> {
    let after = 0;
    let total = 0;
    for (;;) {
      const page = await this.db.query<{ id: number; patient_key: string | null }>(
        `SELECT id, patient_key FROM raw_message
          WHERE status = 'queued' AND id > $1 AND received_at < clock_timestamp() - make_interval(secs => $2::float8 / 1000)
          ORDER BY id LIMIT 5000`,
        [after, olderThanMs],
      );
      if (page.rows.length === 0) return total;
      await this.queues.enqueue(page.rows.map((r) => ({ rawId: r.id, patientKey: r.patient_key })));
      total += page.rows.length;
      after = page.rows[page.rows.length - 1]!.id;
    }
  }
}
