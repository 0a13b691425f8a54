"""What the ended-runs journal's batch size costs and saves (round 17).

    bench_journal_batch.py BUILD RECORDS LINGER_MS [v1|lambda]

One daemon on a disk home (TMPDIR, default /tmp) whose journal batches
commit every LINGER_MS or RECORDS records (PYSPRINTER_TEST_JOURNAL_LINGER_MS,
PYSPRINTER_TEST_JOURNAL_MAX_RECORDS), 200 sequential invokes, then three
wrk -c8 phases of 5 s:

1. bytes: the daemon's net bytes to the disk per invoke (write_bytes −
   cancelled), the WAL's (store-writer) and the checkpoint's (store-ckpt),
   the device's; the store-writer thread's CPU per invoke
   (/proc/PID/task/TID/schedstat); the VM's paused share (vm_pauses.py).
2. price: beside the load, GET /v1/runs/ID and GET /v1/runs?limit=20 every
   250 ms (each commits the pending batch first: their latency); the
   daemon's VmHWM.
3. seen, replay: beside the load, an invoke on its own connection every
   50 ms whose run another process (sqlite3 here, as `pysprinter ps`
   would) polls for: how late it sees the run ended; then kill -9 during
   the load, a daemon started again on the home: the records it replayed
   and the time to its /healthz.
"""
import http.client
import json
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_disk_bytes as D  # noqa: E402
import bench_runpath as B  # noqa: E402

SECONDS = 5
READ_EVERY = 0.25  # a read that finds a whole batch pending (its commit's latency)


def cpu_ns(pid, comm):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            if pathlib.Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() == comm:
                total += int(pathlib.Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
        except OSError:
            pass
    return total


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")


KINDS = ("journal", "lingered", "list", "other")


def commit_kinds(port):
    """pysprinter_store_commits_by_total{by=...} (round 18; 0 before)."""
    return [B.metric(port, r'pysprinter_store_commits_by_total\{by="' + k + r'"\}') or 0 for k in KINDS]


def phase_bytes(p, port, route, tmp):
    c0, k0 = B.metric(port, "pysprinter_store_commits_total"), commit_kinds(port)
    t0, io0, d0, w0 = D.threads(p.pid), B.proc_io(p.pid), B.disk_sectors_written(tmp), cpu_ns(p.pid, "store-writer")
    vp = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).with_name("vm_pauses.py")), str(SECONDS)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.3)
    rate, bad, p99, p50 = B.wrk(port, B.PATHS[route], SECONDS, 8)
    t1, io1, d1, w1 = D.threads(p.pid), B.proc_io(p.pid), B.disk_sectors_written(tmp), cpu_ns(p.pid, "store-writer")
    commits, k1 = B.metric(port, "pysprinter_store_commits_total") - c0, commit_kinds(port)
    paused = re.search(r"= ([\d.]+)% of the time", vp.communicate()[0])
    n = rate * SECONDS
    net = (io1["write_bytes"] - io0["write_bytes"]) - (io1["cancelled_write_bytes"] - io0["cancelled_write_bytes"])
    per = {k: (t1[k][1] - t0.get(k, [0, 0, 0])[1]) / n for k in t1}
    print(f"bytes: {route} -c8 {rate:.0f}/s p50 {p50:.2f} p99 {p99:.2f} ms, non-2xx {bad}, "
          f"VM paused {paused.group(1) + '%' if paused else 'n/a'}; per invoke: net {net / n:.0f} B "
          f"(WAL {per.get('store-writer', 0):.0f}, checkpoint {per.get('store-ckpt', 0):.0f}), "
          f"device {((d1 or 0) - (d0 or 0)) * 512 / n:.0f} B, store-writer CPU {(w1 - w0) / n / 1e3:.2f} us; "
          f"{commits / SECONDS:.1f} commits/s, {n / max(commits, 1):.0f} invokes a commit")
    if any(k1):
        print("  commits/s by why: " + ", ".join(f"{k} {(b - a) / SECONDS:.1f}" for k, a, b in zip(KINDS, k0, k1)))


