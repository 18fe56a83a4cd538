/**
 * A labelled set linked by the store users run (bench/mpi.ts's default): each record becomes the
 * source patient the pipeline's merge stage leaves (its demographics from the identify stage, its
 * converted Patient in `resource`; bench/mpiRecords.ts), in a private database of the machine's
 * PostgreSQL; the model is trained as `yilian mpi train` trains it (`trainStoredModel`, on the
 * stored sources, no labels) unless the set is to be linked with the built-in model; then
 * `syncPatientIndex` links them (bulk rounds, shared-value re-checks, bridges joined at the end of
 * a round, the prior scaled to the stored population) and the result is read as `yilian mpi
 * export` and `yilian mpi stats` read it. Records reach the sync in file order (`updated_at`
 * rising), as an incremental load would bring them.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openHubDb } from '../hub/db';
import type { HubDb } from '../hub/sql';
import { useIdentityConfig, type IdentityConfig } from '../hub/mpi/identity';
import { trainStoredModel } from '../hub/mpi/model';
import { exportLinks } from '../hub/mpi/review';
import { syncPatientIndex } from '../hub/mpi/sync';
import type { LabelledRecord } from './mpiData';
import { productionSources } from './mpiRecords';
import { PG_ADMIN_URL } from './support';

export interface StoreOutcome {
  /** Each record's golden patient (null: the pipeline could not read it; never linked). */
  golden: Array<string | null>;
  /** Records with an open review item when the sync ends. */
  inReview: number;
  failed: number;
  joined: number;
  seconds: number;
}

/**
 * Link `records` through the store, in a database created for it on `adminUrl`'s server and dropped
 * after; `builtIn`: no `mpi train` (the built-in model, as a new hub links); `inspect`: look at the
 * linked store before it goes.
 */
export async function linkInStore(records: LabelledRecord[], options: { identity: IdentityConfig; builtIn?: boolean; batch?: number; adminUrl?: string; inspect?: (db: HubDb) => Promise<void> }): Promise<StoreOutcome> {
  useIdentityConfig(options.identity);
  const sources = productionSources(records, { fhirEvery: 4 });
  const name = `yilian_bench_mpi_acc_${randomBytes(3).toString('hex')}`;
  const adminUrl = options.adminUrl ?? PG_ADMIN_URL;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const db = await openHubDb({ databaseUrl: adminUrl.replace(/\/[^/]*$/, `/${name}`), poolSize: 4 });
  try {
    await db.query(`INSERT INTO raw_message (id, member_id, channel_id, sha256, content, size_bytes, status) VALUES (1, 'bench', 'bench', '\\x00', '\\x00', 1, 'processed')`);
    const rows = sources.flatMap((s, i) => (s ? [{ i, member_id: s.member_id, mrn: s.mrn, demographics: s.demographics, patient: s.patient ? { ...s.patient, id: `${s.member_id}-${s.mrn}` } : null }] : []));
    for (let k = 0; k < rows.length; k += 2000) {
      const chunk = rows.slice(k, k + 2000);
      await db.query(
        `INSERT INTO resource (resource_type, id, member_id, content, raw_id)
         SELECT 'Patient', x.patient->>'id', x.member_id, x.patient, 1 FROM jsonb_to_recordset($1::jsonb) AS x(member_id text, patient jsonb) WHERE x.patient IS NOT NULL`,
        [JSON.stringify(chunk)],
      );
      // One millisecond apart: the sync walks them in file order.
      await db.query(
        `INSERT INTO source_patient (member_id, mrn, demographics, event_time, last_raw_id, updated_at)
         SELECT member_id, mrn, demographics, now(), 1, timestamptz '2026-01-01' + make_interval(secs => i / 1000.0) FROM jsonb_to_recordset($1::jsonb) AS x(i int, member_id text, mrn text, demographics jsonb)`,
        [JSON.stringify(chunk)],
      );
    }
    await db.query(`ANALYZE source_patient, resource`);
    const started = process.hrtime.bigint();
    if (!options.builtIn) await trainStoredModel(db);
    const summary = await syncPatientIndex(db, { full: true, batch: options.batch ?? 2000, actor: 'bench' });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const links = new Map((await exportLinks(db)).map((l) => [`${l.member}|${l.mrn}`, l.patient]));
    await options.inspect?.(db);
    const inReview = (await db.query<{ n: number }>(`SELECT count(DISTINCT (member_id, mrn))::int AS n FROM mpi_link WHERE state = 'POSSIBLE_MATCH'`)).rows[0]!.n;
    return { golden: sources.map((s) => (s ? (links.get(`${s.member_id}|${s.mrn}`) ?? null) : null)), inReview, failed: sources.filter((s) => !s).length, joined: summary.joined, seconds };
  } finally {
    await db.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}
