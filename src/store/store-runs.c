/* The reads of run records and the runs' owner marks (store.h): above the
 * writer (store-writer.c), whose journaled runs each read commits first
 * (store_runs_settle()), so that it sees them. */
#include <assert.h>

#include "store-internal.h"

int store_run_get(Store *s, const char *tenant, const char *id_or_prefix, RunRecord **ret) {
        if (!id_or_prefix || !*id_or_prefix)
                return -EINVAL;
        store_run_settle(s, id_or_prefix);
        /* A prefix is matched with a range, not LIKE: ids are plain base32 and
         * a user's '%' or '_' must not act as a wildcard. */
        _cleanup_free_ char *hi = xasprintf("%s\x7f", id_or_prefix);
        sqlite3_stmt *st = store_read(s, "SELECT " RUN_SELECT_COLUMNS " FROM runs WHERE id >= ?1 AND id < ?2 "
                                         "AND (?3 IS NULL OR tenant = ?3) ORDER BY id = ?1 DESC LIMIT 2");
        if (!st)
                return -EIO;
        store_bind_text(st, 1, id_or_prefix);
        store_bind_text(st, 2, hi);
        store_bind_text(st, 3, tenant);
        RunRecord *first = NULL;
        int r = -ENOENT;
        if (sqlite3_step(st) == SQLITE_ROW) {
                first = store_run_from_row(st);
                r = 0;
                if (!streq(first->id, id_or_prefix) && sqlite3_step(st) == SQLITE_ROW)
                        r = -EEXIST;
        }
        store_read_done(s, st);
        if (r < 0) {
                run_record_free(first);
                return r;
        }
        *ret = first;
        return 0;
}

int store_run_find_idempotent(Store *s, const char *tenant, const char *key, usec_t since, char **ret_id) {
        assert(s && tenant && key && ret_id);
        store_runs_settle(s);
        sqlite3_stmt *st = store_read(s, "SELECT id FROM runs WHERE tenant = ?1 AND idem_key = ?2 AND created >= ?3 "
                                         "ORDER BY created, id LIMIT 1");
        if (!st)
                return -EIO;
        store_bind_text(st, 1, tenant);
        store_bind_text(st, 2, key);
        sqlite3_bind_int64(st, 3, (sqlite3_int64) since);
        int r = -ENOENT;
        if (sqlite3_step(st) == SQLITE_ROW) {
                *ret_id = xstrdup((const char *) sqlite3_column_text(st, 0));
                r = 0;
        }
        store_read_done(s, st);
        return r;
}

/* One statement: SQLite's write lock makes the look-up and the insert
 * one step for every process on the file, as the daemon's idem_lock does
 * for its threads. ?24 and ?27 are named so that the record's binding
 * binds ?26, the key (RunRecord.request_given); the window (µs) is a
 * constant of the text (%llu). */
#define INSERT_IDEMPOTENT_FMT                                                                                      \
        "INSERT INTO runs (" RUN_COLUMNS                                                                           \
        ", idem_key) SELECT ?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16," STORE_TIME_ENC(               \
                "?17", "?16") "," STORE_TIME_ENC("?18", "?16") ",?19,?20,?26 "                                     \
                                                               "WHERE ?24 = 1 AND ?27 IS NOT NULL AND NOT EXISTS " \
                                                               "(SELECT 1 FROM runs WHERE tenant = ?2 AND "        \
                                                               "idem_key = ?26 AND created >= ?16 - %llu)"

int store_run_insert_idempotent(Store *s, const RunRecord *r, const char *key, usec_t window, char **ret_first_id) {
        assert(s && r && r->id && r->tenant && key && ret_first_id);
        RunRecord k = *r;
        k.request_given = true;
        k.request_idem_key = (char *) key;
        k.request_fn_name = NULL;
        k.request_has_data = false;
        _cleanup_free_ char *sql = xasprintf(INSERT_IDEMPOTENT_FMT, (unsigned long long) window);
        int n = store_write_run(s, sql, &k, NULL, true);
        if (n < 0)
                return n;
        if (n > 0)
                return 0;
        char *first = NULL;
        n = store_run_find_idempotent(s, r->tenant, key, r->created > window ? r->created - window : 0, &first);
        if (n < 0)
                return n == -ENOENT ? -EIO : n; /* refused, yet no run holds the key: cannot be */
        *ret_first_id = first;
        return 1;
}

_Static_assert(RUN_LIST_VALUE_MAX == 4096, "RUN_LIST_VALUE_MAX_TEXT says the same");

/* The list, read as it is committed: the values a listing leaves out are
 * not read (RUN_LIST_COLUMNS). */
