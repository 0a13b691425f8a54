#!/bin/sh
# Warm-worker benchmarks through pysprinterd (see bench_workers.py).
# Usage: bench/bench-workers.sh [BUILD_DIR] [--quick]
set -e
cd "$(dirname "$0")/.."
BUILD=${1:-build}
shift 2>/dev/null || true
exec /usr/bin/python3 bench/bench_workers.py "$BUILD" "$@"
