/**
 * Referral events from referral messages, and their precedence over referrals inferred from visits,
 * on the real pipeline and PostgreSQL. The clinic's EMR sends a referral (a FHIR ServiceRequest,
 * category SNOMED CT 3457005 "Patient referral", requester the clinic, performer the county
 * hospital); visits come as HL7 v2 ADT. Before the clinic sends referral messages its referrals are
 * inferred from the next visit at another member; once it does, they come from its messages only.
 */
import type { MemberConfig } from '../hub/config';
import { nameResource } from '../adapters/fhir/resource';
import { FhirIntake } from '../adapters/fhir/store';
import { encodeAs } from '../cli/simulate';
import { runPipeline } from '../pipeline/runner';
import { syncTerminology } from '../hub/terminology/versions';
import { buildCostFeed } from '../hub/feeds/builder';
import type { CostEvent } from '../hub/feeds/costEvents';
import { RESIDENT_ID_SYSTEM } from '../mappings/hl7v2/segments';
import { startTestHub, type TestHub } from './support/hub';
import { members, people, referralMessage, visit } from './cost-feed-fixture';

const SECRET = 'cost-feed-test-secret-0123456789';
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
let hub: TestHub;

async function send(memberId: string, text: string): Promise<void> {
  const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
  const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
  expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
}

/** Resources from the clinic's FHIR server, through intake and the pipeline like pulled ones. */
async function sendFhir(memberId: string, resources: Array<Record<string, unknown>>): Promise<void> {
  const source = { memberId, channelId: 'emr', server: 'https://emr.clinic.example/fhir' };
  const result = await new FhirIntake(hub.runtime.db, hub.runtime.queues).storeBatch(resources.map((r) => nameResource(source, Buffer.from(JSON.stringify(r)), r)));
  for (const id of result.queuedIds) expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, id, true)).toBe('processed');
}

const build = () => buildCostFeed(hub.runtime.db, hub.config, { secret: Buffer.from(SECRET) });
const referrals = async () =>
  (await hub.runtime.db.query<{ event: CostEvent }>(`SELECT event FROM cost_event WHERE kind = 'referral' ORDER BY seq`)).rows.map((r) => r.event);

beforeAll(async () => {
  hub = await startTestHub('costfeedref', { members });
  await syncTerminology(hub.runtime.db);
}, 120_000);

afterAll(async () => {
  await hub.close();
});