static int run_list_read(Store *s, const char *tenant, const RunFilter *f, const char *before, size_t limit,
                         RunRecord ***ret_records, size_t *ret_n) {
        sqlite3_stmt *st;
        /* Both walk runs_tenant_created (there is no index on created
         * alone: migration 16). Every tenant's runs: the tenants one by one
         * (each a seek in that index), each one's newest LIMIT, merged. One
         * statement with "?1 IS NULL OR tenant = ?1" would use no index on
         * tenant at all. The states (?3, a JSON array) are filtered in the
         * walk, so LIMIT counts the runs in them: the newest N failed runs,
         * not the failed ones among the newest N. ?4, a run's id: only the
         * runs listed after it, in the same order (the next page); an id
         * no run has lists nothing. A function (?5) or a schedule (?6) is
         * a term of the text only when asked for: "fn_name = ?5" lets
         * SQLite walk the partial index runs_fn_name (tenant, fn_name,
         * created; migration 16), "schedule = ?6" runs_schedule (25),
         * where "?5 IS NULL OR …" would use neither and walk every run of
         * the tenant to find a function's few. */
        /* A text (?7, its ASCII letters lowered) is tested in the walk
         * (run_filter_text_match() is the same test in C): the newest N
         * runs that have it, however old. The search index
         * (store-search.c) gives the runs that may have it (?8, their
         * rowids), and the
         * runs it does not hold yet (store_search_tail_sql): when they are
         * few, only those are looked at, each by its rowid; the tenant, the
         * function and the schedule are then tested on them ("+tenant"
         * keeps SQLite off the indexes that would walk the tenant's runs).
         * A text of fewer than 3 characters, or a common one, is left to
         * the walk. */
        bool text = f && f->text && *f->text;
        _cleanup_free_ char *match = text ? store_search_match(f->text) : NULL;
        if (match)
                (void) store_search_index_tail(s, 0); /* read-only, busy: a longer tail */
        store_lock(s);
        /* The candidates and the list read one snapshot: a process that
         * indexes runs between them (an embedded CLI beside a daemon) must
         * not move the mark past runs the candidates lack. */
        bool snapshot = match && sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
        _cleanup_free_ char *found = NULL;
        bool indexed = snapshot && store_search_candidates(s, match, &found) >= 0;
        const char *plus = indexed ? "+" : "";
        _cleanup_free_ char *origin0 = f && f->fn_name && f->schedule
                                               ? xasprintf("AND %sfn_name = ?5 AND %sschedule = ?6 ", plus, plus)
                                       : f && f->fn_name  ? xasprintf("AND %sfn_name = ?5 ", plus)
                                       : f && f->schedule ? xasprintf("AND %sschedule = ?6 ", plus)
                                                          : xstrdup("");
        _cleanup_free_ char *origin = xasprintf("%s%s%s%s%s", origin0,
                                                indexed ? "AND (rowid IN (SELECT value FROM json_each(?8)) OR " : "",
                                                indexed ? store_search_tail_sql : "", indexed ? ") " : "",
                                                text ? "AND (instr(lower(id), ?7) OR instr(lower(filename), ?7) OR "
                                                       "instr(lower(function), ?7) OR instr(lower(fn_name), ?7) OR "
                                                       "instr(lower(schedule), ?7)) "
                                                     : "");
        _cleanup_free_ char *sql =
                /* Sorted as rowids, then read: the sort of the candidates'
                 * whole rows (their results, arguments) cost more than
                 * finding them. */
                indexed  ? xasprintf("SELECT " RUN_LIST_COLUMNS " FROM runs WHERE rowid IN "
                                      "(SELECT rowid FROM runs WHERE (?1 IS NULL OR +tenant = ?1) %s"
                                      "AND (?3 IS NULL OR status IN (SELECT value FROM json_each(?3))) "
                                      "AND (?4 IS NULL OR (created, id) < (SELECT created, id FROM runs "
                                      "WHERE id = ?4)) "
                                      "ORDER BY created DESC, id DESC LIMIT ?2) "
                                      "ORDER BY created DESC, id DESC",
                                     origin)
                : tenant ? xasprintf("SELECT " RUN_LIST_COLUMNS " FROM runs WHERE tenant = ?1 %s"
                                     "AND (?3 IS NULL OR status IN (SELECT value FROM json_each(?3))) "
                                     "AND (?4 IS NULL OR (created, id) < (SELECT created, id FROM runs "
                                     "WHERE id = ?4)) "
                                     "ORDER BY created DESC, id DESC LIMIT ?2",
                                     origin)
                         : xasprintf("WITH RECURSIVE t(x) AS (SELECT (SELECT min(tenant) FROM runs) "
                                     "UNION ALL SELECT (SELECT min(tenant) FROM runs WHERE tenant > t.x) "
                                     "FROM t WHERE t.x IS NOT NULL) "
                                     "SELECT " RUN_LIST_COLUMNS " FROM t JOIN runs ON runs.rowid IN "
                                     "(SELECT rowid FROM runs WHERE tenant = t.x %s"
                                     "AND (?3 IS NULL OR status IN (SELECT value FROM json_each(?3))) "
                                     "AND (?4 IS NULL OR (created, id) < (SELECT created, id FROM runs "
                                     "WHERE id = ?4)) "
                                     "ORDER BY created DESC, id DESC LIMIT ?2) "
                                     "WHERE ?1 IS NULL ORDER BY created DESC, id DESC LIMIT ?2",
                                     origin);
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK) {
                if (snapshot)
                        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
                pthread_mutex_unlock(&s->lock);
                return store_sqlite_errno(rc);
        }
        store_bind_text(st, 1, tenant);
        sqlite3_bind_int64(st, 2, (sqlite3_int64) (limit ? limit : 20));
        store_bind_set(st, 3, f ? f->statuses : NULL);
        store_bind_text(st, 4, before);
        if (f && f->fn_name)
                store_bind_text(st, 5, f->fn_name);
        if (f && f->schedule)
                store_bind_text(st, 6, f->schedule);
        if (text) {
                _cleanup_free_ char *lowered = xstrdup(f->text);
                for (char *c = lowered; *c; c++)
                        if (*c >= 'A' && *c <= 'Z')
                                *c = (char) (*c - 'A' + 'a');
                store_bind_text(st, 7, lowered);
        }
        if (indexed)
                store_bind_text(st, 8, found);
        RunRecord **v = NULL;
        size_t n = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                v = xrealloc(v, (n + 1) * sizeof(RunRecord *));
                /* RUN_LIST_COLUMNS' values left out, in run_record_elide()'s
                 * order; typed before the row is read as text ("0"). */
                static const int elidable[] = { 4, 5, 8, 9, 11, 12 };
                unsigned mask = 0;
                for (size_t i = 0; i < ELEMENTSOF(elidable); i++)
                        if (sqlite3_column_type(st, elidable[i]) == SQLITE_INTEGER)
                                mask |= 1u << i;
                RunRecord *r = v[n++] = store_run_from_row(st);
                char **texts[] = { &r->args_json,  &r->kwargs_json,   &r->value_json,
                                   &r->value_repr, &r->error_message, &r->traceback };
                for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                        if (mask & (1u << i)) {
                                free(*texts[i]);
                                *texts[i] = NULL;
                        }
                r->elided = mask;
        }
        sqlite3_finalize(st);
        if (snapshot)
                sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL); /* a read: nothing to lose */
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                run_record_list_free(v, n);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        *ret_records = v;
        *ret_n = n;
        return 0;
}

