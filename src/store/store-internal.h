/* Internal to the store module. */
#pragma once

#include <pthread.h>
#include <sqlite3.h>

#include "store-errno.h"
#include "store.h"

#define STORE_STMT_CACHE 32

typedef struct StoreOp StoreOp;

struct Store {
        sqlite3 *db;
        pthread_mutex_t lock;
        /* Prepared statements of the hot paths, by their SQL's address
         * (string literals): parsing SQL on every run showed in profiles. */
        struct {
                const char *sql;
                sqlite3_stmt *st;
        } cache[STORE_STMT_CACHE];
        size_t n_cache;
        /* The hot reads (store_read()): a second, read-only connection
         * under its own lock, so an invoke's function lookup and its
         * answer never wait behind a group commit (WAL: a reader sees the
         * last commit while the writer writes). NULL: reads use db. */
        sqlite3 *rdb;
        pthread_mutex_t rlock;
        struct {
                const char *sql;
                sqlite3_stmt *st;
        } rcache[8];
        size_t n_rcache;
        char *reserve_path;     /* store_reserve_make() */
        /* store_secrets_use(): the secrets' backend (NULL: the secrets
         * table), and whether it keeps the check of another key than the
         * caller's (its sets are refused). */
        SecretStore *secrets;
        bool secrets_key_checked, secrets_key_foreign; /* under lock */
        /* store_secrets_key_file(): the key file the callers' key comes
         * from (NULL: none), and the key last read from it or from its
         * rotation's next key that opened what the callers' did not
         * (docs/secrets.md "Rotating the key"); under lock. */
        char *secrets_key_path;
        uint8_t secrets_key_alt[32];
        bool secrets_key_alt_set;
        TokenStore *tokens;                            /* store_tokens_use(); NULL: the tokens table only */
        /* A search the index gives this many candidates or more walks the
         * runs instead (store-search.c); 0: STORE_SEARCH_CANDIDATES_MAX.
         * Tests lower it. */
        size_t search_candidates_max;
        size_t search_chunk; /* store_search_index_tail()'s chunk; 0: STORE_SEARCH_INDEX_CHUNK */
        /* An in-memory copy (store_snapshot(), gc --dry-run) has no file
         * to find the default log paths beside: the original's logs dir. */
        char *copy_log_dir;
        /* The writer (store-writer.c): its queue, its leader and its
         * thread, under wlock; commits and the lock cache under lock (the
         * connection's). */
        pthread_mutex_t wlock;
        pthread_cond_t wcond, wdone;
        StoreOp *whead, *wtail;
        StoreOp *wdeferred;     /* the queued deferred ops, in queue order (their dnext) */
        pthread_t writer;
        bool wstarted, wstop, wleader;
        bool wticking;          /* the writer sleeps timed: it looks by itself */
        usec_t wsince;          /* when the oldest queued write was queued */
        uint64_t wabsorbed;     /* unwaited writes callers committed or replaced (writer_main()) */
        usec_t wlinger;         /* store_writer_set_linger(); 0: STORE_LINGER_USEC */
        uint64_t commits;
        uint64_t wcommits_journal, wcommits_lingered, wcommits_settle; /* store_commit_kinds(), under wlock */
        uint64_t wseq;          /* ops enqueued so far (their seq) */
        uint64_t wsettle_want;  /* store_runs_settle_ask()'s ticket for the writer's thread; 0: none */
        void (*wsettled_hook)(void *userdata); /* store_set_settled_hook() */
        void *wsettled_data;
        uint64_t widle_wakeups; /* store_writer_idle_wakeups() */
        unsigned wdrainers;     /* threads in drain_locked(), on wdone */
        unsigned wwaiting;      /* callers asleep in wait_done_locked() */
        unsigned wclaimed;      /* queued ops their finish journals without wlock (absorb_journaled_locked()) */
        StoreOp *wbatch;        /* the batch under way (its leader's), NULL between commits */
        void (*wcommit_hook)(void *userdata); /* tests: called before a batch's COMMIT */
        /* The writer thread's own batches run at SCHED_IDLE (store-writer.c
         * "Priority"): its thread id, whether it is lowered now, and the
         * threads waiting for it (atomic), under wprio (a leaf lock). */
        pthread_mutex_t wprio;
        pid_t wtid;
        bool wlowered;
        unsigned wprio_waiters;
        /* The starvation bound (store-prio.c): when the batch was lowered,
         * how long it may stay lowered, and the guard thread at normal
         * priority that raises it then, asleep on its timerfd (armed only
         * while a batch is lowered: an idle store does not tick); under
         * wprio. */
        usec_t wlowered_at;
        usec_t wstarve_bound;
        pthread_t wguard;
        int wguard_fd;
        bool wguard_started, wguard_stop;
        uint64_t wbound_raises;
        uint64_t wyields;
        void *wcommit_hook_data;
        struct {
                char *text;
                size_t len;
                char hash[65];
        } locks[8];
        size_t locks_next;
        bool reserve_released;
        usec_t reserve_checked;
        /* The checkpointer (store-checkpoint.c): its own connection and
         * thread; what the write connection's WAL hook saw, under clock. */
        sqlite3 *cdb;
        pthread_t checkpointer;
        pthread_mutex_t clock;
        pthread_mutex_t crun;   /* held across a checkpoint pass */
        pthread_cond_t ccond;
        bool cinit, cstarted, cstop, cwanted;
        bool crestart;          /* the next commit runs the WAL-restarting pass */
        bool cboosted;          /* at normal priority: it fell behind */
        pid_t ctid;             /* its thread id (its priority is per thread) */
        int cfd_wal;            /* for writing back ahead of the syncs */
        int cfd_db;             /* the same for the database file; closed only
                                 * after every connection (store_close): a
                                 * close drops the process's POSIX locks */
        int cpage;              /* the database's page size */
        char *cwal_path;
        int cframes;            /* frames in the WAL at the last commit */
        int cdone;              /* of them, copied by the last checkpoint */
        int ctrickled;          /* of them, whose write-back the thread started */
        bool ctrickle;          /* the thread is asked to start the next span's */
        /* The database pages a pass copied in, written back on a steady
         * tick as the WAL grows (round 17); the thread's alone. */
        off_t cdb_cursor;       /* where the walk of the file is */
        uint64_t cdb_left;      /* dirty pages still ahead of it; 0: none */
        uint64_t cdb_total;     /* dirty pages when the walk began */
        int cdb_frames;         /* WAL frames at its last tick */
        usec_t cdb_tick_at;     /* when its last tick wrote (0: a new walk) */
        usec_t cdb_tick_gap_max; /* the longest between two, under clock */
        uint64_t cdb_ranges, cdb_range_bytes; /* the walk's write-back calls, their bytes; under clock */
        uint64_t checkpoints, ccapped, cinline;
        usec_t cstall_total, cstall_max;        /* the writers held off */
        uint64_t cdirty_max;    /* database pages not on disk when a restart began */
        uint64_t cdb_syncs, cdb_copied_max, cdb_found_max; /* at the pass's database sync */
        uint64_t crestart_syncs0; /* store_vfs_syncs() when the pass that reached the cap ended */
        uint64_t crestart_frames_max, ctail_max, crestart_syncs_max; /* StoreCheckpointStats.restart_* */
        int cdb_spread;           /* frames over which the last pass's pages are written back */
        /* The ended-runs journal (store-journal.c), under wlock: its two
         * files (DB-ended.0/.1, -1: closed), the one appended to, their
         * sizes and records not committed yet; the writer's journaled
         * ops queued (taken by no batch yet) and when the oldest came. */
        char *jpath;            /* "DB-ended"; NULL: no journal (a private database) */
        bool jon;
        int jfd[2];
        unsigned jactive;
        uint64_t jsize[2], jpending[2];
        uint64_t jbytes;        /* appended so far (tests, benchmarks) */
        unsigned jqueued;
        usec_t jsince;
        usec_t jlinger;         /* store_journal_set_linger(); 0: STORE_JOURNAL_LINGER_USEC */
        unsigned jmax;          /* store_journal_set_max_records(); 0: STORE_JOURNAL_MAX_RECORDS */
        unsigned jlive;         /* journaled, not committed (atomic: reads look without wlock) */
};

