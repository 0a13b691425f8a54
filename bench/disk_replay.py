"""What the host charges for: the daemon's block requests, recorded and replayed (round 16).

    disk_replay.py record BUILD [v1|lambda] OUT.json [SECONDS]
        a daemon on a disk home (TMPDIR, default /tmp), wrk -c8 for SECONDS
        (default 10) beside `perf record -e block:block_rq_issue -e
        block:block_rq_complete -a` and vm_pauses.py: every request to vda
        (time, sector, bytes, rwbs flags, the task that issued it, its
        completion) into OUT.json, and a summary by kind.
    disk_replay.py replay BUILD [v1|lambda] TRACE.json [PART...]
        a daemon on a tmpfs home (/dev/shm), wrk -c8 for the trace's length
        beside vm_pauses.py, and the trace's requests issued again beside it
        at their recorded times: each write as an O_DIRECT pwrite of the
        same size to a scratch file on the same disk (written in full first,
        so no allocation, no unwritten extent), each flush as an fdatasync,
        each discard as fallocate(PUNCH_HOLE) of the same size.
        PART selects: all (default), none, small (writes < 64 KiB), big
        (writes >= 64 KiB), writes, flushes, discards, and merge=N (the same
        bytes of writes in N times fewer requests), burst=N (round 17: the
        requests spread evenly, then each moved to the start of its N-ms
        slot: the same bytes in one burst every N ms).
    disk_replay.py summary TRACE.json
    disk_replay.py bins TRACE.json [MS]
        the daemon's bytes per MS-ms bin (default 10) and per 100 ms: p50,
        p95, max, and the bins above the even rate named by what wrote
        them (the file: WAL or database; sync writes; the issuing task).

Benchmarks are not tests: the pauses and p99 depend on the load; the counts
of requests by kind do not."""
import collections
import ctypes
import json
import mmap
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_runpath as B  # noqa: E402

HERE = pathlib.Path(__file__).parent
SCRATCH_BYTES = 128 << 20
DISCARD_BYTES = 16 << 20
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def vda_devt():
    st = os.stat("/dev/vda") if os.path.exists("/dev/vda") else None
    return f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}" if st else "253,0"


def extents(home):
    """[(first sector, last sector, file name)] of every file under home
    (filefrag)."""
    out = []
    for f in pathlib.Path(home).rglob("*"):
        if not f.is_file():
            continue
        r = subprocess.run(["filefrag", "-e", "-b4096", str(f)], capture_output=True, text=True).stdout
        for m in re.finditer(r"^\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):", r, re.M):
            out.append((int(m.group(1)) * 8, int(m.group(2)) * 8 + 7, f.name))
    return out


def daemon_only(reqs, ranges, syncs):
    """The daemon's own requests: writes and discards inside its files'
    extents, and one flush per fdatasync/fsync a daemon thread entered."""
    ranges = sorted(ranges)
    starts = [x[0] for x in ranges]
    import bisect

    def mine(sector):
        i = bisect.bisect_right(starts, sector) - 1
        return ranges[i][2] if i >= 0 and sector <= ranges[i][1] else None
    out = [dict(r, file=mine(r["sector"])) for r in reqs if kind(r) in ("write", "discard") and mine(r["sector"])]
    out += [dict(t=t, sector=0, bytes=0, rwbs="FF", comm=comm) for t, comm in syncs]
    return sorted(out, key=lambda r: r["t"])


