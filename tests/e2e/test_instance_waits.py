"""Waiting for a warm instance (docs/workers.md "Idle instances are frozen",
"Deployed functions"), round 8: the freezer writes the freezer file without
the pool lock (an instance being frozen is marked freezing; a call that
takes it waits for the write and thaws it), and a released instance is
handed to one waiter of its function instead of waking every thread. No invocation lands on a
frozen or freezing instance (it would hang: the test's deadline catches it),
and no waiter starves. Real daemon, real sandbox, real freezer."""
import random
import threading
import time

import pytest

from conftest import DAEMON
from daemonlib import Daemon, sandbox_mode
from test_pool_lifecycle import COUNTER, instances

# COUNTER's pid is its pid-namespace view (2 in each instance): an id made
# at import names the instance.
TAGGED = """
import os, time
ID = os.urandom(8).hex()
CALLS = 0
def handler(seconds: float = 0):
    global CALLS
    CALLS += 1
    time.sleep(seconds)
    return [CALLS, ID]
"""

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")


def start(tmp_path, grace_ms=None, config_extra=""):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=config_extra)
    if grace_ms is not None:
        base = d.env
        d.env = lambda: {**base(), "PYSPRINTER_INSTANCE_FREEZE_GRACE_MS": str(grace_ms)}
    return d.start()


def hammer(d, names, threads, per_thread, gap_s, seconds=0.0):
    """threads clients, each invoking per_thread times a function of names
    (at random) with a random gap up to gap_s: [(name, status, result or
    error)], one per call, or the exception a call raised (timeout)."""
    out, lock = [], threading.Lock()

    def client(seed):
        rnd = random.Random(seed)
        for _ in range(per_thread):
            name = rnd.choice(names)
            try:
                st, r = d.call("POST", f"/v1/functions/{name}/invoke?wait=true",
                               {"kwargs": {"seconds": seconds}}, timeout=20)
                item = (name, st, r.get("status"), r.get("result") or r.get("error"))
            except Exception as exc:  # a hung call: its timeout
                item = (name, None, repr(exc), None)
            with lock:
                out.append(item)
            if gap_s:
                time.sleep(rnd.uniform(0, gap_s))

    ths = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return out


def test_invokes_racing_the_freezer_with_a_tiny_grace_are_each_answered(tmp_path):
    # Grace 0: an instance is due for a freeze as soon as it goes idle, so
    # the freezer races nearly every call that takes it again.
    d = start(tmp_path, grace_ms=0)
    try:
        st, out = d.call("POST", "/v1/functions", {"name": "c", "source": TAGGED})
        assert st == 201, out
        calls = hammer(d, ["c"], threads=8, per_thread=150, gap_s=0.001)
        bad = [c for c in calls if c[1] != 200 or c[2] != "succeeded"]
        assert not bad, bad[:5]
        # Each instance's counter went up by one per call it served: no
        # call was lost or answered twice.
        by_pid = {}
        for _n, _st, _s, (count, pid) in calls:  # pid: the instance's ID
            by_pid.setdefault(pid, []).append(count)
        for pid, counts in by_pid.items():
            assert sorted(counts) == list(range(1, len(counts) + 1)), (pid, sorted(counts))
        # The freezer did race the calls: instances were frozen and thawed
        # between them, many times.
        insts = instances(d)
        assert sum(i["freezes"] for i in insts) >= 20, insts
    finally:
        d.stop()


def test_three_functions_at_concurrency_16_with_4_instances_each_all_answered(tmp_path):
    # 16 clients over 3 functions of at most 4 instances each: calls wait
    # for an instance of their own function while others are released. On a
    # fresh daemon the first calls also wait for the env's worker that one
    # of them starts (a worker waiter), and ad-hoc runs on a network env
    # (another worker, started while instance waiters wait) run alongside.
    d = start(tmp_path, config_extra="limits:\n  maxima: {network: true}\n")
    try:
        names = ["f0", "f1", "f2"]
        for n in names:
            st, out = d.call("POST", "/v1/functions", {"name": n, "source": COUNTER})
            assert st == 201, out
        adhoc = []

        def run_adhoc(i):
            st, r = d.call("POST", "/v1/runs?wait=true",
                           {"source": f"def f():\n    return {i}\n", "limits": {"network": True}}, timeout=120)
            adhoc.append((st, r.get("status"), r.get("result")))

        ad = [threading.Thread(target=run_adhoc, args=(i,)) for i in range(3)]
        for t in ad:
            t.start()
        calls = hammer(d, names, threads=16, per_thread=12, gap_s=0, seconds=0.005)
        for t in ad:
            t.join()
        bad = [c for c in calls if c[1] != 200 or c[2] != "succeeded"]
        assert not bad, bad[:5]
        assert len(calls) == 16 * 12
        assert sorted(adhoc) == [(200, "succeeded", i) for i in range(3)], adhoc
        # At most 4 instances a function, each served calls of its own.
        per_fn = {}
        for i in instances(d):
            per_fn[i.get("function") or i.get("key")] = per_fn.get(i.get("function") or i.get("key"), 0) + 1
        assert all(n <= 4 for n in per_fn.values()), per_fn
        served = {n: sum(1 for c in calls if c[0] == n) for n in names}
        assert all(served[n] > 0 for n in names), served
    finally:
        d.stop()
