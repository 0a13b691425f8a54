#!/usr/bin/python3
"""pysprinter.Client's cost per call: N sequential `Client.invoke()` of a
deployed trivial function, p50/p99 per call, the client process's CPU per
call (user + system, getrusage) and how many TCP connections it opened.

Usage: bench_python_client.py BUILD_DIR [N] [LABEL=PYTHON_DIR ...]
Each PYTHON_DIR holds a `pysprinter` package (default: this tree's
python/); e.g. the client of another commit, made with
`git archive COMMIT python | tar -x -C /tmp/old` and passed as
old=/tmp/old/python. All run against one daemon, alternated in rounds, so
their figures are from the same sitting. Not a test: it prints figures."""
import json
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_workers as bw  # noqa: E402
import benchtable  # noqa: E402

DRIVER = r'''
import json, resource, socket, sys, time
sys.path.insert(0, sys.argv[1])
import pysprinter
opened = [0]
real = socket.create_connection
def counting(*a, **kw):
    opened[0] += 1
    return real(*a, **kw)
socket.create_connection = counting
url, token, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
c = pysprinter.Client(server=url, token=token)
for i in range(20):                      # warm up the instance and the client
    assert c.invoke("benchfn", i) == i + 1
lat = []
r0 = resource.getrusage(resource.RUSAGE_SELF)
for i in range(n):
    t = time.perf_counter()
    v = c.invoke("benchfn", i)
    lat.append(time.perf_counter() - t)
    assert v == i + 1, v
r1 = resource.getrusage(resource.RUSAGE_SELF)
if hasattr(c, "close"):
    c.close()
lat.sort()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"p50": lat[len(lat) // 2], "p99": lat[min(n - 1, int(n * 0.99))],
                  "cpu": cpu / n, "conns": opened[0]}))
'''


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else bw.ROOT / "build").resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 2000
    clients = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a) or {"this": str(bw.ROOT / "python")}
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    tmp, home = bw.temp_home("bench-python-client-")
    d = bw.Daemon(build, home, "http://127.0.0.1:9/simple", os.environ.get("BENCH_SANDBOX", "full")).start()
    try:
        c = bw.Client(d.port)
        st, out = c.call("POST", "/v1/functions", {"name": "benchfn", "filename": "b.py",
                                                   "source": "def f(x: int):\n    return x + 1\n"})
        if st not in (200, 201):
            raise RuntimeError(f"deploy failed: {st} {out}")
        got = {label: [] for label in clients}
        for _ in range(rounds):
            for label, pydir in clients.items():
                p = subprocess.run([bw.PY, "-c", DRIVER, pydir, f"http://127.0.0.1:{d.port}", bw.TOKEN, str(n)],
                                   capture_output=True, text=True, timeout=600)
                if p.returncode != 0:
                    raise RuntimeError(f"{label}: {p.stderr}")
                got[label].append(json.loads(p.stdout))
        for label, runs in got.items():
            for k, r in enumerate(runs, 1):
                print(f"{label:10s} round {k}  N={n}  p50 {r['p50'] * 1e3:.3f} ms  p99 {r['p99'] * 1e3:.3f} ms  "
                      f"client CPU {r['cpu'] * 1e6:.0f} us/call  TCP connections {r['conns']} (for 20 + N calls)")
            best = min(runs, key=lambda r: r["p50"])
            benchtable.row(f"Python client invoke p50 / p99 ({label})",
                           f"{best['p50'] * 1e3:.3f} / {best['p99'] * 1e3:.3f} ms",
                           goal="-", met=None)
    finally:
        d.stop()


if __name__ == "__main__":
    main()
