/**
 * `yilian mpi …`: the patient index from the command line. Opens only the hub store (no Redis):
 *   mpi sync [--full] [--batch N]    match every new or changed source patient (--full: look at all, not only recent changes)
 *   mpi export [--format csv|json]   member,mrn,patient for every source patient (patient = golden id)
 *   mpi review [--json] [--limit N]  open review items with the score breakdown
 *   mpi decide --member M --mrn X --golden G (--link | --not-link) [--reason TEXT] [--actor NAME]
 *   mpi show <golden id>             a golden patient with its sources and history
 *   mpi train                        train the matcher on this hub's source patients and store it (the next model version)
 *   mpi rematch [--dry-run] [--json] [--batch N]   apply the active model to the existing links; prints the diff
 *   mpi stats [--json]               golden patients, sources, links by state, review share, model in use
 */
import type { HubConfig } from '../hub/config';
import { openStore } from './embeddedStore';
import { HubError } from '../mappings/outcome';
import { decideReview, exportLinks, goldenPatient, reviewQueue } from '../hub/mpi/review';
import { syncPatientIndex } from '../hub/mpi/sync';
import { trainStoredModel } from '../hub/mpi/model';
import { rematchPatientIndex, type RematchReport } from '../hub/mpi/rematch';
import { patientIndexStats, type PatientIndexStats } from '../hub/mpi/stats';

export const mpiUsage = `  mpi sync [--full] [--batch N] | export [--format csv|json] | review [--json] [--limit N] | show <golden id> | train
  mpi decide --member M --mrn X --golden G (--link|--not-link) [--reason TEXT] [--actor NAME]
                                the master patient index (export prints member,mrn,patient)
  mpi rematch [--dry-run] [--json] [--batch N]
                                apply the active model (mpi train) to existing links: prints links made, broken and
                                sent to review; --dry-run changes nothing; manual decisions and member merges stay
  mpi stats [--json]            golden patients, sources, links by state, records in review and their share of
                                sources, the model in use`;

export interface MpiCommandOptions {
  full?: boolean;
  batch?: string;
  format?: string;
  json?: boolean;
  limit?: string;
  member?: string;
  mrn?: string;
  golden?: string;
  link?: boolean;
  'not-link'?: boolean;
  'dry-run'?: boolean;
  reason?: string;
  actor?: string;
}

/**
 * The CLI's sync is an operator's bulk run (a member's back catalogue, a first load): batches of
 * 2,000 (the background sync of `yilian serve` keeps 500, so a registration waits less behind a
 * round). 1,000,000 generated records: 437–439 s at 2,000, 579 s at 500 (bench/RESULTS.md).
 */
const CLI_BATCH = 2000;

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

