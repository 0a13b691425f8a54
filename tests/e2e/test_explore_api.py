"""The daemon's HTTP API as a client sees it, beyond the documented happy
paths: query flags and timeouts as HTTP libraries spell them, and typos
that must be errors rather than silent long waits."""
import json
import signal
import socket
import time

import pytest

from conftest import DAEMON
from daemonlib import TOKENS, Daemon, sandbox_mode

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

QUICK = "def f(x: int = 1):\n    return x\n"
SLOW = "import time\ndef slow(s: float = 30):\n    time.sleep(s)\n    return 'done'\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore_api")
    with Daemon(root, sandbox=sandbox_mode(root), config_extra="server:\n  max_wait_s: 3\n").serving() as daemon:
        yield daemon


def bad_request(st, body, words):
    assert st == 400, (st, body)
    assert body["error"]["code"] == "bad_request", body
    assert words in body["error"]["message"], body


@pytest.mark.parametrize("value", ["True", "TRUE", "Yes"])
def test_wait_flag_as_python_http_libraries_spell_it(d, value):
    # requests/httpx send params={"wait": True} as "wait=True": that waits.
    st, out = d.call("POST", f"/v1/runs?wait={value}", {"source": QUICK})
    assert st == 200 and out["status"] == "succeeded", (st, out)


@pytest.mark.parametrize("query", ["wait", "wait=", "wait&timeout=2"])
def test_a_bare_or_empty_wait_flag_waits(d, query):
    # "?wait" is present with no value: true, as "?wait=" is.
    st, out = d.call("POST", f"/v1/runs?{query}", {"source": QUICK})
    assert st == 200 and out["status"] == "succeeded", (st, out)


@pytest.mark.parametrize("value", ["False", "0", "no"])
def test_wait_false_spellings_do_not_wait(d, value):
    st, out = d.call("POST", f"/v1/runs?wait={value}", {"source": QUICK})
    assert st == 202, (st, out)
    d.wait_status(out["id"], ["succeeded"])


@pytest.mark.parametrize("path", ["/v1/runs?wait=maybe", "/v1/runs?wait=2"])
def test_unreadable_wait_flag_is_400_and_starts_nothing(d, path):
    before = len(d.call("GET", "/v1/runs?limit=10000")[1]["runs"])
    st, out = d.call("POST", path, {"source": QUICK})
    bad_request(st, out, "query 'wait' must be true or false")
    assert len(d.call("GET", "/v1/runs?limit=10000")[1]["runs"]) == before


@pytest.mark.parametrize("value", ["abc", "-1", "0", "5s", "1.5", "", "%205"])
def test_unreadable_timeout_is_400_not_the_longest_wait(d, value):
    # Before, each of these waited server.max_wait_s (an hour by default).
    st, out = d.call("POST", f"/v1/runs?wait=true&timeout={value}", {"source": SLOW})
    bad_request(st, out, "query 'timeout' must be a whole number of seconds")


def test_timeout_is_honoured_and_capped(d):
    t0 = time.time()
    st, out = d.call("POST", "/v1/runs?wait=true&timeout=1", {"source": SLOW})
    assert st == 202 and out["status"] == "running", (st, out)
    assert time.time() - t0 < 2.5
    # Above server.max_wait_s (3 here) it is capped, as documented.
    t0 = time.time()
    st, got = d.call("GET", f"/v1/runs/{out['id']}?wait=true&timeout=99999999999999999999999")
    assert st == 202 and got["status"] == "running", (st, got)
    assert time.time() - t0 < 10
    d.cancel(out["id"])


def test_query_check_spares_function_urls(d):
    # A Function URL's query belongs to its function: no API words there.
    st, out = d.call("POST", "/v1/functions", {"name": "echo", "url": True, "source":
                     "def handler(event, context):\n    return event.get('queryStringParameters')\n"})
    assert st == 201, out
    st, out = d.call("GET", "/fn/alice/echo?wait=maybe&timeout=soon")
    assert st == 200, (st, out)
    assert out == {"wait": "maybe", "timeout": "soon"}, out


