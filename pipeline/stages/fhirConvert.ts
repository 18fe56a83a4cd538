/**
 * Stage "convert", FHIR branch: a resource read from a member's FHIR server → the hub's resources,
 * in the shape the HL7 v2 conversion produces, so map → identify → merge treat both the same. Pure.
 *
 * - Deterministic hub id: `resourceId(member, type, "fhir:<server>|<source id>")` — the same source
 *   resource always lands on the same hub record, whatever version or route (REST, Bulk, push, file)
 *   brought it; two servers of one member, or two members, never collide.
 * - References: relative ones (`Patient/123`, `Patient/123/_history/2`) and absolute ones on the
 *   same server are rewritten to the hub ids they become; others (`urn:uuid:`, conditional, other
 *   servers) are kept as sent.
 * - `meta.source` = `<server>/<type>/<id>/_history/<version>` (what exactly was read); the source's
 *   versionId is dropped (the hub counts its own versions).
 * - One Provenance per source version: target the hub resource, entity (source) the source version's
 *   URL and the raw message, agents the member (Organization) and the channel.
 */
import type { FhirResource, Provenance } from 'fhir/r4';
import type { MemberConfig } from '../../hub/config';
import { MEMBER_SYSTEM, resourceId, type Resource } from '../../mappings/hl7v2/convert/conversion';
import type { ParsedFhirResource } from './fhirParse';

export interface FhirConvertContext {
  memberId: string;
  channelId: string;
  rawId: number;
  /** raw_message.sender: the source server's base URL (or `file:<name>`). */
  server: string;
  member?: MemberConfig;
  receivedAt: Date;
}

export interface ConvertedFhirResource {
  parsed: ParsedFhirResource;
  /** The source resource under its hub id, then the member Organization and the Provenance. */
  resources: Resource[];
  /** The hub id of the source resource. */
  hubId: string;
  sourceVersion: string;
}

/** Hub id of a resource of `server` (deterministic; see the header). */
export function hubIdOf(memberId: string, server: string, type: string, sourceId: string): string {
  return resourceId(memberId, type, `fhir:${server}|${sourceId}`);
}

const RELATIVE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

function rewriteReferences(value: unknown, memberId: string, server: string): unknown {
  if (Array.isArray(value)) return value.map((v) => rewriteReferences(v, memberId, server));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (key === 'reference' && typeof v === 'string') {
      const local = server && v.startsWith(`${server}/`) ? v.slice(server.length + 1) : v;
      const m = RELATIVE.exec(local);
      out[key] = m ? `${m[1]}/${hubIdOf(memberId, server, m[1]!, m[2]!)}` : v;
    } else out[key] = rewriteReferences(v, memberId, server);
  }
  return out;
}

export function fhirConvertStage(parsed: ParsedFhirResource, ctx: FhirConvertContext): ConvertedFhirResource {
  const source = parsed.resource;
  const type = source.resourceType;
  const meta = (source.meta ?? {}) as NonNullable<FhirResource['meta']>;
  const sourceVersion = meta.versionId ?? meta.lastUpdated ?? '';
  const sourceUrl = `${ctx.server}/${type}/${source.id}${sourceVersion ? `/_history/${sourceVersion}` : ''}`;
  const hubId = hubIdOf(ctx.memberId, ctx.server, type, source.id);
  const { versionId: _dropped, ...keptMeta } = meta;
  const body = rewriteReferences(source, ctx.memberId, ctx.server) as Record<string, unknown>;
  // `contained` resources keep their local ids (#x references stay valid).
  const resource = { ...body, id: hubId, meta: { ...keptMeta, source: sourceUrl } } as unknown as Resource;

  const memberOrgId = resourceId(ctx.memberId, 'Organization', `member:${ctx.memberId}`);
  const memberOrg = {
    resourceType: 'Organization',
    id: memberOrgId,
    identifier: [{ system: MEMBER_SYSTEM, value: ctx.memberId }],
    name: ctx.member?.name ?? ctx.memberId,
    active: true,
  } as Resource;
  const provenance: Provenance & { id: string } = {
    resourceType: 'Provenance',
    id: resourceId(ctx.memberId, 'Provenance', `fhir:${ctx.server}|${type}/${source.id}/_history/${sourceVersion}`),
    target: [{ reference: `${type}/${hubId}` }],
    recorded: meta.lastUpdated ?? ctx.receivedAt.toISOString(),
    activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }] },
    agent: [
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }] },
        who: { reference: `Organization/${memberOrgId}`, display: ctx.member?.name ?? ctx.memberId },
      },
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'assembler' }] },
        who: { identifier: { system: `urn:yilian:${ctx.memberId}:channel`, value: ctx.channelId }, display: `channel ${ctx.memberId}/${ctx.channelId}` },
      },
    ],
    entity: [
      { role: 'source', what: { reference: sourceUrl, display: `FHIR ${type}/${source.id} version ${sourceVersion || '(none)'} from ${ctx.server}` } },
      { role: 'source', what: { identifier: { system: 'urn:ietf:rfc:3986', value: `urn:yilian:raw:${ctx.rawId}` } } },
    ],
  };
  return { parsed, resources: [resource, memberOrg, provenance as unknown as Resource], hubId, sourceVersion };
}
