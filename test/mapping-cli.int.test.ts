/**
 * `yilian translate` and `yilian mappings import/export` as users and other checks run them: the
 * compiled CLI (dist/, build first with `npx tsc -p .`) in a child process, on PostgreSQL.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { createTestDatabase, dropTestDatabase } from './support/hub';

const run = promisify(execFile);
const cli = path.join(__dirname, '..', 'dist', 'cli', 'yilian.js');
const ICD10 = 'http://hl7.org/fhir/sid/icd-10';
const ICD11 = 'http://id.who.int/icd/release/11/mms';

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e = { ...process.env, ...extra };
  if (!extra.DATABASE_URL) delete e.DATABASE_URL;
  delete e.REDIS_URL;
  delete e.YILIAN_CONFIG;
  return e;
}

test('translate prints the $translate Parameters (shipped maps, no store opened)', async () => {
  const out = await run(process.execPath, [cli, 'translate', '--system', ICD10, '--code', 'E11.9', '--target', ICD11], { env: env() });
  const parameters = JSON.parse(out.stdout);
  expect(parameters.resourceType).toBe('Parameters');
  expect(parameters.parameter[0]).toEqual({ name: 'result', valueBoolean: true });
  expect(parameters.parameter.find((p: any) => p.name === 'match').part).toEqual([
    { name: 'equivalence', valueCode: 'wider' },
    { name: 'concept', valueCoding: { system: ICD11, code: '5A11' } },
    { name: 'source', valueUri: 'https://yilian.example/fhir/ConceptMap/who-icd10-icd11|1' },
  ]);
  await expect(run(process.execPath, [cli, 'translate', '--code', 'E11'], { env: env() })).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/system is required/) });
});

test('mappings import records who imported; export writes the approved maps back; translate uses them', async () => {
  const databaseUrl = await createTestDatabase('mapcli');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-mapcli-'));
  try {
    const map = {
      resourceType: 'ConceptMap',
      id: 'local-south-LIS',
      url: 'https://yilian.example/fhir/ConceptMap/local-south-LIS',
      version: '7',
      status: 'active',
      group: [{ source: 'urn:yilian:south:LIS', target: 'http://loinc.org', element: [{ code: '0102', display: '血红蛋白', target: [{ code: '718-7', equivalence: 'equivalent' }] }] }],
    };
    writeFileSync(path.join(dir, 'south.json'), JSON.stringify(map));
    const imported = await run(process.execPath, [cli, 'mappings', 'import', '--by', 'zhao.committee', path.join(dir, 'south.json')], { env: env({ DATABASE_URL: databaseUrl }) });
    expect(imported.stdout).toMatch(/local-south-LIS → version 1 \(by zhao.committee\)/);
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    const rows = await client.query(`SELECT version, status, origin, created_by FROM concept_map_version WHERE url = $1`, [map.url]);
    const events = await client.query(`SELECT actor, action FROM mapping_event WHERE concept_map_url = $1`, [map.url]);
    await client.end();
    expect(rows.rows).toEqual([{ version: 1, status: 'active', origin: 'import', created_by: 'zhao.committee' }]);
    expect(events.rows).toEqual([{ actor: 'zhao.committee', action: 'import' }]);

    const out = path.join(dir, 'export');
    await run(process.execPath, [cli, 'mappings', 'export', '--dir', out], { env: env({ DATABASE_URL: databaseUrl }) });
    expect(readdirSync(out).sort()).toEqual(['local-county-L.json', 'local-lead-L.json', 'local-south-LIS.json', 'loinc-canonical-units.json', 'who-icd10-icd11.json']);
    const exported = JSON.parse(readFileSync(path.join(out, 'local-south-LIS.json'), 'utf8'));
    expect(exported).toMatchObject({ resourceType: 'ConceptMap', url: map.url, version: '1', group: map.group });

    const translated = await run(process.execPath, [cli, 'translate', '--system', 'urn:yilian:south:LIS', '--code', '0102'], { env: env({ DATABASE_URL: databaseUrl }) });
    expect(JSON.parse(translated.stdout).parameter.find((p: any) => p.name === 'match').part).toContainEqual({ name: 'concept', valueCoding: { system: 'http://loinc.org', code: '718-7' } });

    // the committee's workflow from the command line, each step recorded with who did it
    const e = env({ DATABASE_URL: databaseUrl });
    const proposed = JSON.parse((await run(process.execPath, [cli, 'mappings', 'propose', '--system', 'urn:yilian:south:LIS', '--code', '0103', '--display', '钾', '--target', 'http://loinc.org', '--target-code', '2823-3', '--by', 'li.lab'], { env: e })).stdout);
    expect(proposed).toMatchObject({ state: 'proposed', proposed_by: 'li.lab', concept_map_url: map.url });
    const approved = JSON.parse((await run(process.execPath, [cli, 'mappings', 'approve', String(proposed.id), '--by', 'zhao.committee', '--comment', 'ok'], { env: e })).stdout);
    expect(approved).toMatchObject({ version: 2, proposal: { state: 'approved' } });
    const history = JSON.parse((await run(process.execPath, [cli, 'mappings', 'history', 'local-south-LIS'], { env: e })).stdout);
    expect(history.events.map((ev: any) => [ev.action, ev.actor])).toEqual([
      ['import', 'zhao.committee'],
      ['propose', 'li.lab'],
      ['approve', 'zhao.committee'],
    ]);
    const coverage = JSON.parse((await run(process.execPath, [cli, 'mappings', 'coverage', '--json'], { env: e })).stdout);
    expect(coverage).toEqual({ from: null, to: null, rows: [], trend: [] });
  } finally {
    await dropTestDatabase(databaseUrl);
  }
});
