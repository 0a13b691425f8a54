"""Issue 15 (a), (c): an ad-hoc run of a requirement set the daemon resolved
before does not redo the seen-set lookup (the env key over the wheel-tag
list, the record's open, read and parse, a stat per store dir). These
tests check what the remembered answer must still honour: it is used when
the record cannot be read any more, never when the requirements differ or a
store dir is gone, and the env's last use still moves."""
import os
import shutil
import time

import pytest

import pkgindex
from daemonlib import Daemon, sandbox_mode, strace_daemon, wait_for

SRC = "@requirements({REQS})\ndef f():\n    import cachepkg\n    return cachepkg.VALUE\n"


def src(reqs):
    return SRC.replace("{REQS}", reqs)


def start(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    index = pkgindex.Index()
    for v in ("1.0", "2.0"):
        index.add(pkgindex.build_wheel(wheels, "cachepkg", v, files={"cachepkg/__init__.py": f"VALUE = '{v}'\n"}))
    index.add(pkgindex.build_wheel(wheels, "otherpkg", "1.0", files={"otherpkg/__init__.py": ""}))
    index.start()
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra=f"index:\n  url: {index.url}\n")
    d.start()
    return index, d


def run(d, source):
    st, out = d.call("POST", "/v1/runs?wait=true", {"source": source, "filename": "c.py"})
    assert st == 200, out
    return out


