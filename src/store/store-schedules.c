/* Schedules (docs/schedules.md): what fires a deployed function on a cron
 * expression or an interval, its next fire time and its last run; and the
 * runs each schedule started (the tag a run carries). The scheduler itself
 * is the daemon's (src/daemon/daemon-schedules.c). */
#include <assert.h>

#include "store-internal.h"

ScheduleRecord *schedule_record_free(ScheduleRecord *r) {
        if (!r)
                return NULL;
        free(r->tenant);
        free(r->name);
        free(r->function);
        free(r->spec);
        free(r->tz);
        free(r->invoke_json);
        free(r->dag_json);
        free(r->last_run_id);
        free(r->last_note);
        free(r);
        return NULL;
}

void schedule_record_list_free(ScheduleRecord **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                schedule_record_free(v[i]);
        free(v);
}

#define SCHED_COLUMNS                                                                                    \
        "tenant, name, function, spec, tz, invoke_json, catch_up, allow_overlap, paused, next_fire, " \
        "last_fire, last_run_id, last_note, created, dag_json"

static ScheduleRecord *schedule_from_row(sqlite3_stmt *st) {
        ScheduleRecord *r = xcalloc(1, sizeof(ScheduleRecord));
        r->tenant = store_col_text(st, 0);
        r->name = store_col_text(st, 1);
        r->function = store_col_text(st, 2);
        r->spec = store_col_text(st, 3);
        r->tz = store_col_text(st, 4);
        r->invoke_json = store_col_text(st, 5);
        r->catch_up = sqlite3_column_int(st, 6);
        r->allow_overlap = sqlite3_column_int(st, 7);
        r->paused = sqlite3_column_int(st, 8);
        r->next_fire = sqlite3_column_int64(st, 9);
        r->last_fire = sqlite3_column_int64(st, 10);
        r->last_run_id = store_col_text(st, 11);
        r->last_note = store_col_text(st, 12);
        r->created = (usec_t) sqlite3_column_int64(st, 13);
        r->dag_json = store_col_text(st, 14);
        return r;
}

static void schedule_bind(sqlite3_stmt *st, const ScheduleRecord *r) {
        store_bind_text(st, 1, r->tenant);
        store_bind_text(st, 2, r->name);
        store_bind_text(st, 3, r->function);
        store_bind_text(st, 4, r->spec);
        store_bind_text(st, 5, r->tz);
        store_bind_text(st, 6, r->invoke_json);
        sqlite3_bind_int(st, 7, r->catch_up);
        sqlite3_bind_int(st, 8, r->allow_overlap);
        sqlite3_bind_int(st, 9, r->paused);
        sqlite3_bind_int64(st, 10, r->next_fire);
        sqlite3_bind_int64(st, 11, r->last_fire);
        store_bind_text(st, 12, r->last_run_id);
        store_bind_text(st, 13, r->last_note);
        sqlite3_bind_int64(st, 14, (sqlite3_int64) (r->created ? r->created : now_realtime()));
        store_bind_text(st, 16, r->dag_json); /* ?15 is the fence (schedule_exec_expect) */
}

/* With s->lock held: runs sql with r bound (and expected as ?15); the rows
 * it changed, or a negative errno. */
static int schedule_exec_locked(Store *s, const char *sql, const ScheduleRecord *r, int64_t expected) {
        sqlite3_stmt *st = store_stmt(s, sql);
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db), changes = 0;
        if (st) {
                schedule_bind(st, r);
                sqlite3_bind_int64(st, 15, expected);
                rc = sqlite3_step(st);
                changes = sqlite3_changes(s->db);
                store_stmt_done(s, st);
        }
        if (rc == SQLITE_CONSTRAINT)
                return -EEXIST;
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        return changes;
}

static int schedule_exec_expect(Store *s, const char *sql, const ScheduleRecord *r, int64_t expected) {
        store_lock(s);
        int k = schedule_exec_locked(s, sql, r, expected);
        pthread_mutex_unlock(&s->lock);
        return k;
}

static int schedule_exec(Store *s, const char *sql, const ScheduleRecord *r) {
        return schedule_exec_expect(s, sql, r, 0);
}

#define SCHED_INSERT \
        "INSERT INTO schedules (" SCHED_COLUMNS ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?16)"
/* The settings, and next_fire when ?15 (the timing changed); never the
 * fire state (last_fire, last_run_id): a fire between the caller's read
 * and this write keeps its run and its next fire time. */
