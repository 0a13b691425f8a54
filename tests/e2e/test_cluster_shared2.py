"""Cluster mode, shared state (docs/cluster.md), part 2: a function's URL,
the runs event stream and a dataset's usage, through gateways other than
the one that made them. A real redis-server with AOF on (test_cluster's
fixtures), 2-3 pysprinterd nodes on loopback."""
import json
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
    st, _, _ = g1.request("GET", "/fn/alice/echo/x", token=None)
    assert st == 404
