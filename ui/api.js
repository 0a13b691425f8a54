// The daemon's JSON API, as the logged-in browser calls it: the session
// cookie authenticates, the CSRF header lets state-changing calls through.
import { parseExact } from './lib.js';

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The localStorage key a login or a logout writes, so that the
// dashboard's other tabs (one cookie jar) notice the session changed.
export const SESSION_KEY = 'pysprinter-session';

export function toLogin() {
  location.assign('/ui/login#' + encodeURIComponent(location.hash));
}

// exact: the answer also keeps its JSON numbers as written (lib.js
// parseExact), as data.exact, for showing a run's values.
// rawBody: JSON text sent as it is (what a user typed keeps its numbers).
export async function api(path, { method = 'GET', body, rawBody, text = false, exact = false } = {}) {
  const opts = { method, credentials: 'same-origin', headers: { 'X-Pysprinter-CSRF': '1' } };
  if (body !== undefined || rawBody !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = rawBody !== undefined ? rawBody : JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch {
    // No answer at all (the daemon down or restarting, the network gone):
    // the pages said the browser's "Failed to fetch". Said as the login
    // page says it.
    throw new Error('The daemon cannot be reached: try again once it is back (a restart also ends the session).');
  }
  if (r.status === 401) {
    toLogin();
    throw new HttpError(401, 'not logged in');
  }
  const ct = r.headers.get('Content-Type') || '';
  const isJson = !text && ct.startsWith('application/json');
  const raw = await r.text();
  const data = isJson ? JSON.parse(raw) : raw;
  if (isJson && exact && r.ok && data && typeof data === 'object') {
    Object.defineProperty(data, 'exact', { value: parseExact(raw), enumerable: false, writable: true });
  }
  if (!r.ok) {
    const msg = data && data.error ? data.error.message : `HTTP ${r.status}`;
    throw new HttpError(r.status, msg);
  }
  return data;
}

// An EventSource whose named events go to handlers; close() ends it.
// A stream whose session ended goes to the login page: the daemon says
// `revoked` (docs/api.md), and a reconnect it refused (a 401, e.g. after a
// restart forgot the sessions) leaves the EventSource closed for good,
// which the page would otherwise show as "reconnecting…" for ever.
export function stream(path, handlers) {
  const es = new EventSource(path);
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (ev) => {
      let data = null;
      try { data = JSON.parse(ev.data); } catch { data = ev.data; }
      fn(data, es, ev.data);
    });
  }
  es.addEventListener('revoked', () => {
    es.close();
    toLogin();
  });
  es.addEventListener('error', () => {
    if (es.readyState !== EventSource.CLOSED) return; // it retries by itself
    // Closed: refused, or the daemon is down. Only a lost session is a login.
    fetch('/ui/session', { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : null))
      .then((s) => { if (s && !s.tenant && !s.no_auth) toLogin(); })
      .catch(() => {});
  });
  return es;
}
