"""The AWS Lambda Invoke API of pysprinterd, driven by boto3 (Debian's
python3-boto3): a real client that nobody here wrote, pointed at the daemon
through endpoint_url. The token goes in as the access key id."""
import base64
import json
import signal
import time

import pytest

from conftest import DAEMON
from daemonlib import KEYS, Daemon, config_text, sandbox_mode

boto3 = pytest.importorskip("boto3", reason="python3-boto3 is not installed")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

HANDLER = """
def handler(event, context):
    name = context.function_name if hasattr(context, "function_name") else context["function_name"]
    print("event has", len(event), "keys")
    return {"got": event, "function": name}
"""

KWARGS = """
@requirements({})
def add(a: int, b: int, c: int = 0):
    return a + b + c
"""

FAILS = """
def handler(event, context):
    print("about to fail", flush=True)
    raise RuntimeError("nope: " + str(event.get("why")))
"""

SLOW_PRINT = """
import time
def handler(event, context):
    print("first", flush=True)
    time.sleep(1)
    print("second", flush=True)
    return "ok"
"""

CHATTY = """
def handler(event, context):
    for i in range(2000):
        print(f"line {i:05d}")
    return "ok"
"""

NUL_CHATTY = """
def handler(event, context):
    print("a\\0" + "y" * 5000)
    return "ok"
"""

CONTEXT = """
def handler(event, context):
    left = context.get_remaining_time_in_millis()
    return {"attrs": {k: [type(v).__name__, v] for k, v in vars(context).items() if k != "_deadline_ms"},
            "deadline_type": type(context._deadline_ms).__name__,
            "repr": repr(context), "type": type(context).__name__, "left": left}
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("lambda")
    daemon = Daemon(root, sandbox=sandbox_mode(root)).start()
    try:
        for name, src in (("echo", HANDLER), ("add", KWARGS), ("fails", FAILS), ("chatty", CHATTY),
                          ("ctx", CONTEXT), ("nulchatty", NUL_CHATTY)):
            st, b = daemon.call("POST", "/v1/functions", {"name": name, "source": src})
            assert st == 201, b
        yield daemon
    finally:
        daemon.stop()


def client(d, token="alice", secret=None):
    key_id, key_secret = KEYS.get(token, (token, "no-such-secret-0000000000"))
    return boto3.client("lambda", endpoint_url=d.url, region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret or key_secret,
                        config=Config(retries={"max_attempts": 0}, read_timeout=120))


def test_sync_invoke_event_and_context(d):
    r = client(d).invoke(FunctionName="echo", Payload=json.dumps({"x": 1, "y": [1, 2]}))
    assert r["StatusCode"] == 200
    assert "FunctionError" not in r
    assert json.loads(r["Payload"].read()) == {"got": {"x": 1, "y": [1, 2]}, "function": "echo"}
    assert r["ExecutedVersion"] == "1"


def test_named_parameters_take_event_keys(d):
    r = client(d).invoke(FunctionName="add", Payload=json.dumps({"a": 2, "b": 3}))
    assert r["StatusCode"] == 200 and json.loads(r["Payload"].read()) == 5
    r = client(d).invoke(FunctionName="add", Payload=json.dumps({"a": 2, "b": 3, "c": 10}))
    assert json.loads(r["Payload"].read()) == 15


def test_unhandled_error(d):
    r = client(d).invoke(FunctionName="fails", Payload=json.dumps({"why": "testing"}), LogType="Tail")
    assert r["StatusCode"] == 200
    assert r["FunctionError"] == "Unhandled"
    err = json.loads(r["Payload"].read())
    assert err["errorType"] == "RuntimeError"
    assert "nope: testing" in err["errorMessage"]
    assert isinstance(err["stackTrace"], list)
    log = base64.b64decode(r["LogResult"]).decode()
    assert "about to fail" in log and "START RequestId" in log
    # As Lambda's runtime logs it: the error line and the traceback, then END.
    assert "[ERROR] RuntimeError: nope: testing\nTraceback" in log, log
    assert log.index("about to fail") < log.index("[ERROR]") < log.index("END RequestId")


def test_the_runs_log_is_its_output_the_same_live_and_stored(d):
    """START/END/REPORT went into the live log only: a follower that came
    late (the CLI, the UI) saw them or not by chance. They belong to the
    log tail; the run's log is what the function printed."""
    c = client(d)
    for _ in range(5):
        r = c.invoke(FunctionName="fails", Payload=json.dumps({"why": "x"}), LogType="Tail")
        rid = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        assert "START RequestId" in base64.b64decode(r["LogResult"]).decode()
        st, h, body = d.request("GET", f"/v1/runs/{rid}/logs")
        assert st == 200, body
        assert b"about to fail" in body and b"RequestId" not in body, body[:300]
    # Followed live, from the start of a run that is still going.
    st, b = d.call("POST", "/v1/functions", {"name": "slowprint", "source": SLOW_PRINT})
    assert st == 201, b
    r = c.invoke(FunctionName="slowprint", InvocationType="Event", Payload=b"{}")
    rid = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    d.wait_status(rid, {"running"})
    st, h, body = d.request("GET", f"/v1/runs/{rid}/logs?follow=1")
    assert st == 200 and b"first" in body and b"second" in body, body[:500]
    assert b"RequestId" not in body, body[:500]


