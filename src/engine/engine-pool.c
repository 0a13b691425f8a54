/* The worker pool (DESIGN §6): warm workers keyed by environment, an LRU
 * under a memory budget (PSS, not RSS: forked children share most pages),
 * idle timeouts, and warm instances of deployed functions.
 *
 * Threads: any engine_run() thread may acquire and release; the pool lock
 * guards the lists, a worker's own lock serialises its control socket. A
 * worker is started outside the pool lock (it may take a while to import
 * its env) while other threads wanting the same env wait on `changed`. */
#include <assert.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "engine-internal.h"
#include "sandbox.h"
#include "worker-proto.h"

#define INIT_TIMEOUT_USEC (120 * USEC_PER_SEC)
/* How long after the first release of the worker that adopted it the
 * blank worker is replaced (at the janitor's next tick after that). */
#define BLANK_REFILL_DELAY_USEC (500 * USEC_PER_MSEC)
/* Validators a lane may have at once (pool_acquire()): a second one when
 * validations overlap; more would only share the same two CPUs. */
#define VALIDATORS_PER_LANE 2

static void request_slots(Engine *e, PoolWorker *pw, unsigned batch, bool concurrent);
static unsigned slot_batch(Engine *e);
static unsigned pool_worker_runs(Engine *e, const PoolWorker *pw, unsigned *ret_instances);

static char *pool_key(SandboxMode mode, bool network, char *const *sys_path, char *const *data, PoolRole role) {
        static const char *const lanes[] = {
                [POOL_RUNS] = "",
                [POOL_VALIDATOR] = "|validator",
                [POOL_VALIDATOR_LARGE] = "|validator-large",
        };
        Buf b;
        buf_init(&b, 1 << 20);
        buf_printf(&b, "%d|%d%s", (int) mode, network ? 1 : 0, lanes[role]);
        for (char *const *p = sys_path; p && *p; p++)
                buf_printf(&b, "|p:%s", *p);
        for (char *const *d = data; d && *d; d++)
                buf_printf(&b, "|d:%s", *d);
        return buf_steal(&b);
}

static void pool_worker_free(PoolWorker *pw) {
        if (!pw)
                return;
        /* The slots' cgroups go with their spares (killed with them). */
        while (pw->slots) {
                SpareSlot *s = pw->slots;
                pw->slots = s->next;
                pool_slot_free(s);
        }
        pw->w = worker_stop(pw->w);
        pw->proc_fd = fd_close(pw->proc_fd);
        free(pw->key);
        strv_free(pw->sys_path);
        strv_free(pw->data);
        strv_free(pw->failed_imports);
        free(pw->import_output[0]);
        free(pw->import_output[1]);
        pthread_mutex_destroy(&pw->io_lock);
        free(pw);
}

/* Unlink and return workers to stop (called with the pool lock held). */
static PoolWorker *collect_evictions(Engine *e, usec_t now) {
        PoolWorker *victims = NULL;
        /* Idle timeout first. */
        for (PoolWorker **p = &e->pool.workers; *p;) {
                PoolWorker *pw = *p;
                bool idle_too_long = pw->busy == 0 && pw->ready && e->pool.idle_timeout_usec &&
                                     now - pw->last_used > e->pool.idle_timeout_usec;
                if (pw->dead && pw->busy == 0 && pw->ready)
                        idle_too_long = true;
                if (idle_too_long) {
                        *p = pw->next;
                        pw->next = victims;
                        victims = pw;
                        continue;
                }
                p = &pw->next;
        }
        /* Then LRU under the memory budget: evict the least recently used
         * idle worker until the total fits; an idle instance used less
         * recently goes first (the janitor's engine_pool_sweep()). */
        for (;;) {
                PoolWorker *lru = pool_lru_idle_locked(e);
                if (!e->pool.memory_budget || pool_pss_total_locked(e) <= e->pool.memory_budget || !lru ||
                    pool_instance_idle_since_locked(e, lru->last_used))
                        break;
                for (PoolWorker **p = &e->pool.workers; *p; p = &(*p)->next)
                        if (*p == lru) {
                                *p = lru->next;
                                break;
                        }
                lru->next = victims;
                victims = lru;
                e->pool.evictions++;
        }
        return victims;
}

uint64_t pool_pss_total_locked(Engine *e) {
        uint64_t total = 0;
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next)
                total += pw->pss_bytes;
        return total;
}

PoolWorker *pool_lru_idle_locked(Engine *e) {
        PoolWorker *lru = NULL;
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next)
                if (pw->busy == 0 && pw->ready && (!lru || pw->last_used < lru->last_used))
                        lru = pw;
        return lru;
}

Instance *pool_lru_idle_instance_locked(Engine *e, Instance ***ret_link) {
        Instance *lru = NULL, **lru_link = NULL;
        for (Instance **p = &e->pool.instances; *p; p = &(*p)->next) {
                Instance *i = *p;
                if (i->busy || i->freezing || i->dead || !i->parent || i->sock < 0)
                        continue;
                if (!lru || i->last_used < lru->last_used) {
                        lru = i;
                        lru_link = p;
                }
        }
        if (ret_link)
                *ret_link = lru_link;
        return lru;
}

