/**
 * `yilian recognition …`: rules, checks and the duplicate report from the command line. Opens only
 * the hub store (no Redis). Who decided a rule is the OS user unless --actor names someone; a check
 * from here is audited like one over HTTP.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig, type HubConfig } from '../hub/config';
import { HubError } from '../mappings/outcome';
import { openStore } from './embeddedStore';
import type { HubDb } from '../hub/sql';
import { recordAudit } from '../hub/audit';
import { parse } from '../api/input';
import { checkRequestSchema, recognitionCheck } from '../hub/recognition/check';
import { duplicateReport } from '../hub/recognition/duplicates';
import { duplicatesCsv, parseRulesMode, parseTimeBound } from '../hub/recognition/format';
import { syncRecognitionIndex } from '../hub/recognition/resultIndex';
import { decideRule, listRules, proposeRule, ruleHistory, setRule, tierSchema } from '../hub/recognition/rules';

export const recognitionUsage = `  recognition rules set --code C --window-days N [--tiers t,…] [--members m,…] [--never|--recognised] [--actor NAME] [--comment T]
                                a new approved version of the rule for one test (LOINC or imaging code), in force now
  recognition rules list [--code C] [--all] [--json] | history --code C
  recognition rules propose --code C … | approve|reject --code C --version N | retire --code C
  recognition check --patient <golden id|system|value> | --patient-member M --mrn X  --code C [--code C…] [--member REQUESTING] [--at ISO] [--json]
  recognition duplicates --format csv|json [--from <date>] [--to <date>] [--member M] [--rules at-time|current]
                                repeats of another member's still-valid result (csv: patient,code,first_member,first_time,repeat_member,repeat_time;
                                times ISO 8601 with the member's UTC offset); --rules current: judged by today's rules (what-if)
  recognition sync [--full]     bring the recognition index up to the stored results`;

async function withDb<T>(config: HubConfig, work: (db: HubDb) => Promise<T>): Promise<T> {
  const db = await openStore(config, 2);
  try {
    return await work(db);
  } finally {
    await db.close();
  }
}

const list = (v: string | undefined) => (v === undefined ? undefined : v.split(',').map((s) => s.trim()).filter(Boolean));

export async function recognitionCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      code: { type: 'string', multiple: true },
      'window-days': { type: 'string' },
      tiers: { type: 'string' },
      members: { type: 'string' },
      never: { type: 'boolean' },
      recognised: { type: 'boolean' },
      actor: { type: 'string' },
      comment: { type: 'string', default: '' },
      version: { type: 'string' },
      all: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      patient: { type: 'string' },
      'patient-member': { type: 'string' },
      mrn: { type: 'string' },
      member: { type: 'string' },
      at: { type: 'string' },
      format: { type: 'string', default: 'csv' },
      from: { type: 'string' },
      to: { type: 'string' },
      full: { type: 'boolean', default: false },
      rules: { type: 'string' },
    },
  });
  const config = loadConfig({ path: values.config });
  const actor = values.actor ?? process.env.USER ?? os.userInfo().username;
  const out = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  const [sub, action] = positionals;
  const oneCode = () => {
    const code = values.code?.[0];
    if (!code) throw new HubError('invalid', `recognition ${sub} ${action ?? ''}: --code is required`, 'code');
    return code;
  };
  switch (sub) {
    case 'rules': {
      if (action === 'set' || action === 'propose') {
        const windowDays = values['window-days'] === undefined ? undefined : Number(values['window-days']);
        if (windowDays !== undefined && (!Number.isInteger(windowDays) || windowDays < 0)) throw new HubError('invalid', '--window-days: a whole number of days', 'window-days');
        if (action === 'set' && windowDays === undefined && !values.never && !values.tiers) throw new HubError('invalid', 'recognition rules set: --window-days is required', 'window-days');
        const tiers = list(values.tiers)?.map((t) => parse(tierSchema, t, '--tiers'));
        const change = { code: oneCode(), windowDays, tiers, members: list(values.members), recognised: values.never ? false : values.recognised ? true : undefined };
        const rule = await withDb(config, (db) => (action === 'set' ? setRule(db, change, actor, values.comment) : proposeRule(db, change, actor, values.comment)));
        out(values.json ? JSON.stringify(rule, null, 2) : `${rule.code} version ${rule.version} ${rule.status}: window ${rule.content.windowDays} days, tiers ${rule.content.tiers.join(',')}${rule.content.recognised ? '' : ', never recognised'} (by ${actor})`);
        return 0;
      }
      if (action === 'approve' || action === 'reject' || action === 'retire') {
        const version = values.version ? Number(values.version) : undefined;
        if (action !== 'retire' && !version) throw new HubError('invalid', `recognition rules ${action}: --version is required`, 'version');
        await withDb(config, (db) => decideRule(db, oneCode(), version, action, actor, values.comment, { fourEyes: config.governance.fourEyes }));
        out(`${oneCode()} ${action}d by ${actor}`);
        return 0;
      }
      if (action === 'history') {
        const events = await withDb(config, (db) => ruleHistory(db, oneCode()));
        for (const e of events) out(`${e.at} ${e.actor} ${e.action}${e.version ? ` v${e.version}` : ''}${e.comment ? ` — ${e.comment}` : ''}`);
        return 0;
      }
      if (action === 'list' || action === undefined) {
        const rules = await withDb(config, (db) => listRules(db, { code: values.code?.[0], all: values.all }));
        if (values.json) {
          out(JSON.stringify(rules, null, 2));
          return 0;
        }
        out(`${'code'.padEnd(10)}${'v'.padStart(3)} ${'status'.padEnd(11)}${'window'.padStart(7)}  ${'tiers'.padEnd(28)}${'EQA'.padEnd(5)}display`);
        for (const r of rules)
          out(`${r.code.padEnd(10)}${String(r.version).padStart(3)} ${r.status.padEnd(11)}${(r.content.recognised ? `${r.content.windowDays}d` : 'never').padStart(7)}  ${r.content.tiers.join(',').padEnd(28)}${(r.content.requireAccreditation ? 'yes' : 'no').padEnd(5)}${r.content.display ?? ''}`);
        return 0;
      }
      throw new HubError('invalid', `unknown: recognition rules ${action}`, 'command');
    }
    case 'check': {
      const patient = values['patient-member'] ? { member: values['patient-member'], mrn: values.mrn ?? '' } : values.patient;
      const request = parse(checkRequestSchema, { patient, tests: values.code ?? [], at: values.at, requestingMember: values.member ?? 'cli' }, 'options');
      const answer = await withDb(config, async (db) => {
        await syncRecognitionIndex(db);
        return recognitionCheck(db, config, request, actor);
      });
      if (values.json) {
        out(JSON.stringify(answer, null, 2));
        return 0;
      }
      out(`patient ${answer.patient ?? '(not in the patient index)'} at ${answer.at}, for ${answer.requestingMember}`);
      for (const t of answer.tests) {
        const label = `${typeof t.requested === 'string' ? t.requested : `${t.requested.system ?? t.requested.member ?? ''}|${t.requested.code}`}${t.code && t.code !== t.requested ? ` → ${t.code}` : ''}${t.display ? ` ${t.display}` : ''}`;
        if (t.recognisable.length) {
          for (const r of t.recognisable)
            out(`  ${label}: RECOGNISABLE ${r.value.value ?? ''} ${r.value.unit ?? ''}${r.original.unit !== r.value.unit ? ` (sent ${r.original.value} ${r.original.unit})` : ''} from ${r.member} at ${r.time}, valid until ${r.expires}`);
        } else out(`  ${label}: not recognisable — ${t.reasons.join(', ')}${t.refused.length ? ` (${t.refused.map((x) => `${x.member} ${x.time.slice(0, 10)} ${x.reason}`).join('; ')})` : ''}`);
      }
      return 0;
    }
    case 'duplicates': {
      const format = values.format;
      if (format !== 'csv' && format !== 'json') throw new HubError('invalid', '--format: csv or json', 'format');
      const from = values.from ? parseTimeBound(values.from, 'from') : undefined;
      const to = values.to ? parseTimeBound(values.to, 'to') : undefined;
      // Validated before the store is opened: a bad value is a usage error (exit 2), not a half-run.
      const rules = parseRulesMode(values.rules);
      const report = await withDb(config, async (db) => {
        await syncRecognitionIndex(db);
        const r = await duplicateReport(db, config, { from, to, member: values.member, rules });
        await recordAudit(db, { actor, action: 'export', entityType: 'recognition_duplicates', entityId: `${r.pairs.length} repeats`, detail: { from: values.from ?? null, to: values.to ?? null, rules, via: 'cli' } });
        return r;
      });
      process.stdout.write(format === 'csv' ? duplicatesCsv(report) : `${JSON.stringify(report, null, 2)}\n`);
      return 0;
    }
    case 'sync': {
      const summary = await withDb(config, (db) => syncRecognitionIndex(db, { full: values.full }));
      out(`recognition index: ${summary.resources} resources read, ${summary.rows} rows`);
      return 0;
    }
    default:
      throw new HubError('invalid', `recognition: rules, check, duplicates or sync, not ${sub ?? 'nothing'}`, 'command');
  }
}
