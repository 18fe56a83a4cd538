/**
 * `yilian replay` (and `yilian fix`) with no worker up run the stages in their own process, as
 * `ingest` does: the messages end processed (or quarantined again), not `queued` behind a job
 * nobody will take — which `yilian fix` would then refuse.
 * On PostgreSQL and the shared Redis (a queue prefix of its own, no worker on it).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { bloodCount, encodeAs, simAdt, simOru, simPatient } from '../cli/simulate';
import { PipelineQueues } from '../pipeline/queues';
import { createTestDatabase, dropTestDatabase, REDIS_URL } from './support/hub';
import { assertBuildIsFresh, CLI } from './support/processes';

const run = promisify(execFile);

test('replay with no worker up: the stages run in the command, and the message ends processed', async () => {
  assertBuildIsFresh();
  const databaseUrl = await createTestDatabase('replayhere');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-replay-here-'));
  const prefix = `yt-replay-here-${process.pid}`;
  const config = path.join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ members: [{ id: 'm1', name: 'M1', tier: 'secondary', channels: [] }], pipeline: { queuePrefix: prefix, partitions: 2 } }));
  const file = path.join(dir, 'adt.hl7');
  writeFileSync(file, encodeAs(simAdt({ controlId: 'RH-1', patient: simPatient(1, 'R'), charset: 'UNICODE UTF-8', segmentEnd: '\n' }), 'UTF-8'));
  const env = { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL, YILIAN_CONFIG: config };
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const queues = new PipelineQueues({ redisUrl: REDIS_URL, prefix, partitions: 2, attempts: 1, backoffMs: 1 });
  try {
    // Stored only: the message waits in the queue, as it would after a worker died.
    await run(process.execPath, [CLI, 'ingest', '--member', 'm1', '--no-wait', file], { env });
    const stored = await client.query<{ id: string; status: string }>(`SELECT id, status FROM raw_message`);
    expect(stored.rows.map((r) => r.status)).toEqual(['queued']);
    expect(await queues.workerCount()).toBe(0);
    const rawId = stored.rows[0]!.id;
    const replayed = await run(process.execPath, [CLI, 'replay', '--raw-id', rawId], { env });
    expect(JSON.parse(replayed.stdout.trim().split('\n').pop()!)).toEqual({ replayed: 1, outcome: { processed: 1 } });
    const after = await client.query<{ status: string }>(`SELECT status FROM raw_message WHERE id = $1`, [rawId]);
    expect(after.rows[0]!.status).toBe('processed');
    const patients = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM source_patient WHERE member_id = 'm1'`);
    expect(patients.rows[0]!.n).toBe(1);
  } finally {
    await client.end();
    await queues.removeAllKeys();
    await queues.close();
    await dropTestDatabase(databaseUrl);
  }
}, 120_000);

test('fix with no worker up: the corrected message goes through the stages in the command and ends processed', async () => {
  assertBuildIsFresh();
  const databaseUrl = await createTestDatabase('fixhere');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-fix-here-'));
  const prefix = `yt-fix-here-${process.pid}`;
  const config = path.join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ members: [{ id: 'm1', name: 'M1', tier: 'secondary', channels: [] }], pipeline: { queuePrefix: prefix, partitions: 2 } }));
  // A numeric result that is no number: quarantined at convert.
  const bad = simOru({ controlId: 'FH-1', patient: simPatient(2, 'F'), charset: 'UNICODE UTF-8', segmentEnd: '\n' }, bloodCount.map((r) => (r.code === 'HGB' ? { ...r, value: 'abc' } : r)));
  writeFileSync(path.join(dir, 'bad.hl7'), encodeAs(bad, 'UTF-8'));
  writeFileSync(path.join(dir, 'fixed.hl7'), encodeAs(bad.replace('||abc|', '||128|'), 'UTF-8'));
  const env = { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL, YILIAN_CONFIG: config };
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const queues = new PipelineQueues({ redisUrl: REDIS_URL, prefix, partitions: 2, attempts: 1, backoffMs: 1 });
  try {
    await run(process.execPath, [CLI, 'ingest', '--member', 'm1', path.join(dir, 'bad.hl7')], { env });
    const stored = await client.query<{ id: string; status: string }>(`SELECT id, status FROM raw_message`);
    expect(stored.rows.map((r) => r.status)).toEqual(['quarantined']);
    const fixed = await run(process.execPath, [CLI, 'fix', '--raw-id', stored.rows[0]!.id, '--file', path.join(dir, 'fixed.hl7'), '--comment', 'HGB re-read from the analyser'], { env });
    const result = JSON.parse(fixed.stdout.trim()) as { fixId: number; outcome: Record<string, number> };
    expect(result.outcome).toEqual({ processed: 1 });
    const after = await client.query<{ id: string; status: string }>(`SELECT id, status FROM raw_message ORDER BY id`);
    expect(after.rows.map((r) => [Number(r.id), r.status])).toEqual([[Number(stored.rows[0]!.id), 'fixed'], [result.fixId, 'processed']]);
  } finally {
    await client.end();
    await queues.removeAllKeys();
    await queues.close();
    await dropTestDatabase(databaseUrl);
  }
}, 120_000);
