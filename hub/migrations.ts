/**
 * Forward-only, numbered schema migrations. A migration is never edited once released: add a new
 * one. Each table and index carries a COMMENT saying why it exists. Applied under an advisory lock
 * so many workers starting at once migrate once.
 */
import type { HubDb } from './sql';
import { reprocessLeaseSql, terminologySchemaSql } from './terminology/schema';
import { patientIndexChangesSql, patientIndexFollowSql, patientIndexSchemaSql, patientIndexSharedValuesSql, patientIndexWritesSql, patientIndexMergedSql, patientIndexModelVersionSql, patientIndexRecordVersionSql, patientIdentifierIndexSql } from './mpi/schema';
import { recognitionSchemaSql } from './recognition/schema';
import { DELETE_CONTAINER_REPORTS_SQL } from './recognition/resultIndex';
import { costFeedSchemaSql } from './feeds/schema';
import { sharedResourceSchemaSql } from './resources/schema';
import { consoleSchemaSql } from './console/schema';

/**
 * Migration 18 (FHIR API, api/fhirHistory.ts and api/fhirPatientSearch.ts). Trigger bodies are on
 * one line: the migration splitter cuts at a semicolon that ends a line.
 */
const fhirApiSchemaSql = `
CREATE TABLE resource_history (
  resource_type text NOT NULL,
  id text NOT NULL,
  version integer NOT NULL,
  member_id text NOT NULL,
  content jsonb NOT NULL,
  raw_id bigint NOT NULL,
  recorded_at timestamptz NOT NULL,
  PRIMARY KEY (resource_type, id, version)
);
COMMENT ON TABLE resource_history IS 'The earlier versions of converted resources (FHIR vread and _history; the current version is the resource row): each row a resource had before an update replaced it, written by the resource_versioned trigger. Versions replaced before this table existed were not kept. Never updated.';

CREATE FUNCTION resource_versioned() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO resource_history (resource_type, id, version, member_id, content, raw_id, recorded_at) SELECT resource_type, id, version, member_id, content, raw_id, updated_at FROM replaced ON CONFLICT DO NOTHING; RETURN NULL; END $$;
CREATE TRIGGER resource_versioned AFTER UPDATE ON resource REFERENCING OLD TABLE AS replaced FOR EACH STATEMENT EXECUTE FUNCTION resource_versioned();
COMMENT ON TRIGGER resource_versioned ON resource IS 'Keeps the version an update replaces, whoever writes (the merge stage''s upsert included): one multi-row insert per statement, nothing for a statement that only inserts new resources.';

CREATE TABLE golden_version (
  golden_id text NOT NULL,
  version integer NOT NULL,
  state text NOT NULL,
  merged_into text,
  survivor jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (golden_id, version)
);
COMMENT ON TABLE golden_version IS 'Versions of a golden patient as the FHIR API serves them (meta.versionId, vread, _history): one row each time its survivorship demographics, state or merge target change, written by triggers on mpi_golden. Links to source records are not versioned (a past version is shown with today''s links). Golden patients existing before this table start at version 1.';
INSERT INTO golden_version (golden_id, version, state, merged_into, survivor, recorded_at) SELECT id, 1, state, merged_into, survivor, updated_at FROM mpi_golden;

CREATE TABLE fhir_patient_term (
  golden_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('name', 'family', 'given', 'address')),
  term text NOT NULL,
  PRIMARY KEY (golden_id, kind, term)
);
COMMENT ON TABLE fhir_patient_term IS 'Searchable text of each golden patient for FHIR Patient search (name, family, given, address), one row per form: lower-case, accents stripped, Hanzi in simplified form and toneless pinyin with and without spaces. Computed in TypeScript (pinyin) by api/fhirPatientSearch.ts for the goldens listed in fhir_patient_search_stale, before each search that needs it.';
CREATE INDEX fhir_patient_term_prefix ON fhir_patient_term (kind, term text_pattern_ops);
COMMENT ON INDEX fhir_patient_term_prefix IS 'Prefix search (name=ouyang: term LIKE ''ouyang%'') as an index range, whatever the number of patients.';

CREATE TABLE fhir_patient_search_stale (golden_id text PRIMARY KEY);
COMMENT ON TABLE fhir_patient_search_stale IS 'Golden patients whose fhir_patient_term rows are missing or out of date: filled by the mpi_golden triggers, emptied by the FHIR API as it recomputes them.';
INSERT INTO fhir_patient_search_stale (golden_id) SELECT id FROM mpi_golden;

CREATE FUNCTION golden_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO golden_version (golden_id, version, state, merged_into, survivor) VALUES (NEW.id, 1, NEW.state, NEW.merged_into, NEW.survivor) ON CONFLICT DO NOTHING; INSERT INTO fhir_patient_search_stale (golden_id) VALUES (NEW.id) ON CONFLICT DO NOTHING; RETURN NULL; END $$;
CREATE TRIGGER golden_inserted AFTER INSERT ON mpi_golden FOR EACH ROW EXECUTE FUNCTION golden_inserted();
COMMENT ON TRIGGER golden_inserted ON mpi_golden IS 'A new golden patient: its version 1, and its FHIR search text to compute. Row-level: a statement-level trigger joining the transition tables made the patient index''s bulk sync three times slower (bench/mpiScale.ts, 100k records).';

CREATE FUNCTION golden_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO golden_version (golden_id, version, state, merged_into, survivor) SELECT NEW.id, coalesce(max(v.version), 0) + 1, NEW.state, NEW.merged_into, NEW.survivor FROM golden_version v WHERE v.golden_id = NEW.id ON CONFLICT DO NOTHING; IF NEW.survivor IS DISTINCT FROM OLD.survivor THEN INSERT INTO fhir_patient_search_stale (golden_id) VALUES (NEW.id) ON CONFLICT DO NOTHING; END IF; RETURN NULL; END $$;
CREATE TRIGGER golden_updated AFTER UPDATE ON mpi_golden FOR EACH ROW WHEN ((OLD.survivor, OLD.state, OLD.merged_into) IS DISTINCT FROM (NEW.survivor, NEW.state, NEW.merged_into)) EXECUTE FUNCTION golden_updated();
COMMENT ON TRIGGER golden_updated ON mpi_golden IS 'A golden patient whose demographics, state or merge target changed: a new version, and (demographics) its FHIR search text to recompute. The WHEN clause keeps the trigger out of updates that change nothing it records.';
`;

