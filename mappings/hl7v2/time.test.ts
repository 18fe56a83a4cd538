import { formatHl7Time, parseHl7Time } from './time';

describe('parseHl7Time', () => {
  it('applies a negative (western) offset', () => {
    expect(parseHl7Time('20110531140551-0500')).toEqual({
      instant: new Date('2011-05-31T19:05:51Z'),
      precision: 14,
      offsetMinutes: -300,
      offsetStated: true,
    });
  });

  it('applies a positive offset with minutes', () => {
    expect(parseHl7Time('198908181126+0215')).toEqual({
      instant: new Date('1989-08-18T09:11:00Z'),
      precision: 12,
      offsetMinutes: 135,
      offsetStated: true,
    });
  });

  it.each([
    ['2019', 4, '2018-12-31T16:00:00.000Z'],
    ['201901', 6, '2018-12-31T16:00:00.000Z'],
    ['20190102', 8, '2019-01-01T16:00:00.000Z'],
    ['2019010213', 10, '2019-01-02T05:00:00.000Z'],
    ['201901021314', 12, '2019-01-02T05:14:00.000Z'],
  ])('partial precision %s (default +0800) → precision %i, %s', (value, precision, iso) => {
    const time = parseHl7Time(value)!;
    expect(time.instant.toISOString()).toBe(iso);
    expect(time.precision).toBe(precision);
    expect(time.offsetMinutes).toBe(480);
    expect(time.offsetStated).toBe(false);
  });

  it('uses the given default offset when none is stated, and ignores it when one is', () => {
    expect(parseHl7Time('20190102030405', 0)?.instant.toISOString()).toBe('2019-01-02T03:04:05.000Z');
    expect(parseHl7Time('20190102030405', -300)?.instant.toISOString()).toBe('2019-01-02T08:04:05.000Z');
    expect(parseHl7Time('20190102030405+0100', -300)?.instant.toISOString()).toBe('2019-01-02T02:04:05.000Z');
  });

  it('reads a fraction of a second', () => {
    expect(parseHl7Time('20190102030405.1234+0000')?.instant.toISOString()).toBe('2019-01-02T03:04:05.123Z');
    expect(parseHl7Time('20190102030405.5+0000')?.instant.toISOString()).toBe('2019-01-02T03:04:05.500Z');
    expect(parseHl7Time('20190102030405.1234+0000')?.precision).toBe(14);
  });

  it('trims surrounding whitespace', () => {
    expect(parseHl7Time(' 20190102+0000 ')?.instant.toISOString()).toBe('2019-01-02T00:00:00.000Z');
  });

  it.each([
    ['month 13', '20191301'],
    ['month 00', '201900'],
    ['day 00', '20190100'],
    ['day 32', '20190132'],
    ['hour 24', '2019010224'],
    ['minute 60', '201901021060'],
    ['odd number of digits', '2019010'],
    ['five fraction digits', '20190102030405.12345'],
    ['offset without minutes', '20190102+08'],
    ['text', 'yesterday'],
    ['empty', ''],
  ])('%s → undefined', (_name, value) => {
    expect(parseHl7Time(value)).toBeUndefined();
  });

  // Date.UTC rolls 30 February over to 2 March; the day is only checked against 31.
  it('rejects a day that does not exist in its month (20190230)', () => {
    expect(parseHl7Time('20190230')).toBeUndefined();
  });
});

describe('formatHl7Time', () => {
  const instant = new Date('2011-05-31T19:05:51.789Z');

  it('formats in the given offset, with seconds and no fraction', () => {
    expect(formatHl7Time(instant, -300)).toBe('20110531140551-0500');
    expect(formatHl7Time(instant, 0)).toBe('20110531190551+0000');
    expect(formatHl7Time(instant, -210)).toBe('20110531153551-0330');
  });

  it('defaults to +0800 (crossing midnight)', () => {
    expect(formatHl7Time(instant)).toBe('20110601030551+0800');
  });

  it.each([-300, -210, 0, 135, 480, 570])('round-trips through parseHl7Time at offset %i', (offset) => {
    const text = formatHl7Time(instant, offset);
    const parsed = parseHl7Time(text)!;
    expect(parsed.instant.toISOString()).toBe('2011-05-31T19:05:51.000Z');
    expect(parsed.offsetMinutes).toBe(offset);
    expect(parsed.offsetStated).toBe(true);
    expect(formatHl7Time(parsed.instant, parsed.offsetMinutes)).toBe(text);
  });

  it('parses "20110531140551-0500" and formats it back unchanged', () => {
    const parsed = parseHl7Time('20110531140551-0500')!;
    expect(formatHl7Time(parsed.instant, parsed.offsetMinutes)).toBe('20110531140551-0500');
  });
});
