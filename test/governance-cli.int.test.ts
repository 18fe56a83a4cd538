/**
 * The committee's dry run from the command line: `yilian mappings impact <id>` prints per record
 * the element, before → after as code + display, and records × elements (`--json`: the report
 * with its raw field diff); four eyes: the proposer's own approval is refused in one line. The
 * compiled CLI (build first with `npx tsc -p .`) on PostgreSQL and the shared Redis.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { encodeAs, simOru, simPatient } from '../cli/simulate';
import { PipelineQueues } from '../pipeline/queues';
import { createTestDatabase, dropTestDatabase, REDIS_URL } from './support/hub';
import { CLI } from './support/processes';

const run = promisify(execFile);

test('mappings impact reads as a table per record; the proposer cannot approve their own proposal', async () => {
  const databaseUrl = await createTestDatabase('govcli');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-govcli-'));
  const prefix = `yt-govcli-${process.pid}`;
  const config = path.join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ members: [{ id: 'county', name: '青山县人民医院', tier: 'secondary', channels: [] }], pipeline: { queuePrefix: prefix, partitions: 2 } }));
  const glucose = [{ code: 'GLU', name: '葡萄糖', value: '5.6', unit: 'mmol/L', range: '3.9-6.1' }];
  const files = [1, 2].map((i) => {
    const file = path.join(dir, `oru-${i}.hl7`);
    writeFileSync(file, encodeAs(simOru({ controlId: `GOV-${i}`, patient: simPatient(i, 'G'), charset: 'UNICODE UTF-8', segmentEnd: '\n' }, glucose), 'UTF-8'));
    return file;
  });
  const env = { ...process.env, DATABASE_URL: databaseUrl, REDIS_URL, YILIAN_CONFIG: config };
  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args], { env });
  try {
    await cli('ingest', '--member', 'county', ...files);
    const proposed = JSON.parse((await cli('mappings', 'propose', '--system', 'urn:yilian:county:L', '--code', 'GLU', '--display', '葡萄糖', '--target', 'http://loinc.org', '--target-code', '14749-6', '--by', 'li.lab')).stdout) as { id: number };

    const text = (await cli('mappings', 'impact', String(proposed.id), '--by', 'zhao.committee')).stdout;
    expect(text).toMatch(new RegExp(`^proposal ${proposed.id}: 2 stored records carry the source code, 2 would change \\(Observation 2\\)$`, 'm'));
    expect(text).toMatch(/^records × elements:\n {2}检验项目 Test \(Observation\.code\)\s+2 of 2$/m);
    // Each record: whose it is (by its configured name), and the element as the committee reads it.
    expect(text.match(/^Observation\/\S+ · 青山县人民医院 \(county\)$/gm)).toHaveLength(2);
    expect(text).toMatch(/^ {2}检验项目 Test: GLU 葡萄糖 → \+ LOINC 14749-6 Glucose \[Moles\/volume\] in Serum or Plasma$/m);
    expect(text).not.toMatch(/"path"/);
    expect(text).toMatch(/^ {2}结果 Result: 5\.6 mmol\/L → 5\.6 mmol\/L \[UCUM mmol\/L\]$/m);
    expect(text).toMatch(/^ {2}参考范围 Reference range: 3\.9 mmol\/L – 6\.1 mmol\/L → 3\.9 mmol\/L \[UCUM mmol\/L\] – 6\.1 mmol\/L \[UCUM mmol\/L\]$/m);

    const report = JSON.parse((await cli('mappings', 'impact', String(proposed.id), '--json', '--by', 'zhao.committee')).stdout) as { wouldChange: number; sample: Array<{ changes: Array<{ path: string }> }> };
    expect(report.wouldChange).toBe(2);
    expect(report.sample[0]!.changes.map((c) => c.path)).toEqual(expect.arrayContaining([expect.stringMatching(/^code\.coding\[\d\]$/)]));

    // Four eyes (the default): the proposer's approval is refused in one line, another member's goes through.
    const own = await cli('mappings', 'approve', String(proposed.id), '--by', 'li.lab').catch((e: { code: number; stderr: string }) => e);
    expect(own).toMatchObject({ code: 1, stderr: expect.stringMatching(/^yilian: conflict: .*four-eyes rule.*\n$/) });
    const approved = JSON.parse((await cli('mappings', 'approve', String(proposed.id), '--by', 'zhao.committee', '--comment', 'checked with the lab')).stdout) as { proposal: { state: string } };
    expect(approved.proposal.state).toBe('approved');
  } finally {
    const queues = new PipelineQueues({ redisUrl: REDIS_URL, prefix, partitions: 2, attempts: 1, backoffMs: 1 });
    await queues.removeAllKeys();
    await queues.close();
    await dropTestDatabase(databaseUrl);
  }
}, 120_000);
