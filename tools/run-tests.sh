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
# Count cmocka test cases, not test binaries: each binary prints
# "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s),". A binary that died
# before its summary counts as one failure.
read -r u_ok u_fail u_skip < <("$PYTHON" - "$BUILD/meson-logs/testlog.json" <<'PY'
import json, re, sys
ok = fail = skip = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    print(0, 1, 0); sys.exit()
for line in lines:
    t = json.loads(line)
    if t.get("suite") and "unit" not in t["suite"]:
        continue
    out = t.get("stdout", "") + (t.get("stderr") or "")
    p = re.search(r"\[  PASSED  \] (\d+) test", out)
    f = re.search(r"\[  FAILED  \] (\d+) test", out)
    s = re.search(r"\[  SKIPPED \] (\d+) test", out)
    if t["result"] == "SKIP" and not p:
        skip += 1
        continue
    ok += int(p.group(1)) if p else 0
    skip += int(s.group(1)) if s else 0
    if f:
        fail += int(f.group(1))
    elif t["result"] not in ("OK", "EXPECTEDFAIL", "SKIP"):
        fail += 1
print(ok, fail, skip)
PY
)

# The unit tests once more under AddressSanitizer + UBSan (STYLE.md: build
# once with the sanitizers in CI). Their cases count as their own.
a_ok=0; a_fail=0; a_skip=0
if [ "${PYSPRINTER_SKIP_ASAN:-0}" != 1 ]; then
    ASAN_BUILD=${ASAN_BUILD:-$BUILD-asan}
    if [ ! -f "$ASAN_BUILD/build.ninja" ]; then
        meson setup "$ASAN_BUILD" "$root" -Db_sanitize=address,undefined -Db_lundef=false >"$logdir/asan-setup.txt" 2>&1
    fi
    if ninja -C "$ASAN_BUILD" >"$logdir/asan-build.txt" 2>&1; then
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            meson test -C "$ASAN_BUILD" --suite unit --print-errorlogs --num-processes 2 >"$logdir/asan.txt" 2>&1
        read -r a_ok a_fail a_skip < <("$PYTHON" - "$ASAN_BUILD/meson-logs/testlog.json" <<'PY'
import json, re, sys
ok = fail = skip = 0
for line in open(sys.argv[1]).read().splitlines():
    t = json.loads(line)
    out = t.get("stdout", "") + (t.get("stderr") or "")
    p = re.search(r"\[  PASSED  \] (\d+) test", out)
    f = re.search(r"\[  FAILED  \] (\d+) test", out)
    ok += int(p.group(1)) if p else 0
    if f:
        fail += int(f.group(1))
    elif t["result"] not in ("OK", "EXPECTEDFAIL", "SKIP"):
        fail += 1
print(ok, fail, skip)
PY
)
        echo "unit tests under ASan+UBSan: $a_ok passed, $a_fail failed (log: $logdir/asan.txt)"
    else
        echo "the ASan build failed: see $logdir/asan-build.txt"
        a_fail=1
    fi
fi

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

# The libFuzzer targets, each for PYSPRINTER_FUZZ_SECONDS at most (CI sets
# 600 with PYSPRINTER_FUZZ_RUNS=400000, which ends them first; unset: not
# run, `make fuzz` is the developer's way). Each target counts as a case.
f_ok=0; f_fail=0
if [ -n "${PYSPRINTER_FUZZ_SECONDS:-}" ]; then
    FUZZ_BUILD=${FUZZ_BUILD:-$BUILD-fuzz}
    if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
        CC=clang meson setup "$FUZZ_BUILD" "$root" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
            -Db_lundef=false >"$logdir/fuzz-setup.txt" 2>&1
    fi
    if ninja -C "$FUZZ_BUILD" >"$logdir/fuzz-build.txt" 2>&1; then
        # Fixed seed and input count (PYSPRINTER_FUZZ_RUNS): CI replays the
        # inputs checked before a commit instead of drawing new ones.
        "$root/tools/run-fuzzers.sh" "$FUZZ_BUILD" "$PYSPRINTER_FUZZ_SECONDS" "${PYSPRINTER_FUZZ_RUNS:-}" 2>&1 |
            tee "$logdir/fuzz.txt"
        f_ok=$(grep -c '^stat::' "$logdir/fuzz.txt" || true)
        f_fail=$(grep -c '^FAILED: ' "$logdir/fuzz.txt" || true)
    else
        echo "the fuzz build failed: see $logdir/fuzz-build.txt"
        f_fail=1
    fi
fi

passed=$((u_ok + a_ok + e_ok + f_ok)); failed=$((u_fail + a_fail + e_fail + f_fail)); skipped=$((u_skip + a_skip + e_skip))
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
