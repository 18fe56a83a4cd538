import { HubError } from '../mappings/outcome';
import { ackCodeFor, buildAck } from './ack';
import type { MessageHeader } from '../mappings/hl7v2/header';
import { Hl7Message } from '../mappings/hl7v2/message';

function header(overrides: Partial<MessageHeader> = {}): MessageHeader {
  return {
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
    versionId: '2.4',
    acceptAckType: '',
    applicationAckType: '',
    characterSet: '',
    ...overrides,
  };
}

const now = new Date('2024-01-02T02:30:00Z');

describe('buildAck', () => {
  it('writes MSH and MSA separated and ended by CR', () => {
    const ack = buildAck({ header: header(), code: 'AA', now });
    const lines = ack.split('\r');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('');
    expect(lines[0]).toMatch(/^MSH\|\^~\\&\|HUB\|YL\|HIS\|RMYY\|20240102103000\+0800\|\|ACK\^A01\^ACK\|ACK[0-9A-Z]+-\d+\|P\|2\.4$/);
    expect(lines[1]).toBe('MSA|AA|C001');
    expect(ack).not.toContain('\n');
  });

  it('parses back with the sender and receiver swapped and MSA-2 echoing the control id', () => {
    const ack = Hl7Message.parse(buildAck({ header: header({ controlId: 'MSG-20240102-0001' }), code: 'AA', now }));
    expect(ack.segments.map((s) => s.name)).toEqual(['MSH', 'MSA']);
    expect(ack.msh.value(3)).toBe('HUB');
    expect(ack.msh.value(5)).toBe('HIS');
    expect(ack.msh.value(6)).toBe('RMYY');
    expect(ack.msh.value(9, 0, 1)).toBe('ACK');
    expect(ack.msh.value(9, 0, 2)).toBe('A01');
    expect(ack.msh.value(12)).toBe('2.4');
    expect(ack.segment('MSA')!.value(1)).toBe('AA');
    expect(ack.segment('MSA')!.value(2)).toBe('MSG-20240102-0001');
  });

  it('gives each ACK its own control id', () => {
    const a = Hl7Message.parse(buildAck({ header: header(), code: 'AA', now })).msh.value(10);
    const b = Hl7Message.parse(buildAck({ header: header(), code: 'AA', now })).msh.value(10);
    expect(a).not.toBe(b);
  });

  it('escapes delimiters in echoed values', () => {
    const text = buildAck({ header: header({ controlId: 'A|B^C' }), code: 'AA', now });
    expect(text).toContain('MSA|AA|A\\F\\B\\S\\C\r');
    expect(Hl7Message.parse(text).segment('MSA')!.value(2)).toBe('A|B^C');
  });

  it('echoes control bytes as hex escapes, so no echoed FS can end the MLLP frame early', () => {
    const text = buildAck({ header: header({ controlId: 'X\x1c', versionId: '2.5\x1c', sendingFacility: 'R\x00M\x0bY' }), code: 'AA', now });
    expect(text).not.toMatch(/[\x00-\x0c\x0e-\x1f\x7f]/);
    expect(text).toContain('MSA|AA|X\\X1C\\\r');
    expect(text).toContain('|R\\X00\\M\\X0B\\Y|');
  });

  it('works without a readable header', () => {
    const ack = Hl7Message.parse(buildAck({ code: 'AR', hubApplication: 'YL-HUB', error: new HubError('not-hl7', 'no MSH', 'MSH'), now }));
    expect(ack.msh.value(3)).toBe('YL-HUB');
    expect(ack.msh.value(9)).toBe('ACK');
    expect(ack.msh.value(9, 0, 2)).toBe('');
    expect(ack.msh.value(11)).toBe('P');
    expect(ack.msh.value(12)).toBe('2.5');
    expect(ack.segment('MSA')!.value(1)).toBe('AR');
    expect(ack.segment('MSA')!.value(2)).toBe('');
    expect(Hl7Message.parse(buildAck({ code: 'AA', now })).msh.value(3)).toBe('YILIAN-HUB');
  });

  it('with an error: MSA-1 AE, MSA-3 text and an ERR segment with the table 0357 condition', () => {
    const error = new HubError('charset', 'bytes invalid in UTF-8 at byte 120 (0xc328)', 'byte 120');
    const code = ackCodeFor('original', header(), error);
    expect(code).toBe('AE');
    const text = buildAck({ header: header(), code: code!, error, now });
    const lines = text.split('\r');
    expect(lines).toHaveLength(4);
    expect(lines[1]).toBe('MSA|AE|C001|bytes invalid in UTF-8 at byte 120 (0xc328)');
    expect(lines[2]).toBe('ERR|||102^Data type error^HL70357|E||||charset: bytes invalid in UTF-8 at byte 120 (0xc328)');
    const err = Hl7Message.parse(text).segment('ERR')!;
    expect(err.components(3)).toEqual(['102', 'Data type error', 'HL70357']);
    expect(err.value(4)).toBe('E');
    expect(err.value(8)).toBe('charset: bytes invalid in UTF-8 at byte 120 (0xc328)');
  });

  it('with a rejecting error: MSA-1 AR and ERR-3 100', () => {
    const error = new HubError('not-hl7', 'message does not start with an MSH segment', 'MSH');
    const code = ackCodeFor('original', header(), error);
    expect(code).toBe('AR');
    const ack = Hl7Message.parse(buildAck({ header: header(), code: code!, error, now }));
    expect(ack.segment('MSA')!.value(1)).toBe('AR');
    expect(ack.segment('MSA')!.value(2)).toBe('C001');
    expect(ack.segment('ERR')!.raw(3)).toBe('100^Segment sequence error^HL70357');
  });

  it('cuts MSA-3 at 80 characters and escapes error text', () => {
    const message = `bad value a|b ${'x'.repeat(100)}`;
    const ack = Hl7Message.parse(buildAck({ header: header(), code: 'AE', error: new HubError('structure', message), now }));
    expect(ack.segment('MSA')!.value(3)).toBe(message.slice(0, 80));
    expect(ack.segment('ERR')!.value(8)).toBe(`structure: ${message}`);
  });

  it('leaves ERR-2 empty when the location is not a segment-field reference', () => {
    const ack = Hl7Message.parse(buildAck({ header: header(), code: 'AE', error: new HubError('charset', 'bad', 'byte 3'), now }));
    expect(ack.segment('ERR')!.raw(2)).toBe('');
  });

  // ERR-2 is built as "MSH^1^10" and then escaped as a whole, so it is sent as "MSH\S\1\S\10":
  // one component holding literal carets instead of the ERL components segment / sequence / field.
  it('writes ERR-2 (ERL) as components segment^1^field', () => {
    const error = new HubError('structure', 'MSH-10 (message control id) is empty', 'MSH-10');
    const ack = Hl7Message.parse(buildAck({ header: header(), code: 'AE', error, now }));
    expect(ack.segment('ERR')!.components(2)).toEqual(['MSH', '1', '10']);
  });
});

