/**
 * The message browser's reads: search the raw store, one message with everything known about it
 * (raw bytes, parsed segments, produced resources with their Provenance targets, quarantine
 * history, its fix or the original it fixes), the open dead letters, and the audit trail. Queries
 * only; the routes (api.ts) check scopes and write the audit events.
 */
import type { HubDb } from '../sql';
import { decodeStrict, type Charset } from '../../mappings/hl7v2/charset';
import { Hl7Message } from '../../mappings/hl7v2/message';
import { asHubError } from '../../mappings/outcome';
import { fixLinks, type RawStatus } from '../rawStore';

export interface MessageFilter {
  member?: string;
  channel?: string;
  controlId?: string;
  /** An MRN (any member) or a full routing key `member|MRN`. */
  patient?: string;
  /** Message type prefix: `ADT` or `ADT^A01`. */
  type?: string;
  status?: RawStatus;
  from?: Date;
  to?: Date;
  /** Page: ids below this one. */
  before?: number;
  limit: number;
}

class Where {
  readonly clauses: string[] = [];
  readonly params: unknown[] = [];
  add(sql: string, ...values: unknown[]): void {
    let text = sql;
    for (const value of values) {
      this.params.push(value);
      text = text.replace('?', `$${this.params.length}`);
    }
    this.clauses.push(text);
  }
  get sql(): string {
    return this.clauses.length ? `WHERE ${this.clauses.join(' AND ')}` : '';
  }
  next(value: unknown): string {
    this.params.push(value);
    return `$${this.params.length}`;
  }
}

export async function searchMessages(db: HubDb, f: MessageFilter) {
  const w = new Where();
  if (f.member) w.add('r.member_id = ?', f.member);
  if (f.channel) w.add('r.channel_id = ?', f.channel);
  if (f.controlId) w.add('r.control_id = ?', f.controlId);
  if (f.patient) w.add(f.patient.includes('|') ? 'r.patient_key = ?' : `split_part(r.patient_key, '|', 2) = ?`, f.patient);
  if (f.type) w.add(`r.message_type LIKE ? || '%'`, f.type.replace(/[\\%_]/g, '\\$&'));
  if (f.status) w.add('r.status = ?', f.status);
  if (f.from) w.add('r.received_at >= ?', f.from);
  if (f.to) w.add('r.received_at < ?', f.to);
  if (f.before) w.add('r.id < ?', f.before);
  const limit = w.next(f.limit);
  const rows = await db.query(
    `SELECT r.id, r.member_id, r.channel_id, r.control_id, r.message_type, r.status, r.received_at, r.patient_key, r.charset, r.size_bytes, r.revision, r.duplicate_count,
            substring(encode(r.ack, 'escape') from 'MSA\\|([AC][AER])') AS ack_code,
            (SELECT q.code FROM quarantine q WHERE q.raw_id = r.id AND q.state = 'open' ORDER BY q.id DESC LIMIT 1) AS open_quarantine
       FROM raw_message r ${w.sql} ORDER BY r.id DESC LIMIT ${limit}`,
    w.params,
  );
  return rows.rows;
}

export interface MessageDetail {
  [field: string]: unknown;
  patient_key: string | null;
}

