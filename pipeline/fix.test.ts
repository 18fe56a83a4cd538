import { normalizeSegments } from './fix';

describe('normalizeSegments (a textarea or an edited file back to HL7 segments)', () => {
  it.each([
    ['MSH|a\nPID|b\n', 'MSH|a\rPID|b\r'],
    ['MSH|a\r\nPID|b', 'MSH|a\rPID|b\r'],
    ['MSH|a\rPID|b\r', 'MSH|a\rPID|b\r'],
    ['MSH|a\nPID|b\n\n  \n', 'MSH|a\rPID|b\r'],
    ['MSH|a\n\nPID|b', 'MSH|a\r\rPID|b\r'],
    [' \n', ''],
  ])('%j → %j', (text, segments) => {
    expect(normalizeSegments(text)).toBe(segments);
  });
});
