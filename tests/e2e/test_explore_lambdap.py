"""The Lambda-compatible path, the /v1 API and the CLI as an experienced
AWS Lambda / Modal user drives them (boto3, curl, raw HTTP, `pysprinter
invoke`): what such a user found different from Lambda, or from the
CLI's own documentation."""
import base64
import gzip
import json
import sys

import pytest

from conftest import DAEMON, ROOT
from daemonlib import KEYS, TOKENS, Daemon, sandbox_mode

sys.path.insert(0, str(ROOT / "python"))
from pysprinter import Client  # noqa: E402

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SIZE = """
def handler(event, context):
    return len(event["x"])
"""

HOOK = """
def handler(event, context):
    return {"encoding": event["headers"].get("content-encoding"), "body": event.get("body"),
            "b64": event.get("isBase64Encoded")}
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("lambdap")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        for name, src, extra in (("size", SIZE, {}), ("hook", HOOK, {"url": "public"})):
            st, b = daemon.call("POST", "/v1/functions", {"name": name, "source": src, **extra})
            assert st == 201, b
        yield daemon


def remote(cli, d, *args, **kw):
    return cli(*args, "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]}, **kw)


@pytest.mark.parametrize("how", ["--payload-file", "-"])
def test_invoke_takes_an_event_as_large_as_lambda_takes(cli, d, tmp_path, how):
    """Lambda takes a 6 MB RequestResponse event, the daemon 12 MiB by
    default: `invoke --payload-file` (and `-`) refused anything over 4 MiB
    ("cannot read ev.json: File too large", exit 2) before asking."""
    n = 5 << 20
    ev = tmp_path / "ev.json"
    ev.write_text(json.dumps({"x": "y" * n}))
    if how == "-":
        p = remote(cli, d, "invoke", "size", "-", input=ev.read_text())
    else:
        p = remote(cli, d, "invoke", "size", how, ev)
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, str(n), "")


def test_an_event_over_the_servers_cap_is_its_413_in_its_words(cli, d, tmp_path):
    """Over the server's body cap the server says so (its 413, exit 2
    as docs/cli.md says), not the CLI's own lower guess."""
    ev = tmp_path / "ev.json"
    ev.write_text(json.dumps({"x": "y" * (13 << 20)}))
    p = remote(cli, d, "invoke", "size", "--payload-file", ev)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == ""
    assert "larger than the 12582912 byte limit" in p.stderr, p.stderr


@pytest.mark.parametrize("method, path", [
    ("GET", "/2019-09-30/functions/size/concurrency"),     # boto3 get_function_concurrency
    ("GET", "/2016-08-19/account-settings/"),              # get_account_settings
    ("GET", "/2021-10-31/functions/size/url"),             # get_function_url_config
    ("POST", "/2014-11-13/functions/size/invoke-asink/"),  # a mistyped invoke_async
    # list_aliases is served since aliases (test_explore_alias.py)
])
def test_a_lambda_operation_not_served_is_refused_in_lambdas_shape(d, method, path):
    """boto3 reads the error's type from X-Amzn-ErrorType and its words
    from `message`: a Lambda API path under another date than 2015-03-31
    was the API's bare {"error"} 404, which boto3 shows as `An error
    occurred (404) when calling the GetFunctionConcurrency operation: `,
    no type, no words."""
    st, h, body = d.request(method, path, raw=b"{}" if method == "POST" else None)
    assert st == 404, (st, body)
    assert h.get("x-amzn-errortype") == "ResourceNotFoundException", h
    b = json.loads(body)
    assert b["Type"] == "User" and b["message"].startswith("no such endpoint: "), b


@pytest.mark.parametrize("ref", ["size:1", "size::$LATEST", "size:$LATEST",
                                 "arn:aws:lambda:us-east-1:123456789012:function:size:1",
                                 "123456789012:function:size"])
def test_invoke_names_a_version_as_lambda_and_the_python_client_write_it(cli, d, ref):
    """`aws lambda invoke --function-name size:1` and the Python client's
    invoke("size:1") / invoke("size::$LATEST") name a version; the CLI
    took only NAME::N: `invoke size:1` was "no deployed function
    'size:1'" and `size::$LATEST` "the part after '::' must be a version
    number"."""
    want = remote(cli, d, "invoke", "size::1", "--payload", '{"x": "abc"}')
    assert (want.returncode, want.stdout.strip()) == (0, "3"), want
    p = remote(cli, d, "invoke", ref, "--payload", '{"x": "abc"}')
    assert (p.returncode, p.stdout, p.stderr) == (want.returncode, want.stdout, want.stderr)
    h = remote(cli, d, "invoke", ref, "--help")
    assert h.returncode == 0 and "handler(event, context)" in h.stdout, h


