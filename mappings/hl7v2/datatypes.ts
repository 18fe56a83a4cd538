/**
 * HL7 v2 data types → FHIR R4 data types. Pure functions, no I/O, no terminology server.
 *
 * Input: one repetition of a field as its component array (`Components`), as returned by
 * `Hl7Segment.components(n, rep)` (mappings/hl7v2/message.ts): components are already unescaped and
 * sub-components are still joined by the sub-component delimiter (`&` unless MSH-2 says otherwise;
 * pass `sub` where a function takes it). Caveat: an escaped `\T\` inside a component is unescaped to
 * the sub-component delimiter by `components()`, so it will be split like a real sub-component.
 *
 * Output: FHIR R4 JSON, or `undefined` when nothing is valued. Empty components are omitted, values
 * are trimmed (FHIR strings SHOULD NOT carry leading/trailing whitespace).
 *
 * `""` (explicit null, "delete this at the receiver") is NOT handled here: it is a field-level
 * instruction, so callers check `Hl7Segment.isExplicitNull(n)` before calling. Passed in here, `""`
 * is just text: time/number functions reject it (undefined), string-valued ones would keep it.
 *
 * Mappings follow HL7's "HL7 Version 2 to FHIR" IG (v2-to-fhir, http://hl7.org/fhir/uv/v2mappings):
 * the data type maps (XPN[HumanName], CX[Identifier], XAD[Address], XTN[ContactPoint],
 * CWE[CodeableConcept], XCN[Practitioner], SN, CQ) and its vocabulary ConceptMaps (tables 0001,
 * 0004, 0085, 0123, 0190, 0200, 0201, 0202). Where the IG leaves a code unmapped we say what we do.
 */
import type { Hl7Segment } from './message';
import { parseHl7Time } from './time';

/** One repetition of a field: components (1-based in HL7, 0-based here), sub-components still joined. */
export type Components = readonly string[];

// ---------------------------------------------------------------------------------------------
// FHIR R4 JSON shapes (only what these functions produce)

export interface Coding {
  system?: string;
  version?: string;
  code?: string;
  display?: string;
}
export interface CodeableConcept {
  coding?: Coding[];
  text?: string;
}
export interface Period {
  start?: string;
  end?: string;
}
export interface Extension {
  url: string;
  valueString?: string;
  valueCode?: string;
}
export interface HumanName {
  extension?: Extension[];
  use?: 'usual' | 'official' | 'temp' | 'nickname' | 'anonymous' | 'old' | 'maiden';
  text?: string;
  family?: string;
  given?: string[];
  prefix?: string[];
  suffix?: string[];
  period?: Period;
}
export interface Identifier {
  use?: 'usual' | 'official' | 'temp' | 'secondary' | 'old';
  type?: CodeableConcept;
  system?: string;
  value?: string;
  period?: Period;
  assigner?: { display?: string };
}
export interface Address {
  use?: 'home' | 'work' | 'temp' | 'old' | 'billing';
  type?: 'postal' | 'physical' | 'both';
  text?: string;
  line?: string[];
  _line?: ({ extension: Extension[] } | null)[];
  city?: string;
  district?: string;
  state?: string;
  postalCode?: string;
  country?: string;
  period?: Period;
}
export interface ContactPoint {
  system?: 'phone' | 'fax' | 'email' | 'pager' | 'url' | 'sms' | 'other';
  value?: string;
  use?: 'home' | 'work' | 'temp' | 'old' | 'mobile';
  rank?: number;
  period?: Period;
}
export interface Quantity {
  value?: number;
  comparator?: '<' | '<=' | '>=' | '>';
  unit?: string;
  system?: string;
  code?: string;
}
export interface Range {
  low?: Quantity;
  high?: Quantity;
}
export interface Ratio {
  numerator?: Quantity;
  denominator?: Quantity;
}

// ---------------------------------------------------------------------------------------------
// helpers

/** The components of field n, repetition rep, of a segment (see the caveat above). */
export function componentsOf(segment: Hl7Segment, n: number, rep = 0): Components {
  return segment.components(n, rep);
}

/** Component i (1-based), sub-component s (1-based), trimmed; '' when absent. */
function part(c: Components, i: number, s = 1, sub = '&'): string {
  const component = c[i - 1] ?? '';
  return (component.split(sub)[s - 1] ?? '').trim();
}

/** Component i (1-based) whole (sub-components joined), trimmed. */
function comp(c: Components, i: number): string {
  return (c[i - 1] ?? '').trim();
}

