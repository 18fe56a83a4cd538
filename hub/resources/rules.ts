/**
 * Matching rules of the unified shared resources (Organization, Location, Device, Practitioner,
 * PractitionerRole, HealthcareService): what in a member's source resource says "this is the same
 * thing another member reported", and survivorship of the unified record's fields. Pure: no I/O.
 *
 * A source yields *match keys*; two sources sharing a key are candidates, and `compare` decides
 * (and says why). Strong keys (a device serial or UDI, a national licence number, a USCC) link on
 * their own; weak keys (names, which are not unique) link only when nothing contradicts them: two
 * different serials, or two values of the same identifier system, are a veto. So two CTs of the
 * same model with different serials stay apart, and two 张伟 with different staff numbers too.
 *
 * Member-scoped identifier systems (the converter's `urn:yilian:<member>:…`) mean nothing across
 * members, except their namespace (`…:id:<namespace>`): the same namespace and value reported by
 * two members is a candidate only if the names agree too. Names go through hub/mpi/names.ts
 * (traditional → simplified, toneless pinyin); it never re-implements them.
 */
import { hasHan, normaliseName, soundKey } from '../mpi/names';

export const SHARED_RESOURCE_TYPES = ['Organization', 'Location', 'Practitioner', 'Device', 'HealthcareService', 'PractitionerRole'] as const;
export type SharedResourceType = (typeof SHARED_RESOURCE_TYPES)[number];

/** Members as Organizations (the converter's MEMBER_SYSTEM; not imported: that module loads the conversion tables). */
export const MEMBER_SYSTEM = 'urn:yilian:member';
export const MEMBER_TIER_SYSTEM = 'https://yilian.example/fhir/CodeSystem/member-tier';
const SEGMENT_PATH = /segment-path$/;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type Identifier = { system?: string; value?: string };

/** One member's report of a shared thing, as the matcher sees it. */
export interface SharedSource {
  resourceType: SharedResourceType;
  /** `resource.id`, `member-<id>` for a member itself, `derived-<practitioner id>` for a role read from a message. */
  sourceId: string;
  memberId: string;
  content: Json;
  updatedAt: Date;
}

export interface MatchKeys {
  strong: string[];
  weak: string[];
}

/** Maps a reference of the source (`Organization/<source id>`) to the unified id of what it names. */
export type ResolveRef = (reference: string | undefined) => string | undefined;

const MEMBER_SCOPED = /^urn:yilian:([^:]+):(.*)$/;

function identifiersOf(content: Json): Identifier[] {
  return ((content.identifier as Identifier[] | undefined) ?? []).filter((i) => i && typeof i.value === 'string' && i.value.trim() !== '');
}

function upper(value: string): string {
  return value.trim().toUpperCase().replace(/\s+/g, '');
}

