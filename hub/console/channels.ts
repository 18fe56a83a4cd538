/**
 * The channels page's data: per member and channel, whether it is up, what it received in the last
 * hour and day (ACKed, NAKed, quarantined), when it last received, its last error, and alerts for
 * silence and volume drops. Counters come from the raw store (so they are the same whichever process
 * received the messages); up/down is probed from here (an MLLP port accepting a connection, a drop
 * folder being readable), since listeners may run in another process.
 */
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { connect } from 'node:net';
import type { ChannelConfig, HubConfig } from '../config';
import type { HubDb } from '../sql';
import { consoleSettings, thresholdsFor, type AlertThresholds } from './config';

export interface WindowCounts {
  received: number;
  acked: number;
  nacked: number;
  quarantined: number;
}

export interface ChannelAlert {
  kind: 'silence' | 'volume-drop';
  /** silence: minutes since the last message; volume-drop: messages in the last hour. */
  value: number;
  /** silence: the threshold in minutes; volume-drop: the hourly average of the 24 hours before. */
  reference: number;
}

export interface ChannelOverview {
  member: string;
  channel: string;
  kind: ChannelConfig['kind'] | 'unconfigured';
  /** up: accepting / readable; down: not; unknown: cannot be probed from here (port 0, pulled FHIR). */
  state: 'up' | 'down' | 'unknown';
  hour: WindowCounts;
  day: WindowCounts;
  /** Average messages per hour over the 24 hours before the last hour. */
  baselinePerHour: number;
  lastReceivedAt: string | null;
  lastError: { rawId: number; stage: string; code: string; reason: string; at: string } | null;
  alerts: ChannelAlert[];
  thresholds: AlertThresholds;
}

/** Pure: which alerts a channel's figures raise under its thresholds. */
export function channelAlerts(input: { lastReceivedAt: Date | null; lastHour: number; baselinePerHour: number; now: Date }, t: AlertThresholds): ChannelAlert[] {
  const alerts: ChannelAlert[] = [];
  if (t.silenceMinutes > 0 && input.lastReceivedAt) {
    const silent = (input.now.getTime() - input.lastReceivedAt.getTime()) / 60_000;
    if (silent >= t.silenceMinutes) alerts.push({ kind: 'silence', value: Math.floor(silent), reference: t.silenceMinutes });
  }
  if (input.baselinePerHour > 0 && input.baselinePerHour >= t.minBaselinePerHour && input.lastHour <= input.baselinePerHour * (1 - t.volumeDropPercent / 100)) {
    alerts.push({ kind: 'volume-drop', value: input.lastHour, reference: Math.round(input.baselinePerHour * 10) / 10 });
  }
  return alerts;
}

interface CounterRow {
  member_id: string;
  channel_id: string;
  received_1h: number;
  acked_1h: number;
  nacked_1h: number;
  quarantined_1h: number;
  received_1d: number;
  acked_1d: number;
  nacked_1d: number;
  quarantined_1d: number;
  received_baseline: number;
  last_at: Date | null;
  error_raw_id: number | null;
  error_stage: string | null;
  error_code: string | null;
  error_reason: string | null;
  error_at: Date | null;
  now: Date;
}

/** Advisory lock key of the rollup: one API process rolls up at a time, the others read live rows meanwhile. */
const ROLLUP_LOCK = 7317011;

/**
 * Every (member, channel) pair the raw store has ever seen, by a loose index scan on
 * raw_message_channel_time: one index probe per channel, never a scan of the store.
 */
const allChannelsSql = `
  WITH RECURSIVE pairs AS (
    (SELECT member_id, channel_id FROM raw_message ORDER BY member_id, channel_id LIMIT 1)
    UNION ALL
    SELECT n.member_id, n.channel_id FROM pairs p
      CROSS JOIN LATERAL (SELECT member_id, channel_id FROM raw_message r WHERE (r.member_id, r.channel_id) > (p.member_id, p.channel_id)
                          ORDER BY member_id, channel_id LIMIT 1) n
  )`;

/** The ACK code (MSA-1) of a stored ACK, in SQL. */
const ackCodeSql = `substring(encode(ack, 'escape') from 'MSA\\|([AC][AER])')`;

/**
 * Roll closed hours into console_channel_hour: every hour that ended at least two hours ago and is
 * not yet there (at most the last 26). Received/ACKed/NAKed counts of a past hour never change, so
 * this is done once per hour; the two-hour lag leaves any late commit of a message stored just
 * before an hour's end (and clock skew between API hosts) far behind. Safe to run from any number
 * of processes: one does it, the others skip.
 */
