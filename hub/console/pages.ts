/**
 * The console's pages, server-rendered: a shell per page (navigation, labels in the chosen language,
 * filter forms, empty tables) that the console script (assets.ts) fills from the JSON API. Pages and
 * the login form are reached with the session cookie only; they never read the database themselves,
 * so the browser can do nothing the API would not let the same user do.
 */
import express, { type Request, type Response } from 'express';
import type { Runtime } from '../runtime';
import { consoleCss, consoleJs } from './assets';
import { consoleSettings } from './config';
import { dictionary, type Lang, type LabelKey } from './i18n';
import { CONSOLE_HEADER, cookiesOf, hasScope, principalOf, SESSION_COOKIE, sessionCookie, type ConsoleSession, type SessionStore } from './session';

const LANG_COOKIE = 'yilian_lang';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function langOf(req: Request): Lang {
  const chosen = cookiesOf(req)[LANG_COOKIE];
  if (chosen === 'zh' || chosen === 'en') return chosen;
  return /^en\b/i.test(req.header('accept-language') ?? '') ? 'en' : 'zh';
}

/** Only paths inside the console may be a redirect target (no open redirect). */
function safeNext(next: unknown): string {
  return typeof next === 'string' && /^\/console(?:[/?][^\s\\]*)?$/.test(next) ? next : '/console/channels';
}

type PageName = 'channels' | 'messages' | 'message' | 'dead-letters' | 'audit' | 'mappings';

interface NavItem {
  page: PageName;
  href: string;
  label: LabelKey;
  allowed: (scopes: ReturnType<typeof principalOf>['scopes']) => boolean;
}

const nav: NavItem[] = [
  { page: 'channels', href: '/console/channels', label: 'channels', allowed: (s) => hasScope(s, 'integration', 'metrics') },
  { page: 'messages', href: '/console/messages', label: 'messages', allowed: (s) => hasScope(s, 'integration', 'patient.read') },
  { page: 'dead-letters', href: '/console/dead-letters', label: 'deadLetters', allowed: (s) => hasScope(s, 'integration', 'patient.read') },
  { page: 'audit', href: '/console/audit', label: 'audit', allowed: (s) => hasScope(s) },
  // Preview over the terminology API (hub/terminologyApi.ts, scope integration): the worklist only, read-only.
  { page: 'mappings', href: '/console/mappings', label: 'mappingPreview', allowed: (s) => hasScope(s, 'integration') },
];

function layout(req: Request, lang: Lang, title: string, body: string, page: PageName | 'login', session?: ConsoleSession, data: Record<string, unknown> = {}): string {
  const t = dictionary(lang);
  const principal = session ? principalOf(session) : undefined;
  const other: Lang = lang === 'zh' ? 'en' : 'zh';
  const here = esc(req.originalUrl);
  const navHtml = principal
    ? nav
        .filter((n) => n.allowed(principal.scopes))
        .map((n) => `<a href="${n.href}"${n.page === page || (page === 'message' && n.page === 'messages') ? ' class="current"' : ''}>${esc(t[n.label])}</a>`)
        .join('')
    : '';
  const pageData = { lang, page, labels: t, can: principal ? { replay: hasScope(principal.scopes, 'integration') } : {}, header: CONSOLE_HEADER, ...data };
  return `<!doctype html>
<html lang="${lang === 'zh' ? 'zh-CN' : 'en'}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · ${esc(t.title)}</title><link rel="stylesheet" href="/console/assets/console.css"></head>
<body data-page="${page}">
<header><span class="brand">${esc(t.title)}</span><nav>${navHtml}</nav>
<span class="who">${principal ? `${esc(session!.user)} · <span id="role">${esc(session!.role)}</span>` : ''}</span>
<a class="lang" id="lang-switch" href="/console/lang?set=${other}&amp;next=${encodeURIComponent(req.originalUrl)}" data-here="${here}">${other === 'en' ? 'English' : '中文'}</a>
${principal ? `<form method="post" action="/console/logout" class="logout"><button type="submit">${esc(t.logout)}</button></form>` : ''}
</header>
<main>${body}</main>
<script type="application/json" id="page-data">${JSON.stringify(pageData).replace(/</g, '\\u003c')}</script>
<script src="/console/assets/console.js"></script>
</body></html>`;
}

