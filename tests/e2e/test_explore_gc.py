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
from proctree import open_fds

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
        assert p.stdout == "removed 0 environments, freed 0 B\n", p.stdout
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


def age_store(home, hours=2):
    old = time.time() - hours * 3600
    for x in (home / "store").iterdir():
        os.utime(x, (old, old))


def test_a_dry_run_counts_the_packages_the_collection_then_frees(cli, index, home):
    """`gc --dry-run` said `unreferenced packages: not counted in a dry
    run` and `would free 0 B`, and the collection right after freed the
    package store's garbage: the one figure a user looks at to decide was
    wrong. It now counts them, for `pysprinter gc` and `pysprinterd gc`
    alike, and `env prune --dry-run` says what `env prune` does."""
    from test_ops import pysprinterd
    write_fn(cli, ["aa"])
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["aa data"]
    [aa] = store_dirs(home)
    write_fn(cli, ["bb"], "g.py")
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "g.py", check=0).stdout) == ["bb data"]
    # aa's environment goes (as a user may delete a record): its dir is garbage.
    for rec in (home / "envs").iterdir():
        if aa in rec.read_text():
            rec.unlink()
    age_store(home)
    dry = json.loads(cli("--json", "gc", "--dry-run", check=0).stdout)
    d2 = pysprinterd("gc", "--json", "--dry-run", "--data-dir", home, home=home)
    assert d2.returncode == 0, d2.stderr
    assert json.loads(d2.stdout)["package_bytes"] == dry["package_bytes"] > 0, (dry, d2.stdout)
    text = cli("gc", "--dry-run", check=0).stdout
    assert "unreferenced packages: not counted" not in text and "would free 0 B" not in text, text
    assert len(store_dirs(home)) == 2
    real = json.loads(cli("--json", "gc", check=0).stdout)
    assert real["package_bytes"] == dry["package_bytes"], (dry, real)
    assert len(store_dirs(home)) == 1
    # env prune: the dry run's line is the real one's, with nothing removed.
    dry = cli("env", "prune", "--dry-run", check=0).stdout
    assert len(store_dirs(home)) == 1 and len(list((home / "envs").iterdir())) == 1
    real = cli("env", "prune", check=0).stdout
    assert dry.replace("would remove", "removed").replace("would free", "freed") == real, (dry, real)
    assert real.startswith("removed 1 environment, freed ") and store_dirs(home) == []


def test_a_run_that_waited_on_a_record_prune_removed_records_its_env_again(cli, index, home, tmp_path):
    """A run opening its environment's record waits for its shared lock
    while a prune holds the record exclusively; the prune then unlinks it
    and removes its store dirs. The run went on with the unlinked record:
    it installed the dirs again and used them, while no record named them —
    `env ls` showed no environment in use, and the next prune past the
    grace hour removed them under the running function
    (FileNotFoundError). A record found unlinked once locked is now a miss:
    the run resolves again and records the environment it uses."""
    import fcntl
    write_fn(cli, ["aa"])
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["aa data"]
    [rec] = list((home / "envs").iterdir())
    go = tmp_path / "go"
    # What a prune does, one step at a time: lock, (the run waits), unlink, remove.
    held = open(rec)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        a = start(cli, "run", NOSANDBOX, "--index-url", index.url, "f.py", "--wait", go)
        wait_for(lambda: any(str(rec) in t for t in open_fds(a.pid).values()), "the run to open the record")
        rec.unlink()
        for x in (home / "store").iterdir():
            subprocess.run(["chmod", "-R", "u+w", str(x)], check=True)
            subprocess.run(["rm", "-rf", str(x)], check=True)
    finally:
        held.close()
    try:
        wait_for(lambda: env_in_use(cli) == [True], "the run to hold a recorded environment", timeout=20)
        age_store(home)
        cli("env", "prune", check=0)
    finally:
        go.touch()
        out, err = a.communicate(timeout=60)
    assert (a.returncode, json.loads(out or "null")) == (0, ["aa data"]), err


def test_the_packages_area_of_the_disk_metrics_counts_the_cached_wheels(tmp_path):
    """`pysprinter_disk_bytes{area="packages"}` counted `store/` alone;
    the wheels kept in `cache/wheels/` (a cluster node keeps every wheel it
    installed for its peers; a resolve against an index without PEP 658
    leaves those it read for their metadata) were in no area, though the
    collector's `pysprinter_gc_last_freed_bytes{area="packages"}` counts
    them when it removes them: the areas did not add up to what `du`
    shows."""
    from daemonlib import Daemon, metrics
    d = Daemon(tmp_path / "d")
    wheels = d.home / "cache" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / ("ab" * 32 + ".whl")).write_bytes(os.urandom(3 << 20))
    with d.serving():
        key = 'pysprinter_disk_bytes{area="packages"}'
        wait_for(lambda: key in metrics(d), "the first usage snapshot", timeout=30)
        assert metrics(d)[key] >= 3 << 20, metrics(d)


