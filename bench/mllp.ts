/**
 * MLLP ACKed-and-stored throughput and ACK latency, on PostgreSQL and Redis of this machine.
 *   node dist/bench/mllp.js [messages] [--rounds N] [--only one,window64,ten,ten8,paced500,paced1000,peer]
 * The senders run in a separate process (as member systems would), so the listener process is
 * measured alone; both share this machine's 2 cores with PostgreSQL and Redis.
 * Prints: msg/s over 1 connection (strict request/response, and pipelined with a window of 64),
 * over 10 connections (request/response, and a window of 8 each), and ACK p50/p99 at a paced 500
 * and 1,000 msg/s over 10 connections. An ACK here means the original bytes are committed in
 * PostgreSQL (group commit).
 * The peer — python-hl7's asyncio MLLP server, which ACKs and stores nothing — runs the same 10
 * connection scenarios in the same run. On a shared machine the load moves under a run, so the hub
 * and the peer take turns (`--rounds`, 2 by default: hub, peer, hub, peer) and each round's ratio
 * is printed beside the ratio of the totals.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { MllpChannelConfig } from '../hub/config';
import type { Sql } from '../hub/sql';
import { MllpListener } from '../adapters/mllp/listener';
import { ackCode, bloodCount, encodeAs, MllpClient, simOru, simPatient } from '../cli/simulate';
import { benchHub, percentile } from './support';

const flag = (name: string) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const total = Number(process.argv[2]?.startsWith('--') ? 20_000 : (process.argv[2] ?? 20_000));
const rounds = Number(flag('--rounds') ?? 2);
const only = flag('--only')?.split(',');
const wanted = (name: string) => !only || only.includes(name);
let seq = 0;
const message = () => {
  const i = seq++;
  return encodeAs(simOru({ controlId: `B${i}`, patient: simPatient(i % 5000, 'B'), charset: 'UNICODE UTF-8' }, bloodCount), 'UTF-8');
};

interface Report {
  rate: number;
  latencies: number[];
  /** Paced runs: latency from the time the message was due, so a stalled ACK counts for the messages queued behind it. */
  fromDue?: number[];
  /** CPU time of the sender process (user + system), ms. */
  senderCpuMs?: number;
}

async function run(port: number, connections: number, perConnection: number, window: number): Promise<Report> {
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = await MllpClient.connect(port);
      let sent = 0;
      const inFlight = new Set<Promise<void>>();
      while (sent < perConnection) {
        while (inFlight.size < window && sent < perConnection) {
          sent++;
          const start = performance.now();
          const p = client.send(message()).then((ack) => {
            if (ackCode(ack) !== 'AA') throw new Error(`unexpected ACK ${ack.toString()}`);
            latencies.push(performance.now() - start);
            inFlight.delete(p);
          });
          inFlight.add(p);
        }
        await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      await client.close();
    }),
  );
  return { rate: (connections * perConnection) / ((performance.now() - t0) / 1000), latencies };
}

async function paced(port: number, ratePerSecond: number, seconds: number): Promise<Report> {
  const connections = 10;
  const clients = await Promise.all(Array.from({ length: connections }, () => MllpClient.connect(port)));
  const latencies: number[] = [];
  const fromDue: number[] = [];
  const intervalMs = (1000 / ratePerSecond) * connections;
  const begin = performance.now();
  await Promise.all(
    clients.map(async (client, c) => {
      const t0 = begin + (c * intervalMs) / connections;
      for (let i = 0; i < (ratePerSecond * seconds) / connections; i++) {
        const due = t0 + i * intervalMs;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const start = performance.now();
        const ack = await client.send(message());
        if (ackCode(ack) !== 'AA') throw new Error(`unexpected ACK ${ack.toString()}`);
        const end = performance.now();
        latencies.push(end - start);
        fromDue.push(end - due);
      }
      await client.close();
    }),
  );
  return { rate: latencies.length / ((performance.now() - begin) / 1000), latencies, fromDue };
}

type Scenario = { kind: 'run'; connections: number; perConnection: number; window: number } | { kind: 'paced'; rate: number; seconds: number };