bool pool_instance_idle_since_locked(Engine *e, usec_t t) {
        Instance *lru = pool_lru_idle_instance_locked(e, NULL);
        return lru && lru->last_used < t;
}

#define INSTANCE_HOSTS_MEASURED_MAX 64 /* per janitor tick; the others at the next */

void pool_measure_instance_hosts(Engine *e) {
        PoolWorker *hosts[INSTANCE_HOSTS_MEASURED_MAX];
        size_t n = 0;
        usec_t now = now_monotonic();
        pthread_mutex_lock(&e->pool.lock);
        for (Instance *i = e->pool.instances; i && n < ELEMENTSOF(hosts); i = i->next) {
                PoolWorker *pw = i->parent; /* NULL: a slot reserved while one starts */
                bool seen = false;
                for (size_t k = 0; k < n && !seen; k++)
                        seen = hosts[k] == pw;
                usec_t measured = pw ? __atomic_load_n(&pw->pss_measured, __ATOMIC_RELAXED) : 0;
                /* Only once an invocation ran since: an idle daemon reads
                 * nothing. */
                if (!pw || seen || pw->dead || !pw->w || i->last_used <= measured || now - measured < USEC_PER_SEC)
                        continue;
                pw->busy++; /* alive while measured without the lock */
                hosts[n++] = pw;
        }
        pthread_mutex_unlock(&e->pool.lock);
        uint64_t pss[INSTANCE_HOSTS_MEASURED_MAX];
        for (size_t k = 0; k < n; k++) {
                __atomic_store_n(&hosts[k]->pss_measured, now_monotonic(), __ATOMIC_RELAXED);
                pss[k] = engine_process_tree_pss(hosts[k]->w->pid);
        }
        pthread_mutex_lock(&e->pool.lock);
        for (size_t k = 0; k < n; k++) {
                if (!hosts[k]->dead)
                        hosts[k]->pss_bytes = pss[k];
                hosts[k]->busy--; /* a dead one left at 0 is stopped by the sweep that follows */
        }
        pthread_mutex_unlock(&e->pool.lock);
}

static void stop_list(PoolWorker *victims) {
        /* Every worker told first: their exits (each a few ms of the
         * kernel's teardown of its namespaces) overlap. */
        for (PoolWorker *pw = victims; pw; pw = pw->next)
                worker_stop_begin(pw->w);
        while (victims) {
                PoolWorker *next = victims->next;
                pool_worker_free(victims);
                victims = next;
        }
}

