"""The Lambda-compatible API, function URLs and the Python client, as an
AWS Lambda user drives them with real clients (Debian's boto3, requests):
what such a user checks and found different from Lambda."""
import base64
import json
import signal
import sys

import pytest

from conftest import DAEMON, ROOT
from daemonlib import KEYS, TOKENS, Daemon, config_text, sandbox_mode, wait_for

boto3 = pytest.importorskip("boto3", reason="python3-boto3 is not installed")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

sys.path.insert(0, str(ROOT / "python"))
from pysprinter import APIError, Client  # noqa: E402

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

RAISES = """
class Refused(Exception):
    pass

def handler(event, context):
    if event.get("empty"):
        raise ValueError()
    if event.get("chained"):
        try:
            {}["missing"]
        except KeyError as e:
            raise Refused("no key", 2) from e
    raise Refused("not today")
"""

CLIENT_CONTEXT = """
def handler(event, context):
    cc = context.client_context
    if cc is None:
        return None
    client = cc.client
    return {"custom": cc.custom, "env": cc.env,
            "client": None if client is None else
                      {k: getattr(client, k) for k in ("installation_id", "app_title", "app_version_name",
                                                       "app_version_code", "app_package_name")}}
"""

ECHO = """
def handler(event, context):
    return event
"""

CONTEXT_ECHO = """
def handler(event, context):
    if isinstance(context, dict):
        return {"event": event, "context": context}
    return {"event": event, "function_name": context.function_name, "aws_request_id": context.aws_request_id,
            "left": context.get_remaining_time_in_millis(), "type": type(context).__name__}
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("lambda")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        for name, src in (("raises", RAISES), ("cc", CLIENT_CONTEXT), ("echo", ECHO)):
            st, b = daemon.call("POST", "/v1/functions", {"name": name, "source": src})
            assert st == 201, b
        yield daemon


def client(d, who="alice"):
    key_id, secret = KEYS[who]
    return boto3.client("lambda", endpoint_url=d.url, region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 0}, read_timeout=120))


def test_an_unhandled_error_is_shaped_as_lambdas_runtime_shapes_it(d):
    """Lambda's Python runtime answers errorMessage = str(exception) and
    stackTrace = traceback.format_list() of the exception's frames (one
    entry per frame, "  File …, line N, in f\\n    code\\n"), with the
    requestId. The daemon sent "Refused: not today" as the message and the
    traceback's text cut into lines, its header and exception line
    included."""
    c = client(d)
    r = c.invoke(FunctionName="raises", Payload=b"{}")
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(r["Payload"].read())
    assert err["errorType"] == "Refused"
    assert err["errorMessage"] == "not today"
    assert err["requestId"] == r["ResponseMetadata"]["RequestId"]
    assert len(err["stackTrace"]) == 1, err["stackTrace"]
    frame = err["stackTrace"][0]
    assert frame.startswith('  File "main.py", line 13, in handler\n'), frame
    assert 'raise Refused("not today")' in frame and frame.endswith("\n"), frame

    # str() of an exception with two arguments, and of one with none.
    err = json.loads(c.invoke(FunctionName="raises", Payload=b'{"chained": true}')["Payload"].read())
    assert err["errorMessage"] == "('no key', 2)"
    # The frames are the raised exception's own, not its cause's.
    assert len(err["stackTrace"]) == 1 and "line 12, in handler" in err["stackTrace"][0], err
    r = c.invoke(FunctionName="raises", Payload=b'{"empty": true}', LogType="Tail")
    err = json.loads(r["Payload"].read())
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "", err
    # The runtime's log line names the type once when there is no message.
    log = base64.b64decode(r["LogResult"]).decode()
    assert "[ERROR] ValueError\nTraceback" in log, log


def test_client_context_reaches_the_handler(d):
    """boto3's ClientContext (X-Amz-Client-Context, base64 JSON) is
    context.client_context on Lambda, an object with .custom, .env and
    .client (whose attributes are the mobile SDK's installation_id,
    app_title, …). The daemon dropped it: client_context was None."""
    c = client(d)
    sent = {"custom": {"tenant": "acme", "n": 1}, "env": {"platform": "linux"},
            "client": {"installation_id": "i-1", "app_title": "shop"}}
    r = c.invoke(FunctionName="cc", ClientContext=base64.b64encode(json.dumps(sent).encode()).decode(),
                 Payload=b"{}")
    assert "FunctionError" not in r
    got = json.loads(r["Payload"].read())
    assert got == {"custom": sent["custom"], "env": sent["env"],
                   "client": {"installation_id": "i-1", "app_title": "shop", "app_version_name": None,
                              "app_version_code": None, "app_package_name": None}}
    # Without one it stays None; a header that is not base64 JSON is refused.
    assert json.loads(c.invoke(FunctionName="cc", Payload=b"{}")["Payload"].read()) is None
    too_big = base64.b64encode(json.dumps({"custom": {"k": "x" * 2700}}).encode()).decode()
    assert len(too_big) > 3583
    for bad in ("not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{nope").decode(), too_big):
        with pytest.raises(c.exceptions.InvalidRequestContentException):
            c.invoke(FunctionName="cc", ClientContext=bad, Payload=b"{}")


def test_list_functions_pages_by_max_items_and_marker(d):
    """list_functions(MaxItems=N) answered every function at once without
    a NextMarker; Marker was ignored. boto3's paginator and a caller asking
    for a page both expect Lambda's paging."""
    c = client(d)
    for i in range(5):
        st, b = d.call("POST", "/v1/functions", {"name": f"page{i}", "source": ECHO})
        assert st == 201, b
    every = [f["FunctionName"] for f in c.list_functions()["Functions"]]
    assert "NextMarker" not in c.list_functions()
    first = c.list_functions(MaxItems=2)
    assert [f["FunctionName"] for f in first["Functions"]] == every[:2]
    assert first["NextMarker"]
    second = c.list_functions(MaxItems=2, Marker=first["NextMarker"])
    assert [f["FunctionName"] for f in second["Functions"]] == every[2:4]
    pages = c.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 3})
    assert [f["FunctionName"] for p in pages for f in p["Functions"]] == every
    with pytest.raises(c.exceptions.InvalidParameterValueException):
        c.list_functions(Marker="not a marker!")
    # The last page has no NextMarker; MaxItems out of Lambda's range is refused.
    last = c.list_functions(MaxItems=2, Marker=every[-2])
    assert [f["FunctionName"] for f in last["Functions"]] == every[-1:] and "NextMarker" not in last
    for bad in ("0", "10001", "x", "-1"):
        st, b = d.call("GET", "/2015-03-31/functions/?MaxItems=" + bad)
        assert st == 400 and b["__type"] == "InvalidParameterValueException", (bad, b)


