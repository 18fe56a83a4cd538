/**
 * Runs stored messages through every stage: parse → convert → map → identify → merge, a batch of
 * one partition's messages at a time (pipeline/worker.ts). The stage boundaries stay in code (each
 * is timed and counted) while one job runs them all, because five Redis hops per message would cap
 * throughput near 2.8k msg/s before any real work (DESIGN budgets); a batch reads its messages in
 * one query and links their patients in one step (hub/mpi/links.ts `linkSources`).
 * Bad input ends in quarantine; infrastructure failures are thrown for BullMQ to retry with backoff,
 * and become a dead letter (quarantine, status failed) on the last attempt.
 */
import { charsetPolicyOf, utcOffsetOf, type HubConfig, type MemberConfig } from '../hub/config';
import type { HubDb } from '../hub/sql';
import { addQuarantine, FHIR_MESSAGE_PREFIX, loadRaws, type RawMessage } from '../hub/rawStore';
import { metrics } from '../hub/metrics';
import { describeDbError, isDataDbError, isTransientDbError } from '../hub/pgErrors';
import { asHubError, HubError } from '../mappings/outcome';
import { convertStage, type ConvertedMessage } from './stages/convert';
import { identifyStage, sourcesToLink, type IdentifiedMessage } from './stages/identify';
import { linkSources, type SourceRef } from '../hub/mpi/links';
import { mapStage } from './stages/map';
import { mergeRounds, mergeStage, type MergeInput, type MergeItem, type PreparedMerge } from './stages/merge';
import { parseStage, type ParsedMessage } from './stages/parse';
import { fhirParseStage, type ParsedFhirResource } from './stages/fhirParse';
import { fhirConvertStage, type ConvertedFhirResource } from './stages/fhirConvert';
import { fhirIdentifyStage, type IdentifiedFhirResource } from './stages/fhirIdentify';

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
 * Identify's second half, after the batch's merges committed: their source patients get their
 * golden patients now. The messages are already processed, so a failure here must not quarantine
 * them; the index's periodic sync (`yilian serve`, `yilian mpi sync`) matches whatever this step missed.
 */
async function linkIdentities(ctx: RunnerContext, refs: SourceRef[]): Promise<void> {
  if (!refs.length) return;
  const end = metrics.stageSeconds.startTimer({ stage: 'identify' });
  try {
    await linkSources(ctx.db, refs);
  } catch {
    metrics.processed.inc({ stage: 'identify-deferred' });
  } finally {
    end();
  }
}

/**
 * What differs between the two kinds of stored message: how one is parsed, converted and identified,
 * and which charset its merge records. Map and merge are the same stages for both, so the sequence
 * below is written once and each kind is a table of its three own steps.
 */
/** One stored message and what the steps read of its member, looked up once per message. */
interface MessageSource {
  raw: RawMessage;
  config: HubConfig;
  member: MemberConfig | undefined;
  /** The member's clock offset, for HL7 times sent without one. */
  utcOffsetMinutes: number;
}

interface MessageSteps<Parsed, Converted extends Pick<ConvertedMessage, 'resources'>, Identified extends MergeInput> {
  parse(source: MessageSource): Parsed;
  convert(parsed: Parsed, source: MessageSource): Converted;
  identify(mapped: Converted & { mappingVersions: string[] }, source: MessageSource): Identified;
  charset(parsed: Parsed, source: MessageSource): string;
}

/** HL7 v2: the channel's charset policy at parse, the member's clock offset for times sent without one. */
const hl7v2Steps: MessageSteps<ParsedMessage, ConvertedMessage, IdentifiedMessage> = {
  parse: ({ raw, config }) => parseStage({ bytes: raw.content, policy: charsetPolicyOf(config, raw.member_id, raw.channel_id) }),
  convert: (parsed, { raw, member, utcOffsetMinutes }) =>
    convertStage(parsed, { memberId: raw.member_id, channelId: raw.channel_id, rawId: raw.id, utcOffsetMinutes, member }),
  identify: (mapped, { utcOffsetMinutes }) => identifyStage(mapped, utcOffsetMinutes),
  charset: (parsed) => parsed.charset,
};