/** The last part of a system URI (`urn:yilian:m1:SN` → `SN`): how a member labels a device serial or UDI in a CWE. */
function systemLabel(system: string | undefined): string {
  return (system ?? '').split(/[:/#]/).pop()!.toUpperCase();
}

const SERIAL_LABELS = new Set(['SN', 'SERIAL', 'SERIALNUMBER', 'SERIAL-NUMBER']);
const UDI_LABELS = new Set(['UDI', 'UDI-DI', 'DI', 'GS1']);

/**
 * A label's normalised form for comparison (a device, ward, organisation or service name):
 * traditional → simplified (hub/mpi/names.ts), lower case, letters and digits only — unlike a
 * person's name, digits matter here (CT 1 and CT 2, bed 3 and bed 4).
 */
export function normaliseLabel(text: string | undefined): string | undefined {
  if (!text || typeof text !== 'string') return undefined;
  const t = text.normalize('NFKC').trim();
  if (!t) return undefined;
  const simplified = hasHan(t) ? (normaliseName(t) ?? t) : t;
  return simplified.toLowerCase().normalize('NFD').replace(/[\u0300-\u036f]/g, '').replace(/[^\p{L}\p{N}]/gu, '') || undefined;
}

/** A name's normalised form (simplified Hanzi / folded Latin) and its sound. */
export function nameOf(content: Json): string | undefined {
  const name = content.name;
  if (typeof name === 'string') return name;
  if (Array.isArray(name)) {
    const n = name.find((x: Json) => hasHan(x?.text ?? [x?.family, ...(x?.given ?? [])].join(''))) ?? name[0];
    return n?.text ?? ([n?.family, ...(n?.given ?? [])].filter(Boolean).join('') || undefined);
  }
  const deviceName = (content.deviceName as Array<{ name?: string }> | undefined)?.find((d) => d.name)?.name;
  return deviceName;
}

/** The sound of a person's whole name: family read as a surname, then the given name (Hanzi or Latin). */
function personSound(content: Json): string | undefined {
  const names = Array.isArray(content.name) ? (content.name as Json[]) : [];
  const n = names[0];
  if (!n) return undefined;
  if (n.family || n.given) return [soundKey(normaliseName(n.family), true), soundKey(normaliseName((n.given ?? []).join('')), false)].filter(Boolean).join('') || undefined;
  const text = normaliseName(n.text);
  if (!text) return undefined;
  // Hanzi text: the first character is the surname (compound surnames read the same either way for a key)
  return hasHan(text) ? [soundKey(text.slice(0, 1), true), soundKey(text.slice(1), false)].join('') : soundKey(text, false);
}

function codeKey(cc: Json | undefined): string | undefined {
  if (!cc) return undefined;
  const coding = (cc.coding as Json[] | undefined)?.find((c) => c.code);
  if (coding) return `${coding.system ?? ''}|${coding.code}`;
  return normaliseLabel(cc.text);
}

/** Qualifications (FHIR `qualification.code`, else the name's suffix, e.g. an XCN-7 degree), normalised, sorted. */
function qualificationsOf(content: Json): string[] {
  const q = ((content.qualification as Json[] | undefined) ?? []).map((x) => codeKey(x.code)).filter((x): x is string => !!x);
  if (q.length) return [...new Set(q)].sort();
  const suffix = ((content.name as Json[] | undefined)?.[0]?.suffix as string[] | undefined) ?? [];
  return [...new Set(suffix.map((s) => normaliseLabel(s)).filter((x): x is string => !!x))].sort();
}

// ---- Organization: USCC and organization code ---------------------------------------------------

const USCC_CHARS = '0123456789ABCDEFGHJKLMNPQRTUWXY';
const USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/** GB 32100-2015 unified social credit code (18 characters, check character mod 31). */
export function isUscc(value: string): boolean {
  const v = upper(value);
  if (!/^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$/.test(v)) return false;
  const sum = USCC_WEIGHTS.reduce((s, w, i) => s + USCC_CHARS.indexOf(v[i]!) * w, 0);
  return USCC_CHARS[(31 - (sum % 31)) % 31] === v[17];
}

/** GB 11714 organization code (8 characters + check character mod 11, `X` for 10), dash optional. */
export function isOrganizationCode(value: string): boolean {
  const v = upper(value).replace('-', '');
  if (!/^[0-9A-Z]{8}[0-9X]$/.test(v)) return false;
  const weights = [3, 7, 9, 10, 5, 8, 4, 2];
  const sum = weights.reduce((s, w, i) => s + parseInt(v[i]!, 36) * w, 0);
  const c = 11 - (sum % 11);
  return (c === 10 ? 'X' : c === 11 ? '0' : String(c)) === v[8];
}

// ---- keys ---------------------------------------------------------------------------------------

/** Identifier keys every type shares: a global system (national licence number, OID, URI) links alone. */
function identifierKeys(source: SharedSource, keys: MatchKeys): void {
  for (const i of identifiersOf(source.content)) {
    const scoped = MEMBER_SCOPED.exec(i.system ?? '');
    if (!i.system) continue;
    if (!scoped) keys.strong.push(`id:${i.system}|${upper(i.value!)}`);
    else if (scoped[2]!.startsWith('id:')) keys.weak.push(`ns:${scoped[2]!.slice(3)}|${upper(i.value!)}`);
  }
}

export function matchKeys(source: SharedSource, resolve: ResolveRef): MatchKeys {
  const keys: MatchKeys = { strong: [], weak: [] };
  const c = source.content;
  // the reporting member's own organisation (its unified id once members are matched), for a
  // device without owner, a location without managing organisation, a role without organisation
  const member = resolve(`Organization/member-${source.memberId}`) ?? `member:${source.memberId}`;
  switch (source.resourceType) {
    case 'Device': {
      if (typeof c.serialNumber === 'string' && c.serialNumber.trim()) keys.strong.push(`sn:${upper(c.serialNumber)}`);
      for (const u of (c.udiCarrier as Json[] | undefined) ?? []) if (u.deviceIdentifier) keys.strong.push(`udi:${upper(u.deviceIdentifier)}`);
      for (const i of identifiersOf(c)) {
        const label = systemLabel(i.system);
        if (SERIAL_LABELS.has(label)) keys.strong.push(`sn:${upper(i.value!)}`);
        else if (UDI_LABELS.has(label)) keys.strong.push(`udi:${upper(i.value!)}`);
      }
      identifierKeys(source, keys);
      const name = normaliseLabel(nameOf(c));
      const owner = resolve((c.owner as Json | undefined)?.reference) ?? member;
      const manufacturer = normaliseLabel(c.manufacturer);
      const model = normaliseLabel(c.modelNumber);
      if (manufacturer && model) keys.weak.push(`model:${manufacturer}|${model}|${owner}|${name ?? ''}`);
      else if (name) keys.weak.push(`name:${owner}|${name}`);
      break;
    }
    case 'Practitioner': {
      identifierKeys(source, keys);
      const name = normaliseName(nameOf(c));
      const sound = personSound(c);
      const qualification = qualificationsOf(c).join(',');
      if (name) keys.weak.push(`name:${name}|${member}`);
      if (sound) keys.weak.push(`sound:${sound}|${member}`);
      if (qualification && name) keys.weak.push(`name:${name}|q:${qualification}`);
      if (qualification && sound) keys.weak.push(`sound:${sound}|q:${qualification}`);
      break;
    }
    case 'Organization': {
      for (const i of identifiersOf(c)) {
        if (isUscc(i.value!)) {
          keys.strong.push(`uscc:${upper(i.value!)}`);
          keys.strong.push(`orgcode:${upper(i.value!).slice(8, 17)}`);
        } else if (isOrganizationCode(i.value!)) keys.strong.push(`orgcode:${upper(i.value!).replace('-', '')}`);
      }
      identifierKeys(source, keys);
      const name = normaliseLabel(nameOf(c));
      if (name) keys.weak.push(`name:${name}`);
      break;
    }
    case 'Location': {
      identifierKeys(source, keys);
      const site = resolve((c.managingOrganization as Json | undefined)?.reference) ?? member;
      const type = codeKey(c.physicalType) ?? '';
      const hierarchy = locationHierarchy(c);
      if (hierarchy.length) keys.weak.push(`loc:${site}|${type}|${hierarchy.join('/')}`);
      break;
    }
    case 'HealthcareService': {
      identifierKeys(source, keys);
      const provider = resolve((c.providedBy as Json | undefined)?.reference) ?? member;
      const type = ((c.type as Json[] | undefined) ?? []).map(codeKey).find(Boolean) ?? normaliseLabel(nameOf(c));
      if (type) keys.weak.push(`hs:${provider}|${type}`);
      break;
    }
    case 'PractitionerRole': {
      identifierKeys(source, keys);
      const practitioner = resolve((c.practitioner as Json | undefined)?.reference);
      const organization = resolve((c.organization as Json | undefined)?.reference) ?? member;
      // one role per person per organization: codes and specialties of its reports are merged
      if (practitioner) keys.strong.push(`role:${practitioner}|${organization}`);
      break;
    }
  }
  return { strong: [...new Set(keys.strong)], weak: [...new Set(keys.weak)] };
}

/**
 * A Location's place in its site: the ward (its description when the member sent one — the same
 * ward under two codes carries the same description — else its own code), then room and bed.
 */
export function locationHierarchy(c: Json): string[] {
  const parts = String(c.name ?? '')
    .split(' / ')
    .map((p) => p.trim())
    .filter(Boolean);
  const description = normaliseLabel(c.description);
  if (!parts.length) return description ? [description] : [];
  return [description ?? normaliseLabel(parts[0]) ?? parts[0]!, ...parts.slice(1).map((p) => normaliseLabel(p) ?? p)];
}

// ---- comparison ---------------------------------------------------------------------------------

export interface Comparison {
  same: boolean;
  rule: string;
  detail: string;
}

function serialsOf(keys: MatchKeys): Set<string> {
  return new Set(keys.strong.filter((k) => k.startsWith('sn:') || k.startsWith('udi:') || k.startsWith('uscc:')));
}

/**
 * Identifier namespaces with their values (normalised): a global system, or a member's assigning
 * authority (`urn:yilian:<m>:id:<ns>`, a staff or asset number). A member's local *code* systems
 * (`urn:yilian:<m>:L`, a CWE coding) are not namespaces: one member's HIS and PACS code the same
 * CT or ward differently, which must not keep them apart.
 */
function systemValues(content: Json): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const i of identifiersOf(content)) {
    if (!i.system) continue;
    const scoped = MEMBER_SCOPED.exec(i.system);
    if (scoped && !scoped[2]!.startsWith('id:')) continue;
    if (!scoped && SERIAL_LABELS.has(systemLabel(i.system))) continue;
    const s = out.get(i.system) ?? new Set<string>();
    s.add(upper(i.value!));
    out.set(i.system, s);
  }
  return out;
}

