"""Verbs that only read, run embedded in a home that has nothing: the
answer an empty home gives (the empty listing, or the same "not found"
and exit code), and the home left as it was: absent stays absent, an
empty directory stays empty. They opened the engine, which created the
home, its database (-wal, -shm), its lock and its directories to say
there was nothing. `env ls` has its own test (test_cli_env_parity.py)."""
import os
import re
import subprocess

import pytest

from conftest import CLI, WORKER

READERS = [
    ["ps"], ["ps", "--json"], ["ps", "--status", "failed,killed"],
    ["show", "rabc"], ["show", "rabc", "--json"],
    ["logs", "rabc"], ["logs", "-f", "rabc"], ["wait", "rabc"], ["wait", "rabc", "rdef", "--json"],
    ["dag", "ls"], ["dag", "ls", "--json"],
    ["dag", "status", "dabc"], ["dag", "status", "dabc", "--json"], ["dag", "logs", "dabc", "t"],
    ["data", "ls"], ["data", "ls", "--json"], ["data", "ls", "words"], ["data", "ls", "words", "--json"],
    ["data", "get", "words"], ["data", "get", "words@2", "-o", "out.txt"], ["data", "get", "no@such@ref"],
    ["secret", "ls"], ["secret", "ls", "--json"],
    ["functions"], ["functions", "--json"], ["functions", "show", "hello"], ["workers"], ["workers", "--json"],
    ["schedule", "ls"], ["schedule", "ls", "--json"], ["logs", "--function", "hello"],
    ["completion", "--list", "runs"],
]

# Verbs that write, in a home that has nothing: what they would remove is
# not there, or they only say they need a server (invoke, deploy, cluster),
# or there is nothing to collect (gc, --dry-run or not).
WRITERS = [
    ["cancel", "rabc"], ["cancel", "rabc", "--json"], ["cancel", "rabc", "rdef"],
    ["dag", "cancel", "dabc"], ["dag", "cancel", "dabc", "--json"],
    ["data", "rm", "words"], ["data", "rm", "words", "--json"], ["data", "rm", "words@2"],
    ["data", "rm", "no@such@ref"],
    ["secret", "rm", "NOPE"], ["secret", "rm", "NOPE", "--json"],
    ["invoke", "hello"], ["invoke", "hello", "--json"], ["invoke", "hello", "-a", "1"], ["invoke", "hello", "--help"],
    ["deploy", "hello.py"], ["deploy", "hello.py", "--name", "hi", "--json"],
    ["cluster", "status"],
    ["gc", "--dry-run"], ["gc", "--dry-run", "--json"], ["gc"], ["gc", "--json"],
]

HELLO = "def hello(x=1):\n    return x\n"


