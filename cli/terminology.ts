/**
 * `yilian translate` and `yilian mappings …`: the terminology service from the command line. Only
 * the hub store is opened (no Redis): configured PostgreSQL, or the embedded PGlite in dataDir.
 * `translate` without a configured database uses the shipped maps and opens nothing.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig, type HubConfig } from '../hub/config';
import { HubError } from '../mappings/outcome';
import { openStore } from './embeddedStore';
import type { HubDb } from '../hub/sql';
import { buildBaseMaps, buildWhoMap } from '../mappings/terminology/build';
import { configuredWhoMapFiles, useSiteTerminologyFiles } from '../mappings/terminology/codeSystems';
import { readTranslateRequest, translateRequest, translationParameters } from '../mappings/terminology/operations';

import { suggest } from '../mappings/terminology/suggest';
import { CONCEPT_MAP_BASE } from '../mappings/terminology/systems';
import type { EQUIVALENCES } from '../mappings/terminology/conceptmap';
import { activeTerminology } from '../hub/terminology/active';
import { currentEntries, diffVersions, exportConceptMaps, importConceptMaps, mapHistory, syncTerminology } from '../hub/terminology/versions';
import { approve, listProposals, propose, reject, retire } from '../hub/terminology/workflow';
import { formatImpact, impactOfProposal } from '../hub/terminology/impact';
import { createReprocessJob, reprocessProposal, runReprocess } from '../hub/terminology/reprocess';
import { coverage, unitMismatches, worklist, type UnitMismatch } from '../hub/terminology/worklist';

export const terminologyUsage = `  translate --system URI --code CODE [--target URI] [--reverse]
                                print the FHIR Parameters of $translate (approved maps in the configured store; else the shipped maps);
                                --reverse: the source codes that map to CODE (R4 reverse; --target then names their system)
  mappings import [--by NAME] [--comment TEXT] <ConceptMap.json…>
                                load ConceptMaps as approved versions, recording who imported them (default: the OS user)
  mappings export [--dir DIR]   write the approved ConceptMaps as JSON files (default ./conceptmaps)
  mappings build [--who FILE] [--who-multiple FILE] [--dir DIR] [--import [--by NAME]]
                                rebuild the base maps: WHO ICD-10 → ICD-11 from the release files (default: terminology.whoMapOneCategory /
                                whoMapMultipleCategories in the config, else the seed extract); --import loads the WHO map as a new approved version
  mappings worklist [--member M] [--json]      the unmapped worklist, then the approved maps whose units do not fit the target
                                (GLU arrives in mmol/L; 2345-7 is a mass concentration)
  mappings coverage [--member M] [--from D] [--to D] [--json]
                                % of occurrences and of distinct codes mapped per member, channel and system, the daily trend,
                                and the unit mismatches of approved maps
  mappings suggest --member M --system URI --code C [--display TEXT]
  mappings propose --system URI --code C --target URI --target-code C [--equivalence E] [--comment T] [--by NAME]
  mappings proposals [--state S] | approve|reject|retire <id> [--comment T] [--by NAME]
  mappings impact <id> [--json] dry run: which stored records the proposal would change, records × elements, and per sampled
                                record each element's before → after as code + display; --json: the report with the raw field diff
  mappings reprocess <id> | --system URI --code C
                                re-derive the affected stored records (idempotent; resumes a stopped job with --job N)
  mappings history <map-id> | diff <map-id> --from N --to N
  mappings entries <map-url-or-id> [--json]
                                the map's entries in force: source → target, the version each took its form in, who approved it and when`;

const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

/** The unit-fit flags as the committee reads them: one line per source code, target and unit. */
function printUnitMismatches(items: UnitMismatch[]): void {
  if (items.length === 0) return;
  process.stdout.write(`\nunit mismatches of approved maps (${items.length})\n`);
  for (const m of items) {
    process.stdout.write(`${`${m.count}/${m.total}`.padStart(13)}  ${m.member ?? ''}  ${m.system}#${m.code} → ${m.target}  ${m.message}${m.proposalId ? `  (proposal ${m.proposalId})` : ''}\n`);
  }
}

async function withDb<T>(config: HubConfig, work: (db: HubDb) => Promise<T>): Promise<T> {
  const db = await openStore(config, 2);
  try {
    await syncTerminology(db);
    return await work(db);
  } finally {
    await db.close();
  }
}

