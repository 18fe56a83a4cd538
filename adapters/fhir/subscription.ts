/**
 * Push: what a member's FHIR server sends to its rest-hook endpoint, turned into resources to store.
 * Accepts an R4 Subscription rest-hook POST (a Bundle, a single resource, or an empty "ping"), and
 * R4B / R5 topic-based notification bundles (`history` / `subscription-notification`, whose first
 * entry is the SubscriptionStatus — or, in the R4 backport, a Parameters — which is not data).
 * Pure: the HTTP route (api/server.ts) authenticates, stores and answers.
 */
import { z } from 'zod';
import { HubError } from '../../mappings/outcome';
import { nameResource, type FhirSource, type NamedResource } from './resource';

const resourceShape = z.object({ resourceType: z.string().min(1) }).passthrough();

/** A notification body: a Bundle with entries, or one resource. */
export const notificationSchema = z.union([
  z
    .object({
      resourceType: z.literal('Bundle'),
      type: z.string(),
      entry: z.array(z.object({ fullUrl: z.string().optional(), resource: resourceShape.optional(), request: z.object({ method: z.string() }).passthrough().optional() }).passthrough()).optional(),
    })
    .passthrough(),
  resourceShape,
]);

export type Notification = z.infer<typeof notificationSchema>;

/** Entries that describe the notification itself, not member data. */
const STATUS_TYPES = new Set(['SubscriptionStatus', 'Parameters', 'Subscription']);

export interface NotificationContent {
  kind: 'ping' | 'bundle' | 'resource';
  named: NamedResource[];
  /** Entries not taken in (status entries, deletes, entries without a resource). */
  skipped: number;
}

export function resourcesOfNotification(body: unknown, source: FhirSource): NotificationContent {
  if (body === undefined || body === null || (typeof body === 'object' && Object.keys(body as object).length === 0)) return { kind: 'ping', named: [], skipped: 0 };
  const parsed = notificationSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new HubError('invalid', `body${issue.path.length ? '.' + issue.path.join('.') : ''}: ${issue.message}`, 'body');
  }
  const value = parsed.data as Record<string, unknown>;
  if (value.resourceType !== 'Bundle') return { kind: 'resource', named: [nameResource(source, Buffer.from(JSON.stringify(value)), value)], skipped: 0 };
  const entries = (value.entry as Array<{ resource?: Record<string, unknown>; request?: { method: string } }> | undefined) ?? [];
  const named: NamedResource[] = [];
  let skipped = 0;
  for (const entry of entries) {
    if (!entry.resource || STATUS_TYPES.has(String(entry.resource.resourceType)) || entry.request?.method === 'DELETE') {
      skipped++;
      continue;
    }
    named.push(nameResource(source, Buffer.from(JSON.stringify(entry.resource)), entry.resource));
  }
  return { kind: 'bundle', named, skipped };
}
