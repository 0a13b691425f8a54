"""Storage lifetime: the package store, its environments and their
collection (`env prune`, `pysprinter gc`, the daemon's collector) never
remove what a process uses, and never leave the store half made."""
import json
import os
import pathlib
import subprocess
import time

import pytest

from conftest import CLI, WORKER
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")

NOSANDBOX = "--sandbox=none"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    w = tmp_path_factory.mktemp("wheels")
    ix = pkgindex.Index()
    for n in ("aa", "bb", "cc"):
        ix.add(pkgindex.build_wheel(w, n, "1.0", files={f"{n}/__init__.py": "X = 1\n",
                                                        f"{n}/data.txt": f"{n} data\n"}))
    ix.start()
    yield ix
    ix.stop()


# The function waits for a file to appear (when given one), then reads a
# data file of each package it needs: what a run does with its packages
# after it started.
SOURCE = """
@requirements({reqs!r})
def f(wait: str = ""):
    import importlib, os, time
    if wait:
        while not os.path.exists(wait):
            time.sleep(0.02)
    out = []
    for name in {names!r}:
        m = importlib.import_module(name)
        out.append(open(os.path.join(os.path.dirname(m.__file__), "data.txt")).read().strip())
    return out
"""


def write_fn(cli, names, name="f.py"):
    return cli.write(name, SOURCE.format(reqs={n: "" for n in names}, names=list(names)))


def start(cli, *args):
    """A CLI in the background (its output: .communicate())."""
    return subprocess.Popen([str(CLI), *map(str, args)], cwd=cli.cwd, env=cli.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def env_in_use(cli):
    return [e["in_use"] for e in json.loads(cli("env", "ls", "--json", check=0).stdout)]


def test_prune_keeps_an_env_a_run_holds_after_its_record_was_written_again(cli, index, tmp_path):
    """A run holds its environment's record (a shared flock) for its life;
    `run --no-cache` of the same requirements (or a second process
    resolving the set at the same time as the first) wrote the record
    again, as a new file: the first run's lock stayed on the old one, `env
    ls` said the environment was not in use and `env prune` removed its
    store dirs under the running function (FileNotFoundError)."""
    f = write_fn(cli, ["aa"])
    go = tmp_path / "go"
    a = start(cli, "run", NOSANDBOX, "--index-url", index.url, f, "--wait", go)
    try:
        wait_for(lambda: env_in_use(cli) == [True], "the run to hold its environment")
        cli("run", NOSANDBOX, "--index-url", index.url, "--no-cache", f, check=0)
        assert env_in_use(cli) == [True]
        p = cli("env", "prune", check=0)
        assert p.stdout == "removed 0 environments, freed 0B\n", p.stdout
    finally:
        go.touch()
        out, err = a.communicate(timeout=60)
    assert (a.returncode, json.loads(out)) == (0, ["aa data"]), err
    # Once the run is gone, nothing holds either record: both go.
    assert env_in_use(cli) == [False]
    p = cli("env", "prune", check=0)
    assert p.stdout.startswith("removed 1 environment, freed "), p.stdout
    envs = cli.env["PYSPRINTER_HOME"] + "/envs"
    assert os.listdir(envs) == []
    assert [x for x in os.listdir(cli.env["PYSPRINTER_HOME"] + "/store") if not x.startswith(".")] == []


def store_dirs(home):
    return sorted(x for x in os.listdir(home / "store") if not x.startswith("."))


def test_a_prune_cut_short_leaves_no_half_removed_package_in_the_store(cli, index, home):
    """Prune removed a store dir in place, file by file: cut short (killed,
    or a file it could not remove) it left `store/<sha256>/` half empty,
    and the store took it for installed: the next run of those
    requirements imported from it and failed (ModuleNotFoundError) for
    good. The dir is now moved aside (`store/.gc-…`) before it is emptied,
    so the next run installs the package again, and the next prune
    finishes removing what is left."""
    write_fn(cli, ["cc"])
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["cc data"]
    [cc] = store_dirs(home)
    # A file prune cannot remove stands for a prune killed midway.
    stuck = home / "store" / cc / "cc-1.0.dist-info" / "METADATA"
    r = subprocess.run(["chattr", "+i", str(stuck)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {r.stderr.strip()}")
    try:
        cli("env", "prune", check=0)
        p = cli("run", NOSANDBOX, "--index-url", index.url, "f.py")
        assert (p.returncode, p.stdout) == (0, '["cc data"]\n'), p.stderr
        assert store_dirs(home) == [cc]
    finally:
        for s in (home / "store").glob("*/cc-1.0.dist-info/METADATA"):
            subprocess.run(["chattr", "-i", str(s)], check=False)
    cli("env", "prune", check=0)
    assert os.listdir(home / "store") == []
