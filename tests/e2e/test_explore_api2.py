"""The HTTP API and the CLI as an experienced AWS Lambda / Modal user
drives them (curl, boto3, `pysprinter ps|functions|invoke`): a refusal is
in the route family's JSON shape, a listing stays small whatever a run
failed with, a deployed function is named alike by every verb, and a
Lambda event the daemon cannot read says why."""
import json
import sys

import pytest

from conftest import DAEMON, ROOT
from daemonlib import TOKENS, Daemon, sandbox_mode

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
