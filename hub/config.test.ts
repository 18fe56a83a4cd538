import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HubError } from '../mappings/outcome';
import { charsetPolicyOf, ensureMember, hashApiKey, loadConfig, offsetMinutes, parseConfig } from './config';

function configError(fn: () => unknown): HubError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(HubError);
    return error as HubError;
  }
  throw new Error('expected a HubError, nothing was thrown');
}

function member(id: string, channels: unknown[] = []) {
  return { id, name: `Hospital ${id}`, tier: 'tertiary', channels };
}

describe('parseConfig', () => {
  it('applies defaults to an empty config', () => {
    expect(parseConfig({})).toEqual({
      members: [],
      dataDir: '.yilian',
      api: { host: '0.0.0.0', port: 8080, keys: [] },
      pipeline: { partitions: 16, queuePrefix: 'yilian', attempts: 5, backoffMs: 1000 },
      recognition: { accreditation: [], priceLists: [], currency: 'CNY' },
      feeds: { cost: { pseudonymKeyEnv: 'YILIAN_FEED_PSEUDONYM_KEY', intervalSeconds: 5, referralWindowDays: 30 } },
      governance: { fourEyes: true },
      identity: { systems: [], custom: {}, memberCountries: {} },
    });
  });

  it('applies member and channel defaults', () => {
    const config = parseConfig({
      members: [member('rmyy', [{ id: 'adt', kind: 'mllp', port: 2575 }, { id: 'drop', kind: 'file', dir: '/data/in' }])],
    });
    const rmyy = config.members[0]!;
    expect(rmyy.utcOffset).toBe('+08:00');
    expect(rmyy.channels[0]).toEqual({
      id: 'adt',
      kind: 'mllp',
      host: '0.0.0.0',
      port: 2575,
      charset: 'UTF-8',
      ackMode: 'original',
      maxMessageBytes: 16 * 1024 * 1024,
      idleTimeoutMs: 300_000,
    });
    expect(rmyy.channels[1]).toEqual({ id: 'drop', kind: 'file', dir: '/data/in', pattern: '*.hl7',
      pollIntervalMs: 1000,
      stableMs: 1000,
      charset: 'UTF-8',
      maxFileBytes: 16 * 1024 * 1024,
      incompleteGraceMs: 60_000,
      followSymlinks: false,
    });
  });

  it('resolves charset names to canonical ones', () => {
    const config = parseConfig({ members: [member('rmyy', [{ id: 'adt', kind: 'mllp', port: 2575, charset: 'GB 18030-2000', forceCharset: 'gbk' }])] });
    expect(charsetPolicyOf(config, 'rmyy', 'adt')).toEqual({ defaultCharset: 'GB18030', forceCharset: 'GBK' });
    expect(charsetPolicyOf(config, 'rmyy', 'other')).toEqual({ defaultCharset: 'UTF-8' });
    expect(charsetPolicyOf(config, 'nobody', 'adt')).toEqual({ defaultCharset: 'UTF-8' });
  });

  it('names the path of a bad field', () => {
    const error = configError(() => parseConfig({ members: [member('rmyy', [{ id: 'adt', kind: 'mllp', port: 'x' }])] }));
    expect(error.code).toBe('invalid');
    expect(error.message.startsWith('members.0.channels.0.port')).toBe(true);
    expect(error.location).toBe('members.0.channels.0.port');
  });

  it('names (root) when the whole config is wrong', () => {
    const error = configError(() => parseConfig('not an object'));
    expect(error.code).toBe('invalid');
    expect(error.location).toBe('(root)');
  });

  it('rejects a port out of range and a bad member id', () => {
    expect(configError(() => parseConfig({ members: [member('rmyy', [{ id: 'adt', kind: 'mllp', port: 70000 }])] })).location).toBe(
      'members.0.channels.0.port',
    );
    expect(configError(() => parseConfig({ members: [member('bad id')] })).location).toBe('members.0.id');
  });

  it('rejects two MLLP channels on the same port', () => {
    const error = configError(() =>
      parseConfig({
        members: [member('rmyy', [{ id: 'adt', kind: 'mllp', port: 2575 }]), member('zxyy', [{ id: 'lab', kind: 'mllp', port: 2575 }])],
      }),
    );
    expect(error.code).toBe('invalid');
    expect(error.message).toBe('members.1.channels.0.port: port 2575 already used by rmyy/adt');
  });

  it('allows several MLLP channels on port 0 (ephemeral)', () => {
    const config = parseConfig({ members: [member('rmyy', [{ id: 'a', kind: 'mllp', port: 0 }, { id: 'b', kind: 'mllp', port: 0 }])] });
    expect(config.members[0]!.channels).toHaveLength(2);
  });

  it('rejects duplicate member and channel ids', () => {
    expect(configError(() => parseConfig({ members: [member('rmyy'), member('rmyy')] })).message).toBe('members.1.id: duplicate member id rmyy');
    expect(
      configError(() => parseConfig({ members: [member('rmyy', [{ id: 'a', kind: 'mllp', port: 1 }, { id: 'a', kind: 'file', dir: '/x' }])] })).location,
    ).toBe('members.0.channels.1.id');
  });

  it('rejects an unknown charset', () => {
    const error = configError(() => parseConfig({ members: [member('rmyy', [{ id: 'adt', kind: 'mllp', port: 2575, charset: 'BIG5' }])] }));
    expect(error.code).toBe('invalid');
    expect(error.location).toBe('members.0.channels.0.charset');
    expect(error.message).toContain('unknown charset');
  });

  it('rejects an API key given both as key and sha256, or with no scope', () => {
    const key = 'k'.repeat(16);
    expect(configError(() => parseConfig({ api: { keys: [{ name: 'a', key, sha256: hashApiKey(key), scopes: ['admin'] }] } })).location).toBe('api.keys.0');
    expect(configError(() => parseConfig({ api: { keys: [{ name: 'a', key, scopes: [] }] } })).location).toBe('api.keys.0.scopes');
  });
});