def test_a_seen_set_is_not_looked_up_again(tmp_path):
    """After the first run of a set, a run of the same set opens no env
    record (before: one open, flock, read and parse per run), counted with
    strace on the daemon (/healthz's statfs marks the moment it is attached)."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    index, d = start(tmp_path)
    trace = tmp_path / "open.trace"
    try:
        out = run(d, src("{'cachepkg': '==1.0'}"))
        assert out["status"] == "succeeded" and out["result"] == "1.0", out
        (record,) = list(d.home.rglob("envs/*.json"))
        with strace_daemon(d, ["openat"], trace) as lines:
            for _ in range(5):
                out = run(d, src("{'cachepkg': '==1.0'}"))
                assert out["status"] == "succeeded" and out["result"] == "1.0", out
            # A new set is looked up (and recorded) as before.
            out = run(d, src("{'cachepkg': '==1.0', 'otherpkg': ''}"))
            assert out["status"] == "succeeded", out
        assert not lines(record.name), lines(record.name)
        assert lines("/envs/"), "the new set's record was not looked up"
        assert len(list(d.home.rglob("envs/*.json"))) == 2
    finally:
        d.stop()
        index.stop()


def test_a_changed_requirement_gets_its_own_env(tmp_path):
    index, d = start(tmp_path)
    try:
        for v in ("1.0", "2.0", "1.0", "2.0"):
            out = run(d, src(f"{{'cachepkg': '=={v}'}}"))
            assert out["status"] == "succeeded" and out["result"] == v, out
        # The same set written another way (order, spacing) is the same env.
        out = run(d, src("{'otherpkg': '', 'cachepkg': '==2.0'}"))
        assert out["result"] == "2.0", out
        out = run(d, src("{'cachepkg': '==2.0', 'otherpkg': ''}"))
        assert out["result"] == "2.0", out
    finally:
        d.stop()
        index.stop()


def test_a_removed_store_dir_is_installed_again(tmp_path):
    """The remembered answer names store dirs; a dir removed by hand is
    never handed to a run: the set is materialised again."""
    index, d = start(tmp_path)
    try:
        out = run(d, src("{'cachepkg': '==2.0'}"))
        assert out["result"] == "2.0", out
        store = [p for p in d.home.rglob("store/*") if p.is_dir() and (p / "cachepkg").exists()]
        assert len(store) == 1, store
        for root, dirs, _ in os.walk(store[0]):
            os.chmod(root, 0o755)
        shutil.rmtree(store[0])
        out = run(d, src("{'cachepkg': '==2.0'}"))
        assert out["status"] == "succeeded" and out["result"] == "2.0", out
        assert (store[0] / "cachepkg" / "__init__.py").exists()
    finally:
        d.stop()
        index.stop()


def test_runs_of_a_seen_set_still_mark_the_env_used(tmp_path):
    """`env ls` / prune read an env's last use from its record's mtime: runs
    served from memory still move it (at most once a second)."""
    index, d = start(tmp_path)
    try:
        run(d, src("{'cachepkg': '==1.0'}"))
        run(d, src("{'cachepkg': '==1.0'}"))
        (record,) = list(d.home.rglob("envs/*.json"))
        os.utime(record, (946684800, 946684800))  # 2000-01-01
        deadline = time.time() + 20
        while record.stat().st_mtime < 946684800 + 1:
            assert time.time() < deadline, "the env's last use never moved"
            out = run(d, src("{'cachepkg': '==1.0'}"))
            assert out["result"] == "1.0", out
            time.sleep(0.05)
    finally:
        d.stop()
        index.stop()


WRITES = ("import os\nfrom pysprinter import output_dir\n"
          "def f(write: bool = False):\n"
          "    if write:\n"
          "        os.makedirs(os.path.join(output_dir(), 'sub'))\n"
          "        open(os.path.join(output_dir(), 'sub', 'x'), 'w').write('x')\n"
          "        os.chmod(os.path.join(output_dir(), 'sub'), 0o500)\n"
          "    return sorted(os.listdir(output_dir()))\n")


def test_a_runs_output_dir_goes_whether_empty_or_not(tmp_path):
    """An ad-hoc run's /out is removed after it, empty (one rmdir) or not
    (a read-only subdir with a file in it)."""
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path))
    d.start()
    try:
        ids = []
        for write in (False, True, False, True):
            st, out = d.call("POST", "/v1/runs?wait=true", {"source": WRITES, "args": [write]})
            assert st == 200 and out["status"] == "succeeded", out
            assert out["result"] == (["sub"] if write else []), out
            ids.append(out["id"])
        # Removed after the answer (off the run's path): wait for it.
        def gone():
            return not [p for p in (d.home / "outputs").rglob("*") if any(p.name.endswith(i) for i in ids)]
        wait_for(gone, "the runs' output dirs to be removed", timeout=10)
    finally:
        d.stop()


OUT_PROBE = ("import os\nfrom pysprinter import output_dir\n"
             "def f(dirty: str = ''):\n"
             "    d = output_dir()\n"
             "    st = os.stat(d)\n"
             "    seen = {'ino': st.st_ino, 'mode': oct(st.st_mode & 0o7777), 'files': sorted(os.listdir(d)),\n"
             "            'xattrs': sorted(os.listxattr(d))}\n"
             "    if dirty == 'file':\n"
             "        open(os.path.join(d, 'left'), 'w').write('secret')\n"
             "    elif dirty == 'chmod':\n"
             "        os.chmod(d, 0o777)\n"
             "    elif dirty == 'xattr':\n"
             "        try:\n"
             "            os.setxattr(d, 'user.left', b'secret')\n"
             "        except OSError:\n"
             "            return None\n"
             "    return seen\n")


def test_a_kept_output_dir_is_pristine_and_the_same_tenants(tmp_path):
    """A full-sandbox run's empty /out may be handed to the next run of the
    same tenant; never one another run wrote to, chmod'ed or tagged, and
    never to another tenant. Kept dirs serve the runs that take no sealed
    spare (a spare mounts the dir the pool made for it while idle), so this
    daemon makes none."""
    mode = sandbox_mode(tmp_path)
    d = Daemon(tmp_path / "d", sandbox=mode, config_extra="pool:\n  spares: 0\n")
    d.start()
    try:
        def probe(dirty="", token="alice"):
            st, out = d.call("POST", "/v1/runs?wait=true", {"source": OUT_PROBE, "args": [dirty]}, token=token)
            assert st == 200 and out["status"] == "succeeded", out
            return out["result"]
        first = probe()
        again = probe()
        for seen in (first, again):
            assert seen["files"] == [] and seen["mode"] == "0o700" and seen["xattrs"] == [], seen
        if mode == "full":
            assert again["ino"] == first["ino"], "the empty dir was not kept for the same tenant"
            other = probe(token="bob")
            assert other["ino"] != again["ino"] and other["files"] == [], other
        for dirty in ("file", "chmod", "xattr"):
            probe(dirty)
            seen = probe()
            assert seen["files"] == [] and seen["mode"] == "0o700" and seen["xattrs"] == [], (dirty, seen)
    finally:
        d.stop()


def test_a_seen_set_is_noted_for_each_tenant_that_runs_it(tmp_path):
    """The daemon skips noting a (tenant, lock) it noted recently; another
    tenant running the same set after it still gets the env in its list."""
    index, d = start(tmp_path)
    try:
        def envs(token):
            st, b = d.call("GET", "/v1/envs", token=token)
            assert st == 200, b
            return " ".join(" ".join(e["requirements"]) for e in b["envs"])
        for _ in range(3):
            st, out = d.call("POST", "/v1/runs?wait=true", {"source": src("{'cachepkg': '==1.0'}")}, token="alice")
            assert st == 200 and out["result"] == "1.0", out
        assert "cachepkg" in envs("alice") and "cachepkg" not in envs("bob")
        st, out = d.call("POST", "/v1/runs?wait=true", {"source": src("{'cachepkg': '==1.0'}")}, token="bob")
        assert st == 200 and out["result"] == "1.0", out
        assert "cachepkg" in envs("bob")
    finally:
        d.stop()
        index.stop()
