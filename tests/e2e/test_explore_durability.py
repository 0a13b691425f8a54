"""Durability on one machine, played as an operator whose machine
misbehaves: processes killed with -9 at awkward moments, a second daemon
started by mistake, restarts on what the crash left behind. What a user
checks: a run that got an id ends once, with its result; what a crash
left half-done goes away; nothing needs hand repair.
(The Redis cluster has its own tests: test_cluster*.py.)"""
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import CLI, DAEMON
import pkgindex
from daemonlib import TOKENS, Daemon, wait_for

pytestmark = pytest.mark.skipif(not DAEMON.exists() or not CLI.exists(), reason="pysprinter not built")

TERMINAL = ["succeeded", "failed", "invalid", "deps_failed", "killed", "cancelled", "error", "lost"]

BEGINS_THEN_SLEEPS = """
import time
def slow(seconds: float = 30):
    print("began", flush=True)
    time.sleep(seconds)
    return "slept"
"""


def began(d, rid):
    wait_for(lambda: d.call("GET", f"/v1/runs/{rid}/logs")[1] == "began\n", f"run {rid} to begin", timeout=90)


# ---- one daemon per data directory -----------------------------------------

def test_a_second_daemon_on_the_same_data_dir_is_refused_and_runs_nothing_twice(tmp_path):
    """A second pysprinterd started on a data directory another one serves
    (another port, a forgotten manual start beside the service) took the
    first one's running run for a crash leftover: it ran it again beside
    the first (attempt 2 while attempt 1 still ran), and a `retries: 0` run
    it ended `lost` while it was still running. Now it is refused, naming
    the daemon that serves the directory; once that one is gone (kill -9),
    a start takes the directory over at once."""
    a = Daemon(tmp_path / "a", sandbox="none").start()
    b = Daemon(tmp_path / "b", sandbox="none", home=a.home)
    try:
        st, r = a.run(BEGINS_THEN_SLEEPS, wait=False, kwargs={"seconds": 6}, retries=0)
        assert st == 202, r
        rid = r["id"]
        began(a, rid)
        with pytest.raises(RuntimeError) as e:
            b.start()
        assert b.proc.returncode == 2, b.log.read_text()
        assert f"another pysprinterd (pid {a.proc.pid}) serves {a.home}" in str(e.value), str(e.value)
        r = a.wait_status(rid, TERMINAL, timeout=90)
        assert r["status"] == "succeeded" and r["result"] == "slept" and r["attempt"] == 1, r
        # The first one dies: the directory is free at once, and what was
        # in flight is recovered by the new owner as after any crash.
        st, r = a.run(BEGINS_THEN_SLEEPS, wait=False, kwargs={"seconds": 1})
        rid = r["id"]
        began(a, rid)
        a.kill9()
        b.start()
        r = b.wait_status(rid, TERMINAL, timeout=90)
        assert r["status"] == "succeeded" and r["attempt"] == 2, r
    finally:
        b.stop()
        a.stop()

