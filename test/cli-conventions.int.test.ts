/**
 * CLI conventions (issue 22), on the compiled CLI in child processes: --help everywhere (walked
 * from the program's own usage table, so a new command is covered without touching this file),
 * one-line usage errors with exit 2 and no stack unless --debug, the quarantine commands (audited),
 * replay naming what it did not replay (CLI and HTTP), and a busy port.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { createApi } from '../api/server';
import { PipelineQueues } from '../pipeline/queues';
import { createTestDatabase, dropTestDatabase, REDIS_URL, startTestHub } from './support/hub';
import { cleanEnv, CLI, runCli, type Ran } from './support/processes';


/** Runs the CLI to its end, whatever the exit code. */
function yilian(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), cwd?: string): Promise<Ran> {
  return runCli(args, { env, cwd, timeoutMs: 120_000 });
}

const stackLine = /^\s+at /m;

/** The command paths of the program's usage: each entry's leading words (`recognition rules set`, `mpi decide`, `status`). */
function commandPaths(usage: string): string[][] {
  const paths: string[][] = [];
  for (const line of usage.split('\n')) {
    if (!/^ {2}[a-z]/.test(line)) continue;
    const words: string[] = [];
    // The synopsis ends where the description column starts (two spaces or more).
    for (const w of line.trim().split(/\s{2,}/)[0]!.split(/\s+/)) {
      if (!/^[a-z][a-z-]*$/.test(w)) break;
      words.push(w);
    }
    paths.push(words);
  }
  return paths;
}

describe('--help', () => {
  let usage = '';
  beforeAll(async () => {
    const top = await yilian(['--help']);
    expect(top.code).toBe(0);
    usage = top.stdout;
  });

  test('the program: -h and --help print the usage with every command, exit 0; no command at all is exit 2', async () => {
    expect(usage).toMatch(/^usage: yilian <command>/);
    for (const name of ['demo', 'serve', 'worker', 'ingest', 'pull', 'convert', 'replay', 'fix', 'status', 'quarantine', 'translate', 'mappings', 'feed', 'kpi', 'recognition', 'resources', 'mpi']) {
      expect(commandPaths(usage).some((p) => p[0] === name)).toBe(true);
    }
    const short = await yilian(['-h']);
    expect(short).toMatchObject({ code: 0, stdout: usage });
    const helpWord = await yilian(['help', 'replay']);
    expect(helpWord.code).toBe(0);
    expect(helpWord.stdout).toMatch(/yilian replay \[--raw-id N\]/);
    const none = await yilian([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^usage: yilian/);
  });

  test('every command and subcommand of the usage table: its usage, the common options and an example, exit 0', async () => {
    const paths = commandPaths(usage);
    expect(paths.length).toBeGreaterThan(25);
    const seen = new Set<string>();
    const asked = paths.flatMap((p) => [p.slice(0, 1), p]).filter((p) => (seen.has(p.join(' ')) ? false : (seen.add(p.join(' ')), true)));
    const results = await Promise.all(asked.map(async (words, i) => ({ words, ran: await yilian([...words, i % 2 ? '-h' : '--help']) })));
    for (const { words, ran } of results) {
      const label = words.join(' ');
      expect({ label, code: ran.code, stderr: ran.stderr }).toEqual({ label, code: 0, stderr: '' });
      expect(ran.stdout).toMatch(/^usage:\n/);
      expect(ran.stdout).toContain(`  yilian ${label}`);
      expect(ran.stdout).toMatch(/^common: --config/m);
      expect(ran.stdout).toMatch(new RegExp(`^example: yilian ${words[0]}\\b`, 'm'));
    }
    // A subcommand's help is its own entry, not the whole group's.
    const set = results.find((r) => r.words.join(' ') === 'recognition rules set')!.ran.stdout;
    expect(set).toContain('--window-days N');
    expect(set).not.toContain('recognition duplicates');
    expect(set).toMatch(/^example: yilian recognition rules set /m);
  }, 120_000);
});

describe('usage mistakes: one line, exit 2, no stack unless --debug', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-conv-'));
  const missing = path.join(dir, 'no-such-file.hl7');

  test.each([
    [['recognition', 'rules', 'set', '--code', '2345-7', '--windw-days', '30'], /^yilian: Unknown option '--windw-days'$/, 'see yilian recognition rules set --help'],
    [['ingest', '--membr', 'x', 'a.hl7'], /^yilian: Unknown option '--membr'$/, 'see yilian ingest --help'],
    [['status', '--jsn'], /^yilian: Unknown option '--jsn'$/, 'see yilian status --help'],
    [['ingest', '--member'], /^yilian: Option '--member <value>' argument missing$/, 'see yilian ingest --help'],
    [['ingest', 'a.hl7'], /^yilian: invalid: ingest needs --member/, 'see yilian ingest --help'],
    [['replay', '--raw-id', 'abc'], /^yilian: invalid: --raw-id: a whole number/, 'see yilian replay --help'],
    [['replay', '--status', 'fixed'], /^yilian: invalid: --status: .*not fixed/, 'see yilian replay --help'],
    [['replay', '--from', 'yesterday'], /^yilian: invalid: --from: an ISO 8601 date/, 'see yilian replay --help'],
    [['quarantine', 'list', '--limit', '0'], /^yilian: invalid: --limit: a whole number/, 'see yilian quarantine list --help'],
    [['ingest', '--member', 'm', missing], new RegExp(`^yilian: ${missing.replace(/[.]/g, '\\.')}: no such file or directory$`), 'see yilian ingest --help'],
    [['convert', missing], /no-such-file\.hl7: no such file or directory$/, 'see yilian convert --help'],
    [['fix', '--raw-id', '1', '--file', missing, '--comment', 'x'], /no-such-file\.hl7: no such file or directory$/, 'see yilian fix --help'],
    [['mappings', 'import', missing], /no-such-file\.hl7/, 'see yilian mappings import --help'],
    [['status', '--config', missing], /cannot read configuration/, 'see yilian status --help'],
  ])('%j', async (args, first, hint) => {
    const ran = await yilian(args as string[], cleanEnv(), dir);
    expect(ran.code).toBe(2);
    expect(ran.stderr).not.toMatch(stackLine);
    const lines = ran.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(first as RegExp);
    expect(lines[1]).toBe(hint);
  });

  test('an unknown command: one line naming it, exit 2', async () => {
    const ran = await yilian(['replai', '--raw-id', '1']);
    expect(ran.code).toBe(2);
    expect(ran.stderr.trimEnd().split('\n')).toEqual(['yilian: unknown command replai; see yilian --help']);
  });

  test('--debug adds the stack trace (any command, any position), the exit code stays', async () => {
    for (const args of [['--debug', 'ingest', '--member', 'm', missing], ['recognition', 'rules', 'set', '--bogus', '--debug']]) {
      const ran = await yilian(args, cleanEnv(), dir);
      expect(ran.code).toBe(2);
      expect(ran.stderr).toMatch(/^yilian: /);
      expect(ran.stderr).toMatch(stackLine);
    }
  });
});

