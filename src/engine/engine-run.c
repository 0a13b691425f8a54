/* The run lifecycle (DESIGN §3): validate -> resolve -> start -> run ->
 * record. One function per phase; engine_run() reads as the list of them. */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "engine-internal.h"
#include "sandbox.h"
#include "worker-proto.h"

#define EXIT_GRACE_USEC (200 * USEC_PER_MSEC)
#define VALIDATE_TIMEOUT_USEC (30 * USEC_PER_SEC)
/* A large file's validation (worker.c) ends well before the engine gives
 * up on the validator: the run's time limit, at most this. */
#define VALIDATE_APART_TIMEOUT_MS 20000

struct ActiveRun {
        char *id;
        RunSandbox *sandbox;
        Worker *worker;
        /* Set once (atomically) by engine_cancel(); read without the lock
         * by every phase and by the package manager (PkgEnvOptions.cancel). */
        bool cancelled;
        /* An eventfd engine_cancel() signals: the watch and a validation's
         * wait poll it, so a cancel wakes them instead of a tick. */
        int cancel_fd;
        /* `pysprinter cancel` may ask by file (the CLI's recorded runs). */
        bool by_file;
        ActiveRun *next;
};

typedef struct RunCtx {
        Engine *e;
        const RunSpec *spec;
        RunEventFn fn;
        void *userdata;
        RunResult *res;
        RunLimits limits;
        RunRecord rec;
        ActiveRun active;
        PoolWorker *pw;           /* the env's warm worker (ad-hoc runs) */
        Instance *inst;           /* a warm instance (deployed functions) */
        int log_fd;
        bool log_failed;
        int log_errno;            /* the first failed log write (negative errno) */
        json_t *args, *kwargs;
        char *requirements_json; /* the file's @requirements dict */
        char **sys_path;
        char *env_key;            /* the environment whose hold it uses (engine_env_unuse() at its end), or NULL */
        char *lock_json;          /* the environment's lock, for the record (NULL: none) */
        char *limits_json;        /* the limits it runs with, for a record it writes (NULL: the queue's) */
        char **data_binds;        /* "NAME=/host/dir": what the sandbox mounts */
        char **data_seen;         /* per binding, the path data_path() returns */
        uint64_t output_bytes;
        usec_t t_start;
        char *out_host;           /* the host dir the run sees as /out (output_dir_create()) */
        bool out_daemon_born;     /* out_host was made before any tenant was known (a spare's) */
        json_t *memo_reply;       /* a deployed source's memoized validation, parsed, shared (instance_memo_get) */
        json_t *compiled;         /* validation's code and bound arguments for the run child (runner.py _compiled) */
        int restarts;             /* started again after its worker died (rerun_after_worker_death()) */
} RunCtx;

typedef struct RunWatch RunWatch;
static void instance_exit_status(Instance *i, RunWatch *w);

/* ---- events and bookkeeping ---- */

static void emit(RunCtx *c, RunEvent ev) {
        ev.run_id = c->res->id;
        if (!ev.timestamp)
                ev.timestamp = now_realtime();
        if (c->fn)
                c->fn(&ev, c->userdata);
}

static void emit_phase(RunCtx *c, const char *phase) {
        emit(c, (RunEvent) { .type = RUN_EVENT_PHASE, .phase = phase });
}

static void set_outcome(RunCtx *c, RunStatus status, int exit_code, const char *type, const char *message) {
        c->res->status = status;
        c->res->exit_code = exit_code;
        free(c->res->error_type);
        free(c->res->error_message);
        c->res->error_type = type ? xstrdup(type) : NULL;
        c->res->error_message = message ? xstrdup(message) : NULL;
}

/* The attempt the caller's queue started (an embedded run's is its
 * first). */
static int run_first_attempt(const RunCtx *c) {
        return MAX(c->spec->attempt, 1);
}

static void clamp(uint64_t *v, uint64_t def, uint64_t max) {
        if (!*v)
                *v = def;
        if (max && *v > max)
                *v = max;
}

static void effective_limits(RunCtx *c) {
        c->limits = c->spec->limits;
        const RunLimits *d = &c->e->defaults;
        pthread_mutex_lock(&c->e->lock); /* a daemon's config reload sets maxima */
        RunLimits m = c->e->maxima;
        pthread_mutex_unlock(&c->e->lock);
        clamp(&c->limits.timeout_ms, d->timeout_ms, m.timeout_ms);
        clamp(&c->limits.memory_bytes, d->memory_bytes, m.memory_bytes);
        clamp(&c->limits.max_procs, d->max_procs, m.max_procs);
        clamp(&c->limits.max_output_bytes, d->max_output_bytes, m.max_output_bytes);
}

static void cancel_watch_start(Engine *e);

static void active_register(RunCtx *c) {
        Engine *e = c->e;
        c->active.id = c->res->id;
        c->active.by_file = e->record_owner && !c->spec->no_record;
        pthread_mutex_lock(&e->lock);
        /* A new one only while fewer ran at once before. Without one
         * (EMFILE) the watch notices a cancel at its next wake-up only;
         * engine_cancel() kills the tree all the same. */
        c->active.cancel_fd = e->n_spare_cancel_fds ? e->spare_cancel_fds[--e->n_spare_cancel_fds]
                                                    : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        c->active.next = e->active;
        e->active = &c->active;
        /* Before the run's record exists: no ask can come before it. */
        if (c->active.by_file)
                cancel_watch_start(e);
        pthread_mutex_unlock(&e->lock);
}

static void active_unregister(RunCtx *c) {
        Engine *e = c->e;
        int fd = c->active.cancel_fd;
        c->active.cancel_fd = -EBADF;
        pthread_mutex_lock(&e->lock);
        for (ActiveRun **p = &e->active; *p; p = &(*p)->next)
                if (*p == &c->active) {
                        *p = c->active.next;
                        break;
                }
        /* engine_cancel() signals only under the lock and only the runs
         * in the list: an uncancelled run's fd was never written, so the
         * next run takes it as it is. */
        if (fd >= 0 && !c->active.cancelled && e->n_spare_cancel_fds < ENGINE_SPARE_CANCEL_FDS) {
                e->spare_cancel_fds[e->n_spare_cancel_fds++] = fd;
                fd = -EBADF;
        }
        pthread_mutex_unlock(&e->lock);
        fd_close(fd);
}

char *run_limits_json(const RunLimits *l) {
        return xasprintf("{\"timeout_ms\":%" PRIu64 ",\"memory_bytes\":%" PRIu64 ",\"max_procs\":%" PRIu64
                         ",\"max_output_bytes\":%" PRIu64 ",\"network\":%s}",
                         (uint64_t) l->timeout_ms, (uint64_t) l->memory_bytes, (uint64_t) l->max_procs,
                         (uint64_t) l->max_output_bytes, l->network ? "true" : "false");
}

char *engine_run_log_path(Engine *e, const char *run_id) {
        assert(e);
        assert(run_id);
        return xasprintf("%s/%s.log", e->logs_dir, run_id);
}

static char *cancel_request_path(Engine *e, const char *run_id) {
        return path_join(e->data_dir, "cancel", run_id);
}

int engine_cancel_request(Engine *e, const char *run_id) {
        assert(e && run_id && *run_id && !strchr(run_id, '/'));
        _cleanup_free_ char *dir = path_join(e->data_dir, "cancel"), *path = cancel_request_path(e, run_id);
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        return fd < 0 ? -errno : 0;
}

void engine_cancel_request_clear(Engine *e, const char *run_id) {
        assert(e && run_id);
        _cleanup_free_ char *path = cancel_request_path(e, run_id);
        (void) unlink(path);
}

static bool cancelled(RunCtx *c) {
        return __atomic_load_n(&c->active.cancelled, __ATOMIC_ACQUIRE);
}

/* Ends the run as a cancel in the run phase does (classify()): the same
 * status, exit code and message whichever phase it came in. */
static int cancel_outcome(RunCtx *c) {
        set_outcome(c, RUN_CANCELLED, EXIT_LIMIT, "Cancelled", "cancelled");
        return -ECANCELED;
}

int engine_cancel(Engine *e, const char *run_id) {
        int r = -ESRCH;
        pthread_mutex_lock(&e->lock);
        for (ActiveRun *a = e->active; a; a = a->next)
                if (streq(a->id, run_id)) {
                        __atomic_store_n(&a->cancelled, true, __ATOMIC_RELEASE);
                        if (a->cancel_fd >= 0)
                                (void) eventfd_write(a->cancel_fd, 1);
                        if (a->sandbox)
                                (void) engine_sandbox_run_kill(a->sandbox);
                        r = 0;
                }
        pthread_mutex_unlock(&e->lock);
        /* A run may be waiting for a worker another run is starting
         * (pool_acquire_cancellable()) or for an instance at its
         * function's max_instances (instance_acquire()): wake it to read
         * its cancel fd. Taken after e->lock is let go, so the two are
         * never held together; and under the pool's lock, so a waiter that
         * has just found its fd unwritten is inside its wait before the
         * wake. */
        if (r == 0) {
                pthread_mutex_lock(&e->pool.lock);
                pthread_cond_broadcast(&e->pool.changed);
                instance_waiters_cancel_locked(e);
                pthread_mutex_unlock(&e->pool.lock);
        }
        return r;
}

/* ---- `pysprinter cancel` of the CLI's runs: $DATA/cancel/RUN_ID ----
 * Another process asks by creating the file (engine_cancel_request()).
 * One inotify watch per record_owner engine and one thread blocked on it:
 * nothing wakes until a file appears, whatever phase the run is in
 * (resolving, installing, running). The thread acts only on files named
 * after this process's runs in flight (other CLI processes watch the same
 * directory for theirs): it removes the file and calls engine_cancel(). */

/* Acts on the ask for run id if it is one of ours in flight. */
static void cancel_file_seen(Engine *e, const char *id) {
        bool ours = false;
        pthread_mutex_lock(&e->lock);
        for (ActiveRun *a = e->active; a && !ours; a = a->next)
                ours = a->by_file && streq(a->id, id);
        pthread_mutex_unlock(&e->lock);
        if (!ours)
                return;
        _cleanup_free_ char *path = cancel_request_path(e, id);
        if (unlink(path) < 0)
                return; /* the run's end cleared it meanwhile */
        (void) engine_cancel(e, id);
}

/* After an inotify overflow, or once the watch is up: the files of our
 * runs looked for by name. */
static void cancel_rescan(Engine *e) {
        char **ids = NULL;
        pthread_mutex_lock(&e->lock);
        for (ActiveRun *a = e->active; a; a = a->next)
                if (a->by_file)
                        ids = strv_append(ids, a->id);
        pthread_mutex_unlock(&e->lock);
        for (char **i = ids; i && *i; i++)
                cancel_file_seen(e, *i);
        strv_free(ids);
}

