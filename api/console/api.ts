/**
 * The console's JSON API, under /api/ next to the CLI's routes and authenticated the same way (an API
 * key, or a console session: session.ts). The console's pages call only these and the existing
 * routes (POST /api/replay for replay, POST /api/raw-messages/:id/fix for fix and replay). Reads of
 * patient data write audit events (hub/audit.ts).
 */
import express, { type Request } from 'express';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { recordAudit } from '../../hub/audit';
import { HubError } from '../../mappings/outcome';
import { hasScope, requireAnyScope, requireScope } from '../auth';
import { channelOverview } from '../../hub/console/channels';
import { deadLetters, messageDetail, searchAudit, searchMessages } from '../../hub/console/messages';
import { idParam, parse } from '../input';

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
    res.json({ items: await channelOverview(runtime.db, runtime.config), generatedAt: new Date().toISOString() });
  });

  router.get('/api/messages', requireAnyScope('integration', 'patient.read'), async (req, res) => {
    const q = parse(messageQuery, nonEmpty(req.query), 'query');
    const items = await searchMessages(runtime.db, q);
    // A search by patient tells which messages a patient has: that is reading the patient's data,
    // recorded once per patient found (a bare MRN may match the same number at several members).
    if (q.patient) {
      const keys = [...new Set(items.map((m) => m.patient_key as string | null).filter((k): k is string => !!k))];
      for (const patientKey of keys.length ? keys : [null]) {
        await recordAudit(runtime.db, { actor: req.principal!.name, action: 'search', entityType: 'raw_message', entityId: 'search', patientKey, detail: { filter: req.query, found: items.length } });
      }
    }
    res.json({ items });
  });

  router.get('/api/messages/:id', requireAnyScope('integration', 'patient.read'), async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    const detail = await messageDetail(runtime.db, id);
    if (!detail) throw new HubError('not-found', `raw message ${id} not found`);
    await recordAudit(runtime.db, { actor: req.principal!.name, action: 'read', entityType: 'raw_message', entityId: String(id), patientKey: detail.patient_key, detail: { via: 'console' } });
    res.json(detail);
  });

  router.get('/api/dead-letters', requireAnyScope('integration', 'patient.read'), async (req, res) => {
    res.json({ items: await deadLetters(runtime.db, parse(deadLetterQuery, nonEmpty(req.query), 'query')) });
  });

  // The audit trail names patients: reading it is itself audited.
  router.get('/api/audit', requireScope('admin'), async (req, res) => {
    const q = parse(auditQuery, nonEmpty(req.query), 'query');
    const items = await searchAudit(runtime.db, q);
    await recordAudit(runtime.db, { actor: req.principal!.name, action: 'search', entityType: 'audit_event', entityId: 'search', patientKey: q.patient?.includes('|') ? q.patient : null, detail: { filter: req.query, found: items.length } });
    res.json({ items });
  });

  return router;
}
