/* File descriptors: nothing crosses into a run but what it was given. */
#include <dirent.h>
#include <sys/syscall.h>

#include "sandbox-internal.h"

static int cmp_int(const void *a, const void *b) {
        int x = *(const int *) a, y = *(const int *) b;
        return (x > y) - (x < y);
}

static int close_range_fallback(unsigned lo, unsigned hi) {
        DIR *d = opendir("/proc/self/fd");
        if (!d) {
                for (unsigned fd = lo; fd <= MIN(hi, 65535U); fd++)
                        (void) close((int) fd);
                return 0;
        }
        int dfd = dirfd(d);
        struct dirent *de;
        int *list = NULL;
        size_t n = 0;
        while ((de = readdir(d))) {
                char *end;
                long v = strtol(de->d_name, &end, 10);
                if (*end || v < (long) lo || v > (long) hi || v == dfd)
                        continue;
                list = xrealloc(list, (n + 1) * sizeof(int));
                list[n++] = (int) v;
        }
        closedir(d);
        for (size_t i = 0; i < n; i++)
                (void) close(list[i]);
        free(list);
        return 0;
}

static void close_between(unsigned lo, unsigned hi) {
        if (lo > hi)
                return;
        if (syscall(SYS_close_range, lo, hi, 0) < 0)
                (void) close_range_fallback(lo, hi);
}

int sandbox_fds_close_except(const int *keep, size_t n_keep) {
        int sorted[64];
        size_t n = 0;
        for (size_t i = 0; i < n_keep && n < ELEMENTSOF(sorted); i++)
                if (keep[i] >= 3)
                        sorted[n++] = keep[i];
        qsort(sorted, n, sizeof(int), cmp_int);
        unsigned lo = 3;
        for (size_t i = 0; i < n; i++) {
                if ((unsigned) sorted[i] >= lo)
                        close_between(lo, (unsigned) sorted[i] - 1);
                lo = MAX(lo, (unsigned) sorted[i] + 1);
        }
        close_between(lo, ~0U);
        return 0;
}
