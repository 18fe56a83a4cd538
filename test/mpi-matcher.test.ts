/**
 * The matcher as a library: resident-ID validation, Chinese name normalisation, comparison levels,
 * the deterministic guards, explainable scores, training that does not collapse, and accuracy on a
 * labelled set (so a regression in matching fails a test, not only the benchmark).
 */
import { parseResidentId, makeResidentId, residentIdCheckChar } from '../hub/mpi/residentId';
import { normaliseName, soundKey } from '../hub/mpi/names';
import { blockingKeys, featuresOf, type PersonRecord } from '../hub/mpi/features';
import { scorePair, trainModel, decide, modelForPopulation, SharedValueTally, HOUSEHOLD, bridgedGoldens, mayJoin, reviewAlternatives, type MatchModel } from '../hub/mpi/matcher';
import { survivorship } from '../hub/mpi/survivorship';
import { generateChineseSet, loadFebrl, loadSplinkFake1000 } from '../bench/mpiData';
import defaultModel from '../hub/mpi/defaultModel.json';

const model = defaultModel as unknown as MatchModel;

describe('resident ID (GB 11643, ISO 7064 MOD 11-2)', () => {
  test('a published example validates; a lower-case x is the same check character', () => {
    // 11010519491231002X is the standard's own example number.
    expect(parseResidentId('11010519491231002X')).toEqual({ value: '11010519491231002X', valid: true, birthDate: '19491231', sex: 'F' });
    expect(parseResidentId('11010519491231002x')).toMatchObject({ value: '11010519491231002X', valid: true });
    expect(residentIdCheckChar('11010519491231002')).toBe('X');
  });
  test('birth date and sex are read from it; a wrong check digit or an impossible date is not valid', () => {
    const id = makeResidentId('330106', '19800315', 123, 'M');
    expect(parseResidentId(id)).toMatchObject({ valid: true, birthDate: '19800315', sex: 'M' });
    const typo = id.slice(0, 10) + ((Number(id[10]) + 1) % 10) + id.slice(11);
    expect(parseResidentId(typo)).toMatchObject({ valid: false, problem: 'check-digit' });
    expect(parseResidentId('12345')).toMatchObject({ valid: false, problem: 'shape' });
    const feb30 = '33010619800230123';
    expect(parseResidentId(feb30 + residentIdCheckChar(feb30))).toMatchObject({ valid: false, problem: 'birth-date' });
  });
  test('a failing check digit is weak evidence, never the deterministic key', () => {
    const id = makeResidentId('330106', '19800315', 123, 'M');
    const bad = id.slice(0, 17) + (id[17] === '0' ? '1' : '0');
    const a = featuresOf({ id: 'a', family: '王', given: '芳', residentId: bad });
    const b = featuresOf({ id: 'b', family: '王', given: '芳', residentId: bad });
    const s = scorePair(model, a, b);
    expect(s.fields.find((f) => f.field === 'rid')!.label).toMatch(/weak/);
    expect(s.rule).toBeUndefined();
    const strong = scorePair(model, featuresOf({ id: 'a', family: '王', given: '芳', residentId: id }), featuresOf({ id: 'b', family: '王', given: '芳', residentId: id.toLowerCase() }));
    expect(strong).toMatchObject({ rule: 'resident-id', outcome: 'MATCH' });
  });
});

describe('names', () => {
  test('traditional → simplified; surname readings; LV / LU / LYU / LÜ are one sound', () => {
    expect(normaliseName('張偉')).toBe('张伟');
    expect(normaliseName('歐陽 麗華')).toBe('欧阳丽华');
    expect(soundKey('单', true)).toBe('shan');
    expect(soundKey('曾', true)).toBe('zeng');
    expect(soundKey('吕', true)).toBe('lu');
    for (const spelling of ['LV', 'Lu', 'LYU', 'Lü']) expect(soundKey(normaliseName(spelling), true)).toBe('lu');
  });
  test('Hanzi and pinyin forms of one name agree on sound; homophones too', () => {
    const a = featuresOf({ id: 'a', family: '吕', given: '秀兰' });
    const b = featuresOf({ id: 'b', family: 'LYU', given: 'Xiu Lan' });
    const c = featuresOf({ id: 'c', family: '呂', given: '秀岚' });
    expect(scorePair(model, a, b).fields.slice(0, 2).map((f) => f.label)).toEqual(['same sound', 'same sound']);
    expect(scorePair(model, a, c).fields.slice(0, 2).map((f) => f.label)).toEqual(['exact', 'same sound']);
  });
});