export async function messageDetail(db: HubDb, id: number): Promise<MessageDetail | undefined> {
  const found = await db.query<{ content: Buffer; charset: string; patient_key: string | null; [k: string]: unknown }>(
    `SELECT id, member_id, channel_id, sender, control_id, message_type, version_id, charset, content, size_bytes, received_at, status, revision, flags,
            duplicate_count, patient_key, event_time, last_stage, processed_at, attempts, encode(sha256, 'hex') AS sha256, ack
       FROM raw_message WHERE id = $1`,
    [id],
  );
  const raw = found.rows[0];
  if (!raw) return undefined;
  const { content, ack, ...rest } = raw;
  // Decoded as the hub decodes it; when that fails, the error and a lossy reading for the eye.
  let text: string;
  let decodeError: string | null = null;
  try {
    text = decodeStrict(content, (raw.charset || 'UTF-8') as Charset);
  } catch (error) {
    decodeError = asHubError(error).message;
    text = new TextDecoder(raw.charset === 'GB18030' || raw.charset === 'GBK' ? 'gb18030' : 'utf-8').decode(content);
  }
  // For a charset problem: which other charsets read these bytes without error, and what they say.
  const alternatives: Array<{ charset: Charset; text: string }> = [];
  if (decodeError) {
    for (const other of ['GB18030', 'UTF-8'] as const) {
      if (other === raw.charset) continue;
      try {
        alternatives.push({ charset: other, text: decodeStrict(content, other) });
      } catch {
        // not this one either
      }
    }
  }
  let segments: Array<{ name: string; fields: string[] }> | null = null;
  let parseError: string | null = null;
  if (text.trimStart().startsWith('MSH')) {
    try {
      segments = Hl7Message.parse(text).segments.map((s) => ({ name: s.name, fields: s.fields.slice(1) }));
    } catch (error) {
      parseError = asHubError(error).message;
    }
  }
  const [quarantine, resources, links] = await Promise.all([
    db.query(`SELECT id, stage, code, reason, location, state, created_at, closed_at FROM quarantine WHERE raw_id = $1 ORDER BY id`, [id]),
    db.query<{ resource_type: string; id: string; version: number; mapping_versions: string[]; event_time: Date | null; updated_at: Date; content: Record<string, unknown> }>(
      `SELECT resource_type, id, version, mapping_versions, event_time, updated_at, content FROM resource WHERE raw_id = $1 ORDER BY resource_type, id`,
      [id],
    ),
    fixLinks(db, id),
  ]);
  return {
    ...rest,
    patient_key: raw.patient_key,
    contentBase64: content.toString('base64'),
    text,
    decodeError,
    alternatives,
    segments,
    parseError,
    ack: ack ? (ack as Buffer).toString('latin1') : null,
    quarantine: quarantine.rows,
    fixedBy: links.fixedBy,
    fixOf: links.fixOf,
    resources: resources.rows.map((r) => ({
      ...r,
      // What the Provenance of this message says it produced, and with which mapping versions.
      provenanceTargets: r.resource_type === 'Provenance' ? ((r.content.target as Array<{ reference?: string }> | undefined) ?? []).map((t) => t.reference ?? '') : undefined,
    })),
  };
}

/** Open dead letters; `patient_key` is for the caller's audit event (the route does not show it). */
export async function deadLetters(db: HubDb, f: { member?: string; channel?: string; stage?: string; code?: string; limit: number }) {
  const w = new Where();
  w.add(`q.state = 'open'`);
  if (f.member) w.add('r.member_id = ?', f.member);
  if (f.channel) w.add('r.channel_id = ?', f.channel);
  if (f.stage) w.add('q.stage = ?', f.stage);
  if (f.code) w.add('q.code = ?', f.code);
  const limit = w.next(f.limit);
  const rows = await db.query<{ patient_key: string | null; [k: string]: unknown }>(
    `SELECT q.id, q.raw_id, q.stage, q.code, q.reason, q.location, q.created_at, r.member_id, r.channel_id, r.control_id, r.message_type, r.status, r.attempts, r.patient_key
       FROM quarantine q JOIN raw_message r ON r.id = q.raw_id ${w.sql} ORDER BY q.id DESC LIMIT ${limit}`,
    w.params,
  );
  return rows.rows;
}

export async function searchAudit(db: HubDb, f: { actor?: string; patient?: string; action?: string; entityType?: string; from?: Date; to?: Date; before?: number; limit: number }) {
  const w = new Where();
  if (f.actor) w.add('actor = ?', f.actor);
  if (f.patient) w.add(f.patient.includes('|') ? 'patient_key = ?' : `split_part(patient_key, '|', 2) = ?`, f.patient);
  if (f.action) w.add('action = ?', f.action);
  if (f.entityType) w.add('entity_type = ?', f.entityType);
  if (f.from) w.add('at >= ?', f.from);
  if (f.to) w.add('at < ?', f.to);
  if (f.before) w.add('id < ?', f.before);
  const limit = w.next(f.limit);
  const rows = await db.query(`SELECT id, at, actor, action, entity_type, entity_id, patient_key, detail FROM audit_event ${w.sql} ORDER BY id DESC LIMIT ${limit}`, w.params);
  return rows.rows;
}
