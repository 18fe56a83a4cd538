/**
 * The pure parts of the cost feed: the published JSON Schema is generated from the zod schema and
 * versioned; CSV rows escape what needs escaping; the pseudonym is keyed (same key, same person:
 * same value; another key: another value) and the secret is required, long enough, never echoed.
 */
import { parseConfig } from '../hub/config';
import { COST_EVENT_SCHEMA_VERSION, costEventCsvColumns, costEventCsvRow, costEventJsonSchema, costEventSchema, type CostEvent } from '../hub/feeds/costEvents';
import { feedSecret, pseudonymiser } from '../hub/feeds/pseudonym';
import { monthsBetween } from '../hub/feeds/kpi';

const event: CostEvent = {
  schemaVersion: COST_EVENT_SCHEMA_VERSION,
  id: 'ce_1',
  cursor: 7,
  kind: 'charge',
  status: 'active',
  occurredAt: '2026-03-04T02:00:00.000Z',
  localDate: '2026-03-04',
  member: 'county',
  memberTier: 'secondary',
  department: '内科, "门诊"',
  patientKey: 'a'.repeat(64),
  diagnosis: { system: 'http://id.who.int/icd/release/11/mms', code: 'BA00.Z', display: null },
  serviceCode: { system: 'urn:yilian:county:L', code: 'CT001', display: '收费项目' },
  sourceStatus: 'billable',
  quantity: 2,
  unit: '1',
  unitPrice: 160,
  currency: 'CNY',
  resources: { device: null, deviceName: null, modality: null, practitioner: null, practitionerKey: null, location: null },
  referral: null,
  duplicate: null,
  source: { resourceType: 'ChargeItem', resourceId: 'r1', resourceVersion: 2, rawMessageId: 12, mappingVersions: ['a|1', 'b|2'] },
  corrects: 'ce_0',
  recordedAt: '2026-11-26T01:00:00.000Z',
};

test('the JSON Schema is generated from the zod schema, versioned, and requires every field', () => {
  const schema = costEventJsonSchema() as { version: string; $id: string; required: string[]; properties: Record<string, { enum?: string[] }> };
  expect(schema.version).toBe(COST_EVENT_SCHEMA_VERSION);
  expect(schema.$id).toContain(COST_EVENT_SCHEMA_VERSION);
  expect(schema.required.sort()).toEqual(Object.keys(costEventSchema.shape).sort());
  expect(schema.properties.kind!.enum).toEqual(['encounter', 'lab-test', 'imaging-exam', 'procedure', 'charge', 'referral', 'outreach-session', 'device-usage']);
  expect(() => costEventSchema.parse({ ...event, name: '张三' })).toThrow();
});

test('CSV rows have one cell per column and escape commas and quotes', () => {
  const row = costEventCsvRow(event);
  expect(row).toContain('"内科, ""门诊"""');
  // Unescaped commas outside quotes = cells.
  const cells = row.match(/("([^"]|"")*"|[^,]*)(,|$)/g)!.filter((c, i, all) => i < all.length - 1 || c !== '');
  expect(cells).toHaveLength(costEventCsvColumns.length);
  expect(row.startsWith('7,ce_1,charge,active,')).toBe(true);
});

test('the pseudonym is keyed: stable per person and key, different under another key, not the id', () => {
  const a = pseudonymiser(Buffer.from('secret-one-0123456789'));
  const b = pseudonymiser(Buffer.from('secret-two-0123456789'));
  expect(a('G1')).toBe(a('G1'));
  expect(a('G1')).not.toBe(a('G2'));
  expect(a('G1')).not.toBe(b('G1'));
  expect(a('G1')).toMatch(/^[0-9a-f]{64}$/);
});

test('the feed secret comes from the environment or a file; missing or short is refused without echoing it', () => {
  const config = parseConfig({ feeds: { cost: { pseudonymKeyEnv: 'TEST_FEED_KEY' } } });
  expect(feedSecret(config, { env: { TEST_FEED_KEY: 'long-enough-secret-value' } }).toString()).toBe('long-enough-secret-value');
  expect(() => feedSecret(config, { env: {} })).toThrow(/TEST_FEED_KEY/);
  let message = '';
  try {
    feedSecret(config, { env: { TEST_FEED_KEY: 'short-xyz' } });
  } catch (error) {
    message = (error as Error).message;
  }
  expect(message).toMatch(/at least 16 bytes/);
  expect(message).not.toContain('short-xyz');
  expect(() => parseConfig({ feeds: { cost: { pseudonymKey: 'inline-secrets-are-not-accepted' } } })).toThrow();
});

test('KPI months are listed inclusively across years', () => {
  expect(monthsBetween('2025-11', '2026-02')).toEqual(['2025-11', '2025-12', '2026-01', '2026-02']);
  expect(monthsBetween('2026-03', '2026-03')).toEqual(['2026-03']);
});
