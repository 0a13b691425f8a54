"""The reader of the CLI's output goes away: `pysprinter run f.py | head
-1`, `pysprinter logs -f ID | head -1`, `map ... | head -1`, `dag run` and
`chain` whose tree view nobody reads any more. Nothing handled it: SIGPIPE's
default killed the CLI mid-run, an embedded run stayed `running` until a
later look marked it `lost`, and a server's run went on for nobody. Now a
foreground run is cancelled (its record ends `cancelled`), nothing more
is printed, and the CLI ends as a tool SIGPIPE killed (a shell's 141),
embedded and against a daemon alike (docs/cli.md "Exit codes").

Every CLI here is started with SIGPIPE's default disposition, as a shell
starts it: subprocess's restore_signals=True (its default, spelled out)
resets the SIG_IGN Python itself runs with; one test keeps it ignored on
purpose."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import CLI
from proctree import no_process_left
from test_cli_parity import daemon, own_work_dir  # noqa: F401 (daemon: the fixture, one for the module)

SB = ["--sandbox=none"]
TALK = ('def talk(n: int = 100000):\n    import time\n    for i in range(n):\n'
        '        print("line", i, flush=True)\n        time.sleep(0.02)\n    return "done"\n')


@pytest.fixture
def work(tmp_path):
    return own_work_dir(tmp_path, "talk.py", TALK)


def cli(work, server, *args):
    w, env = work
    pre = ["--server", server] if server else []
    return subprocess.run([str(CLI), *pre, *args], capture_output=True, text=True, env=env, cwd=w, timeout=60)


def record(work, server, rid=None):
    if rid is None:
        return json.loads(cli(work, server, "ps", "--json", "-n", "1").stdout)[0]
    return json.loads(cli(work, server, "show", rid, "--json").stdout)


def read_one_line_and_leave(work, server, args, restore_signals=True, until=None, stderr_too=False):
    """`pysprinter ARGS` with stdout a pipe this test reads one line of and
    then closes, as `head -1` does: (that line, exit status, what stderr
    got after the sandbox warning, seconds from the close to the exit).
    until: read lines up to the first that starts with it, then close, as
    `grep -m1` does; stderr_too: stderr into the same pipe (`2>&1 |`)."""
    w, env = work
    pre = ["--server", server] if server else []
    # What the CLI inherits: Python ignores SIGPIPE, and a child it starts
    # gets SIG_DFL back only with restore_signals. (Read here, not in the
    # CLI's /proc status: the CLI soon catches SIGPIPE, which clears SigIgn.)
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    p = subprocess.Popen([str(CLI), *pre, *args], cwd=w, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE, text=True,
                         restore_signals=restore_signals)
    try:
        line = p.stdout.readline()
        while until is not None and line and not line.startswith(until):
            line = p.stdout.readline()
        p.stdout.close()
        gone = time.monotonic()
        err = "" if stderr_too else p.stderr.read()
        code = p.wait(timeout=60)
        took = time.monotonic() - gone
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return line, code, [l for l in err.splitlines() if "--sandbox" not in l], took


def test_a_foreground_run_whose_reader_left_is_cancelled_on_both_paths(daemon, work):
    """`run talk.py | head -1`: the run is cancelled at the next line it
    prints, within a second, its record says `cancelled`; the CLI says
    nothing more and dies of SIGPIPE, embedded as against a server."""
    seen = {}
    for server in (None, daemon.url):
        line, code, err, took = read_one_line_and_leave(work, server, ["run", "talk.py", *SB])
        assert (line, code, err) == ("line 0\n", -signal.SIGPIPE, []), server
        assert took < 10, (server, took)
        run = record(work, server)
        assert (run["filename"], run["status"]) == ("talk.py", "cancelled"), (server, run)
        seen[server] = (line, code, err)
        if not server:
            assert no_process_left(work[0]), "a process of the cancelled run is left"
    assert seen[None] == seen[daemon.url]


def test_a_shell_pipeline_sees_141_and_only_what_head_printed_on_both_paths(daemon, work):
    """What a user types: the pipeline ends at once, `set -o pipefail`
    gives 141 (128 + SIGPIPE) as for any tool SIGPIPE killed, stdout is
    head's one line and stderr has nothing of pysprinter's."""
    w, env = work
    seen = {}
    for server in (None, daemon.url):
        pre = f'--server {server} ' if server else ''
        start = time.monotonic()
        r = subprocess.run(["bash", "-c", f'set -o pipefail; "$0" {pre}run talk.py --sandbox=none | head -1', str(CLI)],
                           cwd=w, env=env, capture_output=True, text=True, timeout=60, restore_signals=True)
        assert time.monotonic() - start < 30
        err = [l for l in r.stderr.splitlines() if "--sandbox" not in l]
        assert (r.returncode, r.stdout, err) == (141, "line 0\n", []), server
        assert record(work, server)["status"] == "cancelled", server
        seen[server] = (r.returncode, r.stdout, err)
    assert seen[None] == seen[daemon.url]


def test_a_caller_that_ignored_sigpipe_gets_exit_141_and_the_run_is_cancelled(daemon, work):
    """A caller that ignores SIGPIPE (Python's subprocess with
    restore_signals=False) asked not to be killed by it: the CLI exits 141
    instead of dying of it, and the run is cancelled all the same."""
    for server in (None, daemon.url):
        line, code, err, _ = read_one_line_and_leave(work, server, ["run", "talk.py", *SB], restore_signals=False)
        assert (line, code, err) == ("line 0\n", 141, []), server
        assert record(work, server)["status"] == "cancelled", server


def test_logs_f_whose_reader_left_stops_and_leaves_the_run_alone_on_both_paths(daemon, work):
    """`logs -f ID | head -1` only looks: it stops following, says nothing
    and dies of SIGPIPE as `run` does; the run goes on (it is not `logs`'s
    to cancel)."""
    seen = {}
    for server in (None, daemon.url):
        r = cli(work, server, "run", "talk.py", "--detach", "-q", *SB)
        rid = r.stdout.strip()
        assert r.returncode == 0 and rid, r
        try:
            line, code, err, took = read_one_line_and_leave(work, server, ["logs", "-f", rid])
            assert (line, code, err) == ("line 0\n", -signal.SIGPIPE, []), server
            assert took < 10, (server, took)
            assert record(work, server, rid)["status"] == "running", server
        finally:
            assert cli(work, server, "cancel", rid).returncode == 0
        seen[server] = (line, code, err)
    assert seen[None] == seen[daemon.url]


def test_a_detached_run_whose_id_nobody_reads_goes_on_on_both_paths(daemon, work):
    """`run --detach` prints the id of a run that is detached already: a
    reader gone before it is printed does not cancel the run, and the CLI
    ends by SIGPIPE as any tool whose output nobody read (it exited 0
    embedded, the id written into the void)."""
    w, env = work
    for server in (None, daemon.url):
        pre = ["--server", server] if server else []
        r, wr = os.pipe()
        os.close(r)  # nobody reads, from the start
        try:
            p = subprocess.run([str(CLI), *pre, "run", "talk.py", "--n", "3", "--detach", "-q", *SB], cwd=w, env=env,
                               stdout=wr, stderr=subprocess.PIPE, text=True, timeout=60, restore_signals=True)
        finally:
            os.close(wr)
        err = [l for l in p.stderr.splitlines() if "--sandbox" not in l]
        assert (p.returncode, err) == (-signal.SIGPIPE, []), server
        deadline = time.monotonic() + 30
        while (run := record(work, server))["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (run["filename"], run["status"]) == ("talk.py", "succeeded"), (server, run)


def test_logs_of_an_ended_run_whose_reader_left_stops_quietly_on_both_paths(daemon, work):
    """`logs ID | head -1` of a log larger than a pipe holds: the replay
    stops at the first write nobody reads, silently, by SIGPIPE, the same
    on both paths; the run's record is untouched."""
    w, env = work
    (w / "big.py").write_text('def big():\n    for i in range(20000):\n        print(i, "y" * 100)\n    return 1\n')
    seen = {}
    for server in (None, daemon.url):
        r = cli(work, server, "run", "big.py", *SB)
        assert r.returncode == 0 and r.stdout.endswith("19999 " + "y" * 100 + "\n1\n"), server
        rid = record(work, server)["id"]
        line, code, err, took = read_one_line_and_leave(work, server, ["logs", rid])
        assert (line, code, err) == ("0 " + "y" * 100 + "\n", -signal.SIGPIPE, []), server
        assert took < 10 and record(work, server, rid)["status"] == "succeeded", (server, took)
        seen[server] = (line, code, err)
    assert seen[None] == seen[daemon.url]


