/**
 * Conformance of a message to its HL7 version, from the per-version dictionaries of the `hl7v2`
 * project (`hl7v2-dictionary`: segments, fields with data type, optionality and repetition, for
 * 2.1–2.8). Its reader is not used (it loses data, see issue 3); its dictionaries are right and
 * save us typing the standard's tables.
 *
 * Findings are warnings, never a reason to reject: real senders leave required fields empty and
 * send v2.7 fields in a v2.5 message every day, and the hub still has to take the message. They
 * travel on the message's Provenance (convert.ts) so an information department can see what a
 * member's interface does wrong.
 *
 * Not checked: fields past a segment's last defined one. Measured on the 2.7/2.8 dictionaries, the
 * field lists stop early (OBX has 26 fields there, the standard has more; RF1 12), so that check
 * flagged 537 fields of the FHIR-Converter samples that the standard does define.
 */
import type { HL7Dictionary, HL7Version } from 'hl7v2-dictionary' with { 'resolution-mode': 'import' };

// hl7v2-dictionary is ESM-only; Node ≥ 20.19 loads it with require() (no top-level await in it).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { dictionaries, findNearestHL7Version } = require('hl7v2-dictionary') as {
  dictionaries: Record<HL7Version, HL7Dictionary>;
  findNearestHL7Version(version: HL7Version): HL7Version;
};
import type { Hl7Message, Hl7Segment } from './message';

export interface ConformanceIssue {
  /** `PID-3`, `OBX[2]-5`, `ZPI` */
  location: string;
  code: 'unknown-segment' | 'required' | 'repetition' | 'datatype';
  text: string;
}

interface FieldDef {
  type: string;
  desc: string;
  opt?: string;
  rep?: number | 'infinite';
}

type Dictionary = HL7Dictionary;

/** The dictionary for MSH-12 (nearest published version; 2.5 when the header names none we know). */
export function dictionaryFor(version: string): Dictionary {
  const v = version.trim();
  const known = (Object.keys(dictionaries) as HL7Version[]).find((k) => k === v);
  if (known) return dictionaries[known];
  try {
    return dictionaries[findNearestHL7Version(v as HL7Version)] ?? dictionaries['2.5' as HL7Version];
  } catch {
    return dictionaries['2.5' as HL7Version];
  }
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)$/;
const SET_ID = /^\d+$/;
const DATE = /^\d{4}(?:\d{2}(?:\d{2})?)?$/;
const TIME = /^\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?(?:[+-]\d{4})?$/;
const DATE_TIME = /^\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?)?)?(?:[+-]\d{4})?$/;

/** The first component's shape for the primitive types whose shape the standard fixes. */
const primitive: Readonly<Record<string, RegExp>> = { NM: NUMBER, SI: SET_ID, DT: DATE, TM: TIME, DTM: DATE_TIME, TS: DATE_TIME };

/**
 * Every conformance finding of a message against its version's dictionary: segments the version
 * does not define (Z-segments are allowed), required fields left empty, repetitions of a non-repeating field, and primitive values of the wrong shape (NM, SI,
 * DT, TM, TS/DTM). Paths are the converter's (`OBX[2]-5` when the segment occurs more than once).
 */
export function conformance(message: Hl7Message, paths: ReadonlyMap<Hl7Segment, string>): ConformanceIssue[] {
  const dict = dictionaryFor(message.msh.value(12, 0, 1));
  const { repetition: repSep, component: compSep } = message.delimiters;
  const issues: ConformanceIssue[] = [];
  for (const segment of message.segments) {
    const at = paths.get(segment) ?? segment.name;
    const fields = fieldsOf(dict, segment.name);
    if (!fields) {
      if (!segment.name.startsWith('Z')) issues.push({ location: at, code: 'unknown-segment', text: `${segment.name} is not a segment of HL7 v${dict.version}` });
      continue;
    }
    for (const [n, f] of fields) {
      // MSH-1/-2 are the delimiters themselves
      if (n < 3 && segment.name === 'MSH') continue;
      const raw = segment.raw(n);
      if (raw === '') {
        if (f.opt === 'R') issues.push({ location: `${at}-${n}`, code: 'required', text: `${segment.name}-${n} ${f.desc} is required but empty` });
        continue;
      }
      if (raw === '""') continue;
      const repeated = raw.includes(repSep);
      if (f.rep === 1 && repeated) issues.push({ location: `${at}-${n}`, code: 'repetition', text: `${segment.name}-${n} ${f.desc} does not repeat but has ${raw.split(repSep).length} repetitions` });
      const shape = primitive[f.type];
      if (!shape) continue;
      // the shapes have no escapable characters: the raw first component is the value
      for (const rep of repeated ? raw.split(repSep) : [raw]) {
        const v = rep.split(compSep, 1)[0]!.trim();
        if (v !== '' && !shape.test(v)) issues.push({ location: `${at}-${n}`, code: 'datatype', text: `${segment.name}-${n} ${f.desc} is not a valid ${f.type}: "${segment.value(n, 0)}"` });
      }
    }
  }
  return issues;
}

/** A segment's field definitions as [field number, definition] pairs, built once per version and segment. */
const fieldCache = new Map<Dictionary, Map<string, Array<[number, FieldDef]> | undefined>>();
function fieldsOf(dict: Dictionary, segment: string): Array<[number, FieldDef]> | undefined {
  let byName = fieldCache.get(dict);
  if (!byName) fieldCache.set(dict, (byName = new Map()));
  if (byName.has(segment)) return byName.get(segment);
  const def = dict.segments[segment];
  const list = def ? Object.entries(def.fields as Record<string, FieldDef>).map(([k, f]): [number, FieldDef] => [Number(k), f]) : undefined;
  byName.set(segment, list);
  return list;
}
