#!/bin/bash
# Runs every benchmark in bench/ (bench-*.sh) against one build, in turn,
# and says which failed. Usage: bench/run-all.sh [BUILD_DIR]
# (make bench; default $PYSPRINTER_BUILD, else build/).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-${PYSPRINTER_BUILD:-$root/build}}" && pwd)
export PYSPRINTER_BUILD=$build
failed=()
for b in "$root"/bench/bench-*.sh; do
        echo "==== $(basename "$b")"
        "$b" "$build" || failed+=("$(basename "$b")")
done
if [ ${#failed[@]} -gt 0 ]; then
        echo "benchmarks that failed: ${failed[*]}" >&2
        exit 1
fi
