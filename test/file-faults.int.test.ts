/**
 * The file drop channel under faults, against real PostgreSQL/Redis (issue rows 2, 5, 6, 12 and a
 * store outage): the poller never dies, never half-reads a file, and every odd entry or failure is
 * logged and ends somewhere an operator can see it.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, symlinkSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileChannelSchema, type FileChannelConfig, type MemberConfig } from '../hub/config';
import { openHubDb } from '../hub/db';
import type { HubDb } from '../hub/sql';
import { RawIntake } from '../adapters/intake';
import { DropFolder, OVERSIZE_HEAD_BYTES } from '../adapters/file/dropFolder';
import { simAdt, simPatient } from '../cli/simulate';
import { PgRelay } from './support/pgRelay';
import { startTestHub, waitFor, type TestHub } from './support/hub';

let hub: TestHub;
let root: string;
let member: MemberConfig;
const folders: DropFolder[] = [];
const channelIds = ['long', 'cut', 'grace', 'after', 'big', 'odd', 'follow', 'down'];

/** Every unhandled rejection during this file: the old poller's `void this.poll()` produced them, and they end a real process. */
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'yilian-faults-'));
  hub = await startTestHub('filefaults', {
    members: [{ id: 'chc', name: '社区', tier: 'primary', channels: channelIds.map((id) => ({ id, kind: 'file', dir: path.join(root, id) })) }],
  });
  member = hub.config.members[0]!;
  process.on('unhandledRejection', onUnhandled);
});

afterAll(async () => {
  for (const folder of folders) folder.stop();
  process.off('unhandledRejection', onUnhandled);
  await hub.close();
});

afterEach(() => {
  expect(unhandled).toEqual([]);
});

/** A folder on its own directory; polled by hand unless `start` (then its own timer polls). */
function folderFor(id: string, options: Partial<FileChannelConfig> = {}, intake: RawIntake = hub.runtime.intake): { folder: DropFolder; dir: string; logs: string[] } {
  const dir = path.join(root, id);
  mkdirSync(dir, { recursive: true });
  const channel = fileChannelSchema.parse({ id, kind: 'file', dir, stableMs: 100, pollIntervalMs: 100_000, ...options });
  const logs: string[] = [];
  const folder = new DropFolder(member, channel, intake, { log: (text) => logs.push(text) });
  folders.push(folder);
  return { folder, dir, logs };
}

/** Poll by hand until `check` holds (a file must be stable for stableMs, so several polls are needed). */
async function pollUntil(folder: DropFolder, check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      await folder.poll();
      return check();
    },
    timeoutMs,
    what,
  );
}

const rows = async <T>(sql: string, params: unknown[] = []) => (await hub.runtime.db.query<T & Record<string, unknown>>(sql, params)).rows;

function oru(controlId: string): string {
  return [
    `MSH|^~\\&|LIS|HOSP|YILIAN|HUB|20261123093000||ORU^R01^ORU_R01|${controlId}|P|2.5|||||CHN|UNICODE UTF-8`,
    `PID|1||P200001^^^HOSP^MR||王^芳||19800101|F`,
    `OBR|1||LAB-${controlId}|718-7^Hemoglobin^LN|||20261123090000`,
    `OBX|1|NM|718-7^Hemoglobin^LN||135|g/L|115-150|N|||F`,
  ].join('\r') + '\r';
}

