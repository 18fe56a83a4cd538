/**
 * The console's tables (migration 11): an hourly rollup of what each channel received, so that the
 * channels page — refreshed every 10 s by every open console — reads at most ~3 hours of raw-store
 * rows per channel instead of 25 hours. Owns only derived figures: the raw store stays the truth,
 * and the rollup can be dropped and rebuilt from it (rows older than 26 hours are never needed).
 */
export const consoleSchemaSql = `
CREATE TABLE console_channel_hour (
  member_id text NOT NULL,
  channel_id text NOT NULL,
  hour timestamptz NOT NULL,
  received integer NOT NULL,
  acked integer NOT NULL,
  nacked integer NOT NULL,
  PRIMARY KEY (member_id, channel_id, hour)
);
COMMENT ON TABLE console_channel_hour IS 'Channels page: messages received, ACKed (AA/CA) and NAKed (AE/AR/CE/CR) per channel and closed clock hour. These never change once the hour is over (received_at is the storing time; the stored ACK is never rewritten), so the page sums them instead of rescanning raw_message. Quarantined counts are not here: a status changes (replay), so they are counted live.';
CREATE TABLE console_rollup_state (
  id integer PRIMARY KEY CHECK (id = 1),
  rolled_until timestamptz NOT NULL
);
COMMENT ON TABLE console_rollup_state IS 'Channels page: console_channel_hour holds every hour before rolled_until (one row, advanced by whichever API process refreshes the page first).';
CREATE INDEX raw_message_channel_problems ON raw_message (member_id, channel_id, received_at) WHERE status IN ('quarantined', 'failed');
COMMENT ON INDEX raw_message_channel_problems IS 'Channels page: live quarantined/failed counts per channel and time window without reading the processed rows.';
`;
