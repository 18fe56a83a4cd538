/**
 * The pipeline on a Redis Cluster against a single Redis, in the same run: a private redis-server
 * and a private cluster of 3 masters + 3 replicas (test/support/redisCluster.ts; both with the
 * append-only file on), the same harness as bench/pipeline.ts (stored ADT/ORU messages, `yilian
 * worker` processes running all five stages) and BullMQ's no-op job rate on each.
 *   node dist/bench/redisCluster.js [messages]
 * On the cluster the queue prefix carries a hash tag, so every partition queue lives on one master:
 * the cluster adds failover, not Redis throughput (docs/scaling.md "Redis Cluster").
 */
import os from 'node:os';
import { bullmqNoop, endToEnd } from './pipeline';
import { RedisClusterProcesses, startPrivateRedis } from '../test/support/redisCluster';

const messages = Number(process.argv[2] ?? 5000);

async function main() {
  const single = await startPrivateRedis();
  let cluster: RedisClusterProcesses | undefined;
  try {
    cluster = await RedisClusterProcesses.start({ masters: 3, replicas: 1, nodeTimeoutMs: 5000 });
    const loadBefore = os.loadavg()[0]!;
    // In A-B-B-A order, so that a drift in the machine's load falls on both sides alike; the no-op
    // rate is the better of two runs each.
    const noop = { single: [await bullmqNoop(20_000, single.url)], cluster: [await bullmqNoop(20_000, cluster.url)] };
    noop.cluster.push(await bullmqNoop(20_000, cluster.url));
    noop.single.push(await bullmqNoop(20_000, single.url));
    const oneSingle = await endToEnd(1, single.url, messages);
    const oneCluster = await endToEnd(1, cluster.url, messages);
    const twoCluster = await endToEnd(2, cluster.url, messages);
    const twoSingle = await endToEnd(2, single.url, messages);
    const noopSingle = Math.max(...noop.single);
    const noopCluster = Math.max(...noop.cluster);
    const ratio = (c: number, s: number) => `${((100 * c) / s).toFixed(0)} % of single`;
    console.log(`Redis Cluster (3 masters + 3 replicas) against one Redis, both private on this machine, append-only file on (${messages} stored ADT/ORU messages, 16 partitions, all five stages)`);
    console.log(`  machine load average (1 min) before / after: ${loadBefore.toFixed(1)} / ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`);
    console.log(`  BullMQ no-op jobs, 1 process, concurrency 16: single ${noopSingle.toFixed(0)} jobs/s, cluster ${noopCluster.toFixed(0)} jobs/s (${ratio(noopCluster, noopSingle)}; runs ${noop.single.map((r) => r.toFixed(0)).join(', ')} / ${noop.cluster.map((r) => r.toFixed(0)).join(', ')})`);
    console.log(`  end to end, 1 worker process   : single ${oneSingle.toFixed(0)} msg/s, cluster ${oneCluster.toFixed(0)} msg/s (${ratio(oneCluster, oneSingle)})`);
    console.log(`  end to end, 2 worker processes : single ${twoSingle.toFixed(0)} msg/s, cluster ${twoCluster.toFixed(0)} msg/s (${ratio(twoCluster, twoSingle)})`);
  } finally {
    await cluster?.stop();
    await single.stop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
