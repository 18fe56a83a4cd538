/**
 * Helpers shared by the MLLP integration tests: a test hub with one MllpListener per configured
 * channel (real Redis and PostgreSQL), and small readers for ACK segments and raw-store rows.
 */
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
