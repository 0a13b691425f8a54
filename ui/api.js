// The daemon's JSON API, as the logged-in browser calls it: the session
// cookie authenticates, the CSRF header lets state-changing calls through.
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function toLogin() {
  location.assign('/ui/login#' + encodeURIComponent(location.hash));
}

export async function api(path, { method = 'GET', body, text = false } = {}) {
  const opts = { method, credentials: 'same-origin', headers: { 'X-Pysprinter-CSRF': '1' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) {
    toLogin();
    throw new HttpError(401, 'not logged in');
  }
  const ct = r.headers.get('Content-Type') || '';
  const data = !text && ct.startsWith('application/json') ? await r.json() : await r.text();
  if (!r.ok) {
    const msg = data && data.error ? data.error.message : `HTTP ${r.status}`;
    throw new HttpError(r.status, msg);
  }
  return data;
}

// An EventSource whose named events go to handlers; close() ends it.
export function stream(path, handlers) {
  const es = new EventSource(path);
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (ev) => {
      let data = null;
      try { data = JSON.parse(ev.data); } catch { data = ev.data; }
      fn(data, es);
    });
  }
  return es;
}
