/**
 * Simulated member systems: HL7 v2 messages like those a Chinese HIS/LIS sends (Chinese names,
 * resident IDs, GB18030 or UTF-8), and an MLLP client. Used by the demo, the tests and the
 * benchmarks so all three exercise the same traffic.
 */
import net from 'node:net';
import iconv from 'iconv-lite';
import { frame } from '../adapters/mllp/framer';
import { makeResidentId } from '../hub/mpi/residentId';

const surnames = ['王', '李', '张', '刘', '陈', '杨', '黄', '赵', '吴', '周', '徐', '孙', '马', '朱', '胡', '郭', '何', '林', '罗', '高', '欧阳', '司马', '吕'];
const givens = ['伟', '芳', '娜', '秀英', '敏', '静', '丽', '强', '磊', '军', '洋', '勇', '艳', '杰', '娟', '涛', '明', '超', '秀兰', '霞', '䶮', '晓峰'];

export interface SimPatient {
  mrn: string;
  family: string;
  given: string;
  birth: string;
  sex: 'M' | 'F';
}

/** Deterministic patients: the same index gives the same person. */
export function simPatient(i: number, memberPrefix = 'P'): SimPatient {
  return {
    mrn: `${memberPrefix}${String(100000 + i)}`,
    family: surnames[i % surnames.length]!,
    given: givens[(i * 7) % givens.length]!,
    birth: `19${String(40 + (i % 60)).padStart(2, '0')}${String(1 + (i % 12)).padStart(2, '0')}${String(1 + (i % 28)).padStart(2, '0')}`,
    sex: i % 2 ? 'M' : 'F',
  };
}

export interface SimMessageOptions {
  controlId: string;
  patient: SimPatient;
  /** MSH-18; empty for none. */
  charset?: string;
  sendingFacility?: string;
  /** YYYYMMDDHHMMSS; also EVN-2. */
  time?: string;
  /** Line end between segments. */
  segmentEnd?: string;
  /** Free text in PID-11 street (used to tell updates apart). */
  address?: string;
  /** PV1-19 visit number (就诊号); none: the PV1 carries no visit number. */
  visit?: string;
  /** PID-19 resident ID (居民身份证号): how the patient index links one person's numbers across members. */
  residentId?: string;
  /** PID-13 phone; default 13800138000 (the same for every simulated patient). */
  phone?: string;
}

export function simAdt(o: SimMessageOptions, trigger = 'A08'): string {
  const t = o.time ?? '20261123093000';
  const p = o.patient;
  return [
    `MSH|^~\\&|HIS|${o.sendingFacility ?? 'HOSP'}|YILIAN|HUB|${t}||ADT^${trigger}^ADT_A01|${o.controlId}|P|2.5|||||CHN|${o.charset ?? ''}`,
    `EVN|${trigger}|${t}`,
    `PID|1||${p.mrn}^^^${o.sendingFacility ?? 'HOSP'}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}|||${o.address ?? '人民路1号'}^^杭州市^浙江省^310000^CHN||${o.phone ?? '13800138000'}${o.residentId ? `||||||${o.residentId}` : ''}`,
    `PV1|1|O|内科^^^${o.sendingFacility ?? 'HOSP'}||||0101^医生^张${o.visit ? `||||||||||||${o.visit}^^^${o.sendingFacility ?? 'HOSP'}^VN` : ''}`,
  ].join(o.segmentEnd ?? '\r') + (o.segmentEnd ?? '\r');
}

export interface SimResult {
  code: string;
  name: string;
  value: string;
  unit: string;
  range: string;
  /** OBX-3 coding system: `L` (the member's local codes, the default) or `LN` (LOINC). */
  system?: string;
}

export function simOru(o: SimMessageOptions, results: SimResult[], status = 'F'): string {
  const t = o.time ?? '20261123093000';
  const p = o.patient;
  const obx = results.map((r, i) => `OBX|${i + 1}|NM|${r.code}^${r.name}^${r.system ?? 'L'}||${r.value}|${r.unit}|${r.range}|N|||${status}|||${t}`);
  return [
    `MSH|^~\\&|LIS|${o.sendingFacility ?? 'HOSP'}|YILIAN|HUB|${t}||ORU^R01^ORU_R01|${o.controlId}|P|2.5|||||CHN|${o.charset ?? ''}`,
    `PID|1||${p.mrn}^^^${o.sendingFacility ?? 'HOSP'}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}`,
    `OBR|1|${o.controlId}|${o.controlId}|CBC^血常规^L|||${t}`,
    ...obx,
  ].join(o.segmentEnd ?? '\r') + (o.segmentEnd ?? '\r');
}

/**
 * An imaging report (ORU^R01 from a RIS): OBR-4 the standard procedure code (LOINC radiology
 * playbook, e.g. 36643-5 XR Chest 2 Views), OBR-25 the result status, one OBX of impression text
 * (LOINC 19005-8).
 */
export function simImagingReport(o: SimMessageOptions, procedure: { code: string; name: string }, text: string, status = 'F'): string {
  const t = o.time ?? '20261123093000';
  const p = o.patient;
  return [
    `MSH|^~\\&|RIS|${o.sendingFacility ?? 'HOSP'}|YILIAN|HUB|${t}||ORU^R01^ORU_R01|${o.controlId}|P|2.5|||||CHN|${o.charset ?? ''}`,
    `PID|1||${p.mrn}^^^${o.sendingFacility ?? 'HOSP'}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}`,
    `OBR|1|${o.controlId}|${o.controlId}|${procedure.code}^${procedure.name}^LN|||${t}||||||||||||||||||${status}`,
    `OBX|1|TX|19005-8^影像诊断印象^LN||${text}||||||${status}|||${t}`,
  ].join(o.segmentEnd ?? '\r') + (o.segmentEnd ?? '\r');
}

