/**
 * mergeRounds (stages/merge.ts): which messages one merge statement may apply together. A round
 * never upserts a source patient or a resource twice — except a resource restated unchanged, which
 * it writes once — and messages that share a key stay in their order.
 */
import { mergeRounds, type MergeItem } from './merge';

const org = { resourceType: 'Organization', id: 'org-m1', name: 'Member 1' };
const orgRenamed = { ...org, name: 'Member 1 (renamed)' };

function item(rawId: number, mrn: string | undefined, resources: Array<Record<string, unknown>>, retired?: string): MergeItem {
  const patient = mrn === undefined ? undefined : { mrn, authority: 'm1', demographics: {} };
  return {
    message: {
      patient: retired ? { mrn: retired, authority: 'm1', demographics: {} } : patient,
      ...(retired && patient ? { merge: { survivor: patient, retired: { mrn: retired, authority: 'm1' } } } : {}),
      eventTime: new Date(Date.UTC(2026, 0, 1, 0, 0, rawId)),
      eventType: 'A08',
      resources: resources as MergeItem['message']['resources'],
      mappingVersions: [],
    } as MergeItem['message'],
    ctx: { rawId, memberId: 'm1', charset: 'UTF-8' },
  };
}

const ids = (rounds: ReturnType<typeof mergeRounds>) => rounds.map((round) => round.map((p) => p.item.ctx.rawId));

it('different patients restating one resource unchanged share a round', () => {
  const rounds = mergeRounds([1, 2, 3].map((k) => item(k, `MRN${k}`, [org, { resourceType: 'Observation', id: `obs-${k}` }])));
  expect(ids(rounds)).toEqual([[1, 2, 3]]);
});

it("a patient's second message, and a resource stated with other content, wait for the next round", () => {
  const rounds = mergeRounds([item(1, 'A', [org]), item(2, 'B', [org]), item(3, 'A', [org]), item(4, 'C', [orgRenamed]), item(5, 'D', [org])]);
  // 3 repeats patient A; 4 renames the organisation (after 3's round); 5 states the old content again (after 4)
  expect(ids(rounds)).toEqual([[1, 2], [3], [4], [5]]);
});

it('a merge holds the retired number too; messages without a patient only meet on resources', () => {
  const rounds = mergeRounds([item(1, 'OLD', []), item(2, 'NEW', [], 'OLD'), item(3, undefined, [{ resourceType: 'Device', id: 'd1' }]), item(4, 'NEW', [])]);
  expect(ids(rounds)).toEqual([[1, 3], [2], [4]]);
});
