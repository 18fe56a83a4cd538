/**
 * Reading the cost event log in feed order: a page after a cursor, or a time range a chunk at a
 * time. Shared by the HTTP feed (api/feeds.ts) and `yilian feed cost`; the rows' JSON text is passed
 * through as stored, never re-serialised.
 */
import type { Sql } from '../sql';

/** A page of the feed after a cursor, as JSON text straight from the log (no re-serialisation). */
export async function readPage(db: Sql, after: number, limit: number): Promise<{ events: string[]; next: number }> {
  const rows = await db.query<{ seq: number; event: string }>(`SELECT seq, event::text AS event FROM cost_event WHERE seq > $1 ORDER BY seq LIMIT $2`, [after, limit], 'cost_feed_page');
  return { events: rows.rows.map((r) => r.event), next: rows.rows.length ? rows.rows[rows.rows.length - 1]!.seq : after };
}

/** Events of a time range (occurred time), in feed order, a chunk at a time. */
export async function* exportEvents(db: Sql, range: { from?: Date; to?: Date }, chunk = 5000): AsyncGenerator<string[]> {
  let after = 0;
  for (;;) {
    const rows = await db.query<{ seq: number; event: string }>(
      `SELECT seq, event::text AS event FROM cost_event
        WHERE seq > $1 AND ($2::timestamptz IS NULL OR occurred_at >= $2) AND ($3::timestamptz IS NULL OR occurred_at < $3)
        ORDER BY seq LIMIT $4`,
      [after, range.from ?? null, range.to ?? null, chunk],
      'cost_feed_export',
    );
    if (!rows.rows.length) return;
    after = rows.rows[rows.rows.length - 1]!.seq;
    yield rows.rows.map((r) => r.event);
    if (rows.rows.length < chunk) return;
  }
}
