"""The Lambda-compatible API, function URLs and the Python client as an
AWS Lambda user drives them (boto3, a browser, requests): the second round
of what such a user found different from Lambda (the first is
test_explore_lambda.py)."""
import email.utils
import json
import socket
import sys
import time

import pytest

from conftest import DAEMON, ROOT
from daemonlib import TOKENS, Daemon, sandbox_mode, wait_for
from loopback import LoopbackServer, requests_on
from test_explore_lambda import client

boto3 = pytest.importorskip("boto3", reason="python3-boto3 is not installed")

sys.path.insert(0, str(ROOT / "python"))
from pysprinter import Client  # noqa: E402

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

ENDED = ["succeeded", "failed", "killed", "cancelled", "lost", "error", "invalid"]

FAILS = """
def handler(event, context):
    print("trying", context.aws_request_id)
    raise RuntimeError("not today")
"""

SLOW = """
import time

def handler(event, context):
    time.sleep(event.get("s", 4))
    print("finished")
    return {"slept": event.get("s", 4)}
"""

ECHO = """
def handler(event, context):
    return event
"""

GROUP = """
def handler(event, context):
    raise ExceptionGroup("many", [ValueError("a"), KeyError("b")])
"""

KWARGS = """
def add(a: int, b: int, c: int = 0):
    return a + b + c
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("lambda2")
    # Lambda waits ~1 min, then ~2 min, before an Event invocation's
    # retries; short here.
    with Daemon(root, sandbox=sandbox_mode(root), config_extra="""
        server:
          event_retry_delay_ms: 100
        """).serving() as daemon:
        for name, src, extra in (("fails", FAILS, {}), ("once", FAILS, {"retries": 0}), ("slow", SLOW, {"url": "public"}),
                                 ("echo", ECHO, {"url": "public"}), ("group", GROUP, {}), ("add", KWARGS, {})):
            st, b = daemon.call("POST", "/v1/functions", {"name": name, "source": src, **extra})
            assert st == 201, b
        yield daemon




def log_text(d, run_id):
    st, h, body = d.request("GET", f"/v1/runs/{run_id}/logs")
    assert st == 200, (st, body)
    return body.decode()


def test_a_failed_event_invocation_is_retried_twice(d):
    """Lambda retries an asynchronous invocation whose function raised
    twice (MaximumRetryAttempts, default 2), after ~1 and ~2 minutes. The
    daemon ran it once and left it failed. Now it is tried again while the
    run's attempts last (server.max_attempts, default 3; retries: 0 never),
    after server.event_retry_delay_ms, doubled each time; the run's
    attempt and its log show the tries."""
    c = client(d)
    r = c.invoke(FunctionName="fails", InvocationType="Event", Payload=b"{}")
    assert r["StatusCode"] == 202
    rid = r["ResponseMetadata"]["RequestId"]
    run = d.wait_status(rid, ENDED, timeout=180)
    assert run["status"] == "failed" and run["attempt"] == 3, run
    log = log_text(d, rid)
    assert log.count("trying " + rid) == 3, log
    assert "attempt 1 of 3 failed (RuntimeError: not today)" in log, log
    assert "attempt 2 of 3 failed" in log, log

    # retries: 0 is never again; a RequestResponse caller is told, not retried.
    r = c.invoke(FunctionName="once", InvocationType="Event", Payload=b"{}")
    rid = r["ResponseMetadata"]["RequestId"]
    run = d.wait_status(rid, ENDED, timeout=180)
    assert run["status"] == "failed" and run["attempt"] == 1, run
    assert log_text(d, rid).count("trying") == 1
    r = c.invoke(FunctionName="fails", Payload=b"{}")
    assert r["FunctionError"] == "Unhandled"
    rid = r["ResponseMetadata"]["RequestId"]
    run = d.wait_status(rid, ENDED)
    assert run["attempt"] == 1 and log_text(d, rid).count("trying") == 1, run


def test_a_retry_waiting_for_its_delay_can_be_cancelled(tmp_path):
    """A run waiting between two tries is queued: a cancel ends it at
    once, and it is not tried again."""
    with Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra="""
        server:
          event_retry_delay_ms: 600000
        """).serving() as d:
        st, b = d.call("POST", "/v1/functions", {"name": "fails", "source": FAILS})
        assert st == 201, b
        r = client(d).invoke(FunctionName="fails", InvocationType="Event", Payload=b"{}")
        rid = r["ResponseMetadata"]["RequestId"]
        wait_for(lambda: "trying" in log_text(d, rid), "the first try")
        run = d.wait_status(rid, ["queued"], timeout=120)
        assert run["attempt"] == 1, run
        run = d.cancel(rid)
        assert log_text(d, rid).count("trying") == 1


def hang_up_after_sending(d, method, path, body):
    """Sends the request with the tenant's token and closes the connection
    before any answer (a client whose read timed out)."""
    s = socket.create_connection(("127.0.0.1", d.port))
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    s.sendall(head.encode() + body)
    time.sleep(0.5)
    s.close()


@pytest.mark.parametrize("path,body,slept", [
    ("/2015-03-31/functions/slow/invocations", b'{"s": 3}', 3),
    ("/v1/functions/slow/invoke?wait=true", b'{"args": [{"s": 3}]}', 3),
    ("/fn/alice/slow", b"", 4),
])
def test_a_synchronous_invocation_outlives_its_caller(d, path, body, slept):
    """boto3 reads for 60 s, then retries: on Lambda the first invocation
    runs to its end anyway, and so does a function URL request whose
    client went away. The daemon cancelled the run when the caller hung up
    (status cancelled), and a retried long invoke never finished. Every
    invocation of a deployed function lets it finish now (an ad-hoc
    POST /v1/runs?wait=true run is still cancelled: docs/api.md)."""
    before = {r["id"] for r in d.call("GET", "/v1/functions/slow/runs?limit=100")[1]["runs"]}
    hang_up_after_sending(d, "POST", path, body)

    def the_run():
        runs = d.call("GET", "/v1/functions/slow/runs?limit=100")[1]["runs"]
        return [r for r in runs if r["id"] not in before]
    rid = wait_for(the_run, "the invocation's run")[0]["id"]
    run = d.wait_status(rid, ENDED, timeout=120)
    assert run["status"] == "succeeded" and run["result"] == {"slept": slept}, run
    assert "finished" in log_text(d, rid)


def test_the_python_client_takes_retry_after_as_an_http_date():
    """RFC 9110: Retry-After is seconds or an HTTP date. The client called
    float() on it and raised ValueError on a date."""
    class Busy(LoopbackServer):
        def __init__(self):
            self.n = 0
            super().__init__()

        def serve(self, s):
            with s:
                for _ in requests_on(s):
                    self.n += 1
                    if self.n == 1:
                        date = email.utils.formatdate(time.time() + 1, usegmt=True)
                        s.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: " + date.encode()
                                  + b"\r\nContent-Length: 0\r\n\r\n")
                    elif self.n == 2:
                        s.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT"
                                  b"\r\nContent-Length: 0\r\n\r\n")
                    else:
                        body = json.dumps({"id": "r1", "status": "succeeded", "result": 7}).encode()
                        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                                  % len(body) + body)
    srv = Busy()
    try:
        with Client(server=srv.url, token="t", timeout=60) as c:
            assert c.invoke("f", 1) == 7
        assert srv.n == 3
    finally:
        srv.stop()


def test_a_function_url_event_has_the_keys_aws_sends(d):
    """Payload format 2.0 as AWS documents it for function URLs: no
    "cookies" without a Cookie header (it was []), no
    "queryStringParameters" without a query, requestContext's time as
    "12/Mar/2020:19:03:58 +0000" and its domainPrefix."""
    st, h, body = d.request("GET", "/fn/alice/echo/items", token=None)
    assert st == 200, body
    ev = json.loads(body)
    assert "cookies" not in ev and "queryStringParameters" not in ev, ev
    assert ev["rawQueryString"] == "" and ev["isBase64Encoded"] is False and "body" not in ev
    ctx = ev["requestContext"]
    time.strptime(ctx["time"], "%d/%b/%Y:%H:%M:%S +0000")
    assert ctx["domainPrefix"] == ctx["domainName"].split(".")[0], ctx
    st, h, body = d.request("GET", "/fn/alice/echo/items?x=1", token=None, headers={"Cookie": "a=1; b=2"})
    ev = json.loads(body)
    assert ev["cookies"] == ["a=1", "b=2"] and ev["queryStringParameters"] == {"x": "1"}, ev


def test_an_exception_group_has_its_stack_trace(d):
    """An ExceptionGroup's traceback is drawn with "  | " margins; the
    Lambda error's stackTrace came out [] for it."""
    err = json.loads(client(d).invoke(FunctionName="group", Payload=b"{}")["Payload"].read())
    assert err["errorType"] == "ExceptionGroup" and err["errorMessage"] == "many (2 sub-exceptions)", err
    assert len(err["stackTrace"]) == 1, err
    assert err["stackTrace"][0].startswith('  File "main.py", line 3, in handler\n'), err
    assert "raise ExceptionGroup" in err["stackTrace"][0], err


