/* The run manager: one thread per accepted run, a global and a per-tenant
 * concurrency limit, a bounded queue, live logs for the runs in flight.
 *
 * Records: the daemon inserts the record as queued when it accepts a run,
 * so a queued run that a kill -9 interrupts is marked lost at the next start
 * like a running one instead of vanishing; the engine then takes the record
 * over (it updates an existing one) and writes the log file. */
#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/stat.h>

#include "daemon.h"
#include "data.h"
#include "pkg.h"

static const double hist_bounds[15] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5,   5,    10,    30,   60,  120, 300 };

static void *watch_thread(void *p);

int daemon_runs_init(Daemon *d) {
        pthread_mutex_init(&d->lock, NULL);
        pthread_mutex_init(&d->idem_lock, NULL);
        pthread_mutex_init(&d->pin_lock, NULL);
        pthread_cond_init(&d->sched_cond, NULL);
        pthread_cond_init(&d->change_cond, NULL);
        pthread_cond_init(&d->retry_cond, NULL);
        d->watch_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->watch_efd < 0)
                return -errno;
        /* The run watcher, made once (the daemon's threads stay as many
         * whatever the load); watch_add() tries again if this fails. */
        d->watch_running = thread_start_detached(watch_thread, d) == 0;
        return 0;
}

static TenantCount *tenant_count(Daemon *d, const char *tenant) {
        for (size_t i = 0; i < d->n_tenants; i++)
                if (streq(d->tenants[i].tenant, tenant))
                        return &d->tenants[i];
        d->tenants = xrealloc(d->tenants, (d->n_tenants + 1) * sizeof(TenantCount));
        d->tenants[d->n_tenants] = (TenantCount) { .tenant = xstrdup(tenant) };
        return &d->tenants[d->n_tenants++];
}

/* Invokes of a function beyond its warm instances wait here, in the
 * pending list, not in the engine: a run thread that took one would block
 * in instance_acquire() until an instance came free, and each release
 * wakes every such thread (a broadcast) for one to win it — at wrk -c8
 * over 4 instances, ~1.4 futex wakes and ~0.9 contended-lock wakes per
 * invoke (docs/internals/performance-log.md "Invoke path: hand-offs under concurrency").
 * Held here, the invoke starts when its function's count drops, on the
 * run thread that ended the run before it (pool_thread takes the next
 * pending run itself): no thread waits for an instance and none is woken
 * for one. With d->lock held. */
static FnCount *fn_count_find(Daemon *d, const DRun *r) {
        for (FnCount *f = d->fn_counts; f; f = f->next)
                if (f->fn_version == r->fn_version && streq(f->fn_name, r->fn_name) && streq(f->tenant, r->tenant))
                        return f;
        return NULL;
}

/* With d->lock held: whether r, if a function's invoke, has an instance
 * of its function to run on (one running fewer than the engine keeps). */
static bool fn_instance_free(Daemon *d, const DRun *r) {
        if (!r->fn_name)
                return true;
        FnCount *f = fn_count_find(d, r);
        return !f || f->running < DAEMON_FN_INSTANCES;
}

/* With d->lock held: r's function's count, made when missing. */
static FnCount *fn_count_get(Daemon *d, const DRun *r) {
        FnCount *f = fn_count_find(d, r);
        if (!f) {
                f = xcalloc(1, sizeof(FnCount));
                f->tenant = xstrdup(r->tenant);
                f->fn_name = xstrdup(r->fn_name);
                f->fn_version = r->fn_version;
                f->next = d->fn_counts;
                d->fn_counts = f;
                d->n_fn_counts++;
        }
        return f;
}

/* With d->lock held: whether r, a function's invoke about to be recorded
 * running by its submit (it starts at once), has an instance of its own:
 * one not running nor held by another such invoke. If so it holds one
 * (r->fnr) until it begins (fn_count_enter()) or leaves. */
static bool fn_reserve(Daemon *d, DRun *r) {
        assert(r->fn_name && !r->fnr);
        FnCount *f = fn_count_get(d, r);
        if (f->running + f->reserved >= DAEMON_FN_INSTANCES)
                return false;
        f->reserved++;
        r->fnr = f;
        return true;
}

/* With d->lock held: r's reservation (fn_reserve()) given back, if any. */
static void fn_unreserve(DRun *r) {
        if (!r->fnr)
                return;
        assert(r->fnr->reserved > 0);
        r->fnr->reserved--;
        r->fnr = NULL;
}

/* With d->lock held: r, a function's invoke, runs from now (r->fnc). */
static void fn_count_enter(Daemon *d, DRun *r) {
        assert(!r->fnc);
        fn_unreserve(r);
        if (!r->fn_name)
                return;
        FnCount *f = fn_count_get(d, r);
        f->running++;
        r->fnc = f;
}

/* Idle functions' counts kept for their next invoke: a sequential caller
 * would otherwise allocate and free one per invoke. */
#define FN_COUNTS_KEPT 32u

/* With d->lock held: r no longer runs; its function's count goes when it
 * reaches zero and more than FN_COUNTS_KEPT are listed. */
static void fn_count_leave(Daemon *d, DRun *r) {
        FnCount *f = r->fnc;
        if (!f)
                return;
        r->fnc = NULL;
        assert(f->running > 0);
        if (--f->running > 0 || f->reserved > 0 || d->n_fn_counts <= FN_COUNTS_KEPT)
                return;
        for (FnCount **p = &d->fn_counts; *p; p = &(*p)->next)
                if (*p == f) {
                        *p = f->next;
                        break;
                }
        d->n_fn_counts--;
        free(f->tenant);
        free(f->fn_name);
        free(f);
}

static DRun *drun_free(DRun *r) {
        if (!r)
                return NULL;
        free(r->id);
        free(r->tenant);
        free(r->filename);
        free(r->function);
        free(r->args_json);
        free(r->kwargs_json);
        if (r->fn)
                function_record_free(r->fn);
        else
                free(r->source);
        free(r->fn_name);
        free(r->schedule);
        free(r->limits_json);
        free(r->context_json);
        free(r->requirements_json);
        free(r->lock_json);
        strv_free(r->data);
        free(r->output_data);
        strv_free(r->secrets);
        strv_free(r->env);
        free(r->phase);
        free(r->idem_key);
        free(r->retry_note);
        buf_free(&r->log);
        free(r->chunks);
        run_result_free(r->result);
        run_record_free(r->remote_end);
        free(r);
        return NULL;
}

void drun_unref(Daemon *d, DRun *r) {
        bool last;
        pthread_mutex_lock(&d->lock);
        last = --r->refs == 0;
        pthread_mutex_unlock(&d->lock);
        if (last)
                drun_free(r);
}

/* Output pieces of a run in the daemon's hands that keep their own write
 * time (drun_log_append()). */
#define LOG_CHUNKS_TIMED 4096

/* Appends to the run's in-memory log what was written at now (realtime);
 * called with d->lock held (or before the run is shared). */
static void drun_log_append_at(DRun *r, int stream, const char *data, size_t len, usec_t now) {
        if (len == 0 && stream != 0)
                return;
        size_t off = r->log.len;
        if (buf_append(&r->log, data, len) < 0) {
                r->log_truncated = true;
                return;
        }
        if (r->n_chunks == r->alloc_chunks) {
                r->alloc_chunks = MAX(16u, r->alloc_chunks * 2);
                r->chunks = xrealloc(r->chunks, r->alloc_chunks * sizeof(LogChunk));
        }
        /* Merge consecutive output of one stream written within a
         * millisecond (a flood of small writes): fewer SSE events. A piece
         * written later keeps its own time, which each output event
         * carries ("time"): merged, a line printed a minute after the
         * chunk's first showed that first one's time. Past
         * LOG_CHUNKS_TIMED pieces they merge whatever their times, as
         * before: a run writing a byte every 2 ms must not hold a piece's
         * bookkeeping per byte (its log file keeps every write's time).
         * A piece that ends inside a character is always continued: the
         * events are cut between characters (docs/api.md). */
        LogChunk *last = r->n_chunks > 0 ? &r->chunks[r->n_chunks - 1] : NULL;
        if (stream != 0 && last && last->stream == stream && last->offset + last->len == off &&
            (now - last->timestamp < USEC_PER_MSEC || r->n_chunks >= LOG_CHUNKS_TIMED ||
             utf8_complete_prefix(r->log.data + last->offset, last->len) < last->len)) {
                last->len += len;
                return;
        }
        r->chunks[r->n_chunks++] = (LogChunk){ .stream = stream, .offset = off, .len = len, .timestamp = now };
}

static void drun_log_append(DRun *r, int stream, const char *data, size_t len) {
        drun_log_append_at(r, stream, data, len, now_realtime());
}

static void drun_log_prefill_one(const RunEvent *ev, void *userdata) {
        if (ev->type == RUN_EVENT_OUTPUT)
                drun_log_append_at(userdata, ev->stream, ev->data, ev->len, ev->timestamp);
}

/* A run started again after the daemon died under it: its log file holds
 * the earlier attempts' output, and the new attempt's goes on after it.
 * The in-memory log starts with it too, so that what a follower reads
 * while it runs (`logs`, a stream, Last-Event-ID offsets) is the stored
 * log, not only this attempt's. Its own cap stays whole. In a cluster the
 * earlier output is in the run's Redis log already. */
static void drun_log_prefill(Daemon *d, DRun *r) {
        _cleanup_free_ char *path = engine_run_log_path(d->engine, r->id);
        struct stat st;
        if (!path || stat(path, &st) < 0 || st.st_size == 0)
                return;
        r->log.max += (size_t) st.st_size;
        (void) engine_log_replay(path, drun_log_prefill_one, r);
}

/* The key under which a tenant's use of an environment is recorded: the
 * sha256 of its requirement strings as the lock lists them (the same list
 * pkg_env_list() reports). */
/* Beyond this many remembered keys a note is simply written again. */
#define ENV_NOTED_MAX 4096

char *daemon_env_requirements_key(const char *tenant, char *const *requirements) {
        Buf b;
        buf_init(&b, SIZE_MAX);
        for (char *const *q = requirements; q && *q; q++)
                buf_printf(&b, "%s\n", *q);
        char hex[65];
        sha256_hex(b.data ? b.data : "", b.len, hex);
        buf_free(&b);
        return xasprintf("%s:%s", tenant, hex);
}

static int cmp_basename(const void *a, const void *b) {
        const char *x = *(char *const *) a, *y = *(char *const *) b;
        const char *bx = strrchr(x, '/'), *by = strrchr(y, '/');
        return strcmp(bx ? bx + 1 : x, by ? by + 1 : y);
}

char *daemon_env_dirs_key(const char *tenant, char **dirs) {
        size_t n = strv_length(dirs);
        if (n > 1)
                qsort(dirs, n, sizeof(char *), cmp_basename);
        Buf b;
        buf_init(&b, SIZE_MAX);
        for (size_t i = 0; i < n; i++) {
                const char *slash = strrchr(dirs[i], '/');
                buf_printf(&b, "%s\n", slash ? slash + 1 : dirs[i]);
        }
        char hex[65];
        sha256_hex(b.data ? b.data : "", b.len, hex);
        buf_free(&b);
        return xasprintf("dirs:%s:%s", tenant, hex);
}

/* Stores key in the records of namespace ns ("tenant-env", or
 * "tenant-env-dirs" for a daemon_env_dirs_key()) once per process
 * (d->env_noted holds both: their keys differ). */
static int env_note_key(Daemon *d, const char *ns, const char *key) {
        pthread_mutex_lock(&d->lock);
        bool noted = strv_contains(d->env_noted, key);
        pthread_mutex_unlock(&d->lock);
        if (!noted && store_kv_put(d->store, ns, key, "1") < 0)
                return -EIO;
        pthread_mutex_lock(&d->lock);
        if (d->n_env_noted < ENV_NOTED_MAX && !strv_contains(d->env_noted, key)) {
                d->env_noted = strv_append(d->env_noted, key);
                d->n_env_noted++;
        }
        pthread_mutex_unlock(&d->lock);
        return 0;
}

void daemon_env_note(Daemon *d, const char *tenant, const RunEvent *ev) {
        if (ev->type != RUN_EVENT_PROGRESS || !ev->phase || !streq(ev->phase, "resolve") || !ev->data || !ev->len)
                return;
        /* The same tenant and lock as a recent run: noted already, no
         * parse, no hash (issue 15: each ad-hoc run of a seen set). */
        _cleanup_free_ char *recent = xasprintf("%s\x1f%.*s", tenant, (int) ev->len, ev->data);
        pthread_mutex_lock(&d->lock);
        bool seen = false;
        for (size_t i = 0; i < ELEMENTSOF(d->env_note_recent) && !seen; i++)
                seen = d->env_note_recent[i] && streq(d->env_note_recent[i], recent);
        pthread_mutex_unlock(&d->lock);
        if (seen)
                return;
        json_t *lock = json_loadb(ev->data, ev->len, 0, NULL);
        json_t *a = json_object_get(lock, "requirements");
        bool ok = json_is_array(a);
        char **reqs = NULL, **dirs = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
                if (json_is_string(v))
                        reqs = strv_append(reqs, json_string_value(v));
        /* Its wheels' store dirs are named by their sha256. */
        json_array_foreach(json_object_get(lock, "packages"), i, v) {
                const char *sha = json_string_value(json_object_get(v, "sha256"));
                if (sha)
                        dirs = strv_append(dirs, sha);
        }
        json_decref(lock);
        if (!ok) {
                strv_free(dirs);
                return;
        }
        _cleanup_free_ char *key = daemon_env_requirements_key(tenant, reqs);
        _cleanup_free_ char *dirs_key = dirs ? daemon_env_dirs_key(tenant, dirs) : NULL;
        strv_free(reqs);
        strv_free(dirs);
        /* Every invoke of a deployed function reports its (pinned) lock:
         * one SQLite transaction each was most of what an env with
         * packages added to an invoke (issue 15). Nothing deletes these
         * rows, so a key stored once by this process is stored for good. */
        if (env_note_key(d, "tenant-env", key) < 0 || (dirs_key && env_note_key(d, "tenant-env-dirs", dirs_key) < 0))
                return;
        pthread_mutex_lock(&d->lock);
        size_t slot = d->env_note_next++ % ELEMENTSOF(d->env_note_recent);
        free(d->env_note_recent[slot]);
        d->env_note_recent[slot] = TAKE_PTR(recent);
        pthread_mutex_unlock(&d->lock);
}

/* The keys an earlier daemon on this home noted, so that a restarted
 * daemon's first run of an environment writes nothing on its way to the
 * worker (issue 15, cold env, round 11b): the note's write waited for the
 * store's lock, which the record writer holds through its first commit,
 * the one that creates the WAL and syncs it and its directory (2-100 ms
 * on a shared disk). A key beyond these is written as before. */
void daemon_env_noted_load(Daemon *d) {
        char **keys = NULL, **dirs = NULL;
        if (store_kv_keys(d->store, "tenant-env", ENV_NOTED_MAX, &keys) < 0)
                return;
        /* And the store dirs of those environments (/v1/workers). */
        size_t n = strv_length(keys);
        if (store_kv_keys(d->store, "tenant-env-dirs", ENV_NOTED_MAX, &dirs) >= 0)
                for (char **k = dirs; k && *k && n < ENV_NOTED_MAX; k++, n++)
                        keys = strv_append(keys, *k);
        strv_free(dirs);
        /* Before the first request: nothing noted yet, and the table's
         * keys are unique. */
        pthread_mutex_lock(&d->lock);
        if (!d->env_noted) {
                d->env_noted = TAKE_PTR(keys);
                d->n_env_noted = strv_length(d->env_noted);
        }
        pthread_mutex_unlock(&d->lock);
        strv_free(keys);
}

static void drun_kick(const void *key);

/* snprintf(dst, size, "%s", src) without the format's machinery (~580
 * instructions, five phase events per run). */
static void copy_truncated(char *dst, size_t size, const char *src) {
        size_t n = strnlen(src, size - 1);
        memcpy(dst, src, n);
        dst[n] = 0;
}

