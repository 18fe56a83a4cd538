/**
 * The shared-resource index at scale, on real PostgreSQL: N devices reported by two members with
 * the same serial (their names shared by many other devices: "CT 7" fifty times over), N licensed
 * practitioners scheduled at both, N beds each. Every serial pair and every licence is one unified
 * record however common the name; an idle sync finds nothing; a changed report is matched alone.
 * Prints the figures (sync time, API latency); asserts only correctness. `SR_N=2000` for the
 * figures in docs/mpi.md (default 300 keeps the test quick). Rows are written straight to the
 * resource table (the pipeline's own output is covered by shared-resources.int.test.ts).
 */
import type { AddressInfo } from 'node:net';
import { createApi } from '../api/server';
import { syncSharedResources } from '../hub/resources/store';
import { startTestHub, type TestHub } from './support/hub';

const READER = 'reader-key-0123456789abcdef';
const N = Number(process.env.SR_N ?? 300);
let hub: TestHub;

beforeAll(async () => {
  hub = await startTestHub('sr_scale', { api: { port: 0, keys: [{ name: 'r', key: READER, scopes: ['patient.read'] }] }, members: ['a', 'b', 'c'].map((id) => ({ id, name: `Member ${id}`, tier: 'primary', channels: [] })) });
}, 60_000);
afterAll(async () => hub?.close());

test(`${N} shared devices, practitioners and beds from two members: one unified record each, however common the names`, async () => {
  const db = hub.runtime.db;
  const raw = await db.query<{ id: number }>(`INSERT INTO raw_message (member_id, channel_id, sha256, content, size_bytes, status) VALUES ('a', 'x', '\\x00', '\\x00', 1, 'processed') RETURNING id`);
  const rows: Array<[string, string, string, object]> = [];
  const han = (i: number) => `王${String.fromCharCode(0x4e00 + (i % 500))}${String.fromCharCode(0x4e00 + ((i * 7) % 900))}`;
  for (let i = 0; i < N; i++)
    for (const m of ['a', 'b']) {
      rows.push(['Device', `d-${m}-${i}`, m, { resourceType: 'Device', identifier: [{ system: `urn:yilian:${m}:SN`, value: `SN${i}` }], deviceName: [{ name: `CT ${i % 50}` }] }]);
      rows.push(['Practitioner', `p-${m}-${i}`, m, { resourceType: 'Practitioner', identifier: [{ system: 'urn:oid:2.16.156.10011.1.4', value: `L${i}` }], name: [{ text: han(i) }], meta: { extension: [{ url: 'https://yilian.example/fhir/StructureDefinition/segment-path', valueString: 'AIP-3' }] } }]);
      rows.push(['Location', `l-${m}-${i}`, m, { resourceType: 'Location', name: `W${i % 40} / ${i % 30} / ${i}`, physicalType: { coding: [{ code: 'bd' }] } }]);
    }
  for (let i = 0; i < rows.length; i += 1000) {
    const chunk = rows.slice(i, i + 1000);
    await db.query(`INSERT INTO resource (resource_type, id, member_id, content, raw_id) SELECT t, i, m, c::jsonb, $4 FROM unnest($1::text[], $2::text[], $3::text[], $5::text[]) AS x(t, i, m, c)`, [
      chunk.map((r) => r[0]),
      chunk.map((r) => r[1]),
      chunk.map((r) => r[2]),
      raw.rows[0]!.id,
      chunk.map((r) => JSON.stringify(r[3])),
    ]);
  }
  let t = Date.now();
  const first = await syncSharedResources(db);
  const firstMs = Date.now() - t;
  t = Date.now();
  const idle = await syncSharedResources(db);
  const idleMs = Date.now() - t;
  await db.query(`UPDATE resource SET version = version + 1, updated_at = clock_timestamp(), content = jsonb_set(content, '{deviceName,0,name}', '"renamed"') WHERE resource_type = 'Device' AND id = 'd-a-7'`);
  t = Date.now();
  const one = await syncSharedResources(db);
  const oneMs = Date.now() - t;
  const unified = Object.fromEntries((await db.query<{ resource_type: string; n: number }>(`SELECT resource_type, count(*)::int AS n FROM shared_unified WHERE merged_into IS NULL GROUP BY 1`)).rows.map((r) => [r.resource_type, r.n]));
  expect(unified).toEqual({ Device: N, Practitioner: N, Location: 2 * N, PractitionerRole: 2 * N, Organization: 3 });
  expect(idle.seen).toBe(0);
  expect(one.seen).toBe(1);

  const server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const latency = async (path: string) => {
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = process.hrtime.bigint();
      const res = await fetch(base + path, { headers: { authorization: `Bearer ${READER}` } });
      expect(res.status).toBe(200);
      await res.json();
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    return `p50 ${times[100]!.toFixed(1)} ms, p99 ${times[197]!.toFixed(1)} ms`;
  };
  const api = {
    nameSearch: await latency(`/fhir/Practitioner?name=${encodeURIComponent('王')}&_count=50`),
    identifierSearch: await latency(`/fhir/Device?identifier=${encodeURIComponent('urn:yilian:a:SN|SN77')}`),
    readByMemberId: await latency('/fhir/Device/d-b-77'),
  };
  await new Promise((r) => server.close(r));
  console.log(JSON.stringify({ N, resourceRows: rows.length, reports: first.seen, firstSyncMs: firstMs, reportsPerSecond: Math.round(first.seen / (firstMs / 1000)), idleSyncMs: idleMs, oneChangeSyncMs: oneMs, api }));
}, 1_800_000);
