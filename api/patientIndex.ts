/**
 * Review queue over HTTP (the web page comes later): GET /api/mpi/review lists open items with the
 * record and candidate side by side and the score breakdown (scope patient.read, audited per
 * patient); POST /api/mpi/review/decision records a person's link / not-link (scope governance; admin implies it);
 * GET /api/mpi/patients/:id shows a golden patient with its sources and merge history (patient.read, audited);
 * GET /api/mpi/export returns member,mrn,patient as CSV (scope admin, audited).
 * POST /api/mpi/rematch `{dryRun?, batch?}` applies the active model to the existing links and answers
 * the diff (scope admin; audited per golden patient its sample names): `yilian mpi rematch` over HTTP.
 * GET /api/mpi/stats: the index in figures, no patient data (scope governance; admin implies it).
 */
import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import type { HubDb } from '../hub/sql';
import { requireScope } from './auth';
import { intParam, parse } from './input';
import { recordAudit, recordAuditForPatients } from '../hub/audit';
import { HubError } from '../mappings/outcome';
import { decideReview, exportLinks, goldenPatient, reviewQueue } from '../hub/mpi/review';
import { syncPatientIndex } from '../hub/mpi/sync';
import { rematchPatientIndex } from '../hub/mpi/rematch';
import { patientIndexStats } from '../hub/mpi/stats';

const decisionBody = z
  .object({
    member: z.string().min(1).max(64),
    mrn: z.string().min(1).max(128),
    goldenId: z.string().min(1).max(64),
    decision: z.enum(['link', 'not-link']),
    reason: z.string().max(2000).optional(),
  })
  .strict();

const rematchBody = z
  .object({
    dryRun: z.boolean().optional(),
    batch: z.number().int().min(1).max(10_000).optional(),
  })
  .strict();

export function patientIndexRouter(db: HubDb): express.Router {
  const router = express.Router();
  router.get('/review', requireScope('patient.read'), async (req: Request, res: Response) => {
    const limit = intParam(req.query.limit, 'limit', 1, 1000, 100);
    await syncPatientIndex(db, { actor: 'api' });
    const items = await reviewQueue(db, limit);
    for (const goldenId of new Set(items.flatMap((i) => [i.goldenId, i.currentGoldenId].filter((g): g is string => !!g)))) {
      await recordAudit(db, { actor: req.principal!.name, action: 'read', entityType: 'mpi_review', entityId: 'queue', patientKey: goldenId });
    }
    res.json({ items });
  });
  router.post('/review/decision', requireScope('governance'), async (req: Request, res: Response) => {
    const result = await decideReview(db, { ...parse(decisionBody, req.body, 'body'), actor: req.principal!.name });
    res.json(result);
  });
  // A golden patient with its sources and merge history (what `yilian mpi show` prints): patient data, audited.
  router.get('/patients/:id', requireScope('patient.read'), async (req: Request, res: Response) => {
    const { id } = parse(z.object({ id: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a golden patient id') }), req.params, 'path');
    const golden = await goldenPatient(db, id);
    if (!golden) throw new HubError('not-found', `no golden patient ${id}`);
    const history = await db.query(`SELECT at, actor, action, member_id, mrn, detail FROM mpi_history WHERE golden_id = $1 ORDER BY id`, [golden.mergedInto ?? golden.id]);
    await recordAudit(db, { actor: req.principal!.name, action: 'read', entityType: 'mpi_golden', entityId: golden.id, patientKey: golden.mergedInto ?? golden.id });
    res.json({ ...golden, history: history.rows });
  });
  router.get('/export', requireScope('admin'), async (req: Request, res: Response) => {
    await syncPatientIndex(db, { actor: 'api' });
    const links = await exportLinks(db);
    await recordAudit(db, { actor: req.principal!.name, action: 'export', entityType: 'mpi_link', entityId: `${links.length} source patients` });
    res.type('text/csv').send(['member,mrn,patient', ...links.map((l) => [l.member, l.mrn, l.patient].map((v) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v)).join(','))].join('\n') + '\n');
  });
  router.post('/rematch', requireScope('admin'), async (req: Request, res: Response) => {
    const body = parse(rematchBody, req.body ?? {}, 'body');
    // Sources not matched yet first (as the CLI): a rematch re-decides the index, it does not fill it.
    await syncPatientIndex(db, { actor: 'api' });
    const report = await rematchPatientIndex(db, { dryRun: body.dryRun, batch: body.batch, actor: `rematch:${req.principal!.name}` });
    const named = [...report.changes.flatMap((c) => [c.before, c.after]), ...report.reviewChanges.map((c) => c.golden)];
    await recordAuditForPatients(db, { actor: req.principal!.name, action: 'read', entityType: 'mpi_rematch', entityId: report.dryRun ? 'dry run' : 'applied' }, named);
    res.json(report);
  });
  router.get('/stats', requireScope('governance'), async (_req: Request, res: Response) => {
    res.json(await patientIndexStats(db));
  });
  return router;
}
