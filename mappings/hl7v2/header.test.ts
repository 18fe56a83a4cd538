import iconv from 'iconv-lite';
import { HubError } from '../outcome';
import { Hl7Message } from './message';
import { eventTimeOf, headerOf, inspectMessage, patientOf, senderOf, sniffHeader } from './header';

/** MSH with the given MSH-9, MSH-10 and MSH-18; other fields fixed. */
function msh(opts: { type?: string; controlId?: string; charset?: string; facility?: string; time?: string } = {}): string {
  const { type = 'ADT^A01^ADT_A01', controlId = 'C001', charset = '', facility = 'RMYY', time = '20240102103000' } = opts;
  return `MSH|^~\\&|HIS|${facility}|HUB|YL|${time}||${type}|${controlId}|P|2.5|||AL|NE||${charset}`;
}

const pid = 'PID|1||SFZ110^^^GA^NI~M778^^^RMYY^MR||张三^^^^^^L||19900101|M';

function message(...segments: string[]): Hl7Message {
  return Hl7Message.parse(segments.join('\r'));
}

function inspectError(bytes: Buffer, policy: Parameters<typeof inspectMessage>[1]): HubError {
  try {
    inspectMessage(bytes, policy);
  } catch (error) {
    expect(error).toBeInstanceOf(HubError);
    return error as HubError;
  }
  throw new Error('expected inspectMessage to throw');
}

describe('inspectMessage: charset choice', () => {
  it('uses MSH-18 over the channel default', () => {
    const bytes = iconv.encode([msh({ charset: 'GB18030' }), pid].join('\r'), 'gb18030');
    const inspected = inspectMessage(bytes, { defaultCharset: 'UTF-8' });
    expect(inspected.charset).toBe('GB18030');
    expect(inspected.message.segment('PID')!.value(5)).toBe('张三');
  });

  it('uses the channel default when MSH-18 is empty', () => {
    const bytes = iconv.encode([msh(), pid].join('\r'), 'gb18030');
    const inspected = inspectMessage(bytes, { defaultCharset: 'GB18030' });
    expect(inspected.charset).toBe('GB18030');
    expect(inspected.text).toContain('张三');
  });

  it('uses forceCharset over a wrong MSH-18', () => {
    const bytes = iconv.encode([msh({ charset: 'UNICODE UTF-8' }), pid].join('\r'), 'gb18030');
    expect(inspectError(bytes, { defaultCharset: 'UTF-8' }).code).toBe('charset');
    const inspected = inspectMessage(bytes, { defaultCharset: 'UTF-8', forceCharset: 'GB18030' });
    expect(inspected.charset).toBe('GB18030');
    expect(inspected.message.segment('PID')!.value(5)).toBe('张三');
  });

  it('rejects an MSH-18 it does not know with a charset error at MSH-18', () => {
    const bytes = Buffer.from([msh({ charset: 'BIG5' }), pid].join('\r'), 'utf8');
    const error = inspectError(bytes, { defaultCharset: 'UTF-8' });
    expect(error.code).toBe('charset');
    expect(error.location).toBe('MSH-18');
    expect(error.message).toContain('BIG5');
  });

  it('reads MSH-18 from the decoded header when a GB18030 trail byte equals the field separator', () => {
    // 億 is 0x83 0x7C in GB18030: read as raw bytes, its second byte would look like '|'.
    const bytes = iconv.encode([msh({ facility: '億康医院', charset: 'GB18030' }), pid].join('\r'), 'gb18030');
    expect(bytes.includes(Buffer.from([0x83, 0x7c]))).toBe(true);
    const inspected = inspectMessage(bytes, { defaultCharset: 'GBK' });
    expect(inspected.charset).toBe('GB18030');
    expect(inspected.header.sendingFacility).toBe('億康医院');
    expect(inspected.header.characterSet).toBe('GB18030');
  });

  it('reads MSH-18 of such a GB18030 header on a UTF-8 channel too', () => {
    const bytes = iconv.encode([msh({ facility: '億康医院', charset: 'GB18030' }), pid].join('\r'), 'gb18030');
    const inspected = inspectMessage(bytes, { defaultCharset: 'UTF-8' });
    expect(inspected.charset).toBe('GB18030');
    expect(inspected.header.sendingFacility).toBe('億康医院');
    expect(inspected.message.segment('PID')!.value(5)).toBe('张三');
  });
});