/* PSS of a process and its children (the spares), from smaps_rollup. */
uint64_t engine_process_tree_pss(pid_t pid) {
        uint64_t total = 0;
        _cleanup_free_ char *path = xasprintf("/proc/%d/smaps_rollup", (int) pid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (f) {
                char line[256];
                while (fgets(line, sizeof(line), f)) {
                        unsigned long long kb;
                        if (sscanf(line, "Pss: %llu kB", &kb) == 1) {
                                total += kb * 1024;
                                break;
                        }
                }
        }
        _cleanup_free_ char *kids_path = xasprintf("/proc/%d/task/%d/children", (int) pid, (int) pid);
        _cleanup_free_ char *kids = NULL;
        if (read_file(kids_path, 1 << 16, &kids, NULL) >= 0) {
                for (char *p = kids;;) {
                        char *end;
                        long child = strtol(p, &end, 10);
                        if (end == p)
                                break;
                        if (child > 0)
                                total += engine_process_tree_pss((pid_t) child);
                        p = end;
                }
        }
        return total;
}

static int worker_init(Engine *e, PoolWorker *pw, int cancel_fd, char **ret_error) {
        json_t *path = json_array();
        _cleanup_strv_free_ char **seen = engine_sandbox_worker_paths(pw->mode, pw->sys_path);
        for (char **p = seen; p && *p; p++)
                json_array_append_new(path, json_string(*p));
        /* In the full sandbox the engine asks for spares itself, each
         * joined to its run's cgroup ahead of time (pool_make_slot). */
        int own_spares = pw->mode == SANDBOX_MODE_FULL || pw->validator ? 0 : (int) e->pool.spares;
        json_t *m = json_pack("{s:s, s:o, s:b, s:i, s:b, s:b}", "type", "init", "sys_path", path, "preload", 1,
                              "spares", own_spares, "network", pw->network, "settle_idle", !e->pool.settle_on_demand);
        _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        int r = worker_send(pw->w, text, NULL, 0);
        _cleanup_free_ char *reply = NULL;
        if (r >= 0)
                r = worker_recv_cancellable(pw->w, now_monotonic() + INIT_TIMEOUT_USEC, cancel_fd, &reply, NULL);
        if (r == -ECANCELED)
                return worker_start_abandon(pw->w, ret_error); /* mid-import */
        if (r < 0) {
                *ret_error = xasprintf("the worker did not become ready: %s",
                                       r == -ECONNRESET ? "it exited while importing the environment" : strerror(-r));
                return r;
        }
        json_t *v = json_loads(reply, 0, NULL);
        json_t *failed = json_object_get(v, "failed");
        const char *name;
        json_t *why;
        json_object_foreach(failed, name, why) {
                _cleanup_free_ char *s = xasprintf("%s: %s", name, json_string_value(why) ?: "?");
                pw->failed_imports = strv_append(pw->failed_imports, s);
        }
        pw->n_imported = json_array_size(json_object_get(v, "imported"));
        for (int k = 0; k < 2; k++) {
                const char *printed = json_string_value(json_object_get(v, k == 0 ? "stdout" : "stderr"));
                if (printed && *printed)
                        pw->import_output[k] = xstrdup(printed);
        }
        json_decref(v);
        return 0;
}

void pool_worker_take_import_output(PoolWorker *pw, char *ret[2]) {
        assert(pw);
        for (int k = 0; k < 2; k++)
                ret[k] = TAKE_PTR(pw->import_output[k]);
}

bool pool_worker_exited(const PoolWorker *pw) {
        pid_t pid = pw->ready && pw->w ? pw->w->pid : 0;
        if (pid <= 0)
                return false;
        /* WNOWAIT: look, do not reap (pool_reap and worker_stop do). */
        siginfo_t si = {};
        if (waitid(P_PID, (id_t) pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
                return true;
        return pw->proc_fd >= 0 && proc_status_doomed(pw->proc_fd);
}

/* The blank worker, if this start may take it (pool lock held): only an
 * env's worker of the full sandbox without datasets, whose dirs are what
 * adoption passes. */
static Worker *blank_take(Engine *e, const PoolWorker *pw) {
        if (!e->pool.blank || pw->mode != SANDBOX_MODE_FULL || pw->validator || (pw->data && pw->data[0]))
                return NULL;
        return TAKE_PTR(e->pool.blank);
}

/* Hands the env's store dirs to the blank worker w: one read-only mount
 * per dir, made here (sandbox_store_mount_open()), passed in "attach"
 * messages of at most WORKER_PROTO_MAX_FDS fds; the worker attaches them
 * at the paths an exec'd env worker has them bound at, and seals them at
 * "init" (worker_init(), sent next). */
static int worker_adopt(Engine *e, Worker *w, char *const *sys_path, int cancel_fd, char **ret_error) {
        int r = worker_hello(e, w, cancel_fd, ret_error);
        if (r < 0)
                return r;
        size_t n = strv_length((char **) sys_path);
        for (size_t i = 0; i < n; i += WORKER_PROTO_MAX_FDS) {
                size_t k = MIN(n - i, (size_t) WORKER_PROTO_MAX_FDS);
                int fds[WORKER_PROTO_MAX_FDS];
                size_t got = 0;
                json_t *names = json_array();
                for (; r >= 0 && got < k; got++) {
                        _cleanup_free_ char *inside = sandbox_inside_path(sys_path[i + got]);
                        fds[got] = sandbox_store_mount_open(sys_path[i + got], ret_error);
                        if (fds[got] < 0) {
                                r = fds[got];
                                break;
                        }
                        json_array_append_new(names, json_string(strrchr(inside, '/') + 1));
                }
                json_t *m = json_pack("{s:s, s:o}", "type", "attach", "names", names);
                _cleanup_free_ char *text = r >= 0 ? json_dumps(m, JSON_COMPACT) : NULL;
                json_decref(m);
                if (r >= 0) {
                        r = worker_send(w, text, fds, got);
                        if (r < 0)
                                *ret_error = xasprintf("passing the env's dirs to the worker: %s", strerror(-r));
                }
                for (size_t j = 0; j < got; j++)
                        close(fds[j]);
                if (r < 0)
                        return r;
        }
        w->adopted = true;
        return 0;
}

Worker *pool_blank_start(Engine *e) {
        pthread_mutex_lock(&e->pool.lock);
        bool want = e->pool.blank_enabled && !e->pool.blank;
        pthread_mutex_unlock(&e->pool.lock);
        if (!want)
                return NULL;
        Worker *w = NULL;
        _cleanup_free_ char *err = NULL;
        if (worker_spawn(e, SANDBOX_MODE_FULL, NULL, NULL, &w, &err) < 0) {
                log_warn("cannot start the blank worker: %s", err ? err : "?");
                return NULL;
        }
        return w;
}

void pool_blank_publish(Engine *e, Worker *w, bool wait_ready) {
        if (!w)
                return;
        _cleanup_free_ char *err = NULL;
        int r = wait_ready ? worker_hello(e, w, e->prewarm_cancel_fd, &err) : 0;
        if (r < 0) {
                if (r != -ECANCELED)
                        log_warn("the blank worker did not start: %s", err ? err : "?");
                worker_stop(w);
                return;
        }
        pthread_mutex_lock(&e->pool.lock);
        if (!e->pool.blank && e->pool.blank_enabled)
                e->pool.blank = TAKE_PTR(w);
        pthread_mutex_unlock(&e->pool.lock);
        worker_stop(w);
}

/* The worker of key to hand out (pool lock held): runs share the first
 * live one (the list is not read further: every run and invoke comes
 * here); a validation takes an idle validator. NULL: none is there
 * (*ret_count tells how many live ones, idle or not, are). */
static PoolWorker *pool_find(Engine *e, const char *key, bool validator, unsigned *ret_count) {
        unsigned n = 0;
        PoolWorker *found = NULL;
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next) {
                if (pw->dead || !streq(pw->key, key))
                        continue;
                /* A worker that crashed since the janitor last looked must
                 * not get this run. */
                if (pool_worker_exited(pw)) {
                        pw->dead = true;
                        continue;
                }
                n++;
                if (!validator) {
                        found = pw;
                        break;
                }
                if (!found && pw->ready && pw->busy == 0)
                        found = pw;
        }
        *ret_count = n;
        return found;
}

/* engine-internal.h */
bool cancel_asked(int cancel_fd) {
        struct pollfd p = { .fd = cancel_fd, .events = POLLIN };
        return cancel_fd >= 0 && poll(&p, 1, 0) > 0;
}

int pool_acquire(Engine *e, SandboxMode mode, const RunLimits *limits, char *const *sys_path, char *const *data,
                 PoolRole role, PoolWorker **ret, bool *ret_cold, char **ret_error) {
        return pool_acquire_cancellable(e, mode, limits, sys_path, data, role, -EBADF, ret, ret_cold, ret_error);
}

int pool_acquire_cancellable(Engine *e, SandboxMode mode, const RunLimits *limits, char *const *sys_path,
                             char *const *data, PoolRole role, int cancel_fd, PoolWorker **ret, bool *ret_cold,
                             char **ret_error) {
        _cleanup_free_ char *key = pool_key(mode, limits->network, sys_path, data, role);
        bool validator = role != POOL_RUNS;
        pthread_mutex_lock(&e->pool.lock);
        for (;;) {
                if (cancel_asked(cancel_fd)) {
                        pthread_mutex_unlock(&e->pool.lock);
                        *ret_error = xstrdup("cancelled");
                        return -ECANCELED;
                }
                unsigned n;
                PoolWorker *found = pool_find(e, key, validator, &n);
                if (!found && (!validator || n < VALIDATORS_PER_LANE))
                        break;
                if (found && found->ready) {
                        found->busy++;
                        found->last_used = now_monotonic();
                        e->pool.hits++;
                        pthread_mutex_unlock(&e->pool.lock);
                        *ret = found;
                        *ret_cold = false;
                        return 0;
                }
                /* Someone is starting it, or every validator of the
                 * lane is busy: wait for a start, a release, or a cancel
                 * (engine_cancel() broadcasts too). */
                pthread_cond_wait(&e->pool.changed, &e->pool.lock);
        }
        PoolWorker *pw = xcalloc(1, sizeof(PoolWorker));
        pw->key = xstrdup(key);
        for (char *const *p = sys_path; p && *p; p++)
                pw->sys_path = strv_append(pw->sys_path, *p);
        for (char *const *d = data; d && *d; d++)
                pw->data = strv_append(pw->data, *d);
        pw->mode = mode;
        pw->network = limits->network;
        pw->validator = validator;
        pw->busy = 1;
        pw->proc_fd = -EBADF;
        pthread_mutex_init(&pw->io_lock, NULL);
        pw->next = e->pool.workers;
        e->pool.workers = pw;
        e->pool.misses++;
        Worker *blank = blank_take(e, pw);
        if (blank) {
                e->pool.blank_adoptions++;
                pw->blank_taken = true;
        }
        pthread_mutex_unlock(&e->pool.lock);

        /* A blank worker, started ahead, adopts the env (issue 15, cold
         * env, round 10): its sandbox and CPython are up already. If it
         * cannot (it died, the kernel refuses a mount), a worker is
         * exec'd for the env as always. */
        int r = -ENOENT;
        if (blank) {
                _cleanup_free_ char *err = NULL;
                r = worker_adopt(e, blank, pw->sys_path, cancel_fd, &err);
                if (r >= 0) {
                        pw->w = TAKE_PTR(blank);
                        r = worker_init(e, pw, cancel_fd, &err);
                        if (r < 0)
                                pw->w = worker_stop(pw->w);
                }
                if (r < 0 && r != -ECANCELED)
                        log_warn("the blank worker could not adopt the env (%s): starting one", err ? err : "?");
                if (r == -ECANCELED)
                        *ret_error = TAKE_PTR(err);
                blank = worker_stop(blank);
        }
        if (r < 0 && r != -ECANCELED) {
                r = worker_start(e, mode, pw->sys_path, pw->data, cancel_fd, &pw->w, ret_error);
                if (r >= 0)
                        r = worker_init(e, pw, cancel_fd, ret_error);
        }
        /* Its PSS is read later, off the path of the run waiting for it
         * (pool_worker_measure_new()), or at its first release. */
        if (r >= 0)
                engine_janitor_start(e);

        pthread_mutex_lock(&e->pool.lock);
        if (r < 0) {
                for (PoolWorker **p = &e->pool.workers; *p; p = &(*p)->next)
                        if (*p == pw) {
                                *p = pw->next;
                                break;
                        }
        } else {
                pw->ready = true;
                pw->proc_fd = proc_status_open(pw->w->pid);
                pw->last_used = now_monotonic();
                /* Issue 15, cold env: no spare slots asked for here. Every
                 * cold acquire has a run (or a validation) waiting for this
                 * worker, and a slot's cgroups, output dir and fork raced
                 * that run's own (the kernel's cgroup mutex, the CPU): they
                 * are asked for at its release ("after a run, not during
                 * one", pool_release), as the zygote forks no spare before
                 * that run anyway (worker.c, zygote_settle). */
        }
        pthread_cond_broadcast(&e->pool.changed);
        pthread_mutex_unlock(&e->pool.lock);
        if (r < 0) {
                pool_worker_free(pw);
                return r;
        }
        *ret = pw;
        *ret_cold = true;
        return 0;
}

/* A worker never measured yet: its tree's PSS now, counted as this
 * second's reading (pool_release()). Issue 15, cold env (round 11b):
 * pool_acquire() walked a new worker's page tables (smaps_rollup of the
 * worker, its zygote, its init: ~1 ms here) between its "ready" and the
 * run it was started for, and its first release walked them again before
 * that run's answer. The run thread calls this once the run is sent,
 * while it would only wait for the run's result. */
void pool_worker_measure_new(Engine *e, PoolWorker *pw) {
        usec_t never = 0;
        if (!pw || !pw->w ||
            !__atomic_compare_exchange_n(&pw->pss_measured, &never, now_monotonic(), false, __ATOMIC_RELAXED,
                                         __ATOMIC_RELAXED))
                return;
        uint64_t pss = engine_process_tree_pss(pw->w->pid);
        pthread_mutex_lock(&e->pool.lock);
        if (!pw->dead)
                pw->pss_bytes = pss;
        pthread_mutex_unlock(&e->pool.lock);
}

void pool_release(Engine *e, PoolWorker *pw, bool broken) {
        if (!pw)
                return;
        /* Re-measure now and then (memory grows as children come and go),
         * while our reference keeps pw alive and before taking the pool
         * lock: reading /proc for a worker and its spares must not hold up
         * every other thread's acquire. At most once a second per worker:
         * smaps_rollup walks every page table of the worker and of each
         * child (issue 15: at 150 runs/s, one read per 16 runs was ~4% of
         * the ad-hoc path's CPU); the janitor's budget check runs once a
         * second anyway. */
        bool measured = false;
        uint64_t pss = 0;
        usec_t now = now_monotonic(), last = __atomic_load_n(&pw->pss_measured, __ATOMIC_RELAXED);
        __atomic_fetch_add(&pw->releases, 1, __ATOMIC_RELAXED);
        if (!broken && pw->w && now - last >= USEC_PER_SEC &&
            __atomic_compare_exchange_n(&pw->pss_measured, &last, now, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                pss = engine_process_tree_pss(pw->w->pid);
                measured = true;
        }
        pthread_mutex_lock(&e->pool.lock);
        pw->busy--;
        pw->last_used = now_monotonic();
        if (broken)
                pw->dead = true;
        /* Refill spare slots after a run, not during one (see request_slots);
         * ahead of the janitor's other work while other runs are in flight
         * (pool_take_slot()). */
        if (!pw->dead && pw->ready && !pw->validator && pw->mode == SANDBOX_MODE_FULL && e->pool.spares)
                request_slots(e, pw, slot_batch(e), pool_worker_runs(e, pw, NULL) > 0);
        if (measured && !pw->dead)
                pw->pss_bytes = pss;
        /* The blank worker this one's start took is replaced after its
         * first run, not during it, and not right after it either: its
         * start-up (~30 ms of CPU) would compete with that run and with
         * the spares the worker makes next. The janitor's tick
         * (pool_reap) starts it once BLANK_REFILL_DELAY has passed. */
        if (pw->blank_taken) {
                pw->blank_taken = false;
                e->pool.blank_due_at = now_monotonic() + BLANK_REFILL_DELAY_USEC;
        }
        PoolWorker *victims = collect_evictions(e, now_monotonic());
        /* Waiters of changed wait for a worker being started to be ready
         * (pool_acquire() wakes them), which a release never changes, or
         * for a validator to become idle, which it does; instance waiters
         * have their own (round 8). */
        if (pw->validator)
                pthread_cond_broadcast(&e->pool.changed);
        pthread_mutex_unlock(&e->pool.lock);
        stop_list(victims);
}

void pool_reap(Engine *e) {
        pthread_mutex_lock(&e->pool.lock);
        /* Only workers linked in the pool, under its lock: an unlinked one
         * belongs to whoever unlinked it, who waits for it (worker_stop). */
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next) {
                if (!pw->ready || !pw->w || pw->w->pid <= 0)
                        continue;
                if (waitpid(pw->w->pid, NULL, WNOHANG) == pw->w->pid) {
                        pw->w->pid = 0;
                        pw->dead = true;
                }
        }
        /* The blank worker is no pool worker: a dead one is reaped here
         * too (no zombie waiter left), and replaced. */
        Worker *dead_blank = NULL;
        if (e->pool.blank && e->pool.blank->pid > 0 &&
            waitpid(e->pool.blank->pid, NULL, WNOHANG) == e->pool.blank->pid) {
                e->pool.blank->pid = 0;
                dead_blank = TAKE_PTR(e->pool.blank);
        }
        bool refill = e->pool.blank_due_at && now_monotonic() >= e->pool.blank_due_at;
        if (refill)
                e->pool.blank_due_at = 0;
        PoolWorker *victims = collect_evictions(e, now_monotonic());
        pthread_mutex_unlock(&e->pool.lock);
        stop_list(victims);
        worker_stop(dead_blank);
        if (dead_blank || refill)
                pool_blank_publish(e, pool_blank_start(e), false);
}

bool pool_uses_dirs(Engine *e, char *const *dirs) {
        bool used = false;
        pthread_mutex_lock(&e->pool.lock);
        for (PoolWorker *pw = e->pool.workers; pw && !used; pw = pw->next)
                for (char *const *d = dirs; d && *d && !used; d++)
                        used = strv_contains(pw->sys_path, *d);
        pthread_mutex_unlock(&e->pool.lock);
        return used;
}

void pool_sweep(Engine *e) {
        pthread_mutex_lock(&e->pool.lock);
        PoolWorker *victims = collect_evictions(e, now_monotonic());
        pthread_mutex_unlock(&e->pool.lock);
        stop_list(victims);
}

void pool_shutdown_begin(Engine *e) {
        pthread_mutex_lock(&e->pool.lock);
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next)
                worker_stop_begin(pw->w);
        worker_stop_begin(e->pool.blank);
        pthread_mutex_unlock(&e->pool.lock);
}

void pool_shutdown(Engine *e) {
        pthread_mutex_lock(&e->pool.lock);
        PoolWorker *all = e->pool.workers;
        e->pool.workers = NULL;
        e->pool.blank_enabled = false;
        Worker *blank = TAKE_PTR(e->pool.blank);
        assert(!e->pool.instances);
        pthread_mutex_unlock(&e->pool.lock);
        worker_stop_begin(blank);
        stop_list(all);
        worker_stop(blank);
}

/* Runs in flight on pw (pool lock held). pw->busy also counts the
 * references its warm instances and the janitor's pending spare slots
 * hold: a worker hosting an idle instance is not busy. */
static unsigned pool_worker_runs(Engine *e, const PoolWorker *pw, unsigned *ret_instances) {
        unsigned held = pw->slots_pending, instances = 0;
        for (Instance *i = e->pool.instances; i; i = i->next)
                if (i->parent == pw)
                        instances++;
        held += instances;
        if (ret_instances)
                *ret_instances = instances;
        return pw->busy > held ? pw->busy - held : 0;
}

bool pool_worker_alone(Engine *e, PoolWorker *pw) {
        pthread_mutex_lock(&e->pool.lock);
        bool alone = pool_worker_runs(e, pw, NULL) <= 1;
        pthread_mutex_unlock(&e->pool.lock);
        return alone;
}

int engine_pool_stats(Engine *e, EnginePoolStats *ret) {
        EnginePoolStats s = {};
        pthread_mutex_lock(&e->pool.lock);
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next) {
                s.workers++;
                if (pool_worker_runs(e, pw, NULL) > 0)
                        s.busy++;
                s.pss_bytes += pw->pss_bytes;
        }
        for (Instance *i = e->pool.instances; i; i = i->next) {
                s.instances++;
                if (i->busy)
                        s.instances_busy++;
        }
        s.hits = e->pool.hits;
        s.misses = e->pool.misses;
        s.evictions = e->pool.evictions;
        s.spare_hits = e->pool.spare_hits;
        s.spare_misses = e->pool.spare_misses;
        s.memory_budget = e->pool.memory_budget;
        pthread_mutex_unlock(&e->pool.lock);
        *ret = s;
        return 0;
}

