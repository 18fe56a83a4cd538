/**
 * Fuzz over MLLP: at least 10,000 seeded mutations of the shared HL7 v2 samples (bit flips,
 * truncation, NUL and control bytes in every MSH field and in PID-3, wrong delimiters, escape abuse,
 * an MSH-18 that lies about the charset, invalid GB18030 and UTF-8 sequences, frames over the
 * channel's maxMessageBytes), mixed with good messages, over several connections to a spawned
 * `yilian serve --listeners-only` (its own database on the shared PostgreSQL, its own Redis prefix).
 *
 * What must hold: every frame is answered with an ACK frame; whatever the listener ACKs as stored
 * (AA, AE, AR — all but the "not stored, resend later" AR) is in raw_message.content byte for byte
 * (for an oversize frame: its first maxMessageBytes bytes, flagged truncated); no good message is
 * refused. The seed is printed; FUZZ_SEED=<n> repeats a run.
 *
 * Needs `npx tsc -p .` first (the listener runs dist/).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import iconv from 'iconv-lite';
import { Redis } from 'ioredis';
import pg from 'pg';
import { sha256 } from '../hub/rawStore';
import { simAdt, simPatient } from '../cli/simulate';
import { createTestDatabase, dropTestDatabase, REDIS_URL, SHARED_DATA } from './support/hub';
import { type FrameAnswer, PipelinedConnection, readMsa, segmentOf } from './support/mllp';
import { assertBuildIsFresh, freePort, outputTail, removeWorkerConfig, spawnListeners, stopProcess, writeHubConfig, type Proc } from './support/processes';
import { seededRandom } from '../hub/seededRandom';

const MUTATIONS = 10_000;
/** One good message after about every fourth mutated one. */
const GOOD_EVERY = 4;
const CONNECTIONS = 6;
/** Frames in flight per connection (the listener answers in order; several keep its group commit busy). */
const WINDOW = 4;
const MAX_MESSAGE_BYTES = 64 * 1024;
/** An ACK missing this long is a failure (generous: a busy 2-core machine, frames of up to 160 KB). */
const ACK_TIMEOUT_MS = 60_000;
const SAMPLES = path.join(SHARED_DATA, 'hl7v2/fhir-converter/messages');

const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : randomBytes(4).readUInt32LE(0);

const random = seededRandom(seed);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(list: readonly T[]): T => list[int(list.length)]!;

/** The samples as a sender puts them on the wire: no BOM, segments ended by CR. */
function loadSamples(): Buffer[] {
  return readdirSync(SAMPLES)
    .filter((f) => f.endsWith('.hl7'))
    .sort()
    .map((f) => {
      let bytes = readFileSync(path.join(SAMPLES, f));
      if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
      const text = bytes.toString('latin1').replace(/\r\n|\n/g, '\r').replace(/\r+$/, '');
      return Buffer.from(`${text}\r`, 'latin1');
    });
}

/** Byte range [start, end) of field `n` of the first segment named `name` (MSH-1 is the field separator itself). */
function fieldRange(message: Buffer, name: string, n: number): [number, number] | undefined {
  const first = message.subarray(0, 3).toString('latin1') === name;
  const found = first ? 0 : message.indexOf(Buffer.from(`\r${name}`, 'latin1'));
  if (found < 0) return undefined;
  const start = first ? 0 : found + 1;
  let segEnd = message.indexOf(0x0d, start);
  if (segEnd < 0) segEnd = message.length;
  const sep = message[start + 3];
  if (sep === undefined || start + 3 >= segEnd) return undefined;
  if (name === 'MSH' && n === 1) return [start + 3, start + 4];
  // `at` is the separator before field `field`: in MSH the one character is MSH-1 and the separator before MSH-2.
  let field = name === 'MSH' ? 2 : 1;
  let at = start + 3;
  while (field < n) {
    const next = message.indexOf(sep, at + 1);
    if (next < 0 || next >= segEnd) return undefined;
    at = next;
    field++;
  }
  const next = message.indexOf(sep, at + 1);
  return [at + 1, next < 0 || next > segEnd ? segEnd : next];
}

