/* dag: pipelines of functions (docs/dag.md).
 *
 * A pipeline is a YAML file (docs/dag.md):
 *
 *   params: {n: 5}
 *   tasks:
 *     load:  {file: load.py, args: ["${params.n}"], data: [raw]}
 *     left:  {file: f.py, function: left, args: ["${load}"], retries: 2}
 *     right: {file: f.py, function: right, kwargs: {x: "${load.count}"}}
 *     join:  {file: join.py, args: ["${left}", "${right}"], depends: [load]}
 *
 * References: ${task} (the task's result), ${task.key[.key…]} (an object key
 * or a list index), ${params.name}. A value that is exactly one reference
 * keeps the referenced JSON type; a reference inside a longer string is
 * stringified ($${ is a literal ${). References make dependencies;
 * `depends:` adds more.
 *
 * dag_parse() checks the structure, references and cycles; dag_run()
 * validates every task in a worker (file, function, arguments,
 * requirements) before the first task runs, then runs tasks as their
 * dependencies finish, at most `concurrency` at once, each on its own
 * thread through the caller's runner (DagOptions.run: engine_run() in the
 * CLI, the run queue in the daemon). Results are memoised by sha256 of
 * (source, function, arguments after substitution, lock id, datasets'
 * content); the lock id is, for now, the hash of the source (which holds
 * the requirements dict). DAG runs and task states are recorded in the
 * store so `dag status`, `dag logs` and resuming an interrupted run work.
 *
 * Depends on: basic, engine, store, data (libyaml and jansson inside).
 * A Dag is driven by one dag_run() at a time; dag_cancel() may be called
 * from a signal handler. */
#pragma once

#include "basic.h"
#include "data.h"
#include "engine.h"
#include "store.h"

#define DAG_MAX_TASKS 1000
#define DAG_MAX_FILE_BYTES (1ULL << 20)
#define DAG_DEFAULT_CONCURRENCY 4
#define DAG_MAX_CONCURRENCY 256
#define DAG_MAX_RETRIES 20
#define DAG_DEFAULT_BACKOFF_MS 1000ULL

typedef enum DagTaskState {
        DAG_TASK_PENDING,
        DAG_TASK_RUNNING,
        DAG_TASK_SUCCEEDED,
        DAG_TASK_CACHED,     /* memo hit (or kept from the run being resumed) */
        DAG_TASK_FAILED,
        DAG_TASK_SKIPPED,    /* an upstream task failed, or fail-fast stopped the run */
        DAG_TASK_CANCELLED,
        _DAG_TASK_STATE_MAX,
} DagTaskState;
const char *dag_task_state_to_string(DagTaskState s);
DagTaskState dag_task_state_from_string(const char *s);
bool dag_task_state_is_done(DagTaskState s);

typedef struct Dag Dag;

/* Parses a pipeline. filename is shown in messages; task files are
 * relative to base_dir; params: "NAME=VALUE" overrides (VALUE read like a
 * YAML plain scalar: 5 is a number, true a bool, [..]/{..} JSON). On error
 * *ret_error is "FILE:LINE: what" (a cycle names its tasks: a -> b -> a). */
int dag_parse(const char *text, size_t len, const char *filename, const char *base_dir, char *const *params,
              Dag **ret, char **ret_error);
Dag *dag_free(Dag *d);
/* Refuses a "NAME=VALUE" override that names no parameter of d: neither
 * declared under `params:` nor referenced by a task (a typo, --param
 * limt=5, was taken without a word and the task ran with the default).
 * For what a user gives now (`dag run`, POST /v1/dags), not for a
 * recorded DAG run being loaded again. 0, or -ENOENT with *ret_error. */
int dag_check_params(Dag *d, char *const *params, char **ret_error);

size_t dag_n_tasks(const Dag *d);
/* The pipeline's `name:` (or the file name). */
const char *dag_name(const Dag *d);
/* The DAG run id once dag_run() started (or the resumed one). */
const char *dag_id(const Dag *d);