def cli(home, cwd, args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    # An empty PYSPRINTER_SERVER: embedded, whatever a config file says.
    env.update(PYSPRINTER_HOME=str(home), PYSPRINTER_WORKER=str(WORKER), PYSPRINTER_SERVER="", NO_COLOR="1")
    r = subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    # gc --json says how long it took: no two calls alike.
    return r.returncode, re.sub(r'"duration_s":[0-9.e-]+', '"duration_s":T', r.stdout), r.stderr


@pytest.fixture(scope="module")
def opened(tmp_path_factory):
    """What each verb answers in a home whose engine was opened once (its
    database exists and holds nothing): the bytes and codes of before."""
    w = tmp_path_factory.mktemp("opened")
    (w / "hello.py").write_text(HELLO)
    # A verb that opens the engine and adds nothing: there is no DAG run
    # to resume (gc no longer opens one in a home without a database).
    assert cli(w / "home", w, ["dag", "resume", "dabc"])[0] == 2
    assert (w / "home" / "pysprinter.db").exists()
    return {tuple(a): cli(w / "home", w, a) for a in READERS + WRITERS}


def answers_as_an_empty_home(tmp_path, opened, args):
    (tmp_path / "hello.py").write_text(HELLO)
    for fresh in (tmp_path / "absent", tmp_path / "empty"):
        if fresh.name == "empty":
            fresh.mkdir()
        got = cli(fresh, tmp_path, args)
        assert got == opened[tuple(args)], (fresh.name, got)
        assert (sorted(fresh.iterdir()) if fresh.exists() else None) == ([] if fresh.name == "empty" else None)
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_reader_in_a_fresh_home_answers_as_an_empty_home_and_creates_nothing(tmp_path, opened, args):
    answers_as_an_empty_home(tmp_path, opened, args)


@pytest.mark.parametrize("args", WRITERS, ids=" ".join)
def test_a_writer_with_nothing_to_act_on_in_a_fresh_home_answers_as_an_empty_home_and_creates_nothing(
        tmp_path, opened, args):
    """cancel, dag cancel, data rm and secret rm found nothing, invoke,
    deploy and cluster said they need a server, gc (--dry-run or not) said
    there was nothing to collect: each created the home and its database
    first."""
    answers_as_an_empty_home(tmp_path, opened, args)


def test_what_an_empty_home_answers(opened):
    """The answers the parity above holds the fresh home to, spelled out
    for the listings and the misses a user meets first."""
    header = "ID                 STATUS      EXIT CREATED             DURATION  FUNCTION  TARGET\n"
    assert opened[("ps",)] == (0, header, "")
    assert opened[("ps", "--json")] == (0, "[]\n", "")
    assert opened[("show", "rabc")] == (2, "", "pysprinter: no run 'rabc' (see `pysprinter ps`)\n")
    assert opened[("logs", "-f", "rabc")] == (2, "", "pysprinter: no run 'rabc' (see `pysprinter ps`)\n")
    assert opened[("dag", "ls")] == (0, "", "")
    assert opened[("dag", "ls", "--json")] == (0, "[]\n", "")
    assert opened[("dag", "status", "dabc")] == (2, "", "pysprinter: no DAG run 'dabc' (see `pysprinter dag ls`)\n")
    assert opened[("data", "ls", "--json")] == (0, "[]\n", "")
    assert opened[("data", "get", "words")] == (
        2, "", "pysprinter: data get: no dataset named 'words' (add it with: pysprinter data put words PATH|URL)\n")
    assert opened[("secret", "ls", "--json")] == (0, "[]\n", "")
    assert opened[("completion", "--list", "runs")] == (0, "", "")
    assert opened[("workers",)][0] == 2 and "needs a server" in opened[("workers",)][2]
    assert opened[("cancel", "rabc")] == (2, "", "pysprinter: no run 'rabc' (see `pysprinter ps`)\n")
    assert opened[("dag", "cancel", "dabc")] == (
        2, "", "pysprinter: no DAG run 'dabc' (see `pysprinter dag ls`)\n")
    assert opened[("data", "rm", "words")] == (2, "", "pysprinter: data rm: no dataset named 'words'\n")
    assert opened[("data", "rm", "words@2")] == (2, "", "pysprinter: data rm: dataset 'words' has no version 2\n")
    assert opened[("secret", "rm", "NOPE")] == (2, "", "pysprinter: no secret named 'NOPE'\n")
    for verb in (("invoke", "hello"), ("deploy", "hello.py")):
        assert opened[verb][0] == 2 and "needs a server" in opened[verb][2], (verb, opened[verb])
    assert opened[("gc", "--dry-run")][0] == 0
    assert opened[("gc",)] == (0, "removed 0 runs (0 logs, 0 B), 0 DAG runs (0 folders, 0 B), 0 memo entries, 0 data "
                                  "objects (0 B), 0 cancel requests; unreferenced packages: 0 B\nfreed 0 B in 0.0s\n", "")
    assert opened[("gc", "--json")][0] == 0 and '"runs":0' in opened[("gc", "--json")][1]


def test_a_home_with_runs_still_shows_them(tmp_path):
    """The listing opens the engine when the home has a database: ps, show
    and logs read it (and an orphan is still marked lost)."""
    (tmp_path / "f.py").write_text("def f():\n    print('hi')\n    return 1\n")
    home = tmp_path / "home"
    code, out, err = cli(home, tmp_path, ["run", "f.py", "--sandbox=none"])
    assert (code, out) == (0, "hi\n1\n"), err
    code, out, _ = cli(home, tmp_path, ["ps"])
    assert code == 0 and "succeeded" in out and "f.py::f" in out, out
    rid = out.splitlines()[1].split()[0]
    assert cli(home, tmp_path, ["logs", rid]) == (0, "hi\n", "")
    assert cli(home, tmp_path, ["show", rid])[1].startswith(f"id:        {rid}\n")


def test_gc_in_a_home_without_a_database_still_collects_its_package_store(tmp_path):
    """`env prepare` fills a package store without opening an engine: a
    home can hold one and no database. gc collects the store's
    unreferenced dirs (past the hour's grace) there and creates no
    database and no run directories."""
    home = tmp_path / "home"
    orphan = home / "store" / ("ab" * 32)
    orphan.mkdir(parents=True)
    (orphan / "mod.py").write_text("x = 1\n" * 100)
    old = 1_000_000_000
    os.utime(orphan / "mod.py", (old, old))
    os.utime(orphan, (old, old))
    code, out, err = cli(home, tmp_path, ["gc", "--json"])
    assert code == 0, err
    assert int(re.search(r'"package_bytes":([0-9]+)', out)[1]) > 0, out
    # The removal took the dir's wheel lock (cache/locks/, the store's
    # locking with installers: docs/packages.md); nothing else is made.
    assert sorted(p.name for p in home.iterdir()) == ["cache", "store"]
    assert sorted(p.name for p in (home / "cache").iterdir()) == ["locks"]
    assert list((home / "store").iterdir()) == []
