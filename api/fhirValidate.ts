/**
 * `$validate` (R4 operation Resource/$validate) on the types the API serves: the resource given in
 * the body (as itself, or as the `resource` parameter of a Parameters) is checked against the
 * official R4 JSON schema and required elements (mappings/fhir/validate.ts — what the hub's own
 * conversions are held to). The answer is 200 with an OperationOutcome listing the issues, or one
 * informational issue when there are none (as the operation defines: a validation failure is not
 * an HTTP error). Modes create/update/delete and profiles are not supported (a 400 says so).
 */
import type { Request } from 'express';
import { HubError } from '../mappings/outcome';
import { toOperationOutcome, validateResource } from '../mappings/fhir/validate';

export function validateOperation(type: string, req: Request): Record<string, unknown> {
  const body = req.body as { resourceType?: string; parameter?: Array<{ name: string; resource?: unknown; valueCode?: string; valueUri?: string; valueCanonical?: string }> } | undefined;
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HubError('invalid', 'body must be the resource to validate, or a Parameters with a `resource` parameter', 'body');
  let resource: unknown = body;
  if (body.resourceType === 'Parameters' && type !== 'Parameters') {
    resource = body.parameter?.find((p) => p.name === 'resource')?.resource;
    if (body.parameter?.some((p) => p.name === 'profile')) throw new HubError('invalid', '$validate: profiles are not supported (the base R4 definitions are checked)', 'profile');
    if (body.parameter?.some((p) => p.name === 'mode')) throw new HubError('invalid', '$validate: mode is not supported (this server is read-only)', 'mode');
  }
  if (!resource || typeof resource !== 'object') throw new HubError('invalid', 'Parameters has no `resource` to validate', 'body');
  const rt = (resource as { resourceType?: unknown }).resourceType;
  if (rt !== type) throw new HubError('invalid', `resourceType ${String(rt)} does not match ${type}/$validate`, 'resourceType');
  return toOperationOutcome(validateResource(resource)) as unknown as Record<string, unknown>;
}
