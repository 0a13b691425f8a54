"""The same command embedded and against a daemon (`--server URL`) prints
the same bytes and exits with the same code (README: "One product"). The
error paths the other parity files leave out: ids and names no run, DAG
run or function can have (empty, `.`, `..`, `a/b`), which reached the
daemon as another path of its API."""
import json
import os
import re
import subprocess

import pytest

from conftest import CLI, run_on_pty, same
from daemonlib import TOKENS, Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("explore-parity")).serving() as d:
        yield d


def remote(cli, daemon, *args, input=None):
    return cli(*args, "--server", daemon.url, input=input, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})


def both_bytes(cli, daemon, *args):
    """(exit code, stdout, stderr) as bytes, embedded then with --server:
    a message may hold a byte that is not UTF-8, as the user gave it."""
    out = []
    for extra, env in (([], {}), (["--server", daemon.url], {"PYSPRINTER_TOKEN": TOKENS["alice"]})):
        p = subprocess.run([str(cli.exe), *map(os.fsencode, args), *extra], capture_output=True, cwd=cli.cwd,
                           env={**cli.env, **env}, timeout=120)
        out.append((p.returncode, p.stdout, p.stderr))
    assert out[0] == out[1], out
    return out[0]


NO_RUN = "pysprinter: no run '{}' (see `pysprinter ps`)\n"


@pytest.mark.parametrize("verb", [["show"], ["show", "--json"], ["logs"], ["logs", "-f"], ["cancel"],
                                  ["cancel", "--json"]], ids=" ".join)
def test_an_empty_run_id_is_no_run_on_both_paths(both, verb):
    """`pysprinter show "$ID"` with an unset variable: a daemon read GET
    /v1/runs/ as its list and `show` printed it as a run ("id: ?"), exit
    0; `logs` said "no such endpoint: /v1/runs//logs"; embedded both said
    "cannot read run '': Invalid argument", and `cancel` "unexpected
    argument ''" (`dag status ""` says "no DAG run ''")."""
    r = same(*both(verb[0], "", *verb[1:]))
    assert (r.returncode, r.stdout, r.stderr) == (2, "", NO_RUN.format(""))


@pytest.mark.parametrize("verb", [["show"], ["logs"], ["cancel"], ["ps", "--before"]], ids=" ".join)
@pytest.mark.parametrize("rid", [".", ".."])
def test_a_dot_run_id_is_no_run_on_both_paths(both, verb, rid):
    """`show .` went to GET /v1/runs/. , which the HTTP client reads as
    /v1/runs/: a daemon's list of runs, printed as a run, exit 0
    (`cancel .`: "method DELETE is not allowed here"; `logs .`: "run not
    found"). Embedded: no run '.'."""
    r = same(*both(*verb, rid))
    assert (r.returncode, r.stdout, r.stderr) == (2, "", NO_RUN.format(rid))


@pytest.mark.parametrize("verb", [["status"], ["show"], ["cancel"], ["status", "--json"]], ids=" ".join)
def test_a_dot_dag_run_id_is_no_dag_run_on_both_paths(both, verb):
    """`dag status .` printed a daemon's DAG run list as an empty DAG run
    ("dag . (-): ?"), exit 0."""
    r = same(*both("dag", verb[0], ".", *verb[1:]))
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "pysprinter: no DAG run '.' (see `pysprinter dag ls`)\n")


NO_FUNCTION = "pysprinter: no deployed function '{}' (see `pysprinter functions`)\n"


@pytest.mark.parametrize("args", [["functions", "show", "{}"], ["functions", "rm", "{}"], ["invoke", "{}"],
                                  ["invoke", "{}", "--payload", "{{}}"], ["invoke", "{}", "--help"],
                                  ["logs", "--function", "{}"], ["schedule", "add", "s1", "--every", "1h", "{}"]],
                         ids=" ".join)
@pytest.mark.parametrize("name", ["", ".", "a/b", "../runs"])
def test_a_name_no_function_can_have_is_no_deployed_function(cli, daemon, args, name):
    """`functions show ""` printed the tenant's function list, exit 0
    (`rm`: "method DELETE is not allowed here"); `invoke a/b` said "no
    such endpoint: /v1/functions/a/b/invoke"; and `logs --function ..`
    asked /v1/functions/../runs, which is /v1/runs: it printed the
    output of the tenant's last runs, of any function or none, and -f
    followed every new one. `schedule add S --every 1h a/b` said "field
    'function' must name a deployed function" ("" : "no file given")."""
    if name == "" and args[0] in ("logs", "invoke"):
        pytest.skip("a usage error before any server is asked (test_invoke_without_a_name_…)")
    words = [a.format(name) for a in args]
    r = remote(cli, daemon, *words)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", NO_FUNCTION.format(name)), r


