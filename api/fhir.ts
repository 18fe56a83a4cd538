/**
 * The FHIR R4 read API over the unified record: golden patients (`Patient/{id}` with a `link` to
 * each member's source Patient), `Patient/$match`, `Patient/{id}/$everything`, and search on the
 * common parameters for the clinical types in the `resource` table. Every clinical resource is
 * returned referencing the golden patient, with its member's own Patient reference kept in an
 * extension. Needs scope `patient.read`; `AuditEvent` needs `admin`. Every read or search that
 * returns patient data writes one audit event per patient returned (hub/audit.ts). Owns no
 * tables; never writes anything but audit events.
 */
import express, { type Request, type Response } from 'express';
import type { ApiContext } from './context';
import type { Sql } from '../hub/sql';
import { requireScope } from './auth';
import { recordAudit, recordAuditForPatients } from '../hub/audit';
import { HubError } from '../mappings/outcome';
import { goldenPatient, matchPerson, resolveGolden, type GoldenPatient } from '../hub/mpi/review';
import type { PersonRecord } from '../hub/mpi/features';
import { SHARED_RESOURCE_TYPES } from '../hub/resources/rules';
import { unifiedResourceRoutes } from './fhirShared';
import { intParam } from './input';
import { errorHandler, stderrErrorLog, type ErrorLog } from './errors';

const RESIDENT_ID_SYSTEM = 'urn:oid:2.16.156.10011.1.3';
export const GOLDEN_SYSTEM = 'https://yilian.example/fhir/sid/enterprise-patient';
export const SOURCE_PATIENT_URL = 'https://yilian.example/fhir/StructureDefinition/source-patient';

/** Where each searchable type keeps its date, code and category. */
const CLINICAL: Record<string, { date: string[]; code: string; category?: string }> = {
  Encounter: { date: ['period,start'], code: '$.type[*].coding[*]', category: '$.class' },
  Condition: { date: ['onsetDateTime', 'recordedDate'], code: '$.code.coding[*]', category: '$.category[*].coding[*]' },
  Observation: { date: ['effectiveDateTime', 'effectivePeriod,start', 'issued'], code: '$.code.coding[*]', category: '$.category[*].coding[*]' },
  DiagnosticReport: { date: ['effectiveDateTime', 'effectivePeriod,start', 'issued'], code: '$.code.coding[*]', category: '$.category[*].coding[*]' },
  Procedure: { date: ['performedDateTime', 'performedPeriod,start'], code: '$.code.coding[*]', category: '$.category.coding[*]' },
  ServiceRequest: { date: ['authoredOn', 'occurrenceDateTime'], code: '$.code.coding[*]', category: '$.category[*].coding[*]' },
  ImagingStudy: { date: ['started'], code: '$.procedureCode[*].coding[*]', category: '$.modality[*]' },
  Immunization: { date: ['occurrenceDateTime', 'recorded'], code: '$.vaccineCode.coding[*]' },
  ChargeItem: { date: ['occurrenceDateTime', 'occurrencePeriod,start', 'enteredDate'], code: '$.code.coding[*]' },
  DocumentReference: { date: ['date'], code: '$.type.coding[*]', category: '$.category[*].coding[*]' },
};

const SUBJECT = `coalesce(content->'subject'->>'reference', content->'patient'->>'reference')`;


function outcome(res: Response, status: number, code: string, text: string): void {
  res.status(status).type('application/fhir+json').json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] });
}

function fhir(res: Response, body: unknown): void {
  res.type('application/fhir+json').json(body);
}

