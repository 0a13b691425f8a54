/* store: the SQLite job store ($DATA/pysprinter.db, WAL mode) and its
 * migrations. Runs now; functions, DAG runs and datasets add their tables
 * through migrations in store-migrate.c.
 *
 * Depends on: basic (sqlite3 inside the module only). A Store handle is
 * safe to use from several threads (serialized internally). Several
 * processes may open the same database at once (busy timeout). */
#pragma once

#include "basic.h"

typedef struct Store Store;

/* Opens (creating and migrating) the database at path. */
int store_open(const char *path, Store **ret_store);
/* What to tell a user whose store_open(path) failed with r: "cannot open
 * the run database PATH: WHY". A database a newer release upgraded
 * (-EPROTONOSUPPORT) names both schema versions and the way out; one an
 * older release's daemon serves (-EBUSY: store_open() does not upgrade a
 * database under such a daemon, store_home_older_daemon()) names it;
 * a migration that failed in this thread's last store_open() of path
 * says which and why ("the database could not be upgraded to schema 25:
 * duplicate column name: lock_json"); other errors their errno's text.
 * Every command that opens a database
 * says it this way (docs/operations.md "Upgrades"). */
char *store_open_message(const char *path, int r);
/* The same for a process that writes a few records and exits (a CLI
 * command): the WAL's blocks are not allocated ahead of the commits (a
 * daemon's ~80 MB, store-checkpoint.c), which such a process would
 * allocate and, closing the WAL's last connection, free each time. */
int store_open_short_lived(const char *path, Store **ret_store);
/* Commits whatever the writer holds (store_flush), then closes. */
Store *store_close(Store *s);

/* ---- group commit (store-writer.c, docs/internals/performance-log.md) -------------------
 *
 * Every write of a run record (insert, update, the queue's submit, start,
 * finish, cancel) goes through one writer queue per Store, committed all
 * that is pending in one transaction: at once when nobody was committing
 * (by the caller itself), and what came in meanwhile as the next batch. A write that acknowledges
 * something (submit, finish, cancel, insert, update) returns only after
 * its transaction committed; the queue's start returns at once (its write
 * is enqueued, in order with the run's later writes). */

/* Returns once every write enqueued before the call is committed. */
int store_flush(Store *s);
/* How long a write nobody waits for may wait for company before the
 * writer's thread commits it (0: the default, 2 ms). Tests hold it long to
 * see what a finish does to a still queued deferred submit. */
void store_writer_set_linger(Store *s, usec_t usec);
/* WAL checkpoints done by the store's checkpoint thread, how many of them
 * held the writers off to let the WAL restart, how many a commit had to do
 * itself because the thread fell behind, and how long writers were held
 * off (tests, benchmarks). */
typedef struct StoreCheckpointStats {
        uint64_t checkpoints, capped, inline_checkpoints;
        usec_t stall_total_usec, stall_max_usec;
        /* The most database pages dirty or under write-back when a
         * WAL-restarting pass began (its sync waits for them with the
         * writers held off); UINT64_MAX where cachestat(2) is missing. */
        uint64_t restart_dirty_max;
        /* The thread's passes that ended in SQLite's sync of the database
         * (they copied every frame), and the most database pages dirty
         * when such a pass's copy ended and when its sync began (written
         * back on the tick between the two, round 17); UINT64_MAX where
         * cachestat(2) is missing. */
        uint64_t db_syncs, db_sync_copied_max, db_sync_found_max;
        /* A WAL restart's work (round 18): the most frames the pass that
         * reached the cap copied (its database pages are what the restart
         * writes back first, at two per appended frame), the most passes
         * the thread then ran to shrink the tail, and the most syncs
         * (store_vfs_syncs(), any connection's) from the end of the pass
         * that reached the cap to the end of the pass that let the WAL
         * restart. */
        uint64_t restart_pass_frames_max, restart_tail_passes_max, restart_syncs_max;
        /* The longest time between two ticks of one walk of the database's
         * dirty pages (STORE_CKPT_TICK_USEC when on time): the thread runs
         * at SCHED_IDLE, and a tick that comes late writes the share of
         * every frame appended meanwhile at once. */
        usec_t db_tick_gap_max_usec;
        /* The ranges the walk has written back so far and their bytes
         * (round 20: steps of dirty pages side by side go as one range,
         * a MiB per request). */
        uint64_t db_writeback_ranges, db_writeback_bytes;
} StoreCheckpointStats;
void store_checkpoint_stats(Store *s, StoreCheckpointStats *ret);
/* Transactions the writer has committed so far (tests, benchmarks). */
uint64_t store_commits(Store *s);
/* Of them, by why: the writer's thread for the journal's batch, the
 * writer's thread for a write that lingered (a deferred submit, a start),
 * and the rest (callers: waited writes, reads that commit what is
 * pending, flushes). */
typedef struct StoreCommitKinds {
        uint64_t journal, lingered, settle, other; /* settle: store_runs_settle_ask()'s */
} StoreCommitKinds;
void store_commit_kinds(Store *s, StoreCommitKinds *ret);
/* Times a caller waiting for its write woke while its write was still
 * pending behind another caller's commit, and slept again: a context
 * switch for nothing (tests, benchmarks). */
uint64_t store_writer_idle_wakeups(Store *s);
/* Whether a commit of the group is under way, and how many callers wait
 * for theirs (tests). */
void store_writer_state(Store *s, bool *ret_leading, unsigned *ret_waiting);

/* ---- the ended-runs journal (store-journal.c, store-queue.c's replay,
 * docs/api.md "Delivery") ----
 *
 * A synchronous run that ends while its deferred submit is still queued
 * (submit_deferred below) is made durable by ONE append of its ended
 * record to a journal file beside the database (DB-ended.0, .1; no fsync:
 * the durability of the WAL with synchronous=NORMAL), not by a commit;
 * the writer's thread commits the journaled records in batches (every
 * STORE_JOURNAL_LINGER_USEC or STORE_JOURNAL_MAX_RECORDS) and empties the
 * journal. Each commit rewrites whole pages besides the rows (each
 * b-tree's last leaves, and each index's two leaves left of its edge,
 * which an index's split spreads its cells over; interior pages, page 1):
 * ~40% of the WAL at 512 records a commit once the rows shrank (round
 * 21). 1024 records or 100 ms: the WAL per invoke at wrk -c8 361 -> ~295
 * B, a list under that load (it waits for the writer to commit what was
 * pending: store_runs_settle_ask()) p50 unchanged (23-24 against 23-28
 * ms), its slowest ~120 against ~50 ms; another process sees an ended run
 * ~120 ms after its answer instead of ~50 (docs/internals/performance-log.md "Where
 * issue 15 stands (end of round 21)"; rounds 17-18 measured the same
 * batch when a list committed it in its own thread and kept 512 / 50 ms).
 * An end whose run's submit or start is in the batch being committed is
 * journaled at once too, as a record that needs nothing of
 * that batch (the whole ended row, or its start and end in one fenced
 * UPDATE): no finish sleeps for a commit under way (round 13).
 * This process's reads of runs (store_run_get, lists, ...) see a
 * journaled run at once (they commit the pending batch first, or a list
 * asks the writer's thread to: store_runs_settle_ask() below); another
 * process sees it once its batch is committed (~100 ms).
 *
 * Only the process that owns the home's runs journals and replays: the
 * daemon at start-up, before it recovers its queue and serves, calls
 * start, which replays what the journal holds (a crash left it: a record
 * whose batch committed changes nothing), empties it and, journal true,
 * turns journaling on (the daemon of a cluster does not: its path stays
 * as it was). A store without it (the CLI, embedded runs) commits each end
 * as before. -errno when a record could not be replayed (the journal is
 * kept and stays off); *ret_replayed (may be NULL): the records replayed. */
#define STORE_JOURNAL_LINGER_USEC (100 * USEC_PER_MSEC)
#define STORE_JOURNAL_MAX_RECORDS 1024
int store_journal_start(Store *s, bool journal, size_t *ret_replayed);
/* A read of runs (a list) that can wait without its thread (an HTTP
 * request): instead of committing the pending batch in that thread, ask
 * the writer's thread to commit what is queued now, at normal priority
 * (docs/internals/performance-log.md round 18). ask returns a ticket, or 0: nothing to
 * wait for (nothing journaled is pending; a store without a writer's
 * thread has settled in the call); settled: whether everything queued up
 * to ticket is committed (0: yes); the hook (set once, before
 * serving) is called from the writer's thread after it committed for an
 * ask. A read then passes the ticket to its *_settled() variant, which
 * commits nothing more (it commits itself only when the ticket is not
 * settled yet: a reader that gave up waiting). */
uint64_t store_runs_settle_ask(Store *s);
bool store_runs_settled(Store *s, uint64_t ticket);
void store_set_settled_hook(Store *s, void (*fn)(void *userdata), void *userdata);

/* How long the journal's records wait for their batch (0: the default);
 * tests hold it long to kill a process before its batch. */
void store_journal_set_linger(Store *s, usec_t usec);
/* How many records a batch holds at most (0: the default; benchmarks
 * compare batch sizes). */
void store_journal_set_max_records(Store *s, unsigned records);
/* Bytes appended to the journal so far, and its records not committed
 * yet (tests, benchmarks). */
