#!/usr/bin/env node
/**
 * `yilian` — the one command line of Yilian Hub: demo, serve, worker, ingest, replay, fix, status.
 * Configuration from --config or YILIAN_CONFIG; DATABASE_URL and REDIS_URL override it; with
 * neither, the embedded defaults (PGlite, a redis-server started here) are used.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { ensureMember, loadConfig, type HubConfig } from '../hub/config';
import express from 'express';
import { authenticator, requireScope } from '../api/auth';
import { createApi } from '../api/server';
import { openRuntime, type Runtime } from './runtime';
import { hubStatus } from '../pipeline/status';
import { registry } from '../hub/metrics';
import { HubError } from '../mappings/outcome';
import { replay } from '../pipeline/replay';
import { fixRawMessage } from '../pipeline/fix';
import { decodeStrict } from '../mappings/hl7v2/charset';
import { Reconciler } from '../pipeline/reconciler';
import { ingestFiles, pullChannel } from './ingest';
import { startListeners } from './listeners';
import { terminologyCommand, terminologyUsage } from './terminology';
import { runMpiCommand } from './mpi';
import { recognitionCommand, recognitionUsage } from './recognition';
import { startRecognitionIndexSync } from '../hub/recognition/resultIndex';
import { startPatientIndexSync } from '../hub/mpi/sync';
import { sharedResourcesCommand, sharedResourcesUsage } from './resources';
import { startSharedResourceSync } from '../hub/resources/store';
import { costFeedCommand, costFeedUsage } from './feed';
import { startCostFeedBuilder } from '../hub/feeds/builder';

/**
 * Loaded when a command needs them: the HL7 v2 conversion behind these holds about 100 MB of tables,
 * which `pull` and `ingest --no-wait` of FHIR files never use (their memory budget is measured).
 */
const lazy = {
  PipelineWorker: () => (require('../pipeline/worker') as typeof import('../pipeline/worker')).PipelineWorker,
  convert: () => require('./convert') as typeof import('./convert'),
  runDemo: () => (require('./demo') as typeof import('./demo')).runDemo,
};

const usage = `usage: yilian <command> [options]
  demo                          simulated members send HL7 v2 through the whole pipeline (embedded defaults)
  serve [--api-only|--listeners-only] [--with-worker]
                                HTTP API (with the FHIR subscription endpoint), the configured MLLP/file listeners and
                                the scheduled FHIR REST pulls (fhir-rest channels with intervalSeconds)
  worker [--metrics-port N]     pipeline worker (run as many as wanted)
  ingest --member M [--json] [--source URL] [--no-wait] <files…>
                                store HL7 v2 files, FHIR .ndjson files and FHIR Bundle/resource .json files and wait
                                until every message went through every stage (--source: the FHIR server the files came from)
  pull --member M --channel C [--wait] [--json]
                                one incremental REST pull (fhir-rest) or one Bulk $export import (fhir-bulk)
  convert [--member M] <files…>  HL7 v2 files → one FHIR R4 Bundle per message as NDJSON on stdout (stores nothing;
                                an OperationOutcome line for what cannot be converted, and exit code 1)
  replay [--raw-id N]… [--member M] [--channel C] [--from ISO] [--to ISO] [--status s,…]
  fix --raw-id N --file corrected.hl7 --comment TEXT [--actor NAME]
                                fix and replay a quarantined or failed message: the file's text (UTF-8, segments one a
                                line or CR-separated) is stored as a new message linked to it, which is marked fixed
  status [--json]               queue depths, dead letters, per-channel counters
${terminologyUsage}
${costFeedUsage}
${recognitionUsage}
${sharedResourcesUsage}
  mpi sync [--full] [--batch N] | export [--format csv|json] | review [--json] | show <golden id> | train
  mpi decide --member M --mrn X --golden G (--link|--not-link) [--reason TEXT]
                                the master patient index (export prints member,mrn,patient)
common: --config <file> (or YILIAN_CONFIG); DATABASE_URL, REDIS_URL`;

