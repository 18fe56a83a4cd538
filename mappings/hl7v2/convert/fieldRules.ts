/**
 * The data-driven part: a segment map's field rules (segments.ts, with the member's overrides on
 * top) applied to a resource body — which data-type reader, which code table, which path. A builder
 * applies them first and then adds what is code (ids, references, value[x]).
 */
import type { Hl7Segment } from '../message';
import {
  asPinyin,
  abnormalFlagToInterpretation,
  administrativeGender,
  cweToCodeableConcept,
  toDate,
  toDateTime,
  toNumber,
  cxToIdentifier,
  xadToAddress,
  xpnCalledBy,
  xpnToHumanName,
  xtnToContactPoint,
  type Identifier,
} from '../datatypes';
import type { FieldRule, SegmentMap, TableName } from '../segments';
import { eiSystem, type Conversion, type Json } from './conversion';

/** Code tables named by field rules. */
const tables: Readonly<Record<TableName, Readonly<Record<string, unknown>>>> = {
  administrativeGender,
  yesNo: { Y: true, N: false },
  /** Table 0127 allergen type → AllergyIntolerance.category (MA, MC: no category). */
  allergyCategory: { DA: 'medication', FA: 'food', EA: 'environment', AA: 'environment', PA: 'environment', LA: 'environment' },
  /** Table 0128 allergy severity → criticality. */
  allergyCriticality: { SV: 'high', MO: 'low', MI: 'low', U: 'unable-to-assess' },
};

/** Apply a segment map's field rules to `target`; returns the fields sent as `""`. */
export function applyRules(conv: Conversion, target: Json, segment: Hl7Segment, map: SegmentMap): string[] {
  const nulls: string[] = [];
  for (const rule of map.fields) {
    if (rule.when) {
      const on = rule.when.segment ? conv.lastOf.get(rule.when.segment) : segment;
      if (!on || !rule.when.in.includes(on.value(rule.when.field).trim().toUpperCase())) continue;
    }
    if (segment.isExplicitNull(rule.field)) {
      const where = `${segment.name}-${rule.field}`;
      if (!nulls.includes(where)) nulls.push(where);
      continue;
    }
    const reps = segment.repetitions(rule.field);
    const count = rule.repeat ? reps.length : Math.min(1, reps.length);
    for (let rep = 0; rep < count; rep++) {
      const value = read(conv, segment, rule, rep);
      if (value === undefined) continue;
      if (rule.fallback && getPath(target, rule.to) !== undefined) continue;
      // the same identifier, name or contact said twice (PID-3 and GT1-2, say) is kept once
      if (rule.to.endsWith('[]') && !rule.to.includes('.') && isDuplicate(target[rule.to.slice(0, -2)], value)) continue;
      setPath(target, rule.to, value);
    }
  }
  return nulls;
}

function read(conv: Conversion, segment: Hl7Segment, rule: FieldRule, rep: number): unknown {
  const c = segment.components(rule.field, rep);
  const first = (c[0] ?? '').split(conv.sub)[0]!.trim();
  switch (rule.datatype) {
    case 'ST': {
      const v = c.join(conv.compSep).trim();
      return v === '' ? undefined : v;
    }
    case 'ID': {
      if (!first) return undefined;
      return rule.table ? tables[rule.table][first.toUpperCase()] : first;
    }
    case 'XPN':
      return xpnToHumanName(c, conv.sub, conv.offset);
    case 'XPN-called-by':
      return xpnCalledBy(c);
    case 'XPN-pinyin': {
      const name = xpnToHumanName(c, conv.sub, conv.offset);
      return name && asPinyin(name);
    }
    case 'CX':
      return cxToIdentifier(c, conv.member, conv.sub, conv.offset);
    case 'EI': {
      const value = (c[0] ?? '').trim();
      if (!value) return undefined;
      const system = eiSystem(c, conv.member, conv.sub);
      return { ...(system ? { system } : {}), value } satisfies Identifier;
    }
    case 'XAD':
      return xadToAddress(c, conv.sub, conv.offset);
    case 'XTN':
      return xtnToContactPoint(c, conv.offset);
    case 'CWE':
      return cweToCodeableConcept(c, conv.member);
    case 'CWE-interpretation':
      return abnormalFlagToInterpretation(c, conv.member);
    case 'DTM':
      return toDateTime(first, conv.offset);
    case 'DT':
      return toDate(first);
    case 'NM': {
      const n = toNumber(first);
      return n !== undefined && (!rule.to.endsWith('Integer') || Number.isInteger(n)) ? n : undefined;
    }
    case 'DLN': {
      const value = first;
      if (!value) return undefined;
      const expires = toDate((c[2] ?? '').trim());
      return {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'DL' }] },
        value,
        ...(expires ? { period: { end: expires } } : {}),
      } satisfies Identifier;
    }
    case 'ST-Identifier': {
      const value = c.join(conv.compSep).trim();
      if (!value) return undefined;
      return {
        ...(rule.identifierType ? { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: rule.identifierType }] } } : {}),
        ...(rule.system ? { system: rule.system } : {}),
        value,
      } satisfies Identifier;
    }
  }
}

/** `a.b` sets, `a[]` appends, `a[].b` appends an object and sets b on it. */
export function setPath(target: Json, path: string, value: unknown): void {
  const parts = path.split('.');
  let obj = target;
  parts.forEach((part, i) => {
    const last = i === parts.length - 1;
    const isArray = part.endsWith('[]');
    const key = isArray ? part.slice(0, -2) : part;
    if (isArray) {
      const arr = (obj[key] ??= []) as unknown[];
      if (last) arr.push(value);
      else {
        const next: Json = {};
        arr.push(next);
        obj = next;
      }
    } else if (last) obj[key] = value;
    else obj = (obj[key] ??= {}) as Json;
  });
}

function isDuplicate(list: unknown, value: unknown): boolean {
  if (!Array.isArray(list) || list.length === 0) return false;
  const v = JSON.stringify(value);
  return list.some((x) => JSON.stringify(x) === v);
}

function getPath(target: Json, path: string): unknown {
  let cur: unknown = target;
  for (const part of path.split('.')) {
    if (cur === undefined || cur === null) return undefined;
    const key = part.endsWith('[]') ? part.slice(0, -2) : part;
    cur = (cur as Json)[key];
    if (Array.isArray(cur)) cur = cur[cur.length - 1];
  }
  return cur;
}
