/**
 * vread and `_history` (R4 http §3.1.0.4, §3.1.0.12) from the stored versions (migration 18):
 * a clinical resource's current row and the versions updates replaced (resource_history, kept by a
 * trigger on `resource`), a golden patient's versions as the survivorship changed them
 * (golden_version; its links to source records are today's, not versioned). Versions replaced
 * before migration 18 were not kept: a history then starts at the version current at that time.
 * Type-level and system-level history are not offered.
 */
import type { Sql } from '../hub/sql';
import type { GoldenDemographics } from '../hub/mpi/survivorship';
import type { GoldenPatient } from '../hub/mpi/review';
import { HubError } from '../mappings/outcome';

/** A row of the `resource` table (or one of its earlier versions) as the FHIR API reads it. */
export interface ResourceRow {
  resource_type: string;
  id: string;
  member_id: string;
  version: number;
  content: Record<string, unknown>;
  updated_at: Date;
}

/** Versions of a clinical resource, newest first (`version`: that one only): the current row, then the replaced ones. */
export async function resourceVersions(db: Sql, type: string, id: string, version?: number, limit = 100): Promise<ResourceRow[]> {
  const rows = await db.query<ResourceRow>(
    `SELECT * FROM (
       SELECT resource_type, id, member_id, version, content, updated_at FROM resource WHERE resource_type = $1 AND id = $2
       UNION ALL
       SELECT resource_type, id, member_id, version, content, recorded_at FROM resource_history WHERE resource_type = $1 AND id = $2
     ) v WHERE ($3::int IS NULL OR version = $3) ORDER BY version DESC LIMIT ${limit}`,
    [type, id, version ?? null],
  );
  // A version kept in history and current at once (a writer that changed a row without counting a
  // version): the current row is what that version is now.
  return rows.rows.filter((r, i) => i === 0 || r.version !== rows.rows[i - 1]!.version);
}

export interface GoldenVersion {
  version: number;
  state: string;
  mergedInto: string | null;
  survivor: GoldenDemographics;
  recordedAt: Date;
}

/** Versions of a golden patient, newest first. */
export async function goldenVersions(db: Sql, id: string, version?: number, limit = 100): Promise<GoldenVersion[]> {
  const rows = await db.query<{ version: number; state: string; merged_into: string | null; survivor: GoldenDemographics; recorded_at: Date }>(
    `SELECT version, state, merged_into, survivor, recorded_at FROM golden_version WHERE golden_id = $1 AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT ${limit}`,
    [id, version ?? null],
  );
  return rows.rows.map((r) => ({ version: r.version, state: r.state, mergedInto: r.merged_into, survivor: r.survivor, recordedAt: r.recorded_at }));
}

/** The current version of each golden patient (meta.versionId, lastUpdated). */
export async function currentGoldenVersions(db: Sql, ids: string[]): Promise<Map<string, { version: number; at: Date }>> {
  if (!ids.length) return new Map();
  const rows = await db.query<{ golden_id: string; version: number; recorded_at: Date }>(
    `SELECT DISTINCT ON (golden_id) golden_id, version, recorded_at FROM golden_version WHERE golden_id = ANY($1::text[]) ORDER BY golden_id, version DESC`,
    [ids],
  );
  return new Map(rows.rows.map((r) => [r.golden_id, { version: r.version, at: r.recorded_at }]));
}

/** A past version of a golden patient as `goldenPatient` would have shown it (today's links). */
export function goldenAt(current: GoldenPatient, v: GoldenVersion): GoldenPatient {
  return { ...current, state: v.state, mergedInto: v.mergedInto, survivor: v.survivor };
}

/** The `{vid}` of `_history/{vid}`: a positive integer. */
export function versionParam(raw: string): number {
  if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1) throw new HubError('not-found', `version ${raw} not found`);
  return Number(raw);
}

/** A history Bundle (type `history`) of presented versions, newest first. */
export function historyBundle(self: string, entries: Array<{ resource: Record<string, unknown>; version: number; at: Date; created: boolean }>): Record<string, unknown> {
  return {
    resourceType: 'Bundle',
    type: 'history',
    total: entries.length,
    link: [{ relation: 'self', url: self }],
    entry: entries.map((e) => ({
      fullUrl: `${e.resource.resourceType}/${e.resource.id}`,
      resource: e.resource,
      request: { method: e.created ? 'POST' : 'PUT', url: e.created ? String(e.resource.resourceType) : `${e.resource.resourceType}/${e.resource.id}` },
      response: { status: e.created ? '201' : '200', lastModified: e.at.toISOString(), etag: `W/"${e.version}"` },
    })),
  };
}