function nonEmpty(values: string[]): string[] | undefined {
  const kept = values.filter((v) => v !== '');
  return kept.length > 0 ? kept : undefined;
}

/** Drop undefined properties so results compare and serialise cleanly. */
function clean<T extends object>(o: T): T | undefined {
  // hot (every data type goes through it): a for-in loop, no entries/keys arrays
  const out: Record<string, unknown> = {};
  let any = false;
  for (const k in o) {
    const v = o[k];
    if (v !== undefined) {
      out[k] = v;
      any = true;
    }
  }
  return any ? (out as T) : undefined;
}

function period(start: string | undefined, end: string | undefined): Period | undefined {
  return clean({ start, end });
}

// ---------------------------------------------------------------------------------------------
// TS / DTM / DT

const tsShape = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$/;

/** An ISO 8601 offset, `+08:00`, for minutes east of UTC. */
export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/**
 * TS/DTM (or the first component of a v2.3–2.5 TS) → FHIR `dateTime`, keeping the sender's precision
 * and stated UTC offset: '198908181126+0215' → '1989-08-18T11:26:00+02:15', '2019' → '2019',
 * '201901' → '2019-01', '20190102' → '2019-01-02'. The local time is kept as sent (not shifted).
 * FHIR requires seconds and a zone once a time is given, so hour/minute precision is padded with
 * ':00' and a value without an offset gets `defaultOffsetMinutes` (members default to +08:00).
 * A date-only value drops any stated offset (FHIR dates have no zone). Invalid → undefined.
 */
export function toDateTime(value: string, defaultOffsetMinutes = 8 * 60): string | undefined {
  const v = value.trim();
  const m = tsShape.exec(v);
  if (!m) return undefined;
  const parsed = parseHl7Time(v, defaultOffsetMinutes);
  if (!parsed) return undefined; // out-of-range month/day/hour…
  const [, y, mo, d, h, mi, s, frac] = m;
  if (mo === undefined) return y!;
  if (d === undefined) return `${y}-${mo}`;
  if (h === undefined) return `${y}-${mo}-${d}`;
  const fraction = frac !== undefined ? `.${frac}` : '';
  return `${y}-${mo}-${d}T${h}:${mi ?? '00'}:${s ?? '00'}${fraction}${formatOffset(parsed.offsetMinutes)}`;
}

/**
 * TS/DTM/DT → FHIR `date` (e.g. Patient.birthDate): the calendar date as the sender wrote it, at the
 * sender's precision ('19880818112600+0215' → '1988-08-18', '198808' → '1988-08'). Not shifted to
 * UTC: a birth date is a local calendar date.
 */
export function toDate(value: string): string | undefined {
  const v = value.trim();
  const m = tsShape.exec(v);
  if (!m || !parseHl7Time(v)) return undefined;
  const [, y, mo, d] = m;
  if (mo === undefined) return y!;
  if (d === undefined) return `${y}-${mo}`;
  return `${y}-${mo}-${d}`;
}

/** DR (date range: start&end, as one component with sub-components) → Period. */
function drToPeriod(component: string, sub: string, defaultOffsetMinutes: number): Period | undefined {
  const [start = '', end = ''] = component.split(sub);
  return period(toDateTime(start, defaultOffsetMinutes), toDateTime(end, defaultOffsetMinutes));
}

// ---------------------------------------------------------------------------------------------
// XPN → HumanName

/** Table 0200 name type → HumanName.use, per the IG's ConceptMap (table-hl70200-to-name-use). A, B, C,
 * F, I, K, NB, NOUSE, P, REL, S, T, U are left unmapped by the IG and so carry no `use` here. */
export const nameUse: Readonly<Record<string, NonNullable<HumanName['use']>>> = {
  L: 'official',
  R: 'official',
  D: 'usual',
  M: 'maiden',
  N: 'nickname',
  MSK: 'anonymous',
  NAV: 'temp',
  TEMP: 'temp',
  BAD: 'old',
};

const hanOnly = /^[\p{Script=Han}·・]+$/u;

/**
 * Display text of a name: Chinese (Hanzi family and given) is written family-then-given without a
 * space (张伟); otherwise "given… family", or "family given…" when the name assembly order (XPN-11)
 * is F (family first).
 */
