/**
 * Results (ORU, and the OBX of orders and immunizations): OBR → DiagnosticReport, OBX →
 * Observation (value[x] by OBX-2, OBX-7 reference ranges), SPM → Specimen, NTE → Observation.note.
 * An OBR group is open until the next OBR or the end of the message (`closeReport`).
 */
import type { Hl7Segment } from '../message';
import { HubError } from '../../outcome';
import {
  cqToQuantity,
  cweToCodeableConcept,
  diagnosticReportStatus,
  nmToQuantity,
  observationStatus,
  snToValue,
  toDateTime,
  toNumber,
  unitsOf,
  type CodeableConcept,
  type Quantity,
} from '../datatypes';
import { applyRules } from './fieldRules';
import { EXPLICIT_NULL_URL, absentCode, addMeta, codeKeyOf, eiSystem, type Conversion, type Json, type Ref } from './conversion';

const mimeBySubtype: Readonly<Record<string, string>> = {
  PDF: 'application/pdf',
  RTF: 'application/rtf',
  HTML: 'text/html',
  XML: 'text/xml',
  JPEG: 'image/jpeg',
  JPG: 'image/jpeg',
  PNG: 'image/png',
  GIF: 'image/gif',
  TIFF: 'image/tiff',
  PLAIN: 'text/plain',
  TEXT: 'text/plain',
  'OCTET-STREAM': 'application/octet-stream',
};

export function obr(conv: Conversion, segment: Hl7Segment): void {
  closeReport(conv);
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.OBR!);
  if (!body.code) body.code = absentCode();
  const filler = segment.components(3);
  const placer = segment.components(2);
  const key = filler[0]?.trim()
    ? `filler:${eiSystem(filler, conv.member, conv.sub) ?? ''}|${filler[0].trim()}`
    : placer[0]?.trim()
      ? `placer:${eiSystem(placer, conv.member, conv.sub) ?? ''}|${placer[0].trim()}`
      : `${conv.msgScope}|${conv.path(segment)}`;
  const status = diagnosticReportStatus[segment.value(25).trim().toUpperCase()] ?? 'unknown';
  const issued = toDateTime(segment.value(22), conv.offset);
  const ref = conv.add(
    'DiagnosticReport',
    key,
    {
      status,
      ...body,
      ...(conv.patient ? { subject: conv.patient.ref } : {}),
      ...(conv.encounter ? { encounter: conv.encounter.ref } : {}),
      ...(issued?.includes('T') ? { issued } : {}),
    },
    conv.path(segment),
    false,
  );
  const resource = conv.resourceOf(ref);
  for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
  conv.report = { resource, key: conv.entries.get(ref.reference)!.key, observations: [], specimens: [], effective: body.effectiveDateTime as string | undefined };
}

/** End of an OBR group: results and specimens onto the report, a lone specimen onto its observations. */
export function closeReport(conv: Conversion): void {
  const report = conv.report;
  if (!report) return;
  if (report.observations.length) report.resource.result = report.observations.map((o) => ({ reference: `Observation/${o.id}` }));
  if (report.specimens.length) {
    report.resource.specimen = report.specimens;
    if (report.specimens.length === 1) for (const o of report.observations) o.specimen = report.specimens[0];
  }
  conv.report = undefined;
}

