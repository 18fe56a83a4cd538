/**
 * Parse-only throughput on one core (single-threaded loop) over the 83 FHIR-converter sample
 * messages, for our reader and two npm readers in the same run:
 *   - ours:           Hl7Message.parse (mappings/hl7v2/message.ts), given each file as received
 *                     (BOM and any line ends: it handles both itself)
 *   - hl7v2:          HL7Message.parse (dictionary-typed, unescapes), text with BOM stripped and \r ends
 *   - @medplum/core:  Hl7Message.parse (split only, no unescape), same normalised text
 * Each reader is timed twice: bare parse, and parse + touching every value once (ours is lazy, so
 * the bare figure alone would flatter it). "Touch" reads every leaf through the reader's own API:
 *   ours    segment.components(n, rep) for every field and repetition (unescaped components)
 *   hl7v2   every repetition → component → sub-component value (already unescaped and typed)
 *   medplum field.components[rep][comp] split on the sub-component separator (medplum has no unescape)
 * Samples a reader throws on are counted and left out of its rate.
 *   node dist/bench/parse.js [seconds per run, default 2]
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Hl7Message } from '../mappings/hl7v2/message';

const SECONDS = Number(process.argv[2] ?? 2);
const WARMUP_SECONDS = 0.5;
const SAMPLE_DIR = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'hl7v2', 'fhir-converter', 'messages');

interface Sample {
  name: string;
  /** As read from the file (our reader's input). */
  raw: string;
  /** BOM stripped, segment ends normalised to \r (the peers' input). */
  normalised: string;
}

function loadSamples(): Sample[] {
  const files = readdirSync(SAMPLE_DIR).filter((f) => f.endsWith('.hl7')).sort();
  return files.map((name) => {
    const raw = readFileSync(path.join(SAMPLE_DIR, name), 'utf8');
    const normalised = raw
      .replace(/^\uFEFF/, '')
      .split(/\r\n|\r|\n/)
      .filter((line) => line.trim() !== '')
      .join('\r') + '\r';
    return { name, raw, normalised };
  });
}

/** Keeps the touched values alive so the JIT cannot drop the work. */
let sink = 0;

interface Reader {
  name: string;
  input: (s: Sample) => string;
  parse: (text: string) => unknown;
  touch: (parsed: unknown) => void;
}

function ours(): Reader {
  return {
    name: 'ours (mappings/hl7v2/message.ts)',
    input: (s) => s.raw,
    parse: (text) => Hl7Message.parse(text),
    touch: (parsed) => {
      const m = parsed as Hl7Message;
      for (const seg of m.segments) {
        for (let n = 1; n < seg.fields.length; n++) {
          const reps = seg.repetitions(n).length;
          for (let r = 0; r < reps; r++) {
            for (const c of seg.components(n, r)) sink += c.length;
          }
        }
      }
    },
  };
}

async function hl7v2Reader(): Promise<Reader> {
  const lib = await import('hl7v2');
  return {
    name: 'hl7v2 HL7Message',
    input: (s) => s.normalised,
    parse: (text) => lib.HL7Message.parse(text),
    touch: (parsed) => {
      const m = parsed as InstanceType<typeof lib.HL7Message>;
      for (const seg of m.segments) {
        for (const field of seg.fields) {
          if (!field) continue;
          for (const rep of field.repetitions) {
            if (!rep) continue;
            for (const comp of rep.components ?? []) {
              if (!comp) continue;
              const subs = comp.subComponents;
              if (subs) {
                for (const sub of subs) if (sub) sink += sub.value == null ? 0 : 1;
              } else {
                sink += comp.getValue() == null ? 0 : 1;
              }
            }
          }
        }
      }
    },
  };
}

async function medplumReader(): Promise<Reader> {
  const lib = await import('@medplum/core');
  return {
    name: '@medplum/core Hl7Message',
    input: (s) => s.normalised,
    parse: (text) => lib.Hl7Message.parse(text),
    touch: (parsed) => {
      const m = parsed as InstanceType<typeof lib.Hl7Message>;
      const subSep = m.context.subcomponentSeparator;
      for (const seg of m.segments) {
        for (let f = 1; f < seg.fields.length; f++) {
          for (const rep of seg.fields[f]!.components) {
            for (const comp of rep) {
              for (const sub of comp.split(subSep)) sink += sub.length;
            }
          }
        }
      }
    },
  };
}

/** Runs the whole set repeatedly for at least `seconds`; returns messages/s. */
function rate(texts: string[], seconds: number, once: (text: string) => void): number {
  let count = 0;
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  let now = t0;
  while (now < until) {
    for (let i = 0; i < texts.length; i++) once(texts[i]!);
    count += texts.length;
    now = performance.now();
  }
  return count / ((now - t0) / 1000);
}

/** Samples this reader throws on (parse or touch). */
function failures(reader: Reader, samples: Sample[]): Array<{ name: string; error: string }> {
  const failed: Array<{ name: string; error: string }> = [];
  for (const s of samples) {
    try {
      const parsed = reader.parse(reader.input(s));
      reader.touch(parsed);
    } catch (e) {
      failed.push({ name: s.name, error: (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 120) });
    }
  }
  return failed;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const samples = loadSamples();
  const bytes = samples.reduce((a, s) => a + Buffer.byteLength(s.normalised), 0);
  console.log(`parse benchmark: ${samples.length} samples (${(bytes / 1024).toFixed(1)} KiB, mean ${Math.round(bytes / samples.length)} B/message), ${SECONDS}s per run, one core (single-threaded loop), Node ${process.version}`);
  const readers = [ours(), await hl7v2Reader(), await medplumReader()];
  for (const reader of readers) {
    const failed = failures(reader, samples);
    const ok = samples.filter((s) => !failed.some((f) => f.name === s.name));
    const texts = ok.map(reader.input);
    // Warm up both paths before timing either.
    rate(texts, WARMUP_SECONDS, (t) => void reader.parse(t));
    rate(texts, WARMUP_SECONDS, (t) => reader.touch(reader.parse(t)));
    const bare = rate(texts, SECONDS, (t) => void reader.parse(t));
    const touched = rate(texts, SECONDS, (t) => reader.touch(reader.parse(t)));
    console.log(
      `${reader.name.padEnd(32)} parse only ${fmt(bare).padStart(9)} msg/s   parse + touch every value ${fmt(touched).padStart(9)} msg/s   (${ok.length}/${samples.length} samples, ${failed.length} failed)`,
    );
    for (const f of failed) console.log(`    failed: ${f.name}: ${f.error}`);
  }
  if (sink === -1) console.log('');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
