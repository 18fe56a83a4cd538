/**
 * storableText / storableJson: what a text or jsonb column receives for a value derived from a
 * member's bytes. The real PostgreSQL's refusals of the unescaped values, and the error
 * classification, are checked against the server in test/poison-store.int.test.ts.
 */
import { storableJson, storableOrNull, storableText } from './pgErrors';

describe('storableText', () => {
  it('returns ordinary text unchanged, the same string', () => {
    const text = 'MSH|^~\\&|LIS|医院|… 𠀀 \\u0000 spelled out';
    expect(storableText(text)).toBe(text);
    expect(storableText('')).toBe('');
  });

  it('writes U+0000 as the six visible characters \\u0000, wherever it is', () => {
    expect(storableText('\u0000')).toBe('\\u0000');
    expect(storableText('CTRL\u0000ID\u0000')).toBe('CTRL\\u0000ID\\u0000');
    expect(storableText('\u0000\u0000')).toHaveLength(12);
  });

  it('keeps surrogate pairs (characters outside the BMP) and escapes lone surrogates', () => {
    expect(storableText('𠀀x')).toBe('𠀀x');
    expect(storableText('a\ud800b')).toBe('a\\uD800b');
    expect(storableText('\udc00')).toBe('\\uDC00');
    expect(storableText('\ud83d\ude00\ud83d')).toBe('\ud83d\ude00\\uD83D');
  });

  it('leaves every other control character alone (PostgreSQL text holds them)', () => {
    const text = '\u0001\u0007\t\r\n\u001b\u007f';
    expect(storableText(text)).toBe(text);
  });

  it('storableOrNull keeps null and undefined', () => {
    expect(storableOrNull(null)).toBeNull();
    expect(storableOrNull(undefined)).toBeUndefined();
    expect(storableOrNull('a\u0000')).toBe('a\\u0000');
  });
});

describe('storableJson', () => {
  it('is JSON.stringify when nothing needs escaping (including a string that only spells \\u0000)', () => {
    const value = { resourceType: 'Observation', valueString: 'literally \\u0000', n: [1, 2, { a: null }] };
    expect(storableJson(value)).toBe(JSON.stringify(value));
  });

  it('escapes NUL and lone surrogates in nested strings and keys, and the result parses back', () => {
    const value = { a: ['x\u0000y', { 'k\u0000': 'v\ud800' }], b: 1, c: true, d: null };
    const json = storableJson(value);
    // What jsonb refuses is a JSON escape of U+0000 or of a lone surrogate; the parsed value shows none is left.
    expect(JSON.stringify(JSON.parse(json))).toBe(json);
    expect(JSON.parse(json)).toEqual({ a: ['x\\u0000y', { 'k\\u0000': 'v\\uD800' }], b: 1, c: true, d: null });
  });
});