/* One run of a task, as dag_run() hands it to the caller's runner. */
typedef struct DagTaskRun {
        RunSpec spec;             /* what engine_run() would get (spec.data: resolved mounts) */
        /* The task's `data:` (NAME[@VERSION]), a dataset another task of
         * this DAG outputs pinned to the version that task produced in
         * this DAG run (NAME@VERSION). */
        char *const *data_refs;
        /* `outputs: NAME` (or NULL): spec.store_output stores the run's
         * output_dir() as NAME in the DAG's tenant; a runner that does not
         * call the engine itself stores it so (a daemon: the request's
         * output_data). Either way RunResult.outputs_json says the version. */
        const char *output_data;
        /* The task's `secrets:` names and `env:` ("KEY=VALUE"). With
         * DagOptions.secret_key, spec.env holds both already (secrets
         * opened); without, the runner opens the names itself (a daemon). */
        char *const *secrets;
        char *const *env;
        const char *task;         /* the task's name */
        /* Resuming: the run an interrupted driver had started for this task
         * (it may still be queued or running under the caller), or NULL. A
         * runner that can wait for it does instead of starting spec.run_id. */
        const char *adopt_run_id;
} DagTaskRun;

/* Runs one task to its end, blocking, like engine_run(): 0 with
 * *ret_result whatever the outcome; -ESHUTDOWN when the caller is stopping
 * and the task should run again when the DAG is resumed (dag_run() then
 * returns -ESHUTDOWN and leaves the DAG run recorded as running);
 * -EINPROGRESS when the caller is stopping and the task's run (spec.run_id,
 * or adopt_run_id) goes on without it — left queued, handed to another
 * node: the task stays recorded running under that run id, so the resume
 * waits for that run (adopt_run_id) instead of starting another; another
 * negative errno when it could not run. */
typedef int (*DagRunFn)(const DagTaskRun *tr, void *userdata, RunResult **ret_result);
/* Cancels a run the runner started (the DAG run is being cancelled). */
typedef void (*DagCancelFn)(const char *run_id, void *userdata);
/* Whether the runner's caller stops (a daemon past its drain): a task that
 * waits for the store to answer gives up and is left for the resume. */
typedef bool (*DagStoppingFn)(void *userdata);
/* Reads a task's file: file as written in the pipeline, base_dir the
 * pipeline's directory. 0 with the text, or a negative errno with
 * *ret_error saying why (shown after "task 'NAME': "). */
typedef int (*DagLoadFn)(const char *base_dir, const char *file, void *userdata, char **ret_text, size_t *ret_len,
                         char **ret_error);

/* The path rule for a task file of a pipeline confined to its directory (a
 * daemon's pipelines, and what `dag run --server` uploads): a relative path
 * of at most 1024 bytes, no empty, "." or ".." component, no trailing '/',
 * no newline. With base_dir, the file must also exist and its real path
 * (symlinks resolved) stay under base_dir's. 0, or -EINVAL (-ENOENT: it
 * does not exist) with *ret_error. The one copy of this rule. */
int dag_file_check(const char *base_dir, const char *file, char **ret_error);
/* The default loader: reads base_dir/file (file may be absolute: the CLI's
 * own pipelines may name any file its user can read). */
int dag_load_any(const char *base_dir, const char *file, void *userdata, char **ret_text, size_t *ret_len,
                 char **ret_error);
/* A loader that applies dag_file_check(base_dir, file) first. */
int dag_load_confined(const char *base_dir, const char *file, void *userdata, char **ret_text, size_t *ret_len,
                      char **ret_error);

/* dag_parse() with a loader for task files (NULL: dag_load_any). */
int dag_parse_with(const char *text, size_t len, const char *filename, const char *base_dir, char *const *params,
                   DagLoadFn load, void *load_userdata, Dag **ret, char **ret_error);

/* engine_run() as a DagRunFn (userdata: the Engine): what the embedded CLI
 * uses, and the default when DagOptions.run is NULL. */
int dag_engine_runner(const DagTaskRun *tr, void *userdata, RunResult **ret_result);

