/* pysprinter-worker-sandbox: builds the worker-level sandbox and execs the
 * Python worker inside it (worker-sandbox.c, worker_sandbox_setup()).
 *
 *   pysprinter-worker-sandbox --worker=PATH --sandbox=full [--ro=PATH]...
 *                             [--data=NAME=PATH]... [--out-root=DIR]
 *
 * Why a binary of its own: this process (and its fork that holds the
 * namespaces) never runs Python, but as pysprinter-worker it loaded and
 * relocated libpython (~39,000 relocations, ~9 ms on a host where a page
 * fault costs 18 us) before it could fork; every cold worker start paid
 * that on top of the worker's own load inside. It links no libpython. */
#include "worker.h"

int main(int argc, char **argv) {
        _cleanup_free_ char *err = NULL;
        worker_signals_reset();
        log_set_prefix("pysprinter-worker-sandbox");
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "--version"))) {
                printf("pysprinter-worker-sandbox: starts pysprinter-worker in its sandbox; started by pysprinter, "
                       "not by hand.\n");
                return 0;
        }
        bool named = false, full = false;
        for (int i = 1; i < argc; i++) {
                named = named || startswith(argv[i], "--worker=");
                full = full || streq(argv[i], "--sandbox=full");
        }
        if (!named || !full) {
                log_error("usage: pysprinter-worker-sandbox --worker=PATH --sandbox=full [OPTIONS]");
                return 64;
        }
        /* Returns only on a failure: on success it execs the worker. */
        int r = worker_sandbox_setup(argc, argv, &err);
        log_error("sandbox: %s", r < 0 && err ? err : "the worker was not started");
        return 70;
}
