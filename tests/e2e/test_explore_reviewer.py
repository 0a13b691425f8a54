"""Review of the environment holds and `env verify`: what a daemon keeps
open for an environment it re-resolves, and where verify reads."""
import json
import os
import shutil

import pytest

from conftest import CLI, DAEMON, WORKER
from daemonlib import wait_for
from proctree import open_fds
from test_explore_envhold import daemon, index, source, writable  # noqa: F401 (index: the fixture)
from test_explore_gc import NOSANDBOX, write_fn

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists() or not DAEMON.exists(),
                                reason="pysprinter/pysprinterd/pysprinter-worker not built")


def record_fds(pid, envs):
    """The daemon's open descriptors on environment records."""
    return sum(t.startswith(str(envs) + "/") for t in open_fds(pid).values())


def test_no_cache_runs_of_a_held_set_do_not_pile_up_record_fds(index, tmp_path):
    """Each `no_cache` run of a requirement set the daemon holds writes its
    record again; the hold took one more descriptor (and a shared flock on
    one more set-aside record) per such run for as long as the set stayed
    in use, so a client repeating them ran the daemon out of descriptors.
    A new record naming every dir the hold names replaces the older ones."""
    d = daemon(tmp_path, index, "  worker_idle_s: 600\n  env_idle_s: 600\n")
    try:
        for _ in range(6):
            st, out = d.run(source(["aa"]), filename="f.py", no_cache=True)
            assert st == 200 and out["status"] == "succeeded" and out["result"] == ["aa data"], out
        # Polled: the collector may have a record open for a moment.
        wait_for(lambda: record_fds(d.proc.pid, d.home / "envs") == 1, "one record fd in the daemon", timeout=20)
    finally:
        d.stop()


def test_env_verify_does_not_read_through_a_symlink_in_a_store_dir(cli, index, home, tmp_path):
    """verify opened each RECORD path under the package's dir refusing a
    symlink only as the path's last component: a directory of the package
    replaced by a symlink (here to a copy elsewhere, with the same bytes)
    was read through, outside the store, and called sound. A wheel never
    installs a symlink: one in the path is damage."""
    write_fn(cli, ["aa"])
    assert json.loads(cli("run", NOSANDBOX, "--index-url", index.url, "f.py", check=0).stdout) == ["aa data"]
    (aa,) = [d for d in (home / "store").iterdir() if (d / "aa").is_dir()]
    outside = tmp_path / "outside"
    outside.mkdir()
    for f in ("__init__.py", "data.txt"):
        (outside / f).write_bytes((aa / "aa" / f).read_bytes())
    writable(aa)
    for f in os.listdir(aa / "aa"):
        p = aa / "aa" / f
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    (aa / "aa").rmdir()
    (aa / "aa").symlink_to(outside)
    p = cli("env", "verify")
    assert p.returncode == 1, p
    assert p.stdout.splitlines()[0] == \
        f"damaged: aa 1.0 ({aa.name[:12]}): aa/__init__.py: its path goes through a symlink", p.stdout
    p = cli("env", "verify", "--repair", check=0)
    assert p.stdout.splitlines()[-1] == "checked 1 package, 1 damaged, 1 removed", p.stdout
    assert not aa.exists()
    assert sorted(os.listdir(outside)) == ["__init__.py", "data.txt"]