#define SCHED_UPDATE                                                                                    \
        "UPDATE schedules SET function=?3, spec=?4, tz=?5, invoke_json=?6, dag_json=?16, catch_up=?7, " \
        "allow_overlap=?8, "                                                                            \
        "paused=?9, next_fire=CASE WHEN ?15 THEN ?10 ELSE next_fire END, last_note=?13 WHERE tenant=?1 AND name=?2"
#define SCHED_DELETE "DELETE FROM schedules WHERE tenant=?1 AND name=?2"

int store_schedule_insert(Store *s, const ScheduleRecord *r) {
        if (!r->tenant || !r->name || !r->function || !r->spec)
                return -EINVAL;
        int k = schedule_exec(s, SCHED_INSERT, r);
        return k < 0 ? k : 0;
}

int store_schedule_insert_in_tx(Store *s, const ScheduleRecord *r) {
        if (!r->tenant || !r->name || !r->function || !r->spec)
                return -EINVAL;
        int k = schedule_exec_locked(s, SCHED_INSERT, r, 0);
        return k < 0 ? k : 0;
}

int store_schedule_update_in_tx(Store *s, const ScheduleRecord *r, bool timing) {
        int k = schedule_exec_locked(s, SCHED_UPDATE, r, timing);
        return k < 0 ? k : k == 0 ? -ENOENT : 0;
}

/* With s->lock held: the schedule and its runs' tags. The runs stay
 * (listed by ps); a schedule added again under the name is a new one,
 * which must not list the removed one's runs as its own. */
static int schedule_delete_locked(Store *s, const char *tenant, const char *name) {
        ScheduleRecord r = { .tenant = (char *) tenant, .name = (char *) name };
        int k = schedule_exec_locked(s, SCHED_DELETE, &r, 0);
        if (k == 0)
                return -ENOENT;
        if (k > 0)
                k = schedule_exec_locked(s, "DELETE FROM schedule_runs WHERE tenant=?1 AND schedule=?2", &r, 0);
        return k < 0 ? k : 0;
}

int store_schedule_delete_in_tx(Store *s, const char *tenant, const char *name) {
        return schedule_delete_locked(s, tenant, name);
}

static int schedule_record_run_locked(Store *s, const ScheduleRecord *r);

/* One transaction: the schedule's row and the tag of the run it names, so
 * no reader sees a last_run that its runs list lacks (a GET between two
 * separate writes did, now and then). */
static int schedule_write_with_run(Store *s, const char *sql, const ScheduleRecord *r, int64_t expected,
                                   int none) {
        int k = store_tx_begin(s);
        if (k < 0)
                return k;
        k = schedule_exec_locked(s, sql, r, expected);
        if (k == 0)
                k = none;
        else if (k > 0)
                k = schedule_record_run_locked(s, r);
        int e = store_tx_end(s, k >= 0);
        return k < 0 ? k : e;
}

int store_schedule_update(Store *s, const ScheduleRecord *r) {
        int k = schedule_exec_expect(s, SCHED_UPDATE, r, 1);
        return k < 0 ? k : k == 0 ? -ENOENT : 0;
}

int store_schedule_advance(Store *s, const ScheduleRecord *r, int64_t expected_next_fire) {
        /* Only the fire state moves, and only from the state the scheduler
         * read: a pause, an edit or another scheduler in between wins. */
        return schedule_write_with_run(s,
                                       "UPDATE schedules SET paused=?9, next_fire=?10, last_fire=?11, "
                                       "last_run_id=?12, last_note=?13 "
                                       "WHERE tenant=?1 AND name=?2 AND paused=0 AND next_fire=?15",
                                       r, expected_next_fire, -ESTALE);
}

#define RUNS_MAX_TEXT_(n) #n
#define RUNS_MAX_TEXT(n) RUNS_MAX_TEXT_(n)

