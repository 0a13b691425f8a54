"""pysprinter.Client's own HTTP/1.1 transport (docs/python.md
"Connections"): one sendall() per request; answers framed by
Content-Length, chunked (extensions, trailers, any segmentation) or the
connection's end; 1xx skipped; Connection: close honoured; header names
case-insensitive; a cut or malformed answer is an error, never a hang or a
truncated success; https through a proxy's CONNECT tunnel. Against the real
daemon and against loopback servers that send each case byte for byte."""
import base64
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT
import daemonlib
from loopback import LoopbackServer, relay, requests_on

sys.path.insert(0, str(ROOT / "python"))
import pysprinter  # noqa: E402
import pysprinter.client  # noqa: E402

INC = "def f(x: int):\n    return x + 1\n"


def run_json(value):
    return json.dumps({"id": "r1", "status": "succeeded", "result": value}).encode()


def chunked(body, sizes, ext=b"", trailers=b""):
    """body as chunks of these sizes (the last one repeats), each size line
    with ext, then the last chunk and trailers."""
    out, i, k = [], 0, 0
    while i < len(body):
        n = sizes[min(k, len(sizes) - 1)]
        out.append(b"%x%s\r\n%s\r\n" % (len(body[i:i + n]), ext, body[i:i + n]))
        i, k = i + n, k + 1
    return b"".join(out) + b"0" + ext + b"\r\n" + trailers + b"\r\n"


class Server(LoopbackServer):
    """A loopback HTTP server: each request (read whole: head, then a
    Content-Length body) is passed to answer(n, request, sock), n counting
    requests over all connections; answer sends what it likes on sock and
    returns True to read the next request on the same connection, False to
    close it. Records (request line, lower-cased headers, body); wrap, when
    set, wraps each accepted socket (TLS)."""

    def __init__(self, answer):
        self.answer = answer
        self.seen, self.lock, self.wrap = [], threading.Lock(), None
        super().__init__()

    def serve(self, s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.wrap:
            try:
                s = self.wrap(s)
            except (ssl.SSLError, OSError):
                s.close()
                return
        with s:
            for line, headers, body in requests_on(s):
                with self.lock:
                    n = len(self.seen)
                    self.seen.append((line, headers, body))
                try:
                    if not self.answer(n, (line, headers, body), s):
                        return
                except OSError:
                    return


@pytest.fixture
def serve():
    servers = []

    def start(answer):
        srv = Server(answer)
        servers.append(srv)
        return srv
    yield start
    for srv in servers:
        srv.stop()


def client(url, **kw):
    return pysprinter.Client(server=url, token="t", timeout=5, **kw)


def arg(request):
    return json.loads(request[2])["args"][0]


def test_chunked_with_extensions_and_trailers(serve):
    def answer(n, req, s):
        body = run_json(arg(req) + 1)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked(body, [3, 7, 1000], ext=b';name="v";x=1',
                            trailers=b"X-Checksum: abc\r\nX-Other:  y \r\n"))
        return True
    srv = serve(answer)
    c = client(srv.url)
    assert [c.invoke("f", i) for i in range(5)] == [1, 2, 3, 4, 5]
    assert srv.connections == 1                        # the trailers were read: the connection was reused


def test_chunked_answer_in_tiny_writes(serve):
    """Head and chunked body sent a few bytes per segment: status line,
    header lines, size lines, CRLFs and trailers all cut anywhere."""
    def answer(n, req, s):
        body = run_json(arg(req) + 1)
        data = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunked(body, [5, 1, 2], ext=b";e=1", trailers=b"T: 1\r\n"))
        for i in range(0, len(data), 3):
            s.sendall(data[i:i + 3])
            if i % 15 == 0:
                time.sleep(0.0005)
        return True
    srv = serve(answer)
    c = client(srv.url)
    assert [c.invoke("f", i) for i in range(3)] == [1, 2, 3]
    assert srv.connections == 1


