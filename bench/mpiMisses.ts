/**
 * Why a labelled set's true pairs were missed and what its review items are, through the store
 * users run (bench/mpiStore.ts): links the set as bench/mpi.ts does, then rescores with the stored
 * model (scaled to the population, as the sync scores) every true pair left in two golden patients
 * and every record left in review. Labels are used only to count and print, never by the matcher.
 * Run: `npx tsc -p . && node dist/bench/mpiMisses.js [--only NAME] [--pairs N] [--review]` (NAME:
 * fake_1000, world, febrl3, chinese; N: how many missed pairs to print, default 40; `--review`:
 * print every review item — the record, the proposed golden patient's record it was scored
 * against, and the score of the record's own link).
 */
import { blockingKeys, featuresOf, type PersonFeatures } from '../hub/mpi/features';
import { modelForPopulation, scorePair, type MatchModel } from '../hub/mpi/matcher';
import { loadModel } from '../hub/mpi/model';
import { generateChineseSet, loadFebrl, loadSplinkFake1000, type LabelledRecord } from './mpiData';
import { productionRecords } from './mpiRecords';
import { linkInStore } from './mpiStore';
import { generateWorldSet, worldIdentityConfig, worldIdentityTable } from './mpiWorld';

const SETS: Record<string, () => LabelledRecord[]> = {
  fake_1000: () => loadSplinkFake1000(),
  world: () => generateWorldSet({ persons: 2000 }),
  febrl3: () => loadFebrl(['dataset3.csv']),
  chinese: () => generateChineseSet({ persons: 5000 }),
};

function describe(f: PersonFeatures): string {
  return [f.family, f.given, f.birth, f.sex, f.email, f.city, f.phone, f.address, f.otherId].map((x) => x ?? '-').join(' ');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1]! : 'fake_1000';
  const details = argv.includes('--review');
  const show = argv.includes('--pairs') ? Number(argv[argv.indexOf('--pairs') + 1]) : 40;
  const records = SETS[only]!();
  const features = productionRecords(records, { table: worldIdentityTable(), fhirEvery: 4 }).records.map(featuresOf);
  let model: MatchModel | undefined;
  const review: Array<{ mrn: string; golden: string; rule: string | null; score: number; against: string | null; linkScore: number | null; linkRule: string | null }> = [];
  const out = await linkInStore(records, {
    identity: worldIdentityConfig(),
    inspect: async (db) => {
      model = modelForPopulation(await loadModel(db), records.length);
      const rows = await db.query<{ mrn: string; golden_id: string; rule: string | null; score: number; against: string | null; link_score: number | null; link_rule: string | null }>(
        `SELECT p.mrn, p.golden_id, p.rule, p.score, p.breakdown->>'against' AS against, m.score AS link_score, m.rule AS link_rule
           FROM mpi_link p LEFT JOIN mpi_link m ON m.member_id = p.member_id AND m.mrn = p.mrn AND m.state = 'MATCH'
          WHERE p.state = 'POSSIBLE_MATCH' ORDER BY p.mrn`,
      );
      for (const r of rows.rows) review.push({ mrn: r.mrn, golden: r.golden_id, rule: r.rule, score: r.score, against: r.against, linkScore: r.link_score, linkRule: r.link_rule });
    },
  });
  const golden = out.golden;
  const keys = features.map((f) => new Set(blockingKeys(f)));
  // Missed true pairs, classified by the stored model's rescoring.
  const byEntity = new Map<string, number[]>();
  records.forEach((r, i) => byEntity.set(r.entity, [...(byEntity.get(r.entity) ?? []), i]));
  const tally = new Map<string, number>();
  const printed: string[] = [];
  let missed = 0;
  for (const members of byEntity.values()) {
    for (let x = 0; x < members.length; x++) {
      for (let y = x + 1; y < members.length; y++) {
        const i = members[x]!;
        const j = members[y]!;
        if (golden[i] !== null && golden[i] === golden[j]) continue;
        missed++;
        const s = scorePair(model!, features[i]!, features[j]!);
        const shared = [...keys[i]!].some((k) => keys[j]!.has(k));
        const band = s.weight >= model!.matchThreshold ? 'match-weight' : s.weight >= model!.reviewThreshold ? 'review-weight' : 'below';
        const cls = `${band} ${s.outcome}${s.rule ? ` (${s.rule})` : ''}${shared ? '' : ' no-key'}`;
        tally.set(cls, (tally.get(cls) ?? 0) + 1);
        if (printed.length < show)
          printed.push(
            `${s.weight.toFixed(1).padStart(6)} ${cls}\n    ${describe(features[i]!)}\n    ${describe(features[j]!)}\n    ${s.fields
              .filter((f) => f.level !== null)
              .map((f) => `${f.field}:${f.label}=${f.weight.toFixed(1)}`)
              .join(' ')}`,
          );
      }
    }
  }
  process.stdout.write(`${only}: ${records.length} records, ${missed} true pairs in two golden patients, ${out.inReview} records in review\n`);
  for (const [cls, k] of [...tally.entries()].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${String(k).padStart(5)}  ${cls}\n`);
  // Review items: is the proposed golden patient the record's own person?
  const index = new Map(records.map((_, i) => [`MRN${i}`, i]));
  const entityOfGolden = new Map<string, Set<string>>();
  golden.forEach((g, i) => {
    if (g) entityOfGolden.set(g, (entityOfGolden.get(g) ?? new Set()).add(records[i]!.entity));
  });
  const reviewTally = new Map<string, number>();
  const reviewed: string[] = [];
  for (const r of review) {
    const i = index.get(r.mrn)!;
    const same = entityOfGolden.get(r.golden)?.has(records[i]!.entity) ?? false;
    // The record's own link: it started a golden patient (its decision was at best review: the
    // item is the proposal) or linked to one (the item is an alternative of a linked record).
    const kind = r.linkRule === 'new-person' ? 'proposal' : 'alternative of a linked record';
    const cls = `${same ? 'same person' : 'other person'} rule=${r.rule ?? '-'}${r.score < 6 ? ' weight<6' : ''} (${kind})`;
    reviewTally.set(cls, (reviewTally.get(cls) ?? 0) + 1);
    const j = r.against ? index.get(r.against.split('|')[1]!) : undefined;
    if (details)
      reviewed.push(
        `${r.score.toFixed(1).padStart(6)} ${cls}; linked at ${r.linkScore?.toFixed(1) ?? '-'} ${r.linkRule ?? ''}\n    ${describe(features[i]!)}\n    ${j !== undefined ? describe(features[j]!) : '?'}`,
      );
  }
  process.stdout.write(`review items (${review.length}):\n`);
  for (const [cls, k] of [...reviewTally.entries()].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${String(k).padStart(5)}  ${cls}\n`);
  process.stdout.write(`${printed.join('\n')}\n`);
  if (details) process.stdout.write(`review items:\n${reviewed.join('\n')}\n`);
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack}\n`);
  process.exit(1);
});
