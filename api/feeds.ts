/**
 * HTTP routes of the cost feed and the alliance KPIs. Owns: `GET /feeds/cost` (cursor pages),
 * `GET /feeds/cost/export` (NDJSON or CSV for a time range, streamed), `GET /feeds/cost/schema`
 * (the published JSON Schema) — scope `feed.read`, the only scope a cost system's key needs and the
 * only thing it opens — and `GET /api/kpi` (aggregates only; integration, governance or metrics).
 * Every feed read is audited (pseudonymous, but it is still about patients).
 */
import express from 'express';
import { z } from 'zod';
import type { ApiContext } from './context';
import { requireAnyScope, requireScope } from './auth';
import { parse } from './input';
import { recordAudit } from '../hub/audit';
import { HubError } from '../mappings/outcome';
import { costEventCsvColumns, costEventCsvRow, costEventJsonSchema, type CostEvent } from '../hub/feeds/costEvents';
import { computeKpis, defaultRange } from '../hub/feeds/kpi';
import { exportEvents, readPage } from '../hub/feeds/read';

const pageQuery = z
  .object({
    after: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  })
  .strict();

const instant = z.union([z.iso.date(), z.iso.datetime({ offset: true })]).transform((v) => new Date(v.length === 10 ? `${v}T00:00:00Z` : v));

const exportQuery = z
  .object({
    from: instant.optional(),
    to: instant.optional(),
    format: z.enum(['ndjson', 'csv']).default('ndjson'),
  })
  .strict();

const month = z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'a month YYYY-MM');
const kpiQuery = z
  .object({
    from: month.optional(),
    to: month.optional(),
    member: z.string().min(1).max(64).optional(),
    // The dashboard's toggle: duplicates judged by the rules in force at the time (default) or by today's.
    rules: z.enum(['at-time', 'current']).default('at-time'),
  })
  .strict()
  .transform((q) => {
    const d = defaultRange();
    const to = q.to ?? (q.from && q.from > d.to ? q.from : d.to);
    return { from: q.from ?? (to < d.from ? to : d.from), to, member: q.member, rules: q.rules };
  })
  .refine((q) => q.from <= q.to, { message: 'from must not be after to' });

export function costFeedRouter(runtime: ApiContext): express.Router {
  const router = express.Router();

  router.get('/feeds/cost', requireScope('feed.read'), async (req, res) => {
    const q = parse(pageQuery, req.query, 'query');
    const page = await readPage(runtime.db, q.after, q.limit);
    await recordAudit(runtime.db, { actor: req.principal!.name, action: 'read', entityType: 'cost_event', entityId: `${q.after}..${page.next}`, detail: { events: page.events.length } });
    res.type('application/json').send(`{"events":[${page.events.join(',')}],"next":${page.next}}`);
  });

  router.get('/feeds/cost/schema', requireScope('feed.read'), (_req, res) => {
    res.type('application/schema+json').send(JSON.stringify(costEventJsonSchema(), null, 2));
  });

  router.get('/feeds/cost/export', requireScope('feed.read'), async (req, res) => {
    const q = parse(exportQuery, req.query, 'query');
    if (q.from && q.to && q.from > q.to) throw new HubError('invalid', 'query: from must not be after to', 'query');
    await recordAudit(runtime.db, { actor: req.principal!.name, action: 'export', entityType: 'cost_event', entityId: `${q.from?.toISOString() ?? ''}..${q.to?.toISOString() ?? ''}`, detail: { format: q.format } });
    res.status(200).type(q.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson');
    const write = (text: string) => (res.write(text) ? Promise.resolve() : new Promise<void>((resolve) => res.once('drain', resolve)));
    if (q.format === 'csv') await write(`${costEventCsvColumns.join(',')}\n`);
    try {
      for await (const events of exportEvents(runtime.db, q)) {
        if (res.destroyed) return;
        await write(q.format === 'csv' ? events.map((e) => costEventCsvRow(JSON.parse(e) as CostEvent)).join('\n') + '\n' : events.join('\n') + '\n');
      }
      res.end();
    } catch (error) {
      // Headers are gone: a truncated body is all a client can be told (it sees no final newline).
      res.destroy(error as Error);
    }
  });

  router.get('/api/kpi', requireAnyScope('integration', 'governance', 'metrics'), async (req, res) => {
    const q = parse(kpiQuery, req.query, 'query');
    res.json(await computeKpis(runtime.db, runtime.config, q));
  });

  return router;
}
