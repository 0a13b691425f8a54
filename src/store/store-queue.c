/* The SQLite run queue (store.h "the run queue"): the runs table is the
 * queue. A run's row carries its request (request_json) from submit until
 * it ends, its attempt counter (the fencing token) and how many attempts
 * it may have; each step is one statement or one transaction.
 *
 * Every write goes through the store's writer (store-writer.c, group
 * commit). submit, finish and cancel acknowledge something and wait for
 * their commit; start does not: the queue knows the attempt of every run
 * it queued (submit: 0, recover: the stored one), so it answers the new
 * attempt at once and enqueues the fenced queued -> running write. */
#include <pthread.h>

#include "store-internal.h"

#define QUEUE_BUCKETS 256

typedef struct Known {
        struct Known *next;
        char *id;
        int attempt, max_attempts;
        bool started;  /* submitted running: its start writes nothing */
} Known;

typedef struct SqliteQueue {
        RunQueue base;
        Store *store;
        pthread_mutex_t lock;
        Known *known[QUEUE_BUCKETS];  /* queued runs' attempts, by id */
} SqliteQueue;

static Known **known_slot(SqliteQueue *q, const char *id) {
        uint32_t h = 2166136261u;
        for (const char *p = id; *p; p++)
                h = (h ^ (uint8_t) *p) * 16777619u;
        Known **k = &q->known[h % QUEUE_BUCKETS];
        while (*k && !streq((*k)->id, id))
                k = &(*k)->next;
        return k;
}

static void known_put(SqliteQueue *q, const char *id, int attempt, int max_attempts, bool started) {
        pthread_mutex_lock(&q->lock);
        Known **k = known_slot(q, id);
        if (!*k) {
                *k = xcalloc(1, sizeof(Known));
                (*k)->id = xstrdup(id);
        }
        (*k)->attempt = attempt;
        (*k)->max_attempts = max_attempts > 0 ? max_attempts : 1;
        (*k)->started = started;
        pthread_mutex_unlock(&q->lock);
}

/* Removes id; its attempt, or -1 when the queue did not know it. */
static int known_take(SqliteQueue *q, const char *id, int *ret_max_attempts, bool *ret_started) {
        pthread_mutex_lock(&q->lock);
        Known **k = known_slot(q, id), *x = *k;
        int a = -1;
        if (x) {
                a = x->attempt;
                if (ret_max_attempts)
                        *ret_max_attempts = x->max_attempts;
                if (ret_started)
                        *ret_started = x->started;
                *k = x->next;
                free(x->id);
                free(x);
        }
        pthread_mutex_unlock(&q->lock);
        return a;
}

static Store *store_of(RunQueue *q) {
        return ((SqliteQueue *) q)->store;
}

void pending_run_list_free(PendingRun *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(v[i].id);
                free(v[i].tenant);
                free(v[i].request_json);
        }
        free(v);
}

/* What migration 8's and 13's trigger did after each insert, in the
 * INSERT itself (migration 16): the function's name and the datasets the
 * request mounts, kept after request_json is dropped at the run's end,
 * and its Idempotency-Key (migration 17), kept for
 * store_run_find_idempotent().
 *
 * Bound as the caller gave them (RunRecord.request_given: ?24, fn_name
 * ?25, idem_key ?26, whether the request has "data" ?27): the daemon wrote
 * the request from these values, and reading them back out of it was ~8.6k
 * of a journal batch's ~41k instructions per record on /v1
 * (docs/internals/performance-log.md "Invoke path: the -c1 tail (round
 * 13)"). data_json is
 * still read from the request, only when it has one (a CASE evaluates
 * only the branch it takes): its text is SQLite's rendering of the value.
 * Not given (?24 NULL): read from ?21 as before. SQLite parses ?21 once
 * for the statement's JSON functions (its parse cache); looking for the
 * keys as text first (instr) costs more than it saves, except for
 * idem_key, which nearly no request has. */
#define REQUEST_FIELD(path) "CASE WHEN json_valid(?21) THEN json_extract(?21, '" path "') END"
#define FN_NAME_FIELD "CASE WHEN ?24 THEN ?25 ELSE " REQUEST_FIELD("$.fn_name") " END"
#define DATA_FIELD "CASE WHEN ?24 AND NOT ?27 THEN NULL ELSE " REQUEST_FIELD("$.data") " END"
/* The run's origin (migration 23): its deployed function's version and
 * the schedule that fired it, and the limits it was given (migration 24),
 * bound from the record (?28, ?29, ?30; NULL for a run of neither,
 * store_run_bind()). */
