/**
 * The intake every adapter hands inbound bytes to. Owns the rule "nothing is acknowledged before it
 * is stored": inspects a message (charset, MSH), stores its original bytes — group-committed, so
 * many messages share one transaction and one fsync — and only then returns the ACK to send. Then
 * enqueues the stored messages for the pipeline, in commit order; if that enqueue fails, the
 * message is still safe in the raw store and the reconciler enqueues it later. A corrected message
 * (fix-and-replay, pipeline/fix.ts) comes in here too, committed on its own together with its link
 * to the original, so that there is one way into the raw store.
 */
import type { MemberConfig, MllpChannelConfig } from '../hub/config';
import { ackCodeFor, buildAck } from './ack';
import { encode, type Charset } from '../mappings/hl7v2/charset';
import { type CharsetPolicy, inspectMessage, type MessageHeader, senderOf, sniffHeader } from '../mappings/hl7v2/header';
import { metrics } from '../hub/metrics';
import { asHubError, HubError } from '../mappings/outcome';
import type { EnqueueItem } from '../pipeline/queues';
import type { HubDb, Sql } from '../hub/sql';
import { addQuarantine, type NewRawMessage, storeRawBatch, type StoredRaw } from '../hub/rawStore';
import { describeDbError, isDataDbError } from '../hub/pgErrors';

export interface IntakeChannel {
  id: string;
  policy: CharsetPolicy;
  ackMode: MllpChannelConfig['ackMode'];
}

export interface Inbound {
  member: MemberConfig;
  channel: IntakeChannel;
  bytes: Buffer;
  /** A problem the adapter already found (frame too large, cut off, bytes outside a frame): stored and quarantined as is. */
  problem?: HubError;
  /** Flags to store with the message besides the intake's own (`fix` for a corrected message). */
  flags?: string[];
}

/**
 * Work that must commit or roll back together with one stored message: it runs in the message's
 * transaction after the row is written (a duplicate shows as such), and a throw stores nothing and
 * rejects receive() with that error.
 */
export type WithinStore = (tx: Sql, result: IntakeResult) => Promise<void>;

export interface IntakeResult {
  rawId: number;
  outcome: 'stored' | 'duplicate' | 'quarantined';
  /** Bytes to send back, undefined when the ack mode says none. */
  ack?: Buffer;
  ackCode?: string;
  revision: number;
  error?: HubError;
}

export interface Enqueuer {
  enqueue(items: EnqueueItem[]): Promise<void>;
}

interface Pending {
  inbound: Inbound;
  row: NewRawMessage;
  error?: HubError;
  within?: WithinStore;
  resolve: (result: IntakeResult) => void;
  reject: (error: unknown) => void;
}

/** A throw of a message's `within` work: that message's own failure, passed on as it is (never isolated or retried). */
class WithinFailed {
  constructor(readonly cause: unknown) {}
}

/** The store failed in a way no member's data explains (connection lost, server down): every member still waiting gets this. */
interface StoreDown {
  down: unknown;
}

/** The longest derived text a message stored after PostgreSQL refused it keeps (sender, control id): far below a btree row's limit. */
const FALLBACK_TEXT = 200;

export class RawIntake {
  private pending: Pending[] = [];
  private flushing = false;
  /** Stored messages waiting for the hand-over in flight (one at a time: see handOver()). */
  private toHandOver: EnqueueItem[] = [];
  private handingOver?: Promise<void>;

  constructor(
    private readonly db: HubDb,
    private readonly pipeline: Enqueuer,
    private readonly options: { maxBatch?: number; log?: (text: string) => void } = {},
  ) {}

