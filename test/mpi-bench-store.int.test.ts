/**
 * The benchmark's figures are the store's (issue 20, "one decision path"): bench/mpi.ts links the
 * labelled sets through `trainStoredModel` + `syncPatientIndex` on source patients the pipeline's
 * stages read (bench/mpiStore.ts), in a database of its own. FEBRL 1 through that path meets the
 * issue's target (F1 ≥ 0.99, ≤ 1 % of records in review, no wrong link), and the path fails loudly
 * rather than silently measuring nothing (every record read, every record linked somewhere). The
 * accuracy floors of the other labelled sets are checked on the same path: there is no other (an
 * in-memory linker that was not the store's decision function was removed).
 */
import { accuracyOf, evaluateInStore } from '../bench/mpi';
import { generateChineseSet, loadFebrl, loadSplinkFake1000 } from '../bench/mpiData';
import { linkInStore } from '../bench/mpiStore';
import { generateWorldSet, worldIdentityConfig } from '../bench/mpiWorld';
import { PG_ADMIN_URL } from './support/hub';

jest.setTimeout(180_000);

const records = loadFebrl(['dataset1.csv']);
let stats: { sources: number; inReview: number } | undefined;
/** FEBRL 1 linked once through the store (26 s); both tests read this run. */
let linked: ReturnType<typeof linkInStore>;

beforeAll(() => {
  linked = linkInStore(records, {
    identity: worldIdentityConfig(),
    adminUrl: PG_ADMIN_URL,
    inspect: async (db) => {
      const row = (await db.query<{ sources: number; in_review: number }>(
        `SELECT (SELECT count(*)::int FROM mpi_source) AS sources, (SELECT count(DISTINCT (member_id, mrn))::int FROM mpi_link WHERE state = 'POSSIBLE_MATCH') AS in_review`,
      )).rows[0]!;
      stats = { sources: row.sources, inReview: row.in_review };
    },
  });
  linked.catch(() => undefined); // awaited, and reported, by the tests
});

test('FEBRL 1 linked by the store users run: F1 >= 0.99, <= 1 % in review, no wrong link', async () => {
  const out = await linked;
  expect(out.failed).toBe(0);
  expect(stats!.sources).toBe(records.length);
  expect(out.golden.every((g) => typeof g === 'string')).toBe(true);
  expect(out.inReview).toBe(stats!.inReview);
  const r = accuracyOf('febrl1', records, out.golden, out.inReview, { seconds: out.seconds });
  expect(r.falsePairs).toBe(0);
  expect(r.f1).toBeGreaterThanOrEqual(0.99);
  expect(r.reviewShare).toBeLessThanOrEqual(0.01);
});

/** A labelled set through the store, every record read (the path must not silently measure fewer). */
async function throughStore(set: string, labelled: Parameters<typeof evaluateInStore>[1]) {
  const r = await evaluateInStore(set, labelled, { adminUrl: PG_ADMIN_URL });
  expect(r.failed).toBe(0);
  return r;
}

test('the Chinese generator (1,000 persons) through the store: F1 >= 0.99 with <= 1 % of records in review', async () => {
  const r = await throughStore('chinese', generateChineseSet({ persons: 1000, seed: 3 }));
  expect(r.f1).toBeGreaterThanOrEqual(0.99);
  expect(r.reviewShare).toBeLessThanOrEqual(0.01);
});

test("Splink fake_1000 through the store meets issue 20's target: F1 >= 0.95 with <= 3 % of records in review", async () => {
  const r = await throughStore('fake_1000', loadSplinkFake1000());
  expect(r.precision).toBeGreaterThan(0.99);
  // 0.8477 before the name-conflict and birth-conflict guards (2026-11-26), 0.8499 before bridges
  // joined golden patients (2026-12-03: 0.9168), 0.9496 / 3.60 % before the e-mail's "one typo"
  // level (2026-12-07: 0.9550 / 2.60 %).
  expect(r.f1).toBeGreaterThanOrEqual(0.95);
  expect(r.reviewShare).toBeLessThanOrEqual(0.03);
});

test('our world-identities set through the store: its figure is a floor the matcher must keep', async () => {
  const r = await throughStore('world', generateWorldSet({ persons: 600, seed: 3 }));
  expect(r.precision).toBeGreaterThan(0.9);
  expect(r.recall).toBeGreaterThan(0.85);
});
