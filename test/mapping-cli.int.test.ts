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
    expect(coverage).toEqual({ from: null, to: null, rows: [], trend: [], trendBy: [], unitMismatches: [] });
  } finally {
    await dropTestDatabase(databaseUrl);
  }
});

test('the WHO release files and the MMS tabulation named in the hub config: build --import records who loaded them; coverage prints its trend', async () => {
  const databaseUrl = await createTestDatabase('mapcli2');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-mapcli2-'));
  try {
    // Hand-made files in the official layouts (10To11MapToOneCategory.txt / …MultipleCategories.txt
    // columns; the MMS SimpleTabulation fixture of test/terminology-fixtures): not WHO data.
    const header = 'icd10ClassKind\ticd10DepthInKind\ticd10Code\ticd10Chapter\ticd10Title\ticd11ClassKind\ticd11DepthInKind\ticd11Code\ticd11Chapter\ticd11Title';
    writeFileSync(path.join(dir, 'one.txt'), `${header}\ncategory\t1\tE11\tIV\tType 2 diabetes mellitus\tcategory\t1\t5A11\t05\tType 2 diabetes mellitus\ncategory\t2\tJ18.9\tX\tPneumonia, unspecified\tcategory\t2\tCA40.Z\t12\tPneumonia, organism unspecified\n`);
    writeFileSync(path.join(dir, 'multiple.txt'), `${header}\ncategory\t2\tA00.0\tI\tCholera due to Vibrio cholerae 01\tcategory\t1\t1A00\t01\tCholera\ncategory\t2\tA00.0\tI\tCholera due to Vibrio cholerae 01\tcategory\t1\t1A00&XN8P1\t01\tCholera & Vibrio cholerae\n`);
    const config = path.join(dir, 'hub.json');
    writeFileSync(
      config,
      JSON.stringify({
        terminology: {
          whoMapOneCategory: path.join(dir, 'one.txt'),
          whoMapMultipleCategories: path.join(dir, 'multiple.txt'),
          icd11Tabulation: { en: path.join(__dirname, 'terminology-fixtures', 'SimpleTabulation-ICD-11-MMS-en.txt') },
        },
      }),
    );
    const e = env({ DATABASE_URL: databaseUrl });
    const loaded = await run(process.execPath, [cli, 'mappings', 'build', '--import', '--config', config, '--by', 'zhao.committee'], { env: e });
    expect(loaded.stdout).toMatch(/who-icd10-icd11 → version 2 \(by zhao.committee; 3 ICD-10 codes\)/);
    const translate = async (...args: string[]) => JSON.parse((await run(process.execPath, [cli, 'translate', '--config', config, ...args], { env: e })).stdout);
    const cholera = await translate('--system', ICD10, '--code', 'A00.0', '--target', ICD11);
    expect(cholera.parameter.filter((p: any) => p.name === 'match').map((m: any) => [m.part[0].valueCode, m.part[1].valueCoding.code])).toEqual([
      ['narrower', '1A00'],
      ['narrower', '1A00&XN8P1'],
    ]);
    expect((await translate('--system', ICD10, '--code', 'E11.9', '--target', ICD11)).parameter.find((p: any) => p.name === 'match').part[2].valueUri).toBe('https://yilian.example/fhir/ConceptMap/who-icd10-icd11|2');
    const reverse = await translate('--system', ICD11, '--code', 'CA40.Z', '--reverse');
    expect(reverse.parameter.find((p: any) => p.name === 'match').part).toContainEqual({ name: 'concept', valueCoding: { system: ICD10, code: 'J18.9', display: 'Pneumonia, unspecified' } });

    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    const versions = await client.query(`SELECT version, origin, created_by FROM concept_map_version WHERE map_id = 'who-icd10-icd11' ORDER BY version`);
    expect(versions.rows).toEqual([
      { version: 1, origin: 'shipped', created_by: 'system' },
      { version: 2, origin: 'import', created_by: 'zhao.committee' },
    ]);
    // coverage counters for two days (as the resource trigger writes them): the trend is printed
    await client.query(
      `INSERT INTO coded_element_day (day, member_id, channel_id, system, code, mapped, occurrences) VALUES
         ('2026-11-01', 'east', 'lis', 'urn:yilian:east:L', 'HB01', false, 4), ('2026-11-02', 'east', 'lis', 'urn:yilian:east:L', 'HB01', true, 3), ('2026-11-02', 'east', 'lis', 'urn:yilian:east:L', 'K01', false, 1)`,
    );
    await client.end();
    const text = (await run(process.execPath, [cli, 'mappings', 'coverage', '--config', config], { env: e })).stdout;
    expect(text).toMatch(/east\/lis\s+urn:yilian:east:L\s+8\s+37\.5\s+2\s+0\.0/);
    expect(text).toMatch(/trend\n.*\n2026-11-01\s+4\s+0\.0\n2026-11-02\s+4\s+75\.0\n/);
    // the ICD-11 tabulation named in the config: the CLI's process loads it for proposals' target checks
    await expect(run(process.execPath, [cli, 'mappings', 'propose', '--config', config, '--system', ICD10, '--code', 'E11.9', '--target', ICD11, '--target-code', '5A1Y', '--by', 'li.lab'], { env: e })).rejects.toMatchObject({
      stderr: expect.stringMatching(/not in the loaded MMS tabulation: stem code 5A1Y/),
    });
  } finally {
    await dropTestDatabase(databaseUrl);
  }
});
