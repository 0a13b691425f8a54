"""End-to-end: a warm instance's garbage collector state (issue 15 b, the
tail). What the module made at import is frozen (gc.freeze) before the first
invocation, so a collection an invocation triggers never scans it: with a
big module a full collection is milliseconds, in whichever invocation's
path it falls."""
import pytest

from daemonlib import Daemon, sandbox_mode


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("instgc")
    d = Daemon(tmp / "d", sandbox=sandbox_mode(tmp))
    d.start()
    yield d
    d.stop()


BIG_MODULE = (
    "import gc\n"
    "TABLE = [{'k': i, 'v': [i]} for i in range(20000)]\n"  # 40000 tracked containers
    "def handler():\n"
    "    return {'tracked': len(gc.get_objects()), 'frozen': gc.get_freeze_count(), 'rows': len(TABLE)}\n")


def test_the_module_s_objects_are_frozen_before_the_first_invocation(d):
    st, out = d.call("POST", "/v1/functions", {"name": "biggc", "source": BIG_MODULE, "filename": "biggc.py"})
    assert st in (200, 201), out
    for _ in range(3):
        st, out = d.call("POST", "/v1/functions/biggc/invoke?wait=true", {})
        assert st == 200, out
        v = out["result"]
        assert v["rows"] == 20000
        # The module's 40000 containers are out of the collector's
        # generations: what it still tracks is a few invocations' worth.
        assert v["frozen"] >= 40000, v
        assert v["tracked"] < 20000, v
