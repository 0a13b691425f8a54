"""A Python user's function parameters on the command line (docs/cli.md,
"Grammar"): a parameter a runner option shadows, an option repeated for a
list parameter, a bad --payload, and the argparse/click/Typer habits
(--flag/--no-flag, -a=5, negative numbers, `--`, unicode, Optional). Each
run twice, embedded and against a daemon: the same bytes and exit code."""
import json

import pytest

from conftest import CLI, WORKER, same
from daemonlib import module_daemon

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "cliargs3-daemon")


SHADOWED = """
    def f(timeout: int = 5, env: str = "dev", n: int = 1):
        return [timeout, env, n]
    """


# ---- 1. a parameter a runner option shadows ------------------------------------


def test_a_runner_option_that_shadows_a_parameter_says_which_was_taken(cli, both):
    """`--timeout 7` meant for f's parameter `timeout` set the run's time
    limit and the parameter kept its default, without a word. Now a line
    on stderr says which one was taken and how to reach the parameter."""
    f = cli.write("f.py", SHADOWED)
    p = same(*both("run", f, "--timeout", "7", "--json"))
    assert (p.returncode, p.stdout) == (0, '[5,"dev",1]\n'), p.stderr
    assert p.stderr == ("pysprinter: warning: --timeout 7 was taken as the runner's option, not as f()'s "
                        "parameter 'timeout': give that as -k timeout=7\n")
    # The spelling the user wrote is the one quoted.
    p = same(*both("run", f, "--timeout=7", "--json"))
    assert p.stderr == ("pysprinter: warning: --timeout=7 was taken as the runner's option, not as f()'s "
                        "parameter 'timeout': give that as -k timeout=7\n")
    # -k reaches the parameter and says nothing.
    p = same(*both("run", f, "-k", "timeout=7", "--json"))
    assert (p.returncode, p.stdout, p.stderr) == (0, '[7,"dev",1]\n', "")


def test_a_flag_option_that_shadows_a_bool_parameter_says_so(cli, both):
    f = cli.write("f.py", """
        def f(allow_sdist: bool = False):
            return allow_sdist
        """)
    p = same(*both("run", f, "--allow-sdist", "--json"))
    assert (p.returncode, p.stdout) == (0, "false\n"), p.stderr
    assert p.stderr == ("pysprinter: warning: --allow-sdist was taken as the runner's option, not as f()'s "
                        "parameter 'allow_sdist': give that as -k allow_sdist=true\n")


def test_a_global_option_after_the_file_says_it_too(cli, both):
    """--verbose and --json are the CLI's own options wherever they are
    (docs/cli.md): after FILE, a parameter of that name is told about;
    before it, the user meant the CLI's."""
    f = cli.write("f.py", """
        import json

        def f(verbose: bool = False, json: bool = False):
            return [verbose, json]
        """)
    p = same(*both("run", f, "--verbose", "--json"))
    assert (p.returncode, p.stdout) == (0, "[false,false]\n"), p.stderr
    assert p.stderr == ("pysprinter: warning: --verbose was taken as the runner's option, not as f()'s "
                        "parameter 'verbose': give that as -k verbose=true\n"
                        "pysprinter: warning: --json was taken as the runner's option, not as f()'s "
                        "parameter 'json': give that as -k json=true\n")
    p = same(*both("--verbose", "run", f, "-k", "json=1"))
    assert (p.returncode, p.stdout, p.stderr) == (0, "[false, true]\n", "")


def test_invoke_says_it_too(cli, daemon):
    """A deployed function's parameters are in its object: `invoke NAME
    --timeout 7` says what `run` says."""
    f = cli.write("f.py", SHADOWED)
    env = daemon.client_env()
    cli("deploy", f, "--name", "shadowed", env=env, check=0)
    p = cli("invoke", "shadowed", "--timeout", "7", "--json", env=env)
    assert (p.returncode, p.stdout) == (0, '[5,"dev",1]\n'), p.stderr
    assert p.stderr == ("pysprinter: warning: --timeout 7 was taken as the runner's option, not as f()'s "
                        "parameter 'timeout': give that as -k timeout=7\n")
    p = cli("invoke", "shadowed", "-k", "timeout=7", "--json", env=env)
    assert (p.returncode, p.stdout, p.stderr) == (0, '[7,"dev",1]\n', "")


def test_no_warning_when_no_parameter_is_shadowed(cli, both):
    """The word in a comment or another function's parameter is no
    parameter of the function run."""
    f = cli.write("f.py", """
        # timeout: see the docs
        def helper(timeout):
            return timeout

        def f(n: int = 1):
            return n
        """)
    p = same(*both("run", f"{f}::f", "--timeout", "7", "--json"))
    assert (p.returncode, p.stdout, p.stderr) == (0, "1\n", "")


