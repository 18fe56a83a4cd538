/**
 * The search parameters of every type the FHIR API serves, one table per type: each entry names the
 * parameter, its FHIR type and how it is answered in SQL. Parsing (api/fhirSearch.ts), the queries
 * (api/fhir.ts) and the CapabilityStatement (api/fhirCapability.ts) all read these tables, so what
 * the statement says is what search does.
 *
 * Golden patients (`Patient`) are searched in mpi_golden (alias `g`; names and addresses in
 * fhir_patient_term, api/fhirPatientSearch.ts); the clinical types in `resource` (column `content`); the shared
 * resources through hub/resources (their own `name`/`identifier` matching).
 */
import type { Sql } from '../hub/sql';
import { SHARED_RESOURCE_TYPES } from '../hub/resources/rules';
import { HubError } from '../mappings/outcome';
import { codeOf, dateClause, likeEscape, referenceId, tokenClause, type ParamTables, type SearchParamDef, type SqlParams } from './fhirSearch';
import { searchableAddress, searchableName } from './fhirPatientSearch';

export const RESIDENT_ID_SYSTEM = 'urn:oid:2.16.156.10011.1.3';
export const GOLDEN_SYSTEM = 'https://yilian.example/fhir/sid/enterprise-patient';

/** The subject of a clinical resource (as stored: the member's own Patient). Indexed (resource_subject). */
export const SUBJECT = `coalesce(content->'subject'->>'reference', content->'patient'->>'reference')`;
const UPDATED_ISO = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** Where each clinical type keeps its date, code and category (JSONPath of the codings). */
export const CLINICAL: Record<string, { date: string[]; code: string; codeName?: string; category?: string; categoryName?: string; encounter?: boolean }> = {
  Encounter: { date: ['period,start'], code: '$.type[*].coding[*]', codeName: 'type', category: '$.class', categoryName: 'class' },
  Condition: { date: ['onsetDateTime', 'recordedDate'], code: '$.code.coding[*]', category: '$.category[*].coding[*]', encounter: true },
  Observation: { date: ['effectiveDateTime', 'effectivePeriod,start', 'issued'], code: '$.code.coding[*]', category: '$.category[*].coding[*]', encounter: true },
  DiagnosticReport: { date: ['effectiveDateTime', 'effectivePeriod,start', 'issued'], code: '$.code.coding[*]', category: '$.category[*].coding[*]', encounter: true },
  Procedure: { date: ['performedDateTime', 'performedPeriod,start'], code: '$.code.coding[*]', category: '$.category.coding[*]', encounter: true },
  ServiceRequest: { date: ['authoredOn', 'occurrenceDateTime'], code: '$.code.coding[*]', category: '$.category[*].coding[*]', encounter: true },
  ImagingStudy: { date: ['started'], code: '$.procedureCode[*].coding[*]', codeName: 'procedure-code', category: '$.modality[*]', categoryName: 'modality', encounter: true },
  Immunization: { date: ['occurrenceDateTime', 'recorded'], code: '$.vaccineCode.coding[*]', codeName: 'vaccine-code' },
  ChargeItem: { date: ['occurrenceDateTime', 'occurrencePeriod,start', 'enteredDate'], code: '$.code.coding[*]' },
  DocumentReference: { date: ['date'], code: '$.type.coding[*]', codeName: 'type', category: '$.category[*].coding[*]', encounter: true },
};

/** The golden ids and member Patient references behind reference values (`Patient/x`, `x`): golden ids resolved through merges. */
export async function subjectRefs(db: Sql, values: string[]): Promise<string[]> {
  const ids = values.map((v) => referenceId(v, 'Patient')).filter((v): v is string => !!v);
  if (!ids.length) return [];
  const rows = await db.query<{ ref: string }>(
    `WITH golden AS (SELECT coalesce(merged_into, id) AS id FROM mpi_golden WHERE id = ANY($1::text[]))
     SELECT 'Patient/' || s.patient_resource_id AS ref FROM golden JOIN mpi_link l ON l.golden_id = golden.id AND l.state = 'MATCH' JOIN mpi_source s USING (member_id, mrn) WHERE s.patient_resource_id IS NOT NULL
     UNION SELECT 'Patient/' || x FROM unnest($1::text[]) AS x WHERE x NOT IN (SELECT id FROM mpi_golden)`,
    [ids],
  );
  return rows.rows.map((r) => r.ref);
}

