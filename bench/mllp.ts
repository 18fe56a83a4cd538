/**
 * MLLP ACKed-and-stored throughput and ACK latency, on PostgreSQL and Redis of this machine.
 *   node dist/bench/mllp.js [messages]
 * Prints: msg/s over 1 connection (strict request/response, and pipelined with a window of 64),
 * over 10 connections (request/response), and ACK p50/p99 at a paced 500 msg/s.
 * An ACK here means the original bytes are committed in PostgreSQL (group commit).
 */
import type { MllpChannelConfig } from '../adapters/config';
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

async function main() {
  const member = { id: 'bench', name: 'bench', tier: 'secondary', channels: [{ id: 'mllp', kind: 'mllp', port: 0, host: '127.0.0.1' }] };
  const hub = await benchHub('mllp', [member]);
  const m = hub.runtime.config.members[0]!;
  const listener = new MllpListener(m, m.channels[0] as MllpChannelConfig, hub.runtime.intake);
  const port = await listener.start();
  try {
    await run(port, 1, 500, 1); // warm-up
    const one = await run(port, 1, Math.min(total, 5000), 1);
    const onePipelined = await run(port, 1, total, 64);
    const ten = await run(port, 10, total / 10, 1);
    const lat = await paced(port, 500, 10);
    const f = (n: number) => n.toFixed(2);
    console.log(`MLLP ACKed-and-stored (PostgreSQL ${hub.runtime.db.kind}, ${total} messages of ~${message().length} bytes)`);
    console.log(`  1 connection, request/response : ${one.rate.toFixed(0)} msg/s (ACK p50 ${f(percentile(one.latencies, 50))} ms, p99 ${f(percentile(one.latencies, 99))} ms)`);
    console.log(`  1 connection, window 64        : ${onePipelined.rate.toFixed(0)} msg/s`);
    console.log(`  10 connections, request/resp.  : ${ten.rate.toFixed(0)} msg/s (ACK p50 ${f(percentile(ten.latencies, 50))} ms, p99 ${f(percentile(ten.latencies, 99))} ms)`);
    console.log(`  paced 500 msg/s over 10 conns  : ACK p50 ${f(percentile(lat, 50))} ms, p99 ${f(percentile(lat, 99))} ms (${lat.length} messages)`);
  } finally {
    await listener.close();
    await hub.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