#define ORIGIN_COLUMNS "fn_version, schedule, limits_json"
#define ORIGIN_VALUES "?28,?29,?30"
/* What an ended record's INSERT writes beyond RUN_COLUMNS. */
#define ENDED_COLUMNS "outputs_json, lock_sha256, fn_name, data_json, " ORIGIN_COLUMNS
#define IDEM_FIELD                                                                     \
        "CASE WHEN ?24 THEN ?26 WHEN instr(?21, '\"idem_key\"') > 0 AND json_valid(?21) " \
        "THEN json_extract(?21, '$.idem_key') END"

/* A run that starts at once (r->status "running": a free slot at submit)
 * is recorded started, attempt 1, in its submit's own transaction: its
 * start is then answered from memory, one write (and at concurrency 1 one
 * transaction) fewer per run. After a crash such a record is what a start
 * commit leaves: queued again with that attempt counted. Only for a run
 * with attempts left after the first (max_attempts > 1): a run that must
 * never run twice keeps its waited start right before it runs. */
static bool submit_started(const RunRecord *r) {
        return r->status && streq(r->status, "running") && r->max_attempts > 1;
}

#define SUBMIT_STARTED_SQL                                                                                           \
        "INSERT INTO runs (" RUN_COLUMNS ", request_json, fn_name, data_json, idem_key, " ORIGIN_COLUMNS ") VALUES " \
        "(?1,?2,?3,?4,?5,?6,'running',-1,NULL,NULL,NULL,NULL,NULL,NULL,?15,?16," STORE_TIME_ENC(                     \
                "?17", "?16") ",0,1,?20,?21," FN_NAME_FIELD "," DATA_FIELD "," IDEM_FIELD "," ORIGIN_VALUES ")"

#define SUBMIT_QUEUED_SQL                                                                                     \
        "INSERT INTO runs (" RUN_COLUMNS ", request_json, fn_name, data_json, idem_key, " ORIGIN_COLUMNS ") " \
        "VALUES (?1,?2,?3,?4,?5,?6,'queued',-1,NULL,NULL,NULL,NULL,NULL,NULL,?15,?16,0,0,0,"                  \
        "?20,?21," FN_NAME_FIELD "," DATA_FIELD "," IDEM_FIELD "," ORIGIN_VALUES ")"

static int sq_submit(RunQueue *q, const RunRecord *r, const char *request_json) {
        /* Waited: the client hears the id only once the run is durable. */
        bool started = submit_started(r);
        int k = store_write_run(store_of(q), started ? SUBMIT_STARTED_SQL : SUBMIT_QUEUED_SQL, r, request_json, true);
        if (k >= 0)
                known_put((SqliteQueue *) q, r->id, started ? 1 : 0, r->max_attempts, started);
        return MIN(k, 0);
}

/* A run whose caller hears its id only with its end (docs/api.md
 * "Delivery"): the submit's record, not waited for. It lingers in the
 * writer's queue; a finish that finds it there replaces it by the ended
 * record (store_run_finish), else the writer commits it after the linger,
 * and the run is then what sq_submit() leaves. Recorded running when it
 * starts at once; queued (r->status "queued") when it waits for a slot or
 * an instance first: its start then turns the still queued submit into
 * the started one (sq_start()), so a run that queued briefly still costs
 * one write. A run that must never run twice is submitted durably as
 * sq_submit() does. */
static int sq_submit_deferred(RunQueue *q, const RunRecord *r, const char *request_json) {
        bool started = submit_started(r);
        bool queued = !started && r->status && streq(r->status, "queued") && r->max_attempts > 1;
        if (!started && !queued)
                return sq_submit(q, r, request_json);
        RunRecord rec = *r;
        /* What the row says, and what the finish's fence is. */
        rec.attempt = started ? 1 : 0;
        int k = store_write_run_deferred(store_of(q), started ? SUBMIT_STARTED_SQL : SUBMIT_QUEUED_SQL, &rec,
                                         request_json);
        if (k >= 0)
                known_put((SqliteQueue *) q, r->id, rec.attempt, r->max_attempts, started);
        return MIN(k, 0);
}

/* Before a deferred run's id is shown: its record committed. */
static int sq_reveal(RunQueue *q, const char *id) {
        return store_run_reveal(store_of(q), id);
}