const log = (text: string) => process.stderr.write(`${new Date().toISOString()} ${text}\n`);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // Terminology commands parse their own options (cli/terminology.ts).
  if (command === 'translate' || command === 'mappings') return terminologyCommand(command, rest);
  // Cost feed and KPI commands parse their own options (cli/feed.ts).
  if (command === 'feed' || command === 'kpi') return costFeedCommand(command, rest);
  // Recognition commands parse their own options (cli/recognition.ts).
  if (command === 'recognition') return recognitionCommand(rest);
  // Unified shared-resource commands parse their own options (cli/resources.ts).
  if (command === 'resources') return sharedResourcesCommand(rest);
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
    },
  });
  if (!command || values.help || command === 'help') {
    process.stdout.write(`${usage}\n`);
    return command ? 0 : 2;
  }
  if (command === 'demo') return lazy.runDemo()({ log });
  const config = loadConfig({ path: values.config });

  switch (command) {
    case 'mpi':
      return runMpiCommand(config, positionals, values, (text) => process.stdout.write(text));
    case 'convert': {
      // Pure conversion: no runtime (database, Redis) is opened.
      if (positionals.length === 0) throw new HubError('invalid', 'convert needs at least one file', 'files');
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
      const member = ensureMember(config, values.member);
      return withRuntime(config, async (runtime) => {
        const summary = await ingestFiles(runtime, member, positionals, {
          timeoutMs: values.timeout ? Number(values.timeout) * 1000 : undefined,
          log,
          fhirSource: values.source,
          noWait: values['no-wait'],
        });
        if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else process.stdout.write(`received ${summary.received}, stored ${summary.stored}, duplicates ${summary.duplicates}, quarantined ${summary.quarantined}, failed ${summary.failed}\n`);
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
        const summary = await pullChannel(runtime, member, channelId, { wait: values.wait, timeoutMs: values.timeout ? Number(values.timeout) * 1000 : undefined, log });
        // maxRssKb: this process's peak resident memory (the streaming import's memory budget is checked on it).
        const out = { ...summary, maxRssKb: peakRssKb() };
        process.stdout.write(values.json ? `${JSON.stringify(out)}\n` : `${summary.kind} ${member.id}/${summary.channel}: stored ${summary.stored}, duplicates ${summary.duplicates}, quarantined ${summary.quarantined}\n`);
        return (summary.processed?.failed ?? 0) > 0 ? 1 : 0;
      });
    }
    case 'replay':
      return withRuntime(config, async (runtime) => {
        const result = await replay(runtime.db, runtime.queues, {
          rawIds: values['raw-id']?.map(Number),
          member: values.member,
          channel: values.channel,
          from: values.from ? new Date(values.from) : undefined,
          to: values.to ? new Date(values.to) : undefined,
          status: values.status?.split(',') as never,
        });
        process.stdout.write(`${JSON.stringify({ replayed: result.replayed })}\n`);
        return 0;
      });
    case 'fix': {
      const rawIds = values['raw-id'] ?? [];
      const rawId = Number(rawIds[0]);
      if (rawIds.length !== 1 || !Number.isSafeInteger(rawId) || rawId <= 0) throw new HubError('invalid', 'fix takes one --raw-id N', 'raw-id');
      if (!values.file) throw new HubError('invalid', 'fix needs --file with the corrected message', 'file');
      if (!values.comment?.trim()) throw new HubError('invalid', 'fix needs --comment: say what was wrong and what was changed', 'comment');
      // The file is text a person edited: read strictly as UTF-8, so a mis-saved file is refused rather than mangled.
      const text = decodeStrict(readFileSync(values.file), 'UTF-8');
      const comment = values.comment;
      return withRuntime(config, async (runtime) => {
        const fixed = await fixRawMessage(runtime, { rawId, text, comment, actor: values.actor ?? process.env.USER ?? 'cli' });
        process.stdout.write(`${JSON.stringify(fixed)}\n`);
        return 0;
      });
    }
    case 'status':
      return withRuntime(config, async (runtime) => {
        const status = await hubStatus(runtime.db, runtime.queues);
        process.stdout.write(values.json ? `${JSON.stringify(status)}\n` : formatStatus(status));
        return 0;
      });
    case 'worker':
      return serveUntilSignal(config, async (runtime) => {
        const worker = new (lazy.PipelineWorker())({ db: runtime.db, config }, runtime.queues, { log });
        await worker.start();
        const metricsServer = values['metrics-port'] ? await serveMetrics(config, Number(values['metrics-port'])) : undefined;
        log(`worker up: ${config.pipeline.partitions} partitions`);
        return async () => {
          metricsServer?.close();
          await worker.close();
        };
      });
    case 'serve':
      return serveUntilSignal(config, async (runtime) => {
        const stops: Array<() => Promise<void> | void> = [];
        if (!values['listeners-only']) {
          const server = createApi(runtime).listen(config.api.port, config.api.host);
          await new Promise((r) => server.once('listening', r));
          log(`API on ${config.api.host}:${config.api.port}`);
          stops.push(() => new Promise<void>((r) => server.close(() => r())));
          // golden ids for new and changed source patients without waiting for a read or an export
          stops.push(startPatientIndexSync(runtime.db, 5000, log));
          // unified shared resources (devices, experts, wards…) follow the resource table (hub/resources/store.ts)
          stops.push(startSharedResourceSync(runtime.db, 5000, log));
          // the recognition index follows the stored results (hub/recognition/resultIndex.ts)
          stops.push(startRecognitionIndexSync(runtime.db, 2000, log));
          // the cost event feed, appended every few seconds (hub/feeds/builder.ts)
          stops.push(startCostFeedBuilder(runtime.db, config, log));
        }
        if (!values['api-only']) stops.push(...(await startListeners(runtime, log)));
        // PGlite lives in this one process, so with embedded defaults the stages run here too.
        if (values['with-worker'] || runtime.db.kind === 'pglite') {
          const worker = new (lazy.PipelineWorker())({ db: runtime.db, config }, runtime.queues, { log });
          await worker.start();
          stops.push(() => worker.close());
        } else {
          const reconciler = new Reconciler(runtime.db, runtime.queues, { log });
          reconciler.start();
          stops.push(() => reconciler.stop());
        }
        return async () => {
          for (const stop of stops.reverse()) await stop();
        };
      });
    default:
      process.stderr.write(`unknown command ${command}\n${usage}\n`);
      return 2;
  }
}