def reader(port, stop, run_id, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    hdr = {"Authorization": "Bearer " + B.TOKEN}
    while not stop.is_set():
        for key, path in (("get", f"/v1/runs/{run_id}"), ("list", "/v1/runs?limit=20")):
            t = time.perf_counter()
            c.request("GET", path, headers=hdr)
            r = c.getresponse()
            r.read()
            out[key].append((time.perf_counter() - t) * 1e3)
            assert r.status == 200, (path, r.status)
        time.sleep(READ_EVERY)


def run_id_of(body):
    j = json.loads(body)
    return j.get("id") or j.get("run_id") if isinstance(j, dict) else None


def watcher(port, stop, db, route, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    while not stop.is_set():
        c.request("POST", "/v1/functions/benchfn/invoke?wait=true", body=json.dumps({"args": [1]}),
                  headers={"Authorization": "Bearer " + B.TOKEN, "Content-Type": "application/json"})
        r = c.getresponse()
        rid = run_id_of(r.read())
        t = time.perf_counter()
        while rid and not ro.execute("SELECT 1 FROM runs WHERE id = ? AND status NOT IN ('queued', 'running')",
                                     (rid,)).fetchone():
            time.sleep(0.001)
        out["seen"].append((time.perf_counter() - t) * 1e3)
        time.sleep(0.05)


def phase_price(p, port, route, tmp):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    st, body = B.call(c, "/v1/functions/benchfn/invoke?wait=true", {"args": [1]})
    rid = run_id_of(body)
    out, stop = {"get": [], "list": []}, threading.Event()
    t = threading.Thread(target=reader, args=(port, stop, rid, out))
    k0 = commit_kinds(port)
    t.start()
    rate, bad, p99, p50 = B.wrk(port, B.PATHS[route], SECONDS, 8)
    stop.set()
    t.join()
    k1 = commit_kinds(port)
    hwm = re.search(r"VmHWM:\s+(\d+)", pathlib.Path(f"/proc/{p.pid}/status").read_text()).group(1)
    f = " ".join(f"{k} p50 {pct(v, .5):.2f} p99 {pct(v, .99):.2f} max {max(v, default=0):.2f} ms (n {len(v)});"
                 for k, v in out.items())
    print(f"price: {route} -c8 {rate:.0f}/s p99 {p99:.2f} ms; {f} daemon VmHWM {int(hwm) // 1024} MiB")
    if any(k1):
        print("  commits/s by why: " + ", ".join(f"{k} {(b - a) / SECONDS:.1f}" for k, a, b in zip(KINDS, k0, k1)))


def phase_replay(build, p, port, route, tmp, env):
    wrk = threading.Thread(target=B.wrk, args=(port, B.PATHS[route], SECONDS, 8))
    wrk.start()
    out, stop = {"seen": []}, threading.Event()
    w = threading.Thread(target=watcher, args=(port, stop, tmp / "home/pysprinter.db", route, out))
    w.start()
    time.sleep(SECONDS * 0.7)
    stop.set()
    w.join()
    v = out["seen"]
    print(f"seen: another process sees a run ended p50 {pct(v, .5):.1f} p99 {pct(v, .99):.1f} "
          f"max {max(v, default=0):.1f} ms after its answer (n {len(v)})")
    p.kill()
    p.wait()
    wrk.join()
    log = tmp / "daemon.log"
    before = log.read_bytes().count(b"\n")
    t = time.perf_counter()
    q, _ = B.start(build, tmp, env, port)
    try:
        ready = (time.perf_counter() - t) * 1e3
        lines = log.read_text(errors="replace").splitlines()[before:]
        rep = next((m.group(1) for ln in lines for m in [re.search(r"(\d+) ended run\(s\) replayed", ln)] if m), "0")
        print(f"replay: kill -9 under -c8, restarted: {rep} records replayed, /healthz after {ready:.0f} ms")
    finally:
        q.terminate()
        q.wait()


def main():
    build, records, linger = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    route = sys.argv[4] if len(sys.argv) > 4 else "v1"
    env = {"PYSPRINTER_TEST_JOURNAL_MAX_RECORDS": records, "PYSPRINTER_TEST_JOURNAL_LINGER_MS": linger}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="jbatch"))
    print(f"== {build} batch {records} records / {linger} ms, {route}; load {os.getloadavg()[0]:.2f}")
    p, port = B.warm(build, tmp, route, extra_env=env)
    try:
        time.sleep(0.2)
        phase_bytes(p, port, route, tmp)
        phase_price(p, port, route, tmp)
        phase_replay(build, p, port, route, tmp, env)
    finally:
        if p.poll() is None:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
