/**
 * Deployment files: docker-compose.yml has the production layout (Redis, PostgreSQL, api, worker,
 * listener), the Dockerfile builds on Node 20, and deploy/config.yaml validates against the
 * configuration schema.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { parseConfig } from '../hub/config';
import { repoRoot, shippedConceptMapDir, terminologyDataDir } from '../mappings/terminology/shipped';

const root = path.join(__dirname, '..');
const read = (file: string): string => readFileSync(path.join(root, file), 'utf8');

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  depends_on?: string[] | Record<string, unknown>;
  ports?: Array<string | number | { target?: number | string; published?: number | string }>;
  deploy?: { replicas?: number };
  volumes?: Array<string | { source?: string; target?: string }>;
  healthcheck?: unknown;
  restart?: string;
}

interface ComposeFile {
  services: Record<string, ComposeService>;
}

const compose = YAML.parse(read('docker-compose.yml')) as ComposeFile;
const appServices = ['api', 'worker', 'listener'] as const;

function service(name: string): ComposeService {
  const found = compose.services[name];
  if (!found) throw new Error(`service ${name} is missing`);
  return found;
}

/** Environment as a map, from either the map or the `KEY=value` list form. */
function environmentOf(s: ComposeService): Record<string, string> {
  const env = s.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((entry) => {
        const eq = entry.indexOf('=');
        return eq < 0 ? [entry, ''] : [entry.slice(0, eq), entry.slice(eq + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v == null ? '' : String(v)]));
}

function dependenciesOf(s: ComposeService): string[] {
  const deps = s.depends_on ?? [];
  return Array.isArray(deps) ? deps : Object.keys(deps);
}

function expandRange(text: string): number[] {
  const [from, to] = text.split('-').map(Number);
  if (to === undefined) return [from!];
  const out: number[] = [];
  for (let p = from!; p <= to; p++) out.push(p);
  return out;
}

/** Host ports a service publishes: short syntax `[ip:]host:container[/proto]` (ranges too) or long syntax. */
function publishedPorts(s: ComposeService): number[] {
  const out: number[] = [];
  for (const port of s.ports ?? []) {
    if (typeof port === 'object') {
      if (port.published !== undefined) out.push(...expandRange(String(port.published)));
      continue;
    }
    const parts = String(port).replace(/\/(tcp|udp)$/, '').split(':');
    if (parts.length < 2) continue; // container port only: no fixed host port
    out.push(...expandRange(parts[parts.length - 2]!));
  }
  return out;
}

function commandWords(s: ComposeService): string[] {
  const command = s.command ?? [];
  return Array.isArray(command) ? command : command.trim().split(/\s+/);
}

describe('docker-compose.yml', () => {
  test('declares redis, postgres, api, worker and listener', () => {
    for (const name of ['redis', 'postgres', ...appServices]) expect(compose.services).toHaveProperty(name);
  });

  test('redis and postgres have healthchecks', () => {
    expect(service('redis').healthcheck).toBeDefined();
    expect(service('postgres').healthcheck).toBeDefined();
    expect(JSON.stringify(service('postgres').healthcheck)).toContain('pg_isready');
  });

  test.each(appServices)('%s gets DATABASE_URL, REDIS_URL and YILIAN_CONFIG', (name) => {
    const env = environmentOf(service(name));
    expect(env.DATABASE_URL).toMatch(/^postgres:\/\/.+@postgres:5432\/yilian$/);
    expect(env.REDIS_URL).toBe('redis://redis:6379');
    expect(env.YILIAN_CONFIG).toBe('/etc/yilian/config.yaml');
  });

  test.each(['api', 'listener'])('%s gets YILIAN_API_KEYS', (name) => {
    expect(environmentOf(service(name))).toHaveProperty('YILIAN_API_KEYS');
  });

  test.each(appServices)('%s depends on redis and postgres and restarts unless stopped', (name) => {
    const s = service(name);
    expect(dependenciesOf(s)).toEqual(expect.arrayContaining(['redis', 'postgres']));
    expect(s.restart).toBe('unless-stopped');
  });

  test.each(appServices)('%s mounts the configuration read-only', (name) => {
    const mounts = (service(name).volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
    expect(mounts.some((m) => /deploy\/config\.yaml:\/etc\/yilian\/config\.yaml:ro$/.test(m))).toBe(true);
  });

  test.each(appServices)('%s command starts with serve or worker', (name) => {
    expect(['serve', 'worker']).toContain(commandWords(service(name))[0]);
  });

  test('api serves the API only; listener runs the listeners only', () => {
    expect(commandWords(service('api'))).toEqual(['serve', '--api-only']);
    expect(commandWords(service('listener'))).toEqual(['serve', '--listeners-only']);
    expect(commandWords(service('worker'))).toEqual(['worker', '--metrics-port', '9464']);
  });

  test.each(['redis', 'postgres', ...appServices])('%s restarts unless stopped', (name) => {
    expect(service(name).restart).toBe('unless-stopped');
  });

  // The healthcheck must probe what the service itself serves: the API's /ready, the worker's
  // --metrics-port /health, the listener's first MLLP port.
  test.each([
    ['api', '8080/ready'],
    ['worker', '9464/health'],
    ['listener', 'connect(2575'],
  ])('%s has a healthcheck probing %s', (name, probe) => {
    const check = service(name).healthcheck as { test?: string[] } | undefined;
    expect(check?.test?.[0]).toBe('CMD');
    expect(check!.test!.join(' ')).toContain(probe);
    if (name === 'worker') expect(commandWords(service('worker')).join(' ')).toContain(probe.split('/')[0]);
  });

  test('worker runs at least 2 replicas', () => {
    expect(service('worker').deploy?.replicas).toBeGreaterThanOrEqual(2);
  });

  test('api publishes 8080', () => {
    expect(publishedPorts(service('api'))).toContain(8080);
  });

  test('listener publishes the MLLP port 2575 and mounts the drop folder', () => {
    expect(publishedPorts(service('listener'))).toContain(2575);
    const mounts = (service('listener').volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
    expect(mounts.some((m) => m.split(':')[1] === '/var/lib/yilian/drop')).toBe(true);
  });
});

describe('deploy/systemd/yilian@.service', () => {
  const unitFile = path.join(root, 'deploy', 'systemd', 'yilian@.service');
  const settings = (): Map<string, string> =>
    new Map(
      readFileSync(unitFile, 'utf8')
        .split('\n')
        .filter((line) => /^[A-Za-z]+=/.test(line))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as [string, string]),
    );

  test('restarts its process whatever the exit, without a start limit, and stops after the 30 s shutdown grace', () => {
    const unit = settings();
    expect(unit.get('Restart')).toBe('always');
    expect(unit.get('StartLimitIntervalSec')).toBe('0');
    expect(Number(unit.get('TimeoutStopSec'))).toBeGreaterThan(30);
    expect(unit.get('ExecStart')).toMatch(/dist\/cli\/yilian\.js \$YILIAN_ARGS$/);
  });

  const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
  (analyze ? test : test.skip)('systemd-analyze verify finds nothing to say about it', () => {
    // verify wants an instance name; it reports a bad setting on stderr and still exits 0.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'yilian-unit-'));
    try {
      copyFileSync(unitFile, path.join(dir, 'yilian@api.service'));
      const run = spawnSync(analyze, ['verify', path.join(dir, 'yilian@api.service')], { encoding: 'utf8' });
      expect(`${run.stdout}${run.stderr}`.split('\n').filter((l) => l.includes('yilian@'))).toEqual([]);
      expect(run.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Dockerfile', () => {
  test('exists and builds on Node 20', () => {
    const file = path.join(root, 'Dockerfile');
    expect(existsSync(file)).toBe(true);
    expect(readFileSync(file, 'utf8')).toMatch(/^FROM\s+node:20\S*/m);
  });

  test('copies every folder of product sources into the build (a new floor is not left out)', () => {
    const copied = new Set([...readFileSync(path.join(root, 'Dockerfile'), 'utf8').matchAll(/^COPY\s+(?!--)(\S+)\s+\.\/\1\s*$/gm)].map((m) => m[1]));
    const holdsProductSources = (dir: string): boolean =>
      readdirSync(dir, { withFileTypes: true }).some((e) => (e.isDirectory() ? holdsProductSources(path.join(dir, e.name)) : /(?<!\.test)(?<!\.d)\.ts$/.test(e.name)));
    const sourceFolders = readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !['test', 'bench', 'node_modules', 'dist'].includes(e.name) && !e.name.startsWith('.'))
      .map((e) => e.name)
      .filter((name) => holdsProductSources(path.join(root, name)));
    expect(sourceFolders).toEqual(expect.arrayContaining(['cli', 'api', 'adapters', 'pipeline', 'hub', 'mappings']));
    for (const folder of sourceFolders) expect([folder, copied.has(folder)]).toEqual([folder, true]);
  });

  test('the runtime image carries the data files the code reads beside dist/ (shipped ConceptMaps, LOINC subset, WHO extract)', () => {
    const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    for (const dir of [shippedConceptMapDir(), terminologyDataDir()]) {
      const relative = path.relative(repoRoot(), dir);
      expect(runtimeStage).toContain(`COPY ${relative} ./${relative}\n`);
    }
  });
});

describe('deploy/config.yaml', () => {
  const config = parseConfig(YAML.parse(read('deploy/config.yaml')));

  test('has the three members with their tiers', () => {
    expect(config.members.map((m) => [m.id, m.tier])).toEqual([
      ['lead', 'tertiary'],
      ['county', 'secondary'],
      ['community', 'primary'],
    ]);
  });

  test('channels are as documented', () => {
    const channel = (memberId: string) => config.members.find((m) => m.id === memberId)!.channels[0]!;
    const his = channel('lead');
    const lis = channel('county');
    const drop = channel('community');
    expect(his).toMatchObject({ id: 'his', kind: 'mllp', port: 2575, charset: 'UTF-8', ackMode: 'original' });
    expect(lis).toMatchObject({ id: 'lis', kind: 'mllp', port: 2576, charset: 'GB18030' });
    expect(drop).toMatchObject({ id: 'drop', kind: 'file', dir: '/var/lib/yilian/drop/community', pattern: '*.hl7', charset: 'GB18030' });
    expect(config.pipeline).toEqual({ partitions: 16, queuePrefix: 'yilian', attempts: 5, backoffMs: 1000 });
    expect(config.api.port).toBe(8080);
  });

  test('every MLLP port is published by the listener', () => {
    const published = publishedPorts(service('listener'));
    const mllpPorts = config.members.flatMap((m) => m.channels).flatMap((c) => (c.kind === 'mllp' ? [c.port] : []));
    for (const port of mllpPorts) expect(published).toContain(port);
  });
});
