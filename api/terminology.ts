/**
 * HTTP routes of the terminology service, mounted by api/server.ts behind the same API-key
 * authentication as every other route. Reading — the FHIR operations ($translate GET/POST,
 * CodeSystem/$lookup, $validate-code, ConceptMaps), the worklist, coverage, suggestions, proposals,
 * history, diffs and reprocess progress — and proposing need scope `integration` or `governance`.
 * Deciding — approve, reject, retire, the impact dry run (it shows patient data), reprocess and
 * import — needs `governance` (the data-governance committee); `admin` implies both. Bodies are
 * zod-validated; errors are the server's `{code, message, outcome}`.
 */
import express, { type Request } from 'express';
import { z } from 'zod';
import type { ApiContext } from './context';
import { requireAnyScope, requireScope } from './auth';
import { HubError } from '../mappings/outcome';
import { EQUIVALENCES, type Equivalence } from '../mappings/terminology/conceptmap';
import { lookup, useSiteTerminologyFiles, validateCode } from '../mappings/terminology/codeSystems';
import { readTranslateRequest, translateRequest, translationParameters } from '../mappings/terminology/operations';
import { suggest } from '../mappings/terminology/suggest';
import { CONCEPT_MAP_BASE } from '../mappings/terminology/systems';

import type { Terminology } from '../mappings/terminology/translator';
import { activeMaps, currentEntries, diffVersions, importConceptMaps, mapHistory, syncTerminology } from '../hub/terminology/versions';
import { approve, listProposals, propose, reject, retire } from '../hub/terminology/workflow';
import { impactOfProposal } from '../hub/terminology/impact';
import { getReprocessJob, reprocessProposal, runReprocess } from '../hub/terminology/reprocess';
import { coverage, unitMismatches, worklist } from '../hub/terminology/worklist';
import { idParam, parse } from './input';
import { activeTerminology } from '../hub/terminology/active';
import { negotiate, sendFhir } from './fhirFormat';
import { strict } from './fhirSearch';

const mapIdParam = z.object({ id: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/) });
const decision = z.object({ comment: z.string().max(2000).default('') }).strict();
const proposalBody = z
  .object({
    sourceSystem: z.string().min(1),
    sourceCode: z.string().min(1),
    sourceDisplay: z.string().optional(),
    targetSystem: z.string().min(1),
    targetCode: z.string().min(1).optional(),
    targetDisplay: z.string().optional(),
    equivalence: z.enum(EQUIVALENCES as [Equivalence, ...Equivalence[]]),
    comment: z.string().max(2000).optional(),
    conceptMapUrl: z.string().optional(),
  })
  .strict();
const worklistQuery = z.object({ member: z.string().optional(), system: z.string().optional(), state: z.enum(['open', 'resolved']).optional(), limit: z.coerce.number().int().min(1).max(1000).optional() });
const coverageQuery = z.object({ member: z.string().optional(), from: z.iso.date().optional(), to: z.iso.date().optional() });
const codeQuery = z.object({ system: z.string().min(1), code: z.string().min(1), display: z.string().optional() });
const diffQuery = z.object({ from: z.coerce.number().int().positive(), to: z.coerce.number().int().positive() });
const suggestQuery = z.object({ member: z.string().min(1), system: z.string().min(1), code: z.string().min(1), display: z.string().optional(), limit: z.coerce.number().int().min(1).max(50).default(10) });

/** system/code/display from GET query or a POST Parameters body (R4 $lookup / $validate-code inputs). */
function codeInput(req: Request): z.infer<typeof codeQuery> {
  const body = req.body as { resourceType?: string; parameter?: Array<Record<string, unknown>> } | undefined;
  if (req.method === 'POST' && body?.resourceType === 'Parameters') {
    const value = (name: string) => body.parameter?.find((p) => p.name === name);
    const coding = value('coding')?.valueCoding as { system?: string; code?: string; display?: string } | undefined;
    const str = (name: string) => {
      const p = value(name);
      return (p?.valueUri ?? p?.valueCode ?? p?.valueString) as string | undefined;
    };
    return parse(codeQuery, { system: str('system') ?? str('url') ?? coding?.system, code: str('code') ?? coding?.code, display: str('display') ?? coding?.display }, 'body');
  }
  return parse(codeQuery, { ...req.query, system: req.query.system ?? req.query.url }, 'query');
}