  /**
   * Resolves once the message is durably stored (or counted as a duplicate). Rejects only when the
   * store itself failed — then nothing may be ACKed — or when `within` threw. A message with
   * `within` is committed in a batch of its own, so its work cannot roll back other senders' messages.
   */
  receive(inbound: Inbound, within?: WithinStore): Promise<IntakeResult> {
    metrics.received.inc({ member: inbound.member.id, channel: inbound.channel.id });
    const { row, error } = prepare(inbound);
    return new Promise((resolve, reject) => {
      this.pending.push({ inbound, row, error, within, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        // Let the current I/O tick add its messages to the same batch.
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.batchLength());
      try {
        await this.storeGroup(batch);
      } catch (error) {
        // storeGroup settles every member itself; this is a bug's last line, never an unanswered message.
        for (const item of batch) item.reject(error);
      }
    }
    this.flushing = false;
  }

  /**
   * Store a group of messages and settle each (resolve with its ACK, or reject). One member's bad
   * data must not fail the others (row 3 of the poison report: 17 % of good messages refused with a
   * NUL-poisoned one): when the group commit fails because of data (hub/pgErrors.ts
   * `isDataDbError`), the group is halved until the culprit is alone — about 2·log2(n) statements
   * for one culprit in n, in arrival order, so raw ids still follow arrival — and the culprit is
   * stored quarantined (`storeRefused`). Any other failure (connection lost, server down, a timeout)
   * is probed once with the first member alone: if that fails too the store is down and every
   * member is rejected at once (the sender's AR 207 "resend later" is then true), instead of n slow
   * single attempts against a dead server; if it succeeds, the rest is stored the same way.
   * Returns the error when the store is down (all members of the group already rejected).
   */
  private async storeGroup(group: Pending[]): Promise<StoreDown | undefined> {
    let failure: unknown;
    try {
      this.settle(group, await this.commit(group));
      return undefined;
    } catch (error) {
      failure = error;
    }
    if (failure instanceof WithinFailed) {
      // batchLength() gives a message with `within` a group of its own.
      group[0]!.reject(failure.cause);
      return undefined;
    }
    if (isDataDbError(failure)) {
      if (group.length === 1) return this.storeRefused(group[0]!, failure);
      const half = Math.ceil(group.length / 2);
      const first = await this.storeGroup(group.slice(0, half));
      if (first) return this.rejectAll(group.slice(half), first.down);
      return this.storeGroup(group.slice(half));
    }
    if (group.length === 1) return this.rejectAll(group, failure);
    this.options.log?.(`intake: a group commit of ${group.length} failed (${describeDbError(failure)}); trying its first message alone`);
    const probe = await this.storeGroup(group.slice(0, 1));
    if (probe) return this.rejectAll(group.slice(1), probe.down);
    return this.storeGroup(group.slice(1));
  }

  private rejectAll(group: Pending[], error: unknown): StoreDown {
    for (const item of group) item.reject(error);
    return { down: error };
  }

  /**
   * A message PostgreSQL refused for its data (alone, so it is this message's): stored anyway — the
   * bytes exactly, the derived text from a plain reading of MSH, clipped — and quarantined with
   * PostgreSQL's reason, answered AE. Never "resend later": the same bytes would fail the same way.
   */
  private async storeRefused(item: Pending, failure: unknown): Promise<StoreDown | undefined> {
    const error = new HubError('unstorable', `the message could not be stored as received: ${describeDbError(failure)}; its bytes are stored and it is not processed`);
    const { row } = prepare({ ...item.inbound, problem: error });
    const clip = (text: string) => text.slice(0, FALLBACK_TEXT);
    const fallback: Pending = {
      ...item,
      error,
      row: { ...row, sender: clip(row.sender), controlId: clip(row.controlId), messageType: clip(row.messageType), versionId: clip(row.versionId), patientKey: null },
    };
    this.options.log?.(`intake: ${item.row.memberId}/${item.row.channelId} message refused by PostgreSQL, stored quarantined: ${describeDbError(failure)}`);
    try {
      this.settle([fallback], await this.commit([fallback]));
      return undefined;
    } catch (again) {
      if (again instanceof WithinFailed) {
        item.reject(again.cause);
        return undefined;
      }
      // Refused even so: nothing stored, and the sender must hear it (the listener answers AR).
      return isDataDbError(again) ? (item.reject(again), undefined) : this.rejectAll([item], again);
    }
  }

  /** One group commit: the rows, with their quarantine entries and a lone message's `within` work. */
  private async commit(batch: Pending[]): Promise<StoredRaw[]> {
    const rows = batch.map((item) => item.row);
    // The batch insert is one statement, atomic by itself; a transaction (two more round trips on
    // every ACK's path) is needed only to store quarantine entries, or a message's `within` work,
    // together with their messages.
    if (!batch.some((item) => item.error || item.within)) return storeRawBatch(this.db, rows);
    return this.db.transaction(async (tx) => {
      const out = await storeRawBatch(tx, rows);
      for (let i = 0; i < batch.length; i++) {
        const error = batch[i]!.error;
        if (error && !out[i]!.duplicate) await addQuarantine(tx, out[i]!.id, 'intake', error);
      }
      // batchLength() gives a message with `within` a batch of its own.
      const within = batch[0]!.within;
      if (within) {
        try {
          await within(tx, resultOf(batch[0]!, out[0]!));
        } catch (error) {
          throw new WithinFailed(error);
        }
      }
      return out;
    });
  }

  /** After the commit: count, answer each member, and hand the stored ones to the pipeline. */
  private settle(batch: Pending[], stored: StoredRaw[]): void {
    const toEnqueue: EnqueueItem[] = [];
    const handed = new Set<number>();
    const results = batch.map((item, i) => resultOf(item, stored[i]!));
    batch.forEach((item, i) => {
      const result = results[i]!;
      metrics.stored.inc({ member: item.row.memberId, channel: item.row.channelId, outcome: result.outcome });
      if (result.outcome === 'quarantined') metrics.quarantined.inc({ stage: 'intake', code: item.error!.code });
      // A resend of a message still queued is handed over again: a listener killed after the commit
      // but before its hand-over (and its ACK) leaves the message stored and out of Redis, and the
      // sender's resend is then a duplicate — without this it waited for the reconciler's stale sweep,
      // minutes away (seen in test/chaos.int.test.ts). A job still waiting under its id makes the add a
      // no-op, and the runner skips a message no longer queued, so a spare hand-over does nothing.
      const handOver = result.outcome === 'stored' || (result.outcome === 'duplicate' && stored[i]!.status === 'queued');
      if (handOver && !handed.has(result.rawId)) {
        handed.add(result.rawId);
        toEnqueue.push({ rawId: result.rawId, patientKey: item.row.patientKey });
      }
    });
    // Handed over before the ACKs go out when no hand-over is in flight (the jobs are written to
    // Redis's socket now, the ACKs after): a listener killed between an ACK and its hand-over leaves
    // a message stored, ACKed (so never resent) and out of Redis until a reconciler sweeps for it
    // (a restarted process does at once: pipeline/reconciler.ts).
    if (toEnqueue.length) this.handOver(toEnqueue);
    batch.forEach((item, i) => item.resolve(results[i]!));
  }

  /** How many pending messages go into the next batch: up to maxBatch, and a message with `within` alone. */
  private batchLength(): number {
    if (this.pending[0]?.within) return 1;
    const alone = this.pending.findIndex((item) => item.within);
    return Math.min(this.options.maxBatch ?? 500, alone < 0 ? this.pending.length : alone);
  }

  /**
   * One hand-over in flight at a time, in commit order; what is stored meanwhile goes with the next
   * one. Not one per group issued at once: on a Redis Cluster a failover retries a command after a
   * pause, so a later hand-over could reach the new master first and a patient's messages run out
   * of order (test/redis-cluster.int.test.ts caught that).
   */
  private handOver(items: EnqueueItem[]): void {
    this.toHandOver.push(...items);
    if (this.handingOver) return;
    const next = (): Promise<void> | undefined => {
      if (this.toHandOver.length === 0) return undefined;
      const handing = this.toHandOver;
      this.toHandOver = [];
      return this.pipeline
        .enqueue(handing)
        .catch((error) => this.options.log?.(`enqueue failed (the reconciler will retry from the raw store): ${(error as Error).message}`))
        .then(() => {
          this.handingOver = next();
        });
    };
    this.handingOver = next();
  }

  /** Wait until everything received so far is stored and handed to the queues. */
  async drain(): Promise<void> {
    while (this.flushing || this.pending.length > 0) await new Promise((r) => setTimeout(r, 2));
    while (this.handingOver) await this.handingOver;
  }
}

function resultOf(item: Pending, s: StoredRaw): IntakeResult {
  return {
    rawId: s.id,
    outcome: s.duplicate ? 'duplicate' : item.error ? 'quarantined' : 'stored',
    ack: s.ack ?? undefined,
    ackCode: ackCodeOf(s.ack),
    revision: s.revision,
    error: item.error,
  };
}

function ackCodeOf(ack: Buffer | null): string | undefined {
  return ack ? /\rMSA\|([A-Z]{2})/.exec(ack.toString('latin1'))?.[1] : undefined;
}

/** Inspect and build the row to store, with the ACK that will be sent once it is committed. */
function prepare(inbound: Inbound): { row: NewRawMessage; error?: HubError } {
  const { member, channel, bytes } = inbound;
  let header: MessageHeader | undefined;
  let charset: Charset = channel.policy.forceCharset ?? channel.policy.defaultCharset;
  let error = inbound.problem;
  let patientKey: string | null = null;
  let eventTime: Date | null = null;
  if (!error) {
    try {
      const inspected = inspectMessage(bytes, channel.policy);
      header = inspected.header;
      charset = inspected.charset;
      patientKey = inspected.patient ? `${member.id}|${inspected.patient.mrn}` : null;
      eventTime = inspected.eventTime ?? null;
    } catch (thrown) {
      error = asHubError(thrown);
    }
  }
  header ??= sniffHeader(bytes);
  const code = ackCodeFor(channel.ackMode, header, error);
  const ack = code ? encode(buildAck({ header, code, error }), error?.code === 'charset' ? 'ASCII' : charset) : null;
  return {
    error,
    row: {
      memberId: member.id,
      channelId: channel.id,
      sender: header ? senderOf(header) : '',
      controlId: header?.controlId ?? '',
      messageType: header ? [header.messageCode, header.triggerEvent].filter(Boolean).join('^') : '',
      versionId: header?.versionId ?? '',
      charset,
      bytes,
      status: error ? 'quarantined' : 'queued',
      flags: [...(error?.code === 'too-large' ? ['truncated'] : []), ...(inbound.flags ?? [])],
      ack,
      patientKey,
      eventTime,
    },
  };
}
