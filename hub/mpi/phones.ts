/**
 * Phone numbers as one person's: E.164 by libphonenumber-js, with the member's country for numbers
 * written without a country code (CN unless configured, `identity.memberCountries`). So
 * `818-892-2818` at a US member and `+1 818 892 2818` or `18188922818` elsewhere agree, and
 * `+7 (4812) 12-34-56` keeps its country instead of being cut to its last 11 digits. A number the
 * library cannot read keeps its digits (a mistyped number is still evidence of a slip). Cached:
 * a bulk sync reads the same stored records many times. Pure.
 */
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

const cache = new Map<string, string | undefined>();

export function normalisePhone(value: string | undefined, country = 'CN'): string | undefined {
  if (!value) return undefined;
  const key = `${country}|${value}`;
  if (cache.has(key)) return cache.get(key);
  const result = e164(value, country);
  if (cache.size > 200_000) cache.clear();
  cache.set(key, result);
  return result;
}

function e164(value: string, country: string): string | undefined {
  const digits = value.replace(/\D/g, '');
  if (digits.length < 6) return undefined;
  // A mainland mobile at a mainland member, by far the commonest case: what the library returns,
  // without parsing (a bulk sync reads a million of them, each parse about 30 µs).
  if (country === 'CN' && digits.length === 11 && /^1[3-9]/.test(digits) && !/^\s*(\+|00)/.test(value)) return `+86${digits}`;
  // 00 and + are international prefixes; a mainland mobile written with 86 and no + is common too.
  const text = value.trim().replace(/^00/, '+');
  let parsed = parsePhoneNumberFromString(text, country as CountryCode);
  if ((!parsed || !parsed.isPossible()) && !text.startsWith('+')) parsed = parsePhoneNumberFromString(`+${digits}`);
  if (parsed && parsed.isPossible()) return parsed.number;
  return digits;
}
