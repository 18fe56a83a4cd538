/**
 * Searchable text of golden patients for FHIR Patient search (`name`, `family`, `given`,
 * `address`): lower-case, accents stripped, Hanzi in simplified form, and Hanzi names also as
 * toneless pinyin with and without spaces (欧阳娜娜: ouyang, ou yang, ouyangnana, ouyang nana…), so
 * `name=欧阳`, `name=歐陽`, `name=ouyang` and `family=OUYANG` all find her. Pinyin is TypeScript
 * (pinyin-pro through hub/mpi/names.ts), so the text is computed here and kept in
 * `fhir_patient_term` (migration 18, one row per form, prefix-indexed): triggers on mpi_golden list
 * each golden patient whose demographics changed in `fhir_patient_search_stale`, and a search that
 * needs the text first recomputes those (one query when nothing changed).
 */
import { pinyin } from 'pinyin-pro';
import type { HubDb } from '../hub/sql';
import type { GoldenDemographics } from '../hub/mpi/survivorship';
import { hasHan, normaliseName } from '../hub/mpi/names';
import { foldText } from './fhirSearch';

export interface PatientSearchText {
  name: string[];
  family: string[];
  given: string[];
  address: string;
}

function syllables(han: string, surname: boolean): string[] {
  return pinyin(han, { mode: surname ? 'surname' : 'normal', toneType: 'none', type: 'array', nonZh: 'removed' }).map((s) => foldText(s));
}

/** The forms of one name part: as written, simplified, and (Hanzi) pinyin joined and spaced. */
function forms(part: string | undefined, surname: boolean): { terms: string[]; joined?: string; syllables?: string[] } {
  if (!part?.trim()) return { terms: [] };
  if (!hasHan(part)) {
    const folded = foldText(part);
    // A multi-word given name ("Mary Ann"): each word is a part too.
    return { terms: [folded, ...folded.split(' ').slice(1)], joined: folded };
  }
  const simplified = normaliseName(part) ?? part;
  const py = syllables(simplified, surname);
  return { terms: [foldText(part).replace(/\s/g, ''), simplified, py.join(''), py.join(' ')], joined: simplified, syllables: py };
}

const unique = (xs: Array<string | undefined>) => [...new Set(xs.filter((x): x is string => !!x))];

/** The searchable forms of a golden patient's demographics. */
export function patientSearchText(s: Partial<GoldenDemographics>): PatientSearchText {
  const family = forms(s.family, true);
  const given = forms(s.given, false);
  const name: Array<string | undefined> = [...family.terms, ...given.terms];
  if (family.syllables || given.syllables) {
    // Hanzi: family then given, written together, in pinyin joined, spaced by syllable and by part.
    const f = family.syllables ?? [];
    const g = given.syllables ?? [];
    name.push(`${family.joined ?? ''}${given.joined ?? ''}`, [...f, ...g].join(''), [...f, ...g].join(' '), [f.join(''), g.join('')].filter(Boolean).join(' '), [g.join(''), f.join('')].filter(Boolean).join(' '));
  } else if (family.joined && given.joined) {
    name.push(`${family.joined} ${given.joined}`, `${given.joined} ${family.joined}`);
  }
  return { name: unique(name), family: unique(family.terms), given: unique(given.terms), address: searchableAddress(s.address ?? '') };
}

/** An address, or an address search value, as compared: Hanzi simplified, Latin folded. */
export function searchableAddress(text: string): string {
  return hasHan(text) ? (normaliseName(text) ?? '') : foldText(text);
}

/** A name search value as compared with the stored terms. */
export function searchableName(value: string): string {
  return hasHan(value) ? (normaliseName(value) ?? '') : foldText(value);
}

const BATCH = 2000;

/**
 * Recompute the search text of the golden patients listed as stale. Under an advisory lock, so two
 * searches do not both compute them, and the second one waits to see the result.
 */
export async function refreshPatientSearch(db: HubDb): Promise<number> {
  const pending = await db.query(`SELECT 1 FROM fhir_patient_search_stale LIMIT 1`);
  if (!pending.rows.length) return 0;
  return db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(7317018)`);
    let done = 0;
    for (;;) {
      const batch = await tx.query<{ id: string; survivor: GoldenDemographics }>(
        `WITH taken AS (DELETE FROM fhir_patient_search_stale WHERE golden_id IN (SELECT golden_id FROM fhir_patient_search_stale LIMIT ${BATCH}) RETURNING golden_id)
         SELECT g.id, g.survivor FROM taken JOIN mpi_golden g ON g.id = taken.golden_id`,
      );
      if (!batch.rows.length) return done;
      const ids = batch.rows.map((r) => r.id);
      const terms: Array<[string, string, string]> = [];
      for (const r of batch.rows) {
        const t = patientSearchText(r.survivor ?? {});
        for (const kind of ['name', 'family', 'given'] as const) for (const term of t[kind]) terms.push([r.id, kind, term]);
        if (t.address) terms.push([r.id, 'address', t.address]);
      }
      await tx.query(`DELETE FROM fhir_patient_term WHERE golden_id = ANY($1::text[])`, [ids]);
      await tx.query(`INSERT INTO fhir_patient_term (golden_id, kind, term) SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING`, [terms.map((t) => t[0]), terms.map((t) => t[1]), terms.map((t) => t[2])]);
      done += batch.rows.length;
    }
  });
}
