"""Issue 15 (b), the run path: runs are carried by a persistent pool of run
threads (at most max_concurrent_runs + 1), not by a thread created per run.
The daemon's thread count stays flat however many runs are in flight or
queued, and the pool still obeys the global and per-tenant limits, cancels,
and ends every run."""
import os
import threading
import time

import pytest

from daemonlib import Daemon, wait_for

MAX_RUNS = 2


def threads(d):
    """The daemon's threads but the store's writer: it starts at the first
    start not recorded by its submit (store-writer.c), whenever that is."""
    n = 0
    for t in os.listdir(f"/proc/{d.proc.pid}/task"):
        try:
            n += open(f"/proc/{d.proc.pid}/task/{t}/comm").read().strip() != "store-writer"
        except FileNotFoundError:
            pass
    return n


def metric(d, name):
    st, text = d.call("GET", "/metrics", token="admin")
    assert st == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no {name} in /metrics")


def gated(gate, tag):
    return (
        "import os, time\n"
        "def main():\n"
        f"    while not os.path.exists({str(gate)!r}):\n"
        "        time.sleep(0.01)\n"
        f"    return {tag!r}\n")


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "d", config_extra=f"""
        server:
          http_threads: 2
          max_concurrent_runs: {MAX_RUNS}
          max_concurrent_per_tenant: {MAX_RUNS}
          max_queued_runs: 200
          max_connections_per_ip: 400
        """)
    d.start()
    yield d
    d.stop()


class Sampler(threading.Thread):
    """The daemon's thread count and running runs, sampled until stopped."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d, self.stop_flag = d, threading.Event()
        self.max_threads = 0
        self.max_running = 0

    def run(self):
        while not self.stop_flag.is_set():
            self.max_threads = max(self.max_threads, threads(self.d))
            self.max_running = max(self.max_running, metric(self.d, "pysprinter_runs_running"))
            time.sleep(0.005)

    def stop(self):
        self.stop_flag.set()
        self.join()


def test_thread_count_stays_flat_while_invokes_and_adhoc_runs_go_through(daemon):
    """200 invokes and 50 ad-hoc runs from 8 clients at once, with 2 slots:
    up to 8 runs in flight. A thread per run grew the daemon by one thread
    per run in flight (queued ones included); the pool holds at most
    max_concurrent_runs + 1 threads, made once."""
    st, out = daemon.call("POST", "/v1/functions", {"name": "echo", "filename": "echo.py",
                                                    "source": "def handler(x):\n    return x\n"})
    assert st in (200, 201), out
    # Warm: an instance and a worker exist, the pool has its threads.
    for i in range(4):
        st, out = daemon.call("POST", "/v1/functions/echo/invoke?wait=true", {"args": [i]})
        assert st == 200 and out["result"] == i, out
        st, out = daemon.run("def f():\n    return 1\n")
        assert st == 200 and out["status"] == "succeeded", out
    base = threads(daemon)

    jobs = [("invoke", i) for i in range(200)] + [("adhoc", i) for i in range(50)]
    lock = threading.Lock()
    errors = []

    def client():
        while True:
            with lock:
                if not jobs:
                    return
                kind, i = jobs.pop()
            if kind == "invoke":
                st, out = daemon.call("POST", "/v1/functions/echo/invoke?wait=true", {"args": [i]})
                ok = st == 200 and out.get("result") == i
            else:
                st, out = daemon.run(f"def f():\n    return {i}\n")
                ok = st == 200 and out.get("status") == "succeeded" and out.get("result") == i
            if not ok:
                errors.append((kind, i, st, out))

    s = Sampler(daemon)
    s.start()
    clients = [threading.Thread(target=client) for _ in range(8)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    s.stop()
    assert not errors, errors[:3]
    assert s.max_running <= MAX_RUNS, s.max_running
    # The pool may still grow to its cap (MAX_RUNS + 1) from the warm-up's
    # size; a thread per run in flight would add up to 8.
    assert s.max_threads <= base + 2, (base, s.max_threads)
    assert threads(daemon) <= base + 2


def test_long_runs_and_queued_ones_obey_the_limits_and_all_end(tmp_path):
    """8 long runs + 20 queued ones with max_concurrent_runs=4 (and 3 per
    tenant): never more than 4 running, never more than 3 of one tenant,
    the queued ones hold no thread, a cancelled queued run ends at once,
    and every other run ends succeeded once the gate opens."""
    gate = tmp_path / "gate"
    d = Daemon(tmp_path / "d", config_extra="""
        server:
          http_threads: 2
          max_concurrent_runs: 4
          max_concurrent_per_tenant: 3
          max_queued_runs: 100
        """)
    d.start()
    try:
        st, out = d.run("def f():\n    return 1\n")
        assert st == 200 and out["status"] == "succeeded", out
        base = threads(d)
        ids = {}
        for i in range(28):
            token = "alice" if i % 2 == 0 else "bob"
            st, b = d.call("POST", "/v1/runs", {"source": gated(gate, f"r{i}"), "function": "main"}, token=token)
            assert st == 202, b
            ids[b["id"]] = (token, f"r{i}")
        wait_for(lambda: metric(d, "pysprinter_runs_running") == 4, "4 runs running")
        running = {"alice": 0, "bob": 0}
        for rid, (token, _) in ids.items():
            st, b = d.call("GET", f"/v1/runs/{rid}", token=token)
            if b["status"] == "running":
                running[token] += 1
        assert sum(running.values()) == 4 and max(running.values()) <= 3, running
        assert metric(d, "pysprinter_queue_depth") == 24
        # 28 runs in flight: the pool (at most 5 threads) carries them.
        assert threads(d) <= base + 4, (base, threads(d))

        # A queued run cancelled now ends at once, though every slot is busy.
        queued = [rid for rid, (token, _) in ids.items()
                  if d.call("GET", f"/v1/runs/{rid}", token=token)[1]["status"] == "queued"]
        victim = queued[-1]
        d.cancel(victim, token=ids[victim][0], timeout=10)

        s = Sampler(d)
        s.start()
        gate.write_text("go")
        for rid, (token, tag) in ids.items():
            if rid == victim:
                continue
            b = d.wait_status(rid, ["succeeded", "failed", "error", "killed", "cancelled", "lost"], token=token,
                              timeout=120)
            assert b["status"] == "succeeded" and b["result"] == tag, b
        s.stop()
        assert s.max_running <= 4, s.max_running
        assert threads(d) <= base + 4
    finally:
        d.stop()
