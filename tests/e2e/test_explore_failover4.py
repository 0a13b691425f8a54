"""Cluster mode under failures, fourth pass (docs/cluster.md): a node that
cannot reach Redis answers 503 with Retry-After (nothing was done: ask
again) wherever its answer depends on Redis, never a 401 or 404 a client
takes as final. A real redis-server with AOF (test_cluster's fixture),
nodes on loopback."""
import json

from clusterlib import wait_until
from daemonlib import TOKENS
from test_cluster import pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; a fixture)
from test_explore_failover import cluster  # noqa: F401 (a fixture)

ECHO = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hi'}\n"
CSRF = {"X-Pysprinter-CSRF": "1"}


def made_token(gw, tenant="alice"):
    st, b = gw.call("POST", "/v1/tokens", {"tenant": tenant}, token="admin")
    assert st == 201, b
    return b["token"]


def login(gw, token):
    st, hdrs, body = gw.request("POST", "/login", {"token": token}, token=None, headers=CSRF)
    return st, hdrs, body


def test_function_urls_are_503_while_redis_is_away(cluster, redis):
    """/fn/alice/NAME through a gateway cut from Redis: whatever the URL
    (a token one, a public one, a name with none), whatever the token (the
    config's, one made through the API, none), the answer is 503 with
    Retry-After in the function URL's own body. Before: 404 for the
    config's token, 401 for a made one and for a public URL (the URL's
    mode, in Redis, read as "no URL"). Once Redis is back, they serve."""
    gw = cluster("gw", "gateway")
    cluster("w1", "worker")
    for name, url in (("priv", True), ("pub", "public")):
        st, b = gw.call("POST", "/v1/functions", {"name": name, "source": ECHO, "function": "handler", "url": url})
        assert st == 201, b
    tok = made_token(gw)
    redis.kill9()
    for path in ("/fn/alice/priv", "/fn/alice/pub", "/fn/alice/none"):
        for token in ("alice", tok, None):
            st, hdrs, raw = gw.request("GET", path, token=token)
            assert (st, hdrs.get("retry-after")) == (503, "5"), (path, token, st, hdrs, raw)
            b = json.loads(raw)
            assert b["message"] == "Service Unavailable" and b["request_id"].startswith("r"), b
            assert hdrs.get("x-request-id") == b["request_id"], hdrs
    redis.start()
    wait_until(lambda: gw.request("GET", "/fn/alice/none", token="alice")[0] != 503, 60, "the gateway serving again")
    for path, token in (("/fn/alice/priv", "alice"), ("/fn/alice/priv", tok), ("/fn/alice/pub", None)):
        st, _, raw = gw.request("GET", path, token=token)
        assert (st, raw) == (200, b"hi"), (path, st, raw)
    assert gw.request("GET", "/fn/alice/priv", token=None)[0] == 401
    assert gw.request("GET", "/fn/alice/none", token="alice")[0] == 404


def test_dashboard_sessions_of_a_made_token_are_503_while_redis_is_away(cluster, redis):
    """The dashboard on a gateway cut from Redis, with a token made through
    the API (it lives in Redis): its login is 503 redis_unreachable with
    Retry-After; a session made from it before is 503 on /ui/session and on
    the API, and is still there once Redis is back. The config's tokens do
    not need Redis: their login and session go on. Before: the login was
    401 "invalid token", and the session's first request while Redis was
    away removed it (401 "log in again"; /ui/session said not logged in)."""
    gw = cluster("gw", "gateway")
    tok = made_token(gw)
    st, hdrs, body = login(gw, tok)
    assert st == 200, body
    cookie = {"Cookie": hdrs["set-cookie"].split(";")[0]}
    redis.kill9()
    st, hdrs, body = login(gw, tok)
    assert (st, json.loads(body)["error"]["code"], hdrs.get("retry-after")) == (503, "redis_unreachable", "5"), \
        (st, hdrs, body)
    for path in ("/ui/session", "/v1/functions"):
        st, hdrs, body = gw.request("GET", path, token=None, headers=cookie)
        assert (st, json.loads(body)["error"]["code"], hdrs.get("retry-after")) == (503, "redis_unreachable", "5"), \
            (path, st, hdrs, body)
    st, hdrs, body = login(gw, TOKENS["admin"])
    assert st == 200, body
    st, _, body = gw.request("GET", "/ui/session", token=None, headers={"Cookie": hdrs["set-cookie"].split(";")[0]})
    assert st == 200 and json.loads(body)["tenant"] == "ops", body
    redis.start()
    wait_until(lambda: gw.request("GET", "/ui/session", token=None, headers=cookie)[0] == 200, 60,
               "the session served again")
    st, _, body = gw.request("GET", "/ui/session", token=None, headers=cookie)
    assert json.loads(body)["tenant"] == "alice", body
    st, _, body = gw.request("GET", "/v1/functions", token=None, headers=cookie)
    assert st == 200, body
