/**
 * Migration 4 (hub/migrations.ts): the terminology service's tables — ConceptMap versions and the
 * governance trail, the unmapped worklist, coverage counters, reprocess jobs — and the trigger
 * that feeds the worklist and counters from what the merge writes. Kept in its own module so the
 * SQL sits next to the code that reads it (hub/terminology/versions.ts, workflow.ts, impact.ts, reprocess.ts, worklist.ts); never edited once released.
 *
 * Why a trigger: the stage "map" is pure and the merge is one statement; counting in the same
 * statement's trigger makes the worklist exactly as durable and as idempotent as the resource
 * write itself (a replayed message that changes no resource counts nothing) without another round
 * trip. Statement-level with transition tables, rows ordered, so concurrent merges lock counter
 * rows in one order (no deadlocks) and one merge costs one counter upsert per distinct code.
 */
import { MAPPED_SOURCE_URL, UNMAPPED_SOURCE_URL } from '../../mappings/terminology/systems';

/** The elements of the changed rows' meta that the map stage wrote; `changed` is defined by the caller. */
const countFromChanged = `
WITH elements AS (
  SELECT c.member_id, coalesce(r.channel_id, '') AS channel_id, c.raw_id, e->>'url' = '${MAPPED_SOURCE_URL}' AS mapped,
         e->'valueCoding'->>'system' AS system, e->'valueCoding'->>'code' AS code, e->'valueCoding'->>'display' AS display
    FROM changed c
    LEFT JOIN raw_message r ON r.id = c.raw_id
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(c.content->'meta'->'extension') = 'array' THEN c.content->'meta'->'extension' ELSE '[]'::jsonb END) AS e
   WHERE e->>'url' IN ('${MAPPED_SOURCE_URL}', '${UNMAPPED_SOURCE_URL}') AND e->'valueCoding'->>'system' IS NOT NULL AND e->'valueCoding'->>'code' IS NOT NULL
), counted AS (
  INSERT INTO coded_element_day (day, member_id, channel_id, system, code, mapped, occurrences)
  SELECT current_date, member_id, channel_id, system, code, mapped, count(*) FROM elements
   GROUP BY member_id, channel_id, system, code, mapped ORDER BY member_id, channel_id, system, code, mapped
  ON CONFLICT (day, member_id, channel_id, system, code, mapped) DO UPDATE SET occurrences = coded_element_day.occurrences + excluded.occurrences
  RETURNING 1
)
INSERT INTO unmapped_code (member_id, system, code, display, occurrences, first_seen, last_seen, example_raw_id)
SELECT member_id, system, code, max(display), count(*), clock_timestamp(), clock_timestamp(), max(raw_id) FROM elements WHERE NOT mapped
 GROUP BY member_id, system, code ORDER BY member_id, system, code
ON CONFLICT (member_id, system, code) DO UPDATE
   SET occurrences = unmapped_code.occurrences + excluded.occurrences, last_seen = excluded.last_seen,
       display = coalesce(unmapped_code.display, excluded.display), example_raw_id = excluded.example_raw_id,
       state = 'open', resolved_at = NULL`;

/** One line: the migration runner splits statements at a ';' that ends a line. */
const oneLine = (sql: string) => sql.replace(/\s*\n\s*/g, ' ');