int engine_pool_list(Engine *e, char **ret_json) {
        json_t *arr = json_array();
        pthread_mutex_lock(&e->pool.lock);
        usec_t now = now_monotonic();
        for (PoolWorker *pw = e->pool.workers; pw; pw = pw->next) {
                json_t *paths = json_array();
                for (char **p = pw->sys_path; p && *p; p++)
                        json_array_append_new(paths, json_string(*p));
                json_t *failed = json_array();
                for (char **f = pw->failed_imports; f && *f; f++)
                        json_array_append_new(failed, json_string(*f));
                unsigned instances, runs = pool_worker_runs(e, pw, &instances);
                json_array_append_new(arr, json_pack("{s:s, s:i, s:b, s:b, s:i, s:i, s:I, s:f, s:o, s:i, s:o}", "kind",
                                                     pw->validator ? "validator" : "worker", "pid", pw->w ? (int) pw->w->pid : 0, "ready", pw->ready,
                                                     "network", pw->network, "busy", (int) runs, "instances",
                                                     (int) instances, "pss_bytes", (json_int_t) pw->pss_bytes, "idle_s",
                                                     runs ? 0.0 : (double) (now - pw->last_used) / 1e6, "sys_path",
                                                     paths, "imported", (int) pw->n_imported, "failed_imports", failed));
                /* Issue 15, cold env (round 10): a worker that was the
                 * blank one, and how long before its env came it started. */
                json_t *last = json_array_get(arr, json_array_size(arr) - 1);
                json_object_set_new(last, "adopted", json_boolean(pw->w && pw->w->adopted));
                json_object_set_new(last, "age_s", json_real(pw->w ? (double) (now - pw->w->started) / 1e6 : 0.0));
        }
        if (e->pool.blank)
                json_array_append_new(arr, json_pack("{s:s, s:i, s:f, s:I}", "kind", "blank", "pid",
                                                     (int) e->pool.blank->pid, "age_s",
                                                     (double) (now - e->pool.blank->started) / 1e6, "adoptions",
                                                     (json_int_t) e->pool.blank_adoptions));
        for (Instance *i = e->pool.instances; i; i = i->next)
                json_array_append_new(arr, json_pack("{s:s, s:s, s:i, s:b, s:I, s:f, s:b, s:I}", "kind", "instance",
                                                     "function", i->key, "pid", (int) i->pid, "busy", i->busy,
                                                     "invocations", (json_int_t) i->invocations, "idle_s",
                                                     i->busy ? 0.0 : (double) (now - i->last_used) / 1e6,
                                                     "frozen", i->frozen, "freezes", (json_int_t) i->freezes));
        pthread_mutex_unlock(&e->pool.lock);
        char *s = json_dumps(arr, JSON_COMPACT);
        json_decref(arr);
        if (!s)
                return -ENOMEM;
        *ret_json = s;
        return 0;
}

