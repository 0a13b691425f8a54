/* engine: the run lifecycle, the one code path both binaries use.
 *
 * submit -> validate (in a worker: ast only, user code never runs) ->
 * resolve requirements -> materialize -> acquire worker -> run in a forked
 * child -> stream output -> store the result.
 *
 * Depends on: basic, pkg, sandbox, store. Thread-safe: the daemon calls
 * engine_run() from many threads at once; the CLI from one. */
#pragma once

#include "basic.h"

/* Exit codes (README.md, "Exit codes"), shared by the CLI and the API. */
enum {
        EXIT_OK = 0,
        EXIT_RAISED = 1,
        EXIT_USAGE = 2,
        EXIT_VALIDATION = 3,
        EXIT_DEPENDENCY = 4,
        EXIT_LIMIT = 5,
        EXIT_SERVER = 6,
        EXIT_INTERNAL = 7,
};

typedef enum RunStatus {
        RUN_QUEUED,
        RUN_RUNNING,
        RUN_SUCCEEDED,  /* returned a value */
        RUN_FAILED,     /* the function raised */
        RUN_INVALID,    /* validation failed (exit 3) */
        RUN_DEPS_FAILED,/* resolution/install failed (exit 4) */
        RUN_KILLED,     /* a limit was hit (exit 5) */
        RUN_CANCELLED,  /* cancelled by the user */
        RUN_ERROR,      /* internal error (exit 7) */
        RUN_LOST,       /* the runner died while it was in flight */
        _RUN_STATUS_MAX,
} RunStatus;
/* What the runner (src/worker/runner.py) adds to a missing-argument
 * ValidationError for the CLI's user; a caller whose arguments are not
 * -a and --NAME (a Lambda event, a chain's later step) replaces it. */
#define RUN_ARGUMENT_HINT " (give positional values with -a VALUE, named ones with --NAME VALUE)"
const char *run_status_to_string(RunStatus s);
/* Every status's name in enum order, as messages list them. */
#define RUN_STATUS_NAMES "queued, running, succeeded, failed, invalid, deps_failed, killed, cancelled, error, lost"
/* The same names as a NULL-terminated table (a filter's choices). */
const char *const *run_status_table(void);
RunStatus run_status_from_string(const char *s);
bool run_status_is_final(RunStatus s);

typedef enum SandboxMode {
        SANDBOX_MODE_FULL = 0,  /* default: namespaces, seccomp, cgroups */
        SANDBOX_MODE_NONE,      /* trusted code, no isolation; says so on every run */
} SandboxMode;

/* Per-run limits; 0 means "the operator's default". Clamped to the
 * EngineConfig maxima. */
typedef struct RunLimits {
        uint64_t timeout_ms;
        uint64_t memory_bytes;
        uint64_t max_procs;
        uint64_t max_output_bytes;
        bool network;
        /* Asked for no network explicitly (`network: false`): a request
         * lowers the operator's `limits.defaults.network: true` with it.
         * Unset and network false: the default. Never both set. */
        bool network_off;
} RunLimits;

/* Documented defaults (docs/sandbox.md, the limits table). */
#define RUN_DEFAULT_TIMEOUT_MS (60ULL * 1000)
/* The longest a run may ask for, as the CLI's --timeout: past it a
 * deadline in microseconds overflows (the run was killed at once). */
#define RUN_MAX_TIMEOUT_MS (7ULL * 24 * 3600 * 1000)
#define RUN_DEFAULT_MEMORY_BYTES (512ULL << 20)
/* The least memory a run may ask for (the CLI's --memory floor): below it
 * the interpreter's own pages do not fit, and a spare's group refuses it. */
#define RUN_MIN_MEMORY_BYTES (16ULL << 20)
#define RUN_DEFAULT_MAX_PROCS 64ULL
/* The most processes a run may ask for (the CLI's --max-procs bound):
 * pids.max takes nothing near 2^64, and a refused write kept the last. */
