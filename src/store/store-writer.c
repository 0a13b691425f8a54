/* Group commit of run records (store.h "group commit"): one writer queue
 * per Store owns every write of the runs table. Callers enqueue a write;
 * whoever commits takes everything pending and commits it in ONE
 * transaction: at once when nobody was committing (no added latency at
 * concurrency 1), and what accumulated during a commit as the next batch
 * (many runs per transaction under load). In WAL mode a transaction costs ~9 fcntl + ~9
 * pwrite64 whatever its size, so the cost per run falls with the batch.
 *
 * A write that acknowledges something is waited for (the caller's op sits
 * on its stack until it is marked done, after COMMIT); a write nobody
 * waits for is copied and enqueued. One FIFO, committed by one leader at a
 * time, keeps the writes of a run in order.
 *
 * Who commits: a waiting caller, when nobody is committing (the leader /
 * follower scheme of database group commit): at concurrency 1 the caller
 * commits its own write, with no hand-off to another thread; under load
 * the callers that queued behind a commit wait for it to end and one of
 * them commits all of their writes at once. Each waiting caller sleeps on
 * its op's own condition: a commit's end wakes the callers of its batch
 * and the first caller queued behind it (who leads next), not everyone
 * queued (round 8: a broadcast woke those only to sleep again).
 *
 * Writes nobody waits for (a run's start) wait a little for company: a
 * thread commits them STORE_LINGER_USEC after the oldest was queued unless a waited write took
 * them into its transaction first, so at concurrency 1 an invoke's start
 * and finish share one transaction. No waiter is ever delayed by it.
 *
 * A deferred write (the submit of a run whose caller hears its id only
 * with its end, store-queue.c) is such an unwaited write, marked with its
 * run: when the run's finish comes while it is still queued (the run took
 * less than the linger), the finish replaces it by one INSERT of the ended
 * record instead of adding an UPDATE: one statement, one transaction per
 * synchronous run. Queued means no leader has taken it: a leader takes the
 * whole queue under wlock, so the replacement never races a commit. */
#include <assert.h>
#include <unistd.h>

#include "shared.h"
#include "store-internal.h"

#define STORE_LINGER_USEC (2 * USEC_PER_MSEC)
/* Journaled batches waiting past which the writer's starved batch is
 * raised to normal priority (store-prio.c): 2048 records at 1024 a batch
 * (round 14's bound, docs/operations.md). */
#define STORE_JOURNAL_BEHIND_BATCHES 2
/* A lowered batch offers its CPU every this many records (~8 us each). */
#define STORE_BATCH_YIELD_RECORDS 8

struct StoreOp {
        StoreOp *next;
        const char *sql;
        RunRecord *rec;    /* the caller's (waited) or a copy (owned) */
        char *arg21;
        bool owned;
        bool deferred;     /* a deferred submit (rec->id's), replaceable while queued */
        bool held;         /* a held finish (store_finish_hold()): its caller looks at it later */
        StoreOp *hnext;    /* the holding thread's list */
        StoreOp *dnext;    /* s->wdeferred's next, while deferred and queued */
        const char *submit_sql; /* a deferred submit's own statement */
        const char *replace_sql; /* a deferred write's replacement by its run's finish (NULL: the finish's) */
        bool done;
        int result;
        pthread_cond_t cond;    /* a waited op's caller sleeps on it */
        usec_t queued_at;       /* monotonic: when it was enqueued */
        bool journaled;         /* durable in the journal's file jfile (owned) */
        unsigned jfile;
        /* Its run's finish merges its end into it and encodes its journal
         * record without wlock (absorb_journaled_locked()): it stays
         * queued (no take takes it), out of the deferred chain. */
        bool claimed;
        uint64_t seq;           /* s->wseq at its first enqueue (store_runs_settle_ask()) */
};

static bool enqueue_locked(Store *s, StoreOp *op);
static void journal_requeue_locked(Store *s, StoreOp *op);

static RunRecord *run_record_copy(const RunRecord *r) {
        RunRecord *c = xcalloc(1, sizeof(RunRecord));
        *c = *r;
        c->id = xstrdup_or_null(r->id);
        c->tenant = xstrdup_or_null(r->tenant);
        c->filename = xstrdup_or_null(r->filename);
        c->function = xstrdup_or_null(r->function);
        c->args_json = xstrdup_or_null(r->args_json);
        c->kwargs_json = xstrdup_or_null(r->kwargs_json);
        c->status = xstrdup_or_null(r->status);
        c->value_json = xstrdup_or_null(r->value_json);
        c->value_repr = xstrdup_or_null(r->value_repr);
        c->error_type = xstrdup_or_null(r->error_type);
        c->error_message = xstrdup_or_null(r->error_message);
        c->traceback = xstrdup_or_null(r->traceback);
        c->timings_json = xstrdup_or_null(r->timings_json);
        c->log_path = xstrdup_or_null(r->log_path);
        c->outputs_json = xstrdup_or_null(r->outputs_json);
        c->lock_json = xstrdup_or_null(r->lock_json);
        c->request_fn_name = xstrdup_or_null(r->request_fn_name);
        c->request_idem_key = xstrdup_or_null(r->request_idem_key);
        c->fn_name = xstrdup_or_null(r->fn_name);
        c->schedule = xstrdup_or_null(r->schedule);
        c->limits_json = xstrdup_or_null(r->limits_json);
        return c;
}

static usec_t linger(const Store *s) {
        return s->wlinger ? s->wlinger : STORE_LINGER_USEC;
}

static usec_t journal_linger(const Store *s) {
        return s->jlinger ? s->jlinger : STORE_JOURNAL_LINGER_USEC;
}

static unsigned journal_max_records(const Store *s) {
        return s->jmax ? s->jmax : STORE_JOURNAL_MAX_RECORDS;
}

/* How long op stays out of a batch under way (take_batch_locked()): the
 * deferred submit of a synchronous run queued for a slot or an instance
 * as long as the journal's records wait (round 12: at wrk -c8 the invokes
 * that waited for one of a function's 4 instances longer than 2 ms were
 * committed queued, a transaction of ~5 pages each 6 invokes); every
 * other write one linger, and a queued submit that starts one linger from
 * its start (store_write_deferred_start()). */
static usec_t op_linger(const Store *s, const StoreOp *op) {
        bool queued_submit = op->deferred && !op->replace_sql && op->rec->attempt == 0;
        return queued_submit && s->jon ? journal_linger(s) : linger(s);
}

/* How long op may wait before the writer's thread commits it for its own
 * sake (first_lingered_locked()): with the journal on, a synchronous run's
 * deferred submit, queued or started, as long as the journal's records;
 * every other write op_linger(). Its caller has no id of it before its
 * answer (docs/api.md "Delivery"): once out of its op_linger() it rides
 * with the next commit, the journal's batch under load, instead of one of
 * its own (round 18: 3 of the 24 commits a second at wrk -c8 were such
 * submits of runs that outlasted 2 ms, up to 184 of 250 on a loaded
 * machine in round 17). */
static usec_t op_commit_after(const Store *s, const StoreOp *op) {
        bool submit = op->deferred && !op->replace_sql;
        return submit && s->jon ? journal_linger(s) : op_linger(s, op);
}

static void set_text(char **dst, const char *src) {
        free(*dst);
        *dst = xstrdup_or_null(src);
}

