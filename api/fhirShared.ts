/**
 * FHIR R4 search and read of the unified shared resources (Organization, Location, Device,
 * Practitioner, PractitionerRole, HealthcareService), mounted by api/fhir.ts inside the
 * FHIR router, after its authentication (scope patient.read): it adds no route outside it.
 *
 * A unified record has a stable id and lists every member report it stands for in `shared-source`
 * extensions; a member's own id (`Device/<source id>`, as an Appointment references it) reads the
 * unified record it belongs to. Reads bring the index up to date first (at most once a second per
 * process), so a report is visible about as soon as its message is processed.
 */
import type express from 'express';
import type { Request, Response } from 'express';
import { z } from 'zod';
import type { HubDb } from '../hub/sql';
import { parse } from './input';
import { SHARED_RESOURCE_TYPES } from '../hub/resources/rules';
import { listUnified, syncSharedResources, unifiedIdOf } from '../hub/resources/store';

const searchQuery = z
  .object({
    name: z.string().min(1).max(200).optional(),
    identifier: z.string().min(1).max(300).optional(),
    _id: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/).optional(),
    _count: z.coerce.number().int().min(1).max(500).default(50),
    _offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
  })
  .strict();
const idParam = z.object({ id: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/) });

const lastSync = new WeakMap<HubDb, { at: number; running?: Promise<unknown> }>();

/**
 * Bring the index up to date at most once a second; concurrent reads share one run. A read waits
 * for it at most two seconds (a first sync after a bulk load takes longer; the read then serves
 * what is matched so far).
 */
async function fresh(db: HubDb): Promise<void> {
  const state = lastSync.get(db) ?? { at: 0 };
  lastSync.set(db, state);
  if (!state.running && Date.now() - state.at >= 1000) {
    state.at = Date.now();
    state.running = syncSharedResources(db)
      .catch(() => undefined) // the timer in `yilian serve` logs sync failures; a read still answers
      .finally(() => (state.running = undefined));
  }
  if (!state.running) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([state.running, new Promise((r) => (timer = setTimeout(r, 2000)))]);
  clearTimeout(timer);
}

function selfUrl(req: Request, overrides: Record<string, string>): string {
  const url = new URL(req.originalUrl, `${req.protocol}://${req.get('host') ?? 'localhost'}`);
  for (const [k, v] of Object.entries(overrides)) url.searchParams.set(k, v);
  return url.toString();
}

export function unifiedResourceRoutes(router: express.Router, db: HubDb): void {
  for (const type of SHARED_RESOURCE_TYPES) {
    router.get(`/${type}`, async (req: Request, res: Response) => {
      const q = parse(searchQuery, req.query, 'query');
      await fresh(db);
      const { total, records } = await listUnified(db, { type, name: q.name, identifier: q.identifier, id: q._id, limit: q._count, offset: q._offset });
      res.type('application/fhir+json').json({
        resourceType: 'Bundle',
        type: 'searchset',
        total,
        link: [{ relation: 'self', url: selfUrl(req, {}) }, ...(q._offset + records.length < total ? [{ relation: 'next', url: selfUrl(req, { _offset: String(q._offset + q._count) }) }] : [])],
        entry: records.map((r) => ({ fullUrl: `${type}/${r.id}`, resource: r.content, search: { mode: 'match' } })),
      });
    });
    router.get(`/${type}/:id`, async (req: Request, res: Response) => {
      const { id } = parse(idParam, req.params, 'path');
      await fresh(db);
      const unified = await unifiedIdOf(db, type, id);
      const record = unified ? (await listUnified(db, { type, id: unified, limit: 1 })).records[0] : undefined;
      if (!record) return void res.status(404).type('application/fhir+json').json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found', diagnostics: `${type}/${id} not found` }] });
      res.type('application/fhir+json').json(record.content);
    });
  }
}