# Three steps, for map, chain and dag run: a first that ends at once, a
# second that ends a second later (a write after the reader left: the
# failed write is what tells), a third that would talk for half an hour.
STEPS = ('def quick(x: int = 0):\n    return 1\n\n'
         'def second(x: int = 0):\n    import time\n    time.sleep(1)\n    return 2\n\n'
         'def slow(x: int = 0):\n    import time\n    for i in range(100000):\n'
         '        print("line", i, flush=True)\n        time.sleep(0.02)\n    return 3\n')
PIPELINE = ("tasks:\n  a: {file: steps.py, function: quick}\n"
            "  b: {file: steps.py, function: second, args: ['${a}']}\n"
            "  c: {file: steps.py, function: slow, args: ['${b}']}\n")


@pytest.fixture
def steps(work):
    w, _ = work
    (w / "steps.py").write_text(STEPS)
    (w / "pipe.yaml").write_text(PIPELINE)
    (w / "mapped.py").write_text(TALK)  # its runs alone are map's, on the module's daemon too
    (w / "calls.jsonl").write_text("".join(f'{{"n": {n}}}\n' for n in (0, 50, 100000, 100000, 100000, 100000)))
    return work


def runs_of(work, server, filename):
    ps = cli(work, server, "ps", "--json", "-n", "100")
    assert ps.returncode == 0, ps
    return [r for r in json.loads(ps.stdout) if r["filename"] == filename]


