/**
 * Orders (ORM^O01, OML^O21, OMG^O19): ORC + OBR → ServiceRequest, its status from tables 0038 and
 * 0119, and a v2.3 OBR-15 specimen source → Specimen. An order group is open until the next ORC,
 * the next OBR of the same ORC, or the end of the message (`closeOrder`).
 */
import type { Hl7Segment } from '../message';
import { cweToCodeableConcept, toDateTime } from '../datatypes';
import { applyRules } from './fieldRules';
import { EXPLICIT_NULL_URL, SEGMENT_PATH_URL, absentCode, addMeta, placerFiller, type Conversion, type Json, type Ref } from './conversion';

/** Table 0038 order status → ServiceRequest.status (v2-to-FHIR ConceptMap OrderStatus). */
const serviceRequestStatusByOrderStatus: Readonly<Record<string, string>> = {
  A: 'active',
  CA: 'revoked',
  CM: 'completed',
  DC: 'revoked',
  ER: 'entered-in-error',
  HD: 'on-hold',
  IP: 'active',
  RP: 'revoked',
  SC: 'active',
};

/** Table 0119 order control → ServiceRequest.status, when ORC-5 is empty. */
const serviceRequestStatusByOrderControl: Readonly<Record<string, string>> = {
  NW: 'active',
  OK: 'active',
  SC: 'active',
  SN: 'active',
  XO: 'active',
  XX: 'active',
  RO: 'active',
  RL: 'active',
  CA: 'revoked',
  OC: 'revoked',
  CR: 'revoked',
  DC: 'revoked',
  OD: 'revoked',
  DR: 'revoked',
  HD: 'on-hold',
  OH: 'on-hold',
};

/** TQ1-9 priority (table 0485) → ServiceRequest.priority. */
const priorityByCode: Readonly<Record<string, string>> = { S: 'stat', A: 'asap', R: 'routine' };

export function orc(conv: Conversion, segment: Hl7Segment): void {
  closeOrder(conv);
  conv.order = { orc: segment, specimens: [] };
}

/** An OBR after its ORC (or after an earlier OBR of the same ORC, or with no ORC at all). */
export function orderObr(conv: Conversion, segment: Hl7Segment): void {
  if (conv.order?.resource) {
    const orc = conv.order.orc;
    closeOrder(conv);
    conv.order = { orc, specimens: [] };
  }
  conv.order ??= { specimens: [] };
  serviceRequest(conv, conv.order, segment);
}

/** End of an order group: an ORC without OBR still is a ServiceRequest; specimens onto it. */
export function closeOrder(conv: Conversion): void {
  const order = conv.order;
  if (!order) return;
  if (!order.resource && order.orc) serviceRequest(conv, order, undefined);
  if (order.resource && order.specimens.length) order.resource.specimen = [...(order.resource.specimen as Ref[] | undefined ?? []), ...order.specimens];
  conv.order = undefined;
}

/** Builds the order's ServiceRequest (and an OBR-15 Specimen) onto `order`. */
function serviceRequest(conv: Conversion, order: NonNullable<Conversion['order']>, obr: Hl7Segment | undefined): void {
  const { orc, tq1 } = order;
  const anchor = (orc ?? obr)!;
  const patient = conv.requirePatient(anchor);
  const body: Json = {};
  const nulls = orc ? applyRules(conv, body, orc, conv.maps.ORC!) : [];
  // ORC's number, else the OBR's (ORC-2/3 and OBR-2/3 are the same numbers).
  const ei = (field: number): string[] | undefined => {
    for (const seg of [orc, obr]) if (seg && !seg.isExplicitNull(field) && (seg.components(field)[0] ?? '').trim()) return seg.components(field);
    return undefined;
  };
  const ids = placerFiller(conv, ei(2), ei(3), 'order');
  const identifier = ids.identifier;
  const key = ids.key ?? `${conv.msgScope}|${conv.path(anchor)}`;
  const orderStatusCode = orc?.value(5).trim().toUpperCase() ?? '';
  const controlCode = orc?.value(1).trim().toUpperCase() ?? '';
  const status = serviceRequestStatusByOrderStatus[orderStatusCode] ?? serviceRequestStatusByOrderControl[controlCode] ?? 'unknown';
  const code = (obr && !obr.isExplicitNull(4) ? cweToCodeableConcept(obr.components(4), conv.member) : undefined) ?? absentCode();
  let requester: Ref | undefined;
  for (const [seg, field] of [
    [orc, 12],
    [obr, 16],
  ] as const) {
    if (requester || !seg) continue;
    for (let rep = 0; rep < seg.repetitions(field).length && !requester; rep++) requester = conv.practitioner(seg, field, rep);
  }
  const occurrence: Json = {};
  const tqStart = tq1 ? toDateTime(tq1.value(7), conv.offset) : undefined;
  const tqEnd = tq1 ? toDateTime(tq1.value(8), conv.offset) : undefined;
  if (tqStart || tqEnd) occurrence.occurrencePeriod = { ...(tqStart ? { start: tqStart } : {}), ...(tqEnd ? { end: tqEnd } : {}) };
  else if (obr) {
    const at = toDateTime(obr.value(7), conv.offset);
    if (at) occurrence.occurrenceDateTime = at;
  }
  const priority = tq1 ? priorityByCode[tq1.value(9).trim().toUpperCase()] : undefined;
  const paths = [orc, obr].filter((x): x is Hl7Segment => x !== undefined).map((x) => conv.path(x));
  const ref = conv.add(
    'ServiceRequest',
    key,
    {
      ...(identifier.length ? { identifier } : {}),
      status,
      intent: 'order',
      ...(priority ? { priority } : {}),
      code,
      subject: patient.ref,
      ...(conv.encounter ? { encounter: conv.encounter.ref } : {}),
      ...occurrence,
      ...body,
      ...(requester ? { requester } : {}),
    },
    paths[0],
    false,
  );
  const resource = conv.resourceOf(ref);
  for (const p of paths.slice(1)) addMeta(resource, SEGMENT_PATH_URL, p);
  for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
  const srKey = conv.entries.get(ref.reference)!.key;
  order.resource = resource;
  order.key = srKey;
  // v2.3 OBR-15 specimen source (SPS: CWE specimen source name or code ^ additives ^ … ^ body site)
  if (obr && !obr.isExplicitNull(15)) {
    const c = obr.components(15);
    const type = cweToCodeableConcept((c[0] ?? '').split(conv.sub), conv.member);
    const site = cweToCodeableConcept((c[3] ?? '').split(conv.sub), conv.member);
    if (type || site) {
      const spec = conv.add(
        'Specimen',
        `${srKey}|obr15`,
        { ...(type ? { type } : {}), subject: patient.ref, request: [ref], ...(site ? { collection: { bodySite: site } } : {}) },
        conv.path(obr, 15),
        true,
      );
      order.specimens.push(spec);
    }
  }
}