/* The deferred submit's record rec (an owned copy) as the finish fin
 * leaves it: what store_run_finish()'s UPDATE sets, the same way (function
 * and the result always; log path, start and lock only when given). */
static void record_merge_end(RunRecord *rec, const RunRecord *fin) {
        set_text(&rec->function, fin->function);
        set_text(&rec->status, fin->status);
        rec->exit_code = fin->exit_code;
        set_text(&rec->value_json, fin->value_json);
        set_text(&rec->value_repr, fin->value_repr);
        set_text(&rec->error_type, fin->error_type);
        set_text(&rec->error_message, fin->error_message);
        set_text(&rec->traceback, fin->traceback);
        set_text(&rec->timings_json, fin->timings_json);
        set_text(&rec->outputs_json, fin->outputs_json);
        if (fin->log_path)
                set_text(&rec->log_path, fin->log_path);
        if (fin->started > 0)
                rec->started = fin->started;
        rec->finished = fin->finished;
        if (fin->lock_json)
                set_text(&rec->lock_json, fin->lock_json);
}

static void op_free(StoreOp *op) {
        pthread_cond_destroy(&op->cond);
        run_record_free(op->rec);
        free(op->arg21);
        free(op);
}

/* ---- the locks table: each distinct lock text once ----------------------
 * A deployed version's lock never changes, so the few texts seen last are
 * kept with their hash: an invoke then costs a memcmp, not a SHA-256 and an
 * INSERT. The cache only holds hashes whose row this connection wrote or
 * found; a rolled-back batch empties it. */

static void lock_cache_clear_locked(Store *s) {
        for (size_t i = 0; i < ELEMENTSOF(s->locks); i++) {
                free(s->locks[i].text);
                s->locks[i].text = NULL;
                s->locks[i].len = 0;
        }
}

static int lock_put_locked(Store *s, const char *text, char ret_hash[static SHA256_HEX_SIZE]) {
        size_t len = strlen(text);
        for (size_t i = 0; i < ELEMENTSOF(s->locks); i++)
                if (s->locks[i].text && s->locks[i].len == len && memcmp(s->locks[i].text, text, len) == 0) {
                        memcpy(ret_hash, s->locks[i].hash, SHA256_HEX_SIZE);
                        return 0;
                }
        sha256_hex(text, len, ret_hash);
        sqlite3_stmt *st = store_stmt(s, "INSERT OR IGNORE INTO locks (sha256, text) VALUES (?1, ?2)");
        if (!st)
                return store_rc_errno(sqlite3_errcode(s->db));
        store_bind_text(st, 1, ret_hash);
        store_bind_text(st, 2, text);
        int rc = sqlite3_step(st);
        store_stmt_done(s, st);
        if (rc != SQLITE_DONE)
                return store_rc_errno(rc);
        size_t slot = s->locks_next++ % ELEMENTSOF(s->locks);
        free(s->locks[slot].text);
        s->locks[slot].text = xstrdup(text);
        s->locks[slot].len = len;
        memcpy(s->locks[slot].hash, ret_hash, SHA256_HEX_SIZE);
        return 0;
}

/* With s->lock held: one op's statement. The record's lock text goes to
 * the locks table; the run keeps its hash (?23). */
static int op_exec_locked(Store *s, StoreOp *op, bool retry_full) {
        RunRecord r = *op->rec;
        char hash[SHA256_HEX_SIZE];
        if (r.lock_json) {
                int k = lock_put_locked(s, r.lock_json, hash);
                if (k < 0)
                        return k;
                r.lock_json = hash;
        }
        return store_run_exec_locked(s, op->sql, &r, op->arg21, retry_full);
}

static bool exec_simple(Store *s, const char *sql) {
        return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK;
}

/* Errors after which the batch's transaction cannot be trusted: SQLite may
 * have rolled it back (full disk, I/O), or it never held the lock. A
 * constraint (an INSERT of an existing id) only fails its statement. */
static bool batch_broken(Store *s, int result) {
        return result < 0 && (result != -EEXIST || sqlite3_get_autocommit(s->db));
}

static void batch_commit(Store *s, StoreOp *batch, bool lowered) {
        store_lock(s);
        if (lowered)
                store_writer_lower(s);
        store_checkpoint_backstop_locked(s);
        bool ok = exec_simple(s, "BEGIN IMMEDIATE");
        unsigned n = 0;
        for (StoreOp *op = batch; ok && op; op = op->next) {
                if (lowered && ++n % STORE_BATCH_YIELD_RECORDS == 0)
                        store_writer_yield(s);
                op->result = op_exec_locked(s, op, false);
                if (batch_broken(s, op->result))
                        ok = false;
        }
        if (ok && s->wcommit_hook)
                s->wcommit_hook(s->wcommit_hook_data);
        if (ok)
                ok = exec_simple(s, "COMMIT");
        if (ok)
                s->commits++;
        else {
                /* Each write alone, in its own transaction, with the
                 * full-disk reserve: one bad write fails only itself. */
                if (!sqlite3_get_autocommit(s->db))
                        (void) exec_simple(s, "ROLLBACK");
                lock_cache_clear_locked(s);
                for (StoreOp *op = batch; op; op = op->next) {
                        op->result = op_exec_locked(s, op, true);
                        s->commits++;
                }
        }
        if (lowered)
                store_writer_raise(s);
        pthread_mutex_unlock(&s->lock);
}

/* With s->wlock held: whether a write of run id other than except (NULL:
 * none) is queued at from or after it (from: the queue's head, or the op
 * after one of the run's). */
static bool run_write_queued_locked(const StoreOp *from, const char *id, const StoreOp *except) {
        for (const StoreOp *o = from; o; o = o->next)
                if (o != except && streq(o->rec->id, id))
                        return true;
        return false;
}

/* ---- the queued deferred ops, by themselves ----
 * A finish and a deferred start look for their run's deferred op: a walk
 * of the whole queue was ~500 journaled records at wrk -c8, under wlock,
 * on every invoke (2.5% of the daemon's CPU, round 13). They are also
 * chained by themselves (a few: the runs in flight). */

/* With s->wlock held: op (deferred, being queued) joins the chain. */
static void deferred_chain_add_locked(Store *s, StoreOp *op) {
        StoreOp **p = &s->wdeferred;
        while (*p)
                p = &(*p)->dnext;
        op->dnext = NULL;
        *p = op;
}

/* With s->wlock held: op leaves the chain (absorbed, dropped). */
static void deferred_chain_remove_locked(Store *s, StoreOp *op) {
        for (StoreOp **p = &s->wdeferred; *p; p = &(*p)->dnext)
                if (*p == op) {
                        *p = op->dnext;
                        return;
                }
}

/* With s->wlock held: takes the queue as a batch. keep_young (every
 * commit but a drain's): a deferred write younger than the linger stays
 * queued (its run may end within it, and its finish replace it), unless a
 * later write of its run is queued behind it. Taken along, the runs in
 * flight at each commit wrote their submit and then waited for an UPDATE:
 * at wrk -c8 one such waited commit took the next ones' submits along,
 * and no run's end reached the journal (20 KB per invoke). The journal's
 * later records go to its other file from now on. */