def test_map_whose_reader_left_cancels_its_calls_and_starts_no_more_on_both_paths(daemon, steps):
    """`map mapped.py --over calls.jsonl -j 3 | head -1`: the first call's
    line is read; the second's, written a second later, fails: the calls
    in flight are cancelled, the ones not started never start, nothing
    more is printed (no "N calls" summary) and the CLI dies of SIGPIPE."""
    seen = {}
    for server in (None, daemon.url):
        line, code, err, took = read_one_line_and_leave(
            steps, server, ["map", "mapped.py", "--over", "calls.jsonl", "-j", "3", *SB])
        assert json.loads(line)["index"] == 0 and json.loads(line)["result"] == "done", (server, line)
        assert code == -signal.SIGPIPE and took < 20, (server, code, took)
        # the calls' own output (stderr, interleaved), nothing of the CLI's
        assert not [l for l in err if "calls" in l or "pysprinter" in l], (server, err)
        statuses = sorted(r["status"] for r in runs_of(steps, server, "mapped.py"))
        # call 0 ended; call 1 ended too when its last line came before
        # the CLI found its reader gone, else it was cancelled in flight
        # (map looks at the pipe before each call and as a call's output
        # comes); 2 and 3 (and 4, when its thread took it first) were
        # cancelled; 5 never ran
        ended = statuses.count("succeeded")
        assert ended in (1, 2), (server, statuses)
        assert set(statuses[:-ended]) == {"cancelled"} and len(statuses) in (3, 4, 5), (server, statuses)
        if not server:
            assert no_process_left(steps[0]), "a process of a cancelled call is left"
        seen[server] = ({k: v for k, v in json.loads(line).items() if k != "run_id"}, code)
    assert seen[None] == seen[daemon.url]


@pytest.mark.parametrize("args,first,task", [
    (["dag", "run", "pipe.yaml", "--no-cache"], "a: succeeded", "c"),
    (["chain", "steps.py::quick", "steps.py::second", "steps.py::slow", "--no-cache"], "step1: succeeded", "step3"),
], ids=["dag run", "chain"])
def test_a_dag_whose_reader_left_is_cancelled_on_both_paths(daemon, steps, args, first, task):
    """`dag run pipe.yaml 2>&1 | grep -m1 'a: succeeded'` (the result is
    printed at the end; the tree view is what goes as the DAG runs): the
    next line fails, the DAG run is cancelled (its last task never
    succeeds), nothing more is printed and the CLI dies of SIGPIPE (a
    shell's 141). Embedded, no process is left."""
    seen = {}
    for server in (None, daemon.url):
        line, code, _, took = read_one_line_and_leave(steps, server, [*args, *SB], until=first, stderr_too=True)
        assert line.startswith(first), (server, line)
        assert code == -signal.SIGPIPE and took < 20, (server, code, took)
        ls = cli(steps, server, "dag", "ls", "--json")
        dag = json.loads(ls.stdout)[0]
        st = json.loads(cli(steps, server, "dag", "status", dag["id"], "--json").stdout)
        assert (dag["status"], st["status"]) == ("cancelled", "cancelled"), (server, dag, st)
        assert st["tasks"][task]["state"] not in ("succeeded", "running", "queued"), (server, st["tasks"])
        assert all(r["status"] in ("succeeded", "cancelled") for r in runs_of(steps, server, "steps.py")), server
        if not server:
            assert no_process_left(steps[0]), "a process of the cancelled DAG run is left"
        seen[server] = (line.split()[:2], code)
    assert seen[None] == seen[daemon.url]


