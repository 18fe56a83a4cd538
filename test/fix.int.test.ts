/**
 * Fix-and-replay over the HTTP API and the CLI, on PostgreSQL, Redis and a pipeline worker: a lab
 * result whose OBX-5 is not a number (OBX-2 NM) is quarantined at convert; its corrected text is
 * stored as a new raw message of the same member and channel (revision 2 of the same control id,
 * flagged `fix`), linked both ways to the original and processed, while the original's bytes stay as
 * they were (same sha256) and it is marked fixed. Refusals: a second fix (409, naming the fix), two
 * fixes at once (one wins), a text identical to a stored message (409, nothing stored), a viewer key
 * (403), bad input (400), a character the original's charset cannot hold (400, naming it). A
 * charset-quarantined original gets the channel's charset. `yilian fix` does the same from a file.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { MemberConfig } from '../hub/config';
import { sha256 } from '../hub/rawStore';
import { bloodCount, encodeAs, simAdt, simOru, simPatient } from '../cli/simulate';
import { decodeStrict } from '../mappings/hl7v2/charset';
import { replay } from '../pipeline/replay';
import { PipelineWorker } from '../pipeline/worker';
import { listenApi, startTestHub, waitFor, type TestHub } from './support/hub';
import { assertBuildIsFresh, CLI, removeWorkerConfig, writeWorkerConfig } from './support/processes';

const INTEGRATION = 'fix-integration-key-0123456789';
const VIEWER = 'fix-viewer-key-0123456789abcd';

let hub: TestHub;
let worker: PipelineWorker;
let server: Server;
let base: string;

beforeAll(async () => {
  hub = await startTestHub('fix', {
    members: [{ id: 'm1', name: 'County Hospital', tier: 'secondary', channels: [{ id: 'lab', kind: 'mllp', port: 0 }] }],
    api: {
      port: 0,
      keys: [
        { name: 'county-it', key: INTEGRATION, scopes: ['integration'] },
        { name: 'ward-viewer', key: VIEWER, scopes: ['metrics', 'patient.read'] },
      ],
    },
  });
  worker = new PipelineWorker({ db: hub.runtime.db, config: hub.config }, hub.runtime.queues);
  await worker.start();
  ({ server, base } = await listenApi(hub.runtime));
});

afterAll(async () => {
  if (server) await new Promise((r) => server.close(r));
  await worker?.close();
  await hub?.close();
});

const member = (): MemberConfig => hub.config.members[0]!;

/** Received as the lab channel receives it (UTF-8 unless MSH-18 says otherwise). */
async function receive(bytes: Buffer) {
  return hub.runtime.intake.receive({ member: member(), channel: { id: 'lab', policy: { defaultCharset: 'UTF-8' }, ackMode: 'original' }, bytes });
}

/** A blood count whose haemoglobin was typed as letters: the intake takes it, convert quarantines it. */
function badLabText(controlId: string, patientNo: number, value = 'abc'): string {
  return simOru({ controlId, patient: simPatient(patientNo, 'L') }, bloodCount.map((r) => (r.code === 'HGB' ? { ...r, value } : r)));
}

async function rawRow(id: number) {
  const rows = await hub.runtime.db.query<{ content: Buffer; sha256: Buffer; status: string; revision: number; flags: string[]; charset: string; member_id: string; channel_id: string; sender: string; control_id: string; received_at: Date }>(
    `SELECT content, sha256, status, revision, flags, charset, member_id, channel_id, sender, control_id, received_at FROM raw_message WHERE id = $1`,
    [id],
  );
  return rows.rows[0]!;
}

