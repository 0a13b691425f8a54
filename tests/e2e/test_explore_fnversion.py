"""Deleting one version of a deployed function, as an AWS Lambda user
expects DeleteFunction with a Qualifier to: `pysprinter functions rm
NAME:2` (NAME::2, an ARN ending :2), `DELETE /v1/functions/NAME?version=2`
and `DELETE /2015-03-31/functions/NAME?Qualifier=2`. Before, the CLI
refused the version ("takes every version"), the native route ignored
?version= (and deleted every version), and the Lambda route had no DELETE
at all (404 "no such endpoint")."""
import json
import sys
import time

import pytest

from clusterlib import REDIS
from conftest import DAEMON, ROOT
from daemonlib import TOKENS, Daemon, sandbox_mode
from test_cluster import nodes, redis  # noqa: F401 (fixtures)

sys.path.insert(0, str(ROOT / "python"))

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SRC = """
def handler(event, context):
    return {"v": %d, "event": event}
"""

SLOW = """
import time
def handler(event, context):
    time.sleep(float(event.get("s", 0)))
    return "slept"
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("fnversion")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        yield daemon


def deploy(d, name, n, token="alice", source=None):
    """n versions of name: version k returns {"v": k, …}."""
    for k in range(1, n + 1):
        st, b = d.call("POST", "/v1/functions", {"name": name, "source": source or SRC % k}, token=token)
        assert st == 201, b
    return b["version"]


def versions(d, name, token="alice"):
    st, b = d.call("GET", f"/v1/functions/{name}", token=token)
    return b["versions"] if st == 200 else st


def remote(cli, d, *args):
    return cli(*args, "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})


def lambda_delete(d, ref, qualifier=None, token="alice"):
    q = f"?Qualifier={qualifier}" if qualifier else ""
    return d.request("DELETE", f"/2015-03-31/functions/{ref}{q}", token=token)


# ---- the CLI --------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["cli1:1", "cli1::1", "arn:aws:lambda:us-east-1:123456789012:function:cli1:1"])
def test_functions_rm_of_one_version_deletes_only_it(cli, d, spelling):
    name = "cli1"
    d.call("DELETE", f"/v1/functions/{name}")
    deploy(d, name, 3)
    p = remote(cli, d, "functions", "rm", spelling)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"deleted {name} version 1\n", ""), p
    assert versions(d, name) == [2, 3]
    # Its invokes are the "no version" 404 of a version never deployed.
    p = remote(cli, d, "invoke", f"{name}::1", "--payload", "{}")
    assert p.returncode == 2 and f"function '{name}' has no version 1" in p.stderr, p.stderr
    p = remote(cli, d, "invoke", name, "--payload", '{"x": 1}', "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["v"] == 3, (p.stdout, p.stderr)
    # Deleting it again says it is not there.
    p = remote(cli, d, "functions", "rm", f"{name}:1")
    assert p.returncode == 2 and f"function '{name}' has no version 1" in p.stderr, p.stderr


def test_the_latest_version_is_not_deleted_alone(cli, d):
    """The latest version is what NAME and $LATEST run: deleting it alone
    would turn every unqualified invoke back to older code (and free its
    number for the next deploy). Refused; the function stays whole."""
    deploy(d, "last", 2)
    for word in ("last:2", "last::2"):
        p = remote(cli, d, "functions", "rm", word)
        assert p.returncode == 2 and p.stdout == "", p
        assert "version 2 is the latest of 'last'" in p.stderr and "functions rm last" in p.stderr, p.stderr
    for word in ("last:$LATEST", "last::$LATEST"):
        p = remote(cli, d, "functions", "rm", word)
        assert p.returncode == 2 and p.stdout == "" and "$LATEST" in p.stderr, p
    assert versions(d, "last") == [1, 2]
    # The only version is the latest too.
    deploy(d, "only", 1)
    p = remote(cli, d, "functions", "rm", "only:1")
    assert p.returncode == 2 and "latest" in p.stderr, p.stderr
    assert versions(d, "only") == [1]


def test_a_deleted_versions_number_is_never_given_again(cli, d):
    deploy(d, "renum", 3)
    assert remote(cli, d, "functions", "rm", "renum:2").returncode == 0
    st, b = d.call("POST", "/v1/functions", {"name": "renum", "source": SRC % 4})
    assert (st, b["version"]) == (201, 4), b
    assert versions(d, "renum") == [1, 3, 4]


def test_a_version_a_schedule_pins_is_refused_naming_it(cli, d):
    """Lambda refuses to delete a version an alias points to; here a
    schedule pinned to the version (`schedule add NAME::2`) is what points."""
    deploy(d, "pinned", 3)
    st, b = d.call("POST", "/v1/schedules", {"name": "nightly-pin", "function": "pinned", "version": 2,
                                             "every": "1h", "paused": True, "args": [{}, None]})
    assert st == 201, b
    p = remote(cli, d, "functions", "rm", "pinned:2")
    assert p.returncode == 2 and p.stdout == "", p
    assert "schedule 'nightly-pin'" in p.stderr and "version 2" in p.stderr, p.stderr
    assert versions(d, "pinned") == [1, 2, 3]
    # An unpinned one does not hold version 1; the pin holds only its own.
    assert remote(cli, d, "functions", "rm", "pinned:1").returncode == 0
    assert d.call("DELETE", "/v1/schedules/nightly-pin")[0] == 200
    p = remote(cli, d, "functions", "rm", "pinned:2")
    assert p.returncode == 0, p.stderr
    assert versions(d, "pinned") == [3]


@pytest.mark.parametrize("args", [
    ["functions", "rm", "x:01"], ["functions", "rm", "x:$LATEST"], ["functions", "rm", "x::"],
    ["functions", "rm", "x:1"], ["functions", "rm", "x"],
])
def test_embedded_and_remote_say_the_same_before_any_server(cli, d, args):
    """The usage errors come before any backend: the same bytes and exit
    code embedded and against a daemon. A valid name embedded is `needs a
    server` (deployed functions live in pysprinterd) for one version as for
    all."""
    here = cli(*args)
    assert here.returncode == 2 and here.stdout == "", here
    if args[-1] in ("x:1", "x"):
        assert "needs a server" in here.stderr, here.stderr
        return
    there = remote(cli, d, *args)
    assert (here.returncode, here.stdout, here.stderr) == (there.returncode, there.stdout, there.stderr)


# ---- the native route -----------------------------------------------------------


def test_native_delete_with_version(d):
    deploy(d, "nat", 3)
    st, b = d.call("DELETE", "/v1/functions/nat?version=2")
    assert st == 200 and b["deleted"] is True and (b["name"], b["version"]) == ("nat", 2), b
    assert versions(d, "nat") == [1, 3]
    st, b = d.call("GET", "/v1/functions/nat?version=2")
    assert st == 404 and "function 'nat' has no version 2" in b["error"]["message"], b
    st, b = d.call("POST", "/v1/functions/nat/invoke?wait=true", {"args": [{}, None], "version": 2})
    assert st == 404 and "no version 2" in b["error"]["message"], b
    st, b = d.call("DELETE", "/v1/functions/nat?version=3")
    assert st == 409 and b["error"]["code"] == "conflict", b
    st, b = d.call("DELETE", "/v1/functions/nat?version=$LATEST")
    assert st == 400 and "$LATEST" in b["error"]["message"], b
    st, b = d.call("DELETE", "/v1/functions/nat?version=x")
    assert st == 400, b
    st, b = d.call("DELETE", "/v1/functions/nat?version=9")
    assert st == 404 and "function 'nat' has no version 9" in b["error"]["message"], b
    assert versions(d, "nat") == [1, 3]


def test_another_tenants_version_stays_unreachable(d):
    deploy(d, "mine", 2)
    st, b = d.call("DELETE", "/v1/functions/mine?version=1", token="bob")
    assert st == 404 and "no deployed function 'mine'" in b["error"]["message"], b
    st, h, body = lambda_delete(d, "mine", "1", token="bob")
    assert st == 404 and h.get("x-amzn-errortype") == "ResourceNotFoundException", (st, h, body)
    assert versions(d, "mine") == [1, 2]
    # bob's namesake is his own.
    deploy(d, "mine", 2, token="bob")
    st, b = d.call("DELETE", "/v1/functions/mine?version=1", token="bob")
    assert st == 200, b
    assert versions(d, "mine") == [1, 2] and versions(d, "mine", token="bob") == [2]


def test_a_version_being_invoked_finishes_and_its_instances_retire(d):
    """A busy invocation of the version ends as it would have; its warm
    instance is retired (none of it is listed after), later invokes of it
    are 404, the other versions' instances are untouched."""
    deploy(d, "busy", 2, source=SLOW)
    for v in (1, 2):  # a warm instance of each version
        st, b = d.call("POST", "/v1/functions/busy/invoke?wait=true", {"args": [{}, None], "version": v})
        assert st == 200 and b["status"] == "succeeded", b
    st, run = d.call("POST", "/v1/functions/busy/invoke", {"args": [{"s": 4}, None], "version": 1})
    assert st in (200, 201, 202), run
    running = d.wait_status(run["id"], ["running", "succeeded", "failed"])
    assert running["status"] == "running", running
    st, b = d.call("DELETE", "/v1/functions/busy?version=1")
    assert st == 200 and b["instances_retired"] >= 1, b
    done = d.wait_status(run["id"], ["succeeded", "failed", "killed", "error", "cancelled"])
    assert done["status"] == "succeeded" and done["result"] == "slept", done
    assert (done["fn_name"], done["fn_version"]) == ("busy", 1), done
    # The retired instance goes once its invocation has handed it back.
    deadline = time.time() + 60
    while True:
        st, w = d.call("GET", "/v1/workers")
        kept = [i.get("function") or "" for i in w["workers"] if i.get("kind") == "instance"]
        if not [f for f in kept if f.startswith("busy@1~")] or time.time() > deadline:
            break
        time.sleep(0.1)
    assert not [f for f in kept if f.startswith("busy@1~")], kept
    assert [f for f in kept if f.startswith("busy@2~")], kept
    st, b = d.call("POST", "/v1/functions/busy/invoke?wait=true", {"args": [{}, None], "version": 1})
    assert st == 404, b
    # Its runs' history stays.
    st, b = d.call("GET", f"/v1/runs/{run['id']}")
    assert st == 200 and b["status"] == "succeeded", b
    st, runs = d.call("GET", "/v1/functions/busy/runs")
    assert run["id"] in [r["id"] for r in runs["runs"]], runs


