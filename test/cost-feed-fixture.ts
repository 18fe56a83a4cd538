/**
 * A small alliance for the cost feed and KPI tests: a lead (tertiary) hospital, a county
 * (secondary) hospital and a community clinic (primary), and HL7 v2 messages for a few patients
 * seen at several of them — visits, labs, a CT shared by the county hospital, charges, and a lead
 * expert holding clinics at the community member. Every identity detail (names, resident IDs,
 * phones, addresses, MRNs) is listed in `identities` so a test can look for it in the feed.
 */
import { makeResidentId } from '../hub/mpi/residentId';

export const members = [
  { id: 'lead', name: '市第一人民医院', tier: 'tertiary', conversion: { residentIdField: 19 } },
  { id: 'county', name: '县人民医院', tier: 'secondary', conversion: { residentIdField: 19 } },
  { id: 'clinic', name: '城东社区卫生服务中心', tier: 'primary', conversion: { residentIdField: 19 } },
];

export interface FixturePerson {
  family: string;
  given: string;
  birth: string;
  sex: 'M' | 'F';
  residentId: string;
  phone: string;
  street: string;
  /** MRN per member. */
  mrn: Record<string, string>;
}

const person = (i: number, family: string, given: string, birth: string, sex: 'M' | 'F'): FixturePerson => ({
  family,
  given,
  birth,
  sex,
  residentId: makeResidentId('330102', birth, 100 + i, sex),
  phone: `1390571${String(1000 + i)}`,
  street: `解放路${20 + i}号`,
  mrn: { lead: `L9${i}0071`, county: `C8${i}0052`, clinic: `S7${i}0033` },
});

export const people = {
  p1: person(1, '欧阳', '晓峰', '19580314', 'M'),
  p2: person(2, '司马', '秀兰', '19620720', 'F'),
  p3: person(3, '诸葛', '明远', '19700105', 'M'),
};

/** Every identity value a feed event must never carry. */
export function identities(): string[] {
  const out: string[] = [];
  for (const p of Object.values(people)) out.push(p.family, p.given, p.residentId, p.phone, p.street, ...Object.values(p.mrn));
  return out;
}

const facility: Record<string, string> = { lead: 'LEADH', county: 'CNTYH', clinic: 'EASTC' };

function header(member: string, type: string, control: string, time: string): string {
  return `MSH|^~\\&|HIS|${facility[member]}|YILIAN|HUB|${time}||${type}|${control}|P|2.5|||||CHN|UNICODE UTF-8`;
}

function pid(member: string, p: FixturePerson): string {
  return `PID|1||${p.mrn[member]}^^^${facility[member]}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}|||${p.street}^^杭州市^浙江省^310000^CHN||${p.phone}|||||||${p.residentId}`;
}

/** A visit: PV1 with department, attending doctor (XCN with the provincial practitioner register as authority) and visit number; DG1 with an ICD-10 code. */
export function visit(o: { member: string; p: FixturePerson; control: string; time: string; visitNo: string; dept: string; doctor: string; icd10: string; cls?: string }): string {
  return [
    header(o.member, 'ADT^A04^ADT_A01', o.control, o.time),
    `EVN|A04|${o.time}`,
    pid(o.member, o.p),
    `PV1|1|${o.cls ?? 'O'}|${o.dept}^^^${facility[o.member]}||||${o.doctor}^医生^某^^^^^^ZJPRAC||||||||||||${o.visitNo}^^^${facility[o.member]}^VN|||||||||||||||||||||||||${o.time}`,
    `DG1|1||${o.icd10}^诊断^I10||${o.time}|A`,
  ].join('\r') + '\r';
}

/**
 * An HL7 v2 referral (REF^I12): RF1 with the referral id, and PRD for the referring (RP) and
 * referred-to (RT) providers, each with its facility (PRD-4: facility code, and the member's name as
 * the location description).
 */
export function referralMessage(o: { from: string; to: string; p: FixturePerson; control: string; time: string; referralId: string }): string {
  const name = (id: string) => members.find((m) => m.id === id)!.name;
  return [
    header(o.from, 'REF^I12^REF_I12', o.control, o.time),
    `RF1|A^Accepted^HL70283|R^Routine^HL70280|Med^Medical^HL70281||O^Outpatient^HL70284|${o.referralId}^${facility[o.from]}|${o.time.slice(0, 8)}`,
    `PRD|RP^Referring Provider^HL70286|张^医生||^^^${facility[o.from]}^^^^^${name(o.from)}`,
    `PRD|RT^Referred to Provider^HL70286|李^医生||^^^${facility[o.to]}^^^^^${name(o.to)}`,
    pid(o.from, o.p),
  ].join('\r') + '\r';
}

/** A lab result with a LOINC-coded OBX (the code the recognition rules and duplicate report look at). */
export function lab(o: { member: string; p: FixturePerson; control: string; time: string; order: string; loinc: string; value: string; unit: string; status?: string }): string {
  return [
    header(o.member, 'ORU^R01^ORU_R01', o.control, o.time),
    pid(o.member, o.p),
    `OBR|1|${o.order}|${o.order}|${o.loinc}^检验^LN|||${o.time}`,
    `OBX|1|NM|${o.loinc}^检验^LN||${o.value}|${o.unit}^^UCUM|||||${o.status ?? 'F'}|||${o.time}`,
  ].join('\r') + '\r';
}