/* One UPDATE … RETURNING: a run another path ended (a cancel) does not
 * start, and two starters can never both win. */
static int sq_start_now(RunQueue *q, const char *id, usec_t started, int *ret_attempt) {
        Store *s = store_of(q);
        /* Behind every enqueued write of this run. */
        (void) store_flush(s);
        store_lock(s);
        sqlite3_stmt *st = store_stmt(s, "UPDATE runs SET status='running', attempt=attempt+1, "
                                         "started=" STORE_TIME_ENC("?2", "created") " "
                                         "WHERE id=?1 AND status='queued' RETURNING attempt");
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db), r = -ESTALE;
        if (st) {
                store_bind_text(st, 1, id);
                sqlite3_bind_int64(st, 2, (sqlite3_int64) started);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        *ret_attempt = sqlite3_column_int(st, 0);
                        r = 0;
                        rc = sqlite3_step(st);
                }
                store_stmt_done(s, st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_rc_errno(rc);
        return r;
}

/* Not waited: nothing is acknowledged by a start. The attempt fences it
 * (a run cancelled meanwhile stays cancelled) and the finish that follows
 * is behind it in the writer's queue. A crash before it commits leaves the
 * run queued with its attempt not counted, to run again: harmless while
 * attempts remain, so the last allowed attempt (retries: 0, "must never
 * run twice") is waited for, and a crash during it ends the run lost. */
static int sq_start(RunQueue *q, const char *id, usec_t started, int *ret_attempt) {
        int max_attempts = 1;
        bool submitted_started = false;
        int known = known_take((SqliteQueue *) q, id, &max_attempts, &submitted_started);
        if (submitted_started) {
                /* Recorded running by its submit (its finish writes the
                 * start time it really had). */
                *ret_attempt = known;
                return 0;
        }
        if (known < 0 || known + 1 >= max_attempts)
                return sq_start_now(q, id, started, ret_attempt);
        /* Its deferred queued submit still uncommitted: it becomes the
         * started one (sq_submit_deferred()), no write added. */
        if (known == 0 && store_write_deferred_start(store_of(q), id, SUBMIT_STARTED_SQL, started) > 0) {
                *ret_attempt = 1;
                return 0;
        }
        /* Replaceable while queued: a run that ends within the writer's
         * linger (a synchronous invoke that waited for an instance longer
         * than it, then ran briefly) writes its start and end as ONE
         * UPDATE instead of two. */
        RunRecord rec = { .id = (char *) id, .started = started, .attempt = known + 1 };
        int k = store_write_start_deferred(store_of(q),
                                           "UPDATE runs SET status='running', attempt=?19, "
                                           "started=" STORE_TIME_ENC("?17", "created") " "
                                           "WHERE id=?1 AND status='queued' AND attempt=?19-1",
                                           &rec, store_run_start_end_update_sql);
        if (k < 0)
                return k;
        *ret_attempt = known + 1;
        return 0;
}

const char store_run_start_end_update_sql[] =
        "UPDATE runs SET function=?4, status=?7, exit_code=?8, value_json=?9, "
        "value_repr=?10, error_type=?11, error_message=?12, traceback=?13, "
        "timings_json=?14, log_path=COALESCE(?15, log_path), started=" STORE_TIME_ENC("?17", "created") ", "
        "finished=" STORE_TIME_ENC("?18", "created") ", attempt=?19, request_json=NULL, outputs_json=?22, "
        "lock_sha256=COALESCE(?23, lock_sha256) "
        "WHERE id=?1 AND status='queued' AND attempt=?19-1";

const char store_run_finish_update_sql[] =
        "UPDATE runs SET function=?4, status=?7, exit_code=?8, value_json=?9, "
        "value_repr=?10, error_type=?11, error_message=?12, traceback=?13, "
        "timings_json=?14, log_path=COALESCE(?15, log_path), "
        "started=CASE WHEN ?17 > 0 THEN " STORE_TIME_ENC("?17", "created") " ELSE started END, "
        "finished=" STORE_TIME_ENC("?18", "created") ", request_json=NULL, outputs_json=?22, "
        "lock_sha256=COALESCE(?23, lock_sha256) "
        "WHERE id=?1 AND attempt=CAST(?21 AS INTEGER) AND status IN ('queued','running')";

/* Not formatted: clang-format folds these SQL texts into the macros'
 * argument lists. */
