"""Cluster mode under failures, fourth pass (docs/cluster.md): a node that
cannot reach Redis answers 503 with Retry-After (nothing was done: ask
again) wherever its answer depends on Redis, never a 401 or 404 a client
takes as final. A real redis-server with AOF (test_cluster's fixture),
nodes on loopback."""
import hashlib
import json
import os
import socket
import threading
import time

from clusterlib import wait_until
from daemonlib import TOKENS, Daemon
from test_cluster import nodes, pytestmark, redis  # noqa: F401 (skips without the daemon or redis-server; fixtures)
from test_explore_clustersecrets import DIGEST, share_key
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
    the API, and is still there once Redis is back. A cluster's sessions
    are Redis's, so a login with a config token is 503 too (before the
    sessions moved to Redis it went on, a session of that node only).
    Before: the login was
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
    # The config's tokens need no Redis, but a cluster's sessions are
    # Redis's (test_explore_cluster5.py): their login is 503 too.
    st, hdrs, body = login(gw, TOKENS["admin"])
    assert (st, json.loads(body)["error"]["code"], hdrs.get("retry-after")) == (503, "redis_unreachable", "5"), \
        (st, hdrs, body)
    redis.start()
    wait_until(lambda: gw.request("GET", "/ui/session", token=None, headers=cookie)[0] == 200, 60,
               "the session served again")
    st, _, body = gw.request("GET", "/ui/session", token=None, headers=cookie)
    assert json.loads(body)["tenant"] == "alice", body
    st, _, body = gw.request("GET", "/v1/functions", token=None, headers=cookie)
    assert st == 200, body


class Blip:
    """A unix-socket proxy to Redis for one node that, once armed, cuts
    that node from Redis (its connections closed, new ones refused) the
    moment it sends a command naming `trigger`, for `seconds` (None: until
    restore()): a Redis blip at exactly that point of the node's work."""

    def __init__(self, redis, path, trigger, seconds=1.0):
        self.target, self.path, self.trigger, self.seconds = redis.sock, str(path), trigger, seconds
        self.armed = self.fired = False
        self.down = threading.Event()
        self.conns = []
        self.lock = threading.Lock()
        self.stop = False
        self.listener = self._listen()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "unix:" + self.path

    def _listen(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX)
        s.bind(self.path)
        s.listen(64)
        s.settimeout(0.05)
        return s

    def _accept(self):
        while not self.stop:
            with self.lock:
                if not self.down.is_set() and not self.listener:
                    self.listener = self._listen()
                listener = self.listener
            if not listener:
                time.sleep(0.05)
                continue
            try:
                c, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            u = socket.socket(socket.AF_UNIX)
            u.connect(self.target)
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    def _pipe(self, src, dst, from_node):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_node and self.armed and not self.fired and self.trigger in data:
                    self.fired = True
                    self._cut()
                    return
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _cut(self):
        self.down.set()
        with self.lock:
            # Refused from now: the socket file stays, nobody listens on it.
            self.listener.close()
            self.listener = None
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns = []
        if self.seconds is not None:
            threading.Timer(self.seconds, self.restore).start()

    def restore(self):
        """Lets the node reach Redis again."""
        self.down.clear()

    def close(self):
        self.stop = True
        self.thread.join()
        if self.listener:
            self.listener.close()


def test_a_redis_blip_as_a_worker_opens_a_runs_secrets_does_not_fail_the_run(tmp_path, nodes, redis):
    """A worker claims and starts a run that names a secret; as it opens
    the secret (sealed, in Redis) it loses Redis for a second. That is no
    answer about the secret: the worker asks again once Redis is back and
    the run succeeds with the value. Before, the run ended at once with
    SecretError "secret 'CS_TOKEN' cannot be opened: Connection refused"."""
    g1 = nodes("g1", "gateway")
    share_key(tmp_path, "g1", "w1")
    blip = Blip(redis, tmp_path / "blip.sock", b"ps:sec:alice")
    try:
        nodes("w1", "worker", slots=1, redis_url=blip.url)
        value = "v-" + hashlib.sha256(b"x").hexdigest()[:16]
        st, b = g1.call("PUT", "/v1/secrets/CS_TOKEN", {"value": value})
        assert st == 200, b
        blip.armed = True
        st, b = g1.run(DIGEST, secrets=["CS_TOKEN"])
        assert blip.fired, "the worker never read its secret through the proxy"
        assert st == 200 and b["status"] == "succeeded", b
        assert b["result"] == hashlib.sha256(value.encode()).hexdigest(), b
        assert b["attempt"] == 1, b
        log = (tmp_path / "w1" / "daemon.log").read_text()
        assert "secret 'CS_TOKEN' cannot be opened" in log and "did not answer); asking again" in log, log
    finally:
        blip.close()


def token_ids(d):
    st, b = d.call("GET", "/v1/tokens", token="admin")
    assert st == 200, b
    return {t["id"] for t in b["tokens"]}


def test_an_expired_token_is_deleted_from_the_database(tmp_path):
    """A token made with `expires` is deleted by the daemon's collector once
    it has expired (its row gone; a token without expiry stays). Before,
    expired rows stayed in the tokens table for ever."""
    d = Daemon(tmp_path / "d", config_extra="retention:\n  interval_s: 1\n")
    with d.serving():
        st, short = d.call("POST", "/v1/tokens", {"tenant": "gina", "expires": "2s"}, token="admin")
        assert st == 201, short
        st, kept = d.call("POST", "/v1/tokens", {"tenant": "gina"}, token="admin")
        assert st == 201, kept
        assert d.call("GET", "/v1/runs", token=short["token"])[0] == 200
        assert {short["id"], kept["id"]} <= token_ids(d)
        wait_until(lambda: short["id"] not in token_ids(d), 30, "the expired token deleted")
        assert kept["id"] in token_ids(d)
        assert d.call("GET", "/v1/runs", token=short["token"])[0] == 401


def test_an_expired_token_leaves_redis(cluster, redis):
    """In a cluster a token made with `expires` lives in Redis until then
    only: its key expires with it (PEXPIREAT), and its id leaves the id
    index at the next token made. Before, both stayed for ever."""
    gw = cluster("gw", "gateway")
    st, short = gw.call("POST", "/v1/tokens", {"tenant": "gina", "expires": "2s"}, token="admin")
    assert st == 201, short
    key = "ps:tok:" + hashlib.sha256(short["token"].encode()).hexdigest()
    ttl = int(redis.cli("PTTL", key))
    assert 0 < ttl <= 2000, ttl
    assert gw.call("GET", "/v1/runs", token=short["token"])[0] == 200
    wait_until(lambda: redis.cli("EXISTS", key) == "0", 30, "the expired token's key gone")
    assert gw.call("GET", "/v1/runs", token=short["token"])[0] == 401
    st, kept = gw.call("POST", "/v1/tokens", {"tenant": "gina"}, token="admin")
    assert st == 201, kept
    assert redis.cli("HKEYS", "ps:tokids").split() == [kept["id"]]
    assert redis.cli("PTTL", "ps:tok:" + hashlib.sha256(kept["token"].encode()).hexdigest()) == "-1"
    assert token_ids(gw) == {kept["id"]}