export function obx(conv: Conversion, segment: Hl7Segment): void {
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.OBX!);
  const code = (body.code as CodeableConcept | undefined) ?? absentCode();
  body.code = code;
  const status = observationStatus[segment.value(11).trim().toUpperCase()] ?? 'unknown';
  const values = obxValues(conv, segment);
  const value: Json = {};
  if (values.length === 1) Object.assign(value, r4Value(values[0]!, R5_OBSERVATION_VALUE));
  else if (values.length > 1) value.component = values.map((v) => ({ code, ...r4Value(v, R5_COMPONENT_VALUE) }));
  const referenceRange = referenceRangeOf(conv, segment);
  const performer: Ref[] = [];
  segment.repetitions(16).forEach((_, rep) => {
    const who = conv.practitioner(segment, 16, rep);
    if (who) performer.push(who);
  });
  if (!body.effectiveDateTime && conv.report?.effective) body.effectiveDateTime = conv.report.effective;
  // What the observation belongs to: its report, order or dose; else the visit; else the patient
  // at the observation's time (without one, this message only: two undated readings of one code
  // in different messages are different things).
  const owner = conv.report?.key ?? conv.order?.key ?? conv.immunizationKey ?? conv.encounter?.key;
  const scope = owner ?? `${conv.patient?.key ?? conv.msgScope}|at:${(body.effectiveDateTime as string | undefined) ?? conv.msgScope}`;
  const codeKey = codeKeyOf(code);
  const key = codeKey ? `${scope}|obx:${codeKey}|sub:${segment.value(4).trim()}` : `${conv.msgScope}|${conv.path(segment)}`;
  const ref = conv.add(
    'Observation',
    key,
    {
      status,
      ...body,
      ...(conv.patient ? { subject: conv.patient.ref } : {}),
      ...(conv.encounter ? { encounter: conv.encounter.ref } : {}),
      ...(performer.length ? { performer } : {}),
      ...value,
      ...(referenceRange ? { referenceRange: [referenceRange] } : {}),
    },
    conv.path(segment),
    false,
  );
  const resource = conv.resourceOf(ref);
  for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
  if (conv.report) conv.report.observations.push(resource);
  else if (conv.order?.resource) {
    // OBX of an order: answers and observations the orderer supplies (v2-to-FHIR IG: ServiceRequest.supportingInfo)
    const info = (conv.order.resource.supportingInfo as Ref[] | undefined) ?? [];
    info.push(ref);
    conv.order.resource.supportingInfo = info;
  } else if (conv.immunization && conv.immunizationKey) resource.partOf = [{ reference: `Immunization/${conv.immunization.id}` }];
}