export function nameText(family: string | undefined, given: string[] | undefined, assemblyOrder = ''): string | undefined {
  const g = given ?? [];
  if (family && g.length > 0 && hanOnly.test(family) && g.every((x) => hanOnly.test(x))) return family + g.join('');
  const parts = assemblyOrder === 'F' ? [family ?? '', ...g] : [...g, family ?? ''];
  const text = parts.filter((p) => p !== '').join(' ');
  return text === '' ? undefined : text;
}

/**
 * XPN → HumanName (IG XPN[HumanName]): family XPN-1.1; given XPN-2 then XPN-3 (middle);
 * suffix XPN-4, XPN-6 (degree), XPN-14 (professional suffix); prefix XPN-5; use from XPN-7;
 * period from XPN-12/13, else XPN-10 (DR). XPN-15 "called by" is a separate nickname: see
 * `xpnCalledBy`. `text` from `nameText`.
 */
export function xpnToHumanName(c: Components, sub = '&', defaultOffsetMinutes = 8 * 60): HumanName | undefined {
  const family = part(c, 1, 1, sub) || undefined;
  const given = nonEmpty([comp(c, 2), comp(c, 3)]);
  if (!family && !given) return undefined;
  const effective = period(toDateTime(comp(c, 12), defaultOffsetMinutes), toDateTime(comp(c, 13), defaultOffsetMinutes));
  return clean<HumanName>({
    use: nameUse[comp(c, 7).toUpperCase()],
    text: nameText(family, given, comp(c, 11).toUpperCase()),
    family,
    given,
    prefix: nonEmpty([comp(c, 5)]),
    suffix: nonEmpty([comp(c, 4), comp(c, 6), comp(c, 14)]),
    period: effective ?? drToPeriod(c[9] ?? '', sub, defaultOffsetMinutes),
  });
}

/** XPN-15 "called by" → its own HumanName { use: 'nickname', given } (IG XPN[HumanName] row 15). */
export function xpnCalledBy(c: Components): HumanName | undefined {
  const calledBy = comp(c, 15);
  return calledBy ? { use: 'nickname', given: [calledBy] } : undefined;
}

/** FHIR core extension for the language of an element; on a HumanName, the script it is written in. */
export const LANGUAGE_EXTENSION = 'http://hl7.org/fhir/StructureDefinition/language';
/** BCP 47 tag for Mandarin written in pinyin. */
export const PINYIN = 'zh-Latn-pinyin';

/**
 * A name that a member sends only in pinyin (`ZHANG^SAN` for 张三): written in Latin letters only, it
 * is tagged `zh-Latn-pinyin` so the patient index compares it with the pinyin of Hanzi names instead
 * of reading it as a foreign name. A name with Hanzi in it is left as it is.
 */
