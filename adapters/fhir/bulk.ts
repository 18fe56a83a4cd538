/**
 * FHIR Bulk Data Access ($export) import for one fhir-bulk channel: kick-off (system, Patient or
 * Group level, `_since` = transactionTime of the last export imported), poll the status URL
 * honouring Retry-After, then download each NDJSON file streaming and store it line by line
 * (adapters/fhir/ndjson.ts: memory stays flat whatever the file size).
 *
 * Crash safety: the export (its status URL, then each file once stored completely) is recorded in
 * fhir_bulk_export, so a restarted import polls the same export and skips files already done; a file
 * cut off mid-way is read again from its start, and what was already stored is a duplicate. The next
 * export's _since moves only when every file of this one is in the raw store. An export the server
 * no longer has (status or file 404/410, or an error answer) is marked failed and a new one requested.
 */
import type { HubDb } from '../../hub/sql';
import { HubError } from '../../mappings/outcome';
import type { FhirBulkChannelConfig, MemberConfig } from '../../hub/config';
import { retryAfterMs, type FhirClient } from './client';
import { importNdjson } from './ndjson';
import type { FhirSource } from './resource';
import { addResults, emptyResult, type BatchResult, type FhirIntake } from './store';

export interface BulkManifest {
  transactionTime: string;
  request: string;
  requiresAccessToken?: boolean;
  output: Array<{ type: string; url: string; count?: number }>;
  error?: Array<{ type: string; url: string }>;
}

export interface BulkResult extends BatchResult {
  exportId: number;
  files: number;
  lines: number;
  polls: number;
  transactionTime: string;
}

export interface BulkOptions {
  log?: (text: string) => void;
  /** Wait between status polls when the server gives no Retry-After. */
  defaultPollMs?: number;
  keepIds?: boolean;
  onBatch?: (result: BatchResult, file: string) => void;
}

export class BulkImporter {
  private readonly source: FhirSource;

  constructor(
    private readonly db: HubDb,
    private readonly intake: FhirIntake,
    member: MemberConfig,
    private readonly channel: FhirBulkChannelConfig,
    private readonly client: FhirClient,
    private readonly options: BulkOptions = {},
  ) {
    this.source = { memberId: member.id, channelId: channel.id, server: channel.baseUrl };
  }

  private kickoffUrl(): string {
    switch (this.channel.level) {
      case 'system':
        return '$export';
      case 'patient':
        return 'Patient/$export';
      case 'group':
        if (!this.channel.groupId) throw new HubError('invalid', `channel ${this.channel.id}: level group needs groupId`, 'groupId');
        return `Group/${encodeURIComponent(this.channel.groupId)}/$export`;
    }
  }

  async run(): Promise<BulkResult> {
    const { memberId, channelId } = this.source;
    const latest = await this.db.query<{ id: number; state: string; status_url: string | null; files_done: string[] }>(
      `SELECT id, state, status_url, files_done FROM fhir_bulk_export WHERE member_id = $1 AND channel_id = $2 ORDER BY id DESC LIMIT 1`,
      [memberId, channelId],
    );
    const unfinished = latest.rows[0]?.state === 'requested' && latest.rows[0].status_url ? latest.rows[0] : undefined;
    if (unfinished) this.options.log?.(`bulk ${memberId}/${channelId}: resuming export ${unfinished.id} (${unfinished.files_done.length} files already imported)`);
    const job: { id: number; status_url: string | null; files_done: string[] } = unfinished ?? (await this.kickoff());
    let polled: { manifest: BulkManifest; polls: number };
    try {
      polled = await this.poll(job.status_url!);
    } catch (error) {
      // An export the server refuses (expired: 404/410, failed: an error answer) is given up and a
      // new one requested; a transient failure (server unreachable) leaves it to be polled again.
      if (!(error instanceof HubError) || error.transient) throw error;
      await this.giveUp(job.id, error);
      if (unfinished) return this.run();
      throw error;
    }
    const manifest = polled.manifest;
    const total: BulkResult = { exportId: job.id, files: 0, lines: 0, polls: polled.polls, transactionTime: manifest.transactionTime, ...emptyResult() };
    const done = new Set(job.files_done);
    for (const file of manifest.output) {
      if (done.has(file.url)) continue;
      let stream;
      try {
        stream = await this.client.download(file.url, { authorize: manifest.requiresAccessToken !== false });
      } catch (error) {
        // A file that is gone (expired) cannot be had from this export any more: the next run asks
        // for a new one (its _since is still that of the last export imported whole).
        if (error instanceof HubError && !error.transient) await this.giveUp(job.id, error);
        throw error;
      }
      const result = await importNdjson(stream, this.source, this.intake, {
        batchSize: this.channel.batchSize,
        expectedType: file.type,
        keepIds: this.options.keepIds,
        onBatch: (r) => this.options.onBatch?.(r, file.url),
      });
      addResults(total, result);
      total.lines += result.lines;
      total.files++;
      // Every line of this file is in the raw store: record it, so a restart does not read it again.
      await this.db.query(`UPDATE fhir_bulk_export SET files_done = array_append(files_done, $2) WHERE id = $1`, [job.id, file.url]);
      this.options.log?.(`bulk ${memberId}/${channelId}: ${file.type} ${result.lines} lines (stored ${result.stored}, duplicates ${result.duplicates}, quarantined ${result.quarantined})`);
    }
    await this.db.query(
      `UPDATE fhir_bulk_export SET state = 'imported', transaction_time = $2, finished_at = clock_timestamp(), detail = $3::jsonb WHERE id = $1`,
      [job.id, manifest.transactionTime, JSON.stringify({ errorFiles: manifest.error ?? [], lines: total.lines })],
    );
    // The server is done with the files once we have them (Bulk Data: DELETE the status URL).
    await this.client.request('bulk delete', job.status_url!, { method: 'DELETE' }).catch(() => undefined);
    return total;
  }

