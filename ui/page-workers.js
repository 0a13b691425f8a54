// Workers: the warm pool (workers, instances, memory, limits) and the
// environments, refreshed every few seconds; in cluster mode (the session
// says so) the cluster's nodes, their leases and the shared queue
// (GET /v1/cluster).
import { api } from './api.js';
import { h, fill, append, clear, fmtBytes, fmtMs, fmtTime, table, errorBox, section } from './lib.js';

function clusterView(c) {
  const rows = (c.nodes || []).map((n) => h('tr', { 'data-node': n.id },
    h('td', { class: 'mono' }, n.id, n.id === c.node ? ' (this node)' : ''),
    h('td', {}, n.alive ? 'alive' : 'lease expired'), h('td', {}, n.drain_requested ? 'draining' : '—'),
    h('td', { class: 'num' }, n.lease_age_ms ?? '—')));
  return section('Cluster',
    h('dl', { class: 'facts', id: 'cluster-queue' },
      h('dt', {}, 'queued'), h('dd', {}, c.queued ?? 0), h('dt', {}, 'claimed (pending)'), h('dd', {}, c.pending ?? 0),
      h('dt', {}, 'dead letters'), h('dd', {}, c.dead_letters ?? 0)),
    table(['Node', 'Lease', 'Drain', 'Lease age ms'], rows, { empty: 'No node.' }));
}

// The API's idle seconds (33.607076) as a duration, as `pysprinter
// workers` prints them (33.6 s).
const idle = (x) => (typeof x === 'number' ? fmtMs(x * 1000) : '—');
// A field the daemon does not give this token (a shared worker's pid and
// runs in flight are an admin's: docs/api.md) reads as a dash.
const orDash = (x) => (x === undefined || x === null ? '—' : x);

export function workersPage(main, _params, _query, session) {
  const body = h('div');
  main.append(h('h1', {}, 'Workers'), body);
  async function load() {
    const [w, e, c] = await Promise.all([api('/v1/workers'), api('/v1/envs'),
      session && session.cluster ? api('/v1/cluster') : null]);
    // No pool: the daemon's totals are an admin's (private metrics).
    const p = w.pool || {};
    const workers = w.workers.filter((x) => x.kind !== 'instance').map((x) => h('tr', {},
      h('td', { class: 'num' }, orDash(x.pid)), h('td', {}, x.ready === false ? 'starting' : 'ready'),
      h('td', { class: 'num' }, orDash(x.busy)), h('td', { class: 'num' }, fmtBytes(x.pss_bytes)),
      h('td', { class: 'num' }, idle(x.idle_s)), h('td', {}, x.network ? 'yes' : 'no')));
    const inst = w.workers.filter((x) => x.kind === 'instance').map((x) => h('tr', {},
      h('td', {}, x.function), h('td', { class: 'num' }, x.pid), h('td', {}, x.busy ? 'busy' : 'idle'),
      h('td', { class: 'num' }, x.invocations), h('td', { class: 'num' }, idle(x.idle_s))));
    const envs = e.envs.map((x) => h('tr', {}, h('td', { class: 'mono' }, (x.key || '').slice(0, 12)),
      h('td', {}, (x.requirements || []).join(', ') || '(base)'), h('td', { class: 'num' }, fmtBytes(x.size_bytes)),
      h('td', {}, fmtTime(x.last_used)), h('td', {}, x.in_use === undefined ? '—' : x.in_use ? 'yes' : 'no')));
    fill(body,
      h('dl', { class: 'facts', id: 'pool' },
        h('dt', {}, 'workers'), h('dd', {}, w.pool ? `${p.workers ?? 0} (${p.busy ?? 0} busy)` : '—'),
        h('dt', {}, 'warm instances'), h('dd', {}, w.pool ? p.instances ?? 0 : '—'),
        h('dt', {}, 'memory (PSS)'), h('dd', {}, w.pool ? `${fmtBytes(p.pss_bytes)} of ${p.memory_budget ? fmtBytes(p.memory_budget) : 'no'} budget` : '—'),
        h('dt', {}, 'pool hits / misses / evictions'), h('dd', {}, w.pool ? `${p.hits ?? 0} / ${p.misses ?? 0} / ${p.evictions ?? 0}` : '—'),
        h('dt', {}, 'sandbox'), h('dd', {}, e.sandbox ? 'full' : 'none'),
        h('dt', {}, 'index'), h('dd', {}, e.index_url || '—')),
      section('Warm workers', table(['PID', 'State', 'Busy', 'Memory', 'Idle', 'Network'], workers,
        { empty: 'No warm worker.' })),
      section('Function instances', table(['Function', 'PID', 'State', 'Invocations', 'Idle'], inst,
        { empty: 'No warm instance.' })),
      c ? clusterView(c) : null,
      section('Environments', table(['Key', 'Requirements', 'Size', 'Last used', 'In use'], envs)));
  }
  load().catch((err) => body.append(errorBox(err)));
  const t = setInterval(() => load().catch(() => {}), 3000);
  return () => clearInterval(t);
}
