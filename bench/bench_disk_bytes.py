"""Where the daemon's bytes to the disk go per invoke (round 15).

    bench_disk_bytes.py BUILD [CONNS] [v1|lambda]          per thread, per invoke
    bench_disk_bytes.py BUILD [CONNS] [v1|lambda] --frames WAL frames by b-tree

A daemon on a disk home (TMPDIR, default /tmp), 200 sequential invokes, then
wrk -cCONNS for 5 s beside vm_pauses.py. Prints per invoke: the daemon's
/proc/PID/io write_bytes, cancelled_write_bytes (dirty pages dropped before
write-back: the journal pysprinter.db-ended.{0,1} emptied by its batch) and
the net; the device's sectors written (every writer of the disk); and each
thread's /proc/PID/task/TID/io: store-writer writes the WAL, store-ckpt the
database (the checkpoint), the HTTP threads the journal.

--frames: strace of the store-writer and store-ckpt threads only; each
4120-byte pwrite64 to the WAL is a frame whose header names its page,
mapped to its b-tree with SQLite's dbstat on the database afterwards:
frames per commit of the runs table, each index and their interior pages.
"""
import collections
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_runpath as B  # noqa: E402

SECONDS = 5


def threads(pid):
    out = collections.defaultdict(lambda: [0, 0, 0])
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            name = pathlib.Path(f"/proc/{pid}/task/{t}/comm").read_text().strip()
            io = B.proc_io(f"{pid}/task/{t}")
        except OSError:
            continue
        o = out[name]
        o[0] += io["wchar"]
        o[1] += io["write_bytes"]
        o[2] += io["cancelled_write_bytes"]
    return out


def frames_by_btree(tmp, n):
    db = sqlite3.connect(str(tmp / "home/pysprinter.db"))
    owner = {pg: f"{name}/{kind}" for name, pg, kind in db.execute("SELECT name, pageno, pagetype FROM dbstat")}
    for f in tmp.glob("st.*"):
        per, commits, total = collections.Counter(), 0, 0
        for line in f.read_text().splitlines():
            m = re.match(r'pwrite64\((\d+), "(.*?)"\.*, (\d+), (\d+)\) = (\d+)', line)
            if not m:
                continue
            total += int(m.group(5))
            if int(m.group(3)) == 4096 + 24:
                raw = bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", m.group(2)))
                per[owner.get(int.from_bytes(raw[0:4], "big"), "?")] += 1
                commits += int.from_bytes(raw[4:8], "big") != 0
        if not total:
            continue
        print(f"thread {f.name[3:]}: {total / n:.0f} B/invoke, {commits} commits ({n / max(commits, 1):.0f} invokes a commit)")
        for k, v in per.most_common(12):
            print(f"   {k:36s} frames {v:6d}, {v / max(commits, 1):5.1f} a commit, {v * 4120 / n:5.0f} B/invoke")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    build = pathlib.Path(args[0])
    conns = int(args[1]) if len(args) > 1 else 8
    route = args[2] if len(args) > 2 else "v1"
    frames = "--frames" in sys.argv
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="diskbytes"))
    p, port = B.warm(build, tmp, route)
    try:
        time.sleep(0.2)
        tracer = None
        if frames:
            tids = [t for t in os.listdir(f"/proc/{p.pid}/task")
                    if pathlib.Path(f"/proc/{p.pid}/task/{t}/comm").read_text().strip() in ("store-writer", "store-ckpt")]
            tracer = subprocess.Popen(["strace", "-ff", "-qq", "-x", "-s", "8", "-e", "trace=pwrite64",
                                       "-o", str(tmp / "st")] + sum((["-p", t] for t in tids), []))
            time.sleep(1)
        t0, io0, d0 = threads(p.pid), B.proc_io(p.pid), B.disk_sectors_written(tmp)
        vp = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).with_name("vm_pauses.py")), str(SECONDS)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)
        rate, bad, p99, p50 = B.wrk(port, B.PATHS[route], SECONDS, conns)
        t1, io1, d1 = threads(p.pid), B.proc_io(p.pid), B.disk_sectors_written(tmp)
        if tracer:
            time.sleep(0.2)
            tracer.terminate()
            tracer.wait()
        paused = re.search(r"= ([\d.]+)% of the time", vp.communicate()[0])
        n = rate * SECONDS
        wb = io1["write_bytes"] - io0["write_bytes"]
        cw = io1["cancelled_write_bytes"] - io0["cancelled_write_bytes"]
        print(f"{route} wrk -c{conns}: {rate:.0f}/s p50 {p50:.2f} p99 {p99:.2f} ms, non-2xx {bad}, "
              f"VM paused {paused.group(1) + '%' if paused else 'n/a'}")
        print(f"daemon per invoke: write_bytes {wb / n:.0f}, cancelled {cw / n:.0f}, net {(wb - cw) / n:.0f}, "
              f"wchar {(io1['wchar'] - io0['wchar']) / n:.0f} B; device {((d1 or 0) - (d0 or 0)) * 512 / n:.0f} B")
        for name in sorted(t1):
            d = [a - b for a, b in zip(t1[name], t0.get(name, [0, 0, 0]))]
            if d[0] > n:
                print(f"   thread {name:16s} wchar {d[0] / n:7.1f}, write_bytes {d[1] / n:7.1f}, "
                      f"cancelled {d[2] / n:7.1f} B/invoke")
    finally:
        p.terminate()
        p.wait()
    if frames:
        frames_by_btree(tmp, rate * SECONDS)


if __name__ == "__main__":
    main()
