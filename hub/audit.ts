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
