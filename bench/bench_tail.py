"""The invoke tail (issue 15 b, p99 <= 2 ms): wrk at concurrency 1 and 8 on
both invoke paths of a deployed trivial function, and, with --trace N, N
sequential invokes timed one by one (the slowest listed with their start
time, for lining up with strace/perf).

--tails: each tail of bench-workers.sh in isolation, p50/p99/p99.9/max
from wrk's own histogram: (1) `/v1` wrk -c8 for S s, then wrk -c1 on the
Lambda route of a second function deployed just before (as bench-workers.sh
does: its first invoke starts an instance), then the same -c1 on the first
function; (2) wrk -c8 on each route. TAILS_ONLY=burst|c8 runs one of them.

Usage: /usr/bin/python3 bench/bench_tail.py BUILD_DIR [--secs S] [--trace N [--burst S]] [--tails]
(TRACE_OUT=FILE: every traced invoke as JSON, CLOCK_MONOTONIC starts;
TRACE_ROUTE=lambda: trace the Lambda route, whose answer has no timings)
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


# TAILS_REQS=PREFIX: every request's CLOCK_MONOTONIC start and end (LuaJIT's
# ffi), one file per wrk run, for lining the slow ones up with perf -k mono.
# A wrk thread's Lua state is shared by its connections, and wrk tells a
# script no connection apart: t0 is right only with one connection per
# thread, so with TAILS_REQS wrk runs one thread per connection (round 28:
# at -t2 -c8, each response was timed from the last request any of its
# thread's four connections sent, and the slow ones looked 2-6x faster).
PER_REQUEST_LUA = """local ffi = require("ffi")
ffi.cdef[[typedef struct { long tv_sec; long tv_nsec; } ts_t; int clock_gettime(int, ts_t *);]]
local ts = ffi.new("ts_t")
local function now() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9 end
local t0, f
local n = 0
setup = function(thread) n = n + 1; thread:set("tid", n) end
request = function() t0 = now(); return wrk.format() end
response = function(status, headers, body)
  if not f then f = io.open("OUT." .. tostring(tid), "w") end
  f:write(string.format("%.6f %.6f\\n", t0, now())); f:flush() end