export async function terminologyCommand(command: 'translate' | 'mappings', argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      system: { type: 'string' },
      code: { type: 'string' },
      target: { type: 'string' },
      'target-code': { type: 'string' },
      display: { type: 'string' },
      equivalence: { type: 'string', default: 'equivalent' },
      member: { type: 'string' },
      by: { type: 'string' },
      comment: { type: 'string', default: '' },
      dir: { type: 'string' },
      who: { type: 'string' },
      'who-multiple': { type: 'string' },
      import: { type: 'boolean', default: false },
      state: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      job: { type: 'string' },
      json: { type: 'boolean', default: false },
      reverse: { type: 'boolean', default: false },
    },
  });
  const config = loadConfig({ path: values.config });
  useSiteTerminologyFiles(config.terminology);
  const actor = values.by ?? process.env.USER ?? os.userInfo().username;
  if (command === 'translate') {
    const request = readTranslateRequest({ query: { system: values.system, code: values.code, targetsystem: values.target, ...(values.reverse ? { reverse: 'true' } : {}) } as Record<string, unknown> });
    const terminology = config.databaseUrl ? await withDb(config, (db) => syncTerminology(db)) : activeTerminology();
    print(translationParameters(translateRequest(terminology, request)));
    return 0;
  }
  const [sub, ...args] = positionals;
  const id = () => {
    const n = Number(args[0]);
    if (!Number.isInteger(n) || n <= 0) throw new HubError('invalid', `mappings ${sub} needs a proposal id`, 'id');
    return n;
  };
  switch (sub) {
    case 'build': {
      const configured = configuredWhoMapFiles();
      const whoTable = values.who ?? configured.oneCategory;
      const whoMultiple = values['who-multiple'] ?? configured.multipleCategories;
      if (values.import) {
        if (!whoTable) throw new HubError('invalid', 'mappings build --import needs the WHO release files: --who FILE, or terminology.whoMapOneCategory in the hub config', 'who');
        const map = buildWhoMap({ whoTable, whoMultiple });
        const [result] = await withDb(config, (db) => importConceptMaps(db, [map], actor, values.comment || map.description || ''));
        process.stdout.write(`${result!.url} ${result!.unchanged ? `unchanged (version ${result!.version})` : `→ version ${result!.version}`} (by ${actor}; ${map.group[0]!.element.length} ICD-10 codes)\n`);
        return 0;
      }
      for (const file of buildBaseMaps({ whoTable, whoMultiple, outDir: values.dir })) process.stdout.write(`${file}\n`);
      return 0;
    }
    case 'import': {
      if (args.length === 0) throw new HubError('invalid', 'mappings import needs at least one ConceptMap file', 'files');
      const maps = args.flatMap((file) => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(readFileSync(file, 'utf8'));
        } catch (error) {
          throw new HubError('invalid', `${file}: ${(error as Error).message}`, file);
        }
        return Array.isArray(parsed) ? parsed : [parsed];
      });
      const results = await withDb(config, (db) => importConceptMaps(db, maps, actor, values.comment));
      for (const r of results) process.stdout.write(`${r.url} ${r.unchanged ? `unchanged (version ${r.version})` : `→ version ${r.version}`} (by ${actor})\n`);
      return 0;
    }
    case 'export': {
      const files = await withDb(config, (db) => exportConceptMaps(db, values.dir ?? 'conceptmaps'));
      for (const f of files) process.stdout.write(`${f}\n`);
      return 0;
    }
    case 'worklist': {
      const [items, mismatches] = await withDb(config, async (db) => [await worklist(db, { member: values.member, state: values.state as 'open' | 'resolved' | undefined }), await unitMismatches(db, { member: values.member })] as const);
      // --json: the same shape as GET /api/terminology/worklist.
      if (values.json) print({ items, unitMismatches: mismatches });
      else {
        for (const w of items as Array<Record<string, unknown>>) process.stdout.write(`${String(w.count).padStart(8)}  ${w.member}  ${w.system}#${w.code}  ${w.display ?? ''}  (last ${(w.last_seen as Date).toISOString()}, raw ${w.example_raw_id})\n`);
        printUnitMismatches(mismatches);
      }
      return 0;
    }
    case 'coverage': {
      const report = await withDb(config, (db) => coverage(db, { member: values.member, from: values.from, to: values.to }));
      if (values.json) print(report);
      else {
        process.stdout.write(`${'member/channel'.padEnd(24)} ${'system'.padEnd(40)} ${'occurrences'.padStart(11)} ${'mapped %'.padStart(8)} ${'codes'.padStart(6)} ${'mapped %'.padStart(8)}\n`);
        for (const r of report.rows) process.stdout.write(`${`${r.member}/${r.channel}`.padEnd(24)} ${r.system.padEnd(40)} ${String(r.occurrences).padStart(11)} ${r.occurrencePct.toFixed(1).padStart(8)} ${String(r.distinctCodes).padStart(6)} ${r.distinctPct.toFixed(1).padStart(8)}\n`);
        // The trend: one line per day, so a committee sees coverage move as maps are approved.
        process.stdout.write(`\ntrend\n${'day'.padEnd(12)} ${'occurrences'.padStart(11)} ${'mapped %'.padStart(8)}\n`);
        for (const d of report.trend) process.stdout.write(`${d.day.padEnd(12)} ${String(d.occurrences).padStart(11)} ${d.occurrencePct.toFixed(1).padStart(8)}\n`);
        printUnitMismatches(report.unitMismatches);
      }
      return 0;
    }
    case 'suggest': {
      if (!values.member || !values.system || !values.code) throw new HubError('invalid', 'mappings suggest needs --member, --system and --code', 'args');
      const items = await withDb(config, async (db) => suggest(await syncTerminology(db), { memberId: values.member!, system: values.system!, code: values.code!, display: values.display }));
      print(items);
      return 0;
    }
    case 'propose': {
      if (!values.system || !values.code || !values.target) throw new HubError('invalid', 'mappings propose needs --system, --code and --target (and --target-code)', 'args');
      const proposal = await withDb(config, (db) =>
        propose(db, { sourceSystem: values.system!, sourceCode: values.code!, sourceDisplay: values.display, targetSystem: values.target!, targetCode: values['target-code'], equivalence: values.equivalence as (typeof EQUIVALENCES)[number], comment: values.comment }, actor),
      );
      print(proposal);
      return 0;
    }
    case 'proposals':
      print(await withDb(config, (db) => listProposals(db, values.state)));
      return 0;
    case 'approve': {
      const approved = await withDb(config, (db) => approve(db, id(), actor, values.comment, { fourEyes: config.governance?.fourEyes ?? true }));
      // Approved all the same: the warning is for the committee to consider the other code of the pair.
      for (const w of approved.warnings) process.stderr.write(`warning: ${w}\n`);
      print(approved);
      return 0;
    }
    case 'reject':
      print(await withDb(config, (db) => reject(db, id(), actor, values.comment)));
      return 0;
    case 'retire':
      print(await withDb(config, (db) => retire(db, id(), actor, values.comment)));
      return 0;
    case 'impact': {
      const report = await withDb(config, (db) => impactOfProposal(db, id(), actor));
      // Readable by default (what the committee reads in the console); --json: the report with its raw diff.
      if (values.json) print(report);
      else process.stdout.write(formatImpact(report, (member) => config.members.find((m) => m.id === member)?.name ?? member));
      return 0;
    }
    case 'reprocess': {
      const job = await withDb(config, async (db) => {
        const created = values.job
          ? { id: Number(values.job) }
          : args[0]
            ? await reprocessProposal(db, id(), actor)
            : await createReprocessJob(db, [{ system: values.system ?? '', code: values.code ?? '' }].filter((c) => c.system && c.code), actor, values.comment);
        return runReprocess(db, created.id, { onProgress: (j) => process.stderr.write(`reprocess ${j.id}: ${j.done}/${j.total} (${j.changed} changed)\n`) });
      });
      print(job);
      return 0;
    }
    case 'entries': {
      if (!args[0]) throw new HubError('invalid', 'mappings entries needs a map url or id', 'map');
      const current = await withDb(config, (db) => currentEntries(db, args[0]!));
      if (values.json) print(current);
      else {
        process.stdout.write(`${current.url} version ${current.version}: ${current.entries.length} entries (history: yilian mappings history ${current.id})\n`);
        for (const e of current.entries) {
          const source = `${e.sourceSystem}#${e.sourceCode}${e.sourceDisplay ? ` ${e.sourceDisplay}` : ''}`;
          const target = `${e.targetSystem}#${e.targetCode ?? '—'}${e.targetDisplay ? ` ${e.targetDisplay}` : ''}`;
          process.stdout.write(`${source} → ${target} (${e.equivalence})  v${e.version} ${e.origin} by ${e.approvedBy} ${e.approvedAt.toISOString()}${e.proposalId ? ` (proposal ${e.proposalId})` : ''}\n`);
        }
      }
      return 0;
    }
    case 'history':
      if (!args[0]) throw new HubError('invalid', 'mappings history needs a map id', 'id');
      print(await withDb(config, (db) => mapHistory(db, `${CONCEPT_MAP_BASE}/${args[0]}`)));
      return 0;
    case 'diff':
      if (!args[0] || !values.from || !values.to) throw new HubError('invalid', 'mappings diff needs a map id, --from and --to', 'args');
      print(await withDb(config, (db) => diffVersions(db, `${CONCEPT_MAP_BASE}/${args[0]}`, Number(values.from), Number(values.to))));
      return 0;
    default:
      throw new HubError('invalid', `unknown mappings command ${sub ?? '(none)'}`, 'command');
  }
}
