// DAG runs: the list, and one DAG run's graph laid out left to right by
// dagre and drawn as SVG, nodes coloured by task state. While the run is in
// flight the states arrive by Server-Sent Events (GET /v1/dags/{id}/events:
// "dag" on every change, "end" when it is over), not by polling; the edges
// come from GET /v1/dags/{id}/graph. Past MAX_GRAPH tasks the page shows a
// list. Keyboard: nodes take focus (Tab), Enter or Space opens a node's
// panel, Escape closes it and gives the focus back to the node.
import dagre from './vendor/dagre.js';
import { api, stream, HttpError } from './api.js';
import { h, notFound, fill, append, s, clear, badge, fmtTime, fmtMs, json, section, table, errorBox, setQuery, canAct,
  parseExact, keepFocus } from './lib.js';

const MAX_GRAPH = 300;
// A task state's mark in the tasks × runs grid: a first letter told
// succeeded from skipped (and cached from cancelled) by colour alone.
const MARKS = { succeeded: '✓', cached: '≡', failed: '✗', cancelled: '⊘', skipped: '–', running: '▶', pending: '○' };
const LIVE = new Set(['running', 'validating']);

export function dagsPage(main) {
  const body = h('div');
  main.append(h('h1', {}, 'DAG runs'), body);
  async function load() {
    const data = await api('/v1/dags?limit=200');
    const rows = data.dags.map((g) => h('tr', {},
      h('td', {}, h('a', { href: `#/dags/${encodeURIComponent(g.id)}`, class: 'mono' }, g.id)),
      h('td', {}, g.name || '—'), h('td', {}, badge(g.status)),
      h('td', {}, fmtTime(g.started_at || g.created_at)), h('td', { class: 'num' }, fmtMs(g.duration_ms))));
    // No task counts: the list (GET /v1/dags) has none, as `dag ls` shows
    // none; the column read "—" for every DAG run, as if it had no task.
    // A DAG run's page has them.
    // Drawn anew every 2 s: the focused DAG run's link keeps the focus.
    keepFocus(body, () => fill(body, table(['DAG run', 'Name', 'Status', 'Started', 'Duration'], rows,
      { empty: 'No DAG runs yet: `pysprinter dag run pipeline.yaml --server …`.' })));
  }
  load().catch((e) => body.append(errorBox(e)));
  const t = setInterval(() => load().catch(() => {}), 2000);
  return () => clearInterval(t);
}

const NODE_CHARS = 30; // what a node's 260 px hold at 7.5 px a character
function nodeWidth(name) {
  return Math.min(260, 28 + name.length * 7.5);
}
// A node's label: a longer name is cut with an ellipsis (it ran out of the
// box on both sides); the whole name is the node's title and aria-label.
function nodeLabel(name) {
  return name.length > NODE_CHARS ? `${name.slice(0, NODE_CHARS - 1)}…` : name;
}

