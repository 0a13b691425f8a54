"""A deployed version runs the lock it was deployed with, as on Lambda
(layers, images) or Modal: its dependencies are fixed at deploy time, and
only a new deploy picks up new packages (docs/api.md "POST /v1/functions").

Each test serves a local index with tinypkg 1.0, deploys a function that
asks for tinypkg>=1.0, then publishes tinypkg 2.0. Before the fix the
version's environment was a cache entry: once `env prune` (or the GC)
removed it, the next invoke resolved again and ran 2.0."""
import json
import shutil
import sqlite3

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")

SOURCE = "def f():\n    import tinypkg\n    return tinypkg.V\n"
REQS = {"tinypkg": ">=1.0"}


def wheel(ix, tmp_path, version):
    import pkgindex
    w = tmp_path / f"w{version}"
    w.mkdir(exist_ok=True)
    return ix.add(pkgindex.build_wheel(w, "tinypkg", version, files={"tinypkg/__init__.py": f"V = {version!r}\n"}))


@pytest.fixture
def index(tmp_path):
    import pkgindex
    ix = pkgindex.Index()
    wheel(ix, tmp_path, "1.0")
    ix.start()
    yield ix
    ix.stop()


@pytest.fixture
def daemon(tmp_path, index):
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {index.url}\n")
    d.start()
    yield d
    d.stop()


def deploy(d, **fields):
    st, b = d.call("POST", "/v1/functions", {"name": "pinned", "source": SOURCE, "requirements": REQS, **fields})
    assert st == 201, (st, b)
    return b


def invoke(d, version=None):
    body = {"version": version} if version else {}
    st, b = d.call("POST", "/v1/functions/pinned/invoke?wait=true", body)
    assert st == 200, (st, b)
    return b


def value(b):
    assert b["status"] == "succeeded", b
    return b["result"]


def packages(fn):
    lock = fn.get("lock")
    assert isinstance(lock, dict), fn
    return {p["name"]: p["version"] for p in lock["packages"]}


def restart_without_envs(d):
    """The daemon restarted with its environments gone, as `env prune`
    leaves a store nobody holds (the reproduction's steps)."""
    d.stop()
    p = Runner(d)("env", "prune")
    assert p.returncode == 0, p.stderr
    d.start()


def Runner(d):
    from conftest import Runner as R
    return R(d.env(), d.root)


