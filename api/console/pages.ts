/**
 * The console's pages, server-rendered: a shell per page (navigation, labels in the chosen language,
 * filter forms, empty tables) that the console script (assets.ts) fills from the JSON API. Pages and
 * the login form are reached with the session cookie only; they never read the database themselves,
 * so the browser can do nothing the API would not let the same user do.
 */
import express, { type Request, type Response } from 'express';
import type { ApiContext } from '../context';
import { hasScope } from '../auth';
import { ICD10, ICD11_MMS, LOINC, UCUM } from '../../mappings/terminology/systems';
import { consoleCss, consoleJs } from './assets';
import { governanceJs } from './governanceScript';
import { consoleSettings } from '../../hub/console/config';
import { dictionary, type Lang, type LabelKey } from './i18n';
import { CONSOLE_HEADER, cookiesOf, principalOf, SESSION_COOKIE, sessionCookie, type ConsoleSession, type SessionStore } from './session';

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

type PageName = 'channels' | 'messages' | 'message' | 'dead-letters' | 'audit' | MappingPage | 'review' | 'patient' | 'dashboard';
type MappingPage = 'mappings' | 'proposals' | 'coverage' | 'map-entries' | 'map-history';
const mappingPages: Array<[MappingPage, string, LabelKey]> = [
  ['mappings', '/console/mappings', 'worklist'],
  ['proposals', '/console/mappings/proposals', 'proposals'],
  ['coverage', '/console/mappings/coverage', 'coverage'],
  ['map-entries', '/console/mappings/entries', 'entries'],
  ['map-history', '/console/mappings/history', 'history'],
];

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
  // Mapping governance over the terminology API (api/terminology.ts): read and propose with
  // integration or governance; decide with governance.
  { page: 'mappings', href: '/console/mappings', label: 'mappings', allowed: (s) => hasScope(s, 'integration', 'governance') },
  // Patient match review over api/patientIndex.ts: the queue is patient data (patient.read); deciding needs governance.
  { page: 'review', href: '/console/review', label: 'review', allowed: (s) => hasScope(s, 'patient.read') },
  // Aggregates only (GET /api/kpi, hub/feeds/kpi.ts).
  { page: 'dashboard', href: '/console/dashboard', label: 'dashboards', allowed: (s) => hasScope(s, 'integration', 'governance', 'metrics') },
  { page: 'audit', href: '/console/audit', label: 'audit', allowed: (s) => hasScope(s) },
];

/** The nav entry a page belongs to (a message under Messages, the mapping tabs under Mappings…). */
function navPageOf(page: PageName): PageName {
  if (page === 'message') return 'messages';
  if (page === 'patient') return 'review';
  if (mappingPages.some(([p]) => p === page)) return 'mappings';
  return page;
}

/** What the buttons on a page may offer; the API checks again (the same scopes as the routes). */
function permissions(scopes: ReturnType<typeof principalOf>['scopes']) {
  return {
    replay: hasScope(scopes, 'integration'),
    fix: hasScope(scopes, 'integration'),
    propose: hasScope(scopes, 'integration', 'governance'),
    decide: hasScope(scopes, 'governance'),
    reviewDecide: hasScope(scopes, 'governance'),
    readPatients: hasScope(scopes, 'patient.read'),
  };
}

/** Pages whose script is governance.js (on top of console.js's helpers). */
const governancePages = new Set<string>(['mappings', 'proposals', 'coverage', 'map-entries', 'map-history', 'review', 'patient', 'dashboard']);