  private async giveUp(exportId: number, error: HubError): Promise<void> {
    await this.db.query(`UPDATE fhir_bulk_export SET state = 'failed', finished_at = clock_timestamp(), detail = detail || $2::jsonb WHERE id = $1`, [
      exportId,
      JSON.stringify({ error: { code: error.code, message: error.message } }),
    ]);
    this.options.log?.(`bulk ${this.source.memberId}/${this.source.channelId}: export ${exportId} given up: ${error.message}`);
  }

  private async kickoff(): Promise<{ id: number; status_url: string; files_done: string[] }> {
    const { memberId, channelId } = this.source;
    const since = await this.db.query<{ transaction_time: string }>(
      `SELECT transaction_time FROM fhir_bulk_export WHERE member_id = $1 AND channel_id = $2 AND state = 'imported' ORDER BY id DESC LIMIT 1`,
      [memberId, channelId],
    );
    const params = new URLSearchParams({ _outputFormat: 'application/fhir+ndjson' });
    if (this.channel.resourceTypes.length) params.set('_type', this.channel.resourceTypes.join(','));
    if (since.rows[0]?.transaction_time) params.set('_since', since.rows[0].transaction_time);
    const url = `${this.kickoffUrl()}?${params}`;
    const answer = await this.client.request('bulk kick-off', url, { headers: { accept: 'application/fhir+json', prefer: 'respond-async' } });
    const statusUrl = answer.headers.get('content-location');
    if (answer.status !== 202 || !statusUrl) throw new HubError('unsupported', `bulk kick-off ${url}: expected 202 with Content-Location, got ${answer.status}`, url);
    const inserted = await this.db.query<{ id: number }>(
      `INSERT INTO fhir_bulk_export (member_id, channel_id, kickoff_url, status_url, state, detail) VALUES ($1, $2, $3, $4, 'requested', $5::jsonb) RETURNING id`,
      [memberId, channelId, `${this.channel.baseUrl}/${url}`, new URL(statusUrl, `${this.channel.baseUrl}/`).toString(), JSON.stringify({ since: since.rows[0]?.transaction_time ?? null })],
    );
    this.options.log?.(`bulk ${memberId}/${channelId}: export ${inserted.rows[0]!.id} requested${params.get('_since') ? ` since ${params.get('_since')}` : ''}`);
    return { id: inserted.rows[0]!.id, status_url: new URL(statusUrl, `${this.channel.baseUrl}/`).toString(), files_done: [] };
  }

  /** Poll until the manifest: 202 means in progress (wait Retry-After), 200 the manifest, an error status fails the export. */
  private async poll(statusUrl: string): Promise<{ manifest: BulkManifest; polls: number }> {
    const deadline = Date.now() + this.channel.exportTimeoutMs;
    for (let polls = 1; ; polls++) {
      const answer = await this.client.request<BulkManifest>('bulk status', statusUrl, { headers: { accept: 'application/json' } });
      if (answer.status === 200) {
        const manifest = answer.body;
        if (!manifest || !Array.isArray(manifest.output) || typeof manifest.transactionTime !== 'string') throw new HubError('structure', `bulk status ${statusUrl}: the manifest has no output or transactionTime`, statusUrl);
        return { manifest, polls };
      }
      if (answer.status !== 202) throw new HubError('unsupported', `bulk status ${statusUrl}: unexpected ${answer.status}`, statusUrl);
      if (Date.now() > deadline) throw new HubError('exhausted', `bulk export at ${statusUrl} not finished after ${this.channel.exportTimeoutMs} ms`, statusUrl, true);
      const wait = retryAfterMs(answer.headers.get('retry-after')) ?? this.options.defaultPollMs ?? 5000;
      this.options.log?.(`bulk status: in progress${answer.headers.get('x-progress') ? ` (${answer.headers.get('x-progress')})` : ''}; next poll in ${wait} ms`);
      await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(0, deadline - Date.now()))));
    }
  }
}