typedef struct DagOptions {
        const char *tenant;      /* NULL: "local" */
        /* Who runs tasks (NULL: dag_engine_runner on the Engine given to
         * dag_run()). A daemon passes one that goes through its run queue,
         * so tasks share its slots and per-tenant limits. Validation
         * (ast only, no user code) always uses the engine directly. */
        DagRunFn run;
        DagCancelFn cancel;      /* NULL with run NULL: engine_cancel() */
        DagStoppingFn stopping;  /* NULL: never (given run_userdata) */
        void *run_userdata;
        unsigned concurrency;    /* 0: pipeline's `concurrency:`, else DAG_DEFAULT_CONCURRENCY */
        bool no_cache;           /* run every task even when its memo exists */
        bool keep_going;         /* run whatever does not depend on a failure */
        SandboxMode sandbox;
        const char *resume_id;   /* continue this DAG run: finished tasks keep their results */
        /* With resume_id: a task recorded failed or cancelled keeps that end
         * too (its run is not run again), so the resumed DAG run ends as the
         * driver that recorded it would have (a cluster's takeover of a DAG
         * run its gateway stopped driving). Without it (`dag resume`), such
         * a task runs again. */
        bool keep_ended;
        const char *dag_id;      /* NULL: a new id */
        bool skip_validation;    /* (tests) */
        /* The embedded engine's secrets key (shared.h seal_key_load): a
         * task's secrets are opened in opts.tenant into its spec.env. */
        const uint8_t *secret_key;
} DagOptions;

typedef enum DagEventType {
        DAG_EVENT_VALIDATING,    /* validation of all tasks starts */
        DAG_EVENT_STARTED,       /* tasks start running; dag_id() is set */
        DAG_EVENT_TASK,          /* ev->task changed state */
        DAG_EVENT_TICK,          /* periodic (~5/s) while running: redraw */
        DAG_EVENT_WARNING,       /* ev->message */
} DagEventType;

typedef struct DagEvent {
        DagEventType type;
        size_t task;
        DagTaskState state;
        const char *message;
} DagEvent;

/* Always called on the thread that called dag_run(). */
typedef void (*DagEventFn)(const Dag *d, const DagEvent *ev, void *userdata);

/* Validates every task, then runs the pipeline to its end. Returns 0 once
 * the run happened (whatever its tasks' outcomes: see dag_exit_code()),
 * -EINVAL with *ret_error when validation failed (nothing ran), another
 * negative errno when the store or engine failed.
 *
 * Ownership: the driving process holds an flock on
 * DATA_DIR/dag-locks/<id> for the whole run; the kernel drops it when the
 * process dies, however it dies, so the next start can resume the run at
 * once (no pid to go stale or be reused). -EBUSY with *ret_error when
 * another live process drives this DAG run (a resume waits up to
 * DAG_LOCK_WAIT_MS for a dying driver to go first). -ESHUTDOWN when the
 * runner said the caller stops: the record stays "running" for the next
 * start. */
#define DAG_LOCK_WAIT_MS 10000
int dag_run(Dag *d, Engine *e, DataCatalog *dc, const DagOptions *o, DagEventFn fn, void *userdata, char **ret_error);

/* Frees the results d's tasks hold (a value and its JSON text each) once
 * dag_run() has returned: the store keeps them, and a caller that reads
 * the DAG run back from it (the CLI's final object) held every result
 * three times over. dag_task_info()'s value_json is NULL after it. */
void dag_release_results(Dag *d);

/* What dag_run() validates before it runs anything, its tasks only (file,
 * function, arguments; datasets are left to the run: a schedule's may be
 * put before it fires): 0, or -EINVAL (-ENOPKG for a requirement) with
 * *ret_error at the pipeline's FILE:LINE. Runs nothing, records nothing. */
int dag_validate(Dag *d, Engine *e, const DagOptions *o, char **ret_error);

/* Stops starting tasks and cancels the running ones (async-signal-safe
 * enough: sets a flag and wakes the scheduler). */
void dag_cancel(Dag *d);
/* Whether a live process drives DAG run id now: it holds the run's lock
 * (see dag_run()). The recorded owner pid is no proof: the kernel reuses
 * a dead driver's pid. */
