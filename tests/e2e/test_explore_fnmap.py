"""Mapping over a DEPLOYED function, as a user of Modal
(`Function.lookup(...).map(inputs)`), Ray or a Lambda batch expects:
`pysprinter invoke NAME[::VERSION] --over INPUTS.jsonl [-j N]`. One call
of the deployed version per input line, with `map FILE`'s machinery and
lines: results in input order, a failed call's line and exit code, the
version pinned, a missing function said once before any call. Before,
`invoke` took `--over F` for a keyword argument `over` and made one call."""
import json
import re

import pytest

from conftest import DAEMON, sandbox_args
from daemonlib import TOKENS, Daemon, sandbox_mode

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SQ = """
import time

def f(x: int, y: int = 0):
    # Later inputs end first: the order of the lines is map's, not the calls'.
    time.sleep(max(0, 8 - x) * 0.05)
    if x == 3:
        raise ValueError("unlucky")
    return {"x": x, "sq": x * x + y}
"""

VERSIONED = """
def f(x):
    return {"v": %d, "x": x}
"""

SLEEPY = """
import time

def f(s: float):
    time.sleep(s)
    return s
"""


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("fnmap")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        yield daemon


def deploy(d, name, source, filename="fn.py"):
    st, b = d.call("POST", "/v1/functions", {"name": name, "source": source, "filename": filename})
    assert st == 201, b
    return b["version"]