/**
 * The pipeline's lag is the age of the oldest message stored but not yet processed (docs/pipeline.md,
 * "Backpressure and lag"). A replay puts old messages back to `queued`: measured from received_at
 * they would read as months of lag, so a trigger notes when a message was put back (the replay code
 * need not know). Intake leaves queued_at NULL (no write, no trigger at intake); the partial index
 * holds only queued messages, so the oldest one is one index descent whatever the table's size.
 */
const pipelineLagSql = `
ALTER TABLE raw_message ADD COLUMN queued_at timestamptz;
COMMENT ON COLUMN raw_message.queued_at IS 'When the message was last put back to queued (a replay; set by the raw_message_requeued trigger); NULL: queued since received_at. The pipeline lag is measured from coalesce(queued_at, received_at).';
CREATE FUNCTION raw_message_requeued() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.queued_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER raw_message_requeued BEFORE UPDATE OF status ON raw_message FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status IS DISTINCT FROM 'queued') EXECUTE FUNCTION raw_message_requeued();
COMMENT ON TRIGGER raw_message_requeued ON raw_message IS 'A message put back to queued (replay) waits from now, not from when it was received: the lag gauge must not read a replay of old messages as months of backlog.';
CREATE INDEX raw_message_queued_since ON raw_message ((coalesce(queued_at, received_at))) WHERE status = 'queued';
COMMENT ON INDEX raw_message_queued_since IS 'The oldest queued message (the pipeline lag metric, yilian_pipeline_oldest_queued_age_seconds) in one index descent; holds only queued messages.';
`;