test('day/month transposition is its own level and shares a blocking key', () => {
  const a = featuresOf({ id: 'a', family: '王', given: '芳', birthDate: '19800305' });
  const b = featuresOf({ id: 'b', family: '王', given: '芳', birthDate: '1980-05-03' });
  expect(scorePair(model, a, b).fields.find((f) => f.field === 'birth')!.label).toBe('day/month transposed');
  expect(blockingKeys(a).filter((k) => blockingKeys(b).includes(k)).length).toBeGreaterThan(0);
});

test('the birth date alone is a blocking key for Latin-script names (both names can be mistyped in sound), not for Hanzi ones', () => {
  const shared = (a: PersonRecord, b: PersonRecord) => blockingKeys(featuresOf(a)).filter((k) => blockingKeys(featuresOf(b)).includes(k));
  // FEBRL-style typos in both names: only the birth date brings the two together.
  expect(shared({ id: 'a', family: 'Griffiths', given: 'Allen', birthDate: '19711024' }, { id: 'b', family: 'Grifihs', given: 'Alan', birthDate: '19711024' })).toEqual(['b:19711024']);
  // Hanzi (and their pinyin) meet on the name sounds; the birth date alone would add ~30 strangers at 1M.
  expect(shared({ id: 'c', family: '王', given: '芳', birthDate: '19711024' }, { id: 'd', family: '李', given: '强', birthDate: '19711024' })).toEqual([]);
  expect(shared({ id: 'e', family: '王', given: '芳', birthDate: '19711024' }, { id: 'f', family: 'WANG', given: 'Fang', birthDate: '19711024' }).length).toBeGreaterThan(0);
  // A record without names keeps the birth-date key.
  expect(blockingKeys(featuresOf({ id: 'g', birthDate: '19711024', phone: '13900000009' }))).toContain('b:19711024');
});

test('a birth date within a month (also after a one-keystroke year) and within two years are their own levels; a sibling that close is still kept apart', () => {
  const level = (x: string, y: string) => scorePair(model, featuresOf({ id: 'a', family: '王', given: '芳', birthDate: x }), featuresOf({ id: 'b', family: '王', given: '芳', birthDate: y })).fields.find((f) => f.field === 'birth')!.label;
  expect(level('19710524', '19710624')).toBe('one part differs');
  expect(level('19770913', '19771010')).toBe('within a month');
  expect(level('19761228', '19770110')).toBe('within a month');
  expect(level('20080827', '20180901')).toBe('within a month');
  expect(level('19850521', '19860301')).toBe('within two years');
  // Within ten years (a decade mistyped on a date misremembered: Splink's last date level) is weak, not "different".
  expect(level('19850521', '19900521')).toBe('within ten years');
  expect(level('19850521', '19960522')).toBe('different');
  // Weights are learned: the default model (Chinese registrations, where a date is mistyped in one
  // part, not drifted) counts a month apart as less than one part off, and a wholly different date lowest.
  const w = (x: string, y: string) => scorePair(model, featuresOf({ id: 'a', birthDate: x }), featuresOf({ id: 'b', birthDate: y })).fields.find((f) => f.field === 'birth')!.weight;
  expect(w('19710524', '19710624')).toBeGreaterThan(w('19770913', '19771010'));
  expect(w('19770913', '19771010')).toBeGreaterThan(w('19850521', '19960522'));
  expect(w('19850521', '19860301')).toBeLessThan(0);
  // Two children of one household a year apart, different given names: never one person.
  const home = { family: '李', sex: 'M', address: '浙江省杭州市上城区人民路5号', phone: '13900000001' };
  const older = featuresOf({ id: 'o', ...home, given: '明', birthDate: '20100601' });
  const younger = featuresOf({ id: 'y', ...home, given: '亮', birthDate: '20110801' });
  expect(scorePair(model, older, younger).outcome).toBe('NO_MATCH');
});

