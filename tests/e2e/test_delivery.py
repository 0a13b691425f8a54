"""Acknowledged work is never lost (docs/api.md "Delivery"): a run that got an
id, or a Lambda Event invocation that got a 202, ends in a terminal state
after the daemon is killed with -9 at any moment and started again. A run
that was running is run again up to max_attempts; `retries: 0` makes it end
`lost` instead. Real daemon, real worker, real SQLite file."""
import concurrent.futures
import json
import random
import re
import signal
import threading
import time

import pytest

from conftest import DAEMON
from daemonlib import Daemon, config_text, sandbox_mode, strace_daemon, wait_for

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SLOW = """
import time
def slow(seconds: float = 30, tag: str = ""):
    time.sleep(seconds)
    return tag or "done"
"""

HANDLER = """
import time
def handler(event, context):
    time.sleep(event.get("seconds", 0))
    return {"got": event.get("n")}
"""

TERMINAL = {"succeeded", "failed", "invalid", "deps_failed", "killed", "cancelled", "error", "lost"}

ONE_SLOT = """
    server:
      max_concurrent_runs: 1
      max_concurrent_per_tenant: 1
    """


def wait_terminal(d, rid, timeout=90):
    return d.wait_status(rid, TERMINAL, timeout=timeout)


def cancel(d, rid):
    d.cancel(rid, timeout=90)


def test_kill9_runs_queued_and_running_work_again(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=ONE_SLOT).start()
    st, _ = d.call("POST", "/v1/functions", {"name": "ev", "source": HANDLER})
    assert st == 201
    st, b = d.run(SLOW, wait=False, kwargs={"seconds": 30, "tag": "first"})
    assert st == 202
    running = b["id"]
    d.wait_status(running, ["running"])
    queued = []
    for i in range(3):
        st, b = d.run(SLOW, wait=False, kwargs={"seconds": 0.1, "tag": f"q{i}"})
        assert st == 202 and b["status"] == "queued"
        queued.append((b["id"], f"q{i}"))
    # A Lambda Event invocation is acknowledged with 202 and its request id.
    st, hdrs, _ = d.request("POST", "/2015-03-31/functions/ev/invocations", {"n": 7},
                            headers={"X-Amz-Invocation-Type": "Event"})
    assert st == 202
    event_id = hdrs["x-amzn-requestid"]

    d.kill9()
    d.start()
    try:
        # The interrupted run starts again (its second attempt) and, being
        # 30 s long, is cancelled here to keep the test short.
        b = d.wait_status(running, ["running"])
        assert b["attempt"] == 2 and b["max_attempts"] == 3
        cancel(d, running)
        for rid, tag in queued:
            b = wait_terminal(d, rid)
            assert b["status"] == "succeeded" and b["result"] == tag and b["attempt"] == 1, b
        b = wait_terminal(d, event_id)
        assert b["status"] == "succeeded" and b["result"] == {"got": 7}, b
    finally:
        d.stop()


def test_a_queued_source_that_is_not_utf8_survives_a_restart(tmp_path):
    """The queue keeps such a source (as base64): after the restart it still
    fails validation with its line and column, not with a queue error."""
    from test_not_utf8 import LATIN1, raw_body
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=ONE_SLOT).start()
    st, b = d.run(SLOW, wait=False, kwargs={"seconds": 30})
    first = b["id"]
    d.wait_status(first, ["running"])
    st, _, body = d.request("POST", "/v1/runs", raw=raw_body(LATIN1, filename="lat.py"))
    assert st == 202, body
    latin = json.loads(body)["id"]
    d.kill9()
    d.start()
    try:
        d.call("DELETE", f"/v1/runs/{first}")
        b = wait_terminal(d, latin)
        assert b["status"] == "invalid" and "lat.py:2:16: not valid UTF-8" in b["error"]["message"], b
    finally:
        d.stop()


PRINTS_THEN_SLEEPS = """
import time
def slow(seconds: float = 30):
    print("began", flush=True)
    time.sleep(seconds)
    return "done"
"""


