/**
 * Documents (MDM^T01–T11): TXA + its OBX → DocumentReference; text OBX are the lines of one
 * text/plain attachment, ED values attachments of their own. Built when the group ends
 * (`closeDocument`: the next TXA or the end of the message); the group's Z-segments go onto it then.
 */
import { cweToCodeableConcept, toDateTime } from '../datatypes';
import { edAttachment } from './results';
import { SEGMENT_PATH_URL, addMeta, eiSystem, type Conversion, type Json, type Ref } from './conversion';

/** Table 0271 document completion status (TXA-17) → DocumentReference.docStatus. */
const documentCompletionStatus: Readonly<Record<string, string>> = {
  AU: 'final',
  LA: 'final',
  IP: 'preliminary',
  IN: 'preliminary',
  PA: 'preliminary',
  DI: 'preliminary',
  DO: 'preliminary',
};

export function closeDocument(conv: Conversion): void {
  const doc = conv.document;
  if (!doc) return;
  conv.document = undefined;
  const txa = doc.txa;
  const patient = conv.requirePatient(txa);
  const ei = !txa.isExplicitNull(12) ? txa.components(12) : undefined;
  const number = (ei?.[0] ?? '').trim();
  const system = number ? eiSystem(ei!, conv.member, conv.sub) : undefined;
  const key = number ? `doc:${system ?? ''}|${number}` : `${conv.msgScope}|${conv.path(txa)}`;
  const type = txa.isExplicitNull(2) ? undefined : cweToCodeableConcept(txa.components(2), conv.member);
  const availability = txa.value(19).trim().toUpperCase();
  const docStatus = documentCompletionStatus[txa.value(17).trim().toUpperCase()];
  const author: Ref[] = [];
  for (const field of [9, 5]) {
    txa.repetitions(field).forEach((_, rep) => {
      const who = conv.practitioner(txa, field, rep);
      if (who && !author.some((a) => a.reference === who.reference)) author.push(who);
    });
  }
  const date = [toDateTime(txa.value(4, 0, 1, 1), conv.offset), toDateTime(txa.value(6, 0, 1, 1), conv.offset)].find((d) => d !== undefined && isInstant(d));
  // OBX-5: text types are lines of one text/plain attachment (first); ED values are attachments of their own type
  const lines: string[] = [];
  const attachments: Json[] = [];
  for (const obx of doc.obx) {
    if (obx.isExplicitNull(5)) continue;
    const vt = obx.value(2).trim().toUpperCase();
    const reps = obx.repetitions(5).map((_, i) => obx.components(5, i));
    if (vt === 'TX' || vt === 'FT' || vt === 'ST') lines.push(...reps.map((c) => c.join(conv.compSep)));
    else if (vt === 'ED') for (const c of reps) if (c.some((x) => x.trim() !== '')) attachments.push(edAttachment(c, conv.path(obx, 5)));
  }
  const text = lines.join('\n');
  const content: Json[] = [
    ...(text.trim() ? [{ attachment: { contentType: 'text/plain; charset=utf-8', data: Buffer.from(text, 'utf8').toString('base64') } }] : []),
    ...attachments.filter((a) => Object.keys(a).length > 0).map((attachment) => ({ attachment })),
  ];
  // R4 content is 1..*: a document announced without its content carries data-absent-reason
  if (content.length === 0) content.push({ attachment: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] } });
  const ref = conv.add(
    'DocumentReference',
    key,
    {
      ...(number ? { masterIdentifier: { ...(system ? { system } : {}), value: number } } : {}),
      status: availability === 'OB' ? 'superseded' : 'current',
      ...(docStatus ? { docStatus } : {}),
      ...(type ? { type } : {}),
      subject: patient.ref,
      ...(date ? { date } : {}),
      ...(author.length ? { author } : {}),
      content,
      ...(conv.encounter ? { context: { encounter: [conv.encounter.ref] } } : {}),
    },
    conv.path(txa),
    false,
  );
  const resource = conv.resourceOf(ref);
  for (const obx of doc.obx) addMeta(resource, SEGMENT_PATH_URL, conv.path(obx));
  conv.attachZ(resource, conv.pendingZ.splice(0));
}

/** A FHIR dateTime precise to the second with an offset (what an `instant` element takes). */
function isInstant(v: string): boolean {
  return /T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v);
}