test('a shared placeholder phone and address never link people whose names or birth dates disagree', () => {
  // 13800138000 is China's best-known placeholder number; registration desks type it, and the
  // hospital's own address, for many patients. Found in the demo: these pairs were auto-linked.
  const desk = { phone: '13800138000', address: '浙江省杭州市人民路1号' };
  const wang = featuresOf({ id: 'w', ...desk, family: '王', given: '伟', sex: 'M', birthDate: '19410202' });
  const zhang = featuresOf({ id: 'z', ...desk, family: '张', given: '娟', sex: 'F', birthDate: '19420303' });
  // However much contact data weighs in a population (here: a model whose threshold any pair
  // passes), the guards decide.
  const lenient: MatchModel = { ...model, matchThreshold: -1000, reviewThreshold: -1000 };
  expect(scorePair(lenient, wang, zhang)).toMatchObject({ outcome: 'NO_MATCH', rule: 'name-conflict' });
  // Homophone given names (䶮 / 艳, both yan) in one family, 46 years apart: a person decides.
  const mother = featuresOf({ id: 'm', ...desk, family: '黄', given: '䶮', sex: 'F', birthDate: '19460707' });
  const daughter = featuresOf({ id: 'd', ...desk, family: '黄', given: '艳', sex: 'F', birthDate: '19920525' });
  expect(scorePair(lenient, mother, daughter)).toMatchObject({ outcome: 'POSSIBLE_MATCH', rule: 'birth-conflict' });
  // The same person at two members still links.
  expect(scorePair(model, wang, featuresOf({ id: 'w2', ...desk, family: '王', given: '伟', sex: 'M', birthDate: '19410202' })).outcome).toBe('MATCH');
});

test('contact data many different people carry weighs little (term frequency of shared values); a household\'s does not', () => {
  const desk = { phone: '13800138000', address: '浙江省杭州市人民路1号' };
  const liu = featuresOf({ id: 'a', ...desk, family: '刘', given: '芳', sex: 'F', birthDate: '19800315' });
  const lin = featuresOf({ id: 'b', ...desk, family: '林', given: '芳', sex: 'F', birthDate: '19800316' });
  // A population of 200 registrations, 60 different people of them given the desk's contact data.
  const tally = new SharedValueTally();
  const families = ['王', '李', '张', '刘', '陈', '杨', '赵', '黄', '周', '吴'];
  const givens = ['伟', '芳', '娜', '敏', '静', '丽'];
  for (let i = 0; i < 60; i++) tally.add(featuresOf({ id: `d${i}`, ...desk, family: families[i % 10], given: givens[Math.floor(i / 10)], birthDate: '19700101' }));
  for (let i = 0; i < 140; i++) tally.add(featuresOf({ id: `o${i}`, family: '孙', given: `x${i}`, phone: `139${10_000_000 + i}`, address: `浙江省杭州市某路${i}号` }));
  // Counted as ordinary contact data the pair links (what the demo did); with the counts it does not.
  expect(scorePair(modelForPopulation(model, 200), liu, lin).outcome).toBe('MATCH');
  const counted = modelForPopulation(model, 200, tally);
  const s = scorePair(counted, liu, lin);
  expect(s.outcome).not.toBe('MATCH');
  const phone = s.fields.find((f) => f.field === 'phone')!;
  expect(phone.tf).toBeCloseTo((60 - HOUSEHOLD) / 200, 6);
  expect(phone.weight).toBeLessThan(2);
  expect(phone.weight).toBeGreaterThanOrEqual(0);
  // The same person with the desk's contact data still links, on name, birth date and sex.
  expect(scorePair(counted, liu, featuresOf({ id: 'c', ...desk, family: '劉', given: '芳', sex: 'F', birthDate: '19800315' })).outcome).toBe('MATCH');
  // A phone four people of one household share keeps its full weight.
  const home = new SharedValueTally();
  for (const given of ['明', '亮', '红', '军']) home.add(featuresOf({ id: given, family: '李', given, phone: '13900000001' }));
  const a = featuresOf({ id: 'x', family: '李', given: '明', phone: '13900000001' });
  const b = featuresOf({ id: 'y', family: '李', given: '明', phone: '13900000001' });
  expect(scorePair(modelForPopulation(model, 200, home), a, b).fields.find((f) => f.field === 'phone')).toEqual(scorePair(modelForPopulation(model, 200), a, b).fields.find((f) => f.field === 'phone'));
  // One person registered at several members is one person, however many records: their phone is not shared.
  const one = new SharedValueTally();
  for (let i = 0; i < 10; i++) one.add(featuresOf({ id: `r${i}`, family: '王', given: i % 2 ? 'Wei' : '伟', phone: '13600000000' }));
  expect(one.table('phone')).toEqual({});
});

