"""Issue 15 (b), round 8: the daemon's hand-offs per invoke under
concurrency. Invokes of a function beyond its warm instances wait in the
daemon's queue, not on a run thread blocked in the engine for an instance
(each instance release woke every such thread for one to win it): they
start on the run thread that ended the run before them
(docs/internals/performance-log.md "Invoke path: hand-offs under concurrency")."""
import threading

import pytest

from daemonlib import Daemon, wait_for

# Marks its start (pid and call number), then waits for the gate.
GATED = (
    "import os, time\n"
    "def main(gate=None, marks=None, n=0, context=None):\n"
    "    open(os.path.join(marks, '%d-%d' % (os.getpid(), n)), 'w').close()\n"
    "    while not os.path.exists(gate):\n"
    "        time.sleep(0.005)\n"
    "    return os.getpid()\n")

INSTANCES = 4  # the engine's warm instances per function (DAEMON_FN_INSTANCES)


@pytest.fixture
def d(tmp_path):
    with Daemon(tmp_path / "d", config_extra="""
        server:
          max_concurrent_runs: 16
          max_concurrent_per_tenant: 16
        """).serving() as daemon:
        st, b = daemon.call("POST", "/v1/functions", {"name": "gated", "source": GATED, "function": "main"})
        assert st == 201, b
        yield daemon


def gauges(d):
    st, text = d.call("GET", "/metrics", token="admin")
    assert st == 200
    got = {}
    for line in text.splitlines():
        for name in ("pysprinter_runs_running", "pysprinter_queue_depth"):
            if line.startswith(name + " "):
                got[name] = int(float(line.split()[1]))
    return got["pysprinter_runs_running"], got["pysprinter_queue_depth"]


def test_invokes_beyond_the_instances_wait_queued_and_all_answer(d, tmp_path):
    gate, marks = tmp_path / "gate", tmp_path / "marks"
    marks.mkdir()
    n = INSTANCES + 2
    out = {}

    def invoke(i):
        out[i] = d.call("POST", "/v1/functions/gated/invoke?wait=true",
                        {"kwargs": {"gate": str(gate), "marks": str(marks), "n": i}})
    ts = [threading.Thread(target=invoke, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    try:
        # Every instance runs an invoke: the two others are accepted and
        # wait for one, queued (before: all six ran, two of them on a run
        # thread blocked in the engine).
        wait_for(lambda: len(list(marks.iterdir())) >= INSTANCES, "the instances to run")
        wait_for(lambda: sum(gauges(d)) == n, "every invoke accepted")
        running, queued = gauges(d)
        assert (running, queued) == (INSTANCES, n - INSTANCES), (running, queued)
        assert len(list(marks.iterdir())) == INSTANCES
    finally:
        gate.write_text("go")
        for t in ts:
            t.join(60)
    answers = [out[i] for i in range(n)]
    assert all(st == 200 and b["status"] == "succeeded" for st, b in answers), answers
    # The waiting invokes ran on the instances the first ones freed.
    pids = {int(m.name.split("-")[0]) for m in marks.iterdir()}
    assert len(list(marks.iterdir())) == n and len(pids) <= INSTANCES, sorted(m.name for m in marks.iterdir())
    assert {b["result"] for _, b in answers} == pids
    wait_for(lambda: gauges(d) == (0, 0), "the gauges to drop to zero")


def test_cancel_reaches_an_invoke_waiting_for_an_instance(d, tmp_path):
    """A queued invoke held for its function's instances is cancelled as
    any queued run: it ends cancelled at once, the running ones go on."""
    gate, marks = tmp_path / "gate", tmp_path / "marks"
    marks.mkdir()
    out = {}

    def invoke(i):
        out[i] = d.call("POST", "/v1/functions/gated/invoke",
                        {"kwargs": {"gate": str(gate), "marks": str(marks), "n": i}})
    try:
        for i in range(INSTANCES + 1):
            invoke(i)
            assert out[i][0] == 202, out[i]
        wait_for(lambda: len(list(marks.iterdir())) >= INSTANCES, "the instances to run")
        last = out[INSTANCES][1]["id"]
        st, rec = d.call("GET", f"/v1/runs/{last}")
        assert rec["status"] == "queued", rec
        d.cancel(last)
        rec = wait_for(lambda: (lambda r: r if r["status"] == "cancelled" else None)(
            d.call("GET", f"/v1/runs/{last}")[1]), "the cancel")
        assert len(list(marks.iterdir())) == INSTANCES, "the cancelled invoke never ran"
    finally:
        gate.write_text("go")
    for i in range(INSTANCES):
        rid = out[i][1]["id"]
        rec = wait_for(lambda: (lambda r: r if r["status"] not in ("queued", "running") else None)(
            d.call("GET", f"/v1/runs/{rid}")[1]), "the runs to end")
        assert rec["status"] == "succeeded", rec


PID = "import os\ndef main(context=None):\n    return os.getpid()\n"


def voluntary_switches(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def test_an_idle_instance_sleeps_once_per_invoke(d):
    """An instance waiting for its next invocation is woken by that
    invocation only: not also when the engine reads its "done" (a reader
    asleep in recvmsg() on a unix socket is woken by the peer's read of
    what it sent; the instance waits in poll() for POLLIN)."""
    st, b = d.call("POST", "/v1/functions", {"name": "pid", "source": PID, "function": "main"})
    assert st == 201, b
    st, b = d.call("POST", "/v1/functions/pid/invoke?wait=true", {})
    assert st == 200, b
    pid = b["result"]
    n = 200
    before = voluntary_switches(pid)
    for _ in range(n):
        st, b = d.call("POST", "/v1/functions/pid/invoke?wait=true", {})
        assert st == 200 and b["result"] == pid, b
    per_invoke = (voluntary_switches(pid) - before) / n
    # One sleep per invoke (waiting for it); two when the read woke it.
    assert per_invoke < 1.5, per_invoke


def daemon_threads(d):
    import os
    out = []
    for tid in os.listdir(f"/proc/{d.proc.pid}/task"):
        try:
            comm = open(f"/proc/{d.proc.pid}/task/{tid}/comm").read().strip()
            out.append((comm, os.sched_getscheduler(int(tid)) & ~os.SCHED_RESET_ON_FORK))
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return out


def test_run_threads_do_not_preempt_the_http_threads(d):
    """The run threads are SCHED_BATCH (a woken one does not preempt the
    HTTP thread that queued its run) and named apart; the HTTP threads keep
    the usual policy."""
    import os
    st, b = d.call("POST", "/v1/functions", {"name": "pid", "source": PID, "function": "main"})
    assert st == 201, b
    # The first invoke starts the instance: on a run thread.
    st, b = d.call("POST", "/v1/functions/pid/invoke?wait=true", {})
    assert st == 200 and b["status"] == "succeeded", b
    threads = daemon_threads(d)
    run = [p for comm, p in threads if comm == "run-thread"]
    assert run and all(p == os.SCHED_BATCH for p in run), threads
    http = [p for comm, p in threads if comm == "MHD-worker"]
    assert http and all(p == os.SCHED_OTHER for p in http), threads
    # Nor what a run thread starts: the instance (and its worker) run the
    # user's code at the usual policy.
    instance = b["result"]
    worker = int(open(f"/proc/{instance}/stat").read().rsplit(")", 1)[1].split()[1])
    assert os.sched_getscheduler(instance) == os.SCHED_OTHER
    assert os.sched_getscheduler(worker) == os.SCHED_OTHER
