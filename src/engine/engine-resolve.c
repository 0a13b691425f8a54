/* Requirements -> the environment's store dirs, through the package
 * manager (src/pkg, DESIGN §4): a requirement set seen before costs one
 * lookup of its cached lock; a new one is resolved against the configured
 * index and its wheels materialised in the content-addressed store.
 * Packages are never installed any other way (no pip, no host
 * site-packages). */
#include <assert.h>
#include <fcntl.h>
#include <spawn.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "engine-internal.h"

#include <pthread.h>

typedef struct ProgressCtx {
        RunEventFn fn;
        void *userdata;
        const char *run_id;
} ProgressCtx;

static void on_progress(const char *phase, const char *what, uint64_t done, uint64_t total, void *userdata) {
        ProgressCtx *p = userdata;
        if (!p->fn)
                return;
        _cleanup_free_ char *msg = what && *what ? xasprintf("%s %s", phase, what) : xstrdup(phase);
        RunEvent ev = {
                .type = RUN_EVENT_PROGRESS,
                .run_id = p->run_id,
                .phase = streq(phase, "resolving") ? "resolve" : "install",
                .message = msg,
                .done = done,
                .total = total,
                .timestamp = now_realtime(),
        };
        p->fn(&ev, p->userdata);
}

/* ---- holds ----------------------------------------------------------------
 * An environment this engine uses stays marked in use (its record
 * flock'ed), so `env prune` and the collector never remove the dirs a run
 * or a warm worker of this process has on its sys.path. A hold keeps the
 * record's fd (more than one when the record was written again while held
 * and no longer names every dir the hold names: the old file keeps the
 * earlier holders' dirs, pkg-env.c record_set_aside_if_held()), the store
 * dirs its answers named, the runs using it (resolve to
 * engine_env_unuse()), when it was last used and when its record's mtime
 * (the env's last use, for `env ls` / prune) was last set by this process.
 * It was held for the process's life before: a
 * daemon kept every environment it had ever run until it exited, and
 * neither prune nor retention.env_max_idle_days could free one.
 * engine_env_release_idle() now lets go of one no run uses, no pool worker
 * has on its sys.path, and none used for env_idle_usec; what this process
 * remembered of it (pins, seen sets) is then a miss (use_hold() fails), so
 * its next use opens the record again and holds it anew. */
typedef struct EnvHold {
        char *key;
        int *fds;
        size_t n_fds;
        char **dirs;
        unsigned users;
        usec_t last_used;
        usec_t touched;
        struct EnvHold *next;
} EnvHold;

static EnvHold *hold_find(Engine *e, const char *key) {
        for (EnvHold *h = e->holds; h; h = h->next)
                if (streq(h->key, key))
                        return h;
        return NULL;
}

static EnvHold *hold_free(EnvHold *h) {
        for (size_t i = 0; i < h->n_fds; i++)
                (void) fd_close(h->fds[i]);
        free(h->fds);
        free(h->key);
        strv_free(h->dirs);
        free(h);
        return NULL;
}

