/**
 * What the pipeline pays per message for linking in the patient index (stage identify, after the
 * merge: `linkSourcePatients`), on PostgreSQL with an index already holding N generated source
 * patients. Four cases, each timed over M messages one after another, as a partition's worker runs
 * them: a new registration (matched, exclusive lock), a changed identity of a known patient (phone
 * moved: matched again), an unchanged identity with a newer event time (a result or order for a
 * known patient: the fast path), and a replayed message (index already current). Then new
 * registrations from 4 concurrent callers (4 partitions), to see the lock's effect.
 * Run: `npx tsc -p . && node dist/bench/mpiPipeline.js [--records N] [--messages M]`.
 */
import { linkSourcePatients } from '../hub/mpi/links';
import { syncPatientIndex } from '../hub/mpi/sync';
import type { HubDb } from '../hub/sql';
import { generateChineseSet, type LabelledRecord } from './mpiData';
import { benchHub, percentile } from './support';

function demographicsOf(r: LabelledRecord): Record<string, string> {
  const { id: _id, entity: _e, ...demo } = r;
  void _id;
  void _e;
  return Object.fromEntries(Object.entries(demo).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

async function insertSources(db: HubDb, records: LabelledRecord[], prefix: string): Promise<Array<{ member: string; mrn: string }>> {
  const rows = records.map((r) => {
    const [member, n] = r.id.split(':');
    return { member_id: member!, mrn: `${prefix}${n}`, demographics: demographicsOf(r) };
  });
  for (let i = 0; i < rows.length; i += 5000) {
    await db.query(
      `INSERT INTO source_patient (member_id, mrn, demographics, event_time, last_raw_id)
       SELECT member_id, mrn, demographics, now(), 1 FROM jsonb_to_recordset($1::jsonb) AS x(member_id text, mrn text, demographics jsonb)`,
      [JSON.stringify(rows.slice(i, i + 5000))],
    );
  }
  return rows.map((r) => ({ member: r.member_id, mrn: r.mrn }));
}

async function timeEach(sources: Array<{ member: string; mrn: string }>, before: (s: { member: string; mrn: string }) => Promise<void>, link: (s: { member: string; mrn: string }) => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  for (const s of sources) {
    await before(s);
    const t = process.hrtime.bigint();
    await link(s);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return times;
}

function line(label: string, times: number[]): string {
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  return `  ${label.padEnd(52)} mean ${mean.toFixed(2)} ms, p50 ${percentile(times, 50).toFixed(2)} ms, p99 ${percentile(times, 99).toFixed(2)} ms\n`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string, fallback: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback);
  const records = arg('--records', 20_000);
  const messages = arg('--messages', 1000);
  const hub = await benchHub('mpipipe');
  try {
    const db = hub.runtime.db;
    await db.query(`INSERT INTO raw_message (id, member_id, channel_id, sha256, content, size_bytes, status) VALUES (1, 'bench', 'bench', '\\x00', '\\x00', 1, 'processed')`);
    const all = generateChineseSet({ persons: Math.ceil((records + 2 * messages) / 1.8), seed: 11 });
    await insertSources(db, all.slice(0, records), 'MRN');
    await syncPatientIndex(db, { batch: 2000, full: true });
    await db.query(`ANALYZE`);
    const link = (s: { member: string; mrn: string }) => linkSourcePatients(db, s.member, [s.mrn]);
    const none = async () => undefined;

    const fresh = await insertSources(db, all.slice(records, records + messages), 'NEW');
    const newTimes = await timeEach(fresh, none, link);
    const changed = await timeEach(fresh, (s) => db.query(`UPDATE source_patient SET demographics = demographics || '{"phone":"13999999999"}', event_time = now(), updated_at = clock_timestamp() WHERE member_id = $1 AND mrn = $2`, [s.member, s.mrn]).then(() => undefined), link);
    const sameIdentity = await timeEach(fresh, (s) => db.query(`UPDATE source_patient SET event_time = clock_timestamp(), updated_at = clock_timestamp() WHERE member_id = $1 AND mrn = $2`, [s.member, s.mrn]).then(() => undefined), link);
    const replay = await timeEach(fresh, none, link);

    const concurrent = await insertSources(db, all.slice(records + messages, records + 2 * messages), 'PAR');
    const t0 = process.hrtime.bigint();
    await Promise.all([0, 1, 2, 3].map(async (lane) => {
      for (let i = lane; i < concurrent.length; i += 4) await link(concurrent[i]!);
    }));
    const parallelSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const unlinked = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM source_patient sp WHERE NOT EXISTS (SELECT 1 FROM mpi_link l WHERE l.member_id = sp.member_id AND l.mrn = sp.mrn AND l.state = 'MATCH')`);

    process.stdout.write(`patient index link in the pipeline (index of ${records} source patients, ${messages} messages per case, one caller):\n`);
    process.stdout.write(line('new registration (matched, exclusive lock)', newTimes));
    process.stdout.write(line('known patient, identity changed (matched again)', changed));
    process.stdout.write(line('known patient, same identity, newer event (fast)', sameIdentity));
    process.stdout.write(line('replayed message (index current)', replay));
    process.stdout.write(`  new registrations from 4 concurrent callers: ${Math.round(messages / parallelSeconds)} links/s; source patients left unlinked: ${unlinked.rows[0]!.n}\n`);
  } finally {
    await hub.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack}\n`);
  process.exit(1);
});
