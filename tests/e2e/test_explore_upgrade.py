"""Upgrades and version skew, as an operator who has run pysprinter for
months sees them: state an OLDER release made (a data directory, a home, a
cluster's Redis) read by this build, an older CLI against this daemon and
the other way round, a cluster with one node of each, and a data directory
a NEWER release upgraded opened by this one (a downgrade).

The older release is built from the git history, once per session
(old_build), into a directory keyed by its commit, so a second session
reuses it: PYSPRINTER_OLD_BUILDS names where (default
/tmp/pysprinter-old-builds-UID). Without the history (a tarball, a shallow
clone) these tests skip and say so."""
import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

import pkgindex
from clusterlib import REDIS, Redis
from conftest import BUILD, CLI, DAEMON, ROOT, WORKER, Runner
from daemonlib import TOKENS, Daemon, sandbox_mode, wait_for

# The release of 2026-12-03 (schema 19): before the stream entry carried the
# run (round 26), the ended record in the gateway's end message, the env key
# computed in one pass, the deployed version's signature and doc (schema 20)
# and the dataset numbers that are never given again.
OLD_COMMIT = "1faf28a"
OLD_TARGETS = ("src/cli/pysprinter", "src/daemon/pysprinterd", "src/worker/pysprinter-worker",
               "src/worker/pysprinter-worker-sandbox")
TERMINAL = ["succeeded", "failed", "lost", "error", "cancelled", "killed", "invalid", "deps_failed"]


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def _build_old(full, out):
    """The release at commit full, built into out/build (its binaries only)."""
    if out.exists():
        shutil.rmtree(out)
    src = out / "src"
    src.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", full], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True)
    assert archive.wait() == 0
    # The dashboard's vendored modules come from npm, not from git.
    (src / "ui" / "node_modules").symlink_to(ROOT / "ui" / "node_modules")
    log = out / "build.log"
    with open(log, "w") as f:
        r = subprocess.run(["meson", "setup", str(out / "build"), str(src), "-Dtests=false"], stdout=f,
                           stderr=subprocess.STDOUT)
        if r.returncode == 0:
            known = subprocess.run(["ninja", "-C", str(out / "build"), "-t", "targets", "all"], capture_output=True,
                                   text=True).stdout
            targets = [t for t in OLD_TARGETS if f"\n{t}:" in "\n" + known]
            r = subprocess.run(["ninja", "-C", str(out / "build"), *targets], stdout=f, stderr=subprocess.STDOUT)
    assert r.returncode == 0, f"building {OLD_COMMIT} failed:\n{log.read_text()[-4000:]}"