export function asPinyin(name: HumanName): HumanName {
  const text = [name.family ?? '', ...(name.given ?? [])].join(' ');
  if (!/^[A-Za-zÜüÀ-ž' .:·-]+$/.test(text.trim())) return name;
  return { ...name, extension: [...(name.extension ?? []), { url: LANGUAGE_EXTENSION, valueCode: PINYIN }] };
}

// ---------------------------------------------------------------------------------------------
// coding systems (table 0396) and CWE/CE/CNE → CodeableConcept

/** HL7 table 0396 coding-system names → FHIR system URIs (FHIR R4 / terminology.hl7.org names). */
export const codingSystems: Readonly<Record<string, string>> = {
  LN: 'http://loinc.org',
  SCT: 'http://snomed.info/sct',
  I10: 'http://hl7.org/fhir/sid/icd-10',
  ICD10: 'http://hl7.org/fhir/sid/icd-10',
  I10C: 'http://hl7.org/fhir/sid/icd-10-cm',
  'ICD10CM': 'http://hl7.org/fhir/sid/icd-10-cm',
  I9: 'http://hl7.org/fhir/sid/icd-9',
  I9C: 'http://hl7.org/fhir/sid/icd-9-cm',
  I9CDX: 'http://hl7.org/fhir/sid/icd-9-cm',
  UCUM: 'http://unitsofmeasure.org',
  CVX: 'http://hl7.org/fhir/sid/cvx',
  MVX: 'http://terminology.hl7.org/CodeSystem/MVX',
  NDC: 'http://hl7.org/fhir/sid/ndc',
  RXNORM: 'http://www.nlm.nih.gov/research/umls/rxnorm',
  CPT: 'http://www.ama-assn.org/go/cpt',
  C4: 'http://www.ama-assn.org/go/cpt',
  CDCREC: 'urn:oid:2.16.840.1.113883.6.238',
  NUCC: 'http://nucc.org/provider-taxonomy',
  ISO3166_1: 'urn:iso:std:iso:3166',
  // NCI Thesaurus (route of administration in VXU RXR-1, e.g. C28161 intramuscular)
  NCIT: 'http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl',
  ICD11: 'http://id.who.int/icd/release/11/mms',
};

/**
 * Coding-system name (CWE-3/6/12) → system URI. `HL7nnnn` (and `HL7-nnnn`) → the v2 table's
 * terminology.hl7.org code system; the member's own aliases (config `codingSystemAliases`, e.g.
 * `ICD10-CN` → the clinical edition); known 0396 names via `codingSystems`; anything else is a local
 * system of that member: `urn:yilian:<member>:<name>` (`urn:yilian:<member>:local` when unnamed).
 * The map stage resolves the same aliases on local systems, for callers that pass none here.
 */
export function codingSystemUri(name: string, memberId: string, aliases?: Readonly<Record<string, string>>): string {
  const n = name.trim();
  const alias = aliases && n !== '' ? (aliases[n] ?? aliases[n.toUpperCase()]) : undefined;
  if (alias) return alias;
  const table = /^HL7-?(\d{4})$/i.exec(n);
  if (table) return `http://terminology.hl7.org/CodeSystem/v2-${table[1]}`;
  const known = codingSystems[n.toUpperCase()];
  if (known) return known;
  return `urn:yilian:${memberId}:${n === '' ? 'local' : encodeURIComponent(n)}`;
}

function coding(code: string, display: string, systemName: string, version: string, memberId: string): Coding | undefined {
  if (code === '') return undefined;
  return clean<Coding>({
    system: codingSystemUri(systemName, memberId),
    version: version || undefined,
    code,
    display: display || undefined,
  });
}

/**
 * CWE/CE/CNE → CodeableConcept (IG CWE[CodeableConcept]): codings from (1,2,3,+7 version),
 * alternate (4,5,6,+8) and second alternate (10,11,12,+13); when CWE-3 is empty but CWE-14 (coding
 * system OID) is valued, system is `urn:oid:<CWE-14>`. text = CWE-9 original text, else the first
 * display, else a lone CWE-2 text when there is no code at all.
 */
export function cweToCodeableConcept(c: Components, memberId: string): CodeableConcept | undefined {
  const oid = comp(c, 14);
  const primarySystem = comp(c, 3);
  const first = coding(comp(c, 1), comp(c, 2), primarySystem, comp(c, 7), memberId);
  if (first && primarySystem === '' && oid !== '') first.system = `urn:oid:${oid}`;
  const codings = [first, coding(comp(c, 4), comp(c, 5), comp(c, 6), comp(c, 8), memberId), coding(comp(c, 10), comp(c, 11), comp(c, 12), comp(c, 13), memberId)].filter(
    (x): x is Coding => x !== undefined,
  );
  const text = comp(c, 9) || codings.find((x) => x.display)?.display || (codings.length === 0 ? comp(c, 2) || comp(c, 5) : '') || undefined;
  return clean<CodeableConcept>({ coding: codings.length > 0 ? codings : undefined, text });
}

// ---------------------------------------------------------------------------------------------
// HD / CX → Identifier

/**
 * HD (namespace&universal id&universal id type, as sub-components of one component) → a system URI:
 * ISO → `urn:oid:`, UUID → `urn:uuid:`, URI → as is; otherwise the namespace as a member-local URN
 * `urn:yilian:<member>:id:<namespace>` (a bare namespace such as "RMYY" is not a usable URI). A
 * universal id of another type (e.g. HCD, L) is not a URI and is not used as one.
 */
export function hdToSystem(hd: string, memberId: string, sub = '&'): string | undefined {
  const [namespace = '', universal = '', type = ''] = hd.split(sub).map((x) => x.trim());
  const t = type.toUpperCase();
  if (universal && t === 'ISO') return `urn:oid:${universal}`;
  if (universal && t === 'UUID') return `urn:uuid:${universal.toLowerCase()}`;
  if (universal && t === 'URI') return universal;
  if (namespace) return `urn:yilian:${memberId}:id:${encodeURIComponent(namespace)}`;
  return undefined;
}

/** Identifier type (table 0203 code) → CodeableConcept in v2-0203. */
function identifierType(code: string): CodeableConcept | undefined {
  return code ? { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code }] } : undefined;
}

