/**
 * Text forms of the recognition outputs shared by the HTTP API and the CLI: the duplicate report
 * as CSV (the interface other checks rely on: `patient,code,first_member,first_time,repeat_member,
 * repeat_time`, times as HL7 `YYYYMMDDHHMMSS` in UTC), and the parsing of --from/--to bounds.
 */
import { HubError } from '../../mappings/outcome';
import type { DuplicateReport } from './duplicates';

export const DUPLICATES_CSV_HEADER = 'patient,code,first_member,first_time,repeat_member,repeat_time';

/** ISO instant → HL7 DTM `YYYYMMDDHHMMSS` (UTC). */
export function hl7Time(iso: string): string {
  return new Date(iso).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

export function duplicatesCsv(report: DuplicateReport): string {
  const lines = [DUPLICATES_CSV_HEADER, ...report.pairs.map((p) => [p.patient, p.code, p.firstMember, hl7Time(p.firstTime), p.repeatMember, hl7Time(p.repeatTime)].map(csvField).join(','))];
  return `${lines.join('\n')}\n`;
}

/**
 * A --from / --to bound: `YYYY-MM-DD`, `YYYYMMDD[HHMMSS]` (UTC) or an ISO instant. A date-only `to`
 * includes that whole day (the bound is the next midnight, exclusive).
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
