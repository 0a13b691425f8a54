/* Internal to the engine module: the pieces engine-run.c stitches
 * together. Each piece lives in its own file so it can evolve on its own:
 * engine-worker.c (a worker process and its protocol), engine-sandbox.c
 * (how workers and runs are isolated and killed), engine-resolve.c
 * (requirements -> the env's store dirs). */
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include "engine.h"
#include "pkg.h"
#include "store.h"
#include "shared.h"

typedef struct ActiveRun ActiveRun;
typedef struct PoolWorker PoolWorker;
typedef struct Instance Instance;
typedef struct RunSandbox RunSandbox;
/* What a new instance printed while its module loaded (instance_start()),
 * for the log of the call that started it, in the order read: records of
 * a stream (1, 2), the time of its first read and its bytes, one for each
 * run of reads of one stream (instance_output_next() walks them). */
typedef struct InstanceOutput {
        Buf records;
        size_t last;    /* the last record's offset + 1; 0: none */
        uint64_t bytes; /* the output's bytes, records' headers not counted */
} InstanceOutput;
void instance_output_free(InstanceOutput *o);
/* The record at *pos (0 first), *pos moved past it; false after the last. */
bool instance_output_next(const InstanceOutput *o, size_t *pos, int *ret_stream, usec_t *ret_ts, const char **ret_data,
                          size_t *ret_len);
/* Work the janitor thread does (engine-janitor.c). */
typedef void (*JanitorWork)(Engine *e, void *arg);

typedef struct Pool {
        pthread_mutex_t lock;
        /* Waited on by pool_acquire() for a worker another thread starts;
         * broadcast when one is ready (or failed). Instance waiters do not
         * use it: each waits on its own (InstanceWaiter, engine-instance.c),
         * and a release wakes one waiter of its key, not every thread. */
        pthread_cond_t changed;
        struct InstanceWaiter *instance_waiters; /* FIFO, pool lock */
        PoolWorker *workers;
        Instance *instances;
        size_t spares;             /* pre-forked children per worker */
        /* The CLI's engine (EngineConfig.short_lived): its workers settle
         * only before a second run, never in idle time (worker.c). */
        bool settle_on_demand;
        uint64_t memory_budget;    /* bytes of PSS; 0 = unlimited */
        usec_t idle_timeout_usec;  /* stop workers idle this long; 0 = never */
        usec_t instance_ttl_usec;  /* retire idle instances after this */
        /* The instance freezer (engine-instance.c): freezes instances idle
         * past the grace; started with the first idle instance. */
        pthread_t freezer;
        pthread_cond_t freezer_wake; /* CLOCK_MONOTONIC */
        bool freezer_started, freezer_stop;
        bool freezer_waiting;      /* asleep with no deadline: signal it */
        /* An acquire that took an instance the freezer is freezing waits
         * here for the write to end (then thaws it). Initialised with
         * freezer_wake. */
        pthread_cond_t freeze_done;
        usec_t freeze_grace_usec;  /* $PYSPRINTER_INSTANCE_FREEZE_GRACE_MS, else 20 ms */
        struct SourceMemo *memos;  /* deployed sources validated (engine-instance.c) */
        unsigned n_memos;
        size_t memo_bytes;
        uint64_t hits, misses, evictions;
        /* Ad-hoc runs in the full sandbox that found a spare slot ready
         * (spare_hits) or were forked directly (spare_misses). */
        uint64_t spare_hits, spare_misses;
        /* The blank worker (issue 15, cold env, round 10): sandboxed,
         * CPython up, no env, never sent anything but "attach" and "init"
         * by the env that adopts it. NULL when none is ready to take;
         * blank_enabled: the daemon keeps one (EngineConfig.prewarm in the
         * full sandbox, unless $PYSPRINTER_BLANK_WORKER=0). */
        struct Worker *blank;
        bool blank_enabled;
        usec_t blank_due_at; /* replace it then (pool_reap); 0: not due */
        uint64_t blank_adoptions;
} Pool;

/* Validation results by hash of (source, filename, function, arguments):
 * validation is a pure function of those, so a repeated run skips it. */
typedef struct ValidationCache ValidationCache;

/* How many unsignalled cancel eventfds an engine keeps (runs at once). */
#define ENGINE_SPARE_CANCEL_FDS 64