#define STORE_RESERVE_BYTES (2ULL << 20)

/* A cached statement for a read (sql: a string literal), on the read
 * connection when there is one, with its lock taken; NULL (lock released)
 * when it cannot be prepared. store_read_done() resets it and unlocks. */
sqlite3_stmt *store_read(Store *s, const char *sql);
void store_read_done(Store *s, sqlite3_stmt *st);

/* The full-disk reserve (store.c): make it when there is room; give it back
 * (true when there was one) so a write that found the disk full can be
 * tried once more. */
void store_reserve_make(Store *s);
bool store_reserve_release(Store *s);
/* Removes the reserve file at reserve_path (a store not open yet: its open
 * found the disk full) and says so; true when there was one. */
bool store_reserve_release_path(const char *reserve_path);

/* With s->lock held: a ready statement for sql, a string literal (cached
 * by its address), or NULL. Hand it back with store_stmt_done(). */
sqlite3_stmt *store_stmt(Store *s, const char *sql);
void store_stmt_done(Store *s, sqlite3_stmt *st);

/* store-backup.c: store_home_older_daemon() for the database at db_path. */
pid_t store_db_older_daemon(const char *db_path);
/* store-migrate.c: the database's schema version (PRAGMA user_version),
 * -1 when it cannot be read. */