describe('ackCodeFor', () => {
  const dataError = new HubError('charset', 'bad bytes');
  const rejectError = new HubError('too-large', 'frame too large');

  describe('original mode', () => {
    it('answers AA on success, whatever MSH-15 says', () => {
      expect(ackCodeFor('original', header(), undefined)).toBe('AA');
      expect(ackCodeFor('original', header({ acceptAckType: 'NE' }), undefined)).toBe('AA');
      expect(ackCodeFor('original', undefined, undefined)).toBe('AA');
    });

    it("answers the error's HL7 ack code on error", () => {
      expect(ackCodeFor('original', header(), dataError)).toBe('AE');
      expect(ackCodeFor('original', header(), rejectError)).toBe('AR');
      expect(ackCodeFor('original', header({ acceptAckType: 'NE' }), rejectError)).toBe('AR');
    });
  });

  describe('enhanced mode', () => {
    it.each([
      ['AL', 'CA', 'CE', 'CR'],
      ['', 'CA', 'CE', 'CR'],
      ['NE', undefined, undefined, undefined],
      ['ER', undefined, 'CE', 'CR'],
      ['SU', 'CA', undefined, undefined],
      ['al', 'CA', 'CE', 'CR'],
    ])('MSH-15 %j: success → %s, AE error → %s, AR error → %s', (accept, success, onData, onReject) => {
      const h = header({ acceptAckType: accept });
      expect(ackCodeFor('enhanced', h, undefined)).toBe(success);
      expect(ackCodeFor('enhanced', h, dataError)).toBe(onData);
      expect(ackCodeFor('enhanced', h, rejectError)).toBe(onReject);
    });

    it('treats a missing header as AL', () => {
      expect(ackCodeFor('enhanced', undefined, undefined)).toBe('CA');
      expect(ackCodeFor('enhanced', undefined, rejectError)).toBe('CR');
    });
  });

  describe('auto mode', () => {
    it('uses original mode when MSH-15 and MSH-16 are empty', () => {
      expect(ackCodeFor('auto', header(), undefined)).toBe('AA');
      expect(ackCodeFor('auto', header(), dataError)).toBe('AE');
      expect(ackCodeFor('auto', undefined, rejectError)).toBe('AR');
    });

    it('uses enhanced mode when MSH-15 is valued', () => {
      expect(ackCodeFor('auto', header({ acceptAckType: 'AL' }), undefined)).toBe('CA');
      expect(ackCodeFor('auto', header({ acceptAckType: 'NE' }), undefined)).toBeUndefined();
      expect(ackCodeFor('auto', header({ acceptAckType: 'ER' }), dataError)).toBe('CE');
    });

    it('uses enhanced mode when only MSH-16 is valued (MSH-15 then defaults to AL)', () => {
      expect(ackCodeFor('auto', header({ applicationAckType: 'AL' }), undefined)).toBe('CA');
      expect(ackCodeFor('auto', header({ applicationAckType: 'NE' }), rejectError)).toBe('CR');
    });
  });
});
