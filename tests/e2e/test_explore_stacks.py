"""Stacks and function URLs explored as a user of SAM/CloudFormation,
Lambda function URLs, API Gateway and Modal web endpoints would
(docs/stack.md, docs/endpoints.md): each test is a defect found that way,
asserting what such a user checks (printed plan, exit codes, the HTTP
answer, the API's JSON). One daemon serves the module."""
import concurrent.futures
import json
import shutil

import pytest

from conftest import CLI, DAEMON, Runner
from daemonlib import Daemon, point_cli, sandbox_mode, wait_for, workers_held
from test_explore_sched import _held_worker_request

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")

STATUS = """
def handler(event):
    q = event.get("queryStringParameters") or {}
    return {"statusCode": int(q.get("code", "200")), "body": q.get("body", "")}
"""

TWICE = """
def handler(event):
    headers = {"Content-Type": "text/plain", "content-type": "text/html"}
    if event["rawPath"] == "/fine":
        headers = {"Content-Type": "text/plain", "X-A": "1"}
    return {"statusCode": 200, "headers": headers, "body": "<b>x</b>"}
"""

ECHO = """
def handler(event):
    return {"rawPath": event["rawPath"], "path": event["requestContext"]["http"]["path"],
            "query": event["rawQueryString"], "params": event.get("queryStringParameters")}
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacks")
    # The module's many public requests stay under the rate limit.
    daemon = Daemon(root, sandbox=sandbox_mode(root),
                    config_extra="server:\n  endpoint_rate: 1000\n  endpoint_burst: 1000\n")
    with daemon.serving(clean_exit=False) as running:
        for name, src in [("status", STATUS), ("echo", ECHO), ("twice", TWICE)]:
            st, b = running.call("POST", "/v1/functions", {"name": name, "source": src, "url": "public"})
            assert st == 201, b
        yield running


@pytest.fixture
def rcli(cli, d, tmp_path):
    """The CLI pointed at d as alice."""
    return point_cli(cli, d, tmp_path)


def embedded(rcli):
    """The same CLI without a server."""
    return Runner({k: v for k, v in rcli.env.items() if k not in ("PYSPRINTER_SERVER", "PYSPRINTER_TOKEN")},
                  rcli.cwd)


def functions(d):
    st, b = d.call("GET", "/v1/functions")
    assert st == 200, b
    return {f["name"]: f["version"] for f in b["functions"]}


# ---- the API's flags --------------------------------------------------------


@pytest.mark.parametrize("flag", ["dry_run", "prune"])
@pytest.mark.parametrize("value", ["yes", 1, "true", None])
def test_a_stack_flag_that_is_not_a_boolean_is_refused(d, flag, value):
    """`"dry_run": "yes"` (or 1, as many JSON clients send a flag) was read
    as false: the caller asked for a plan and got a deploy. Now a 400 that
    names the field, and nothing is written."""
    body = {"functions": [{"name": "flagged", "source": "def f():\n    return 1\n", "url": False}],
            flag: value}
    st, b = d.call("POST", "/v1/stacks", body)
    assert st == 400, (st, b)
    assert b["error"]["message"] == f"field '{flag}' must be a boolean", b
    assert "flagged" not in functions(d)


# ---- function URLs: the answer ------------------------------------------------


@pytest.mark.parametrize("code", [100, 101, 103, 199])
def test_a_1xx_status_is_not_a_final_answer(d, code):
    """A 1xx is an interim response (RFC 9110 15.2): sent as the answer, a
    client waits for the final one (http.client, a browser: 100 hung until
    the client's timeout) or reads a protocol switch that never happens
    (101). The function's response is malformed: 502, and its run says
    why."""
    st, h, body = d.request("GET", f"/fn/alice/status?code={code}", token=None, timeout=30)
    assert st == 502, (st, h, body)
    rid = h["x-request-id"]
    assert json.loads(body) == {"message": "Internal Server Error", "request_id": rid}
    run = d.wait_status(rid, ["failed"])
    assert run["error"]["type"] == "MalformedResponse", run
    assert f"statusCode must be an integer from 200 to 599, not {code}" in run["error"]["message"], run
    # 200 and 599 stay answers.
    for ok in (200, 599):
        assert d.request("GET", f"/fn/alice/status?code={ok}", token=None)[0] == ok


# ---- the stack file's mistakes, the same with and without a server -------------


def both_ways(rcli, *args):
    """(--server result, embedded result) of `pysprinter ARGS`; asserts they
    printed the same bytes and exit code."""
    remote, local = rcli(*args), embedded(rcli)(*args)
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    return remote


@pytest.mark.parametrize("memory", ["1K", "8M", "15M"])
def test_a_memory_below_16M_is_a_mistake_of_the_stack_file_at_its_line(d, rcli, memory):
    """`memory: 8M` passed the file's check (the schema's minimum 16 holds
    for a bare number of MiB only), then the server refused it as "field
    'limits.memory_bytes' must be 0 (the default) or at least 16777216" —
    a field the file does not have, at no line, exit 2 — and without a
    server it was "this needs a server". Now a mistake of the file, at
    its line, exit 3, the same both ways (as `deploy --memory 8M` is a
    usage error on both)."""
    rcli.write("fns/add.py", "def add(a: int = 1):\n    return a\n")
    rcli.write("stack.yaml", f"functions:\n  smallmem:\n    file: fns/add.py\n    memory: {memory}\n")
    p = both_ways(rcli, "deploy", "-f", "stack.yaml")
    assert (p.returncode, p.stdout) == (3, ""), p
    assert p.stderr == f"pysprinter: stack.yaml:4:13: '{memory}' is below the minimum 16M\n", p.stderr
    assert "smallmem" not in functions(d)
    # 16M is fine.
    rcli.write("stack.yaml", "functions:\n  smallmem:\n    file: fns/add.py\n    memory: 16M\n")
    assert rcli("deploy", "-f", "stack.yaml", "--dry-run").returncode == 0


@pytest.mark.parametrize("args", [["-f"], ["--file"], ["--prune", "-f"], ["--file="]])
def test_f_without_a_file_says_so(rcli, args):
    """`deploy -f` at the end of the line said "unexpected argument '-f'
    (a stack file says everything else)": the option the user did give
    called unexpected. Now it says what is missing, exit 2, both ways."""
    p = both_ways(rcli, "deploy", *args)
    assert p.returncode == 2, p
    assert p.stderr.startswith("pysprinter: deploy -f needs a stack file: deploy -f STACK.yaml\n"), p.stderr


def test_a_header_named_twice_in_two_cases_is_a_malformed_response(d):
    """Field names are case-insensitive (RFC 9110 5.1): {"Content-Type":
    "text/plain", "content-type": "text/html"} went out as two
    Content-Type fields, which a browser may read either way (text shown
    as HTML). The function's mistake: 502, and its run says which."""
    st, h, body = d.request("GET", "/fn/alice/twice", token=None)
    assert st == 502, (st, h, body)
    run = d.wait_status(h["x-request-id"], ["failed"])
    assert run["error"]["type"] == "MalformedResponse", run
    assert 'header "content-type": named twice (as "Content-Type" too)' in run["error"]["message"], run
    st, h, body = d.request("GET", "/fn/alice/twice/fine", token=None)
    assert (st, h["content-type"], body) == (200, "text/plain", b"<b>x</b>")


