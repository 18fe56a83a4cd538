/**
 * Helpers shared by the MLLP integration tests: a test hub with one MllpListener per configured
 * channel (real Redis and PostgreSQL), and small readers for ACK segments and raw-store rows.
 */
import net from 'node:net';
import type { MllpChannelConfig } from '../../hub/config';
import { MllpListener } from '../../adapters/mllp/listener';
import { startTestHub, type TestHub } from './hub';

export interface ListeningHub {
  hub: TestHub;
  /** Listener per channel id. */
  listeners: Record<string, MllpListener>;
  /** Bound port per channel id. */
  ports: Record<string, number>;
  close(): Promise<void>;
}

/** A test hub with member `m1` and the given MLLP channels (port 0, 127.0.0.1 unless set), all listening. */
export async function startMllpHub(label: string, channels: Array<Record<string, unknown> & { id: string }>): Promise<ListeningHub> {
  const hub = await startTestHub(label, {
    members: [{ id: 'm1', name: 'M1', tier: 'secondary', channels: channels.map((c) => ({ kind: 'mllp', port: 0, host: '127.0.0.1', ...c })) }],
  });
  const member = hub.config.members[0]!;
  const listeners: Record<string, MllpListener> = {};
  const ports: Record<string, number> = {};
  try {
    for (const channel of member.channels) {
      const listener = new MllpListener(member, channel as MllpChannelConfig, hub.runtime.intake);
      ports[channel.id] = await listener.start();
      listeners[channel.id] = listener;
    }
  } catch (error) {
    await hub.close();
    throw error;
  }
  return {
    hub,
    listeners,
    ports,
    async close() {
      for (const listener of Object.values(listeners)) await listener.close();
      await hub.close();
    },
  };
}

/** Segments of an ACK (CR-separated, decoded as Latin-1: ACK structure is ASCII). */
export function segmentsOf(ack: Buffer): string[][] {
  return ack
    .toString('latin1')
    .split('\r')
    .filter(Boolean)
    .map((s) => s.split('|'));
}

export function segmentOf(ack: Buffer, name: string): string[] | undefined {
  return segmentsOf(ack).find((s) => s[0] === name);
}

/** MSA-1 and MSA-2 of an ACK; throws when the ACK has no MSA (so a garbled ACK fails the test). */
export function msaOf(ack: Buffer): { code: string; controlId: string } {
  const msa = segmentOf(ack, 'MSA');
  if (!msa) throw new Error(`ACK without MSA: ${JSON.stringify(ack.toString('latin1'))}`);
  return { code: msa[1] ?? '', controlId: msa[2] ?? '' };
}

export interface RawRow {
  id: number;
  channel_id: string;
  sender: string;
  control_id: string;
  charset: string;
  content: Buffer;
  sha256: Buffer;
  status: string;
  revision: number;
  flags: string[];
  ack: Buffer | null;
  duplicate_count: number;
}

export interface QuarantineRow {
  raw_id: number;
  stage: string;
  code: string;
  reason: string;
  outcome: { resourceType: string; issue: Array<{ details?: { coding: Array<{ code: string }> } }> };
}

export async function rawRows(hub: TestHub, where = 'true', params: unknown[] = []): Promise<RawRow[]> {
  const result = await hub.runtime.db.query<RawRow>(
    `SELECT id, channel_id, sender, control_id, charset, content, sha256, status, revision, flags, ack, duplicate_count FROM raw_message WHERE ${where} ORDER BY id`,
    params,
  );
  return result.rows;
}

export async function quarantineOf(hub: TestHub, rawId: number): Promise<QuarantineRow[]> {
  const result = await hub.runtime.db.query<QuarantineRow>(`SELECT raw_id, stage, code, reason, outcome FROM quarantine WHERE raw_id = $1 ORDER BY id`, [rawId]);
  return result.rows;
}

