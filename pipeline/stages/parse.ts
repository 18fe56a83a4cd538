/**
 * Stage "parse": raw bytes → decoded text → HL7 v2 message. Pure. The channel's charset policy is
 * read at this point (not only at intake), so a message quarantined for its charset is fixed by
 * correcting the channel's configuration and replaying it.
 */
import { type CharsetPolicy, inspectMessage, type InspectedMessage } from '../../mappings/hl7v2/header';

export interface ParseInput {
  bytes: Buffer;
  policy: CharsetPolicy;
}

export type ParsedMessage = InspectedMessage;

export function parseStage(input: ParseInput): ParsedMessage {
  return inspectMessage(input.bytes, input.policy);
}
