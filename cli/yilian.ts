#!/usr/bin/env node
/**
 * `yilian` — the one command line of Yilian Hub: demo, serve, worker, ingest, replay, fix, status.
 * Configuration from --config or YILIAN_CONFIG; DATABASE_URL and REDIS_URL override it; with
 * neither, the embedded defaults (PGlite, a redis-server started here) are used.
 */
import { parseArgs } from 'node:util';
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import { ensureMember, loadConfig, type HubConfig } from '../hub/config';
import type { Runtime } from './runtime';
import type { hubStatus } from '../pipeline/status';
import { HubError } from '../mappings/outcome';
import { UsageError } from './usageError';

/**
 * Loaded when a command needs them, not at start: every command pays for what is imported at the
 * top, and `yilian status` must answer in well under a second (issue 19; bench/cliStart.ts). The
 * API's routers alone took 0.4 s to load, the group commands (patient index, terminology…) as much
 * again. The HL7 v2 conversion behind the worker and convert holds about 100 MB of tables, which
 * `pull` and `ingest --no-wait` of FHIR files never use (their memory budget is measured).
 */
const lazy = {
  PipelineWorker: () => (require('../pipeline/worker') as typeof import('../pipeline/worker')).PipelineWorker,
  convert: () => require('./convert') as typeof import('./convert'),
  runDemo: () => (require('./demo') as typeof import('./demo')).runDemo,
  runtime: () => require('./runtime') as typeof import('./runtime'),
  status: () => require('../pipeline/status') as typeof import('../pipeline/status'),
  replay: () => (require('../pipeline/replay') as typeof import('../pipeline/replay')).replay,
  fix: () => require('../pipeline/fix') as typeof import('../pipeline/fix'),
  charset: () => require('../mappings/hl7v2/charset') as typeof import('../mappings/hl7v2/charset'),
  ingest: () => require('./ingest') as typeof import('./ingest'),
  listeners: () => require('./listeners') as typeof import('./listeners'),
  api: () => require('../api/server') as typeof import('../api/server'),
  auth: () => require('../api/auth') as typeof import('../api/auth'),
  express: () => require('express') as typeof import('express'),
  terminology: () => require('./terminology') as typeof import('./terminology'),
  mpi: () => require('./mpi') as typeof import('./mpi'),
  quarantine: () => require('./quarantine') as typeof import('./quarantine'),
  recognition: () => require('./recognition') as typeof import('./recognition'),
  resources: () => require('./resources') as typeof import('./resources'),
  feed: () => require('./feed') as typeof import('./feed'),
};

/**
 * The one table of usages: a command's entries (a line with two spaces of indent, then its
 * continuation lines), its examples by command path. The program's usage, `yilian <command> --help`
 * and `yilian <command> <sub…> --help` are all cut from it; the group commands' entries are the
 * usage strings their modules export.
 */
interface CommandHelp {
  name: string;
  usage: string;
  /** [command path, example]: the longest path that starts the asked-for words is shown. */
  examples: Array<[string, string]>;
}

/** The entries of a group usage string whose first word is `name`. */
function section(usageText: string, name: string): string {
  return entries(usageText)
    .filter((e) => e.trimStart().split(/\s+/)[0] === name)
    .join('\n');
}

/** A usage text split into entries: a line indented by exactly two spaces and its continuation lines. */
function entries(usageText: string): string[] {
  const out: string[] = [];
  for (const line of usageText.split('\n')) {
    if (/^ {2}\S/.test(line) || out.length === 0) out.push(line);
    else out[out.length - 1] += `\n${line}`;
  }
  return out;
}

