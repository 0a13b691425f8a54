/* The daemon's side of operations (docs/operations.md): the `retention:` and
 * `disk:` config sections, the background collector thread, the bytes-used
 * gauges of /metrics, the free-space warning of /healthz and the 507 check
 * before a run is accepted.
 *
 * The collector calls engine_gc() (the same collection as `pysprinterd gc`
 * and `pysprinter gc`) every retention.interval_s; between collections it
 * refreshes the usage snapshot /metrics prints, so a scrape never walks the
 * data directory itself. */
#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <sys/statvfs.h>

#include "daemon.h"

/* How often the usage snapshot is refreshed between collections: every
 * USAGE_REFRESH_USEC, or less often when a walk takes more than
 * 1/USAGE_SHARE of that. The walk reads every run record (~0.25 µs each,
 * docs/operations.md "Watching the disk"): a store of tens of millions of
 * runs is refreshed every few minutes, and the walk never takes more than
 * ~5% of one CPU from the runs. */
#define USAGE_REFRESH_USEC (30ULL * USEC_PER_SEC)
#define USAGE_SHARE 20
/* How long the submit's free-space check trusts its last statvfs: one per
 * submit was a syscall on every invoke, and the reserve is a margin of
 * megabytes that a tenth of a second of writes does not cross. */
#define FREE_CACHE_USEC (100ULL * USEC_PER_MSEC)

struct DaemonGc {
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        volatile bool stop;     /* read by store_gc between batches */
        /* guarded by lock */
        GcStats last;
        uint64_t collections;
        uint64_t failures; /* collections that ended in an error */
        char *last_error;  /* the last collection's, NULL when it worked */
        bool have_last;
        StoreUsage usage;
        bool have_usage;
};

/* ---- free space ------------------------------------------------------------ */

static int free_bytes(const char *dir, uint64_t *ret) {
        struct statvfs sv;
        if (statvfs(dir, &sv) < 0)
                return -errno;
        *ret = (uint64_t) sv.f_bavail * sv.f_frsize;
        return 0;
}

static void disk_limits(Daemon *d, uint64_t *ret_reserve, uint64_t *ret_warn) {
        pthread_rwlock_rdlock(&d->cfg_lock);
        *ret_reserve = d->cfg.retention.reserve_bytes;
        *ret_warn = d->cfg.retention.warn_bytes;
        pthread_rwlock_unlock(&d->cfg_lock);
}

/* Free bytes in the data directory, from a statvfs at most FREE_CACHE_USEC
 * old. A reader may pair a new stamp with the value before it, which is at
 * most one period older. */
static int free_bytes_cached(Daemon *d, uint64_t *ret) {
        usec_t now = now_monotonic(), stamp = atomic_load_explicit(&d->disk_free_stamp, memory_order_acquire);
        if (stamp != 0 && now - stamp < FREE_CACHE_USEC) {
                *ret = atomic_load_explicit(&d->disk_free_avail, memory_order_relaxed);
                return 0;
        }
        uint64_t avail = 0;
        int r = free_bytes(d->data_dir, &avail);
        if (r < 0)
                return r;
        atomic_store_explicit(&d->disk_free_avail, avail, memory_order_relaxed);
        atomic_store_explicit(&d->disk_free_stamp, now ?: 1, memory_order_release);
        *ret = avail;
        return 0;
}

int daemon_gc_disk_check(Daemon *d) {
        assert(d);
        uint64_t reserve, warn, avail = 0;
        disk_limits(d, &reserve, &warn);
        if (reserve == 0 || free_bytes_cached(d, &avail) < 0)
                return 0;
        return avail < reserve ? -ENOSPC : 0;
}

const char *daemon_gc_disk_full_message(void) {
        return "the daemon's data directory is almost full (less free space than disk.reserve_bytes): new runs "
               "are refused until an operator frees space (pysprinterd gc, retention: in the config; "
               "docs/operations.md)";
}

