#!/usr/bin/python3
"""SQLite writes per invoke and invokes/s (docs/internals/performance-log.md "Run records:
group commit"). For each build, alternately (A, B, A, B, …):
  - N sequential invokes of a deployed trivial function under
    `strace -f -p PID` (fcntl, pwrite64, fdatasync, fsync): per invoke, the
    syscalls and the write transactions (SQLite takes the WAL write lock,
    an F_WRLCK on byte 120 of the -shm file, once per write transaction);
  - the same with 8 clients at once (transactions_c8: per invoke);
  - wrk -t2 -c8 -d5s on /v1/functions/benchfn/invoke?wait=true: invokes/s,
    p50, p99.
Usage: bench/bench_store_writes.py BUILD_A BUILD_B [--pairs 3] [--n 200]
Informational: prints figures, exits 0 unless it cannot run."""
import argparse
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from bench_workers import Client, Daemon  # noqa: E402
from bench_connections import wrk_latency  # noqa: E402

SRC = "def f(x: int = 1):\n    return x + 1\n"
INV = {"kwargs": {"x": 2}}
PATH = "/v1/functions/benchfn/invoke?wait=true"


def strace_counts(d, n, conc=1):
    out = pathlib.Path(tempfile.mkdtemp()) / "trace"
    tr = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=fcntl,pwrite64,fdatasync,fsync", "-o", str(out),
                           "-p", str(d.proc.pid)], stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # strace attaches to every thread
    def loop(k):
        c = Client(d.port)
        for _ in range(k):
            st, b = c.call("POST", PATH, INV)
            if st != 200:
                raise RuntimeError(f"invoke failed: {st} {b}")
    threads = [threading.Thread(target=loop, args=(n // conc,)) for _ in range(conc)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    n = (n // conc) * conc
    time.sleep(0.5)
    tr.terminate()
    tr.wait()
    text = out.read_text()
    counts = {k: len(re.findall(rf"\b{k}\(", text)) for k in ("fcntl", "pwrite64", "fdatasync", "fsync")}
    counts["transactions"] = len(re.findall(r"F_SETLK, \{l_type=F_WRLCK, l_whence=SEEK_SET, l_start=120, l_len=1",
                                            text))
    return {k: v / n for k, v in counts.items()}


def one(build, n):
    home = pathlib.Path(tempfile.mkdtemp()) / "home"
    home.mkdir()
    d = Daemon(pathlib.Path(build), home, "http://127.0.0.1:9/simple", "none").start()
    try:
        c = Client(d.port)
        st, out = c.call("POST", "/v1/functions", {"name": "benchfn", "source": SRC, "filename": "bench.py"})
        if st not in (200, 201):
            raise RuntimeError(f"deploy failed: {st} {out}")
        for _ in range(50):
            c.call("POST", PATH, INV)
        per = strace_counts(d, n)
        per["transactions_c8"] = strace_counts(d, n * 2, 8)["transactions"]
        p50, p99, rps, bad = wrk_latency(d.port, 5, 8, INV, PATH)
        per.update(p50=p50, p99=p99, rps=rps, bad=bad)
        return per
    finally:
        d.stop()
        shutil.rmtree(home.parent, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--n", type=int, default=200)
    o = ap.parse_args()
    res = {o.a: [], o.b: []}
    for i in range(o.pairs):
        for build in (o.a, o.b):
            r = one(build, o.n)
            res[build].append(r)
            print(f"pair {i + 1} {build}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), flush=True)
    keys = ["transactions", "transactions_c8", "fcntl", "pwrite64", "fdatasync", "fsync", "rps", "p50", "p99"]
    print("| per invoke / figure | " + " | ".join(res) + " |")
    print("|---|" + "---|" * len(res))
    for k in keys:
        cells = []
        for build in res:
            v = [r[k] for r in res[build]]
            cells.append(f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})")
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
