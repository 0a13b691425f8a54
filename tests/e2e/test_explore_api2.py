"""The HTTP API and the CLI as an experienced AWS Lambda / Modal user
drives them (curl, boto3, `pysprinter ps|functions|invoke`): a refusal is
in the route family's JSON shape, a listing stays small whatever a run
failed with, a deployed function is named alike by every verb, and a
Lambda event the daemon cannot read says why."""
import json
import os
import subprocess
import sys

import pytest

from conftest import CLI, DAEMON, ROOT, WORKER, sandbox_args
from daemonlib import TOKENS, Daemon, run_events, sandbox_mode

sys.path.insert(0, str(ROOT / "python"))

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

ECHO = """
def handler(event, context):
    return event
"""

PAGE = """
def handler(event, context):
    return {"statusCode": 200, "body": "ok"}
"""

FAIL = '''
def fail(n: int):
    raise ValueError("x" * n)
'''
MB = 1024 * 1024


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("api2")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        for name, src, extra in (("echo", ECHO, {}), ("echo", ECHO, {}), ("page", PAGE, {"url": "public"})):
            st, b = daemon.call("POST", "/v1/functions", {"name": name, "source": src, **extra})
            assert st == 201, b
        yield daemon


def remote(cli, d, *args, **kw):
    return cli(*args, "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]}, **kw)


# ---- a request line or headers too large ----------------------------------------

LONG = "a" * (40 * 1024)


def _api_shape(st, h, body, status):
    assert st == status, (st, body[:300])
    assert h.get("content-type", "").startswith("application/json"), (h, body[:300])
    return json.loads(body)


@pytest.mark.parametrize("what, status", [("url", 414), ("header", 431)])
def test_a_request_too_large_is_refused_in_the_apis_json(d, what, status):
    """Over the daemon's request-line or header size, libmicrohttpd
    answered its own HTML page ("Your HTTP header was too big for the
    memory constraints of this webserver"), the one refusal of the API that
    was not its JSON error."""
    path, headers = ("/v1/runs?x=" + LONG, None) if what == "url" else ("/v1/runs", {"X-Big": LONG})
    st, h, body = d.request("GET", path, headers=headers)
    err = _api_shape(st, h, body, status)["error"]
    assert err["code"] == ("uri_too_long" if what == "url" else "request_header_fields_too_large"), err
    assert ("32768" in err["message"]), err
    # The daemon goes on serving, on a new connection.
    assert d.call("GET", "/healthz", token=None)[0] == 200


@pytest.mark.parametrize("what, status", [("url", 414), ("header", 431)])
def test_on_the_lambda_route_it_is_lambdas_error_shape(d, what, status):
    """boto3 reads the type from X-Amzn-ErrorType: with the HTML page it
    showed `An error occurred (414)` with no type and no words."""
    path = "/2015-03-31/functions/echo/invocations"
    path, headers = (path + "?x=" + LONG, None) if what == "url" else (path, {"X-Big": LONG})
    st, h, body = d.request("POST", path, raw=b"{}", headers=headers)
    j = _api_shape(st, h, body, status)
    assert h.get("x-amzn-errortype") == "InvalidRequestContentException", h
    assert j["Type"] == "User" and "32768" in j["message"], j


@pytest.mark.parametrize("what, status, reason", [("url", 414, "URI Too Long"),
                                                  ("header", 431, "Request Header Fields Too Large")])
def test_on_a_function_url_it_is_the_function_urls_shape(d, what, status, reason):
    path, headers = ("/fn/alice/page?x=" + LONG, None) if what == "url" else ("/fn/alice/page", {"X-Big": LONG})
    st, h, body = d.request("GET", path, headers=headers, token=None)
    j = _api_shape(st, h, body, status)
    assert j["message"] == reason and j["request_id"].startswith("r"), j


def test_a_request_far_over_any_size_leaves_the_daemon_serving(d):
    """What is larger still than the daemon reads into its connection's
    memory gets libmicrohttpd's own answer (docs/api.md); it serves on."""
    st, h, body = d.request("GET", "/v1/runs?x=" + "a" * (400 * 1024))
    assert st in (414, 431), (st, body[:200])
    st, _, _ = d.request("GET", "/v1/runs", headers={"X-Big": "a" * (400 * 1024)})
    assert st == 431
    assert d.call("GET", "/healthz", token=None)[0] == 200
    st, b = d.call("GET", "/v1/runs?limit=1")
    assert st == 200, b


# ---- a run that failed with megabytes of message ---------------------------------

@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A --no-auth daemon sharing its home with the embedded CLI: ps reads
    the same runs on both paths."""
    dd = Daemon(tmp_path_factory.mktemp("api2local"), sandbox="none" if sandbox_args() else None,
                args=["--no-auth"])
    dd.start()
    yield dd
    dd.stop()


def run_cli(daemon, args, server=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(daemon.home), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    pre = ["--server", server] if server else []
    return subprocess.run([str(CLI), *pre, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def failed(local):
    """A run failing with a 3 MB message (and so a 3 MB traceback), then a
    small failure."""
    out = []
    for n in (3 * MB, 10):
        st, b = local.run(FAIL, filename="fail.py", kwargs={"n": n}, token=None)
        assert st == 200 and b["status"] == "failed", (st, str(b)[:300])
        out.append(b["id"])
    return out


def test_a_listing_of_a_run_that_failed_with_megabytes_is_small(local, failed):
    """error.message and error.traceback were listed whole: one failure
    with a 3 MB exception message made every listing (ps, the dashboard,
    the client's runs()) megabytes, as args and results did before
    they were elided."""
    big, small = failed
    st, hdrs, raw = local.request("GET", "/v1/runs?limit=10", token=None)
    assert st == 200, raw[:300]
    assert len(raw) < 64 * 1024, len(raw)
    listed = {r["id"]: r for r in json.loads(raw)["runs"]}
    b = listed[big]
    assert b["elided"] == ["error.message", "error.traceback"], b
    assert b["error"] == {"type": "ValueError", "message": None, "traceback": None}, b
    st, whole = local.call("GET", f"/v1/runs/{big}", token=None)
    assert st == 200 and whole["error"]["message"] == "ValueError: " + "x" * (3 * MB) and "elided" not in whole
    assert {k: v for k, v in b.items() if k not in ("error", "elided")} == \
        {k: v for k, v in whole.items() if k != "error"}
    st, whole = local.call("GET", f"/v1/runs/{small}", token=None)
    assert listed[small] == whole


def test_the_event_stream_sends_the_capped_error(local, failed):
    c = local.conn()
    try:
        c.request("GET", "/v1/events")
        r = c.getresponse()
        assert r.status == 200
        st, b = local.run(FAIL, wait=False, filename="fail.py", kwargs={"n": 2 * MB}, token=None)
        assert st == 202, b
        ended = next(((n, run) for n, run in run_events(r) if run["id"] == b["id"] and run["status"] == "failed"),
                     None)
        assert ended, "the stream ended before the run's end"
        n, run = ended
        assert n < 64 * 1024 and run["elided"] == ["error.message", "error.traceback"], (n, run)
    finally:
        c.close()


def test_ps_prints_the_same_capped_bytes_embedded_and_against_the_daemon(local, failed):
    for args in (["ps", "--json", "-n", "10"], ["ps", "-n", "10"]):
        here, there = run_cli(local, args), run_cli(local, args, server=local.url)
        assert here.returncode == there.returncode == 0, (here.stderr, there.stderr)
        assert here.stdout == there.stdout, (here.stdout[:2000], there.stdout[:2000])
        assert len(here.stdout) < 64 * 1024
    for server in (None, local.url):
        shown = json.loads(run_cli(local, ["show", failed[0], "--json"], server=server).stdout)
        assert shown["error"]["message"] == "ValueError: " + "x" * (3 * MB) and "elided" not in shown


def test_the_python_clients_error_of_a_listed_run_is_whole(local, failed):
    from pysprinter.client import Client, RunError
    with Client(local.url) as c:
        listed = {r["id"]: r for r in c.runs(limit=10)}
        with pytest.raises(RunError) as e:
            c.result(listed[failed[0]])
        assert "x" * 1000 in str(e.value)


# ---- naming a deployed function ---------------------------------------------------

ARN = "arn:aws:lambda:us-east-1:123456789012:function:echo"


@pytest.mark.parametrize("name, version", [
    (ARN, 2), (ARN + ":1", 1), ("123456789012:function:echo:1", 1), ("echo:1", 1), ("echo::1", 1),
    ("echo:$LATEST", 2), (ARN + ":$LATEST", 2),
])
def test_functions_show_takes_the_names_invoke_takes(cli, d, name, version):
    """`invoke` took a Lambda ARN, a partial ARN and NAME:VERSION (boto3
    code's names); `functions show` said "no deployed function
    'arn:aws:…'" for the same words."""
    p = remote(cli, d, "functions", "show", name, "--json")
    assert p.returncode == 0, p.stderr
    f = json.loads(p.stdout)
    assert (f["name"], f["version"]) == ("echo", version), f


def test_functions_show_of_a_missing_version_says_so(cli, d):
    p = remote(cli, d, "functions", "show", ARN + ":9")
    assert p.returncode != 0 and p.stdout == ""
    assert "function 'echo' has no version 9" in p.stderr, p.stderr
    p = remote(cli, d, "functions", "show", "echo:x")
    assert p.returncode == 2 and "version" in p.stderr, p.stderr


def test_functions_rm_takes_an_arn_and_a_version(cli, d):
    for _ in range(2):
        st, b = d.call("POST", "/v1/functions", {"name": "gone", "source": ECHO})
        assert st == 201, b
    # A version named is that version alone (it was a usage error, "one
    # version cannot be deleted alone"; test_explore_fnversion.py).
    p = remote(cli, d, "functions", "rm", "gone:1")
    assert (p.returncode, p.stdout) == (0, "deleted gone version 1\n"), p.stderr
    assert d.call("GET", "/v1/functions/gone")[1]["versions"] == [2]
    p = remote(cli, d, "functions", "rm", ARN.replace(":echo", ":gone"))
    assert (p.returncode, p.stdout) == (0, "deleted gone\n"), p.stderr
    assert d.call("GET", "/v1/functions/gone")[0] == 404


# ---- an integer beyond 64 bits in an event ---------------------------------------

BIG = b'{"x": 123456789012345678901234567890}'


def test_a_lambda_event_with_an_integer_beyond_64_bits_says_why(d):
    """Lambda's Python runtime reads any integer; the daemon reads JSON with
    64-bit integers (docs/python.md). It answered "too big integer": now
    what the limit is and what to do."""
    st, h, body = d.request("POST", "/2015-03-31/functions/echo/invocations", raw=BIG)
    j = json.loads(body)
    assert st == 400 and h.get("x-amzn-errortype") == "InvalidRequestContentException", (st, h, j)
    assert "beyond 64 bits" in j["message"] and "as a string" in j["message"], j
    assert "line 1 column" in j["message"], j


def test_the_v1_invoke_says_the_same(d):
    st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", raw=b'{"args": [{"x": 123456789012345678901234567890}]}')
    assert st == 400 and "beyond 64 bits" in b["error"]["message"], b


TYPED = """
def handler(event: dict, context):
    return str(event["x"] + 1)
"""


def test_invoke_payload_says_the_same_and_the_events_text_goes_through(cli, d):
    """`invoke NAME EVENT` passes the event's text (as `run -a` does),
    which the annotation converts in Python, reading any integer;
    --payload is the Lambda route's JSON, refused in the same words."""
    p = remote(cli, d, "invoke", "echo", "--payload", BIG.decode())
    assert p.returncode == 2 and "beyond 64 bits" in p.stderr, p.stderr
    st, b = d.call("POST", "/v1/functions", {"name": "typed", "source": TYPED})
    assert st == 201, b
    p = remote(cli, d, "invoke", "typed", BIG.decode(), "--json")
    assert (p.returncode, p.stdout.strip()) == (0, '"123456789012345678901234567891"'), (p.stdout, p.stderr)


def test_the_python_clients_function_and_delete_take_them_too(d):
    from pysprinter.client import Client
    with Client(d.url, token=TOKENS["alice"]) as c:
        assert c.function(ARN + ":1")["version"] == 1
        assert c.function("echo:1")["version"] == 1
        assert c.function(ARN)["version"] == 2
        for _ in range(2):
            st, b = d.call("POST", "/v1/functions", {"name": "gone2", "source": ECHO})
            assert st == 201, b
        assert c.delete_function("gone2:1")["version"] == 1
        with pytest.raises(ValueError):
            c.delete_function("gone2:$LATEST")
        assert c.delete_function(ARN.replace(":echo", ":gone2"))["deleted"] is True


def test_ps_and_logs_function_take_an_arn_too(cli, d):
    """`ps --function` and `logs --function` filter by a function's name,
    every version: an ARN names it as invoke's does (before: no runs, and
    "no deployed function 'arn:…'"); a version named is a usage error."""
    st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"args": [{"k": "logged"}, None]})
    assert st == 200 and b["status"] == "succeeded", b
    p = remote(cli, d, "ps", "--function", ARN, "--json")
    assert p.returncode == 0, p.stderr
    assert b["id"] in [r["id"] for r in json.loads(p.stdout)], p.stdout[:500]
    p = remote(cli, d, "logs", "--function", ARN)
    assert p.returncode == 0, p.stderr
    for verb in (["ps", "--function", ARN + ":1"], ["logs", "--function", "echo:1"]):
        p = remote(cli, d, *verb)
        assert p.returncode == 2 and "every version of 'echo'" in p.stderr, (verb, p.stderr)