REST = """
def handler(event, context):
    http = event["requestContext"]["http"]
    if http["method"] == "OPTIONS":
        return {"statusCode": 204, "headers": {"Access-Control-Allow-Origin": "https://app.example",
                                               "Access-Control-Allow-Methods": "GET, PATCH"}}
    return {"statusCode": 200, "body": http["method"] + " " + http["path"] + " " + event.get("body", "")}
"""


def test_a_function_url_serves_patch_and_options(d):
    """Lambda's function URLs hand every method to the function: PATCH for
    a REST API's partial update, OPTIONS for the CORS preflight the
    function answers itself. The daemon answered both 405 before the
    function saw them."""
    st, b = d.call("POST", "/v1/functions", {"name": "rest", "source": REST, "url": "public"})
    assert st == 201, b
    st, h, body = d.request("PATCH", "/fn/alice/rest/items/7", raw=b'{"qty": 2}', token=None,
                            headers={"Content-Type": "application/json"})
    assert (st, body) == (200, b'PATCH /items/7 {"qty": 2}'), (st, body)
    st, h, body = d.request("OPTIONS", "/fn/alice/rest/items/7", token=None,
                            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"})
    assert st == 204, (st, body)
    assert h["access-control-allow-origin"] == "https://app.example"
    assert h["access-control-allow-methods"] == "GET, PATCH"
    # A method no function URL serves is still 405, naming those it does.
    st, h, body = d.request("TRACE", "/fn/alice/rest/items/7", token=None)
    assert st == 405 and h["allow"] == "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS", (st, h)


def test_a_partial_arn_names_a_function(d):
    """Lambda takes a FunctionName as a name, NAME:QUALIFIER, an ARN or a
    partial ARN (ACCOUNT:function:NAME[:QUALIFIER]); the daemon answered
    the partial one ResourceNotFoundException."""
    c = client(d)
    for name in ("123456789012:function:echo", "123456789012:function:echo:1",
                 "000000000000:function:echo:$LATEST"):
        r = c.invoke(FunctionName=name, Payload=b'{"via": "partial"}')
        assert json.loads(r["Payload"].read()) == {"via": "partial"}, name
        assert c.get_function_configuration(FunctionName=name)["FunctionName"] == "echo"
    with pytest.raises(c.exceptions.ResourceNotFoundException) as e:
        c.invoke(FunctionName="123456789012:function:echo:9", Payload=b"{}")
    assert e.value.response["Error"]["Message"].endswith(":function:echo:9"), e.value.response["Error"]


def test_list_versions_by_function(d):
    """list_versions_by_function (how a deploy script finds the version to
    point at) answered 404 "no such endpoint". Lambda lists $LATEST, then
    each version, with their qualified ARNs, paged like list_functions."""
    c = client(d)
    for i in range(3):
        st, b = d.call("POST", "/v1/functions", {"name": "versioned", "source": ECHO + f"# v{i}\n"})
        assert st == 201, b
    got = c.list_versions_by_function(FunctionName="versioned")
    assert [v["Version"] for v in got["Versions"]] == ["$LATEST", "1", "2", "3"]
    assert "NextMarker" not in got
    arns = [v["FunctionArn"] for v in got["Versions"]]
    assert arns[0].endswith(":function:versioned:$LATEST") and arns[2].endswith(":function:versioned:2")
    # $LATEST is the latest version's code; each version keeps its own.
    shas = {v["Version"]: v["CodeSha256"] for v in got["Versions"]}
    assert shas["$LATEST"] == shas["3"] and len(set(shas.values())) == 3
    pages = c.get_paginator("list_versions_by_function").paginate(FunctionName="versioned",
                                                                  PaginationConfig={"PageSize": 1})
    assert [v["Version"] for p in pages for v in p["Versions"]] == ["$LATEST", "1", "2", "3"]
    arn = c.get_function_configuration(FunctionName="versioned")["FunctionArn"]
    assert len(c.list_versions_by_function(FunctionName=arn)["Versions"]) == 4
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.list_versions_by_function(FunctionName="never-deployed")
    with pytest.raises(c.exceptions.InvalidParameterValueException):
        c.list_versions_by_function(FunctionName="versioned:2")


def test_dry_run_says_what_the_invoke_would_say_about_the_grant(tmp_path):
    """InvocationType=DryRun checks that the caller may invoke: it
    answered 204 for a version whose limits the operator no longer grants,
    which the real invoke then refused 403 AccessDeniedException."""
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra="""
        tenants:
          alice:
            maxima: {timeout_ms: 30000}
        """)
    with d.serving():
        st, b = d.call("POST", "/v1/functions", {"name": "big", "source": ECHO, "limits": {"timeout_ms": 20000}})
        assert st == 201, b
        c = client(d)
        assert c.invoke(FunctionName="big", InvocationType="DryRun")["StatusCode"] == 204
        d.config.write_text(config_text("tenants:\n  alice:\n    maxima: {timeout_ms: 10000}\n"))
        d.proc.send_signal(signal.SIGHUP)

        def refused():
            try:
                c.invoke(FunctionName="big", Payload=b"{}")
            except ClientError as e:
                return e
        err = wait_for(refused, "the reload to refuse the deploy's limits")
        assert err.response["Error"]["Code"] == "AccessDeniedException"
        with pytest.raises(ClientError) as e:
            c.invoke(FunctionName="big", InvocationType="DryRun")
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