export async function runMpiCommand(config: HubConfig, args: string[], options: MpiCommandOptions, write: (text: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  const db = await openStore(config, 2);
  try {
    switch (sub) {
      case 'sync': {
        const batch = options.batch === undefined ? CLI_BATCH : Number(options.batch);
        if (!Number.isInteger(batch) || batch < 1 || batch > 100_000) throw new HubError('invalid', `--batch must be a whole number from 1 to 100000, not ${options.batch}`);
        write(`${JSON.stringify(await syncPatientIndex(db, { actor: 'cli', full: options.full, batch }))}\n`);
        return 0;
      }
      case 'export': {
        const format = options.format ?? 'csv';
        if (format !== 'csv' && format !== 'json') throw new HubError('invalid', `unknown format ${format} (csv or json)`, '--format');
        await syncPatientIndex(db, { actor: 'cli' });
        const links = await exportLinks(db);
        if (format === 'json') write(`${JSON.stringify(links)}\n`);
        else write(['member,mrn,patient', ...links.map((l) => [l.member, l.mrn, l.patient].map(csvField).join(','))].join('\n') + '\n');
        return 0;
      }
      case 'review': {
        await syncPatientIndex(db, { actor: 'cli' });
        const items = await reviewQueue(db, options.limit ? Number(options.limit) : 100);
        if (options.json) write(`${JSON.stringify(items)}\n`);
        else {
          if (!items.length) write('review queue empty\n');
          for (const i of items) {
            write(`${i.member}|${i.mrn} → ${i.goldenId}  score ${i.score ?? '-'}${i.rule ? ` (${i.rule})` : ''}\n`);
            write(`  record:    ${JSON.stringify(i.source)}\n  candidate: ${JSON.stringify(i.candidate)}\n`);
            const fields = (i.breakdown.fields as Array<{ field: string; label: string; weight: number; level: number | null }> | undefined) ?? [];
            write(`  fields:    ${fields.filter((f) => f.level !== null).map((f) => `${f.field} ${f.label} ${f.weight > 0 ? '+' : ''}${f.weight}`).join('; ')}\n`);
          }
        }
        return 0;
      }
      case 'decide': {
        if (!options.member || !options.mrn || !options.golden) throw new HubError('invalid', 'decide needs --member, --mrn and --golden', 'decide');
        if (!!options.link === !!options['not-link']) throw new HubError('invalid', 'decide needs exactly one of --link and --not-link', 'decide');
        const result = await decideReview(db, {
          member: options.member,
          mrn: options.mrn,
          goldenId: options.golden,
          decision: options.link ? 'link' : 'not-link',
          actor: options.actor ?? process.env.USER ?? 'cli',
          reason: options.reason,
        });
        write(`${JSON.stringify(result)}\n`);
        return 0;
      }
      case 'show': {
        const id = rest[0];
        if (!id) throw new HubError('invalid', 'show needs a golden patient id', 'id');
        const golden = await goldenPatient(db, id);
        if (!golden) throw new HubError('not-found', `no golden patient ${id}`);
        const history = await db.query(`SELECT at, actor, action, member_id, mrn, detail FROM mpi_history WHERE golden_id = $1 ORDER BY id`, [golden.mergedInto ?? golden.id]);
        write(`${JSON.stringify({ ...golden, history: history.rows }, null, 2)}\n`);
        return 0;
      }
      case 'train': {
        const stored = await trainStoredModel(db);
        write(`${JSON.stringify({ version: stored.version, trainedAt: stored.trainedAt, trainedOn: stored.model.trainedOn, priorLog2: stored.model.priorLog2 })}\n`);
        // New and changed sources are matched with it at once; existing links only by a rematch.
        process.stderr.write(`model version ${stored.version} stored; apply it to existing links: yilian mpi rematch --dry-run, then yilian mpi rematch\n`);
        return 0;
      }
      case 'rematch': {
        const batch = options.batch === undefined ? undefined : Number(options.batch);
        if (batch !== undefined && (!Number.isInteger(batch) || batch < 1 || batch > 10_000)) throw new HubError('invalid', `--batch must be a whole number from 1 to 10000, not ${options.batch}`);
        // Sources not matched yet first: the rematch re-decides the index, it does not fill it.
        await syncPatientIndex(db, { actor: 'cli' });
        const report = await rematchPatientIndex(db, { dryRun: options['dry-run'], batch, actor: options.actor ?? 'rematch' });
        write(options.json ? `${JSON.stringify(report)}\n` : rematchText(report));
        return 0;
      }
      case 'stats': {
        const stats = await patientIndexStats(db);
        write(options.json ? `${JSON.stringify(stats)}\n` : statsText(stats));
        return 0;
      }
      default:
        throw new HubError('invalid', `unknown mpi command ${sub ?? ''} (sync, export, review, decide, show, train, rematch, stats)`, 'mpi');
    }
  } finally {
    await db.close();
  }
}

function modelText(m: { version: number; builtIn: boolean; trainedAt: string | null }): string {
  return m.builtIn ? 'built-in (no model stored: yilian mpi train)' : `version ${m.version}, trained ${m.trainedAt}`;
}

function rematchText(r: RematchReport): string {
  const lines = [
    `${r.dryRun ? 'dry run (nothing changed)' : 'applied'}: model ${modelText(r.model)}`,
    `sources looked at ${r.sources}; kept as decided: ${r.kept.manual} manual, ${r.kept.memberMerge} member merges`,
    `links made ${r.made}, broken ${r.broken}; golden patients split ${r.split}, joined ${r.joined}`,
    `sent to review ${r.review.sent}, out of review ${r.review.left}`,
  ];
  if (r.changes.length) lines.push('changes (sample): member|mrn  golden before → after', ...r.changes.map((c) => `  ${c.source}  ${c.before ?? '-'} → ${c.after ?? '-'}  (${c.change})`));
  if (r.reviewChanges.length) lines.push('review items (sample):', ...r.reviewChanges.map((c) => `  ${c.source}  ${c.golden}  ${c.change}`));
  return `${lines.join('\n')}\n`;
}

function statsText(s: PatientIndexStats): string {
  const links = Object.entries(s.links).map(([state, modes]) => `${state} ${Object.entries(modes).map(([mode, n]) => `${mode.toLowerCase()} ${n}`).join(', ') || '0'}`);
  return [
    `golden patients: active ${s.golden.active}, merged ${s.golden.merged}, empty ${s.golden.empty}`,
    `sources: ${s.sources.indexed} in the index, ${s.sources.notInIndex} not matched yet`,
    `links: ${links.join('; ')}`,
    `in review: ${s.review.records} records (${(s.review.share * 100).toFixed(2)} % of sources), ${s.review.items} items`,
    `model: ${modelText(s.model)}${s.model.builtIn ? '' : `, on ${s.model.trainedOnRecords} records`}`,
    `last rematch: ${s.lastRematch ? `${s.lastRematch.at} with model version ${s.lastRematch.modelVersion}` : 'never'}`,
  ].join('\n') + '\n';
}
