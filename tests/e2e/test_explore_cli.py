"""The CLI's argument conversion and output, as a hostile user of Lambda,
Modal or Typer tries them: each case the same bytes and exit code embedded
and through a real pysprinterd (test_explore_semantics.both)."""
import json

import pytest

from conftest import sandbox_args
from test_explore_semantics import both, cli_env, work  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def daemon(parity_daemon):
    return parity_daemon


ENUMS = '''
import enum
from typing import Optional


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


def f(c: Color, level: Level = Level.LOW, maybe: Optional[Color] = None, many: "list[Color]" = ()):
    return [repr(c), repr(level), repr(maybe), [repr(m) for m in many]]
'''


def test_an_enum_parameter_gets_the_member_by_value_or_name(work, daemon):
    # Arguments are bound before the module runs, so an Enum annotation was
    # unknown and the function got the string: c == 'red', level == '2'.
    (work / "en.py").write_text(ENUMS)
    code, out, err = both(work, daemon, "en.py", "-a", "red", "--level", "2", "--maybe", "GREEN",
                          "--many", '["green", "RED"]')
    assert (code, err) == (0, b""), err
    assert out == (b'["<Color.RED: \'red\'>", "<Level.HIGH: 2>", "<Color.GREEN: \'green\'>", '
                   b'["<Color.GREEN: \'green\'>", "<Color.RED: \'red\'>"]]\n'), out
    assert both(work, daemon, "en.py", "-a", "RED", "--maybe", "none", "--level", "HIGH")[:2] == (
        0, b'["<Color.RED: \'red\'>", "<Level.HIGH: 2>", "None", []]\n')
    # Typed JSON values too (a map input, --json-kwargs, the API's kwargs).
    assert both(work, daemon, "en.py", "--json-kwargs", '{"c": "green", "level": 1}')[:2] == (
        0, b'["<Color.GREEN: \'green\'>", "<Level.LOW: 1>", "None", []]\n')
    # A value no member has is the arguments' error (exit 3), naming them.
    code, out, err = both(work, daemon, "en.py", "-a", "blue")
    assert (code, out) == (3, b""), err
    assert err == (b"ValidationError: argument 'c': expected a Color: one of 'red', 'green' "
                   b"(or a name: RED, GREEN), got 'blue'\n"), err
    code, out, err = both(work, daemon, "en.py", "-a", "red", "--many", '["red", "x"]')
    assert (code, out) == (3, b""), err
    assert b"argument 'many[1]': expected a Color" in err, err


def test_an_enum_parameter_of_a_deployed_function_gets_the_member(work, daemon):
    (work / "en.py").write_text(ENUMS)
    env = cli_env(work)
    import subprocess
    from conftest import CLI
    r = subprocess.run([str(CLI), "--server", daemon.url, "deploy", "en.py", "--name", "colors"], capture_output=True,
                       text=True, env=env, cwd=work, timeout=120)
    assert r.returncode == 0, r
    for _ in range(2):  # the instance's first invoke and a warm one
        r = subprocess.run([str(CLI), "--server", daemon.url, "invoke", "colors", "-a", "green", "--level", "HIGH"],
                           capture_output=True, text=True, env=env, cwd=work, timeout=120)
        assert (r.returncode, r.stdout) == (0, '["<Color.GREEN: \'green\'>", "<Level.HIGH: 2>", "None", []]\n'), r
    r = subprocess.run([str(CLI), "--server", daemon.url, "invoke", "colors", "-a", "blue"],
                       capture_output=True, text=True, env=env, cwd=work, timeout=120)
    assert r.returncode == 3 and "argument 'c': expected a Color" in r.stderr, r


UNIONS = '''
from typing import Optional, Union


def f(u: Union[int, str] = 0, n: "int | float" = 0, o: Optional[Union[int, list[int]]] = None):
    return [repr(u), repr(n), repr(o)]
'''