KWARGS = """
def add(a: int, b: int, c: int = 0):
    return a + b + c
"""


def test_dry_run_checks_the_event_as_the_invoke_does(d):
    """A function whose parameters take the event's keys needs an object:
    the invoke answered 400 InvalidRequestContentException for [1, 2],
    while a dry run of the same said 204."""
    st, b = d.call("POST", "/v1/functions", {"name": "add", "source": KWARGS})
    assert st == 201, b
    c = client(d)
    assert c.invoke(FunctionName="add", InvocationType="DryRun", Payload=b'{"a": 1, "b": 2}')["StatusCode"] == 204
    for kind in ("RequestResponse", "DryRun"):
        with pytest.raises(c.exceptions.InvalidRequestContentException):
            c.invoke(FunctionName="add", InvocationType=kind, Payload=b"[1, 2]")
    # Nothing ran for the dry runs.
    st, runs = d.call("GET", "/v1/functions/add/runs")
    assert st == 200 and runs["runs"] == [], runs


DEFAULTED = """
def handler(event, verbose=False):
    return [event, verbose]
"""


def test_the_python_client_invokes_a_lambda_handler_with_its_context(d):
    """Client.invoke("f", event) is documented "like Lambda's invoke", but a
    handler(event, context) deployed and invoked that way failed:
    ValidationError "handler() missing 1 required argument: 'context'". It
    gets its LambdaContext now, as on the Lambda route; a second parameter
    with a default is left to it, as before."""
    st, b = d.call("POST", "/v1/functions", {"name": "ctxecho", "source": CONTEXT_ECHO})
    assert st == 201, b
    st, b = d.call("POST", "/v1/functions", {"name": "defaulted", "source": DEFAULTED})
    assert st == 201, b
    with Client(server=d.url, token=TOKENS["alice"]) as c:
        for _ in range(2):  # a cold and a warm instance
            got = c.invoke("ctxecho", {"x": 1})
            assert got["event"] == {"x": 1} and got["function_name"] == "ctxecho", got
            assert got["aws_request_id"].startswith("r") and got["left"] > 0, got
            assert got["type"] == "LambdaContext"
            # The request id is the run's.
            st, runs = d.call("GET", "/v1/functions/ctxecho/runs?limit=1")
            assert runs["runs"][0]["id"] == got["aws_request_id"], runs
        assert c.invoke("defaulted", 5) == [5, False]
        assert c.invoke("defaulted", 5, True) == [5, True]
        # Two arguments: the caller's, as before.
        assert c.invoke("ctxecho", {"x": 2}, {"given": 1})["context"] == {"given": 1}