@pytest.mark.parametrize("ref", ["size::01", "size:+1", "size:", "size::"])
def test_invoke_refuses_a_version_lambda_would_not_write(cli, d, ref):
    """A version is $LATEST or digits without a leading zero, as the
    Lambda route and the Python client read it (`size::01` was version 1)."""
    p = remote(cli, d, "invoke", ref, "--payload", "{}")
    assert p.returncode == 2 and "must be a version number" in p.stderr, p
    assert p.stdout == ""


def test_invoke_of_a_word_names_an_alias(cli, d):
    """`size::x`: x is an alias's name since aliases (docs/api.md
    "Aliases"), the server's to know (it was "must be a version number")."""
    p = remote(cli, d, "invoke", "size::x", "--payload", "{}")
    assert p.returncode == 2 and "function 'size' has no alias 'x'" in p.stderr and p.stdout == "", p


def test_the_python_client_invokes_a_function_by_its_lambda_arn(d):
    """boto3 code names functions by ARN; the Python client took NAME:1
    but raised ValueError for the ARN the Lambda route takes."""
    with Client(server=d.url, token=TOKENS["alice"]) as c:
        assert c.invoke("arn:aws:lambda:us-east-1:123456789012:function:size:1", {"x": "ab"}) == 2
        assert c.invoke("123456789012:function:size", {"x": "abc"}) == 3


GZ = gzip.compress(b'{"x": "abc"}')


@pytest.mark.parametrize("path, lambda_type", [
    ("/2015-03-31/functions/size/invocations", "UnsupportedMediaTypeException"),
    ("/v1/functions/size/invoke?wait=true", None),
    ("/v1/runs?wait=true", None),
])
def test_a_compressed_request_body_is_415_not_unreadable_json(d, path, lambda_type):
    """A gzip body with Content-Encoding: gzip (requests' users, a proxy)
    was read as JSON: 400 "invalid token near '\\u001F'". The daemon
    decodes no content coding: 415 naming it, with Accept-Encoding:
    identity (RFC 9110 15.5.16), before the body is read; the connection
    is not left with the body in it."""
    st, h, body = d.request("POST", path, raw=GZ, headers={"Content-Encoding": "gzip"})
    assert st == 415, (st, body)
    assert h.get("accept-encoding") == "identity", h
    b = json.loads(body)
    assert b["error"]["code"] == "unsupported_media_type", b
    assert "Content-Encoding 'gzip'" in b["error"]["message"], b
    assert h.get("x-amzn-errortype") == lambda_type, h
    # identity is no coding at all.
    st, h, body = d.request("POST", "/2015-03-31/functions/size/invocations", raw=b'{"x": "ab"}',
                            headers={"Content-Encoding": "identity"})
    assert (st, body) == (200, b"2"), (st, body)