test('a model stored before the birth levels were added still scores (its levels are mapped)', () => {
  const legacy: MatchModel = { ...model, fields: { ...model.fields, birth: { m: [0.86, 0.02, 0.03, 0.09], u: [0.00015, 0.00001, 0.0017, 0.998] } } };
  const a = featuresOf({ id: 'a', family: '王', given: '芳', birthDate: '19770913' });
  const close = scorePair(legacy, a, featuresOf({ id: 'b', family: '王', given: '芳', birthDate: '19771010' })).fields.find((f) => f.field === 'birth')!;
  const far = scorePair(legacy, a, featuresOf({ id: 'c', family: '王', given: '芳', birthDate: '19780301' })).fields.find((f) => f.field === 'birth')!;
  expect(close.weight).toBeCloseTo(Math.log2(0.03 / 0.0017), 2);
  expect(far.weight).toBeCloseTo(Math.log2(0.09 / 0.998), 2);
});

test('family and given name swapped with a typo in one of them still agree, no more than a close spelling', () => {
  const a = featuresOf({ id: 'a', given: 'Moore', family: 'Oscar' });
  const b = featuresOf({ id: 'b', given: 'Osacar', family: 'Moore' });
  const f = scorePair(model, a, b).fields;
  const levels = ['family', 'given'].map((x) => f.find((s) => s.field === x)!.level).sort();
  expect(levels).toEqual([2, 3]);
  // Two different Chinese names are not made to agree by trying them swapped.
  const c = scorePair(model, featuresOf({ id: 'c', family: '王', given: '李' }), featuresOf({ id: 'd', family: '张', given: '伟' })).fields;
  expect(c.find((s) => s.field === 'family')!.level).toBe(4);
});

test('at 200,000 records a given name the model never saw is not taken as one in 200,000: same name, other birth date is a new person', () => {
  const big = modelForPopulation(model, 200_000);
  expect(big.tfFloor).toBe(model.tfFloor);
  const a = featuresOf({ id: 'a', family: '张', given: '骁骐', birthDate: '19490704', sex: 'M' });
  const b = featuresOf({ id: 'b', family: '张', given: '骁骐', birthDate: '19420104', sex: 'M', phone: '13953141463' });
  expect(scorePair(big, a, b).outcome).toBe('NO_MATCH');
  // The same person with a mistyped phone digit still links.
  const c = featuresOf({ id: 'c', family: '张', given: '骁骐', birthDate: '19490704', sex: 'M', phone: '13953141463', address: '浙江省杭州市余杭区文一路18号' });
  const d = featuresOf({ id: 'd', family: '張', given: '驍騏', birthDate: '19490704', sex: 'M', phone: '13953141464', address: '浙江省杭州市余杭区文一路18号' });
  expect(scorePair(big, c, d).outcome).toBe('MATCH');
});

test('a resident ID typed into the phone field is read as the resident ID', () => {
  const id = makeResidentId('330106', '19800315', 5, 'F');
  const f = featuresOf({ id: 'a', family: '王', given: '芳', phone: id });
  expect(f.rid?.value).toBe(id);
  expect(f.phone).toBeUndefined();
});