static bool stays_queued_locked(const Store *s, const StoreOp *op, bool keep_young, usec_t now) {
        if (op->claimed)
                return true;
        return keep_young && op->deferred && now - op->queued_at < op_linger(s, op) &&
               !run_write_queued_locked(op->next, op->rec->id, NULL);
}

static StoreOp *take_batch_locked(Store *s, bool keep_young) {
        StoreOp *batch = s->whead, **bt = &batch, *kept = NULL, **kt = &kept;
        s->whead = s->wtail = NULL;
        usec_t now = keep_young ? now_monotonic() : 0;
        /* What stays queued is deferred ops only, and the claimed ones. */
        StoreOp **dt = &s->wdeferred;
        s->wdeferred = NULL;
        for (StoreOp *op = batch, *next; (keep_young || s->wclaimed > 0) && op; op = next) {
                next = op->next;
                if (stays_queued_locked(s, op, keep_young, now)) {
                        *kt = op;
                        kt = &op->next;
                        s->wtail = op;
                        if (!op->claimed) {
                                *dt = op;
                                dt = &op->dnext;
                        }
                } else {
                        *bt = op;
                        bt = &op->next;
                }
        }
        if (keep_young || s->wclaimed > 0) {
                *bt = NULL;
                *kt = NULL;
                *dt = NULL;
                s->whead = kept;
        }
        if (s->jqueued > 0) {
                s->jqueued = 0;
                (void) store_journal_switch_locked(s);
        }
        return batch;
}

/* With s->wlock held: a journaled op after its batch's commit: its record
 * counted in (the file is emptied once all of its records are) and op
 * put on *dead (freed after wlock is released), or queued again when its
 * commit failed. */
static void journaled_committed_locked(Store *s, StoreOp *op, StoreOp **dead) {
        if (op->result < 0 && op->result != -EEXIST) {
                journal_requeue_locked(s, op);
                return;
        }
        store_journal_committed_locked(s, op->jfile);
        __atomic_sub_fetch(&s->jlive, 1, __ATOMIC_RELAXED);
        op->next = *dead;
        *dead = op;
}

/* With s->wlock held, still the leader: the batch's owned ops freed and
 * the journal's committed file emptied without wlock (a batch is ~500
 * ops and an ftruncate: up to milliseconds in which the run watcher's
 * appends and the HTTP threads' deferred submits waited, round 13). No
 * other leader can switch the journal's files meanwhile, and appends go
 * to the active one, not to the one emptied. */
static void batch_release_unlocked(Store *s, StoreOp *dead) {
        int trim = store_journal_trimmable_locked(s);
        pthread_mutex_unlock(&s->wlock);
        for (StoreOp *op = dead, *next; op; op = next) {
                next = op->next;
                op_free(op);
        }
        bool trimmed = trim >= 0 && store_journal_trim(s, (unsigned) trim);
        pthread_mutex_lock(&s->wlock);
        if (trimmed)
                store_journal_trimmed_locked(s, (unsigned) trim);
}

/* With s->wlock held and no leader: commits everything queued (keep_young:
 * take_batch_locked()), in the calling thread (the "leader"), then
 * releases the waiters of the batch. Writes that come in meanwhile queue
 * up behind: the next leader (one of their waiters) takes them all as one
 * batch. */
static void lead_locked(Store *s, bool keep_young) {
        assert(!s->wleader);
        bool by_writer = s->wstarted && pthread_equal(pthread_self(), s->writer);
        s->wleader = true;
        StoreOp *batch = take_batch_locked(s, keep_young);
        s->wbatch = batch;
        pthread_mutex_unlock(&s->wlock);

        /* Not the drain at close: the store's closer waits for it. */
        batch_commit(s, batch, by_writer && keep_young);

        pthread_mutex_lock(&s->wlock);
        s->wbatch = NULL;
        StoreOp *dead = NULL;
        for (StoreOp *op = batch, *next; op; op = next) {
                /* A waited op lives on its caller's stack: read next
                 * before the caller may return (it cannot before we
                 * release wlock, so the signal is safe). */
                next = op->next;
                if (op->journaled)
                        journaled_committed_locked(s, op, &dead);
                else if (op->owned) {
                        if (!by_writer)
                                s->wabsorbed++;
                        op->next = dead;
                        dead = op;
                }
                else {
                        op->done = true;
                        pthread_cond_signal(&op->cond);
                }
        }
        batch_release_unlocked(s, dead);
        s->wleader = false;
        /* Woken: the callers of this batch, and the first caller queued
         * meanwhile, who leads the next commit. The others stay asleep
         * until their own commit ends (a broadcast to every caller woke
         * those queued behind only to sleep again: two context switches
         * for nothing, 0.04-0.09 per invoke at wrk -c8). */
        for (StoreOp *op = s->whead; op; op = op->next)
                if (!op->owned && !op->held) {
                        pthread_cond_signal(&op->cond);
                        break;
                }
        if (s->wdrainers > 0)
                pthread_cond_broadcast(&s->wdone);
}

/* With s->wlock held: one wait for wdone (a commit ended, a claimed op
 * let go), the writer raised first if its batch runs lowered. */
static void wait_wdone_locked(Store *s) {
        s->wdrainers++;
        store_writer_wait_begin(s);
        pthread_cond_wait(&s->wdone, &s->wlock);
        store_writer_wait_end(s);
        s->wdrainers--;
}

/* With s->wlock held: until no commit is under way (what was taken
 * before is committed). */
static void wait_no_leader_locked(Store *s) {
        while (s->wleader)
                wait_wdone_locked(s);
}

/* With s->wlock held: whether every queued op is claimed (its finish
 * journals it without wlock, absorb_journaled_locked()). */
static bool only_claimed_queued_locked(const Store *s) {
        for (const StoreOp *op = s->whead; op; op = op->next)
                if (!op->claimed)
                        return false;
        return true;
}

/* With s->wlock held: whether an op not committed yet (queued, or in the
 * commit under way) matches. */
static bool uncommitted_op_locked(const Store *s, bool (*match)(const StoreOp *o, const void *arg), const void *arg) {
        for (const StoreOp *l[] = { s->whead, s->wbatch }, **i = l; i < l + 2; i++)
                for (const StoreOp *o = *i; o; o = o->next)
                        if (match(o, arg))
                                return true;
        return false;
}

static bool op_up_to_ticket(const StoreOp *o, const void *ticket) {
        return o->seq <= *(const uint64_t *) ticket;
}

/* With s->wlock held: whether every op enqueued up to ticket (its seq) is
 * committed. */
static bool settled_locked(const Store *s, uint64_t ticket) {
        return !uncommitted_op_locked(s, op_up_to_ticket, &ticket);
}

/* With s->wlock held: until every op enqueued up to ticket is committed
 * (a claimed op once its finish let it go), taking along whatever else
 * is queued. Returns the commits it led. */
static unsigned commit_through_locked(Store *s, uint64_t ticket) {
        unsigned led = 0;
        while (s->wleader || !settled_locked(s, ticket)) {
                if (s->wleader)
                        wait_no_leader_locked(s);
                else if (s->wclaimed > 0 && only_claimed_queued_locked(s))
                        wait_wdone_locked(s);
                else {
                        lead_locked(s, false);
                        led++;
                }
        }
        return led;
}

/* With s->wlock held: until everything queued is committed. */
static void drain_locked(Store *s) {
        (void) commit_through_locked(s, UINT64_MAX);
}

