/* The one collection the daemon's background collector, `pysprinterd gc`
 * and `pysprinter gc` run (docs/operations.md "Retention"). */
#include <assert.h>

#include "engine-internal.h"
#include "pkg.h"
#include "store.h"

int engine_gc(Store *s, const char *data_dir, const RetentionConfig *cfg, bool dry_run, const volatile bool *stop,
              GcStats *ret, char **ret_error) {
        assert(s && data_dir && cfg && ret && ret_error);
        int r = store_gc(s, cfg, data_dir, retention_now(), dry_run, stop, ret);
        if (r < 0) {
                *ret_error = xasprintf("cannot collect the run store: %s", strerror(-r));
                return r;
        }
        if (dry_run || (stop && *stop))
                return 0;
        uint64_t freed = 0;
        _cleanup_free_ char *err = NULL;
        r = pkg_env_prune(data_dir, UINT64_MAX, &freed, NULL, &err);
        if (r < 0) {
                *ret_error = xasprintf("cannot collect the package store: %s", err ? err : strerror(-r));
                return r;
        }
        ret->package_bytes += freed;
        return 0;
}
