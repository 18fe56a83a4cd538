/**
 * Yilian Hub's one HL7 v2 reader: lossless, version-agnostic, delimiter-aware.
 * Owns: splitting decoded text into segments/fields/repetitions/components/sub-components, the
 * escape sequences of HL7 v2 chapter 2, and the difference between an empty field and `""`
 * (explicit null). Values are kept escaped as received and unescaped on access, so nothing is lost.
 * Must never: decode bytes (that is charset.ts, before this) or guess at a missing MSH.
 */
import { HubError } from '../outcome';

export interface Delimiters {
  field: string;
  component: string;
  repetition: string;
  escape: string;
  subcomponent: string;
}

/** Segment ends may be CR (standard), LF or CRLF: members' file exports use all three. */
const segmentEnd = /\r\n|\r|\n/;

export class Hl7Segment {
  constructor(
    readonly name: string,
    /** fields[n] is field n, escaped as received. For MSH, fields[1] is the field separator and fields[2] the encoding characters, as the standard numbers them. */
    readonly fields: string[],
    private readonly delimiters: Delimiters,
  ) {}

  /** Field n as received (escaped, all repetitions). '' when absent. */
  raw(n: number): string {
    return this.fields[n] ?? '';
  }

  /** `""` in a field means "delete this value at the receiver", unlike an empty field. */
  isExplicitNull(n: number): boolean {
    return this.raw(n) === '""';
  }

  /** The repetitions of field n, escaped. Split once per field and shared: callers must not modify the array. */
  repetitions(n: number): readonly string[] {
    const cache = (this.repetitionCache ??= []);
    let reps = cache[n];
    if (reps === undefined) {
      const raw = this.raw(n);
      reps = raw === '' ? [] : this.name === 'MSH' && (n === 1 || n === 2) ? [raw] : raw.split(this.delimiters.repetition);
      cache[n] = reps;
    }
    return reps;
  }
  private repetitionCache?: Array<readonly string[] | undefined>;

  /** Unescaped value at field n, repetition rep (0-based), component comp and sub-component sub (1-based). */
  value(n: number, rep = 0, comp = 1, sub = 1): string {
    const repetition = this.repetitions(n)[rep];
    if (repetition === undefined) return '';
    if (this.name === 'MSH' && (n === 1 || n === 2)) return repetition;
    const component = repetition.split(this.delimiters.component)[comp - 1] ?? '';
    const subcomponent = component.split(this.delimiters.subcomponent)[sub - 1] ?? '';
    return unescape(subcomponent, this.delimiters);
  }

  /** All components of one repetition, unescaped (sub-components joined by the sub-component delimiter). */
  components(n: number, rep = 0): string[] {
    const repetition = this.repetitions(n)[rep];
    if (repetition === undefined) return [];
    if (this.name === 'MSH' && (n === 1 || n === 2)) return [repetition];
    return repetition.split(this.delimiters.component).map((c) => unescape(c, this.delimiters));
  }
}

export class Hl7Message {
  private constructor(
    readonly segments: Hl7Segment[],
    readonly delimiters: Delimiters,
  ) {}

  /** Parse one message (text already decoded). Throws HubError `not-hl7` or `structure`. */
  static parse(text: string): Hl7Message {
    const body = text.replace(/^\uFEFF/, '').replace(/^[\s\x0b]+/, '');
    if (!body.startsWith('MSH')) {
      throw new HubError('not-hl7', 'message does not start with an MSH segment', 'MSH');
    }
    const delimiters = readDelimiters(body);
    const lines = body.split(segmentEnd);
    const segments: Hl7Segment[] = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.trim() === '') continue;
      const name = line.slice(0, 3);
      if (!/^[A-Z][A-Z0-9]{2}$/.test(name) || (line.length > 3 && line[3] !== delimiters.field)) {
        throw new HubError('structure', `segment ${i + 1} is not a valid segment: "${line.slice(0, 20)}"`, `segment ${i + 1}`);
      }
      const parts = line.split(delimiters.field);
      // MSH-1 is the field separator itself, so MSH fields are shifted by one against the split.
      const fields = name === 'MSH' ? ['MSH', delimiters.field, ...parts.slice(1)] : parts;
      segments.push(new Hl7Segment(name, fields, delimiters));
    }
    return new Hl7Message(segments, delimiters);
  }

  get msh(): Hl7Segment {
    return this.segments[0]!;
  }

  segment(name: string): Hl7Segment | undefined {
    return this.segments.find((s) => s.name === name);
  }

  all(name: string): Hl7Segment[] {
    return this.segments.filter((s) => s.name === name);
  }
}

