"""The first-install pipeline (issue 15 (e)): wheels are downloaded and
unpacked as the resolver pins them, while it still works. What a user checks:
a failed download still publishes no env and says which file; a version the
resolver fetched early and then rejected is not in the env."""
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time

import pytest

from conftest import CLI
import pkgindex

pytestmark = pytest.mark.skipif(not CLI.exists(), reason="pysprinter not built")


def _prepare(env, index, *reqs):
    return subprocess.Popen([str(CLI), "env", "prepare", "--index-url", index.url, *reqs], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(cond, proc, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, (what, proc.communicate())
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _big(outdir, name):
    files = {f"{name}/__init__.py": "X = 1\n"}
    for i in range(3):
        files[f"{name}/blob{i}.bin"] = os.urandom(1 << 20)
    return pkgindex.build_wheel(outdir, name, "1.0", files=files)


def test_failed_download_while_another_is_unpacked_publishes_no_env(env, home, tmp_path):
    ok = pkgindex.build_wheel(tmp_path, "okpkg", "1.0")
    bad = _big(tmp_path, "badpkg")
    ix = pkgindex.Index()
    ix.add(ok)
    ix.add(bad)
    bad_path = f"/files/{bad.name}"
    gate = ix.hold[bad_path] = threading.Event()
    ix.start()
    ok_dir = home / "store" / pkgindex.sha256_file(ok)
    try:
        p = _prepare(env, ix, "okpkg", "badpkg")
        # okpkg is in the store (fetched, verified, unpacked, renamed)
        # while badpkg's download is still held by the index.
        _wait(lambda: ok_dir.is_dir() and bad_path in ix.requests, p, "okpkg unpacked, badpkg downloading")
        ix.truncate[bad_path] = bad.stat().st_size // 3     # then it is cut, every time
        gate.set()
        out, err = p.communicate(timeout=120)
    finally:
        gate.set()
        ix.stop()
    assert p.returncode == 4, (p.returncode, out, err)
    assert bad.name in err or bad_path in err, err
    envs = home / "envs"
    assert not envs.exists() or not list(envs.iterdir()), list(envs.iterdir())
    store = sorted(x.name for x in (home / "store").iterdir())
    assert store == [ok_dir.name], store           # nothing of badpkg, no staging dir
    # Only the bytes of badpkg's cut download, for the next install to
    # resume (test_explore_resume.py).
    wheels = home / "cache" / "wheels"
    left = sorted(p.name for p in wheels.iterdir()) if wheels.exists() else []
    assert left == [f"{pkgindex.sha256_file(bad)}.whl.part"], left


def test_version_fetched_early_then_rejected_is_not_the_env(env, home, tmp_path):
    # top -> mid; mid 2.0 -> deep -> leaf<1 conflicts with the root's
    # leaf>=1, found only once deep's metadata is read (deep has no PEP 658
    # file: its wheel is fetched, and the index holds it). By then mid 2.0
    # has been pinned and its wheel fetched early.
    w = {}
    for name, version, requires in [("top", "1.0", ["mid"]), ("mid", "2.0", ["deep"]), ("mid", "1.0", ["leaf>=1"]),
                                    ("deep", "1.0", ["leaf<1"]), ("leaf", "0.5", []), ("leaf", "1.2", [])]:
        w[(name, version)] = pkgindex.build_wheel(tmp_path, name, version, requires=requires)
    ix = pkgindex.Index()
    for (name, _), path in w.items():
        ix.add(path, metadata=name != "deep")
    deep_path = f"/files/{w[('deep', '1.0')].name}"
    mid2_path = f"/files/{w[('mid', '2.0')].name}"
    gate = ix.hold[deep_path] = threading.Event()
    ix.start()
    try:
        p = _prepare(env, ix, "top", "leaf>=1")
        _wait(lambda: mid2_path in ix.requests and deep_path in ix.requests, p,
              "mid 2.0 fetched early while the resolver waits for deep")
        gate.set()
        out, err = p.communicate(timeout=120)
    finally:
        gate.set()
        ix.stop()
    assert p.returncode == 0, (out, err)
    dirs = [pathlib.Path(x) for x in out.split()]
    infos = sorted(d.name for x in dirs for d in x.iterdir() if d.name.endswith(".dist-info"))
    assert infos == ["leaf-1.2.dist-info", "mid-1.0.dist-info", "top-1.0.dist-info"], infos
    mid2 = pkgindex.sha256_file(w[("mid", "2.0")])
    assert mid2 not in out
    (record,) = (home / "envs").glob("*.json")
    assert mid2 not in record.read_text()
    versions = {e["name"]: e["version"] for e in json.loads(record.read_text())["packages"]}
    assert versions == {"top": "1.0", "mid": "1.0", "leaf": "1.2"}, versions


def test_conflict_after_early_fetch_publishes_no_env(env, home, tmp_path):
    # app 3.0's wheel is fetched as soon as its page is read; then its
    # metadata (lib<1) conflicts with the root's lib>=1 and nothing else
    # is left: the resolver's error, no env.
    for name, version, requires in [("app", "3.0", ["lib<1"]), ("lib", "0.9", []), ("lib", "1.5", [])]:
        pkgindex.build_wheel(tmp_path, name, version, requires=requires)
    ix = pkgindex.Index()
    for w in sorted(tmp_path.glob("*.whl")):
        ix.add(w)
    ix.start()
    try:
        p = _prepare(env, ix, "app==3.0", "lib>=1")
        out, err = p.communicate(timeout=120)
    finally:
        ix.stop()
    assert p.returncode == 4, (p.returncode, out, err)
    assert "conflicting requirements on lib" in err, err
    envs = home / "envs"
    assert not envs.exists() or not list(envs.iterdir()), list(envs.iterdir())
    assert not list((home / "store").glob(".tmp-*"))


def test_stalled_early_download_of_a_rejected_version_is_stopped(env, home, tmp_path):
    # app 3.0's wheel is fetched as soon as its page is read, and the index
    # stalls it (sends nothing); then lib's page arrives and resolution
    # fails. The stalled download is stopped: the error comes while the
    # index still holds the wheel, not after the transfer's low-speed
    # timeout (30 s) and its retries.
    for name, version, requires in [("app", "3.0", ["lib<1"]), ("lib", "0.9", []), ("lib", "1.5", [])]:
        pkgindex.build_wheel(tmp_path, name, version, requires=requires)
    ix = pkgindex.Index()
    for w in sorted(tmp_path.glob("*.whl")):
        ix.add(w)
    app_path = "/files/app-3.0-py3-none-any.whl"
    wheel_gate = ix.hold[app_path] = threading.Event()
    page_gate = ix.hold["/simple/lib/"] = threading.Event()
    ix.start()
    try:
        p = _prepare(env, ix, "app==3.0", "lib>=1")
        _wait(lambda: app_path in ix.requests and "/simple/lib/" in ix.requests, p,
              "app 3.0 fetched early while the resolver waits for lib's page")
        page_gate.set()
        out, err = p.communicate(timeout=60)
        held = not wheel_gate.is_set()
    finally:
        wheel_gate.set()
        page_gate.set()
        ix.stop()
    assert held
    assert p.returncode == 4, (p.returncode, out, err)
    assert "conflicting requirements on lib" in err, err
    envs = home / "envs"
    assert not envs.exists() or not list(envs.iterdir()), list(envs.iterdir())
    assert not list((home / "store").glob(".tmp-*"))
    wheels = home / "cache" / "wheels"
    assert not wheels.exists() or not list(wheels.iterdir()), list(wheels.iterdir())


def test_a_first_install_reads_the_time_zone_once_and_runs_see_no_tz(env, tmp_path):
    """libarchive converts every zip entry's DOS time with mktime(), and
    glibc with TZ unset stat()s /etc/localtime on each call (5,623 times in
    a first install of requests + numpy + six, ~10% of its time). The CLI
    pins the local zone at start (tz_local_pin): the zone file is read once
    per install, not once per file. A run still sees no TZ: its worker is
    exec'd with an environment of its own."""
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace is not installed")
    env = {k: v for k, v in env.items() if k != "TZ"}
    files = {f"manyfiles/m{i}.py": f"X = {i}\n" for i in range(300)}
    files["manyfiles/__init__.py"] = ""
    wheel = pkgindex.build_wheel(tmp_path / "wheels", "manyfiles", "1.0", files=files)
    ix = pkgindex.Index()
    ix.add(wheel)
    ix.start()
    trace = tmp_path / "trace"
    try:
        p = subprocess.run([strace, "-f", "-qq", "-e", "trace=%%stat,openat", "-o", str(trace), str(CLI), "env",
                            "prepare", "--index-url", ix.url, "manyfiles"],
                           env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        looks = [line for line in trace.read_text().splitlines() if "/etc/localtime" in line]
        assert len(looks) <= 2, f"{len(looks)} looks at the zone for 300 files: {looks[:3]}"

        (tmp_path / "tz.py").write_text(
            "@requirements({'manyfiles': ''})\n"
            "def main():\n"
            "    import os\n"
            "    import manyfiles.m299\n"
            "    return {'TZ': os.environ.get('TZ'), 'X': manyfiles.m299.X}\n")
        r = subprocess.run([str(CLI), "run", "--index-url", ix.url, "--json", str(tmp_path / "tz.py")], env=env,
                           capture_output=True, text=True, timeout=120)
    finally:
        ix.stop()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"TZ": None, "X": 299}


def _process_clones(trace_text):
    """[(flags, pid)] of every clone that made a process (not a thread) in
    the traced program's own process: its first pid and the threads it
    made (strace -f lines, a call split into "unfinished" and "resumed").
    Two passes: strace may print a new thread's first call before the line
    of the clone that returns its id, so which pids are the program's own
    is known only once every call is joined."""
    calls, pending, first = [], {}, None
    for line in trace_text.splitlines():
        pid, _, rest = line.partition(" ")
        rest = rest.strip()
        first = first or pid
        if rest.startswith(("clone", "fork", "vfork")) and "<unfinished" in rest:
            pending[pid] = rest
            continue
        if rest.startswith(("<... clone", "<... fork", "<... vfork")):
            rest = pending.pop(pid, "") + rest
        elif not rest.startswith(("clone", "fork", "vfork")):
            continue
        result = rest.rsplit("=", 1)[-1].strip().split()[0]
        if result.isdigit():
            calls.append((pid, rest, result))
    own = {first}
    grew = True
    while grew:
        grew = False
        for pid, call, result in calls:
            if pid in own and "CLONE_THREAD" in call and result not in own:
                own.add(result)
                grew = True
    return [(call, result) for pid, call, result in calls if pid in own and "CLONE_THREAD" not in call]


def test_the_engine_starts_its_processes_without_copying_itself(env, tmp_path):
    """The engine starts workers and the byte-compiler with posix_spawn()
    (CLONE_VM | CLONE_VFORK), not fork(): a fork() of the multithreaded
    daemon copied its page tables and write-protected its memory, and every
    one of its threads then faulted (with TLB shoot-downs) on its next
    writes, a stall of every invoke in flight (docs/internals/performance-log.md, round
    28). Here the CLI's embedded engine (the same code) installs a package
    (its byte-compile) and runs a function (its worker)."""
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace is not installed")
    wheel = pkgindex.build_wheel(tmp_path / "wheels", "spawnpkg", "1.0", files={"spawnpkg/__init__.py": "X = 7\n"})
    ix = pkgindex.Index()
    ix.add(wheel)
    ix.start()
    (tmp_path / "sp.py").write_text("@requirements({'spawnpkg': ''})\n"
                                    "def main():\n"
                                    "    import spawnpkg\n"
                                    "    return spawnpkg.X\n")
    trace = tmp_path / "trace"
    try:
        r = subprocess.run([strace, "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o", str(trace), str(CLI),
                            "run", "--index-url", ix.url, "--json", str(tmp_path / "sp.py")],
                           env=env, capture_output=True, text=True, timeout=120)
    finally:
        ix.stop()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == 7
    made = _process_clones(trace.read_text())
    assert len(made) >= 2, f"expected the byte-compiler and a worker: {made}"
    copied = [call for call, _ in made if "CLONE_VFORK" not in call or "CLONE_VM" not in call]
    assert not copied, f"processes started by copying the engine: {copied}"