export const commandTable: CommandHelp[] = [
  {
    name: 'demo',
    usage: `  demo [--quick]                simulated members send HL7 v2 through the whole pipeline (embedded defaults); the store
                                stays in dataDir (default .yilian) with its configuration demo.json, for the commands it
                                suggests; --quick: a tenth of the traffic`,
    examples: [['demo', 'yilian demo && YILIAN_CONFIG=.yilian/demo.json yilian status']],
  },
  {
    name: 'serve',
    usage: `  serve [--api-only|--listeners-only] [--with-worker]
                                HTTP API (with the FHIR subscription endpoint), the configured MLLP/file listeners and
                                the scheduled FHIR REST pulls (fhir-rest channels with intervalSeconds); a port in use: exit 2`,
    examples: [['serve', 'yilian serve --config deploy/config.yaml --api-only']],
  },
  { name: 'worker', usage: `  worker [--metrics-port N]     pipeline worker (run as many as wanted)`, examples: [['worker', 'yilian worker --metrics-port 9464']] },
  {
    name: 'ingest',
    usage: `  ingest --member M [--json] [--source URL] [--no-wait] [--timeout SECONDS] <files…>
                                store HL7 v2 files, FHIR .ndjson files and FHIR Bundle/resource .json files and wait
                                until every message went through every stage (--source: the FHIR server the files came from);
                                each quarantined message's raw id, code and reason go to stderr`,
    examples: [['ingest', 'yilian ingest --member county --json adt-a01.hl7 results.ndjson']],
  },
  {
    name: 'pull',
    usage: `  pull --member M --channel C [--wait] [--json]
                                one incremental REST pull (fhir-rest) or one Bulk $export import (fhir-bulk)`,
    examples: [['pull', 'yilian pull --member region --channel bulk --wait --json']],
  },
  {
    name: 'convert',
    usage: `  convert [--member M] <files…>  HL7 v2 files → one FHIR R4 Bundle per message as NDJSON on stdout (stores nothing;
                                an OperationOutcome line for what cannot be converted, and exit code 1)`,
    examples: [['convert', 'yilian convert --member lead ORU-R01-01.hl7 > bundles.ndjson']],
  },
  {
    name: 'replay',
    usage: `  replay [--raw-id N]… [--member M] [--channel C] [--from ISO] [--to ISO] [--status s,…]
                                re-run stored messages (default: quarantined and failed ones; never fixed ones); names the
                                raw ids not found or not replayable; exit code 1 when nothing matched; with no worker
                                up, the stages run in this process (as for ingest) and the outcome is printed`,
    examples: [['replay', 'yilian replay --raw-id 517 --raw-id 518']],
  },
  {
    name: 'fix',
    usage: `  fix --raw-id N --file corrected.hl7 --comment TEXT [--actor NAME]
                                fix and replay a quarantined or failed message: the file's text (UTF-8, segments one a
                                line or CR-separated) is stored as a new message linked to it, which is marked fixed`,
    examples: [['fix', 'yilian fix --raw-id 517 --file 517-fixed.hl7 --comment "PID-7 was 2023-02-30; corrected to 2023-02-28"']],
  },
  { name: 'status', usage: `  status [--json]               queue depths, dead letters, per-channel counters`, examples: [['status', 'yilian status --json']] },
  {
    name: 'quarantine',
    get usage() {
      return lazy.quarantine().quarantineUsage;
    },
    examples: [
      ['quarantine', 'yilian quarantine list --member county --stage intake'],
      ['quarantine show', 'yilian quarantine show 517'],
    ],
  },
  {
    name: 'translate',
    get usage() {
      return section(lazy.terminology().terminologyUsage, 'translate');
    },
    examples: [['translate', 'yilian translate --system http://hl7.org/fhir/sid/icd-10 --code E11.9']],
  },
  {
    name: 'mappings',
    get usage() {
      return section(lazy.terminology().terminologyUsage, 'mappings');
    },
    examples: [
      ['mappings', 'yilian mappings worklist --member county'],
      ['mappings import', 'yilian mappings import --by alice conceptmaps/lab.json'],
      ['mappings propose', 'yilian mappings propose --system urn:county:lab --code GLU --target http://loinc.org --target-code 2345-7'],
      ['mappings approve', 'yilian mappings approve 12 --comment "checked with the lab"'],
    ],
  },
  {
    name: 'feed',
    get usage() {
      return section(lazy.feed().costFeedUsage, 'feed');
    },
    examples: [
      ['feed', 'yilian feed cost --format csv --from 2026-01-01'],
      ['feed build', 'yilian feed build --json'],
    ],
  },
  {
    name: 'kpi',
    get usage() {
      return section(lazy.feed().costFeedUsage, 'kpi');
    },
    examples: [['kpi', 'yilian kpi --from 2026-01 --to 2026-06 --json']],
  },
  {
    name: 'recognition',
    get usage() {
      return lazy.recognition().recognitionUsage;
    },
    examples: [
      ['recognition', 'yilian recognition rules list'],
      ['recognition rules set', 'yilian recognition rules set --code 2345-7 --window-days 30 --tiers tertiary,secondary'],
      ['recognition check', 'yilian recognition check --patient-member county --mrn 000123 --code 2345-7'],
      ['recognition duplicates', 'yilian recognition duplicates --format csv --from 2026-01-01'],
    ],
  },
  {
    name: 'resources',
    get usage() {
      return lazy.resources().sharedResourcesUsage;
    },
    examples: [['resources', 'yilian resources list --type Device --json']],
  },
  {
    name: 'mpi',
    get usage() {
      return lazy.mpi().mpiUsage;
    },
    examples: [
      ['mpi', 'yilian mpi export --format csv'],
      ['mpi decide', 'yilian mpi decide --member county --mrn 000123 --golden P-000042 --link --reason "same ID card"'],
      ['mpi rematch', 'yilian mpi train && yilian mpi rematch --dry-run && yilian mpi rematch'],
      ['mpi stats', 'yilian mpi stats --json'],
    ],
  },
];

