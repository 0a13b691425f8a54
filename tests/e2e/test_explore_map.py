"""`pysprinter map` and `pysprinter chain` as a user of Ray's map, Modal's
Function.map, xargs -P or GNU parallel drives them: the options' usual
spellings, a file that cannot run failing once instead of once per input,
whole lines of the calls' output, memory that does not grow with the
results printed, and the same bytes and exit codes embedded and against a
daemon."""
import json
import re
import subprocess

import pytest

from conftest import CLI, run_on_pty, same, sandbox_args
from daemonlib import TOKENS, Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("explore-map")).serving() as d:
        yield d


SQ = """
def f(x: int, y: int = 0):
    if x == 3:
        raise ValueError("unlucky")
    return {"x": x, "sq": x * x + y}
"""


def lines(p):
    """map's stdout as JSON objects, without their run ids (which differ
    between two runs of the same thing)."""
    out = []
    for line in p.stdout.splitlines():
        o = json.loads(line)
        o.pop("run_id", None)
        out.append(o)
    return out


def test_map_options_take_their_equals_and_attached_forms(cli, both):
    """`--over=F`, `--concurrency=N` and `-jN` are how GNU parallel, xargs
    and every getopt_long program take them (and how map's run options,
    `--timeout=5`, are taken). Before, `--over=F` was "map needs --over"
    and `--concurrency=2`, `-j2` were "map takes the arguments from
    --over, not from the command line": exit 2 for a correct command."""
    cli.write("sq.py", SQ)
    cli.write("in.jsonl", "1\n2\n")
    want = [{"index": 0, "status": "succeeded", "result": {"x": 1, "sq": 1}},
            {"index": 1, "status": "succeeded", "result": {"x": 2, "sq": 4}}]
    for words in (["--over=in.jsonl"], ["--over", "in.jsonl", "--concurrency=2"],
                  ["--over", "in.jsonl", "-j2"]):
        local, remote = both("map", "sq.py", *words, *sandbox_args())
        for p in (local, remote):
            assert p.returncode == 0, (words, p.stdout, p.stderr)
            assert lines(p) == want, words
        assert local.stderr == remote.stderr
    r = same(*both("map", "sq.py", "--over=in.jsonl", "--concurrency=0"))
    assert r.returncode == 2
    assert r.stderr == "pysprinter: --concurrency must be 1..256, not '0'\n"


def test_map_source_and_inputs_both_from_stdin_is_a_usage_error(cli, both):
    """`map - --over -` cannot read two things from one stdin: the source
    took it all and the inputs were empty, so map ran nothing and exited
    0, silently. Now exit 2 saying so, before anything runs."""
    r = same(*both("map", "-", "--over", "-", input=SQ + "\n"))
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert r.stderr == ("pysprinter: map: the source (FILE -) and the inputs (--over -) cannot both come from "
                        "stdin\n")


@pytest.mark.parametrize("name, source, target, message", [
    ("syn.py", "def f(x):\n    return x +\n", "syn.py",
     "syn.py:2:15: SyntaxError: invalid syntax\n        return x +\n                  ^\n"),
    ("fn.py", SQ, "fn.py::nope", "ValidationError: no top-level function 'nope' in fn.py (functions: f)\n"),
])
def test_map_of_a_file_that_cannot_run_fails_once_before_any_call(cli, both, daemon, name, source, target,
                                                                   message):
    """A file with a syntax error, or without the function named, cannot
    run with any input: Ray or Modal say so once. map started one run per
    input line instead, each recorded `invalid` and printed as a JSON line
    (10 000 inputs: 10 000 runs, 10 000 lines of the same error). Now the
    file is checked first, as `run` checks it: its one message, exit 3, no
    line on stdout and no run recorded, on both paths."""
    cli.write(name, source)
    cli.write("in.jsonl", "1\n2\n3\n")
    r = same(*both("map", target, "--over", "in.jsonl", *sandbox_args()))
    assert r.returncode == 3, r
    assert r.stdout == ""
    assert r.stderr == message
    assert cli("ps", "--json").stdout.strip() == "[]"
    st, runs = daemon.call("GET", "/v1/runs")
    assert not [x for x in runs["runs"] if x.get("filename") == name]


