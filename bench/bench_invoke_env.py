#!/usr/bin/python3
"""Invoke latency of the same trivial deployed function with an empty env
and with `requests` in it (issue 15's lead: per-invoke cost must not scale
with the environment). Usage: bench_invoke_env.py BUILD_DIR [N] [--perf OUT]
Not a test: prints p50/p99 for both and their difference."""
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_workers as bw  # noqa: E402
import benchtable  # noqa: E402


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else bw.ROOT / "build").resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 500
    perf_out = sys.argv[sys.argv.index("--perf") + 1] if "--perf" in sys.argv else None
    tmp, home = bw.temp_home("bench-invoke-env-")
    index = bw.requests_index()
    d = bw.Daemon(build, home, index.url, os.environ.get("BENCH_SANDBOX", "full")).start()
    try:
        c = bw.Client(d.port)
        res, paths = {}, {}
        for name, req in (("empty", ""), ("requests", bw.REQUESTS_ENV)):
            src = req + "def f(x: int = 1):\n    return x + 1\n"
            st, out = c.call("POST", "/v1/functions", {"name": "fn" + name, "source": src, "filename": "b.py"})
            if st not in (200, 201):
                raise RuntimeError(f"deploy failed: {st} {out}")
            paths[name] = f"/v1/functions/fn{name}/invoke?wait=true"
            bw.timed_runs(c, 20, {"args": [1]}, paths[name])
        perf = None
        if perf_out:
            perf = subprocess.Popen(["perf", "record", "-g", "-o", perf_out, "-p", str(d.proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        # Alternate the two so the machine's load weighs on both alike.
        lat = {"empty": [], "requests": []}
        for _ in range(n // 10):
            for name in lat:
                lat[name] += bw.timed_runs(c, 10, {"args": [1]}, paths[name])
        if perf:
            perf.send_signal(2)
            perf.wait()
        for name in lat:
            res[name] = (bw.pct(lat[name], 50), bw.pct(lat[name], 99))
            print(f"invoke, env {name:9s} p50 {res[name][0] * 1e3:.3f} ms  p99 {res[name][1] * 1e3:.3f} ms")
        diff = res['requests'][0] - res['empty'][0]
        print(f"env cost per invoke (p50 difference): {diff * 1e3:.3f} ms")
        benchtable.row("invoke p50, env with requests vs empty", f"{res['requests'][0] * 1e3:.3f} ms",
                       f"empty {res['empty'][0] * 1e3:.3f} ms", f"{diff * 1e3:+.3f} ms", "difference <= 0.05 ms",
                       diff <= 0.00005)
    finally:
        d.stop()
        index.stop()


if __name__ == "__main__":
    main()
