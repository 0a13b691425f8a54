"""Stack files (docs/stack.md): `pysprinter deploy -f stack.yaml` against a
real pysprinterd, and the checks the CLI makes before anything is sent
(the same on the embedded path: the schema errors do not need a server).

What a user checks: the printed plan, `functions`/versions, schedules and
URLs before and after, and exit codes."""
import json

import pytest

from conftest import CLI, DAEMON
from daemonlib import Daemon, point_cli, sandbox_mode

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")

# alice may use at most 512 MiB (a stack asking more is refused whole).
GRANTS = """
limits:
  maxima: {memory_bytes: 536870912}
"""

HELLO = 'def hello(event=None):\n    return "hello " + (event or {}).get("rawPath", "world")\n'
ADD = "def add(a: int = 1, b: int = 2):\n    return a + b\n"
ENVF = 'import os\n\ndef envf():\n    return [os.environ.get("GREETING"), os.environ.get("API_KEY")]\n'

STACK = """\
description: three functions
functions:
  hello:
    file: fns/hello.py
    timeout: 20s
    memory: 256M
    max_procs: 16
    retries: 2
    url: public
    schedules:
      hello-nightly:
        cron: "0 3 * * *"
        kwargs: {event: {rawPath: night}}
  add:
    file: fns/add.py
    url: true
    schedules:
      add-often:
        every: 10m
        args: [2, 3]
  envf:
    file: fns/envf.py
    env: {GREETING: hi}
    secrets: [API_KEY]
"""


@pytest.fixture
def d(tmp_path):
    daemon = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra=GRANTS)
    with daemon.serving(clean_exit=False) as running:
        yield running


@pytest.fixture
def stack(cli, d, tmp_path):
    """The CLI pointed at d as alice, with the three function files and the
    secret the stack names; stack.yaml sits beside fns/."""
    point_cli(cli, d, tmp_path)
    cli.write("fns/hello.py", HELLO)
    cli.write("fns/add.py", ADD)
    cli.write("fns/envf.py", ENVF)
    st, _ = d.call("PUT", "/v1/secrets/API_KEY", {"value": "s3cr3t"})
    assert st in (200, 201)
    (tmp_path / "stack.yaml").write_text(STACK)
    return cli


def lines(p):
    return p.stdout.splitlines()


def state(d):
    """What a user compares: each function's versions and limits, the
    schedules and the URLs."""
    st, fl = d.call("GET", "/v1/functions")
    assert st == 200
    out = {}
    for f in fl["functions"]:
        st, g = d.call("GET", f"/v1/functions/{f['name']}")
        out[f["name"]] = (g["versions"], g["limits"], g["url"], g["secrets"], g["env"])
    st, sl = d.call("GET", "/v1/schedules")
    return out, sorted((s["name"], s["function"], s["schedule"]) for s in sl["schedules"])


