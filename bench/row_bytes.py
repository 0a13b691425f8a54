"""Bytes a run takes in the store's pages (issue 15 b, round 21).

    /usr/bin/python3 bench/row_bytes.py BUILD [N]

A daemon of BUILD (home under BENCH_DIR, default the temp dir), benchfn
deployed, N sequential invokes per route (default 300); then SQLite's
dbstat over its database: the runs table's payload per row and the pages'
used bytes per run of the table and each of its indexes. Every page
reaches the disk twice (the WAL, the checkpoint's copy). Prints the last
run's columns too. A benchmark, not a test."""
import pathlib
import sqlite3
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_runpath as B  # noqa: E402


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    with B.serving(build, "row-bytes-") as (proc, port, tmp):
        for path in B.PATHS.values():
            B.sequential(port, path, n)
        db = next((tmp / "home").rglob("pysprinter.db"))
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        cols = [r[1] for r in c.execute("PRAGMA table_info(runs)")]
        row = c.execute("SELECT * FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
        for k, v in zip(cols, row):
            if v is not None:
                print(f"  {k:14s} {v!r}")
        runs = c.execute("SELECT count(*) FROM runs").fetchone()[0]
        total = 0
        for name, payload, used in c.execute(
                "SELECT name, sum(payload), sum(pgsize - unused) FROM dbstat "
                "WHERE name = 'runs' OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'runs') "
                "GROUP BY name ORDER BY name"):
            if used > 8:
                total += used
                print(f"  {name:26s} payload {payload / runs:6.1f} B/run, pages' used bytes {used / runs:6.1f} B/run")
        print(f"{runs} runs: {total / runs:.1f} B of pages per run (row and index entries)")


if __name__ == "__main__":
    main()
