/* Engine set-up and the small shared pieces: statuses, results, logs. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "config.h"

#include "engine-internal.h"

static const char *const status_names[_RUN_STATUS_MAX + 1] = {
        [RUN_QUEUED] = "queued", [RUN_RUNNING] = "running",     [RUN_SUCCEEDED] = "succeeded",
        [RUN_FAILED] = "failed", [RUN_INVALID] = "invalid",     [RUN_DEPS_FAILED] = "deps_failed",
        [RUN_KILLED] = "killed", [RUN_CANCELLED] = "cancelled", [RUN_ERROR] = "error",
        [RUN_LOST] = "lost",
};

const char *const *run_status_table(void) {
        return status_names;
}

const char *run_status_to_string(RunStatus s) {
        return s < _RUN_STATUS_MAX ? status_names[s] : "unknown";
}

RunStatus run_status_from_string(const char *s) {
        for (int i = 0; i < _RUN_STATUS_MAX; i++)
                if (s && streq(s, status_names[i]))
                        return (RunStatus) i;
        return RUN_ERROR;
}

bool run_status_is_final(RunStatus s) {
        return s != RUN_QUEUED && s != RUN_RUNNING;
}

RunResult *run_result_free(RunResult *r) {
        if (!r)
                return NULL;
        free(r->id);
        free(r->function);
        free(r->params_json);
        free(r->signature);
        free(r->doc);
        free(r->value_json);
        free(r->value_repr);
        free(r->error_type);
        free(r->error_message);
        free(r->traceback);
        free(r->warnings);
        free(r->outputs_json);
        free(r->lock_json);
        free(r->timings_json);
        free(r);
        return NULL;
}

json_t *run_result_validation_json(const RunResult *res) {
        bool ok = res->status == RUN_SUCCEEDED || res->exit_code == 0;
        json_t *error = ok ? json_null()
                           : json_pack("{s:s?, s:s?, s:s?}", "type", res->error_type, "message", res->error_message,
                                       "traceback", res->traceback);
        json_t *j = json_pack("{s:b, s:i, s:s, s:s?, s:o, s:s?, s:s?, s:o}", "valid", ok, "exit_code", res->exit_code,
                              "status", run_status_to_string(res->status), "function", res->function, "parameters",
                              json_parse_or_string(res->params_json), "signature", res->signature, "doc", res->doc,
                              "error", error ?: json_null());
        /* The parser's warnings: the caller's to see (the CLI prints them
         * as an embedded validation does), not a daemon's log. */
        if (j && res->warnings)
                json_object_set_new(j, "warnings", json_string(res->warnings));
        return j;
}

static void limits_fill(RunLimits *l, const RunLimits *from) {
        *l = from ? *from : (RunLimits) {};
        if (!l->timeout_ms)
                l->timeout_ms = RUN_DEFAULT_TIMEOUT_MS;
        if (!l->memory_bytes)
                l->memory_bytes = RUN_DEFAULT_MEMORY_BYTES;
        if (!l->max_procs)
                l->max_procs = RUN_DEFAULT_MAX_PROCS;
        if (!l->max_output_bytes)
                l->max_output_bytes = RUN_DEFAULT_MAX_OUTPUT_BYTES;
}

static int find_worker(const char *configured, char **ret) {
        if (configured) {
                *ret = xstrdup(configured);
                return 0;
        }
        const char *env = getenv("PYSPRINTER_WORKER");
        if (env && *env) {
                *ret = xstrdup(env);
                return 0;
        }
        _cleanup_free_ char *dir = NULL;
        if (exe_dir(&dir) >= 0) {
                /* Installed side by side, or the build tree's layout. */
                const char *candidates[] = { "pysprinter-worker", "../worker/pysprinter-worker",
                                             "../libexec/pysprinter-worker" };
                for (size_t i = 0; i < ELEMENTSOF(candidates); i++) {
                        _cleanup_free_ char *p = path_join(dir, candidates[i]);
                        if (access(p, X_OK) == 0) {
                                *ret = TAKE_PTR(p);
                                return 0;
                        }
                }
        }
        _cleanup_free_ char *p = path_join(PYSPRINTER_LIBEXECDIR, "pysprinter-worker");
        if (access(p, X_OK) == 0) {
                *ret = TAKE_PTR(p);
                return 0;
        }
        return -ENOENT;
}