uint64_t store_journal_bytes(Store *s);
unsigned store_journal_pending(Store *s);

typedef struct RunRecord {
        char *id;
        char *tenant;
        char *filename;
        char *function;
        char *args_json;
        char *kwargs_json;
        char *status;        /* run_status_to_string() */
        int exit_code;       /* -1 while not final */
        char *value_json;
        char *value_repr;
        char *error_type;
        char *error_message;
        char *traceback;
        char *timings_json;  /* {"validate_ms":…, …} */
        char *log_path;
        usec_t created;      /* realtime µs */
        usec_t started;
        usec_t finished;
        int attempt;         /* attempts started so far (RunQueue; 0: never started) */
        int max_attempts;    /* how many the queue may start (1: never run again) */
        char *outputs_json;  /* {"NAME": VERSION}: datasets its output_dir() became */
        /* Where it came from (docs/api.md "The run object"): the deployed
         * function and version an invoke started it from (NULL, 0: none)
         * and the schedule that fired it (NULL: none). Written by the
         * INSERTs that make the record (?28, ?29), read back with it. */
        char *fn_name;
        int fn_version;
        char *schedule;
        /* The limits the run was given, {"timeout_ms", "memory_bytes",
         * "max_procs", "max_output_bytes", "network"} as compact JSON (the
         * writer's own text), or NULL (an embedded run, a run recorded
         * before they were kept). Written by the same INSERTs (?30). */
        char *limits_json;
        /* A listing's read of it (store_run_list*()): the values it left
         * unread (NULL here), as run_record_elide()'s mask; 0 otherwise. */
        unsigned elided;
        /* The environment's lock (pkg_lock_to_json() text) the engine ran
         * in: written by the final update when not NULL (docs/ui.md), once
         * per distinct text (the locks table, keyed by its sha256); not
         * read back with the record (store_run_get_lock reads it). */
        char *lock_json;
        /* What the runs table keeps of the submit's request (the store's
         * ?21) beside it: fn_name, idem_key and data_json. Given by the
         * caller that wrote the request (request_given), the submit's
         * INSERT binds them as they are instead of reading them back out
         * of the text with SQLite's JSON functions (~a sixth of a journal
         * batch's instructions per record, docs/internals/performance-log.md round 14).
         * When given they must be the request's own: its top-level
         * "fn_name" and "idem_key" strings (NULL: no such key) and
         * whether it has a "data" key (data_json is still read from the
         * text, only when there is one). Not given (a record read back, a
         * journal's replay, any other caller): read from the request as
         * before, which stores the same. */
        bool request_given;
        bool request_has_data;
        char *request_fn_name;
        char *request_idem_key;
} RunRecord;
RunRecord *run_record_free(RunRecord *r);
void run_record_freep(RunRecord **r);

/* r as the API's run object (docs/api.md), JSON text; phase (may be NULL)
 * is the live phase of a run in flight. NULL only when r holds text that
 * is not UTF-8. */
char *run_record_to_json(const RunRecord *r, const char *phase);
/* The same as a jansson object (a new reference): for an answer that is
 * serialized once, not printed, parsed back and printed again. */
struct json_t *run_record_json(const RunRecord *r, const char *phase);

/* A listing's run object (GET /v1/runs, a function's runs, `ps`) holds
 * args, kwargs, result, result_repr, error.message and error.traceback
 * only when their stored text is at most this many bytes: a longer one is
 * null there and named in the object's "elided" ("error.message");
 * GET /v1/runs/ID has it whole (docs/api.md). */
#define RUN_LIST_VALUE_MAX 4096
#define RUN_LIST_VALUE_MAX_TEXT "4096" /* the same, in SQL (store-runs.c) */
/* *ret: r shallow-copied, with the values a listing leaves out set to
 * NULL (it owns nothing: never run_record_free() it). Returns a mask of
 * the values left out, for run_json_mark_elided(): r->elided's (what a
 * listing's read left unread) and those over RUN_LIST_VALUE_MAX in r. */
unsigned run_record_elide(const RunRecord *r, RunRecord *ret);
/* Sets the values of mask to null in run object j and names them in its
 * "elided" (nothing when mask is 0; j may be NULL). */
void run_json_mark_elided(struct json_t *j, unsigned mask);

/* Insert a new record (id must be unique). */
int store_run_insert(Store *s, const RunRecord *r);
/* Overwrite the mutable fields of the record with r->id. -ENOENT if none. */
int store_run_update(Store *s, const RunRecord *r);
/* Look a run up by full id or unique prefix, within tenant (NULL: any).
 * -ENOENT none, -EEXIST prefix ambiguous. */
int store_run_get(Store *s, const char *tenant, const char *id_or_prefix, RunRecord **ret);
/* The oldest run of tenant submitted with Idempotency-Key key at or after
 * since (realtime µs): its id in *ret_id (free it). 0 found, -ENOENT none. */
int store_run_find_idempotent(Store *s, const char *tenant, const char *key, usec_t since, char **ret_id);
/* Inserts r (as store_run_insert()) keeping key as its Idempotency-Key,
 * unless a run of r->tenant already holds key with created at or after
 * r->created - window: then nothing is written and that (oldest) run's id
 * is in *ret_first_id (free it). The look-up and the insert are one
 * statement, atomic for every process on the store (the CLI's embedded
 * --idempotency-key, docs/cli.md). 0 inserted, 1 found, negative errno. */
int store_run_insert_idempotent(Store *s, const RunRecord *r, const char *key, usec_t window, char **ret_first_id);
/* Which runs a list keeps (GET /v1/runs's status, function, schedule and
 * q queries, `ps --status/--function/--schedule/--grep`); a NULL filter,
 * or a NULL field, keeps every run. */
typedef struct RunFilter {
        char *const *statuses; /* in one of these states (NULL-terminated, the API's spellings) */
        const char *fn_name;   /* started from this deployed function (the run object's fn_name) */
        const char *schedule;  /* fired by this schedule (the run object's schedule) */
        const char *text;      /* a part of its id, file name, function, fn_name or schedule, ASCII
                                * letters in either case (run_filter_text_match()); "" keeps every run */
} RunFilter;
/* RunFilter.text's longest (GET /v1/runs?q=, `ps --grep`): a search
 * box's words, not a document. */
#define RUN_FILTER_TEXT_MAX 256
/* Whether text is a part of r's id, filename, function, fn_name or
 * schedule, ASCII letters matched in either case (the dashboard's search,
 * `ps --grep`); text NULL or "": every run is. */
bool run_filter_text_match(const char *text, const RunRecord *r);
/* Whether r passes f (f NULL: every run does). */
bool run_filter_match(const RunFilter *f, const RunRecord *r);
/* The newest limit runs of tenant (NULL: any) that filter keeps (NULL:
 * all), most recent first: filtered in the walk, so the newest limit
 * failed or killed runs, not those among the newest limit. A function's
 * runs are a seek in runs_fn_name, a schedule's in runs_schedule. */
int store_run_list(Store *s, const char *tenant, const RunFilter *filter, size_t limit, RunRecord ***ret_records,
                   size_t *ret_n);
/* The same after store_runs_settle_ask() (ticket: its answer). */
int store_run_list_settled(Store *s, uint64_t ticket, const char *tenant, const RunFilter *filter, size_t limit,
                           RunRecord ***ret_records, size_t *ret_n);
/* The next page of such a list: the runs listed after run before (its
 * whole id; a run of tenant, which the caller checked), in the same order
 * (created, then id, descending), so that a caller pages back through
 * every run, past any limit. An id no run has lists nothing. ticket: as
 * store_run_list_settled()'s, or 0 to settle as store_run_list() does. */
int store_run_list_before(Store *s, uint64_t ticket, const char *tenant, const RunFilter *filter, const char *before,
                          size_t limit, RunRecord ***ret_records, size_t *ret_n);
void run_record_list_free(RunRecord **v, size_t n);
/* Whether a is listed before b (every run listing's order, GET /v1/runs's:
 * created, then id, descending). */
bool run_record_newer(const RunRecord *a, const RunRecord *b);
/* That order as a qsort() comparator of RunRecord pointers. */
int run_record_cmp_newer_first(const void *a, const void *b);
/* Mark every queued/running run as lost (called at startup by the one
 * process that owns in-flight runs, i.e. the daemon). Returns how many. */
int store_runs_mark_lost(Store *s, const char *message);
/* Records the process that runs r (an embedded run): pid and its start
 * time (pid_start_time()), and this process's pid namespace, where pid
 * names it (pid_namespace_id(): pid is of the calling process's). -ENOENT
 * when there is no such run. */
int store_run_set_owner(Store *s, const char *id, pid_t pid, uint64_t start_time);
/* The pid store_run_set_owner() recorded for run id (exactly that id) into
 * *ret_pid: 0 for a run no embedded process owns, a daemon's (whose engine
 * is the only one that can stop it). -ENOENT when there is no such run. */
int store_run_owner(Store *s, const char *id, pid_t *ret_pid);
/* A run's environment lock (RunRecord.lock_json, docs/ui.md) within
 * tenant (NULL: any). -ENOENT when there is no such run; *ret NULL when it
 * recorded none (no requirements, not resolved, or older than the column). */
