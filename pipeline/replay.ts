/**
 * Replay: run stored messages through the pipeline again, selected by raw id, member, channel,
 * time range or status. Open quarantine entries of those messages are closed as `replayed`; if the
 * cause is still there, the message lands in quarantine again with a new entry.
 */
import type { HubDb } from '../hub/sql';
import type { RawStatus } from '../hub/rawStore';
import type { PipelineQueues } from './queues';

export interface ReplayFilter {
  rawIds?: number[];
  member?: string;
  channel?: string;
  from?: Date;
  to?: Date;
  /** Default: quarantined and failed. */
  status?: RawStatus[];
}

export interface ReplayResult {
  replayed: number;
  rawIds: number[];
  /** Asked for by raw id (filter.rawIds) but not in the raw store. Only present when there are some. */
  notFound?: number[];
  /**
   * Asked for by raw id and stored, but not replayed: its status is not replayable (`fixed`) or not
   * among those asked for, or it is outside the other filters. Only present when there are some.
   */
  notReplayed?: Array<{ rawId: number; status: RawStatus }>;
}

export async function replay(db: HubDb, queues: PipelineQueues, filter: ReplayFilter): Promise<ReplayResult> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (filter.rawIds?.length) add('id = ANY(?::bigint[])', filter.rawIds);
  if (filter.member) add('member_id = ?', filter.member);
  if (filter.channel) add('channel_id = ?', filter.channel);
  if (filter.from) add('received_at >= ?', filter.from);
  if (filter.to) add('received_at < ?', filter.to);
  // Never a `fixed` message: its corrected copy (pipeline/fix.ts) went through the pipeline instead,
  // and running the original again as well would apply the same event twice.
  const statuses = filter.status?.length ? filter.status.filter((s) => s !== 'fixed') : filter.rawIds?.length ? ['queued', 'processed', 'quarantined', 'failed'] : ['quarantined', 'failed'];
  add('status = ANY(?::text[])', statuses);
  const selected = await db.transaction(async (tx) => {
    const rows = await tx.query<{ id: number; patient_key: string | null }>(
      `UPDATE raw_message SET status = 'queued', attempts = 0 WHERE ${where.join(' AND ')} RETURNING id, patient_key`,
      params,
    );
    const ids = rows.rows.map((r) => r.id);
    if (ids.length) await tx.query(`UPDATE quarantine SET state = 'replayed', closed_at = clock_timestamp() WHERE raw_id = ANY($1::bigint[]) AND state = 'open'`, [ids]);
    return rows.rows.sort((a, b) => a.id - b.id);
  });
  await queues.enqueue(
    selected.map((r) => ({ rawId: r.id, patientKey: r.patient_key })),
    `-replay-${Date.now()}`,
  );
  const result: ReplayResult = { replayed: selected.length, rawIds: selected.map((r) => r.id) };
  // The ids asked for by name that were not replayed, and why: a caller must not read silence as done.
  const chosen = new Set(result.rawIds.map(Number));
  const missed = [...new Set(filter.rawIds ?? [])].filter((id) => !chosen.has(id));
  if (missed.length) {
    const found = await db.query<{ id: number; status: RawStatus }>(`SELECT id, status FROM raw_message WHERE id = ANY($1::bigint[]) ORDER BY id`, [missed]);
    const stored = new Map(found.rows.map((r) => [Number(r.id), r.status]));
    const notFound = missed.filter((id) => !stored.has(id)).sort((a, b) => a - b);
    if (notFound.length) result.notFound = notFound;
    if (stored.size) result.notReplayed = [...stored].map(([rawId, status]) => ({ rawId, status }));
  }
  return result;
}