static bool same_file(int a, int b) {
        struct stat sa, sb;
        return fstat(a, &sa) >= 0 && fstat(b, &sb) >= 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Whether every dir of held is one of dirs. */
static bool dirs_cover(char *const *dirs, char *const *held) {
        for (char *const *d = held; d && *d; d++)
                if (!strv_contains(dirs, *d))
                        return false;
        return true;
}

/* Holds env (its fd taken when this engine did not hold that file yet)
 * with its dirs, and takes one use of it. false when nothing is held: no
 * record fd and no hold of the key (the record could not be opened again
 * after it was written). */
static bool hold_env(Engine *e, PkgEnv *env, char *const *dirs) {
        bool held = true, let_go = false;
        pthread_mutex_lock(&e->holds_lock);
        EnvHold *h = hold_find(e, env->key);
        if (!h && env->fd < 0)
                held = false;
        else {
                if (!h) {
                        h = xcalloc(1, sizeof(EnvHold));
                        h->key = xstrdup(env->key);
                        h->touched = now_monotonic(); /* pkg_env_prepare just set it */
                        h->next = e->holds;
                        e->holds = h;
                }
                bool have = env->fd < 0;
                for (size_t i = 0; !have && i < h->n_fds; i++)
                        have = same_file(h->fds[i], env->fd);
                if (!have && dirs_cover(dirs, h->dirs)) {
                        /* The record written again names every dir the
                         * older files kept: they keep nothing more, and
                         * held they would pile up, an fd (and a set-aside
                         * record) per `--no-cache` run while this lasts. */
                        for (size_t i = 0; i < h->n_fds; i++)
                                (void) fd_close(h->fds[i]);
                        let_go = h->n_fds > 0;
                        h->n_fds = 0;
                }
                if (!have) {
                        h->fds = xrealloc(h->fds, (h->n_fds + 1) * sizeof(int));
                        h->fds[h->n_fds++] = TAKE_FD(env->fd);
                }
                for (char *const *d = dirs; d && *d; d++)
                        if (!strv_contains(h->dirs, *d))
                                h->dirs = strv_append(h->dirs, *d);
                h->users++;
                h->last_used = now_monotonic();
        }
        pthread_mutex_unlock(&e->holds_lock);
        /* The older files went: their set-aside names with them, now
         * rather than at the next prune (outside the lock: a readdir). */
        if (let_go)
                pkg_env_held_sweep(e->data_dir, env->key);
        return held;
}

/* Takes one use of a held environment and marks it used now: its
 * record's mtime, at most once a second per environment (a record write
 * per run would be a journal write per run). false when this engine does
 * not hold it (never did, or released it): what was remembered of it is
 * not to be used. */
#define ENV_TOUCH_EVERY_USEC USEC_PER_SEC
static bool use_hold(Engine *e, const char *key) {
        usec_t now = now_monotonic();
        pthread_mutex_lock(&e->holds_lock);
        EnvHold *h = hold_find(e, key);
        if (h) {
                h->users++;
                h->last_used = now;
                if (now - h->touched >= ENV_TOUCH_EVERY_USEC) {
                        /* The record's current file: the last one held. */
                        (void) futimens(h->fds[h->n_fds - 1], NULL);
                        h->touched = now;
                }
        }
        pthread_mutex_unlock(&e->holds_lock);
        return h != NULL;
}

void engine_env_unuse(Engine *e, const char *env_key) {
        assert(e);
        if (!env_key)
                return;
        pthread_mutex_lock(&e->holds_lock);
        EnvHold *h = hold_find(e, env_key);
        if (h && h->users > 0) {
                h->users--;
                h->last_used = now_monotonic();
        }
        pthread_mutex_unlock(&e->holds_lock);
}

void engine_env_release_idle(Engine *e) {
        assert(e);
        if (!e->env_idle_usec)
                return;
        usec_t now = now_monotonic();
        /* Their set-aside records (this engine's older files, or its
         * only one when another process wrote the record again) go too. */
        char **released = NULL;
        /* The holds lock stays held across the pool's check: a run takes
         * a use (under it) before it asks the pool for a worker of the
         * dirs, so a hold with no use and no worker cannot gain either
         * before it is gone. */
        pthread_mutex_lock(&e->holds_lock);
        for (EnvHold **p = &e->holds; *p;) {
                EnvHold *h = *p;
                if (h->users > 0 || now - h->last_used < e->env_idle_usec || pool_uses_dirs(e, h->dirs)) {
                        p = &h->next;
                        continue;
                }
                *p = h->next;
                released = strv_append(released, h->key);
                hold_free(h);
        }
        pthread_mutex_unlock(&e->holds_lock);
        for (char **k = released; k && *k; k++)
                pkg_env_held_sweep(e->data_dir, *k);
        strv_free(released);
}

void engine_env_holds_free(Engine *e) {
        assert(e);
        pthread_mutex_lock(&e->holds_lock);
        while (e->holds) {
                EnvHold *h = e->holds;
                e->holds = h->next;
                hold_free(h);
        }
        pthread_mutex_unlock(&e->holds_lock);
}

/* Byte-compiles a freshly unpacked wheel with the embedded interpreter
 * (`pysprinter-worker --compile DIR`: the stdlib's compileall, which only
 * parses the files, never runs them), so the read-only store holds the
 * .pyc files imports need. Bounded in time; a failure only costs speed. */
typedef struct CompileCtx {
        Engine *e;
        const bool *cancel; /* the run's flag, may be NULL */
} CompileCtx;

static int compile_dir(const char *dir, void *userdata) {
        CompileCtx *cc = userdata;
        Engine *e = cc->e;
        /* posix_spawn(), not fork(), for the reason engine-sandbox.c's
         * worker start gives: a fork() of the multithreaded daemon stalls
         * every thread of it. */
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDWR, 0);
        posix_spawn_file_actions_adddup2(&fa, STDIN_FILENO, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, STDIN_FILENO, STDERR_FILENO);
        char *argv[] = { e->worker_path, (char *) "--sandbox=none", (char *) "--compile", (char *) dir, NULL };
        char *envp[] = { (char *) "PATH=/usr/bin:/bin", (char *) "LANG=C.UTF-8", NULL };
        pid_t pid;
        int err = posix_spawn(&pid, e->worker_path, &fa, NULL, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        if (err != 0)
                return -err;
        usec_t deadline = now_monotonic() + 120 * USEC_PER_SEC;
        for (;;) {
                int status;
                pid_t k = waitpid(pid, &status, WNOHANG);
                if (k == pid)
                        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
                if (k < 0 && errno != EINTR)
                        return -errno;
                bool cancel = cc->cancel && __atomic_load_n(cc->cancel, __ATOMIC_ACQUIRE);
                if (cancel || now_monotonic() > deadline) {
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                        return cancel ? -ECANCELED : -ETIMEDOUT;
                }
                usleep(2000);
        }
}

/* The runner's package policy: -EPERM with a message naming the package. */
static int check_policy(Engine *e, const char *normalized, const char *why, char **ret_error) {
        if (strv_contains(e->deny_packages, normalized)) {
                *ret_error = xasprintf("package '%s'%s is not allowed on this runner (denied by its package policy)",
                                       normalized, why);
                return -EPERM;
        }
        if (e->allow_packages && !strv_contains(e->allow_packages, normalized)) {
                *ret_error = xasprintf("package '%s'%s is not allowed on this runner (not in its allow list)",
                                       normalized, why);
                return -EPERM;
        }
        return 0;
}

/* The resolver asks before it reads a dependency's page: a denied package
 * is never downloaded, unpacked nor byte-compiled (the roots were asked
 * before the index was touched). */
static int admit_dependency(void *userdata, const char *project, char **ret_error) {
        return check_policy(userdata, project, " (a dependency)", ret_error);
}

/* The lock travels as an event so `pysprinter lock` (a validate-only run)
 * can print it. */
static void emit_lock(const char *run_id, RunEventFn fn, void *userdata, const char *lock, size_t n_entries,
                      bool cached) {
        _cleanup_free_ char *msg = xasprintf("%s %zu packages", cached ? "cached lock:" : "locked", n_entries);
        RunEvent ev = {
                .type = RUN_EVENT_PROGRESS,
                .run_id = run_id,
                .phase = "resolve",
                .message = msg,
                .data = lock,
                .len = strlen(lock),
                .timestamp = now_realtime(),
        };
        fn(&ev, userdata);
}

/* ---- pinned environments ------------------------------------------------
 * A deployed version's requirements never change, and neither does the
 * lock they resolved to: while this engine holds the env record
 * flock'ed (holds, above), `env prune` and the GC leave its store dirs
 * alone, and the index, allow and deny lists are fixed for an Engine's
 * life. So the answer is remembered per (instance key, requirements) and an
 * invoke does no per-package work: no tag list, no record read, no stat per
 * store dir, no policy check per dependency (issue 15: this cost 0.5–1 ms
 * per invoke with `requests`); it takes a use of the hold (a lock and a
 * look-up), and is a miss once the hold was released. The value, in a
 * ValidationCache (the one string cache, engine-vcache.c), is the env key
 * and "\n" (an empty key: no requirements, nothing held), "N\n", the
 * lock as compact JSON (no newline: JSON escapes them) and "\n", then the
 * store dirs one a line (store paths hold no newline: they are the data
 * dir plus hex digests).
 * The lock is kept for the run record (docs/ui.md), not re-emitted.
 * A pinned hit reports "cached lock: N packages" without the lock itself:
 * whoever needed the lock (the daemon's tenant note) had it when the pin
 * was made, within the same engine's life. */

static char *pin_key(Engine *e, const char *instance_key, json_t *reqs_json) {
        /* No requirements (most functions): "{}" without printing it, per
         * invoke (docs/internals/performance-log.md "Invoke path: round 7"). */
        bool none = !reqs_json || (json_is_object(reqs_json) && json_object_size(reqs_json) == 0);
        _cleanup_free_ char *reqs = none ? NULL : json_dumps(reqs_json, JSON_COMPACT | JSON_SORT_KEYS);
        return xasprintf("env\x1f%u\x1f%s\x1f%s", __atomic_load_n(&e->pin_gen, __ATOMIC_ACQUIRE), instance_key,
                         reqs ?: "{}");
}

/* A hold keeps prune and the collector off a pinned env's dirs, not
 * `env verify --repair`, which removes a damaged package whoever holds it
 * (from any process: the CLI's, beside a running daemon). Such a removal
 * changes the store's repair stamp (one stat): every pin is then a miss
 * (its key's generation moves on), and the next invoke installs its lock
 * again. Before, a pinned version ran from the removed dirs (an import
 * error or a missing file at each invoke) until the daemon restarted.
 * The workers with store dirs and their warm instances are retired too:
 * they imported the damaged files (and their forks and instances kept
 * them, whatever the store holds now) until the daemon restarted. Every
 * one, not only those naming a removed dir: the stamp says that a repair
 * happened, not which (a repair is rare; their next runs start cold).
 * Asked by a pin that has dirs and by a run with requirements before its
 * seen-set lookup: a function without requirements (most) pays no stat.
 * true: the store was repaired since the engine last looked. */
static bool store_repaired(Engine *e) {
        uint64_t stamp = pkg_store_repair_stamp(e->data_dir);
        uint64_t seen = __atomic_load_n(&e->repair_stamp, __ATOMIC_ACQUIRE);
        if (stamp == seen)
                return false;
        /* One thread of those that saw it retires; the others only miss. */
        if (__atomic_compare_exchange_n(&e->repair_stamp, &seen, stamp, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                __atomic_add_fetch(&e->pin_gen, 1, __ATOMIC_ACQ_REL);
                pool_retire_env_workers(e);
        }
        return true;
}

/* Parses "<env key>\nN\n<lock>\n<dir>\n<dir>\n..." (text is modified;
 * *ret_key points into it). */
static bool env_entry_parse(char *text, const char **ret_key, size_t *ret_n, char **ret_lock, char ***ret_sys_path) {
        char *key_end = strchr(text, '\n');
        if (!key_end)
                return false;
        *key_end = 0;
        *ret_key = text;
        text = key_end + 1;
        char *line = strchr(text, '\n');
        if (!line)
                return false;
        *line++ = 0;
        size_t n_entries = strtoul(text, NULL, 10);
        char *lock_end = strchr(line, '\n');
        if (!lock_end)
                return false;
        char *lock = lock_end > line ? xstrndup(line, (size_t) (lock_end - line)) : NULL;
        line = lock_end + 1;
        char **sys_path = xcalloc(1, sizeof(char *));
        while (*line) {
                char *end = strchrnul(line, '\n');
                _cleanup_free_ char *dir = xstrndup(line, (size_t) (end - line));
                sys_path = strv_append(sys_path, dir);
                line = *end ? end + 1 : end;
        }
        *ret_n = n_entries;
        *ret_lock = lock;
        *ret_sys_path = sys_path;
        return true;
}

/* The same text, or NULL when the key, the lock or a dir holds a newline. */
static char *env_entry_format(const char *env_key, char *const *sys_path, size_t n_entries, const char *lock_json) {
        if ((lock_json && strchr(lock_json, '\n')) || (env_key && strchr(env_key, '\n')))
                return NULL;
        Buf b;
        buf_init(&b, SIZE_MAX);
        buf_printf(&b, "%s\n%zu\n%s\n", env_key ?: "", n_entries, lock_json ? lock_json : "");
        for (char *const *p = sys_path; p && *p; p++) {
                if (strchr(*p, '\n')) {
                        buf_free(&b);
                        return NULL;
                }
                buf_printf(&b, "%s\n", *p);
        }
        return b.data ? buf_steal(&b) : xstrdup("");
}

int engine_env_pinned(Engine *e, const char *instance_key, json_t *reqs_json, const char *lock_json, const char *run_id,
                      RunEventFn fn, void *userdata, char ***ret_sys_path, char **ret_lock_json, char **ret_env_key) {
        assert(e);
        assert(instance_key);
        assert(ret_sys_path);
        assert(ret_lock_json);
        assert(ret_env_key);
        _cleanup_free_ char *key = pin_key(e, instance_key, reqs_json);
        _cleanup_free_ char *text = vcache_get(e->envcache, key);
        size_t n_entries;
        const char *env_key;
        char *lock, **sys_path;
        if (!text || !env_entry_parse(text, &env_key, &n_entries, &lock, &sys_path))
                return 0;
        /* Released since it was pinned: its dirs may be gone (pruned);
         * or a repair removed some. */
        /* Pinned with another text of the version's lock: the same files
         * where a moved index has them now (the daemon saved its URLs).
         * The run's answer is to carry the lock it runs: a miss, once. */
        bool relocked = lock_json && lock && !streq(lock, lock_json);
        if (relocked || (*env_key && (store_repaired(e) || !use_hold(e, env_key)))) {
                free(lock);
                strv_free(sys_path);
                return 0;
        }
        if (fn && n_entries > 0) {
                _cleanup_free_ char *msg = xasprintf("cached lock: %zu packages", n_entries);
                RunEvent ev = {
                        .type = RUN_EVENT_PROGRESS,
                        .run_id = run_id,
                        .phase = "resolve",
                        .message = msg,
                        .timestamp = now_realtime(),
                };
                fn(&ev, userdata);
        }
        *ret_sys_path = sys_path;
        *ret_lock_json = lock;
        *ret_env_key = *env_key ? xstrdup(env_key) : NULL;
        return 1;
}

void engine_env_pin(Engine *e, const char *instance_key, json_t *reqs_json, const char *env_key, char *const *sys_path,
                    size_t n_entries, const char *lock_json) {
        assert(e);
        assert(instance_key);
        /* Dirs with no hold to check a hit against are not remembered. */
        if (n_entries > 0 && !env_key)
                return;
        _cleanup_free_ char *text = env_entry_format(env_key, sys_path, n_entries, lock_json);
        if (!text)
                return; /* not representable: stays unpinned */
        _cleanup_free_ char *key = pin_key(e, instance_key, reqs_json);
        vcache_put(e->envcache, key, text);
}

/* ---- requirement sets seen by ad-hoc runs ----------------------------
 * An ad-hoc run of a set resolved before used to redo the seen-set lookup
 * each time (issue 15): the env key (the SHA-256 of the requirements and
 * the interpreter's ~20 KB wheel-tag list), the record's open, flock, read
 * and JSON parse, its mtime, a stat per store dir, and the lock printed
 * back to JSON: ~0.2 ms of the daemon's CPU per run, most of an ad-hoc
 * run's resolve phase. The answer only changes when the record or its
 * dirs do, and neither can while this engine holds the record (holds,
 * above: `env prune` and the store GC skip a held env; the index, allow
 * and deny lists are fixed for an Engine's life), so it is remembered per
 * set of requirement strings (as the env key sorts them), in the pinned
 * format above. A hit still checks that each store dir exists (a stat
 * each: a dir removed by hand is installed again by the slow path), takes
 * a use of the hold (a miss once it was released), sets the record's mtime
 * at most once a second, and reports the same "cached lock" event with the
 * lock as the record's path did. */

static char *seen_key(PkgRequirement **reqs, size_t n) {
        char **v = pkg_requirements_sorted(reqs, n);
        Buf b;
        buf_init(&b, SIZE_MAX / 2);
        buf_appends(&b, "seen");
        for (size_t i = 0; i < n; i++)
                buf_printf(&b, "\x1f%s", v[i]);
        strv_free(v);
        return buf_steal(&b);
}

static bool dirs_exist(char *const *dirs) {
        struct stat st;
        for (char *const *d = dirs; d && *d; d++)
                if (stat(*d, &st) < 0 || !S_ISDIR(st.st_mode))
                        return false;
        return true;
}

static bool env_seen(Engine *e, const char *key, const char *run_id, RunEventFn fn, void *userdata,
                     char ***ret_sys_path, size_t *ret_n_entries, char **ret_lock_json, char **ret_env_key) {
        _cleanup_free_ char *text = vcache_get(e->envcache, key);
        size_t n_entries;
        const char *env_key;
        char *lock, **sys_path;
        if (!text || !env_entry_parse(text, &env_key, &n_entries, &lock, &sys_path))
                return false;
        if (!lock || !*env_key || !dirs_exist(sys_path) || !use_hold(e, env_key)) {
                free(lock);
                strv_free(sys_path);
                return false;
        }
        if (fn)
                emit_lock(run_id, fn, userdata, lock, n_entries, true);
        if (ret_lock_json)
                *ret_lock_json = lock;
        else
                free(lock);
        if (ret_n_entries)
                *ret_n_entries = n_entries;
        *ret_sys_path = sys_path;
        *ret_env_key = xstrdup(env_key);
        return true;
}

static void env_seen_put(Engine *e, const char *key, const char *env_key, char *const *sys_path, size_t n_entries,
                         const char *lock_json) {
        if (!lock_json)
                return;
        _cleanup_free_ char *text = env_entry_format(env_key, sys_path, n_entries, lock_json);
        if (text)
                vcache_put(e->envcache, key, text);
}

/* The index configuration of this engine (its peers, a cluster's, asked
 * first for wheels). */
static int index_config(Engine *e, PkgIndexConfig **ret, char **ret_error) {
        int r = pkg_index_config_new(e->index_url, e->extra_index_urls, e->find_links, ret, ret_error);
        if (r >= 0)
                (*ret)->peers = e->peers;
        return r;
}

/* What every install of this engine tells the package manager: where, from
 * which index, whom to tell of its progress, how to compile. */
static PkgEnvOptions env_options(Engine *e, PkgIndexConfig *cfg, ProgressCtx *pc, CompileCtx *cc, const bool *cancel) {
        return (PkgEnvOptions){
                .data_dir = e->data_dir,
                .index = cfg,
                .progress = on_progress,
                .userdata = pc,
                .compile = compile_dir,
                .compile_userdata = cc,
                .cancel = cancel,
        };
}

static int resolve_env(Engine *e, PkgRequirement **reqs, size_t n_reqs, bool resolve_only, bool refresh,
                       const char *run_id, const bool *cancel, RunEventFn fn, void *userdata, char ***ret_sys_path,
                       size_t *ret_n_entries, char **ret_lock_json, char ***ret_warnings, char **ret_env_key,
                       char **ret_error) {
        if (n_reqs == 0) {
                *ret_sys_path = xcalloc(1, sizeof(char *));
                /* A run without requirements records no lock; `lock` of
                 * such a file prints the empty one, as the resolver writes it. */
                if (resolve_only && ret_lock_json)
                        *ret_lock_json = pkg_lock_to_json(&(PkgLock){}, false);
                return 0;
        }
        /* Refuse what the file asks for directly before touching the index. */
        for (size_t i = 0; i < n_reqs; i++) {
                int k = check_policy(e, reqs[i]->normalized, "", ret_error);
                if (k < 0)
                        return k;
        }
        _cleanup_free_ char *seen = resolve_only ? NULL : seen_key(reqs, n_reqs);
        if (seen)
                (void) store_repaired(e);
        if (seen && !refresh &&
            env_seen(e, seen, run_id, fn, userdata, ret_sys_path, ret_n_entries, ret_lock_json, ret_env_key))
                return 0;
        PkgIndexConfig *cfg = NULL;
        int r = index_config(e, &cfg, ret_error);
        if (r < 0)
                return r;
        ProgressCtx pc = { .fn = fn, .userdata = userdata, .run_id = run_id };
        CompileCtx cc = { .e = e, .cancel = cancel };
        PkgEnvOptions o = env_options(e, cfg, &pc, &cc, cancel);
        o.resolve_only = resolve_only;
        o.refresh = refresh;
        o.admit = e->deny_packages || e->allow_packages ? admit_dependency : NULL;
        o.admit_userdata = e;
        PkgEnv *env = NULL;
        r = pkg_env_prepare(&o, reqs, n_reqs, &env, ret_error);
        pkg_index_config_free(cfg);
        if (r < 0)
                return r;
        /* Dependencies too (asked by the resolver already; this covers an
         * environment made before the policy changed). */
        for (size_t i = 0; i < env->lock->n_entries; i++) {
                _cleanup_free_ char *n = pkg_name_normalize(env->lock->entries[i].name);
                r = check_policy(e, n, " (a dependency)", ret_error);
                if (r < 0) {
                        pkg_env_free(env);
                        return r;
                }
        }
        _cleanup_free_ char *lock = pkg_lock_to_json(env->lock, false);
        if (fn)
                emit_lock(run_id, fn, userdata, lock, env->lock->n_entries, env->cached);
        _cleanup_free_ char *env_key = xstrdup(env->key);
        if (ret_lock_json)
                *ret_lock_json = TAKE_PTR(lock);
        if (ret_n_entries)
                *ret_n_entries = env->lock->n_entries;
        if (ret_warnings)
                *ret_warnings = TAKE_PTR(env->lock->warnings);
        size_t n_entries = env->lock->n_entries;
        *ret_sys_path = env->store_dirs ? TAKE_PTR(env->store_dirs) : xcalloc(1, sizeof(char *));
        bool held = hold_env(e, env, *ret_sys_path);
        pkg_env_free(env);
        if (held)
                *ret_env_key = xstrdup(env_key);
        if (seen && held)
                env_seen_put(e, seen, env_key, *ret_sys_path, n_entries, ret_lock_json ? *ret_lock_json : lock);
        return 0;
}

int engine_resolve_env(Engine *e, PkgRequirement **reqs, size_t n_reqs, bool resolve_only, bool refresh,
                       const char *run_id, const bool *cancel, RunEventFn fn, void *userdata, char ***ret_sys_path,
                       size_t *ret_n_entries, char **ret_lock_json, char ***ret_warnings, char **ret_env_key,
                       char **ret_error) {
        assert(ret_env_key);
        *ret_env_key = NULL;
        int r = resolve_env(e, reqs, n_reqs, resolve_only, refresh, run_id, cancel, fn, userdata, ret_sys_path,
                            ret_n_entries, ret_lock_json, ret_warnings, ret_env_key, ret_error);
        /* Its messages name index URLs: a run's error reaches its tenant,
         * and the operator's index password must not. */
        if (r < 0 && *ret_error) {
                char *shown = pkg_url_redact(*ret_error);
                free(*ret_error);
                *ret_error = shown;
        }
        return r;
}

/* ---- a deployed version's lock ----------------------------------------
 * Its requirements were resolved at its deploy: the lock is installed as
 * it is (pkg_env_from_lock), never resolved again, so a restart, a prune
 * or a new release on the index changes nothing that runs. Remembered as
 * a seen set is, under the lock's text. */

static int env_from_lock(Engine *e, const char *lock_json, const char *run_id, const bool *cancel, RunEventFn fn,
                         void *userdata, char ***ret_sys_path, size_t *ret_n_entries, char **ret_lock_json,
                         char **ret_env_key, char **ret_error) {
        PkgLock *lock = NULL;
        _cleanup_free_ char *perr = NULL;
        int r = pkg_lock_from_json(lock_json, &lock, &perr);
        if (r < 0) {
                *ret_error = xasprintf("its text cannot be read (%s)", perr ?: strerror(-r));
                return r;
        }
        /* The policy of now: a package denied since the deploy is not run. */
        for (size_t i = 0; i < lock->n_entries; i++) {
                _cleanup_free_ char *n = pkg_name_normalize(lock->entries[i].name);
                r = check_policy(e, n, " (locked at the deploy)", ret_error);
                if (r < 0) {
                        pkg_lock_free(lock);
                        return r;
                }
        }
        if (lock->n_entries == 0) {
                pkg_lock_free(lock);
                *ret_sys_path = xcalloc(1, sizeof(char *));
                if (ret_n_entries)
                        *ret_n_entries = 0;
                return 0;
        }
        _cleanup_free_ char *seen = xasprintf("locked\x1f%s", lock_json);
        (void) store_repaired(e);
        if (env_seen(e, seen, run_id, fn, userdata, ret_sys_path, ret_n_entries, ret_lock_json, ret_env_key)) {
                pkg_lock_free(lock);
                return 0;
        }
        PkgIndexConfig *cfg = NULL;
        r = index_config(e, &cfg, ret_error);
        if (r < 0) {
                pkg_lock_free(lock);
                return r;
        }
        ProgressCtx pc = { .fn = fn, .userdata = userdata, .run_id = run_id };
        CompileCtx cc = { .e = e, .cancel = cancel };
        PkgEnvOptions o = env_options(e, cfg, &pc, &cc, cancel);
        PkgEnv *env = NULL;
        r = pkg_env_from_lock(&o, lock, &env, ret_error);
        pkg_index_config_free(cfg);
        pkg_lock_free(lock);
        if (r < 0)
                return r;
        _cleanup_free_ char *text = pkg_lock_to_json(env->lock, false);
        if (fn)
                emit_lock(run_id, fn, userdata, text, env->lock->n_entries, true);
        size_t n_entries = env->lock->n_entries;
        _cleanup_free_ char *env_key = xstrdup(env->key);
        *ret_sys_path = env->store_dirs ? TAKE_PTR(env->store_dirs) : xcalloc(1, sizeof(char *));
        bool held = hold_env(e, env, *ret_sys_path);
        pkg_env_free(env);
        if (held) {
                *ret_env_key = xstrdup(env_key);
                env_seen_put(e, seen, env_key, *ret_sys_path, n_entries, text);
        }
        if (ret_n_entries)
                *ret_n_entries = n_entries;
        if (ret_lock_json)
                *ret_lock_json = TAKE_PTR(text);
        return 0;
}

int engine_env_from_lock(Engine *e, const char *lock_json, const char *run_id, const bool *cancel, RunEventFn fn,
                         void *userdata, char ***ret_sys_path, size_t *ret_n_entries, char **ret_lock_json,
                         char **ret_env_key, char **ret_error) {
        assert(e && lock_json && ret_sys_path && ret_env_key && ret_error);
        *ret_env_key = NULL;
        int r = env_from_lock(e, lock_json, run_id, cancel, fn, userdata, ret_sys_path, ret_n_entries, ret_lock_json,
                              ret_env_key, ret_error);
        if (r < 0 && r != -ECANCELED && r != -EPERM && *ret_error) {
                /* A file that came with other bytes than locked (its
                 * page still gives the lock's sha256): a deploy again
                 * pins that sha256 again, and fails the same way until
                 * the index serves the right bytes. Another build on the
                 * index of now (-ESTALE) is what a deploy again locks. */
                char *why = *ret_error;
                *ret_error = xasprintf("the lock this version was deployed with cannot be installed: %s%s", why,
                                       r == -EBADMSG ? ""
                                                     : "; a deployed version never runs other packages: deploy it "
                                                       "again to lock its requirements anew");
                free(why);
        }
        /* As engine_resolve_env's: no index password in a run's error. */
        if (r < 0 && *ret_error) {
                char *shown = pkg_url_redact(*ret_error);
                free(*ret_error);
                *ret_error = shown;
        }
        return r;
}