/** Two different serials (UDIs, USCCs) of the same kind: never one thing, whatever else agrees. */
function serialConflict(a: MatchKeys, b: MatchKeys): string | undefined {
  const sa = serialsOf(a);
  const sb = serialsOf(b);
  for (const prefix of ['sn:', 'udi:', 'uscc:']) {
    const x = [...sa].filter((k) => k.startsWith(prefix));
    const y = [...sb].filter((k) => k.startsWith(prefix));
    if (x.length && y.length && !x.some((k) => y.includes(k))) return `different ${prefix.slice(0, -1)} (${x[0]!.slice(prefix.length)} ≠ ${y[0]!.slice(prefix.length)})`;
  }
  return undefined;
}

/** The reason two sources must not be one thing on weak evidence (a name), if any. */
export function veto(a: { content: Json; keys: MatchKeys }, b: { content: Json; keys: MatchKeys }): string | undefined {
  const serial = serialConflict(a.keys, b.keys);
  if (serial) return serial;
  const va = systemValues(a.content);
  const vb = systemValues(b.content);
  for (const [system, values] of va) {
    const other = vb.get(system);
    if (other && ![...values].some((v) => other.has(v))) return `different ${system} (${[...values][0]} ≠ ${[...other][0]})`;
  }
  return undefined;
}

