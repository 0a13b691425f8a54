"""wrk -c8 phases in a given order of routes on ONE daemon (issue 15 b):
each phase's rate, p99, disk bytes per invoke and the share of it the host
paused the VM, as bench_runpath.py's -c8 phases print them.

Usage: /usr/bin/python3 bench/c8_phases.py BUILD_DIR ROUTE... (ROUTE: v1
or lambda; e.g. `v1 lambda v1 lambda`). The daemon is warmed with 20
sequential invokes per route only, so the first phase also shows the
function's pool growing to the concurrency. BENCH_DIR: where the daemon's
home is made (/dev/shm for tmpfs). Alternate builds in pairs to compare
them: the figures move with the machine's load.
Benchmarks are not tests."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_runpath as runpath  # noqa: E402


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    routes = sys.argv[2:] or ["v1", "lambda"]
    with runpath.serving(build, "c8-phases-") as (proc, port, tmp):
        for path in runpath.PATHS.values():
            runpath.sequential(port, path, 20)
        for i, name in enumerate(routes):
            w, io = runpath.wrk_phase(port, runpath.PATHS[name], 8, proc.pid, tmp / "home")
            if w:
                print(f"  {i} {name:6s} wrk -c8: {w[0]:.0f} /s  p99 {w[2]} ms  ({w[1]} non-2xx); {io}", flush=True)


if __name__ == "__main__":
    main()