def test_log_tail_is_last_4k(d):
    r = client(d).invoke(FunctionName="chatty", LogType="Tail")
    assert json.loads(r["Payload"].read()) == "ok"
    log = base64.b64decode(r["LogResult"])
    assert len(log) <= 4096 and len(log) > 3000
    assert b"line 01999" in log and b"line 00000" not in log


def test_log_tail_of_output_holding_nul_is_its_last_4k(d):
    """The tail was cut from a copy of the log made with strndup(), which
    stopped at the NUL, while its length was the log's: the header carried
    the daemon's heap, base64-encoded."""
    r = client(d).invoke(FunctionName="nulchatty", LogType="Tail")
    assert json.loads(r["Payload"].read()) == "ok"
    log = base64.b64decode(r["LogResult"])
    printed, _, report = log.partition(b"\nEND RequestId: ")
    assert len(log) == 4096 and set(printed) == {ord("y")} and b"REPORT RequestId" in report, log[:64]


def test_async_event_invocation(d):
    before = time.time()
    r = client(d).invoke(FunctionName="echo", InvocationType="Event", Payload=json.dumps({"async": True}))
    assert r["StatusCode"] == 202
    deadline = time.time() + 60
    while time.time() < deadline:
        st, b = d.call("GET", "/v1/runs?limit=20")
        runs = [x for x in b["runs"] if x["args"] and x["args"][0] == {"async": True}]
        if runs and runs[0]["status"] == "succeeded":
            break
        time.sleep(0.1)
    assert runs and runs[0]["result"] == {"got": {"async": True}, "function": "echo"}
    assert time.time() - before < 60


def test_unknown_function_and_qualifier(d):
    c = client(d)
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.invoke(FunctionName="nope", Payload=b"{}")
    r = c.invoke(FunctionName="echo", Qualifier="1", Payload=b"{}")
    assert r["StatusCode"] == 200
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.invoke(FunctionName="echo", Qualifier="7", Payload=b"{}")


def test_other_tenant_and_bad_token(d):
    with pytest.raises(ClientError) as e:
        client(d, "bob").invoke(FunctionName="echo", Payload=b"{}")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as e:
        client(d, "AKIDUNKNOWN000000000").invoke(FunctionName="echo", Payload=b"{}")
    # An unknown access key id is a 403, as on AWS, with AWS's exception.
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    # A known key with the wrong secret: the signature does not verify.
    with pytest.raises(ClientError) as e:
        client(d, "alice", secret="wrong-secret-0123456789abcdefXYZ").invoke(FunctionName="echo", Payload=b"{}")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_a_qualifier_in_the_name_and_another_in_the_query_is_refused(d):
    c = client(d)
    with pytest.raises(ClientError) as e:
        c.invoke(FunctionName="echo:1", Qualifier="2", Payload=b"{}")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "does not match" in e.value.response["Error"]["Message"]
    # The same version twice is fine.
    assert c.invoke(FunctionName="echo:1", Qualifier="1", Payload=b"{}")["StatusCode"] == 200


def test_the_arn_names_the_version_asked_for(d):
    c = client(d)
    plain = c.get_function_configuration(FunctionName="echo")["FunctionArn"]
    assert plain.endswith(":function:echo")
    assert c.get_function_configuration(FunctionName="echo", Qualifier="1")["FunctionArn"] == plain + ":1"
    assert c.get_function(FunctionName="echo:1")["Configuration"]["FunctionArn"] == plain + ":1"


def test_limits_above_the_grant_are_access_denied(tmp_path):
    d = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path), config_extra="""
        tenants:
          alice:
            maxima: {timeout_ms: 30000}
        """).start()
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "big", "source": HANDLER, "limits": {"timeout_ms": 20000}})
        assert st == 201, b
        d.config.write_text(config_text("tenants:\n  alice:\n    maxima: {timeout_ms: 10000}\n"))
        d.proc.send_signal(signal.SIGHUP)
        c = client(d)
        deadline = time.time() + 20
        while True:
            try:
                c.invoke(FunctionName="big", Payload=b"{}")
            except ClientError as e:
                err = e
                break
            assert time.time() < deadline, "the reload never refused the deploy's limits"
            time.sleep(0.1)
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert err.response["Error"]["Code"] == "AccessDeniedException"
    finally:
        d.stop()


def test_bad_payload(d):
    st, b = d.call("POST", "/2015-03-31/functions/echo/invocations", raw=b"{nope")
    assert st == 400 and b["error"]["code"] == "bad_request"
    st, b = d.call("POST", "/2015-03-31/functions/add/invocations", raw=b"[1, 2]")
    assert st == 400 and "JSON object" in b["error"]["message"]


