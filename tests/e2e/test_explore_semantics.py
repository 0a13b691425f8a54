"""Python function semantics and the CLI's output, embedded and through a
real pysprinterd: the same bytes and the same exit code on both paths, and
what docs/cli.md and docs/python.md promise a function's user."""
import os
import re
import subprocess
import time

import pytest

from conftest import CLI, WORKER, run_on_pty, sandbox_args


@pytest.fixture(scope="module")
def daemon(parity_daemon):
    return parity_daemon


@pytest.fixture
def work(tmp_path):
    (tmp_path / "home").mkdir()
    return tmp_path


def cli_env(work):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(work / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    return env


def both(work, daemon, *args):
    """`pysprinter run ARGS` embedded, then through the daemon: the two
    (exit code, stdout bytes, stderr bytes), asserted equal; returns one."""
    got = []
    for pre in ([], ["--server", daemon.url]):
        p = subprocess.run([str(CLI), *pre, "run", *sandbox_args(), *map(str, args)], capture_output=True,
                           env=cli_env(work), cwd=work, timeout=120)
        got.append((p.returncode, p.stdout, p.stderr))
    assert got[0] == got[1], got
    return got[0]


def on_tty(work, daemon, *args):
    """`pysprinter run ARGS` on a terminal, embedded and through the daemon:
    (exit code, text) for each, the timestamps masked."""
    got = []
    for pre in ([], ["--server", daemon.url]):
        code, text = run_on_pty(work, [CLI, *pre, "run", *sandbox_args(), *args], cli_env(work))
        got.append((code, re.sub(r"\d\d:\d\d:\d\d\.\d{3}", "TS", text)))
    return got


def test_a_nul_in_a_printed_line_keeps_the_rest_of_the_line_on_a_terminal(work, daemon):
    # print_line() printed the line with %.*s, which stops at a NUL: on a
    # terminal "a\0b" showed as "a", and b"\xff\0tail" as one U+FFFD.
    (work / "nul.py").write_text(
        "import sys\n"
        "def f():\n"
        "    print('a\\0b')\n"
        "    print('warn\\0ing', file=sys.stderr)\n"
        "    sys.stdout.flush()\n"
        "    sys.stdout.buffer.write(b'x\\0tail\\n')\n"
        "    return 1\n")
    for code, text in on_tty(work, daemon, "nul.py"):
        assert code == 0, text
        assert "TS out | a\x00b\r\n" in text, text
        assert "TS err | warn\x00ing\r\n" in text, text
        assert "TS out | x\x00tail\r\n" in text, text
    # In a pipe the bytes were always whole.
    code, out, _ = both(work, daemon, "nul.py")
    assert (code, out) == (0, b"a\x00b\nx\x00tail\n1\n")


def test_a_line_longer_than_64_kib_loses_nothing_on_a_terminal(work, daemon):
    # A piece of output with no newline that did not fit the 64 KiB line
    # buffer kept only its first 65,535 bytes: 200,000 x's and "END" showed
    # as 196,606 x's, without the END.
    (work / "long.py").write_text(
        "import sys\n"
        "def f(n: int):\n"
        "    sys.stdout.write('x' * n + 'END\\n')\n"
        "    sys.stdout.flush()\n"
        "    return 1\n")
    for n in (200_000, 1_000_000):
        for code, text in on_tty(work, daemon, "long.py", "-a", str(n)):
            assert code == 0, text[-500:]
            # Shown as lines of at most 64 KiB each, every byte once.
            pieces = re.findall(r"TS out \| ([^\r]*)\r\n", text)
            assert "".join(pieces) == "x" * n + "END", (n, len("".join(pieces)))
            assert max(map(len, pieces)) <= 64 * 1024


LITERAL = """
from typing import Literal, Optional
import typing

def f(n: Literal[1, 2, 3] = 1, mode: Literal["fast", "slow"] = "fast",
      x: typing.Literal[-1, 0.5, True, None] = -1, o: Optional[Literal["p"]] = "p"):
    return [n, n == 2, mode, x, o]
"""


@pytest.mark.parametrize("args, want", [
    # A Literal annotation gave the raw string: n == 2 was False for --n 2.
    (["--n", "2"], b'[2, true, "fast", -1, "p"]\n'),
    (["--mode", "slow", "--x", "0.5"], b'[1, false, "slow", 0.5, "p"]\n'),
    (["--x", "yes", "--o", "none"], b'[1, false, "fast", true, null]\n'),
    (["--x", "null"], b'[1, false, "fast", null, "p"]\n'),
    (["--json-kwargs", '{"n": 3.0, "x": true}'], b'[3, false, "fast", true, "p"]\n'),
])
def test_a_literal_parameter_gets_the_literal_value(work, daemon, args, want):
    (work / "lit.py").write_text(LITERAL)
    assert both(work, daemon, "lit.py", *args) == (0, want, b"")


@pytest.mark.parametrize("args, message", [
    (["--mode", "medium"], "argument 'mode': expected one of 'fast', 'slow', got 'medium'"),
    (["--n", "4"], "argument 'n': expected one of 1, 2, 3, got '4'"),
    (["--json-kwargs", '{"n": true}'], "argument 'n': expected one of 1, 2, 3, got true"),
    (["--json-kwargs", '{"mode": 1}'], "argument 'mode': expected one of 'fast', 'slow', got 1"),
])
def test_a_value_outside_a_literal_is_a_validation_error(work, daemon, args, message):
    (work / "lit.py").write_text(LITERAL)
    code, out, err = both(work, daemon, "lit.py", *args)
    assert (code, out) == (3, b""), err
    assert err.decode() == f"ValidationError: {message}\n"


def test_a_positional_only_name_given_as_a_keyword_is_a_kwargs_item(work, daemon):
    # As in Python (f(1, a=2) gives kw == {'a': 2}); it was refused as
    # "got multiple values for argument 'a'".
    (work / "po.py").write_text("def f(a, /, **kw):\n    return [a, kw]\n")
    assert both(work, daemon, "po.py", "-a", "1", "--a", "2") == (0, b'["1", {"a": "2"}]\n', b"")
    # It binds no parameter: a is still missing.
    code, out, err = both(work, daemon, "po.py", "--a", "2")
    assert (code, out) == (3, b"")
    assert err.startswith(b"ValidationError: f() missing 1 required argument: 'a'"), err


def test_a_positional_only_name_given_as_a_keyword_says_so(work, daemon):
    # It said "unexpected keyword argument 'a' (parameters: b)", as if
    # the function had no a.
    (work / "po.py").write_text("def f(a: int, /, b: int = 0):\n    return [a, b]\n")
    code, out, err = both(work, daemon, "po.py", "--a", "2")
    assert (code, out) == (3, b"")
    assert err == (b"ValidationError: f() got a positional-only argument passed as a keyword: 'a' "
                   b"(give it with -a VALUE)\n")
    assert both(work, daemon, "po.py", "-a", "2", "--b", "3") == (0, b"[2, 3]\n", b"")


@pytest.mark.parametrize("module, package", [("yaml", "PyYAML"), ("PIL", "Pillow"), ("sklearn", "scikit-learn"),
                                             ("notinstalledpkg", "notinstalledpkg")])
def test_a_missing_module_hint_names_the_package_to_declare(work, daemon, module, package):
    # `import yaml` said to declare @requirements({'yaml': ''}): no such
    # project gives the module (PyYAML does).
    (work / "m.py").write_text(f"def f():\n    import {module}.sub\n")
    code, out, err = both(work, daemon, "m.py")
    assert (code, out) == (1, b"")
    assert f"ModuleNotFoundError: No module named '{module}'".encode() in err
    assert f"declare it: @requirements({{'{package}': ''}})".encode() in err, err


def test_an_annotated_parameter_converts_as_its_type(work, daemon):
    # Annotated[int, …] was an unknown annotation: --n 2 gave the str '2'
    # and n + 1 raised TypeError in the function.
    (work / "ann.py").write_text(
        "from typing import Annotated, Optional\n"
        "def f(n: Annotated[int, 'how many'] = 1, o: Optional[Annotated[float, 'x']] = None,\n"
        "      s: Annotated[list[int], 'l'] = None):\n"
        "    return [n, n + 1, o, s]\n")
    assert both(work, daemon, "ann.py", "--n", "2", "--o", "1", "--s", "[1]") == (0, b"[2, 3, 1.0, [1]]\n", b"")
    assert both(work, daemon, "ann.py", "--o", "none") == (0, b"[1, 2, null, null]\n", b"")
    code, out, err = both(work, daemon, "ann.py", "--n", "x")
    assert (code, out, err) == (3, b"", b"ValidationError: argument 'n': expected an integer, got 'x'\n")


def pty_chunks(work, argv, env, timeout=60):
    """argv on a terminal: [(seconds since start, bytes)] as they came, and
    the exit code."""
    import pty
    import select
    import time
    fd, slave = pty.openpty()
    t0 = time.monotonic()
    proc = subprocess.Popen([str(a) for a in argv], cwd=work, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    chunks = []
    while select.select([fd], [], [], timeout)[0]:
        try:
            c = os.read(fd, 65536)
        except OSError:
            break
        if not c:
            break
        chunks.append((time.monotonic() - t0, c))
    os.close(fd)
    return chunks, proc.wait()


PROGRESS = """
import sys, time
def f():
    print("Downloading...", end="", flush=True)
    time.sleep(3)
    print(" done")
    for i in range(3):
        sys.stderr.write(f"\\r{i * 50}%|" + "#" * i)
        sys.stderr.flush()
    sys.stderr.write("\\n")
    print("crlf\\r")
    return 1
"""


def test_an_unfinished_line_shows_on_a_terminal_while_the_run_waits(work, daemon):
    # A line without its newline yet ("Downloading...", a tqdm bar, which
    # rewrites itself with \\r and ends its line only when done) showed on
    # a terminal only once the newline came: nothing for the 3 s here.
    (work / "p.py").write_text(PROGRESS)
    for pre in ([], ["--server", daemon.url]):
        chunks, code = pty_chunks(work, [CLI, *pre, "run", *sandbox_args(), "p.py"], cli_env(work))
        assert code == 0, chunks
        shown = [t for t, c in chunks if b"out | Downloading..." in c]
        done = [t for t, c in chunks if b"Downloading... done\r\n" in c]
        assert shown and done and done[0] - shown[0] > 2, chunks
        text = re.sub(rb"\d\d:\d\d:\d\d\.\d{3}", b"TS", b"".join(c for _, c in chunks))
        # Erased in place (the pieces of a line may come apart), then
        # printed whole; a bar's line ends as its last state, a CRLF's \\r
        # dropped.
        assert b"TS out | Downloading...\r\x1b[K" in text, text
        assert b"\r\x1b[KTS out | Downloading... done\r\n" in text, text
        assert b"TS err | 100%|##\r\n" in text and b"TS out | crlf\r\n" in text, text
        assert b"\r0%|" not in text, text


def test_term_dumb_gets_no_line_drawn_in_place(work, daemon):
    (work / "p.py").write_text(PROGRESS)
    env = dict(cli_env(work), TERM="dumb")
    chunks, code = pty_chunks(work, [CLI, "run", *sandbox_args(), "p.py"], env)
    text = b"".join(c for _, c in chunks)
    assert code == 0 and b"\x1b[" not in text, text
    assert re.search(rb"out \| Downloading\.\.\. done\r\n", text), text


def test_a_typed_value_for_an_optional_str_is_checked_as_for_str(work, daemon):
    # str and str | None refused a JSON 5; Optional[str] passed it to the
    # function (its converter's label was rewritten, and the check read it).
    (work / "o.py").write_text(
        "from typing import Optional\n"
        "import datetime\n"
        "def f(a: str = '', b: Optional[str] = None, c: str | None = None, p: Optional[datetime.date] = None):\n"
        "    return [repr(a), repr(b), repr(c), repr(p)]\n")
    for name in "abc":
        code, out, err = both(work, daemon, "o.py", "--json-kwargs", f'{{"{name}": 5}}')
        assert (code, out, err) == (3, b"", f"ValidationError: argument '{name}': expected a string, got 5\n".encode())
    # None for the optional ones; an unknown annotation's value passes as before.
    assert both(work, daemon, "o.py", "--json-kwargs", '{"b": null, "c": "s", "p": 5}') == \
        (0, b'["\'\'", "None", "\'s\'", "5"]\n', b"")


def test_threads_processes_and_atexit_left_at_return_are_stopped(work, daemon):
    # docs/cli.md: a run ends when its function returns; what it left going
    # is stopped with it and atexit handlers do not run, on both paths.
    marker = work / "late"
    (work / "late.py").write_text(
        "import atexit, subprocess, threading, time\n"
        "@requirements({})\n"
        "def f():\n"
        "    atexit.register(lambda: print('atexit ran'))\n"
        "    threading.Thread(target=lambda: (time.sleep(0.3), print('thread late'))).start()\n"
        f"    subprocess.Popen(['sh', '-c', 'sleep 0.3; echo child late; touch {marker}'])\n"
        "    return 'done'\n")
    code, out, err = both(work, daemon, "late.py")
    assert (code, out) == (0, b"done\n"), (code, out, err)
    time.sleep(0.6)
    assert b"late" not in err and b"atexit" not in err + out
    assert not marker.exists()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_spawn_or_forkserver_pool_imports_the_function_s_module(work, daemon, method):
    # Their children import the user's module by name to unpickle `square`;
    # it existed only in the run's process, so each pool worker died on
    # "No module named 'pool'" and the run waited for its timeout.
    (work / "pool.py").write_text(
        "from pysprinter import requirements\n"
        "import multiprocessing\n"
        "def square(x):\n"
        "    if x < 0:\n"
        "        raise ValueError('negative')\n"
        "    return x * x\n"
        "@requirements({})\n"
        "def f(method: str, xs: list):\n"
        "    with multiprocessing.get_context(method).Pool(2) as p:\n"
        "        return p.map(square, xs)\n")
    code, out, err = both(work, daemon, "--timeout", "60s", "pool.py", "--method", method, "--xs", "[1, 2, 3]")
    assert (code, out) == (0, b"[1, 4, 9]\n"), (code, out, err)
    # An exception in a pool worker comes back as the function's own, its
    # lines read from the run's source under its file name. (Compared by
    # parts: the pool's resource tracker may add a warning about leaked
    # semaphores, as it does outside pysprinter, when the run ends first.)
    for pre in ([], ["--server", daemon.url]):
        p = subprocess.run([str(CLI), *pre, "run", *sandbox_args(), "--timeout", "60s", "pool.py", "--method",
                            method, "--xs", "[1, -2]"], capture_output=True, env=cli_env(work), cwd=work, timeout=120)
        assert p.returncode == 1, p
        assert b'File "pool.py", line 5, in square\n    raise ValueError(\'negative\')' in p.stderr, p.stderr
        assert p.stderr.endswith(b"ValueError: negative\n"), p.stderr


def test_container_elements_are_converted_by_their_annotation(work, daemon):
    # list[int] took [1, "a"] as it came: the function's sum() raised
    # TypeError instead of the validation error Typer and pydantic give.
    (work / "el.py").write_text(
        "def f(xs: list[int] = (), d: dict[str, float] = None, t: tuple[int, str] = None,\n"
        "      h: tuple[int, ...] = (), n: list[list[int]] = ()):\n"
        "    return [sum(xs), d, t, h, n]\n")
    assert both(work, daemon, "el.py", "--xs", "[1, 2.0]", "--d", '{"a": 1}', "--t", '[1, "x"]',
                "--h", "[3, 4]", "--n", "[[5]]") == (0, b'[3, {"a": 1.0}, [1, "x"], [3, 4], [[5]]]\n', b"")
    for args, err in ((["--xs", '[1, "a"]'], "argument 'xs[1]': expected an integer, got \"a\""),
                      (["--d", '{"a": "x"}'], "argument 'd['a']': expected a number, got \"x\""),
                      (["--t", "[1]"], "argument 't': expected 2 elements for tuple[int, str], got [1]"),
                      (["--h", "[1, true]"], "argument 'h[1]': expected an integer, got true"),
                      (["--n", '[[1], ["z"]]'], "argument 'n[1][0]': expected an integer, got \"z\"")):
        assert both(work, daemon, "el.py", *args) == (3, b"", f"ValidationError: {err}\n".encode()), args


def test_path_and_bytes_parameters_get_a_path_and_bytes(work, daemon):
    # A Path parameter got the str: p.read_text() raised AttributeError in
    # the function (Typer and click give a pathlib.Path); bytes got a str.
    (work / "pb.py").write_text(
        "import pathlib\n"
        "from pathlib import Path\n"
        "from typing import Optional\n"
        "def f(p: Path = None, q: Optional[pathlib.Path] = None, b: bytes = b''):\n"
        "    return [type(p).__name__, str(p), p.name if p else None, repr(q), repr(b)]\n")
    assert both(work, daemon, "pb.py", "--p", "/tmp/x.txt", "--q", "none", "--b", "héllo") == \
        (0, b'["PosixPath", "/tmp/x.txt", "x.txt", "None", "b\'h\\\\xc3\\\\xa9llo\'"]\n', b"")
    assert both(work, daemon, "pb.py", "--json-kwargs", '{"p": "a/b", "b": "s"}') == \
        (0, b'["PosixPath", "a/b", "b", "None", "b\'s\'"]\n', b"")
    assert both(work, daemon, "pb.py", "--json-kwargs", '{"p": 5}') == \
        (3, b"", b"ValidationError: argument 'p': expected a path (a string), got 5\n")