/** The message with MSH field `n` present (empty fields appended to the header when it is shorter). */
function withMshField(message: Buffer, n: number): Buffer {
  if (fieldRange(message, 'MSH', n)) return message;
  let end = message.indexOf(0x0d);
  if (end < 0) end = message.length;
  const sep = String.fromCharCode(message[3] ?? 0x7c);
  const fields = message.subarray(0, end).toString('latin1').split(sep).length; // MSH, MSH-2 … MSH-<fields>
  return splice(message, end, 0, Buffer.from(sep.repeat(Math.max(1, n - fields)), 'latin1'));
}

function splice(message: Buffer, at: number, remove: number, insert: Buffer): Buffer {
  return Buffer.concat([message.subarray(0, at), insert, message.subarray(at + remove)]);
}

const CONTROL_BYTES = [0x00, 0x01, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0d, 0x1b, 0x1c, 0x1f, 0x7f];
const ESCAPES = [
  '\\X\\', '\\X4\\', '\\X414\\', '\\XZZ\\', '\\X00\\', '\\X1C0D\\', '\\XFFFE\\', `\\X${'41'.repeat(2000)}\\`,
  '\\Zabc\\', '\\Z..\\', '\\Z\\', '\\X41', '\\E', '\\', '\\\\\\', '\\E\\\\E\\', '\\H\\\\N\\', '\\.br\\', '\\.sp5\\', '\\C2842\\', '\\M2442\\',
  '\\S\\\\T\\\\R\\\\F\\', '\\F', '\\.in+\\', '\\X',
];
const INVALID_SEQUENCES = [
  [0xff], [0x80], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf0, 0x9f], [0xf4, 0x90, 0x80, 0x80], [0xe4, 0xb8],
  [0x81, 0x20], [0x81, 0x30, 0x81], [0xfe, 0x39, 0xfe, 0x39], [0x81], [0x84, 0x31, 0xa5, 0x30], [0xa1, 0x7f],
];
const CHARSET_NAMES = ['UNICODE UTF-8', 'GB18030', '', 'ASCII', '8859/1', 'KLINGON'];

/** Set MSH-18 (appending empty fields up to it when the header is shorter). */
function withMsh18(message: Buffer, value: string): Buffer {
  const base = withMshField(message, 18);
  const range = fieldRange(base, 'MSH', 18);
  return range ? splice(base, range[0], range[1] - range[0], Buffer.from(value, 'latin1')) : base;
}

/** A message with Chinese text, for the charset lies: a simulated HIS ADT. */
function chinese(charsetField: string, n: number): string {
  return simAdt({ controlId: `ZH-${n}`, patient: simPatient(n, 'Z'), charset: charsetField }, 'A08');
}

type Mutation = { label: string; apply: (sample: Buffer, n: number) => Buffer };

