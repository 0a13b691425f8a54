#!/bin/bash
# Runs the unit tests (meson test) and the end-to-end tests (pytest) and
# prints one combined "N passed, N failed, N skipped" line.
set -u
BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
logdir=$BUILD/test-logs
mkdir -p "$logdir"

meson test -C "$BUILD" --suite unit --print-errorlogs --num-processes 2 2>&1 | tee "$logdir/unit.txt"
u_ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$logdir/unit.txt" | tail -1)
u_fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$logdir/unit.txt" | tail -1)
u_skip=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$logdir/unit.txt" | tail -1)
u_to=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$logdir/unit.txt" | tail -1)
u_ok=${u_ok:-0}; u_fail=$(( ${u_fail:-0} + ${u_to:-0} )); u_skip=${u_skip:-0}

cd "$root"
PYSPRINTER_BUILD=$BUILD "$PYTHON" -m pytest -q -p no:cacheprovider tests/e2e \
    --junitxml="$logdir/e2e.xml" 2>&1 | tee "$logdir/e2e.txt"
e_rc=${PIPESTATUS[0]}
read -r e_ok e_fail e_skip < <("$PYTHON" - "$logdir/e2e.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1, 0); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
t = f = s = 0
for su in suites:
    t += int(su.get("tests", 0)); s += int(su.get("skipped", 0))
    f += int(su.get("failures", 0)) + int(su.get("errors", 0))
print(t - f - s, f, s)
PY
)
# pytest exit 5 means "no tests collected": count nothing, not a failure.
if [ "$e_rc" -ne 0 ] && [ "$e_rc" -ne 5 ] && [ "$e_fail" -eq 0 ]; then
    e_fail=1
fi

passed=$((u_ok + e_ok)); failed=$((u_fail + e_fail)); skipped=$((u_skip + e_skip))
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