def test_prune_removes_the_lock_files_and_record_temps_installs_leave(cli, index, home):
    """Each wheel ever installed left its lock file in `cache/locks/` (and a
    record write cut by a kill its `envs/KEY.json.tmp.PID.TID`) for good:
    neither `env prune` nor `gc` removed them, so a long-lived store kept an
    inode per wheel it had ever seen. Past the grace hour, one no installer
    holds now goes."""
    write_fn(cli, ["aa", "bb"])
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["aa data", "bb data"]
    locks = home / "cache" / "locks"
    assert len(os.listdir(locks)) == 2
    [rec] = list((home / "envs").iterdir())
    tmp = home / "envs" / (rec.name + ".tmp.4242.4242")
    tmp.write_text(rec.read_text()[:10])
    young = locks / ("cd" * 32)
    young.touch()  # an installer's, just made: stays
    old = time.time() - 2 * 3600
    for x in [*locks.iterdir(), tmp]:
        if x != young:
            os.utime(x, (old, old))
    cli("gc", check=0)
    assert os.listdir(locks) == [young.name]
    assert [x.name for x in (home / "envs").iterdir()] == [rec.name]
    # The environment itself stays, and still runs.
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["aa data", "bb data"]


def test_byte_options_take_a_bare_number_as_bytes(cli, index, home):
    """`gc --max-log-bytes 4000` took 4000 as MiB (a bare size is MiB for
    `--memory`), so a 4 KB log budget kept 4 GB of logs and nothing was
    collected; `--max-log-bytes 0` and `env prune --budget 0` (the
    documented default) were refused as `invalid size '0'`, and `env prune
    --budget 1000000000` (1 GB) as out of range. A bare number is now
    bytes, as the options' names say."""
    cli.write("loud.py", "def f():\n    print('x' * 3000)\n    return 1\n")
    for _ in range(2):
        cli("run", NOSANDBOX, "loud.py", check=0)
    ids = lambda: [r["id"] for r in json.loads(cli("ps", "--json", check=0).stdout)]  # noqa: E731
    newest = ids()[0]
    assert len(ids()) == 2
    p = cli("gc", "--max-log-bytes", "0", check=0)
    assert p.stdout.startswith("removed 0 runs"), p.stdout
    p = cli("gc", "--max-log-bytes", "4000", check=0)
    assert p.stdout.startswith("removed 1 runs (1 logs, "), p.stdout
    assert ids() == [newest]
    write_fn(cli, ["aa"])
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["aa data"]
    assert cli("env", "prune", "--budget", "1000000000", check=0).stdout == "removed 0 environments, freed 0 B\n"
    assert cli("env", "prune", "--budget=0", check=0).stdout.startswith("removed 1 environment, freed ")


def test_gc_removes_the_logs_of_runs_the_store_no_longer_has(cli, home):
    """A collection deletes a run's row, then its log file: killed in
    between (a daemon's kill -9 mid-collection) it left the log for good —
    no pass went by files, and the disk metrics count logs by run. Logs
    whose run is gone, untouched for the grace hour, now go, counted
    among the logs removed, by a dry run too."""
    cli.write("loud.py", "def f():\n    print('x' * 3000)\n    return 1\n")
    cli("run", NOSANDBOX, "loud.py", check=0)
    logs = home / "logs"
    [mine] = list(logs.iterdir())
    orphan = logs / "rorphanedrun00001.log"
    orphan.write_text("y" * 5000)
    young = logs / "rorphanedrun00002.log"
    young.write_text("z")
    old = time.time() - 2 * 3600
    for x in (orphan, mine):
        os.utime(x, (old, old))
    dry = json.loads(cli("--json", "gc", "--dry-run", check=0).stdout)
    assert (dry["runs"], dry["logs"], dry["log_bytes"]) == (0, 1, 5000), dry
    p = cli("gc", check=0)
    assert p.stdout.startswith("removed 0 runs (1 logs, 4.9 KiB)"), p.stdout
    assert sorted(x.name for x in logs.iterdir()) == sorted([mine.name, young.name])


def test_gc_options_take_name_equals_value_and_say_a_missing_value(cli, home):
    """`gc --max-age-days=0` was `unknown option '--max-age-days=0'` (every
    other verb, `env prune --budget=` too, takes --NAME=VALUE), and an
    option given without its value, `gc --max-age-days` or `env prune
    --budget`, said `unknown option` of an option the help lists."""
    p = cli("gc", "--max-age-days=0", "--max-log-bytes=1G", "--dry-run")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert p.stdout.startswith("would remove 0 runs"), p.stdout
    for args, name in ((("gc", "--max-age-days"), "--max-age-days"), (("gc", "--dry-run", "--max-log-bytes"),
                       "--max-log-bytes"), (("env", "prune", "--budget"), "--budget")):
        p = cli(*args)
        assert p.returncode == 2 and p.stderr.startswith(f"pysprinter: {name} needs a value\n"), (args, p.stderr)
    assert not (home / "pysprinter.db").exists()


def test_a_declared_package_that_cannot_be_imported_is_not_told_to_be_declared(cli, home, tmp_path):
    """A module missing from a package the function declares (a wheel that
    names its module otherwise, or its store dir damaged) got the hint
    `to install it, declare it: @requirements({'ee': ''})` — what the user
    had written. The note now says it is declared and what may be wrong."""
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(tmp_path / "w", "ee", "1.0", files={"eex/__init__.py": ""}))
    ix.start()
    try:
        cli.write("e.py", "@requirements({'ee': ''})\ndef f():\n    import ee\n    return 1\n")
        p = cli("run", NOSANDBOX, "--index-url", ix.url, "e.py")
    finally:
        ix.stop()
    assert p.returncode == 1 and "ModuleNotFoundError: No module named 'ee'" in p.stderr, p.stderr
    assert "declare it" not in p.stderr, p.stderr
    assert "pysprinter: 'ee' is declared in @requirements, but no module ee was installed with it" in p.stderr