#define RUN_MAX_PROCS 100000ULL
#define RUN_DEFAULT_MAX_OUTPUT_BYTES (10ULL << 20)
#define RUN_MAX_SOURCE_BYTES (4ULL << 20)
#define RUN_MAX_RESULT_BYTES (16ULL << 20)
/* The runner's answer that holds such a result ({"ok": true, "json":
 * TEXT}, TEXT a JSON string of the value's JSON): each byte of it escaped
 * at most once more, and the frame. The runner measures the value itself
 * (a larger one answers "too_big"). */
#define RUN_MAX_RESULT_ANSWER_BYTES (2 * RUN_MAX_RESULT_BYTES + (64ULL << 10))
#define RUN_MAX_ARGS_BYTES (4ULL << 20)
/* What a run may write to its output dir (/out, pysprinter.output_dir()). */
#define RUN_DEFAULT_MAX_OUT_BYTES (1ULL << 30)
/* Entries (files, directories, anything) a run may leave there: a dataset
 * version's file cap (DATA_DEFAULT_MAX_FILES), what --output-data could
 * store. Empty ones count no bytes, but each holds one of the host's
 * inodes. */
#define RUN_DEFAULT_MAX_OUT_FILES 100000ULL
/* How deep the output dir is measured; a deeper tree is over the limit
 * (what lies below could not be counted). */
#define RUN_MAX_OUT_DEPTH 256u

/* Warm instances kept per instance key when RunSpec.max_instances is 0. */
#define ENGINE_INSTANCES_DEFAULT 4u

/* server.max_attempts's default (docs/api.md "Delivery"): a run is
 * started at most three times. */
#define RUN_DEFAULT_MAX_ATTEMPTS 3

