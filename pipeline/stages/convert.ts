/**
 * Stage "convert": HL7 v2 → FHIR R4 resources through the declarative conversion in
 * mappings/hl7v2 (pure). A value that cannot be converted is a HubError located at its segment and
 * field (`OBX[2]-5`), which the runner turns into a quarantine entry of stage `convert`.
 */
import type { MemberConfig } from '../../hub/config';
import { convertMessage, type Bundle } from '../../mappings/hl7v2/convert';
import type { Resource } from '../../mappings/hl7v2/convert/conversion';
import type { ParsedMessage } from './parse';

export interface ConvertedMessage {
  parsed: ParsedMessage;
  bundle: Bundle;
  /** The bundle's resources, Provenance included, each with its deterministic id. */
  resources: Resource[];
}

export interface ConvertContext {
  memberId: string;
  channelId: string;
  rawId: number;
  utcOffsetMinutes: number;
  member?: MemberConfig;
}

export function convertStage(parsed: ParsedMessage, ctx: ConvertContext): ConvertedMessage {
  const bundle = convertMessage(parsed.message, ctx);
  return { parsed, bundle, resources: bundle.entry.map((e) => e.resource) };
}
