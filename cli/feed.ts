/**
 * `yilian feed …` and `yilian kpi …` (dispatched from cli/yilian.ts; options parsed here). Opens
 * only the database (no Redis): the feed is built from and read out of PostgreSQL (or PGlite).
 *
 *   feed cost --format ndjson|csv [--after <cursor>] [--from <date>] [--to <date>] [--no-build]
 *       builds the feed up to date (unless --no-build), then prints its events in feed order
 *   feed build [--json]     one incremental build
 *   feed schema             the event's JSON Schema
 *   kpi [--from YYYY-MM] [--to YYYY-MM] [--member M] [--json]
 */
import { parseArgs } from 'node:util';
import { loadConfig, type HubConfig } from '../hub/config';
import { openStore } from './embeddedStore';
import type { HubDb } from '../hub/sql';
import { HubError } from '../mappings/outcome';
import { recordAudit } from '../hub/audit';
import { buildCostFeed } from '../hub/feeds/builder';
import { costEventCsvColumns, costEventCsvRow, costEventJsonSchema, type CostEvent } from '../hub/feeds/costEvents';
import { computeKpis, defaultRange, formatKpis } from '../hub/feeds/kpi';
import { exportEvents, readPage } from '../hub/feeds/read';

export const costFeedUsage = `  feed cost --format ndjson|csv [--after CURSOR] [--from DATE] [--to DATE] [--no-build]
                                the cost event feed (built up to date first), in feed order
  feed build [--json] | feed schema
  kpi [--from YYYY-MM] [--to YYYY-MM] [--member M] [--json]
                                alliance KPIs: referrals, outreach, device sharing, duplicates, coverage`;

type Write = (text: string) => Promise<void>;

const stdoutWrite: Write = (text) => new Promise<void>((resolve, reject) => process.stdout.write(text, (error) => (error ? reject(error) : resolve())));

function dateArg(value: string | undefined, name: string): Date | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value}T00:00:00Z` : value);
  if (Number.isNaN(t)) throw new HubError('invalid', `${name}: an ISO date or date-time`, name);
  return new Date(t);
}

export async function costFeedCommand(command: 'feed' | 'kpi', argv: string[], write: Write = stdoutWrite): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      format: { type: 'string' },
      after: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      member: { type: 'string' },
      json: { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
    },
  });
  const config = loadConfig({ path: values.config });
  const db = await openStore(config, 2);
  try {
    if (command === 'kpi') {
      const d = defaultRange();
      for (const [name, v] of [['--from', values.from], ['--to', values.to]] as const) {
        if (v !== undefined && !/^\d{4}-(0[1-9]|1[0-2])$/.test(v)) throw new HubError('invalid', `${name}: a month YYYY-MM`, name);
      }
      const to = values.to ?? d.to;
      const from = values.from ?? (to < d.from ? to : d.from);
      if (from > to) throw new HubError('invalid', '--from must not be after --to', '--from');
      const report = await computeKpis(db, config, { from, to, member: values.member });
      await write(values.json ? `${JSON.stringify(report)}\n` : formatKpis(report));
      return 0;
    }
    const [sub] = positionals;
    switch (sub) {
      case 'build': {
        const summary = await buildCostFeed(db, config);
        await write(values.json ? `${JSON.stringify(summary)}\n` : `cost feed: ${summary.appended} events appended (${summary.corrections} corrections, ${summary.voided} voids), ${summary.pending} waiting for their patient; last cursor ${summary.lastCursor}\n`);
        return 0;
      }
      case 'schema':
        await write(`${JSON.stringify(costEventJsonSchema(), null, 2)}\n`);
        return 0;
      case 'cost':
        return await printEvents(db, config, values, write);
      default:
        throw new HubError('invalid', `feed needs a subcommand: cost, build or schema, not ${sub ?? 'nothing'}`, 'feed');
    }
  } finally {
    await db.close();
  }
}

async function printEvents(db: HubDb, config: HubConfig, values: { format?: string; after?: string; from?: string; to?: string; 'no-build'?: boolean }, write: Write): Promise<number> {
  const format = values.format ?? 'ndjson';
  if (format !== 'ndjson' && format !== 'csv') throw new HubError('invalid', '--format: ndjson or csv', '--format');
  const after = values.after === undefined ? 0 : Number(values.after);
  if (!Number.isInteger(after) || after < 0) throw new HubError('invalid', '--after: a cursor (a non-negative integer)', '--after');
  const from = dateArg(values.from, '--from');
  const to = dateArg(values.to, '--to');
  if (!values['no-build']) {
    try {
      await buildCostFeed(db, config);
    } catch (error) {
      // Printing what the log already holds is still right; say why it may be behind.
      if (!(error instanceof HubError)) throw error;
      process.stderr.write(`yilian feed: not built (${error.message}); printing the feed as it is\n`);
    }
  }
  await recordAudit(db, { actor: `cli:${process.env.USER ?? 'unknown'}`, action: 'export', entityType: 'cost_event', entityId: `after ${after}`, detail: { format, from: values.from ?? null, to: values.to ?? null } });
  const line = (event: string) => (format === 'csv' ? costEventCsvRow(JSON.parse(event) as CostEvent) : event);
  if (format === 'csv') await write(`${costEventCsvColumns.join(',')}\n`);
  if (from || to) {
    for await (const events of exportEvents(db, { from, to })) {
      const chosen = after ? events.filter((e) => (JSON.parse(e) as CostEvent).cursor > after) : events;
      if (chosen.length) await write(chosen.map(line).join('\n') + '\n');
    }
    return 0;
  }
  let cursor = after;
  for (;;) {
    const page = await readPage(db, cursor, 5000);
    if (!page.events.length) return 0;
    await write(page.events.map(line).join('\n') + '\n');
    cursor = page.next;
  }
}