test('a referral message yields a referral event; the referring member then gets no inferred referrals', async () => {
  const { p1, p2 } = people;
  // P1: clinic → county, no referral message: inferred (up), as before.
  await send('clinic', visit({ member: 'clinic', p: p1, control: 'S-V1', time: '20260301090000', visitNo: 'SV1', dept: '全科', doctor: 'S001', icd10: 'I10' }));
  await send('county', visit({ member: 'county', p: p1, control: 'C-V1', time: '20260304090000', visitNo: 'CV1', dept: '内科', doctor: 'C001', icd10: 'I10' }));
  await build();
  expect((await referrals()).map((e) => [e.source.resourceType, e.referral])).toEqual([['Encounter', { direction: 'up', fromMember: 'clinic', toMember: 'county' }]]);

  // P2: the clinic refers to the county by a referral message (its EMR's FHIR ServiceRequest).
  const patient = {
    resourceType: 'Patient',
    id: 'pat-2',
    identifier: [{ system: RESIDENT_ID_SYSTEM, value: p2.residentId }, { system: 'https://emr.clinic.example/mrn', value: p2.mrn.clinic }],
    name: [{ family: p2.family, given: [p2.given] }],
    gender: 'female',
    birthDate: `${p2.birth.slice(0, 4)}-${p2.birth.slice(4, 6)}-${p2.birth.slice(6)}`,
  };
  const clinic = { resourceType: 'Organization', id: 'org-clinic', identifier: [{ system: 'urn:yilian:member', value: 'clinic' }], name: '城东社区卫生服务中心' };
  const county = { resourceType: 'Organization', id: 'org-county', name: '县人民医院' };
  const referral = {
    resourceType: 'ServiceRequest',
    id: 'ref-1',
    status: 'active',
    intent: 'order',
    category: [{ coding: [{ system: 'http://snomed.info/sct', code: '3457005', display: 'Patient referral' }] }],
    subject: { reference: 'Patient/pat-2' },
    authoredOn: '2026-04-02T01:00:00Z',
    requester: { reference: 'Organization/org-clinic' },
    performer: [{ reference: 'Organization/org-county' }],
  };
  await sendFhir('clinic', [patient, clinic, county, referral]);
  // ... and P2's visits: clinic then county (which alone would have been inferred as a referral).
  await send('clinic', visit({ member: 'clinic', p: p2, control: 'S-V2', time: '20260401090000', visitNo: 'SV2', dept: '全科', doctor: 'S001', icd10: 'I10' }));
  await send('county', visit({ member: 'county', p: p2, control: 'C-V2', time: '20260403090000', visitNo: 'CV2', dept: '内科', doctor: 'C001', icd10: 'I10' }));
  const summary = await build();
  expect(summary.pending).toBe(0);
  const events = await referrals();
  const fromMessage = events.filter((e) => e.source.resourceType === 'ServiceRequest');
  expect(fromMessage).toHaveLength(1);
  expect(fromMessage[0]).toMatchObject({ member: 'clinic', occurredAt: '2026-04-02T01:00:00.000Z', referral: { direction: 'up', fromMember: 'clinic', toMember: 'county' } });
  expect(fromMessage[0]!.patientKey).toMatch(/^[0-9a-f]{64}$/);
  // The same person: the message's patient key is the key of P2's visits.
  const p2Visit = (await hub.runtime.db.query<{ event: CostEvent }>(`SELECT event FROM cost_event WHERE kind = 'encounter' AND occurred_at = '2026-04-03T01:00:00Z'`)).rows[0]!.event;
  expect(p2Visit.patientKey).toBe(fromMessage[0]!.patientKey);
  // Precedence: no referral inferred for P2's county visit (the clinic sends referral messages). P1's
  // inferred referral, published before, stays (history is not rewritten).
  expect(events.filter((e) => e.source.resourceType === 'Encounter')).toHaveLength(1);
  expect((await build()).appended).toBe(0);

  // The referral revoked: a void correction naming it.
  await sendFhir('clinic', [{ ...referral, status: 'revoked', meta: { versionId: '2' } }]);
  expect(await build()).toMatchObject({ appended: 1, voided: 1 });
  const last = (await referrals()).pop()!;
  expect(last).toMatchObject({ status: 'void', corrects: fromMessage[0]!.id });
});

test('an HL7 v2 REF^I12 is a referral from the member of the referring facility to that of the referred-to one', async () => {
  const { p3 } = people;
  await send('county', visit({ member: 'county', p: p3, control: 'C-V9', time: '20260405090000', visitNo: 'CV9', dept: '内科', doctor: 'C001', icd10: 'I10' }));
  await send('county', referralMessage({ from: 'county', to: 'clinic', p: p3, control: 'C-REF1', time: '20260405100000', referralId: 'R-0001' }));
  await send('clinic', visit({ member: 'clinic', p: p3, control: 'S-V9', time: '20260409100000', visitNo: 'SV9', dept: '全科', doctor: 'S001', icd10: 'I10' }));
  expect((await build()).pending).toBe(0);
  const fromMessage = (await referrals()).filter((e) => e.source.resourceType === 'ServiceRequest' && e.member === 'county');
  expect(fromMessage).toHaveLength(1);
  expect(fromMessage[0]).toMatchObject({ referral: { direction: 'down', fromMember: 'county', toMember: 'clinic' } });
  // The county sends referral messages now: its visits' referrals are no longer inferred.
  expect((await referrals()).filter((e) => e.source.resourceType === 'Encounter' && e.member === 'clinic' && e.occurredAt?.startsWith('2026-04-09'))).toHaveLength(0);
});
