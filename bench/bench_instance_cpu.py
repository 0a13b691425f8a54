"""The warm instance's own CPU per invoke (issue 15 b, round 7): the time on
CPU (/proc/PID/task/*/schedstat, ns) of a deployed trivial function's
instance over N sequential invokes on each route, beside bench_runpath.py.
Usage: /usr/bin/python3 bench/bench_instance_cpu.py BUILD N [strace|perf]
  strace: the instance's syscalls over 200 invokes (strace -f -c -p);
  perf: perf record -g -p INSTANCE over 3000 invokes into $BENCH_PERF_OUT (perf-inst.data).
Benchmarks are not tests: figures move with the machine's load."""
import http.client
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_runpath as b

def desc(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for t in os.listdir(f"/proc/{p}/task"):
            try:
                kids = open(f"/proc/{p}/task/{t}/children").read().split()
            except OSError:
                kids = []
            for k in kids:
                out.append(int(k)); todo.append(int(k))
    return out

def cpu(pid):
    tot = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            tot += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
    except OSError:
        return None
    return tot

build = pathlib.Path(sys.argv[1]).resolve(); n = int(sys.argv[2]); mode = sys.argv[3] if len(sys.argv) > 3 else ""
tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-inst-"))
proc, port = b.start(build, tmp)
try:
    b.deploy(port)
    res = {}
    for name, path in b.PATHS.items():
        b.sequential(port, path, 50)
        ps = desc(proc.pid)
        before = {p: cpu(p) for p in ps}
        t0 = time.perf_counter()
        b.sequential(port, path, n)
        el = time.perf_counter() - t0
        after = {p: cpu(p) for p in ps}
        deltas = sorted(((after[p] - before[p]) if after[p] is not None and before[p] is not None else 0, p) for p in ps)
        d, ip = deltas[-1]
        res[name] = ip
        print(f"{name}: instance pid {ip} cpu/invoke {d/n/1000:.1f} us  wall/invoke {el/n*1e6:.0f} us", flush=True)
    ip = res["v1"]
    if mode == "strace":
        st = subprocess.Popen(["strace", "-f", "-c", "-o", str(tmp / "st.txt"), "-p", str(ip)], stderr=subprocess.DEVNULL)
        time.sleep(0.5); b.sequential(port, b.PATHS["v1"], 200); st.send_signal(signal.SIGINT); st.wait()
        print((tmp / "st.txt").read_text())
    if mode == "perf":
        pr = subprocess.Popen(["perf", "record", "-g", "-o", os.environ.get("BENCH_PERF_OUT", "perf-inst.data"), "-p", str(ip)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5); b.sequential(port, b.PATHS["v1"], 3000); pr.send_signal(signal.SIGINT); pr.wait()
finally:
    proc.send_signal(signal.SIGTERM); proc.wait(30); shutil.rmtree(tmp, ignore_errors=True)
