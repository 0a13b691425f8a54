"""The run path of an invoke (issue 15 b): latency and rate on both invoke
paths, and what one invoke costs the daemon in thread hand-offs.

Usage: /usr/bin/python3 bench/bench_runpath.py BUILD_DIR [--strace] [--perf-stat] [--perf-record] [--syscalls]
  sequential p50/p99 (400 invokes) and wrk -c1 and -c8 on
  /v1/functions/NAME/invoke and the Lambda path; --perf-stat: the daemon's
  context switches and CPU per invoke on each path (perf stat -p, 400
  sequential invokes); --perf-record: perf record -g of the daemon during
  wrk -c8 on each path (into BENCH_PERF_DIR); --strace: syscalls per
  invoke (strace -f -c, 200 sequential invokes): futex, clone3, ...
  --c8-mech: under wrk -c8 (4 s each route), the daemon's write syscalls
  (/proc/PID/io syscw) and store commits (/metrics, where the build has
  pysprinter_store_commits_total) per invoke, and with --strace also its
  syscalls per invoke under wrk -c8 (strace slows the daemon: fewer
  invokes overlap than without it).
  --syscalls: the daemon's system calls, context switches and CPU per
  invoke without strace (perf stat -e raw_syscalls:sys_enter,...: 3000
  sequential invokes, then 4 s of wrk -c8, each route).
  BENCH_SOURCE_PAD=N: a function file N bytes larger (a comment).
  Each wrk phase also prints the bytes written to the disk per invoke (the
  data directory's block device in /proc/diskstats: every writer of that
  disk; and the daemon's /proc/PID/io: write_bytes less
  cancelled_write_bytes, what it dirtied and did not truncate before
  write-back; wchar, every write(2), its HTTP answers included) and the
  share of the phase the host paused the VM (bench/vm_pauses.py; needs
  root for perf record -a): on this VM the p99 of a disk home is those
  pauses (docs/internals/performance-log.md, round 12). BENCH_DIR: where the daemon's
  home is made (default: the system's temporary directory; /dev/shm for
  a home on tmpfs).
Benchmarks are not tests: figures move with the machine's load."""
import contextlib
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TOKEN = "bench-token-0123456789abcdef"
SANDBOX = os.environ.get("BENCH_SANDBOX", "full")
# BENCH_SOURCE_PAD=N: the function's file carries N more bytes (a comment),
# as a real module's would; the trivial function's body stays the same.
SOURCE = "def handler(x=1, context=None):\n    return 2\n" + "#" * int(os.environ.get("BENCH_SOURCE_PAD", "0"))
PATHS = {"v1": "/v1/functions/benchfn/invoke?wait=true", "lambda": "/2015-03-31/functions/benchfn/invocations"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(build, tmp, extra_env=None, port=None):
    """pysprinterd of build on tmp/home (made when missing: port given, a
    restart on the same home and port): (process, port)."""
    port = port or free_port()
    cfg = tmp / "bench.yaml"
    cfg.write_text(f"tokens:\n  - tenant: bench\n    token: {TOKEN}\n"
                   "server:\n  max_concurrent_runs: 64\n  max_concurrent_per_tenant: 64\n"
                   "  max_queued_runs: 4096\n  max_connections: 256\n")
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(home), PYSPRINTER_WORKER=str(build / "src/worker/pysprinter-worker"))
    env.update(extra_env or {})
    log = open(tmp / "daemon.log", "ab")
    p = subprocess.Popen([str(build / "src/daemon/pysprinterd"), "--listen", f"127.0.0.1:{port}", "--config",
                          str(cfg), f"--sandbox={SANDBOX}"], env=env, stdout=log, stderr=log)
    for _ in range(1500):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return p, port
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("pysprinterd did not start")


@contextlib.contextmanager
def serving(build, prefix):
    """A daemon of build in a new home (under BENCH_DIR), the benchmark's
    function deployed: (proc, port, tmp); stopped and its home removed
    after."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("BENCH_DIR")))
    proc, port = start(build, tmp)
    try:
        deploy(port)
        yield proc, port, tmp
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def call(c, path, body):
    c.request("POST", path, body=json.dumps(body),
              headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, r.read()


def deploy(port):
    """Deploys the trivial function `benchfn` every invoke benchmark calls."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    st, body = call(c, "/v1/functions", {"name": "benchfn", "filename": "b.py", "source": SOURCE})
    assert st in (200, 201), body
    c.close()


def warm(build, tmp, route, n=200, extra_env=None):
    """A daemon in tmp with benchfn deployed and n sequential invokes of
    route behind it: (process, port). extra_env: the daemon's own
    variables (PYSPRINTER_TEST_*)."""
    p, port = start(build, tmp, extra_env)
    try:
        deploy(port)
        sequential(port, PATHS[route], n)
    except BaseException:
        p.terminate()
        p.wait()
        raise
    return p, port


