// Functions: the deployed functions; one function's versions, each with its
// own signature, docstring and how to call it (#/functions/NAME?version=N;
// without ?version, the latest), its invocations, error rate and p50/p99
// duration over time (uPlot), and an invoke form that opens the new run.
import uPlot from './vendor/uplot.js';
import { api, HttpError } from './api.js';
import { h, notFound, fill, append, clear, fmtTime, fmtMs, json, section, table, errorBox, percentile, canAct } from './lib.js';

export function functionsPage(main) {
  const body = h('div');
  main.append(h('h1', {}, 'Functions'), body);
  api('/v1/functions').then((data) => {
    const rows = data.functions.map((f) => h('tr', {},
      h('td', { class: 'wrap' }, h('a', { href: `#/functions/${encodeURIComponent(f.name)}` }, f.name)),
      h('td', { class: 'num' }, f.version), h('td', { class: 'wrap' }, f.function || '—'),
      h('td', { class: 'wrap' }, f.filename || '—'), h('td', { class: 'wrap' }, f.description || ''),
      h('td', {}, fmtTime(f.created_at))));
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
  if (f.signature) return f.signature;
  const fn = f.function || f.name;
  return Array.isArray(f.parameters) ? `${fn}(${f.parameters.join(', ')})` : fn;
}

// The top-level parameters of a signature as runner.py writes it
// ("f(a, /, b: dict = {'x': (1, 2)}, *, c=3) -> int"): [{text, dflt}], dflt
// when the parameter has a default. Brackets and string literals (repr's
// quoting, as ast.unparse writes them) are stepped over; null when the text
// has no parameter list.
function parametersOf(sig) {
  const open = sig.indexOf('(');
  if (open < 0) return null;
  const out = [];
  let depth = 0, quote = null, start = open + 1, dflt = false;
  for (let i = open + 1; i < sig.length; i++) {
    const c = sig[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if ('([{'.includes(c)) {
      depth++;
    } else if (depth > 0 && ')]}'.includes(c)) {
      depth--;
    } else if (c === '=') {
      if (depth === 0) dflt = true;
    } else if (depth === 0 && (c === ',' || c === ')')) {
      const text = sig.slice(start, i).trim();
      if (text) out.push({ text, dflt });
      if (c === ')') return out;
      start = i + 1;
      dflt = false;
    }
  }
  return null;
}

// What a call of version f must bring: `need`, the parameters without a
// default, each {name, positional} (a positional-only one goes by position:
// -a, raw_args; any other by name: -k NAME=VALUE, raw_kwargs, which works
// whatever the name, "timeout" included), and `optional`, the names of
// those with one. A version deployed before signatures were kept has only
// its parameters' names: all are shown, those before a star by position
// (nothing says which have defaults or are positional-only).
function callShape(f) {
  const need = [], optional = [];
  const params = f.signature ? parametersOf(f.signature) : null;
  if (params) {
    let keywordOnly = false;
    const byPosition = [];
    for (const { text, dflt } of params) {
      if (text === '/') {
        for (const p of byPosition) p.positional = true;
      } else if (text.startsWith('*')) {
        keywordOnly = true;
      } else {
        const p = { name: text.split(/[:=]/)[0].trim(), positional: false };
        if (!keywordOnly) byPosition.push(p);
        if (dflt) optional.push(p.name);
        else need.push(p);
      }
    }
    return { need, optional };
  }
  let star = false;
  for (const name of f.parameters || []) {
    if (name.startsWith('*')) star = true;
    else need.push({ name, positional: !star });
  }
  return { need, optional };
}

// "How to call" version f (latest: the function's newest version): the CLI
// line and the HTTP request, pinned to the version (NAME::N, "version": N)
// when it is not the latest. Placeholders are the parameter's name in
// capitals; values go as strings, converted by the annotations as `run`'s
// are (raw_args/raw_kwargs, docs/api.md).
function howToCall(f, latest, origin) {
  const pinned = f.version !== latest;
  const { need, optional } = callShape(f);
  const value = (p) => p.name.toUpperCase();
  const cli = ['pysprinter invoke', pinned ? `${f.name}::${f.version}` : f.name, `--server ${origin}`,
    ...need.map((p) => (p.positional ? `-a ${value(p)}` : `-k ${p.name}=${value(p)}`))].join(' ');
  const body = {};
  if (pinned) body.version = f.version;
  const byPosition = need.filter((p) => p.positional), byName = need.filter((p) => !p.positional);
  if (byPosition.length) body.raw_args = byPosition.map(value);
  if (byName.length) body.raw_kwargs = Object.fromEntries(byName.map((p) => [p.name, value(p)]));
  const http = `curl -X POST '${origin}/v1/functions/${f.name}/invoke?wait=true' \\\n` +
    '  -H "Authorization: Bearer $PYSPRINTER_TOKEN" -H \'Content-Type: application/json\' \\\n' +
    `  -d '${JSON.stringify(body)}'`;
  return { cli, http, optional, pinned, needs: need.length > 0 };
}

// The versions, each a link to its own view; the one shown is marked. The
// newest links to the unpinned page (#/functions/NAME: whatever is latest).
function versionLinks(f, latest) {
  return h('nav', { class: 'versions', id: 'fn-versions', 'aria-label': 'versions' },
    (f.versions || [f.version]).map((v, i) => [i ? ' ' : '',
      h('a', { href: `#/functions/${encodeURIComponent(f.name)}${v === latest ? '' : `?version=${v}`}`,
        'data-version': v, 'aria-current': v === f.version ? 'true' : null }, v === latest ? `${v} (latest)` : v)]));
}

// A delete button per version (`functions rm NAME:N`, DELETE
// /v1/functions/NAME?version=N), each asking first. The latest's is
// disabled and says why: it is what an invoke without a version runs, so it
// goes only with the function (the API refuses it, 409). A refusal (a
// schedule pinned to the version: 409 naming it) is shown under the
// buttons. Once deleted, the version leaves the page's lists; when it was
// the one shown, the page turns to the latest.
function versionDeletes(f, latest) {
  const out = h('p', { id: 'fn-delete-status', role: 'status' });
  const reason = `The latest version is what an invoke without a version runs: it is deleted only with the function (pysprinter functions rm ${f.name}).`;
  async function del(v, btn) {
    out.textContent = '';
    out.className = '';
    if (!window.confirm(`Delete version ${v} of ${f.name}? Its source and lock are removed; its runs stay. This cannot be undone.`)) return;
    btn.disabled = true;
    try {
      await api(`/v1/functions/${encodeURIComponent(f.name)}?version=${v}`, { method: 'DELETE' });
      if (v === f.version) { location.hash = `#/functions/${encodeURIComponent(f.name)}`; return; }
      for (const el of document.querySelectorAll(`#fn-versions [data-version="${v}"], #fn-version-deletes [data-version="${v}"]`)) el.remove();
      out.textContent = `Deleted version ${v}.`;
    } catch (e) {
      btn.disabled = false;
      out.textContent = e.message;
      out.className = 'error';
    }
  }
  return h('div', { class: 'version-deletes' },
    h('div', { id: 'fn-version-deletes', class: 'versions' }, (f.versions || [f.version]).map((v) => {
      const btn = h('button', { type: 'button', class: 'danger', 'data-version': v,
        'aria-label': `Delete version ${v}`, title: v === latest ? reason : `Delete version ${v}` },
        `Delete ${v}`);
      if (v === latest) btn.disabled = true;
      else btn.addEventListener('click', () => del(v, btn));
      return btn;
    })),
    h('p', { id: 'fn-latest-kept', class: 'hint' }, reason),
    out);
}

export function functionPage(main, [name], query, session) {
  const charts = [];
  const asked = query && query.get('version');
  const path = `/v1/functions/${encodeURIComponent(name)}`;
  api(asked ? `${path}?version=${encodeURIComponent(asked)}` : path).then(async (f) => {
    const latest = Math.max(f.version, ...(f.versions || []));
    const call = howToCall(f, latest, location.origin);
    const args = h('textarea', { id: 'inv-args', rows: 2, spellcheck: 'false', 'aria-label': 'args (JSON array)' }, '[]');
    const kwargs = h('textarea', { id: 'inv-kwargs', rows: 2, spellcheck: 'false', 'aria-label': 'kwargs (JSON object)' }, '{}');
    const out = h('p', { role: 'status' });
    async function invoke(ev) {
      ev.preventDefault();
      out.textContent = '';
      try {
        // The text typed goes as it is, once it parses: JSON.parse and
        // stringify again sent 9007199254740993 as 9007199254740992, 1.0 as 1.
        const a = (args.value || '').trim() || '[]', k = (kwargs.value || '').trim() || '{}';
        JSON.parse(a);
        JSON.parse(k);
        const body = `{"args": ${a}, "kwargs": ${k}${call.pinned ? `, "version": ${f.version}` : ''}}`;
        const r = await api(`/v1/functions/${encodeURIComponent(name)}/invoke`, { method: 'POST', rawBody: body });
        location.hash = `#/runs/${encodeURIComponent(r.id)}`;
      } catch (e) {
        out.textContent = e.message;
        out.className = 'error';
      }
    }
    const stats = h('div', { class: 'charts', id: 'fn-charts' });
    main.append(h('h1', {}, 'Function ', f.name),
      h('dl', { class: 'facts' },
        h('dt', {}, 'version'),
        h('dd', { id: 'fn-version' }, f.version, call.pinned ? ` (not the latest: ${latest})` : ' (latest)'),
        h('dt', {}, 'versions'), h('dd', {}, versionLinks(f, latest),
          canAct(session) ? versionDeletes(f, latest) : null),
        h('dt', {}, 'function'), h('dd', {}, `${f.filename || ''} :: ${f.function || ''}`),
        h('dt', {}, 'signature'), h('dd', {}, h('code', { id: 'fn-signature' }, signatureOf(f))),
        h('dt', {}, 'docstring'), h('dd', {}, f.doc ? h('pre', { id: 'fn-doc', class: 'doc' }, f.doc) : '—'),
        h('dt', {}, 'deployed'), h('dd', {}, fmtTime(f.created_at)),
        h('dt', {}, 'description'), h('dd', {}, f.description || '—'),
        // The packages the version is pinned to (its lock, as `functions
        // show` prints it), name==version each; none for a version without.
        f.lock && Array.isArray(f.lock.packages) ? [h('dt', {}, 'packages'),
          h('dd', { id: 'fn-lock', class: 'pkgs' }, f.lock.packages.length
            ? f.lock.packages.map((p, i) => [i ? ' ' : '', h('code', {}, `${p.name}==${p.version}`)])
            : '—')] : null),
      section(call.pinned ? `How to call version ${f.version}` : 'How to call',
        h('h3', {}, 'CLI'), h('pre', { id: 'fn-call-cli', class: 'json' }, call.cli),
        h('h3', {}, 'HTTP'), h('pre', { id: 'fn-call-http', class: 'json' }, call.http),
        h('p', { class: 'hint' }, call.needs ? 'Replace each CAPITALISED value; it is converted by the parameter\'s annotation. ' : '',
          call.optional.length ? ['Optional: ', call.optional.map((n, i) => [i ? ', ' : '', h('code', {}, n)]), '. '] : '',
          'The token: ', h('code', {}, '--token T'), ' or ', h('code', {}, '$PYSPRINTER_TOKEN'), '.')),
      canAct(session)
        ? section(call.pinned ? `Invoke version ${f.version}` : 'Invoke', h('form', { class: 'invoke', onsubmit: invoke },
          h('label', { for: 'inv-args' }, 'args (JSON array)'), args,
          h('label', { for: 'inv-kwargs' }, 'kwargs (JSON object)'), kwargs,
          h('button', { type: 'submit' }, call.pinned ? `Invoke version ${f.version}` : 'Invoke'), out))
        : section('Invoke', h('p', { id: 'inv-readonly', class: 'hint' }, 'This session\'s token is read-only: invoking needs a user token.')),
      section('Invocations (all versions)', stats),
      section('Requirements and limits', json({ requirements: f.requirements, limits: f.limits })));
    // Its invocations, all versions (the newest 1000): not the runs that
    // share the shown version's file and function name, which counted ad-hoc
    // runs of that file and missed versions whose function is named anew.
    const LIMIT = 1000;
    const runs = (await api(`${path}/runs?limit=${LIMIT}`)).runs;
    const sr = series(runs);
    if (!sr) { stats.append(h('p', { class: 'dim' }, 'No invocations yet.')); return; }
    const total = runs.length, failed = runs.filter((r) => !['succeeded', 'queued', 'running'].includes(r.status)).length;
    const all = runs.map((r) => r.timings && r.timings.total_ms).filter((x) => typeof x === 'number').sort((a, b) => a - b);
    // A full list may not be all of them: said so (it read "1000
    // invocation(s)" for a function with many more).
    const counted = total >= LIMIT ? `the newest ${total} invocations` : `${total} invocation(s)`;
    stats.append(h('p', {}, `${counted}, error rate ${((100 * failed) / total).toFixed(1)} %, ` +
      `p50 ${fmtMs(percentile(all, 50))}, p99 ${fmtMs(percentile(all, 99))}`));
    // No wider than their box (a phone's is narrower than 320 px): they
    // pushed the page sideways.
    const w = Math.max(200, Math.min(900, main.clientWidth - 40, (stats.clientWidth || 900) - 16));
    const c1 = h('div'), c2 = h('div'), c3 = h('div');
    stats.append(c1, c2, c3);
    charts.push(chart(c1, 'invocations', [sr.xs, sr.inv], [['invocations', '#2b6cb0']], w));
    charts.push(chart(c2, 'error rate %', [sr.xs, sr.rate], [['errors %', '#c53030']], w));
    charts.push(chart(c3, 'duration (ms)', [sr.xs, sr.p50, sr.p99], [['p50', '#2f855a'], ['p99', '#b7791f']], w));
  }).catch((e) => {
    const missing = e instanceof HttpError && (e.status === 404 || (asked && e.status === 400));
    if (!missing) main.append(errorBox(e));
    // As a run's not-found: what was asked for, and the way back.
    else if (!asked) main.append(...notFound('Function', name, 'is deployed for you', '#/functions', 'All functions'));
    // A version it does not have: the API's words, and the way to the latest.
    else main.append(h('h1', { id: 'not-found' }, 'Function ', name), errorBox(e),
      h('p', {}, h('a', { href: `#/functions/${encodeURIComponent(name)}` }, 'Its latest version')));
  });
  return () => charts.forEach((c) => c.destroy());
}
