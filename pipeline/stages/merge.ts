/**
 * Stage "merge": apply an identified message to the hub, in one transaction with marking the raw
 * message processed. Idempotent: patient_event is keyed by raw id, so a redelivered or replayed
 * message changes nothing twice. Out-of-order safe: a source patient keeps the state of the latest
 * event time (ties: the later raw id), whatever order messages are applied in. A message states
 * only the fields it carries (an ORU has no address): those overwrite, the others are kept.
 */
import type { Sql } from '../../hub/db';
import type { IdentifiedMessage } from './identify';

export interface MergeContext {
  rawId: number;
  memberId: string;
  charset: string;
}

export async function mergeStage(tx: Sql, message: IdentifiedMessage, ctx: MergeContext): Promise<void> {
  const patient = message.patient;
  if (patient) {
    const logged = await tx.query(
      `INSERT INTO patient_event (raw_id, member_id, mrn, event_type, event_time, applied) VALUES ($1, $2, $3, $4, $5, false)
       ON CONFLICT (raw_id) DO NOTHING RETURNING raw_id`,
      [ctx.rawId, ctx.memberId, patient.mrn, message.eventType, message.eventTime ?? null],
    );
    if (logged.rowCount > 0) {
      const target = message.merge ? message.merge.survivor : patient;
      const applied = await upsertSourcePatient(tx, ctx, target, message.eventTime);
      if (message.merge) {
        await tx.query(
          `INSERT INTO source_patient (member_id, mrn, authority, demographics, event_time, last_raw_id, merged_into)
           VALUES ($1, $2, $3, '{}', $4, $5, $6)
           ON CONFLICT (member_id, mrn) DO UPDATE SET merged_into = excluded.merged_into, last_raw_id = excluded.last_raw_id, updated_at = clock_timestamp()`,
          [ctx.memberId, message.merge.retired.mrn, message.merge.retired.authority, message.eventTime ?? null, ctx.rawId, message.merge.survivor.mrn],
        );
      }
      if (applied) await tx.query(`UPDATE patient_event SET applied = true WHERE raw_id = $1`, [ctx.rawId]);
    }
  }
  await tx.query(`UPDATE raw_message SET status = 'processed', processed_at = clock_timestamp(), last_stage = 'merge', charset = $2 WHERE id = $1`, [ctx.rawId, ctx.charset]);
}

async function upsertSourcePatient(
  tx: Sql,
  ctx: MergeContext,
  patient: { mrn: string; authority: string; demographics: object },
  eventTime: Date | undefined,
): Promise<boolean> {
  const result = await tx.query(
    `INSERT INTO source_patient (member_id, mrn, authority, demographics, event_time, last_raw_id) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (member_id, mrn) DO UPDATE
        SET authority = excluded.authority, demographics = source_patient.demographics || excluded.demographics, event_time = excluded.event_time,
            last_raw_id = excluded.last_raw_id, updated_at = clock_timestamp()
      WHERE source_patient.event_time IS NULL OR excluded.event_time IS NULL
         OR (excluded.event_time, excluded.last_raw_id) >= (source_patient.event_time, source_patient.last_raw_id)
     RETURNING 1`,
    [ctx.memberId, patient.mrn, patient.authority, JSON.stringify(patient.demographics), eventTime ?? null, ctx.rawId],
  );
  return result.rowCount > 0;
}
