/**
 * Character sets of HL7 v2 (MSH-18, table 0211) and strict decoding.
 * Owns: the mapping from MSH-18 names to decoders, and the rule that bytes invalid in the chosen
 * charset are an error (`charset`) — never silently replaced by U+FFFD. Decoding uses Node's ICU
 * TextDecoder in fatal mode; iconv-lite is used only to *encode* (ACKs in the sender's charset),
 * because it cannot decode strictly. Text a person typed (fix-and-replay) is encoded strictly too:
 * a character the charset cannot hold is an error, never a '?'.
 */
import iconv from 'iconv-lite';
import { TextDecoder } from 'node:util';
import { HubError } from '../outcome';

/** Canonical charset names we store in raw_message.charset. */
export type Charset = 'UTF-8' | 'GB18030' | 'GBK' | 'ISO-8859-1' | 'ASCII';

/** MSH-18 values (HL7 table 0211 plus names seen in Chinese HIS exports) → canonical charset. */
const msh18Names: Record<string, Charset> = {
  'UNICODE UTF-8': 'UTF-8',
  'UTF-8': 'UTF-8',
  UTF8: 'UTF-8',
  GB18030: 'GB18030',
  'GB 18030-2000': 'GB18030',
  'GB18030-2000': 'GB18030',
  'GB 18030-2005': 'GB18030',
  GBK: 'GBK',
  'CP936': 'GBK',
  '8859/1': 'ISO-8859-1',
  'ISO-8859-1': 'ISO-8859-1',
  'ISO IR100': 'ISO-8859-1',
  ASCII: 'ASCII',
  'ISO IR6': 'ASCII',
};

/** Resolve an MSH-18 or config name; undefined when we do not support it. */
export function charsetFromName(name: string): Charset | undefined {
  return msh18Names[name.trim().toUpperCase().replace(/\s+/g, ' ')];
}

export const supportedCharsetNames = Object.keys(msh18Names);

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
const gb18030Decoder = new TextDecoder('gb18030', { fatal: true });

/** Decode strictly. Throws HubError('charset') naming the first bad byte offset. */
export function decodeStrict(bytes: Uint8Array, charset: Charset): string {
  switch (charset) {
    case 'ASCII': {
      const bad = bytes.findIndex((b) => b > 0x7f);
      if (bad >= 0) throw badBytes(bytes, bad, charset);
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    }
    case 'ISO-8859-1':
      // Every byte is a valid ISO-8859-1 character; true Latin-1, not WHATWG's windows-1252.
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    case 'UTF-8':
      return decodeWith(utf8Decoder, bytes, charset);
    case 'GB18030':
    case 'GBK':
      // GBK is a subset of GB18030; a GBK-declared message holding a four-byte GB18030 sequence is
      // still decoded correctly rather than rejected, since the characters are unambiguous.
      return decodeWith(gb18030Decoder, bytes, charset);
  }
}

function decodeWith(decoder: TextDecoder, bytes: Uint8Array, charset: Charset): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw badBytes(bytes, firstInvalidOffset(bytes, charset), charset);
  }
}

/**
 * Offset of the first byte of the first invalid sequence. A streaming decoder notices the problem
 * at the byte that cannot continue a sequence, so first find that byte (binary search over prefixes
 * decoded in stream mode), then step back to where the broken character began: the longest prefix
 * that decodes completely.
 */
function firstInvalidOffset(bytes: Uint8Array, charset: Charset): number {
  const label = charset === 'UTF-8' ? 'utf-8' : 'gb18030';
  const decodes = (length: number, stream: boolean) => {
    try {
      new TextDecoder(label, { fatal: true }).decode(bytes.subarray(0, length), { stream });
      return true;
    } catch {
      return false;
    }
  };
  let lo = 0;
  let hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (decodes(mid + 1, true)) lo = mid + 1;
    else hi = mid;
  }
  // A character is at most 4 bytes long in UTF-8 and GB18030.
  for (let start = Math.min(lo, bytes.length); start > Math.max(0, lo - 4); start--) if (decodes(start, false)) return start;
  return Math.max(0, lo - 4);
}

function badBytes(bytes: Uint8Array, offset: number, charset: Charset): HubError {
  const around = Buffer.from(bytes.subarray(offset, offset + 4)).toString('hex');
  return new HubError('charset', `bytes invalid in ${charset} at byte ${offset} (0x${around})`, `byte ${offset}`);
}

/** Encode text in a charset (for ACKs sent back in the sender's charset). */
export function encode(text: string, charset: Charset): Buffer {
  switch (charset) {
    case 'UTF-8':
      return Buffer.from(text, 'utf8');
    case 'ASCII':
    case 'ISO-8859-1':
      return Buffer.from(text, 'latin1');
    case 'GB18030':
    case 'GBK':
      return iconv.encode(text, 'gb18030');
  }
}

/**
 * Encode text that must survive the round trip (a corrected message typed in the console): the
 * bytes are decoded back strictly and compared, so a character the charset cannot hold (é in
 * ASCII, 黄 in ISO-8859-1, a lone surrogate anywhere) is a HubError('invalid') naming the character
 * and its line and column — never silently replaced, as Buffer's latin1 and iconv would do.
 */
export function encodeStrict(text: string, charset: Charset): Buffer {
  const bytes = encode(text, charset);
  if (roundTrips(bytes, text, charset)) return bytes;
  // Only on failure: find the first character that does not survive on its own.
  let line = 1;
  let column = 1;
  for (const c of text) {
    if (!roundTrips(encode(c, charset), c, charset)) {
      const codePoint = `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
      throw new HubError('invalid', `character "${c}" (${codePoint}) at line ${line}, column ${column} cannot be written in ${charset}`, `line ${line}, column ${column}`);
    }
    if (c === '\r' || c === '\n') {
      line++;
      column = 1;
    } else column++;
  }
  throw new HubError('invalid', `the text does not survive encoding in ${charset}`);
}

function roundTrips(bytes: Buffer, text: string, charset: Charset): boolean {
  try {
    return decodeStrict(bytes, charset) === text;
  } catch {
    return false;
  }
}
