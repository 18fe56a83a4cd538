/**
 * HL7 v2 → FHIR R4 conversions/s on one core (single-threaded loop), per message kind:
 *   - ADT^A01: the FHIR-converter sample ADT-A01-01.hl7, and cli/simulate.ts simAdt(…, 'A01')
 *   - ORU^R01 with 10 OBX: cli/simulate.ts simOru with 10 results
 * For each, three rates:
 *   parse+convert            Hl7Message.parse + convertMessage
 *   convert alone            convertMessage on an already-parsed message
 *   parse+convert+validate   as parse+convert, plus validateResource (mappings/fhir/validate.ts)
 *                            on every resource in the bundle
 *   node dist/bench/convert.js [seconds per run, default 2]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { simAdt, simOru, simPatient } from '../cli/simulate';
import { validateResource } from '../mappings/fhir/validate';
import { convertMessage } from '../mappings/hl7v2/convert';
import type { ConvertContext } from '../mappings/hl7v2/convert/conversion';
import { Hl7Message } from '../mappings/hl7v2/message';

const SECONDS = Number(process.argv[2] ?? 2);
const WARMUP_SECONDS = 0.5;
const SAMPLE = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'hl7v2', 'fhir-converter', 'messages', 'ADT-A01-01.hl7');
const ctx: ConvertContext = { memberId: 'bench', channelId: 'bench', utcOffsetMinutes: 480 };

/** A full blood count: 10 results, so the ORU^R01 carries 10 OBX. */
const tenResults = [
  { code: 'WBC', name: '白细胞计数', value: '6.2', unit: '10^9/L', range: '3.5-9.5' },
  { code: 'RBC', name: '红细胞计数', value: '4.6', unit: '10^12/L', range: '3.8-5.1' },
  { code: 'HGB', name: '血红蛋白', value: '135', unit: 'g/L', range: '115-150' },
  { code: 'HCT', name: '红细胞压积', value: '41.2', unit: '%', range: '35-45' },
  { code: 'MCV', name: '平均红细胞体积', value: '89.5', unit: 'fL', range: '82-100' },
  { code: 'MCH', name: '平均红细胞血红蛋白量', value: '29.3', unit: 'pg', range: '27-34' },
  { code: 'MCHC', name: '平均红细胞血红蛋白浓度', value: '328', unit: 'g/L', range: '316-354' },
  { code: 'PLT', name: '血小板计数', value: '210', unit: '10^9/L', range: '125-350' },
  { code: 'NEUT%', name: '中性粒细胞百分比', value: '58.1', unit: '%', range: '40-75' },
  { code: 'LYMPH%', name: '淋巴细胞百分比', value: '31.4', unit: '%', range: '20-50' },
];

/** Distinct messages per kind (different patients and control ids), cycled through in the loop. */
const VARIANTS = 64;

function sets(): Array<{ label: string; texts: string[] }> {
  const sample = readFileSync(SAMPLE, 'utf8');
  const adt: string[] = [];
  const oru: string[] = [];
  for (let i = 0; i < VARIANTS; i++) {
    const patient = simPatient(i, 'B');
    adt.push(simAdt({ controlId: `BA${i}`, patient, charset: 'UNICODE UTF-8' }, 'A01'));
    oru.push(simOru({ controlId: `BO${i}`, patient, charset: 'UNICODE UTF-8' }, tenResults));
  }
  return [
    { label: 'ADT^A01 (sample ADT-A01-01.hl7)', texts: [sample] },
    { label: 'ADT^A01 (simAdt)', texts: adt },
    { label: 'ORU^R01 10 OBX (simOru)', texts: oru },
  ];
}

/** Runs `once` over the texts repeatedly for at least `seconds`; returns operations/s. */
function rate<T>(items: T[], seconds: number, once: (item: T) => void): number {
  let count = 0;
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  let now = t0;
  while (now < until) {
    for (let i = 0; i < items.length; i++) once(items[i]!);
    count += items.length;
    now = performance.now();
  }
  return count / ((now - t0) / 1000);
}

let sink = 0;

function validateAll(bundle: ReturnType<typeof convertMessage>): number {
  let issues = 0;
  for (const e of bundle.entry) issues += validateResource(e.resource).length;
  return issues;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function main(): void {
  console.log(`convert benchmark: ${SECONDS}s per run, one core (single-threaded loop), Node ${process.version}, ctx ${JSON.stringify(ctx)}`);
  for (const { label, texts } of sets()) {
    const parsed = texts.map((t) => Hl7Message.parse(t));
    const first = convertMessage(parsed[0]!, ctx);
    const types = first.entry.map((e) => e.resource.resourceType);
    const issues = validateAll(first);
    const parseConvert = (t: string): void => {
      sink += convertMessage(Hl7Message.parse(t), ctx).entry.length;
    };
    const convertOnly = (m: Hl7Message): void => {
      sink += convertMessage(m, ctx).entry.length;
    };
    const parseConvertValidate = (t: string): void => {
      sink += validateAll(convertMessage(Hl7Message.parse(t), ctx));
    };
    rate(texts, WARMUP_SECONDS, parseConvert);
    rate(parsed, WARMUP_SECONDS, convertOnly);
    rate(texts, WARMUP_SECONDS, parseConvertValidate);
    const a = rate(texts, SECONDS, parseConvert);
    const b = rate(parsed, SECONDS, convertOnly);
    const c = rate(texts, SECONDS, parseConvertValidate);
    console.log(`${label}: ${types.length} resources/bundle (${types.join(', ')}); validation issues on first bundle: ${issues}`);
    console.log(`    parse+convert                          ${fmt(a).padStart(8)} conversions/s`);
    console.log(`    convert alone (pre-parsed)             ${fmt(b).padStart(8)} conversions/s`);
    console.log(`    parse+convert+validateResource (each)  ${fmt(c).padStart(8)} conversions/s`);
  }
  if (sink === -1) console.log('');
}

main();
