/**
 * A generated alliance whose members report the same analytes in different units and map them to
 * different codes of a mass/substance pair, with the known truth of which results are repeats under
 * the recognition rules. Used by bench/recognitionUnits.ts (thousands of results) and
 * test/recognition-units.int.test.ts (a few hundred), both of which send it through the real path:
 * HL7 v2 ORU^R01 → intake → pipeline worker → resource table → recognition index → duplicate report.
 *
 * Members: lead (tertiary) reports SI units under the substance codes; county (secondary) reports
 * mg/dL under the mass codes; community (primary) reports SI units too but its LIS codes for
 * glucose, creatinine and urate are mapped to the MASS codes — the held-out case: substance units
 * under a mass code, which the map stage converts through the molar mass. Every lab holds an EQA
 * accreditation, every result is final, so the truth is the rule alone: a result is a repeat when a
 * result of the same analyte (either code of the pair) at another member is earlier and still inside
 * the analyte's window; it pairs with the most recent such result.
 */
import { makeResidentId } from '../hub/mpi/residentId';
import { simAdt, simOru, type SimPatient } from '../cli/simulate';
import { seededRandom } from '../hub/seededRandom';

export interface AllianceMember {
  id: string;
  name: string;
  tier: 'tertiary' | 'secondary' | 'primary';
  facility: string;
}

export const UNIT_MEMBERS: AllianceMember[] = [
  { id: 'lead', name: 'Provincial People’s Hospital', tier: 'tertiary', facility: 'LEAD' },
  { id: 'county', name: 'Qingshan County Hospital', tier: 'secondary', facility: 'COUNTY' },
  { id: 'community', name: 'Donghu Community Health Centre', tier: 'primary', facility: 'DONGHU' },
];

/** How one member reports one analyte: its local code, the unit it sends, the LOINC code it is mapped to. */
export interface LocalTest {
  code: string;
  name: string;
  unit: string;
  target: string;
  /** A value as the member would report it (mean and spread in its own unit). */
  mean: number;
  sd: number;
}

export interface AnalyteSpec {
  id: string;
  windowDays: number;
  perMember: Record<string, LocalTest>;
}

/**
 * The analytes and each member's way of reporting them. Windows are the shipped rules' (glucose 7,
 * creatinine 14, cholesterol, triglyceride and urate 30 days; both codes of a pair have the same).
 */
export const UNIT_ANALYTES: AnalyteSpec[] = [
  {
    id: 'glucose',
    windowDays: 7,
    perMember: {
      lead: { code: 'GLU', name: '葡萄糖', unit: 'mmol/L', target: '14749-6', mean: 5.6, sd: 0.8 },
      county: { code: 'GLU-M', name: '血糖', unit: 'mg/dL', target: '2345-7', mean: 101, sd: 14 },
      community: { code: '0301', name: '空腹血糖', unit: 'mmol/L', target: '2345-7', mean: 5.6, sd: 0.8 }, // held out: substance unit, mass code
    },
  },
  {
    id: 'creatinine',
    windowDays: 14,
    perMember: {
      lead: { code: 'CREA', name: '肌酐', unit: 'µmol/L', target: '14682-9', mean: 80, sd: 15 },
      county: { code: 'CRE', name: '肌酐', unit: 'mg/dL', target: '2160-0', mean: 0.9, sd: 0.17 },
      community: { code: '0302', name: '血肌酐', unit: 'μmol/L', target: '2160-0', mean: 80, sd: 15 }, // held out
    },
  },
  {
    id: 'cholesterol',
    windowDays: 30,
    perMember: {
      lead: { code: 'CHOL', name: '总胆固醇', unit: 'mmol/L', target: '14647-2', mean: 4.8, sd: 0.7 },
      county: { code: 'TC', name: '总胆固醇', unit: 'mg/dL', target: '2093-3', mean: 186, sd: 27 },
      community: { code: '0303', name: '胆固醇', unit: 'mmol/L', target: '14647-2', mean: 4.8, sd: 0.7 },
    },
  },
  {
    id: 'triglyceride',
    windowDays: 30,
    perMember: {
      lead: { code: 'TG', name: '甘油三酯', unit: 'mmol/L', target: '14927-8', mean: 1.5, sd: 0.4 },
      county: { code: 'TRIG', name: '甘油三酯', unit: 'mg/dL', target: '2571-8', mean: 133, sd: 35 },
      community: { code: '0304', name: '甘油三酯', unit: 'mmol/L', target: '14927-8', mean: 1.5, sd: 0.4 },
    },
  },
  {
    id: 'urate',
    windowDays: 30,
    perMember: {
      lead: { code: 'UA', name: '尿酸', unit: 'µmol/L', target: '14933-6', mean: 330, sd: 60 },
      county: { code: 'URIC', name: '尿酸', unit: 'mg/dL', target: '3084-1', mean: 5.5, sd: 1 },
      community: { code: '0305', name: '尿酸', unit: 'µmol/L', target: '3084-1', mean: 330, sd: 60 }, // held out
    },
  },
];

