/**
 * `yilian convert [--member <id>] <files…>`: HL7 v2 files → one FHIR R4 Bundle per message as
 * NDJSON on stdout, in input order, storing nothing (no database, no Redis). A message (or stretch
 * of a file) that cannot be converted prints an OperationOutcome line in its place; the caller
 * exits non-zero when there was any.
 */
import { readFileSync } from 'node:fs';
import { charsetPolicyOf, memberSchema, offsetMinutes, type HubConfig, type MemberConfig } from '../hub/config';
import { splitHl7File } from '../adapters/file/split';
import { convertMessage } from '../mappings/hl7v2/convert';
import { inspectMessage } from '../mappings/hl7v2/header';
import { asHubError, HubError } from '../mappings/outcome';

/** Channel id recorded in Provenance (and used for the charset policy) for command-line conversion. */
export const CONVERT_CHANNEL = 'convert';

export interface ConvertSummary {
  converted: number;
  failed: number;
}

/** The configured member, else a plain one with that id (nothing is stored, so no warning). */
export function memberFor(config: HubConfig, memberId: string): MemberConfig {
  const found = config.members.find((m) => m.id === memberId);
  if (found) return found;
  const parsed = memberSchema.safeParse({ id: memberId, name: memberId, tier: 'unknown' });
  if (!parsed.success) throw new HubError('invalid', `member id "${memberId}": ${parsed.error.issues[0]!.message}`, '--member');
  return parsed.data;
}

export async function convertFiles(config: HubConfig, member: MemberConfig, files: string[], write: (line: string) => Promise<void>): Promise<ConvertSummary> {
  const summary: ConvertSummary = { converted: 0, failed: 0 };
  const fail = async (error: unknown, where: string) => {
    const outcome = asHubError(error).toOperationOutcome();
    for (const issue of outcome.issue) issue.diagnostics = `${where}: ${issue.diagnostics ?? ''}`;
    summary.failed++;
    await write(JSON.stringify(outcome));
  };
  const policy = charsetPolicyOf(config, member.id, CONVERT_CHANNEL);
  for (const file of files) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (error) {
      await fail(new HubError('not-found', `cannot read file: ${(error as Error).message}`, file), file);
      continue;
    }
    const split = splitHl7File(bytes);
    if (split.leading) await fail(new HubError('not-hl7', `${split.leading.length} bytes before the first MSH segment`, 'byte 0'), file);
    else if (split.messages.length === 0) await fail(new HubError('not-hl7', 'no HL7 v2 message (no MSH segment) in the file', 'byte 0'), file);
    for (const [i, raw] of split.messages.entries()) {
      try {
        const { message } = inspectMessage(raw, policy);
        const bundle = convertMessage(message, { memberId: member.id, channelId: CONVERT_CHANNEL, utcOffsetMinutes: offsetMinutes(member), member });
        await write(JSON.stringify(bundle));
        summary.converted++;
      } catch (error) {
        await fail(error, `${file} message ${i + 1}`);
      }
    }
  }
  return summary;
}