function filterForm(t: Record<LabelKey, string>, fields: Array<[string, LabelKey, string?]>, extra = ''): string {
  const inputs = fields
    .map(([name, label, kind]) => {
      if (kind?.startsWith('select:')) {
        const options = kind.slice(7).split(',');
        return `<label>${esc(t[label])}<select name="${name}"><option value="">${esc(t.any)}</option>${options.map((o) => `<option>${esc(o)}</option>`).join('')}</select></label>`;
      }
      return `<label>${esc(t[label])}<input name="${name}" type="${kind ?? 'text'}"${kind === 'datetime-local' ? ' step="1"' : ''}></label>`;
    })
    .join('');
  return `<form id="filter" class="filters">${inputs}<button type="submit">${esc(t.search)}</button>${extra}</form>`;
}

function bodyOf(page: PageName, t: Record<LabelKey, string>, canReplay: boolean, id?: number): string {
  const replayButton = canReplay ? `<button type="button" id="replay-selected" disabled>${esc(t.replaySelected)}</button>` : '';
  switch (page) {
    case 'channels':
      return `<div class="toolbar"><h1>${esc(t.channels)}</h1><button type="button" id="refresh">${esc(t.refresh)}</button><span id="generated" class="muted"></span></div>
<div class="scroll"><table id="channels"><thead>
<tr><th rowspan="2">${esc(t.member)}</th><th rowspan="2">${esc(t.channel)}</th><th rowspan="2">${esc(t.kind)}</th><th rowspan="2">${esc(t.state)}</th>
<th colspan="4">${esc(t.lastHour)}</th><th colspan="4">${esc(t.lastDay)}</th><th rowspan="2">${esc(t.lastMessage)}</th><th rowspan="2">${esc(t.lastError)}</th><th rowspan="2">${esc(t.alerts)}</th></tr>
<tr>${(['received', 'acked', 'nacked', 'quarantined'] as const).map((k) => `<th>${esc(t[k])}</th>`).join('').repeat(2)}</tr>
</thead><tbody></tbody></table></div>`;
    case 'messages':
      return `<h1>${esc(t.messages)}</h1>
${filterForm(t, [
  ['member', 'member'],
  ['channel', 'channel'],
  ['controlId', 'controlId'],
  ['patient', 'patient'],
  ['type', 'type'],
  ['status', 'status', 'select:queued,processed,quarantined,failed'],
  ['from', 'from', 'datetime-local'],
  ['to', 'to', 'datetime-local'],
])}
<div class="toolbar">${replayButton}<span id="notice" class="muted"></span></div>
<div class="scroll"><table id="messages"><thead><tr>${canReplay ? '<th><input type="checkbox" id="select-all"></th>' : ''}<th>#</th><th>${esc(t.received_at)}</th><th>${esc(t.member)}</th><th>${esc(t.channel)}</th><th>${esc(t.controlId)}</th><th>${esc(t.type)}</th><th>${esc(t.patient)}</th><th>${esc(t.ack)}</th><th>${esc(t.status)}</th></tr></thead><tbody></tbody></table></div>
<button type="button" id="older" hidden>${esc(t.older)}</button>`;
    case 'message':
      return `<div class="toolbar"><h1>${esc(t.message)} #${id}</h1>${canReplay ? `<button type="button" id="replay-one">${esc(t.replay)}</button>` : ''}<span id="notice" class="muted"></span></div>
<dl id="summary" class="summary"></dl>
<section><h2>${esc(t.quarantine)}</h2><table id="quarantine"><thead><tr><th>${esc(t.at)}</th><th>${esc(t.stage)}</th><th>${esc(t.code)}</th><th>${esc(t.reason)}</th><th>${esc(t.state)}</th></tr></thead><tbody></tbody></table></section>
<section><h2>${esc(t.raw)}</h2><p id="decode-error" class="error" hidden></p><pre id="raw"></pre><div id="alternatives"></div></section>
<section><h2>${esc(t.hex)}</h2><pre id="hex"></pre></section>
<section><h2>${esc(t.segments)}</h2><p id="parse-error" class="error" hidden></p><div class="scroll"><table id="segments"><tbody></tbody></table></div></section>
<section><h2>${esc(t.resources)}</h2><table id="resources"><thead><tr><th>${esc(t.type)}</th><th>id</th><th>${esc(t.version)}</th><th>${esc(t.mappingVersions)}</th><th>${esc(t.provenanceTargets)}</th></tr></thead><tbody></tbody></table></section>`;
    case 'dead-letters':
      return `<h1>${esc(t.deadLetters)}</h1>
${filterForm(t, [
  ['member', 'member'],
  ['channel', 'channel'],
  ['stage', 'stage'],
  ['code', 'code'],
])}
<div class="toolbar">${replayButton}<span id="notice" class="muted"></span></div>
<div class="scroll"><table id="dead-letters"><thead><tr>${canReplay ? '<th><input type="checkbox" id="select-all"></th>' : ''}<th>#</th><th>${esc(t.at)}</th><th>${esc(t.member)}</th><th>${esc(t.channel)}</th><th>${esc(t.controlId)}</th><th>${esc(t.stage)}</th><th>${esc(t.code)}</th><th>${esc(t.reason)}</th></tr></thead><tbody></tbody></table></div>`;
    case 'audit':
      return `<h1>${esc(t.audit)}</h1>
${filterForm(t, [
  ['actor', 'actor'],
  ['patient', 'patient'],
  ['action', 'action', 'select:read,search,replay,export'],
  ['entityType', 'entity'],
  ['from', 'from', 'datetime-local'],
  ['to', 'to', 'datetime-local'],
])}
<div class="scroll"><table id="audit"><thead><tr><th>${esc(t.at)}</th><th>${esc(t.actor)}</th><th>${esc(t.action)}</th><th>${esc(t.entity)}</th><th>${esc(t.patient)}</th><th>${esc(t.detail)}</th></tr></thead><tbody></tbody></table></div>
<button type="button" id="older" hidden>${esc(t.older)}</button>`;
    case 'mappings':
      return `<h1>${esc(t.mappingPreview)}</h1><p class="notice">${esc(t.mappingPreviewNote)}</p>
${filterForm(t, [
  ['member', 'member'],
  ['system', 'system'],
])}
<div class="scroll"><table id="worklist"><thead><tr><th>${esc(t.member)}</th><th>${esc(t.system)}</th><th>${esc(t.code)}</th><th>${esc(t.display)}</th><th>${esc(t.occurrences)}</th><th>${esc(t.firstSeen)}</th><th>${esc(t.lastSeen)}</th><th>${esc(t.example)}</th></tr></thead><tbody></tbody></table></div>`;
  }
}

