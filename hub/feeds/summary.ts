/**
 * A few figures of the cost feed for the demo (cli/demo.ts): builds the feed up to date, then
 * counts. Aggregates only — no patient key leaves this function.
 */
import type { HubConfig } from '../config';
import type { HubDb } from '../sql';
import { buildCostFeed } from './builder';

export interface CostFeedSummary {
  /** Events in the log (corrections included) and the last cursor. */
  events: number;
  lastCursor: number;
  /** Current (latest, not void) events per kind. */
  byKind: Record<string, number>;
  /** Distinct pseudonymous patients. */
  patients: number;
  referrals: { up: number; down: number; lateral: number };
  corrections: number;
}

export async function costFeedSummary(db: HubDb, config: HubConfig): Promise<CostFeedSummary> {
  const built = await buildCostFeed(db, config);
  const current = await db.query<{ kind: string; n: number }>(
    `SELECT kind, count(*)::int AS n FROM cost_event e
      WHERE status = 'active' AND NOT EXISTS (SELECT 1 FROM cost_event c WHERE c.corrects = e.id) GROUP BY kind ORDER BY kind`,
  );
  const totals = (
    await db.query<{ events: number; patients: number; corrections: number; up: number; down: number; lateral: number }>(
      `SELECT count(*)::int AS events, count(DISTINCT patient_key)::int AS patients, count(corrects)::int AS corrections,
              count(*) FILTER (WHERE kind = 'referral' AND event->'referral'->>'direction' = 'up' AND NOT EXISTS (SELECT 1 FROM cost_event c WHERE c.corrects = e.id))::int AS up,
              count(*) FILTER (WHERE kind = 'referral' AND event->'referral'->>'direction' = 'down' AND NOT EXISTS (SELECT 1 FROM cost_event c WHERE c.corrects = e.id))::int AS down,
              count(*) FILTER (WHERE kind = 'referral' AND event->'referral'->>'direction' = 'lateral' AND NOT EXISTS (SELECT 1 FROM cost_event c WHERE c.corrects = e.id))::int AS lateral
         FROM cost_event e`,
    )
  ).rows[0]!;
  return {
    events: totals.events,
    lastCursor: built.lastCursor,
    byKind: Object.fromEntries(current.rows.map((r) => [r.kind, r.n])),
    patients: totals.patients,
    referrals: { up: totals.up, down: totals.down, lateral: totals.lateral },
    corrections: totals.corrections,
  };
}