describe('inspectMessage: header', () => {
  it('returns the header fields', () => {
    const inspected = inspectMessage(Buffer.from([msh({ charset: 'UNICODE UTF-8' }), pid].join('\r')), { defaultCharset: 'ASCII' });
    expect(inspected.header).toEqual({
      sendingApplication: 'HIS',
      sendingFacility: 'RMYY',
      receivingApplication: 'HUB',
      receivingFacility: 'YL',
      dateTime: '20240102103000',
      messageCode: 'ADT',
      triggerEvent: 'A01',
      messageStructure: 'ADT_A01',
      controlId: 'C001',
      processingId: 'P',
      versionId: '2.5',
      acceptAckType: 'AL',
      applicationAckType: 'NE',
      characterSet: 'UNICODE UTF-8',
    });
    expect(senderOf(inspected.header)).toBe('HIS|RMYY');
    expect(inspected.patient).toEqual({ mrn: 'M778', authority: 'RMYY' });
    // no EVN: MSH-7 at the default +0800
    expect(inspected.eventTime?.toISOString()).toBe('2024-01-02T02:30:00.000Z');
  });

  it('rejects an empty MSH-10 with a structure error', () => {
    const error = inspectError(Buffer.from([msh({ controlId: '' }), pid].join('\r')), { defaultCharset: 'UTF-8' });
    expect(error.code).toBe('structure');
    expect(error.location).toBe('MSH-10');
  });

  it('rejects an empty MSH-9 with a structure error', () => {
    const error = inspectError(Buffer.from([msh({ type: '' }), pid].join('\r')), { defaultCharset: 'UTF-8' });
    expect(error.code).toBe('structure');
    expect(error.location).toBe('MSH-9');
  });

  it('rejects text without MSH as not-hl7', () => {
    expect(inspectError(Buffer.from(pid), { defaultCharset: 'UTF-8' }).code).toBe('not-hl7');
  });
});

describe('patientOf', () => {
  it('picks the PID-3 repetition typed MR', () => {
    expect(patientOf(message(msh(), pid))).toEqual({ mrn: 'M778', authority: 'RMYY' });
  });

  it('matches the MR type case-insensitively', () => {
    expect(patientOf(message(msh(), 'PID|1||A^^^X^PI~b2^^^Y^mr'))).toEqual({ mrn: 'b2', authority: 'Y' });
  });

  it('takes the first repetition when none is typed MR', () => {
    expect(patientOf(message(msh(), 'PID|1||P1^^^H1^PI~P2^^^H2^NI'))).toEqual({ mrn: 'P1', authority: 'H1' });
    expect(patientOf(message(msh(), 'PID|1||P9'))).toEqual({ mrn: 'P9', authority: '' });
  });

  it('falls back to PID-2 when PID-3 is empty', () => {
    expect(patientOf(message(msh(), 'PID|1|OLD7^^^H0||张三'))).toEqual({ mrn: 'OLD7', authority: 'H0' });
  });

  it('returns undefined without PID', () => {
    expect(patientOf(message(msh(), 'EVN|A01|20240101'))).toBeUndefined();
  });

  it('routes an ADT^A40 merge by the retired identifier in MRG-1', () => {
    const merge = message(msh({ type: 'ADT^A40^ADT_A39' }), 'EVN|A40|20240101', 'PID|1||NEW1^^^RMYY^MR', 'MRG|OLD1^^^RMYY^MR');
    expect(patientOf(merge)).toEqual({ mrn: 'OLD1', authority: 'RMYY' });
  });

  it('picks the MR repetition of MRG-1', () => {
    const merge = message(msh({ type: 'ADT^A40' }), 'PID|1||NEW1^^^RMYY^MR', 'MRG|X^^^GA^NI~OLD2^^^RMYY^MR');
    expect(patientOf(merge)).toEqual({ mrn: 'OLD2', authority: 'RMYY' });
  });

  it('uses PID for a merge whose MRG-1 is empty, and for non-merge events with MRG', () => {
    expect(patientOf(message(msh({ type: 'ADT^A40' }), 'PID|1||NEW1^^^RMYY^MR', 'MRG|'))).toEqual({ mrn: 'NEW1', authority: 'RMYY' });
    expect(patientOf(message(msh({ type: 'ADT^A08' }), 'PID|1||NEW1^^^RMYY^MR', 'MRG|OLD1^^^RMYY^MR'))).toEqual({ mrn: 'NEW1', authority: 'RMYY' });
  });
});

