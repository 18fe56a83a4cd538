/**
 * Persisted positions of the FHIR adapters (migration 3): the REST pull cursor per (member,
 * channel, resource type). Owns the rule that a cursor is written only by the caller that has just
 * stored the page it comes from — these functions do no storing of resources themselves.
 */
import type { Sql } from '../../hub/sql';

export async function loadCursor(db: Sql, memberId: string, channelId: string, resourceType: string): Promise<string | undefined> {
  const found = await db.query<{ last_updated: string }>(
    `SELECT last_updated FROM fhir_cursor WHERE member_id = $1 AND channel_id = $2 AND resource_type = $3`,
    [memberId, channelId, resourceType],
  );
  return found.rows[0]?.last_updated;
}

/** Set the cursor (also backwards: a sweep that found resources shifted between pages rolls it back). */
export async function saveCursor(db: Sql, memberId: string, channelId: string, resourceType: string, lastUpdated: string): Promise<void> {
  await db.query(
    `INSERT INTO fhir_cursor (member_id, channel_id, resource_type, last_updated) VALUES ($1, $2, $3, $4)
     ON CONFLICT (member_id, channel_id, resource_type) DO UPDATE SET last_updated = excluded.last_updated, updated_at = clock_timestamp()`,
    [memberId, channelId, resourceType, lastUpdated],
  );
}