function dateExpr(paths: string[]): string {
  return `coalesce(${paths.map((p) => `content #>> '{${p}}'`).join(', ')})`;
}

/** Golden patients with a term of `kind` LIKE one of `patterns` (fhir_patient_term; a prefix uses its index). */
function termClause(kind: 'name' | 'family' | 'given' | 'address', patterns: string[], p: SqlParams): string {
  return `g.id IN (SELECT t.golden_id FROM fhir_patient_term t WHERE t.kind = '${kind}' AND (${patterns.map((x) => `t.term LIKE ${p.add(x)}`).join(' OR ')}))`;
}

/** A name part against string values: prefix (default), :exact (as stored), :contains. */
function nameClause(kind: 'name' | 'family' | 'given', exact: string, values: string[], modifier: string | undefined, p: SqlParams): string {
  if (modifier === 'exact') return `${exact} = ANY(${p.add(values)}::text[])`;
  return termClause(kind, values.map((v) => (modifier === 'contains' ? `%${likeEscape(searchableName(v))}%` : `${likeEscape(searchableName(v))}%`)), p);
}

const GOLDEN_BIRTH = `(substr(g.survivor->>'birthDate', 1, 4) || '-' || substr(g.survivor->>'birthDate', 5, 2) || '-' || substr(g.survivor->>'birthDate', 7, 2))`;
const GOLDEN_FULL_NAME = `(coalesce(g.survivor->>'family', '') || coalesce(g.survivor->>'given', ''))`;

function identifierClause(values: string[], p: SqlParams): string {
  const ors = values.map((identifier) => {
    const bar = identifier.indexOf('|');
    const system = bar >= 0 ? identifier.slice(0, bar) : '';
    const v = p.add(bar >= 0 ? identifier.slice(bar + 1) : identifier);
    const member = /^urn:yilian:(.+):mrn$/.exec(system)?.[1];
    if (system === GOLDEN_SYSTEM) return `g.id = ${v}`;
    if (member) return `EXISTS (SELECT 1 FROM mpi_link l WHERE l.golden_id = g.id AND l.state = 'MATCH' AND l.mrn = ${v} AND l.member_id = ${p.add(member)})`;
    if (system === RESIDENT_ID_SYSTEM) return `g.survivor->>'residentId' = upper(${v})`;
    if (system) return 'false';
    return `(g.id = ${v} OR g.survivor->>'residentId' = upper(${v}) OR EXISTS (SELECT 1 FROM mpi_link l WHERE l.golden_id = g.id AND l.state = 'MATCH' AND l.mrn = ${v}))`;
  });
  return `(${ors.join(' OR ')})`;
}

const common = (updatedColumn: string, idColumn: string): SearchParamDef[] => [
  { name: '_id', type: 'token', description: 'Logical id', selective: true, sort: idColumn, where: (values, _m, p) => `${idColumn} = ANY(${p.add(values)}::text[])` },
  { name: '_lastUpdated', type: 'date', description: 'When the resource last changed on this server', sort: updatedColumn, where: (values, _m, p) => `(${values.map((v) => dateClause(UPDATED_ISO(updatedColumn), v, p)).join(' OR ')})` },
];

