// Live migration dashboard (browser side).
//
// Data flow: one GET /api/snapshot for a fast first paint, then an EventSource on /api/stream whose
// `snapshot` events each carry the full snapshot JSON. When the server requires a token (non-localhost
// bind) it is taken from this page's URL (?token=...) and appended to both API URLs; it is never shown.
//
// All data is written with textContent / attributes (never innerHTML), so snapshot strings cannot
// inject markup.

const $ = (id) => document.getElementById(id);
const q = (sel) => document.querySelector(sel);

// ---------------------------------------------------------------------------------------------
// Token-aware API URLs

const TOKEN = new URLSearchParams(location.search).get('token');

function apiUrl(path) {
  return TOKEN ? `${path}?token=${encodeURIComponent(TOKEN)}` : path;
}

// ---------------------------------------------------------------------------------------------
// DOM helpers

/** h('td', {class: 'num', dataset: {value: 1}}, 'text', childNode, null, [more]) */
function h(tag, attrs, ...children) {
  const el = document.createElementNS(
    tag === 'svg' || SVG_TAGS.has(tag) ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml',
    tag,
  );
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'dataset') {
        for (const [dk, dv] of Object.entries(v)) if (dv !== null && dv !== undefined) el.dataset[dk] = String(dv);
      } else if (k === 'text') {
        el.textContent = String(v);
      } else if (k === 'style') {
        // Through the CSSOM: the server's Content-Security-Policy refuses style attributes.
        el.style.cssText = String(v);
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }
  append(el, children);
  return el;
}
const SVG_TAGS = new Set(['g', 'path', 'line', 'text', 'rect', 'circle', 'polyline', 'title']);

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

function setText(el, text) {
  const t = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== t) el.textContent = t;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const DASH = '—';

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

function fmtInt(v) {
  return isNum(v) ? nf0.format(Math.round(v)) : DASH;
}

function fmtRate(v) {
  if (!isNum(v)) return DASH;
  return Math.abs(v) < 10 ? nf1.format(v) : nf0.format(Math.round(v));
}

function fmtCompact(v) {
  if (!isNum(v)) return DASH;
  const a = Math.abs(v);
  if (a >= 1e9) return `${nf1.format(v / 1e9)}G`;
  if (a >= 1e6) return `${nf1.format(v / 1e6)}M`;
  if (a >= 1e4) return `${nf0.format(v / 1e3)}k`;
  if (a >= 1e3) return `${nf1.format(v / 1e3)}k`;
  return fmtRate(v);
}

