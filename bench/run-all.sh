#!/bin/bash
# Runs every benchmark in bench/ (bench-*.sh) against one build, in turn,
# then prints one table of every figure: value, baseline, ratio, goal,
# met / not met (bench/README.md says how to read it).
# Usage: bench/run-all.sh [BUILD_DIR]  (make bench; default $PYSPRINTER_BUILD, else build/).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-${PYSPRINTER_BUILD:-$root/build}}" && pwd)
export PYSPRINTER_BUILD=$build
BENCH_TABLE=$(mktemp /tmp/bench-table.XXXXXX)
export BENCH_TABLE
trap 'rm -f "$BENCH_TABLE"' EXIT
failed=()
# The install benchmark last: it writes ~2.5 GB (its 1.1 GB wheel, twice,
# and pip's venvs), and on a VM whose disk is rate-limited the device stays
# slow for minutes after (round 25: io pressure 70% for a minute after it,
# and the next benchmark's invoke p99 55 ms, its cold env 1.1 s, where alone
# they were ~2 ms and ~130 ms). Every benchmark after it measured that.
benches=()
for b in "$root"/bench/bench-*.sh; do
        [ "$(basename "$b")" = bench-install.sh ] || benches+=("$b")
done
benches+=("$root/bench/bench-install.sh")
for b in "${benches[@]}"; do
        echo "==== $(basename "$b")"
        # The previous benchmark's writes (the install benchmark writes its
        # 1.1 GB wheel twice) are flushed first, not in this one's tail.
        sync
        "$b" "$build" || failed+=("$(basename "$b")")
done
echo
echo "==== summary ($(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ))"
/usr/bin/python3 - "$BENCH_TABLE" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
head = ["figure", "value", "baseline", "ratio", "goal", "met"]
rows = [r + ["-"] * (6 - len(r)) for r in rows]
w = [max(len(r[i]) for r in [head] + rows) for i in range(6)]
for r in [head, ["-" * x for x in w]] + rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
PY
if [ ${#failed[@]} -gt 0 ]; then
        echo "benchmarks that failed: ${failed[*]}" >&2
        exit 1
fi