/* The writes nobody waits for: once the oldest pending write has lingered
 * STORE_LINGER_USEC (a waited write that comes meanwhile takes it into its
 * own transaction), whatever is left is committed here.
 *
 * While writes keep coming the thread looks at the queue on a timer
 * instead of being signalled for each write that finds the queue empty:
 * at one invoke after another, each start found it empty (the finish
 * before had taken everything) and woke this thread only for it to sleep
 * again: two context switches per invoke for nothing.
 *
 * The timer's period backs off while callers do its work: when, since the
 * last look, callers committed writes nobody waited for or replaced them
 * by their runs' ends (short runs' finishes take their starts along), a
 * look every 2 ms was ~450 wake-ups a second for nothing (round 11b: 0.2
 * context switches and ~3.7 us of CPU per sequential invoke). Each such
 * look doubles the period, up to STORE_LOOK_MAX_LINGERS lingers; a look
 * that commits a write that lingered brings it back to one linger. So
 * while runs outlast the linger their starts wait one linger as before,
 * and the first one after a stretch of short runs waits at most the
 * longest period. After STORE_IDLE_LINGERS lingers without a write the
 * thread sleeps until signalled (an idle daemon wakes nobody). */
#define STORE_LOOK_MAX_LINGERS 16
#define STORE_IDLE_LINGERS 50

/* The writer thread's timer (writer_main()). */
typedef struct {
        usec_t period;          /* between looks that find nothing lingering */
        uint64_t absorbed;      /* s->wabsorbed at the last look */
} WriterLook;

/* With s->wlock held: when the first queued write that is not journaled
 * has lingered (op_commit_after()), or UINT64_MAX (a journaled one waits
 * for the journal's batch, not for the linger). */
static usec_t first_lingered_locked(const Store *s) {
        usec_t due = UINT64_MAX;
        for (const StoreOp *op = s->whead; op; op = op->next)
                if (!op->journaled && !op->claimed)
                        due = MIN(due, op->queued_at + op_commit_after(s, op));
        return due;
}

/* With s->wlock held: whether the journal's batch is due (its oldest
 * record is STORE_JOURNAL_LINGER_USEC old, or it holds
 * STORE_JOURNAL_MAX_RECORDS). */
static bool journal_due_locked(const Store *s, usec_t now) {
        return s->jqueued > 0 && (now - s->jsince >= journal_linger(s) || s->jqueued >= journal_max_records(s));
}

/* With s->wlock held: whether the writer thread commits now: a write
 * lingered, or the journal's batch is due. */
static bool commit_due_locked(const Store *s, usec_t now) {
        return first_lingered_locked(s) <= now || journal_due_locked(s, now);
}

/* With s->wlock held: when the writer looks next, having committed nothing
 * at now. */
static usec_t next_look(Store *s, WriterLook *l, usec_t now) {
        if (s->wabsorbed != l->absorbed && l->period < STORE_LOOK_MAX_LINGERS * linger(s))
                l->period *= 2;
        l->absorbed = s->wabsorbed;
        if (commit_due_locked(s, now))
                /* Lingered while a commit is under way: its followers take
                 * them, else we do shortly. (A young write behind a commit
                 * waits for its own time: a look every linger / 4 while
                 * callers committed was most of the looks for nothing.) */
                return now + linger(s) / 4;
        usec_t until = now + l->period, due = first_lingered_locked(s);
        if (due != UINT64_MAX && due > until)
                until = due;
        if (s->jqueued > 0)
                until = MIN(until, s->jsince + journal_linger(s));
        return until;
}

/* ---- reads that wait for the journal's batch (round 18) ----
 * A read of runs from an HTTP request does not commit the pending batch in
 * its thread (14-18 ms at 1024 records during a load, on which that
 * thread's other connections waited): it asks (store_runs_settle_ask()),
 * waits without its thread, and the writer's thread commits what was
 * queued at the ask, at normal priority, then calls the settled hook. */

/* With s->wlock held, in the writer's thread: commits what was queued up
 * to the asked ticket (not what comes after: a load keeps queueing), at
 * normal priority (lead_locked(s, false) is not lowered), then tells the
 * readers. */
static void settle_locked(Store *s) {
        uint64_t ticket = s->wsettle_want;
        s->wcommits_settle += commit_through_locked(s, ticket);
        if (s->wsettle_want == ticket)
                s->wsettle_want = 0;
        void (*hook)(void *) = s->wsettled_hook;
        void *data = s->wsettled_data;
        if (!hook)
                return;
        pthread_mutex_unlock(&s->wlock);
        hook(data);
        pthread_mutex_lock(&s->wlock);
}

uint64_t store_runs_settle_ask(Store *s) {
        pthread_mutex_lock(&s->wlock);
        bool writer = s->wstarted && !s->wstop;
        uint64_t ticket = 0;
        /* What a reader must see is what was journaled before it asked;
         * the rest is committed as ever. */
        if (writer && __atomic_load_n(&s->jlive, __ATOMIC_RELAXED) > 0 && !settled_locked(s, s->wseq))
                ticket = s->wsettle_want = s->wseq;
        pthread_mutex_unlock(&s->wlock);
        if (ticket) {
                pthread_cond_signal(&s->wcond);
                /* Its lowered batch under way holds what the reader waits
                 * for, as a waiting caller would raise it. */
                store_writer_raise(s);
        } else if (!writer)
                /* No writer's thread to ask (none yet, or closing). */
                store_runs_settle(s);
        return ticket;
}

bool store_runs_settled(Store *s, uint64_t ticket) {
        if (ticket == 0)
                return true;
        pthread_mutex_lock(&s->wlock);
        bool done = settled_locked(s, ticket);
        pthread_mutex_unlock(&s->wlock);
        return done;
}

void store_runs_settle_through(Store *s, uint64_t ticket) {
        if (ticket != 0 && !store_runs_settled(s, ticket))
                store_runs_settle(s);
}

void store_set_settled_hook(Store *s, void (*fn)(void *userdata), void *userdata) {
        pthread_mutex_lock(&s->wlock);
        s->wsettled_hook = fn;
        s->wsettled_data = userdata;
        pthread_mutex_unlock(&s->wlock);
}

static void *writer_main(void *p) {
        Store *s = p;
        pthread_mutex_lock(&s->wprio);
        s->wtid = gettid();
        pthread_mutex_unlock(&s->wprio);
        store_writer_guard_start(s);
        pthread_mutex_lock(&s->wlock);
        /* Read under wlock: the callers count it (ThreadSanitizer). */
        WriterLook look = { .period = linger(s), .absorbed = s->wabsorbed };
        for (;;) {
                if (s->wstop)
                        break;
                if (s->wsettle_want > 0) {
                        settle_locked(s);
                        continue;
                }
                usec_t now = now_monotonic();
                if (s->whead && !s->wleader && commit_due_locked(s, now)) {
                        /* Counted by why (store_commit_kinds()): the
                         * journal's batch, else a write that lingered. */
                        uint64_t *kind = journal_due_locked(s, now) ? &s->wcommits_journal : &s->wcommits_lingered;
                        lead_locked(s, true);
                        (*kind)++;
                        look = (WriterLook) { .period = linger(s), .absorbed = s->wabsorbed };
                        continue;
                }
                if (!s->whead && now - s->wsince >= STORE_IDLE_LINGERS * linger(s)) {
                        s->wticking = false;
                        while (!s->whead && !s->wstop)
                                pthread_cond_wait(&s->wcond, &s->wlock);
                        look = (WriterLook) { .period = linger(s), .absorbed = s->wabsorbed };
                        continue;
                }
                s->wticking = true;
                usec_t until = next_look(s, &look, now);
                cond_wait_usec(&s->wcond, &s->wlock, until - now);
        }
        s->wticking = false;
        drain_locked(s);
        pthread_mutex_unlock(&s->wlock);
        pthread_mutex_lock(&s->wprio);
        s->wtid = 0;
        pthread_mutex_unlock(&s->wprio);
        return NULL;
}

