/**
 * The console's stylesheet and script, served from memory (so they ship inside dist/ with the code).
 * Plain CSS and plain browser JavaScript: no framework, no build step. The script reads the page's
 * labels and permissions from #page-data and calls only the JSON API, with the session cookie and
 * the console header. It must never use template literals (this file holds it in one).
 */
export const consoleCss = String.raw`
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; color: #1d2733; background: #f4f6f8; }
header { display: flex; align-items: center; gap: 16px; padding: 6px 16px; background: #16425b; color: #fff; height: 40px; }
header a { color: #d9ecf7; text-decoration: none; }
header nav { display: flex; gap: 4px; flex: 1; }
header nav a { padding: 4px 10px; border-radius: 3px; }
header nav a.current, header nav a:hover { background: #2f6690; color: #fff; }
.brand { font-weight: 600; white-space: nowrap; }
.who { white-space: nowrap; }
header form.logout { margin: 0; }
main { padding: 12px 16px; max-width: 1366px; }
h1 { font-size: 17px; margin: 0 12px 8px 0; }
h2 { font-size: 14px; margin: 14px 0 6px; }
h3 { font-size: 13px; margin: 8px 0 4px; }
p.notice { background: #fff8e1; border: 1px solid #f0d98c; padding: 6px 8px; margin: 0 0 8px; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { border: 1px solid #d5dbe1; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #e8edf1; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; max-width: 100%; }
.toolbar { display: flex; align-items: center; gap: 10px; margin: 6px 0; }
.filters { display: flex; flex-wrap: wrap; gap: 6px 10px; align-items: flex-end; margin-bottom: 6px; }
.filters label { display: flex; flex-direction: column; font-size: 12px; color: #4a5866; }
.filters input, .filters select { width: 150px; padding: 3px; }
button { padding: 4px 10px; cursor: pointer; }
.muted { color: #6b7785; }
.error { color: #b3261e; }
.state-up { color: #1b7f3b; font-weight: 600; }
.state-down { color: #b3261e; font-weight: 600; }
.alert { display: inline-block; background: #fde8e6; color: #8c1d18; border-radius: 3px; padding: 0 4px; margin: 1px 0; }
tr.alerting td { background: #fff7f6; }
pre { background: #fff; border: 1px solid #d5dbe1; padding: 8px; overflow: auto; max-height: 320px; margin: 0; font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre; }
pre .hi { background: #ffe9a8; }
dl.summary { display: grid; grid-template-columns: repeat(4, max-content 1fr); gap: 2px 10px; background: #fff; border: 1px solid #d5dbe1; padding: 6px; margin: 0; }
dl.summary dt { color: #4a5866; }
dl.summary dd { margin: 0; word-break: break-all; }
form.login { max-width: 320px; margin: 60px auto; background: #fff; padding: 20px; border: 1px solid #d5dbe1; display: flex; flex-direction: column; gap: 10px; }
form.login label { display: flex; flex-direction: column; gap: 2px; }
td.seg { font-weight: 600; font-family: ui-monospace, monospace; }
/* A segment's fields flow onto as many lines as they need (MSH is long): the row wraps, never the page. */
#segments tbody tr { display: flex; flex-wrap: wrap; }
#segments td { flex: 0 1 auto; min-width: 0; max-width: 100%; }
#segments td.field { white-space: normal; overflow-wrap: anywhere; }
td.field { font-family: ui-monospace, monospace; white-space: nowrap; }
td.field sup { color: #6b7785; margin-right: 2px; }
nav.tabs { display: flex; gap: 2px; border-bottom: 2px solid #2f6690; margin-bottom: 8px; }
nav.tabs a { padding: 4px 12px; background: #e8edf1; color: #16425b; text-decoration: none; border-radius: 3px 3px 0 0; }
nav.tabs a.current { background: #2f6690; color: #fff; }
.split { display: flex; gap: 12px; align-items: flex-start; }
.split > .pane { flex: 1 1 0; min-width: 0; }
.split > .side { flex: 0 0 470px; background: #fff; border: 1px solid #d5dbe1; padding: 8px; }
.stack { display: flex; flex-direction: column; gap: 6px; margin-top: 8px; }
.stack label { display: flex; flex-direction: column; font-size: 12px; color: #4a5866; }
.stack input, .stack select, .stack textarea { padding: 3px; font: inherit; }
dl.summary.two { grid-template-columns: max-content 1fr; }
tr.selected td { background: #e3f0fb; }
.state-proposed { color: #8a5a00; font-weight: 600; }
.state-approved { color: #1b7f3b; font-weight: 600; }
.state-rejected, .state-retired { color: #6b7785; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 10px; margin: 8px 0; }
figure.chart { margin: 0; background: #fff; border: 1px solid #d5dbe1; padding: 6px; }
figure.chart figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font: 10px system-ui, "Noto Sans CJK SC", sans-serif; fill: #4a5866; }
svg.chart .axis { stroke: #b8c2cc; stroke-width: 1; }
.legend { display: flex; gap: 12px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: middle; }
.cards { display: grid; grid-template-columns: repeat(6, minmax(0, 1fr)); gap: 8px; }
.card { background: #fff; border: 1px solid #d5dbe1; padding: 6px 8px; }
.card .label { color: #4a5866; font-size: 12px; }
.card .value { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
.pair { background: #fff; border: 1px solid #d5dbe1; padding: 8px; margin-bottom: 10px; }
.pair table.side-by-side td:first-child, .pair table.side-by-side th:first-child { width: 110px; }
.pair .cols { display: flex; gap: 10px; }
.pair .cols > * { flex: 1 1 0; min-width: 0; }
td.agree { background: #eef8f0; }
td.disagree { background: #fdf0ee; }
td.pos { color: #1b7f3b; }
td.neg { color: #b3261e; }
.diff-before { color: #b3261e; text-decoration: line-through; }
table.impact { table-layout: fixed; margin-bottom: 6px; }
table.impact th:first-child { width: 28%; }
table.impact td { word-break: break-all; font-size: 12px; }
table.impact td.field { white-space: normal; }
#proposal.side { flex-basis: 640px; }
details > summary { cursor: pointer; margin: 4px 0; font-weight: 600; }
.split > .side { overflow-x: auto; }
.diff-after { color: #1b7f3b; }
#fix-text { font-family: ui-monospace, "Noto Sans Mono CJK SC", monospace; font-size: 12px; white-space: pre; overflow-x: auto; }
p.fix-link { background: #fff8e1; border: 1px solid #e6d28a; padding: 4px 8px; }
`;

