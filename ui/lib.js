// DOM and formatting helpers. Text is always set with text nodes
// (textContent): nothing a run prints or returns is ever parsed as HTML.

// h('a', {href: '#/x', class: 'c', onclick: fn}, 'text', child…)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  for (const c of children) el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtClock(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// Each unit is chosen by the value as it rounds for that unit: 119.6 s
// is "2 min 0 s", not "1 min 60 s"; 999.6 ms "1.00 s", not "1000 ms".
export function fmtMs(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '—';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (Math.round(ms) < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s.toFixed(2) !== '10.00' && s < 10) return `${s.toFixed(2)} s`;
  if (s.toFixed(1) !== '60.0' && s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  return `${Math.floor(total / 60)} min ${total % 60} s`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

// x with d decimals as C's printf("%.*f") writes it: toFixed rounds an
// exact tie (1.125 to 2 decimals) up, printf to the even digit ("1.12").
// A double is such a tie only when x * 2^(d+1) is an integer and x * 2^d
// is not (the tie (2k+1) / (2 * 10^d) must be a binary fraction).
function printfFixed(x, d) {
  const t = x.toFixed(d);
  const p = 2 ** d;
  if (!(Number.isInteger(x * p * 2) && !Number.isInteger(x * p))) return t;
  const last = t.charCodeAt(t.length - 1) - 48;
  return last % 2 ? t.slice(0, -1) + String(last - 1) : t;
}

// The CLI's units (src/cli/cli-render.c format_duration_us, src/basic
// format_size), so that the dashboard prints a run's limits as `pysprinter
// show` does.
function cliDuration(us) {
  const s = us / 1e6;
  if (s < 1) return `${printfFixed(s * 1000, 0)}ms`;
  if (s < 120) return `${printfFixed(s, 2)}s`;
  const t = Math.trunc(s);
  return `${Math.trunc(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
}

function cliSize(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n, u = 0;
  while (v >= 1024 && u + 1 < units.length) { v /= 1024; u++; }
  return u === 0 ? `${n} B` : `${printfFixed(v, 1)} ${units[u]}`;
}

// A run's limits (the run object's "limits") as `pysprinter show` prints
// them after "limits:": "timeout 60.00s, memory 512.0 MiB, processes 64,
// output 10.0 MiB, network off" ("none": 0, no limit of that kind); null
// for a run whose record has none.
export function fmtLimits(l) {
  if (!l || typeof l !== 'object' || Array.isArray(l)) return null;
  const pos = (k) => (Number.isFinite(l[k]) && l[k] > 0 ? l[k] : 0);
  const t = pos('timeout_ms'), m = pos('memory_bytes'), p = pos('max_procs'), o = pos('max_output_bytes');
  return `timeout ${t ? cliDuration(t * 1000) : 'none'}, memory ${m ? cliSize(m) : 'none'}, ` +
    `processes ${p ? String(p) : 'none'}, output ${o ? cliSize(o) : 'none'}, network ${l.network === true ? 'on' : 'off'}`;
}

// A run's duration: finished - started, or so far while it runs. An ended
// run's timings.total_ms (the run page's total) where it has one: the
// timestamps count whole milliseconds, and a warm invoke that began and
// ended within one read "0.00 ms".
export function runDuration(run, now = Date.now()) {
  if (!run.started_at) return null; // never started: "—", as ps's "-"
  const total = run.timings && run.timings.total_ms;
  if (run.finished_at && typeof total === 'number' && Number.isFinite(total)) return total;
  const end = run.finished_at ? Date.parse(run.finished_at) : now;
  return end - Date.parse(run.started_at);
}

export const ACTIVE = new Set(['queued', 'running', 'validating']);

// A readonly token's session may look but not act: the daemon answers its
// POST and DELETE with 403, so the pages leave out the buttons that send
// them instead of offering ones that can only fail.
export function canAct(session) {
  return !session || session.role !== 'readonly';
}

export function badge(status) {
  return h('span', { class: `badge st-${String(status).replace(/[^a-z_]/g, '')}` }, status || '—');
}

// value as pretty JSON; a value from parseExact keeps its numbers' text.
export function json(value) {
  return h('pre', { class: 'json' }, jsonText(value));
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

export function table(headers, rows, { caption, empty = 'Nothing yet.' } = {}) {
  const t = h('table', {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => (typeof x === 'string' ? h('th', { scope: 'col' }, x)
      : h('th', { scope: 'col', class: x.class }, x.text))))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, empty))));
  return t;
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e && e.message ? e.message : String(e));
}

// A page whose thing the API does not have (404): what was asked for, and
// the way to its list. The tab and the history's entry read "Not found",
// not the title of a thing that is not there. what: 'Run', 'DAG run'…;
// why: "is visible to you", "is deployed for you".
export function notFound(what, name, why, href, all) {
  document.title = 'Not found · pysprinter';
  return [h('h1', { id: 'not-found' }, `${what} not found`),
    h('p', {}, `No ${what.split(' ').map((w) => (w === w.toUpperCase() ? w : w.toLowerCase())).join(' ')} `,
      h('code', {}, name), ` ${why}. `, h('a', { href }, all))];
}

export function debounce(fn, ms) {
  let t = null;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}

export function percentile(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

// Replaces the hash's query without a new page render or history entry.
export function setQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const qs = q.toString();
  history.replaceState(null, '', `#${path}${qs ? '?' + qs : ''}`);
}

// Empties el and appends children (null/false skipped, strings as text).
export function fill(el, ...children) {
  return append(clear(el), children);
}

// JSON as the API wrote it, for showing values: JSON.parse makes every
// number a double, so 2**53 + 1 read 9007199254740992, 2**63 - 1
// 9223372036854775807 as 9223372036854776000 and 1.0 as 1, where the API
// and `pysprinter run` say what the function returned. parseExact keeps
// each number's text (a RawNumber); jsonText writes a value as
// JSON.stringify(v, null, 2) does, those numbers as they came.
export class RawNumber {
  constructor(text) { this.text = text; }
}

export function parseExact(text) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const fail = () => { throw new SyntaxError(`bad JSON at ${i}`); };
  function value() {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const o = {};
      ws();
      if (text[i] === '}') { i++; return o; }
      for (;;) {
        ws();
        const k = str();
        ws();
        if (text[i++] !== ':') fail();
        // Defined, not assigned: a key "__proto__" is data, as JSON.parse
        // makes it (an assignment set the object's prototype instead).
        Object.defineProperty(o, k, { value: value(), enumerable: true, writable: true, configurable: true });
        ws();
        const sep = text[i++];
        if (sep === '}') return o;
        if (sep !== ',') fail();
      }
    }
    if (c === '[') {
      i++;
      const a = [];
      ws();
      if (text[i] === ']') { i++; return a; }
      for (;;) {
        a.push(value());
        ws();
        const sep = text[i++];
        if (sep === ']') return a;
        if (sep !== ',') fail();
      }
    }
    if (c === '"') return str();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) fail();
    i += m[0].length;
    return new RawNumber(m[0]);
  }
  function str() {
    if (text[i] !== '"') fail();
    let j = i + 1;
    while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
    const s = JSON.parse(text.slice(i, j + 1));
    i = j + 1;
    return s;
  }
  const v = value();
  ws();
  if (i !== text.length) fail();
  return v;
}

export function jsonText(v, indent = '') {
  if (v instanceof RawNumber) return v.text;
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    return `[\n${v.map((x) => inner + jsonText(x, inner)).join(',\n')}\n${indent}]`;
  }
  const keys = Object.keys(v);
  if (!keys.length) return '{}';
  return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${jsonText(v[k], inner)}`).join(',\n')}\n${indent}}`;
}

// Runs draw(), which draws el's content anew, and gives the keyboard focus
// back to the link that had it in el (the same href): a table redrawn
// every few seconds otherwise dropped the focus to the page's start.
export function keepFocus(el, draw) {
  const focused = el.contains(document.activeElement) ? document.activeElement.getAttribute('href') : null;
  draw();
  if (!focused) return;
  const again = [...el.querySelectorAll('a')].find((a) => a.getAttribute('href') === focused);
  if (again) again.focus({ preventScroll: true });
}
