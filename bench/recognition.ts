/**
 * Mutual recognition at scale: loads N observations (default 10,000,000) straight into the
 * recognition index with SQL (generate_series; ~1M golden patients each with two source patients
 * at 5 members, 30 codes with the common ones more frequent, two years of results, 2 %
 * preliminary), in a throwaway database; then measures the check (p50/p99, target p99 < 20 ms)
 * in-process (recognitionCheck: the SQL, the rules and the log + audit writes) and over HTTP
 * (POST /recognition/check through express, auth and zod), for random patients and 3 codes each;
 * then the duplicate report over one month and over everything.
 * Run: `npx tsc -p . && node dist/bench/recognition.js [--observations N] [--patients N] [--requests N] [--skip-full-report]`.
 */
import type { AddressInfo } from 'node:net';
import { createApi } from '../api/server';
import { recognitionCheck } from '../hub/recognition/check';
import { duplicateReport } from '../hub/recognition/duplicates';
import { shippedRuleSet } from '../hub/recognition/rules';
import { syncTerminology } from '../hub/terminology/versions';
import { hashApiKey } from '../hub/config';
import { benchHub, percentile } from './support';

const MEMBERS = [
  { id: 'm0', name: 'lead', tier: 'tertiary' },
  { id: 'm1', name: 'county A', tier: 'secondary' },
  { id: 'm2', name: 'county B', tier: 'secondary' },
  { id: 'm3', name: 'community A', tier: 'primary' },
  { id: 'm4', name: 'community B', tier: 'primary' },
];
/** Codes without a shipped rule, to make 30 (HDL, LDL, TSH, urea, GGT, albumin, bilirubin, uric acid). */
const EXTRA_CODES = ['2085-9', '13457-7', '3016-3', '3094-0', '2324-2', '1751-7', '1975-2', '3084-1'];

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, fallback: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback);
  const observations = arg('--observations', 10_000_000);
  const patients = arg('--patients', Math.max(1000, Math.round(observations / 10)));
  const requests = arg('--requests', 2000);
  const out = (t: string) => process.stdout.write(`${t}\n`);
  const hub = await benchHub('recognition', MEMBERS.map((m) => ({ ...m, channels: [] })));
  const config = hub.runtime.config;
  config.recognition.accreditation.push(...['m0', 'm1', 'm2', 'm3'].map((member) => ({ member, scheme: 'EQA', codes: [], validFrom: '2024-01-01', validTo: '2027-12-31' })));
  config.recognition.priceLists.push(...MEMBERS.map((m, i) => ({ member: m.id, version: '2025', currency: 'CNY', effectiveFrom: '2024-01-01', prices: Object.fromEntries(shippedRuleSet().map((r) => [r.code, 10 + 5 * i])) })));
  const key = 'bench-key-0123456789abcdef';
  config.api.keys.push({ name: 'bench', sha256: hashApiKey(key), scopes: ['patient.read'] });
  const db = hub.runtime.db;
  try {
    const terminology = await syncTerminology(db);
    const codes = [...shippedRuleSet().map((r) => r.code), ...EXTRA_CODES].slice(0, 30);
    const units = codes.map((c) => terminology.canonicalUnit(c)?.unit ?? null);
    out(`recognition benchmark: ${observations.toLocaleString('en')} observations, ${patients.toLocaleString('en')} golden patients (2 source patients each), ${codes.length} codes, ${MEMBERS.length} members`);

    // 1. The patient index: golden patients, their two source patients, MATCH links.
    let t0 = Date.now();
    await db.query(`INSERT INTO mpi_golden (id) SELECT 'g' || i FROM generate_series(1, $1) AS i`, [patients]);
    await db.query(
      `INSERT INTO mpi_source (member_id, mrn, record, block_keys, patient_resource_id, source_updated_at)
       SELECT 'm' || ((i + k) % 5), 'M' || i || '-' || k, '{}', '{}', 'p' || i || '-' || k, now() FROM generate_series(1, $1) AS i, generate_series(0, 1) AS k`,
      [patients],
    );
    await db.query(
      `INSERT INTO mpi_link (member_id, mrn, golden_id, state, mode) SELECT 'm' || ((i + k) % 5), 'M' || i || '-' || k, 'g' || i, 'MATCH', 'AUTO' FROM generate_series(1, $1) AS i, generate_series(0, 1) AS k`,
      [patients],
    );
    out(`patient index: ${patients.toLocaleString('en')} golden, ${(2 * patients).toLocaleString('en')} sources and links in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // 2. The recognition index, loaded without its indexes (built after, as a bulk load should be).
    t0 = Date.now();
    await db.query(`ALTER TABLE recognition_result DROP CONSTRAINT recognition_result_pkey`);
    await db.query(`DROP INDEX recognition_result_patient`);
    await db.query(`DROP INDEX recognition_result_time`);
    const chunk = 1_000_000;
    for (let start = 1; start <= observations; start += chunk) {
      const end = Math.min(observations, start + chunk - 1);
      await db.query(
        `INSERT INTO recognition_result (resource_type, resource_id, code, member_id, patient_id, effective_at, value, unit, original_value, original_unit, status, source_updated_at)
         SELECT 'Observation', 'o' || n, c.code, 'm' || ((pi + k) % 5), 'p' || pi || '-' || k, ts, v, c.unit, v, c.unit, CASE WHEN random() < 0.02 THEN 'preliminary' ELSE 'final' END, now()
           FROM (SELECT n, 1 + floor($3::int * power(random(), 1.3))::int AS pi, (n % 2)::int AS k, 1 + floor($4::int * power(random(), 1.6))::int AS ci,
                        timestamptz '2025-01-01' + random() * interval '700 days' AS ts, round((random() * 100)::numeric, 2)::float8 AS v
                   FROM generate_series($1::int, $2::int) AS n) AS g
           JOIN unnest($5::text[], $6::text[]) WITH ORDINALITY AS c(code, unit, i) ON c.i = g.ci`,
        [start, end, patients, codes.length, codes, units],
      );
      process.stderr.write(`  loaded ${end.toLocaleString('en')} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    }
    const loadSeconds = (Date.now() - t0) / 1000;
    t0 = Date.now();
    await db.query(`ALTER TABLE recognition_result ADD PRIMARY KEY (resource_type, resource_id, code)`);
    await db.query(`CREATE INDEX recognition_result_patient ON recognition_result (patient_id, code, effective_at DESC)`);
    await db.query(`CREATE INDEX recognition_result_time ON recognition_result (effective_at)`);
    await db.query(`ANALYZE recognition_result, mpi_source, mpi_link, mpi_golden`);
    const size = (await db.query<{ s: string }>(`SELECT pg_size_pretty(pg_total_relation_size('recognition_result')) AS s`)).rows[0]!.s;
    out(`recognition index: ${observations.toLocaleString('en')} rows loaded in ${loadSeconds.toFixed(0)} s, indexes built in ${((Date.now() - t0) / 1000).toFixed(0)} s (${size})`);

    // 3. The check, in-process: 3 random codes for a random patient, "now" = 2026-10-01.
    const at = '2026-10-01T00:00:00Z';
    const request = () => ({
      patient: `g${1 + Math.floor(Math.random() * patients)}`,
      tests: [0, 1, 2].map(() => codes[Math.floor(Math.random() * codes.length)]!),
      at,
      requestingMember: MEMBERS[Math.floor(Math.random() * MEMBERS.length)]!.id,
    });
    for (let i = 0; i < 100; i++) await recognitionCheck(db, config, request(), 'bench'); // warm the pool and prepared plans
    const inProcess: number[] = [];
    let found = 0;
    for (let i = 0; i < requests; i++) {
      const s = process.hrtime.bigint();
      const answer = await recognitionCheck(db, config, request(), 'bench');
      inProcess.push(Number(process.hrtime.bigint() - s) / 1e6);
      found += answer.tests.filter((t) => t.recognisable.length).length;
    }
    out(`check in-process (${requests} checks × 3 codes, sequential): p50 ${percentile(inProcess, 50).toFixed(2)} ms, p99 ${percentile(inProcess, 99).toFixed(2)} ms, max ${Math.max(...inProcess).toFixed(1)} ms; ${found} of ${requests * 3} tests had a recognisable result`);

    // 4. The same over HTTP.
    const server = createApi(hub.runtime).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/recognition/check`;
    const post = async () => {
      const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(request()) });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
    };
    for (let i = 0; i < 100; i++) await post();
    const overHttp: number[] = [];
    for (let i = 0; i < requests; i++) {
      const s = process.hrtime.bigint();
      await post();
      overHttp.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    server.close();
    out(`check over HTTP (${requests} requests, sequential, keep-alive): p50 ${percentile(overHttp, 50).toFixed(2)} ms, p99 ${percentile(overHttp, 99).toFixed(2)} ms, max ${Math.max(...overHttp).toFixed(1)} ms`);

    // 5. The duplicate report: one month, then everything.
    t0 = Date.now();
    const month = await duplicateReport(db, config, { from: new Date('2026-09-01T00:00:00Z'), to: new Date('2026-10-01T00:00:00Z') });
    out(`duplicate report, one month (2026-09): ${month.totals.repeats.toLocaleString('en')} repeats, wasted ${month.totals.wastedCost.toLocaleString('en')} CNY, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (!argv.includes('--skip-full-report')) {
      t0 = Date.now();
      const all = await duplicateReport(db, config, {});
      out(`duplicate report, all ${observations.toLocaleString('en')} observations: ${all.totals.repeats.toLocaleString('en')} repeats in ${all.byMonth.length} months, wasted ${all.totals.wastedCost.toLocaleString('en')} CNY, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await hub.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack ?? error}\n`);
  process.exit(1);
});
