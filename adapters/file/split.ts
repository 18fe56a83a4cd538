/**
 * Splits an HL7 v2 file into messages, byte-exact: single messages, several MSH-led messages in a
 * row, and batches (FHS/BHS … BTS/FTS). Segment ends may be CR, LF or CRLF. Works on bytes, not
 * text: CR, LF and the ASCII segment names cannot occur inside a GB18030 or UTF-8 multi-byte
 * character, so each message keeps its original bytes for the raw store and is decoded later with
 * its own MSH-18.
 */
export interface SplitFile {
  messages: Buffer[];
  /** Envelope segments seen (FHS, BHS, BTS, FTS), as text, for the archive log. */
  envelope: string[];
  /** Bytes before the first MSH that are not envelope segments or blank. */
  leading: Buffer | undefined;
  /** BTS-1 / FTS-1 declared counts that disagree with what was found. */
  countMismatch?: string;
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

export function splitHl7File(file: Buffer): SplitFile {
  const data = file.subarray(0, 3).equals(BOM) ? file.subarray(3) : file;
  const messages: Buffer[] = [];
  const envelope: string[] = [];
  const leading: Buffer[] = [];
  const mismatches: string[] = [];
  let start = -1; // start of the current message
  let contentEnd = -1; // end (terminator included) of its last non-blank line: blank lines after a message belong to no segment
  let batchStart = 0; // messages.length when the current batch (BHS) began
  let pos = 0;
  const close = () => {
    if (start >= 0) messages.push(data.subarray(start, contentEnd));
    start = -1;
  };
  while (pos < data.length) {
    let end = pos;
    while (end < data.length && data[end] !== 0x0d && data[end] !== 0x0a) end++;
    let next = end;
    if (data[next] === 0x0d && data[next + 1] === 0x0a) next += 2;
    else if (next < data.length) next += 1;
    const blank = !data.subarray(pos, end).some((b) => b !== 0x20 && b !== 0x09);
    const name = data.subarray(pos, Math.min(pos + 3, end)).toString('latin1');
    const after = data[pos + 3];
    const separatorFollows = end - pos === 3 || (after !== undefined && !/[A-Za-z0-9\s]/.test(String.fromCharCode(after)));
    if (name === 'MSH') {
      close();
      start = pos;
      contentEnd = next;
    } else if ((name === 'FHS' || name === 'BHS' || name === 'BTS' || name === 'FTS') && separatorFollows) {
      close();
      const line = data.subarray(pos, end).toString('latin1');
      envelope.push(line);
      if (name === 'BHS') batchStart = messages.length;
      if (name === 'BTS') {
        const declared = line.split(line[3] ?? '|')[1] ?? '';
        const found = messages.length - batchStart;
        if (/^\d+$/.test(declared) && Number(declared) !== found) mismatches.push(`BTS-1 declares ${declared} messages, found ${found}`);
        batchStart = messages.length;
      }
    } else if (start >= 0) {
      if (!blank) contentEnd = next;
    } else if (!blank) {
      leading.push(data.subarray(pos, next));
    }
    pos = next;
  }
  close();
  return {
    messages,
    envelope,
    leading: leading.length ? Buffer.concat(leading) : undefined,
    countMismatch: mismatches.length ? mismatches.join('; ') : undefined,
  };
}
