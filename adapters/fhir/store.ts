/**
 * Stores a batch of incoming FHIR resources (a search page, a slice of an NDJSON file, a Bundle, a
 * notification) durably in the raw store — one statement for the batch, quarantine entries for the
 * unreadable ones in the same transaction — and then hands the stored ones to the pipeline queues.
 * Owns the FHIR side of "nothing is acknowledged before it is stored": a caller may move a cursor
 * or answer a notification only once `storeBatch` has resolved. If the enqueue fails, the messages
 * are safe (status queued) and the reconciler enqueues them later.
 *
 * Why not RawIntake: that class inspects HL7 v2 (MSH, charset, ACK); FHIR batches arrive already
 * grouped (a page is a natural group commit) and need no ACK.
 */
import type { HubDb } from '../../hub/sql';
import { addQuarantine, storeRawBatch } from '../../hub/rawStore';
import { metrics } from '../../hub/metrics';
import type { EnqueueItem } from '../../pipeline/queues';
import type { Enqueuer } from '../intake';
import type { NamedResource } from './resource';

export interface BatchResult {
  stored: number;
  duplicates: number;
  quarantined: number;
  /** Raw ids of the messages stored as queued in this batch (for callers that wait on the pipeline). */
  queuedIds: number[];
}

export function emptyResult(): BatchResult {
  return { stored: 0, duplicates: 0, quarantined: 0, queuedIds: [] };
}

export function addResults(into: BatchResult, more: BatchResult): BatchResult {
  into.stored += more.stored;
  into.duplicates += more.duplicates;
  into.quarantined += more.quarantined;
  into.queuedIds.push(...more.queuedIds);
  return into;
}

export class FhirIntake {
  constructor(
    private readonly db: HubDb,
    private readonly pipeline: Enqueuer,
    private readonly options: { log?: (text: string) => void; keepIds?: boolean } = {},
  ) {}

  async storeBatch(batch: NamedResource[]): Promise<BatchResult> {
    const result = emptyResult();
    if (batch.length === 0) return result;
    const rows = batch.map((b) => b.row);
    const stored = await this.db.transaction(async (tx) => {
      const out = await storeRawBatch(tx, rows);
      for (let i = 0; i < batch.length; i++) {
        const problem = batch[i]!.problem;
        if (problem && !out[i]!.duplicate) await addQuarantine(tx, out[i]!.id, 'intake', problem);
      }
      return out;
    });
    const toEnqueue: EnqueueItem[] = [];
    stored.forEach((s, i) => {
      const item = batch[i]!;
      const outcome = s.duplicate ? 'duplicate' : item.problem ? 'quarantined' : 'stored';
      metrics.received.inc({ member: item.row.memberId, channel: item.row.channelId });
      metrics.stored.inc({ member: item.row.memberId, channel: item.row.channelId, outcome });
      if (outcome === 'duplicate') result.duplicates++;
      else if (outcome === 'quarantined') {
        result.quarantined++;
        metrics.quarantined.inc({ stage: 'intake', code: item.problem!.code });
      } else {
        result.stored++;
        toEnqueue.push({ rawId: s.id, patientKey: item.row.patientKey });
        if (this.options.keepIds !== false) result.queuedIds.push(s.id);
      }
    });
    if (toEnqueue.length) {
      try {
        await this.pipeline.enqueue(toEnqueue);
      } catch (error) {
        this.options.log?.(`enqueue failed (the reconciler will retry from the raw store): ${(error as Error).message}`);
      }
    }
    return result;
  }
}
