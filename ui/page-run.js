// A run: arguments, result, error and traceback, the phase waterfall from
// its timings, its live log (GET /v1/runs/{id}/logs?follow=1, SSE) and a
// cancel button. Output is appended as text nodes, never as HTML.
import { api, stream, HttpError } from './api.js';
import { h, notFound, fill, append, clear, badge, fmtTime, fmtMs, fmtClock, fmtLimits, json, section, table, errorBox, ACTIVE,
  canAct, parseExact } from './lib.js';

const PHASES = [['validate', 'validate_ms'], ['resolve', 'resolve_ms'], ['install', 'install_ms'],
  ['acquire', 'start_ms'], ['run', 'run_ms']];

export function waterfall(timings) {
  if (!timings || typeof timings !== 'object') return h('p', { class: 'dim' }, 'No timings yet.');
  const total = timings.total_ms || PHASES.reduce((a, [, k]) => a + (timings[k] || 0), 0) || 1;
  let at = 0;
  const rows = PHASES.map(([name, key]) => {
    const ms = timings[key] || 0;
    const bar = h('span', { class: `bar ph-${name}` });
    // CSSOM, not a style attribute: the CSP allows no inline style.
    bar.style.marginLeft = `${(at / total) * 100}%`;
    bar.style.width = `${Math.max((ms / total) * 100, 0.3)}%`;
    at += ms;
    return h('div', { class: 'wf-row' }, h('span', { class: 'wf-name' }, name),
      h('span', { class: 'wf-track' }, bar), h('span', { class: 'wf-ms num' }, fmtMs(ms)));
  });
  return h('div', { class: 'waterfall', role: 'img', 'aria-label': 'phase waterfall' }, rows,
    h('div', { class: 'wf-row total' }, h('span', { class: 'wf-name' }, 'total'), h('span', { class: 'wf-track' }),
      h('span', { class: 'wf-ms num' }, fmtMs(timings.total_ms))));
}

// The environment's lock (GET /v1/runs/{id}/lock): the packages and exact
// versions the run's requirements resolved to.
export function lockView(data) {
  const lock = data && data.lock;
  if (!lock) return h('p', { class: 'dim' }, 'No packages: the standard library only (or not resolved yet).');
  const rows = (lock.packages || []).map((p) => h('tr', {}, h('td', {}, p.name), h('td', { class: 'mono' }, p.version),
    h('td', { class: 'mono', title: p.sha256 || '' }, (p.sha256 || '').slice(0, 16)),
    h('td', {}, (p.dependencies || []).join(', ') || '—')));
  return h('div', {},
    h('p', {}, 'requirements: ', h('code', {}, (lock.requirements || []).join(', ') || '—')),
    table(['Package', 'Version', 'sha256', 'Depends on'], rows, { empty: 'No packages.' }));
}

// A run's error as `run` prints it: the message names its type already
// when the function raised ("ValueError: boom") or the source did not
// parse ("main.py:1:7: SyntaxError: …", with the line and a caret under
// the column: its lines are kept); else the type goes first.
function errorLine(e) {
  const type = e.type || 'Error', msg = e.message || '';
  const named = msg === type || msg.startsWith(`${type}:`) || msg.includes(` ${type}:`);
  return h('p', { class: 'error-type' }, named ? msg : [h('strong', {}, type), msg ? `: ${msg}` : '']);
}