function patientParams(): SearchParamDef[] {
  return [
    // When its current version was recorded (meta.lastUpdated), not mpi_golden.updated_at, which a
    // recomputation that changes nothing also moves.
    ...common(`(SELECT max(v.recorded_at) FROM golden_version v WHERE v.golden_id = g.id)`, 'g.id'),
    { name: 'identifier', type: 'token', description: 'Enterprise id, resident ID (urn:oid:2.16.156.10011.1.3) or a member MRN (urn:yilian:{member}:mrn)', selective: true, where: (values, _m, p) => identifierClause(values, p) },
    { name: 'name', type: 'string', description: 'Any part of the name, Hanzi (simplified or traditional) or toneless pinyin, case- and accent-insensitive, by prefix', sort: GOLDEN_FULL_NAME, where: (values, m, p) => nameClause('name', GOLDEN_FULL_NAME, values, m, p) },
    { name: 'family', type: 'string', description: 'Family name, Hanzi or toneless pinyin, case- and accent-insensitive, by prefix', sort: `g.survivor->>'family'`, where: (values, m, p) => nameClause('family', `g.survivor->>'family'`, values, m, p) },
    { name: 'given', type: 'string', description: 'Given name, Hanzi or toneless pinyin, case- and accent-insensitive, by prefix', sort: `g.survivor->>'given'`, where: (values, m, p) => nameClause('given', `g.survivor->>'given'`, values, m, p) },
    {
      name: 'gender',
      type: 'token',
      description: 'male | female | other | unknown',
      where: (values, _m, p) => {
        const codes = values.map(codeOf).map((c) => ({ male: 'M', female: 'F' })[c] ?? c);
        return `(g.survivor->>'sex' = ANY(${p.add(codes)}::text[])${codes.some((c) => c === 'unknown' || c === 'other') ? ` OR coalesce(g.survivor->>'sex', '') NOT IN ('M', 'F')` : ''})`;
      },
    },
    { name: 'birthdate', type: 'date', description: 'Date of birth', sort: `g.survivor->>'birthDate'`, where: (values, _m, p) => `(${values.map((v) => dateClause(GOLDEN_BIRTH, v, p)).join(' OR ')})` },
    {
      name: 'phone',
      type: 'token',
      description: 'Phone number (digits compared)',
      selective: true,
      where: (values, _m, p) => `regexp_replace(coalesce(g.survivor->>'phone', ''), '\\D', '', 'g') = ANY(${p.add(values.map((v) => codeOf(v).replace(/\D/g, '')))}::text[])`,
    },
    {
      name: 'telecom',
      type: 'token',
      description: 'Any contact point: the phone number (digits compared)',
      selective: true,
      where: (values, _m, p) => `regexp_replace(coalesce(g.survivor->>'phone', ''), '\\D', '', 'g') = ANY(${p.add(values.map((v) => codeOf(v).replace(/\D/g, '')))}::text[])`,
    },
    {
      name: 'address',
      type: 'string',
      description: 'The address (free text): a word starting with the value; Hanzi anywhere in it',
      where: (values, m, p) => {
        if (m === 'exact') return `g.survivor->>'address' = ANY(${p.add(values)}::text[])`;
        const patterns = values.flatMap((v) => {
          const s = likeEscape(searchableAddress(v));
          // Hanzi addresses have no word breaks: a Hanzi value matches anywhere.
          return m === 'contains' || /\p{Script=Han}/u.test(v) ? [`%${s}%`] : [`${s}%`, `% ${s}%`];
        });
        return termClause('address', patterns, p);
      },
    },
    {
      name: 'address-city',
      type: 'string',
      description: 'City: the hub keeps addresses as free text, so the value is looked for anywhere in it',
      where: (values, m, p) => (m === 'exact' ? `g.survivor->>'address' = ANY(${p.add(values)}::text[])` : termClause('address', values.map((v) => `%${likeEscape(searchableAddress(v))}%`), p)),
    },
    { name: 'active', type: 'token', description: 'Whether the golden patient has sources (true) or none left (false)', where: (values, _m, p) => `(g.state = 'active') = ANY(${p.add(values.map((v) => codeOf(v) === 'true'))}::boolean[])` },
  ];
}

function referenceParam(name: string, description: string, target: string[], path: string): SearchParamDef {
  return {
    name,
    type: 'reference',
    description,
    target,
    referencePaths: [path],
    where: async (values, _m, p) => {
      const refs = values.map((v) => {
        const t = target.find((type) => referenceId(v, type) !== undefined && v.includes('/'));
        return t ? `${t}/${referenceId(v, t)}` : `${target[0]}/${v}`;
      });
      return `content->'${path}'->>'reference' = ANY(${p.add(refs)}::text[])`;
    },
  };
}