static void on_event(const RunEvent *ev, void *userdata) {
        void **ctx = userdata;
        Daemon *d = ctx[0];
        DRun *r = ctx[1];
        bool cancel;

        daemon_env_note(d, r->tenant, ev);

        pthread_mutex_lock(&d->lock);
        switch (ev->type) {
        case RUN_EVENT_OUTPUT:
                drun_log_append(r, ev->stream == 2 ? 2 : 1, ev->data, ev->len);
                break;
        case RUN_EVENT_PHASE:
                if (ev->phase) {
                        free(r->phase);
                        r->phase = xstrdup(ev->phase);
                        /* Phase markers live in the chunk list only, not in
                         * the log text: zero-length chunk, name in phase. */
                        drun_log_append(r, 0, "", 0);
                        if (r->n_chunks > 0)
                                copy_truncated(r->chunks[r->n_chunks - 1].phase, sizeof(r->chunks[0].phase),
                                               ev->phase);
                }
                break;
        case RUN_EVENT_PROGRESS:
        case RUN_EVENT_WARNING:
        default:
                break;
        }
        cancel = r->cancel_requested;
        pthread_cond_broadcast(&d->change_cond);
        pthread_mutex_unlock(&d->lock);
        /* After the unlock: a resumed follower takes d->lock at once.
         * (The run's "done" phase comes while the watcher ends a batch:
         * kept for the batch's end, as its other kicks.) */
        drun_kick(r);

        /* A cancel that raced with the run's start (engine_cancel said
         * -ESRCH) is retried on each event until the engine knows the run. */
        if (cancel)
                (void) engine_cancel(d->engine, r->id);
}

static void record_from_drun(const DRun *r, RunRecord *rec, const char *status) {
        *rec = (RunRecord){
                .id = r->id,
                .tenant = r->tenant,
                .filename = r->filename,
                .function = r->function,
                .args_json = r->args_json,
                .kwargs_json = r->kwargs_json,
                .status = (char *) status,
                .exit_code = -1,
                .created = r->created,
                .started = r->started,
                .fn_name = r->fn_name,
                .fn_version = r->fn_name ? r->fn_version : 0,
                .schedule = r->schedule,
                .limits_json = r->limits_json,
        };
}

/* r's limits, as granted, the way its record keeps them (the run object's
 * "limits", store.h RunRecord.limits_json): set once they are final. */
static void drun_set_limits_json(DRun *r) {
        free(r->limits_json);
        r->limits_json = run_limits_json(&r->limits);
}

static void metrics_observe(Daemon *d, int idx, usec_t us) {
        double s = (double) us / 1e6;
        size_t b = 0;
        while (b < ELEMENTSOF(hist_bounds) && s > hist_bounds[b])
                b++;
        d->metrics.hist[idx][b]++;
        d->metrics.hist_sum[idx] += s;
        d->metrics.hist_count[idx]++;
}

/* The record that ends r (its result must be set): writes it through the
 * queue, fenced by the attempt; a run that never started ends cancelled. */
static int drun_write_final(Daemon *d, DRun *r) {
        const RunResult *res = r->result;
        _cleanup_free_ char *timings = xasprintf(
                "{\"validate_ms\":%.3f,\"resolve_ms\":%.3f,\"install_ms\":%.3f,\"start_ms\":%.3f,"
                "\"run_ms\":%.3f,\"total_ms\":%.3f,\"cold\":%s}",
                res->t_validate / 1000.0, res->t_resolve / 1000.0, res->t_install / 1000.0, res->t_start / 1000.0,
                res->t_run / 1000.0, res->t_total / 1000.0, res->cold ? "true" : "false");
        RunRecord rec;
        record_from_drun(r, &rec, (char *) run_status_to_string(res->status));
        rec.exit_code = res->exit_code;
        if (res->function)
                rec.function = res->function;
        rec.value_json = res->value_json;
        rec.value_repr = res->value_repr;
        rec.error_type = res->error_type;
        rec.error_message = res->error_message;
        rec.traceback = res->traceback;
        rec.outputs_json = res->outputs_json;
        /* The engine did not write it (a claimed run's record is Redis's,
         * or its own write failed): the lock goes with the end. */
        rec.lock_json = res->lock_json;
        rec.timings_json = timings;
        rec.finished = r->finished;
        /* A claimed run's last log goes in with its end (drun_finish()). */
        int k = r->attempt > 0 && r->claimed && d->cluster ? daemon_cluster_finish(d, r, &rec, r->attempt)
                : r->attempt > 0                           ? run_queue_finish(d->queue, &rec, r->attempt)
                                                           : run_queue_cancel(d->queue, r->id, rec.error_message);
        /* -ESTALE: the record has ended already (a newer attempt, or the
         * engine's write landed after all); nothing is left to write. */
        return k == -ESTALE ? 0 : k;
}

static void *unwritten_writer(void *p) {
        Daemon *d = p;
        (void) pthread_setname_np(pthread_self(), "unwritten");
        for (;;) {
                sleep(1);
                pthread_mutex_lock(&d->lock);
                DRun *list = d->unwritten;
                d->unwritten = NULL;
                pthread_mutex_unlock(&d->lock);
                while (list) {
                        DRun *r = list;
                        list = r->next_unwritten;
                        if (drun_write_final(d, r) < 0) {
                                pthread_mutex_lock(&d->lock);
                                r->next_unwritten = d->unwritten;
                                d->unwritten = r;
                                pthread_mutex_unlock(&d->lock);
                                continue;
                        }
                        log_info("run %s: its final record is stored now", r->id);
                        drun_unref(d, r);
                }
        }
        return NULL;
}

/* A run whose final record cannot be written (the disk is full) is kept in
 * memory, shown from there (daemon_run_overlay_unwritten) and written by a
 * thread that tries again every second: it never stays "running". */
static void keep_unwritten(Daemon *d, DRun *r, int error) {
        log_warn("run %s: cannot store its result yet (%s); trying again every second", r->id, strerror(-error));
        pthread_mutex_lock(&d->lock);
        r->refs++;
        r->next_unwritten = d->unwritten;
        d->unwritten = r;
        if (!d->unwritten_writer)
                d->unwritten_writer = thread_start_detached(unwritten_writer, d) == 0;
        pthread_mutex_unlock(&d->lock);
}

void daemon_run_overlay_unwritten(Daemon *d, RunRecord *rec) {
        pthread_mutex_lock(&d->lock);
        for (DRun *r = d->unwritten; r; r = r->next_unwritten) {
                if (!streq(r->id, rec->id))
                        continue;
                /* A newer attempt in the record: this node's attempt was
                 * taken over (it lost its lease, in a cluster) and its end
                 * will be refused as stale; the record's is the run's. */
                if (rec->attempt > r->attempt)
                        break;
                const RunResult *res = r->result;
                free(rec->status);
                rec->status = xstrdup(run_status_to_string(res->status));
                rec->exit_code = res->exit_code;
                free(rec->value_json);
                rec->value_json = xstrdup_or_null(res->value_json);
                free(rec->value_repr);
                rec->value_repr = xstrdup_or_null(res->value_repr);
                free(rec->error_type);
                rec->error_type = xstrdup_or_null(res->error_type);
                free(rec->error_message);
                rec->error_message = xstrdup_or_null(res->error_message);
                free(rec->traceback);
                rec->traceback = xstrdup_or_null(res->traceback);
                rec->finished = r->finished;
                break;
        }
        pthread_mutex_unlock(&d->lock);
}

/* The run watcher ends a batch of runs before it resumes their callers
 * (watch_end()): an HTTP thread woken by a resume preempts the thread that
 * woke it, which would hold up the other ends of the batch (measured: ~0.3
 * preemptions of the watcher per invoke at wrk -c8, in the write() that
 * resumes a connection). On that thread the ends' kicks are kept here
 * (once per key) and sent together; elsewhere they go at once. */
static __thread struct {
        bool on;
        size_t n;
        const void *keys[64];
} kick_defer;

static void drun_kick(const void *key) {
        if (kick_defer.on) {
                for (size_t i = 0; i < kick_defer.n; i++)
                        if (kick_defer.keys[i] == key)
                                return;
                if (kick_defer.n < ELEMENTSOF(kick_defer.keys)) {
                        kick_defer.keys[kick_defer.n++] = key;
                        return;
                }
        }
        daemon_wait_kick(key);
}

static void drun_kicks_flush(void) {
        kick_defer.on = false;
        for (size_t i = 0; i < kick_defer.n; i++)
                daemon_wait_kick(kick_defer.keys[i]);
        kick_defer.n = 0;
}

/* The one place a run's end reaches whoever waits for it (?wait=true,
 * sync and Lambda invokes, DAG tasks, SSE followers), whether this node ran
 * it (drun_finish) or another node did (remote_look(), mostly on the
 * cluster's events thread). With d->lock held; r->result is set. The caller
 * resumes the suspended connections waiting for this end
 * (daemon_wait_kick(DRUN_DONE_KEY(r))) once it has unlocked: a resumed
 * connection's handler takes d->lock first thing, and would only wait for
 * this thread to let go of it (a futex wait and wake per invoke). */
static void drun_signal_done(Daemon *d, DRun *r) {
        /* Released: a reader that sees done (daemon_run_done(), without
         * the lock) sees r->result and the rest of the end. */
        __atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&d->change_cond);
}

/* The log's last line (the truncation note), with d->lock held. Lambda's
 * START/END/REPORT lines are not the run's output: only its log tail
 * (LogType: Tail) has them, so the log a follower reads live and the one
 * stored are the same bytes. */
static void drun_log_close(DRun *r) {
        if (r->log_truncated) {
                static const char msg[] = "\n[pysprinterd: log truncated]\n";
                r->log.max += sizeof(msg);
                drun_log_append(r, 2, msg, sizeof(msg) - 1);
        }
}

static const char *drun_lock_json(const DRun *r);

/* A deployed version's lock whose wheels the engine found at other URLs
 * (the index moved since the deploy: pkg_env_from_lock): the run's lock
 * names the same files (name, version, sha256) where they are now. Saved
 * to the version (its record in SQLite, or in Redis for every gateway of
 * a cluster), so its later invokes fetch from there first: before, after
 * every prune or restart the stale URL was tried and failed first. The
 * version keeps its number, source and the files it runs. */
static void drun_save_moved_lock(Daemon *d, DRun *r, const RunResult *res) {
        const char *locked = drun_lock_json(r);
        if (!r->fn_name || r->fn_version <= 0 || !d->functions || !locked || !res->lock_json ||
            streq(locked, res->lock_json) || !pkg_lock_json_same_files(locked, res->lock_json))
                return;
        int k = function_store_lock_update(d->functions, r->tenant, r->fn_name, r->fn_version, locked, res->lock_json);
        if (k >= 0)
                log_info("function %s/%s version %d: its locked wheels were found at other URLs (the index moved); "
                         "its lock names them now",
                         r->tenant, r->fn_name, r->fn_version);
        else if (k != -ESTALE)
                log_warn("function %s/%s version %d: cannot save where its locked wheels are now: %s", r->tenant,
                         r->fn_name, r->fn_version, strerror(-k));
}

static void drun_finish(Daemon *d, DRun *r, RunResult *res) {
        /* The whole log is in Redis before the record ends: a gateway that
         * sees the run ended serves all of it. Otherwise the last lines go
         * in with the end, under the one lock taken below. */
        bool ship = r->claimed && d->cluster;
        /* Handed back (the stop, past its drain): nothing is written, the
         * run goes on elsewhere — unless it succeeded before the stop's
         * kill reached it: that end is its own, written as any. */
        pthread_mutex_lock(&d->lock);
        if (res->status == RUN_SUCCEEDED)
                r->handed_back = false;
        bool handed_back = r->handed_back;
        pthread_mutex_unlock(&d->lock);
        bool write = (r->daemon_writes_result || res->record_error < 0) && !r->start_unanswered && !handed_back;
        if (ship) {
                pthread_mutex_lock(&d->lock);
                drun_log_close(r);
                pthread_mutex_unlock(&d->lock);
        }
        /* A claimed run that started ends with its log in one script call
         * (drun_write_final(), daemon_cluster_finish()): one round trip
         * less per run. */
        if (ship && !(write && r->attempt > 0)) {
                /* A run handed back goes on elsewhere: its log does not end. */
                int k = daemon_cluster_log_ship(d, r, !handed_back);
                if (k < 0)
                        log_warn("cluster: run %s: cannot send its log to Redis: %s", r->id, strerror(-k));
        }
        /* Handed back: the record says its attempt was given up, so a
         * cancel through any gateway ends it at once instead of waiting for
         * a worker to take it over (cancel.lua). */
        if (ship && handed_back && r->attempt > 0) {
                int k = daemon_cluster_gave_up(d, r);
                if (k == 2)
                        log_info("run %s: its cancel was asked as it was handed back: it ends cancelled", r->id);
                else if (k < 0)
                        log_warn("cluster: run %s: cannot record that it was handed back: %s", r->id, strerror(-k));
        }

        drun_save_moved_lock(d, r, res);
        r->finished = now_realtime();
        r->result = res;
        /* The engine recorded the run and its log file; the daemon writes
         * only when its view (cancel, internal errors) is the final one, or
         * the engine could not write: two writes less per run. */
        if (write) {
                int k = drun_write_final(d, r);
                if (k < 0)
                        keep_unwritten(d, r, k);
        }

        pthread_mutex_lock(&d->lock);
        if (!ship)
                drun_log_close(r);
        if (res->status < _RUN_STATUS_MAX)
                d->metrics.runs_by_status[res->status]++;
        usec_t t[6] = { res->t_validate, res->t_resolve, res->t_install, res->t_start, res->t_run, res->t_total };
        if (res->status != RUN_CANCELLED || res->t_total > 0)
                for (int i = 0; i < 6; i++)
                        metrics_observe(d, i, t[i]);
        r->status = res->status;
        drun_signal_done(d, r);
        for (DRun **p = &d->runs; *p; p = &(*p)->next)
                if (*p == r) {
                        *p = r->next;
                        break;
                }
        pthread_cond_broadcast(&d->change_cond);
        pthread_mutex_unlock(&d->lock);
        drun_kick(DRUN_DONE_KEY(r));
        drun_kick(r);
}

/* A run leaves the run threads' hands, with d->lock held: it no longer
 * counts (the drain waits for that) and drops its reference. The lock is
 * released while the reference goes and held again on return. */
static void run_leave(Daemon *d, DRun *r) {
        d->threads--;
        if (r->claimed)
                d->cluster_claimed--;
        pthread_cond_broadcast(&d->change_cond);
        pthread_mutex_unlock(&d->lock);
        drun_kick(r);
        drun_unref(d, r);
        pthread_mutex_lock(&d->lock);
}

/* The lock r's deployed version was deployed with (NULL: none kept, or
 * not a deployed function's run). */
static const char *drun_lock_json(const DRun *r) {
        return r->fn ? r->fn->lock_json : r->lock_json;
}

/* "~s" and 12 hex digits of a sha256 over r's source, file name, function,
 * requirements and lock's files (each with a NUL after it) into buf. */
static void drun_code_digest(const DRun *r, char *buf, size_t size) {
        Sha256 *h = sha256_new();
        sha256_update(h, r->source ?: "", r->source_len);
        sha256_update(h, "", 1);
        /* The lock too: a name deleted and deployed again with the same
         * file may be pinned to other packages. */
        /* By its files, not their URLs: a lock a node saved with a moved
         * index's URLs (drun_save_moved_lock()) runs the same files, and
         * its next invoke found no warm instance under the key the lock's
         * text had before. */
        PkgLock *lock = NULL;
        _cleanup_free_ char *perr = NULL, *files = NULL;
        if (drun_lock_json(r) && pkg_lock_from_json(drun_lock_json(r), &lock, &perr) >= 0)
                files = pkg_lock_files_json(lock);
        pkg_lock_free(lock);
        const char *parts[] = { r->filename, r->function, r->requirements_json, files ?: drun_lock_json(r) };
        for (size_t k = 0; k < ELEMENTSOF(parts); k++)
                sha256_update(h, parts[k] ?: "", strlen(parts[k] ?: "") + 1);
        char hex[SHA256_HEX_SIZE];
        sha256_final_hex(h, hex);
        sha256_free(h);
        (void) snprintf(buf, size, "~s%.12s", hex);
}

/* The key a deployed function's warm instances share: (tenant, function,
 * version), so globals persist as on Lambda (docs/workers.md).
 * "TENANT/NAME@VERSION", then the limits a warm instance holds from its
 * start (its network namespace, memory and pids cgroup) when the invoke
 * sets them: an invoke that lowers one (`network: false`, less memory)
 * gets an instance started with that, never an idle one started with more.
 * Before, the lowering held only until the function was warm. Then when
 * the version was deployed ("~c", in hex): a name deleted and deployed
 * again numbers its versions from 1 again, and an invoke of the deleted
 * one still queued at the delete starts an instance after the delete
 * retired the others; that instance served the new version 1 (its invokes
 * ran the deleted code). An invoke without the version's record (a
 * cluster's claimed run carries its source; a node cut from Redis misses
 * a delete's retire) names its code instead ("~s", a digest of its
 * source, file, function and requirements: drun_code_digest()), once per
 * run on the run thread. Retiring by the prefix "TENANT/NAME@" still finds
 * them all. l: r's limits (as granted now: run_begin()). */