const commonOptions = `common: --config <file> (or YILIAN_CONFIG); DATABASE_URL, REDIS_URL; --debug (stack traces of errors); -h, --help`;

/** The program's usage: a function, since it reads every group's usage (and so loads its module). */
const usage = () => `usage: yilian <command> [options]
${commandTable.map((c) => c.usage).join('\n')}
${commonOptions}
yilian <command> --help: that command's usage and an example`;

/** `yilian <words…> --help`: the entries of the longest command path that matches, and an example. */
export function helpFor(words: string[]): string | undefined {
  const command = commandTable.find((c) => c.name === words[0]);
  if (!command) return undefined;
  const all = entries(command.usage);
  let chosen = all;
  for (let n = words.length; n > 1; n--) {
    const prefix = words.slice(0, n).join(' ');
    const found = all.filter((e) => `${e.trim().split(/\s+/).join(' ')} `.startsWith(`${prefix} `));
    if (found.length) {
      chosen = found;
      break;
    }
  }
  const asked = `${words.join(' ')} `;
  const example = command.examples.filter(([p]) => asked.startsWith(`${p} `)).sort((a, b) => b[0].length - a[0].length)[0] ?? command.examples[0]!;
  const lines = chosen.map((e) => e.replace(/^ {2}/, '  yilian '));
  return `usage:\n${lines.join('\n')}\n${commonOptions}\nexample: ${example[1]}\n`;
}

/** The words before the first option: the command path for help and for "see yilian … --help". */
function commandWords(argv: string[]): string[] {
  const words: string[] = [];
  for (const arg of argv) {
    if (arg.startsWith('-')) break;
    words.push(arg);
  }
  return words;
}

/** A number option: a whole number in range, or a usage error naming the option. */
function intOption(value: string, name: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) throw new HubError('invalid', `${name}: a whole number from ${min} to ${max}, not ${value}`, name);
  return n;
}

function dateOption(value: string | undefined, name: string): Date | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new HubError('invalid', `${name}: an ISO 8601 date or date-time, not ${value}`, name);
  return new Date(t);
}

/** Input files are checked before a store or Redis is opened: a missing one is a usage error (exit 2). */
function readableFiles(files: string[]): void {
  for (const file of files) {
    accessSync(file, fsConstants.R_OK);
    if (statSync(file).isDirectory()) throw Object.assign(new Error(`EISDIR: ${file}`), { code: 'EISDIR', path: file });
  }
}

const REPLAYABLE = ['queued', 'processed', 'quarantined', 'failed'] as const;