@pytest.mark.parametrize("argv, reprs", [
    (["--u", "5"], ["5", "0", "None"]),
    (["--u", "x"], ["'x'", "0", "None"]),
    # Each CLI word is a string: the other members are tried first, in
    # order, and str takes what none of them does, word for word.
    (["--u", "true"], ["'true'", "0", "None"]),
    (["--u", "null"], ["'null'", "0", "None"]),
    (["--u", '"5"'], ["'\"5\"'", "0", "None"]),
    (["--u", "[1]"], ["'[1]'", "0", "None"]),
    (["--n", "2"], ["0", "2", "None"]),
    (["--n", "2.5"], ["0", "2.5", "None"]),
    (["--o", "3", "--n", "0x10"], ["0", "16", "3"]),
    (["--o", "[1, 2]"], ["0", "0", "[1, 2]"]),
    (["--o", "none"], ["0", "0", "None"]),
])
def test_a_union_converts_by_its_members(work, daemon, argv, reprs):
    # A Union went through json.loads: Union[int, str] made `true` a bool,
    # `null` None (no None in the Union), '"5"' the text 5 and `[1]` a list.
    (work / "un.py").write_text(UNIONS)
    code, out, err = both(work, daemon, "un.py", *argv)
    assert (code, err) == (0, b""), err
    assert json.loads(out) == reprs, out


def test_a_union_refuses_a_value_no_member_takes(work, daemon):
    (work / "un.py").write_text(UNIONS)
    code, out, err = both(work, daemon, "un.py", "--n", "x")
    assert (code, out, err) == (3, b"", b"ValidationError: argument 'n': expected int | float, got 'x'\n")
    code, out, err = both(work, daemon, "un.py", "--o", "[1, \"a\"]")
    assert (code, out, err) == (3, b"", b"ValidationError: argument 'o': expected int | list[int] | None, "
                                        b"got '[1, \"a\"]'\n"), err
    # Typed values are checked against the members too.
    code, out, err = both(work, daemon, "un.py", "--json-kwargs", '{"u": 1.5}')
    assert (code, out, err) == (3, b"", b"ValidationError: argument 'u': expected int | str, got 1.5\n"), err
    code, out, err = both(work, daemon, "un.py", "--json-kwargs", '{"u": "a", "n": 1, "o": [2]}')
    assert (code, json.loads(out)) == (0, ["'a'", "1", "[2]"]), err


def test_help_verb_prints_that_verbs_help(cli):
    # `pysprinter help run` printed the global usage, the verb ignored
    # (git help VERB, cargo help VERB, uv help VERB print the verb's).
    for verb in ("run", "dag", "schedule", "data"):
        want = cli(verb, "--help", check=0).stdout
        assert want and cli("help", verb, check=0).stdout == want, verb
    assert cli("help", check=0).stdout == cli("--help", check=0).stdout
    bad = cli("help", "nosuchverb", check=2)
    assert bad.stdout == "" and bad.stderr.startswith("pysprinter: unknown verb 'nosuchverb'\n"), bad


def test_no_flag_turns_a_bool_parameter_off(work, daemon):
    # `--verbose` turned a bool on, but `--no-verbose` (click's and Typer's
    # --flag/--no-flag) was refused as an unknown keyword 'no_verbose', so
    # a default of True could not be turned off without a value.
    (work / "nf.py").write_text(
        "from typing import Optional\n"
        "def f(verbose: bool = True, dry_run: Optional[bool] = None, no_sync: bool = False, n: int = 0, **kw):\n"
        "    return [verbose, dry_run, no_sync, n, kw]\n")
    assert both(work, daemon, "nf.py", "--no-verbose", "--no-dry-run")[:2] == (0, b'[false, false, false, 0, {}]\n')
    # A parameter named no_X is itself; a --no-X with a value, or of a
    # parameter that is no bool, is what it was (a **kw item here).
    assert both(work, daemon, "nf.py", "--no-sync")[:2] == (0, b'[true, null, true, 0, {}]\n')
    assert both(work, daemon, "nf.py", "--no-verbose", "yes")[:2] == (0, b'[true, null, false, 0, {"no_verbose": "yes"}]\n')
    code, out, err = both(work, daemon, "nf.py", "--no-n")
    assert (code, out) == (3, b""), err
    # Both spellings: the last one wins (argparse's store_true/store_false
    # into one dest, click's --flag/--no-flag); it was "got multiple values".
    assert both(work, daemon, "nf.py", "--dry-run", "--no-dry-run")[:2] == (0, b'[true, false, false, 0, {}]\n')
    assert both(work, daemon, "nf.py", "--no-dry-run", "--dry-run")[:2] == (0, b'[true, true, false, 0, {}]\n')