/** Golden patient → FHIR Patient: survivorship values, every identifier, a link per source record. */
export function goldenToFhir(g: GoldenPatient): Record<string, unknown> {
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
    meta: { tag: [{ system: 'https://yilian.example/fhir/CodeSystem/record-kind', code: 'golden' }] },
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

/** A row of the `resource` table as the FHIR API reads it. */
export interface ResourceRow {
  resource_type: string;
  id: string;
  member_id: string;
  version: number;
  content: Record<string, unknown>;
  updated_at: Date;
}

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

/** The members' Patient resource ids of a golden patient (what clinical resources reference). */
async function sourceRefs(sql: Sql, goldenId: string): Promise<string[]> {
  const rows = await sql.query<{ patient_resource_id: string }>(
    `SELECT s.patient_resource_id FROM mpi_link l JOIN mpi_source s USING (member_id, mrn) WHERE l.golden_id = $1 AND l.state = 'MATCH' AND s.patient_resource_id IS NOT NULL`,
    [goldenId],
  );
  return rows.rows.map((r) => `Patient/${r.patient_resource_id}`);
}

const PREFIX = /^(eq|ne|gt|lt|ge|le|sa|eb)?(.*)$/;

/** A date-like search value against an ISO text expression (prefixes eq, gt, lt, ge, le; eq matches by prefix). */
function dateClause(expr: string, raw: string, params: unknown[]): string {
  const [, prefix = 'eq', value = ''] = PREFIX.exec(raw)!;
  if (!/^\d{4}(-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?$/.test(value)) throw new HubError('invalid', `date value ${raw} is not a FHIR date`, 'date');
  params.push(value);
  const p = `$${params.length}`;
  switch (prefix) {
    case 'gt':
    case 'sa':
      return `${expr} > ${p} AND NOT starts_with(${expr}, ${p})`;
    case 'lt':
    case 'eb':
      return `${expr} < ${p}`;
    case 'ge':
      return `(${expr} >= ${p} OR starts_with(${expr}, ${p}))`;
    case 'le':
      return `(${expr} <= ${p} OR starts_with(${expr}, ${p}))`;
    case 'ne':
      return `NOT starts_with(${expr}, ${p})`;
    default:
      return `starts_with(${expr}, ${p})`;
  }
}

function dateExpr(paths: string[]): string {
  return `coalesce(${paths.map((p) => `content #>> '{${p}}'`).join(', ')})`;
}

/** token `system|code`, `|code`, `code`: a JSONPath test on the coding array at `path`. */
function tokenClause(path: string, raw: string, params: unknown[]): string {
  const ors = raw.split(',').map((one) => {
    const bar = one.indexOf('|');
    const system = bar >= 0 ? one.slice(0, bar) : undefined;
    const code = bar >= 0 ? one.slice(bar + 1) : one;
    params.push(JSON.stringify(system ? { c: code, s: system } : { c: code }));
    return `jsonb_path_exists(content, '${path} ? (@.code == $c${system ? ' && @.system == $s' : ''})', $${params.length}::jsonb)`;
  });
  return `(${ors.join(' OR ')})`;
}

function single(req: Request, name: string): string | undefined {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) return String(v[v.length - 1]);
  return String(v);
}

function all(req: Request, name: string): string[] {
  const v = req.query[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

/** `_count` and `_offset`: integers JavaScript holds exactly (a larger one would be rounded, then overflow bigint in SQL). */
function pageSize(req: Request): { count: number; offset: number } {
  return { count: intParam(req.query._count, '_count', 1, 500, 50), offset: intParam(req.query._offset, '_offset', 0, Number.MAX_SAFE_INTEGER, 0) };
}

function selfUrl(req: Request, overrides: Record<string, string>): string {
  const url = new URL(req.originalUrl, `${req.protocol}://${req.get('host') ?? 'localhost'}`);
  for (const [k, v] of Object.entries(overrides)) url.searchParams.set(k, v);
  return url.toString();
}

/** What this server offers (open: served by api/server.ts before authentication). */
export function capabilityStatement(): Record<string, unknown> {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{ mode: 'server', resource: [{ type: 'Patient', operation: [{ name: 'match' }, { name: 'everything' }] }, ...Object.keys(CLINICAL).map((type) => ({ type })), ...SHARED_RESOURCE_TYPES.map((type) => ({ type })), { type: 'AuditEvent' }] }],
  };
}

export function fhirRouter(runtime: ApiContext, log: ErrorLog = stderrErrorLog): express.Router {
  const db = runtime.db;
  const router = express.Router();
  router.use(express.json({ type: ['application/json', 'application/fhir+json'], limit: '2mb' }));

  // No patient-index sync on reads: the pipeline links each source patient as its message is
  // processed (pipeline/stages/identify.ts), and `yilian serve` syncs every 5 s as a safety net.

  const audit = async (req: Request, action: 'read' | 'search', entityType: string, entityId: string, patients: Iterable<string>, detail: Record<string, unknown> = {}) => {
    const list = [...new Set(patients)];
    for (const p of list.length ? list : [null]) await recordAudit(db, { actor: req.principal!.name, action, entityType, entityId, patientKey: p, detail: { ...detail, via: 'fhir', path: req.path } });
  };

  router.get('/metadata', (_req, res) => fhir(res, capabilityStatement()));

  router.get('/AuditEvent', requireScope('admin'), async (req, res) => {
    const { count, offset } = pageSize(req);
    const params: unknown[] = [];
    const where: string[] = [];
    const patient = single(req, 'patient')?.replace(/^Patient\//, '');
    if (patient) {
      params.push(patient);
      where.push(`patient_key = $${params.length}`);
    }
    const agent = single(req, 'agent');
    if (agent) {
      params.push(agent);
      where.push(`actor = $${params.length}`);
    }
    const rows = await db.query<{ id: number; at: Date; actor: string; action: string; entity_type: string; entity_id: string; patient_key: string | null }>(
      `SELECT id, at, actor, action, entity_type, entity_id, patient_key FROM audit_event ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${count + 1} OFFSET ${offset}`,
      params,
    );
    const page = rows.rows.slice(0, count);
    // The audit trail names patients: reading it is itself a read of their data, recorded once per
    // patient the page names (and once without a patient when it names none).
    await recordAuditForPatients(db, { actor: req.principal!.name, action: 'search', entityType: 'AuditEvent', entityId: 'search', detail: { via: 'fhir', path: req.path, query: req.query, found: page.length } }, [
      ...page.map((a) => a.patient_key),
      patient ?? null,
    ]);
    fhir(res, {
      resourceType: 'Bundle',
      type: 'searchset',
      link: [{ relation: 'self', url: selfUrl(req, {}) }, ...(rows.rows.length > count ? [{ relation: 'next', url: selfUrl(req, { _offset: String(offset + count) }) }] : [])],
      entry: page.map((a) => ({
        resource: {
          resourceType: 'AuditEvent',
          id: String(a.id),
          type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
          action: a.action === 'read' || a.action === 'search' ? 'R' : 'E',
          recorded: a.at.toISOString(),
          outcome: '0',
          agent: [{ who: { display: a.actor }, requestor: true }],
          source: { observer: { display: 'yilian-hub' } },
          entity: [
            { what: { reference: a.entity_type === 'Patient' || a.entity_type === 'Bundle' ? undefined : `${a.entity_type}/${a.entity_id}`, display: `${a.entity_type} ${a.entity_id}` } },
            ...(a.patient_key ? [{ what: { reference: a.patient_key.includes('|') ? undefined : `Patient/${a.patient_key}`, display: a.patient_key }, role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1' } }] : []),
          ],
          subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: a.action }],
        },
      })),
    });
  });

  router.use(requireScope('patient.read'));

  router.post('/Patient/\\$match', async (req, res) => {
    const body = req.body as { resourceType?: string; parameter?: Array<{ name: string; resource?: Record<string, unknown>; valueBoolean?: boolean; valueInteger?: number }> };
    if (body?.resourceType !== 'Parameters') return outcome(res, 400, 'invalid', 'body must be a Parameters resource with a `resource` Patient');
    const patient = body.parameter?.find((p) => p.name === 'resource')?.resource as
      | { resourceType?: string; name?: Array<{ family?: string; given?: string[]; text?: string }>; birthDate?: string; gender?: string; identifier?: Array<{ system?: string; value?: string }>; telecom?: Array<{ system?: string; value?: string }>; address?: Array<{ text?: string; line?: string[]; city?: string }> }
      | undefined;
    if (patient?.resourceType !== 'Patient') return outcome(res, 400, 'invalid', 'parameter `resource` must be a Patient');
    const onlyCertain = body.parameter?.find((p) => p.name === 'onlyCertainMatches')?.valueBoolean === true;
    const count = body.parameter?.find((p) => p.name === 'count')?.valueInteger ?? 10;
    const name = patient.name?.[0];
    const record: PersonRecord = {
      id: '$match',
      family: name?.family,
      given: name?.given?.join(''),
      birthDate: patient.birthDate,
      sex: patient.gender,
      residentId: patient.identifier?.find((i) => i.system === RESIDENT_ID_SYSTEM)?.value,
      phone: patient.telecom?.find((t) => t.system === 'phone')?.value,
      address: patient.address?.[0]?.text ?? [...(patient.address?.[0]?.line ?? []), patient.address?.[0]?.city].filter(Boolean).join(''),
    };
    const matches = (await matchPerson(db, record, Math.min(count, 50))).filter((m) => !onlyCertain || m.score.outcome === 'MATCH');
    const entries = [];
    for (const m of matches) {
      const g = await goldenPatient(db, m.goldenId);
      if (!g) continue;
      const grade = m.score.outcome === 'MATCH' ? 'certain' : m.score.outcome === 'POSSIBLE_MATCH' ? 'possible' : 'certainly-not';
      entries.push({
        fullUrl: `Patient/${g.id}`,
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
    fhir(res, { resourceType: 'Bundle', type: 'searchset', total: entries.length, entry: entries });
  });

  router.get('/Patient/:id/\\$everything', async (req, res) => {
    const id = String(req.params.id);
    const goldenId = await resolveGolden(db, id);
    if (!goldenId) return outcome(res, 404, 'not-found', `Patient/${id} is not a golden patient`);
    const golden = (await goldenPatient(db, goldenId))!;
    const refs = golden.sources.filter((s) => s.patientResourceId).map((s) => `Patient/${s.patientResourceId}`);
    const types = single(req, '_type')?.split(',') ?? null;
    // The audit is written alongside the read (both before the answer): its commit waits for the WAL
    // flush, the longest part of this request on a busy disk. (Presenting the resources in SQL
    // instead of here was measured slower: jsonb rebuilding of 1,000 resources costs 20 ms there.)
    const [rows] = await Promise.all([
      refs.length
        ? db.query<ResourceRow>(
            `SELECT resource_type, id, member_id, version, content, updated_at FROM resource WHERE ${SUBJECT} = ANY($1::text[]) AND ($2::text[] IS NULL OR resource_type = ANY($2::text[])) ORDER BY resource_type, id`,
            [refs, types],
            'fhir_everything',
          )
        : Promise.resolve({ rows: [] as ResourceRow[] }),
      audit(req, 'read', 'Patient', `${goldenId}/$everything`, [goldenId], { types }),
    ]);
    const map = new Map(golden.sources.filter((s) => s.patientResourceId).map((s) => [s.patientResourceId!, goldenId]));
    fhir(res, {
      resourceType: 'Bundle',
      type: 'searchset',
      total: rows.rows.length + 1,
      entry: [{ fullUrl: `Patient/${goldenId}`, resource: goldenToFhir(golden), search: { mode: 'match' } }, ...rows.rows.map((r) => ({ fullUrl: `${r.resource_type}/${r.id}`, resource: present(r, map), search: { mode: 'include' } }))],
    });
  });

  router.get('/Patient/:id', async (req, res) => {
    const id = String(req.params.id);
    const golden = await goldenPatient(db, id);
    if (golden) {
      await audit(req, 'read', 'Patient', id, [golden.mergedInto ?? id]);
      return fhir(res, goldenToFhir(golden));
    }
    // A member's own Patient record: shown as stored, linked to its golden patient.
    const source = await db.query<ResourceRow & { golden_id: string | null }>(
      `SELECT r.resource_type, r.id, r.member_id, r.version, r.content, r.updated_at, l.golden_id FROM resource r
         LEFT JOIN mpi_source s ON s.patient_resource_id = r.id LEFT JOIN mpi_link l ON l.member_id = s.member_id AND l.mrn = s.mrn AND l.state = 'MATCH'
        WHERE r.resource_type = 'Patient' AND r.id = $1 LIMIT 1`,
      [id],
    );
    const row = source.rows[0];
    if (!row) return outcome(res, 404, 'not-found', `Patient/${id} not found`);
    await audit(req, 'read', 'Patient', id, row.golden_id ? [row.golden_id] : [`${row.member_id}|${id}`]);
    const content = present(row, new Map());
    const link = [...(((content.link as unknown[]) ?? []) as object[]), ...(row.golden_id ? [{ other: { reference: `Patient/${row.golden_id}` }, type: 'refer' }] : [])];
    fhir(res, { ...content, ...(link.length ? { link } : {}) });
  });

  router.get('/Patient', async (req, res) => {
    const { count, offset } = pageSize(req);
    const params: unknown[] = [];
    const where: string[] = [`g.state <> 'merged'`];
    const identifier = single(req, 'identifier');
    if (identifier) {
      const bar = identifier.indexOf('|');
      const system = bar >= 0 ? identifier.slice(0, bar) : '';
      const value = bar >= 0 ? identifier.slice(bar + 1) : identifier;
      params.push(value);
      const v = `$${params.length}`;
      const member = /^urn:yilian:(.+):mrn$/.exec(system)?.[1];
      if (system === GOLDEN_SYSTEM) where.push(`g.id = ${v}`);
      else if (member) {
        params.push(member);
        where.push(`EXISTS (SELECT 1 FROM mpi_link l WHERE l.golden_id = g.id AND l.state = 'MATCH' AND l.mrn = ${v} AND l.member_id = $${params.length})`);
      } else if (system === RESIDENT_ID_SYSTEM) where.push(`g.survivor->>'residentId' = upper(${v})`);
      else where.push(`(g.id = ${v} OR g.survivor->>'residentId' = upper(${v}) OR EXISTS (SELECT 1 FROM mpi_link l WHERE l.golden_id = g.id AND l.state = 'MATCH' AND l.mrn = ${v}))`);
    }
    const family = single(req, 'family');
    if (family) {
      params.push(family);
      where.push(`g.survivor->>'family' = $${params.length}`);
    }
    const birthdate = single(req, 'birthdate');
    if (birthdate) {
      params.push(birthdate.replace(/-/g, ''));
      where.push(`g.survivor->>'birthDate' = $${params.length}`);
    }
    const id = single(req, '_id');
    if (id) {
      params.push(id);
      where.push(`g.id = $${params.length}`);
    }
    const lastUpdated = all(req, '_lastUpdated');
    for (const v of lastUpdated) where.push(dateClause(`to_char(g.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`, v, params));
    const rows = await db.query<{ id: string }>(`SELECT g.id FROM mpi_golden g WHERE ${where.join(' AND ')} ORDER BY g.created_at, g.id LIMIT ${count + 1} OFFSET ${offset}`, params);
    const page = rows.rows.slice(0, count);
    const entries = [];
    for (const r of page) entries.push({ fullUrl: `Patient/${r.id}`, resource: goldenToFhir((await goldenPatient(db, r.id))!), search: { mode: 'match' } });
    await audit(req, 'search', 'Patient', 'search', page.map((r) => r.id), { query: req.query });
    fhir(res, {
      resourceType: 'Bundle',
      type: 'searchset',
      link: [{ relation: 'self', url: selfUrl(req, {}) }, ...(rows.rows.length > count ? [{ relation: 'next', url: selfUrl(req, { _offset: String(offset + count) }) }] : [])],
      entry: entries,
    });
  });

  for (const type of Object.keys(CLINICAL)) {
    const spec = CLINICAL[type]!;
    router.get(`/${type}`, async (req, res) => {
        const { count, offset } = pageSize(req);
      const params: unknown[] = [type];
      const where = [`resource_type = $1`];
      const patient = single(req, 'patient') ?? single(req, 'subject');
      if (patient) {
        const goldenId = await resolveGolden(db, patient.replace(/^Patient\//, ''));
        const refs = goldenId ? await sourceRefs(db, goldenId) : [patient.startsWith('Patient/') ? patient : `Patient/${patient}`];
        params.push(refs);
        where.push(`${SUBJECT} = ANY($${params.length}::text[])`);
      }
      const identifier = single(req, 'identifier');
      if (identifier) {
        const bar = identifier.indexOf('|');
        params.push(JSON.stringify([bar >= 0 && bar > 0 ? { system: identifier.slice(0, bar), value: identifier.slice(bar + 1) } : { value: bar >= 0 ? identifier.slice(bar + 1) : identifier }]));
        where.push(`content->'identifier' @> $${params.length}::jsonb`);
      }
      const code = single(req, 'code');
      if (code) where.push(tokenClause(spec.code, code, params));
      const category = single(req, 'category');
      if (category) {
        if (!spec.category) throw new HubError('invalid', `${type} has no category search parameter`, 'category');
        where.push(tokenClause(spec.category, category, params));
      }
      const status = single(req, 'status');
      if (status) {
        params.push(status.split(','));
        where.push(`content->>'status' = ANY($${params.length}::text[])`);
      }
      for (const d of all(req, 'date')) where.push(dateClause(dateExpr(spec.date), d, params));
      for (const d of all(req, '_lastUpdated')) where.push(dateClause(`to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`, d, params));
      const known = new Set(['patient', 'subject', 'identifier', 'code', 'category', 'status', 'date', '_lastUpdated', '_count', '_offset']);
      const unknown = Object.keys(req.query).filter((k) => !known.has(k));
      if (unknown.length) throw new HubError('invalid', `unsupported search parameter ${unknown.join(', ')}`, unknown[0]);
      const rows = await db.query<ResourceRow>(
        `SELECT resource_type, id, member_id, version, content, updated_at FROM resource WHERE ${where.join(' AND ')} ORDER BY updated_at DESC, id LIMIT ${count + 1} OFFSET ${offset}`,
        params,
      );
      const page = rows.rows.slice(0, count);
      const map = await goldenBySourceOf(db, page);
      await audit(req, 'search', type, 'search', [...new Set(page.map((r) => map.get(((r.content.subject ?? r.content.patient) as { reference?: string } | undefined)?.reference?.slice(8) ?? '')).filter((g): g is string => !!g))], { query: req.query });
      fhir(res, {
        resourceType: 'Bundle',
        type: 'searchset',
        link: [{ relation: 'self', url: selfUrl(req, {}) }, ...(rows.rows.length > count ? [{ relation: 'next', url: selfUrl(req, { _offset: String(offset + count) }) }] : [])],
        entry: page.map((r) => ({ fullUrl: `${r.resource_type}/${r.id}`, resource: present(r, map), search: { mode: 'match' } })),
      });
    });
    router.get(`/${type}/:id`, async (req, res) => {
        const rows = await db.query<ResourceRow>(`SELECT resource_type, id, member_id, version, content, updated_at FROM resource WHERE resource_type = $1 AND id = $2`, [type, String(req.params.id)]);
      const row = rows.rows[0];
      if (!row) return outcome(res, 404, 'not-found', `${type}/${req.params.id} not found`);
      const map = await goldenBySourceOf(db, [row]);
      await audit(req, 'read', type, row.id, [...map.values()]);
      fhir(res, present(row, map));
    });
  }

  // Shared resources (devices, practitioners, wards…) as unified records with stable ids (hub/resources).
  unifiedResourceRoutes(router, db);

  router.use((_req: Request, res: Response) => outcome(res, 404, 'not-supported', 'no such FHIR interaction'));
  // Every failure as a bare OperationOutcome; database text only in the log (api/errors.ts).
  router.use(errorHandler(log, () => true));
  return router;
}
