/**
 * The script of the governance pages (mapping worklist, proposals, coverage, map history, patient
 * match review, golden patient, alliance dashboards), served from memory like console.js and loaded
 * after it: it uses console.js's helpers (window.yilian) and calls only the JSON API — the
 * terminology routes (api/terminology.ts), the patient index routes (api/patientIndex.ts) and
 * GET /api/kpi. Charts are inline SVG drawn here (no chart library). Plain browser JavaScript; it
 * must never use template literals (this file holds it in one).
 */
export const governanceJs = String.raw`
(function () {
  'use strict';
  var y = window.yilian;
  if (!y) return;
  var memberName = y.memberName, memberTd = y.memberTd;
  var data = y.data, t = y.t, $ = y.$, el = y.el, td = y.td, fmt = y.fmt, time = y.time, notice = y.notice, api = y.api;
  var SVG = 'http://www.w3.org/2000/svg';
  var palette = ['#2f6690', '#e0a030', '#3a9d5d', '#b3261e', '#7b5ea7'];

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text != null) node.textContent = text;
    return node;
  }
  function stateName(state) { return t['state_' + state] || state; }
  function pct(v) { return v == null ? '—' : (Math.round(v * 1000) / 10) + '%'; }
  function num(v) { return v == null ? '—' : Number(v).toLocaleString(data.lang === 'zh' ? 'zh-CN' : 'en-GB', { maximumFractionDigits: 2 }); }
  function qs(params) {
    var out = new URLSearchParams();
    Object.keys(params).forEach(function (k) { if (params[k] != null && params[k] !== '') out.set(k, params[k]); });
    return out.toString();
  }
  function fillFormFromAddress(form) {
    new URLSearchParams(location.search).forEach(function (v, k) { if (form && form.elements[k]) form.elements[k].value = v; });
  }

  /**
   * Grouped bar chart: categories along x, one bar per series (values may be null: no bar), y from 0
   * to max (or the largest value). opts.format labels values; opts.line adds a series drawn as a line
   * on its own scale (right axis), for a figure in other units (money beside counts).
   */
  function barChart(box, categories, series, opts) {
    opts = opts || {};
    box.textContent = '';
    if (!categories.length) { box.appendChild(el('p', { class: 'muted', 'data-empty': '', text: t.noData })); return; }
    var W = 620, H = 220, left = 46, right = opts.line ? 56 : 10, top = 10, bottom = 40;
    var plotW = W - left - right, plotH = H - top - bottom;
    var format = opts.format || num;
    var max = opts.max;
    if (max == null) {
      max = 0;
      series.forEach(function (s) { s.values.forEach(function (v) { if (v != null && v > max) max = v; }); });
      if (max === 0) max = 1;
    }
    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart', role: 'img' });
    root.appendChild(svg('title', {}, opts.title || ''));
    for (var g = 0; g <= 4; g++) {
      var gy = top + plotH - (plotH * g) / 4;
      root.appendChild(svg('line', { x1: left, x2: left + plotW, y1: gy, y2: gy, class: 'axis', 'stroke-dasharray': g ? '2 3' : '' }));
      root.appendChild(svg('text', { x: left - 4, y: gy + 3, 'text-anchor': 'end' }, format((max * g) / 4)));
    }
    var band = plotW / categories.length;
    var barW = Math.max(2, Math.min(28, (band * 0.8) / series.length));
    categories.forEach(function (c, i) {
      var x0 = left + band * i + (band - barW * series.length) / 2;
      series.forEach(function (s, j) {
        var v = s.values[i];
        if (v == null) return;
        var h = (plotH * Math.min(v, max)) / max;
        var rect = svg('rect', { x: x0 + j * barW, y: top + plotH - h, width: barW - 1, height: Math.max(h, 0.5), fill: s.color || palette[j % palette.length], 'data-series': s.key || s.name, 'data-category': c, 'data-value': String(v) });
        rect.appendChild(svg('title', {}, c + ' · ' + s.name + ': ' + format(v)));
        root.appendChild(rect);
      });
      var shown = opts.label ? opts.label(c) : c;
      var label = svg('text', { x: left + band * i + band / 2, y: H - bottom + 14, 'text-anchor': 'middle' }, shown.length > 12 ? shown.slice(0, 11) + '…' : shown);
      root.appendChild(label);
    });
    if (opts.line) {
      var lmax = 0;
      opts.line.values.forEach(function (v) { if (v != null && v > lmax) lmax = v; });
      if (lmax === 0) lmax = 1;
      var points = [];
      opts.line.values.forEach(function (v, i) {
        if (v == null) return;
        var px = left + band * i + band / 2, py = top + plotH - (plotH * v) / lmax;
        points.push(px + ',' + py);
        var dot = svg('circle', { cx: px, cy: py, r: 3, fill: opts.line.color || palette[3], 'data-series': opts.line.key, 'data-category': categories[i], 'data-value': String(v) });
        dot.appendChild(svg('title', {}, categories[i] + ' · ' + opts.line.name + ': ' + (opts.line.format || num)(v)));
        root.appendChild(dot);
      });
      root.appendChild(svg('polyline', { points: points.join(' '), fill: 'none', stroke: opts.line.color || palette[3], 'stroke-width': 2 }));
      root.appendChild(svg('text', { x: W - right + 4, y: top + 8 }, (opts.line.format || num)(lmax)));
      root.appendChild(svg('text', { x: W - right + 4, y: top + plotH }, '0'));
    }
    box.appendChild(root);
    var legend = el('div', { class: 'legend' });
    series.concat(opts.line ? [opts.line] : []).forEach(function (s, j) {
      // CSSOM, not a style attribute: the console's CSP allows no inline styles.
      var swatch = el('i');
      swatch.style.background = s.color || (s === opts.line ? palette[3] : palette[j % palette.length]);
      legend.appendChild(el('span', {}, [swatch, s.name]));
    });
    box.appendChild(legend);
  }

  // ---- mapping governance ------------------------------------------------------------------------

  /** Approved maps whose stored units do not fit the target code's property (worklist and coverage pages). */
  function unitMismatchList(items) {
    var section = $('#unit-mismatches');
    if (!section) return;
    var list = section.querySelector('tbody');
    list.textContent = '';
    (items || []).forEach(function (m) {
      list.appendChild(el('tr', { 'data-code': m.system + '|' + m.code, 'data-unit': m.unit }, [memberTd(m.member), td(m.code), td(m.target), td(m.count + ' / ' + m.total, 'num'), td(m.message)]));
    });
    section.hidden = !(items && items.length);
  }

  function worklistPage() {
    var form = $('#filter');
    var body = $('#worklist tbody');
    var panel = $('#suggest-panel');
    var current;
    function load() {
      var p = y.formQuery(form);
      return api('/api/terminology/worklist?' + p.toString()).then(function (r) {
        body.textContent = '';
        r.items.forEach(function (w) {
          var row = el('tr', { 'data-code': w.system + '|' + w.code, 'data-member': w.member });
          [w.member, w.system, w.code, w.display, w.count, time(w.last_seen)].forEach(function (v, i) { row.appendChild(i === 0 ? memberTd(v) : td(v, i === 4 ? 'num' : '')); });
          row.appendChild(w.example_raw_id ? y.messageLink(w.example_raw_id) : td(''));
          var button = el('button', { type: 'button', class: 'suggest', text: t.suggest });
          button.addEventListener('click', function () { open(w, row); });
          row.appendChild(el('td', {}, [button]));
          body.appendChild(row);
        });
        if (!r.items.length) body.appendChild(el('tr', {}, [el('td', { colspan: '8', class: 'muted', text: t.none })]));
        unitMismatchList(r.unitMismatches);
        body.setAttribute('data-loaded', String(Date.now()));
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    function open(w, row) {
      current = w;
      Array.prototype.forEach.call(body.querySelectorAll('tr.selected'), function (r) { r.classList.remove('selected'); });
      row.classList.add('selected');
      panel.hidden = false;
      $('#suggest-title').textContent = fmt(t.suggestionsFor, { code: w.code + (w.display ? ' ' + w.display : '') });
      var list = $('#suggestions tbody');
      list.textContent = '';
      notice('');
      var propose = $('#propose');
      propose.reset();
      api('/api/terminology/suggestions?' + qs({ member: w.member, system: w.system, code: w.code, display: w.display })).then(function (r) {
        if (!r.items.length) list.appendChild(el('tr', {}, [el('td', { colspan: '5', class: 'muted', text: t.noSuggestions })]));
        r.items.forEach(function (s) {
          var use = el('button', { type: 'button', class: 'use', text: '→' });
          use.addEventListener('click', function () {
            propose.elements.targetSystem.value = s.system;
            propose.elements.targetCode.value = s.code;
            propose.elements.targetDisplay.value = s.display || '';
          });
          list.appendChild(el('tr', { 'data-target': s.system + '|' + s.code, title: (s.reasons || []).join('; ') }, [td(s.system), td(s.code), td(s.display), td(Math.round(s.score * 100) / 100, 'num'), el('td', {}, [use])]));
        });
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    $('#propose').addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (!current) return;
      var f = ev.target.elements;
      var body = { sourceSystem: current.system, sourceCode: current.code, targetSystem: f.targetSystem.value, equivalence: f.equivalence.value };
      if (current.display) body.sourceDisplay = current.display;
      if (f.targetCode.value) body.targetCode = f.targetCode.value.trim();
      if (f.targetDisplay.value) body.targetDisplay = f.targetDisplay.value.trim();
      if (f.comment.value) body.comment = f.comment.value;
      api('/api/terminology/proposals', { method: 'POST', body: body }).then(function (p) {
        var n = $('#notice');
        n.className = 'muted';
        n.textContent = '';
        n.appendChild(el('a', { href: '/console/mappings/proposals?id=' + p.id, id: 'proposal-link', 'data-proposal': String(p.id), text: fmt(t.proposed, { id: p.id }) }));
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    });
    form.addEventListener('submit', function (ev) { ev.preventDefault(); load(); });
    fillFormFromAddress(form);
    load();
  }

  function proposalsPage() {
    var form = $('#filter');
    var body = $('#proposals tbody');
    var selected;
    var wanted = Number(new URLSearchParams(location.search).get('id')) || null;
    function load() {
      var state = form.elements.state.value;
      return api('/api/terminology/proposals' + (state ? '?state=' + state : '')).then(function (r) {
        body.textContent = '';
        r.items.forEach(function (p) {
          var row = el('tr', { 'data-proposal': String(p.id), 'data-state': p.state, class: selected && selected.id === p.id ? 'selected' : '' });
          row.appendChild(td(p.id));
          row.appendChild(el('td', { class: 'state-' + p.state, text: stateName(p.state) }));
          row.appendChild(td((p.source_display ? p.source_display + ' ' : '') + p.source_code, ''));
          row.lastChild.title = p.source_system;
          row.appendChild(td((p.target_code || '—') + (p.target_display ? ' ' + p.target_display : '')));
          row.lastChild.title = p.target_system;
          row.appendChild(td(p.equivalence));
          row.appendChild(td(p.proposed_by));
          row.appendChild(td(time(p.proposed_at)));
          row.addEventListener('click', function () { show(p); });
          body.appendChild(row);
          if (selected && selected.id === p.id) show(p);
          else if (!selected && wanted === p.id) show(p);
        });
        body.setAttribute('data-loaded', String(Date.now()));
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    function show(p) {
      selected = p;
      Array.prototype.forEach.call(body.querySelectorAll('tr'), function (r) { r.classList.toggle('selected', r.getAttribute('data-proposal') === String(p.id)); });
      $('#proposal-empty').hidden = true;
      var detail = $('#proposal-detail');
      detail.hidden = false;
      detail.setAttribute('data-proposal', String(p.id));
      detail.setAttribute('data-state', p.state);
      $('#proposal-title').textContent = '#' + p.id + ' · ' + stateName(p.state);
      var dl = $('#proposal-summary');
      dl.textContent = '';
      [[t.source, p.source_system + ' | ' + p.source_code + (p.source_display ? ' ' + p.source_display : '')],
       [t.target, p.target_system + ' | ' + (p.target_code || '—') + (p.target_display ? ' ' + p.target_display : '')],
       [t.equivalence, p.equivalence], [t.conceptMap, p.concept_map_url],
       [t.version, (p.base_version == null ? '—' : p.base_version) + ' → ' + (p.result_version == null ? '—' : p.result_version)], [t.comment, p.comment]]
        .forEach(function (x) { dl.appendChild(el('dt', { text: x[0] })); dl.appendChild(el('dd', { text: x[1] == null ? '' : String(x[1]) })); });
      var steps = $('#steps tbody');
      steps.textContent = '';
      (p.steps || []).forEach(function (s) { steps.appendChild(el('tr', { 'data-action': s.action }, [td(time(s.at)), td(s.action), td(s.actor), td(s.comment)])); });
      if (!data.can.decide) return;
      $('#impact-summary').textContent = '';
      $('#impact-sample').textContent = '';
      $('#run-impact').hidden = p.state !== 'proposed' && p.state !== 'approved';
      // Four eyes: the proposer is not offered the approval (the API refuses it; a rejection stays theirs to make).
      var own = !!data.fourEyes && p.proposed_by === data.actor;
      $('#approve').hidden = p.state !== 'proposed' || own;
      $('#own-proposal').hidden = !(p.state === 'proposed' && own);
      $('#reject').hidden = p.state !== 'proposed';
      $('#retire').hidden = p.state !== 'approved';
      $('#reprocess').hidden = p.state !== 'approved' && p.state !== 'retired';
      $('#decision-comment').value = '';
    }
    function impact() {
      var p = selected;
      api('/api/terminology/proposals/' + p.id + '/impact?sample=10').then(function (r) {
        var summary = $('#impact-summary');
        summary.textContent = fmt(t.impactSummary, r);
        summary.setAttribute('data-affected', String(r.affected));
        summary.setAttribute('data-would-change', String(r.wouldChange));
        var box = $('#impact-sample');
        box.textContent = '';
        // Records × elements: which elements change, in how many of the changing records.
        if ((r.elements || []).length) {
          var overview = el('table', { class: 'impact-elements', id: 'impact-elements' }, [el('thead', {}, [el('tr', {}, [el('th', { text: t.element }), el('th', { text: t.records })])])]);
          var ob = el('tbody');
          r.elements.forEach(function (e) { ob.appendChild(el('tr', { 'data-element': e.element }, [td(e.label[data.lang] || e.element), td(e.records, 'num')])); });
          overview.appendChild(ob);
          box.appendChild(overview);
        }
        r.sample.forEach(function (s, i) {
          // The first record open, the others folded: one record is usually enough to judge a mapping.
          var fold = el('details', i === 0 ? { open: '' } : {}, [el('summary', { text: s.resourceType + '/' + s.id + ' · ' + memberName(s.memberId) + ' · ' + fmt(t.fieldsChanged, { n: (s.elements || []).length || s.changes.length }) })]);
          box.appendChild(fold);
          // As the committee reads it: element, before and after as code + display.
          var readable = el('table', { class: 'impact-record', 'data-resource': s.resourceType + '/' + s.id }, [el('thead', {}, [el('tr', {}, [el('th', { text: t.element }), el('th', { text: t.before }), el('th', { text: t.after })])])]);
          var rb = el('tbody');
          (s.elements || []).forEach(function (e) {
            rb.appendChild(el('tr', { 'data-element': e.element, title: e.element }, [td(e.label[data.lang] || e.element, 'element'), td(e.before, 'diff-before'), td(e.after, 'diff-after')]));
          });
          readable.appendChild(rb);
          fold.appendChild(readable);
          // The raw field-level diff, one click away.
          var raw = el('details', { class: 'raw-diff' }, [el('summary', { text: t.rawDiff })]);
          var table = el('table', { class: 'impact', 'data-resource': s.resourceType + '/' + s.id }, [el('thead', {}, [el('tr', {}, [el('th', { text: t.field }), el('th', { text: t.before }), el('th', { text: t.after })])])]);
          var tb = el('tbody');
          s.changes.forEach(function (c) {
            tb.appendChild(el('tr', { 'data-path': c.path }, [td(c.path, 'field'), td(c.before === undefined ? '' : JSON.stringify(c.before), 'diff-before'), td(c.after === undefined ? '' : JSON.stringify(c.after), 'diff-after')]));
          });
          table.appendChild(tb);
          raw.appendChild(table);
          fold.appendChild(raw);
        });
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    function decide(action) {
      var comment = $('#decision-comment').value;
      if (action === 'reject' && !comment.trim()) { notice(t.commentRequired, true); return; }
      api('/api/terminology/proposals/' + selected.id + '/' + action, { method: 'POST', body: { comment: comment } }).then(function (r) {
        var p = r.proposal || r;
        // An approval whose stored units do not fit the target goes through, with the warning shown.
        var warnings = (r.warnings || []).join(' ');
        notice(fmt(t.decided, { id: p.id, state: stateName(p.state) }) + (warnings ? ' ' + t.unitWarning + ': ' + warnings : ''));
        if (warnings) $('#notice').setAttribute('data-warning', warnings);
        selected = p;
        return load();
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    function reprocess() {
      api('/api/terminology/proposals/' + selected.id + '/reprocess', { method: 'POST', body: {} }).then(function (job) {
        var line = $('#job');
        function show(j) { line.textContent = fmt(t.reprocessJob, j); line.setAttribute('data-state', j.state); }
        show(job);
        var timer = setInterval(function () {
          api('/api/terminology/reprocess/' + job.id).then(function (j) {
            show(j);
            if (j.state !== 'running') clearInterval(timer);
          }).catch(function (e) { clearInterval(timer); notice(t.error + ': ' + e.message, true); });
        }, 500);
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    if (data.can.decide) {
      $('#run-impact').addEventListener('click', impact);
      ['approve', 'reject', 'retire'].forEach(function (a) { $('#' + a).addEventListener('click', function () { decide(a); }); });
      $('#reprocess').addEventListener('click', reprocess);
    }
    form.addEventListener('submit', function (ev) { ev.preventDefault(); load(); });
    fillFormFromAddress(form);
    load();
  }

  function coveragePage() {
    var form = $('#filter');
    function load() {
      return api('/api/terminology/coverage?' + y.formQuery(form).toString()).then(function (r) {
        var body = $('#coverage tbody');
        body.textContent = '';
        r.rows.forEach(function (c) {
          body.appendChild(el('tr', { 'data-member': c.member, 'data-system': c.system }, [memberTd(c.member), td(c.channel), td(c.system), td(c.occurrences, 'num'), td(c.occurrencePct + '%', 'num'), td(c.distinctPct + '%', 'num')]));
        });
        // Per member: summed over channels and systems.
        var members = {};
        r.rows.forEach(function (c) {
          var m = members[c.member] || (members[c.member] = { n: 0, mapped: 0, codes: 0, mappedCodes: 0 });
          m.n += c.occurrences; m.mapped += c.mappedOccurrences; m.codes += c.distinctCodes; m.mappedCodes += c.mappedCodes;
        });
        var names = Object.keys(members).sort();
        var ratio = function (a, b) { return b ? Math.round((a / b) * 1000) / 10 : null; };
        var p100 = function (v) { return Math.round(v) + '%'; };
        barChart($('#coverage-chart'), names, [
          { key: 'occurrences', name: t.occurrencePct, values: names.map(function (m) { return ratio(members[m].mapped, members[m].n); }) },
          { key: 'distinct', name: t.distinctPct, values: names.map(function (m) { return ratio(members[m].mappedCodes, members[m].codes); }) },
        ], { max: 100, format: p100, title: t.coverage, label: memberName });
        unitMismatchList(r.unitMismatches);
        barChart($('#trend-chart'), r.trend.map(function (d) { return d.day.slice(5); }), [{ key: 'trend', name: t.occurrencePct, values: r.trend.map(function (d) { return d.occurrencePct; }) }], { max: 100, format: p100, title: t.trend });
        body.setAttribute('data-loaded', String(Date.now()));
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    form.addEventListener('submit', function (ev) { ev.preventDefault(); load(); });
    fillFormFromAddress(form);
    load();
  }

  function mapHistoryPage() {
    var select = $('#map-select'), from = $('#diff-from'), to = $('#diff-to');
    var wanted = new URLSearchParams(location.search).get('map');
    function mapId(url) { return url.split('/').pop(); }
    function loadHistory() {
      var id = select.value;
      if (!id) return Promise.resolve();
      return api('/api/terminology/maps/' + encodeURIComponent(id) + '/history').then(function (h) {
        var body = $('#versions tbody');
        body.textContent = '';
        from.textContent = ''; to.textContent = '';
        h.versions.forEach(function (v) {
          body.appendChild(el('tr', { 'data-version': String(v.version) }, [td(v.version), td(v.status), td(v.origin), td(v.created_by), td(time(v.created_at)), td(v.comment)]));
          from.appendChild(el('option', { value: String(v.version), text: String(v.version) }));
          to.appendChild(el('option', { value: String(v.version), text: String(v.version) }));
        });
        var n = h.versions.length;
        if (n) { to.value = String(h.versions[n - 1].version); from.value = String(h.versions[Math.max(0, n - 2)].version); }
        var events = $('#map-events tbody');
        events.textContent = '';
        h.events.forEach(function (e) { events.appendChild(el('tr', {}, [td(time(e.at)), td(e.action), td(e.actor), td(e.version), td(e.comment)])); });
        body.setAttribute('data-loaded', String(Date.now()));
        if (n) return diff();
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    function target(e) { return e ? (e.target || []).map(function (x) { return (x.code || '—') + (x.display ? ' ' + x.display : '') + ' (' + x.equivalence + ')'; }).join('; ') : ''; }
    function diff() {
      return api('/api/terminology/maps/' + encodeURIComponent(select.value) + '/diff?from=' + from.value + '&to=' + to.value).then(function (d) {
        $('#diff-range').textContent = d.from + ' → ' + d.to;
        var body = $('#map-diff tbody');
        body.textContent = '';
        if (!d.changes.length) body.appendChild(el('tr', {}, [el('td', { colspan: '4', class: 'muted', text: t.none })]));
        d.changes.forEach(function (c) {
          body.appendChild(el('tr', { 'data-change': c.change, 'data-code': c.code }, [td(c.change), td(c.code), td(target(c.before), 'diff-before'), td(target(c.after), 'diff-after')]));
        });
        body.setAttribute('data-loaded', String(Date.now()));
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    api('/fhir/ConceptMap').then(function (bundle) {
      (bundle.entry || []).forEach(function (e) {
        var id = e.resource.id || mapId(e.resource.url);
        select.appendChild(el('option', { value: id, text: (e.resource.title || id) + ' · v' + e.resource.version }));
      });
      if (wanted) select.value = wanted;
      return loadHistory();
    }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    select.addEventListener('change', loadHistory);
    $('#map-form').addEventListener('submit', function (ev) { ev.preventDefault(); diff(); });
  }

  /** The entries in force of one map: source → target, the version each took its form in, who approved it. */
  function mapEntriesPage() {
    var select = $('#map-select');
    var wanted = new URLSearchParams(location.search).get('map');
    function load() {
      var id = select.value;
      if (!id) return Promise.resolve();
      var link = $('#history-link');
      link.href = '/console/mappings/history?map=' + encodeURIComponent(id);
      return api('/api/terminology/maps/' + encodeURIComponent(id) + '/entries').then(function (r) {
        $('#entries-title').textContent = fmt(t.entriesOf, { title: r.title || r.id, version: r.version, n: r.entries.length });
        link.href = r.history.console;
        var body = $('#map-entries tbody');
        body.textContent = '';
        if (!r.entries.length) body.appendChild(el('tr', {}, [el('td', { colspan: '9', class: 'muted', text: t.none })]));
        r.entries.forEach(function (e) {
          var version = el('td', {}, [el('a', { href: r.history.console, text: String(e.version) })]);
          var row = el('tr', { 'data-code': e.sourceSystem + '|' + e.sourceCode, 'data-target': e.targetSystem + '|' + (e.targetCode || '') },
            [td(e.sourceSystem), td(e.sourceCode), td(e.sourceDisplay), td(e.targetCode || '—'), td(e.targetDisplay), td(e.equivalence), version, td(e.approvedBy), td(time(e.approvedAt))]);
          row.lastChild.previousSibling.title = e.origin + (e.proposalId ? ' · #' + e.proposalId : '');
          row.children[3].title = e.targetSystem;
          body.appendChild(row);
        });
        body.setAttribute('data-loaded', String(Date.now()));
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    api('/fhir/ConceptMap').then(function (bundle) {
      (bundle.entry || []).forEach(function (e) {
        var id = e.resource.id || e.resource.url.split('/').pop();
        select.appendChild(el('option', { value: id, text: (e.resource.title || id) + ' · v' + e.resource.version }));
      });
      if (wanted) select.value = wanted;
      return load();
    }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    select.addEventListener('change', load);
    $('#map-form').addEventListener('submit', function (ev) { ev.preventDefault(); load(); });
  }

  // ---- patient match review ----------------------------------------------------------------------

  var personFields = ['family', 'given', 'birthDate', 'sex', 'residentId', 'phone', 'address', 'city', 'postcode'];

  function goldenLink(id) { return el('a', { href: '/console/patients/' + encodeURIComponent(id), text: id }); }

  function reviewPage() {
    var box = $('#review-queue');
    function load() {
      return api('/api/mpi/review?limit=50').then(function (r) {
        box.textContent = '';
        if (!r.items.length) box.appendChild(el('p', { class: 'muted', id: 'review-empty', text: t.emptyQueue }));
        r.items.forEach(function (item) { box.appendChild(pair(item)); });
        box.setAttribute('data-loaded', String(Date.now()));
      }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
    }
    function pair(item) {
      var card = el('section', { class: 'pair', 'data-member': item.member, 'data-mrn': item.mrn, 'data-golden': item.goldenId });
      // The member by its configured name (its id on hover), as everywhere in the console.
      var who = el('strong', { text: memberName(item.member) + ' · ' + item.mrn, title: item.member + '|' + item.mrn, 'data-member-id': item.member });
      var head = el('div', { class: 'toolbar' }, [who, ' → ', goldenLink(item.goldenId),
        el('span', { class: 'muted', text: t.score + ' ' + (item.score == null ? '—' : Math.round(item.score * 100) / 100) + (item.rule ? ' · ' + t.rule + ' ' + item.rule : '') + ' · ' + t.since + ' ' + time(item.since) })]);
      if (item.currentGoldenId) head.appendChild(el('span', {}, [t.currentGolden + ' ', goldenLink(item.currentGoldenId)]));
      card.appendChild(head);
      var source = item.source || {}, candidate = item.candidate || {};
      var sideBySide = el('table', { class: 'side-by-side' }, [el('thead', {}, [el('tr', {}, [el('th', { text: t.field }), el('th', { text: t.sourceRecord }), el('th', { text: t.candidate })])])]);
      var sb = el('tbody');
      personFields.forEach(function (f) {
        var a = source[f], b = candidate[f];
        if (a == null && b == null) return;
        var cls = a != null && b != null ? (String(a) === String(b) ? 'agree' : 'disagree') : '';
        sb.appendChild(el('tr', { 'data-field': f }, [td(f), td(a, cls), td(b, cls)]));
      });
      sideBySide.appendChild(sb);
      var fields = (item.breakdown && (item.breakdown.fields || (item.breakdown.nearest && item.breakdown.nearest.fields))) || [];
      var scores = el('table', { class: 'breakdown' }, [el('thead', {}, [el('tr', {}, [el('th', { text: t.field }), el('th', { text: t.level }), el('th', { text: t.weight })])])]);
      var scb = el('tbody');
      fields.forEach(function (f) {
        scb.appendChild(el('tr', { 'data-field': f.field }, [td(f.field), td((f.label || '') + (f.level == null ? '' : ' (' + f.level + ')')), td((f.weight > 0 ? '+' : '') + Math.round(f.weight * 100) / 100, 'num ' + (f.weight > 0 ? 'pos' : f.weight < 0 ? 'neg' : ''))]));
      });
      scores.appendChild(scb);
      card.appendChild(el('div', { class: 'cols' }, [sideBySide, scores]));
      if (data.can.reviewDecide) {
        var reason = el('input', { class: 'reason', maxlength: '2000', placeholder: t.reason, 'aria-label': t.reason, size: '50' });
        var link = el('button', { type: 'button', class: 'link', text: t.link });
        var notLink = el('button', { type: 'button', class: 'not-link', text: t.notLink });
        var decide = function (decision) {
          api('/api/mpi/review/decision', { method: 'POST', body: { member: item.member, mrn: item.mrn, goldenId: item.goldenId, decision: decision, reason: reason.value || undefined } }).then(function (r) {
            notice(fmt(t.linked, { member: item.member, mrn: item.mrn, golden: r.goldenId }));
            $('#notice').setAttribute('data-decided', item.member + '|' + item.mrn + '|' + decision + '|' + r.goldenId);
            return load();
          }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
        };
        link.addEventListener('click', function () { decide('link'); });
        notLink.addEventListener('click', function () { decide('not-link'); });
        card.appendChild(el('div', { class: 'toolbar' }, [reason, link, notLink]));
      }
      return card;
    }
    load();
  }

  function patientPage() {
    var id = data.id;
    $('#golden-id').textContent = id;
    api('/api/mpi/patients/' + encodeURIComponent(id)).then(function (g) {
      var dl = $('#golden-summary');
      [[t.state, g.state + (g.mergedInto ? ' → ' + g.mergedInto : '')]].concat(personFields.map(function (f) { return [f, (g.survivor || {})[f]]; }))
        .forEach(function (x) { if (x[1] == null) return; dl.appendChild(el('dt', { text: x[0] })); dl.appendChild(el('dd', { text: String(x[1]) + (g.survivor && g.survivor.from && g.survivor.from[x[0]] ? '  ← ' + g.survivor.from[x[0]] : '') })); });
      var sources = $('#golden-sources tbody');
      g.sources.forEach(function (s) { sources.appendChild(el('tr', { 'data-source': s.member + '|' + s.mrn }, [memberTd(s.member), td(s.mrn), td(s.mode), td(s.rule), td(s.score == null ? '' : Math.round(s.score * 100) / 100, 'num'), td(s.patientResourceId)])); });
      var history = $('#golden-history tbody');
      g.history.forEach(function (h) { history.appendChild(el('tr', { 'data-action': h.action }, [td(time(h.at)), td(h.action), td(h.actor), memberTd(h.member_id), td(h.mrn), td(JSON.stringify(h.detail))])); });
      history.setAttribute('data-loaded', String(Date.now()));
    }).catch(function (e) { notice(t.error + ': ' + e.message, true); });
  }

  // ---- alliance dashboards -----------------------------------------------------------------------

  function dashboardPage() {
    var form = $('#filter');
    var missing = $('#kpi-unavailable');
    function card(label, value, key) {
      return el('div', { class: 'card', 'data-kpi': key }, [el('div', { class: 'label', text: label }), el('div', { class: 'value', text: value })]);
    }
    function load() {
      var params = y.formQuery(form);
      // The month inputs give YYYY-MM, which is what /api/kpi takes.
      return fetch('/api/kpi?' + params.toString(), { headers: { accept: 'application/json' }, credentials: 'same-origin' }).then(function (res) {
        if (res.status === 401) { location.href = '/console/login?next=' + encodeURIComponent(location.pathname + location.search); return; }
        return res.json().catch(function () { return {}; }).then(function (body) {
          // No route (a hub without the KPI module): say so rather than draw zeros.
          if (res.status === 404) throw new Error(fmt(t.kpiUnavailable, { reason: '404 ' + (body.message || res.statusText) }));
          if (!res.ok) throw new Error(t.error + ': ' + res.status + ' ' + (body.message || res.statusText));
          render(body);
        });
      }).catch(function (e) {
        $('#kpi').hidden = true;
        missing.hidden = false;
        missing.textContent = e.message;
      });
    }
    function render(k) {
      missing.hidden = true;
      $('#kpi').hidden = false;
      var T = k.totals, cur = T.duplicates.currency || '';
      $('#kpi-rules').textContent = t.judgedBy + ': ' + (k.rules === 'current' ? t.rulesCurrent : t.rulesAtTime);
      $('#kpi-rules').setAttribute('data-rules', k.rules || 'at-time');
      var cards = $('#kpi-cards');
      cards.textContent = '';
      cards.appendChild(card(t.recognitionRate, pct(T.recognition.rate), 'recognition'));
      cards.appendChild(card(t.repeats, num(T.duplicates.repeats), 'repeats'));
      cards.appendChild(card(t.avoidedCost, num(T.duplicates.avoidedCost) + ' ' + cur, 'avoided'));
      cards.appendChild(card(t.wastedCost, num(T.duplicates.wastedCost) + ' ' + cur, 'wasted'));
      cards.appendChild(card(t.referralsUp + ' / ' + t.referralsDown, num(T.referrals.up) + ' / ' + num(T.referrals.down) + ' (' + pct(T.referrals.upRate) + ' / ' + pct(T.referrals.downRate) + ')', 'referrals'));
      cards.appendChild(card(t.sharingRate, pct(T.devices.sharingRate) + ' · ' + num(T.devices.exams) + ' ' + t.exams, 'sharing'));
      var months = k.months.map(function (m) { return m.month; });
      var rate = function (v) { return v == null ? '—' : Math.round(v) + '%'; };
      barChart($('#chart-recognition'), months, [{ key: 'recognition', name: t.recognitionRate, values: k.months.map(function (m) { return m.recognition.rate == null ? null : Math.round(m.recognition.rate * 1000) / 10; }) }], { max: 100, format: rate });
      barChart($('#chart-duplicates'), months, [
        { key: 'repeats', name: t.repeats, values: k.months.map(function (m) { return m.duplicates.repeats; }) },
        { key: 'recognised', name: t.recognised, values: k.months.map(function (m) { return m.recognition.recognised; }) },
      ], { line: { key: 'avoidedCost', name: t.avoidedCost + ' (' + cur + ')', values: k.months.map(function (m) { return m.duplicates.avoidedCost; }) } });
      barChart($('#chart-referrals'), months, [
        { key: 'up', name: t.referralsUp, values: k.months.map(function (m) { return m.referrals.up; }) },
        { key: 'down', name: t.referralsDown, values: k.months.map(function (m) { return m.referrals.down; }) },
      ]);
      barChart($('#chart-devices'), k.devices.map(function (d) { return d.name || d.deviceId; }), [
        { key: 'sharing', name: t.sharingRate, values: k.devices.map(function (d) { return d.sharingRate == null ? null : Math.round(d.sharingRate * 1000) / 10; }) },
      ], { max: 100, format: rate });
      var devices = $('#kpi-devices tbody');
      devices.textContent = '';
      k.devices.forEach(function (d) { devices.appendChild(el('tr', { 'data-device': d.deviceId }, [td(d.name || d.deviceId), td(d.modality), memberTd(d.ownerMember), td(d.exams, 'num'), td(d.minutes, 'num'), td(d.otherMemberExams, 'num'), td(pct(d.sharingRate), 'num')])); });
      var pairs = $('#kpi-pairs tbody');
      pairs.textContent = '';
      k.memberPairs.forEach(function (p) { pairs.appendChild(el('tr', {}, [memberTd(p.firstMember), memberTd(p.repeatMember), td(p.repeats, 'num'), td(num(p.wastedCost) + ' ' + cur, 'num')])); });
      $('#kpi').setAttribute('data-loaded', String(Date.now()));
    }
    form.addEventListener('submit', function (ev) { ev.preventDefault(); var bad = $('#bad-request'); if (bad) bad.hidden = true; load(); });
    // The rules toggle redraws at once: it is a different reading of the same months, not a new search.
    form.elements.rules.addEventListener('change', function () { load(); });
    fillFormFromAddress(form);
    // The page answered 400 (a month in the address that is no month): the message stands, nothing is drawn.
    if (data.invalid) return;
    load();
  }

  var pages = { mappings: worklistPage, proposals: proposalsPage, coverage: coveragePage, 'map-entries': mapEntriesPage, 'map-history': mapHistoryPage, review: reviewPage, patient: patientPage, dashboard: dashboardPage };
  if (!data.blocked && pages[data.page]) pages[data.page]();
})();
`;
