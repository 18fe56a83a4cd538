import { Hl7Message } from './message';
import { CONFORMANCE_URL, convertMessage } from './convert';
import { conformance, dictionaryFor } from './dictionary';

const parse = (text: string) => Hl7Message.parse(text.replace(/\n/g, '\r'));
const issuesOf = (text: string) => {
  const m = parse(text);
  return conformance(m, new Map(m.segments.map((s) => [s, s.name])));
};

describe('conformance against the hl7v2 per-version dictionaries', () => {
  test('a conformant message has no findings', () => {
    expect(issuesOf('MSH|^~\\&|LIS|H1|HUB|R|20260101120000+0800||ORU^R01^ORU_R01|C1|P|2.5.1\nPID|1||P1^^^H1^MR||张^三\nOBR|1||F1|718-7^Hemoglobin^LN\nOBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL|12-16||||F')).toEqual([]);
  });

  test('required fields left empty, non-repeating fields repeated, bad primitives, unknown segments; Z-segments allowed', () => {
    const issues = issuesOf(
      'MSH|^~\\&|LIS|H1|HUB|R|20260101120000+0800||ORU^R01^ORU_R01|C1|P|2.5.1\nPID|1||P1^^^H1^MR||Li^Si|||F~M\nPRT|1|AD\nZPI|whatever\nOBR|1||F1|718-7^Hemoglobin^LN|||2026-01-01\nOBX|x|NM|||13.2|g/dL',
    );
    expect(issues.map((i) => `${i.location} ${i.code}`)).toEqual([
      'PID-8 repetition',
      'PRT unknown-segment', // PRT came with v2.7
      'OBR-7 datatype',
      'OBX-1 datatype',
      'OBX-3 required',
      'OBX-11 required',
    ]);
    expect(issues.find((i) => i.location === 'OBX-3')!.text).toBe('OBX-3 Observation Identifier is required but empty');
    expect(issues.find((i) => i.location === 'OBR-7')!.text).toContain('is not a valid TS: "2026-01-01"');
  });

  test('the version comes from MSH-12; an unknown one falls back to the nearest, else 2.5', () => {
    expect(dictionaryFor('2.3').segments.PRT).toBeUndefined();
    expect(dictionaryFor('2.8').segments.PRT).toBeDefined();
    expect(dictionaryFor('2.5.1').version).toBe('2.5.1');
    expect(dictionaryFor('nonsense').segments.PID).toBeDefined();
  });

  test('findings travel on the message Provenance', () => {
    const bundle = convertMessage(parse('MSH|^~\\&|LIS|H1|HUB|R|20260101120000+0800||ORU^R01|C1|P|2.5.1\nPID|1||P1^^^H1^MR||Li^Si\nOBR|1||F1|718-7^Hemoglobin^LN\nOBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL'), {
      memberId: 'm1',
      channelId: 'c1',
      utcOffsetMinutes: 480,
    });
    const provenance = bundle.entry.find((e) => e.resource.resourceType === 'Provenance')!.resource as { extension?: Array<{ url: string; valueString: string }> };
    expect(provenance.extension).toEqual([{ url: CONFORMANCE_URL, valueString: 'OBX-11 required: OBX-11 Observation Result Status is required but empty' }]);
  });
});
