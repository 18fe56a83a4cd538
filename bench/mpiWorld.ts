/**
 * A labelled set of the world's identities, for the patient index (bench/mpi.ts): people registered
 * at three members — `cn` (a mainland hospital), `us` (an international clinic, country US) and
 * `kh` (a partner hospital in Cambodia) — with what the held-out sets of issue 20 had:
 * - identifiers of several kinds: passports of their country (PID-3 typed PPN, authority the
 *   ISO alpha-3 code), US social security numbers (PID-19), driver's licences (PID-20), Hong Kong
 *   / Macau and Taiwan travel permits and the foreigner's permanent residence ID (PID-3 under the
 *   members' own authorities, mapped by the identity table below), a mistyped passport, a renewed
 *   passport (a new number: ambiguous by design), and strangers with one name and birth date but
 *   different passports;
 * - Latin given names and their nicknames (data/nicknames: Robert / Bob, Margaret / Peggy);
 * - Cyrillic, Arabic and Khmer names beside their Latin spellings;
 * - phones written locally at a member of their country and internationally elsewhere;
 * - twins (one birth date, address and phone; another given name, their own passports) and
 *   generations (Jr / Sr, II / III at one address and phone);
 * - records with a name and an e-mail only.
 * Names: the given names of the nickname list, common US surnames (the 1990/2000 census lists'
 * top names), and short lists of Russian, Arabic and Khmer names with their usual Latin spellings.
 * Seeded: the same set every run.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { IdentityTable, identityConfigSchema, type IdentityConfig, type StatedIdentifier } from '../hub/mpi/identity';
import { makeResidentId } from '../hub/mpi/residentId';
import { seededRandom } from '../hub/seededRandom';
import type { LabelledRecord } from './mpiData';

/** The benchmark members' identity configuration (`identity:` of the hub's config): their countries, and the local authorities of the permits and of FEBRL's number. */
export function worldIdentityConfig(): IdentityConfig {
  return identityConfigSchema.parse({
    memberCountries: { cn: 'CN', us: 'US', kh: 'KH' },
    systems: [
      { authority: 'HKMO', system: 'cn-hkmo-permit' },
      { authority: 'TW', system: 'cn-tw-permit' },
      { authority: 'PR', system: 'cn-foreigner-pr' },
      // FEBRL's soc_sec_id (bench/mpiRecords.ts): typed by hand, corrupted by typos, no check.
      { authority: 'SOCSEC', system: 'other' },
    ],
  });
}

/** The benchmark members' identity table (`worldIdentityConfig`). */
export function worldIdentityTable(): IdentityTable {
  return new IdentityTable(worldIdentityConfig());
}

