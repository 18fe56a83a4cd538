import { HubError } from '../outcome';
import { Hl7Message, escape, readDelimiters, standardDelimiters, unescape } from './message';

const adt = [
  'MSH|^~\\&|HIS|RMYY|HUB|YL|20240102103000+0800||ADT^A01^ADT_A01|MSG0001|P|2.5|||AL|NE||UNICODE UTF-8',
  'EVN|A01|20240102102900',
  'PID|1||123456^^^RMYY^MR~SFZ110101199001011234^^^GA^NI||张三^^^^^^L||19900101|M',
];

function thrown(fn: () => unknown): HubError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(HubError);
    return error as HubError;
  }
  throw new Error('expected a HubError, nothing was thrown');
}

describe('Hl7Message.parse: segment ends', () => {
  it.each([
    ['CR', '\r'],
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])('splits segments ended by %s', (_name, end) => {
    const message = Hl7Message.parse(adt.join(end) + end);
    expect(message.segments.map((s) => s.name)).toEqual(['MSH', 'EVN', 'PID']);
    expect(message.segment('PID')!.value(3)).toBe('123456');
    // no stray CR left at the end of the last field of a segment
    expect(message.segment('EVN')!.value(2)).toBe('20240102102900');
    expect(message.msh.value(18)).toBe('UNICODE UTF-8');
  });

  it('strips a leading BOM and leading whitespace', () => {
    const message = Hl7Message.parse('\uFEFF\r\n' + adt.join('\r'));
    expect(message.msh.name).toBe('MSH');
    expect(message.msh.value(10)).toBe('MSG0001');
  });

  it('skips blank lines between segments', () => {
    const message = Hl7Message.parse(adt.join('\r\n\r\n'));
    expect(message.segments).toHaveLength(3);
  });

  it('keeps Chinese text intact', () => {
    const pid = Hl7Message.parse(adt.join('\r')).segment('PID')!;
    expect(pid.value(5)).toBe('张三');
    expect(pid.components(5)).toEqual(['张三', '', '', '', '', '', 'L']);
  });
});

describe('MSH numbering', () => {
  const msh = Hl7Message.parse(adt.join('\r')).msh;

  it('counts the field separator as MSH-1 and the encoding characters as MSH-2', () => {
    expect(msh.value(1)).toBe('|');
    expect(msh.value(2)).toBe('^~\\&');
    expect(msh.repetitions(2)).toEqual(['^~\\&']);
    expect(msh.value(3)).toBe('HIS');
    expect(msh.value(4)).toBe('RMYY');
    expect(msh.value(7)).toBe('20240102103000+0800');
  });

  it('reads MSH-9 as the message type and MSH-10 as the control id', () => {
    expect(msh.value(9)).toBe('ADT');
    expect(msh.value(9, 0, 2)).toBe('A01');
    expect(msh.value(9, 0, 3)).toBe('ADT_A01');
    expect(msh.components(9)).toEqual(['ADT', 'A01', 'ADT_A01']);
    expect(msh.value(10)).toBe('MSG0001');
    expect(msh.value(11)).toBe('P');
    expect(msh.value(12)).toBe('2.5');
    expect(msh.value(15)).toBe('AL');
    expect(msh.value(16)).toBe('NE');
  });
});

describe('Hl7Segment accessors', () => {
  const text = [
    'MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5',
    'OBX|1|CE|CODE1^Name^LN~CODE2^Other^L||a&b&c^second||""|',
  ].join('\r');
  const obx = Hl7Message.parse(text).segment('OBX')!;

  it('splits repetitions', () => {
    expect(obx.repetitions(3)).toEqual(['CODE1^Name^LN', 'CODE2^Other^L']);
    expect(obx.value(3, 1, 1)).toBe('CODE2');
    expect(obx.value(3, 1, 3)).toBe('L');
    expect(obx.value(3, 2)).toBe(''); // no third repetition
  });

  it('splits components and sub-components', () => {
    expect(obx.value(5, 0, 1, 1)).toBe('a');
    expect(obx.value(5, 0, 1, 2)).toBe('b');
    expect(obx.value(5, 0, 1, 3)).toBe('c');
    expect(obx.value(5, 0, 2)).toBe('second');
    expect(obx.value(5, 0, 1)).toBe('a'); // sub-component 1 by default
    expect(obx.components(5)).toEqual(['a&b&c', 'second']);
    expect(obx.value(5, 0, 9)).toBe('');
  });

  it('tells an explicit null ("") from an empty or absent field', () => {
    expect(obx.isExplicitNull(7)).toBe(true);
    expect(obx.raw(7)).toBe('""');
    expect(obx.isExplicitNull(6)).toBe(false);
    expect(obx.raw(6)).toBe('');
    expect(obx.value(6)).toBe('');
    expect(obx.repetitions(6)).toEqual([]);
    expect(obx.isExplicitNull(8)).toBe(false); // empty trailing field
    expect(obx.isExplicitNull(40)).toBe(false); // absent field
    expect(obx.raw(40)).toBe('');
  });
});

