/** The one place that writes audit events: every read of patient data goes through here. */
import type { Sql } from './sql';

export interface AuditEntry {
  actor: string;
  /** `fix`: a person stored a corrected copy of a message (pipeline/fix.ts). */
  action: 'read' | 'search' | 'replay' | 'export' | 'fix';
  entityType: string;
  entityId: string;
  patientKey?: string | null;
  detail?: Record<string, unknown>;
}

export async function recordAudit(db: Sql, entry: AuditEntry): Promise<void> {
  await db.query(`INSERT INTO audit_event (actor, action, entity_type, entity_id, patient_key, detail) VALUES ($1, $2, $3, $4, $5, $6)`, [
    entry.actor,
    entry.action,
    entry.entityType,
    entry.entityId,
    entry.patientKey ?? null,
    JSON.stringify(entry.detail ?? {}),
  ]);
}

/**
 * One read that returned data of several patients: one event per patient (so "who read this
 * patient's data" finds it), or a single event without a patient when none was returned, written
 * in one statement however many patients a page holds.
 */
export async function recordAuditForPatients(db: Sql, entry: Omit<AuditEntry, 'patientKey'>, patientKeys: Iterable<string | null | undefined>): Promise<void> {
  const keys = [...new Set([...patientKeys].filter((k): k is string => !!k))];
  await db.query(
    `INSERT INTO audit_event (actor, action, entity_type, entity_id, patient_key, detail) SELECT $1::text, $2::text, $3::text, $4::text, k, $6::jsonb FROM unnest($5::text[]) AS k`,
    [entry.actor, entry.action, entry.entityType, entry.entityId, keys.length ? keys : [null], JSON.stringify(entry.detail ?? {})],
  );
}
