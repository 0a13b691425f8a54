"""Durability on one machine, played as an operator whose machine
misbehaves: processes killed with -9 at awkward moments, a second daemon
started by mistake, restarts on what the crash left behind. What a user
checks: a run that got an id ends once, with its result; what a crash
left half-done goes away; nothing needs hand repair.
(The Redis cluster has its own tests: test_cluster*.py.)"""
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

from conftest import CLI, DAEMON
import pkgindex
from daemonlib import TOKENS, Daemon, wait_for

pytestmark = pytest.mark.skipif(not DAEMON.exists() or not CLI.exists(), reason="pysprinter not built")

TERMINAL = ["succeeded", "failed", "invalid", "deps_failed", "killed", "cancelled", "error", "lost"]

BEGINS_THEN_SLEEPS = """
import time
def slow(seconds: float = 30):
    print("began", flush=True)
    time.sleep(seconds)
    return "slept"
"""


def began(d, rid):
    wait_for(lambda: d.call("GET", f"/v1/runs/{rid}/logs")[1] == "began\n", f"run {rid} to begin", timeout=90)


# ---- one daemon per data directory -----------------------------------------

def test_a_second_daemon_on_the_same_data_dir_is_refused_and_runs_nothing_twice(tmp_path):
    """A second pysprinterd started on a data directory another one serves
    (another port, a forgotten manual start beside the service) took the
    first one's running run for a crash leftover: it ran it again beside
    the first (attempt 2 while attempt 1 still ran), and a `retries: 0` run
    it ended `lost` while it was still running. Now it is refused, naming
    the daemon that serves the directory; once that one is gone (kill -9),
    a start takes the directory over at once."""
    a = Daemon(tmp_path / "a", sandbox="none").start()
    b = Daemon(tmp_path / "b", sandbox="none", home=a.home)
    try:
        st, r = a.run(BEGINS_THEN_SLEEPS, wait=False, kwargs={"seconds": 6}, retries=0)
        assert st == 202, r
        rid = r["id"]
        began(a, rid)
        with pytest.raises(RuntimeError) as e:
            b.start()
        assert b.proc.returncode == 2, b.log.read_text()
        assert f"another pysprinterd (pid {a.proc.pid}) serves {a.home}" in str(e.value), str(e.value)
        r = a.wait_status(rid, TERMINAL, timeout=90)
        assert r["status"] == "succeeded" and r["result"] == "slept" and r["attempt"] == 1, r
        # The first one dies: the directory is free at once, and what was
        # in flight is recovered by the new owner as after any crash.
        st, r = a.run(BEGINS_THEN_SLEEPS, wait=False, kwargs={"seconds": 3})
        rid = r["id"]
        began(a, rid)
        a.kill9()
        b.start()
        r = b.wait_status(rid, TERMINAL, timeout=90)
        assert r["status"] == "succeeded" and r["attempt"] == 2, r
    finally:
        b.stop()
        a.stop()


# ---- what a crashed put leaves behind --------------------------------------