/* ---- spare slots: spares that joined their run's cgroup ahead of time ---- */

void pool_slot_free(SpareSlot *s) {
        if (!s)
                return;
        if (s->rs)
                engine_sandbox_run_finish(s->rs);
        if (s->out_host) {
                int r = rm_rf(s->out_host);
                if (r < 0 && r != -ENOENT)
                        log_warn("cannot remove %s: %s", s->out_host, strerror(-r));
        }
        free(s->out_host);
        free(s->tag);
        free(s);
}

/* The spare's output dir, made now so that it can mount it while idle and
 * seal its sandbox before any code of the env runs in it; the run that
 * takes the spare uses it as its /out (engine-run.c). Same owner and mode
 * as a run's dir. A tenant-free kept dir of this worker (an earlier
 * spare's, left exactly as made: engine-outdir.c) is renamed to it rather
 * than a new one made. NULL when the worker has no output root (no /out). */
static int slot_out_dir(Engine *e, PoolWorker *pw, const char *tag, char **ret) {
        *ret = NULL;
        if (!pw->w->out_root)
                return 0;
        _cleanup_free_ char *dir = path_join_many(pw->w->out_root, "root", tag, NULL);
        if (!engine_out_kept_take_free(e, dir)) {
                if (mkdir(dir, 0700) < 0)
                        return -errno;
                /* The worker's own uid; the spare makes it its own. */
                (void) sandbox_host_chown(dir, pw->w->pid);
                engine_out_fresh_flags_learn(e, dir);
        }
        *ret = TAKE_PTR(dir);
        return 0;
}

