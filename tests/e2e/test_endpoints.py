"""Function URLs (docs/endpoints.md): a deployed function answers HTTP at
/fn/{tenant}/{name}[/path…] with the request as a Lambda function-URL event
(payload 2.0) and its return value as the response. Real daemon, real
worker; the client is http.client (and curl when installed)."""
import base64
import json
import shutil
import subprocess

import pytest

from conftest import CLI, DAEMON
from daemonlib import Daemon, TOKENS, sandbox_mode

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
                "cookies": ["a=1; Path=/", "b=2"]}
    if path == "/list":
        return [1, "two", None]
    if path == "/created":
        return {"statusCode": 201, "body": {"ok": True}}
    if path == "/nul":
        return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "x\\0" + "y" * 3000}
    return "plain string"
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
                               ("nourl", ECHO, None)]:
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
        assert sorted(v for k, v in r.getheaders() if k.lower() == "set-cookie") == ["a=1; Path=/", "b=2"]
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
    for path in ["/fn/alice/nourl", "/fn/alice/ghost/x", "/fn/bob/echo", "/fn/alice/bad%20name"]:
        st, _, _ = d.request("GET", path)
        assert st == 404, path


def test_body_is_capped(d):
    st, _, _ = d.request("POST", "/fn/alice/echo", raw=b"x" * 70000, headers={"Content-Type": "text/plain"})
    assert st == 413


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
    cli.env = dict(cli.env, PYSPRINTER_SERVER=d.url, PYSPRINTER_TOKEN=TOKENS["alice"], HOME=str(tmp_path))
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
    assert d.request("GET", "/fn/alice/hook/list", token=None)[0] == 404
    p = cli("deploy", "hook.py", "--memory", "lots")
    assert p.returncode == 2 and "--memory" in p.stderr


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
