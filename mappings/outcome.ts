/**
 * The one error type of Yilian Hub. Every failure that reaches a user, a quarantine row or an ACK
 * is a HubError with a machine-readable code; retry and dead-letter decisions look at `code` and
 * `transient`, never at message text. It renders as a FHIR OperationOutcome and maps onto the
 * HL7 v2 error codes of table 0357 for ERR segments.
 */

/** Machine-readable reasons. Stored in quarantine.code; stable, part of the API. */
export type HubErrorCode =
  | 'charset' // bytes invalid in the declared/forced charset, or charset unknown
  | 'not-hl7' // no MSH segment where one must be
  | 'structure' // MSH present but unreadable (delimiters, required header fields)
  | 'too-large' // frame above the channel's maximum message size
  | 'incomplete' // frame or file cut off before its end
  | 'framing' // bytes outside an MLLP frame
  | 'unsupported' // well-formed but not something this hub takes (e.g. batch over MLLP)
  | 'unstorable' // a value the hub cannot keep: U+0000 in a field that identifies the message (MSH-3/4/9/10, PID-3), or data PostgreSQL refuses (SQLSTATE class 22/23/54)
  | 'invalid' // configuration or request input that fails validation
  | 'not-found'
  | 'conflict' // the request contradicts stored state (fixing a message that was already fixed)
  | 'exhausted' // transient failures outlasted every retry
  | 'internal';

/** FHIR issue-type codes (http://hl7.org/fhir/issue-type) matching our codes. */
const fhirIssueType: Record<HubErrorCode, string> = {
  charset: 'invalid',
  'not-hl7': 'structure',
  structure: 'structure',
  'too-large': 'too-long',
  incomplete: 'incomplete',
  framing: 'structure',
  unsupported: 'not-supported',
  unstorable: 'invalid',
  invalid: 'invalid',
  'not-found': 'not-found',
  conflict: 'conflict',
  exhausted: 'transient',
  internal: 'exception',
};

/** HL7 table 0357 message error condition codes, and whether the ACK is AR (rejected) or AE. */
const hl7Condition: Record<HubErrorCode, { code: string; text: string; ack: 'AE' | 'AR' }> = {
  charset: { code: '102', text: 'Data type error', ack: 'AE' },
  'not-hl7': { code: '100', text: 'Segment sequence error', ack: 'AR' },
  structure: { code: '100', text: 'Segment sequence error', ack: 'AE' },
  'too-large': { code: '104', text: 'Value too long', ack: 'AR' },
  incomplete: { code: '100', text: 'Segment sequence error', ack: 'AE' },
  framing: { code: '100', text: 'Segment sequence error', ack: 'AR' },
  unsupported: { code: '200', text: 'Unsupported message type', ack: 'AR' },
  // AE, not AR: the message is stored and will not be taken as it is; an AR 207 would read as "resend later" and a sender would resend it forever.
  unstorable: { code: '102', text: 'Data type error', ack: 'AE' },
  invalid: { code: '207', text: 'Application internal error', ack: 'AE' },
  'not-found': { code: '204', text: 'Unknown key identifier', ack: 'AE' },
  conflict: { code: '207', text: 'Application internal error', ack: 'AE' },
  exhausted: { code: '207', text: 'Application internal error', ack: 'AE' },
  internal: { code: '207', text: 'Application internal error', ack: 'AE' },
};

export interface OperationOutcome {
  resourceType: 'OperationOutcome';
  issue: Array<{ severity: 'fatal' | 'error' | 'warning' | 'information'; code: string; diagnostics?: string; expression?: string[]; details?: { coding: Array<{ system: string; code: string }> } }>;
}

export class HubError extends Error {
  override readonly name = 'HubError';
  constructor(
    readonly code: HubErrorCode,
    message: string,
    /** Where: an HL7 location such as `PID-3` or `byte 1234`, a config path, a request field. */
    readonly location?: string,
    /** True when a retry may succeed (database or Redis unreachable); false for bad input. */
    readonly transient = false,
  ) {
    super(message);
  }

  /** The HL7 condition; a transient error is always a reject (AR/CR): "not taken, send it again later". */
  get hl7(): { code: string; text: string; ack: 'AE' | 'AR' } {
    const condition = hl7Condition[this.code];
    return this.transient ? { ...condition, ack: 'AR' } : condition;
  }

  toOperationOutcome(): OperationOutcome {
    return {
      resourceType: 'OperationOutcome',
      issue: [
        {
          severity: this.transient ? 'error' : 'fatal',
          code: fhirIssueType[this.code],
          diagnostics: this.message,
          ...(this.location ? { expression: [this.location] } : {}),
          details: { coding: [{ system: 'urn:yilian:error', code: this.code }] },
        },
      ],
    };
  }
}

/** Anything thrown that is not a HubError is an internal error, and assumed transient (infrastructure). */
export function asHubError(error: unknown): HubError {
  if (error instanceof HubError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new HubError('internal', message, undefined, true);
}