def exchange(d, raw):
    """Sends raw bytes on one connection; everything the daemon answers
    until it closes it (b"" after 10 s of silence: it kept it open)."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(raw)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            return b""
        return out


def one_json_error(out):
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), out
    assert out.count(b"HTTP/1.1 ") == 1, out  # the rest was not read as a request
    return json.loads(body)["error"]


AUTH = f"Authorization: Bearer {TOKENS['alice']}\r\n".encode()
SUBMIT = json.dumps({"source": QUICK}).encode()
SMUGGLED = b"DELETE /v1/functions/echo HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"


@pytest.mark.parametrize("framing", [
    b"Content-Length: 2\r\nContent-Length: %d\r\n" % len(SUBMIT),
    b"Content-Length: %d\r\nContent-Length: 2\r\n" % len(SUBMIT),
    b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(SUBMIT),
])
def test_ambiguous_body_framing_is_refused_and_the_connection_closed(d, framing):
    # A proxy reading the other header would frame other requests than the
    # daemon does (request smuggling): refused before the body is read.
    before = len(d.call("GET", "/v1/runs?limit=10000")[1]["runs"])
    out = exchange(d, b"POST /v1/runs HTTP/1.1\r\nHost: x\r\n" + AUTH + framing + b"\r\n" + SUBMIT + SMUGGLED)
    err = one_json_error(out)
    assert err["code"] == "bad_request" and "Content-Length" in err["message"], err
    assert len(d.call("GET", "/v1/runs?limit=10000")[1]["runs"]) == before


def test_two_authorization_headers_are_refused(d):
    bob = f"Authorization: Bearer {TOKENS['bob']}\r\n".encode()
    out = exchange(d, b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n" + AUTH + bob + b"\r\n")
    err = one_json_error(out)
    assert "more than one Authorization header" in err["message"], err


def test_one_content_length_still_keeps_the_connection(d):
    # The check refuses only ambiguity: a plain request and a keep-alive
    # second one on the same connection are served.
    c = d.conn()
    try:
        for _ in range(2):
            c.request("POST", "/v1/runs?wait=true", body=SUBMIT,
                      headers={"Authorization": f"Bearer {TOKENS['alice']}", "Content-Type": "application/json"})
            r = c.getresponse()
            assert r.status == 200 and json.loads(r.read())["result"] == 1
    finally:
        c.close()


@pytest.mark.parametrize("body, words", [
    ({"tenant": "carol", "expires": 3600}, "field 'expires' must be a string"),
    ({"tenant": "carol", "expires": None}, "field 'expires' must be a string"),
    ({"tenant": "carol", "role": 5}, "field 'role' must be a string"),
    ({"tenant": "carol", "role": None}, "field 'role' must be a string"),
    ({"tenant": "carol", "ttl": "1h"}, "unknown field 'ttl'"),
])
def test_token_request_fields_are_typed(d, body, words):
    # A number for "expires" was read as absent, which is "never": the admin
    # who asked for an hour got a token that never expires.
    before = d.call("GET", "/v1/tokens", token="admin")[1]["tokens"]
    st, out = d.call("POST", "/v1/tokens", body, token="admin")
    bad_request(st, out, words)
    assert d.call("GET", "/v1/tokens", token="admin")[1]["tokens"] == before


def test_token_request_still_takes_strings(d):
    st, out = d.call("POST", "/v1/tokens", {"tenant": "carol", "role": "readonly", "expires": "1h"}, token="admin")
    assert st == 201 and out["role"] == "readonly" and out["expires_at"], (st, out)
    st, _ = d.call("DELETE", f"/v1/tokens/{out['id']}", token="admin")
    assert st == 200


def first_answer(d, head):
    """Sends a request's head alone (its body announced, not sent) and
    reads the daemon's first answer: what it says before the body."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(head)
        try:
            return s.recv(65536)
        except socket.timeout:
            return b""


