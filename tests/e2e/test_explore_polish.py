"""Leads about the CLI, stacks and routes checked as a user meets them: a
stack's limits and addresses, map's checks before any call, the words of
a refusal, and the same bytes and exit code embedded and via `--server`."""
import json

import pytest

from conftest import same
from daemonlib import TOKENS, Daemon

ADD = "def add(a: int, b: int):\n    return a + b\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("explore-polish")).serving() as d:
        yield d


@pytest.fixture
def remote(cli, daemon):
    """The CLI pointed at the module's daemon as alice."""
    cli.env = dict(cli.env, PYSPRINTER_SERVER=daemon.url, PYSPRINTER_TOKEN=TOKENS["alice"])
    return cli


def stack_file(cli, name, body):
    cli.write("fns/add.py", ADD)
    cli.write(f"{name}.yaml", body)
    return f"{name}.yaml"


def test_stack_timeout_as_a_bare_float_is_seconds_as_run_reads_it(remote, daemon):
    """`timeout: 0.5` was refused ("'0.5' is a number, expected string or
    integer") where `2.5s` and `run --timeout 0.5` are taken: a bare number
    is seconds, whole or not (docs/stack.md), as SAM's Timeout is."""
    f = stack_file(remote, "half", "functions:\n  half:\n    file: fns/add.py\n    timeout: 0.5\n")
    p = remote("deploy", "-f", f)
    assert (p.returncode, p.stdout, p.stderr) == (0, "created function half\n", "")
    st, g = daemon.call("GET", "/v1/functions/half")
    assert st == 200 and g["limits"] == {"timeout_ms": 500}
    f = stack_file(remote, "zero", "functions:\n  zero:\n    file: fns/add.py\n    timeout: 0\n")
    p = remote("deploy", "-f", f)
    assert (p.returncode, p.stdout) == (3, "")
    assert p.stderr == "pysprinter: zero.yaml:4:14: 0 is below the minimum 0.001\n"


def test_stack_prints_the_address_of_each_endpoint_it_keeps(remote, daemon):
    """`deploy FILE --url` prints `url: http://…/fn/TENANT/NAME (bearer
    token)`; a stack's `created endpoint NAME` said nothing of where the
    function answers."""
    f = stack_file(remote, "urls", "functions:\n  uadd:\n    file: fns/add.py\n    url: true\n"
                                   "  upub:\n    file: fns/add.py\n    url: public\n")
    p = remote("deploy", "-f", f)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "created function uadd", "created function upub",
        f"created endpoint uadd: {daemon.url}/fn/alice/uadd (bearer token)",
        f"created endpoint upub: {daemon.url}/fn/alice/upub (public)",
    ]
    ref = remote("deploy", "fns/add.py", "--name", "uref", "--url")
    assert ref.stdout.splitlines()[1] == f"url: {daemon.url}/fn/alice/uref (bearer token)"
    p = remote("deploy", "-f", f, "--json")
    changes = json.loads(p.stdout)["changes"]
    assert {"action": "unchanged", "kind": "endpoint", "name": "upub",
            "url": {"path": "/fn/alice/upub", "public": True}} in changes
    # A deleted endpoint has no address left to print.
    f = stack_file(remote, "urls", "functions:\n  uadd:\n    file: fns/add.py\n"
                                   "  upub:\n    file: fns/add.py\n    url: public\n")
    p = remote("deploy", "-f", f)
    assert "deleted endpoint uadd\n" in p.stdout


def test_map_over_no_input_still_checks_the_file(cli, both):
    """`map FILE --over /dev/null` exited 0 on a FILE that does not parse:
    no call, no check; run says the SyntaxError, exit 3."""
    cli.write("bad.py", "def g(:\n")
    r = same(*both("map", "bad.py", "--over", "/dev/null"))
    assert r.returncode == 3 and "bad.py:1:7: SyntaxError: invalid syntax" in r.stderr and r.stdout == ""


def test_map_names_a_missing_secret_once_before_any_call(cli, both):
    """Each input printed its own ClientError line ("no secret named
    'NOPE'"); a missing dataset is said once, up front: so is a secret,
    in run's words and with its exit code."""
    cli.write("g.py", "def g(x):\n    return x\n")
    cli.write("in.jsonl", "1\n2\n3\n")
    r = same(*both("map", "g.py", "--over", "in.jsonl", "--secret", "NOPE"))
    ref = same(*both("run", "g.py", "-a", "1", "--secret", "NOPE"))
    assert (r.returncode, r.stdout, r.stderr) == (2, "", ref.stderr)
    assert ref.stderr == "pysprinter: no secret named 'NOPE' (pysprinter secret set NOPE)\n"


@pytest.mark.parametrize("verb", [("show", "r123"), ("logs", "r123"), ("cancel", "r123"), ("functions", "show", "x"),
                                  ("dag", "status", "d1"), ("ps",)])
