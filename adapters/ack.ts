/**
 * Acknowledgments (HL7 v2 chapter 2.9): original mode (AA/AE/AR) and enhanced mode commit ACKs
 * (CA/CE/CR). ERR is written the v2.5+ way (ERR-2 location, ERR-3 condition code from table 0357,
 * ERR-4 severity, ERR-8 user message) and MSA-3 repeats the text for v2.3 receivers that only read it.
 */
import { HubError } from '../mappings/outcome';
import { escape, standardDelimiters } from '../mappings/hl7v2/message';
import type { MessageHeader } from '../mappings/hl7v2/header';
import { formatHl7Time } from '../mappings/hl7v2/time';

export type AckCode = 'AA' | 'AE' | 'AR' | 'CA' | 'CE' | 'CR';

export interface AckInput {
  /** Header of the message being acknowledged; undefined when it had none we could read. */
  header?: MessageHeader;
  code: AckCode;
  error?: HubError;
  /** Our identity as MSH-3/MSH-4 when the inbound message named no receiver. */
  hubApplication?: string;
  now?: Date;
}

/** Unique per process and time: ACK control ids need not be random, only distinct. */
let ackCounter = 0;
const ackPrefix = `ACK${process.pid.toString(36).toUpperCase()}${Date.now().toString(36).toUpperCase()}`;
function nextAckControlId(): string {
  ackCounter = (ackCounter + 1) % 1e9;
  return `${ackPrefix}-${ackCounter}`;
}

export function buildAck(input: AckInput): string {
  const d = standardDelimiters;
  const h = input.header;
  // A control byte the sender put in a field we echo (MSH-10 in MSA-2, MSH-12) goes back as HL7's
  // hex escape (\X00\, \X1C\): a receiver that unescapes reads exactly what it sent, and the ACK
  // carries none of them — an echoed FS (0x1C) before the segment's CR would end the MLLP frame
  // early (found by the fuzz suite), a NUL breaks C receivers. CR and LF are escape()'s \.br\.
  const e = (text: string) =>
    escape(text, d).replace(/[\u0000-\u001f\u007f]/g, (c) => `${d.escape}X${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}${d.escape}`);
  const version = h?.versionId || '2.5';
  const msh = [
    'MSH',
    `${d.component}${d.repetition}${d.escape}${d.subcomponent}`,
    e(h?.receivingApplication || input.hubApplication || 'YILIAN-HUB'),
    e(h?.receivingFacility || ''),
    e(h?.sendingApplication || ''),
    e(h?.sendingFacility || ''),
    formatHl7Time(input.now ?? new Date()),
    '',
    `ACK${d.component}${e(h?.triggerEvent || '')}${d.component}ACK`,
    nextAckControlId(),
    e(h?.processingId || 'P'),
    e(version),
  ];
  const segments = [msh.join(d.field)];
  const msa = ['MSA', input.code, e(h?.controlId || '')];
  if (input.error) msa.push(e(input.error.message.slice(0, 80)));
  segments.push(msa.join(d.field));
  if (input.error) {
    const condition = input.error.hl7;
    const err = [
      'ERR',
      '',
      errorLocation(input.error.location, d.component),
      `${condition.code}${d.component}${e(condition.text)}${d.component}HL70357`,
      'E',
      '',
      '',
      '',
      e(`${input.error.code}: ${input.error.message}`),
    ];
    segments.push(err.join(d.field));
  }
  return segments.join('\r') + '\r';
}

/**
 * Which acknowledgment a stored (or failed) message gets. Enhanced mode follows MSH-15:
 * AL always, ER only on error, NE never, SU only on success; original mode always answers.
 * Returns undefined when no ACK is to be sent.
 */
export function ackCodeFor(
  mode: 'original' | 'enhanced' | 'auto',
  header: MessageHeader | undefined,
  error: HubError | undefined,
): AckCode | undefined {
  const enhanced = mode === 'enhanced' || (mode === 'auto' && !!header && (header.acceptAckType !== '' || header.applicationAckType !== ''));
  if (!enhanced) return error ? error.hl7.ack : 'AA';
  const accept = (header?.acceptAckType || 'AL').toUpperCase();
  if (accept === 'NE') return undefined;
  if (error) return accept === 'SU' ? undefined : error.hl7.ack === 'AR' ? 'CR' : 'CE';
  return accept === 'ER' ? undefined : 'CA';
}

/** ERR-2 (ERL): segment^sequence^field from a location like `PID-3`; empty for other locations. */
function errorLocation(location: string | undefined, component: string): string {
  const m = location ? /^([A-Z][A-Z0-9]{2})-(\d+)$/.exec(location) : null;
  return m ? [m[1], '1', m[2]].join(component) : '';
}