function fmtBytes(v) {
  if (!isNum(v)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let n = Math.abs(v);
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  const s = i === 0 ? nf0.format(n) : n < 10 ? nf1.format(n) : nf0.format(n);
  return `${v < 0 ? '-' : ''}${s} ${units[i]}`;
}

function fmtDuration(sec) {
  if (!isNum(sec)) return DASH;
  if (sec < 0) sec = 0;
  if (sec < 10) return `${nf1.format(sec)} s`;
  let s = Math.round(sec);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  const p2 = (n) => String(n).padStart(2, '0');
  if (d > 0) return `${d}d ${hh}h ${p2(mm)}m`;
  if (hh > 0) return `${hh}h ${p2(mm)}m ${p2(s)}s`;
  if (mm > 0) return `${mm}m ${p2(s)}s`;
  return `${s} s`;
}

/** Stopwatch style, tenths: 7.3 s, 1:02.4, 1:02:03.4 */
function fmtStopwatch(sec) {
  if (!isNum(sec)) return DASH;
  if (sec < 0) sec = 0;
  const tenths = Math.floor(sec * 10);
  const t = tenths % 10;
  let s = Math.floor(tenths / 10);
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  const p2 = (n) => String(n).padStart(2, '0');
  if (hh > 0) return `${hh}:${p2(mm)}:${p2(s)}.${t}`;
  if (mm > 0) return `${mm}:${p2(s)}.${t}`;
  return `${s}.${t} s`;
}

function parseTime(iso) {
  if (typeof iso !== 'string' || !iso) return null;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : null;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

function fmtTime(iso) {
  const t = parseTime(iso);
  if (t === null) return iso ? String(iso) : DASH;
  const d = new Date(t);
  const sameDay = new Date().toDateString() === d.toDateString();
  return (sameDay ? timeFmt : dateTimeFmt).format(d);
}

function timeEl(iso) {
  const t = parseTime(iso);
  return h('time', { datetime: t === null ? null : iso, title: iso || null }, fmtTime(iso));
}

function badge(text, kind) {
  return h('span', { class: `badge ${kind || ''}`.trim() }, text);
}

/** Maps a state word to a colour class. */
function stateKind(state) {
  switch (String(state || '').toLowerCase()) {
    case 'done': case 'ok': case 'applied': case 'live': case 'indexed': return 'ok';
    case 'running': case 'loading': case 'in progress': case 'staging': case 'verifying': case 'copying': return 'run';
    case 'indexing': case 'frozen': return 'warn';
    case 'failed': case 'unreachable': case 'error': return 'bad';
    default: return 'idle';
  }
}

function setBadge(el, text, kind) {
  if (text === null || text === undefined || text === '') { el.hidden = true; return; }
  el.hidden = false;
  setText(el, text);
  el.className = `badge ${kind || ''}`.trim();
}

// ---------------------------------------------------------------------------------------------
// State

let snap = null;            // latest snapshot
let receivedAt = 0;         // Date.now() when it arrived
let serverOffsetMs = 0;     // estimated server clock - client clock (from generatedAt)

/** Best estimate of the server's "now", so client clock skew does not distort timers. */
function serverNow() {
  return Date.now() + serverOffsetMs;
}

function accept(s) {
  if (!s || typeof s !== 'object') return;
  // Ignore snapshots older than the one shown (the initial fetch can race the stream).
  const g = parseTime(s.generatedAt);
  const cur = snap && parseTime(snap.generatedAt);
  if (g !== null && cur !== null && g < cur) return;
  snap = s;
  receivedAt = Date.now();
  if (g !== null) serverOffsetMs = g - receivedAt;
  try {
    render(s);
  } catch (e) {
    console.error('render failed', e);
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering

function render(s) {
  renderHeader(s);
  renderNotes(s.notes);
  renderTotals(s.totals, s.tables);
  renderTables(s.tables);
  renderChart();
  renderVerify(s.verify);
  renderSync(s.sync, s.migration);
  renderCutover(s.cutover);
  renderRollback(s.rollback);
  renderHub(s.hub);
}

function renderHeader(s) {
  const phase = s.phase || {};
  const el = q('[data-testid=phase]');
  const name = phase.name || 'no phase';
  const state = phase.state || 'idle';
  setText(el, `${name} · ${state}`);
  el.dataset.state = state;
  el.dataset.phase = phase.name || '';
  el.className = `phase ${stateKind(state)}`;

  const mode = $('mode');
  if (s.mode) {
    mode.hidden = false;
    setText(mode, s.mode === 'journal' ? 'journal · read-only' : s.mode);
    mode.dataset.mode = s.mode;
    mode.title = s.mode === 'journal'
      ? 'Read-only view of the migration journal; no phase runs in this process'
      : 'This process is running the phase';
  } else {
    mode.hidden = true;
  }

  updateElapsed();
  const gen = $('generated-at');
  setText(gen, fmtTime(s.generatedAt));
  gen.title = s.generatedAt || '';

  const err = $('phase-error');
  if (phase.error) {
    err.hidden = false;
    setText(err, `${phase.name || 'phase'} failed: ${phase.error}`);
  } else {
    err.hidden = true;
    setText(err, '');
  }
  document.title = phase.name ? `${phase.name} ${state} · migration` : 'Migration dashboard';
}

/** Elapsed ticks client-side while running; otherwise the server's value is shown as is. */
function updateElapsed() {
  if (!snap) return;
  const phase = snap.phase || {};
  let sec = isNum(phase.elapsedSeconds) ? phase.elapsedSeconds : null;
  if (phase.state === 'running') {
    const started = parseTime(phase.startedAt);
    if (started !== null) sec = (serverNow() - started) / 1000;
    else if (sec !== null) sec += (Date.now() - receivedAt) / 1000;
  }
  const el = $('elapsed');
  setText(el, sec === null ? DASH : fmtDuration(sec));
  el.title = phase.startedAt ? `started ${phase.startedAt}` : '';
}

function renderNotes(notes) {
  const ul = $('notes');
  const list = Array.isArray(notes) ? notes.filter((n) => n !== null && n !== undefined && n !== '') : [];
  ul.hidden = list.length === 0;
  // Newest last in the data; shown newest first, at most 8.
  const shown = list.slice(-8).reverse();
  ul.replaceChildren(...shown.map((n) => h('li', null, String(n))));
}

function fraction(rows, total, state) {
  if (String(state || '').toLowerCase() === 'done') return 1;
  if (!isNum(rows) || !isNum(total) || total <= 0) return 0;
  return Math.min(1, Math.max(0, rows / total));
}

function progressBar(frac, kind, label) {
  const pct = Math.round(frac * 1000) / 10;
  return h('div', {
    class: `bar ${kind || ''}`.trim(),
    'data-testid': 'progress',
    dataset: { value: Number(frac.toFixed(4)) },
    role: 'progressbar',
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
    'aria-label': label || null,
  }, h('div', { class: 'fill', style: `width:${pct}%` }));
}

function pctText(frac) {
  if (frac >= 1) return '100%';
  const p = frac * 100;
  return `${p < 10 ? nf1.format(p) : nf0.format(Math.floor(p))}%`;
}

function renderTotals(t, tables) {
  t = t || {};
  const rows = isNum(t.rows) ? t.rows : null;
  const total = isNum(t.rowsTotal) ? t.rowsTotal : null;
  const list = Array.isArray(tables) ? tables : [];
  const allDone = list.length > 0 && list.every((x) => String(x.state).toLowerCase() === 'done');
  const frac = fraction(rows, total, allDone ? 'done' : null);

  const rowsEl = $('t-rows');
  rowsEl.replaceChildren(
    h('span', { dataset: { value: rows === null ? null : Math.round(rows) } }, fmtInt(rows)),
    total !== null ? h('span', { class: 'muted small' }, ` / ${fmtInt(total)}`) : null,
  );
  const bar = $('t-progress');
  bar.dataset.value = frac.toFixed(4);
  bar.className = `bar big ${allDone ? 'ok' : ''}`.trim();
  bar.firstElementChild.style.width = `${frac * 100}%`;
  setText($('t-pct'), rows === null && total === null ? DASH : pctText(frac));
  setText($('t-bytes'), fmtBytes(t.bytes));
  setText($('t-rate'), fmtRate(t.rowsPerSecond));
  setText($('t-eta'), allDone ? 'done' : isNum(t.etaSeconds) ? fmtDuration(t.etaSeconds) : DASH);
}

function renderTables(tables) {
  const list = Array.isArray(tables) ? tables : [];
  const body = q('[data-testid=tables]');
  $('tables-empty').hidden = list.length > 0;
  const done = list.filter((t) => String(t.state).toLowerCase() === 'done').length;
  setText($('tables-count'), list.length ? `${done}/${list.length} done` : '');

  body.replaceChildren(...list.map((t) => {
    const state = t.state || 'not started';
    const kind = stateKind(state);
    const frac = fraction(t.rows, t.rowsTotal, state);
    const rows = isNum(t.rows) ? Math.round(t.rows) : null;
    const isDone = kind === 'ok';
    return h('tr', { 'data-testid': 'table-row', dataset: { table: t.table ?? '', service: t.service ?? '', state } },
      h('td', { class: 'name', 'data-label': 'Table' }, h('span', { class: 'mono' }, t.table ?? DASH)),
      h('td', { class: 'svc', 'data-label': 'Service' }, h('span', { class: `svc-tag svc-${String(t.service || '').replace(/[^a-z0-9_-]/gi, '')}` }, t.service ?? DASH)),
      h('td', { class: 'state', 'data-label': 'State' }, badge(state, kind)),
      h('td', { class: 'progress-col', 'data-label': 'Progress' },
        h('div', { class: 'progress-cell' },
          progressBar(frac, kind, `${t.table} progress`),
          h('span', { class: 'pct' }, pctText(frac)))),
      h('td', { class: 'num rows-col', 'data-label': 'Rows' },
        h('span', { 'data-testid': 'rows', dataset: { value: rows } }, fmtInt(rows)),
        isNum(t.rowsTotal) ? h('span', { class: 'muted small' }, ` / ${fmtInt(t.rowsTotal)}`) : null),
      h('td', { class: 'num', 'data-label': 'Size' }, fmtBytes(t.bytes)),
      h('td', { class: 'num', 'data-label': 'Chunks' },
        isNum(t.chunks) && t.chunks > 0 ? `${fmtInt(t.chunksDone)}/${fmtInt(t.chunks)}` : DASH),
      h('td', { class: 'num', 'data-label': 'Rows/s' }, isDone ? DASH : fmtRate(t.rowsPerSecond)),
      h('td', { class: 'num', 'data-label': 'ETA' }, isDone ? 'done' : fmtDuration(t.etaSeconds)),
    );
  }));
}

// ---------------------------------------------------------------------------------------------
// Throughput chart (hand-written SVG, sized to its container in CSS pixels)

function niceStep(range, target) {
  const raw = range / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * mag;
}

function renderChart() {
  const svg = q('[data-testid=chart]');
  const box = $('chart-box');
  const W = Math.max(240, Math.floor(box.clientWidth || 600));
  const H = W < 500 ? 180 : 240;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('width', W);
  svg.setAttribute('height', H);

  const raw = snap && Array.isArray(snap.throughput) ? snap.throughput : [];
  const pts = raw
    .map((p) => ({ t: parseTime(p && p.at), v: p && isNum(p.rowsPerSecond) ? p.rowsPerSecond : null }))
    .filter((p) => p.t !== null && p.v !== null)
    .sort((a, b) => a.t - b.t);
  svg.dataset.points = String(pts.length);

  const m = { l: 52, r: 12, t: 12, b: 28 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const kids = [];

  if (pts.length === 0) {
    setText($('chart-window'), '');
    kids.push(h('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'No throughput data yet'));
    svg.replaceChildren(...kids);
    return;
  }

  const t1 = pts[pts.length - 1].t;
  const t0 = Math.min(pts[0].t, t1 - 60_000); // at least one minute wide
  const vmaxRaw = Math.max(...pts.map((p) => p.v), 10);
  const ystep = niceStep(vmaxRaw, W < 500 ? 3 : 4);
  const vmax = Math.ceil(vmaxRaw / ystep) * ystep;
  const x = (t) => m.l + ((t - t0) / (t1 - t0)) * pw;
  const y = (v) => m.t + ph - (v / vmax) * ph;

  setText($('chart-window'), `${fmtRate(pts[pts.length - 1].v)} rows/s now · last ${fmtDuration((t1 - pts[0].t) / 1000)}`);

  // y grid + labels
  for (let v = 0; v <= vmax + ystep / 2; v += ystep) {
    const yy = Math.round(y(v)) + 0.5;
    kids.push(h('line', { x1: m.l, x2: W - m.r, y1: yy, y2: yy, class: v === 0 ? 'axis' : 'grid' }));
    kids.push(h('text', { x: m.l - 6, y: yy + 4, 'text-anchor': 'end', class: 'tick' }, fmtCompact(v)));
  }
  // x ticks: relative to the newest point ("-5m" … "now")
  const spanSec = (t1 - t0) / 1000;
  const xTarget = W < 500 ? 3 : 6;
  const candidates = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  const xstep = candidates.find((c) => spanSec / c <= xTarget) || 3600;
  for (let s = 0; s <= spanSec + 0.001; s += xstep) {
    const xx = Math.round(x(t1 - s * 1000)) + 0.5;
    if (xx < m.l - 0.5) break;
    kids.push(h('line', { x1: xx, x2: xx, y1: m.t + ph, y2: m.t + ph + 4, class: 'axis' }));
    const label = s === 0 ? 'now' : s < 60 ? `-${s}s` : s % 60 === 0 ? `-${s / 60}m` : `-${nf1.format(s / 60)}m`;
    kids.push(h('text', { x: xx, y: H - 8, 'text-anchor': s === 0 ? 'end' : 'middle', class: 'tick' }, label));
  }

  // line + area; a gap of > 5 s between points breaks the line
  let d = '';
  let area = '';
  let segStart = null;
  let prev = null;
  const closeArea = () => {
    if (segStart !== null && prev !== null) {
      area += `L${x(prev.t).toFixed(1)},${y(0).toFixed(1)}L${x(segStart.t).toFixed(1)},${y(0).toFixed(1)}Z`;
    }
  };
  for (const p of pts) {
    const px = x(p.t).toFixed(1);
    const py = y(p.v).toFixed(1);
    if (prev === null || p.t - prev.t > 5000) {
      closeArea();
      d += `M${px},${py}`;
      area += `M${px},${py}`;
      segStart = p;
    } else {
      d += `L${px},${py}`;
      area += `L${px},${py}`;
    }
    prev = p;
  }
  closeArea();
  kids.push(h('path', { d: area, class: 'area' }));
  kids.push(h('path', { d, class: 'line' }));
  const last = pts[pts.length - 1];
  kids.push(h('circle', { cx: x(last.t), cy: y(last.v), r: 3.5, class: 'dot' },
    h('title', null, `${fmtRate(last.v)} rows/s at ${fmtTime(new Date(last.t).toISOString())}`)));
  svg.replaceChildren(...kids);
}

// ---------------------------------------------------------------------------------------------
// Verify

function idList(label, ids, count) {
  const arr = Array.isArray(ids) ? ids : [];
  const n = isNum(count) ? count : arr.length;
  if (n === 0 && arr.length === 0) return null;
  const more = n > arr.length ? n - arr.length : 0;
  return h('div', { class: 'ids' },
    h('span', { class: 'ids-label' }, `${label} (${fmtInt(n)}):`),
    ' ',
    h('span', { class: 'mono ids-values' }, arr.map(String).join(', ')),
    more > 0 ? h('span', { class: 'muted' }, ` … and ${fmtInt(more)} more`) : null,
  );
}

function countCell(n, kindIfPos) {
  const v = isNum(n) ? n : null;
  return h('td', { class: `num ${v ? kindIfPos : 'muted'}`.trim() }, v === null ? DASH : fmtInt(v));
}

function renderVerify(v) {
  const body = $('verify-body');
  const b = $('verify-badge');
  if (!v) {
    setBadge(b, null);
    body.replaceChildren(h('p', { class: 'empty' }, 'No verification result yet.'));
    return;
  }
  setBadge(b, v.ok ? 'ok' : 'differences', v.ok ? 'ok' : 'bad');
  const q2 = q('[data-testid=verify]');
  q2.dataset.ok = String(!!v.ok);

  const tables = Array.isArray(v.tables) ? v.tables : [];
  const orphans = Array.isArray(v.orphans) ? v.orphans : [];
  const bad = tables.filter((t) => !t.ok);

  const summary = h('p', { class: 'summary' },
    `${tables.length - bad.length}/${tables.length} tables match`,
    orphans.length ? ` · ${orphans.length} foreign key${orphans.length === 1 ? '' : 's'} with orphans` : '',
    ' · checked ', timeEl(v.at),
    isNum(v.seconds) ? ` in ${fmtDuration(v.seconds)}` : '');

  const rows = [];
  for (const t of tables) {
    rows.push(h('tr', { class: t.ok ? '' : 'row-bad', dataset: { table: t.table ?? '' } },
      h('td', { class: 'mono' }, t.table ?? DASH),
      h('td', { class: 'hide-narrow' }, t.service ?? DASH),
      h('td', null, badge(t.ok ? 'ok' : 'differs', t.ok ? 'ok' : 'bad')),
      h('td', { class: 'num' }, fmtInt(t.legacyRows)),
      h('td', { class: `num ${isNum(t.legacyRows) && isNum(t.targetRows) && t.legacyRows !== t.targetRows ? 'bad' : ''}`.trim() }, fmtInt(t.targetRows)),
      countCell(t.missingCount ?? (t.missing || []).length, 'bad'),
      countCell(t.extraCount ?? (t.extra || []).length, 'bad'),
      countCell(t.changedCount ?? (t.changed || []).length, 'bad'),
    ));
    const lists = [
      idList('missing', t.missing, t.missingCount),
      idList('extra', t.extra, t.extraCount),
      idList('changed', t.changed, t.changedCount),
    ].filter(Boolean);
    if (lists.length) {
      rows.push(h('tr', { class: 'ids-row' }, h('td', { colspan: 8 }, lists)));
    }
  }

  const table = tables.length ? h('div', { class: 'table-wrap scroll' },
    h('table', { class: 'data compact' },
      h('thead', null, h('tr', null,
        h('th', null, 'Table'), h('th', { class: 'hide-narrow' }, 'Service'), h('th', null, 'Result'),
        h('th', { class: 'num' }, 'Legacy'), h('th', { class: 'num' }, 'Target'),
        h('th', { class: 'num' }, 'Missing'), h('th', { class: 'num' }, 'Extra'), h('th', { class: 'num' }, 'Changed'))),
      h('tbody', null, rows))) : h('p', { class: 'empty' }, 'No tables verified.');

  const orph = orphans.length ? [
    h('h3', null, 'Orphaned references'),
    h('div', { class: 'table-wrap scroll' },
      h('table', { class: 'data compact' },
        h('thead', null, h('tr', null,
          h('th', null, 'Foreign key'), h('th', null, 'References'), h('th', { class: 'num' }, 'Orphans'), h('th', null, 'Examples'))),
        h('tbody', null, orphans.map((o) => h('tr', { class: o.orphans > 0 ? 'row-bad' : '' },
          h('td', { class: 'mono' }, o.foreignKey ?? DASH),
          h('td', { class: 'mono' }, o.reference ?? DASH),
          countCell(o.orphans, 'bad'),
          h('td', { class: 'mono ids-values' }, Array.isArray(o.examples) && o.examples.length ? o.examples.map(String).join(', ') : DASH),
        )))))
  ] : null;

  body.replaceChildren(summary, table, ...(orph || []));
}

// ---------------------------------------------------------------------------------------------
// Sync, cutover, rollback, hub

function kv(dl, pairs) {
  dl.replaceChildren(...pairs.filter(Boolean).map(([k, v]) =>
    h('div', null, h('dt', null, k), h('dd', null, v === null || v === undefined || v === '' ? DASH : v))));
}

function renderSync(s, m) {
  const body = $('sync-body');
  s = s || {};
  m = m || {};
  const slots = Array.isArray(m.slots) ? m.slots : [];
  const positions = Array.isArray(s.positions) ? s.positions : [];
  const lagKind = isNum(s.lagSeconds) && s.lagSeconds > 30 ? 'warn' : '';
  const stats = h('div', { class: 'stats small-stats' },
    h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Lag'), h('div', { class: `stat-value ${lagKind}`.trim() }, fmtBytes(s.lagBytes))),
    h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Lag time'), h('div', { class: `stat-value ${lagKind}`.trim() }, fmtDuration(s.lagSeconds))),
    h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, 'Changes / s'), h('div', { class: 'stat-value' }, fmtRate(s.changesPerSecond))),
  );
  const slot = h('p', { class: 'summary' }, 'Replication slot: ', h('span', { class: 'mono' }, s.slot || DASH));
  const table = positions.length ? h('div', { class: 'table-wrap scroll' },
    h('table', { class: 'data compact' },
      h('thead', null, h('tr', null,
        h('th', null, 'Service'), h('th', null, 'Position'), h('th', { class: 'num' }, 'Transactions'), h('th', null, 'Last commit'))),
      h('tbody', null, positions.map((p) => h('tr', null,
        h('td', null, p.service ?? DASH),
        h('td', { class: 'mono' }, p.position ?? DASH),
        h('td', { class: 'num' }, fmtInt(p.transactions)),
        h('td', null, p.commitTime ? timeEl(p.commitTime) : DASH),
      )))))
    : h('p', { class: 'empty' }, 'No applied positions yet.');
  const state = h('p', { class: 'summary', 'data-testid': 'migration-state' }, 'Migration: ', h('strong', null, m.state || 'not started'));
  const held = h('ul', { class: 'summary', 'data-testid': 'slots' }, slots.length
    ? slots.map((x) => h('li', null, h('span', { class: 'mono' }, x.slot), ` (${x.database}) keeps ${fmtBytes(x.retainedBytes)} of WAL`))
    : [h('li', null, 'No slot of the migration keeps WAL.')]);
  body.replaceChildren(state, stats, slot, held, table);
}

function renderCutover(c) {
  c = c || {};
  const state = c.state || 'not started';
  setBadge($('cutover-badge'), state, stateKind(state));
  q('[data-testid=cutover]').dataset.state = state;
  kv($('cutover-body'), [
    ['Step', c.step],
    ['Frozen at', c.frozenAt ? timeEl(c.frozenAt) : null],
    ['Finished', c.at ? timeEl(c.at) : null],
  ]);
  updateFreeze();
}

/** Live write-freeze timer: ticks every 100 ms while frozen; shows freezeSeconds once known. */
function updateFreeze() {
  const c = (snap && snap.cutover) || {};
  const box = $('freeze-box');
  const el = q('[data-testid=freeze-timer]');
  const frozenAt = parseTime(c.frozenAt);
  if (c.state === 'frozen' && frozenAt !== null) {
    box.hidden = false;
    box.className = 'freeze live';
    setText($('freeze-label'), 'Writes frozen for');
    const sec = (serverNow() - frozenAt) / 1000;
    setText(el, fmtStopwatch(sec));
    el.dataset.state = 'running';
    el.dataset.value = Math.max(0, sec).toFixed(1);
  } else if (isNum(c.freezeSeconds)) {
    box.hidden = false;
    box.className = 'freeze';
    setText($('freeze-label'), 'Writes were frozen for');
    setText(el, fmtStopwatch(c.freezeSeconds));
    el.dataset.state = 'stopped';
    el.dataset.value = c.freezeSeconds.toFixed(1);
  } else {
    box.hidden = true;
    setText(el, DASH);
    el.dataset.state = 'idle';
    delete el.dataset.value;
  }
}

function renderRollback(r) {
  r = r || {};
  const state = r.state || 'not started';
  setBadge($('rollback-badge'), state, state === 'not started' ? 'idle' : state === 'done' ? 'ok' : 'warn');
  q('[data-testid=rollback]').dataset.state = state;
  kv($('rollback-body'), [
    ['Step', r.step],
    ['Frozen at', r.frozenAt ? timeEl(r.frozenAt) : null],
    ['Applied at', r.appliedAt ? timeEl(r.appliedAt) : null],
    ['Done at', r.doneAt ? timeEl(r.doneAt) : null],
  ]);
}

function renderHub(hub) {
  const body = $('hub-body');
  const b = $('hub-badge');
  if (!hub) {
    setBadge(b, null);
    body.replaceChildren(h('p', { class: 'empty' }, 'No event hub information.'));
    return;
  }
  const queues = Array.isArray(hub.queues) ? hub.queues : [];
  const dead = queues.reduce((a, x) => a + (isNum(x.deadLetters) ? x.deadLetters : 0), 0);
  if (!hub.available) setBadge(b, 'unavailable', 'bad');
  else if (dead > 0) setBadge(b, `${fmtInt(dead)} dead letter${dead === 1 ? '' : 's'}`, 'bad');
  else setBadge(b, 'ok', 'ok');
  q('[data-testid=hub]').dataset.deadLetters = String(dead);

  const parts = [];
  if (hub.error) parts.push(h('p', { class: 'banner error small' }, hub.error));
  if (queues.length) {
    parts.push(h('div', { class: 'table-wrap scroll' },
      h('table', { class: 'data compact' },
        h('thead', null, h('tr', null,
          h('th', null, 'Queue'), h('th', { class: 'num' }, 'Messages'), h('th', { class: 'num' }, 'Consumers'), h('th', { class: 'num' }, 'Dead letters'))),
        h('tbody', null, queues.map((x) => h('tr', { class: x.deadLetters > 0 ? 'row-bad' : '', dataset: { queue: x.queue ?? '' } },
          h('td', { class: 'mono' }, x.queue ?? DASH),
          h('td', { class: 'num' }, fmtInt(x.messages)),
          h('td', { class: `num ${x.consumers === 0 ? 'warn' : ''}`.trim() }, fmtInt(x.consumers)),
          h('td', { class: 'num' }, x.deadLetters > 0 ? badge(fmtInt(x.deadLetters), 'bad') : fmtInt(x.deadLetters)),
        ))))));
  } else if (hub.available) {
    parts.push(h('p', { class: 'empty' }, 'No queues.'));
  }
  body.replaceChildren(...parts);
}

// ---------------------------------------------------------------------------------------------
// Connection: EventSource on /api/stream (no polling). EventSource retries by itself after network
// errors; if it gives up (readyState CLOSED, e.g. a non-200 answer) we re-create it with backoff.

const conn = () => q('[data-testid=connection]');

function setConn(state, text, title) {
  const el = conn();
  el.dataset.state = state;
  el.className = `conn ${state}`;
  setText(el, text);
  el.title = title || '';
  document.body.classList.toggle('stale', state !== 'live');
}

let es = null;
let retryMs = 1000;
let retryTimer = null;

function connect() {
  clearTimeout(retryTimer);
  if (es) es.close();
  es = new EventSource(apiUrl('/api/stream'));
  es.addEventListener('open', () => {
    retryMs = 1000;
    setConn('live', 'live');
  });
  const onSnapshot = (ev) => {
    let s;
    try { s = JSON.parse(ev.data); } catch (e) { console.error('bad snapshot', e); return; }
    accept(s);
  };
  es.addEventListener('snapshot', onSnapshot);
  es.addEventListener('message', onSnapshot); // tolerate unnamed events too
  es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) {
      setConn('down', 'disconnected, reconnecting…');
      diagnose();
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    } else {
      setConn('down', 'disconnected, reconnecting…');
    }
  });
}

/** The stream was refused: find out whether it is the token, to say so (without showing it). */
async function diagnose() {
  try {
    const r = await fetch(apiUrl('/api/snapshot'), { cache: 'no-store' });
    if (r.status === 401 || r.status === 403) {
      setConn('down', 'access denied, reconnecting…',
        TOKEN ? 'The server rejected the token in this page\'s URL.' : 'The server needs ?token=... in the page URL.');
    } else if (r.ok) {
      accept(await r.json());
    }
  } catch (_) { /* server down: EventSource status already says so */ }
}

async function initialSnapshot() {
  try {
    const r = await fetch(apiUrl('/api/snapshot'), { cache: 'no-store' });
    if (r.ok) accept(await r.json());
    else if (r.status === 401 || r.status === 403) {
      if (conn().dataset.state !== 'live') {
        setConn('down', 'access denied, reconnecting…',
          TOKEN ? 'The server rejected the token in this page\'s URL.' : 'The server needs ?token=... in the page URL.');
      }
    }
  } catch (_) { /* the stream will deliver */ }
}

// ---------------------------------------------------------------------------------------------
// Clocks and resizing

setInterval(() => {
  if (!snap) return;
  updateFreeze();
}, 100);

setInterval(() => {
  if (!snap) return;
  updateElapsed();
  const age = (Date.now() - receivedAt) / 1000;
  $('generated-at').title = `${snap.generatedAt || ''} (received ${Math.round(age)} s ago)`;
}, 1000);

let lastChartWidth = 0;
const ro = new ResizeObserver(() => {
  const w = $('chart-box').clientWidth;
  if (w !== lastChartWidth) {
    lastChartWidth = w;
    renderChart();
  }
});
ro.observe($('chart-box'));

setConn('connecting', 'connecting…');
initialSnapshot();
connect();