TALK_EVENT = ('def handler(event, context):\n    import time\n    while True:\n'
              '        print("line", flush=True)\n        time.sleep(0.02)\n')


@pytest.mark.parametrize("args", [
    ["run", "talk.py", *SB], ["run", "talk.py", "--detach", *SB],
    ["invoke", "talkev", "--payload", "{}"], ["invoke", "talkev", "--payload", "{}", "--detach"],
], ids=["run", "run --detach", "invoke --payload", "invoke --payload --detach"])
def test_an_interrupt_while_the_server_takes_the_submit_cancels_the_run_it_creates(daemon, work, args):
    """A map call's submit cut off by its reader going away left a run
    `running` on the server for nobody: the interrupt (SIGPIPE's, as
    SIGTERM's) aborted the POST the server had already read, so the CLI
    never learnt the id to cancel. A daemon held still (SIGSTOP) while the
    CLI's POST waits for it makes that moment last: the CLI, sent SIGTERM
    then, waits for the answer, cancels the run the server created, and
    ends as an interrupted `run` (130) — `run --detach` too: its id was
    not printed yet. The same for a Lambda-style `invoke --payload`, whose
    submit is the Lambda route's `Event` invocation."""
    w, env = work
    if args[0] == "invoke":
        (w / "talkev.py").write_text(TALK_EVENT)
        d = cli(work, daemon.url, "deploy", "talkev.py", "--name", "talkev")
        assert d.returncode == 0, d
    before = {r["id"] for r in json.loads(cli(work, daemon.url, "ps", "--json", "-n", "100").stdout)}
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        p = subprocess.Popen([str(CLI), "--server", daemon.url, *args], cwd=w,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)  # the POST is sent and waits: the kernel took the connection
        p.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out) == (130, ""), (p.returncode, out, err)
    deadline = time.monotonic() + 15
    while True:
        new = [r for r in json.loads(cli(work, daemon.url, "ps", "--json", "-n", "100").stdout)
               if r["id"] not in before]
        if time.monotonic() > deadline or (new and all(r["status"] not in ("queued", "running") for r in new)):
            break
        time.sleep(0.2)
    assert [(r["filename"], r["status"]) for r in new] == [(f"{args[1].removesuffix('.py')}.py", "cancelled")], new


def test_an_interrupt_against_a_server_that_does_not_answer_ends_within_its_bound(daemon, work):
    """The submit goes through whole after an interrupt, but not forever: a
    server that does not answer it (held with SIGSTOP) is given up 10 s
    after the SIGTERM, the CLI says what may go on and exits 6 (a server
    error), rather than hang until the server comes back. Once the server
    runs again, whatever it took is cancelled by hand."""
    w, env = work
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        p = subprocess.Popen([str(CLI), "--server", daemon.url, "run", "talk.py", *SB], cwd=w,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)  # the POST is sent and waits: the kernel took the connection
        p.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        out, err = p.communicate(timeout=30)
        took = time.monotonic() - asked
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    assert 9 < took < 15, (took, err)
    assert (p.returncode, out) == (6, ""), (p.returncode, out, err)
    assert ("pysprinter: the server did not answer within 10 s of the interrupt; what it was asked may go on "
            "(see `pysprinter ps`)") in err, err
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        runs = json.loads(cli(work, daemon.url, "ps", "--json", "-n", "100").stdout)
        live = [r["id"] for r in runs if r["status"] in ("queued", "running")]
        for rid in live:
            cli(work, daemon.url, "cancel", rid)
        if not live and time.monotonic() > deadline - 13:
            break
        time.sleep(0.5)
