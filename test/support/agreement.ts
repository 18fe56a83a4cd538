/**
 * Field-level agreement between our HL7 v2 → FHIR conversion and the Microsoft FHIR-Converter's
 * expected output for the same sample (test/conversion-agreement.test.ts).
 *
 * Resource ids differ between the two sides (theirs are hashes of their templates), so each bundle
 * is reduced to normalised facts per resource, and resources are matched by content keys:
 * Patient by identifier values, Encounter by period.start / class, Observation by code + value,
 * DiagnosticReport / Condition / ChargeItem by code, Appointment by start. References are replaced
 * by a label of their target (Location name, Observation code, Practitioner family …), never ids.
 *
 * A fact is (resource, field, normalised value); multi-valued elements are sets (identifier,
 * name, address parts, telecom, interpretation, location, result, participant). Counting: every
 * peer value is one compared field; it agrees when our matched resource has the same value for
 * that field. Values only we produce are listed, not penalised. A peer resource with no match on
 * our side counts all its values as disagreements (category `<type> <Resource> (no match)`).
 *
 * Normalisation: dateTimes with a time are compared as instants (the peer re-expresses every
 * offset as +05:30 — the same instant is agreement), dates as dates; codes and strings trimmed,
 * whitespace collapsed and case-folded; identifier systems ignored (ours are urn:yilian:…, theirs
 * their own), identifier value and type code compared; quantities by number and unit.
 */

export type Json = Record<string, unknown>;
export interface BundleLike {
  entry?: Array<{ fullUrl?: string; resource?: Json }>;
}

/** The resource types and fields the issue calls clinically meaningful. */
export const COMPARED: Record<string, string[]> = {
  Patient: ['identifier', 'identifier.type', 'name', 'birthDate', 'gender', 'address.line', 'address.city', 'address.state', 'address.postalCode', 'address.country', 'telecom', 'telecom.system'],
  Encounter: ['class', 'period.start', 'period.end', 'location'],
  Observation: ['code', 'value', 'unit', 'referenceRange', 'interpretation', 'status', 'effective'],
  DiagnosticReport: ['code', 'status', 'result'],
  Condition: ['code'],
  ChargeItem: ['code', 'quantity', 'price'],
  Appointment: ['start', 'end', 'participant'],
};

export interface ResourceFacts {
  resourceType: string;
  /** Human-readable key (what the resource is matched on). */
  key: string;
  /** Matching keys, strongest first; two resources match on shared keys. */
  matchKeys: string[];
  fields: Map<string, Set<string>>;
}

export interface Disagreement {
  message: string;
  messageType: string;
  resourceType: string;
  key: string;
  field: string;
  peer: string;
  ours: string[];
  /** `<message type> <Resource>.<field>`, `<message type> <Resource> (no match)` or `<message type> (conversion error)`. */
  category: string;
}

export interface OursOnly {
  message: string;
  messageType: string;
  resourceType: string;
  key: string;
  field: string;
  ours: string;
}

export interface MessageAgreement {
  message: string;
  messageType: string;
  compared: number;
  agreed: number;
  disagreements: Disagreement[];
  oursOnly: OursOnly[];
}

// ---------------------------------------------------------------- normalisation

const fold = (s: unknown): string => String(s ?? '').trim().replace(/\s+/g, ' ').toLowerCase();

/** Dates stay dates; a dateTime with a time becomes the UTC instant (ms precision). */
export function normTime(v: unknown): string {
  if (typeof v !== 'string' || v === '') return '';
  if (!v.includes('T')) return v.trim();
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? v.trim() : new Date(ms).toISOString();
}

function num(v: unknown): string {
  if (v === undefined || v === null || v === '') return '';
  const n = Number(v);
  return Number.isNaN(n) ? fold(v) : String(n);
}

function firstCode(cc: unknown): string {
  const c = cc as { coding?: Array<{ code?: string }>; text?: string } | undefined;
  const code = c?.coding?.find((x) => x.code)?.code;
  return fold(code ?? c?.text ?? '');
}

function arr<T = Json>(v: unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : v === undefined || v === null ? [] : [v as T];
}

function quantityUnit(q: unknown): string {
  const x = q as { unit?: string; code?: string } | undefined;
  return fold(x?.unit ?? x?.code ?? '');
}

