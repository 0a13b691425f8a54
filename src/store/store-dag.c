/* DAG runs, their tasks and the task memo. A DAG run row carries the
 * pipeline text and its base directory, so a run whose driver died can be
 * resumed from the database alone; tasks are upserted as their state moves. */
#include <sqlite3.h>

#include "store-internal.h"

DagRunRecord *dag_run_record_free(DagRunRecord *r) {
        if (!r)
                return NULL;
        free(r->id);
        free(r->tenant);
        free(r->name);
        free(r->file);
        free(r->base_dir);
        free(r->spec_text);
        free(r->params_json);
        free(r->options_json);
        free(r->status);
        free(r->error);
        free(r->owner);
        free(r->schedule);
        free(r);
        return NULL;
}

void dag_run_record_list_free(DagRunRecord **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                dag_run_record_free(v[i]);
        free(v);
}

DagTaskRecord *dag_task_record_free(DagTaskRecord *t) {
        if (!t)
                return NULL;
        free(t->dag_id);
        free(t->name);
        free(t->state);
        free(t->run_id);
        free(t->memo_key);
        free(t->value_json);
        free(t->error);
        free(t);
        return NULL;
}

void dag_task_record_list_free(DagTaskRecord **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                dag_task_record_free(v[i]);
        free(v);
}

#define DAG_COLUMNS                                                                               \
        "id, tenant, name, file, base_dir, spec_text, params_json, options_json, status, error, " \
        "owner, created, started, finished, schedule"

static void bind_dag(sqlite3_stmt *st, const DagRunRecord *r) {
        store_bind_text(st, 1, r->id);
        store_bind_text(st, 2, r->tenant ? r->tenant : "local");
        store_bind_text(st, 3, r->name);
        store_bind_text(st, 4, r->file);
        store_bind_text(st, 5, r->base_dir);
        store_bind_text(st, 6, r->spec_text ? r->spec_text : "");
        store_bind_text(st, 7, r->params_json);
        store_bind_text(st, 8, r->options_json);
        store_bind_text(st, 9, r->status ? r->status : "running");
        store_bind_text(st, 10, r->error);
        store_bind_text(st, 11, r->owner);
        sqlite3_bind_int64(st, 12, (sqlite3_int64) (r->created ? r->created : now_realtime()));
        sqlite3_bind_int64(st, 13, (sqlite3_int64) r->started);
        sqlite3_bind_int64(st, 14, (sqlite3_int64) r->finished);
        store_bind_text(st, 15, r->schedule);
}

static DagRunRecord *dag_from_row(sqlite3_stmt *st) {
        DagRunRecord *r = xcalloc(1, sizeof(DagRunRecord));
        r->id = store_col_text(st, 0);
        r->tenant = store_col_text(st, 1);
        r->name = store_col_text(st, 2);
        r->file = store_col_text(st, 3);
        r->base_dir = store_col_text(st, 4);
        r->spec_text = store_col_text(st, 5);
        r->params_json = store_col_text(st, 6);
        r->options_json = store_col_text(st, 7);
        r->status = store_col_text(st, 8);
        r->error = store_col_text(st, 9);
        r->owner = store_col_text(st, 10);
        r->created = (usec_t) sqlite3_column_int64(st, 11);
        r->started = (usec_t) sqlite3_column_int64(st, 12);
        r->finished = (usec_t) sqlite3_column_int64(st, 13);
        r->schedule = store_col_text(st, 14);
        return r;
}

static int exec_dag(Store *s, const char *sql, const DagRunRecord *r, bool must_change) {
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
                bind_dag(st, r);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        int changes = sqlite3_changes(s->db);
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_rc_errno(rc);
        if (must_change && changes == 0)
                return -ENOENT;
        return 0;
}

int store_dag_insert(Store *s, const DagRunRecord *r) {
        if (!r->id)
                return -EINVAL;
        return exec_dag(s, "INSERT INTO dag_runs (" DAG_COLUMNS ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
                        r, false);
}

int store_dag_update(Store *s, const DagRunRecord *r) {
        return exec_dag(s, "UPDATE dag_runs SET params_json=?7, options_json=?8, status=?9, error=?10, owner=?11, "
                           "started=?13, finished=?14 WHERE id=?1",
                        r, true);
}

int store_dag_get(Store *s, const char *tenant, const char *id_or_prefix, DagRunRecord **ret) {
        if (!id_or_prefix || !*id_or_prefix)
                return -EINVAL;
        /* A range, not LIKE: '%' and '_' in a user's prefix are not wildcards. */
        _cleanup_free_ char *hi = xasprintf("%s\x7f", id_or_prefix);
        sqlite3_stmt *st;
        DagRunRecord *found = NULL;
        int n = 0, rc;
        store_lock(s);
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT " DAG_COLUMNS " FROM dag_runs WHERE id >= ?1 AND id < ?2 "
                                "AND (?3 IS NULL OR tenant = ?3) ORDER BY id = ?1 DESC LIMIT 2",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, id_or_prefix);
                store_bind_text(st, 2, hi);
                store_bind_text(st, 3, tenant);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        if (n++ == 0)
                                found = dag_from_row(st);
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (!found)
                return rc == SQLITE_DONE ? -ENOENT : store_rc_errno(rc);
        /* The exact match sorts first; otherwise two rows mean ambiguous. */
        if (n > 1 && !streq(found->id, id_or_prefix)) {
                dag_run_record_free(found);
                return -EEXIST;
        }
        *ret = found;
        return 0;
}

