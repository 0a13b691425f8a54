"""A chain's value-less flags (`--flag`, `--no-flag`) reach its first step
as `run`'s do (docs/cli.md "chain", docs/dag.md "raw_kwargs"): the chain
writes them into the in-memory pipeline as the API's raw_kwargs marker
(`true`), where before they were a plain `true` kwarg and `--no-flag` was
"unexpected keyword argument 'no_flag'". Embedded and against a daemon:
the same bytes and exit code, and the same as `run`."""
import json

import pytest

from conftest import CLI, WORKER, same, sandbox_args
from daemonlib import module_daemon

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "chainflag-daemon")


FLAGS = """\
def f(flag: bool = False, n: int = 1, **kw):
    return [flag, n, list(kw)]


def g(x):
    return x
"""


@pytest.mark.parametrize("args", [
    ["--no-flag"],
    ["--flag"],
    ["--flag", "--no-flag"],
    ["--no-flag", "--flag"],
    ["--flag", "--no-flag", "--flag"],
    ["--flag", "--n", "3", "--no-flag"],
    ["--no-flag", "--no-flag"],
], ids=" ".join)
def test_a_chains_flags_are_runs_flags(cli, both, args):
    cli.write("f.py", FLAGS)
    ran = same(*both("run", "f.py::f", "--json", *sandbox_args(), *args))
    assert (ran.returncode, ran.stderr) == (0, ""), ran
    chained = same(*both("chain", "f.py::f", "f.py::g", *args, "--json", "-q", *sandbox_args()))
    assert (chained.returncode, chained.stdout, chained.stderr) == (0, ran.stdout, ""), chained


@pytest.mark.parametrize("args,flag", [
    (["--no-flag"], False),
    (["--flag", "--no-flag"], False),
    (["--no-flag", "--no-flag"], False),
    (["--n", "2", "--no-flag"], False),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_no_flag_before_the_next_step_is_a_flag(cli, both, args, flag):
    """`chain a.py --no-flag b.py` gave b.py to --no-flag as its value (a
    one-step chain: "unexpected keyword argument 'no_flag'"): --no-NAME
    takes no value, the word naming a step is the next step."""
    cli.write("f.py", FLAGS)
    ran = same(*both("run", "f.py::f", "--json", *sandbox_args(), *args))
    chained = same(*both("chain", "f.py::f", *args, "f.py::g", "--json", "-q", *sandbox_args()))
    assert (chained.returncode, chained.stdout, chained.stderr) == (0, ran.stdout, ""), chained
    assert json.loads(chained.stdout)[0] is flag
    # A parameter named no_x takes such a word with '='.
    cli.write("nx.py", "def h(no_x: str = ''):\n    return no_x\n")
    p = same(*both("chain", "nx.py::h", "--no-x=f.py::g", "--json", "-q", *sandbox_args()))
    assert (p.returncode, p.stdout) == (0, '"f.py::g"\n'), p


@pytest.mark.parametrize("args", [
    # A flag for a parameter that is no bool: run's "a value is needed",
    # where a chain passed True to it.
    ["--n"],
    # A value given with the flag is no flag: two values, as with run.
    ["--flag=yes", "--no-flag"],
], ids=" ".join)
def test_a_chains_flag_errors_are_runs(cli, both, args):
    cli.write("f.py", FLAGS)
    ran = same(*both("run", "f.py::f", *sandbox_args(), *args))
    assert ran.returncode == 3, ran
    chained = same(*both("chain", "f.py::f", "f.py::g", *args, *sandbox_args()))
    assert chained.returncode == 3, chained
    # run names the file, a chain its task: the error itself is the same.
    assert chained.stderr.endswith(ran.stderr.split(": ", 1)[1]), (chained.stderr, ran.stderr)


def test_a_pipelines_raw_kwargs_are_the_apis(cli, both):
    """A YAML task's raw_kwargs: true is a flag given without a value; a
    kwargs: true stays the typed True it was."""
    cli.write("f.py", FLAGS)
    cli.write("p.yaml", "tasks:\n"
                        "  a: {file: f.py::f, raw_kwargs: {flag: true, no_flag: true}}\n"
                        "  b: {file: f.py::f, raw_kwargs: {no_flag: true, flag: true, n: '4'}}\n"
                        "  c: {file: f.py::f, kwargs: {flag: true, no_flag: true}}\n"
                        "  d: {file: nx.py::h, raw_kwargs: {no_x: '${a}'}}\n")
    cli.write("nx.py", "def h(no_x: str = ''):\n    return no_x\n")
    for p in both("dag", "run", "p.yaml", "--json", "-q", *sandbox_args()):
        assert (p.returncode, p.stderr) == (0, ""), p
        tasks = json.loads(p.stdout)["tasks"]
        # raw_kwargs are words, no templates: '${a}' is text, no edge.
        assert [tasks[t]["result"] for t in "abcd"] == [[False, 1, []], [True, 4, []], [True, 1, ["no_flag"]],
                                                         "${a}"], tasks
        assert tasks["d"]["depends"] == [], tasks["d"]


@pytest.mark.parametrize("task,msg", [
    ("{file: f.py::f, raw_kwargs: {flag: false}}",
     "task 'a': raw_kwargs 'flag' must be a string, a non-empty list of strings (the option given once per "
     "element), or true for a flag given without a value"),
    ("{file: f.py::f, raw_kwargs: {flag: true}, kwargs: {flag: 1}}",
     "task 'a': keyword argument 'flag' given in both raw_kwargs and kwargs"),
    ("{file: f.py::f, raw_kwargs: [flag]}", "task 'a': raw_kwargs must be a mapping of name: value"),
], ids=["false", "both", "list"])
def test_a_malformed_raw_kwargs_is_refused_before_anything_runs(cli, both, task, msg):
    cli.write("f.py", FLAGS)
    cli.write("p.yaml", "tasks:\n  a: " + task + "\n")
    p = same(*both("dag", "run", "p.yaml", *sandbox_args()))
    assert p.returncode == 3 and msg in p.stderr, p
