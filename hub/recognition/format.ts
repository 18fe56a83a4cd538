/**
 * Text forms of the recognition outputs shared by the HTTP API and the CLI: the duplicate report
 * as CSV (the interface other checks rely on: `patient,code,first_member,first_time,repeat_member,
 * repeat_time`, times ISO 8601 with the UTC offset of the member that did the test, e.g.
 * `2026-04-11T08:54:00+08:00` — the HL7 UTC times without a marker of before were read as local
 * time and 8 hours off, issue 21), the report's local times, and the parsing of --from/--to bounds.
 */
import { HubError } from '../../mappings/outcome';
import type { DuplicateReport, RulesMode } from './duplicates';

export const DUPLICATES_CSV_HEADER = 'patient,code,first_member,first_time,repeat_member,repeat_time';

export { localTime } from './localTime';

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

export function duplicatesCsv(report: DuplicateReport): string {
  // The report's times are already local ISO 8601 with the member's offset (duplicates.ts).
  const lines = [DUPLICATES_CSV_HEADER, ...report.pairs.map((p) => [p.patient, p.code, p.firstMember, p.firstTime, p.repeatMember, p.repeatTime].map(csvField).join(','))];
  return `${lines.join('\n')}\n`;
}

/**
 * A --from / --to bound: `YYYY-MM-DD`, `YYYYMMDD[HHMMSS]` (UTC) or an ISO instant. A date-only `to`
 * includes that whole day (the bound is the next midnight, exclusive). Dates stay UTC midnights
 * although the report's times are local: members may sit at different offsets, so a bare date has
 * no one local meaning, and the KPIs' month ranges are UTC too; a bound in a member's time is
 * given with its offset (`2026-04-01T00:00:00+08:00`).
 */
export function parseTimeBound(text: string, which: 'from' | 'to'): Date {
  let ms: number;
  let dateOnly = false;
  const hl7 = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?$/.exec(text);
  if (hl7) {
    dateOnly = hl7[4] === undefined;
    ms = Date.UTC(Number(hl7[1]), Number(hl7[2]) - 1, Number(hl7[3]), Number(hl7[4] ?? 0), Number(hl7[5] ?? 0), Number(hl7[6] ?? 0));
  } else if (/^\d{4}-\d{2}-\d{2}$/.test(text)) {
    dateOnly = true;
    ms = Date.parse(`${text}T00:00:00Z`);
  } else ms = Date.parse(text);
  if (!Number.isFinite(ms)) throw new HubError('invalid', `${which}: not a date or time: ${text}`, which);
  return new Date(dateOnly && which === 'to' ? ms + 86_400_000 : ms);
}

/**
 * --rules / ?rules=: `at-time` (default: each result judged by the rules in force when it was
 * produced) or `current` (what-if: by the rules in force now, as if they had always been).
 */
export function parseRulesMode(text: string | undefined): RulesMode {
  if (text === undefined || text === 'at-time') return 'at-time';
  if (text === 'current') return 'current';
  throw new HubError('invalid', `rules: at-time or current, not ${text}`, 'rules');
}
