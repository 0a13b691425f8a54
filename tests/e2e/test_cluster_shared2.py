"""Cluster mode, shared state (docs/cluster.md), part 2: a function's URL,
the runs event stream and a dataset's usage, through gateways other than
the one that made them. A real redis-server with AOF on (test_cluster's
fixtures), 2-3 pysprinterd nodes on loopback."""
import json
import threading
import time

from daemonlib import TOKENS
from test_cluster import nodes, node_of, pytestmark, redis, wait_until  # noqa: F401 (fixtures)

ECHO = """
import json
def echo(event, context):
    return {"statusCode": 200, "body": json.dumps({"path": event["rawPath"]})}
"""


def test_a_function_url_made_through_one_gateway_is_served_by_every_gateway(nodes, redis):
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker")
    st, b = g1.call("POST", "/v1/functions", {"name": "echo", "source": ECHO, "url": "public"})
    assert st == 201 and b["url"] == {"path": "/fn/alice/echo", "public": True}, b
    # Redis holds it: no gateway's SQLite is the truth.
    assert redis.cli("HGET", "ps:fn:alice:echo", "url") == "2"
    for gw in (g1, g2):
        st, f = gw.call("GET", "/v1/functions/echo")
        assert st == 200 and f["url"] == {"path": "/fn/alice/echo", "public": True}, (gw, f)
        st, h, body = gw.request("GET", "/fn/alice/echo/a/b", token=None)
        assert st == 200 and json.loads(body) == {"path": "/a/b"}, (gw, st, body)

    # A redeploy through g2 that says nothing keeps it; one that makes it
    # token-only is seen by g1.
    st, b = g2.call("POST", "/v1/functions", {"name": "echo", "source": ECHO})
    assert st == 201 and b["version"] == 2 and b["url"]["public"] is True, b
    st, b = g2.call("POST", "/v1/functions", {"name": "echo", "source": ECHO, "url": True})
    assert st == 201 and b["url"] == {"path": "/fn/alice/echo", "public": False}, b
    st, _, _ = g1.request("GET", "/fn/alice/echo/x", token=None)
    assert st == 401
    st, _, body = g1.request("GET", "/fn/alice/echo/x")
    assert st == 200 and json.loads(body) == {"path": "/x"}, body

    # Removed through g1 (url false): gone on g2; deleted with its function.
    st, b = g1.call("POST", "/v1/functions", {"name": "echo", "source": ECHO, "url": False})
    assert st == 201 and b["url"] is None, b
    st, _, _ = g2.request("GET", "/fn/alice/echo/x")
    assert st == 404
    st, b = g2.call("POST", "/v1/functions", {"name": "echo", "source": ECHO, "url": "public"})
    assert st == 201
    st, _ = g2.call("DELETE", "/v1/functions/echo")
    assert st == 200
    assert redis.cli("EXISTS", "ps:fn:alice:echo") == "0"
    # Not public any more: anyone but the tenant gets the same 401 as for
    # any name (docs/endpoints.md); the tenant learns it is gone.
    st, _, _ = g1.request("GET", "/fn/alice/echo/x", token=None)
    assert st == 401
    st, _, _ = g1.request("GET", "/fn/alice/echo/x")
    assert st == 404


class EventReader:
    """GET /v1/events on a node, read on a thread: its `run` events."""

    def __init__(self, gw, token="alice"):
        self.events, self.c = [], gw.conn(timeout=90)
        self.c.request("GET", "/v1/events", headers={"Authorization": "Bearer " + TOKENS[token]})
        r = self.c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream", r.status
        self.t = threading.Thread(target=self._read, args=(r,), daemon=True)
        self.t.start()

    def _read(self, r):
        event, data = None, []
        try:
            for line in iter(r.readline, b""):
                line = line.decode().rstrip("\n")
                if line == "":
                    if event == "run":
                        self.events.append(json.loads("\n".join(data)))
                    event, data = None, []
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        except (OSError, ValueError, AttributeError):  # closed under it
            pass

    def statuses(self, rid):
        return [e["status"] for e in self.events if e["id"] == rid]

    def close(self):
        self.c.close()


SLEEPY = """
import time
def f(s: float = 1):
    time.sleep(s)
    return s
"""


def test_events_show_the_tenants_runs_whichever_node_accepted_and_ran_them(nodes, redis):
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker")
    on_g1, on_g2 = EventReader(g1), EventReader(g2)
    bob = EventReader(g2, token="bob")
    try:
        time.sleep(0.5)
        st, b = g1.run(SLEEPY, wait=False, kwargs={"s": 1.5})
        assert st == 202, b
        rid = b["id"]
        ended = g2.wait_status(rid, ["succeeded", "failed", "error", "lost"], timeout=60)
        assert ended["status"] == "succeeded" and node_of(redis, rid) == "w1", ended
        # Both gateways' streams, the accepting one's and the other's, show
        # the run running on w1 and then its end, with its result.
        for ev in (on_g1, on_g2):
            wait_until(lambda: "succeeded" in ev.statuses(rid), 10, f"the end of {rid} on the stream")
            seen = ev.statuses(rid)
            assert "running" in seen and seen[-1] == "succeeded", seen
            last = [e for e in ev.events if e["id"] == rid][-1]
            assert last["result"] == 1.5, last
        # Another tenant's stream shows none of it.
        assert bob.statuses(rid) == []
    finally:
        for ev in (on_g1, on_g2, bob):
            ev.close()