void daemon_gc_healthz(Daemon *d, struct json_t *j) {
        assert(d && j);
        uint64_t reserve, warn, avail = 0;
        disk_limits(d, &reserve, &warn);
        if (free_bytes(d->data_dir, &avail) < 0)
                return;
        json_object_set_new(j, "disk", json_pack("{sIsIsI}", "free_bytes", (json_int_t) avail, "warn_bytes",
                                                 (json_int_t) warn, "reserve_bytes", (json_int_t) reserve));
        json_t *w = json_array();
        if (reserve && avail < reserve)
                json_array_append_new(w, json_sprintf("only %" PRIu64 " bytes free in the data directory, below "
                                                      "disk.reserve_bytes (%" PRIu64 "): new runs are refused (507)",
                                                      avail, reserve));
        else if (warn && avail < warn)
                json_array_append_new(w, json_sprintf("only %" PRIu64 " bytes free in the data directory, below "
                                                      "disk.warn_bytes (%" PRIu64 ")",
                                                      avail, warn));
        if (d->gc) {
                pthread_mutex_lock(&d->gc->lock);
                if (d->gc->last_error)
                        json_array_append_new(w, json_sprintf("the last collection failed (retention is not applied "
                                                              "until one works): %s",
                                                              d->gc->last_error));
                pthread_mutex_unlock(&d->gc->lock);
        }
        json_object_set_new(j, "warnings", w);
}

/* ---- the collector --------------------------------------------------------- */

/* Refreshes the usage snapshot; returns how long until the next refresh
 * (USAGE_REFRESH_USEC, or USAGE_SHARE times what this one took). */
static usec_t refresh_usage(Daemon *d) {
        usec_t t0 = now_monotonic();
        StoreUsage u = {};
        if (store_usage(d->store, d->data_dir, &u) >= 0) {
                pthread_mutex_lock(&d->gc->lock);
                store_usage_done(&d->gc->usage);
                d->gc->usage = u;
                d->gc->have_usage = true;
                pthread_mutex_unlock(&d->gc->lock);
        }
        return MAX(USAGE_REFRESH_USEC, (now_monotonic() - t0) * USAGE_SHARE);
}

static void collect(Daemon *d, const RetentionConfig *rc) {
        GcStats st = {};
        _cleanup_free_ char *err = NULL;
        int r = engine_gc(d->store, d->data_dir, rc, false, &d->gc->stop, &st, &err);
        if (r < 0)
                log_error("collector: %s", err);
        /* Seen by an operator's alerts, not only in the log: a failure
         * counts (/metrics) and the last one's reason is a /healthz
         * warning until a collection works. */
        pthread_mutex_lock(&d->gc->lock);
        free(d->gc->last_error);
        d->gc->last_error = r < 0 ? xstrdup(err ?: strerror(-r)) : NULL;
        d->gc->failures += r < 0;
        pthread_mutex_unlock(&d->gc->lock);
        if (st.runs || st.dag_runs || st.data_objects || st.package_bytes || st.memo_entries || st.cancel_requests)
                log_info("collector: removed %" PRIu64 " runs, %" PRIu64 " DAG runs, %" PRIu64 " memo entries, %" PRIu64
                         " data objects, %" PRIu64 " cancel requests; freed %" PRIu64 " bytes in %.1fs",
                         st.runs, st.dag_runs, st.memo_entries, st.data_objects, st.cancel_requests,
                         gc_stats_bytes(&st), (double) st.duration_usec / USEC_PER_SEC);
        pthread_mutex_lock(&d->gc->lock);
        d->gc->last = st;
        d->gc->have_last = true;
        d->gc->collections++;
        pthread_mutex_unlock(&d->gc->lock);
}