/**
 * CX → Identifier (IG CX[Identifier]): value CX-1; system from CX-4 (`hdToSystem`); type from CX-5
 * (v2-0203); assigner.display CX-4.1; period CX-7/CX-8. Undefined when CX-1 is empty.
 */
export function cxToIdentifier(c: Components, memberId: string, sub = '&', defaultOffsetMinutes = 8 * 60): Identifier | undefined {
  const value = comp(c, 1);
  if (!value) return undefined;
  const authority = c[3] ?? '';
  const assigner = part(c, 4, 1, sub);
  return clean<Identifier>({
    type: identifierType(comp(c, 5)),
    system: hdToSystem(authority, memberId, sub),
    value,
    period: period(toDateTime(comp(c, 7), defaultOffsetMinutes), toDateTime(comp(c, 8), defaultOffsetMinutes)),
    assigner: assigner ? { display: assigner } : undefined,
  });
}

// ---------------------------------------------------------------------------------------------
// XAD → Address

/** Table 0190 address type → Address.use (IG ConceptMap AddressType[Use]). */
export const addressUse: Readonly<Record<string, NonNullable<Address['use']>>> = {
  H: 'home',
  B: 'work',
  O: 'work',
  C: 'temp',
  BA: 'old',
  BI: 'billing',
};
/** Table 0190 address type → Address.type (IG ConceptMap AddressType[Type]). */
export const addressType: Readonly<Record<string, NonNullable<Address['type']>>> = { M: 'postal', SH: 'postal' };

const adxp = 'http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-';

/**
 * XAD → Address (IG XAD[Address], SAD[Address]): line[0] from XAD-1 (SAD-1 street or mailing
 * address; when SAD-1 is empty, "dwelling street" from SAD-3/SAD-2), with SAD-2 street name and
 * SAD-3 dwelling number also kept as ADXP extensions on `_line[0]`; XAD-2 other designation is
 * line[1]; city 3, state 4, postalCode 5, country 6; use/type from XAD-7; district from XAD-9
 * county (its text, else its code); period from XAD-13/14, else XAD-12 (DR).
 */
export function xadToAddress(c: Components, sub = '&', defaultOffsetMinutes = 8 * 60): Address | undefined {
  const street = part(c, 1, 1, sub);
  const streetName = part(c, 1, 2, sub);
  const dwelling = part(c, 1, 3, sub);
  const first = street || [dwelling, streetName].filter((x) => x !== '').join(' ');
  const line = nonEmpty([first, comp(c, 2)]);
  const ext: Extension[] = [];
  if (streetName) ext.push({ url: `${adxp}streetName`, valueString: streetName });
  if (dwelling) ext.push({ url: `${adxp}houseNumber`, valueString: dwelling });
  const code = comp(c, 7).toUpperCase();
  const address = clean<Address>({
    use: addressUse[code],
    type: addressType[code],
    line,
    _line: line && first && ext.length > 0 ? [{ extension: ext }] : undefined,
    city: comp(c, 3) || undefined,
    district: part(c, 9, 2, sub) || part(c, 9, 1, sub) || undefined,
    state: comp(c, 4) || undefined,
    postalCode: comp(c, 5) || undefined,
    country: comp(c, 6) || undefined,
    period: period(toDateTime(comp(c, 13), defaultOffsetMinutes), toDateTime(comp(c, 14), defaultOffsetMinutes)) ?? drToPeriod(c[11] ?? '', sub, defaultOffsetMinutes),
  });
  // use/type/period alone are not an address
  if (!address || (!address.line && !address.city && !address.district && !address.state && !address.postalCode && !address.country)) return undefined;
  return address;
}

// ---------------------------------------------------------------------------------------------
// XTN → ContactPoint

/** Table 0201 telecommunication use → ContactPoint.use (IG ConceptMap TelecommunicationUseCode;
 * ORN, VHN, ASN, EMR, NET, BPN are left unmapped by the IG). */
export const telecomUse: Readonly<Record<string, NonNullable<ContactPoint['use']>>> = { PRN: 'home', WPN: 'work', PRS: 'mobile' };

/** Table 0202 equipment type → ContactPoint.system (IG ConceptMap TelecommunicationEquipmentType;
 * CP is a phone whose use is mobile). */