struct Engine {
        const PkgPeers *peers; /* a cluster's (engine_set_peers), or NULL */
        char *data_dir;
        int home_lock; /* shared flock on $DATA/pysprinterd.lock (store_home_lock) */
        char *worker_path;
        char *launcher_path; /* pysprinter-worker-sandbox beside it, or NULL */
        char *store_dir;   /* $DATA/store: package store, bound read-only */
        char *logs_dir;    /* $DATA/logs */
        char *out_dir;     /* $DATA/outputs: one dir per run in flight (/out) */
        char *out_owner;   /* "<pid>-<start time>" of this process: the prefix of
                            * its entries in out_dir, swept once it is gone */
        uint64_t max_out_bytes; /* cap of what a run writes to /out */
        uint64_t max_out_files; /* cap of the entries it leaves there */
        RunLimits defaults;
        RunLimits maxima;
        char *index_url;
        char **extra_index_urls;
        char **find_links;
        char **allow_packages; /* normalised */
        char **deny_packages;
        Store *store;
        bool record_owner;   /* EngineConfig.record_owner */
        pthread_mutex_t lock; /* guards active and the spare cancel fds */
        ActiveRun *active;
        /* The eventfds of runs that ended uncancelled (never signalled),
         * for the next runs: an invoke makes and closes none (issue 15). */
        int spare_cancel_fds[ENGINE_SPARE_CANCEL_FDS];
        size_t n_spare_cancel_fds;
        Pool pool;
        ValidationCache *vcache;
        ValidationCache *envcache; /* engine-resolve.c: pinned environments */
        /* engine-resolve.c: the environments held (struct EnvHold, under
         * holds_lock; taken before the pool lock, never under it), and how
         * long one nothing uses stays held (EngineConfig.env_idle_timeout_ms). */
        pthread_mutex_t holds_lock;
        struct EnvHold *holds;
        usec_t env_idle_usec;
        /* engine-resolve.c: pkg_store_repair_stamp() as the pinned
         * environments last saw it, and their generation (part of a pin's
         * key: a repair's store removals make every pin a miss). Atomics. */
        uint64_t repair_stamp;
        unsigned pin_gen;
        /* Ad-hoc runs known to begin without waiting (engine_run_ready()):
         * network flag + validation key -> the pool key of the ready
         * worker a run of them took. */
        ValidationCache *readycache;
        /* engine-run.c: empty output dirs of finished full-sandbox runs,
         * kept for the next run of the same tenant in the same worker. */
        pthread_mutex_t out_spare_lock;
        struct OutSpare *out_spares;
        /* engine-sandbox.c: finished ad-hoc runs' cgroups, emptied, for the
         * next spares (sandbox_cgroup_recycle()); under out_spare_lock. A
         * ring, taken oldest first: every kept group comes back in turn. */
        struct SandboxCgroup *cg_spares[64];
        size_t cg_spares_head;
        size_t n_cg_spares;
        size_t n_out_spares;
        long out_fresh_flags;      /* a fresh output dir's inode flags, -1: not known yet */
        long out_fresh_size;       /* a fresh output dir's st_size, -1: not known yet */
        pthread_t prewarm_thread;
        bool prewarm_started;
        /* Written by engine_free(): a prewarm still starting its workers
         * stops (they are killed), so a process whose run ended before it
         * needed them (a refusal) does not wait for their start to exit. */
        int prewarm_cancel_fd;
        bool validator_apart; /* EngineConfig's */
        SandboxMode prewarm_mode;
        /* engine-janitor.c: work off the runs' critical path. */
        JanitorWork janitor_tick; /* every second, on the janitor thread */
        pthread_mutex_t janitor_lock;
        pthread_cond_t janitor_wake;
        pthread_t janitor;
        bool janitor_running, janitor_stop;
        struct JanitorItem *janitor_queue;
        /* Finished runs waiting for their exit report: one poll() over all
         * of them; the janitor sleeps in it (janitor_polling) and is woken
         * by janitor_wake_fd (an eventfd, open while janitor_running). */
        struct FinishAfter *janitor_waits;
        bool janitor_polling;
        int janitor_wake_fd;
        usec_t exit_report_wait_usec; /* 0: EXIT_REPORT_WAIT_MS (tests set it) */
        /* engine-run.c (record_owner): one inotify watch on $DATA/cancel,
         * read by cancel_thread, which acts on the `pysprinter cancel`
         * files of this process's runs (engine_cancel_request()). Started
         * by the first run that can be asked so (under lock): a verb that
         * runs nothing makes neither; engine_free() stops it. A failure to
         * start leaves such asks without effect, and is logged. */
        int cancel_inotify_fd;
        int cancel_stop_fd; /* eventfd: engine_free() stops the thread */
        pthread_t cancel_thread;
        bool cancel_watch_tried, cancel_thread_running;
};

/* engine-outdir.c: kept output dirs, per tenant. Forgets them all
 * (engine_free; the dirs go with their workers' output roots). */
void engine_out_spares_free(Engine *e);
/* Renames a dir kept for tenant, or a tenant-free one, beside dir (same
 * parent) to dir: true when dir is ready; *daemon_born when it was
 * tenant-free (born of a spare: it stays tenant-free). */
bool engine_out_kept_take(Engine *e, const char *tenant, const char *dir, bool *daemon_born);
/* The same for a sealed spare's dir (engine-pool.c): tenant-free ones only. */
bool engine_out_kept_take_free(Engine *e, const char *dir);
/* Keeps *dir for tenant's next run (takes it), or for any next spare of its
 * worker when tenant is NULL (a dir born of a spare), when it is exactly as
 * it was made: true when kept. */