def test_map_of_a_file_that_is_not_utf8_same_on_both_paths(cli, both):
    """Embedded, a source that is not UTF-8 gave one `invalid` line per
    input ("nu.py:2:13: not valid UTF-8", exit 3); with --server, one
    `"status": "error"`, ClientError line per input ("the file or
    function name is not valid UTF-8"). `run` says the same line on both
    paths; map now does too, once."""
    (cli.cwd / "nu.py").write_bytes(b'def f(x):\n    return "\xff"\n')
    cli.write("in.jsonl", "1\n2\n")
    r = same(*both("map", "nu.py", "--over", "in.jsonl", *sandbox_args()))
    assert r.returncode == 3, r
    assert r.stdout == ""
    assert r.stderr == "nu.py:2:13: ValidationError: not valid UTF-8\n"


def test_map_against_a_server_that_is_away_fails_once(cli):
    """An unreachable server answered every input with its own
    ClientError line: 10 000 lines of "cannot reach". Now one message and
    exit 6, as `run` gives."""
    cli.write("sq.py", SQ)
    cli.write("in.jsonl", "1\n2\n3\n")
    p = cli("map", "sq.py", "--over", "in.jsonl", "--server", "http://127.0.0.1:1")
    assert p.returncode == 6, p
    assert p.stdout == ""
    assert p.stderr.count("cannot reach http://127.0.0.1:1") == 1, p.stderr


def test_map_writes_the_calls_output_in_whole_lines(cli, both):
    """Calls run at once, their output goes to stderr as written: a line a
    function wrote in pieces (print's separate writes, a progress message
    flushed before its end) came out cut into by the other calls' pieces,
    `hellohello 2\\n 1` (GNU parallel and Ray both keep a line whole).
    Now each call's lines are written whole."""
    cli.write("pieces.py", """
        import sys, time
        def f(x):
            for k in range(3):
                for ch in f"call {x:02d} line {k} " + "=" * 20:
                    sys.stdout.write(ch)
                    sys.stdout.flush()
                    time.sleep(0.001)
                sys.stdout.write("\\n")
            return x
        """)
    cli.write("in.jsonl", "".join(f"{i}\n" for i in range(8)))
    want = sorted(f"call {i:02d} line {k} " + "=" * 20 for i in range(8) for k in range(3))
    for p in both("map", "pieces.py", "--over", "in.jsonl", "-j", "8", *sandbox_args()):
        assert p.returncode == 0, p
        got = [line for line in p.stderr.splitlines() if not line.startswith("pieces.py: ")]
        assert sorted(got) == want, p.stderr


def test_map_does_not_keep_every_result_until_the_end(cli, daemon, tmp_path):
    """map held every call's run object, result included, until the last
    call ended: 60 results of 5 MiB took 300 MiB of the CLI's memory (and
    a million small ones as much), where xargs or Ray's map keep what is
    in flight. A result is now let go once its line is printed: the same
    map runs within 200 MB of data segment, which it could not before
    (glibc's malloc failed and the CLI died halfway)."""
    cli.write("big.py", """
        def f(x):
            return "y" * (5 << 20)
        """)
    cli.write("in.jsonl", "".join(f"{i}\n" for i in range(60)))
    e = dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"])
    p = subprocess.run(["prlimit", "--data=200000000", str(CLI), "map", "big.py", "--over", "in.jsonl",
                        "--server", daemon.url], cwd=cli.cwd, env=e, capture_output=True, timeout=600)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    out = p.stdout.decode().splitlines()
    assert len(out) == 60
    assert all(json.loads(line)["result"] == "y" * (5 << 20) for line in out)


def test_map_summary_says_call_for_one(cli, both):
    """"sq.py: 1 calls, 0 failed": the summary now says "1 call"."""
    cli.write("sq.py", SQ)
    cli.write("one.jsonl", "1\n")
    for p in both("map", "sq.py", "--over", "one.jsonl", *sandbox_args()):
        assert p.returncode == 0, p
        assert p.stderr == "sq.py: 1 call, 0 failed\n"