describe('guards and outcomes', () => {
  const home = { family: '李', birthDate: '20100601', sex: 'M', address: '浙江省杭州市上城区人民路5号', phone: '13900000001' };
  test('twins with their own valid IDs are two people; without IDs they go to review, never auto-linked', () => {
    const t1 = featuresOf({ id: 't1', ...home, given: '明', residentId: makeResidentId('330102', '20100601', 11, 'M') });
    const t2 = featuresOf({ id: 't2', ...home, given: '亮', residentId: makeResidentId('330102', '20100601', 13, 'M') });
    expect(scorePair(model, t1, t2)).toMatchObject({ outcome: 'NO_MATCH', rule: 'resident-id-conflict' });
    const n1 = featuresOf({ id: 'n1', ...home, given: '明' });
    const n2 = featuresOf({ id: 'n2', ...home, given: '亮' });
    expect(scorePair(model, n1, n2)).toMatchObject({ outcome: 'POSSIBLE_MATCH', rule: 'twin-guard' });
  });
  test('a record linked to its person is not put in review with that person\'s twin; one not linked is', () => {
    const n1 = featuresOf({ id: 'n1', ...home, given: '明' });
    const n2 = featuresOf({ id: 'n2', ...home, given: '亮' });
    const again = featuresOf({ id: 'n1b', ...home, given: '明' });
    const linked = decide(model, again, [
      { goldenId: 'G1', features: n1 },
      { goldenId: 'G2', features: n2 },
    ]);
    expect(linked).toMatchObject({ outcome: 'MATCH', goldenId: 'G1' });
    expect(linked.alternatives).toEqual([expect.objectContaining({ goldenId: 'G2', rule: 'twin-guard' })]);
    expect(reviewAlternatives(linked)).toEqual([]);
    // A third brother, linked to neither: both are proposed to the reviewer.
    const third = featuresOf({ id: 'n3', ...home, given: '红' });
    const open = decide(model, third, [
      { goldenId: 'G1', features: n1 },
      { goldenId: 'G2', features: n2 },
    ]);
    expect(open.outcome).toBe('POSSIBLE_MATCH');
    expect(reviewAlternatives(open).map((a) => a.goldenId)).toEqual([open.goldenId === 'G1' ? 'G2' : 'G1']);
  });
  test('a linked record\'s alternatives that a guard calls two people (another passport, a namesake reached nowhere) are no review items; too little evidence is', () => {
    const alt = (goldenId: string, weight: number, rule?: string) => ({ goldenId, candidateId: `${goldenId}-1`, weight, outcome: 'POSSIBLE_MATCH' as const, ...(rule ? { rule } : {}), fields: [] });
    const alternatives = [alt('G2', 14, 'identifier-differs'), alt('G3', 12, 'contact-conflict'), alt('G4', 3), alt('G5', 9, 'name-only'), alt('G6', 8, 'household-guard')];
    expect(reviewAlternatives({ outcome: 'MATCH', goldenId: 'G1', alternatives }).map((a) => a.goldenId)).toEqual(['G4', 'G5']);
    // Linked to no one: every alternative is the reviewer's.
    expect(reviewAlternatives({ outcome: 'POSSIBLE_MATCH', goldenId: 'G1', alternatives }).map((a) => a.goldenId)).toEqual(['G2', 'G3', 'G4', 'G5', 'G6']);
  });
  test('Hanzi family names that differ by sound are never auto-linked on given name and birth date alone', () => {
    const a = { id: 'a', family: '欧阳', given: '明轩', birthDate: '19750611', sex: 'M' };
    const b = { ...a, id: 'b', family: '司马' };
    expect(scorePair(model, featuresOf(a), featuresOf(b))).toMatchObject({ outcome: 'POSSIBLE_MATCH', rule: 'surname-conflict' });
    // An identifier in common is not left to the rule (the score and the other rules decide).
    const residentId = makeResidentId('330106', '19750611', 5, 'M');
    expect(scorePair(model, featuresOf({ ...a, residentId }), featuresOf({ ...b, residentId })).rule).not.toBe('surname-conflict');
  });
  test('a sibling at one address is not auto-linked: Hanzi given names that differ, or sex and given name both', () => {
    const address = '浙江省杭州市拱墅区解放路150号23幢1189室';
    // Birth dates transposed (not the twin guard's exact date), given names different.
    const a = featuresOf({ id: 'a', family: '冯', given: '瑞秀', birthDate: '20090506', sex: 'F', address });
    const b = featuresOf({ id: 'b', family: '馮', given: '宏梅', birthDate: '20090605', sex: 'F', address });
    expect(scorePair(model, a, b)).toMatchObject({ outcome: 'POSSIBLE_MATCH', rule: 'given-name-conflict' });
    // Homophones are the same name: still linked.
    const c = featuresOf({ id: 'c', family: '冯', given: '瑞琇', birthDate: '20090605', sex: 'F', address });
    expect(scorePair(model, featuresOf({ id: 'd', family: '冯', given: '瑞秀', birthDate: '20090605', sex: 'F', address }), c).rule).not.toBe('given-name-conflict');
    // One birth date and phone, given names close in spelling, sex different: twins of different sex.
    const boy = featuresOf({ id: 'e', family: '周', given: '濤偉', birthDate: '20131127', sex: 'M', phone: '18675629221' });
    const girl = featuresOf({ id: 'f', family: '周', given: '涛飞', birthDate: '20131127', sex: 'F', phone: '18675629221' });
    expect(scorePair(model, boy, girl)).toMatchObject({ outcome: 'POSSIBLE_MATCH', rule: 'sex-conflict' });
    // A slip in the sex field alone, the same name: linked.
    expect(scorePair(model, boy, featuresOf({ id: 'g', family: '周', given: '涛伟', birthDate: '20131127', sex: 'F', phone: '18675629221' })).outcome).toBe('MATCH');
  });
  test('a newborn registered under the mother\'s ID is not the mother', () => {
    const motherId = makeResidentId('330102', '19880101', 21, 'F');
    const mother = featuresOf({ id: 'm', family: '王', given: '芳', birthDate: '19880101', sex: 'F', residentId: motherId, phone: '13900000002', address: '杭州市人民路1号' });
    const baby = featuresOf({ id: 'b', family: '王', given: '芳之女', birthDate: '20260101', sex: 'F', residentId: motherId, phone: '13900000002', address: '杭州市人民路1号' });
    expect(baby.ridStrong).toBe(false);
    expect(scorePair(model, baby, mother).outcome).toBe('NO_MATCH');
  });
  test('the score explains itself: each field, its level and weight add up to the total', () => {
    const a = featuresOf({ id: 'a', family: '张', given: '伟', birthDate: '19800101', sex: 'M', phone: '13800000000' });
    const b = featuresOf({ id: 'b', family: '張', given: '偉', birthDate: '19800101', sex: 'M', phone: '13800000000' });
    const s = scorePair(model, a, b);
    const sum = model.priorLog2 + s.fields.reduce((t, f) => t + f.weight, 0);
    expect(Math.abs(sum - s.weight)).toBeLessThan(0.01);
    // 张 and 伟 are common: the agreement counts less than on an average value (term frequency).
    const given = s.fields.find((f) => f.field === 'given')!;
    expect(given.tf).toBeGreaterThan(0.005);
    const rare = scorePair(model, featuresOf({ id: 'c', family: '诸葛', given: '孔明', birthDate: '19800101' }), featuresOf({ id: 'd', family: '诸葛', given: '孔明', birthDate: '19800101' }));
    expect(rare.fields[1]!.weight).toBeGreaterThan(given.weight);
  });
  test('a same-sound agreement keeps its level\'s own rarity: 杨 / YANG counts what "same sound" does on average, a rare surname more, never more than exact', () => {
    const family = (x: string, y: string) => scorePair(model, featuresOf({ id: 'a', family: x, given: '睿俊', birthDate: '20210815' }), featuresOf({ id: 'b', family: y, given: '睿俊', birthDate: '20210815' })).fields[0]!;
    const { m, u } = model.fields.family;
    const common = family('杨', 'YANG');
    expect(common.label).toBe('same sound');
    // Before, the level's u was the average exact agreement's (u[0], five times u[1]): 2.1 bits instead of 4.2.
    expect(common.weight).toBeCloseTo(Math.log2(m[1]! / u[1]!), 1);
    const rare = family('诸葛', 'ZHUGE');
    expect(rare.label).toBe('same sound');
    expect(rare.weight).toBeGreaterThan(common.weight);
    expect(rare.weight).toBeLessThan(family('诸葛', '诸葛').weight);
  });
  test('decide picks the best golden patient and lists the others', () => {
    const r = featuresOf({ id: 'r', family: '张', given: '伟', birthDate: '19800101', sex: 'M', phone: '13800000000' });
    const same = featuresOf({ id: 's', family: '张', given: '伟', birthDate: '19800101', sex: 'M', phone: '13800000000' });
    const other = featuresOf({ id: 'o', family: '张', given: '伟', birthDate: '19900101', sex: 'M' });
    const d = decide(model, r, [
      { goldenId: 'G2', features: other },
      { goldenId: 'G1', features: same },
    ]);
    expect(d).toMatchObject({ outcome: 'MATCH', goldenId: 'G1' });
  });
  test('a record that matches two golden patients cleanly bridges them; one the other side tells apart (twins) does not join', () => {
    // A: birth date mistyped, no address; B: given name misspelt, no phone; C has both.
    const address = '浙江省杭州市滨江区江南大道588号3幢1201室';
    const a = featuresOf({ id: 'a', family: '欧阳', given: '明轩', birthDate: '19750611', sex: 'M', phone: '13912345678' });
    const b = featuresOf({ id: 'b', family: '欧阳', given: '民选', birthDate: '19760812', sex: 'M', address });
    const c = featuresOf({ id: 'c', family: '欧阳', given: '明轩', birthDate: '19760812', sex: 'M', phone: '13912345678', address });
    const small = modelForPopulation(model, 10);
    expect(scorePair(small, a, b).outcome).not.toBe('MATCH');
    const d = decide(small, c, [
      { goldenId: 'GA', features: a },
      { goldenId: 'GB', features: b },
    ]);
    expect(d.outcome).toBe('MATCH');
    expect(bridgedGoldens(d)).toEqual([d.goldenId === 'GA' ? 'GB' : 'GA']);
    expect(mayJoin(small, [a], [b])).toBe(true);
    // Twins without IDs (the twin guard) are never joined by a record that resembles both.
    const n1 = featuresOf({ id: 'n1', ...home, given: '明' });
    const n2 = featuresOf({ id: 'n2', ...home, given: '亮' });
    expect(mayJoin(small, [a, n1], [n2])).toBe(false);
  });
});

