import { archiveName, globToRegExp } from './dropFolder';

const stamp = '20240101T000000-';

describe('archiveName', () => {
  it('keeps a short, clean name as it is', () => {
    expect(archiveName(stamp, 'adt.hl7')).toEqual({ name: `${stamp}adt.hl7`, changed: false });
  });

  // Row 2: 236 characters plus the timestamp went past 255 and rename() failed ENAMETOOLONG.
  it.each([
    ['ASCII', 'a'.repeat(232) + '.hl7'],
    ['Chinese (3 bytes a character in UTF-8)', '检验结果'.repeat(20) + '.hl7'],
    ['a 4-byte character at the cut', '𠀀'.repeat(63) + '.hl7'],
  ])('shortens a long %s name to fit 255 bytes with its reason-file suffix, keeping the extension', (_label, name) => {
    const result = archiveName(stamp, name);
    expect(result.changed).toBe(true);
    expect(Buffer.byteLength(`${result.name}.reason.txt`)).toBeLessThanOrEqual(255);
    expect(result.name.endsWith('.hl7')).toBe(true);
    expect(result.name).not.toContain('\uFFFD');
    // the stem is a whole-character prefix of the original
    const stem = result.name.slice(stamp.length).replace(/~[0-9a-f]{12}\.hl7$/, '');
    expect(name.startsWith(stem)).toBe(true);
  });

  it('keeps two long names that share their start apart by their hash', () => {
    const a = archiveName(stamp, 'x'.repeat(240) + '-a.hl7').name;
    const b = archiveName(stamp, 'x'.repeat(240) + '-b.hl7').name;
    expect(a).not.toBe(b);
  });

  it('replaces control characters (a newline) with _', () => {
    expect(archiveName(stamp, 'lab\nresult\t1.hl7')).toEqual({ name: `${stamp}lab_result_1.hl7`, changed: true });
  });
});

describe('globToRegExp', () => {
  it('matches a name holding a newline, so it is not ignored forever', () => {
    expect(globToRegExp('*.hl7').test('a\nb.hl7')).toBe(true);
    expect(globToRegExp('*.hl7').test('a.hl7\n')).toBe(false);
  });
});