/** OBX-5 by OBX-2 → one `{ value[x] }` per repetition (text types: one, repetitions joined by line breaks). */
function obxValues(conv: Conversion, segment: Hl7Segment): Json[] {
  const at = conv.path(segment, 5);
  if (segment.isExplicitNull(5)) return [];
  const type = segment.value(2).trim().toUpperCase();
  const reps = segment.repetitions(5).map((_, i) => segment.components(5, i));
  const nonEmpty = reps.filter((c) => c.some((x) => x.trim() !== ''));
  if (nonEmpty.length === 0) return [];
  const units = segment.isExplicitNull(6) || !segment.raw(6) ? undefined : segment.components(6);
  const text = (c: readonly string[]) => c.join(conv.compSep);
  switch (type) {
    case 'ST':
    case 'TX':
    case 'FT':
      return [{ valueString: reps.map(text).join('\n').trim() }];
    case '':
      throw new HubError('invalid', 'OBX-2 (value type) is empty but OBX-5 is valued', conv.path(segment, 2));
  }
  return nonEmpty.map((c): Json => {
    switch (type) {
      case 'NM': {
        const q = nmToQuantity(c[0] ?? '', units, conv.sub);
        if (!q) throw new HubError('invalid', `OBX-5 "${c[0]}" is not a number (OBX-2 NM)`, at);
        return { valueQuantity: q };
      }
      case 'SN': {
        const sn = snToValue(c, units, conv.sub);
        if (!sn) return {};
        if (sn.kind === 'quantity') return { valueQuantity: sn.quantity };
        if (sn.kind === 'range') return { valueRange: sn.range };
        if (sn.kind === 'ratio') return { valueRatio: sn.ratio };
        return { valueString: sn.value };
      }
      case 'CQ': {
        const q = cqToQuantity(c, conv.sub);
        if (!q) throw new HubError('invalid', `OBX-5 "${text(c)}" is not a quantity (OBX-2 CQ)`, at);
        return { valueQuantity: q };
      }
      case 'MO':
      case 'CP': {
        const n = toNumber((c[0] ?? '').split(conv.sub)[0] ?? '');
        if (n === undefined) throw new HubError('invalid', `OBX-5 "${text(c)}" is not an amount (OBX-2 ${type})`, at);
        const currency = type === 'MO' ? (c[1] ?? '').trim() : ((c[0] ?? '').split(conv.sub)[1] ?? '').trim();
        return { valueQuantity: { value: n, ...(currency ? { unit: currency, system: 'urn:iso:std:iso:4217', code: currency } : {}) } };
      }
      case 'CE':
      case 'CWE':
      case 'CNE':
      case 'CF':
      case 'ID':
      case 'IS': {
        const cc = cweToCodeableConcept(c, conv.member);
        if (!cc) throw new HubError('invalid', `OBX-5 "${text(c)}" holds no code (OBX-2 ${type})`, at);
        return { valueCodeableConcept: cc };
      }
      case 'DT':
      case 'TS':
      case 'DTM': {
        const v = toDateTime(c[0] ?? '', conv.offset);
        if (!v) throw new HubError('invalid', `OBX-5 "${c[0]}" is not a date/time (OBX-2 ${type})`, at);
        return { valueDateTime: v };
      }
      case 'TM': {
        const m = /^(\d{2})(\d{2})?(\d{2})?/.exec((c[0] ?? '').trim());
        if (!m || Number(m[1]) > 23 || Number(m[2] ?? 0) > 59 || Number(m[3] ?? 0) > 59) throw new HubError('invalid', `OBX-5 "${c[0]}" is not a time (OBX-2 TM)`, at);
        return { valueTime: `${m[1]}:${m[2] ?? '00'}:${m[3] ?? '00'}` };
      }
      case 'DR': {
        const start = toDateTime((c[0] ?? '').split(conv.sub)[0] ?? '', conv.offset);
        const end = toDateTime((c[1] ?? '').split(conv.sub)[0] ?? '', conv.offset);
        if (!start && !end) throw new HubError('invalid', `OBX-5 "${text(c)}" is not a date range (OBX-2 DR)`, at);
        return { valuePeriod: { ...(start ? { start } : {}), ...(end ? { end } : {}) } };
      }
      case 'ED':
        return { valueAttachment: edAttachment(c, at) };
      case 'RP': {
        const pointer = (c[0] ?? '').trim();
        const contentType = mimeOf((c[3] ?? '').trim(), (c[2] ?? '').trim());
        return { valueAttachment: { ...(contentType ? { contentType } : {}), url: pointer.replace(/\s/g, '%20') } };
      }
      case 'HD':
      case 'EI':
      case 'CX':
      case 'XPN':
      case 'XAD':
      case 'XCN':
      case 'XON':
      case 'XTN':
      case 'PN':
      case 'AD':
      case 'NA':
        return { valueString: c.flatMap((x) => x.split(conv.sub)).map((x) => x.trim()).filter((x) => x !== '').join(' ') };
      default:
        throw new HubError('invalid', `OBX-2 value type "${type}" is not supported`, conv.path(segment, 2));
    }
  });
}

/** ED (source^type^subtype^encoding^data) → Attachment; the data is carried as base64. */
export function edAttachment(c: readonly string[], at: string): Json {
  const contentType = mimeOf((c[2] ?? '').trim(), (c[1] ?? '').trim());
  const encoding = (c[3] ?? '').trim().toUpperCase();
  const data = (c[4] ?? '').replace(/\s/g, '');
  let base64: string | undefined;
  if (data === '') base64 = undefined;
  else if (encoding === 'BASE64') {
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(data)) throw new HubError('invalid', 'OBX-5 ED data is not valid Base64', at);
    base64 = data;
  } else if (encoding === 'HEX') {
    if (!/^(?:[0-9A-Fa-f]{2})*$/.test(data)) throw new HubError('invalid', 'OBX-5 ED data is not valid hex', at);
    base64 = Buffer.from(data, 'hex').toString('base64');
  } else base64 = Buffer.from(c[4] ?? '', 'utf8').toString('base64');
  return { ...(contentType ? { contentType } : {}), ...(base64 ? { data: base64 } : {}) };
}

