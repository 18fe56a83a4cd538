/**
 * The FHIR API as real FHIR clients use it (issue 22): fhir-kit-client and Medplum's MedplumClient
 * (@medplum/core), against the hub's HTTP server on a free port, with data ingested through the
 * real pipeline on real PostgreSQL — capability read, searches paged to the end by following the
 * server's links, read, vread, history, $everything and $translate (both clients send
 * application/fhir+json).
 */
import { MedplumClient } from '@medplum/core';
import type { Bundle, CapabilityStatement, Parameters, Patient } from 'fhir/r4';
import type { Server } from 'node:http';
import type { MemberConfig } from '../hub/config';
import { encodeAs } from '../cli/simulate';
import { runPipeline } from '../pipeline/runner';
import { syncPatientIndex } from '../hub/mpi/sync';
import { listenApi, startTestHub, type TestHub } from './support/hub';

const READER = 'clients-reader-0123456789abc';
const TERM = 'clients-terminology-0123456789';
const PEOPLE = 7;
let hub: TestHub;
let server: Server;
let base: string;
let control = 0;

function messages(i: number): string[] {
  const mrn = `C${i}`;
  const pid = `PID|1||${mrn}^^^M1^MR||${['赵', '钱', '孙', '李', '周', '吴', '郑'][i]}^${['一', '二', '三', '四', '五', '六', '七'][i]}||1980010${i + 1}|${i % 2 ? 'M' : 'F'}|||人民路${i}号^^杭州市||1380000000${i}`;
  const adt = [`MSH|^~\\&|HIS|M1|YILIAN|HUB|20261101080000||ADT^A04^ADT_A01|K${++control}|P|2.5|||||CHN|UNICODE UTF-8`, `EVN|A04|20261101080000`, pid, `PV1|1|O|内科^^^M1`].join('\r');
  const labs = ['HGB', 'WBC', 'PLT'].map((code, k) =>
    [
      `MSH|^~\\&|LIS|M1|YILIAN|HUB|2026110${k + 2}090000||ORU^R01^ORU_R01|K${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
      pid,
      `OBR|1|ORD${control}|FIL${control}|CBC^血常规^L|||2026110${k + 2}090000`,
      `OBX|1|NM|${code}^${code}^L||${100 + i}|g/L|115-150|N|||F|||2026110${k + 2}090000`,
    ].join('\r'),
  );
  return [adt, ...labs].map((m) => m + '\r');
}

beforeAll(async () => {
  hub = await startTestHub('fhir_clients', {
    members: [{ id: 'm1', name: 'Member 1', tier: 'tertiary', channels: [{ id: 'his', kind: 'mllp', port: 0 }] }],
    api: { port: 0, keys: [{ name: 'app', key: READER, scopes: ['patient.read'] }, { name: 'lis', key: TERM, scopes: ['integration'] }] },
  });
  const member = hub.config.members[0] as MemberConfig;
  const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
  for (let i = 0; i < PEOPLE; i++) {
    for (const text of messages(i)) {
      const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(text, 'UTF-8') });
      expect(await runPipeline({ db: hub.runtime.db, config: hub.config }, stored.rawId, true)).toBe('processed');
    }
  }
  await syncPatientIndex(hub.runtime.db);
  ({ server, base } = await listenApi(hub.runtime));
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await hub?.close();
});

describe('fhir-kit-client', () => {
  // fhir-kit-client 2.x is ESM-only (jest maps it to its dist, see jest.config.js).
  const client = async (token = READER) => new (await import('fhir-kit-client')).Client({ baseUrl: `${base}/fhir`, bearerToken: token });

  test('capability, search paged to the end, read, vread, history, $everything, $translate', async () => {
    const fhir = await client();
    const cs = (await fhir.capabilityStatement()) as unknown as CapabilityStatement;
    expect(cs.fhirVersion).toBe('4.0.1');
    expect(cs.rest![0]!.resource!.find((r) => r.type === 'Patient')!.searchParam!.map((p) => p.name)).toContain('name');

    let bundle = (await fhir.search({ resourceType: 'Observation', searchParams: { code: 'HGB', _count: 2 } })) as unknown as Bundle;
    expect(bundle.total).toBeUndefined(); // not cheap (no patient): omitted unless asked
    const ids: string[] = [];
    for (;;) {
      ids.push(...(bundle.entry ?? []).map((e) => e.resource!.id!));
      if (!bundle.link?.some((l) => l.relation === 'next')) break;
      bundle = (await fhir.nextPage({ bundle: bundle as never })) as unknown as Bundle;
    }
    expect(new Set(ids).size).toBe(PEOPLE);

    const patients = (await fhir.search({ resourceType: 'Patient', searchParams: { name: 'zhao' } })) as unknown as Bundle<Patient>;
    expect(patients.total).toBe(1);
    const patient = patients.entry![0]!.resource!;
    expect(patient.name![0]!.family).toBe('赵');
    const read = (await fhir.read({ resourceType: 'Patient', id: patient.id! })) as unknown as Patient;
    expect(read.meta?.versionId).toBe('1');
    const v1 = (await fhir.vread({ resourceType: 'Patient', id: patient.id!, version: '1' })) as unknown as Patient;
    expect(v1.id).toBe(patient.id);
    const history = (await fhir.history({ resourceType: 'Patient', id: patient.id! })) as unknown as Bundle;
    expect(history.type).toBe('history');
    expect(history.entry).toHaveLength(1);

    const obs = (await fhir.search({ resourceType: 'Observation', searchParams: { patient: patient.id!, code: 'WBC' } })) as unknown as Bundle;
    const obsId = obs.entry![0]!.resource!.id!;
    expect(((await fhir.vread({ resourceType: 'Observation', id: obsId, version: '1' })) as unknown as { id: string }).id).toBe(obsId);
    expect(((await fhir.history({ resourceType: 'Observation', id: obsId })) as unknown as Bundle).entry).toHaveLength(1);

    const everything = (await fhir.operation({ name: '$everything', resourceType: 'Patient', id: patient.id!, method: 'GET' })) as unknown as Bundle;
    expect(everything.entry!.filter((e) => e.resource!.resourceType === 'Observation')).toHaveLength(3);

    const translated = (await (await client(TERM)).operation({
      name: '$translate',
      resourceType: 'ConceptMap',
      input: { resourceType: 'Parameters', parameter: [{ name: 'system', valueUri: 'urn:yilian:county:L' }, { name: 'code', valueCode: 'HGB' }, { name: 'targetsystem', valueUri: 'http://loinc.org' }] },
    })) as unknown as Parameters;
    expect(translated.parameter!.find((p) => p.name === 'result')!.valueBoolean).toBe(true);
  });

  test('errors reach the client as OperationOutcomes with their status', async () => {
    const fhir = await client();
    await expect(fhir.read({ resourceType: 'Patient', id: 'nobody' })).rejects.toMatchObject({ response: { status: 404, data: { resourceType: 'OperationOutcome' } } });
    await expect(fhir.delete({ resourceType: 'Patient', id: 'nobody' })).rejects.toMatchObject({ response: { status: 405, data: { resourceType: 'OperationOutcome' } } });
    await expect((await client('wrong-key-000000000000000')).read({ resourceType: 'Patient', id: 'x' })).rejects.toMatchObject({ response: { status: 401, data: { resourceType: 'OperationOutcome' } } });
  });
});

describe('MedplumClient (@medplum/core)', () => {
  const medplum = (token = READER) => {
    const client = new MedplumClient({ baseUrl: `${base}/`, fhirUrlPath: 'fhir', fetch: globalThis.fetch, cacheTime: 0 });
    client.setAccessToken(token);
    return client;
  };

  test('capability, search paged to the end, read, vread, history, $everything, $translate', async () => {
    const client = medplum();
    const cs = await client.get<CapabilityStatement>(client.fhirUrl('metadata'));
    expect(cs.resourceType).toBe('CapabilityStatement');

    const ids: string[] = [];
    let pages = 0;
    for await (const page of client.searchResourcePages('Observation', { code: 'PLT', _count: '3' })) {
      pages++;
      ids.push(...page.map((o) => o.id!));
    }
    expect(pages).toBe(3);
    expect(new Set(ids).size).toBe(PEOPLE);

    const all = await client.searchResources('Patient', { _count: '100', _sort: 'birthdate' });
    expect(all).toHaveLength(PEOPLE);
    expect(all.bundle.total).toBe(PEOPLE);
    const qian = await client.searchOne('Patient', { name: '钱' });
    expect(qian?.name?.[0]?.given).toEqual(['二']);
    const read = await client.readResource('Patient', qian!.id!);
    expect(read.id).toBe(qian!.id);
    expect((await client.readVersion('Patient', qian!.id!, '1')).id).toBe(qian!.id);
    const history = await client.readHistory('Patient', qian!.id!);
    expect(history.entry).toHaveLength(1);

    const everything = await client.readPatientEverything(qian!.id!);
    expect(everything.entry!.filter((e) => e.resource!.resourceType === 'Observation')).toHaveLength(3);
    const obs = everything.entry!.find((e) => e.resource!.resourceType === 'Observation')!.resource!;
    expect((await client.readVersion('Observation', obs.id!, '1')).id).toBe(obs.id);
    expect((await client.readHistory('Observation', obs.id!)).entry).toHaveLength(1);

    const translated: Parameters = await medplum(TERM).post(client.fhirUrl('ConceptMap', '$translate'), {
      resourceType: 'Parameters',
      parameter: [{ name: 'system', valueUri: 'urn:yilian:county:L' }, { name: 'code', valueCode: 'HGB' }, { name: 'targetsystem', valueUri: 'http://loinc.org' }],
    });
    expect(translated.parameter!.find((p) => p.name === 'result')!.valueBoolean).toBe(true);
  });

  test('errors reach the client as OperationOutcomes', async () => {
    await expect(medplum().readResource('Patient', 'nobody')).rejects.toMatchObject({ outcome: { resourceType: 'OperationOutcome', issue: [expect.objectContaining({ code: 'not-found' })] } });
  });
});