def test_retries_zero_ends_lost_instead_of_running_again(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path)).start()
    st, b = d.run(PRINTS_THEN_SLEEPS, wait=False, kwargs={"seconds": 30}, retries=0)
    assert st == 202 and b["max_attempts"] == 1
    once = b["id"]
    st, fn = d.call("POST", "/v1/functions", {"name": "once", "source": PRINTS_THEN_SLEEPS, "retries": 0})
    assert st == 201
    st, b = d.call("POST", "/v1/functions/once/invoke", {"kwargs": {"seconds": 30}})
    assert st == 202
    invoked = b["id"]
    # Killed once both have begun: "running" alone is shown a moment
    # before the start is committed, and a run killed in that moment never
    # ran, so it runs (its one attempt) after the restart, rightly.
    for rid in (once, invoked):
        wait_for(lambda: d.call("GET", f"/v1/runs/{rid}/logs")[1] == "began\n", f"run {rid} to begin")
    d.kill9()
    d.start()
    try:
        for rid in (once, invoked):
            st, b = d.call("GET", f"/v1/runs/{rid}")
            assert st == 200 and b["status"] == "lost", b
            assert b["attempt"] == 1 and "attempt 1 of 1" in b["error"]["message"], b
    finally:
        d.stop()


def test_bad_retries_is_a_clear_400(tmp_path):
    d = Daemon(tmp_path, sandbox="none").start()
    try:
        for bad in (-1, 11, "2", 1.5):
            st, b = d.run(SLOW, wait=False, retries=bad)
            assert st == 400 and "retries" in b["error"]["message"], (bad, b)
    finally:
        d.stop()


def test_sigterm_leaves_runs_not_started_queued_for_the_next_start(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=ONE_SLOT,
               args=["--drain-timeout", "1"]).start()
    st, b = d.run(SLOW, wait=False, kwargs={"seconds": 30})
    first = b["id"]
    d.wait_status(first, ["running"])
    st, b = d.run(SLOW, wait=False, kwargs={"seconds": 0.1, "tag": "later"})
    assert b["status"] == "queued"
    later = b["id"]
    assert d.stop(signal.SIGTERM) == 0
    d.start()
    try:
        b = wait_terminal(d, later)
        assert b["status"] == "succeeded" and b["result"] == "later", b
        st, b = d.call("GET", f"/v1/runs/{first}")
        assert b["status"] == "cancelled", b
    finally:
        d.stop()


def test_kill9_at_random_moments_under_load_loses_nothing(tmp_path):
    """Five kills at random moments while clients submit: every run that got
    an id ends succeeded (max_attempts 6 > 5 kills, so none can run out of
    attempts), none stays queued or running, none is lost."""
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra="""
        server:
          max_concurrent_runs: 4
          max_concurrent_per_tenant: 4
          max_queued_runs: 10000
          max_attempts: 6
        """).start()
    acked = []
    lock = threading.Lock()
    rng = random.Random(1234)

    def client(stop):
        while not stop.is_set():
            try:
                st, b = d.run(SLOW, wait=False, kwargs={"seconds": rng.choice([0, 0.05, 0.3])})
            except OSError:
                time.sleep(0.01)
                continue
            if st == 202:
                with lock:
                    acked.append(b["id"])
            # Enough to keep every slot busy and the queue non-empty at
            # the kill; more would only make the test long.
            time.sleep(0.02)

    try:
        for _ in range(5):
            stop = threading.Event()
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                for _ in range(4):
                    pool.submit(client, stop)
                time.sleep(rng.uniform(0.3, 1.2))
                d.kill9()
                stop.set()
            d.start()
        assert len(acked) > 20, len(acked)
        statuses = {}
        for rid in acked:
            b = wait_terminal(d, rid, timeout=120)
            statuses[rid] = (b["status"], b["attempt"])
        bad = {k: v for k, v in statuses.items() if v[0] != "succeeded"}
        assert not bad, bad
        reruns = sum(1 for s, a in statuses.values() if a > 1)
        print(f"{len(acked)} acknowledged runs over 5 kills: all succeeded, {reruns} ran more than once")
    finally:
        d.stop()


