"""The WAL's restarts in a disk_replay.py recording (round 18).

    restart_bins.py TRACE.json [TRACE.json...]

For each restart of the WAL in the trace (`disk_replay.py record`): the
flushes (one per fdatasync/fsync a daemon thread entered) and write bytes
per 100 ms bin over the 2 s before the restart and the 1 s after it, the
largest bin, and the flushes in those 3 s by thread. A restart is a
cluster of flushes by a committing thread (not store-ckpt): the
backstop's pass, which copies the WAL's tail with the writers held off,
and the restarting commit's sync of the new WAL header.

Figures of the mechanism, not of the load: the counts do not depend on
the machine's other work, the times a little."""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from disk_replay import kind  # noqa: E402

BIN = 0.1
BEFORE, AFTER = 2.0, 1.0


def restarts(reqs):
    """Times of the committing threads' flush clusters (the last flush of
    each cluster)."""
    fl = [r["t"] for r in reqs if kind(r) == "flush" and r["comm"] != "store-ckpt"]
    out = []
    for t in fl:
        if out and t - out[-1] < 0.5:
            out[-1] = t
        else:
            out.append(t)
    return out


def around(reqs, t0):
    n = int((BEFORE + AFTER) / BIN)
    b = [[0, 0] for _ in range(n)]
    by = {}
    for r in reqs:
        i = int((r["t"] - t0 + BEFORE) // BIN)
        if not 0 <= i < n:
            continue
        k = kind(r)
        if k == "write":
            b[i][0] += r["bytes"]
        elif k == "flush":
            b[i][1] += 1
            by[r["comm"]] = by.get(r["comm"], 0) + 1
    return b, by


def main():
    for path in sys.argv[1:]:
        tr = json.loads(pathlib.Path(path).read_text())
        reqs = tr["reqs"]
        ts = restarts(reqs)
        print(f"{path}: {len(ts)} restart(s) in {tr['seconds']} s, {tr['rate']:.0f} invokes/s")
        for t0 in ts:
            b, by = around(reqs, t0)
            top = max(range(len(b)), key=lambda i: b[i][0])
            fl = sum(x[1] for x in b)
            print(f"  restart at {t0:.2f} s: {fl} flushes in the 3 s ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))}), "
                  f"{sum(x[0] for x in b) / 1048576:.1f} MiB; largest 100 ms bin {b[top][0] / 1024:.0f} KiB "
                  f"at {top * BIN - BEFORE:+.1f} s; most flushes in one bin {max(x[1] for x in b)}")
            print("    bins (KiB/flushes) from -2.0 s: " + " ".join(
                f"{x[0] // 1024}" + (f"/{x[1]}" if x[1] else "") for x in b))


if __name__ == "__main__":
    main()
