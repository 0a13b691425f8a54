"""A small tmpfs as the daemon's home (issue 12, "Disk full"): a data upload
needs its own size in free space, not twice it, and one that does not fit
is a clear 507 naming ENOSPC and no server path. Needs root (mount)."""
import json
import os
import pathlib

import pytest

from conftest import DAEMON
from daemonlib import Daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")


def free_bytes(p):
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


def test_an_upload_needs_its_size_not_twice_it(tmp_path, small_home):
    d = Daemon(tmp_path / "d", sandbox="none", home=small_home,
               config_extra="server:\n  max_body_bytes: 40000000\n").start()
    try:
        free = free_bytes(small_home)
        # More than half the free space: two copies of it cannot fit.
        size = int(free * 0.6)
        body = os.urandom(size)
        st, hdrs, out = d.request("PUT", "/v1/data/big?filename=big.bin", raw=body,
                                  headers={"Content-Type": "application/octet-stream"})
        assert st == 201, (st, out, free, size)
        st, hdrs, back = d.request("GET", "/v1/data/big/content")
        assert st == 200 and back == body
        # Nothing is left behind in staging.
        leftovers = [p for p in pathlib.Path(small_home).rglob("*") if "tmp" in p.relative_to(small_home).parts and p.is_file()]
        assert not leftovers, leftovers
        # One that does not fit at all: 507, ENOSPC, no server path.
        st, hdrs, out = d.request("PUT", "/v1/data/huge?filename=huge.bin", raw=os.urandom(size),
                                  headers={"Content-Type": "application/octet-stream"})
        text = out.decode()
        assert st == 507 and "no space left" in text and "ENOSPC" in text, (st, text)
        assert str(small_home) not in text and str(tmp_path) not in text, text
        # The daemon still serves.
        st, _ = d.call("GET", "/v1/data")
        assert st == 200
    finally:
        d.stop()


FLOOD = """
import sys
def flood(mb: int = 11):
    chunk = "x" * 1023 + "\\n"
    for _ in range(mb * 1024):
        sys.stdout.write(chunk)
    return "printed"
"""


def fill(path, leave):
    """Writes a filler file until `leave` bytes are free; returns it."""
    filler = pathlib.Path(path) / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free_bytes(path) - leave))
    return filler


def test_a_run_that_fills_the_disk_ends_terminal_with_enospc(tmp_path, small_home):
    # disk.reserve_bytes 0: this test is about the run path's own ENOSPC,
    # not the 507 that refuses runs before the disk is full.
    d = Daemon(tmp_path / "d", sandbox="none", home=small_home, config_extra="""
        disk:
          reserve_bytes: 0
        limits:
          defaults: {max_output_bytes: 52428800}
          maxima: {max_output_bytes: 52428800}
        """).start()
    try:
        st, b = d.run("def f():\n    return 1\n")
        assert st == 200 and b["status"] == "succeeded", b
        filler = fill(small_home, 3 << 20)
        st, b = d.run(FLOOD)
        assert st == 200, b
        assert b["status"] not in ("queued", "running"), b
        assert b["status"] == "error" and "no space left" in b["error"]["message"].lower(), b
        assert "ENOSPC" in b["error"]["message"], b
        assert str(small_home) not in json.dumps(b)
        rid = b["id"]
        filler.unlink()
        st, b = d.call("GET", f"/v1/runs/{rid}")
        assert st == 200 and b["status"] == "error", b
        st, b = d.run("def f():\n    return 2\n")
        assert st == 200 and b["result"] == 2, b
    finally:
        d.stop()


SLOW = """
import time
def slow(seconds: float = 30):
    time.sleep(seconds)
    return "done"
"""


def test_a_restart_on_a_full_disk_still_recovers_the_runs(tmp_path, small_home):
    d = Daemon(tmp_path / "d", sandbox="none", home=small_home, config_extra="""
        disk:
          reserve_bytes: 0
        """).start()
    try:
        st, b = d.run(SLOW, wait=False, kwargs={"seconds": 30})
        rid = b["id"]
        d.wait_status(rid, ["running"])
        st, b = d.run(SLOW, wait=False, kwargs={"seconds": 0})
        d.wait_status(b["id"], ["succeeded"])
    finally:
        d.kill9()
    filler = fill(small_home, 0)
    try:
        d.start()
        try:
            # Recovered through the reserve: running again as attempt 2.
            b = d.wait_status(rid, ["running"])
            assert b["attempt"] == 2, b
            assert "disk holding the database is full" in d.log.read_text()
            d.cancel(rid)
        finally:
            d.stop()
    finally:
        filler.unlink()