def test_deploy_redeploy_edit_prune(stack, d, tmp_path):
    p = stack("deploy", "-f", "stack.yaml", check=0)
    assert lines(p) == [
        "created function add", "created function envf", "created function hello",
        "created schedule add-often", "created schedule hello-nightly",
        # The address to call, as `deploy FILE --url` prints it ("url: …").
        f"created endpoint add: {d.url}/fn/alice/add (bearer token)",
        f"created endpoint hello: {d.url}/fn/alice/hello (public)",
    ]
    fns, scheds = state(d)
    assert fns["hello"][1] == {"timeout_ms": 20000, "memory_bytes": 256 << 20, "max_procs": 16,
                               "retries": 2}
    assert fns["hello"][2] == {"path": "/fn/alice/hello", "public": True}
    assert fns["add"][2] == {"path": "/fn/alice/add", "public": False}
    assert fns["envf"][2] is None and fns["envf"][3] == ["API_KEY"] and fns["envf"][4] == ["GREETING"]
    assert scheds == [("add-often", "add", "@every 10m"), ("hello-nightly", "hello", "0 3 * * *")]
    # A stack's deploy keeps each version's signature as a deploy does.
    st, add = d.call("GET", "/v1/functions/add")
    assert (add["signature"], add["doc"]) == ("add(a: int = 1, b: int = 2)", None), add
    # The deployed functions work as the stack says: env and secret, URL.
    p = stack("invoke", "envf", check=0)
    assert json.loads(p.stdout) == ["hi", "s3cr3t"]
    st, _, body = d.request("GET", "/fn/alice/hello/x", token=None)
    assert st == 200 and json.loads(body) == "hello /x", (st, body)

    # The same file again: nothing changes, no new version.
    p = stack("deploy", "-f", "stack.yaml", check=0)
    assert all(l.startswith("unchanged ") for l in lines(p)) and len(lines(p)) == 7, p.stdout
    assert state(d) == (fns, scheds)

    # One file edited: one function updated, a version more.
    stack.write("fns/add.py", ADD.replace("a + b", "a + b + 0"))
    p = stack("deploy", "-f", "stack.yaml", "--json", check=0)
    changes = json.loads(p.stdout)["changes"]
    assert [c for c in changes if c["action"] != "unchanged"] == [
        {"action": "updated", "kind": "function", "name": "add"}]
    assert state(d)[0]["add"][0] == [1, 2] and state(d)[0]["hello"][0] == [1]

    # --dry-run of a stack without envf and hello's schedule: the plan only.
    smaller = STACK.split("  envf:")[0].replace(
        '    schedules:\n      hello-nightly:\n        cron: "0 3 * * *"\n        kwargs: {event: {rawPath: night}}\n', "")
    (tmp_path / "small.yaml").write_text(smaller)
    before = state(d)
    p = stack("deploy", "-f", "small.yaml", "--prune", "--dry-run", check=0)
    assert "deleted function envf" in lines(p) and "deleted schedule hello-nightly" in lines(p)
    assert state(d) == before
    # Without --prune nothing is deleted; with it, envf and the schedule go.
    p = stack("deploy", "-f", "small.yaml", check=0)
    assert not any(l.startswith("deleted") for l in lines(p))
    p = stack("deploy", "-f", "small.yaml", "--prune", check=0)
    assert "deleted function envf" in lines(p) and "deleted schedule hello-nightly" in lines(p)
    fns, scheds = state(d)
    assert sorted(fns) == ["add", "hello"] and scheds == [("add-often", "add", "@every 10m")]
    assert d.call("GET", "/v1/functions/envf")[0] == 404


def test_all_or_nothing(stack, d, tmp_path):
    stack("deploy", "-f", "stack.yaml", check=0)
    before = state(d)
    # A second function that does not validate: nothing changes, even the
    # first function's new source is not stored.
    stack.write("fns/hello.py", HELLO.replace("world", "there"))
    stack.write("fns/add.py", "def add(a, b:\n    return a\n")
    p = stack("deploy", "-f", "stack.yaml")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "function 'add'" in p.stderr and "add.py" in p.stderr
    assert p.stdout == ""
    assert state(d) == before
    stack.write("fns/add.py", ADD)

    # A secret the tenant does not have: 404, exit 2, nothing changes.
    (tmp_path / "s2.yaml").write_text(STACK.replace("[API_KEY]", "[NO_SUCH_SECRET]").replace(
        "file: fns/add.py", "file: fns/add.py\n    description: changed"))
    p = stack("deploy", "-f", "s2.yaml")
    assert p.returncode == 2 and "NO_SUCH_SECRET" in p.stderr, p.stderr
    assert state(d) == before

    # A limit above the tenant's maximum: refused as `deploy --memory` is.
    ref = stack("deploy", "fns/hello.py", "--memory", "1G")
    (tmp_path / "s3.yaml").write_text(STACK.replace("memory: 256M", "memory: 1G"))
    p = stack("deploy", "-f", "s3.yaml")
    assert p.returncode == ref.returncode == 6, (p.returncode, ref.returncode, p.stderr)
    assert "function 'hello'" in p.stderr and "memory" in p.stderr
    assert state(d) == before