def pysprinterd(*args, home, env_extra=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    e["PYSPRINTER_HOME"] = str(home)
    e.update(env_extra or {})
    return subprocess.run([str(DAEMON), *map(str, args)], capture_output=True, text=True, env=e, timeout=120)


def staging(home):
    """(path, size) of each file under $DATA/data/tmp/, where puts stage."""
    tmp = pathlib.Path(home) / "data" / "tmp"
    return sorted((str(p), p.stat().st_size) for p in tmp.rglob("*") if p.is_file()) if tmp.is_dir() else []


def test_an_upload_cut_by_a_kill9_is_collected_once_it_is_an_hour_old(tmp_path):
    """A daemon killed during `PUT /v1/data` left the upload's staging file
    (here 5+ MB) in $DATA/data/tmp/ for ever: neither the restart nor any
    collection removed it, and nothing counted it. Now a collection removes
    staging leftovers no write touched for an hour (a put in progress keeps
    writing its file), and counts their bytes as freed data."""
    d = Daemon(tmp_path / "d", sandbox="none", config_extra="server:\n  max_body_bytes: 40000000\n").start()
    try:
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall((f"PUT /v1/data/big?filename=big.bin HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {TOKENS['alice']}\r\nContent-Type: application/octet-stream\r\n"
                   f"Content-Length: 30000000\r\n\r\n").encode())
        s.sendall(os.urandom(8_000_000))
        wait_for(lambda: sum(n for _, n in staging(d.home)) > 5_000_000, "the upload to be staged")
        d.kill9()
        s.close()
        left = staging(d.home)
        assert left, "the kill left no staging file: nothing to test"
        d.start()
        st, b = d.call("GET", "/v1/data")
        assert st == 200 and b["datasets"] == [], b
        # Fresh, it may be a put in progress: kept.
        p = pysprinterd("gc", "--data-dir", d.home, home=d.home)
        assert p.returncode == 0, p.stderr
        assert staging(d.home) == left
        later = str(int(time.time()) + 2 * 3600)
        p = pysprinterd("gc", "--json", "--data-dir", d.home, home=d.home, env_extra={"PYSPRINTER_TEST_NOW": later})
        assert p.returncode == 0, p.stderr
        assert staging(d.home) == [], staging(d.home)
        import json
        assert json.loads(p.stdout)["data_bytes"] >= 5_000_000, p.stdout
        # A put after it works and reads back.
        st, _, out = d.request("PUT", "/v1/data/big?filename=big.bin", raw=b"abc",
                               headers={"Content-Type": "application/octet-stream"})
        assert st == 201, out
        st, _, back = d.request("GET", "/v1/data/big/content")
        assert st == 200 and back == b"abc"
    finally:
        d.stop()


# ---- what a killed install leaves behind -----------------------------------

def cli_env(home):
    from conftest import WORKER
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    e.update(PYSPRINTER_HOME=str(home), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    return e


def big_wheel(tmp_path, name):
    files = {f"{name}/__init__.py": "X = 41\n"}
    for i in range(4):
        files[f"{name}/blob{i}.bin"] = os.urandom(2 << 20)
    return pkgindex.build_wheel(tmp_path, name, "1.0", files=files)


def test_a_download_cut_by_a_kill_is_collected_though_its_wheel_is_installed_later(tmp_path):
    """A CLI killed mid-download left its partial file in cache/wheels/
    (here 2+ MB). Once a later run installed the same wheel, `gc` and
    `env prune` kept that file for ever: they took it for the wheel, which
    an environment lists. Now a download's private file is collected past
    the hour's grace whatever lists its wheel, and the environment still
    runs."""
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(home)
    w = big_wheel(tmp_path, "bigpkg")
    ix = pkgindex.Index()
    ix.add(w)
    path = f"/files/{w.name}"
    ix.slow[path] = 30
    ix.start()
    src = tmp_path / "f.py"
    src.write_text("@requirements({'bigpkg': ''})\ndef f():\n    import bigpkg\n    return bigpkg.X + 1\n")
    try:
        p = subprocess.Popen([str(CLI), "run", "--sandbox=none", "--index-url", ix.url, str(src)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: ix.sent.get(path, 0) >= 2 << 20 or p.poll() is not None, "the download to be half-way")
        assert p.poll() is None, p.communicate()
        p.kill()
        p.communicate()
        cache = home / "cache" / "wheels"
        left = [f for f in cache.iterdir() if f.is_file()]
        assert left and sum(f.stat().st_size for f in left) >= 1 << 20, left
        del ix.slow[path]
        r = subprocess.run([str(CLI), "run", "--sandbox=none", "--index-url", ix.url, str(src)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout == "42\n", (r.returncode, r.stdout, r.stderr)
        old = time.time() - 2 * 3600
        for f in left:
            if f.exists():
                os.utime(f, (old, old))
        r = subprocess.run([str(CLI), "gc"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert not [f for f in left if f.exists()], [(f.name, f.stat().st_size) for f in left if f.exists()]
        # What is installed stays: it runs again without a download.
        fetched = ix.requests.count(path)
        r = subprocess.run([str(CLI), "run", "--sandbox=none", "--index-url", ix.url, str(src)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout == "42\n", (r.returncode, r.stdout, r.stderr)
        assert ix.requests.count(path) == fetched, ix.requests
    finally:
        ix.stop()


# ---- a full disk under the embedded CLI ------------------------------------

def fill(path, leave=8192, name="filler"):
    """A filler file that leaves about `leave` bytes free in path's file system."""
    st = os.statvfs(path)
    filler = pathlib.Path(path) / name
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_a_full_disk_leaves_the_embedded_cli_able_to_list_and_collect(tmp_path, small_home):
    """With its home's disk full, every embedded command — `ps` to see what
    happened, `gc` to make room — failed with "cannot open the run
    database …: Input/output error" (exit 7): SQLite could not create the
    database's -wal/-shm files, and the 2 MiB reserve kept beside the
    database for a full disk (docs/operations.md) was never given back for
    an open. Now the open gives the reserve back and tries again, so they
    work; and when even that finds no room, the message says the disk is
    full."""
    env = cli_env(small_home)
    src = tmp_path / "f.py"
    src.write_text("def f(x=1):\n    return [x] * 3\n")

    def cli(*args):
        return subprocess.run([str(CLI), *map(str, args)], env=env, capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)
    r = cli("run", "--sandbox=none", "--json", src, "-a", "5")
    assert r.returncode == 0 and r.stdout == '["5","5","5"]\n', (r.returncode, r.stdout, r.stderr)
    first = cli("ps", "--json")
    assert first.returncode == 0, first.stderr
    reserve = small_home / "pysprinter.db-reserve"
    assert reserve.stat().st_size >= 1 << 20
    filler = fill(small_home)
    r = cli("ps", "--json")
    assert r.returncode == 0 and r.stdout == first.stdout, (r.returncode, r.stdout, r.stderr)
    assert "full" in r.stderr, r.stderr
    assert not reserve.exists()
    r = cli("gc")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    # The reserve given back is used up too: the message names the cause.
    fill2 = fill(small_home, leave=0, name="filler2")
    r = cli("ps")
    assert r.returncode == 7 and "No space left on device" in r.stderr, (r.returncode, r.stderr)
    assert "Input/output error" not in r.stderr, r.stderr
    filler.unlink()
    fill2.unlink()
    r = cli("run", "--sandbox=none", "--json", src, "-a", "6")
    assert r.returncode == 0 and r.stdout == '["6","6","6"]\n', (r.returncode, r.stdout, r.stderr)
    assert reserve.stat().st_size >= 1 << 20    # made again once there is room


# ---- the secrets key, created by a process that died -----------------------

def test_a_key_creation_cut_by_a_kill_does_not_block_the_next_process_with_its_pid(tmp_path):
    """The secrets key is written under a temporary name and linked into
    place; that name was `secrets.key.<pid>.tmp`, opened with O_EXCL. A
    process killed between the two left the file behind, and the next one
    with the same pid — every time, in a container, where the CLI or the
    daemon is pid 1 — failed for ever: "cannot create the key: File
    exists" (a daemon did not start at all). Now the name is random."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"]).returncode:
        pytest.skip("needs unshare --pid (root)")
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(home)
    # What a `secret set` killed as pid 1 of a container leaves.
    (home / "secrets.key.1.tmp").write_bytes(b"\x01" * 7)
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", str(CLI), "secret", "set", "API"],
                       input="s3cret\n", env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert (home / "secrets.key").stat().st_size == 32
    assert oct((home / "secrets.key").stat().st_mode & 0o777) == "0o600"
    src = tmp_path / "s.py"
    src.write_text("import os\ndef f():\n    return os.environ['API']\n")
    r = subprocess.run([str(CLI), "run", "--sandbox=none", "--secret", "API", str(src)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "s3cret\n", (r.returncode, r.stdout, r.stderr)


def test_an_object_a_killed_collection_left_aside_is_removed_by_the_next(tmp_path):
    """A collection removes an unreferenced data object by moving it aside
    (data/objects/.gc-<hash>) and then deleting the tree. Killed between
    the two (a daemon's kill -9 while its collector deletes a large
    object), the aside tree stayed for ever: every later collection
    skipped names starting with a dot. Now a collection removes an aside
    tree no live collection holds; referenced objects stay."""
    home = tmp_path / "home"
    home.mkdir()
    env = cli_env(home)
    keep = tmp_path / "keep.txt"
    keep.write_text("kept\n")

    def cli(*args):
        return subprocess.run([str(CLI), *map(str, args)], env=env, capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)
    r = cli("data", "put", "keep", keep)
    assert r.returncode == 0, r.stderr
    objects = home / "data" / "objects"
    aside = objects / (".gc-" + "ab" * 32)
    (aside / "sub").mkdir(parents=True)
    (aside / "sub" / "big.bin").write_bytes(os.urandom(1 << 20))
    for p in (aside / "sub" / "big.bin", aside / "sub", aside):
        p.chmod(0o555 if p.is_dir() else 0o444)
    r = cli("gc")
    assert r.returncode == 0, r.stderr
    assert not aside.exists(), sorted(p.name for p in objects.iterdir())
    r = cli("data", "get", "keep", "-o", tmp_path / "back.txt")
    assert r.returncode == 0 and (tmp_path / "back.txt").read_text() == "kept\n", r.stderr


# ---- a CLI waiting on a run while the daemon restarts ----------------------

def test_a_cli_waiting_on_a_server_run_sees_its_end_across_a_daemon_restart(tmp_path):
    """`pysprinter run --server URL` follows the run it submitted. When the
    daemon was killed (and restarted by its supervisor a moment later) the
    CLI gave up at once — exit 6, "cannot reach …" — without even naming
    the run, which the restarted daemon ran again to its end: the user had
    an acknowledged run and no way to its result but `ps`. Now the CLI
    says what happened, waits for the server to come back (60 s), and
    prints the run's end; a server that stays away gets a message naming
    the run and how to see it."""
    d = Daemon(tmp_path / "d", sandbox="none").start()
    src = tmp_path / "slow.py"
    src.write_text(BEGINS_THEN_SLEEPS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_TOKEN=TOKENS["alice"], NO_COLOR="1", PYSPRINTER_HOME=str(tmp_path / "cli-home"))
    try:
        p = subprocess.Popen([str(CLI), "run", "--server", d.url, str(src), "--seconds", "4"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "began\n"
        d.kill9()
        d.start(port=d.port)
        out, err = p.communicate(timeout=120)
        # Attempt 2's output streams too (test_logs_resume.py).
        assert p.returncode == 0 and out == "began\nslept\n", (p.returncode, out, err)
        st, runs = d.call("GET", "/v1/runs")
        [run] = runs["runs"]
        assert run["status"] == "succeeded" and run["attempt"] == 2, run
        assert run["id"] in err and "lost the connection" in err, err
        # A server that does not come back: the run is named, with the way
        # to its end (the wait shortened for the test).
        p = subprocess.Popen([str(CLI), "run", "--server", d.url, str(src), "--seconds", "30"],
                             env={**env, "PYSPRINTER_TEST_RECONNECT_S": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "began\n"
        d.kill9()
        out, err = p.communicate(timeout=120)
        assert p.returncode == 6, (p.returncode, out, err)
        assert "cannot reach" in err and "pysprinter show rm" in err, err
        # Ctrl-C while the server is away cancels nothing: said so.
        d.start(port=d.port)
        p = subprocess.Popen([str(CLI), "run", "--server", d.url, str(src), "--seconds", "30"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "began\n"
        d.kill9()
        assert "lost the connection" in p.stderr.readline()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 130, (p.returncode, out, err)
        assert "could not be cancelled (the server is away)" in err and "pysprinter cancel rm" in err, err
    finally:
        d.stop()


# ---- installs cut by a kill, installs raced (these held) -------------------

def test_a_daemon_killed_while_it_installs_a_runs_environment_runs_it_after_the_restart(tmp_path):
    """kill -9 while an accepted run's environment downloads: the restarted
    daemon installs it again (nothing half-made is taken for installed)
    and the run ends with its value."""
    w = big_wheel(tmp_path, "bigdep")
    ix = pkgindex.Index()
    ix.add(w)
    path = f"/files/{w.name}"
    ix.slow[path] = 30
    ix.start()
    d = Daemon(tmp_path / "d", sandbox="none", config_extra=f"index:\n  url: {ix.url}\n")
    try:
        d.start()
        st, r = d.run("@requirements({'bigdep': ''})\ndef f(x=1):\n    import bigdep\n    return bigdep.X + int(x)\n",
                      wait=False)
        assert st == 202, r
        rid = r["id"]
        wait_for(lambda: ix.sent.get(path, 0) >= 2 << 20, "the download to be half-way")
        d.kill9()
        del ix.slow[path]
        d.start()
        r = d.wait_status(rid, TERMINAL, timeout=120)
        assert r["status"] == "succeeded" and r["result"] == 42 and r["attempt"] == 2, r
    finally:
        d.stop()
        ix.stop()


def test_two_clis_and_a_daemon_install_one_environment_at_once_with_one_download(tmp_path):
    """Two embedded CLIs and a daemon on one home ask for the same new
    environment at once: one download, three answers."""
    w = big_wheel(tmp_path, "shareddep")
    ix = pkgindex.Index()
    ix.add(w)
    path = f"/files/{w.name}"
    ix.slow[path] = 3
    ix.start()
    src = "@requirements({'shareddep': ''})\ndef f(x=1):\n    import shareddep\n    return shareddep.X + int(x)\n"
    d = Daemon(tmp_path / "d", sandbox="none", config_extra=f"index:\n  url: {ix.url}\n")
    try:
        d.start()
        f = tmp_path / "f.py"
        f.write_text(src)
        env = {**d.env(), "NO_COLOR": "1"}
        clis = [subprocess.Popen([str(CLI), "run", "--sandbox=none", "--index-url", ix.url, str(f)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        st, r = d.run(src)
        assert st == 200 and r["status"] == "succeeded" and r["result"] == 42, r
        for c in clis:
            out, err = c.communicate(timeout=120)
            assert c.returncode == 0 and out == "42\n", (c.returncode, out, err)
        assert ix.requests.count(path) == 1, ix.requests
    finally:
        d.stop()
        ix.stop()