function layout(req: Request, lang: Lang, title: string, body: string, page: PageName | 'login', session?: ConsoleSession, data: Record<string, unknown> = {}): string {
  const t = dictionary(lang);
  const principal = session ? principalOf(session) : undefined;
  const other: Lang = lang === 'zh' ? 'en' : 'zh';
  const here = esc(req.originalUrl);
  const navHtml = principal
    ? nav
        .filter((n) => n.allowed(principal.scopes))
        .map((n) => `<a href="${n.href}"${page !== 'login' && n.page === navPageOf(page) ? ' class="current"' : ''}>${esc(t[n.label])}</a>`)
        .join('')
    : '';
  const pageData = { lang, page, labels: t, can: principal ? permissions(principal.scopes) : {}, header: CONSOLE_HEADER, ...data };
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
<script src="/console/assets/console.js"></script>${governancePages.has(page) ? '<script src="/console/assets/governance.js"></script>' : ''}
</body></html>`;
}

type MemberOption = { id: string; name: string };

function filterForm(t: Record<LabelKey, string>, fields: Array<[string, LabelKey, string?]>, extra = '', members: MemberOption[] = []): string {
  const inputs = fields
    .map(([name, label, kind]) => {
      // Members by their configured names; the value sent is the id.
      if (kind === 'members') return `<label>${esc(t[label])}<select name="${name}"><option value="">${esc(t.any)}</option>${members.map((m) => `<option value="${esc(m.id)}">${esc(m.name)}</option>`).join('')}</select></label>`;
      if (kind?.startsWith('select:')) {
        const options = kind.slice(7).split(',');
        return `<label>${esc(t[label])}<select name="${name}"><option value="">${esc(t.any)}</option>${options.map((o) => `<option>${esc(o)}</option>`).join('')}</select></label>`;
      }
      return `<label>${esc(t[label])}<input name="${name}" type="${kind ?? 'text'}"${kind === 'datetime-local' ? ' step="1"' : ''}></label>`;
    })
    .join('');
  return `<form id="filter" class="filters">${inputs}<button type="submit">${esc(t.search)}</button>${extra}</form>`;
}

/** Where a local code is usually mapped to (the proposal form's choices). */
const targetSystems = [LOINC, ICD11_MMS, UCUM, ICD10];

function mappingTabs(t: Record<LabelKey, string>, page: PageName): string {
  return `<nav class="tabs">${mappingPages.map(([p, href, label]) => `<a href="${href}"${p === page ? ' class="current"' : ''}>${esc(t[label])}</a>`).join('')}</nav>`;
}

function bodyOf(page: PageName, t: Record<LabelKey, string>, perms: ReturnType<typeof permissions>, members: MemberOption[], id?: number, invalid?: string): string {
  const canReplay = perms.replay;
  const replayButton = canReplay ? `<button type="button" id="replay-selected" disabled>${esc(t.replaySelected)}</button>` : '';
  switch (page) {
    case 'channels':
      return `<div class="toolbar"><h1>${esc(t.channels)}</h1><button type="button" id="refresh">${esc(t.refresh)}</button><span id="generated" class="muted"></span></div>
<p id="pipeline-lag" class="muted"></p>
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
  ['status', 'status', 'select:queued,processed,quarantined,failed,fixed'],
  ['from', 'from', 'datetime-local'],
  ['to', 'to', 'datetime-local'],
])}
<div class="toolbar">${replayButton}<span id="notice" class="muted"></span></div>
<div class="scroll"><table id="messages"><thead><tr>${canReplay ? '<th><input type="checkbox" id="select-all"></th>' : ''}<th>#</th><th>${esc(t.received_at)}</th><th>${esc(t.member)}</th><th>${esc(t.channel)}</th><th>${esc(t.controlId)}</th><th>${esc(t.type)}</th><th>${esc(t.patient)}</th><th>${esc(t.ack)}</th><th>${esc(t.status)}</th></tr></thead><tbody></tbody></table></div>
<button type="button" id="older" hidden>${esc(t.older)}</button>`;
    case 'message':
      return `<div class="toolbar"><h1>${esc(t.message)} #${id}</h1>${canReplay ? `<button type="button" id="replay-one">${esc(t.replay)}</button>` : ''}<span id="notice" class="muted"></span></div>