def remote(cli, d, *args, **kw):
    return cli(*args, "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]}, **kw)


def lines(p):
    """The JSON lines of stdout, without their run ids."""
    out = []
    for line in p.stdout.splitlines():
        o = json.loads(line)
        assert re.fullmatch(r"r[0-9a-z]+", o.pop("run_id", "")), line
        out.append(o)
    return out


def test_invoke_over_prints_every_result_in_input_order(cli, d):
    deploy(d, "sq", SQ)
    cli.write("in.jsonl", "".join(f"{x}\n" for x in (0, 1, 2, 4, 5, 6, 7)))
    p = remote(cli, d, "invoke", "sq", "--over", "in.jsonl", "-j", "4")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert lines(p) == [{"index": i, "status": "succeeded", "result": {"x": x, "sq": x * x}}
                        for i, x in enumerate((0, 1, 2, 4, 5, 6, 7))]
    assert "sq: 7 calls, 0 failed" in p.stderr, p.stderr


def test_a_failing_input_is_its_line_and_the_exit_code_as_map_files(cli, d):
    """The same lines (but the run ids) and exit code as `map FILE` of the
    source deployed: one machinery."""
    deploy(d, "sqf", SQ)
    cli.write("sq.py", SQ)
    cli.write("in.jsonl", "1\n3\n[2, 1]\n")
    inv = remote(cli, d, "invoke", "sqf", "--over", "in.jsonl", "-j4")
    mp = remote(cli, d, "map", "sq.py", "--over", "in.jsonl", "-j4")
    assert inv.returncode == mp.returncode == 1, (inv.stdout, inv.stderr, mp.stderr)
    assert lines(inv) == lines(mp)
    got = lines(inv)
    assert got[1]["status"] == "failed" and got[1]["error"]["type"] == "ValueError", got
    assert got[2] == {"index": 2, "status": "succeeded", "result": {"x": 2, "sq": 5}}
    # Byte for byte the shape of map's lines: the keys in the same order.
    for a, b in zip(inv.stdout.splitlines(), mp.stdout.splitlines()):
        assert list(json.loads(a)) == list(json.loads(b))
    assert "sqf: 3 calls, 1 failed" in inv.stderr, inv.stderr


def test_array_object_and_other_lines_are_positional_keyword_and_one_argument(cli, d):
    deploy(d, "kw", "def f(x, y=10):\n    return [x, y]\n")
    cli.write("in.jsonl", '[1, 2]\n{"y": 5, "x": 3}\n\n"s"\n{"x": [7]}\n')
    p = remote(cli, d, "invoke", "kw", "--over", "in.jsonl")
    assert p.returncode == 0, p.stderr
    assert [o["result"] for o in lines(p)] == [[1, 2], [3, 5], ["s", 10], [[7], 10]]


@pytest.mark.parametrize("spelling", ["pin::1", "pin:1"])
def test_a_version_pin_uses_that_versions_code(cli, d, spelling):
    d.call("DELETE", "/v1/functions/pin")
    assert deploy(d, "pin", VERSIONED % 1) == 1
    assert deploy(d, "pin", VERSIONED % 2) == 2
    cli.write("in.jsonl", "1\n2\n3\n")
    p = remote(cli, d, "invoke", spelling, "--over", "in.jsonl", "-j", "2")
    assert p.returncode == 0, p.stderr
    assert [o["result"] for o in lines(p)] == [{"v": 1, "x": x} for x in (1, 2, 3)]
    p = remote(cli, d, "invoke", "pin", "--over", "in.jsonl")
    assert [o["result"] for o in lines(p)] == [{"v": 2, "x": x} for x in (1, 2, 3)]


@pytest.mark.parametrize("target,words", [("nope", "no deployed function 'nope'"),
                                          ("sq::9", "function 'sq' has no version 9")])
def test_a_missing_function_or_version_is_one_error_before_any_call(cli, d, target, words):
    deploy(d, "sq", SQ)
    cli.write("in.jsonl", "1\n2\n3\n")
    one = remote(cli, d, "invoke", target, "-a", "1")
    p = remote(cli, d, "invoke", target, "--over", "in.jsonl")
    assert one.returncode != 0 and words in one.stderr, one.stderr
    assert (p.returncode, p.stdout) == (one.returncode, ""), (p.stdout, p.stderr)
    assert p.stderr.count(words) == 1, p.stderr
    assert p.stderr == one.stderr


def test_without_a_server_it_is_invokes_error(cli, tmp_path):
    cli.write("in.jsonl", "1\n")
    one = cli("invoke", "sq", "-a", "1")
    p = cli("invoke", "sq", "--over", "in.jsonl")
    assert one.returncode != 0 and "invoke needs a server" in one.stderr, one.stderr
    assert (p.returncode, p.stdout, p.stderr) == (one.returncode, "", one.stderr)


@pytest.mark.parametrize("words,says", [
    (["--payload", "{}"], "--payload"),
    (["--payload-file", "in.jsonl"], "--payload"),
    (["-a", "1"], "from --over"),
    (["--sandbox=none"], "--sandbox cannot go with invoke"),
    (["--detach"], "--detach"),
    (["--idempotency-key", "k1"], "--idempotency-key"),
    (["--over", "in.jsonl", "-"], "'-' (the payload on stdin) cannot go with --over"),
    (["-j", "0"], "--concurrency must be"),
])
def test_what_invoke_over_cannot_take_is_a_usage_error(cli, d, words, says):
    cli.write("in.jsonl", "1\n")
    p = remote(cli, d, "invoke", "sq", "--over", "in.jsonl", *words)
    assert p.returncode == 2 and says in p.stderr and p.stdout == "", (p.stdout, p.stderr)
    # Embedded as well: refused before the server is asked for.
    p = cli("invoke", "sq", "--over", "in.jsonl", *words)
    assert p.returncode == 2 and says in p.stderr, (p.stdout, p.stderr)


def test_per_call_options_apply_to_every_call(cli, d):
    deploy(d, "sleepy", SLEEPY)
    cli.write("in.jsonl", "0\n30\n")
    p = remote(cli, d, "invoke", "sleepy", "--over", "in.jsonl", "--timeout", "2")
    got = lines(p)
    assert got[0] == {"index": 0, "status": "succeeded", "result": 0}, got
    assert got[1]["status"] not in ("succeeded", "running", "queued"), got
    assert p.returncode not in (0, 2), (p.returncode, p.stderr)


def test_map_of_a_deployed_function_names_invoke_over(cli, d):
    cli.write("in.jsonl", "1\n")
    for words in (["--function", "sq"], ["--function=sq"]):
        p = remote(cli, d, "map", *words, "--over", "in.jsonl")
        assert p.returncode == 2 and "invoke sq --over" in p.stderr, p.stderr


def test_help_says_over(cli):
    p = cli("invoke", "--help")
    assert p.returncode == 0 and "--over INPUTS.jsonl" in p.stdout


def test_map_file_is_unchanged(cli, d):
    cli.write("sq.py", SQ)
    cli.write("in.jsonl", "1\n2\n")
    p = cli("map", "sq.py", "--over", "in.jsonl", *sandbox_args())
    assert p.returncode == 0, p.stderr
    assert [o["result"] for o in lines(p)] == [{"x": 1, "sq": 1}, {"x": 2, "sq": 4}]


def test_inputs_from_stdin_and_a_lambda_handlers_event(cli, d):
    """`--over -` reads the lines from stdin (not the Lambda event a bare
    `-` is); a line [EVENT] is a Lambda handler's one event."""
    deploy(d, "lam", "def handler(event, context):\n    return {'got': event, 'id': bool(context.aws_request_id)}\n")
    p = remote(cli, d, "invoke", "lam", "--over", "-", input='[{"k": 1}]\n[2]\n')
    assert p.returncode == 0, p.stderr
    assert [o["result"] for o in lines(p)] == [{"got": {"k": 1}, "id": True}, {"got": 2, "id": True}]


def test_ctrl_c_cancels_the_invocations_in_flight(cli, d):
    """map's Ctrl-C: no more calls, the ones in flight cancelled on the
    server, each a `cancelled` line, exit 130."""
    import signal
    import subprocess
    import time

    deploy(d, "slow2", SLEEPY)
    cli.write("in.jsonl", "60\n60\n60\n")
    env = dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"])
    p = subprocess.Popen([*cli.prefix, str(cli.exe), "invoke", "slow2", "--over", "in.jsonl", "-j", "2",
                          "--server", d.url], cwd=cli.cwd, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        running = []
        while time.monotonic() < deadline and len(running) < 2:
            st, b = d.call("GET", "/v1/runs?function=slow2&status=running")
            running = b["runs"] if st == 200 else []
            time.sleep(0.1)
        assert len(running) == 2, running
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, (out, err)
    got = [json.loads(line) for line in out.splitlines()]
    assert [o["status"] for o in got] == ["cancelled", "cancelled"], got
    assert "interrupted: 2 of 3 calls ran" in err, err
    for r in running:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st, b = d.call("GET", f"/v1/runs/{r['id']}")
            if b["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert b["status"] == "cancelled", b