def test_a_validation_error_speaks_to_a_lambda_caller(d):
    """The CLI's hint "(give positional values with -a VALUE, named ones
    with --NAME VALUE)" ended a boto3 caller's errorMessage."""
    r = client(d).invoke(FunctionName="add", Payload=b'{"a": 1}')
    err = json.loads(r["Payload"].read())
    assert r["FunctionError"] == "Unhandled" and err["errorType"] == "ValidationError", err
    assert err["errorMessage"] == "add() missing 1 required argument: 'b'", err


def test_latest_named_is_latest(d):
    """Qualifier=$LATEST answered Version "1" and an ARN ending ":1", while
    list_versions_by_function calls it "$LATEST" (as Lambda does)."""
    c = client(d)
    for kw in ({"FunctionName": "echo", "Qualifier": "$LATEST"}, {"FunctionName": "echo:$LATEST"}):
        conf = c.get_function_configuration(**kw)
        assert conf["Version"] == "$LATEST" and conf["FunctionArn"].endswith(":function:echo:$LATEST"), conf
        assert c.get_function(**kw)["Configuration"]["Version"] == "$LATEST"
        r = c.invoke(Payload=b'{"v": 1}', **kw)
        assert r["ExecutedVersion"] == "$LATEST" and json.loads(r["Payload"].read()) == {"v": 1}
    assert c.get_function_configuration(FunctionName="echo", Qualifier="1")["Version"] == "1"