def sequential(port, path, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        st, body = call(c, path, {"args": [1]} if "v1" in path else {"x": 1})
        lat.append(time.perf_counter() - t0)
        assert st == 200, (st, body)
    lat.sort()
    return lat[len(lat) // 2] * 1e3, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3


def wrk(port, path, seconds=5, conns=8):
    if not shutil.which("wrk"):
        return None
    body = {"args": [1]} if "v1" in path else {"x": 1}
    script = pathlib.Path(tempfile.mktemp(suffix=".lua"))
    script.write_text('wrk.method = "POST"\n'
                      f'wrk.body = {json.dumps(json.dumps(body))}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n')
    out = subprocess.run(["wrk", "-t2" if conns > 1 else "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    script.unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    scale = {"us": 1e-3, "ms": 1, "s": 1e3}

    def pct(n):
        m = re.search(n + r"%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * scale[m.group(2)] if m else None
    return rate, int(bad.group(1)) if bad else 0, pct("99"), pct("50")


def proc_io(pid):
    return {k: int(v) for k, v in (line.split(": ") for line in pathlib.Path(f"/proc/{pid}/io").read_text().splitlines())}


def disk_sectors_written(path):
    """Sectors written so far to the block device holding path (its
    partition's line of /proc/diskstats), or None (tmpfs, no such line)."""
    dev = os.stat(path).st_dev
    for line in pathlib.Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if int(f[0]) == os.major(dev) and int(f[1]) == os.minor(dev):
            return int(f[9])
    return None


def wrk_phase(port, path, conns, pid, home, seconds=5):
    """wrk with the disk bytes per invoke and the VM's paused share over
    it: (wrk's tuple or None, a text of the figures)."""
    vp = None
    if shutil.which("perf") and os.geteuid() == 0:
        vp = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).with_name("vm_pauses.py")),
                               str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)
    io0, d0 = proc_io(pid), disk_sectors_written(home)
    w = wrk(port, path, seconds=seconds, conns=conns)
    io1, d1 = proc_io(pid), disk_sectors_written(home)
    paused = "n/a"
    if vp:
        m = re.search(r"= ([\d.]+)% of the time", vp.communicate()[0])
        paused = f"{m.group(1)}%" if m else "n/a"
    n = w[0] * seconds if w else 0
    if not n:
        return w, ""
    dirtied = (io1["write_bytes"] - io1["cancelled_write_bytes"]) - (io0["write_bytes"] - io0["cancelled_write_bytes"])
    disk = f"{(d1 - d0) * 512 / n:.0f} B" if d0 is not None else "n/a (not a block device)"
    return w, (f"disk bytes per invoke {disk} (daemon: dirtied {dirtied / n:.0f} B, wchar "
               f"{(io1['wchar'] - io0['wchar']) / n:.0f} B); VM paused {paused}")


def metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
    text = c.getresponse().read().decode()
    c.close()
    m = re.search(r"^" + name + r" (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    with serving(build, "bench-runpath-") as (proc, port, tmp):
        for path in PATHS.values():
            sequential(port, path, 20)
        print(f"build {build} (sandbox={SANDBOX})")
        if "--perf-stat" in sys.argv:
            # Both routes: the Lambda route's own work shows as the difference.
            for name, path in PATHS.items():
                ps = subprocess.Popen(["perf", "stat", "-x,", "-e", "context-switches,task-clock", "-p",
                                       str(proc.pid)], stderr=subprocess.PIPE, text=True)
                time.sleep(0.3)
                sequential(port, path, 400)
                ps.send_signal(signal.SIGINT)
                err = ps.communicate()[1]
                for line in err.splitlines():
                    f = line.split(",")
                    if len(f) > 2 and f[0].replace(".", "").isdigit():
                        v = float(f[0]) / 400
                        print(f"  perf stat per invoke ({name}): {f[2]} " +
                              (f"{v:.3f} ms" if "clock" in f[2] else f"{v:.2f}"))
            # And under load (wrk -c8, 4 s): CPU per invoke when the run
            # threads overlap.
            for name, path in PATHS.items():
                ps = subprocess.Popen(["perf", "stat", "-x,", "-e", "context-switches,task-clock", "-p",
                                       str(proc.pid)], stderr=subprocess.PIPE, text=True)
                time.sleep(0.3)
                w = wrk(port, path, seconds=4)
                ps.send_signal(signal.SIGINT)
                err = ps.communicate()[1]
                n = w[0] * 4 if w else 0
                for line in err.splitlines():
                    f = line.split(",")
                    if n and len(f) > 2 and f[0].replace(".", "").isdigit():
                        v = float(f[0]) / n
                        print(f"  perf stat per invoke under wrk -c8 ({name}): {f[2]} " +
                              (f"{v:.3f} ms" if "clock" in f[2] else f"{v:.2f}"))
        if "--syscalls" in sys.argv:
            for name, path in PATHS.items():
                for what in ("sequential", "wrk -c8"):
                    ps = subprocess.Popen(["perf", "stat", "-x,", "-e",
                                           "raw_syscalls:sys_enter,context-switches,task-clock", "-p",
                                           str(proc.pid)], stderr=subprocess.PIPE, text=True)
                    time.sleep(0.3)
                    w = None
                    if what == "sequential":
                        sequential(port, path, 3000)
                        n = 3000
                    else:
                        w = wrk(port, path, seconds=4)
                        n = w[0] * 4 if w else 0
                    ps.send_signal(signal.SIGINT)
                    got = {}
                    for line in ps.communicate()[1].splitlines():
                        f = line.split(",")
                        if n and len(f) > 2 and f[0].replace(".", "").isdigit():
                            got[f[2].split(":")[-1]] = float(f[0]) / n
                    if got:
                        print(f"  {name:6s} {what:10s} per invoke: syscalls {got.get('sys_enter', 0):.2f}, context "
                              f"switches {got.get('context-switches', 0):.2f}, task-clock {got.get('task-clock', 0):.3f} ms" +
                              (f" ({w[0]:.0f}/s, p99 {w[2]} ms)" if w else ""))
        if "--c8-mech" in sys.argv:
            for name, path in PATHS.items():
                io0, m0 = proc_io(proc.pid), metric(port, "pysprinter_store_commits_total")
                w = wrk(port, path, seconds=4)
                io1, m1 = proc_io(proc.pid), metric(port, "pysprinter_store_commits_total")
                n = w[0] * 4 if w else 0
                if n:
                    commits = f"{(m1 - m0) / n:.3f}" if m0 is not None else "n/a"
                    print(f"  wrk -c8 ({name}): {w[0]:.0f} /s p99 {w[2]} ms; per invoke: write syscalls "
                          f"{(io1['syscw'] - io0['syscw']) / n:.2f}, store commits {commits}")
            if "--strace" in sys.argv:
                for name, path in PATHS.items():
                    out = tmp / f"strace-c8-{name}.txt"
                    st = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(proc.pid)],
                                          stderr=subprocess.DEVNULL)
                    time.sleep(0.5)
                    w = wrk(port, path, seconds=4)
                    st.send_signal(signal.SIGINT)
                    st.wait()
                    n = w[0] * 4 if w else 0
                    for line in out.read_text().splitlines():
                        f = line.split()
                        if n and len(f) >= 5 and f[3].isdigit() and (int(f[3]) >= n / 20 or f[-1] == "total"):
                            print(f"  strace per invoke under wrk -c8 ({name}): {f[-1]:16s} {int(f[3]) / n:.2f}")
        if "--perf-record" in sys.argv:
            # BENCH_PERF_DIR: where perf.data of each route goes (wrk -c8, 4 s).
            pdir = pathlib.Path(os.environ.get("BENCH_PERF_DIR", tmp))
            for name, path in PATHS.items():
                pr = subprocess.Popen(["perf", "record", "-g", "-o", str(pdir / f"perf-{name}.data"), "-p",
                                       str(proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.3)
                wrk(port, path, seconds=4)
                pr.send_signal(signal.SIGINT)
                pr.wait()
                print(f"  perf record ({name}): {pdir / f'perf-{name}.data'}")
        if "--strace" in sys.argv:
            out = tmp / "strace.txt"
            st = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(proc.pid)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            sequential(port, PATHS["v1"], 200)
            st.send_signal(signal.SIGINT)
            st.wait()
            for line in out.read_text().splitlines():
                f = line.split()
                # every syscall made at least once per 20 invokes
                if len(f) >= 5 and f[3].isdigit() and (int(f[3]) >= 10 or f[-1] == "total"):
                    calls = int(f[3])
                    print(f"  strace per invoke: {f[-1]:16s} {calls / 200:.2f}")
        for name, path in PATHS.items():
            p50, p99 = sequential(port, path, 400)
            print(f"  {name:6s} sequential p50 {p50:.3f} ms  p99 {p99:.3f} ms")
        for conns in (1, 8):
            for name, path in PATHS.items():
                w, io = wrk_phase(port, path, conns, proc.pid, tmp / "home")
                if w:
                    print(f"  {name:6s} wrk -c{conns}: {w[0]:.0f} /s  p50 {w[3]} ms  p99 {w[2]} ms  ({w[1]} non-2xx)"
                          f"; {io}")


if __name__ == "__main__":
    main()