describe('eventTimeOf', () => {
  it('prefers EVN-2 over MSH-7', () => {
    const m = message(msh({ time: '20240102103000+0800' }), 'EVN|A01|20240101090000+0800', pid);
    expect(eventTimeOf(m)?.toISOString()).toBe('2024-01-01T01:00:00.000Z');
  });

  it('uses MSH-7 when EVN-2 is empty or EVN is absent', () => {
    expect(eventTimeOf(message(msh({ time: '20240102103000+0000' }), 'EVN|A01|', pid))?.toISOString()).toBe('2024-01-02T10:30:00.000Z');
    expect(eventTimeOf(message(msh({ time: '20240102103000+0000' }), pid))?.toISOString()).toBe('2024-01-02T10:30:00.000Z');
  });

  it('applies the given default offset to times without one', () => {
    expect(eventTimeOf(message(msh({ time: '20240102103000' }), pid), 0)?.toISOString()).toBe('2024-01-02T10:30:00.000Z');
    expect(eventTimeOf(message(msh({ time: '20240102103000' }), pid))?.toISOString()).toBe('2024-01-02T02:30:00.000Z');
  });

  it('is undefined for an unreadable time', () => {
    expect(eventTimeOf(message(msh({ time: 'yesterday' }), pid))).toBeUndefined();
  });
});

describe('sniffHeader', () => {
  it('reads the control id from bytes that cannot be decoded', () => {
    const bytes = Buffer.concat([
      Buffer.from(msh({ controlId: 'BAD-42', charset: 'UNICODE UTF-8' }) + '\r'),
      Buffer.from([0x50, 0x49, 0x44, 0x7c, 0x31, 0x7c, 0x7c, 0xc3, 0x28]), // PID|1||<invalid UTF-8>
    ]);
    expect(inspectError(bytes, { defaultCharset: 'UTF-8' }).code).toBe('charset');
    const header = sniffHeader(bytes);
    expect(header?.controlId).toBe('BAD-42');
    expect(header?.sendingApplication).toBe('HIS');
    expect(header?.triggerEvent).toBe('A01');
    expect(header?.characterSet).toBe('UNICODE UTF-8');
  });

  it('finds MSH after leading bytes and ends at LF', () => {
    const header = sniffHeader(Buffer.from('\x0b' + msh({ controlId: 'LF1' }) + '\nPID|1'));
    expect(header?.controlId).toBe('LF1');
    expect(header?.characterSet).toBe('');
  });

  it('is undefined without MSH or with unreadable delimiters', () => {
    expect(sniffHeader(Buffer.from('PID|1||123'))).toBeUndefined();
    expect(sniffHeader(Buffer.from('MSH|^^\\&|A|B'))).toBeUndefined();
  });
});

describe('headerOf', () => {
  it('unescapes header values', () => {
    const header = headerOf(message('MSH|^~\\&|A\\T\\B|F|R|RF|20240101||ORU^R01|X\\F\\1|P|2.3').msh);
    expect(header.sendingApplication).toBe('A&B');
    expect(header.controlId).toBe('X|1');
    expect(header.messageStructure).toBe('');
  });
});
