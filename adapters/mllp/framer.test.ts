import { FrameEvent, MllpFramer, frame } from './framer';

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

const msg1 = 'MSH|^~\\&|HIS|RMYY|HUB|YL|20240101||ADT^A01|1|P|2.5\rPID|1||A1\r';
const msg2 = 'MSH|^~\\&|HIS|RMYY|HUB|YL|20240101||ADT^A08|2|P|2.5\rPID|1||张三\r';

/** Events as plain values, so expectations read as text. */
function show(events: FrameEvent[]): Array<Record<string, unknown>> {
  return events.map((e) =>
    e.kind === 'oversize' ? { kind: e.kind, head: e.head.toString('latin1'), totalBytes: e.totalBytes } : { kind: e.kind, text: e.bytes.toString('utf8') },
  );
}

describe('frame()', () => {
  it('wraps a message in VT … FS CR', () => {
    expect([...frame('AB')]).toEqual([VT, 0x41, 0x42, FS, CR]);
    expect(frame(Buffer.from([0xd5, 0xc5])).toString('hex')).toBe('0bd5c51c0d');
  });
});

describe('MllpFramer', () => {
  it('reads one frame in one chunk', () => {
    const framer = new MllpFramer(1 << 20);
    expect(show(framer.push(frame(msg1)))).toEqual([{ kind: 'message', text: msg1 }]);
    expect(framer.midFrame).toBe(false);
    expect(framer.finish()).toEqual([]);
  });

  it('keeps the message bytes exactly (UTF-8 Chinese)', () => {
    const framer = new MllpFramer(1 << 20);
    const [event] = framer.push(frame(msg2));
    expect(event!.kind).toBe('message');
    expect(Buffer.compare((event as { bytes: Buffer }).bytes, Buffer.from(msg2, 'utf8'))).toBe(0);
  });

  it('reads several frames from one chunk', () => {
    const framer = new MllpFramer(1 << 20);
    const chunk = Buffer.concat([frame(msg1), frame(msg2), frame('third')]);
    expect(show(framer.push(chunk))).toEqual([
      { kind: 'message', text: msg1 },
      { kind: 'message', text: msg2 },
      { kind: 'message', text: 'third' },
    ]);
  });

  it('reads a frame pushed one byte at a time over 500 pushes', () => {
    const head = 'MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rNTE|1||';
    const body = head + 'x'.repeat(497 - head.length - 1) + '\r';
    const bytes = frame(body);
    expect(bytes.length).toBe(500);
    const framer = new MllpFramer(1 << 20);
    const events: FrameEvent[] = [];
    for (let i = 0; i < bytes.length; i++) {
      events.push(...framer.push(bytes.subarray(i, i + 1)));
      if (i < bytes.length - 1) expect(events).toHaveLength(0);
    }
    expect(show(events)).toEqual([{ kind: 'message', text: body }]);
    expect(framer.midFrame).toBe(false);
  });

  it('reads a frame split at every possible point into two chunks', () => {
    const bytes = Buffer.concat([frame(msg1), frame(msg2)]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const framer = new MllpFramer(1 << 20);
      const events = [...framer.push(bytes.subarray(0, cut)), ...framer.push(bytes.subarray(cut))];
      expect(show(events)).toEqual([
        { kind: 'message', text: msg1 },
        { kind: 'message', text: msg2 },
      ]);
    }
  });

  it('ends a frame when FS ends one chunk and CR starts the next', () => {
    const framer = new MllpFramer(1 << 20);
    const bytes = frame(msg1);
    expect(framer.push(bytes.subarray(0, bytes.length - 1))).toEqual([]);
    expect(framer.midFrame).toBe(true);
    expect(show(framer.push(Buffer.from([CR])))).toEqual([{ kind: 'message', text: msg1 }]);
    expect(framer.midFrame).toBe(false);
  });

  it('keeps a lone FS inside a message as data', () => {
    const framer = new MllpFramer(1 << 20);
    const body = Buffer.from([0x41, FS, 0x42, FS, FS, 0x43]);
    const [event] = framer.push(Buffer.concat([Buffer.from([VT]), body, Buffer.from([FS, CR])]));
    expect(event).toEqual({ kind: 'message', bytes: body });
  });

  it('keeps a lone FS at the end of a chunk as data when the next chunk does not start with CR', () => {
    const framer = new MllpFramer(1 << 20);
    expect(framer.push(Buffer.from([VT, 0x41, FS]))).toEqual([]);
    const events = framer.push(Buffer.from([0x42, FS, CR]));
    expect(events).toEqual([{ kind: 'message', bytes: Buffer.from([0x41, FS, 0x42]) }]);
  });

  it('reports bytes outside frames as junk, before the next frame', () => {
    const framer = new MllpFramer(1 << 20);
    const chunk = Buffer.concat([Buffer.from('hello'), frame(msg1), Buffer.from('GET / HTTP/1.1\r\n'), frame(msg2)]);
    expect(show(framer.push(chunk))).toEqual([
      { kind: 'junk', text: 'hello' },
      { kind: 'message', text: msg1 },
      { kind: 'junk', text: 'GET / HTTP/1.1\r\n' },
      { kind: 'message', text: msg2 },
    ]);
  });

  it('does not report CR/LF whitespace between frames', () => {
    const framer = new MllpFramer(1 << 20);
    const chunk = Buffer.concat([frame(msg1), Buffer.from('\r\n\n\r'), frame(msg2), Buffer.from('\r\n')]);
    expect(show(framer.push(chunk))).toEqual([
      { kind: 'message', text: msg1 },
      { kind: 'message', text: msg2 },
    ]);
    expect(framer.finish()).toEqual([]);
  });

  it('reports trailing junk on finish()', () => {
    const framer = new MllpFramer(1 << 20);
    expect(show(framer.push(Buffer.concat([frame(msg1), Buffer.from('bye')])))).toEqual([{ kind: 'message', text: msg1 }]);
    expect(show(framer.finish())).toEqual([{ kind: 'junk', text: 'bye' }]);
  });

  it('reports an oversize frame once, with its first maxMessageBytes bytes, and then reads the next frame', () => {
    const max = 64;
    const big = 'MSH|' + 'y'.repeat(200);
    const framer = new MllpFramer(max);
    const bytes = Buffer.concat([frame(big), frame(msg1)]);
    const events: FrameEvent[] = [];
    // in chunks of 10 bytes, so the limit is crossed in the middle of a chunk and then exceeded again
    for (let i = 0; i < bytes.length; i += 10) events.push(...framer.push(bytes.subarray(i, i + 10)));
    expect(events.map((e) => e.kind)).toEqual(['oversize', 'message']);
    const oversize = events[0] as Extract<FrameEvent, { kind: 'oversize' }>;
    expect(oversize.head.length).toBe(max);
    expect(oversize.head.toString('latin1')).toBe(big.slice(0, max));
    expect(oversize.totalBytes).toBe(big.length);
    expect(show(events.slice(1))).toEqual([{ kind: 'message', text: msg1 }]);
  });

  it('reports an oversize frame that arrives in one chunk', () => {
    const framer = new MllpFramer(10);
    const events = framer.push(Buffer.concat([frame('0123456789ABCDEF'), frame('short')]));
    expect(show(events)).toEqual([
      { kind: 'oversize', head: '0123456789', totalBytes: 16 },
      { kind: 'message', text: 'short' },
    ]);
  });

  it('accepts a frame of exactly maxMessageBytes', () => {
    const framer = new MllpFramer(10);
    expect(show(framer.push(frame('0123456789')))).toEqual([{ kind: 'message', text: '0123456789' }]);
  });

  it('reports an unfinished frame on finish(), including its VT', () => {
    const framer = new MllpFramer(1 << 20);
    expect(framer.push(Buffer.concat([Buffer.from([VT]), Buffer.from('MSH|^~\\&|cut')]))).toEqual([]);
    expect(framer.midFrame).toBe(true);
    const events = framer.finish();
    expect(events).toEqual([{ kind: 'incomplete', bytes: Buffer.from('\x0bMSH|^~\\&|cut', 'latin1') }]);
    expect(framer.midFrame).toBe(false);
    // the framer is reusable after finish()
    expect(show(framer.push(frame(msg1)))).toEqual([{ kind: 'message', text: msg1 }]);
  });

  it('reports an unfinished frame ending in FS on finish()', () => {
    const framer = new MllpFramer(1 << 20);
    framer.push(Buffer.from([VT, 0x41, FS]));
    expect(framer.finish()).toEqual([{ kind: 'incomplete', bytes: Buffer.from([VT, 0x41, FS]) }]);
  });

  it('bounds bytes outside frames: a peer that never frames is reported once maxMessageBytes have piled up', () => {
    const framer = new MllpFramer(100);
    const events = [0, 1, 2, 3, 4].flatMap(() => framer.push(Buffer.alloc(50, 0x41)));
    expect(events.map((e) => e.kind)).toEqual(['junk', 'junk']);
    expect(events.map((e) => (e as { bytes: Buffer }).bytes.length)).toEqual([100, 100]);
    expect(framer.finish().map((e) => (e as { bytes: Buffer }).bytes.length)).toEqual([50]);
  });
});
