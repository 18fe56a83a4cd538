/**
 * Results into the hub the way members send them, for the recognition tests: HL7 v2 messages
 * through the intake and the pipeline's stages (run here, in order, no queue), then the patient and
 * recognition indexes brought up to date.
 */
import type { MemberConfig } from '../../hub/config';
import { encodeAs } from '../../cli/simulate';
import { runPipeline } from '../../pipeline/runner';
import { syncPatientIndex } from '../../hub/mpi/sync';
import { syncRecognitionIndex } from '../../hub/recognition/resultIndex';
import type { TestHub } from './hub';

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
