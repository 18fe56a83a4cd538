import iconv from 'iconv-lite';
import { splitHl7File } from './split';

const m1 = ['MSH|^~\\&|HIS|RMYY|HUB|YL|20240101||ADT^A01|1|P|2.5', 'PID|1||A1'];
const m2 = ['MSH|^~\\&|HIS|RMYY|HUB|YL|20240101||ADT^A08|2|P|2.5', 'PID|1||A2', 'PV1|1|I'];
const m3 = ['MSH|^~\\&|HIS|RMYY|HUB|YL|20240101||ADT^A03|3|P|2.5', 'PID|1||A3'];

/** Segments joined and ended by `end`. */
function text(segments: string[], end = '\r'): string {
  return segments.map((s) => s + end).join('');
}

function texts(messages: Buffer[]): string[] {
  return messages.map((m) => m.toString('latin1'));
}

describe('splitHl7File', () => {
  it('returns a single message unchanged', () => {
    const file = Buffer.from(text(m1));
    const result = splitHl7File(file);
    expect(result.messages).toHaveLength(1);
    expect(Buffer.compare(result.messages[0]!, file)).toBe(0);
    expect(result.envelope).toEqual([]);
    expect(result.leading).toBeUndefined();
    expect(result.countMismatch).toBeUndefined();
  });

  it('keeps a message without a final segment terminator', () => {
    const result = splitHl7File(Buffer.from(m1.join('\r')));
    expect(texts(result.messages)).toEqual([m1.join('\r')]);
  });

  it.each([
    ['CR', '\r'],
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])('splits a %s file into messages, each keeping its segment ends', (_name, end) => {
    const file = Buffer.from(text(m1, end) + text(m2, end) + text(m3, end));
    const result = splitHl7File(file);
    expect(texts(result.messages)).toEqual([text(m1, end), text(m2, end), text(m3, end)]);
    expect(result.leading).toBeUndefined();
  });

  it('returns each message as an exact slice of the input', () => {
    const a = text(m1, '\r\n');
    const b = text(m2, '\r\n');
    const file = Buffer.from(a + b);
    const [first, second] = splitHl7File(file).messages;
    expect(Buffer.compare(first!, file.subarray(0, a.length))).toBe(0);
    expect(Buffer.compare(second!, file.subarray(a.length))).toBe(0);
  });

  it('strips a UTF-8 BOM', () => {
    const body = text(m1) + text(m2);
    const file = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)]);
    const result = splitHl7File(file);
    expect(result.messages).toHaveLength(2);
    expect(result.messages[0]![0]).toBe(0x4d); // 'M', not the BOM
    expect(Buffer.compare(result.messages[0]!, file.subarray(3, 3 + text(m1).length))).toBe(0);
    expect(result.leading).toBeUndefined();
  });

  it('drops blank lines between messages but keeps the last segment terminator', () => {
    const file = Buffer.from(text(m1, '\r\n') + '\r\n\r\n' + text(m2, '\r\n') + '\r\n');
    expect(texts(splitHl7File(file).messages)).toEqual([text(m1, '\r\n'), text(m2, '\r\n')]);
  });

  it('splits a batch into its messages and reports the envelope', () => {
    const file = Buffer.from(
      text(['FHS|^~\\&|HIS|RMYY|||20240101', 'BHS|^~\\&|HIS|RMYY|||20240101', ...m1, ...m2, 'BTS|2', 'FTS|1']),
    );
    const result = splitHl7File(file);
    expect(texts(result.messages)).toEqual([text(m1), text(m2)]);
    expect(result.envelope).toEqual(['FHS|^~\\&|HIS|RMYY|||20240101', 'BHS|^~\\&|HIS|RMYY|||20240101', 'BTS|2', 'FTS|1']);
    expect(result.countMismatch).toBeUndefined();
    expect(result.leading).toBeUndefined();
  });

  it('reports a BTS-1 count that disagrees with the messages found', () => {
    const file = Buffer.from(text(['BHS|^~\\&', ...m1, ...m2, 'BTS|3']));
    const result = splitHl7File(file);
    expect(result.messages).toHaveLength(2);
    expect(result.countMismatch).toBe('BTS-1 declares 3 messages, found 2');
  });

  it('does not treat a segment that merely starts with BTS letters as envelope', () => {
    const file = Buffer.from(text([...m1, 'BTSX|1']));
    const result = splitHl7File(file);
    expect(texts(result.messages)).toEqual([text([...m1, 'BTSX|1'])]);
    expect(result.envelope).toEqual([]);
  });

  it('reports bytes before the first MSH in leading', () => {
    const file = Buffer.from('exported by HIS v3\r\n  \r\n' + text(m1));
    const result = splitHl7File(file);
    expect(result.leading?.toString('latin1')).toBe('exported by HIS v3\r\n');
    expect(texts(result.messages)).toEqual([text(m1)]);
    expect(Buffer.compare(result.messages[0]!, file.subarray(file.length - text(m1).length))).toBe(0);
  });

  it('keeps GB18030 content byte-exact', () => {
    const a = iconv.encode(text([...m1.slice(0, 1), 'PID|1||A1||张三^^^^^^L||19900101|F|||人民路1号', 'NTE|1||刘䶮 𠀀']), 'gb18030');
    const b = iconv.encode(text(m2), 'gb18030');
    const file = Buffer.concat([a, b]);
    const result = splitHl7File(file);
    expect(result.messages).toHaveLength(2);
    expect(Buffer.compare(result.messages[0]!, a)).toBe(0);
    expect(Buffer.compare(result.messages[1]!, b)).toBe(0);
    expect(iconv.decode(result.messages[0]!, 'gb18030')).toContain('刘䶮 𠀀');
  });

  it('returns nothing for an empty or blank file', () => {
    expect(splitHl7File(Buffer.alloc(0))).toEqual({ messages: [], envelope: [], leading: undefined, countMismatch: undefined });
    expect(splitHl7File(Buffer.from('\r\n\r\n')).messages).toEqual([]);
  });

  // Each BTS-1 counts the messages of its own batch, but only the last BTS is kept and compared
  // with the number of messages in the whole file.
  it('a file of two batches with correct BTS-1 counts reports no mismatch', () => {
    const file = Buffer.from(text(['FHS|^~\\&', 'BHS|^~\\&', ...m1, ...m2, 'BTS|2', 'BHS|^~\\&', ...m3, 'BTS|1', 'FTS|2']));
    const result = splitHl7File(file);
    expect(result.messages).toHaveLength(3);
    expect(result.countMismatch).toBeUndefined();
  });

  // trimTrailingBlank strips trailing spaces together with the line end, then adds back one byte,
  // which is the space: the last segment loses its CR.
  it('keeps the final CR of a last segment that ends in a space', () => {
    const file = Buffer.from(text([...m1.slice(0, 1), 'NTE|1||text ']));
    expect(Buffer.compare(splitHl7File(file).messages[0]!, file)).toBe(0);
  });
});