test('survivorship: valid ID, Hanzi name, ID birth date, latest phone', () => {
  const id = makeResidentId('330106', '19800315', 7, 'M');
  const g = survivorship([
    { memberId: 'm1', mrn: '1', record: { id: '1', family: 'ZHANG', given: 'Wei', birthDate: '19801503', phone: '1', residentId: id.slice(0, 17) + 'Y' }, eventTime: '2026-01-03T00:00:00Z' },
    { memberId: 'm2', mrn: '2', record: { id: '2', family: '張', given: '偉', birthDate: '19800315', residentId: id, phone: '2' }, eventTime: '2026-01-01T00:00:00Z' },
  ]);
  expect(g).toMatchObject({ family: '张', given: '伟', residentId: id, residentIdValid: true, birthDate: '19800315', sex: 'M', phone: '1' });
  expect(g.from).toMatchObject({ residentId: 'm2|2', name: 'm2|2', phone: 'm1|1' });
});

describe('training and accuracy', () => {
  test('m and u are estimated from unlabelled records without collapsing: agreement is evidence, disagreement against', () => {
    const records: PersonRecord[] = loadFebrl(['dataset1.csv']);
    const trained = trainModel(records.map(featuresOf), { randomPairs: 50_000 });
    for (const field of ['family', 'given', 'birth', 'otherId'] as const) {
      const p = trained.fields[field];
      expect(p.m[0]! / p.u[0]!).toBeGreaterThan(50);
      expect(p.m[p.m.length - 1]! / p.u[p.u.length - 1]!).toBeLessThan(0.3);
    }
  });
});