int store_run_get_lock(Store *s, const char *tenant, const char *id, char **ret);
/* Marks lost every queued/running run whose recorded owner process is gone
 * (no such pid, or a pid reused by another process), with message and
 * " (pid N)". Runs without an owner (a daemon's), and those whose owner is
 * of another pid namespace, are not touched. Returns how many. */
int store_runs_mark_orphaned(Store *s, const char *message);

/* ---- the run queue (store-queue.c) ----------------------------------------
 *
 * Where acknowledged runs wait, and the one place their state moves from
 * queued to running to an end (docs/api.md "Delivery"). Every step is one
 * transaction (or part of one the store's writer groups: store_flush), so
 * a crash between any two of them loses nothing acknowledged:
 *
 *   submit   the record (status queued) and what is needed to run it again
 *            (request_json) are written together, before the client hears
 *            an id; a run that starts at once (r->status "running", with
 *            attempts left after the first) is recorded running, attempt
 *            1, and its start then writes nothing;
 *   submit_deferred  the same for a run whose caller hears its id only
 *            with its end (a synchronous invoke): not waited for. Its
 *            finish, while the write is still queued, replaces it by one
 *            INSERT of the ended record; else the write commits as
 *            submit's with the next commit after the writer's linger, at
 *            the latest the journal's linger after it (store-writer.c
 *            op_commit_after(); docs/api.md "Delivery":
 *            a crash before either loses a run nobody has an id of);
 *   reveal   before anything shows a deferred run's id (a 202, a 504 with
 *            its request id): its record is made durable;
 *   start    queued -> running and attempt += 1; the attempt is the fencing
 *            token: only it may finish the run. The SQLite queue does not
 *            wait for this write (it is committed within one group commit:
 *            a crash before it leaves the run queued, to run again);
 *   finish   writes the result only when the attempt still matches and the
 *            run has not ended, else -ESTALE (a late completion is dropped);
 *   cancel   a queued run ends cancelled without starting;
 *   recover  at start-up, by the one process that owns the queue: a run
 *            left running is queued again while attempt < max_attempts,
 *            else ends lost with the message; returns every queued run.
 *
 * The interface is a table of operations so another backend (Redis, the
 * cluster) implements the same semantics behind it. */

typedef struct PendingRun {
        char *id;
        char *tenant;
        char *request_json;  /* as submitted */
        int attempt, max_attempts;
        usec_t created;
} PendingRun;
void pending_run_list_free(PendingRun *v, size_t n);

typedef struct RunQueue RunQueue;
typedef struct RunQueueOps {
        const char *name;
        int (*submit)(RunQueue *q, const RunRecord *r, const char *request_json);
        /* Optional (NULL: submit): see "submit_deferred" above. */
        int (*submit_deferred)(RunQueue *q, const RunRecord *r, const char *request_json);
        /* Optional (NULL: every submit is durable already). */
        int (*reveal)(RunQueue *q, const char *id);
        int (*start)(RunQueue *q, const char *id, usec_t started, int *ret_attempt);
        int (*finish)(RunQueue *q, const RunRecord *r, int attempt);
        int (*cancel)(RunQueue *q, const char *id, const char *message);
        /* Optional (NULL: -EOPNOTSUPP): a running run whose attempt failed
         * goes back to queued, its attempt kept, for a start later (a
         * Lambda Event invocation's retry); -ESTALE when attempt is not
         * the current one or the run is not running. */
        int (*requeue)(RunQueue *q, const char *id, int attempt);
        int (*recover)(RunQueue *q, const char *lost_message, PendingRun **ret, size_t *ret_n, size_t *ret_lost);
        void (*free)(RunQueue *q);
} RunQueueOps;
struct RunQueue {
        const RunQueueOps *ops;
};

/* The SQLite queue over the runs table of s (which must outlive it). */
RunQueue *run_queue_sqlite_new(Store *s);
static inline int run_queue_submit(RunQueue *q, const RunRecord *r, const char *request_json) {
        return q->ops->submit(q, r, request_json);
}
static inline int run_queue_submit_deferred(RunQueue *q, const RunRecord *r, const char *request_json) {
        return q->ops->submit_deferred ? q->ops->submit_deferred(q, r, request_json) : q->ops->submit(q, r, request_json);
}
static inline int run_queue_reveal(RunQueue *q, const char *id) {
        return q->ops->reveal ? q->ops->reveal(q, id) : 0;
}
static inline int run_queue_start(RunQueue *q, const char *id, usec_t started, int *ret_attempt) {
        return q->ops->start(q, id, started, ret_attempt);
}
static inline int run_queue_finish(RunQueue *q, const RunRecord *r, int attempt) {
        return q->ops->finish(q, r, attempt);
}
static inline int run_queue_cancel(RunQueue *q, const char *id, const char *message) {
        return q->ops->cancel(q, id, message);
}
static inline int run_queue_requeue(RunQueue *q, const char *id, int attempt) {
        return q->ops->requeue ? q->ops->requeue(q, id, attempt) : -EOPNOTSUPP;
}
static inline int run_queue_recover(RunQueue *q, const char *lost_message, PendingRun **ret, size_t *ret_n,
                                    size_t *ret_lost) {
        return q->ops->recover(q, lost_message, ret, ret_n, ret_lost);
}
static inline RunQueue *run_queue_free(RunQueue *q) {
        if (q)
                q->ops->free(q);
        return NULL;
}
/* The engine's final write of a queued run: store_run_update() fenced by
 * attempt, as RunQueueOps.finish (-ESTALE when the attempt is not current). */
int store_run_finish(Store *s, const RunRecord *r, int attempt);
/* Group commit of a batch of finishes (the run watcher's: several runs end
 * per wake-up). From store_finish_hold() until store_finish_release() on
 * the same thread, store_run_finish() on s queues its write and returns 0
 * at once (the record is NOT durable yet); store_finish_release() commits
 * every held finish (with whatever else is queued) in one transaction,
 * waits for that commit, and calls fn(id, result) for each held finish in
 * order, result as store_run_finish() would have returned it (0, -ESTALE,
 * -errno), with the writer's lock held: fn must not call into the store.
 * Whoever answers a caller must do so only after the release (Delivery,
 * docs/api.md). Other writes of the thread are unchanged; one hold per
 * thread at a time. */
typedef void (*StoreHeldFn)(const char *id, int result, void *userdata);
void store_finish_hold(Store *s);
void store_finish_release(Store *s, StoreHeldFn fn, void *userdata);

/* Generic key/value cache table (lock cache, metadata). value NULL deletes. */
int store_kv_get(Store *s, const char *ns, const char *key, char **ret_value);
int store_kv_put(Store *s, const char *ns, const char *key, const char *value);
/* The keys of namespace ns, the most recently updated first, at most limit. */
int store_kv_keys(Store *s, const char *ns, size_t limit, char ***ret_keys);
/* Deletes namespace ns's keys last put before `before` (realtime µs). */
int store_kv_prune(Store *s, const char *ns, usec_t before);

/* ---- secrets (store-secrets.c, docs/secrets.md) -------------------------- */

/* A secret's name is also the environment variable a run sees it as:
 * [A-Za-z_][A-Za-z0-9_]{0,127}. */
bool secret_name_is_valid(const char *name);
#define SECRET_MAX_BYTES (64U << 10)
/* What one run, deploy or task may name: secrets and variables, at most
 * RUN_ENV_MAX_ENTRIES of each, the variables' "KEY=VALUE\0" at most
 * RUN_ENV_MAX_BYTES (docs/api.md; the daemon's request parser and the CLI
 * refuse more in their own words). */
/* Secrets one tenant may hold (GitHub allows 100 a repository, 1000 an
 * organization): a new name past it is -EDQUOT, a replaced one is not. */
#define SECRET_MAX_COUNT 1000
#define RUN_ENV_MAX_ENTRIES 64
#define RUN_ENV_MAX_BYTES (64U << 10)

typedef struct SecretInfo {
        char *name;
        usec_t created, updated;
} SecretInfo;
void secret_info_list_free(SecretInfo *v, size_t n);

/* Seals value[0..len) under key (32 bytes, shared.h seal_key_load) with
 * "tenant\0name" as the authenticated data, so a row moved to another
 * tenant or name does not open. Replaces an existing secret of that name.
 * -EINVAL for a bad name, -EFBIG above SECRET_MAX_BYTES, -EDQUOT for a new
 * name when the tenant holds SECRET_MAX_COUNT already. -ENOKEY (nothing
 * written) when another secret in the secrets table opens with none of
 * the keys the set may seal with (a database restored without its key):
 * two keys in one store would open with neither alone. Replacing the
 * secret that does not open is allowed: that is the fix. */
int store_secret_set(Store *s, const uint8_t *key, const char *tenant, const char *name, const char *value,
                     size_t len);
/* The value (caller frees; wipe it). -ENOENT when tenant has no such
 * secret, -EBADMSG when it does not open under key. */
int store_secret_get(Store *s, const uint8_t *key, const char *tenant, const char *name, char **ret_value,
                     size_t *ret_len);
/* How many of the secrets of every tenant key cannot open (*ret_n; sealed
 * under another key: a database restored without its secrets.key) and how
 * many there are (*ret_total). */