int store_db_schema_version(sqlite3 *db);
/* Applies every migration newer than the database's user_version. On a
 * step that fails, "the database could not be upgraded to schema N:
 * SQLITE'S MESSAGE" and -EUCLEAN when its SQL failed (SQLITE_ERROR), else
 * the errno of SQLite's code; the steps before it stay applied. A schema
 * version that cannot be read (PRAGMA user_version) fails it before any
 * step: "its schema version (PRAGMA user_version) could not be read:
 * SQLITE'S MESSAGE" and the errno of SQLite's code. */
int store_migrate(sqlite3 *db, char **ret_error);
/* ---- the runs' search index (store-search.c) ---- */
/* A text the index gives at least this many candidates for is common: the
 * walk of the newest runs finds its runs sooner than looking each of
 * them up (each ~1.4 us: 50000 of them ~70 ms). */
#define STORE_SEARCH_CANDIDATES_MAX 50000
/* How many runs a search indexes of the tail before it looks (~6 us each),
 * and a collection in each of its transactions. */
#define STORE_SEARCH_INDEX_CHUNK 10000
/* "rowid > THE MARK": a run the index does not hold yet (SQL). */
extern const char store_search_tail_sql[];
/* The FTS5 query that finds the candidates for text (each trigram of its
 * code points, as a string, joined by AND); NULL when the index cannot
 * serve it: fewer than 3 code points, or not UTF-8 (strictly: FTS5 reads
 * an overlong form or a surrogate as U+FFFD). Newly allocated. */
char *store_search_match(const char *text);
/* s->lock held: the runs the index gives for match (their rowids, a JSON
 * array in *ret_json) when they and the tail are fewer than
 * s->search_candidates_max; -E2BIG when they are not (a common text, or
 * a long tail), another negative errno on an error: the walk serves it. */
int store_search_candidates(Store *s, const char *match, char **ret_json);
/* Indexes up to most runs of the tail (the oldest first; 0: the
 * store's chunk) in one transaction, moving the mark past them. Takes s->lock. How many it
 * indexed, or negative errno (busy, a read-only database). */
int64_t store_search_index_tail(Store *s, size_t most);
/* Binds s, or NULL when s is NULL. */
void store_bind_text(sqlite3_stmt *st, int i, const char *s);
/* Binds the set of strings set (NULL-terminated) as a JSON array, for
 * "(?N IS NULL OR col IN (SELECT value FROM json_each(?N)))"; NULL (any)
 * as NULL. */
void store_bind_set(sqlite3_stmt *st, int i, char *const *set);
/* A copy of column i's text, or NULL. */
char *store_col_text(sqlite3_stmt *st, int i);

/* The runs table's columns in the order store_run_bind() binds them
 * (?1..?20) and store_run_from_row() reads them. */
#define RUN_COLUMNS                                                                             \
        "id, tenant, filename, function, args_json, kwargs_json, status, exit_code, value_json, " \
        "value_repr, error_type, error_message, traceback, timings_json, log_path, created, "    \
        "started, finished, attempt, max_attempts"
/* What store_run_from_row() reads: RUN_COLUMNS, then the columns no
 * insert binds (outputs_json, written with the run's end as ?22) and the
 * run's origin (fn_name, fn_version, schedule: migrations 8 and 23) and its limits
 * (limits_json: migration 24). */
#define RUN_SELECT_COLUMNS RUN_COLUMNS ", outputs_json, fn_name, fn_version, schedule, limits_json"

