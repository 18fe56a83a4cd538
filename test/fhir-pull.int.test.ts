/**
 * REST pull against a real FHIR server (Medplum's router over its MemoryRepository, served over
 * HTTP, loaded with the Synthea bulk export): every resource exactly once, then only what changed,
 * retries on 429/500, invalid resources quarantined while their neighbours go through, and the
 * resources in the hub's resource table with Provenance pointing at the source version.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Patient } from 'fhir/r4';
import { parseConfig, type FhirRestChannelConfig, type MemberConfig } from '../hub/config';
import { clientFor } from '../adapters/fhir/connect';
import { hubIdOf } from '../pipeline/stages/fhirConvert';
import { RestPuller } from '../adapters/fhir/restPull';
import { FhirIntake } from '../adapters/fhir/store';
import { PipelineWorker } from '../pipeline/worker';
import { startListeners } from '../cli/listeners';
import { TestFhirServer } from './support/fhirServer';
import { SHARED_DATA, startTestHub, waitFor, type TestHub } from './support/hub';

const TYPES = ['Patient', 'Encounter', 'Condition', 'Immunization', 'AllergyIntolerance'];

describe('FHIR REST pull', () => {
  let server: TestFhirServer;
  let hub: TestHub;
  let worker: PipelineWorker;
  let member: MemberConfig;
  let channel: FhirRestChannelConfig;
  let loaded: number;

  beforeAll(async () => {
    server = new TestFhirServer();
    loaded = await server.loadSynthea(TYPES);
    const baseUrl = await server.start();
    const config = { members: [{ id: 'emr', name: 'Lead EMR', tier: 'tertiary', channels: [{ id: 'emr-fhir', kind: 'fhir-rest', baseUrl, resourceTypes: TYPES, pageSize: 50, backoffMs: 50 }] }] };
    hub = await startTestHub('fhirpull', config);
    member = hub.config.members[0]!;
    channel = member.channels[0] as FhirRestChannelConfig;
    worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues, { reconcile: false });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.close();
    await hub?.close();
    await server?.stop();
  });

  const puller = () => new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, channel, clientFor(channel));
  const db = () => hub.runtime.db;
  const settled = () => waitFor(async () => (await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE status = 'queued'`)).rows[0]!.n === 0, 120_000, 'pipeline');

  test('a full pull stores every resource exactly once and merges it with provenance', async () => {
    const results = await puller().pullAll();
    const stored = results.reduce((n, r) => n + r.stored, 0);
    expect(stored).toBe(loaded);
    expect(results.every((r) => r.pages > 1 || r.stored <= 50)).toBe(true);
    const rows = await db().query<{ n: number; distinct_ids: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT split_part(control_id, '/_history/', 1))::int AS distinct_ids FROM raw_message WHERE channel_id = 'emr-fhir'`,
    );
    expect(rows.rows[0]).toEqual({ n: loaded, distinct_ids: loaded });
    await settled();
    const statuses = await db().query<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM raw_message GROUP BY 1`);
    expect(statuses.rows).toEqual([{ status: 'processed', n: loaded }]);
    const byType = await db().query<{ resource_type: string; n: number }>(`SELECT resource_type, count(*)::int AS n FROM resource WHERE resource_type = ANY($1) GROUP BY 1 ORDER BY 1`, [TYPES]);
    const sum = byType.rows.reduce((n, r) => n + r.n, 0);
    expect(sum).toBe(loaded);
    // Deterministic id, references rewritten, provenance at the source version.
    const [first] = (await server.repo.searchResources({ resourceType: 'Patient', count: 1 } as never)) as unknown as Patient[];
    const hubId = hubIdOf('emr', channel.baseUrl, 'Patient', first!.id!);
    const patient = await db().query<{ content: Patient; raw_id: number }>(`SELECT content, raw_id FROM resource WHERE resource_type = 'Patient' AND id = $1`, [hubId]);
    expect(patient.rows[0]!.content.meta?.source).toBe(`${channel.baseUrl}/Patient/${first!.id}/_history/${first!.meta!.versionId}`);
    const encounter = await db().query<{ content: { subject: { reference: string } } }>(`SELECT content FROM resource WHERE resource_type = 'Encounter' AND content->'subject'->>'reference' = $1 LIMIT 1`, [`Patient/${hubId}`]);
    expect(encounter.rows).toHaveLength(1);
    const provenance = await db().query<{ content: { entity: Array<{ what: { reference?: string } }> } }>(
      `SELECT content FROM resource WHERE resource_type = 'Provenance' AND content->'target' @> $1::jsonb`,
      [JSON.stringify([{ reference: `Patient/${hubId}` }])],
    );
    expect(provenance.rows[0]!.content.entity[0]!.what.reference).toBe(`${channel.baseUrl}/Patient/${first!.id}/_history/${first!.meta!.versionId}`);
    const sourcePatients = await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM source_patient WHERE member_id = 'emr'`);
    expect(sourcePatients.rows[0]!.n).toBe(13);
  });

  test('a second pull after updates stores only the changed resources (new versions)', async () => {
    const patients = (await server.repo.searchResources({ resourceType: 'Patient', count: 3 } as never)) as unknown as Patient[];
    for (const p of patients) await server.repo.updateResource({ ...p, gender: p.gender === 'male' ? 'female' : 'male' } as never);
    const before = (await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message`)).rows[0]!.n;
    const results = await puller().pullAll();
    expect(results.reduce((n, r) => n + r.stored, 0)).toBe(3);
    const after = await db().query<{ control_id: string; revision: number; flags: string[] }>(`SELECT control_id, revision, flags FROM raw_message WHERE id > (SELECT max(id) FROM raw_message) - 100 ORDER BY id DESC LIMIT 3`);
    expect((await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message`)).rows[0]!.n).toBe(before + 3);
    for (const row of after.rows) expect(row.control_id).toMatch(/^Patient\//);
    await settled();
    const changed = await db().query<{ version: number; gender: string }>(`SELECT version, content->>'gender' AS gender FROM resource WHERE resource_type = 'Patient' AND id = $1`, [hubIdOf('emr', channel.baseUrl, 'Patient', patients[0]!.id!)]);
    expect(changed.rows[0]).toEqual({ version: 2, gender: patients[0]!.gender === 'male' ? 'female' : 'male' });
  });

  test('429 with Retry-After and 500 are retried; the pull completes', async () => {
    const p = (await server.repo.searchResources({ resourceType: 'Patient', count: 1 } as never)) as unknown as Patient[];
    await server.repo.updateResource({ ...p[0]!, birthDate: '1950-01-01' } as never);
    server.faults.push({ path: /\/fhir\/Patient/, status: 429, retryAfter: '1', times: 2 }, { path: /\/fhir\/Patient/, status: 500, times: 1 });
    const client = clientFor(channel);
    const started = Date.now();
    const result = await new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, channel, client).pullType('Patient');
    expect(result.stored).toBe(1);
    expect(client.retries).toMatchObject({ status429: 2, status5xx: 1 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000); // two Retry-After: 1
    expect(server.faults.every((f) => f.times === 0)).toBe(true);
  });

  test('a request that times out is retried', async () => {
    const p = (await server.repo.searchResources({ resourceType: 'Patient', count: 1 } as never)) as unknown as Patient[];
    await server.repo.updateResource({ ...p[0]!, birthDate: '1951-01-01' } as never);
    const quick = { ...channel, timeoutMs: 400, backoffMs: 400 };
    const client = clientFor(quick);
    server.delayMs = 3000;
    const restore = setTimeout(() => (server.delayMs = 0), 600);
    try {
      const result = await new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, quick, client).pullType('Patient');
      expect(result.stored).toBe(1);
      expect(client.retries.network).toBeGreaterThanOrEqual(1);
    } finally {
      clearTimeout(restore);
      server.delayMs = 0;
    }
  });

  test('a 4xx is not retried and leaves the cursor where it was', async () => {
    const cursorBefore = (await db().query<{ last_updated: string }>(`SELECT last_updated FROM fhir_cursor WHERE resource_type = 'Patient'`)).rows[0]!.last_updated;
    server.faults.push({ path: /\/fhir\/Patient/, status: 403, times: 1 });
    const client = clientFor(channel);
    await expect(new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, channel, client).pullType('Patient')).rejects.toMatchObject({ code: 'invalid' });
    expect(client.retries).toMatchObject({ status429: 0, status5xx: 0 });
    expect((await db().query<{ last_updated: string }>(`SELECT last_updated FROM fhir_cursor WHERE resource_type = 'Patient'`)).rows[0]!.last_updated).toBe(cursorBefore);
  });

  test('invalid resources are quarantined with an OperationOutcome; their neighbours are imported', async () => {
    const [a, b, c] = (await server.repo.searchResources({ resourceType: 'Condition', count: 3 } as never)) as unknown as Array<Record<string, unknown>>;
    // The router stores what it is given here: make two of three invalid R4 (an unknown element, a bad code).
    await server.repo.updateResource({ ...a!, colour: 'blue' } as never);
    await server.repo.updateResource({ ...b!, recordedDate: 'yesterday' } as never);
    await server.repo.updateResource({ ...c!, note: [{ text: 'still valid' }] } as never);
    const result = await puller().pullType('Condition');
    expect(result.stored).toBe(3);
    await settled();
    const rows = await db().query<{ status: string; code: string | null; reason: string | null; outcome: { issue: Array<{ diagnostics: string; expression?: string[] }> } | null }>(
      `SELECT r.status, q.code, q.reason, q.outcome FROM raw_message r LEFT JOIN quarantine q ON q.raw_id = r.id
        WHERE r.id IN (SELECT id FROM raw_message WHERE control_id LIKE 'Condition/%' ORDER BY id DESC LIMIT 3) ORDER BY r.id`,
    );
    expect(rows.rows.map((r) => r.status).sort()).toEqual(['processed', 'quarantined', 'quarantined']);
    const reasons = rows.rows.filter((r) => r.status === 'quarantined').map((r) => r.reason).join('\n');
    expect(reasons).toMatch(/Condition\.colour: unknown element 'colour'/);
    expect(reasons).toMatch(/Condition\.recordedDate/);
    expect(rows.rows.find((r) => r.status === 'quarantined')!.outcome!.issue[0]!.expression).toBeDefined();
    const valid = await db().query<{ note: string }>(`SELECT content->'note'->0->>'text' AS note FROM resource WHERE resource_type = 'Condition' AND id = $1`, [hubIdOf('emr', channel.baseUrl, 'Condition', String(c!.id))]);
    expect(valid.rows[0]!.note).toBe('still valid');
  });

  test('resources updated between pages (offset paging shifts the rest) are not lost: the sweep is run again', async () => {
    // Page 1 is read; then three of its resources are updated, so every later one moves up three
    // places and three would fall between page boundaries.
    const page1 = (await server.repo.searchResources({ resourceType: 'Encounter', count: 50, sortRules: [{ code: '_lastUpdated' }] } as never)) as unknown as Array<{ id: string; status: string }>;
    let pagesServed = 0;
    server.afterPage = async (url) => {
      if (!url.startsWith('/fhir/Encounter')) return;
      pagesServed++;
      if (pagesServed === 2) for (const e of page1.slice(0, 3)) await server.repo.updateResource({ ...e, status: 'cancelled' } as never);
    };
    const encounterChannel = { ...channel, resourceTypes: ['Encounter'] };
    const beforeIds = (await db().query<{ n: number }>(`SELECT count(DISTINCT split_part(control_id, '/_history/', 1))::int AS n FROM raw_message WHERE control_id LIKE 'Encounter/%'`)).rows[0]!.n;
    // Another member reading the same server: its own dedupe scope and cursor, so everything is read and stored again from the start.
    const freshChannel = { ...encounterChannel, id: 'emr-fhir-2' };
    const member2 = { ...member, id: 'emr2' };
    const result = await new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member2, freshChannel, clientFor(freshChannel)).pullType('Encounter');
    server.afterPage = undefined;
    const seen = await db().query<{ n: number }>(`SELECT count(DISTINCT split_part(control_id, '/_history/', 1))::int AS n FROM raw_message WHERE channel_id = 'emr-fhir-2'`);
    expect(beforeIds).toBe(1215);
    expect(seen.rows[0]!.n).toBe(1215);
    expect(result.sweeps).toBeGreaterThanOrEqual(2);
    const updated = await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message WHERE channel_id = 'emr-fhir-2' AND split_part(control_id, '/_history/', 1) = ANY($1)`, [page1.slice(0, 3).map((e) => `Encounter/${e.id}`)]);
    expect(updated.rows[0]!.n).toBe(6); // the first version and the updated one of each
  });

  test('Observations from the FHIR-Converter expected Bundles, loaded into the server, are pulled once and merged', async () => {
    const dir = path.join(SHARED_DATA, 'hl7v2/fhir-converter/expected');
    const ids = new Set<string>();
    for (const file of readdirSync(dir)) {
      const bundle = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as { entry?: Array<{ resource?: { resourceType?: string; id?: string } }> };
      for (const entry of bundle.entry ?? []) {
        if (entry.resource?.resourceType !== 'Observation' || !entry.resource.id) continue;
        await server.repo.updateResource(entry.resource as never);
        ids.add(entry.resource.id);
      }
    }
    expect(ids.size).toBeGreaterThan(100);
    const observations = { ...channel, resourceTypes: ['Observation'] };
    const result = await new RestPuller(hub.runtime.db, new FhirIntake(hub.runtime.db, hub.runtime.queues), member, observations, clientFor(observations)).pullType('Observation');
    expect(result.stored).toBe(ids.size);
    await settled();
    const merged = await db().query<{ n: number }>(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Observation' AND id = ANY($1)`, [
      [...ids].map((id) => hubIdOf('emr', channel.baseUrl, 'Observation', id)),
    ]);
    expect(merged.rows[0]!.n).toBe(ids.size);
  });

  test('yilian serve pulls a channel with intervalSeconds on its schedule', async () => {
    const config = parseConfig({ members: [{ id: 'emr3', name: 'EMR 3', tier: 'secondary', channels: [{ id: 'scheduled', kind: 'fhir-rest', baseUrl: channel.baseUrl, resourceTypes: ['Patient'], intervalSeconds: 1 }] }] });
    const stops = await startListeners({ ...hub.runtime, config }, () => undefined);
    try {
      const before = server.requests.length;
      await waitFor(async () => server.requests.slice(before).filter((r) => r.startsWith('GET /fhir/Patient')).length >= 2, 10_000, 'two scheduled pulls');
      const stored = await db().query<{ n: number }>(`SELECT count(DISTINCT control_id)::int AS n FROM raw_message WHERE member_id = 'emr3'`);
      expect(stored.rows[0]!.n).toBe(13);
    } finally {
      for (const stop of stops) await stop();
    }
  });
});
