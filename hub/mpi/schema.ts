/**
 * Schema of the master patient index (migration 5 in hub/migrations.ts). Kept here, next to the
 * code that owns these tables; the migration list only orders it.
 */
export const patientIndexSchemaSql = `
CREATE TABLE mpi_golden (
  id text PRIMARY KEY,
  state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'merged', 'empty')),
  merged_into text REFERENCES mpi_golden(id),
  survivor jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE mpi_golden IS 'Enterprise (golden) patients: the id is issued once and never changes or is reused; a merged one keeps pointing at its survivor (merged_into) so old references still resolve. survivor holds the demographics chosen per field by the survivorship rules, each with the source it came from.';

CREATE TABLE mpi_source (
  member_id text NOT NULL,
  mrn text NOT NULL,
  record jsonb NOT NULL,
  block_keys text[] NOT NULL,
  patient_resource_id text,
  event_time timestamptz,
  source_updated_at timestamptz NOT NULL,
  matched_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (member_id, mrn)
);
COMMENT ON TABLE mpi_source IS 'Each source patient (member + MRN) as the matcher saw it: the identity record compared, its blocking keys, the converted Patient resource it corresponds to, and the source_patient.updated_at it reflects (newer means: match again).';
CREATE INDEX mpi_source_blocks ON mpi_source USING gin (block_keys) WITH (fastupdate = off);
COMMENT ON INDEX mpi_source_blocks IS 'Blocking: candidates of a record are the sources sharing one of its keys, found without a scan. fastupdate off: matching reads its own fresh inserts at once, and a pending list would be scanned whole on every look-up.';
CREATE INDEX mpi_source_resource ON mpi_source (patient_resource_id);
COMMENT ON INDEX mpi_source_resource IS 'From a clinical resource''s subject (a member''s Patient id) to the golden patient.';

CREATE TABLE mpi_link (
  member_id text NOT NULL,
  mrn text NOT NULL,
  golden_id text NOT NULL REFERENCES mpi_golden(id),
  state text NOT NULL CHECK (state IN ('MATCH', 'POSSIBLE_MATCH', 'NO_MATCH')),
  mode text NOT NULL CHECK (mode IN ('AUTO', 'MANUAL')),
  rule text,
  score double precision,
  breakdown jsonb NOT NULL DEFAULT '{}',
  decided_by text,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (member_id, mrn, golden_id)
);
COMMENT ON TABLE mpi_link IS 'The patient index: source patient → golden patient with state (MATCH: is this person; POSSIBLE_MATCH: awaiting review; NO_MATCH: is not) and mode (AUTO by the matcher, MANUAL by a person — the matcher never changes a MANUAL row). Exactly one MATCH per source. score and breakdown explain the decision.';
CREATE UNIQUE INDEX mpi_link_one_match ON mpi_link (member_id, mrn) WHERE state = 'MATCH';
COMMENT ON INDEX mpi_link_one_match IS 'A source patient belongs to exactly one golden patient.';
CREATE INDEX mpi_link_golden ON mpi_link (golden_id, state);
COMMENT ON INDEX mpi_link_golden IS 'The sources of a golden patient; its review items and not-links.';
CREATE INDEX mpi_link_review ON mpi_link (updated_at) WHERE state = 'POSSIBLE_MATCH';
COMMENT ON INDEX mpi_link_review IS 'The review queue, oldest first.';

CREATE TABLE mpi_history (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor text NOT NULL,
  action text NOT NULL,
  golden_id text,
  member_id text,
  mrn text,
  detail jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE mpi_history IS 'Append-only history of the index: golden patients created, sources linked and moved, reviews decided, goldens merged (member A40 merges and manual links). Never updated.';
CREATE INDEX mpi_history_golden ON mpi_history (golden_id, id);
COMMENT ON INDEX mpi_history_golden IS 'A golden patient''s merge and link history.';

CREATE TABLE mpi_model (
  id integer PRIMARY KEY CHECK (id = 1),
  model jsonb NOT NULL,
  trained_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE mpi_model IS 'The Fellegi–Sunter parameters trained on this hub''s own source patients (yilian mpi train); absent: the built-in defaults.';

CREATE INDEX resource_patient_identifier ON resource USING gin ((content->'identifier') jsonb_path_ops) WHERE resource_type = 'Patient';
COMMENT ON INDEX resource_patient_identifier IS 'Finds a member''s converted Patient by its MRN (the patient index reads the resident ID and the resource id from it).';
CREATE INDEX resource_subject ON resource ((coalesce(content->'subject'->>'reference', content->'patient'->>'reference')));
COMMENT ON INDEX resource_subject IS 'A patient''s clinical resources (FHIR search by patient, $everything) without a scan.';
`;

