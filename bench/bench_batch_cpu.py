#!/usr/bin/python3
"""Instructions the store writer's journal batches spend per record (issue
15 b, docs/internals/performance-log.md "Invoke path: the -c1 tail (round 13)"): the
daemon under `valgrind --tool=callgrind --toggle-collect=lead_locked`,
N sequential invokes on one route, then SIGTERM (the drain commits the
rest). Prints the instructions counted inside lead_locked() (the batch: its commit, inlined, and its ops freed) and per
invoke (each synchronous invoke is one journaled record).

Usage: /usr/bin/python3 bench/bench_batch_cpu.py BUILD_DIR [v1|lambda] [N]
Needs valgrind. The instructions do not depend on the machine's load."""
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench_runpath as B  # noqa: E402


def main():
    build = pathlib.Path(sys.argv[1]).resolve()
    route = sys.argv[2] if len(sys.argv) > 2 else "v1"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-batch-", dir=os.environ.get("BENCH_DIR")))
    out = tmp / "callgrind.out"
    real = build / "src/daemon/pysprinterd"
    # bench_runpath.start() runs BUILD/src/daemon/pysprinterd: a shadow
    # build directory whose daemon is valgrind around the real one.
    shadow = tmp / "build"
    (shadow / "src/daemon").mkdir(parents=True)
    (shadow / "src/worker").mkdir(parents=True)
    (shadow / "src/worker/pysprinter-worker").symlink_to(build / "src/worker/pysprinter-worker")
    wrapper = shadow / "src/daemon/pysprinterd"
    wrapper.write_text("#!/bin/sh\nexec valgrind --tool=callgrind --toggle-collect=lead_locked "
                       f"--callgrind-out-file={out} {real} \"$@\"\n")
    wrapper.chmod(0o755)
    proc, port = B.start(shadow, tmp)
    try:
        B.deploy(port)
        B.sequential(port, B.PATHS[route], n)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    text = out.read_text()
    m = re.search(r"^summary: (\d+)", text, re.M) or re.search(r"^totals: (\d+)", text, re.M)
    ir = int(m.group(1))
    print(f"build {build} route {route}: {n} invokes, lead_locked {ir} Ir, {ir / n:.0f} Ir per invoke")
    # Per statement of a batch (op_exec_locked: one per record), without
    # the batches' BEGIN/COMMIT, whose count follows the client's pace.
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)], capture_output=True, text=True).stdout
    ops = re.search(r"^\s*([\d,]+) \([^)]*\)\s+=> \S+:op_exec_locked \(([\d,]+)x\)", ann, re.M)
    ex = re.search(r"^\s*([\d,]+) \([^)]*\)\s+=> \S+:sqlite3_exec \(([\d,]+)x\)", ann, re.M)
    for name, m in (("op_exec_locked (a record's statement)", ops), ("sqlite3_exec (BEGIN, COMMIT)", ex)):
        if m:
            total, calls = (int(g.replace(",", "")) for g in m.groups())
            print(f"  {name}: {calls} calls, {total / calls:.0f} Ir each")
    print(f"(callgrind_annotate {out})")


if __name__ == "__main__":
    main()