export const terminologySchemaSql = `
CREATE TABLE concept_map_version (
  url text NOT NULL,
  version integer NOT NULL,
  map_id text NOT NULL,
  status text NOT NULL CHECK (status IN ('active', 'superseded', 'retired')),
  content jsonb NOT NULL,
  origin text NOT NULL CHECK (origin IN ('shipped', 'import', 'proposal', 'retirement')),
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  comment text NOT NULL DEFAULT '',
  proposal_id bigint,
  PRIMARY KEY (url, version)
);
COMMENT ON TABLE concept_map_version IS 'Every version of every ConceptMap (FHIR R4 JSON), who made it, when and why: governance history and the source of the terminology every process maps with. A resource''s mapping_versions name rows of this table.';
CREATE UNIQUE INDEX concept_map_version_active ON concept_map_version (url) WHERE status = 'active';
COMMENT ON INDEX concept_map_version_active IS 'At most one active version per map; processes load exactly these.';

CREATE TABLE mapping_proposal (
  id bigserial PRIMARY KEY,
  concept_map_url text NOT NULL,
  source_system text NOT NULL,
  source_code text NOT NULL,
  source_display text,
  target_system text NOT NULL,
  target_code text,
  target_display text,
  equivalence text NOT NULL,
  state text NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'retired')),
  base_version integer,
  result_version integer,
  proposed_by text NOT NULL,
  proposed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  comment text NOT NULL DEFAULT ''
);
COMMENT ON TABLE mapping_proposal IS 'A proposed mapping of one source code (proposed → approved / rejected; approved → retired). Approving or retiring makes a new ConceptMap version; nothing is ever auto-approved.';
CREATE INDEX mapping_proposal_state ON mapping_proposal (state, id);
COMMENT ON INDEX mapping_proposal_state IS 'The committee''s queue of open proposals.';

CREATE TABLE mapping_event (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor text NOT NULL,
  action text NOT NULL CHECK (action IN ('seed', 'import', 'propose', 'approve', 'reject', 'retire', 'reprocess')),
  concept_map_url text,
  version integer,
  proposal_id bigint REFERENCES mapping_proposal(id),
  comment text NOT NULL DEFAULT '',
  detail jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE mapping_event IS 'The governance audit trail: who imported, proposed, approved, rejected, retired or reprocessed what, when, with which comment. Append-only.';
CREATE INDEX mapping_event_map ON mapping_event (concept_map_url, id);
COMMENT ON INDEX mapping_event_map IS 'A map''s history.';
CREATE INDEX mapping_event_proposal ON mapping_event (proposal_id) WHERE proposal_id IS NOT NULL;
COMMENT ON INDEX mapping_event_proposal IS 'A proposal''s steps.';

CREATE TABLE unmapped_code (
  member_id text NOT NULL,
  system text NOT NULL,
  code text NOT NULL,
  display text,
  occurrences bigint NOT NULL,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  example_raw_id bigint,
  state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
  resolved_at timestamptz,
  PRIMARY KEY (member_id, system, code)
);
COMMENT ON TABLE unmapped_code IS 'The committee''s worklist: source codes (and units) no approved map covered when a record was stored, how often, first/last seen, an example raw message. Fed by the resource trigger; resolved when a mapping for the code is approved.';
CREATE INDEX unmapped_code_open ON unmapped_code (state, occurrences DESC);
COMMENT ON INDEX unmapped_code_open IS 'Open worklist, most frequent first.';

CREATE TABLE coded_element_day (
  day date NOT NULL,
  member_id text NOT NULL,
  channel_id text NOT NULL,
  system text NOT NULL,
  code text NOT NULL,
  mapped boolean NOT NULL,
  occurrences bigint NOT NULL,
  PRIMARY KEY (day, member_id, channel_id, system, code, mapped)
);
COMMENT ON TABLE coded_element_day IS 'Coverage counters: coded elements stored per day, member, channel and source code, mapped or not when stored. Coverage and its trend are sums over this table, never a scan of resources.';

CREATE TABLE reprocess_job (
  id bigserial PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('running', 'done', 'failed')),
  source_codes jsonb NOT NULL,
  reason text NOT NULL DEFAULT '',
  total integer NOT NULL DEFAULT 0,
  done integer NOT NULL DEFAULT 0,
  changed integer NOT NULL DEFAULT 0,
  last_type text,
  last_id text,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  error text
);
COMMENT ON TABLE reprocess_job IS 'Re-deriving stored resources after a mapping change: which source codes, progress (done/total, changed), and the last key done so a stopped job resumes where it was.';

CREATE INDEX resource_mapping_sources ON resource USING gin (jsonb_path_query_array(content, '$.meta.extension[*].valueCoding.code'));
COMMENT ON INDEX resource_mapping_sources IS 'Which stored resources carry a given source code (impact dry run and reprocess of a mapping change) without scanning every resource. Only the codes are keys (a few per resource, cheap for the merge); the system is checked on the rows found.';

CREATE FUNCTION terminology_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${oneLine(`WITH changed AS (SELECT member_id, raw_id, content FROM new_rows), ${countFromChanged.trim().replace(/^WITH /, '')}`)}; RETURN NULL; END $$;
COMMENT ON FUNCTION terminology_count_inserted() IS 'Counts the coded elements of newly stored resources into coverage counters and the unmapped worklist.';
CREATE FUNCTION terminology_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${oneLine(`WITH changed AS (SELECT n.member_id, n.raw_id, n.content FROM new_rows n JOIN old_rows o ON o.resource_type = n.resource_type AND o.id = n.id WHERE o.raw_id IS DISTINCT FROM n.raw_id), ${countFromChanged.trim().replace(/^WITH /, '')}`)}; RETURN NULL; END $$;
COMMENT ON FUNCTION terminology_count_updated() IS 'As terminology_count_inserted, for resources a newer message replaced; re-derivations (reprocess, same raw id) are not new occurrences.';
CREATE TRIGGER resource_count_inserted AFTER INSERT ON resource REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION terminology_count_inserted();
CREATE TRIGGER resource_count_updated AFTER UPDATE ON resource REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION terminology_count_updated();
`;

/**
 * Migration 9: a reprocess job has one runner at a time. A runner takes the job by writing its id
 * and a lease end; it extends the lease with every batch it commits (and on a timer between), and
 * every progress write is conditional on still holding the lease, so a runner that lost it (paused
 * past the lease) stops instead of writing beside the new one. A crashed runner's lease runs out
 * and the next runner resumes from the last key.
 */
export const reprocessLeaseSql = `
ALTER TABLE reprocess_job ADD COLUMN runner text;
ALTER TABLE reprocess_job ADD COLUMN lease_until timestamptz;
COMMENT ON COLUMN reprocess_job.runner IS 'Who runs the job now (host:pid:random); with lease_until, enforces one runner per job.';
COMMENT ON COLUMN reprocess_job.lease_until IS 'The runner''s lease: extended by its heartbeat; after it passes, another runner may take the job and resume from the last key.';
`;