/** FHIR: a resource read from a member's FHIR server (raw_message.sender), stored as received. */
const fhirSteps: MessageSteps<ParsedFhirResource, ConvertedFhirResource, IdentifiedFhirResource> = {
  parse: ({ raw }) => fhirParseStage(raw.content),
  convert: (parsed, { raw, member }) =>
    fhirConvertStage(parsed, { memberId: raw.member_id, channelId: raw.channel_id, rawId: raw.id, server: raw.sender, member, receivedAt: raw.received_at }),
  identify: (mapped, { raw }) => fhirIdentifyStage(mapped, raw.sender),
  charset: (_parsed, { raw }) => raw.charset,
};

/** A message through the four pure stages: what its merge writes. `at.stage` says where a failure happened. */
function prepareStages<P, C extends Pick<ConvertedMessage, 'resources'>, I extends MergeInput>(
  ctx: RunnerContext,
  raw: RawMessage,
  steps: MessageSteps<P, C, I>,
  at: { stage: StageName },
): { identified: I; charset: string } {
  const member = ctx.config.members.find((m) => m.id === raw.member_id);
  const source: MessageSource = { raw, config: ctx.config, member, utcOffsetMinutes: utcOffsetOf(ctx.config, raw.member_id) };
  const parsed = timed('parse', () => steps.parse(source));
  at.stage = 'convert';
  const converted = timed('convert', () => steps.convert(parsed, source));
  at.stage = 'map';
  const mapped = timed('map', () => mapStage(converted, { member }));
  at.stage = 'identify';
  const identified = timed('identify', () => steps.identify(mapped, source));
  at.stage = 'merge';
  return { identified, charset: steps.charset(parsed, source) };
}

const prepare = (ctx: RunnerContext, raw: RawMessage, at: { stage: StageName }) =>
  raw.message_type.startsWith(FHIR_MESSAGE_PREFIX) ? prepareStages(ctx, raw, fhirSteps, at) : prepareStages(ctx, raw, hl7v2Steps, at);

/**
 * Transient or permanent. A HubError says so itself. PostgreSQL refusing a statement for its data
 * (hub/pgErrors.ts `isDataDbError`: SQLSTATE class 22, 23, 54 — a value jsonb cannot hold, a
 * constraint, an index row too large) fails the same way on every attempt: quarantined at once
 * with PostgreSQL's reason, not retried five times into an `exhausted` dead letter. Everything else
 * (connection lost, deadlock, lock or statement timeout, Redis) is transient and retried.
 */
function classify(thrown: unknown): HubError {
  if (thrown instanceof HubError) return thrown;
  if (isDataDbError(thrown) && !isTransientDbError(thrown)) {
    return new HubError('unstorable', `PostgreSQL refused what this message converts to: ${describeDbError(thrown)}`);
  }
  return asHubError(thrown);
}

/**
 * Run a batch of stored messages (one partition's, so per-patient order holds). Each message's
 * outcome is its own: bad input quarantines that message only. The messages that pass the pure
 * stages are merged a round at a time (stages/merge.ts `mergeRounds`: one statement for many
 * messages); a round PostgreSQL refuses is merged again one message at a time, so that one
 * message's data fails that message's merge only. A transient failure (PostgreSQL or Redis away)
 * is thrown for the whole batch unless `finalAttempt`: the rounds merged before it stay processed,
 * and the rest run again with the retried job.
 * @param finalAttempt true when BullMQ will not retry again: a transient failure is then dead-lettered.
 */