static void *gc_main(void *userdata) {
        Daemon *d = userdata;
        (void) pthread_setname_np(pthread_self(), "collector");
        usec_t next_collect = 0, interval = 0;
        for (;;) {
                usec_t period = refresh_usage(d);
                RetentionConfig rc;
                pthread_rwlock_rdlock(&d->cfg_lock);
                retention_config_copy(&rc, &d->cfg.retention);
                /* A cluster's catalogue is in Redis: this store's missing
                 * references say nothing about an object's use. */
                rc.keep_data_objects = d->cluster != NULL;
                pthread_rwlock_unlock(&d->cfg_lock);
                usec_t now = now_monotonic();
                /* First collection one interval after start; a reload
                 * that changes the interval starts counting again. */
                if (next_collect == 0 || rc.interval_usec != interval)
                        next_collect = now + rc.interval_usec;
                interval = rc.interval_usec;
                if (rc.interval_usec && now >= next_collect && !d->gc->stop) {
                        collect(d, &rc);
                        period = refresh_usage(d);
                        next_collect = now_monotonic() + rc.interval_usec;
                }
                usec_t wait = period;
                if (rc.interval_usec)
                        wait = MIN(wait, next_collect > now_monotonic() ? next_collect - now_monotonic() : 0);
                retention_config_done(&rc);

                pthread_mutex_lock(&d->gc->lock);
                if (!d->gc->stop && wait > 0)
                        (void) cond_wait_usec(&d->gc->wake, &d->gc->lock, wait);
                bool stop = d->gc->stop;
                pthread_mutex_unlock(&d->gc->lock);
                if (stop)
                        return NULL;
        }
}

int daemon_gc_start(Daemon *d) {
        assert(d && d->store && !d->gc);
        d->gc = xcalloc(1, sizeof(DaemonGc));
        pthread_mutex_init(&d->gc->lock, NULL);
        pthread_cond_init(&d->gc->wake, NULL);
        int r = pthread_create(&d->gc->thread, NULL, gc_main, d);
        if (r != 0)
                return -r;
        d->gc->started = true;
        return 0;
}

void daemon_gc_stop(Daemon *d) {
        if (!d->gc)
                return;
        pthread_mutex_lock(&d->gc->lock);
        d->gc->stop = true;
        pthread_cond_broadcast(&d->gc->wake);
        pthread_mutex_unlock(&d->gc->lock);
        if (d->gc->started)
                pthread_join(d->gc->thread, NULL);
        store_usage_done(&d->gc->usage);
        free(d->gc->last_error);
        pthread_mutex_destroy(&d->gc->lock);
        pthread_cond_destroy(&d->gc->wake);
        free(d->gc);
        d->gc = NULL;
}

