#!/bin/bash
# Sandbox overhead benchmark (issue 4). Usage: bench/bench-sandbox.sh [BUILD_DIR] [N]
# Measures, in the same run:
#  1. per-run isolation on a warm worker: fork + sandbox_run_enter() (cgroup
#     made, joined, killed and removed; mount/pid/ipc namespaces; tmpfs /tmp,
#     /dev/shm, /proc; rlimits; caps; seccomp) against a plain fork, from a
#     process the size of a warm worker -- the number the goal is about.
#     Twice: as the worker forks a run (worker.c fork_run_child(): the pid
#     namespace and its init made by the worker, sandbox-pidns.c, and a
#     finished run's network namespace reused, sandbox-net.c), and as a run
#     child that makes all its namespaces itself (the fallback: a second
#     fork of the interpreter and a fresh network namespace per run);
#  2. end to end: `pysprinter run` with --sandbox=full against
#     --sandbox=none (a cold worker each time, so this includes the
#     once-per-worker set-up too).
# Prints medians, the added time, and ratio to the 3 ms goal.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
n=${2:-200}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/bench.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "sandbox-internal.h"
static int cmp(const void *a, const void *b) { double x = *(const double *) a, y = *(const double *) b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
        int n = atoi(argv[1]);
        /* Touch MiB as a warm worker would (argv[2]; 20 MiB: CPython with the
         * stdlib modules a run uses; more with packages imported):
         * fork cost grows with the page tables. */
        size_t sz = (size_t) atoi(argv[2]) << 20;
        char *mem = malloc(sz);
        memset(mem, 1, sz);
        char *err = NULL;
        /* What a sandboxed worker prepares once: the filter. (Each run
         * makes its own network namespace: counted in the run.) */
        if (sandbox_seccomp_prepare(&err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
        double *t[3] = { calloc(n, sizeof(double)), calloc(n, sizeof(double)), calloc(n, sizeof(double)) };
        for (int i = 0; i < n; i++) {
                /* 0: plain fork; 1: the run child makes every namespace
                 * itself; 2: as worker.c fork_run_child() forks a run. */
                for (int mode = 0; mode < 3; mode++) {
                        usec_t t0 = now_monotonic();
                        SandboxRunPidns ns = { .init = -1 };
                        int netns = -1;
                        SandboxCgroup *cg = NULL;
                        int fds[6];
                        size_t nfds = 0;
                        if (mode) {
                                SandboxLimits l = { .memory_bytes = 512 << 20, .max_procs = 66, .cpu_millis = 1000 };
                                char name[64];
                                snprintf(name, sizeof(name), "bench-%d-%d", getpid(), i);
                                if (sandbox_cgroup_new(name, &l, &cg, &err) >= 0)
                                        nfds = sandbox_cgroup_procs_fds(cg, fds, 6);
                        }
                        if (mode == 2) {
                                (void) sandbox_netns_lend();
                                if (sandbox_run_pidns_begin(&ns, &err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
                        }
                        pid_t p = fork();
                        if (p == 0) {
                                if (mode == 2)
                                        sandbox_run_pidns_child();
                                if (mode) {
                                        SandboxRunConfig c = { .cgroup_fds = fds, .n_cgroup_fds = nfds };
                                        if (sandbox_run_enter(&c, &err) < 0) { fprintf(stderr, "%s\n", err); _exit(1); }
                                }
                                _exit(0);
                        }
                        if (mode == 2) {
                                netns = sandbox_netns_lend_end();
                                sandbox_run_pidns_end(&ns);
                        }
                        int st;
                        waitpid(p, &st, 0);
                        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { fprintf(stderr, "child failed (mode %d, run %d): %s %d\n", mode, i, WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st)); return 1; }
                        if (mode == 2) {
                                pid_t gone = 0;
                                if (sandbox_run_pidns_drop(&ns, &gone, 5000) < 0) { fprintf(stderr, "the run's init did not die\n"); return 1; }
                                sandbox_netns_return(netns);
                        }
                        sandbox_cgroup_free(cg);
                        t[mode][i] = (now_monotonic() - t0) / 1000.0;
                }
        }
        for (int mode = 0; mode < 3; mode++)
                qsort(t[mode], n, sizeof(double), cmp);
        printf("%.3f %.3f %.3f\n", t[0][n / 2], t[2][n / 2], t[1][n / 2]);
        return 0;
}
C
cc -O2 -D_GNU_SOURCE -I"$root/src/sandbox" -I"$root/src/basic" "$tmp/bench.c" \
   "$build/src/sandbox/libsandbox.a" "$build/src/basic/libbasic.a" -lseccomp -o "$tmp/bench"
mib=${MIB:-20}
read -r plain full fallback < <("$tmp/bench" "$n" "$mib")
added=$(echo "$full - $plain" | bc -l)
printf 'per-run (warm worker of %d MiB, n=%d): fork %.3f ms, fork+sandbox as the worker forks a run %.3f ms, added %.3f ms median; goal 3 ms: %.2fx of goal\n' \
       "$mib" "$n" "$plain" "$full" "$added" "$(echo "$added / 3" | bc -l)"
printf '  (a run child making all its namespaces itself, the fallback: %.3f ms, added %.3f ms)\n' \
       "$fallback" "$(echo "$fallback - $plain" | bc -l)"
if [ -n "${BENCH_TABLE:-}" ]; then
        met=$(echo "$added <= 3" | bc -l)
        printf 'sandbox cost per run (fork+sandbox - fork)\t%.3f ms\tfork %.3f ms\t-\t<= 3 ms\t%s\n' \
               "$added" "$plain" "$([ "$met" = 1 ] && echo met || echo 'NOT MET')" >>"$BENCH_TABLE"
fi

# End to end through the CLI, alternating modes.
export PYSPRINTER_HOME="$tmp/home" PYSPRINTER_WORKER="$build/src/worker/pysprinter-worker"
cat >"$tmp/f.py" <<'PY'
@requirements({})
def main(x: int = 1):
    return x + 1
PY
m=$(( n / 10 > 10 ? n / 10 : 10 ))
/usr/bin/python3 - "$build/src/cli/pysprinter" "$tmp/f.py" "$m" <<'PY'
import statistics, subprocess, sys, time
cli, f, m = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = {"none": [], "full": []}
for _ in range(m):
    for mode in t:
        t0 = time.perf_counter()
        subprocess.run([cli, "run", "--sandbox=" + mode, f], check=True, capture_output=True)
        t[mode].append((time.perf_counter() - t0) * 1000)
none, full = statistics.median(t["none"]), statistics.median(t["full"])
print("end to end (cold worker each run, n=%d): none %.2f ms, full %.2f ms, added %.2f ms median"
      % (m, none, full, full - none))
PY
