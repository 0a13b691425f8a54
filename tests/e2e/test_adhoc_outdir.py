"""Issue 15 (c): a sealed spare's output dir (made by the pool before any
tenant is known) is kept when the run left it exactly as made, and renamed
to a later spare's name instead of a new dir being made and the old one
removed (docs/data.md "Outputs"). What these tests check is what docs/data.md
promises: a run's /out is empty and shows nothing of an earlier run,
whichever tenant it was for, and no dir outlives its daemon."""
import collections
import re
import shutil

import pytest

from daemonlib import Daemon, sandbox_mode, strace_daemon, wait_for

# Reports what the run sees of its /out, then leaves a trace of the kind
# asked for: each one must either be reset or keep the dir from being used
# again.
PROBE = ("import os, time\nfrom pysprinter import output_dir\n"
         "def f(dirty: str = ''):\n"
         "    d = output_dir()\n"
         "    st = os.stat(d)\n"
         "    seen = {'ino': st.st_ino, 'mode': oct(st.st_mode & 0o7777), 'files': sorted(os.listdir(d)),\n"
         "            'xattrs': sorted(os.listxattr(d)), 'size': st.st_size, 'uid': st.st_uid,\n"
         "            'me': os.getuid(),\n"
         "            'atime': st.st_atime_ns, 'mtime': st.st_mtime_ns}\n"
         "    if dirty == 'utime':\n"
         "        os.utime(d, ns=(10**17, 10**17))\n"
         "    elif dirty == 'touch':\n"
         "        open(os.path.join(d, 'x'), 'w').close()\n"
         "        os.unlink(os.path.join(d, 'x'))\n"
         "    elif dirty == 'churn':\n"
         "        for i in range(300):\n"
         "            open(os.path.join(d, f'file-with-a-long-name-{i:04}'), 'w').close()\n"
         "        for i in range(300):\n"
         "            os.unlink(os.path.join(d, f'file-with-a-long-name-{i:04}'))\n"
         "    elif dirty == 'file':\n"
         "        open(os.path.join(d, 'left'), 'w').write('secret')\n"
         "    elif dirty == 'chmod':\n"
         "        os.chmod(d, 0o755)\n"
         "    elif dirty == 'xattr':\n"
         "        try:\n"
         "            os.setxattr(d, 'user.left', b'secret')\n"
         "        except OSError:\n"
         "            pass\n"
         "    seen['end'] = time.time_ns()\n"
         "    return seen\n")

DIRT = ["", "utime", "", "touch", "churn", "", "file", "chmod", "xattr", ""]


def full_daemon(tmp_path):
    mode = sandbox_mode(tmp_path)
    if mode != "full":
        pytest.skip("sealed spares and kept output dirs are the full sandbox's")
    d = Daemon(tmp_path / "d", sandbox=mode)
    d.start()
    return d


def probe(d, dirty, token):
    st, out = d.call("POST", "/v1/runs?wait=true", {"source": PROBE, "args": [dirty]}, token=token)
    assert st == 200 and out["status"] == "succeeded", out
    return out["result"]


def test_spare_output_dirs_are_used_again_and_show_nothing_of_earlier_runs(tmp_path):
    """200 runs of two tenants, each leaving a trace (a time set on its
    /out, a file made and removed, 300 made and removed, a file left, a
    chmod, an xattr): every run's /out is empty, 0700, without xattr, of a
    fresh dir's size, with no time set by an earlier run; and dirs are used again across tenants (before: a new
    dir per spare, each inode seen once)."""
    d = full_daemon(tmp_path)
    try:
        seen_by = {}
        fresh = None
        for i in range(200):
            token = "alice" if i % 2 == 0 else "bob"
            dirty = DIRT[i % len(DIRT)]
            seen = probe(d, dirty, token)
            if fresh is None:
                fresh = seen
            assert seen["files"] == [] and seen["mode"] == "0o700" and seen["xattrs"] == [], (i, seen)
            # Each run is a uid of its own (helper-222): its /out is its.
            assert seen["size"] == fresh["size"] and seen["uid"] == seen["me"], (i, seen, fresh)
            for t in ("atime", "mtime"):
                assert seen[t] > 10**18, (i, t, "an earlier run's time shows", seen)
            seen_by.setdefault(seen["ino"], set()).add(token)
        shared = [ino for ino, who in seen_by.items() if len(who) == 2]
        assert shared, "no spare's output dir was used again"
        assert len(seen_by) < 150, f"{len(seen_by)} dirs for 200 runs: dirs are not used again"
    finally:
        d.stop()
    # Every dir goes with the daemon's workers.
    assert [p for p in (d.home / "outputs").iterdir()] == []


def test_kept_output_dirs_are_swept_after_kill9(tmp_path):
    """A daemon killed with SIGKILL leaves its workers' output roots (kept
    dirs among them); the next daemon removes them."""
    d = full_daemon(tmp_path)
    try:
        for i in range(20):
            probe(d, "", "alice" if i % 2 else "bob")
        old = {p.name for p in (d.home / "outputs").iterdir()}
        assert old, "no output root while running"
        d.kill9()
        d.start()
        probe(d, "", "alice")

        def swept():
            return not old & {p.name for p in (d.home / "outputs").iterdir()}
        wait_for(swept, "the killed daemon's output dirs to be swept", timeout=30)
    finally:
        d.stop()


def test_a_finished_runs_groups_and_dir_are_recycled_without_kills_or_mkdir(tmp_path):
    """Counted with strace on the daemon over 40 sequential runs (after
    the first ones): the janitor waits for the worker's report that a run's
    processes are reaped before it recycles the run's groups, and what is
    still there then (a process whose exit the load slowed) is sent one
    SIGKILL and waited for, never killed again while it exits (before: a
    SIGKILL every 1 ms, 58 to one pid in 40 runs under load); and a spare's
    output dir is an earlier spare's, renamed: no mkdir or rmdir under
    $DATA/outputs per run (before: one of each)."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    d = full_daemon(tmp_path)
    trace = tmp_path / "recycle.trace"
    try:
        for i in range(10):
            probe(d, "", "alice" if i % 2 else "bob")
        runs = 40
        with strace_daemon(d, ["kill", "mkdir", "rmdir", "rename"], trace) as lines:
            for i in range(runs):
                probe(d, "", "alice" if i % 2 else "bob")
        # "TID kill(PID, SIGKILL) = 0": by thread and target.
        kills = collections.Counter()
        for ln in lines("SIGKILL"):
            m = re.match(r"(\d+)\s+kill\((\d+), SIGKILL\)", ln)
            if m:
                kills[m.groups()] += 1
        made = [ln for ln in lines("mkdir(") + lines("rmdir(") if "/outputs/" in ln]
        renamed = [ln for ln in lines("rename(") if "/outputs/" in ln]
        again = {k: n for k, n in kills.items() if n > 1}
        assert not again, f"processes killed more than once ((thread, pid): kills): {again}"
        assert len(made) <= runs // 4, f"{len(made)} output dirs made or removed for {runs} runs: {made[:5]}"
        assert len(renamed) >= runs // 2, f"only {len(renamed)} output dirs used again for {runs} runs"
    finally:
        d.stop()
