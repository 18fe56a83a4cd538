/**
 * Simulated member systems: HL7 v2 messages like those a Chinese HIS/LIS sends (Chinese names,
 * resident IDs, GB18030 or UTF-8), and an MLLP client. Used by the demo, the tests and the
 * benchmarks so all three exercise the same traffic.
 */
import net from 'node:net';
import iconv from 'iconv-lite';
import { frame } from '../adapters/mllp/framer';

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
}

export function simAdt(o: SimMessageOptions, trigger = 'A08'): string {
  const t = o.time ?? '20261123093000';
  const p = o.patient;
  return [
    `MSH|^~\\&|HIS|${o.sendingFacility ?? 'HOSP'}|YILIAN|HUB|${t}||ADT^${trigger}^ADT_A01|${o.controlId}|P|2.5|||||CHN|${o.charset ?? ''}`,
    `EVN|${trigger}|${t}`,
    `PID|1||${p.mrn}^^^${o.sendingFacility ?? 'HOSP'}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}|||${o.address ?? '人民路1号'}^^杭州市^浙江省^310000^CHN||13800138000`,
    `PV1|1|O|内科^^^${o.sendingFacility ?? 'HOSP'}||||0101^医生^张${o.visit ? `||||||||||||${o.visit}^^^${o.sendingFacility ?? 'HOSP'}^VN` : ''}`,
  ].join(o.segmentEnd ?? '\r') + (o.segmentEnd ?? '\r');
}

export function simOru(o: SimMessageOptions, results: Array<{ code: string; name: string; value: string; unit: string; range: string }>, status = 'F'): string {
  const t = o.time ?? '20261123093000';
  const p = o.patient;
  const obx = results.map((r, i) => `OBX|${i + 1}|NM|${r.code}^${r.name}^L||${r.value}|${r.unit}|${r.range}|N|||${status}|||${t}`);
  return [
    `MSH|^~\\&|LIS|${o.sendingFacility ?? 'HOSP'}|YILIAN|HUB|${t}||ORU^R01^ORU_R01|${o.controlId}|P|2.5|||||CHN|${o.charset ?? ''}`,
    `PID|1||${p.mrn}^^^${o.sendingFacility ?? 'HOSP'}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}`,
    `OBR|1|${o.controlId}|${o.controlId}|CBC^血常规^L|||${t}`,
    ...obx,
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