def test_a_function_url_gets_a_compressed_body_as_lambda_passes_it(d):
    """A Function URL's body is the function's: Lambda hands a gzip body
    over base64 with its content-encoding header, and so does the daemon."""
    st, h, body = d.request("POST", "/fn/alice/hook", raw=GZ, token=None,
                            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert st == 200, (st, body)
    b = json.loads(body)
    assert b["encoding"] == "gzip" and b["b64"] is True, b
    assert base64.b64decode(b["body"]) == GZ


def test_a_server_whose_queue_stays_full_is_exit_6_as_documented(cli, tmp_path):
    """docs/cli.md's exit table named no code for a 429 the CLI gave up on
    (its tries as Retry-After asks spent): it is 6, the server's, with the
    server's words; `invoke` and `invoke --payload` alike, both naming
    the invoke."""
    root = tmp_path / "busy"
    with Daemon(root, sandbox=sandbox_mode(root), config_extra="""
        server:
          max_concurrent_runs: 1
          max_concurrent_per_tenant: 1
          max_queued_runs: 2
          max_queued_per_tenant: 1
        """).serving() as d:
        st, b = d.call("POST", "/v1/functions", {"name": "slow", "source": "import time\ndef handler(event, context):\n"
                                                                          "    time.sleep(60)\n"})
        assert st == 201, b
        ids = []
        for _ in range(2):  # one running, one queued: the tenant's share is full
            st, h, _b = d.request("POST", "/2015-03-31/functions/slow/invocations", raw=b"{}",
                                  headers={"X-Amz-Invocation-Type": "Event"})
            assert st == 202, st
            ids.append(h["x-amzn-requestid"])
        try:
            for args in (["invoke", "slow", "-a", "1"], ["invoke", "slow", "--payload", "{}"]):
                p = remote(cli, d, *args)
                assert p.returncode == 6, (args, p.returncode, p.stderr)
                # An invoke's refusal says invoke (`invoke NAME ARGS` said
                # "run: …", the --payload form "invoke: …").
                assert "pysprinter: invoke: this tenant's share of the queue is full" in p.stderr, p.stderr
                assert p.stdout == ""
        finally:
            for rid in ids:
                d.call("DELETE", f"/v1/runs/{rid}")


def test_invoke_async_starts_an_event_invocation(d):
    """boto3's invoke_async (Lambda's InvokeAsync, POST
    /2014-11-13/functions/NAME/invoke-async/) is what older code calls:
    it was 404. It is an Event invocation: 202 {"Status": 202} at once,
    the run goes on (its id in X-Amzn-RequestId)."""
    st, h, body = d.request("POST", "/2014-11-13/functions/size/invoke-async/", raw=b'{"x": "abcd"}')
    assert st == 202, (st, body)
    assert json.loads(body) == {"Status": 202}
    run = d.wait_status(h["x-amzn-requestid"], ["succeeded", "failed"])
    assert (run["status"], run["result"], run["fn_name"]) == ("succeeded", 4, "size"), run
    # What the Invoke route refuses, it refuses: an unknown function,
    # an event that is not JSON.
    st, h, body = d.request("POST", "/2014-11-13/functions/nope/invoke-async/", raw=b"{}")
    assert (st, h.get("x-amzn-errortype")) == (404, "ResourceNotFoundException"), (st, body)
    st, h, body = d.request("POST", "/2014-11-13/functions/size/invoke-async/", raw=b"{nope")
    assert (st, h.get("x-amzn-errortype")) == (400, "InvalidRequestContentException"), (st, body)
    boto3 = pytest.importorskip("boto3", reason="python3-boto3 is not installed")
    key_id, secret = KEYS["alice"]
    lam = boto3.client("lambda", endpoint_url=d.url, region_name="us-east-1", aws_access_key_id=key_id,
                       aws_secret_access_key=secret)
    r = lam.invoke_async(FunctionName="size", InvokeArgs=b'{"x": "ab"}')
    assert r["Status"] == 202, r


def exchange(d, data, timeout=10):
    """data sent on one connection; everything the daemon answers until it
    closes it (b"" when it leaves it open past timeout, waiting)."""
    import socket
    with socket.create_connection(("127.0.0.1", d.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            return b""
        except ConnectionResetError:
            pass
        return out


AUTH = f"Authorization: Bearer {TOKENS['alice']}\r\n".encode()
SMUGGLED = b"DELETE /v1/functions/size HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"


def chunked(data):
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


@pytest.mark.parametrize("te, body, status, words", [
    (b"gzip, chunked", chunked(gzip.compress(b'{"x": "a"}')), 501, "transfer coding 'gzip'"),
    (b"chunked, gzip", chunked(b'{"x": "a"}'), 400, "is not 'chunked'"),
    (b"identity", b'{"x": "a"}', 400, "is not 'chunked'"),
    (b"chunked ", chunked(b'{"x": "a"}'), 400, "is not 'chunked'"),
    (b"chunked\r\nTransfer-Encoding: chunked", chunked(b'{"x": "a"}'), 400, "more than one Transfer-Encoding"),
])
def test_a_transfer_coding_the_daemon_cannot_frame_is_refused_and_the_connection_closed(d, te, body, status, words):
    """A Transfer-Encoding other than chunked (`gzip, chunked`,
    `identity`) left the request unanswered with its body on the
    connection until the read timeout: the daemon framed no body where a
    proxy in front frames one (request smuggling: RFC 9112 6.3 says 400
    and close; 6.1, 501 for a coding it does not know). Refused before the
    body is read, the rest of the connection never read as a request."""
    out = exchange(d, b"POST /2015-03-31/functions/size/invocations HTTP/1.1\r\nHost: x\r\n" + AUTH +
                   b"Transfer-Encoding: " + te + b"\r\n\r\n" + body + SMUGGLED)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), out
    assert out.count(b"HTTP/1.1 ") == 1, out
    assert words in json.loads(rest)["message"], rest
    assert d.call("GET", "/v1/functions/size")[0] == 200  # the smuggled DELETE never ran
    # chunked alone, in any case, is read as before.
    out = exchange(d, b"POST /2015-03-31/functions/size/invocations HTTP/1.1\r\nHost: x\r\n" + AUTH +
                   b"Connection: close\r\nTransfer-Encoding: Chunked\r\n\r\n" + chunked(b'{"x": "abc"}'))
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\n3"), out


ADD = "def add(a: int, b: int = 0):\n    return a + b\n"


def test_the_python_client_starmaps_as_the_clis_map_reads_an_array_line(d, tmp_path):
    """Modal's .starmap calls f(*item); the CLI's map reads a JSON array
    line as the call's positional arguments, but the client had only
    map(), which passes each item as one argument (add([1, 2]))."""
    f = tmp_path / "add.py"
    f.write_text(ADD)
    with Client(server=d.url, token=TOKENS["alice"]) as c:
        assert c.starmap(f"{f}::add", [(1, 2), [3, 4], (5,)], concurrency=2) == [3, 7, 5]
        assert c.starmap(f"{f}::add", []) == []
        got = c.starmap(f"{f}::add", [(1, 2), ("x",)], return_exceptions=True)
        assert got[0] == 3 and type(got[1]).__name__ == "RunError", got
        with pytest.raises(TypeError):
            c.starmap(f"{f}::add", [5])  # an item is a sequence of arguments


def test_the_log_tails_report_line_has_the_billed_duration_and_memory_size(d):
    """Lambda's REPORT line carries `Billed Duration: N ms` and `Memory
    Size: M MB` beside the duration (CloudWatch Logs Insights reads them as
    @billedDuration and @memorySize); the tail's had the duration alone."""
    import math
    import re
    st, h, body = d.request("POST", "/2015-03-31/functions/size/invocations", raw=b'{"x": "ab"}',
                            headers={"X-Amz-Log-Type": "Tail"})
    assert (st, body) == (200, b"2"), (st, body)
    tail = base64.b64decode(h["x-amz-log-result"]).decode()
    rid = h["x-amzn-requestid"]
    report = tail.splitlines()[-1]
    m = re.fullmatch(rf"REPORT RequestId: {rid}\tDuration: ([0-9.]+) ms\tBilled Duration: ([0-9]+) ms\t"
                     r"Memory Size: ([0-9]+) MB", report)
    assert m, report
    assert int(m[2]) == max(1, math.ceil(float(m[1]))), report
    st, conf = d.call("GET", "/2015-03-31/functions/size/configuration")
    assert int(m[3]) == conf["MemorySize"], (report, conf)


@pytest.mark.parametrize("auth, status", [
    (b"", 401),
    (b"Authorization: Bearer not-a-token-of-anyone\r\n", 401),
    (b"Authorization: Bearer " + TOKENS["reader"].encode() + b"\r\n", 403),
])
def test_a_lambda_call_without_a_signature_is_refused_before_its_body(d, auth, status):
    """A Lambda route waited for the whole body before its 401 (and told
    curl `100 Continue`): anyone could make the daemon read 12 MiB per
    connection. Only a SigV4 signature covers the body; a request that
    has none (no Authorization, a bearer token) is refused first, as on
    the API's routes."""
    import socket
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"POST /2015-03-31/functions/size/invocations HTTP/1.1\r\nHost: x\r\n" + auth +
                  b"Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    assert b"x-amzn-errortype" in head.lower(), head
    # A valid token's call still gets its 100 Continue and its answer.
    with socket.create_connection(("127.0.0.1", d.port), timeout=30) as s:
        body = b'{"x": "' + b"y" * 100000 + b'"}'
        s.sendall(b"POST /2015-03-31/functions/size/invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + AUTH +
                  b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\n100000"), out[-200:]