export function runPage(main, [id], _query, session) {
  const head = h('div', { id: 'run-head' });
  const details = h('div', { id: 'run-details' });
  const lockBox = h('div', { id: 'run-lock' }, h('p', { class: 'dim' }, '…'));
  let lockShown = false;
  async function loadLock() {
    try {
      const data = await api(`/v1/runs/${encodeURIComponent(id)}/lock`);
      fill(lockBox, lockView(data));
      lockShown = !!data.lock;
    } catch (e) {
      fill(lockBox, errorBox(e));
    }
  }
  const logBox = h('pre', { id: 'log', class: 'log', tabindex: '0', 'aria-label': 'Output', 'aria-live': 'off' });
  const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
  const logState = h('span', { class: 'dim', id: 'log-state' });
  let atLineStart = true;
  let es = null;
  let run = null;

  const bottom = () => { logBox.scrollTop = logBox.scrollHeight; };
  // Output is drawn in batches (each piece added and scrolled into view on
  // its own forced a layout per piece, at a cost growing with the log: a
  // run that printed its 10 MiB froze the page for minutes), and the page
  // keeps the last MAX_LINES lines; Download has them all.
  const MAX_LINES = 5000;
  const trimmed = h('p', { id: 'log-trimmed', class: 'dim', hidden: true });
  const pending = document.createDocumentFragment();
  const lineStarts = []; // each kept line's first node (its time), oldest first
  let dropped = 0;
  let flushing = false;
  let pause = 100;
  function flush() {
    flushing = false;
    if (lineStarts.length > MAX_LINES) {
      // The lines cut go at once (a Range), before the batch is added:
      // the batch's own are cut where they are not drawn.
      const cut = lineStarts.length - MAX_LINES;
      const keep = lineStarts[cut];
      const range = document.createRange();
      if (keep.parentNode === logBox) {
        range.setStart(logBox, 0);
        range.setEndBefore(keep);
        range.deleteContents();
      } else {
        if (logBox.firstChild) {
          range.selectNodeContents(logBox);
          range.deleteContents();
        }
        range.setStart(pending, 0);
        range.setEndBefore(keep);
        range.deleteContents();
      }
      lineStarts.splice(0, cut);
      dropped += cut;
      trimmed.hidden = false;
      trimmed.textContent = `${dropped} earlier lines are not shown here: Download has the whole log.`;
    }
    const t0 = performance.now();
    logBox.appendChild(pending); // moves the batch's nodes, leaving it empty
    if (follow.checked) bottom();
    // A long log costs a long layout: the next batch waits for it more, so
    // that laying out stays a small part of the time (a replayed 10 MiB
    // log comes in as fast as it is read).
    pause = Math.min(1000, Math.max(100, 4 * (performance.now() - t0)));
  }
  const later = () => {
    if (!flushing) {
      flushing = true;
      setTimeout(flush, pause);
    }
  };
  const logCard = section('Logs',
    h('div', { class: 'log-tools' },
      h('label', {}, follow, ' follow'),
      h('button', { type: 'button', onclick: () => { follow.checked = false; logBox.scrollTop = 0; } }, 'Top'),
      h('button', { type: 'button', onclick: bottom }, 'Bottom'),
      h('button', { type: 'button', id: 'download', onclick: download }, 'Download'),
      logState),
    trimmed, logBox);

  // The log's bytes as the API keeps them (GET /v1/runs/{id}/logs): what the
  // page shows is decoded text, lossy for output that is not UTF-8.
  function download() {
    const a = h('a', { href: `/v1/runs/${encodeURIComponent(id)}/logs`, download: `${run ? run.id : id}.log` });
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  // Output that is not UTF-8 comes with its exact bytes in base64 (docs/api.md):
  // one streaming decoder per stream joins a character split between two pieces.
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  function outputText(d) {
    const dec = decoders[d.stream === 'stderr' ? 'stderr' : 'stdout'];
    if (typeof d.base64 !== 'string') return dec.decode() + d.text; // flushes a cut-short character as U+FFFD
    return dec.decode(Uint8Array.from(atob(d.base64), (c) => c.charCodeAt(0)), { stream: true });
  }

  // A line holding a carriage return (a progress bar rewriting itself)
  // shows what follows its last one, a CRLF's \r dropped, as `pysprinter
  // run` draws it on a terminal (docs/cli.md "Output"); a browser would
  // show each \r as a space, every state of the bar on one line. The spans
  // of the line not yet ended are kept to be cut; a \r that ends a piece
  // waits for the next one (a CRLF cut between two pieces).
  let lineSpans = [];
  const pendingCR = { stdout: false, stderr: false };
  function output(streamName, text, time) {
    if (!text) return;
    const cls = streamName === 'stderr' ? 'stderr' : 'stdout';
    // When the run wrote it (the event's "time"), else when it came.
    const written = time ? Date.parse(time) : NaN;
    const now = Number.isNaN(written) ? Date.now() : written;
    const wipe = () => {
      for (const sp of lineSpans.filter((x) => x.className === cls)) sp.remove();
      lineSpans = lineSpans.filter((x) => x.parentNode);
    };
    for (const part of text.split(/(?<=\n)/)) {
      if (!part) continue;
      const ends = part.endsWith('\n');
      let content = ends ? part.slice(0, -1) : part;
      if (pendingCR[cls]) {
        pendingCR[cls] = false;
        if (content || !ends) wipe();
      }
      if (ends) content = content.replace(/\r+$/, '');
      else if (content.endsWith('\r')) {
        pendingCR[cls] = true;
        content = content.replace(/\r+$/, '');
      }
      const cr = content.lastIndexOf('\r');
      if (cr >= 0) {
        wipe();
        content = content.slice(cr + 1);
      }
      if (atLineStart) {
        const ts = h('span', { class: 'ts' }, fmtClock(now) + ' ');
        pending.appendChild(ts);
        lineStarts.push(ts);
        lineSpans = [ts];
      }
      if (content || ends) {
        const sp = h('span', { class: cls }, content + (ends ? '\n' : ''));
        pending.appendChild(sp);
        lineSpans.push(sp);
      }
      atLineStart = ends;
      if (ends) lineSpans = [];
    }
    later();
  }

  async function cancel() {
    try {
      renderRun(await api(`/v1/runs/${encodeURIComponent(run.id)}`, { method: 'DELETE', exact: true }));
    } catch (e) {
      head.append(errorBox(e));
    }
  }

  function renderRun(r) {
    run = r;
    const active = ACTIVE.has(r.status);
    fill(head,
      h('div', { class: 'title-row' },
        h('h1', {}, 'Run ', h('span', { class: 'mono' }, r.id)), badge(r.status),
        active && r.phase ? h('span', { class: 'phase' }, r.phase) : null,
        active && canAct(session) ? h('button', { type: 'button', id: 'cancel', class: 'danger', onclick: cancel }, 'Cancel') : null),
      h('dl', { class: 'facts' },
        h('dt', {}, 'function'), h('dd', {}, r.function || '—'),
        h('dt', {}, 'file'), h('dd', {}, r.filename || '—'),
        // Where it came from (docs/api.md "The run object"): the deployed
        // function and the version it ran, linked, and the schedule.
        ...(r.fn_name ? [h('dt', {}, 'deployed'), h('dd', { id: 'run-deployed' },
          h('a', { href: `#/functions/${encodeURIComponent(r.fn_name)}${r.fn_version ? `?version=${r.fn_version}` : ''}` },
            r.fn_version ? `${r.fn_name} v${r.fn_version}` : r.fn_name))] : []),
        // The schedule opens the runs it fired (the runs table's filter).
        ...(r.schedule ? [h('dt', {}, 'schedule'), h('dd', { id: 'run-schedule' },
          h('a', { href: `#/runs?schedule=${encodeURIComponent(r.schedule)}` }, r.schedule))] : []),
        // The limits it was given, as `pysprinter show` prints them.
        ...(fmtLimits(r.limits) ? [h('dt', {}, 'limits'), h('dd', { id: 'run-limits' }, fmtLimits(r.limits))] : []),
        h('dt', {}, 'exit code'), h('dd', {}, r.exit_code ?? '—'),
        h('dt', {}, 'attempt'), h('dd', {}, `${r.attempt ?? '—'} of ${r.max_attempts ?? '—'}`),
        h('dt', {}, 'created'), h('dd', {}, fmtTime(r.created_at)),
        h('dt', {}, 'started'), h('dd', {}, fmtTime(r.started_at)),
        h('dt', {}, 'finished'), h('dd', {}, fmtTime(r.finished_at))));
    // The values as the API wrote them (api's exact): numbers as `run` prints them.
    const x = r.exact || r;
    const parts = [section('Arguments', h('h3', {}, 'args'), json(x.args ?? []), h('h3', {}, 'kwargs'),
      json(x.kwargs ?? {}))];
    // A function that returned None succeeded with null (`run` prints it).
    if ((r.result !== null && r.result !== undefined) || (r.status === 'succeeded' && !r.result_repr)) {
      parts.push(section('Result', json(x.result ?? null)));
    }
    else if (r.result_repr) parts.push(section('Result (repr)', h('pre', { class: 'json' }, r.result_repr)));
    if (r.error) {
      parts.push(section('Error', errorLine(r.error),
        r.error.traceback ? h('pre', { class: 'traceback' }, r.error.traceback) : null));
    }
    parts.push(section('Phases', waterfall(r.timings)));
    fill(details, ...parts);
  }

  // The log's stream says the phase, not the status: a run opened while
  // it waited in the queue said "queued", attempt 0, never started, until
  // its end. While the page says queued, a phase or output means it may
  // have started: the run is asked for again (once at a time).
  let asking = false, ended = false;
  async function refreshQueued() {
    if (asking || ended || !run || run.status !== 'queued') return;
    asking = true;
    try {
      const r = await api(`/v1/runs/${encodeURIComponent(id)}`, { exact: true });
      if (!ended) renderRun(r);
    } catch { /* the stream's end brings the run anyway */ }
    asking = false;
    if (run.status === 'queued' && !ended) setTimeout(refreshQueued, 500);
  }

  function openLogs() {
    logState.textContent = 'streaming…';
    es = stream(`/v1/runs/${encodeURIComponent(id)}/logs?follow=1`, {
      output: (d) => {
        output(d.stream, outputText(d), d.time);
        refreshQueued();
      },
      phase: (d) => {
        if (run && ACTIVE.has(run.status)) { run.phase = d.phase; renderRun(run); }
        refreshQueued();
        // Resolved: the lock is known from here on.
        if (d.phase !== 'validate' && d.phase !== 'resolve' && !lockShown) loadLock();
      },
      end: (r, src, raw) => {
        src.close(); // the stream is over: no reconnect
        ended = true;
        flush(); // what came last is on the page when it says ended
        logState.textContent = 'ended';
        if (r && r.id) {
          try { r.exact = parseExact(raw); } catch { /* shown as parsed */ }
          renderRun(r);
        }
        if (!lockShown) loadLock();
      },
    });
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) logState.textContent = 'disconnected'; };
  }

  main.append(head, details, section('Environment', lockBox), logCard);
  api(`/v1/runs/${encodeURIComponent(id)}`, { exact: true }).then((r) => {
    renderRun(r);
    loadLock();
    openLogs();
  }).catch((e) => {
    clear(main);
    if (e instanceof HttpError && e.status === 404) {
      main.append(...notFound('Run', id, 'is visible to you', '#/runs', 'All runs'));
    } else main.append(errorBox(e));
  });
  return () => {
    ended = true; // no more asking for the run
    if (es) es.close();
  };
}