# ---- function URLs: the path ---------------------------------------------------


@pytest.mark.parametrize("rest", ["/v1/users/42/orders/7", "/a/b/c/d/e/f/g/h/i/j", "/" + "k" * 300 + "/x",
                                  "/files//double", "/a%2Fb/c/d/e"],
                         ids=["rest-route", "deep", "long-segment", "double-slash", "encoded-slash"])
def test_a_function_url_takes_any_path_below_the_name(d, rest):
    """A REST route (`/users/42/orders/7`), a long segment (a token, a
    file name) or `//` reach the function as its rawPath, as a Lambda
    function URL passes any path on; they were 404 — the router's limit
    of 6 segments of at most 255 bytes, none empty, applied to the
    function's own path."""
    st, h, body = d.request("GET", f"/fn/alice/echo{rest}?q=1", token=None)
    assert st == 200, (st, body)
    assert json.loads(body) == {"rawPath": rest, "path": rest, "query": "q=1", "params": {"q": "1"}}
    # A method the URL does not take is still 405 there, with Allow.
    st, h, _ = d.request("TRACE", f"/fn/alice/echo{rest}", token=None)
    assert st == 405 and "GET" in h["allow"], (st, h)
    # The tenant and the name are still whole segments.
    for bad in ["/fn/alice//echo/x", "/fn//alice/echo/x"]:
        assert d.request("GET", bad, token=None)[0] == 404, bad


