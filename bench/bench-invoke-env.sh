#!/bin/sh
# Invoke latency with an empty env vs an env holding requests (issue 15's
# lead; see bench_invoke_env.py). Usage: bench/bench-invoke-env.sh [BUILD_DIR]
set -e
cd "$(dirname "$0")/.."
BUILD=${1:-build}
exec /usr/bin/python3 bench/bench_invoke_env.py "$BUILD" 400
