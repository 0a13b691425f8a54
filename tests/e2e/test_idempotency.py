"""Idempotency-Key on a single node (docs/api.md "Idempotency"): a submit
that carries a key the tenant used within 24 h answers with the first run
instead of starting another, as in a cluster (test_cluster.py) — also when
the resubmissions race each other and after a kill -9 of the daemon. Real
daemon, real worker, real SQLite file."""
import concurrent.futures

import pytest

from conftest import DAEMON
from daemonlib import Daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SLOW = """
import time
def slow(seconds: float = 0, tag: str = ""):
    time.sleep(seconds)
    return tag or "done"
"""


def post(d, key, wait=False, token="alice", **kwargs):
    body = {"source": SLOW, "kwargs": kwargs}
    return d.call("POST", "/v1/runs" + ("?wait=true" if wait else ""), body, token=token,
                  headers={"Idempotency-Key": key} if key else None)


def listed(d, token="alice"):
    st, lst = d.call("GET", "/v1/runs", token=token)
    assert st == 200
    return [r["id"] for r in lst["runs"]]


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path).start()
    yield d
    d.stop()


def test_a_resubmission_answers_with_the_first_run(daemon):
    d = daemon
    st, a = post(d, "order-42", wait=True, tag="first")
    assert st == 200 and a["result"] == "first", a
    # the same key again, even with another body: the first run, not a new one
    st, b = post(d, "order-42", tag="second")
    assert st == 202 and b["id"] == a["id"] and b["result"] == "first", b
    st, hdrs, _ = d.request("POST", "/v1/runs", {"source": SLOW}, headers={"Idempotency-Key": "order-42"})
    assert st == 202 and hdrs["location"] == f"/v1/runs/{a['id']}"
    st, c = post(d, "order-42", wait=True)
    assert st == 200 and c["id"] == a["id"] and c["result"] == "first", c
    assert listed(d) == [a["id"]]
    # another key, or none: new runs
    st, e = post(d, "order-43", wait=True, tag="other")
    assert st == 200 and e["id"] != a["id"] and e["result"] == "other"
    st, f = post(d, None, wait=True)
    assert st == 200 and f["id"] not in (a["id"], e["id"])
    assert len(listed(d)) == 3


def test_keys_are_per_tenant(daemon):
    d = daemon
    st, a = post(d, "k", wait=True, tag="alice")
    assert st == 200
    st, b = post(d, "k", wait=True, token="bob", tag="bob")
    assert st == 200 and b["id"] != a["id"] and b["result"] == "bob"
    # bob's key does not reveal alice's run, nor the other way round
    st, c = post(d, "k", token="bob")
    assert c["id"] == b["id"]
    assert listed(d, "bob") == [b["id"]] and listed(d) == [a["id"]]


def test_a_bad_key_is_refused(daemon):
    st, e = post(daemon, "x" * 201)
    assert st == 400 and "Idempotency-Key" in e["error"]["message"], e
    st, e = daemon.call("POST", "/v1/runs", {"source": SLOW}, headers={"Idempotency-Key": ""})
    assert st == 400
    # The CLI's and the Python client's rule too: visible ASCII, no spaces
    # (a header would fold, trim or need an encoding for the rest).
    for key in ("two words", "tab\there", "caf\u00e9".encode().decode("latin-1")):
        st, e = post(daemon, key)
        assert st == 400 and e["error"]["message"] == (
            "the Idempotency-Key header takes 1..200 visible ASCII characters (no spaces)"), (key, e)
    st, _ = post(daemon, "!" + "~" * 199)
    assert st == 202
    assert len(listed(daemon)) == 1


def test_racing_resubmissions_start_one_run(daemon):
    d = daemon
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        answers = list(ex.map(lambda i: post(d, "race", wait=i % 2 == 0, seconds=0.5, tag=f"t{i}"), range(16)))
    ids = {b["id"] for st, b in answers}
    assert len(ids) == 1, answers
    (rid,) = ids
    assert listed(d) == [rid]
    # the waiting callers all got the one run's end
    results = {b["result"] for st, b in answers if st == 200}
    assert len(results) == 1 and all(st in (200, 202) for st, b in answers), answers
    assert d.wait_status(rid, ["succeeded"])["result"] in {f"t{i}" for i in range(16)}


def test_a_waiting_resubmission_gets_the_running_runs_end(daemon):
    d = daemon
    st, a = post(d, "long", seconds=1.5, tag="slow")
    assert st == 202
    d.wait_status(a["id"], ["running"])
    st, b = post(d, "long", wait=True)
    assert st == 200 and b["id"] == a["id"] and b["status"] == "succeeded" and b["result"] == "slow", b


def test_invocations_honour_the_key(daemon):
    d = daemon
    st, _ = d.call("POST", "/v1/functions", {"name": "fn", "filename": "fn.py", "source": SLOW})
    assert st in (200, 201)
    h = {"Idempotency-Key": "inv-1"}
    st, a = d.call("POST", "/v1/functions/fn/invoke?wait=true", {"kwargs": {"tag": "one"}}, headers=h)
    assert st == 200 and a["result"] == "one", a
    st, b = d.call("POST", "/v1/functions/fn/invoke?wait=true", {"kwargs": {"tag": "two"}}, headers=h)
    assert st == 200 and b["id"] == a["id"] and b["result"] == "one", b
    st, c = d.call("POST", "/v1/functions/fn/invoke?wait=true", {"kwargs": {"tag": "two"}})
    assert st == 200 and c["id"] != a["id"] and c["result"] == "two"


def test_the_key_survives_a_kill9(tmp_path):
    d = Daemon(tmp_path).start()
    st, a = post(d, "crash", seconds=30)
    assert st == 202
    d.wait_status(a["id"], ["running"])
    d.kill9()
    d.start()
    try:
        st, b = post(d, "crash", seconds=0)
        assert b["id"] == a["id"], (a, b)
        assert listed(d) == [a["id"]]
    finally:
        d.stop()