const US_SURNAMES = ['smith', 'johnson', 'williams', 'brown', 'jones', 'miller', 'davis', 'garcia', 'rodriguez', 'wilson', 'martinez', 'anderson', 'taylor', 'thomas', 'hernandez', 'moore', 'martin', 'jackson', 'thompson', 'white', 'lopez', 'lee', 'gonzalez', 'harris', 'clark', 'lewis', 'robinson', 'walker', 'perez', 'hall', 'young', 'allen', 'sanchez', 'wright', 'king', 'scott', 'green', 'baker', 'adams', 'nelson', 'hill', 'ramirez', 'campbell', 'mitchell', 'roberts', 'carter', 'phillips', 'evans', 'turner', 'torres', 'parker', 'collins', 'edwards', 'stewart', 'flores', 'morris', 'nguyen', 'murphy', 'rivera', 'cook', 'rogers', 'morgan', 'peterson', 'cooper', 'reed', 'bailey', 'bell', 'gomez', 'kelly', 'howard', 'ward', 'cox', 'diaz', 'richardson', 'wood', 'watson', 'brooks', 'bennett', 'gray', 'james'];
/** Russian names: Cyrillic, then Latin spellings seen at registration desks. */
const RU_GIVEN: Array<[string, string[], 'M' | 'F']> = [
  ['Дмитрий', ['Dmitriy', 'Dmitry', 'Dmitri'], 'M'], ['Сергей', ['Sergey', 'Sergei'], 'M'], ['Алексей', ['Aleksey', 'Alexei', 'Alexey'], 'M'], ['Андрей', ['Andrey', 'Andrei'], 'M'],
  ['Николай', ['Nikolay', 'Nikolai'], 'M'], ['Михаил', ['Mikhail'], 'M'], ['Иван', ['Ivan'], 'M'], ['Юрий', ['Yuriy', 'Yuri', 'Iurii'], 'M'], ['Владимир', ['Vladimir'], 'M'],
  ['Наталья', ['Natalya', 'Natalia', 'Natalja'], 'F'], ['Елена', ['Elena', 'Yelena'], 'F'], ['Ольга', ['Olga'], 'F'], ['Татьяна', ['Tatyana', 'Tatiana'], 'F'], ['Ирина', ['Irina'], 'F'],
  ['Светлана', ['Svetlana'], 'F'], ['Анна', ['Anna'], 'F'], ['Мария', ['Mariya', 'Maria'], 'F'], ['Екатерина', ['Ekaterina', 'Yekaterina'], 'F'],
];
const RU_FAMILY: Array<[string, string[]]> = [
  ['Иванов', ['Ivanov']], ['Смирнов', ['Smirnov']], ['Кузнецов', ['Kuznetsov']], ['Попов', ['Popov']], ['Васильев', ['Vasilyev', 'Vasiliev']], ['Петров', ['Petrov']],
  ['Соколов', ['Sokolov']], ['Михайлов', ['Mikhaylov', 'Mikhailov']], ['Новиков', ['Novikov']], ['Фёдоров', ['Fedorov', 'Fyodorov']], ['Морозов', ['Morozov']], ['Волков', ['Volkov']],
  ['Алексеев', ['Alekseev', 'Alexeev']], ['Лебедев', ['Lebedev']], ['Семёнов', ['Semenov', 'Semyonov']], ['Егоров', ['Egorov', 'Yegorov']], ['Павлов', ['Pavlov']], ['Козлов', ['Kozlov']],
];
const AR_GIVEN: Array<[string, string[], 'M' | 'F']> = [
  ['محمد', ['Mohammed', 'Muhammad', 'Mohamed'], 'M'], ['أحمد', ['Ahmed', 'Ahmad'], 'M'], ['علي', ['Ali'], 'M'], ['عمر', ['Omar', 'Umar'], 'M'], ['خالد', ['Khaled', 'Khalid'], 'M'],
  ['يوسف', ['Youssef', 'Yusuf', 'Yousef'], 'M'], ['حسن', ['Hassan', 'Hasan'], 'M'], ['فاطمة', ['Fatima', 'Fatimah'], 'F'], ['عائشة', ['Aisha', 'Aysha'], 'F'], ['مريم', ['Maryam', 'Mariam'], 'F'],
  ['زينب', ['Zainab', 'Zaynab'], 'F'], ['نور', ['Nour', 'Noor'], 'F'], ['سارة', ['Sara', 'Sarah'], 'F'], ['ليلى', ['Layla', 'Leila'], 'F'],
];
const AR_FAMILY: Array<[string, string[]]> = [
  ['حداد', ['Haddad']], ['منصور', ['Mansour', 'Mansur']], ['سعيد', ['Saeed', 'Said']], ['ناصر', ['Nasser', 'Nasir']], ['حسين', ['Hussein', 'Husain']], ['عباس', ['Abbas']],
  ['خليل', ['Khalil']], ['يوسف', ['Youssef', 'Yusuf']], ['سالم', ['Salem', 'Salim']], ['كريم', ['Karim', 'Kareem']], ['رحمن', ['Rahman']], ['جابر', ['Jaber', 'Jabir']],
];
const KM_GIVEN: Array<[string, string[], 'M' | 'F']> = [
  ['សុខា', ['Sokha'], 'M'], ['ដារ៉ា', ['Dara'], 'M'], ['វិបុល', ['Vibol'], 'M'], ['សុភ័ក្រ', ['Sopheak'], 'M'], ['រិទ្ធី', ['Rithy'], 'M'], ['ពិសិដ្ឋ', ['Piseth'], 'M'],
  ['ស្រីមុំ', ['Sreymom', 'Srey Mom'], 'F'], ['ចន្ថា', ['Chantha'], 'F'], ['សុភា', ['Sophea'], 'F'], ['ស្រីនាង', ['Sreyneang'], 'F'], ['បុប្ផា', ['Bopha'], 'F'], ['ធីតា', ['Thida'], 'F'],
];
const KM_FAMILY: Array<[string, string[]]> = [
  ['សុខ', ['Sok']], ['ចាន់', ['Chan']], ['ហេង', ['Heng']], ['លី', ['Ly']], ['គឹម', ['Kim']], ['ម៉ៅ', ['Mao']], ['ស៊ុន', ['Sun']], ['ពេជ្រ', ['Pich']], ['អ៊ុក', ['Ouk']], ['ឈឹម', ['Chhim']],
];
const US_STREETS = ['Main', 'Oak', 'Maple', 'Cedar', 'Pine', 'Elm', 'Washington', 'Lake', 'Hill', 'Park', 'Sunset', 'Ventura', 'Lincoln', 'Jefferson', 'Madison'];
const US_CITIES: Array<[string, string, string]> = [['Los Angeles', '900', '213'], ['Burbank', '915', '818'], ['Pasadena', '911', '626'], ['Glendale', '912', '818'], ['Santa Monica', '904', '310']];
/** Hong Kong / Taiwan names in their Latin (Cantonese / Wade–Giles) spellings: a family name and two syllables. */
const HK_FAMILY = ['Chan', 'Wong', 'Lee', 'Cheung', 'Lau', 'Ho', 'Ng', 'Leung', 'Lam', 'Tsang', 'Yip', 'Chow', 'Kwok', 'Tang', 'Fung', 'Lo', 'Chen', 'Lin', 'Huang', 'Tsai'];
const HK_SYLLABLES = ['Tai', 'Man', 'Siu', 'Ming', 'Ka', 'Yan', 'Wai', 'Kit', 'Mei', 'Ling', 'Chi', 'Keung', 'Wing', 'Sze', 'Hoi', 'Kwok', 'Fai', 'Yuk', 'Lai', 'Chun', 'Hsiu', 'Chih', 'Wen', 'Hui'];

