/**
 * Fix-and-replay: a person corrects the text of a quarantined or failed message, and the correction
 * goes through the pipeline as a new message. Owns: turning the corrected text into bytes (in the
 * original's charset, or the channel's when the original's bytes were not valid in theirs), the link
 * between an original and its fix (raw_message_fix), and marking the original `fixed`. Must never:
 * rewrite the original's bytes or row beyond its status and its quarantine entries' state, or store
 * a message other than through the intake (adapters/intake.ts) — a fix is inspected, deduped, ACKed
 * and enqueued exactly as if the channel had received it.
 */
import { charsetPolicyOf, type HubConfig, type MemberConfig, type MllpChannelConfig } from '../hub/config';
import type { CharsetPolicy } from '../mappings/hl7v2/header';
import { recordAudit } from '../hub/audit';
import type { HubDb, Sql } from '../hub/sql';
import { FHIR_MESSAGE_PREFIX, fixLinks, loadRaw } from '../hub/rawStore';
import { decodeStrict, encodeStrict, type Charset } from '../mappings/hl7v2/charset';
import { HubError } from '../mappings/outcome';

export interface FixRequest {
  rawId: number;
  /** The corrected message; segments separated by CR, LF or CRLF (a textarea's lines). */
  text: string;
  /** Why: what was wrong and what was changed. Required. */
  comment: string;
  /** Who: an API key's name or `console:<user>`. */
  actor: string;
}

export interface FixResult {
  originalId: number;
  fixId: number;
  /** Revision of the fix under its (member, sender, control id): 2, 3… when the control id was kept. */
  revision: number;
  charset: Charset;
}

/** Which statuses a person may fix: the dead letters. */
const fixable = new Set(['quarantined', 'failed']);

/** Segments one per CR, whatever line ends the editor or file used; one CR after the last segment. */
export function normalizeSegments(text: string): string {
  const segments = text.split(/\r\n|\n|\r/);
  while (segments.length && segments[segments.length - 1]!.trim() === '') segments.pop();
  return segments.length ? `${segments.join('\r')}\r` : '';
}

/**
 * The intake a fix enters through (adapters/intake.ts `RawIntake`, a floor above: the caller passes
 * it in). `within` runs inside the stored message's transaction; a throw there stores nothing.
 */
export interface FixIntake {
  receive(
    inbound: { member: MemberConfig; channel: { id: string; policy: CharsetPolicy; ackMode: MllpChannelConfig['ackMode'] }; bytes: Buffer; flags: string[] },
    within: (tx: Sql, result: { rawId: number; outcome: 'stored' | 'duplicate' | 'quarantined'; error?: HubError }) => Promise<void>,
  ): Promise<{ revision: number }>;
}

export async function fixRawMessage(runtime: { db: HubDb; config: HubConfig; intake: FixIntake }, request: FixRequest): Promise<FixResult> {
  const comment = request.comment.trim();
  if (!comment) throw new HubError('invalid', 'a comment is required: say what was wrong and what was changed', 'comment');
  const original = await loadRaw(runtime.db, request.rawId);
  if (!original) throw new HubError('not-found', `raw message ${request.rawId} not found`);
  if (original.message_type.startsWith(FHIR_MESSAGE_PREFIX)) {
    throw new HubError('invalid', `raw message ${original.id} is a FHIR resource: fix-and-replay takes HL7 v2 messages; correct the resource at its server and pull or push it again`, 'rawId');
  }
  await refuseUnlessFixable(runtime.db, original.id, original.status);
  const member = runtime.config.members.find((m) => m.id === original.member_id);
  if (!member) throw new HubError('invalid', `member ${original.member_id} of raw message ${original.id} is no longer configured`, 'rawId');
  const configured = member.channels.find((c) => c.id === original.channel_id);
  const channel = {
    id: original.channel_id,
    policy: charsetPolicyOf(runtime.config, original.member_id, original.channel_id),
    ackMode: configured?.kind === 'mllp' ? configured.ackMode : ('original' as const),
  };

  // The original's charset when its bytes are valid in it; when they were not (quarantined for
  // `charset`), the charset it was read in is the wrong one and the channel's applies.
  let charset = original.charset as Charset;
  let originalText: string | undefined;
  try {
    originalText = decodeStrict(original.content, charset);
  } catch {
    charset = channel.policy.forceCharset ?? channel.policy.defaultCharset;
  }
  const text = normalizeSegments(request.text);
  if (!text.trimStart().startsWith('MSH')) throw new HubError('invalid', 'the corrected text must be an HL7 v2 message starting with MSH', 'text');
  if (originalText !== undefined && normalizeSegments(originalText) === text) {
    throw new HubError('invalid', `the corrected text is the same as raw message ${original.id}: nothing to fix (to run it again unchanged, replay it)`, 'text');
  }
  const bytes = encodeStrict(text, charset);

  let fixId = 0;
  const stored = await runtime.intake.receive({ member, channel, bytes, flags: ['fix'] }, async (tx, result) => {
    if (result.error) {
      throw new HubError('invalid', `the corrected text does not pass intake: ${result.error.code}: ${result.error.message}`, result.error.location ?? 'text');
    }
    // Under the original's row lock: a concurrent fix or replay of the same message waits here.
    const locked = await tx.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1 FOR UPDATE`, [original.id]);
    await refuseUnlessFixable(tx, original.id, locked.rows[0]!.status);
    if (result.outcome === 'duplicate') {
      // Identical bytes are stored once (the dedupe key includes sha256): a fix must be a new row.
      throw new HubError('conflict', `the corrected text is identical to raw message ${result.rawId}, already stored: replay that one instead`, 'text');
    }
    fixId = result.rawId;
    await tx.query(`INSERT INTO raw_message_fix (original_id, fix_id, fixed_by, comment) VALUES ($1, $2, $3, $4)`, [original.id, fixId, request.actor, comment]);
    await tx.query(`UPDATE raw_message SET status = 'fixed' WHERE id = $1`, [original.id]);
    await tx.query(`UPDATE quarantine SET state = 'fixed', closed_at = clock_timestamp() WHERE raw_id = $1 AND state = 'open'`, [original.id]);
    // Reading a patient's message and writing a new one for them: accountable like a read.
    const patient = await tx.query<{ patient_key: string | null }>(`SELECT patient_key FROM raw_message WHERE id = $1`, [fixId]);
    await recordAudit(tx, {
      actor: request.actor,
      action: 'fix',
      entityType: 'raw_message',
      entityId: String(original.id),
      patientKey: patient.rows[0]?.patient_key ?? original.patient_key,
      detail: { fixId, comment, charset },
    });
  });
  return { originalId: original.id, fixId, revision: stored.revision, charset };
}

async function refuseUnlessFixable(db: Sql, rawId: number, status: string): Promise<void> {
  if (status === 'fixed') {
    const fix = (await fixLinks(db, rawId)).fixedBy;
    throw new HubError('conflict', `raw message ${rawId} was already fixed by raw message ${fix?.rawId} (${fix?.fixedBy}, ${fix?.fixedAt.toISOString()}): fix that one if it is still wrong`, 'rawId');
  }
  if (!fixable.has(status)) throw new HubError('conflict', `raw message ${rawId} is ${status}: only a quarantined or failed message can be fixed`, 'rawId');
}