/* Runs in flight on a worker from which its new spares are made cold. */
#define SLOTS_COLD_RUNS 2

void pool_make_slot(Engine *e, PoolWorker *pw) {
        static uint64_t counter;
        RunSandbox *rs = NULL;
        _cleanup_free_ char *err = NULL;
        char tag[48];
        snprintf(tag, sizeof(tag), "sp%llu", (unsigned long long) __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
        bool made = false;
        _cleanup_free_ char *out_host = NULL;
        if (!pw->dead && engine_sandbox_run_prepare(e, tag, pw->mode, &e->defaults, &rs, &err) >= 0) {
                if (!engine_sandbox_run_has_cgroup(rs)) {
                        /* No run cgroups here: nothing to join ahead; the
                         * worker forks its own spares instead. */
                        pw->no_slots = true;
                        _cleanup_free_ char *msg = xasprintf("{\"type\":\"spares\",\"count\":%u}", (unsigned) e->pool.spares);
                        pthread_mutex_lock(&pw->io_lock);
                        (void) worker_send(pw->w, msg, NULL, 0);
                        pthread_mutex_unlock(&pw->io_lock);
                } else if (slot_out_dir(e, pw, tag, &out_host) >= 0) {
                        int fds[8];
                        size_t n = 0;
                        _cleanup_free_ char *ignored = NULL;
                        engine_sandbox_run_extra(rs, fds, &n, ELEMENTSOF(fds), &ignored);
                        /* "warm": false while other runs are in flight: the
                         * spare skips its warm-up run (~0.2 ms of CPU per
                         * run in all) until its worker is idle; a busy
                         * machine has no CPU to spare for it (issue 15 (c),
                         * round 8). A run alone keeps warm spares (goal (a)). */
                        pthread_mutex_lock(&e->pool.lock);
                        bool busy = pool_worker_runs(e, pw, NULL) >= SLOTS_COLD_RUNS;
                        pthread_mutex_unlock(&e->pool.lock);
                        /* "seal": the spare finishes its sandbox while idle
                         * (docs/workers.md "Spares and cgroups"). */
                        _cleanup_free_ char *msg =
                                out_host ? xasprintf("{\"type\":\"spare\",\"tag\":\"%s\",\"seal\":true,\"warm\":%s,\"out\":\"%s\"}",
                                                     tag, busy ? "false" : "true", tag)
                                         : xasprintf("{\"type\":\"spare\",\"tag\":\"%s\",\"seal\":true,\"warm\":%s}", tag,
                                                     busy ? "false" : "true");
                        pthread_mutex_lock(&pw->io_lock);
                        made = worker_send(pw->w, msg, fds, n) >= 0;
                        pthread_mutex_unlock(&pw->io_lock);
                }
        }
        pthread_mutex_lock(&e->pool.lock);
        pw->slots_pending--;
        if (made) {
                SpareSlot *s = xcalloc(1, sizeof(SpareSlot));
                s->tag = xstrdup(tag);
                s->rs = TAKE_PTR(rs);
                s->out_host = TAKE_PTR(out_host);
                SpareSlot **p = &pw->slots;
                while (*p)
                        p = &(*p)->next;
                *p = s;
        }
        pthread_mutex_unlock(&e->pool.lock);
        if (rs)
                engine_sandbox_run_finish(rs);
        if (out_host)
                (void) rmdir(out_host);
        pool_release(e, pw, false);
}

/* Moving a process into a cgroup waits for an RCU grace period, and while
 * it waits every fork and exit on the machine stalls. Spares therefore
 * join in batches — one grace period for the whole batch — and, for a run
 * alone on its worker, only when the worker has run out down to one slot.
 * With runs in flight (concurrent: the caller says so), the slots are kept
 * topped up instead, to the batch plus one per run in flight (at most
 * SLOTS_MAX_IN_FLIGHT more): asked for as runs take them, while earlier
 * ones are still being made. Waiting for a whole batch to be made before
 * asking for the next left 8-15% of the runs at wrk -c8 without a slot
 * (round 7): they came while the worker was down to its last one and the
 * next batch was still in the janitor's queue. Called with the pool lock. */
#define SLOTS_MAX_IN_FLIGHT 8

static void make_slot_work(Engine *e, void *pw) {
        pool_make_slot(e, pw);
}

unsigned pool_slots_to_ask(unsigned ready, unsigned pending, unsigned runs, unsigned batch, bool concurrent) {
        unsigned have = ready + pending;
        if (concurrent) {
                unsigned want = batch + MIN(runs, (unsigned) SLOTS_MAX_IN_FLIGHT);
                return have < want ? want - have : 0;
        }
        return have > 1 || pending ? 0 : batch;
}

static void request_slots(Engine *e, PoolWorker *pw, unsigned batch, bool concurrent) {
        unsigned ready = 0;
        for (SpareSlot *s = pw->slots; s; s = s->next)
                ready++;
        unsigned ask = pool_slots_to_ask(ready, pw->slots_pending, pool_worker_runs(e, pw, NULL), batch, concurrent);
        for (unsigned i = 0; i < ask && !pw->no_slots && !pw->dead; i++) {
                pw->slots_pending++;
                pw->busy++; /* the janitor's reference */
                if (concurrent)
                        engine_janitor_defer_first(e, make_slot_work, pw);
                else
                        engine_janitor_defer(e, make_slot_work, pw, true);
        }
}

static unsigned slot_batch(Engine *e) {
        return (unsigned) MAX(e->pool.spares * 2, (size_t) 4);
}

SpareSlot *pool_take_slot(Engine *e, PoolWorker *pw) {
        if (pw->mode != SANDBOX_MODE_FULL || pw->validator || !e->pool.spares)
                return NULL;
        pthread_mutex_lock(&e->pool.lock);
        SpareSlot *s = pw->slots;
        if (s)
                pw->slots = s->next;
        if (s)
                e->pool.spare_hits++;
        else
                e->pool.spare_misses++;
        /* With other runs in flight, refill as a run takes a slot, not when
         * it ends: a spare takes a fork and its sandbox's set-up
         * (milliseconds) before it is ready, and at wrk -c8 the runs in
         * flight took the rest meanwhile. A run alone on the worker leaves
         * the refill to its end (pool_release()), between its answer and
         * the next request, so the forks do not compete with it for the
         * CPUs (sequential p50, goal (a)). */
        if (!pw->dead && pw->ready && pool_worker_runs(e, pw, NULL) > 1)
                request_slots(e, pw, slot_batch(e), true);
        pthread_mutex_unlock(&e->pool.lock);
        return s;
}

bool pool_has_ready(Engine *e, const char *key) {
        assert(e && key);
        bool found = false;
        pthread_mutex_lock(&e->pool.lock);
        for (PoolWorker *pw = e->pool.workers; pw && !found; pw = pw->next)
                found = !pw->dead && pw->ready && !pw->validator && streq(pw->key, key);
        pthread_mutex_unlock(&e->pool.lock);
        return found;
}