def test_a_recovered_run_gets_the_limits_the_config_grants_now(tmp_path):
    """A request can only lower what the operator grants: a run accepted
    under a generous config and recovered after a restart under a stricter
    one runs with the stricter maximum (here its timeout)."""
    generous = ONE_SLOT + """
    tenants:
      alice:
        maxima: {timeout_ms: 120000}
    """
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=generous).start()
    st, b = d.run(SLOW, wait=False, kwargs={"seconds": 30, "tag": "blocker"})
    assert st == 202
    blocker = b["id"]
    d.wait_status(blocker, ["running"])
    st, b = d.run(SLOW, wait=False, kwargs={"seconds": 20, "tag": "late"}, limits={"timeout_ms": 60000})
    assert st == 202 and b["status"] == "queued", b
    late = b["id"]
    d.kill9()
    d.config.write_text(config_text(ONE_SLOT + """
    tenants:
      alice:
        maxima: {timeout_ms: 1000}
    """))
    d.start()
    try:
        cancel(d, blocker)
        b = wait_terminal(d, late)
        assert b["status"] == "killed" and b["result"] != "late", b
        assert "lowered" in d.log.read_text()
    finally:
        d.stop()


# ---- group commit (src/store/store-writer.c, docs/internals/performance-log.md) ----------


def wait_until(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill9_during_a_burst_of_async_submits_every_202_ends_once(tmp_path):
    """200 concurrent submits, the daemon killed -9 in the middle of the
    burst: every id that got its 202 exists after the restart and ends in
    one terminal state, which then never changes (the submit's record was
    committed before its 202, however the writer grouped it)."""
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra="""
        server:
          max_concurrent_runs: 4
          max_concurrent_per_tenant: 4
          max_queued_runs: 10000
        """).start()
    acked = []
    lock = threading.Lock()

    def submit(i):
        try:
            st, b = d.call("POST", "/v1/runs", {"source": SLOW, "kwargs": {"seconds": 0, "tag": f"b{i}"}},
                           timeout=30)
        except OSError:
            return
        if st == 202:
            with lock:
                acked.append(b["id"])

    try:
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            futures = [pool.submit(submit, i) for i in range(200)]
            wait_until(lambda: len(acked) >= 60, 60, "60 acknowledged submits")
            d.kill9()
            concurrent.futures.wait(futures)
        d.start()
        assert len(acked) >= 60
        first = {}
        for rid in acked:
            b = wait_terminal(d, rid, timeout=180)
            first[rid] = (b["status"], b["finished_at"], b["attempt"])
        bad = {k: v for k, v in first.items() if v[0] != "succeeded"}
        assert not bad, bad
        # Exactly one end: a second look, after all of them ended, is the same.
        for rid in acked:
            st, b = d.call("GET", f"/v1/runs/{rid}")
            assert st == 200 and (b["status"], b["finished_at"], b["attempt"]) == first[rid], (rid, b, first[rid])
        print(f"{len(acked)} of 200 submits acknowledged before the kill: all ended once")
    finally:
        d.stop()


COUNTER = """
def count(token: str, path: str):
    with open(path, "a") as f:
        f.write(token + "\\n")
    return token
"""