def test_interim_1xx_answers_are_skipped(serve):
    def answer(n, req, s):
        body = run_json(arg(req) + 1)
        s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.01)
        s.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
                  b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True
    srv = serve(answer)
    c = client(srv.url)
    assert [c.invoke("f", i) for i in range(3)] == [1, 2, 3]
    assert srv.connections == 1


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_body_up_to_the_connections_end(serve, version):
    """No Content-Length, no chunked: the body is what comes before the
    server closes, and the connection is not reused."""
    def answer(n, req, s):
        body = run_json(arg(req) + 1)
        s.sendall(version + b" 200 OK\r\nContent-Type: application/json\r\n\r\n" + body[:5])
        time.sleep(0.01)
        s.sendall(body[5:])
        return False
    srv = serve(answer)
    c = client(srv.url)
    assert [c.invoke("f", i) for i in range(3)] == [1, 2, 3]
    assert srv.connections == 3


def test_connection_close_is_honoured(serve, monkeypatch):
    """An answer with Connection: close (in any case) ends its connection:
    the next call opens a new one; it is never written to again."""
    def answer(n, req, s):
        body = run_json(arg(req) + 1)
        s.sendall(b"HTTP/1.1 200 OK\r\nconnection:  Close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.2)                                # the closing socket stays open a while
        return False
    # Not noticed as closed before use: only the answer's header says so.
    monkeypatch.setattr(pysprinter.client, "_unusable", lambda sock: False)
    srv = serve(answer)
    c = client(srv.url)
    assert [c.invoke("f", i) for i in range(3)] == [1, 2, 3]
    assert srv.connections == 3 and len(srv.seen) == 3


def test_header_names_any_case_repeated_and_spaced(serve):
    """Retry-After sent as "retry-AFTER:   0  " still drives the 429 retry;
    repeated fields are all kept, get() gives the first; a folded line is
    joined."""
    def answer(n, req, s):
        if n == 0:
            body = b'{"error": {"code": "busy", "message": "later"}}'
            s.sendall(b"HTTP/1.1 429 Too Many Requests\r\nretry-AFTER:   0  \r\nCONTENT-length: %d\r\n\r\n%s"
                      % (len(body), body))
            return True
        body = run_json(arg(req) + 1) if req[2] else b"{}"
        s.sendall(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a:2\r\nX-Fold: one\r\n  two\r\n"
                  b"Content-Length:\t%d\t\r\n\r\n%s" % (len(body), body))
        return True
    srv = serve(answer)
    c = client(srv.url)
    assert c.invoke("f", 1) == 2
    assert len(srv.seen) == 2 and srv.connections == 1
    status, headers, raw = c._request("GET", "/v1/x")
    assert (status, raw) == (200, b"{}")
    assert headers.get("X-A") == headers["x-A"] == "1" and headers.get_all("X-a") == ["1", "2"]
    assert headers.get("x-fold") == "one two" and headers.get("content-LENGTH") == "2"
    assert headers.get("Missing") is None and headers.get("Missing", "d") == "d" and "x-a" in headers


@pytest.mark.parametrize("cut", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b'{"id": "r1", "st',
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" + b'{"id": "r1", "st',
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(run_json(1), [4])[:-7],
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(run_json(1), [4])[:-5],
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(run_json(1), [4], trailers=b"T: 1\r\n")[:-2],
    b"HTTP/1.1 200 OK\r\nContent-Le",
], ids=["content-length", "in-a-chunk", "before-a-chunks-end", "before-the-last-chunk", "in-the-trailers",
        "in-the-head"])
def test_server_closing_mid_answer_is_a_connection_error(serve, cut):
    """Not a hang, not a truncated success: ConnectionError (also an
    http.client.RemoteDisconnected, as before)."""
    srv = serve(lambda n, req, s: s.sendall(cut) and False)
    c = client(srv.url)
    t = time.monotonic()
    with pytest.raises(ConnectionError) as e:
        c.invoke("f", 1)
    assert isinstance(e.value, http.client.RemoteDisconnected)
    assert time.monotonic() - t < 3 and len(srv.seen) == 1   # a POST sent whole is not sent again


