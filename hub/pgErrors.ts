/**
 * What PostgreSQL refuses, in one place: text it cannot hold (made storable before it is sent) and
 * the errors it raises (sorted into "retry" and "the data is the problem").
 *
 * Text. A `text` or `jsonb` value cannot hold U+0000 (text: `invalid byte sequence for encoding
 * "UTF8": 0x00`, 22021; jsonb: `unsupported Unicode escape sequence`, 22P05), nor a lone UTF-16
 * surrogate (node writes it as U+FFFD into text, silently; jsonb refuses its `\udXXX` escape). Every
 * value derived from a member's bytes that goes into a text or jsonb column passes `storableText`
 * (or `storableJson`), which writes such a character as the visible six characters `\u0000` (the
 * JSON / JavaScript spelling, `\uD800` for a surrogate). Why that form and not HL7's `\X00\`: the
 * same function serves HL7 v2 and FHIR input (a FHIR resource's strings, a lone surrogate, have no
 * bytes to hex-escape); our HL7 reader unescapes `\X00\` back into U+0000, so that form would not
 * survive a round through it; and a FHIR reader would see an HL7 escape it has no reason to
 * interpret. The form is a marker for people, not a reversible encoding (a backslash is not
 * escaped, so a value that already said `\u0000` reads the same): the original bytes stay exact in
 * raw_message.content, and that is where the truth is. The ACKs (adapters/ack.ts), which are HL7,
 * write the character as `\X00\` instead, so the sender reads back what it sent.
 *
 * Errors. `isTransientDbError`: a retry may succeed (connection lost or refused, server shutting
 * down, serialization failure or deadlock, lock or statement timeout, out of connections).
 * `isDataDbError`: the statement's data is the problem (SQLSTATE class 22 data exception, 23
 * integrity constraint, 54 program limit such as an index row too large): the same input fails the
 * same way every time, so a retry only delays the quarantine. Anything else (a programming error,
 * class 42) is neither: callers keep their own default.
 */

const UNSTORABLE = /[\u0000\ud800-\udfff]/;

/**
 * `text` with every character PostgreSQL text/jsonb cannot hold written as `\u0000`-style escapes;
 * the same string (no copy) when there is none, which is almost always.
 */
export function storableText(text: string): string {
  if (!UNSTORABLE.test(text)) return text;
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0) {
      out += '\\u0000';
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && text.charCodeAt(i + 1) >= 0xdc00 && text.charCodeAt(i + 1) <= 0xdfff) {
      out += text[i]! + text[i + 1]!; // a well-formed pair: one character outside the BMP
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      out += `\\u${c.toString(16).toUpperCase()}`;
    } else {
      out += text[i]!;
    }
  }
  return out;
}

/** storableText, keeping null and undefined as they are. */
export function storableOrNull<T extends string | null | undefined>(text: T): T {
  return (typeof text === 'string' ? storableText(text) : text) as T;
}

/**
 * JSON text for a jsonb parameter whose strings (and keys) are all storable. JSON.stringify writes
 * U+0000 as `\u0000` and a lone surrogate as `\udXXX`; only when one of those appears (or a string
 * that merely spells one: harmless, it is walked for nothing) is the value walked again.
 */
export function storableJson(value: unknown): string {
  const json = JSON.stringify(value);
  if (json === undefined || !/\\u(0000|d[89a-f])/i.test(json)) return json;
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'string') return storableText(v);
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).some((k) => UNSTORABLE.test(k))) {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [storableText(k), x]));
    }
    return v;
  });
}

/** SQLSTATEs of a server that went away or is going (57P01 admin shutdown … 57P03 cannot connect now). */
const TRANSIENT_SQLSTATES = new Set(['40001', '40P01', '55P03', '57014', '57P01', '57P02', '57P03', '58030']);
/** Node and pg errors of a connection that failed or broke. */
const TRANSIENT_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED']);
const TRANSIENT_MESSAGES = [
  /connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /connection (is )?(closed|ended)/i,
  /client has encountered a connection error/i,
  /cannot use a pool after calling end/i,
  /terminating connection/i,
];

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The error and what it wraps (AggregateError of a connect to several addresses, `cause`). */
function* chain(error: unknown, depth = 0): Generator<unknown> {
  if (error === null || error === undefined || depth > 4) return;
  yield error;
  if (error instanceof AggregateError) for (const inner of error.errors) yield* chain(inner, depth + 1);
  const cause = (error as { cause?: unknown }).cause;
  if (cause !== undefined) yield* chain(cause, depth + 1);
}

/** True when a retry of the same statement may succeed: the connection or the server, not the data. */
export function isTransientDbError(error: unknown): boolean {
  for (const e of chain(error)) {
    const code = codeOf(e);
    if (code) {
      if (code.startsWith('08') || code.startsWith('53') || TRANSIENT_SQLSTATES.has(code) || TRANSIENT_NODE_CODES.has(code)) return true;
      // A SQLSTATE of any other class is the server's answer about this statement: not transient.
      if (/^[0-9A-Z]{5}$/.test(code)) return false;
    }
    const message = e instanceof Error ? e.message : typeof e === 'string' ? e : '';
    if (TRANSIENT_MESSAGES.some((pattern) => pattern.test(message))) return true;
  }
  return false;
}

/** True when PostgreSQL refused the statement for its data (class 22, 23 or 54): the same input always fails. */
export function isDataDbError(error: unknown): boolean {
  for (const e of chain(error)) {
    const code = codeOf(e);
    if (code && /^(22|23|54)[0-9A-Z]{3}$/.test(code)) return true;
  }
  return false;
}

/** `message (SQLSTATE xxxxx)` for reasons people read. */
export function describeDbError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = codeOf(error);
  return code && /^[0-9A-Z]{5}$/.test(code) ? `${message} (SQLSTATE ${code})` : message;
}
