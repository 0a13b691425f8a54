// Data: the tenant's datasets; one dataset's versions and sizes.
import { api, HttpError } from './api.js';
import { h, fill, append, fmtTime, fmtBytes, table, errorBox, section } from './lib.js';

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
      section('Versions', table(['Version', 'Hash', 'Size', 'Created'], versions)));
  }).catch((e) => main.append(e instanceof HttpError && e.status === 404
    ? h('h1', { id: 'not-found' }, 'Dataset not found') : errorBox(e)));
}
