"""Two edges of a function's arguments on the command line (docs/cli.md,
"Grammar"): a bool parameter given as `--flag --no-flag` (the last one
wins, as argparse's store_true/store_false into one dest and click's
--flag/--no-flag have it), and the shadowed-option warning of `run`
said by `schedule add` too. Runs are made twice, embedded and against a
daemon: the same bytes and exit code."""
import json

import pytest

from conftest import CLI, WORKER, same
from daemonlib import module_daemon

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "cliflags3-daemon")


FLAGS = """
    def f(flag: bool = False, n: int = 1, names: list[str] = None):
        return [flag, n, names]
    """


# ---- 1. --flag --no-flag: the last one wins ----------------------------------


@pytest.mark.parametrize("args,flag", [
    (["--flag", "--no-flag"], False),
    (["--no-flag", "--flag"], True),
    (["--flag", "--no-flag", "--flag"], True),
    (["--no-flag", "--flag", "--no-flag"], False),
    (["--flag", "--n", "3", "--no-flag"], False),
    # The same flag again says the same thing: idempotent.
    (["--flag", "--flag"], True),
    (["--no-flag", "--no-flag"], False),
    (["--flag", "--flag", "--no-flag", "--no-flag"], False),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_the_last_flag_wins(cli, both, args, flag):
    """`--flag --no-flag` was the validation error "f() got multiple
    values for argument 'flag'" (exit 3)."""
    f = cli.write("f.py", FLAGS)
    p = same(*both("run", f, "--json", *args))
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert json.loads(p.stdout) == [flag, 3 if "--n" in args else 1, None]


def test_the_last_flag_wins_for_invoke(cli, daemon):
    f = cli.write("f.py", FLAGS)
    env = daemon.client_env()
    cli("deploy", f, "--name", "flags3", env=env, check=0)
    for args, want in ((["--flag", "--no-flag"], False), (["--no-flag", "--flag"], True)):
        p = cli("invoke", "flags3", "--json", *args, env=env)
        assert (p.returncode, p.stderr, json.loads(p.stdout or "null")) == (0, "", [want, 1, None]), p


def test_the_last_flag_wins_on_the_daemon_api(daemon):
    """raw_kwargs keeps the order the options came in (a JSON object's
    order, as the CLI sends it): true for --flag, no_flag for --no-flag."""
    src = "def f(flag: bool = False):\n    return flag\n"
    for raw, want in (({"flag": True, "no_flag": True}, False), ({"no_flag": True, "flag": True}, True)):
        st, body = daemon.call("POST", "/v1/runs?wait=true", {"source": src, "raw_kwargs": raw})
        assert st in (200, 201) and body["result"] is want, body


@pytest.mark.parametrize("args,msg", [
    # A value given with the flag is no flag: two values, as before.
    (["--flag=yes", "--no-flag"], "ValidationError: f() got multiple values for argument 'flag'\n"),
    (["-a", "true", "--no-flag"], "ValidationError: f() got multiple values for argument 'flag'\n"),
    # A scalar option repeated stays the error it was.
    (["--n", "1", "--n", "2"], "ValidationError: argument 'n': given 2 times (--n 1 --n 2); only a list or tuple "
                               "parameter takes an option more than once\n"),
    # A flag for a parameter that is no bool, given twice: a value is needed.
    (["--n", "--n"], "ValidationError: argument 'n': a value is needed (only a bool parameter is a flag without "
                     "one): --n VALUE, or --n=VALUE for a value that starts with '-'\n"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_what_stays_an_error(cli, both, args, msg):
    f = cli.write("f.py", """
        def f(flag: bool = False, n: int = 1):
            return [flag, n]
        """)
    p = same(*both("run", f, *args))
    assert (p.returncode, p.stdout, p.stderr) == (3, "", msg)


def test_a_flag_and_a_value_of_one_name_stay_a_usage_error(cli, both):
    f = cli.write("f.py", FLAGS)
    for args in (["--flag", "--flag", "yes"], ["-k", "flag=no", "--flag"], ["--flag=no", "--flag"]):
        p = same(*both("run", f, *args))
        assert (p.returncode, p.stdout) == (2, "")
        assert p.stderr == "pysprinter: keyword argument 'flag' given twice\nTry 'pysprinter run --help'.\n"


def test_list_options_still_append(cli, both):
    f = cli.write("f.py", FLAGS)
    p = same(*both("run", f, "--json", "--names", "a", "--flag", "--names", "b", "--no-flag"))
    assert (p.returncode, p.stdout, p.stderr) == (0, '[false,1,["a","b"]]\n', "")


def test_a_no_parameter_of_its_own_is_not_the_flags_opposite(cli, both):
    """f(flag, no_flag): --no-flag is no_flag's flag, both true."""
    f = cli.write("f.py", """
        def f(flag: bool = False, no_flag: bool = False):
            return [flag, no_flag]
        """)
    p = same(*both("run", f, "--json", "--flag", "--no-flag", "--flag"))
    assert (p.returncode, p.stdout, p.stderr) == (0, "[true,true]\n", "")


def test_flags_into_kwargs_are_each_their_own(cli, both):
    """**kw: bool takes --flag as flag=True; --no-flag is flag=False only
    for a bool parameter flag (here there is none: no_flag=True)."""
    f = cli.write("f.py", """
        def f(**kw: bool):
            return kw
        """)
    p = same(*both("run", f, "--json", "--flag", "--no-flag", "--flag"))
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert json.loads(p.stdout) == {"flag": True, "no_flag": True}


# ---- 2. schedule add says what run says of a shadowed parameter ------------------

SHADOWED = """
    def f(timeout: int = 5, memory: str = "x", n: int = 1):
        return [timeout, memory, n]
    """


def test_schedule_add_warns_of_a_shadowed_parameter(cli, daemon):
    """`schedule add … FUNCTION --timeout 7` set the fires' time limit,
    the parameter kept its default, and nothing said so (run and invoke
    did)."""
    f = cli.write("f.py", SHADOWED)
    env = daemon.client_env()
    cli("deploy", f, "--name", "shadow3", env=env, check=0)
    p = cli("schedule", "add", "s-shadow3", "--every", "1h", "--paused", "shadow3", "--timeout", "7",
            "--memory=64M", "--n", "2", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "created schedule s-shadow3: paused, next -\n"
    assert p.stderr == ("pysprinter: warning: --timeout 7 was taken as the runner's option, not as f()'s "
                        "parameter 'timeout': give that as -k timeout=7\n"
                        "pysprinter: warning: --memory=64M was taken as the runner's option, not as f()'s "
                        "parameter 'memory': give that as -k memory=64M\n")
    # The runner's options they were: the fires' limits.
    st, s = daemon.call("GET", "/v1/schedules/s-shadow3")
    assert st == 200 and s["limits"]["timeout_ms"] == 7000, s
    assert s["limits"]["memory_bytes"] == 64 << 20, s
    # The same words as invoke's.
    p2 = cli("invoke", "shadow3", "--timeout", "7", "--memory=64M", "--n", "2", "--json", env=env)
    assert (p2.returncode, p2.stdout, p2.stderr) == (0, '[5,"x",2]\n', p.stderr)
    # -k reaches the parameter, and says nothing; -q keeps it quiet.
    p = cli("schedule", "add", "s-shadow3k", "--every", "1h", "--paused", "shadow3", "-k", "timeout=7", env=env)
    assert (p.returncode, p.stderr) == (0, "")
    p = cli("schedule", "add", "s-shadow3q", "--every", "1h", "--paused", "shadow3", "--timeout", "7", "-q",
            env=env)
    assert (p.returncode, p.stderr) == (0, "")
    # Without such a parameter, nothing is said.
    g = cli.write("g.py", """
        def f(n: int = 1):
            return n
        """)
    cli("deploy", g, "--name", "noshadow3", env=env, check=0)
    p = cli("schedule", "add", "s-noshadow3", "--every", "1h", "--paused", "noshadow3", "--timeout", "7", env=env)
    assert (p.returncode, p.stderr) == (0, "")


def test_schedule_add_refused_says_no_warning_first(cli, daemon):
    """A schedule the server refuses (no such function) says the refusal
    alone: the warning comes from the function's parameters, which it
    has none of."""
    p = cli("schedule", "add", "s-missing3", "--every", "1h", "nosuchfn3", "--timeout", "7",
            env=daemon.client_env())
    assert p.returncode != 0
    assert "warning" not in p.stderr, p.stderr


def test_chain_warns_of_its_first_steps_shadowed_parameter(cli, both):
    """A chain's arguments are its first step's: `--timeout 7` there was
    every step's time limit, and nothing said so."""
    cli.write("a.py", """
        def f(timeout: int = 5, n: int = 1):
            return [timeout, n]
        """)
    cli.write("b.py", """
        def g(x):
            return x
        """)
    warning = ("pysprinter: warning: --timeout 7 was taken as the runner's option, not as f()'s "
               "parameter 'timeout': give that as -k timeout=7\n")
    local, remote = both("chain", "a.py", "--timeout", "7", "--n", "2", "b.py", "-q")
    for p in (local, remote):
        assert (p.returncode, p.stdout) == (0, "[5, 2]\n"), p.stderr
    # -q: no warning (nor the chain's progress).
    assert (local.stderr, remote.stderr) == ("", "")
    local, remote = both("chain", "a.py", "--timeout", "7", "--n", "2", "b.py")
    for p in (local, remote):
        assert (p.returncode, p.stdout) == (0, "[5, 2]\n"), p.stderr
        assert p.stderr.startswith(warning), p.stderr
        assert p.stderr.count("warning") == 1, p.stderr
    local, remote = both("chain", "a.py", "-k", "timeout=7", "b.py")
    for p in (local, remote):
        assert (p.returncode, p.stdout) == (0, "[7, 1]\n"), p.stderr
        assert "warning" not in p.stderr, p.stderr
