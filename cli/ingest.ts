/**
 * `yilian ingest`: store files' messages through the same intake as the listeners (HL7 v2 files;
 * FHIR NDJSON and Bundle/resource JSON through the FHIR intake), then wait until each has been
 * through every stage — using the running `yilian worker`s, or running the stages in this process
 * when none is up. `yilian pull`: one REST pull or Bulk import of a configured FHIR channel.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { MemberConfig } from '../hub/config';
import type { Inbound, IntakeResult } from '../adapters/intake';
import { splitHl7File } from '../adapters/file/split';
import { BulkImporter } from '../adapters/fhir/bulk';
import { clientFor } from '../adapters/fhir/connect';
import { importNdjson, resourcesOfBundle } from '../adapters/fhir/ndjson';
import { nameResource, type FhirSource } from '../adapters/fhir/resource';
import { RestPuller } from '../adapters/fhir/restPull';
import { addResults, emptyResult, FhirIntake } from '../adapters/fhir/store';
import { HubError } from '../mappings/outcome';
import type { PipelineWorker } from '../pipeline/worker';
import type { Runtime } from './runtime';

export interface IngestSummary {
  received: number;
  stored: number;
  duplicates: number;
  quarantined: number;
  failed: number;
}

/** FHIR input on disk: NDJSON (one resource per line) or a JSON file holding a Bundle or a single resource. */
export function isFhirFile(file: string): boolean {
  return /\.(ndjson|jsonl|json)$/i.test(file);
}

export interface IngestOptions {
  timeoutMs?: number;
  log?: (t: string) => void;
  /** Source of FHIR files (provenance, hub ids): a server base URL when the files came from one; default `file:local`. */
  fhirSource?: string;
  /** Store only: do not wait for the pipeline (the running workers process the messages). */
  noWait?: boolean;
}

