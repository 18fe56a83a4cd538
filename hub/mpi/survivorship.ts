/**
 * Survivorship: which value of which source a golden patient shows, per field, and why. Pure.
 * - resident ID: a valid one (check digit right, agreeing with its record) before a weak one; then the latest.
 * - name: written in Hanzi (simplified) before pinyin-only spellings; then the latest.
 * - birth date: the one the valid resident ID states; else the value most sources agree on; then the latest.
 * - sex: the valid resident ID's; else the latest.
 * - phone, address: the latest (people move and change numbers).
 */
import { featuresOf, normaliseDate, type PersonRecord } from './features';
import { hasHan, normaliseName } from './names';

export interface SourceState {
  memberId: string;
  mrn: string;
  record: PersonRecord;
  /** ISO time of the event that last changed it. */
  eventTime?: string | null;
}

export interface GoldenDemographics {
  family?: string;
  given?: string;
  birthDate?: string;
  sex?: 'M' | 'F';
  residentId?: string;
  residentIdValid?: boolean;
  phone?: string;
  address?: string;
  /** field → `member|mrn` of the source it was taken from. */
  from: Record<string, string>;
}

export function survivorship(sources: SourceState[]): GoldenDemographics {
  const latestFirst = [...sources].sort((a, b) => (b.eventTime ?? '').localeCompare(a.eventTime ?? ''));
  const out: GoldenDemographics = { from: {} };
  const key = (s: SourceState) => `${s.memberId}|${s.mrn}`;
  const features = new Map(latestFirst.map((s) => [s, featuresOf({ ...s.record, id: key(s) })]));
  const strong = latestFirst.find((s) => features.get(s)!.ridStrong);
  const anyRid = strong ?? latestFirst.find((s) => features.get(s)!.rid);
  if (anyRid) {
    const rid = features.get(anyRid)!.rid!;
    out.residentId = rid.value;
    out.residentIdValid = !!strong;
    out.from.residentId = key(anyRid);
  }
  const named = latestFirst.find((s) => s.record.family && hasHan(s.record.family)) ?? latestFirst.find((s) => s.record.family || s.record.given);
  if (named) {
    const han = hasHan(`${named.record.family ?? ''}${named.record.given ?? ''}`);
    out.family = han ? normaliseName(named.record.family) : named.record.family;
    out.given = han ? normaliseName(named.record.given) : named.record.given;
    out.from.name = key(named);
  }
  const strongBirth = strong ? features.get(strong)!.rid!.birthDate : undefined;
  if (strongBirth) {
    out.birthDate = strongBirth;
    out.from.birthDate = key(strong!);
  } else {
    const counts = new Map<string, { n: number; first: SourceState }>();
    for (const s of latestFirst) {
      const b = normaliseDate(s.record.birthDate);
      if (!b) continue;
      const c = counts.get(b);
      if (c) c.n++;
      else counts.set(b, { n: 1, first: s });
    }
    const best = [...counts.entries()].sort((a, b) => b[1].n - a[1].n)[0];
    if (best) {
      out.birthDate = best[0];
      out.from.birthDate = key(best[1].first);
    }
  }
  const sexSource = strong ?? latestFirst.find((s) => features.get(s)!.sex);
  if (sexSource) {
    out.sex = strong ? features.get(strong)!.rid!.sex : features.get(sexSource)!.sex;
    out.from.sex = key(sexSource);
  }
  for (const field of ['phone', 'address'] as const) {
    const s = latestFirst.find((x) => x.record[field]);
    if (s) {
      out[field] = s.record[field];
      out.from[field] = key(s);
    }
  }
  return out;
}