int store_secret_count_unopenable(Store *s, const uint8_t *key, size_t *ret_n, size_t *ret_total);
/* The file the callers' key was read from (docs/secrets.md "Rotating the
 * key"; NULL: none known). From then on, a secret the callers' key does
 * not open is opened with that file's key or with PATH.next, the next key
 * of a rotation under way (the key that opened is kept for the next
 * ones), and a set in the secrets table seals with PATH.next while it
 * exists, else with the file's key as it is now: a process that loaded
 * the key before a rotation goes on opening and sealing right. */
void store_secrets_key_file(Store *s, const char *path);
/* Rotates the secrets key at key_path (docs/secrets.md "Rotating the
 * key"): makes key_path.next (0600; or reuses the one a rotation killed
 * midway left), re-seals every tenant's secrets with it in one
 * transaction (values and dates unchanged), then renames it over
 * key_path. Killed at any point, nothing is lost: before the commit every
 * row is under the old key, after it under the next one, which openers
 * fall back to (store_secrets_key_file()); running it again finishes.
 * *ret_n: how many secrets are sealed with the new key. Errors, with
 * *ret_error: -ENOENT no key at key_path, -EKEYREJECTED a secret opens
 * with neither key (nothing changed), -EOPNOTSUPP the secrets are a
 * cluster's (store_secrets_use()), -EROFS key_path is on a read-only file
 * system (nothing changed; the message names a writable key path). */
int store_secrets_rotate_key(Store *s, const char *key_path, size_t *ret_n, char **ret_error);
/* The next key a rotation of key_path left (a rotation killed before its
 * rename: the secrets may be sealed with it), its path (caller frees);
 * NULL when there is none. */
char *store_secrets_rotation_unfinished(const char *key_path);
/* A run's environment: env ("KEY=VALUE", copied), then each of names as
 * NAME=its value opened in tenant (a secret after an env entry of its
 * name wins). The one way every path opens a run's secrets (embedded,
 * daemon, DAG task). On a failure (-ENOENT, -EBADMSG, …) *ret_error is
 * store_secret_error()'s words for the secret and *ret_env is untouched.
 * Free with store_env_free(), which wipes the values first. */
int store_secrets_env(Store *s, const uint8_t *key, const char *tenant, char *const *names, char *const *env,
                      char ***ret_env, char **ret_error);
void store_env_free(char **env);
/* What store_secret_get()'s (or store_secret_set()'s -EDQUOT, -ENOKEY or
 * -EKEYREJECTED) failure r
 * for name says to a user, in the one wording of every path (embedded,
 * daemon, DAG task): what to do included. */
char *store_secret_error(const char *name, int r);
/* Names and dates of tenant's secrets, by name. */
int store_secret_list(Store *s, const char *tenant, SecretInfo **ret, size_t *ret_n);
/* -ENOENT when absent. */
int store_secret_delete(Store *s, const char *tenant, const char *name);

/* Where the sealed secrets live: the database's secrets table (the
 * default), or Redis in a cluster (src/cluster), so that a secret set
 * through any node opens on every node holding the same key. A backend
 * keeps sealed boxes and dates only: sealing and opening stay in the
 * store_secret_*() calls above, with their caller's key, so no plaintext
 * ever reaches one. Same contracts as those calls. */
typedef struct SecretStore SecretStore;
typedef void (*SecretEachFn)(const char *tenant, const char *name, const uint8_t *box, size_t len, void *userdata);
typedef struct SecretStoreOps {
        const char *name;
        /* Keeps box as (tenant, name), updated now (created too when new).
         * -EDQUOT: a new name when the tenant holds SECRET_MAX_COUNT.
         * check (may be NULL): the key check box was sealed under (as
         * key_check() answered it); -ESTALE when the store keeps another
         * now (a rotation swapped it), nothing written. */
        int (*put)(SecretStore *ss, const char *tenant, const char *name, const uint8_t *box, size_t len, usec_t now,
                   const uint8_t *check, size_t check_len);
        /* Replaces (tenant, name)'s box — or, tenant NULL, the key check —
         * with box only if it is still expect: 0 replaced, -ESTALE not. */
        int (*cas)(SecretStore *ss, const char *tenant, const char *name, const uint8_t *expect, size_t expect_len,
                   const uint8_t *box, size_t len);
        /* -ENOENT when absent. */
        int (*get)(SecretStore *ss, const char *tenant, const char *name, uint8_t **ret_box, size_t *ret_len);
        /* By name. */
        int (*list)(SecretStore *ss, const char *tenant, SecretInfo **ret, size_t *ret_n);
        /* -ENOENT when absent. */
        int (*remove)(SecretStore *ss, const char *tenant, const char *name);
        /* fn for each secret of every tenant. */
        int (*each)(SecretStore *ss, SecretEachFn fn, void *userdata);
        /* The store's key check: check (a box the caller sealed; NULL:
         * only read) is kept when none is yet; *ret is the one kept
         * (caller frees), -ENOENT when none is. */
        int (*key_check)(SecretStore *ss, const uint8_t *check, size_t len, uint8_t **ret, size_t *ret_len);
        void (*free)(SecretStore *ss);
} SecretStoreOps;
struct SecretStore {
        const SecretStoreOps *ops;
};

/* From now on the secrets of s are ss's (s owns it; freed by
 * store_close()). key is the caller's. The first store_secret_set() on a
 * backend that keeps no key check records key's; when ss keeps the check
 * of another key (the one its secrets are sealed with), -EKEYREJECTED here
 * or at that set, and every later store_secret_set() on s is -EKEYREJECTED
 * too (a value sealed with a key no other node holds would open nowhere
 * else); reads go on (and fail -EBADMSG). Call before any other thread
 * uses s's secrets. */
int store_secrets_use(Store *s, SecretStore *ss, const uint8_t *key);

/* ---- tokens made by `pysprinterd token` (store-tokens.c) ---------------- */

typedef struct TokenRecord {
        char *id;               /* short public id (12 hex digits) */
        char *sha256;           /* of the token; the token itself is never kept */
        char *tenant;
        char *role;             /* "user", "readonly", "admin" */
        usec_t created, expires, last_used;  /* 0: never */
} TokenRecord;
void token_record_done(TokenRecord *t);
void token_record_list_free(TokenRecord *v, size_t n);

int store_token_insert(Store *s, const TokenRecord *t);
/* The record whose sha256 (hex) is hash; -ENOENT when none. */
int store_token_find(Store *s, const char *hash, TokenRecord *ret);
/* All tokens, by creation. */
int store_token_list(Store *s, TokenRecord **ret, size_t *ret_n);
/* Deletes the token whose id (or a unique prefix of at least 4) is id,
 * its whole id in *ret_id (when not NULL); -ENOENT when none, -EEXIST when
 * the prefix is ambiguous. */
int store_token_revoke(Store *s, const char *id, char **ret_id);
/* Records a use (at most once a minute is written). */
int store_token_touch(Store *s, const char *id, usec_t now);

/* Where the tokens live besides the tokens table: Redis in a cluster
 * (src/cluster), so that a token made or revoked through any gateway is
 * every gateway's. Same contracts as the store_token_*() calls; touch is
 * -ENOENT when the backend has no such id. */
typedef struct TokenStore TokenStore;
typedef struct TokenStoreOps {
        const char *name;
        int (*insert)(TokenStore *ts, const TokenRecord *t);
        int (*find)(TokenStore *ts, const char *hash, TokenRecord *ret);
        int (*list)(TokenStore *ts, TokenRecord **ret, size_t *ret_n);
        int (*revoke)(TokenStore *ts, const char *id, char **ret_id);
        int (*touch)(TokenStore *ts, const char *id, usec_t now);
        void (*free)(TokenStore *ts);
} TokenStoreOps;
struct TokenStore {
        const TokenStoreOps *ops;
};

/* From now on a token s inserts goes to ts (s owns it; freed by
 * store_close()). The table's tokens still count (`pysprinterd token`
 * writes it without a backend: a node's own): find, touch and revoke ask
 * ts first, then the table; list gives both, by creation. Call before any
 * other thread uses s's tokens. */
void store_tokens_use(Store *s, TokenStore *ts);

/* ---- deployed functions (store-functions.c) ------------------------------ */

typedef struct ScheduleRecord ScheduleRecord;

/* One version of a deployed function. Versions of (tenant, name) count up
 * from 1; each deploy adds one and never changes an older one. */
typedef struct FunctionRecord {
        char *tenant;
        char *name;
        int version;
        char *filename;
        char *function;          /* NULL: the @requirements-decorated one */
        char *source;
        size_t source_len;
        char *requirements_json; /* requirements kept beside the source (RunSpec.requirements_json), or NULL */
        /* What the requirements resolved to at the deploy (pkg.h's lock
         * JSON, RunSpec.lock_json): every invoke of the version installs
         * exactly these wheels and never resolves again. NULL: a version
         * without requirements, or deployed before locks were kept (its
         * invokes resolve, as they did). */
        char *lock_json;
        char *limits_json;       /* the deploy's limits object, or NULL */
        /* The function's parameters as its validation read them
         * (RunResult.params_json); NULL for a version deployed before they
         * were kept: the Lambda event then maps to keyword arguments. */
        char *params_json;
        /* The function's signature as PEP 8 spells it ("f(n: int = 1) ->
         * str") and its docstring (NULL: none), from the deploy's
         * validation (RunResult.signature, doc). A put writes them; a get
         * leaves them NULL: the invoke path neither reads nor copies them,
         * and who shows them asks function_store_describe(). */
        char *signature;
        char *doc;
        char *description;
        usec_t created;
        /* {"secrets": [NAME…], "env": {KEY: VALUE}} its runs get
         * (docs/secrets.md), or NULL. Names only: never a secret's value. */
        char *env_json;
        /* Holders besides the first (function_record_ref()). A version the
         * daemon's function cache hands out is shared by the cache, the
         * request and the run, and so read-only (issue 15: no copy of the
         * source per invoke). */
        unsigned refs;
} FunctionRecord;
/* Drops one holder; the last one frees f. */
FunctionRecord *function_record_free(FunctionRecord *f);
/* One more holder of f (thread-safe); returns f. */
FunctionRecord *function_record_ref(FunctionRecord *f);
void function_record_list_free(FunctionRecord **v, size_t n);

