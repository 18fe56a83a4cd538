/**
 * The cost event feed and the alliance KPIs on the real pipeline and PostgreSQL: HL7 v2 from three
 * members (lead, county, community clinic) goes through parse → convert → map → patient index,
 * the builder derives the feed, and a consumer reads it over HTTP.
 * - a consumer that crashes between pages resumes from its stored cursor: every event exactly once;
 * - builders running concurrently with a reader: the reader never skips a cursor;
 * - a corrected result and a corrected charge are new events naming the old ones, which stay as they were;
 * - no field of any event (JSON or CSV) carries a name, resident ID, phone, address or MRN;
 * - a feed-scoped key reads the feed and gets 403 from everything else;
 * - KPIs equal the hand-computed referral, device-sharing and outreach figures.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import type { MemberConfig } from '../hub/config';
import { encodeAs } from '../cli/simulate';
import { runPipeline } from '../pipeline/runner';
import { createApi } from '../api/server';
import { syncTerminology } from '../hub/terminology/versions';
import { coverage } from '../hub/terminology/worklist';
import { buildCostFeed } from '../hub/feeds/builder';
import { costFeedSummary } from '../hub/feeds/summary';
import { costEventCsvColumns, costEventSchema, type CostEvent } from '../hub/feeds/costEvents';
import { repeatsOf, duplicateReport } from '../hub/recognition/duplicates';
import { startTestHub, type TestHub } from './support/hub';
import { charge, identities, lab, members, people, story } from './cost-feed-fixture';

const ADMIN = 'admin-key-0123456789abcdef';
const FEED = 'feed-key-0123456789abcdef';
const INTEGRATION = 'integration-key-0123456789';
const SECRET = 'cost-feed-test-secret-0123456789';
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };

const recognition = {
  accreditation: [{ member: 'county', validFrom: '2026-01-01' }, { member: 'lead', validFrom: '2026-01-01' }],
  priceLists: [{ member: 'lead', version: '2026-01', effectiveFrom: '2026-01-01', prices: { '4548-4': 80 } }],
};

let hub: TestHub;
let server: http.Server;
let base: string;

const get = (path: string, key?: string) => fetch(`${base}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

async function send(memberId: string, text: string): Promise<number> {
  const member = hub.config.members.find((m) => m.id === memberId) as MemberConfig;
  const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
  expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
  return stored.rawId;
}

const build = () => buildCostFeed(hub.runtime.db, hub.config, { secret: Buffer.from(SECRET) });

async function allEvents(): Promise<CostEvent[]> {
  return (await hub.runtime.db.query<{ event: CostEvent }>(`SELECT event FROM cost_event ORDER BY seq`)).rows.map((r) => r.event);
}

async function sendStory(): Promise<void> {
  for (const { member, text } of story()) await send(member, text);
}

beforeAll(async () => {
  hub = await startTestHub('costfeed', {
    members,
    api: {
      keys: [
        { name: 'admin', key: ADMIN, scopes: ['admin'] },
        { name: 'cost-system', key: FEED, scopes: ['feed.read'] },
        { name: 'integration', key: INTEGRATION, scopes: ['integration'] },
      ],
    },
    recognition,
  });
  await syncTerminology(hub.runtime.db);
  server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await sendStory();
}, 120_000);

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await hub.close();
});

test('the builder derives pseudonymous, standard-coded events; a second build appends nothing', async () => {
  const first = await build();
  expect(first.appended).toBeGreaterThan(0);
  expect(first.pending).toBe(0);
  const again = await build();
  expect(again.appended).toBe(0);
  const events = await allEvents();
  for (const e of events) costEventSchema.parse(e);
  expect(events.map((e) => e.cursor)).toEqual(events.map((_, i) => i + 1));
  const count = (kind: string) => events.filter((e) => e.kind === kind).length;
  expect({ encounter: count('encounter'), lab: count('lab-test'), imaging: count('imaging-exam'), device: count('device-usage'), charge: count('charge'), referral: count('referral'), outreach: count('outreach-session') }).toEqual({
    encounter: 8,
    lab: 2,
    imaging: 1,
    device: 3,
    charge: 1,
    referral: 5,
    outreach: 3,
  });
  // One person, one key, at every member; the key is not the golden id.
  const p1Keys = new Set(events.filter((e) => e.kind === 'encounter' && e.occurredAt! < '2026-03-31').map((e) => e.patientKey));
  expect(p1Keys.size).toBe(1);
  expect([...p1Keys][0]).toMatch(/^[0-9a-f]{64}$/);
  const golden = (await hub.runtime.db.query<{ id: string }>(`SELECT id FROM mpi_golden`)).rows.map((r) => r.id);
  expect(golden).not.toContain([...p1Keys][0]);
  // The lead visit: department, ICD-11 principal diagnosis (mapped from ICD-10 I10), practitioner.
  const leadVisit = events.find((e) => e.kind === 'encounter' && e.member === 'lead' && e.occurredAt === '2026-03-10T01:00:00.000Z')!;
  expect(leadVisit).toMatchObject({ department: '心内科', memberTier: 'tertiary', localDate: '2026-03-10', resources: { practitionerKey: 'ZJPRAC|D001' } });
  expect(leadVisit.diagnosis).toMatchObject({ system: 'http://id.who.int/icd/release/11/mms', code: 'BA00.Z' });
  // A lab test: LOINC, the price from the lead's price list, the duplicate flag as recognition says.
  const labs = events.filter((e) => e.kind === 'lab-test');
  expect(labs.map((l) => l.serviceCode?.code)).toEqual(['4548-4', '4548-4']);
  const leadLab = labs.find((l) => l.member === 'lead')!;
  expect(leadLab).toMatchObject({ unitPrice: 80, currency: 'CNY' });
  // HbA1c repeated at the lead 6 days after the county's accredited result (window 90 days): a repeat.
  expect(leadLab.duplicate).toEqual({ repeat: true, earlierMember: 'county' });
  expect(labs.find((l) => l.member === 'county')!.duplicate).toEqual({ repeat: false, earlierMember: null });
  const repeats = await repeatsOf(hub.runtime.db, hub.config, labs.map((l) => l.source.resourceId));
  for (const l of labs) expect(l.duplicate).toEqual({ repeat: repeats.has(l.source.resourceId), earlierMember: repeats.get(l.source.resourceId)?.earlierMember ?? null });
  // The charge: unit price from the FT1 amount; provenance to the raw message.
  const chargeEvent = events.find((e) => e.kind === 'charge')!;
  expect(chargeEvent).toMatchObject({ member: 'county', quantity: 1, unitPrice: 320, serviceCode: { code: 'CT001' }, source: { resourceType: 'ChargeItem' } });
  expect(chargeEvent.source.rawMessageId).toEqual(expect.any(Number));
  // The CT report from the county's RIS (no category in HL7 v2: known as imaging by its code); its finding is not a lab test.
  expect(events.find((e) => e.kind === 'imaging-exam')).toMatchObject({ member: 'county', serviceCode: { system: 'http://loinc.org', code: '30799-1' }, duplicate: { repeat: false } });
  // Device usage: minutes, device and modality.
  expect(events.filter((e) => e.kind === 'device-usage').map((e) => `${e.quantity} ${e.unit} ${e.resources.modality} ${e.resources.deviceName}`).sort()).toEqual(['10 min CT 64排CT', '15 min CT 64排CT', '20 min CT 64排CT']);
  // Referrals by member tiers.
  expect(events.filter((e) => e.kind === 'referral').map((e) => `${e.referral!.fromMember}>${e.referral!.toMember}:${e.referral!.direction}`).sort()).toEqual(
    ['clinic>county:up', 'county>clinic:down', 'county>lead:up', 'lead>clinic:down', 'lead>clinic:down'].sort(),
  );
});

test('a consumer that crashes between pages resumes from its stored cursor: every event exactly once', async () => {
  await build();
  const expected = (await allEvents()).map((e) => e.id);
  let stored = 0; // the consumer's durable cursor
  const received: string[] = [];
  let pages = 0;
  for (;;) {
    const res = await get(`/feeds/cost?after=${stored}&limit=4`, FEED);
    expect(res.status).toBe(200);
    const page = (await res.json()) as { events: CostEvent[]; next: number };
    if (!page.events.length) {
      expect(page.next).toBe(stored);
      break;
    }
    pages += 1;
    // Every third page the consumer "crashes" after reading and before processing and storing its cursor.
    if (pages % 3 === 0) continue;
    received.push(...page.events.map((e) => e.id));
    stored = page.next;
  }
  expect(received).toEqual(expected);
  expect(new Set(received).size).toBe(received.length);
  // A crash after processing but before storing the cursor is the consumer's at-least-once: it sees the
  // same page again (same events, same order) and deduplicates by id.
  const again = (await (await get(`/feeds/cost?after=0&limit=4`, FEED)).json()) as { events: CostEvent[] };
  expect(again.events.map((e) => e.id)).toEqual(expected.slice(0, 4));
  // Reads are audited.
  expect((await hub.runtime.db.query(`SELECT 1 FROM audit_event WHERE actor = 'cost-system' AND entity_type = 'cost_event'`)).rowCount).toBeGreaterThan(0);
});

test('builders running while a reader polls: the reader never skips a cursor', async () => {
  // Every resource touched (a re-conversion: same content, same events) and every visit moved by a
  // minute (a real change: corrections of its encounter, referral and outreach events), appended by
  // three builders at once in many small transactions.
  await hub.runtime.db.query(`UPDATE resource SET updated_at = clock_timestamp()`);
  await hub.runtime.db.query(
    `UPDATE resource SET updated_at = clock_timestamp(),
            content = jsonb_set(content, '{period,start}', to_jsonb(to_char(((content->'period'->>'start')::timestamptz + interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
      WHERE resource_type = 'Encounter'`,
  );
  const before = Number((await hub.runtime.db.query<{ n: number }>(`SELECT max(seq) AS n FROM cost_event`)).rows[0]!.n);
  let done = false;
  const seen: number[] = [];
  const reader = (async () => {
    let after = before;
    while (!done || after < Number((await hub.runtime.db.query<{ n: number }>(`SELECT max(seq) AS n FROM cost_event`)).rows[0]!.n)) {
      const page = (await (await get(`/feeds/cost?after=${after}&limit=2`, FEED)).json()) as { events: CostEvent[]; next: number };
      for (const e of page.events) {
        // Each event read is the very next cursor: nothing was skipped, nothing repeated.
        expect(e.cursor).toBe(after + 1);
        after = e.cursor;
        seen.push(e.cursor);
      }
    }
  })();
  const builders = [1, 2, 3].map(() => buildCostFeed(hub.runtime.db, hub.config, { secret: Buffer.from(SECRET), batch: 3, syncPatients: false }));
  await Promise.all(builders);
  done = true;
  await reader;
  const after = Number((await hub.runtime.db.query<{ n: number }>(`SELECT max(seq) AS n FROM cost_event`)).rows[0]!.n);
  expect(seen).toEqual(Array.from({ length: after - before }, (_, i) => before + i + 1));
  // 8 visits + 5 referrals + 3 outreach sessions corrected; the merely touched resources yield nothing new.
  expect(after - before).toBe(16);
  const corrections = (await allEvents()).filter((e) => e.cursor > before);
  expect(corrections.every((e) => e.corrects !== null)).toBe(true);
  expect(new Set(corrections.map((e) => e.corrects)).size).toBe(16);
});

test('a corrected result and a corrected charge are new events naming the old ones, which stay unchanged', async () => {
  await build();
  const events = await allEvents();
  const oldLab = events.find((e) => e.kind === 'lab-test' && e.member === 'lead')!;
  const oldCharge = events.find((e) => e.kind === 'charge')!;
  const rowsBefore = (await hub.runtime.db.query(`SELECT seq, event::text AS event FROM cost_event WHERE id = ANY($1::text[]) ORDER BY seq`, [[oldLab.id, oldCharge.id]])).rows;
  // The lead lab sends a corrected value (OBX-11 C); the county finance re-sends transaction CT1 at 300.
  await send('lead', lab({ member: 'lead', p: people.p1, control: 'L-L1-C', time: '20260310093000', order: 'LO1', loinc: '4548-4', value: '8.0', unit: '%', status: 'C' }));
  await send('county', charge({ member: 'county', p: people.p1, control: 'C-F1-C', time: '20260304100000', txn: 'CT1', code: 'CT001', quantity: 1, amount: 300 }));
  const summary = await build();
  expect(summary).toMatchObject({ appended: 2, corrections: 2 });
  const after = await allEvents();
  const newLab = after.find((e) => e.corrects === oldLab.id)!;
  const newCharge = after.find((e) => e.corrects === oldCharge.id)!;
  expect(newLab).toMatchObject({ kind: 'lab-test', status: 'active', sourceStatus: 'corrected', source: { resourceId: oldLab.source.resourceId } });
  expect(oldLab.sourceStatus).toBe('final');
  expect(newLab.cursor).toBeGreaterThan(oldLab.cursor);
  expect(newCharge).toMatchObject({ kind: 'charge', unitPrice: 300 });
  expect(newLab.source.rawMessageId).not.toBe(oldLab.source.rawMessageId);
  // History is never rewritten: the old rows are byte-for-byte what they were, and the table refuses changes.
  expect((await hub.runtime.db.query(`SELECT seq, event::text AS event FROM cost_event WHERE id = ANY($1::text[]) ORDER BY seq`, [[oldLab.id, oldCharge.id]])).rows).toEqual(rowsBefore);
  await expect(hub.runtime.db.query(`UPDATE cost_event SET kind = 'x' WHERE id = $1`, [oldLab.id])).rejects.toThrow(/append-only/);
  await expect(hub.runtime.db.query(`DELETE FROM cost_event WHERE id = $1`, [oldLab.id])).rejects.toThrow(/append-only/);
});

test('no event carries a name, resident ID, phone, address or MRN (every field, JSON and CSV export)', async () => {
  await build();
  // The identities that really are in the hub's sources (the scan would prove nothing otherwise):
  // 3 persons × (family name, given name, resident ID, phone, street) and their 8 MRNs (P3 never went to the lead).
  const raw = (await hub.runtime.db.query<{ text: string }>(`SELECT string_agg(convert_from(content, 'UTF8'), '') AS text FROM raw_message`)).rows[0]!.text;
  const forbidden = identities().filter((value) => raw.includes(value));
  expect(forbidden).toHaveLength(23);
  const scan = (value: unknown, path: string, hits: string[]) => {
    if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) scan(v, `${path}.${k}`, hits);
    else if (value !== null && value !== undefined) for (const f of forbidden) if (String(value).includes(f)) hits.push(`${path} contains ${f}`);
  };
  const hits: string[] = [];
  const ndjson = await (await get('/feeds/cost/export?format=ndjson', FEED)).text();
  const lines = ndjson.trim().split('\n');
  expect(lines.length).toBe((await allEvents()).length);
  for (const line of lines) scan(JSON.parse(line), 'event', hits);
  const csv = await (await get('/feeds/cost/export?format=csv&from=2026-01-01&to=2027-01-01', FEED)).text();
  expect(csv.split('\n')[0]).toMatch(/^cursor,id,kind,/);
  expect(csv.trim().split('\n')).toHaveLength(lines.length + 1);
  scan(csv, 'csv', hits);
  expect(hits).toEqual([]);
});

test('a feed-scoped key reads the feed and nothing else', async () => {
  expect((await get('/feeds/cost?after=0&limit=1', FEED)).status).toBe(200);
  const schema = (await (await get('/feeds/cost/schema', FEED)).json()) as { version: string; properties: Record<string, unknown> };
  expect(schema.version).toBe('1.0.0');
  expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['patientKey', 'diagnosis', 'serviceCode', 'corrects', 'cursor']));
  for (const path of ['/fhir/Patient', '/fhir/Observation', '/api/raw-messages', '/api/raw-messages/1', '/api/status', '/api/kpi', '/api/mpi/review', '/metrics']) {
    expect([path, (await get(path, FEED)).status]).toEqual([path, 403]);
  }
  expect((await get('/feeds/cost', INTEGRATION)).status).toBe(403);
  expect((await get('/feeds/cost')).status).toBe(401);
  expect((await get('/feeds/cost?after=-1', FEED)).status).toBe(400);
  expect((await get('/feeds/cost/export?format=xml', FEED)).status).toBe(400);
  expect((await get('/api/kpi?from=2026-13', ADMIN)).status).toBe(400);
  expect((await get('/api/kpi?from=2026-05&to=2026-03', ADMIN)).status).toBe(400);
});

test('KPIs equal the hand-computed figures', async () => {
  await build();
  const res = await get('/api/kpi?from=2026-03&to=2026-04', INTEGRATION);
  expect(res.status).toBe(200);
  const kpi = (await res.json()) as any;
  // Referrals: up clinic→county, county→lead (March); down lead→clinic (March), lead→clinic and
  // county→clinic (April). Visits below the lead: 3 in March (SV1, CV1, SV2), 3 in April (CV2, SV3, SV4);
  // visits above the community tier: 2 in March (CV1, LV1), 2 in April (LV2, CV2).
  expect(kpi.totals.referrals).toEqual({ up: 2, down: 3, upRate: 2 / 6, downRate: 3 / 4 });
  expect(kpi.months.map((m: any) => [m.month, m.referrals])).toEqual([
    ['2026-03', { up: 2, down: 1, upRate: 2 / 3, downRate: 1 / 2 }],
    ['2026-04', { up: 0, down: 2, upRate: 0, downRate: 1 }],
  ]);
  // Outreach: D001 at the clinic on 03-20 (P1) and 04-09 (P2, P3): 2 expert-days, 3 patients, 1 expert.
  expect(kpi.totals.outreach).toEqual({ days: 2, patients: 3, experts: 1 });
  expect(kpi.months.map((m: any) => m.outreach)).toEqual([{ days: 1, patients: 1, experts: 1 }, { days: 1, patients: 2, experts: 1 }]);
  // The county CT: P1 (home: clinic), P2 (home: lead) are other members' patients; P3 (home: county) is its own.
  expect(kpi.totals.devices).toEqual({ exams: 3, minutes: 45, otherMemberExams: 2, sharingRate: 2 / 3 });
  expect(kpi.devices).toEqual([{ deviceId: expect.any(String), name: '64排CT', modality: 'CT', ownerMember: 'county', exams: 3, minutes: 45, otherMemberExams: 2, sharingRate: 2 / 3 }]);
  // Duplicates and recognition come from the recognition helper's report, unchanged.
  const report = await duplicateReport(hub.runtime.db, hub.config, { from: new Date('2026-03-01T00:00:00Z'), to: new Date('2026-05-01T00:00:00Z') });
  expect(kpi.totals.duplicates).toEqual({ repeats: report.totals.repeats, avoidedCost: report.totals.avoidedCost, wastedCost: report.totals.wastedCost, currency: 'CNY' });
  expect(kpi.totals.recognition).toEqual({ recognised: report.totals.recognised, repeats: report.totals.repeats, rate: report.totals.recognitionRate });
  // Mapping coverage counts codes by the day they were processed (today), so a period up to now holds them.
  const now = (await (await get('/api/kpi?from=2026-03', INTEGRATION)).json()) as any;
  const cov = await coverage(hub.runtime.db, { from: '2026-03-01' });
  const n = cov.rows.reduce((a, r) => a + r.occurrences, 0);
  const m = cov.rows.reduce((a, r) => a + r.mappedOccurrences, 0);
  expect(n).toBeGreaterThan(0);
  expect(now.totals.mappingCoverage.occurrences).toBeCloseTo(m / n, 10);
  expect(now.coverage.length).toBeGreaterThan(0);
  expect(now.months.at(-1).month).toBe(new Date().toISOString().slice(0, 7));
  // Per member: the clinic's referrals (from or to it) and its own visits.
  const clinic = (await (await get('/api/kpi?from=2026-03&to=2026-04&member=clinic', ADMIN)).json()) as any;
  expect(clinic.totals.referrals).toMatchObject({ up: 1, down: 3 });
  expect(clinic.totals.devices.exams).toBe(0);
  // Aggregates only: no patient key anywhere in the answer.
  const keys = new Set((await allEvents()).map((e) => e.patientKey).filter(Boolean) as string[]);
  const text = JSON.stringify(kpi);
  for (const k of keys) expect(text).not.toContain(k);
});

test('yilian feed cost prints the events (ndjson, --after, csv) and yilian kpi --json the same KPIs as the API', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cost-feed-cli-'));
  try {
    const configFile = path.join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({ members, recognition, databaseUrl: hub.databaseUrl }));
    const cli = path.join(__dirname, '..', 'dist', 'cli', 'yilian.js');
    const env = { ...process.env, DATABASE_URL: hub.databaseUrl, YILIAN_FEED_PSEUDONYM_KEY: SECRET };
    const run = async (...args: string[]) => (await promisify(execFile)('node', [cli, ...args, '--config', configFile], { env, maxBuffer: 64 << 20 })).stdout;
    const events = await allEvents();
    const ndjson = (await run('feed', 'cost', '--format', 'ndjson')).trim().split('\n').map((l) => JSON.parse(l) as CostEvent);
    expect(ndjson.map((e) => e.id)).toEqual(events.map((e) => e.id)); // built already: nothing new
    const after = (await run('feed', 'cost', '--format', 'ndjson', '--after', String(events[9]!.cursor))).trim().split('\n').map((l) => JSON.parse(l) as CostEvent);
    expect(after.map((e) => e.cursor)).toEqual(events.slice(10).map((e) => e.cursor));
    const csv = (await run('feed', 'cost', '--format', 'csv', '--from', '2026-04-01', '--to', '2026-05-01')).trim().split('\n');
    expect(csv[0]).toBe(costEventCsvColumns.join(','));
    expect(csv.length - 1).toBe(events.filter((e) => e.occurredAt! >= '2026-04-01' && e.occurredAt! < '2026-05-01').length);
    const kpi = JSON.parse(await run('kpi', '--json', '--from', '2026-03', '--to', '2026-04'));
    const api = await (await get('/api/kpi?from=2026-03&to=2026-04', ADMIN)).json();
    expect(kpi).toEqual(api);
    expect(await run('kpi', '--from', '2026-03', '--to', '2026-04')).toMatch(/referrals\s+up 2 .* down 3/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('costFeedSummary (for the demo) builds the feed and gives its figures without patient data', async () => {
  const previous = process.env.YILIAN_FEED_PSEUDONYM_KEY;
  process.env.YILIAN_FEED_PSEUDONYM_KEY = SECRET;
  try {
    const summary = await costFeedSummary(hub.runtime.db, hub.config);
    const events = await allEvents();
    expect(summary).toMatchObject({ events: events.length, lastCursor: events.at(-1)!.cursor, patients: 3, referrals: { up: 2, down: 3, lateral: 0 } });
    expect(summary.byKind).toMatchObject({ encounter: 8, 'lab-test': 2, 'imaging-exam': 1, 'device-usage': 3, charge: 1, referral: 5, 'outreach-session': 3 });
    expect(summary.corrections).toBe(events.filter((e) => e.corrects).length);
  } finally {
    if (previous === undefined) delete process.env.YILIAN_FEED_PSEUDONYM_KEY;
    else process.env.YILIAN_FEED_PSEUDONYM_KEY = previous;
  }
});