int store_run_list(Store *s, const char *tenant, const RunFilter *filter, size_t limit, RunRecord ***ret_records,
                   size_t *ret_n) {
        store_runs_settle(s);
        return run_list_read(s, tenant, filter, NULL, limit, ret_records, ret_n);
}

int store_run_list_settled(Store *s, uint64_t ticket, const char *tenant, const RunFilter *filter, size_t limit,
                           RunRecord ***ret_records, size_t *ret_n) {
        store_runs_settle_through(s, ticket);
        return run_list_read(s, tenant, filter, NULL, limit, ret_records, ret_n);
}

int store_run_list_before(Store *s, uint64_t ticket, const char *tenant, const RunFilter *filter, const char *before,
                          size_t limit, RunRecord ***ret_records, size_t *ret_n) {
        assert(s && before);
        if (ticket)
                store_runs_settle_through(s, ticket);
        else
                store_runs_settle(s);
        return run_list_read(s, tenant, filter, before, limit, ret_records, ret_n);
}

int store_runs_mark_lost(Store *s, const char *message) {
        store_runs_settle(s);
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db,
                                    "UPDATE runs SET status='lost', exit_code=7, error_type='Lost', "
                                    "error_message=?1, finished=" STORE_TIME_ENC("?2", "created") " "
                                    "WHERE status IN ('queued','running')",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, message);
                sqlite3_bind_int64(st, 2, (sqlite3_int64) now_realtime());
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        int n = sqlite3_changes(s->db);
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? n : (store_sqlite_errno(rc) ?: -EIO);
}

int store_run_set_owner(Store *s, const char *id, pid_t pid, uint64_t start_time) {
        assert(s && id);
        store_runs_settle(s);
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "UPDATE runs SET owner_pid=?2, owner_start=?3, owner_pidns=?4 WHERE id=?1",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, id);
                sqlite3_bind_int64(st, 2, (sqlite3_int64) pid);
                sqlite3_bind_int64(st, 3, (sqlite3_int64) start_time);
                sqlite3_bind_int64(st, 4, (sqlite3_int64) pid_namespace_id());
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        int n = sqlite3_changes(s->db);
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        return n ? 0 : -ENOENT;
}