def test_kill9_during_synchronous_invokes_no_answered_invoke_runs_again(tmp_path):
    """8 clients invoke a deployed function synchronously; the daemon is
    killed -9 mid-burst and started again. The function appends its token to
    a file each time it runs: an invoke whose result was answered ran
    exactly once (its terminal record was committed before the answer, so
    recovery does not run it again)."""
    log = tmp_path / "executions.txt"
    log.write_text("")
    d = Daemon(tmp_path / "d", sandbox="none", config_extra="""
        server:
          max_concurrent_runs: 4
          max_concurrent_per_tenant: 4
          max_queued_runs: 10000
        """).start()
    st, _ = d.call("POST", "/v1/functions", {"name": "count", "source": COUNTER})
    assert st == 201
    answered = []
    answers = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client(c):
        i = 0
        while not stop.is_set():
            tok = f"c{c}-{i}"
            i += 1
            try:
                st, b = d.call("POST", "/v1/functions/count/invoke?wait=true",
                               {"kwargs": {"token": tok, "path": str(log)}}, timeout=30)
            except OSError:
                return
            if st == 200 and b.get("status") == "succeeded":
                assert b["result"] == tok, b
                with lock:
                    answered.append(tok)
                    answers[b["id"]] = b

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for c in range(8):
                pool.submit(client, c)
            wait_until(lambda: len(answered) >= 80, 120, "80 answered invokes")
            d.kill9()
            stop.set()
        d.start()

        def settled():
            st, b = d.call("GET", "/v1/runs?limit=1000")
            return st == 200 and all(r["status"] in TERMINAL for r in b["runs"])

        # Runs in flight at the kill run again now; wait for them to end.
        wait_until(settled, 180, "every recovered run to end")
        counts = {}
        for line in log.read_text().splitlines():
            counts[line] = counts.get(line, 0) + 1
        twice = {t: counts.get(t, 0) for t in answered if counts.get(t, 0) != 1}
        assert not twice, twice
        # And each answered invoke is found ended, with the value it was
        # answered with: its record was durable before its answer (a
        # deferred submit is replaced by its ended record, docs/api.md).
        for rid, ans in answers.items():
            st, b = d.call("GET", f"/v1/runs/{rid}")
            assert st == 200, (rid, b)
            assert (b["status"], b["result"], b["attempt"]) == ("succeeded", ans["result"], ans["attempt"]), (ans, b)
        reran = sum(1 for n in counts.values() if n > 1)
        print(f"{len(answered)} answered invokes ran once each; {reran} unanswered ones ran again after the restart")
    finally:
        d.stop()


VERSIONED = """
def handler(event, context):
    return {"version": %d, "n": event.get("n")}
"""


def _queued_requests(d):
    """The request_json the queue keeps for each queued run (read from the
    daemon's SQLite file while the daemon is down)."""
    import sqlite3
    dbs = [p for p in d.home.rglob("*.db") if p.is_file()]
    out = {}
    for p in dbs:
        con = sqlite3.connect(str(p))
        try:
            for rid, req in con.execute("SELECT id, request_json FROM runs WHERE status='queued'"):
                out[rid] = req
        except sqlite3.OperationalError:
            pass
        finally:
            con.close()
    return out


def test_kill9_queued_invokes_of_a_deployed_function_run_their_version(tmp_path):
    """A queued invoke names its function version instead of carrying the
    source; after a kill -9 each runs the version it was submitted for, the
    latest one included, although a newer version was deployed since."""
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=ONE_SLOT).start()
    try:
        for v in (1, 2):
            st, b = d.call("POST", "/v1/functions", {"name": "vf", "function": "handler", "source": VERSIONED % v})
            assert st == 201 and b["version"] == v, b
        st, b = d.run(SLOW, wait=False, kwargs={"seconds": 30})
        blocker = b["id"]
        d.wait_status(blocker, ["running"])
        want = {}
        for i, ver in enumerate([1, 0, 1]):
            body = {"args": [{"n": i}, None], **({"version": ver} if ver else {})}
            st, b = d.call("POST", "/v1/functions/vf/invoke", body)
            assert st == 202 and b["status"] == "queued", b
            want[b["id"]] = (ver or 2, i)
        # A third version deployed after the invokes were acknowledged.
        st, b = d.call("POST", "/v1/functions", {"name": "vf", "function": "handler", "source": VERSIONED % 3})
        assert st == 201
    finally:
        d.kill9()
    reqs = _queued_requests(d)
    d.start()
    try:
        for rid in want:
            assert rid in reqs and "return {" not in reqs[rid], reqs.get(rid)
        cancel(d, blocker)
        for rid, (ver, n) in want.items():
            b = wait_terminal(d, rid)
            assert b["status"] == "succeeded" and b["result"] == {"version": ver, "n": n}, b
    finally:
        d.stop()


