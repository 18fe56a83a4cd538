/**
 * Immunization (VXU^V04): RXA (+ RXR route and site) → Immunization, RXA-17 → the manufacturer
 * Organization. The OBX after an RXA belong to it: results.ts keys and links them through the
 * conversion's current immunization.
 */
import type { Hl7Segment } from '../message';
import { HubError } from '../../outcome';
import { cweToCodeableConcept, nmToQuantity, toDate, toDateTime, toNumber } from '../datatypes';
import { SEGMENT_PATH_URL, absentCode, addMeta, codeKeyOf, eiSystem, type Conversion, type Json, type Ref } from './conversion';

export function rxa(conv: Conversion, segment: Hl7Segment): void {
  const patient = conv.requirePatient(segment);
  const at = (f: number) => (segment.isExplicitNull(f) ? undefined : segment.components(f));
  const vaccineCode = (at(5) && cweToCodeableConcept(at(5)!, conv.member)) || absentCode();
  const occurrence = toDateTime(segment.value(3, 0, 1, 1), conv.offset);
  if (!occurrence) throw new HubError('structure', 'RXA-3 (date/time start of administration) is empty or unreadable', conv.path(segment, 3));
  const amount = segment.value(6).trim();
  const dose = amount && toNumber(amount) !== 999 ? nmToQuantity(amount, at(7), conv.sub) : undefined;
  const completion = segment.value(20).trim().toUpperCase();
  const action = segment.value(21).trim().toUpperCase();
  const status = action === 'D' ? 'entered-in-error' : completion === 'RE' || completion === 'NA' ? 'not-done' : 'completed';
  const statusReason = status === 'not-done' && at(18) ? cweToCodeableConcept(at(18)!, conv.member) : undefined;
  const origin = segment.value(9).trim();
  const primarySource = origin === '00' ? true : /^0[1-8]$/.test(origin) ? false : undefined;
  const lot = segment.value(15).trim();
  const expiration = toDate(segment.value(16, 0, 1, 1).trim());
  let manufacturer: Ref | undefined;
  const mvx = at(17) ? cweToCodeableConcept(at(17)!, conv.member) : undefined;
  const mvxKey = codeKeyOf(mvx);
  if (mvx && mvxKey) {
    const coding = mvx.coding?.find((c) => c.code);
    const name = mvx.coding?.find((c) => c.display)?.display ?? mvx.text;
    manufacturer = conv.add(
      'Organization',
      `manufacturer:${mvxKey}`,
      { ...(coding ? { identifier: [{ ...(coding.system ? { system: coding.system } : {}), value: coding.code! }] } : {}), active: true, ...(name ? { name } : {}) },
      conv.path(segment, 17),
      true,
    );
  }
  const performer: Json[] = [];
  segment.repetitions(10).forEach((_, rep) => {
    const who = conv.practitioner(segment, 10, rep);
    if (who && !performer.some((p) => (p.actor as Ref).reference === who.reference))
      performer.push({ function: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0443', code: 'AP', display: 'Administering Provider' }] }, actor: who });
  });
  const orc = conv.immunizationOrc;
  const filler = orc && !orc.isExplicitNull(3) ? orc.components(3) : undefined;
  const fillerValue = (filler?.[0] ?? '').trim();
  const fillerSystem = fillerValue ? eiSystem(filler!, conv.member, conv.sub) : undefined;
  const key = fillerValue ? `imm-filler:${fillerSystem ?? ''}|${fillerValue}` : `imm:${patient.key}|${codeKeyOf(vaccineCode) ?? ''}|${occurrence}`;
  const ref = conv.add(
    'Immunization',
    key,
    {
      ...(fillerValue ? { identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'FILL' }] }, ...(fillerSystem ? { system: fillerSystem } : {}), value: fillerValue }] } : {}),
      status,
      ...(statusReason ? { statusReason } : {}),
      vaccineCode,
      patient: patient.ref,
      ...(conv.encounter ? { encounter: conv.encounter.ref } : {}),
      occurrenceDateTime: occurrence,
      ...(primarySource !== undefined ? { primarySource } : {}),
      ...(manufacturer ? { manufacturer } : {}),
      ...(lot ? { lotNumber: lot } : {}),
      ...(expiration ? { expirationDate: expiration } : {}),
      ...(dose ? { doseQuantity: dose } : {}),
      ...(performer.length ? { performer } : {}),
      ...(completion === 'PA' && status === 'completed' ? { isSubpotent: true } : {}),
    },
    conv.path(segment),
    false,
  );
  conv.immunization = conv.resourceOf(ref);
  conv.immunizationKey = conv.entries.get(ref.reference)!.key;
  if (orc) addMeta(conv.immunization, SEGMENT_PATH_URL, conv.path(orc));
}

/** RXR after an RXA: route RXR-1, site RXR-2 of that Immunization. */
export function rxr(conv: Conversion, segment: Hl7Segment): void {
  const imm = conv.immunization;
  if (!imm) return;
  const route = segment.isExplicitNull(1) ? undefined : cweToCodeableConcept(segment.components(1), conv.member);
  const site = segment.isExplicitNull(2) ? undefined : cweToCodeableConcept(segment.components(2), conv.member);
  if (route) imm.route = route;
  if (site) imm.site = site;
  if (route || site) addMeta(imm, SEGMENT_PATH_URL, conv.path(segment));
}
