/**
 * Incremental linking in memory: each record arriving is matched against the records already
 * indexed that share a blocking key, and joins the golden patient the matcher chose or starts a new
 * one. The store's scoring (`decide`), but not exactly its decisions: the store joins bridges at the
 * end of a round, re-checks carriers of values that became shared and counts a batch's shared values
 * before scoring it (Splink fake_1000: 7 of 1,719 linked pairs differ). So the benchmark's figures
 * come from the store (bench/mpiStore.ts); this serves unit tests and `bench/mpi.js --linker memory`
 * for looking into misses. A block that reached `maxBlock` records is
 * no longer a source of candidates (a key that common says little: 张伟 has thousands of holders,
 * and its first hundred are no better candidates than any other), which keeps the cost per record
 * bounded as the population grows. The population's own counts of shared values (phone,
 * address, identifiers) follow every record added, as the store's `mpi_shared_value` does. A
 * record that matches two golden patients cleanly joins them (`bridgedGoldens`, `mayJoin`), as the
 * store's sync does at the end of its round.
 */
import { blockingKeys, type PersonFeatures } from './features';
import { bridgedGoldens, decide, mayJoin, modelForPopulation, SharedValueTally, type Candidate, type MatchDecision, type MatchModel } from './matcher';

export interface LinkResult {
  goldenId: string;
  decision: MatchDecision;
}

export class InMemoryLinker {
  private readonly blocks = new Map<string, number[]>();
  private readonly records: Array<{ features: PersonFeatures; goldenId: string }> = [];
  /** Golden id → its records (indexes); a joined golden patient's records move to the one it joined. */
  private readonly members = new Map<string, number[]>();
  /** A joined golden id → the one it joined (records keep their old id until next read). */
  private readonly joined = new Map<string, string>();
  /** Golden patients joined by a bridge. */
  joins = 0;
  private nextGolden = 1;
  private readonly shared = new SharedValueTally();
  private readonly model: MatchModel;
  comparisons = 0;

  /** `model` as it is for the population to be linked (its prior); the shared-value counts are the linker's own. */
  constructor(
    model: MatchModel,
    private readonly maxBlock = 100,
  ) {
    this.model = modelForPopulation(model, model.trainedOn.records, this.shared);
  }

  add(features: PersonFeatures): LinkResult {
    // The record is part of the population it is matched in (as in the store, which counts it first).
    this.shared.add(features);
    const keys = blockingKeys(features);
    const seen = new Set<number>();
    const candidates: Candidate[] = [];
    for (const key of keys) {
      const block = this.blocks.get(key);
      if (!block || block.length >= this.maxBlock) continue;
      for (const i of block) {
        if (seen.has(i)) continue;
        seen.add(i);
        const r = this.records[i]!;
        r.goldenId = this.current(r.goldenId);
        candidates.push({ goldenId: r.goldenId, features: r.features });
      }
    }
    this.comparisons += candidates.length;
    const decision = decide(this.model, features, candidates);
    const goldenId = decision.outcome === 'MATCH' && decision.goldenId ? decision.goldenId : `G${this.nextGolden++}`;
    if (decision.outcome === 'MATCH') for (const other of bridgedGoldens(decision)) this.join(this.current(other), goldenId);
    const index = this.records.push({ features, goldenId }) - 1;
    const members = this.members.get(goldenId);
    if (members) members.push(index);
    else this.members.set(goldenId, [index]);
    for (const key of keys) {
      const block = this.blocks.get(key);
      if (!block) this.blocks.set(key, [index]);
      else if (block.length < this.maxBlock) block.push(index);
    }
    return { goldenId, decision };
  }

  /** The golden patient a record of `goldenId` belongs to now. */
  current(goldenId: string): string {
    let g = goldenId;
    for (let next = this.joined.get(g); next; next = this.joined.get(g)) g = next;
    return g;
  }

  private join(from: string, into: string): void {
    if (from === into) return;
    const a = this.members.get(into) ?? [];
    const b = this.members.get(from) ?? [];
    const features = (list: number[]) => list.map((i) => this.records[i]!.features);
    if (!mayJoin(this.model, features(a), features(b))) return;
    this.members.set(into, a.concat(b));
    this.members.delete(from);
    this.joined.set(from, into);
    this.joins++;
  }
}