export function terminologyRouter(runtime: ApiContext): express.Router {
  const router = express.Router();
  const db = runtime.db;
  // The site's release files (LOINC table, MMS tabulation) as configured; read at the first lookup.
  useSiteTerminologyFiles(runtime.config.terminology);
  /** Who may read and propose: those integrating systems and the committee. */
  const reader = requireAnyScope('integration', 'governance');
  /** Who decides: the data-governance committee. */
  const decider = requireScope('governance');
  // The approved maps change rarely: check the store at most once a second per process.
  let checkedAt = 0;
  const terminology = async (): Promise<Terminology> => {
    const now = Date.now();
    if (now - checkedAt < 1000) return activeTerminology();
    checkedAt = now;
    return syncTerminology(db);
  };
  const actor = (req: Request) => req.principal!.name;

  // FHIR clients send `application/fhir+json` (R4 http); the server-wide parser takes only
  // application/json, so the FHIR operations parse both here; and answer in JSON only (406 for XML).
  for (const path of ['/fhir/ConceptMap', '/fhir/CodeSystem']) {
    router.use(path, negotiate, express.json({ type: ['application/json', 'application/fhir+json'], limit: '2mb' }));
  }

  const translate = async (req: Request, res: express.Response) => {
    const url = req.params.id ? `${CONCEPT_MAP_BASE}/${parse(mapIdParam, req.params, 'path').id}` : undefined;
    const request = readTranslateRequest({ query: req.query as Record<string, unknown>, body: req.method === 'POST' ? req.body : undefined }, url);
    sendFhir(res, translationParameters(translateRequest(await terminology(), request)));
  };
  router.get('/fhir/ConceptMap/\\$translate', reader, translate);
  router.post('/fhir/ConceptMap/\\$translate', reader, translate);
  router.get('/fhir/ConceptMap/:id/\\$translate', reader, translate);
  router.post('/fhir/ConceptMap/:id/\\$translate', reader, translate);

  // Search on url and _id (the CapabilityStatement lists them); other parameters are ignored, or
  // refused with Prefer: handling=strict, as on every FHIR type.
  router.get('/fhir/ConceptMap', reader, async (req, res) => {
    const query = new URL(req.originalUrl, 'http://x').searchParams;
    const known = new Set(['url', '_id', '_count', '_format']);
    const unknown = [...query.keys()].filter((k) => !known.has(k));
    if (unknown.length && strict(req)) throw new HubError('invalid', `unknown search parameter ${unknown.join(', ')} for ConceptMap (Prefer: handling=strict)`, unknown[0]);
    const maps = (await activeMaps(db)).filter((m) => (!query.has('url') || query.getAll('url').includes(String(m.url))) && (!query.has('_id') || query.getAll('_id').includes(String(m.id))));
    sendFhir(res, { resourceType: 'Bundle', type: 'searchset', total: maps.length, entry: maps.map((m) => ({ fullUrl: m.url, resource: m, search: { mode: 'match' } })) });
  });
  router.get('/fhir/ConceptMap/:id', reader, async (req, res) => {
    const { id } = parse(mapIdParam, req.params, 'path');
    const map = (await activeMaps(db)).find((m) => m.id === id);
    if (!map) throw new HubError('not-found', `ConceptMap ${id} not found`);
    sendFhir(res, map);
  });

  const lookupRoute = async (req: Request, res: express.Response) => {
    const input = codeInput(req);
    sendFhir(res, lookup(await terminology(), input.system, input.code));
  };
  router.get('/fhir/CodeSystem/\\$lookup', reader, lookupRoute);
  router.post('/fhir/CodeSystem/\\$lookup', reader, lookupRoute);
  const validateRoute = async (req: Request, res: express.Response) => {
    const input = codeInput(req);
    sendFhir(res, validateCode(await terminology(), input.system, input.code, input.display));
  };
  router.get('/fhir/CodeSystem/\\$validate-code', reader, validateRoute);
  router.post('/fhir/CodeSystem/\\$validate-code', reader, validateRoute);

  router.get('/api/terminology/worklist', reader, async (req, res) => {
    const query = parse(worklistQuery, req.query, 'query');
    // Beside the unmapped codes: approved maps whose observed units do not fit the target's property.
    res.json({ items: await worklist(db, query), unitMismatches: query.state === 'resolved' ? [] : await unitMismatches(db, { member: query.member, system: query.system }) });
  });
  router.get('/api/terminology/coverage', reader, async (req, res) => {
    res.json(await coverage(db, parse(coverageQuery, req.query, 'query')));
  });
  router.get('/api/terminology/suggestions', reader, async (req, res) => {
    const q = parse(suggestQuery, req.query, 'query');
    res.json({ items: suggest(await terminology(), { memberId: q.member, system: q.system, code: q.code, display: q.display }, q.limit) });
  });

  router.get('/api/terminology/proposals', reader, async (req, res) => {
    const { state } = parse(z.object({ state: z.enum(['proposed', 'approved', 'rejected', 'retired']).optional() }), req.query, 'query');
    res.json({ items: await listProposals(db, state) });
  });
  router.post('/api/terminology/proposals', reader, async (req, res) => {
    const body = parse(proposalBody, req.body, 'body');
    res.status(201).json(await propose(db, body, actor(req)));
  });
  router.get('/api/terminology/proposals/:id', reader, async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    const [proposal] = await listProposals(db, undefined, id);
    if (!proposal) throw new HubError('not-found', `proposal ${id} not found`);
    res.json(proposal);
  });
  router.get('/api/terminology/proposals/:id/impact', decider, async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    const { sample } = parse(z.object({ sample: z.coerce.number().int().min(0).max(100).default(10) }), req.query, 'query');
    res.json(await impactOfProposal(db, id, actor(req), sample));
  });
  router.post('/api/terminology/proposals/:id/approve', decider, async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    res.json(await approve(db, id, actor(req), parse(decision, req.body ?? {}, 'body').comment, { fourEyes: runtime.config.governance?.fourEyes ?? true }));
  });
  router.post('/api/terminology/proposals/:id/reject', decider, async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    res.json(await reject(db, id, actor(req), parse(decision, req.body ?? {}, 'body').comment));
  });
  router.post('/api/terminology/proposals/:id/retire', decider, async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    res.json(await retire(db, id, actor(req), parse(decision, req.body ?? {}, 'body').comment));
  });
  router.post('/api/terminology/proposals/:id/reprocess', decider, async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    const job = await reprocessProposal(db, id, actor(req));
    // Runs in this process; progress is the job row (GET /api/terminology/reprocess/:id). A job cut
    // short by a restart stays `running` and is resumed by running it again.
    runReprocess(db, job.id).catch(() => undefined);
    res.status(202).json(job);
  });
  router.get('/api/terminology/reprocess/:id', reader, async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    res.json(await getReprocessJob(db, id));
  });
  router.post('/api/terminology/import', decider, async (req, res) => {
    const maps = Array.isArray(req.body) ? req.body : [req.body];
    res.json({ items: await importConceptMaps(db, maps, actor(req), typeof req.query.comment === 'string' ? req.query.comment : '') });
  });
  router.get('/api/terminology/maps/:id/history', reader, async (req, res) => {
    const { id } = parse(mapIdParam, req.params, 'path');
    res.json(await mapHistory(db, `${CONCEPT_MAP_BASE}/${id}`));
  });
  router.get('/api/terminology/maps/:id/entries', reader, async (req, res) => {
    const { id } = parse(mapIdParam, req.params, 'path');
    res.json(await currentEntries(db, id));
  });
  router.get('/api/terminology/maps/:id/diff', reader, async (req, res) => {
    const { id } = parse(mapIdParam, req.params, 'path');
    const q = parse(diffQuery, req.query, 'query');
    res.json({ from: q.from, to: q.to, changes: await diffVersions(db, `${CONCEPT_MAP_BASE}/${id}`, q.from, q.to) });
  });
  return router;
}
