// Functions: the deployed functions; one function's versions, its
// invocations, error rate and p50/p99 duration over time (uPlot), and an
// invoke form that opens the new run.
import uPlot from './vendor/uplot.js';
import { api, HttpError } from './api.js';
import { h, fill, append, clear, fmtTime, fmtMs, json, section, table, errorBox, percentile } from './lib.js';

export function functionsPage(main) {
  const body = h('div');
  main.append(h('h1', {}, 'Functions'), body);
  api('/v1/functions').then((data) => {
    const rows = data.functions.map((f) => h('tr', {},
      h('td', {}, h('a', { href: `#/functions/${encodeURIComponent(f.name)}` }, f.name)),
      h('td', { class: 'num' }, f.version), h('td', {}, f.function || '—'), h('td', {}, f.filename || '—'),
      h('td', {}, f.description || ''), h('td', {}, fmtTime(f.created_at))));
    body.append(table(['Name', 'Version', 'Function', 'File', 'Description', 'Deployed'], rows,
      { empty: 'No functions deployed: `pysprinter deploy NAME file.py --server …`.' }));
  }).catch((e) => body.append(errorBox(e)));
}

// Buckets runs over their time span: invocations, errors, p50, p99.
function series(runs) {
  const t = runs.map((r) => Date.parse(r.created_at) / 1000).filter((x) => !isNaN(x));
  if (!t.length) return null;
  const lo = Math.min(...t), hi = Math.max(...t);
  const step = Math.max(60, Math.ceil((hi - lo) / 30 / 60) * 60);
  const start = Math.floor(lo / step) * step;
  const n = Math.floor((hi - start) / step) + 1;
  const xs = [], inv = [], err = [], p50 = [], p99 = [];
  const durs = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) { xs.push(start + i * step); inv.push(0); err.push(0); }
  for (const r of runs) {
    const i = Math.floor((Date.parse(r.created_at) / 1000 - start) / step);
    if (i < 0 || i >= n) continue;
    inv[i]++;
    if (r.status !== 'succeeded' && !['queued', 'running'].includes(r.status)) err[i]++;
    const ms = r.timings && (r.timings.total_ms ?? r.timings.run_ms);
    if (typeof ms === 'number') durs[i].push(ms);
  }
  for (const d of durs) { d.sort((a, b) => a - b); p50.push(percentile(d, 50)); p99.push(percentile(d, 99)); }
  return { xs, inv, rate: inv.map((v, i) => (v ? (100 * err[i]) / v : null)), p50, p99 };
}

function chart(el, title, data, names, width) {
  const opts = { title, width, height: 200, scales: { x: { time: true } },
    series: [{}, ...names.map(([label, stroke]) => ({ label, stroke, width: 2, spanGaps: true }))] };
  return new uPlot(opts, data, el);
}

// The version's signature, or what its record has of one (a version
// deployed before signatures were kept: its parameters' names), as
// `pysprinter invoke NAME --help` prints it.
function signatureOf(f) {
        if (f.signature)
                return f.signature;
        const fn = f.function || f.name;
        return Array.isArray(f.parameters) ? `${fn}(${f.parameters.join(', ')})` : fn;
}

export function functionPage(main, [name]) {
  const charts = [];
  api(`/v1/functions/${encodeURIComponent(name)}`).then(async (f) => {
    const args = h('textarea', { id: 'inv-args', rows: 2, spellcheck: 'false', 'aria-label': 'args (JSON array)' }, '[]');
    const kwargs = h('textarea', { id: 'inv-kwargs', rows: 2, spellcheck: 'false', 'aria-label': 'kwargs (JSON object)' }, '{}');
    const out = h('p', { role: 'status' });
    async function invoke(ev) {
      ev.preventDefault();
      out.textContent = '';
      try {
        const body = { args: JSON.parse(args.value || '[]'), kwargs: JSON.parse(kwargs.value || '{}') };
        const r = await api(`/v1/functions/${encodeURIComponent(name)}/invoke`, { method: 'POST', body });
        location.hash = `#/runs/${encodeURIComponent(r.id)}`;
      } catch (e) {
        out.textContent = e.message;
        out.className = 'error';
      }
    }
    const stats = h('div', { class: 'charts', id: 'fn-charts' });
    main.append(h('h1', {}, 'Function ', f.name),
                h('dl', { class: 'facts' }, h('dt', {}, 'latest version'), h('dd', {}, f.version),
                  h('dt', {}, 'versions'), h('dd', {}, (f.versions || []).join(', ')), h('dt', {}, 'function'),
                  h('dd', {}, `${f.filename || ''} :: ${f.function || ''}`), h('dt', {}, 'signature'),
                  h('dd', {}, h('code', { id: 'fn-signature' }, signatureOf(f))), h('dt', {}, 'docstring'),
                  h('dd', {}, f.doc ? h('pre', { id: 'fn-doc', class: 'doc' }, f.doc) : '—'), h('dt', {}, 'deployed'),
                  h('dd', {}, fmtTime(f.created_at)), h('dt', {}, 'description'), h('dd', {}, f.description || '—')),
                section('Invoke', h('form', { class: 'invoke', onsubmit: invoke },
                                    h('label',
                                      { for: 'inv-args'
                                      },
                                      'args (JSON array)'),
                                    args,
                                    h('label',
                                      { for: 'inv-kwargs'
                                      },
                                      'kwargs (JSON object)'),
                                    kwargs, h('button', { type: 'submit' }, 'Invoke'), out)),
                section('Invocations', stats),
                section('Requirements and limits', json({ requirements: f.requirements, limits: f.limits })));
    // A deployed function's runs carry its file and function name.
    const runs = (await api('/v1/runs?limit=2000')).runs.filter((r) => r.function === f.function &&
      r.filename === f.filename);
    const sr = series(runs);
    if (!sr) { stats.append(h('p', { class: 'dim' }, 'No invocations yet.')); return; }
    const total = runs.length, failed = runs.filter((r) => !['succeeded', 'queued', 'running'].includes(r.status)).length;
    const all = runs.map((r) => r.timings && r.timings.total_ms).filter((x) => typeof x === 'number').sort((a, b) => a - b);
    stats.append(h('p', {}, `${total} invocation(s), error rate ${((100 * failed) / total).toFixed(1)} %, ` +
      `p50 ${fmtMs(percentile(all, 50))}, p99 ${fmtMs(percentile(all, 99))}`));
    const w = Math.max(320, Math.min(900, main.clientWidth - 40));
    const c1 = h('div'), c2 = h('div'), c3 = h('div');
    stats.append(c1, c2, c3);
    charts.push(chart(c1, 'invocations', [sr.xs, sr.inv], [['invocations', '#2b6cb0']], w));
    charts.push(chart(c2, 'error rate %', [sr.xs, sr.rate], [['errors %', '#c53030']], w));
    charts.push(chart(c3, 'duration (ms)', [sr.xs, sr.p50, sr.p99], [['p50', '#2f855a'], ['p99', '#b7791f']], w));
  }).catch((e) => {
    main.append(e instanceof HttpError && e.status === 404 ? h('h1', { id: 'not-found' }, 'Function not found')
      : errorBox(e));
  });
  return () => charts.forEach((c) => c.destroy());
}
