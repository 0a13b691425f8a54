/* Health and metrics: GET /healthz (liveness, and "draining" with 503 once
 * SIGTERM arrived, so a load balancer takes this instance out) and GET
 * /metrics (Prometheus text: runs, phase latencies, queue, HTTP, the warm
 * pool; docs/api.md "Metrics"). */
#include <inttypes.h>
#include <jansson.h>

#include "config.h"
#include "daemon.h"

struct MHD_Response *daemon_api_healthz(const DaemonCall *call, unsigned *ret_status) {
        Daemon *d = call->d;
        unsigned running, queued;
        daemon_run_counts(d, &running, &queued);
        pthread_mutex_lock(&d->lock);
        bool draining = d->draining;
        pthread_mutex_unlock(&d->lock);
        /* A cluster node cut from Redis serves no run (502) and its runs
         * are being taken over: a load balancer is to send clients to
         * another gateway, as for a draining one. */
        bool lost = daemon_cluster_redis_lost(d);
        const char *status = draining ? "draining" : lost ? "redis_unreachable" : "ok";
        json_t *j = json_pack("{s:s, s:s, s:b}", "status", status, "version", PYSPRINTER_VERSION, "auth", !d->no_auth);
        /* The run counts are every tenant's activity: shown where /metrics
         * is (public metrics, else an admin token). With private metrics
         * anyone without a token, or another tenant, watched a tenant's
         * runs start and end here. */
        if (j && daemon_call_sees_activity(call)) {
                json_object_set_new(j, "running", json_integer(running));
                json_object_set_new(j, "queued", json_integer(queued));
        }
        /* Free space and its warnings (docs/operations.md): the host's
         * disk, shown where the run counts are (the data directory's free
         * bytes told anyone without a token how much every tenant's data
         * and runs filled, and when a tenant's upload came in). */
        if (j && daemon_call_sees_activity(call))
                daemon_gc_healthz(d, j);
        struct MHD_Response *resp = daemon_call_json(call, draining || lost ? 503 : 200, j, ret_status);
        if (draining || lost)
                daemon_response_headers(resp, (const char *const[]) { "Retry-After", "5", NULL });
        return resp;
}

#define METRICS_MAX_BYTES ((size_t) 256 << 20)
/* No series is longer: a text closer than this to the cap may lack some. */
#define METRICS_MARGIN_BYTES ((size_t) 64 << 10)

static uint64_t file_size(const char *dir, const char *name) {
        _cleanup_free_ char *p = path_join(dir, name);
        return path_file_bytes(p);
}

