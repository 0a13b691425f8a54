/* The embedded backend: runs in this process's engine, records in
 * $PYSPRINTER_HOME. It answers with the API's objects (docs/api.md) so the
 * verbs and the renderer cannot tell it from a daemon. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "shared.h"
#include "cli-backend.h"
#include "data.h"
#include "pkg.h"
#include "store.h"

/* Index settings: the flags, else the environment (the package manager
 * reads PYSPRINTER_INDEX_URL and pip's variables), else the config file. */
static void index_from_config(const RunArgs *a, char **ret_index, char ***ret_extra, char ***ret_links) {
        *ret_index = NULL;
        *ret_extra = *ret_links = NULL;
        if ((!a || !a->index_url) && !getenv("PYSPRINTER_INDEX_URL") && !getenv("PIP_INDEX_URL"))
                *ret_index = cli_config_value("index_url");
        if (!getenv("PIP_EXTRA_INDEX_URL")) {
                _cleanup_free_ char *v = cli_config_value("extra_index_url");
                if (v && *v)
                        *ret_extra = strv_append(NULL, v);
        }
        if ((!a || !a->find_links) && !getenv("PIP_FIND_LINKS")) {
                _cleanup_free_ char *v = cli_config_value("find_links");
                if (v && *v)
                        *ret_links = strv_append(NULL, v);
        }
}

int cli_engine_open(const RunArgs *a, bool writes, Engine **ret) {
        _cleanup_free_ char *cfg_index = NULL;
        _cleanup_strv_free_ char **cfg_extra = NULL, **cfg_links = NULL;
        index_from_config(a, &cfg_index, &cfg_extra, &cfg_links);
        EngineConfig cfg = {
                /* One run per CLI process: a spare child would be wasted. */
                .no_spares = true,
                /* A few writes, then exit: no WAL allocated ahead. */
                .short_lived = true,
                /* A run whose CLI dies (terminal closed, kill -9) is marked
                 * lost by the next CLI instead of staying running. */
                .record_owner = true,
                /* Its worker boots while the store opens and the run is
                 * recorded (~10 ms here). A blank worker boots beside it
                 * only for a file with requirements, whose env's worker
                 * would otherwise start after validation: one run, and
                 * each process a CPU's worth of start-up. */
                .prewarm = a && a->worker_now,
                .prewarm_no_blank = !(a && a->worker_env_likely),
                .prewarm_mode = a ? a->sandbox : SANDBOX_MODE_FULL,
                .index_url = a && a->index_url ? a->index_url : cfg_index,
                .extra_index_urls = cfg_extra,
                .find_links = a && a->find_links ? a->find_links : cfg_links,
        };
        _cleanup_free_ char *err = NULL;
        int r = engine_new(&cfg, ret, &err);
        if (r < 0) {
                cli_error("%s", err ? err : strerror(-r));
                /* A restore of the home (store_home_lock), or a daemon of
                 * an older release serving it: the backend is unavailable
                 * for a while, as an unreachable server is. */
                return r == -EWOULDBLOCK || r == -EBUSY ? EXIT_SERVER : EXIT_INTERNAL;
        }
        /* A home on a read-only file system is opened for the verbs that
         * read it; a run there would go unrecorded. */
        if (writes && store_read_only(engine_store(*ret))) {
                cli_error("%s is on a read-only file system: nothing can be run or recorded there (ps, show and logs "
                          "still read it); give PYSPRINTER_HOME a writable directory",
                          engine_data_dir(*ret));
                *ret = engine_free(*ret);
                return EXIT_INTERNAL;
        }
        return 0;
}

static json_t *error_json(const char *type, const char *message, const char *traceback) {
        if (!type && !message)
                return json_null();
        return json_pack("{s:s?, s:s?, s:s?}", "type", type, "message", message, "traceback", traceback);
}

json_t *cli_run_record_json(const RunRecord *r) {
        assert(r);
        _cleanup_free_ char *text = run_record_to_json(r, NULL);
        /* Its result held (shared.h), as the daemon's run object holds it:
         * `show` and `ps --json` of a large result print its text. */
        json_t *j = text ? json_loads_held(text, strlen(text), "result") : NULL;
        return j ?: json_pack("{s:s, s:s}", "id", r->id, "status", r->status ?: "queued");
}

/* The outcome fields of the run object, from a finished engine run. Its
 * value's text is taken (res->value_json is NULL after): a large result is
 * held once as text and once as the value, not twice as text. */
static json_t *result_json(RunResult *res, bool hold) {
        /* Held (RunRequest.hold_result): its text, not its nodes (the
         * engine checked that jansson reads it). */
        json_t *held = hold && res->value_json ? json_held_new(res->value_json, strlen(res->value_json)) : NULL;
        if (held) {
                free(res->value_json);
                res->value_json = NULL;
        }
        json_t *j = json_pack("{s:s, s:s, s:i, s:s?, s:o, s:s?, s:o}", "id", res->id ?: "", "status",
                              run_status_to_string(res->status), "exit_code", res->exit_code, "function", res->function,
                              "result", held ?: json_parse_or_string_take(&res->value_json), "result_repr",
                              res->value_repr, "error",
                              error_json(res->error_type, res->error_message, res->traceback));
        if (j && res->outputs_json)
                json_object_set_new(j, "outputs", json_parse_or_string(res->outputs_json));
        /* Text jansson refuses (not UTF-8) must not lose the outcome. */
        return j ?: json_pack("{s:s, s:s, s:i, s:{s:s, s:s}}", "id", res->id ?: "", "status",
                              run_status_to_string(res->status), "exit_code", res->exit_code, "error", "type",
                              "Error", "message", "the run's outcome holds text that is not UTF-8");
}

/* Ctrl-C (or another of cli_interrupt_signals) during embedded work: a
 * run, each of map's calls, a DAG run. engine_cancel() takes the engine's mutex, which a signal handler must not
 * (the interrupted thread may hold it), so the handler only writes a byte
 * to a pipe and one watcher thread cancels everything registered. It waits
 * on the pipe alone: no wakeups while nothing is interrupted. The handler is
 * installed while anything is registered, once, however many of map's
 * threads run, so one thread's end never takes it from another's run. */
typedef struct Cancelable {
        /* 0 done; -ESRCH: nothing to cancel yet (a run the engine has not
         * taken): asked again shortly, until it is or it unregisters. */
        int (*cancel)(void *arg);
        void *arg;
        bool done;
        struct Cancelable *next;
} Cancelable;

static struct {
        pthread_mutex_t lock;
        pthread_once_t once;
        Cancelable *list;
        unsigned n;
        int pipe[2];
        struct sigaction old[CLI_INTERRUPT_SIGNALS];
} interrupts = { .lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT, .pipe = { -1, -1 } };

static void on_interrupt(int sig) {
        /* The engine reports the cancelled run; the verb exits 130 after. */
        int saved = errno;
        cli_interrupted = 1;
        if (interrupts.pipe[1] >= 0)
                (void) !write(interrupts.pipe[1], "x", 1);
        errno = saved;
}

/* After an interrupt: cancels what is registered and not yet cancelled;
 * true when one had nothing to cancel yet. */
static bool cancel_registered(void) {
        bool again = false;
        pthread_mutex_lock(&interrupts.lock);
        for (Cancelable *c = interrupts.list; c; c = c->next)
                if (!c->done) {
                        int r = c->cancel(c->arg);
                        c->done = r != -ESRCH;
                        again |= !c->done;
                }
        pthread_mutex_unlock(&interrupts.lock);
        return again;
}

static void *interrupt_watch_main(void *arg) {
        bool again = false;
        for (;;) {
                struct pollfd p = { .fd = interrupts.pipe[0], .events = POLLIN };
                int k = poll(&p, 1, again ? 20 : -1);
                char buf[64];
                if (k < 0 && errno != EINTR)
                        return NULL;
                if (k > 0 && read(interrupts.pipe[0], buf, sizeof buf) <= 0)
                        return NULL;
                if (cli_interrupted)
                        again = cancel_registered();
        }
}

