/**
 * Referrals (REF/RRI^I12–I15): RF1 + PRD → ServiceRequest, the referring and referred-to
 * facilities as Organizations (the sending member when no PRD names the referrer). Built once the
 * whole message is read (`closeReferral`): in REF^I12 the PID follows RF1 and PRD.
 */
import { HubError } from '../../outcome';
import { applyRules } from './fieldRules';
import { EXPLICIT_NULL_URL, SEGMENT_PATH_URL, addMeta, eiSystem, type Conversion, type Json } from './conversion';

/** Table 0283 referral status → R4 request-status (A accepted, P pending, R rejected, E expired). */
const referralStatus: Record<string, string> = { A: 'active', P: 'on-hold', R: 'revoked', E: 'completed' };
/** Table 0280 referral priority → R4 request-priority. */
const referralPriority: Record<string, string> = { S: 'stat', A: 'asap', R: 'routine' };

export function closeReferral(conv: Conversion): void {
  const referral = conv.referral;
  if (!referral) return;
  conv.referral = undefined;
  const rf1 = referral.rf1;
  const body: Json = {};
  const nulls = applyRules(conv, body, rf1, conv.maps.RF1!);
  const trigger = conv.message.msh.value(9, 0, 2).trim().toUpperCase();
  const status = trigger === 'I14' ? 'revoked' : (referralStatus[rf1.value(1).trim().toUpperCase()] ?? 'active');
  const priority = referralPriority[rf1.value(2).trim().toUpperCase()];
  const category = [{ coding: [{ system: 'http://snomed.info/sct', code: '3457005', display: 'Patient referral' }] }, ...((body.category as Json[] | undefined) ?? [])];
  const idOf = (field: number) => {
    const c = rf1.isExplicitNull(field) ? undefined : rf1.components(field);
    return (c?.[0] ?? '').trim() ? `referral:${eiSystem(c!, conv.member, conv.sub) ?? ''}|${c![0]!.trim()}` : undefined;
  };
  const key = idOf(6) ?? idOf(11) ?? `${conv.msgScope}|${conv.path(rf1)}`;
  const facility = (role: string) => {
    const prd = referral.providers.find((p) => p.value(1, 0, 1).trim().toUpperCase() === role);
    if (!prd) return undefined;
    const id = prd.value(4, 0, 4).split(conv.sub)[0]!.trim();
    const name = prd.value(4, 0, 9).trim() || id;
    if (!id && !name) return undefined;
    return conv.add('Organization', `facility:${id || name}`, { ...(id ? { identifier: [{ system: `urn:yilian:${conv.member}:facility`, value: id }] } : {}), name }, conv.path(prd, 4), true);
  };
  const requester = facility('RP') ?? conv.memberOrganization();
  const performer = facility('RT');
  const ref = conv.add(
    'ServiceRequest',
    key,
    {
      ...body,
      status,
      intent: 'order',
      ...(priority ? { priority } : {}),
      category,
      ...(conv.patient ? { subject: conv.patient.ref } : {}),
      requester,
      ...(performer ? { performer: [performer] } : {}),
    },
    conv.path(rf1),
    false,
  );
  if (!conv.patient) throw new HubError('structure', `${conv.message.msh.value(9, 0, 1)}: the referral has no patient (no PID)`, conv.path(rf1));
  const resource = conv.resourceOf(ref);
  for (const p of referral.providers) addMeta(resource, SEGMENT_PATH_URL, conv.path(p));
  for (const n of nulls) addMeta(resource, EXPLICIT_NULL_URL, n);
}