export const telecomSystem: Readonly<Record<string, NonNullable<ContactPoint['system']>>> = {
  PH: 'phone',
  CP: 'phone',
  FX: 'fax',
  MD: 'other',
  SAT: 'other',
  BP: 'pager',
  INTERNET: 'email',
  'X.400': 'email',
  TDD: 'other',
  TTY: 'other',
};

/**
 * XTN → ContactPoint (IG XTN[ContactPoint]). system from XTN-3 (else email when XTN-2 is NET, else
 * phone when a number is given); use from XTN-2, else mobile for CP. value: for email XTN-4 (else
 * XTN-1); for others XTN-12 unformatted number, else "+country area local ext. n" from XTN-5..8,
 * else XTN-1 (the v2.3 formatted number). rank XTN-18; period XTN-13/14.
 */
export function xtnToContactPoint(c: Components, defaultOffsetMinutes = 8 * 60): ContactPoint | undefined {
  const useCode = comp(c, 2).toUpperCase();
  const equipment = comp(c, 3).toUpperCase();
  let system = telecomSystem[equipment] ?? (useCode === 'NET' ? 'email' : undefined);
  let value: string;
  if (system === 'email') {
    value = comp(c, 4) || comp(c, 1);
  } else {
    const local = comp(c, 7);
    const composed = local
      ? [comp(c, 5) ? `+${comp(c, 5).replace(/^\+/, '')}` : '', comp(c, 6), local].filter((x) => x !== '').join(' ') + (comp(c, 8) ? ` ext. ${comp(c, 8)}` : '')
      : '';
    value = comp(c, 12) || composed || comp(c, 1);
    if (!system && value) system = 'phone';
  }
  if (!value) return undefined;
  const rank = Number(comp(c, 18));
  return clean<ContactPoint>({
    system,
    value,
    use: telecomUse[useCode] ?? (equipment === 'CP' ? 'mobile' : undefined),
    rank: Number.isInteger(rank) && rank > 0 ? rank : undefined,
    period: period(toDateTime(comp(c, 13), defaultOffsetMinutes), toDateTime(comp(c, 14), defaultOffsetMinutes)),
  });
}

// ---------------------------------------------------------------------------------------------
// XCN → Practitioner pieces

/**
 * XCN → the Identifier and HumanName of a Practitioner (IG XCN[Practitioner]): identifier value
 * XCN-1, system XCN-9 (HD), type XCN-13; name family XCN-2, given XCN-3 and XCN-4 (middle), suffix
 * XCN-5 and XCN-7 (degree) and XCN-21 (professional suffix), prefix XCN-6, use XCN-10, assembly
 * order XCN-18, period XCN-19/20.
 */
export function xcnToPractitioner(c: Components, memberId: string, sub = '&', defaultOffsetMinutes = 8 * 60): { identifier?: Identifier; name?: HumanName } | undefined {
  const value = comp(c, 1);
  const identifier = value
    ? clean<Identifier>({ type: identifierType(comp(c, 13)), system: hdToSystem(c[8] ?? '', memberId, sub), value })
    : undefined;
  // XCN 2..7 line up with XPN 1..6; XCN-10 is XPN-7, XCN-18 is XPN-11, XCN-19/20 are XPN-12/13, XCN-21 is XPN-14.
  const xpn = [c[1] ?? '', c[2] ?? '', c[3] ?? '', c[4] ?? '', c[5] ?? '', c[6] ?? '', c[9] ?? '', '', '', '', c[17] ?? '', c[18] ?? '', c[19] ?? '', c[20] ?? ''];
  const name = xpnToHumanName(xpn, sub, defaultOffsetMinutes);
  return clean({ identifier, name });
}

// ---------------------------------------------------------------------------------------------
// NM / CQ / SN → Quantity, Range, Ratio

const nmPattern = /^[+-]?(\d+\.?\d*|\.\d+)$/;

/** NM → number (HL7 NM: optional sign, digits, optional decimal point; no exponent). */
export function toNumber(nm: string): number | undefined {
  const v = nm.trim();
  return nmPattern.test(v) ? Number(v) : undefined;
}

/**
 * Units (a CWE/CE, e.g. OBX-6 or CQ-2) → the unit part of a Quantity. Conservative: `system`/`code`
 * only when a coding declares UCUM (CWE-3, else the alternate CWE-6); `unit` is the display text,
 * else the code. (FHIR qty-3: a code needs a system, so undeclared codes go to `unit` only.)
 */
