/**
 * Unified shared resources on the FHIR API: Organization, Location, Device, Practitioner,
 * PractitionerRole, HealthcareService. Two members' systems often report the same thing (the lead
 * hospital's CT, an expert who also works sessions at a community member): records with the same
 * identity key are shown once, the others listed in an extension with their own ids. The identity
 * key: an identifier that is not member-scoped (a national practitioner number, a device serial or
 * UDI, an organisation's unified social credit code), else the normalised name within the member.
 * De-duplication happens at read time over the `resource` table (owns no tables).
 */
import type express from 'express';
import type { Request, Response } from 'express';
import type { Sql } from '../db';
import { HubError } from '../../pipeline/outcome';
import { normaliseName } from '../mpi/names';

export const SHARED_TYPES = ['Organization', 'Location', 'Device', 'Practitioner', 'PractitionerRole', 'HealthcareService'] as const;
export const SAME_AS_URL = 'https://yilian.example/fhir/StructureDefinition/same-as';
const MAX_SCAN = 20_000;

/** A row of the `resource` table as the FHIR API reads it. */
export interface ResourceRow {
  resource_type: string;
  id: string;
  member_id: string;
  version: number;
  content: Record<string, unknown>;
  updated_at: Date;
}

type Identifier = { system?: string; value?: string };

/** Member-scoped identifier systems (the converter's `urn:yilian:<member>:…`) say nothing across members. */
function globalIdentifiers(content: Record<string, unknown>): Identifier[] {
  const ids = (content.identifier as Identifier[] | undefined) ?? [];
  return ids.filter((i) => i.value && i.system && !i.system.startsWith('urn:yilian:'));
}

function nameOf(content: Record<string, unknown>): string | undefined {
  const name = content.name;
  if (typeof name === 'string') return name;
  if (Array.isArray(name)) {
    const n = name[0] as { text?: string; family?: string; given?: string[] } | undefined;
    return n?.text ?? [n?.family, ...(n?.given ?? [])].filter(Boolean).join('');
  }
  const deviceName = (content.deviceName as Array<{ name?: string }> | undefined)?.[0]?.name;
  if (deviceName) return deviceName;
  const code = (content.code as Array<{ text?: string; coding?: Array<{ code?: string }> }> | undefined)?.[0];
  return code?.text ?? code?.coding?.[0]?.code;
}

/** The identity key under which reports of one thing are shown once. */
export function sharedKey(row: Pick<ResourceRow, 'resource_type' | 'member_id' | 'content'>): string {
  const serial = row.content.serialNumber as string | undefined;
  if (row.resource_type === 'Device' && serial) return `Device|sn|${serial.trim().toUpperCase()}`;
  const udi = (row.content.udiCarrier as Array<{ deviceIdentifier?: string }> | undefined)?.[0]?.deviceIdentifier;
  if (udi) return `${row.resource_type}|udi|${udi}`;
  const id = globalIdentifiers(row.content)[0];
  if (id) return `${row.resource_type}|id|${id.system}|${id.value!.trim().toUpperCase()}`;
  const name = normaliseName(nameOf(row.content));
  if (row.resource_type === 'PractitionerRole') {
    const who = (row.content.practitioner as { reference?: string } | undefined)?.reference;
    const org = (row.content.organization as { reference?: string } | undefined)?.reference;
    return `PractitionerRole|${row.member_id}|${who}|${org}|${name ?? ''}`;
  }
  return name ? `${row.resource_type}|name|${row.member_id}|${name}` : `${row.resource_type}|own|${row.member_id}|${(row.content.id as string) ?? ''}`;
}

