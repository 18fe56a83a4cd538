/**
 * Runs one stored message through every stage: parse → convert → map → identify → merge. The stage
 * boundaries stay in code (each is timed and counted) while one job runs them all, because five
 * Redis hops per message would cap throughput near 2.8k msg/s before any real work (DESIGN budgets).
 * Bad input ends in quarantine; infrastructure failures are thrown for BullMQ to retry with backoff,
 * and become a dead letter (quarantine, status failed) on the last attempt.
 */
import type { HubConfig } from '../hub/config';
import { charsetPolicyOf, utcOffsetOf } from '../hub/config';
import type { HubDb } from '../hub/sql';
import { addQuarantine, FHIR_MESSAGE_PREFIX, loadRaw } from '../hub/rawStore';
import { metrics } from '../hub/metrics';
import { asHubError, HubError } from '../mappings/outcome';
import { convertStage } from './stages/convert';
import { identifyStage, linkToPatientIndex, type IdentifiedMessage } from './stages/identify';
import { mapStage } from './stages/map';
import { mergeStage } from './stages/merge';
import { parseStage } from './stages/parse';
import { fhirParseStage } from './stages/fhirParse';
import { fhirConvertStage } from './stages/fhirConvert';
import { fhirIdentifyStage } from './stages/fhirIdentify';

export type StageName = 'parse' | 'convert' | 'map' | 'identify' | 'merge';
export type RunOutcome = 'processed' | 'quarantined' | 'dead-lettered' | 'already-done' | 'missing';

export interface RunnerContext {
  db: HubDb;
  config: HubConfig;
}

function timed<T>(stage: StageName, work: () => T): T {
  const end = metrics.stageSeconds.startTimer({ stage });
  const value = work();
  end();
  metrics.processed.inc({ stage });
  return value;
}

/**
 * Identify's second half, after the merge committed: the source patient gets its golden patient now.
 * The message is already processed, so a failure here must not quarantine it; the index's periodic
 * sync (`yilian serve`, `yilian mpi sync`) matches whatever this step missed.
 */
async function linkIdentity(ctx: RunnerContext, memberId: string, identified: Pick<IdentifiedMessage, 'patient' | 'merge'>): Promise<void> {
  const end = metrics.stageSeconds.startTimer({ stage: 'identify' });
  try {
    await linkToPatientIndex(ctx.db, memberId, identified);
  } catch {
    metrics.processed.inc({ stage: 'identify-deferred' });
  } finally {
    end();
  }
}

/**
 * @param finalAttempt true when BullMQ will not retry again: a transient failure is then dead-lettered.
 */
export async function runPipeline(ctx: RunnerContext, rawId: number, finalAttempt: boolean): Promise<RunOutcome> {
  const raw = await loadRaw(ctx.db, rawId);
  if (!raw) return 'missing';
  // Only a queued message is work: jobs are delivered at least once (a worker killed after its
  // commit, a reconciler sweep racing a replay), and re-running a message that already ended
  // quarantined or failed would add a second quarantine entry. Replay sets status 'queued' first.
  if (raw.status !== 'queued') return 'already-done';
  let stage: StageName = 'parse';
  try {
    if (raw.message_type.startsWith(FHIR_MESSAGE_PREFIX)) {
      // FHIR branch: a resource read from a member's FHIR server; same stages, same merge.
      const parsedResource = timed('parse', () => fhirParseStage(raw.content));
      stage = 'convert';
      const member = ctx.config.members.find((m) => m.id === raw.member_id);
      const converted = timed('convert', () =>
        fhirConvertStage(parsedResource, { memberId: raw.member_id, channelId: raw.channel_id, rawId, server: raw.sender, member, receivedAt: raw.received_at }),
      );
      stage = 'map';
      const mapped = timed('map', () => mapStage(converted, { member }));
      stage = 'identify';
      const identified = timed('identify', () => fhirIdentifyStage(mapped, raw.sender));
      stage = 'merge';
      const end = metrics.stageSeconds.startTimer({ stage: 'merge' });
      await mergeStage(ctx.db.derived, identified, { rawId, memberId: raw.member_id, charset: raw.charset });
      end();
      metrics.processed.inc({ stage: 'merge' });
      await linkIdentity(ctx, raw.member_id, identified);
      return 'processed';
    }
    const parsed = timed('parse', () => parseStage({ bytes: raw.content, policy: charsetPolicyOf(ctx.config, raw.member_id, raw.channel_id) }));
    stage = 'convert';
    const member = ctx.config.members.find((m) => m.id === raw.member_id);
    const utcOffsetMinutes = utcOffsetOf(ctx.config, raw.member_id);
    const converted = timed('convert', () => convertStage(parsed, { memberId: raw.member_id, channelId: raw.channel_id, rawId, utcOffsetMinutes, member }));
    stage = 'map';
    const mapped = timed('map', () => mapStage(converted, { member }));
    stage = 'identify';
    const identified = timed('identify', () => identifyStage(mapped, utcOffsetMinutes));
    stage = 'merge';
    const end = metrics.stageSeconds.startTimer({ stage: 'merge' });
    // What the merge writes is derived from the raw store, committed durably before the ACK: if
    // PostgreSQL crashes before this commit reaches disk, the message is still `queued` and the
    // reconciler runs it again — so the merge does not wait for its own WAL flush.
    await mergeStage(ctx.db.derived, identified, { rawId, memberId: raw.member_id, charset: parsed.charset });
    end();
    metrics.processed.inc({ stage: 'merge' });
    await linkIdentity(ctx, raw.member_id, identified);
    return 'processed';
  } catch (thrown) {
    const error = asHubError(thrown);
    if (error.transient && !finalAttempt) throw error;
    const final = error.transient ? new HubError('exhausted', `${stage}: ${error.message}`, error.location) : error;
    await ctx.db.transaction(async (tx) => {
      await addQuarantine(tx, rawId, stage, final);
      await tx.query(`UPDATE raw_message SET status = $2, last_stage = $3, attempts = attempts + 1 WHERE id = $1`, [rawId, error.transient ? 'failed' : 'quarantined', stage]);
    });
    metrics.quarantined.inc({ stage, code: final.code });
    return error.transient ? 'dead-lettered' : 'quarantined';
  }
}