/* With s->wlock held. Returns whether the writer thread sleeps untimed
 * and must be signalled (after the caller unlocks: a thread woken while
 * the lock is still held only blocks on it). */
static bool enqueue_locked(Store *s, StoreOp *op) {
        op->next = NULL;
        /* Its first place in line: one queued again after a failed commit
         * keeps it (a settle asked before it waits for it). */
        if (op->seq == 0)
                op->seq = ++s->wseq;
        op->queued_at = now_monotonic();
        bool was_empty = !s->whead;
        if (s->wtail)
                s->wtail->next = op;
        else
                s->whead = op;
        s->wtail = op;
        if (was_empty)
                s->wsince = now_monotonic();
        if (op->deferred)
                deferred_chain_add_locked(s, op);
        if (!op->owned)
                return false;
        /* The lingering thread, for writes nobody waits for; woken only
         * when it sleeps untimed: a wake-up is a context switch. */
        if (!s->wstarted && !s->wstop) {
                s->wstarted = pthread_create(&s->writer, NULL, writer_main, s) == 0;
                /* Named: ps, perf and the tests tell it from run threads. */
                if (s->wstarted)
                        (void) pthread_setname_np(s->writer, "store-writer");
        }
        return was_empty && !s->wticking;
}

/* With s->wlock held: until op (queued, not owned) is committed. Led by
 * the caller itself when nobody commits right now: at concurrency 1 a
 * waited write costs no thread hand-off. */
static void wait_done_locked(Store *s, StoreOp *op) {
        while (!op->done) {
                if (!s->wleader) {
                        lead_locked(s, true);
                        continue;
                }
                s->wwaiting++;
                store_writer_wait_begin(s);
                pthread_cond_wait(&op->cond, &s->wlock);
                store_writer_wait_end(s);
                s->wwaiting--;
                if (!op->done && s->wleader)
                        s->widle_wakeups++;
        }
}

/* With s->wlock held: the queued (not yet taken) deferred submit of id. */
static StoreOp *deferred_find_locked(Store *s, const char *id) {
        for (StoreOp *op = s->wdeferred; op; op = op->dnext)
                if (streq(op->rec->id, id))
                        return op;
        return NULL;
}

static int write_unwaited(Store *s, const char *sql, const RunRecord *r, const char *arg21, bool deferred,
                          const char *replace_sql) {
        assert(sql && r);
        StoreOp *op = xcalloc(1, sizeof(StoreOp));
        pthread_cond_init(&op->cond, NULL);
        op->sql = sql;
        op->rec = run_record_copy(r);
        op->arg21 = xstrdup_or_null(arg21);
        op->owned = true;
        op->deferred = deferred;
        op->submit_sql = deferred ? sql : NULL;
        op->replace_sql = replace_sql;
        pthread_mutex_lock(&s->wlock);
        bool wake = enqueue_locked(s, op);
        /* No thread (it could not be made, or the store is closing): the
         * caller commits it now. */
        if (!s->wstarted || s->wstop)
                drain_locked(s);
        pthread_mutex_unlock(&s->wlock);
        if (wake)
                pthread_cond_signal(&s->wcond);
        return 0;
}

int store_write_run(Store *s, const char *sql, const RunRecord *r, const char *arg21, bool wait) {
        assert(s);
        if (!wait)
                return write_unwaited(s, sql, r, arg21, false, NULL);
        StoreOp op = { .sql = sql, .rec = (RunRecord *) r, .arg21 = (char *) arg21 };
        pthread_cond_init(&op.cond, NULL);
        pthread_mutex_lock(&s->wlock);
        (void) enqueue_locked(s, &op);
        wait_done_locked(s, &op);
        pthread_mutex_unlock(&s->wlock);
        pthread_cond_destroy(&op.cond);
        return op.result;
}

int store_write_run_deferred(Store *s, const char *sql, const RunRecord *r, const char *request_json) {
        assert(s && r && r->id);
        return write_unwaited(s, sql, r, request_json, true, NULL);
}

int store_write_start_deferred(Store *s, const char *sql, const RunRecord *r, const char *replace_sql) {
        assert(s && r && r->id && replace_sql);
        return write_unwaited(s, sql, r, NULL, true, replace_sql);
}

int store_write_deferred_start(Store *s, const char *id, const char *started_sql, usec_t started) {
        assert(s && id && started_sql);
        pthread_mutex_lock(&s->wlock);
        StoreOp *d = deferred_find_locked(s, id);
        bool changed = d && d->rec->attempt == 0;
        if (changed) {
                d->sql = d->submit_sql = started_sql;
                d->rec->attempt = 1;
                d->rec->started = started;
                d->queued_at = now_monotonic(); /* op_linger() */
                set_text(&d->rec->status, "running");
        }
        pthread_mutex_unlock(&s->wlock);
        return changed;
}

/* The finishes the calling thread holds (store_finish_hold()). */
static __thread struct {
        Store *s;
        StoreOp *list, **tail;
        struct {
                char *id;
                int result;
        } *jids;        /* held finishes the journal made durable (hold_add_journaled()) */
        size_t njids;
} hold;

/* With s->wlock held: op (queued, not owned) joins the calling thread's
 * held finishes; its commit is waited for by store_finish_release(). */
static void hold_add_locked(StoreOp *op) {
        op->held = true;
        op->hnext = NULL;
        *hold.tail = op;
        hold.tail = &op->hnext;
}

/* With s->wlock held: the queued deferred write d becomes its run's end r
 * (one statement instead of two), a write the writer thread need not look
 * after any more (writer_main()'s back-off). */
static void absorbed_locked(Store *s, StoreOp *d, const char *replace_sql) {
        d->sql = d->replace_sql ? d->replace_sql : replace_sql;
        deferred_chain_remove_locked(s, d);
        d->deferred = false;
        d->owned = false;
        s->wabsorbed++;
}

static void deferred_absorb_locked(Store *s, StoreOp *d, const RunRecord *r, const char *replace_sql) {
        record_merge_end(d->rec, r);
        absorbed_locked(s, d, replace_sql);
}

/* With s->wlock held: one more journaled op for the next batch, whose
 * age counts from its first (commit_due_locked()). */
static void journal_batch_add_locked(Store *s) {
        if (s->jqueued++ == 0)
                s->jsince = now_monotonic();
        /* The batch under way starved at SCHED_IDLE: the next one grows. */
        if (s->jqueued >= STORE_JOURNAL_BEHIND_BATCHES * journal_max_records(s))
                store_writer_raise(s);
}