export function unitsOf(units: Components | undefined, sub = '&'): Pick<Quantity, 'unit' | 'system' | 'code'> {
  if (!units) return {};
  const u = units.map((x) => x.split(sub)[0] ?? '');
  const ucum = ['UCUM'].includes(comp(u, 3).toUpperCase()) ? comp(u, 1) : comp(u, 6).toUpperCase() === 'UCUM' ? comp(u, 4) : '';
  const unit = comp(u, 2) || comp(u, 1) || comp(u, 5) || comp(u, 4);
  return clean({ unit: unit || undefined, system: ucum ? 'http://unitsofmeasure.org' : undefined, code: ucum || undefined }) ?? {};
}

/** NM value + CE/CWE units → Quantity. Undefined when the value is not a number. */
export function nmToQuantity(value: string, units?: Components, sub = '&'): Quantity | undefined {
  const n = toNumber(value);
  if (n === undefined) return undefined;
  return { value: n, ...unitsOf(units, sub) };
}

/** CQ (quantity^units, units as sub-components code&text&system…) → Quantity. */
export function cqToQuantity(c: Components, sub = '&'): Quantity | undefined {
  const units = c[1] ? c[1].split(sub) : undefined;
  return nmToQuantity(comp(c, 1), units, sub);
}

export type SnValue =
  | { kind: 'quantity'; quantity: Quantity }
  | { kind: 'range'; range: Range }
  | { kind: 'ratio'; ratio: Ratio }
  /** Not expressible as Quantity/Range/Ratio (e.g. '2+', '<>5'): the value as text, for valueString. */
  | { kind: 'string'; value: string };

const comparators = new Set(['<', '<=', '>=', '>']);

/**
 * SN (comparator^num1^separator/suffix^num2) → Observation.value[x] per the IG's OBX-5 SN rules:
 * '-' → Range(low num1, high num2); '/' or ':' → Ratio(num1/num2); no separator → Quantity with
 * the comparator (when FHIR has it; '=' means none); anything else → the text. Units (OBX-6)
 * are applied to quantities and range bounds, not to ratios.
 */
export function snToValue(c: Components, units?: Components, sub = '&'): SnValue | undefined {
  const comparator = comp(c, 1);
  const n1 = comp(c, 2);
  const separator = comp(c, 3);
  const n2 = comp(c, 4);
  if (!comparator && !n1 && !separator && !n2) return undefined;
  const u = unitsOf(units, sub);
  const q = (v: string): Quantity | undefined => {
    const n = toNumber(v);
    return n === undefined ? undefined : { value: n, ...u };
  };
  const text = (): SnValue => ({ kind: 'string', value: `${comparator}${n1}${separator}${n2}` });
  if (separator === '-' && !comparator) {
    const range = clean<Range>({ low: q(n1), high: q(n2) });
    return range && (n1 === '' || range.low) && (n2 === '' || range.high) ? { kind: 'range', range } : text();
  }
  if ((separator === '/' || separator === ':') && !comparator) {
    const a = toNumber(n1);
    const b = toNumber(n2);
    return a !== undefined && b !== undefined ? { kind: 'ratio', ratio: { numerator: { value: a }, denominator: { value: b } } } : text();
  }
  if (!separator && !n2) {
    const quantity = q(n1);
    if (!quantity) return text();
    if (comparator === '' || comparator === '=') return { kind: 'quantity', quantity };
    if (comparators.has(comparator)) return { kind: 'quantity', quantity: { ...quantity, comparator: comparator as Quantity['comparator'] } };
  }
  return text();
}

// ---------------------------------------------------------------------------------------------
// tables

/** Table 0001 administrative sex → Patient.gender (IG ConceptMap AdministrativeSex: A and N → other). */
export const administrativeGender: Readonly<Record<string, 'male' | 'female' | 'other' | 'unknown'>> = {
  M: 'male',
  F: 'female',
  O: 'other',
  U: 'unknown',
  A: 'other',
  N: 'other',
};

export type ObservationStatus = 'registered' | 'preliminary' | 'final' | 'amended' | 'corrected' | 'cancelled' | 'entered-in-error' | 'unknown';

/**
 * Table 0085 OBX-11 → Observation.status. IG ConceptMap (ObservationResultStatusCodesInterpretation):
 * F final, C corrected, A amended, P preliminary, X cancelled, D and W entered-in-error. Codes the
 * IG leaves unmapped, ours: R (entered, not verified) and S (partial) → preliminary, I (specimen in
 * lab) → registered, U (status changed to final) and V (verified) → final, B (appended) → amended.
 * N and O (not asked / order detail only) have no Observation status: undefined, callers decide.
 */