bool dag_driven(Engine *e, const char *id);
/* Ends DAG run id in the store when no live process drives it (nobody
 * holds its lock: the driver died): the run and every task not done yet
 * become "cancelled". -EBUSY when a live driver holds the lock (ask it to
 * cancel); 0 also when the run had already ended. Other negative errno
 * with *ret_error set. */
int dag_cancel_abandoned(Engine *e, const char *id, char **ret_error);
/* How many tasks of d run at once: requested (--concurrency) unless 0,
 * else the pipeline's `concurrency:`, else DAG_DEFAULT_CONCURRENCY. */
unsigned dag_concurrency(const Dag *d, unsigned requested);
/* dag_cancel(), and the running tasks' runs cancelled now, from the
 * calling thread (not a signal handler: it takes locks), rather than at
 * the scheduler's next tick. */
void dag_cancel_running(Dag *d);
/* Whether dag_cancel() was called (a runner waiting for a slot gives up). */
bool dag_cancelled(const Dag *d);

/* A task's state for renderers; strings stay owned by the Dag and valid
 * until the next dag_run() or dag_free(). */
typedef struct DagTaskInfo {
        const char *name;
        const char *file;
        int line; /* where the pipeline file names the task */
        DagTaskState state;
        int depth;               /* longest path from a root: 0 for roots */
        const char *run_id;
        int attempts;
        int retries; /* its pipeline's retries (count) */
        bool cached;
        const char *value_json;
        const char *error;
        int exit_code;
        usec_t started, finished; /* realtime µs; 0 when not */
        size_t n_deps;
        const size_t *deps;
        size_t n_dependents;
        RunLimits limits;        /* as the pipeline asks (0 fields: defaults) */
        char *const *secrets;    /* `secrets:` names, or NULL */
} DagTaskInfo;
void dag_task_info(Dag *d, size_t i, DagTaskInfo *ret);
/* The DAG run in flight as the API's DAG object (docs/api.md "DAG runs"),
 * from memory: id, name, status and per task name, state, attempts,
 * cached, run_id, exit_code, error, started_us, finished_us — no results
 * and nothing read from the store, so a view may ask at every event of a
 * wide DAG run or one of large results (the store's object, with every
 * result, costs that much each time). A snapshot taken under the Dag's
 * lock (task threads change it meanwhile). Compact JSON text; the
 * caller frees it. */
char *dag_progress_json(Dag *d);
/* Replaces task i's limits before dag_run() (a daemon applies what its
 * config grants the tenant). */
void dag_task_set_limits(Dag *d, size_t i, const RunLimits *limits);

/* The states a DAG run's object shows (docs/api.md "DAG runs"), as
 * messages list them, and as a NULL-terminated table (a filter's choices;
 * the API and `dag ls --status` take these). "validating" is stored
 * "running": only a daemon's view of a live run shows it. */
#define DAG_STATUS_NAMES "validating, running, succeeded, failed, cancelled, invalid, deps_failed"
const char *const *dag_status_table(void);
/* "succeeded", "failed", "cancelled" (or "running" during the run). */
const char *dag_status(const Dag *d);
/* Whether a DAG run with this status (as dag_status() or a stored record
 * says it) has ended: any status but "running" and "validating" (before
 * its first task). NULL (not known): false. */
bool dag_status_ended(const char *status);
/* 0 when every task succeeded; else the first failed task's exit code
 * (130 when cancelled). */
int dag_exit_code(const Dag *d);

/* Loads a recorded DAG run for resuming: the Dag parsed from the stored
 * pipeline text, base directory and params (task files read with
 * dag_load_any). */
int dag_load(Store *s, const char *tenant, const char *id_or_prefix, Dag **ret, DagRunRecord **ret_record,
             char **ret_error);
/* The options a DAG run was started with (its record's options_json) into
 * o, for a resume to go on as it began: keep_going and no_cache (either
 * set stays set), concurrency unless o has one. Never the sandbox: the
 * caller's own setting decides that. */
void dag_options_restore(const char *options_json, DagOptions *o);
/* dag_load() with a loader for task files (NULL: dag_load_any). */
int dag_load_with(Store *s, const char *tenant, const char *id_or_prefix, DagLoadFn load, void *load_userdata,
                  Dag **ret, DagRunRecord **ret_record, char **ret_error);
