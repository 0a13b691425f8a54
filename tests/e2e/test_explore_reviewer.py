"""Review of the environment holds and `env verify`: what a daemon keeps
open for an environment it re-resolves, and where verify reads."""
import json
import os

import pytest

from conftest import CLI, DAEMON, WORKER
import pkgindex
from daemonlib import wait_for
from test_explore_envhold import daemon, source, writable
from test_explore_gc import NOSANDBOX, write_fn

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


def record_fds(pid, envs):
    """The daemon's open descriptors on environment records."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(envs) + "/"):
            n += 1
    return n


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

