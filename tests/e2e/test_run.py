"""End-to-end: `pysprinter run/validate/ps/show/logs` on the embedded engine."""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import CLI, run_on_pty, sandbox_args

MYFILE = """
@requirements({})
def my_function(input_value: str):
    return input_value
"""

KWARGS = """
@requirements({})
def my_function(input_value: str, arg1: str = None, arg2: str = None):
    return [input_value, arg1, arg2]
"""

SEED_INVALID = """
@requirements({})
def my_function(input_value: str, arg1: str = None, arg2: str):
    return [input_value, arg1, arg2]
"""


def test_seed_contract_positional(cli, run):
    cli.write("myfile.py", MYFILE)
    p = run("myfile.py", "-a", "5")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "5\n"


def test_seed_contract_kwargs(cli, run):
    cli.write("kwargs.py", KWARGS)
    p = run("kwargs.py", "-a", "5", "-arg1", "this", "--arg2", "that")
    assert p.returncode == 0, p.stderr
    assert p.stdout == '["5", "this", "that"]\n'


def test_kwargs_equals_form_and_defaults(cli, run):
    cli.write("kwargs.py", KWARGS)
    p = run("kwargs.py", "-a", "5", "--arg2=that")
    assert p.stdout == '["5", null, "that"]\n'


def test_seed_invalid_example_fails_validation(cli, run):
    cli.write("kwargs.py", SEED_INVALID)
    p = run("kwargs.py", "-a", "5", "-arg1", "this", "--arg2", "that")
    assert p.returncode == 3
    assert "kwargs.py:2:" in p.stderr
    assert "non-default argument follows default argument" in p.stderr
    m = re.search(r"kwargs\.py:(\d+):(\d+):", p.stderr)
    assert m and m.group(1) == "2" and int(m.group(2)) > 1
    assert p.stdout == ""


def test_validate_verb(cli):
    cli.write("kwargs.py", KWARGS)
    ok = cli("validate", *sandbox_args(), "kwargs.py", "-a", "5")
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    cli.write("bad.py", SEED_INVALID)
    bad = cli("validate", *sandbox_args(), "bad.py")
    assert bad.returncode == 3
    assert "bad.py:2:" in bad.stderr
    missing = cli("validate", *sandbox_args(), "kwargs.py")
    assert missing.returncode == 3
    assert "input_value" in missing.stderr


def test_validation_never_executes_user_code(cli, tmp_path):
    marker = tmp_path / "executed"
    cli.write("evil.py", f"""
        open({str(marker)!r}, "w").write("x")
        @requirements({{}})
        def f(x):
            return x
    """)
    p = cli("validate", *sandbox_args(), "evil.py", "-a", "1")
    assert p.returncode == 0, p.stderr
    assert not marker.exists()
    p = cli("validate", *sandbox_args(), "evil.py")  # missing argument: still not executed
    assert p.returncode == 3
    assert not marker.exists()


def test_reserved_kwarg_names_through_k(cli, run):
    cli.write("r.py", """
        @requirements({})
        def f(a, args, k, json, timeout):
            return [a, args, k, json, timeout]
    """)
    p = run("r.py", "-k", "a=1", "-k", "args=2", "-k", "k=3", "-k", "json=4", "-k", "timeout=5")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == ["1", "2", "3", "4", "5"]