/* A listing's read (run_list_read()): RUN_SELECT_COLUMNS with each value
 * a listing leaves out (run_record_elide(): its text over
 * RUN_LIST_VALUE_MAX bytes) read as the integer 0 instead of its text:
 * a listing of runs that hold megabytes never copies them out of SQLite,
 * nor holds a page of them at once. Its length is taken once (an integer,
 * not a NULL, marks the value left out: a NULL value is one too). */
#define RUN_LIST_VALUE(col) \
        "CASE WHEN length(CAST(" col " AS BLOB)) > " RUN_LIST_VALUE_MAX_TEXT " THEN 0 ELSE " col " END"
#define RUN_LIST_COLUMNS                                                                                                                                                                                                                                                                              \
        "id, tenant, filename, function, " RUN_LIST_VALUE("args_json") ", " RUN_LIST_VALUE(                                                                                                                                                                                                           \
                "kwargs_json") ", status, exit_code, " RUN_LIST_VALUE("value_json") ", " RUN_LIST_VALUE("value_repr") ", error_type, " RUN_LIST_VALUE("error_message") ", " RUN_LIST_VALUE("traceback") ", timings_json, log_path, created, started, finished, attempt, max_attempts, outputs_json, " \
                                                                                                                                                                                                        "fn_name, fn_version, schedule, limits_json"

/* A run's started or finished time t as its row keeps it, created the
 * row's created (both SQL expressions: in an INSERT the bound ?16, in an
 * UPDATE the column created, since a start's or a finish's record carries
 * none): created - t - 1 when t > 0 and t >= created, else t. Why: every
 * invoke writes its row, and each of its bytes reaches the disk twice (the
 * WAL, the checkpoint), ~1 ms of p99 per KiB per invoke on the disk home
 * (docs/internals/performance-log.md, "Run rows: started and finished relative to
 * created (round 21)"); absolute µs (~1.8e15) take 8 bytes each, the few
 * µs after created an invoke starts and ends 1 (a 10 s run 4). Negative,
 * so that rows written before (absolute, >= 0) read as they did with no
 * migration; 0 (not started, not ended) and a t before created (the clock
 * stepped back) stay as they are. The one encoder: every statement that
 * writes runs.started or runs.finished goes through it, and
 * store_time_decode() is its inverse. No SQL compares or orders by the
 * stored values (lists and retention go by created and status). */
#define STORE_TIME_ENC(t, created) \
        "(CASE WHEN " t " > 0 AND " t " >= " created " THEN " created " - " t " - 1 ELSE " t " END)"

/* STORE_TIME_ENC()'s inverse: the time a stored started or finished v of
 * a row created at created stands for. */
static inline usec_t store_time_decode(int64_t v, usec_t created) {
        return v < 0 ? created + (usec_t) (-1 - v) : (usec_t) v;
}

/* Binds r's texts without copying them: r must outlive the statement's
 * step, and its bindings be cleared before r goes (store_run_exec_locked()
 * does both). */
void store_run_bind(sqlite3_stmt *st, const RunRecord *r);
/* store-timings.c: a run's timings as the runs table keeps them. Packs the
 * engine's timings object t into buf: STORE_TIMINGS_BINARY (the values as
 * microseconds, *ret_len bytes: bind as a BLOB) when each value is
 * spelled as format_ms() spells it, STORE_TIMINGS_VALUES (the JSON array of
 * its values' texts, NUL-terminated) for the same names with other
 * spellings, else STORE_TIMINGS_AS_IS (t kept as it is). */
#define STORE_TIMINGS_PACKED_MAX 256
typedef enum StoreTimingsForm { STORE_TIMINGS_AS_IS, STORE_TIMINGS_VALUES, STORE_TIMINGS_BINARY } StoreTimingsForm;
StoreTimingsForm store_timings_pack(const char *t, char *buf, size_t size, size_t *ret_len);
/* The timings text column col of st's row gave back as it was written. */
char *store_timings_col(sqlite3_stmt *st, int col);
/* store-log-path.c: a run's log path as the runs table keeps it. What to
 * bind for log_path of run id in the statement st ('' for the engine's
 * default path beside st's database, else log_path itself). */
const char *store_log_path_packed(sqlite3_stmt *st, const char *id, const char *log_path);
/* Column col of st's row as the log path of run id, whole (a copy, or NULL). */
char *store_log_path_col(sqlite3_stmt *st, int col, const char *id);
/* The directory the default log paths of db's runs name (DATA_DIR/logs,
 * beside its file; a copy), or NULL when the database has no file. */
