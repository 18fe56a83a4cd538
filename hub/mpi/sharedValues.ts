/**
 * The store's side of the shared-value term frequencies (hub/mpi/matcher.ts `tfMode: 'shared'`):
 * how many different people carry each phone, address, e-mail and identifier of the hub's own
 * population, in `mpi_shared_person` / `mpi_shared_value` (migration 14). The matcher needs them
 * because a registration desk's placeholder (13800138000, the hospital's own address) belongs to
 * this hub's data, not to any training set: counted as an ordinary phone it links strangers.
 *
 * Counted before a record is matched (the record is part of its population, as in the in-memory
 * linker); read for the record and its candidates only, so the cost does not grow with the
 * population. Runs inside the matcher's transaction, under its exclusive lock.
 */
import type { HubDb, Sql } from '../sql';
import { featuresOf, type PersonFeatures, type PersonRecord } from './features';
import { HOUSEHOLD, personKey, sharedValues, type FieldName, type MatchModel, type SharedValueCounts } from './matcher';

/** A value that has just become shared: more different people carry it than a household. */
export interface CrossedValue {
  field: FieldName;
  value: string;
}

/**
 * Count the people of these records (features ids are `member|mrn`) against their shared values;
 * idempotent (a person counts once per value). Returns the values this count made shared: links
 * made on them while they looked like one household's must be looked at again (`carriersOf`).
 */
export async function countSharedValues(tx: Sql, records: PersonFeatures[]): Promise<CrossedValue[]> {
  const fields: string[] = [];
  const values: string[] = [];
  const persons: string[] = [];
  const members: string[] = [];
  const mrns: string[] = [];
  for (const f of records) {
    const person = personKey(f);
    if (person === undefined) continue;
    const bar = f.id.indexOf('|');
    for (const v of sharedValues(f)) {
      fields.push(v.field);
      values.push(v.value);
      persons.push(person);
      members.push(f.id.slice(0, bar));
      mrns.push(f.id.slice(bar + 1));
    }
  }
  if (!fields.length) return [];
  // One statement: the person rows that are new feed the counters, so the two never disagree.
  const crossed = await tx.query<CrossedValue>(
    `WITH fresh AS (
       INSERT INTO mpi_shared_person (field, value, person, member_id, mrn)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) ON CONFLICT DO NOTHING
       RETURNING field, value),
     added AS (SELECT field, value, count(*)::int AS n FROM fresh GROUP BY field, value),
     counted AS (
       INSERT INTO mpi_shared_value (field, value, people) SELECT field, value, n FROM added
       ON CONFLICT (field, value) DO UPDATE SET people = mpi_shared_value.people + excluded.people
       RETURNING field, value, people)
     SELECT c.field, c.value FROM counted c JOIN added a USING (field, value) WHERE c.people > $6 AND c.people - a.n <= $6`,
    [fields, values, persons, members, mrns, HOUSEHOLD],
    'mpi_count_shared',
  );
  return crossed.rows;
}

/** The sources to match again when these values became shared: the first source of each person carrying one. */
export async function carriersOf(tx: Sql, crossed: CrossedValue[]): Promise<Array<{ member_id: string; mrn: string } & CrossedValue>> {
  if (!crossed.length) return [];
  const rows = await tx.query<{ member_id: string; mrn: string } & CrossedValue>(
    `SELECT DISTINCT ON (p.member_id, p.mrn) p.member_id, p.mrn, p.field, p.value FROM unnest($1::text[], $2::text[]) AS c(field, value)
       JOIN mpi_shared_person p ON p.field = c.field AND p.value = c.value ORDER BY p.member_id, p.mrn`,
    [crossed.map((c) => c.field), crossed.map((c) => c.value)],
  );
  return rows.rows;
}

/** Above this many records (a bulk batch and its candidates), read all shared values instead of looking each one up. */
export const BULK_RECORDS = 500;

/**
 * The model with the population's counts for the values these records state attached: only values
 * more people carry than a household are read (the others weigh as the trained average).
 */
export async function withSharedCounts(tx: Sql, model: MatchModel, records: PersonFeatures[]): Promise<MatchModel> {
  const byField = new Map<FieldName, Map<string, number>>();
  const keep = (rows: Array<{ field: FieldName; value: string; people: number }>) => {
    for (const r of rows) {
      let m = byField.get(r.field);
      if (!m) byField.set(r.field, (m = new Map()));
      m.set(r.value, Number(r.people));
    }
  };
  if (records.length > BULK_RECORDS) {
    // Few values are shared (at 200,000 generated records: 545 addresses). A bulk batch states
    // tens of thousands of values: reading every shared one (partial index) beats probing each.
    keep((await tx.query<{ field: FieldName; value: string; people: number }>(`SELECT field, value, people FROM mpi_shared_value WHERE people > ${HOUSEHOLD}`, [], 'mpi_read_all_shared')).rows);
  } else {
    const wanted = new Map<string, { field: string; value: string }>();
    for (const f of records) for (const v of sharedValues(f)) wanted.set(`${v.field}\u0000${v.value}`, v);
    const list = [...wanted.values()];
    if (list.length) {
      const rows = await tx.query<{ field: FieldName; value: string; people: number }>(
        `SELECT v.field, v.value, v.people FROM unnest($1::text[], $2::text[]) AS w(field, value)
           JOIN mpi_shared_value v ON v.field = w.field AND v.value = w.value WHERE v.people > ${HOUSEHOLD}`,
        [list.map((v) => v.field), list.map((v) => v.value)],
        'mpi_read_shared',
      );
      keep(rows.rows);
    }
  }
  const shared: SharedValueCounts = { records: model.population ?? model.trainedOn.records, people: {} };
  for (const [field, m] of byField) shared.people[field] = m;
  return { ...model, shared };
}

/**
 * Count the sources matched before migration 14 (its marker row), in batches, then drop the
 * marker. Returns the values found shared, whose carriers the caller matches again (links made
 * before the counts existed). Called by the sync before it matches anything, under the matcher's lock.
 */
export async function backfillSharedValues(db: HubDb, lock: number): Promise<CrossedValue[]> {
  const pending = await db.query(`SELECT 1 FROM mpi_shared_value WHERE field = '#backfill'`);
  if (!pending.rows.length) return [];
  const crossed: CrossedValue[] = [];
  let after: { member: string; mrn: string } | null = null;
  for (;;) {
    const page: Array<{ member_id: string; mrn: string; record: PersonRecord }> = await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(${lock})`);
      const rows = await tx.query<{ member_id: string; mrn: string; record: PersonRecord }>(
        `SELECT member_id, mrn, record FROM mpi_source WHERE ($1::text IS NULL OR (member_id, mrn) > ($1, $2)) ORDER BY member_id, mrn LIMIT 2000`,
        [after?.member ?? null, after?.mrn ?? null],
      );
      crossed.push(...(await countSharedValues(tx, rows.rows.map((r) => featuresOf({ ...r.record, id: `${r.member_id}|${r.mrn}` })))));
      if (rows.rows.length < 2000) await tx.query(`DELETE FROM mpi_shared_value WHERE field = '#backfill'`);
      return rows.rows;
    });
    if (page.length < 2000) return crossed;
    const last = page[page.length - 1]!;
    after = { member: last.member_id, mrn: last.mrn };
  }
}