/* With s->wlock held: whether a run's end may be journaled now. */
static bool journal_on_locked(const Store *s) {
        return s->jon && s->wstarted && !s->wstop;
}

/* journal_locked() with d's record encoded (rec). */
static bool journal_write_locked(Store *s, StoreOp *d, const StoreJournalRecord *rec, bool *ret_wake) {
        *ret_wake = false;
        if (!journal_on_locked(s))
                return false;
        int f = store_journal_write_locked(s, rec);
        if (f < 0)
                return false;
        d->journaled = true;
        d->jfile = (unsigned) f;
        d->owned = true;
        journal_batch_add_locked(s);
        __atomic_add_fetch(&s->jlive, 1, __ATOMIC_RELAXED);
        /* Asleep untimed, or a batch big enough to commit now. */
        *ret_wake = !s->wticking || s->jqueued == journal_max_records(s);
        return true;
}

/* With s->wlock held: d, a run's end (the absorbed deferred write, or a
 * new op of the finish's UPDATE), made durable by one append to the
 * journal instead of a commit (store.h "the ended-runs journal"): it is
 * queued, owned, for the writer's thread to commit with the next batch.
 * false: not journaled (no journal, a statement it does not hold, the
 * append failed): the caller waits for its commit as before. *ret_wake:
 * the writer thread must be signalled (after unlock). */
static bool journal_locked(Store *s, StoreOp *d, bool *ret_wake) {
        *ret_wake = false;
        if (!journal_on_locked(s))
                return false;
        StoreJournalRecord rec = {};
        bool ok = store_journal_encode(d->sql, d->rec, d->arg21, &rec) >= 0 && journal_write_locked(s, d, &rec, ret_wake);
        store_journal_record_done(&rec);
        return ok;
}

/* With s->wlock held: d, r's run's deferred write still queued, absorbed
 * into r's end (deferred_absorb_locked()) and journaled (journal_locked()),
 * with the merge and the record's encoding done without wlock: they were
 * most of a finish's hold of it, on which the HTTP threads' submits, the
 * writer's looks and the other finishes sleep (round 13: up to 3.2 ms
 * when a holder is preempted). Meanwhile d is claimed: out of the
 * deferred chain (nobody else finds it) and kept queued by every take
 * (take_batch_locked(), drain_locked()), so nobody commits, changes or
 * frees it, and only its run's id is read by the queue's walks. wlock is
 * held again on return; false: not journaled (the journal off, or the
 * encoding or the write failed), d absorbed all the same, for the caller
 * to wait for its commit as before. */
static bool absorb_journaled_locked(Store *s, StoreOp *d, const RunRecord *r, const char *replace_sql,
                                    bool *ret_wake) {
        *ret_wake = false;
        if (!journal_on_locked(s)) {
                deferred_absorb_locked(s, d, r, replace_sql);
                return false;
        }
        deferred_chain_remove_locked(s, d);
        d->claimed = true;
        s->wclaimed++;
        pthread_mutex_unlock(&s->wlock);

        record_merge_end(d->rec, r);
        const char *sql = d->replace_sql ? d->replace_sql : replace_sql;
        StoreJournalRecord rec = {};
        int k = store_journal_encode(sql, d->rec, d->arg21, &rec);

        pthread_mutex_lock(&s->wlock);
        d->claimed = false;
        s->wclaimed--;
        if (s->wdrainers > 0)
                pthread_cond_broadcast(&s->wdone);
        absorbed_locked(s, d, replace_sql);
        bool ok = k >= 0 && journal_write_locked(s, d, &rec, ret_wake);
        store_journal_record_done(&rec);
        return ok;
}

/* With s->wlock held: a journaled op whose commit failed (a full disk)
 * queued again, tried with the next batch; its record stays in its file. */
static void journal_requeue_locked(Store *s, StoreOp *op) {
        op->done = false;
        op->result = 0;
        (void) enqueue_locked(s, op);
        journal_batch_add_locked(s);
}

void store_runs_settle(Store *s) {
        if (__atomic_load_n(&s->jlive, __ATOMIC_RELAXED) > 0)
                (void) store_flush(s);
}

static bool op_of_run_prefix(const StoreOp *o, const void *prefix) {
        return o->rec && o->rec->id && startswith(o->rec->id, prefix);
}

int store_run_reveal(Store *s, const char *id) {
        assert(id);
        pthread_mutex_lock(&s->wlock);
        bool pending = uncommitted_op_locked(s, op_of_run_prefix, id);
        pthread_mutex_unlock(&s->wlock);
        return pending ? store_flush(s) : 0;
}

/* A run's id or a prefix of it: the same look as a reveal's. */
void store_run_settle(Store *s, const char *id_prefix) {
        assert(id_prefix);
        if (__atomic_load_n(&s->jlive, __ATOMIC_RELAXED) > 0)
                (void) store_run_reveal(s, id_prefix);
}

/* Whether a fence (fence_sql: a SELECT of the row id with attempt as ?2,
 * text) passes on the committed row: 1 yes, 0 no (-ESTALE), <0 not known. */
static int fence_passes(Store *s, const char *fence_sql, const char *id, const char *attempt) {
        sqlite3_stmt *st = store_read(s, fence_sql);
        if (!st)
                return -EIO;
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, attempt);
        int rc = sqlite3_step(st);
        store_read_done(s, st);
        return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

/* store_run_finish_update_sql's WHERE. */
static int finish_fence(Store *s, const char *id, const char *attempt) {
        return fence_passes(s, "SELECT 1 FROM runs WHERE id=?1 AND attempt=CAST(?2 AS INTEGER) "
                               "AND status IN ('queued','running')", id, attempt);
}

/* store_run_end_update_sql's WHERE, for attempt. */
static int end_fence(Store *s, const char *id, int attempt) {
        char a[16];
        snprintf(a, sizeof(a), "%d", attempt);
        return fence_passes(s, "SELECT 1 FROM runs WHERE id=?1 AND " STORE_END_FENCE("CAST(?2 AS INTEGER)"), id, a);
}

/* With s->wlock held and no commit under way (wait_no_leader_locked()):
 * r's end by the finish's fenced UPDATE of its committed row, journaled
 * as a new owned op. 1: journaled; 0: its fence does not pass (-ESTALE,
 * nothing written, as the UPDATE would change no row); -1: not journaled
 * (the caller queues it as before: no journal, another statement, a write
 * of the run queued that must go first, the append failed). The row must
 * be committed before the record is written, else a crash between the
 * two would replay an UPDATE of nothing: hence no commit under way (one
 * may hold the run's submit; the end waited for a commit before). With
 * nothing of the run queued, the committed row is its state, and the
 * fence is looked at there. */
static int journal_update_locked(Store *s, const char *sql, const RunRecord *r, const char *arg21,
                                 bool *ret_wake) {
        *ret_wake = false;
        if (!s->jon || sql != store_run_finish_update_sql || run_write_queued_locked(s->whead, r->id, NULL))
                return -1;
        int fence = finish_fence(s, r->id, arg21);
        if (fence <= 0)
                return fence == 0 ? 0 : -1;
        StoreOp *op = xcalloc(1, sizeof(StoreOp));
        pthread_cond_init(&op->cond, NULL);
        op->sql = sql;
        op->rec = run_record_copy(r);
        op->arg21 = xstrdup_or_null(arg21);
        if (!journal_locked(s, op, ret_wake)) {
                op_free(op);
                return -1;
        }
        (void) enqueue_locked(s, op);
        return 1;
}

