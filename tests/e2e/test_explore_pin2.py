"""Follow-ups of a deployed version's lock (test_explore_pin.py):

- the lock names absolute wheel URLs: when the operator moves the index
  (config `index.url`) and the store lost the wheel, the same file (same
  filename, same sha256) is fetched from the index configured now, and a
  file of that name with another sha256 is refused, saying so;
- a schema migration that fails says which and why, not "disk full";
- `env ls` tells a version's pinned environment from a resolution;
- an index password in the index URL is never shown with a lock."""
import json
import shutil
import sqlite3
import subprocess

import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")

SOURCE = "def f():\n    import tinypkg\n    return tinypkg.V\n"
REQS = {"tinypkg": ">=1.0"}


def build(tmp_path, sub, version, text=None):
    import pkgindex
    w = tmp_path / sub
    w.mkdir(exist_ok=True)
    return pkgindex.build_wheel(w, "tinypkg", version,
                                files={"tinypkg/__init__.py": text or f"V = {version!r}\n"})


def serve(*wheels):
    import pkgindex
    ix = pkgindex.Index()
    for w in wheels:
        ix.add(w)
    return ix.start()


@pytest.fixture
def index(tmp_path):
    ix = serve(build(tmp_path, "w", "1.0"))
    yield ix
    ix.stop()


def Runner(d):
    from conftest import Runner as R
    return R(d.env(), d.root)


def deploy(d):
    st, b = d.call("POST", "/v1/functions", {"name": "pinned", "source": SOURCE, "requirements": REQS})
    assert st == 201, (st, b)
    return b


def invoke(d):
    st, b = d.call("POST", "/v1/functions/pinned/invoke?wait=true", {})
    assert st == 200, (st, b)
    return b


def move_index(d, url):
    """The daemon restarted on another index with its store emptied (as
    `env prune` leaves it when nothing holds it)."""
    d.stop()
    d.config.write_text(d.config.read_text().replace(d.index_url, url))
    d.index_url = url
    for sub in ("store", "envs", "cache"):
        shutil.rmtree(d.home / sub, ignore_errors=True)
    d.start()


@pytest.fixture
def moved(tmp_path):
    """A daemon that deployed against index A (now stopped) and the wheel
    it locked."""
    wheel = build(tmp_path, "a", "1.0")
    a = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {a.url}\n")
    d.index_url = a.url
    d.start()
    started = [a]
    try:
        lock = deploy(d)["lock"]
        assert [p["version"] for p in lock["packages"]] == ["1.0"], lock
        assert invoke(d)["result"] == "1.0"
        a.stop()
        yield d, wheel, started
    finally:
        d.stop()
        for ix in started:
            ix.stop()


def test_a_moved_index_serving_the_same_wheel_runs_the_version(moved, tmp_path):
    d, wheel, started = moved
    b = serve(wheel)
    started.append(b)
    move_index(d, b.url)
    r = invoke(d)
    assert r["status"] == "succeeded" and r["result"] == "1.0", r
    assert any(p.endswith(".whl") for p in b.requests), b.requests


def test_a_moved_index_serving_another_build_of_the_file_is_refused(moved, tmp_path):
    d, wheel, started = moved
    other = build(tmp_path, "b", "1.0", text="V = 'rebuilt'\n")
    assert other.name == wheel.name and other.read_bytes() != wheel.read_bytes()
    b = serve(other)
    started.append(b)
    # With credentials in the URL: the message names the index, hidden.
    move_index(d, b.url.replace("http://", "http://op:hunter2@"))
    r = invoke(d)
    assert r["status"] != "succeeded", r
    msg = r["error"]["message"]
    assert r["error"]["type"] == "DependencyError", r
    assert "tinypkg-1.0-py3-none-any.whl" in msg and "sha256 mismatch" in msg, msg
    assert "op:****@" in msg and "hunter2" not in json.dumps(r), msg
    assert "rebuilt" not in json.dumps(r)


# ---- a failed migration ------------------------------------------------------