function clinicalParams(db: Sql, type: string): SearchParamDef[] {
  const spec = CLINICAL[type]!;
  const subject = (name: string): SearchParamDef => ({
    name,
    type: 'reference',
    description: name === 'patient' ? 'The patient (golden id or a member\'s Patient id): every member record of that person' : 'The subject: a golden patient id or a member\'s Patient id',
    target: ['Patient'],
    referencePaths: [type === 'Immunization' || type === 'ChargeItem' ? 'patient' : 'subject'],
    selective: true,
    where: async (values, _m, p) => `${SUBJECT} = ANY(${p.add(await subjectRefs(db, values))}::text[])`,
  });
  const params: SearchParamDef[] = [
    ...common('updated_at', 'id'),
    subject('patient'),
    ...(type === 'Immunization' || type === 'ChargeItem' ? [] : [subject('subject')]),
    { name: 'identifier', type: 'token', description: 'Business identifier', selective: true, where: (values, _m, p) => `(${values.map((v) => {
      const bar = v.indexOf('|');
      return `content->'identifier' @> ${p.add(JSON.stringify([bar > 0 ? { system: v.slice(0, bar), value: v.slice(bar + 1) } : { value: bar >= 0 ? v.slice(bar + 1) : v }]))}::jsonb`;
    }).join(' OR ')})` },
    { name: spec.codeName ?? 'code', type: 'token', description: 'Code (system|code)', where: (values, _m, p) => tokenClause(spec.code, values, p) },
    { name: 'status', type: 'token', description: 'Status', where: (values, _m, p) => `content->>'status' = ANY(${p.add(values.map(codeOf))}::text[])` },
    { name: 'date', type: 'date', description: `Clinically relevant time (${spec.date.map((d) => d.replace(',', '.')).join(', then ')})`, sort: dateExpr(spec.date), where: (values, _m, p) => `(${values.map((v) => dateClause(dateExpr(spec.date), v, p)).join(' OR ')})` },
  ];
  if (spec.category) params.push({ name: spec.categoryName ?? 'category', type: 'token', description: 'Category', where: (values, _m, p) => tokenClause(spec.category!, values, p) });
  if (spec.encounter) params.push(referenceParam('encounter', 'The encounter', ['Encounter'], 'encounter'));
  return params;
}

/** Shared resources: answered by hub/resources (listUnified), so no SQL here. */
function sharedParams(): SearchParamDef[] {
  return [
    { name: '_id', type: 'token', description: 'Unified record id', selective: true },
    { name: 'name', type: 'string', description: 'Name (normalised label match)' },
    { name: 'identifier', type: 'token', description: 'Any member\'s identifier (system|value)', selective: true },
  ];
}

function auditParams(): SearchParamDef[] {
  return [
    { name: 'patient', type: 'reference', description: 'The patient whose data was read', target: ['Patient'], selective: true, where: (values, _m, p) => `patient_key = ANY(${p.add(values.map((v) => referenceId(v, 'Patient') ?? v))}::text[])` },
    { name: 'agent', type: 'string', description: 'Who read (the API key or user name), exact', modifiers: [], where: (values, m, p) => (m === 'contains' ? `actor LIKE ANY(${p.add(values.map((v) => `%${likeEscape(v)}%`))}::text[])` : `actor = ANY(${p.add(values)}::text[])`) },
    { name: 'date', type: 'date', description: 'When', sort: 'at', where: (values, _m, p) => `(${values.map((v) => dateClause(UPDATED_ISO('at'), v, p)).join(' OR ')})` },
  ];
}

/** Every type's parameters (built once per router: the reference parameters query `db`). */
export function searchTables(db: Sql): ParamTables {
  const tables: ParamTables = { Patient: patientParams(), AuditEvent: auditParams() };
  for (const type of Object.keys(CLINICAL)) tables[type] = clinicalParams(db, type);
  for (const type of SHARED_RESOURCE_TYPES) tables[type] = sharedParams();
  return tables;
}

/** A value of a shared type's parameter: its one value (listUnified takes one). */
export function single(values: string[], name: string): string {
  if (values.length !== 1) throw new HubError('invalid', `${name}: one value (no comma list) on shared resources`, name);
  return values[0]!;
}
