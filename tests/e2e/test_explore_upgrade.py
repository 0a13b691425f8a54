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
import io
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import tarfile
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


# ---- a single node's data directory, from the older release to this one ----

FN = "def handler(x: int = 1):\n    '''Twice x.'''\n    print('handling', x)\n    return x * 2\n"
SLEEP = "import time\ndef f(tag: str = ''):\n    print('began', tag, flush=True)\n    time.sleep(4)\n    return tag\n"
PIPE = "tasks:\n  a:\n    file: s.py\n    args: [1]\n  b:\n    file: s.py\n    args: ['${a}']\n"
PIPE_FILES = {"s.py": "def f(x: int = 0):\n    return x + 1\n"}
SLOW_STEP = "import time\ndef f(x: int = 0):\n    time.sleep(2)\n    return x + 1\n"


def test_a_daemons_data_dir_upgrades_with_everything_it_held(old_build, tmp_path):
    """The older pysprinterd served a data directory (runs that succeeded
    and failed with their logs, a deployed function kept warm, a function
    using a secret, an environment with a package, a dataset, a DAG run, a
    schedule, a token made by `pysprinterd token create`) and was stopped
    with runs in flight (SIGTERM, then kill -9 past its drain). This build,
    on the same directory: every run listed with its result and log, the
    runs in flight end, the functions invoke, the secret decrypts, the
    environment is reused (nothing fetched), the DAG's results are cached,
    the schedule fires, the token works; nothing to repair by hand."""
    from test_schedules import ClockDaemon
    index = index_with(tmp_path)
    mode = sandbox_mode(tmp_path)
    cfg = f"index:\n  url: {index.url}\n"
    old = ClockDaemon(tmp_path / "d", sandbox=mode, build=old_build, config_extra=cfg)
    try:
        old.start()
        assert old.call("POST", "/v1/functions", {"name": "dbl", "source": FN, "filename": "dbl.py"})[0] == 201
        st, inv = old.call("POST", "/v1/functions/dbl/invoke?wait=true", {"kwargs": {"x": 3}})
        assert st == 200 and inv["result"] == 6, inv
        assert old.call("PUT", "/v1/secrets/API_KEY", {"value": "s3cret"})[0] == 200
        st, _ = old.call("POST", "/v1/functions", {"name": "sec", "secrets": ["API_KEY"],
                                                   "source": "import os\ndef f():\n    return os.environ['API_KEY']\n"})
        assert st == 201
        st, ok = old.run("def f():\n    print('out line')\n    return {'a': 1}\n")
        st, bad = old.run("def f():\n    raise ValueError('bad')\n")
        st, pkg = old.call("POST", "/v1/runs?wait=true", {"source": PKG_SRC, "filename": "p.py"})
        assert ok["result"] == {"a": 1} and bad["status"] == "failed" and pkg["result"] == ["1.0", 1], (ok, bad, pkg)
        st, _, ds = old.request("PUT", "/v1/data/greet", raw=b"hello data", headers={"Content-Type": "text/plain"})
        assert st == 201, ds
        st, dag = old.call("POST", "/v1/dags?wait=true", {"pipeline": PIPE, "files": PIPE_FILES})
        assert st == 200 and dag["status"] == "succeeded", dag
        st, _ = old.call("POST", "/v1/schedules", {"name": "s5", "function": "dbl", "cron": "*/5 * * * *",
                                                   "kwargs": {"x": 5}})
        assert st == 201
        p = subprocess.run([str(old.daemon_bin), "token", "create", "--tenant", "alice", "--config", str(old.config)],
                           capture_output=True, text=True, env=old.env(), timeout=60)
        assert p.returncode == 0, p.stderr
        token = p.stdout.split()[0]
        # In flight at the stop: one that ends within the drain, one that
        # outlives it (kill -9), and one with retries 0 (lost, as promised).
        st, quick = old.run(SLEEP.replace("4", "1"), wait=False, kwargs={"tag": "quick"})
        st, slow = old.run(SLEEP.replace("4", "600"), wait=False, kwargs={"tag": "slow"})
        st, once = old.run(SLEEP.replace("4", "600"), wait=False, kwargs={"tag": "once"}, retries=0)
        st, flying = old.call("POST", "/v1/dags", {"pipeline": PIPE, "files": {"s.py": SLOW_STEP}})
        assert st == 202, flying
        for r in (slow, once):
            old.wait_status(r["id"], ["running"])
        old.stop(timeout=5)  # SIGTERM; its drain outlasts 5 s, so then kill -9
        # Its workers die of their parent's death (PDEATHSIG) a moment after it.
        wait_for(lambda: not processes_of(old_build), "the older release's processes to end", timeout=60)
        index.requests.clear()

        new = ClockDaemon(tmp_path / "d", sandbox=mode, config_extra=cfg)
        new.start()
        try:
            assert schema_of(new.home / "pysprinter.db") > 19
            st, listed = new.call("GET", "/v1/runs?limit=100")
            by_id = {r["id"]: r for r in listed["runs"]}
            for r in (inv, ok, bad, pkg):
                assert by_id[r["id"]]["status"] == r["status"] and by_id[r["id"]]["result"] == r["result"], r
            assert by_id[bad["id"]]["error"]["type"] == "ValueError"
            st, log = new.call("GET", f"/v1/runs/{ok['id']}/logs")
            assert st == 200 and "out line" in log, log
            assert new.wait_status(quick["id"], TERMINAL)["result"] == "quick"
            assert new.wait_status(once["id"], TERMINAL)["status"] == "lost"
            st, again = new.call("POST", "/v1/functions/dbl/invoke?wait=true", {"kwargs": {"x": 4}})
            assert st == 200 and again["result"] == 8, again
            st, sec = new.call("POST", "/v1/functions/sec/invoke?wait=true", {})
            assert st == 200 and sec["result"] == "s3cret", sec
            st, pkg2 = new.call("POST", "/v1/runs?wait=true", {"source": PKG_SRC, "filename": "p.py"})
            assert st == 200 and pkg2["result"] == ["1.0", 1], pkg2
            assert index.requests == [], "the environment was installed again: " + repr(index.requests)
            st, _, got = new.request("GET", "/v1/data/greet/content")
            assert st == 200 and got == b"hello data", (st, got)
            st, dag2 = new.call("POST", "/v1/dags?wait=true", {"pipeline": PIPE, "files": PIPE_FILES})
            assert st == 200 and [t["cached"] for t in dag2["tasks"]] == [True, True], dag2
            st, _ = new.call("GET", "/v1/runs?limit=1", token=token)
            assert st == 200
            new.set_time("2026-03-01 10:05:00")
            s = new.wait_schedule("s5", lambda s: s["last_run"] is not None)
            assert new.wait_status(s["last_run"]["id"], TERMINAL)["result"] == 10
            # The DAG run in flight is resumed and ends with its results.
            flown = wait_for(lambda: (lambda b: b if b["status"] not in ("running", "validating") else None)(
                new.call("GET", f"/v1/dags/{flying['id']}")[1]), "the DAG run to end", timeout=120)
            assert flown["status"] == "succeeded" and [t["result"] for t in flown["tasks"]] == [2, 3], flown
            # The one that outlived the drain ran again, in full.
            assert new.wait_status(slow["id"], ["running"])["attempt"] == 2
            new.cancel(slow["id"])
        finally:
            assert new.stop() == 0, new.log.read_text()
    finally:
        old.stop()
        index.stop()


