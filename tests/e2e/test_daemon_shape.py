"""The daemon's shape as a client sees it: the drain answers 503 with
Retry-After instead of resetting connections, the warm pool counts an idle
instance as idle, a deleted function's instances are retired, a deploy keeps
its requirements beside the file and its parameters on the record, and
every route answers 404/405 from the one table."""
import re
import signal
import socket
import time

import pytest

from conftest import DAEMON
from daemonlib import Daemon, module_daemon, sandbox_mode

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SLOW = """
import time
def slow(seconds: float = 5):
    time.sleep(seconds)
    return "done"
"""

COUNTER = """
calls = 0
def handler(event, context):
    global calls
    calls += 1
    return {"label": LABEL, "calls": calls}
"""


def until(cond, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "shape")


def deploy(d, name, source, **fields):
    st, b = d.call("POST", "/v1/functions", {"name": name, "source": source, **fields})
    assert st == 201, b
    return b


def invoke(d, name, event=None):
    st, b = d.call("POST", f"/2015-03-31/functions/{name}/invocations", event if event is not None else {})
    assert st == 200, b
    return b


def my_instances(d, name):
    st, b = d.call("GET", "/v1/workers")
    assert st == 200, b
    return [w for w in b["workers"] if w["kind"] == "instance" and w["function"].startswith(name + "@")]


def test_idle_warm_instance_is_not_busy(d):
    deploy(d, "idle", COUNTER.replace("LABEL", '"idle"'))
    assert invoke(d, "idle")["calls"] == 1
    st, b = d.call("GET", "/v1/workers")
    assert st == 200
    inst = [w for w in b["workers"] if w["kind"] == "instance" and w["function"].startswith("idle@")]
    assert len(inst) == 1 and inst[0]["busy"] is False
    # The worker hosting the idle instance runs nothing (its runs in flight
    # are an admin's to see: helper-231).
    st, a = d.call("GET", "/v1/workers", token="admin")
    assert all(w["busy"] == 0 for w in a["workers"] if w["kind"] == "worker"), a["workers"]
    assert b["pool"]["busy"] == 0 and b["pool"]["instances_busy"] == 0, b["pool"]
    st, text = d.call("GET", "/metrics", token="admin")
    assert st == 200
    assert re.search(r"^pysprinter_pool_workers_busy 0$", text, re.M), text
    assert re.search(r"^pysprinter_pool_instances_busy 0$", text, re.M), text
    assert int(re.search(r"^pysprinter_pool_instances (\d+)$", text, re.M).group(1)) >= 1


def test_deleted_function_instances_retire(d):
    deploy(d, "gone", COUNTER.replace("LABEL", '"old"'))
    assert invoke(d, "gone") == {"label": "old", "calls": 1}
    assert len(my_instances(d, "gone")) == 1
    st, b = d.call("DELETE", "/v1/functions/gone")
    assert st == 200 and b["deleted"] is True, b
    until(lambda: not my_instances(d, "gone"), "the deleted function's instance to retire")
    # A new deploy of the name starts at version 1 again: it runs the new
    # code in a new instance, not the old one's module and globals.
    deploy(d, "gone", COUNTER.replace("LABEL", '"new"'))
    assert invoke(d, "gone") == {"label": "new", "calls": 1}


def test_deploy_keeps_requirements_beside_the_file(d):
    source = "def f(x: int):\n    return x + 1\n"
    b = deploy(d, "reqs", source, function="f", requirements={})
    assert b["requirements"] == {} and b["parameters"] == ["x"]
    st, g = d.call("GET", "/v1/functions/reqs?source=1")
    assert st == 200 and g["source"] == source, g  # the user's file, byte for byte
    st, r = d.call("POST", "/v1/functions/reqs/invoke?wait=true", {"kwargs": {"x": 41}})
    assert st == 200 and r["result"] == 42, r


def test_requirements_in_the_file_and_beside_it_is_refused(d):
    source = '@requirements({"six": ">=1"})\ndef f():\n    return 1\n'
    st, b = d.call("POST", "/v1/functions", {"name": "both", "source": source, "requirements": {"six": ""}})
    assert st == 422, b
    assert "one or the other" in b["error"]["message"]


def test_lambda_rule_uses_the_parameters_validation_read(d):
    # A signature spread over lines, with defaults holding parentheses and
    # commas: the worker's parser reads it, the daemon only counts names.
    src = 'def one(\n    event=dict(a=(1, 2)),  # (the event)\n):\n    return ["one", event]\n'
    b = deploy(d, "one", src)
    assert b["parameters"] == ["event"] and b["function"] == "one"
    assert invoke(d, "one", {"k": 1}) == ["one", {"k": 1}]
    b = deploy(d, "kw", "def kw(a, *, b=2, **rest):\n    return a + b + len(rest)\n")
    assert b["parameters"] == ["a", "*", "b", "**rest"]
    assert invoke(d, "kw", {"a": 1, "b": 10, "z": 0}) == 12


def test_routes_404_405(d):
    st, hdrs, body = d.request("PUT", "/v1/runs")
    assert st == 405 and hdrs["allow"] == "GET, HEAD, POST"
    st, hdrs, body = d.request("POST", "/v1/workers", token=None)
    assert st == 405 and hdrs["allow"] == "GET, HEAD"  # before auth
    st, b = d.call("GET", "/v1/nope")
    assert st == 404 and b["error"]["code"] == "not_found"
    st, hdrs, body = d.request("DELETE", "/2015-03-31/functions/x/invocations", token=None)
    assert st == 405 and hdrs["allow"] == "POST" and hdrs["x-amzn-errortype"]


def test_drain_answers_503_with_retry_after(tmp_path):
    dd = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path)).start()
    try:
        st, b = dd.run(SLOW, wait=False, kwargs={"seconds": 4})
        assert st == 202
        dd.wait_status(b["id"], ["running"])
        dd.proc.send_signal(signal.SIGTERM)
        seen = None
        deadline = time.time() + 10
        while time.time() < deadline and dd.proc.poll() is None:
            try:
                st, hdrs, body = dd.request("POST", "/v1/runs", {"source": "def f():\n    return 1\n"})
            except (ConnectionError, socket.timeout) as e:
                if dd.proc.poll() is not None:
                    break
                raise AssertionError(f"a submit during the drain got {e!r}, not an answer")
            if st == 503:
                seen = (hdrs, body)
                break
            assert st == 202, (st, body)  # accepted before the signal landed
            time.sleep(0.02)
        assert seen, "no 503 while draining"
        hdrs, body = seen
        assert int(hdrs["retry-after"]) > 0
        assert b'"shutting_down"' in body
        st, h = dd.call("GET", "/healthz", token=None)
        assert st == 503 and h["status"] == "draining"
        assert dd.proc.wait(30) == 0
    finally:
        dd.stop()
    dd.start()
    try:
        st, r = dd.call("GET", f"/v1/runs/{b['id']}")
        assert r["status"] == "succeeded", r
    finally:
        dd.stop()
