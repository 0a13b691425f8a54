// Data: the tenant's datasets; one dataset's versions, sizes and where it
// is used (GET /v1/data/{name}/usage: the newest runs that mounted it —
// a DAG task's run links its DAG run and task — and the deployed functions
// whose invokes did).
import { api, HttpError } from './api.js';
import { h, notFound, fill, append, fmtTime, fmtBytes, badge, table, errorBox, section } from './lib.js';

const enc = encodeURIComponent;

function usageView(u) {
  const runs = u.runs.map((r) => h('tr', {},
    h('td', {}, h('a', { href: `#/runs/${enc(r.id)}`, class: 'mono' }, r.id)), h('td', {}, badge(r.status)),
    h('td', {}, r.fn_name ? h('a', { href: `#/functions/${enc(r.fn_name)}` }, r.fn_name) : (r.function || '—')),
    h('td', {}, r.dag_id ? h('a', { href: `#/dags/${enc(r.dag_id)}?task=${enc(r.task || '')}` },
      `${r.task} in ${r.dag_id}`) : '—'),
    h('td', { class: 'mono' }, r.ref), h('td', {}, fmtTime(r.created_at))));
  return h('div', { id: 'data-usage' },
    h('p', { id: 'data-functions' }, 'Deployed functions: ', u.functions.length
      ? u.functions.map((f, i) => [i ? ', ' : '', h('a', { href: `#/functions/${enc(f)}` }, f)])
      : h('span', { class: 'dim' }, 'no invoke below mounted it')),
    h('h3', {}, `Recent runs that mounted it (newest ${u.runs.length})`),
    table(['Run', 'Status', 'Function', 'DAG task', 'As', 'Created'], runs, { empty: 'No run has mounted it.' }));
}

export function dataPage(main) {
  const body = h('div');
  main.append(h('h1', {}, 'Data'), body);
  api('/v1/data').then((data) => {
    const rows = data.datasets.map((d) => h('tr', {},
      h('td', {}, h('a', { href: `#/data/${encodeURIComponent(d.name)}` }, d.name)),
      h('td', { class: 'num' }, d.current_version ?? d.version ?? '—'), h('td', {}, d.kind || '—'),
      h('td', { class: 'num' }, fmtBytes(d.size)), h('td', {}, d.filename || d.url || '—'),
      h('td', {}, fmtTime(d.created_at))));
    body.append(table(['Dataset', 'Version', 'Kind', 'Size', 'Source', 'Created'], rows,
      { empty: 'No datasets: `pysprinter data put NAME FILE --server …`.' }));
  }).catch((e) => body.append(errorBox(e)));
}

export function datasetPage(main, [name]) {
  const usage = h('div', {}, h('p', { class: 'dim' }, '…'));
  api(`/v1/data/${encodeURIComponent(name)}`).then((d) => {
    const versions = (d.versions || []).map((v) => h('tr', {}, h('td', { class: 'num' }, v.version),
      h('td', { class: 'mono' }, (v.hash || '').slice(0, 16)), h('td', { class: 'num' }, fmtBytes(v.size)),
      h('td', {}, fmtTime(v.created_at))));
    main.append(h('h1', {}, 'Dataset ', d.name),
      h('dl', { class: 'facts' }, h('dt', {}, 'current version'), h('dd', {}, d.current_version ?? d.version),
        h('dt', {}, 'kind'), h('dd', {}, d.kind || '—'), h('dt', {}, 'size'), h('dd', {}, fmtBytes(d.size)),
        h('dt', {}, 'files'), h('dd', {}, d.files ?? '—'), h('dt', {}, 'used as'),
        h('dd', {}, h('code', {}, `--data ${d.name}`), ' → ', h('code', {}, `/data/${d.name}`))),
      d.warning ? h('p', { class: 'error' }, d.warning) : '',
      section('Versions', table(['Version', 'Hash', 'Size', 'Created'], versions)),
      section('Where used', usage));
    return api(`/v1/data/${enc(name)}/usage`).then((u) => fill(usage, usageView(u)));
  }).catch((e) => {
    if (e instanceof HttpError && e.status === 404) {
      main.append(...notFound('Dataset', name, 'is visible to you', '#/data', 'All datasets'));
    } else main.append(errorBox(e));
  });
}
