"""The daemon's malloc (docs/internals/performance-log.md "The daemon's CPU per invoke
(round 19)"): pysprinterd runs on the allocator the build chose
(`-Dallocator=`, mimalloc by default; glibc's with `system` or under a
sanitizer), and only pysprinterd does: the
worker and its warm instances keep glibc's malloc (and worker-heap.c),
whatever the daemon links."""
import json
import pathlib

from conftest import BUILD
from daemonlib import Daemon
from proctree import descendants

LIBS = {"mimalloc": "libmimalloc.so", "jemalloc": "libjemalloc.so"}


def allocator():
    opts = json.loads((BUILD / "meson-info" / "intro-buildoptions.json").read_text())
    values = {o["name"]: o["value"] for o in opts}
    chosen = values.get("allocator")
    assert chosen, "the build has no allocator option (meson_options.txt)"
    # A sanitizer's build keeps the sanitizer's malloc (src/daemon/meson.build).
    return chosen if values.get("b_sanitize", "none") == "none" else "system"


def mapped(pid, lib):
    maps = pathlib.Path(f"/proc/{pid}/maps").read_text()
    return lib in maps


def test_daemon_runs_on_the_chosen_allocator_and_its_instances_do_not(tmp_path):
    chosen = allocator()
    with Daemon(tmp_path / "d").serving() as d:
        st, b = d.call("POST", "/v1/functions", {"name": "f", "source": "def handler(x=1, context=None):\n    return x\n"})
        assert st == 201, b
        st, b = d.call("POST", "/v1/functions/f/invoke?wait=true", {"args": [3]})
        assert st == 200 and b["result"] == 3, b
        for name, lib in LIBS.items():
            assert mapped(d.proc.pid, lib) == (name == chosen), (name, chosen)
        kids = descendants(d.proc.pid)
        assert kids, "no worker or instance under the daemon"
        for pid in kids:
            for lib in LIBS.values():
                assert not mapped(pid, lib), (pid, lib)
