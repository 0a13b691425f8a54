"""The invoke tail (issue 15 b, p99 <= 2 ms): wrk at concurrency 1 and 8 on
both invoke paths of a deployed trivial function, and, with --trace N, N
sequential invokes timed one by one (the slowest listed with their start
time, for lining up with strace/perf).

Usage: /usr/bin/python3 bench/bench_tail.py BUILD_DIR [--secs S] [--trace N [--burst S]]
(TRACE_OUT=FILE: every traced invoke as JSON, CLOCK_MONOTONIC starts)
Benchmarks are not tests: figures move with the machine's load."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import http.client

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_runpath as rp  # noqa: E402


def wrk(port, path, conc, secs):
    """(rate, p50 ms, p99 ms): bench_runpath's wrk run."""
    rate, _, p99, p50 = rp.wrk(port, path, seconds=secs, conns=conc)
    return rate, p50, p99


def trace(port, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    rows = []
    for _ in range(n):
        t0 = time.time()
        p0 = time.perf_counter()
        m0 = time.monotonic()
        st, body = rp.call(c, rp.PATHS["v1"], {"args": [1]})
        rows.append(((time.perf_counter() - p0) * 1e3, t0, json.loads(body).get("timings"), m0))
    if os.environ.get("TRACE_OUT"):
        # Every invoke: latency ms, CLOCK_MONOTONIC start (perf record -k
        # mono lines them up with the scheduler's events), timings.
        pathlib.Path(os.environ["TRACE_OUT"]).write_text(json.dumps([(r[0], r[3], r[2]) for r in rows]))
    lat = sorted(r[0] for r in rows)
    print(f"  trace {n}: p50 {lat[n // 2]:.3f} p99 {lat[int(n * .99)]:.3f} max {lat[-1]:.3f} ms;"
          f" >1 ms: {sum(1 for x in lat if x > 1)}  >2 ms: {sum(1 for x in lat if x > 2)}")
    # Where the slow ones (> 2 ms) spent it: the phase that took most.
    blame = {}
    for ms, t0, tm, _ in rows:
        if ms <= 2 or not tm:
            continue
        parts = {k: tm.get(k, 0) for k in ("queue_ms", "acquire_ms", "fork_ms", "run_ms")}
        parts["daemon outside the engine"] = ms - tm.get("total_ms", 0) - tm.get("queue_ms", 0)
        k = max(parts, key=parts.get)
        blame[k] = blame.get(k, 0) + 1
    print(f"    slow (> 2 ms) by their largest phase: {blame}")
    for ms, t0, tm, _ in sorted(rows, key=lambda r: -r[0])[:int(os.environ.get("TRACE_SHOW", "15"))]:
        print(f"    {ms:7.3f} ms at {t0:.6f} timings {json.dumps(tm) if tm else ''}")


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    secs = int(sys.argv[sys.argv.index("--secs") + 1]) if "--secs" in sys.argv else 5
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-tail-"))
    proc, port = rp.start(build, tmp)
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", "/v1/functions", body=json.dumps({"name": "benchfn", "filename": "b.py",
                                                            "source": rp.SOURCE}),
                  headers={"Authorization": "Bearer " + rp.TOKEN, "Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status in (200, 201), r.read()
        r.read()
        for path in rp.PATHS.values():
            rp.sequential(port, path, 50)
        print(f"build {build} pid {proc.pid} port {port}", flush=True)
        if "--trace" in sys.argv:
            time.sleep(float(os.environ.get("TRACE_WAIT", "0")))  # time to attach strace/perf
            if "--burst" in sys.argv:
                # The tail right after a busy spell (bench-workers.sh's -c1
                # lines follow -c8 bursts): the WAL is long, the
                # checkpointer catching up.
                wrk(port, rp.PATHS["v1"], 8, int(sys.argv[sys.argv.index("--burst") + 1]))
            trace(port, int(sys.argv[sys.argv.index("--trace") + 1]))
            if os.environ.get("TRACE_HOLD"):
                input("hold> ")
            return
        for conc in (1, 8):
            for name, path in rp.PATHS.items():
                rate, p50, p99 = wrk(port, path, conc, secs)
                print(f"  {name:6s} -c{conc}: {rate:7.0f} /s  p50 {p50:.3f} ms  p99 {p99:.3f} ms", flush=True)
    finally:
        if os.environ.get("TAIL_LOG"):
            shutil.copy(tmp / "daemon.log", os.environ["TAIL_LOG"])
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