type Origin = 'us' | 'ru' | 'ar' | 'km' | 'hk' | 'tw';

interface Person {
  entity: string;
  origin: Origin;
  family: [string, string[]];
  given: [string, string[]];
  suffix?: string;
  sex: 'M' | 'F';
  birth: string;
  passport: string;
  passportCountry: string;
  ssn?: string;
  dl?: string;
  permit?: { authority: string; value: string };
  pr?: string;
  phone: { country: string; national: string; cc: string };
  email?: string;
  address: { street: string; city: string; postcode: string };
}

function nicknameTable(): Map<string, string[]> {
  let dir = __dirname;
  for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    try {
      const text = readFileSync(path.join(dir, 'data', 'nicknames', 'names.csv'), 'utf8');
      const out = new Map<string, string[]>();
      for (const line of text.split(/\r?\n/)) {
        const [first, ...rest] = line.split(',').map((n) => n.trim());
        if (first && rest.length && /^[a-z]+$/.test(first)) out.set(first, rest.filter((n) => /^[a-z]+$/.test(n)));
      }
      return out;
    } catch {
      // not at this level
    }
  }
  throw new Error('data/nicknames/names.csv not found');
}

const cap = (s: string) => s.replace(/(^|[\s-])([a-z])/g, (_, a: string, b: string) => a + b.toUpperCase());

export interface WorldSetOptions {
  persons?: number;
  seed?: number;
}

