#!/bin/bash
# Package install benchmark (issue 3; issue 15's (d) and (e)): pysprinter vs venv + pip, same local
# index. Usage: bench/bench-install.sh [BUILD_DIR]   (default: build)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export PYSPRINTER_BUILD=$(cd "${1:-$root/build}" && pwd)
/usr/bin/python3 "$root/bench/bench_install.py"
# (d): one ~1 GiB wheel (made once, cached under /tmp); BENCH_BIG=0 skips it.
if [ "${BENCH_BIG:-1}" != 0 ]; then
        exec /usr/bin/python3 "$root/bench/bench_install_big.py"
fi
