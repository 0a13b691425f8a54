"""What the run records and the runs listing say about invokes in flight
(issue 15 b, round 10): a synchronous invoke's submit is deferred (its
record is written once, at its end, docs/api.md "Delivery"), so while it
runs the daemon, not the store, knows it:

- an invoke that has to wait for one of its function's instances is
  recorded queued, not running (drun_enqueue() "starts at once" only with
  a free instance);
- a running invoke is listed by /v1/runs?status=running even while its
  record is not committed; the listing commits it before showing its id
  (Delivery), adding no write."""
import json
import sqlite3
import threading

import pytest

from daemonlib import Daemon, wait_for

SRC = (
    "import os, time\n"
    "def main(n=0, gate=None, context=None):\n"
    "    while gate and not os.path.exists(gate):\n"
    "        time.sleep(0.005)\n"
    "    return n\n")

INVOKE = "/v1/functions/fn/invoke?wait=true"


def metric(d, name):
    st, text = d.call("GET", "/metrics", token="admin")
    assert st == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def start_daemon(tmp_path, linger_ms=None):
    d = Daemon(tmp_path / "d", config_extra="""
        server:
          max_concurrent_runs: 64
          max_concurrent_per_tenant: 64
        """)
    if linger_ms is not None:
        base_env = d.env
        d.env = lambda: {**base_env(), "PYSPRINTER_TEST_STORE_LINGER_MS": str(linger_ms)}
    return d


def deploy(d):
    st, b = d.call("POST", "/v1/functions", {"name": "fn", "source": SRC, "function": "main"})
    assert st == 201, b


def four_warm_instances(d):
    """Bursts of overlapping invokes until the function's four instances
    are warm: the invokes after that begin without a cold start."""
    def burst():
        ts = invokers(d, range(100, 108), None, [])
        for t in ts:
            t.join(120)
        return metric(d, "pysprinter_pool_instances") >= 4
    wait_for(burst, "four warm instances")


def invokers(d, ns, gate, answers):
    def one(n):
        kwargs = {"n": n, "gate": str(gate)} if gate else {"n": n}
        answers.append(d.call("POST", INVOKE, {"kwargs": kwargs}, timeout=120))
    ts = [threading.Thread(target=one, args=(n,)) for n in ns]
    for t in ts:
        t.start()
    return ts


def listed(d, status):
    st, b = d.call("GET", f"/v1/runs?status={status}&limit=100")
    assert st == 200, b
    return [r for r in b["runs"] if r.get("fn_name", "fn") == "fn"]


def stored_statuses(home):
    """The statuses of the gated invokes' records (n < 100; the warm-up's
    are n >= 100), as committed."""
    db = sqlite3.connect(f"file:{home / 'pysprinter.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT status, kwargs_json FROM runs WHERE fn_name = 'fn'").fetchall()
    finally:
        db.close()
    # kwargs as stored: {"n": {"value": N}}
    return [st for st, kw in rows if json.loads(kw)["n"]["value"] < 100]


def release(gate, ts):
    gate.write_text("go")
    for t in ts:
        t.join(120)


def all_answered(d, answers, n):
    """Each of the n callers got its own result, and each record ended
    succeeded, as the store has it: another process (this test) sees the
    ends once the journal's batch is committed (docs/api.md "Delivery":
    within ~50 ms)."""
    assert sorted(b["result"] for st, b in answers if st == 200) == list(range(n)), answers
    wait_for(lambda: sorted(stored_statuses(d.home)) == ["succeeded"] * n, f"the {n} ends committed")


def test_invokes_beyond_the_functions_instances_are_recorded_queued(tmp_path):
    gate = tmp_path / "gate"
    with start_daemon(tmp_path).serving() as d:
        deploy(d)
        four_warm_instances(d)
        answers = []
        # Six callers, four instances (DAEMON_FN_INSTANCES): two wait.
        ts = invokers(d, range(6), gate, answers)
        try:
            # The daemon's view: four running, two queued.
            wait_for(lambda: len(listed(d, "running")) == 4 and len(listed(d, "queued")) == 2,
                     "four invokes running and two queued")
            # The records, once committed (the writer's 2 ms linger), say
            # the same: no more running than the function has instances.
            def committed():
                s = stored_statuses(d.home)
                return len(s) == 6 and s
            s = wait_for(committed, "six records committed")
            assert s.count("running") == 4 and s.count("queued") == 2, s
        finally:
            release(gate, ts)
        all_answered(d, answers, 6)


