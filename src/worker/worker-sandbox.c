/* Sandbox hooks of the worker. This version implements --sandbox=none
 * semantics only: the run child gets its own process group (so the whole
 * group can be killed) and rlimits; isolation lives in src/sandbox/. */
#include "worker.h"

#include <sys/resource.h>

int worker_sandbox_setup(int argc, char **argv, char **ret_error) {
        for (int i = 1; i < argc; i++)
                if (startswith(argv[i], "--sandbox=") && !streq(argv[i], "--sandbox=none")) {
                        *ret_error = xasprintf("sandbox mode '%s' is not supported by this worker", argv[i] + 10);
                        return -EOPNOTSUPP;
                }
        return 0;
}

int worker_sandbox_child(const char *run_json, const int *extra_fds, size_t n_extra, char **ret_error) {
        if (setpgid(0, 0) < 0) {
                *ret_error = xasprintf("setpgid: %s", strerror(errno));
                return -errno;
        }
        struct rlimit core = { 0, 0 };
        (void) setrlimit(RLIMIT_CORE, &core);
        return 0;
}
