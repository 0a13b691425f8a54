"""What each commit writes to the WAL, page by page (issue 15 b, round 21).

    /usr/bin/python3 bench/wal_pages.py BUILD [SECONDS] [v1|lambda]

A daemon of BUILD on a disk home whose journal batches are exactly 512
records (PYSPRINTER_TEST_JOURNAL_MAX_RECORDS=512, linger 10 s: every
commit the same size whatever the rate), wrk -c8 for SECONDS (2), then a
copy of its WAL and database: the WAL's frames are parsed (header, page
number, commit marker) and each page mapped to its b-tree and kind with
SQLite's dbstat. Prints frames per commit by b-tree over the last 40
commits, against the pages the commit's new cells fill. Not a timing."""
import collections
import pathlib
import shutil
import struct
import sqlite3
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_runpath as B  # noqa: E402

ENV = {"PYSPRINTER_TEST_JOURNAL_MAX_RECORDS": "512", "PYSPRINTER_TEST_JOURNAL_LINGER_MS": "10000"}


def wal_commits(wal):
    """Each commit's page numbers, in the WAL's order (frames after the
    last valid one, or of an older salt, are left out)."""
    page_size = struct.unpack(">I", wal[8:12])[0]
    salt, off, commits, cur = wal[16:24], 32, [], []
    while off + 24 + page_size <= len(wal):
        pgno, db_size = struct.unpack(">II", wal[off:off + 8])
        if wal[off + 8:off + 16] != salt:
            break
        cur.append(pgno)
        if db_size:
            commits.append(cur)
            cur = []
        off += 24 + page_size
    return page_size, commits


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    route = sys.argv[3] if len(sys.argv) > 3 else "v1"
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="wal-pages-"))
    try:
        p, port = B.warm(build, tmp, route, extra_env=ENV)
        try:
            B.wrk(port, B.PATHS[route], seconds, 8)
            home = tmp / "home"
            shutil.copy(home / "pysprinter.db-wal", tmp / "copy.db-wal")
            shutil.copy(home / "pysprinter.db", tmp / "copy.db")
        finally:
            p.terminate()
            p.wait()
        page_size, commits = wal_commits((tmp / "copy.db-wal").read_bytes())
        db = sqlite3.connect(str(tmp / "copy.db"))
        owner = {pg: (name, kind) for name, pg, kind in db.execute("SELECT name, pageno, pagetype FROM dbstat")}
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        used = dict(db.execute("SELECT name, sum(pgsize - unused) FROM dbstat GROUP BY name"))
        last = commits[-40:]
        frames = collections.Counter(owner.get(pg, ("?", "?")) for c in last for pg in c)
        print(f"page size {page_size}; {len(commits)} commits in the WAL, the last {len(last)} counted; "
              f"{sum(map(len, last)) / max(len(last), 1):.1f} frames a commit")
        for (name, kind), n in frames.most_common():
            fill = ""
            if kind == "leaf" and name in used and runs:
                fill = f"  (512 records' cells fill {512 * used[name] / runs / page_size:.1f} pages)"
            print(f"  {name:28s} {kind:9s} {n / len(last):5.1f} frames a commit{fill}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
