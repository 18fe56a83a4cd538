/**
 * One incoming FHIR resource → one raw message. Owns how a FHIR resource is named in the raw store:
 * message type `FHIR:<type>`, sender = the source server (its base URL, or `file:` for files read
 * from disk), control id `<type>/<id>/_history/<versionId or lastUpdated>` — so re-reading the same
 * version is a duplicate and a newer version is a new revision of the same (type, id). Stores the
 * resource's JSON bytes exactly as received. Must never: reformat or fix the bytes it stores.
 *
 * A resource that cannot even be named (not JSON, no resourceType, no id) is still stored, under a
 * control id made of its content hash, with the reason; it is quarantined at intake. Everything else
 * (schema validity) is checked by the pipeline's parse stage, so a corrected channel configuration or
 * a replay runs the same check again.
 */
import { createHash } from 'node:crypto';
import type { FhirResource } from 'fhir/r4';
import { FHIR_MESSAGE_PREFIX, type NewRawMessage } from '../../hub/rawStore';
import { HubError } from '../../mappings/outcome';


export interface FhirSource {
  memberId: string;
  channelId: string;
  /** Base URL of the server the resource came from (`file:<name>` for files read from disk). */
  server: string;
}

export interface NamedResource {
  row: NewRawMessage;
  /** Set when the resource cannot be named or read: stored and quarantined at intake. */
  problem?: HubError;
  resourceType?: string;
  lastUpdated?: string;
}

const ID = /^[A-Za-z0-9\-.]{1,64}$/;

/** Control id of one version of a resource: re-pulling that version dedupes, a newer one is a new revision. */
export function controlIdOf(type: string, id: string, meta: { versionId?: string; lastUpdated?: string } | undefined): string {
  return `${type}/${id}/_history/${meta?.versionId ?? meta?.lastUpdated ?? ''}`;
}

/** Routing key so that one patient's resources are applied in order: the patient the resource is about. */
export function patientKeyOf(memberId: string, server: string, resource: Record<string, unknown>): string | null {
  if (resource.resourceType === 'Patient' && typeof resource.id === 'string') return `${memberId}|fhir:${server}|Patient/${resource.id}`;
  for (const field of ['subject', 'patient', 'beneficiary']) {
    const ref = (resource[field] as { reference?: unknown } | undefined)?.reference;
    if (typeof ref === 'string' && /^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(ref)) return `${memberId}|fhir:${server}|${ref}`;
  }
  return null;
}

/**
 * Name one resource for the raw store. `bytes` are kept as they are; `parsed` may be given when the
 * caller already parsed them (a Bundle entry, a search page) to save a second JSON.parse.
 */
export function nameResource(source: FhirSource, bytes: Buffer, parsed?: unknown): NamedResource {
  let resource: unknown = parsed;
  let problem: HubError | undefined;
  if (resource === undefined) {
    try {
      resource = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      problem = new HubError('structure', `not JSON: ${(error as Error).message}`);
    }
  }
  const base = (status: 'queued' | 'quarantined', controlId: string, messageType: string, extra: Partial<NewRawMessage> = {}): NewRawMessage => ({
    memberId: source.memberId,
    channelId: source.channelId,
    sender: source.server,
    controlId,
    messageType,
    versionId: 'R4',
    charset: 'UTF-8',
    bytes,
    status,
    flags: [],
    ack: null,
    patientKey: null,
    eventTime: null,
    ...extra,
  });
  const hashId = () => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (!problem) {
    if (typeof resource !== 'object' || resource === null || Array.isArray(resource)) problem = new HubError('structure', 'a FHIR resource must be a JSON object');
    else {
      const r = resource as Record<string, unknown>;
      if (typeof r.resourceType !== 'string' || !/^[A-Z][A-Za-z]{1,63}$/.test(r.resourceType)) problem = new HubError('structure', 'resourceType is missing or not a resource type name', 'resourceType');
      else if (typeof r.id !== 'string' || !ID.test(r.id)) problem = new HubError('structure', `${r.resourceType} has no valid id (FHIR id: 1-64 of A-Z a-z 0-9 - .)`, `${r.resourceType}.id`);
    }
  }
  if (problem) {
    const type = typeof (resource as { resourceType?: unknown } | undefined)?.resourceType === 'string' ? String((resource as { resourceType: string }).resourceType).slice(0, 64) : 'unknown';
    return { row: base('quarantined', hashId(), `${FHIR_MESSAGE_PREFIX}${type}`), problem };
  }
  const r = resource as FhirResource & { id: string };
  const meta = r.meta as { versionId?: string; lastUpdated?: string } | undefined;
  const eventTime = meta?.lastUpdated && !Number.isNaN(Date.parse(meta.lastUpdated)) ? new Date(meta.lastUpdated) : null;
  return {
    row: base('queued', controlIdOf(r.resourceType, r.id, meta), `${FHIR_MESSAGE_PREFIX}${r.resourceType}`, {
      patientKey: patientKeyOf(source.memberId, source.server, r as unknown as Record<string, unknown>),
      eventTime,
    }),
    resourceType: r.resourceType,
    lastUpdated: meta?.lastUpdated,
  };
}