@pytest.mark.parametrize("query, params", [("a=1&&b=2", {"a": "1", "b": "2"}), ("&a=1", {"a": "1"}),
                                           ("a=1&&", {"a": "1"}), ("&&", None), ("a&b=", {"a": "", "b": ""}),
                                           ("=x", {"": "x"})])
def test_an_empty_pair_of_the_query_is_no_parameter(d, query, params):
    """`?a=1&&b=2` (a URL builder's empty parameter) gave the function a
    parameter named "" ({"a": "1", "": "", "b": "2"}), which no query
    parser (Python's parse_qs, a Lambda URL's event) makes of it; an empty
    pair is a separator's repeat, not a parameter. rawQueryString keeps
    the query as sent."""
    st, h, body = d.request("GET", f"/fn/alice/echo/q?{query}", token=None)
    assert st == 200, (st, body)
    out = json.loads(body)
    assert (out["query"], out["params"]) == (query, params), out


# ---- two deploys at once ---------------------------------------------------------


def test_a_stack_planned_while_another_deploy_wrote_still_deploys_its_own_code(d, rcli):
    """The stack is planned (each item compared with what is stored) while
    its files are validated, before its transaction. A deploy of f that
    lands meanwhile (here while the stack's validation of g waits on a
    held worker) left f with that deploy's code (and the URL it gave f),
    and the stack said "unchanged function f": the file's code was not
    what ran, and f had a URL the file does not give it. The stack plans
    again inside its transaction: f gets the file's code back and no URL,
    as the last deploy to end, and the plan printed says so."""
    if not shutil.which("ss"):
        pytest.skip("needs ss (iproute2) to see the held request")
    f1, f2 = "def f():\n    return 'file'\n", "def f():\n    return 'other'\n"
    rcli.write("fns/f.py", f1)
    rcli.write("fns/g.py", "def g():\n    return 1\n")
    rcli.write("stack.yaml", "functions:\n  racef:\n    file: fns/f.py\n  raceg:\n    file: fns/g.py\n")
    rcli("deploy", "-f", "stack.yaml", check=0)
    # The other deploy's source, validated once (its validation is then
    # answered without a worker).
    st, b = d.call("POST", "/v1/functions", {"name": "racef-warm", "source": f2, "filename": "f.py"})
    assert st == 201, b
    rcli.write("fns/g.py", "def g():\n    return 2\n")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with workers_held(d):
            deploying = pool.submit(rcli, "deploy", "-f", "stack.yaml", timeout=300)
            wait_for(lambda: _held_worker_request(d.proc.pid), "the stack's validation of g to wait on a worker")
            st, b = d.call("POST", "/v1/functions", {"name": "racef", "source": f2, "filename": "f.py",
                                                     "url": True})
            assert st == 201 and b["version"] == 2, b
        p = deploying.result()
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["updated function racef", "updated function raceg",
                                     "deleted endpoint racef"], p.stdout
    st, f = d.call("GET", "/v1/functions/racef?source=true")
    assert (f["version"], f["source"], f["url"]) == (3, f1, None), f