const mutations: Mutation[] = [
  {
    label: 'bit flips',
    apply: (m) => {
      const out = Buffer.from(m);
      for (let k = 1 + int(8); k > 0; k--) out[int(out.length)] ^= 1 << int(8);
      return out;
    },
  },
  { label: 'truncation', apply: (m) => m.subarray(0, int(m.length)) },
  {
    label: 'control byte in an MSH field',
    // Cycles through every MSH field (1–21) and every control byte in turn.
    apply: (m, n) => {
      const field = 1 + (n % 21);
      const byte = CONTROL_BYTES[Math.floor(n / 21) % CONTROL_BYTES.length]!;
      const base = withMshField(m, field);
      const range = fieldRange(base, 'MSH', field);
      if (!range) return splice(m, int(m.length + 1), 0, Buffer.from([byte])); // a header too broken to have fields
      if (field === 1) return splice(base, range[0], 1, Buffer.from([byte]));
      const at = range[0] + int(range[1] - range[0] + 1);
      return random() < 0.5 ? splice(base, at, 0, Buffer.from([byte])) : splice(base, range[0], range[1] - range[0], Buffer.from([byte]));
    },
  },
  {
    label: 'control byte in PID-3',
    apply: (m, n) => {
      const range = fieldRange(m, 'PID', 3);
      const byte = CONTROL_BYTES[n % CONTROL_BYTES.length]!;
      if (!range) return splice(m, m.length, 0, Buffer.from(`PID|1||${String.fromCharCode(byte)}P1^^^H^MR\r`, 'latin1'));
      return splice(m, range[0] + int(range[1] - range[0] + 1), 0, Buffer.from([byte]));
    },
  },
  {
    label: 'wrong delimiters',
    apply: (m) => {
      const text = m.toString('latin1');
      switch (int(8)) {
        case 0:
          return Buffer.from(`MSH${pick(['#', '^', ' ', '\r', '\\', '~', 'A'])}${text.slice(4)}`, 'latin1');
        case 1: {
          const enc = text.slice(4, 8).split('');
          for (let i = enc.length - 1; i > 0; i--) {
            const j = int(i + 1);
            [enc[i], enc[j]] = [enc[j]!, enc[i]!];
          }
          return Buffer.from(`MSH|${enc.join('')}${text.slice(8)}`, 'latin1');
        }
        case 2:
          return Buffer.from(`MSH|${pick(['^^^^', '||||', '', '^', '^~\\&#', '\\\\\\\\'])}${text.slice(8)}`, 'latin1');
        case 3: {
          // The header declares '!' but the body keeps '|'.
          const end = text.indexOf('\r');
          return Buffer.from(text.slice(0, end).replace(/\|/g, '!') + text.slice(end), 'latin1');
        }
        case 4:
          return Buffer.from(text.replace(/\r/g, pick(['\n', '\r\n', '\n\r', ''])), 'latin1');
        case 5:
          return Buffer.from(pick(['msh', 'MSX', 'FHS', 'BHS', ' MSH', '']) + text.slice(3), 'latin1');
        case 6:
          return Buffer.from(text.replace(/\^/g, '|'), 'latin1');
        default:
          return Buffer.from(text.replace(/\|/g, pick(['^', '~', '&', '\\'])), 'latin1');
      }
    },
  },
  {
    label: 'escape abuse',
    apply: (m) => {
      const segs = ['PID', 'PV1', 'OBX', 'OBR', 'MSH', 'EVN', 'NK1'];
      // Into a field, or anywhere when an earlier mutation left no readable fields.
      const range = fieldRange(m, pick(segs), 1 + int(12)) ?? fieldRange(m, 'MSH', 9) ?? [0, m.length];
      const insert = Buffer.from(pick(ESCAPES), 'latin1');
      return splice(m, range[0] + int(range[1] - range[0] + 1), 0, insert);
    },
  },
  {
    label: 'lying MSH-18',
    apply: (_m, n) => {
      switch (n % 4) {
        case 0: // says UTF-8, bytes are GB18030
          return iconv.encode(chinese('UNICODE UTF-8', n), 'gb18030');
        case 1: // says GB18030, bytes are UTF-8
          return Buffer.from(chinese('GB18030', n), 'utf8');
        case 2: // says ASCII, bytes are UTF-8 Chinese
          return Buffer.from(chinese('ASCII', n), 'utf8');
        default: // a charset nobody knows
          return Buffer.from(chinese(pick(['KLINGON', 'UNICODE UTF-16', 'ISO IR87', 'GBK;UTF-8']), n), 'utf8');
      }
    },
  },
  {
    label: 'invalid GB18030/UTF-8 sequence',
    apply: (m, n) => {
      const declared = CHARSET_NAMES[n % CHARSET_NAMES.length]!;
      const base = random() < 0.5 ? withMsh18(m, declared) : Buffer.from(chinese(declared, n), random() < 0.5 ? 'utf8' : 'latin1');
      const range = fieldRange(base, 'PID', 5) ?? fieldRange(base, 'MSH', 10) ?? [0, base.length];
      return splice(base, range[0] + int(range[1] - range[0] + 1), 0, Buffer.from(pick(INVALID_SEQUENCES)));
    },
  },
  {
    label: 'several at once',
    apply: (m, n) => {
      let out = m;
      for (let k = 2 + int(2); k > 0; k--) out = pick(mutations.slice(0, 8)).apply(out.length ? out : m, n + k);
      return out;
    },
  },
];

/** Over maxMessageBytes: a field padded with text (the listener keeps the first maxMessageBytes bytes). */
function oversize(m: Buffer): Buffer {
  const pad = Buffer.alloc(MAX_MESSAGE_BYTES + 1 + int(100_000), 'x');
  return Buffer.concat([m.subarray(0, m.length - 1), Buffer.from('|', 'latin1'), pad, Buffer.from('\r', 'latin1')]);
}

