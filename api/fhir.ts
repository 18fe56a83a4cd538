/**
 * The FHIR R4 read API over the unified record: golden patients (`Patient/{id}` with a `link` to
 * each member's source Patient), `Patient/$match`, `Patient/{id}/$everything`, read, vread,
 * `_history` and search of the clinical types in the `resource` table, the shared resources
 * (api/fhirShared.ts), `$validate` on each, and AuditEvent for admins. Every clinical resource is
 * returned referencing the golden patient, with its member's own Patient reference kept in an
 * extension. Needs scope `patient.read`; `AuditEvent` needs `admin`. Every read or search that
 * returns patient data writes one audit event per patient returned — the page and its includes,
 * nobody else (hub/audit.ts).
 *
 * Search is driven by one parameter table per type (api/fhirSearchParams.ts), parsed by
 * api/fhirSearch.ts; content negotiation and 405 are api/fhirFormat.ts; the CapabilityStatement is
 * api/fhirCapability.ts; versions api/fhirHistory.ts. Writes nothing but audit events and the
 * golden patients' search text (api/fhirPatientSearch.ts).
 */
import express, { type Request, type Response } from 'express';
import type { ApiContext } from './context';
import type { HubDb, Sql } from '../hub/sql';
import { requireScope } from './auth';
import { recordAudit, recordAuditForPatients } from '../hub/audit';
import { HubError } from '../mappings/outcome';
import { goldenPatient, matchPerson, resolveGolden, type GoldenPatient } from '../hub/mpi/review';
import { recordOfSource, type SourceRow } from '../hub/mpi/sourceRecord';
import { patientDemographics } from '../pipeline/stages/fhirIdentify';
import type { Patient } from 'fhir/r4';
import { SHARED_RESOURCE_TYPES } from '../hub/resources/rules';
import { unifiedResourceRoutes } from './fhirShared';
import { errorHandler, stderrErrorLog, type ErrorLog, sendClientError } from './errors';
import { methodNotAllowed, negotiate, sendFhir } from './fhirFormat';
import { cheapToCount, criteria, orderBy, pageLinks, parseSearch, referenceId, SqlParams, strict, type Clause, type ParamTables, type ParsedSearch } from './fhirSearch';
import { CLINICAL, GOLDEN_SYSTEM, RESIDENT_ID_SYSTEM, SUBJECT, searchTables } from './fhirSearchParams';
import { capabilityStatement as buildCapability } from './fhirCapability';
import { type ResourceRow, currentGoldenVersions, goldenAt, goldenVersions, historyBundle, resourceVersions, versionParam } from './fhirHistory';
import { refreshPatientSearch } from './fhirPatientSearch';
import { subset } from './fhirSubset';
import { validateOperation } from './fhirValidate';

export { GOLDEN_SYSTEM };
export const SOURCE_PATIENT_URL = 'https://yilian.example/fhir/StructureDefinition/source-patient';

/** Most resources an `_include` / `_revinclude` adds to one page. */
const INCLUDE_LIMIT = 1000;
/** Most ids a chained parameter resolves to. */
const CHAIN_LIMIT = 1000;