const log = (text: string) => process.stderr.write(`${new Date().toISOString()} ${text}\n`);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const beforeEnd = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  if (command === '--help' || command === '-h' || command === 'help') {
    const words = commandWords(rest);
    const text = words.length ? helpFor(words) : `${usage()}\n`;
    if (!text) throw new UsageError(`unknown command ${words[0]}; see yilian --help`);
    process.stdout.write(text);
    return 0;
  }
  if (!command) {
    process.stderr.write(`${usage()}\n`);
    return 2;
  }
  if (!commandTable.some((c) => c.name === command)) throw new UsageError(`unknown command ${command}; see yilian --help`);
  if (beforeEnd.includes('--help') || beforeEnd.includes('-h')) {
    process.stdout.write(helpFor(commandWords(argv))!);
    return 0;
  }
  if (command === 'quarantine') return lazy.quarantine().quarantineCommand(rest);
  // Terminology commands parse their own options (cli/terminology.ts).
  if (command === 'translate' || command === 'mappings') return lazy.terminology().terminologyCommand(command, rest);
  // Cost feed and KPI commands parse their own options (cli/feed.ts).
  if (command === 'feed' || command === 'kpi') return lazy.feed().costFeedCommand(command, rest);
  // Recognition commands parse their own options (cli/recognition.ts).
  if (command === 'recognition') return lazy.recognition().recognitionCommand(rest);
  // Unified shared-resource commands parse their own options (cli/resources.ts).
  if (command === 'resources') return lazy.resources().sharedResourcesCommand(rest);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      member: { type: 'string' },
      json: { type: 'boolean', default: false },
      'api-only': { type: 'boolean', default: false },
      'listeners-only': { type: 'boolean', default: false },
      'with-worker': { type: 'boolean', default: false },
      'metrics-port': { type: 'string' },
      'raw-id': { type: 'string', multiple: true },
      channel: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      status: { type: 'string' },
      file: { type: 'string' },
      comment: { type: 'string' },
      timeout: { type: 'string' },
      source: { type: 'string' },
      'no-wait': { type: 'boolean', default: false },
      wait: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      quick: { type: 'boolean', default: false },
      // mpi
      format: { type: 'string' },
      limit: { type: 'string' },
      mrn: { type: 'string' },
      golden: { type: 'string' },
      link: { type: 'boolean' },
      'not-link': { type: 'boolean' },
      reason: { type: 'string' },
      actor: { type: 'string' },
      full: { type: 'boolean' },
      batch: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
  });
  const config = loadConfig({ path: values.config });
  // The demo keeps its store in the configured dataDir (default .yilian), for the commands it suggests.
  if (command === 'demo') return lazy.runDemo()({ log, dataDir: config.dataDir, quick: values.quick });

  switch (command) {
    case 'mpi':
      return lazy.mpi().runMpiCommand(config, positionals, values, (text) => process.stdout.write(text));
    case 'convert': {
      // Pure conversion: no runtime (database, Redis) is opened.
      if (positionals.length === 0) throw new HubError('invalid', 'convert needs at least one file', 'files');
      readableFiles(positionals);
      const { convertFiles, memberFor } = lazy.convert();
      const member = memberFor(config, values.member ?? 'local');
      const write = (line: string) => new Promise<void>((resolve, reject) => process.stdout.write(`${line}\n`, (error) => (error ? reject(error) : resolve())));
      const summary = await convertFiles(config, member, positionals, write);
      if (summary.failed > 0) process.stderr.write(`yilian convert: ${summary.failed} of ${summary.converted + summary.failed} could not be converted\n`);
      return summary.failed > 0 ? 1 : 0;
    }
    case 'ingest': {
      if (!values.member) throw new HubError('invalid', 'ingest needs --member <id>', '--member');
      if (positionals.length === 0) throw new HubError('invalid', 'ingest needs at least one file', 'files');
      readableFiles(positionals);
      const timeout = values.timeout === undefined ? undefined : intOption(values.timeout, '--timeout');
      const member = ensureMember(config, values.member);
      return withRuntime(config, async (runtime) => {
        const { rawIds, ...summary } = await lazy.ingest().ingestFiles(runtime, member, positionals, {
          timeoutMs: timeout ? timeout * 1000 : undefined,
          log,
          fhirSource: values.source,
          noWait: values['no-wait'],
        });
        // Why each message was quarantined, on stderr (stdout keeps the summary as its last line).
        if (summary.quarantined > 0) await printQuarantineReasons(runtime, rawIds, summary.quarantined, member.id);
        if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else process.stdout.write(`received ${summary.received}, stored ${summary.stored}, duplicates ${summary.duplicates}, quarantined ${summary.quarantined}, failed ${summary.failed}\n`);
        // Quarantined messages are an outcome, not a failure of the command: exit 0 (the reasons are printed above).
        return summary.failed > 0 ? 1 : 0;
      });
    }
    case 'pull': {
      if (!values.member) throw new HubError('invalid', 'pull needs --member <id>', '--member');
      if (!values.channel) throw new HubError('invalid', 'pull needs --channel <id>', '--channel');
      const member = config.members.find((m) => m.id === values.member);
      if (!member) throw new HubError('invalid', `member ${values.member} is not configured`, '--member');
      const channelId = values.channel;
      return withRuntime(config, async (runtime) => {
        const summary = await lazy.ingest().pullChannel(runtime, member, channelId, { wait: values.wait, timeoutMs: values.timeout ? intOption(values.timeout, '--timeout') * 1000 : undefined, log });
        // maxRssKb: this process's peak resident memory (the streaming import's memory budget is checked on it).
        const out = { ...summary, maxRssKb: peakRssKb() };
        process.stdout.write(values.json ? `${JSON.stringify(out)}\n` : `${summary.kind} ${member.id}/${summary.channel}: stored ${summary.stored}, duplicates ${summary.duplicates}, quarantined ${summary.quarantined}\n`);
        return (summary.processed?.failed ?? 0) > 0 ? 1 : 0;
      });
    }
    case 'replay': {
      // Every value is checked before anything is opened: a bad one is a usage error, not an empty replay.
      const rawIds = values['raw-id']?.map((v) => intOption(v, '--raw-id'));
      const from = dateOption(values.from, '--from');
      const to = dateOption(values.to, '--to');
      const status = values.status?.split(',').map((s) => s.trim());
      for (const s of status ?? []) {
        if (!(REPLAYABLE as readonly string[]).includes(s)) throw new HubError('invalid', `--status: ${REPLAYABLE.join(', ')}, not ${s}${s === 'fixed' ? ' (a fixed message is never replayed: its fix was)' : ''}`, '--status');
      }
      return withRuntime(config, async (runtime) => {
        const result = await lazy.replay()(runtime.db, runtime.queues, { rawIds, member: values.member, channel: values.channel, from, to, status: status as (typeof REPLAYABLE)[number][] | undefined });
        const { notFound, notReplayed } = result;
        // No worker up (always so on the embedded defaults, whose Redis is this process's own): the
        // stages run here, as for `ingest`, rather than leaving the messages queued in a Redis that ends with this command.
        const outcome = result.replayed && (await runtime.queues.workerCount()) === 0 ? await lazy.ingest().waitForPipeline(runtime, result.rawIds, { log }) : undefined;
        process.stdout.write(`${JSON.stringify({ replayed: result.replayed, ...(outcome ? { outcome } : {}), ...(notFound ? { notFound } : {}), ...(notReplayed ? { notReplayed } : {}) })}\n`);
        for (const id of notFound ?? []) process.stderr.write(`yilian replay: raw id ${id}: not found\n`);
        for (const m of notReplayed ?? []) process.stderr.write(`yilian replay: raw id ${m.rawId}: not replayed (status ${m.status}${m.status === 'fixed' ? ': its fix was replayed instead' : ', not selected by the filters'})\n`);
        if (result.replayed === 0 && !rawIds?.length) process.stderr.write('yilian replay: no stored message matched\n');
        return result.replayed === 0 ? 1 : 0;
      });
    }
    case 'fix': {
      const rawIds = values['raw-id'] ?? [];
      const rawId = Number(rawIds[0]);
      if (rawIds.length !== 1 || !Number.isSafeInteger(rawId) || rawId <= 0) throw new HubError('invalid', 'fix takes one --raw-id N', 'raw-id');
      if (!values.file) throw new HubError('invalid', 'fix needs --file with the corrected message', 'file');
      if (!values.comment?.trim()) throw new HubError('invalid', 'fix needs --comment: say what was wrong and what was changed', 'comment');
      readableFiles([values.file]);
      // The file is text a person edited: read strictly as UTF-8, so a mis-saved file is refused rather than mangled.
      const text = lazy.charset().decodeStrict(readFileSync(values.file), 'UTF-8');
      const comment = values.comment;
      return withRuntime(config, async (runtime) => {
        const fixed = await lazy.fix().fixRawMessage(runtime, { rawId, text, comment, actor: values.actor ?? process.env.USER ?? 'cli' });
        // As for replay: with no worker up, the fix goes through the stages here.
        const outcome = (await runtime.queues.workerCount()) === 0 ? await lazy.ingest().waitForPipeline(runtime, [fixed.fixId], { log }) : undefined;
        process.stdout.write(`${JSON.stringify({ ...fixed, ...(outcome ? { outcome } : {}) })}\n`);
        return 0;
      });
    }
    case 'status': {
      // Read-only: the store and the queues, not the whole runtime (cli/runtime.ts, openReader).
      const reader = await lazy.runtime().openReader(config);
      try {
        const status = await lazy.status().hubStatus(reader.db, reader.queues);
        process.stdout.write(values.json ? `${JSON.stringify(status)}\n` : formatStatus(status));
        return 0;
      } finally {
        await reader.close();
      }
    }
    case 'worker':
      return serveUntilSignal(config, async (runtime) => {
        const worker = new (lazy.PipelineWorker())({ db: runtime.db, config }, runtime.queues, { log });
        await worker.start();
        const metricsServer = values['metrics-port'] ? await serveMetrics(runtime, intOption(values['metrics-port'], '--metrics-port', 1, 65535)).catch(async (error) => {
          await worker.close();
          throw error;
        }) : undefined;
        log(`worker up: ${config.pipeline.partitions} partitions`);
        return async () => {
          metricsServer?.close();
          await worker.close();
        };
      });
    case 'serve':
      return serveUntilSignal(config, async (runtime) => {
        const stops: Array<() => Promise<void> | void> = [];
        try {
          await startServe(runtime, stops);
        } catch (error) {
          // A port in use (or any failure to start): what did start is stopped, then the runtime is closed by the caller.
          for (const stop of stops.reverse()) await stop();
          throw error;
        }
        return async () => {
          for (const stop of stops.reverse()) await stop();
        };
      });
    default:
      throw new UsageError(`unknown command ${command}; see yilian --help`);
  }

  async function startServe(runtime: Runtime, stops: Array<() => Promise<void> | void>): Promise<void> {
        if (!values['listeners-only']) {
          const server = lazy.api().createApi(runtime).listen(config.api.port, config.api.host);
          await listening(server, 'API', config.api.port, config.api.host);
          log(`API on ${config.api.host}:${config.api.port}`);
          stops.push(() => new Promise<void>((r) => server.close(() => r())));
          // golden ids for new and changed source patients without waiting for a read or an export
          stops.push((require('../hub/mpi/sync') as typeof import('../hub/mpi/sync')).startPatientIndexSync(runtime.db, 5000, log));
          // unified shared resources (devices, experts, wards…) follow the resource table (hub/resources/store.ts)
          stops.push((require('../hub/resources/store') as typeof import('../hub/resources/store')).startSharedResourceSync(runtime.db, 5000, log));
          // the recognition index follows the stored results (hub/recognition/resultIndex.ts)
          stops.push((require('../hub/recognition/resultIndex') as typeof import('../hub/recognition/resultIndex')).startRecognitionIndexSync(runtime.db, 2000, log));
          // the cost event feed, appended every few seconds (hub/feeds/builder.ts)
          stops.push((require('../hub/feeds/builder') as typeof import('../hub/feeds/builder')).startCostFeedBuilder(runtime.db, config, log));
        }
        if (!values['api-only']) stops.push(...(await lazy.listeners().startListeners(runtime, log)));
        // PGlite lives in this one process, so with embedded defaults the stages run here too.
        if (values['with-worker'] || runtime.db.kind === 'pglite') {
          const worker = new (lazy.PipelineWorker())({ db: runtime.db, config }, runtime.queues, { log });
          await worker.start();
          stops.push(() => worker.close());
        } else {
          const { Reconciler } = require('../pipeline/reconciler') as typeof import('../pipeline/reconciler');
          const reconciler = new Reconciler(runtime.db, runtime.queues, { log });
          reconciler.start();
          stops.push(() => reconciler.stop());
        }
  }
}