export async function ingestFiles(runtime: Runtime, member: MemberConfig, files: string[], options: IngestOptions = {}): Promise<IngestSummary & { rawIds: number[] }> {
  const channel = { id: 'ingest', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  const inbound: Inbound[] = [];
  const fhir = emptyResult();
  let fhirReceived = 0;
  const fhirIntake = new FhirIntake(runtime.db, runtime.queues, { log: options.log });
  const source: FhirSource = { memberId: member.id, channelId: 'ingest', server: options.fhirSource ?? 'file:local' };
  for (const file of files) {
    if (isFhirFile(file)) {
      if (/\.json$/i.test(file)) {
        const bytes = await readFile(file);
        let parsed: Record<string, unknown> | undefined;
        try {
          parsed = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
        } catch {
          parsed = undefined;
        }
        if (parsed?.resourceType === 'Bundle') {
          const { named, skipped } = resourcesOfBundle(parsed, source, file);
          if (skipped) options.log?.(`${file}: ${skipped} entries without a resource to take in (DELETE, search outcome) skipped`);
          fhirReceived += named.length;
          for (let i = 0; i < named.length; i += 500) addResults(fhir, await fhirIntake.storeBatch(named.slice(i, i + 500)));
        } else {
          fhirReceived++;
          addResults(fhir, await fhirIntake.storeBatch([nameResource(source, bytes)]));
        }
      } else {
        const result = await importNdjson(createReadStream(file), source, fhirIntake, { batchSize: 500, keepIds: !options.noWait });
        fhirReceived += result.lines;
        addResults(fhir, result);
      }
      continue;
    }
    const split = splitHl7File(await readFile(file));
    for (const bytes of split.messages) inbound.push({ member, channel, bytes });
    if (split.messages.length === 0) inbound.push({ member, channel, bytes: await readFile(file), problem: new HubError('not-hl7', `${file} holds no MSH segment`) });
  }
  const results: IntakeResult[] = await Promise.all(inbound.map((m) => runtime.intake.receive(m)));
  await runtime.intake.drain();
  const pending = [...results.filter((r) => r.outcome === 'stored').map((r) => r.rawId), ...fhir.queuedIds];
  const byStatus = options.noWait ? {} : await waitForPipeline(runtime, pending, options);
  return {
    received: results.length + fhirReceived,
    stored: results.filter((r) => r.outcome !== 'duplicate').length + fhir.stored + fhir.quarantined,
    duplicates: results.filter((r) => r.outcome === 'duplicate').length + fhir.duplicates,
    quarantined: results.filter((r) => r.outcome === 'quarantined').length + fhir.quarantined + (byStatus.quarantined ?? 0),
    failed: byStatus.failed ?? 0,
    // The stored messages of this run (not FHIR resources quarantined at intake): where `yilian ingest` finds the quarantine reasons.
    rawIds: [...results.filter((r) => r.outcome !== 'duplicate').map((r) => r.rawId), ...fhir.queuedIds],
  };
}

/**
 * Wait until the given raw messages have been through every stage — using the running `yilian
 * worker`s, or running the stages in this process when none is up. Returns their final statuses.
 */
export async function waitForPipeline(runtime: Runtime, pending: number[], options: { timeoutMs?: number; log?: (t: string) => void } = {}): Promise<Record<string, number>> {
  let worker: PipelineWorker | undefined;
  if (pending.length && (await runtime.queues.workerCount()) === 0) {
    // Loaded here, not at the top: the HL7 v2 conversion it brings costs ~100 MB that storing alone does not need.
    const { PipelineWorker: Worker } = require('../pipeline/worker') as typeof import('../pipeline/worker');
    worker = new Worker({ db: runtime.db, config: runtime.config }, runtime.queues, { reconcile: false, log: options.log });
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
  return Object.fromEntries(final.rows.map((r) => [r.status, r.n]));
}

export interface PullSummary {
  channel: string;
  kind: 'fhir-rest' | 'fhir-bulk';
  stored: number;
  duplicates: number;
  quarantined: number;
  pages?: number;
  files?: number;
  lines?: number;
  processed?: Record<string, number>;
}

/** `yilian pull`: one REST pull or one Bulk export import of a configured FHIR channel. */
export async function pullChannel(runtime: Runtime, member: MemberConfig, channelId: string, options: { wait?: boolean; timeoutMs?: number; log?: (t: string) => void } = {}): Promise<PullSummary> {
  const channel = member.channels.find((c) => c.id === channelId);
  if (!channel) throw new HubError('invalid', `member ${member.id} has no channel ${channelId}`, '--channel');
  if (channel.kind !== 'fhir-rest' && channel.kind !== 'fhir-bulk') throw new HubError('invalid', `channel ${channelId} is ${channel.kind}; pull takes fhir-rest and fhir-bulk channels`, '--channel');
  const intake = new FhirIntake(runtime.db, runtime.queues, { log: options.log, keepIds: !!options.wait });
  const client = clientFor(channel, { log: options.log });
  let summary: PullSummary;
  let queued: number[];
  if (channel.kind === 'fhir-rest') {
    const puller = new RestPuller(runtime.db, intake, member, channel, client, {
      log: options.log,
      onPage: (e) => options.log?.(`pull ${member.id}/${channel.id} ${e.resourceType} page ${e.page} stored ${e.result.stored} duplicates ${e.result.duplicates} cursor ${e.cursor ?? '-'}`),
    });
    const results = await puller.pullAll();
    queued = results.flatMap((r) => r.queuedIds);
    summary = {
      channel: channel.id,
      kind: channel.kind,
      stored: results.reduce((n, r) => n + r.stored, 0),
      duplicates: results.reduce((n, r) => n + r.duplicates, 0),
      quarantined: results.reduce((n, r) => n + r.quarantined, 0),
      pages: results.reduce((n, r) => n + r.pages, 0),
    };
  } else {
    const result = await new BulkImporter(runtime.db, intake, member, channel, client, { log: options.log, keepIds: !!options.wait }).run();
    queued = result.queuedIds;
    summary = { channel: channel.id, kind: channel.kind, stored: result.stored, duplicates: result.duplicates, quarantined: result.quarantined, files: result.files, lines: result.lines };
  }
  if (options.wait) summary.processed = await waitForPipeline(runtime, queued, options);
  return summary;
}
