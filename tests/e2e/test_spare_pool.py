"""Issue 15 (c), round 6: the full sandbox's spare slots (a spare already in
its run's cgroups, its sandbox sealed) are sized to the concurrency seen
(docs/workers.md "How many spares"). What a user checks, in GET /v1/workers:
after a burst of runs at concurrency N the worker keeps N spares ready, so
the next burst of N runs finds a ready spare for each (no run makes its
cgroups and has its spare forked on its own critical path); the spares never
exceed the maximum (16) however wide the burst; and the target falls back
once the concurrency is gone."""
import threading

import pytest

from daemonlib import Daemon, sandbox_mode, wait_for

SLOW = "import time\ndef f(s: float):\n    time.sleep(s)\n    return s\n"
SLOTS_MAX = 16
FLOOR = 5  # slot_batch() + 1 with the default `pool: spares: 2`


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path),
               config_extra="server:\n  max_concurrent_runs: 64\n  max_concurrent_per_tenant: 64\n")
    if d.sandbox != "full":
        pytest.skip("spare slots are the full sandbox's")
    with d.serving():
        yield d


def worker(d):
    st, ws = d.call("GET", "/v1/workers")
    assert st == 200, ws
    ours = [w for w in ws["workers"] if w.get("kind") == "worker" and w.get("spares_target")]
    assert len(ours) == 1, ws
    return ours[0]


def burst(d, n, seconds):
    """n runs submitted at once, each in flight for `seconds`."""
    results = [None] * n

    def one(i):
        results[i] = d.run(SLOW, args=[seconds])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for st, body in results:
        assert st == 200 and body["status"] == "succeeded", body


def settled(d, at_least):
    w = worker(d)
    return w if w["spares"] >= at_least and w["spares_pending"] == 0 else None


def test_after_a_burst_the_next_burst_finds_a_ready_spare_for_each_run(daemon):
    for _ in range(3):
        st, body = daemon.run(SLOW, args=[0])
        assert st == 200 and body["status"] == "succeeded", body
    burst(daemon, 8, 1.0)  # every spare taken: the pool learns 8
    w = wait_for(lambda: settled(daemon, 8), "8 spares ready after the burst")
    assert w["spares_target"] >= 8, w
    burst(daemon, 8, 0.2)
    after = worker(daemon)
    assert after["spare_misses"] == w["spare_misses"], (w, after)
    assert after["spare_hits"] == w["spare_hits"] + 8, (w, after)


def test_spares_never_exceed_the_maximum(daemon):
    daemon.run(SLOW, args=[0])
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            w = worker(daemon)
            seen.append(w["spares"] + w["spares_pending"])
            stop.wait(0.02)

    t = threading.Thread(target=watch)
    t.start()
    try:
        burst(daemon, 24, 1.0)
        w = wait_for(lambda: settled(daemon, SLOTS_MAX), f"{SLOTS_MAX} spares ready after 24 runs at once")
    finally:
        stop.set()
        t.join()
    assert w["spares_target"] == SLOTS_MAX, w
    assert seen and max(seen) <= SLOTS_MAX, max(seen)
    assert w["spares"] == SLOTS_MAX, w


def test_the_target_falls_back_when_the_concurrency_is_gone(daemon):
    burst(daemon, 8, 0.5)
    assert worker(daemon)["spares_target"] >= 8

    def fallen():
        st, body = daemon.run(SLOW, args=[0])  # one at a time now
        assert st == 200, body
        w = worker(daemon)
        return w if w["spares_target"] == FLOOR else None

    wait_for(fallen, "the target back to its floor after 10 s of runs one at a time", timeout=60)