/* With s->wlock held: how the batch under way holds run id's writes: its
 * deferred submit (the whole record, *ret_submit) and its deferred start
 * (the fenced UPDATE of a committed queued row, *ret_start). false: some
 * other write of the run (a waited one, an end): its end waits for the
 * commit as before. */
static bool batch_writes_of_run_locked(const Store *s, const char *id, const StoreOp **ret_submit,
                                       const StoreOp **ret_start) {
        *ret_submit = *ret_start = NULL;
        for (const StoreOp *o = s->wbatch; o; o = o->next) {
                if (!streq(o->rec->id, id))
                        continue;
                if (!o->owned || o->journaled || !o->submit_sql || o->sql != o->submit_sql)
                        return false;
                if (o->replace_sql)
                        *ret_start = o;
                else
                        *ret_submit = o;
        }
        return true;
}

/* With s->wlock held: removes op, queued, from the queue. */
static void queue_unlink_locked(Store *s, StoreOp *op) {
        if (op->deferred)
                deferred_chain_remove_locked(s, op);
        StoreOp **p = &s->whead, *prev = NULL;
        while (*p != op) {
                prev = *p;
                p = &(*p)->next;
        }
        *p = op->next;
        if (s->wtail == op)
                s->wtail = prev;
}

/* With s->wlock held, the journal on: r's end (attempt; d: its run's
 * deferred start still queued, or NULL) journaled while a commit is under
 * way, without waiting for it (round 13: the run watcher slept up to
 * 15 ms here, its runs' ends and resumes with it). An UPDATE of a row the
 * batch is inserting would replay as an UPDATE of nothing after a crash
 * before that commit, so what is journaled needs nothing of the batch:
 * - the batch holds the run's deferred submit: the whole ended record
 *   (the submit's with the end merged in, d dropped), which the replay
 *   and the next batch insert when the row is missing and apply as the
 *   fenced end when it is there (store_run_ended_upsert_sql);
 * - it holds the run's deferred start: the row is committed queued, the
 *   end is its start and finish in one (store_run_end_update_sql), whose
 *   fence passes before and after the start.
 * 1: journaled; -1: a write of the run in the batch that is neither (the
 * caller waits for the commit as before); -2: no commit under way, or
 * nothing of the run in it: the committed row is the run's state. */
static int journal_beside_batch_locked(Store *s, const RunRecord *r, int attempt, StoreOp *d, bool *ret_wake) {
        *ret_wake = false;
        const StoreOp *submit, *start;
        if (!s->wleader)
                return -2;
        if (!batch_writes_of_run_locked(s, r->id, &submit, &start))
                return -1;
        if (!submit && !start)
                return -2;
        if ((d && (d->rec->attempt != attempt || start)) || run_write_queued_locked(s->whead, r->id, d) ||
            (start && end_fence(s, r->id, attempt) != 1))
                return -1;
        StoreOp *op = xcalloc(1, sizeof(StoreOp));
        pthread_cond_init(&op->cond, NULL);
        const StoreOp *base = submit ? submit : start;
        op->rec = run_record_copy(submit ? submit->rec : r);
        if (submit) {
                record_merge_end(op->rec, r);
                op->arg21 = xstrdup_or_null(submit->arg21);
        }
        if (r->started <= 0)
                op->rec->started = d ? d->rec->started : base->rec->started;
        op->rec->attempt = attempt;
        op->sql = submit ? store_run_ended_upsert_sql : store_run_end_update_sql;
        if (!journal_locked(s, op, ret_wake)) {
                op_free(op);
                return -1;
        }
        (void) enqueue_locked(s, op);
        if (d) {
                /* Its start is in the ended record. */
                queue_unlink_locked(s, d);
                op_free(d);
                s->wabsorbed++;
        }
        return 1;
}

/* The calling thread's held finishes the journal made durable, or whose
 * fence did not pass: the release tells them (result: 0 or -ESTALE), no
 * commit to wait for. */
static void hold_add_journaled(const char *id, int result) {
        hold.jids = xrealloc(hold.jids, (hold.njids + 1) * sizeof(hold.jids[0]));
        hold.jids[hold.njids].id = xstrdup(id);
        hold.jids[hold.njids++].result = result;
}

int store_write_run_or_replace(Store *s, const char *sql, const RunRecord *r, const char *arg21, int attempt,
                               const char *replace_sql) {
        assert(s && r && r->id && replace_sql);
        bool held = hold.s == s, wake;
        pthread_mutex_lock(&s->wlock);
        StoreOp *d = deferred_find_locked(s, r->id);
        int k = -2;
        if (s->jon && (!d || d->rec->attempt != attempt || d->replace_sql)) {
                /* An end by UPDATE: journaled only once its row is
                 * committed (journal_update_locked()), or as a record
                 * that needs no commit under way; else d may be taken
                 * meanwhile. */
                k = journal_beside_batch_locked(s, r, attempt, d, &wake);
                if (k == -1) {
                        wait_no_leader_locked(s);
                        d = deferred_find_locked(s, r->id);
                }
        }
        if (k < 0 && (!d || d->rec->attempt != attempt))
                k = journal_update_locked(s, sql, r, arg21, &wake);
        if (k >= 0) {
                if (held)
                        hold_add_journaled(r->id, k ? 0 : -ESTALE);
                pthread_mutex_unlock(&s->wlock);
                if (wake)
                        pthread_cond_signal(&s->wcond);
                return held ? 1 : k;
        }
        if (held) {
                /* Queued, not waited: the release waits for all of the
                 * thread's held finishes at once (one transaction). */
                if (d && d->rec->attempt == attempt) {
                        if (absorb_journaled_locked(s, d, r, replace_sql, &wake)) {
                                hold_add_journaled(r->id, 0);
                                pthread_mutex_unlock(&s->wlock);
                                if (wake)
                                        pthread_cond_signal(&s->wcond);
                                return 1;
                        }
                } else {
                        d = xcalloc(1, sizeof(StoreOp));
                        pthread_cond_init(&d->cond, NULL);
                        d->sql = sql;
                        d->rec = run_record_copy(r);
                        d->arg21 = xstrdup_or_null(arg21);
                        (void) enqueue_locked(s, d);
                }
                hold_add_locked(d);
                pthread_mutex_unlock(&s->wlock);
                return 1; /* as if its row changed: the release tells */
        }
        if (!d || d->rec->attempt != attempt) {
                StoreOp op = { .sql = sql, .rec = (RunRecord *) r, .arg21 = (char *) arg21 };
                pthread_cond_init(&op.cond, NULL);
                (void) enqueue_locked(s, &op);
                wait_done_locked(s, &op);
                pthread_mutex_unlock(&s->wlock);
                pthread_cond_destroy(&op.cond);
                return op.result;
        }
        /* Keeps its place in the FIFO (every later write of the run is
         * behind it); now waited: the leader marks it done, we free it. */
        if (absorb_journaled_locked(s, d, r, replace_sql, &wake)) {
                pthread_mutex_unlock(&s->wlock);
                if (wake)
                        pthread_cond_signal(&s->wcond);
                return 1;
        }
        wait_done_locked(s, d);
        k = d->result;
        if (k < 0) {
                /* Not stored (the batch's fallback wrote each op alone,
                 * with the full-disk reserve, and this one still failed):
                 * the submit goes back to the queue as it was, so the
                 * caller's retry of its finish (the daemon's unwritten
                 * runs) finds a record or a deferred submit again, not
                 * nothing. Unwaited: a failure of it alone is dropped. */
                d->sql = d->submit_sql;
                d->deferred = true;
                d->owned = true;
                d->done = false;
                wake = enqueue_locked(s, d);
                pthread_mutex_unlock(&s->wlock);
                if (wake)
                        pthread_cond_signal(&s->wcond);
                return k;
        }
        pthread_mutex_unlock(&s->wlock);
        op_free(d);
        return k;
}

