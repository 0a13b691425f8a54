"""Environment holds of a long-running daemon: it releases an environment
nothing of it uses any more (so `env prune` and the collector may free it
while the daemon runs), never one a run or a warm worker uses."""
import json
import os
import time

import pytest

from conftest import CLI, DAEMON, WORKER
import pkgindex
from daemonlib import Daemon, sandbox_mode, wait_for
from test_explore_gc import SOURCE

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists() or not DAEMON.exists(),
                                reason="pysprinter/pysprinterd/pysprinter-worker not built")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    w = tmp_path_factory.mktemp("wheels")
    ix = pkgindex.Index()
    for n in ("aa", "bb"):
        ix.add(pkgindex.build_wheel(w, n, "1.0", files={f"{n}/__init__.py": "X = 1\n",
                                                        f"{n}/data.txt": f"{n} data\n"}))
    ix.start()
    yield ix
    ix.stop()


def source(names):
    return SOURCE.format(reqs={n: "" for n in names}, names=list(names))


def daemon(tmp_path, index, pool, sandbox=None):
    """A daemon on the test index whose pool settings are pool (YAML)."""
    d = Daemon(tmp_path / "d", sandbox=sandbox or sandbox_mode(tmp_path),
               config_extra=f"index:\n  url: {index.url}\npool:\n{pool}")
    d.start()
    return d


def home_cli(cli, home):
    """`pysprinter ARGS` on the daemon's data dir (embedded)."""
    def _cli(*args, **kw):
        return cli(*args, env={"PYSPRINTER_HOME": str(home)}, **kw)
    return _cli


def envs(hcli):
    return json.loads(hcli("env", "ls", "--json", check=0).stdout)


def store_dirs(home):
    return sorted(x for x in os.listdir(home / "store") if not x.startswith("."))


def test_an_idle_daemon_releases_its_environment_for_prune(cli, index, tmp_path):
    """A daemon held every environment it had used (a shared flock on its
    record) until it exited: `env prune` and `retention.env_max_idle_days`
    never freed what a long-running daemon had once run. Now, once no run
    and no warm worker uses it for `pool.env_idle_s`, the daemon lets go:
    prune frees it under the live daemon, and the next run of the same
    file installs it again."""
    d = daemon(tmp_path, index, "  worker_idle_s: 1\n  env_idle_s: 1\n")
    hcli = home_cli(cli, d.home)
    try:
        st, out = d.run(source(["aa"]), filename="f.py")
        assert st == 200 and out["status"] == "succeeded" and out["result"] == ["aa data"], out
        assert [e["in_use"] for e in envs(hcli)] == [True]
        wait_for(lambda: [e["in_use"] for e in envs(hcli)] == [False], "the daemon to release the environment")
        p = hcli("env", "prune", check=0)
        assert p.stdout.startswith("removed 1 environment, freed "), p.stdout
        assert envs(hcli) == [] and store_dirs(d.home) == []
        # The daemon remembered the set: it resolves and installs it again.
        st, out = d.run(source(["aa"]), filename="f.py")
        assert st == 200 and out["status"] == "succeeded" and out["result"] == ["aa data"], out
        assert [e["in_use"] for e in envs(hcli)] == [True]
        assert len(store_dirs(d.home)) == 1
    finally:
        d.stop()


def test_a_deployed_functions_pinned_environment_is_released_and_taken_again(cli, index, tmp_path):
    """A deployed version pins its environment at its first invoke (the
    store dirs remembered, no record read): once its instance and worker
    retired and the daemon released the environment, prune freed it, and
    the pin must not hand the next invoke dirs that are gone."""
    d = daemon(tmp_path, index, "  worker_idle_s: 1\n  instance_ttl_s: 1\n  env_idle_s: 1\n")
    hcli = home_cli(cli, d.home)
    try:
        st, out = d.call("POST", "/v1/functions", {"name": "fa", "source": source(["aa"]), "filename": "fa.py"})
        assert st in (200, 201), out
        st, out = d.call("POST", "/v1/functions/fa/invoke?wait=true", {})
        assert st == 200 and out["result"] == ["aa data"], out
        wait_for(lambda: [e["in_use"] for e in envs(hcli)] == [False], "the daemon to release the environment")
        p = hcli("env", "prune", check=0)
        assert p.stdout.startswith("removed 1 environment, freed "), p.stdout
        assert store_dirs(d.home) == []
        st, out = d.call("POST", "/v1/functions/fa/invoke?wait=true", {})
        assert st == 200 and out["status"] == "succeeded" and out["result"] == ["aa data"], out
        assert [e["in_use"] for e in envs(hcli)] == [True]
    finally:
        d.stop()


def test_an_environment_a_run_or_a_warm_worker_uses_stays_held(cli, index, tmp_path):
    """The release never takes an environment a run in flight uses (past
    env_idle_s, its worker busy), nor one a warm worker has on its
    sys.path: prune removes neither while they last."""
    # Unsandboxed: the run waits for a file of the test's.
    d = daemon(tmp_path, index, "  worker_idle_s: 600\n  env_idle_s: 1\n", sandbox="none")
    hcli = home_cli(cli, d.home)
    go = tmp_path / "go"
    try:
        st, out = d.run(source(["bb"]), wait=False, filename="g.py", kwargs={"wait": str(go)})
        assert st in (200, 201, 202), out
        wait_for(lambda: [e["in_use"] for e in envs(hcli)] == [True], "the run to hold its environment")
        # Several of the janitor's ticks past env_idle_s, the run still waiting.
        time.sleep(3)
        p = hcli("env", "prune", check=0)
        assert p.stdout == "removed 0 environments, freed 0 B\n", p.stdout
        go.touch()
        b = d.wait_status(out["id"], ["succeeded", "failed", "error", "killed", "lost"])
        assert b["status"] == "succeeded" and b["result"] == ["bb data"], b
        # Its worker stays warm (worker_idle_s 600): still held.
        time.sleep(3)
        assert [e["in_use"] for e in envs(hcli)] == [True]
        p = hcli("env", "prune", check=0)
        assert p.stdout == "removed 0 environments, freed 0 B\n", p.stdout
    finally:
        go.touch()
        d.stop()