/** Run one scenario in a child process; it reports its rate and latencies. */
let nextControlId = 0;
function inSender(port: number, scenario: Scenario): Promise<Report> {
  // Every message is new (distinct MSH-10): resends would take the duplicate path instead.
  const firstControlId = nextControlId;
  nextControlId += 1_000_000;
  return new Promise((resolve, reject) => {
    const child = fork(__filename, ['--sender', String(port), JSON.stringify(scenario), String(firstControlId)]);
    child.once('message', (result) => resolve(result as Report));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`sender exited (${code}) without a report`)));
  });
}

async function sender(port: number, scenario: Scenario): Promise<void> {
  const cpu = process.cpuUsage();
  const result: Report = scenario.kind === 'run' ? await run(port, scenario.connections, scenario.perConnection, scenario.window) : await paced(port, scenario.rate, scenario.seconds);
  const used = process.cpuUsage(cpu);
  result.senderCpuMs = (used.user + used.system) / 1000;
  // Exit only once the report has left: process.exit would drop a message still being sent.
  await new Promise<void>((resolve, reject) => process.send!(result, undefined, {}, (error) => (error ? reject(error) : resolve())));
}

const f = (n: number) => n.toFixed(2);
const lat = (r: Report) => `ACK p50 ${f(percentile(r.latencies, 50))} ms, p99 ${f(percentile(r.latencies, 99))} ms`;
const pacedLine = (r: Report) =>
  `${lat(r)}; from the scheduled send: p50 ${f(percentile(r.fromDue!, 50))} ms, p99 ${f(percentile(r.fromDue!, 99))} ms (${r.latencies.length} messages, ${r.rate.toFixed(0)} msg/s achieved)`;