/* Stores f as the next version of (f->tenant, f->name); the version it got
 * goes to *ret_version (f->version is ignored). */
int store_function_put(Store *s, const FunctionRecord *f, int *ret_version);

/* One transaction several writes share (a stack deploy, docs/stack.md):
 * store_tx_begin() takes the store's lock and opens a write transaction
 * (BEGIN IMMEDIATE); the *_in_tx calls then write inside it and only they
 * may be called until store_tx_end() commits (commit true) or rolls back,
 * and releases the lock. A failed commit rolls back; either way nothing of
 * the transaction is half-applied. Example:
 *   store_tx_begin(s); k = store_function_put_in_tx(s, &f, &v);
 *   if (k >= 0) k = store_endpoint_put_in_tx(s, t, n, 1);
 *   r = store_tx_end(s, k >= 0);                                          */
int store_tx_begin(Store *s);
int store_tx_end(Store *s, bool commit);
int store_function_put_in_tx(Store *s, const FunctionRecord *f, int *ret_version);
int store_function_delete_in_tx(Store *s, const char *tenant, const char *name);
int store_schedule_insert_in_tx(Store *s, const ScheduleRecord *r);
/* store_schedule_update() inside the transaction, writing r's next_fire
 * only with timing (its spec, zone or pause changed): otherwise the stored
 * one stays, which a fire since the caller's read may have moved. */
int store_schedule_update_in_tx(Store *s, const ScheduleRecord *r, bool timing);
int store_schedule_delete_in_tx(Store *s, const char *tenant, const char *name);
int store_endpoint_put_in_tx(Store *s, const char *tenant, const char *name, int mode);
/* Reads inside the transaction, of what is there now: what the caller
 * planned before store_tx_begin() may have changed meanwhile (another
 * deploy), and nothing changes it before store_tx_end(). Each is its
 * namesake without _in_tx (the function's latest version). */
int store_function_get_in_tx(Store *s, const char *tenant, const char *name, FunctionRecord **ret);
int store_schedule_get_in_tx(Store *s, const char *tenant, const char *name, ScheduleRecord **ret);
int store_endpoint_get_in_tx(Store *s, const char *tenant, const char *name, int *ret_mode);
/* version 0: the latest. -ENOENT when there is no such function/version. */
int store_function_get(Store *s, const char *tenant, const char *name, int version, FunctionRecord **ret);
/* The signature and docstring kept with version (> 0) of (tenant, name)
 * (FunctionRecord.signature, doc), each NULL when the version has none
 * (deployed before they were kept; a function without a docstring).
 * -ENOENT when there is no such version. Caller frees both. */
int store_function_describe(Store *s, const char *tenant, const char *name, int version, char **ret_signature,
                            char **ret_doc);
/* The latest version of each of tenant's functions, by name. */
int store_function_list(Store *s, const char *tenant, FunctionRecord ***ret, size_t *ret_n);
/* The bytes of code tenant's function versions hold, every version of
 * every function (the deployed source; what the storage quota counts of
 * functions, docs/operations.md "Storage per tenant"). 0 when none. */
int store_function_code_bytes(Store *s, const char *tenant, uint64_t *ret);
/* Ascending version numbers of (tenant, name); -ENOENT when none. */
int store_function_versions(Store *s, const char *tenant, const char *name, int **ret, size_t *ret_n);
/* Deletes every version. -ENOENT when none. */
int store_function_delete(Store *s, const char *tenant, const char *name);
/* Deletes version (> 0) of (tenant, name) alone: its record (source,
 * lock, limits) goes, every other version stays. Never the latest: that is
 * what an invoke without a version runs, and numbers count on from it, so
 * no number is ever given twice (-EBUSY, nothing deleted; the only version
 * is the latest; -EMLINK, nothing deleted: an alias points at it). The
 * checks and the delete are one step. -ENOENT when there is no such
 * version. Runs keep their fn_version. store_function_delete() deletes the
 * function's aliases with it. */
int store_function_delete_version(Store *s, const char *tenant, const char *name, int version);
/* Replaces version (> 0) of (tenant, name)'s lock (FunctionRecord.lock_json)
 * with new_lock only while it is still old_lock (compare and set: two
 * invokes that found the same files elsewhere race, and a version's lock
 * is otherwise never changed). The one change a deployed version gets: its
 * wheels found at other URLs (an index moved since the deploy), the same
 * files by name, version and sha256 (the caller checks,
 * pkg_lock_json_same_files()), so its invokes fetch from there first. 0
 * when replaced; -ESTALE when the version's lock is not old_lock (changed
 * meanwhile) or there is no such version. */
int store_function_lock_update(Store *s, const char *tenant, const char *name, int version, const char *old_lock,
                               const char *new_lock);

/* An alias of a deployed function (docs/api.md "Aliases"): a name that
 * points at one of its versions, as Lambda's, and moves to another without
 * its callers changing. */
typedef struct FunctionAlias {
        char *alias;
        int version;
        char *description; /* never NULL ("" none) */
        usec_t updated;    /* when it was last set (Lambda's RevisionId) */
} FunctionAlias;
/* Frees a's strings (a itself is the caller's). */
void function_alias_done(FunctionAlias *a);
void function_alias_list_free(FunctionAlias *v, size_t n);
/* How store_function_alias_put() treats an alias already there. */
typedef enum AliasPut {
        ALIAS_PUT_ANY,    /* create or move */
        ALIAS_PUT_CREATE, /* -EEXIST when there (Lambda's CreateAlias) */
        ALIAS_PUT_UPDATE, /* -ESRCH when not there (Lambda's UpdateAlias) */
} AliasPut;
/* Points alias of (tenant, name) at version (> 0) with description (NULL:
 * ""). The version is checked in the same step as the write: -ENOENT when
 * (tenant, name) has no such version; -EEXIST/-ESRCH as mode says.
 * *ret_created (may be NULL) tells a new alias from a moved one. */
int store_function_alias_put(Store *s, const char *tenant, const char *name, const char *alias, int version,
                             const char *description, AliasPut mode, bool *ret_created);
/* -ENOENT when (tenant, name) has no such alias. Caller frees *ret. */
int store_function_alias_get(Store *s, const char *tenant, const char *name, const char *alias, FunctionAlias *ret);
/* Every alias of (tenant, name), by name (0 of them: 0, *ret NULL). */
int store_function_alias_list(Store *s, const char *tenant, const char *name, FunctionAlias **ret, size_t *ret_n);
/* -ENOENT when there is no such alias. */
int store_function_alias_delete(Store *s, const char *tenant, const char *name, const char *alias);

/* The function store the daemon deploys to and reads from: SQLite's (the
 * functions table, the store_function_* calls above) on one node, Redis's
 * in a cluster (src/cluster), so a deploy through any gateway is seen by
 * every one. Same contracts as the store_function_* calls. */
typedef struct FunctionStore FunctionStore;
typedef struct FunctionStoreOps {
        const char *name;
        int (*put)(FunctionStore *fs, const FunctionRecord *f, int *ret_version);
        int (*get)(FunctionStore *fs, const char *tenant, const char *name, int version, FunctionRecord **ret);
        /* store_function_describe()'s contract: what a get leaves out. */
        int (*describe)(FunctionStore *fs, const char *tenant, const char *name, int version, char **ret_signature,
                        char **ret_doc);
        int (*list)(FunctionStore *fs, const char *tenant, FunctionRecord ***ret, size_t *ret_n);
        int (*versions)(FunctionStore *fs, const char *tenant, const char *name, int **ret, size_t *ret_n);
        int (*remove)(FunctionStore *fs, const char *tenant, const char *name);
        /* store_function_delete_version()'s contract. */
        int (*remove_version)(FunctionStore *fs, const char *tenant, const char *name, int version);
        /* The function's URL (docs/endpoints.md), kept beside its versions
         * so that every node that invokes it serves it: mode as
         * store_endpoint_put()'s (1 token, 2 public, 0 removes); a new
         * version keeps it; who deletes the function removes it (mode 0).
         * Redis's refuses (-ENOENT) to give a function that is not there
         * a URL. */
        int (*url_put)(FunctionStore *fs, const char *tenant, const char *name, int mode);
        /* -ENOENT when the function has no URL. */
        int (*url_get)(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode);
        /* The URL's CORS settings (docs/endpoints.md "CORS"), as
         * store_endpoint_cors_put() and store_endpoint_cors_get(): kept
         * beside the URL's mode, across url_put's mode changes, removed
         * with the URL. */
        int (*url_cors_put)(FunctionStore *fs, const char *tenant, const char *name, const char *cors_json);
        int (*url_cors_get)(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode,
                            char **ret_cors_json);
        /* store_function_lock_update()'s contract; Redis's changes the
         * version's record every gateway reads. */
        int (*lock_update)(FunctionStore *fs, const char *tenant, const char *name, int version, const char *old_lock,
                           const char *new_lock);
        /* store_function_code_bytes()'s contract; NULL: not counted (Redis's,
         * docs/operations.md "Storage per tenant"). */
        int (*code_bytes)(FunctionStore *fs, const char *tenant, uint64_t *ret);
        /* store_function_alias_*()'s contracts; Redis's keep the aliases
         * in the function's hash, so deleting the function deletes them. */
        int (*alias_put)(FunctionStore *fs, const char *tenant, const char *name, const char *alias, int version,
                         const char *description, AliasPut mode, bool *ret_created);
        int (*alias_get)(FunctionStore *fs, const char *tenant, const char *name, const char *alias,
                         FunctionAlias *ret);
        int (*alias_list)(FunctionStore *fs, const char *tenant, const char *name, FunctionAlias **ret, size_t *ret_n);
        int (*alias_delete)(FunctionStore *fs, const char *tenant, const char *name, const char *alias);
        void (*free)(FunctionStore *fs);
} FunctionStoreOps;
struct FunctionStore {
        const FunctionStoreOps *ops;
};

