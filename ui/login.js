// The login page: trades a token for a session cookie (POST /login).
import { SESSION_KEY } from './api.js';

const form = document.getElementById('login-form');
const error = document.getElementById('login-error');

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.textContent = '';
  const token = document.getElementById('token').value.trim();
  let r;
  try {
    r = await fetch('/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-Pysprinter-CSRF': '1' },
      body: JSON.stringify({ token }),
    });
  } catch (e) {
    error.textContent = 'The daemon cannot be reached.';
    return;
  }
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    error.textContent = (body.error && body.error.message) || `Login failed (${r.status}).`;
    return;
  }
  // The dashboard's other tabs share the new session cookie: this tells
  // them (a 'storage' event, app.js) to draw themselves as its tenant.
  try { localStorage.setItem(SESSION_KEY, String(Date.now())); } catch { /* no storage: they check when shown */ }
  // Back to the page that sent us here (a hash route), else the runs.
  const back = decodeURIComponent(location.hash.slice(1));
  location.assign('/ui/' + (back.startsWith('#/') ? back : '#/runs'));
});
