/**
 * Labelled person sets for the patient-index benchmark and tests: FEBRL and Splink's fake_1000 from
 * ../shared/data/matching (read as they are), and a generator of our own with the noise Chinese
 * registration data has — traditional characters, pinyin-only names (吕 as LV / LU / LYU),
 * homophones, missing and mistyped resident IDs, an ID typed into the phone field, day/month
 * transposition, twins, very common names, newborns under a parent's ID, in-member duplicates;
 * optionally the registration desk's placeholders (13800138000 and the hospital's own address).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pinyin } from 'pinyin-pro';
import type { PersonRecord } from '../hub/mpi/features';
import type { StatedIdentifier } from '../hub/mpi/identity';
import { makeResidentId } from '../hub/mpi/residentId';
import { seededRandom } from '../hub/seededRandom';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const OpenCC = require('opencc-js') as { Converter(options: { from: string; to: string }): (text: string) => string };
const toTraditional = OpenCC.Converter({ from: 'cn', to: 'tw' });

export interface LabelledRecord extends PersonRecord {
  /** Ground truth: records with the same entity are the same person. */
  entity: string;
  /** Identifiers as a member states them (type of table 0203, assigning authority): written into the message by bench/mpiRecords.ts. */
  stated?: StatedIdentifier[];
}

/** ../shared/data/matching beside the checkout (found upwards: sources and dist/ sit at different depths). */
export const MATCHING_DATA = (() => {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'shared', 'data', 'matching');
    if (existsSync(candidate)) return candidate;
  }
  return path.join(__dirname, '..', '..', 'shared', 'data', 'matching');
})();

function csvRows(file: string): string[][] {
  return readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .filter((l) => l.trim())
    .map((l) => l.split(',').map((c) => c.trim()));
}

/** FEBRL: rec-<N>-org / rec-<N>-dup-<k>, same N = same person. */
export function loadFebrl(files: string[], dir = MATCHING_DATA): LabelledRecord[] {
  const out: LabelledRecord[] = [];
  for (const name of files) {
    const [header, ...rows] = csvRows(path.join(dir, 'febrl', name));
    const col = (row: string[], c: string) => row[header!.indexOf(c)] || undefined;
    for (const row of rows) {
      const recId = col(row, 'rec_id')!;
      out.push({
        id: `${name}:${recId}`,
        entity: /^rec-(\d+)-/.exec(recId)![1]!,
        given: col(row, 'given_name'),
        family: col(row, 'surname'),
        address: [col(row, 'street_number'), col(row, 'address_1'), col(row, 'address_2')].filter(Boolean).join(' ') || undefined,
        city: col(row, 'suburb'),
        postcode: col(row, 'postcode'),
        birthDate: col(row, 'date_of_birth'),
        otherId: col(row, 'soc_sec_id'),
      });
    }
  }
  return out;
}

/** Splink fake_1000: column `cluster` is the person. */
export function loadSplinkFake1000(dir = MATCHING_DATA): LabelledRecord[] {
  const [header, ...rows] = csvRows(path.join(dir, 'splink', 'fake_1000.csv'));
  const col = (row: string[], c: string) => row[header!.indexOf(c)] || undefined;
  return rows.map((row) => ({
    id: `fake_1000:${col(row, 'unique_id')}`,
    entity: col(row, 'cluster')!,
    given: col(row, 'first_name'),
    family: col(row, 'surname'),
    birthDate: col(row, 'dob'),
    city: col(row, 'city'),
    email: col(row, 'email'),
  }));
}