def test_chain_says_when_a_step_passes_on_the_repr_of_its_result(cli, both):
    """A step whose result has no JSON view (an object of the user's
    class) hands the next step its repr() string (docs/dag.md): the next
    step got "<d.A object at 0x…>" where it expected the object, and the
    chain's view said only "step2: succeeded" (`run` warns of a repr
    result). Now the step's line says it, on both paths."""
    cli.write("a.py", "def f(x: int):\n    return x + 1\n")
    cli.write("d.py", "class A:\n    pass\n\ndef h(x):\n    return A()\n")
    cli.write("e.py", "def k(x):\n    return [x, type(x).__name__]\n")
    for p in both("chain", "a.py", "d.py", "e.py", "-a", "1", "--no-cache", *sandbox_args()):
        assert p.returncode == 0, p
        assert re.fullmatch(r'\["<d\.A object at 0x[0-9a-f]+>", "str"\]\n', p.stdout), p.stdout
        assert re.search(r"^step2: succeeded \S+: the result is not JSON \(<d\.A object at 0x[0-9a-f]+>\); "
                         r"dependents get its repr$", p.stderr, re.M), p.stderr


def test_dag_task_that_succeeded_on_a_retry_has_no_error(cli, both, tmp_path):
    """A task that failed its first attempt and succeeded on its retry
    kept the failed attempt's error in its task object (`dag status
    --json`: "state": "succeeded", "error": "ValueError: flaky once"),
    which the view (that now shows a succeeded task's note) would print
    as if the success had one."""
    count = tmp_path / "count"
    cli.write("flaky.py", f"""
        import os
        def f():
            p = {str(count)!r}
            n = int(open(p).read()) if os.path.exists(p) else 0
            open(p, "w").write(str(n + 1))
            if n % 2 == 0:
                raise ValueError("flaky once")
            return n
        """)
    cli.write("fl.yaml", "tasks:\n  t:\n    file: flaky.py\n    retries: {count: 1, backoff: 10ms}\n")
    for p in both("dag", "run", "fl.yaml", "--json", "--no-cache", "--sandbox=none"):
        assert p.returncode == 0, p
        t = json.loads(p.stdout)["tasks"]["t"]
        assert (t["state"], t["attempts"], t["error"]) == ("succeeded", 2, None), t
        assert re.search(r"^t: succeeded \S+$", p.stderr, re.M), p.stderr