describe('ensureMember', () => {
  it('adds an unknown member with tier unknown and warns', () => {
    const config = parseConfig({ members: [member('rmyy')] });
    const warn = jest.fn();
    const added = ensureMember(config, 'clinic-7', warn);
    expect(added).toEqual({ id: 'clinic-7', name: 'clinic-7', tier: 'unknown', utcOffset: '+08:00', channels: [] });
    expect(config.members.map((m) => m.id)).toEqual(['rmyy', 'clinic-7']);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toContain('clinic-7');
  });

  it('returns a configured member without warning', () => {
    const config = parseConfig({ members: [member('rmyy')] });
    const warn = jest.fn();
    expect(ensureMember(config, 'rmyy', warn)).toBe(config.members[0]);
    expect(warn).not.toHaveBeenCalled();
    expect(config.members).toHaveLength(1);
  });

  it('does not leak the added member into later configs (defaults are not shared)', () => {
    ensureMember(parseConfig({}), 'clinic-8', jest.fn());
    expect(parseConfig({}).members).toEqual([]);
  });

  it('refuses an id that is not valid', () => {
    const config = parseConfig({});
    const warn = jest.fn();
    expect(configError(() => ensureMember(config, 'no spaces', warn)).code).toBe('invalid');
    expect(warn).not.toHaveBeenCalled();
    expect(config.members).toEqual([]);
  });
});

describe('offsetMinutes', () => {
  it('reads ±hh:mm', () => {
    const config = parseConfig({ members: [{ ...member('a'), utcOffset: '-05:30' }, member('b')] });
    expect(offsetMinutes(config.members[0]!)).toBe(-330);
    expect(offsetMinutes(config.members[1]!)).toBe(480);
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'yilian-config-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('uses defaults without a file', () => {
    const config = loadConfig({ env: {} });
    expect(config.members).toEqual([]);
    expect(config.databaseUrl).toBeUndefined();
    expect(config.redisUrl).toBeUndefined();
  });

  it('lets DATABASE_URL and REDIS_URL override the file', () => {
    const path = join(dir, 'hub.json');
    writeFileSync(path, JSON.stringify({ databaseUrl: 'postgres://file/db', redisUrl: 'redis://file:6379' }));
    const config = loadConfig({ path, env: { DATABASE_URL: 'postgres://env/db', REDIS_URL: 'redis://env:6379' } });
    expect(config.databaseUrl).toBe('postgres://env/db');
    expect(config.redisUrl).toBe('redis://env:6379');
    expect(loadConfig({ path, env: {} }).databaseUrl).toBe('postgres://file/db');
  });

  it('loads a YAML file', () => {
    const path = join(dir, 'hub.yaml');
    writeFileSync(
      path,
      [
        'members:',
        '  - id: rmyy',
        '    name: 人民医院',
        '    tier: tertiary',
        '    channels:',
        '      - id: adt',
        '        kind: mllp',
        '        port: 2575',
        '        charset: GB18030',
        '        ackMode: auto',
        'pipeline:',
        '  partitions: 4',
        '',
      ].join('\n'),
    );
    const config = loadConfig({ path, env: {} });
    expect(config.members[0]!.name).toBe('人民医院');
    expect(config.members[0]!.channels[0]).toMatchObject({ id: 'adt', kind: 'mllp', port: 2575, charset: 'GB18030', ackMode: 'auto' });
    expect(config.pipeline).toEqual({ partitions: 4, queuePrefix: 'yilian', attempts: 5, backoffMs: 1000 });
  });

  it('takes the path from YILIAN_CONFIG and accepts an empty YAML file', () => {
    const path = join(dir, 'empty.yml');
    writeFileSync(path, '');
    expect(loadConfig({ env: { YILIAN_CONFIG: path } }).dataDir).toBe('.yilian');
  });

  it('adds API keys from YILIAN_API_KEYS', () => {
    const key = 'secret-key-0123456789';
    const config = loadConfig({ env: { YILIAN_API_KEYS: `ops:${key}:admin+metrics` } });
    expect(config.api.keys).toEqual([{ name: 'ops', key, scopes: ['admin', 'metrics'] }]);
    expect(configError(() => loadConfig({ env: { YILIAN_API_KEYS: 'ops:short:admin' } })).location).toBe('YILIAN_API_KEYS');
  });

  it('refuses a missing file, bad JSON and an invalid field', () => {
    expect(configError(() => loadConfig({ path: join(dir, 'missing.json'), env: {} })).code).toBe('invalid');
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ members: ');
    expect(configError(() => loadConfig({ path: bad, env: {} })).message).toContain('is not valid JSON');
    const wrong = join(dir, 'wrong.yaml');
    writeFileSync(wrong, 'pipeline:\n  partitions: 0\n');
    expect(configError(() => loadConfig({ path: wrong, env: {} })).location).toBe('pipeline.partitions');
  });
});
