/**
 * Issue 21 on real PostgreSQL through the real pipeline (HL7 v2 ORU → parse, convert, map, merge →
 * patient index → recognition index → check). Two members of one alliance report glucose in
 * mmol/L; the committee's ConceptMaps map the city hospital's local GLU to the MASS code 2345-7
 * and the town hospital's GLU to the substance code 14749-6. Each ORU's OBR-4 names the same test
 * as its OBX (a single-test order), so its DiagnosticReport contains its Observation.
 *
 * Shows: the city Observation is converted to mg/dL through the molar mass, original kept, not
 * tagged unmapped; asking for 2345-7 recognises the town's 14749-6 result converted to mg/dL (and
 * asking for 14749-6 the city's, back in mmol/L), originals kept; no DiagnosticReport is a result
 * (not in the index, not refused), whichever order the report and its Observation are indexed in,
 * and migration 17's statement removes rows derived before.
 */
import { simAdt, simOru, type SimPatient } from '../cli/simulate';
import { exportLinks } from '../hub/mpi/review';
import { makeResidentId } from '../hub/mpi/residentId';
import { DELETE_CONTAINER_REPORTS_SQL, indexEntriesOf, syncRecognitionIndex } from '../hub/recognition/resultIndex';
import { recognitionCheck } from '../hub/recognition/check';
import { listRules } from '../hub/recognition/rules';
import { importConceptMaps } from '../hub/terminology/versions';
import { localLabMap } from '../mappings/terminology/build';
import { MAPPING_STATUS_SYSTEM, ORIGINAL_QUANTITY_URL } from '../mappings/terminology/systems';
import { ingestResults } from './support/results';
import { startTestHub, type TestHub } from './support/hub';

