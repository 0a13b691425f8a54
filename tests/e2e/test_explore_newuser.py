"""A Lambda/Modal/Ray/uv user's first day with pysprinter, from its README
and docs/: each test a place where the docs, the behaviour and the other
path (embedded vs `--server`) disagreed."""
import json
import re

import pytest

from conftest import CLI, WORKER, run_on_pty, sandbox_args
from daemonlib import Daemon, TOKENS, sandbox_mode
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")

NOISY = ("import sys\n"
         "print('noisy: loading the model (stdout)')\n"
         "print('noisy: warning: old CPU (stderr)', file=sys.stderr)\n"
         "X = 41\n")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    w = tmp_path_factory.mktemp("newuser-wheels")
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(w, "noisy", "1.0", files={"noisy/__init__.py": NOISY}))
    ix.start()
    yield ix
    ix.stop()


@pytest.fixture
def fresh_daemon(tmp_path, index):
    """A daemon of its own for each test: its workers start cold."""
    root = tmp_path / "daemon"
    d = Daemon(root, sandbox=sandbox_mode(root), config_extra=f"index:\n  url: {index.url}\n")
    d.start()
    yield d
    d.stop()


def uses_noisy(cli):
    return cli.write("job.py", """
        @requirements({'noisy': ''})
        def job(n: int):
            import noisy
            print("in job")
            return noisy.X + n
        """)


def test_what_a_package_prints_at_import_is_the_runs_output_on_both_paths(cli, index, fresh_daemon):
    """`import noisy` in plain Python prints its lines. The warm worker
    imports the env's packages before the run (docs/workers.md), and what
    they printed went to the worker's inherited stderr: embedded, raw onto
    the CLI's stderr (outside the run's output: no `err |` prefix on a
    terminal, glued to the progress line, not in `logs RUN`, the stdout
    line lost); with a server, into the daemon's log, so the user saw
    nothing. Now it is the first output of the run that started the
    worker, on its own streams, the same bytes on both paths."""
    f = uses_noisy(cli)
    env = {"PYSPRINTER_INDEX_URL": index.url}
    local = cli("run", *sandbox_args(), f, "-a", "1", env=env)
    remote = cli("run", f, "-a", "1", env=fresh_daemon.client_env())
    assert (local.returncode, local.stdout, local.stderr) == (
        0, "noisy: loading the model (stdout)\nin job\n42\n", "noisy: warning: old CPU (stderr)\n")
    assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
    for r, extra in ((local, {}), (remote, fresh_daemon.client_env())):
        rid = cli("ps", "--json", "-n", "1", env=extra)
        run_id = re.search(r'"id":"(r[0-9a-z]+)"', rid.stdout).group(1)
        logs = cli("logs", run_id, env=extra)
        assert (logs.returncode, logs.stdout, logs.stderr) == (
            0, "noisy: loading the model (stdout)\nin job\n", "noisy: warning: old CPU (stderr)\n")


def test_a_packages_import_output_is_drawn_as_the_runs_on_a_terminal(cli, index):
    """On a terminal each line of the run is `TIME err | …` and the progress
    line is erased first; the import's line came raw, after `resolve locked
    1 packages` on the same line."""
    f = uses_noisy(cli)
    code, out = run_on_pty(cli.cwd, [CLI, "run", *sandbox_args(), f, "-a", "1"],
                           dict(cli.env, PYSPRINTER_INDEX_URL=index.url, TERM="xterm"))
    assert code == 0, out
    lines = [re.sub(r".*\x1b\[K", "", ln) for ln in out.replace("\r\n", "\n").split("\n")]
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} err \| noisy: warning: old CPU \(stderr\)", ln)
               for ln in lines), out
    assert "packagesnoisy" not in out, out


def test_a_deployed_functions_first_invoke_shows_its_packages_import_output(cli, fresh_daemon):
    """A cold invoke's output begins with what the module printed as it
    loaded (docs/workers.md); what its env's packages printed, imported by
    the worker before that, went to the daemon's log. Lambda shows its
    init phase's output with the cold invocation; a warm one shows none."""
    f = uses_noisy(cli)
    env = fresh_daemon.client_env()
    cli("deploy", f, "--name", "job", env=env, check=0)
    first = cli("invoke", "job", "-a", "1", env=env)
    assert (first.returncode, first.stdout, first.stderr) == (
        0, "noisy: loading the model (stdout)\nin job\n42\n", "noisy: warning: old CPU (stderr)\n")
    again = cli("invoke", "job", "-a", "2", env=env)
    assert (again.returncode, again.stdout, again.stderr) == (0, "in job\n43\n", "")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("newuser-daemon")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as d:
        yield d