def test_a_server_url_with_a_wrong_path_is_said_by_every_verb(cli, daemon, verb):
    """--server URL/prefix: `ps` said "no such endpoint: /prefix/v1/runs",
    `show ID` "no run 'ID'" and `functions show` "no deployed function":
    the user went looking for a run that was never the problem."""
    r = cli(*verb, "--server", daemon.url + "/prefix", env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("pysprinter: no such endpoint: /prefix/v1/"), r.stderr


def test_a_url_dataset_the_servers_policy_refuses_says_so_not_the_token(remote, daemon):
    """A loopback URL: "the token lacks the right to do this (refused to
    fetch …)", exit 6 — any token gets the same refusal; the address is what
    the daemon's policy refuses, and the API says so by its code."""
    url = "http://127.0.0.1:9/x"
    r = remote("data", "put", "pol", url)
    assert (r.returncode, r.stdout) == (6, "")
    assert r.stderr == (f"pysprinter: data put: refused to fetch {url}: 127.0.0.1 is a loopback address "
                        "(the operator can allow it with config 'data.url_allow')\n")
    st, body = daemon.call("PUT", "/v1/data/pol", {"url": url})
    assert body["error"]["code"] == "url_refused" and st == 403, (st, body)


def test_invoke_says_a_mistyped_option_as_run_does(remote, daemon):
    """`run FILE --timout 3` is "unknown option '--timout' (did you mean
    --timeout?)…", exit 2; `invoke NAME --timout 3` was the function's
    ValidationError, exit 3, the option never named."""
    remote.write("one.py", "def one(x: int = 1):\n    return x\n")
    assert remote("deploy", "one.py", "--name", "one").returncode == 0
    ref = remote("run", "one.py", "--timout", "3", env={"PYSPRINTER_SERVER": ""})
    assert ref.returncode == 2 and "did you mean --timeout?" in ref.stderr
    r = remote("invoke", "one", "--timout", "3")
    assert (r.returncode, r.stdout, r.stderr) == (ref.returncode, ref.stdout, ref.stderr)
    # A keyword that looks like no option stays the function's refusal.
    r = remote("invoke", "one", "--y", "3")
    assert r.returncode == 3 and "unexpected keyword argument 'y'" in r.stderr


def test_stack_secrets_in_another_order_are_no_new_version(remote, daemon):
    """Each secret is an env var of its own name: their order means
    nothing, and reordering `env` was unchanged, but `secrets: [S2, S1]`
    after `[S1, S2]` said "updated function" and made version 2."""
    for n in ("S1", "S2"):
        assert daemon.call("PUT", f"/v1/secrets/{n}", {"value": "v"})[0] in (200, 201)
    body = "functions:\n  sec:\n    file: fns/add.py\n    secrets: {}\n"
    p = remote("deploy", "-f", stack_file(remote, "sec", body.format("[S1, S2]")))
    assert p.stdout == "created function sec\n", p.stderr
    p = remote("deploy", "-f", stack_file(remote, "sec", body.format("[S2, S1]")))
    assert (p.returncode, p.stdout) == (0, "unchanged function sec\n")
    p = remote("deploy", "-f", stack_file(remote, "sec", body.format("[S2]")))
    assert (p.returncode, p.stdout) == (0, "updated function sec\n")
    st, g = daemon.call("GET", "/v1/functions/sec")
    assert sorted(g["versions"]) == [1, 2], g["versions"]


def test_a_name_holding_a_slash_reaches_its_handler(cli, daemon):
    """The daemon matched routes on MHD's decoded path, so `a%2Fb` was two
    segments: `cluster drain a/b` (and any /v1/X/{name} with a '/') was
    "no such endpoint: /v1/cluster/nodes/a/b/drain", never the handler's
    own answer."""
    admin = {"PYSPRINTER_TOKEN": TOKENS["admin"]}
    ref = cli("cluster", "drain", "n1", "--server", daemon.url, env=admin)
    r = cli("cluster", "drain", "a/b", "--server", daemon.url, env=admin)
    assert (r.returncode, r.stdout, r.stderr) == (ref.returncode, ref.stdout, ref.stderr)
    assert r.stderr == "pysprinter: this pysprinterd is not in a cluster (start it with --redis URL)\n"
    st, body = daemon.call("GET", "/v1/functions/a%2Fb")
    assert (st, body["error"]["message"]) == (404, "no deployed function 'a/b'")
    st, body = daemon.call("GET", "/v1/runs/abc%2Flogs")
    assert (st, body["error"]["message"]) == (404, "run not found")
    # An encoded NUL still cuts no name short.
    st, body = daemon.call("GET", "/v1/functions/a%00b")
    assert st == 400


def test_cluster_drain_of_an_empty_node_is_a_usage_error_on_both_paths(both):
    """`cluster drain "$NODE"` unset: "no such endpoint:
    /v1/cluster/nodes//drain" via a daemon, "needs a server" embedded."""
    r = same(*both("cluster", "drain", ""))
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "pysprinter: cluster drain needs a NODE id (see `pysprinter cluster status`)\n"
