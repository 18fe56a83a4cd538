/**
 * The 18-digit PRC resident identity number (居民身份证号, GB 11643-1999): 6-digit address code,
 * 8-digit birth date, 3-digit sequence (odd: male, even: female) and an ISO 7064 MOD 11-2 check
 * character (0-9 or X; a lower-case x is the same character typed carelessly). A number whose check
 * character fails is still kept, but only as weak evidence: it is never an exact-match key. Pure.
 */

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK = '10X98765432';

export interface ResidentId {
  /** Canonical form: 17 digits and an upper-case check character (or the input, cleaned, when malformed). */
  value: string;
  /** Shape and check character both right. */
  valid: boolean;
  /** Why it is not valid (`shape`: not 17 digits + check character; `check-digit`; `birth-date`: no such day). */
  problem?: 'shape' | 'check-digit' | 'birth-date';
  /** YYYYMMDD read from the number (when its shape is right and the date exists). */
  birthDate?: string;
  sex?: 'M' | 'F';
}

/** ISO 7064 MOD 11-2 check character for the first 17 digits. */
export function residentIdCheckChar(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += (first17.charCodeAt(i) - 48) * WEIGHTS[i]!;
  return CHECK[sum % 11]!;
}

export function parseResidentId(input: string): ResidentId {
  const value = input.replace(/[\s-]/g, '').toUpperCase();
  if (!/^\d{17}[\dX]$/.test(value)) return { value, valid: false, problem: 'shape' };
  const birthDate = value.slice(6, 14);
  const sex = (value.charCodeAt(16) - 48) % 2 === 1 ? 'M' : 'F';
  const dateOk = isRealDate(birthDate);
  if (residentIdCheckChar(value.slice(0, 17)) !== value[17]) return { value, valid: false, problem: 'check-digit', birthDate: dateOk ? birthDate : undefined, sex };
  if (!dateOk) return { value, valid: false, problem: 'birth-date', sex };
  return { value, valid: true, birthDate, sex };
}

export function isRealDate(yyyymmdd: string): boolean {
  if (!/^\d{8}$/.test(yyyymmdd)) return false;
  const y = Number(yyyymmdd.slice(0, 4));
  const m = Number(yyyymmdd.slice(4, 6));
  const d = Number(yyyymmdd.slice(6, 8));
  if (y < 1850 || m < 1 || m > 12 || d < 1) return false;
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return d <= days;
}

/** A well-formed number with its check character (for generators and tests). */
export function makeResidentId(area: string, birthDate: string, sequence: number, sex: 'M' | 'F'): string {
  let seq = sequence % 1000;
  if ((seq % 2 === 1) !== (sex === 'M')) seq = (seq + 1) % 1000;
  const first17 = `${area}${birthDate}${String(seq).padStart(3, '0')}`;
  return first17 + residentIdCheckChar(first17);
}