def parse_perf(path, dev, pid):
    """[{t, sector, bytes, rwbs, comm, lat}] of the issues to dev, times from
    the first; lat is the time to its completion (matched by sector); and
    [(t, comm)] of the fdatasync/fsync calls of process pid."""
    out = subprocess.run(["perf", "script", "-i", str(path), "-F", "comm,pid,tid,time,event,trace"],
                         capture_output=True, text=True).stdout
    reqs, pending, syncs = [], {}, []
    sync = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+syscalls:sys_enter_f")
    pat = re.compile(r"^\s*(.+?)\s+\d+/(\d+)\s+([\d.]+):\s+block:(block_rq_issue|block_rq_complete):\s+(\d+,\d+)\s+(\S+)\s+(?:(\d+)\s+)?\(.*?\)\s+(\d+)\s+\+\s+(\d+)")
    for line in out.splitlines():
        m = sync.match(line)
        if m:
            if int(m.group(2)) == pid:
                syncs.append((float(m.group(4)), m.group(1)))
            continue
        m = pat.match(line)
        if not m or m.group(5) != dev:
            continue
        comm, t, ev, rwbs, nbytes, sector, nsect = m.group(1), float(m.group(3)), m.group(4), m.group(6), int(m.group(7) or 0), int(m.group(8)), int(m.group(9))
        if ev == "block_rq_issue":
            again = pending.get((sector, rwbs[:1]))
            if again and "lat" not in again[-1] and again[-1]["bytes"] == (nbytes or nsect * 512):
                continue  # requeued and issued again (virtio's queue was full): one request
            r = dict(t=t, sector=sector, bytes=nbytes or nsect * 512, rwbs=rwbs, comm=re.sub(r"/\d+.*|:\d+.*|-?\d+$", "", comm))
            reqs.append(r)
            pending.setdefault((sector, rwbs[:1]), []).append(r)
        else:
            q = pending.get((sector, rwbs[:1]))
            if q:
                r = q.pop(0)
                r["lat"] = t - r["t"]
    if reqs:
        t0 = reqs[0]["t"]
        for r in reqs:
            r["t"] = round(r["t"] - t0, 6)
        syncs = [(round(t - t0, 6), c) for t, c in syncs if t >= t0]
    return reqs, syncs


def kind(r):
    rw = r["rwbs"]
    if "D" in rw:
        return "discard"
    if "W" in rw and r["bytes"]:
        return "write"
    if rw.startswith("F") or (r["bytes"] == 0 and "W" in rw):
        return "flush"
    if "R" in rw:
        return "read"
    return "other"


