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
  /**
   * Why the file looks cut off (its writer may not be done): the last segment has no terminator, or
   * a batch (BHS) or file (FHS) is not closed by its BTS / FTS. Undefined when the file ends cleanly.
   */
  incomplete?: string;
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
  let openFile = false; // an FHS not yet closed by its FTS
  let openBatch = false; // a BHS not yet closed by its BTS
  let batches = 0; // BHS segments since the last FHS, for FTS-1
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
      if (name === 'FHS') {
        openFile = true;
        batches = 0;
      }
      if (name === 'BHS') {
        batchStart = messages.length;
        openBatch = true;
        batches++;
      }
      if (name === 'FTS') {
        openFile = false;
        const declared = line.split(line[3] ?? '|')[1] ?? '';
        if (/^\d+$/.test(declared) && Number(declared) !== batches) mismatches.push(`FTS-1 declares ${declared} batches, found ${batches}`);
      }
      if (name === 'BTS') {
        const declared = line.split(line[3] ?? '|')[1] ?? '';
        const found = messages.length - batchStart;
        if (/^\d+$/.test(declared) && Number(declared) !== found) mismatches.push(`BTS-1 declares ${declared} messages, found ${found}`);
        batchStart = messages.length;
        openBatch = false;
      }
    } else if (start >= 0) {
      if (!blank) contentEnd = next;
    } else if (!blank) {
      leading.push(data.subarray(pos, next));
    }
    pos = next;
  }
  close();
  const cut = [
    ...(unterminated(data) ? ['the last segment has no segment terminator (CR or LF)'] : []),
    ...(openBatch ? ['a batch (BHS) is not closed by a BTS segment'] : []),
    ...(openFile ? ['the file batch (FHS) is not closed by an FTS segment'] : []),
  ];
  return {
    messages,
    envelope,
    leading: leading.length ? Buffer.concat(leading) : undefined,
    countMismatch: mismatches.length ? mismatches.join('; ') : undefined,
    incomplete: cut.length ? cut.join('; ') : undefined,
  };
}

/**
 * True when the last non-blank bytes are not followed by a CR or LF. Spaces and tabs after the last
 * line end make a blank line (as the splitter treats them), and NUL / Ctrl-Z padding is what some
 * DOS-era exporters append; neither is content, so neither counts as a cut segment. Spaces before a
 * missing terminator do not help: "PID|1||A1  " with no line end may still be growing.
 */
function unterminated(data: Buffer): boolean {
  let end = data.length;
  while (end > 0 && (data[end - 1] === 0x20 || data[end - 1] === 0x09 || data[end - 1] === 0x00 || data[end - 1] === 0x1a)) end--;
  if (end === 0) return false;
  // Blank padding after a line end: the content ended with its terminator.
  return data[end - 1] !== 0x0d && data[end - 1] !== 0x0a;
}