def test_running_invoke_is_listed_before_its_record_is_committed(tmp_path):
    gate = tmp_path / "gate"
    # A linger longer than the test: the invoke's deferred submit stays
    # uncommitted while it runs, as it may under load.
    with start_daemon(tmp_path, linger_ms=600000).serving() as d:
        deploy(d)
        answers = []
        commits = metric(d, "pysprinter_store_commits_total")
        ts = invokers(d, [41], gate, answers)
        try:
            runs = wait_for(lambda: listed(d, "running"), "the running invoke listed")
            assert len(runs) == 1 and runs[0]["status"] == "running", runs
            run_id = runs[0]["id"]
            # Shown, so durable (Delivery: a run whose id was shown ends
            # in a terminal state after a crash): the listing committed
            # its deferred submit, one commit, no write added.
            assert stored_statuses(d.home) == ["running"]
            assert metric(d, "pysprinter_store_commits_total") == commits + 1
            assert [r["id"] for r in listed(d, "succeeded")] == []
        finally:
            release(gate, ts)
        st, b = answers[0]
        assert st == 200 and b["status"] == "succeeded" and b["result"] == 41 and b["id"] == run_id, b
        # Its end; listed as ended, no longer running (the listing sees it
        # at once: the journal's batch is committed first), one commit.
        assert listed(d, "running") == []
        assert [r["id"] for r in listed(d, "succeeded")] == [run_id]
        assert metric(d, "pysprinter_store_commits_total") == commits + 2


def test_a_started_run_reads_running_while_its_start_lingers(tmp_path):
    """An acknowledged asynchronous invoke (its submit committed before the
    202) starts; its start is a write nobody waits for, lingering in the
    store's writer (here longer than the test). Its GET shows it running,
    attempt 1, as the daemon knows it, not the committed `queued`."""
    gate = tmp_path / "gate"
    with start_daemon(tmp_path, linger_ms=600000).serving() as d:
        deploy(d)
        st, b = d.call("POST", "/v1/functions/fn/invoke", {"kwargs": {"n": 7, "gate": str(gate)}})
        assert st == 202, b
        rid = b["id"]
        try:
            wait_for(lambda: metric(d, "pysprinter_runs_running") >= 1, "the invoke running")
            assert stored_statuses(d.home) == ["queued"]  # the start lingers
            st, run = d.call("GET", f"/v1/runs/{rid}")
            assert st == 200 and run["status"] == "running" and run["attempt"] == 1, run
            assert run["started_at"] and run["started_at"] >= run["created_at"], run
            # Both listings show it as the GET does.
            for path in ("/v1/runs", "/v1/functions/fn/runs"):
                st, b = d.call("GET", path)
                assert st == 200, b
                listed = [r for r in b["runs"] if r["id"] == rid]
                assert len(listed) == 1, (path, b)
                assert {k: listed[0][k] for k in ("status", "attempt", "started_at")} == \
                    {k: run[k] for k in ("status", "attempt", "started_at")}, (path, listed, run)
        finally:
            gate.write_text("go")
        st, run = d.call("GET", f"/v1/runs/{rid}?wait=true")
        assert st == 200 and run["status"] == "succeeded" and run["result"] == 7 and run["attempt"] == 1, run


