#!/bin/bash
# Cost of a network namespace per run (issue 10, item 3).
# Usage: bench/bench-netns.sh [BUILD_DIR] [N]   (root, or inside `unshare -Ur`;
# BUILD_DIR, which make bench passes every benchmark, is not needed here)
# Measures, in the same run, N times each, from a process the size of a
# small warm worker (MIB, default 20):
#  1. fork + exit (the baseline);
#  2. fork + unshare(CLONE_NEWNET) + lo up + exit: the creation cost seen
#     inside the child, and the whole round trip including the synchronous
#     part of the teardown (the rest is the kernel's deferred cleanup_net);
# then the CPU time of the whole process tree vs wall time (the deferred
# teardown runs in kernel workers and does not show there: see the
# "kworker" note printed).
set -eu
[ -d "${1:-}" ] && shift
n=${1:-500}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/netns.c" <<'C'
#define _GNU_SOURCE
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *) a, y = *(const double *) b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
        int n = atoi(argv[1]);
        size_t sz = (size_t) atoi(argv[2]) << 20;
        char *mem = malloc(sz);
        memset(mem, 1, sz);
        double *rt[2] = { calloc(n, sizeof(double)), calloc(n, sizeof(double)) }, *in = calloc(n, sizeof(double));
        int p2c[2];
        for (int i = 0; i < n; i++)
                for (int mode = 0; mode < 2; mode++) {
                        if (pipe(p2c) < 0) return 1;
                        double t0 = now();
                        pid_t p = fork();
                        if (p == 0) {
                                double a = now();
                                if (mode) {
                                        if (unshare(CLONE_NEWNET) < 0) _exit(1);
                                        int s = socket(AF_INET, SOCK_DGRAM, 0);
                                        struct ifreq r = { 0 };
                                        strcpy(r.ifr_name, "lo");
                                        if (ioctl(s, SIOCGIFFLAGS, &r) < 0) _exit(1);
                                        r.ifr_flags |= IFF_UP;
                                        if (ioctl(s, SIOCSIFFLAGS, &r) < 0) _exit(1);
                                        close(s);
                                }
                                double d = now() - a;
                                (void) !write(p2c[1], &d, sizeof(d));
                                _exit(0);
                        }
                        int st;
                        waitpid(p, &st, 0);
                        rt[mode][i] = (now() - t0) * 1e3;
                        double d = 0;
                        (void) !read(p2c[0], &d, sizeof(d));
                        if (mode) in[i] = d * 1e3;
                        close(p2c[0]);
                        close(p2c[1]);
                        if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "unshare failed (root?)\n"); return 1; }
                }
        qsort(rt[0], n, sizeof(double), cmp);
        qsort(rt[1], n, sizeof(double), cmp);
        qsort(in, n, sizeof(double), cmp);
        printf("n=%d: fork+exit %.3f ms; fork+netns+exit %.3f ms (added %.3f ms); creating it (unshare + lo up) %.3f ms, p99 %.3f ms (medians)\n",
               n, rt[0][n / 2], rt[1][n / 2], rt[1][n / 2] - rt[0][n / 2], in[n / 2], in[n * 99 / 100]);
        return 0;
}
C
cc -O2 -o "$tmp/netns" "$tmp/netns.c"
/usr/bin/time -f "process tree: %e s wall, %U s user, %S s system" "$tmp/netns" "$n" "${MIB:-20}"
echo "(the kernel tears namespaces down in its cleanup_net worker, batched; its CPU is not in the line above)"