export async function countRows(hub: TestHub, table = 'raw_message'): Promise<number> {
  const result = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return result.rows[0]!.n;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Senders that behave like real member systems, for the chaos and fuzz suites.
// ---------------------------------------------------------------------------------------------

const VT = 0x0b;
const FS_CR = Buffer.from([0x1c, 0x0d]);

/** Pulls ACK bodies (VT … FS CR) out of a byte stream; bytes outside a frame are dropped. */
export class AckFrames {
  private buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    const out: Buffer[] = [];
    for (;;) {
      const start = this.buffer.indexOf(VT);
      if (start < 0) {
        this.buffer = Buffer.alloc(0);
        return out;
      }
      const end = this.buffer.indexOf(FS_CR, start + 1);
      if (end < 0) {
        this.buffer = this.buffer.subarray(start);
        return out;
      }
      out.push(Buffer.from(this.buffer.subarray(start + 1, end)));
      this.buffer = this.buffer.subarray(end + 2);
    }
  }
}

/** MSA-1/MSA-2 of an ACK, or undefined for a frame without a readable MSA (a failure the caller reports). */
export function readMsa(ack: Buffer): { code: string; controlId: string } | undefined {
  const msa = segmentOf(ack, 'MSA');
  return msa ? { code: msa[1] ?? '', controlId: msa[2] ?? '' } : undefined;
}

/** One delivery attempt of a message by a ResendingSender, as the sender saw it. */
export interface Attempt {
  controlId: string;
  sender: number;
  sentAt: number;
  endedAt: number;
  /** ack: an ACK frame (code says which); closed: the connection closed or failed; silence: neither within the bound. */
  outcome: 'ack' | 'closed' | 'silence';
  code?: string;
  /** For a closed connection: the socket's error; for an ACK: a problem with it (wrong MSA-2, no MSA). */
  detail?: string;
}

export interface SenderOptions {
  port: number;
  /** Longest wait for an ACK or a close before the attempt counts as silence (and the sender reconnects). */
  ackTimeoutMs: number;
  /** Pause before resending after a NAK or a close, and between connection attempts. */
  retryDelayMs: number;
  /** Give up (throw) when a message is still not AA'd at this time. */
  deadline: number;
  onAttempt?: (attempt: Attempt) => void;
}

/**
 * A member system's MLLP sender in original mode: one connection, one message at a time; a message
 * is done when it is AA'd (CA too); after a NAK it is sent again later, after a close the sender
 * reconnects (retrying while the listener is down) and sends it again, and after `ackTimeoutMs` of
 * silence it drops the connection and does the same. Every attempt is reported.
 */
export class ResendingSender {
  private socket?: net.Socket;
  private frames = new AckFrames();
  private waiter?: (event: { kind: 'ack'; ack: Buffer } | { kind: 'closed'; detail: string }) => void;
  private closedDetail = '';
  readonly attempts: Attempt[] = [];

  constructor(
    readonly id: number,
    private readonly options: SenderOptions,
  ) {}

  private async connect(): Promise<net.Socket> {
    for (;;) {
      if (Date.now() > this.options.deadline) throw new Error(`sender ${this.id}: could not connect to port ${this.options.port} before the deadline`);
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(this.options.port, '127.0.0.1', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
        socket.setNoDelay(true);
        this.frames = new AckFrames();
        socket.on('data', (chunk: Buffer) => {
          for (const ack of this.frames.push(chunk)) {
            const w = this.waiter;
            this.waiter = undefined;
            w?.({ kind: 'ack', ack });
          }
        });
        socket.on('error', (error) => (this.closedDetail = error.message));
        socket.on('close', () => {
          if (this.socket === socket) this.socket = undefined;
          const w = this.waiter;
          this.waiter = undefined;
          w?.({ kind: 'closed', detail: this.closedDetail || 'closed by peer' });
        });
        this.closedDetail = '';
        return socket;
      } catch {
        // Listener down (being restarted): try again shortly, as a sender's connection retry does.
        await sleep(this.options.retryDelayMs);
      }
    }
  }

