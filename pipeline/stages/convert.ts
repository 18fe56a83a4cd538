/**
 * Stage "convert": HL7 v2 → FHIR R4 resources. The declarative conversion arrives with the
 * conversion issue; until then the stage carries the parsed message on unchanged with no resources,
 * so queues, retries, metrics and bookkeeping around it are already real.
 */
import type { ParsedMessage } from './parse';

export interface ConvertedMessage {
  parsed: ParsedMessage;
  /** FHIR R4 resources produced from the message (none yet). */
  resources: Array<{ resourceType: string; id?: string }>;
}

export function convertStage(parsed: ParsedMessage): ConvertedMessage {
  return { parsed, resources: [] };
}
