/**
 * MLLP listener on node:net (our own: the hl7v2-net server fell into an endless ACK↔ACK loop by
 * the third message when tried). Per connection: frames are handed to the intake as they complete
 * — a sender that pipelines gets its messages group-committed together — and ACKs are written in
 * the order the messages arrived. An ACK is written only after the intake says the bytes are stored.
 * Why throughput over one connection in original mode is about 1 / (store latency + round trip):
 * the sender waits for each ACK; many connections or pipelining are how volume scales.
 */
import net from 'node:net';
import { channelCharsetPolicy, type MemberConfig, type MllpChannelConfig } from '../../hub/config';
import { frame, MllpFramer } from './framer';
import type { RawIntake } from '../intake';
import { ackCodeFor, buildAck } from '../ack';
import { sniffHeader } from '../../mappings/hl7v2/header';
import { metrics } from '../../hub/metrics';
import { HubError } from '../../mappings/outcome';

/** Typed events of a listener, for logs and tests. */
export interface MllpEvents {
  messageReceived: { member: string; channel: string; bytes: number };
  ackSent: { member: string; channel: string; code: string; rawId: number; latencyMs: number };
  connectionError: { member: string; channel: string; error: string };
}

export class MllpListener {
  private server?: net.Server;
  /** Open connections and the promise of their last pending ACK. */
  private readonly sockets = new Map<net.Socket, () => Promise<void>>();
  /** Paused while a connection has this many messages awaiting their ACK. */
  private readonly maxInFlight = 2000;

  constructor(
    private readonly member: MemberConfig,
    private readonly channel: MllpChannelConfig,
    private readonly intake: RawIntake,
    private readonly on: <K extends keyof MllpEvents>(event: K, payload: MllpEvents[K]) => void = () => undefined,
  ) {}

  async start(): Promise<number> {
    // Half-open: a sender may close its side right after its last message and still get the ACKs.
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.channel.port, this.channel.host, () => {
        this.server!.off('error', reject);
        resolve();
      });
    });
    // Once listening, an error of the server (EMFILE when file descriptors run out) must not end
    // the process: it is reported, and the server goes on accepting once the cause is gone.
    this.server.on('error', (error) => this.on('connectionError', { member: this.member.id, channel: this.channel.id, error: `listener: ${error.message}` }));
    return (this.server.address() as net.AddressInfo).port;
  }

  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.setTimeout(this.channel.idleTimeoutMs, () => socket.destroy());
    const framer = new MllpFramer(this.channel.maxMessageBytes);
    let ackChain: Promise<void> = Promise.resolve();
    let inFlight = 0;
    const ids = { member: this.member.id, channel: this.channel.id };
    this.sockets.set(socket, () => ackChain);
    const intakeChannel = { id: this.channel.id, policy: channelCharsetPolicy(this.channel), ackMode: this.channel.ackMode };

    const submit = (bytes: Buffer, problem: HubError | undefined, answer: boolean) => {
      const started = process.hrtime.bigint();
      this.on('messageReceived', { ...ids, bytes: bytes.length });
      const stored = this.intake.receive({ member: this.member, channel: intakeChannel, bytes, problem });
      if (!answer) {
        stored.catch((error) => this.on('connectionError', { ...ids, error: `could not store bytes outside a frame: ${(error as Error).message}` }));
        return;
      }
      inFlight++;
      if (inFlight >= this.maxInFlight) socket.pause();
      // ACKs leave in arrival order, each only once its own message is stored.
      ackChain = ackChain.then(async () => {
        let ack: Buffer | undefined;
        let code = '';
        let rawId = 0;
        try {
          const result = await stored;
          ack = result.ack;
          code = result.ackCode ?? '';
          rawId = result.rawId;
        } catch (error) {
          // Not stored: never AA. AR (CR in enhanced mode) with 207 tells the sender to try again
          // later; a sender whose MSH-15 asked for no accept ACKs gets none, as for any other answer.
          const failure = new HubError('internal', `message not stored, resend later: ${(error as Error).message}`, undefined, true);
          const header = sniffHeader(bytes);
          const nak = ackCodeFor(this.channel.ackMode, header, failure);
          if (nak) {
            ack = Buffer.from(buildAck({ header, code: nak, error: failure }), 'latin1');
            code = nak;
          }
        }
        inFlight--;
        if (inFlight < this.maxInFlight && socket.isPaused()) socket.resume();
        if (!ack || socket.destroyed) return;
        socket.write(frame(ack));
        const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
        metrics.ackSeconds.observe({ channel: this.channel.id }, latencyMs / 1000);
        (code === 'AA' || code === 'CA' ? metrics.acked : metrics.nacked).inc({ ...ids, code });
        this.on('ackSent', { ...ids, code, rawId, latencyMs });
      });
    };

    socket.on('data', (chunk: Buffer) => {
      for (const event of framer.push(chunk)) {
        if (event.kind === 'message') submit(event.bytes, undefined, true);
        else if (event.kind === 'oversize')
          submit(event.head, new HubError('too-large', `frame of ${event.totalBytes} bytes exceeds the channel limit of ${this.channel.maxMessageBytes}; first bytes kept`), true);
        else submit(event.bytes, outsideFrame(event.bytes), false);
      }
    });
    const close = () => {
      for (const event of framer.finish()) {
        if (event.kind === 'incomplete') submit(event.bytes, new HubError('incomplete', `connection closed inside an MLLP frame after ${event.bytes.length} bytes`), false);
        else if (event.kind === 'junk') submit(event.bytes, outsideFrame(event.bytes), false);
      }
      this.sockets.delete(socket);
    };
    socket.on('end', () => void ackChain.then(() => socket.end()));
    socket.on('close', close);
    socket.on('error', (error) => this.on('connectionError', { ...ids, error: error.message }));
  }

  /** Stop accepting; let connections write the ACKs of what they already received, then close them. */
  async close(): Promise<void> {
    if (!this.server) return;
    const closed = new Promise<void>((resolve) => this.server!.close(() => resolve()));
    for (const [socket, pendingAcks] of this.sockets) void pendingAcks().then(() => socket.end());
    setTimeout(() => {
      for (const socket of this.sockets.keys()) socket.destroy();
    }, 5000).unref();
    await closed;
  }
}

/** Bytes between frames are stored and quarantined, never dropped; there is no frame to ACK. */
function outsideFrame(bytes: Buffer): HubError {
  return new HubError('framing', `${bytes.length} bytes outside an MLLP frame`);
}