interface Migration {
  id: number;
  name: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    id: 1,
    name: 'raw store, quarantine, source patients',
    sql: `
CREATE TABLE member (
  id text PRIMARY KEY,
  name text NOT NULL,
  tier text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE member IS 'Alliance members as configured (tier matters for recognition and referral direction).';

CREATE TABLE raw_message (
  id bigserial PRIMARY KEY,
  member_id text NOT NULL,
  channel_id text NOT NULL,
  sender text NOT NULL DEFAULT '',
  control_id text NOT NULL DEFAULT '',
  message_type text NOT NULL DEFAULT '',
  version_id text NOT NULL DEFAULT '',
  charset text NOT NULL DEFAULT '',
  sha256 bytea NOT NULL,
  content bytea NOT NULL,
  size_bytes integer NOT NULL,
  received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  status text NOT NULL CHECK (status IN ('queued', 'processed', 'quarantined', 'failed')),
  revision integer NOT NULL DEFAULT 1,
  flags text[] NOT NULL DEFAULT '{}',
  ack bytea,
  duplicate_count integer NOT NULL DEFAULT 0,
  last_duplicate_at timestamptz,
  patient_key text,
  event_time timestamptz,
  last_stage text,
  processed_at timestamptz,
  attempts integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE raw_message IS 'Original bytes of every inbound message, stored before any ACK: the source of truth for replay, dedupe and audit of what arrived. Kept long; everything else can be re-derived from it.';
COMMENT ON COLUMN raw_message.sender IS 'MSH-3|MSH-4 as received: dedupe scope together with member and control id.';
COMMENT ON COLUMN raw_message.revision IS '1 for the first content seen under (member, sender, control id); a different content under the same control id (a corrected result) is revision 2, 3… and flagged, never treated as a duplicate.';
COMMENT ON COLUMN raw_message.ack IS 'The exact ACK bytes sent; a resent duplicate gets the same ACK again.';
COMMENT ON COLUMN raw_message.patient_key IS 'member|MRN routing key: messages of one patient are applied in order.';
CREATE UNIQUE INDEX raw_message_dedupe ON raw_message (member_id, sender, control_id, sha256);
COMMENT ON INDEX raw_message_dedupe IS 'Identical resends (same member, sender, MSH-10 and bytes) are stored once.';
CREATE INDEX raw_message_status ON raw_message (status, id) WHERE status <> 'processed';
COMMENT ON INDEX raw_message_status IS 'Finds unfinished and failed messages for the reconciler, replay and status without scanning processed ones.';
CREATE INDEX raw_message_channel_time ON raw_message (member_id, channel_id, received_at);
COMMENT ON INDEX raw_message_channel_time IS 'Per-channel counters and replay by member, channel and time range.';

CREATE TABLE quarantine (
  id bigserial PRIMARY KEY,
  raw_id bigint NOT NULL REFERENCES raw_message(id),
  stage text NOT NULL,
  code text NOT NULL,
  reason text NOT NULL,
  location text,
  outcome jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'replayed', 'resolved')),
  closed_at timestamptz
);
COMMENT ON TABLE quarantine IS 'Bad input is data: why a message stopped (stage, machine-readable code, human text, OperationOutcome), and whether it was replayed.';
CREATE INDEX quarantine_open ON quarantine (state, created_at) WHERE state = 'open';
COMMENT ON INDEX quarantine_open IS 'The dead-letter worklist: open entries by age.';
CREATE INDEX quarantine_raw ON quarantine (raw_id);
COMMENT ON INDEX quarantine_raw IS 'A message''s quarantine history.';

CREATE TABLE source_patient (
  member_id text NOT NULL,
  mrn text NOT NULL,
  authority text NOT NULL DEFAULT '',
  demographics jsonb NOT NULL,
  event_time timestamptz,
  last_raw_id bigint NOT NULL,
  merged_into text,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (member_id, mrn)
);
COMMENT ON TABLE source_patient IS 'Each member''s patient as that member last described it (latest event time wins, whatever the arrival order); input to the patient index.';

CREATE TABLE patient_event (
  raw_id bigint PRIMARY KEY REFERENCES raw_message(id),
  member_id text NOT NULL,
  mrn text NOT NULL,
  event_type text NOT NULL,
  event_time timestamptz,
  applied boolean NOT NULL,
  applied_seq bigserial NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE patient_event IS 'Every message applied to a source patient, once (the raw id is the key, so redelivery is a no-op), with whether it changed the record (false: an older event arriving late) and the order it was applied in.';
CREATE INDEX patient_event_patient ON patient_event (member_id, mrn, applied_seq);
COMMENT ON INDEX patient_event_patient IS 'A patient''s update history in applied order.';

CREATE TABLE audit_event (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor text NOT NULL,
  action text NOT NULL,
  entity_type text NOT NULL,
  entity_id text NOT NULL,
  patient_key text,
  detail jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE audit_event IS 'Accountability: who read which patient''s data, when, through what. Written by hub/audit.ts only; never updated.';
CREATE INDEX audit_event_patient ON audit_event (patient_key, at);
COMMENT ON INDEX audit_event_patient IS 'Who read this patient''s data.';
`,
  },
  {
    id: 2,
    name: 'converted resources',
    sql: `
CREATE TABLE resource (
  resource_type text NOT NULL,
  id text NOT NULL,
  member_id text NOT NULL,
  version integer NOT NULL DEFAULT 1,
  content jsonb NOT NULL,
  event_time timestamptz,
  raw_id bigint NOT NULL REFERENCES raw_message(id),
  mapping_versions text[] NOT NULL DEFAULT '{}',
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (resource_type, id)
);
COMMENT ON TABLE resource IS 'FHIR R4 resources converted from members'' messages, one row per deterministic id: the state of the latest event time (ties: the later raw id), whatever the arrival order; version counts the changes applied. raw_id and mapping_versions are the provenance of the current state.';
CREATE INDEX resource_raw ON resource (raw_id);
COMMENT ON INDEX resource_raw IS 'Which resources a raw message produced (replay, message browser, impact of a mapping change).';
`,
  },
  {
    id: 3,
    name: 'FHIR adapter cursors and bulk exports',
    sql: `
CREATE TABLE fhir_cursor (
  member_id text NOT NULL,
  channel_id text NOT NULL,
  resource_type text NOT NULL,
  last_updated text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (member_id, channel_id, resource_type)
);
COMMENT ON TABLE fhir_cursor IS 'Incremental REST pull: per (member, channel, resource type) the _lastUpdated the next pull starts from (ge, so ties at the boundary are re-read and deduped by the raw store). Written only after the page it comes from is in the raw store.';

CREATE TABLE fhir_bulk_export (
  id bigserial PRIMARY KEY,
  member_id text NOT NULL,
  channel_id text NOT NULL,
  kickoff_url text NOT NULL,
  status_url text,
  transaction_time text,
  state text NOT NULL CHECK (state IN ('requested', 'imported', 'failed')),
  files_done text[] NOT NULL DEFAULT '{}',
  detail jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz
);
COMMENT ON TABLE fhir_bulk_export IS 'Bulk Data $export jobs: a crashed import resumes polling the same status URL and skips files already imported; the transactionTime of the last imported export is the next _since.';
CREATE INDEX fhir_bulk_export_channel ON fhir_bulk_export (member_id, channel_id, id);
COMMENT ON INDEX fhir_bulk_export_channel IS 'The latest export of a channel (resume, and _since of the next one).';
`,
  },
  {
    id: 4,
    name: 'terminology: ConceptMap versions, governance trail, unmapped worklist, coverage counters, reprocess jobs',
    sql: terminologySchemaSql,
  },
  {
    id: 5,
    name: 'master patient index: golden patients, links, review, history, model',
    sql: patientIndexSchemaSql,
  },
  {
    id: 6,
    name: 'master patient index: source patients by change time',
    sql: patientIndexChangesSql,
  },
  {
    id: 7,
    name: 'mutual recognition: rule versions, recognition index, check log',
    sql: recognitionSchemaSql,
  },
  {
    id: 8,
    name: 'cost event feed: append-only event log, builder state',
    sql: costFeedSchemaSql,
  },
  {
    id: 9,
    name: 'terminology: one runner per reprocess job (lease with heartbeat)',
    sql: reprocessLeaseSql,
  },
  {
    id: 10,
    name: 'master patient index: the safety-net sync starts by index; per-field event times of source patients',
    sql: patientIndexFollowSql,
  },
  {
    id: 11,
    name: 'operations console: hourly rollup of channel counters',
    sql: consoleSchemaSql,
  },
  {
    id: 12,
    name: 'unified shared resources: stable unified records, member sources and their match evidence',
    sql: sharedResourceSchemaSql,
  },
  {
    id: 13,
    name: 'fix-and-replay: a corrected message is a new raw message linked to its original, which is marked fixed',
    sql: `
ALTER TABLE raw_message DROP CONSTRAINT raw_message_status_check;
ALTER TABLE raw_message ADD CONSTRAINT raw_message_status_check CHECK (status IN ('queued', 'processed', 'quarantined', 'failed', 'fixed'));
COMMENT ON COLUMN raw_message.status IS 'queued → processed, or quarantined (bad input) / failed (retries exhausted); fixed: a person stored a corrected copy as a new message (raw_message_fix) — the bytes here stay as received, and replay no longer selects it.';
ALTER TABLE quarantine DROP CONSTRAINT quarantine_state_check;
ALTER TABLE quarantine ADD CONSTRAINT quarantine_state_check CHECK (state IN ('open', 'replayed', 'resolved', 'fixed'));
COMMENT ON COLUMN quarantine.state IS 'open (a dead letter); replayed (the message ran again); fixed (a corrected copy was stored and sent through the pipeline instead).';

CREATE TABLE raw_message_fix (
  original_id bigint PRIMARY KEY REFERENCES raw_message(id),
  fix_id bigint NOT NULL REFERENCES raw_message(id),
  fixed_by text NOT NULL,
  fixed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  comment text NOT NULL CHECK (comment <> '')
);
COMMENT ON TABLE raw_message_fix IS 'Fix-and-replay: the raw store never rewrites bytes, so a corrected message is stored as a new raw message of the same member and channel; this row links it to the original, with who fixed it, when and why. One fix per original (the key): fixing a fixed message is refused. Never updated.';
CREATE UNIQUE INDEX raw_message_fix_fix ON raw_message_fix (fix_id);
COMMENT ON INDEX raw_message_fix_fix IS 'A message page shows which original a fix corrects; a message corrects at most one original.';
`,
  },
  {
    id: 14,
    name: 'master patient index: how many different people carry each phone, address and identifier (term frequencies of shared values); the sync cursor as an index range',
    sql: patientIndexSharedValuesSql,
  },
  {
    id: 15,
    name: 'master patient index: a number per write under the matcher\'s lock (a bulk sync keeps the blocks it read while nobody else writes)',
    sql: patientIndexWritesSql,
  },
  {
    id: 16,
    name: 'master patient index: an index on merged golden patients (a bridge join repoints them)',
    sql: patientIndexMergedSql,
  },
  {
    id: 17,
    name: 'mutual recognition: a DiagnosticReport that contains a result Observation of its own code is not a result (rows derived before are deleted)',
    // The sync applies the rule from now on (hub/recognition/resultIndex.ts); rows it derived before
    // would otherwise stay until their report changes, and be listed, reported and priced as results.
    sql: `${DELETE_CONTAINER_REPORTS_SQL};\n`,
  },
  {
    id: 18,
    name: 'FHIR API: resource versions (vread, _history), golden patient versions, golden patient search text',
    sql: fhirApiSchemaSql,
  },
  {
    id: 19,
    name: 'master patient index: a version number of the stored match model (every process reloads it when it moves)',
    sql: patientIndexModelVersionSql,
  },
  {
    id: 20,
    name: 'master patient index: the version of the record each source was matched with (a full sync re-derives older ones)',
    sql: patientIndexRecordVersionSql,
  },
  {
    id: 21,
    name: 'pipeline lag: when a message was put back to queued, and an index on the queued messages by how long they have waited',
    sql: pipelineLagSql,
  },
  {
    id: 22,
    name: 'master patient index: the Patient-by-identifier index without a pending list (every ADT rewrites its Patient; each look-up scanned the list)',
    sql: patientIdentifierIndexSql,
  },
];

