/**
 * The pure parts of mutual recognition: what the index keeps of a stored resource, how one result
 * is judged under a rule, accreditation and price look-ups by date, the shipped rule set, and the
 * CLI's time formats.
 */
import { parseConfig } from '../hub/config';
import { accreditationFor, priceAt } from '../hub/recognition/config';
import { judgeResult } from '../hub/recognition/check';
import { localTime, parseRulesMode, parseTimeBound } from '../hub/recognition/format';
import { indexEntriesOf } from '../hub/recognition/resultIndex';
import { ruleContentSchema, shippedRuleSet } from '../hub/recognition/rules';
import { ORIGINAL_QUANTITY_URL } from '../mappings/terminology/systems';

const config = parseConfig({
  recognition: {
    accreditation: [
      { member: 'county', validFrom: '2026-01-01', validTo: '2026-06-30' },
      { member: 'community', lab: 'lab-2', codes: ['4548-4'], validFrom: '2026-01-01' },
    ],
    priceLists: [
      { member: 'lead', version: 'a', effectiveFrom: '2026-01-01', prices: { '718-7': 20 } },
      { member: 'lead', version: 'b', effectiveFrom: '2026-07-01', prices: { '718-7': 25 } },
    ],
  },
});

test('index entries: LOINC codes of an Observation with canonical and original quantity; nothing without a subject or standard code', () => {
  const observation = {
    resourceType: 'Observation',
    id: 'o1',
    status: 'final',
    code: { coding: [{ system: 'urn:yilian:lead:L', code: 'GLU' }, { system: 'http://loinc.org', code: '14749-6' }] },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: '2026-11-20T09:30:00+08:00',
    valueQuantity: { value: 5.99, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L', extension: [{ url: ORIGINAL_QUANTITY_URL, valueQuantity: { value: 108, unit: 'mg/dL' } }] },
    performer: [{ display: 'lab-1' }],
  };
  expect(indexEntriesOf(observation, 'lead')).toEqual([
    { resourceType: 'Observation', resourceId: 'o1', code: '14749-6', memberId: 'lead', patientId: 'p1', effectiveAt: '2026-11-20T01:30:00.000Z', value: 5.99, unit: 'mmol/L', originalValue: 108, originalUnit: 'mg/dL', status: 'final', specimen: null, lab: 'lab-1' },
  ]);
  expect(indexEntriesOf({ ...observation, subject: undefined }, 'lead')).toEqual([]);
  expect(indexEntriesOf({ ...observation, code: { coding: [{ system: 'urn:yilian:lead:L', code: 'GLU' }] } }, 'lead')).toEqual([]);
  const study = { resourceType: 'ImagingStudy', id: 's1', status: 'available', subject: { reference: 'Patient/p1' }, started: '2026-11-10T08:00:00+08:00', procedureCode: [{ coding: [{ system: 'http://loinc.org', code: '24627-2' }] }] };
  expect(indexEntriesOf(study, 'county')).toMatchObject([{ code: '24627-2', status: 'available', value: null, effectiveAt: '2026-11-10T00:00:00.000Z' }]);
});

test('judging one result: each condition gives its own reason; expiry is time + window', () => {
  const rule = ruleContentSchema.parse({ code: '718-7', windowDays: 7, tiers: ['tertiary', 'secondary'], requireAccreditation: true });
  const result = { code: '718-7', member_id: 'county', lab: null, effective_at: new Date('2026-03-01T00:00:00Z'), status: 'final', unit: 'g/L', value: 130, specimen: null };
  const ctx = { at: new Date('2026-03-05T00:00:00Z'), tier: 'secondary', canonicalUnit: 'g/L', config };
  expect(judgeResult(result, rule, ctx)).toBeUndefined();
  expect(judgeResult(result, rule, { ...ctx, at: new Date('2026-03-08T00:00:00Z') })?.reason).toBe('expired');
  expect(judgeResult({ ...result, status: 'preliminary' }, rule, ctx)?.reason).toBe('status-not-final');
  expect(judgeResult({ ...result, unit: 'mg/dL' }, rule, ctx)?.reason).toBe('unit-incompatible');
  expect(judgeResult(result, rule, { ...ctx, tier: 'primary' })?.reason).toBe('member-not-recognised');
  expect(judgeResult(result, { ...rule, members: ['county'] }, { ...ctx, tier: 'primary' })).toBeUndefined();
  // Accreditation valid when the result was produced: the county's ended on 2026-06-30.
  expect(judgeResult({ ...result, effective_at: new Date('2026-07-01T00:00:00Z') }, rule, { ...ctx, at: new Date('2026-07-02T00:00:00Z') })?.reason).toBe('lab-not-accredited');
  expect(judgeResult(result, { ...rule, recognised: false }, ctx)?.reason).toBe('not-recognised-item');
});

test('accreditation by member, lab, code and date; prices by the list in force', () => {
  const r = config.recognition;
  expect(accreditationFor(r, 'county', null, '718-7', new Date('2026-06-30T23:00:00Z'))).toBeDefined();
  expect(accreditationFor(r, 'county', null, '718-7', new Date('2026-07-01T00:00:00Z'))).toBeUndefined();
  expect(accreditationFor(r, 'community', 'lab-2', '4548-4', new Date('2026-09-01T00:00:00Z'))).toBeDefined();
  expect(accreditationFor(r, 'community', 'lab-1', '4548-4', new Date('2026-09-01T00:00:00Z'))).toBeUndefined();
  expect(accreditationFor(r, 'community', 'lab-2', '718-7', new Date('2026-09-01T00:00:00Z'))).toBeUndefined();
  expect(priceAt(r, 'lead', '718-7', new Date('2026-03-01T00:00:00Z'))).toBe(20);
  expect(priceAt(r, 'lead', '718-7', new Date('2026-08-01T00:00:00Z'))).toBe(25);
  expect(priceAt(r, 'lead', '2823-3', new Date('2026-08-01T00:00:00Z'))).toBe(0);
  expect(() => parseConfig({ recognition: { currency: 'CNY', priceLists: [{ member: 'x', version: '1', currency: 'USD', effectiveFrom: '2026-01-01', prices: {} }] } })).toThrow(/price lists must be in CNY/);
});

test('the shipped rules: the common tests of the seed data, with never-recognised items', () => {
  const rules = shippedRuleSet();
  const codes = rules.map((r) => r.code);
  for (const code of ['718-7', '6690-2', '777-3', '14749-6', '14682-9', '1742-6', '14647-2', '4548-4', '36643-5', '24627-2']) expect(codes).toContain(code);
  expect(new Set(codes).size).toBe(codes.length);
  expect(rules.filter((r) => !r.recognised).map((r) => r.code).sort()).toEqual(['24558-9', '2823-3']);
});

test('time formats: local ISO 8601 output with the offset, date / HL7 / ISO bounds, a date-only --to includes the day', () => {
  // The instant 01:30:05Z is 09:30:05 on a +08:00 member's clock; the offset travels with it.
  expect(localTime(new Date('2026-11-20T01:30:05Z'), 480)).toBe('2026-11-20T09:30:05+08:00');
  expect(localTime(new Date('2026-11-20T20:00:00Z'), 480)).toBe('2026-11-21T04:00:00+08:00');
  expect(localTime(new Date('2026-11-20T01:30:05.250Z'), -330)).toBe('2026-11-19T20:00:05.250-05:30');
  expect(localTime(new Date('2026-11-20T01:30:05Z'), 0)).toBe('2026-11-20T01:30:05+00:00');
  for (const [at, offset] of [['2026-11-20T01:30:05Z', 480], ['2026-03-01T23:59:59Z', -300]] as const) expect(Date.parse(localTime(new Date(at), offset))).toBe(Date.parse(at));
  expect(parseTimeBound('2026-11-01', 'from').toISOString()).toBe('2026-11-01T00:00:00.000Z');
  expect(parseTimeBound('2026-11-30', 'to').toISOString()).toBe('2026-12-01T00:00:00.000Z');
  expect(parseTimeBound('20261130120000', 'to').toISOString()).toBe('2026-11-30T12:00:00.000Z');
  expect(parseTimeBound('2026-11-30T12:00:00+08:00', 'to').toISOString()).toBe('2026-11-30T04:00:00.000Z');
  expect(() => parseTimeBound('yesterday', 'from')).toThrow(/not a date/);
});

test('--rules: at-time by default, current, anything else refused', () => {
  expect(parseRulesMode(undefined)).toBe('at-time');
  expect(parseRulesMode('at-time')).toBe('at-time');
  expect(parseRulesMode('current')).toBe('current');
  expect(() => parseRulesMode('today')).toThrow(/rules: at-time or current/);
});
