/**
 * A sync's copy of the blocks (hub/mpi/blockCache.ts): a key read is complete and gains the
 * sources the sync adds; a key not read is left to be read; a full key gives no candidates and is
 * not read again; a replaced source is skipped; the copy empties past its bound. The copy's
 * invalidation by other writers is tested on PostgreSQL (test/mpi-index.int.test.ts).
 */
import { BlockCache } from '../hub/mpi/blockCache';
import { featuresOf } from '../hub/mpi/features';

const person = (id: string) => featuresOf({ id, family: '王', given: '芳', birthDate: '19900101' });
const ids = (list: readonly { features: { id: string }; stale?: boolean }[]) => list.filter((c) => !c.stale).map((c) => c.features.id);

test('a key read stays complete, with the sources added under it; an unread key is left to be read', () => {
  const blocks = new BlockCache(3);
  expect(blocks.missing(['a', 'b'])).toEqual(['a', 'b']);
  blocks.load(['a', 'b'], [{ key: 'a', id: 'm|1', goldenId: 'G1', features: () => person('m|1') }]);
  expect(blocks.missing(['a', 'b', 'c'])).toEqual(['c']);
  expect(ids(blocks.under('a'))).toEqual(['m|1']);
  expect(ids(blocks.under('b'))).toEqual([]);
  blocks.add('m|2', 'G1', person('m|2'), ['a', 'b', 'c']);
  expect(ids(blocks.under('a'))).toEqual(['m|1', 'm|2']);
  expect(ids(blocks.under('b'))).toEqual(['m|2']);
  // 'c' was never read: the index has sources under it that the copy does not.
  expect(ids(blocks.under('c'))).toEqual([]);
  expect(blocks.missing(['c'])).toEqual(['c']);
});

test('one object per source under all its keys; a full key gives none and is not read again', () => {
  const blocks = new BlockCache(2);
  const rows = ['a', 'b'].map((key) => ({ key, id: 'm|1', goldenId: 'G1', features: () => person('m|1') }));
  blocks.load(['a', 'b'], rows);
  expect(blocks.under('a')[0]).toBe(blocks.under('b')[0]);
  blocks.add('m|2', 'G2', person('m|2'), ['a']);
  expect(blocks.full.has('a')).toBe(true);
  expect(blocks.under('a')).toHaveLength(0);
  expect(blocks.missing(['a', 'b'])).toEqual([]);
  blocks.load(['a'], rows);
  expect(blocks.under('a')).toHaveLength(0);
});

test('a source matched again replaces its entry; past its bound the copy starts again empty', () => {
  const blocks = new BlockCache(10, 2);
  blocks.load(['a', 'b'], [{ key: 'a', id: 'm|1', goldenId: 'G1', features: () => person('m|1') }]);
  blocks.replace('m|1', 'G9', person('m|1'), ['b']);
  expect(ids(blocks.under('a'))).toEqual([]);
  expect(blocks.under('b').map((c) => c.goldenId)).toEqual(['G9']);
  blocks.trim();
  expect(blocks.missing(['a'])).toEqual([]);
  blocks.load(['c'], []);
  blocks.trim();
  expect(blocks.missing(['a', 'b', 'c'])).toEqual(['a', 'b', 'c']);
});