/** Golden patient → FHIR Patient: survivorship values, every identifier, a link per source record. */
export function goldenToFhir(g: GoldenPatient, version?: { version: number; at: Date }): Record<string, unknown> {
  const s = g.survivor;
  const birth = s.birthDate && /^\d{8}$/.test(s.birthDate) ? `${s.birthDate.slice(0, 4)}-${s.birthDate.slice(4, 6)}-${s.birthDate.slice(6, 8)}` : undefined;
  const links: Array<Record<string, unknown>> = g.sources.map((src) => ({
    other: { reference: src.patientResourceId ? `Patient/${src.patientResourceId}` : undefined, identifier: { system: `urn:yilian:${src.member}:mrn`, value: src.mrn }, display: `${src.member}|${src.mrn}` },
    type: 'seealso',
  }));
  if (g.mergedInto) links.unshift({ other: { reference: `Patient/${g.mergedInto}` }, type: 'replaced-by' });
  return {
    resourceType: 'Patient',
    id: g.id,
    meta: { ...(version ? { versionId: String(version.version), lastUpdated: version.at.toISOString() } : {}), tag: [{ system: 'https://yilian.example/fhir/CodeSystem/record-kind', code: 'golden' }] },
    active: g.state === 'active',
    identifier: [
      { system: GOLDEN_SYSTEM, value: g.id },
      ...(s.residentId ? [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'NNCHN' }] }, system: RESIDENT_ID_SYSTEM, value: s.residentId }] : []),
      ...g.sources.map((src) => ({ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] }, system: `urn:yilian:${src.member}:mrn`, value: src.mrn, assigner: { display: src.member } })),
    ],
    ...(s.family || s.given ? { name: [{ use: 'official', family: s.family, given: s.given ? [s.given] : undefined, text: /\p{Script=Han}/u.test(`${s.family ?? ''}${s.given ?? ''}`) ? `${s.family ?? ''}${s.given ?? ''}` : [s.family, s.given].filter(Boolean).join(' ') }] } : {}),
    ...(s.sex ? { gender: s.sex === 'M' ? 'male' : 'female' } : {}),
    ...(birth ? { birthDate: birth } : {}),
    ...(s.phone ? { telecom: [{ system: 'phone', value: s.phone }] } : {}),
    ...(s.address ? { address: [{ text: s.address }] } : {}),
    link: links,
  };
}


const ROW_COLUMNS = 'resource_type, id, member_id, version, content, updated_at';

/** A stored clinical resource as the API shows it: subject → golden patient, the source reference kept. */
function present(row: ResourceRow, goldenBySource: Map<string, string>): Record<string, unknown> {
  const content = { ...row.content, meta: { ...((row.content.meta as object) ?? {}), versionId: String(row.version), lastUpdated: row.updated_at.toISOString(), source: `urn:yilian:member:${row.member_id}` } };
  for (const field of ['subject', 'patient']) {
    const ref = (content as Record<string, { reference?: string } | undefined>)[field];
    const sourceId = ref?.reference?.startsWith('Patient/') ? ref.reference.slice(8) : undefined;
    const golden = sourceId ? goldenBySource.get(sourceId) : undefined;
    if (ref && golden) (content as Record<string, unknown>)[field] = { ...ref, reference: `Patient/${golden}`, extension: [{ url: SOURCE_PATIENT_URL, valueReference: { reference: ref.reference } }] };
  }
  return content;
}

async function goldenBySourceOf(sql: Sql, rows: ResourceRow[]): Promise<Map<string, string>> {
  const ids = new Set<string>();
  for (const r of rows) {
    for (const field of ['subject', 'patient']) {
      const ref = (r.content[field] as { reference?: string } | undefined)?.reference;
      if (ref?.startsWith('Patient/')) ids.add(ref.slice(8));
    }
  }
  if (!ids.size) return new Map();
  const found = await sql.query<{ patient_resource_id: string; golden_id: string }>(
    `SELECT s.patient_resource_id, l.golden_id FROM mpi_source s JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH' WHERE s.patient_resource_id = ANY($1::text[])`,
    [[...ids]],
  );
  return new Map(found.rows.map((r) => [r.patient_resource_id, r.golden_id]));
}

/** The golden patients a set of presented clinical rows belong to (for the audit). */
function patientsOf(rows: ResourceRow[], map: Map<string, string>): string[] {
  return rows.map((r) => map.get(((r.content.subject ?? r.content.patient) as { reference?: string } | undefined)?.reference?.slice(8) ?? '')).filter((g): g is string => !!g);
}

function notFound(res: Response, what: string): void {
  sendClientError(res, 404, 'not-found', `${what} not found`, undefined, true);
}

/** A search's query as ordered pairs (repeats kept: repeats are ANDed). */
function queryOf(req: Request): URLSearchParams {
  return new URL(req.originalUrl, 'http://x').searchParams;
}

interface Page<T> {
  items: T[];
  hasMore: boolean;
  /** FROM … WHERE … of the search, and its parameters: what a count needs. */
  from: string;
  params: unknown[];
}

/** What the capability statement needs to know besides the parameter tables. */
const VERSIONED = ['Patient', ...Object.keys(CLINICAL)];

