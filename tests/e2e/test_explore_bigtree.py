"""Memory of large structured results (helper "bigtree"): a function that
returns 200,000 small dicts (~11 MB of JSON) peaked at ~150 MiB in the CLI's
`run`, `run --json`, `invoke` and `dag run --json` (jansson's nodes of the
whole result; `dag run --json` against a daemon ~290 MiB), and grew the
daemon by 170-205 MiB per verb. A large result is now *held* as its JSON
text (shared.h json_held_new()) and written from it: the memory is a few
copies of the text, on the embedded path and against a daemon, with the
same bytes printed (test_explore_bigresult.py judges a flat string the
same way). The CLI is judged on its own high-water mark
(proctree.own_peak_run), the daemon on its VmHWM before and after."""
import json

import pytest

from conftest import CLI, sandbox_args
from daemonlib import Daemon
from proctree import own_peak_run, vm_hwm_kib
from test_explore_bigresult import sanitized

N = 200_000
BIG = f"def big():\n    return [{{'id': i, 'name': 'item%d' % i, 'v': i * 0.5, 'ok': True}} for i in range({N})]\n"
VALUE = [{"id": i, "name": "item%d" % i, "v": i * 0.5, "ok": True} for i in range(N)]
PLAIN = (json.dumps(VALUE, ensure_ascii=False) + "\n").encode()
COMPACT = (json.dumps(VALUE, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
SIZE = len(COMPACT)
# The fixed CLI holds ~2.5 copies of the text at its peak, the old one
# ~14 (the value's nodes); the fixed daemon ~7-9 (the record, its held
# copy, the answer's text and its respelling, the engine's read), the old
# one 16-19.
CLI_COPIES = 5
DAEMON_COPIES = 12


@pytest.fixture
def files(cli):
    if sanitized():
        pytest.skip("a sanitizer's allocator keeps freed memory: no bound on copies holds")
    cli.write("big.py", BIG)
    cli.write("empty.py", "def big():\n    return []\n")
    cli.write("big.yaml", "tasks: {one: {file: big.py}}\n")
    cli.write("empty.yaml", "tasks: {one: {file: empty.py}}\n")
    cli.write("one.jsonl", "[]\n")
    # The home's first run sets up what later runs reuse: not measured.
    p = cli("run", *sandbox_args(), "empty.py")
    assert p.returncode == 0, p
    return cli


def dag_result(out):
    d = json.loads(out)
    assert d["status"] == "succeeded", str(d)[:500]
    return d["tasks"]["one"]["result"]


# verb -> (argv with FILE for the file or function, what its output must be)
VERBS = {
    "run": (["run", "--no-cache", "FILE.py"], lambda out: out == PLAIN),
    "run --json": (["run", "--no-cache", "--json", "FILE.py"], lambda out: out == COMPACT),
    "dag run --json": (["dag", "run", "--no-cache", "-q", "--json", "FILE.yaml"],
                       lambda out: dag_result(out) == VALUE),
    "invoke": (["invoke", "FILE"], lambda out: out == PLAIN),
    "map": (["map", "-q", "FILE.py", "--over", "one.jsonl"],
            lambda out: json.loads(out)["result"] == VALUE and out.endswith(COMPACT[1:-1] + b"}\n")),
}


def argv(verb, name, extra=()):
    return [str(CLI), *[a.replace("FILE", name) for a in VERBS[verb][0]], *extra]


def cli_peak(cli, verb, env, extra=()):
    """The CLI's own peak for the big result over its peak for an empty one
    (KiB), after checking the big one's output."""
    base = own_peak_run(argv(verb, "empty", extra), env=env, cwd=cli.cwd)
    assert base.returncode == 0, base.stderr
    big = own_peak_run(argv(verb, "big", extra), env=env, cwd=cli.cwd)
    assert (big.returncode, big.stderr) == (0, b""), big.stderr[-2000:]
    assert VERBS[verb][1](big.stdout), big.stdout[:300]
    print(f"{verb}{' '.join(extra)}: the CLI's own peak {big.peak_kib // 1024} MiB, "
          f"{base.peak_kib // 1024} MiB for an empty result")
    assert base.peak_kib > 0 and big.peak_kib > 0
    return big.peak_kib - base.peak_kib


@pytest.mark.parametrize("verb", ["run", "run --json", "dag run --json", "map"])
def test_embedded_big_tree_holds_few_copies(files, verb):
    extra = cli_peak(files, verb, files.env, sandbox_args() if verb != "dag run --json" else ())
    assert extra < CLI_COPIES * SIZE / 1024, (
        f"the CLI's peak grew by {extra // 1024} MiB for {SIZE // 2**20} MiB of JSON: more than {CLI_COPIES} copies")


def test_show_of_a_big_tree_holds_few_copies(files):
    """`show RUN` read the record as text and parsed it back whole."""
    ids = {}
    for name in ("empty", "big"):
        p = files("run", *sandbox_args(), f"{name}.py")
        assert p.returncode == 0, p
        ids[name] = json.loads(files("ps", "--json", "--limit", "1").stdout)[0]["id"]
    base = own_peak_run([str(CLI), "show", ids["empty"]], env=files.env, cwd=files.cwd)
    big = own_peak_run([str(CLI), "show", ids["big"]], env=files.env, cwd=files.cwd)
    assert (base.returncode, big.returncode, big.stderr) == (0, 0, b""), big.stderr
    line = big.stdout.split(b"\nresult:", 1)[1].split(b"\n", 1)[0]
    assert json.loads(line) == VALUE
    extra = big.peak_kib - base.peak_kib
    print(f"show: the CLI's own peak {big.peak_kib // 1024} MiB, {base.peak_kib // 1024} MiB for an empty result")
    assert extra < CLI_COPIES * SIZE / 1024, f"show grew by {extra // 1024} MiB: more than {CLI_COPIES} copies"


@pytest.mark.parametrize("verb", list(VERBS))
def test_server_big_tree_holds_few_copies(files, tmp_path, verb):
    """The same verbs against a daemon of their own: the CLI's peak and the
    daemon's growth (VmHWM) both judged, the bytes the embedded path's."""
    d = Daemon(tmp_path / "daemon", sandbox="none" if sandbox_args() else None, args=["--no-auth"])
    d.start()
    try:
        env = dict(files.env, PYSPRINTER_SERVER=d.url)
        if verb == "invoke":
            for name in ("big", "empty"):
                p = files("deploy", f"{name}.py", "--name", name, env={"PYSPRINTER_SERVER": d.url})
                assert p.returncode == 0, p
        # The daemon's own start-up (a first run, a worker) is not measured.
        for _ in range(2):
            p = files(*argv(verb, "empty")[1:], env={"PYSPRINTER_SERVER": d.url})
            assert p.returncode == 0, p
        before = vm_hwm_kib(d.proc.pid)
        extra = cli_peak(files, verb, env)
        grew = vm_hwm_kib(d.proc.pid) - before
        print(f"{verb}: the daemon's VmHWM grew by {grew // 1024} MiB")
    finally:
        d.stop()
    assert extra < CLI_COPIES * SIZE / 1024, (
        f"the CLI's peak grew by {extra // 1024} MiB for {SIZE // 2**20} MiB of JSON: more than {CLI_COPIES} copies")
    assert before > 0 and grew < DAEMON_COPIES * SIZE / 1024, (
        f"the daemon grew by {grew // 1024} MiB for {SIZE // 2**20} MiB of JSON: more than {DAEMON_COPIES} copies")


# ---- held or not, the same bytes ----

# Escapes, NULs, separators in keys and strings, surrogate pairs, reals at
# their edges, integers at 64 bits, empty and nested containers, and a
# string that looks like a number.
VALUES = r'''
def f():
    return {"s": "t\u00e9\u2028\U0001F600\x00\x1f\x7f\"\\/", "k\"ey\n": {"": [], "a:b,c": {}},
            "n": [0, -1, 2**63 - 1, -2**63, 1.5, 0.1, 1e300, -0.0, 1e-7, 5e-324, 1.7976931348623157e308, 123456789.125],
            "e": [[], {}, [[]], [{}], ""], "b": [True, False, None], "u": "\ud7ff\ue000", "x": "1.5e3",
            "deep": [[[[[[[[[[{"z": [1.25, "\t"]}]]]]]]]]]], "\u00e9\u00e8": "caf\u00e9"}
'''


def test_values_print_the_same_held_or_not(cli, tmp_path):
    """Every value held (PYSPRINTER_TEST_HELD_MIN=1, the daemon's too)
    prints what the parsed value printed: `run` (Python's separators),
    `run --json`, `dag run --json`, `map`, `show` and `show --json`,
    embedded and against a daemon."""
    cli.write("v.py", VALUES)
    cli.write("v.yaml", "tasks: {one: {file: v.py}}\n")
    cli.write("in.jsonl", "[]\n")
    ns = {}
    exec(VALUES, ns)
    want = ns["f"]()

    def outputs(env, server):
        e = dict(env, PYSPRINTER_SERVER=server) if server else env
        got = {}
        for name, args in (("run", ["run", "v.py"]), ("run --json", ["run", "--json", "v.py"]),
                           ("dag", ["dag", "run", "--no-cache", "-q", "--json", "v.yaml"])):
            p = cli(*args, *([] if server else sandbox_args()), env=e)
            assert p.returncode == 0, p
            got[name] = p.stdout
        p = cli("map", "v.py", "--over", "in.jsonl", *([] if server else sandbox_args()), env=e)
        assert p.returncode == 0, p
        got["map"] = [{k: v for k, v in json.loads(ln).items() if k != "run_id"} for ln in p.stdout.split("\n") if ln]
        run_id = json.loads(cli("ps", "--json", "--limit", "1", env=e, check=0).stdout)[0]["id"]
        show = json.loads(cli("show", "--json", run_id, env=e, check=0).stdout)
        got["show result"] = json.dumps(show["result"], ensure_ascii=False)
        got["show"] = cli("show", run_id, env=e, check=0).stdout.split("result:", 1)[1].split("\n", 1)[0]
        got["dag"] = json.dumps(json.loads(got["dag"])["tasks"]["one"]["result"], ensure_ascii=False)
        return got

    held_env = {"PYSPRINTER_TEST_HELD_MIN": "1"}
    results = {}
    for held in (False, True):
        d = Daemon(tmp_path / f"daemon-{held}", sandbox="none" if sandbox_args() else None, args=["--no-auth"])
        if held:
            plain_env = d.env
            d.env = lambda: {**plain_env(), **held_env}
        d.start()
        try:
            env = {**cli.env, **(held_env if held else {})}
            results[held] = (outputs(env, None), outputs(env, d.url))
        finally:
            d.stop()
    for local, remote in results.values():
        assert local == remote
        assert json.loads(local["run"]) == want
        assert local["run"] == json.dumps(want, ensure_ascii=False).replace("\\u001f", "\\u001F") + "\n"
        assert local["run --json"] == json.dumps(want, ensure_ascii=False,
                                                 separators=(",", ":")).replace("\\u001f", "\\u001F") + "\n"
        assert json.loads(local["show result"]) == want and json.loads(local["dag"]) == want
        assert local["map"] == [{"index": 0, "status": "succeeded", "result": want}]
        assert json.loads(local["show"]) == want, local["show"]
    assert results[True] == results[False]


# ---- what has no JSON view, or too much of one: said, and the same on both paths ----

EDGES = {
    # NaN and Infinity have no JSON spelling: the repr() with a warning.
    "nan": ("def f():\n    return [float('nan'), float('inf'), -float('inf')] * 100000\n", 0,
            "the result cannot be represented as JSON"),
    # Deeper than the table converts (runtime.MAX_DEPTH): the repr().
    "deep": ("def f():\n    v = 1\n    for _ in range(150):\n        v = [v]\n    return v\n", 0,
             "the result cannot be represented as JSON"),
    # A lone surrogate is not UTF-8: the repr().
    "surrogate": ("def f():\n    return [{'s': '\\udcff' + str(i)} for i in range(100000)]\n", 0,
                  "the result cannot be represented as JSON"),
    # Over the 16 MiB result limit: a clear error, exit 5, nothing printed.
    "over": ("def f():\n    return [{'i': i, 's': 'y' * 100} for i in range(200000)]\n", 5, "result limit"),
}


@pytest.fixture(scope="module")
def edge_daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("edge-daemon"), sandbox="none" if sandbox_args() else None,
               args=["--no-auth"])
    d.start()
    yield d
    d.stop()


@pytest.mark.parametrize("case", list(EDGES))
@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["plain", "json"])
def test_edges_are_said_the_same_on_both_paths(cli, edge_daemon, case, json_flag):
    src, code, said = EDGES[case]
    cli.write(f"{case}.py", src)
    local = cli("run", *sandbox_args(), *json_flag, f"{case}.py")
    remote = cli("run", *json_flag, f"{case}.py", env={"PYSPRINTER_SERVER": edge_daemon.url})
    assert (local.returncode, local.stdout, local.stderr) == (remote.returncode, remote.stdout, remote.stderr)
    assert local.returncode == code and said in local.stderr, local
    if code == 0:
        ns = {}
        exec(src, ns)
        shown = json.loads(local.stdout) if json_flag else local.stdout[:-1]
        assert shown == repr(ns["f"]()), shown[:200]
    else:
        assert local.stdout == ""