export function dagPage(main, [id], query, session) {
  let selected = query.get('task') || '';
  let state = null;
  let graph = null;
  let es = null;
  const head = h('div');
  const view = h('div', { class: 'dag-view' });
  const panel = h('aside', { class: 'side', id: 'task-panel', 'aria-live': 'polite' });
  const gridBox = h('div');
  const nodes = new Map(); // task name -> SVG group or list row
  main.append(head, h('div', { class: 'dag-layout' }, view, panel), gridBox);

  function select(name) {
    selected = name;
    setQuery(`/dags/${id}`, { task: name });
    for (const [n, el] of nodes) el.classList.toggle('selected', n === name);
    showTask();
  }

  // Escape: the panel closes, the focus goes back to the task's node.
  function closePanel() {
    const was = nodes.get(selected);
    select('');
    if (was) was.focus();
  }
  const onKey = (e) => {
    if (e.key === 'Escape' && selected) { e.preventDefault(); closePanel(); }
  };
  document.addEventListener('keydown', onKey);

  async function showTask() {
    clear(panel);
    if (!selected || !state) {
      panel.append(h('p', { class: 'dim' }, 'Select a task (click, or Tab to it and press Enter).'));
      return;
    }
    const t = state.tasks.find((x) => x.name === selected);
    if (!t) return;
    panel.append(h('div', { class: 'title-row' }, h('h2', {}, selected),
      h('button', { type: 'button', id: 'panel-close', 'aria-label': 'Close the task panel (Escape)', onclick: closePanel },
        'Close')),
    h('p', {}, badge(t.state), t.cached ? ' cached' : '',
      t.attempts ? ` · ${t.attempts} attempt(s)` : ''),
    h('dl', { class: 'facts' },
      h('dt', {}, 'run'), h('dd', {}, t.run_id ? h('a', { href: `#/runs/${encodeURIComponent(t.run_id)}`, class: 'mono' },
        t.run_id) : '—'),
      h('dt', {}, 'duration'), h('dd', {}, fmtMs(t.duration_ms)),
      h('dt', {}, 'exit code'), h('dd', {}, t.exit_code ?? '—')));
    if (t.error) panel.append(h('h3', {}, 'Error'), h('pre', { class: 'traceback' }, t.error));
    // The result as the API wrote it (its numbers as `run` prints them).
    const exact = state.exact && state.exact.tasks ? state.exact.tasks.find((x) => x.name === selected) : null;
    if (t.result !== null && t.result !== undefined) panel.append(h('h3', {}, 'Result'), json(exact ? exact.result : t.result));
    const log = h('pre', { class: 'log', id: 'task-log' }, '…');
    panel.append(h('h3', {}, 'Logs'), log);
    if (!t.run_id) { log.textContent = '(not run yet)'; return; }
    try {
      log.textContent = await api(`/v1/dags/${encodeURIComponent(id)}/tasks/${encodeURIComponent(selected)}/logs`,
        { text: true }) || '(no output)';
    } catch (e) {
      log.textContent = e.status === 409 ? '(not run yet)' : e.message;
    }
  }

  function drawGraph() {
    if (graph.tasks.length > MAX_GRAPH) {
      // dagre on thousands of nodes would hold the page for seconds: a
      // list by depth instead.
      const rows = [...graph.tasks].sort((a, b) => a.depth - b.depth).map((t) => {
        const tr = h('tr', { tabindex: '0', class: 'task-row', onclick: () => select(t.name),
          onkeydown: (e) => { if (e.key === 'Enter') select(t.name); } },
        h('td', {}, t.depth), h('td', {}, t.name), h('td', { class: 'state' }, '—'), h('td', {}, t.deps.join(', ')));
        nodes.set(t.name, tr);
        return tr;
      });
      view.append(h('p', { class: 'dim' }, `${graph.tasks.length} tasks: too many to draw, listed by depth.`),
        table(['Depth', 'Task', 'State', 'Depends on'], rows));
      return;
    }
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: 'LR', nodesep: 18, ranksep: 48, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const t of graph.tasks) g.setNode(t.name, { width: nodeWidth(t.name), height: 34 });
    for (const t of graph.tasks) for (const d of t.deps) g.setEdge(d, t.name);
    dagre.layout(g);
    const { width, height } = g.graph();
    const svg = s('svg', { id: 'dag-graph', viewBox: `0 0 ${width} ${height}`, width, height, role: 'group',
      'aria-label': 'task graph' });
    svg.append(s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }))));
    for (const e of g.edges()) {
      const pts = g.edge(e).points;
      svg.append(s('path', { class: 'edge', 'marker-end': 'url(#arrow)',
        d: pts.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ') }));
    }
    for (const t of graph.tasks) {
      const n = g.node(t.name);
      const grp = s('g', { class: 'node st-pending', tabindex: '0', role: 'button', 'data-task': t.name,
        transform: `translate(${(n.x - n.width / 2).toFixed(1)},${(n.y - n.height / 2).toFixed(1)})`,
        'aria-label': `task ${t.name}` });
      grp.append(s('rect', { width: n.width, height: n.height, rx: 6 }),
        s('text', { x: n.width / 2, y: n.height / 2 + 4, 'text-anchor': 'middle' }, nodeLabel(t.name)),
        s('title', {}, t.name));
      grp.addEventListener('click', () => select(t.name));
      grp.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(t.name); } });
      nodes.set(t.name, grp);
      svg.append(grp);
    }
    view.append(h('div', { class: 'graph-scroll' }, svg));
  }

  function paint() {
    fill(head, h('div', { class: 'title-row' }, h('h1', {}, 'DAG run ', h('span', { class: 'mono' }, state.id)),
      badge(state.status), LIVE.has(state.status) && canAct(session)
        ? h('button', { type: 'button', class: 'danger', onclick: cancel }, 'Cancel') : null),
    h('p', { class: 'dim' }, `${state.name || ''} · started ${fmtTime(state.started_at)} · `,
      Object.entries(state.counts || {}).map(([k, v]) => `${k} ${v}`).join(', ')),
    state.error ? h('p', { class: 'error' }, state.error) : null);
    for (const t of state.tasks) {
      const el = nodes.get(t.name);
      if (!el) continue;
      const cls = `st-${(t.state || 'pending').replace(/[^a-z_]/g, '')}`;
      if (el.tagName === 'TR') el.querySelector('.state').textContent = t.state;
      else el.setAttribute('class', `node ${cls}${t.name === selected ? ' selected' : ''}`);
      el.dataset.state = t.state;
    }
  }

  async function cancel() {
    try { state = await api(`/v1/dags/${encodeURIComponent(id)}`, { method: 'DELETE' }); paint(); } catch (e) {
      head.append(errorBox(e));
    }
  }

  // A new DAG object from the stream: repaint; the open panel follows its
  // task's state.
  function update(next) {
    const key = (x) => JSON.stringify(x && x.tasks.map((t) => [t.name, t.state, t.run_id]));
    const changed = key(state) !== key(next);
    state = next;
    paint();
    if (selected && changed) showTask();
  }

  function follow() {
    es = stream(`/v1/dags/${encodeURIComponent(id)}/events`, {
      dag: (d, _src, raw) => {
        if (!d || !d.tasks) return;
        try { d.exact = parseExact(raw); } catch { /* shown as parsed */ }
        update(d);
      },
      end: (_d, src) => {
        src.close(); // over: no reconnect
        grid().catch(() => {});
      },
    });
  }

  // Tasks × the recent runs of the same pipeline (by name).
  async function grid() {
    const list = (await api('/v1/dags?limit=50')).dags.filter((x) => x.name === state.name).slice(0, 10);
    // This run's states are in hand (the stream's last "dag"): not fetched again.
    const runs = await Promise.all(list.map((x) => (x.id === state.id ? state
      : api(`/v1/dags/${encodeURIComponent(x.id)}`).catch(() => null))));
    const cols = runs.filter(Boolean);
    const rows = graph.tasks.slice(0, MAX_GRAPH).map((t) => h('tr', {}, h('th', { scope: 'row' }, t.name),
      cols.map((r) => {
        const x = r.tasks.find((y) => y.name === t.name);
        const st = x ? x.state : '';
        return h('td', { class: `cell st-${st.replace(/[^a-z_]/g, '')}`, title: `${r.id}: ${st || 'absent'}` },
          h('a', { href: `#/dags/${encodeURIComponent(r.id)}?task=${encodeURIComponent(t.name)}`,
            'aria-label': `${t.name} in ${r.id}: ${st || 'absent'}` }, MARKS[st] || st.slice(0, 2) || '·'));
      })));
    const legend = h('p', { class: 'dim', id: 'dag-grid-legend' },
      Object.entries(MARKS).map(([k, m], i) => `${i ? ' · ' : ''}${m} ${k}`), ' · · absent');
    fill(gridBox, section('Tasks × recent runs',
      h('div', { id: 'dag-grid' }, table(['Task', ...cols.map((r) => fmtTime(r.created_at).slice(5))], rows)), legend));
  }

  Promise.all([api(`/v1/dags/${encodeURIComponent(id)}/graph`), api(`/v1/dags/${encodeURIComponent(id)}`, { exact: true })])
    .then(([gr, st]) => {
      graph = gr;
      state = st;
      drawGraph();
      paint();
      if (selected) select(selected);
      else showTask();
      if (LIVE.has(state.status)) follow();
      else grid().catch(() => {});
    }).catch((e) => {
      clear(main);
      if (e instanceof HttpError && e.status === 404) {
        main.append(...notFound('DAG run', id, 'is visible to you', '#/dags', 'All DAG runs'));
      } else main.append(errorBox(e));
    });
  return () => {
    if (es) es.close();
    document.removeEventListener('keydown', onKey);
  };
}