/**
 * Whether two sources sharing `key` are one thing, and why. Strong keys link unless two serials
 * differ; weak keys only without a veto, and: the same namespace id needs the same name; a name's
 * sound needs the written names to agree, or one of them to be Latin only (王建国 and Wang Jianguo,
 * not 王建国 and 汪建国).
 */
export function compare(a: { content: Json; keys: MatchKeys }, b: { content: Json; keys: MatchKeys }, key: string): Comparison {
  const kind = key.slice(0, key.indexOf(':'));
  if (a.keys.strong.includes(key) && b.keys.strong.includes(key)) {
    const serial = serialConflict(a.keys, b.keys);
    if (serial) return { same: false, rule: 'veto', detail: serial };
    return { same: true, rule: kind === 'id' ? 'identifier' : kind, detail: key };
  }
  const no = veto(a, b);
  if (no) return { same: false, rule: 'veto', detail: no };
  const na = normaliseLabel(nameOf(a.content));
  const nb = normaliseLabel(nameOf(b.content));
  if (kind === 'ns') return na && na === nb ? { same: true, rule: 'namespace-id+name', detail: `${key} and name ${na}` } : { same: false, rule: 'namespace-id', detail: 'same namespace id, names differ' };
  if (kind === 'sound') {
    if (na && nb && hasHan(na) && hasHan(nb) && na !== nb) return { same: false, rule: 'homophone', detail: `${na} ≠ ${nb} (same sound, different characters)` };
    return { same: true, rule: key.includes('|q:') ? 'name-sound+qualification' : 'name-sound in member', detail: key };
  }
  if (kind === 'name' && key.includes('|q:')) return { same: true, rule: 'name+qualification', detail: key };
  return { same: true, rule: kind === 'name' ? 'name' : kind, detail: key };
}