async function withRuntime(config: HubConfig, work: (runtime: Runtime) => Promise<number>): Promise<number> {
  const runtime = await openRuntime(config, { log });
  try {
    return await work(runtime);
  } finally {
    await runtime.close();
  }
}

/** How long a signalled process may take to finish its in-flight work before it exits anyway. */
const SHUTDOWN_GRACE_MS = 30_000;

async function serveUntilSignal(config: HubConfig, start: (runtime: Runtime) => Promise<() => Promise<void>>): Promise<number> {
  const runtime = await openRuntime(config, { log });
  const stop = await start(runtime);
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

/** A worker's own metrics, behind the same API keys as the hub's API (scope `metrics`). */
async function serveMetrics(config: HubConfig, port: number): Promise<http.Server> {
  const app = express();
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/metrics', authenticator(config), requireScope('metrics'), async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  const server = app.listen(port, '0.0.0.0');
  await new Promise((r) => server.once('listening', r));
  return server;
}

function formatStatus(status: Awaited<ReturnType<typeof hubStatus>>): string {
  const lines = [`queues: ${Object.entries(status.queues).map(([k, v]) => `${k} ${v}`).join(', ')}; workers connected: ${status.workers}`];
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

if (require.main === module) {
  guardProcess();
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error) => {
      if (error instanceof HubError) {
        process.stderr.write(`yilian: ${error.code}: ${error.message}\n`);
        process.exit(error.code === 'invalid' ? 2 : 1);
      }
      process.stderr.write(`yilian: ${(error as Error).stack ?? error}\n`);
      process.exit(1);
    },
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