static void *prewarm_main(void *userdata) {
        Engine *e = userdata;
        (void) pthread_setname_np(pthread_self(), "prewarm");
        PoolWorker *pw = NULL;
        bool cold;
        _cleanup_free_ char *err = NULL;
        /* The validator: every run's first step, whatever its env
         * (validate_in_worker()). The base worker of runs without an env
         * starts at its first run, as every env's does. */
        RunLimits limits = e->defaults;
        limits.network = false;
        /* The blank worker a cold env adopts (engine-pool.c) boots beside
         * the validator (two CPUs' worth of start-up at once); the daemon
         * listens once both are up (engine_prewarm_wait()). */
        struct Worker *blank = pool_blank_start(e);
        if (pool_acquire_cancellable(e, e->prewarm_mode, &limits, NULL, NULL,
                                     e->validator_apart ? POOL_VALIDATOR : POOL_RUNS, e->prewarm_cancel_fd, &pw, &cold,
                                     &err) >= 0)
                pool_release(e, pw, false);
        pool_blank_publish(e, blank, true);
        return NULL;
}

bool engine_prewarm_wait(Engine *e, usec_t timeout) {
        if (!e || !e->prewarm_started)
                return true;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t) ts.tv_nsec + (timeout % USEC_PER_SEC) * 1000;
        ts.tv_sec += (time_t) (timeout / USEC_PER_SEC + ns / 1000000000);
        ts.tv_nsec = (long) (ns % 1000000000);
        if (pthread_timedjoin_np(e->prewarm_thread, NULL, &ts) != 0)
                return false; /* still booting: engine_free() joins it */
        e->prewarm_started = false;
        return true;
}

/* Every second on the janitor thread: workers that died while idle are
 * reaped, idle timeouts and instance TTLs applied. */
static void out_dir_sweep(const char *out_dir);

static void engine_tick(Engine *e, void *unused) {
        pool_reap(e);
        engine_pool_sweep(e);
        /* After the sweep: a worker it stopped keeps no env held. */
        engine_env_release_idle(e);
        /* What a runner killed with SIGKILL left (run and spare cgroups,
         * output dirs) is removed at start; its processes may take longer
         * than that sweep waits to die (a loaded machine), so look again
         * in the first seconds and then every 10 s. Janitor thread only. */
        static unsigned ticks;
        ticks++;
        if (ticks <= 3 || ticks % 10 == 0) {
                (void) engine_sandbox_sweep();
                out_dir_sweep(e->out_dir);
        }
}

/* Removes the entries of $DATA/outputs ("<pid>-<start>-n<pidns>-…",
 * Engine.out_owner) whose process is gone: it was killed before it could
 * remove them. A pid of another pid namespace (a CLI under `unshare --pid`
 * or in a container, on a data dir a daemon outside uses) says nothing
 * here: those entries stay. Names without the namespace, written before
 * it was, are judged by pid and start time alone. */
static void out_dir_sweep(const char *out_dir) {
        DIR *d = opendir(out_dir);
        if (!d)
                return;
        unsigned long long own_ns = pid_namespace_id();
        struct dirent *de;
        while ((de = readdir(d))) {
                int pid = 0;
                unsigned long long start = 0, ns = 0;
                int n = sscanf(de->d_name, "%d-%llu-n%llu-", &pid, &start, &ns);
                if (n < 2 || pid <= 0 || (n == 3 && ns != own_ns))
                        continue;
                if (pid_alive_since((pid_t) pid, start))
                        continue;
                _cleanup_free_ char *p = path_join(out_dir, de->d_name);
                (void) rm_rf(p);
        }
        closedir(d);
}

void engine_set_maxima(Engine *e, const RunLimits *maxima) {
        pthread_mutex_lock(&e->lock);
        e->maxima = *maxima;
        pthread_mutex_unlock(&e->lock);
}

void engine_set_peers(Engine *e, const PkgPeers *peers) {
        assert(e);
        e->peers = peers;
}

/* The run database in the data dir. */
#define ENGINE_DATABASE "pysprinter.db"

