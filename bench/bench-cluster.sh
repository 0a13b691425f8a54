#!/bin/sh
# Cluster-mode benchmark: the Redis hop and runs/s per busy core with 1..3
# worker nodes, against single-node (see bench_cluster.py).
# Usage: bench/bench-cluster.sh [BUILD_DIR] [--quick]
set -e
cd "$(dirname "$0")/.."
BUILD=${1:-build}
shift 2>/dev/null || true
exec /usr/bin/python3 bench/bench_cluster.py "$BUILD" "$@"