const statusOf = async (id: number) => (await rawRow(id)).status;
const quarantineStates = async (id: number) => (await hub.runtime.db.query<{ stage: string; code: string; state: string }>(`SELECT stage, code, state FROM quarantine WHERE raw_id = $1 ORDER BY id`, [id])).rows;
const rawCount = async () => (await hub.runtime.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM raw_message`)).rows[0]!.n;

/** A quarantined bad lab message, waited for. */
async function quarantinedLab(controlId: string, patientNo: number): Promise<number> {
  const received = await receive(encodeAs(badLabText(controlId, patientNo), 'UTF-8'));
  expect(received.outcome).toBe('stored');
  await waitFor(async () => (await statusOf(received.rawId)) === 'quarantined', 30_000, `${controlId} quarantined at convert`);
  return received.rawId;
}

async function fix(rawId: number, body: unknown, key = INTEGRATION): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/api/raw-messages/${rawId}/fix`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

async function getRaw(rawId: number): Promise<any> {
  const res = await fetch(`${base}/api/raw-messages/${rawId}`, { headers: { authorization: `Bearer ${INTEGRATION}` } });
  expect(res.status).toBe(200);
  return res.json();
}

let originalId: number;
let fixId: number;

test('a quarantined lab result is fixed: a new raw message, processed, linked both ways; the original’s bytes unchanged and marked fixed', async () => {
  originalId = await quarantinedLab('LAB-BAD-1', 1);
  expect(await quarantineStates(originalId)).toEqual([{ stage: 'convert', code: 'invalid', state: 'open' }]);
  const before = await rawRow(originalId);
  const text = decodeStrict(before.content, 'UTF-8');
  expect(text).toContain('OBX|1|NM|HGB^血红蛋白^L||abc|');

  // As a textarea sends it: one segment a line.
  const corrected = text.replace('||abc|', '||135|').replace(/\r/g, '\n');
  const comment = 'OBX-5 of HGB was typed as "abc"; the analyser printout says 135 g/L';
  const done = await fix(originalId, { text: corrected, comment });
  expect(done.status).toBe(201);
  fixId = done.body.fixId;
  expect(done.body).toEqual({ originalId, fixId, revision: 2, charset: 'UTF-8' });
  expect(fixId).toBeGreaterThan(originalId);

  // Stored through the intake: same member, channel, sender and control id; revision 2 of it, flagged
  // both as a revision (other bytes under a reused control id) and as a fix; segments CR-separated.
  const stored = await rawRow(fixId);
  expect(stored).toMatchObject({ member_id: 'm1', channel_id: 'lab', sender: before.sender, control_id: 'LAB-BAD-1', charset: 'UTF-8', revision: 2 });
  expect(stored.flags.sort()).toEqual(['fix', 'revised']);
  expect(stored.content.toString('utf8')).toBe(text.replace('||abc|', '||135|'));
  await waitFor(async () => (await statusOf(fixId)) === 'processed', 30_000, 'fix processed');
  const observations = await hub.runtime.db.query<{ content: { code: { coding: Array<{ code: string }> }; valueQuantity?: { value: number } } }>(
    `SELECT content FROM resource WHERE raw_id = $1 AND resource_type = 'Observation'`,
    [fixId],
  );
  const hgb = observations.rows.find((r) => r.content.code.coding.some((c) => c.code === 'HGB'));
  expect(hgb?.content.valueQuantity?.value).toBe(135);

  // The original: bytes and hash as received, status fixed, its dead letter closed as fixed.
  const after = await rawRow(originalId);
  expect(after.content.equals(before.content)).toBe(true);
  expect(after.sha256.equals(before.sha256)).toBe(true);
  expect(sha256(after.content).equals(before.sha256)).toBe(true);
  expect(after.received_at).toEqual(before.received_at);
  expect(after.status).toBe('fixed');
  expect(await quarantineStates(originalId)).toEqual([{ stage: 'convert', code: 'invalid', state: 'fixed' }]);
  const dead = await fetch(`${base}/api/quarantine`, { headers: { authorization: `Bearer ${INTEGRATION}` } });
  expect(((await dead.json()) as { items: Array<{ raw_id: number }> }).items.map((q) => q.raw_id)).not.toContain(originalId);

  // Both ways, with who, when and why.
  const originalView = await getRaw(originalId);
  expect(originalView.fixedBy).toMatchObject({ rawId: fixId, status: 'processed', fixedBy: 'county-it', comment });
  expect(originalView.fixOf).toBeNull();
  const fixView = await getRaw(fixId);
  expect(fixView.fixOf).toMatchObject({ rawId: originalId, status: 'fixed', fixedBy: 'county-it', comment });
  expect(fixView.fixedBy).toBeNull();

  const audit = await hub.runtime.db.query(`SELECT actor, entity_type, entity_id, patient_key, detail FROM audit_event WHERE action = 'fix'`);
  expect(audit.rows).toEqual([{ actor: 'county-it', entity_type: 'raw_message', entity_id: String(originalId), patient_key: 'm1|L100001', detail: { fixId, comment, charset: 'UTF-8' } }]);
});

test('a fixed message is not fixed again (409 naming the fix) nor replayed; a processed one is not fixable', async () => {
  const text = decodeStrict((await rawRow(originalId)).content, 'UTF-8').replace('||abc|', '||136|');
  const again = await fix(originalId, { text, comment: 'second try' });
  expect(again.status).toBe(409);
  expect(again.body.code).toBe('conflict');
  expect(again.body.message).toMatch(new RegExp(`^raw message ${originalId} was already fixed by raw message ${fixId} \\(county-it, `));
  expect(await replay(hub.runtime.db, hub.runtime.queues, { rawIds: [originalId] })).toEqual({ replayed: 0, rawIds: [], notReplayed: [{ rawId: originalId, status: 'fixed' }] });
  expect(await replay(hub.runtime.db, hub.runtime.queues, { rawIds: [originalId], status: ['fixed'] })).toEqual({ replayed: 0, rawIds: [], notReplayed: [{ rawId: originalId, status: 'fixed' }] });
  expect(await statusOf(originalId)).toBe('fixed');

  const processed = await fix(fixId, { text: text.replace('||136|', '||137|'), comment: 'not a dead letter' });
  expect(processed).toEqual({ status: 409, body: expect.objectContaining({ code: 'conflict', message: `raw message ${fixId} is processed: only a quarantined or failed message can be fixed` }) });
  expect((await getRaw(fixId)).fixedBy).toBeNull();
});

test('two fixes of one message at once: one is stored, the other is refused and stores nothing', async () => {
  const rawId = await quarantinedLab('LAB-BAD-2', 2);
  const text = decodeStrict((await rawRow(rawId)).content, 'UTF-8');
  const count = await rawCount();
  const both = await Promise.all(['140', '141'].map((v) => fix(rawId, { text: text.replace('||abc|', `||${v}|`), comment: `value ${v}` })));
  expect(both.map((r) => r.status).sort()).toEqual([201, 409]);
  const won = both.find((r) => r.status === 201)!.body.fixId;
  expect(both.find((r) => r.status === 409)!.body.message).toMatch(new RegExp(`already fixed by raw message ${won} `));
  expect(await rawCount()).toBe(count + 1);
  await waitFor(async () => (await statusOf(won)) === 'processed', 30_000, 'winning fix processed');
});

test('a fix identical to a stored message is refused (409) and nothing is stored or counted as a resend', async () => {
  // Another bad result under the reused control id LAB-BAD-1 (revision 3); its "fix" is byte for
  // byte the stored fix of the first one, which the dedupe key (… sha256) would fold into that row.
  const rawId = await quarantinedLab('LAB-BAD-1', 4);
  expect((await rawRow(rawId)).revision).toBe(3);
  const fixText = (await rawRow(fixId)).content.toString('utf8');
  const count = await rawCount();
  const duplicates = (await hub.runtime.db.query<{ duplicate_count: number }>(`SELECT duplicate_count FROM raw_message WHERE id = $1`, [fixId])).rows[0]!.duplicate_count;
  const refused = await fix(rawId, { text: fixText, comment: 'same as the earlier fix' });
  expect(refused).toEqual({ status: 409, body: expect.objectContaining({ code: 'conflict', message: `the corrected text is identical to raw message ${fixId}, already stored: replay that one instead` }) });
  expect(await rawCount()).toBe(count);
  expect((await hub.runtime.db.query<{ duplicate_count: number }>(`SELECT duplicate_count FROM raw_message WHERE id = $1`, [fixId])).rows[0]!.duplicate_count).toBe(duplicates);
  expect(await statusOf(rawId)).toBe('quarantined');
  expect((await quarantineStates(rawId)).map((q) => q.state)).toEqual(['open']);
});

test('refusals: a viewer key (403), bad input (400), unknown message (404); nothing changes', async () => {
  const rawId = await quarantinedLab('LAB-BAD-3', 3);
  const text = decodeStrict((await rawRow(rawId)).content, 'UTF-8');
  const good = { text: text.replace('||abc|', '||150|'), comment: 'typo' };
  const count = await rawCount();

  expect(await fix(rawId, good, VIEWER)).toMatchObject({ status: 403, body: { resourceType: 'OperationOutcome', code: 'forbidden', message: 'scope integration required' } });
  const noKey = await fetch(`${base}/api/raw-messages/${rawId}/fix`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(good) });
  expect(noKey.status).toBe(401);

  const bad = async (body: unknown, message: RegExp, id = rawId) => {
    const res = await fix(id, body);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('invalid');
    expect(res.body.message).toMatch(message);
  };
  await bad({ text: good.text }, /^body\.comment: /);
  await bad({ text: good.text, comment: '   ' }, /^body\.comment: a comment is required/);
  await bad({ text: ' \n ', comment: 'x' }, /^body\.text: the corrected text is empty/);
  await bad({ ...good, rawId: 5 }, /^body: /);
  await bad({ text: 42, comment: 'x' }, /^body\.text: /);
  await bad(good, /^path\.id: /, 'abc' as unknown as number);
  await bad({ text, comment: 'nothing changed' }, new RegExp(`^the corrected text is the same as raw message ${rawId}`));
  await bad({ text: text.replace(/\r/g, '\n'), comment: 'only the line ends changed' }, /is the same as raw message/);
  await bad({ text: 'PID|1||L100003\r', comment: 'no header' }, /^the corrected text must be an HL7 v2 message starting with MSH/);
  await bad({ text: good.text.replace('|LAB-BAD-3|', '||'), comment: 'control id lost' }, /^the corrected text does not pass intake: structure: MSH-10 \(message control id\) is empty/);
  const missing = await fix(987654, good);
  expect(missing).toEqual({ status: 404, body: expect.objectContaining({ code: 'not-found', message: 'raw message 987654 not found' }) });

  expect(await rawCount()).toBe(count);
  expect(await statusOf(rawId)).toBe('quarantined');
  expect((await quarantineStates(rawId)).map((q) => q.state)).toEqual(['open']);
});