const members = [
  { id: 'city', name: 'City Central Hospital', tier: 'tertiary' },
  { id: 'town', name: 'Town Hospital', tier: 'secondary' },
].map((m) => ({ ...m, channels: [{ id: 'lis', kind: 'mllp', port: 0 }], conversion: { residentIdField: 19 } }));
const recognition = {
  currency: 'CNY',
  accreditation: [
    { member: 'city', scheme: 'NCCL-EQA', validFrom: '2026-01-01', validTo: '2026-12-31' },
    // The town lab's certificate names the substance code only: an EQA scheme assesses the analyte,
    // so it covers the town's glucose whichever code of the pair it is asked under.
    { member: 'town', scheme: 'NCCL-EQA', codes: ['14749-6'], validFrom: '2026-01-01', validTo: '2026-12-31' },
  ],
  priceLists: [],
};
const channel = { id: 'lis', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
const facility: Record<string, string> = { city: 'CITY', town: 'TOWN' };
const mrnOf: Record<string, string> = { city: 'Y1', town: 'T1' };
const rid = makeResidentId('330106', '19610203', 457, 'M');
const person = (mrn: string): SimPatient => ({ mrn, family: '王', given: '建国', birth: '19610203', sex: 'M' });
let hub: TestHub;
let control = 0;
let golden: string;

function adt(member: string): string {
  const text = simAdt({ controlId: `A${++control}`, patient: person(mrnOf[member]!), sendingFacility: facility[member], time: '20261101080000', charset: 'UNICODE UTF-8' }, 'A04');
  return text.replace(/^(PID\|[^\r]*)/m, (pid) => {
    const fields = pid.split('|');
    while (fields.length < 20) fields.push('');
    fields[19] = rid;
    return fields.join('|');
  });
}

/** A single-test glucose order: OBR-4 and OBX-3 both the member's local GLU (no OBR-25, as the LIS sends it). */
function glucoseOru(member: string, time: string, value: string, unit: string): string {
  return simOru({ controlId: `R${++control}`, patient: person(mrnOf[member]!), sendingFacility: facility[member], time, charset: 'UNICODE UTF-8' }, [{ code: 'GLU', name: '葡萄糖', value, unit, range: '3.9-6.1' }]).replace(
    'CBC^血常规^L',
    'GLU^葡萄糖^L',
  );
}

const ingest = (messages: Array<[string, string]>) => ingestResults(hub, messages, channel);

const indexRows = async () =>
  (await hub.runtime.db.query<{ resource_type: string; resource_id: string; code: string; member_id: string; value: number; unit: string; original_value: number; original_unit: string }>(
    `SELECT resource_type, resource_id, code, member_id, value, unit, original_value, original_unit FROM recognition_result ORDER BY resource_type, resource_id, code`,
  )).rows;

beforeAll(async () => {
  hub = await startTestHub('recognition_analytes', { members, recognition });
  // The committee's maps for these two members (approved versions, as an import records them).
  await importConceptMaps(hub.runtime.db, [localLabMap('city', 'L', [['GLU', '葡萄糖', '2345-7']]), localLabMap('town', 'L', [['GLU', '葡萄糖', '14749-6']])], 'committee');
  // Times are the members' local time (+08:00).
  await ingest([
    ['city', adt('city')],
    ['town', adt('town')],
    ['town', glucoseOru('town', '20261120093000', '6.1', 'mmol/L')],
    ['city', glucoseOru('city', '20261121093000', '7.43', 'mmol/L')],
  ]);
  const links = (await exportLinks(hub.runtime.db)).filter((l) => ['Y1', 'T1'].includes(l.mrn));
  expect(links).toHaveLength(2);
  expect(new Set(links.map((l) => l.patient)).size).toBe(1);
  golden = links[0]!.patient;
}, 120_000);

afterAll(async () => {
  await hub?.close();
});

test('mmol/L under the mass code 2345-7 is converted to mg/dL through the molar mass, the original kept, not tagged unmapped', async () => {
  const [obs] = (
    await hub.runtime.db.query<{ content: any }>(`SELECT content FROM resource WHERE resource_type = 'Observation' AND member_id = 'city'`)
  ).rows.map((r) => r.content);
  expect(obs.code.coding.map((c: { code: string }) => c.code)).toEqual(['GLU', '2345-7']);
  expect(obs.valueQuantity.value).toBeCloseTo(7.43 * 18.0156, 2); // 133.856
  expect(obs.valueQuantity).toMatchObject({ unit: 'mg/dL', code: 'mg/dL' });
  expect(obs.valueQuantity.extension).toEqual([{ url: ORIGINAL_QUANTITY_URL, valueQuantity: { value: 7.43, unit: 'mmol/L' } }]);
  expect(obs.meta.tag ?? []).not.toContainEqual(expect.objectContaining({ system: MAPPING_STATUS_SYSTEM, code: 'unmapped' }));
  // The worklist did not get the unit either.
  const unmapped = await hub.runtime.db.query(`SELECT 1 FROM unmapped_code WHERE member_id = 'city'`);
  expect(unmapped.rowCount).toBe(0);
});

test('the index holds the Observations only: each report contains its Observation of the same code', async () => {
  const rows = await indexRows();
  expect(rows.map((r) => [r.resource_type, r.member_id, r.code])).toEqual(
    expect.arrayContaining([
      ['Observation', 'city', '2345-7'],
      ['Observation', 'town', '14749-6'],
    ]),
  );
  expect(rows.filter((r) => r.resource_type === 'DiagnosticReport')).toEqual([]);
  expect(rows).toHaveLength(2);
  // The reports are stored, with the code of their Observation: they are left out, not missing.
  const reports = (await hub.runtime.db.query<{ content: any; member_id: string }>(`SELECT content, member_id FROM resource WHERE resource_type = 'DiagnosticReport' ORDER BY member_id`)).rows;
  expect(reports.map((r) => indexEntriesOf(r.content, r.member_id).map((e) => e.code))).toEqual([['2345-7'], ['14749-6']]);
});

test('asking for 2345-7 recognises the town’s 14749-6 result in mg/dL (original kept); asking for 14749-6 the city’s in mmol/L; no report is a result', async () => {
  const at = '2026-11-22T02:00:00Z';
  const mass = (await recognitionCheck(hub.runtime.db, hub.config, { patient: golden, tests: ['2345-7'], at, requestingMember: 'city' }, 'test')).tests[0]!;
  expect(mass.refused).toEqual([]);
  const byMember = Object.fromEntries(mass.recognisable.map((r) => [r.member, r]));
  expect(Object.keys(byMember).sort()).toEqual(['city', 'town']);
  expect(byMember.town).toMatchObject({ resourceType: 'Observation', code: '14749-6', tier: 'secondary', original: { value: 6.1, unit: 'mmol/L' }, accreditation: { scheme: 'NCCL-EQA' } });
  expect(byMember.town!.value.unit).toBe('mg/dL');
  expect(byMember.town!.value.value).toBeCloseTo(6.1 * 18.0156, 2); // 109.895
  // Judged by the asked code's rule (2345-7: 7 days).
  expect(byMember.town!.expires).toBe('2026-11-27T01:30:00.000Z');
  expect(byMember.city).toMatchObject({ code: '2345-7', value: { unit: 'mg/dL' }, original: { value: 7.43, unit: 'mmol/L' } });

  const substance = (await recognitionCheck(hub.runtime.db, hub.config, { patient: golden, tests: ['14749-6'], at, requestingMember: 'town' }, 'test')).tests[0]!;
  expect(substance.refused).toEqual([]);
  const city = substance.recognisable.find((r) => r.member === 'city')!;
  expect(city).toMatchObject({ code: '2345-7', value: { unit: 'mmol/L' }, original: { value: 7.43, unit: 'mmol/L' } });
  expect(city.value.value).toBeCloseTo(7.43, 4);
  expect(substance.recognisable.find((r) => r.member === 'town')).toMatchObject({ code: '14749-6', value: { value: 6.1, unit: 'mmol/L' } });
  // Neither recognisable nor refused: the reports (status not final) are containers, not results.
  const reports = new Set((await hub.runtime.db.query<{ id: string }>(`SELECT id FROM resource WHERE resource_type = 'DiagnosticReport'`)).rows.map((r) => r.id));
  expect(reports.size).toBe(2);
  for (const t of [mass, substance]) expect([...t.recognisable, ...t.refused].filter((r) => reports.has(r.resourceId))).toEqual([]);

  // A local code of the other member resolves to its code, and still finds the pair.
  const local = (await recognitionCheck(hub.runtime.db, hub.config, { patient: golden, tests: [{ member: 'city', code: 'GLU' }], at, requestingMember: 'town' }, 'test')).tests[0]!;
  expect(local.code).toBe('2345-7');
  expect(local.recognisable.map((r) => r.member).sort()).toEqual(['city', 'town']);
});

test('whichever order a report and its Observation are indexed in, the report gets no row; a full resync changes nothing', async () => {
  const before = await indexRows();
  for (const later of ['DiagnosticReport', 'Observation']) {
    // Make one side newer, so a page of one resource sees the other side first.
    await hub.runtime.db.query(`UPDATE resource SET updated_at = clock_timestamp() WHERE resource_type = $1`, [later]);
    await hub.runtime.db.query(`TRUNCATE recognition_result`);
    await syncRecognitionIndex(hub.runtime.db, { full: true, batch: 1 });
    expect([later, await indexRows()]).toEqual([later, before]);
  }
});

test('migration 17’s statement deletes report rows derived before the rule (and nothing else)', async () => {
  const before = await indexRows();
  const [report] = (await hub.runtime.db.query<{ content: any; member_id: string; updated: string }>(`SELECT content, member_id, updated_at::text AS updated FROM resource WHERE resource_type = 'DiagnosticReport' AND member_id = 'city'`)).rows;
  const [entry] = indexEntriesOf(report!.content, report!.member_id);
  // The row the sync used to write for the report (status not final: the check listed it as refused).
  await hub.runtime.db.query(
    `INSERT INTO recognition_result (resource_type, resource_id, code, member_id, patient_id, effective_at, status, source_updated_at) VALUES ('DiagnosticReport', $1, $2, $3, $4, $5, $6, $7)`,
    [entry!.resourceId, entry!.code, entry!.memberId, entry!.patientId, entry!.effectiveAt, entry!.status, report!.updated],
  );
  expect((await indexRows()).length).toBe(before.length + 1);
  await hub.runtime.db.query(DELETE_CONTAINER_REPORTS_SQL);
  expect(await indexRows()).toEqual(before);
  const applied = await hub.runtime.db.query(`SELECT 1 FROM schema_migration WHERE id = 17`);
  expect(applied.rowCount).toBe(1);
});

test('the new default rules are loaded: a pair’s codes share one window', async () => {
  const rules = new Map((await listRules(hub.runtime.db)).map((r) => [r.code, r]));
  for (const [a, b, days] of [
    ['2571-8', '14927-8', 30],
    ['3094-0', '14937-7', 14],
    ['3084-1', '14933-6', 30],
    ['1975-2', '14631-6', 14],
    ['17861-6', '2000-8', 7],
    ['19123-9', '2601-3', 7],
    ['2777-1', '14879-1', 7],
    ['2085-9', '14646-4', 30],
    ['2089-1', '22748-8', 30],
    ['2498-4', '14798-3', 30],
  ] as const) {
    expect([a, rules.get(a)?.content.windowDays, rules.get(b)?.content.windowDays]).toEqual([a, days, days]);
    expect(rules.get(a)?.validFrom).toBe('-infinity');
  }
});
