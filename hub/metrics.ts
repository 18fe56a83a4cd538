/**
 * Prometheus metrics of one process (listener, API or worker). Names follow Prometheus
 * conventions; labels are bounded (member, channel, stage, code — never ids).
 */
import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'yilian_process_' });

export const metrics = {
  received: new client.Counter({ name: 'yilian_messages_received_total', help: 'Inbound messages (frames or file messages) received', labelNames: ['member', 'channel'] as const, registers: [registry] }),
  stored: new client.Counter({ name: 'yilian_messages_stored_total', help: 'Messages durably stored in the raw store, by outcome (stored, duplicate, quarantined)', labelNames: ['member', 'channel', 'outcome'] as const, registers: [registry] }),
  acked: new client.Counter({ name: 'yilian_acks_sent_total', help: 'Acknowledgments sent, by MSA-1 code', labelNames: ['member', 'channel', 'code'] as const, registers: [registry] }),
  nacked: new client.Counter({ name: 'yilian_nacks_sent_total', help: 'Negative acknowledgments sent (AE, AR, CE, CR)', labelNames: ['member', 'channel', 'code'] as const, registers: [registry] }),
  quarantined: new client.Counter({ name: 'yilian_messages_quarantined_total', help: 'Messages put in quarantine, by stage and reason code', labelNames: ['stage', 'code'] as const, registers: [registry] }),
  processed: new client.Counter({ name: 'yilian_stage_processed_total', help: 'Messages through a pipeline stage', labelNames: ['stage'] as const, registers: [registry] }),
  stageSeconds: new client.Histogram({
    name: 'yilian_stage_duration_seconds',
    help: 'Time spent in one pipeline stage for one message',
    labelNames: ['stage'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [registry],
  }),
  ackSeconds: new client.Histogram({
    name: 'yilian_ack_latency_seconds',
    help: 'From a complete frame to its ACK written (includes the durable store)',
    labelNames: ['channel'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1],
    registers: [registry],
  }),
  queueDepth: new client.Gauge({ name: 'yilian_queue_depth', help: 'Jobs in the pipeline queues, by state', labelNames: ['state'] as const, registers: [registry] }),
  // The pipeline's lag, read from the raw store at each scrape (pipeline/status.ts): PostgreSQL, not
  // Redis, because a job Redis lost is still a message waiting. Alert rules: deploy/prometheus/alerts.yml.
  oldestQueuedAge: new client.Gauge({
    name: 'yilian_pipeline_oldest_queued_age_seconds',
    help: 'Age of the oldest message stored (and ACKed) but not yet processed: raw store status queued, since it was received or put back by a replay; 0 when none waits',
    registers: [registry],
  }),
  queuedMessages: new client.Gauge({ name: 'yilian_pipeline_queued_messages', help: 'Messages stored (and ACKed) but not yet processed (raw store status queued)', registers: [registry] }),
};