def test_a_failing_migration_says_which_and_why(tmp_path):
    d = Daemon(tmp_path / "d")
    d.start()
    d.stop()
    db = sqlite3.connect(d.home / "pysprinter.db")
    # Schema 24 on paper, yet functions.lock_json is there: migration 25
    # (ADD COLUMN lock_json) fails with "duplicate column name".
    db.execute("PRAGMA user_version=24")
    db.commit()
    db.close()
    want = "could not be upgraded to schema 25: duplicate column name: lock_json"
    p = Runner(d)("ps")
    assert p.returncode != 0, p.stdout
    assert want in p.stderr, p.stderr
    assert "full" not in p.stderr and "Input/output" not in p.stderr, p.stderr
    daemon = subprocess.run([str(d.daemon_bin), "--listen", "127.0.0.1:0", "--config", str(d.config),
                             "--sandbox=none"], env=d.env(), capture_output=True, text=True, timeout=60)
    assert daemon.returncode != 0, daemon.stderr
    assert want in daemon.stderr, daemon.stderr
    assert "full" not in daemon.stderr and "Input/output" not in daemon.stderr, daemon.stderr


# ---- env ls ----------------------------------------------------------------------

def test_env_ls_tells_a_versions_pinned_environment_from_a_resolution(tmp_path, index):
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {index.url}\n")
    d.start()
    try:
        deploy(d)
        assert invoke(d)["result"] == "1.0"
        st, b = d.call("GET", "/v1/envs", token="admin")
        assert st == 200, b
        mine = [e for e in b["envs"] if e["requirements"] == ["tinypkg>=1.0"]]
        assert sorted(e["kind"] for e in mine) == ["pinned", "resolved"], b["envs"]
        r = Runner(d)
        p = r("env", "ls", "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["admin"]})
        assert p.returncode == 0, p.stderr
        lines = [ln for ln in p.stdout.splitlines() if "tinypkg" in ln]
        assert len(lines) == 2, p.stdout
        assert sum("pinned by a deployed version: tinypkg==1.0" in ln for ln in lines) == 1, p.stdout
    finally:
        d.stop()
    # Embedded, the same store reads the same.
    p = Runner(d)("env", "ls", "--json", env={"PYSPRINTER_SERVER": ""})
    assert p.returncode == 0, p.stderr
    kinds = sorted(e["kind"] for e in json.loads(p.stdout) if e["requirements"] == ["tinypkg>=1.0"])
    assert kinds == ["pinned", "resolved"], p.stdout


# ---- no index password with a lock ---------------------------------------------

def test_an_index_password_never_shows_with_a_lock(tmp_path, index):
    url = index.url.replace("http://", "http://op:hunter2@")
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {url}\n")
    d.start()
    try:
        b = deploy(d)
        shown = [json.dumps(b)]
        assert b["lock"]["packages"][0]["url"].startswith("http://op:****@"), b["lock"]
        r = invoke(d)
        assert r["result"] == "1.0", r
        for path in ("/v1/functions/pinned", "/v1/functions/pinned?source=1", "/v1/functions/pinned/runs",
                     f"/v1/runs/{r['id']}", f"/v1/runs/{r['id']}/lock", f"/v1/runs/{r['id']}/logs?events=1",
                     "/v1/envs", "/v1/workers",
                     "/2015-03-31/functions/pinned", "/2015-03-31/functions/pinned/configuration"):
            st, _, body = d.request("GET", path, token="admin" if path == "/v1/envs" else "alice")
            assert st == 200, (path, st, body)
            shown.append(f"{path} {body.decode()}")
        run_lock = next(t for t in shown if t.startswith(f"/v1/runs/{r['id']}/lock "))
        assert "op:****@" in run_lock, run_lock
        p = Runner(d)("functions", "show", "pinned", "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        assert p.returncode == 0 and "op:****@" in p.stdout, (p.stdout, p.stderr)
        shown.append(p.stdout + p.stderr)
        p = Runner(d)("show", r["id"], "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        shown.append(p.stdout + p.stderr)
    finally:
        d.stop()
    text = "\n".join(str(s) for s in shown)
    assert "hunter2" not in text, text
