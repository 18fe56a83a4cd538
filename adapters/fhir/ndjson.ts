/**
 * Reading FHIR resources from NDJSON and Bundles. Owns streaming: an NDJSON source of any size is
 * read chunk by chunk and stored batch by batch, and the next chunk is read only once the batch
 * before it is in the raw store — so memory stays flat (about one batch plus one chunk) whatever the
 * file size, and a slow database slows the reading instead of filling memory.
 * Each line keeps its exact bytes; a line that is not a resource is stored and quarantined (with its
 * line number) while the lines around it go through.
 */
import type { Readable } from 'node:stream';
import { HubError } from '../../mappings/outcome';
import { nameResource, type FhirSource, type NamedResource } from './resource';
import { addResults, emptyResult, type BatchResult, type FhirIntake } from './store';

/** Lines of a byte stream, as Buffers without the line end (`\n` or `\r\n`); blank lines skipped. */
export async function* ndjsonLines(stream: AsyncIterable<Buffer | string>): AsyncGenerator<{ bytes: Buffer; line: number }> {
  let rest: Buffer = Buffer.alloc(0);
  let line = 0;
  for await (const chunk of stream) {
    let data = rest.length ? Buffer.concat([rest, Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)]) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    let start = 0;
    for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
      line++;
      const end = nl > start && data[nl - 1] === 13 ? nl - 1 : nl;
      // A copy, so the chunk it came from can be freed once its lines are stored.
      if (end > start) yield { bytes: Buffer.from(data.subarray(start, end)), line };
      start = nl + 1;
    }
    rest = Buffer.from(data.subarray(start));
    data = Buffer.alloc(0);
  }
  if (rest.length && rest.some((b) => b !== 32 && b !== 9 && b !== 13)) yield { bytes: rest, line: line + 1 };
}

export interface ImportOptions {
  batchSize: number;
  /** Resource type the file is declared to hold (a Bulk manifest's `type`): other types are quarantined. */
  expectedType?: string;
  onBatch?: (result: BatchResult, linesSoFar: number) => void;
  /** Keep the raw ids of stored messages in the result (for waiting on the pipeline); off for huge imports. */
  keepIds?: boolean;
}

/** Store every line of an NDJSON stream; resolves when the last batch is in the raw store. */
export async function importNdjson(stream: Readable | AsyncIterable<Buffer | string>, source: FhirSource, intake: FhirIntake, options: ImportOptions): Promise<BatchResult & { lines: number }> {
  const total = emptyResult();
  let lines = 0;
  let batch: NamedResource[] = [];
  const flush = async () => {
    const result = await intake.storeBatch(batch);
    batch = [];
    if (options.keepIds === false) result.queuedIds = [];
    addResults(total, result);
    options.onBatch?.(result, lines);
  };
  for await (const { bytes, line } of ndjsonLines(stream)) {
    lines++;
    const named = nameResource(source, bytes);
    if (named.problem) named.problem = new HubError(named.problem.code, `line ${line}: ${named.problem.message}`, `line ${line}`);
    else if (options.expectedType && named.resourceType !== options.expectedType) {
      named.row.status = 'quarantined';
      named.problem = new HubError('invalid', `line ${line}: a ${named.resourceType} in a file of ${options.expectedType}`, `line ${line}`);
    }
    batch.push(named);
    if (batch.length >= options.batchSize) await flush();
  }
  if (batch.length) await flush();
  return { ...total, lines };
}

/** Bundle types whose entries are resources to take in. */
const BUNDLE_TYPES = new Set(['collection', 'transaction', 'batch', 'searchset', 'history', 'transaction-response', 'batch-response']);

/**
 * The resources of a FHIR Bundle read from disk, one NamedResource per entry (entry bytes are the
 * entry's resource re-serialised: the Bundle's own bytes are not one resource's). A DELETE entry or
 * an entry without a resource is skipped and counted; a Bundle of another type is refused whole.
 */
export function resourcesOfBundle(bundle: Record<string, unknown>, source: FhirSource, where: string): { named: NamedResource[]; skipped: number } {
  if (!BUNDLE_TYPES.has(String(bundle.type))) throw new HubError('unsupported', `${where}: Bundle type ${JSON.stringify(bundle.type)} is not one whose entries are taken in (${[...BUNDLE_TYPES].join(', ')})`, where);
  const entries = Array.isArray(bundle.entry) ? (bundle.entry as Array<Record<string, unknown>>) : [];
  const named: NamedResource[] = [];
  let skipped = 0;
  entries.forEach((entry, i) => {
    const resource = entry?.resource as Record<string, unknown> | undefined;
    const method = (entry?.request as { method?: string } | undefined)?.method;
    const mode = (entry?.search as { mode?: string } | undefined)?.mode;
    if (!resource || method === 'DELETE' || mode === 'outcome' || (bundle.type === 'searchset' && resource.resourceType === 'OperationOutcome')) {
      skipped++;
      return;
    }
    const one = nameResource(source, Buffer.from(JSON.stringify(resource)), resource);
    if (one.problem) one.problem = new HubError(one.problem.code, `${where} entry ${i}: ${one.problem.message}`, `Bundle.entry[${i}]`);
    named.push(one);
  });
  return { named, skipped };
}
