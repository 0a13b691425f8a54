#!/bin/bash
# Package install benchmark (issue 3): pysprinter vs venv + pip, same local
# index. Usage: bench/bench-install.sh [BUILD_DIR]   (default: build)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export PYSPRINTER_BUILD=$(cd "${1:-$root/build}" && pwd)
exec /usr/bin/python3 "$root/bench/bench_install.py"
