/**
 * Schema of the unified shared resources (migration 12): the unified records with their stable ids
 * and each member source's link to one of them. SQL only; hub/migrations.ts applies it.
 */
export const sharedResourceSchemaSql = `
CREATE TABLE shared_unified (
  id text PRIMARY KEY,
  resource_type text NOT NULL,
  content jsonb NOT NULL,
  name_key text,
  identifiers text[] NOT NULL DEFAULT '{}',
  merged_into text REFERENCES shared_unified(id),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE shared_unified IS 'One row per shared thing (a device, an expert, a ward, a member organisation) however many members report it: a stable id issued once and never changed (a record merged into another keeps its row with merged_into, so its id still resolves) and the survived FHIR resource served by the API.';
COMMENT ON COLUMN shared_unified.name_key IS 'Normalised name of the survived record (simplified Hanzi, folded Latin): FHIR name search.';
COMMENT ON COLUMN shared_unified.identifiers IS 'system|value and |value of every identifier of every source: FHIR identifier search.';
CREATE INDEX shared_unified_type ON shared_unified (resource_type, id) WHERE merged_into IS NULL;
COMMENT ON INDEX shared_unified_type IS 'FHIR search lists the live unified records of one type in id order.';
CREATE INDEX shared_unified_identifiers ON shared_unified USING gin (identifiers);
COMMENT ON INDEX shared_unified_identifiers IS 'FHIR identifier search without a scan.';

CREATE TABLE shared_source (
  resource_type text NOT NULL,
  source_id text NOT NULL,
  member_id text NOT NULL,
  unified_id text NOT NULL REFERENCES shared_unified(id),
  strong_keys text[] NOT NULL DEFAULT '{}',
  weak_keys text[] NOT NULL DEFAULT '{}',
  rule text NOT NULL,
  evidence jsonb NOT NULL DEFAULT '{}',
  content jsonb NOT NULL,
  source_version integer NOT NULL DEFAULT 1,
  source_updated_at timestamptz NOT NULL,
  matched_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (resource_type, source_id)
);
COMMENT ON TABLE shared_source IS 'Each member''s report of a shared resource (a resource row, a member itself, or a role read from a message) and the unified record it belongs to, with the rule and evidence that put it there (explainable) and the content it was matched on (a changed version is matched again).';
CREATE INDEX shared_source_strong ON shared_source USING gin (strong_keys);
COMMENT ON INDEX shared_source_strong IS 'Candidates of a report sharing an identity key (serial, UDI, licence number), looked up apart from name keys so a common name never crowds them out.';
CREATE INDEX shared_source_weak ON shared_source USING gin (weak_keys);
COMMENT ON INDEX shared_source_weak IS 'Candidates of a report sharing a name key (capped per look-up).';
CREATE INDEX shared_source_updated ON shared_source (source_updated_at) WHERE source_id NOT LIKE 'member-%';
COMMENT ON INDEX shared_source_updated IS 'Where the next incremental sync starts: the newest resource report matched (members excluded: their time is the config load, not the resource table''s clock).';
CREATE INDEX shared_source_unified ON shared_source (unified_id);
COMMENT ON INDEX shared_source_unified IS 'The sources of a unified record (survivorship, merges).';

CREATE INDEX resource_shared_changes ON resource (updated_at) WHERE resource_type IN ('Organization', 'Location', 'Device', 'Practitioner', 'PractitionerRole', 'HealthcareService');
COMMENT ON INDEX resource_shared_changes IS 'The shared-resource sync finds reports changed since its last run with one probe; partial, so clinical rows pay nothing.';
`;