@pytest.mark.parametrize("answer,what", [
    (b"HTTP/1.1 OK\r\n\r\n", "malformed status line"),
    (b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n", "malformed status line"),
    (b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "malformed status line"),
    (b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\nBad Header: 1\r\nContent-Length: 0\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "Content-Lengths that differ"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", "malformed chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n", "malformed chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX\r\n0\r\n\r\n", "does not end with CRLF"),
], ids=["no-code", "not-http", "not-http-1", "http-2", "code", "space-in-name", "no-colon", "length", "two-lengths", "chunk-size",
        "chunk-0x", "chunk-end"])
def test_malformed_answer_is_a_clear_error(serve, answer, what):
    srv = serve(lambda n, req, s: s.sendall(answer) or time.sleep(0.5))
    c = client(srv.url)
    with pytest.raises(http.client.HTTPException, match=what):
        c.invoke("f", 1)
    assert len(srv.seen) == 1


def test_stale_connection_met_after_the_check(serve, monkeypatch):
    """The server closes the idle connection and the client does not notice
    before use (_unusable answers "usable"): a GET meets the closed
    connection and is sent again on a new one; an unkeyed POST, sent whole,
    is not sent again (ConnectionError); a keyed one is."""
    def answer(n, req, s):
        body = run_json(arg(req) + 1) if req[2] else b"{}"
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return False                                   # closed without saying so
    monkeypatch.setattr(pysprinter.client, "_unusable", lambda sock: False)
    srv = serve(answer)
    c = client(srv.url)
    assert c._call("GET", "/v1/runs/r1") == (200, {})
    time.sleep(0.05)
    assert c._call("GET", "/v1/runs/r1") == (200, {})   # stale, sent again on a new connection
    assert srv.connections == 2
    time.sleep(0.05)
    with pytest.raises(ConnectionError):
        c.invoke("f", 5)                               # stale, sent whole: not sent again
    assert srv.connections == 2 and [ln.split()[0] for ln, _, _ in srv.seen] == ["GET", "GET"]
    assert c.invoke("f", 6) == 7                       # then a new connection
    time.sleep(0.05)
    assert c.invoke("f", 7, idempotency_key="k") == 8  # stale, keyed: sent again
    assert srv.connections == 4


def test_https_through_a_connect_proxy(serve, tmp_path, monkeypatch):
    """https:// with $https_proxy: a CONNECT tunnel carrying the proxy's
    credentials, then TLS to the daemon's name (the certificate from
    SSL_CERT_FILE, checked for that name), one kept-alive connection."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=daemon.test", "-addext",
                    "subjectAltName=DNS:daemon.test"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))

    def answer(n, req, s):
        body = run_json(arg(req) + 1)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True
    daemon = serve(answer)
    daemon.wrap = lambda s: ctx.wrap_socket(s, server_side=True)

    tunnels = []

    def proxy_answer(n, req, s):
        tunnels.append(req)
        up = socket.create_connection(("127.0.0.1", daemon.port))
        s.sendall(b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n")
        threading.Thread(target=relay, args=(up, s), daemon=True).start()
        relay(s, up)
        return False
    proxy = serve(proxy_answer)
    monkeypatch.setenv("https_proxy", f"http://who:pw@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with client("https://daemon.test:8443") as c:
        assert [c.invoke("f", i) for i in range(3)] == [1, 2, 3]
    line, headers, _ = tunnels[0]
    assert line == "CONNECT daemon.test:8443 HTTP/1.1" and headers["host"] == "daemon.test:8443"
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"who:pw").decode()
    assert len(tunnels) == 1 and [ln for ln, _, _ in daemon.seen] == ["POST /v1/functions/f/invoke?wait=true&timeout=4 HTTP/1.1"] * 3
    assert "proxy-authorization" not in daemon.seen[0][1]      # the credentials stay with the proxy
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(pysprinter.client.urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        client("https://daemon.test:8443").invoke("f", 1)


def test_proxy_refusing_the_tunnel(serve, monkeypatch):
    srv = serve(lambda n, req, s: s.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                            b"Content-Length: 0\r\n\r\n") or True)
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{srv.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(pysprinter.client.urllib.error.URLError, match="407"):
        client("https://daemon.test").invoke("f", 1)


# ---- against the real daemon ----------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("d")
    with daemonlib.Daemon(tmp, sandbox=daemonlib.sandbox_mode(tmp)).serving_function("inc", INC, "inc.py") as d:
        yield d


def test_one_sendall_per_request_to_the_daemon(daemon, monkeypatch, tmp_path):
    """Each request leaves in one sendall() (request line, headers and body:
    one segment, one wakeup of the daemon); the answers, of every framing
    the daemon uses (a JSON body, an SSE stream), read whole."""
    sends = []
    real = socket.socket.sendall

    def sendall(self, data, *a):
        if self.getpeername()[1] == daemon.port:
            sends.append(bytes(data))
        return real(self, data, *a)
    monkeypatch.setattr(socket.socket, "sendall", sendall)
    c = pysprinter.Client(server=daemon.url, token=daemonlib.TOKENS["alice"])
    assert [c.invoke("inc", i) for i in range(20)] == list(range(1, 21))
    assert len(sends) == 20
    assert all(s.startswith(b"POST /v1/functions/inc/invoke?wait=true&timeout=599 HTTP/1.1\r\n") and s.endswith(b"]}")
               for s in sends)
    (tmp_path / "tick.py").write_text(
        "import time\ndef f(n: int):\n    for i in range(n):\n"
        "        print(f'tick {i}', flush=True)\n        time.sleep(0.05)\n    return n\n")
    run = c.submit(str(tmp_path / "tick.py"), 4)
    assert "".join(c.logs(run["id"], follow=True)) == "".join(f"tick {i}\n" for i in range(4))
    status, headers, raw = c._request("GET", f"/v1/runs/{run['id']}")
    assert status == 200 and headers.get("content-type") == headers.get("CONTENT-TYPE")
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(raw)["id"] == run["id"]
    c.close()


def test_streamed_body_read_line_by_line(serve):
    """A stream (as logs(follow=True) reads one): lines cut across chunks
    and segments, a 1 MiB line, a last line without its LF, all whole and in
    order; the stream's connection is closed at the body's end."""
    lines = [b"event: output\n", b"data: " + b"x" * (1 << 20) + b"\n", b"\n", b"a\n", b"b\n", b"tail"]
    data = b"".join(lines)

    def answer(n, req, s):
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(data), 7000):
            s.sendall(chunked(data[i:i + 7000], [3000])[:-5])   # the pieces, not the last chunk yet
        s.sendall(b"0\r\n\r\n")
        time.sleep(0.5)
        return False
    srv = serve(answer)
    r = client(srv.url)._request("GET", "/v1/runs/r1/logs?follow=1", stream=True)
    with r:
        assert r.status == 200 and r.headers.get("content-type") == "text/event-stream"
        assert list(r) == lines
        assert r.conn.sock is None                     # closed at the body's end, not at the server's


@pytest.mark.parametrize("size", [10, 3 << 20])
def test_content_length_bodies_small_and_large(serve, size):
    """A body read by its Content-Length, in one buffer or (past 1 MiB) in
    pieces as they come; a promised length never sent is a ConnectionError,
    not a buffer of that size."""
    def answer(n, req, s):
        if n == 1:
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n{}")
            return False
        body = json.dumps({"pad": "x" * size}, indent=1).encode()
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:5])
        time.sleep(0.01)
        s.sendall(body[5:])
        return True
    srv = serve(answer)
    c = client(srv.url)
    status, _, raw = c._request("GET", "/x")
    assert status == 200 and len(json.loads(raw)["pad"]) == size
    with pytest.raises(ConnectionError):
        c._request("POST", "/x", {})
    r = client(srv.url)._request("GET", "/x", stream=True)
    with r:
        assert r.readline() == b"{\n" and r.read(3) == b' "p'
        assert r.read() == json.dumps({"pad": "x" * size}, indent=1).encode()[5:]


class _Feed:
    """A socket stand-in giving its bytes a few at a time (random cuts)."""

    def __init__(self, data, rnd):
        self.data, self.rnd = data, rnd

    def recv(self, n):
        k = min(n, self.rnd.randint(1, 40))
        d, self.data = self.data[:k], self.data[k:]
        return d

    def recv_into(self, view):
        d = self.recv(len(view))
        view[:len(d)] = d
        return len(d)


def test_answers_cut_anywhere_and_mangled():
    """The answer parser over random segmentations of good answers (each
    read whole and right) and over 20,000 mangled ones (bytes dropped,
    inserted, changed, the tail cut): only ProtocolError or Disconnected
    ever comes out, never an IndexError, a ValueError or a hang."""
    import random
    good = [
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"result\": 1}",
         b"{\"result\": 1}"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\nT: x\r\n\r\n",
         b"helloabc"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nX: y\r\n  z\r\n\r\nbody to close", b"body to close"),
        (b"HTTP/1.1 429 Too\nRetry-After: 1\nContent-Length: 2\nContent-Length: 2\n\n{}", b"{}"),
    ]
    rnd = random.Random(15)
    for data, body in good:
        for _ in range(200):
            c = pysprinter.client._Conn(("x", 1), None, None, 0)
            c.sock = _Feed(data, rnd)
            assert c.response("POST").read() == body
    errors = set()
    for _ in range(20000):
        data = bytearray(rnd.choice(good)[0])
        for _ in range(rnd.randint(1, 4)):
            op, i = rnd.randint(0, 3), rnd.randrange(len(data) + 1)
            if op == 0:
                del data[i:i + rnd.randint(1, 5)]
            elif op == 1:
                data[i:i] = bytes(rnd.choice(b"\r\n :;0aZ\t\xff\xb2\x00-1") for _ in range(rnd.randint(1, 4)))
            elif op == 2 and i < len(data):
                data[i] = rnd.randrange(256)
            else:
                del data[i:]
        c = pysprinter.client._Conn(("x", 1), None, None, 0)
        c.sock = _Feed(bytes(data), rnd)
        try:
            r = c.response(rnd.choice(["GET", "POST", "HEAD"]))
            r.read() if rnd.random() < 0.5 else list(r)
        except (pysprinter.client.ProtocolError, pysprinter.client.Disconnected) as e:
            errors.add(type(e))
    assert errors == {pysprinter.client.ProtocolError, pysprinter.client.Disconnected}


def test_bytes_after_an_answer_retire_its_connection(serve):
    """An answer followed, in the same segment, by bytes no request asked
    for: the call succeeds, and the connection holding them is not reused
    (the socket is not readable: the bytes are in the client's buffer)."""
    def answer(n, req, s):
        body = run_json(arg(req) + 1)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 200 OK\r\n" % (len(body), body))
        return True
    srv = serve(answer)
    c = client(srv.url)
    assert [c.invoke("f", i) for i in range(3)] == [1, 2, 3]
    assert srv.connections == 3


def top_level(x):
    return x


class Holder:
    def method(self, x):
        return x


@pytest.mark.parametrize("what", ["lambda", "nested", "method", "builtin", "partial"])
def test_a_function_a_run_cannot_call_by_name_is_refused_before_sending(what):
    """A run calls a top-level function of the file by its name. A lambda
    reached the daemon as 400 "'<lambda>' is not a Python identifier", a
    nested function as a run that failed validation ("no top-level function
    'inner'"), a method likewise; the client now says why at once, sending
    nothing (no server is running here)."""
    import functools

    def inner(x):
        return x
    fn = {"lambda": lambda x: x, "nested": inner, "method": Holder().method, "builtin": len,
          "partial": functools.partial(top_level, 1)}[what]
    c = pysprinter.Client(server="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="not a function defined at the top level of a file"):
        c.run(fn, 1)
    # A top-level function is sent as its file and its name.
    src, filename, name = pysprinter.client.Client._source(top_level)
    assert (filename, name) == ("test_python_client_http.py", "top_level") and "def top_level" in src