# ---- the Lambda route -----------------------------------------------------------


def test_lambda_delete_function_with_a_qualifier(d):
    deploy(d, "lam", 3)
    st, h, body = lambda_delete(d, "lam", "1")
    assert (st, body) == (204, b""), (st, body)
    assert versions(d, "lam") == [2, 3]
    st, h, body = d.request("GET", "/2015-03-31/functions/lam?Qualifier=1")
    assert st == 404 and h.get("x-amzn-errortype") == "ResourceNotFoundException", (st, body)
    # NAME:Q and the ARN say the same.
    st, h, body = lambda_delete(d, "arn:aws:lambda:us-east-1:123456789012:function:lam:1")
    assert st == 404 and h.get("x-amzn-errortype") == "ResourceNotFoundException", (st, body)
    st, h, body = lambda_delete(d, "lam", "$LATEST")
    assert st == 400 and h.get("x-amzn-errortype") == "InvalidParameterValueException", (st, body)
    st, h, body = lambda_delete(d, "lam:3")
    assert st == 409 and h.get("x-amzn-errortype") == "ResourceConflictException", (st, body)
    assert "latest" in json.loads(body)["message"], body
    st, h, body = lambda_delete(d, "lam:2", "3")
    assert st == 400 and h.get("x-amzn-errortype") == "InvalidParameterValueException", (st, body)
    assert versions(d, "lam") == [2, 3]
    # Unqualified: the function with every version.
    st, h, body = lambda_delete(d, "lam")
    assert (st, body) == (204, b""), (st, body)
    assert versions(d, "lam") == 404
    st, h, body = lambda_delete(d, "lam")
    assert st == 404 and h.get("x-amzn-errortype") == "ResourceNotFoundException", (st, body)
    assert json.loads(body)["message"].startswith("Function not found: arn:aws:lambda:"), body