static void *cancel_watch_main(void *userdata) {
        Engine *e = userdata;
        (void) pthread_setname_np(pthread_self(), "cancel-watch");
        struct pollfd pf[2] = { { .fd = e->cancel_inotify_fd, .events = POLLIN },
                                { .fd = e->cancel_stop_fd, .events = POLLIN } };
        for (;;) {
                if (poll(pf, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (pf[1].revents)
                        break;
                if (!pf[0].revents)
                        continue;
                _Alignas(struct inotify_event) char buf[4096];
                ssize_t n = read(e->cancel_inotify_fd, buf, sizeof(buf));
                if (n <= 0)
                        continue;
                for (ssize_t off = 0; off + (ssize_t) sizeof(struct inotify_event) <= n;) {
                        const struct inotify_event *ev = (const struct inotify_event *) (buf + off);
                        if (ev->mask & IN_Q_OVERFLOW)
                                cancel_rescan(e);
                        else if (ev->len > 0 && ev->name[0] && ev->name[0] != '.')
                                cancel_file_seen(e, ev->name);
                        off += (ssize_t) (sizeof(struct inotify_event) + ev->len);
                }
        }
        return NULL;
}

/* Under e->lock, once: the first run that can be asked by file. */
static void cancel_watch_start(Engine *e) {
        if (e->cancel_watch_tried)
                return;
        e->cancel_watch_tried = true;
        _cleanup_free_ char *dir = path_join(e->data_dir, "cancel");
        int r = mkdir_p(dir, 0700);
        if (r >= 0) {
                e->cancel_inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
                e->cancel_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (e->cancel_inotify_fd < 0 || e->cancel_stop_fd < 0 ||
                    inotify_add_watch(e->cancel_inotify_fd, dir, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0)
                        r = -errno;
        }
        if (r >= 0 && pthread_create(&e->cancel_thread, NULL, cancel_watch_main, e) != 0)
                r = -EAGAIN;
        if (r < 0) {
                log_warn("cannot watch %s for cancel requests (pysprinter cancel of this process's runs has no "
                         "effect): %s",
                         dir, strerror(-r));
                e->cancel_inotify_fd = fd_close(e->cancel_inotify_fd);
                e->cancel_stop_fd = fd_close(e->cancel_stop_fd);
                return;
        }
        e->cancel_thread_running = true;
}

static void log_output(RunCtx *c, int stream, const char *data, size_t len, usec_t ts) {
        if (c->log_fd < 0 && c->rec.log_path && !c->log_failed) {
                /* Created on the first output: most invocations print
                 * nothing, and a file per run costs an inode allocation. */
                c->log_fd = open(c->rec.log_path,
                                 O_WRONLY | O_CREAT | (c->spec->attempt > 1 ? O_APPEND : O_TRUNC) | O_CLOEXEC |
                                         O_NOFOLLOW,
                                 0600);
                c->log_failed = c->log_fd < 0;
        }
        if (c->log_fd < 0)
                return;
        char hdr[64];
        int n = snprintf(hdr, sizeof(hdr), "%d %llu %zu\n", stream, (unsigned long long) ts, len);
        int k = write_full(c->log_fd, hdr, (size_t) n);
        if (k >= 0)
                k = write_full(c->log_fd, data, len);
        if (k >= 0)
                k = write_full(c->log_fd, "\n", 1);
        if (k < 0) {
                /* A log with a hole is not the run's output: stop writing
                 * it and end the run with the reason (finish_log_error). */
                c->log_errno = k;
                c->log_fd = fd_close(c->log_fd);
                c->log_failed = true;
        }
}

/* A run whose output could not be stored (the disk is full) ends as an
 * error that says so, whatever its function did: its log is incomplete. */
static void finish_log_error(RunCtx *c) {
        if (c->log_errno == 0)
                return;
        _cleanup_free_ char *msg = xasprintf(
                "the run's output could not be stored: %s%s", strerror(-c->log_errno),
                c->log_errno == -ENOSPC ? " (ENOSPC: the disk holding the data dir is full)" : "");
        set_outcome(c, RUN_ERROR, EXIT_INTERNAL, c->log_errno == -ENOSPC ? "NoSpace" : "LogError", msg);
}

/* Milliseconds with microsecond precision, printed from the integer: no
 * floating-point formatting (and no JSON tree) per run, which showed in
 * the daemon's profile (__printf_fp) for a record written on every invoke. */
void engine_ms_append(Buf *b, const char *key, usec_t us) {
        /* Spelled as json_shorten_reals() would (0.01, 2.0, not 0.010,
         * 2.000): an answer splices this text as stored (store-json.c),
         * and a real already in its shortest spelling is copied there, not
         * converted (strtod, up to 17 snprintf). The store keeps such a
         * value as its microseconds and spells it back with the same
         * format_ms() (store-timings.c). */
        char ms[FORMAT_MS_MAX];
        size_t n = format_ms(us, ms);
        (void) buf_append(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1);
        (void) buf_appends(b, key);
        (void) buf_append(b, "\":", 2);
        (void) buf_append(b, ms, n);
}

static char *timings_json(const RunResult *r) {
        Buf b;
        buf_init(&b, 4096);
        (void) buf_append(&b, "{", 1);
        engine_ms_append(&b, "validate_ms", r->t_validate);
        engine_ms_append(&b, "resolve_ms", r->t_resolve);
        engine_ms_append(&b, "install_ms", r->t_install);
        engine_ms_append(&b, "start_ms", r->t_start);
        engine_ms_append(&b, "run_ms", r->t_run);
        engine_ms_append(&b, "total_ms", r->t_total);
        engine_ms_append(&b, "queue_ms", r->t_queue);
        engine_ms_append(&b, "acquire_ms", r->t_acquire);
        engine_ms_append(&b, "fork_ms", r->t_fork);
        engine_ms_append(&b, "reply_ms", r->t_reply);
        (void) buf_appends(&b, r->cold ? ",\"cold\":true}" : ",\"cold\":false}");
        return buf_steal(&b);
}

static void record_start(RunCtx *c) {
        if (c->spec->no_record)
                return;
        RunRecord *r = &c->rec;
        r->id = c->res->id;
        r->tenant = (char *) (c->spec->tenant ? c->spec->tenant : "local");
        r->filename = (char *) c->spec->filename;
        r->function = (char *) c->spec->function;
        r->args_json = (char *) c->spec->args_json;
        r->kwargs_json = (char *) c->spec->kwargs_json;
        r->status = (char *) "running";
        r->exit_code = -1;
        r->created = r->started = now_realtime();
        /* What a record this inserts says: the run started once (a
         * caller's queue inserted and counts its own), within the attempts
         * a worker's death may use (rerun_after_worker_death()), as a
         * daemon's record says. Left 0 of 1, an embedded run read as never
         * started and never to be run again. */
        r->attempt = run_first_attempt(c);
        r->max_attempts = c->spec->max_attempts > 0 ? c->spec->max_attempts : RUN_DEFAULT_MAX_ATTEMPTS;
        r->log_path = engine_run_log_path(c->e, c->res->id);
        /* A caller's queue that inserted the record (with this log path)
         * and started this attempt (RunQueueOps.start: running, started)
         * has written all a running record holds: one SQLite write less
         * per invoke (issue 15). */
        bool started_by_queue = c->spec->record_exists && c->spec->attempt > 0;
        /* The limits it runs with, as a daemon's record keeps those it
         * granted: `show` printed a limits line through a daemon only. */
        if (!started_by_queue) {
                free(c->limits_json);
                c->limits_json = run_limits_json(&c->limits);
                r->limits_json = c->limits_json;
        }
        /* A daemon may have inserted the record as queued already. */
        if (!started_by_queue && (c->spec->record_exists || store_run_insert(c->e->store, r) == -EEXIST))
                (void) store_run_update(c->e->store, r);
        uint64_t start;
        if (c->e->record_owner && pid_start_time(getpid(), &start) >= 0)
                (void) store_run_set_owner(c->e->store, r->id, getpid(), start);
}

static void record_finish(RunCtx *c) {
        if (c->spec->no_record || (c->spec->record_success_only && c->res->status != RUN_SUCCEEDED))
                return;
        RunRecord *r = &c->rec;
        RunResult *res = c->res;
        r->function = res->function ? res->function : (char *) c->spec->function;
        r->status = (char *) run_status_to_string(res->status);
        r->exit_code = res->exit_code;
        r->value_json = res->value_json;
        r->value_repr = res->value_repr;
        r->error_type = res->error_type;
        r->error_message = res->error_message;
        r->traceback = res->traceback;
        r->outputs_json = res->outputs_json;
        _cleanup_free_ char *t = timings_json(res);
        r->timings_json = t;
        r->lock_json = c->lock_json;
        r->finished = now_realtime();
        int k = c->spec->attempt > 0 ? store_run_finish(c->e->store, r, c->spec->attempt)
                                     : store_run_update(c->e->store, r);
        if (k == -ESTALE)
                log_warn("run %s: attempt %d ended after a newer attempt took over; its result is dropped",
                         r->id, c->spec->attempt);
        else if (k < 0)
                c->res->record_error = k;
        else {
                res->recorded = true;
                res->started = r->started;
                res->finished = r->finished;
                free(res->timings_json);
                res->timings_json = TAKE_PTR(t);
        }
        r->timings_json = NULL;
        r->outputs_json = NULL;
        r->lock_json = NULL;
}

/* ---- phase: validate ---- */

static json_t *base_message(RunCtx *c, const char *type) {
        json_t *m = json_pack("{s:s, s:s, s:s%, s:s, s:s?, s:O, s:O}", "type", type, "id", c->res->id, "source",
                              c->spec->source, c->spec->source_len, "filename",
                              c->spec->filename ? c->spec->filename : "<input>", "function", c->spec->function,
                              "args", c->args, "kwargs", c->kwargs);
        if (c->spec->skip_argument_check)
                json_object_set_new(m, "bind", json_false());
        /* Validation binds the Lambda context too (handler(event, context)). */
        if (c->spec->context_json)
                json_object_set_new(m, "context", json_loads(c->spec->context_json, 0, NULL) ?: json_object());
        return m;
}

static char *format_validation_error(json_t *err, const char *fallback_file) {
        const char *type = json_string_value(json_object_get(err, "type"));
        const char *msg = json_string_value(json_object_get(err, "message"));
        const char *file = json_string_value(json_object_get(err, "filename"));
        json_t *line = json_object_get(err, "line"), *col = json_object_get(err, "col");
        const char *text = json_string_value(json_object_get(err, "text"));
        Buf b;
        buf_init(&b, 64 * 1024);
        if (line && json_is_integer(line)) {
                buf_printf(&b, "%s:%lld", file ? file : fallback_file, (long long) json_integer_value(line));
                if (col && json_is_integer(col))
                        buf_printf(&b, ":%lld", (long long) json_integer_value(col));
                buf_appends(&b, ": ");
        }
        if (type && !streq(type, "ValidationError"))
                buf_printf(&b, "%s: ", type);
        buf_appends(&b, msg ? msg : "invalid file");
        if (text && col && json_is_integer(col)) {
                /* Python's own presentation: the line, then a caret under the
                 * column (1-based). */
                json_int_t cc = json_integer_value(col);
                buf_printf(&b, "\n    %s\n    ", text);
                for (json_int_t i = 1; i < cc && i < 4096; i++)
                        buf_append(&b, text[i - 1] == '\t' ? "\t" : " ", 1);
                buf_appends(&b, "^");
        }
        return buf_steal(&b);
}

static int check_requirements(RunCtx *c, json_t *reqs, PkgRequirement ***ret, size_t *ret_n) {
        size_t n = json_object_size(reqs), i = 0;
        PkgRequirement **v = xcalloc(n + 1, sizeof(PkgRequirement *));
        const char *key;
        json_t *val;
        json_object_foreach(reqs, key, val) {
                _cleanup_free_ char *err = NULL;
                int r = pkg_requirement_from_seed(key, json_string_value(val) ?: "", &v[i], &err);
                if (r < 0) {
                        set_outcome(c, RUN_INVALID, EXIT_VALIDATION, "RequirementError",
                                    err ? err : "invalid requirement");
                        for (size_t j = 0; j < i; j++)
                                pkg_requirement_free(v[j]);
                        free(v);
                        return r;
                }
                i++;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* A deployed function's validation key without its source: the memo
 * compares the source's bytes itself. */
static char *memo_key(RunCtx *c) {
        return xasprintf("instance\x1f%s\x1f%s\x1f%s\x1f%d", c->spec->instance_key, c->spec->filename ?: "",
                         c->spec->function ?: "", (int) c->spec->sandbox);
}

static char *validation_key_of(const RunSpec *spec) {
        /* A deployed function's source was validated at its first call; its
         * instance binds each invocation's arguments itself (a bad one is
         * still exit 3), so per-call arguments stay out of the key. */
        if (spec->instance_key)
                return xasprintf("instance\x1f%s\x1f%s\x1f%s\x1f%d\x1f%.*s", spec->instance_key,
                                 spec->filename ?: "", spec->function ?: "", (int) spec->sandbox,
                                 (int) spec->source_len, spec->source);
        return xasprintf("%s\x1f%s\x1f%s\x1f%s\x1f%s%s\x1f%d\x1f%.*s", spec->filename ?: "",
                         spec->function ?: "", spec->args_json ?: "[]", spec->kwargs_json ?: "{}",
                         spec->context_json ? "ctx" : "", spec->skip_argument_check ? "nobind" : "",
                         (int) spec->sandbox, (int) spec->source_len, spec->source);
}

static char *validation_key(RunCtx *c) {
        return validation_key_of(c->spec);
}

/* The readiness key of an ad-hoc run (e->readycache): what picks its
 * environment (the file's requirements) and its worker (the sandbox mode,
 * the network setting: pool_key()), not its arguments, so that a new
 * argument of a known file needs only its validation cached. */
static char *ready_key(const RunSpec *spec) {
        return xasprintf("%d\x1f%d\x1f%s\x1f%s\x1f%s\x1f%.*s", (int) spec->limits.network, (int) spec->sandbox,
                         spec->filename ?: "", spec->function ?: "", spec->requirements_json ?: "",
                         (int) spec->source_len, spec->source);
}

/* Larger sources are not looked at on the caller's thread: the look hashes
 * the whole key twice. */
#define READY_MAX_SOURCE_BYTES (64U << 10)

bool engine_run_ready(Engine *e, const RunSpec *spec) {
        assert(e && spec);
        if (spec->instance_key || spec->data || spec->validate_only || !spec->source ||
            spec->source_len > READY_MAX_SOURCE_BYTES)
                return false;
        _cleanup_free_ char *rkey = ready_key(spec);
        _cleanup_free_ char *pool_key = vcache_get(e->readycache, rkey);
        if (!pool_key || !pool_has_ready(e, pool_key))
                return false;
        /* These arguments not validated yet, or evicted since (the byte
         * bound): validation would wait on a worker. */
        _cleanup_free_ char *vkey = validation_key_of(spec);
        return vcache_has(e->vcache, vkey);
}

/* After an ad-hoc run took pw, a ready worker (started for it or not),
 * with its validation and environment done: a run of the same file and
 * network setting (whose arguments' validation is cached) may begin on a
 * thread that must not wait (engine_run_ready()). Taught by the runs begun
 * where waiting is fine; one begun on the strength of it does not write it
 * again (a hash and a copy per run less). */
static void ready_learn(RunCtx *c, const PoolWorker *pw) {
        if (c->spec->ready_checked || c->spec->data || !c->spec->source ||
            c->spec->source_len > READY_MAX_SOURCE_BYTES)
                return;
        _cleanup_free_ char *rkey = ready_key(c->spec);
        /* Known already (most runs): no copy, no eviction scan. The pool
         * key of a ready key does not change (sandbox and network are in
         * both). */
        if (!vcache_has(c->e->readycache, rkey))
                vcache_put(c->e->readycache, rkey, pw->key);
}

static uint64_t validation_deadline_ms(const RunCtx *c) {
        uint64_t t = c->limits.timeout_ms;
        return t && t < VALIDATE_APART_TIMEOUT_MS ? t : VALIDATE_APART_TIMEOUT_MS;
}

/* A validation that ran into the run's memory limit or its deadline ends
 * the run as that limit would have (exit 5), named as validation's. */
static void validation_limit_outcome(RunCtx *c, const char *type) {
        const char *file = c->spec->filename ?: "<input>";
        bool memory = streq(type, "MemoryLimit");
        _cleanup_free_ char *v = memory ? sandbox_format_bytes(c->limits.memory_bytes)
                                        : sandbox_format_duration_ms(validation_deadline_ms(c));
        _cleanup_free_ char *m = xasprintf("%s limit (%s) while validating %s", memory ? "memory" : "time", v, file);
        set_outcome(c, RUN_KILLED, EXIT_LIMIT, memory ? "MemoryLimit" : "TimeLimit", m);
}

/* Validation runs in a validator of the run's sandbox mode, a worker no
 * run is forked from, of the large files' lane for a large file
 * (pool_acquire()); its answers are cached, since they depend on nothing
 * but the inputs (a limit's refusal is not cached: it depends on the
 * run's limits). */
static int validate_in_worker(RunCtx *c, char **ret_reply) {
        /* Cancelled already (Ctrl-C right after the start): no validator
         * is taken, and none is lost to a reply nobody reads. */
        if (cancelled(c))
                return cancel_outcome(c);
        _cleanup_free_ char *err = NULL;
        PoolWorker *base = NULL;
        bool cold;
        RunLimits base_limits = c->limits;
        base_limits.network = false;
        PoolRole role = !c->e->validator_apart                               ? POOL_RUNS
                        : c->spec->source_len >= WORKER_VALIDATE_APART_BYTES ? POOL_VALIDATOR_LARGE
                                                                             : POOL_VALIDATOR;
        int r = pool_acquire_cancellable(c->e, c->spec->sandbox, &base_limits, NULL, NULL, role, c->active.cancel_fd,
                                         &base, &cold, &err);
        if (r == -ECANCELED)
                return cancel_outcome(c);
        if (r < 0) {
                set_outcome(c, RUN_ERROR, EXIT_INTERNAL, "WorkerError", err);
                return r;
        }
        json_t *m = base_message(c, "validate");
        /* Bounds of a large file's validation (worker.c validates it in a
         * child): the run's memory, and its time limit up to a cap. */
        json_object_set_new(m, "limits",
                            json_pack("{s:I, s:I}", "memory_bytes", (json_int_t) c->limits.memory_bytes, "deadline_ms",
                                      (json_int_t) validation_deadline_ms(c)));
        _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        pthread_mutex_lock(&base->io_lock);
        r = worker_send(base->w, text, NULL, 0);
        if (r >= 0)
                r = worker_recv_cancellable(base->w, now_monotonic() + VALIDATE_TIMEOUT_USEC, c->active.cancel_fd,
                                            ret_reply, NULL);
        pthread_mutex_unlock(&base->io_lock);
        /* A cancelled wait leaves the reply in the socket: that worker
         * cannot serve another request. */
        pool_release(c->e, base, r < 0);
        if (r == -ECANCELED)
                return cancel_outcome(c);
        if (r < 0)
                set_outcome(c, RUN_ERROR, EXIT_INTERNAL, "WorkerError",
                            r == -ETIMEDOUT ? "validation timed out" : "the worker died during validation");
        return r;
}

/* The warnings CPython gave while the file was validated (runner.py
 * _warnings_text()): written on the run's stderr, as Python writes them
 * when it compiles a file, so that the CLI prints the same bytes embedded
 * and through a daemon (whose validating worker's stderr is its own log),
 * and the run's log keeps them. A cached reply brings them again: every
 * run of the file shows them, as every embedded run does. */
static void stderr_note(RunCtx *c, const char *text, size_t len) {
        usec_t ts = now_realtime();
        log_output(c, 2, text, len, ts);
        emit(c, (RunEvent){ .type = RUN_EVENT_OUTPUT, .stream = 2, .data = text, .len = len, .timestamp = ts });
}

static void validation_warnings(RunCtx *c, json_t *reply) {
        json_t *w = json_object_get(reply, "warnings");
        if (!json_is_string(w) || json_string_length(w) == 0)
                return;
        const char *text = json_string_value(w);
        size_t len = json_string_length(w);
        free(c->res->warnings);
        c->res->warnings = xmemdupz(text, len);
        stderr_note(c, text, len);
}

/* What the resolution warned of (a yanked pin, an unknown extra), on the
 * run's stderr for the same reasons as the parser's warnings: both paths
 * print them and the log keeps them. Only the run that resolved shows
 * them: a cached lock installs the same files silently, as uv's does. */
static void resolver_warnings(RunCtx *c, char **warnings) {
        for (char **w = warnings; w && *w; w++) {
                _cleanup_free_ char *line = xasprintf("pysprinter: warning: %s\n", *w);
                stderr_note(c, line, strlen(line));
        }
}

static int phase_validate(RunCtx *c, json_t **ret_reqs) {
        emit_phase(c, "validate");
        usec_t t0 = now_monotonic();
        /* A warm invoke of source bytes seen before: the memo's reply is
         * the one the cache holds for them, without hashing the source. */
        bool memoized = c->memo_reply != NULL;
        _cleanup_free_ char *key = memoized ? NULL : validation_key(c);
        /* Kept parsed and shared (read only below): no copy, no parse. */
        json_t *hit = memoized ? NULL : vcache_get_json(c->e->vcache, key);
        _cleanup_free_ char *reply = NULL;
        bool cached = memoized || hit != NULL;
        if (!cached) {
                int r = validate_in_worker(c, &reply);
                if (r < 0) {
                        c->res->t_validate = now_monotonic() - t0;
                        return r;
                }
        }
        c->res->t_validate = now_monotonic() - t0;
        /* The memo's reply is shared: only read below (json_incref of its
         * requirements is atomic). */
        json_t *v = memoized ? TAKE_PTR(c->memo_reply) : hit ? hit : json_loads(reply, JSON_ALLOW_NUL, NULL);
        validation_warnings(c, v);
        /* A refused call (its arguments, its requirements) names the
         * function the parser found as a valid one does: the validation's
         * answer and the run show it. */
        const char *function = json_string_value(json_object_get(v, "function"));
        json_t *params = json_object_get(v, "parameters");
        if (function)
                c->res->function = xstrdup(function);
        if (json_is_array(params))
                c->res->params_json = json_dumps(params, JSON_COMPACT);
        if (!json_is_true(json_object_get(v, "ok"))) {
                json_t *e = json_object_get(v, "error");
                _cleanup_free_ char *msg = format_validation_error(e, c->spec->filename ?: "<input>");
                const char *type = json_string_value(json_object_get(e, "type"));
                if (json_is_true(json_object_get(e, "limit")) && type)
                        validation_limit_outcome(c, type);
                else
                        set_outcome(c, RUN_INVALID, EXIT_VALIDATION, type ?: "ValidationError", msg);
                json_decref(v);
                return -EINVAL;
        }
        if (!cached)
                vcache_put_json(c->e->vcache, key, v, strlen(reply));
        if (!memoized && c->spec->instance_key) {
                _cleanup_free_ char *mk = memo_key(c);
                instance_memo_put(c->e, mk, c->spec->source, c->spec->source_len, v);
        }
        /* An ad-hoc run's child loads these instead of parsing, binding
         * and compiling the source again (its validation key covers the
         * arguments; a deployed function's does not). */
        if (!c->spec->instance_key)
                c->compiled = json_incref(json_object_get(v, "compiled"));
        if (!function)
                c->res->function = xstrdup("?");
        /* Only a validation's answer shows them: a run or an invoke does
         * not copy a docstring on its way. */
        if (c->spec->validate_only) {
                const char *sig = json_string_value(json_object_get(v, "signature"));
                const char *doc = json_string_value(json_object_get(v, "doc"));
                c->res->signature = sig ? xstrdup(sig) : NULL;
                c->res->doc = doc ? xstrdup(doc) : NULL;
        }
        json_t *reqs = json_object_get(v, "requirements");
        if (c->spec->requirements_json) {
                /* Kept beside the source (a deploy): the file must not
                 * declare its own too, or which set applies is a guess. */
                if (json_object_size(reqs) > 0) {
                        set_outcome(c, RUN_INVALID, EXIT_VALIDATION, "RequirementError",
                                    "the file declares @requirements and requirements were given beside it; use one or the other");
                        json_decref(v);
                        return -EINVAL;
                }
                json_t *beside = json_loads(c->spec->requirements_json, 0, NULL);
                if (!json_is_object(beside)) {
                        json_decref(beside);
                        set_outcome(c, RUN_INVALID, EXIT_VALIDATION, "RequirementError",
                                    "the requirements must be an object of name -> specifier");
                        json_decref(v);
                        return -EINVAL;
                }
                *ret_reqs = beside;
        } else
                *ret_reqs = json_incref(reqs);
        json_decref(v);
        return 0;
}

/* ---- phase: resolve ---- */

static int phase_resolve(RunCtx *c, json_t *reqs_json) {
        /* A deployed version's environment is pinned at its first
         * invocation (engine-resolve.c says why that is safe). */
        emit_phase(c, "resolve");
        if (c->spec->instance_key) {
                usec_t t0 = now_monotonic();
                int k = engine_env_pinned(c->e, c->spec->instance_key, reqs_json, c->spec->lock_json, c->res->id, c->fn,
                                          c->userdata, &c->sys_path, &c->lock_json, &c->env_key);
                c->res->t_resolve = now_monotonic() - t0;
                if (k > 0)
                        return 0;
        }
        PkgRequirement **reqs = NULL;
        size_t n = 0;
        int r = check_requirements(c, reqs_json, &reqs, &n);
        if (r < 0)
                return r;
        usec_t t0 = now_monotonic();
        _cleanup_free_ char *err = NULL;
        size_t n_entries = 0;
        bool resolve_only = c->spec->validate_only && c->spec->resolve_only;
        _cleanup_strv_free_ char **warnings = NULL;
        /* A deployed version runs the lock of its deploy, never a new
         * resolution of its requirements. */
        if (c->spec->lock_json && !resolve_only)
                r = engine_env_from_lock(c->e, c->spec->lock_json, c->res->id, &c->active.cancelled, c->fn, c->userdata,
                                         &c->sys_path, &n_entries, &c->lock_json, &c->env_key, &err);
        else
                r = engine_resolve_env(c->e, reqs, n, resolve_only, c->spec->no_cache, c->res->id, &c->active.cancelled,
                                       c->fn, c->userdata, &c->sys_path, &n_entries, &c->lock_json, &warnings,
                                       &c->env_key, &err);
        resolver_warnings(c, warnings);
        if (r >= 0 && c->spec->instance_key)
                engine_env_pin(c->e, c->spec->instance_key, reqs_json, c->env_key, c->sys_path, n_entries,
                               c->lock_json);
        c->res->t_resolve = now_monotonic() - t0;
        for (size_t i = 0; i < n; i++)
                pkg_requirement_free(reqs[i]);
        free(reqs);
        if (r == -ECANCELED || cancelled(c))
                return cancel_outcome(c);
        if (r < 0) {
                set_outcome(c, RUN_DEPS_FAILED, EXIT_DEPENDENCY, "DependencyError", err ?: "dependency resolution failed");
                return r;
        }
        return 0;
}

/* ---- phase: run ---- */

typedef struct Pipes {
        int out[2], err[2], result[2];
        int status[2]; /* socketpair: the worker reports started/exited here */
        int control;   /* where the run's end is reported: status[0], or an instance's socket */
} Pipes;

static void pipes_close(Pipes *p) {
        int *all[] = { &p->out[0], &p->out[1], &p->err[0], &p->err[1], &p->result[0], &p->result[1],
                       &p->status[0], &p->status[1] };
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                *all[i] = fd_close(*all[i]);
}

/* A forked run gets output pipes, a result pipe and a status socketpair of
 * its own. A warm instance's invocation gets nothing here: it reports on
 * the instance's socket, its result comes in the "done" message there, and
 * its output on the instance's own pipes (instance_pipes()). */
static int pipes_open(Pipes *p, bool forked) {
        *p = (Pipes) { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 }, -1 };
        if (!forked)
                return 0;
        if (pipe2(p->out, O_CLOEXEC) < 0 || pipe2(p->err, O_CLOEXEC) < 0 || pipe2(p->result, O_CLOEXEC) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->status) < 0) {
                int r = -errno;
                pipes_close(p);
                return r;
        }
        return 0;
}

/* The run's limits and datasets ({NAME: {host, path}}, path being where
 * the run sees it) as the run and instance messages carry them. */
static void add_limits_and_data(RunCtx *c, json_t *m) {
        json_object_set_new(m, "limits", json_pack("{s:I, s:I, s:I, s:I, s:b}",
                                                   "timeout_ms", (json_int_t) c->limits.timeout_ms,
                                                   "memory_bytes", (json_int_t) c->limits.memory_bytes,
                                                   "max_procs", (json_int_t) c->limits.max_procs,
                                                   "max_output_bytes", (json_int_t) c->limits.max_output_bytes,
                                                   "network", c->limits.network));
        json_t *data = json_object();
        for (size_t i = 0; c->data_binds && c->data_binds[i]; i++) {
                const char *b = c->data_binds[i], *eq = strchr(b, '=');
                _cleanup_free_ char *name = xstrndup(b, (size_t) (eq - b));
                /* The host path stays out of the sandbox (it names the data dir). */
                const char *host = c->spec->sandbox == SANDBOX_MODE_NONE ? eq + 1 : c->data_seen[i];
                json_object_set_new(data, name, json_pack("{s:s, s:s}", "host", host, "path", c->data_seen[i]));
        }
        json_object_set_new(m, "data", data);
        if (c->spec->env) {
                json_t *env = json_object();
                for (char *const *e = c->spec->env; *e; e++) {
                        const char *eq = strchr(*e, '=');
                        if (!eq || eq == *e)
                                continue;
                        _cleanup_free_ char *k = xstrndup(*e, (size_t) (eq - *e));
                        json_object_set_new(env, k, json_string(eq + 1));
                }
                json_object_set_new(m, "env", env);
        }
}

/* The sandbox mounts directories: a single-file dataset (its binding names
 * the file) mounts the file's directory, and the run is told the file's own
 * path so that open(data_path(NAME)) opens it. */
static void prepare_data(RunCtx *c) {
        for (char *const *d = c->spec->data; d && *d; d++) {
                const char *eq = strchr(*d, '=');
                if (!eq)
                        continue;
                _cleanup_free_ char *name = xstrndup(*d, (size_t) (eq - *d));
                const char *host = eq + 1, *slash = strrchr(host, '/');
                struct stat st;
                bool file = stat(host, &st) == 0 && S_ISREG(st.st_mode) && slash && slash > host;
                _cleanup_free_ char *dir = file ? xstrndup(host, (size_t) (slash - host)) : xstrdup(host);
                _cleanup_free_ char *bind = xasprintf("%s=%s", name, dir);
                _cleanup_free_ char *seen = NULL;
                if (c->spec->sandbox == SANDBOX_MODE_NONE)
                        seen = xstrdup(host);
                else
                        seen = file ? path_join_many("/data", name, slash + 1, NULL) : path_join("/data", name);
                c->data_binds = strv_append(c->data_binds, bind);
                c->data_seen = strv_append(c->data_seen, seen);
        }
}

/* ---- the run's output dir (docs/data.md "Outputs") ---- */

static const char *run_tenant(RunCtx *c) {
        return c->spec->tenant ? c->spec->tenant : "local";
}

/* A kept dir (engine-outdir.c) renamed to dir: true when dir is ready. */
static bool out_spare_take(RunCtx *c, const char *dir) {
        return engine_out_kept_take(c->e, run_tenant(c), dir, &c->out_daemon_born);
}

/* Keeps a finished run's dir for the next run of its tenant: only a
 * full-sandbox run that succeeded (--output-data never gets here). */
static bool out_spare_keep(RunCtx *c) {
        if (c->spec->sandbox != SANDBOX_MODE_FULL || c->res->status != RUN_SUCCEEDED)
                return false;
        /* A dir born of a spare stays tenant-free (engine-outdir.c). */
        return engine_out_kept_keep(c->e, c->out_daemon_born ? NULL : run_tenant(c), &c->out_host);
}

/* The run's own dir: in the full sandbox <worker's out root>/root/<id>,
 * which the worker sees at SANDBOX_OUT_ROOT/<id> and the run at /out; under
 * --sandbox=none $DATA/outputs/<owner>-<id>, which the run uses as it is. Owned by
 * its worker's uid (sandbox.h "uids": the run's own once it runs), 0700. A
 * failure leaves the run without /out (output_dir() then fails when written
 * to), never fails it. */
static void output_dir_create(RunCtx *c, char **spare_out) {
        if (c->spec->instance_key || !c->pw)
                return;
        bool full = c->spec->sandbox == SANDBOX_MODE_FULL;
        if (full && !c->pw->w->out_root)
                return;
        /* A sealed spare mounted the dir made for it while idle
         * (engine-pool.c): that dir, under the spare's name, is the run's
         * (a rename could race with the spare's mount). */
        if (*spare_out) {
                c->out_host = TAKE_PTR(*spare_out);
                c->out_daemon_born = true;
                return;
        }
        _cleanup_free_ char *name = xasprintf("%s-%s", c->e->out_owner, c->res->id);
        _cleanup_free_ char *dir = full ? path_join_many(c->pw->w->out_root, "root", c->res->id, NULL)
                                        : path_join(c->e->out_dir, name);
        if (full && out_spare_take(c, dir)) {
                c->out_host = TAKE_PTR(dir);
                return;
        }
        if (mkdir(dir, 0700) < 0) {
                int r = -errno;
                log_warn("run %s: cannot create its output dir %s: %s", c->res->id, dir, strerror(-r));
                return;
        }
        /* The worker's own uid: the run child makes it its own before its
         * code starts (sandbox_mounts_out()). */
        if (full)
                (void) sandbox_host_chown(dir, c->pw->w->pid);
        if (full)
                engine_out_fresh_flags_learn(c->e, dir);
        c->out_host = TAKE_PTR(dir);
}

/* A sealed spare's output dir no run took (engine-pool.c made it). */
static void spare_out_freep(char **p) {
        if (!*p)
                return;
        (void) rm_rf(*p);
        free(*p);
}

/* "output_dir" (what pysprinter.output_dir() returns) and, in the full
 * sandbox, "sandbox": {"out": <its name under SANDBOX_OUT_ROOT>,
 * "fsize_bytes": RLIMIT_FSIZE, so no single file outgrows the cap}. */
static void add_output_dir(RunCtx *c, json_t *m) {
        if (!c->out_host)
                return;
        if (c->spec->sandbox == SANDBOX_MODE_NONE) {
                json_object_set_new(m, "output_dir", json_string(c->out_host));
                return;
        }
        json_object_set_new(m, "output_dir", json_string(SANDBOX_OUT_DIR));
        json_t *sb = json_object_get(m, "sandbox");
        if (!json_is_object(sb)) {
                sb = json_object();
                json_object_set_new(m, "sandbox", sb);
        }
        /* Its name under the root: the run's id, or its spare's tag. */
        const char *slash = strrchr(c->out_host, '/');
        json_object_set_new(sb, "out", json_string(slash ? slash + 1 : c->res->id));
        /* At least the default (the larger tmpfs + 16 MiB): /tmp's files
         * keep their bound when the cap is small. */
        uint64_t fsize = MAX(c->e->max_out_bytes, 80ULL << 20);
        json_object_set_new(sb, "fsize_bytes", json_integer((json_int_t) fsize));
}

/* What a run's output dir holds, measured against the engine's caps. */
typedef enum OutOver {
        OUT_WITHIN,
        OUT_OVER_BYTES,   /* regular files' bytes past max_out_bytes */
        OUT_OVER_ENTRIES, /* entries of any kind past max_out_files */
        OUT_OVER_DEPTH,   /* directories nested past RUN_MAX_OUT_DEPTH */
} OutOver;

typedef struct OutMeasure {
        uint64_t max_bytes, max_entries;
        uint64_t bytes, entries;
        OutOver over;
} OutMeasure;

/* Adds what the directory dirfd (consumed) holds, never following
 * symlinks, until a cap is passed. Every entry counts (an empty file or a
 * directory holds no bytes but one of the host's inodes). A directory
 * deeper than RUN_MAX_OUT_DEPTH is over the limit itself: the walk holds
 * an fd per level, so it does not go there, and what it cannot count must
 * not escape the caps (a run once wrote gigabytes 300 levels down). */
static void out_measure_dir(int dirfd, OutMeasure *m, unsigned depth) {
        DIR *d = fdopendir(dirfd);
        if (!d) {
                close(dirfd);
                return;
        }
        struct dirent *de;
        while (m->over == OUT_WITHIN && (de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (++m->entries > m->max_entries) {
                        m->over = OUT_OVER_ENTRIES;
                        break;
                }
                struct stat st;
                if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        if (depth + 1 > RUN_MAX_OUT_DEPTH) {
                                m->over = OUT_OVER_DEPTH;
                                break;
                        }
                        int fd = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        /* A directory the run made unreadable (chmod 000)
                         * hid its bytes from the caps where this process
                         * has no CAP_DAC_OVERRIDE (a daemon that is not
                         * root): its owner (the uid the run's root maps
                         * to, this one) gives itself access back. */
                        if (fd < 0 && errno == EACCES &&
                            fchmodat(dirfd, de->d_name, (st.st_mode & 07777) | 0700, 0) == 0)
                                fd = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (fd >= 0)
                                out_measure_dir(fd, m, depth + 1);
                } else if (S_ISREG(st.st_mode)) {
                        m->bytes += (uint64_t) st.st_size;
                        if (m->bytes > m->max_bytes)
                                m->over = OUT_OVER_BYTES;
                }
        }
        closedir(d);
}

/* Which cap the run's output dir is over, if any. */
static OutOver out_measure(RunCtx *c) {
        OutMeasure m = { .max_bytes = c->e->max_out_bytes, .max_entries = c->e->max_out_files };
        int fd = open(c->out_host, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
                out_measure_dir(fd, &m, 0);
        return m.over;
}

/* A succeeded run's value, checked by the caller's spec->check_result
 * before the record is written: a value the caller cannot use (a malformed
 * Function URL response) fails the run, which the record then says. */
static void result_check(RunCtx *c) {
        if (!c->spec->check_result || c->res->status != RUN_SUCCEEDED)
                return;
        _cleanup_free_ char *type = NULL, *message = NULL;
        if (c->spec->check_result(c->spec->tenant, c->res->value_json, c->res->value_repr, &type, &message) < 0)
                set_outcome(c, RUN_FAILED, EXIT_RAISED, type ?: "ResultError", message ?: "the result was refused");
}

/* What a run over an output dir cap is told. */
static char *out_limit_message(const RunCtx *c, OutOver over) {
        uint64_t cap = c->e->max_out_bytes;
        switch (over) {
        case OUT_OVER_ENTRIES:
                return xasprintf("output dir limit (%llu entries): the run left more files and directories than that "
                                 "in output_dir() (raise it with PYSPRINTER_MAX_OUT_FILES or the daemon's "
                                 "data.max_output_files)",
                                 (unsigned long long) c->e->max_out_files);
        case OUT_OVER_DEPTH:
                return xasprintf("output dir limit (%u levels): the run nested directories deeper than that in "
                                 "output_dir()",
                                 RUN_MAX_OUT_DEPTH);
        case OUT_OVER_BYTES:
        case OUT_WITHIN:
        default:
                return cap % (1ULL << 20) == 0
                               ? xasprintf("output dir limit (%llu MiB): the run wrote more than that to "
                                           "output_dir() (raise it with PYSPRINTER_MAX_OUT_BYTES or the "
                                           "daemon's data.max_output_bytes)",
                                           (unsigned long long) (cap >> 20))
                               : xasprintf("output dir limit (%llu bytes): the run wrote more than that to "
                                           "output_dir() (raise it with PYSPRINTER_MAX_OUT_BYTES or the "
                                           "daemon's data.max_output_bytes)",
                                           (unsigned long long) cap);
        }
}

/* After the run: a run over the cap is killed by a limit whatever it
 * returned; a succeeded one hands its /out to spec->store_output; the dir
 * goes in every case. */
static void output_dir_finish(RunCtx *c) {
        if (!c->out_host)
                return;
        /* An empty, untouched dir has nothing to measure or store: kept
         * for the next run without listing it twice. */
        if (!c->spec->store_output && out_spare_keep(c))
                return;
        const char *u = c->out_host;
        if (c->res->status == RUN_SUCCEEDED) {
                OutOver over = out_measure(c);
                if (over != OUT_WITHIN) {
                        _cleanup_free_ char *m = out_limit_message(c, over);
                        free(c->res->value_json);
                        c->res->value_json = NULL;
                        set_outcome(c, RUN_KILLED, EXIT_LIMIT, "OutputDirLimit", m);
                } else if (c->spec->store_output) {
                        _cleanup_free_ char *err = NULL, *outputs = NULL;
                        int r = c->spec->store_output(u, c->spec->store_output_userdata, &outputs, &err);
                        if (r < 0) {
                                _cleanup_free_ char *m = xasprintf("storing output_dir(): %s", err ?: strerror(-r));
                                free(c->res->value_json);
                                c->res->value_json = NULL;
                                if (r == -EFBIG || r == -EDQUOT || r == -EMFILE)
                                        set_outcome(c, RUN_KILLED, EXIT_LIMIT, "OutputDirLimit", m);
                                else if (r == -ELOOP || r == -EPERM || r == -EILSEQ || r == -ENAMETOOLONG ||
                                         r == -EINVAL)
                                        /* A symlink, a special file, a name with
                                         * a newline, a tree too deep
                                         * (data_tree_error()): what the function
                                         * left there, not our fault; or a
                                         * dataset that holds a single file
                                         * named for a directory (-EINVAL):
                                         * the caller's. */
                                        set_outcome(c, RUN_FAILED, EXIT_RAISED, "OutputError", m);
                                else
                                        set_outcome(c, RUN_ERROR, EXIT_INTERNAL, "OutputError", m);
                        } else
                                c->res->outputs_json = TAKE_PTR(outputs);
                }
        }
        /* Most runs write nothing there: one rmdir, not rm_rf's stat,
         * chmod, open and listing of an empty dir (issue 15). */
        int r = rmdir(c->out_host) == 0 ? 0 : rm_rf(c->out_host);
        if (r < 0)
                log_warn("run %s: cannot remove its output dir %s: %s", c->res->id, c->out_host, strerror(-r));
        free(c->out_host);
        c->out_host = NULL;
}

static int send_run(RunCtx *c, RunSandbox *rs, Pipes *p, const char *spare_tag, char **spare_out) {
        json_t *m = base_message(c, "run");
        json_t *path = json_array();
        _cleanup_strv_free_ char **seen = engine_sandbox_worker_paths(c->spec->sandbox, c->sys_path);
        for (char **s = seen; s && *s; s++)
                json_array_append_new(path, json_string(*s));
        json_object_set_new(m, "sys_path", path);
        add_limits_and_data(c, m);
        if (c->spec->context_json)
                json_object_set_new(m, "context", json_loads(c->spec->context_json, 0, NULL));
        if (c->compiled)
                json_object_set(m, "compiled", c->compiled);
        if (pool_worker_alone(c->e, c->pw))
                json_object_set_new(m, "alone", json_true());
        int fds[8] = { p->out[1], p->err[1], p->result[1], p->status[1] };
        size_t n_extra = 0;
        _cleanup_free_ char *sb = NULL;
        if (spare_tag) {
                /* The spare joined this run's cgroups already. */
                json_object_set_new(m, "spare", json_string(spare_tag));
                engine_sandbox_run_prejoined_json(rs, &sb);
        } else
                engine_sandbox_run_extra(rs, fds + 4, &n_extra, ELEMENTSOF(fds) - 4, &sb);
        if (sb)
                json_object_set_new(m, "sandbox", json_loads(sb, 0, NULL));
        output_dir_create(c, spare_out);
        add_output_dir(c, m);
        _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        pthread_mutex_lock(&c->pw->io_lock);
        int r = worker_send(c->pw->w, text, fds, 4 + n_extra);
        pthread_mutex_unlock(&c->pw->io_lock);
        return r;
}

typedef struct RunWatch {
        bool exited, signaled, worker_gone, instance_done;
        bool early; /* finished on the result's EOF, before the exit report */
        int code, sig;
        bool timed_out, output_limit, result_too_big, was_cancelled;
        bool more[3];         /* [stream]: the last poll's read filled the buffer */
        usec_t cancel_kill_again; /* monotonic: when a cancelled run is killed again */
        usec_t deadline;      /* monotonic: the time limit (0: not yet set), then the kill's */
        usec_t exit_deadline; /* monotonic: the grace after the exit report (0: none) */
        usec_t out_check_at;  /* monotonic: the next look at the output dir's size (0: not yet set) */
        OutOver out_limit;    /* killed: its output dir grew past a cap while it ran */
        Buf result;           /* a forked run's result pipe */
        bool plain;           /* result holds the value's JSON text alone (answer_plain()) */
        json_t *result_v;     /* the result object (an instance's "done" carries it) */
} RunWatch;

/* An instance's "done" as runner._done_body() and worker-python.c
 * instance_done() spell it with a result, {"type":"done","id":"ID",
 * "result":{…}}: the result object's text is moved to the message's start
 * and the message becomes the watch's result buffer, as a forked run's
 * pipe fills it (answer_plain() then decodes the value in place). Parsed,
 * a 10 MiB result was the message, jansson's string of it and its lexer's
 * text at once, and then a strdup() of the string. False (msg untouched)
 * for any other message. */
static bool done_take_result(RunWatch *w, char **msg) {
        static const char head[] = "{\"type\":\"done\",\"id\":", mid[] = ",\"result\":";
        char *m = *msg;
        if (w->result_v || w->plain || w->result.len > 0 || !startswith(m, head))
                return false;
        const char *end;
        if (m[sizeof(head) - 1] != '"' || json_literal_decode(m + sizeof(head) - 1, NULL, &end) < 0 ||
            !startswith(end, mid))
                return false;
        const char *res = end + sizeof(mid) - 1;
        size_t n = strlen(res);
        if (*res != '{' || n < 3 || res[n - 1] != '}' || n - 1 > w->result.max)
                return false;
        memmove(m, res, n - 1);
        m[n - 1] = 0;
        buf_free(&w->result);
        w->result.data = TAKE_PTR(*msg);
        w->result.len = n - 1;
        w->result.alloc = n;
        w->exited = true;
        w->instance_done = true;
        return true;
}

static void handle_worker_message(RunCtx *c, RunSandbox *rs, RunWatch *w, char **msg) {
        if (c->inst && done_take_result(w, msg))
                return;
        const char *json = *msg;
        json_t *m = json_loads(json, 0, NULL);
        const char *type = json_string_value(json_object_get(m, "type"));
        if (type && streq(type, "started"))
                engine_sandbox_run_started(rs, c->pw ? c->pw->w->pid : c->inst->parent->w->pid,
                                           (pid_t) json_integer_value(json_object_get(m, "pid")));
        else if (type && streq(type, "done")) {
                /* An instance finished an invocation and lives on; its
                 * result came with the message (the instance checked the
                 * 16 MiB limit: the result is never read twice). */
                w->exited = true;
                w->instance_done = true;
                json_t *res = json_object_get(m, "result");
                if (json_is_object(res) && !w->result_v)
                        w->result_v = json_incref(res);
                if (json_is_true(json_object_get(m, "result_too_big")))
                        w->result_too_big = true;
        }
        else if (type && streq(type, "exited")) {
                const char *st = json_string_value(json_object_get(m, "status"));
                engine_sandbox_run_exited(rs);
                w->exited = true;
                w->signaled = st && streq(st, "signaled");
                w->sig = (int) json_integer_value(json_object_get(m, "signal"));
                w->code = (int) json_integer_value(json_object_get(m, "code"));
                if (st && streq(st, "error"))
                        w->worker_gone = true;
        }
        json_decref(m);
}

/* What one read of a run's stdout/stderr takes at most. */
#define OUTPUT_CHUNK 65536

/* Returns how many bytes it read: 0 at EOF (the fd is closed), -1 when
 * nothing was there. */
static ssize_t read_output(RunCtx *c, RunSandbox *rs, RunWatch *w, int stream, int *fd) {
        char buf[OUTPUT_CHUNK];
        ssize_t k = read(*fd, buf, sizeof(buf));
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
                return -1;
        if (k <= 0) {
                *fd = fd_close(*fd);
                return 0;
        }
        usec_t ts = now_realtime();
        size_t keep = (size_t) k;
        if (c->output_bytes + keep > c->limits.max_output_bytes) {
                keep = c->output_bytes >= c->limits.max_output_bytes ? 0 : c->limits.max_output_bytes - c->output_bytes;
                if (!w->output_limit) {
                        w->output_limit = true;
                        c->res->output_truncated = true;
                        (void) engine_sandbox_run_kill(rs);
                }
        }
        c->output_bytes += (size_t) k;
        if (keep == 0)
                return k; /* keep draining so the writer never blocks */
        log_output(c, stream, buf, keep, ts);
        emit(c, (RunEvent) { .type = RUN_EVENT_OUTPUT, .stream = stream, .data = buf, .len = keep, .timestamp = ts });
        return k;
}

/* At most this many reads drain an instance's pipe after its "done" (what
 * a thread left running keeps writing is not the invocation's). */
#define DRAIN_MAX_READS 64

/* An instance answered "done" after flushing: all the invocation wrote is
 * in its pipes already (no EOF comes: the pipes are the instance's for its
 * life). poll() scans its fds in order and the instance socket comes
 * first: the scan that saw "done" saw the pipes after all of it was
 * written, and a read that did not fill the buffer took all there was. So
 * only a pipe whose last read filled the buffer needs more reads; a
 * trivial invocation costs no read at all. */
static void drain_output(RunCtx *c, RunSandbox *rs, RunWatch *w, int stream, int *fd) {
        for (unsigned i = 0; w->more[stream] && *fd >= 0 && i < DRAIN_MAX_READS; i++)
                w->more[stream] = read_output(c, rs, w, stream, fd) == OUTPUT_CHUNK;
}

static void read_result(RunSandbox *rs, RunWatch *w, int *fd) {
        char buf[65536];
        ssize_t k = read(*fd, buf, sizeof(buf));
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (k <= 0) {
                *fd = fd_close(*fd);
                return;
        }
        if (buf_append(&w->result, buf, (size_t) k) < 0 && !w->result_too_big) {
                w->result_too_big = true;
                (void) engine_sandbox_run_kill(rs);
        }
}

/* A run's output dir is on the host's disk; RLIMIT_FSIZE bounds each file
 * while it is written, but only this bounds the total: without it a run
 * writing many files held as much disk as it could write before its time
 * limit (seconds at disk speed: tens of GB), whatever the cap, and was
 * judged only at its end. Measured every OUT_CHECK_USEC while the run
 * lives (an empty dir: one open and one getdents; at most the entry cap's
 * entries: the walk stops there); past a cap (bytes, entries, depth) the
 * run is killed and classified OutputDirLimit. Returns whether to look
 * again.
 * Only in the full sandbox, for hostile code: a --sandbox=none run is
 * trusted, and its watch keeps sleeping until its time limit with no tick
 * (test_cancel_wakes_the_watch). */
#define OUT_CHECK_USEC (200 * USEC_PER_MSEC)

static bool out_watch(RunCtx *c, RunSandbox *rs, RunWatch *w, usec_t now) {
        if (!c->out_host || c->inst || c->spec->sandbox != SANDBOX_MODE_FULL || w->exited ||
            w->out_limit != OUT_WITHIN || w->timed_out || w->was_cancelled)
                return false;
        if (!w->out_check_at) {
                w->out_check_at = now + OUT_CHECK_USEC;
                return true;
        }
        if (now < w->out_check_at)
                return true;
        w->out_check_at = now + OUT_CHECK_USEC;
        w->out_limit = out_measure(c);
        if (w->out_limit == OUT_WITHIN)
                return true;
        (void) engine_sandbox_run_kill(rs);
        return false;
}

/* One look at the watch before a poll: 1 when it is over (the child exited
 * and the pipes are drained, an instance answered, or a deadline ended
 * it); else 0 with *ret_until the monotonic time by which it must be
 * looked at again without I/O (the time limit, the exit grace, a cancelled
 * run's next kill; UINT64_MAX: none). A cancel needs no tick: its eventfd
 * is polled with the pipes (watch_fds()). Kills what a passed deadline or
 * a cancel asks. */
static int watch_check(RunCtx *c, RunSandbox *rs, RunWatch *w, Pipes *p, usec_t *ret_until) {
        if (!w->deadline)
                w->deadline = now_monotonic() + c->limits.timeout_ms * USEC_PER_MSEC;
        if (c->inst && w->instance_done) {
                drain_output(c, rs, w, 1, &p->out[0]);
                drain_output(c, rs, w, 2, &p->err[0]);
                return 1;
        }
        if (w->exited && p->out[0] < 0 && p->err[0] < 0 && p->result[0] < 0)
                return 1;
        /* The child closed all its pipes after writing a result: the
         * run is over even if its exit is still being reported (an
         * ad-hoc child tears down a large address space; the
         * janitor reaps it). */
        if (!c->inst && p->out[0] < 0 && p->err[0] < 0 && p->result[0] < 0 && w->result.len > 0 && !w->timed_out &&
            !w->was_cancelled && !w->output_limit && !w->result_too_big) {
                w->early = true;
                return 1;
        }
        usec_t now = now_monotonic();
        if (w->exited && !w->exit_deadline)
                w->exit_deadline = now + EXIT_GRACE_USEC;
        if (w->exit_deadline && now >= w->exit_deadline) {
                (void) engine_sandbox_run_kill(rs);
                return 1;
        }
        if (!w->timed_out && now >= w->deadline) {
                w->timed_out = true;
                (void) engine_sandbox_run_kill(rs);
                w->deadline = now + 5 * USEC_PER_SEC; /* the kill must land by then */
        } else if (w->timed_out && now >= w->deadline) {
                w->worker_gone = true;
                return 1;
        }
        /* A cancel is sent again until the run is gone: one that
         * lands while the run's processes are still being placed in
         * its cgroup kills nothing. */
        if ((!w->was_cancelled || (!w->exited && now >= w->cancel_kill_again)) && cancelled(c)) {
                w->was_cancelled = true;
                w->cancel_kill_again = now + 200 * USEC_PER_MSEC;
                (void) engine_sandbox_run_kill(rs);
        }
        usec_t until = w->exit_deadline ? MIN(w->exit_deadline, w->deadline) : w->deadline;
        if (w->was_cancelled && !w->exited)
                until = MIN(until, w->cancel_kill_again);
        if (out_watch(c, rs, w, now))
                until = MIN(until, w->out_check_at);
        /* Without an eventfd (EMFILE at the run's start) a cancel is seen
         * at the next look: every 100 ms, as before events. */
        if (c->active.cancel_fd < 0 && !w->was_cancelled)
                until = MIN(until, now + 100 * USEC_PER_MSEC);
        *ret_until = until;
        return 0;
}

/* What the watch polls now (ENGINE_RUN_POLLFDS entries; -1: none). */
static void watch_fds(RunCtx *c, RunWatch *w, Pipes *p, struct pollfd pf[static ENGINE_RUN_POLLFDS]) {
        /* After the exit report (or an instance's "done") the worker
         * closes the status socket: that EOF is not a death. It comes
         * first: drain_output() relies on it. */
        pf[0] = (struct pollfd) { .fd = w->worker_gone || w->exited ? -1 : p->control, .events = POLLIN };
        pf[1] = (struct pollfd) { .fd = p->out[0], .events = POLLIN };
        pf[2] = (struct pollfd) { .fd = p->err[0], .events = POLLIN };
        pf[3] = (struct pollfd) { .fd = p->result[0], .events = POLLIN };
        /* Until the cancel is acted on (then the kill is repeated on
         * time, cancel_kill_again). */
        pf[4] = (struct pollfd){ .fd = w->was_cancelled ? -1 : c->active.cancel_fd, .events = POLLIN };
}

/* Acts on what a poll of watch_fds() returned: reads output, the result,
 * the worker's or instance's message. */
static void watch_handle(RunCtx *c, RunSandbox *rs, RunWatch *w, Pipes *p,
                         const struct pollfd pf[static ENGINE_RUN_POLLFDS]) {
        if (pf[4].revents) {
                /* Read by the next watch_check() from the flag; emptied
                 * so that it does not wake the poll again. */
                eventfd_t v;
                (void) eventfd_read(c->active.cancel_fd, &v);
        }
        w->more[1] = pf[1].revents && read_output(c, rs, w, 1, &p->out[0]) == OUTPUT_CHUNK;
        w->more[2] = pf[2].revents && read_output(c, rs, w, 2, &p->err[0]) == OUTPUT_CHUNK;
        if (pf[3].revents)
                read_result(rs, w, &p->result[0]);
        if (pf[0].revents) {
                _cleanup_free_ char *msg = NULL;
                /* poll() said it is readable: no second poll. A warm
                 * instance answers each invocation with one message and
                 * sends nothing else: read in one call. */
                int r = c->inst ? proto_recv_reply(p->control, WORKER_PROTO_MAX_MESSAGE, &msg, NULL)
                                : proto_recv(p->control, WORKER_PROTO_MAX_MESSAGE, &msg, NULL, NULL, 0, NULL);
                if (r < 0) {
                        /* The worker (or the instance) died without
                         * a word: the run died with it. */
                        w->worker_gone = true;
                        w->exited = true;
                        if (c->inst)
                                instance_exit_status(c->inst, w);
                        (void) engine_sandbox_run_kill(rs);
                } else
                        handle_worker_message(c, rs, w, &msg);
        }
}

/* Poll the worker and the run's pipes until the child has exited and the
 * pipes are drained (or the grace after its exit has passed: a survivor
 * that holds them open is killed with the run's tree): true. False when
 * the monotonic time `until` came first (the watch goes on at the next
 * call; its deadlines are in w). */
static bool watch_run(RunCtx *c, RunSandbox *rs, RunWatch *w, Pipes *p, usec_t until_caller) {
        for (;;) {
                usec_t until;
                if (watch_check(c, rs, w, p, &until))
                        break;
                usec_t now = now_monotonic();
                if (now >= until_caller)
                        return false;
                until = MIN(until, until_caller);
                /* Rounded up to the ms: a wait due in 300 µs sleeps 1 ms,
                 * not 0 (a spin). */
                int timeout = until == UINT64_MAX ? -1
                              : until > now       ? (int) MIN((until - now + 999) / 1000, (usec_t) INT32_MAX)
                                                  : 0;
                struct pollfd pf[ENGINE_RUN_POLLFDS];
                watch_fds(c, w, p, pf);
                int k = poll(pf, ENGINE_RUN_POLLFDS, timeout);
                if (k < 0 && errno != EINTR)
                        break;
                if (k <= 0)
                        continue;
                watch_handle(c, rs, w, p, pf);
        }
        return true;
}

static const char *signal_name(int sig) {
        const char *n = sigabbrev_np(sig);
        return n ? n : "?";
}

/* A forked run's answer as the runner spells a value with a JSON view,
 * {"ok": true, "json": "TEXT"} (runner.py _result_text()), is read
 * without jansson: TEXT is decoded in place to the buffer's start, where
 * it stays the value's only copy until the record holds it (parsed, the
 * answer of a 15 MB result was three copies at once: the answer, jansson's
 * saved text of the string and the string). Anything else, or a TEXT
 * jansson would read differently (a "\u0000" that ends its C string),
 * takes watch_result()'s parse, which reads the same. */
static bool answer_plain(RunWatch *w) {
        static const char head[] = "{\"ok\": true, \"json\": ";
        const size_t hl = sizeof(head) - 1;
        if (w->plain)
                return true;
        if (w->result_v || w->result.len < hl + 3 || !strneq(w->result.data, head, hl) ||
            w->result.data[w->result.len - 1] != '}')
                return false;
        char *lit = w->result.data + hl;
        const char *end;
        if (json_literal_decode(lit, NULL, &end) < 0 || end != w->result.data + w->result.len - 1 ||
            memmem(lit, w->result.len - hl, "\\u0000", 6))
                return false;
        ssize_t n = json_literal_decode(lit, w->result.data, &end);
        assert(n >= 0);
        w->result.data[n] = 0;
        w->result.len = (size_t) n;
        w->plain = true;
        return true;
}

/* The result object: an instance's (from "done"), or a forked run's pipe
 * parsed once; NULL when there is none, it is not JSON, or it was read as
 * plain (answer_plain()). */
static json_t *watch_result(RunWatch *w) {
        if (!w->result_v && !answer_plain(w) && w->result.len > 0)
                w->result_v = json_loads(w->result.data, JSON_ALLOW_NUL, NULL);
        return w->result_v;
}

static bool has_result(RunWatch *w) {
        return w->plain || w->result_v || w->result.len > 0;
}

static void outcome_from_result(RunCtx *c, RunWatch *w) {
        json_t *v = watch_result(w);
        if (w->plain) {
                /* The value's JSON text, or its repr() where the rest of
                 * the system could not read it back (below). */
                set_outcome(c, RUN_SUCCEEDED, EXIT_OK, NULL, NULL);
                if (json_text_loadable(w->result.data))
                        c->res->value_json = buf_steal_fit(&w->result);
                else
                        c->res->value_repr = buf_steal(&w->result);
                return;
        }
        if (!v) {
                set_outcome(c, RUN_ERROR, EXIT_INTERNAL, "InternalError", "the run's result could not be read");
                return;
        }
        if (json_is_true(json_object_get(v, "ok"))) {
                const char *js = json_string_value(json_object_get(v, "json"));
                const char *repr = json_string_value(json_object_get(v, "repr"));
                set_outcome(c, RUN_SUCCEEDED, EXIT_OK, NULL, NULL);
                /* JSON the rest of the system cannot read back (an int
                 * beyond 64 bits, a lone surrogate) is not JSON for the
                 * API's clients either: it takes the repr() path, so the
                 * CLI, the daemon and the store all agree. The warning is
                 * drawn by whoever shows value_repr (the CLI's renderer). */
                if (js && !json_text_loadable(js)) {
                        repr = repr ?: js;
                        js = NULL;
                }
                c->res->value_json = js ? xstrdup(js) : NULL;
                if (!js && repr)
                        c->res->value_repr = xstrdup(repr);
        } else {
                json_t *e = json_object_get(v, "error");
                const char *type = json_string_value(json_object_get(e, "type"));
                const char *msg = json_string_value(json_object_get(e, "message"));
                const char *tb = json_string_value(json_object_get(e, "traceback"));
                /* What the function raised is its failure whatever its
                 * class is named; only the runner's own errors (no
                 * "raised") are a validation or an internal error. */
                bool raised = json_is_true(json_object_get(e, "raised"));
                if (!raised && type && (streq(type, "ValidationError") || endswith(type, "SyntaxError"))) {
                        _cleanup_free_ char *m = format_validation_error(e, c->spec->filename ?: "<input>");
                        set_outcome(c, RUN_INVALID, EXIT_VALIDATION, type, m);
                } else if (!raised && type && (streq(type, "InternalError") || streq(type, "SandboxError"))) {
                        set_outcome(c, RUN_ERROR, EXIT_INTERNAL, type, msg);
                } else {
                        _cleanup_free_ char *m = xasprintf("%s: %s", type ?: "Exception", msg ?: "");
                        set_outcome(c, RUN_FAILED, EXIT_RAISED, type, msg && *msg ? m : type);
                        c->res->traceback = tb ? xstrdup(tb) : NULL;
                }
        }
}

/* The runner found the value larger than RUN_MAX_RESULT_BYTES as JSON
 * (runner.py _serialise()). */
static bool result_says_too_big(RunWatch *w) {
        return json_is_true(json_object_get(watch_result(w), "too_big"));
}

static bool result_is_success(RunWatch *w) {
        return json_is_true(json_object_get(watch_result(w), "ok")) || w->plain;
}

static void classify(RunCtx *c, RunSandbox *rs, RunWatch *w) {
        _cleanup_free_ char *type = NULL, *msg = NULL;
        /* engine_cancel() kills the tree itself: the child's death may be
         * seen before the watch loop noticed the flag. */
        if (w->was_cancelled || cancelled(c)) {
                set_outcome(c, RUN_CANCELLED, EXIT_LIMIT, "Cancelled", "cancelled");
                return;
        }
        if (w->timed_out) {
                /* The words and units of sandbox_classify()'s (one
                 * formatter, exact: %g kept six digits). */
                _cleanup_free_ char *d = sandbox_format_duration_ms(c->limits.timeout_ms);
                _cleanup_free_ char *m = xasprintf("time limit (%s)", d);
                set_outcome(c, RUN_KILLED, EXIT_LIMIT, "TimeLimit", m);
                return;
        }
        if (w->out_limit != OUT_WITHIN) {
                _cleanup_free_ char *m = out_limit_message(c, w->out_limit);
                set_outcome(c, RUN_KILLED, EXIT_LIMIT, "OutputDirLimit", m);
                return;
        }
        if (w->output_limit) {
                /* The words and units of the memory limit's (one formatter). */
                _cleanup_free_ char *b = sandbox_format_bytes(c->limits.max_output_bytes);
                _cleanup_free_ char *m = xasprintf("output limit (%s)", b);
                set_outcome(c, RUN_KILLED, EXIT_LIMIT, "OutputLimit", m);
                return;
        }
        if (w->result_too_big || result_says_too_big(w)) {
                set_outcome(c, RUN_KILLED, EXIT_LIMIT, "ResultLimit",
                            "result limit (the return value is larger than 16 MiB as JSON)");
                return;
        }
        /* A function that returned a value succeeded, whatever limits it
         * brushed against on the way; otherwise a limit explains the end
         * better than the exception it caused (a refused fork raises). */
        if (has_result(w) && !w->signaled && result_is_success(w)) {
                outcome_from_result(c, w);
                return;
        }
        if (engine_sandbox_run_classify(rs, w->signaled, w->sig, &type, &msg) > 0) {
                set_outcome(c, RUN_KILLED, EXIT_LIMIT, type, msg);
                return;
        }
        if (has_result(w) && (!w->signaled)) {
                outcome_from_result(c, w);
                return;
        }
        if (w->signaled) {
                _cleanup_free_ char *m = xasprintf("crashed: SIG%s", signal_name(w->sig));
                set_outcome(c, RUN_KILLED, EXIT_LIMIT, "Crash", m);
                return;
        }
        if (w->worker_gone) {
                _cleanup_free_ char *m = c->restarts > 0 ? xasprintf("the worker died during the run (%d attempts)",
                                                                     run_first_attempt(c) + c->restarts)
                                                         : xstrdup("the worker died during the run");
                set_outcome(c, RUN_ERROR, EXIT_INTERNAL, "WorkerError", m);
                return;
        }
        _cleanup_free_ char *m = xasprintf("the process exited with status %d before the function returned", w->code);
        set_outcome(c, RUN_FAILED, EXIT_RAISED, "ProcessExit", m);
}

/* Reads how an instance ended from its status socket (after its
 * invocation socket closed). */
static void instance_exit_status(Instance *i, RunWatch *w) {
        bool signaled;
        int sig, code;
        if (!instance_exit_report(i, &signaled, &sig, &code))
                return;
        w->signaled = signaled;
        w->sig = sig;
        w->code = code;
        w->worker_gone = false;
}

/* What the env's imports printed in the worker this run started (cold
 * acquire): the run's first output, as `import pkg` prints it in plain
 * Python, logged, streamed and counted against the output limit (cut at
 * it). A warm worker's runs get none: its imports ran once, before them. */
static void import_output_emit(RunCtx *c, PoolWorker *pw) {
        char *text[2];
        pool_worker_take_import_output(pw, text);
        uint64_t cap = c->limits.max_output_bytes ?: UINT64_MAX;
        for (int k = 0; k < 2; k++) {
                if (!text[k])
                        continue;
                size_t len = strlen(text[k]);
                uint64_t room = c->output_bytes >= cap ? 0 : cap - c->output_bytes;
                size_t keep = (size_t) MIN((uint64_t) len, room);
                if (keep < len)
                        c->res->output_truncated = true;
                c->output_bytes += keep;
                if (keep > 0) {
                        usec_t ts = now_realtime();
                        log_output(c, k + 1, text[k], keep, ts);
                        emit(c, (RunEvent){ .type = RUN_EVENT_OUTPUT,
                                            .stream = k + 1,
                                            .data = text[k],
                                            .len = keep,
                                            .timestamp = ts });
                }
                free(text[k]);
        }
}

/* What a new instance's module printed while it loaded: the run that
 * started it logs and streams it first, as a run's module output comes
 * first (o emptied). */
static void instance_load_output_emit(RunCtx *c, InstanceOutput *o) {
        size_t pos = 0;
        int stream;
        usec_t ts;
        const char *data;
        size_t len;
        while (instance_output_next(o, &pos, &stream, &ts, &data, &len)) {
                c->output_bytes += len;
                log_output(c, stream, data, len, ts);
                emit(c,
                     (RunEvent){
                             .type = RUN_EVENT_OUTPUT, .stream = stream, .data = data, .len = len, .timestamp = ts });
        }
        instance_output_free(o);
}

/* The outcome of a run whose instance_acquire() failed with r (err: its
 * words): a cancel; the function's module, dead or past the time limit
 * while it loaded, as the same end of an ad-hoc run's child
 * (InstanceLoadEnd, classify()); a module that defines no such function;
 * else ours. */
static void instance_acquire_failed(RunCtx *c, int r, const char *err, InstanceLoadEnd *end) {
        if (r == -ECANCELED)
                (void) cancel_outcome(c);
        else if (r == -ECHILD) {
                instance_load_output_emit(c, &end->output);
                if (end->output_limit)
                        c->res->output_truncated = true;
                RunWatch w = { .exited = true,
                               .timed_out = end->timed_out,
                               .output_limit = end->output_limit,
                               .signaled = end->signaled,
                               .sig = end->sig,
                               .code = end->code };
                classify(c, end->sandbox, &w);
                end->sandbox = engine_sandbox_run_finish(end->sandbox);
        } else if (r == -EINVAL)
                set_outcome(c, RUN_FAILED, EXIT_RAISED, "LoadError", err);
        else
                set_outcome(c, RUN_ERROR, EXIT_INTERNAL, "WorkerError", err ?: "cannot start a worker");
}

static char *instance_start_message(void *userdata) {
        RunCtx *c = userdata;
        json_t *m = base_message(c, "instance");
        json_object_set_new(m, "args", json_array());
        json_object_set_new(m, "kwargs", json_object());
        json_object_set_new(m, "id", json_string(c->spec->instance_key));
        add_limits_and_data(c, m);
        char *s = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        return s;
}

/* Throws away what sits in an idle instance's pipes (written after its
 * last "done": by a thread left running, not by the coming invocation). */
static void instance_pipes_discard(Instance *i) {
        /* instance_alive() polled them when the instance was acquired (a
         * thread left running is frozen or dropped from then on). */
        if (!i->stale_output)
                return;
        i->stale_output = false;
        int *fds[2] = { &i->out_fd, &i->err_fd };
        for (size_t k = 0; k < 2; k++) {
                char buf[OUTPUT_CHUNK];
                for (unsigned n = 0; n < DRAIN_MAX_READS; n++) {
                        ssize_t r = read(*fds[k], buf, sizeof(buf));
                        if (r == 0)
                                *fds[k] = fd_close(*fds[k]); /* it closed fd 1 or 2: new pipes */
                        if (r <= 0)
                                break;
                }
        }
}

/* An instance's stdout/stderr are two pipes it keeps for its life (as its
 * fds 1 and 2), made at its first invocation: a warm invoke makes no pipe.
 * Their write ends go with the invocation that finds them missing
 * (*ret_w[0..1], else -EBADF). */
static int instance_pipes(Instance *i, int ret_w[2]) {
        ret_w[0] = ret_w[1] = -EBADF;
        if (i->out_fd >= 0 && i->err_fd >= 0)
                instance_pipes_discard(i);
        if (i->out_fd >= 0 && i->err_fd >= 0)
                return 0;
        i->out_fd = fd_close(i->out_fd);
        i->err_fd = fd_close(i->err_fd);
        return instance_pipes_make(i, ret_w);
}

/* The invoke message, written as text: its arguments are the request's
 * own JSON texts, which parse_arguments() has parsed (an array, an object)
 * and the instance parses again, so they are copied, not parsed into
 * jansson values and printed back (~17k instructions per /v1 invoke, ~100k
 * with the Lambda route's context; docs/internals/performance-log.md "Invoke path: round
 * 7"). The context is the daemon's own JSON text (RunSpec.context_json). */
static char *invoke_message(RunCtx *c, size_t *ret_len) {
        const char *args = c->spec->args_json ?: "[]", *kwargs = c->spec->kwargs_json ?: "{}";
        Buf b;
        buf_init(&b, WORKER_PROTO_MAX_MESSAGE);
        int r = json_buf_append_member(&b, "{\"type\":\"invoke\",\"id\":", c->res->id);
        if (r >= 0)
                r = buf_appends(&b, ",\"args\":");
        if (r >= 0)
                r = buf_appends(&b, args);
        if (r >= 0)
                r = buf_appends(&b, ",\"kwargs\":");
        if (r >= 0)
                r = buf_appends(&b, kwargs);
        if (r >= 0 && c->spec->context_json) {
                r = buf_appends(&b, ",\"context\":");
                if (r >= 0)
                        r = buf_appends(&b, c->spec->context_json);
        }
        if (r >= 0)
                r = buf_append(&b, "}", 1);
        if (r < 0) {
                buf_free(&b);
                return NULL;
        }
        *ret_len = b.len;
        return buf_steal(&b);
}

static int send_invoke(RunCtx *c) {
        size_t len = 0;
        _cleanup_free_ char *text = invoke_message(c, &len);
        if (!text)
                return -EMSGSIZE;
        int fds[2];
        int r = instance_pipes(c->inst, fds);
        if (r < 0)
                return r;
        r = proto_send(c->inst->sock, text, len, fds, fds[0] >= 0 ? 2 : 0);
        /* Our copies of the write ends must go, or EOF never comes when
         * the instance dies. */
        fd_close(fds[0]);
        fd_close(fds[1]);
        return r;
}

/* A run between engine_run_begin() and engine_run_end(). */
struct EngineRun {
        RunCtx c;
        json_t *reqs;
        bool ran;             /* phase_run_begin() was called: output_dir_finish() is owed */
        bool in_run;          /* phase_run_end() is owed */
        bool instance_used;   /* RunSpec.instance is the run's (released with it) */
        bool watching;        /* the watch has not ended */
        RunSandbox *rs;
        Pipes p;
        RunWatch w;
        usec_t t2;            /* monotonic: the watch began */
        /* An ad-hoc run's sandbox and worker, handed back (janitor, pool)
         * once its record is written: hand_back(). */
        RunSandbox *back_rs;
        int back_exit_fd;     /* >= 0: the janitor waits for the exit report on it */
        PoolWorker *back_pw;
        bool back_broken;
};

/* Hands the run to a warm worker's forked child (ad-hoc) or to a warm
 * instance (deployed: RunSpec.instance when the caller took one); the
 * watch (engine_run_wait()) and phase_run_end() follow. */
static int phase_run_begin(EngineRun *run) {
        RunCtx *c = &run->c;
        emit_phase(c, "start");
        usec_t t0 = now_monotonic();
        _cleanup_free_ char *err = NULL;
        RunSandbox *rs = NULL;
        _cleanup_free_ char *spare_tag = NULL;
        /* The taken spare's output dir until send_run() makes it the run's
         * (removed below if it did not). */
        _cleanup_(spare_out_freep) char *spare_out = NULL;
        bool cold = false;
        InstanceLoadEnd load_end = {};
        int r;
        Instance *given = c->spec->instance_key ? c->spec->instance : NULL;
        if (given && instance_retired(c->e, given)) {
                /* Taken by the caller before phase_resolve() saw `env
                 * verify --repair` retire the env's workers: its module
                 * came from the damaged files. Another instance runs. */
                run->instance_used = true;
                instance_release(c->e, given, true);
                given = NULL;
        }
        if (given) {
                run->instance_used = true;
                c->inst = given;
                rs = c->inst->sandbox;
                r = 0;
        } else if (c->spec->instance_key) {
                r = instance_acquire(c->e, c->spec->instance_key, c->spec->max_instances, instance_start_message, c,
                                     c->spec->sandbox, &c->limits, c->sys_path, c->data_binds, c->active.cancel_fd,
                                     &c->inst, &cold, &load_end, &err);
                if (r >= 0) {
                        rs = c->inst->sandbox;
                        instance_load_output_emit(c, &c->inst->load_output);
                }
        } else {
                r = pool_acquire_cancellable(c->e, c->spec->sandbox, &c->limits, c->sys_path, c->data_binds, POOL_RUNS,
                                             c->active.cancel_fd, &c->pw, &cold, &err);
                /* A worker started for this run (cold) is ready too now. */
                if (r >= 0)
                        ready_learn(c, c->pw);
                if (r >= 0 && cold)
                        import_output_emit(c, c->pw);
                SpareSlot *slot = r >= 0 ? pool_take_slot(c->e, c->pw) : NULL;
                if (slot) {
                        /* Its cgroups exist and a spare sits in them: the
                         * run's limits go in before its code can run. */
                        rs = TAKE_PTR(slot->rs);
                        spare_tag = TAKE_PTR(slot->tag);
                        spare_out = TAKE_PTR(slot->out_host);
                        pool_slot_free(slot);
                        r = engine_sandbox_run_set_limits(rs, &c->limits);
                        if (r < 0) {
                                /* Never run under limits other than its own. */
                                err = xasprintf("cannot set the run's limits in its cgroup: %s", strerror(-r));
                                (void) engine_sandbox_run_kill(rs);
                                rs = engine_sandbox_run_finish(rs);
                        }
                } else if (r >= 0)
                        r = engine_sandbox_run_prepare(c->e, c->res->id, c->spec->sandbox, &c->limits, &rs, &err);
        }
        c->res->cold = cold;
        c->res->t_acquire = now_monotonic() - t0;
        if (r < 0) {
                /* An instance whose module fails to load is the function's
                 * failure; a cancel while the env's worker started is a
                 * cancel; anything else is ours. */
                if (c->spec->instance_key)
                        instance_acquire_failed(c, r, err, &load_end);
                else if (r == -ECANCELED)
                        (void) cancel_outcome(c);
                else
                        set_outcome(c, RUN_ERROR, EXIT_INTERNAL, "WorkerError", err ?: "cannot start a worker");
                if (c->pw)
                        pool_release(c->e, c->pw, false);
                c->pw = NULL;
                return r;
        }
        pthread_mutex_lock(&c->e->lock);
        c->active.sandbox = rs;
        pthread_mutex_unlock(&c->e->lock);

        Pipes p;
        usec_t t1 = now_monotonic();
        r = pipes_open(&p, !c->inst);
        if (r >= 0)
                r = c->inst ? send_invoke(c) : send_run(c, rs, &p, spare_tag, &spare_out);
        /* A warm instance that died while idle (its worker crashed) cannot
         * take the invocation, which therefore never started: hand it to
         * another instance, a new one if need be, not fail the call. */
        for (unsigned tries = 0; r < 0 && c->inst && !cold && tries < 8; tries++) {
                pthread_mutex_lock(&c->e->lock);
                c->active.sandbox = NULL;
                pthread_mutex_unlock(&c->e->lock);
                (void) engine_sandbox_run_kill(rs);
                instance_release(c->e, c->inst, true);
                c->inst = NULL;
                rs = NULL;
                free(err);
                err = NULL;
                r = instance_acquire(c->e, c->spec->instance_key, c->spec->max_instances, instance_start_message, c,
                                     c->spec->sandbox, &c->limits, c->sys_path, c->data_binds, c->active.cancel_fd,
                                     &c->inst, &cold, &load_end, &err);
                if (r < 0) {
                        pipes_close(&p);
                        instance_acquire_failed(c, r, err, &load_end);
                        return r;
                }
                c->res->cold = c->res->cold || cold;
                rs = c->inst->sandbox;
                instance_load_output_emit(c, &c->inst->load_output);
                pthread_mutex_lock(&c->e->lock);
                c->active.sandbox = rs;
                pthread_mutex_unlock(&c->e->lock);
                r = send_invoke(c);
        }
        p.control = c->inst ? c->inst->sock : p.status[0];
        if (c->inst) {
                /* Borrowed for the watch; handed back below. */
                p.out[0] = c->inst->out_fd;
                p.err[0] = c->inst->err_fd;
        }
        /* Our copies of the write ends must go, or EOF never comes. */
        p.out[1] = fd_close(p.out[1]);
        p.err[1] = fd_close(p.err[1]);
        p.result[1] = fd_close(p.result[1]);
        p.status[1] = fd_close(p.status[1]);
        /* A worker started for this run: measured while the run runs. */
        if (r >= 0 && cold && c->pw)
                pool_worker_measure_new(c->e, c->pw);
        RunWatch *wp = &run->w;
        *wp = (RunWatch) {};
        buf_init(&wp->result, RUN_MAX_RESULT_ANSWER_BYTES);
        run->rs = rs;
        if (r < 0) {
                set_outcome(c, RUN_ERROR, EXIT_INTERNAL, "WorkerError", "cannot hand the run to the worker");
                wp->worker_gone = true;
        } else {
                /* Fresh pipes' read ends carry no other status flag: set
                 * it without reading it first (3 syscalls per run less).
                 * An instance's were set when they were made. */
                if (!c->inst) {
                        (void) fcntl(p.out[0], F_SETFL, O_NONBLOCK);
                        (void) fcntl(p.err[0], F_SETFL, O_NONBLOCK);
                        (void) fcntl(p.result[0], F_SETFL, O_NONBLOCK);
                }
                c->res->t_fork = now_monotonic() - t1;
                c->res->t_start = c->res->t_acquire + c->res->t_fork;
                emit_phase(c, "run");
                run->t2 = now_monotonic();
                run->watching = true;
        }
        run->p = p;
        run->in_run = true;
        return 0;
}

/* After the watch: the outcome, and the worker or instance handed back. */
static void phase_run_end(EngineRun *run) {
        RunCtx *c = &run->c;
        RunSandbox *rs = run->rs;
        Pipes p = run->p;
        RunWatch w = run->w;
        if (run->t2) {
                /* The watch ran (the hand-off succeeded). */
                c->res->t_run = now_monotonic() - run->t2;
                classify(c, rs, &w);
        }
        pthread_mutex_lock(&c->e->lock);
        c->active.sandbox = NULL;
        pthread_mutex_unlock(&c->e->lock);
        if (c->inst) {
                /* The watch closes a pipe that reached EOF. */
                c->inst->out_fd = p.out[0];
                c->inst->err_fd = p.err[0];
                p.out[0] = p.err[0] = -EBADF;
                /* A killed or crashed instance is replaced on the next
                 * call, and so is one whose module raised (init_failed).
                 * One whose result was too big said so in "done" and
                 * lives on (nothing of it was killed). */
                bool broken = w.worker_gone || !w.instance_done || w.timed_out || w.was_cancelled || w.output_limit ||
                              c->inst->init_failed;
                if (broken)
                        (void) engine_sandbox_run_kill(rs);
                instance_release(c->e, c->inst, broken);
                c->inst = NULL;
        } else {
                /* Killing and removing the run's cgroup waits for its
                 * processes to go: off the critical path. A run that ended
                 * on its result's EOF has its exit report still to come:
                 * the janitor waits for it on the status socket. */
                if (w.early && !w.exited && p.control >= 0 && p.control == p.status[0]) {
                        run->back_exit_fd = TAKE_FD(p.status[0]);
                        p.control = -EBADF;
                }
                /* Handed back after the record (hand_back()): the
                 * janitor's wake-up and the pool's spare request then do
                 * not take a CPU from the thread writing the record and
                 * the answer (2 vCPUs: the run's teardown and the next
                 * spare's fork compete for them too). */
                run->back_rs = rs;
                run->back_pw = TAKE_PTR(c->pw);
                run->back_broken = w.worker_gone;
        }
        pipes_close(&p);
        buf_free(&w.result);
        json_decref(w.result_v);
}

/* An ad-hoc run's sandbox to the janitor (killed, its groups recycled:
 * after its exit report when one is awaited) and its worker back to the
 * pool (which asks for a spare to replace the one the run took). */
static void hand_back(EngineRun *run) {
        Engine *e = run->c.e;
        if (run->back_exit_fd >= 0)
                engine_janitor_finish_after_exit(e, run->back_rs, TAKE_FD(run->back_exit_fd));
        else if (run->back_rs)
                engine_janitor_finish(e, run->back_rs);
        run->back_rs = NULL;
        pool_release(e, TAKE_PTR(run->back_pw), run->back_broken);
}

/* An ad-hoc run whose worker died under it (killed from outside: the
 * host's OOM killer, an operator; the run's code cannot kill it, its pid
 * namespace is its own) before the function returned, or that could not
 * be handed to its worker, is started again on a new worker while its
 * attempts last (RunSpec.max_attempts: never for `retries: 0`), as Ray
 * retries a task whose worker died. Its stderr says so, and what the
 * first start printed stays (docs/api.md "Delivery"). A warm instance's
 * death is not retried: the instance runs the function's own code, which
 * can end it. true: the run was started again and is watched anew. */
static bool rerun_after_worker_death(EngineRun *run) {
        RunCtx *c = &run->c;
        RunWatch *w = &run->w;
        if (!run->in_run || c->inst || c->spec->instance_key || !w->worker_gone || w->timed_out || w->was_cancelled ||
            w->output_limit || has_result(w) || cancelled(c))
                return false;
        int max = c->spec->max_attempts > 0 ? c->spec->max_attempts : RUN_DEFAULT_MAX_ATTEMPTS;
        int attempt = run_first_attempt(c) + c->restarts;
        if (attempt >= max)
                return false;
        _cleanup_free_ char *note = xasprintf("pysprinter: the worker running the run died (attempt %d of %d): "
                                              "running it again on a new worker\n",
                                              attempt, max);
        stderr_note(c, note, strlen(note));
        log_debug("run %s: its worker died (attempt %d of %d); starting it again", c->res->id, attempt, max);

        pthread_mutex_lock(&c->e->lock);
        c->active.sandbox = NULL;
        pthread_mutex_unlock(&c->e->lock);
        pipes_close(&run->p);
        buf_free(&w->result);
        json_decref(w->result_v);
        *w = (RunWatch){};
        /* What the dead start wrote to /out is not the run's: the next
         * start gets a fresh dir. */
        if (c->out_host) {
                (void) rm_rf(c->out_host);
                free(c->out_host);
                c->out_host = NULL;
                c->out_daemon_born = false;
        }
        run->back_rs = TAKE_PTR(run->rs);
        run->back_pw = TAKE_PTR(c->pw);
        run->back_broken = true;
        hand_back(run);
        run->in_run = false;
        run->t2 = 0;
        c->restarts++;
        set_outcome(c, RUN_RUNNING, 0, NULL, NULL);
        (void) phase_run_begin(run);
        return true;
}

/* ---- the lifecycle ---- */

char *engine_source_error(const char *filename, const char *source, size_t len) {
        assert(source || len == 0);
        if (len > 0 && memchr(source, 0, len))
                return xstrdup("the file contains NUL bytes; is it a Python source file?");
        /* The worker protocol is JSON, whose strings are UTF-8: a file in
         * another encoding cannot even be handed to validation. CPython
         * reads UTF-8 by default, so say where the first bad byte is. */
        size_t bad = utf8_invalid_offset(source, len);
        if (bad >= len)
                return NULL;
        size_t line, col;
        utf8_line_col(source, bad, &line, &col);
        return xasprintf("%s:%zu:%zu: not valid UTF-8", filename ?: "<input>", line, col);
}

/* The scans over the whole source: no NUL byte, valid UTF-8. */
static int source_checks(RunCtx *c) {
        _cleanup_free_ char *msg = engine_source_error(c->spec->filename, c->spec->source, c->spec->source_len);
        if (!msg)
                return 0;
        set_outcome(c, RUN_INVALID, EXIT_VALIDATION, "ValidationError", msg);
        return -EINVAL;
}

static int parse_arguments(RunCtx *c) {
        json_error_t jerr;
        c->args = c->spec->args_json ? json_loads(c->spec->args_json, JSON_ALLOW_NUL, &jerr) : json_array();
        c->kwargs = c->spec->kwargs_json ? json_loads(c->spec->kwargs_json, JSON_ALLOW_NUL, &jerr) : json_object();
        if (!json_is_array(c->args) || !json_is_object(c->kwargs)) {
                set_outcome(c, RUN_INVALID, EXIT_VALIDATION, "ValidationError",
                            "arguments must be a JSON array and keyword arguments a JSON object");
                return -EINVAL;
        }
        if (!c->spec->source || c->spec->source_len > RUN_MAX_SOURCE_BYTES) {
                set_outcome(c, RUN_INVALID, EXIT_VALIDATION, "ValidationError",
                            c->spec->source ? "the file is larger than 4 MiB" : "no source given");
                return -EINVAL;
        }
        /* A deployed function's exact bytes that passed these checks and
         * validation before are not scanned again on every invoke. */
        if (c->spec->instance_key) {
                _cleanup_free_ char *mk = memo_key(c);
                c->memo_reply = instance_memo_get(c->e, mk, c->spec->source, c->spec->source_len);
        }
        if (!c->memo_reply) {
                int r = source_checks(c);
                if (r < 0)
                        return r;
        }
        if ((c->spec->filename && !utf8_is_valid(c->spec->filename)) ||
            (c->spec->function && !utf8_is_valid(c->spec->function))) {
                set_outcome(c, RUN_INVALID, EXIT_VALIDATION, "ValidationError",
                            "the file or function name is not valid UTF-8");
                return -EINVAL;
        }
        return 0;
}

EngineRun *engine_run_begin(Engine *e, const RunSpec *spec, RunEventFn fn, void *userdata) {
        assert(e && spec);
        EngineRun *run = xcalloc(1, sizeof(EngineRun));
        run->back_exit_fd = -EBADF;
        RunCtx *c = &run->c;
        *c = (RunCtx) { .e = e, .spec = spec, .fn = fn, .userdata = userdata, .log_fd = -EBADF };
        c->res = xcalloc(1, sizeof(RunResult));
        c->res->id = spec->run_id ? xstrdup(spec->run_id) : id_new("r");
        c->res->status = RUN_RUNNING;
        c->res->t_queue = spec->queued_usec;
        c->t_start = now_monotonic();
        effective_limits(c);
        prepare_data(c);
        active_register(c);
        record_start(c);
        if (spec->start_note)
                stderr_note(c, spec->start_note, strlen(spec->start_note));

        int r = parse_arguments(c);
        if (r >= 0)
                r = phase_validate(c, &run->reqs);
        /* A cancel before the run phase ends the run where it is: no
         * resolution, no install, no worker (phase_resolve() and the
         * package manager look at the flag as they go). */
        if (r >= 0 && cancelled(c))
                r = cancel_outcome(c);
        assert(!spec->describe_only || (spec->validate_only && spec->skip_argument_check));
        if (r >= 0 && !spec->describe_only)
                r = phase_resolve(c, run->reqs);
        if (r >= 0 && cancelled(c))
                r = cancel_outcome(c);
        if (r >= 0 && spec->validate_only)
                set_outcome(c, RUN_SUCCEEDED, EXIT_OK, NULL, NULL);
        else if (r >= 0) {
                run->ran = true;
                (void) phase_run_begin(run);
        }
        /* An instance the caller took and no phase used goes back. */
        if (spec->instance && !run->instance_used)
                engine_instance_put_back(e, spec->instance);
        return run;
}

bool engine_run_wait(EngineRun *run, usec_t until) {
        assert(run);
        for (;;) {
                if (run->watching && !watch_run(&run->c, run->rs, &run->w, &run->p, until))
                        return false;
                run->watching = false;
                if (!rerun_after_worker_death(run))
                        return true;
        }
}

bool engine_run_watch_fds(EngineRun *run, struct pollfd *pf, usec_t *ret_until) {
        assert(run && pf && ret_until);
        for (;;) {
                if (run->watching && !watch_check(&run->c, run->rs, &run->w, &run->p, ret_until)) {
                        watch_fds(&run->c, &run->w, &run->p, pf);
                        return false;
                }
                run->watching = false;
                if (!rerun_after_worker_death(run))
                        return true;
        }
}

void engine_run_watch_events(EngineRun *run, const struct pollfd *pf) {
        assert(run);
        if (run->watching)
                watch_handle(&run->c, run->rs, &run->w, &run->p, pf);
}

RunResult *engine_run_end(EngineRun *run) {
        assert(run && !run->watching);
        RunCtx *c = &run->c;
        if (run->in_run)
                phase_run_end(run);
        if (run->ran)
                output_dir_finish(c);
        result_check(c);
        c->res->t_total = now_monotonic() - c->t_start;
        finish_log_error(c);
        record_finish(c);
        /* An ask that came too late to act on ends with the run. */
        if (c->e->record_owner && !c->spec->no_record)
                engine_cancel_request_clear(c->e, c->res->id);
        hand_back(run);
        /* Its worker (or instance) is back in the pool: the pool keeps the
         * environment held from here while the worker lives. */
        engine_env_unuse(c->e, c->env_key);
        free(c->env_key);
        emit_phase(c, "done");
        active_unregister(c);
        c->log_fd = fd_close(c->log_fd);
        free(c->rec.log_path);
        free(c->limits_json);
        json_decref(run->reqs);
        json_decref(c->args);
        json_decref(c->kwargs);
        strv_free(c->sys_path);
        c->res->lock_json = TAKE_PTR(c->lock_json);
        json_decref(c->memo_reply);
        json_decref(c->compiled);
        strv_free(c->data_binds);
        strv_free(c->data_seen);
        RunResult *res = c->res;
        free(run);
        return res;
}

int engine_run(Engine *e, const RunSpec *spec, RunEventFn fn, void *userdata, RunResult **ret_result) {
        EngineRun *run = engine_run_begin(e, spec, fn, userdata);
        (void) engine_run_wait(run, UINT64_MAX);
        *ret_result = engine_run_end(run);
        return 0;
}
