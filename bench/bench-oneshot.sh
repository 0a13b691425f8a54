#!/bin/bash
# A new user's first command: one embedded `pysprinter run FILE` with a
# cold worker, sandboxed and not, against plain `python3 FILE`
# (bench/bench_oneshot.py). Usage: bench/bench-oneshot.sh [BUILD_DIR] [N]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
exec /usr/bin/python3 "$root/bench/bench_oneshot.py" "$build" "${2:-30}"
