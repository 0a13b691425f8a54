"""Function aliases, as AWS Lambda's: a name (`prod`) that points at one
version of a deployed function and moves to another without its callers
changing (blue/green). Native routes /v1/functions/NAME/aliases[/ALIAS],
Lambda's CreateAlias/GetAlias/UpdateAlias/DeleteAlias/ListAliases, and an
alias wherever a version qualifier is read (?version=, ?Qualifier=,
NAME:ALIAS, `pysprinter invoke NAME::ALIAS`). Before, every alias route
was 404 "no such endpoint" and a qualifier that was not a number was
refused."""
import json
import sys

import pytest

from conftest import DAEMON, ROOT
from daemonlib import TOKENS, Daemon, sandbox_mode
from test_cluster import nodes, redis  # noqa: F401 (fixtures)

sys.path.insert(0, str(ROOT / "python"))

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SRC = """
def handler(event, context):
    return {"v": %d}
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("alias")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        yield daemon


def deploy(d, name, n, token="alice"):
    """A fresh name with n versions: version k returns {"v": k}."""
    d.call("DELETE", f"/v1/functions/{name}", token=token)
    for k in range(1, n + 1):
        st, b = d.call("POST", "/v1/functions", {"name": name, "source": SRC % k}, token=token)
        assert st == 201, b
    return b["version"]


def put_alias(d, name, alias, version, token="alice", **kw):
    return d.call("PUT", f"/v1/functions/{name}/aliases/{alias}", {"version": version, **kw}, token=token)


def invoke(d, name, q, token="alice"):
    st, b = d.call("POST", f"/v1/functions/{name}/invoke?wait=true&version={q}", {"args": [{}, None]}, token=token)
    return st, b


def lambda_call(d, method, path, body=None, token="alice"):
    st, h, data = d.request(method, "/2015-03-31/functions/" + path, body, token=token)
    return st, h.get("x-amzn-errortype"), (json.loads(data) if data else None)


def test_create_move_delete_and_invoke_through_an_alias(d):
    deploy(d, "bg", 3)
    st, b = put_alias(d, "bg", "prod", 2, description="blue")
    assert st == 201 and (b["name"], b["version"], b["description"], b["created"]) == ("prod", 2, "blue", True), b
    st, b = invoke(d, "bg", "prod")
    assert st == 200 and b["result"] == {"v": 2}, b
    # The run records the version the alias resolved to.
    st, run = d.call("GET", f"/v1/runs/{b['id']}")
    assert run["fn_version"] == 2, run
    # Moved: the same callers now run version 3.
    st, b = put_alias(d, "bg", "prod", 3, description="green")
    assert st == 200 and b["created"] is False and b["version"] == 3, b
    st, b = invoke(d, "bg", "prod")
    assert st == 200 and b["result"] == {"v": 3}, b
    st, b = d.call("GET", "/v1/functions/bg/aliases/prod")
    assert st == 200 and (b["version"], b["description"]) == (3, "green"), b
    put_alias(d, "bg", "canary", 1)
    st, b = d.call("GET", "/v1/functions/bg/aliases")
    assert st == 200 and [(a["name"], a["version"]) for a in b["aliases"]] == [("canary", 1), ("prod", 3)], b
    st, b = d.call("GET", "/v1/functions/bg")
    assert [a["name"] for a in b["aliases"]] == ["canary", "prod"], b
    # GET of the function at an alias is that version.
    st, b = d.call("GET", "/v1/functions/bg?version=canary")
    assert st == 200 and b["version"] == 1, b
    st, b = d.call("DELETE", "/v1/functions/bg/aliases/canary")
    assert st == 200 and b["deleted"], b
    st, b = d.call("GET", "/v1/functions/bg/aliases/canary")
    assert st == 404 and "no alias 'canary'" in b["error"]["message"], b
    st, b = d.call("DELETE", "/v1/functions/bg/aliases/canary")
    assert st == 404, b
    st, b = invoke(d, "bg", "canary")
    assert st == 404 and "no alias 'canary'" in b["error"]["message"], b


def test_an_alias_names_an_existing_version(d):
    deploy(d, "ex", 2)
    st, b = put_alias(d, "ex", "prod", 7)
    assert st == 404 and "no version 7" in b["error"]["message"], b
    st, b = d.call("PUT", "/v1/functions/nope/aliases/prod", {"version": 1})
    assert st == 404 and "no deployed function 'nope'" in b["error"]["message"], b
    st, b = d.call("PUT", "/v1/functions/ex/aliases/prod", {"version": "1"})
    assert st == 400, b
    d.call("DELETE", "/v1/functions/ex?version=1")
    st, b = put_alias(d, "ex", "prod", 1)
    assert st == 404, b


@pytest.mark.parametrize("alias", ["123", "$LATEST", "a.b", "x" * 129, "a%20b"])
def test_alias_names_lambda_refuses_are_400(d, alias):
    deploy(d, "nm", 1)
    st, b = put_alias(d, "nm", alias, 1)
    assert st == 400, (alias, st, b)


@pytest.mark.parametrize("alias", ["prod", "x" * 128, "v-1_b", "1a"])
def test_alias_names_lambda_takes(d, alias):
    deploy(d, "nm2", 1)
    st, b = put_alias(d, "nm2", alias, 1)
    assert st == 201, (alias, b)


def test_a_version_an_alias_points_at_is_not_deleted(d):
    deploy(d, "pin", 3)
    put_alias(d, "pin", "stable", 1)
    st, b = d.call("DELETE", "/v1/functions/pin?version=1")
    assert st == 409 and "alias 'stable'" in b["error"]["message"], b
    st, h, body = lambda_call(d, "DELETE", "pin?Qualifier=1")
    assert st == 409 and h == "ResourceConflictException", (st, body)
    assert d.call("GET", "/v1/functions/pin")[1]["versions"] == [1, 2, 3]
    # Moved away, the version goes.
    put_alias(d, "pin", "stable", 2)
    st, b = d.call("DELETE", "/v1/functions/pin?version=1")
    assert st == 200, b


def test_deleting_the_function_deletes_its_aliases(d):
    deploy(d, "gone", 2)
    put_alias(d, "gone", "prod", 1)
    st, b = d.call("DELETE", "/v1/functions/gone")
    assert st == 200, b
    st, b = d.call("POST", "/v1/functions", {"name": "gone", "source": SRC % 9})
    assert st == 201 and b["version"] == 1, b
    # The new version 1 is not what the old alias named: no alias left.
    st, b = d.call("GET", "/v1/functions/gone/aliases")
    assert st == 200 and b["aliases"] == [], b
    st, b = invoke(d, "gone", "prod")
    assert st == 404, b


def test_tenants_and_readonly_tokens(d):
    deploy(d, "mine", 2)
    put_alias(d, "mine", "prod", 1)
    st, b = d.call("GET", "/v1/functions/mine/aliases/prod", token="bob")
    assert st == 404, b
    st, b = put_alias(d, "mine", "prod", 2, token="bob")
    assert st == 404, b
    st, b = invoke(d, "mine", "prod", token="bob")
    assert st == 404, b
    st, b = put_alias(d, "mine", "prod", 2, token="reader")
    assert st == 403, b
    st, b = d.call("DELETE", "/v1/functions/mine/aliases/prod", token="reader")
    assert st == 403, b
    st, b = d.call("GET", "/v1/functions/mine/aliases/prod", token="reader")
    assert st == 200 and b["version"] == 1, b


def test_lambda_alias_api(d):
    deploy(d, "lam", 3)
    st, t, b = lambda_call(d, "POST", "lam/aliases", {"Name": "live", "FunctionVersion": "2", "Description": "d"})
    assert st == 201, (st, t, b)
    assert b["AliasArn"].endswith(":function:lam:live") and b["Name"] == "live", b
    assert (b["FunctionVersion"], b["Description"]) == ("2", "d") and b["RevisionId"], b
    st, t, b = lambda_call(d, "POST", "lam/aliases", {"Name": "live", "FunctionVersion": "1"})
    assert (st, t) == (409, "ResourceConflictException"), b
    st, t, b = lambda_call(d, "POST", "lam/aliases", {"Name": "7", "FunctionVersion": "1"})
    assert (st, t) == (400, "InvalidParameterValueException"), b
    st, t, b = lambda_call(d, "POST", "lam/aliases", {"Name": "x", "FunctionVersion": "9"})
    assert (st, t) == (404, "ResourceNotFoundException"), b
    st, t, b = lambda_call(d, "GET", "lam/aliases/live")
    assert st == 200 and b["FunctionVersion"] == "2", b
    st, t, b = lambda_call(d, "GET", "lam/aliases/nope")
    assert (st, t) == (404, "ResourceNotFoundException"), b
    st, t, b = lambda_call(d, "PUT", "lam/aliases/live", {"FunctionVersion": "3"})
    assert st == 200 and (b["FunctionVersion"], b["Description"]) == ("3", "d"), b
    st, t, b = lambda_call(d, "PUT", "lam/aliases/nope", {"FunctionVersion": "3"})
    assert (st, t) == (404, "ResourceNotFoundException"), b
    st, t, b = lambda_call(d, "GET", "lam/configuration?Qualifier=live")
    assert st == 200 and b["Version"] == "3" and b["FunctionArn"].endswith(":function:lam:live"), b
    st, t, b = lambda_call(d, "GET", "lam/aliases")
    assert st == 200 and [a["Name"] for a in b["Aliases"]] == ["live"], b
    # Invoked by Qualifier and by NAME:ALIAS: the version it points at.
    for path in ("lam/invocations?Qualifier=live", "lam:live/invocations",
                 "arn:aws:lambda:local:000000000000:function:lam:live/invocations"):
        st, h, data = d.request("POST", "/2015-03-31/functions/" + path, {})
        assert st == 200 and json.loads(data) == {"v": 3}, (path, st, data)
        assert h.get("x-amz-executed-version") == "3", h
    st, h, data = d.request("POST", "/2015-03-31/functions/lam:nope/invocations", {})
    assert st == 404, (st, data)
    st, t, b = lambda_call(d, "DELETE", "lam/aliases/live")
    assert st == 204, b
    st, t, b = lambda_call(d, "GET", "lam/aliases/live")
    assert st == 404, b
    st, t, b = lambda_call(d, "GET", "nope/aliases")
    assert (st, t) == (404, "ResourceNotFoundException"), b


def test_cli_invokes_and_sets_aliases(cli, d):
    deploy(d, "cl", 2)
    env = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
    p = cli("functions", "alias", "cl", "prod", "1", "--server", d.url, env=env)
    assert p.returncode == 0, p
    p = cli("invoke", "cl::prod", "--payload", "{}", "--json", "--server", d.url, env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == {"v": 1}, (p.stdout, p.stderr)
    p = cli("functions", "alias", "cl", "prod", "2", "--server", d.url, env=env)
    assert p.returncode == 0, p
    p = cli("invoke", "cl::prod", "--payload", "{}", "--json", "--server", d.url, env=env)
    assert p.returncode == 0 and json.loads(p.stdout) == {"v": 2}, (p.stdout, p.stderr)
    p = cli("functions", "aliases", "cl", "--server", d.url, env=env)
    assert p.returncode == 0 and "prod" in p.stdout and "2" in p.stdout, p
    p = cli("functions", "show", "cl", "--server", d.url, env=env)
    assert p.returncode == 0 and "prod" in p.stdout, p
    p = cli("functions", "alias", "rm", "cl", "prod", "--server", d.url, env=env)
    assert p.returncode == 0, p
    p = cli("invoke", "cl::prod", "--payload", "{}", "--server", d.url, env=env)
    assert p.returncode != 0 and "prod" in p.stderr, p


def test_aliases_outlive_a_restart(tmp_path):
    daemon = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path))
    with daemon.serving() as d:
        deploy(d, "keep", 2)
        assert put_alias(d, "keep", "prod", 1)[0] == 201
    with daemon.serving() as d:
        st, b = d.call("GET", "/v1/functions/keep/aliases/prod")
        assert st == 200 and b["version"] == 1, b
        st, b = invoke(d, "keep", "prod")
        assert st == 200 and b["result"] == {"v": 1}, b


def test_cluster_alias_set_on_one_gateway_is_used_on_another(nodes):
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    nodes("w1", "worker")
    deploy(g1, "cf", 3)
    st, b = put_alias(g1, "cf", "prod", 2)
    assert st == 201, b
    st, b = invoke(g2, "cf", "prod")
    assert st == 200 and b["result"] == {"v": 2}, b
    st, run = g2.call("GET", f"/v1/runs/{b['id']}")
    assert run["fn_version"] == 2, run
    st, b = put_alias(g2, "cf", "prod", 2)
    assert st == 200 and b["created"] is False, b
    st, t, b = lambda_call(g1, "POST", "cf/aliases", {"Name": "prod", "FunctionVersion": "1"})
    assert (st, t) == (409, "ResourceConflictException"), b
    st, b = g2.call("DELETE", "/v1/functions/cf?version=2")
    assert st == 409 and "alias 'prod'" in b["error"]["message"], b
    st, b = g1.call("GET", "/v1/functions/cf/aliases")
    assert [(a["name"], a["version"]) for a in b["aliases"]] == [("prod", 2)], b
    st, b = g1.call("PUT", "/v1/functions/cf/aliases/x", {"version": 9})
    assert st == 404, b
    st, b = g1.call("GET", "/v1/functions/cf/aliases/prod", token="bob")
    assert st == 404, b
    st, b = g2.call("DELETE", "/v1/functions/cf")
    assert st == 200, b
    st, b = g1.call("POST", "/v1/functions", {"name": "cf", "source": SRC % 5})
    assert st == 201 and b["version"] == 1, b
    st, b = g1.call("GET", "/v1/functions/cf/aliases")
    assert st == 200 and b["aliases"] == [], b


def test_boto3_alias_calls(d):
    """Through boto3 (SigV4, its own request shapes and error parsing)."""
    boto3 = pytest.importorskip("boto3", reason="python3-boto3 is not installed")
    from botocore.config import Config
    from daemonlib import KEYS
    key_id, secret = KEYS["alice"]
    c = boto3.client("lambda", endpoint_url=d.url, region_name="us-east-1", aws_access_key_id=key_id,
                     aws_secret_access_key=secret, config=Config(retries={"max_attempts": 0}, read_timeout=120))
    deploy(d, "bo", 3)
    a = c.create_alias(FunctionName="bo", Name="prod", FunctionVersion="1", Description="first")
    assert (a["Name"], a["FunctionVersion"], a["Description"]) == ("prod", "1", "first"), a
    with pytest.raises(c.exceptions.ResourceConflictException):
        c.create_alias(FunctionName="bo", Name="prod", FunctionVersion="2")
    r = c.invoke(FunctionName="bo", Qualifier="prod", Payload=b"{}")
    assert json.loads(r["Payload"].read()) == {"v": 1} and r["ExecutedVersion"] == "1", r
    c.update_alias(FunctionName="bo", Name="prod", FunctionVersion="2")
    r = c.invoke(FunctionName="bo:prod", Payload=b"{}")
    assert json.loads(r["Payload"].read()) == {"v": 2}, r
    assert c.get_alias(FunctionName="bo", Name="prod")["Description"] == "first"
    assert [x["Name"] for x in c.list_aliases(FunctionName="bo")["Aliases"]] == ["prod"]
    with pytest.raises(c.exceptions.ResourceConflictException):
        c.delete_function(FunctionName="bo", Qualifier="2")
    c.delete_alias(FunctionName="bo", Name="prod")
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.get_alias(FunctionName="bo", Name="prod")
    with pytest.raises(c.exceptions.InvalidParameterValueException):
        c.create_alias(FunctionName="bo", Name="12", FunctionVersion="1")


def test_python_client_aliases(d):
    from pysprinter.client import Client
    deploy(d, "py", 2)
    with Client(d.url, token=TOKENS["alice"]) as c:
        a = c.set_alias("py", "prod", 1, description="one")
        assert (a["version"], a["created"]) == (1, True), a
        assert c.invoke("py::prod", {}) == {"v": 1}
        c.set_alias("py", "prod", 2)
        assert c.invoke("py:prod", {}) == {"v": 2}
        assert c.function("py")["aliases"][0]["name"] == "prod"
        assert [x["name"] for x in c.aliases("py")] == ["prod"]
        c.delete_alias("py", "prod")
        assert c.aliases("py") == []
        with pytest.raises(ValueError):
            c.invoke("py::a.b", {})


def _race(put_gw, del_gw, name):
    """Alias puts to version 1 racing deletes of version 1: whichever
    wins, an alias never points at a version that is gone."""
    import threading
    deploy(put_gw, name, 2)
    for _ in range(5):
        put_gw.call("DELETE", f"/v1/functions/{name}/aliases/a")
        results = {}

        def put():
            results["put"] = put_alias(put_gw, name, "a", 1)[0]

        def delete():
            results["del"] = del_gw.call("DELETE", f"/v1/functions/{name}?version=1")[0]

        ts = [threading.Thread(target=put), threading.Thread(target=delete)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        st, b = put_gw.call("GET", f"/v1/functions/{name}")
        versions = b["versions"]
        aliases = {a["name"]: a["version"] for a in b["aliases"]}
        assert all(v in versions for v in aliases.values()), (results, versions, aliases)
        assert (results["put"], results["del"]) in ((201, 409), (404, 200)), results
        if 1 not in versions:
            # Deployed again from scratch for the next round.
            deploy(put_gw, name, 2)


def test_an_alias_put_racing_a_version_delete_leaves_no_dangling_alias(d):
    _race(d, d, "race")


def test_cluster_alias_put_racing_a_version_delete(nodes):
    g1 = nodes("g1", "gateway")
    g2 = nodes("g2", "gateway")
    _race(g1, g2, "crace")