struct MHD_Response *daemon_api_metrics(const DaemonCall *call, unsigned *ret_status) {
        static const char *const phases[6] = { "validate", "resolve", "install", "start", "run", "total" };
        static const char *const bounds[16] = { "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                                                "2.5",   "5",    "10",    "30",   "60",  "120", "300", "+Inf" };
        Daemon *d = call->d;
        DaemonMetrics m;
        unsigned running, queued, threads;
        Buf b;

        pthread_mutex_lock(&d->lock);
        m = d->metrics;
        running = d->running;
        queued = d->queued;
        threads = d->threads;
        pthread_mutex_unlock(&d->lock);

        /* An admin's scrape lists every tenant (four series each, a few
         * hundred bytes): 1 MiB cut a daemon of a few thousand tenants
         * short, and every series after theirs (the collector's) was
         * missing from a 200. The cap is room for ~500,000 tenants; a
         * scrape that reaches it is an error, never a silent cut. */
        buf_init(&b, METRICS_MAX_BYTES);
        buf_appends(&b, "# HELP pysprinter_runs_total Runs finished since the daemon started, by final status.\n"
                        "# TYPE pysprinter_runs_total counter\n");
        for (int s = 0; s < _RUN_STATUS_MAX; s++)
                if (run_status_is_final((RunStatus) s))
                        buf_printf(&b, "pysprinter_runs_total{status=\"%s\"} %" PRIu64 "\n",
                                   run_status_to_string((RunStatus) s), m.runs_by_status[s]);
        buf_appends(&b, "# HELP pysprinter_phase_duration_seconds Time spent in each run phase.\n"
                        "# TYPE pysprinter_phase_duration_seconds histogram\n");
        for (int p = 0; p < 6; p++) {
                uint64_t cum = 0;
                for (int i = 0; i < 16; i++) {
                        cum += m.hist[p][i];
                        buf_printf(&b, "pysprinter_phase_duration_seconds_bucket{phase=\"%s\",le=\"%s\"} %" PRIu64 "\n",
                                   phases[p], bounds[i], cum);
                }
                buf_printf(&b, "pysprinter_phase_duration_seconds_sum{phase=\"%s\"} %.6f\n", phases[p], m.hist_sum[p]);
                buf_printf(&b, "pysprinter_phase_duration_seconds_count{phase=\"%s\"} %" PRIu64 "\n", phases[p],
                           m.hist_count[p]);
        }
        buf_printf(&b,
                   "# HELP pysprinter_queue_depth Runs accepted and waiting for a slot.\n"
                   "# TYPE pysprinter_queue_depth gauge\npysprinter_queue_depth %u\n"
                   "# HELP pysprinter_runs_running Runs executing now.\n"
                   "# TYPE pysprinter_runs_running gauge\npysprinter_runs_running %u\n"
                   "# HELP pysprinter_workers Runs in the run manager's hands (queued or running); a pool of at most max_concurrent_runs + 1 threads runs them.\n"
                   "# TYPE pysprinter_workers gauge\npysprinter_workers %u\n"
                   "# HELP pysprinter_workers_max Runs allowed to execute at once.\n"
                   "# TYPE pysprinter_workers_max gauge\npysprinter_workers_max %u\n",
                   queued, running, threads, d->cfg.max_concurrent_runs);
        buf_printf(&b,
                   "# HELP pysprinter_store_bytes Size of the job store (database and WAL).\n"
                   "# TYPE pysprinter_store_bytes gauge\npysprinter_store_bytes %" PRIu64 "\n",
                   file_size(d->data_dir, "pysprinter.db") + file_size(d->data_dir, "pysprinter.db-wal"));
        if (d->store) {
                buf_printf(&b,
                           "# HELP pysprinter_store_commits_total Transactions the run records' writer committed "
                           "(group commit: several runs' records per transaction under load).\n"
                           "# TYPE pysprinter_store_commits_total counter\npysprinter_store_commits_total %" PRIu64 "\n",
                           store_commits(d->store));
                StoreCommitKinds k;
                store_commit_kinds(d->store, &k);
                buf_printf(&b,
                           "# HELP pysprinter_store_commits_by_total The same transactions by why: the journal's "
                           "batch, a write that lingered in the writer, a list's (committed by the writer for "
                           "it), a caller's (a waited write, a read).\n"
                           "# TYPE pysprinter_store_commits_by_total counter\n"
                           "pysprinter_store_commits_by_total{by=\"journal\"} %" PRIu64 "\n"
                           "pysprinter_store_commits_by_total{by=\"lingered\"} %" PRIu64 "\n"
                           "pysprinter_store_commits_by_total{by=\"list\"} %" PRIu64 "\n"
                           "pysprinter_store_commits_by_total{by=\"other\"} %" PRIu64 "\n",
                           k.journal, k.lingered, k.settle, k.other);
        }
        buf_printf(&b,
                   "# HELP pysprinter_http_requests_total HTTP responses sent.\n"
                   "# TYPE pysprinter_http_requests_total counter\npysprinter_http_requests_total %" PRIu64 "\n"
                   "# HELP pysprinter_http_errors_total HTTP error responses by class.\n"
                   "# TYPE pysprinter_http_errors_total counter\n"
                   "pysprinter_http_errors_total{class=\"4xx\"} %" PRIu64 "\n"
                   "pysprinter_http_errors_total{class=\"5xx\"} %" PRIu64 "\n"
                   "# HELP pysprinter_http_waiting Requests holding a connection without a thread (?wait=true, log follow, event streams).\n"
                   "# TYPE pysprinter_http_waiting gauge\npysprinter_http_waiting %u\n"
                   "# HELP pysprinter_rejected_total Runs refused because the queue was full (429).\n"
                   "# TYPE pysprinter_rejected_total counter\npysprinter_rejected_total %" PRIu64 "\n",
                   __atomic_load_n(&d->metrics.http_requests, __ATOMIC_RELAXED),
                   __atomic_load_n(&d->metrics.http_errors_4xx, __ATOMIC_RELAXED),
                   __atomic_load_n(&d->metrics.http_errors_5xx, __ATOMIC_RELAXED), daemon_wait_count(),
                   m.rejected_429);
        unsigned per_thread[DAEMON_HTTP_THREADS_MAX];
        unsigned nthreads = daemon_http_thread_connections(per_thread, ELEMENTSOF(per_thread));
        if (nthreads > 0)
                buf_printf(&b, "# HELP pysprinter_http_thread_connections Open connections per HTTP thread (the "
                               "acceptor gives each new one to the thread with the fewest).\n"
                               "# TYPE pysprinter_http_thread_connections gauge\n");
        for (unsigned i = 0; i < nthreads; i++)
                buf_printf(&b, "pysprinter_http_thread_connections{thread=\"%u\"} %u\n", i, per_thread[i]);
        EnginePoolStats ps;
        engine_pool_stats(d->engine, &ps);
        buf_printf(&b,
                   "# HELP pysprinter_pool_workers Warm workers (one per environment).\n"
                   "# TYPE pysprinter_pool_workers gauge\npysprinter_pool_workers %u\n"
                   "# HELP pysprinter_pool_workers_busy Warm workers with runs in flight.\n"
                   "# TYPE pysprinter_pool_workers_busy gauge\npysprinter_pool_workers_busy %u\n"
                   "# HELP pysprinter_pool_instances Warm instances of deployed functions.\n"
                   "# TYPE pysprinter_pool_instances gauge\npysprinter_pool_instances %u\n"
                   "# HELP pysprinter_pool_instances_busy Warm instances running an invocation.\n"
                   "# TYPE pysprinter_pool_instances_busy gauge\npysprinter_pool_instances_busy %u\n"
                   "# HELP pysprinter_pool_pss_bytes Proportional set size of the warm pool.\n"
                   "# TYPE pysprinter_pool_pss_bytes gauge\npysprinter_pool_pss_bytes %" PRIu64 "\n"
                   "# HELP pysprinter_pool_memory_budget_bytes The pool's PSS budget.\n"
                   "# TYPE pysprinter_pool_memory_budget_bytes gauge\npysprinter_pool_memory_budget_bytes %" PRIu64 "\n"
                   "# HELP pysprinter_pool_acquires_total Worker acquisitions by outcome.\n"
                   "# TYPE pysprinter_pool_acquires_total counter\n"
                   "pysprinter_pool_acquires_total{result=\"warm\"} %" PRIu64 "\n"
                   "pysprinter_pool_acquires_total{result=\"cold\"} %" PRIu64 "\n"
                   "# HELP pysprinter_pool_evictions_total Workers stopped to stay under the budget.\n"
                   "# TYPE pysprinter_pool_evictions_total counter\npysprinter_pool_evictions_total %" PRIu64 "\n",
                   ps.workers, ps.busy, ps.instances, ps.instances_busy, ps.pss_bytes, ps.memory_budget, ps.hits, ps.misses,
                   ps.evictions);
        buf_printf(&b,
                   "# HELP pysprinter_invokes_on_http_thread_total Warm invokes begun on the HTTP thread that "
                   "received them, by where they ended.\n"
                   "# TYPE pysprinter_invokes_on_http_thread_total counter\n"
                   "pysprinter_invokes_on_http_thread_total{ended=\"http_thread\"} %" PRIu64 "\n"
                   "pysprinter_invokes_on_http_thread_total{ended=\"watcher\"} %" PRIu64 "\n"
                   "# HELP pysprinter_adhoc_runs_on_http_thread_total Ad-hoc runs begun on the HTTP thread "
                   "that received them (no run thread), by where they ended.\n"
                   "# TYPE pysprinter_adhoc_runs_on_http_thread_total counter\n"
                   "pysprinter_adhoc_runs_on_http_thread_total{ended=\"http_thread\"} %" PRIu64 "\n"
                   "pysprinter_adhoc_runs_on_http_thread_total{ended=\"watcher\"} %" PRIu64 "\n"
                   "# HELP pysprinter_invokes_begun_by_watcher_total Queued warm invokes the run watcher began "
                   "when an instance came free.\n"
                   "# TYPE pysprinter_invokes_begun_by_watcher_total counter\n"
                   "pysprinter_invokes_begun_by_watcher_total %" PRIu64 "\n"
                   "# HELP pysprinter_run_thread_runs_total Runs a run thread took (ad-hoc runs, cold or queued "
                   "invokes).\n"
                   "# TYPE pysprinter_run_thread_runs_total counter\n"
                   "pysprinter_run_thread_runs_total %" PRIu64 "\n"
                   "# HELP pysprinter_run_watcher_wakes_total Wake-ups of the run watcher's poll().\n"
                   "# TYPE pysprinter_run_watcher_wakes_total counter\n"
                   "pysprinter_run_watcher_wakes_total %" PRIu64 "\n"
                   "# HELP pysprinter_run_watcher_ends_total Runs whose watch the run watcher ended.\n"
                   "# TYPE pysprinter_run_watcher_ends_total counter\n"
                   "pysprinter_run_watcher_ends_total %" PRIu64 "\n",
                   m.invokes_inline, m.invokes_watched, m.adhoc_inline, m.adhoc_watched, m.watcher_begun, m.run_thread_runs, m.watcher_wakes,
                   m.watcher_ends);
        uint64_t fh, fm;
        function_cache_stats(d->functions, &fh, &fm);
        buf_printf(&b,
                   "# HELP pysprinter_function_lookups_total Deployed-function lookups (invokes, gets) by where they "
                   "were answered.\n"
                   "# TYPE pysprinter_function_lookups_total counter\n"
                   "pysprinter_function_lookups_total{from=\"memory\"} %" PRIu64 "\n"
                   "pysprinter_function_lookups_total{from=\"store\"} %" PRIu64 "\n",
                   fh, fm);
        /* Bytes used per area and tenant, and the last collection. */
        /* The tenants' names and usage: an admin's (or --no-auth's one
         * user), not anyone's who reaches a public /metrics. */
        daemon_gc_metrics(d, &b, d->no_auth || (call->tenant && call->role == TOKEN_ROLE_ADMIN));
        if (b.len + METRICS_MARGIN_BYTES > b.max) {
                buf_free(&b);
                return daemon_call_error(call, 500, "internal", ret_status,
                                         "the metrics do not fit in %u MiB: too many tenants' series",
                                         (unsigned) (METRICS_MAX_BYTES >> 20));
        }
        size_t n = b.len;
        return daemon_text_response(200, "text/plain; version=0.0.4; charset=utf-8", buf_steal(&b), n, ret_status);
}