/* The SQLite function store over s (which must outlive it). */
FunctionStore *function_store_sqlite_new(Store *s);
/* -EOPNOTSUPP when fs does not count its code (FunctionStoreOps.code_bytes). */
static inline int function_store_code_bytes(FunctionStore *fs, const char *tenant, uint64_t *ret) {
        return fs->ops->code_bytes ? fs->ops->code_bytes(fs, tenant, ret) : -EOPNOTSUPP;
}
static inline int function_store_put(FunctionStore *fs, const FunctionRecord *f, int *ret_version) {
        return fs->ops->put(fs, f, ret_version);
}
static inline int function_store_get(FunctionStore *fs, const char *tenant, const char *name, int version,
                                     FunctionRecord **ret) {
        return fs->ops->get(fs, tenant, name, version, ret);
}
static inline int function_store_describe(FunctionStore *fs, const char *tenant, const char *name, int version,
                                          char **ret_signature, char **ret_doc) {
        return fs->ops->describe(fs, tenant, name, version, ret_signature, ret_doc);
}
static inline int function_store_list(FunctionStore *fs, const char *tenant, FunctionRecord ***ret, size_t *ret_n) {
        return fs->ops->list(fs, tenant, ret, ret_n);
}
static inline int function_store_versions(FunctionStore *fs, const char *tenant, const char *name, int **ret,
                                          size_t *ret_n) {
        return fs->ops->versions(fs, tenant, name, ret, ret_n);
}
static inline int function_store_delete(FunctionStore *fs, const char *tenant, const char *name) {
        return fs->ops->remove(fs, tenant, name);
}
static inline int function_store_delete_version(FunctionStore *fs, const char *tenant, const char *name, int version) {
        return fs->ops->remove_version(fs, tenant, name, version);
}
static inline int function_store_url_put(FunctionStore *fs, const char *tenant, const char *name, int mode) {
        return fs->ops->url_put(fs, tenant, name, mode);
}
static inline int function_store_url_get(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode) {
        return fs->ops->url_get(fs, tenant, name, ret_mode);
}
static inline int function_store_url_cors_put(FunctionStore *fs, const char *tenant, const char *name,
                                              const char *cors_json) {
        return fs->ops->url_cors_put(fs, tenant, name, cors_json);
}
static inline int function_store_url_cors_get(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode,
                                              char **ret_cors_json) {
        return fs->ops->url_cors_get(fs, tenant, name, ret_mode, ret_cors_json);
}
static inline int function_store_lock_update(FunctionStore *fs, const char *tenant, const char *name, int version,
                                             const char *old_lock, const char *new_lock) {
        return fs->ops->lock_update(fs, tenant, name, version, old_lock, new_lock);
}
static inline int function_store_alias_put(FunctionStore *fs, const char *tenant, const char *name, const char *alias,
                                           int version, const char *description, AliasPut mode, bool *ret_created) {
        return fs->ops->alias_put(fs, tenant, name, alias, version, description, mode, ret_created);
}
static inline int function_store_alias_get(FunctionStore *fs, const char *tenant, const char *name, const char *alias,
                                           FunctionAlias *ret) {
        return fs->ops->alias_get(fs, tenant, name, alias, ret);
}
static inline int function_store_alias_list(FunctionStore *fs, const char *tenant, const char *name,
                                            FunctionAlias **ret, size_t *ret_n) {
        return fs->ops->alias_list(fs, tenant, name, ret, ret_n);
}
static inline int function_store_alias_delete(FunctionStore *fs, const char *tenant, const char *name,
                                              const char *alias) {
        return fs->ops->alias_delete(fs, tenant, name, alias);
}
static inline FunctionStore *function_store_free(FunctionStore *fs) {
        if (fs)
                fs->ops->free(fs);
        return NULL;
}

/* ---- DAG runs, their tasks, the task memo (store-dag.c) ------------------- */

/* One DAG run. spec_text is the pipeline file's text and base_dir the
 * directory its task files are relative to, so an interrupted run can be
 * resumed from the store alone. status: "running", "succeeded", "failed",
 * "cancelled", "invalid", "deps_failed" (a task's requirements cannot be
 * resolved). owner: "<pid>" of the process driving it. */
typedef struct DagRunRecord {
        char *id;
        char *tenant;
        char *name;
        char *file;
        char *base_dir;
        char *spec_text;
        char *params_json;
        char *options_json;
        char *status;
        char *error;
        char *owner;
        char *schedule;         /* the schedule that started it, or NULL */
        usec_t created, started, finished;
} DagRunRecord;
DagRunRecord *dag_run_record_free(DagRunRecord *r);
void dag_run_record_list_free(DagRunRecord **v, size_t n);

/* One task of a DAG run. state: "pending", "running", "succeeded",
 * "cached", "failed", "skipped", "cancelled". */
typedef struct DagTaskRecord {
        char *dag_id;
        char *name;
        int position;        /* order in the pipeline file */
        char *state;
        char *run_id;        /* the last attempt's run */
        int attempts;
        char *memo_key;
        bool cached;
        char *value_json;
        char *error;
        int exit_code;
        usec_t started, finished;
} DagTaskRecord;
DagTaskRecord *dag_task_record_free(DagTaskRecord *t);
void dag_task_record_list_free(DagTaskRecord **v, size_t n);

/* r as the API's DAG object (docs/api.md "DAG runs"), JSON text; with_tasks:
 * with its tasks (position order) and their counts by state. NULL only
 * when the records hold text that is not UTF-8. Each task's value_json is
 * taken (NULL after): a large result is decoded in its own buffer. */
char *dag_record_to_json(const DagRunRecord *r, DagTaskRecord *const *tasks, size_t n_tasks, bool with_tasks);
/* The same as a jansson object (a new reference), as run_record_json():
 * a large result is not printed to text and parsed back (two more copies
 * of it, the text's buffer doubling as it grows). Takes each task's
 * value_json as dag_record_to_json() does. */
struct json_t *dag_record_object(const DagRunRecord *r, DagTaskRecord *const *tasks, size_t n_tasks, bool with_tasks);

int store_dag_insert(Store *s, const DagRunRecord *r);
/* Overwrites status, error, owner, params, options, started, finished. -ENOENT if none. */
int store_dag_update(Store *s, const DagRunRecord *r);
/* By full id or unique prefix within tenant (NULL: any). -ENOENT, -EEXIST (ambiguous). */
int store_dag_get(Store *s, const char *tenant, const char *id_or_prefix, DagRunRecord **ret);
/* The newest limit DAG runs of tenant (NULL: any) in one of the stored
 * states statuses lists (NULL-terminated; NULL: any), most recent first. */
int store_dag_list(Store *s, const char *tenant, char *const *statuses, size_t limit, DagRunRecord ***ret,
                   size_t *ret_n);
/* Insert or replace the task (dag_id, name). */
int store_dag_task_put(Store *s, const DagTaskRecord *t);
/* The tasks of dag_id in position order (possibly none). */
int store_dag_tasks(Store *s, const char *dag_id, DagTaskRecord ***ret, size_t *ret_n);
/* The memo: (tenant, key) -> a task's result. -ENOENT when absent. */
int store_dag_memo_get(Store *s, const char *tenant, const char *key, char **ret_value_json, char **ret_run_id);
int store_dag_memo_put(Store *s, const char *tenant, const char *key, const char *value_json, const char *run_id);

/* ---- the data catalog (store-data.c) -------------------------------------- */

/* A named dataset of a tenant. kind: "file", "dir" or "url"; source: the
 * path or URL it was put from; current: the version `get`/runs use; etag and
 * last_modified: the URL's validators; checked: last revalidation (µs). */
typedef struct DatasetRecord {
        char *tenant;
        char *name;
        char *kind;
        char *source;
        int current;
        char *etag;
        char *last_modified;
        usec_t checked, created;
        /* Filled by list/get: the current version's content. */
        char *hash;
        uint64_t size, files;
        int n_versions;
} DatasetRecord;
DatasetRecord *dataset_record_free(DatasetRecord *d);
void dataset_record_list_free(DatasetRecord **v, size_t n);