def test_a_synchronous_invoke_not_committed_yet_is_in_its_functions_listing(tmp_path):
    """A synchronous invoke's submit is deferred (its caller has no id
    before its answer); the function's listing shows it running, attempt
    1, as GET /v1/runs does, and commits it before showing its id."""
    gate = tmp_path / "gate"
    with start_daemon(tmp_path, linger_ms=600000).serving() as d:
        deploy(d)
        answers = []
        ts = invokers(d, [5], gate, answers)
        try:
            wait_for(lambda: metric(d, "pysprinter_runs_running") >= 1, "the invoke running")
            assert stored_statuses(d.home) == []  # nothing committed yet
            st, b = d.call("GET", "/v1/functions/fn/runs")
            assert st == 200, b
            mine = [r for r in b["runs"] if r["kwargs"] == {"n": 5, "gate": str(gate)}]
            assert [(r["status"], r["attempt"]) for r in mine] == [("running", 1)], b
            assert stored_statuses(d.home) == ["running"]  # its id was shown: committed
        finally:
            gate.write_text("go")
            for t in ts:
                t.join(60)
        st, ans = answers[0]
        assert st == 200 and ans["status"] == "succeeded" and ans["id"] == mine[0]["id"], ans


def test_invokes_queued_behind_queued_ones_are_not_committed_before_they_run(tmp_path):
    """Round 12: at wrk -c8 half the invokes queue behind their function's
    four instances, and each one that found another invoke queued ahead of
    it was committed on its HTTP thread (a waited submit) before it could
    even start. Its caller has no id before its answer, as the first
    queued one's has not: deferred too, its record written once, at its
    end."""
    gate = tmp_path / "gate"
    # A linger longer than the test: the writer commits nothing deferred
    # on its own while the callers wait.
    with start_daemon(tmp_path, linger_ms=600000).serving() as d:
        deploy(d)
        four_warm_instances(d)
        answers = []
        # Eight callers, four instances: four run, four queue, three of
        # them behind another queued invoke.
        commits = metric(d, "pysprinter_store_commits_total")
        ts = invokers(d, range(8), gate, answers)
        try:
            # /metrics, not the listing: a listing commits what it shows.
            wait_for(lambda: metric(d, "pysprinter_runs_running") >= 4 and
                     metric(d, "pysprinter_queue_depth") >= 4, "four invokes running and four queued")
            assert metric(d, "pysprinter_store_commits_total") == commits
        finally:
            release(gate, ts)
        all_answered(d, answers, 8)


def listed_as_ended_or_pushed_out(runs, run_id, limit, why):
    """run_id is in the list and ended, or the list is full of newer runs
    (ids sort by time): the load's invokes came meanwhile (~1000 in the
    time a 10000-run list takes to build, round 19)."""
    status = {r["id"]: r["status"] for r in runs}
    if run_id in status:
        assert status[run_id] == "succeeded", (why, status[run_id])
    else:
        assert len(runs) == limit and run_id < min(status), (why, len(runs), run_id, min(status, default=None))


def test_a_list_during_load_shows_every_answered_invoke(tmp_path):
    """Round 18: a list (GET /v1/runs, a function's runs) no longer commits
    the journal's batch in its HTTP thread; it waits (without the thread)
    for the store's writer to commit it
    (pysprinter_store_commits_by_total{by="list"}). Still, every invoke
    answered before a list came is listed ended (read-your-writes), while
    other invokes keep coming."""
    with start_daemon(tmp_path).serving() as d:
        deploy(d)
        stop = threading.Event()

        def load():
            while not stop.is_set():
                st, _ = d.call("POST", INVOKE, {"kwargs": {"n": 1}}, timeout=120)
                assert st == 200

        ts = [threading.Thread(target=load) for _ in range(4)]
        for t in ts:
            t.start()
        try:
            for i in range(30):
                st, b = d.call("POST", INVOKE, {"kwargs": {"n": 1000 + i}})
                assert st == 200 and b["result"] == 1000 + i, b
                # The function's runs, then all of them, wait the same way.
                for path, limit in (("/v1/functions/fn/runs", 1000), ("/v1/runs", 10000)):
                    st, lst = d.call("GET", f"{path}?limit={limit}")
                    assert st == 200, lst
                    listed_as_ended_or_pushed_out(lst["runs"], b["id"], limit, (i, path))
        finally:
            stop.set()
            for t in ts:
                t.join(120)
        assert metric(d, 'pysprinter_store_commits_by_total{by="list"}') > 0