def test_the_result_starts_a_line_of_its_own_after_an_unfinished_line(work, daemon):
    # In a pipe the function's last stdout line without its newline and
    # the result were one line: `print("loading", end="")` then `return 5`
    # printed "loading5", and `| tail -1` read that.
    (work / "nl.py").write_text(
        "import sys\n"
        "def f(kind: str = 'text'):\n"
        "    print('loading', end='')\n"
        "    sys.stderr.write('err no newline')\n"
        "    if kind == 'bytes':\n"
        "        return b'\\x00\\x01'\n"
        "    return 5 if kind == 'int' else 'five'\n")
    assert both(work, daemon, "nl.py") == (0, b"loading\nfive\n", b"err no newline")
    assert both(work, daemon, "nl.py", "--kind", "int") == (0, b"loading\n5\n", b"err no newline")
    # --json: the function's stdout is on stderr, stdout holds the result alone.
    assert both(work, daemon, "nl.py", "--json") == (0, b'"five"\n', b"loadingerr no newline")
    # Bytes are written as they are (a file being made, `> out.bin`).
    assert both(work, daemon, "nl.py", "--kind", "bytes") == (0, b"loading\x00\x01", b"err no newline")
    # Output that ends its line gets nothing more.
    (work / "ok.py").write_text("def f():\n    print('done')\n    return 1\n")
    assert both(work, daemon, "ok.py") == (0, b"done\n1\n", b"")


def test_a_utf16_file_is_refused_in_the_same_words_on_both_paths(work, daemon):
    # A file saved as UTF-16 (Windows editors, PowerShell's `>`) has NUL
    # bytes and bytes that are not UTF-8: embedded said "the file contains
    # NUL bytes; is it a Python source file?", with --server the CLI's own
    # check said "u16.py:1:1: ValidationError: not valid UTF-8".
    (work / "u16.py").write_bytes("def f():\n    return 1\n".encode("utf-16"))
    code, out, err = both(work, daemon, "u16.py")
    assert (code, out) == (3, b""), err
    assert err == b"ValidationError: the file contains NUL bytes; is it a Python source file?\n", err


@pytest.mark.parametrize("imports, decorator", [
    ("from pysprinter import requirements as req", "@req"),
    ("import pysprinter as ps", "@ps.requirements"),
])
def test_an_imported_alias_of_requirements_marks_the_function(work, daemon, imports, decorator):
    # `from pysprinter import requirements as req` runs (the module is
    # there in a run), but the validator knew only the names `requirements`
    # and `pysprinter.requirements`: "no function in al.py is decorated
    # with @requirements", and the dict was never read.
    (work / "al.py").write_text(f"{imports}\n\ndef helper():\n    return 0\n\n"
                                f"{decorator}({{'nosuchpkg-xyz': 'latest'}})\ndef main():\n    return 1\n")
    code, out, err = both(work, daemon, "al.py")
    assert (code, out) == (3, b""), err
    assert b"invalid version specifier for 'nosuchpkg-xyz': 'latest'" in err, err