bool engine_out_kept_keep(Engine *e, const char *tenant, char **dir);
/* Learns a fresh output dir's inode flags, once (out_dir_pristine's
 * reference). */
void engine_out_fresh_flags_learn(Engine *e, const char *dir);
/* Frees the kept cgroups (engine_free(), after the pool and instances). */
void engine_sandbox_cgroups_free(Engine *e);

/* Hands rs to the janitor thread, which kills what is left of the run and
 * releases its cgroups. engine_free() waits for the queue to drain. */
void engine_janitor_finish(Engine *e, RunSandbox *rs);
/* The same once exit_fd (the run's status socket, taken) is readable: its
 * worker reported the run's processes reaped (or is gone), or after a
 * short grace. */
void engine_janitor_finish_after_exit(Engine *e, RunSandbox *rs, int exit_fd);
/* Queues work(e, arg) for the janitor thread, in order. Without the thread
 * (the engine is stopping) work runs here and now, unless optional: then
 * it is dropped. */
void engine_janitor_defer(Engine *e, JanitorWork work, void *arg, bool optional);
/* The same, optional, ahead of all work queued but other first work: what
 * a run may be waiting for (a spare to make). */
void engine_janitor_defer_first(Engine *e, JanitorWork work, void *arg);
void engine_janitor_stop(Engine *e);
/* Starts the janitor thread if it is not running (it also runs the engine's
 * tick every second: reaping workers that died while idle, timeouts). */
void engine_janitor_start(Engine *e);

/* ---- engine-sandbox.c: isolation of workers and runs ---- */

typedef struct WorkerSpawn {
        const char *worker_path;
        /* pysprinter-worker-sandbox beside it, or NULL: what starts the
         * full sandbox (worker-launch.c: no libpython in the processes
         * outside); without it the worker builds the sandbox itself. */
        const char *launcher_path;
        int ctrl_fd;             /* the worker's end of the socketpair -> fd 3 */
        SandboxMode mode;
        char **ro_paths;         /* host paths the worker needs read-only, bound at the same path */
        char **data;             /* "NAME=/host/dir": bind read-only at /data/NAME */
        const char *data_dir;
        const char *out_root;    /* Worker.out_root (full sandbox), or NULL */
} WorkerSpawn;

/* Starts a worker process as ws describes (fork+exec; never runs CPython in
 * this process). */
int engine_sandbox_spawn_worker(const WorkerSpawn *ws, pid_t *ret_pid, char **ret_error);

/* The store dirs as the worker sees them (sandbox_inside_path() in the
 * full sandbox: no host path reaches a run), for the messages that name
 * them (init's and a run's sys_path). A new strv. */
char **engine_sandbox_worker_paths(SandboxMode mode, char *const *host);

/* Per-run isolation state (RunSandbox): cgroups and whatever else a run needs. */
int engine_sandbox_run_prepare(Engine *e, const char *run_id, SandboxMode mode, const RunLimits *limits,
                               RunSandbox **ret, char **ret_error);
/* The same for a warm instance, whose groups can be frozen. */
int engine_sandbox_instance_prepare(Engine *e, const char *key, SandboxMode mode, const RunLimits *limits,
                                    RunSandbox **ret, char **ret_error);
/* Extra fds to pass with the run message (after stdout/stderr/result) and
 * the JSON object text for its "sandbox" field (may be NULL). The fds stay
 * owned by rs. */
void engine_sandbox_run_extra(RunSandbox *rs, int *fds, size_t *n_fds, size_t max_fds, char **ret_json);
/* The worker reported the run child's pid (in the engine's pid namespace
 * when the worker shares it, else as the worker sees it). */
void engine_sandbox_run_started(RunSandbox *rs, pid_t worker_pid, pid_t child_pid);
/* The worker reported the run child's end: it has reaped it (and, under
 * --sandbox=none, killed what was left in its process group first), so
 * its pid may already name another process and is never signalled again. */
void engine_sandbox_run_exited(RunSandbox *rs);
/* Remove the run cgroups of runners that died without cleaning up. */
int engine_sandbox_sweep(void);
/* Spares made ahead of their runs (engine-pool.c): a run cgroup exists
 * and a spare has joined it; these let the run's own limits in first. */
bool engine_sandbox_run_has_cgroup(const RunSandbox *rs);
/* < 0: the limits could not be set even after the spare was killed (its
 * group emptied); the run must not start in that group. */
int engine_sandbox_run_set_limits(RunSandbox *rs, const RunLimits *limits);
/* The "sandbox" JSON of a run whose child joined its cgroups already. */
void engine_sandbox_run_prejoined_json(RunSandbox *rs, char **ret_json);
/* Freezes or thaws the run's whole process tree (an idle warm instance:
 * nothing of it runs between invocations). -EOPNOTSUPP without a freezer. */