export async function runBatch(ctx: RunnerContext, rawIds: number[], finalAttempt: boolean, onEach?: (rawId: number, outcome: RunOutcome) => void): Promise<Map<number, RunOutcome>> {
  const outcomes = new Map<number, RunOutcome>(rawIds.map((id) => [id, 'missing']));
  const refs: SourceRef[] = [];
  try {
    const ready: MergeItem[] = [];
    for (const raw of await loadRaws(ctx.db, [...new Set(rawIds)])) {
      // Only a queued message is work: jobs are delivered at least once (a worker killed after its
      // commit, a reconciler sweep racing a replay), and re-running a message that already ended
      // quarantined or failed would add a second quarantine entry. Replay sets status 'queued' first.
      if (raw.status !== 'queued') {
        outcomes.set(raw.id, 'already-done');
        continue;
      }
      const at: { stage: StageName } = { stage: 'parse' };
      try {
        const { identified, charset } = prepare(ctx, raw, at);
        ready.push({ message: identified, ctx: { rawId: raw.id, memberId: raw.member_id, charset } });
      } catch (thrown) {
        outcomes.set(raw.id, await settleFailure(ctx, raw.id, thrown, at.stage, finalAttempt));
      }
    }
    for (const round of mergeRounds(ready)) {
      try {
        await mergeRound(ctx, round);
        round.forEach(merged);
        continue;
      } catch (thrown) {
        if (round.length === 1) {
          outcomes.set(round[0]!.item.ctx.rawId, await settleFailure(ctx, round[0]!.item.ctx.rawId, thrown, 'merge', finalAttempt));
          continue;
        }
        // PostgreSQL away: the whole batch waits for the retry (settleFailure's rule for one message)
        if (classify(thrown).transient && !finalAttempt) throw thrown;
      }
      // Refused (or failing on the last attempt): each message of the round on its own.
      for (const one of round) {
        try {
          await mergeRound(ctx, [one]);
          merged(one);
        } catch (thrown) {
          outcomes.set(one.item.ctx.rawId, await settleFailure(ctx, one.item.ctx.rawId, thrown, 'merge', finalAttempt));
        }
      }
    }
  } finally {
    // Also when a transient failure cut the batch short: the messages merged before it are processed.
    await linkIdentities(ctx, refs);
  }
  if (onEach) for (const [id, outcome] of outcomes) onEach(id, outcome);
  return outcomes;

  function merged({ item }: PreparedMerge): void {
    refs.push(...sourcesToLink(item.message).map((mrn) => ({ memberId: item.ctx.memberId, mrn })));
    outcomes.set(item.ctx.rawId, 'processed');
  }
}

/**
 * One merge statement, timed as the merge stage. What it writes is derived from the raw store,
 * committed durably before the ACK: if PostgreSQL crashes before this commit reaches disk, the
 * messages are still `queued` and the reconciler runs them again — so the merge does not wait for
 * its own WAL flush (`db.derived`).
 */
async function mergeRound(ctx: RunnerContext, round: PreparedMerge[]): Promise<void> {
  const end = metrics.stageSeconds.startTimer({ stage: 'merge' });
  await mergeStage(ctx.db.derived, round);
  end();
  metrics.processed.inc({ stage: 'merge' }, round.length);
}

/** One message on its own (replay and fix run in the command's process). */
export async function runPipeline(ctx: RunnerContext, rawId: number, finalAttempt: boolean): Promise<RunOutcome> {
  return (await runBatch(ctx, [rawId], finalAttempt)).get(rawId)!;
}

/** A message that failed at `stage`: quarantined, dead-lettered, or (transient, not the last attempt) thrown for a retry. */
async function settleFailure(ctx: RunnerContext, rawId: number, thrown: unknown, stage: StageName, finalAttempt: boolean): Promise<RunOutcome> {
  const error = classify(thrown);
  if (error.transient && !finalAttempt) throw error;
  const final = error.transient ? new HubError('exhausted', `${stage}: ${error.message}`, error.location) : error;
  await ctx.db.transaction(async (tx) => {
    await addQuarantine(tx, rawId, stage, final);
    await tx.query(`UPDATE raw_message SET status = $2, last_stage = $3, attempts = attempts + 1 WHERE id = $1`, [rawId, error.transient ? 'failed' : 'quarantined', stage]);
  });
  metrics.quarantined.inc({ stage, code: final.code });
  return error.transient ? 'dead-lettered' : 'quarantined';
}
