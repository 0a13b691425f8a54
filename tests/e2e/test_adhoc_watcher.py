"""Issue 15 (a): on a quiet daemon (no runs overlapped for 100 ms), an
ad-hoc run whose caller waits for it and whose begin would not wait on a
worker (its arguments' validation cached, its environment resolved, its
worker ready: engine_run_ready()) is begun on the HTTP thread that received
it and ended there, or, past 3 ms, by the run watcher, as warm invokes are:
no run thread hand-off in its path (docs/internals/performance-log.md "Ad-hoc runs: the
daemon's share, round 10"). Every guarantee of a run holds on that path: its
answer is its record and log, the time limit, cancel. A run that is not
ready yet (its first, a new argument) and concurrent runs go to run threads
as before (their records then share transactions)."""
import json
import threading

import pytest

from daemonlib import Daemon, join, metrics, wait_for

SRC = (
    "import os, sys, time\n"
    "def main(n=0, seconds=0, gate=None):\n"
    "    print(f'out-{n}')\n"
    "    if gate:\n"
    "        sys.stdout.flush()\n"
    "        while not os.path.exists(gate):\n"
    "            time.sleep(0.005)\n"
    "    time.sleep(seconds)\n"
    "    return n\n")

RUNS = "/v1/runs?wait=true"


def pick(m):
    return {k: v for k, v in m.items() if "adhoc" in k or "run_thread" in k or "watcher" in k}


HTTP = 'pysprinter_adhoc_runs_on_http_thread_total{ended="http_thread"}'
WATCHED = 'pysprinter_adhoc_runs_on_http_thread_total{ended="watcher"}'
RUN_THREAD = "pysprinter_run_thread_runs_total"


def delta(a, b, k):
    return b[k] - a[k]


def body(**kwargs):
    return {"source": SRC, "function": "main", "kwargs": kwargs}


@pytest.fixture
def d(tmp_path):
    with Daemon(tmp_path / "d", config_extra="""
        server:
          max_concurrent_runs: 64
          max_concurrent_per_tenant: 64
        """).serving() as daemon:
        yield daemon


def test_first_run_takes_a_run_thread_then_repeated_runs_none(d):
    m0 = metrics(d)
    st, b = d.call("POST", RUNS, body(n=1))
    assert st == 200 and b["status"] == "succeeded" and b["result"] == 1, b
    m1 = metrics(d)
    # Its validation, environment and worker were not known: a run thread's.
    assert delta(m0, m1, RUN_THREAD) == 1, (pick(m0), pick(m1))
    assert delta(m0, m1, HTTP) + delta(m0, m1, WATCHED) == 0, (pick(m0), pick(m1))
    for _ in range(5):
        st, b = d.call("POST", RUNS, body(n=1))
        assert st == 200 and b["status"] == "succeeded" and b["result"] == 1, b
    m2 = metrics(d)
    assert delta(m1, m2, RUN_THREAD) == 0, (pick(m1), pick(m2))
    assert delta(m1, m2, HTTP) + delta(m1, m2, WATCHED) == 5, (pick(m1), pick(m2))
    # Each answer is its stored run, with its own log.
    st, rec = d.call("GET", f"/v1/runs/{b['id']}")
    assert st == 200 and rec["status"] == "succeeded" and rec["result"] == 1, rec
    st, log = d.call("GET", f"/v1/runs/{b['id']}/logs")
    assert st == 200 and "out-1" in (log if isinstance(log, str) else json.dumps(log)), log
    # A new argument of the same file: its validation is a worker's, so a
    # run thread's; the same call again is not.
    st, b = d.call("POST", RUNS, body(n=2))
    assert st == 200 and b["result"] == 2, b
    m3 = metrics(d)
    assert delta(m2, m3, RUN_THREAD) == 1, (pick(m2), pick(m3))
    st, b = d.call("POST", RUNS, body(n=2))
    assert st == 200 and b["result"] == 2, b
    m4 = metrics(d)
    assert delta(m3, m4, RUN_THREAD) == 0 and delta(m3, m4, HTTP) + delta(m3, m4, WATCHED) == 1, (
        pick(m3), pick(m4))