export function generateWorldSet(options: WorldSetOptions = {}): LabelledRecord[] {
  const random = seededRandom(options.seed ?? 20);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const chance = (p: number) => random() < p;
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(random() * 10)).join('');
  const nick = nicknameTable();
  const formal = [...nick.keys()].filter((n) => n.length >= 4);
  const date = (from: number, to: number) => `${from + Math.floor(random() * (to - from))}${String(1 + Math.floor(random() * 12)).padStart(2, '0')}${String(1 + Math.floor(random() * 28)).padStart(2, '0')}`;
  const persons: Person[] = [];
  const count = options.persons ?? 2000;

  const newPerson = (over: Partial<Person> = {}): Person => {
    const origin: Origin = over.origin ?? pick(['us', 'us', 'us', 'us', 'ru', 'ru', 'ar', 'ar', 'km', 'km', 'hk', 'tw'] as const);
    let family: [string, string[]];
    let given: [string, string[]];
    let sex: 'M' | 'F' = chance(0.5) ? 'M' : 'F';
    let passportCountry = 'USA';
    let phone: Person['phone'];
    let address: Person['address'];
    const usAddress = () => {
      const [city, zip, area] = pick(US_CITIES);
      return { address: { street: `${1 + Math.floor(random() * 9000)} ${pick(US_STREETS)} ${pick(['Street', 'Avenue', 'Drive', 'Road'])}`, city, postcode: `${zip}${digits(2)}` }, area };
    };
    switch (origin) {
      case 'ru': {
        const g = pick(RU_GIVEN);
        sex = g[2];
        const f = pick(RU_FAMILY);
        family = sex === 'F' ? [`${f[0]}а`, f[1].map((x) => `${x}a`)] : f;
        given = [g[0], g[1]];
        passportCountry = 'RUS';
        phone = { country: 'RU', cc: '7', national: `${pick(['495', '812', '4812', '916', '903'])}${digits(7)}`.slice(0, 10) };
        address = usAddress().address;
        break;
      }
      case 'ar': {
        const g = pick(AR_GIVEN);
        sex = g[2];
        family = pick(AR_FAMILY);
        given = [g[0], g[1]];
        passportCountry = pick(['SAU', 'EGY', 'ARE', 'JOR']);
        phone = { country: 'AE', cc: '971', national: `5${pick(['0', '2', '5', '6'])}${digits(7)}` };
        address = usAddress().address;
        break;
      }
      case 'km': {
        const g = pick(KM_GIVEN);
        sex = g[2];
        family = pick(KM_FAMILY);
        given = [g[0], g[1]];
        passportCountry = 'KHM';
        phone = { country: 'KH', cc: '855', national: `${pick(['12', '17', '77', '89', '92'])}${digits(6)}` };
        address = { street: `#${1 + Math.floor(random() * 300)} Street ${1 + Math.floor(random() * 600)}`, city: pick(['Phnom Penh', 'Siem Reap', 'Battambang']), postcode: `120${digits(3)}` };
        break;
      }
      case 'hk':
      case 'tw': {
        const f = pick(HK_FAMILY);
        const g = `${pick(HK_SYLLABLES)} ${pick(HK_SYLLABLES).toLowerCase()}`;
        family = [f, [f]];
        given = [g, [g, g.replace(' ', ''), g.replace(' ', '-')]];
        passportCountry = origin === 'hk' ? 'HKG' : 'TWN';
        phone = { country: 'CN', cc: '86', national: `1${pick(['38', '39', '58', '86'])}${digits(8)}` };
        address = { street: `杭州市西湖区${pick(['文一路', '天目山路', '教工路', '学院路'])}${1 + Math.floor(random() * 300)}号`, city: '杭州市', postcode: `3100${digits(2)}` };
        break;
      }
      default: {
        const name = pick(formal);
        given = [name, [cap(name)]];
        family = [cap(pick(US_SURNAMES)), [cap(pick(US_SURNAMES))]];
        family[1] = [family[0]];
        const a = usAddress();
        address = a.address;
        phone = { country: 'US', cc: '1', national: `${a.area}${2 + Math.floor(random() * 8)}${digits(6)}` };
      }
    }
    const p: Person = {
      entity: `W${persons.length}`,
      origin,
      family: over.family ?? family,
      given: over.given ?? given,
      sex: over.sex ?? sex,
      birth: over.birth ?? date(1935, 2020),
      passport: over.passport ?? (passportCountry === 'USA' ? digits(9) : `${String.fromCharCode(65 + Math.floor(random() * 26))}${digits(7)}`),
      passportCountry,
      phone: over.phone ?? phone,
      address: over.address ?? address,
      ...(over.suffix ? { suffix: over.suffix } : {}),
    };
    if (origin === 'us') {
      p.ssn = over.ssn ?? `${100 + Math.floor(random() * 560)}${String(1 + Math.floor(random() * 98)).padStart(2, '0')}${String(1 + Math.floor(random() * 9998)).padStart(4, '0')}`;
      if (chance(0.6)) p.dl = `${String.fromCharCode(65 + Math.floor(random() * 26))}${digits(7)}`;
    }
    if (origin === 'hk') p.permit = { authority: 'HKMO', value: `${chance(0.8) ? 'H' : 'M'}${digits(8)}` };
    if (origin === 'tw') p.permit = { authority: 'TW', value: digits(8) };
    if ((origin === 'ru' || origin === 'ar' || origin === 'km') && chance(0.3)) {
      // 2017 foreigner's permanent residence ID: 9, province, nationality, birth date, sequence, MOD 11-2.
      p.pr = makeResidentId(`9${pick(['11', '31', '33', '44'])}${digits(3)}`.slice(0, 6), p.birth, Math.floor(random() * 1000), p.sex);
    }
    if (chance(0.5)) p.email = `${p.given[1][0]!.toLowerCase().replace(/[^a-z]/g, '')}.${p.family[1][0]!.toLowerCase().replace(/[^a-z]/g, '')}${digits(2)}@${pick(['gmail.com', 'yahoo.com', 'mail.ru', 'outlook.com'])}`;
    persons.push(p);
    return p;
  };

  while (persons.length < count) {
    const p = newPerson();
    const r = random();
    if (r < 0.04) {
      // Twins: one birth date, address, phone and family name; another given name, their own papers.
      const other = p.origin === 'us' ? (() => { const n = pick(formal); return [n, [cap(n)]] as [string, string[]]; })() : p.given;
      if (other[0] !== p.given[0]) newPerson({ origin: p.origin, family: p.family, birth: p.birth, address: p.address, phone: p.phone, given: other });
    } else if (r < 0.08 && p.origin === 'us') {
      // Generations: the same name, father Sr / son Jr (or II / III), one address and phone.
      const [older, younger] = chance(0.6) ? ['sr', 'jr'] : ['ii', 'iii'];
      p.suffix = older;
      p.sex = 'M';
      newPerson({ origin: 'us', family: p.family, given: p.given, sex: 'M', suffix: younger, birth: date(Number(p.birth.slice(0, 4)) + 22, Number(p.birth.slice(0, 4)) + 35), address: p.address, phone: p.phone });
    } else if (r < 0.11) {
      // A stranger with the same name and birth date (a common name), other papers and contacts.
      newPerson({ origin: p.origin, family: p.family, given: p.given, sex: p.sex, birth: p.birth });
    }
  }

  const records: LabelledRecord[] = [];
  const members = ['cn', 'us', 'kh'] as const;
  const localCountry = { cn: 'CN', us: 'US', kh: 'KH' } as const;
  for (const p of persons) {
    const n = chance(0.35) ? 1 : chance(0.6) ? 2 : 3;
    const start = Math.floor(random() * 3);
    let renewed: string | undefined;
    for (let k = 0; k < n; k++) {
      const member = members[(start + k) % 3]!;
      records.push(register(p, member, localCountry[member], k, () => (renewed ??= `${p.passport.slice(0, 1)}${digits(p.passport.length - 1)}`)));
    }
  }
  return records;

  function register(p: Person, member: string, country: string, k: number, renewedPassport: () => string): LabelledRecord {
    // Name: the native script at a member of its country, else a Latin spelling; Latin names now and then by a nickname.
    let family: string;
    let given: string;
    const native = p.origin === 'ru' || p.origin === 'ar' || p.origin === 'km';
    if (native && (chance(0.45) || (p.origin === 'km' && member === 'kh' && chance(0.6)))) {
      family = p.family[0];
      given = p.given[0];
    } else {
      family = cap(pick(p.family[1]));
      given = cap(pick(p.given[1]));
    }
    if (p.origin === 'us' && k > 0 && chance(0.3)) {
      const nicks = nick.get(p.given[0]);
      if (nicks?.length) given = cap(pick(nicks));
    }
    if (chance(0.04)) given = given.length > 3 ? given.slice(0, -1) : given; // a typo
    const stated: StatedIdentifier[] = [];
    const plainRecord = chance(0.07); // name and e-mail only (a portal sign-up)
    let birth: string | undefined = p.birth;
    if (chance(0.03)) birth = `${p.birth.slice(0, 6)}${String(1 + Math.floor(random() * 28)).padStart(2, '0')}`;
    if (chance(0.04)) birth = undefined;
    if (!plainRecord) {
      if (chance(0.7)) {
        let passport = p.passport;
        if (k > 0 && chance(0.05)) passport = renewedPassport();
        else if (chance(0.03)) passport = passport.slice(0, -1) + String((Number(passport.slice(-1)) + 1) % 10);
        stated.push({ type: 'PPN', authority: p.passportCountry, value: chance(0.2) ? passport.toLowerCase() : passport });
      }
      if (p.ssn && chance(member === 'us' ? 0.8 : 0.3)) stated.push({ type: 'SS', value: chance(0.5) ? `${p.ssn.slice(0, 3)}-${p.ssn.slice(3, 5)}-${p.ssn.slice(5)}` : p.ssn });
      if (p.dl && chance(0.4)) stated.push({ type: 'DL', value: p.dl });
      // A Home Return Permit is often written with its two-digit renewal count.
      if (p.permit && chance(0.8)) stated.push({ authority: p.permit.authority, value: p.permit.value + (p.permit.authority === 'HKMO' && chance(0.3) ? digits(2) : '') });
      if (p.pr && chance(0.7)) stated.push({ authority: 'PR', value: p.pr });
    }
    const ph = p.phone;
    let phone: string | undefined;
    if (!plainRecord && chance(0.85)) {
      const local = ph.country === country;
      phone = local
        ? ph.country === 'US'
          ? pick([`${ph.national.slice(0, 3)}-${ph.national.slice(3, 6)}-${ph.national.slice(6)}`, `(${ph.national.slice(0, 3)}) ${ph.national.slice(3, 6)}-${ph.national.slice(6)}`, `1${ph.national}`])
          : ph.country === 'KH'
            ? `0${ph.national}`
            : ph.national
        : pick([`+${ph.cc} ${ph.national}`, `00${ph.cc}${ph.national}`, `+${ph.cc} (${ph.national.slice(0, 3)}) ${ph.national.slice(3)}`]);
    }
    const email = p.email && (plainRecord || chance(0.5)) ? (chance(0.2) ? p.email.toUpperCase() : p.email) : undefined;
    const withAddress = !plainRecord && chance(0.75);
    const street = withAddress ? (chance(0.3) ? p.address.street.replace(/Street$/, 'St').replace(/Avenue$/, 'Ave').replace(/Drive$/, 'Dr').replace(/Road$/, 'Rd') : p.address.street) : undefined;
    return {
      id: `${member}:${records.length}`,
      entity: p.entity,
      family,
      given,
      ...(p.suffix && chance(0.75) ? { suffix: chance(0.5) ? p.suffix.toUpperCase() : cap(p.suffix) } : {}),
      ...(plainRecord ? {} : { birthDate: birth, sex: chance(0.03) ? undefined : p.sex }),
      ...(phone ? { phone } : {}),
      ...(email ? { email } : {}),
      ...(street ? { address: street, city: chance(0.9) ? p.address.city : undefined, postcode: chance(0.7) ? p.address.postcode : undefined } : {}),
      ...(stated.length ? { stated } : {}),
    };
  }
}