export function consolePages(runtime: Runtime, sessions: SessionStore): express.Router {
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '8kb' });

  // Only our own script and stylesheet run; the console is never framed (clickjacking a replay button).
  router.use('/console', (_req, res, next) => {
    res.set({ 'Content-Security-Policy': "default-src 'self'; frame-ancestors 'none'; form-action 'self'", 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'same-origin' });
    next();
  });

  router.get('/console/assets/console.css', (_req, res) => {
    res.type('text/css').set('Cache-Control', 'no-cache').send(consoleCss);
  });
  router.get('/console/assets/console.js', (_req, res) => {
    res.type('application/javascript').set('Cache-Control', 'no-cache').send(consoleJs);
  });

  router.get('/console/lang', (req, res) => {
    const lang = req.query.set === 'en' ? 'en' : 'zh';
    res.set('Set-Cookie', `${LANG_COOKIE}=${lang}; Path=/console; SameSite=Strict; Max-Age=31536000`).redirect(303, safeNext(req.query.next));
  });

  router.get('/console/login', (req, res) => {
    const lang = langOf(req);
    const t = dictionary(lang);
    const error = req.query.error === 'locked' ? t.loginLocked : req.query.error ? t.loginFailed : '';
    res.type('html').send(
      layout(
        req,
        lang,
        t.login,
        `<form method="post" action="/console/login" class="login" id="login">
<h1>${esc(t.login)}</h1>${error ? `<p class="error" id="login-error">${esc(error)}</p>` : ''}
<label>${esc(t.user)}<input name="user" autocomplete="username" required maxlength="64" autofocus></label>
<label>${esc(t.password)}<input name="password" type="password" autocomplete="current-password" required maxlength="200"></label>
<input type="hidden" name="next" value="${esc(safeNext(req.query.next))}">
<button type="submit">${esc(t.login)}</button></form>`,
        'login',
      ),
    );
  });

  router.post('/console/login', form, async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const user = typeof body.user === 'string' ? body.user.slice(0, 64) : '';
    const password = typeof body.password === 'string' ? body.password.slice(0, 200) : '';
    const next = safeNext(body.next);
    const result = user && password ? await sessions.login(user, password) : { error: 'wrong' as const };
    if ('error' in result) return res.redirect(303, `/console/login?error=${result.error}&next=${encodeURIComponent(next)}`);
    res.set('Set-Cookie', sessionCookie(req, result.token, Math.round(consoleSettings(runtime.config).sessionHours * 3600))).redirect(303, next);
  });

  router.post('/console/logout', async (req, res) => {
    const token = cookiesOf(req)[SESSION_COOKIE];
    if (token) await sessions.logout(token);
    res.set('Set-Cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`).redirect(303, '/console/login');
  });

  router.get('/console', (_req, res) => res.redirect(303, '/console/channels'));

  const page = (name: PageName) => async (req: Request, res: Response) => {
    const session = await sessions.fromRequest(req);
    if (!session) return res.redirect(303, `/console/login?next=${encodeURIComponent(req.originalUrl)}`);
    const lang = langOf(req);
    const t = dictionary(lang);
    const scopes = principalOf(session).scopes;
    const item = nav.find((n) => n.page === (name === 'message' ? 'messages' : name))!;
    if (!item.allowed(scopes)) return res.status(403).type('html').send(layout(req, lang, t.forbidden, `<p class="error">${esc(t.forbidden)}</p>`, name, session));
    let id: number | undefined;
    if (name === 'message') {
      id = Number(req.params.id);
      if (!Number.isSafeInteger(id) || id <= 0) return res.status(404).type('html').send(layout(req, lang, t.message, `<p class="error">not found</p>`, name, session));
    }
    const canReplay = hasScope(scopes, 'integration');
    res.type('html').send(layout(req, lang, t[item.label], bodyOf(name, t, canReplay, id), name, session, { id }));
  };
  router.get('/console/channels', page('channels'));
  router.get('/console/messages', page('messages'));
  router.get('/console/messages/:id', page('message'));
  router.get('/console/dead-letters', page('dead-letters'));
  router.get('/console/audit', page('audit'));
  router.get('/console/mappings', page('mappings'));
  // Any other console path: a page, not the API's JSON 401/404.
  router.use('/console', (req, res) => {
    res.status(404).type('html').send(layout(req, langOf(req), 'not found', `<p class="error">not found · <a href="/console/channels">${esc(dictionary(langOf(req)).channels)}</a></p>`, 'login'));
  });
  return router;
}