typedef struct RunSpec {
        const char *run_id;      /* NULL: the engine makes one */
        const char *tenant;      /* NULL: "local" */
        const char *source;      /* the file's text */
        size_t source_len;
        const char *filename;    /* as the user named it; shown in messages */
        const char *function;    /* NULL: the @requirements-decorated one */
        /* Requirements kept beside the source (a deployed function's), as a
         * JSON object name -> specifier; NULL: the file's @requirements.
         * A file that declares its own as well is invalid (one or the other). */
        const char *requirements_json;
        /* A deployed version's lock (pkg_lock_to_json() text), resolved
         * from its requirements at its deploy: the run's environment is
         * exactly these wheels, installed from the store or fetched by
         * the lock's URL and sha256, and the requirements are never
         * resolved again (a wheel that can no longer be had fails the run,
         * naming it). NULL: the requirements are resolved (ad-hoc runs,
         * versions deployed before locks were kept, a deploy's own
         * validation). A validation of a call of the version (a schedule's
         * arguments) uses it too; resolve_only ignores it. */
        const char *lock_json;
        /* Arguments, as JSON text. args: an array whose items are
         * {"raw": "5"} (a CLI string, converted by the parameter's
         * annotation) or {"value": <json>} (already typed). kwargs: an
         * object name -> the same. NULL means none. */
        const char *args_json;
        const char *kwargs_json;
        RunLimits limits;
        SandboxMode sandbox;
        /* Datasets to mount read-only at /data/NAME: "NAME=/host/path"
         * entries, NULL-terminated (src/data/ resolves names). A directory
         * is mounted as it is and pysprinter.data_path(NAME) is /data/NAME;
         * a regular file (a single-file dataset) has its directory mounted
         * and data_path(NAME) is the file, /data/NAME/FILE. */
        char *const *data;
        /* Environment variables the function sees: "KEY=VALUE" entries,
         * NULL-terminated; set in the run's child only (secrets and --env,
         * docs/secrets.md). Never recorded: the caller keeps what it may
         * show. */
        char *const *env;
        /* Lambda-style context passed as the last positional argument when
         * not NULL: a JSON object text (deployed functions). */
        const char *context_json;
        /* Deployed functions: invocations with the same key share warm
         * instances (module imported once, globals persist, as on Lambda).
         * NULL for ad-hoc runs, which each get a fresh fork. */
        const char *instance_key;
        unsigned max_instances;  /* per key; 0: ENGINE_INSTANCES_DEFAULT */
        /* With instance_key: an instance engine_instance_take_idle() took
         * for this run (the engine releases it), or NULL: one is acquired. */
        struct Instance *instance;
        usec_t queued_usec;      /* time already spent in a caller's queue (recorded as "queue") */
        /* The caller inserted the run record already (the daemon, as queued):
         * the engine updates it instead of inserting. */
        bool record_exists;
        /* With record_exists: the attempt the caller's run queue started
         * (store.h RunQueue). The final write lands only while the record
         * still carries it: a late end of an older attempt is dropped. */
        int attempt;
        /* How many attempts the run has (store.h RunRecord.max_attempts;
         * 0: RUN_DEFAULT_MAX_ATTEMPTS). An ad-hoc run whose worker is
         * killed from outside (the run's code cannot: it has a pid
         * namespace of its own) is started again on a new worker while
         * attempt (at least 1) plus the starts so far stay within it; 1
         * (`retries: 0`): never. */
        int max_attempts;
        bool validate_only;      /* stop after validation and resolution */
        /* With validate_only: resolve the lock but install nothing
         * (`pysprinter lock`): with PEP 658 metadata no wheel is fetched. */
        bool resolve_only;
        /* With validate_only and skip_argument_check: the file is parsed
         * and its function found, nothing resolved (`run FILE --help`:
         * RunResult.signature and doc, no index asked). */
        bool describe_only;
        /* Resolve the requirements against the index again instead of
         * using a cached lock (run --no-cache, lock --no-cache). */
        bool no_cache;
        /* Validate the file and its requirements but not arguments (a
         * deploy: the calls bring their own). */
        bool skip_argument_check;
        bool no_record;          /* do not write a run record */
        /* The engine writes the final record only when the run succeeded
         * (RunResult.recorded stays false otherwise): the caller writes
         * any other end itself, or starts the run again (a failed Lambda
         * Event invocation's retry, daemon-runs.c). */
        bool record_success_only;
        /* A line the engine writes first on the run's stderr (its events
         * and its log), or NULL: why this attempt runs (a retry's reason).
         * From the second attempt (attempt > 1) the log file is appended
         * to, not replaced: the tries before stay in it. */
        const char *start_note;
        /* The caller begins this ad-hoc run on a thread that must not wait
         * (an HTTP thread) because engine_run_ready() said it may: the run
         * does not teach that readiness again (engine-run.c). */
        bool ready_checked;
        /* Outputs (docs/data.md "Outputs"): every ad-hoc run gets a fresh
         * writable /out (a dir of its own under $DATA/outputs, removed after
         * the run). When the run succeeded and store_output is set, the
         * engine calls it with the host dir holding what the run wrote,
         * before the final record is written; it stores that (src/data/)
         * and returns the record's outputs as a JSON object text
         * ({"NAME": VERSION}), or a negative errno with *ret_error: the run
         * then ends as an error (exit 7) or, for -EFBIG/-EDQUOT, as killed
         * by a limit (exit 5). */
        int (*store_output)(const char *dir, void *userdata, char **ret_outputs_json, char **ret_error);
        void *store_output_userdata;
        /* When the run succeeded and check_result is set, the engine calls
         * it with the return value (RunResult.value_json, value_repr: either
         * may be NULL) before the final record is written, so that the
         * record holds the caller's verdict without a second write (a
         * Function URL's response, docs/endpoints.md). 0: the value is
         * fine; a negative errno with *ret_type and *ret_message (owned by
         * the engine then): the run ends failed, exit 1, with that error,
         * its value kept. The run's tenant (RunSpec.tenant) is passed: what
         * a value may do can depend on whose it is. */
        int (*check_result)(const char *tenant, const char *value_json, const char *value_repr, char **ret_type,
                            char **ret_message);
} RunSpec;

typedef enum RunEventType {
        RUN_EVENT_PHASE,    /* phase changed: ev->phase */
        RUN_EVENT_OUTPUT,   /* stream 1 or 2 produced data */
        RUN_EVENT_PROGRESS, /* ev->phase + ev->message, e.g. "downloading" */
        RUN_EVENT_WARNING,  /* ev->message */
} RunEventType;