int engine_sandbox_run_freeze(RunSandbox *rs, bool frozen);
/* /proc/PID/status of a host pid, opened O_CLOEXEC, or negative errno.
 * The fd stays bound to that process: once it is reaped, reads fail
 * (ESRCH) rather than show a process that reused the pid. */
int proc_status_open(pid_t pid);
/* Whether the process behind a proc_status_open() fd is gone, a zombie, or
 * has a SIGKILL pending (ShdPnd/SigPnd): it will not serve another
 * request. One pread. */
bool proc_status_doomed(int fd);
/* Its parent's pid (PPid:), or negative errno. */
pid_t proc_status_ppid(int fd);
/* The host pid of the run's own process (engine_sandbox_run_started()'s
 * child_pid is its worker's pid-namespace view, which names another
 * process here), read from its cgroup: the member whose parent is outside
 * the group. -EOPNOTSUPP without a cgroup, -ESRCH/-ENOTUNIQ when the group
 * does not say. */
pid_t engine_sandbox_run_host_pid(const RunSandbox *rs);
/* Kill the run's whole process tree now. */
int engine_sandbox_run_kill(RunSandbox *rs);
/* After the run child ended: did a limit end it? Fills a type ("MemoryLimit",
 * "ProcessLimit", …) and a user-facing message and returns 1, else 0. */
int engine_sandbox_run_classify(RunSandbox *rs, bool signaled, int sig, char **ret_type, char **ret_message);
/* Kill leftovers and release everything the run held. */
RunSandbox *engine_sandbox_run_finish(RunSandbox *rs);

/* ---- engine-resolve.c: requirements -> environment ---- */

/* Resolves and materialises reqs; on success *ret_sys_path lists the store
 * dirs to add with site.addsitedir, in lock order (NULL-terminated, may be
 * empty; always empty with resolve_only, which locks without installing),
 * and *ret_lock_json (may be NULL) the lock as compact JSON (NULL when
 * there are no requirements): the run record keeps it (docs/ui.md).
 * *ret_warnings (may be NULL) what a resolution just made warns of
 * (PkgLock.warnings; NULL: nothing, and always for a cached lock).
 * refresh: resolve against the index again, not from a cached lock (run
 * --no-cache). cancel: the run's cancel flag (PkgEnvOptions.cancel; NULL:
 * none); a cancelled resolution or install is -ECANCELED. On failure
 * *ret_error is the user-facing reason (exit 4). *ret_env_key: the
 * environment the answer holds (see "Holds" below) with one use taken for
 * the caller, who gives it back with engine_env_unuse() once the run is
 * over; NULL when nothing is held (no requirements). */
int engine_resolve_env(Engine *e, PkgRequirement **reqs, size_t n_reqs, bool resolve_only, bool refresh,
                       const char *run_id, const bool *cancel, RunEventFn fn, void *userdata, char ***ret_sys_path,
                       size_t *ret_n_entries, char **ret_lock_json, char ***ret_warnings, char **ret_env_key,
                       char **ret_error);
/* A deployed version's environment from the lock kept since its deploy
 * (RunSpec.lock_json): exactly its wheels, nothing resolved; the same
 * outputs, hold and errors as engine_resolve_env (exit 4), a wheel that
 * can no longer be had named in *ret_error. *ret_lock_json names where
 * the files were had: the same files as lock_json, at other URLs when the
 * index moved (the daemon saves it to the version, daemon-runs.c). */
int engine_env_from_lock(Engine *e, const char *lock_json, const char *run_id, const bool *cancel, RunEventFn fn,
                         void *userdata, char ***ret_sys_path, size_t *ret_n_entries, char **ret_lock_json,
                         char **ret_env_key, char **ret_error);
/* A deployed version's environment, remembered per (instance key,
 * requirements) once it resolved: 1 and *ret_sys_path, *ret_lock_json and
 * *ret_env_key (a use taken, as engine_resolve_env's) set (fn hears
 * "cached lock: N packages", without the lock), 0 when not pinned yet,
 * when the engine released the environment since, or when lock_json (the
 * version's lock now; NULL: none) is not the text pinned (its URLs saved
 * since: the caller installs it, from the store). */
int engine_env_pinned(Engine *e, const char *instance_key, json_t *reqs_json, const char *lock_json, const char *run_id,
                      RunEventFn fn, void *userdata, char ***ret_sys_path, char **ret_lock_json, char **ret_env_key);
/* Remembers what engine_resolve_env answered for (instance_key, reqs);
 * env_key its *ret_env_key (NULL: no environment). */
void engine_env_pin(Engine *e, const char *instance_key, json_t *reqs_json, const char *env_key, char *const *sys_path,
                    size_t n_entries, const char *lock_json);