test('an e-mail one typo apart is the same e-mail for the rules; one with another number is only close', () => {
  // A model that has learned e-mail (the built-in one has not: no e-mail in its training set).
  const learned: MatchModel = { ...model, fields: { ...model.fields, email: { m: [0.8, 0.1, 0.05, 0.05], u: [0.0001, 0.0001, 0.01, 0.9898] } } };
  const noah = (id: string, given: string, email: string) => featuresOf({ id, family: 'Rogers', given, birthDate: '20110407', email });
  const typo = scorePair(learned, noah('a', 'Noah', 'noahr@hudson-brown.net'), noah('b', 'Hnoan', 'noahr@hudson-brwn.net'));
  expect(typo.fields.find((f) => f.field === 'email')!.label).toBe('one typo');
  // A scrambled given name beside one person's e-mail mistyped: not the twin guard's case.
  expect(typo.rule).toBeUndefined();
  expect(typo.outcome).toBe('MATCH');
  const other = scorePair(learned, noah('a', 'Noah', 'noah.rogers12@gmail.com'), noah('b', 'Hnoan', 'noah.rogers13@gmail.com'));
  expect(other.fields.find((f) => f.field === 'email')!.label).toBe('close');
  expect(other.rule).toBe('twin-guard');
  // A model stored before the level was added reads "one typo" as its "close".
  const legacy: MatchModel = { ...model, fields: { ...model.fields, email: { m: [0.8, 0.15, 0.05], u: [0.0001, 0.01, 0.9899] } } };
  const w = (m: MatchModel, x: string, y: string) => scorePair(m, noah('a', 'Noah', x), noah('b', 'Noah', y)).fields.find((f) => f.field === 'email')!.weight;
  expect(w(legacy, 'noahr@hudson-brown.net', 'noahr@hudson-brwn.net')).toBeCloseTo(Math.log2(0.15 / 0.01), 2);
});