typedef struct RunEvent {
        RunEventType type;
        const char *run_id;
        const char *phase;    /* "validate", "resolve", "install", "start", "run", "done" */
        int stream;           /* 1 stdout, 2 stderr */
        const char *data;
        size_t len;
        const char *message;
        uint64_t done, total; /* progress counters (bytes, items) */
        usec_t timestamp;     /* realtime */
} RunEvent;

/* Called from the thread running engine_run(); must not block for long. */
typedef void (*RunEventFn)(const RunEvent *ev, void *userdata);

typedef struct RunResult {
        char *id;
        RunStatus status;
        int exit_code;
        char *function;       /* the resolved function name */
        /* Its parameters as validation read them, a JSON array of names in
         * signature order ("*args", "**kw" and a bare "*" keep their stars);
         * NULL when validation did not run to the end. */
        char *params_json;
        /* With it, for a validation (validate_only): the signature as PEP 8
         * spells it ("f(n: int = 1) -> str") and the function's docstring
         * (NULL: none). */
        char *signature;
        char *doc;
        char *value_json;     /* the return value as JSON text, if any */
        char *value_repr;     /* repr() when JSON could not hold the value */
        char *error_type;     /* e.g. "ValueError", "SyntaxError", "TimeLimit" */
        char *error_message;  /* one-line message for the user */
        char *traceback;      /* user frames only, when the function raised */
        /* What CPython's parser and compiler warned about the file while
         * it was validated (SyntaxWarning …), as Python prints it, or NULL.
         * The engine wrote it on the run's stderr (an output event and
         * the run's log) too; validate-only callers show it from here. */
        char *warnings;
        bool output_truncated;
        char *outputs_json;   /* {"NAME": VERSION}: datasets the run's /out became */
        /* The environment's lock the run ran in (pkg_lock_to_json() text;
         * NULL: none resolved): the record's RunRecord.lock_json, for a
         * caller that writes the end itself (RunSpec.no_record: a cluster
         * node's claimed run, whose record is Redis's). */
        char *lock_json;
        /* Phase durations in microseconds: queue (set by the daemon),
         * validate, resolve (incl. install), acquire (a warm worker or
         * instance; large when cold), fork (hand-off to a forked child),
         * run, reply (from the child's exit to the recorded result). */
        usec_t t_queue, t_validate, t_resolve, t_install, t_acquire, t_fork, t_run, t_reply, t_total;
        usec_t t_start;       /* acquire + fork, kept for older readers */
        bool cold;            /* a worker or instance had to be started */
        /* The final record could not be written (negative errno; a full
         * disk): the caller holds the only copy of the end and writes it. */
        int record_error;
        /* The final record as written (record_error 0, not dropped as a
         * stale attempt): its started/finished and timings text, so a
         * caller answers with the stored run without reading it back. */
        bool recorded;
        usec_t started, finished;
        char *timings_json;
} RunResult;
RunResult *run_result_free(RunResult *r);
/* A validation's answer (POST /v1/validate, `pysprinter validate --json`):
 * {valid, exit_code, status, function, parameters, signature, doc, error}
 * and, when the parser warned, warnings. Caller decrefs. */
struct json_t *run_result_validation_json(const RunResult *res);

#define ENGINE_VALIDATION_CACHE_BYTES_DEFAULT (64ULL << 20)
#define ENGINE_ENV_IDLE_MS_DEFAULT (60ULL * 1000)