test('the original’s charset is kept: a character it cannot hold is refused, naming it; an ASCII fix is stored as ASCII', async () => {
  const patient = { mrn: 'A100001', family: 'Li', given: 'Ming', birth: '19800101', sex: 'M' as const };
  const broken = simOru({ controlId: 'ASCII-1', patient, charset: 'ASCII' }, [{ code: 'HGB', name: 'Hemoglobin', value: 'abc', unit: 'g/L', range: '115-150' }]).replace('^血常规^', '^Blood count^');
  expect(/^[\x00-\x7f]*$/.test(broken)).toBe(true);
  const received = await receive(Buffer.from(broken, 'latin1'));
  expect(received.outcome).toBe('stored');
  await waitFor(async () => (await statusOf(received.rawId)) === 'quarantined', 30_000, 'ASCII message quarantined at convert');
  expect((await rawRow(received.rawId)).charset).toBe('ASCII');

  const repaired = broken.replace('||abc|', '||135|');
  const withChinese = repaired.replace('||Li^Ming|', '||黄^Ming|');
  const column = withChinese.split('\r')[1]!.indexOf('黄') + 1;
  expect(column).toBe(27);
  const refused = await fix(received.rawId, { text: withChinese, comment: 'name in Chinese' });
  expect(refused).toEqual({ status: 400, body: expect.objectContaining({ code: 'invalid', message: 'character "黄" (U+9EC4) at line 2, column 27 cannot be written in ASCII' }) });

  const done = await fix(received.rawId, { text: repaired, comment: 'HGB typed as letters' });
  expect(done.status).toBe(201);
  expect(done.body.charset).toBe('ASCII');
  expect((await rawRow(done.body.fixId)).charset).toBe('ASCII');
  await waitFor(async () => (await statusOf(done.body.fixId)) === 'processed', 30_000, 'ASCII fix processed');
});

