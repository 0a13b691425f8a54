// The dashboard's shell: who is logged in, and a hash router. Each page
// is a function (main, params, query) that renders into main and returns
// a cleanup (closing its event streams and timers) for when we leave it.
import { api, toLogin, SESSION_KEY } from './api.js';
import { h, clear, errorBox } from './lib.js';
import { runsPage } from './page-runs.js';
import { runPage } from './page-run.js';
import { dagsPage, dagPage } from './page-dag.js';
import { functionsPage, functionPage } from './page-functions.js';
import { dataPage, datasetPage } from './page-data.js';
import { workersPage } from './page-workers.js';

const ROUTES = [
  [/^\/runs$/, runsPage, 'runs'],
  [/^\/runs\/([^/]+)$/, runPage, 'runs'],
  [/^\/dags$/, dagsPage, 'dags'],
  [/^\/dags\/([^/]+)$/, dagPage, 'dags'],
  [/^\/functions$/, functionsPage, 'functions'],
  [/^\/functions\/([^/]+)$/, functionPage, 'functions'],
  [/^\/data$/, dataPage, 'data'],
  [/^\/data\/([^/]+)$/, datasetPage, 'data'],
  [/^\/workers$/, workersPage, 'workers'],
];

const main = document.getElementById('main');
let cleanup = null;
let session = null;
const nav = document.querySelector('header.top nav');

// On a phone the sections are one row that scrolls sideways, its
// scrollbar hidden (app.css): the side where more of it is fades out.
function navHint() {
  const more = nav.scrollWidth - nav.clientWidth;
  nav.classList.toggle('more-left', more > 1 && nav.scrollLeft > 1);
  nav.classList.toggle('more-right', more > 1 && nav.scrollLeft < more - 1);
}

// The page's own section in view in that row (a deep link to Workers on
// a 320 px phone showed its link cut off, or not at all).
function navShowCurrent() {
  const a = nav.querySelector('a[aria-current]');
  if (a && nav.scrollWidth > nav.clientWidth) {
    const n = nav.getBoundingClientRect(), r = a.getBoundingClientRect();
    if (r.right > n.right) nav.scrollLeft += r.right - n.right + 24;
    else if (r.left < n.left) nav.scrollLeft -= n.left - r.left + 24;
  }
  navHint();
}
nav.addEventListener('scroll', navHint, { passive: true });
// Again when the row or a link changes size: a window turned, the page's
// font loaded, or the page's own scrollbar came with a longer page
// (narrowing the row by its width, with no resize event).
const navSized = new ResizeObserver(navShowCurrent);
for (const e of [nav, ...nav.querySelectorAll('a')]) navSized.observe(e);

function route() {
  if (cleanup) {
    try { cleanup(); } catch { /* the old page is gone either way */ }
    cleanup = null;
  }
  clear(main);
  const raw = location.hash.slice(1) || '/runs';
  const [path, qs] = raw.split('?');
  const query = new URLSearchParams(qs || '');
  for (const [re, page, sectionName] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.section === sectionName) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    navShowCurrent();
    let params;
    try {
      params = m.slice(1).map(decodeURIComponent);
    } catch {
      // A cut escape ("%E0%A4%A", a link cut short): it threw out of the
      // router and left an empty page (and an uncaught URIError).
      break;
    }
    // Each view its own title: the tab, the history (back's list) and a
    // bookmark named every page "pysprinter".
    const what = { runs: ['Runs', 'Run'], dags: ['DAG runs', 'DAG run'], functions: ['Functions', 'Function'],
      data: ['Data', 'Dataset'], workers: ['Workers', 'Workers'] }[sectionName];
    document.title = `${params.length ? `${what[1]} ${params[0]}` : what[0]} · pysprinter`;
    try {
      cleanup = page(main, params, query, session) || null;
    } catch (e) {
      main.appendChild(errorBox(e));
    }
    return;
  }
  document.title = 'Not found · pysprinter';
  main.appendChild(h('h1', { id: 'not-found' }, 'Not found'));
  main.appendChild(h('p', {}, 'No page at ', h('code', {}, path), '. ', h('a', { href: '#/runs' }, 'Back to the runs')));
}

async function start() {
  session = await api('/ui/session');
  if (!session.tenant) {
    toLogin();
    return;
  }
  document.getElementById('who').textContent = `${session.tenant} (${session.role})`;
  const logout = document.getElementById('logout');
  if (session.no_auth) logout.hidden = true;
  logout.addEventListener('click', async () => {
    await api('/logout', { method: 'POST' });
    try { localStorage.setItem(SESSION_KEY, String(Date.now())); } catch { /* the others check when shown */ }
    location.assign('/ui/login');
  });
  // The tabs of one browser share the session cookie: a login in another
  // tab as another tenant left this one naming the old tenant while its
  // requests went as the new one. A login or logout there writes
  // SESSION_KEY (a 'storage' event here); a tab shown again checks too.
  // Another tenant or role: the page is drawn again as that session's;
  // none: the login page.
  async function sessionChanged() {
    let now;
    try {
      now = await api('/ui/session');
    } catch {
      return; // a 401 went to the login page; the daemon unreachable: later
    }
    if (!now.tenant) toLogin();
    else if (now.tenant !== session.tenant || now.role !== session.role) location.reload();
  }
  window.addEventListener('storage', (e) => { if (e.key === SESSION_KEY) sessionChanged(); });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) sessionChanged(); });
  window.addEventListener('hashchange', () => {
    route();
    // A keyboard user lands on the new page, not back at the top.
    main.focus({ preventScroll: true });
  });
  // "Skip to content" must not become a route (#main): it moves the focus.
  document.querySelector('.skip').addEventListener('click', (e) => {
    e.preventDefault();
    main.focus();
  });
  route();
}

start().catch((e) => main.appendChild(errorBox(e)));