export const consoleJs = String.raw`
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('page-data').textContent);
  var t = data.labels;
  function $(sel) { return document.querySelector(sel); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else if (k === 'class') node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }
  function td(text, cls) { return el('td', { text: text == null ? '' : String(text), class: cls || '' }); }
  function fmt(template, values) { return template.replace(/\{(\w+)\}/g, function (_, k) { return values[k]; }); }
  function time(iso) { return iso ? new Date(iso).toLocaleString(data.lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false }) : ''; }
  function notice(text, isError) { var n = $('#notice'); if (n) { n.textContent = text; n.className = isError ? 'error' : 'muted'; } }

  /** Every call goes to the JSON API with the session cookie and the console header. */
  function api(path, options) {
    options = options || {};
    var headers = { accept: 'application/json' };
    headers[data.header] = '1';
    if (options.body) headers['content-type'] = 'application/json';
    return fetch(path, { method: options.method || 'GET', headers: headers, credentials: 'same-origin', body: options.body ? JSON.stringify(options.body) : undefined })
      .then(function (res) {
        if (res.status === 401) { location.href = '/console/login?next=' + encodeURIComponent(location.pathname + location.search); throw new Error('unauthenticated'); }
        return res.json().then(function (body) {
          if (!res.ok) throw new Error(body.message || res.statusText);
          return body;
        });
      });
  }
  function formQuery(form) {
    var params = new URLSearchParams();
    Array.prototype.forEach.call(form.elements, function (input) {
      if (!input.name || !input.value) return;
      var value = input.value;
      if (input.type === 'datetime-local') value = new Date(value).toISOString();
      params.set(input.name, value);
    });
    return params;
  }
  function replay(rawIds) {
    return api('/api/replay', { method: 'POST', body: { rawIds: rawIds } })
      .then(function (r) { notice(fmt(t.replayed, { n: r.replayed })); return r; })
      .catch(function (e) { notice(t.error + ': ' + e.message, true); });
  }
  function selectable(table) {
    var button = $('#replay-selected');
    var all = $('#select-all');
    if (!button) return;
    function update() { button.disabled = !table.querySelector('tbody input:checked'); }
    table.addEventListener('change', update);
    if (all) all.addEventListener('change', function () {
      Array.prototype.forEach.call(table.querySelectorAll('tbody input[type=checkbox]'), function (c) { c.checked = all.checked; });
      update();
    });
    button.addEventListener('click', function () {
      var ids = Array.prototype.map.call(table.querySelectorAll('tbody input:checked'), function (c) { return Number(c.value); });
      replay(ids).then(function () { if (ids.length) $('#filter').requestSubmit(); });
    });
  }
  function checkbox(rawId) { return el('td', {}, [el('input', { type: 'checkbox', value: String(rawId), 'aria-label': String(rawId) })]); }
  /** A member by its configured name (the id stays in the tooltip and in data-member attributes). */
  function memberName(id) {
    var found = (data.members || []).filter(function (m) { return m.id === id; })[0];
    return found && found.name ? found.name : id;
  }
  function memberTd(id) { var cell = td(memberName(id)); if (id != null) cell.title = String(id); cell.setAttribute('data-member-id', id == null ? '' : String(id)); return cell; }
  function messageLink(rawId) { return el('td', {}, [el('a', { href: '/console/messages/' + rawId, text: String(rawId) })]); }

  /** Seconds as a person reads a wait: 45 s, 12 min, 3.5 h. */
  function duration(seconds) {
    if (seconds < 120) return Math.round(seconds) + ' s';
    if (seconds < 7200) return Math.round(seconds / 60) + ' min';
    return Math.round(seconds / 360) / 10 + ' h';
  }
  /** The pipeline's lag (GET /api/channels .pipeline): flagged from the same age as the warning alert rule. */
  function showLag(lag) {
    var line = $('#pipeline-lag');
    line.setAttribute('data-queued', String(lag.queued));
    line.setAttribute('data-oldest-age-seconds', String(Math.floor(lag.oldestQueuedAgeSeconds)));
    line.className = lag.oldestQueuedAgeSeconds >= lag.warnAfterSeconds ? 'alert' : 'muted';
    line.textContent = lag.queued ? fmt(t.pipelineLag, { queued: lag.queued, age: duration(lag.oldestQueuedAgeSeconds) }) : t.pipelineIdle;
    if (lag.oldestQueuedAt) line.title = time(lag.oldestQueuedAt);
  }
  function channelsPage() {
    var body = $('#channels tbody');
    function load() {
      return api('/api/channels').then(function (r) {
        body.textContent = '';
        r.items.forEach(function (c) {
          var row = el('tr', { 'data-member': c.member, 'data-channel': c.channel, class: c.alerts.length ? 'alerting' : '' });
          row.appendChild(memberTd(c.member));
          row.appendChild(td(c.channel));
          row.appendChild(td(c.kind));
          row.appendChild(el('td', { class: 'state-' + c.state, 'data-state': c.state, text: t[c.state] || c.state }));
          [['hour', c.hour], ['day', c.day]].forEach(function (w) {
            ['received', 'acked', 'nacked', 'quarantined'].forEach(function (k) {
              var cell = td(w[1][k], 'num');
              cell.setAttribute('data-counter', k + '-' + w[0]);
              row.appendChild(cell);
            });
          });
          row.appendChild(td(time(c.lastReceivedAt)));
          var error = el('td', { 'data-last-error': '' });
          if (c.lastError) error.appendChild(el('a', { href: '/console/messages/' + c.lastError.rawId, text: c.lastError.code + ': ' + c.lastError.reason, title: time(c.lastError.at) + ' · ' + c.lastError.stage }));
          row.appendChild(error);
          var alerts = el('td', { 'data-alerts': '' });
          c.alerts.forEach(function (a) { alerts.appendChild(el('div', { class: 'alert', 'data-alert': a.kind, text: fmt(a.kind === 'silence' ? t.alertSilence : t.alertVolume, a) })); });
          row.appendChild(alerts);
          body.appendChild(row);
        });
        $('#generated').textContent = time(r.generatedAt);
        showLag(r.pipeline);
      }).catch(function (e) { $('#generated').textContent = t.error + ': ' + e.message; });
    }
    $('#refresh').addEventListener('click', load);
    load();
    setInterval(load, 10000);
  }

  function pagedSearch(tableSel, path, render) {
    var form = $('#filter');
    var body = $(tableSel + ' tbody');
    var older = $('#older');
    var last;
    function run(append) {
      var params = formQuery(form);
      if (append && last) params.set('before', String(last));
      return api(path + '?' + params.toString()).then(function (r) {
        if (!append) body.textContent = '';
        r.items.forEach(function (item) { body.appendChild(render(item)); });
        last = r.items.length ? r.items[r.items.length - 1].id : last;
        if (older) older.hidden = r.items.length < 100;
        body.setAttribute('data-loaded', String(Date.now()));
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    form.addEventListener('submit', function (ev) { ev.preventDefault(); run(false); });
    if (older) older.addEventListener('click', function () { run(true); });
    // Filters may come in the address (links from other pages): fill the form from them.
    new URLSearchParams(location.search).forEach(function (v, k) { if (form.elements[k]) form.elements[k].value = v; });
    run(false);
  }

  function messagesPage() {
    pagedSearch('#messages', '/api/messages', function (m) {
      var row = el('tr', { 'data-raw-id': String(m.id), 'data-status': m.status });
      if (data.can.replay) row.appendChild(checkbox(m.id));
      row.appendChild(messageLink(m.id));
      [time(m.received_at), m.member_id, m.channel_id, m.control_id, m.message_type, m.patient_key, m.ack_code].forEach(function (v, i) { row.appendChild(i === 1 ? memberTd(v) : td(v)); });
      row.appendChild(td(m.status + (m.open_quarantine ? ' (' + m.open_quarantine + ')' : '')));
      return row;
    });
    selectable($('#messages'));
  }

  function hexView(bytes) {
    var pre = $('#hex');
    pre.textContent = '';
    // A 16 MiB message would be a million lines: the first 64 KiB are where header and charset problems show.
    var shown = Math.min(bytes.length, 65536);
    for (var offset = 0; offset < shown; offset += 16) {
      var line = document.createDocumentFragment();
      line.appendChild(document.createTextNode(('0000000' + offset.toString(16)).slice(-8) + '  '));
      var ascii = '';
      for (var i = 0; i < 16; i++) {
        var b = bytes[offset + i];
        if (b === undefined) { line.appendChild(document.createTextNode('   ')); continue; }
        var hex = ('0' + b.toString(16)).slice(-2);
        // Bytes outside ASCII are where charset problems live: marked.
        if (b > 0x7f) line.appendChild(el('span', { class: 'hi', text: hex })); else line.appendChild(document.createTextNode(hex));
        line.appendChild(document.createTextNode(i === 7 ? '  ' : ' '));
        ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
      }
      line.appendChild(document.createTextNode(' |' + ascii + '|\n'));
      pre.appendChild(line);
    }
    if (shown < bytes.length) pre.appendChild(document.createTextNode('… ' + (bytes.length - shown) + ' more bytes\n'));
  }

  function messagePage() {
    var id = data.id;
    api('/api/messages/' + id).then(function (m) {
      var summary = $('#summary');
      [[t.member, memberName(m.member_id) + (memberName(m.member_id) !== m.member_id ? ' (' + m.member_id + ')' : '')], [t.channel, m.channel_id], [t.controlId, m.control_id], [t.type, m.message_type], [t.status, m.status], [t.received_at, time(m.received_at)],
       [t.patient, m.patient_key], [t.charset, m.charset], ['sha256', m.sha256], [t.version, m.version_id + ' / rev ' + m.revision], ['ACK', (m.ack || '').replace(/\r/g, ' ⏎ ')], ['bytes', m.size_bytes]]
        .forEach(function (p) { summary.appendChild(el('dt', { text: p[0] })); summary.appendChild(el('dd', { text: p[1] == null ? '' : String(p[1]) })); });
      var q = $('#quarantine tbody');
      if (!m.quarantine.length) q.appendChild(el('tr', {}, [el('td', { colspan: '5', class: 'muted', text: t.none })]));
      m.quarantine.forEach(function (e) { q.appendChild(el('tr', { 'data-state': e.state }, [td(time(e.created_at)), td(e.stage), td(e.code), td(e.reason + (e.location ? ' @ ' + e.location : '')), td(e.state)])); });
      if (m.decodeError) { var de = $('#decode-error'); de.hidden = false; de.textContent = t.decodeError + ': ' + m.decodeError; }
      $('#raw').textContent = m.text.replace(/\r\n?/g, '\n');
      (m.alternatives || []).forEach(function (a) {
        var box = $('#alternatives');
        box.appendChild(el('h3', { text: fmt(t.decodesAs, { charset: a.charset }) }));
        box.appendChild(el('pre', { 'data-charset': a.charset, text: a.text.replace(/\r\n?/g, '\n') }));
      });
      var binary = atob(m.contentBase64);
      var bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      hexView(bytes);
      if (m.parseError) { var pe = $('#parse-error'); pe.hidden = false; pe.textContent = m.parseError; }
      var segs = $('#segments tbody');
      (m.segments || []).forEach(function (s) {
        var row = el('tr', {}, [td(s.name, 'seg')]);
        s.fields.forEach(function (f, i) {
          if (!f) return;
          var cell = el('td', { class: 'field' }, [el('sup', { text: String(i + 1) }), f]);
          row.appendChild(cell);
        });
        segs.appendChild(row);
      });
      var res = $('#resources tbody');
      if (!m.resources.length) res.appendChild(el('tr', {}, [el('td', { colspan: '5', class: 'muted', text: t.none })]));
      m.resources.forEach(function (r) {
        var json = el('details', {}, [el('summary', { text: r.id }), el('pre', { text: JSON.stringify(r.content, null, 2) })]);
        res.appendChild(el('tr', {}, [td(r.resource_type), el('td', {}, [json]), td(r.version), td((r.mapping_versions || []).join(', ')), td((r.provenanceTargets || []).join(', '))]));
      });
      fixLinks(m);
      fixForm(m);
    }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    var one = $('#replay-one');
    if (one) one.addEventListener('click', function () { replay([id]); });
  }

  /** The fix of this message, or the original it fixes (pipeline/fix.ts): both ways, as links. */
  function fixLinks(m) {
    [['#fixed-by', m.fixedBy, t.fixedBy], ['#fix-of', m.fixOf, t.fixOf]].forEach(function (p) {
      var box = $(p[0]);
      var link = p[1];
      if (!link) return;
      box.hidden = false;
      box.appendChild(document.createTextNode(p[2] + ' '));
      box.appendChild(el('a', { href: '/console/messages/' + link.rawId, text: '#' + link.rawId }));
      box.appendChild(document.createTextNode(' (' + link.status + ') · ' + link.fixedBy + ' · ' + time(link.fixedAt) + ' · ' + link.comment));
    });
    // A fixed message is not replayed again (its fix went through instead): no replay button.
    var one = $('#replay-one');
    if (one && m.status === 'fixed') one.hidden = true;
  }

  /** Fix and replay: the textarea holds the text as the hub reads it, one segment a line. */
  function fixForm(m) {
    var section = $('#fix');
    if (!section || (m.status !== 'quarantined' && m.status !== 'failed')) return;
    // Bytes invalid in their charset: start from a reading that decodes cleanly, when there is one.
    var start = m.decodeError && m.alternatives && m.alternatives.length ? m.alternatives[0].text : m.text;
    $('#fix-text').value = start.replace(/\r\n?/g, '\n');
    section.hidden = false;
    $('#fix-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var button = $('#fix-submit');
      var n = $('#fix-notice');
      button.disabled = true;
      n.textContent = '';
      api('/api/raw-messages/' + m.id + '/fix', { method: 'POST', body: { text: $('#fix-text').value, comment: $('#fix-comment').value } })
        .then(function (r) { location.href = '/console/messages/' + r.fixId; })
        .catch(function (e) { button.disabled = false; n.textContent = t.error + ': ' + e.message; n.className = 'error'; });
    });
  }

  function deadLettersPage() {
    pagedSearch('#dead-letters', '/api/dead-letters', function (d) {
      var row = el('tr', { 'data-raw-id': String(d.raw_id) });
      if (data.can.replay) row.appendChild(checkbox(d.raw_id));
      row.appendChild(messageLink(d.raw_id));
      [time(d.created_at), d.member_id, d.channel_id, d.control_id, d.stage, d.code, d.reason + (d.location ? ' @ ' + d.location : '')].forEach(function (v, i) { row.appendChild(i === 1 ? memberTd(v) : td(v)); });
      return row;
    });
    selectable($('#dead-letters'));
  }

  function auditPage() {
    pagedSearch('#audit', '/api/audit', function (a) {
      return el('tr', { 'data-actor': a.actor }, [td(time(a.at)), td(a.actor), td(a.action), td(a.entity_type + ' ' + a.entity_id), td(a.patient_key), td(JSON.stringify(a.detail))]);
    });
  }

  var pages = { channels: channelsPage, messages: messagesPage, message: messagePage, 'dead-letters': deadLettersPage, audit: auditPage };
  // A refused or missing page has no page script to run (data.blocked).
  if (!data.blocked && pages[data.page]) pages[data.page]();
  // The governance pages' script (governance.js) builds on these.
  window.yilian = { data: data, t: t, $: $, el: el, td: td, fmt: fmt, time: time, notice: notice, api: api, formQuery: formQuery, messageLink: messageLink, memberName: memberName, memberTd: memberTd };
})();
`;
