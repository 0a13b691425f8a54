"""Function URLs (docs/endpoints.md): a deployed function answers HTTP at
/fn/{tenant}/{name}[/path…] with the request as a Lambda function-URL event
(payload 2.0) and its return value as the response. Real daemon, real
worker; the client is http.client (and curl when installed)."""
import base64
import json
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon, config_text, point_cli, sandbox_mode, wait_for

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")

ECHO = """
def handler(event, context):
    return {"event": event, "request_id": context.aws_request_id}
"""

ROUTER = """
import base64
def handler(event):
    path = event["rawPath"]
    if path == "/missing":
        return {"statusCode": 404, "headers": {"content-type": "text/plain"}, "body": "nope"}
    if path == "/boom":
        return 1 / 0
    if path == "/png":
        data = bytes(range(256))
        return {"statusCode": 200, "headers": {"content-type": "image/png", "x-size": str(len(data))},
                "body": base64.b64encode(data).decode(), "isBase64Encoded": True,
                "cookies": ["a=1; Path=/fn/alice/pub", "b=2"]}
    if path == "/list":
        return [1, "two", None]
    if path == "/created":
        return {"statusCode": 201, "body": {"ok": True}}
    if path == "/nul":
        return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "x\\0" + "y" * 3000}
    return "plain string"
"""

# Responses a function may try to send: each path is one case.
HOSTILE = """
def handler(event):
    cases = {
        "/session-cookie": {"statusCode": 200, "cookies": ["pysprinter_session=forged; Path=/"]},
        "/session-header": {"statusCode": 200, "headers": {"Set-Cookie": " pysprinter_session =forged"}},
        "/colon-name": {"statusCode": 200, "headers": {"x-a:b": "1"}},
        "/space-name": {"statusCode": 200, "headers": {"x a": "1"}},
        "/nul-name": {"statusCode": 200, "headers": {"x-a\\0b": "1"}},
        "/nul-value": {"statusCode": 200, "headers": {"x-a": "cut\\0here"}},
        "/lf-value": {"statusCode": 200, "headers": {"x-a": "one\\nSet-Cookie: b=2"}},
        "/lf-cookie": {"statusCode": 200, "cookies": ["a=1\\r\\nX-Injected: 1"]},
        "/huge-status": {"statusCode": 2 ** 70},
        "/string-status": {"statusCode": "abc"},
        "/low-status": {"statusCode": 99},
        "/headers-list": {"statusCode": 200, "headers": ["x-a: 1"]},
        "/cookies-string": {"statusCode": 200, "cookies": "a=1"},
        "/bad-base64": {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
        "/reserved": {"statusCode": 200, "body": "ok",
                      "headers": {"X-Request-Id": "forged", "Connection": "close", "Date": "yesterday",
                                  "Content-Length": "1", "Transfer-Encoding": "chunked",
                                  "Content-Security-Policy": "img-src 'none'", "X-Fine": "yes"}},
    }
    return cases.get(event["rawPath"], {"statusCode": 200, "body": "ok"})
"""

CONFIG = """
    server:
      max_body_bytes: 65536
      endpoint_rate: 1000
      endpoint_burst: 1000
    """

RATE_CONFIG = """
    server:
      endpoint_rate: 1
      endpoint_burst: 3
    """


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("endpoints")
    daemon = Daemon(root, sandbox=sandbox_mode(root), config_extra=CONFIG).start()
    try:
        for name, src, url in [("echo", ECHO, True), ("pub", ROUTER, "public"), ("priv", ROUTER, True),
                               ("nourl", ECHO, None), ("hostile", HOSTILE, "public")]:
            body = {"name": name, "source": src}
            if url is not None:
                body["url"] = url
            st, b = daemon.call("POST", "/v1/functions", body)
            assert st == 201, b
        yield daemon
    finally:
        daemon.stop()


