/**
 * What the hub must know about a message before it can ACK it: which charset it is in, its MSH
 * header (sender, control id, ack types), and whose record it updates (for per-patient ordering).
 * Owns: charset selection (channel force > MSH-18 > channel default) and the patient routing key.
 */
import { Charset, charsetFromName, decodeStrict } from './charset';
import { Hl7Message, Hl7Segment, readDelimiters, unescape } from './message';
import { parseHl7Time } from './time';
import { HubError } from '../outcome';

export interface CharsetPolicy {
  /** Used when MSH-18 is empty. */
  defaultCharset: Charset;
  /** When set, MSH-18 is ignored: for senders known to declare the wrong charset. */
  forceCharset?: Charset;
}

export interface MessageHeader {
  sendingApplication: string;
  sendingFacility: string;
  receivingApplication: string;
  receivingFacility: string;
  /** MSH-7 as received. */
  dateTime: string;
  messageCode: string;
  triggerEvent: string;
  messageStructure: string;
  controlId: string;
  processingId: string;
  versionId: string;
  /** MSH-15 / MSH-16: enhanced acknowledgment mode when either is valued. */
  acceptAckType: string;
  applicationAckType: string;
  /** MSH-18 first repetition as received. */
  characterSet: string;
}

export interface PatientRef {
  mrn: string;
  /** CX-4 namespace id, '' when absent. */
  authority: string;
}

export interface InspectedMessage {
  charset: Charset;
  text: string;
  message: Hl7Message;
  header: MessageHeader;
  /** The patient whose record this message changes; for merges (A34/A35/A40/A47…) the retired one, so the merge follows everything sent under the old number. */
  patient?: PatientRef;
  /** EVN-2 (recorded), else MSH-7. */
  eventTime?: Date;
}

export function headerOf(msh: Hl7Segment): MessageHeader {
  return {
    sendingApplication: msh.value(3),
    sendingFacility: msh.value(4),
    receivingApplication: msh.value(5),
    receivingFacility: msh.value(6),
    dateTime: msh.value(7),
    messageCode: msh.value(9, 0, 1),
    triggerEvent: msh.value(9, 0, 2),
    messageStructure: msh.value(9, 0, 3),
    controlId: msh.value(10),
    processingId: msh.value(11),
    versionId: msh.value(12),
    acceptAckType: msh.value(15),
    applicationAckType: msh.value(16),
    characterSet: msh.value(18),
  };
}

/** Sender identity used for dedupe: MSH-3 and MSH-4 as received. */
export function senderOf(header: Pick<MessageHeader, 'sendingApplication' | 'sendingFacility'>): string {
  return `${header.sendingApplication}|${header.sendingFacility}`;
}

/**
 * Best-effort header from undecoded bytes, for ACKing messages we cannot decode or parse: reads the
 * first segment as Latin-1 (delimiters and header fields are ASCII in every charset we take).
 */
export function sniffHeader(bytes: Uint8Array): MessageHeader | undefined {
  const firstLine = firstSegmentLatin1(bytes);
  const start = firstLine.indexOf('MSH');
  if (start < 0) return undefined;
  try {
    const line = firstLine.slice(start);
    const d = readDelimiters(line);
    const parts = line.split(d.field);
    return headerOf(new Hl7Segment('MSH', ['MSH', d.field, ...parts.slice(1)], d));
  } catch {
    return undefined;
  }
}

function firstSegmentLatin1(bytes: Uint8Array, limit = 4096): string {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, limit));
  let end = head.findIndex((b) => b === 0x0d || b === 0x0a);
  if (end < 0) end = head.length;
  return head.subarray(0, end).toString('latin1');
}

/** Channel force > MSH-18 > channel default. An MSH-18 we do not know is a `charset` error, not a guess. */
export function chooseCharset(bytes: Uint8Array, policy: CharsetPolicy): Charset {
  if (policy.forceCharset) return policy.forceCharset;
  const first = firstSegmentLatin1(bytes);
  // In GBK a trail byte may equal '|' or '^'; when MSH holds non-ASCII, read MSH-18 from the
  // header decoded in the channel's default charset instead of from raw bytes.
  const nonAscii = /[^\x00-\x7f]/.test(first);
  const defaultText = nonAscii ? safeDecode(bytes, policy.defaultCharset) : undefined;
  let declared = msh18Of(defaultText ?? first);
  // When the header does not decode in the channel default either (a GB18030 message on a
  // UTF-8 channel), the raw Latin-1 reading miscounts fields where a GB18030 trail byte is '|'
  // (億 is 83 7C) and takes the wrong field for MSH-18. Read the header as GB18030 as well, and
  // believe that reading only when it is self-consistent: it declares GB18030/GBK itself.
  if (nonAscii && defaultText === undefined) {
    const gbText = safeDecode(bytes, 'GB18030');
    const gbDeclared = gbText === undefined ? undefined : msh18Of(gbText);
    const gbCharset = gbDeclared === undefined ? undefined : charsetFromName(gbDeclared);
    if (gbCharset === 'GB18030' || gbCharset === 'GBK') declared = gbDeclared;
  }
  if (!declared) return policy.defaultCharset;
  const charset = charsetFromName(declared);
  if (!charset) throw new HubError('charset', `MSH-18 character set "${declared}" is not supported`, 'MSH-18');
  return charset;
}