/* Holds (engine-resolve.c, docs/packages.md "Environments"): the engine
 * keeps the record of each environment it uses flock'ed (LOCK_SH), so
 * `env prune` and the collector leave its store dirs alone, and remembers
 * answers (the pins above, the seen sets) only while it holds them. A
 * hold lives while a run uses it (resolve to engine_env_unuse()) or a
 * warm worker has its dirs on its sys.path; engine_env_release_idle() (the
 * janitor, each tick) lets go of those with neither for
 * Engine.env_idle_usec. engine_env_unuse(NULL) does nothing. */
void engine_env_unuse(Engine *e, const char *env_key);
void engine_env_release_idle(Engine *e);
/* engine_free(), after the pool is down: every hold released. */
void engine_env_holds_free(Engine *e);
/* Whether a worker of the pool (ready, starting or dead, not yet stopped)
 * has one of dirs on its sys.path. Takes the pool lock. */
bool pool_uses_dirs(Engine *e, char *const *dirs);

/* ---- engine-worker.c: one worker process ---- */

typedef struct Worker {
        pid_t pid;
        int sock;
        char *python_version;
        /* Full sandbox: $DATA/outputs/<worker id>, holding root/ (the runs'
         * output dirs, seen by the worker at SANDBOX_OUT_ROOT) and work/
         * (the overlay's work dir); removed when the worker stops. */
        char *out_root;
        usec_t started;  /* when it was spawned (monotonic) */
        bool adopted;    /* a blank worker that took an env (engine-pool.c) */
} Worker;

/* Starts a worker whose sandbox can see sys_path's store dirs and the
 * datasets ("NAME=/host/dir") read-only. cancel_fd (-EBADF: none), once
 * readable, ends the wait for its hello with -ECANCELED, the worker
 * killed. */
int worker_start(Engine *e, SandboxMode mode, char *const *sys_path, char *const *data, int cancel_fd, Worker **ret,
                 char **ret_error);
/* worker_start()'s two halves: the fork+exec (returns at once), and the
 * wait for its "hello" (CPython up, runner loaded; a no-op once read). A
 * blank worker (engine-pool.c) is spawned ahead and its hello read when an
 * env adopts it. */
int worker_spawn(Engine *e, SandboxMode mode, char *const *sys_path, char *const *data, Worker **ret,
                 char **ret_error);
int worker_hello(Engine *e, Worker *w, int cancel_fd, char **ret_error);
/* A start cancelled mid-way (its hello or its init's "ready" still to
 * come, whenever its start or its env's imports end, and no one waits for
 * it now): kills the worker (its whole tree: PDEATHSIG), says "cancelled"
 * and returns -ECANCELED. worker_stop() then reaps it. */
int worker_start_abandon(Worker *w, char **ret_error);
/* Receives one message, waiting at most until deadline (monotonic µs; 0 =
 * forever). -ETIMEDOUT, -ECONNRESET when the worker died. */
int worker_recv(Worker *w, usec_t deadline, char **ret_json, size_t *ret_len);
/* The same, ending with -ECANCELED as soon as cancel_fd (a run's cancel
 * eventfd; -EBADF: none) is readable and no message is. The reply still
 * to come makes the worker's socket unusable: release it as broken. */
int worker_recv_cancellable(Worker *w, usec_t deadline, int cancel_fd, char **ret_json, size_t *ret_len);
int worker_send(Worker *w, const char *json, const int *fds, size_t n_fds);
/* How long worker_stop() lets a worker told to exit take before SIGKILL. */
#define WORKER_EXIT_GRACE_MS 100
/* Tells the worker to exit (its "exit", then its socket closed) without
 * waiting: worker_stop() then waits. Stopping many workers, each is told
 * first, so their exits overlap. */
void worker_stop_begin(Worker *w);
Worker *worker_stop(Worker *w);

/* ---- engine-pool.c: warm workers by environment ---- */

/* A spare the engine asked the worker for: it joined rs's cgroups while
 * idle; the run that takes it names its tag. */
typedef struct SpareSlot {
        char *tag;
        RunSandbox *rs;
        /* The output dir made for the spare (<out root>/root/<tag>), which
         * it mounted as /out while idle; the run renames it to its own. */
        char *out_host;
        struct SpareSlot *next;
} SpareSlot;

struct PoolWorker {
        Worker *w;
        SpareSlot *slots;        /* ready, oldest first */
        unsigned slots_pending;  /* asked for, not ready yet */
        bool no_slots;           /* this machine gives no run cgroups: the worker's own spares */
        char *key;
        char **sys_path;
        char **data;
        SandboxMode mode;
        bool network;
        bool validator; /* validates only (pool_acquire) */
        bool ready;   /* started and initialised */
        bool dead;    /* broken: never handed out again */
        unsigned busy;
        usec_t last_used;
        uint64_t pss_bytes;
        uint64_t releases;
        usec_t pss_measured; /* when pss_bytes was last read (atomic) */
        size_t n_imported;
        char **failed_imports;
        /* What its env's imports printed at init, stdout then stderr (NULL:
         * nothing), until the run that started it takes it
         * (pool_worker_take_import_output()). */
        char *import_output[2];
        bool blank_taken; /* its start took the blank worker: replace it at the first release */
        pthread_mutex_t io_lock; /* one request/reply at a time on w->sock */
        int proc_fd;             /* proc_status_open(w->pid) once ready, else -EBADF */
        PoolWorker *next;
};

