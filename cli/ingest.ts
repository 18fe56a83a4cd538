/**
 * `yilian ingest`: store files' messages through the same intake as the listeners, then wait until
 * each has been through every stage — using the running `yilian worker`s, or running the stages in
 * this process when none is up.
 */
import { readFile } from 'node:fs/promises';
import type { MemberConfig } from '../adapters/config';
import type { Inbound, IntakeResult } from '../adapters/intake';
import { splitHl7File } from '../adapters/file/split';
import { HubError } from '../pipeline/outcome';
import { PipelineWorker } from '../pipeline/worker';
import type { Runtime } from '../hub/runtime';

export interface IngestSummary {
  received: number;
  stored: number;
  duplicates: number;
  quarantined: number;
  failed: number;
}

export async function ingestFiles(runtime: Runtime, member: MemberConfig, files: string[], options: { timeoutMs?: number; log?: (t: string) => void } = {}): Promise<IngestSummary> {
  const channel = { id: 'ingest', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  const inbound: Inbound[] = [];
  for (const file of files) {
    const split = splitHl7File(await readFile(file));
    for (const bytes of split.messages) inbound.push({ member, channel, bytes });
    if (split.messages.length === 0) inbound.push({ member, channel, bytes: await readFile(file), problem: new HubError('not-hl7', `${file} holds no MSH segment`) });
  }
  const results: IntakeResult[] = await Promise.all(inbound.map((m) => runtime.intake.receive(m)));
  await runtime.intake.drain();
  const pending = results.filter((r) => r.outcome === 'stored').map((r) => r.rawId);

  let worker: PipelineWorker | undefined;
  if (pending.length && (await runtime.queues.workerCount()) === 0) {
    worker = new PipelineWorker({ db: runtime.db, config: runtime.config }, runtime.queues, { reconcile: false, log: options.log });
    await worker.start();
  }
  try {
    const deadline = Date.now() + (options.timeoutMs ?? 600_000);
    for (;;) {
      const left = await runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE id = ANY($1::bigint[]) AND status = 'queued'`, [pending]);
      if (left.rows[0]!.n === 0) break;
      if (Date.now() > deadline) throw new HubError('exhausted', `${left.rows[0]!.n} messages still in the pipeline after ${(options.timeoutMs ?? 600_000) / 1000}s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await worker?.close();
  }
  const final = await runtime.db.query<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM raw_message WHERE id = ANY($1::bigint[]) GROUP BY 1`, [pending]);
  const byStatus = Object.fromEntries(final.rows.map((r) => [r.status, r.n]));
  return {
    received: results.length,
    stored: results.filter((r) => r.outcome !== 'duplicate').length,
    duplicates: results.filter((r) => r.outcome === 'duplicate').length,
    quarantined: results.filter((r) => r.outcome === 'quarantined').length + (byStatus.quarantined ?? 0),
    failed: byStatus.failed ?? 0,
  };
}
