/* The one collection the daemon's background collector, `pysprinterd gc`
 * and `pysprinter gc` run (docs/operations.md "Retention"). */
#include <assert.h>
#include <dirent.h>

#include "engine-internal.h"
#include "pkg.h"
#include "store.h"

/* $DATA/cancel/RUN_ID (engine_cancel_request()) of runs no longer in
 * flight: the owner removes its run's file when it acts or when the run
 * ends, and the asker once it saw the end, but both may have died first
 * (the owner's run is then marked lost). A run still queued or running
 * keeps its file: its owner acts on it yet. Returns how many went (dry
 * run: would go, none removed); a file another process removed first is
 * not counted. */
static uint64_t sweep_cancel_requests(Store *s, const char *data_dir, bool dry_run) {
        _cleanup_free_ char *dir = path_join(data_dir, "cancel");
        DIR *d = opendir(dir);
        if (!d)
                return 0;
        uint64_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                RunRecord *rec = NULL;
                bool live = store_run_get(s, NULL, de->d_name, &rec) >= 0 && streq(rec->id, de->d_name) &&
                            rec->status && !run_status_is_final(run_status_from_string(rec->status));
                run_record_free(rec);
                if (!live && (dry_run || unlinkat(dirfd(d), de->d_name, 0) == 0))
                        n++;
        }
        closedir(d);
        return n;
}

int engine_gc(Store *s, const char *data_dir, const RetentionConfig *cfg, bool dry_run, const volatile bool *stop,
              GcStats *ret, char **ret_error) {
        assert(data_dir && cfg && ret && ret_error);
        int r;
        /* No run store (a home without a database): no runs, nor asks to
         * cancel one; its package store alone (`env prepare` fills one
         * without opening an engine). */
        if (s) {
                r = store_gc(s, cfg, data_dir, retention_now(), dry_run, stop, ret);
                if (r < 0) {
                        *ret_error = xasprintf("cannot collect the run store: %s", strerror(-r));
                        return r;
                }
                if (stop && *stop)
                        return 0;
                ret->cancel_requests += sweep_cancel_requests(s, data_dir, dry_run);
        }
        uint64_t freed = 0;
        _cleanup_free_ char *err = NULL;
        r = pkg_env_prune(data_dir, UINT64_MAX, cfg->env_max_idle_usec, dry_run, &freed, NULL, &err);
        if (r < 0) {
                *ret_error = xasprintf("cannot collect the package store: %s", err ? err : strerror(-r));
                return r;
        }
        ret->package_bytes += freed;
        return 0;
}