def test_map_with_high_concurrency_against_a_daemon_runs_every_call(cli, daemon):
    """--concurrency goes to 256, but a daemon admits 64 connections from
    one address (server.max_connections_per_ip) and resets the ones past
    it: `map -j 128 --server URL` over 300 inputs failed about a third of
    its calls, each a "cannot reach URL: Recv failure: Connection reset by
    peer" line, exit 6, though the server was there all along. map now
    keeps at most 32 calls in flight against a server (and says so when
    asked for more), and a call the
    server turned away unread is now submitted again (each call carries
    an Idempotency-Key: a submit that did reach it cannot start a second
    run) while the server keeps answering the map's other calls. A call
    whose output stream was turned away said "lost the connection to the
    server; run … runs again when it is back" of a server that was there,
    and its output was lost (the record was polled instead): the stream is
    now asked again, so every call's output is printed and nothing warns."""
    cli.write("id.py", "import time\n\ndef f(x):\n    print('out', x)\n    time.sleep(0.2)\n    return x\n")
    cli.write("in.jsonl", "".join(f"{i}\n" for i in range(300)))
    p = cli("map", "id.py", "--over", "in.jsonl", "-j", "128", "--server", daemon.url,
            env={"PYSPRINTER_TOKEN": TOKENS["alice"]}, timeout=600)
    assert p.returncode == 0, (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    assert [json.loads(line)["result"] for line in p.stdout.splitlines()] == list(range(300))
    want = [f"out {i}" for i in range(300)] + ["id.py: 300 calls, 0 failed"]
    want.append("pysprinter: note: --concurrency 128 with a server: 32 calls at a time (each holds one of the "
                "connections the server admits from this address)")
    assert sorted(p.stderr.splitlines()) == sorted(want), set(p.stderr.splitlines()) ^ set(want)
    st, body = daemon.call("GET", "/v1/runs?limit=1000")
    assert sum(1 for r in body["runs"] if r.get("filename") == "id.py") == 300


@pytest.mark.parametrize("steps, message", [
    (["a.py", "gone.py"], "pysprinter: chain: task 'step2': cannot read gone.py: No such file or directory\n"),
    (["a.py", "a.py", "syn.py"], "pysprinter: chain: task 'step3' (syn.py): syn.py:2:15: SyntaxError: invalid "
                                 "syntax\n        return x +\n                  ^\n"),
    (["a.py", "a.py::nope"], "pysprinter: chain: task 'step2' (a.py): no top-level function 'nope' in a.py "
                             "(functions: f)\n"),
])
def test_chain_errors_name_no_pipeline_file_the_user_never_wrote(cli, both, steps, message):
    """chain builds its pipeline in memory, yet its refusals began
    "chain.yaml:1:83: task 'step2': …" (embedded and with a server): a file
    and a column the user cannot open. They now begin "chain: ", naming
    the step, on both paths, exit 3 as before."""
    cli.write("a.py", "def f(x: int):\n    return x + 1\n")
    cli.write("syn.py", "def f(x):\n    return x +\n")
    r = same(*both("chain", *steps, "-a", "1", *sandbox_args()))
    assert (r.returncode, r.stdout, r.stderr) == (3, "", message)


def screen_lines(out):
    """What a terminal shows of each line: the text after its last
    carriage return (the progress bar erases itself with "\\r\\033[K")."""
    shown = []
    for line in out.split("\r\n"):
        shown.append(line.rsplit("\r", 1)[-1].replace("\x1b[K", ""))
    return shown


def test_map_output_on_a_terminal_does_not_land_on_the_progress_bar(cli, daemon):
    """On a terminal map draws its progress bar on stderr, where the
    calls' output goes too: a call's line was written after the bar
    without erasing it, so the terminal showed
    "[.....] 0/6  failed 0  0msline 2". The bar is now erased before a
    call's lines and drawn again below them, on both paths."""
    cli.write("pt.py", """
        import time
        def f(x):
            time.sleep(0.3)
            print("line", x)
            time.sleep(0.3)
            return x
        """)
    cli.write("six.jsonl", "".join(f"{i}\n" for i in range(6)))
    base = [CLI, "map", "pt.py", "--over", "six.jsonl", "-j", "2", *sandbox_args()]
    for argv, env in ((base, cli.env), ([*base, "--server", daemon.url], dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"]))):
        code, out = run_on_pty(cli.cwd, argv, env)
        assert code == 0, out
        shown = screen_lines(out)
        assert sorted(x for x in shown if "line" in x) == [f"line {i}" for i in range(6)], shown


def test_map_refuses_output_file_it_would_not_write(cli, both):
    """`map … --output-file out.txt` was taken without a word and wrote
    nothing: out.txt did not exist afterwards, the results went to
    stdout as ever (`chain` refuses the option). Now exit 2 before
    anything runs, on both paths."""
    cli.write("sq.py", SQ)
    cli.write("in.jsonl", "1\n")
    r = same(*both("map", "sq.py", "--over", "in.jsonl", "--output-file", "out.txt"))
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == ("pysprinter: map: --output-file is run's option: map's results are on stdout (`> FILE`), "
                        "the calls' output on stderr\n")
    assert not (cli.cwd / "out.txt").exists()


def test_map_whose_reader_is_gone_starts_no_more_calls(cli, daemon):
    """docs/cli.md: once the reader of the output is gone, map "starts
    none of the calls it had not started yet". A reader gone from the
    start (`map … | head -c 0`, a consumer that died) was only noticed at
    the first result's write: two calls ran to their end and more were
    started and cancelled. Now map asks the pipe before each call starts,
    and a call starts only once every line due is written: here no call
    runs at all, and the CLI ends by SIGPIPE, on both paths."""
    import os
    cli.write("gone.py", "import time\n\ndef f(x):\n    time.sleep(2)\n    return x\n")
    cli.write("in.jsonl", "".join(f"{i}\n" for i in range(6)))
    for extra, env in (([], cli.env), (["--server", daemon.url], dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"]))):
        r, w = os.pipe()
        os.close(r)
        p = subprocess.run([str(CLI), "map", "gone.py", "--over", "in.jsonl", "-j", "2", *sandbox_args(), *extra],
                           cwd=cli.cwd, env=env, stdout=w, stderr=subprocess.PIPE, timeout=120)
        os.close(w)
        assert p.returncode == -13, (p.returncode, p.stderr)
    assert cli("ps", "--json").stdout.strip() == "[]"
    st, runs = daemon.call("GET", "/v1/runs?limit=1000")
    assert not [x for x in runs["runs"] if x.get("filename") == "gone.py"]