async function main() {
  const member = { id: 'bench', name: 'bench', tier: 'secondary', channels: [{ id: 'mllp', kind: 'mllp', port: 0, host: '127.0.0.1' }] };
  const hub = await benchHub('mllp', [member]);
  const m = hub.runtime.config.members[0]!;
  const listener = new MllpListener(m, m.channels[0] as MllpChannelConfig, hub.runtime.intake);
  const port = await listener.start();
  const peer = wanted('peer') ? await startPeer() : undefined;
  const lines: string[] = [];
  try {
    await inSender(port, { kind: 'run', connections: 1, perConnection: 500, window: 1 }); // warm-up
    if (wanted('one')) {
      const one = await inSender(port, { kind: 'run', connections: 1, perConnection: Math.min(total, 5000), window: 1 });
      lines.push(`  1 connection, request/response  : ${one.rate.toFixed(0)} msg/s (${lat(one)})`);
    }
    if (wanted('window64')) {
      const onePipelined = await inSender(port, { kind: 'run', connections: 1, perConnection: total, window: 64 });
      lines.push(`  1 connection, window 64         : ${onePipelined.rate.toFixed(0)} msg/s`);
    }
    const ten: Scenario = { kind: 'run', connections: 10, perConnection: total / 10, window: 1 };
    if (wanted('ten')) lines.push(...(await turns(hub.runtime.db, port, peer, ten, '10 connections, request/response', true)));
    if (wanted('ten8')) lines.push(...(await turns(hub.runtime.db, port, peer, { ...ten, window: 8 }, '10 connections, window 8 each', false)));
    for (const rate of [500, 1000]) {
      if (!wanted(`paced${rate}`)) continue;
      const label = `paced ${rate} msg/s over 10 conns`.padEnd(32);
      lines.push(`  ${label}: ${pacedLine(await inSender(port, { kind: 'paced', rate, seconds: 10 }))}`);
      if (peer) lines.push(`  ${label}: peer ${pacedLine(await inSender(peer.port, { kind: 'paced', rate, seconds: 10 }))}`);
    }
    const stored = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message`);
    console.log(`MLLP ACKed-and-stored (PostgreSQL ${hub.runtime.db.kind}, messages of ~${message().length} bytes, ${stored.rows[0]!.n} stored in all)`);
    console.log(`  peer: ${peer ? "python-hl7's asyncio MLLP server (ACK only, stores nothing), in turns with the hub" : 'python3-hl7 not installed or not asked for, skipped'}`);
    for (const line of lines) console.log(line);
  } finally {
    peer?.server.kill();
    await listener.close();
    await hub.close();
  }
}

/** The hub, then the peer, `rounds` times over; each round's rates and the ratio hub/peer. */
async function turns(db: Sql, port: number, peer: Peer | undefined, scenario: Scenario, label: string, latencies: boolean): Promise<string[]> {
  const lines: string[] = [];
  let hubSum = 0;
  let peerSum = 0;
  for (let round = 1; round <= rounds; round++) {
    const cpu = process.cpuUsage();
    const storeBefore = await storeCpuMs(db);
    const ours = await inSender(port, scenario);
    const used = process.cpuUsage(cpu);
    const storeAfter = await storeCpuMs(db);
    const storeUsed = [...storeAfter].reduce((sum, [pid, ms]) => sum + ms - (storeBefore.get(pid) ?? 0), 0);
    hubSum += ours.rate;
    const messages = scenario.kind === 'run' ? scenario.connections * scenario.perConnection : 0;
    const perMessage = (ms: number) => ((ms * 1000) / messages).toFixed(0);
    let line = `  ${label.padEnd(32)}: ${ours.rate.toFixed(0)} msg/s${latencies ? ` (${lat(ours)})` : ''}`;
    let cpuLine = `    CPU µs/message: listener ${perMessage((used.user + used.system) / 1000)}, its PostgreSQL backends ${perMessage(storeUsed)}, senders ${perMessage(ours.senderCpuMs!)}`;
    if (peer) {
      const before = processCpuMs(peer.server.pid!);
      const theirs = await inSender(peer.port, scenario);
      const peerCpu = processCpuMs(peer.server.pid!) - before;
      peerSum += theirs.rate;
      line += `; peer ${theirs.rate.toFixed(0)} msg/s${latencies ? ` (${lat(theirs)})` : ''}; ratio ${(ours.rate / theirs.rate).toFixed(2)}`;
      cpuLine += `; peer ${perMessage(peerCpu)}, its senders ${perMessage(theirs.senderCpuMs!)}`;
    }
    lines.push(rounds > 1 ? `${line} [round ${round}]` : line, cpuLine);
  }
  if (peer && rounds > 1) lines.push(`  ${label.padEnd(32)}: ratio of the ${rounds} rounds' sums ${(hubSum / peerSum).toFixed(2)}`);
  return lines;
}

/** CPU time (user + system) a process has used so far, ms, from /proc (Linux; clock ticks of 10 ms). */
function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU used so far by each PostgreSQL backend serving this database (the server runs on this machine). */
async function storeCpuMs(db: Sql): Promise<Map<number, number>> {
  const backends = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`);
  const used = new Map<number, number>();
  for (const { pid } of backends.rows) {
    try {
      used.set(pid, processCpuMs(pid));
    } catch {
      // Ended between the query and the read, or not on this machine.
    }
  }
  return used;
}

interface Peer {
  server: ChildProcess;
  port: number;
}

/** python-hl7's asyncio MLLP server on a free port; undefined when python3-hl7 is not installed. */
async function startPeer(): Promise<Peer | undefined> {
  const script = path.join(__dirname, '..', '..', 'bench', 'peer_mllp_server.py');
  if (!existsSync('/usr/bin/python3') || !existsSync(script)) return undefined;
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
  const server = spawn('/usr/bin/python3', [script, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  // A peer that cannot start (python3-hl7 missing: ModuleNotFoundError) exits: say so, never wait forever.
  const listening = await new Promise<boolean>((resolve) => {
    server.stdout!.once('data', () => resolve(true));
    server.once('exit', () => resolve(false));
  });
  return listening ? { server, port } : undefined;
}

const senderAt = process.argv.indexOf('--sender');
if (senderAt >= 0) seq = Number(process.argv[senderAt + 3] ?? 0);
(senderAt >= 0 ? sender(Number(process.argv[senderAt + 1]), JSON.parse(process.argv[senderAt + 2]!) as Scenario) : main()).then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