@pytest.fixture(scope="session")
def old_build():
    """The build directory of the older release (OLD_COMMIT)."""
    if not shutil.which("git") or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout: the older release cannot be built")
    r = _git("rev-parse", "--verify", "--quiet", OLD_COMMIT + "^{commit}")
    if r.returncode != 0:
        pytest.skip(f"commit {OLD_COMMIT} is not in the git history here (a shallow clone?): "
                    "the older release cannot be built")
    if not (ROOT / "ui" / "node_modules").is_dir():
        pytest.skip("ui/node_modules is missing (make deps): the older release's daemon cannot be built")
    full = r.stdout.strip()
    cache = pathlib.Path(os.environ.get("PYSPRINTER_OLD_BUILDS", f"/tmp/pysprinter-old-builds-{os.getuid()}"))
    cache.mkdir(parents=True, exist_ok=True)
    out, done = cache / full, cache / f"{full}.ok"
    with open(cache / f"{full}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it
        if not done.exists():
            _build_old(full, out)
            done.touch()
    return out / "build"


def old_cli(build, env, cwd):
    """A Runner of the older release's CLI (with its own worker)."""
    return Runner(dict(env, PYSPRINTER_WORKER=str(build / "src" / "worker" / "pysprinter-worker")), cwd,
                  exe=build / "src" / "cli" / "pysprinter")


def schema_of(db):
    with contextlib.closing(sqlite3.connect(db)) as c:
        return c.execute("PRAGMA user_version").fetchone()[0]


def processes_of(build):
    """The processes running a binary of build (none may outlive a test)."""
    found = []
    for pid in (n for n in os.listdir("/proc") if n.isdigit()):
        try:
            c = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if c.startswith(str(build).encode() + b"/"):
            found.append((pid, c.replace(b"\0", b" ").decode(errors="replace")))
    return found


# ---- a data directory a newer release upgraded (downgrade) -------------------

def newer_home(cli):
    """A home this build made, then upgraded by a (pretend) newer release:
    its schema one past what this build knows. -> (home, this build's
    schema, the newer one)."""
    cli.write("one.py", "def f():\n    print('one')\n    return 1\n")
    cli("run", "--sandbox=none", "one.py", check=0)
    home = pathlib.Path(cli.env["PYSPRINTER_HOME"])
    ours = schema_of(home / "pysprinter.db")
    with contextlib.closing(sqlite3.connect(home / "pysprinter.db")) as c:
        c.execute(f"PRAGMA user_version = {ours + 1}")
        c.commit()
    return home, ours, ours + 1


def test_a_newer_data_dir_is_refused_naming_both_versions_by_every_command(cli, tmp_path):
    """docs/operations.md: a binary refuses a database whose schema is
    newer than it knows, "with a message naming both versions". The CLI and
    a daemon's start named only their own ("newer than this pysprinter
    knows (version 20)": which is 20?), `pysprinterd gc` neither, and
    `pysprinterd token ls|create|revoke` said "cannot open …: Protocol not
    supported" (the errno's text)."""
    home, ours, newer = newer_home(cli)
    config = tmp_path / "d.yaml"
    config.write_text("tokens: []\n")
    denv = dict(cli.env)
    cmds = [[CLI, "ps"], [CLI, "run", "--sandbox=none", "one.py"], [CLI, "secret", "ls"],
            [DAEMON, "gc", "--data-dir", home, "--config", config],
            [DAEMON, "token", "ls", "--data-dir", home, "--config", config],
            [DAEMON, "token", "create", "--tenant", "alice", "--data-dir", home, "--config", config],
            [DAEMON, "--listen", "127.0.0.1:0", "--data-dir", home, "--config", config, "--sandbox=none"]]
    for cmd in cmds:
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=denv, cwd=cli.cwd, timeout=60)
        what = f"{pathlib.Path(cmd[0]).name} {cmd[1]}"
        assert p.returncode == 7, (what, p.returncode, p.stderr)
        assert f"schema is version {newer}, newer than this pysprinter knows ({ours})" in p.stderr, (what, p.stderr)
        assert "Protocol not supported" not in p.stderr, (what, p.stderr)
    assert schema_of(home / "pysprinter.db") == newer


def index_with(tmp_path, name="uppkg", version="1.0"):
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    index = pkgindex.Index()
    index.add(pkgindex.build_wheel(wheels, name, version,
                                   files={f"{name}/__init__.py": f"VALUE = '{version}'\n"}))
    index.start()
    return index


PKG_SRC = "@requirements({'uppkg': '==1.0'})\ndef f(x: int = 1):\n    import uppkg\n    return [uppkg.VALUE, x]\n"


def age(paths, seconds):
    """Makes paths look untouched for seconds (gc's grace period is an hour)."""
    t = time.time() - seconds
    for p in paths:
        os.utime(p, (t, t), follow_symlinks=False)


def test_env_prune_keeps_the_packages_of_an_env_record_it_cannot_read(cli, tmp_path):
    """A downgrade (or a damaged record): `pysprinter env prune` and `gc`
    skipped an environment record they could not read (a newer release's
    "version": 2, say) and then took every store dir and cached wheel only
    that record names for garbage: the newer release's environment lost its
    packages, even while a process of it held the record (in use). They
    are kept now; a run of the same requirements by this build works."""
    index = index_with(tmp_path)
    try:
        cli.env["PIP_INDEX_URL"] = index.url
        cli.write("p.py", PKG_SRC)
        assert json.loads(cli("run", "--sandbox=none", "--json", "p.py", check=0).stdout) == ["1.0", 1]
        home = pathlib.Path(cli.env["PYSPRINTER_HOME"])
        (record,) = (home / "envs").glob("*.json")
        rec = json.loads(record.read_text())
        dirs = [home / "store" / p["sha256"] for p in rec["packages"]]
        wheels = list((home / "cache" / "wheels").glob("*.whl"))
        assert dirs and all(d.is_dir() for d in dirs)
        # What a newer release might write: a format this build does not know.
        record.write_text(json.dumps(dict(rec, version=2, layout="next")))
        age([record, *dirs, *wheels, *(p for d in dirs for p in d.rglob("*"))], 7200)
        with open(record) as held:
            fcntl.flock(held, fcntl.LOCK_SH)  # a process of that release uses it
            for verb in (["env", "prune"], ["gc"]):
                p = cli(*verb, check=0)
                assert all(d.is_dir() for d in dirs), (verb, p.stdout, p.stderr)
                assert all(w.exists() for w in wheels), (verb, p.stdout, p.stderr)
        assert record.exists()
        assert json.loads(cli("run", "--sandbox=none", "--json", "p.py", check=0).stdout) == ["1.0", 1]
    finally:
        index.stop()
