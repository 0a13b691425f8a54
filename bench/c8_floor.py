#!/usr/bin/python3
"""The -c8 floor of the invoke's shape (issue 15 b, docs/internals/performance-log.md
"The -c8 floor (round 23)"): builds bench/c8_floor.c (a model of
pysprinterd's hops whose stages spin a chosen CPU time instead of their
work) and runs `wrk -t2 -c8` against each design and cost given, in
alternated rounds, printing rate, p50 and p99. It answers "what p99 does
this host allow a design that spends this much CPU per invoke", beside
pysprinterd's own figure from the same sitting (bench_runpath's daemon).

Usage: /usr/bin/python3 bench/c8_floor.py [ROUNDS] [BUILD]
  BUILD: a pysprinterd build dir to measure in the same rounds (optional).
Benchmarks are not tests: the figures move with the machine's load."""
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_runpath as B  # noqa: E402

# (name, mode, http_us, inst_us, watch_us, writer_us): pysprinterd's
# per-invoke CPU by thread at -c8 (round 22's profile: HTTP threads ~100 µs
# with their kernel time, the instance ~45, the watcher ~37, the writer ~22)
# and the same CPU with the designs' hops changed.
CASES_ALL = [
    ("direct: MHD + 100 µs, no instance", "direct", 100, 0, 0, 0),
    ("watcher: today's hops, today's CPU", "watcher", 100, 45, 37, 22),
    ("inline: the HTTP thread waits, same CPU", "inline", 100, 45, 37, 22),
    ("watcher, 25% less CPU everywhere", "watcher", 75, 34, 28, 16),
    ("watcher, 40% less CPU everywhere", "watcher", 60, 27, 22, 13),
    ("watcher, 55% less CPU everywhere", "watcher", 45, 20, 17, 10),
    ("watcher, zero work (the hops alone)", "watcher", 0, 0, 0, 0),
    ("watcher, 40% less, writer every 100 ms", "watcher", 60, 27, 22, 13, 100000),
    ("watcher, 25% less, writer every 100 ms", "watcher", 75, 34, 28, 16, 100000),
    ("loop: the sender's epoll reads the reply", "loop", 100, 45, 37, 22),
    ("loop, zero work (the hops alone)", "loop", 0, 0, 0, 0),
    ("loop, 25% less CPU everywhere", "loop", 75, 34, 28, 16),
]
# CASES=i,j,...: only those (by index)
CASES = [CASES_ALL[int(i)] for i in os.environ["CASES"].split(",")] if os.environ.get("CASES") else CASES_ALL


def build():
    out = pathlib.Path(tempfile.gettempdir()) / "c8_floor"
    subprocess.run(["cc", "-O2", "-o", str(out), str(HERE / "c8_floor.c"), "-lmicrohttpd", "-lpthread"], check=True)
    return out


def wrk(port, seconds=5):
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    scale = {"us": 1e-3, "ms": 1, "s": 1e3}

    def pct(n):
        m = re.search(n + r"%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * scale[m.group(2)]
    return rate, pct("50"), pct("99")


def floor_case(exe, case):
    port = B.free_port()
    env = dict(os.environ, WRITER_PERIOD_US=str(case[6]) if len(case) > 6 else "1000")
    p = subprocess.Popen([str(exe), case[1], str(port), *map(str, case[2:6])], stdout=subprocess.PIPE, env=env)
    try:
        assert p.stdout.readline().strip() == b"ready"
        wrk(port, 1)
        return wrk(port)
    finally:
        p.kill()
        p.wait()


def daemon_case(build_dir):
    with B.serving(pathlib.Path(build_dir), "c8-floor-") as (proc, port, tmp):
        B.sequential(port, B.PATHS["v1"], 200)
        B.wrk(port, B.PATHS["v1"], 2, 8)
        w = B.wrk(port, B.PATHS["v1"], 5, 8)
        return w[0], w[3], w[2]


script = pathlib.Path(tempfile.mktemp(suffix=".lua"))
script.write_text('wrk.method = "POST"\nwrk.body = "{\\"args\\": [1]}"\n'
                  'wrk.headers["Content-Type"] = "application/json"\n')


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    build_dir = sys.argv[2] if len(sys.argv) > 2 else None
    exe = build()
    for r in range(rounds):
        print(f"round {r + 1} ({time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.1f})", flush=True)
        for case in CASES:
            rate, p50, p99 = floor_case(exe, case)
            print(f"  {case[0]:44s} {rate:8.0f} /s  p50 {p50:.2f} ms  p99 {p99:.2f} ms", flush=True)
        if build_dir:
            rate, p50, p99 = daemon_case(build_dir)
            print(f"  {'pysprinterd (bench_runpath, /v1, tmpfs if BENCH_DIR)':44s} {rate:8.0f} /s  "
                  f"p50 {p50:.2f} ms  p99 {p99:.2f} ms", flush=True)
    script.unlink()


if __name__ == "__main__":
    main()