export function sharedResourceSearch(router: express.Router, db: Sql): void {
  for (const type of SHARED_TYPES) {
    router.get(`/${type}`, async (req: Request, res: Response) => {
      const count = Number(req.query._count ?? 50);
      const offset = Number(req.query._offset ?? 0);
      if (!Number.isInteger(count) || count < 1 || count > 500 || !Number.isInteger(offset) || offset < 0) throw new HubError('invalid', '_count 1–500 and _offset ≥ 0 are integers', '_count');
      const params: unknown[] = [type];
      const where = ['resource_type = $1'];
      const identifier = typeof req.query.identifier === 'string' ? req.query.identifier : undefined;
      if (identifier) {
        const bar = identifier.indexOf('|');
        params.push(JSON.stringify([bar > 0 ? { system: identifier.slice(0, bar), value: identifier.slice(bar + 1) } : { value: bar >= 0 ? identifier.slice(bar + 1) : identifier }]));
        where.push(`(content->'identifier' @> $${params.length}::jsonb)`);
      }
      const rows = await db.query<ResourceRow>(`SELECT resource_type, id, member_id, version, content, updated_at FROM resource WHERE ${where.join(' AND ')} ORDER BY id LIMIT ${MAX_SCAN}`, params);
      if (type === 'Organization' && !identifier) {
        // The alliance's members themselves, with their tier (an Organization of the hub's own).
        const members = await db.query<{ id: string; name: string; tier: string; updated_at: Date }>(`SELECT id, name, tier, updated_at FROM member ORDER BY id`);
        for (const m of members.rows) {
          rows.rows.push({
            resource_type: 'Organization',
            id: `member-${m.id}`,
            member_id: m.id,
            version: 1,
            updated_at: m.updated_at,
            content: {
              resourceType: 'Organization',
              id: `member-${m.id}`,
              identifier: [{ system: 'https://yilian.example/fhir/sid/member', value: m.id }],
              name: m.name,
              type: [{ coding: [{ system: 'https://yilian.example/fhir/CodeSystem/member-tier', code: m.tier }] }],
            },
          });
        }
      }
      const name = typeof req.query.name === 'string' ? normaliseName(req.query.name) : undefined;
      const groups = new Map<string, ResourceRow[]>();
      for (const r of rows.rows) {
        if (name && !(normaliseName(nameOf(r.content)) ?? '').includes(name)) continue;
        const key = sharedKey(r);
        const g = groups.get(key);
        if (g) g.push(r);
        else groups.set(key, [r]);
      }
      const all = [...groups.values()];
      const page = all.slice(offset, offset + count);
      res.type('application/fhir+json').json({
        resourceType: 'Bundle',
        type: 'searchset',
        total: all.length,
        entry: page.map((members) => {
          // The most recently updated report represents the thing; the others are listed as the same.
          const [first, ...rest] = [...members].sort((a, b) => b.updated_at.getTime() - a.updated_at.getTime());
          const content = { ...first!.content, meta: { ...((first!.content.meta as object) ?? {}), versionId: String(first!.version), lastUpdated: first!.updated_at.toISOString(), source: `urn:yilian:member:${first!.member_id}` } } as Record<string, unknown>;
          if (rest.length) content.extension = [...((content.extension as unknown[]) ?? []), ...rest.map((r) => ({ url: SAME_AS_URL, valueReference: { reference: `${type}/${r.id}`, display: r.member_id } }))];
          return { fullUrl: `${type}/${first!.id}`, resource: content, search: { mode: 'match' } };
        }),
      });
    });
    router.get(`/${type}/:id`, async (req: Request, res: Response) => {
      const rows = await db.query<ResourceRow>(`SELECT resource_type, id, member_id, version, content, updated_at FROM resource WHERE resource_type = $1 AND id = $2`, [type, String(req.params.id)]);
      const row = rows.rows[0];
      if (!row) return void res.status(404).type('application/fhir+json').json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found', diagnostics: `${type}/${req.params.id} not found` }] });
      res.type('application/fhir+json').json({ ...row.content, meta: { ...((row.content.meta as object) ?? {}), versionId: String(row.version), lastUpdated: row.updated_at.toISOString() } });
    });
  }
}