void store_finish_hold(Store *s) {
        assert(s && !hold.s);
        hold.s = s;
        hold.list = NULL;
        hold.tail = &hold.list;
}

void store_finish_release(Store *s, StoreHeldFn fn, void *userdata) {
        assert(s && hold.s == s);
        StoreOp *list = hold.list;
        __typeof__(hold.jids) jids = hold.jids;
        size_t njids = hold.njids;
        hold.s = NULL;
        hold.list = NULL;
        hold.tail = NULL;
        hold.jids = NULL;
        hold.njids = 0;
        pthread_mutex_lock(&s->wlock);
        /* Until every held op is committed: led here when nobody commits
         * (the first lead takes them all, with everything else queued),
         * else woken by each commit's end (wdone) to look again. Not on
         * an op's own condition: a commit's end signals the first waited
         * op queued behind it, and a held op has nobody waiting on it
         * (a replaced deferred submit keeps its earlier place in the
         * queue, so the ops' order there is not the list's). */
        for (;;) {
                bool all = true;
                for (StoreOp *op = list; op && all; op = op->hnext)
                        all = op->done;
                if (all)
                        break;
                if (!s->wleader) {
                        lead_locked(s, true);
                        continue;
                }
                wait_wdone_locked(s);
        }
        bool wake = false;
        for (size_t i = 0; i < njids; i++) {
                if (fn)
                        fn(jids[i].id, jids[i].result, userdata);
                free(jids[i].id);
        }
        free(jids);
        for (StoreOp *op = list, *next; op; op = next) {
                next = op->hnext;
                /* What store_run_finish() makes of a row count. */
                int k = op->result < 0 ? op->result : op->result == 0 ? -ESTALE : 0;
                if (fn)
                        fn(op->rec->id, k, userdata);
                if (op->result < 0 && op->submit_sql) {
                        /* A replaced deferred submit not stored: back to
                         * the queue as it was (store_write_run_or_replace()). */
                        op->sql = op->submit_sql;
                        op->deferred = true;
                        op->owned = true;
                        op->held = false;
                        op->done = false;
                        wake = enqueue_locked(s, op) || wake;
                        continue;
                }
                op_free(op);
        }
        pthread_mutex_unlock(&s->wlock);
        if (wake)
                pthread_cond_signal(&s->wcond);
}

void store_writer_set_commit_hook(Store *s, void (*fn)(void *userdata), void *userdata) {
        store_lock(s);
        s->wcommit_hook = fn;
        s->wcommit_hook_data = userdata;
        pthread_mutex_unlock(&s->lock);
}

void store_journal_set_linger(Store *s, usec_t usec) {
        pthread_mutex_lock(&s->wlock);
        s->jlinger = usec;
        pthread_mutex_unlock(&s->wlock);
        pthread_cond_signal(&s->wcond);
}

void store_journal_set_max_records(Store *s, unsigned records) {
        pthread_mutex_lock(&s->wlock);
        s->jmax = records;
        pthread_mutex_unlock(&s->wlock);
        pthread_cond_signal(&s->wcond);
}

void store_writer_set_linger(Store *s, usec_t usec) {
        pthread_mutex_lock(&s->wlock);
        s->wlinger = usec;
        pthread_mutex_unlock(&s->wlock);
        pthread_cond_signal(&s->wcond);
}

int store_flush(Store *s) {
        assert(s);
        pthread_mutex_lock(&s->wlock);
        drain_locked(s);
        pthread_mutex_unlock(&s->wlock);
        return 0;
}

void store_writer_stop(Store *s) {
        pthread_mutex_lock(&s->wlock);
        bool started = s->wstarted;
        s->wstop = true;
        pthread_cond_signal(&s->wcond);
        pthread_mutex_unlock(&s->wlock);
        /* The thread commits what is pending before it leaves. */
        if (started)
                pthread_join(s->writer, NULL);
        (void) store_flush(s);
        lock_cache_clear_locked(s);
}

uint64_t store_commits(Store *s) {
        store_lock(s);
        uint64_t n = s->commits;
        pthread_mutex_unlock(&s->lock);
        return n;
}

void store_commit_kinds(Store *s, StoreCommitKinds *ret) {
        uint64_t all = store_commits(s);
        pthread_mutex_lock(&s->wlock);
        ret->journal = s->wcommits_journal;
        ret->lingered = s->wcommits_lingered;
        ret->settle = s->wcommits_settle;
        pthread_mutex_unlock(&s->wlock);
        uint64_t known = ret->journal + ret->lingered + ret->settle;
        ret->other = all > known ? all - known : 0;
}

uint64_t store_writer_idle_wakeups(Store *s) {
        pthread_mutex_lock(&s->wlock);
        uint64_t n = s->widle_wakeups;
        pthread_mutex_unlock(&s->wlock);
        return n;
}

void store_writer_state(Store *s, bool *ret_leading, unsigned *ret_waiting) {
        pthread_mutex_lock(&s->wlock);
        *ret_leading = s->wleader;
        *ret_waiting = s->wwaiting;
        pthread_mutex_unlock(&s->wlock);
}

void store_locks_forget(Store *s) {
        lock_cache_clear_locked(s);
}

static int exec_record(Store *s, const char *sql, const RunRecord *r, bool must_change) {
        /* Waited: the caller reports the record as written. */
        int k = store_write_run(s, sql, r, NULL, true);
        if (k < 0)
                return k;
        return must_change && k == 0 ? -ENOENT : 0;
}

int store_run_insert(Store *s, const RunRecord *r) {
        return exec_record(s,
                           "INSERT INTO runs (" RUN_COLUMNS ", limits_json) VALUES "
                           "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16," STORE_TIME_ENC(
                                   "?17", "?16") "," STORE_TIME_ENC("?18", "?16") ",?19,?20,?30)",
                           r, false);
}

int store_run_update(Store *s, const RunRecord *r) {
        return exec_record(
                s,
                "UPDATE runs SET function=?4, status=?7, exit_code=?8, value_json=?9, "
                "value_repr=?10, error_type=?11, error_message=?12, traceback=?13, "
                "timings_json=?14, log_path=?15, started=" STORE_TIME_ENC(
                        "?17", "created") ", "
                                          "finished=" STORE_TIME_ENC(
                                                  "?18", "created") ", outputs_json=?22, "
                                                                    "lock_sha256=COALESCE(?23, lock_sha256), "
                                                                    "limits_json=COALESCE(?30, limits_json) "
                                                                    "WHERE id=?1",
                r, true);
}