// Row 2: a 236-character name plus the archive's timestamp prefix failed rename() with ENAMETOOLONG,
// and the rejection from the timer's `void this.poll()` ended the process, again after every restart.
test('row 2: long ASCII and Chinese names are archived under shortened names that fit 255 bytes; the timer keeps polling', async () => {
  const { folder, dir, logs } = folderFor('long', { pollIntervalMs: 100 });
  const ascii = 'r'.repeat(246) + '.hl7'; // 250 bytes: with the 16-byte timestamp prefix past 255
  const chinese = 'r'.repeat(230) + '检验.hl7'; // 236 characters as in the report, 242 bytes of UTF-8
  const allChinese = '检验结果报告'.repeat(13) + '单.hl7'; // 83 characters, 241 bytes
  for (const name of [ascii, chinese, allChinese]) expect(Buffer.byteLength(name) + 16).toBeGreaterThan(255);
  writeFileSync(path.join(dir, allChinese), simAdt({ controlId: 'LONG-0', patient: simPatient(0, 'L') }));
  writeFileSync(path.join(dir, ascii), simAdt({ controlId: 'LONG-1', patient: simPatient(1, 'L') }));
  writeFileSync(path.join(dir, chinese), simAdt({ controlId: 'LONG-2', patient: simPatient(2, 'L') }));
  await folder.start(); // the real timer: an unhandled rejection from it fails afterEach
  await waitFor(async () => [ascii, chinese, allChinese].every((n) => !existsSync(path.join(dir, n))), 20_000, 'the long names archived');
  const archived = readdirSync(folder.archiveDir);
  for (const name of archived) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
  const reasons = archived.filter((n) => n.endsWith('.reason.txt')).map((n) => readFileSync(path.join(folder.archiveDir, n), 'utf8'));
  expect(reasons.join('\n')).toContain(JSON.stringify(ascii));
  expect(reasons.join('\n')).toContain(JSON.stringify(chinese));
  expect(reasons.join('\n')).toContain(JSON.stringify(allChinese));
  expect((await rows<{ control_id: string }>(`SELECT control_id FROM raw_message WHERE control_id LIKE 'LONG-%' ORDER BY control_id`)).map((r) => r.control_id)).toEqual(['LONG-0', 'LONG-1', 'LONG-2']);
  // Still polling afterwards: a later file is picked up by the same timer.
  writeFileSync(path.join(dir, 'later.hl7'), simAdt({ controlId: 'LONG-3', patient: simPatient(3, 'L') }));
  await waitFor(async () => (await rows(`SELECT 1 FROM raw_message WHERE control_id = 'LONG-3'`)).length === 1, 20_000, 'a later file stored');
  expect(logs.filter((l) => /failed/.test(l))).toEqual([]);
  folder.stop();
});

// Row 5: a file written in two parts with a 2.5 s pause was read after the first 196 of 307 bytes.
test('row 5: a file cut mid-segment waits for its writer, and is stored whole once the rest arrives', async () => {
  const { folder, dir, logs } = folderFor('cut', { incompleteGraceMs: 30_000 });
  const full = Buffer.from(oru('CUT-1'));
  const file = path.join(dir, 'result.hl7');
  const cutAt = full.indexOf('OBR|1||') + 4; // inside the OBR segment, like a writer's buffer flush
  writeFileSync(file, full.subarray(0, cutAt));
  await pollUntil(folder, () => logs.some((l) => l.includes('"result.hl7" looks cut off') && /no segment terminator/.test(l)), 'the cut noticed');
  // The writer's pause (2.5 s in the report, far longer than stableMs): polling on must not read it.
  const pauseEnds = Date.now() + 2500;
  await pollUntil(folder, () => Date.now() > pauseEnds, 'the writer pause');
  expect(await rows(`SELECT 1 FROM raw_message WHERE control_id = 'CUT-1'`)).toHaveLength(0);
  expect(existsSync(file)).toBe(true);
  expect(logs.filter((l) => l.includes('looks cut off'))).toHaveLength(1); // logged once, not every poll
  writeFileSync(file, full.subarray(cutAt), { flag: 'a' });
  await pollUntil(folder, () => !existsSync(file), 'the completed file archived').catch((error: Error) => {
    throw new Error(`${error.message}; log:\n${logs.join('\n')}`);
  });
  const stored = await rows<{ content: Buffer; status: string }>(`SELECT content, status FROM raw_message WHERE control_id = 'CUT-1'`);
  expect(stored).toHaveLength(1);
  expect(stored[0]!.content.equals(full)).toBe(true);
});

test('row 5: a batch that stays open past incompleteGraceMs is quarantined whole as incomplete and moved to the error folder', async () => {
  const { folder, dir, logs } = folderFor('grace', { incompleteGraceMs: 1500 });
  const body = Buffer.from(['FHS|^~\\&|LIS', 'BHS|^~\\&|LIS', oru('GRACE-1') + oru('GRACE-2')].join('\r')); // no BTS, no FTS
  writeFileSync(path.join(dir, 'batch.hl7'), body);
  const started = Date.now();
  await pollUntil(folder, () => !existsSync(path.join(dir, 'batch.hl7')), 'the open batch moved');
  expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
  // Not half-read: none of its messages was processed on its own.
  expect(await rows(`SELECT 1 FROM raw_message WHERE control_id LIKE 'GRACE-%'`)).toHaveLength(0);
  const q = await rows<{ code: string; content: Buffer }>(`SELECT q.code, r.content FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE r.channel_id = 'grace'`);
  expect(q).toHaveLength(1);
  expect(q[0]!.code).toBe('incomplete');
  expect(q[0]!.content.equals(body)).toBe(true);
  const moved = readdirSync(folder.errorDir).find((n) => n.endsWith('-batch.hl7'))!;
  expect(readFileSync(path.join(folder.errorDir, `${moved}.reason.txt`), 'utf8')).toMatch(/incomplete: .*BHS\) is not closed by a BTS/);
  expect(logs.some((l) => /quarantined as incomplete/.test(l))).toBe(true);
});