typedef struct EngineConfig {
        const char *data_dir;     /* NULL: data_dir_default() */
        const char *worker_path;  /* NULL: $PYSPRINTER_WORKER or beside the exe */
        RunLimits defaults;       /* 0 fields: RUN_DEFAULT_* */
        RunLimits maxima;         /* 0 fields: no cap beyond the defaults' kind */
        /* Pool (docs/workers.md). 0 fields take the defaults in docs/workers.md. */
        unsigned spares;               /* pre-forked children per worker */
        uint64_t pool_memory_budget;   /* bytes of PSS over all workers */
        uint64_t worker_idle_timeout_ms;
        uint64_t instance_ttl_ms;
        /* How long an environment no run uses and no warm worker has on its
         * sys.path stays held (its record flock'ed, so `env prune` and the
         * collector keep it) before the engine lets go of it;
         * 0: ENGINE_ENV_IDLE_MS_DEFAULT (docs/packages.md "Environments"). */
        uint64_t env_idle_timeout_ms;
        bool no_spares;                /* the CLI: one run per process */
        /* The CLI: a few runs, then exit. store_open_short_lived(), and
         * workers that settle (worker.c) only when a second run comes:
         * in idle time it would only delay the process's exit. */
        bool short_lived;
        /* Bytes of validation replies the engine keeps (each holds the
         * file's marshalled code); 0: ENGINE_VALIDATION_CACHE_BYTES_DEFAULT. */
        uint64_t validation_cache_bytes;
        /* The CLI: each run records this process as its owner, and runs of
         * owners that are gone are marked lost when the engine starts
         * (a daemon's queue recovers its own runs instead). */
        bool record_owner;
        /* Cap of a run's /out in bytes; 0: $PYSPRINTER_MAX_OUT_BYTES, else
         * RUN_DEFAULT_MAX_OUT_BYTES. */
        uint64_t max_out_bytes;
        /* Cap of the entries in a run's /out; 0: $PYSPRINTER_MAX_OUT_FILES,
         * else RUN_DEFAULT_MAX_OUT_FILES. */
        uint64_t max_out_files;
        /* Validation in a worker of its own, no run forked from it
         * (pool_acquire(): a worker's heap, what it validated included,
         * is every run's it forks): the daemon, whose tenants share
         * workers. The CLI (one user) validates in its runs' worker. */
        bool validator_apart;
        /* Start the validation worker of this sandbox mode in the
         * background now, so a long-lived engine's first run finds it warm
         * (the daemon), or so a one-shot CLI's worker boots while the
         * engine opens its store and records the run. In the full sandbox
         * a blank worker for a cold env boots beside it (docs/workers.md),
         * unless prewarm_no_blank (the CLI: one run, two CPUs). */
        bool prewarm;
        bool prewarm_no_blank;
        SandboxMode prewarm_mode;
        /* Package policy (docs/packages.md): names (any spelling; compared after
         * PEP 503 normalisation). A non-empty allow list admits only its
         * packages; the deny list refuses its packages. Both apply to the
         * whole lock, dependencies included. */
        char **allow_packages;
        char **deny_packages;
        /* Package index settings (NULL: environment, then PyPI). */
        const char *index_url;
        char **extra_index_urls;
        char **find_links;
} EngineConfig;

typedef struct Engine Engine;
int engine_new(const EngineConfig *cfg, Engine **ret_engine, char **ret_error);
Engine *engine_free(Engine *e);
/* Waits up to timeout for the prewarmed worker (EngineConfig.prewarm) to
 * be ready in the pool (or to have failed); true once it is. The daemon
 * calls it before it listens: a request sent the moment /healthz answers
 * would otherwise wait for that worker's start (docs/internals/performance-log.md,
 * "Cold env: the sandbox on the first run's path"). */
bool engine_prewarm_wait(Engine *e, usec_t timeout);
/* Replaces EngineConfig.maxima for runs that start from now on: the
 * daemon's SIGHUP, whose new limits.maxima would otherwise still be capped
 * at the ones the engine started with. */
void engine_set_maxima(Engine *e, const RunLimits *maxima);
struct PkgPeers;
/* A cluster's peers for wheels and locks (pkg.h PkgPeers; not owned, must
 * outlive e). Call before the first run. */
void engine_set_peers(Engine *e, const struct PkgPeers *peers);
const char *engine_data_dir(const Engine *e);
/* Whether data_dir holds the run database engine_new() opens (and creates
 * when it is missing): without one the home has no runs, DAG runs,
 * datasets or secrets to show, and a verb that only reads them answers
 * as an empty home does without opening an engine (which would create
 * the home, its database and its directories). */
bool engine_home_has_records(const char *data_dir);