test('Latin names meet under their Soundex codes in either order (a typo in each part)', () => {
  const a = blockingKeys(featuresOf({ id: 'a', given: 'Caleb', family: 'Rwoe', birthDate: '19921120' }));
  const b = blockingKeys(featuresOf({ id: 'b', given: 'Rowe', family: 'Caleb', birthDate: '19921220' }));
  expect(a.filter((k) => k.startsWith('sx:'))).toEqual(b.filter((k) => k.startsWith('sx:')));
  expect(a.some((k) => k.startsWith('sx:'))).toBe(true);
  // Hanzi names have their sound keys instead.
  expect(blockingKeys(featuresOf({ id: 'c', family: '王', given: '芳' })).some((k) => k.startsWith('sx:'))).toBe(false);
});

test('name and birth date with every one of three ways to reach them different: review, not a link; a household without a birth date likewise', () => {
  const felicia = (id: string, phone: string, address: string, city: string) => featuresOf({ id, family: 'Evans', given: 'Felicia', birthDate: '19950619', sex: 'F', phone, address, city, country: 'US' });
  const s = scorePair(model, felicia('a', '+1 626 782 9929', '8464 Maple Ave', 'Pasadena'), felicia('b', '+1 310 432 3588', '3681 Pine Street', 'Santa Monica'));
  expect(s.outcome).not.toBe('MATCH');
  // A move (new phone and street address, same city) is no such conflict.
  const moved = scorePair(model, felicia('a', '+1 626 782 9929', '8464 Maple Ave', 'Pasadena'), felicia('c', '+1 310 432 3588', '3681 Pine Street', 'Pasadena'));
  expect(moved.rule).not.toBe('contact-conflict');
  const kris = featuresOf({ id: 'k', family: 'Miller', given: 'Kris', birthDate: '19790510', sex: 'F', phone: '+1 3102655912', country: 'US' });
  const shirley = featuresOf({ id: 's', family: 'Miller', given: 'Shirley', sex: 'F', phone: '+1 (310) 2655912', address: '760 Hill Street', city: 'Santa Monica', country: 'US' });
  expect(scorePair(model, kris, shirley).outcome).not.toBe('MATCH');
});

test('u is counted without the matches among random pairs: on a small set full of duplicates an exact birth date weighs what it does between strangers', () => {
  const records = loadSplinkFake1000().map(featuresOf);
  const trained = trainModel(records, { randomPairs: 50_000 });
  const birth = trained.fields.birth;
  // 1,000 records of 251 people over some 60 years: two strangers share a birth date about once in 20,000 pairs.
  expect(Math.log2(birth.m[0]! / birth.u[0]!)).toBeGreaterThan(11);
});
