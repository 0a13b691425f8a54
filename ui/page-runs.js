// Runs: the tenant's runs, newest first, filtered and paged; new runs and
// status changes arrive over GET /v1/events (SSE) without a reload.
import { api, stream } from './api.js';
import { h, fill, append, clear, badge, fmtTime, fmtMs, runDuration, table, errorBox, debounce, setQuery, ACTIVE, keepFocus } from './lib.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'invalid', 'deps_failed', 'killed', 'cancelled',
  'error', 'lost'];
const PAGE = 50;

export function runsPage(main, _params, query, session) {
  const runs = new Map();
  // The page in the URL counts from 1, as the pager does (#/runs?page=2
  // is "page 2 of N"): it counted from 0, so a shared "page 3" opened
  // page 4. page counts from 0 inside; a page below 1 (or none) is 1.
  let page = Math.max(1, parseInt(query.get('page') || '1', 10) || 1) - 1;
  const status = h('select', { id: 'f-status', 'aria-label': 'Status' },
    h('option', { value: '' }, 'any status'), STATUSES.map((x) => h('option', { value: x }, x)));
  const fn = h('select', { id: 'f-function', 'aria-label': 'Function' }, h('option', { value: '' }, 'any function'));
  const sched = h('select', { id: 'f-schedule', 'aria-label': 'Schedule' }, h('option', { value: '' }, 'any schedule'));
  const text = h('input', { id: 'f-text', type: 'search', placeholder: 'Search id, file, function… ( / )',
    'aria-label': 'Search' });
  // A link may carry several states (`failed,killed`, as the API and
  // `ps --status` take them) or a word that is none: kept as a choice of
  // its own and asked of the server as it is (which lists those runs, or
  // says why not), as a function's name is below. Before, the filter
  // showed "any status" and listed every run.
  const wantStatus = query.get('status') || '';
  if (wantStatus && !STATUSES.includes(wantStatus)) {
    status.append(h('option', { value: wantStatus }, wantStatus.split(',').join(' or ')));
  }
  status.value = wantStatus;
  text.value = query.get('q') || '';
  const live = h('span', { class: 'live', id: 'live' }, 'connecting…');
  const body = h('div', { id: 'runs-body' });
  const pager = h('div', { class: 'pager' });
  // A page asked for by the URL (a link, a reload) that the runs do not
  // reach: said so over the last page shown in its place (it was shown
  // as if it were the page asked for). null once the user moves on.
  let askedPage = page || null;
  let loaded = false;
  const missing = h('p', { id: 'page-missing', class: 'dim' });
  // Why the list could not be had (the API's message: a state that is
  // none, the daemon gone), over the table, until a list comes: in the
  // table, the next drawing (a live run, every second) wiped it.
  const problem = h('div', { id: 'runs-problem' });
  const failed = (e) => fill(problem, errorBox(e));
  main.append(
    h('div', { class: 'title-row' }, h('h1', {}, 'Runs'), live),
    h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() }, status, fn, sched, text),
    missing, problem, body, pager);

  // The function and schedule filters as the user set them (first from
  // the URL): the deployed function (the run's fn_name) and the schedule
  // that fired it, as `ps --function/--schedule`. The choices are the
  // tenant's functions and schedules (GET /v1/functions, /v1/schedules)
  // and the names listed runs have (a deleted function's runs keep it),
  // rebuilt as runs of new ones arrive, keeping the choice. A name none
  // has stays a choice, so the filter shows what the URL says (before, a
  // link's function came back after "any function" was picked, at the
  // next run of a new function).
  let wantFn = query.get('function') || '';
  let wantSched = query.get('schedule') || '';
  const known = { fn: [], sched: [] };
  function functions() {
    const choices = (sel, field, extra, want, any) => {
      const names = [...new Set([...runs.values()].map((r) => r[field]).filter(Boolean).concat(extra, want || []))].sort();
      fill(sel, h('option', { value: '' }, any), ...names.map((x) => h('option', { value: x }, x)));
      sel.value = want;
    };
    choices(fn, 'fn_name', known.fn, wantFn, 'any function');
    choices(sched, 'schedule', known.sched, wantSched, 'any schedule');
  }
  Promise.all([
    api('/v1/functions').then((b) => { known.fn = b.functions.map((f) => f.name); }),
    api('/v1/schedules').then((b) => { known.sched = b.schedules.map((x) => x.name); }),
  ].map((p) => p.catch(() => {}))).then(functions);

  // The search as the server has it (GET /v1/runs?q=): a part of the
  // run's id, file name, function, deployed function or schedule, ASCII
  // letters in either case (the server's lower() folds no other). The
  // live runs that come meanwhile are tested here the same way.
  let wantText = text.value.trim();
  const lowerAscii = (x) => String(x).replace(/[A-Z]+/g, (c) => c.toLowerCase());
  function matches(r) {
    if (status.value && !status.value.split(',').includes(r.status)) return false;
    if (wantFn && r.fn_name !== wantFn) return false;
    if (wantSched && r.schedule !== wantSched) return false;
    const q = lowerAscii(wantText);
    if (q && ![r.id, r.filename, r.function, r.fn_name, r.schedule]
      .some((x) => x && lowerAscii(x).includes(q)))
      return false;
    return true;
  }

  function render() {
    const all = [...runs.values()].sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
    const shown = all.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    // A page past those loaded (a link's ?page=) is kept while the older
    // runs are fetched to reach it (reach()); drawn meanwhile as the last.
    const at = Math.min(page, pages - 1);
    if (!reaching) page = at;
    if (loaded && !reaching && askedPage !== null && askedPage > at) {
      const first = new URLSearchParams(query);
      first.delete('page');
      fill(missing, `?page=${askedPage + 1} is past the last page: showing page ${at + 1} of ${pages}. `,
        h('a', { href: `#/runs${first.toString() ? `?${first}` : ''}` }, 'First page'));
    } else clear(missing);
    const now = Date.now();
    // On a phone (docs/ui.md) the lesser columns (tenant, start, exit
    // code: the run's page has them) are hidden, so that the table fits
    // the screen: at 390 px it pushed the page sideways.
    const rows = shown.slice(at * PAGE, (at + 1) * PAGE).map((r) => h('tr', { 'data-run': r.id },
      h('td', {}, h('a', { href: `#/runs/${encodeURIComponent(r.id)}`, class: 'mono' }, r.id)),
      h('td', {}, badge(r.status), r.phase && ACTIVE.has(r.status) ? h('span', { class: 'phase' }, r.phase) : null),
      // A deployed function's run names it and the version it ran, as
      // ps's FUNCTION column (tick@2); an ad-hoc run its file's function.
      h('td', {}, r.fn_name ? `${r.fn_name}${r.fn_version ? `@${r.fn_version}` : ''}` : r.function || '—',
        r.filename ? h('span', { class: 'dim' }, ` ${r.filename}`) : null),
      h('td', { class: 'lesser' }, session.tenant),
      h('td', { class: 'lesser' }, fmtTime(r.started_at || r.created_at)),
      h('td', { class: 'num' }, fmtMs(runDuration(r, now))),
      h('td', { class: 'num lesser' }, r.exit_code ?? '—')));
    // The table is drawn anew (every second while a run runs, and at each
    // live change): the link that had the keyboard focus gets it back, or
    // the focus fell to the page's start each time.
    keepFocus(body, () => fill(body, table(['Run', 'Status', 'Function',
      { text: 'Tenant', class: 'lesser' }, { text: 'Started', class: 'lesser' }, 'Duration',
      { text: 'Exit', class: 'lesser' }], rows,
      // A filter the server applied that nothing matches lists no run at
      // all: that is not "No runs yet" (said to a tenant with thousands).
      { empty: runs.size || status.value || wantFn || wantSched || wantText ? 'No run matches the filters.'
        : 'No runs yet: submit one with `pysprinter run --server …`.' })));
    fill(pager,
      h('button', { type: 'button', disabled: at === 0, onclick: () => { page = at - 1; sync(); } }, '← Newer'),
      h('span', {}, ` page ${at + 1} of ${pages}${reaching ? '+' : ''} · ${shown.length} run(s) `),
      h('button', { type: 'button', id: 'older', disabled: at >= pages - 1 && !cursor,
        onclick: () => older().catch(failed) }, 'Older →'));
  }

  // A search typed just before the page was left (type, Tab, Enter within
  // the debounce's 150 ms) wrote #/runs?… over the next page's URL.
  let gone = false;
  function sync() {
    if (gone) return;
    askedPage = null;
    setQuery('/runs', { status: status.value, function: fn.value, schedule: sched.value, q: text.value,
      page: page ? page + 1 : '' });
    render();
  }
  // The status, function, schedule and text are the server's filters (GET
  // /v1/runs?status=&function=&schedule=&q=), as `ps` has them: the newest
  // 1000 runs that match, however many others came since (the function's
  // was the browser's among the newest 1000 runs: a function's older runs
  // were not found; the text's among those listed: a search for an older
  // run's id found nothing).
  const refilter = () => {
    wantFn = fn.value;
    wantSched = sched.value;
    wantText = text.value.trim();
    page = 0;
    sync();
    load().catch(failed);
  };
  for (const sel of [status, fn, sched]) sel.addEventListener('change', refilter);
  text.addEventListener('input', debounce(() => { if (!gone && text.value.trim() !== wantText) refilter(); }, 150));
  const onKey = (e) => {
    if (e.key === '/' && document.activeElement.tagName !== 'INPUT') {
      e.preventDefault();
      text.focus();
    }
  };
  document.addEventListener('keydown', onKey);

  // The server's list comes 1000 runs at a time: past the last page of
  // those loaded, "Older →" asks for the next 1000 (GET /v1/runs?before=
  // the oldest listed), so every run can be reached. cursor: that id while
  // the server may hold older ones, else null. A page asked for past those
  // loaded (a link or a reload of #/runs?page=30) is reached the same way,
  // batch after batch: it landed on the last page of the first 1000 runs.
  const BATCH = 1000;
  let loads = 0;
  let cursor = null;
  let reaching = false;
  const filterQuery = () => [['status', status.value], ['function', wantFn], ['schedule', wantSched], ['q', wantText]]
    .filter(([, v]) => v).map(([k, v]) => `&${k}=${encodeURIComponent(v)}`).join('');
  const shownPages = () => Math.max(1, Math.ceil([...runs.values()].filter(matches).length / PAGE));
  // The next batch of older runs into runs: false when a later list (a
  // filter's, a reconnect's) took over meanwhile.
  async function fetchOlder(mine) {
    const data = await api(`/v1/runs?limit=${BATCH}${filterQuery()}&before=${encodeURIComponent(cursor)}`);
    if (mine !== loads) return false;
    for (const r of data.runs) if (!runs.has(r.id)) runs.set(r.id, r);
    cursor = data.runs.length === BATCH ? data.runs[data.runs.length - 1].id : null;
    functions();
    return true;
  }
  async function reach(mine) {
    if (page < shownPages() || !cursor) return;
    reaching = true;
    render();
    try {
      while (cursor && page >= shownPages()) if (!(await fetchOlder(mine))) return;
    } finally {
      if (mine === loads) reaching = false;
    }
  }
  // The live changes that came while a list was on its way (null when
  // none is): laid again over the list when it comes, since the list may
  // have been read before them (before, the list replaced them: a run that
  // started and ended meanwhile was gone until a reload).
  let pending = null;
  async function load() {
    const mine = ++loads;
    reaching = false;
    pending = [];
    const data = await api(`/v1/runs?limit=${BATCH}${filterQuery()}`);
    if (mine !== loads) return; // a later filter's list is on its way
    clear(problem);
    runs.clear();
    for (const r of data.runs) runs.set(r.id, r);
    for (const r of pending) runs.set(r.id, r);
    pending = null;
    cursor = data.runs.length === BATCH ? data.runs[data.runs.length - 1].id : null;
    functions();
    await reach(mine);
    if (mine !== loads) return;
    loaded = true;
    render();
  }
  async function older() {
    if (page < shownPages() - 1 || !cursor) {
      page++;
      sync();
      return;
    }
    const mine = loads;
    const before = runs.size;
    if (!(await fetchOlder(mine))) return; // the filter changed meanwhile
    if (runs.size > before) page++;
    sync();
  }
  const renderSoon = debounce(render, 50);
  const es = stream('/v1/events', {
    hello: () => {
      live.textContent = '● live';
      live.classList.add('on');
      // The stream is open from here on: list again, as it may have
      // missed what came before (the first list was asked before the
      // stream was open, a reconnect's gap). The first list is not waited
      // for the stream: a page shows its runs even when the stream fails.
      load().catch(failed);
    },
    run: (r) => {
      const known = runs.has(r.id);
      runs.set(r.id, r);
      if (pending) pending.push(r);
      if (!known) functions();
      renderSoon();
    },
  });
  es.onerror = () => { live.textContent = 'reconnecting…'; live.classList.remove('on'); };
  // Durations of running runs tick.
  const tick = setInterval(() => { if ([...runs.values()].some((r) => r.status === 'running')) render(); }, 1000);
  load().catch(failed);
  return () => {
    gone = true;
    es.close();
    clearInterval(tick);
    document.removeEventListener('keydown', onKey);
  };
}
