"""Environment and record lifetime, second pass (after test_explore_gc.py):
what a collection or a prune keeps and how it reports it."""
import json
import re

import pytest

from conftest import CLI, WORKER
from test_explore_gc import NOSANDBOX, write_fn

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")


def test_gc_and_env_prune_spell_sizes_alike(cli, home):
    """`pysprinter gc` said `freed 0 B` and `env prune` `freed 0B` (and
    `4.9 KiB` against `4.9K`): two formatters for one quantity. Every
    report now spells a size one way."""
    p = cli("env", "prune")
    assert (p.returncode, p.stdout) == (0, "removed 0 environments, freed 0 B\n"), p
    cli.write("loud.py", "def f():\n    print('x' * 5000)\n    return 1\n")
    cli("run", NOSANDBOX, "loud.py", check=0)
    p = cli("gc", "--max-log-bytes", "1", "--dry-run")
    sizes = re.findall(r"\(\d+ logs, ([^)]*)\)", p.stdout)
    assert sizes == ["4.9 KiB"], p.stdout


DAY_US = 86400 * 10**6


def age(home, table, ids, days=40):
    import sqlite3
    db = sqlite3.connect(home / "pysprinter.db")
    with db:
        for i in ids:
            db.execute(f"UPDATE {table} SET created = created - ? WHERE id = ?", (days * DAY_US, i))
    db.close()


def test_a_kept_dag_runs_memoised_task_keeps_the_run_it_shows(cli, home):
    """A memo hit makes a new DAG run's task name the run an older DAG run
    made. The age rule removed the older DAG run with that run and its log
    while the newer DAG run was kept: `dag logs NEW a` lost the output
    (and `show` the run). The run now goes with the last DAG run that
    names it."""
    cli.write("hello.py", "def f():\n    print('hello from the first run')\n    return 1\n")
    cli.write("p.yaml", "tasks:\n  a: {file: hello.py::f}\n")
    dag = lambda: json.loads(cli("dag", "run", "p.yaml", "--json", NOSANDBOX, check=0).stdout)  # noqa: E731
    old = dag()
    [rid] = [r["id"] for r in json.loads(cli("ps", "--json", check=0).stdout)]
    age(home, "dag_runs", [old["id"]])
    age(home, "runs", [rid])
    new = dag()
    assert new["tasks"]["a"]["cached"] is True, new
    p = cli("gc")
    assert p.returncode == 0 and ", 1 DAG runs (" in p.stdout, p.stdout
    p = cli("dag", "logs", new["id"], "a")
    assert (p.returncode, p.stdout) == (0, "hello from the first run\n"), p
    assert cli("show", rid).returncode == 0
    # Once the last DAG run naming it goes, so does the run.
    age(home, "dag_runs", [new["id"]])
    p = cli("gc")
    assert p.stdout.startswith("removed 1 runs (1 logs, ") and ", 1 DAG runs (" in p.stdout, p.stdout
    assert json.loads(cli("ps", "--json", check=0).stdout) == []


def test_env_prune_json_prints_an_object(cli, home):
    """`pysprinter --json env prune` (and `env prune --json`) printed the
    sentence meant for a person, where `--json gc` prints an object: a
    script reading the space freed had to parse prose."""
    for args in (("--json", "env", "prune", "--dry-run"), ("env", "prune", "--json")):
        p = cli(*args)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout) == {"dry_run": "--dry-run" in args, "environments": 0, "freed_bytes": 0}, p.stdout


@pytest.mark.parametrize("collector", ["pysprinterd", "pysprinter"])
def test_the_collector_removes_environments_unused_for_env_max_idle_days(cli, home, tmp_path, collector):
    """The collector (`pysprinterd gc`, the daemon's pass) removed store
    dirs no environment named, never an environment: every requirement set
    a host ever ran kept its record and its packages until someone typed
    `env prune`, so the store only grew. `retention.env_max_idle_days`
    (`pysprinter gc --env-max-idle-days`) now removes the environments no process holds that were not used for
    that long (uv's `cache prune`, Docker's `image prune --filter until=`),
    with the packages only they name."""
    import os
    import time
    from test_ops import pysprinterd
    import pkgindex
    ix = pkgindex.Index()
    for n in ("aa", "bb"):
        ix.add(pkgindex.build_wheel(tmp_path / "w", n, "1.0", files={f"{n}/__init__.py": "X = 1\n",
                                                                      f"{n}/data.txt": f"{n} data\n"}))
    ix.start()
    try:
        write_fn(cli, ["aa"])
        assert json.loads(cli("run", NOSANDBOX, "--index-url", ix.url, "f.py", check=0).stdout) == ["aa data"]
        write_fn(cli, ["bb"], "g.py")
        assert json.loads(cli("run", NOSANDBOX, "--index-url", ix.url, "g.py", check=0).stdout) == ["bb data"]
    finally:
        ix.stop()
    envs = {json.loads(cli("env", "ls", "--json", check=0).stdout)[i]["requirements"][0]: i for i in range(2)}
    assert sorted(envs) == ["aa", "bb"], envs
    # aa's environment was last used 10 days ago (its record's mtime), its store dir as old.
    old = time.time() - 10 * 86400
    for rec in (home / "envs").iterdir():
        if '"aa"' in rec.read_text() or "aa-1.0" in rec.read_text():
            os.utime(rec, (old, old))
    for d in (home / "store").iterdir():
        os.utime(d, (old, old))
    if collector == "pysprinterd":
        config = tmp_path / "d.yaml"
        config.write_text("retention:\n  env_max_idle_days: 7\n")
        p = pysprinterd("gc", "--json", "--config", config, "--data-dir", home, home=home)
    else:
        p = cli("--json", "gc", "--env-max-idle-days", "7")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["package_bytes"] > 0, p.stdout
    assert [e["requirements"] for e in json.loads(cli("env", "ls", "--json", check=0).stdout)] == [["bb"]]