export const bloodCount = [
  { code: 'HGB', name: '血红蛋白', value: '135', unit: 'g/L', range: '115-150' },
  { code: 'WBC', name: '白细胞计数', value: '6.2', unit: '10^9/L', range: '3.5-9.5' },
  { code: 'PLT', name: '血小板计数', value: '210', unit: '10^9/L', range: '125-350' },
];

export function encodeAs(text: string, charset: 'UTF-8' | 'GB18030'): Buffer {
  return charset === 'GB18030' ? iconv.encode(text, 'gb18030') : Buffer.from(text, 'utf8');
}

/** A minimal MLLP sender that can pipeline: send all, collect ACKs in order. */
export class MllpClient {
  private socket!: net.Socket;
  private buffer = Buffer.alloc(0);
  private waiters: Array<(ack: Buffer) => void> = [];

  static async connect(port: number, host = '127.0.0.1'): Promise<MllpClient> {
    const client = new MllpClient();
    await new Promise<void>((resolve, reject) => {
      client.socket = net.connect(port, host, () => resolve());
      client.socket.once('error', reject);
    });
    client.socket.setNoDelay(true);
    client.socket.on('data', (chunk) => client.onData(chunk));
    return client;
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const end = this.buffer.indexOf(Buffer.from([0x1c, 0x0d]));
      if (end < 0) return;
      const start = this.buffer.indexOf(0x0b);
      const ack = this.buffer.subarray(start + 1, end);
      this.buffer = this.buffer.subarray(end + 2);
      this.waiters.shift()?.(Buffer.from(ack));
    }
  }

  /** Send one message and wait for its ACK. */
  send(message: Buffer): Promise<Buffer> {
    return this.sendRaw(frame(message));
  }

  /** Write bytes as they are (already framed, or deliberately broken) and wait for the next ACK. */
  sendRaw(bytes: Buffer): Promise<Buffer> {
    const ack = new Promise<Buffer>((resolve) => this.waiters.push(resolve));
    this.socket.write(bytes);
    return ack;
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  nextAck(): Promise<Buffer> {
    return new Promise<Buffer>((resolve) => this.waiters.push(resolve));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.socket.end(() => resolve());
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function ackCode(ack: Buffer): string {
  return /(?:^|\r)MSA\|([A-Z]{2})/.exec(ack.toString('latin1'))?.[1] ?? '';
}

export type DemoMember = 'lead' | 'county' | 'community';

/**
 * Traffic for mutual recognition: six people seen at several members (resident ID in PID-19, so the
 * patient index links them). The county does glucose (mg/dL, converted to mmol/L by the hub), HGB
 * (its local code) and a chest X-ray on 2026-11-10; the lead repeats the glucose three days later
 * for patients 0, 2, 4 (inside the 7-day window: repeats) and ten days later for 1, 3, 5 (outside:
 * not repeats), and the chest X-ray of patient 0 five days later (inside 30 days: a repeat); the
 * community's HbA1c of patient 1 on 09-01 is repeated by the lead on 10-15 (inside 90 days).
 * Expected duplicate report: 5 repeats.
 */
export function recognitionTraffic(): Array<{ member: DemoMember; text: string }> {
  const out: Array<{ member: DemoMember; text: string }> = [];
  const facility: Record<DemoMember, string> = { lead: 'LEAD', county: 'COUNTY', community: 'DONGHU' };
  const prefix: Record<DemoMember, string> = { lead: 'LR', county: 'CR', community: 'DR' };
  let n = 0;
  const opts = (member: DemoMember, k: number, time: string) => ({
    controlId: `REC-${member}-${++n}`,
    patient: simPatient(500 + k, prefix[member]),
    sendingFacility: facility[member],
    time,
    charset: member === 'lead' ? 'UNICODE UTF-8' : 'GB18030',
  });
  const glucose = (value: string, unit: string): SimResult => ({ code: '14749-6', name: '葡萄糖', value, unit, range: '', system: 'LN' });
  for (let k = 0; k < 6; k++) {
    const p = simPatient(500 + k);
    const residentId = makeResidentId('330106', p.birth, 100 + k, p.sex);
    const home = { residentId, phone: `1390571000${k}`, address: `文三路${20 + k}号` };
    for (const member of ['lead', 'county', 'community'] as const) out.push({ member, text: simAdt({ ...opts(member, k, '20261101080000'), ...home }, 'A04') });
    out.push({ member: 'county', text: simOru(opts('county', k, '20261110080000'), [glucose(String(95 + 3 * k), 'mg/dL'), { code: 'HGB', name: '血红蛋白', value: String(128 + k), unit: 'g/L', range: '115-150' }]) });
    out.push({ member: 'county', text: simImagingReport(opts('county', k, '20261110090000'), { code: '36643-5', name: '胸部X线正侧位' }, '两肺纹理清晰，未见明显异常') });
    out.push({ member: 'lead', text: simOru(opts('lead', k, k % 2 === 0 ? '20261113100000' : '20261120100000'), [glucose((5.2 + k / 10).toFixed(1), 'mmol/L')]) });
  }
  out.push({ member: 'lead', text: simImagingReport(opts('lead', 0, '20261115100000'), { code: '36643-5', name: '胸部X线正侧位' }, '两肺未见异常') });
  out.push({ member: 'community', text: simOru(opts('community', 1, '20260901090000'), [{ code: '4548-4', name: '糖化血红蛋白', value: '6.1', unit: '%', range: '4-6', system: 'LN' }]) });
  out.push({ member: 'lead', text: simOru(opts('lead', 1, '20261015090000'), [{ code: '4548-4', name: '糖化血红蛋白', value: '6.0', unit: '%', range: '4-6', system: 'LN' }]) });
  return out;
}