export async function rollUpChannelHours(db: HubDb): Promise<void> {
  await db.transaction(async (tx) => {
    const lock = await tx.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(${ROLLUP_LOCK}) AS ok`);
    if (!lock.rows[0]!.ok) return;
    const range = await tx.query<{ start: Date; upto: Date }>(
      `SELECT greatest((SELECT rolled_until FROM console_rollup_state WHERE id = 1), date_trunc('hour', now() - interval '26 hours')) AS start,
              date_trunc('hour', now() - interval '2 hours') AS upto`,
    );
    const { start, upto } = range.rows[0]!;
    if (start >= upto) return;
    await tx.query(
      `${allChannelsSql}
       INSERT INTO console_channel_hour (member_id, channel_id, hour, received, acked, nacked)
       SELECT p.member_id, p.channel_id, h.hour, h.received, h.acked, h.nacked
         FROM pairs p
         CROSS JOIN LATERAL (
           SELECT date_trunc('hour', received_at) AS hour, count(*)::int AS received,
                  count(*) FILTER (WHERE ack_code IN ('AA', 'CA'))::int AS acked,
                  count(*) FILTER (WHERE ack_code IN ('AE', 'AR', 'CE', 'CR'))::int AS nacked
             FROM (SELECT received_at, ${ackCodeSql} AS ack_code FROM raw_message r
                    WHERE r.member_id = p.member_id AND r.channel_id = p.channel_id AND r.received_at >= $1 AND r.received_at < $2) w
            GROUP BY 1
         ) h
       ON CONFLICT DO NOTHING`,
      [start, upto],
    );
    await tx.query(`INSERT INTO console_rollup_state (id, rolled_until) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET rolled_until = excluded.rolled_until`, [upto]);
    await tx.query(`DELETE FROM console_channel_hour WHERE hour < now() - interval '27 hours'`);
  });
}

/**
 * Configured channels, plus any channel that received in the last 25 hours without being configured
 * (CLI ingest). The windows (last hour, last 24 hours, and the 24 hours before the last hour for the
 * volume baseline) are summed from the hourly rollup for the whole hours inside them, and counted on
 * raw_message index ranges only at the two edges: from 25 h ago to the first whole hour of the day
 * window, and from the end of the rollup (at most ~3 h ago) to now. Quarantined counts are live
 * (a status changes on replay), through a partial index holding only quarantined and failed rows.
 */
export async function channelOverview(db: HubDb, config: HubConfig): Promise<ChannelOverview[]> {
  const settings = consoleSettings(config);
  const configured = config.members.flatMap((m) => m.channels.map((c) => ({ member: m.id, channel: c })));
  await rollUpChannelHours(db);
  const result = await db.query<CounterRow>(
    `${allChannelsSql},
     bounds AS (
       SELECT now() AS now,
              date_trunc('hour', now() - interval '24 hours') + interval '1 hour' AS low_end,
              least(date_trunc('hour', now() - interval '1 hour'), coalesce((SELECT rolled_until FROM console_rollup_state WHERE id = 1), '-infinity')) AS rolled_end
     ),
     ch AS (
       SELECT * FROM unnest($1::text[], $2::text[]) AS c(member_id, channel_id)
       UNION
       SELECT p.member_id, p.channel_id FROM pairs p
        WHERE EXISTS (SELECT 1 FROM raw_message r WHERE r.member_id = p.member_id AND r.channel_id = p.channel_id AND r.received_at >= now() - interval '25 hours')
     )
     SELECT ch.member_id, ch.channel_id,
            s.received_1h, s.acked_1h, s.nacked_1h, q.quarantined_1h,
            s.received_1d + coalesce(h.received, 0) AS received_1d, s.acked_1d + coalesce(h.acked, 0) AS acked_1d,
            s.nacked_1d + coalesce(h.nacked, 0) AS nacked_1d, q.quarantined_1d,
            s.received_baseline + coalesce(h.received, 0) AS received_baseline,
            l.last_at, e.error_raw_id, e.error_stage, e.error_code, e.error_reason, e.error_at, b.now
       FROM ch CROSS JOIN bounds b
       CROSS JOIN LATERAL (
         SELECT count(*) FILTER (WHERE hour)::int AS received_1h,
                count(*) FILTER (WHERE hour AND ack_code IN ('AA', 'CA'))::int AS acked_1h,
                count(*) FILTER (WHERE hour AND ack_code IN ('AE', 'AR', 'CE', 'CR'))::int AS nacked_1h,
                count(*) FILTER (WHERE day)::int AS received_1d,
                count(*) FILTER (WHERE day AND ack_code IN ('AA', 'CA'))::int AS acked_1d,
                count(*) FILTER (WHERE day AND ack_code IN ('AE', 'AR', 'CE', 'CR'))::int AS nacked_1d,
                count(*) FILTER (WHERE NOT hour)::int AS received_baseline
           FROM (SELECT received_at >= b.now - interval '1 hour' AS hour,
                        received_at >= b.now - interval '1 day' AS day,
                        ${ackCodeSql} AS ack_code
                   FROM raw_message r
                  WHERE r.member_id = ch.member_id AND r.channel_id = ch.channel_id AND r.received_at >= b.now - interval '25 hours'
                    AND (r.received_at < b.low_end OR r.received_at >= b.rolled_end)) w
       ) s
       -- Whole hours in [low_end, rolled_end): inside the day window and before the last hour.
       LEFT JOIN LATERAL (
         SELECT sum(received)::int AS received, sum(acked)::int AS acked, sum(nacked)::int AS nacked
           FROM console_channel_hour c
          WHERE c.member_id = ch.member_id AND c.channel_id = ch.channel_id AND c.hour >= b.low_end AND c.hour < b.rolled_end
       ) h ON true
       CROSS JOIN LATERAL (
         SELECT count(*) FILTER (WHERE received_at >= b.now - interval '1 hour')::int AS quarantined_1h, count(*)::int AS quarantined_1d
           FROM raw_message r
          WHERE r.member_id = ch.member_id AND r.channel_id = ch.channel_id AND r.status IN ('quarantined', 'failed') AND r.received_at >= b.now - interval '1 day'
       ) q
       LEFT JOIN LATERAL (
         SELECT max(received_at) AS last_at FROM raw_message r WHERE r.member_id = ch.member_id AND r.channel_id = ch.channel_id
       ) l ON true
       LEFT JOIN LATERAL (
         SELECT q.raw_id AS error_raw_id, q.stage AS error_stage, q.code AS error_code, q.reason AS error_reason, q.created_at AS error_at
           FROM quarantine q JOIN raw_message r ON r.id = q.raw_id
          WHERE r.member_id = ch.member_id AND r.channel_id = ch.channel_id
          ORDER BY q.id DESC LIMIT 1
       ) e ON true
      ORDER BY 1, 2`,
    [configured.map((c) => c.member), configured.map((c) => c.channel.id)],
  );
  const states = await Promise.all(result.rows.map((row) => probe(configured.find((c) => c.member === row.member_id && c.channel.id === row.channel_id)?.channel)));
  return result.rows.map((row, i) => {
    const channel = configured.find((c) => c.member === row.member_id && c.channel.id === row.channel_id)?.channel;
    const thresholds = thresholdsFor(settings, row.member_id, row.channel_id);
    const baselinePerHour = row.received_baseline / 24;
    const lastReceivedAt = row.last_at ? new Date(row.last_at) : null;
    return {
      member: row.member_id,
      channel: row.channel_id,
      kind: channel?.kind ?? 'unconfigured',
      state: states[i]!,
      hour: { received: row.received_1h, acked: row.acked_1h, nacked: row.nacked_1h, quarantined: row.quarantined_1h },
      day: { received: row.received_1d, acked: row.acked_1d, nacked: row.nacked_1d, quarantined: row.quarantined_1d },
      baselinePerHour,
      lastReceivedAt: lastReceivedAt?.toISOString() ?? null,
      lastError: row.error_raw_id
        ? { rawId: Number(row.error_raw_id), stage: row.error_stage!, code: row.error_code!, reason: row.error_reason!, at: new Date(row.error_at!).toISOString() }
        : null,
      alerts: channelAlerts({ lastReceivedAt, lastHour: row.received_1h, baselinePerHour, now: new Date(row.now) }, thresholds),
      thresholds,
    };
  });
}

async function probe(channel: ChannelConfig | undefined): Promise<ChannelOverview['state']> {
  if (!channel) return 'unknown';
  switch (channel.kind) {
    case 'mllp': {
      if (channel.port === 0) return 'unknown';
      const host = channel.host === '0.0.0.0' ? '127.0.0.1' : channel.host === '::' ? '::1' : channel.host;
      return tcpAccepts(host, channel.port);
    }
    case 'file':
      return access(channel.dir, fsConstants.R_OK | fsConstants.W_OK).then(
        () => 'up' as const,
        () => 'down' as const,
      );
    case 'fhir-subscription':
      // Pushed to this API: it is up while the API answers.
      return 'up';
    default:
      return 'unknown';
  }
}

/** Connect and close without sending a byte: the MLLP listener sees an empty connection, nothing is stored. */
function tcpAccepts(host: string, port: number): Promise<'up' | 'down'> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (state: 'up' | 'down') => {
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      socket.destroy();
      resolve(state);
    };
    socket.setTimeout(1000, () => done('down'));
    socket.once('connect', () => done('up'));
    socket.once('error', () => done('down'));
  });
}