/* clang-format off */
const char store_run_ended_insert_sql[] =
        "INSERT INTO runs (" RUN_COLUMNS ", " ENDED_COLUMNS ") VALUES "
        "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16," STORE_TIME_ENC("?17", "?16") ","
        STORE_TIME_ENC("?18", "?16") ",?19,?20,?22,?23,"
        FN_NAME_FIELD "," DATA_FIELD "," ORIGIN_VALUES ")";

#define END_FENCE STORE_END_FENCE("?19")
const char store_run_ended_upsert_sql[] =
        "INSERT INTO runs (" RUN_COLUMNS ", " ENDED_COLUMNS ") VALUES "
        "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16," STORE_TIME_ENC("?17", "?16") ","
        STORE_TIME_ENC("?18", "?16") ",?19,?20,?22,?23,"
        FN_NAME_FIELD "," DATA_FIELD "," ORIGIN_VALUES ") ON CONFLICT(id) DO UPDATE SET function=?4, status=?7, "
        "exit_code=?8, value_json=?9, value_repr=?10, error_type=?11, error_message=?12, traceback=?13, "
        "timings_json=?14, log_path=COALESCE(?15, log_path), started=" STORE_TIME_ENC("?17", "created") ", "
        "finished=" STORE_TIME_ENC("?18", "created") ", attempt=?19, request_json=NULL, "
        "outputs_json=?22, lock_sha256=COALESCE(?23, lock_sha256) WHERE " END_FENCE;
/* clang-format on */

const char store_run_end_update_sql[] =
        "UPDATE runs SET function=?4, status=?7, exit_code=?8, value_json=?9, value_repr=?10, error_type=?11, "
        "error_message=?12, traceback=?13, timings_json=?14, log_path=COALESCE(?15, log_path), "
        "started=CASE WHEN ?17 > 0 THEN " STORE_TIME_ENC("?17", "created") " ELSE started END, "
        "finished=" STORE_TIME_ENC("?18", "created") ", attempt=?19, request_json=NULL, "
        "outputs_json=?22, lock_sha256=COALESCE(?23, lock_sha256) WHERE id=?1 AND " END_FENCE;

int store_run_finish(Store *s, const RunRecord *r, int attempt) {
        char a[16];
        snprintf(a, sizeof(a), "%d", attempt);
        /* request_json goes with the run's end: the source is kept once,
         * by the log and the record, not twice. */
        /* Waited: a synchronous caller hears the result only once it is
         * durable (else a kill -9 after the answer would run it again).
         * A deferred submit still queued (sq_submit_deferred) is replaced
         * by one INSERT of the ended record: the store-writer merges the
         * UPDATE's fields into it as this UPDATE would. */
        int k = store_write_run_or_replace(s, store_run_finish_update_sql, r, a, attempt, store_run_ended_insert_sql);
        if (k < 0)
                return k;
        return k == 0 ? -ESTALE : 0;
}

static int sq_finish(RunQueue *q, const RunRecord *r, int attempt) {
        /* A run submitted running and cancelled before it began never
         * asked for its start: its entry goes with its end. */
        (void) known_take((SqliteQueue *) q, r->id, NULL, NULL);
        return store_run_finish(store_of(q), r, attempt);
}

static int sq_cancel(RunQueue *q, const char *id, const char *message) {
        (void) known_take((SqliteQueue *) q, id, NULL, NULL);
        RunRecord rec = { .id = (char *) id, .error_message = (char *) message, .finished = now_realtime() };
        int k = store_write_run(store_of(q),
                                "UPDATE runs SET status='cancelled', exit_code=5, error_type='Cancelled', "
                                "error_message=?12, finished=" STORE_TIME_ENC("?18", "created") ", request_json=NULL "
                                "WHERE id=?1 AND status='queued'",
                                &rec, NULL, true);
        if (k < 0)
                return k;
        return k == 0 ? -ESTALE : 0;
}

/* Behind every enqueued write of the run (its start may still be in the
 * writer), as a start is: one UPDATE, fenced by the attempt. */