def summary(reqs, seconds=None):
    seconds = seconds or (reqs[-1]["t"] if reqs else 1) or 1
    by = collections.defaultdict(lambda: [0, 0])
    for r in reqs:
        k = kind(r)
        if k == "write":
            k = "write < 64K" if r["bytes"] < 65536 else "write >= 64K"
        by[(k, r["comm"])][0] += 1
        by[(k, r["comm"])][1] += r["bytes"]
    print(f"{len(reqs)} requests in {seconds:.1f} s")
    for (k, comm), (n, b) in sorted(by.items(), key=lambda x: -x[1][0]):
        print(f"   {k:13s} {comm:18s} {n / seconds:7.1f}/s  {b / seconds / 1024:8.1f} KiB/s  mean {b / max(n, 1) / 1024:6.1f} KiB")
    sizes = collections.Counter(r["bytes"] // 4096 for r in reqs if kind(r) == "write")
    print("   write sizes (pages: count):", ", ".join(f"{k}:{v}" for k, v in sorted(sizes.items())[:24]))


def record(build, route, out, seconds):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="replay-rec-"))
    p, port = B.warm(build, tmp, route)
    try:
        time.sleep(0.5)
        data = tmp / "block.data"
        perf = subprocess.Popen(["perf", "record", "-q", "-a", "-e", "block:block_rq_issue", "-e",
                                 "block:block_rq_complete", "-e", "syscalls:sys_enter_fdatasync", "-e",
                                 "syscalls:sys_enter_fsync", "-o", str(data), "--", "sleep", str(seconds + 0.6)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        vp = subprocess.Popen([sys.executable, str(HERE / "vm_pauses.py"), str(seconds)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)
        rate, bad, p99, p50 = B.wrk(port, B.PATHS[route], seconds, 8)
        perf.wait()
        ranges = extents(tmp / "home")
        paused = re.search(r"= ([\d.]+)% of the time", vp.communicate()[0])
        print(f"record {route} -c8 disk home: {rate:.0f}/s p50 {p50:.2f} p99 {p99:.2f} ms, "
              f"VM paused {paused.group(1) + '%' if paused else 'n/a'}; uptime {os.getloadavg()[0]:.2f}")
    finally:
        p.terminate()
        p.wait()
    reqs, syncs = parse_perf(data, vda_devt(), p.pid)
    mine = daemon_only(reqs, ranges, syncs)
    subprocess.run(["rm", "-rf", str(tmp)])
    pathlib.Path(out).write_text(json.dumps(dict(seconds=seconds, rate=rate, reqs=mine, every=reqs)))
    print("every request to the disk (all tasks):")
    summary(reqs, seconds)
    print("the daemon's (its files' sectors; a flush per its fdatasync):")
    summary(mine, seconds)
    n = rate * seconds
    w = [r for r in mine if kind(r) == "write"]
    print(f"per invoke: {sum(r['bytes'] for r in w) / n:.0f} B written in {len(w) / n * 1000:.2f} write requests "
          f"per 1000 invokes; flushes {sum(kind(r) == 'flush' for r in mine) / seconds:.2f}/s, "
          f"discards {sum(kind(r) == 'discard' for r in mine) / seconds:.2f}/s")


def select(reqs, parts):
    keep = []
    merge = 1
    for part in parts:
        if part.startswith("merge="):
            merge = int(part[6:])
    burst = next((float(p[6:]) / 1000 for p in parts if p.startswith("burst=")), None)
    names = {p for p in parts if "=" not in p} or {"all"}
    if burst:
        names.add("spread")
    for r in reqs:
        k = kind(r)
        if k == "write":
            ok = names & {"all", "writes", "spread"} or ("small" in names and r["bytes"] < 65536) or \
                ("big" in names and r["bytes"] >= 65536)
        elif k == "flush":
            ok = names & {"all", "flushes", "spread"}
        elif k == "discard":
            ok = names & {"all", "discards", "spread"}
        else:
            ok = False
        if ok:
            keep.append(r)
    if "spread" in names:
        # the same requests at even intervals over the trace's span
        span = reqs[-1]["t"] if reqs else 1
        keep = [dict(r, t=span * i / max(len(keep), 1)) for i, r in enumerate(keep)]
    if burst:
        # then each at the start of its slot: one burst every `burst` s
        keep = [dict(r, t=burst * int(r["t"] / burst)) for r in keep]
    if merge > 1:
        out, acc = [], None
        for r in keep:
            if kind(r) != "write":
                out.append(r)
                continue
            if acc is None:
                acc, n = dict(r), 1
            else:
                acc["bytes"] += r["bytes"]
                n += 1
            if n == merge:
                out.append(acc)
                acc = None
        if acc:
            out.append(acc)
        keep = out
    return keep


class Replayer(threading.Thread):
    """Issues the requests at their times from `start`; writes go to a pool
    of 4 threads (the kernel's write-back issues several at once)."""

    def __init__(self, reqs, dirpath):
        super().__init__(daemon=True)
        self.reqs = reqs
        self.path = pathlib.Path(dirpath) / "replay-scratch"
        self.dpath = pathlib.Path(dirpath) / "replay-discard"
        self.late = 0.0
        self.done = collections.Counter()

    def prepare(self):
        chunk = b"\x5a" * (1 << 20)
        for path, size in ((self.path, SCRATCH_BYTES), (self.dpath, DISCARD_BYTES)):
            with open(path, "wb") as f:
                for _ in range(size >> 20):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        self.fd = os.open(self.path, os.O_RDWR | os.O_DIRECT)
        self.dfd = os.open(self.dpath, os.O_RDWR)
        self.buf = mmap.mmap(-1, 8 << 20)
        self.buf.write(b"\xa5" * (8 << 20))

    def cleanup(self):
        for path in (self.path, self.dpath):
            path.unlink(missing_ok=True)

    def run(self):
        import queue
        q = queue.Queue()

        def worker():
            while True:
                r = q.get()
                if r is None:
                    return
                n = min(r["bytes"], 8 << 20)
                off = (r["sector"] * 512) % (SCRATCH_BYTES - (8 << 20))
                off -= off % 4096
                os.pwrite(self.fd, memoryview(self.buf)[:n], off)
                self.done["write"] += 1
        pool = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
        for t in pool:
            t.start()
        doff = 0
        start = time.monotonic()
        for r in self.reqs:
            delay = start + r["t"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.late = max(self.late, -delay)
            k = kind(r)
            if k == "write":
                q.put(r)
            elif k == "flush":
                os.fdatasync(self.fd)
                self.done["flush"] += 1
            elif k == "discard":
                n = max(4096, r["bytes"] - r["bytes"] % 4096)
                if doff + n > DISCARD_BYTES:
                    doff = 0
                libc.fallocate(self.dfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, doff, n)
                doff += n
                self.done["discard"] += 1
        for _ in pool:
            q.put(None)
        for t in pool:
            t.join()


def replay(build, route, trace, parts):
    tr = json.loads(pathlib.Path(trace).read_text())
    seconds = tr["seconds"]
    reqs = select(tr["reqs"], parts) if parts != ["none"] else []
    disk = pathlib.Path(tempfile.mkdtemp(prefix="replay-scratch-", dir=os.environ.get("TMPDIR", "/tmp")))
    rp = Replayer(reqs, disk)
    rp.prepare()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="replay-", dir="/dev/shm"))
    p, port = B.warm(build, tmp, route)
    try:
        time.sleep(0.5)
        d0 = B.disk_sectors_written(disk)
        vp = subprocess.Popen([sys.executable, str(HERE / "vm_pauses.py"), str(seconds)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)
        rp.start()
        rate, bad, p99, p50 = B.wrk(port, B.PATHS[route], seconds, 8)
        rp.join()
        d1 = B.disk_sectors_written(disk)
        paused = re.search(r"= ([\d.]+)% of the time", vp.communicate()[0])
        print(f"replay [{' '.join(parts) or 'all'}] {len(reqs)} requests ({dict(rp.done)}, late by <= {rp.late * 1e3:.0f} ms), "
              f"device {((d1 or 0) - (d0 or 0)) * 512 / seconds / 1024:.0f} KiB/s | tmpfs daemon {route} -c8: "
              f"{rate:.0f}/s p50 {p50:.2f} p99 {p99:.2f} ms, VM paused {paused.group(1) + '%' if paused else 'n/a'}; "
              f"uptime {os.getloadavg()[0]:.2f}")
    finally:
        p.terminate()
        p.wait()
        rp.cleanup()
        disk.rmdir()
        subprocess.run(["rm", "-rf", str(tmp)])


def pctl(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0


def bins(tr, ms):
    """The daemon's write bytes per ms-ms bin; the bins above 4x the even
    rate listed with what wrote them."""
    seconds = tr["seconds"]
    w = [r for r in tr["reqs"] if kind(r) == "write"]
    for width in (ms / 1000, 0.1):
        n = int(seconds / width) + 1
        b = [0] * n
        for r in w:
            if r["t"] < seconds:
                b[int(r["t"] / width)] += r["bytes"]
        b = b[:n - 1]
        print(f"bins of {width * 1000:.0f} ms: p50 {pctl(b, .5) / 1024:.0f} KiB, p95 {pctl(b, .95) / 1024:.0f} KiB, "
              f"p99 {pctl(b, .99) / 1024:.0f} KiB, max {max(b or [0]) / 1024:.0f} KiB; even rate "
              f"{sum(b) / max(len(b), 1) / 1024:.0f} KiB a bin")
    width = ms / 1000
    even = sum(r["bytes"] for r in w) / (seconds / width)
    by = collections.defaultdict(list)
    for r in w:
        by[int(r["t"] / width)].append(r)
    flushes = [r["t"] for r in tr["reqs"] if kind(r) == "flush"]
    over = collections.Counter()
    total = collections.Counter()
    for i, rs in sorted(by.items()):
        nb = sum(r["bytes"] for r in rs)
        src = collections.Counter()
        for r in rs:
            f = (r.get("file") or "?").replace("pysprinter.", "")
            sync = "sync" if "S" in r["rwbs"][1:] else "async"
            src[f"{f} {sync} {r['comm']}"] += r["bytes"]
        top = src.most_common(1)[0][0]
        total[top] += nb
        if nb > 4 * even:
            over[top] += nb
            fl = any(i * width - 0.05 <= t < (i + 1) * width + 0.05 for t in flushes)
            print(f"  {i * width:7.3f} s {nb / 1024:6.0f} KiB ({nb / even:4.1f}x even){' flush near' if fl else ''}: "
                  + ", ".join(f"{k} {v / 1024:.0f}" for k, v in src.most_common(3)))
    print("bytes in bins above 4x even, by the bin's main source (KiB):",
          ", ".join(f"{k}: {v / 1024:.0f} of {total[k] / 1024:.0f}" for k, v in over.most_common()))


def main():
    a = sys.argv[1:]
    if a[0] == "record":
        record(pathlib.Path(a[1]), a[2], a[3], int(a[4]) if len(a) > 4 else 10)
    elif a[0] == "replay":
        replay(pathlib.Path(a[1]), a[2], a[3], a[4:])
    elif a[0] == "summary":
        tr = json.loads(pathlib.Path(a[1]).read_text())
        summary(tr["reqs"], tr["seconds"])
    elif a[0] == "bins":
        bins(json.loads(pathlib.Path(a[1]).read_text()), float(a[2]) if len(a) > 2 else 10)


if __name__ == "__main__":
    main()