def test_env_values_are_sent_as_the_text_written(d, rcli):
    """"values are sent as text" (docs/stack.md), but the text sent was the
    number's JSON: `VERSION: 3.10` reached the function as
    "3.1000000000000001", `ZIP: 01234` as "1234", `MASK: 0x1F` as "31",
    `N: 1e3` as "1000.0". Now the scalar as the file writes it."""
    rcli.write("fns/envv.py", "import os\n\ndef envv():\n"
                              "    return {k: os.environ.get(k) for k in 'VERSION ZIP MASK FLAG N HALF S'.split()}\n")
    rcli.write("stack.yaml", "functions:\n  envv:\n    file: fns/envv.py\n"
                             "    env: {VERSION: 3.10, ZIP: 01234, MASK: 0x1F, FLAG: True, N: 1e3, HALF: 1.50, S: 'x y'}\n")
    rcli("deploy", "-f", "stack.yaml", check=0)
    p = rcli("invoke", "envv", "--json", check=0)
    assert json.loads(p.stdout) == {"VERSION": "3.10", "ZIP": "01234", "MASK": "0x1F", "FLAG": "True", "N": "1e3",
                                    "HALF": "1.50", "S": "x y"}, p.stdout


def test_a_scalar_out_of_range_is_reported_once_at_its_place(rcli):
    """A number beyond what JSON holds was reported with its place twice:
    "stack.yaml:4:14: stack.yaml:4:14: '1234…' is out of range"."""
    rcli.write("fns/add.py", "def add(a: int = 1):\n    return a\n")
    rcli.write("stack.yaml", "functions:\n  big:\n    file: fns/add.py\n    env: {B: 12345678901234567890}\n")
    p = both_ways(rcli, "deploy", "-f", "stack.yaml")
    assert (p.returncode, p.stdout) == (3, ""), p
    assert p.stderr == ("pysprinter: stack.yaml:4:14: '12345678901234567890' is out of range for a JSON number "
                        "(quote it to keep the text)\n"), p.stderr


# ---- the server's refusals, at their place in the file ----------------------------


@pytest.mark.parametrize("edit, place, message", [
    (("    file: fns/two.py\n", "    file: fns/two.py\n    secrets: [NO_SUCH]\n"), "stack.yaml:5:3:",
     "function 'two': no secret named 'NO_SUCH'"),
    (("    file: fns/two.py\n", "    file: fns/two.py\n    function: nope\n"), "stack.yaml:5:3:",
     "function 'two': ValidationError: no top-level function 'nope' in fns/two.py"),
    (("every: 1h", "every: 1h, tz: Mars/Olympus"), "stack.yaml:9:7:",
     "schedule 'two-hourly': time zone 'Mars/Olympus' is not in the tz database"),
    (("args: [2]", "args: [2, 3]"), "stack.yaml:9:7:",
     "schedule 'two-hourly': ValidationError: two() takes 1 positional argument but 2 were given"),
], ids=["secret", "function", "tz", "arguments"])
def test_a_refusal_of_the_server_names_its_place_in_the_stack_file(d, rcli, edit, place, message):
    """The file's own mistakes are at FILE:LINE:COL; the server's — a
    secret the tenant lacks, a function not in its file, a time zone, a
    schedule's arguments — named the function or schedule only, and in a
    long stack the user searched for it. Now at the place of its name in
    the file, as cfn-lint and `sam validate` point at a resource."""
    rcli.write("fns/one.py", "def one():\n    return 1\n")
    rcli.write("fns/two.py", "def two(n: int = 1):\n    return n\n")
    stack = ("functions:\n  one:\n    file: fns/one.py\n    url: true\n  two:\n    file: fns/two.py\n"
             "    schedules:\n      # hourly\n      two-hourly: {every: 1h, args: [2]}\n")
    assert edit[0] in stack
    rcli.write("stack.yaml", stack.replace(*edit))
    before = functions(d)
    p = rcli("deploy", "-f", "stack.yaml")
    assert p.returncode != 0 and p.stdout == "", p
    assert p.stderr.startswith(f"pysprinter: {place} {message}"), p.stderr
    assert functions(d) == before
