/**
 * What the patient index compares: a source patient record (as a member states it) turned into
 * normalised identity features once, and the blocking keys that pick its candidates. Pure; owns no
 * storage. A field the member did not state stays undefined and counts neither for nor against.
 */
import { isRealDate, parseResidentId, type ResidentId } from './residentId';
import { hasHan, normaliseName, soundex, soundKey } from './names';
import { decodeIdentity, type Identity } from './identity';
import { normalisePhone } from './phones';
import { addressKey } from './addresses';
import { aliasesOf } from './nicknames';
import { hasOtherScript } from './scripts';

/** A person as one source describes them (HL7 PID, FHIR Patient, or a test set's row). */
export interface PersonRecord {
  id: string;
  family?: string;
  given?: string;
  /** YYYYMMDD or YYYY-MM-DD. */
  birthDate?: string;
  sex?: string;
  residentId?: string;
  phone?: string;
  email?: string;
  address?: string;
  city?: string;
  postcode?: string;
  /** Another national number with no check digit (FEBRL's soc_sec_id): an identity of system `other`. */
  otherId?: string;
  /** Identities other than the resident ID (hub/mpi/identity.ts `encodeIdentity`: `system|value`). */
  identities?: string[];
  /** Generational suffix (jr, sr, ii, iii, iv), from XPN-4 / HumanName.suffix or the end of the name. */
  suffix?: string;
  /** The member's country (ISO alpha-2): phone numbers without a country code are read in it (default CN). */
  country?: string;
}

export interface PersonFeatures {
  id: string;
  family?: string;
  given?: string;
  familySound?: string;
  givenSound?: string;
  /** Written in Hanzi (else Latin only: a pinyin-only member, or a foreign name). */
  han: boolean;
  birth?: string;
  sex?: 'M' | 'F';
  rid?: ResidentId;
  /** The resident ID is strong evidence: valid and its birth date (and sex) agree with the record's. */
  ridStrong: boolean;
  phone?: string;
  email?: string;
  address?: string;
  city?: string;
  postcode?: string;
  /** The first identity as `system|value` (its shared-value count, hub/mpi/sharedValues.ts). */
  otherId?: string;
  /** Every identity (other than the resident ID), `other` for a number of unknown kind. */
  ids?: Identity[];
  /** Generational suffix: jr / sr / ii / iii / iv (2nd → ii, 3rd → iii). */
  suffix?: string;
  /** The name was written in a script other than Latin and Han (transliterated: compared by skeleton too). */
  translit: boolean;
  /** Street + number + city (hub/mpi/addresses.ts), for blocking. */
  addressKey?: string;
}

/** A generational suffix at the end of a Latin name part: Smith Jr., John III. */
const SUFFIX = /[\s,]+(jr|jnr|junior|sr|snr|senior|ii|iii|iv|2nd|3rd|4th)\.?$/i;
const SUFFIXES: Record<string, string> = { jr: 'jr', jnr: 'jr', junior: 'jr', sr: 'sr', snr: 'sr', senior: 'sr', ii: 'ii', '2nd': 'ii', iii: 'iii', '3rd': 'iii', iv: 'iv', '4th': 'iv' };

function splitSuffix(name: string | undefined): [string | undefined, string | undefined] {
  if (!name) return [name, undefined];
  const m = SUFFIX.exec(name.trim());
  return m ? [name.trim().slice(0, m.index), SUFFIXES[m[1]!.toLowerCase()]] : [name, undefined];
}

export function featuresOf(record: PersonRecord): PersonFeatures {
  const [familyText, familySuffix] = splitSuffix(record.family);
  const [givenText, givenSuffix] = splitSuffix(record.given);
  const suffix = record.suffix ? (SUFFIXES[record.suffix.toLowerCase().replace(/[^a-z0-9]/g, '')] ?? undefined) : (givenSuffix ?? familySuffix);
  const family = normaliseName(familyText);
  const given = normaliseName(givenText);
  const birth = normaliseDate(record.birthDate);
  const sex = normaliseSex(record.sex);
  // A resident ID typed into the phone field (a common slip at registration desks) is read as one.
  let residentId = record.residentId?.trim();
  let phone = record.phone;
  if (!residentId && phone && /^\d{17}[\dXx]$/.test(phone.replace(/[\s-]/g, ''))) {
    residentId = phone;
    phone = undefined;
  }
  const rid = residentId ? parseResidentId(residentId) : undefined;
  // An ID whose birth date or sex contradicts the record is someone else's (a newborn registered
  // under a parent's number) or mistyped: weak evidence only.
  const ridStrong = !!rid?.valid && (!birth || birth === rid.birthDate) && (!sex || sex === rid.sex);
  const ids: Identity[] = (record.identities ?? []).map(decodeIdentity);
  const other = record.otherId?.replace(/\s/g, '');
  if (other) ids.push({ system: 'other', value: other, valid: true });
  const address = normaliseText(record.address);
  return {
    id: record.id,
    family,
    given,
    familySound: soundKey(family, true),
    givenSound: soundKey(given, false),
    han: hasHan(`${family ?? ''}${given ?? ''}`),
    birth: birth ?? (ridStrong ? rid?.birthDate : undefined),
    sex: sex ?? (rid?.valid ? rid.sex : undefined),
    rid,
    ridStrong,
    phone: normalisePhone(phone, record.country),
    email: record.email?.trim().toLowerCase() || undefined,
    address,
    city: normaliseText(record.city),
    postcode: record.postcode?.replace(/\s/g, '') || undefined,
    otherId: ids.length ? `${ids[0]!.system}|${ids[0]!.value}` : undefined,
    ...(ids.length ? { ids } : {}),
    ...(suffix ? { suffix } : {}),
    translit: hasOtherScript(`${record.family ?? ''}${record.given ?? ''}`),
    addressKey: address ? addressKey(record.address, record.city ?? record.postcode) : undefined,
  };
}

