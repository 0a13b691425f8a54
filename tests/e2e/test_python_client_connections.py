"""pysprinter.Client keeps its HTTP/1.1 connections alive (docs/python.md
"Connections"): sequential calls share one, threads never share one at the
same time, a connection the server closed is replaced without running
anything twice, close() closes them. Against a real daemon, and a scripted
server for what a daemon does not do on demand (closing mid-request)."""
import base64
import json
import socket
import sys
import threading
import time
import urllib.error

import pytest

from conftest import ROOT
import daemonlib
from loopback import LoopbackServer, requests_on

sys.path.insert(0, str(ROOT / "python"))
import pysprinter  # noqa: E402

INC = "def f(x: int):\n    return x + 1\n"


@pytest.fixture
def opened(monkeypatch):
    """The sockets pysprinter.Client connects from here on, per port (not
    the test's own calls to the daemon)."""
    made = []
    real = socket.create_connection

    def counting(address, *a, **kw):
        s = real(address, *a, **kw)
        f = sys._getframe(1)
        while f and not f.f_code.co_filename.endswith("pysprinter/client.py"):
            f = f.f_back
        if f:
            made.append((address, s))
        return s
    monkeypatch.setattr(socket, "create_connection", counting)

    def to(port):
        return [s for (host, p), s in made if p == port]
    return to


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("d")
    with daemonlib.Daemon(tmp, sandbox=daemonlib.sandbox_mode(tmp)).serving_function("inc", INC, "inc.py") as d:
        yield d


def client(d, **kw):
    return pysprinter.Client(server=d.url, token=daemonlib.TOKENS["alice"], **kw)


def args_of_runs(d, function):
    """The arguments of each run of the deployed function, sorted."""
    st, out = d.call("GET", f"/v1/functions/{function}/runs")
    assert st == 200, out
    return sorted(r["args"] for r in out["runs"])


def test_sequential_calls_share_one_connection(daemon, opened, tmp_path):
    (tmp_path / "job.py").write_text(INC)
    c = client(daemon)
    for i in range(300):
        assert c.invoke("inc", i) == i + 1
    run = c.submit(str(tmp_path / "job.py"), 41)
    assert c.run(str(tmp_path / "job.py"), 1) == 2
    assert "".join(c.logs(run["id"], follow=False)) == ""
    with pytest.raises(pysprinter.APIError) as e:      # an error answer keeps the connection too
        c.invoke("no-such-function", 1)
    assert e.value.status == 404
    assert c.invoke("inc", 7) == 8
    assert len(opened(daemon.port)) == 1
    c.close()