/* Why a run refuses source (a NUL byte; else the first byte that is not
 * UTF-8, as "FILENAME:LINE:COL: not valid UTF-8"; filename NULL:
 * "<input>"), or NULL when it does not. The engine checks every run's
 * source with it; the CLI checks a file with it before sending it to a
 * server, so both paths refuse a file in the same words. Caller frees. */
char *engine_source_error(const char *filename, const char *source, size_t len);

/* Runs one spec to completion (blocking), calling fn for each event.
 * Returns 0 with *ret_result filled whatever the run's outcome (the outcome
 * is in the result's status/exit_code); negative errno only when the engine
 * itself could not proceed. */
int engine_run(Engine *e, const RunSpec *spec, RunEventFn fn, void *userdata, RunResult **ret_result);

/* engine_run() in steps, so that a caller can run a warm invoke on its own
 * thread while it is quick and hand it to another when it is not
 * (docs/internals/performance-log.md "Invoke path: round 4"): engine_run_begin() does
 * everything up to the hand-off to the worker or instance (it blocks as
 * engine_run() does until then); engine_run_wait() watches the run until
 * it ended (true) or until the monotonic time `until` passed (false: call
 * it again, from any thread, one at a time); engine_run_end() records the
 * end and returns the result (the run is freed). Time limits, cancels and
 * output limits hold across the steps as in engine_run(). */
typedef struct EngineRun EngineRun;
/* Whether engine_run_begin() of spec, an ad-hoc run (no instance_key, no
 * datasets), would begin without waiting on a worker: its validation reply
 * is cached and an earlier run of the same validation key and network
 * setting found its environment resolved and a ready worker, which is
 * still ready. A cheap look (two hashes of the key, the pool's list); false
 * when unsure (the caller then begins it where waiting is fine). */
bool engine_run_ready(Engine *e, const RunSpec *spec);
EngineRun *engine_run_begin(Engine *e, const RunSpec *spec, RunEventFn fn, void *userdata);
bool engine_run_wait(EngineRun *run, usec_t until);
RunResult *engine_run_end(EngineRun *run);

/* engine_run_wait() as an event loop's (docs/internals/performance-log.md "Invoke path:
 * an event loop for warm invokes"): one thread watches many runs with one
 * poll(). engine_run_watch_fds() looks at the run first (deadlines and
 * cancels act as in engine_run_wait()): true when its watch is over (call
 * engine_run_end()); else it fills pf with what to poll (fd -1: nothing)
 * and *ret_until with the monotonic time by which to look again even when
 * nothing is ready (a deadline; UINT64_MAX: none: a cancel wakes the poll
 * through an fd of pf). engine_run_watch_events() takes that poll's revents
 * (none may block: the fds are non-blocking or were reported readable).
 * pf has ENGINE_RUN_POLLFDS entries. One thread at a time per run, as
 * engine_run_wait(). */
#define ENGINE_RUN_POLLFDS 5
struct pollfd;
bool engine_run_watch_fds(EngineRun *run, struct pollfd *pf, usec_t *ret_until);
void engine_run_watch_events(EngineRun *run, const struct pollfd *pf);

/* An idle, live warm instance of key, taken (busy, thawed) for one
 * invocation: pass it as RunSpec.instance. -EAGAIN when none is idle now:
 * none is started and none is waited for. engine_instance_put_back()
 * returns one that was not used. */
typedef struct Instance Instance;
int engine_instance_take_idle(Engine *e, const char *key, Instance **ret);
void engine_instance_put_back(Engine *e, Instance *i);

/* Cancels a run in flight in any phase: validating, resolving and
 * installing stop within a fraction of a second (the package manager
 * reads the run's flag), a running one has its whole process tree
 * killed; the run ends `cancelled`, exit 5, the same in every phase. The
 * run's watch is woken through an eventfd, not a tick. -ESRCH if not
 * in flight. */