"""


LAMBDA_SOURCE = "def handler(event, context):\n    return event['x'] + 1\n"


def wrk_tail(port, path, conc, secs):
    """wrk's own histogram: (rate, p50, p99, p99.9, max) in ms, and non-2xx;
    with TAILS_RAW=1 and conc 1 also the same from every request's own time
    (wrk corrects its histogram for coordinated omission: each response
    slower than the mean interval adds the ones a fixed-rate client would
    have waited for, so its p99 is a share of the run's *time* spent in
    stalls; the raw p99 is a share of the requests)."""
    raw_dir = None
    if os.environ.get("TAILS_RAW") and conc == 1 and not os.environ.get("TAILS_REQS"):
        raw_dir = tempfile.mkdtemp(prefix="tail-raw-")
        os.environ["TAILS_REQS"] = raw_dir + "/r"
    try:
        r = wrk_tail_run(port, path, conc, secs)
    finally:
        if raw_dir:
            del os.environ["TAILS_REQS"]
    if raw_dir:
        lat = sorted((float(b) - float(a)) * 1e3 for f in pathlib.Path(raw_dir).iterdir()
                     for a, b in (line.split() for line in f.read_text().splitlines()))
        shutil.rmtree(raw_dir, ignore_errors=True)
        n = len(lat)
        if n:
            r = r + ((lat[n // 2], lat[int(n * .99)], lat[int(n * .999)]),)
    return r


def wrk_tail_run(port, path, conc, secs):
    body = {"args": [1]} if "v1" in path else {"x": 1}
    script = pathlib.Path(tempfile.mktemp(suffix=".lua"))
    script.write_text('wrk.method = "POST"\n'
                      f'wrk.body = {json.dumps(json.dumps(body))}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {rp.TOKEN}"\n'
                      + (PER_REQUEST_LUA.replace("OUT", os.environ["TAILS_REQS"] + f".{conc}.{int(time.monotonic())}")
                         if os.environ.get("TAILS_REQS") else "") +
                      'done = function(summary, latency, requests)\n'
                      '  io.write(string.format("TAIL %d %d %d %d %d %d %d\\n", summary.requests,'
                      ' summary.duration, latency:percentile(50), latency:percentile(99),'
                      ' latency:percentile(99.9), latency.max, summary.errors.status))\n'
                      'end\n')
    m0 = time.monotonic()
    threads = conc if os.environ.get("TAILS_REQS") else 2 if conc > 1 else 1
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conc}", f"-d{secs}s", "-s", str(script),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    script.unlink()
    if os.environ.get("TAILS_MARK"):  # CLOCK_MONOTONIC span, for lining up with perf -k mono
        print(f"  mark {path} -c{conc} {m0:.6f} {time.monotonic():.6f}", flush=True)
    f = [int(x) for x in next(l for l in out.splitlines() if l.startswith("TAIL ")).split()[1:]]
    return f[0] / (f[1] / 1e6), f[2] / 1e3, f[3] / 1e3, f[4] / 1e3, f[5] / 1e3, f[6]


def show(label, r):
    print(f"  {label:34s} {r[0]:7.0f} /s  p50 {r[1]:.3f}  p99 {r[2]:.3f}  p99.9 {r[3]:.3f}"
          f"  max {r[4]:.2f} ms" + (f"  ({r[5]} non-2xx)" if r[5] else "")
          + (f"  | raw p50 {r[6][0]:.3f} p99 {r[6][1]:.3f} p99.9 {r[6][2]:.3f}" if len(r) > 6 else ""), flush=True)


def tails(port, secs):
    only = os.environ.get("TAILS_ONLY", "")
    lam = "/2015-03-31/functions/benchlam/invocations"
    if only in ("", "burst"):
        # Each -c1 line right after a -c8 burst on /v1, on each route, and
        # without a burst before: what the burst leaves behind vs the route.
        show("Lambda -c1, no burst before", wrk_tail(port, rp.PATHS["lambda"], 1, secs))
        show("/v1 -c1, no burst before", wrk_tail(port, rp.PATHS["v1"], 1, secs))
        for label, path in (("Lambda -c1, new function", lam), ("/v1 -c1", rp.PATHS["v1"]),
                            ("Lambda -c1, same function", rp.PATHS["lambda"])):
            wrk_tail(port, rp.PATHS["v1"], 8, secs)
            show("/v1 -c8 burst, then " + label, wrk_tail(port, path, 1, secs))
    if only in ("", "c8"):
        for name, path in (("v1", rp.PATHS["v1"]), ("lambda", lam)):
            show(f"{name} -c8", wrk_tail(port, path, 8, secs))


def trace(port, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    path = rp.PATHS[os.environ.get("TRACE_ROUTE", "v1")]  # TRACE_ROUTE=lambda: the Lambda route
    rows = []
    for _ in range(n):
        t0 = time.time()
        p0 = time.perf_counter()
        m0 = time.monotonic()
        st, body = rp.call(c, path, {"args": [1]} if "v1" in path else {"x": 1})
        lat = (time.perf_counter() - p0) * 1e3
        doc = json.loads(body)
        rows.append((lat, t0, doc.get("timings") if isinstance(doc, dict) else None, m0))
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
        rp.deploy(port)
        for path in rp.PATHS.values():
            rp.sequential(port, path, 50)
        print(f"build {build} pid {proc.pid} port {port}", flush=True)
        if "--tails" in sys.argv:
            # Deployed, not invoked: as bench-workers.sh's benchlam.
            st, _ = rp.call(c, "/v1/functions", {"name": "benchlam", "filename": "lam.py",
                                                 "source": LAMBDA_SOURCE})
            assert st in (200, 201), st
            time.sleep(float(os.environ.get("TRACE_WAIT", "0")))  # time to attach perf
            tails(port, secs)
            return
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