def test_a_local_module_the_file_imports_is_named_as_not_sent(work, daemon):
    # A run gets its file alone: `import helper` of a helper.py beside it
    # fails, and the one hint was to declare 'helper' in @requirements,
    # which would install whatever PyPI project has that name. The CLI,
    # which sees the file's directory on both paths, says what happened.
    (work / "proj" / "pkgdir").mkdir(parents=True)
    (work / "proj" / "helper.py").write_text("def twice(x):\n    return 2 * x\n")
    (work / "proj" / "main.py").write_text("import helper\n\ndef f():\n    return helper.twice(2)\n")
    (work / "proj" / "other.py").write_text("def f():\n    import pkgdir.sub\n")
    for name, module, kind in (("main.py", "helper", "helper.py"), ("other.py", "pkgdir", "the package pkgdir/")):
        code, out, err = both(work, daemon, f"proj/{name}")
        assert (code, out) == (1, b""), err
        assert f"ModuleNotFoundError: No module named '{module}".encode() in err, err
        assert err.endswith(
            f"pysprinter: note: '{module}' is {kind} beside {name}, which the run does not get (a run has its "
            f"file alone): put what it needs into {name}; it is no package to declare in @requirements\n".encode()
        ), err
    # A module that is not beside the file gets no note.
    (work / "proj" / "third.py").write_text("def f():\n    import nosuchmodule_here\n")
    code, out, err = both(work, daemon, "proj/third.py")
    assert code == 1 and b"note:" not in err, err


def test_a_stdout_that_cannot_be_written_is_an_error_not_success(work, daemon):
    # `run f.py > out.json` on a full disk wrote nothing, said nothing and
    # exited 0: the caller took the empty file for the result. As cat,
    # echo or head, the CLI says the write failed and exits non-zero (7);
    # the run itself ended as it did (its record has the result).
    (work / "w.py").write_text("def f():\n    print('some output')\n    return {'a': 1}\n")
    import subprocess
    from conftest import CLI
    got = []
    for pre in ([], ["--server", daemon.url]):
        with open("/dev/full", "wb") as full:
            p = subprocess.run([str(CLI), *pre, "run", *sandbox_args(), "w.py"], stdout=full, stderr=subprocess.PIPE,
                               env=cli_env(work), cwd=work, timeout=120)
        got.append((p.returncode, p.stderr))
        p = subprocess.run([str(CLI), *pre, "run", *sandbox_args(), "w.py", "--output-file", "/dev/full"],
                           capture_output=True, env=cli_env(work), cwd=work, timeout=120)
        got.append((p.returncode, p.stdout, p.stderr))
    assert got[0] == got[2] and got[1] == got[3], got
    assert got[0] == (7, b"pysprinter: cannot write the output: No space left on device\n"), got
    assert got[1] == (7, b'{"a": 1}\n', b"pysprinter: cannot write /dev/full: No space left on device\n"), got
    # A listing too.
    with open("/dev/full", "wb") as full:
        p = subprocess.run([str(CLI), "ps"], stdout=full, stderr=subprocess.PIPE, env=cli_env(work), cwd=work,
                           timeout=120)
    assert (p.returncode, p.stderr) == (7, b"pysprinter: cannot write the output: No space left on device\n"), p


@pytest.mark.parametrize("source, where, message", [
    ("def f():\n    return 1\nbreak\n", "3:1", "'break' outside loop"),
    ("def f():\n    def g():\n        nonlocal y\n    return 1\n", "3:9", "no binding for nonlocal 'y' found"),
])
def test_a_file_the_compiler_refuses_is_invalid_for_validate_too(work, daemon, source, where, message):
    # ast.parse accepts these and compile() refuses them: `validate` said
    # "ok", and `run` failed with "SyntaxError: 'break' outside loop
    # (c.py, line 3)", without the compiler-style location and caret every
    # other syntax error has.
    (work / "c.py").write_text(source)
    line = source.splitlines()[int(where.split(":")[0]) - 1]
    col = int(where.split(":")[1])
    want = f"c.py:{where}: SyntaxError: {message}\n    {line}\n    {' ' * (col - 1)}^\n".encode()
    assert both(work, daemon, "c.py") == (3, b"", want)
    for server in ([], ["--server", daemon.url]):
        import subprocess
        from conftest import CLI
        p = subprocess.run([str(CLI), *server, "validate", "c.py"], capture_output=True, env=cli_env(work), cwd=work,
                           timeout=120)
        assert (p.returncode, p.stdout, p.stderr) == (3, b"", want), p