def test_lambda_delete_of_a_pinned_version_is_a_conflict_naming_the_schedule(d):
    deploy(d, "lpin", 2)
    st, b = d.call("POST", "/v1/schedules", {"name": "lpin-sched", "function": "lpin", "version": 1,
                                             "every": "1h", "paused": True, "args": [{}, None]})
    assert st == 201, b
    st, h, body = lambda_delete(d, "lpin", "1")
    assert st == 409 and h.get("x-amzn-errortype") == "ResourceConflictException", (st, body)
    assert "lpin-sched" in json.loads(body)["message"], body
    assert versions(d, "lpin") == [1, 2]


def test_the_python_clients_delete_function_takes_a_version(d):
    from pysprinter.client import Client
    deploy(d, "pyc", 2)
    with Client(d.url, token=TOKENS["alice"]) as c:
        b = c.delete_function("pyc:1")
        assert (b["deleted"], b["version"]) == (True, 1), b
        assert c.function("pyc")["versions"] == [2]


# ---- a cluster: the versions are Redis's ----------------------------------------


@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_a_version_deleted_through_one_gateway_is_gone_on_every_one(nodes):
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker")
    assert deploy(g1, "cl", 3) == 3
    st, b = g2.call("DELETE", "/v1/functions/cl?version=1")
    assert st == 200 and b["version"] == 1, b
    st, h, body = lambda_delete(g1, "cl", "3")
    assert st == 409 and h.get("x-amzn-errortype") == "ResourceConflictException", (st, body)
    for gw in (g1, g2):
        assert versions(gw, "cl") == [2, 3]
        st, b = gw.call("POST", "/v1/functions/cl/invoke?wait=true", {"args": [{}, None], "version": 1})
        assert st == 404 and "no version 1" in b["error"]["message"], b
    st, b = g2.call("DELETE", "/v1/functions/cl?version=2", token="bob")
    assert st == 404, b
    st, b = g2.call("POST", "/v1/functions", {"name": "cl", "source": SRC % 4})
    assert (st, b["version"]) == (201, 4), b
    st, b = g1.call("POST", "/v1/functions/cl/invoke?wait=true", {"args": [{}, None]})
    assert st == 200 and b["result"]["v"] == 4, b