def test_get_with_query_becomes_a_payload_2_event(d):
    st, h, body = d.request("GET", "/fn/alice/echo/a/b?x=1&y=two%20words&x=3",
                            headers={"X-Custom": "v", "Cookie": "c1=x; c2=y"})
    assert st == 200, body
    assert h["content-type"] == "application/json"
    out = json.loads(body)
    ev = out["event"]
    assert ev["version"] == "2.0" and ev["routeKey"] == "$default"
    assert ev["rawPath"] == "/a/b"
    assert ev["rawQueryString"] == "x=1&y=two%20words&x=3"
    assert ev["queryStringParameters"] == {"x": "1,3", "y": "two words"}
    assert ev["headers"]["x-custom"] == "v"
    assert ev["cookies"] == ["c1=x", "c2=y"]
    # The daemon's credential is not passed on to the function.
    assert "authorization" not in ev["headers"]
    assert ev["isBase64Encoded"] is False and "body" not in ev
    http = ev["requestContext"]["http"]
    assert http["method"] == "GET" and http["path"] == "/a/b" and http["sourceIp"] == "127.0.0.1"
    # The request id is the run's id: the response names it, the run exists.
    rid = h["x-request-id"]
    assert out["request_id"] == rid == ev["requestContext"]["requestId"]
    st, run = d.call("GET", f"/v1/runs/{rid}")
    assert st == 200 and run["status"] == "succeeded"


def test_post_json_body(d):
    payload = {"name": "pysprinter", "n": [1, 2, 3]}
    st, h, body = d.request("POST", "/fn/alice/echo", payload)
    assert st == 200
    ev = json.loads(body)["event"]
    assert ev["rawPath"] == "/" and ev["rawQueryString"] == ""
    assert ev["requestContext"]["http"]["method"] == "POST"
    assert ev["isBase64Encoded"] is False
    assert json.loads(ev["body"]) == payload


def test_binary_body_is_base64(d):
    data = bytes(range(256)) * 4
    st, h, body = d.request("PUT", "/fn/alice/echo/up", raw=data,
                            headers={"Content-Type": "application/octet-stream"})
    assert st == 200
    ev = json.loads(body)["event"]
    assert ev["isBase64Encoded"] is True
    assert base64.b64decode(ev["body"]) == data


def test_response_objects_and_plain_values(d):
    st, h, body = d.request("GET", "/fn/alice/pub/missing", token=None)
    assert (st, h["content-type"], body) == (404, "text/plain", b"nope")
    st, h, body = d.request("GET", "/fn/alice/pub/png", token=None)
    assert st == 200 and h["content-type"] == "image/png" and body == bytes(range(256))
    assert h["x-size"] == "256"
    st, h, body = d.request("GET", "/fn/alice/pub/list", token=None)
    assert st == 200 and h["content-type"] == "application/json" and json.loads(body) == [1, "two", None]
    st, h, body = d.request("GET", "/fn/alice/pub/created", token=None)
    assert st == 201 and json.loads(body) == {"ok": True}
    st, h, body = d.request("GET", "/fn/alice/pub/", token=None)
    assert st == 200 and json.loads(body) == "plain string"


def test_a_text_body_holding_nul_is_sent_as_its_bytes(d):
    """The body was copied with strndup(), which stops at the NUL, and then
    sent at its full length: the response carried 3000 bytes of the
    daemon's heap after "x\\0" (pointers, other requests' data)."""
    for _ in range(3):
        st, h, body = d.request("GET", "/fn/alice/pub/nul", token=None)
        assert (st, body) == (200, b"x\0" + b"y" * 3000), body[:64]


def test_set_cookie_headers(d):
    c = d.conn()
    try:
        c.request("GET", "/fn/alice/pub/png")
        r = c.getresponse()
        r.read()
        assert r.getheader("Set-Cookie") is not None
        assert sorted(v for k, v in r.getheaders() if k.lower() == "set-cookie") == ["a=1; Path=/fn/alice/pub", "b=2"]
    finally:
        c.close()


def test_a_function_that_raises_is_a_502_without_its_traceback(d):
    st, h, body = d.request("GET", "/fn/alice/priv/boom")
    assert st == 502
    out = json.loads(body)
    assert out["message"] == "Internal Server Error"
    rid = out["request_id"]
    assert h["x-request-id"] == rid
    text = body.decode()
    assert "Traceback" not in text and "ZeroDivision" not in text and "division" not in text
    # The owner finds the traceback in the run.
    run = d.wait_status(rid, {"failed"})
    assert "ZeroDivisionError" in json.dumps(run)


def test_token_endpoints_need_a_token_of_their_tenant(d):
    st, h, _ = d.request("GET", "/fn/alice/priv/list", token=None)
    assert st == 401 and "bearer" in h["www-authenticate"].lower()
    st, _, _ = d.request("GET", "/fn/alice/priv/list", token="bob")
    assert st == 403
    st, _, _ = d.request("GET", "/fn/alice/priv/list", token="reader")
    assert st == 403
    st, _, _ = d.request("GET", "/fn/alice/priv/list", token="not-a-token")
    assert st == 401
    st, _, body = d.request("GET", "/fn/alice/priv/list")
    assert st == 200 and json.loads(body) == [1, "two", None]


