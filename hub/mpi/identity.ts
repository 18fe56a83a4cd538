/**
 * Identity systems: every identifier a member states for a patient (PID-3 repetitions, PID-19,
 * PID-20, FHIR `Patient.identifier`) is put into the system it belongs to — the resident ID, a
 * Hong Kong/Macau or Taiwan travel permit, the foreigner's permanent residence ID, a passport of
 * one issuing country, the national medical insurance number, a US social security number, a
 * driver's licence of one authority, another country's national ID — by its type (HL7 table
 * 0203), its assigning authority and the hub's table (config `identity.systems`, over built-in
 * defaults), and normalised with that system's own checks. Two records with the same value in one
 * system are strong evidence; two different values in a system that is one per person are
 * evidence against. The member's own record numbers (MR, PI, …) are not identities: they stay
 * the member's key for its record (`source_patient.mrn`). Pure, apart from the process-wide table
 * set once from the configuration (`useIdentityConfig`).
 */
import { z } from 'zod';
import { parseResidentId, residentIdCheckChar } from './residentId';

/** What the index knows of a system: how much one value says about one person. */
export interface IdentitySystem {
  /** One value per person at a time: an exact agreement may link on its own (with the family name). */
  unique: boolean;
  /**
   * A person keeps the value for life: two different values that both pass the system's check
   * character are two people (NO_MATCH); else (a renewed document, or a number without a check,
   * where a typo cannot be told apart) at most review.
   */
  lifelong: boolean;
}

/** Built-in systems (custom ones are declared in the configuration). Passports are `passport:<country>`, licences `dl:<authority>`, national IDs `ni:<country>`. */
export const BUILT_IN_SYSTEMS: Record<string, IdentitySystem> = {
  'cn-resident': { unique: true, lifelong: true },
  'cn-hkmo-permit': { unique: true, lifelong: false },
  'cn-tw-permit': { unique: true, lifelong: false },
  // The 2017 number stays with its holder across renewals of the card (a 2004 number has no check: at most review).
  'cn-foreigner-pr': { unique: true, lifelong: true },
  'cn-medical-insurance': { unique: true, lifelong: true },
  'us-ssn': { unique: true, lifelong: true },
  passport: { unique: true, lifelong: false },
  dl: { unique: true, lifelong: false },
  ni: { unique: true, lifelong: true },
  /** A number of unknown kind (FEBRL's soc_sec_id, an untyped PID-3 repetition of another authority): evidence by weight only. */
  other: { unique: false, lifelong: false },
};

const systemName = z.string().regex(/^[a-z][a-z0-9-]*(:[A-Za-z0-9._-]+)?$/, 'a system name: lower-case letters, digits and -, optionally :qualifier');

/** `identity` in the hub configuration. */
export const identityConfigSchema = z
  .object({
    /**
     * Which system an identifier is in, first rule that fits: by member, assigning authority
     * (FHIR `identifier.system`, the system the converter made of CX-4, or the CX-4 namespace
     * itself) and type (table 0203). `system:
     * null` ignores such identifiers (a member's own numbering under another type code).
     */
    systems: z
      .array(
        z
          .object({
            member: z.string().min(1).optional(),
            authority: z.string().min(1).optional(),
            type: z.string().min(1).optional(),
            system: systemName.nullable(),
          })
          .strict()
          .refine((r) => r.authority !== undefined || r.type !== undefined, { message: 'give authority or type' }),
      )
      .default([]),
    /** Systems of the site's own (beside the built-in ones), and what one value says. */
    custom: z.record(systemName, z.object({ unique: z.boolean().default(true), lifelong: z.boolean().default(false) }).strict()).default({}),
    /** A member's country (ISO 3166 alpha-2): the default for phone numbers written without a country code. Unset: CN. */
    memberCountries: z.record(z.string().min(1), z.string().regex(/^[A-Z]{2}$/)).default({}),
  })
  .strict();
export type IdentityConfig = z.infer<typeof identityConfigSchema>;

/** An identifier as the member states it. */
export interface StatedIdentifier {
  value: string;
  /** Table 0203 code (CX-5, FHIR identifier.type). */
  type?: string;
  /** Assigning authority: FHIR `identifier.system`, or the CX-4 namespace. */
  authority?: string;
}

/** An identifier placed in its system, with a value in canonical form. */
export interface Identity {
  system: string;
  value: string;
  /** The system's own check passed (false: a shape or check character is wrong; weak evidence only). */
  valid: boolean;
}

/** Types that number a member's own records, not a person. */
/** Table 0203 types of a member's own record numbers (never an identity of the person). */
export const RECORD_TYPES = new Set(['MR', 'PI', 'PT', 'PN', 'AN', 'VN', 'FI', 'MRT', 'EN', 'BR', 'RRI', 'LR', 'U', 'MB', 'PRN', 'XX']);
const RESIDENT_ID_SYSTEMS = new Set(['urn:oid:2.16.156.10011.1.3']);

