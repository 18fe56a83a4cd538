/**
 * What an information department asks first: is anything stuck? Queue depths, open dead letters by
 * stage and reason, and per-channel counters from the raw store.
 */
import type { HubDb } from '../hub/sql';
import type { PipelineQueues } from './queues';

export interface HubStatus {
  queues: Record<string, number>;
  workers: number;
  deadLetters: Array<{ stage: string; code: string; open: number }>;
  channels: Array<{ member: string; channel: string; received: number; processed: number; queued: number; quarantined: number; failed: number; duplicates: number; lastReceivedAt: string | null }>;
}

export async function hubStatus(db: HubDb, queues: PipelineQueues): Promise<HubStatus> {
  const [depths, workers, dead, channels] = await Promise.all([
    queues.depths(),
    queues.workerCount(),
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
    deadLetters: dead.rows,
    channels: channels.rows.map(({ last, ...c }) => ({ ...c, lastReceivedAt: last ? new Date(last).toISOString() : null })),
  };
}