/* The pipe and its watcher, for the process's life. */
static void interrupt_watch_init(void) {
        if (pipe2(interrupts.pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                return;
        pthread_t t;
        if (pthread_create(&t, NULL, interrupt_watch_main, NULL) != 0) {
                interrupts.pipe[0] = fd_close(interrupts.pipe[0]);
                interrupts.pipe[1] = fd_close(interrupts.pipe[1]);
                return;
        }
        pthread_detach(t);
}

static void interrupt_register(Cancelable *c) {
        pthread_once(&interrupts.once, interrupt_watch_init);
        pthread_mutex_lock(&interrupts.lock);
        if (interrupts.n++ == 0)
                cli_interrupt_catch(on_interrupt, interrupts.old);
        c->done = false;
        c->next = interrupts.list;
        interrupts.list = c;
        pthread_mutex_unlock(&interrupts.lock);
        /* Interrupted already (map's next call, a Ctrl-C before this): the
         * watcher cancels it as soon as the engine has it. */
        if (cli_interrupted && interrupts.pipe[1] >= 0)
                (void) !write(interrupts.pipe[1], "x", 1);
}

static void interrupt_unregister(Cancelable *c) {
        pthread_mutex_lock(&interrupts.lock);
        for (Cancelable **p = &interrupts.list; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        if (--interrupts.n == 0)
                cli_interrupt_restore(interrupts.old);
        pthread_mutex_unlock(&interrupts.lock);
}

typedef struct RunCancel {
        Engine *engine;
        const char *run_id;
} RunCancel;

static int cancel_run(void *arg) {
        RunCancel *rc = arg;
        return engine_cancel(rc->engine, rc->run_id);
}

/* --data NAME[@VERSION] -> read-only content dirs. */
static int catalog(Backend *b, DataCatalog **ret);
static int engine_run_get(Backend *b, const char *id, json_t **ret);
static int engine_run_cancel(Backend *b, const char *id, json_t **ret);
static int engine_run_logs(Backend *b, const char *id, bool follow, Renderer *rd);

static int resolve_data(Backend *b, char *const *refs, char ***ret_mounts, DataHolds **ret_holds) {
        DataCatalog *dc = NULL;
        _cleanup_free_ char *err = NULL, *warn = NULL;
        int r = catalog(b, &dc);
        if (r < 0)
                return r;
        r = data_resolve_mounts(dc, NULL, refs, ret_mounts, ret_holds, NULL, &warn, &err);
        if (warn)
                cli_warning("%s", warn);
        if (r < 0) {
                backend_set_error(b, "%s", err ?: strerror(-r));
                r = r == -ENOENT ? -EBADMSG : r;
        }
        return r;
}

static json_t *time_json(usec_t t);

/* ---- secrets (docs/secrets.md): tenant "local", the key beside the
 * database in $PYSPRINTER_HOME, created on first use ---- */

/* A key file that cannot be used (others may read it, it is not a key,
 * it cannot be made) is the installation's problem: -EKEYREJECTED, exit 7.
 * Its errno said otherwise: -EPERM was exit 6 ("server unreachable/auth",
 * with no server involved: a script that retries on 6 retried for ever),
 * -EBADMSG exit 3 (a validation error). */
static char *secret_key_path(Backend *b) {
        _cleanup_free_ char *named = path_join(engine_data_dir(b->engine), "secrets.key");
        return seal_key_path(named);
}

static int secret_key(Backend *b, uint8_t key[static SEAL_KEY_SIZE]) {
        _cleanup_free_ char *path = secret_key_path(b), *err = NULL;
        bool made = access(path, F_OK) < 0 && errno == ENOENT;
        int r = seal_key_load(path, key, &err);
        if (r < 0) {
                backend_set_error(b, "%s", err ?: strerror(-r));
                return -EKEYREJECTED;
        }
        /* A rotation by another process meanwhile is followed through the
         * files (docs/secrets.md "Rotating the key"). */
        store_secrets_key_file(engine_store(b->engine), path);
        /* A home restored without its key: the key just made opens none
         * of the secrets already there. Said as a daemon's start says it;
         * before, each run that named one found out. */
        size_t bad = 0, total = 0;
        if (made && store_secret_count_unopenable(engine_store(b->engine), key, &bad, &total) >= 0 && bad > 0)
                cli_warning("made a new secrets key %s, but %zu of the %zu secrets in this home were sealed with "
                            "another: runs that name them fail (\"cannot be opened\"); put back the key backed "
                            "up with this home (this new one opens only what is set from now on), or set each "
                            "again",
                            path, bad, total);
        return r;
}

/* --env KEY=VALUE entries, then each --secret NAME as NAME=value: a
 * secret wins over an --env of the same name. -ENOENT names the secret. */
static int run_env(Backend *b, const RunArgs *a, char ***ret) {
        if (!a->secrets) {
                char **env = NULL;
                for (char **e = a->env; e && *e; e++)
                        env = strv_append(env, *e);
                *ret = env;
                return 0;
        }
        uint8_t key[SEAL_KEY_SIZE];
        int r = secret_key(b, key);
        if (r < 0)
                return r;
        _cleanup_free_ char *why = NULL;
        r = store_secrets_env(engine_store(b->engine), key, "local", a->secrets, a->env, ret, &why);
        explicit_bzero(key, sizeof key);
        if (r < 0) {
                backend_set_error(b, "%s", why);
                /* Sealed with another key: refused before anything runs,
                 * exit 2, as a daemon's 404 (-EBADMSG was exit 3). */
                return r == -EBADMSG ? -ENOENT : r;
        }
        return 0;
}

static int engine_secret_list(Backend *b, json_t **ret) {
        SecretInfo *v = NULL;
        size_t n = 0;
        /* No engine (backend_open_listing()): a home without a database. */
        int r = b->engine ? store_secret_list(engine_store(b->engine), "local", &v, &n) : 0;
        if (r < 0) {
                backend_set_error(b, "cannot read the secrets: %s", strerror(-r));
                return r;
        }
        /* "opens": false for a secret the home's key does not open, as a
         * daemon marks it; the key is read, never made, here (ls writes
         * nothing): with none, nothing opens. */
        _cleanup_free_ char *path = n ? secret_key_path(b) : NULL, *err = NULL;
        uint8_t key[SEAL_KEY_SIZE];
        int k = n ? seal_key_read(path, key, &err) : -ENOENT;
        if (k >= 0)
                store_secrets_key_file(engine_store(b->engine), path);
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
                bool opens = k != -ENOENT;
                if (k >= 0) {
                        _cleanup_free_ char *val = NULL;
                        size_t len = 0;
                        opens = store_secret_get(engine_store(b->engine), key, "local", v[i].name, &val, &len) !=
                                -EBADMSG;
                        if (val)
                                explicit_bzero(val, len);
                }
                json_array_append_new(arr, json_pack("{s:s, s:o, s:o, s:b}", "name", v[i].name, "created_at",
                                                     time_json(v[i].created), "updated_at", time_json(v[i].updated),
                                                     "opens", opens));
        }
        explicit_bzero(key, sizeof key);
        secret_info_list_free(v, n);
        *ret = arr;
        return 0;
}

static int engine_secret_set(Backend *b, const char *name, const char *value, size_t len, json_t **ret) {
        uint8_t key[SEAL_KEY_SIZE];
        int r = secret_key(b, key);
        if (r < 0)
                return r;
        r = store_secret_set(engine_store(b->engine), key, "local", name, value, len);
        explicit_bzero(key, sizeof key);
        if (r == -EDQUOT || r == -ENOKEY) {
                /* A daemon's 409, in its words. */
                _cleanup_free_ char *why = store_secret_error(name, r);
                backend_set_error(b, "secret set: %s", why);
                return -EBUSY;
        }
        if (r < 0) {
                backend_set_error(b,
                                  r == -EINVAL  ? "'%s' is not a secret name ([A-Za-z_][A-Za-z0-9_]{0,127})"
                                  : r == -EFBIG ? "secret '%s' is larger than 64 KiB"
                                                : "cannot store secret '%s'",
                                  name);
                return r;
        }
        /* The API's answer (PUT /v1/secrets/{name}): the secret's object
         * with its dates, so `secret set --json` prints the same shape. */
        json_t *list = NULL, *v;
        size_t i;
        *ret = NULL;
        if (engine_secret_list(b, &list) >= 0)
                json_array_foreach(list, i, v)
                        if (!*ret && streq(json_get_string(v, "name") ?: "", name))
                                *ret = json_incref(v);
        json_decref(list);
        if (!*ret)
                *ret = json_pack("{s:s}", "name", name);
        return 0;
}

static int engine_secret_rm(Backend *b, const char *name) {
        /* No engine (backend_open_listing()): no secret of any name. */
        int r = b->engine ? store_secret_delete(engine_store(b->engine), "local", name) : -ENOENT;
        if (r == -ENOENT)
                backend_set_error(b, "no secret named '%s'", name);
        else if (r < 0)
                backend_set_error(b, "cannot remove secret '%s': %s", name, strerror(-r));
        return r;
}

static int engine_secret_rotate_key(Backend *b, size_t *ret_n) {
        _cleanup_free_ char *path = secret_key_path(b), *err = NULL;
        int r = store_secrets_rotate_key(engine_store(b->engine), path, ret_n, &err);
        if (r < 0) {
                backend_set_error(b, "secret rotate-key: %s", err ?: strerror(-r));
                /* Nothing to rotate, or a secret no key opens: the
                 * caller's to fix (exit 2); else the installation's. */
                return r == -ENOENT || r == -EKEYREJECTED || r == -EROFS ? -EINVAL
                       : r == -EOPNOTSUPP                                ? r
                                                                         : -EKEYREJECTED;
        }
        return 0;
}

/* A detached run's events: the first one comes once the run's record is
 * written (engine_run() writes it before anything else), which is when the
 * parent may print its id: `show ID` finds it from then on. */
typedef struct DetachedEvents {
        Backend *b;
        Renderer *rd;
        bool handed;
} DetachedEvents;

static void detach_hand_over(DetachedEvents *d, const char *run_id) {
        json_t *run = NULL;
        if (d->handed || engine_run_get(d->b, run_id, &run) < 0)
                return;
        d->handed = true;
        cli_detach_submitted(run, false);
        json_decref(run);
}

static void detached_event(const RunEvent *ev, void *userdata) {
        DetachedEvents *d = userdata;
        if (ev->run_id)
                detach_hand_over(d, ev->run_id);
        renderer_event(ev, d->rd);
}

/* The record of run id of q that this process writes before the engine
 * has the run (tenant "local", created and started now, run once), in
 * status; the strings are borrowed. */
static RunRecord local_record(const RunRequest *q, const char *id, const char *status) {
        const RunArgs *a = q->a;
        usec_t now = now_realtime();
        return (RunRecord){ .id = (char *) id,
                            .tenant = (char *) "local",
                            .filename = (char *) path_base_name(q->filename),
                            .function = a->function,
                            .args_json = a->args_json,
                            .kwargs_json = a->kwargs_json,
                            .status = (char *) status,
                            .exit_code = -1,
                            .created = now,
                            .started = now,
                            /* Started, or ended refused: attempt 1, as a
                             * server's run object counts it. */
                            .attempt = 1,
                            .max_attempts = 1 };
}

/* A detached run refused before the engine had it (a dataset, a secret)
 * is recorded as a server records it when its run starts: ended, status
 * error, exit 3, the message the caller would have read. Both paths then
 * give an id whose run says why (docs/cli.md "--detach"). So is a run
 * whose --idempotency-key claimed its record already (claimed): a
 * resubmission of the key shows why, as a server's does. And so is a
 * foreground run refused for its data (type "DataError"): a server takes
 * the run and finds the dataset missing when it starts, so `ps` and `show`
 * list that `error` run there; embedded they listed nothing. Returns r. */
static int detach_refused(Backend *b, const RunRequest *q, const char *id, bool claimed, const char *type, int r) {
        if (!q->detach && !claimed && !streq(type, "DataError"))
                return r;
        RunRecord rec = local_record(q, id, "error");
        rec.exit_code = EXIT_VALIDATION;
        rec.error_type = (char *) type;
        rec.error_message = b->error ?: (char *) strerror(-r);
        rec.finished = rec.created;
        Store *st = engine_store(b->engine);
        if ((claimed ? store_run_update(st, &rec) : store_run_insert(st, &rec)) >= 0 && q->detach) {
                DetachedEvents d = { .b = b };
                detach_hand_over(&d, id);
        }
        return r;
}

/* --idempotency-key embedded, as POST /v1/runs with Idempotency-Key
 * (docs/api.md "Idempotency"; tenant "local", the same 24 h): the run's
 * record, running, is inserted with the key unless a run of the key is
 * there already — one statement, so racing CLIs on one home start one run
 * (store_run_insert_idempotent()). 0: inserted, owned by this process
 * (the engine fills it in: RunSpec.record_exists); 1: *ret_first is the
 * key's run; negative errno with b->error. */
static int idempotent_claim(Backend *b, const RunRequest *q, const char *id, char **ret_first) {
        /* With the log's path from the start: a resubmission that finds
         * the record before the engine took the run follows that file. */
        _cleanup_free_ char *log = engine_run_log_path(b->engine, id);
        RunRecord rec = local_record(q, id, "running");
        rec.log_path = log;
        Store *s = engine_store(b->engine);
        int r = store_run_insert_idempotent(s, &rec, q->a->idempotency_key, IDEMPOTENCY_WINDOW_USEC, ret_first);
        if (r < 0) {
                backend_set_error(b, "cannot look the idempotency key up: %s", strerror(-r));
                return r;
        }
        uint64_t start;
        /* Owned at once: should this process die before the engine takes
         * the run, the run is found lost, not running for ever. */
        if (r == 0 && pid_start_time(getpid(), &start) >= 0)
                (void) store_run_set_owner(s, id, getpid(), start);
        return r;
}

/* A resubmission of a key: its first run, shown as a server shows it to
 * the same command (cli-backend-http.c: the submit's answer, then the
 * run's stream): detached, the run as it stands; else its output from the
 * start, followed to its end (a run another process is running), and its
 * record. Ctrl-C cancels it, as it would cancel the server's. */
static int idempotent_attach(Backend *b, const RunRequest *q, const char *id, Renderer *rd, json_t **ret) {
        int r;
        if (q->detach) {
                r = engine_run_get(b, id, ret);
                if (r >= 0)
                        cli_detach_submitted(*ret, true);
                return r;
        }
        r = engine_run_logs(b, id, true, rd);
        if (r == -EINTR) {
                cli_interrupt_handled = true;
                renderer_clear_status(rd);
                json_t *x = NULL;
                (void) engine_run_cancel(b, id, &x);
                json_decref(x);
        } else if (r < 0)
                return r;
        return engine_run_get(b, id, ret);
}

static int engine_run_op(Backend *b, const RunRequest *q, Renderer *rd, json_t **ret) {
        const RunArgs *a = q->a;
        if (q->deployed) {
                backend_set_error(b, "invoke needs a server: deployed functions live in pysprinterd "
                                     "(--server URL or PYSPRINTER_SERVER)");
                return -EOPNOTSUPP;
        }
        _cleanup_free_ char *id = id_new("r"), *args = NULL;
        _cleanup_strv_free_ char **mounts = NULL;
        /* A key is looked up before anything of the request is: a
         * resubmission answers with the first run, whatever it asks. */
        bool claimed = false;
        if (a->idempotency_key && !q->validate_only) {
                _cleanup_free_ char *first = NULL;
                int r = idempotent_claim(b, q, id, &first);
                if (r < 0)
                        return r;
                if (r > 0)
                        return idempotent_attach(b, q, first, rd, ret);
                claimed = true;
        }
        /* Held until the run ended (engine_run() returns then). */
        _cleanup_(data_holds_releasep) DataHolds *holds = NULL;
        if (a->data && !q->validate_only) {
                int r = resolve_data(b, a->data, &mounts, &holds);
                if (r < 0)
                        return detach_refused(b, q, id, claimed, "DataError", r);
        }
        char **env = NULL;
        if (!q->validate_only) {
                int r = run_env(b, a, &env);
                if (r < 0)
                        return detach_refused(b, q, id, claimed, "SecretError", r);
        }
        DataOutput out = { .name = a->output_data };
        if (a->output_data && !q->validate_only) {
                int r = catalog(b, &out.catalog);
                if (r < 0) {
                        store_env_free(env);
                        return detach_refused(b, q, id, claimed, "DataError", r);
                }
        }
        if (q->prev_result)
                args = xasprintf("[{\"value\": %s}]", q->prev_result);
        RunSpec spec = {
                .run_id = id,
                .data = mounts,
                .env = env,
                .source = q->source,
                .source_len = q->source_len,
                /* The name a daemon gets (cli-backend-http.c): tracebacks,
                 * __file__ and locations read the same on both paths and
                 * name no directory of the host (docs/sandbox.md). */
                .filename = path_base_name(q->filename),
                .function = a->function,
                .args_json = args ?: a->args_json,
                .kwargs_json = args ? NULL : a->kwargs_json,
                .limits = a->limits,
                .sandbox = a->sandbox,
                .validate_only = q->validate_only,
                .resolve_only = q->lock_only,
                .describe_only = q->describe_only,
                .skip_argument_check = q->lock_only || q->describe_only,
                .no_cache = a->no_cache,
                .no_record = q->validate_only,
                .record_exists = claimed,
                .store_output = out.catalog ? data_store_output : NULL,
                .store_output_userdata = &out,
        };
        RunCancel rc = { .engine = b->engine, .run_id = id };
        Cancelable watch = { .cancel = cancel_run, .arg = &rc };
        interrupt_register(&watch);
        RunResult *res = NULL;
        DetachedEvents detached = { .b = b, .rd = rd };
        int r = q->detach ? engine_run(b->engine, &spec, detached_event, &detached, &res)
                          : engine_run(b->engine, &spec, renderer_event, rd, &res);
        /* A run that ended without an event still has its record now. */
        if (q->detach && r >= 0)
                detach_hand_over(&detached, id);
        store_env_free(env);
        free(out.hash);
        interrupt_unregister(&watch);
        if (r < 0) {
                backend_set_error(b, "%s", strerror(-r));
                return r;
        }
        /* A validation answers what POST /v1/validate answers (its
         * warnings were printed as the engine's events). */
        *ret = q->validate_only ? run_result_validation_json(res) : NULL;
        json_object_del(*ret, "warnings");
        if (!*ret)
                *ret = result_json(res, q->hold_result);
        if (q->lock_only)
                json_object_set_new(*ret, "lock", pkg_lock_shown(res->lock_json));
        run_result_free(res);
        return 0;
}

static int store_error(Backend *b, int r, const char *id) {
        if (r == -ENOENT)
                backend_set_error(b, "no run '%s' (see `pysprinter ps`)", id);
        else if (r == -EEXIST) {
                backend_set_error(b, "'%s' matches several runs; give more of the id", id);
                r = -EINVAL;
        } else
                backend_set_error(b, "cannot read run '%s': %s", id, strerror(-r));
        return r;
}

/* A run in flight that a pysprinterd runs (no owning CLI process) while
 * no daemon serves the home: killed, or stopped, it left the run as it
 * was, and nothing moves it until a daemon starts there again (which runs
 * it anew, docs/api.md "Delivery"). */
static bool daemon_run_stranded(Backend *b, const char *id) {
        pid_t owner = 0, daemon = 0;
        return store_run_owner(engine_store(b->engine), id, &owner) >= 0 && owner == 0 &&
               !store_home_daemon(engine_data_dir(b->engine), &daemon, NULL);
}

static bool record_in_flight(const RunRecord *rec) {
        return rec->status && (streq(rec->status, "running") || streq(rec->status, "queued"));
}

/* `show`, `ps`: a daemon's runs left in flight by a daemon that is gone
 * look like runs going on; a line on stderr says why they do not move
 * (stdout stays the record, as a server would answer it). */
static void note_stranded(Backend *b, size_t n, const char *id, const char *status) {
        if (n == 0)
                return;
        if (n == 1 && id)
                cli_warning("run %s is a pysprinterd's, and no daemon serves %s now: it stays %s until one starts "
                            "there and runs it again",
                            id, engine_data_dir(b->engine), status);
        else
                cli_warning("%zu runs in flight here are a pysprinterd's, and no daemon serves %s now: they stay so "
                            "until one starts there and runs them again",
                            n, engine_data_dir(b->engine));
}

static int engine_run_get(Backend *b, const char *id, json_t **ret) {
        RunRecord *rec = NULL;
        /* No engine (backend_open_listing()): a home without a database
         * has no run of any id. */
        int r = b->engine ? store_run_get(engine_store(b->engine), NULL, id, &rec) : -ENOENT;
        if (r < 0)
                return store_error(b, r, id);
        if (record_in_flight(rec) && daemon_run_stranded(b, rec->id))
                note_stranded(b, 1, rec->id, rec->status);
        *ret = cli_run_record_json(rec);
        run_record_free(rec);
        return 0;
}

static int engine_run_list(Backend *b, long limit, const RunFilter *filter, const char *before, json_t **ret) {
        RunRecord **v = NULL;
        size_t n = 0;
        int r = 0;
        if (before) {
                /* The cursor is found as show finds a run (a fresh home
                 * has none). */
                _cleanup_(run_record_freep) RunRecord *cursor = NULL;
                r = b->engine ? store_run_get(engine_store(b->engine), NULL, before, &cursor) : -ENOENT;
                if (r < 0)
                        return store_error(b, r, before);
                r = store_run_list_before(engine_store(b->engine), 0, NULL, filter, cursor->id, (size_t) limit, &v, &n);
        } else if (b->engine)
                r = store_run_list(engine_store(b->engine), NULL, filter, (size_t) limit, &v, &n);
        if (r < 0) {
                backend_set_error(b, "cannot list runs: %s", strerror(-r));
                return r;
        }
        json_t *arr = json_array();
        size_t daemons = 0, stranded = 0;
        const RunRecord *first = NULL;
        pid_t pid = 0;
        for (size_t i = 0; i < n; i++) {
                /* As GET /v1/runs lists it: the same bytes on both paths. */
                RunRecord s;
                unsigned elided = run_record_elide(v[i], &s);
                json_t *j = cli_run_record_json(&s);
                run_json_mark_elided(j, elided);
                json_array_append_new(arr, j);
                if (record_in_flight(v[i]) && store_run_owner(engine_store(b->engine), v[i]->id, &pid) >= 0 && !pid) {
                        first = first ?: v[i];
                        daemons++;
                }
        }
        if (daemons > 0 && !store_home_daemon(engine_data_dir(b->engine), &pid, NULL))
                stranded = daemons;
        note_stranded(b, stranded, first ? first->id : NULL, first ? first->status : NULL);
        run_record_list_free(v, n);
        *ret = arr;
        return 0;
}

static bool run_in_flight(Backend *b, const char *id) {
        RunRecord *rec = NULL;
        bool live = store_run_get(engine_store(b->engine), NULL, id, &rec) >= 0 && record_in_flight(rec);
        run_record_free(rec);
        return live;
}

/* Run id has no owning CLI process: a pysprinterd on this home runs it
 * (or will again at its start, docs/api.md "Delivery"). Its engine watches
 * no cancel asks, which only a CLI's engine answers: the ask would wait
 * 10 s, stand for nothing, and the run go on. So the user is told whose
 * the run is and where to cancel it. */
static int daemon_run_refused(Backend *b, const char *id) {
        const char *home = engine_data_dir(b->engine);
        pid_t pid = 0;
        if (store_home_daemon(home, &pid, NULL))
                backend_set_error(b,
                                  "run %s is run by pysprinterd (pid %d), which serves %s: only it can stop it; "
                                  "cancel it through it: pysprinter --server URL cancel %s",
                                  id, (int) pid, home, id);
        else
                backend_set_error(b,
                                  "run %s is a pysprinterd's, and no daemon serves %s now: it runs again when one "
                                  "starts there; cancel it through that daemon then: pysprinter --server URL cancel %s",
                                  id, home, id);
        return -EOPNOTSUPP;
}

/* The run belongs to the CLI process that started it (its recorded
 * owner): only that process's engine can kill it, so it is asked to
 * (engine_cancel_request()), and the record is watched for the end, as
 * DELETE /v1/runs/{id} waits — 10 s, then the run as it stands (the ask
 * stands too). An owner found gone has its run marked lost meanwhile:
 * nobody is left to cancel it. */
static int engine_run_cancel(Backend *b, const char *id, json_t **ret) {
        RunRecord *rec = NULL;
        /* No engine (backend_open_listing()): no run of any id. */
        int r = b->engine ? store_run_get(engine_store(b->engine), NULL, id, &rec) : -ENOENT;
        if (r < 0)
                return store_error(b, r, id);
        Store *s = engine_store(b->engine);
        _cleanup_free_ char *full = xstrdup(rec->id);
        bool ended = run_status_is_final(run_status_from_string(rec->status));
        if (ended)
                backend_set_error(b, "run %s has already finished (%s)", rec->id, rec->status ?: "?");
        run_record_free(rec);
        if (ended)
                return -EBUSY;
        pid_t owner = 0;
        if (store_run_owner(s, full, &owner) >= 0 && owner == 0)
                return daemon_run_refused(b, full);
        r = engine_cancel_request(b->engine, full);
        if (r < 0) {
                backend_set_error(b, "cannot ask for run %s to be cancelled: %s", full, strerror(-r));
                return r;
        }
        usec_t until = now_monotonic() + 10 * USEC_PER_SEC;
        while (run_in_flight(b, full) && now_monotonic() < until) {
                usleep(50 * 1000);
                (void) store_runs_mark_orphaned(s, "the process running it is gone");
        }
        if (!run_in_flight(b, full))
                engine_cancel_request_clear(b->engine, full);
        return engine_run_get(b, full, ret);
}

/* Replays a run's log; follow: then tails it (whole frames only) until
 * the record ends — or its owner is found gone — or Ctrl-C. A daemon's
 * run whose daemon is gone ends the follow as a server gone does (exit
 * 6): it followed for ever before. Seen at two looks in a row: a CLI's
 * run is recorded a moment before its owner is. */
static int engine_run_logs(Backend *b, const char *id, bool follow, Renderer *rd) {
        RunRecord *rec = NULL;
        int r = b->engine ? store_run_get(engine_store(b->engine), NULL, id, &rec) : -ENOENT;
        if (r < 0)
                return store_error(b, r, id);
        uint64_t off = 0;
        unsigned stranded = 0;
        for (;;) {
                bool live = follow && !cli_interrupted && run_in_flight(b, rec->id);
                stranded = live && daemon_run_stranded(b, rec->id) ? stranded + 1 : 0;
                r = rec->log_path ? engine_log_replay_from(rec->log_path, off, renderer_event, rd, &off) : 0;
                if (r == -ENOENT)
                        r = 0;
                if (r < 0 || !live || stranded >= 2)
                        break;
                usleep(100 * 1000);
                (void) store_runs_mark_orphaned(engine_store(b->engine), "the process running it is gone");
        }
        if (r < 0) {
                backend_set_error(b, "cannot read the log of run %s: %s", rec->id, strerror(-r));
                r = -EUCLEAN; /* exit 7, internal (-EBADMSG reads as a validation's 3, -EIO as a server's 6) */
        } else if (follow && cli_interrupted)
                r = -EINTR; /* Ctrl-C while following: exit 130, as the server's stream ends */
        else if (stranded >= 2) {
                backend_set_error(b,
                                  "run %s is a pysprinterd's, and no daemon serves %s now: it runs again when one "
                                  "starts there; pysprinter logs -f %s then",
                                  rec->id, engine_data_dir(b->engine), rec->id);
                r = -ECONNREFUSED; /* exit 6, as a server gone while following */
        }
        run_record_free(rec);
        return r;
}

static int engine_unsupported(Backend *b) {
        backend_set_error(b, "this needs a server: deployed functions and warm workers live in pysprinterd "
                             "(--server URL or PYSPRINTER_SERVER)");
        return -EOPNOTSUPP;
}

static int engine_deploy(Backend *b, json_t *req, json_t **ret) {
        return engine_unsupported(b);
}

static int engine_stack(Backend *b, json_t *req, json_t **ret) {
        return engine_unsupported(b);
}

static int engine_function(Backend *b, const char *method, const char *name, long version, json_t **ret) {
        return engine_unsupported(b);
}

static int engine_alias(Backend *b, const char *method, const char *name, const char *alias, long version,
                        json_t **ret) {
        return engine_unsupported(b);
}

static int engine_schedule(Backend *b, const char *method, const char *path, json_t *body, json_t **ret) {
        backend_set_error(b, "schedules need a server: pysprinterd fires them (--server URL or PYSPRINTER_SERVER)");
        return -EOPNOTSUPP;
}

static int engine_function_runs(Backend *b, const char *name, long limit, json_t **ret_array) {
        return engine_unsupported(b);
}

static int engine_run_log_text(Backend *b, const char *id, Buf *ret) {
        return engine_unsupported(b);
}

static int engine_workers(Backend *b, json_t **ret) {
        return engine_unsupported(b);
}

/* This machine's package store, as a daemon answers an admin. */
static int engine_envs(Backend *b, json_t **ret) {
        /* The engine's home, or where it would be (a listing opens no
         * engine: nothing is created to say there is nothing). */
        _cleanup_free_ char *home = b->engine ? NULL : data_dir_default();
        const char *data = b->engine ? engine_data_dir(b->engine) : home;
        PkgEnvInfo *infos = NULL;
        size_t n = 0;
        _cleanup_free_ char *err = NULL;
        int r = pkg_env_list(data, &infos, &n, &err);
        if (r < 0) {
                backend_set_error(b, "%s", err ?: strerror(-r));
                return r;
        }
        json_t *envs = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(envs, pkg_env_info_json(&infos[i]));
        pkg_env_info_free_many(infos, n);
        *ret = json_pack("{s:s, s:o}", "data_dir", data, "envs", envs);
        return *ret ? 0 : -EILSEQ;
}

/* ---- DAG runs ------------------------------------------------------------ */

/* The catalog beside the engine's store, opened on first use. */
static int catalog(Backend *b, DataCatalog **ret) {
        if (!b->catalog) {
                _cleanup_free_ char *root = path_join(engine_data_dir(b->engine), "data"), *err = NULL;
                DataConfig cfg = { .root = root };
                data_config_from_env(&cfg, engine_data_dir(b->engine));
                int r = data_catalog_new(engine_store(b->engine), &cfg, &b->catalog, &err);
                if (r < 0) {
                        backend_set_error(b, "cannot open the data catalog: %s", err ?: strerror(-r));
                        return r;
                }
        }
        *ret = b->catalog;
        return 0;
}

/* The API's DAG object of a recorded DAG run. */
static int dag_object(Backend *b, const char *id, json_t **ret) {
        Store *s = b->engine ? engine_store(b->engine) : NULL;
        DagRunRecord *rec = NULL;
        /* No engine (backend_open_listing()): no DAG run of any id. */
        int r = s ? store_dag_get(s, NULL, id, &rec) : -ENOENT;
        if (r == -ENOENT)
                backend_set_error(b, "no DAG run '%s' (see `pysprinter dag ls`)", id);
        else if (r == -EEXIST)
                backend_set_error(b, "'%s' matches several DAG runs; give more of the id", id);
        else if (r < 0)
                backend_set_error(b, "cannot read DAG run '%s': %s", id, strerror(-r));
        if (r < 0)
                return r == -EEXIST ? -EINVAL : r;
        DagTaskRecord **t = NULL;
        size_t n = 0;
        (void) store_dag_tasks(s, rec->id, &t, &n);
        /* The object itself, not its text parsed back: a task's large
         * result is copied once here, not three times more. */
        *ret = dag_record_object(rec, t, n, true);
        dag_task_record_list_free(t, n);
        dag_run_record_free(rec);
        if (!*ret) {
                backend_set_error(b, "DAG run '%s' holds text that is not UTF-8", id);
                return -EIO;
        }
        return 0;
}

typedef struct DagFollow {
        Backend *b;
        DagViewFn view;
        void *userdata;
        bool detach, handed;
        usec_t drawn; /* when the view last got the DAG (monotonic) */
        bool dirty;   /* a change since */
} DagFollow;

/* How often at most the view gets the DAG run while tasks change: each
 * time costs O(tasks), and a wide fan-out changes thousands of times. */
#define DAG_VIEW_EVERY_USEC (100 * USEC_PER_MSEC)

/* The view sees what a daemon's client sees: the recorded DAG object. */
static void on_dag_event(const Dag *cd, const DagEvent *ev, void *userdata) {
        DagFollow *f = userdata;
        Dag *d = (Dag *) cd;
        json_t *obj = NULL;
        switch (ev->type) {
        case DAG_EVENT_VALIDATING:
                f->view(d, NULL, f->userdata);
                break;
        case DAG_EVENT_WARNING:
                cli_warning("%s", ev->message);
                break;
        default:
                if (!dag_id(d))
                        break;
                if (f->detach && !f->handed) {
                        /* Recorded: a detached DAG run's parent may tell its id. */
                        if (dag_object(f->b, dag_id(d), &obj) < 0)
                                break;
                        f->handed = true;
                        cli_detach_submitted(obj, false);
                        json_decref(obj);
                }
                /* A change seen within DAG_VIEW_EVERY_USEC of the last
                 * drawing waits for the next event (a tick, another
                 * change, the end): the view is built for what it sees
                 * differ, as a daemon's client polls. A tick (~5/s)
                 * always draws: a terminal's tree shows running times. */
                if (ev->type == DAG_EVENT_TASK && now_monotonic() < f->drawn + DAG_VIEW_EVERY_USEC) {
                        f->dirty = true;
                        break;
                }
                f->dirty = false;
                f->drawn = now_monotonic();
                /* The view draws states, never results: the Dag's own
                 * snapshot, not the store's object, which reads every
                 * task's result again at every event (a wide DAG run, or
                 * one of large results, spent minutes in it while the
                 * scheduler, waiting for this, started nothing). The
                 * whole object comes once, at the end. */
                _cleanup_free_ char *text = dag_progress_json(d);
                obj = text ? json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
                if (obj)
                        f->view(d, obj, f->userdata);
                json_decref(obj);
                break;
        }
}

/* Ctrl-C: a terminal's Ctrl-C reaches the tasks' workers too, so the
 * watcher cancels their runs at once (dag_cancel_running), not at the
 * scheduler's next tick, when a worker killed by the same SIGINT is
 * already recorded as having died. */
static int cancel_dag(void *arg) {
        dag_cancel_running(arg);
        return 0;
}

/* Resuming: the recorded pipeline, unless its owner still runs it. */
/* A DAG run a pysprinterd recorded: its folder is the daemon's
 * DATA/dags/<id> (a CLI's names the user's own directory), which the
 * daemon drives, cancels and resumes, under its tenant's grants. The CLI
 * must not: its record's pid is the daemon's, which `dag cancel` sent
 * SIGTERM (the whole daemon drained and stopped), and `dag resume` ran the
 * tenant's pipeline as the local user. Says so and returns -EOPNOTSUPP
 * (exit 2) for such a run, 0 for the CLI's own. */
static int dag_refuse_a_daemons(Backend *b, const DagRunRecord *rec, const char *verb) {
        const char *home = engine_data_dir(b->engine);
        _cleanup_free_ char *mine = path_join_many(home, "dags", rec->id, NULL);
        /* By the real paths too: the daemon may name its directory
         * otherwise (a --data-dir through a symlink, a trailing slash). */
        _cleanup_free_ char *real_mine = realpath(mine, NULL);
        _cleanup_free_ char *real_base = rec->base_dir ? realpath(rec->base_dir, NULL) : NULL;
        if (!rec->base_dir || (!streq(rec->base_dir, mine) && !(real_mine && real_base && streq(real_mine, real_base))))
                return 0;
        pid_t pid = 0;
        if (store_home_daemon(home, &pid, NULL))
                backend_set_error(b,
                                  "DAG run %s is a pysprinterd's (pid %d serves %s): only it can %s it; through it: "
                                  "pysprinter --server URL dag %s %s",
                                  rec->id, (int) pid, home, verb, verb, rec->id);
        else
                backend_set_error(b,
                                  "DAG run %s is a pysprinterd's, and no daemon serves %s now: %s; through it then: "
                                  "pysprinter --server URL dag %s %s",
                                  rec->id, home,
                                  streq(verb, "resume") ? "the next one to start there resumes it"
                                                        : "the next one to start there drives it",
                                  verb, rec->id);
        return -EOPNOTSUPP;
}

/* A resume runs the pipeline as recorded (its task files are read
 * again): when the pipeline file was edited since, say so, or the fix the
 * user made to it is silently not what runs. */
static void dag_resume_note_edits(const DagRunRecord *rec) {
        if (!rec->file || !rec->base_dir || !rec->spec_text)
                return;
        _cleanup_free_ char *path = rec->file[0] == '/' ? xstrdup(rec->file)
                                                        : path_join(rec->base_dir, path_base_name(rec->file));
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (read_file(path, DAG_MAX_FILE_BYTES, &text, &len) < 0)
                return;
        if (len == strlen(rec->spec_text) && memcmp(text, rec->spec_text, len) == 0)
                return;
        cli_warning("%s changed since DAG run %s began: a resume runs the pipeline as it was recorded "
                    "(its task files as they are now); `pysprinter dag run %s` runs the edited one",
                    path, rec->id, rec->file);
}

static int dag_resume_load(Backend *b, const char *id, DagOptions *o, Dag **ret, char **ret_id) {
        _cleanup_free_ char *err = NULL;
        DagRunRecord *rec = NULL;
        int r = dag_load(engine_store(b->engine), NULL, id, ret, &rec, &err);
        if (r < 0) {
                backend_set_error(b, "%s", err ?: strerror(-r));
                return r == -ENOENT ? -ENOENT : -EBADMSG;
        }
        r = dag_refuse_a_daemons(b, rec, "resume");
        if (r < 0) {
                dag_run_record_free(rec);
                *ret = dag_free(*ret);
                return r;
        }
        /* Its lock says whether a driver lives; the recorded pid only
         * names it (a dead driver's pid may be another process's now). */
        pid_t pid = rec->owner ? (pid_t) strtol(rec->owner, NULL, 10) : 0;
        if (rec->status && streq(rec->status, "running") && pid != getpid() && dag_driven(b->engine, rec->id)) {
                if (pid > 0)
                        backend_set_error(b, "DAG run %s is still being run by process %d", rec->id, (int) pid);
                else
                        backend_set_error(b, "DAG run %s is still being run by another process", rec->id);
                r = -EBUSY;
        }
        json_t *opts = rec->options_json ? json_loads(rec->options_json, 0, NULL) : NULL;
        const char *sb = json_string_value(json_object_get(opts, "sandbox"));
        if (sb && streq(sb, "none"))
                o->sandbox = SANDBOX_MODE_NONE;
        json_decref(opts);
        dag_options_restore(rec->options_json, o);
        if (r >= 0)
                dag_resume_note_edits(rec);
        *ret_id = xstrdup(rec->id);
        dag_run_record_free(rec);
        if (r < 0)
                *ret = dag_free(*ret);
        return r;
}

/* A task naming a secret this machine does not have is refused before
 * anything runs, as a daemon refuses it (404: exit 2, the same words). */
static int check_task_secrets(Backend *b, Dag *d, const uint8_t *key) {
        for (size_t i = 0; i < dag_n_tasks(d); i++) {
                DagTaskInfo ti;
                dag_task_info(d, i, &ti);
                char **env = NULL;
                _cleanup_free_ char *why = NULL;
                int r = store_secrets_env(engine_store(b->engine), key, "local", ti.secrets, NULL, &env, &why);
                store_env_free(env);
                if (r < 0) {
                        backend_set_error(b, "task '%s': %s", ti.name, why);
                        /* As run_env(): a daemon's 404, exit 2. */
                        return r == -EBADMSG ? -ENOENT : r;
                }
        }
        return 0;
}

static int engine_dag_run(Backend *b, const DagRequest *q, DagViewFn view, void *userdata, json_t **ret) {
        assert(!q->idempotency_key); /* refused by the verb: embedded DAG runs keep no keys */
        DataCatalog *dc = NULL;
        int r = catalog(b, &dc);
        if (r < 0)
                return r;
        uint8_t key[SEAL_KEY_SIZE];
        r = secret_key(b, key);
        if (r < 0)
                return r;
        DagOptions o = { .concurrency = q->concurrency, .no_cache = q->no_cache, .keep_going = q->keep_going,
                         .sandbox = q->sandbox, .secret_key = key };
        Dag *loaded = NULL;
        _cleanup_free_ char *resume = NULL, *err = NULL;
        if (q->resume_id) {
                r = dag_resume_load(b, q->resume_id, &o, &loaded, &resume);
                if (r < 0)
                        return r;
                o.resume_id = resume;
        }
        Dag *d = loaded ?: q->dag;
        assert(d);
        /* (A resumed run's finished tasks need theirs no more.) */
        r = q->resume_id ? 0 : check_task_secrets(b, d, key);
        if (r < 0) {
                explicit_bzero(key, sizeof key);
                dag_free(loaded);
                return r;
        }
        DagFollow f = { .b = b, .view = view, .userdata = userdata, .detach = q->detach };
        Cancelable watch = { .cancel = cancel_dag, .arg = d };
        interrupt_register(&watch);
        r = dag_run(d, b->engine, dc, &o, on_dag_event, &f, &err);
        interrupt_unregister(&watch);
        /* The results are read back from the store (dag_object()). */
        dag_release_results(d);
        if (r < 0) {
                backend_set_error(b, "%s", err ?: strerror(-r));
                r = r == -EINVAL || r == -ENOENT ? -EBADMSG : r;
        } else {
                r = dag_object(b, dag_id(d), ret);
                if (r >= 0 && q->detach && !f.handed)
                        cli_detach_submitted(*ret, false);
                if (r >= 0)
                        view(d, *ret, userdata);
        }
        dag_free(loaded);
        return r;
}

static int engine_dag_get(Backend *b, const char *id, json_t **ret) {
        return dag_object(b, id, ret);
}

/* An embedded DAG run's record shows the state it is stored in (no
 * "validating": a daemon's live view alone says it), so the store's
 * filter is the answer's. */
static int engine_dag_list(Backend *b, long limit, char *const *statuses, json_t **ret) {
        DagRunRecord **v = NULL;
        size_t n = 0;
        int r = b->engine ? store_dag_list(engine_store(b->engine), NULL, statuses, (size_t) limit, &v, &n) : 0;
        if (r < 0) {
                backend_set_error(b, "cannot list DAG runs: %s", strerror(-r));
                return r;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *text = dag_record_to_json(v[i], NULL, 0, false);
                json_t *j = text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL;
                if (j)
                        json_array_append_new(arr, j);
        }
        dag_run_record_list_free(v, n);
        *ret = arr;
        return 0;
}

/* Another CLI process drives the DAG run: ask it to stop (its Ctrl-C
 * handler cancels the run), and wait for the record to end. Whether a
 * driver lives is its lock (dag_cancel_abandoned()), never the recorded pid
 * alone, which may be another process's now: a run whose driver is gone
 * ends here, it and its unfinished tasks "cancelled". */
static int engine_dag_cancel(Backend *b, const char *id, json_t **ret) {
        DagRunRecord *rec = NULL;
        /* No engine (backend_open_listing()): "no DAG run" of any id. */
        int r = dag_object(b, id, ret);
        if (r < 0)
                return r;
        Store *s = engine_store(b->engine);
        json_decref(*ret);
        *ret = NULL;
        if (store_dag_get(s, NULL, id, &rec) < 0)
                return -EIO;
        _cleanup_free_ char *full = xstrdup(rec->id), *err = NULL;
        if (!rec->status || !streq(rec->status, "running")) {
                backend_set_error(b, "DAG run %s has already finished (%s)", rec->id, rec->status ?: "?");
                dag_run_record_free(rec);
                return -EBUSY;
        }
        r = dag_refuse_a_daemons(b, rec, "cancel");
        if (r < 0) {
                dag_run_record_free(rec);
                return r;
        }
        pid_t pid = rec->owner ? (pid_t) strtol(rec->owner, NULL, 10) : 0;
        dag_run_record_free(rec);
        r = dag_cancel_abandoned(b->engine, full, &err);
        if (r == -EBUSY && pid > 0 && kill(pid, SIGTERM) == 0) {
                usec_t until = now_monotonic() + 30 * USEC_PER_SEC;
                while (now_monotonic() < until) {
                        DagRunRecord *cur = NULL;
                        bool running = store_dag_get(s, NULL, full, &cur) >= 0 && cur->status &&
                                       streq(cur->status, "running");
                        dag_run_record_free(cur);
                        if (!running)
                                break;
                        /* The driver died meanwhile: end it here. */
                        r = dag_cancel_abandoned(b->engine, full, &err);
                        if (r != -EBUSY)
                                break;
                        usleep(50 * 1000);
                }
        }
        if (r < 0 && r != -EBUSY) {
                backend_set_error(b, "%s", err ?: strerror(-r));
                return r;
        }
        return dag_object(b, full, ret);
}

/* ---- datasets ---------------------------------------------------------------- */

static json_t *time_json(usec_t t) {
        char buf[32];
        return t ? json_string(format_timestamp(t, buf)) : json_null();
}

/* The daemon's dataset objects: a local path a dataset was put from is not
 * shown (a server's would be its staging path), URLs are. */
static json_t *url_or_null(const char *source) {
        return source && data_source_is_url(source) ? json_string(source) : json_null();
}

static json_t *info_json(const DataInfo *i) {
        json_t *j = json_pack("{s:s, s:i, s:s, s:I, s:I, s:s, s:o}", "name", i->name, "version", i->version, "hash",
                              i->hash ?: "", "size", (json_int_t) i->size, "files", (json_int_t) i->files, "kind",
                              i->kind ?: "file", "source", url_or_null(i->source));
        if (j && i->file)
                json_object_set_new(j, "filename", json_string(path_base_name(i->file)));
        return j ?: json_object();
}

/* Embedded there is no server: a path the user may not read or write
 * (-EACCES, which cli_exit_code() takes for a refused token, exit 6) is a
 * usage error, exit 2, as `run FILE` and the same verb with --server say. */
static int data_fail(Backend *b, int r, const char *what, const char *err) {
        backend_set_error(b, "%s: %s", what, err ?: strerror(-r));
        if (r == -EDQUOT)
                return -EFBIG;
        if (r == -ELOOP || r == -EPERM || r == -EACCES || r == -EILSEQ || r == -ENAMETOOLONG || r == -EMFILE)
                return -EINVAL;
        return r;
}

static int engine_data_put(Backend *b, const char *name, const char *source, const char *filename, json_t **ret) {
        DataCatalog *c = NULL;
        int r = catalog(b, &c);
        if (r < 0)
                return r;
        DataInfo *i = NULL;
        _cleanup_free_ char *err = NULL;
        r = data_put_as(c, NULL, name, source, filename, &i, &err);
        if (r < 0)
                return data_fail(b, r, "data put", err);
        *ret = info_json(i);
        json_object_set_new(*ret, "new_version", json_boolean(i->is_new));
        data_info_free(i);
        return 0;
}

/* No engine (backend_open_listing()): a home without a database has no
 * dataset of any name, and says so as its empty catalog would. */
static int data_none(Backend *b, const char *ref, const char *what) {
        _cleanup_free_ char *err = NULL;
        int r = data_ref_unknown(ref, &err);
        return data_fail(b, r, what, err);
}

static int engine_data_info(Backend *b, const char *name, json_t **ret) {
        if (!b->engine)
                return data_none(b, name, "data");
        DataCatalog *c = NULL;
        int r = catalog(b, &c);
        if (r < 0)
                return r;
        DataInfo *i = NULL;
        _cleanup_free_ char *err = NULL, *warn = NULL;
        r = data_use(c, NULL, name, &i, &warn, &err);
        if (r < 0)
                return data_fail(b, r, "data", err);
        json_t *j = info_json(i), *versions = json_array();
        data_info_free(i);
        if (warn)
                json_object_set_new(j, "warning", json_string(warn));
        DatasetVersion *v = NULL;
        size_t n = 0;
        if (data_versions(c, NULL, name, &v, &n) >= 0)
                for (size_t k = 0; k < n; k++)
                        json_array_append_new(versions, json_pack("{s:i, s:s, s:I, s:I, s:o}", "version", v[k].version,
                                                                  "hash", v[k].hash ?: "", "size", (json_int_t) v[k].size,
                                                                  "files", (json_int_t) v[k].files, "created_at",
                                                                  time_json(v[k].created)));
        dataset_version_list_free(v, n);
        DatasetRecord *rec = NULL;
        if (store_dataset_get(engine_store(b->engine), "local", name, &rec) >= 0) {
                json_object_set_new(j, "current_version", json_integer(rec->current));
                dataset_record_free(rec);
        }
        json_object_set_new(j, "versions", versions);
        *ret = j;
        return 0;
}

static int engine_data_list(Backend *b, json_t **ret) {
        DataCatalog *c = NULL;
        int r = b->engine ? catalog(b, &c) : 0;
        if (r < 0)
                return r;
        DatasetRecord **v = NULL;
        size_t n = 0;
        r = c ? data_list(c, NULL, &v, &n) : 0;
        if (r < 0)
                return data_fail(b, r, "cannot read the data catalog", NULL);
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
                json_t *j = json_pack("{s:s, s:s, s:o, s:i, s:i, s:o, s:I, s:I, s:o}", "name", v[i]->name, "kind",
                                      v[i]->kind ?: "file", "source", url_or_null(v[i]->source), "version", v[i]->current,
                                      "versions", v[i]->n_versions, "hash",
                                      v[i]->hash ? json_string(v[i]->hash) : json_null(), "size", (json_int_t) v[i]->size,
                                      "files", (json_int_t) v[i]->files, "created_at", time_json(v[i]->created));
                if (j)
                        json_array_append_new(arr, j);
        }
        dataset_record_list_free(v, n);
        *ret = arr;
        return 0;
}

static int copy_to_stdout(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        char buf[64 * 1024];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                if (fwrite(buf, 1, (size_t) n, stdout) != (size_t) n)
                        return -EIO;
        return n < 0 ? -errno : (fflush(stdout) == 0 ? 0 : -EIO);
}

static int engine_data_get(Backend *b, const char *ref, const char *out_path, char **ret_dir) {
        if (!b->engine)
                return data_none(b, ref, "data get");
        DataCatalog *c = NULL;
        int r = catalog(b, &c);
        if (r < 0)
                return r;
        _cleanup_free_ char *err = NULL, *warn = NULL;
        if (out_path) {
                r = data_export(c, NULL, ref, out_path, &warn, &err);
                if (warn)
                        cli_warning("%s", warn);
                return r < 0 ? data_fail(b, r, "data get", err) : 0;
        }
        DataInfo *i = NULL;
        r = data_use(c, NULL, ref, &i, &warn, &err);
        if (warn)
                cli_warning("%s", warn);
        if (r < 0)
                return data_fail(b, r, "data get", err);
        if (i->file) {
                r = copy_to_stdout(i->file);
                if (r < 0)
                        backend_set_error(b, "data get: cannot read %s: %s", i->file, strerror(-r));
        } else
                *ret_dir = xstrdup(i->path);
        data_info_free(i);
        return r;
}

static int engine_data_rm(Backend *b, const char *ref) {
        _cleanup_free_ char *err = NULL;
        DataCatalog *c = NULL;
        /* No engine (backend_open_listing()): nothing to remove. */
        int r = b->engine ? catalog(b, &c) : 0;
        if (r < 0)
                return r;
        r = c ? data_remove(c, NULL, ref, &err) : data_remove_unknown(ref, &err);
        return r < 0 ? data_fail(b, r, "data rm", err) : 0;
}

static void engine_backend_free(Backend *b) {
        data_catalog_free(b->catalog);
        engine_free(b->engine);
}

static const BackendOps engine_ops = {
        .run = engine_run_op,
        .run_get = engine_run_get,
        .run_list = engine_run_list,
        .run_logs = engine_run_logs,
        .deploy = engine_deploy,
        .stack = engine_stack,
        .function = engine_function,
        .alias = engine_alias,
        .schedule = engine_schedule,
        .function_runs = engine_function_runs,
        .run_log_text = engine_run_log_text,
        .workers = engine_workers,
        .dag_run = engine_dag_run,
        .dag_get = engine_dag_get,
        .dag_list = engine_dag_list,
        .dag_cancel = engine_dag_cancel,
        .run_cancel = engine_run_cancel,
        .envs = engine_envs,
        .data_put = engine_data_put,
        .data_info = engine_data_info,
        .data_list = engine_data_list,
        .data_get = engine_data_get,
        .data_rm = engine_data_rm,
        .secret_set = engine_secret_set,
        .secret_list = engine_secret_list,
        .secret_rm = engine_secret_rm,
        .secret_rotate_key = engine_secret_rotate_key,
        .free = engine_backend_free,
};

int backend_engine_new(Engine *e, Backend **ret) {
        Backend *b = xcalloc(1, sizeof(Backend));
        *b = (Backend) { .ops = &engine_ops, .engine = e };
        *ret = b;
        return 0;
}