function safeDecode(bytes: Uint8Array, charset: Charset): string | undefined {
  const end = bytes.findIndex((b) => b === 0x0d || b === 0x0a);
  try {
    return decodeStrict(bytes.subarray(0, end < 0 ? bytes.length : end), charset);
  } catch {
    return undefined;
  }
}

function msh18Of(line: string): string | undefined {
  const start = line.indexOf('MSH');
  if (start < 0) return undefined;
  try {
    const text = line.slice(start);
    const d = readDelimiters(text);
    const raw = text.split(d.field)[17] ?? '';
    const first = raw.split(d.repetition)[0] ?? '';
    return unescape(first, d).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Merge-type events whose routing key is the retired identifier in MRG-1. */
const mergeEvents = new Set(['A18', 'A30', 'A34', 'A35', 'A36', 'A39', 'A40', 'A41', 'A42', 'A46', 'A47', 'A48', 'A49']);

/** PID-3 medical record number: the repetition typed MR (CX-5), else the first one. */
export function patientOf(message: Hl7Message): PatientRef | undefined {
  const header = headerOf(message.msh);
  const mrg = message.segment('MRG');
  if (mergeEvents.has(header.triggerEvent) && mrg) {
    const prior = cxPick(mrg, 1);
    if (prior) return prior;
  }
  const pid = message.segment('PID');
  if (!pid) return undefined;
  return cxPick(pid, 3) ?? (pid.value(2) ? { mrn: pid.value(2), authority: pid.value(2, 0, 4) } : undefined);
}

function cxPick(segment: Hl7Segment, field: number): PatientRef | undefined {
  const reps = segment.repetitions(field);
  if (reps.length === 0) return undefined;
  let index = reps.findIndex((_, i) => segment.value(field, i, 5).toUpperCase() === 'MR');
  if (index < 0) index = 0;
  const mrn = segment.value(field, index, 1);
  return mrn ? { mrn, authority: segment.value(field, index, 4) } : undefined;
}

export function eventTimeOf(message: Hl7Message, defaultOffsetMinutes?: number): Date | undefined {
  const recorded = message.segment('EVN')?.value(2);
  return parseHl7Time(recorded || message.msh.value(7), defaultOffsetMinutes)?.instant;
}

/** The MSH fields that identify a message (dedupe scope, type, control id), and what they are called in a reason. */
const identifyingFields: Array<[number, string]> = [
  [3, 'sending application'],
  [4, 'sending facility'],
  [9, 'message type'],
  [10, 'message control id'],
];

/**
 * A field that identifies a message must not hold U+0000 (a NUL byte, or HL7's `\X00\` escape of
 * one): PostgreSQL text cannot hold it, so the stored identity would differ from the sent one, and
 * dedupe, revisions and per-patient order would work on an escaped stand-in. That is a permanent
 * problem of the message, not of the hub: it is stored (bytes exact) and quarantined at once, and
 * the sender gets an AE naming the field, never an AR 207 "resend later" it would retry forever.
 * Any other field may hold one: the copies made of it for text columns escape it (hub/pgErrors.ts).
 */
function refuseNul(bytes: Uint8Array, message: Hl7Message, patient: PatientRef | undefined, header: MessageHeader): void {
  const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(0);
  const where = at >= 0 ? `NUL byte (0x00; the message's first at byte ${at})` : 'NUL character (U+0000, sent as the escape \\X00\\)';
  const refuse = (location: string, what: string): never => {
    throw new HubError('unstorable', `${location} (${what}) contains a ${where}: the hub cannot keep it as the message's identity; stored as received and not processed`, location);
  };
  const msh = message.msh;
  for (const [n, what] of identifyingFields) {
    if (msh.raw(n).includes('\u0000') || msh.repetitions(n).some((_, rep) => msh.components(n, rep).some((c) => c.includes('\u0000')))) refuse(`MSH-${n}`, what);
  }
  if (patient && (patient.mrn.includes('\u0000') || patient.authority.includes('\u0000'))) {
    const merge = mergeEvents.has(header.triggerEvent) && message.segment('MRG') && cxPick(message.segment('MRG')!, 1);
    refuse(merge ? 'MRG-1' : 'PID-3', merge ? 'prior patient identifier' : 'patient identifier');
  }
}

/** Decode, parse and read everything the intake needs. Throws HubError (charset / not-hl7 / structure / unstorable). */
export function inspectMessage(bytes: Uint8Array, policy: CharsetPolicy): InspectedMessage {
  const charset = chooseCharset(bytes, policy);
  const text = decodeStrict(bytes, charset);
  const message = Hl7Message.parse(text);
  const header = headerOf(message.msh);
  if (!header.messageCode) throw new HubError('structure', 'MSH-9 (message type) is empty', 'MSH-9');
  if (!header.controlId) throw new HubError('structure', 'MSH-10 (message control id) is empty', 'MSH-10');
  const patient = patientOf(message);
  // Cheap in the common case: a scan of the text for a NUL or a hex escape that could make one (\Xhh…\ with a 00 pair).
  if (text.includes('\u0000') || /X(?:[0-9A-Fa-f]{2})*00/.test(text)) refuseNul(bytes, message, patient, header);
  return { charset, text, message, header, patient, eventTime: eventTimeOf(message) };
}