/** A CT appointment on a member's shared scanner (AIG-3 the device, AIS-4 start, AIS-7 duration in minutes). */
export function ctExam(o: { member: string; p: FixturePerson; control: string; time: string; appt: string; minutes: number; device?: string }): string {
  return [
    header(o.member, 'SIU^S12^SIU_S12', o.control, o.time),
    `SCH|${o.appt}|${o.appt}|||||ROUTINE|||||||||||||||||BOOKED`,
    pid(o.member, o.p),
    `RGS|1`,
    `AIS|1||CT-HEAD^头颅CT平扫^L|${o.time}|||${o.minutes}|MIN`,
    `AIG|1||${o.device ?? 'CT01^64排CT^L'}|CT`,
  ].join('\r') + '\r';
}

/** A charge (DFT^P03): FT1-2 the transaction id, FT1-7 the charge code, FT1-10 quantity, FT1-11 amount. */
export function charge(o: { member: string; p: FixturePerson; control: string; time: string; txn: string; code: string; quantity: number; amount: number; visitNo?: string }): string {
  return [
    header(o.member, 'DFT^P03^DFT_P03', o.control, o.time),
    `EVN|P03|${o.time}`,
    pid(o.member, o.p),
    ...(o.visitNo ? [`PV1|1|O|内科^^^${facility[o.member]}|||||||||||||||||${o.visitNo}^^^${facility[o.member]}^VN`] : []),
    `FT1|1|${o.txn}||${o.time}|${o.time}|CG|${o.code}^收费项目^L|||${o.quantity}|${o.amount}^CNY`,
  ].join('\r') + '\r';
}

/** An imaging report (ORU from the PACS/RIS): OBR-4 and OBX-3 the LOINC imaging code, the finding as text. */
export function imagingReport(o: { member: string; p: FixturePerson; control: string; time: string; order: string; loinc: string }): string {
  return [
    header(o.member, 'ORU^R01^ORU_R01', o.control, o.time),
    pid(o.member, o.p),
    `OBR|1|${o.order}|${o.order}|${o.loinc}^头颅CT平扫^LN|||${o.time}`,
    `OBX|1|TX|${o.loinc}^头颅CT平扫^LN||未见明显异常||||||F|||${o.time}`,
  ].join('\r') + '\r';
}

/**
 * The story the cost-feed and dashboard tests send, in sending order (times are the members' local
 * time, +08:00; D001 and D002 are lead-hospital doctors). `imagingReport: false` leaves out the
 * county's chest CT report.
 */
export function story(options: { imagingReport?: boolean } = {}): Array<{ member: string; text: string }> {
  const { p1, p2, p3 } = people;
  return [
    // P1: clinic → county (up) → lead (up) → clinic with the lead's D001 (down, outreach)
    { member: 'clinic', text: visit({ member: 'clinic', p: p1, control: 'S-V1', time: '20260301090000', visitNo: 'SV1', dept: '全科', doctor: 'S001', icd10: 'I10' }) },
    { member: 'county', text: visit({ member: 'county', p: p1, control: 'C-V1', time: '20260304090000', visitNo: 'CV1', dept: '内分泌科', doctor: 'C001', icd10: 'E11.9' }) },
    { member: 'county', text: lab({ member: 'county', p: p1, control: 'C-L1', time: '20260304093000', order: 'CO1', loinc: '4548-4', value: '7.9', unit: '%' }) },
    { member: 'county', text: ctExam({ member: 'county', p: p1, control: 'C-S1', time: '20260304100000', appt: 'CA1', minutes: 15 }) },
    ...(options.imagingReport === false ? [] : [{ member: 'county', text: imagingReport({ member: 'county', p: p1, control: 'C-R1', time: '20260304103000', order: 'CR1', loinc: '30799-1' }) }]),
    { member: 'county', text: charge({ member: 'county', p: p1, control: 'C-F1', time: '20260304100000', txn: 'CT1', code: 'CT001', quantity: 1, amount: 320 }) },
    { member: 'lead', text: visit({ member: 'lead', p: p1, control: 'L-V1', time: '20260310090000', visitNo: 'LV1', dept: '心内科', doctor: 'D001', icd10: 'I10' }) },
    { member: 'lead', text: lab({ member: 'lead', p: p1, control: 'L-L1', time: '20260310093000', order: 'LO1', loinc: '4548-4', value: '8.1', unit: '%' }) },
    { member: 'clinic', text: visit({ member: 'clinic', p: p1, control: 'S-V2', time: '20260320090000', visitNo: 'SV2', dept: '全科', doctor: 'D001', icd10: 'I10' }) },
    // P2: lead (D002) → clinic with D001 (down, outreach); a CT at the county hospital
    { member: 'lead', text: visit({ member: 'lead', p: p2, control: 'L-V2', time: '20260402090000', visitNo: 'LV2', dept: '心内科', doctor: 'D002', icd10: 'I10' }) },
    { member: 'clinic', text: visit({ member: 'clinic', p: p2, control: 'S-V3', time: '20260409090000', visitNo: 'SV3', dept: '全科', doctor: 'D001', icd10: 'I10' }) },
    { member: 'county', text: ctExam({ member: 'county', p: p2, control: 'C-S2', time: '20260412100000', appt: 'CA2', minutes: 20 }) },
    // P3: county (home) with its own CT → clinic with D001 the same day as P2 (down, outreach)
    { member: 'county', text: visit({ member: 'county', p: p3, control: 'C-V2', time: '20260405090000', visitNo: 'CV2', dept: '内科', doctor: 'C001', icd10: 'I10' }) },
    { member: 'county', text: ctExam({ member: 'county', p: p3, control: 'C-S3', time: '20260405110000', appt: 'CA3', minutes: 10 }) },
    { member: 'clinic', text: visit({ member: 'clinic', p: p3, control: 'S-V4', time: '20260409100000', visitNo: 'SV4', dept: '全科', doctor: 'D001', icd10: 'I10' }) },
  ];
}