<dl id="summary" class="summary"></dl>
<p id="fixed-by" class="fix-link" hidden></p><p id="fix-of" class="fix-link" hidden></p>
<section><h2>${esc(t.quarantine)}</h2><table id="quarantine"><thead><tr><th>${esc(t.at)}</th><th>${esc(t.stage)}</th><th>${esc(t.code)}</th><th>${esc(t.reason)}</th><th>${esc(t.state)}</th></tr></thead><tbody></tbody></table></section>
<section><h2>${esc(t.raw)}</h2><p id="decode-error" class="error" hidden></p><pre id="raw"></pre><div id="alternatives"></div></section>
${
  perms.fix
    ? `<section id="fix" hidden><h2>${esc(t.fixAndReplay)}</h2><p class="muted">${esc(t.fixNote)}</p>
<form id="fix-form" class="stack"><label>${esc(t.correctedText)}<textarea id="fix-text" name="text" rows="12" spellcheck="false" required></textarea></label>
<label>${esc(t.fixComment)}<textarea id="fix-comment" name="comment" rows="2" maxlength="2000" required></textarea></label>
<div class="toolbar"><button type="submit" id="fix-submit">${esc(t.fixAndReplay)}</button><span id="fix-notice" class="muted"></span></div></form></section>`
    : ''
}
<section><h2>${esc(t.hex)}</h2><pre id="hex"></pre></section>
<section><h2>${esc(t.segments)}</h2><p id="parse-error" class="error" hidden></p><div class="scroll"><table id="segments"><tbody></tbody></table></div></section>
<section><h2>${esc(t.resources)}</h2><table id="resources"><thead><tr><th>${esc(t.resourceType)}</th><th>id</th><th>${esc(t.version)}</th><th>${esc(t.mappingVersions)}</th><th>${esc(t.provenanceTargets)}</th></tr></thead><tbody></tbody></table></section>`;
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
  ['action', 'action', 'select:read,search,replay,export,fix'],
  ['entityType', 'entity'],
  ['from', 'from', 'datetime-local'],
  ['to', 'to', 'datetime-local'],
])}
<div class="scroll"><table id="audit"><thead><tr><th>${esc(t.at)}</th><th>${esc(t.actor)}</th><th>${esc(t.action)}</th><th>${esc(t.entity)}</th><th>${esc(t.patient)}</th><th>${esc(t.detail)}</th></tr></thead><tbody></tbody></table></div>
<button type="button" id="older" hidden>${esc(t.older)}</button>`;
    case 'mappings':
      return `${mappingTabs(t, page)}<p class="notice">${esc(t.worklistNote)}</p>
${filterForm(t, [
  ['member', 'member'],
  ['system', 'system'],
])}
<section id="unit-mismatches" class="pane" hidden><h2>${esc(t.unitMismatches)}</h2><p class="muted">${esc(t.unitMismatchesNote)}</p><table><thead><tr><th>${esc(t.member)}</th><th>${esc(t.code)}</th><th>${esc(t.target)}</th><th>${esc(t.occurrences)}</th><th>${esc(t.detail)}</th></tr></thead><tbody></tbody></table></section>
<div class="split"><div class="scroll pane"><table id="worklist"><thead><tr><th>${esc(t.member)}</th><th>${esc(t.system)}</th><th>${esc(t.code)}</th><th>${esc(t.display)}</th><th>${esc(t.occurrences)}</th><th>${esc(t.lastSeen)}</th><th>${esc(t.example)}</th><th></th></tr></thead><tbody></tbody></table></div>
<section id="suggest-panel" class="pane side" hidden><h2 id="suggest-title"></h2><table id="suggestions"><thead><tr><th>${esc(t.targetSystem)}</th><th>${esc(t.targetCode)}</th><th>${esc(t.display)}</th><th>${esc(t.score)}</th><th></th></tr></thead><tbody></tbody></table>
<form id="propose" class="stack"><label>${esc(t.targetSystem)}<select name="targetSystem">${targetSystems.map((u) => `<option>${esc(u)}</option>`).join('')}</select></label>
<label>${esc(t.targetCode)}<input name="targetCode" maxlength="64"></label><label>${esc(t.targetDisplay)}<input name="targetDisplay" maxlength="200"></label>
<label>${esc(t.equivalence)}<select name="equivalence">${['equivalent', 'equal', 'wider', 'subsumes', 'narrower', 'specializes', 'inexact', 'unmatched'].map((e) => `<option>${e}</option>`).join('')}</select></label>
<label>${esc(t.comment)}<textarea name="comment" maxlength="2000" rows="2"></textarea></label>
${perms.propose ? `<button type="submit" id="propose-submit">${esc(t.propose)}</button>` : ''}</form><p id="notice" class="muted"></p></section></div>`;
    case 'proposals':
      return `${mappingTabs(t, page)}
<form id="filter" class="filters"><label>${esc(t.state)}<select name="state"><option value="">${esc(t.any)}</option>${(['proposed', 'approved', 'rejected', 'retired'] as const).map((o) => `<option value="${o}">${esc(t[`state_${o}`])}</option>`).join('')}</select></label><button type="submit">${esc(t.search)}</button></form>
<div class="split"><div class="scroll pane"><table id="proposals"><thead><tr><th>#</th><th>${esc(t.state)}</th><th>${esc(t.source)}</th><th>${esc(t.target)}</th><th>${esc(t.equivalence)}</th><th>${esc(t.proposedBy)}</th><th>${esc(t.at)}</th></tr></thead><tbody></tbody></table></div>
<section id="proposal" class="pane side"><p class="muted" id="proposal-empty">${esc(t.selectProposal)}</p><div id="proposal-detail" hidden>
<h2 id="proposal-title"></h2><dl id="proposal-summary" class="summary two"></dl>
<h3>${esc(t.steps)}</h3><table id="steps"><thead><tr><th>${esc(t.at)}</th><th>${esc(t.action)}</th><th>${esc(t.actor)}</th><th>${esc(t.comment)}</th></tr></thead><tbody></tbody></table>
${
  perms.decide
    ? `<h3>${esc(t.impact)}</h3><button type="button" id="run-impact">${esc(t.runImpact)}</button><p id="impact-summary"></p><div id="impact-sample"></div>