const SURNAMES: Array<[string, number]> = [
  ['王', 72], ['李', 70], ['张', 66], ['刘', 53], ['陈', 46], ['杨', 32], ['黄', 25], ['赵', 21], ['吴', 20], ['周', 19], ['徐', 15], ['孙', 15], ['马', 14], ['朱', 13], ['胡', 12], ['郭', 11], ['何', 11], ['林', 10], ['罗', 10], ['高', 10], ['郑', 9], ['梁', 9], ['谢', 8], ['宋', 7], ['唐', 7], ['许', 7], ['韩', 6], ['冯', 6], ['邓', 6], ['曹', 6], ['彭', 6], ['曾', 5], ['肖', 5], ['田', 5], ['董', 5], ['袁', 4], ['潘', 4], ['于', 4], ['蒋', 4], ['蔡', 4], ['余', 4], ['杜', 4], ['叶', 4], ['程', 4], ['苏', 3], ['魏', 3], ['吕', 3], ['丁', 3], ['任', 3], ['沈', 3], ['姚', 3], ['卢', 3], ['姜', 3], ['崔', 3], ['钟', 3], ['谭', 3], ['陆', 3], ['汪', 2], ['范', 2], ['金', 2], ['石', 2], ['廖', 2], ['贾', 2], ['夏', 2], ['韦', 2], ['方', 2], ['白', 2], ['邹', 2], ['孟', 2], ['熊', 2], ['秦', 2], ['邱', 2], ['江', 2], ['尹', 2], ['薛', 2], ['段', 2], ['雷', 2], ['侯', 2], ['龙', 2], ['史', 2], ['陶', 2], ['黎', 2], ['贺', 2], ['顾', 2], ['毛', 2], ['郝', 2], ['龚', 2], ['邵', 2], ['万', 2], ['钱', 2], ['严', 2], ['欧阳', 1], ['司马', 1], ['单', 1], ['诸葛', 1], ['仇', 1], ['区', 1],
];
/** Very common one-character given names (张伟, 王芳 and their like). */
const COMMON_GIVEN = ['伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋', '勇', '艳', '杰', '娟', '涛', '明', '超', '霞', '平', '刚'];
const GIVEN_CHARS = '秀英华玉兰志建国文红海晓春金明丽宇浩子欣梓涵思雨佳嘉俊鹏辉芳燕婷琳雪梅宏云飞亮成林峰军东伟敏静磊杰涛慧颖倩瑶瑞晨阳博轩睿怡萱诗雅凯斌鑫';
const HOMOPHONES: Record<string, string[]> = {
  伟: ['炜', '玮', '维'], 丽: ['莉', '俐', '立'], 静: ['婧', '晶'], 敏: ['珉', '民'], 军: ['君', '均'], 华: ['骅', '桦'], 娜: ['纳'], 强: ['蔷'],
  明: ['铭', '鸣'], 杰: ['洁', '捷'], 芳: ['方', '昉'], 磊: ['垒'], 涛: ['韬'], 婷: ['亭', '庭'], 琳: ['林', '霖'], 峰: ['锋', '风'], 俊: ['骏', '峻'],
  浩: ['昊', '皓'], 宇: ['雨', '羽'], 佳: ['嘉', '家'], 欣: ['昕', '新'], 辉: ['晖', '徽'], 云: ['芸', '昀'], 玉: ['钰', '毓'], 红: ['虹', '鸿'],
  建: ['剑', '健'], 志: ['智', '治'], 英: ['莹', '瑛'], 兰: ['岚', '澜'], 燕: ['艳', '雁'], 雪: ['学'], 梅: ['媚', '玫'], 飞: ['菲', '非'], 文: ['雯', '闻'],
};
const AREAS = ['330102', '330105', '330106', '330108', '330110', '330521', '330522', '330681', '110101', '310104', '440305', '320102', '510104'];
const DISTRICTS = ['上城区', '拱墅区', '西湖区', '滨江区', '余杭区', '德清县', '长兴县', '诸暨市'];
const ROADS = ['人民路', '解放路', '文一路', '中山北路', '延安路', '建国路', '凤起路', '庆春路', '武林路', '莫干山路', '天目山路', '湖墅南路'];

interface Person {
  entity: string;
  family: string;
  given: string;
  birth: string;
  sex: 'M' | 'F';
  rid: string;
  phone?: string;
  address: string;
}

export interface ChineseSetOptions {
  persons?: number;
  seed?: number;
  /**
   * Share of registrations where the desk typed the placeholder phone 13800138000 (and, seven times
   * in ten, its own hospital's address) instead of the patient's. Off by default: the default set,
   * and the built-in model trained on it, stay as they were.
   */
  deskPlaceholders?: number;
}

/** The placeholder phone desks type: China's best-known dummy mobile number. */
export const PLACEHOLDER_PHONE = '13800138000';
/** Each member hospital's own address (m1…m6), typed for patients who did not give theirs. */
const HOSPITAL_ADDRESSES = ['浙江省杭州市上城区解放路88号', '浙江省杭州市拱墅区米市巷54号', '浙江省杭州市西湖区浙大路1号', '浙江省杭州市滨江区江虹路1511号', '浙江省湖州市德清县武康镇英溪南路', '浙江省诸暨市暨阳路521号'];

