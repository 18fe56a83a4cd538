/**
 * One sync's memory of the index's blocks. A bulk sync (an initial load, a member's back catalogue)
 * asks for the same blocking keys batch after batch — a birth date, a family name in a city — and
 * reading their sources again each time was most of its cost (at 1,000,000 records 621 of 1,899 s,
 * 37 rows per record, each parsed and its features computed again). Here a key read once stays,
 * with the sources the sync adds to it, so a later batch reads only keys it has never seen.
 *
 * It is a copy, so it is kept only while nobody else changes the index: every transaction that
 * writes the index under the exclusive lock takes a number from `mpi_index_writes` (migration 15);
 * a sync that finds a number between its own batches has been overtaken (the pipeline linked a
 * registration, a reviewer decided) and starts again empty. Its own changes to sources already
 * indexed (a re-match) it applies here (`replace`); a golden patient joined into another by a
 * bridge is followed (`join`, `current`); a member merge, which moves many sources at once,
 * empties it.
 */
import type { PersonFeatures } from './features';
import type { Candidate } from './matcher';

/** A source as a candidate; `stamp` marks the record that last took it (one source under several keys is scored once). */
export interface CachedCandidate extends Candidate {
  stamp?: number;
  /** Replaced or gone: lists still holding it skip it. */
  stale?: boolean;
}

/**
 * Above this many keys the copy starts again empty, between rounds. The 1M bench's 1,000,000
 * generated records have 2.5 million distinct keys (6.9 a record); the bench's process was at
 * 2.2 GB resident at 416,000 records (top). This bound is about three times the 1M key count.
 */
const MAX_KEYS = 8_000_000;

const NONE: readonly CachedCandidate[] = [];

export class BlockCache {
  /** Key → its sources, in index order, at most the cap; a key present here is complete. */
  private readonly byKey = new Map<string, CachedCandidate[]>();
  /** Source id (`member|mrn`) → its one candidate object. */
  private readonly sources = new Map<string, CachedCandidate>();
  /** Keys with the cap's number of sources: no longer a source of candidates (keys only gain sources). */
  readonly full = new Set<string>();
  /** The write number this sync took last; another one in between means the index changed under it. */
  private lastWrite: bigint | undefined;
  private stamps = 0;
  /** Golden ids joined into another this sync → the one joined (candidates still carry the old id until read). */
  private readonly joined = new Map<string, string>();

  constructor(
    readonly cap: number,
    private readonly maxKeys = MAX_KEYS,
  ) {}

  /**
   * The index's write number this round took under the exclusive lock: the copy is dropped if
   * someone else took one since this sync's last round. False when it was.
   */
  claim(write: bigint): boolean {
    const current = this.lastWrite === undefined || write === this.lastWrite + 1n;
    if (!current) this.clear();
    this.lastWrite = write;
    return current;
  }

  clear(): void {
    this.byKey.clear();
    this.sources.clear();
    this.full.clear();
    this.joined.clear();
  }

  /** Golden patient `from` was joined into `into` (its sources moved in the index). */
  join(from: string, into: string): void {
    if (from !== into) this.joined.set(from, into);
  }

  /** The golden patient a candidate carrying `goldenId` belongs to now. */
  current(goldenId: string): string {
    let g = goldenId;
    for (let next = this.joined.get(g); next !== undefined; next = this.joined.get(g)) g = next;
    return g;
  }

  /**
   * Between rounds only (a batch being scored relies on the keys read for it and for the batch
   * after it): start again empty when the copy has grown past its bound.
   */
  trim(): void {
    if (this.byKey.size > this.maxKeys) this.clear();
  }

  /** A number no record has used to mark its candidates (CachedCandidate.stamp). */
  stamp(): number {
    return ++this.stamps;
  }

  /** The keys of these that must be read from the index (neither known nor full). */
  missing(keys: Iterable<string>): string[] {
    const out: string[] = [];
    for (const k of keys) if (!this.byKey.has(k) && !this.full.has(k)) out.push(k);
    return out;
  }

  /** What the index holds under keys just read (`rows` in index order); keys without rows are empty. */
  load(keys: string[], rows: Array<{ key: string; id: string; goldenId: string; features: () => PersonFeatures }>): void {
    for (const k of keys) if (!this.full.has(k)) this.byKey.set(k, []);
    for (const r of rows) {
      let c = this.sources.get(r.id);
      if (!c) this.sources.set(r.id, (c = { goldenId: r.goldenId, features: r.features() }));
      const list = this.byKey.get(r.key);
      if (list && list.length < this.cap) list.push(c);
    }
    for (const k of keys) if ((this.byKey.get(k)?.length ?? 0) >= this.cap) this.markFull(k);
  }

  /**
   * Sources under this key, none when it is full (a full key has no list) or was not read; skip
   * the `stale` ones. (An array, not a generator: a generator object per key and record was a
   * tenth of the bulk sync's JavaScript.)
   */
  under(key: string): readonly CachedCandidate[] {
    return this.byKey.get(key) ?? NONE;
  }

  /** A source the sync just indexed (its keys were read or are new). */
  add(id: string, goldenId: string, features: PersonFeatures, keys: string[]): void {
    const c: CachedCandidate = { goldenId, features };
    this.sources.set(id, c);
    for (const key of keys) {
      // A key that was not read is not known complete: left to be read with this source in it. (A
      // full key has no list either.)
      const list = this.byKey.get(key);
      if (!list) continue;
      list.push(c);
      if (list.length >= this.cap) this.markFull(key);
    }
  }

  /** A source the sync matched again: its old entry goes, the new one is added under its keys. */
  replace(id: string, goldenId: string | undefined, features: PersonFeatures, keys: string[]): void {
    const old = this.sources.get(id);
    if (old) {
      old.stale = true;
      this.sources.delete(id);
    }
    if (goldenId) this.add(id, goldenId, features, keys);
  }

  private markFull(key: string): void {
    this.full.add(key);
    this.byKey.delete(key);
  }
}