/* With s->lock held. */
static int schedule_record_run_locked(Store *s, const ScheduleRecord *r) {
        if (!r->last_run_id || !r->last_fire)
                return 0;
        /* The tag: which runs this schedule started. */
        sqlite3_stmt *st = store_stmt(s, "INSERT OR IGNORE INTO schedule_runs (tenant, schedule, run_id, fired) "
                                         "VALUES (?1, ?2, ?3, ?4)");
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db);
        if (st) {
                store_bind_text(st, 1, r->tenant);
                store_bind_text(st, 2, r->name);
                store_bind_text(st, 3, r->last_run_id);
                sqlite3_bind_int64(st, 4, r->last_fire);
                rc = sqlite3_step(st);
                store_stmt_done(s, st);
        }
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        /* Only the newest STORE_SCHEDULE_RUNS_MAX are ever listed: older
         * tags go (one row per fire, forever, made an `--every 1s`
         * schedule 86,400 rows a day). */
        ScheduleRecord key = { .tenant = r->tenant, .name = r->name };
        int k = schedule_exec_locked(s,
                                     "DELETE FROM schedule_runs WHERE tenant=?1 AND schedule=?2 AND rowid NOT IN "
                                     "(SELECT rowid FROM schedule_runs WHERE tenant=?1 AND schedule=?2 "
                                     "ORDER BY rowid DESC LIMIT " RUNS_MAX_TEXT(STORE_SCHEDULE_RUNS_MAX) ")",
                                     &key, 0);
        return k < 0 ? k : 0;
}

/* With s->lock held. */
static int schedule_select_locked(Store *s, const char *sql, const char *tenant, const char *name,
                                  ScheduleRecord ***ret, size_t *ret_n) {
        ScheduleRecord **v = NULL;
        size_t n = 0;
        sqlite3_stmt *st = store_stmt(s, sql);
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db);
        if (st) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof(ScheduleRecord *));
                        v[n++] = schedule_from_row(st);
                }
                store_stmt_done(s, st);
        }
        if (rc != SQLITE_DONE) {
                schedule_record_list_free(v, n);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int schedule_select(Store *s, const char *sql, const char *tenant, const char *name, ScheduleRecord ***ret,
                           size_t *ret_n) {
        store_lock(s);
        int k = schedule_select_locked(s, sql, tenant, name, ret, ret_n);
        pthread_mutex_unlock(&s->lock);
        return k;
}

static int schedule_get(Store *s, bool locked, const char *tenant, const char *name, ScheduleRecord **ret) {
        ScheduleRecord **v = NULL;
        size_t n = 0;
        static const char sql[] = "SELECT " SCHED_COLUMNS " FROM schedules WHERE tenant=?1 AND name=?2";
        int k = locked ? schedule_select_locked(s, sql, tenant, name, &v, &n)
                       : schedule_select(s, sql, tenant, name, &v, &n);
        if (k < 0)
                return k;
        if (n == 0) {
                free(v);
                return -ENOENT;
        }
        *ret = v[0];
        free(v);
        return 0;
}

int store_schedule_get(Store *s, const char *tenant, const char *name, ScheduleRecord **ret) {
        return schedule_get(s, false, tenant, name, ret);
}

int store_schedule_get_in_tx(Store *s, const char *tenant, const char *name, ScheduleRecord **ret) {
        return schedule_get(s, true, tenant, name, ret);
}

int store_schedule_list(Store *s, const char *tenant, ScheduleRecord ***ret, size_t *ret_n) {
        return schedule_select(s, "SELECT " SCHED_COLUMNS " FROM schedules WHERE (?1 IS NULL OR tenant=?1) "
                                  "AND ?2 IS NULL ORDER BY tenant, name",
                               tenant, NULL, ret, ret_n);
}

int store_schedule_delete(Store *s, const char *tenant, const char *name) {
        int k = store_tx_begin(s);
        if (k < 0)
                return k;
        k = schedule_delete_locked(s, tenant, name);
        int e = store_tx_end(s, k >= 0);
        return k < 0 ? k : e;
}

int store_schedule_forget_run(Store *s, const char *tenant, const char *name, const char *run_id) {
        assert(tenant && name && run_id);
        ScheduleRecord r = { .tenant = (char *) tenant, .name = (char *) name, .last_run_id = (char *) run_id };
        int k = schedule_exec(s, "DELETE FROM schedule_runs WHERE tenant=?1 AND schedule=?2 AND run_id=?12", &r);
        return k < 0 ? k : 0;
}

int store_schedule_runs(Store *s, const char *tenant, const char *name, size_t limit, char ***ret) {
        return store_list_ids(s,
                              /* Newest first is the order they were fired
                               * in (a row's rowid grows), not their fire
                               * times: after the clock went back, the
                               * newest run has the older time. */
                              "SELECT run_id FROM schedule_runs WHERE tenant=?1 AND schedule=?2 "
                              "ORDER BY rowid DESC LIMIT ?3",
                              tenant, name, limit, ret);
}
