/**
 * The CapabilityStatement (`/fhir/metadata`, open: clients discover a server before they
 * authenticate). Generated from the same search-parameter tables the search uses
 * (api/fhirSearchParams.ts), so each parameter listed is one search answers, with its type; the
 * interactions and operations are those the router (api/fhir.ts) and the terminology routes
 * (api/terminology.ts) serve.
 */
import type { ParamTables } from './fhirSearch';
import { RESULT_PARAMETERS } from './fhirSearch';

/** When this process started: the statement changes only with the software. */
const STARTED = new Date().toISOString();

/** Canonical definitions of the parameters that are the standard R4 ones. */
const STANDARD: Record<string, string> = {
  _id: 'Resource-id',
  _lastUpdated: 'Resource-lastUpdated',
  'Patient.name': 'Patient-name',
  'Patient.family': 'individual-family',
  'Patient.given': 'individual-given',
  'Patient.gender': 'individual-gender',
  'Patient.birthdate': 'individual-birthdate',
  'Patient.phone': 'individual-phone',
  'Patient.telecom': 'individual-telecom',
  'Patient.address': 'individual-address',
  'Patient.address-city': 'individual-address-city',
  'Patient.identifier': 'Patient-identifier',
  'Patient.active': 'Patient-active',
};

const OPERATION = (name: string, id: string) => ({ name, definition: `http://hl7.org/fhir/OperationDefinition/${id}` });

/** Types with versions kept (vread, history-instance): the clinical ones and golden patients. */
export interface CapabilityInput {
  tables: ParamTables;
  versioned: string[];
  /** Types searched without our SQL (shared resources): no _sort, no _include. */
  plain: string[];
}

export function capabilityStatement(input: CapabilityInput): Record<string, unknown> {
  const includes = (type: string) =>
    (input.tables[type] ?? []).filter((d) => d.type === 'reference' && d.referencePaths).map((d) => `${type}:${d.name}`);
  const revIncludes = (type: string) =>
    Object.entries(input.tables).flatMap(([source, defs]) => defs.filter((d) => d.type === 'reference' && d.where && d.target?.includes(type) && source !== 'AuditEvent').map((d) => `${source}:${d.name}`));
  const resource = Object.entries(input.tables).map(([type, defs]) => {
    const versioned = input.versioned.includes(type);
    const operation = [OPERATION('validate', 'Resource-validate'), ...(type === 'Patient' ? [OPERATION('match', 'Patient-match'), OPERATION('everything', 'Patient-everything')] : [])];
    return {
      type,
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: [{ code: 'read' }, ...(versioned ? [{ code: 'vread' }, { code: 'history-instance' }] : []), { code: 'search-type' }],
      versioning: versioned ? 'versioned' : 'no-version',
      readHistory: versioned,
      updateCreate: false,
      conditionalCreate: false,
      conditionalRead: 'not-supported',
      conditionalUpdate: false,
      conditionalDelete: 'not-supported',
      ...(input.plain.includes(type) ? {} : { searchInclude: includes(type), searchRevInclude: revIncludes(type) }),
      searchParam: defs.map((d) => ({
        name: d.name,
        type: d.type,
        ...(STANDARD[`${type}.${d.name}`] ?? STANDARD[d.name] ? { definition: `http://hl7.org/fhir/SearchParameter/${STANDARD[`${type}.${d.name}`] ?? STANDARD[d.name]}` } : {}),
        documentation: d.description,
      })),
      operation,
    };
  });
  resource.push(
    {
      type: 'ConceptMap',
      profile: 'http://hl7.org/fhir/StructureDefinition/ConceptMap',
      interaction: [{ code: 'read' }, { code: 'search-type' }],
      versioning: 'no-version',
      readHistory: false,
      updateCreate: false,
      conditionalCreate: false,
      conditionalRead: 'not-supported',
      conditionalUpdate: false,
      conditionalDelete: 'not-supported',
      searchParam: [
        { name: 'url', type: 'uri', documentation: 'Canonical URL of the map' },
        { name: '_id', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/Resource-id', documentation: 'Logical id' },
      ],
      operation: [OPERATION('translate', 'ConceptMap-translate')],
    } as never,
    {
      type: 'CodeSystem',
      profile: 'http://hl7.org/fhir/StructureDefinition/CodeSystem',
      interaction: [],
      operation: [OPERATION('lookup', 'CodeSystem-lookup'), OPERATION('validate-code', 'CodeSystem-validate-code')],
    } as never,
  );
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: STARTED,
    publisher: 'Yilian Hub',
    kind: 'instance',
    software: { name: 'Yilian Hub', version: '0.1.0' },
    implementation: { description: 'Yilian Hub FHIR API: the unified record of the alliance (golden patients, members\' clinical records, shared resources), read-only' },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        documentation: `Read-only. Search: unknown parameters are ignored (and left out of the self link) unless the request says Prefer: handling=strict, then 400. Result parameters: ${RESULT_PARAMETERS.join(', ')}. One level of chaining on reference parameters (e.g. subject:Patient.identifier).`,
        security: {
          cors: false,
          service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'OAuth' }], text: 'Bearer token' }],
          description: 'Every interaction but this statement needs Authorization: Bearer with an API key or a JWT (HS256/RS256/ES256) carrying scope patient.read (AuditEvent: admin; terminology: integration or governance). Every read of patient data is audited.',
        },
        resource,
        operation: [],
      },
    ],
  };
}
