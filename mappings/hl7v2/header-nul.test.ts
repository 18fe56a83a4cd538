/**
 * A NUL (a 0x00 byte, or HL7's escape \X00\ of one) in a field that identifies a message is a
 * permanent problem of the message: inspectMessage refuses it as `unstorable`, naming the field,
 * and the ACK (adapters/ack.ts) is an AE with ERR-2 at that field — never AR 207 "resend later".
 * Elsewhere in the message a NUL is not refused here (its text copies are escaped when stored).
 */
import { HubError } from '../outcome';
import { inspectMessage, sniffHeader } from './header';
import { ackCodeFor, buildAck } from '../../adapters/ack';

const policy = { defaultCharset: 'UTF-8' as const };

function oru(o: { app?: string; facility?: string; type?: string; controlId?: string; mrn?: string; obx?: string } = {}): Buffer {
  const text = [
    `MSH|^~\\&|${o.app ?? 'LIS'}|${o.facility ?? 'HOSP'}|YILIAN|HUB|20261123093000||${o.type ?? 'ORU^R01^ORU_R01'}|${o.controlId ?? 'C1'}|P|2.5`,
    `PID|1||${o.mrn ?? 'M1'}^^^HOSP^MR||王^伟||19800101|M`,
    `OBR|1|C1|C1|CBC^血常规^L|||20261123093000`,
    `OBX|1|TX|T^文本^L||${o.obx ?? 'normal'}||||||F`,
  ].join('\r');
  return Buffer.from(`${text}\r`, 'utf8');
}

function refusal(bytes: Buffer): HubError {
  try {
    inspectMessage(bytes, policy);
  } catch (error) {
    expect(error).toBeInstanceOf(HubError);
    return error as HubError;
  }
  throw new Error('expected inspectMessage to refuse the message');
}

describe('inspectMessage: NUL in an identifying field', () => {
  it.each([
    ['MSH-3', { app: 'L\u0000IS' }],
    ['MSH-4', { facility: 'HO\u0000SP' }],
    ['MSH-9', { type: 'ORU^R\u000001^ORU_R01' }],
    ['MSH-10', { controlId: 'C\u00001' }],
    ['PID-3', { mrn: 'M\u00001' }],
  ])('%s: unstorable, located at the field, with the byte offset', (location, fields) => {
    const bytes = oru(fields);
    const error = refusal(bytes);
    expect(error.code).toBe('unstorable');
    expect(error.transient).toBe(false);
    expect(error.location).toBe(location);
    expect(error.message).toContain(`${location} (`);
    expect(error.message).toContain(`byte ${bytes.indexOf(0)}`);
  });

  it('the hex escape \\X00\\ (no 0x00 byte on the wire) is refused the same way', () => {
    const error = refusal(oru({ controlId: 'C\\X00\\1' }));
    expect(error).toMatchObject({ code: 'unstorable', location: 'MSH-10' });
    expect(error.message).toContain('\\X00\\');
  });

  it('a NUL in a later component of MSH-3 is refused too', () => {
    expect(refusal(oru({ app: 'LIS^1.2\u0000^ISO' }))).toMatchObject({ code: 'unstorable', location: 'MSH-3' });
  });

  it('a NUL in a segment body is not the intake\'s concern: the message is inspected normally', () => {
    const inspected = inspectMessage(oru({ obx: 'a\u0000b' }), policy);
    expect(inspected.header.controlId).toBe('C1');
    expect(inspected.patient?.mrn).toBe('M1');
    // and an ordinary \X..\ escape without a 00 pair is no NUL
    expect(inspectMessage(oru({ obx: '\\X41\\', controlId: 'X1000' }), policy).header.controlId).toBe('X1000');
  });
});

describe('ACK of a NUL-poisoned message', () => {
  it('original mode: AE, ERR-2 names the field, ERR-3 102, MSA-2 echoes the control id as \\X00\\ (no 0x00 in the ACK)', () => {
    const bytes = oru({ controlId: 'C\u00001' });
    const error = refusal(bytes);
    const header = sniffHeader(bytes);
    const code = ackCodeFor('original', header, error);
    expect(code).toBe('AE');
    const ack = buildAck({ header, code: code!, error });
    expect(ack).not.toContain('\u0000');
    const segments = ack.split('\r').filter(Boolean).map((s) => s.split('|'));
    const msa = segments.find((s) => s[0] === 'MSA')!;
    expect(msa[1]).toBe('AE');
    expect(msa[2]).toBe('C\\X00\\1');
    const err = segments.find((s) => s[0] === 'ERR')!;
    expect(err[2]).toBe('MSH^1^10');
    expect(err[3]).toBe('102^Data type error^HL70357');
  });

  it('enhanced mode: CE, not CR', () => {
    const error = refusal(oru({ mrn: 'M\u00001' }));
    expect(ackCodeFor('enhanced', undefined, error)).toBe('CE');
  });
});
