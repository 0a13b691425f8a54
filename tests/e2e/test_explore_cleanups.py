"""Behaviour that internal clean-ups must keep: the route of a request is
looked up once and reused by every check before its handler (the early
auth of a large body, the streaming-body check, dispatch)."""
import json
import socket

import pytest

from conftest import DAEMON
from daemonlib import TOKENS, Daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

AUTH = f"Authorization: Bearer {TOKENS['alice']}\r\n".encode()
BIG = 70000  # past the early auth check's threshold (64 KiB)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("cleanups")).serving() as daemon:
        yield daemon


def read_answer(s):
    """One HTTP answer (head and Content-Length body) from socket s."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def exchange(d, method, target, who):
    """A request with a large body, sent the curl way (Expect:
    100-continue): -> (the first answer, the final one or None)."""
    head = (f"{method} {target} HTTP/1.1\r\nHost: x\r\n".encode() + who +
            f"Expect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: {BIG}\r\n\r\n".encode())
    with socket.create_connection(("127.0.0.1", d.port), timeout=30) as s:
        s.sendall(head)
        first = read_answer(s)
        if not first.startswith(b"HTTP/1.1 100"):
            return first, None
        s.sendall(b"{}" + b" " * (BIG - 2))
        return first, read_answer(s)


def error_of(answer):
    return json.loads(answer.partition(b"\r\n\r\n")[2])["error"]


def test_early_auth_matches_the_target_as_sent(d):
    # a%2Fb is one segment: the invoke route, which needs a token, so the
    # body is refused unread. Matched on the decoded path (/a/b/), there
    # would be no route and the body would be read first.
    first, final = exchange(d, "POST", "/v1/functions/a%2Fb/invoke", b"")
    assert first.startswith(b"HTTP/1.1 401"), first
    assert final is None
    assert error_of(first)["code"] == "unauthorized"


def test_dispatch_after_the_early_check_takes_the_same_route(d):
    first, final = exchange(d, "POST", "/v1/functions/a%2Fb/invoke", AUTH)
    assert first.startswith(b"HTTP/1.1 100 Continue"), first
    assert final.startswith(b"HTTP/1.1 404"), final
    assert error_of(final)["message"] == "no deployed function 'a/b'", final


def test_a_method_not_allowed_with_a_large_body_is_405_with_its_allow_set(d):
    # Past the early checks (they leave 405 to dispatch()): the Allow set
    # is the one the first lookup found.
    ref_st, ref_h, _ = d.request("PUT", "/v1/runs", token=None)
    first, final = exchange(d, "PUT", "/v1/runs", b"")
    assert first.startswith(b"HTTP/1.1 100 Continue"), first
    assert final.startswith(b"HTTP/1.1 405"), final
    assert ref_st == 405
    allow = [ln.partition(b":")[2].strip().decode() for ln in final.split(b"\r\n") if ln.lower().startswith(b"allow:")]
    assert allow == [ref_h["allow"]], (allow, ref_h)
    assert error_of(final)["code"] == "method_not_allowed"


@pytest.fixture
def tcp_redis(tmp_path):
    from clusterlib import REDIS, Redis
    from daemonlib import free_port
    if not REDIS:
        pytest.skip("redis-server is not installed")
    r = Redis(tmp_path, bind=["127.0.0.1"], port=free_port()).start()
    yield r
    r.stop()


def test_a_gateway_whose_redis_died_right_after_a_command_answers_503(tmp_path, tcp_redis):
    """Redis killed a moment after the gateway's last command on its
    connection (a busy gateway): the next request still finds the close
    (its FIN) before writing, and answers 503 `redis_unreachable` with
    Retry-After (nothing done, ask again), not 502 (sent, may have run).
    Over TCP, where a FIN does not fail a write."""
    gw = Daemon(tmp_path / "gw", args=["--redis", f"redis://127.0.0.1:{tcp_redis.port}", "--role", "gateway",
                                        "--node-id", "gw"])
    with gw.serving(clean_exit=False):
        body = {"source": "def f():\n    return 1\n"}
        st, out = gw.call("POST", "/v1/runs", body)
        assert st == 202, out
        tcp_redis.kill9()
        st, hdrs, raw = gw.request("POST", "/v1/runs", body)
        err = json.loads(raw)["error"]
        assert (st, err["code"], hdrs.get("retry-after")) == (503, "redis_unreachable", "5"), (st, hdrs, raw)


# ---- server.max_connections_per_ip counts each address apart ----------------

def held_get(d, source):
    """A connection from source (a loopback address) and the status line
    of one GET /healthz on it: (socket, status)."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30, source_address=(source, 0))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    return s, read_answer(s).split(b"\r\n", 1)[0].decode()


def test_the_per_address_limit_counts_each_address_and_gives_places_back(tmp_path):
    """Two connections each from 127.0.0.2 and 127.0.0.3 with a limit of
    2: a third from either is 429; one address's connections do not use up
    the other's; the refused ones take no place; a closed one gives its
    place back."""
    from daemonlib import wait_for
    with Daemon(tmp_path / "d", config_extra="""
        server:
          max_connections_per_ip: 2
        """).serving() as d:
        held = []
        try:
            for src in ("127.0.0.2", "127.0.0.3"):
                for _ in range(2):
                    s, status = held_get(d, src)
                    held.append(s)
                    assert status == "HTTP/1.1 200 OK", (src, status)
            for src in ("127.0.0.2", "127.0.0.3", "127.0.0.2"):
                s, status = held_get(d, src)
                assert status == "HTTP/1.1 429 Too Many Requests", (src, status)
                assert s.recv(1) == b""  # closed after the answer
                s.close()
            held.pop(0).close()  # one of 127.0.0.2's

            def place_back():
                s, status = held_get(d, "127.0.0.2")
                if status == "HTTP/1.1 200 OK":
                    held.append(s)
                    return True
                s.close()
                return False
            wait_for(place_back, "127.0.0.2's place back")
            s, status = held_get(d, "127.0.0.3")
            s.close()
            assert status == "HTTP/1.1 429 Too Many Requests", status
        finally:
            for s in held:
                s.close()
