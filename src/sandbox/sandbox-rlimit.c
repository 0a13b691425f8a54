/* Resource limits: the per-process backstops under the cgroup limits. */
#include <sys/resource.h>

#include "sandbox-internal.h"

/* Sets res to at most v. A backstop only lowers: a hard limit the caller
 * already has below v (a CLI started under `ulimit -Hn 512`) stays, where
 * asking for v failed every run with EPERM, since raising a hard limit
 * needs a privilege the sandbox drops. */
static int set(int res, uint64_t v, const char *name, char **ret_error) {
        struct rlimit old;
        if (getrlimit(res, &old) == 0 && old.rlim_max != RLIM_INFINITY && old.rlim_max < v)
                v = old.rlim_max;
        struct rlimit rl = { .rlim_cur = v, .rlim_max = v };
        if (setrlimit(res, &rl) < 0) {
                int r = -errno;
                *ret_error = xasprintf("setrlimit(%s): %s", name, strerror(-r));
                return r;
        }
        return 0;
}

int sandbox_rlimits_apply(const SandboxRunConfig *cfg, bool have_memory_cgroup, char **ret_error) {
        uint64_t tmp = cfg->tmp_bytes ?: 64ULL << 20, shm = cfg->shm_bytes ?: 64ULL << 20;
        int r;
        /* No core files: they would land in the run's tmpfs at best and
         * carry its memory (and secrets it was given) at worst. */
        if ((r = set(RLIMIT_CORE, 0, "RLIMIT_CORE", ret_error)) < 0)
                return r;
        if ((r = set(RLIMIT_NOFILE, cfg->nofile ?: 1024, "RLIMIT_NOFILE", ret_error)) < 0)
                return r;
        /* Above the tmpfs sizes, so filling /tmp ends in ENOSPC, an error
         * the code can handle, rather than SIGXFSZ. */
        if ((r = set(RLIMIT_FSIZE, cfg->fsize_bytes ?: MAX(tmp, shm) + (16ULL << 20), "RLIMIT_FSIZE", ret_error)) < 0)
                return r;
        if ((r = set(RLIMIT_MEMLOCK, 64 << 10, "RLIMIT_MEMLOCK", ret_error)) < 0)
                return r;
        if ((r = set(RLIMIT_MSGQUEUE, 0, "RLIMIT_MSGQUEUE", ret_error)) < 0)
                return r;
        if (cfg->cpu_seconds > 0 && (r = set(RLIMIT_CPU, cfg->cpu_seconds, "RLIMIT_CPU", ret_error)) < 0)
                return r;
        if (!have_memory_cgroup && cfg->fallback_as_bytes > 0 &&
            (r = set(RLIMIT_AS, cfg->fallback_as_bytes, "RLIMIT_AS", ret_error)) < 0)
                return r;
        return 0;
}