static int sq_requeue(RunQueue *q, const char *id, int attempt) {
        Store *s = store_of(q);
        (void) store_flush(s);
        store_lock(s);
        sqlite3_stmt *st = store_stmt(s, "UPDATE runs SET status='queued' "
                                         "WHERE id=?1 AND attempt=?2 AND status='running'");
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db), changes = 0;
        if (st) {
                store_bind_text(st, 1, id);
                sqlite3_bind_int(st, 2, attempt);
                rc = sqlite3_step(st);
                changes = sqlite3_changes(s->db);
                store_stmt_done(s, st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_rc_errno(rc);
        return changes > 0 ? 0 : -ESTALE;
}

static int exec_locked(Store *s, const char *sql, const char *text, int *ret_changes) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_rc_errno(rc);
        if (text)
                store_bind_text(st, 1, text);
        sqlite3_bind_int64(st, 2, (sqlite3_int64) now_realtime());
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (ret_changes)
                *ret_changes = sqlite3_changes(s->db);
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

/* ---- the ended-runs journal's replay (store.h) ---------------------------- */

typedef struct {
        char **ids;
        size_t n;
} Replayed;

static void replay_one(Store *s, const char *sql, const RunRecord *r, const char *arg21, void *userdata) {
        Replayed *rp = userdata;
        /* Unwaited: the whole journal is one batch (store_flush), in the
         * order it was written. A run already ended in the database (its
         * batch committed before the crash) fails its INSERT or matches
         * no row of its fenced UPDATE: nothing changes. */
        (void) store_write_run(s, sql, r, arg21, false);
        rp->ids = xrealloc(rp->ids, (rp->n + 1) * sizeof(char *));
        rp->ids[rp->n++] = xstrdup(r->id);
}

static bool run_exists(Store *s, const char *id) {
        store_lock(s);
        sqlite3_stmt *st = store_stmt(s, "SELECT 1 FROM runs WHERE id=?1");
        bool found = false;
        if (st) {
                store_bind_text(st, 1, id);
                found = sqlite3_step(st) == SQLITE_ROW;
                store_stmt_done(s, st);
        }
        pthread_mutex_unlock(&s->lock);
        return found;
}

/* The replayed records committed: -EIO when a record's run is not in the
 * database (it could not be written: a full disk). Frees rp's ids. */
static int replayed_committed(Store *s, Replayed *rp) {
        (void) store_flush(s);
        int r = 0;
        for (size_t i = 0; r >= 0 && i < rp->n; i++)
                if (!run_exists(s, rp->ids[i]))
                        r = -EIO;
        for (size_t i = 0; i < rp->n; i++)
                free(rp->ids[i]);
        free(rp->ids);
        rp->ids = NULL;
        return r;
}

int store_journal_replay_copy(Store *s, const StoreJournalCopy *c, size_t *ret_replayed) {
        Replayed rp = {};
        (void) store_journal_copy_replay(s, c, replay_one, &rp);
        size_t n = rp.n;
        int r = replayed_committed(s, &rp);
        if (r >= 0 && ret_replayed)
                *ret_replayed = n;
        return r;
}

int store_journal_start(Store *s, bool journal, size_t *ret_replayed) {
        if (s->jon)
                return 0;
        Replayed rp = {};
        int r = store_journal_open(s, replay_one, &rp);
        if (r == -EOPNOTSUPP)
                return 0;
        /* Emptied only when every record it held is in the database: a
         * record that could not be written (a full disk) stays for the
         * next start, and the journal stays off. */
        int k = replayed_committed(s, &rp);
        if (r >= 0)
                r = k;
        if (r >= 0)
                r = store_journal_begin(s);
        if (r < 0 || !journal) {
                /* Emptied, off: its records went to the database. */
                s->jon = false;
                store_journal_close(s);
                if (r < 0)
                        return r;
        }
        if (ret_replayed)
                *ret_replayed = rp.n;
        return 0;
}

/* The recovery's queries name both pending statuses: SQLite uses the
 * partial index runs_pending only when the query implies its WHERE, and
 * "status='queued'" alone does not (it would scan every run). */
static int list_queued_locked(Store *s, PendingRun **ret, size_t *ret_n) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT id, tenant, request_json, attempt, max_attempts, created FROM runs "
                                    "WHERE status IN ('queued','running') AND status='queued' AND owner_pid = 0 "
                                    "ORDER BY created, id",
                                    -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_rc_errno(rc);
        PendingRun *v = NULL;
        size_t n = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                v = xrealloc(v, (n + 1) * sizeof(PendingRun));
                v[n++] = (PendingRun) {
                        .id = store_col_text(st, 0),
                        .tenant = store_col_text(st, 1),
                        .request_json = store_col_text(st, 2),
                        .attempt = sqlite3_column_int(st, 3),
                        .max_attempts = sqlite3_column_int(st, 4),
                        .created = (usec_t) sqlite3_column_int64(st, 5),
                };
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
                pending_run_list_free(v, n);
                return store_rc_errno(rc);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int sq_recover(RunQueue *q, const char *lost_message, PendingRun **ret, size_t *ret_n, size_t *ret_lost) {
        Store *s = store_of(q);
        int lost1 = 0, lost2 = 0, r;

        bool retried = false;

        *ret = NULL;
        *ret_n = 0;
        (void) store_flush(s);
        /* A run an embedded CLI owns (owner_pid) is never the daemon's to
         * run again or end: one whose CLI lives goes on under it (a
         * daemon starting beside it marked it lost, and readers saw it
         * ended until the CLI's end overwrote it); one whose CLI died is
         * marked lost as the next CLI marks it. */
        (void) store_runs_mark_orphaned(s, "the process running it is gone");
        store_lock(s);
again:
        r = exec_locked(s, "BEGIN IMMEDIATE", NULL, NULL);
        if (r < 0)
                goto out;
        /* A run that cannot be run again (no request kept: an older
         * database, or the attempts are used up) ends lost, with the
         * attempt it died in. */
        r = exec_locked(
                s,
                "UPDATE runs SET status='lost', exit_code=7, error_type='Lost', "
                "error_message=?1 || ' (attempt ' || attempt || ' of ' || max_attempts || ')', "
                "finished=" STORE_TIME_ENC(
                        "?2", "created") ", request_json=NULL "
                                         "WHERE status IN ('queued','running') AND status='running' AND owner_pid = 0 "
                                         "AND (attempt >= max_attempts OR request_json IS NULL)",
                lost_message, &lost1);
        if (r >= 0)
                r = exec_locked(
                        s,
                        "UPDATE runs SET status='lost', exit_code=7, error_type='Lost', error_message=?1, "
                        "finished=" STORE_TIME_ENC(
                                "?2",
                                "created") " "
                                           "WHERE status IN ('queued','running') AND status='queued' AND owner_pid = 0 "
                                           "AND request_json IS NULL",
                        lost_message, &lost2);
        if (r >= 0)
                r = exec_locked(s,
                                "UPDATE runs SET status='queued' "
                                "WHERE status IN ('queued','running') AND status='running' AND owner_pid = 0",
                                NULL, NULL);
        if (r >= 0)
                r = list_queued_locked(s, ret, ret_n);
        if (r >= 0)
                r = exec_locked(s, "COMMIT", NULL, NULL);
        if (r == -ENOSPC && !retried && store_reserve_release(s)) {
                /* A daemon starting on a full disk still recovers. */
                (void) exec_locked(s, "ROLLBACK", NULL, NULL);
                pending_run_list_free(*ret, *ret_n);
                *ret = NULL;
                *ret_n = 0;
                retried = true;
                goto again;
        }
        if (r < 0) {
                (void) exec_locked(s, "ROLLBACK", NULL, NULL);
                if (*ret) {
                        pending_run_list_free(*ret, *ret_n);
                        *ret = NULL;
                        *ret_n = 0;
                }
        }
out:
        pthread_mutex_unlock(&s->lock);
        if (r >= 0 && ret_lost)
                *ret_lost = (size_t) lost1 + (size_t) lost2;
        for (size_t i = 0; r >= 0 && i < *ret_n; i++)
                known_put((SqliteQueue *) q, (*ret)[i].id, (*ret)[i].attempt, (*ret)[i].max_attempts, false);
        return r;
}

static void sq_free(RunQueue *q) {
        SqliteQueue *sq = (SqliteQueue *) q;
        for (size_t i = 0; i < QUEUE_BUCKETS; i++)
                for (Known *k = sq->known[i], *next; k; k = next) {
                        next = k->next;
                        free(k->id);
                        free(k);
                }
        pthread_mutex_destroy(&sq->lock);
        free(q);
}

static const RunQueueOps sqlite_queue_ops = {
        .name = "sqlite",
        .submit = sq_submit,
        .submit_deferred = sq_submit_deferred,
        .reveal = sq_reveal,
        .start = sq_start,
        .requeue = sq_requeue,
        .finish = sq_finish,
        .cancel = sq_cancel,
        .recover = sq_recover,
        .free = sq_free,
};

RunQueue *run_queue_sqlite_new(Store *s) {
        SqliteQueue *q = xcalloc(1, sizeof(SqliteQueue));
        q->base.ops = &sqlite_queue_ops;
        q->store = s;
        pthread_mutex_init(&q->lock, NULL);
        return &q->base;
}