  /** Send until AA'd; resolves with the number of attempts it took. */
  async deliver(controlId: string, message: Buffer): Promise<number> {
    const framed = Buffer.concat([Buffer.from([VT]), message, FS_CR]);
    for (let n = 1; ; n++) {
      if (Date.now() > this.options.deadline) throw new Error(`sender ${this.id}: ${controlId} not AA'd before the deadline after ${n - 1} attempts`);
      this.socket ??= await this.connect();
      const socket = this.socket;
      const sentAt = Date.now();
      const answer = new Promise<{ kind: 'ack'; ack: Buffer } | { kind: 'closed'; detail: string } | { kind: 'silence' }>((resolve) => {
        const timer = setTimeout(() => {
          this.waiter = undefined;
          resolve({ kind: 'silence' });
        }, this.options.ackTimeoutMs);
        this.waiter = (event) => {
          clearTimeout(timer);
          resolve(event);
        };
      });
      socket.write(framed);
      const event = await answer;
      const attempt: Attempt = { controlId, sender: this.id, sentAt, endedAt: Date.now(), outcome: event.kind === 'ack' ? 'ack' : event.kind };
      if (event.kind === 'ack') {
        const msa = readMsa(event.ack);
        attempt.code = msa?.code ?? '';
        if (!msa) attempt.detail = `ACK without MSA: ${JSON.stringify(event.ack.toString('latin1'))}`;
        else if (msa.controlId !== controlId) attempt.detail = `ACK for ${msa.controlId}, not ${controlId}`;
      } else if (event.kind === 'closed') attempt.detail = event.detail;
      this.attempts.push(attempt);
      this.options.onAttempt?.(attempt);
      if (event.kind === 'ack' && !attempt.detail && (attempt.code === 'AA' || attempt.code === 'CA')) return n;
      if (event.kind !== 'ack' || attempt.detail) {
        // Closed, silent or answered with someone else's ACK: this connection cannot be trusted; start a new one.
        socket.destroy();
        if (this.socket === socket) this.socket = undefined;
      }
      await sleep(this.options.retryDelayMs);
    }
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }
}

/** What a PipelinedConnection got back for one frame. */
export interface FrameAnswer {
  ack?: Buffer;
  /** Set when no ACK came: the connection closed, or the bound passed. */
  failure?: string;
  ms: number;
}

/**
 * One MLLP connection that keeps up to `window` frames in flight and pairs ACKs with frames in the
 * order sent (the listener answers in arrival order). For the fuzz suite: every frame it sends must
 * get exactly one ACK.
 */
export class PipelinedConnection {
  private readonly frames = new AckFrames();
  private readonly waiting: Array<{ resolve: (a: FrameAnswer) => void; sentAt: number; timer: NodeJS.Timeout }> = [];
  private closedWith?: string;

  private constructor(
    private readonly socket: net.Socket,
    private readonly ackTimeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      for (const ack of this.frames.push(chunk)) {
        const w = this.waiting.shift();
        if (!w) {
          this.closedWith = `unsolicited ACK ${JSON.stringify(ack.toString('latin1').slice(0, 200))}`;
          continue;
        }
        clearTimeout(w.timer);
        w.resolve({ ack, ms: Date.now() - w.sentAt });
      }
    });
    socket.on('error', (error) => (this.closedWith ??= error.message));
    socket.on('close', () => {
      this.closedWith ??= 'closed by peer';
      for (const w of this.waiting.splice(0)) {
        clearTimeout(w.timer);
        w.resolve({ failure: this.closedWith, ms: Date.now() - w.sentAt });
      }
    });
  }

  static async open(port: number, ackTimeoutMs: number): Promise<PipelinedConnection> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
    return new PipelinedConnection(socket, ackTimeoutMs);
  }

  get inFlight(): number {
    return this.waiting.length;
  }

  /** Frame `message` (VT … FS CR) and send it; resolves with its ACK or why none came. */
  send(message: Buffer): Promise<FrameAnswer> {
    if (this.closedWith) return Promise.resolve({ failure: `not sent: ${this.closedWith}`, ms: 0 });
    return new Promise((resolve) => {
      const sentAt = Date.now();
      const timer = setTimeout(() => {
        // In-order answers: once one frame is silent past the bound, every later one on this connection is too.
        this.closedWith = `no ACK within ${this.ackTimeoutMs} ms`;
        this.socket.destroy();
      }, this.ackTimeoutMs);
      this.waiting.push({ resolve, sentAt, timer });
      this.socket.write(Buffer.concat([Buffer.from([VT]), message, FS_CR]));
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.end(() => resolve()));
    this.socket.destroy();
  }
}