static char *drun_instance_key(const DRun *r, const RunLimits *l) {
        char mem[32] = "", procs[32] = "", deployed[32] = "";
        if (l->memory_bytes)
                (void) snprintf(mem, sizeof mem, "~m%" PRIu64, l->memory_bytes);
        if (l->max_procs)
                (void) snprintf(procs, sizeof procs, "~p%" PRIu64, l->max_procs);
        if (r->fn)
                (void) snprintf(deployed, sizeof deployed, "~c%" PRIx64, (uint64_t) r->fn->created);
        else
                drun_code_digest(r, deployed, sizeof deployed);
        return xasprintf("%s/%s@%d%s%s%s%s", r->tenant, r->fn_name, r->fn_version,
                         l->network       ? "~net"
                         : l->network_off ? "~nonet"
                                          : "",
                         mem, procs, deployed);
}

/* Appends sep and the first 12 hex digits of a sha256 over salt (NULL:
 * none) and each string of v, its NUL included, to *key: instances told
 * apart by what they started with, named without showing it. */
static void instance_key_add_digest(char **key, const char *sep, const void *salt, size_t salt_len, char *const *v) {
        Sha256 *h = sha256_new();
        if (salt)
                sha256_update(h, salt, salt_len);
        for (; v && *v; v++)
                sha256_update(h, *v, strlen(*v) + 1);
        char hex[SHA256_HEX_SIZE];
        sha256_final_hex(h, hex);
        sha256_free(h);
        char *k = xasprintf("%s%s%.12s", *key, sep, hex);
        free(*key);
        *key = k;
}

/* Whether an instance keyed by limits a (drun_instance_key()) is one
 * keyed by b. */
static bool instance_limits_same(const RunLimits *a, const RunLimits *b) {
        return a->memory_bytes == b->memory_bytes && a->max_procs == b->max_procs && a->network == b->network &&
               a->network_off == b->network_off;
}

/* Whether r may leave the pending list now (d->lock held): a cancelled run
 * and any run of a stopping daemon at once (they end or stay queued without
 * running), the others when a global and a tenant slot are free and, for a
 * function's invoke, one of its instances (fn_instance_free()). */
static bool drun_startable(Daemon *d, DRun *r) {
        if (r->cancel_requested || d->leave_queued)
                return true;
        return d->running < d->cfg.max_concurrent_runs &&
               tenant_count(d, r->tenant)->running < d->cfg.max_concurrent_per_tenant && fn_instance_free(d, r);
}

/* Unlinks and returns the oldest startable pending run, or NULL. A tenant at
 * its limit does not hold up the others behind it. */
/* Unlinks r, which follows prev (NULL: r is the head). */
static void pending_unlink(Daemon *d, DRun *prev, DRun *r) {
        if (prev)
                prev->next_pending = r->next_pending;
        else
                d->pending = r->next_pending;
        if (d->pending_tail == r)
                d->pending_tail = prev;
        r->next_pending = NULL;
}

static DRun *pending_take(Daemon *d) {
        DRun *prev = NULL;
        for (DRun *r = d->pending; r; prev = r, r = r->next_pending)
                if (drun_startable(d, r)) {
                        pending_unlink(d, prev, r);
                        return r;
                }
        return NULL;
}

static void pending_remove(Daemon *d, DRun *r) {
        DRun *prev = NULL;
        for (DRun *x = d->pending; x; prev = x, x = x->next_pending)
                if (x == r) {
                        pending_unlink(d, prev, r);
                        return;
                }
}

static bool pending_startable(Daemon *d) {
        for (DRun *r = d->pending; r; r = r->next_pending)
                if (drun_startable(d, r))
                        return true;
        return false;
}

static void *pool_thread(void *p);

/* An idle run thread (on d->pool_idle_list, most recently idle first): it
 * sleeps on its own futex word until a kick takes it off the list and sets
 * the word (pool_wake()). One waiter per word: a shared condition variable
 * made the signaller itself wait under concurrent invokes (glibc's condvar
 * lock and its group switch, ~0.24 context switches per invoke at wrk -c8;
 * docs/internals/performance-log.md "Invoke path: hand-offs under concurrency"). */
typedef struct RunThread {
        struct RunThread *next;
        uint32_t wake; /* 1: taken off the list, look at the queue */
} RunThread;

/* With d->lock held: the idle run thread to wake for a pending run (taken
 * off the idle list), or NULL. The caller wakes it
 * with pool_wake() after it unlocked — always, or the thread sleeps for
 * good: woken under the lock, its first act would be to wait for that lock
 * (a futex wait and wake more per run). Starts a thread when none is idle;
 * one starting looks at the queue before it sleeps, so none is woken
 * then. */
static RunThread *pool_kick(Daemon *d) {
        if (!pending_startable(d))
                return NULL;
        if (d->pool_starting > 0)
                return NULL;
        RunThread *t = d->pool_idle_list;
        if (t) {
                /* One wake: the thread that takes a run passes it on if
                 * another can start (pool_thread). */
                d->pool_idle_list = t->next;
                t->next = NULL;
                return t;
        }
        /* Every thread is busy: one more, up to a slot per concurrent run
         * plus one, so that a cancelled or left-queued run never waits
         * behind the running ones. */
        unsigned cap = MAX(d->cfg.max_concurrent_runs, 1u) + 1;
        if (d->pool_threads >= cap)
                return NULL;
        /* Starting from now: a second kick before it looks at the queue
         * leaves the run to it instead of making another. */
        d->pool_threads++;
        d->pool_starting++;
        int k = thread_start_detached(pool_thread, d);
        if (k != 0) {
                d->pool_threads--;
                d->pool_starting--;
                log_error("cannot start a run thread: %s", strerror(k));
        }
        return NULL;
}

/* Wakes t, a thread pool_kick() took off the idle list (NULL: none), with
 * d->lock not held. */
