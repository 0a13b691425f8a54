#!/usr/bin/python3
"""The daemon's connection model (docs/internals/performance-log.md "Connections"):
  - invoke of a deployed trivial function at concurrency 8, by wrk:
    p50 / p99 latency and invokes/s;
  - 50 SSE log followers + 50 ?wait=true waiters of 10 running runs: the
    API's p50 / p99 (GET /healthz and GET /v1/runs alternately) while they
    wait, and the daemon's thread count before / while.
Usage: bench/bench_connections.py BUILD_DIR [--sandbox=none|full]
Informational: it prints figures and exits 0 unless it cannot run."""
import http.client
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_workers import TOKEN, Client, Daemon, pct  # noqa: E402


def wrk_latency(port, seconds, conc, body, path):
    """(p50 ms, p99 ms, requests/s, non-2xx) from wrk --latency."""
    script = pathlib.Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text('wrk.method = "POST"\n'
                      f'wrk.body = {json.dumps(json.dumps(body))}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n')
    out = subprocess.run(["wrk", "-t2", f"-c{conc}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v = float(m.group(1))
        return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return ms(50), ms(99), rps, int(m.group(1)) if m else 0


def threads(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Threads:"):
            return int(line.split()[1])


def gated(gate):
    return ("import os, time\ndef main():\n    for i in range(10):\n        print('line', i, flush=True)\n"
            f"    while not os.path.exists({str(gate)!r}):\n        time.sleep(0.02)\n    return 1\n")


def hold(port, path, out):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        c.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        out.append(r.status)
        r.read()
    except OSError:
        out.append(None)


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    sandbox = next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--sandbox=")), "none")
    if not shutil.which("wrk"):
        print("wrk is not installed")
        return 1
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-conn-"))
    home = tmp / "home"
    home.mkdir()
    d = Daemon(build, home, "http://127.0.0.1:9/simple", sandbox).start()
    try:
        c = Client(d.port)
        src = "def f(x: int = 1):\n    return x + 1\n"
        st, out = c.call("POST", "/v1/functions", {"name": "benchfn", "source": src, "filename": "bench.py"})
        if st not in (200, 201):
            raise RuntimeError(f"deploy failed: {st} {out}")
        inv = {"args": [1]}
        for _ in range(20):
            c.call("POST", "/v1/functions/benchfn/invoke?wait=true", inv)
        p50, p99, rps, bad = wrk_latency(d.port, 5, 8, inv, "/v1/functions/benchfn/invoke?wait=true")
        print(f"invoke, concurrency 8 (wrk -t2 -c8 -d5s): p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
              f"{rps:.0f} invokes/s  ({bad} non-2xx)")

        gate = tmp / "gate"
        ids = []
        for _ in range(10):
            st, out = c.call("POST", "/v1/runs", {"source": gated(gate), "function": "main"})
            ids.append(out["id"])
        deadline = time.time() + 60
        while time.time() < deadline:
            if all(c.call("GET", f"/v1/runs/{i}")[1]["status"] == "running" for i in ids):
                break
            time.sleep(0.05)
        before = threads(d.proc.pid)
        results = []
        ts = [threading.Thread(target=hold, args=(d.port, f"/v1/runs/{ids[i % 10]}/logs?follow=1", results))
              for i in range(50)]
        ts += [threading.Thread(target=hold, args=(d.port, f"/v1/runs/{ids[i % 10]}?wait=true", results))
               for i in range(50)]
        for t in ts:
            t.start()
        deadline = time.time() + 30
        while time.time() < deadline and threads(d.proc.pid) < before + 100 and \
                len(os.listdir(f"/proc/{d.proc.pid}/fd")) < 100:
            time.sleep(0.05)
        time.sleep(1)  # a benchmark, not a test: let the 100 connections settle
        held = threads(d.proc.pid)
        lat = []
        for i in range(400):
            t0 = time.perf_counter()
            c.call("GET", "/healthz" if i % 2 else "/v1/runs?limit=20")
            lat.append(time.perf_counter() - t0)
        print(f"50 log followers + 50 ?wait=true waiters: API p50 {pct(lat, 50) * 1e3:.2f} ms  "
              f"p99 {pct(lat, 99) * 1e3:.2f} ms; daemon threads {before} -> {held}")
        gate.write_text("go")
        for t in ts:
            t.join(60)
    finally:
        d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