def test_threads_never_share_a_connection(daemon, opened):
    c = client(daemon)
    bad = []

    def loop(t):
        for i in range(200):
            x = t * 1000 + i
            got = c.invoke("inc", x)
            if got != x + 1:
                bad.append((x, got))
    threads = [threading.Thread(target=loop, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    daemonlib.join(threads)
    assert bad == []
    assert 1 <= len(opened(daemon.port)) <= 8          # one per thread at most, reused
    c.close()


def test_follow_stream_has_its_own_connection(daemon, opened, tmp_path):
    (tmp_path / "tick.py").write_text(
        "import time\ndef f(n: int):\n    for i in range(n):\n"
        "        print(f'tick {i}', flush=True)\n        time.sleep(0.1)\n    return n\n")
    c = client(daemon)
    run = c.submit(str(tmp_path / "tick.py"), 5)
    stream = c.logs(run["id"], follow=True)
    first = next(stream)                           # the stream is open …
    assert [c.invoke("inc", i) for i in range(20)] == list(range(1, 21))   # … and calls go on beside it
    assert (first + "".join(stream)) == "".join(f"tick {i}\n" for i in range(5))
    assert len(opened(daemon.port)) == 2
    c.close()


def test_idle_connection_dropped_by_the_daemon(tmp_path, opened):
    """read_timeout_s: 1 drops the idle connection between two calls: the
    second call opens another, and each call ran once."""
    extra = "server:\n  read_timeout_s: 1\n"
    with daemonlib.Daemon(tmp_path / "d", sandbox=daemonlib.sandbox_mode(tmp_path),
                          config_extra=extra).serving() as d:
        assert d.call("POST", "/v1/functions", {"name": "inc2", "source": INC})[0] in (200, 201)
        c = client(d)
        assert c.invoke("inc2", 1) == 2
        time.sleep(2.5)
        assert c.invoke("inc2", 2) == 3
        assert len(opened(d.port)) == 2
        assert args_of_runs(d, "inc2") == [[1], [2]]


def test_daemon_restart_between_two_calls(tmp_path, opened):
    d = daemonlib.Daemon(tmp_path / "d", sandbox=daemonlib.sandbox_mode(tmp_path)).start()
    try:
        assert d.call("POST", "/v1/functions", {"name": "inc3", "source": INC})[0] in (200, 201)
        c = client(d)
        assert c.invoke("inc3", 1) == 2
        assert c.invoke("inc3", 2) == 3
        d.stop()
        d.start(port=d.port)
        assert c.invoke("inc3", 3) == 4                # the old connection is gone: a new one, once
        assert len(opened(d.port)) == 2
        assert args_of_runs(d, "inc3") == [[1], [2], [3]]
        c.close()
    finally:
        d.stop()


def test_close_closes_the_sockets(daemon, opened):
    c = client(daemon)
    threads = [threading.Thread(target=lambda: [c.invoke("inc", i) for i in range(20)]) for _ in range(3)]
    for t in threads:
        t.start()
    daemonlib.join(threads)
    socks = opened(daemon.port)
    assert socks and all(s.fileno() >= 0 for s in socks)
    c.close()
    assert all(s.fileno() == -1 for s in socks)
    assert c.invoke("inc", 1) == 2                     # usable after close: it connects again
    with client(daemon) as c2:
        assert c2.invoke("inc", 2) == 3
    assert all(s.fileno() == -1 for s in opened(daemon.port)[len(socks) + 1:])
    c.close()


# ---- a scripted server ------------------------------------------------------


class Scripted(LoopbackServer):
    """A loopback HTTP server whose n-th request (counted over all
    connections) gets ACTIONS[n]: "answer" (200, kept alive), "close"
    (200 with Connection: close, then closed), "fin" (200 as if kept alive,
    then closed: an idle timeout of zero), "drop" (the request read
    whole, then closed unanswered: the daemon died after reading it),
    "reset" (closed with RST after the headers, the body unread: the server
    never had the request). Records each request it read whole."""

    def __init__(self, actions, default="answer"):
        self.actions, self.default = list(actions), default
        self.seen, self.lock, self.n = [], threading.Lock(), 0
        super().__init__()

    def serve(self, s):
        action = None

        def at_head(line, headers):
            nonlocal action
            with self.lock:
                action = self.actions[self.n] if self.n < len(self.actions) else self.default
                self.n += 1
            if action == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return False
            return True
        with s:
            for line, headers, body in requests_on(s, at_head):
                self.seen.append((line, headers, len(body)))
                if action == "drop":
                    return
                args = json.loads(body).get("args", [0]) if body else [0]
                answer = json.dumps({"id": "r1", "status": "succeeded", "result": args[0] + 1}).encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                          % (len(answer), b"Connection: close\r\n" if action == "close" else b"") + answer)
                if action in ("close", "fin"):
                    return


def test_server_closing_after_each_answer():
    srv = Scripted([], default="close")
    try:
        c = pysprinter.Client(server=srv.url, token="t")
        assert [c.invoke("f", i) for i in range(20)] == list(range(1, 21))
        assert srv.connections == 20 and len(srv.seen) == 20
    finally:
        srv.stop()


def test_server_closing_kept_alive_connections_unannounced(monkeypatch):
    """Each answer says nothing, then the server closes: the client sees
    the closed connection before it sends anything on it (a request sent
    whole on it could not be sent again: the run may have started) and
    connects again."""
    failed_sends = []
    real_sendall = socket.socket.sendall
    srv = Scripted([], default="fin")

    def sendall(self, data, *a):
        try:
            return real_sendall(self, data, *a)
        except OSError as e:
            if self.getsockname()[1] != srv.port:      # the client's, not the server's
                failed_sends.append(e)
            raise
    monkeypatch.setattr(socket.socket, "sendall", sendall)
    try:
        c = pysprinter.Client(server=srv.url, token="t")
        for i in range(20):
            assert c.invoke("f", i) == i + 1
            time.sleep(0.02)                            # the server's FIN arrives
        assert srv.connections == 20 and len(srv.seen) == 20
        assert failed_sends == []
    finally:
        srv.stop()


def test_answer_lost_after_the_request_was_read_is_not_sent_again():
    """A kept-alive connection closed after the server read the invoke (it
    may have started the run): the client raises, it does not invoke twice;
    a GET in the same place is sent again on a new connection."""
    srv = Scripted(["answer", "drop", "answer", "drop"])
    try:
        c = pysprinter.Client(server=srv.url, token="t")
        assert c.invoke("f", 1) == 2
        with pytest.raises(ConnectionError):
            c.invoke("f", 2)
        assert [ln for ln, _, _ in srv.seen].count("POST /v1/functions/f/invoke?wait=true&timeout=599 HTTP/1.1") == 2
        assert c.invoke("f", 3) == 4                   # a new connection
        st, run = c._call("GET", "/v1/runs/r1")        # read whole, dropped, sent again
        assert st == 200 and [ln.split()[0] for ln, _, _ in srv.seen] == ["POST", "POST", "POST", "GET", "GET"]
        assert srv.connections == 3
    finally:
        srv.stop()


def test_request_refused_while_sent_is_sent_again(tmp_path):
    """The server resets a kept-alive connection before reading a submit's
    body: the submit is sent again, once, on a new connection."""
    srv = Scripted(["answer", "reset"])
    big = tmp_path / "big.py"
    big.write_text("X = '" + "x" * (16 << 20) + "'\ndef f(x):\n    return x\n")
    try:
        c = pysprinter.Client(server=srv.url, token="t")
        assert c.invoke("f", 1) == 2
        assert c.submit(str(big), 5)["status"] == "succeeded"
        assert [(ln, n > 16 << 20) for ln, _, n in srv.seen] == [
            ("POST /v1/functions/f/invoke?wait=true&timeout=599 HTTP/1.1", False), ("POST /v1/runs HTTP/1.1", True)]
        assert srv.connections == 2
    finally:
        srv.stop()


def test_a_fresh_connection_is_never_retried():
    srv = Scripted(["drop", "reset"])
    try:
        c = pysprinter.Client(server=srv.url, token="t")
        with pytest.raises(ConnectionError):
            c._call("GET", "/v1/runs/r1")
        assert len(srv.seen) == 1
    finally:
        srv.stop()
    c = pysprinter.Client(server=f"http://127.0.0.1:{daemonlib.free_port()}", token="t")
    with pytest.raises(urllib.error.URLError):         # refused: as urllib raised it
        c.invoke("f", 1)


def test_http_proxy_from_the_environment(monkeypatch):
    """$http_proxy is honoured as urllib did (absolute URL, credentials as
    Proxy-Authorization), over one kept-alive connection; $no_proxy
    bypasses it."""
    srv = Scripted([])
    try:
        monkeypatch.setenv("http_proxy", f"http://u%40x:p@127.0.0.1:{srv.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        c = pysprinter.Client(server="http://daemon.invalid:8080", token="t")
        assert [c.invoke("f", i) for i in range(3)] == [1, 2, 3]
        line, headers, _ = srv.seen[0]
        assert line == "POST http://daemon.invalid:8080/v1/functions/f/invoke?wait=true&timeout=599 HTTP/1.1"
        assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"u@x:p").decode()
        assert headers["host"] == "daemon.invalid:8080"
        assert srv.connections == 1
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        c = pysprinter.Client(server=srv.url, token="t")
        assert c.invoke("f", 9) == 10
        assert srv.seen[-1][0] == "POST /v1/functions/f/invoke?wait=true&timeout=599 HTTP/1.1"
    finally:
        srv.stop()


def test_https_verifies_the_certificate_and_keeps_alive(tmp_path, monkeypatch):
    """https:// as urllib: the default SSL context (an unknown certificate
    is refused with URLError), then one kept-alive TLS connection."""
    import shutil
    import ssl
    import subprocess
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    srv = Scripted([])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    plain = srv.serve

    def serve(s):
        try:
            s = ctx.wrap_socket(s, server_side=True)
        except (ssl.SSLError, OSError):                # the refused handshake
            s.close()
            return
        plain(s)
    srv.serve = serve
    try:
        url = f"https://localhost:{srv.port}"
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            pysprinter.Client(server=url, token="t").invoke("f", 1)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with pysprinter.Client(server=url, token="t") as c:
            assert [c.invoke("f", i) for i in range(5)] == [1, 2, 3, 4, 5]
        assert srv.connections == 2 and len(srv.seen) == 5
    finally:
        srv.stop()


# ---- Idempotency-Key ----------------------------------------------------------


def test_idempotency_key_names_one_run(daemon, tmp_path):
    """submit/run/invoke with idempotency_key=: a repeat of the key is the
    first run (its id, its value), another key a new one (docs/python.md)."""
    # A file name no other test of this module's daemon runs: the count
    # below is of this test's runs alone, however many came before.
    (tmp_path / "idem_job.py").write_text(INC)
    job = str(tmp_path / "idem_job.py")
    c = client(daemon)
    a = c.submit(job, 1, idempotency_key="py-submit-1")
    b = c.submit(job, 2, idempotency_key="py-submit-1")
    assert a["id"] == b["id"]
    assert c.run(job, 5, idempotency_key="py-run-1") == 6
    assert c.run(job, 9, idempotency_key="py-run-1") == 6           # the first run's value
    assert c.run(job, 9, idempotency_key="py-run-2") == 10
    assert c.invoke("inc", 1, idempotency_key="py-inv-1") == 2
    assert c.invoke("inc", 5, idempotency_key="py-inv-1") == 2
    st, out = daemon.call("GET", "/v1/runs?limit=100")
    assert st == 200
    assert sum(r["args"] in ([1], [2]) and r.get("filename") == "idem_job.py" for r in out["runs"]) == 1
    assert [1] in args_of_runs(daemon, "inc") and [5] not in args_of_runs(daemon, "inc")


@pytest.mark.parametrize("key", ["", "x" * 201, "two words", "caf\u00e9", 42])
def test_a_bad_idempotency_key_is_refused_before_sending(key):
    srv = Scripted([])
    try:
        c = pysprinter.Client(server=srv.url, token="t")
        for call in (lambda: c.invoke("f", 1, idempotency_key=key),
                     lambda: c.run(__file__, idempotency_key=key),
                     lambda: c.submit(__file__, idempotency_key=key)):
            with pytest.raises(ValueError, match=r"1\.\.200 visible ASCII characters \(no spaces\)"):
                call()
        assert srv.seen == []
    finally:
        srv.stop()


def test_answer_lost_with_an_idempotency_key_is_sent_again():
    """The place where a keyed invoke differs: read whole, dropped before
    any answer, it is sent again on a new connection (the daemon answers
    the repeat with the first run), with its key."""
    srv = Scripted(["answer", "drop", "answer"])
    try:
        c = pysprinter.Client(server=srv.url, token="t")
        assert c.invoke("f", 1) == 2
        assert c.invoke("f", 2, idempotency_key="k-1") == 3
        posts = [(ln, h.get("idempotency-key")) for ln, h, _ in srv.seen]
        assert posts[1:] == [("POST /v1/functions/f/invoke?wait=true&timeout=599 HTTP/1.1", "k-1")] * 2
        assert srv.connections == 2
    finally:
        srv.stop()
