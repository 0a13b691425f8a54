#!/bin/bash
# Thaw cost of an idle warm instance (issue 10, item 9).
# Usage: bench/bench-freeze.sh [BUILD_DIR] [N]   (needs to be able to make cgroups: root)
# A child in its own run cgroup answers pings on a pipe. Measured N times,
# medians: a ping round trip (baseline); freeze, then thaw + ping (what an
# invocation of a frozen instance pays); the freeze write alone.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
n=${2:-300}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/freeze.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <signal.h>
#include "sandbox.h"
static int cmp(const void *a, const void *b) { double x = *(const double *) a, y = *(const double *) b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
        int n = atoi(argv[1]);
        char *err = NULL, name[64];
        SandboxLimits l = { 0 };
        SandboxCgroup *cg = NULL;
        snprintf(name, sizeof(name), "bench-freeze-%d", getpid());
        if (sandbox_cgroup_new(name, &l, &cg, &err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
        int fds[6], ping[2], pong[2];
        size_t nfd = sandbox_cgroup_procs_fds(cg, fds, 6);
        if (pipe(ping) < 0 || pipe(pong) < 0) return 1;
        pid_t p = fork();
        if (p == 0) {
                for (size_t i = 0; i < nfd; i++) (void) !write(fds[i], "0", 1);
                char c;
                while (read(ping[0], &c, 1) == 1) (void) !write(pong[1], &c, 1);
                _exit(0);
        }
        double *base = calloc(n, sizeof(double)), *thaw = calloc(n, sizeof(double)), *fr = calloc(n, sizeof(double));
        char c = 'x';
        for (int i = 0; i < n; i++) {
                usec_t t0 = now_monotonic();
                (void) !write(ping[1], &c, 1); (void) !read(pong[0], &c, 1);
                base[i] = (now_monotonic() - t0) / 1000.0;
                t0 = now_monotonic();
                if (sandbox_cgroup_freeze(cg, true) < 0) { fprintf(stderr, "no freezer\n"); return 1; }
                fr[i] = (now_monotonic() - t0) / 1000.0;
                usleep(2000);
                t0 = now_monotonic();
                sandbox_cgroup_freeze(cg, false);
                (void) !write(ping[1], &c, 1); (void) !read(pong[0], &c, 1);
                thaw[i] = (now_monotonic() - t0) / 1000.0;
        }
        qsort(base, n, sizeof(double), cmp); qsort(thaw, n, sizeof(double), cmp); qsort(fr, n, sizeof(double), cmp);
        printf("n=%d: ping %.3f ms; thaw+ping %.3f ms (p99 %.3f): thaw adds %.3f ms; freeze write %.3f ms (medians)\n",
               n, base[n / 2], thaw[n / 2], thaw[n * 99 / 100], thaw[n / 2] - base[n / 2], fr[n / 2]);
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        sandbox_cgroup_free(cg);
        return 0;
}
C
cc -O2 -D_GNU_SOURCE -I"$root/src/sandbox" -I"$root/src/basic" "$tmp/freeze.c" \
   "$build/src/sandbox/libsandbox.a" "$build/src/basic/libbasic.a" -lseccomp -o "$tmp/freeze"
"$tmp/freeze" "$n"