@pytest.mark.parametrize("args", [[], [""], ["::3"], ["", "--payload", "{}"]], ids=repr)
def test_invoke_without_a_name_asks_for_one_on_both_paths(both, args):
    """`invoke "$FN"` with an unset variable said "no file given in ''"
    (`invoke` alone: "no file given"): invoke takes a deployed function's
    NAME, no file."""
    r = same(*both("invoke", *args))
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr.startswith("pysprinter: invoke needs a deployed function's NAME (see `pysprinter functions`)\n")


@pytest.mark.parametrize("ref", ["a b", "x@0", "a\udcffb"], ids=["space", "version0", "not-utf8"])
@pytest.mark.parametrize("verb", [["run", "f.py"], ["map", "f.py", "--over", "in.jsonl"], ["chain", "f.py"]],
                         ids=lambda v: v[0])
def test_a_data_reference_that_cannot_be_is_one_usage_error_on_both_paths(cli, daemon, verb, ref):
    """`run f.py --data 'a b'` said "'a b' is not a dataset reference"
    embedded and "field 'data[0]' must be a dataset name …" through a
    daemon (map: a ClientError line per input, in those two wordings);
    a name that is not UTF-8 fell out of the request's JSON, and the run
    went on without its dataset, exit 0, through a daemon (chain:
    embedded too)."""
    cli.write("f.py", "def f(x=1):\n    return x\n")
    cli.write("in.jsonl", "[1]\n")
    code, out, err = both_bytes(cli, daemon, *verb, "--data", ref)
    assert (code, out) == (2, b""), err
    assert err.startswith(b"pysprinter: --data needs a dataset reference (NAME or NAME@VERSION), got '"
                          + os.fsencode(ref) + b"'\n"), err


def test_map_names_a_missing_dataset_once_before_any_call_on_both_paths(cli, both):
    """`map --data nope` printed one line per input, not the same one:
    through a daemon each call was a recorded run ending in a DataError,
    embedded a ClientError line with no run id. A dataset that is not
    there fails every call: it is said once, as `run` says it, exit 3,
    and nothing is run (as a file that cannot run with any input)."""
    cli.write("f.py", "def f(x=1):\n    return x\n")
    cli.write("in.jsonl", "[1]\n[2]\n")
    cli.write("w.txt", "words\n")
    same(*both("data", "put", "words", "w.txt"))
    for ref, msg in [("nope", "no dataset named 'nope' (add it with: pysprinter data put nope PATH|URL)"),
                     ("words@7", "dataset 'words' has no version 7 (see `pysprinter data ls words`)")]:
        r = same(*both("map", "f.py", "--over", "in.jsonl", "--data", ref))
        assert (r.returncode, r.stdout, r.stderr) == (3, "", f"pysprinter: {msg}\n"), r
    local, remote = both("map", "f.py", "--over", "in.jsonl", "--data", "words@1")
    assert local.returncode == remote.returncode == 0, (local, remote)


def test_a_run_refused_for_its_data_is_listed_as_a_server_lists_it(cli, both):
    """`run f.py --data nope` printed the same words on both paths, but a
    daemon had recorded the run (`error`, exit 3, DataError: it finds the
    dataset missing when the run starts) and embedded nothing: `ps` and
    `show` of the two homes told different stories."""
    cli.write("f.py", "def f(x=1):\n    return x\n")
    r = same(*both("run", "f.py", "--data", "nope"))
    assert r.returncode == 3, r
    seen = []
    for p in both("ps", "-n", "1", "--status", "error", "--json"):
        [run] = json.loads(p.stdout)
        seen.append((run["status"], run["exit_code"], run["filename"], run["function"], run["error"]["type"],
                     run["error"]["message"]))
    assert seen[0] == seen[1] == ("error", 3, "f.py", None, "DataError",
                                  "no dataset named 'nope' (add it with: pysprinter data put nope PATH|URL)"), seen


