"""Trust between runs (issue 10): every run and every warm instance has its
own cgroup, network namespace and processes; nothing of one reaches another,
whoever their tenants are. Each test is named after the attack or accident
it stops, and runs against the real daemon (two tenants' tokens) or the
embedded CLI, with the full sandbox."""
import json
import os
import pathlib
import signal
import subprocess
import threading
import time

import pytest

from conftest import CLI
from daemonlib import Daemon, sandbox_mode


def need_sandbox(d):
    if d.sandbox != "full":
        pytest.skip("isolation between runs needs the full sandbox on this machine")


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path))
    d.start()
    yield d
    d.stop()


def deploy(d, name, source, token="alice"):
    st, out = d.call("POST", "/v1/functions", {"name": name, "source": source, "filename": name + ".py"},
                     token=token)
    assert st in (200, 201), out


def invoke(d, name, token="alice", **body):
    st, out = d.call("POST", f"/v1/functions/{name}/invoke?wait=true", body, token=token)
    assert st == 200, out
    return out


def concurrently(*calls):
    """Runs each zero-argument callable on its own thread; their results in
    order (an exception is re-raised)."""
    out = [None] * len(calls)

    def go(i, f):
        try:
            out[i] = f()
        except BaseException as e:  # noqa: B902 - re-raised below
            out[i] = e
    ts = [threading.Thread(target=go, args=(i, f)) for i, f in enumerate(calls)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out


def instances(d, token="alice"):
    st, w = d.call("GET", "/v1/workers", token=token)
    assert st == 200, w
    return [x for x in w["workers"] if x["kind"] == "instance"]


def wait_for(cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


# ---- item 2: each warm instance has its own cgroup ----

SLEEPER = """\
import time
def handler(secs: float = 0, mb: int = 0):
    t0 = time.time()
    held = b"x" * (mb << 20)          # touched: memset, not lazy zero pages
    time.sleep(secs)
    return [t0, time.time(), len(held) >> 20]
"""


def test_one_invocation_timing_out_does_not_kill_the_others(daemon):
    need_sandbox(daemon)
    deploy(daemon, "sleeper", SLEEPER)
    ended = {}

    def victim():
        out = invoke(daemon, "sleeper", args=[60], limits={"timeout_ms": 2000})
        ended["victim"] = time.time()
        return out

    victim_out, a, b = concurrently(victim, lambda: invoke(daemon, "sleeper", args=[7]),
                                    lambda: invoke(daemon, "sleeper", args=[7]))
    assert victim_out["status"] == "killed" and "time limit" in victim_out["error"]["message"], victim_out
    for other in (a, b):
        assert other["status"] == "succeeded", other
        t0, t1, _ = other["result"]
        # It really was in flight when the victim was killed.
        assert t0 < ended["victim"] < t1, (other["result"], ended)


def test_two_300mb_invocations_under_512mib_both_succeed(daemon):
    need_sandbox(daemon)
    deploy(daemon, "hog", SLEEPER)
    outs = concurrently(*[lambda: invoke(daemon, "hog", args=[3, 300], limits={"memory_bytes": 512 << 20})
                          for _ in range(2)])
    for o in outs:
        assert o["status"] == "succeeded", o
        assert o["result"][2] == 300
    (s0, e0, _), (s1, e1, _) = (o["result"] for o in outs)
    assert max(s0, s1) < min(e0, e1), "the two invocations did not overlap"


def test_retiring_an_idle_instance_does_not_kill_a_busy_one(tmp_path):
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra="pool:\n  instance_ttl_s: 1\n")
    need_sandbox(d)
    d.start()
    try:
        deploy(d, "mixed", SLEEPER)
        long_out = {}
        t = threading.Thread(target=lambda: long_out.update(invoke(d, "mixed", args=[10])))
        t.start()
        busy = wait_for(lambda: [i for i in instances(d) if i["busy"]], "the long invocation's instance")
        # A second instance (the first is busy), idle after this call.
        assert invoke(d, "mixed", args=[0])["status"] == "succeeded"
        idle = wait_for(lambda: [i for i in instances(d) if not i["busy"] and i["idle_s"] > 1.2],
                        "an instance idle past its TTL")
        assert idle[0]["pid"] != busy[0]["pid"]
        # The next call retires the idle instance (and starts its own).
        assert invoke(d, "mixed", args=[0])["status"] == "succeeded"
        assert idle[0]["pid"] not in [i["pid"] for i in instances(d)]
        t.join(60)
        assert long_out["status"] == "succeeded", long_out
    finally:
        d.stop()