// Row 5 as reported: the cut fell on a segment end, so the first part looked like a whole message;
// the writer kept its descriptor and wrote OBR/OBX into the file after it had been archived.
test('row 5: bytes written into a file after it was archived are quarantined as incomplete and logged', async () => {
  const { folder, dir, logs } = folderFor('after', { incompleteGraceMs: 30_000 });
  const full = Buffer.from(oru('AFTER-1'));
  const cutAt = full.indexOf('OBR|');
  const fd = openSync(path.join(dir, 'late.hl7'), 'w');
  try {
    writeSync(fd, full.subarray(0, cutAt));
    await pollUntil(folder, () => !existsSync(path.join(dir, 'late.hl7')), 'the first part archived');
    writeSync(fd, full.subarray(cutAt)); // through the open descriptor: lands in the archived file
  } finally {
    closeSync(fd);
  }
  const tail = full.subarray(cutAt);
  await pollUntil(
    folder,
    async () => (await rows(`SELECT 1 FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE r.channel_id = 'after' AND q.code = 'incomplete'`)).length === 1,
    'the late bytes quarantined',
  );
  const q = await rows<{ content: Buffer }>(`SELECT r.content FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE r.channel_id = 'after' AND q.code = 'incomplete'`);
  expect(q[0]!.content.equals(tail)).toBe(true);
  expect(logs.some((l) => l.includes(`${tail.length} bytes were written to "late.hl7" after it was read and archived`))).toBe(true);
  const archived = readdirSync(folder.archiveDir).find((n) => n.endsWith('-late.hl7'))!;
  expect(readFileSync(path.join(folder.archiveDir, `${archived}.reason.txt`), 'utf8')).toMatch(/incomplete/);
});

// Row 6: a 60 MB file was read whole; `serve` grew to 654 MB.
test('row 6: a 60 MB file is not read into memory: its head is quarantined as too-large and the file goes to the error folder', async () => {
  const { folder, dir, logs } = folderFor('big'); // default maxFileBytes: 16 MiB
  const file = path.join(dir, 'huge.hl7');
  const head = Buffer.from(simAdt({ controlId: 'BIG-1', patient: simPatient(6, 'B') }));
  writeFileSync(file, head);
  truncateSync(file, 60 * 1024 * 1024); // sparse: 60 MB of size without writing 60 MB
  const before = process.memoryUsage().arrayBuffers;
  let peak = before;
  await pollUntil(
    folder,
    () => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
      return !existsSync(file);
    },
    'the huge file moved',
  );
  // Reading it whole would have taken 60 MB of buffers at once.
  expect(peak - before).toBeLessThan(30 * 1024 * 1024);
  const q = await rows<{ code: string; content: Buffer; flags: string[] }>(`SELECT q.code, r.content, r.flags FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE r.channel_id = 'big'`);
  expect(q).toHaveLength(1);
  expect(q[0]!.code).toBe('too-large');
  expect(q[0]!.content.length).toBe(OVERSIZE_HEAD_BYTES);
  expect(q[0]!.content.subarray(0, head.length).equals(head)).toBe(true);
  const moved = readdirSync(folder.errorDir).find((n) => n.endsWith('-huge.hl7'))!;
  expect(readFileSync(path.join(folder.errorDir, `${moved}.reason.txt`), 'utf8')).toMatch(/too-large: .*62914560 bytes exceeds the channel limit of 16777216/);
  expect(logs.some((l) => /above maxFileBytes/.test(l))).toBe(true);
});

