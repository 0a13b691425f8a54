"""The bytes of one invoke's row of the runs table (issue 15 b): a daemon,
N sequential invokes of the deployed trivial function on each route, then
the b-tree's payload per row (dbstat: the cells' bytes, without the pages'
headers and free space), the mean stored size of started and finished,
and the pages' used bytes per run of the table and each of its indexes
(each page reaches the disk twice: the WAL, the checkpoint's copy).

Usage: /usr/bin/python3 bench/bench_row_bytes.py BUILD_DIR [N]  (N: 300)
Not a timing: the figures depend on the row's contents only."""

import pathlib
import sqlite3
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_runpath as rp  # noqa: E402


def row_bytes(db):
    payload, = db.execute("SELECT sum(payload) FROM dbstat WHERE name='runs'").fetchone()
    rows, = db.execute("SELECT count(*) FROM runs").fetchone()
    return payload / rows, rows


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    for route in ("v1", "lambda"):
        with rp.serving(build, "bench-rowbytes-") as (proc, port, tmp):
            rp.sequential(port, rp.PATHS[route], n)
            time.sleep(0.5)  # the last deferred writes committed
            db = sqlite3.connect(f"file:{tmp / 'home/pysprinter.db'}?mode=ro", uri=True)
            per, rows = row_bytes(db)
            rel = db.execute("SELECT avg(started < 0), avg(finished < 0) FROM runs").fetchone()
            # An integer's stored size: 0, 1, 2, 3, 4, 6 or 8 bytes (SQLite's record format).
            size = ("CASE WHEN {c} IN (0, 1) THEN 0 WHEN {c} BETWEEN -128 AND 127 THEN 1 "
                    "WHEN {c} BETWEEN -32768 AND 32767 THEN 2 WHEN {c} BETWEEN -8388608 AND 8388607 THEN 3 "
                    "WHEN {c} BETWEEN -2147483648 AND 2147483647 THEN 4 "
                    "WHEN {c} BETWEEN -140737488355328 AND 140737488355327 THEN 6 ELSE 8 END")
            st, fi = db.execute(f"SELECT avg({size.format(c='started')}), avg({size.format(c='finished')}) "
                                "FROM runs").fetchone()
            pages = db.execute("SELECT name, sum(pgsize - unused) FROM dbstat WHERE name = 'runs' OR name IN "
                               "(SELECT name FROM sqlite_master WHERE tbl_name = 'runs') GROUP BY name").fetchall()
            db.close()
            print(f"{route:6s}: {rows} rows, {per:.1f} B of payload per row; started {st:.2f} B, "
                  f"finished {fi:.2f} B stored (relative: {rel[0]:.0%}/{rel[1]:.0%})")
            used = {name: b / rows for name, b in pages if b > 8}
            print(f"        pages' used bytes per run {sum(used.values()):.1f} B: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(used.items())))


if __name__ == "__main__":
    main()