/** ISO 3166 alpha-3 → alpha-2 for the authorities members name (PPN^USA, NNCHN). Others: as given. */
const ALPHA3: Record<string, string> = {
  CHN: 'CN', USA: 'US', RUS: 'RU', GBR: 'GB', FRA: 'FR', DEU: 'DE', JPN: 'JP', KOR: 'KR', PRK: 'KP', KHM: 'KH', VNM: 'VN', THA: 'TH', IND: 'IN',
  PAK: 'PK', SAU: 'SA', ARE: 'AE', EGY: 'EG', IRN: 'IR', IRQ: 'IQ', SYR: 'SY', JOR: 'JO', LBN: 'LB', MAR: 'MA', DZA: 'DZ', TUN: 'TN', TUR: 'TR',
  UKR: 'UA', BLR: 'BY', KAZ: 'KZ', MNG: 'MN', CAN: 'CA', AUS: 'AU', NZL: 'NZ', SGP: 'SG', MYS: 'MY', IDN: 'ID', PHL: 'PH', HKG: 'HK', MAC: 'MO',
  TWN: 'TW', ITA: 'IT', ESP: 'ES', PRT: 'PT', NLD: 'NL', BRA: 'BR', MEX: 'MX', ARG: 'AR', NGA: 'NG', ZAF: 'ZA', LAO: 'LA', MMR: 'MM', NPL: 'NP',
};

function country(code: string | undefined): string | undefined {
  const c = code?.trim().toUpperCase();
  if (!c) return undefined;
  if (/^[A-Z]{2}$/.test(c)) return c;
  if (/^[A-Z]{3}$/.test(c)) return ALPHA3[c] ?? c;
  return undefined;
}

/** Uppercase letters and digits only. */
function clean(value: string): string {
  return value.normalize('NFKC').toUpperCase().replace(/[^0-9A-Z]/g, '');
}

/** ISO 7064 MOD 11-2 over 17 digits (the resident ID's check, shared by the 2017 foreigner's permanent residence ID). */
function mod112(value: string): boolean {
  return /^\d{17}[\dX]$/.test(value) && residentIdCheckChar(value.slice(0, 17)) === value[17];
}

/**
 * A value in a built-in system: canonical form and whether the system's check passes. Shapes:
 * Home Return Permit (港澳居民来往内地通行证) H/M + 8 digits (+ 2 digits counting renewals, dropped:
 * the person is the same); Taiwan compatriot permit (台湾居民来往大陆通行证) 8 digits since 2015, 10
 * digits (+ a letter) before; foreigner's permanent residence ID 18 digits starting 9 with MOD
 * 11-2 (2017) or 3 letters + 12 digits (2004); US SSN 9 digits, no 000/666/9xx area, no 00 group,
 * no 0000 serial; Chinese passports E/G + 8 characters; other passports 6–9 letters and digits.
 */
export function normaliseIdentity(system: string, raw: string): Identity | undefined {
  let value = clean(raw);
  if (!value) return undefined;
  const base = system.split(':')[0]!;
  let valid = true;
  switch (base) {
    case 'cn-resident': {
      const rid = parseResidentId(value);
      return { system, value: rid.value, valid: rid.valid };
    }
    case 'cn-hkmo-permit':
      if (/^[HM]\d{10}$/.test(value)) value = value.slice(0, 9);
      valid = /^[HM]\d{8}$/.test(value);
      break;
    case 'cn-tw-permit':
      valid = /^\d{8}$/.test(value) || /^\d{10}[A-Z]?$/.test(value);
      break;
    case 'cn-foreigner-pr':
      valid = (value.length === 18 && value[0] === '9' && mod112(value)) || /^[A-Z]{3}\d{12}$/.test(value);
      break;
    case 'cn-medical-insurance':
      // Mostly the resident ID itself; else the insurer's own number.
      valid = value.length === 18 ? mod112(value) : value.length >= 8;
      break;
    case 'us-ssn': {
      valid = /^\d{9}$/.test(value) && !/^(000|666|9)/.test(value) && value.slice(3, 5) !== '00' && value.slice(5) !== '0000';
      break;
    }
    case 'passport':
      valid = system === 'passport:CN' ? /^[EG][0-9A-Z]\d{7}$/.test(value) : /^[0-9A-Z]{6,9}$/.test(value);
      break;
    default:
      valid = value.length >= 4;
  }
  return { system, value, valid };
}

export class IdentityTable {
  private readonly systems: Record<string, IdentitySystem>;

  constructor(private readonly config: IdentityConfig = identityConfigSchema.parse({})) {
    this.systems = { ...BUILT_IN_SYSTEMS, ...config.custom };
  }

  /** How much a value of `system` says (a qualified system, `passport:US`, is its base's). */
  system(system: string): IdentitySystem {
    return this.systems[system] ?? this.systems[system.split(':')[0]!] ?? BUILT_IN_SYSTEMS.other!;
  }

  /** The member's country for phone numbers without a country code. */
  countryOf(member: string): string {
    return this.config.memberCountries[member] ?? 'CN';
  }