int store_run_owner(Store *s, const char *id, pid_t *ret_pid) {
        assert(s && id && ret_pid);
        store_run_settle(s, id);
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "SELECT owner_pid FROM runs WHERE id=?1", -1, &st, NULL);
        if (rc != SQLITE_OK) {
                pthread_mutex_unlock(&s->lock);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        store_bind_text(st, 1, id);
        int r = -ENOENT;
        pid_t pid = 0;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                pid = (pid_t) sqlite3_column_int64(st, 0);
                r = 0;
        } else if (rc != SQLITE_DONE)
                r = store_sqlite_errno(rc) ?: -EIO;
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->lock);
        if (r >= 0)
                *ret_pid = pid;
        return r;
}

int store_run_get_lock(Store *s, const char *tenant, const char *id, char **ret) {
        assert(s && id && ret);
        store_runs_settle(s);
        sqlite3_stmt *st;
        store_lock(s);
        /* lock_json: a run recorded before the locks table (migration 14). */
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT COALESCE(l.text, r.lock_json) FROM runs r "
                                    "LEFT JOIN locks l ON l.sha256 = r.lock_sha256 "
                                    "WHERE r.id=?1 AND (?2 IS NULL OR r.tenant=?2)",
                                    -1, &st, NULL);
        if (rc != SQLITE_OK) {
                pthread_mutex_unlock(&s->lock);
                return store_sqlite_errno(rc);
        }
        store_bind_text(st, 1, id);
        store_bind_text(st, 2, tenant);
        int r = -ENOENT;
        char *lock = NULL;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                lock = store_col_text(st, 0);
                r = 0;
        } else if (rc != SQLITE_DONE)
                r = store_sqlite_errno(rc) ?: -EIO;
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
                return r;
        *ret = lock;
        return 0;
}

typedef struct Owned {
        char *id;
        pid_t pid;
        uint64_t start;
} Owned;

int store_runs_mark_orphaned(Store *s, const char *message) {
        assert(s && message);
        store_runs_settle(s);
        sqlite3_stmt *st;
        Owned *v = NULL;
        size_t n = 0;
        /* Read first, check the processes without the lock, then mark each
         * one only if it is still in flight. */
        store_lock(s);
        /* An owner of another pid namespace says nothing here: its pid
         * names another process, or none, in ours. */
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT id, owner_pid, owner_start FROM runs "
                                    "WHERE status IN ('queued','running') AND owner_pid > 0 "
                                    "AND owner_pidns IN (0, ?1)",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, (sqlite3_int64) pid_namespace_id());
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof(Owned));
                        v[n++] = (Owned) { .id = store_col_text(st, 0),
                                           .pid = (pid_t) sqlite3_column_int64(st, 1),
                                           .start = (uint64_t) sqlite3_column_int64(st, 2) };
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        int r = rc == SQLITE_DONE ? 0 : (store_sqlite_errno(rc) ?: -EIO);
        int marked = 0;
        /* Marked lost only when the owner is known gone: a zombie is (a PID
         * 1 that never reaps kept a killed CLI's run `running` for ever); a
         * process that cannot be looked at, out of descriptors, is not. */
        for (size_t i = 0; i < n; i++) {
                if (r >= 0 && !pid_alive_since(v[i].pid, v[i].start)) {
                        _cleanup_free_ char *m = xasprintf("%s (pid %d)", message, (int) v[i].pid);
                        store_lock(s);
                        rc = sqlite3_prepare_v2(s->db,
                                                "UPDATE runs SET status='lost', exit_code=7, error_type='Lost', "
                                                "error_message=?2, finished=" STORE_TIME_ENC("?3", "created") " "
                                                "WHERE id=?1 AND "
                                                "status IN ('queued','running')",
                                                -1, &st, NULL);
                        if (rc == SQLITE_OK) {
                                store_bind_text(st, 1, v[i].id);
                                store_bind_text(st, 2, m);
                                sqlite3_bind_int64(st, 3, (sqlite3_int64) now_realtime());
                                rc = sqlite3_step(st);
                                sqlite3_finalize(st);
                                marked += sqlite3_changes(s->db);
                        }
                        pthread_mutex_unlock(&s->lock);
                        if (rc != SQLITE_DONE)
                                r = store_sqlite_errno(rc) ?: -EIO;
                }
                free(v[i].id);
        }
        free(v);
        return r < 0 ? r : marked;
}