@pytest.mark.parametrize("mistake, where, message", [
    (("    url: public\n", "    url: public\n    colour: blue\n"), "stack.yaml:10:5:", "unknown key 'colour'"),
    (("max_procs: 16", "max_procs: many"), "stack.yaml:7:16:", "expected integer"),
    (('cron: "0 3 * * *"', 'cron: "0 3 * *"'), "stack.yaml:12:15:", "cron"),
    (("timeout: 20s", "timeout: 20 parsecs"), "stack.yaml:5:14:", "not a duration"),
    (("every: 10m", "every: 10m\n        cron: '@daily'"), "stack.yaml:19:9:", "exactly one of 'cron' and 'every'"),
    (("  add:\n", "  a/d:\n"), "stack.yaml:14:3:", "does not match"),
    (("    file: fns/envf.py\n", "    file: fns/missing.py\n"), "stack.yaml:22:11:", "cannot read fns/missing.py"),
    (("    max_procs: 16\n", "    max_procs: 16\n    timeout: 30s\n"), "stack.yaml:8:5:",
     "duplicate key 'timeout' (first at line 5)"),
])
@pytest.mark.parametrize("server", [True, False], ids=["daemon", "embedded"])
def test_schema_errors_name_file_line(stack, d, tmp_path, mistake, where, message, server):
    if not server:
        stack.env = {k: v for k, v in stack.env.items() if k not in ("PYSPRINTER_SERVER", "PYSPRINTER_TOKEN")}
    (tmp_path / "stack.yaml").write_text(STACK.replace(*mistake))
    before = state(d)
    p = stack("deploy", "-f", "stack.yaml")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert f"pysprinter: {where} " in p.stderr and message in p.stderr, p.stderr
    assert state(d) == before


def test_several_mistakes_reported_at_once(stack, tmp_path):
    (tmp_path / "bad.yaml").write_text("functions:\n  f:\n    file: 3\n    timeout: soon\n    extra: 1\nother: 2\n")
    p = stack("deploy", "-f", "bad.yaml")
    assert p.returncode == 3
    err = p.stderr.splitlines()
    assert any(l.startswith("pysprinter: bad.yaml:3:11: ") and "expected string" in l for l in err), err
    assert any(l.startswith("pysprinter: bad.yaml:4:14: ") and "not a duration" in l for l in err), err
    assert any(l.startswith("pysprinter: bad.yaml:5:5: ") and "unknown key 'extra'" in l for l in err), err
    assert any(l.startswith("pysprinter: bad.yaml:6:1: ") and "unknown key 'other'" in l for l in err), err


def test_embedded_says_it_needs_a_server(cli, tmp_path):
    """A valid stack without a server: the embedded engine keeps no deployed
    functions (as `deploy FILE`), the same message and exit code."""
    cli.write("fns/hello.py", HELLO)
    (tmp_path / "one.yaml").write_text("functions:\n  hello:\n    file: fns/hello.py\n")
    p = cli("deploy", "-f", "one.yaml")
    ref = cli("deploy", "fns/hello.py")
    assert p.returncode == ref.returncode == 2
    assert p.stderr == ref.stderr and "needs a server" in p.stderr


def test_settings_only_changes(stack, d, tmp_path):
    """A URL or a schedule edited without touching any source: the function
    stays at its version, the edited items say updated (or deleted)."""
    stack("deploy", "-f", "stack.yaml", check=0)
    edited = STACK.replace("url: public", "url: true").replace('cron: "0 3 * * *"', 'cron: "30 4 * * *"') \
        .replace("    url: true\n    schedules:\n      add-often", "    schedules:\n      add-often")
    (tmp_path / "edited.yaml").write_text(edited)
    p = stack("deploy", "-f", "edited.yaml", check=0)
    changed = [l for l in lines(p) if not l.startswith("unchanged")]
    assert changed == ["updated schedule hello-nightly", "deleted endpoint add",
                       f"updated endpoint hello: {d.url}/fn/alice/hello (bearer token)"], p.stdout
    fns, scheds = state(d)
    assert [v[0] for v in fns.values()] == [[1], [1], [1]]
    assert fns["hello"][2] == {"path": "/fn/alice/hello", "public": False} and fns["add"][2] is None
    assert ("hello-nightly", "hello", "30 4 * * *") in scheds
    assert d.call("GET", "/v1/schedules/hello-nightly")[1]["next_fire_at"].endswith("04:30:00.000Z")


