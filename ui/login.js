// The login page: trades a token for a session cookie (POST /login).
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
  // Back to the page that sent us here (a hash route), else the runs.
  const back = decodeURIComponent(location.hash.slice(1));
  location.assign('/ui/' + (back.startsWith('#/') ? back : '#/runs'));
});