def test_quiet_keeps_the_warning_out(cli, both):
    f = cli.write("f.py", SHADOWED)
    p = same(*both("run", f, "--timeout", "7", "-q"))
    assert (p.returncode, p.stdout, p.stderr) == (0, '[5, "dev", 1]\n', "")


def test_a_refused_option_value_names_the_k_spelling(cli, both):
    """`--env prod` meant for a parameter `env` is refused as the runner's
    --env (KEY=VALUE): the error says how the parameter is given."""
    f = cli.write("f.py", SHADOWED)
    p = same(*both("run", f, "--env", "prod"))
    assert p.returncode == 2
    assert p.stderr == ("pysprinter: --env needs KEY=VALUE (KEY: [A-Za-z_][A-Za-z0-9_]{0,127}), got 'prod' "
                        "(a parameter 'env' of the function is given as -k env=VALUE)\n"
                        "Try 'pysprinter run --help'.\n")


# ---- 2. an option repeated ----------------------------------------------------

REPEATED = """
    from typing import Optional
    def f(names: list[str] = None, xs: Optional[list[int]] = None, pair: tuple[int, str] = None,
          n: int = 1, d: dict = None):
        return {"names": names, "xs": xs, "pair": pair, "n": n, "d": d}
    """


@pytest.mark.parametrize("args,expected", [
    (["--names", "a", "--names", "b"], {"names": ["a", "b"]}),
    (["--names", "a", "-k", "names=b", "--names=c"], {"names": ["a", "b", "c"]}),
    (["--xs", "1", "--xs", "-2", "--xs", "0x10"], {"xs": [1, -2, 16]}),
    (["--pair", "1", "--pair", "x"], {"pair": [1, "x"]}),
    # One value is still the whole list, as JSON.
    (["--names", '["a", "b"]'], {"names": ["a", "b"]}),
    (["--xs", "[1, 2]"], {"xs": [1, 2]}),
    # Each repeated value is one element, JSON-looking or not.
    (["--names", '["a"]', "--names", "b"], {"names": ['["a"]', "b"]}),
    # One value that is no JSON array is the list's one element.
    (["--names", "a"], {"names": ["a"]}),
    (["--names", "a,b"], {"names": ["a,b"]}),
    (["--names", "null"], {"names": ["null"]}),
    (["--xs", "5"], {"xs": [5]}),
    (["--xs", "none"], {"xs": None}),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_list_option_repeated_accumulates(cli, both, args, expected):
    """argparse's action='append', click's multiple=True and Typer's
    list[str]: `--names a --names b` is ['a', 'b']. It was the usage error
    "keyword argument 'names' given twice"."""
    f = cli.write("f.py", REPEATED)
    p = same(*both("run", f, *args, "--json"))
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    want = {"names": None, "xs": None, "pair": None, "n": 1, "d": None, **expected}
    assert json.loads(p.stdout) == want


@pytest.mark.parametrize("args,msg", [
    (["--n", "1", "--n", "2"],
     "ValidationError: argument 'n': given 2 times (--n 1 --n 2); only a list or tuple parameter "
     "takes an option more than once\n"),
    (["--d", "{}", "-k", "d={}"],
     "ValidationError: argument 'd': given 2 times (--d {} --d {}); only a list or tuple parameter "
     "takes an option more than once\n"),
    (["--xs", "1", "--xs", "x"],
     "ValidationError: argument 'xs[1]': expected an integer, got 'x'\n"),
    (["--pair", "1", "--pair", "x", "--pair", "y"],
     "ValidationError: argument 'pair': expected 2 elements for tuple[int, str], got [\"1\", \"x\", \"y\"]\n"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_repeated_option_the_parameter_cannot_take_is_refused(cli, both, args, msg):
    f = cli.write("f.py", REPEATED)
    p = same(*both("run", f, *args))
    assert (p.returncode, p.stdout, p.stderr) == (3, "", msg)


def test_a_repeated_option_with_a_typed_value_is_a_usage_error(cli, both):
    f = cli.write("f.py", REPEATED)
    p = same(*both("run", f, "--names", "a", "--json-kwargs", '{"names": ["b"]}'))
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr.startswith("pysprinter: keyword argument 'names' given twice"), p.stderr


def test_a_repeated_list_option_reaches_the_daemon_api_as_an_array(daemon):
    """raw_kwargs takes an array of strings: the option given once per
    element (docs/api.md)."""
    st, body = daemon.call("POST", "/v1/runs?wait=true", {
        "source": "def f(xs: list[int]):\n    return xs\n", "raw_kwargs": {"xs": ["1", "2"]}})
    assert st in (200, 201) and body["result"] == [1, 2], body
    st, body = daemon.call("POST", "/v1/runs?wait=true", {
        "source": "def f(xs: list[int]):\n    return xs\n", "raw_kwargs": {"xs": ["1", 2]}})
    assert st == 400 and "raw_kwargs.xs" in body["error"]["message"], body


# ---- 3. invoke --payload that is not JSON ---------------------------------------


@pytest.mark.parametrize("payload,msg", [
    ('{"a": }', "the payload is not JSON: line 1, column 7: unexpected token near '}'"),
    ('{"a": 1,\n "b": x}', "the payload is not JSON: line 2, column 7: invalid token near 'x'"),
    ("", "the payload is empty: give a JSON value (--payload '{}' for an empty event)"),
])
def test_a_payload_that_is_not_json_says_where(cli, daemon, payload, msg):
    p = cli("invoke", "nosuchfn", "--payload", payload, env=daemon.client_env())
    assert (p.returncode, p.stdout, p.stderr) == (2, "", f"pysprinter: {msg}\nTry 'pysprinter invoke --help'.\n")


def test_a_payload_file_that_is_not_json_names_the_file(cli, daemon):
    cli.write("ev.json", '{"a":\n  1,,}')
    p = cli("invoke", "nosuchfn", "--payload-file", "ev.json", env=daemon.client_env())
    assert (p.returncode, p.stderr) == (2, "pysprinter: ev.json is not JSON: line 2, column 5: string or '}' "
                                           "expected near ','\nTry 'pysprinter invoke --help'.\n")


def test_json_kwargs_that_is_not_json_says_where(cli, both):
    f = cli.write("f.py", SHADOWED)
    p = same(*both("run", f, "--json-kwargs", '{"n": }'))
    assert (p.returncode, p.stderr) == (2, "pysprinter: --json-kwargs is not JSON: line 1, column 7: unexpected "
                                           "token near '}'\nTry 'pysprinter run --help'.\n")


# ---- 4. the habits of argparse, click and Typer -------------------------------------

HABITS = """
    from typing import Optional
    def f(n: int = 1, x: float = 0.5, flag: bool = False, o: Optional[int] = None, s: str = "x", *rest):
        return {"n": n, "x": x, "flag": flag, "o": o, "s": s, "rest": list(rest)}
    """


@pytest.mark.parametrize("args,expected", [
    (["--flag"], {"flag": True}),
    (["--no-flag"], {"flag": False}),
    (["--flag=no"], {"flag": False}),
    (["-n=5"], {"n": 5}),
    (["-n", "-5"], {"n": -5}),
    (["--n=-5"], {"n": -5}),
    (["--x", "-.5"], {"x": -0.5}),
    (["--x", "-1e3"], {"x": -1000.0}),
    (["--o", "none"], {"o": None}),
    (["--o", "-3"], {"o": -3}),
    (["--s", "héllo wörld ✓"], {"s": "héllo wörld ✓"}),
    (["--s=--not-an-option"], {"s": "--not-an-option"}),
    (["-a", "-5", "-a", "1.5"], {"n": -5, "x": 1.5}),
    (["-a=7"], {"n": 7}),
    (["--", "2", "3", "yes", "none", "-s"], {"n": 2, "x": 3.0, "flag": True, "s": "-s"}),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_argparse_habits(cli, daemon, args, expected):
    f = cli.write("f.py", HABITS)
    # The server from the environment: after `--` an option is a value.
    p = same(cli("run", f, "--json", *args), cli("run", f, "--json", *args, env=daemon.client_env()))
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    want = {"n": 1, "x": 0.5, "flag": False, "o": None, "s": "x", "rest": [], **expected}
    assert json.loads(p.stdout) == want


def test_the_functions_usage_shows_defaults(cli, both):
    f = cli.write("f.py", HABITS)
    p = same(*both("run", f, "--help"))
    assert p.returncode == 0
    assert "f(n: int = 1, x: float = 0.5, flag: bool = False, o: Optional[int] = None, s: str = 'x', *rest)" \
        in p.stdout


@pytest.mark.parametrize("word", ["-inf", "-Infinity", "-nan"])
def test_float_words_that_start_with_a_dash_are_values(cli, both, word):
    """float() reads -inf and -nan; `--x -inf` was the flag --x ("a value
    is needed") and a keyword 'inf'."""
    f = cli.write("f.py", """
        def f(x: float = 0.0):
            return repr(x)
        """)
    p = same(*both("run", f, "--x", word))
    assert (p.returncode, p.stdout, p.stderr) == (0, ("-inf" if "inf" in word.lower() else "nan") + "\n", "")
