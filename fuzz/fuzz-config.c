/* libFuzzer target for pysprinterd's config file (src/daemon/daemon-config.c,
 * daemon_config_parse): the YAML an operator writes — tokens and their
 * hashes, per-tenant grants and maxima, limits, server caps, data, index,
 * packages, pool, retention and disk sections.
 *
 * Built with -Dfuzz=true (clang) and run by `make fuzz`
 * (tools/run-fuzzers.sh, seeds in fuzz/seeds/fuzz-config/).
 *
 * Invariants: no crash, leak or undefined behaviour; a refused file always
 * says why; an accepted one can be freed and parsed again the same way. */
#include <stdlib.h>

#include "daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        DaemonConfig cfg;
        _cleanup_free_ char *err = NULL;

        daemon_config_init(&cfg);
        int r = daemon_config_parse(&cfg, (const char *) data, size, "fuzz.yaml", &err);
        if (r < 0 && !err)
                abort(); /* a refusal always says why */
        if (r >= 0 && err)
                abort();
        daemon_config_done(&cfg);
        return 0;
}