/* What a pool worker is for. A validator (no env) is a worker of its own
 * that validates files and never forks a run, spare or instance: what it
 * parses of one tenant's file stays in its heap, and every run forked from
 * a worker inherits that worker's heap (docs/workers.md "Validation").
 * Large files (WORKER_VALIDATE_APART_BYTES) have validators of their own:
 * one takes seconds, and a small file must not wait behind it. */
typedef enum PoolRole {
        POOL_RUNS,
        POOL_VALIDATOR,
        POOL_VALIDATOR_LARGE,
} PoolRole;

/* Whether a run's cancel eventfd (-EBADF: none) has been written; it
 * stays written, so every wait of the run sees it. */
bool cancel_asked(int cancel_fd);
/* A warm worker for this environment (started and initialised if there is
 * none: *ret_cold tells). Must be released. Runs share one worker per key;
 * a validator serves one validation at a time, so a validation takes an
 * idle one, or starts one more up to VALIDATORS_PER_LANE, or waits. */
int pool_acquire(Engine *e, SandboxMode mode, const RunLimits *limits, char *const *sys_path, char *const *data,
                 PoolRole role, PoolWorker **ret, bool *ret_cold, char **ret_error);
/* The same for a run that can be cancelled: cancel_fd (its eventfd,
 * engine_cancel()) ends the wait for a worker another run starts, and
 * the start of one for this run (its env's imports can take seconds: the
 * worker is killed), with -ECANCELED. */
int pool_acquire_cancellable(Engine *e, SandboxMode mode, const RunLimits *limits, char *const *sys_path,
                             char *const *data, PoolRole role, int cancel_fd, PoolWorker **ret, bool *ret_cold,
                             char **ret_error);
void pool_release(Engine *e, PoolWorker *pw, bool broken);
/* Whether the run holding pw is the only one on it: every earlier run
 * of the worker has ended here (its result read), whether or not its
 * child has exited yet (worker.c: the zygote may settle now). */
bool pool_worker_alone(Engine *e, PoolWorker *pw);
/* The PSS of a worker never measured yet, read now (after its first run was sent). */
void pool_worker_measure_new(Engine *e, PoolWorker *pw);
/* The blank worker (Pool.blank): pool_blank_start() spawns one if the
 * engine keeps one and has none (a fork+exec, no wait; NULL otherwise);
 * pool_blank_publish() makes it the one to adopt, once its hello came
 * when wait_ready (the daemon's prewarm: it listens once the blank worker
 * is up, as the validator), at once otherwise (the janitor's tick,
 * pool_reap(): a dead blank worker, or one taken, replaced). */
struct Worker *pool_blank_start(Engine *e);
void pool_blank_publish(Engine *e, struct Worker *w, bool wait_ready);
/* Takes the oldest ready spare slot of pw (NULL if none) and asks for a
 * replacement in the background. */
SpareSlot *pool_take_slot(Engine *e, PoolWorker *pw);
/* Frees a slot taken and not used for a run (its output dir too). */
void pool_slot_free(SpareSlot *s);
/* How many spare slots to ask for, given the worker's ready and pending
 * slots and its runs in flight: a run alone (concurrent false) asks for a
 * batch once down to one slot with none pending; with runs in flight the
 * slots are topped up to batch + runs (runs counted up to 8). */
unsigned pool_slots_to_ask(unsigned ready, unsigned pending, unsigned runs, unsigned batch, bool concurrent);
/* (janitor) Makes one spare slot for pw; consumes a busy reference. */
void pool_make_slot(Engine *e, PoolWorker *pw);
void pool_sweep(Engine *e);
/* (engine-instance.c) Retires every worker that has store dirs on its
 * sys.path and the warm instances it hosts: idle ones now, busy ones as
 * their runs end; none is handed a run again (`env verify --repair`
 * removed packages they may have imported). Returns how many workers. */
unsigned pool_retire_env_workers(Engine *e);
/* Pool lock held: the PSS of every worker as last measured, summed (what
 * the memory budget bounds), and the least recently used idle worker (the
 * budget's next to stop; NULL if none). */
uint64_t pool_pss_total_locked(Engine *e);
PoolWorker *pool_lru_idle_locked(Engine *e);
/* Pool lock held: the least recently used idle instance that the budget
 * may retire (NULL if none; *ret_link: where it is linked); whether one
 * was last used before t. */