def test_conversion_by_annotation(cli, run):
    cli.write("c.py", """
        from typing import Optional, List
        @requirements({})
        def f(i: int, x: float, b: bool, s: str, l: list, d: dict, t: tuple,
              o: Optional[int] = None, u=None, n: List[int] = None, p: "int" = 0, q: int | None = 1):
            return {"types": [type(v).__name__ for v in (i, x, b, s, l, d, t, o, u, n, p, q)],
                    "values": [i, x, b, s, l, d, list(t), o, u, n, p, q]}
    """)
    p = run("c.py", "-a", "42", "-a", "2.5", "-a", "yes", "-a", "7", "-a", "[1, 2]",
            "-a", '{"k": 1}', "-a", "[3, 4]", "--o", "none", "--u", "12", "--n", "[5]",
            "--p", "9", "--q", "null", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["types"] == ["int", "float", "bool", "str", "list", "dict", "tuple",
                            "NoneType", "str", "list", "int", "NoneType"]
    assert out["values"] == [42, 2.5, True, "7", [1, 2], {"k": 1}, [3, 4], None, "12", [5], 9, None]


@pytest.mark.parametrize("value,ok", [("true", True), ("False", False), ("1", True), ("0", False),
                                      ("no", False), ("YES", True)])
def test_bool_words(cli, run, value, ok):
    cli.write("b.py", "def f(b: bool):\n    return b\n")
    p = run("b.py", "-a", value, "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == json.dumps(ok)


@pytest.mark.parametrize("value,ok", [("0x10", 16), ("-0x10", -16), ("+0o17", 15), ("-0b101", -5), (" 0X1f ", 31),
                                      ("010", 10), ("-1_000", -1000), ("--0x10", None), ("0x", None)])
def test_int_words(cli, run, value, ok):
    """int(s, 0) where a prefix says the base, after a sign too (-0x10 was
    refused while 0x10 worked); int(s) otherwise ("010" is 10)."""
    cli.write("i.py", "def f(i: int):\n    return i\n")
    p = run("i.py", f"--i={value}", "--json")
    if ok is None:
        assert p.returncode == 3 and "expected an integer" in p.stderr, p
    else:
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == json.dumps(ok)


def test_bad_conversion_names_parameter(cli, run):
    cli.write("c.py", "@requirements({})\ndef f(count: int):\n    return count\n")
    p = run("c.py", "-a", "many")
    assert p.returncode == 3
    assert "count" in p.stderr and "many" in p.stderr


def test_json_args_and_kwargs(cli, run):
    cli.write("j.py", "def f(a, b, c=None):\n    return [a, b, c]\n")
    p = run("j.py", "--json-args", '[{"x": 1}, [2]]', "--json-kwargs", '{"c": null}', "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"x": 1}, [2], None]


def test_argument_errors(cli, run):
    cli.write("a.py", "@requirements({})\ndef f(x, y=1):\n    return x\n")
    p = run("a.py")
    assert p.returncode == 3 and "missing" in p.stderr and "'x'" in p.stderr
    p = run("a.py", "-a", "1", "-a", "2", "-a", "3")
    assert p.returncode == 3 and "positional" in p.stderr
    p = run("a.py", "-a", "1", "--zzz", "2")
    assert p.returncode == 3 and "zzz" in p.stderr
    p = run("a.py", "-a", "1", "--x", "2")
    assert p.returncode == 3 and "multiple values" in p.stderr


def test_several_functions(cli, run):
    cli.write("m.py", """
        @requirements({})
        def first(x):
            return "first " + x

        @requirements({})
        def second(x):
            return "second " + x

        def helper():
            return 0
    """)
    p = run("m.py", "-a", "1")
    assert p.returncode == 3
    assert "first" in p.stderr and "second" in p.stderr and "m.py::" in p.stderr
    p = run("m.py::second", "-a", "1")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "second 1\n"
    p = run("m.py::helper")
    assert p.returncode == 0 and p.stdout == "0\n"
    p = run("m.py::nope")
    assert p.returncode == 3 and "nope" in p.stderr


def test_import_form_and_single_undecorated_function(cli, run):
    cli.write("i.py", """
        from pysprinter import requirements
        @requirements({})
        def f():
            return {"a": [1, 2.5, None, True]}
    """)
    p = run("i.py")
    assert p.returncode == 0, p.stderr
    assert p.stdout == '{"a": [1, 2.5, null, true]}\n'
    cli.write("plain.py", "def g(x):\n    return int(x) * 2\n")
    p = run("plain.py", "-a", "21")
    assert p.stdout == "42\n"


def test_requirements_must_be_literal(cli, run):
    cli.write("r.py", "V = '1'\n@requirements({'six': V})\ndef f():\n    return 1\n")
    p = run("r.py")
    assert p.returncode == 3
    assert "literal" in p.stderr
    cli.write("r2.py", "@requirements({'six': 1})\ndef f():\n    return 1\n")
    p = run("r2.py")
    assert p.returncode == 3 and "six" in p.stderr


@pytest.mark.parametrize("key", ["--index-url=http://evil", "./pkg", "/tmp/x", "git+https://x/y",
                                 "a b", "x;y", "x@y", ""])
def test_hostile_requirement_names(cli, run, key):
    cli.write("h.py", f"@requirements({{{key!r}: ''}})\ndef f():\n    return 1\n")
    p = run("h.py")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "requirement" in p.stderr.lower()


def test_bad_specifier(cli, run):
    cli.write("h.py", "@requirements({'requests': '>>2'})\ndef f():\n    return 1\n")
    p = run("h.py")
    assert p.returncode == 3
    assert "requests" in p.stderr and ">>2" in p.stderr


def test_exception_shows_user_traceback(cli, run):
    cli.write("e.py", """
        @requirements({})
        def f(x):
            return helper(x)

        def helper(x):
            raise ValueError("bad value " + x)
    """)
    p = run("e.py", "-a", "7")
    assert p.returncode == 1
    assert "Traceback (most recent call last):" in p.stderr
    assert 'File "e.py", line 3, in f' in p.stderr
    assert 'File "e.py", line 6, in helper' in p.stderr
    assert "ValueError: bad value 7" in p.stderr
    assert "pysprinter-runner" not in p.stderr and "_pysprinter" not in p.stderr
    assert p.stdout == ""


def test_non_json_value_prints_repr_and_warns(cli, run):
    cli.write("s.py", "def f():\n    return 1+2j\n")  # complex: no JSON view (docs/python.md)
    p = run("s.py")
    assert p.returncode == 0
    assert p.stdout == "(1+2j)\n"
    assert "warning" in p.stderr and "repr" in p.stderr
    cli.write("n.py", "def f():\n    return float('nan')\n")
    p = run("n.py")
    assert p.stdout == "nan\n" and "warning" in p.stderr


def test_json_output_is_compact_and_quoted(cli, run):
    cli.write("myfile.py", MYFILE)
    p = run("myfile.py", "-a", "5", "--json")
    assert p.stdout == '"5"\n'
    cli.write("kwargs.py", KWARGS)
    p = run("kwargs.py", "-a", "5", "--json")
    assert p.stdout == '["5",null,null]\n'


def test_output_streams_while_running(cli, run, env):
    cli.write("slow.py", """
        import sys, time
        def f():
            print("first", flush=True)
            print("to-stderr", file=sys.stderr)
            time.sleep(1.5)
            print("second")
            return "done"
    """)
    args = [str(CLI), "run", *__import__("conftest").sandbox_args(), "slow.py"]
    proc = subprocess.Popen(args, cwd=cli.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    first = proc.stdout.readline()
    t_first = time.monotonic() - t0
    assert first == b"first\n"
    err = proc.stderr.readline()
    while err.startswith(b"pysprinter: warning"):
        err = proc.stderr.readline()
    assert err == b"to-stderr\n"
    rest, _ = proc.communicate(timeout=30)
    total = time.monotonic() - t0
    assert rest == b"second\ndone\n"
    assert t_first < total - 1.0, (t_first, total)  # streamed, not buffered to the end


def test_partial_lines_and_order(cli, run):
    cli.write("p.py", """
        import sys
        def f():
            sys.stdout.write("no newline")
            sys.stdout.write(" still")
            return 1
    """)
    p = run("p.py")
    # The result is a line of its own (docs/cli.md "Output").
    assert p.stdout == "no newline still\n1\n"


def test_tty_decoration(cli, env):
    cli.write("t.py", 'import sys\ndef f():\n    print("hello")\n    print("oops", file=sys.stderr)\n    return {"a": 1}\n')
    sb = __import__("conftest").sandbox_args()
    _, text = run_on_pty(cli.cwd, [CLI, "run", *sb, "t.py"], env, timeout=30)
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} out \| hello", text), text
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} err \| oops", text), text
    assert '{\r\n  "a": 1\r\n}' in text  # pretty on a TTY
    assert "\x1b[3" not in text  # NO_COLOR is set by the env fixture


def test_ps_show_logs(cli, run):
    cli.write("l.py", 'import sys\ndef f(x):\n    print("line one")\n    print("err line", file=sys.stderr)\n    return x\n')
    p = run("l.py", "-a", "hello")
    assert p.returncode == 0
    ps = cli("ps")
    assert ps.returncode == 0
    lines = ps.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "EXIT"]
    run_id = lines[1].split()[0]
    assert "succeeded" in lines[1] and "l.py::f" in lines[1]
    ps_json = json.loads(cli("ps", "--json").stdout)
    assert ps_json[0]["id"] == run_id and ps_json[0]["result"] == "hello"
    show = cli("show", run_id[:8] if len([l for l in lines[1:] if l.startswith(run_id[:8])]) == 1 else run_id)
    assert show.returncode == 0, show.stderr
    assert run_id in show.stdout and "succeeded" in show.stdout
    # Internal phase timings are for --json (and the metrics), not the human view.
    assert "validate=" not in show.stdout and "ms " not in show.stdout
    sj = json.loads(cli("show", run_id, "--json").stdout)
    assert sj["status"] == "succeeded" and sj["exit_code"] == 0 and sj["args"] == ["hello"]  # the API run object: args as given
    assert set(sj["timings"]) >= {"validate_ms", "resolve_ms", "start_ms", "run_ms"}
    logs = cli("logs", run_id)
    assert logs.stdout == "line one\n" and logs.stderr == "err line\n"
    assert cli("show", "zzzz").returncode != 0


def test_failed_runs_are_recorded(cli, run):
    cli.write("e.py", "def f():\n    raise KeyError('k')\n")
    run("e.py")
    rec = json.loads(cli("ps", "--json").stdout)[0]
    assert rec["status"] == "failed" and rec["exit_code"] == 1
    assert rec["error"]["type"] == "KeyError" and "Traceback" in rec["error"]["traceback"]


def test_requirements_without_package_manager_or_with(cli, run):
    """Until the package manager lands this is exit 4 with a clear message;
    with it, an unreachable index is still exit 4 (never a pip fallback)."""
    cli.write("r.py", "@requirements({'zzzz-not-a-package': '1.0'})\ndef f():\n    return 1\n")
    p = run("r.py", "--index-url", "http://127.0.0.1:9/simple/", timeout=120)
    assert p.returncode == 4, (p.stdout, p.stderr)
    assert "zzzz-not-a-package" in p.stderr or "install" in p.stderr


def test_usage_errors(cli):
    assert cli("run").returncode == 2
    assert cli("run", "missing.py").returncode == 2
    assert cli("frobnicate").returncode == 2
    assert cli("run", "x.py", "-a").returncode == 2
    h = cli("--help")
    assert h.returncode == 0 and "run" in h.stdout and "validate" in h.stdout
    for verb in ("run", "validate", "ps", "show", "logs"):
        r = cli(verb, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, verb
    v = cli("--version")
    assert v.returncode == 0 and re.match(r"pysprinter \d+\.\d+", v.stdout)


def test_syntax_error_with_caret(cli, run):
    cli.write("s.py", "def f(:\n    return 1\n")
    p = run("s.py")
    assert p.returncode == 3
    # Like a compiler's, so editors jump: the location first, the type once.
    assert re.search(r"^s\.py:1:\d+: SyntaxError", p.stderr, re.M), p.stderr
    assert "SyntaxError: s.py" not in p.stderr, p.stderr
    assert "^" in p.stderr


def test_not_python(cli, run, tmp_path):
    (tmp_path / "bin.py").write_bytes(b"\x00\x01\x02")
    p = run("bin.py")
    assert p.returncode == 3


def test_async_function(cli, run):
    cli.write("a.py", "import asyncio\nasync def f(x: int):\n    await asyncio.sleep(0)\n    return x + 1\n")
    p = run("a.py", "-a", "1")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "2\n"


def test_timeout_exit_5(cli, run):
    cli.write("t.py", "import time\ndef f():\n    time.sleep(30)\n")
    t0 = time.monotonic()
    p = run("t.py", "--timeout", "1")
    assert p.returncode == 5
    assert "time limit (1s)" in p.stderr
    assert time.monotonic() - t0 < 15


def test_os_exit_reported(cli, run):
    cli.write("x.py", "import os\ndef f():\n    os._exit(3)\n")
    p = run("x.py")
    assert p.returncode == 1
    assert "status 3" in p.stderr


def test_generators_are_collected(cli, run):
    cli.write("g.py", "def f(n: int):\n    for i in range(n):\n        yield i * i\n")
    p = run("g.py", "-a", "4")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "[0, 1, 4, 9]\n"
    cli.write("ag.py", "async def f():\n    yield 'a'\n    yield 'b'\n")
    p = run("ag.py", "--json")
    assert p.stdout == '["a","b"]\n'
    cli.write("bad.py", "def f():\n    yield 1\n    raise RuntimeError('mid-stream')\n")
    p = run("bad.py")
    assert p.returncode == 1 and "mid-stream" in p.stderr


def test_missing_module_hint(cli, run):
    cli.write("m.py", "def f():\n    import notinstalledpkg.sub\n")
    p = run("m.py")
    assert p.returncode == 1
    assert "ModuleNotFoundError" in p.stderr
    assert "@requirements({'notinstalledpkg': ''})" in p.stderr


def test_runs_do_not_import_heavy_modules(cli, run):
    """A run is a fork of a warm interpreter: whatever the runner imports in
    the child is paid on every run (importing inspect once cost ~5 ms)."""
    cli.write("m.py", "import sys\ndef f():\n    return sorted(m for m in ('inspect', 'asyncio', 'typing', 'dataclasses')"
                      " if m in sys.modules)\n")
    p = run("m.py", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "[]\n"


SLOW_TICKS = """
import time

@requirements({})
def slow(seconds: str):
    for i in range(int(seconds) * 10):
        print("tick", i, flush=True)
        time.sleep(0.1)
    return "done"
"""


def test_ctrl_c_cancels_an_embedded_run(cli):
    """Ctrl-C (twice, quickly) cancels the run: exit 130, recorded cancelled,
    no hang — the signal handler only wakes a watcher that cancels."""
    cli.write("slow.py", SLOW_TICKS)
    proc = subprocess.Popen([str(CLI), "run", *sandbox_args(), "slow.py", "--seconds", "60"], cwd=cli.cwd,
                            env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("tick 0")
    proc.send_signal(subprocess.signal.SIGINT)
    proc.send_signal(subprocess.signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "done" not in out
    runs = json.loads(cli("ps", "--json", check=0).stdout)
    assert runs[0]["function"] == "slow" and runs[0]["status"] == "cancelled", runs[0]


LEAVES_A_SLEEPER = """
import subprocess
def leave(pidfile: str):
    p = subprocess.Popen(["sleep", "300"])
    open(pidfile, "w").write(str(p.pid))
    return p.pid
"""


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")  # a zombie is gone too
    except FileNotFoundError:
        return True


def test_unsandboxed_run_leaves_no_process_in_its_group(cli, tmp_path):
    """--sandbox=none: what the run started in its process group is killed
    when it ends. The worker kills the group between seeing the child's end
    and reaping it, while the group's id cannot name another process; the
    engine signalled -pid after the reap, when it could."""
    cli.write("leave.py", LEAVES_A_SLEEPER)
    pidfile = tmp_path / "pid"
    p = cli("run", "--sandbox=none", "leave.py", "--pidfile", str(pidfile))
    assert p.returncode == 0, p.stderr
    pid = int(pidfile.read_text())
    deadline = time.time() + 10
    while not _gone(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _gone(pid), f"the run's sleep {pid} outlived it"