@pytest.fixture
def both(cli, daemon):
    def _both(*args):
        local = cli(*args)
        remote = cli(*args, env=daemon.client_env())
        assert (remote.returncode, remote.stdout, remote.stderr) == (local.returncode, local.stdout, local.stderr)
        return local
    return _both


@pytest.mark.parametrize("verb", [["ps"], ["dag", "ls"]], ids=" ".join)
@pytest.mark.parametrize("spelling", [["-n1"], ["--limit=1"], ["-n", "1"], ["--limit", "1"]], ids=" ".join)
def test_list_limits_take_the_joined_spellings(cli, daemon, verb, spelling):
    """`ps -n1` (git log -n1, head -n1) and `ps --limit=1` were "unexpected
    argument '-n1' (usage: ps [--json] [-n N])", exit 2, where `--status=S`
    and `map -j4` take theirs."""
    f = cli.write("one.py", """
        def f():
            return 1
        """)
    for env in ({}, daemon.client_env()):
        cli("run", *(sandbox_args() if not env else []), f, env=env, check=0)
        cli("run", *(sandbox_args() if not env else []), f, env=env, check=0)
        r = cli(*verb, "--json", *spelling, env=env)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        assert len(json.loads(r.stdout)) == (1 if verb == ["ps"] else 0)