export interface GeneratedResult {
  /** Index in `results`; also the message control id `U<index>`. */
  index: number;
  person: number;
  member: string;
  analyte: string;
  local: LocalTest;
  value: string;
  /** Member-local wall time as sent (YYYYMMDDHHMMSS); all members share one UTC offset. */
  hl7Time: string;
  at: number; // ms since epoch of the same wall time read as UTC: only differences matter for the truth
  /** Truth: whether it is a repeat, and of which earlier result (index). */
  repeatOf: number | null;
}

export interface GeneratedAlliance {
  persons: Array<{ index: number; patient: SimPatient; residentId: string; members: string[] }>;
  results: GeneratedResult[];
  /** Messages in arrival order: every ADT first (the patient index must know the person), then the ORUs shuffled. */
  messages: Array<{ member: string; controlId: string; text: string; result?: number }>;
}


const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const hl7 = (ms: number) => {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
};
const DAY = 86_400_000;
const SURNAMES = ['王', '李', '张', '刘', '陈', '杨', '黄', '赵', '吴', '周', '徐', '孙', '马', '朱', '胡', '郭', '何', '林', '罗', '高'];
/** 39 characters of distinct sound (homophones such as 丽/立 left out): two of them give 1,521 given names per surname. */
const NAME_CHARS = [...'秀建志丽海国春晓文永玉德淑红明华军平芳敏静强磊洋艳杰娟涛超霞刚桂兰凤梅琴云飞鹏'];

/**
 * `persons` people, each seen at 1–3 members; per person 2–3 analytes, each measured 1–4 times at
 * random members over 2026. Gaps between consecutive results of one analyte are drawn so that about
 * half fall inside the window; seconds are random, so no two results are at the same instant and no
 * gap equals a window to the second.
 */