/** MSH-1 and MSH-2 declare the delimiters; a message with fewer or duplicated ones is unreadable. */
export function readDelimiters(body: string): Delimiters {
  const field = body[3];
  if (field === undefined || /[A-Za-z0-9\s]/.test(field)) {
    throw new HubError('structure', 'MSH-1 (field separator) is missing or invalid', 'MSH-1');
  }
  const end = body.indexOf(field, 4);
  const encoding = end < 0 ? '' : body.slice(4, end);
  if (encoding.length < 4 || encoding.length > 5) {
    throw new HubError('structure', `MSH-2 (encoding characters) must hold 4 or 5 characters, got "${encoding}"`, 'MSH-2');
  }
  const [component, repetition, escape, subcomponent] = encoding;
  const all = [field, component!, repetition!, escape!, subcomponent!];
  if (new Set(all).size !== all.length || all.some((c) => /[A-Za-z0-9\s]/.test(c))) {
    throw new HubError('structure', `MSH-1/MSH-2 delimiters are repeated or invalid: "${field}${encoding}"`, 'MSH-2');
  }
  return { field, component: component!, repetition: repetition!, escape: escape!, subcomponent: subcomponent! };
}

/**
 * HL7 v2 escape sequences (v2.8 chapter 2.7): \F\ \S\ \T\ \R\ \E\ delimiters; \Xhh…\ hex data
 * (read as UTF-8 bytes); \.br\ a line break; \H\ \N\ highlighting and \Cxxyy\ \Mxxyyzz\ charset
 * switches carry no text and are dropped; anything unknown is kept as received.
 */
export function unescape(value: string, d: Delimiters): string {
  if (!value.includes(d.escape)) return value;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const ch = value[i]!;
    if (ch !== d.escape) {
      out += ch;
      i++;
      continue;
    }
    const close = value.indexOf(d.escape, i + 1);
    if (close < 0) {
      out += value.slice(i);
      break;
    }
    const seq = value.slice(i + 1, close);
    out += expandEscape(seq, d) ?? value.slice(i, close + 1);
    i = close + 1;
  }
  return out;
}

function expandEscape(seq: string, d: Delimiters): string | undefined {
  switch (seq) {
    case 'F':
      return d.field;
    case 'S':
      return d.component;
    case 'T':
      return d.subcomponent;
    case 'R':
      return d.repetition;
    case 'E':
      return d.escape;
    case 'H':
    case 'N':
      return '';
    case '.br':
      return '\n';
  }
  if (/^X([0-9A-Fa-f]{2})+$/.test(seq)) return Buffer.from(seq.slice(1), 'hex').toString('utf8');
  if (/^C[0-9A-Fa-f]{4}$/.test(seq) || /^M[0-9A-Fa-f]{4}([0-9A-Fa-f]{2})?$/.test(seq)) return '';
  return undefined;
}

/** Escape text for an HL7 field (used when we write ACK/ERR text). */
export function escape(text: string, d: Delimiters): string {
  let out = '';
  for (const ch of text) {
    if (ch === d.escape) out += `${d.escape}E${d.escape}`;
    else if (ch === d.field) out += `${d.escape}F${d.escape}`;
    else if (ch === d.component) out += `${d.escape}S${d.escape}`;
    else if (ch === d.subcomponent) out += `${d.escape}T${d.escape}`;
    else if (ch === d.repetition) out += `${d.escape}R${d.escape}`;
    else if (ch === '\r' || ch === '\n') out += `${d.escape}.br${d.escape}`;
    else out += ch;
  }
  return out;
}

export const standardDelimiters: Delimiters = { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };
