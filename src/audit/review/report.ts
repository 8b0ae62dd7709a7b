/**
 * `waygate audit report --html out.html`: one self-contained HTML file an auditor can open from
 * an e-mail or a CI artifact. No network fetch of any kind (inline CSS, inline JS, SVG drawn by
 * that JS; a Content-Security-Policy of `default-src 'none'` makes the browser enforce it).
 *
 * Every string in the data is attacker-controlled in principle (a principal, a host, a header),
 * so: the data travels as JSON in a `<script type="application/json">` block with `<`, `>`, `&`,
 * U+2028/2029 escaped as `\u00xx` (no `</script>` or `<!--` can end the block early), and the page
 * renders it only through `textContent` and SVG attributes, never `innerHTML`.
 */
import type { AuditRecord } from '../record.ts';
import type { ReadStats } from './reader.ts';
import { SummaryAccumulator, type AuditSummary, type SummaryOptions } from './summary.ts';

export interface DenyRow {
  time: string;
  principal: string;
  namespace: string;
  sourceIp: string;
  destination: string;
  reason: string;
  status: number;
  policy: string;
  rule: string;
  decisionId: string;
}

export interface ReportData {
  title: string;
  generatedAt: string;
  summary: AuditSummary;
  /** The most recent denies (at most `maxDenies`), oldest first. */
  denies: DenyRow[];
  deniesTotal: number;
}

export interface ReportOptions extends SummaryOptions {
  title?: string;
  /** Deny rows embedded in the table; default 5000 (a ring buffer keeps the latest). */
  maxDenies?: number;
}

/** Summary plus a bounded ring buffer of the latest denies. */
export class ReportAccumulator {
  private readonly summary: SummaryAccumulator;
  private readonly ring: DenyRow[] = [];
  private next = 0;
  private total = 0;
  private readonly max: number;
  private readonly since: number;
  private readonly until: number;

  constructor(private readonly options: ReportOptions = {}) {
    this.summary = new SummaryAccumulator(options);
    this.max = options.maxDenies ?? 5000;
    this.since = options.sinceMs ?? -Infinity;
    this.until = options.untilMs ?? Infinity;
  }

  add(rec: AuditRecord): void {
    this.summary.add(rec);
    if (rec.event !== 'decision' || rec.decision !== 'deny') return;
    if (this.options.sinceMs != null || this.options.untilMs != null) {
      const t = Date.parse(rec.time);
      if (!(t >= this.since && t < this.until)) return;
    }
    this.total++;
    const d = rec.destination;
    const row: DenyRow = {
      time: rec.time,
      principal: rec.source.principal || '(no identity)',
      namespace: rec.source.namespace || '',
      sourceIp: rec.source.ip,
      destination: d.authority || `${d.ip}:${d.port}`,
      reason: rec.reason,
      status: rec.status,
      policy: rec.policy ?? '',
      rule: rec.rule ?? '',
      decisionId: rec.decisionId,
    };
    if (this.ring.length < this.max) this.ring.push(row);
    else this.ring[this.next] = row;
    this.next = (this.next + 1) % this.max;
  }

  result(stats: ReadStats, generatedAt: Date = new Date()): ReportData {
    const denies = this.ring.length < this.max ? [...this.ring] : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
    return {
      title: this.options.title ?? 'waygate audit report',
      generatedAt: generatedAt.toISOString(),
      summary: this.summary.result(stats),
      denies,
      deniesTotal: this.total,
    };
  }
}

/** Escapes text for an HTML text or attribute context. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON safe to embed in a `<script>` block: no `<`, `>`, `&`, U+2028 or U+2029 survive literally. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Renders the whole report document. */
export function renderHtmlReport(data: ReportData): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(data.title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
  <h1>${escapeHtml(data.title)}</h1>
  <p class="meta" id="meta"></p>
</header>
<main>
  <section class="kpis" id="kpis"></section>
  <section class="card wide"><h2>Decisions over time</h2><div id="chart-time" class="chart"></div></section>
  <div class="grid">
    <section class="card"><h2>Top denied identities</h2><div id="chart-denied" class="chart"></div></section>
    <section class="card"><h2>Rule hits</h2><div id="chart-rules" class="chart"></div><div id="never-fired"></div></section>
    <section class="card"><h2>Dry-run impact</h2><div id="chart-dryrun" class="chart"></div></section>
    <section class="card"><h2>Reasons</h2><div id="chart-reasons" class="chart"></div></section>
  </div>
  <section class="card wide">
    <h2>Denied decisions</h2>
    <div class="filters">
      <input id="deny-filter" type="search" placeholder="Filter by identity, destination, policy, rule..." aria-label="Filter denies">
      <select id="reason-filter" aria-label="Reason"><option value="">all reasons</option></select>
      <span id="deny-count" class="muted"></span>
    </div>
    <div class="table-wrap"><table id="deny-table"><thead><tr>
      <th>time</th><th>identity</th><th>source</th><th>destination</th><th>reason</th><th>status</th><th>policy / rule</th>
    </tr></thead><tbody></tbody></table></div>
  </section>
  <section class="card wide" id="issues-card" hidden><h2>Skipped lines</h2><ul id="issues"></ul></section>
</main>
<script type="application/json" id="report-data">${jsonForScript(data)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

const CSS = `
:root { --allow: #2e8b57; --deny: #c0392b; --audit: #2c6fbb; --dry: #d68910; --fg: #1d232a; --muted: #6b7580; --bg: #f5f6f8; --card: #fff; --line: #e3e6ea; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 18px 28px 8px; }
h1 { margin: 0; font-size: 22px; }
h2 { margin: 0 0 10px; font-size: 15px; font-weight: 600; }
.meta, .muted { color: var(--muted); }
main { padding: 0 28px 28px; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0 16px; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.kpi .v { font-size: 22px; font-weight: 600; }
.kpi .l { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.kpi.deny .v { color: var(--deny); } .kpi.allow .v { color: var(--allow); } .kpi.dry .v { color: var(--dry); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 16px; min-width: 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
.grid .card { margin-bottom: 0; }
.grid { margin-bottom: 16px; }
.chart svg { display: block; width: 100%; height: auto; }
.chart text { font-size: 11px; fill: var(--fg); }
.chart .axis { fill: var(--muted); }
.chart svg.hbar text { font-size: 13px; }
.legend { display: flex; gap: 14px; font-size: 12px; color: var(--muted); margin-top: 4px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.filters { display: flex; gap: 10px; align-items: center; margin-bottom: 10px; flex-wrap: wrap; }
.filters input { flex: 1; min-width: 240px; padding: 6px 10px; border: 1px solid var(--line); border-radius: 6px; font: inherit; }
.filters select { padding: 6px; border: 1px solid var(--line); border-radius: 6px; font: inherit; }
.table-wrap { max-height: 560px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { position: sticky; top: 0; background: #fafbfc; font-weight: 600; }
td.id { max-width: 380px; overflow: hidden; text-overflow: ellipsis; }
.empty { color: var(--muted); font-style: italic; }
ul#issues { margin: 0; padding-left: 18px; font-family: ui-monospace, monospace; font-size: 12px; }
.never { margin-top: 10px; font-size: 12px; }
.never b { color: var(--dry); }
`;

/*
 * The page script. Plain ES2019, no framework: it reads the JSON block and draws with
 * createElementNS/textContent only, so no data string is ever parsed as markup.
 */
const SCRIPT = `
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var S = data.summary;
  var SVG = 'http://www.w3.org/2000/svg';
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function fmt(n) { return Number(n).toLocaleString('en-US'); }
  // Middle ellipsis: SPIFFE IDs and policy/rule names differ at their ends, not their prefixes.
  function trunc(s, n) { s = String(s); if (s.length <= n) return s; var tail = Math.ceil(n * 0.6); return s.slice(0, n - tail - 1) + '\\u2026' + s.slice(s.length - tail); }
  function empty(host, text) { host.appendChild(el('p', { 'class': 'empty' }, text)); }

  document.getElementById('meta').textContent =
    fmt(S.input.records) + ' records from ' + S.input.files + ' input(s)' +
    (S.window.first ? ', ' + S.window.first + ' \\u2013 ' + S.window.last : '') +
    '. Generated ' + data.generatedAt + '.';

  var kpis = document.getElementById('kpis');
  [['Decisions', S.decisions.total, ''], ['Allowed', S.decisions.allow, 'allow'], ['Denied', S.decisions.deny, 'deny'],
   ['Dry-run would deny', S.dryRun.wouldDeny, 'dry'], ['Closed tunnels', S.closes.count, ''],
   ['Skipped lines', S.input.malformed + S.input.unknownSchema, '']].forEach(function (k) {
    var d = el('div', { 'class': 'kpi ' + k[2] });
    d.appendChild(el('div', { 'class': 'v' }, fmt(k[1])));
    d.appendChild(el('div', { 'class': 'l' }, k[0]));
    kpis.appendChild(d);
  });

  // Decisions over time: stacked bars (allow below, deny on top).
  (function () {
    var host = document.getElementById('chart-time');
    var b = S.timeline.buckets;
    if (!b.length) return empty(host, 'No decisions.');
    var W = 1000, H = 260, L = 56, R = 10, T = 10, B = 40;
    var max = 1;
    b.forEach(function (x) { if (x.allow + x.deny > max) max = x.allow + x.deny; });
    var svg = sv('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'Decisions over time', 'data-chart': 'time' });
    var bw = (W - L - R) / b.length;
    for (var g = 0; g <= 4; g++) {
      var gy = T + (H - T - B) * (1 - g / 4);
      svg.appendChild(sv('line', { x1: L, x2: W - R, y1: gy, y2: gy, stroke: '#e3e6ea' }));
      svg.appendChild(sv('text', { x: L - 6, y: gy + 4, 'text-anchor': 'end', 'class': 'axis' }, fmt(Math.round(max * g / 4))));
    }
    var every = Math.ceil(b.length / 8);
    b.forEach(function (x, i) {
      var x0 = L + i * bw + Math.min(2, bw * 0.1);
      var w = Math.max(1, bw - 2 * Math.min(2, bw * 0.1));
      var ha = (H - T - B) * x.allow / max, hd = (H - T - B) * x.deny / max;
      var base = H - B;
      var ra = sv('rect', { x: x0, y: base - ha, width: w, height: ha, fill: 'var(--allow)', 'class': 'bar allow' });
      ra.appendChild(sv('title', null, x.start + ': ' + fmt(x.allow) + ' allowed'));
      var rd = sv('rect', { x: x0, y: base - ha - hd, width: w, height: hd, fill: 'var(--deny)', 'class': 'bar deny' });
      rd.appendChild(sv('title', null, x.start + ': ' + fmt(x.deny) + ' denied'));
      svg.appendChild(ra); svg.appendChild(rd);
      if (i % every === 0) {
        svg.appendChild(sv('text', { x: x0, y: H - B + 16, 'class': 'axis' }, x.start.replace('T', ' ').slice(5, 16)));
      }
    });
    svg.appendChild(sv('text', { x: W - R, y: H - 6, 'text-anchor': 'end', 'class': 'axis' },
      'bucket ' + Math.round(S.timeline.bucketMs / 1000) + ' s (UTC)'));
    host.appendChild(svg);
    var lg = el('div', { 'class': 'legend' });
    [['allow', 'allowed'], ['deny', 'denied']].forEach(function (p) {
      var s = el('span'); var i = el('i'); i.style.background = 'var(--' + p[0] + ')'; s.appendChild(i);
      s.appendChild(document.createTextNode(p[1])); lg.appendChild(s);
    });
    host.appendChild(lg);
  })();

  // Horizontal bar chart: rows of [label, [values...]] with one colour per series.
  function hbars(hostId, rows, colors, names, chartName) {
    var host = document.getElementById(hostId);
    if (!rows.length) return empty(host, 'Nothing to show.');
    var W = 560, LW = 270, row = 24, H = rows.length * row + 6;
    var max = 1;
    rows.forEach(function (r) { var t = r[1].reduce(function (a, b) { return a + b; }, 0); if (t > max) max = t; });
    var svg = sv('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'data-chart': chartName, 'class': 'hbar' });
    rows.forEach(function (r, i) {
      var y = i * row + 3;
      var label = sv('text', { x: LW - 6, y: y + 15, 'text-anchor': 'end' }, trunc(r[0], 38));
      label.appendChild(sv('title', null, r[0]));
      svg.appendChild(label);
      var x = LW, total = 0;
      r[1].forEach(function (v, j) {
        var w = (W - LW - 60) * v / max;
        if (v > 0) {
          var rect = sv('rect', { x: x, y: y + 2, width: Math.max(1, w), height: row - 6, fill: colors[j], 'class': 'bar', rx: 2 });
          rect.appendChild(sv('title', null, r[0] + ': ' + fmt(v) + ' ' + names[j]));
          svg.appendChild(rect);
        }
        x += w; total += v;
      });
      svg.appendChild(sv('text', { x: x + 5, y: y + 15, 'class': 'axis' }, fmt(total)));
    });
    host.appendChild(svg);
    if (names.length > 1) {
      var lg = el('div', { 'class': 'legend' });
      names.forEach(function (n, j) { var s = el('span'); var i = el('i'); i.style.background = colors[j]; s.appendChild(i); s.appendChild(document.createTextNode(n)); lg.appendChild(s); });
      host.appendChild(lg);
    }
  }

  hbars('chart-denied', S.topDenied.principals.map(function (e) { return [e.key, [e.count]]; }), ['var(--deny)'], ['denies'], 'denied');
  hbars('chart-rules', S.rules.slice(0, 15).map(function (r) { return [r.policy + '/' + r.rule, [r.decided, r.audit, r.dryRun, r.evalErrors]]; }),
    ['var(--allow)', 'var(--audit)', 'var(--dry)', 'var(--deny)'], ['decided', 'audit match', 'dry-run match', 'eval error'], 'rules');
  if (S.neverFired) {
    var nf = document.getElementById('never-fired');
    var p = el('p', { 'class': 'never' });
    p.appendChild(el('b', null, S.neverFired.length + ' rule(s) never fired'));
    if (S.neverFired.length) p.appendChild(document.createTextNode(': ' + S.neverFired.map(function (r) { return r.policy + '/' + r.rule; }).join(', ')));
    nf.appendChild(p);
  }
  hbars('chart-dryrun', S.dryRun.byPolicy.filter(function (p) { return p.wouldDeny + p.wouldAllow > 0; }).map(function (p) { return [p.policy, [p.wouldDeny, p.wouldAllow]]; }),
    ['var(--deny)', 'var(--allow)'], ['would deny', 'would allow'], 'dryrun');
  hbars('chart-reasons', S.reasons.filter(function (r) { return r.count > 0; }).map(function (r) { return [r.reason, [r.count]]; }),
    ['var(--audit)'], ['decisions'], 'reasons');

  // Filterable table of denies.
  var tbody = document.querySelector('#deny-table tbody');
  var rows = [];
  var reasons = {};
  data.denies.slice().reverse().forEach(function (d) {
    var tr = el('tr');
    [d.time, d.principal, d.sourceIp, d.destination, d.reason, d.status, d.policy ? d.policy + '/' + d.rule : ''].forEach(function (c, i) {
      var td = el('td', i === 1 ? { 'class': 'id', title: d.principal } : null, c);
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    reasons[d.reason] = (reasons[d.reason] || 0) + 1;
    rows.push({ tr: tr, reason: d.reason, text: [d.time, d.principal, d.namespace, d.sourceIp, d.destination, d.reason, d.policy, d.rule, d.decisionId].join(' ').toLowerCase() });
  });
  var sel = document.getElementById('reason-filter');
  Object.keys(reasons).sort().forEach(function (r) { sel.appendChild(el('option', { value: r }, r + ' (' + reasons[r] + ')')); });
  var input = document.getElementById('deny-filter');
  var count = document.getElementById('deny-count');
  function apply() {
    var q = input.value.trim().toLowerCase();
    var r = sel.value;
    var shown = 0;
    rows.forEach(function (x) {
      var ok = (!r || x.reason === r) && (!q || x.text.indexOf(q) !== -1);
      x.tr.style.display = ok ? '' : 'none';
      if (ok) shown++;
    });
    count.textContent = 'showing ' + fmt(shown) + ' of ' + fmt(rows.length) +
      (data.deniesTotal > rows.length ? ' (latest of ' + fmt(data.deniesTotal) + ' denies)' : '');
  }
  input.addEventListener('input', apply);
  sel.addEventListener('change', apply);
  apply();

  if (S.input.issues.length) {
    document.getElementById('issues-card').hidden = false;
    var ul = document.getElementById('issues');
    S.input.issues.forEach(function (i) { ul.appendChild(el('li', null, i.file + ':' + i.line + ': ' + i.kind + ': ' + i.detail)); });
    var more = S.input.malformed + S.input.unknownSchema - S.input.issues.length;
    if (more > 0) ul.appendChild(el('li', null, '... and ' + more + ' more'));
  }
})();
`;