static void pool_wake(RunThread *t) {
        if (!t)
                return;
        __atomic_store_n(&t->wake, 1, __ATOMIC_RELEASE);
        (void) syscall(SYS_futex, &t->wake, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void daemon_runs_kick(Daemon *d) {
        pool_wake(pool_kick(d));
}

/* A run between its engine's begin and end: run_one() in steps, so that a
 * warm invoke can begin on the HTTP thread that received it and end there
 * or on a run thread (run_inline()). What the RunSpec points to lives here. */
typedef struct RunStep {
        Daemon *d;
        DRun *r;
        void *ctx[2];
        RunSpec spec;
        char *instance_key;
        char **mounts;
        DataHolds *holds; /* on the content of mounts until the run ended */
        char **env;
        char *data_error, *secret_error;
        DataOutput out;
        int sk, dk;
        bool started;           /* counted running (not cancelled before it started) */
        EngineRun *er;          /* NULL: the engine was not started */
        struct RunStep *next;   /* d->watch_new */
} RunStep;

/* The part of a run's spec that says what runs (its code, arguments,
 * limits, requirements): run_begin() adds how and where;
 * drun_adhoc_eligible() asks the engine whether it could begin at once. */
/* The engine's store_output for a run's output_data: data_store_output(),
 * fenced in a cluster. A claimed run's attempt stores its output only
 * while it is still the run's current one here: a node that lost its
 * lease (stopped, partitioned) while the run ran has seen it taken over
 * and run again elsewhere, and its late output would become the dataset's
 * current version although its late result is dropped as stale. (Checked
 * just before the store: a takeover in between is not caught.) */
static int store_output_fenced(const char *dir, void *userdata, char **ret_outputs_json, char **ret_error) {
        RunStep *st = userdata;
        if (st->r->claimed && st->d->cluster && daemon_cluster_attempt_current(st->d, st->r->id, st->r->attempt) == 0) {
                *ret_error = xstrdup("this attempt of the run was taken over by another node: its output is "
                                     "not stored");
                return -ESTALE;
        }
        return data_store_output(dir, &st->out, ret_outputs_json, ret_error);
}

static RunSpec drun_code_spec(const Daemon *d, const DRun *r) {
        return (RunSpec){
                .source = r->source,
                .source_len = r->source_len,
                .filename = r->filename,
                .function = r->function,
                .args_json = r->args_json,
                .kwargs_json = r->kwargs_json,
                .limits = r->limits,
                .sandbox = d->cfg.sandbox,
                .context_json = r->context_json,
                .requirements_json = r->requirements_json,
                .lock_json = drun_lock_json(r),
                .no_cache = r->no_cache,
        };
}

/* queued -> running and attempt += 1, in the queue (d->lock not held). A
 * claimed run's start that got no answer (Redis down or restarting, the
 * connection lost with the reply) is asked again until Redis answers:
 * start.lua knows the same start (node and time) again. Ending the run
 * with the error instead would leave a start that did land "running" in
 * Redis, held by this live node that no longer runs it. Given up only when
 * the run is cancelled or the daemon stops: then its entry waits for
 * reclaim.lua (start_unanswered). */
static int drun_queue_start(Daemon *d, DRun *r) {
        usec_t pause = 50 * USEC_PER_MSEC;
        for (;;) {
                int k = run_queue_start(d->queue, r->id, r->started, &r->attempt);
                if (k >= 0 || k == -ESTALE || !r->claimed)
                        return k;
                pthread_mutex_lock(&d->lock);
                bool give_up = r->cancel_requested || d->leave_queued;
                pthread_mutex_unlock(&d->lock);
                if (give_up)
                        return k;
                log_warn("run %s: the queue did not answer its start (%s); asking again", r->id, strerror(-k));
                (void) usleep(pause);
                pause = MIN(pause * 2, USEC_PER_SEC);
        }
}

/* The environment of r's run with its secrets opened (store_secrets_env()),
 * d->lock not held. A claimed run's secrets are in the cluster's Redis:
 * one that did not answer (-ECONNREFUSED; -ECOMM, the connection lost
 * with the read sent: a read, safe to ask again) said nothing about them,
 * and the run has started (drun_queue_start()), so ending it with
 * SecretError would make a blip its final answer. Asked again until Redis
 * answers, as its start is; given up only when the run is cancelled (its
 * end is then "cancelled", run_end_step()) or the daemon stops (nothing is
 * written: the run goes to reclaim.lua with the node, start_unanswered). */
static int drun_secrets_env(Daemon *d, DRun *r, char ***ret_env, char **ret_error) {
        usec_t pause = 50 * USEC_PER_MSEC;
        for (;;) {
                char *why = NULL;
                int k = store_secrets_env(d->store, d->secret_key, r->tenant, r->secrets, r->env, ret_env, &why);
                if (k >= 0 || !r->claimed || (k != -ECONNREFUSED && k != -ECOMM)) {
                        *ret_error = why;
                        return k;
                }
                pthread_mutex_lock(&d->lock);
                bool cancelled = r->cancel_requested, stopping = d->leave_queued;
                pthread_mutex_unlock(&d->lock);
                if (cancelled || stopping) {
                        r->start_unanswered = stopping && !cancelled;
                        *ret_error = why;
                        return k;
                }
                log_warn("run %s: %s (the cluster's Redis did not answer); asking again", r->id, why);
                free(why);
                (void) usleep(pause);
                pause = MIN(pause * 2, USEC_PER_SEC);
        }
}

/* ---- retries ----------------------------------------------------------------
 *
 * Lambda tries a failed asynchronous (Event) invocation twice more, ~1 and
 * ~2 minutes later (MaximumRetryAttempts, default 2). Here such a run is
 * tried again while its attempts last (max_attempts: server.max_attempts
 * or the deploy's and invoke's retries; retries: 0 never), after
 * server.event_retry_delay_ms, doubled for each try after the second. The
 * engine leaves a failed attempt's record to the daemon
 * (RunSpec.record_success_only); the queue puts it back to queued with its
 * attempt kept (RunQueueOps.requeue), so a restart during the wait runs it
 * (a queued run) and the next start counts attempt + 1. Between, the run
 * is queued, in memory on Daemon.retrying, holding no run thread; a thread
 * (made on the first retry) moves it to the pending queue when its time
 * comes, or at once when it is cancelled or the daemon drains. */

/* Whether a failure of r's current attempt would be tried again. */
static bool drun_retry_left(const Daemon *d, const DRun *r) {
        return r->lambda && !r->answer_waits && !r->caller_waits && !r->endpoint && r->fn_name && !d->cluster &&
               !r->claimed && r->attempt > 0 && r->attempt < r->max_attempts;
}

static void *retry_thread(void *p) {
        Daemon *d = p;
        (void) pthread_setname_np(pthread_self(), "retry-timer");
        pthread_mutex_lock(&d->lock);
        for (;;) {
                usec_t now = now_monotonic(), next = UINT64_MAX;
                bool moved = false;
                for (DRun **q = &d->retrying; *q;) {
                        DRun *r = *q;
                        if (r->retry_due > now && !r->cancel_requested && !d->draining) {
                                next = MIN(next, r->retry_due);
                                q = &r->next_retry;
                                continue;
                        }
                        *q = r->next_retry;
                        r->next_retry = NULL;
                        d->n_retrying--;
                        tenant_count(d, r->tenant)->retrying--;
                        /* Queued again: the list's reference is now the
                         * run thread's (run_leave() drops it). */
                        d->queued++;
                        tenant_count(d, r->tenant)->queued++;
                        d->threads++;
                        if (d->pending_tail)
                                d->pending_tail->next_pending = r;
                        else
                                d->pending = r;
                        d->pending_tail = r;
                        moved = true;
                }
                if (moved) {
                        RunThread *wake = pool_kick(d);
                        pthread_mutex_unlock(&d->lock);
                        pool_wake(wake);
                        pthread_mutex_lock(&d->lock);
                        continue;
                }
                if (next == UINT64_MAX)
                        pthread_cond_wait(&d->retry_cond, &d->lock);
                else
                        cond_wait_usec(&d->retry_cond, &d->lock, next - now);
        }
        return NULL;
}

/* After run_end_step(): r's failed attempt is tried again later (true: r
 * and res are the retry's now, res freed) or not (false: the caller ends
 * the run with res). d->lock not held. */
static bool drun_retry(Daemon *d, DRun *r, RunResult *res) {
        if (res->status != RUN_FAILED && res->status != RUN_KILLED)
                return false;
        pthread_mutex_lock(&d->lock);
        /* The thread first: without it a retry would wait for ever. */
        if (!d->retry_thread)
                d->retry_thread = thread_start_detached(retry_thread, d) == 0;
        bool no = r->cancel_requested || d->draining || !d->retry_thread;
        pthread_mutex_unlock(&d->lock);
        if (no)
                return false;
        int k = run_queue_requeue(d->queue, r->id, r->attempt);
        if (k < 0) {
                if (k != -EOPNOTSUPP)
                        log_warn("run %s: cannot queue its retry (%s); it ends failed", r->id, strerror(-k));
                return false;
        }
        pthread_rwlock_rdlock(&d->cfg_lock);
        uint64_t delay_ms = (uint64_t) d->cfg.event_retry_delay_ms << MIN(r->attempt - 1, 16);
        pthread_rwlock_unlock(&d->cfg_lock);
        const char *type = res->error_type ? res->error_type : run_status_to_string(res->status);
        const char *msg = res->error_message ? res->error_message : "";
        _cleanup_free_ char *why = startswith(msg, type) ? xstrdup(msg) : xasprintf("%s: %s", type, msg);
        char *note = xasprintf("pysprinter: attempt %d of %d failed (%s); trying again after %" PRIu64 " ms, "
                               "as Lambda retries a failed Event invocation\n",
                               r->attempt, r->max_attempts, why, delay_ms);
        log_info("run %s: attempt %d of %d failed (%s); trying again in %" PRIu64 " ms", r->id, r->attempt,
                 r->max_attempts, why, delay_ms);
        run_result_free(res);
        pthread_mutex_lock(&d->lock);
        free(r->retry_note);
        r->retry_note = note;
        r->status = RUN_QUEUED;
        r->daemon_writes_result = false;
        r->retry_due = now_monotonic() + delay_ms * USEC_PER_MSEC;
        r->refs++;
        r->next_retry = d->retrying;
        d->retrying = r;
        d->n_retrying++;
        tenant_count(d, r->tenant)->retrying++;
        pthread_cond_signal(&d->retry_cond);
        pthread_mutex_unlock(&d->lock);
        return true;
}

/* Starts r, with d->lock held; NULL when r left without running (the
 * daemon stops and keeps it queued; the lock is still held). Otherwise the
 * lock is released and the step returned: the engine began unless r was
 * cancelled or could not start. wake: wake an idle run thread once the
 * lock is released (pool_kick). inst: a warm instance taken for r
 * (RunSpec.instance), or NULL. */
static RunStep *run_begin(Daemon *d, DRun *r, RunThread *wake, Instance *inst) {
        TenantCount *tc = tenant_count(d, r->tenant);
        bool cancelled = r->cancel_requested;

        /* Begins (fn_count_enter()) or leaves: no longer held for it. */
        fn_unreserve(r);

        d->queued--;
        tc->queued--;
        if (d->leave_queued && !cancelled) {
                /* The daemon stops: the record stays queued and the next
                 * start runs it. */
                for (DRun **q = &d->runs; *q; q = &(*q)->next)
                        if (*q == r) {
                                *q = r->next;
                                break;
                        }
                pool_wake(wake); /* with the lock held: rare (a stop) */
                run_leave(d, r);
                if (inst)
                        engine_instance_put_back(d->engine, inst);
                return NULL;
        }
        if (!cancelled) {
                d->running++;
                tc->running++;
                fn_count_enter(d, r);
                r->status = RUN_RUNNING;
                r->started = now_realtime();
        }
        RunStep *st = xcalloc(1, sizeof(RunStep));
        st->d = d;
        st->r = r;
        st->ctx[0] = d;
        st->ctx[1] = r;
        st->started = !cancelled;
        pthread_mutex_unlock(&d->lock);
        pool_wake(wake);
        if (cancelled) {
                if (inst)
                        engine_instance_put_back(d->engine, inst);
                return st;
        }

        /* queued -> running and attempt += 1, in the queue; the engine
         * then fills in the rest of the record. */
        st->sk = drun_queue_start(d, r);
        if (st->sk < 0)
                log_error("run %s: the queue cannot start it: %s", r->id, strerror(-st->sk));
        /* Given up unanswered (cancelled, or the daemon stops): whether
         * the start landed is unknown, so no end is written (a cancel of a
         * run still queued would end a run nobody asked to end). Its entry
         * stays pending: this node claims it again once it no longer holds
         * the run, or another node once this one stopped (reclaim.lua). */
        r->start_unanswered = r->claimed && st->sk < 0 && st->sk != -ESTALE;
        /* Started again after its last attempt was cut short (reclaim.lua:
         * its node died, froze or lost Redis past its lease): its output
         * says so before this attempt's, as a worker's death within one
         * attempt does (engine-run.c), so the earlier attempt's lines
         * printed again are not a mystery. */
        if (st->sk >= 0 && r->claimed && r->attempt > 1 && d->cluster) {
                char *note = xasprintf("pysprinter: attempt %d of %d did not end (the node running it stopped or "
                                       "lost Redis while it ran): running it again on node %s\n",
                                       r->attempt - 1, r->max_attempts, daemon_cluster_node_id(d));
                pthread_mutex_lock(&d->lock);
                free(r->retry_note);
                r->retry_note = note;
                pthread_mutex_unlock(&d->lock);
        }

        /* Granted by the config of its submit: a SIGHUP since, while it
         * waited in the queue, may have lowered its tenant's caps (never
         * raised: the grant stands below them). Not under d->lock: a
         * reload takes cfg_lock first. Before its instance key: an
         * instance holds its memory, processes and network from its
         * start, so one taken under the old grant (inst, by r's limits)
         * goes back when they were lowered. */
        RunLimits granted = r->limits;
        pthread_rwlock_rdlock(&d->cfg_lock);
        (void) daemon_limits_clamp(&d->cfg, r->tenant, &granted);
        pthread_rwlock_unlock(&d->cfg_lock);
        if (inst && !instance_limits_same(&granted, &r->limits)) {
                engine_instance_put_back(d->engine, inst);
                inst = NULL;
        }
        st->instance_key = r->fn_name ? drun_instance_key(r, &granted) : NULL;
        /* Datasets resolve per tenant now, not at submit: a URL dataset is
         * revalidated as close to its use as can be. */
        _cleanup_free_ char *data_warning = NULL;
        int dk = 0;
        if (r->data) {
                dk = d->catalog ? data_resolve_mounts(d->catalog, r->tenant, r->data, &st->mounts, &st->holds, NULL,
                                                      &data_warning, &st->data_error)
                                : -EOPNOTSUPP;
                if (data_warning) {
                        _cleanup_free_ char *line = xasprintf("pysprinterd: warning: %s\n", data_warning);
                        pthread_mutex_lock(&d->lock);
                        drun_log_append(r, 2, line, strlen(line));
                        pthread_mutex_unlock(&d->lock);
                }
        }
        /* Secrets open now, in the run's tenant, and live only in this
         * spec until the engine hands them to the run's child. */
        if (dk >= 0 && (r->secrets || r->env))
                dk = drun_secrets_env(d, r, &st->env, &st->secret_error);
        if (st->secret_error) {
                free(st->data_error);
                st->data_error = xstrdup(st->secret_error);
        }
        /* A warm instance holds the environment it started with: a
         * changed secret gets a new instance. The digest is keyed with the
         * secrets' key, so the instance name (/v1/workers) cannot be used
         * to guess a value. */
        if (st->instance_key && st->env)
                instance_key_add_digest(&st->instance_key, "#", d->secret_key, sizeof d->secret_key, st->env);
        /* And the datasets mounted at its start (each mount names the
         * version's content): an invoke naming others, none, or a newer
         * version gets an instance that mounts what it names. Before, it
         * ran on the instance started with the first invoke's datasets
         * and saw those. */
        if (st->instance_key && st->mounts)
                instance_key_add_digest(&st->instance_key, "~d", NULL, 0, st->mounts);
        st->dk = dk;
        st->spec = drun_code_spec(d, r);
        st->spec.limits = granted;
        st->spec.env = st->env;
        st->spec.instance_key = st->instance_key;
        /* Taken for this key only (run_inline(): no secrets, no env). */
        st->spec.instance = inst;
        /* The bound the run threads keep (fn_instance_free()). */
        st->spec.max_instances = DAEMON_FN_INSTANCES;
        st->spec.queued_usec = r->started > r->created ? r->started - r->created : 0;
        st->spec.record_exists = true;
        /* A claimed run's record is Redis's (the daemon writes its
         * end through the queue), not this node's database. */
        st->spec.no_record = r->claimed;
        st->spec.attempt = r->attempt;
        st->spec.max_attempts = r->max_attempts;
        /* A Lambda Event invocation with tries left: its failure is the
         * daemon's to write, or to try again (drun_retry()). */
        st->spec.record_success_only = drun_retry_left(d, r);
        st->spec.start_note = r->retry_note;
        st->spec.run_id = r->id;
        st->spec.tenant = r->tenant;
        st->spec.data = st->mounts;
        st->spec.ready_checked = r->begun_here;
        /* A Function URL's malformed response fails its run in the one
         * write of its end: the record says why the caller got a 502. */
        if (r->endpoint)
                st->spec.check_result = daemon_endpoint_response_check;
        /* output_data: the engine hands the run's /out to the catalog, in
         * the run's tenant (its caps apply), before it writes the run's
         * end. */
        st->out = (DataOutput) { .catalog = d->catalog, .tenant = r->tenant, .name = r->output_data };
        if (r->output_data && !r->fn_name) {
                if (!d->catalog) {
                        st->dk = -EOPNOTSUPP;
                        free(st->data_error);
                        st->data_error = xstrdup("this daemon keeps no datasets (output_data)");
                }
                st->spec.store_output = store_output_fenced;
                st->spec.store_output_userdata = st;
        }
        if (st->sk >= 0 && st->dk >= 0)
                st->er = engine_run_begin(d->engine, &st->spec, on_event, st->ctx);
        else if (inst)
                engine_instance_put_back(d->engine, inst);
        return st;
}

/* Watches the step's run until it ended (true) or the monotonic time until
 * passed (false). */
static bool run_wait(RunStep *st, usec_t until) {
        return !st->er || engine_run_wait(st->er, until);
}

/* The first half of an ended step's run's end: the engine's end (its
 * record's write), the slot it held given back; its result in *ret_res.
 * d->lock not held; st is freed. The run's end is told by drun_finish(). */
static DRun *run_end_step(RunStep *st, RunResult **ret_res) {
        Daemon *d = st->d;
        DRun *r = st->r;
        RunResult *res = NULL;
        if (st->started) {
                res = st->er ? engine_run_end(st->er) : NULL;
                store_env_free(st->env);
                st->env = NULL;
                /* In a cluster the run's output stays on this node, as a
                 * put's does (daemon-data.c): its peers fetch it by hash,
                 * so it is recorded before the run's end is written. */
                daemon_cluster_object_held(d, st->out.hash);
                free(st->out.hash);
                int k = st->sk < 0 ? st->sk : 0;
                if (st->dk < 0 && k >= 0) {
                        r->daemon_writes_result = true;
                        res = xcalloc(1, sizeof(RunResult));
                        res->status = RUN_ERROR;
                        res->exit_code = EXIT_VALIDATION;
                        res->error_type = xstrdup(st->secret_error ? "SecretError" : "DataError");
                        res->error_message = st->data_error ? TAKE_PTR(st->data_error)
                                                            : xasprintf("cannot mount the datasets: %s",
                                                                        strerror(-st->dk));
                } else if (k < 0) {
                        r->daemon_writes_result = true;
                        res = xcalloc(1, sizeof(RunResult));
                        res->status = RUN_ERROR;
                        res->exit_code = EXIT_INTERNAL;
                        res->error_type = xstrdup("InternalError");
                        res->error_message = xasprintf("the engine could not run this: %s", strerror(-k));
                }

                /* The engine left it to the daemon (drun_retry()). */
                if (st->spec.record_success_only && res && res->status != RUN_SUCCEEDED)
                        r->daemon_writes_result = true;

                pthread_mutex_lock(&d->lock);
                TenantCount *tc = tenant_count(d, r->tenant);
                d->running--;
                tc->running--;
                fn_count_leave(d, r);
                pthread_cond_broadcast(&d->sched_cond);
                bool cancelled = r->cancel_requested || r->handed_back;
                pthread_mutex_unlock(&d->lock);

                /* The kill that cancel sends may surface as a limit or an
                 * error; what the user asked for is what they see. (A run
                 * handed back reads as the stop's cancel here, which a DAG
                 * task leaves for the resume; nothing of it is written.) */
                if (cancelled && res->status != RUN_SUCCEEDED && res->status != RUN_CANCELLED) {
                        r->daemon_writes_result = true;
                        res->status = RUN_CANCELLED;
                        res->exit_code = EXIT_LIMIT;
                        free(res->error_type);
                        res->error_type = xstrdup("Cancelled");
                        free(res->error_message);
                        res->error_message = xstrdup("the run was cancelled");
                }
        } else {
                r->daemon_writes_result = true;
                res = xcalloc(1, sizeof(RunResult));
                res->status = RUN_CANCELLED;
                res->exit_code = EXIT_LIMIT;
                res->error_type = xstrdup("Cancelled");
                res->error_message = xstrdup("the run was cancelled before it started");
        }
        free(st->instance_key);
        strv_free(st->mounts);
        data_holds_release(st->holds); /* the run ended: its content may go */
        store_env_free(st->env);
        free(st->data_error);
        free(st->secret_error);
        free(st);
        *ret_res = res;
        return r;
}

/* Ends an ended step's run: its result, the slot it held, its end told to
 * waiters. d->lock is not held on entry and held on return; st is freed. */
static void run_complete(RunStep *st) {
        Daemon *d = st->d;
        RunResult *res = NULL;
        bool may_retry = st->spec.record_success_only;
        DRun *r = run_end_step(st, &res);
        if (!(may_retry && drun_retry(d, r, res)))
                drun_finish(d, r, res);
        pthread_mutex_lock(&d->lock);
        run_leave(d, r);
}

/* Runs r on this thread to its end, with d->lock held (released while the
 * run goes on; held again on return). wake: an idle run thread to wake once
 * the lock is released (pool_kick), or NULL. */
static void run_one(Daemon *d, DRun *r, RunThread *wake) {
        RunStep *st = run_begin(d, r, wake, NULL);
        if (!st)
                return;
        (void) run_wait(st, UINT64_MAX);
        run_complete(st);
}

/* A run thread: takes the oldest run that may start, runs it, and takes
 * the next; sleeps on its own futex word (the idle list) when none may. It
 * never ends: the pool stays as large as the most runs that were in flight
 * at once (at most max_concurrent_runs + 1), so a run costs no thread
 * creation and one wake at most. */
static void *pool_thread(void *p) {
        Daemon *d = p;
        /* SCHED_BATCH: a run thread woken for a run does not preempt the
         * HTTP thread that queued it (the scheduler's wake-up preemption
         * skips batch tasks), which parks that request and serves its
         * other connections first; the run thread then takes a free CPU
         * or the HTTP thread's when it sleeps in epoll_wait. Its own
         * wakes (the instance, the resumed connection) are unchanged.
         * A worker it starts is set back to the usual policy
         * (engine_sandbox_spawn_worker()). Lowering a thread's policy needs
         * no privilege; failing is harmless. */
        struct sched_param sp = { .sched_priority = 0 };
        (void) sched_setscheduler(0, SCHED_BATCH, &sp);
        /* Told apart from the HTTP threads that start it (whose name it
         * would inherit) in perf, top and /proc. */
        (void) pthread_setname_np(pthread_self(), "run-thread");
        RunThread self = {};
        pthread_mutex_lock(&d->lock);
        d->pool_starting--;
        for (;;) {
                for (;;) {
                        DRun *r = pending_take(d);
                        if (!r)
                                break;
                        d->metrics.run_thread_runs++;
                        run_one(d, r, pool_kick(d));
                }
                /* Idle: only a kick takes it off the list and sets the
                 * word, so nothing is lost between the unlock and the
                 * wait (FUTEX_WAIT returns at once once it is set). */
                self.wake = 0;
                self.next = d->pool_idle_list;
                d->pool_idle_list = &self;
                pthread_mutex_unlock(&d->lock);
                while (!__atomic_load_n(&self.wake, __ATOMIC_ACQUIRE))
                        (void) syscall(SYS_futex, &self.wake, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
                pthread_mutex_lock(&d->lock);
        }
        return NULL;
}

/* ---- The run watcher ------------------------------------------------------
 *
 * Warm invokes are watched here, not on run threads: the HTTP thread that
 * received one takes an idle instance of its function and sends it the
 * invocation itself (run_begin()), then hands the run over and suspends the
 * request; one thread polls every handed run's instance socket and pipes
 * at once (engine_run_watch_fds()) and ends each run that answered
 * (run_complete(): the record through the group-commit writer, the waiters
 * woken, the connection resumed), several per wake-up under load. It then
 * begins the function's next queued invoke on the instance that came free.
 * No run thread is woken for such an invoke and none sleeps on its answer
 * (docs/internals/performance-log.md "Invoke path: an event loop for warm invokes (round
 * 9)"). Time limits, cancels and output limits act inside the engine's
 * watch as on a run thread; the watcher sleeps until a run's fd is ready
 * (a cancel signals the run's eventfd, one of them) or its next deadline
 * (what engine_run_watch_fds() gives), never on a tick. */

/* Whether r may begin on an instance engine_instance_take_idle() takes
 * under its function's plain key: a caller waits for its answer, and it
 * has no secrets or env (which key instances apart), datasets, output
 * dataset or idempotency key (set-ups left to the run threads). */
static bool drun_warm_eligible(const Daemon *d, const DRun *r) {
        return r->answer_waits && r->fn_name && !d->cluster && !r->data && !r->secrets && !r->env && !r->output_data &&
               !r->idem_key;
}

/* An idle instance of r's function taken for it, or NULL. d->lock not held.
 * The caller counts itself a taker first (d->takers, atomically) and
 * calls taker_done() once the run counts as running or the instance is
 * back. */
static Instance *drun_take_instance(Daemon *d, const DRun *r) {
        _cleanup_free_ char *key = drun_instance_key(r, &r->limits);
        Instance *inst = NULL;
        return engine_instance_take_idle(d->engine, key, &inst) < 0 ? NULL : inst;
}

/* With d->lock held: a taker is done (its run is counted, or its instance
 * back); true when a queued invoke found no idle instance meanwhile and
 * must be looked at again (watch_start_queued()). */
static bool taker_done(Daemon *d) {
        assert(d->takers > 0);
        __atomic_sub_fetch(&d->takers, 1, __ATOMIC_SEQ_CST);
        bool again = d->take_missed;
        d->take_missed = false;
        return again;
}

static void *watch_thread(void *p);

/* Hands st, a begun run, to the watcher; d->lock not held. The watcher is
 * woken (its eventfd written) only when it sleeps in poll(): while it
 * works it takes the new runs at its next look. */
static void watch_add(Daemon *d, RunStep *st) {
        bool wake = false;
        pthread_mutex_lock(&d->lock);
        st->next = d->watch_new;
        d->watch_new = st;
        if (!d->watch_running) {
                int k = thread_start_detached(watch_thread, d);
                if (k != 0) {
                        /* Not a watcher: this thread watches the run. */
                        log_error("cannot start the run watcher: %s", strerror(k));
                        d->watch_new = st->next;
                        pthread_mutex_unlock(&d->lock);
                        (void) run_wait(st, UINT64_MAX);
                        run_complete(st);
                        pthread_mutex_unlock(&d->lock);
                        return;
                }
                d->watch_running = true;
        } else if (d->watch_sleeping) {
                d->watch_sleeping = false;
                wake = true;
        }
        pthread_mutex_unlock(&d->lock);
        if (wake) {
                uint64_t one = 1;
                (void) !write(d->watch_efd, &one, sizeof(one));
        }
}

/* Begins r on inst on this thread and hands it to the watcher, with
 * d->lock held (released on return). */
static void run_watched(Daemon *d, DRun *r, Instance *inst) {
        RunStep *st = run_begin(d, r, NULL, inst);
        if (!st) {
                pthread_mutex_unlock(&d->lock);
                return;
        }
        watch_add(d, st);
}

/* With d->lock held (released on return): begins the queued warm invokes
 * that may start now on instances that are idle now (the one a run just
 * handed back), oldest first; a run that may start but finds no idle
 * instance, or is not a warm invoke, is left to a run thread. */
static void watch_start_queued(Daemon *d) {
        for (;;) {
                DRun *prev = NULL, *r = d->pending;
                while (r && !drun_startable(d, r)) {
                        prev = r;
                        r = r->next_pending;
                }
                if (!r || r->cancel_requested || d->leave_queued || !drun_warm_eligible(d, r))
                        break;
                pending_unlink(d, prev, r);
                __atomic_add_fetch(&d->takers, 1, __ATOMIC_SEQ_CST);
                pthread_mutex_unlock(&d->lock);
                Instance *inst = drun_take_instance(d, r);
                pthread_mutex_lock(&d->lock);
                (void) taker_done(d); /* this loop looks again anyway */
                if (!inst) {
                        /* Back at the head (the runs before it could not
                         * start). Another thread holds an instance it took
                         * and has not counted yet: it looks again once it
                         * has (its run's end hands the instance on). Else
                         * a run thread starts an instance for it. */
                        r->next_pending = d->pending;
                        d->pending = r;
                        if (!d->pending_tail)
                                d->pending_tail = r;
                        if (__atomic_load_n(&d->takers, __ATOMIC_SEQ_CST) > 0) {
                                d->take_missed = true;
                                pthread_mutex_unlock(&d->lock);
                                return;
                        }
                        break;
                }
                d->metrics.watcher_begun++;
                RunStep *st = run_begin(d, r, NULL, inst);
                if (!st)
                        continue; /* left queued: the daemon stops (the lock is held) */
                watch_add(d, st);
                pthread_mutex_lock(&d->lock);
        }
        RunThread *wake = pool_kick(d);
        pthread_mutex_unlock(&d->lock);
        pool_wake(wake);
}

/* A batch of runs the watcher ends together (watch_end()). */
typedef struct EndedRun {
        DRun *r;
        RunResult *res;
} EndedRun;
typedef struct EndedBatch {
        EndedRun *v;
        size_t n;
} EndedBatch;

/* What the batch's commit made of a held finish (store_finish_release(),
 * with the writer's lock held: no store call here): what the engine's
 * record_finish() would have made of a waited one. A record not written
 * is then written by drun_finish() (drun_write_final()). */
static void ended_record_result(const char *id, int result, void *userdata) {
        EndedBatch *b = userdata;
        if (result >= 0)
                return;
        for (size_t i = 0; i < b->n; i++) {
                RunResult *res = b->v[i].res;
                if (!res || !streq(b->v[i].r->id, id))
                        continue;
                res->recorded = false;
                if (result == -ESTALE)
                        log_warn("run %s: attempt %d ended after a newer attempt took over; its result is dropped", id,
                                 b->v[i].r->attempt);
                else
                        res->record_error = result;
                return;
        }
}

/* Ends the runs whose watch is over (a list through next), in order:
 * 1. each run's engine end, its finish queued, not committed (the
 *    store's held finishes), its slot and instance given back;
 * 2. the queued invokes begun on the instances they handed back: the
 *    next invocations run while this thread commits;
 * 3. ONE commit for the batch's records (round 9 committed each run's
 *    alone: +1 pwrite64 and +2 fcntl per invoke at wrk -c8);
 * 4. only then each end told (drun_finish(): done, waiters), so that no
 *    caller hears of a run before its record is durable (Delivery);
 * 5. their callers resumed (drun_kick()): an HTTP thread woken by a resume
 *    takes this CPU, so last. */
static void watch_end(Daemon *d, RunStep *ended) {
        kick_defer.on = true;
        size_t n = 0;
        for (RunStep *st = ended; st; st = st->next)
                n++;
        EndedBatch b = { .v = xcalloc(n, sizeof(EndedRun)), .n = n };
        store_finish_hold(d->store);
        for (size_t i = 0; ended; i++) {
                RunStep *st = ended;
                ended = st->next;
                /* Counted before the end reaches the caller. */
                __atomic_add_fetch(&d->metrics.watcher_ends, 1, __ATOMIC_RELAXED);
                b.v[i].r = run_end_step(st, &b.v[i].res);
        }
        pthread_mutex_lock(&d->lock);
        watch_start_queued(d);
        store_finish_release(d->store, ended_record_result, &b);
        for (size_t i = 0; i < n; i++) {
                drun_finish(d, b.v[i].r, b.v[i].res);
                pthread_mutex_lock(&d->lock);
                run_leave(d, b.v[i].r);
                pthread_mutex_unlock(&d->lock);
        }
        free(b.v);
        drun_kicks_flush();
}

static void *watch_thread(void *p) {
        Daemon *d = p;
        (void) pthread_setname_np(pthread_self(), "run-watcher");
        size_t n = 0, alloc = 16;
        RunStep **set = xcalloc(alloc, sizeof(RunStep *)); /* the runs watched */
        /* [0] the eventfd, then ENGINE_RUN_POLLFDS per run of set */
        struct pollfd *pf = xcalloc(1 + alloc * ENGINE_RUN_POLLFDS, sizeof(struct pollfd));
        for (;;) {
                pthread_mutex_lock(&d->lock);
                d->watch_sleeping = false;
                RunStep *add = d->watch_new;
                d->watch_new = NULL;
                pthread_mutex_unlock(&d->lock);
                for (; add; add = add->next) {
                        if (n == alloc) {
                                alloc *= 2;
                                set = xrealloc(set, alloc * sizeof(RunStep *));
                                pf = xrealloc(pf, (1 + alloc * ENGINE_RUN_POLLFDS) * sizeof(struct pollfd));
                        }
                        set[n++] = add;
                }
                /* One look at each run: those whose watch is over end
                 * (in the order they were watched), the others are polled. */
                usec_t until = UINT64_MAX;
                RunStep *ended = NULL, **tail = &ended;
                size_t kept = 0;
                for (size_t i = 0; i < n; i++) {
                        RunStep *st = set[i];
                        usec_t u = UINT64_MAX;
                        if (!st->er || engine_run_watch_fds(st->er, pf + 1 + kept * ENGINE_RUN_POLLFDS, &u)) {
                                st->next = NULL;
                                *tail = st;
                                tail = &st->next;
                                continue;
                        }
                        set[kept++] = st;
                        until = MIN(until, u);
                }
                n = kept;
                if (ended) {
                        watch_end(d, ended);
                        continue; /* runs handed meanwhile, and a fresh look */
                }
                pthread_mutex_lock(&d->lock);
                bool sleep = !d->watch_new;
                d->watch_sleeping = sleep;
                pthread_mutex_unlock(&d->lock);
                if (!sleep)
                        continue;
                pf[0] = (struct pollfd) { .fd = d->watch_efd, .events = POLLIN };
                usec_t now = now_monotonic();
                /* Rounded up to the ms: a look due in 300 µs sleeps 1 ms, not 0.
                 * A watch sleeps until its time limit (no 100 ms tick): a
                 * long limit must not overflow the int. */
                int timeout = until == UINT64_MAX ? -1
                              : until > now       ? (int) MIN((until - now + 999) / 1000, (usec_t) INT32_MAX)
                                                  : 0;
                int k = poll(pf, 1 + n * ENGINE_RUN_POLLFDS, timeout);
                __atomic_add_fetch(&d->metrics.watcher_wakes, 1, __ATOMIC_RELAXED);
                if (k <= 0)
                        continue;
                if (pf[0].revents) {
                        uint64_t v;
                        (void) !read(d->watch_efd, &v, sizeof(v));
                }
                for (size_t i = 0; i < n; i++) {
                        const struct pollfd *q = pf + 1 + i * ENGINE_RUN_POLLFDS;
                        bool any = false;
                        for (size_t j = 0; j < ENGINE_RUN_POLLFDS; j++)
                                any = any || q[j].revents;
                        if (any)
                                engine_run_watch_events(set[i]->er, q);
                }
        }
        return NULL;
}

static bool status_ended(const char *status) {
        return !streq(status, "queued") && !streq(status, "running");
}

/* The RunResult a waiter reads, from an ended record. */
static RunResult *result_from_record(const RunRecord *rec) {
        RunResult *res = xcalloc(1, sizeof(RunResult));
        res->id = xstrdup(rec->id);
        res->status = run_status_from_string(rec->status);
        res->exit_code = rec->exit_code;
        res->function = xstrdup_or_null(rec->function);
        res->value_json = xstrdup_or_null(rec->value_json);
        res->value_repr = xstrdup_or_null(rec->value_repr);
        res->error_type = xstrdup_or_null(rec->error_type);
        res->error_message = xstrdup_or_null(rec->error_message);
        res->traceback = xstrdup_or_null(rec->traceback);
        /* A DAG task's output version is read from its run's result. */
        res->outputs_json = xstrdup_or_null(rec->outputs_json);
        return res;
}

/* Remote runs. Cluster mode, a run this gateway submitted: waited for
 * here until some node ends it, so ?wait=true, Lambda invoke and DAG tasks
 * work as on one node. No thread waits for each: the finishing script
 * publishes on this gateway's channel and the events thread looks at the
 * run's record itself (daemon_run_remote_ended()); one waiter thread
 * (remote_waiter()) makes the other looks: a cancel asked here, which it
 * sends on (cluster_cancel), a resync after the events connection came
 * back (daemon_runs_remote_resync()), the drain, and a look once a second
 * per run (less often when thousands wait) as the last fallback. A thread
 * per run cost the gateway a clone, a stack and an exit per run (~12% of
 * its CPU at -c8, docs/cluster.md), and a thread each for every run queued
 * in the cluster. */
#define REMOTE_LOOK_USEC USEC_PER_SEC
/* The fallback looks are at most about a thousand a second, however many
 * runs wait (10,000 runs queued through a gateway: each looked at every
 * 10 s, not 10,000 reads a second), and made in batches at most every
 * 100 ms: the waiter does not wake for each. */
#define REMOTE_LOOK_PER_RUN_USEC USEC_PER_MSEC
#define REMOTE_BATCH_USEC (100 * USEC_PER_MSEC)

/* When a remote run looked at now is due its next fallback look (d->lock
 * held). */
static usec_t remote_next_due(const Daemon *d) {
        return now_monotonic() + MAX(REMOTE_LOOK_USEC, (usec_t) d->remote_count * REMOTE_LOOK_PER_RUN_USEC);
}

/* The end of a remote run, with d->lock held: answered with res (NULL
 * when the gateway stops first: the run is safe in Redis and a client
 * re-asks any gateway), then out of d->runs. The lock is released and
 * taken again (run_leave()). */
static void remote_end(Daemon *d, DRun *r, RunResult *res, RunRecord *ended) {
        if (!r->remote_started) {
                TenantCount *tc = tenant_count(d, r->tenant);
                d->queued--;
                tc->queued--;
        }
        d->remote_count--;
        r->remote = false;
        r->remote_busy = false;
        r->remote_left = !res;
        if (res) {
                r->result = res;
                r->remote_end = ended;
                r->status = res->status;
                r->finished = now_realtime();
                drun_signal_done(d, r);
        }
        for (DRun **q = &d->runs; *q; q = &(*q)->next)
                if (*q == r) {
                        *q = r->next;
                        break;
                }
        pthread_cond_broadcast(&d->change_cond);
        pthread_mutex_unlock(&d->lock);
        daemon_wait_kick(DRUN_DONE_KEY(r));
        pthread_mutex_lock(&d->lock);
        run_leave(d, r);
}

/* A look saw r's record running on some node (d->lock held): it waits
 * for no slot any more, so it leaves this gateway's queued counts, which
 * its submit limits read (max_queued_runs and the tenant's share: runs
 * waiting for a slot). Counted until its end instead, a gateway admitted
 * no more runs than its own max_concurrent_runs + max_queued_runs in
 * flight in the whole cluster, whatever the workers' slots: 429 "the
 * queue is full" with every worker idle and the stream empty. */
static void remote_started_note(Daemon *d, DRun *r) {
        if (r->remote_started)
                return;
        r->remote_started = true;
        d->queued--;
        tenant_count(d, r->tenant)->queued--;
}

/* Whether the stopping gateway lets r go now, unanswered (d->lock held).
 * A run nobody waits for here (its only reference its own: the submit
 * answered 202) is safe in Redis and goes at once, or the drain would
 * wait for every run queued through this gateway. One a client waits for
 * (a ?wait=true submit or GET, an invoke, a DAG task: each holds a
 * reference) is waited for through the drain, as a single node finishes
 * its runs in flight and answers their clients (docs/api.md "Drain"); it
 * goes once the drain's grace period is over (leave_queued). A DAG task's
 * run that only its DAG run waits for goes at once too: the DAG run is
 * handed over with it (task_wait() -EINPROGRESS), and the gateway that
 * takes it over waits for the run by its id. Before, the stop held the DAG
 * run through the run drain and then the DAG drain (two drain timeouts)
 * while no other gateway could take it over. */
static bool remote_let_go(const Daemon *d, const DRun *r) {
        return d->draining && (r->refs <= 1u + r->dag_waits || d->leave_queued);
}

/* Whether a look at r is asked for now, its fallback aside (d->lock
 * held): its end message came, a cancel to send, the gateway stops. */
static bool remote_look_asked(const Daemon *d, const DRun *r) {
        return r->remote_wake || (r->cancel_requested && !r->remote_cancel_sent) || remote_let_go(d, r);
}

/* Looks at r's record until no look is due, as the thread that set
 * r->remote_busy (the only one that may), without d->lock: sends a cancel
 * asked here, ends r once its record has ended. given (taken; NULL: none)
 * is the record its end message carried, used for the first look instead
 * of reading it. */
static void remote_look(Daemon *d, DRun *r, RunRecord *given) {
        pthread_mutex_lock(&d->lock);
        for (;;) {
                bool cancel = r->cancel_requested && !r->remote_cancel_sent;
                r->remote_wake = false; /* a message from now on is seen below */
                if (remote_let_go(d, r)) {
                        remote_end(d, r, NULL, NULL);
                        break;
                }
                pthread_mutex_unlock(&d->lock);
                RunRecord *rec = TAKE_PTR(given), *ended = NULL;
                RunResult *res = NULL;
                if (rec && status_ended(rec->status))
                        cancel = false; /* nothing left to cancel */
                if (cancel)
                        (void) daemon_cluster_cancel(d, r->id);
                if ((rec || daemon_run_record_get(d, NULL, r->id, &rec) >= 0) && status_ended(rec->status)) {
                        res = result_from_record(rec);
                        /* The answer's record (daemon_run_final_record()):
                         * not read from Redis again. */
                        ended = TAKE_PTR(rec);
                }
                bool started = rec && rec->status && streq(rec->status, "running");
                run_record_free(rec);
                pthread_mutex_lock(&d->lock);
                if (started)
                        remote_started_note(d, r);
                r->remote_cancel_sent |= cancel;
                if (res) {
                        remote_end(d, r, res, ended);
                        break;
                }
                if (!remote_look_asked(d, r)) {
                        r->remote_busy = false;
                        r->remote_due = remote_next_due(d);
                        break;
                }
        }
        pthread_mutex_unlock(&d->lock);
        run_record_free(given);
}

/* Whether a look at r is due now (d->lock held). */
static bool remote_look_due(const Daemon *d, const DRun *r, usec_t now) {
        return r->remote && !r->remote_busy && (remote_look_asked(d, r) || r->remote_due <= now);
}

static void *remote_waiter(void *p) {
        Daemon *d = p;
        pthread_mutex_lock(&d->lock);
        for (;;) {
                usec_t now = now_monotonic(), next = now + REMOTE_LOOK_USEC;
                DRun **due = NULL;
                size_t n = 0;
                for (DRun *r = d->runs; r; r = r->next) {
                        if (remote_look_due(d, r, now)) {
                                r->remote_busy = true;
                                due = xrealloc(due, (n + 1) * sizeof(DRun *));
                                due[n++] = r;
                        } else if (r->remote && !r->remote_busy)
                                next = MIN(next, r->remote_due);
                }
                if (n == 0) {
                        /* A look asked for signals the condition at once. */
                        cond_wait_usec(&d->remote_cond, &d->lock, MAX(next - now, REMOTE_BATCH_USEC));
                        continue;
                }
                pthread_mutex_unlock(&d->lock);
                for (size_t i = 0; i < n; i++)
                        remote_look(d, due[i], NULL);
                free(due);
                pthread_mutex_lock(&d->lock);
        }
        return NULL;
}

/* Whether id's end message came before its run was registered (d->lock
 * held); forgets it. */
static bool remote_early_take(Daemon *d, const char *id) {
        for (size_t i = 0; i < ELEMENTSOF(d->remote_early); i++)
                if (d->remote_early[i] && streq(d->remote_early[i], id)) {
                        free(d->remote_early[i]);
                        d->remote_early[i] = NULL;
                        return true;
                }
        return false;
}

/* r is waited for here from now on (d->lock held), by the waiter thread,
 * made at the first remote run. A look is due at once only when its end
 * message already came or its submit found an earlier run (an
 * Idempotency-Key); else the message or the fallback brings it. */
static int remote_wait_begin(Daemon *d, DRun *r) {
        if (!d->remote_running) {
                pthread_cond_init(&d->remote_cond, NULL);
                int k = -thread_start_detached(remote_waiter, d);
                if (k < 0) {
                        pthread_cond_destroy(&d->remote_cond);
                        return k;
                }
                d->remote_running = true;
        }
        /* The phase is the running node's to tell: none from here. */
        free(r->phase);
        r->phase = NULL;
        r->remote = true;
        d->remote_count++;
        r->remote_due = remote_next_due(d);
        if (remote_early_take(d, r->id))
                r->remote_wake = true;
        if (r->remote_wake)
                pthread_cond_signal(&d->remote_cond);
        return 0;
}

void daemon_run_remote_ended(Daemon *d, const char *id, RunRecord *rec) {
        DRun **mine = NULL;
        size_t n = 0;
        bool found = false;
        pthread_mutex_lock(&d->lock);
        /* Two runs may wait for one id: a resubmission with a used
         * Idempotency-Key waits for the first run. */
        for (DRun *r = d->runs; r; r = r->next) {
                if (!r->remote || !streq(r->id, id))
                        continue;
                found = true;
                r->remote_wake = true; /* seen by a look under way */
                if (!r->remote_busy) {
                        r->remote_busy = true;
                        mine = xrealloc(mine, (n + 1) * sizeof(DRun *));
                        mine[n++] = r;
                }
        }
        if (!found) {
                unsigned i = d->remote_early_next++ % ELEMENTSOF(d->remote_early);
                free(d->remote_early[i]);
                d->remote_early[i] = xstrdup(id);
        }
        pthread_mutex_unlock(&d->lock);
        /* Looked at here, on the events thread: one hand-off fewer on the
         * way to the answer. The message's record answers the first. */
        for (size_t i = 0; i < n; i++)
                remote_look(d, mine[i], i == 0 ? TAKE_PTR(rec) : NULL);
        free(mine);
        run_record_free(rec);
}

void daemon_runs_remote_resync(Daemon *d) {
        pthread_mutex_lock(&d->lock);
        for (DRun *r = d->runs; r; r = r->next)
                if (r->remote)
                        r->remote_wake = true;
        if (d->remote_running)
                pthread_cond_signal(&d->remote_cond);
        pthread_mutex_unlock(&d->lock);
}

/* What the queue keeps so a run can be started again by the next daemon
 * (RunQueueOps.submit): everything run_one() reads from the DRun. A
 * deployed function's source is not copied when by_ref: the request names
 * (fn_name, fn_version), whose row is immutable and already holds it
 * (drun_resume reads it back). A cluster's queue keeps the source: another
 * node runs it. */
/* The request's optional strings, in the order both writers below put
 * them (a reader looks them up by key). */
typedef struct RequestField {
        const char *key, *value;
} RequestField;
#define REQUEST_FIELDS 9

static void request_fields(const DRun *r, bool by_ref, RequestField ret[static REQUEST_FIELDS]) {
        ret[0] = (RequestField) { "function", r->function };
        ret[1] = (RequestField) { "args_json", r->args_json };
        ret[2] = (RequestField) { "kwargs_json", r->kwargs_json };
        ret[3] = (RequestField) { "fn_name", r->fn_name };
        ret[4] = (RequestField) { "context_json", r->context_json };
        ret[5] = (RequestField) { "requirements_json", r->requirements_json };
        /* Kept with the run by the submit's INSERT (store-queue.c). */
        ret[6] = (RequestField) { "idem_key", r->idem_key };
        /* Its origin, which a run started again keeps. */
        ret[7] = (RequestField){ "schedule", r->schedule };
        /* The version's lock: by_ref, its row holds it as it holds the
         * source; else (a cluster's queue) the node that runs it reads it
         * here. */
        ret[8] = (RequestField){ "lock_json", by_ref ? NULL : drun_lock_json(r) };
}

char *drun_request_json_jansson(const DRun *r, bool by_ref) {
        by_ref = by_ref && r->fn_name && r->fn_version > 0;
        /* A source that is not UTF-8 still runs (to fail validation with
         * its line and column): JSON cannot hold it as text, base64 can. */
        bool utf8 = by_ref || utf8_invalid_offset(r->source, r->source_len) == r->source_len;
        _cleanup_free_ char *b64 = utf8 ? NULL : base64_encode(r->source, r->source_len);
        json_t *j = json_pack("{s:i, s:s, s:b, s:i, s:{s:I, s:I, s:I, s:I, s:b}}", "v", 1, "filename", r->filename,
                              "lambda", r->lambda, "fn_version", r->fn_version,
                              "limits", "timeout_ms", (json_int_t) r->limits.timeout_ms, "memory_bytes",
                              (json_int_t) r->limits.memory_bytes, "max_procs", (json_int_t) r->limits.max_procs,
                              "max_output_bytes", (json_int_t) r->limits.max_output_bytes, "network",
                              r->limits.network);
        if (!j)
                return NULL;
        if (by_ref)
                json_object_set_new(j, "source_ref", json_true());
        else
                json_object_set_new(j, utf8 ? "source" : "source_b64",
                                    utf8 ? json_stringn(r->source, r->source_len) : json_string(b64));
        RequestField opt[REQUEST_FIELDS];
        request_fields(r, by_ref, opt);
        for (size_t i = 0; i < ELEMENTSOF(opt); i++)
                if (opt[i].value)
                        json_object_set_new(j, opt[i].key, json_string(opt[i].value));
        if (r->data)
                json_object_set_new(j, "data", json_strv_new(r->data));
        if (r->output_data)
                json_object_set_new(j, "output_data", json_string(r->output_data));
        if (r->no_cache)
                json_object_set_new(j, "no_cache", json_true());
        if (r->endpoint)
                json_object_set_new(j, "endpoint", json_true());
        /* Names only: a secret's value is opened when the run starts and
         * never written anywhere. */
        if (r->secrets)
                json_object_set_new(j, "secrets", json_strv_new(r->secrets));
        if (r->env)
                json_object_set_new(j, "env", json_strv_new(r->env));
        char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return text;
}

static bool utf8_texts(char *const *v) {
        for (; v && *v; v++)
                if (!utf8_is_valid(*v))
                        return false;
        return true;
}

/* Whether every string of the request is one JSON can hold (json_pack
 * refuses the rest). */
static bool request_texts_valid(const DRun *r, const RequestField opt[static REQUEST_FIELDS]) {
        for (size_t i = 0; i < REQUEST_FIELDS; i++)
                if (!utf8_is_valid_or_null(opt[i].value))
                        return false;
        return r->filename && utf8_is_valid(r->filename) && utf8_is_valid_or_null(r->output_data) &&
               utf8_texts(r->data) && utf8_texts(r->secrets) && utf8_texts(r->env);
}

/* ,"key": (key is one of ours: nothing to escape) */
static void append_key(Buf *b, const char *key) {
        (void) buf_append(b, ",\"", 2);
        (void) buf_appends(b, key);
        (void) buf_append(b, "\":", 2);
}

static void append_key_string(Buf *b, const char *key, const char *value) {
        append_key(b, key);
        (void) json_buf_append_string(b, value);
}

static void append_key_strv(Buf *b, const char *key, char *const *v) {
        append_key(b, key);
        (void) buf_append(b, "[", 1);
        for (char *const *p = v; p && *p; p++) {
                if (p != v)
                        (void) buf_append(b, ",", 1);
                (void) json_buf_append_string(b, *p);
        }
        (void) buf_append(b, "]", 1);
}

/* The queued request as text, byte for byte what drun_request_json_jansson()
 * dumps (keys in its order, JSON_COMPACT): its jansson objects and their
 * json_dumps() cost ~34k instructions per /v1 invoke and ~63k per Lambda
 * invoke (docs/internals/performance-log.md "Invoke path: round 7"). What the text way
 * does not write the same — a string that is not UTF-8 (json_pack refuses
 * it), a source holding NUL or needing base64 — takes jansson's way. */
char *drun_request_json(const DRun *r, bool by_ref) {
        by_ref = by_ref && r->fn_name && r->fn_version > 0;
        bool plain_source = by_ref || (r->source && !memchr(r->source, 0, r->source_len) &&
                                       utf8_invalid_offset(r->source, r->source_len) == r->source_len);
        RequestField opt[REQUEST_FIELDS];
        request_fields(r, by_ref, opt);
        if (!plain_source || !request_texts_valid(r, opt))
                return drun_request_json_jansson(r, by_ref);

        Buf b;
        buf_init(&b, SIZE_MAX);
        (void) buf_appends(&b, "{\"v\":1,\"filename\":");
        (void) json_buf_append_string(&b, r->filename);
        (void) buf_printf(&b,
                          ",\"lambda\":%s,\"fn_version\":%d,\"limits\":{\"timeout_ms\":%" PRId64
                          ",\"memory_bytes\":%" PRId64 ",\"max_procs\":%" PRId64 ",\"max_output_bytes\":%" PRId64
                          ",\"network\":%s}",
                          r->lambda ? "true" : "false", r->fn_version, (int64_t) r->limits.timeout_ms,
                          (int64_t) r->limits.memory_bytes, (int64_t) r->limits.max_procs,
                          (int64_t) r->limits.max_output_bytes, r->limits.network ? "true" : "false");
        if (by_ref)
                (void) buf_appends(&b, ",\"source_ref\":true");
        else {
                (void) buf_appends(&b, ",\"source\":");
                (void) json_buf_append_string(&b, r->source);
        }
        for (size_t i = 0; i < ELEMENTSOF(opt); i++)
                if (opt[i].value)
                        append_key_string(&b, opt[i].key, opt[i].value);
        if (r->data)
                append_key_strv(&b, "data", r->data);
        if (r->output_data)
                append_key_string(&b, "output_data", r->output_data);
        if (r->no_cache)
                (void) buf_appends(&b, ",\"no_cache\":true");
        if (r->endpoint)
                (void) buf_appends(&b, ",\"endpoint\":true");
        if (r->secrets)
                append_key_strv(&b, "secrets", r->secrets);
        if (r->env)
                append_key_strv(&b, "env", r->env);
        (void) buf_append(&b, "}", 1);
        return buf_steal(&b);
}

/* What the runs table keeps of the request (RunRecord.request_given):
 * its fn_name and idem_key strings and whether it has data, as
 * drun_request_json() writes them, so that the store binds them instead
 * of reading them back out of the text. Both of its ways write each of
 * them exactly when it is set and JSON can hold it (jansson's leaves a
 * text that is not UTF-8 out): with such a text the store reads the
 * request as before. */
static void record_request_fields(const DRun *r, RunRecord *rec) {
        if (!utf8_is_valid_or_null(r->fn_name) || !utf8_is_valid_or_null(r->idem_key) || !utf8_texts(r->data))
                return;
        rec->request_given = true;
        rec->request_fn_name = r->fn_name;
        rec->request_idem_key = r->idem_key;
        rec->request_has_data = r->data != NULL;
}

static char *json_strdup_or_null(json_t *o, const char *key) {
        const char *v = json_string_value(json_object_get(o, key));
        return v ? xstrdup(v) : NULL;
}

/* The inverse of drun_request_json(). -EBADMSG when text is not one. A
 * request that names its deployed function's version instead of carrying
 * the source leaves r->source NULL (drun_resume fills it). */
static int drun_fill_from_request_json(DRun *r, const char *text) {
        json_t *j = text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL;
        json_t *src = json_object_get(j, "source"), *b64 = json_object_get(j, "source_b64"),
               *l = json_object_get(j, "limits");
        bool by_ref = json_is_true(json_object_get(j, "source_ref"));
        if (!(json_is_string(src) || json_is_string(b64) || by_ref) || !json_is_object(l)) {
                json_decref(j);
                return -EBADMSG;
        }
        if (by_ref) {
                r->source = NULL;
                r->source_len = 0;
        } else if (json_is_string(src)) {
                r->source_len = json_string_length(src);
                r->source = xmemdupz(json_string_value(src), r->source_len);
        } else {
                if (base64_decode(json_string_value(b64), json_string_length(b64), &r->source, &r->source_len) < 0) {
                        json_decref(j);
                        return -EBADMSG;
                }
        }
        r->filename = json_strdup_or_null(j, "filename") ?: xstrdup("main.py");
        r->function = json_strdup_or_null(j, "function");
        r->args_json = json_strdup_or_null(j, "args_json");
        r->kwargs_json = json_strdup_or_null(j, "kwargs_json");
        r->fn_name = json_strdup_or_null(j, "fn_name");
        r->schedule = json_strdup_or_null(j, "schedule");
        r->context_json = json_strdup_or_null(j, "context_json");
        r->requirements_json = json_strdup_or_null(j, "requirements_json");
        r->lock_json = json_strdup_or_null(j, "lock_json");
        r->lambda = json_is_true(json_object_get(j, "lambda"));
        r->fn_version = (int) json_integer_value(json_object_get(j, "fn_version"));
        r->limits = (RunLimits) {
                .timeout_ms = (uint64_t) json_integer_value(json_object_get(l, "timeout_ms")),
                .memory_bytes = (uint64_t) json_integer_value(json_object_get(l, "memory_bytes")),
                .max_procs = (uint64_t) json_integer_value(json_object_get(l, "max_procs")),
                .max_output_bytes = (uint64_t) json_integer_value(json_object_get(l, "max_output_bytes")),
                .network = json_is_true(json_object_get(l, "network")),
        };
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(j, "data"), i, v)
                if (json_is_string(v))
                        r->data = strv_append(r->data, json_string_value(v));
        r->output_data = json_strdup_or_null(j, "output_data");
        r->no_cache = json_is_true(json_object_get(j, "no_cache"));
        r->endpoint = json_is_true(json_object_get(j, "endpoint"));
        json_array_foreach(json_object_get(j, "secrets"), i, v)
                if (json_is_string(v))
                        r->secrets = strv_append(r->secrets, json_string_value(v));
        json_array_foreach(json_object_get(j, "env"), i, v)
                if (json_is_string(v))
                        r->env = strv_append(r->env, json_string_value(v));
        json_decref(j);
        return 0;
}

static DRun *drun_new(Daemon *d, const char *id, const char *tenant) {
        DRun *r = xcalloc(1, sizeof(DRun));
        r->refs = 2; /* the caller's and the run thread's */
        r->id = id ? xstrdup(id) : id_new("r");
        r->tenant = xstrdup(tenant);
        r->status = RUN_QUEUED;
        r->phase = xstrdup("queued");
        r->created = now_realtime();
        r->max_attempts = (int) d->cfg.max_attempts;
        return r;
}

static void drun_init_log(Daemon *d, DRun *r) {
        uint64_t cap = r->limits.max_output_bytes ? r->limits.max_output_bytes
                       : d->cfg.defaults.max_output_bytes ? d->cfg.defaults.max_output_bytes
                                                          : RUN_DEFAULT_MAX_OUTPUT_BYTES;
        buf_init(&r->log, (size_t) cap + 4096);
}

/* Cluster placement: what makes a node warm for r. A deployed function's
 * invocations share warm instances per (tenant, function, version); other
 * runs share the worker of their requirements. A digest: the key is only
 * compared, and a hash field stays short. One-shot over the whole text
 * (the built-in digest for a short one): a libcrypto streaming context, a
 * digest fetch and its allocations, was ~7% of a gateway's CPU per run. */
static char *drun_env_key(const DRun *r) {
        _cleanup_free_ char *s = r->fn_name ? xasprintf("fn\n%s\n%s\n%d", r->tenant, r->fn_name, r->fn_version)
                                            : xasprintf("env\n%s", r->requirements_json ? r->requirements_json : "");
        char hex[SHA256_HEX_SIZE];
        sha256_hex(s, strlen(s), hex);
        return xstrndup(hex, 16);
}

/* How long an HTTP thread watches a warm invoke it began before it hands
 * the watch to a run thread and suspends the request as any other: bounds
 * what one invoke holds up the other connections of that thread (no
 * handler may block one for long, daemon-wait.c). A trivial invoke ends
 * in ~0.1 ms. */
#define INLINE_WATCH_USEC (1 * USEC_PER_MSEC)
/* How long runs must have come one at a time before one may run on its
 * HTTP thread: a moment with no run in flight also comes up between the
 * requests of concurrent callers, and an HTTP thread that takes one then
 * holds up its other connections, which then arrive together (measured:
 * wrk -c8 windows at ~3,900 invokes/s instead of ~5,800 one time in
 * three). Callers that overlapped in the last 100 ms are concurrent. */
#define INLINE_QUIET_USEC (100 * USEC_PER_MSEC)

/* With d->lock held: whether r may start now on the caller's thread. Only
 * when no other run is in flight (r is the one queued run) nor overlapped
 * another for INLINE_QUIET_USEC: an HTTP thread
 * that watches an invoke serves none of its other connections meanwhile,
 * so under concurrent invokes the thread would serialise them (measured:
 * wrk -c8 fell from ~5000 to ~3500 invokes/s on 2 CPUs when every warm
 * invoke ran on its HTTP thread), while the run threads overlap them. Then
 * r starts as a run thread would start it: nothing waits before it, a slot
 * is free, the daemon is not stopping. */
static bool run_inline_startable(Daemon *d, DRun *r) {
        return d->running == 0 && d->queued == 1 && now_monotonic() - d->overlap_at > INLINE_QUIET_USEC && !d->pending && !d->draining &&
               !d->leave_queued && !r->cancel_requested && d->cfg.max_concurrent_runs > 0 &&
               d->cfg.max_concurrent_per_tenant > 0;
}

/* Runs r on this (HTTP) thread, with d->lock held (released on return):
 * begun here (on inst, the idle instance taken for a warm invoke; NULL
 * for an ad-hoc run), ended here when it ends within watch_usec, else
 * watched on by the run watcher while the caller's request suspends as
 * usual. The run is counted, recorded and limited exactly as on a run
 * thread (run_begin() and run_complete() are theirs); only the thread
 * differs, and a cancel, the time limit and the output limit act on the
 * engine's watch wherever it is. This saves the hand-off to a run thread
 * and back and the suspension of the connection: the caller finds the
 * run ended and answers at once. Counted in *ended_here or *watched. */
static void run_on_http_thread(Daemon *d, DRun *r, Instance *inst, usec_t watch_usec, uint64_t *ended_here,
                               uint64_t *watched) {
        RunStep *st = run_begin(d, r, NULL, inst);
        if (!st) {
                /* Not reached for an invoke (run_inline_startable() saw no
                 * stop), kept safe. */
                pthread_mutex_unlock(&d->lock);
                return;
        }
        if (run_wait(st, now_monotonic() + watch_usec)) {
                run_complete(st);
                (*ended_here)++;
                /* A run thread passes its slot on by taking the next run
                 * itself (pool_thread); this thread does not, so a run that
                 * queued behind this one (its tenant's limit, a full
                 * daemon) needs a run thread woken, or it waits for the
                 * next arrival. */
                RunThread *wake = pool_kick(d);
                pthread_mutex_unlock(&d->lock);
                pool_wake(wake);
                return;
        }
        __atomic_add_fetch(watched, 1, __ATOMIC_RELAXED);
        watch_add(d, st);
}

/* A warm invoke r on this thread with inst, the idle instance taken for it. */
static void run_inline(Daemon *d, DRun *r, Instance *inst) {
        run_on_http_thread(d, r, inst, INLINE_WATCH_USEC, &d->metrics.invokes_inline, &d->metrics.invokes_watched);
}

/* Whether r, an ad-hoc run whose caller waits for its answer, may begin on
 * the HTTP thread that received it (as a warm invoke may): nothing in its
 * begin waits on a worker (its arguments' validation is cached, its
 * environment resolved, its worker ready: engine_run_ready()), and it has none of
 * the set-ups left to run threads (datasets, secrets, env, an output
 * dataset, an idempotency key) and is not a cluster's. A run that is not
 * goes to a run thread as before (its first run, for instance). */
static bool drun_adhoc_eligible(Daemon *d, const DRun *r) {
        if (!r->answer_waits || r->fn_name || d->cluster || r->claimed || r->data || r->secrets || r->env ||
            r->output_data || r->idem_key || r->no_cache)
                return false;
        /* The fields of run_begin()'s spec that the engine's look reads. */
        RunSpec spec = drun_code_spec(d, r);
        return engine_run_ready(d->engine, &spec);
}

/* How long an HTTP thread watches an ad-hoc run it began before the run
 * watcher takes it on: a trivial run ends in ~0.7 ms after its message is
 * sent (bench_timeline.py), beyond an invoke's INLINE_WATCH_USEC. Only when
 * runs came one at a time (run_inline_startable()), as for invokes. */
#define ADHOC_INLINE_WATCH_USEC (3 * USEC_PER_MSEC)

/* An ad-hoc run r on this thread of a quiet daemon (run_inline_startable()). */
static void run_adhoc_inline(Daemon *d, DRun *r) {
        run_on_http_thread(d, r, NULL, ADHOC_INLINE_WATCH_USEC, &d->metrics.adhoc_inline,
                           &d->metrics.adhoc_watched);
}

/* Counts r as queued (unless the queue is full: -EBUSY, or r's tenant's
 * share of it: -EUSERS, or the daemon is draining: -ESHUTDOWN) and starts its thread. A resumed run was
 * acknowledged before the restart, so no limit turns it away. On failure r
 * is gone. */
static int drun_enqueue(Daemon *d, DRun *r, bool resumed) {
        int k;

        pthread_mutex_lock(&d->lock);
        if (d->draining && !resumed) {
                pthread_mutex_unlock(&d->lock);
                drun_free(r);
                return -ESHUTDOWN;
        }
        /* Beyond the free slots, a run waits in the global queue; a full
         * queue is the client's 429. So is a tenant's full share of it:
         * one tenant (or the anonymous callers of its public URL) cannot
         * take every place and turn every other tenant's runs away. */
        unsigned free_slots = d->running < d->cfg.max_concurrent_runs ? d->cfg.max_concurrent_runs - d->running : 0;
        TenantCount *tc = tenant_count(d, r->tenant);
        unsigned tenant_free = tc->running < d->cfg.max_concurrent_per_tenant
                                       ? MIN(d->cfg.max_concurrent_per_tenant - tc->running, free_slots)
                                       : 0;
        /* A failed Event invocation waiting for its retry is a queued run
         * (docs/api.md) that takes a place when its time comes: counted
         * here, or one tenant's failures, past its share while they
         * waited, came back at once past the whole queue's cap and every
         * other tenant's run was turned away until they had drained. */
        bool all_full = d->queued + d->n_retrying >= free_slots + d->cfg.max_queued_runs;
        unsigned tenant_cap = tenant_free + daemon_config_queued_per_tenant(&d->cfg);
        /* In a cluster the tenant's share counts its runs queued through
         * every gateway: Redis counts them and refuses in the submit itself
         * (submit.lua), given this cap less the tenant's retries waiting
         * here (this node's own). This gateway's count alone let a tenant
         * queue its share through each gateway, and it lagged: a run left
         * it at this gateway's next look at its record. The whole queue's
         * cap stays this gateway's: it bounds the runs it waits for. */
        unsigned cluster_cap = tenant_cap > tc->retrying ? tenant_cap - tc->retrying : 0;
        if (!resumed && (all_full || (!d->cluster && tc->queued + tc->retrying >= tenant_cap))) {
                d->metrics.rejected_429++;
                pthread_mutex_unlock(&d->lock);
                drun_free(r);
                /* -EUSERS: this tenant's share, so the 429 can say whose
                 * backlog turned the run away (the tenant's own, or the
                 * daemon's) and which cap the operator would raise. */
                return all_full ? -EBUSY : -EUSERS;
        }
        /* Whether an ad-hoc run may begin on this thread below
         * (run_inline_startable() decides, under the lock again): looked at
         * here so that the engine's look is skipped under concurrency. */
        bool quiet = d->running + d->queued == 0 && !d->pending &&
                     now_monotonic() - d->overlap_at > INLINE_QUIET_USEC;
        if (d->running + d->queued > 0)
                d->overlap_at = now_monotonic();
        /* An ad-hoc run with a free slot and nobody ahead starts at once:
         * its submit records it running (one transaction fewer; a crash
         * then is one after a start; store-queue.c sq_submit). So does a
         * synchronous one (an invoke or ?wait=true whose caller gets no id
         * before its answer), and its submit is deferred: not waited for,
         * replaced by its end when that comes within the writer's linger
         * (one write per run; docs/api.md "Delivery"). */
        bool slot = !resumed && !d->cluster && (!r->fn_name || r->answer_waits) && r->max_attempts > 1 &&
                    !d->pending && !d->leave_queued && d->running + d->queued < d->cfg.max_concurrent_runs &&
                    tc->running + tc->queued < d->cfg.max_concurrent_per_tenant;
        /* A function's invoke also needs one of its instances: beyond them
         * it queues (drun_startable()), and its record says so. */
        bool at_once = slot && (!r->fn_name || fn_reserve(d, r));
        /* With an Idempotency-Key the record is committed before the submit
         * returns: a resubmission must find it (daemon_call_submit()). A
         * synchronous run that waits for an instance or behind other queued
         * runs is deferred too, recorded queued: its start turns it into
         * the started record while it is still uncommitted (store-queue.c).
         * Queued or not, nobody has its id before its end. (Round 12: at
         * wrk -c8 half the invokes queue behind their function's 4
         * instances, and each one that found another queued ahead was
         * committed on its HTTP thread before it could start; ~14% of
         * the Lambda invokes at -c8 committed their own submit, ~5 pages.) */
        bool deferred = !resumed && !d->cluster && r->answer_waits && !r->idem_key && r->max_attempts > 1 &&
                        !d->leave_queued;
        d->queued++;
        tc->queued++;
        pthread_mutex_unlock(&d->lock);

        if (!resumed) {
                RunRecord rec;
                _cleanup_free_ char *request = drun_request_json(r, !d->cluster);
                record_from_drun(r, &rec, (char *) run_status_to_string(at_once ? RUN_RUNNING : RUN_QUEUED));
                record_request_fields(r, &rec);
                if (at_once)
                        rec.started = now_realtime();
                rec.max_attempts = r->max_attempts;
                /* Stored with the submit: the engine does not rewrite a
                 * started record (engine_run_log_path). */
                _cleanup_free_ char *log_path = engine_run_log_path(d->engine, r->id);
                rec.log_path = log_path;
                if (request && d->cluster) {
                        /* A resubmission with a used Idempotency-Key is the
                         * first run: this DRun waits for that one. */
                        _cleanup_free_ char *id = NULL, *env = drun_env_key(r);
                        k = daemon_cluster_submit(d, &rec, request, r->idem_key, env, cluster_cap, &id);
                        if (k == 1 && id && !streq(id, r->id)) {
                                free(r->id);
                                r->id = TAKE_PTR(id);
                        }
                        /* That run may have ended long ago: no message
                         * will say so, its record does (remote_wait_begin()). */
                        if (k == 1)
                                r->remote_wake = true;
                        k = MIN(k, 0);
                } else if (!request)
                        k = -EINVAL;
                else
                        k = deferred ? run_queue_submit_deferred(d->queue, &rec, request)
                                     : run_queue_submit(d->queue, &rec, request);
                if (k >= 0 && at_once)
                        r->attempt = 1; /* a cancel before it begins ends it by its finish */
                if (k < 0) {
                        pthread_mutex_lock(&d->lock);
                        if (k == -EUSERS)
                                d->metrics.rejected_429++; /* the cluster's count of the tenant's share */
                        d->queued--;
                        tenant_count(d, r->tenant)->queued--;
                        fn_unreserve(r);
                        pthread_mutex_unlock(&d->lock);
                        drun_free(r);
                        return k;
                }
        }

        /* A warm invoke whose caller waits for it begins on this thread
         * when an idle instance of its function is free: it runs here
         * when no other run is in flight (run_inline()), else the run
         * watcher watches it (run_watched()). The lock decides; the
         * instance is taken before it (the engine's lock comes after
         * d->lock, never under it here). */
        bool warm = !resumed && drun_warm_eligible(d, r);
        /* An ad-hoc run does the same on a quiet daemon when it would
         * begin without waiting on a worker (run_adhoc_inline()). Under
         * concurrency it stays a run thread's: the run watcher ends its
         * runs one after another, each record its own transaction, where
         * run threads share one (group commit: at wrk -c8 1.2 pwrite64
         * and 2.2 fcntl more per run on the watcher, docs/internals/performance-log.md
         * "Ad-hoc runs: the daemon's share, round 10"). */
        r->begun_here = quiet && !resumed && !warm && drun_adhoc_eligible(d, r);
        Instance *inst = NULL;
        if (warm) {
                __atomic_add_fetch(&d->takers, 1, __ATOMIC_SEQ_CST);
                inst = drun_take_instance(d, r);
        }

        pthread_mutex_lock(&d->lock);
        r->next = d->runs;
        d->runs = r;
        d->threads++;
        if (inst) {
                bool inline_ = run_inline_startable(d, r);
                /* Nobody who may start is queued before it, and it may
                 * start (a global, a tenant and a function slot). */
                if (inline_ || (!pending_startable(d) && drun_startable(d, r))) {
                        /* Counted running (run_begin()) under this lock. */
                        bool again = taker_done(d);
                        if (inline_)
                                run_inline(d, r, inst);
                        else {
                                __atomic_add_fetch(&d->metrics.invokes_watched, 1, __ATOMIC_RELAXED);
                                run_watched(d, r, inst);
                        }
                        if (again) {
                                pthread_mutex_lock(&d->lock);
                                watch_start_queued(d);
                        }
                        return 0;
                }
                /* Not now: the usual path (the instance goes back once the
                 * lock is released). */
        }
        if (r->begun_here) {
                if (run_inline_startable(d, r)) {
                        run_adhoc_inline(d, r);
                        return 0;
                }
                /* Another run came meanwhile: a run thread's. */
                r->begun_here = false;
        }
        /* In a cluster a gateway's run is any worker's: this node waits
         * for its record to end (a thread each) instead of running it. */
        if (d->cluster && !resumed) {
                k = remote_wait_begin(d, r);
                pthread_mutex_unlock(&d->lock);
                if (k == 0)
                        return 0;
                pthread_mutex_lock(&d->lock);
                r->cancel_requested = true;
        }
        /* Everyone else's run waits for a run thread of the pool. */
        if (d->pending_tail)
                d->pending_tail->next_pending = r;
        else
                d->pending = r;
        d->pending_tail = r;
        if (warm && d->pool_threads > 0) {
                /* A warm invoke queued behind its function's busy
                 * instances: one of them may have come free since its
                 * instance was looked for (its run ended meanwhile, and
                 * found nothing queued). The watcher's way starts it
                 * without a run thread; those are woken for what it leaves. */
                pthread_mutex_unlock(&d->lock);
                if (inst)
                        engine_instance_put_back(d->engine, inst);
                pthread_mutex_lock(&d->lock);
                (void) taker_done(d); /* looks again just below */
                watch_start_queued(d);
                return 0;
        }
        RunThread *wake = pool_kick(d);
        if (d->pool_threads == 0) {
                /* Not a single run thread: unwind as a cancelled run so
                 * the record is final. */
                r->cancel_requested = true;
                pending_remove(d, r);
                run_one(d, r, NULL);
        }
        pthread_mutex_unlock(&d->lock);
        pool_wake(wake);
        if (inst)
                engine_instance_put_back(d->engine, inst);
        if (warm) {
                pthread_mutex_lock(&d->lock);
                bool again = taker_done(d);
                if (again)
                        watch_start_queued(d);
                else
                        pthread_mutex_unlock(&d->lock);
        }
        return 0;
}

int daemon_run_submit(Daemon *d, const char *id, const char *tenant, const RunRequest *req, const char *fn_name,
                      int fn_version, bool lambda, DRun **ret) {
        /* Refused (507) while the disk still has room to record the refusal. */
        int full = daemon_gc_disk_check(d);
        if (full < 0)
                return full;
        DRun *r = drun_new(d, id, tenant);
        r->filename = xstrdup(req->filename ? req->filename : "main.py");
        r->function = req->function ? xstrdup(req->function) : NULL;
        r->args_json = req->args_json ? xstrdup(req->args_json) : NULL;
        r->kwargs_json = req->kwargs_json ? xstrdup(req->kwargs_json) : NULL;
        if (req->fn) {
                /* The deployed version's bytes, shared (no copy). */
                r->fn = function_record_ref(req->fn);
                r->source = r->fn->source;
        } else
                r->source = xmemdupz(req->source, req->source_len);
        r->source_len = req->source_len;
        r->limits = req->limits;
        r->fn_name = fn_name ? xstrdup(fn_name) : NULL;
        r->context_json = req->context_json ? xstrdup(req->context_json) : NULL;
        r->requirements_json = req->requirements_json ? xstrdup(req->requirements_json) : NULL;
        for (char **x = req->data; x && *x; x++)
                r->data = strv_append(r->data, *x);
        r->output_data = req->output_data ? xstrdup(req->output_data) : NULL;
        r->no_cache = req->no_cache;
        for (char **x = req->secrets; x && *x; x++)
                r->secrets = strv_append(r->secrets, *x);
        for (char **x = req->env; x && *x; x++)
                r->env = strv_append(r->env, *x);
        r->fn_version = fn_version;
        r->schedule = req->schedule ? xstrdup(req->schedule) : NULL;
        drun_set_limits_json(r);
        r->lambda = lambda;
        r->answer_waits = req->answer_waits;
        r->caller_waits = req->caller_waits;
        r->endpoint = req->endpoint;
        /* The request's (checked at its API: 403 above the grant), the
         * deploy's or server.max_attempts, lowered to what the config
         * grants the tenant now: a deploy's retries may be above a grant a
         * SIGHUP lowered since. */
        pthread_rwlock_rdlock(&d->cfg_lock);
        r->max_attempts = daemon_retries_clamp(&d->cfg, tenant, req->max_attempts);
        pthread_rwlock_unlock(&d->cfg_lock);
        r->idem_key = req->idempotency_key ? xstrdup(req->idempotency_key) : NULL;
        drun_init_log(d, r);

        int k = drun_enqueue(d, r, false);
        if (k < 0)
                return k;
        *ret = r;
        return 0;
}

/* A queued request that names its deployed function's version: the
 * version's source, as deployed (a version's row is never rewritten). When
 * the function was deleted while the run waited, the run ends cancelled
 * with a message that says so instead of staying queued forever. */
static int drun_source_from_function(Daemon *d, DRun *r) {
        FunctionRecord *f = NULL;
        int k = function_store_get(d->functions, r->tenant, r->fn_name, r->fn_version, &f);
        if (k == -ENOENT) {
                _cleanup_free_ char *msg = xasprintf("function %s version %d was deleted while this run was queued; "
                                                     "it cannot run (deploy it again and invoke it anew)",
                                                     r->fn_name, r->fn_version);
                log_error("run %s: %s", r->id, msg);
                k = run_queue_cancel(d->queue, r->id, msg);
                return k < 0 ? k : -ENOENT;
        }
        if (k < 0) {
                log_error("run %s: cannot read function %s version %d: %s; it stays queued", r->id, r->fn_name,
                          r->fn_version, strerror(-k));
                return k;
        }
        /* Kept as the reference the lookup gave: a cached version is
         * shared and read-only. */
        assert(!r->fn);
        r->fn = f;
        r->source = f->source;
        r->source_len = f->source_len;
        return 0;
}

/* Ends p, a queued run whose stored request cannot be read (a damaged
 * record: the request is JSON this daemon wrote, and fields it does not
 * know are ignored, so another node or a later start reads it no better):
 * `error`, through the fenced finish of its current attempt, instead of
 * staying queued forever (single node: each start found it again; cluster:
 * its entry went back to the stream at every claim timeout). A failed
 * write (Redis down) leaves it queued, to be ended at its next reading. */
static void drun_end_unreadable(Daemon *d, const PendingRun *p) {
        RunRecord rec = {
                .id = p->id,
                .tenant = p->tenant,
                .status = (char *) run_status_to_string(RUN_ERROR),
                .exit_code = EXIT_INTERNAL,
                .error_type = (char *) "InternalError",
                .error_message = (char *) "its queued request cannot be read (a damaged record); "
                                          "it cannot run: submit it again",
                .created = p->created,
                .finished = now_realtime(),
        };
        int k = run_queue_finish(d->queue, &rec, p->attempt);
        if (k >= 0)
                log_error("run %s: its queued request cannot be read; ended as an error", p->id);
        else if (k != -ESTALE)
                log_error("run %s: its queued request cannot be read, and its end cannot be written (%s); "
                          "it stays queued",
                          p->id, strerror(-k));
}

/* Runs p again (an acknowledged run: no limit turns it away). */
static int drun_resume(Daemon *d, const PendingRun *p, bool claimed) {
        DRun *r = drun_new(d, p->id, p->tenant);
        r->created = p->created;
        r->attempt = p->attempt;
        r->max_attempts = p->max_attempts;
        if (drun_fill_from_request_json(r, p->request_json) < 0 || (!r->source && (!r->fn_name || r->fn_version <= 0))) {
                drun_free(r);
                drun_end_unreadable(d, p);
                return -EBADMSG;
        }
        if (!r->source) {
                int k = drun_source_from_function(d, r);
                if (k < 0) {
                        drun_free(r);
                        return k;
                }
        }
        if (daemon_limits_clamp(&d->cfg, r->tenant, &r->limits))
                log_info("run %s: its limits are lowered to what the config grants tenant %s now", r->id,
                         r->tenant);
        /* Its attempts too (a cluster run claimed here: this node's
         * grant): the tries after this start (an Event invocation's). The
         * start itself was the queue's to decide, by the attempts stored
         * at submit. */
        int max_attempts = daemon_retries_clamp(&d->cfg, r->tenant, r->max_attempts);
        if (max_attempts < r->max_attempts) {
                log_info("run %s: its attempts are lowered from %d to %d, what the config grants tenant %s now", r->id,
                         r->max_attempts, max_attempts, r->tenant);
                r->max_attempts = max_attempts;
        }
        drun_set_limits_json(r);
        drun_init_log(d, r);
        if (!claimed && !d->cluster)
                drun_log_prefill(d, r);
        if (claimed) {
                r->claimed = true;
                r->daemon_writes_result = true;
                pthread_mutex_lock(&d->lock);
                d->cluster_claimed++;
                pthread_mutex_unlock(&d->lock);
        }
        _cleanup_free_ char *id = xstrdup(r->id);
        int k = drun_enqueue(d, r, true);
        if (k < 0) {
                log_error("run %s: cannot resume it: %s", id, strerror(-k));
                return k;
        }
        drun_unref(d, r);
        return 0;
}

int daemon_run_adopt(Daemon *d, const PendingRun *p) {
        return drun_resume(d, p, true);
}

int daemon_runs_recover(Daemon *d) {
        PendingRun *v = NULL;
        size_t n = 0, lost = 0;
        /* First the runs that ended in the store's journal (answered
         * before a kill -9): in the database before the queue looks for
         * runs left in flight. Journaling on from here, but in a cluster
         * (store.h "the ended-runs journal"). */
        size_t replayed = 0;
        int k = store_journal_start(d->store, !d->cluster, &replayed);
        if (k < 0)
                log_warn("the ended-runs journal could not be replayed (%s): kept for the next start, not used", strerror(-k));
        else if (replayed > 0)
                log_info("%zu ended run(s) replayed from the ended-runs journal", replayed);
        if (!d->cluster)
                store_set_settled_hook(d->store, daemon_runs_settled_kick, NULL);
        k = run_queue_recover(d->queue, "the daemon stopped while this run was in flight", &v, &n, &lost);
        if (k < 0)
                return k;
        if (lost > 0)
                log_warn("%zu run(s) were in flight when the daemon last stopped and may not run again; marked lost",
                         lost);
        size_t resumed = 0;
        for (size_t i = 0; i < n; i++)
                if (drun_resume(d, &v[i], false) >= 0)
                        resumed++;
        pending_run_list_free(v, n);
        if (resumed > 0)
                log_info("resumed %zu run(s) the previous daemon had accepted", resumed);
        return (int) resumed;
}

char *drun_log_text(Daemon *d, DRun *r, size_t *ret_len) {
        char *t;
        pthread_mutex_lock(&d->lock);
        t = xmemdupz(r->log.data, r->log.len);
        *ret_len = r->log.len;
        pthread_mutex_unlock(&d->lock);
        return t;
}

int daemon_run_find(Daemon *d, const char *tenant, const char *id, DRun **ret) {
        pthread_mutex_lock(&d->lock);
        for (DRun *r = d->runs; r; r = r->next)
                if (streq(r->id, id) && (!tenant || streq(r->tenant, tenant))) {
                        r->refs++;
                        pthread_mutex_unlock(&d->lock);
                        *ret = r;
                        return 0;
                }
        pthread_mutex_unlock(&d->lock);
        return -ENOENT;
}

int daemon_run_cancel(Daemon *d, DRun *r) {
        bool running;

        pthread_mutex_lock(&d->lock);
        if (r->done) {
                pthread_mutex_unlock(&d->lock);
                return -EALREADY;
        }
        r->cancel_requested = true;
        /* A cancel heard after the stop handed r back (its attempt still
         * being stopped here): it ends cancelled, written, not left to
         * run again elsewhere. */
        r->handed_back = false;
        running = r->status == RUN_RUNNING;
        pthread_cond_broadcast(&d->sched_cond);
        pthread_cond_signal(&d->retry_cond); /* one waiting for its retry ends at once */
        daemon_runs_kick(d); /* a pending run ends at once */
        /* A remote run's look sends it on (remote_look()). */
        if (r->remote)
                pthread_cond_signal(&d->remote_cond);
        pthread_mutex_unlock(&d->lock);
        if (running)
                (void) engine_cancel(d->engine, r->id);
        return 0;
}

void daemon_run_cancel_id(Daemon *d, const char *id) {
        DRun *r = NULL;
        if (daemon_run_find(d, NULL, id, &r) < 0)
                return;
        /* Heard again (the lease's look, after the message): once is enough. */
        pthread_mutex_lock(&d->lock);
        bool again = r->cancel_requested || r->done;
        pthread_mutex_unlock(&d->lock);
        if (again) {
                drun_unref(d, r);
                return;
        }
        log_info("run %s: cancelled from another node", id);
        (void) daemon_run_cancel(d, r);
        drun_unref(d, r);
}

/* With d->lock held: r as a record of its state now (copies). */
static RunRecord *drun_record_now(const DRun *r) {
        RunRecord rec;
        record_from_drun(r, &rec, run_status_to_string(r->status == RUN_RUNNING ? RUN_RUNNING : RUN_QUEUED));
        RunRecord *c = xcalloc(1, sizeof(RunRecord));
        *c = rec;
        c->id = xstrdup(rec.id);
        c->tenant = xstrdup_or_null(rec.tenant);
        c->filename = xstrdup_or_null(rec.filename);
        c->function = xstrdup_or_null(rec.function);
        c->args_json = xstrdup_or_null(rec.args_json);
        c->kwargs_json = xstrdup_or_null(rec.kwargs_json);
        c->status = xstrdup(rec.status);
        c->fn_name = xstrdup_or_null(rec.fn_name);
        c->schedule = xstrdup_or_null(rec.schedule);
        c->limits_json = xstrdup_or_null(rec.limits_json);
        c->attempt = r->attempt;
        c->max_attempts = r->max_attempts;
        return c;
}

/* daemon.h. */
RunRecord *daemon_run_record_now(Daemon *d, DRun *r) {
        pthread_mutex_lock(&d->lock);
        RunRecord *rec = drun_record_now(r);
        pthread_mutex_unlock(&d->lock);
        return rec;
}

static bool drun_listed(const DRun *r, const char *tenant, const char *fn_name) {
        return !r->done && (!tenant || streq(r->tenant, tenant)) && (!fn_name || (r->fn_name && streq(r->fn_name, fn_name)));
}

int daemon_run_list_in_flight(Daemon *d, const char *tenant, const char *fn_name, RunRecord ***ret, size_t *ret_n) {
        assert(d && ret && ret_n);
        pthread_mutex_lock(&d->lock);
        size_t n = 0;
        for (DRun *r = d->runs; r; r = r->next)
                n += drun_listed(r, tenant, fn_name);
        RunRecord **v = xcalloc(n + 1, sizeof(RunRecord *));
        size_t i = 0;
        for (DRun *r = d->runs; r && i < n; r = r->next)
                if (drun_listed(r, tenant, fn_name))
                        v[i++] = drun_record_now(r);
        pthread_mutex_unlock(&d->lock);
        *ret = v;
        *ret_n = i;
        return 0;
}

void daemon_run_counts(Daemon *d, unsigned *ret_running, unsigned *ret_queued) {
        pthread_mutex_lock(&d->lock);
        *ret_running = d->running;
        *ret_queued = d->queued;
        pthread_mutex_unlock(&d->lock);
}

void daemon_runs_drain(Daemon *d, usec_t timeout) {
        usec_t deadline = now_monotonic() + timeout;

        pthread_mutex_lock(&d->lock);
        d->draining = true;
        pthread_cond_signal(&d->retry_cond); /* the retries waiting start (or stay queued) now */
        /* The remote runs nobody waits for here let go at once; the
         * others once they end or the grace period is over
         * (remote_let_go()). */
        if (d->remote_running)
                pthread_cond_signal(&d->remote_cond);
        /* A gateway's clients that follow a run's log wait for its end
         * as a ?wait does: the CLI's run does. Once the grace period is
         * over (leave_queued), only the threads are waited for. */
        while ((d->threads > 0 || (!d->leave_queued && __atomic_load_n(&d->remote_follows, __ATOMIC_ACQUIRE) > 0)) &&
               now_monotonic() < deadline) {
                cond_wait_usec(&d->change_cond, &d->lock, 200 * USEC_PER_MSEC);
        }
        pthread_mutex_unlock(&d->lock);
}

void daemon_run_reveal(Daemon *d, DRun *r) {
        /* Only a synchronous run's submit is deferred (drun_enqueue); a
         * flush costs nothing when nothing is queued. */
        if (r->answer_waits && !d->cluster) {
                int k = run_queue_reveal(d->queue, r->id);
                if (k < 0)
                        log_error("run %s: cannot store its record before showing its id: %s", r->id, strerror(-k));
        }
}

int daemon_run_final_record(DRun *r, RunRecord *ret) {
        assert(r && ret);
        if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) && r->remote_end) {
                *ret = *r->remote_end;
                return 0;
        }
        const RunResult *res = r->result;
        /* The engine's record is the stored one only when it wrote it and
         * nobody overwrote it: a daemon-written end (cancel, internal
         * error), a full disk (kept unwritten) and a claimed run (Redis's
         * record) are read back instead. */
        if (!r->done || !res || !res->recorded || r->daemon_writes_result || r->claimed || r->attempt <= 0)
                return -ENODATA;
        record_from_drun(r, ret, run_status_to_string(res->status));
        /* What RunQueueOps.finish wrote (store_run_finish): the engine's
         * started and finished, its timings text, the resolved function. */
        ret->function = res->function ? res->function : r->function;
        ret->exit_code = res->exit_code;
        ret->value_json = res->value_json;
        ret->value_repr = res->value_repr;
        ret->error_type = res->error_type;
        ret->error_message = res->error_message;
        ret->traceback = res->traceback;
        ret->outputs_json = res->outputs_json;
        ret->timings_json = res->timings_json;
        ret->started = res->started;
        ret->finished = res->finished;
        ret->attempt = r->attempt;
        ret->max_attempts = r->max_attempts;
        return 0;
}

bool daemon_run_done(Daemon *d, DRun *r) {
        /* Without d->lock, which every run thread takes several times per
         * run: done only ever goes from false to true (drun_signal_done()). */
        return __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
}