/** A labelled set of registrations of `persons` people at 1–3 members each, with Chinese noise. */
export function generateChineseSet(options: ChineseSetOptions = {}): LabelledRecord[] {
  const random = seededRandom(options.seed ?? 7);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const chance = (p: number) => random() < p;
  const surnameTotal = SURNAMES.reduce((a, [, w]) => a + w, 0);
  const surname = () => {
    let r = random() * surnameTotal;
    for (const [s, w] of SURNAMES) if ((r -= w) < 0) return s;
    return '王';
  };
  const givenName = () => (chance(0.3) ? pick(COMMON_GIVEN) : pick([...GIVEN_CHARS]) + (chance(0.8) ? pick([...GIVEN_CHARS]) : ''));
  const date = (from: number, to: number) => {
    const y = from + Math.floor(random() * (to - from));
    const m = 1 + Math.floor(random() * 12);
    const d = 1 + Math.floor(random() * 28);
    return `${y}${String(m).padStart(2, '0')}${String(d).padStart(2, '0')}`;
  };
  const phone = () => `1${pick(['38', '39', '58', '59', '86', '87', '35', '36'])}${String(Math.floor(random() * 1e8)).padStart(8, '0')}`;
  const address = () => `浙江省杭州市${pick(DISTRICTS)}${pick(ROADS)}${1 + Math.floor(random() * 300)}号${chance(0.6) ? `${1 + Math.floor(random() * 30)}幢${101 + Math.floor(random() * 1500)}室` : ''}`;
  const persons: Person[] = [];
  const count = options.persons ?? 5000;
  let seq = 0;
  const newPerson = (over: Partial<Person> = {}): Person => {
    const sex = over.sex ?? (chance(0.5) ? 'M' : 'F');
    const birth = over.birth ?? date(1930, 2024);
    const p: Person = {
      entity: `P${persons.length}`,
      family: over.family ?? surname(),
      given: over.given ?? givenName(),
      birth,
      sex,
      rid: over.rid ?? makeResidentId(pick(AREAS), birth, seq++ * 7 + Math.floor(random() * 5), sex),
      phone: 'phone' in over ? over.phone : chance(0.85) ? phone() : undefined,
      address: over.address ?? address(),
    };
    persons.push(p);
    return p;
  };
  const newborns: Person[] = [];
  while (persons.length < count) {
    const p = newPerson();
    if (chance(0.02) && persons.length < count) {
      // A twin: same family, birth date, address and phone; a different given name and ID.
      let given = givenName();
      while (given === p.given) given = givenName();
      newPerson({ family: p.family, birth: p.birth, address: p.address, phone: p.phone, given });
    }
    if (p.sex === 'F' && chance(0.02) && persons.length < count) {
      // A newborn registered under the mother's resident ID, named after her for now.
      const baby = newPerson({ family: p.family, given: `${p.given.slice(-1)}之${chance(0.5) ? '子' : '女'}`, birth: date(2025, 2026), rid: p.rid, phone: p.phone, address: p.address });
      newborns.push(baby);
    }
  }
  const records: LabelledRecord[] = [];
  let members = 0;
  for (const p of persons) {
    const registrations = chance(0.45) ? 1 : chance(0.6) ? 2 : 3;
    // In-member duplicates: the same person registered twice at one member.
    const extra = chance(0.03) ? 1 : 0;
    for (let r = 0; r < registrations + extra; r++) records.push(register(p, `m${(members++ % 6) + 1}`));
  }
  function register(p: Person, member: string): LabelledRecord {
    let family = p.family;
    let given = p.given;
    if (chance(0.08)) given = [...given].map((c) => (HOMOPHONES[c] && chance(0.7) ? pick(HOMOPHONES[c]!) : c)).join('');
    if (chance(0.15)) {
      family = toTraditional(family);
      given = toTraditional(given);
    } else if (chance(0.1)) {
      // A pinyin-only member system: surname readings, 吕 as LV, LU or LYU.
      family = pinyin(family, { mode: 'surname', toneType: 'none', type: 'array', v: true }).join('');
      if (family === 'lv') family = pick(['lv', 'lu', 'lyu', 'lü']);
      const g = pinyin(given, { toneType: 'none', type: 'array' });
      given = chance(0.5) ? g.join('') : g.join(' ');
      family = chance(0.5) ? family.toUpperCase() : family[0]!.toUpperCase() + family.slice(1);
      given = given[0]!.toUpperCase() + given.slice(1);
    }
    let birth: string | undefined = p.birth;
    const [y, m, d] = [p.birth.slice(0, 4), p.birth.slice(4, 6), p.birth.slice(6, 8)];
    if (chance(0.03) && Number(d) <= 12) birth = `${y}${d}${m}`;
    else if (chance(0.02)) birth = `${y}${m}${String(1 + Math.floor(random() * 28)).padStart(2, '0')}`;
    else if (chance(0.01)) birth = undefined;
    let rid: string | undefined = chance(0.6) ? p.rid : undefined;
    if (rid && chance(0.06)) {
      // One digit mistyped: the check character fails.
      const i = Math.floor(random() * 17);
      rid = rid.slice(0, i) + String((Number(rid[i]) + 1 + Math.floor(random() * 8)) % 10) + rid.slice(i + 1);
    } else if (rid && chance(0.1)) rid = rid.slice(0, 17) + rid[17]!.toLowerCase();
    let phoneValue = chance(0.75) ? p.phone : chance(0.5) ? phone() : undefined;
    if (!rid && p.rid && chance(0.03)) phoneValue = p.rid; // the ID typed into the phone field
    let addr: string | undefined = chance(0.7) ? p.address : chance(0.5) ? address() : undefined;
    if (addr && chance(0.15)) addr = toTraditional(addr);
    if (addr && chance(0.2)) addr = addr.replace(/^浙江省/, '');
    // (chance() is not drawn when the option is off: the default set keeps its random stream.)
    if (options.deskPlaceholders && chance(options.deskPlaceholders)) {
      phoneValue = PLACEHOLDER_PHONE;
      if (chance(0.7)) addr = HOSPITAL_ADDRESSES[Number(member.slice(1)) - 1];
    }
    return {
      id: `${member}:${records.length}`,
      entity: p.entity,
      family,
      given,
      birthDate: birth,
      sex: chance(0.02) ? undefined : p.sex,
      residentId: rid,
      phone: phoneValue,
      address: addr,
    };
  }
  void newborns;
  // Arrival order is not registration order.
  for (let i = records.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [records[i], records[j]] = [records[j]!, records[i]!];
  }
  return records;
}