void daemon_gc_metrics(Daemon *d, Buf *b, bool per_tenant) {
        assert(d && b);
        uint64_t avail = 0;
        if (free_bytes(d->data_dir, &avail) >= 0)
                buf_printf(b,
                           "# HELP pysprinter_disk_free_bytes Free space of the data directory's file system.\n"
                           "# TYPE pysprinter_disk_free_bytes gauge\npysprinter_disk_free_bytes %" PRIu64 "\n",
                           avail);
        if (!d->gc)
                return;
        pthread_mutex_lock(&d->gc->lock);
        if (d->gc->have_usage) {
                const StoreUsage *u = &d->gc->usage;
                buf_printf(b,
                           "# HELP pysprinter_disk_bytes Bytes used in the data directory, by area.\n"
                           "# TYPE pysprinter_disk_bytes gauge\n"
                           "pysprinter_disk_bytes{area=\"runs\"} %" PRIu64 "\n"
                           "pysprinter_disk_bytes{area=\"logs\"} %" PRIu64 "\n"
                           "pysprinter_disk_bytes{area=\"data\"} %" PRIu64 "\n"
                           "pysprinter_disk_bytes{area=\"packages\"} %" PRIu64 "\n"
                           "pysprinter_disk_bytes{area=\"dags\"} %" PRIu64 "\n",
                           u->db_bytes, u->log_bytes, u->data_bytes, u->package_bytes, u->dag_bytes);
        }
        if (d->gc->have_usage && per_tenant) {
                const StoreUsage *u = &d->gc->usage;
                buf_appends(b, "# HELP pysprinter_tenant_disk_bytes Bytes a tenant's runs' logs and datasets use.\n"
                               "# TYPE pysprinter_tenant_disk_bytes gauge\n");
                for (size_t i = 0; i < u->n_tenants; i++)
                        buf_printf(b,
                                   "pysprinter_tenant_disk_bytes{tenant=\"%s\",area=\"logs\"} %" PRIu64 "\n"
                                   "pysprinter_tenant_disk_bytes{tenant=\"%s\",area=\"data\"} %" PRIu64 "\n",
                                   u->tenants[i].tenant, u->tenants[i].log_bytes, u->tenants[i].tenant,
                                   u->tenants[i].data_bytes);
                buf_appends(b, "# HELP pysprinter_tenant_run_records Run records a tenant has in the store.\n"
                               "# TYPE pysprinter_tenant_run_records gauge\n");
                for (size_t i = 0; i < u->n_tenants; i++)
                        buf_printf(b, "pysprinter_tenant_run_records{tenant=\"%s\"} %" PRIu64 "\n",
                                   u->tenants[i].tenant, u->tenants[i].runs);
        }
        const GcStats *s = &d->gc->last;
        buf_printf(b,
                   "# HELP pysprinter_gc_collections_total Collections the daemon's collector finished.\n"
                   "# TYPE pysprinter_gc_collections_total counter\npysprinter_gc_collections_total %" PRIu64 "\n"
                   "# HELP pysprinter_gc_failures_total Collections that ended in an error (the log says which).\n"
                   "# TYPE pysprinter_gc_failures_total counter\npysprinter_gc_failures_total %" PRIu64 "\n",
                   d->gc->collections, d->gc->failures);
        if (d->gc->have_last)
                buf_printf(b,
                           "# HELP pysprinter_gc_last_removed What the last collection removed, by kind.\n"
                           "# TYPE pysprinter_gc_last_removed gauge\n"
                           "pysprinter_gc_last_removed{kind=\"runs\"} %" PRIu64 "\n"
                           "pysprinter_gc_last_removed{kind=\"dag_runs\"} %" PRIu64 "\n"
                           "pysprinter_gc_last_removed{kind=\"memo_entries\"} %" PRIu64 "\n"
                           "pysprinter_gc_last_removed{kind=\"logs\"} %" PRIu64 "\n"
                           "pysprinter_gc_last_removed{kind=\"data_objects\"} %" PRIu64 "\n"
                           "pysprinter_gc_last_removed{kind=\"cancel_requests\"} %" PRIu64 "\n"
                           "# HELP pysprinter_gc_last_freed_bytes Bytes the last collection freed, by area.\n"
                           "# TYPE pysprinter_gc_last_freed_bytes gauge\n"
                           "pysprinter_gc_last_freed_bytes{area=\"logs\"} %" PRIu64 "\n"
                           "pysprinter_gc_last_freed_bytes{area=\"dags\"} %" PRIu64 "\n"
                           "pysprinter_gc_last_freed_bytes{area=\"data\"} %" PRIu64 "\n"
                           "pysprinter_gc_last_freed_bytes{area=\"packages\"} %" PRIu64 "\n"
                           "# HELP pysprinter_gc_last_timestamp_seconds When the last collection started.\n"
                           "# TYPE pysprinter_gc_last_timestamp_seconds gauge\n"
                           "pysprinter_gc_last_timestamp_seconds %" PRIu64 "\n"
                           "# HELP pysprinter_gc_last_duration_seconds How long the last collection took.\n"
                           "# TYPE pysprinter_gc_last_duration_seconds gauge\n"
                           "pysprinter_gc_last_duration_seconds %.3f\n",
                           s->runs, s->dag_runs, s->memo_entries, s->logs, s->data_objects, s->cancel_requests,
                           s->log_bytes, s->dag_dir_bytes, s->data_bytes, s->package_bytes,
                           (uint64_t) (s->started / USEC_PER_SEC), (double) s->duration_usec / USEC_PER_SEC);
        pthread_mutex_unlock(&d->gc->lock);
}

void daemon_gc_wake(Daemon *d) {
        if (!d->gc)
                return;
        pthread_mutex_lock(&d->gc->lock);
        pthread_cond_broadcast(&d->gc->wake);
        pthread_mutex_unlock(&d->gc->lock);
}