// Row 12: odd entries matching the pattern were ignored forever without a word; a FIFO must never be opened (it would block).
test('row 12: a symlink, a FIFO, a socket and a directory are logged once each and skipped; a name with a newline is archived under a safe name', async () => {
  const { folder, dir, logs } = folderFor('odd');
  const target = path.join(root, 'outside.hl7');
  writeFileSync(target, simAdt({ controlId: 'ODD-LINK', patient: simPatient(7, 'O') }));
  symlinkSync(target, path.join(dir, 'link.hl7'));
  execFileSync('mkfifo', [path.join(dir, 'pipe.hl7')]);
  mkdirSync(path.join(dir, 'folder.hl7'));
  const socket = net.createServer().listen(path.join(dir, 'sock.hl7'));
  await new Promise((r) => socket.once('listening', r));
  const newline = 'lab\nresult.hl7';
  writeFileSync(path.join(dir, newline), simAdt({ controlId: 'ODD-NL', patient: simPatient(8, 'O') }));
  try {
    // poll() is awaited: if it opened the FIFO it would hang and this wait would time out.
    await pollUntil(folder, () => !existsSync(path.join(dir, newline)), 'the newline name archived');
    for (let i = 0; i < 3; i++) await folder.poll();
  } finally {
    socket.close();
  }
  const skipped = (name: string) => logs.filter((l) => l.includes(`skipping ${JSON.stringify(name)}`));
  expect(skipped('link.hl7')).toEqual([expect.stringMatching(/symbolic link \(set followSymlinks/)]);
  expect(skipped('pipe.hl7')).toEqual([expect.stringMatching(/FIFO/)]);
  expect(skipped('folder.hl7')).toEqual([expect.stringMatching(/a directory/)]);
  expect(skipped('sock.hl7')).toEqual([expect.stringMatching(/a socket/)]);
  expect(existsSync(path.join(dir, 'link.hl7')) && existsSync(path.join(dir, 'pipe.hl7')) && existsSync(path.join(dir, 'folder.hl7'))).toBe(true);
  expect(await rows(`SELECT 1 FROM raw_message WHERE control_id = 'ODD-LINK'`)).toHaveLength(0);
  expect(await rows(`SELECT 1 FROM raw_message WHERE control_id = 'ODD-NL'`)).toHaveLength(1);
  const archived = readdirSync(folder.archiveDir).find((n) => n.endsWith('-lab_result.hl7'))!;
  expect(archived).toBeDefined();
  expect(readFileSync(path.join(folder.archiveDir, `${archived}.reason.txt`), 'utf8')).toContain('original name: "lab\\nresult.hl7"');
});

test('row 12: with followSymlinks a link to a file is read and the link moved; its target is left alone', async () => {
  const { folder, dir } = folderFor('follow', { followSymlinks: true });
  const target = path.join(root, 'followed.hl7');
  writeFileSync(target, simAdt({ controlId: 'FOLLOW-1', patient: simPatient(9, 'O') }));
  symlinkSync(target, path.join(dir, 'link.hl7'));
  execFileSync('mkfifo', [path.join(root, 'fifo-target')]);
  symlinkSync(path.join(root, 'fifo-target'), path.join(dir, 'to-fifo.hl7'));
  await pollUntil(folder, () => !existsSync(path.join(dir, 'link.hl7')), 'the link processed');
  expect(await rows(`SELECT 1 FROM raw_message WHERE control_id = 'FOLLOW-1'`)).toHaveLength(1);
  expect(existsSync(target)).toBe(true);
  expect(existsSync(path.join(dir, 'to-fifo.hl7'))).toBe(true); // a link to a FIFO is never opened either
});

test('store down: the poller keeps running, the file stays, one log line per outage; once the store is back it is stored and archived', async () => {
  const relay = new PgRelay();
  await relay.listen();
  const db: HubDb = await openHubDb({ databaseUrl: relay.urlThrough(hub.databaseUrl), poolSize: 2 });
  const intake = new RawIntake(db, hub.runtime.queues);
  const { folder, dir, logs } = folderFor('down', { pollIntervalMs: 100, stableMs: 100 }, intake);
  try {
    await folder.start();
    // Down for real: nothing listens on the port (ECONNREFUSED, as in the report).
    await relay.close();
    const file = path.join(dir, 'while-down.hl7');
    writeFileSync(file, simAdt({ controlId: 'DOWN-1', patient: simPatient(10, 'D') }));
    await waitFor(async () => logs.some((l) => /raw store unavailable .*ECONNREFUSED/.test(l)), 20_000, 'the outage logged');
    // Still down, now accepting and resetting connections so each retry is counted: the timer keeps polling.
    relay.mode = 'dropping';
    await relay.listen();
    await waitFor(async () => relay.attempts >= 5, 20_000, 'five more store attempts from later polls');
    expect(existsSync(file)).toBe(true);
    expect(logs.filter((l) => /raw store unavailable/.test(l))).toHaveLength(1);
    expect(await rows(`SELECT 1 FROM raw_message WHERE control_id = 'DOWN-1'`)).toHaveLength(0);
    relay.mode = 'up';
    await waitFor(async () => !existsSync(file), 30_000, 'the file archived once the store is back');
    expect(await rows(`SELECT 1 FROM raw_message WHERE control_id = 'DOWN-1'`)).toHaveLength(1);
    expect(readdirSync(folder.archiveDir).some((n) => n.endsWith('-while-down.hl7'))).toBe(true);
    expect(logs.some((l) => /raw store reachable again/.test(l))).toBe(true);
  } finally {
    folder.stop();
    await intake.drain();
    await relay.close();
    await db.close();
  }
});