def on_pty_stderr_to_file(work, argv):
    """argv with a terminal for stdin and stdout and a file for stderr (a
    shell's `2> err.log`): (exit code, what the terminal got, the file)."""
    import os
    import pty
    import select
    import subprocess
    fd, slave = pty.openpty()
    err_path = work / "err.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([str(a) for a in argv], cwd=work, env=cli_env(work), stdin=slave, stdout=slave,
                                stderr=err, start_new_session=True)
    os.close(slave)
    out = b""
    while select.select([fd], [], [], 60)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    return proc.wait(), out, err_path.read_bytes()


def test_the_functions_stderr_goes_to_a_redirected_stderr_on_a_terminal(work, daemon):
    # With stdout a terminal, both streams were drawn there (their order
    # kept), even when stderr was redirected: `run f.py 2> err.log` left
    # err.log empty and showed the function's stderr on the terminal, and
    # `2>/dev/null` hid nothing.
    import re
    from conftest import CLI
    (work / "e.py").write_text("import sys\ndef f():\n    print('to out')\n    print('to err', file=sys.stderr)\n"
                               "    sys.stderr.write('partial')\n    return 1\n")
    for pre in ([], ["--server", daemon.url]):
        code, term, err = on_pty_stderr_to_file(work, [CLI, *pre, "run", *sandbox_args(), "e.py"])
        assert code == 0, (term, err)
        assert err.endswith(b"to err\npartial"), err
        term = re.sub(rb"\d\d:\d\d:\d\d\.\d{3}", b"TS", term)
        # An unfinished line may be drawn, then erased (\r ESC[K) and
        # printed whole: what stays on the screen is the lines below.
        term = re.sub(rb"[^\n]*\r\x1b\[K", b"", term)
        assert term == b"TS out | to out\r\n1\r\n", term
        # --json sends the function's stdout to stderr: a file there gets
        # it as it came too (it was decorated as for the terminal stdout).
        code, term, err = on_pty_stderr_to_file(work, [CLI, *pre, "run", *sandbox_args(), "e.py", "--json"])
        assert (code, term) == (0, b"1\r\n"), (term, err)
        assert b"|" not in err and err.endswith(b"partial") and b"to out\n" in err and b"to err\n" in err, err


def test_lock_refuses_arguments_and_names_a_mistyped_option(work, daemon):
    # `lock` resolves without the function's arguments, and took every
    # other word for one: `lock f.py --index-ur URL` (a typo of
    # --index-url) resolved against the default index, saying nothing.
    (work / "lk.py").write_text("@requirements({'nosuchpkg-xyz': ''})\ndef f():\n    return 1\n")
    import subprocess
    from conftest import CLI
    cases = {("--index-ur", "http://127.0.0.1:9/simple"): "unknown option '--index-ur' (did you mean --index-url?)",
             ("-a", "5"): "lock takes no arguments of the function (it resolves the requirements alone), got '5'",
             ("--n", "5"): "lock takes no arguments of the function (it resolves the requirements alone), got '--n'"}
    for words, message in cases.items():
        got = []
        for pre in ([], ["--server", daemon.url]):
            p = subprocess.run([str(CLI), *pre, "lock", "lk.py", *words], capture_output=True, env=cli_env(work),
                               cwd=work, timeout=120)
            got.append((p.returncode, p.stdout, p.stderr))
        assert got[0] == got[1], got
        assert got[0] == (2, b"", f"pysprinter: {message}\nTry 'pysprinter lock --help'.\n".encode()), got


