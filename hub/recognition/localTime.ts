/**
 * Local times of the recognition outputs: the duplicate report gives each time as the clock of the
 * member that did the test showed it, with that member's UTC offset (issue 21: times in UTC without
 * a marker were read as local time and 8 hours off). Its own module so that the report
 * (duplicates.ts) and its text forms (format.ts) can both use it without importing each other.
 */
/**
 * An instant as ISO 8601 local time at `offsetMinutes` east of UTC, with that offset:
 * `2026-04-11T08:54:00+08:00` (milliseconds only when there are some). The instant is unchanged.
 */
export function localTime(at: Date, offsetMinutes: number): string {
  const shifted = new Date(at.getTime() + offsetMinutes * 60_000).toISOString(); // the wall clock, spelled in a UTC string
  const ms = shifted.slice(19, 23);
  const abs = Math.abs(offsetMinutes);
  const offset = `${offsetMinutes < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return `${shifted.slice(0, 19)}${ms === '.000' ? '' : ms}${offset}`;
}