// ---- survivorship -------------------------------------------------------------------------------

function filled(value: unknown): boolean {
  if (value === undefined || value === null || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.keys(value as object).length > 0;
  return true;
}

/** How many top-level fields a report fills (the most complete report leads on a tie of time). */
export function completeness(content: Json): number {
  return Object.entries(content).filter(([k, v]) => k !== 'id' && k !== 'meta' && k !== 'resourceType' && filled(v)).length;
}

const REFERENCE_FIELDS: Record<string, string[]> = {
  Device: ['owner', 'location'],
  Location: ['managingOrganization', 'partOf'],
  HealthcareService: ['providedBy', 'location'],
  PractitionerRole: ['practitioner', 'organization', 'location', 'healthcareService'],
  Organization: ['partOf'],
  Practitioner: [],
};

export const SHARED_SOURCE_URL = 'https://yilian.example/fhir/StructureDefinition/shared-source';

export interface SourceLink {
  sourceId: string;
  memberId: string;
  rule: string;
  /** The source's own reference (`Device/<id>`), absent for a member or a derived role. */
  reference?: string;
}

/**
 * The unified record: the most recent report (ties: the most complete) leads; a field it lacks
 * comes from the next report that has it; identifiers, names, qualifications, codes and types are
 * the union of all reports; a Hanzi name comes before a pinyin-only one. References to other
 * shared resources point at their unified ids. Each source is listed in a `shared-source`
 * extension (like the golden Patient's `link`).
 */
export function survive(type: SharedResourceType, unifiedId: string, sources: Array<{ content: Json; updatedAt: Date; link: SourceLink }>, resolveTo: (type: string, reference: string) => string | undefined): Json {
  const ordered = [...sources].sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime() || completeness(b.content) - completeness(a.content) || a.link.sourceId.localeCompare(b.link.sourceId));
  const out: Json = { resourceType: type, id: unifiedId };
  for (const s of ordered) for (const [k, v] of Object.entries(s.content)) if (k !== 'id' && k !== 'meta' && k !== 'extension' && !filled(out[k]) && filled(v)) out[k] = v;
  const union = (field: string, keyOf: (x: Json) => string) => {
    const seen = new Map<string, Json>();
    for (const s of ordered) for (const x of (s.content[field] as Json[] | undefined) ?? []) if (x && !seen.has(keyOf(x))) seen.set(keyOf(x), x);
    if (seen.size) out[field] = [...seen.values()];
  };
  union('identifier', (i) => `${i.system ?? ''}|${upper(String(i.value ?? ''))}`);
  if (type === 'Practitioner') {
    // one name per normalised form: the fullest report of it (王建国 with its title over a bare 王建國)
    const names = new Map<string, Json>();
    for (const s of ordered)
      for (const n of (s.content.name as Json[] | undefined) ?? []) {
        const key = normaliseName(n.text ?? [n.family, ...(n.given ?? [])].join('')) ?? JSON.stringify(n);
        const seen = names.get(key);
        if (!seen || completeness(n) > completeness(seen)) names.set(key, n);
      }
    if (names.size) out.name = [...names.values()];
    // Hanzi before pinyin-only, then the fullest name (with its title), then the latest
    if (Array.isArray(out.name)) out.name = [...out.name].sort((a: Json, b: Json) => Number(hasHan(JSON.stringify(b))) - Number(hasHan(JSON.stringify(a))) || completeness(b) - completeness(a));
    union('qualification', (q) => codeKey(q.code) ?? JSON.stringify(q));
  }
  if (type === 'PractitionerRole') {
    union('code', (c) => codeKey(c) ?? JSON.stringify(c));
    union('specialty', (c) => codeKey(c) ?? JSON.stringify(c));
  }
  if (type === 'Organization' || type === 'HealthcareService') union('type', (c) => codeKey(c) ?? JSON.stringify(c));
  for (const field of REFERENCE_FIELDS[type] ?? []) {
    const rewrite = (r: Json) => {
      const ref = typeof r?.reference === 'string' ? r.reference : undefined;
      const target = ref ? resolveTo(ref.slice(0, ref.indexOf('/')), ref) : undefined;
      return target ? { ...r, reference: `${ref!.slice(0, ref!.indexOf('/'))}/${target}` } : r;
    };
    if (Array.isArray(out[field])) out[field] = (out[field] as Json[]).map(rewrite);
    else if (out[field]) out[field] = rewrite(out[field]);
  }
  out.extension = [
    ...((out.extension as Json[] | undefined) ?? []),
    ...[...sources]
      .sort((a, b) => a.link.memberId.localeCompare(b.link.memberId) || a.link.sourceId.localeCompare(b.link.sourceId))
      .map((s) => ({
        url: SHARED_SOURCE_URL,
        extension: [
          ...(s.link.reference ? [{ url: 'source', valueReference: { reference: s.link.reference, display: s.link.memberId } }] : [{ url: 'source', valueString: s.link.sourceId }]),
          { url: 'member', valueString: s.link.memberId },
          { url: 'rule', valueString: s.link.rule },
        ],
      })),
  ];
  return out;
}