def test_run_dash_reads_the_file_from_stdin(work, daemon):
    # `python3 -` and `uv run -` read the script from stdin; `pysprinter run
    # -` said "cannot read -: No such file or directory".
    import subprocess
    from conftest import CLI
    src = b"import sys\ndef f(n: int):\n    print(__file__)\n    return n * 2\n"
    bad = b"def f():\n    return (\n"
    got = []
    for pre in ([], ["--server", daemon.url]):
        p = subprocess.run([str(CLI), *pre, "run", *sandbox_args(), "-", "-a", "21"], input=src, capture_output=True,
                           env=cli_env(work), cwd=work, timeout=120)
        q = subprocess.run([str(CLI), *pre, "validate", "-"], input=bad, capture_output=True, env=cli_env(work),
                           cwd=work, timeout=120)
        got.append((p.returncode, p.stdout, q.returncode, q.stdout, q.stderr))
    assert got[0] == got[1], got
    assert got[0][:2] == (0, b"<stdin>\n42\n"), got
    assert got[0][2:] == (3, b"", b"<stdin>:2:12: SyntaxError: '(' was never closed\n        return (\n"
                                  b"               ^\n"), got



def test_stdin_source_is_named_as_run_names_it_and_takes_a_function(work, daemon):
    # `validate -` printed "-: ok (f)" and `lock -` "-: no requirements"
    # where a run names the source <stdin>; `run -::g 5` was refused as
    # "'::g' is not a valid parameter name", `run -::g --help` printed the
    # CLI's help instead of g's usage, and the hint for a file of several
    # functions said to type `<stdin>::NAME`.
    import subprocess
    from conftest import CLI
    src = b"def f():\n    return 1\n\n\ndef g(x: int):\n    return x * 2\n"
    one = b"def f():\n    return 1\n"
    cases = [(["validate", "-"], one), (["lock", "-"], one), (["run", *sandbox_args(), "-::g", "5"], src),
             (["validate", "-::g", "5"], src), (["run", "-::g", "--help"], src), (["run", *sandbox_args(), "-"], src)]
    got = []
    for pre in ([], ["--server", daemon.url]):
        got.append([])
        for args, text in cases:
            p = subprocess.run([str(CLI), *pre, *args], input=text, capture_output=True, env=cli_env(work), cwd=work,
                               timeout=120)
            got[-1].append((p.returncode, p.stdout.decode(), p.stderr.decode()))
    assert got[0] == got[1], got
    v, lock, run, vg, helped, several = got[0]
    assert v == (0, "<stdin>: ok (f)\n", ""), v
    assert lock == (0, "<stdin>: no requirements\n", ""), lock
    assert run == (0, "10\n", ""), run
    assert vg == (0, "<stdin>::g: ok (g)\n", ""), vg
    assert helped[0] == 0 and helped[1].startswith("Usage: pysprinter run -::g [OPTIONS] [ARGUMENTS]\n\n  g(x: int)"), helped
    assert several[0] == 3 and "choose one with -::NAME (functions: f, g)" in several[2], several


def test_dag_status_of_an_option_says_the_option_is_unknown(work, daemon):
    # `dag status --bogus` said "no DAG run '--bogus'": a typo of an
    # option taken for an id.
    import subprocess
    from conftest import CLI
    got = []
    for pre in ([], ["--server", daemon.url]):
        p = subprocess.run([str(CLI), *pre, "dag", "status", "--jsn"], capture_output=True, env=cli_env(work),
                           cwd=work, timeout=120)
        got.append((p.returncode, p.stdout, p.stderr))
    assert got[0] == got[1], got
    assert got[0] == (2, b"", b"pysprinter: dag status: unknown option '--jsn' "
                              b"(usage: dag status|cancel ID [--json])\n"), got