export function generateAlliance(persons: number, seed = 21): GeneratedAlliance {
  const random = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const out: GeneratedAlliance = { persons: [], results: [], messages: [] };
  const start = Date.UTC(2026, 0, 5, 0, 0, 0);
  for (let p = 0; p < persons; p++) {
    // A birth date of its own per person (up to ~21,000 persons): look-alike people (same surname, birth date
    // and sex) are the patient index's question, not this benchmark's, and would blur the truth.
    const born = new Date(Date.UTC(1940, 0, 1) + p * DAY);
    const birth = `${born.getUTCFullYear()}${pad(born.getUTCMonth() + 1)}${pad(born.getUTCDate())}`;
    const sex: 'M' | 'F' = p % 2 ? 'M' : 'F';
    // A given name of Hanzi only (digits in a name are not a name) and of its own among people of one surname.
    const g = Math.floor(p / SURNAMES.length);
    const patient: SimPatient = { mrn: `U${100000 + p}`, family: SURNAMES[p % SURNAMES.length]!, given: `${NAME_CHARS[g % NAME_CHARS.length]!}${NAME_CHARS[Math.floor(g / NAME_CHARS.length) % NAME_CHARS.length]!}`, birth, sex };
    const residentId = makeResidentId('330106', birth, (p % 997) + 1, sex);
    const count = 1 + Math.floor(random() * 3);
    const members = [...UNIT_MEMBERS.map((m) => m.id)].sort(() => random() - 0.5).slice(0, Math.max(count, 2));
    out.persons.push({ index: p, patient, residentId, members });
    const analytes = [...UNIT_ANALYTES].sort(() => random() - 0.5).slice(0, 2 + Math.floor(random() * 2));
    for (const analyte of analytes) {
      const n = 1 + Math.floor(random() * 4);
      let t = start + Math.floor(random() * 280) * DAY;
      const series: GeneratedResult[] = [];
      for (let k = 0; k < n; k++) {
        if (k > 0) {
          // half inside the window, half after it
          const days = random() < 0.5 ? random() * (analyte.windowDays - 0.5) : analyte.windowDays + 0.5 + random() * analyte.windowDays * 2;
          // whole seconds: HL7 times carry seconds, and the truth must be computed on what is sent
          t += Math.max(3_600_000, Math.floor((days * DAY) / 1000) * 1000);
        }
        const at = t + Math.floor(random() * 8 * 3600) * 1000 + 7 * 3600 * 1000; // working hours, random second
        const member = pick(members);
        const local = UNIT_ANALYTES.find((a) => a.id === analyte.id)!.perMember[member]!;
        const value = Math.max(local.mean / 4, local.mean + (random() * 2 - 1) * 2 * local.sd);
        const r: GeneratedResult = { index: out.results.length, person: p, member, analyte: analyte.id, local, value: value.toPrecision(3), hl7Time: hl7(at), at, repeatOf: null };
        series.push(r);
        out.results.push(r);
      }
      // The truth: the most recent earlier result at another member still inside the window.
      for (const r of series) {
        let best: GeneratedResult | undefined;
        for (const e of series) {
          if (e.member === r.member || e.at >= r.at || r.at >= e.at + analyte.windowDays * DAY) continue;
          if (!best || e.at > best.at) best = e;
        }
        r.repeatOf = best ? best.index : null;
      }
    }
  }
  for (const person of out.persons) {
    for (const memberId of person.members) {
      const member = UNIT_MEMBERS.find((m) => m.id === memberId)!;
      out.messages.push({ member: memberId, controlId: `A${person.index}-${memberId}`, text: adt(member, person.patient, person.residentId, `A${person.index}-${memberId}`) });
    }
  }
  const orus = out.results.map((r) => {
    const member = UNIT_MEMBERS.find((m) => m.id === r.member)!;
    const text = simOru({ controlId: `U${r.index}`, patient: out.persons[r.person]!.patient, sendingFacility: member.facility, time: r.hl7Time, charset: 'UNICODE UTF-8' }, [
      { code: r.local.code, name: r.local.name, value: r.value, unit: r.local.unit, range: '' },
    ]);
    return { member: r.member, controlId: `U${r.index}`, text, result: r.index };
  });
  // Arrival order is not result order (the index and the report must not depend on it).
  orus.sort(() => random() - 0.5);
  out.messages.push(...orus);
  return out;
}

/** An ADT A04 with the resident ID in PID-19, so the patient index links a person's records at every member. */
function adt(member: AllianceMember, patient: SimPatient, residentId: string, controlId: string): string {
  // A phone and an address of the person's own: the simulator's defaults are shared by everyone, and
  // the patient index rightly links look-alikes who share them.
  const n = Number(patient.mrn.slice(1));
  const text = simAdt({ controlId, patient, sendingFacility: member.facility, time: '20260101080000', charset: 'UNICODE UTF-8', phone: `139${String(n).padStart(8, '0')}`, address: `人民路${n}号` }, 'A04');
  return text.replace(/^(PID\|[^\r]*)/m, (pid) => {
    const fields = pid.split('|');
    while (fields.length < 20) fields.push('');
    fields[19] = residentId;
    return fields.join('|');
  });
}