bool engine_home_has_records(const char *data_dir) {
        assert(data_dir);
        _cleanup_free_ char *db = path_join(data_dir, ENGINE_DATABASE);
        return access(db, F_OK) == 0;
}

int engine_new(const EngineConfig *cfg, Engine **ret_engine, char **ret_error) {
        EngineConfig none = {};
        if (!cfg)
                cfg = &none;
        Engine *e = xcalloc(1, sizeof(Engine));
        e->home_lock = -EBADF;
        e->cancel_inotify_fd = e->cancel_stop_fd = e->prewarm_cancel_fd = -EBADF;
        pthread_mutex_init(&e->lock, NULL);
        e->data_dir = cfg->data_dir ? xstrdup(cfg->data_dir) : data_dir_default();
        e->store_dir = path_join(e->data_dir, "store");
        e->logs_dir = path_join(e->data_dir, "logs");
        e->out_dir = path_join(e->data_dir, "outputs");
        uint64_t st = 0;
        (void) pid_start_time(getpid(), &st);
        e->out_owner = xasprintf("%d-%llu-n%llu", (int) getpid(), (unsigned long long) st, pid_namespace_id());
        e->max_out_bytes = cfg->max_out_bytes;
        const char *mo = getenv("PYSPRINTER_MAX_OUT_BYTES");
        uint64_t v;
        /* Bytes when all digits (the name says so), else a size ("1G", "500MB"). */
        if (!e->max_out_bytes && mo && *mo) {
                _cleanup_free_ char *text = mo[strspn(mo, "0123456789")] ? xstrdup(mo) : xasprintf("%sB", mo);
                if (parse_size(text, &v) >= 0 && v > 0)
                        e->max_out_bytes = v;
        }
        if (!e->max_out_bytes)
                e->max_out_bytes = RUN_DEFAULT_MAX_OUT_BYTES;
        e->max_out_files = cfg->max_out_files;
        const char *mf = getenv("PYSPRINTER_MAX_OUT_FILES");
        if (!e->max_out_files && mf && *mf && parse_uint64(mf, &v) >= 0 && v > 0)
                e->max_out_files = v;
        if (!e->max_out_files)
                e->max_out_files = RUN_DEFAULT_MAX_OUT_FILES;
        limits_fill(&e->defaults, &cfg->defaults);
        e->maxima = cfg->maxima;
        e->index_url = cfg->index_url ? xstrdup(cfg->index_url) : NULL;
        for (char **p = cfg->extra_index_urls; p && *p; p++)
                e->extra_index_urls = strv_append(e->extra_index_urls, *p);
        for (char **p = cfg->find_links; p && *p; p++)
                e->find_links = strv_append(e->find_links, *p);
        for (char **p = cfg->allow_packages; p && *p; p++) {
                _cleanup_free_ char *n = pkg_name_normalize(*p);
                e->allow_packages = strv_append(e->allow_packages, n);
        }
        for (char **p = cfg->deny_packages; p && *p; p++) {
                _cleanup_free_ char *n = pkg_name_normalize(*p);
                e->deny_packages = strv_append(e->deny_packages, n);
        }

        pthread_mutex_init(&e->pool.lock, NULL);
        pthread_cond_init(&e->pool.changed, NULL);
        e->pool.spares = cfg->no_spares ? 0 : (cfg->spares ? cfg->spares : 2);
        e->pool.settle_on_demand = cfg->short_lived;
        e->pool.memory_budget = cfg->pool_memory_budget ? cfg->pool_memory_budget : (2048ULL << 20);
        e->pool.idle_timeout_usec = (cfg->worker_idle_timeout_ms ? cfg->worker_idle_timeout_ms : 10 * 60 * 1000) *
                                    USEC_PER_MSEC;
        e->pool.instance_ttl_usec = (cfg->instance_ttl_ms ? cfg->instance_ttl_ms : 10 * 60 * 1000) * USEC_PER_MSEC;
        /* Validation replies hold the marshalled code (up to ~350 KB
         * each): bounded by bytes too (docs/api.md, pool.validation_cache_mb). */
        e->vcache = vcache_new(1024, cfg->validation_cache_bytes ? cfg->validation_cache_bytes
                                                                 : ENGINE_VALIDATION_CACHE_BYTES_DEFAULT);
        /* Pinned environments: a lock's text, a few KB each. */
        e->envcache = vcache_new(1024, 64ULL << 20);
        e->repair_stamp = pkg_store_repair_stamp(e->data_dir);
        pthread_mutex_init(&e->holds_lock, NULL);
        e->env_idle_usec = (cfg->env_idle_timeout_ms ? cfg->env_idle_timeout_ms : ENGINE_ENV_IDLE_MS_DEFAULT) *
                           USEC_PER_MSEC;
        e->readycache = vcache_new(1024, 4ULL << 20);
        e->janitor_tick = engine_tick;
        pthread_mutex_init(&e->janitor_lock, NULL);
        pthread_mutex_init(&e->out_spare_lock, NULL);
        e->out_fresh_flags = -1;
        e->out_fresh_size = -1;
        pthread_cond_init(&e->janitor_wake, NULL);

        int r = find_worker(cfg->worker_path, &e->worker_path);
        if (r < 0) {
                *ret_error = xstrdup("cannot find pysprinter-worker (set PYSPRINTER_WORKER or install it beside pysprinter)");
                engine_free(e);
                return r;
        }
        /* Built and installed with it (src/worker/meson.build). */
        _cleanup_free_ char *launcher = xasprintf("%s-sandbox", e->worker_path);
        if (access(launcher, X_OK) == 0)
                e->launcher_path = TAKE_PTR(launcher);
        const char *dirs[] = { e->data_dir, e->store_dir, e->logs_dir, e->out_dir };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                /* outputs: searchable by the sandboxes' uids (sandbox.h
                 * "uids"), whose run dirs below are their own and 0700. */
                r = mkdir_p(dirs[i], dirs[i] == e->out_dir ? 0711 : 0700);
                if (r >= 0 && dirs[i] == e->out_dir)
                        (void) chmod(dirs[i], 0711);
                if (r < 0) {
                        *ret_error = xasprintf("cannot create %s: %s", dirs[i], strerror(-r));
                        engine_free(e);
                        return r;
                }
        }
        /* Held for the engine's life (store_home_lock): a restore never
         * replaces the database under this process's records. */
        e->home_lock = store_home_lock(e->data_dir, false);
        if (e->home_lock < 0) {
                r = e->home_lock;
                *ret_error = store_home_lock_message(e->data_dir, r);
                engine_free(e);
                return r;
        }
        /* First (no pool code touches the store): the worker's start,
         * tens of ms, overlaps the store's open and the sweeps below. */
        e->validator_apart = cfg->validator_apart;
        if (cfg->prewarm) {
                e->prewarm_mode = cfg->prewarm_mode;
                const char *b = getenv("PYSPRINTER_BLANK_WORKER");
                e->pool.blank_enabled = cfg->prewarm_mode == SANDBOX_MODE_FULL && !cfg->prewarm_no_blank &&
                                        !(b && streq(b, "0"));
                e->prewarm_cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                e->prewarm_started = pthread_create(&e->prewarm_thread, NULL, prewarm_main, e) == 0;
        }
        _cleanup_free_ char *db = path_join(e->data_dir, ENGINE_DATABASE);
        r = cfg->short_lived ? store_open_short_lived(db, &e->store) : store_open(db, &e->store);
        if (r < 0) {
                *ret_error = store_open_message(db, r);
                engine_free(e);
                return r;
        }
        e->record_owner = cfg->record_owner;
        if (cfg->record_owner) {
                (void) store_runs_mark_orphaned(e->store, "the process running it is gone");
        }
        /* A runner killed with SIGKILL leaves its runs' cgroups behind. */
        (void) engine_sandbox_sweep();
        /* … and its output dirs. */
        out_dir_sweep(e->out_dir);
        *ret_engine = e;
        return 0;
}

