#!/usr/bin/python3
"""The runs' search (`ps --grep`, GET /v1/runs?q=) on a store of N runs,
before and after its index (docs/internals/run-search.md).

    bench/bench_run_search.py BEFORE_BUILD AFTER_BUILD [N]

Makes one database of N runs (default 1000000; 9 in 10 of tenant `local`,
the `ps` of an embedded CLI), with the schema of BEFORE_BUILD's
`pysprinter`, then copies it for each build. AFTER_BUILD's copy is
migrated and indexed by `pysprinter gc` (timed). Then each text is searched
five times by each build (`ps -n 1000 --grep TEXT`), alternated, and the
median CPU time (user + system) of each is printed beside the other, a
figure a loaded machine moves less than the wall time; the two answers
must be the same. The figures include the CLI's start (~10 ms)."""
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

TEXTS = [
    ("absent", "zzzzzz"),
    ("one run's id", None),
    ("a file, 0.3% of runs", "stage_29.py"),
    ("handler_5, handler_5x: 11% of runs", "handler_5"),
    ("in every run", "pipelines"),
    ("2 characters (the walk)", "Ha"),
    ("another tenant's schedule (5%)", "nightly0"),
]


def cli(build, home, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPRINTER_")}
    env.update(PYSPRINTER_HOME=home, NO_COLOR="1", TZ="UTC")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([os.path.join(build, "src/cli/pysprinter"), *args], env=env, capture_output=True,
                       text=True, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, p.stdout


def make(build, home, n):
    os.makedirs(home)
    with open(os.path.join(home, "f.py"), "w") as f:
        f.write("def f():\n    return 1\n")
    cli(build, home, "run", "--sandbox=none", os.path.join(home, "f.py"))  # makes the database
    db = sqlite3.connect(os.path.join(home, "pysprinter.db"))
    now = int(time.time() * 1e6) - n * 1000
    db.execute("DELETE FROM runs")
    db.execute(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?1) "
        "INSERT INTO runs (id, tenant, filename, function, args_json, kwargs_json, status, exit_code, value_json, "
        "created, started, finished, attempt, max_attempts, fn_name, fn_version, schedule) "
        "SELECT lower(substr(replace(replace(hex(randomblob(10)),'0','q'),'1','w'),1,16)), "
        "CASE WHEN i % 10 = 0 THEN 'other' ELSE 'local' END, 'pipelines/stage_' || (i % 300) || '.py', "
        "'handler_' || (i % 97), '[\"' || (i * 7919 % 100000) || '\"]', '{}', "
        "CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 0, '{\"n\": ' || i || '}', "
        "?2 + i * 1000, 10, 20, 1, 1, CASE WHEN i % 3 = 0 THEN 'fn' || (i % 40) END, "
        "CASE WHEN i % 3 = 0 THEN 1 END, CASE WHEN i % 20 = 0 THEN 'nightly' || (i % 5) END FROM c", (n, now))
    # The deployed functions the runs name (a collection removes the runs
    # of a function that is gone).
    db.executemany("INSERT INTO functions (tenant, name, version, filename, source, created) "
                   "VALUES (?1, ?2, 1, 'f.py', 'def f():\n    return 1\n', ?3)",
                   [(t, f"fn{i}", now) for t in ("local", "other") for i in range(40)])
    db.commit()
    one = db.execute("SELECT id FROM runs WHERE tenant = 'local' ORDER BY rowid LIMIT 1 OFFSET ?1",
                     (n // 3,)).fetchone()[0]
    db.close()
    return one


def main():
    before, after = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000000
    with tempfile.TemporaryDirectory() as tmp:
        hb, ha = os.path.join(tmp, "before"), os.path.join(tmp, "after")
        t = time.monotonic()
        one = make(before, hb, n)
        print(f"{n} runs made in {time.monotonic() - t:.1f} s")
        shutil.copytree(hb, ha)
        took, _ = cli(after, ha, "gc", "--max-age-days", "0", "--max-log-bytes", "0")
        print(f"after: migrated and indexed by `pysprinter gc` in {took:.1f} s of CPU")
        for h in (hb, ha):
            db = sqlite3.connect(os.path.join(h, "pysprinter.db"))
            assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == n, h
            db.close()
        cli(before, hb, "ps", "-n", "1")
        print(f"{'text (CPU time of ps --grep)':<34} {'before':>8} {'after':>8}")
        for what, text in TEXTS:
            text = text or one
            tb, ta = [], []
            for _ in range(5):
                d, out_b = cli(before, hb, "ps", "-n", "1000", "--grep", text)
                tb.append(d)
                d, out_a = cli(after, ha, "ps", "-n", "1000", "--grep", text)
                ta.append(d)
                if out_a != out_b:
                    sys.exit(f"{text}: the answers differ\nbefore:\n{out_b}\nafter:\n{out_a}")
            print(f"{what:<34} {statistics.median(tb) * 1000:>6.0f}ms {statistics.median(ta) * 1000:>6.0f}ms")


if __name__ == "__main__":
    main()