int store_dag_list(Store *s, const char *tenant, char *const *statuses, size_t limit, DagRunRecord ***ret,
                   size_t *ret_n) {
        sqlite3_stmt *st;
        DagRunRecord **v = NULL;
        size_t n = 0;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT " DAG_COLUMNS " FROM dag_runs WHERE (?1 IS NULL OR tenant = ?1) "
                                    "AND (?3 IS NULL OR status IN (SELECT value FROM json_each(?3))) "
                                    "ORDER BY created DESC, id DESC LIMIT ?2",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                sqlite3_bind_int64(st, 2, (sqlite3_int64) (limit ? limit : 1000000));
                store_bind_set(st, 3, statuses);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof(*v));
                        v[n++] = dag_from_row(st);
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                dag_run_record_list_free(v, n);
                return store_rc_errno(rc);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

#define TASK_COLUMNS                                                                                  \
        "dag_id, name, position, state, run_id, attempts, memo_key, cached, value_json, error, exit_code, " \
        "started, finished"

/* A result, bound without SQLite's copy of it (SQLITE_STATIC): the
 * statements that bind it are finalized before the caller's text can go.
 * A task's result may be many megabytes; store_bind_text() copied each. */
static void bind_result(sqlite3_stmt *st, int i, const char *s) {
        if (s)
                sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, i);
}

int store_dag_task_put(Store *s, const DagTaskRecord *t) {
        if (!t->dag_id || !t->name)
                return -EINVAL;
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db,
                                    "INSERT OR REPLACE INTO dag_tasks (" TASK_COLUMNS ") VALUES "
                                    "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, t->dag_id);
                store_bind_text(st, 2, t->name);
                sqlite3_bind_int(st, 3, t->position);
                store_bind_text(st, 4, t->state ? t->state : "pending");
                store_bind_text(st, 5, t->run_id);
                sqlite3_bind_int(st, 6, t->attempts);
                store_bind_text(st, 7, t->memo_key);
                sqlite3_bind_int(st, 8, t->cached);
                bind_result(st, 9, t->value_json);
                store_bind_text(st, 10, t->error);
                sqlite3_bind_int(st, 11, t->exit_code);
                sqlite3_bind_int64(st, 12, (sqlite3_int64) t->started);
                sqlite3_bind_int64(st, 13, (sqlite3_int64) t->finished);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

static int task_position_cmp(const void *a, const void *b) {
        const DagTaskRecord *x = *(DagTaskRecord *const *) a, *y = *(DagTaskRecord *const *) b;
        return (x->position > y->position) - (x->position < y->position);
}

int store_dag_tasks(Store *s, const char *dag_id, DagTaskRecord ***ret, size_t *ret_n) {
        sqlite3_stmt *st;
        DagTaskRecord **v = NULL;
        size_t n = 0;
        store_lock(s);
        /* In position order, sorted here: no index holds (dag_id,
         * position), and SQLite's ORDER BY sorted whole rows, results
         * included, through its sorter: a task's 15 MB result was held
         * five times over (~75 MB) before the first row came back. */
        int rc = sqlite3_prepare_v2(s->db, "SELECT " TASK_COLUMNS " FROM dag_tasks WHERE dag_id=?1", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, dag_id);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        DagTaskRecord *t = xcalloc(1, sizeof(DagTaskRecord));
                        t->dag_id = store_col_text(st, 0);
                        t->name = store_col_text(st, 1);
                        t->position = sqlite3_column_int(st, 2);
                        t->state = store_col_text(st, 3);
                        t->run_id = store_col_text(st, 4);
                        t->attempts = sqlite3_column_int(st, 5);
                        t->memo_key = store_col_text(st, 6);
                        t->cached = sqlite3_column_int(st, 7) != 0;
                        t->value_json = store_col_text(st, 8);
                        t->error = store_col_text(st, 9);
                        t->exit_code = sqlite3_column_int(st, 10);
                        t->started = (usec_t) sqlite3_column_int64(st, 11);
                        t->finished = (usec_t) sqlite3_column_int64(st, 12);
                        v = xrealloc(v, (n + 1) * sizeof(*v));
                        v[n++] = t;
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                dag_task_record_list_free(v, n);
                return store_rc_errno(rc);
        }
        if (n > 1)
                qsort(v, n, sizeof(*v), task_position_cmp);
        *ret = v;
        *ret_n = n;
        return 0;
}

int store_dag_memo_get(Store *s, const char *tenant, const char *key, char **ret_value_json, char **ret_run_id) {
        sqlite3_stmt *st;
        char *value = NULL, *run_id = NULL;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "SELECT value_json, run_id FROM dag_memo WHERE tenant=?1 AND key=?2", -1,
                                    &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant ? tenant : "local");
                store_bind_text(st, 2, key);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        value = store_col_text(st, 0);
                        run_id = store_col_text(st, 1);
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (!value) {
                free(run_id);
                return rc == SQLITE_DONE ? -ENOENT : store_rc_errno(rc);
        }
        *ret_value_json = value;
        if (ret_run_id)
                *ret_run_id = run_id;
        else
                free(run_id);
        return 0;
}

int store_dag_memo_put(Store *s, const char *tenant, const char *key, const char *value_json, const char *run_id) {
        if (!key || !value_json)
                return -EINVAL;
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db,
                                    "INSERT OR REPLACE INTO dag_memo (tenant, key, value_json, run_id, created) "
                                    "VALUES (?1,?2,?3,?4,?5)",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant ? tenant : "local");
                store_bind_text(st, 2, key);
                bind_result(st, 3, value_json);
                store_bind_text(st, 4, run_id);
                sqlite3_bind_int64(st, 5, (sqlite3_int64) now_realtime());
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}
