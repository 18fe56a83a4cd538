/**
 * MLLP ACKed-and-stored throughput and ACK latency, on PostgreSQL and Redis of this machine.
 *   node dist/bench/mllp.js [messages]
 * The senders run in a separate process (as member systems would), so the listener process is
 * measured alone; both share this machine's 2 cores with PostgreSQL and Redis.
 * Prints: msg/s over 1 connection (strict request/response, and pipelined with a window of 64),
 * over 10 connections (request/response), and ACK p50/p99 at a paced 500 msg/s.
 * An ACK here means the original bytes are committed in PostgreSQL (group commit).
 */
import { fork, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { MllpChannelConfig } from '../hub/config';
import { MllpListener } from '../adapters/mllp/listener';
import { ackCode, bloodCount, encodeAs, MllpClient, simOru, simPatient } from '../cli/simulate';
import { benchHub, percentile } from './support';

const total = Number(process.argv[2] ?? 20_000);
let seq = 0;
const message = () => {
  const i = seq++;
  return encodeAs(simOru({ controlId: `B${i}`, patient: simPatient(i % 5000, 'B'), charset: 'UNICODE UTF-8' }, bloodCount), 'UTF-8');
};

async function run(port: number, connections: number, perConnection: number, window: number): Promise<{ rate: number; latencies: number[] }> {
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

async function paced(port: number, ratePerSecond: number, seconds: number): Promise<number[]> {
  const connections = 10;
  const clients = await Promise.all(Array.from({ length: connections }, () => MllpClient.connect(port)));
  const latencies: number[] = [];
  const intervalMs = (1000 / ratePerSecond) * connections;
  await Promise.all(
    clients.map(async (client, c) => {
      const t0 = performance.now() + (c * intervalMs) / connections;
      for (let i = 0; i < (ratePerSecond * seconds) / connections; i++) {
        const due = t0 + i * intervalMs;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const start = performance.now();
        await client.send(message());
        latencies.push(performance.now() - start);
      }
      await client.close();
    }),
  );
  return latencies;
}

type Scenario = { kind: 'run'; connections: number; perConnection: number; window: number } | { kind: 'paced'; rate: number; seconds: number };

/** Run one scenario in a child process; it reports its rate and latencies. */
let nextControlId = 0;
function inSender(port: number, scenario: Scenario): Promise<{ rate: number; latencies: number[] }> {
  // Every message is new (distinct MSH-10): resends would take the duplicate path instead.
  const firstControlId = nextControlId;
  nextControlId += 1_000_000;
  return new Promise((resolve, reject) => {
    const child = fork(__filename, ['--sender', String(port), JSON.stringify(scenario), String(firstControlId)]);
    child.once('message', (result) => resolve(result as { rate: number; latencies: number[] }));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`sender exited (${code}) without a report`)));
  });
}

async function sender(port: number, scenario: Scenario): Promise<void> {
  const result = scenario.kind === 'run' ? await run(port, scenario.connections, scenario.perConnection, scenario.window) : { rate: scenario.rate, latencies: await paced(port, scenario.rate, scenario.seconds) };
  // Exit only once the report has left: process.exit would drop a message still being sent.
  await new Promise<void>((resolve, reject) => process.send!(result, undefined, {}, (error) => (error ? reject(error) : resolve())));
}

async function main() {
  const member = { id: 'bench', name: 'bench', tier: 'secondary', channels: [{ id: 'mllp', kind: 'mllp', port: 0, host: '127.0.0.1' }] };
  const hub = await benchHub('mllp', [member]);
  const m = hub.runtime.config.members[0]!;
  const listener = new MllpListener(m, m.channels[0] as MllpChannelConfig, hub.runtime.intake);
  const port = await listener.start();
  try {
    await inSender(port, { kind: 'run', connections: 1, perConnection: 500, window: 1 }); // warm-up
    const one = await inSender(port, { kind: 'run', connections: 1, perConnection: Math.min(total, 5000), window: 1 });
    const onePipelined = await inSender(port, { kind: 'run', connections: 1, perConnection: total, window: 64 });
    const ten = await inSender(port, { kind: 'run', connections: 10, perConnection: total / 10, window: 1 });
    const tenPipelined = await inSender(port, { kind: 'run', connections: 10, perConnection: total / 10, window: 8 });
    const lat = (await inSender(port, { kind: 'paced', rate: 500, seconds: 10 })).latencies;
    const f = (n: number) => n.toFixed(2);
    const stored = await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message`);
    console.log(`MLLP ACKed-and-stored (PostgreSQL ${hub.runtime.db.kind}, messages of ~${message().length} bytes, ${stored.rows[0]!.n} stored in all)`);
    console.log(`  1 connection, request/response  : ${one.rate.toFixed(0)} msg/s (ACK p50 ${f(percentile(one.latencies, 50))} ms, p99 ${f(percentile(one.latencies, 99))} ms)`);
    console.log(`  1 connection, window 64         : ${onePipelined.rate.toFixed(0)} msg/s`);
    console.log(`  10 connections, request/response: ${ten.rate.toFixed(0)} msg/s (ACK p50 ${f(percentile(ten.latencies, 50))} ms, p99 ${f(percentile(ten.latencies, 99))} ms)`);
    console.log(`  10 connections, window 8 each   : ${tenPipelined.rate.toFixed(0)} msg/s`);
    console.log(`  paced 500 msg/s over 10 conns   : ACK p50 ${f(percentile(lat, 50))} ms, p99 ${f(percentile(lat, 99))} ms (${lat.length} messages)`);
    await peer(f);
  } finally {
    await listener.close();
    await hub.close();
  }
}

/** The same senders against python-hl7's asyncio MLLP server, which ACKs without storing anything. */
async function peer(f: (n: number) => string): Promise<void> {
  const script = path.join(__dirname, '..', '..', 'bench', 'peer_mllp_server.py');
  if (!existsSync('/usr/bin/python3') || !existsSync(script)) return console.log('  peer: python3-hl7 not installed, skipped');
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
  const server = spawn('/usr/bin/python3', [script, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => server.stdout!.once('data', resolve));
  try {
    const ten = await inSender(port, { kind: 'run', connections: 10, perConnection: total / 10, window: 1 });
    const tenPipelined = await inSender(port, { kind: 'run', connections: 10, perConnection: total / 10, window: 8 });
    console.log(`  peer, python-hl7 asyncio server (ACK only, stores nothing):`);
    console.log(`    10 connections, request/response: ${ten.rate.toFixed(0)} msg/s (ACK p50 ${f(percentile(ten.latencies, 50))} ms, p99 ${f(percentile(ten.latencies, 99))} ms)`);
    console.log(`    10 connections, window 8 each   : ${tenPipelined.rate.toFixed(0)} msg/s`);
  } finally {
    server.kill();
  }
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