def test_schedule_in_a_named_zone(stack, d, tmp_path):
    """A stack's schedule takes the same zones as `schedule add --tz`
    (docs/schedules.md): an IANA name, its local fire time shown with its
    offset; an unknown zone refuses the whole stack."""
    zoned = STACK.replace('cron: "0 3 * * *"', 'cron: "0 3 * * *"\n        tz: Europe/Paris')
    (tmp_path / "zoned.yaml").write_text(zoned)
    p = stack("deploy", "-f", "zoned.yaml", check=0)
    assert "created schedule hello-nightly" in p.stdout
    st, s = d.call("GET", "/v1/schedules/hello-nightly")
    assert st == 200 and s["tz"] == "Europe/Paris", s
    assert s["next_fire_local"].startswith(s["next_fire_local"][:11]) and "T03:00:00+0" in s["next_fire_local"], s
    before = state(d)
    (tmp_path / "bad.yaml").write_text(zoned.replace("Europe/Paris", "Europe/Nowhere").replace("every: 10m", "every: 5m"))
    p = stack("deploy", "-f", "bad.yaml")
    assert p.returncode == 2 and "Nowhere" in p.stderr, (p.returncode, p.stderr)
    assert state(d) == before


def test_a_schedule_names_the_datasets_each_fire_reads(stack, d, tmp_path):
    """`schedule add --data` carries datasets into each fire; a stack's
    schedule says the same with `data:` (the schema refused the key)."""
    with_data = STACK.replace('cron: "0 3 * * *"', 'cron: "0 3 * * *"\n        data: [prices, "rates@2"]')
    assert with_data != STACK
    (tmp_path / "data.yaml").write_text(with_data)
    p = stack("deploy", "-f", "data.yaml", check=0)
    assert p.returncode == 0 and "created schedule hello-nightly" in p.stdout, (p.stdout, p.stderr)
    st, s = d.call("GET", "/v1/schedules/hello-nightly")
    assert st == 200 and s["data"] == ["prices", "rates@2"], s
    # Only the datasets changed: the schedule is updated, nothing else.
    (tmp_path / "data2.yaml").write_text(with_data.replace('"rates@2"', '"rates@3"'))
    p = stack("deploy", "-f", "data2.yaml", check=0)
    assert [l for l in p.stdout.splitlines() if not l.startswith("unchanged")] == ["updated schedule hello-nightly"], p.stdout


@pytest.mark.parametrize("edit, message", [
    (("args: [2, 3]", "args: [2, 3, 4]"),
     "bad.yaml:18:7: schedule 'add-often': ValidationError: add() takes 2 positional arguments but 3 were given"),
    (("kwargs: {event: {rawPath: night}}", "kwargs: {evnt: 1}"),
     "bad.yaml:11:7: schedule 'hello-nightly': ValidationError: hello() got an unexpected keyword argument 'evnt'"),
])
def test_a_schedules_arguments_are_checked_against_its_function(stack, d, tmp_path, edit, message):
    """`schedule add` refuses arguments its function refuses (422, exit 3);
    a stack's schedules were not checked, and every fire then failed its
    validation. Checked now by the same rule, against the version the stack
    deploys, before anything is written (--dry-run too)."""
    (tmp_path / "bad.yaml").write_text(STACK.replace(*edit))
    before = state(d)
    for extra in (["--dry-run"], []):
        p = stack("deploy", "-f", "bad.yaml", *extra)
        assert (p.returncode, p.stdout) == (3, ""), p
        assert p.stderr.startswith(f"pysprinter: {message}"), p.stderr
        assert state(d) == before


def test_a_schedule_is_checked_against_the_source_the_stack_deploys(stack, d, tmp_path):
    """The stack's own version of the function is the one its schedules
    fire: arguments the deployed version took but the new one refuses are
    refused with the stack."""
    stack("deploy", "-f", "stack.yaml", check=0)
    before = state(d)
    stack.write("fns/add.py", "def add(a: int, b: int, c: int):\n    return a + b + c\n")
    p = stack("deploy", "-f", "stack.yaml")
    assert p.returncode == 3 and "schedule 'add-often': ValidationError: " in p.stderr, p
    assert "add() missing 1 required argument: 'c'" in p.stderr, p.stderr
    assert state(d) == before
