/**
 * A small deterministic PRNG (mulberry32): the same seed gives the same sequence, so what uses it
 * is reproducible — the patient index's training sample, the benchmarks' generated populations,
 * the fuzz suite's mutations (each prints its seed). Not for anything secret.
 */
export function seededRandom(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}