def test_kill9_queued_invoke_of_a_deleted_function_ends_with_a_clear_error(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=ONE_SLOT).start()
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "gone", "function": "handler", "source": VERSIONED % 1})
        assert st == 201
        st, b = d.run(SLOW, wait=False, kwargs={"seconds": 30})
        blocker = b["id"]
        d.wait_status(blocker, ["running"])
        st, b = d.call("POST", "/v1/functions/gone/invoke", {"args": [{}, None]})
        assert st == 202, b
        queued = b["id"]
        st, _ = d.call("DELETE", "/v1/functions/gone")
        assert st == 200
    finally:
        d.kill9()
    d.start()
    try:
        cancel(d, blocker)
        b = wait_terminal(d, queued)
        assert b["status"] not in ("succeeded", "lost"), b
        assert "gone" in b["error"]["message"] and "version 1" in b["error"]["message"] \
            and "deleted" in b["error"]["message"], b
    finally:
        d.stop()


def _damage_queued_request(d, rid, text):
    """Overwrites the stored request of queued run rid (the daemon down)."""
    import sqlite3
    for p in (p for p in d.home.rglob("*.db") if p.is_file()):
        con = sqlite3.connect(str(p))
        try:
            with con:
                if con.execute("UPDATE runs SET request_json=? WHERE id=? AND status='queued'", (text, rid)).rowcount:
                    return
        except sqlite3.OperationalError:
            pass
        finally:
            con.close()
    raise AssertionError(f"run {rid} is not queued in any database of {d.home}")


@pytest.mark.parametrize("damage", ["{\"source\": \"def f(", "{}"])
def test_a_queued_run_whose_request_is_damaged_ends_as_an_error(tmp_path, damage):
    """A queued run whose stored request cannot be read ends `error` at the
    next start, without waiting for a slot, instead of staying queued for
    ever; the runs queued beside it run as usual, and it stays ended."""
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=ONE_SLOT).start()
    try:
        st, b = d.run(SLOW, wait=False, kwargs={"seconds": 30})
        blocker = b["id"]
        d.wait_status(blocker, ["running"])
        ids = []
        for tag in ("damaged", "fine"):
            st, b = d.run(SLOW, wait=False, kwargs={"seconds": 0.1, "tag": tag})
            assert st == 202 and b["status"] == "queued", b
            ids.append(b["id"])
    finally:
        d.kill9()
    damaged, fine = ids
    _damage_queued_request(d, damaged, damage)
    d.start()
    try:
        # Ended while the interrupted run holds the only slot again.
        b = wait_terminal(d, damaged, timeout=30)
        assert b["status"] == "error" and b["exit_code"] == 7, b
        assert b["error"]["type"] == "InternalError" and "cannot be read" in b["error"]["message"], b
        assert d.wait_status(blocker, ["running"])["attempt"] == 2
        cancel(d, blocker)
        b = wait_terminal(d, fine)
        assert b["status"] == "succeeded" and b["result"] == "fine", b
        d.stop()
        d.start()
        st, b = d.call("GET", f"/v1/runs/{damaged}")
        assert st == 200 and b["status"] == "error", b
    finally:
        d.stop()


# ---- one write per synchronous run (docs/api.md "Delivery", round 7) ----

SLEEPER = """
import time
def handler(event, context=None):
    time.sleep(event.get("seconds", 0))
    return {"n": event.get("n"), "slept": event.get("seconds", 0)}
"""


def _deploy(d, name="sync", source=SLEEPER):
    st, b = d.call("POST", "/v1/functions", {"name": name, "source": source})
    assert st == 201, b


def test_synchronous_invoke_answer_is_the_stored_record_on_both_routes(tmp_path):
    """What a synchronous invoke answers is what GET /v1/runs/ID returns
    right after: the record written with (or replacing) its submit."""
    d = Daemon(tmp_path, sandbox="none").start()
    try:
        _deploy(d)
        for i in range(10):
            st, ans = d.call("POST", "/v1/functions/sync/invoke?wait=true", {"kwargs": {"event": {"n": i}}})
            assert st == 200 and ans["status"] == "succeeded", ans
            st, rec = d.call("GET", f"/v1/runs/{ans['id']}")
            assert st == 200
            assert rec == ans
            assert rec["attempt"] == 1 and rec["result"] == {"n": i, "slept": 0}
            st, hdrs, raw = d.request("POST", "/2015-03-31/functions/sync/invocations", {"n": i})
            assert st == 200, raw
            rid = hdrs["x-amzn-requestid"]
            st, rec = d.call("GET", f"/v1/runs/{rid}")
            assert st == 200
            assert rec["status"] == "succeeded" and rec["result"] == json.loads(raw) == {"n": i, "slept": 0}
            assert rec["finished_at"] and rec["started_at"] and rec["attempt"] == 1, rec
    finally:
        d.stop()


