/**
 * The hub's HTTP API (express 5). Open: /health and /ready. The FHIR rest-hook endpoint
 * (/fhir/subscription/:member/:channel) authenticates the calling member's server by its channel
 * token. Everything else needs an API key, or an operations-console session (api/console), with the
 * right scope. Every request first passes one check of its path, query and body type
 * (api/sanitise.ts); bodies and queries are then validated with zod (api/input.ts); every error is
 * an OperationOutcome carrying `{code, message}`, a 4xx for the client's mistakes and a 5xx only
 * for ours, never with database text (api/errors.ts). Every answer that carries patient
 * identifiers or message text writes an audit event.
 */
import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import type { ApiContext } from './context';
import { requireScope } from './auth';
import { recordAudit, recordAuditForPatients } from '../hub/audit';
import { hubStatus, refreshPipelineGauges } from '../pipeline/status';
import { replay } from '../pipeline/replay';
import { fixRawMessage } from '../pipeline/fix';
import { fixLinks } from '../hub/rawStore';
import { registry } from '../hub/metrics';
import { HubError } from '../mappings/outcome';
import { timingSafeEqual } from 'node:crypto';
import { hashApiKey } from '../hub/config';
import { FhirIntake } from '../adapters/fhir/store';
import { resourcesOfNotification } from '../adapters/fhir/subscription';
import { fhirMetadataRouter, fhirRouter } from './fhir';
import { patientIndexRouter } from './patientIndex';
import { terminologyRouter } from './terminology';
import { recognitionRouter } from './recognition';
import { mountConsole } from './console';
import { costFeedRouter } from './feeds';
import { idParam, parse } from './input';
import { errorHandler, errorBody, isFhirApiPath, sendClientError, stderrErrorLog, type ErrorLog } from './errors';
import { sanitiseRequest } from './sanitise';
import type { RedisConnection } from '../hub/redis';
import type { Sql } from '../hub/sql';
import { answersWithin, postgresAnswers } from '../hub/probe';

const statusEnum = z.enum(['queued', 'processed', 'quarantined', 'failed']);
/** Statuses a search may ask for; a `fixed` message is never replayed (pipeline/replay.ts), so statusEnum lacks it. */
const searchStatusEnum = z.enum([...statusEnum.options, 'fixed']);

const replayBody = z
  .object({
    rawIds: z.array(z.number().int().positive()).max(100_000).optional(),
    member: z.string().optional(),
    channel: z.string().optional(),
    from: z.iso.datetime({ offset: true }).optional(),
    to: z.iso.datetime({ offset: true }).optional(),
    status: z.array(statusEnum).optional(),
  })
  .strict()
  .refine((b) => b.rawIds?.length || b.member || b.channel || b.from || b.to || b.status, { message: 'give at least one selector' });

const fixBody = z
  .object({
    /** The corrected message; lines (LF or CRLF) are taken as segments. */
    text: z.string().max(4_000_000).refine((t) => t.trim() !== '', 'the corrected text is empty'),
    comment: z.string().trim().min(1, 'a comment is required: say what was wrong and what was changed').max(2000),
  })
  .strict();

const rawSearch = z.object({
  member: z.string().optional(),
  channel: z.string().optional(),
  status: searchStatusEnum.optional(),
  controlId: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  before: z.coerce.number().int().positive().optional(),
});

export interface ApiOptions {
  /** Where error details go (what an answer hides): one JSON object a line on stderr unless given. */
  log?: ErrorLog;
  /** How long /ready waits for each dependency; they are checked side by side. */
  readyCheckMs?: number;
}

async function readiness(db: Sql, redis: RedisConnection, ms: number): Promise<Record<string, string | undefined>> {
  const [postgres, redisDown] = await Promise.all([
    postgresAnswers(db, ms),
    // A client that is not connected would queue the PING until it reconnects (one more queued
    // command per probe while Redis is down): not connected is not ready, answered at once.
    redis.status === 'ready' ? answersWithin(() => redis.ping(), ms) : Promise.resolve(`not connected (${redis.status})`),
  ]);
  return { PostgreSQL: postgres, Redis: redisDown };
}

const isFhirPath = (req: Request) => isFhirApiPath(req.originalUrl);