@pytest.mark.parametrize("args,msg", [
    (["-n"], "pysprinter: ps: -n needs a number from 1 to 10000\nTry 'pysprinter ps --help'.\n"),
    (["-nx"], "pysprinter: ps: -n needs a number from 1 to 10000, got 'x'\nTry 'pysprinter ps --help'.\n"),
    (["--limit=0"], "pysprinter: ps: --limit needs a number from 1 to 10000, got '0'\nTry 'pysprinter ps --help'.\n"),
    (["--bogus"], "pysprinter: ps: unexpected argument '--bogus'\nTry 'pysprinter ps --help'.\n"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_bad_list_option_says_what_and_where_the_usage_is(both, args, msg):
    """`ps -n` at the end was "unexpected argument '-n'"; a bad one's
    usage hint, "(usage: ps [--json] [-n N])", left out every other option
    ps takes."""
    r = both("ps", *args)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", msg)


@pytest.mark.parametrize("ann,word,example", [
    ("list[int]", "1,2", "[1, 2]"),
    ("dict[str, float]", "k=1", '{"key": 1.5}'),
    ("tuple[int, str]", "1,x", '[1, "b"]'),
    ("Optional[list[bool]]", "maybe", "[true, false]"),
    # A word that is no JSON array is one element (`--xs a` is ['a'],
    # test_explore_cliargs3), unless it starts with '['.
    ("list[str]", "[a, b]", '["a", "b"]'),
])
def test_a_word_that_is_not_json_for_a_container_parameter_gets_an_example(cli, both, ann, word, example):
    """`--xs 1,2` for `xs: list[int]` said "expected JSON for list[int],
    got '1,2'": what was wrong, not what to type. A Typer user writes
    `--xs 1 --xs 2`, a Fire user `--xs [1,2]`; the error now shows a value
    that works for the annotation."""
    f = cli.write("c.py", f"""
        from typing import Optional
        def f(xs: {ann}):
            return xs
        """)
    r = both("run", *sandbox_args(), f, "--xs", word) if not sandbox_args() else None
    if r is None:  # the daemon's sandbox decides; the message is the validator's
        r = both("validate", f, "--xs", word)
    assert (r.returncode, r.stdout) == (3, "")
    assert r.stderr == f"ValidationError: argument 'xs': expected JSON for {ann}, such as '{example}', got '{word}'\n"


def test_a_functions_help_names_the_parameters_a_runner_option_shadows(cli, both):
    """`def f(verbose: bool = False, timeout: int = 5)` run with `--verbose
    --timeout 9` gets its defaults: `--verbose` is the CLI's global option
    and `--timeout` the run's limit (docs/cli.md: use -k). Nothing said so,
    not even `run FILE --help`, where a user looks when an argument does
    not arrive. The help now lists them with the -k spelling."""
    f = cli.write("opts.py", """
        def f(name: str, verbose: bool = False, timeout: int = 5, dry_run: bool = False, max_output: int = 1):
            return [name, verbose, timeout]
        """)
    r = both("run", f, "--help")
    assert r.returncode == 0
    assert ("--verbose, --timeout and --max-output are the runner's options here: give these parameters as\n"
            "-k verbose=VALUE, -k timeout=VALUE, -k max_output=VALUE\n") in r.stdout, r.stdout
    plain = cli.write("plain.py", """
        def f(name: str, dry_run: bool = False):
            return name
        """)
    assert "runner's options here" not in both("run", plain, "--help").stdout


def test_the_verb_list_names_every_sub_verb(cli):
    """`pysprinter --help` listed `dag run|resume|status|logs|ls` (no
    cancel), `secret set|ls|rm` (no rotate-key) and `env ls, env prune,
    env verify` (no prepare), as did the man page: each is a verb of its
    own in docs/cli.md and its VERB --help."""
    out = cli("--help", check=0).stdout
    for words in ("dag run|resume|status|logs|ls|cancel", "secret set|ls|rm|rotate-key",
                  "env ls|prepare|prune|verify"):
        assert words in out, out
    import pathlib
    man = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "man" / "pysprinter.1").read_text()
    for words in (r"dag run|resume|status|logs|ls|cancel", r"secret set|ls|rm|rotate\-key", r"env prepare"):
        assert words in man


@pytest.mark.parametrize("no_color,colored", [("", True), ("1", False)])
def test_an_empty_no_color_colours_the_cli_s_own_lines_as_it_does_the_runs(cli, no_color, colored):
    """no-color.org: NO_COLOR "present and not an empty string" turns
    colours off. The run's lines (`out |`, `err |`) followed that, while
    the CLI's own (`pysprinter: warning: …`, errors) went colourless for
    an empty NO_COLOR too: one terminal, two rules."""
    f = cli.write("w.py", """
        import sys
        def f():
            print("to err", file=sys.stderr)
            return 1
        """)
    env = dict(cli.env, NO_COLOR=no_color, TERM="xterm")
    code, out = run_on_pty(cli.cwd, [CLI, "run", "--sandbox=none", f], env)
    assert code == 0, out
    warning = next(ln for ln in out.splitlines() if "pysprinter: warning: --sandbox=none" in ln)
    err_line = next(ln for ln in out.splitlines() if "to err" in ln)
    assert ("\x1b[" in warning) == colored, out
    assert ("\x1b[" in err_line) == colored, out


@pytest.mark.parametrize("word,line", [
    ("runn", "pysprinter: unknown verb 'runn' (did you mean run?)\n"),
    ("deplyo", "pysprinter: unknown verb 'deplyo' (did you mean deploy?)\n"),
    ("secrets", "pysprinter: unknown verb 'secrets' (did you mean secret?)\n"),
    ("frobnicate", "pysprinter: unknown verb 'frobnicate'\n"),
])
def test_an_unknown_verb_names_the_verb_meant(cli, word, line):
    """`pysprinter runn f.py` said "unknown verb 'runn'" and then the
    whole 45-line usage on stderr, the verb meant not named (git: "The
    most similar command is run"; `run --timout` names --timeout)."""
    r = cli(word, "f.py")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", line + "Try 'pysprinter --help'.\n")


@pytest.mark.parametrize("ann,word,expected", [
    ("Optional[int]", "x", "an integer or none"),
    ("int | None", "x", "an integer or none"),
    ("Optional[float]", "fast", "a number or none"),
    ("Optional[bool]", "maybe", "a boolean (true/false, yes/no, 1/0) or none"),
    ("int", "x", "an integer"),
])
def test_an_optional_parameters_error_says_none_is_taken_too(cli, both, ann, word, expected):
    """`--o x` for `o: Optional[int]` said "expected an integer": `none`
    (or `null`) is what gives None, and the message left it out."""
    f = cli.write("o.py", f"""
        from typing import Optional
        def f(o: {ann} = None):
            return o
        """)
    r = both("validate", f, "--o", word)
    assert (r.returncode, r.stdout, r.stderr) == (
        3, "", f"ValidationError: argument 'o': expected {expected}, got '{word}'\n")