char *store_log_dir(sqlite3 *db);
/* Steps *pp past one JSON number, true, false or null at *pp: false when
 * none is there. */
bool store_json_scalar_at(const char **pp);
/* Runs sql (a string literal: its statement is cached) with r bound as
 * ?1..?20, arg21, when not NULL, as ?21 and r->outputs_json as ?22 when
 * the statement has it. Returns the rows changed. */
int store_run_exec(Store *s, const char *sql, const RunRecord *r, const char *arg21);
/* The same with s->lock held; retry_full: give the full-disk reserve back
 * and try once more (never inside a batch: SQLite may have rolled the
 * transaction back). */
int store_run_exec_locked(Store *s, const char *sql, const RunRecord *r, const char *arg21, bool retry_full);
/* Through the writer (store-writer.c): sql as store_run_exec(), with r's
 * lock_json stored once in the locks table and its hash bound as ?23.
 * wait: returns once the transaction holding it committed, with what
 * store_run_exec() returns; else r is copied, the write is enqueued behind
 * every earlier one and 0 is returned at once. */
int store_write_run(Store *s, const char *sql, const RunRecord *r, const char *arg21, bool wait);
/* Unwaited as store_write_run(), marked as r->id's deferred submit with
 * request_json as ?21: store_write_run_or_replace() may replace it while
 * it is still queued. */
int store_write_run_deferred(Store *s, const char *sql, const RunRecord *r, const char *request_json);
/* Unwaited as store_write_run(), marked as r->id's deferred write of
 * attempt r->attempt (a run's start): while it is still queued, the run's
 * finish (store_write_run_or_replace()) replaces it by replace_sql, ONE
 * statement over both with the finish's fields merged in. */
int store_write_start_deferred(Store *s, const char *sql, const RunRecord *r, const char *replace_sql);
/* id's deferred submit of attempt 0 (recorded queued), when still queued,
 * becomes started_sql with attempt 1 and that start time: 1; else nothing
 * changes: 0 (it was committed: the caller writes the start). */
int store_write_deferred_start(Store *s, const char *id, const char *started_sql, usec_t started);
/* Waited as store_write_run(s, sql, r, arg21, true), except when r->id's
 * deferred submit of this attempt is still queued (no committer took it):
 * that write becomes replace_sql instead, ONE statement over the submit's
 * record with r's end merged in as store_run_finish()'s UPDATE merges it
 * (?21: the submit's request), and sql is not run. */
int store_write_run_or_replace(Store *s, const char *sql, const RunRecord *r, const char *arg21, int attempt,
                               const char *replace_sql);
/* The ended-runs journal (store-journal.c), every call but start, close
 * and the record's encoding with s->wlock held. switch:
 * later records go to the other file; returns the one of the records so
 * far. committed: one record of file is in the database now. */
/* A record encoded, and written: encode (no lock needed): r and its
 * request (?21) as one record of sql's kind (-EOPNOTSUPP: a statement the
 * journal does not hold; -ENOBUFS: too big); write: appends it to the file
 * appended to, returns that file (0 or 1) or -errno; done frees it. The
 * queue lock covers only the write (docs/internals/performance-log.md round 14). */
typedef struct StoreJournalRecord {
        uint8_t *data;
        size_t len;
} StoreJournalRecord;
int store_journal_encode(const char *sql, const RunRecord *r, const char *arg21, StoreJournalRecord *ret);
int store_journal_write_locked(Store *s, const StoreJournalRecord *rec);
void store_journal_record_done(StoreJournalRecord *rec);
unsigned store_journal_switch_locked(Store *s);
void store_journal_committed_locked(Store *s, unsigned file);
/* Emptying a file whose records are all committed, in three steps so
 * that the ftruncate runs without wlock (only a leader may, between them:
 * no switch can make the file the active one): trimmable: the file not
 * appended to whose records are all committed, or -1; trim: empties it
 * (no lock); trimmed: counts it empty. */
int store_journal_trimmable_locked(Store *s);
bool store_journal_trim(Store *s, unsigned file);
void store_journal_trimmed_locked(Store *s, unsigned file);
/* open: opens the journal's files (-EOPNOTSUPP: a private database has
 * none) and hands each whole record they hold to fn, in order, a file's
 * torn last record left out. begin: empties both and turns journaling on
 * (store-queue.c's replay, once fn's records are committed). */