def _running(d):
    st, b = d.call("GET", "/v1/runs?status=running")
    assert st == 200
    return [r for r in b["runs"]]


def _invoke_in_background(d, path, body, out):
    def go():
        try:
            out.append(d.request("POST", path, body, timeout=120))
        except OSError as e:
            out.append(e)
    th = threading.Thread(target=go)
    th.start()
    return th


@pytest.mark.parametrize("route", ["v1", "lambda"])
def test_long_synchronous_invoke_is_listed_running_while_it_runs(tmp_path, route):
    """A synchronous invoke that outlasts the writer's linger is committed
    running: GET /v1/runs lists it while it runs, and its answer is that
    run, ended."""
    d = Daemon(tmp_path, sandbox="none").start()
    try:
        _deploy(d)
        path, body = (("/v1/functions/sync/invoke?wait=true", {"kwargs": {"event": {"n": 1, "seconds": 3}}})
                      if route == "v1" else ("/2015-03-31/functions/sync/invocations", {"n": 1, "seconds": 3}))
        out = []
        th = _invoke_in_background(d, path, body, out)
        listed = wait_for(lambda: _running(d), "the invoke listed running", timeout=30)
        assert len(listed) == 1 and listed[0]["attempt"] == 1, listed
        # the function's own listing shows it as well
        st, b = d.call("GET", "/v1/functions/sync/runs")
        assert st == 200 and [(r["id"], r["status"], r["attempt"]) for r in b["runs"]] == \
            [(listed[0]["id"], "running", 1)], b
        th.join(60)
        st, hdrs, raw = out[0]
        assert st == 200, raw
        rid = json.loads(raw)["id"] if route == "v1" else hdrs["x-amzn-requestid"]
        assert rid == listed[0]["id"]
        st, rec = d.call("GET", f"/v1/runs/{rid}")
        assert rec["status"] == "succeeded" and rec["result"] == {"n": 1, "slept": 3}, rec
    finally:
        d.stop()


def test_kill9_during_a_long_synchronous_invoke_runs_it_again(tmp_path):
    """Killed -9 while a synchronous invoke runs (after it is listed
    running): the client's connection drops, and the restarted daemon runs
    the invoke again as attempt 2 (Delivery: a running run)."""
    d = Daemon(tmp_path, sandbox="none").start()
    try:
        _deploy(d)
        out = []
        th = _invoke_in_background(d, "/v1/functions/sync/invoke?wait=true",
                                   {"kwargs": {"event": {"n": 5, "seconds": 2}}}, out)
        listed = wait_for(lambda: _running(d), "the invoke listed running", timeout=30)
        rid = listed[0]["id"]
        d.kill9()
        th.join(60)
        assert isinstance(out[0], OSError) or out[0][0] != 200, out
        d.start()
        rec = wait_terminal(d, rid)
        assert rec["status"] == "succeeded" and rec["attempt"] == 2, rec
        assert rec["result"] == {"n": 5, "slept": 2}
    finally:
        d.stop()


WAL_LOCK = re.compile(r"F_SETLK, \{l_type=F_WRLCK, l_whence=SEEK_SET, l_start=120, l_len=1")