export async function migrate(db: HubDb): Promise<void> {
  // Every command opens the store; almost always the schema is current, and one read says so
  // without the transaction, the lock and the DDL below (a `yilian status` on PGlite spent 150 ms there).
  if (await schemaIsCurrent(db)) return;
  await db.transaction(async (tx) => {
    // A migration may rewrite or index large tables, and other starters wait for it: longer bounds
    // than the everyday ones of hub/db.ts (PGlite knows these settings too).
    await tx.query(`SET LOCAL statement_timeout = '30min'`);
    await tx.query(`SET LOCAL lock_timeout = '30min'`);
    // Transaction-scoped advisory lock: concurrent starters wait here, then see the work done.
    await tx.query(`SELECT pg_advisory_xact_lock(7317001)`);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migration (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await tx.query<{ id: number }>(`SELECT id FROM schema_migration`)).rows.map((r) => r.id));
    for (const migration of migrations) {
      if (done.has(migration.id)) continue;
      for (const statement of splitStatements(migration.sql)) await tx.query(statement);
      await tx.query(`INSERT INTO schema_migration (id, name) VALUES ($1, $2)`, [migration.id, migration.name]);
    }
  });
}

/** Whether every migration is applied; false also when the schema_migration table does not exist yet. */
async function schemaIsCurrent(db: HubDb): Promise<boolean> {
  try {
    const applied = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM schema_migration WHERE id = ANY($1::int[])`, [migrations.map((m) => m.id)]);
    return applied.rows[0]!.n === migrations.length;
  } catch {
    return false; // a new store (no table yet): the locked path below creates it, or says what is wrong
  }
}

/** Statements end with ';' at a line end; our migrations hold no functions with inner semicolons. */
function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*\n/)
    .map((s) => s.trim())
    .filter(Boolean);
}