describe('on a test database', () => {
  let databaseUrl: string;
  let env: NodeJS.ProcessEnv;
  let dir: string;
  const prefix = `yt-conv-${process.pid}`;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase('cliconv');
    dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-conv-db-'));
    const config = path.join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ pipeline: { queuePrefix: prefix, partitions: 2 } }));
    env = cleanEnv({ DATABASE_URL: databaseUrl, REDIS_URL, YILIAN_CONFIG: config });
  });
  afterAll(async () => {
    await dropTestDatabase(databaseUrl);
    const queues = new PipelineQueues({ redisUrl: REDIS_URL, prefix, partitions: 2, attempts: 1, backoffMs: 1 });
    await queues.removeAllKeys();
    await queues.close();
  });

  test('ingest names each quarantined message; quarantine list/show give the reasons and are audited; replay names what it did not replay', async () => {
    const garbage = path.join(dir, 'garbage.hl7');
    writeFileSync(garbage, 'not hl7 at all\n');
    const ingest = await yilian(['ingest', '--member', 'conv', '--json', garbage], env);
    expect(ingest.code).toBe(0); // quarantined is an outcome, not a failed command (README)
    expect(JSON.parse(ingest.stdout.trim().split('\n').pop()!)).toEqual({ received: 1, stored: 1, duplicates: 0, quarantined: 1, failed: 0 });
    const reason = /^quarantined: raw (\d+) not-hl7 \(intake\): .*garbage\.hl7 holds no MSH segment$/m.exec(ingest.stderr);
    expect(reason).not.toBeNull();
    const rawId = Number(reason![1]);

    const list = await yilian(['quarantine', 'list', '--json', '--actor', 'conv-tester'], env);
    expect(list.code).toBe(0);
    const items = JSON.parse(list.stdout).items as Array<Record<string, unknown>>;
    expect(items).toEqual([expect.objectContaining({ raw_id: rawId, stage: 'intake', code: 'not-hl7', member_id: 'conv', channel_id: 'ingest', state: 'open', reason: expect.stringContaining('holds no MSH segment') })]);
    expect(items[0]).not.toHaveProperty('patient_key');
    const text = await yilian(['quarantine', 'list', '--member', 'conv', '--stage', 'intake', '--actor', 'conv-tester'], env);
    expect(text.stdout).toMatch(new RegExp(`^raw ${rawId}  \\S+  conv/ingest  control -  intake  not-hl7.*open\\n    .*holds no MSH segment`, 'm'));
    const otherStage = await yilian(['quarantine', 'list', '--stage', 'parse', '--actor', 'conv-tester'], env);
    expect(otherStage.stdout).toBe('quarantine: no open entries\n');
    const show = await yilian(['quarantine', 'show', String(rawId), '--actor', 'conv-tester'], env);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(new RegExp(`^raw ${rawId}  conv/ingest  control -  status quarantined`));
    expect(show.stdout).toMatch(/intake {2}not-hl7 .*open\n {4}.*holds no MSH segment/);
    const showMissing = await yilian(['quarantine', 'show', '99999999'], env);
    expect(showMissing.code).toBe(1);
    expect(showMissing.stderr.trimEnd().split('\n')).toEqual(['yilian: not-found: no stored message with raw id 99999999']);

    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const audit = await db.query(`SELECT action, entity_id, detail->>'via' AS via FROM audit_event WHERE actor = 'conv-tester' AND entity_type = 'quarantine' ORDER BY id`);
      expect(audit.rows).toEqual([
        { action: 'search', entity_id: 'open', via: 'cli' },
        { action: 'search', entity_id: 'open', via: 'cli' },
        { action: 'search', entity_id: 'open', via: 'cli' },
        { action: 'read', entity_id: String(rawId), via: 'cli' },
      ]);
    } finally {
      await db.end();
    }

    const none = await yilian(['replay', '--raw-id', '99999998'], env);
    expect(none.code).toBe(1);
    expect(JSON.parse(none.stdout)).toEqual({ replayed: 0, notFound: [99999998] });
    expect(none.stderr).toContain('yilian replay: raw id 99999998: not found');
    const some = await yilian(['replay', '--raw-id', String(rawId), '--raw-id', '99999997'], env);
    expect(some.code).toBe(0);
    // No worker runs here: the replay ran the stages itself, and the cause is still there.
    expect(JSON.parse(some.stdout)).toEqual({ replayed: 1, outcome: { quarantined: 1 }, notFound: [99999997] });
    expect(some.stderr).toContain('raw id 99999997: not found');
    // Quarantined again: not in a state the status filter asks for.
    const wrongState = await yilian(['replay', '--raw-id', String(rawId), '--status', 'failed'], env);
    expect(wrongState.code).toBe(1);
    expect(JSON.parse(wrongState.stdout)).toEqual({ replayed: 0, notReplayed: [{ rawId, status: 'quarantined' }] });
    expect(wrongState.stderr).toContain(`raw id ${rawId}: not replayed (status quarantined`);
  }, 120_000);
});

