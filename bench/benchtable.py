"""One row of `make bench`'s table (bench/README.md). A benchmark calls
row(); when run by bench/run-all.sh ($BENCH_TABLE set) the row is appended
to that file as tab-separated fields, and run-all.sh prints every row as
one table at the end. Standalone, a benchmark prints its own lines only."""
import os


def row(figure, value, baseline="-", ratio="-", goal="-", met=None):
    path = os.environ.get("BENCH_TABLE")
    if not path:
        return
    verdict = "-" if met is None else ("met" if met else "NOT MET")
    fields = [str(x).replace("\t", " ") for x in (figure, value, baseline, ratio, goal, verdict)]
    with open(path, "a") as f:
        f.write("\t".join(fields) + "\n")
