/**
 * MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 2): <VT=0x0B> message <FS=0x1C><CR=0x0D>.
 * Pure state machine over TCP chunks: any number of frames per chunk, a frame over any number of
 * chunks. Bytes outside a frame are reported (not silently dropped); a frame over the size limit is
 * reported with its first bytes and the rest is skipped up to its end, so the connection stays usable.
 */
const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

export type FrameEvent =
  | { kind: 'message'; bytes: Buffer }
  | { kind: 'oversize'; head: Buffer; totalBytes: number }
  | { kind: 'junk'; bytes: Buffer }
  /** A frame the connection closed inside of (its bytes from VT on, up to the size limit). */
  | { kind: 'incomplete'; bytes: Buffer };

export class MllpFramer {
  private parts: Buffer[] = [];
  private size = 0;
  private inFrame = false;
  private oversize = false;
  private junk: Buffer[] = [];
  private junkSize = 0;
  /** A FS seen as the last byte of a chunk: the frame ends only if the next byte is CR. */
  private pendingFs = false;

  constructor(private readonly maxMessageBytes: number) {}

  push(chunk: Buffer): FrameEvent[] {
    const events: FrameEvent[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (!this.inFrame) {
        const start = chunk.indexOf(VT, i);
        const outside = chunk.subarray(i, start < 0 ? chunk.length : start);
        if (outside.length) {
          this.junk.push(outside);
          this.junkSize += outside.length;
          // A peer that never frames (raw HL7, HTTP) must not grow memory without bound.
          if (this.junkSize >= this.maxMessageBytes) this.flushJunk(events);
        }
        if (start < 0) break;
        this.flushJunk(events);
        this.inFrame = true;
        i = start + 1;
        continue;
      }
      if (this.pendingFs) {
        this.pendingFs = false;
        if (chunk[i] === CR) {
          this.endFrame(events);
          i += 1;
          continue;
        }
        this.append(Buffer.from([FS])); // a lone FS inside the message
      }
      const fs = chunk.indexOf(FS, i);
      if (fs < 0) {
        this.append(chunk.subarray(i));
        break;
      }
      this.append(chunk.subarray(i, fs));
      if (fs + 1 === chunk.length) {
        this.pendingFs = true;
        break;
      }
      if (chunk[fs + 1] === CR) {
        this.endFrame(events);
        i = fs + 2;
      } else {
        this.append(chunk.subarray(fs, fs + 1));
        i = fs + 1;
      }
    }
    return events;
  }

  /** Bytes held when the connection closes: an unfinished frame, or trailing junk. */
  finish(): FrameEvent[] {
    const events: FrameEvent[] = [];
    this.flushJunk(events);
    if (this.inFrame && (this.size > 0 || this.pendingFs)) {
      events.push({ kind: 'incomplete', bytes: Buffer.concat([Buffer.from([VT]), ...this.parts, ...(this.pendingFs ? [Buffer.from([FS])] : [])]) });
    }
    this.reset();
    return events;
  }

  /** True while part of a frame has been received but not its end. */
  get midFrame(): boolean {
    return this.inFrame;
  }

  private append(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.size + bytes.length > this.maxMessageBytes) {
      if (!this.oversize) {
        const room = this.maxMessageBytes - this.size;
        if (room > 0) this.parts.push(bytes.subarray(0, room));
        this.oversize = true;
      }
      this.size += bytes.length;
      return;
    }
    this.parts.push(bytes);
    this.size += bytes.length;
  }

  private endFrame(events: FrameEvent[]): void {
    const bytes = Buffer.concat(this.parts);
    events.push(this.oversize ? { kind: 'oversize', head: bytes, totalBytes: this.size } : { kind: 'message', bytes });
    this.reset();
  }

  private flushJunk(events: FrameEvent[]): void {
    if (this.junk.length === 0) return;
    const bytes = Buffer.concat(this.junk);
    this.junk = [];
    this.junkSize = 0;
    // Line ends and spaces between frames are common and harmless.
    if (bytes.some((b) => b !== 0x0d && b !== 0x0a && b !== 0x20 && b !== 0x09)) events.push({ kind: 'junk', bytes });
  }

  private reset(): void {
    this.parts = [];
    this.size = 0;
    this.inFrame = false;
    this.oversize = false;
    this.pendingFs = false;
  }
}

export function frame(message: Buffer | string): Buffer {
  const body = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  return Buffer.concat([Buffer.from([VT]), body, Buffer.from([FS, CR])]);
}
