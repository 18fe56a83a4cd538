/**
 * HL7 v2 TS/DTM values: YYYY[MM[DD[HH[MM[SS[.S{1,4}]]]]]][+/-ZZZZ]. Partial precision is normal;
 * the sign of the UTC offset matters (`-0500` is west of Greenwich). A value without an offset is in
 * the sender's local time: members of a Chinese alliance default to +0800.
 */
const tsPattern = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$/;

export interface Hl7Time {
  /** The instant (earliest instant of the stated precision). */
  instant: Date;
  /** Number of digits given before any fraction: 4, 6, 8, 10, 12 or 14. */
  precision: number;
  /** Offset in minutes east of UTC, as stated or assumed. */
  offsetMinutes: number;
  offsetStated: boolean;
}

export function parseHl7Time(value: string, defaultOffsetMinutes = 8 * 60): Hl7Time | undefined {
  const m = tsPattern.exec(value.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const offsetMinutes = zone ? (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5))) : defaultOffsetMinutes;
  const month = mo ? Number(mo) : 1;
  const day = d ? Number(d) : 1;
  if (month < 1 || month > 12 || day < 1 || day > 31 || Number(h ?? 0) > 23 || Number(mi ?? 0) > 59 || Number(s ?? 0) > 60) return undefined;
  if (frac !== undefined && s === undefined) return undefined; // a fraction belongs to the seconds
  const ms = frac ? Math.round(Number(`0.${frac}`) * 1000) : 0;
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0–99 to 1900–1999.
  const date = new Date(0);
  date.setUTCFullYear(Number(y), month - 1, day);
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined; // 20190230
  date.setUTCHours(Number(h ?? 0), Number(mi ?? 0), Number(s ?? 0), ms);
  const utc = date.getTime() - offsetMinutes * 60_000;
  const precision = 4 + [mo, d, h, mi, s].filter((x) => x !== undefined).length * 2;
  return { instant: new Date(utc), precision, offsetMinutes, offsetStated: zone !== undefined };
}

/** Format an instant as an HL7 DTM with seconds and the given offset: YYYYMMDDHHMMSS+ZZZZ. */
export function formatHl7Time(instant: Date, offsetMinutes = 8 * 60): string {
  const local = new Date(instant.getTime() + offsetMinutes * 60_000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return (
    `${p(local.getUTCFullYear(), 4)}${p(local.getUTCMonth() + 1)}${p(local.getUTCDate())}` +
    `${p(local.getUTCHours())}${p(local.getUTCMinutes())}${p(local.getUTCSeconds())}${sign}${p(Math.floor(abs / 60))}${p(abs % 60)}`
  );
}
