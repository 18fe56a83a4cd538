/**
 * HTTP routes of mutual recognition, mounted by api/server.ts behind the API-key / console
 * authentication. POST /recognition/check needs `patient.read` (it reads patient data; audited in
 * check.ts). The duplicate report lists golden patient ids, so it needs `patient.read` or
 * `governance` and is audited as an export. Rules: reading needs any of `governance`,
 * `integration`, `patient.read`; setting, proposing and deciding need `governance` (admin implies
 * all). Inputs are zod-validated; errors are the server's `{code, message}`.
 */
import express from 'express';
import { z } from 'zod';
import type { ApiContext } from './context';
import { requireAnyScope, requireScope } from './auth';
import { parse } from './input';
import { recordAudit } from '../hub/audit';
import { HubError } from '../mappings/outcome';
import { checkRequestSchema, recognitionCheck } from '../hub/recognition/check';
import { duplicateReport, RULES_MODES, type RulesMode } from '../hub/recognition/duplicates';
import { duplicatesCsv, parseTimeBound } from '../hub/recognition/format';
import { syncRecognitionIndex } from '../hub/recognition/resultIndex';
import { decideRule, listRules, proposeRule, ruleHistory, setRule, tierSchema } from '../hub/recognition/rules';


const duplicatesQuery = z
  .object({
    from: z.string().max(40).optional(),
    to: z.string().max(40).optional(),
    member: z.string().min(1).max(64).optional(),
    format: z.enum(['json', 'csv']).default('json'),
    /** at-time: the rules in force when each result was produced; current: what-if, today's rules over all time. */
    rules: z.enum(RULES_MODES as [RulesMode, ...RulesMode[]]).default('at-time'),
  })
  .strict();

const ruleBody = z
  .object({
    code: z.string().min(1).max(64),
    windowDays: z.number().int().min(0).max(3650).optional(),
    tiers: z.array(tierSchema).optional(),
    members: z.array(z.string().min(1).max(64)).optional(),
    recognised: z.boolean().optional(),
    requireAccreditation: z.boolean().optional(),
    display: z.string().max(256).optional(),
    kind: z.enum(['lab', 'imaging']).optional(),
    comment: z.string().max(2000).default(''),
    /** set: approved and in force now; propose: waits for a decision. */
    mode: z.enum(['set', 'propose']).default('set'),
  })
  .strict();
const ruleParams = z.object({ code: z.string().min(1).max(64), version: z.coerce.number().int().positive().optional(), decision: z.enum(['approve', 'reject', 'retire']) });
const decisionBody = z.object({ comment: z.string().max(2000).default('') }).strict();

/** Index sync before a check, at most once a second per process (the background sync does the rest). */
let lastSync = 0;
async function freshIndex(runtime: ApiContext): Promise<void> {
  if (Date.now() - lastSync < 1000) return;
  lastSync = Date.now();
  await syncRecognitionIndex(runtime.db);
}

export function recognitionRouter(runtime: ApiContext): express.Router {
  const router = express.Router();
  const { db, config } = runtime;

  router.post('/recognition/check', requireScope('patient.read'), async (req, res) => {
    const body = parse(checkRequestSchema, req.body, 'body');
    await freshIndex(runtime);
    res.json(await recognitionCheck(db, config, body, req.principal!.name));
  });

  router.get('/recognition/duplicates', requireAnyScope('patient.read', 'governance'), async (req, res) => {
    const q = parse(duplicatesQuery, req.query, 'query');
    const from = q.from ? parseTimeBound(q.from, 'from') : undefined;
    const to = q.to ? parseTimeBound(q.to, 'to') : undefined;
    await freshIndex(runtime);
    const report = await duplicateReport(db, config, { from, to, member: q.member, rules: q.rules });
    await recordAudit(db, { actor: req.principal!.name, action: 'export', entityType: 'recognition_duplicates', entityId: `${report.pairs.length} repeats`, detail: { from: q.from ?? null, to: q.to ?? null, member: q.member ?? null, rules: q.rules } });
    if (q.format === 'csv') return res.type('text/csv').send(duplicatesCsv(report));
    res.json(report);
  });

  router.get('/recognition/rules', requireAnyScope('governance', 'integration', 'patient.read'), async (req, res) => {
    const q = parse(z.object({ code: z.string().min(1).max(64).optional(), all: z.enum(['true', 'false']).optional() }).strict(), req.query, 'query');
    res.json({ rules: await listRules(db, { code: q.code, all: q.all === 'true' }) });
  });

  router.get('/recognition/rules/:code/history', requireAnyScope('governance', 'integration'), async (req, res) => {
    const { code } = parse(z.object({ code: z.string().min(1).max(64) }), req.params, 'path');
    res.json({ code, events: await ruleHistory(db, code) });
  });

  router.post('/recognition/rules', requireScope('governance'), async (req, res) => {
    const { comment, mode, ...change } = parse(ruleBody, req.body, 'body');
    const rule = mode === 'set' ? await setRule(db, change, req.principal!.name, comment) : await proposeRule(db, change, req.principal!.name, comment);
    res.status(201).json(rule);
  });

  router.post('/recognition/rules/:code/:decision', requireScope('governance'), async (req, res) => {
    const p = parse(ruleParams, { ...req.params, version: req.query.version }, 'path');
    const { comment } = parse(decisionBody, req.body ?? {}, 'body');
    if (p.decision !== 'retire' && !p.version) throw new HubError('invalid', 'query.version: required to approve or reject', 'version');
    await decideRule(db, p.code, p.version, p.decision, req.principal!.name, comment, { fourEyes: config.governance.fourEyes });
    res.json({ rules: await listRules(db, { code: p.code, all: true }) });
  });

  return router;
}
