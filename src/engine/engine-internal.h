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

typedef struct ActiveRun ActiveRun;

struct Engine {
        char *data_dir;
        char *worker_path;
        char *store_dir;   /* $DATA/store: package store, bound read-only */
        char *logs_dir;    /* $DATA/logs */
        RunLimits defaults;
        RunLimits maxima;
        char *index_url;
        char **extra_index_urls;
        char **find_links;
        Store *store;
        pthread_mutex_t lock; /* guards active */
        ActiveRun *active;
};

/* ---- engine-sandbox.c: isolation of workers and runs ---- */

typedef struct WorkerSpawn {
        const char *worker_path;
        int ctrl_fd;             /* the worker's end of the socketpair -> fd 3 */
        SandboxMode mode;
        const RunLimits *limits; /* the run's effective limits */
        char **ro_paths;         /* host paths the worker needs read-only */
        const char *data_dir;
} WorkerSpawn;

/* Starts a worker process as ws describes (fork+exec; never runs CPython in
 * this process). */
int engine_sandbox_spawn_worker(const WorkerSpawn *ws, pid_t *ret_pid, char **ret_error);

/* Per-run isolation state: cgroups and whatever else a run needs. */
typedef struct RunSandbox RunSandbox;
int engine_sandbox_run_prepare(Engine *e, const char *run_id, SandboxMode mode, const RunLimits *limits,
                               RunSandbox **ret, char **ret_error);
/* Extra fds to pass with the run message (after stdout/stderr/result) and
 * the JSON object text for its "sandbox" field (may be NULL). The fds stay
 * owned by rs. */
void engine_sandbox_run_extra(RunSandbox *rs, int *fds, size_t *n_fds, size_t max_fds, char **ret_json);
/* The worker reported the run child's pid (in the engine's pid namespace
 * when the worker shares it, else as the worker sees it). */
void engine_sandbox_run_started(RunSandbox *rs, pid_t worker_pid, pid_t child_pid);
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
 * empty). On failure *ret_error is the user-facing reason (exit 4). */
int engine_resolve_env(Engine *e, PkgRequirement **reqs, size_t n_reqs, const char *run_id,
                       RunEventFn fn, void *userdata, char ***ret_sys_path, char **ret_error);

/* ---- engine-worker.c: one worker process ---- */

typedef struct Worker {
        pid_t pid;
        int sock;
        char *python_version;
} Worker;

int worker_start(Engine *e, SandboxMode mode, const RunLimits *limits, Worker **ret, char **ret_error);
/* Receives one message, waiting at most until deadline (monotonic µs; 0 =
 * forever). -ETIMEDOUT, -ECONNRESET when the worker died. */
int worker_recv(Worker *w, usec_t deadline, char **ret_json, size_t *ret_len);
int worker_send(Worker *w, const char *json, const int *fds, size_t n_fds);
Worker *worker_stop(Worker *w);