<div id="decision" class="stack"><label>${esc(t.comment)}<textarea id="decision-comment" maxlength="2000" rows="2"></textarea></label>
<div class="toolbar"><button type="button" id="approve" data-action="approve">${esc(t.approve)}</button><button type="button" id="reject" data-action="reject">${esc(t.reject)}</button><button type="button" id="retire" data-action="retire">${esc(t.retire)}</button><button type="button" id="reprocess">${esc(t.reprocess)}</button></div><p id="own-proposal" class="muted" hidden>${esc(t.ownProposal)}</p></div>
<p id="job" class="muted"></p>`
    : ''
}<p id="notice" class="muted"></p></div></section></div>`;
    case 'coverage':
      return `${mappingTabs(t, page)}
${filterForm(t, [
  ['member', 'member', 'members'],
  ['from', 'from', 'date'],
  ['to', 'to', 'date'],
], '', members)}
<div class="charts"><figure class="chart"><figcaption>${esc(t.occurrencePct)} / ${esc(t.distinctPct)} · ${esc(t.member)}</figcaption><div id="coverage-chart"></div></figure>
<figure class="chart"><figcaption>${esc(t.trend)} · ${esc(t.occurrencePct)}</figcaption><div id="trend-chart"></div></figure></div>
<section id="unit-mismatches" class="pane" hidden><h2>${esc(t.unitMismatches)}</h2><p class="muted">${esc(t.unitMismatchesNote)}</p><table><thead><tr><th>${esc(t.member)}</th><th>${esc(t.code)}</th><th>${esc(t.target)}</th><th>${esc(t.occurrences)}</th><th>${esc(t.detail)}</th></tr></thead><tbody></tbody></table></section>
<div class="scroll"><table id="coverage"><thead><tr><th>${esc(t.member)}</th><th>${esc(t.channel)}</th><th>${esc(t.system)}</th><th>${esc(t.occurrences)}</th><th>${esc(t.occurrencePct)}</th><th>${esc(t.distinctPct)}</th></tr></thead><tbody></tbody></table></div><p id="notice" class="muted"></p>`;
    case 'map-entries':
      return `${mappingTabs(t, page)}
<form id="map-form" class="filters"><label>${esc(t.conceptMap)}<select name="map" id="map-select"></select></label><a id="history-link" href="/console/mappings/history">${esc(t.history)}</a></form>
<p id="entries-title" class="muted"></p>
<div class="scroll"><table id="map-entries"><thead><tr><th>${esc(t.sourceSystem)}</th><th>${esc(t.code)}</th><th>${esc(t.display)}</th><th>${esc(t.targetCode)}</th><th>${esc(t.targetDisplay)}</th><th>${esc(t.equivalence)}</th><th>${esc(t.version)}</th><th>${esc(t.approvedBy)}</th><th>${esc(t.at)}</th></tr></thead><tbody></tbody></table></div><p id="notice" class="muted"></p>`;
    case 'map-history':
      return `${mappingTabs(t, page)}
<form id="map-form" class="filters"><label>${esc(t.conceptMap)}<select name="map" id="map-select"></select></label>
<label>${esc(t.from)}<select name="from" id="diff-from"></select></label><label>${esc(t.to)}<select name="to" id="diff-to"></select></label><button type="submit">${esc(t.compare)}</button></form>
<div class="split"><div class="pane"><h2>${esc(t.versions)}</h2><table id="versions"><thead><tr><th>${esc(t.version)}</th><th>${esc(t.state)}</th><th>${esc(t.origin)}</th><th>${esc(t.createdBy)}</th><th>${esc(t.at)}</th><th>${esc(t.comment)}</th></tr></thead><tbody></tbody></table>
<h2>${esc(t.events)}</h2><table id="map-events"><thead><tr><th>${esc(t.at)}</th><th>${esc(t.action)}</th><th>${esc(t.actor)}</th><th>${esc(t.version)}</th><th>${esc(t.comment)}</th></tr></thead><tbody></tbody></table></div>
<div class="pane side"><h2>${esc(t.diff)} <span id="diff-range" class="muted"></span></h2><table id="map-diff"><thead><tr><th>${esc(t.change)}</th><th>${esc(t.code)}</th><th>${esc(t.before)}</th><th>${esc(t.after)}</th></tr></thead><tbody></tbody></table></div></div><p id="notice" class="muted"></p>`;
    case 'review':
      return `<h1>${esc(t.review)}</h1><p class="notice">${esc(t.reviewNote)}</p><p id="notice" class="muted"></p><div id="review-queue"></div>`;
    case 'patient':
      return `<div class="toolbar"><h1>${esc(t.goldenPatient)} <span id="golden-id"></span></h1><span id="notice" class="muted"></span></div>
<dl id="golden-summary" class="summary"></dl>
<h2>${esc(t.sources)}</h2><table id="golden-sources"><thead><tr><th>${esc(t.member)}</th><th>MRN</th><th>${esc(t.mode)}</th><th>${esc(t.rule)}</th><th>${esc(t.score)}</th><th>Patient</th></tr></thead><tbody></tbody></table>
<h2>${esc(t.mergeHistory)}</h2><table id="golden-history"><thead><tr><th>${esc(t.at)}</th><th>${esc(t.action)}</th><th>${esc(t.actor)}</th><th>${esc(t.member)}</th><th>MRN</th><th>${esc(t.detail)}</th></tr></thead><tbody></tbody></table>`;
    case 'dashboard':
      return `<h1>${esc(t.dashboards)}</h1>
${filterForm(
  t,
  [
    ['member', 'member', 'members'],
    ['from', 'from', 'month'],
    ['to', 'to', 'month'],
  ],
  // Which rules judge the repeats (GET /api/kpi?rules=): those in force when each test was done
  // (what happened), or today's over all time (what-if); the chosen one is named above the cards.
  `<label>${esc(t.judgedBy)}<select name="rules"><option value="at-time">${esc(t.rulesAtTime)}</option><option value="current">${esc(t.rulesCurrent)}</option></select></label>`,
  members,
)}
${invalid ? `<p id="bad-request" class="error" data-status="400">${esc(invalid)}</p>` : ''}<p id="kpi-unavailable" class="error" hidden></p>
<div id="kpi" hidden><p id="kpi-rules" class="muted"></p><div id="kpi-cards" class="cards"></div>
<div class="charts"><figure class="chart"><figcaption>${esc(t.recognitionRate)} · ${esc(t.month)}</figcaption><div id="chart-recognition"></div></figure>
<figure class="chart"><figcaption>${esc(t.repeats)} / ${esc(t.avoidedCost)} · ${esc(t.month)}</figcaption><div id="chart-duplicates"></div></figure>
<figure class="chart"><figcaption>${esc(t.referrals)} (${esc(t.referralsUp)} / ${esc(t.referralsDown)}) · ${esc(t.month)}</figcaption><div id="chart-referrals"></div></figure>
<figure class="chart"><figcaption>${esc(t.devices)} · ${esc(t.sharingRate)}</figcaption><div id="chart-devices"></div></figure></div>
<div class="split"><div class="pane"><h2>${esc(t.devices)}</h2><table id="kpi-devices"><thead><tr><th>${esc(t.device)}</th><th>${esc(t.modality)}</th><th>${esc(t.owner)}</th><th>${esc(t.exams)}</th><th>${esc(t.minutes)}</th><th>${esc(t.otherMemberExams)}</th><th>${esc(t.sharingRate)}</th></tr></thead><tbody></tbody></table></div>
<div class="pane"><h2>${esc(t.memberPairs)}</h2><table id="kpi-pairs"><thead><tr><th>${esc(t.firstMember)}</th><th>${esc(t.repeatMember)}</th><th>${esc(t.repeats)}</th><th>${esc(t.wastedCost)}</th></tr></thead><tbody></tbody></table></div></div></div>`;
  }
}

