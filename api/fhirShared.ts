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
import { HubError } from '../mappings/outcome';
import { sendClientError } from './errors';
import { sendFhir } from './fhirFormat';
import { pageLinks, parseSearch, strict, type ParamTables } from './fhirSearch';
import { single } from './fhirSearchParams';
import { subset } from './fhirSubset';

const idParam = z.object({ id: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/) });
const ID = /^[A-Za-z0-9\-.]{1,64}$/;

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

/**
 * Search and read of each shared type. Search takes the parameters of its table
 * (api/fhirSearchParams.ts: `_id`, `name`, `identifier`) and the result parameters, with the same
 * handling of unknown parameters as every other type.
 */
export function unifiedResourceRoutes(router: express.Router, db: HubDb, tables: ParamTables): void {
  for (const type of SHARED_RESOURCE_TYPES) {
    router.get(`/${type}`, async (req: Request, res: Response) => {
      const search = parseSearch(type, new URL(req.originalUrl, 'http://x').searchParams, { tables, strict: strict(req) });
      const filter: { name?: string; identifier?: string; id?: string } = {};
      for (const c of search.clauses) {
        if (c.modifier) throw new HubError('invalid', `${c.def.name}:${c.modifier}: modifiers are not supported on ${type}`, c.def.name);
        const value = single(c.values, c.def.name);
        if (c.def.name === '_id') {
          if (!ID.test(value)) throw new HubError('invalid', `_id: not a FHIR id`, '_id');
          filter.id = value;
        } else filter[c.def.name as 'name' | 'identifier'] = value;
      }
      await fresh(db);
      const { total, records } = await listUnified(db, { type, ...filter, limit: search.count, offset: search.offset });
      const base = `${req.protocol}://${req.get('host') ?? 'localhost'}${req.baseUrl}`;
      sendFhir(res, {
        resourceType: 'Bundle',
        type: 'searchset',
        ...(search.total === 'none' ? {} : { total }),
        link: pageLinks(req, search, search.offset + records.length < total),
        entry: search.summary === 'count' ? [] : records.map((r) => ({ fullUrl: `${base}/${type}/${r.id}`, resource: subset(r.content as Record<string, unknown>, search.summary, search.elements), search: { mode: 'match' } })),
      });
    });
    router.get(`/${type}/:id`, async (req: Request, res: Response) => {
      const { id } = parse(idParam, req.params, 'path');
      await fresh(db);
      const unified = await unifiedIdOf(db, type, id);
      const record = unified ? (await listUnified(db, { type, id: unified, limit: 1 })).records[0] : undefined;
      if (!record) return sendClientError(res, 404, 'not-found', `${type}/${id} not found`, undefined, true);
      sendFhir(res, record.content);
    });
  }
}