/** value[x] of an Observation or a component, as one comparable string. */
function valueOf(r: Json): string {
  if (r.valueQuantity) return num((r.valueQuantity as Json).value);
  if (r.valueCodeableConcept) return firstCode(r.valueCodeableConcept);
  if (typeof r.valueString === 'string') return fold(r.valueString);
  if (r.valueDateTime !== undefined) return normTime(r.valueDateTime);
  if (r.valueInteger !== undefined) return num(r.valueInteger);
  if (r.valueBoolean !== undefined) return String(r.valueBoolean);
  if (r.valueTime !== undefined) return fold(r.valueTime);
  if (r.valueRange) {
    const g = r.valueRange as Json;
    return `${num((g.low as Json | undefined)?.value)}-${num((g.high as Json | undefined)?.value)}`;
  }
  if (r.valueRatio) {
    const g = r.valueRatio as Json;
    return `${num((g.numerator as Json | undefined)?.value)}:${num((g.denominator as Json | undefined)?.value)}`;
  }
  if (r.valuePeriod) {
    const p = r.valuePeriod as Json;
    return `${normTime(p.start)}/${normTime(p.end)}`;
  }
  if (r.valueAttachment) {
    const a = r.valueAttachment as Json;
    return fold(a.url ?? a.contentType ?? 'attachment');
  }
  return '';
}

function unitOf(r: Json): string {
  if (r.valueQuantity) return quantityUnit(r.valueQuantity);
  if (r.valueRange) {
    const g = r.valueRange as Json;
    return quantityUnit(g.low ?? g.high);
  }
  return '';
}

function rangeOf(rr: Json): string {
  const low = rr.low as Json | undefined;
  const high = rr.high as Json | undefined;
  if (low?.value !== undefined || high?.value !== undefined) return `${num(low?.value)}-${num(high?.value)}`;
  // The same range written as text (`4.3 to 6.2`, `70-80`) is the same range.
  const text = fold(rr.text);
  const m = /^(-?\d+(?:\.\d+)?)\s*(?:-|to)\s*(-?\d+(?:\.\d+)?)$/.exec(text);
  return m ? `${num(m[1])}-${num(m[2])}` : text.replace(/\s+/g, '');
}

// ---------------------------------------------------------------- per-bundle facts

class Resolver {
  private readonly byRef = new Map<string, Json>();
  constructor(bundle: BundleLike) {
    for (const e of bundle.entry ?? []) {
      const r = e.resource;
      if (!r) continue;
      if (e.fullUrl) this.byRef.set(e.fullUrl, r);
      if (typeof r.id === 'string') this.byRef.set(`${r.resourceType}/${r.id}`, r);
    }
  }
  resolve(ref: unknown): Json | undefined {
    const s = (ref as { reference?: string } | undefined)?.reference;
    return s ? this.byRef.get(s) : undefined;
  }
  /** What a reference points at, without ids. */
  label(ref: unknown): string {
    const r = this.resolve(ref);
    if (!r) return '';
    const type = String(r.resourceType);
    switch (type) {
      case 'Location':
        // The point of care (PL-1) names the location on both sides: ours names a location by its
        // PL components joined with ' / ' (`HUH AE OMU / OMU B / Bed 03`), the peer by one resource per component.
        return `location:${fold(r.name ?? arr<Json>(r.identifier)[0]?.value ?? '').split(' / ')[0]}`;
      case 'Practitioner':
      case 'Patient':
      case 'RelatedPerson': {
        const n = arr<Json>(r.name)[0];
        return `${type.toLowerCase()}:${fold(n?.family ?? n?.text ?? arr<Json>(r.identifier)[0]?.value ?? '')}`;
      }
      case 'PractitionerRole': {
        const p = this.resolve(r.practitioner);
        const n = p ? arr<Json>(p.name)[0] : undefined;
        return `practitioner:${fold(n?.family ?? n?.text ?? '')}`;
      }
      case 'Observation':
        return `observation:${firstCode(r.code)}`;
      default:
        return `${type.toLowerCase()}:${fold(r.name ?? firstCode(r.code))}`;
    }
  }
}

function add(fields: Map<string, Set<string>>, field: string, value: string): void {
  if (value === '' || value === '-' || value === '/') return;
  let s = fields.get(field);
  if (!s) fields.set(field, (s = new Set()));
  s.add(value);
}