test('POST /api/replay names the raw ids it did not find', async () => {
  const key = 'integration-key-conv-0123456789';
  const hub = await startTestHub('replayapi', { api: { keys: [{ name: 'it', key, scopes: ['integration'] }] } });
  const server = createApi(hub.runtime).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/replay`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ rawIds: [99999, 99998] }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ replayed: 0, notFound: [99998, 99999], notReplayed: [] });
  } finally {
    await new Promise((r) => server.close(r));
    await hub.close();
  }
});

describe('a port in use', () => {
  let blocker: net.Server;
  let port: number;
  let databaseUrl: string;
  beforeAll(async () => {
    blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    port = (blocker.address() as AddressInfo).port;
    databaseUrl = await createTestDatabase('cliport');
  });
  afterAll(async () => {
    await new Promise((r) => blocker.close(r));
    await dropTestDatabase(databaseUrl);
  });

  /** The embedded redis-server of process `pid`: its directory, and whether a process still runs from it. */
  async function embeddedRedisLeft(pid: number): Promise<boolean> {
    const ps = await new Promise<string>((resolve) => execFile('ps', ['-eo', 'args'], (_e, out) => resolve(out)));
    return existsSync(path.join(os.tmpdir(), `yilian-redis-${pid}`)) || ps.includes(`yilian-redis-${pid}/`);
  }

  test.each([
    ['the API', ['serve', '--api-only'], (p: number) => ({ api: { host: '127.0.0.1', port: p } }), (p: number) => `yilian: API port ${p} (127.0.0.1:${p}) is already in use`],
    [
      'an MLLP listener',
      ['serve', '--listeners-only'],
      (p: number) => ({ members: [{ id: 'lead', name: 'Lead', tier: 'tertiary', channels: [{ id: 'his', kind: 'mllp', host: '127.0.0.1', port: p }] }] }),
      (p: number) => `yilian: MLLP lead/his port ${p} (127.0.0.1:${p}) is already in use`,
    ],
  ])('%s: one line naming the port, exit 2, the embedded redis-server stopped', async (_what, args, configFor, expected) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-port-'));
    const config = path.join(dir, 'config.json');
    writeFileSync(config, JSON.stringify(configFor(port)));
    // No REDIS_URL: the CLI starts its own redis-server, which must not outlive it.
    const child = spawn(process.execPath, [CLI, ...args, '--config', config], { env: cleanEnv({ DATABASE_URL: databaseUrl }), cwd: dir });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    const ours = stderr.split('\n').filter((l) => l.startsWith('yilian'));
    expect(ours).toEqual([expected(port)]);
    expect(stderr).not.toMatch(stackLine);
    expect(await embeddedRedisLeft(child.pid!)).toBe(false);
  }, 60_000);
});
