/**
 * The console's JSON API, under /api/ next to the CLI's routes and authenticated the same way (an API
 * key, or a console session: session.ts). The console's pages call only these and the existing
 * routes (POST /api/replay for replay, POST /api/raw-messages/:id/fix for fix and replay). Reads of
 * patient data write audit events (hub/audit.ts).
 */
import express, { type Request } from 'express';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { recordAudit, recordAuditForPatients } from '../../hub/audit';
import { HubError } from '../../mappings/outcome';
import { hasScope, requireAnyScope, requireScope } from '../auth';
import { channelOverview } from '../../hub/console/channels';
import { deadLetters, messageDetail, searchAudit, searchMessages } from '../../hub/console/messages';
import { idParam, parse } from '../input';
import { LAG_WARNING_SECONDS, pipelineLag } from '../../pipeline/status';

const text = z.string().trim().min(1).max(200).optional();
const time = z.iso.datetime({ offset: true, local: true }).transform((t) => new Date(t)).optional();
const limit = z.coerce.number().int().min(1).max(500).default(100);
const before = z.coerce.number().int().positive().optional();

const messageQuery = z
  .object({
    member: text,
    channel: text,
    controlId: text,
    patient: text,
    type: z.string().trim().regex(/^[A-Z0-9]{1,3}(\^[A-Z0-9]{0,3})?(\^[A-Z0-9_]*)?$/, 'a message type such as ADT or ADT^A01').optional(),
    status: z.enum(['queued', 'processed', 'quarantined', 'failed', 'fixed']).optional(),
    from: time,
    to: time,
    before,
    limit,
  })
  .strict();

const deadLetterQuery = z.object({ member: text, channel: text, stage: text, code: text, limit }).strict();

const auditQuery = z
  .object({
    actor: text,
    patient: text,
    action: z.enum(['read', 'search', 'replay', 'export', 'fix']).optional(),
    entityType: text,
    from: time,
    to: time,
    before,
    limit,
  })
  .strict();

/** Empty query fields (a form submitted with blanks) mean "no filter". */
function nonEmpty(query: Request['query']): Record<string, unknown> {
  return Object.fromEntries(Object.entries(query).filter(([, v]) => v !== ''));
}

export function consoleApi(runtime: ApiContext): express.Router {
  const router = express.Router();

  // Who am I, and what may I do: the pages show only the actions the API will accept.
  router.get('/api/session', (req, res) => {
    const scopes = req.principal!.scopes;
    res.json({
      name: req.principal!.name,
      scopes,
      can: {
        replay: hasScope(scopes, 'integration'),
        fix: hasScope(scopes, 'integration'),
        readMessages: hasScope(scopes, 'integration', 'patient.read'),
        readAudit: hasScope(scopes),
        proposeMappings: hasScope(scopes, 'integration', 'governance'),
        decideMappings: hasScope(scopes, 'governance'),
        decideMatches: hasScope(scopes, 'governance'),
      },
    });
  });

  router.get('/api/channels', requireAnyScope('integration', 'metrics'), async (_req, res) => {
    // The pipeline's lag beside the channels: what was ACKed and still waits (pipeline/status.ts).
    const [items, lag] = await Promise.all([channelOverview(runtime.db, runtime.config), pipelineLag(runtime.db)]);
    res.json({ items, pipeline: { ...lag, warnAfterSeconds: LAG_WARNING_SECONDS }, generatedAt: new Date().toISOString() });
  });

  router.get('/api/messages', requireAnyScope('integration', 'patient.read'), async (req, res) => {
    const q = parse(messageQuery, nonEmpty(req.query), 'query');
    const items = await searchMessages(runtime.db, q);
    // Every item names its patient (patient_key: member|MRN): any search is reading those patients'
    // data, recorded once per patient listed (once without a patient when the page lists none).
    await recordAuditForPatients(runtime.db, { actor: req.principal!.name, action: 'search', entityType: 'raw_message', entityId: 'search', detail: { filter: req.query, found: items.length } }, items.map((m) => m.patient_key as string | null));
    res.json({ items });
  });

  router.get('/api/messages/:id', requireAnyScope('integration', 'patient.read'), async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    const detail = await messageDetail(runtime.db, id);
    if (!detail) throw new HubError('not-found', `raw message ${id} not found`);
    await recordAudit(runtime.db, { actor: req.principal!.name, action: 'read', entityType: 'raw_message', entityId: String(id), patientKey: detail.patient_key, detail: { via: 'console' } });
    res.json(detail);
  });

  // A dead letter's reason quotes the message's text: listing them is reading those patients' data.
  router.get('/api/dead-letters', requireAnyScope('integration', 'patient.read'), async (req, res) => {
    const rows = await deadLetters(runtime.db, parse(deadLetterQuery, nonEmpty(req.query), 'query'));
    await recordAuditForPatients(runtime.db, { actor: req.principal!.name, action: 'search', entityType: 'quarantine', entityId: 'dead-letters', detail: { via: 'console', filter: req.query, found: rows.length } }, rows.map((r) => r.patient_key));
    res.json({ items: rows.map(({ patient_key: _key, ...item }) => item) });
  });

  // The audit trail names patients: reading it is itself audited.
  router.get('/api/audit', requireScope('admin'), async (req, res) => {
    const q = parse(auditQuery, nonEmpty(req.query), 'query');
    const items = await searchAudit(runtime.db, q);
    // Once per patient the page names (and the patient searched for, when given as member|MRN).
    await recordAuditForPatients(runtime.db, { actor: req.principal!.name, action: 'search', entityType: 'audit_event', entityId: 'search', detail: { filter: req.query, found: items.length } }, [
      ...items.map((a) => a.patient_key as string | null),
      q.patient?.includes('|') ? q.patient : null,
    ]);
    res.json({ items });
  });

  return router;
}