// ---- roles read from messages --------------------------------------------------------------------

/** Segments naming a practitioner who works at the reporting member (not PV1-8 referring: that one comes from elsewhere). */
const WORKS_HERE = /^(AIP|PV1-(7|9|17)|ORC-12|OBR-(16|32|34)|OBX-16|TXA-(5|9|10|11|22)|RXA-10|FT1-(20|21)|PRA)/;

/**
 * The role a practitioner reported by a member's messages has at that member: a scheduled
 * resource (SIU AIP-3 — an expert's session), an attending or admitting doctor, an ordering
 * doctor, a responsible observer. Undefined for a referring doctor only (or a FHIR Practitioner
 * with no segment path: a FHIR member sends its PractitionerRoles itself).
 */
export function derivedRole(practitioner: SharedSource): { content: Json; segments: string[] } | undefined {
  const paths = (((practitioner.content.meta as Json | undefined)?.extension as Json[] | undefined) ?? []).filter((x) => SEGMENT_PATH.test(String(x.url))).map((x) => String(x.valueString).replace(/\[\d+\]/g, ''));
  const segments = paths.filter((p) => WORKS_HERE.test(p));
  if (!segments.length) return undefined;
  const session = segments.some((p) => p.startsWith('AIP'));
  return {
    segments,
    content: {
      resourceType: 'PractitionerRole',
      active: true,
      practitioner: { reference: `Practitioner/${practitioner.sourceId}` },
      organization: { reference: `Organization/member-${practitioner.memberId}` },
      code: [{ text: session ? 'scheduled session' : 'clinician' }],
    },
  };
}