export function createApi(runtime: ApiContext, options: ApiOptions = {}): express.Express {
  const log = options.log ?? stderrErrorLog;
  const app = express();
  app.disable('x-powered-by');
  // Before anything reads the request: malformed or control-character paths and queries, paging
  // numbers out of range and non-JSON bodies on JSON routes are refused here for every route.
  app.use(sanitiseRequest);
  app.use(express.json({ limit: '2mb' }));

  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Answers within one check bound (checks run side by side), naming what is down. The open
  // endpoint tells which dependency failed, not how: the reason goes to the log.
  app.get('/ready', async (req, res) => {
    const checks = await readiness(runtime.db, runtime.queues.redis, options.readyCheckMs ?? 500);
    const down = Object.entries(checks).filter(([, problem]) => problem !== undefined);
    if (!down.length) return void res.json({ status: 'ready' });
    log({ level: 'warn', path: req.path, notReady: Object.fromEntries(down) });
    const message = `not ready: ${down.map(([name]) => name).join(' and ')} ${down.length > 1 ? 'are' : 'is'} down`;
    res.status(503).json({ ...errorBody({ status: 503, code: 'not-ready', message }, false), down: down.map(([name]) => name) });
  });
  // The capability statement is open, as FHIR clients discover a server before they authenticate.
  app.use('/fhir', fhirMetadataRouter(runtime));

  // FHIR rest-hook push (adapters/fhir/subscription.ts). Authenticated per member and channel by the
  // token configured for that channel (not by API keys: it is the member's server that calls).
  const fhirIntake = new FhirIntake(runtime.db, runtime.queues, { keepIds: false });
  const pushParams = z.object({ member: z.string().min(1).max(64), channel: z.string().min(1).max(64) });
  app.post('/fhir/subscription/:member/:channel', express.raw({ type: () => true, limit: '32mb' }), async (req, res) => {
    const { member: memberId, channel: channelId } = parse(pushParams, req.params, 'path');
    const member = runtime.config.members.find((m) => m.id === memberId);
    const channel = member?.channels.find((c) => c.id === channelId && c.kind === 'fhir-subscription');
    const presented = req.header('authorization')?.replace(/^Bearer /, '') ?? '';
    const expected = channel?.kind === 'fhir-subscription' ? Buffer.from(channel.tokenSha256, 'hex') : Buffer.alloc(32);
    // Constant time, and the same answer for an unknown channel as for a wrong token.
    const ok = timingSafeEqual(Buffer.from(hashApiKey(presented), 'hex'), expected) && !!channel && !!presented;
    if (!ok || !member || channel?.kind !== 'fhir-subscription') {
      return void sendClientError(res.set('WWW-Authenticate', 'Bearer'), 401, 'unauthenticated', 'unknown channel or wrong token');
    }
    let body: unknown;
    const bytes = Buffer.isBuffer(req.body) ? req.body : undefined;
    try {
      body = bytes && bytes.length ? JSON.parse(bytes.toString('utf8')) : bytes ? undefined : req.body;
    } catch {
      throw new HubError('invalid', 'request body is not valid JSON', 'body');
    }
    const content = resourcesOfNotification(body, { memberId: member.id, channelId: channel.id, server: channel.baseUrl });
    // Answered only once stored: a server that gets no 2xx sends the notification again.
    const stored = await fhirIntake.storeBatch(content.named);
    res.json({ kind: content.kind, received: content.named.length, stored: stored.stored, duplicates: stored.duplicates, quarantined: stored.quarantined, skipped: content.skipped });
  });

  // Operations console (api/console): its pages and login are open; then a console session cookie or
  // an API key authenticates (in place of authenticator(runtime.config)); then its JSON routes.
  const opsConsole = mountConsole(runtime);
  app.use(opsConsole.pages);
  app.use(opsConsole.authenticate);
  app.use(opsConsole.api);

  // Terminology: $translate, $lookup, $validate-code, worklist, proposals, coverage (api/terminology.ts).
  // Before the FHIR read API, whose router answers every other /fhir path (patient.read, 404).
  app.use(terminologyRouter(runtime));
  // Mutual recognition: check, duplicate report, rules (api/recognition.ts).
  app.use(recognitionRouter(runtime));

  // FHIR R4 read API over the unified record (golden patients, clinical and shared resources).
  app.use('/fhir', fhirRouter(runtime, log));
  // Patient index review queue and export (api/patientIndex.ts).
  app.use('/api/mpi', patientIndexRouter(runtime.db));
  // Cost event feed (scope feed.read) and alliance KPIs (api/feeds.ts).
  app.use(costFeedRouter(runtime));

  app.get('/metrics', requireScope('metrics'), async (_req, res) => {
    await refreshPipelineGauges(runtime.db, runtime.queues);
    res.type(registry.contentType).send(await registry.metrics());
  });

  app.get('/api/status', requireScope('integration'), async (_req, res) => {
    res.json(await hubStatus(runtime.db, runtime.queues));
  });

  app.get('/api/raw-messages', requireScope('integration'), async (req, res) => {
    const q = parse(rawSearch, req.query, 'query');
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      params.push(v);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (q.member) add('member_id = ?', q.member);
    if (q.channel) add('channel_id = ?', q.channel);
    if (q.status) add('status = ?', q.status);
    if (q.controlId) add('control_id = ?', q.controlId);
    if (q.before) add('id < ?', q.before);
    params.push(q.limit);
    const rows = await runtime.db.query(
      `SELECT id, member_id, channel_id, sender, control_id, message_type, charset, size_bytes, received_at, status, revision, flags, duplicate_count
         FROM raw_message ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    res.json({ items: rows.rows });
  });

  app.get('/api/raw-messages/:id', requireScope('integration'), async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    const found = await runtime.db.query<{ content: Buffer; charset: string; patient_key: string | null; [k: string]: unknown }>(
      `SELECT id, member_id, channel_id, sender, control_id, message_type, charset, content, received_at, status, revision, flags, patient_key FROM raw_message WHERE id = $1`,
      [id],
    );
    const raw = found.rows[0];
    if (!raw) throw new HubError('not-found', `raw message ${id} not found`);
    await recordAudit(runtime.db, { actor: req.principal!.name, action: 'read', entityType: 'raw_message', entityId: String(id), patientKey: raw.patient_key });
    const quarantine = await runtime.db.query(`SELECT id, stage, code, reason, location, state, created_at FROM quarantine WHERE raw_id = $1 ORDER BY id`, [id]);
    const { content, ...rest } = raw;
    res.json({ ...rest, contentBase64: content.toString('base64'), quarantine: quarantine.rows, ...(await fixLinks(runtime.db, id)) });
  });

  // Fix-and-replay (pipeline/fix.ts): the corrected text becomes a new raw message linked to this
  // one, which is marked fixed; its bytes stay as received. The fix is audited there, in its transaction.
  app.post('/api/raw-messages/:id/fix', requireScope('integration'), async (req, res) => {
    const { id } = parse(idParam, req.params, 'path');
    const body = parse(fixBody, req.body, 'body');
    const fixed = await fixRawMessage(runtime, { rawId: id, text: body.text, comment: body.comment, actor: req.principal!.name });
    res.status(201).json(fixed);
  });

  // A quarantine reason quotes the message's text: reading the list is reading those patients' data.
  app.get('/api/quarantine', requireScope('integration'), async (req, res) => {
    const rows = await runtime.db.query<{ patient_key: string | null; [k: string]: unknown }>(
      `SELECT q.id, q.raw_id, q.stage, q.code, q.reason, q.location, q.created_at, r.member_id, r.channel_id, r.control_id, r.patient_key
         FROM quarantine q JOIN raw_message r ON r.id = q.raw_id WHERE q.state = 'open' ORDER BY q.id DESC LIMIT 500`,
    );
    await recordAuditForPatients(runtime.db, { actor: req.principal!.name, action: 'search', entityType: 'quarantine', entityId: 'open', detail: { via: 'api', found: rows.rows.length } }, rows.rows.map((r) => r.patient_key));
    res.json({ items: rows.rows.map(({ patient_key: _key, ...item }) => item) });
  });

  app.post('/api/replay', requireScope('integration'), async (req, res) => {
    const body = parse(replayBody, req.body, 'body');
    const result = await replay(runtime.db, runtime.queues, { ...body, from: body.from ? new Date(body.from) : undefined, to: body.to ? new Date(body.to) : undefined });
    await recordAudit(runtime.db, { actor: req.principal!.name, action: 'replay', entityType: 'raw_message', entityId: `${result.replayed} messages`, detail: { filter: body } });
    // The ids asked for that were not replayed are named: absent from the raw store, or in a state that is not replayed.
    res.json({ replayed: result.replayed, ...(body.rawIds?.length ? { notFound: result.notFound ?? [], notReplayed: result.notReplayed ?? [] } : {}) });
  });

  app.use((req: Request, res: Response) => sendClientError(res, 404, 'not-found', 'no such route', undefined, isFhirPath(req)));
  app.use(errorHandler(log, isFhirPath));
  return app;
}
