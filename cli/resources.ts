/**
 * `yilian resources …` (dispatched from cli/yilian.ts; options parsed here). Opens only the
 * database: the unified shared-resource index is built from and read out of PostgreSQL (or PGlite).
 *
 *   resources sync [--full] [--json]          one incremental sync (--full: look at every report)
 *   resources list [--type T] [--json]        the unified records (synced first), with their sources
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../hub/config';
import { openStore } from './embeddedStore';
import { HubError } from '../mappings/outcome';
import { SHARED_RESOURCE_TYPES } from '../hub/resources/rules';
import { listUnified, syncSharedResources } from '../hub/resources/store';

export const sharedResourcesUsage = `  resources sync [--full] [--json] | resources list [--type T] [--json]
                                unified shared resources (devices, practitioners, locations, organisations…) and their sources`;

export async function sharedResourcesCommand(argv: string[], write: (text: string) => void = (t) => process.stdout.write(t)): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string' }, type: { type: 'string' }, json: { type: 'boolean', default: false }, full: { type: 'boolean', default: false } },
  });
  const [sub] = positionals;
  if (sub !== 'sync' && sub !== 'list') throw new HubError('invalid', `resources: sync or list, not ${sub ?? 'nothing'}`, 'command');
  if (values.type && !(SHARED_RESOURCE_TYPES as readonly string[]).includes(values.type)) throw new HubError('invalid', `--type: one of ${SHARED_RESOURCE_TYPES.join(', ')}`, '--type');
  const config = loadConfig({ path: values.config });
  const db = await openStore(config, 2);
  try {
    const summary = await syncSharedResources(db, { full: values.full });
    if (sub === 'sync') {
      write(values.json ? `${JSON.stringify(summary)}\n` : `shared resources: ${summary.seen} reports looked at, ${summary.created} new records, ${summary.linked} linked, ${summary.moved} moved, ${summary.merged} merges, ${summary.unchanged} unchanged (${summary.ms} ms)\n`);
      return 0;
    }
    const { records } = await listUnified(db, { type: values.type, limit: 100_000 });
    if (values.json) {
      write(`${JSON.stringify(records.map((r) => ({ id: r.id, resourceType: r.resourceType, name: displayName(r.content), sources: r.sources })))}\n`);
      return 0;
    }
    for (const r of records) {
      write(`${r.resourceType.padEnd(18)} ${r.id}  ${displayName(r.content) ?? ''}\n`);
      for (const s of r.sources) write(`    ${s.memberId.padEnd(12)} ${s.sourceId}  (${s.rule})\n`);
    }
    return 0;
  } finally {
    await db.close();
  }
}

function displayName(content: Record<string, any>): string | undefined { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (typeof content.name === 'string') return content.name;
  const n = Array.isArray(content.name) ? content.name[0] : undefined;
  if (n) return n.text ?? [n.family, ...(n.given ?? [])].filter(Boolean).join('');
  return content.deviceName?.[0]?.name ?? content.type?.[0]?.text ?? content.code?.[0]?.text;
}