/**
 * FS CR inside a message ends its frame early: no MLLP sender can send it, so it is not a case for
 * the listener. Such a pair becomes GS CR (the FS alone, and every other control byte, stays).
 */
function sendable(message: Buffer): Buffer {
  const out = Buffer.from(message);
  for (let i = out.indexOf(Buffer.from([0x1c, 0x0d])); i >= 0; i = out.indexOf(Buffer.from([0x1c, 0x0d]), i + 1)) out[i] = 0x1d;
  return out;
}

interface Frame {
  n: number;
  kind: 'good' | 'mutated' | 'oversize';
  label: string;
  bytes: Buffer;
  controlId?: string;
  answer?: FrameAnswer;
}

let databaseUrl: string | undefined;
let configFile: string | undefined;
let listener: Proc | undefined;
let db: pg.Pool | undefined;
let port = 0;
const prefix = `yt-fuzz-${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  assertBuildIsFresh();
  databaseUrl = await createTestDatabase('fuzz');
  port = await freePort();
  configFile = writeHubConfig({
    members: [
      {
        id: 'm1',
        name: 'Member 1',
        tier: 'secondary',
        channels: [{ id: 'fz', kind: 'mllp', host: '127.0.0.1', port, charset: 'UTF-8', ackMode: 'original', maxMessageBytes: MAX_MESSAGE_BYTES }],
      },
    ],
    pipeline: { queuePrefix: prefix, partitions: 4 },
  });
  listener = await spawnListeners({ databaseUrl, redisUrl: REDIS_URL }, configFile, 1);
  db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
}, 120_000);

afterAll(async () => {
  if (listener) await stopProcess(listener, 10_000);
  await db?.end();
  if (databaseUrl) await dropTestDatabase(databaseUrl);
  if (configFile) removeWorkerConfig(configFile);
  // The listener's intake enqueued the stored messages under this run's prefix: remove them.
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}, 60_000);

/** The ACK says the message was not stored (the listener's "resend later" AR): nothing to find in the store. */
function notStored(ack: Buffer): boolean {
  const err = segmentOf(ack, 'ERR');
  return readMsa(ack)?.code === 'AR' && /message not stored/.test(`${err?.[8] ?? ''}${segmentOf(ack, 'MSA')?.[3] ?? ''}`);
}

test(`${MUTATIONS.toLocaleString('en')} seeded mutations of the shared samples, mixed with good traffic: every frame answered, every stored one byte-exact`, async () => {
  const samples = loadSamples();
  expect(samples.length).toBeGreaterThanOrEqual(80);

  const frames: Frame[] = [];
  let good = 0;
  for (let i = 0; i < MUTATIONS; i++) {
    const sample = pick(samples);
    if (i % 100 === 7) {
      frames.push({ n: frames.length, kind: 'oversize', label: 'oversize', bytes: oversize(sample) });
    } else {
      const mutation = mutations[i % mutations.length]!;
      frames.push({ n: frames.length, kind: 'mutated', label: mutation.label, bytes: sendable(mutation.apply(sample, i)) });
    }
    if (int(GOOD_EVERY) === 0) {
      const controlId = `GOOD-${seed}-${good}`;
      const charset = good % 2 ? 'GB18030' : 'UNICODE UTF-8';
      const text = simAdt({ controlId, patient: simPatient(good, 'G'), charset }, 'A08');
      frames.push({ n: frames.length, kind: 'good', label: 'good', controlId, bytes: charset === 'GB18030' ? iconv.encode(text, 'gb18030') : Buffer.from(text, 'utf8') });
      good++;
    }
  }

  // Several connections, each with a few frames in flight, take frames from one queue.
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      const connection = await PipelinedConnection.open(port, ACK_TIMEOUT_MS);
      const inFlight = new Set<Promise<void>>();
      while (next < frames.length) {
        const frame = frames[next++]!;
        const done = connection.send(frame.bytes).then((answer) => {
          frame.answer = answer;
          inFlight.delete(done);
        });
        inFlight.add(done);
        if (inFlight.size >= WINDOW) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      await connection.close();
    }),
  );
  const seconds = (Date.now() - started) / 1000;

  // What the store holds, by content hash.
  const stored = new Map<string, { content: Buffer; flags: string[] }>();
  const result = await db!.query<{ sha256: Buffer; content: Buffer; flags: string[] }>(`SELECT sha256, content, flags FROM raw_message`);
  for (const row of result.rows) stored.set(row.sha256.toString('hex'), { content: row.content, flags: row.flags });

  const problems: Record<string, string[]> = {};
  const note = (what: string, item: string) => (problems[what] ??= []).push(item);
  const show = (b: Buffer) => JSON.stringify(b.subarray(0, 160).toString('latin1'));
  const codes = new Map<string, number>();
  let answered = 0;
  let refusedGood = 0;
  let notStoredMutated = 0;
  let expectedStored = 0;
  let byteExact = 0;
  for (const frame of frames) {
    const answer = frame.answer;
    if (!answer?.ack) {
      note('frames without an ACK', `#${frame.n} ${frame.label}: ${answer?.failure ?? 'never sent'}; ${show(frame.bytes)}`);
      continue;
    }
    const msa = readMsa(answer.ack);
    if (!msa) {
      note('ACK frames without MSA', `#${frame.n} ${frame.label}: ack ${show(answer.ack)}; message ${show(frame.bytes)}`);
      continue;
    }
    answered++;
    codes.set(msa.code, (codes.get(msa.code) ?? 0) + 1);
    if (frame.kind === 'good' && (msa.code !== 'AA' || msa.controlId !== frame.controlId)) {
      refusedGood++;
      note('good messages refused', `#${frame.n} ${frame.controlId}: ${msa.code} for ${msa.controlId}: ${show(answer.ack)}`);
    }
    if (frame.kind === 'oversize' && (msa.code !== 'AR' || !/^104\^/.test(segmentOf(answer.ack, 'ERR')?.[3] ?? ''))) {
      note('oversize frames not answered AR 104', `#${frame.n} ${frame.bytes.length} bytes: ${show(answer.ack)}`);
    }
    if (notStored(answer.ack)) {
      if (frame.kind !== 'good') notStoredMutated++;
      continue;
    }
    // ACKed as stored: the store must hold exactly these bytes (an oversize frame: its head, flagged truncated).
    expectedStored++;
    const expected = frame.kind === 'oversize' ? frame.bytes.subarray(0, MAX_MESSAGE_BYTES) : frame.bytes;
    const row = stored.get(sha256(expected).toString('hex'));
    if (!row) note('ACKed as stored but not in raw_message', `#${frame.n} ${frame.label} (${msa.code}): ${show(frame.bytes)}`);
    else if (!row.content.equals(expected)) note('stored bytes differ from the bytes sent', `#${frame.n} ${frame.label}: stored ${show(row.content)}; sent ${show(expected)}`);
    else if (frame.kind === 'oversize' && !row.flags.includes('truncated')) note('oversize head not flagged truncated', `#${frame.n}: flags ${row.flags}`);
    else byteExact++;
  }

  const mutated = frames.filter((f) => f.kind !== 'good').length;
  console.log(
    `fuzz: seed ${seed} (FUZZ_SEED=${seed} repeats it); ${frames.length} frames (${mutated} mutated of which ${frames.filter((f) => f.kind === 'oversize').length} oversize, ${good} good) ` +
      `over ${CONNECTIONS} connections in ${seconds.toFixed(1)} s; answered ${answered}/${frames.length} ` +
      `(${[...codes].map(([k, v]) => `${k} ${v}`).join(', ')}); refused good ${refusedGood}; ` +
      `mutated answered "not stored, resend later" ${notStoredMutated}; stored byte-exact ${byteExact}/${expectedStored}`,
  );

  const exited = listener!.child.exitCode !== null || listener!.child.signalCode !== null;
  if (exited || Object.keys(problems).length > 0) {
    const summary = Object.fromEntries(Object.entries(problems).map(([k, v]) => [k, v.length > 20 ? [...v.slice(0, 20), `… ${v.length - 20} more`] : v]));
    throw new Error(
      `fuzz (seed ${seed}) failed:\n${JSON.stringify(summary, null, 2)}\nlistener ${exited ? `EXITED (code ${listener!.child.exitCode}, signal ${listener!.child.signalCode})` : 'still running'}; output tail:\n${outputTail(listener!, 40)}`,
    );
  }
  expect(answered).toBe(frames.length);
  expect(refusedGood).toBe(0);
  expect(byteExact).toBe(expectedStored);
}, 180_000);
