#!/usr/bin/python3
"""Two builds' CPU per sandboxed ad-hoc run, measured at the same time, for
an A/B of a change on a machine others share (goal (c)).

Usage: /usr/bin/python3 bench/ab_cpu_per_run.py BUILD_A BUILD_B [SECONDS] [ROUNDS]   (root)

bench_cpu_per_run.py measures one daemon; alternating two builds with it
on a 2-CPU machine where others work moved each figure by +-15% between
runs (docs/internals/performance-log.md, round 25), more than the changes it judged.
Here both daemons run at once, each in a v1 cpuacct cgroup of its own,
each under `wrk -c4` on `/v1/runs?wait=true` (env with requests, trivial
function) for the same SECONDS: whatever else the machine does, both
share it. Each round prints both rates and CPU per run (the daemon's whole
tree, kernel work included); an A/A pair (one build twice) differed by
<= 1% per round here. Benchmarks are not tests."""
import os
import pathlib
import sys
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_cpu_per_run as cpr  # noqa: E402
import bench_workers as bw  # noqa: E402


def usage(cg):
    return int((cg / "cpuacct.usage").read_text())


def one_round(daemons, cgroups, body, seconds):
    rates = [0.0, 0.0]

    def load(i):
        rates[i] = bw.wrk_throughput(daemons[i].port, seconds, 4, body, "/v1/runs?wait=true")[0]
    before = [usage(cg) for cg in cgroups]
    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [(rates[i], (usage(cgroups[i]) - before[i]) / 1e6 / max(rates[i] * seconds, 1)) for i in range(2)]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    builds = [pathlib.Path(b).resolve() for b in sys.argv[1:3]]
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    parent = cpr.cpuacct_dir()
    if parent is None or not parent.is_dir():
        print("no v1 cpuacct hierarchy here")
        return
    index = bw.requests_index()
    cgroups, daemons = [], []
    try:
        for i, build in enumerate(builds):
            cg = parent / f"bench-ab-{os.getpid()}-{i}"
            cg.mkdir()
            cgroups.append(cg)
            _tmp, home = bw.temp_home(f"bench-ab{i}-")
            daemons.append(cpr.start_daemon(build, home, index, "full", cg))
        body = {"source": bw.REQUESTS_ENV + "def f(x: int = 1):\n    return x + 1\n", "filename": "bench.py",
                "args": [1]}
        for d in daemons:  # the env installed, the workers settled, spares grown
            bw.timed_runs(bw.Client(d.port), 30, body)
            bw.wrk_throughput(d.port, 2, 4, body, "/v1/runs?wait=true")
        diffs = []
        for _ in range(rounds):
            (ra, ca), (rb, cb) = one_round(daemons, cgroups, body, seconds)
            diffs.append((cb - ca) / ca * 100)
            print(f"A {ra:.0f} runs/s {ca:.3f} ms | B {rb:.0f} runs/s {cb:.3f} ms | B vs A {diffs[-1]:+.1f}%",
                  flush=True)
        diffs.sort()
        print(f"B vs A, CPU per run: median {diffs[len(diffs) // 2]:+.1f}% over {rounds} rounds of {seconds} s "
              f"(A {builds[0]}, B {builds[1]})")
    finally:
        for d in daemons:
            d.stop()
        for cg in cgroups:
            cpr.remove_cgroup(cg)


if __name__ == "__main__":
    main()