/** The hub configuration of the alliance: members with resident-ID linking, every lab EQA-accredited, prices for every code. */
export function allianceConfig(): { members: unknown[]; recognition: unknown } {
  const codes = UNIT_ANALYTES.flatMap((a) => Object.values(a.perMember).map((t) => t.target));
  return {
    members: UNIT_MEMBERS.map((m) => ({ id: m.id, name: m.name, tier: m.tier, channels: [{ id: 'lis', kind: 'mllp', port: 0 }], conversion: { residentIdField: 19 } })),
    recognition: {
      currency: 'CNY',
      accreditation: UNIT_MEMBERS.map((m) => ({ member: m.id, scheme: 'NCCL-EQA', validFrom: '2025-01-01', validTo: '2027-12-31' })),
      priceLists: UNIT_MEMBERS.map((m, i) => ({ member: m.id, version: '2026', effectiveFrom: '2025-01-01', prices: Object.fromEntries(codes.map((c) => [c, 8 + 2 * i])) })),
    },
  };
}

/** Each member's local code → LOINC mapping, as the committee would propose and approve them. */
export function allianceMappings(): Array<{ member: string; system: string; code: string; display: string; target: string }> {
  return UNIT_ANALYTES.flatMap((a) => Object.entries(a.perMember).map(([member, t]) => ({ member, system: `urn:yilian:${member}:L`, code: t.code, display: t.name, target: t.target })));
}

export interface Scored {
  truth: number;
  reported: number;
  truePositives: number;
  precision: number;
  recall: number;
  /** Of the true positives, how many name the right earlier result. */
  pairedRight: number;
  missed: GeneratedResult[];
  spurious: string[];
}

/**
 * Precision and recall of reported repeats against the truth. `reported` are keys of repeat results
 * (result index, or a string when a reported repeat is not one of the generated results); `firstOf`
 * gives, for a reported repeat, the result index it was paired with (when known).
 */
export function score(alliance: GeneratedAlliance, reported: Map<number | string, number | null>, truthOf: (r: GeneratedResult) => number | null = (r) => r.repeatOf): Scored {
  const truth = alliance.results.filter((r) => truthOf(r) !== null);
  let tp = 0;
  let pairedRight = 0;
  const missed: GeneratedResult[] = [];
  for (const r of truth) {
    if (reported.has(r.index)) {
      tp++;
      if (reported.get(r.index) === truthOf(r)) pairedRight++;
    } else missed.push(r);
  }
  const spurious = [...reported.keys()].filter((k) => typeof k === 'string' || !alliance.results[k] || truthOf(alliance.results[k]!) === null).map(String);
  return {
    truth: truth.length,
    reported: reported.size,
    truePositives: tp,
    precision: reported.size === 0 ? (truth.length === 0 ? 1 : 0) : tp / reported.size,
    recall: truth.length === 0 ? 1 : tp / truth.length,
    pairedRight,
    missed,
    spurious,
  };
}

/**
 * The truth recomputed with results grouped by another notion of "the same patient" (the patient
 * index's golden patients): separates what the report does with units and codes from what the
 * patient index linked.
 */
export function truthGroupedBy(alliance: GeneratedAlliance, patientOf: (r: GeneratedResult) => string): Map<number, number | null> {
  const windows = new Map(UNIT_ANALYTES.map((a) => [a.id, a.windowDays * DAY]));
  const groups = new Map<string, GeneratedResult[]>();
  for (const r of alliance.results) {
    const key = `${patientOf(r)}|${r.analyte}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const out = new Map<number, number | null>();
  for (const series of groups.values()) {
    for (const r of series) {
      let best: GeneratedResult | undefined;
      for (const e of series) {
        if (e.member === r.member || e.at >= r.at || r.at >= e.at + windows.get(r.analyte)!) continue;
        if (!best || e.at > best.at) best = e;
      }
      out.set(r.index, best ? best.index : null);
    }
  }
  return out;
}