typedef struct DatasetVersion {
        int version;
        char *hash;
        uint64_t size, files;
        usec_t created;
} DatasetVersion;
void dataset_version_list_free(DatasetVersion *v, size_t n);

/* -ENOENT when (tenant, name) does not exist. */
int store_dataset_get(Store *s, const char *tenant, const char *name, DatasetRecord **ret);
/* By name. */
int store_dataset_list(Store *s, const char *tenant, DatasetRecord ***ret, size_t *ret_n);
/* Insert or update kind, source, etag, last_modified, checked (not current). */
int store_dataset_put(Store *s, const DatasetRecord *d);
/* Records content hash as a version of (tenant, name) and makes it current:
 * when a version with that hash exists it is reused (*ret_new false),
 * otherwise the next number is taken. The dataset row must exist. */
int store_dataset_add_version(Store *s, const char *tenant, const char *name, const char *hash, uint64_t size,
                              uint64_t files, int *ret_version, bool *ret_new);
/* Ascending. */
int store_dataset_versions(Store *s, const char *tenant, const char *name, DatasetVersion **ret, size_t *ret_n);
/* version 0: the dataset's current one. -ENOENT when none. */
int store_dataset_version_get(Store *s, const char *tenant, const char *name, int version, DatasetVersion *ret);
/* Removes one version (version > 0) or the whole dataset (0). When the
 * current version goes, the newest remaining becomes current. -ENOENT. */
int store_dataset_delete(Store *s, const char *tenant, const char *name, int version);
/* Where a tenant's dataset is used (docs/ui.md "Data"): runs whose request
 * mounted it (runs, DAG tasks' runs, deployed functions' invokes), newest
 * first, at most limit. ref is as the run named it ("NAME" or
 * "NAME@VERSION"). */
typedef struct DatasetRunUse {
        char *run_id;
        char *status;
        char *function;         /* the function the run called */
        char *fn_name;          /* the deployed function it invoked, or NULL */
        char *ref;
        char *dag_id;           /* a DAG task's run: its DAG run and task, or NULL */
        char *task;
        usec_t created;
} DatasetRunUse;
void dataset_run_use_list_free(DatasetRunUse *v, size_t n);
int store_dataset_runs(Store *s, const char *tenant, const char *name, size_t limit, DatasetRunUse **ret,
                       size_t *ret_n);
/* How many versions (any tenant) still reference hash. */
int store_dataset_hash_refs(Store *s, const char *hash, uint64_t *ret_count);
/* Bytes a tenant holds: the sum of the sizes of the distinct contents its
 * versions reference, counting extra_hash (size extra_size) when it is not
 * among them. */
int store_dataset_tenant_bytes(Store *s, const char *tenant, const char *extra_hash, uint64_t extra_size,
                               uint64_t *ret);

/* The dataset catalogue the data module reads and writes: SQLite's (the
 * store_dataset_* calls above) on one node, Redis's in a cluster
 * (src/cluster), so a dataset put through any gateway is every node's. Same
 * contracts as the store_dataset_* calls. */
typedef struct DatasetStore DatasetStore;
typedef struct DatasetStoreOps {
        const char *name;
        int (*get)(DatasetStore *ds, const char *tenant, const char *name, DatasetRecord **ret);
        int (*list)(DatasetStore *ds, const char *tenant, DatasetRecord ***ret, size_t *ret_n);
        int (*put)(DatasetStore *ds, const DatasetRecord *d);
        int (*add_version)(DatasetStore *ds, const char *tenant, const char *name, const char *hash, uint64_t size,
                           uint64_t files, int *ret_version, bool *ret_new);
        int (*versions)(DatasetStore *ds, const char *tenant, const char *name, DatasetVersion **ret, size_t *ret_n);
        int (*version_get)(DatasetStore *ds, const char *tenant, const char *name, int version, DatasetVersion *ret);
        int (*remove)(DatasetStore *ds, const char *tenant, const char *name, int version);
        int (*hash_refs)(DatasetStore *ds, const char *hash, uint64_t *ret_count);
        int (*tenant_bytes)(DatasetStore *ds, const char *tenant, const char *extra_hash, uint64_t extra_size,
                            uint64_t *ret);
        void (*free)(DatasetStore *ds);
} DatasetStoreOps;
struct DatasetStore {
        const DatasetStoreOps *ops;
};
/* The SQLite dataset store over s (which must outlive it). */
DatasetStore *dataset_store_sqlite_new(Store *s);
static inline DatasetStore *dataset_store_free(DatasetStore *ds) {
        if (ds)
                ds->ops->free(ds);
        return NULL;
}

/* ---- schema (store-migrate.c) --------------------------------------------- */

/* The schema version this binary writes (PRAGMA user_version after every
 * migration). store_open() refuses a database whose version is higher with
 * -EPROTONOSUPPORT: an older binary must not write a schema it does not
 * know (docs/operations.md "Upgrades"). */
int store_schema_version(void);
/* The SQLite VFS every connection of a Store uses (store-vfs.c): "unix",
 * with each WAL frame's header and page written in one system call; the
 * files and locks are the unix VFS's, so any other process may open them.
 * Registered at the first call; NULL (SQLite's default) if it cannot be. */
#define STORE_VFS_NAME "pysprinter"
const char *store_vfs(void);
/* WAL frames written as one write so far, by every Store of the process. */
uint64_t store_vfs_joined_writes(void);
/* Syncs of WAL and database files so far (each a device flush on a disk),
 * by every Store of the process. */
uint64_t store_vfs_syncs(void);
/* The user_version of the database file at path, without migrating it. */
int store_file_schema_version(const char *path, int *ret_version);

/* ---- retention and garbage collection (store-retention.c) ---------------- */

/* How long finished runs and their logs are kept (docs/operations.md
 * "Retention"). 0 fields mean "no limit". */
typedef struct RetentionPolicy {
        uint64_t max_age_usec;      /* finished runs and DAG runs older than this go */
        uint64_t max_log_bytes;     /* per tenant: beyond it, the oldest runs go */
        /* RETENTION_SET_* of the fields the config wrote: a tenant's
         * override of 0 ("keep forever") is a value, not "the default's". */
        unsigned set;
} RetentionPolicy;
#define RETENTION_SET_MAX_AGE (1U << 0)
#define RETENTION_SET_MAX_LOG_BYTES (1U << 1)

typedef struct RetentionTenant {
        char *tenant;
        RetentionPolicy policy;
} RetentionTenant;

#define RETENTION_DEFAULT_MAX_AGE_USEC (30ULL * 86400 * USEC_PER_SEC)
#define RETENTION_DEFAULT_MAX_LOG_BYTES (1ULL << 30)
#define RETENTION_DEFAULT_BATCH 500
#define RETENTION_DEFAULT_INTERVAL_USEC (3600ULL * USEC_PER_SEC)
/* Unreferenced data objects younger than this may belong to a put in
 * progress whose version is not recorded yet. */
#define RETENTION_OBJECT_GRACE_USEC (3600ULL * USEC_PER_SEC)

typedef struct RetentionConfig {
        RetentionPolicy defaults;
        RetentionTenant *tenants; /* per-tenant overrides (each field not in .set: the default's) */
        size_t n_tenants;
        unsigned batch_rows;        /* rows deleted per transaction */
        uint64_t batch_pause_usec;  /* the store is free for requests between batches */
        uint64_t interval_usec;     /* the daemon's collector runs this often (0: never) */
        /* Environments (package store records) no process holds and none
         * used for this long go, with the store dirs only they name
         * (retention.env_max_idle_days; 0: only unreferenced dirs go). */
        uint64_t env_max_idle_usec;
        uint64_t reserve_bytes;     /* free space below which new runs are refused (507) */
        uint64_t warn_bytes;        /* free space below which /healthz warns */
        /* Data objects are referenced from elsewhere (a cluster's catalogue
         * in Redis, not this store): none is collected here, nor a log
         * file for want of a run in this store (its run is Redis's). */
        bool keep_data_objects;
} RetentionConfig;

void retention_config_init(RetentionConfig *c);
void retention_config_done(RetentionConfig *c);
/* A deep copy of src into ret (initialised by this call). */
void retention_config_copy(RetentionConfig *ret, const RetentionConfig *src);
/* The policy of tenant: the fields its override set (0 included) over the
 * defaults. */
RetentionPolicy retention_policy_for(const RetentionConfig *c, const char *tenant);

/* What one collection removed (or, dry-run, would remove). */
typedef struct GcStats {
        uint64_t runs, dag_runs, memo_entries;
        uint64_t logs, log_bytes;
        uint64_t dag_dirs, dag_dir_bytes;
        uint64_t data_objects, data_bytes;
        uint64_t cancel_requests;   /* engine_gc(): $DATA/cancel asks of runs no longer in flight */
        uint64_t package_bytes;     /* engine_gc(): the package store's unreferenced dirs */
        usec_t started, duration_usec;
} GcStats;
uint64_t gc_stats_bytes(const GcStats *st);
/* What a collection removed and freed, for a person (two lines) or, json,
 * one JSON object per line ({"dry_run", "runs", …, "freed_bytes"}). */