# ---- the embedded CLI's home ------------------------------------------------

def test_an_embedded_home_upgrades_and_an_older_cli_refuses_it_after(old_build, cli, tmp_path):
    """The older CLI made a home (runs, one killed -9 mid-run, an
    environment, a dataset, a secret); this CLI lists every run with its
    result and log, shows the killed one lost, reuses the environment and
    reads the dataset and the secret. The older CLI, given the upgraded
    home back (a downgrade), refuses it with exit 7 and changes nothing:
    this CLI still reads it all."""
    index = index_with(tmp_path)
    try:
        cli.env["PIP_INDEX_URL"] = index.url
        old = old_cli(old_build, cli.env, cli.cwd)
        cli.write("p.py", PKG_SRC)
        cli.write("s.py", "import os\ndef f():\n    return os.environ['K']\n")
        cli.write("slow.py", "import time\ndef f():\n    print('began', flush=True)\n    time.sleep(600)\n")
        cli.write("blob.txt", "some data\n")
        assert json.loads(old("run", "--sandbox=none", "--json", "p.py", "--x", "3", check=0).stdout) == ["1.0", 3]
        old("data", "put", "blob", "blob.txt", check=0)
        old("secret", "set", "K", input="v1", check=0)
        assert json.loads(old("run", "--sandbox=none", "--json", "s.py", "--secret", "K", check=0).stdout) == "v1"
        runner = subprocess.Popen([str(old.exe), "run", "--sandbox=none", "slow.py"], cwd=cli.cwd, env=old.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert runner.stdout.readline() == "began\n"
        runner.kill()
        runner.wait()
        wait_for(lambda: not processes_of(old_build), "the killed CLI's worker to go")
        index.requests.clear()

        runs = json.loads(cli("ps", "--json", check=0).stdout)
        assert sorted(r["status"] for r in runs) == ["lost", "succeeded", "succeeded"], runs
        lost = next(r for r in runs if r["status"] == "lost")
        assert cli("logs", lost["id"], check=0).stdout == "began\n"
        assert json.loads(cli("run", "--sandbox=none", "--json", "p.py", "--x", "4", check=0).stdout) == ["1.0", 4]
        assert index.requests == [], "the environment was installed again: " + repr(index.requests)
        assert cli("data", "get", "blob", "-o", "-", check=0).stdout == "some data\n"
        assert json.loads(cli("run", "--sandbox=none", "--json", "s.py", "--secret", "K", check=0).stdout) == "v1"
        home = pathlib.Path(cli.env["PYSPRINTER_HOME"])
        ours = schema_of(home / "pysprinter.db")

        for verb in (["ps"], ["run", "--sandbox=none", "p.py"], ["data", "ls"]):
            p = old(*verb)
            assert p.returncode == 7 and "newer than this pysprinter knows" in p.stderr, (verb, p.stderr)
        assert schema_of(home / "pysprinter.db") == ours
        assert len(json.loads(cli("ps", "--json", check=0).stdout)) == 5
    finally:
        index.stop()


# ---- an older CLI against this daemon, this CLI against an older daemon -----

def test_clis_and_daemons_of_both_releases_give_the_same_answers(old_build, tmp_path):
    """An older CLI against this daemon and this CLI against an older one:
    run, deploy, invoke, ps, data put/get, dag run print what a CLI of the
    daemon's own release prints (never another result); `invoke NAME
    --help` against the older daemon, which keeps no signature, shows the
    parameters' names."""
    (tmp_path / "f.py").write_text("def h(a: int = 0, b: str = 'x'):\n    '''Triple a.'''\n    print('log', a)\n"
                                   "    return [a * 3, b]\n")
    (tmp_path / "p.yaml").write_text("tasks:\n  one:\n    file: f.py\n    kwargs: {a: 2}\n")
    (tmp_path / "blob.txt").write_text("some data\n")
    builds = {"old": old_build, "new": BUILD}

    def cli(which, d, *args):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        e.update(PYSPRINTER_SERVER=d.url, PYSPRINTER_TOKEN=TOKENS["alice"], NO_COLOR="1",
                 PYSPRINTER_HOME=str(tmp_path / f"home-{which}"))
        p = subprocess.run([str(builds[which] / "src" / "cli" / "pysprinter"), *args], capture_output=True,
                           text=True, env=e, cwd=tmp_path, timeout=120)
        return p.returncode, p.stdout, p.stderr

    got = {}
    for dv in ("old", "new"):
        d = Daemon(tmp_path / f"d-{dv}", build=builds[dv])
        with d.serving():
            for cv in ("old", "new"):
                got[dv, cv] = [cli(cv, d, "run", "f.py", "--a", "4"),
                               cli(cv, d, "deploy", "f.py", "--name", f"tri{cv}")[0],
                               cli(cv, d, "invoke", f"tri{cv}", "--a", "2"),
                               cli(cv, d, "data", "put", f"blob{cv}", "blob.txt")[0],
                               cli("new", d, "data", "get", f"blob{cv}", "-o", "-"),
                               cli(cv, d, "dag", "run", "p.yaml")[0],
                               cli(cv, d, "invoke", f"tri{cv}", "--help")]
                runs = json.loads(cli("new", d, "ps", "--json")[1])
                assert all(r["status"] == "succeeded" for r in runs), runs
    for dv, cv in got:
        *same, helped = got[dv, cv]
        assert same == got[dv, dv][:-1], (dv, cv, same, got[dv, dv])
        if cv == "new":
            assert helped[0] == 0 and ("h(a: int = 0, b: str = 'x')" if dv == "new" else "h(a, b)") in helped[1], \
                (dv, helped)
    assert got["new", "new"][0] == (0, 'log 4\n[12, "x"]\n', "")


# ---- a cluster in a rolling upgrade -----------------------------------------

@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_a_cluster_with_one_node_of_each_release_runs_everything_once(old_build, tmp_path):
    """One Redis, a gateway and a worker of different releases, both ways
    round (a rolling upgrade's middle): ad-hoc runs and invokes of a
    function deployed through either end with their own results, readable
    on both nodes; then the older worker is killed -9 mid-run and this
    release's takes its place (same node id): the run ends, once."""
    redis = Redis(tmp_path).start()
    mode = sandbox_mode(tmp_path)
    nodes = []

    def node(name, role, build):
        d = Daemon(tmp_path / name, sandbox=mode, build=build, config_extra="server:\n  max_concurrent_runs: 2\n",
                   args=["--redis", redis.url, "--role", role, "--node-id", name, "--claim-timeout", "1500ms",
                         "--drain-timeout", "10"])
        nodes.append(d)
        return d.start()

    try:
        for gw_build, w_build in ((old_build, None), (None, old_build)):
            redis.cli("FLUSHALL")
            tag = "old-gw" if gw_build else "new-gw"
            gw, w = node(f"g-{tag}", "gateway", gw_build), node(f"w-{tag}", "worker", w_build)
            st, b = gw.run("def f(x: int = 1):\n    print('hi')\n    return x + 1\n", kwargs={"x": 2})
            assert st == 200 and b["result"] == 3, b
            assert gw.call("POST", "/v1/functions", {"name": "fn", "source": FN, "filename": "fn.py"})[0] == 201
            ids = []
            for x in range(4):
                st, b = gw.call("POST", "/v1/functions/fn/invoke?wait=true", {"kwargs": {"x": x}})
                assert st == 200 and b["result"] == 2 * x, b
                ids.append(b["id"])
            for d in (gw, w):
                for x, rid in enumerate(ids):
                    st, b = d.call("GET", f"/v1/runs/{rid}")
                    assert st == 200 and b["result"] == 2 * x and b["attempt"] == 1, (d.root.name, b)
            for d in (w, gw):
                assert d.stop() == 0, d.log.read_text()

        # The rolling step: the older worker dies mid-run, this release's
        # takes its node id; the gateway is this release's.
        redis.cli("FLUSHALL")
        gw, w = node("g2", "gateway", None), node("w2", "worker", old_build)
        st, b = gw.run(SLEEP.replace("4", "2"), wait=False, kwargs={"tag": "rolled"})
        rid = b["id"]
        gw.wait_status(rid, ["running"])
        w.kill9()
        new_w = Daemon(w.root, sandbox=mode, config_extra="server:\n  max_concurrent_runs: 2\n", args=w.args)
        nodes.append(new_w)
        new_w.start()
        end = gw.wait_status(rid, TERMINAL, timeout=120)
        assert end["status"] == "succeeded" and end["result"] == "rolled", end
        # Its workers die of their parent's death (PDEATHSIG) a moment after it.
        wait_for(lambda: not processes_of(old_build), "the older release's processes to end", timeout=60)
    finally:
        for d in nodes:
            d.stop()
        redis.stop()


def test_a_dataset_number_a_run_named_before_the_upgrade_is_not_given_again(old_build, tmp_path):
    """docs/data.md: a removed version's number is never given again, so
    NAME@N names one content for good. The highest number each name had is
    kept since the release after the older one; a data directory that
    release upgraded had none kept, so with the older daemon put a, put b,
    a run that read ds@2 and one that wrote out@2, rm ds@2 and out@2,
    then a put through this one made "version 2" again: the record of the
    run that read ds@2 (and a memoised DAG task that produced out@2, which
    would show cached and hand its reader the new bytes) named other
    content. The upgrade takes the highest number the records name."""
    old = Daemon(tmp_path / "d", build=old_build)
    with old.serving():
        for ds, body in (("ds", b"aaaaa"), ("out", b"aaaaa"), ("ds", b"bbbbb")):
            st, _, b = old.request("PUT", f"/v1/data/{ds}", raw=body, headers={"Content-Type": "text/plain"})
            assert st in (200, 201), b
        st, b = old.run("def f():\n    return 1\n", data=["ds@2"])
        assert st == 200, b
        st, b = old.run("from pysprinter import output_dir\ndef f():\n    open(output_dir() + '/x', 'w').write('x')\n",
                        output_data="out")
        assert st == 200 and b["status"] == "succeeded", b
        for ref in ("ds?version=2", "out?version=2"):
            st, b = old.call("DELETE", f"/v1/data/{ref}")
            assert st == 200, (ref, st, b)
    # out's run made it a directory dataset (the older release let a run's
    # output turn a single-file dataset into one; this one refuses a put of
    # the other kind, docs/data.md): its next version is a directory too.
    tree = io.BytesIO()
    with tarfile.open(fileobj=tree, mode="w") as t:
        info = tarfile.TarInfo("x")
        info.size = 5
        t.addfile(info, io.BytesIO(b"ccccc"))
    new = Daemon(tmp_path / "d")
    with new.serving():
        for ds, body, kind in (("ds", b"ccccc", "text/plain"), ("out", tree.getvalue(), "application/x-tar")):
            st, _, b = new.request("PUT", f"/v1/data/{ds}", raw=body, headers={"Content-Type": kind})
            assert st == 201 and json.loads(b)["version"] == 3, (ds, b)


def test_this_daemon_refuses_a_data_dir_an_older_daemon_still_serves(old_build, tmp_path):
    """A daemon refuses a data directory another one serves (docs/api.md),
    by the flock on pysprinterd.pid, which releases before 2026-12-06 do
    not take. So this release's daemon started beside an older one still
    serving the directory (a manual start during the upgrade, another port
    to try it before switching) ran its recovery over the older one's runs:
    a run the older one was running started again as attempt 2 beside it,
    a retries: 0 one ended 'lost' while it ran, and the older one's results
    were dropped as stale. It is refused now (exit 2, naming the pid), and
    the older daemon's runs end as they would have."""
    old = Daemon(tmp_path / "d", build=old_build)
    with old.serving():
        st, a = old.run(SLEEP.replace("4", "3"), wait=False, kwargs={"tag": "a"})
        st, b = old.run(SLEEP.replace("4", "3"), wait=False, kwargs={"tag": "b"}, retries=0)
        for r in (a, b):
            old.wait_status(r["id"], ["running"])
        beside = Daemon(tmp_path / "d")
        with pytest.raises(RuntimeError) as refused:
            beside.start()
            beside.stop()
        assert beside.proc.returncode == 2, refused.value
        assert f"pysprinterd (pid {old.proc.pid})" in str(refused.value), refused.value
        # The CLI's gc would collect the daemon's home with its own
        # defaults (docs/operations.md): refused as beside this release's.
        p = subprocess.run([str(CLI), "gc"], capture_output=True, text=True, env=old.env(), timeout=60)
        assert p.returncode == 2 and str(old.proc.pid) in p.stderr, (p.returncode, p.stderr)
        for r, tag in ((a, "a"), (b, "b")):
            end = old.wait_status(r["id"], TERMINAL)
            assert (end["status"], end["result"], end["attempt"]) == ("succeeded", tag, 1), end


@pytest.mark.skipif(not REDIS, reason="redis-server is not installed")
def test_a_newer_worker_tells_an_older_gateway_a_runs_end_in_words_it_reads(old_build, tmp_path):
    """A worker tells the gateway that accepted a run of its end on the
    gateway's channel: since round 26 with the ended record ("r:<id>" and
    the fields), which a gateway of the older release does not read — it
    then answered each run from its once-a-second look, so in a rolling
    upgrade of nodes of the default role `all` (both at once: 'gateways
    first' cannot be followed) every run a new node ran for an old one
    came back up to a second late. A gateway now says in the run's record
    that it reads the record form; the others get "d:<id>", which every
    release reads at once."""
    redis = Redis(tmp_path).start()
    mode = sandbox_mode(tmp_path)
    gw = Daemon(tmp_path / "g", sandbox=mode, build=old_build,
                args=["--redis", redis.url, "--role", "gateway", "--node-id", "g-old"])
    w = Daemon(tmp_path / "w", sandbox=mode, args=["--redis", redis.url, "--role", "worker", "--node-id", "w-new"])
    heard = subprocess.Popen(["redis-cli", "-s", redis.sock, "SUBSCRIBE", "ps:ev:g-old"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
    try:
        gw.start()
        w.start()
        ids = []
        for x in range(3):
            st, b = gw.run("def f(x: int = 1):\n    return x + 1\n", kwargs={"x": x})
            assert st == 200 and b["result"] == x + 1, b
            ids.append(b["id"])
    finally:
        for d in (w, gw):
            d.stop()
        heard.terminate()
        out = heard.communicate(timeout=30)[0].decode(errors="replace")
        redis.stop()
    for rid in ids:
        assert f"d:{rid}" in out and f"r:{rid}" not in out, (rid, out[-2000:])


def test_a_set_of_states_lists_the_same_runs_against_an_older_daemon(old_build, cli, tmp_path):
    """`ps --status succeeded,failed` (and `dag ls --status`) asks for a
    set of states, which a daemon of the older release takes as one state
    named "succeeded,failed": this CLI printed an empty table against it,
    exit 0, as if there were no such runs. It lists them now, as against a
    daemon of its own release."""
    cli.write("a.py", "def f():\n    return 1\n")
    cli.write("b.py", "def f():\n    raise ValueError('x')\n")
    cli.write("p.yaml", "tasks:\n  one:\n    file: a.py\n")
    got = {}
    for which, build in (("old", old_build), ("new", None)):
        d = Daemon(tmp_path / which, build=build)
        with d.serving():
            cli.env.update(d.client_env())
            cli("run", "a.py", check=0)
            cli("run", "b.py", check=1)
            cli("run", "--timeout", "1", "a.py", check=0)
            cli("dag", "run", "p.yaml", check=0)
            runs = json.loads(cli("ps", "--json", "--status", "succeeded,failed", check=0).stdout)
            dags = json.loads(cli("dag", "ls", "--json", "--status", "succeeded,failed", check=0).stdout)
            got[which] = ([r["status"] for r in runs], [g["status"] for g in dags])
    assert got["old"] == got["new"] == (["succeeded", "succeeded", "failed", "succeeded"], ["succeeded"]), got


def test_a_request_an_older_daemon_does_not_know_says_so(old_build, cli, tmp_path):
    """`pysprinter lock FILE` with a server asks the server's index for the
    lock (POST /v1/validate with "lock"), which a daemon of the older
    release refuses as an unknown field: this CLI printed "pysprinter:
    unknown field 'lock'", a field the user never wrote. It now says the
    server's release is older than the CLI's and what to do."""
    cli.write("a.py", "def f():\n    return 1\n")
    d = Daemon(tmp_path / "d", build=old_build)
    with d.serving():
        p = cli("lock", "a.py", env={"PYSPRINTER_SERVER": d.url, "PYSPRINTER_TOKEN": TOKENS["alice"]})
    assert p.returncode != 0 and p.stdout == "", p
    assert "older" in p.stderr and "upgrade" in p.stderr and "'lock'" in p.stderr, p.stderr


def test_the_cli_does_not_upgrade_a_database_an_older_daemon_serves(old_build, tmp_path):
    """The daemon's default data directory is the CLI's default home: with
    a daemon of the older release serving it (not restarted yet after the
    package upgrade, or in a container of the older image), this release's
    `pysprinter ps` upgraded the database under it (19 -> 22), and that
    daemon then could not start on it again ("schema is newer than this
    pysprinter knows"). The CLI leaves it alone now and says what to do;
    once the older daemon is stopped, it upgrades it as usual."""
    old = Daemon(tmp_path / "d", build=old_build)
    env = dict(old.env(), PYSPRINTER_WORKER=str(WORKER))
    with old.serving():
        st, b = old.run("def f():\n    return 1\n")
        assert st == 200
        p = subprocess.run([str(CLI), "ps"], capture_output=True, text=True, env=env, timeout=60)
        assert p.returncode == 6, (p.returncode, p.stdout, p.stderr)
        assert f"pysprinterd (pid {old.proc.pid}), of an older release" in p.stderr, p.stderr
        assert schema_of(old.home / "pysprinter.db") == 19
    again = Daemon(tmp_path / "d", build=old_build)
    with again.serving():
        assert again.call("GET", f"/v1/runs/{b['id']}")[1]["result"] == 1
    p = subprocess.run([str(CLI), "ps", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and [r["id"] for r in json.loads(p.stdout)] == [b["id"]], p
    assert schema_of(old.home / "pysprinter.db") > 19
