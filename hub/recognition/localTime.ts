/**
 * Local times of the recognition outputs: the duplicate report gives each time as the clock of the
 * member that did the test showed it, with that member's UTC offset (issue 21: times in UTC without
 * a marker were read as local time and 8 hours off). Its own module so that the report
 * (duplicates.ts) and its text forms (format.ts) can both use it without importing each other.
 */
import { formatOffset } from '../../mappings/hl7v2/datatypes';

/**
 * An instant as ISO 8601 local time at `offsetMinutes` east of UTC, with that offset:
 * `2026-04-11T08:54:00+08:00` (milliseconds only when there are some). The instant is unchanged.
 */
export function localTime(at: Date, offsetMinutes: number): string {
  const shifted = new Date(at.getTime() + offsetMinutes * 60_000).toISOString(); // the wall clock, spelled in a UTC string
  const ms = shifted.slice(19, 23);
  return `${shifted.slice(0, 19)}${ms === '.000' ? '' : ms}${formatOffset(offsetMinutes)}`;
}