export const observationStatus: Readonly<Record<string, ObservationStatus>> = {
  F: 'final',
  C: 'corrected',
  A: 'amended',
  P: 'preliminary',
  X: 'cancelled',
  D: 'entered-in-error',
  W: 'entered-in-error',
  R: 'preliminary',
  S: 'preliminary',
  I: 'registered',
  U: 'final',
  V: 'final',
  B: 'amended',
};

export type DiagnosticReportStatus = 'registered' | 'partial' | 'preliminary' | 'final' | 'amended' | 'corrected' | 'appended' | 'cancelled' | 'entered-in-error' | 'unknown';

/**
 * Table 0123 OBR-25 → DiagnosticReport.status. IG ConceptMap ResultStatus: O, I, S registered;
 * P preliminary; C corrected; R partial; F final; X cancelled. Ours where the IG is silent:
 * A (some results available) → partial, M (corrected, not final) → partial, N (procedure
 * completed, results pending) → registered. Y and Z are errors (no order / no patient): undefined.
 */
export const diagnosticReportStatus: Readonly<Record<string, DiagnosticReportStatus>> = {
  O: 'registered',
  I: 'registered',
  S: 'registered',
  P: 'preliminary',
  C: 'corrected',
  R: 'partial',
  F: 'final',
  X: 'cancelled',
  A: 'partial',
  M: 'partial',
  N: 'registered',
};

/**
 * Table 0004 PV1-2 patient class → Encounter.class (IG ConceptMap PatientClass[EncounterClass]):
 * E EMER, I IMP, O AMB, P PRENC (v3-ActCode); R, B, C, N, U have no ActCode and stay v2-0004 codes.
 */
export const patientClass: Readonly<Record<string, Coding>> = {
  E: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'EMER', display: 'emergency' },
  I: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP', display: 'inpatient encounter' },
  O: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB', display: 'ambulatory' },
  P: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PRENC', display: 'pre-admission' },
  R: { system: 'http://terminology.hl7.org/CodeSystem/v2-0004', code: 'R', display: 'Recurring patient' },
  B: { system: 'http://terminology.hl7.org/CodeSystem/v2-0004', code: 'B', display: 'Obstetrics' },
  C: { system: 'http://terminology.hl7.org/CodeSystem/v2-0004', code: 'C', display: 'Commercial Account' },
  N: { system: 'http://terminology.hl7.org/CodeSystem/v2-0004', code: 'N', display: 'Not Applicable' },
  U: { system: 'http://terminology.hl7.org/CodeSystem/v2-0004', code: 'U', display: 'Unknown' },
};

/** v3-ObservationInterpretation codes (FHIR R4 / THO) that table 0078 abnormal flags map to one-to-one. */
const interpretationCodes = new Set([
  'L', 'H', 'LL', 'HH', '<', '>', 'N', 'A', 'AA', 'U', 'D', 'B', 'W', 'S', 'R', 'I', 'MS', 'VS',
  'NS', 'SDD', 'SYN-R', 'SYN-S', 'NCL', 'POS', 'NEG', 'IND', 'DET', 'ND', 'E', 'EX', 'HX', 'LX',
  'HU', 'LU', 'H>', 'L<', 'AC', 'IE', 'QCF', 'TOX', 'CAR', 'NR', 'RR', 'WR', 'EXP', 'UNE',
]);

/**
 * OBX-8 abnormal flag (one repetition, table 0078 as CWE in v2.7+, IS before) → interpretation
 * CodeableConcept in v3-ObservationInterpretation. The 0078 codes are the v3 codes; a code not in
 * that code system (or a non-0078 system) falls back to `cweToCodeableConcept`.
 */
export function abnormalFlagToInterpretation(c: Components, memberId: string): CodeableConcept | undefined {
  const code = comp(c, 1);
  const system = comp(c, 3).toUpperCase();
  if (code && (system === '' || system === 'HL70078') && interpretationCodes.has(code.toUpperCase())) {
    // The sender's CWE-2 is not the code system's display, so it goes to text (when it says more than the code).
    const senderText = comp(c, 2) !== code ? comp(c, 2) : '';
    return clean<CodeableConcept>({
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: code.toUpperCase() }],
      text: comp(c, 9) || senderText || undefined,
    });
  }
  return cweToCodeableConcept(c, memberId);
}