/** Resolves when the server listens; a port in use (or forbidden) becomes a UsageError naming it. */
function listening(server: http.Server, what: string, port: number, host?: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(lazy.listeners().portError(error, what, port, host));
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** `ingest`: each quarantined message of the run with its raw id, code and reason, on stderr. */
async function printQuarantineReasons(runtime: Runtime, rawIds: number[], quarantined: number, member: string): Promise<void> {
  const rows = await runtime.db.query<{ raw_id: number; stage: string; code: string; reason: string; location: string | null }>(
    `SELECT raw_id, stage, code, reason, location FROM quarantine WHERE raw_id = ANY($1::bigint[]) AND state = 'open' ORDER BY raw_id, id`,
    [rawIds],
  );
  for (const r of rows.rows) process.stderr.write(`quarantined: raw ${r.raw_id} ${r.code} (${r.stage}${r.location ? `, at ${r.location}` : ''}): ${r.reason}\n`);
  const shown = new Set(rows.rows.map((r) => Number(r.raw_id))).size;
  if (shown < quarantined) process.stderr.write(`quarantined: ${quarantined - shown} more at intake (FHIR resources): yilian quarantine list --member ${member}\n`);
}

async function withRuntime(config: HubConfig, work: (runtime: Runtime) => Promise<number>): Promise<number> {
  const runtime = await lazy.runtime().openRuntime(config, { log });
  try {
    return await work(runtime);
  } finally {
    await runtime.close();
  }
}

/** How long a signalled process may take to finish its in-flight work before it exits anyway. */
const SHUTDOWN_GRACE_MS = 30_000;

async function serveUntilSignal(config: HubConfig, start: (runtime: Runtime) => Promise<() => Promise<void>>): Promise<number> {
  const runtime = await lazy.runtime().openRuntime(config, { log });
  let stop: () => Promise<void>;
  try {
    stop = await start(runtime);
  } catch (error) {
    // Not started (a port in use…): the runtime, and with it the embedded redis-server, is closed, not orphaned.
    await runtime.close().catch((closing: Error) => log(`closing after a failed start: ${closing.message}`));
    throw error;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  log(`${signal}: shutting down, finishing in-flight work (at most ${SHUTDOWN_GRACE_MS / 1000} s)`);
  // Whatever is in flight (a job waiting on a store that is away, a sender that never reads its
  // ACKs), the process ends within the grace; what it did not finish is still in the raw store
  // and queues, and runs again. A second signal ends it at once.
  const forced = setTimeout(() => {
    log(`shutdown: in-flight work not finished after ${SHUTDOWN_GRACE_MS / 1000} s; exiting (it is run again from the raw store)`);
    process.exit(1);
  }, SHUTDOWN_GRACE_MS);
  forced.unref();
  const again = (second: NodeJS.Signals) => {
    log(`${second} again: exiting now`);
    process.exit(1);
  };
  process.once('SIGINT', again);
  process.once('SIGTERM', again);
  try {
    await stop();
    await runtime.close();
  } catch (error) {
    log(`shutdown: ${(error as Error).message}`);
    return 1;
  }
  return 0;
}

/**
 * A long-running process must not die of a promise nobody awaited: the rejection is logged with
 * what it carried, and the process goes on (its loops handle their own failures and retry). An
 * uncaught exception leaves state unknown: the process exits non-zero, and its supervisor
 * (docker-compose `restart: unless-stopped`, deploy/yilian@.service) starts it again.
 */
function guardProcess(): void {
  process.on('unhandledRejection', (reason) => {
    log(`unexpected rejection (process kept running): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
  });
  process.on('uncaughtException', (error) => {
    log(`uncaught exception, exiting for the supervisor to restart this process: ${error.stack ?? error.message}`);
    process.exit(70);
  });
}

/**
 * A worker's own metrics, behind the same API keys as the hub's API (scope `metrics`), with the
 * pipeline's lag read from the store at each scrape as the API does (pipeline/status.ts).
 */
async function serveMetrics(runtime: Runtime, port: number): Promise<http.Server> {
  const { config } = runtime;
  const { authenticator, requireScope } = lazy.auth();
  const { registry } = require('../hub/metrics') as typeof import('../hub/metrics');
  const app = lazy.express()();
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/metrics', authenticator(config), requireScope('metrics'), async (_req, res) => {
    await lazy.status().refreshPipelineGauges(runtime.db, runtime.queues);
    res.type(registry.contentType).send(await registry.metrics());
  });
  const server = app.listen(port, '0.0.0.0');
  await listening(server, 'metrics', port);
  return server;
}

function formatStatus(status: Awaited<ReturnType<typeof hubStatus>>): string {
  const lines = [`queues: ${Object.entries(status.queues).map(([k, v]) => `${k} ${v}`).join(', ')}; workers connected: ${status.workers}`];
  const { lag } = status;
  lines.push(lag.queued ? `pipeline lag: ${lag.queued} stored and waiting, the oldest since ${lag.oldestQueuedAt} (${Math.round(lag.oldestQueuedAgeSeconds)} s)` : 'pipeline lag: nothing waiting');
  lines.push(status.deadLetters.length ? 'dead letters (open):' : 'dead letters: none');
  for (const d of status.deadLetters) lines.push(`  ${d.stage.padEnd(8)} ${d.code.padEnd(12)} ${d.open}`);
  lines.push('channels:');
  lines.push(`  ${'member/channel'.padEnd(24)} ${'received'.padStart(8)} ${'processed'.padStart(9)} ${'queued'.padStart(6)} ${'quarant.'.padStart(8)} ${'failed'.padStart(6)} ${'dupes'.padStart(5)}  last`);
  for (const c of status.channels) {
    lines.push(
      `  ${`${c.member}/${c.channel}`.padEnd(24)} ${String(c.received).padStart(8)} ${String(c.processed).padStart(9)} ${String(c.queued).padStart(6)} ${String(c.quarantined).padStart(8)} ${String(c.failed).padStart(6)} ${String(c.duplicates).padStart(5)}  ${c.lastReceivedAt ?? '-'}`,
    );
  }
  return lines.join('\n') + '\n';
}

const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EISDIR: 'is a directory, not a file',
  ENOTDIR: 'a part of the path is not a directory',
};

/**
 * The one place where a command's failure becomes what the user reads: one line `yilian: …`, the
 * stack only with --debug. A usage mistake (unknown or incomplete option, bad value, a missing input
 * file, HubError('invalid'), a port in use) exits 2 and points at the command's help; anything else exits 1.
 */
export function reportFailure(error: unknown, argv: string[], debug: boolean, write: (text: string) => void): number {
  const e = (error ?? {}) as { code?: unknown; message?: unknown; stack?: unknown; path?: unknown };
  const code = typeof e.code === 'string' ? e.code : undefined;
  const words = commandWords(argv).filter((w) => /^[a-z][a-z-]*$/.test(w)).slice(0, 3);
  const hint = commandTable.some((c) => c.name === words[0]) ? `see yilian ${words.join(' ')} --help` : 'see yilian --help';
  let line: string;
  let exit = 1;
  let usageMistake = false;
  if (code?.startsWith('ERR_PARSE_ARGS_')) {
    // "Unknown option '--foo'. To specify a positional argument starting with a '-', …": the first sentence says it.
    line = String(e.message).split(/\.\s/)[0]!.replace(/\.$/, '');
    usageMistake = true;
  } else if (error instanceof UsageError) {
    line = error.message;
    exit = 2;
  } else if (error instanceof HubError) {
    line = `${error.code}: ${error.message}`;
    usageMistake = error.code === 'invalid';
  } else if (code && FILE_ERRORS[code] && typeof e.path === 'string') {
    line = `${e.path}: ${FILE_ERRORS[code]}`;
    // An input named on the command line is the user's to fix; another path (a socket, a data dir) is not.
    const named = argv.map((a) => path.resolve(a));
    usageMistake = named.includes(path.resolve(e.path));
  } else {
    line = error instanceof Error ? error.message : String(error);
  }
  if (usageMistake) exit = 2;
  write(`yilian: ${line.split('\n')[0]}\n`);
  if (debug && typeof e.stack === 'string') write(`${e.stack}\n`);
  if (usageMistake) write(`${hint}\n`);
  return exit;
}

if (require.main === module) {
  guardProcess();
  // --debug is taken out here, so every command (and every group's own option parser) accepts it.
  const args = process.argv.slice(2);
  const end = args.includes('--') ? args.indexOf('--') : args.length;
  const debug = args.slice(0, end).includes('--debug');
  const argv = args.filter((a, i) => !(i < end && a === '--debug'));
  main(argv).then(
    (code) => process.exit(code),
    (error) => process.exit(reportFailure(error, argv, debug, (text) => process.stderr.write(text))),
  );
}

/**
 * Peak resident memory of this program image, in KiB: VmHWM of /proc/self/status. Not
 * `process.resourceUsage().maxRSS`: Linux carries getrusage's peak across fork and exec, so a child
 * started by a large parent (a jest worker, a `yilian serve`) reports the parent's size as its own.
 */
function peakRssKb(): number {
  try {
    return Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? process.resourceUsage().maxRSS);
  } catch {
    return process.resourceUsage().maxRSS; // no /proc (not Linux): getrusage is the best there is
  }
}