int engine_cancel(Engine *e, const char *run_id);
/* Asks the process that runs run_id to cancel it, as engine_cancel() there
 * would: an embedded run belongs to the CLI process that started it, and
 * only that process's engine can kill it (`pysprinter cancel`, docs/cli.md).
 * The ask is a file, $DATA/cancel/RUN_ID; an engine with
 * EngineConfig.record_owner watches that directory (inotify, one thread
 * blocked on it) and, for its own run in flight, removes the file and
 * calls engine_cancel(); the run's end removes it too; the asker removes
 * it with engine_cancel_request_clear() once the run has ended (its owner
 * may have died first). run_id must be a full run id (a file name). */
int engine_cancel_request(Engine *e, const char *run_id);
void engine_cancel_request_clear(Engine *e, const char *run_id);

/* The job store the engine records runs in (owned by the engine). */
typedef struct Store Store;
Store *engine_store(Engine *e);

/* Where the engine writes run_id's output log (RunRecord.log_path), so a
 * caller that inserts the record first (the daemon's queue) stores it at
 * once and the engine need not write the record again at the start. */
char *engine_run_log_path(Engine *e, const char *run_id);
/* The run object's "limits" (store.h RunRecord.limits_json) of limits as
 * they were given: what a daemon's and an embedded run's records keep. */
char *run_limits_json(const RunLimits *l);

/* Replays a run's stored output (RunRecord.log_path) as OUTPUT events.
 * The log format is frames of "<stream> <realtime-usec> <len>\n<bytes>\n". */
int engine_log_replay(const char *log_path, RunEventFn fn, void *userdata);
/* The same from byte offset on, for following a log being written: only
 * whole frames are replayed; *ret_offset (may be NULL) is where the next
 * call continues. */
int engine_log_replay_from(const char *log_path, uint64_t offset, RunEventFn fn, void *userdata, uint64_t *ret_offset);

/* Pool state for /metrics and `pysprinter workers`. */
typedef struct EnginePoolStats {
        unsigned workers, busy, instances, instances_busy;
        uint64_t pss_bytes, memory_budget;
        uint64_t hits, misses, evictions;
        uint64_t spare_hits, spare_misses; /* ad-hoc runs handed to a spare slot, or forked without one */
} EnginePoolStats;
int engine_pool_stats(Engine *e, EnginePoolStats *ret);
/* JSON array describing each worker and instance (caller frees). */
int engine_pool_list(Engine *e, char **ret_json);
/* Stop idle workers past their timeout and instances past their TTL. */
void engine_pool_sweep(Engine *e);
/* Retires the warm instances whose instance key starts with key_prefix
 * (RunSpec.instance_key; e.g. "TENANT/NAME@" for every version of a
 * deleted function): idle ones stop now, busy ones when their invocation
 * ends; none is handed another invocation. Returns how many. */
unsigned engine_pool_retire(Engine *e, const char *key_prefix);
/* engine_pool_retire() of the instances whose key also holds key_part
 * after the prefix (the daemon's "#" before an environment's digest:
 * instances started with secrets or --env). */
unsigned engine_pool_retire_holding(Engine *e, const char *key_prefix, const char *key_part);

/* ---- garbage collection (engine-gc.c) ------------------------------------ */

typedef struct RetentionConfig RetentionConfig;
typedef struct GcStats GcStats;
/* One collection over data_dir (docs/operations.md "Retention"): the
 * store's (store_gc(): runs, logs, DAG runs, memo, data objects), the
 * cancel requests ($DATA/cancel) of runs no longer in flight (dry_run:
 * counted, not removed), then, unless dry_run, the package store's dirs no environment references
 * (pkg_env_prune() without a budget: the shared lock a process holds on an
 * environment it uses keeps that environment's dirs), and the environments
 * unused for cfg->env_max_idle_usec, when set. Adds to *ret;
 * *ret_error says which area failed. s NULL: a home without a run store
 * (engine_home_has_records() false), whose package store alone is
 * collected, creating nothing when there is none. Both `pysprinterd gc`,
 * the daemon's collector and `pysprinter gc` call this. */
int engine_gc(Store *s, const char *data_dir, const RetentionConfig *cfg, bool dry_run, const volatile bool *stop,
              GcStats *ret, char **ret_error);