def test_a_run_object_counts_its_first_attempt_as_1_on_both_paths(cli, both):
    """`show RUN --json` of a run that ran once said "attempt": 0 embedded
    and 1 through a daemon (the API's example, and a queue's count of its
    starts): a script reading .attempt saw a run that never started."""
    cli.write("f.py", "def f(x=1):\n    return x\n")
    same(*both("run", "f.py"))
    same(*both("run", "f.py", "--data", "nope"))
    for p in both("ps", "-n", "2", "--json"):
        assert [(r["status"], r["attempt"]) for r in json.loads(p.stdout)] == [("error", 1), ("succeeded", 1)], p


@pytest.mark.parametrize("verb", ["run", "validate", "lock"])
def test_a_source_on_stdin_too_large_is_named_stdin_on_both_paths(both, verb):
    """`run - < big.py` said "- is larger than the 4 MiB source limit", a
    file called "-": the run names its stdin `<stdin>` everywhere else."""
    big = "X = 1\n" * (5 * 1024 * 1024 // 6 + 1) + "def f():\n    return 1\n"
    r = same(*both(verb, "-", input=big))
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "pysprinter: <stdin> is larger than the 4 MiB source limit\n")


@pytest.mark.parametrize("url", ["http://127.0.0.1:1?x=1", "http://127.0.0.1:1#top", "http:///v1", "https://"])
def test_a_server_url_with_a_query_or_no_host_is_a_usage_error(cli, url):
    """`--server 'http://host:port?x=1'` sent GET http://host:port?x=1/v1/runs:
    "no such endpoint: /", exit 2, from a server that was there; a URL
    with no host said "cannot reach", exit 6 (the server unreachable)."""
    r = cli("ps", "--server", url)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr.startswith("pysprinter: --server needs an http:// or https:// URL (a host, no query or "
                               "fragment), not '"), r


def test_map_on_a_dumb_terminal_draws_no_bar_on_both_paths(cli, daemon):
    """docs/cli.md: where the cursor cannot move (TERM=dumb) nothing is
    redrawn. map drew its bar there all the same, "\\r\\033[K[....] 0/1"
    before each line, embedded as through a daemon (the DAG view and the
    progress line already asked TERM)."""
    cli.write("f.py", "def f(x=1):\n    print('hi')\n    return x\n")
    cli.write("in.jsonl", "[1]\n")
    got = []
    for extra, env in (([], {}), (["--server", daemon.url], {"PYSPRINTER_TOKEN": TOKENS["alice"]})):
        code, out = run_on_pty(cli.cwd, [CLI, "map", "f.py", "--over", "in.jsonl", *extra],
                               {**cli.env, **env, "TERM": "dumb"})
        got.append((code, re.sub(r'"run_id":"r[0-9a-z]+"', '"run_id":"ID"', out)))
    assert got[0] == got[1] == (0, 'hi\r\n{"index":0,"run_id":"ID","status":"succeeded","result":1}\r\n'
                                   'f.py: 1 call, 0 failed\r\n'), got


def test_data_get_into_a_device_or_a_fifo_writes_into_it_on_both_paths(cli, both, daemon, tmp_path):
    """`data get NAME -o /dev/null` renamed a temporary file over the
    device, embedded as through a daemon: as root, /dev/null became a
    regular file holding the dataset, for every process of the machine;
    `-o FIFO` replaced the pipe with a file its reader never saw. A
    device node of the test's own (the null device) and a FIFO stand in
    for /dev/null here: it must stay a device, and the FIFO's reader
    gets the bytes."""
    import stat
    import threading
    cli.write("w.txt", "the words\n")
    same(*both("data", "put", "explore-dev", "w.txt"))
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for extra, env in (([], {}), (["--server", daemon.url], {"PYSPRINTER_TOKEN": TOKENS["alice"]})):
        r = cli("data", "get", "explore-dev", "-o", dev, *extra, env=env)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
        assert stat.S_ISCHR(os.lstat(dev).st_mode), "the device was replaced"
        got = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
        reader.start()
        r = cli("data", "get", "explore-dev", "-o", fifo, *extra, env=env, timeout=60)
        if reader.is_alive():  # the CLI never opened the FIFO: let the reader go
            with open(fifo, "wb"):
                pass
        reader.join(30)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got == [b"the words\n"], got