  /**
   * The system of a stated identifier (undefined: not an identity — a record number, or a type
   * the table says to ignore). Configured rules first, then the built-in reading of type and
   * authority, then the value's shape (an 18-digit resident ID with a valid check character).
   */
  systemOf(member: string, id: StatedIdentifier): string | undefined {
    const type = id.type?.trim().toUpperCase() || undefined;
    const authority = id.authority?.trim() || undefined;
    // A CX-4 namespace arrives as `urn:yilian:<member>:id:<namespace>` (mappings/hl7v2 hdToSystem): a rule may name either.
    const ns = /^urn:yilian:[^:]+:id:(.+)$/.exec(authority ?? '')?.[1];
    const namespace = ns !== undefined ? decodeURIComponent(ns) : undefined;
    for (const rule of this.config.systems) {
      if (rule.member !== undefined && rule.member !== member) continue;
      if (rule.authority !== undefined && rule.authority !== authority && rule.authority !== namespace) continue;
      if (rule.type !== undefined && rule.type.toUpperCase() !== type) continue;
      return rule.system ?? undefined;
    }
    if (authority && RESIDENT_ID_SYSTEMS.has(authority)) return 'cn-resident';
    // A resident ID in a field typed for another national number (PID-19 is SS by default, for a
    // member whose resident-ID mapping is not configured): by shape; its check decides how strong.
    if ((!type || type === 'SS' || type === 'NI') && /^\d{17}[\dXx]$/.test(id.value.replace(/[\s-]/g, ''))) return 'cn-resident';
    const auth = authority?.toUpperCase() ?? '';
    const authCountry = country(auth.replace(/^.*[:/|]/, ''));
    switch (type) {
      case 'PPN':
        return `passport:${authCountry ?? 'unknown'}`;
      case 'DL':
        return `dl:${auth ? auth.replace(/^.*[:/|]/, '') : 'unknown'}`;
      case 'SS':
        return authCountry && authCountry !== 'US' ? `ni:${authCountry}` : 'us-ssn';
      case 'PRC':
        return 'cn-foreigner-pr';
      case 'HC':
      case 'SN':
      case 'MC':
      case 'MA':
        return 'cn-medical-insurance';
      case 'NI':
      case 'NH':
        return authCountry === 'CN' ? 'cn-resident' : `ni:${authCountry ?? 'unknown'}`;
      default:
        if (type && /^NN[A-Z]{3}$/.test(type)) return type === 'NNCHN' ? 'cn-resident' : `ni:${country(type.slice(2))}`;
        if (type && RECORD_TYPES.has(type)) return undefined;
    }
    if (/^\d{17}[\dXx]$/.test(id.value.trim())) return 'cn-resident'; // by shape (its check decides how strong)
    return type ? `other:${type}` : undefined;
  }

  /** Every identity of a patient's identifiers, each once (the member's own record number left out). */
  identities(member: string, ids: StatedIdentifier[], mrn?: string): Identity[] {
    const out = new Map<string, Identity>();
    for (const id of ids) {
      if (!id.value || id.value === mrn) continue;
      const system = this.systemOf(member, id);
      if (!system) continue;
      const identity = normaliseIdentity(system, id.value);
      if (identity) out.set(`${identity.system}|${identity.value}`, identity);
    }
    return [...out.values()];
  }
}

/**
 * A value whose validity is a check character (the resident ID, the 2017 foreigner's permanent
 * residence ID, a medical insurance number that is a resident ID): two valid values that differ
 * are two numbers, not a typo. Without a check (SSN, passports, licences) a desk's slip of two
 * characters cannot be told from another person's number.
 */
export function checked(i: Identity): boolean {
  const base = i.system.split(':')[0]!;
  return i.valid && i.value.length === 18 && (base === 'cn-resident' || base === 'cn-foreigner-pr' || base === 'cn-medical-insurance');
}

let table = new IdentityTable();

/** The process's table, from the configuration (`parseConfig` sets it). */
export function identityTable(): IdentityTable {
  return table;
}

export function useIdentityConfig(config: IdentityConfig | undefined): void {
  table = new IdentityTable(config);
}

/**
 * Identities in a record: `system|value`, a `!` before the value when the system's check fails.
 * Strings keep the stored record (`mpi_source.record`) flat JSON.
 */
export function encodeIdentity(i: Identity): string {
  return `${i.system}|${i.valid ? '' : '!'}${i.value}`;
}

export function decodeIdentity(text: string): Identity {
  const bar = text.indexOf('|');
  const system = text.slice(0, bar);
  const rest = text.slice(bar + 1);
  return rest.startsWith('!') ? { system, value: rest.slice(1), valid: false } : { system, value: rest, valid: true };
}

/** Two systems that compare: the same, or passports / licences / national IDs one of which names no issuer. */
export function sameSystem(a: string, b: string): boolean {
  if (a === b) return true;
  const [ba, qa] = a.split(':');
  const [bb, qb] = b.split(':');
  return ba === bb && ba !== 'other' && (qa === 'unknown' || qb === 'unknown');
}