/* The watch of $DATA/cancel (engine-run.c), if a run started it. */
static void cancel_watch_stop(Engine *e) {
        if (e->cancel_thread_running) {
                (void) eventfd_write(e->cancel_stop_fd, 1);
                pthread_join(e->cancel_thread, NULL);
                e->cancel_thread_running = false;
        }
        e->cancel_inotify_fd = fd_close(e->cancel_inotify_fd);
        e->cancel_stop_fd = fd_close(e->cancel_stop_fd);
}

Engine *engine_free(Engine *e) {
        if (!e)
                return NULL;
        if (e->prewarm_started) {
                (void) eventfd_write(e->prewarm_cancel_fd, 1);
                pthread_join(e->prewarm_thread, NULL);
        }
        e->prewarm_cancel_fd = fd_close(e->prewarm_cancel_fd);
        cancel_watch_stop(e);
        while (e->n_spare_cancel_fds > 0)
                fd_close(e->spare_cancel_fds[--e->n_spare_cancel_fds]);
        engine_janitor_stop(e);
        instances_shutdown(e);
        /* Every run is over: the workers exit (a few ms of the kernel's
         * teardown of their namespaces) while the store closes (its last
         * commit and checkpoint), which is all a one-shot CLI waits for
         * after printing. */
        pool_shutdown_begin(e);
        e->store = store_close(e->store);
        pool_shutdown(e);
        vcache_free(e->vcache);
        vcache_free(e->envcache);
        engine_env_holds_free(e);
        pthread_mutex_destroy(&e->holds_lock);
        vcache_free(e->readycache);
        engine_out_spares_free(e);
        engine_sandbox_cgroups_free(e);
        pthread_mutex_destroy(&e->out_spare_lock);
        pthread_mutex_destroy(&e->janitor_lock);
        pthread_cond_destroy(&e->janitor_wake);
        pthread_mutex_destroy(&e->pool.lock);
        pthread_cond_destroy(&e->pool.changed);
        e->home_lock = fd_close(e->home_lock);
        free(e->data_dir);
        free(e->out_dir);
        free(e->out_owner);
        free(e->worker_path);
        free(e->launcher_path);
        free(e->store_dir);
        free(e->logs_dir);
        free(e->index_url);
        strv_free(e->extra_index_urls);
        strv_free(e->find_links);
        strv_free(e->allow_packages);
        strv_free(e->deny_packages);
        pthread_mutex_destroy(&e->lock);
        free(e);
        return NULL;
}

