/**
 * Stage "parse", FHIR branch: the stored bytes of one incoming FHIR R4 resource → the resource,
 * checked against the official R4 JSON schema (mappings/fhir/validate.ts: structure, known
 * resourceType, element names and types, required elements). Pure. What is wrong becomes a HubError
 * listing every problem (the quarantine entry's OperationOutcome), located at the first one.
 */
import type { FhirResource } from 'fhir/r4';
import { validateResource } from '../../mappings/fhir/validate';
import { HubError } from '../../mappings/outcome';

export interface ParsedFhirResource {
  resource: FhirResource & { id: string };
}

export function fhirParseStage(bytes: Buffer): ParsedFhirResource {
  let resource: unknown;
  try {
    resource = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new HubError('structure', `not JSON: ${(error as Error).message}`);
  }
  const issues = validateResource(resource);
  if (issues.length > 0) {
    const shown = issues.slice(0, 20).map((i) => `${i.path}: ${i.message}`);
    if (issues.length > shown.length) shown.push(`… and ${issues.length - shown.length} more`);
    throw new HubError('invalid', `not a valid FHIR R4 resource: ${shown.join('; ')}`, issues[0]!.path);
  }
  const typed = resource as FhirResource;
  if (typeof typed.id !== 'string' || typed.id === '') throw new HubError('invalid', `${typed.resourceType}.id is missing`, `${typed.resourceType}.id`);
  return { resource: typed as FhirResource & { id: string } };
}
