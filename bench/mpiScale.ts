/**
 * Patient-index throughput on PostgreSQL and `$everything` latency. Loads N generated source
 * patients (Chinese noise, bench/mpiData.ts) into source_patient, times `syncPatientIndex` (records
 * matched per second; the 1,000,000-record target is < 10 minutes on 2 cores) and checks the
 * linked result against the truth; then times `GET /fhir/Patient/{id}/$everything` for a golden
 * patient with 1,000 resources (target p99 < 100 ms).
 * Run: `npx tsc -p . && node --expose-gc dist/bench/mpiScale.js [--records N] [--batch N] [--everything-requests N]`.
 */
import type { AddressInfo } from 'node:net';
import { createApi } from '../api/server';
import { parseConfig } from '../hub/config';
import { exportLinks } from '../hub/mpi/review';
import { syncPatientIndex } from '../hub/mpi/sync';
import { generateChineseSet } from './mpiData';
import { benchHub, percentile } from './support';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, fallback: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback);
  const target = arg('--records', 50_000);
  // The sync's batch: 2,000, as `yilian mpi sync`; the background sync keeps 500 (a registration waits at most a round).
  const batch = arg('--batch', 2000);
  const requests = arg('--everything-requests', 300);
  const hub = await benchHub('mpi');
  try {
    const db = hub.runtime.db;
    const records = generateChineseSet({ persons: Math.ceil(target / 1.8), seed: 5 }).slice(0, target);
    await db.query(`INSERT INTO raw_message (id, member_id, channel_id, sha256, content, size_bytes, status) VALUES (1, 'bench', 'bench', '\\x00', '\\x00', 1, 'processed')`);
    const load0 = Date.now();
    for (let i = 0; i < records.length; i += 5000) {
      const chunk = records.slice(i, i + 5000).map((r) => {
        const [member, n] = r.id.split(':');
        const { id: _id, entity: _e, ...demo } = r;
        void _id;
        void _e;
        return { member_id: member, mrn: `MRN${n}`, demographics: Object.fromEntries(Object.entries(demo).filter(([, v]) => v !== undefined)) };
      });
      await db.query(
        `INSERT INTO source_patient (member_id, mrn, demographics, event_time, last_raw_id)
         SELECT member_id, mrn, demographics, now(), 1 FROM jsonb_to_recordset($1::jsonb) AS x(member_id text, mrn text, demographics jsonb)`,
        [JSON.stringify(chunk)],
      );
    }
    const loadSeconds = (Date.now() - load0) / 1000;
    const t0 = process.hrtime.bigint();
    // Progress every 100,000 records: the rate falls as blocks fill, and a 1M run is long.
    let reported = 0;
    const summary = await syncPatientIndex(db, {
      batch,
      onRound: (s) => {
        if (s.matched - reported < 100_000) return;
        reported = s.matched;
        process.stdout.write(`  ${s.matched} matched after ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s\n`);
      },
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const shared = await db.query<{ field: string; n: number; max: number }>(`SELECT field, count(*)::int AS n, max(people)::int AS max FROM mpi_shared_value WHERE people > 4 GROUP BY field ORDER BY field`);
    process.stdout.write(`values more than a household carries: ${shared.rows.map((r) => `${r.field} ${r.n} (at most ${r.max} people)`).join(', ') || 'none'}\n`);
    // Accuracy of what was stored (pairwise, review = not linked).
    const truth = new Map(records.map((r) => [`${r.id.split(':')[0]}|MRN${r.id.split(':')[1]}`, r.entity]));
    const links = await exportLinks(db);
    const pairs = (k: number) => (k * (k - 1)) / 2;
    const count = (keys: string[]) => {
      const m = new Map<string, number>();
      for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
      return [...m.values()].reduce((a, k) => a + pairs(k), 0);
    };
    const tp = count(links.map((l) => `${l.patient}\u0000${truth.get(`${l.member}|${l.mrn}`)}`));
    const predicted = count(links.map((l) => l.patient));
    const actual = count(links.map((l) => truth.get(`${l.member}|${l.mrn}`)!));
    // The issue's review share: source records with an open review item at the end (summary.review
    // counts the items raised, including those a later join or re-check settled).
    const inReview = (await db.query<{ n: number }>(`SELECT count(DISTINCT (member_id, mrn))::int AS n FROM mpi_link WHERE state = 'POSSIBLE_MATCH'`)).rows[0]!.n;
    const precision = tp / predicted;
    const recall = tp / actual;
    process.stdout.write(
      `patient index: ${records.length} source patients (loaded in ${loadSeconds.toFixed(1)} s) matched in ${seconds.toFixed(1)} s (batch ${batch}) = ${Math.round(records.length / seconds)} records/s; ` +
        `created ${summary.created}, linked ${summary.linked}, review items raised ${summary.review}, records in review ${inReview} (${((100 * inReview) / records.length).toFixed(2)} %), golden patients joined by bridges ${summary.joined}; precision ${precision.toFixed(4)} recall ${recall.toFixed(4)} F1 ${((2 * precision * recall) / (precision + recall)).toFixed(4)}; ` +
        `1,000,000 at this rate: ${((1_000_000 / (records.length / seconds)) / 60).toFixed(1)} min (target < 10 min)\n`,
    );

    // $everything for a golden patient with 1,000 resources. The accuracy check's arrays go first:
    // at 1M they are gigabytes a major collection would walk in the middle of the requests.
    const someone = links[0]!;
    links.length = 0;
    records.length = 0;
    truth.clear();
    const source = await db.query<{ patient_resource_id: string | null }>(`SELECT patient_resource_id FROM mpi_source WHERE member_id = $1 AND mrn = $2`, [someone.member, someone.mrn]);
    let patientRef = source.rows[0]?.patient_resource_id;
    if (!patientRef) {
      patientRef = `bench-${someone.member}-${someone.mrn}`;
      await db.query(`INSERT INTO resource (resource_type, id, member_id, content, raw_id) VALUES ('Patient', $1, $2, $3, 1)`, [patientRef, someone.member, JSON.stringify({ resourceType: 'Patient', id: patientRef, identifier: [{ value: someone.mrn }] })]);
      await db.query(`UPDATE mpi_source SET patient_resource_id = $1 WHERE member_id = $2 AND mrn = $3`, [patientRef, someone.member, someone.mrn]);
    }
    await db.query(
      `INSERT INTO resource (resource_type, id, member_id, content, raw_id)
       SELECT 'Observation', 'bench-obs-' || g, $2, jsonb_build_object('resourceType', 'Observation', 'id', 'bench-obs-' || g, 'status', 'final',
              'code', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('system', 'http://loinc.org', 'code', '718-7'))),
              'subject', jsonb_build_object('reference', 'Patient/' || $1::text), 'effectiveDateTime', '2026-11-01T08:00:00Z',
              'valueQuantity', jsonb_build_object('value', 120 + g % 30, 'unit', 'g/L', 'system', 'http://unitsofmeasure.org', 'code', 'g/L')), 1
         FROM generate_series(1, 999) AS g`,
      [patientRef, someone.member],
    );
    // Also 20,000 other patients' observations, so the index has to find them.
    await db.query(
      `INSERT INTO resource (resource_type, id, member_id, content, raw_id)
       SELECT 'Observation', 'bench-other-' || g, 'bench', jsonb_build_object('resourceType', 'Observation', 'status', 'final', 'subject', jsonb_build_object('reference', 'Patient/other-' || (g % 5000))), 1
         FROM generate_series(1, 20000) AS g`,
    );
    await db.query('ANALYZE resource');
    const key = 'bench-reader-key-0123456789';
    const runtime = { ...hub.runtime, config: parseConfig({ api: { keys: [{ name: 'bench', key, scopes: ['patient.read'] }] } }) };
    const server = createApi(runtime).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir/Patient/${someone.patient}/$everything`;
    const measure = async (when: string) => {
      // In production the API is another process than the sync (docker-compose.yml): here one
      // process holds both, and the sync's garbage (its block copy: a million records' features)
      // would be collected during the requests. Collected first when node runs with --expose-gc.
      (globalThis as { gc?: () => void }).gc?.();
      const times: number[] = [];
      let size = 0;
      for (let i = 0; i < requests + 20; i++) {
        const s = process.hrtime.bigint();
        const res = await fetch(url, { headers: { authorization: `Bearer ${key}` } });
        const body = (await res.json()) as { entry: unknown[] };
        const ms = Number(process.hrtime.bigint() - s) / 1e6;
        if (i >= 20) times.push(ms);
        size = body.entry.length;
      }
      process.stdout.write(`$everything ${when}: ${size} entries; ${requests} sequential requests p50 ${percentile(times, 50).toFixed(1)} ms, p95 ${percentile(times, 95).toFixed(1)} ms, p99 ${percentile(times, 99).toFixed(1)} ms (target p99 < 100 ms)\n`);
    };
    // Right after the load PostgreSQL's autovacuum works through the new index tables (a million
    // rows each at 1M) on the same two cores; measured then, and again once the tables are vacuumed
    // (what autovacuum reaches on its own; VACUUM here so the bench does not wait minutes for it).
    await measure('right after the sync');
    const vacuum0 = Date.now();
    await db.query(`VACUUM (ANALYZE) mpi_source, mpi_link, mpi_golden, mpi_history, mpi_shared_person, mpi_shared_value, resource`);
    await db.query(`CHECKPOINT`);
    process.stdout.write(`VACUUM (ANALYZE) of the index tables and a CHECKPOINT: ${((Date.now() - vacuum0) / 1000).toFixed(1)} s\n`);
    await measure('vacuumed');
    await new Promise((r) => server.close(r));
  } finally {
    await hub.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack}\n`);
  process.exit(1);
});