typedef void (*StoreJournalFn)(Store *s, const char *sql, const RunRecord *r, const char *arg21, void *userdata);
int store_journal_open(Store *s, StoreJournalFn fn, void *userdata);
int store_journal_begin(Store *s);
void store_journal_close(Store *s);
/* The journal's path of the database at db_path ("DB-ended"; its files
 * are that and ".0", ".1"). */
char *store_journal_path(const char *db_path);
/* The journal's file number file (0 or 1) of jpath (store_journal_path()). */
char *store_journal_file(const char *jpath, unsigned file);
/* A copy of the journal of another process's database (store_backup()):
 * copy reads both files as they are (missing: empty), without taking
 * anything of the daemon, which appends and empties on meanwhile: a
 * record it holds is either in the copy or was committed before the
 * copy's read of its file (a file is emptied only after its records'
 * commit). replay hands the copy's whole records to fn as open() does
 * (a torn last record left out); the copy is not changed, it can be
 * replayed again. Returns the records handed to fn. */
typedef struct StoreJournalCopy {
        uint8_t *data[2];
        size_t size[2];
} StoreJournalCopy;
int store_journal_copy(const char *db_path, StoreJournalCopy *ret);
size_t store_journal_copy_replay(Store *s, const StoreJournalCopy *c, StoreJournalFn fn, void *userdata);
void store_journal_copy_free(StoreJournalCopy *c);
/* The copy's records replayed into s and committed, as store_journal_start()
 * replays a journal (store-queue.c): a run already ended in s changes
 * nothing, so replaying twice is harmless. -EIO when a record's run is
 * not in s afterwards; *ret_replayed (may be NULL): the records replayed. */
int store_journal_replay_copy(Store *s, const StoreJournalCopy *c, size_t *ret_replayed);
/* The statements that end a run (store-queue.c), the ones a journal
 * record may hold: the INSERT of the ended record (store_run_finish()'s
 * replacement of a deferred submit), the finish's fenced UPDATE, and a
 * deferred start's replacement by its run's end. */
extern const char store_run_ended_insert_sql[];
extern const char store_run_finish_update_sql[];
extern const char store_run_start_end_update_sql[];
/* A run's end journaled while a write of its run is in the batch under
 * way (store-writer.c), so that it needs that batch's commit neither to
 * be written nor to be replayed. ended_upsert: the whole ended record
 * (the in-flight submit's with the end merged in), inserted when the row
 * is missing, else applied as the fenced end; end_update: the end of a
 * committed row whose start may be in flight, fenced like the start and
 * the finish together (attempt ?19 pending, or ?19-1 queued). */
/* Their fence, for attempt a (an SQL expression), also read on the
 * committed row before such an end is journaled: fenced as a start and a
 * finish of attempt a together, the row queued at the attempt before (its
 * start not committed yet) or pending at this one. */
#define STORE_END_FENCE(a) \
        "((attempt=" a " AND status IN ('queued','running')) OR (attempt=" a "-1 AND status='queued'))"
extern const char store_run_ended_upsert_sql[];
extern const char store_run_end_update_sql[];
/* Tests: fn runs in the leader of every batch right before its COMMIT
 * (the batch's statements done, nothing committed), without wlock. */
void store_writer_set_commit_hook(Store *s, void (*fn)(void *userdata), void *userdata);
/* store-prio.c: the writer thread's priority. */
/* Takes s->lock (the write connection's). When it is held, the writer
 * thread is first given normal priority back if its batch runs lowered,
 * so the caller never waits for a thread at SCHED_IDLE. */
void store_lock(Store *s);
/* store-open.c: a read-only connection to the database at path (WAL: it
 * reads the last commit while the writer writes), or NULL. */
sqlite3 *store_reader_open(const char *path);
/* Whether db_path is a database a clean close left alone on a read-only
 * file system (a disk the kernel remounted read-only after errors, a
 * backup disk mounted ro): no -wal (nothing of it lives outside the main
 * file) and no -shm, which a reader of a WAL database needs and cannot
 * create there. Such a file cannot change while it is read: SQLite may
 * open it as immutable (store_immutable_uri()). */