def test_sequential_synchronous_invokes_cost_one_write_transaction_each(tmp_path):
    """strace of the daemon over sequential /v1 invokes: SQLite's WAL write
    lock (F_WRLCK on byte 120 of the -shm file) is taken once per write
    transaction. A synchronous invoke's submit and end are one transaction
    (two before: the submit waited before the run); an invoke that outlasts
    the 2 ms linger under strace may still take two, so the mean is bound."""
    d = Daemon(tmp_path, sandbox="none").start()
    try:
        _deploy(d)
        for i in range(20):  # warm: the instance, the statement cache
            st, _ = d.call("POST", "/v1/functions/sync/invoke?wait=true", {"kwargs": {"event": {"n": i}}})
            assert st == 200
        n = 60
        trace = tmp_path / "strace.txt"
        with strace_daemon(d, ["fcntl"], trace) as lines:
            before = len([ln for ln in lines("fcntl(") if WAL_LOCK.search(ln)])
            for i in range(n):
                st, ans = d.call("POST", "/v1/functions/sync/invoke?wait=true", {"kwargs": {"event": {"n": i}}})
                assert st == 200 and ans["status"] == "succeeded"
        locks = len([ln for ln in lines("fcntl(") if WAL_LOCK.search(ln)]) - before
        per = locks / n
        print(f"{per:.2f} write transactions per sequential invoke")
        assert per < 1.5, per
    finally:
        d.stop()


ECHO = """
def echo(token: str):
    return token
"""


def _journal_bytes(home):
    return sum(p.stat().st_size for p in home.glob("pysprinter.db-ended.*"))


def _answered_burst(d, n):
    """n invokes, on both routes in turn, 4 clients: each answered one's id
    (a Lambda answer's X-Amzn-RequestId) and result."""
    def one(i):
        tok = f"t{i}"
        if i % 2:
            st, hdrs, data = d.request("POST", "/2015-03-31/functions/echo/invocations",
                                       tok, timeout=30)
            assert st == 200 and json.loads(data) == tok, (st, data)
            return hdrs["x-amzn-requestid"], tok
        st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"token": tok}}, timeout=30)
        assert st == 200 and b["status"] == "succeeded" and b["result"] == tok, b
        return b["id"], tok

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def test_kill9_right_after_a_burst_of_answered_invokes_finds_every_one(tmp_path):
    """A synchronous invoke's answer waits for one append of its ended
    record to the store's journal, not for a commit (docs/api.md
    "Delivery"): killed -9 right after a burst of answered invokes on both
    routes, before the journal's batch could commit, the daemon finds every
    one ended with its value after a restart (it replays the journal before
    it serves), and the journal is empty again."""
    d = Daemon(tmp_path / "d", sandbox="none").start()
    st, _ = d.call("POST", "/v1/functions", {"name": "echo", "source": ECHO})
    assert st == 201
    try:
        answered = []
        for _ in range(3):
            answered += _answered_burst(d, 120)
            held = _journal_bytes(d.home)
            if held:
                break
        d.kill9()
        # The last answers were in the journal only (not committed yet).
        assert held > 0, "the journal held nothing at the kill"
        d.start()
        assert _journal_bytes(d.home) == 0
        for rid, tok in answered:
            st, b = d.call("GET", f"/v1/runs/{rid}")
            assert st == 200, (rid, b)
            assert (b["status"], b["result"]) == ("succeeded", tok), b
        print(f"{len(answered)} answered invokes found after the kill; {held} journal bytes at the kill")
    finally:
        d.stop()
    # SIGTERM's drain commits what the journal holds and leaves it empty.
    assert _journal_bytes(d.home) == 0


def test_sequential_invokes_write_under_4_kb_each(tmp_path):
    """What a user sees of the daemon's writes (/proc/PID/io wchar, every
    write(2) of the daemon's, its HTTP answers included) over 500
    sequential invokes: the ended records go to the store's journal (a few
    hundred bytes each, emptied before they reach the disk) and into SQLite
    in batches, not one transaction of ~5 pages (~21 KB) per invoke."""
    d = Daemon(tmp_path / "d", sandbox="none").start()
    st, _ = d.call("POST", "/v1/functions", {"name": "echo", "source": ECHO})
    assert st == 201
    try:
        for i in range(50):
            d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"token": "w"}})

        def wchar():
            io = dict(line.split(": ") for line in open(f"/proc/{d.proc.pid}/io").read().splitlines())
            return int(io["wchar"])

        before = wchar()
        for i in range(500):
            st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"kwargs": {"token": f"t{i}"}})
            assert st == 200 and b["result"] == f"t{i}", b
        per_invoke = (wchar() - before) / 500
        print(f"daemon wchar per sequential invoke: {per_invoke:.0f} bytes")
        assert per_invoke < 4096, per_invoke
    finally:
        d.stop()
