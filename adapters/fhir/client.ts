/**
 * HTTP to one member's FHIR server: fhir-kit-client for FHIR JSON requests (search, next page,
 * $export kick-off and status), plain fetch for NDJSON downloads (fhir-kit-client reads a body whole;
 * a Bulk file must be streamed). Owns the retry policy of every request: 429, 408, 5xx, timeouts and
 * network errors are retried with exponential backoff, or after the server's Retry-After (seconds or
 * an HTTP date); a 401 drops the cached token and retries once with a new one; any other 4xx is the
 * caller's error and is not retried. Must never: retry a request whose outcome was already stored.
 */
import { Readable } from 'node:stream';
import type { Bundle } from 'fhir/r4';
import { HubError } from '../../mappings/outcome';
import type { AuthProvider } from './auth';

type FhirKit = typeof import('fhir-kit-client', { with: { 'resolution-mode': 'import' } });
type KitClient = InstanceType<FhirKit['Client']>;

export interface FhirClientOptions {
  baseUrl: string;
  auth: AuthProvider;
  timeoutMs: number;
  maxAttempts: number;
  backoffMs: number;
  log?: (text: string) => void;
  /** Longest Retry-After honoured; a longer one is cut to this (a server asking for hours is not waited for inline). */
  maxRetryAfterMs?: number;
}

/** An HTTP answer that is not a success, as the retry policy sees it. */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly headers: Headers | undefined,
    readonly body: unknown,
    readonly url: string,
  ) {
    super(`HTTP ${status} from ${url}`);
  }
}

export interface HttpAnswer<T> {
  status: number;
  headers: Headers;
  body: T;
}

