/**
 * Results into the hub the way members send them, for the recognition and terminology tests: HL7 v2
 * messages through the intake, then either the pipeline's stages run here (in order, no queue) and
 * the patient and recognition indexes brought up to date, or a running worker awaited.
 */
import { ensureMember, type MemberConfig } from '../../hub/config';
import { encodeAs } from '../../cli/simulate';
import { runPipeline } from '../../pipeline/runner';
import { syncPatientIndex } from '../../hub/mpi/sync';
import { syncRecognitionIndex } from '../../hub/recognition/resultIndex';
import { waitFor, type TestHub } from './hub';

export const LAB_CHANNEL = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

/** `[member id, message text]` pairs, stored and processed one after another, then indexed. */
export async function ingestResults(hub: TestHub, messages: Array<[string, string]>, channel: typeof LAB_CHANNEL = LAB_CHANNEL): Promise<void> {
  for (const [memberId, text] of messages) {
    const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
    const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
    expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
  }
  await syncPatientIndex(hub.runtime.db);
  await syncRecognitionIndex(hub.runtime.db);
}

/** One message of `memberId` (added to the config if new) through the intake on channel `lis`, awaited until a running worker has taken it out of `queued`. Returns its raw id. */
export async function sendToWorker(hub: TestHub, memberId: string, text: string): Promise<number> {
  const member = ensureMember(hub.config, memberId, () => undefined);
  const stored = await hub.runtime.intake.receive({ member, channel: { id: 'lis', policy: { defaultCharset: 'UTF-8' }, ackMode: 'original' }, bytes: encodeAs(text, 'UTF-8') });
  await waitFor(async () => (await hub.runtime.db.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1`, [stored.rawId])).rows[0]!.status !== 'queued', 30_000, 'processing');
  return stored.rawId;
}