@pytest.mark.parametrize("who, expect, status", [
    (b"", b"Expect: 100-continue\r\n", b"401"),
    (b"", b"", b"401"),
    (f"Authorization: Bearer {TOKENS['alice']}-wrong\r\n".encode(), b"", b"401"),
    (f"Authorization: Bearer {TOKENS['reader']}\r\n".encode(), b"Expect: 100-continue\r\n", b"403"),
])
def test_a_large_body_is_refused_before_it_is_read(d, who, expect, status):
    # Before, the daemon answered "100 Continue" (or just read on) and
    # buffered up to max_body_bytes of an anonymous client's body before
    # its 401: per connection, from anyone who can reach the port.
    head = (b"POST /v1/runs HTTP/1.1\r\nHost: x\r\n" + who + expect +
            b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n")
    out = first_answer(d, head)
    assert out.startswith(b"HTTP/1.1 " + status), out
    assert json.loads(out.partition(b"\r\n\r\n")[2])["error"]["code"] in ("unauthorized", "forbidden"), out


def test_a_large_body_of_a_valid_token_is_still_read(d):
    head = (b"POST /v1/runs HTTP/1.1\r\nHost: x\r\n" + AUTH +
            b"Expect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n")
    assert first_answer(d, head).startswith(b"HTTP/1.1 100 Continue"), head
    # And a big body with a token is served (a comment pads it past the
    # early check's threshold).
    source = QUICK + "#" + "x" * 200000 + "\n"
    st, out = d.call("POST", "/v1/runs?wait=true", {"source": source})
    assert st == 200 and out["result"] == 1, (st, out)


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/functions/nosuchfn"), ("DELETE", "/v1/functions/nosuchfn"),
    ("POST", "/v1/functions/nosuchfn/invoke"),
])
def test_an_undeployed_function_has_the_same_words_on_every_route(d, method, path):
    st, out = d.call(method, path, {} if method == "POST" else None)
    assert st == 404 and out["error"] == {"code": "not_found", "message": "no deployed function 'nosuchfn'"}, out


@pytest.mark.parametrize("method, path, status, words", [
    ("GET", "/v1/functions/%ff", 404, "\ufffd"),
    ("GET", "/v1/runs?status=%ff", 400, "unknown status '\ufffd'"),
    ("GET", "/v1/runs?wait=%ffx", 400, "query 'wait' must be true or false"),
])
def test_an_error_quoting_bytes_that_are_not_utf8_keeps_its_message(d, method, path, status, words):
    # Before, such a message became the bare code ("not_found").
    st, out = d.call(method, path)
    assert st == status, (st, out)
    assert words in out["error"]["message"] and out["error"]["message"] != out["error"]["code"], out


def test_a_function_url_during_the_drain_is_503_with_retry_after(tmp_path):
    # The API's drain answer carries Retry-After (what a load balancer reads
    # as "send it elsewhere"); a Function URL's 503 did not.
    dd = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path)).start()
    try:
        st, out = dd.call("POST", "/v1/functions", {"name": "hello", "url": "public", "source":
                          "def handler(event, context):\n    return 'hi'\n"})
        assert st == 201, out
        st, b = dd.run(SLOW, wait=False, kwargs={"s": 4})
        assert st == 202, b
        dd.wait_status(b["id"], ["running"])
        dd.proc.send_signal(signal.SIGTERM)
        seen = None
        deadline = time.time() + 10
        while time.time() < deadline and dd.proc.poll() is None and not seen:
            st, hdrs, _ = dd.request("GET", "/fn/alice/hello", token=None)
            if st == 503:
                seen = hdrs
            else:
                assert st == 200, st  # served before the signal landed
                time.sleep(0.02)
        assert seen, "no 503 while draining"
        assert int(seen["retry-after"]) > 0, seen
        assert dd.proc.wait(30) == 0
    finally:
        dd.stop()


@pytest.mark.parametrize("qualifier", ["01", "+1", "%201", "1x"])
def test_a_lambda_qualifier_is_a_version_as_lambda_writes_it(d, qualifier):
    # strtoul() read "01", "+1" and " 1" as version 1; Lambda has no such
    # version: 404, as for any qualifier naming none.
    st, out = d.call("POST", "/v1/functions", {"name": "qual", "source": "def handler(event, context):\n    return 7\n"})
    assert st in (200, 201), (st, out)
    st, out = d.call("POST", "/2015-03-31/functions/qual/invocations?Qualifier=1", {})
    assert (st, out) == (200, 7), (st, out)
    st, out = d.call("POST", f"/2015-03-31/functions/qual/invocations?Qualifier={qualifier}", {})
    assert st == 404, (st, out)


@pytest.mark.parametrize("version", ["01", "+1", "%201"])
def test_a_v1_version_query_is_digits_without_a_leading_zero(d, version):
    st, out = d.call("POST", "/v1/functions", {"name": "qual", "source": "def handler(event, context):\n    return 7\n"})
    assert st in (200, 201), (st, out)
    assert d.call("GET", "/v1/functions/qual?version=1")[0] == 200
    st, out = d.call("GET", f"/v1/functions/qual?version={version}")
    bad_request(st, out, "query 'version' must be a positive integer")