def test_unknown_and_url_less_functions_are_404(d):
    for path in ["/fn/alice/nourl", "/fn/alice/ghost/x", "/fn/alice/bad%20name"]:
        st, _, _ = d.request("GET", path)
        assert st == 404, path


def test_a_caller_without_the_tenants_token_cannot_tell_which_functions_exist(d):
    """A token URL answered 401 and an unknown name 404, so anyone could
    list a tenant's private functions by name. The token is now checked
    first: every non-public path of a tenant answers the same."""
    paths = ["/fn/alice/priv/list", "/fn/alice/nourl", "/fn/alice/ghost/x", "/fn/alice/bad%20name",
             "/fn/nobody/echo"]
    for token, status in [(None, 401), ("not-a-token", 401), ("bob", 403), ("reader", 403)]:
        answers = set()
        for path in paths:
            st, h, body = d.request("GET", path, token=token)
            out = json.loads(body)
            assert out["request_id"] == h["x-request-id"]
            answers.add((st, out["message"], h.get("www-authenticate")))
        assert len(answers) == 1 and answers.pop()[0] == status, (token, answers)
    # The tenant's own token tells them apart.
    assert d.request("GET", "/fn/alice/priv/list")[0] == 200
    assert d.request("GET", "/fn/alice/ghost/x")[0] == 404
    assert d.request("GET", "/fn/bob/echo")[0] == 403


