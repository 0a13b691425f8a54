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
