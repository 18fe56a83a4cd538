/**
 * Schema of mutual recognition (migration 7 in hub/migrations.ts): recognition rules as governed,
 * versioned data with their decision trail; the recognition index derived from stored results; the
 * log of checks (for the recognition rate). Kept here, next to the code that owns these tables.
 */
export const recognitionSchemaSql = `
CREATE TABLE recognition_rule (
  code text NOT NULL,
  version integer NOT NULL,
  status text NOT NULL CHECK (status IN ('proposed', 'approved', 'superseded', 'rejected', 'retired')),
  content jsonb NOT NULL,
  origin text NOT NULL DEFAULT 'set',
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  comment text NOT NULL DEFAULT '',
  decided_by text,
  decided_at timestamptz,
  valid_from timestamptz,
  valid_to timestamptz,
  PRIMARY KEY (code, version)
);
COMMENT ON TABLE recognition_rule IS 'Recognition rules per standard test or imaging code, versioned like ConceptMaps: proposed → approved (in force from valid_from) → superseded / retired (valid_to), or rejected. The shipped set is version 1, in force since -infinity, so results older than the hub are judged by it. Never updated except for the status, decision and validity columns.';
CREATE UNIQUE INDEX recognition_rule_current ON recognition_rule (code) WHERE status = 'approved';
COMMENT ON INDEX recognition_rule_current IS 'At most one approved (in force) version per code.';

CREATE TABLE recognition_rule_event (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor text NOT NULL,
  action text NOT NULL,
  code text NOT NULL,
  version integer,
  comment text NOT NULL DEFAULT '',
  detail jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE recognition_rule_event IS 'Append-only trail of rule decisions (seed, set, propose, approve, reject, retire): who, when, why. Its max id is also the cache key of the rule book each process holds.';
CREATE INDEX recognition_rule_event_code ON recognition_rule_event (code, id);
COMMENT ON INDEX recognition_rule_event_code IS 'A rule''s history.';

CREATE TABLE recognition_result (
  resource_type text NOT NULL,
  resource_id text NOT NULL,
  code text NOT NULL,
  member_id text NOT NULL,
  patient_id text NOT NULL,
  effective_at timestamptz NOT NULL,
  value double precision,
  unit text,
  original_value double precision,
  original_unit text,
  status text NOT NULL,
  specimen text,
  lab text,
  source_updated_at timestamptz NOT NULL,
  PRIMARY KEY (resource_type, resource_id, code)
);
COMMENT ON TABLE recognition_result IS 'The recognition index: one row per stored result (Observation, DiagnosticReport, ImagingStudy) and standard code, derived from the resource table by hub/recognition/resultIndex.ts (re-derivable at any time, idempotent). patient_id is the member''s Patient resource id; golden patients are resolved through the MPI at query time so links and merges count at once.';
CREATE INDEX recognition_result_patient ON recognition_result (patient_id, code, effective_at DESC);
COMMENT ON INDEX recognition_result_patient IS 'The check: a patient''s results for a code, newest first, in one index probe per source patient.';
CREATE INDEX recognition_result_time ON recognition_result (effective_at);
COMMENT ON INDEX recognition_result_time IS 'The duplicate report and the cost feed restricted to a time range.';

CREATE TABLE recognition_sync (
  id integer PRIMARY KEY CHECK (id = 1),
  watermark timestamptz NOT NULL,
  synced_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE recognition_sync IS 'How far the recognition index has read the resource table (resource.updated_at); each sync re-reads a short overlap before it, which is harmless because deriving is idempotent.';

CREATE INDEX resource_recognition_changes ON resource (updated_at) WHERE resource_type IN ('Observation', 'DiagnosticReport', 'ImagingStudy');
COMMENT ON INDEX resource_recognition_changes IS 'The recognition index finds results changed since its last sync without scanning every resource.';

CREATE TABLE recognition_check (
  id bigserial PRIMARY KEY,
  checked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  at timestamptz NOT NULL,
  actor text NOT NULL,
  requesting_member text NOT NULL,
  golden_id text,
  code text NOT NULL,
  recognisable boolean NOT NULL,
  result_resource_id text,
  result_member text,
  expires_at timestamptz
);
COMMENT ON TABLE recognition_check IS 'Every test asked about in POST /recognition/check and whether a recognisable result was offered: a check that found one and was not followed by a repeat at the requesting member before it expired counts as recognised (the recognition rate, the avoided cost).';
CREATE INDEX recognition_check_at ON recognition_check (at);
COMMENT ON INDEX recognition_check_at IS 'Recognition totals for a period.';
`;