def test_the_dashboards_session_cookie_never_reaches_a_function(d):
    """A browser sends the dashboard's cookie (Path=/) to /fn too: another
    tenant's public function read it and acted as the visitor."""
    c = d.conn()
    try:
        c.putrequest("GET", "/fn/alice/echo/c")
        c.putheader("Authorization", "Bearer " + TOKENS["alice"])
        c.putheader("Cookie", "a=1; pysprinter_session=SECRET-SESSION; b=2")
        c.putheader("Cookie", " pysprinter_session = SECRET2;c=3")
        c.endheaders()
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    assert r.status == 200, body
    assert b"SECRET" not in body
    ev = json.loads(body)["event"]
    # Two Cookie headers are two lists of cookies.
    assert ev["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in ev["headers"]


def test_a_function_cannot_set_the_dashboards_cookie_or_a_malformed_header(d):
    for case in ["session-cookie", "session-header", "colon-name", "space-name", "nul-name", "nul-value",
                 "lf-value", "lf-cookie", "huge-status", "string-status", "low-status", "headers-list",
                 "cookies-string", "bad-base64"]:
        st, h, body = d.request("GET", f"/fn/alice/hostile/{case}", token=None)
        assert st == 502, (case, st, h, body)
        assert json.loads(body)["message"] == "Internal Server Error"
        assert "set-cookie" not in h and "x-a" not in h and "x-injected" not in h, (case, h)


# Each malformed case, and a word its run's error message must hold.
MALFORMED = [("string-status", "statusCode"), ("low-status", "statusCode"), ("huge-status", "JSON"),
             ("headers-list", "headers"), ("cookies-string", "cookies"), ("bad-base64", "base64"),
             ("colon-name", "x-a:b"), ("nul-value", "x-a"), ("lf-cookie", "cookie"),
             ("session-cookie", "pysprinter_session")]


def test_a_malformed_response_fails_its_run_and_says_why(d):
    """The caller got 502 while the run's record said `succeeded`: the
    owner had no way to learn why. The response is checked before the
    run's end is recorded: the run is `failed` (exit 1) with a
    MalformedResponse naming the problem, and the daemon's log says so
    under the request id the caller saw."""
    for case, word in MALFORMED:
        st, h, body = d.request("GET", f"/fn/alice/hostile/{case}", token=None)
        out = json.loads(body)
        assert (st, out["message"]) == (502, "Internal Server Error"), (case, st, body)
        rid = out["request_id"]
        assert h["x-request-id"] == rid
        st, run = d.call("GET", f"/v1/runs/{rid}")
        assert st == 200 and run["status"] == "failed" and run["exit_code"] == 1, (case, run)
        assert run["error"]["type"] == "MalformedResponse", (case, run["error"])
        assert word in run["error"]["message"], (case, run["error"])
        if case == "string-status":
            # What it returned stays in the run, for its owner to see.
            assert run["result"] == {"statusCode": "abc"}, run
        line = wait_for(lambda: next((l for l in d.log.read_text().splitlines() if rid in l), None),
                        f"{case}: the 502 in the daemon's log", timeout=10)
        assert "fn alice/hostile" in line and run["error"]["message"] in line, (case, line)
    # A well-formed response still succeeds.
    st, h, _ = d.request("GET", "/fn/alice/hostile/reserved", token=None)
    assert st == 200 and d.call("GET", f"/v1/runs/{h['x-request-id']}")[1]["status"] == "succeeded"


def test_the_daemons_own_headers_are_not_the_functions(d):
    c = d.conn()
    try:
        c.request("GET", "/fn/alice/hostile/reserved")
        r = c.getresponse()
        body = r.read()
        headers = r.getheaders()
    finally:
        c.close()
    assert (r.status, body) == (200, b"ok")
    named = lambda n: [v for k, v in headers if k.lower() == n]
    assert len(named("x-request-id")) == 1 and named("x-request-id")[0].startswith("r")
    assert named("connection") != ["close"] and named("date") != ["yesterday"]
    assert named("content-length") == ["2"] and named("transfer-encoding") == []
    assert named("x-fine") == ["yes"]
    # The function's policy adds to the daemon's; it does not replace it.
    csp = named("content-security-policy")
    assert "img-src 'none'" in csp and any(v.startswith("sandbox ") for v in csp), csp


def test_every_answer_of_a_function_url_is_sandboxed(d):
    """A function's page is on the dashboard's origin: the sandbox policy
    gives it an opaque one, so its scripts cannot call /v1 as the visitor
    (test_ui.py checks this in a browser)."""
    for path, token in [("/fn/alice/pub/list", None), ("/fn/alice/pub/missing", None),
                        ("/fn/alice/priv/boom", "alice"), ("/fn/alice/priv/list", None),
                        ("/fn/alice/ghost", "alice"), ("/fn/alice/hostile/colon-name", None)]:
        st, h, _ = d.request("GET", path, token=token)
        csp = h.get("content-security-policy", "")
        assert csp.startswith("sandbox ") and "allow-same-origin" not in csp, (path, st, h)


def raw_request(d, head):
    """Sends head (bytes: the request line and headers, no body) as is
    and returns (status, body bytes): http.client cannot put a byte that
    is not ASCII in a request target."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=60) as s:
        s.sendall(head + b"Connection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_header_and_query_values_that_are_not_utf8_reach_the_function(d):
    """A header or query value holding a byte that is not UTF-8 was left
    out of the event: the function saw no such header at all. The event is
    JSON, as Lambda's: such a value arrives with each bad byte as U+FFFD;
    rawQueryString keeps the query exactly as sent."""
    c = d.conn()
    try:
        c.putrequest("GET", "/fn/alice/echo/q?q=caf%E9&ok=%C3%A9&q=x&bad%FF=1")
        c.putheader("Authorization", "Bearer " + TOKENS["alice"])
        c.putheader("X-Latin", b"caf\xe9 au lait")
        c.putheader("X-Mixed", b"\xc3\xa9t\xe9")
        c.putheader("X-Rep", b"a\xff")
        c.putheader("X-Rep", b"b")
        c.endheaders()
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    assert r.status == 200, body
    ev = json.loads(body)["event"]
    assert ev["headers"]["x-latin"] == "caf\ufffd au lait"
    assert ev["headers"]["x-mixed"] == "\u00e9t\ufffd"
    assert ev["headers"]["x-rep"] == "a\ufffd,b"
    assert ev["queryStringParameters"] == {"q": "caf\ufffd,x", "ok": "\u00e9", "bad\ufffd": "1"}
    assert ev["rawQueryString"] == "q=caf%E9&ok=%C3%A9&q=x&bad%FF=1"
    # Bytes sent raw in the target: the event is still JSON; rawPath and
    # rawQueryString hold them percent-encoded (what the client should
    # have sent, and what decodes back to the same bytes).
    auth = b"Authorization: Bearer " + TOKENS["alice"].encode() + b"\r\n"
    st, body = raw_request(d, b"GET /fn/alice/echo/p\xe9?r=\xff%20\xc3\xa9 HTTP/1.1\r\nHost: x\r\n" + auth)
    assert st == 200, body
    ev = json.loads(body)["event"]
    assert ev["rawPath"] == "/p%E9" and ev["rawQueryString"] == "r=%FF%20\u00e9", ev
    assert ev["queryStringParameters"] == {"r": "\ufffd \u00e9"}


def test_a_content_type_is_matched_without_regard_to_case(d):
    st, h, body = d.request("POST", "/fn/alice/echo", raw=b"hello", headers={"Content-Type": "Text/Plain"})
    assert st == 200
    ev = json.loads(body)["event"]
    assert (ev["body"], ev["isBase64Encoded"]) == ("hello", False)


def test_limits_no_longer_granted_answer_403_and_the_log_says_why(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path)).start()
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "slow", "source": ECHO, "url": "public",
                                                  "limits": {"timeout_ms": 50000}})
        assert st == 201, b
        assert d.request("GET", "/fn/alice/slow", token=None)[0] == 200
        d.config.write_text(config_text("tenants:\n  alice:\n    maxima: {timeout_ms: 30000}\n"))
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while True:
            st, h, body = d.request("GET", "/fn/alice/slow", token=None)
            if st != 200 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert st == 403 and json.loads(body)["message"] == "Forbidden", body
        rid = h["x-request-id"]
        wait_for(lambda: rid in d.log.read_text(), "the refusal in the daemon's log", timeout=10)
        line = next(l for l in d.log.read_text().splitlines() if rid in l)
        assert "fn alice/slow" in line and "timeout" in line, line
    finally:
        d.stop()


SLOW = """
import time
def handler(event):
    time.sleep(2.5)
    return "late"
"""


def test_a_request_answered_504_still_has_its_run_which_ends_with_its_result(tmp_path):
    """A Function URL caller waits, as a Lambda RequestResponse caller does
    (its run's record may be deferred until its end). At max_wait_s it gets
    a 504 naming the request id: that run is recorded by then and ends."""
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra="server:\n  max_wait_s: 1\n").start()
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "slow", "source": SLOW, "url": True})
        assert st == 201, b
        st, h, body = d.request("GET", "/fn/alice/slow")
        assert st == 504, body
        rid = h["x-request-id"]
        assert json.loads(body) == {"message": "Gateway Timeout", "request_id": rid}, body
        st, run = d.call("GET", f"/v1/runs/{rid}")
        assert st == 200 and run["status"] in ("queued", "running", "succeeded"), run
        wait_for(lambda: d.call("GET", f"/v1/runs/{rid}")[1]["status"] == "succeeded", "the run's end", timeout=20)
        assert d.call("GET", f"/v1/runs/{rid}")[1]["result"] == "late"
    finally:
        d.stop()


def test_body_is_capped(d):
    st, _, _ = d.request("POST", "/fn/alice/echo", raw=b"x" * 70000, headers={"Content-Type": "text/plain"})
    assert st == 413


def test_every_refusal_on_fn_has_the_function_urls_body(d):
    """The router's 404/405 and the body cap's 413 answered the API's
    {"error": {...}} while the handler's answers are {"message",
    "request_id"}: one format for a Function URL's callers."""
    cases = [("TRACE", "/fn/alice/pub/x", None, 405, "Method Not Allowed"),
             ("GET", "/fn/alice//pub/a", None, 404, "Not Found"),
             ("POST", "/fn/alice/echo", b"x" * 70000, 413, "Payload Too Large"),
             ("GET", "/fn/alice/ghost", None, 404, "Not Found")]
    for method, path, raw, status, message in cases:
        st, h, body = d.request(method, path, raw=raw, headers={"Content-Type": "text/plain"} if raw else None)
        out = json.loads(body)
        assert (st, out["message"]) == (status, message), (path, st, body)
        assert out["request_id"] == h["x-request-id"] and "error" not in out
        assert h["content-security-policy"].startswith("sandbox ")
    st, h, _ = d.request("TRACE", "/fn/alice/pub/x")
    assert "GET" in h["allow"]


def test_public_endpoints_are_rate_limited_per_address(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra=RATE_CONFIG).start()
    try:
        st, _ = d.call("POST", "/v1/functions", {"name": "pub", "source": ROUTER, "url": "public"})
        assert st == 201
        statuses = [d.request("GET", "/fn/alice/pub/list", token=None)[0] for _ in range(6)]
        # burst 3, then 1/s: the fourth within a second is refused; runs
        # take well under a second here, but a slow machine may refill one.
        assert statuses[:3] == [200, 200, 200], statuses
        assert 429 in statuses[3:], statuses
        st, h, _ = d.request("GET", "/fn/alice/pub/list", token=None)
        if st == 429:
            assert h["retry-after"] == "1"
        # A token endpoint is not rate-limited by address.
        st, _ = d.call("POST", "/v1/functions", {"name": "priv", "source": ROUTER, "url": True})
        assert [d.request("GET", "/fn/alice/priv/list")[0] for _ in range(5)] == [200] * 5
    finally:
        d.stop()


def test_cli_deploy_url_public_and_no_url(d, cli, tmp_path):
    point_cli(cli, d, tmp_path)
    cli.write("hook.py", ROUTER)
    p = cli("deploy", "hook.py", "--url", "--public", "--timeout", "20s", "--memory", "256M", "--max-procs", "16",
            check=0)
    assert f"url: {d.url}/fn/alice/hook (public)" in p.stdout
    st, f = d.call("GET", "/v1/functions/hook")
    assert f["url"] == {"path": "/fn/alice/hook", "public": True}
    assert f["limits"]["timeout_ms"] == 20000 and f["limits"]["memory_bytes"] == 256 << 20
    assert f["limits"]["max_procs"] == 16
    assert d.request("GET", "/fn/alice/hook/list", token=None)[0] == 200
    # A redeploy without --url keeps the endpoint; --no-url removes it.
    cli("deploy", "hook.py", check=0)
    assert d.request("GET", "/fn/alice/hook/list", token=None)[0] == 200
    cli("deploy", "hook.py", "--no-url", check=0)
    assert d.request("GET", "/fn/alice/hook/list")[0] == 404
    assert d.request("GET", "/fn/alice/hook/list", token=None)[0] == 401
    p = cli("deploy", "hook.py", "--memory", "lots")
    assert p.returncode == 2 and "--memory" in p.stderr


def test_cli_url_flags_mean_the_same_in_any_order(d, cli, tmp_path):
    point_cli(cli, d, tmp_path)
    cli.write("order.py", ROUTER)
    for flags in (["--url", "--public"], ["--public", "--url"], ["--public"]):
        cli("deploy", "order.py", *flags, check=0)
        assert d.call("GET", "/v1/functions/order")[1]["url"] == {"path": "/fn/alice/order", "public": True}, flags
        cli("deploy", "order.py", "--no-url", check=0)
        assert d.call("GET", "/v1/functions/order")[1]["url"] is None
    # Saying both is a usage error, whichever comes first; nothing is deployed.
    version = d.call("GET", "/v1/functions/order")[1]["version"]
    for flags in (["--public", "--no-url"], ["--no-url", "--public"], ["--url", "--no-url"], ["--no-url", "--url"]):
        p = cli("deploy", "order.py", *flags)
        assert p.returncode == 2 and "--no-url cannot go with --url or --public" in p.stderr, (flags, p.stderr)
    assert d.call("GET", "/v1/functions/order")[1]["version"] == version


def test_cli_functions_with_an_unknown_subcommand_is_a_usage_error(d, cli, tmp_path):
    cli.env = dict(cli.env, PYSPRINTER_SERVER=d.url, PYSPRINTER_TOKEN=TOKENS["alice"], HOME=str(tmp_path))
    p = cli("functions", "bogus")
    assert p.returncode == 2 and "unknown subcommand 'bogus'" in p.stderr and p.stdout == "", p
    p = cli("functions", "ls", "extra")
    assert p.returncode == 2 and "unexpected argument 'extra'" in p.stderr, p
    p = cli("functions")
    assert p.returncode == 0 and "echo" in p.stdout, p


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl(d):
    p = subprocess.run(["curl", "-sS", "-i", "-X", "POST", "-H", "Content-Type: application/json",
                        "-H", "Authorization: Bearer " + TOKENS["alice"], "--data", '{"k": 1}',
                        f"{d.url}/fn/alice/echo/c?q=1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200")
    ev = json.loads(body)["event"]
    assert json.loads(ev["body"]) == {"k": 1} and ev["queryStringParameters"] == {"q": "1"}


def test_no_auth_daemon_serves_token_endpoints_of_its_local_user(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), args=["--no-auth"]).start()
    try:
        st, _ = d.call("POST", "/v1/functions", {"name": "e", "source": ECHO, "url": True}, token=None)
        assert st == 201
        st, _, body = d.request("GET", "/fn/local/e/x", token=None)
        assert st == 200 and json.loads(body)["event"]["rawPath"] == "/x"
    finally:
        d.stop()