Instance *pool_lru_idle_instance_locked(Engine *e, Instance ***ret_link);
bool pool_instance_idle_since_locked(Engine *e, usec_t t);
/* (janitor) Measures again, at most once a second each, the workers that
 * host warm instances invoked since their last reading: their invocations
 * never hand the worker back, when a worker is otherwise measured
 * (pool_release()), so the budget would never see what their instances
 * grew to. */
void pool_measure_instance_hosts(Engine *e);
/* Whether pw's process has exited or is about to (a crash the janitor has
 * not reaped yet, or a SIGKILL it has not acted on: under load a killed
 * process runs its exit some time after kill() returned). Does not reap. */
bool pool_worker_exited(const PoolWorker *pw);
/* What pw's env's imports printed when it started: ret[0] stdout, ret[1]
 * stderr (NULL: nothing), owned by the caller and taken from pw, so that
 * only the run that started it gets it. Called by that run alone (it
 * acquired pw cold): nobody else touches these fields. */
void pool_worker_take_import_output(PoolWorker *pw, char *ret[2]);
/* (janitor) Reaps workers that exited on their own (killed from outside,
 * crashed while idle): marks them dead and stops them. */
void pool_reap(Engine *e);
/* Stops every worker; the instances they host must be gone first
 * (instances_shutdown). */
/* Tells every worker to exit, without waiting (engine_free: what it
 * does next, the store's close, overlaps their exits). */
void pool_shutdown_begin(Engine *e);
void pool_shutdown(Engine *e);
uint64_t engine_process_tree_pss(pid_t pid);

/* ---- engine-instance.c: warm instances of deployed functions ---- */

struct Instance {
        char *key;           /* RunSpec.instance_key */
        PoolWorker *parent;  /* holds a busy reference while we live */
        RunSandbox *sandbox;
        int sock;            /* invocations go here */
        int status_fd;       /* the worker reports the instance's exit here */
        int out_fd, err_fd;  /* read ends of its stdout/stderr, kept for its life
                              * (O_NONBLOCK; -EBADF until its first invoke) */
        bool stale_output;   /* instance_alive() saw bytes in them (or a hang-up) */
        pid_t pid;           /* as its worker sees it (its pid namespace) */
        int doom_fd;         /* instance_doom_open(HOSTPID), -EBADF if unknown */
        int parent_doom_fd;  /* the same of its worker, -EBADF if unknown */
        bool busy, dead;
        /* Its module raised while it loaded ("ready" said so): it answers
         * its one invocation with that error and is retired, so that the
         * next call loads the module again (Lambda runs a failed init
         * again on the next invocation). */
        bool init_failed;
        InstanceOutput load_output; /* printed while its module loaded, for its first call */
        /* Its cgroup is frozen. Changed by its holder while busy, by the
         * freezer while freezing (see below). */
        bool frozen;
        /* The freezer is writing its freezer file, without the pool lock:
         * never retired meanwhile; an acquire may take it (busy) but waits
         * for the write to end (pool.freeze_done) and thaws it before use. */
        bool freezing;
        bool unfreezable;    /* no freezer for it: left running */
        usec_t idle_since;   /* when it last went idle (the freeze grace) */
        uint64_t freezes, thaws; /* cgroup freezer writes (GET /v1/pool) */
        usec_t last_used;
        uint64_t invocations;
        Instance *next;
};
Instance *instance_free(Instance *i);
/* The validation reply of a deployed function's source that passed the
 * source checks and validation, by its validation key without the source
 * (key) and the source's exact bytes: a warm invoke checks the bytes with
 * one memcmp instead of hashing, scanning and copying the whole source
 * (docs/internals/performance-log.md "Invoke path: round 5"). NULL when not memoized. */
/* The reply is kept parsed (round 7: a warm invoke parsed its text again,
 * ~40k instructions): the one returned is a reference to read, never to
 * change (jansson's reference counts are atomic; readers share it). */
json_t *instance_memo_get(Engine *e, const char *key, const char *source, size_t len);
void instance_memo_put(Engine *e, const char *key, const char *source, size_t len, json_t *reply);
/* Appends ,"key":MS (no comma when b holds only "{"): microseconds as
 * milliseconds in json_shorten_reals()'s spelling (1.5, 0.01, 2.0). */
void engine_ms_append(Buf *b, const char *key, usec_t us);
/* Frees every warm instance (engine_free, before pool_shutdown). */
void instances_shutdown(Engine *e);

typedef struct InvokeOutcome {
        bool done;           /* the instance answered */
        bool died;           /* the instance died during the invocation */
        bool timed_out, cancelled, output_limit, result_too_big;
        bool signaled;
        int sig, code;
} InvokeOutcome;

/* Whether the pool holds a ready, live, non-validator worker under key
 * (engine_run_ready()). */
bool pool_has_ready(Engine *e, const char *key);

/* ---- engine-vcache.c ---- */
/* At most max_entries replies and max_bytes of reply text (each counted
 * as strlen + 1); the least recently used go first. */