def test_a_version_runs_its_deploy_lock_after_restart_and_prune(daemon, index, tmp_path):
    b = deploy(daemon)
    assert packages(b) == {"tinypkg": "1.0"}, b
    assert value(invoke(daemon)) == "1.0"
    wheel(index, tmp_path, "2.0")
    restart_without_envs(daemon)
    assert value(invoke(daemon)) == "1.0"
    # Warm now: still the same.
    assert value(invoke(daemon)) == "1.0"
    st, fn = daemon.call("GET", "/v1/functions/pinned")
    assert st == 200 and packages(fn) == {"tinypkg": "1.0"}, fn
    # `functions show` prints the pinned packages.
    p = Runner(daemon)("functions", "show", "pinned", "--server", daemon.url,
                       env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert packages(shown) == {"tinypkg": "1.0"}, shown


def test_a_version_whose_file_declares_its_requirements_is_pinned_too(daemon, index, tmp_path):
    """@requirements in the file rather than beside it: the same rule."""
    src = f"from pysprinter import requirements\n\n@requirements({REQS!r})\n" + SOURCE
    st, b = daemon.call("POST", "/v1/functions", {"name": "pinned", "source": src})
    assert st == 201 and packages(b) == {"tinypkg": "1.0"}, (st, b)
    wheel(index, tmp_path, "2.0")
    restart_without_envs(daemon)
    assert value(invoke(daemon)) == "1.0"


def test_a_new_deploy_picks_up_the_new_package_and_the_old_version_keeps_its_own(daemon, index, tmp_path):
    deploy(daemon)
    assert value(invoke(daemon)) == "1.0"
    wheel(index, tmp_path, "2.0")
    b = deploy(daemon)
    assert b["version"] == 2 and packages(b) == {"tinypkg": "2.0"}, b
    assert value(invoke(daemon)) == "2.0"
    assert value(invoke(daemon, 1)) == "1.0"
    restart_without_envs(daemon)
    assert value(invoke(daemon, 1)) == "1.0"
    assert value(invoke(daemon, 2)) == "2.0"


def test_a_locked_wheel_gone_from_index_and_store_fails_the_invoke_naming_it(daemon, index, tmp_path):
    deploy(daemon)
    assert value(invoke(daemon)) == "1.0"
    index.files = [f for f in index.files if "1.0" not in f.filename]
    wheel(index, tmp_path, "2.0")
    daemon.stop()
    for sub in ("store", "envs", "cache"):
        shutil.rmtree(daemon.home / sub, ignore_errors=True)
    daemon.start()
    b = invoke(daemon)
    assert b["status"] != "succeeded", b
    msg = json.dumps(b)
    assert b["error"]["type"] == "DependencyError", b
    assert "tinypkg 1.0 (tinypkg-1.0-py3-none-any.whl) is in neither the store nor the index" in msg, b
    assert "deploy it again" in msg and "2.0" not in b["error"]["message"], b


def test_a_deploy_that_cannot_resolve_fails(daemon):
    st, b = daemon.call("POST", "/v1/functions", {"name": "nope", "source": SOURCE,
                                                  "requirements": {"tinypkg": ">=5"}})
    assert st == 422, (st, b)
    assert "tinypkg" in b["error"]["message"], b


def test_a_stack_deploy_pins_its_functions_lock(daemon, tmp_path):
    r = Runner(daemon)
    r.cwd = tmp_path
    r.write("fns/f.py", SOURCE)
    r.write("stack.yaml", "functions:\n  pinned:\n    file: fns/f.py\n    requirements: {tinypkg: '>=1.0'}\n")
    p = r("deploy", "-f", "stack.yaml", "--server", daemon.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    assert p.returncode == 0, p.stderr
    st, fn = daemon.call("GET", "/v1/functions/pinned")
    assert st == 200 and packages(fn) == {"tinypkg": "1.0"}, fn
    assert value(invoke(daemon)) == "1.0"


def test_a_version_deployed_before_locks_were_kept_still_runs(daemon, index, tmp_path):
    """A database from before migration 25 (no lock_json column,
    user_version 24): its versions load with a null lock and resolve as
    before, and the column is added."""
    deploy(daemon)
    daemon.stop()
    db = sqlite3.connect(daemon.home / "pysprinter.db")
    db.executescript("DROP TRIGGER runs_search_delete; DROP TRIGGER runs_search_update; DROP TABLE runs_search; DELETE FROM kv WHERE ns='search';"
                     "DROP INDEX runs_schedule; ALTER TABLE functions DROP COLUMN lock_json;"
                     "ALTER TABLE endpoints DROP COLUMN cors_json; PRAGMA user_version=24;")
    db.close()
    daemon.start()
    st, fn = daemon.call("GET", "/v1/functions/pinned")
    assert st == 200 and fn["lock"] is None, fn
    assert value(invoke(daemon)) == "1.0"
    db = sqlite3.connect(daemon.home / "pysprinter.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 29
    db.close()


def test_a_cluster_version_runs_its_deploy_lock_on_a_new_node(tmp_path, index):
    """The Redis function record keeps the lock too: a worker that joins
    after 2.0 was published (a fresh home, nothing cached) runs 1.0."""
    from clusterlib import REDIS
    if not REDIS:
        pytest.skip("redis-server is not installed")
    from clusterlib import Redis
    redis = Redis(tmp_path).start()
    extra = f"index:\n  url: {index.url}\n"
    started = []

    def node(name, role):
        n = Daemon(tmp_path / name, config_extra=extra,
                   args=["--redis", redis.url, "--role", role, "--node-id", name])
        n.start()
        started.append(n)
        return n

    try:
        g = node("g1", "gateway")
        w1 = node("w1", "worker")
        b = deploy(g)
        assert packages(b) == {"tinypkg": "1.0"}, b
        assert value(invoke(g)) == "1.0"
        wheel(index, tmp_path, "2.0")
        w1.stop()
        started.remove(w1)
        node("w2", "worker")
        assert value(invoke(g)) == "1.0"
        st, fn = g.call("GET", "/v1/functions/pinned")
        assert st == 200 and packages(fn) == {"tinypkg": "1.0"}, fn
    finally:
        for n in started:
            n.stop()
        redis.stop()
