/**
 * What an information department asks first: is anything stuck? Queue depths, the pipeline's lag,
 * open dead letters by stage and reason, and per-channel counters from the raw store.
 */
import type { HubDb, Sql } from '../hub/sql';
import type { PipelineQueues } from './queues';

type Depths = Awaited<ReturnType<PipelineQueues['depths']>>;

/**
 * How far the pipeline is behind the intake, from the raw store's status: the truth even when
 * Redis lost jobs (the reconciler puts them back; they were waiting all the same). A message waits
 * from when it was received, or from when a replay put it back (raw_message.queued_at, migration 21).
 */
export interface PipelineLag {
  /** Messages stored (and ACKed) but not yet processed. */
  queued: number;
  /** When the longest-waiting one started waiting; null when none waits. */
  oldestQueuedAt: string | null;
  /** Its age by the database's clock (the one that stamped it); 0 when none waits. */
  oldestQueuedAgeSeconds: number;
}

/**
 * From this age of the oldest waiting message the console flags the lag; the same figure as the
 * warning rule YilianPipelineLagging in deploy/prometheus/alerts.yml (test/pipeline-lag.int.test.ts
 * holds them equal).
 */
export const LAG_WARNING_SECONDS = 300;

/** When the longest-waiting message started waiting: served by the partial index raw_message_queued_since. */
export const OLDEST_QUEUED_SQL = `SELECT coalesce(queued_at, received_at) FROM raw_message WHERE status = 'queued' ORDER BY 1 LIMIT 1`;

/**
 * The oldest is one descent of the partial index raw_message_queued_since, whatever the size of the
 * store; the count reads that index's entries, so it costs in proportion to the backlog, not the store.
 */
export async function pipelineLag(db: Sql): Promise<PipelineLag> {
  const { rows } = await db.query<{ queued: number; since: Date | null; age: number | null }>(
    `SELECT queued, since, extract(epoch FROM clock_timestamp() - since)::float8 AS age
       FROM (SELECT (SELECT count(*) FROM raw_message WHERE status = 'queued')::int AS queued,
                    (${OLDEST_QUEUED_SQL}) AS since) lag`,
  );
  const row = rows[0]!;
  return { queued: row.queued, oldestQueuedAt: row.since ? new Date(row.since).toISOString() : null, oldestQueuedAgeSeconds: row.age === null ? 0 : Math.max(0, Number(row.age)) };
}

/**
 * Sets the gauges a scrape reads (GET /metrics of the API and of `yilian worker --metrics-port`).
 * A store or Redis that does not answer leaves its gauges without a sample rather than failing
 * the scrape (the process's other metrics still matter then) or repeating a stale value.
 */
export async function refreshPipelineGauges(db: HubDb, queues: PipelineQueues): Promise<void> {
  // Required here: `yilian status` reads this module and has no use for prom-client (50 ms of its start).
  const { metrics } = require('../hub/metrics') as typeof import('../hub/metrics');
  const [depths, lag] = await Promise.allSettled([queues.depths(), pipelineLag(db)]);
  metrics.queueDepth.reset();
  if (depths.status === 'fulfilled') for (const [state, n] of Object.entries(depths.value)) metrics.queueDepth.set({ state }, n);
  if (lag.status === 'fulfilled') {
    metrics.queuedMessages.set(lag.value.queued);
    metrics.oldestQueuedAge.set(lag.value.oldestQueuedAgeSeconds);
  } else {
    metrics.queuedMessages.reset();
    metrics.oldestQueuedAge.reset();
  }
}

export interface HubStatus {
  queues: Depths;
  workers: number;
  lag: PipelineLag;
  deadLetters: Array<{ stage: string; code: string; open: number }>;
  channels: Array<{ member: string; channel: string; received: number; processed: number; queued: number; quarantined: number; failed: number; duplicates: number; lastReceivedAt: string | null }>;
}

/**
 * `queues` absent: the embedded defaults, whose Redis is a server private to the command that
 * started it — a `yilian status` of its own would start an empty one just to count nothing. Its
 * queues are reported empty; what waits is in `lag`, read from the store.
 */
export async function hubStatus(db: HubDb, queues?: PipelineQueues): Promise<HubStatus> {
  const [depths, workers, lag, dead, channels] = await Promise.all([
    queues ? queues.depths() : { waiting: 0, active: 0, delayed: 0, failed: 0, prioritized: 0 },
    queues ? queues.workerCount() : 0,
    pipelineLag(db),
    db.query<{ stage: string; code: string; open: number }>(`SELECT stage, code, count(*)::int AS open FROM quarantine WHERE state = 'open' GROUP BY 1, 2 ORDER BY 3 DESC`),
    db.query<{ member: string; channel: string; received: number; processed: number; queued: number; quarantined: number; failed: number; duplicates: number; last: Date | null }>(
      `SELECT member_id AS member, channel_id AS channel, count(*)::int AS received,
              count(*) FILTER (WHERE status = 'processed')::int AS processed,
              count(*) FILTER (WHERE status = 'queued')::int AS queued,
              count(*) FILTER (WHERE status = 'quarantined')::int AS quarantined,
              count(*) FILTER (WHERE status = 'failed')::int AS failed,
              coalesce(sum(duplicate_count), 0)::int AS duplicates,
              max(received_at) AS last
         FROM raw_message GROUP BY 1, 2 ORDER BY 1, 2`,
    ),
  ]);
  return {
    queues: depths,
    workers,
    lag,
    deadLetters: dead.rows,
    channels: channels.rows.map(({ last, ...c }) => ({ ...c, lastReceivedAt: last ? new Date(last).toISOString() : null })),
  };
}
