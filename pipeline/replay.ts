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

export async function replay(db: HubDb, queues: PipelineQueues, filter: ReplayFilter): Promise<{ replayed: number; rawIds: number[] }> {
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
  return { replayed: selected.length, rawIds: selected.map((r) => r.id) };
}
