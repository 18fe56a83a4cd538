/**
 * Financial transactions (DFT^P03/P11, and the FT1 other message profiles carry): FT1 →
 * ChargeItem, PID-18 → the Account it is charged to.
 */
import type { Hl7Segment } from '../message';
import { cweToCodeableConcept, cxToIdentifier, hdToSystem, toDateTime, toNumber, type CodeableConcept } from '../datatypes';
import { absentCode, type Conversion, type Json, type Ref } from './conversion';

/** PID-18 patient account number → Account (status active, subject the Patient); key member + the account number. */
function patientAccount(conv: Conversion): Ref | undefined {
  const pid = conv.message.segments.find((s) => s.name === 'PID');
  if (!pid || !conv.patient || pid.isExplicitNull(18)) return undefined;
  const c = pid.components(18);
  const value = (c[0] ?? '').trim();
  if (!value) return undefined;
  const identifier = cxToIdentifier(c, conv.member, conv.sub, conv.offset);
  const system = hdToSystem(c[3] ?? '', conv.member, conv.sub) ?? '';
  return conv.add('Account', `account:${system}|${value}`, { ...(identifier ? { identifier: [identifier] } : {}), status: 'active', subject: [conv.patient.ref] }, conv.path(pid, 18), true);
}

export function ft1(conv: Conversion, segment: Hl7Segment): void {
  const patient = conv.requirePatient(segment);
  const at = (f: number) => (segment.isExplicitNull(f) ? undefined : segment.components(f));
  const txn = at(2);
  const txnValue = (txn?.[0] ?? '').trim();
  const identifier = txnValue ? cxToIdentifier(txn!, conv.member, conv.sub, conv.offset) : undefined;
  const key = txnValue ? `txn:${txnValue}` : `${conv.msgScope}|ft1:${segment.value(1).trim() || conv.path(segment)}`;
  const code = (at(7) && cweToCodeableConcept(at(7)!, conv.member)) || absentCode();
  const occurrence = toDateTime(segment.value(4, 0, 1, 1), conv.offset);
  const entered = toDateTime(segment.value(5, 0, 1, 1), conv.offset);
  const quantity = at(10) ? toNumber(at(10)![0] ?? '') : undefined;
  const amount = at(11) ? (at(11)![0] ?? '').split(conv.sub) : [];
  const price = toNumber(amount[0] ?? '');
  const currency = (amount[1] ?? '').trim().toUpperCase();
  // FT1-20 performed by; FT1-21 ordered by (ordering provider, table 0443 OP); FT1-24 entered by
  const performer: Json[] = [];
  for (const [field, role] of [
    [20, undefined],
    [21, { system: 'http://terminology.hl7.org/CodeSystem/v2-0443', code: 'OP', display: 'Ordering Provider' }],
  ] as const) {
    segment.repetitions(field).forEach((_, rep) => {
      const who = conv.practitioner(segment, field, rep);
      if (who && !performer.some((p) => (p.actor as Ref).reference === who.reference)) performer.push({ ...(role ? { function: { coding: [role] } } : {}), actor: who });
    });
  }
  const enterer = conv.practitioner(segment, 24, 0);
  const reason = segment.isExplicitNull(19)
    ? []
    : segment
        .repetitions(19)
        .map((_, rep) => cweToCodeableConcept(segment.components(19, rep), conv.member))
        .filter((x): x is CodeableConcept => x !== undefined);
  const account = patientAccount(conv);
  conv.add(
    'ChargeItem',
    key,
    {
      ...(identifier ? { identifier: [identifier] } : {}),
      status: 'billable',
      code,
      subject: patient.ref,
      ...(conv.encounter ? { context: conv.encounter.ref } : {}),
      ...(occurrence ? { occurrenceDateTime: occurrence } : {}),
      ...(performer.length ? { performer } : {}),
      ...(enterer ? { enterer } : {}),
      ...(entered ? { enteredDate: entered } : {}),
      ...(quantity !== undefined ? { quantity: { value: quantity } } : {}),
      ...(price !== undefined ? { priceOverride: { value: price, ...(/^[A-Z]{3}$/.test(currency) ? { currency } : {}) } } : {}),
      ...(reason.length ? { reason } : {}),
      ...(account ? { account: [account] } : {}),
    },
    conv.path(segment),
    false,
  );
}
