#!/bin/bash
# Runs every libFuzzer target of a -Dfuzz=true build for a bounded time each.
# Usage: tools/run-fuzzers.sh BUILD_DIR [SECONDS [RUNS]]   (make fuzz; default 30 s)
# Each target starts from its seeds (fuzz/seeds/<target>/) plus the corpus it
# grew in earlier runs (BUILD_DIR/fuzz/corpus/<target>/). A crash, leak or
# sanitizer report fails the run and leaves the reproducer in
# BUILD_DIR/fuzz/crashes/<target>/.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: run-fuzzers.sh BUILD_DIR [SECONDS]}" && pwd)
seconds=${2:-30}
# A third argument, RUNS, makes the run reproducible: libFuzzer's seed is
# fixed and each target stops after RUNS inputs (or SECONDS, whichever comes
# first: give SECONDS as a backstop past the slowest target's RUNS), so a
# machine runs the same inputs as the one that checked them — CI never
# fails on an input nobody has seen. Without it, the inputs differ
# each time (the way to look for new bugs).
runs=${3:-}
targets=$(find "$build/fuzz" -maxdepth 1 -type f -executable -name 'fuzz-*' -printf '%f\n' 2>/dev/null | sort)
[ -n "$targets" ] || { echo "no fuzzers in $build/fuzz (configure with -Dfuzz=true)" >&2; exit 1; }
failed=0
for t in $targets; do
        corpus=$build/fuzz/corpus/$t crashes=$build/fuzz/crashes/$t
        mkdir -p "$corpus" "$crashes"
        seeds=()
        [ -d "$root/fuzz/seeds/$t" ] && seeds=("$root/fuzz/seeds/$t")
        echo "== $t: ${seconds}s"
        fixed=()
        [ -n "$runs" ] && fixed=(-seed=1 -runs="$runs")
        if "$build/fuzz/$t" -max_total_time="$seconds" "${fixed[@]}" -print_final_stats=1 -artifact_prefix="$crashes/" \
                "$corpus" "${seeds[@]}" >"$build/fuzz/$t.log" 2>&1; then
                grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/fuzz/$t.log" | tr '\n' ' '
                echo
        else
                echo "FAILED: $t (log: $build/fuzz/$t.log, reproducer in $crashes/)"
                tail -30 "$build/fuzz/$t.log"
                failed=1
        fi
done
exit $failed