function factsOf(r: Json, res: Resolver): ResourceFacts | undefined {
  const type = String(r.resourceType);
  const f = new Map<string, Set<string>>();
  switch (type) {
    case 'Patient': {
      for (const id of arr<Json>(r.identifier)) {
        const v = fold(id.value);
        if (!v) continue;
        add(f, 'identifier', v);
        const t = firstCode(id.type);
        if (t) add(f, 'identifier.type', `${v}:${t}`);
      }
      for (const n of arr<Json>(r.name)) {
        const given = arr<string>(n.given).map(fold).join(' ');
        add(f, 'name', `${fold(n.family)}|${given}`);
      }
      add(f, 'birthDate', typeof r.birthDate === 'string' ? r.birthDate.slice(0, 10) : '');
      add(f, 'gender', fold(r.gender));
      for (const a of arr<Json>(r.address)) {
        add(f, 'address.line', arr<string>(a.line).map(fold).join(' '));
        add(f, 'address.city', fold(a.city));
        add(f, 'address.state', fold(a.state));
        add(f, 'address.postalCode', fold(a.postalCode));
        add(f, 'address.country', fold(a.country));
      }
      for (const t of arr<Json>(r.telecom)) {
        const v = fold(t.value).replace(/\s+/g, '');
        if (!v) continue;
        add(f, 'telecom', v);
        if (t.system) add(f, 'telecom.system', `${v}:${fold(t.system)}`);
      }
      const ids = [...(f.get('identifier') ?? [])];
      return { resourceType: type, key: ids[0] ?? '(no identifier)', matchKeys: ids.map((i) => `id:${i}`), fields: f };
    }
    case 'Encounter': {
      const cls = fold((r.class as Json | undefined)?.code);
      const period = (r.period as Json | undefined) ?? {};
      const start = normTime(period.start);
      add(f, 'class', cls);
      add(f, 'period.start', start);
      add(f, 'period.end', normTime(period.end));
      for (const l of arr<Json>(r.location)) add(f, 'location', res.label(l.location));
      return { resourceType: type, key: start || cls || '(encounter)', matchKeys: [start && `start:${start}`, cls && `class:${cls}`].filter(Boolean), fields: f };
    }
    case 'Observation': {
      const code = firstCode(r.code);
      const comps = arr<Json>(r.component);
      let value = valueOf(r);
      let unit = unitOf(r);
      if (!value && comps.length > 0) {
        value = comps.map(valueOf).join(';');
        unit = [...new Set(comps.map(unitOf).filter(Boolean))].join(';');
      }
      add(f, 'code', code);
      add(f, 'value', value);
      add(f, 'unit', unit);
      for (const rr of [...arr<Json>(r.referenceRange), ...comps.flatMap((c) => arr<Json>(c.referenceRange))]) add(f, 'referenceRange', rangeOf(rr));
      for (const i of arr(r.interpretation)) add(f, 'interpretation', firstCode(i));
      add(f, 'status', fold(r.status));
      add(f, 'effective', normTime(r.effectiveDateTime ?? (r.effectivePeriod as Json | undefined)?.start ?? r.effectiveInstant));
      return { resourceType: type, key: `${code}=${value}`, matchKeys: [`c:${code}|v:${value}`, `c:${code}`], fields: f };
    }
    case 'DiagnosticReport': {
      const code = firstCode(r.code);
      add(f, 'code', code);
      add(f, 'status', fold(r.status));
      for (const x of arr(r.result)) add(f, 'result', res.label(x));
      return { resourceType: type, key: code, matchKeys: [`c:${code}`], fields: f };
    }
    case 'Condition': {
      const code = firstCode(r.code);
      add(f, 'code', code);
      return { resourceType: type, key: code, matchKeys: [`c:${code}`], fields: f };
    }
    case 'ChargeItem': {
      const code = firstCode(r.code);
      add(f, 'code', code);
      add(f, 'quantity', num((r.quantity as Json | undefined)?.value));
      const price = (r.priceOverride as Json | undefined) ?? undefined;
      add(f, 'price', price ? `${num(price.value)} ${fold(price.currency)}`.trim() : '');
      return { resourceType: type, key: code, matchKeys: [`c:${code}`], fields: f };
    }
    case 'Appointment': {
      const start = normTime(r.start);
      add(f, 'start', start);
      add(f, 'end', normTime(r.end));
      for (const p of arr<Json>(r.participant)) add(f, 'participant', res.label(p.actor));
      return { resourceType: type, key: start || '(appointment)', matchKeys: start ? [`start:${start}`] : [], fields: f };
    }
    default:
      return undefined;
  }
}

/** Every compared resource of a bundle, reduced to facts. */
export function extractFacts(bundle: BundleLike): ResourceFacts[] {
  const res = new Resolver(bundle);
  const out: ResourceFacts[] = [];
  for (const e of bundle.entry ?? []) {
    if (!e.resource) continue;
    const facts = factsOf(e.resource, res);
    if (facts) out.push(facts);
  }
  return out;
}

// ---------------------------------------------------------------- matching and counting

function score(a: ResourceFacts, b: ResourceFacts): number {
  let s = 0;
  const bk = new Set(b.matchKeys);
  a.matchKeys.forEach((k, i) => {
    if (bk.has(k)) s += a.matchKeys.length - i; // stronger keys weigh more
  });
  return s;
}

