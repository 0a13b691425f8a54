"""How long the instance freezer's freeze writes take (strace -T on the
inst-freezer thread, 8 s) while 6 clients invoke one function with 25-45 ms
gaps, so that its instances are frozen and thawed all the time. Before
round 8 each was a hold of the pool lock (docs/internals/performance-log.md "Invoke path:
the instance's doom check, freezer and wake-ups").
Usage: /usr/bin/python3 bench/bench_freeze_writes.py BUILD
Benchmarks are not tests."""
import http.client, json, pathlib, random, re, signal, subprocess, sys, tempfile, threading, time, os
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_runpath as b
build = pathlib.Path(sys.argv[1]).resolve()
tmp = pathlib.Path(tempfile.mkdtemp(prefix="doom-fw-"))
proc, port = b.start(build, tmp)
H = {"Authorization": "Bearer " + b.TOKEN, "Content-Type": "application/json"}
try:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/v1/functions", body=json.dumps({"name": "side", "filename": "b.py", "source": b.SOURCE}), headers=H)
    c.getresponse().read()
    stop = threading.Event()
    def side(seed):
        rnd = random.Random(seed)
        cc = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            cc.request("POST", "/v1/functions/side/invoke?wait=true", body='{"args":[1]}', headers=H)
            cc.getresponse().read()
            time.sleep(rnd.uniform(0.025, 0.045))
    ths = [threading.Thread(target=side, args=(i,)) for i in range(6)]
    [t.start() for t in ths]
    time.sleep(1)
    tid = [t for t in os.listdir(f"/proc/{proc.pid}/task") if open(f"/proc/{proc.pid}/task/{t}/comm").read().strip() == "inst-freezer"][0]
    out = tmp / "st.txt"
    st = subprocess.Popen(["strace", "-T", "-e", "trace=pwrite64", "-o", str(out), "-p", tid], stderr=subprocess.DEVNULL)
    time.sleep(8)
    st.send_signal(signal.SIGINT); st.wait()
    stop.set(); [t.join() for t in ths]
    d = sorted(float(m) * 1e3 for m in re.findall(r'pwrite64\(\d+, "(?:1|FROZEN)".*<([\d.]+)>', out.read_text()))
    n = len(d)
    print(f"{build.parent.name:8s} freeze writes: {n}; ms p50 {d[n//2]:.3f} p90 {d[int(n*.9)]:.3f} p99 {d[min(n-1,int(n*.99))]:.3f} max {d[-1]:.3f}", flush=True)
finally:
    proc.send_signal(signal.SIGTERM); proc.wait()