const char *engine_data_dir(const Engine *e) {
        return e->data_dir;
}

Store *engine_store(Engine *e) {
        return e->store;
}

int engine_log_replay(const char *path, RunEventFn fn, void *userdata) {
        return engine_log_replay_from(path, 0, fn, userdata, NULL);
}

int engine_log_replay_from(const char *path, uint64_t offset, RunEventFn fn, void *userdata, uint64_t *ret_offset) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        if (offset && fseeko(f, (off_t) offset, SEEK_SET) < 0)
                return -errno;
        uint64_t whole = offset; /* the end of the last whole frame */
        char header[64];
        Buf data;
        buf_init(&data, RUN_DEFAULT_MAX_OUTPUT_BYTES * 16);
        int r = 0;
        while (fgets(header, sizeof(header), f)) {
                int stream;
                unsigned long long ts, len;
                if (sscanf(header, "%d %llu %llu", &stream, &ts, &len) != 3 || len > (64ULL << 20)) {
                        r = -EBADMSG;
                        break;
                }
                buf_reset(&data);
                char chunk[65536];
                unsigned long long left = len;
                while (left > 0) {
                        size_t k = fread(chunk, 1, MIN(left, sizeof(chunk)), f);
                        if (k == 0)
                                break;
                        buf_append(&data, chunk, k);
                        left -= k;
                }
                if (left > 0)
                        break; /* a log cut short by a crash: replay what is whole */
                if (fgetc(f) == EOF)
                        break; /* the frame's trailing newline: not written yet */
                whole = (uint64_t) ftello(f);
                RunEvent ev = { .type = RUN_EVENT_OUTPUT, .stream = stream, .data = data.data ? data.data : "",
                                .len = data.len, .timestamp = ts };
                fn(&ev, userdata);
        }
        /* A read that failed is not the log's end (a directory in its
         * place reads EISDIR): the caller says the log cannot be read
         * rather than show it empty. */
        if (r == 0 && ferror(f))
                r = errno > 0 ? -errno : -EIO;
        buf_free(&data);
        if (ret_offset)
                *ret_offset = whole;
        return r;
}