export function capabilityStatement(db: Sql): Record<string, unknown> {
  return buildCapability({ tables: searchTables(db), versioned: VERSIONED, plain: [...SHARED_RESOURCE_TYPES] });
}

/** The open part of the FHIR API (api/server.ts mounts it before authentication): the CapabilityStatement. */
export function fhirMetadataRouter(runtime: ApiContext): express.Router {
  const router = express.Router();
  const statement = capabilityStatement(runtime.db);
  router.get('/metadata', negotiate, (_req, res) => sendFhir(res, statement));
  return router;
}

export function fhirRouter(runtime: ApiContext, log: ErrorLog = stderrErrorLog): express.Router {
  const db = runtime.db as HubDb;
  const tables: ParamTables = searchTables(db);
  const capability = capabilityStatement(db);
  const router = express.Router();
  router.use(negotiate);
  router.use(express.json({ type: ['application/json', 'application/fhir+json'], limit: '2mb' }));

  // No patient-index sync on reads: the pipeline links each source patient as its message is
  // processed (pipeline/stages/identify.ts), and `yilian serve` syncs every 5 s as a safety net.

  const audit = async (req: Request, action: 'read' | 'search', entityType: string, entityId: string, patients: Iterable<string>, detail: Record<string, unknown> = {}) => {
    const list = [...new Set(patients)];
    for (const p of list.length ? list : [null]) await recordAudit(db, { actor: req.principal!.name, action, entityType, entityId, patientKey: p, detail: { ...detail, via: 'fhir', path: req.path } });
  };
  const base = (req: Request) => `${req.protocol}://${req.get('host') ?? 'localhost'}${req.baseUrl}`;
  const parse = (req: Request, type: string) => parseSearch(type, queryOf(req), { tables, strict: strict(req) });
  /** A read as `_summary` / `_elements` ask (R4 allows them on read too). */
  const readView = (req: Request, resource: Record<string, unknown>) => {
    const q = queryOf(req);
    return subset(resource, q.get('_summary') ?? undefined, q.get('_elements')?.split(',').map((e) => e.trim()).filter(Boolean));
  };

  // ---- the searches, one per store ----

  /** Golden patients: mpi_golden `g` (names and addresses through fhir_patient_term). */
  const goldenSearch = async (search: ParsedSearch, limit = search.count, offset = search.offset): Promise<Page<string>> => {
    const all = [...search.clauses, ...search.clauses.flatMap((c) => (c.chain ? [c.chain.clause] : []))];
    if (all.some((c) => c.def.type === 'string')) await refreshPatientSearch(db);
    const p = new SqlParams();
    const where = [`g.state <> 'merged'`, ...(await criteria(search, p, chainIds))];
    const from = `FROM mpi_golden g WHERE ${where.join(' AND ')}`;
    const rows = await db.query<{ id: string }>(`SELECT g.id ${from} ORDER BY ${orderBy(search, 'g.created_at, g.id', 'g.id')} LIMIT ${limit + 1} OFFSET ${offset}`, p.values);
    return { items: rows.rows.slice(0, limit).map((r) => r.id), hasMore: rows.rows.length > limit, from, params: p.values };
  };

  /** Clinical resources of one type in `resource`. */
  const clinicalSearch = async (search: ParsedSearch, limit = search.count, offset = search.offset): Promise<Page<ResourceRow>> => {
    const p = new SqlParams([search.type]);
    const where = ['resource_type = $1', ...(await criteria(search, p, chainIds))];
    const from = `FROM resource WHERE ${where.join(' AND ')}`;
    const rows = await db.query<ResourceRow>(`SELECT ${ROW_COLUMNS} ${from} ORDER BY ${orderBy(search, 'updated_at DESC, id', 'id')} LIMIT ${limit + 1} OFFSET ${offset}`, p.values);
    return { items: rows.rows.slice(0, limit), hasMore: rows.rows.length > limit, from, params: p.values };
  };

  /** The ids a chained clause matches on its target type (one level: the chained clause has no chain). */
  async function chainIds(type: string, clause: Clause): Promise<string[]> {
    const search: ParsedSearch = { type, clauses: [clause], count: CHAIN_LIMIT, offset: 0, sort: [], include: [], revinclude: [], used: [], ignored: [] };
    if (type === 'Patient') return (await goldenSearch(search)).items;
    if (CLINICAL[type]) return (await clinicalSearch(search)).items.map((r) => r.id);
    throw new HubError('invalid', `chaining to ${type} is not supported`, type);
  }

  /** Bundle.total as `_total` asks; by default when it is known or cheap (a patient, ids). */
  const totalOf = async (search: ParsedSearch, page: Page<unknown>, cheap: boolean): Promise<number | undefined> => {
    if (search.total === 'none') return undefined;
    if (!page.hasMore && (page.items.length > 0 || search.offset === 0)) return search.offset + page.items.length;
    if (search.total === 'estimate') {
      const plan = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) SELECT 1 ${page.from}`, page.params);
      const json = plan.rows[0]?.['QUERY PLAN'];
      const parsed = (typeof json === 'string' ? JSON.parse(json) : json) as Array<{ Plan: { 'Plan Rows': number } }>;
      return Math.max(search.offset + page.items.length + (page.hasMore ? 1 : 0), Math.round(parsed[0]?.Plan['Plan Rows'] ?? 0));
    }
    if (search.total === 'accurate' || search.summary === 'count' || cheap) {
      return (await db.query<{ n: number }>(`SELECT count(*)::int AS n ${page.from}`, page.params)).rows[0]!.n;
    }
    return undefined;
  };

  /** Resources an `_include` adds: what the page's references point to. */
  const included = async (search: ParsedSearch, resources: Array<Record<string, unknown>>): Promise<{ goldens: string[]; rows: ResourceRow[] }> => {
    const goldens = new Set<string>();
    const byType = new Map<string, Set<string>>();
    for (const inc of search.include) {
      for (const r of resources) {
        for (const path of inc.param.referencePaths ?? []) {
          const ref = (r[path] as { reference?: string } | undefined)?.reference;
          const [type, id] = ref?.split('/') ?? [];
          if (!type || !id || (inc.target && inc.target !== type)) continue;
          if (type === 'Patient') goldens.add(id);
          else if (CLINICAL[type]) byType.set(type, (byType.get(type) ?? new Set()).add(id));
        }
      }
    }
    const rows: ResourceRow[] = [];
    for (const [type, ids] of byType) rows.push(...(await db.query<ResourceRow>(`SELECT ${ROW_COLUMNS} FROM resource WHERE resource_type = $1 AND id = ANY($2::text[]) LIMIT ${INCLUDE_LIMIT}`, [type, [...ids]])).rows);
    return { goldens: [...goldens].slice(0, INCLUDE_LIMIT), rows };
  };

  /** Resources a `_revinclude` adds: those whose reference parameter points at the page. */
  const revIncluded = async (search: ParsedSearch, refs: string[]): Promise<ResourceRow[]> => {
    if (!refs.length) return [];
    const rows: ResourceRow[] = [];
    for (const rev of search.revinclude) {
      if (!CLINICAL[rev.source]) continue;
      const sub: ParsedSearch = { type: rev.source, clauses: [{ def: rev.param, values: refs }], count: INCLUDE_LIMIT, offset: 0, sort: [], include: [], revinclude: [], used: [], ignored: [] };
      rows.push(...(await clinicalSearch(sub)).items);
    }
    return rows;
  };

  const goldensById = async (ids: string[]): Promise<Array<Record<string, unknown>>> => {
    const versions = await currentGoldenVersions(db, ids);
    const out = [];
    for (const id of ids) {
      const g = await goldenPatient(db, id);
      if (g) out.push(goldenToFhir(g, versions.get(id)));
    }
    return out;
  };

  const searchBundle = (req: Request, search: ParsedSearch, page: Page<unknown>, total: number | undefined, entries: Array<{ resource: Record<string, unknown>; mode: 'match' | 'include' }>) => ({
    resourceType: 'Bundle',
    type: 'searchset',
    ...(total !== undefined ? { total } : {}),
    link: pageLinks(req, search, page.hasMore),
    entry: search.summary === 'count' ? [] : entries.map((e) => ({ fullUrl: `${base(req)}/${e.resource.resourceType}/${e.resource.id}`, resource: subset(e.resource, search.summary, search.elements), search: { mode: e.mode } })),
  });

  router.get('/metadata', (_req, res) => sendFhir(res, capability));

  router.get('/AuditEvent', requireScope('admin'), async (req, res) => {
    const search = parse(req, 'AuditEvent');
    const p = new SqlParams();
    const where = await criteria(search, p, chainIds);
    const from = `FROM audit_event ${where.length ? `WHERE ${where.join(' AND ')}` : ''}`;
    const rows = await db.query<{ id: number; at: Date; actor: string; action: string; entity_type: string; entity_id: string; patient_key: string | null }>(
      `SELECT id, at, actor, action, entity_type, entity_id, patient_key ${from} ORDER BY ${orderBy(search, 'id DESC', 'id DESC')} LIMIT ${search.count + 1} OFFSET ${search.offset}`,
      p.values,
    );
    const items = rows.rows.slice(0, search.count);
    const page = { items, hasMore: rows.rows.length > search.count, from, params: p.values };
    // The audit trail names patients: reading it is itself a read of their data, recorded once per
    // patient the page names (and once without a patient when it names none).
    const asked = search.clauses.filter((c) => c.def.name === 'patient').flatMap((c) => c.values.map((v) => referenceId(v, 'Patient') ?? v));
    await recordAuditForPatients(db, { actor: req.principal!.name, action: 'search', entityType: 'AuditEvent', entityId: 'search', detail: { via: 'fhir', path: req.path, query: search.used, found: items.length } }, [...items.map((a) => a.patient_key), ...asked]);
    const total = await totalOf(search, page, search.clauses.some((c) => c.def.selective));
    sendFhir(
      res,
      searchBundle(
        req,
        search,
        page,
        total,
        items.map((a) => ({
          mode: 'match' as const,
          resource: {
            resourceType: 'AuditEvent',
            id: String(a.id),
            type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
            subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: a.action }],
            action: a.action === 'read' || a.action === 'search' ? 'R' : 'E',
            recorded: a.at.toISOString(),
            outcome: '0',
            agent: [{ who: { display: a.actor }, requestor: true }],
            source: { observer: { display: 'yilian-hub' } },
            entity: [
              { what: { reference: a.entity_type === 'Patient' || a.entity_type === 'Bundle' ? undefined : `${a.entity_type}/${a.entity_id}`, display: `${a.entity_type} ${a.entity_id}` } },
              ...(a.patient_key ? [{ what: { reference: a.patient_key.includes('|') ? undefined : `Patient/${a.patient_key}`, display: a.patient_key }, role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1' } }] : []),
            ],
          },
        })),
      ),
    );
  });

  router.use(requireScope('patient.read'));

  // History of a whole type or of the server is not kept in a form worth serving (before `/:type/:id`).
  const served = ['Patient', ...Object.keys(CLINICAL), ...SHARED_RESOURCE_TYPES, 'AuditEvent'];
  const noHistory = (_req: Request, res: Response) => sendClientError(res, 404, 'not-supported', 'type-level and system-level _history are not supported: ask for one resource\'s (Type/id/_history)', undefined, true);
  router.get('/_history', noHistory);
  for (const type of served) router.get(`/${type}/_history`, noHistory);

  router.post('/Patient/\\$match', async (req, res) => {
    const body = req.body as { resourceType?: string; parameter?: Array<{ name: string; resource?: Record<string, unknown>; valueBoolean?: boolean; valueInteger?: number }> };
    if (body?.resourceType !== 'Parameters') throw new HubError('invalid', 'body must be a Parameters resource with a `resource` Patient', 'body');
    const patient = body.parameter?.find((p) => p.name === 'resource')?.resource as
      | { resourceType?: string; name?: Array<{ family?: string; given?: string[]; text?: string }>; birthDate?: string; gender?: string; identifier?: Array<{ system?: string; value?: string }>; telecom?: Array<{ system?: string; value?: string }>; address?: Array<{ text?: string; line?: string[]; city?: string }> }
      | undefined;
    if (patient?.resourceType !== 'Patient') throw new HubError('invalid', 'parameter `resource` must be a Patient', 'resource');
    const onlyCertain = body.parameter?.find((p) => p.name === 'onlyCertainMatches')?.valueBoolean === true;
    const count = body.parameter?.find((p) => p.name === 'count')?.valueInteger ?? 10;
    // The same reading as a FHIR member's Patient in the pipeline: identifiers through the identity
    // table, phone, e-mail, address, city, postcode (a record built here would read less).
    const record = recordOfSource({ member_id: '$match', mrn: '', demographics: { ...patientDemographics(patient as Patient) } as Record<string, string>, patient: patient as SourceRow['patient'] });
    const matches = (await matchPerson(db, record, Math.min(count, 50))).filter((m) => !onlyCertain || m.score.outcome === 'MATCH');
    const entries = [];
    for (const m of matches) {
      const g = await goldenPatient(db, m.goldenId);
      if (!g) continue;
      const grade = m.score.outcome === 'MATCH' ? 'certain' : m.score.outcome === 'POSSIBLE_MATCH' ? 'possible' : 'certainly-not';
      entries.push({
        fullUrl: `${base(req)}/Patient/${g.id}`,
        resource: goldenToFhir(g),
        search: {
          mode: 'match',
          score: Math.round(m.score.probability * 10000) / 10000,
          extension: [
            { url: 'http://hl7.org/fhir/StructureDefinition/match-grade', valueCode: grade },
            { url: 'https://yilian.example/fhir/StructureDefinition/match-breakdown', valueString: JSON.stringify({ weight: m.score.weight, rule: m.score.rule, fields: m.score.fields.filter((f) => f.level !== null) }) },
          ],
        },
      });
    }
    await audit(req, 'search', 'Patient', '$match', entries.map((e) => e.resource.id as string));
    sendFhir(res, { resourceType: 'Bundle', type: 'searchset', total: entries.length, entry: entries });
  });

  router.get('/Patient/:id/\\$everything', async (req, res) => {
    const id = String(req.params.id);
    const goldenId = await resolveGolden(db, id);
    if (!goldenId) return notFound(res, `Patient/${id} (a golden patient)`);
    const golden = (await goldenPatient(db, goldenId))!;
    const refs = golden.sources.filter((s) => s.patientResourceId).map((s) => `Patient/${s.patientResourceId}`);
    const types = queryOf(req).get('_type')?.split(',') ?? null;
    // The audit is written alongside the read (both before the answer): its commit waits for the WAL
    // flush, the longest part of this request on a busy disk. (Presenting the resources in SQL
    // instead of here was measured slower: jsonb rebuilding of 1,000 resources costs 20 ms there.)
    const [rows, versions] = await Promise.all([
      refs.length
        ? db.query<ResourceRow>(
            `SELECT ${ROW_COLUMNS} FROM resource WHERE ${SUBJECT} = ANY($1::text[]) AND ($2::text[] IS NULL OR resource_type = ANY($2::text[])) ORDER BY resource_type, id`,
            [refs, types],
            'fhir_everything',
          )
        : Promise.resolve({ rows: [] as ResourceRow[] }),
      currentGoldenVersions(db, [goldenId]),
      audit(req, 'read', 'Patient', `${goldenId}/$everything`, [goldenId], { types }),
    ]);
    const map = new Map(golden.sources.filter((s) => s.patientResourceId).map((s) => [s.patientResourceId!, goldenId]));
    sendFhir(res, {
      resourceType: 'Bundle',
      type: 'searchset',
      total: rows.rows.length + 1,
      link: [{ relation: 'self', url: `${base(req)}${req.path}` }],
      entry: [
        { fullUrl: `${base(req)}/Patient/${goldenId}`, resource: goldenToFhir(golden, versions.get(goldenId)), search: { mode: 'match' } },
        ...rows.rows.map((r) => ({ fullUrl: `${base(req)}/${r.resource_type}/${r.id}`, resource: present(r, map), search: { mode: 'include' } })),
      ],
    });
  });

  // ---- Patient: golden patients (and, by id, a member's own Patient record) ----

  router.get('/Patient/:id/_history/:vid', async (req, res) => {
    const id = String(req.params.id);
    const vid = versionParam(String(req.params.vid));
    const golden = await goldenPatient(db, id);
    if (!golden) return vreadResource(req, res, 'Patient', id, vid);
    const [v] = await goldenVersions(db, id, vid);
    if (!v) return notFound(res, `Patient/${id}/_history/${vid}`);
    await audit(req, 'read', 'Patient', `${id}/_history/${vid}`, [golden.mergedInto ?? id]);
    res.set('ETag', `W/"${v.version}"`);
    sendFhir(res, goldenToFhir(goldenAt(golden, v), { version: v.version, at: v.recordedAt }));
  });

  router.get('/Patient/:id/_history', async (req, res) => {
    const id = String(req.params.id);
    const golden = await goldenPatient(db, id);
    if (!golden) return historyResource(req, res, 'Patient', id);
    const versions = await goldenVersions(db, id);
    await audit(req, 'read', 'Patient', `${id}/_history`, [golden.mergedInto ?? id]);
    const oldest = versions[versions.length - 1]?.version;
    sendFhir(res, historyBundle(`${base(req)}${req.path}`, versions.map((v) => ({ resource: goldenToFhir(goldenAt(golden, v), { version: v.version, at: v.recordedAt }), version: v.version, at: v.recordedAt, created: v.version === 1 && oldest === 1 }))));
  });

  router.get('/Patient/:id', async (req, res) => {
    const id = String(req.params.id);
    const golden = await goldenPatient(db, id);
    if (golden) {
      const version = (await currentGoldenVersions(db, [id])).get(id);
      await audit(req, 'read', 'Patient', id, [golden.mergedInto ?? id]);
      if (version) res.set('ETag', `W/"${version.version}"`).set('Last-Modified', version.at.toUTCString());
      return sendFhir(res, readView(req, goldenToFhir(golden, version)));
    }
    // A member's own Patient record: shown as stored, linked to its golden patient.
    const source = await db.query<ResourceRow & { golden_id: string | null }>(
      `SELECT r.resource_type, r.id, r.member_id, r.version, r.content, r.updated_at, l.golden_id FROM resource r
         LEFT JOIN mpi_source s ON s.patient_resource_id = r.id LEFT JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH'
        WHERE r.resource_type = 'Patient' AND r.id = $1 LIMIT 1`,
      [id],
    );
    const row = source.rows[0];
    if (!row) return notFound(res, `Patient/${id}`);
    await audit(req, 'read', 'Patient', id, row.golden_id ? [row.golden_id] : [`${row.member_id}|${id}`]);
    const content = present(row, new Map());
    const link = [...(((content.link as unknown[]) ?? []) as object[]), ...(row.golden_id ? [{ other: { reference: `Patient/${row.golden_id}` }, type: 'refer' }] : [])];
    res.set('ETag', `W/"${row.version}"`);
    sendFhir(res, readView(req, { ...content, ...(link.length ? { link } : {}) }));
  });

  router.get('/Patient', async (req, res) => {
    const search = parse(req, 'Patient');
    const page = await goldenSearch(search);
    // Counting golden patients is cheap (one row a person, no jsonb): Bundle.total unless _total=none.
    const total = await totalOf(search, page, true);
    const matches = search.summary === 'count' ? [] : await goldensById(page.items);
    const rev = search.summary === 'count' ? [] : await revIncluded(search, page.items.map((id) => `Patient/${id}`));
    const revMap = await goldenBySourceOf(db, rev);
    // Audited: the patients on this page (the included records are theirs), nobody else.
    await audit(req, 'search', 'Patient', 'search', matches.map((r) => r.id as string), { query: search.used, ignored: search.ignored });
    sendFhir(res, searchBundle(req, search, page, total, [...matches.map((resource) => ({ resource, mode: 'match' as const })), ...rev.map((r) => ({ resource: present(r, revMap), mode: 'include' as const }))]));
  });

  // ---- the clinical types ----

  async function vreadResource(req: Request, res: Response, type: string, id: string, vid: number): Promise<void> {
    const [row] = await resourceVersions(db, type, id, vid);
    if (!row) return notFound(res, `${type}/${id}/_history/${vid}`);
    const map = await goldenBySourceOf(db, [row]);
    await audit(req, 'read', type, `${id}/_history/${vid}`, patientsOf([row], map));
    res.set('ETag', `W/"${row.version}"`);
    sendFhir(res, present(row, map));
  }

  async function historyResource(req: Request, res: Response, type: string, id: string): Promise<void> {
    const rows = await resourceVersions(db, type, id);
    if (!rows.length) return notFound(res, `${type}/${id}`);
    const map = await goldenBySourceOf(db, rows);
    await audit(req, 'read', type, `${id}/_history`, patientsOf(rows, map));
    const oldest = rows[rows.length - 1]!.version;
    sendFhir(res, historyBundle(`${base(req)}${req.path}`, rows.map((r) => ({ resource: present(r, map), version: r.version, at: r.updated_at, created: r.version === 1 && oldest === 1 }))));
  }

  for (const type of Object.keys(CLINICAL)) {
    router.get(`/${type}`, async (req, res) => {
      const search = parse(req, type);
      const page = await clinicalSearch(search);
      const total = await totalOf(search, page, cheapToCount(search));
      const rows = search.summary === 'count' ? [] : page.items;
      const map = await goldenBySourceOf(db, rows);
      const matches = rows.map((r) => present(r, map));
      const inc = await included(search, matches);
      const rev = await revIncluded(search, rows.map((r) => `${type}/${r.id}`));
      const extraMap = await goldenBySourceOf(db, [...inc.rows, ...rev]);
      const goldens = await goldensById(inc.goldens);
      await audit(req, 'search', type, 'search', [...patientsOf(rows, map), ...patientsOf([...inc.rows, ...rev], extraMap), ...inc.goldens], { query: search.used, ignored: search.ignored });
      sendFhir(
        res,
        searchBundle(req, search, page, total, [
          ...matches.map((resource) => ({ resource, mode: 'match' as const })),
          ...[...inc.rows, ...rev].map((r) => ({ resource: present(r, extraMap), mode: 'include' as const })),
          ...goldens.map((resource) => ({ resource, mode: 'include' as const })),
        ]),
      );
    });
    router.get(`/${type}/:id/_history/:vid`, (req, res) => vreadResource(req, res, type, String(req.params.id), versionParam(String(req.params.vid))));
    router.get(`/${type}/:id/_history`, (req, res) => historyResource(req, res, type, String(req.params.id)));
    router.get(`/${type}/:id`, async (req, res) => {
      const rows = await db.query<ResourceRow>(`SELECT ${ROW_COLUMNS} FROM resource WHERE resource_type = $1 AND id = $2`, [type, String(req.params.id)]);
      const row = rows.rows[0];
      if (!row) return notFound(res, `${type}/${req.params.id}`);
      const map = await goldenBySourceOf(db, [row]);
      await audit(req, 'read', type, row.id, [...map.values()]);
      res.set('ETag', `W/"${row.version}"`).set('Last-Modified', row.updated_at.toUTCString());
      sendFhir(res, readView(req, present(row, map)));
    });
  }

  // Shared resources (devices, practitioners, wards…) as unified records with stable ids (hub/resources).
  unifiedResourceRoutes(router, db, tables);

  // $validate on every type served (api/fhirValidate.ts).
  for (const type of served) router.post(`/${type}/\\$validate`, (req, res) => sendFhir(res, validateOperation(type, req)));

  // A type served, an interaction not offered (create, update, patch, delete): 405, not 404.
  for (const type of served) for (const path of [`/${type}`, `/${type}/:id`, `/${type}/:id/_history`, `/${type}/:id/_history/:vid`]) router.all(path, methodNotAllowed(['GET']));

  router.use((_req: Request, res: Response) => sendClientError(res, 404, 'not-supported', 'no such FHIR interaction', undefined, true));
  // Every failure as a bare OperationOutcome; database text only in the log (api/errors.ts).
  router.use(errorHandler(log, () => true));
  return router;
}