# ---- the daemon's path scrub over a large answer ----

def test_scrubbing_a_large_answer_is_linear(cli, tmp_path):
    """A tenant's answer has the daemon's paths rewritten ($DATA, ~, …):
    each hit moved the whole rest of the text (memmove), so an answer of
    a million hits of the daemon's $HOME took minutes of a daemon thread
    (80,000 hits of a longer path: 3.3 s; 4x the hits ~5x the time). One
    pass now. The deadline is generous: the fixed daemon answers in about
    a second."""
    from daemonlib import TOKENS
    import secrets
    d = Daemon(tmp_path / "daemon", sandbox="none" if sandbox_args() else None)
    home = "/tmp/h" + secrets.token_hex(3)  # scrubbed as "~"; need not exist
    plain_env = d.env
    d.env = lambda: {**plain_env(), "HOME": home}
    n = 14_000_000 // (len(home) + 3)
    cli.write("paths.py", f"def f():\n    return [{home!r}] * {n}\n")
    d.start()
    try:
        p = cli("run", "--json", "paths.py", timeout=60,
                env={"PYSPRINTER_SERVER": d.url, "PYSPRINTER_TOKEN": TOKENS["alice"]})
    finally:
        d.stop()
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == ["~"] * n


def test_dependent_of_a_big_tree_is_refused_before_it_is_parsed(files):
    """A task whose argument is a whole upstream result past the 4 MiB
    argument cap is refused, as before, but from the result's size: the
    upstream's 10 MiB was parsed (~15 times its size) and written out as
    the arguments first (~300 MiB in the CLI)."""
    files.write("count.py", "def count(x):\n    return len(x)\n")
    files.write("dep.yaml", "tasks:\n  one: {file: big.py}\n  two: {file: count.py, args: ['${one}']}\n")
    files.write("dep0.yaml", "tasks:\n  one: {file: empty.py}\n  two: {file: count.py, args: ['${one}']}\n")
    args = [str(CLI), "dag", "run", "-q", "--no-cache", *sandbox_args()]
    base = own_peak_run([*args, "dep0.yaml"], env=files.env, cwd=files.cwd)
    assert base.returncode == 0, base.stderr
    big = own_peak_run([*args, "dep.yaml"], env=files.env, cwd=files.cwd)
    assert big.returncode == 3, big.stderr
    assert b"task 'two': its arguments are larger than 4194304 bytes; pass a large value through a dataset" in \
        big.stderr, big.stderr
    extra = big.peak_kib - base.peak_kib
    print(f"refused dependent: the CLI's own peak {big.peak_kib // 1024} MiB, {base.peak_kib // 1024} MiB")
    assert extra < CLI_COPIES * SIZE / 1024, f"grew by {extra // 1024} MiB: more than {CLI_COPIES} copies"