/** OBX-7 → referenceRange: "a-b", "a to b", "<b", "<=b", ">a", ">=a" with OBX-6 units; always the text as sent. */
function referenceRangeOf(conv: Conversion, segment: Hl7Segment): Json | undefined {
  if (segment.isExplicitNull(7)) return undefined;
  const text = segment.components(7).join(conv.compSep).trim();
  if (!text) return undefined;
  const units = segment.raw(6) && !segment.isExplicitNull(6) ? unitsOf(segment.components(6), conv.sub) : {};
  const q = (v: string): Quantity | undefined => {
    const n = toNumber(v);
    return n === undefined ? undefined : { value: n, ...units };
  };
  const between = RANGE_BETWEEN.exec(text);
  const bound = RANGE_BOUND.exec(text);
  let range: Json = {};
  if (between) range = { low: q(between[1]!), high: q(between[2]!) };
  else if (bound) range = bound[1]!.startsWith('<') || bound[1] === '≤' ? { high: q(bound[2]!) } : { low: q(bound[2]!) };
  return { ...range, text };
}

export function spm(conv: Conversion, segment: Hl7Segment): void {
  const body: Json = {};
  const nulls = applyRules(conv, body, segment, conv.maps.SPM!);
  const c = segment.components(2);
  const placer = (c[0] ?? '').split(conv.sub)[0]!.trim();
  const filler = (c[1] ?? '').split(conv.sub)[0]!.trim();
  const identifier = [filler, placer].filter((x) => x !== '').map((value) => ({ value }));
  const key = filler || placer ? `spm:${filler}|${placer}` : `${conv.report?.key ?? conv.msgScope}|${conv.path(segment)}`;
  const ref = conv.add('Specimen', key, { ...(identifier.length ? { identifier } : {}), ...body, ...(conv.patient ? { subject: conv.patient.ref } : {}) }, conv.path(segment), false);
  for (const n of nulls) addMeta(conv.resourceOf(ref), EXPLICIT_NULL_URL, n);
  conv.report?.specimens.push(ref);
  if (conv.order?.resource) {
    conv.order.specimens.push(ref);
    const specimen = conv.resourceOf(ref);
    specimen.request = [...((specimen.request as Ref[] | undefined) ?? []), { reference: `ServiceRequest/${conv.order.resource.id}` }];
  }
}

/** NTE after an OBX → Observation.note (only inside the profiles that convert OBX). */
export function note(conv: Conversion, segment: Hl7Segment): void {
  if (!conv.active.has('OBX') || conv.last?.resourceType !== 'Observation') return;
  const text = segment
    .repetitions(3)
    .map((_, i) => segment.components(3, i).join(conv.compSep))
    .join('\n')
    .trim();
  if (!text) return;
  const notes = (conv.last.note as Json[] | undefined) ?? [];
  notes.push({ text });
  conv.last.note = notes;
}

/** OBX-7 `a-b`, `a – b`, `a~b`, `a to b` */
const RANGE_BETWEEN = /^([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:-|–|~|to)\s*([+-]?(?:\d+\.?\d*|\.\d+))$/i;
/** OBX-7 `<b`, `<=b`, `>a`, `>=a`, `≤b`, `≥a` */
const RANGE_BOUND = /^(<=?|>=?|≤|≥)\s*([+-]?(?:\d+\.?\d*|\.\d+))$/;
/**
 * R4 Observation.value[x] has no Attachment (R5 added it): ED and RP values travel in the R5
 * cross-version extension for Observation.value (and .component.value), as FHIR prescribes for
 * elements of a later version.
 */
const R5_OBSERVATION_VALUE = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value';
const R5_COMPONENT_VALUE = 'http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.component.value';

function r4Value(v: Json, url: string): Json {
  if (!('valueAttachment' in v)) return v;
  return { extension: [{ url, valueAttachment: v.valueAttachment }] };
}

function mimeOf(subtype: string, type: string): string | undefined {
  if (subtype.includes('/')) return subtype;
  return mimeBySubtype[subtype.toUpperCase()] ?? (type.toUpperCase() === 'TEXT' ? 'text/plain' : undefined);
}
