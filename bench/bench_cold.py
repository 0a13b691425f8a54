#!/usr/bin/python3
"""Cold env first run (issue 15's kept figure: <= import + 20 ms), on N
fresh daemons.

Usage: /usr/bin/python3 bench/bench_cold.py BUILD [N] [BUILD2] [--cpu]

Installs requests once into a home (one daemon, one run), then N times:
starts a FRESH daemon on that home (packages in the store, no worker),
times one `POST /v1/runs?wait=true` of a function in the benchmarks'
env with requests (bench_workers.REQUESTS_ENV: requests and six, which
Debian's urllib3 imports without declaring it), stops the daemon. Each
sample is paired with its own baseline measured right after it:
`python3 -c 'import requests'` minus `python3 -c 'pass'` (median of 3
each), so a loaded minute moves both. With BUILD2, the two builds
alternate (A, B, A, B, ...) on the same home. Prints each sample and the
median and spread of first-run minus import.
--cpu (root, v1 cpuacct): each daemon starts in a cpuacct cgroup of its
own (beneath this script's), and the CPU its whole tree used from the
request to the answer is printed too: a figure the machine's load moves
far less than the wall time (the tree's work after the answer, spares and
the zygote's settling, is not in it). Not a test: it always exits 0 unless a daemon
cannot be started."""
import os
import pathlib
import shutil
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_workers as bw  # noqa: E402
from bench_cpu_per_run import cpuacct_dir, start_daemon  # noqa: E402

BODY = {"source": bw.REQUESTS_ENV + "def g():\n    return 2\n", "filename": "cold.py"}


def one_cold(build, home, index, sandbox, cpu=False):
    cg = None
    if cpu:
        cg = cpuacct_dir() / f"bench-cold-{os.getpid()}-{time.monotonic_ns()}"
        cg.mkdir()
    d = start_daemon(build, home, index, sandbox, cg)
    used = None
    try:
        c = bw.Client(d.port)
        before = int((cg / "cpuacct.usage").read_text()) if cg else 0
        t0 = time.perf_counter()
        st, out = c.call("POST", "/v1/runs?wait=true", BODY)
        cold = time.perf_counter() - t0
        if cg:
            used = (int((cg / "cpuacct.usage").read_text()) - before) / 1e9
        if st != 200 or out.get("status") != "succeeded":
            raise RuntimeError(f"cold run failed: {st} {out}")
    finally:
        d.stop()
        for _ in range(100):  # the tree's last processes may still be exiting
            try:
                if cg:
                    cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    imp = statistics.median(bw.spawn_baseline(3, "import requests")) - statistics.median(bw.spawn_baseline(3, "pass"))
    return cold, imp, used


def main():
    builds = [pathlib.Path(a).resolve() for a in sys.argv[1:] if not a.isdigit() and not a.startswith("--")]
    n = next((int(a) for a in sys.argv[1:] if a.isdigit()), 5)
    sandbox = "full"
    cpu = "--cpu" in sys.argv
    if cpu and (cpuacct_dir() is None or not cpuacct_dir().is_dir()):
        print("no v1 cpuacct hierarchy here: --cpu ignored")
        cpu = False
    tmp, home = bw.temp_home("bench-cold-")
    index = bw.requests_index()
    try:
        d = bw.Daemon(builds[0], home, index.url, sandbox).start()
        try:
            st, out = bw.Client(d.port).call("POST", "/v1/runs?wait=true", BODY)
            assert st == 200, out
        finally:
            d.stop()
        res = {b: [] for b in builds}
        for i in range(n):
            for b in builds:
                cold, imp, used = one_cold(b, home, index, sandbox, cpu)
                res[b].append((cold, imp, used))
                print(f"  {b}: first run {cold * 1e3:6.1f} ms  import {imp * 1e3:5.1f} ms"
                      f"  over {1e3 * (cold - imp):+6.1f} ms"
                      + (f"  tree CPU {used * 1e3:6.1f} ms" if used is not None else ""), flush=True)
        for b in builds:
            over = [1e3 * (c - i) for c, i, _ in res[b]]
            cold = [1e3 * c for c, _, _ in res[b]]
            print(f"{b}: n={n} first run median {statistics.median(cold):.1f} ms; over import: median "
                  f"{statistics.median(over):+.1f} ms, min {min(over):+.1f}, max {max(over):+.1f} "
                  f"(goal <= +20 ms; met in {sum(o <= 20 for o in over)} of {n})")
            if cpu:
                used = [1e3 * u for _, _, u in res[b]]
                print(f"{b}: daemon tree CPU from request to answer: median {statistics.median(used):.1f} ms, "
                      f"min {min(used):.1f}, max {max(used):.1f}")
    finally:
        index.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