/**
 * Migration 6 (added after migration 5 was released; migrations are never edited): the sync
 * filters source_patient by change time with an index probe instead of a scan.
 */
export const patientIndexChangesSql = `
CREATE INDEX source_patient_updated ON source_patient (updated_at);
COMMENT ON INDEX source_patient_updated IS 'The patient index finds source patients changed since its last sync without scanning them all.';
`;

/**
 * Migration 10. The pipeline now links each source patient as its message is processed, and the
 * sync that backs it up (`yilian serve`, every 5 s) starts from the newest source it has matched:
 * without this index that is a scan of mpi_source every 5 s (a million rows at scale). And each
 * demographic field's event time, so that the merge stage's result is order-independent per field.
 */
export const patientIndexFollowSql = `
CREATE INDEX mpi_source_updated ON mpi_source (source_updated_at);
ALTER TABLE source_patient ADD COLUMN field_times jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN source_patient.field_times IS 'Per demographic field, the [event time, raw id] of the message that set it: the merge stage lets a late older message fill only fields no newer one stated, so the state (and the patient index match) does not depend on arrival order.';
COMMENT ON INDEX mpi_source_updated IS 'The safety-net sync finds the newest source it has matched (max(source_updated_at)) with one index probe instead of a scan.';
`;

/**
 * Migration 14: the population's own term frequencies of contact data and identifiers (hub/mpi/
 * sharedValues.ts). A registration desk types one placeholder phone (13800138000) or its own
 * address for many different people; agreeing on such a value must weigh less, down to nothing.
 * Filled as sources are matched; sources matched before this migration are counted by the next
 * sync (the marker row below).
 */
export const patientIndexSharedValuesSql = `
CREATE TABLE mpi_shared_person (
  field text NOT NULL,
  value text NOT NULL,
  person text NOT NULL,
  member_id text NOT NULL,
  mrn text NOT NULL,
  PRIMARY KEY (field, value, person)
);
COMMENT ON TABLE mpi_shared_person IS 'Which different people (by the sound keys of their names) have carried each phone, address, e-mail, resident ID or other identifier (normalised as the matcher compares them), with the first source seen carrying it: when a value turns out to be shared (more people than a household), those sources are matched again, so links made on it while it still looked like one household''s are undone. Only grows: a value a person stops using still counts them (a slight overcount, on the side of caution).';

CREATE TABLE mpi_shared_value (
  field text NOT NULL,
  value text NOT NULL,
  people integer NOT NULL,
  PRIMARY KEY (field, value)
);
COMMENT ON TABLE mpi_shared_value IS 'Per value: how many different people carry it (rows of mpi_shared_person, kept in step in the same statement). The matcher reads the values of a record and its candidates that more people carry than a household. A row with field ''#backfill'' means: sources matched before these counts existed are still to be counted (the sync does it, then deletes the row).';
CREATE INDEX source_patient_changes ON source_patient (updated_at, member_id, mrn);
COMMENT ON INDEX source_patient_changes IS 'The sync''s keyset cursor (updated_at, member, mrn) as an index range: a bulk load stores thousands of source patients with one updated_at, and on updated_at alone every batch sorted all the rows after the cursor (quadratic: 219 ms a batch at 200,000 records).';
DROP INDEX source_patient_updated;
CREATE INDEX mpi_shared_value_shared ON mpi_shared_value (field, value) INCLUDE (people) WHERE people > 4;
COMMENT ON INDEX mpi_shared_value_shared IS 'The values more people carry than a household (HOUSEHOLD in hub/mpi/matcher.ts): a bulk match reads them all at once.';
INSERT INTO mpi_shared_value (field, value, people) SELECT '#backfill', '', 0 WHERE EXISTS (SELECT 1 FROM mpi_source);
`;