describe('splitHl7File: files that look cut off', () => {
  it.each([
    ['CR', '\r'],
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])('a file whose last segment ends with %s is not incomplete', (_name, end) => {
    expect(splitHl7File(Buffer.from(text(m1, end) + text(m2, end))).incomplete).toBeUndefined();
  });

  // Blank padding after the last line end is not content; NUL / Ctrl-Z padding is what DOS-era exporters append.
  it.each([
    ['spaces and a blank line', text(m1, '\r\n') + '  \r\n \t '],
    ['NUL padding', text(m1) + '\0\0\0'],
    ['Ctrl-Z', text(m1, '\r\n') + '\x1a'],
  ])('trailing %s after the last terminator is not a cut', (_name, body) => {
    expect(splitHl7File(Buffer.from(body)).incomplete).toBeUndefined();
  });

  it.each([
    ['mid-segment', text(m1) + 'OBR|1||LAB-'],
    ['a last segment without its terminator', m1.join('\r')],
    ['spaces but no terminator', m1.join('\r') + '   '],
  ])('%s is reported as a missing terminator', (_name, body) => {
    expect(splitHl7File(Buffer.from(body)).incomplete).toMatch(/no segment terminator/);
  });

  it('a batch without BTS and a file without FTS are reported', () => {
    const open = splitHl7File(Buffer.from(text(['FHS|^~\\&', 'BHS|^~\\&', ...m1])));
    expect(open.incomplete).toMatch(/BHS\) is not closed by a BTS/);
    expect(open.incomplete).toMatch(/FHS\) is not closed by an FTS/);
    const noFts = splitHl7File(Buffer.from(text(['FHS|^~\\&', 'BHS|^~\\&', ...m1, 'BTS|1'])));
    expect(noFts.incomplete).toMatch(/FTS/);
    expect(noFts.incomplete).not.toMatch(/BTS/);
    expect(splitHl7File(Buffer.from(text(['FHS|^~\\&', 'BHS|^~\\&', ...m1, 'BTS|1', 'FTS|1']))).incomplete).toBeUndefined();
  });

  it('an FTS-1 batch count that disagrees is a count mismatch', () => {
    const result = splitHl7File(Buffer.from(text(['FHS|^~\\&', 'BHS|^~\\&', ...m1, 'BTS|1', 'FTS|2'])));
    expect(result.countMismatch).toBe('FTS-1 declares 2 batches, found 1');
  });
});