STDLIB_TYPES = '''
import datetime as dt
from decimal import Decimal
from typing import Optional
from uuid import UUID


def f(when: dt.datetime, day: dt.date = None, price: Decimal = Decimal("0"), id: Optional[UUID] = None,
      wait: dt.timedelta = dt.timedelta(0), days: "list[dt.date]" = ()):
    return [repr(when), repr(day), repr(price), repr(id), repr(wait), [repr(d) for d in days]]
'''


def test_datetime_decimal_and_uuid_parameters_get_their_type(work, daemon):
    # As an Enum, these were unknown annotations: `--when 2024-01-02` gave
    # the str, and `when.year` raised AttributeError in the function
    # (Typer and pydantic convert them).
    (work / "st.py").write_text(STDLIB_TYPES)
    code, out, err = both(work, daemon, "st.py", "-a", "2024-01-02T03:04:05Z", "--day", "2024-02-29", "--price",
                          "1.10", "--id", "12345678-1234-5678-1234-567812345678", "--wait", "90",
                          "--days", '["2024-01-01"]')
    assert (code, err) == (0, b""), err
    assert json.loads(out) == [
        "datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)", "datetime.date(2024, 2, 29)",
        "Decimal('1.10')", "UUID('12345678-1234-5678-1234-567812345678')", "datetime.timedelta(seconds=90)",
        ["datetime.date(2024, 1, 1)"]], out
    code, out, err = both(work, daemon, "st.py", "-a", "yesterday")
    assert (code, out, err) == (3, b"", b"ValidationError: argument 'when': expected a datetime (ISO 8601: "
                                        b"2024-01-02T03:04:05), got 'yesterday'\n"), err
    code, out, err = both(work, daemon, "st.py", "-a", "2024-01-02", "--price", "lots")
    assert (code, out, err) == (3, b"", b"ValidationError: argument 'price': expected a Decimal (a number), "
                                        b"got 'lots'\n"), err


def test_an_annotation_that_raises_when_looked_at_leaves_the_value_alone(work, daemon):
    # The call-time look at annotations (Enum, datetime, …) asked a user's
    # annotation object for __metadata__, and one whose __getattr__ raises
    # ended the run "RuntimeError: boom", exit 7.
    (work / "weird.py").write_text(
        "class Boom:\n    def __getattr__(self, n):\n        raise RuntimeError('boom')\n    __hash__ = None\n"
        "def f(a: [1] = 1, b: Boom() = 2, c: 'nonexistent.Thing' = 3, d: {'x': 1} = 4):\n    return [a, b, c, d]\n")
    assert both(work, daemon, "weird.py", "--a", "x", "--b", "y", "--c", "z", "--d", "w") == (
        0, b'["x", "y", "z", "w"]\n', b"")


def test_requirements_on_a_method_or_a_nested_function_is_refused(work, daemon):
    # The decorator marks the top-level function to run: on a method its
    # pins were dropped without a word and the file's other function ran
    # without them (exit 0).
    (work / "meth.py").write_text("from pysprinter import requirements\n\n\nclass C:\n"
                                  "    @requirements({'six': '*'})\n    def m(self):\n        return 1\n\n\n"
                                  "def helper():\n    return 2\n")
    (work / "nest.py").write_text("import pysprinter\n\n\ndef outer():\n    @pysprinter.requirements({})\n"
                                  "    def inner():\n        return 1\n    return inner()\n")
    assert both(work, daemon, "meth.py") == (
        3, b"", b"meth.py:5:6: ValidationError: @requirements on C.m (a method): it marks the function to run, "
                b"which is defined at the top of the file\n")
    assert both(work, daemon, "nest.py") == (
        3, b"", b"nest.py:5:6: ValidationError: @requirements on outer.inner (a nested function): it marks the "
                b"function to run, which is defined at the top of the file\n")