test('a charset-quarantined original (GB18030 bytes on a UTF-8 channel) is fixed in the channel’s charset', async () => {
  const patient = simPatient(6, 'G'); // 黄䶮: 䶮 is a four-byte GB18030 character
  const gb = encodeAs(simAdt({ controlId: 'GB-1', patient }), 'GB18030');
  const received = await receive(gb);
  expect(received.outcome).toBe('quarantined');
  expect(received.error?.code).toBe('charset');
  // The console offers the reading that decodes cleanly; the person submits it as it is.
  const done = await fix(received.rawId, { text: decodeStrict(gb, 'GB18030'), comment: 'sent in GB18030 without MSH-18' });
  expect(done.status).toBe(201);
  expect(done.body.charset).toBe('UTF-8');
  const stored = await rawRow(done.body.fixId);
  expect(stored.content.toString('utf8')).toContain('黄^䶮');
  expect(stored.revision).toBe(2);
  await waitFor(async () => (await statusOf(done.body.fixId)) === 'processed', 30_000, 'charset fix processed');
  const source = await hub.runtime.db.query<{ demographics: { family: string; given: string } }>(`SELECT demographics FROM source_patient WHERE member_id = 'm1' AND mrn = $1`, [patient.mrn]);
  expect(source.rows.map((r) => [r.demographics.family, r.demographics.given])).toEqual([['黄', '䶮']]);
  const original = await rawRow(received.rawId);
  expect(original.content.equals(gb)).toBe(true);
  expect(original.status).toBe('fixed');
  expect(await quarantineStates(received.rawId)).toEqual([{ stage: 'intake', code: 'charset', state: 'fixed' }]);
});