def test_concurrent_adhoc_runs_stay_on_run_threads(d):
    st, b = d.call("POST", RUNS, body(n=7))
    assert st == 200 and b["result"] == 7, b
    before = metrics(d)
    errors, results = [], []
    lock = threading.Lock()

    def caller():
        for _ in range(20):
            st, b = d.call("POST", RUNS, body(n=7))
            with lock:
                if st != 200 or b.get("status") != "succeeded" or b.get("result") != 7:
                    errors.append((st, b))
                else:
                    results.append(b)
    ts = [threading.Thread(target=caller) for _ in range(8)]
    for t in ts:
        t.start()
    join(ts)
    assert not errors, errors[:3]
    after = metrics(d)
    # Overlapping callers: run threads' (group commit), but for the first
    # ones while the daemon still counted as quiet.
    on_http = delta(before, after, HTTP) + delta(before, after, WATCHED)
    assert delta(before, after, RUN_THREAD) + on_http == 160, (pick(before), pick(after))
    assert on_http <= 8, (pick(before), pick(after))
    ids = {b["id"] for b in results}
    assert len(ids) == 160
    for b in results[::32]:
        st, rec = d.call("GET", f"/v1/runs/{b['id']}")
        assert st == 200 and rec["status"] == "succeeded" and rec["result"] == 7, rec


def test_time_limit_of_an_adhoc_run_begun_on_the_http_thread(d):
    slow = body(seconds=30)
    slow["limits"] = {"timeout_ms": 300}
    st, b = d.call("POST", RUNS, slow)
    assert st == 200 and b["status"] == "killed" and b["error"]["type"] == "TimeLimit", b
    m0 = metrics(d)
    st, b = d.call("POST", RUNS, slow)
    m1 = metrics(d)
    assert st == 200 and b["status"] == "killed" and b["error"]["type"] == "TimeLimit", b
    # Begun on its HTTP thread and watched to its kill by the watcher.
    assert delta(m0, m1, RUN_THREAD) == 0 and delta(m0, m1, WATCHED) == 1, (pick(m0), pick(m1))
    st, rec = d.call("GET", f"/v1/runs/{b['id']}")
    assert st == 200 and rec["status"] == "killed", rec
    st, b = d.call("POST", RUNS, body(n=3))
    assert st == 200 and b["status"] == "succeeded" and b["result"] == 3, b


def test_cancel_of_an_adhoc_run_begun_on_the_http_thread(d, tmp_path):
    gate = tmp_path / "gate"
    gated = body(n=9, gate=str(gate))
    # Once through with the gate open: this call is now known (validated,
    # its worker ready).
    gate.write_text("open")
    st, b = d.call("POST", RUNS, gated)
    assert st == 200 and b["result"] == 9, b
    gate.unlink()
    m0 = metrics(d)
    try:
        # The caller's wait ends after 1 s with a 202 naming the run, which
        # goes on on the watcher.
        st, b = d.call("POST", RUNS + "&timeout=1", gated)
        assert st == 202 and b["status"] == "running", (st, b)
        run_id = b["id"]
        m1 = metrics(d)
        assert delta(m0, m1, RUN_THREAD) == 0 and delta(m0, m1, WATCHED) == 1, (pick(m0), pick(m1))
        rec = d.cancel(run_id)
    finally:
        gate.write_text("open")
    assert rec["status"] == "cancelled", rec
    wait_for(lambda: metrics(d)["pysprinter_run_watcher_ends_total"] > m1["pysprinter_run_watcher_ends_total"],
             "the watcher ended the cancelled run")
    st, b = d.call("POST", RUNS, body(n=4))
    assert st == 200 and b["status"] == "succeeded" and b["result"] == 4, b
