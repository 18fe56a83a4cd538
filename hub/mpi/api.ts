/**
 * Review queue over HTTP (the web page comes later): GET /api/mpi/review lists open items with the
 * record and candidate side by side and the score breakdown (scope patient.read, audited per
 * patient); POST /api/mpi/review/decision records a person's link / not-link (scope admin);
 * GET /api/mpi/export returns member,mrn,patient as CSV (scope admin, audited).
 */
import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import type { HubDb } from '../db';
import { requireScope } from '../api/auth';
import { recordAudit } from '../audit';
import { HubError } from '../../pipeline/outcome';
import { decideReview, exportLinks, reviewQueue, syncPatientIndex } from './store';

const decisionBody = z
  .object({
    member: z.string().min(1).max(64),
    mrn: z.string().min(1).max(128),
    goldenId: z.string().min(1).max(64),
    decision: z.enum(['link', 'not-link']),
    reason: z.string().max(2000).optional(),
  })
  .strict();

export function patientIndexRouter(db: HubDb): express.Router {
  const router = express.Router();
  router.get('/review', requireScope('patient.read'), async (req: Request, res: Response) => {
    const limit = Number(req.query.limit ?? 100);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new HubError('invalid', 'query.limit: an integer 1–1000', 'limit');
    await syncPatientIndex(db, { actor: 'api' });
    const items = await reviewQueue(db, limit);
    for (const goldenId of new Set(items.flatMap((i) => [i.goldenId, i.currentGoldenId].filter((g): g is string => !!g)))) {
      await recordAudit(db, { actor: req.principal!.name, action: 'read', entityType: 'mpi_review', entityId: 'queue', patientKey: goldenId });
    }
    res.json({ items });
  });
  router.post('/review/decision', requireScope('admin'), async (req: Request, res: Response) => {
    const parsed = decisionBody.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new HubError('invalid', `body${issue.path.length ? '.' + issue.path.join('.') : ''}: ${issue.message}`, 'body');
    }
    const result = await decideReview(db, { ...parsed.data, actor: req.principal!.name });
    res.json(result);
  });
  router.get('/export', requireScope('admin'), async (req: Request, res: Response) => {
    await syncPatientIndex(db, { actor: 'api' });
    const links = await exportLinks(db);
    await recordAudit(db, { actor: req.principal!.name, action: 'export', entityType: 'mpi_link', entityId: `${links.length} source patients` });
    res.type('text/csv').send(['member,mrn,patient', ...links.map((l) => [l.member, l.mrn, l.patient].map((v) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v)).join(','))].join('\n') + '\n');
  });
  return router;
}