bool store_read_only_and_whole(const char *db_path);
/* A file: URI naming path as the immutable database (SQLite's URI rules:
 * '%', '?' and '#' escaped), for SQLITE_OPEN_URI. Newly allocated. */
char *store_immutable_uri(const char *path);
/* The writer thread's id while it runs (tests: its policy), or 0. */
pid_t store_writer_tid(Store *s);
/* A thread's scheduling policy (tid 0: the calling thread). */
bool store_thread_set_policy(pid_t tid, int policy);
/* The writer thread in its own batch, s->lock held: lowered to SCHED_IDLE
 * unless someone waits for it. */
void store_writer_lower(Store *s);
/* The writer thread back at normal priority if it is lowered (any
 * thread). */
void store_writer_raise(Store *s);
/* Around any wait for the writer thread (its commit, s->lock): counted,
 * then the writer raised. */
void store_writer_wait_begin(Store *s);
void store_writer_wait_end(Store *s);
/* The guard that bounds the lowered batch's starvation: started with
 * the writer thread where it may lower itself (so the daemon's threads
 * and fds do not grow later, at its first lowered batch), stopped and
 * joined (store_close(), after the writer). */
void store_writer_guard_start(Store *s);
void store_writer_guard_stop(Store *s);
/* Tests: how long a batch may run lowered before the guard raises it
 * (0: the default, STORE_STARVE_BOUND_USEC), and how often it did. */
void store_writer_set_starve_bound(Store *s, usec_t bound);
uint64_t store_writer_bound_raises(Store *s);
/* The writer thread in its own batch, between two of its records: the CPU
 * offered to whoever woke on it meanwhile (sched_yield(2)), if the batch
 * was lowered (raised since or not); and how often it did (tests). */
void store_writer_yield(Store *s);
uint64_t store_writer_yields(Store *s);
/* Before a read of the runs table: the journaled runs committed, so that
 * the read sees them (store.h "the ended-runs journal"). */
void store_runs_settle(Store *s);
/* store_runs_settle() when ticket (store_runs_settle_ask()'s) is not
 * settled yet (0: it is). */
void store_runs_settle_through(Store *s, uint64_t ticket);
/* store_runs_settle() for the reads of one run (id_prefix: its id or a
 * prefix): commits only when a write of such a run is pending, so that a
 * read of another run does not pay for the journal's batch (round 17). */
void store_run_settle(Store *s, const char *id_prefix);
/* Before a deferred run's id is shown: commits what is queued when a
 * write of run id is pending (its deferred submit), else nothing (its
 * record is committed: a list during a load found most of the runs it
 * shows so, and committed the journal's batch for each, round 18). */
int store_run_reveal(Store *s, const char *id);
/* WAL checkpoints in a thread of their own, not in a commit
 * (store-checkpoint.c); path: the database file. Stop before closing the
 * write connection. */
/* The store VFS's file control (store-vfs.c) that makes a connection's
 * main database file call pace(arg) in the thread about to sync it, right
 * before SQLite's sync of the database at the end of a checkpoint that
 * copied every frame (after SQLITE_FCNTL_CKPT_DONE), and only then: the
 * checkpointer's own connection writes the pages back on its tick first
 * (round 17). Arg: a StoreSyncPacer, copied; pace NULL: none. Outside
 * SQLite's opcodes (all under 100). */
#define STORE_FCNTL_SYNC_PACER 0x70730001
typedef struct StoreSyncPacer {
        void (*pace)(void *arg);
        void *arg;
} StoreSyncPacer;
void store_checkpointer_start(Store *s, const char *path, bool allocate_wal_ahead);
void store_checkpointer_stop(Store *s);
void store_checkpointer_release(Store *s);
/* With s->lock held, before a commit: checkpoints in the caller when the
 * WAL outgrew the thread (store-checkpoint.c "the backstop"). */
void store_checkpoint_backstop_locked(Store *s);
/* Stops the writer after it committed everything enqueued. */
void store_writer_stop(Store *s);
/* With s->lock held: forget the cached lock hashes (their rows may go). */
void store_locks_forget(Store *s);
RunRecord *store_run_from_row(sqlite3_stmt *st);

/* Runs sql (a cached string literal) with tenant, name and limit bound as
 * ?1..?3, collecting its first column: a NULL-terminated list of ids. */
int store_list_ids(Store *s, const char *sql, const char *tenant, const char *name, size_t limit, char ***ret);
