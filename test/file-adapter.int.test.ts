/**
 * File drop channel against real PostgreSQL/Redis: batches and line ends, half-written files never
 * read, archive and error folders, and idempotent re-reads.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FileChannelConfig } from '../hub/config';
import { DropFolder } from '../adapters/file/dropFolder';
import { encodeAs, simAdt, simPatient } from '../cli/simulate';
import { startTestHub, type TestHub } from './support/hub';

let hub: TestHub;
let dir: string;
let folder: DropFolder;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-drop-'));
  hub = await startTestHub('file', {
    members: [{ id: 'chc', name: '社区', tier: 'primary', channels: [{ id: 'drop', kind: 'file', dir, charset: 'GB18030', stableMs: 200, pollIntervalMs: 100000 }] }],
  });
  const member = hub.config.members[0]!;
  folder = new DropFolder(member, member.channels[0] as FileChannelConfig, hub.runtime.intake);
  await folder.start();
});

afterAll(async () => {
  folder.stop();
  await hub.close();
});

const count = async (sql: string, params: unknown[] = []) => (await hub.runtime.db.query<{ n: number }>(sql, params)).rows[0]!.n;

/** Poll until the file is picked up (it must be stable for stableMs first). */
async function pollUntilProcessed(name: string): Promise<void> {
  for (let i = 0; i < 100 && existsSync(path.join(dir, name)); i++) {
    await folder.poll();
    await new Promise((r) => setTimeout(r, 60));
  }
  expect(existsSync(path.join(dir, name))).toBe(false);
}

test.each([
  ['CR', '\r'],
  ['LF', '\n'],
  ['CRLF', '\r\n'],
])('a GB18030 batch with %s segment ends is stored message by message, byte-exact, and archived', async (label, eol) => {
  const messages = [0, 1, 2].map((i) => simAdt({ controlId: `F-${label}-${i}`, patient: simPatient(i, 'F'), charset: 'GB18030', segmentEnd: eol }));
  const text = ['FHS|^~\\&|CHC', 'BHS|^~\\&|CHC'].join(eol) + eol + messages.join('') + ['BTS|3', 'FTS|1'].join(eol) + eol;
  const bytes = encodeAs(text, 'GB18030');
  const name = `batch-${label}.hl7`;
  writeFileSync(path.join(dir, name), bytes);
  await pollUntilProcessed(name);
  const rows = await hub.runtime.db.query<{ content: Buffer; charset: string }>(`SELECT content, charset FROM raw_message WHERE control_id LIKE $1 ORDER BY id`, [`F-${label}-%`]);
  expect(rows.rows).toHaveLength(3);
  rows.rows.forEach((row, i) => {
    expect(row.charset).toBe('GB18030');
    expect(row.content.equals(encodeAs(messages[i]!, 'GB18030'))).toBe(true);
  });
  expect(readdirSync(folder.archiveDir).some((f) => f.endsWith(name))).toBe(true);
});

test('a file still being written (size changing) is not read until it is stable', async () => {
  const name = 'slow.hl7';
  const full = encodeAs(simAdt({ controlId: 'SLOW-1', patient: simPatient(9, 'F'), charset: 'GB18030' }), 'GB18030');
  writeFileSync(path.join(dir, name), full.subarray(0, 40));
  await folder.poll(); // first sight
  writeFileSync(path.join(dir, name), full.subarray(0, 80)); // grows
  await new Promise((r) => setTimeout(r, 250));
  await folder.poll(); // size changed: not read
  expect(await count(`SELECT count(*)::int AS n FROM raw_message WHERE control_id = 'SLOW-1'`)).toBe(0);
  expect(existsSync(path.join(dir, name))).toBe(true);
  writeFileSync(path.join(dir, name), full);
  await pollUntilProcessed(name);
  const row = await hub.runtime.db.query<{ content: Buffer; status: string }>(`SELECT content, status FROM raw_message WHERE control_id = 'SLOW-1'`);
  expect(row.rows[0]!.content.equals(full)).toBe(true);
});

test('temporary names are never read; the rename makes the file visible', async () => {
  const bytes = encodeAs(simAdt({ controlId: 'TMP-1', patient: simPatient(3, 'F'), charset: 'GB18030' }), 'GB18030');
  writeFileSync(path.join(dir, 'upload.hl7.part'), bytes);
  writeFileSync(path.join(dir, '.hidden.hl7'), bytes);
  await folder.poll();
  await new Promise((r) => setTimeout(r, 250));
  await folder.poll();
  expect(await count(`SELECT count(*)::int AS n FROM raw_message WHERE control_id = 'TMP-1'`)).toBe(0);
  renameSync(path.join(dir, 'upload.hl7.part'), path.join(dir, 'upload.hl7'));
  await pollUntilProcessed('upload.hl7');
  expect(await count(`SELECT count(*)::int AS n FROM raw_message WHERE control_id = 'TMP-1'`)).toBe(1);
});

test('a file with no HL7 goes to the error folder with a reason file, and its bytes are quarantined', async () => {
  writeFileSync(path.join(dir, 'garbage.hl7'), 'hello, this is not HL7\n');
  await pollUntilProcessed('garbage.hl7');
  const moved = readdirSync(folder.errorDir).find((f) => f.endsWith('garbage.hl7'))!;
  expect(moved).toBeDefined();
  expect(readFileSync(path.join(folder.errorDir, `${moved}.reason.txt`), 'utf8')).toMatch(/not-hl7/);
  const q = await hub.runtime.db.query<{ code: string; content: Buffer }>(
    `SELECT q.code, r.content FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE r.channel_id = 'drop' AND q.code = 'not-hl7'`,
  );
  expect(q.rows.map((r) => r.content.toString())).toContain('hello, this is not HL7\n');
});

test('the same file dropped again is stored once (dedupe), and still archived', async () => {
  const bytes = encodeAs(simAdt({ controlId: 'AGAIN-1', patient: simPatient(4, 'F'), charset: 'GB18030' }), 'GB18030');
  for (const name of ['again-a.hl7', 'again-b.hl7']) {
    writeFileSync(path.join(dir, name), bytes);
    await pollUntilProcessed(name);
  }
  const row = await hub.runtime.db.query<{ n: number; dup: number }>(`SELECT count(*)::int AS n, max(duplicate_count)::int AS dup FROM raw_message WHERE control_id = 'AGAIN-1'`);
  expect(row.rows[0]).toEqual({ n: 1, dup: 1 });
});