def test_an_event_holding_nul_reaches_the_handler_as_lambda_passes_it(d):
    """Lambda hands the event to Python as JSON; "\\u0000" is a str's NUL.
    The daemon refused it as unreadable JSON (400). A name field holding
    one is still refused, by name: C would read it cut at the NUL."""
    event = {"k": "a\0b", "list": ["\0"]}
    r = client(d).invoke(FunctionName="echo", Payload=json.dumps(event))
    assert r["StatusCode"] == 200 and json.loads(r["Payload"].read())["got"] == event
    st, b = d.call("POST", "/v1/functions/echo/invoke?wait=true", {"args": [{"k": "x\0y"}, {"function_name": "f"}]})
    assert st == 200 and b["result"]["got"] == {"k": "x\0y"}, b
    st, b = d.call("POST", "/v1/functions", {"name": "bad\0name", "source": HANDLER})
    assert st == 400 and "field 'name' holds a NUL character" in b["error"]["message"], b


def test_list_functions(d):
    fns = {f["FunctionName"]: f for f in client(d).list_functions()["Functions"]}
    assert {"echo", "add", "fails", "chatty"} <= set(fns)
    echo = fns["echo"]
    assert echo["FunctionArn"].endswith(":function:echo")
    assert echo["Runtime"] == "python3.11" and echo["Handler"] == "main.handler"
    assert echo["Version"] == "1" and echo["CodeSize"] == len(HANDLER.encode())
    # Another tenant's functions are not listed.
    assert "echo" not in {f["FunctionName"] for f in client(d, "bob").list_functions()["Functions"]}


def test_get_function_and_configuration(d):
    c = client(d)
    conf = c.get_function_configuration(FunctionName="add")
    assert conf["FunctionName"] == "add" and conf["Handler"] == "main.add"
    assert conf["Timeout"] > 0 and conf["MemorySize"] > 0
    assert base64.b64decode(conf["CodeSha256"]) and conf["State"] == "Active"
    got = c.get_function(FunctionName="add")
    assert got["Configuration"]["FunctionArn"] == conf["FunctionArn"]
    assert got["Code"]["Location"]


def test_function_name_as_arn(d):
    c = client(d)
    arn = c.get_function_configuration(FunctionName="echo")["FunctionArn"]
    assert c.get_function_configuration(FunctionName=arn)["FunctionName"] == "echo"
    # Any region and account in the ARN: the name (and qualifier) is what counts.
    other = "arn:aws:lambda:eu-west-1:123456789012:function:echo"
    r = c.invoke(FunctionName=other, Payload=json.dumps({"via": "arn"}))
    assert json.loads(r["Payload"].read())["got"] == {"via": "arn"}
    r = c.invoke(FunctionName=other + ":1", Payload=b"{}")
    assert r["ExecutedVersion"] == "1"
    assert c.get_function(FunctionName="echo:1")["Configuration"]["Version"] == "1"


def test_not_found_errors_are_lambdas(d):
    c = client(d)
    for call in (lambda: c.get_function(FunctionName="nope"),
                 lambda: c.get_function_configuration(FunctionName="arn:aws:lambda:us-east-1:1:function:nope"),
                 lambda: c.invoke(FunctionName="nope", Payload=b"{}"),
                 lambda: c.get_function(FunctionName="echo", Qualifier="99")):
        with pytest.raises(c.exceptions.ResourceNotFoundException) as e:
            call()
        err = e.value.response["Error"]
        assert err["Code"] == "ResourceNotFoundException"
        assert err["Message"].startswith("Function not found: arn:aws:lambda:"), err


def test_context_as_the_function_reads_it(d):
    """Every attribute of the context, its order, types and repr, as a
    function sees them, on a warm instance (the second call) too."""
    for _ in range(2):
        r = client(d).invoke(FunctionName="ctx", Payload=b"{}")
        rid = r["ResponseMetadata"]["RequestId"]
        got = json.loads(r["Payload"].read())
        assert got["attrs"] == {
            "function_name": ["str", "ctx"],
            "function_version": ["str", "1"],
            "invoked_function_arn": ["str", "arn:aws:lambda:local:000000000000:function:ctx"],
            "memory_limit_in_mb": ["int", got["attrs"]["memory_limit_in_mb"][1]],
            "aws_request_id": ["str", rid],
            "log_group_name": ["str", "/aws/lambda/ctx"],
            "log_stream_name": ["str", rid],
            "identity": ["NoneType", None],
            "client_context": ["NoneType", None],
        }
        assert list(got["attrs"]) == ["function_name", "function_version", "invoked_function_arn",
                                      "memory_limit_in_mb", "aws_request_id", "log_group_name",
                                      "log_stream_name", "identity", "client_context"]
        assert got["attrs"]["memory_limit_in_mb"][1] > 0
        assert got["deadline_type"] == "int"
        assert got["repr"] == f"LambdaContext(aws_request_id={rid!r}, function_name='ctx')"
        assert got["type"] == "LambdaContext"
        assert 0 < got["left"] <= 900_000
