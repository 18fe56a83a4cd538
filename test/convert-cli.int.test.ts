/**
 * `yilian convert` as other checks run it: the compiled CLI in a child process, no database, no
 * Redis. One NDJSON line per message in input order; Bundle.identifier.value is MSH-10; what
 * cannot be converted is an OperationOutcome line and makes the exit code non-zero.
 */
import { execFile } from 'node:child_process';
import { assertBuildIsFresh } from './support/processes';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { validateResource } from '../mappings/fhir/validate';

const run = promisify(execFile);
const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'cli', 'yilian.js');
/** The shared sample data (not via support/hub: this test needs no database or Redis). */
const samples = path.join(root, '..', 'shared', 'data', 'hl7v2', 'fhir-converter', 'messages');

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  // convert must not need them; unset so a stray value cannot make it open anything
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  delete env.YILIAN_CONFIG;
  return env;
}

// The CLI runs from dist/ (built by `npm test` before jest); other test files run it in parallel,
// so this one checks the build is current instead of rebuilding it under their feet.
beforeAll(() => assertBuildIsFresh());

test('convert: 3 samples and a garbage file → 4 lines in order, garbage is an OperationOutcome, exit code 1', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-convert-'));
  const garbage = path.join(dir, 'garbage.hl7');
  writeFileSync(garbage, 'this is not an HL7 message\n');
  const files = ['ADT-A01-01.hl7', 'LRI_2.0-NG_CBC_Typ_Message.hl7', 'SIU-S12-01.hl7'].map((f) => path.join(samples, f));
  const inputs = [files[0]!, files[1]!, garbage, files[2]!];
  const result = await run(process.execPath, [cli, 'convert', '--member', 'm1', ...inputs], { env: cleanEnv(), cwd: dir, maxBuffer: 64 * 1024 * 1024 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  expect(result.code).toBe(1);
  const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l));
  expect(lines.map((l) => l.resourceType)).toEqual(['Bundle', 'Bundle', 'OperationOutcome', 'Bundle']);
  const msh10 = (file: string) => readFileSync(file, 'latin1').replace(/^\uFEFF|^\xEF\xBB\xBF/, '').split(/\r\n|\r|\n/)[0]!.split('|')[9];
  expect(lines[0].identifier.value).toBe(msh10(files[0]!));
  expect(lines[1].identifier.value).toBe(msh10(files[1]!));
  expect(lines[3].identifier.value).toBe(msh10(files[2]!));
  expect(lines[1].identifier.value).toBe('NIST-LRI-NG-002.00');
  expect(lines[2].issue[0]).toEqual(expect.objectContaining({ severity: 'fatal', code: 'structure', details: { coding: [{ system: 'urn:yilian:error', code: 'not-hl7' }] } }));
  expect(lines[2].issue[0].diagnostics).toContain('garbage.hl7');
  for (const line of lines) expect(validateResource(line)).toEqual([]);
  expect(result.stderr).toMatch(/1 of 4 could not be converted/);
});

test('convert: all good → exit code 0; a file with several messages gives several lines', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-convert-'));
  const two = path.join(dir, 'two.hl7');
  writeFileSync(two, Buffer.concat([readFileSync(path.join(samples, 'ADT-A04-01.hl7')), Buffer.from('\r'), readFileSync(path.join(samples, 'ORU-R01-01.hl7'))]));
  const result = await run(process.execPath, [cli, 'convert', two], { env: cleanEnv(), cwd: dir, maxBuffer: 64 * 1024 * 1024 });
  const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l));
  expect(lines.map((l) => l.resourceType)).toEqual(['Bundle', 'Bundle']);
  expect(lines[0].entry.some((e: any) => e.request.url.startsWith('Encounter/'))).toBe(true);
  expect(lines[1].entry.some((e: any) => e.request.url.startsWith('DiagnosticReport/'))).toBe(true);
});