test('yilian fix --raw-id N --file F --comment C: the same from the command line; a second run is refused', async () => {
  assertBuildIsFresh();
  const rawId = await quarantinedLab('LAB-BAD-CLI', 9);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-fix-'));
  const configFile = writeWorkerConfig({ databaseUrl: hub.databaseUrl, redisUrl: hub.runtime.redisUrl, prefix: hub.prefix, partitions: hub.config.pipeline.partitions, members: hub.config.members });
  try {
    const file = path.join(dir, 'corrected.hl7');
    // Saved from an editor: LF line ends.
    writeFileSync(file, decodeStrict((await rawRow(rawId)).content, 'UTF-8').replace('||abc|', '||128|').replace(/\r/g, '\n'));
    const env = { ...process.env, DATABASE_URL: hub.databaseUrl, REDIS_URL: hub.runtime.redisUrl, YILIAN_CONFIG: configFile };
    const args = [CLI, 'fix', '--raw-id', String(rawId), '--file', file, '--comment', 'HGB re-read from the analyser', '--actor', 'wang.it'];
    const first = await promisify(execFile)(process.execPath, args, { env });
    const result = JSON.parse(first.stdout.trim());
    expect(result).toEqual({ originalId: rawId, fixId: expect.any(Number), revision: 2, charset: 'UTF-8' });
    await waitFor(async () => (await statusOf(result.fixId)) === 'processed', 30_000, 'CLI fix processed');
    expect(await statusOf(rawId)).toBe('fixed');
    expect((await getRaw(rawId)).fixedBy).toMatchObject({ rawId: result.fixId, fixedBy: 'wang.it', comment: 'HGB re-read from the analyser' });

    const second = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, args, { env }, (error, _stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stderr }));
    });
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^yilian: conflict: raw message ${rawId} was already fixed by raw message ${result.fixId} \\(wang\\.it, `));
  } finally {
    removeWorkerConfig(configFile);
    rmSync(dir, { recursive: true, force: true });
  }
});