describe('escape sequences', () => {
  const d = standardDelimiters;

  it.each([
    ['\\F\\', '|'],
    ['\\S\\', '^'],
    ['\\T\\', '&'],
    ['\\R\\', '~'],
    ['\\E\\', '\\'],
    ['\\X41\\', 'A'],
    ['\\XE5BCA0\\', '张'],
    ['a\\H\\bold\\N\\b', 'aboldb'],
    ['line1\\.br\\line2', 'line1\nline2'],
    ['\\C2842\\x\\M2442\\', 'x'],
  ])('unescape(%j) → %j', (input, expected) => {
    expect(unescape(input, d)).toBe(expected);
  });

  it('keeps unknown sequences and an unterminated escape as received', () => {
    expect(unescape('a\\Q\\b', d)).toBe('a\\Q\\b');
    expect(unescape('C:\\temp', d)).toBe('C:\\temp');
  });

  it('unescapes on access and keeps the raw value escaped', () => {
    const text = 'MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rNTE|1||BP 120\\S\\80 \\T\\ \\F\\ ok\\.br\\next\\X41\\';
    const nte = Hl7Message.parse(text).segment('NTE')!;
    expect(nte.raw(3)).toBe('BP 120\\S\\80 \\T\\ \\F\\ ok\\.br\\next\\X41\\');
    expect(nte.value(3)).toBe('BP 120^80 & | ok\nnextA');
    // an escaped delimiter does not split
    expect(nte.components(3)).toEqual(['BP 120^80 & | ok\nnextA']);
  });

  it('escape() writes every delimiter and line break as an escape sequence', () => {
    expect(escape('a|b^c&d~e\\f\r\ng', d)).toBe('a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\\\.br\\g');
    expect(escape('张三', d)).toBe('张三');
  });

  it('unescape(escape(x)) returns x for text without line breaks', () => {
    const text = 'x|y^z&w~v\\u 张三';
    expect(unescape(escape(text, d), d)).toBe(text);
  });
});

describe('non-standard delimiters', () => {
  const text = 'MSH#$%@!#HIS#RMYY#HUB#YL#20240101##ADT$A08#CTRL9#P#2.4\rPID#1##A1$$$H$MR%B2$$$H$NI##Li@S@Si$Lei!x';
  const message = Hl7Message.parse(text);

  it('reads the delimiters declared in MSH-1 and MSH-2', () => {
    expect(message.delimiters).toEqual({ field: '#', component: '$', repetition: '%', escape: '@', subcomponent: '!' });
    expect(readDelimiters(text)).toEqual(message.delimiters);
    expect(message.msh.value(1)).toBe('#');
    expect(message.msh.value(2)).toBe('$%@!');
  });

  it('splits fields, components, repetitions and sub-components with them', () => {
    const pid = message.segment('PID')!;
    expect(message.msh.value(9, 0, 2)).toBe('A08');
    expect(message.msh.value(10)).toBe('CTRL9');
    expect(pid.repetitions(3)).toEqual(['A1$$$H$MR', 'B2$$$H$NI']);
    expect(pid.value(3, 1, 5)).toBe('NI');
    expect(pid.value(5, 0, 1)).toBe('Li$Si'); // @S@ is the component delimiter, escaped
    expect(pid.value(5, 0, 2, 1)).toBe('Lei');
    expect(pid.value(5, 0, 2, 2)).toBe('x');
  });
});

describe('errors', () => {
  it.each([
    ['a PID first', 'PID|1||123'],
    ['empty text', ''],
    ['whitespace only', ' \r\n'],
    ['lower-case msh', 'msh|^~\\&|A'],
  ])('%s → not-hl7', (_name, text) => {
    const error = thrown(() => Hl7Message.parse(text));
    expect(error.code).toBe('not-hl7');
    expect(error.location).toBe('MSH');
  });

  it.each([
    ['no field separator', 'MSH', 'MSH-1'],
    ['alphanumeric field separator', 'MSHA^~\\&A', 'MSH-1'],
    ['three encoding characters', 'MSH|^~\\|A|B', 'MSH-2'],
    ['six encoding characters', 'MSH|^~\\&#@|A', 'MSH-2'],
    ['repeated delimiter', 'MSH|^^\\&|A', 'MSH-2'],
    ['a space among the encoding characters', 'MSH|^~ &|A', 'MSH-2'],
    ['no end to MSH-2', 'MSH|^~\\&', 'MSH-2'],
  ])('%s → structure', (_name, text, location) => {
    const error = thrown(() => Hl7Message.parse(text));
    expect(error.code).toBe('structure');
    expect(error.location).toBe(location);
  });

  it.each([
    ['lower-case name', 'pid|1'],
    ['two-letter name', 'PI|1'],
    ['name not followed by the field separator', 'PIDX|1'],
    ['free text line', 'hello world'],
  ])('a segment with a %s → structure naming the segment', (_name, line) => {
    const error = thrown(() => Hl7Message.parse(`MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r${line}`));
    expect(error.code).toBe('structure');
    expect(error.location).toBe('segment 2');
  });
});
