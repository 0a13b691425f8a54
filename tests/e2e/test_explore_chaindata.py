"""`chain` and datasets as a user of Modal, Ray or Lambda drives them
(helper "chaindata"): each test is a case the earlier rounds' tests
(test_dag*.py, test_data*.py, test_cli_parity.py, test_explore_*.py) do
not cover, embedded and against a real pysprinterd (`--server`)."""
import json
import pathlib
import shutil
import subprocess
import time

import pytest

from conftest import CLI, same, sandbox_args
from daemonlib import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("explore-chaindata")).serving() as d:
        yield d


# ---- chain ----

def test_chain_steps_outside_the_working_directory_run_on_both_paths(both, cli, tmp_path):
    """`chain ../lib/a.py /abs/b.py` ran embedded, but with --server it was
    refused, exit 3: "task file '../lib/a.py' must be a relative path
    inside the pipeline's directory" (a chain has no pipeline file; the
    user named the files on the command line). `run ../lib/a.py --server`
    runs it. The steps now run on both paths, with the same output."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.py").write_text("def a(x: int):\n    return x + 1\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.py").write_text("def b(x):\n    return x * 10\n")
    work = tmp_path / "work"
    work.mkdir()
    cli.cwd = work
    r = same(*both("chain", "../lib/a.py", tmp_path / "other" / "b.py", "../lib/a.py::a", *sandbox_args(), "-a", "1",
                   "-q", "--no-cache"))
    assert (r.returncode, r.stdout) == (0, "21\n"), r
    # A step the user can name is one the server can run: the same file
    # twice, by two spellings, is still its own step each.
    r = same(*both("chain", "../lib/a.py", f"{lib}/a.py", *sandbox_args(), "-a", "1", "-q"))
    assert (r.returncode, r.stdout) == (0, "3\n"), r
    # `./c.py` (a "." component) and a symlink to a file outside.
    (work / "c.py").write_text("def c(x):\n    return [x]\n")
    (work / "link.py").symlink_to(lib / "a.py")
    r = same(*both("chain", "link.py", "./c.py", *sandbox_args(), "-a", "1", "-q"))
    assert (r.returncode, r.stdout) == (0, "[2]\n"), r
    # A step that is not there is named as the user wrote it.
    r = same(*both("chain", "../lib/a.py", "../lib/nope.py", "-a", "1"))
    assert (r.returncode, r.stderr) == (3, "pysprinter: chain: task 'step2': cannot read ../lib/nope.py: "
                                           "No such file or directory\n"), r


def test_a_later_steps_missing_argument_is_not_hinted_at_with_a_on_both_paths(both, cli):
    """A later step's parameter without a default: the message said "give
    positional values with -a VALUE, named ones with --NAME VALUE", but
    those go to the first step (`chain f.py g.py -a 1 --y 2` is then "f()
    got an unexpected keyword argument 'y'"). It now says what a chain
    gives that step. The first step keeps run's hint."""
    cli.write("two.py", "def first(x: int):\n    return x\n\ndef second(x, y: int):\n    return x + y\n")
    r = same(*both("chain", "two.py::first", "two.py::second", *sandbox_args(), "-a", "1"))
    assert (r.returncode, r.stdout) == (3, ""), r
    assert r.stderr == ("pysprinter: chain: task 'step2' (two.py): second() missing 1 required argument: 'y' (a chain "
                        "gives step2 one argument, step1's result: give its other parameters defaults)\n"), r
    r = same(*both("chain", "two.py::second", "two.py::first", *sandbox_args(), "-a", "1"))
    assert r.stderr.endswith("(give positional values with -a VALUE, named ones with --NAME VALUE)\n"), r


def test_a_step_file_not_in_utf8_is_named_in_the_same_words_on_both_paths(both, cli):
    """A task file in Latin-1: embedded, `chain`/`dag run` said where the
    first bad byte is ("task 'step2' (bin.py): bin.py:2:9: not valid
    UTF-8", as `run` says it on both paths); with --server the CLI said
    only "./bin.py: not valid UTF-8", before it sent anything."""
    cli.write("a.py", "def a(x: int):\n    return x\n")
    (cli.cwd / "bin.py").write_bytes(b"def b(x):\n    return 'caf\xe9'\n")
    r = same(*both("chain", "a.py", "bin.py", *sandbox_args(), "-a", "1"))
    assert (r.returncode, r.stderr) == (3, "pysprinter: chain: task 'step2' (bin.py): bin.py:2:16: not valid UTF-8\n"), r
    cli.write("p.yaml", 'tasks:\n  one: {file: a.py, args: [1]}\n  two: {file: bin.py, args: ["${one}"]}\n')
    r = same(*both("dag", "run", "p.yaml", *sandbox_args()))
    assert (r.returncode, r.stderr) == (3, "pysprinter: p.yaml:3: task 'two' (bin.py): bin.py:2:16: not valid UTF-8\n"), r


def test_a_step_that_raises_without_a_message_is_named_once_on_both_paths(both, cli):
    """`raise ValueError()` (or a bare KeyboardInterrupt) in a middle step:
    the run's error is "ValueError" (the engine's "Type: str(e)", "Type"
    when str(e) is empty) and the step said "ValueError: ValueError". It
    now says the type once, as `run` does, and the exit code stays 1."""
    cli.write("a.py", "def a(x: int):\n    return x\n")
    cli.write("ve.py", "def ve(x):\n    raise ValueError()\n")
    for r in both("chain", "a.py", "ve.py", "a.py", *sandbox_args(), "-a", "1", "-q"):
        assert (r.returncode, r.stderr.splitlines()[0]) == (1, "  step2 failed (exit 1): ValueError"), r


SNAP = """\
import time
from pysprinter import data_path

def snap(prev=None, nap: float = 0):
    seen = open(data_path("snap")).read().strip()
    time.sleep(nap)
    return (prev or []) + [seen]
"""


@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_every_step_of_a_chain_reads_one_version_of_its_data(cli, daemon, tmp_path, server):
    """`chain snap.py snap.py --data snap`: a `data put snap` while step1
    ran gave step2 the new version: one chain saw ["v1", "v2"], a mix no
    single version of the dataset holds. Every step (every task of a DAG
    run) now reads the version its first reader did."""
    from daemonlib import TOKENS
    cli.write("snap.py", SNAP)
    pre = ["--server", daemon.url] if server else []
    env = dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"])
    src = tmp_path / "s.txt"

    def put(text):
        src.write_text(text)
        p = subprocess.run([str(CLI), *pre, "data", "put", "snap", str(src)], env=env, cwd=cli.cwd,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr

    put("v1\n")
    chain = subprocess.Popen([str(CLI), *pre, "chain", "snap.py", "snap.py", *sandbox_args(), "--nap", "2",
                              "--data", "snap", "--no-cache", "-q"], env=env, cwd=cli.cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        # -q draws no view: step1 runs once its run exists.
        deadline = time.monotonic() + 60
        ls = []
        while not ls and time.monotonic() < deadline:
            time.sleep(0.05)
            p = subprocess.run([str(CLI), *pre, "ps", "--json"], env=env, cwd=cli.cwd, capture_output=True, text=True,
                               timeout=60)
            ls = [r for r in json.loads(p.stdout or "[]") if r.get("status") == "running"]
        assert ls, "step1 never ran"
        put("v2\n")
        out, err = chain.communicate(timeout=120)
    finally:
        if chain.poll() is None:
            chain.kill()
            chain.wait()
    assert (chain.returncode, json.loads(out)) == (0, ["v1", "v1"]), (out, err)


# ---- datasets ----

def test_a_put_of_content_a_concurrent_rm_drops_keeps_its_content(cli, tmp_path):
    """`data rm a` and `data put b SAME` at once (two shells, a pipeline's
    cleanup and its next put): the rm counted no reference to the content
    (b's version was not recorded yet) and deleted it, while the put had
    found it in the store and recorded a version of it. b's new version
    named content that was gone: `data get b` said "the content of dataset
    'b' version N is missing", and a run with --data b failed. A put now
    holds the content until its version is recorded."""
    blob = tmp_path / "blob.bin"
    for i in range(40):
        blob.write_bytes(i.to_bytes(4, "big") * 50000)
        cli("data", "put", "race-a", blob, check=0)
        procs = [subprocess.Popen([str(CLI), *args], cwd=cli.cwd, env=cli.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for args in
                 (["data", "rm", "race-a"], ["data", "put", "race-b", str(blob)])]
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, (i, out, err)
        got = subprocess.run([str(CLI), "data", "get", "race-b"], cwd=cli.cwd, env=cli.env, capture_output=True,
                             timeout=60)
        assert (got.returncode, got.stderr) == (0, b""), (i, got.stderr)
        assert got.stdout == blob.read_bytes(), i
        cli("data", "rm", "race-b", check=0)


@pytest.mark.parametrize("first", ["file", "dir"])
def test_a_put_that_would_change_a_datasets_kind_is_refused_on_both_paths(both, cli, tmp_path, first):
    """A dataset's kind (one file, or a directory) is the dataset's, not a
    version's: `data put NAME DIR` over a single-file dataset recorded the
    directory as version 2 and made every version a directory. `data get
    NAME@1` printed the object's path embedded and said "NAME@1 is a
    directory dataset" through a daemon, and `run --data NAME@1` saw
    /data/NAME a directory where version 1 was a file; the put warned of
    "keeping the file name" of a directory. Such a put is now refused,
    exit 2, the same words on both paths, and version 1 stays as it was."""
    (tmp_path / "one.txt").write_text("one\n")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "in.txt").write_text("in\n")
    src = {"file": tmp_path / "one.txt", "dir": tmp_path / "tree"}
    then = "dir" if first == "file" else "file"
    name = f"kind-{first}"
    local, remote = both("data", "put", name, src[first])
    assert local.returncode == remote.returncode == 0, (local, remote)
    r = same(*both("data", "put", name, src[then]))
    holds = {"file": "a single file", "dir": "a directory"}
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr == (f"pysprinter: data put: dataset '{name}' holds {holds[first]}, not {holds[then]}: store "
                        f"{holds[then]} under another name, or remove the dataset first (pysprinter data rm {name})\n"), r
    local, remote = both("data", "ls", name, "--json")
    assert len(json.loads(local.stdout)) == len(json.loads(remote.stdout)) == 1, (local.stdout, remote.stdout)
    if first == "file":
        r = same(*both("data", "get", f"{name}@1"))
        assert (r.returncode, r.stdout) == (0, "one\n"), r
        # A run's output_dir() is a directory: the function's output is
        # refused in the same words (exit 1, not an internal error's 7).
        cli.write("mk.py", "from pysprinter import output_dir\ndef mk():\n"
                           "    open(output_dir() + '/o.txt', 'w').write('o')\n    return 1\n")
        for p in both("run", "mk.py", *sandbox_args(), "--output-data", name):
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert (f"OutputError: storing output_dir(): dataset '{name}' holds a single file, not a directory"
                    in p.stderr), p.stderr


@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_a_dataset_removed_while_data_get_copies_it_out_arrives_whole(cli, daemon, tmp_path, server):
    """A run holds the content its --data names, so a `data rm` meanwhile
    leaves it whole for that run; `data get -o DIR` held nothing. An rm
    while it copied a directory dataset out deleted the files not copied
    yet: embedded the get failed with "cannot copy dataset 'd' to DIR: No
    such file or directory (the target must not hold files of the same
    names)" and left DIR half-filled, through a daemon with "the archive
    is truncated or damaged at 'f123'". The get now holds the content as
    a run does: it arrives whole, and the rm's content goes once the get
    is done."""
    from daemonlib import TOKENS
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(200):
        (tree / f"f{i:03}").write_bytes(bytes([i]) * (512 * 1024))
    pre = ["--server", daemon.url] if server else []
    env = dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"])
    home = daemon.home if server else pathlib.Path(cli.env["PYSPRINTER_HOME"])
    put = subprocess.run([str(CLI), *pre, "data", "put", "held-get", str(tree), "--json"], env=env, cwd=cli.cwd,
                         capture_output=True, text=True, timeout=120)
    assert put.returncode == 0, put.stderr
    obj = home / "data" / "objects" / json.loads(put.stdout)["hash"]
    assert obj.is_dir()
    got = tmp_path / "got"
    got.mkdir()
    get = subprocess.Popen([str(CLI), *pre, "data", "get", "held-get", "-o", str(got / "d")], env=env, cwd=cli.cwd,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(got.iterdir()) and get.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        rm = subprocess.run([str(CLI), *pre, "data", "rm", "held-get"], env=env, cwd=cli.cwd, capture_output=True,
                            text=True, timeout=60)
        assert rm.returncode == 0, rm.stderr
        out, err = get.communicate(timeout=120)
    finally:
        if get.poll() is None:
            get.kill()
            get.wait()
    assert (get.returncode, err) == (0, ""), err
    assert sorted(p.name for p in (got / "d").iterdir()) == sorted(p.name for p in tree.iterdir())
    assert (got / "d" / "f199").read_bytes() == bytes([199]) * (512 * 1024)
    shutil.rmtree(got)
    shutil.rmtree(tree)
    # The removed dataset's content does not outlive the get.
    deadline = time.monotonic() + 30
    while obj.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not obj.exists()


@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_data_get_to_a_file_streams_a_large_dataset(cli, daemon, tmp_path, server):
    """Embedded, `data get NAME -o FILE` read the whole file into memory
    before it wrote it: a 200 MiB dataset took 200 MiB of the CLI's heap
    (a dataset may hold 10 GiB), and under a 96 MiB data limit the CLI
    died "out of memory", exit 134. It streams now, as stdout and the
    server's download do; the file still appears whole or not at all."""
    from daemonlib import TOKENS
    import resource
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(200 << 20)
        f.seek(100 << 20)
        f.write(b"middle")
    pre = ["--server", daemon.url] if server else []
    env = dict(cli.env, PYSPRINTER_TOKEN=TOKENS["alice"])
    put = subprocess.run([str(CLI), *pre, "data", "put", "big-get", str(big)], env=env, cwd=cli.cwd,
                         capture_output=True, text=True, timeout=120)
    assert put.returncode == 0, put.stderr
    out = tmp_path / "got.bin"

    def limited():
        resource.setrlimit(resource.RLIMIT_DATA, (96 << 20, 96 << 20))
    try:
        get = subprocess.run([str(CLI), *pre, "data", "get", "big-get", "-o", str(out)], env=env, cwd=cli.cwd,
                             capture_output=True, text=True, timeout=120, preexec_fn=limited)
        assert (get.returncode, get.stderr) == (0, ""), get
        assert out.stat().st_size == 200 << 20
        with open(out, "rb") as f:
            f.seek(100 << 20)
            assert f.read(6) == b"middle"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("got.bin")] == ["got.bin"]
    finally:
        out.unlink(missing_ok=True)
        big.unlink()
        subprocess.run([str(CLI), *pre, "data", "rm", "big-get"], env=env, cwd=cli.cwd, capture_output=True,
                       timeout=60)
