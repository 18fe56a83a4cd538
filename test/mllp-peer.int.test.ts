/**
 * Interoperability with an independent MLLP peer: Debian's python3-hl7 `mllp_send` (not our own
 * client) sends all 83 shared HL7 v2 samples to the listener, one connection, one message at a time,
 * waiting for each ACK. Every message must be AA'd, stored exactly once with its bytes as sent, and a
 * second run of the same file must be answered with the very same ACKs and counted as duplicates.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sha256 } from '../hub/rawStore';
import { SHARED_DATA } from './support/hub';
import { countRows, type ListeningHub, msaOf, rawRows, startMllpHub } from './support/mllp';

const SAMPLES = path.join(SHARED_DATA, 'hl7v2/fhir-converter/messages');
const START_BLOCK = Buffer.from('MSH|^~\\&|', 'latin1');

/** What `mllp_send --loose` sends for a file (python3-hl7 hl7/client.py read_loose), byte for byte. */
function readLoose(data: Buffer): Buffer[] {
  const cleaned = Buffer.from(data.filter((b) => b !== 0x1c && b !== 0x0c && b !== 0x0b));
  const text = cleaned.toString('latin1').replace(/\r\n/g, '\r').replace(/\n/g, '\r');
  return text
    .split(START_BLOCK.toString('latin1'))
    .filter((m) => m.length > 0)
    .map((m) => m.replace(/^[\r\n ]+|[\r\n ]+$/g, ''))
    .map((m) => Buffer.concat([START_BLOCK, Buffer.from(m, 'latin1')]));
}

/** Run mllp_send on a file; resolve with its stdout (each ACK framed as received, then LF). */
function mllpSend(file: string, port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('mllp_send', ['--loose', '-f', file, '-p', String(port), '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mllp_send timed out; stderr: ${Buffer.concat(err).toString()}`));
    }, 40_000);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`mllp_send exited ${code}: ${Buffer.concat(err).toString()}`));
      else resolve(Buffer.concat(out));
    });
  });
}

/** ACK bodies (between VT and FS CR) in the order mllp_send printed them. */
function acksIn(stdout: Buffer): Buffer[] {
  const acks: Buffer[] = [];
  let at = 0;
  for (;;) {
    const start = stdout.indexOf(0x0b, at);
    if (start < 0) break;
    const end = stdout.indexOf(Buffer.from([0x1c, 0x0d]), start);
    if (end < 0) throw new Error('unterminated ACK frame in mllp_send output');
    acks.push(stdout.subarray(start + 1, end));
    at = end + 2;
  }
  return acks;
}

/** MSH-3^1 | MSH-4^1 and MSH-10, read the way the hub's dedupe key reads them. */
function keyOf(message: Buffer): { sender: string; controlId: string } {
  const msh = message.toString('latin1').split('\r')[0]!.split('|');
  const first = (v: string | undefined) => (v ?? '').split('^')[0]!;
  return { sender: `${first(msh[2])}|${first(msh[3])}`, controlId: first(msh[9]) };
}

describe('mllp_send (python3-hl7) → MllpListener', () => {
  let env: ListeningHub;
  let dir: string;
  let file: string;
  let sent: Buffer[];

  beforeAll(async () => {
    env = await startMllpHub('mllp_peer', [{ id: 'his' }]);
    dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-mllp-peer-'));
    const files = readdirSync(SAMPLES)
      .filter((f) => f.endsWith('.hl7'))
      .sort();
    expect(files).toHaveLength(83);
    // BOMs stripped (mllp_send would send them inside the previous message); one file after another.
    const parts = files.map((f) => {
      let bytes = readFileSync(path.join(SAMPLES, f));
      if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
      return Buffer.concat([bytes, Buffer.from('\n')]);
    });
    const all = Buffer.concat(parts);
    file = path.join(dir, 'samples.hl7');
    writeFileSync(file, all);
    sent = readLoose(all);
  });

  afterAll(async () => {
    await env?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let firstRun: Buffer;
  const timesSent = (content: Buffer) => sent.filter((m) => m.equals(content)).length;

  it('ACKs all 83 samples AA and stores each distinct message exactly once, bytes as sent', async () => {
    expect(sent).toHaveLength(83);
    firstRun = await mllpSend(file, env.ports.his!);
    const acks = acksIn(firstRun);
    expect(acks).toHaveLength(sent.length);
    acks.forEach((ack, i) => {
      const msa = msaOf(ack);
      expect({ i, code: msa.code, controlId: msa.controlId }).toEqual({ i, code: 'AA', controlId: keyOf(sent[i]!).controlId });
    });

    // Distinct (sender, control id, content): some samples reuse MSH-10 under one sender with other content.
    const distinct = new Map<string, Buffer>();
    for (const m of sent) distinct.set(`${keyOf(m).sender}\u0000${keyOf(m).controlId}\u0000${m.toString('hex')}`, m);
    expect(await countRows(env.hub)).toBe(distinct.size);

    const rows = await rawRows(env.hub);
    expect(rows).toHaveLength(distinct.size);
    // No message stored twice, and every stored hash is the hash of the stored bytes.
    expect(new Set(rows.map((r) => r.sha256.toString('hex'))).size).toBe(rows.length);
    for (const r of rows) expect(r.sha256.equals(sha256(r.content))).toBe(true);
    // Exactly the bytes mllp_send put on the wire, no more, no fewer.
    expect(rows.map((r) => r.content.toString('hex')).sort()).toEqual([...distinct.values()].map((m) => m.toString('hex')).sort());
    expect(rows.every((r) => r.status === 'queued' && r.channel_id === 'his')).toBe(true);
    // A message sent c times in one run is one row with c - 1 duplicates (c is 1 for every sample today).
    for (const r of rows) expect(r.duplicate_count).toBe(timesSent(r.content) - 1);
    expect(await countRows(env.hub, 'quarantine')).toBe(0);

    // A reused control id under one sender gives revisions 1..k, the later ones flagged 'revised'.
    const groups = new Map<string, typeof rows>();
    for (const r of rows) groups.set(`${r.sender}\u0000${r.control_id}`, [...(groups.get(`${r.sender}\u0000${r.control_id}`) ?? []), r]);
    expect([...groups.values()].some((g) => g.length > 1)).toBe(true);
    for (const group of groups.values()) {
      expect(group.map((r) => r.revision)).toEqual(group.map((_, i) => i + 1));
      for (const r of group) expect(r.flags.includes('revised')).toBe(r.revision > 1);
    }
  });

  it('a second run of the same file: all AA with the same ACK bytes, no new rows, duplicates counted', async () => {
    expect(firstRun).toBeDefined();
    const before = await rawRows(env.hub);
    const secondRun = await mllpSend(file, env.ports.his!);
    const acks = acksIn(secondRun);
    expect(acks).toHaveLength(sent.length);
    for (const ack of acks) expect(msaOf(ack).code).toBe('AA');
    // A resend is answered with the stored ACK of the first delivery.
    expect(secondRun.equals(firstRun)).toBe(true);

    const after = await rawRows(env.hub);
    expect(after).toHaveLength(before.length);
    expect(after.map((r) => r.id)).toEqual(before.map((r) => r.id));
    // Every distinct message was sent once more per occurrence in the file.
    for (const r of after) expect(r.duplicate_count).toBe(2 * timesSent(r.content) - 1);
  });
});