def test_dataset_usage_is_refused_clearly_in_cluster_mode(nodes, redis):
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    st, b = g1.call("PUT", "/v1/data/x?filename=x.txt", raw=b"hello",
                    headers={"Content-Type": "application/octet-stream"})
    assert st == 201, b
    # The dataset is the cluster's (g2 lists it); its usage is not
    # recorded in cluster mode: a clear 501 on every gateway, never an
    # empty 200 nor a 404 for a dataset that exists.
    for gw in (g1, g2):
        st, lst = gw.call("GET", "/v1/data")
        assert st == 200 and [d["name"] for d in lst["datasets"]] == ["x"], lst
        st, b = gw.call("GET", "/v1/data/x/usage")
        assert st == 501 and b["error"]["code"] == "not_implemented", (gw, st, b)
        assert "cluster mode" in b["error"]["message"], b
    # An unknown dataset is still a 404.
    st, b = g2.call("GET", "/v1/data/nope/usage")
    assert st == 404, b


OUTCOME = """
def f(fail: bool = False):
    if fail:
        raise ValueError("no")
    return "ok"
"""


def test_the_status_filter_finds_a_failed_run_behind_newer_successes_in_a_cluster(nodes, redis):
    """?status= on the cluster path looks among all the tenant's runs in
    Redis (search.lua), not among the newest limit: ?status=failed&limit=1 is
    the failed run even after newer successes, through either gateway; a
    set of states (?status=killed,failed) is filtered the same way."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker")
    st, bad = g1.run(OUTCOME, kwargs={"fail": True})
    assert st == 200 and bad["status"] == "failed", bad
    ok = []
    for gw in (g1, g2, g1):
        st, b = gw.run(OUTCOME)
        assert st == 200 and b["status"] == "succeeded", b
        ok.append(b["id"])
    for gw in (g1, g2):
        st, lst = gw.call("GET", "/v1/runs?status=failed&limit=1")
        assert st == 200 and [r["id"] for r in lst["runs"]] == [bad["id"]], lst
        st, lst = gw.call("GET", "/v1/runs?status=killed,failed&limit=5")
        assert st == 200 and [r["id"] for r in lst["runs"]] == [bad["id"]], lst
        st, lst = gw.call("GET", "/v1/runs?status=succeeded,failed&limit=2")
        assert st == 200 and [r["id"] for r in lst["runs"]] == ok[::-1][:2], lst
        st, lst = gw.call("GET", "/v1/runs?status=failed&limit=1", token="bob")
        assert st == 200 and lst["runs"] == [], lst
        st, b = gw.call("GET", "/v1/runs?status=failed,nope")
        assert st == 400 and "unknown status 'nope'" in b["error"]["message"], b



def test_the_dag_status_filter_finds_a_failed_dag_run_behind_newer_successes_in_a_cluster(nodes, redis):
    """GET /v1/dags?status= in a cluster: the same search among a tenant's
    newest DAG runs in Redis, one state or several, through either
    gateway."""
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker")
    pipeline = "tasks:\n  a: {file: t.py, function: f, kwargs: {fail: %s}}\n"
    ids = []
    for gw, fail in ((g1, "true"), (g2, "false"), (g1, "false")):
        st, b = gw.call("POST", "/v1/dags?wait=true", {"pipeline": pipeline % fail, "files": {"t.py": OUTCOME},
                                                        "no_cache": True})
        assert st == 200 and b["status"] == ("failed" if fail == "true" else "succeeded"), b
        ids.append(b["id"])
    for gw in (g1, g2):
        st, lst = gw.call("GET", "/v1/dags?status=failed&limit=1")
        assert st == 200 and [g["id"] for g in lst["dags"]] == [ids[0]], lst
        st, lst = gw.call("GET", "/v1/dags?status=cancelled,failed")
        assert st == 200 and [g["id"] for g in lst["dags"]] == [ids[0]], lst
        st, lst = gw.call("GET", "/v1/dags?status=succeeded,failed&limit=3")
        assert st == 200 and [g["id"] for g in lst["dags"]] == ids[::-1], lst
        st, b = gw.call("GET", "/v1/dags?status=lost")
        assert st == 400 and "unknown status 'lost' (validating, running," in b["error"]["message"], b