char *gc_stats_summary(const GcStats *st, bool dry_run, bool json);

/* The clock retention judges ages by: now_realtime(), or the seconds since
 * the epoch in $PYSPRINTER_TEST_NOW when set (tests only: a run can be made
 * 31 days old without waiting; docs/operations.md says so). */
usec_t retention_now(void);

/* One collection over the store and data_dir's files: finished runs past
 * their tenant's age (their logs with them), then the oldest finished runs
 * of each tenant whose logs exceed its byte budget, finished runs of
 * deleted functions, DAG runs past the age (their task runs and their
 * folder DATA/dags/<id>), memo entries whose run is gone, and data objects
 * (DATA/data/objects/<hash>) no version references, tokens past their
 * expiry. Never a queued or
 * running run or DAG run. Deletes at most cfg->batch_rows rows per
 * transaction and sleeps batch_pause_usec between them, so requests get the
 * store in between. *stop (may be NULL) ends it early between batches.
 * dry_run: counts only. Stats are added to *ret. */
int store_gc(Store *s, const RetentionConfig *cfg, const char *data_dir, usec_t now, bool dry_run,
             const volatile bool *stop, GcStats *ret);

/* Bytes in use, per area (the daemon's /metrics). */
typedef struct UsageTenant {
        char *tenant;
        uint64_t runs;          /* records */
        uint64_t log_bytes;
        uint64_t data_bytes;    /* distinct contents its dataset versions reference */
} UsageTenant;
typedef struct StoreUsage {
        uint64_t db_bytes;      /* database + WAL */
        uint64_t log_bytes, data_bytes, package_bytes, dag_bytes;
        UsageTenant *tenants;
        size_t n_tenants;
} StoreUsage;
void store_usage_done(StoreUsage *u);
int store_usage(Store *s, const char *data_dir, StoreUsage *ret);

/* ---- backup and restore (store-backup.c) --------------------------------- */

/* A consistent copy of the database at db_path into dest (created; must not
 * exist), with SQLite's online backup API: readers and writers of db_path
 * go on meanwhile (WAL: the copy is one read transaction's snapshot).
 * The ends still only in db_path's ended-runs journal are replayed into
 * the copy: *ret_replayed (if not NULL) is how many records that was, as
 * a daemon's start counts its replay. *ret_error says what failed. */
int store_backup(const char *db_path, const char *dest, size_t *ret_replayed, char **ret_error);
/* Replaces the database at db_path with the backup at src after checking
 * it (a SQLite file, integrity_check ok, schema not newer than this
 * binary). The caller makes sure no process has db_path open (the daemon's
 * lock). */
int store_restore(const char *src, const char *db_path, char **ret_error);
/* The home's lock, DATA/pysprinterd.lock: every process that opens the
 * home's database (a daemon's or an embedded CLI's engine, `pysprinterd gc`
 * and `token`) holds it shared while it does; `pysprinterd restore` takes
 * it exclusively, so it never replaces the database under a writer, and
 * none starts while a restore runs. Never waits. Returns the fd holding
 * the lock (the caller closes it to drop it), or a negative errno:
 * -EWOULDBLOCK when the other kind is held. */
int store_home_lock(const char *data_dir, bool exclusive);
/* DATA/pysprinterd.pid: a daemon holds it under an exclusive flock for its
 * life and writes its pid in it (src/daemon/pysprinterd.c). */
#define STORE_HOME_PID_FILE "pysprinterd.pid"
/* Whether a live pysprinterd serves data_dir (holds STORE_HOME_PID_FILE's
 * flock: a daemon killed -9 holds nothing). *ret_pid: the pid it wrote, 0
 * when unreadable; *ret_config (unless NULL): the absolute path of the
 * config file it was started with (its `config=` line), NULL when none;
 * both written only when true. Takes no lock that outlives the call (a
 * starting daemon retries its own for seconds). */
bool store_home_daemon(const char *data_dir, pid_t *ret_pid, char **ret_config);
/* A pysprinterd of a release before STORE_HOME_PID_FILE (2026-12-06: it
 * takes no lock on it) that serves data_dir: the first process other than
 * this one that holds DATA/pysprinter.db open and whose command line is a
 * pysprinterd (not its gc, backup, restore or token subcommands). Its pid,
 * or 0 when none is seen (processes of other users cannot be looked at).
 * store_home_daemon() falls back to it when the pid file is unlocked; a
 * starting daemon asks it after taking its own lock. Walks /proc: a few
 * ms on a busy host, so only where a daemon's presence matters. */
pid_t store_home_older_daemon(const char *data_dir);
/* Whether s was opened read-only: its database on a read-only file system
 * (store_open() reads it as it stands; every write fails). */
bool store_read_only(Store *s);
/* What a shared store_home_lock() that failed with r means, for a user:
 * -EWOULDBLOCK is a restore running. Newly allocated. */
char *store_home_lock_message(const char *data_dir, int r);

/* ---- schedules (store-schedules.c, docs/schedules.md) ---------------------- */

/* A schedule of a tenant: fires deployed function `function` with the
 * arguments of invoke_json (an invoke request body) at the times spec
 * (cron_parse()) gives in time zone tz. Times are Unix seconds. */
struct ScheduleRecord {
        char *tenant;
        char *name;
        char *function;
        char *spec;
        char *tz;
        char *invoke_json;
        char *dag_json;         /* non-NULL: fires this DAG (a POST /v1/dags body), function is "" */
        int catch_up;           /* 1: one missed fire runs at start; 0: none */
        bool allow_overlap;
        bool paused;
        int64_t next_fire;
        int64_t last_fire;      /* 0: never */
        char *last_run_id;      /* NULL: never */
        char *last_note;        /* why the last fire time started no run, or NULL */
        usec_t created;
};
ScheduleRecord *schedule_record_free(ScheduleRecord *r);
void schedule_record_list_free(ScheduleRecord **v, size_t n);
/* -EEXIST when (tenant, name) exists. */
int store_schedule_insert(Store *s, const ScheduleRecord *r);
/* An edit (pause, resume): writes r's settings (function, spec, tz,
 * arguments, catch-up, overlap, paused), next_fire and note. Never the
 * fire state (last_fire, last_run_id): r was read before, and a fire in
 * between keeps its run. -ENOENT when there is no such schedule. */
int store_schedule_update(Store *s, const ScheduleRecord *r);
/* The scheduler's write: r's fire state (paused, next/last fire, last run,
 * note), only when the stored schedule is still active with next_fire
 * expected_next_fire — else -ESTALE and nothing changes (a pause, rm or
 * another scheduler got there first). Records r's run like update. */
int store_schedule_advance(Store *s, const ScheduleRecord *r, int64_t expected_next_fire);
int store_schedule_get(Store *s, const char *tenant, const char *name, ScheduleRecord **ret);
/* tenant NULL: every tenant's. By tenant, name. */
int store_schedule_list(Store *s, const char *tenant, ScheduleRecord ***ret, size_t *ret_n);
/* The schedule and its runs' tags in one transaction (the runs stay): a
 * schedule added again under the name starts with no runs. -ENOENT when
 * absent. store_schedule_delete_in_tx() does the same in a stack's. */
int store_schedule_delete(Store *s, const char *tenant, const char *name);
/* The ids of the runs the schedule started, newest first, at most limit
 * (a NULL-terminated strv, possibly NULL when none). The store keeps the
 * newest STORE_SCHEDULE_RUNS_MAX of them; retention (store_gc) removes a
 * run's id with the run. */
#define STORE_SCHEDULE_RUNS_MAX 100
int store_schedule_runs(Store *s, const char *tenant, const char *name, size_t limit, char ***ret);
/* Removes run_id from the schedule's runs (a fire whose run turned out to
 * be another's: a cluster's other gateway fired the same fire time). 0
 * also when it was not there. */
int store_schedule_forget_run(Store *s, const char *tenant, const char *name, const char *run_id);

/* ---- function endpoints (store-endpoints.c, docs/endpoints.md) ------------ */

/* mode: 1 token, 2 public (the daemon's EndpointMode); 0 removes it. */
int store_endpoint_put(Store *s, const char *tenant, const char *name, int mode);
/* -ENOENT when the function has no endpoint. */
int store_endpoint_get(Store *s, const char *tenant, const char *name, int *ret_mode);
/* The endpoint's CORS settings (docs/endpoints.md "CORS"): cors_json,
 * Lambda's Cors object as the caller validated it, replaces them; NULL
 * removes them. -ENOENT when the function has no endpoint (settings are
 * never kept without one: the endpoint's removal takes them). */
int store_endpoint_cors_put(Store *s, const char *tenant, const char *name, const char *cors_json);
/* store_endpoint_get() and the settings in one read: *ret_cors_json is
 * NULL when there are none (caller frees). -ENOENT when no endpoint. */
int store_endpoint_cors_get(Store *s, const char *tenant, const char *name, int *ret_mode, char **ret_cors_json);

/* The ids of the runs of tenant's deployed function name, newest first, at
 * most limit (a NULL-terminated strv, NULL when none). */
int store_function_run_ids(Store *s, const char *tenant, const char *name, size_t limit, char ***ret);
/* The same after store_runs_settle_ask() (ticket: its answer). */
int store_function_run_ids_settled(Store *s, uint64_t ticket, const char *tenant, const char *name, size_t limit,
                                   char ***ret);