ValidationCache *vcache_new(size_t max_entries, size_t max_bytes);
ValidationCache *vcache_free(ValidationCache *c);
/* Returns the cached reply JSON text (caller frees) or NULL. */
char *vcache_get(ValidationCache *c, const char *key);
/* Keeps reply_json under key (replacing what key held), evicting the
 * least recently used entries until both bounds hold; a reply larger than
 * max_bytes by itself is not kept. */
void vcache_put(ValidationCache *c, const char *key, const char *reply_json);
/* The same for a reply kept parsed: value (a reference is taken) is
 * shared by every reader, who must only read it (jansson's reference
 * counts are atomic); text_size is its text's length, which the byte bound
 * counts. A validation hit then costs no copy and no parse of a reply that
 * holds the file's marshalled code. */
void vcache_put_json(ValidationCache *c, const char *key, json_t *value, size_t text_size);
/* A new reference to the parsed reply kept under key, or NULL (also for
 * one kept as text). */
json_t *vcache_get_json(ValidationCache *c, const char *key);
/* Whether key is held (marked used), without copying anything. */
bool vcache_has(ValidationCache *c, const char *key);
/* How many entries and bytes the cache holds now. */
void vcache_usage(ValidationCache *c, size_t *ret_entries, size_t *ret_bytes);

/* A warm instance for key (started from start_message(userdata), the
 * "instance" message, if none is idle and fewer than max_instances exist:
 * built only then, since it carries the function's whole source). */
typedef char *(*InstanceStartFn)(void *userdata);
/* How a new instance ended while its module ran (before "ready"): the
 * module is the function's code, so the call that started the instance
 * ends as a run of the same file that ended there does (classify()):
 * its time limit, its memory limit, a crash, an exit. sandbox is the
 * instance's, kept for the limit that killed it: the caller finishes it. */
typedef struct InstanceLoadEnd {
        RunSandbox *sandbox;
        bool timed_out, signaled;
        bool output_limit; /* it printed more than the call's output limit */
        int sig, code;
        InstanceOutput output; /* what it printed (the caller frees it) */
} InstanceLoadEnd;
/* cancel_fd (the calling run's, or -EBADF) ends the start of one, its
 * worker's included, with -ECANCELED (pool_acquire_cancellable()). The
 * module of a new instance runs under limits' time limit; an instance
 * that died or outlived it there ends the call with -ECHILD and
 * *ret_load_end filled. */
int instance_acquire(Engine *e, const char *key, unsigned max_instances, InstanceStartFn start_message, void *userdata,
                     SandboxMode mode, const RunLimits *limits, char *const *sys_path, char *const *data, int cancel_fd,
                     Instance **ret, bool *ret_cold, InstanceLoadEnd *ret_load_end, char **ret_error);
/* Makes instance i's stdout/stderr pipes (its read ends, O_NONBLOCK, in
 * i->out_fd and i->err_fd; -errno on failure, none made): ret_w gets the
 * write ends, for the instance to take as its fds 1 and 2. */
int instance_pipes_make(Instance *i, int ret_w[2]);
/* Reads how instance i ended from its status socket (its "started", if
 * still unread, then the exit report its worker sends): true with
 * *ret_signaled, *ret_sig and *ret_code when the report came within
 * 500 ms. */
bool instance_exit_report(Instance *i, bool *ret_signaled, int *ret_sig, int *ret_code);
void instance_release(Engine *e, Instance *i, bool broken);
/* Whether i, taken busy, was retired since (engine_pool_retire(),
 * pool_retire_env_workers()): it is to be released, not run on. */
bool instance_retired(Engine *e, Instance *i);
/* Pool lock held: wakes every waiter at its key's max_instances whose run
 * was cancelled (engine_cancel()); instance_acquire() then ends with
 * -ECANCELED. */
void instance_waiters_cancel_locked(Engine *e);
/* The doom check of an idle instance before it gets an invocation
 * (docs/workers.md "A killed idle instance loses no invocation"):
 * instance_stat_open() opens /proc/PID/task/PID/stat of a host pid (fd or
 * negative errno); instance_stat_doomed() says whether that process is
 * gone (reaped: the read fails), a zombie, on its way out (a fatal signal
 * taken, exiting) or has a SIGKILL pending. One pread.
 * instance_stat_text_doomed() is the same decision over the stat line's
 * text (the unit tests give it lines read off dying processes).
 * instance_doom_open() / instance_doomed() are what the pool uses: the
 * same decision by process_mrelease(2) on a pidfd (one cheap syscall, no
 * text) where instance_doom_by_mrelease() says this kernel allows it, else
 * by the stat fd above. A doomed process's memory is released by the call
 * (it is exiting anyway). */
int instance_stat_open(pid_t pid);
bool instance_stat_doomed(int fd);
bool instance_stat_text_doomed(const char *stat);
bool instance_doom_by_mrelease(void);
int instance_doom_open(pid_t pid);
bool instance_doomed(int fd);