export function normaliseDate(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const digits = value.replace(/[-/.\s]/g, '').slice(0, 8);
  return /^\d{8}$/.test(digits) ? digits : undefined;
}

function normaliseSex(value: string | undefined): 'M' | 'F' | undefined {
  const v = value?.trim().toLowerCase();
  if (!v) return undefined;
  if (v === 'm' || v === 'male' || v === '1' || v === '男') return 'M';
  if (v === 'f' || v === 'female' || v === '2' || v === '女') return 'F';
  return undefined;
}

function normaliseText(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const text = hasHan(value) ? (normaliseName(value) ?? '') : value.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim();
  return text || undefined;
}

/** Day and month in ascending order: a record with them transposed lands in the same block. */
function birthKey(birth: string): string {
  const m = birth.slice(4, 6);
  const d = birth.slice(6, 8);
  return birth.slice(0, 4) + (m < d ? m + d : d + m);
}

/**
 * Blocking keys: two records are compared only if they share one. Each key is selective, so the
 * candidates per record stay few and the cost grows about linearly with the records; together they
 * tolerate an error in any one field. Keys of very common values (张伟 born 1980) are capped by the
 * caller, which is why no key is a name alone.
 */
export function blockingKeys(f: PersonFeatures): string[] {
  const keys: string[] = [];
  if (f.rid && f.rid.value.length >= 15) keys.push(`rid:${f.rid.value}`);
  if (f.rid?.valid && f.rid.birthDate && f.familySound) keys.push(`ridb:${f.familySound}|${f.rid.birthDate}`);
  const b = f.birth && isRealDate(f.birth) ? birthKey(f.birth) : f.birth;
  if (b && f.familySound) keys.push(`fb:${f.familySound}|${b}`);
  if (b && f.givenSound) keys.push(`gb:${f.givenSound}|${b}`);
  if (f.familySound && f.givenSound) {
    keys.push(`fg:${f.familySound}|${f.givenSound}`);
    keys.push(`fg:${f.givenSound}|${f.familySound}`);
  }
  // Latin given names also under each of their aliases (Robert / Bob): a nickname meets its name.
  if (f.familySound && f.givenSound && !f.han) for (const alias of aliasesOf(f.givenSound)) keys.push(`fa:${f.familySound}|${alias < f.givenSound ? `${alias}|${f.givenSound}` : `${f.givenSound}|${alias}`}`);
  // Latin names also by their Soundex codes, both parts, in either order: a typo in each part
  // (Rwoe Caleb / Caleb Rowe, Olievr Waton / Oliver Watson) keeps the codes of both.
  if (f.familySound && f.givenSound && !f.han) {
    const [x, y] = [soundex(f.familySound), soundex(f.givenSound)].sort();
    keys.push(`sx:${x}|${y}`);
  }
  if (f.phone) keys.push(`ph:${f.phone}`);
  for (const id of f.ids ?? []) if (id.value.length >= 4) keys.push(`oid:${id.system.split(':')[0]}|${id.value}`);
  if (f.email) keys.push(`em:${f.email}`);
  if (b && f.postcode) keys.push(`pb:${f.postcode}|${b.slice(0, 4)}`);
  if (f.familySound && f.postcode) keys.push(`fp:${f.familySound}|${f.postcode}`);
  if (f.familySound && f.city) keys.push(`fc:${f.familySound}|${f.city}`);
  if (f.givenSound && f.city) keys.push(`gc:${f.givenSound}|${f.city}`);
  if (f.email) keys.push(`eu:${f.email.split('@')[0]}`);
  // The birth date alone catches a record whose two names both changed in sound (FEBRL and Splink
  // typos: without it fake_1000 F1 0.917 → 0.863). Hanzi names do not change in sound that way —
  // homophones, variants and pinyin spellings share the family and given sound keys above — and in
  // the 1,000,000 generated records a birth date has 31 holders on average: strangers to score for
  // every record (the 1M sync, run after run: 576.1 s → 433.4 s, the same links).
  if (f.birth && !f.han) keys.push(`b:${f.birth}`);
  // Street + number + city: people at one address whose names and birth dates both changed (an
  // initial for a given name and a mistyped date). Only without Hanzi names, like the birth-date
  // key: Hanzi names meet on their sound keys, and the generated addresses hold 5–21 people at 1M.
  if (f.addressKey && !f.han) keys.push(`ad:${f.addressKey}`);
  return [...new Set(keys)];
}