def signed(d, method, path, key="alice", body=b"", headers=None, secret=None):
    """(status, headers, body) of a request SigV4-signed for service lambda
    with key's access key pair (botocore's signer, as an AWS_IAM function
    URL's callers sign)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    key_id, key_secret = KEYS[key]
    req = AWSRequest(method=method, url=d.url + path, data=body, headers=headers or {})
    SigV4Auth(Credentials(key_id, secret or key_secret), "lambda", "us-east-1").add_auth(req)
    return d.request(method, path, raw=body or None, token=None, headers=dict(req.headers.items()))


def test_a_token_function_url_takes_a_sigv4_signature(d):
    """docs/api.md: "A SigV4 Authorization is accepted on every route".
    A function URL deployed with --url (the tenant's credentials needed,
    AWS_IAM on Lambda, whose callers sign with SigV4) answered a request
    signed with the tenant's access key 401 Unauthorized."""
    st, b = d.call("POST", "/v1/functions", {"name": "iam", "source": REST, "url": True})
    assert st == 201, b
    st, h, body = signed(d, "POST", "/fn/alice/iam/orders?x=1", body=b"two",
                         headers={"Content-Type": "text/plain"})
    assert (st, body) == (200, b"POST /orders two"), (st, body)
    # Another tenant's key, a wrong secret: 403; the bearer token still works.
    assert signed(d, "GET", "/fn/alice/iam/orders", key="bob")[0] == 403
    assert signed(d, "GET", "/fn/alice/iam/orders", secret="wrong-secret-0123456789abcdefXYZ")[0] == 403
    assert d.request("GET", "/fn/alice/iam/orders")[0] == 200
    # A body altered after signing does not verify.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="POST", url=d.url + "/fn/alice/iam/x", data=b"signed",
                     headers={"Content-Type": "text/plain"})
    SigV4Auth(Credentials(*KEYS["alice"]), "lambda", "us-east-1").add_auth(req)
    assert d.request("POST", "/fn/alice/iam/x", raw=b"altered", token=None,
                     headers=dict(req.headers.items()))[0] == 403


def test_the_python_client_invokes_a_version(d):
    """The CLI invokes NAME::VERSION and Lambda's clients NAME:VERSION; the
    Python client had no way to reach a version but the latest:
    invoke("vv::1") was 404 "no deployed function 'vv::1'"."""
    for n in (1, 2):
        st, b = d.call("POST", "/v1/functions", {"name": "vv", "source": f"def f(x):\n    return [{n}, x]\n"})
        assert st == 201, b
    with Client(server=d.url, token=TOKENS["alice"]) as c:
        assert c.invoke("vv", 0) == [2, 0]
        assert c.invoke("vv::1", 0) == [1, 0]
        assert c.invoke("vv:1", 5) == [1, 5]
        assert c.invoke("vv::$LATEST", 0) == [2, 0]
        with pytest.raises(APIError) as e:
            c.invoke("vv::7", 0)
        assert e.value.status == 404 and "has no version 7" in e.value.message
        for bad in ("vv::01", "vv::", "vv::a.b"):
            with pytest.raises(ValueError):
                c.invoke(bad, 0)
        # A word is an alias's name (docs/api.md "Aliases", Lambda's rule:
        # -1 too): the server's to know.
        for alias in ("x", "-1"):
            with pytest.raises(APIError) as e:
                c.invoke("vv::" + alias, 0)
            assert e.value.status == 404 and f"has no alias '{alias}'" in e.value.message
