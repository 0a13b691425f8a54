/* The data catalog's limits from the environment (data.h
 * data_config_from_env()): apart from the catalog, so that what reads only
 * its settings (the daemon's config, the request fuzzer) needs none of
 * the catalog's libraries. */
#include <errno.h>
#include <stdlib.h>

#include "data-internal.h"

static uint64_t env_u64(const char *name, uint64_t dflt) {
        const char *v = getenv(name);
        if (!v || !*v)
                return dflt;
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || *end)
                return dflt;
        return n;
}

uint64_t data_tenant_max_bytes_from_env(bool *ret_set) {
        uint64_t n = env_u64("PYSPRINTER_DATA_TENANT_MAX_BYTES", 0);
        if (ret_set)
                *ret_set = n > 0;
        return n > 0 ? n : DATA_DEFAULT_MAX_TENANT_BYTES;
}

void data_config_from_env(DataConfig *cfg, const char *home) {
        if (!cfg->max_dataset_bytes)
                cfg->max_dataset_bytes = env_u64("PYSPRINTER_DATA_MAX_BYTES", DATA_DEFAULT_MAX_DATASET_BYTES);
        if (!cfg->max_tenant_bytes)
                cfg->max_tenant_bytes = data_tenant_max_bytes_from_env(NULL);
        if (!cfg->max_files)
                cfg->max_files = DATA_DEFAULT_MAX_FILES;
        if (!cfg->url_ttl_sec)
                cfg->url_ttl_sec = env_u64("PYSPRINTER_DATA_TTL", 0);
        if (!cfg->url_timeout_ms)
                cfg->url_timeout_ms = DATA_DEFAULT_URL_TIMEOUT_MS;
        (void) home; /* root stays the caller's: cfg does not own strings */
}
