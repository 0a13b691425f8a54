"""Environment holds of a long-running daemon, and the store's own check:
a daemon releases an environment nothing of it uses any more (so `env
prune` and the collector may free it while the daemon runs), never one a
run or a warm worker uses; `env verify` finds an installed package whose
files were damaged, and `--repair` has the next run install it again."""
import json
import os
import time

import pytest

from conftest import CLI, DAEMON, WORKER
import pkgindex
from daemonlib import Daemon, sandbox_mode, wait_for
from test_explore_gc import NOSANDBOX, SOURCE, write_fn

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
        # Two records of the same packages: the deploy's resolution (keyed
        # by the requirements) and the version's pinned lock (keyed by the
        # lock, docs/packages.md), both released.
        wait_for(lambda: envs(hcli) and not any(e["in_use"] for e in envs(hcli)),
                 "the daemon to release the environment")
        p = hcli("env", "prune", check=0)
        assert p.stdout.startswith("removed 2 environments, freed "), p.stdout
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


# ---- env verify -------------------------------------------------------------

def writable(path):
    """The store is read-only: make path's dir tree writable (a test's damage)."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


def test_env_verify_finds_and_repairs_a_damaged_package(cli, index, home):
    """A file of an installed package deleted or changed in the store
    failed every run of its set with an import error (or read the wrong
    bytes) for ever: nothing checked an installed package. `env verify`
    checks each against its wheel's RECORD (hash and size of every file),
    names the damaged ones (exit 1), and `--repair` removes them so the
    next run installs them again."""
    write_fn(cli, ["aa", "bb"])
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["aa data", "bb data"]
    p = cli("env", "verify", check=0)
    assert (p.returncode, p.stdout) == (0, "checked 2 packages, 0 damaged\n"), p
    (aa,) = [d for d in (home / "store").iterdir() if (d / "aa").is_dir()]
    (bb,) = [d for d in (home / "store").iterdir() if (d / "bb").is_dir()]
    writable(aa)
    (aa / "aa" / "data.txt").write_text("garbage\n")
    writable(bb)
    (bb / "bb" / "__init__.py").unlink()
    p = cli("env", "verify")
    assert p.returncode == 1, p
    assert p.stdout.splitlines() == [
        f"damaged: aa 1.0 ({aa.name[:12]}): aa/data.txt: content does not match RECORD",
        f"damaged: bb 1.0 ({bb.name[:12]}): bb/__init__.py: missing",
        "checked 2 packages, 2 damaged (pysprinter env verify --repair removes them; the next run installs them again)",
    ], p.stdout
    j = json.loads(cli("env", "verify", "--json", check=1).stdout)
    assert j["checked"] == 2 and j["repaired"] == 0, j
    assert [(x["name"], x["version"], x["sha256"], x["problem"]) for x in j["damaged"]] == [
        ("aa", "1.0", aa.name, "aa/data.txt: content does not match RECORD"),
        ("bb", "1.0", bb.name, "bb/__init__.py: missing")]
    p = cli("env", "verify", "--repair", check=0)
    assert p.stdout.splitlines()[-1] == "checked 2 packages, 2 damaged, 2 removed", p.stdout
    assert not aa.exists() and not bb.exists()
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["aa data", "bb data"]
    assert cli("env", "verify", check=0).stdout == "checked 2 packages, 0 damaged\n"


def test_env_verify_rejects_unknown_options(cli, home):
    p = cli("env", "verify", "--fix")
    assert p.returncode == 2 and "unknown option '--fix'" in p.stderr, p
    p = cli("env", "verify")
    assert (p.returncode, p.stdout) == (0, "checked 0 packages, 0 damaged\n"), p