/** The first of the dashboard's from / to that is given but is not a month YYYY-MM (01–12), as a message. */
function badMonth(req: Request, t: Record<LabelKey, string>): string | undefined {
  for (const field of ['from', 'to'] as const) {
    const value = req.query[field];
    if (value === undefined || value === '') continue;
    if (typeof value !== 'string' || !/^\d{4}-(0[1-9]|1[0-2])$/.test(value)) return t.badMonth.replace('{field}', field).replace('{value}', String(value).slice(0, 40));
  }
  return undefined;
}

export function consolePages(runtime: ApiContext, sessions: SessionStore): express.Router {
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
  router.get('/console/assets/governance.js', (_req, res) => {
    res.type('application/javascript').set('Cache-Control', 'no-cache').send(governanceJs);
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
    const item = nav.find((n) => n.page === navPageOf(name))!;
    if (!item.allowed(scopes)) return res.status(403).type('html').send(layout(req, lang, t.forbidden, `<p class="error">${esc(t.forbidden)}</p>`, name, session, { blocked: true }));
    let id: number | string | undefined;
    if (name === 'message') {
      id = Number(req.params.id);
      if (!Number.isSafeInteger(id) || id <= 0) return res.status(404).type('html').send(layout(req, lang, t.message, `<p class="error">not found</p>`, name, session, { blocked: true }));
    }
    if (name === 'patient') {
      id = String(req.params.id);
      if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) return res.status(404).type('html').send(layout(req, lang, t.goldenPatient, `<p class="error">not found</p>`, name, session, { blocked: true }));
    }
    // Member ids and names are configuration, not patient data: the filters offer them.
    const members = runtime.config.members.map((m) => ({ id: m.id, name: m.name }));
    const title = mappingPages.find(([p]) => p === name)?.[2] ?? item.label;
    // A month in the address that is no month (from=2026-13) is refused visibly: the month input
    // would drop it and the page would silently show every month.
    const invalid = name === 'dashboard' ? badMonth(req, t) : undefined;
    res
      .status(invalid ? 400 : 200)
      .type('html')
      .send(
        layout(req, lang, t[title], bodyOf(name, t, permissions(scopes), members, typeof id === 'number' ? id : undefined, invalid), name, session, {
          id,
          members,
          // Who this user is to the governance routes (the proposer of a proposal), and whether four eyes
          // apply: the proposals page does not offer an approval the API would refuse.
          ...(name === 'proposals' ? { actor: principalOf(session).name, fourEyes: runtime.config.governance.fourEyes } : {}),
          ...(invalid ? { invalid } : {}),
        }),
      );
  };
  router.get('/console/channels', page('channels'));
  router.get('/console/messages', page('messages'));
  router.get('/console/messages/:id', page('message'));
  router.get('/console/dead-letters', page('dead-letters'));
  router.get('/console/audit', page('audit'));
  router.get('/console/mappings', page('mappings'));
  router.get('/console/mappings/proposals', page('proposals'));
  router.get('/console/mappings/coverage', page('coverage'));
  router.get('/console/mappings/entries', page('map-entries'));
  router.get('/console/mappings/history', page('map-history'));
  router.get('/console/review', page('review'));
  router.get('/console/patients/:id', page('patient'));
  router.get('/console/dashboard', page('dashboard'));
  // Any other console path: a page, not the API's JSON 401/404.
  router.use('/console', (req, res) => {
    res.status(404).type('html').send(layout(req, langOf(req), 'not found', `<p class="error">not found · <a href="/console/channels">${esc(dictionary(langOf(req)).channels)}</a></p>`, 'login'));
  });
  return router;
}