/**
 * Migration 15: a number per write to the index under the matcher's exclusive lock
 * (hub/mpi/blockCache.ts): a bulk sync keeps the blocks it has read between its batches only while
 * nobody else took one.
 */
export const patientIndexWritesSql = `
CREATE SEQUENCE mpi_index_writes;
COMMENT ON SEQUENCE mpi_index_writes IS 'Taken by every transaction that writes the patient index under the matcher''s exclusive advisory lock, after taking the lock (so in the order of lock holders): a sync whose next batch finds a number it did not take was overtaken (a pipeline link, a review decision) and reads the index''s blocks again instead of its copy.';
`;

/**
 * Migration 16: golden patients merged into one (`mergeGolden` repoints them when that one is
 * merged in turn). Joins by bridges (hub/mpi/matcher.ts `bridgedGoldens`) made this a scan of all
 * of mpi_golden per join: in a 1M bulk sync PostgreSQL ran it for most of the time.
 */
export const patientIndexMergedSql = `
CREATE INDEX mpi_golden_merged_into ON mpi_golden (merged_into) WHERE merged_into IS NOT NULL;
COMMENT ON INDEX mpi_golden_merged_into IS 'Golden patients merged into another: a merge repoints those merged into the retired one (kept final, so an old id resolves in one step).';
`;

/**
 * Migration 19: a version number for the stored model (hub/mpi/model.ts). Every process reads this
 * small row before it matches and reloads the model only when the number moved, so a model stored
 * by `yilian mpi train` is the one every process matches with from its next transaction on (before:
 * a per-process copy kept up to 10 s), and `yilian mpi rematch` / `stats` can say which model made
 * the links.
 */
export const patientIndexModelVersionSql = `
ALTER TABLE mpi_model ADD COLUMN version integer NOT NULL DEFAULT 1;
COMMENT ON COLUMN mpi_model.version IS 'Raised by one each time yilian mpi train stores a model: the key of every process''s cached copy of the model, and the version yilian mpi rematch and stats report.';
`;

/**
 * Migration 20: the version of `recordOfSource` each source was matched with (hub/mpi/sourceRecord.ts
 * `RECORD_VERSION`): sources matched by an older one are dirty for `yilian mpi sync --full`, which
 * re-derives their records (identities, e-mail, city, postcode since version 2) and matches them again.
 */
export const patientIndexRecordVersionSql = `
ALTER TABLE mpi_source ADD COLUMN record_version integer NOT NULL DEFAULT 1;
COMMENT ON COLUMN mpi_source.record_version IS 'The version of the reading of source patients (recordOfSource) the stored record was made with; an older one is matched again by a full sync.';
`;

/**
 * Migration 22: the Patient-by-identifier index without a pending list. Every ADT rewrites its
 * Patient (a new index entry each time), so with fastupdate on the look-up the patient index makes
 * per source (sourceRecord.ts SOURCE_SELECT) scanned up to 4 MB of pending entries: 4.1 ms per
 * probe for 7 rows, 256 ms per link round of ~200 sources, 29 s of PostgreSQL's time in a
 * 20,000-message run (bench/pipeline.ts with pg_stat_statements and auto_explain). Turning it off
 * does not empty the list already there; gin_clean_pending_list does.
 */
export const patientIdentifierIndexSql = `
ALTER INDEX resource_patient_identifier SET (fastupdate = off);
SELECT gin_clean_pending_list('resource_patient_identifier'::regclass);
`;