/** Retry-After as milliseconds (delta-seconds or HTTP-date), undefined when absent or unreadable. */
export function retryAfterMs(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

let kitModule: Promise<FhirKit> | undefined;
/** fhir-kit-client 2.x is ESM-only; this package is CommonJS, so it is loaded with a dynamic import. */
function loadKit(): Promise<FhirKit> {
  return (kitModule ??= import('fhir-kit-client'));
}

function toHttpError(error: unknown): HttpStatusError | undefined {
  if (error instanceof HttpStatusError) return error;
  const e = error as { response?: { status?: number; data?: unknown }; config?: { headers?: Headers; url?: string } };
  if (typeof e?.response?.status === 'number') return new HttpStatusError(e.response.status, e.config?.headers, e.response.data, e.config?.url ?? '');
  return undefined;
}

export class FhirClient {
  private kit?: Promise<KitClient>;
  /** Requests retried so far, by reason (observability, tests). */
  readonly retries = { status429: 0, status5xx: 0, network: 0, unauthorized: 0 };

  constructor(readonly options: FhirClientOptions) {}

  private client(): Promise<KitClient> {
    return (this.kit ??= loadKit().then((kit) => new kit.Client({ baseUrl: this.options.baseUrl })));
  }

  /** One request under the retry policy. `call` gets the headers to send and a per-attempt timeout signal. */
  async withRetry<T>(what: string, call: (headers: Record<string, string>, signal: AbortSignal) => Promise<T>): Promise<T> {
    let reauthorized = false;
    for (let attempt = 1; ; attempt++) {
      const authorization = await this.options.auth.header();
      const headers: Record<string, string> = authorization ? { authorization } : {};
      try {
        return await call(headers, AbortSignal.timeout(this.options.timeoutMs));
      } catch (error) {
        if (error instanceof HubError) throw error;
        const http = toHttpError(error);
        if (http?.status === 401 && !reauthorized && this.options.auth.invalidate()) {
          reauthorized = true;
          this.retries.unauthorized++;
          attempt--;
          continue;
        }
        const transient = !http || http.status === 429 || http.status === 408 || http.status >= 500;
        const reason = http ? `HTTP ${http.status}${describeBody(http.body)}` : `${(error as Error).name}: ${(error as Error).message}`;
        if (!transient) {
          throw new HubError(http.status === 404 ? 'not-found' : 'invalid', `${what}: ${reason}`, http.url || what);
        }
        if (attempt >= this.options.maxAttempts) throw new HubError('exhausted', `${what}: ${reason} (after ${attempt} attempts)`, http?.url || what, true);
        if (!http) this.retries.network++;
        else if (http.status === 429) this.retries.status429++;
        else this.retries.status5xx++;
        const hinted = retryAfterMs(http?.headers?.get('retry-after'));
        const backoff = Math.min(60_000, this.options.backoffMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
        const delay = Math.min(hinted ?? backoff, this.options.maxRetryAfterMs ?? 300_000);
        this.options.log?.(`${what}: ${reason}; retry ${attempt}/${this.options.maxAttempts - 1} in ${Math.round(delay)} ms`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** First page of a type-level search. */
  async search(resourceType: string, searchParams: Record<string, string>): Promise<Bundle> {
    const kit = await this.client();
    return this.withRetry(`search ${resourceType}`, (headers, signal) => kit.search({ resourceType, searchParams, options: { headers, signal } }) as Promise<unknown>) as Promise<Bundle>;
  }

  /** The page the Bundle's `next` link names, undefined on the last page. */
  async nextPage(bundle: Bundle): Promise<Bundle | undefined> {
    if (!bundle.link?.some((l) => l.relation === 'next')) return undefined;
    const kit = await this.client();
    const next = bundle.link.find((l) => l.relation === 'next')!.url;
    return this.withRetry(`next page ${next}`, (headers, signal) => kit.nextPage({ bundle: bundle as never, options: { headers, signal } }) as Promise<unknown>) as Promise<Bundle>;
  }

  /** Any FHIR JSON request (absolute URL or relative to the base), with its status and headers: $export kick-off and status polls. */
  async request<T = unknown>(what: string, url: string, init: { method?: 'GET' | 'POST' | 'DELETE'; headers?: Record<string, string>; body?: unknown } = {}): Promise<HttpAnswer<T>> {
    const kit = await this.client();
    const { Client } = await loadKit();
    return this.withRetry(what, async (headers, signal) => {
      const result = await kit.request(url, { method: init.method ?? 'GET', body: init.body, options: { headers: { ...init.headers, ...headers }, signal } });
      const response = Client.httpFor(result).response!;
      return { status: response.status, headers: response.headers, body: result as T };
    });
  }

  /**
   * Stream a file (NDJSON) from `url`. Retries until the server starts answering; the timeout covers
   * waiting for the response headers only, not the transfer (a large file takes as long as it takes).
   * A failure mid-transfer surfaces as a stream error: the caller decides (Bulk re-reads the file).
   */
  async download(url: string, options: { authorize: boolean }): Promise<Readable> {
    return this.withRetry(`download ${url}`, async (headers) => {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new Error(`no response within ${this.options.timeoutMs} ms`)), this.options.timeoutMs);
      let response: Response;
      try {
        response = await fetch(url, { headers: { accept: 'application/fhir+ndjson', ...(options.authorize ? headers : {}) }, signal: controller.signal });
      } finally {
        clearTimeout(timer);
      }
      if (!response.ok || !response.body) {
        const text = await response.text().catch(() => '');
        throw new HttpStatusError(response.status, response.headers, text.slice(0, 500), url);
      }
      return Readable.fromWeb(response.body as import('node:stream/web').ReadableStream);
    });
  }
}

function describeBody(body: unknown): string {
  if (!body) return '';
  const outcome = body as { resourceType?: string; issue?: Array<{ diagnostics?: string; details?: { text?: string } }> };
  if (outcome.resourceType === 'OperationOutcome') {
    const text = outcome.issue?.map((i) => i.diagnostics ?? i.details?.text).filter(Boolean).join('; ');
    return text ? ` (${text})` : '';
  }
  return typeof body === 'string' && body ? ` (${body.slice(0, 200)})` : '';
}
