/**
 * Builds the HTTP client of a configured FHIR channel (server, auth, timeouts, retries): the one
 * place channel configuration becomes a FhirClient.
 */
import type { FhirBulkChannelConfig, FhirRestChannelConfig } from '../../hub/config';
import { authProviderFor, type AuthProvider } from './auth';
import { FhirClient } from './client';

export function clientFor(channel: FhirRestChannelConfig | FhirBulkChannelConfig, options: { log?: (text: string) => void; auth?: AuthProvider; env?: NodeJS.ProcessEnv } = {}): FhirClient {
  return new FhirClient({
    baseUrl: channel.baseUrl,
    auth: options.auth ?? authProviderFor(channel.auth, channel.baseUrl, { env: options.env, timeoutMs: channel.timeoutMs }),
    timeoutMs: channel.timeoutMs,
    maxAttempts: channel.maxAttempts,
    backoffMs: channel.backoffMs,
    log: options.log,
  });
}