/** Pairs each peer resource with at most one of ours of the same type (greedy on shared keys; a lone resource of a type matches the lone one). */
export function matchResources(peer: ResourceFacts[], ours: ResourceFacts[]): Array<[ResourceFacts, ResourceFacts | undefined]> {
  const used = new Set<ResourceFacts>();
  const pairs: Array<[ResourceFacts, ResourceFacts | undefined]> = [];
  for (const p of peer) {
    let best: ResourceFacts | undefined;
    let bestScore = 0;
    for (const o of ours) {
      if (o.resourceType !== p.resourceType || used.has(o)) continue;
      const s = score(p, o);
      if (s > bestScore) [best, bestScore] = [o, s];
    }
    if (!best) {
      const sameP = peer.filter((x) => x.resourceType === p.resourceType);
      const sameO = ours.filter((x) => x.resourceType === p.resourceType && !used.has(x));
      if (sameP.length === 1 && sameO.length === 1 && (p.resourceType === 'Patient' || p.resourceType === 'Encounter')) best = sameO[0];
    }
    if (best) used.add(best);
    pairs.push([p, best]);
  }
  return pairs;
}

export function compareBundles(message: string, messageType: string, peerBundle: BundleLike, ourBundle: BundleLike | Error): MessageAgreement {
  const out: MessageAgreement = { message, messageType, compared: 0, agreed: 0, disagreements: [], oursOnly: [] };
  const peer = extractFacts(peerBundle);
  if (ourBundle instanceof Error) {
    for (const p of peer)
      for (const [field, values] of p.fields)
        for (const v of values) {
          out.compared++;
          out.disagreements.push({ message, messageType, resourceType: p.resourceType, key: p.key, field, peer: v, ours: [`error: ${ourBundle.message}`], category: `${messageType} (conversion error)` });
        }
    return out;
  }
  const ours = extractFacts(ourBundle);
  const pairs = matchResources(peer, ours);
  const matched = new Set<ResourceFacts>();
  for (const [p, o] of pairs) {
    if (o) matched.add(o);
    for (const [field, values] of p.fields) {
      const mine = o?.fields.get(field) ?? new Set<string>();
      for (const v of values) {
        out.compared++;
        if (o && mine.has(v)) out.agreed++;
        else
          out.disagreements.push({
            message,
            messageType,
            resourceType: p.resourceType,
            key: p.key,
            field,
            peer: v,
            ours: [...mine],
            category: o ? `${messageType} ${p.resourceType}.${field}` : `${messageType} ${p.resourceType} (no match)`,
          });
      }
    }
    if (o)
      for (const [field, values] of o.fields) {
        const theirs = p.fields.get(field) ?? new Set<string>();
        for (const v of values) if (!theirs.has(v)) out.oursOnly.push({ message, messageType, resourceType: o.resourceType, key: o.key, field, ours: v });
      }
  }
  for (const o of ours)
    if (!matched.has(o))
      for (const [field, values] of o.fields) for (const v of values) out.oursOnly.push({ message, messageType, resourceType: o.resourceType, key: o.key, field, ours: v });
  return out;
}

export interface AgreementTable {
  rows: Array<{ messageType: string; messages: number; compared: number; agreed: number; pct: number }>;
  compared: number;
  agreed: number;
  overall: number;
}

export function tabulate(results: MessageAgreement[]): AgreementTable {
  const by = new Map<string, { messages: number; compared: number; agreed: number }>();
  for (const r of results) {
    const t = by.get(r.messageType) ?? { messages: 0, compared: 0, agreed: 0 };
    t.messages++;
    t.compared += r.compared;
    t.agreed += r.agreed;
    by.set(r.messageType, t);
  }
  const rows = [...by.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([messageType, t]) => ({ messageType, ...t, pct: t.compared ? t.agreed / t.compared : 1 }));
  const compared = rows.reduce((s, r) => s + r.compared, 0);
  const agreed = rows.reduce((s, r) => s + r.agreed, 0);
  return { rows, compared, agreed, overall: compared ? agreed / compared : 1 };
}

export function formatTable(t: AgreementTable): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const lines = ['message type  msgs  compared  agreed       %', '------------  ----  --------  ------  ------'];
  for (const r of t.rows)
    lines.push(`${r.messageType.padEnd(12)}  ${String(r.messages).padStart(4)}  ${String(r.compared).padStart(8)}  ${String(r.agreed).padStart(6)}  ${pct(r.pct).padStart(7)}`);
  lines.push(`${'OVERALL'.padEnd(12)}  ${''.padStart(4)}  ${String(t.compared).padStart(8)}  ${String(t.agreed).padStart(6)}  ${pct(t.overall).padStart(7)}`);
  return lines.join('\n');
}

/** Disagreement counts per category, largest first. */
export function categoryCounts(disagreements: Disagreement[]): Array<[string, number]> {
  const c = new Map<string, number>();
  for (const d of disagreements) c.set(d.category, (c.get(d.category) ?? 0) + 1);
  return [...c.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}
