/* The SQLite job store. One read-write connection per Store, serialised by
 * a mutex, and a read-only one for the reads of every invoke (store_read());
 * WAL mode so readers (pysprinter ps, the read connection) never block the
 * writer (a run) nor wait for it. */
#include <assert.h>
#include <jansson.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "store-internal.h"

sqlite3_stmt *store_read(Store *s, const char *sql) {
        if (!s->rdb) {
                store_lock(s);
                sqlite3_stmt *st = store_stmt(s, sql);
                if (!st)
                        pthread_mutex_unlock(&s->lock);
                return st;
        }
        pthread_mutex_lock(&s->rlock);
        for (size_t i = 0; i < s->n_rcache; i++)
                if (s->rcache[i].sql == sql)
                        return s->rcache[i].st;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v3(s->rdb, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
                sqlite3_finalize(st);
                pthread_mutex_unlock(&s->rlock);
                return NULL;
        }
        if (s->n_rcache < ELEMENTSOF(s->rcache)) {
                s->rcache[s->n_rcache].sql = sql;
                s->rcache[s->n_rcache++].st = st;
        }
        return st;
}

void store_read_done(Store *s, sqlite3_stmt *st) {
        if (!s->rdb) {
                store_stmt_done(s, st);
                pthread_mutex_unlock(&s->lock);
                return;
        }
        bool cached = false;
        for (size_t i = 0; i < s->n_rcache; i++)
                cached = cached || s->rcache[i].st == st;
        if (cached) {
                sqlite3_reset(st);
                sqlite3_clear_bindings(st);
        } else
                sqlite3_finalize(st);
        pthread_mutex_unlock(&s->rlock);
}

/* The reserve: a file of STORE_RESERVE_BYTES beside the database, given
 * back to the file system when a write finds the disk full, so that the
 * records that end runs still land (a run never stays "running" because
 * its own output filled the disk). Made again once space is back. */
void store_reserve_make(Store *s) {
        struct stat st;
        if (stat(s->reserve_path, &st) == 0 && (uint64_t) st.st_size >= STORE_RESERVE_BYTES) {
                s->reserve_released = false;
                return;
        }
        struct statvfs v;
        if (statvfs(s->reserve_path, &v) < 0 && errno == ENOENT) {
                _cleanup_free_ char *dir = xstrdup(s->reserve_path);
                char *slash = strrchr(dir, '/');
                if (slash)
                        *slash = 0;
                if (statvfs(slash ? dir : ".", &v) < 0)
                        return;
        }
        /* Only when it leaves room: never the reason a disk fills. */
        if ((uint64_t) v.f_bavail * v.f_frsize < 4 * STORE_RESERVE_BYTES)
                return;
        int fd = open(s->reserve_path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return;
        bool ok = posix_fallocate(fd, 0, STORE_RESERVE_BYTES) == 0;
        close(fd);
        if (!ok)
                (void) unlink(s->reserve_path);
        s->reserve_released = !ok;
}

bool store_reserve_release_path(const char *reserve_path) {
        assert(reserve_path);
        if (unlink(reserve_path) < 0)
                return false;
        log_warn("the disk holding the database is full: released the %llu MiB reserve so runs can still end; "
                 "free some space",
                 (unsigned long long) (STORE_RESERVE_BYTES >> 20));
        return true;
}

bool store_reserve_release(Store *s) {
        if (!store_reserve_release_path(s->reserve_path))
                return false;
        s->reserve_released = true;
        s->reserve_checked = now_monotonic();
        return true;
}

sqlite3_stmt *store_stmt(Store *s, const char *sql) {
        for (size_t i = 0; i < s->n_cache; i++)
                if (s->cache[i].sql == sql)
                        return s->cache[i].st;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
                return NULL;
        if (s->n_cache < STORE_STMT_CACHE) {
                s->cache[s->n_cache].sql = sql;
                s->cache[s->n_cache++].st = st;
        }
        return st;
}

void store_stmt_done(Store *s, sqlite3_stmt *st) {
        if (!st)
                return;
        for (size_t i = 0; i < s->n_cache; i++)
                if (s->cache[i].st == st) {
                        sqlite3_reset(st);
                        sqlite3_clear_bindings(st);
                        return;
                }
        sqlite3_finalize(st);
}

RunRecord *run_record_free(RunRecord *r) {
        if (!r)
                return NULL;
        free(r->id);
        free(r->tenant);
        free(r->filename);
        free(r->function);
        free(r->args_json);
        free(r->kwargs_json);
        free(r->status);
        free(r->value_json);
        free(r->value_repr);
        free(r->error_type);
        free(r->error_message);
        free(r->traceback);
        free(r->timings_json);
        free(r->log_path);
        free(r->outputs_json);
        free(r->lock_json);
        free(r->request_fn_name);
        free(r->fn_name);
        free(r->schedule);
        free(r->limits_json);
        free(r->request_idem_key);
        free(r);
        return NULL;
}

void run_record_freep(RunRecord **r) {
        *r = run_record_free(*r);
}

/* store.h. */
int run_record_cmp_newer_first(const void *a, const void *b) {
        const RunRecord *x = *(RunRecord *const *) a, *y = *(RunRecord *const *) b;
        if (x->created != y->created)
                return x->created > y->created ? -1 : 1;
        return strcmp(y->id, x->id);
}

/* store.h. */
bool run_record_newer(const RunRecord *a, const RunRecord *b) {
        assert(a && b);
        return run_record_cmp_newer_first(&a, &b) < 0;
}

/* store.h. */
bool run_filter_text_match(const char *text, const RunRecord *r) {
        assert(r);
        if (!text || !*text)
                return true;
        /* strcasestr() folds case by the locale, and neither binary sets
         * one (the C locale: ASCII letters only), as SQLite's lower() in
         * run_list_read()'s term does: both paths keep the same runs. */
        const char *fields[] = { r->id, r->filename, r->function, r->fn_name, r->schedule };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (fields[i] && strcasestr(fields[i], text))
                        return true;
        return false;
}

/* store.h. */
bool run_filter_match(const RunFilter *f, const RunRecord *r) {
        assert(r);
        if (!f)
                return true;
        return (!f->statuses || (r->status && strv_contains(f->statuses, r->status))) &&
               (!f->fn_name || (r->fn_name && streq(r->fn_name, f->fn_name))) &&
               (!f->schedule || (r->schedule && streq(r->schedule, f->schedule))) && run_filter_text_match(f->text, r);
}

void run_record_list_free(RunRecord **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                run_record_free(v[i]);
        free(v);
}

void store_bind_text(sqlite3_stmt *st, int i, const char *s) {
        if (s)
                sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
        else
                sqlite3_bind_null(st, i);
}

void store_bind_set(sqlite3_stmt *st, int i, char *const *set) {
        if (!set) {
                sqlite3_bind_null(st, i);
                return;
        }
        json_t *a = json_array();
        for (size_t k = 0; set[k]; k++)
                json_array_append_new(a, json_string(set[k]));
        char *text = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        sqlite3_bind_text(st, i, text ?: "[]", -1, SQLITE_TRANSIENT);
        free(text);
}

/* Without a copy (SQLITE_STATIC): the text must stay as it is until the
 * statement's bindings are cleared. The writer's batch binds ~20 texts per
 * run, and a copy and its free each were ~13% of a batch's instructions
 * (docs/internals/performance-log.md "Invoke path: the -c1 tail (round 13)"). */
static void bind_text_uncopied(sqlite3_stmt *st, int i, const char *s) {
        if (s)
                sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, i);
}

void store_run_bind(sqlite3_stmt *st, const RunRecord *r) {
        bind_text_uncopied(st, 1, r->id);
        bind_text_uncopied(st, 2, r->tenant ? r->tenant : "local");
        bind_text_uncopied(st, 3, r->filename);
        bind_text_uncopied(st, 4, r->function);
        bind_text_uncopied(st, 5, r->args_json);
        bind_text_uncopied(st, 6, r->kwargs_json);
        bind_text_uncopied(st, 7, r->status ? r->status : "queued");
        sqlite3_bind_int(st, 8, r->exit_code);
        bind_text_uncopied(st, 9, r->value_json);
        bind_text_uncopied(st, 10, r->value_repr);
        bind_text_uncopied(st, 11, r->error_type);
        bind_text_uncopied(st, 12, r->error_message);
        bind_text_uncopied(st, 13, r->traceback);
        char packed[STORE_TIMINGS_PACKED_MAX];
        size_t packed_len = 0;
        switch (store_timings_pack(r->timings_json, packed, sizeof(packed), &packed_len)) {
        case STORE_TIMINGS_BINARY:
                sqlite3_bind_blob(st, 14, packed, (int) packed_len, SQLITE_TRANSIENT);
                break;
        case STORE_TIMINGS_VALUES:
                sqlite3_bind_text(st, 14, packed, -1, SQLITE_TRANSIENT);
                break;
        case STORE_TIMINGS_AS_IS:
        default:
                bind_text_uncopied(st, 14, r->timings_json);
                break;
        }
        bind_text_uncopied(st, 15, store_log_path_packed(st, r->id, r->log_path));
        sqlite3_bind_int64(st, 16, (sqlite3_int64) r->created);
        sqlite3_bind_int64(st, 17, (sqlite3_int64) r->started);
        sqlite3_bind_int64(st, 18, (sqlite3_int64) r->finished);
        sqlite3_bind_int(st, 19, r->attempt);
        sqlite3_bind_int(st, 20, r->max_attempts > 0 ? r->max_attempts : 1);
        /* ?21 is the caller's (store_run_exec); ?22 and ?23 only the final
         * updates use; ?24..?27 the INSERTs that keep the request's fields
         * (store-queue.c RUN_REQUEST_FIELDS). */
        int n = sqlite3_bind_parameter_count(st);
        if (n >= 22)
                bind_text_uncopied(st, 22, r->outputs_json);
        if (n >= 23)
                bind_text_uncopied(st, 23, r->lock_json);
        if (n >= 27 && r->request_given) {
                sqlite3_bind_int(st, 24, 1);
                bind_text_uncopied(st, 25, r->request_fn_name);
                bind_text_uncopied(st, 26, r->request_idem_key);
                sqlite3_bind_int(st, 27, r->request_has_data);
        }
        /* ?28, ?29: the run's origin, ?30 its limits, which the INSERTs
         * keep. */
        if (n >= 30) {
                if (r->fn_version > 0)
                        sqlite3_bind_int(st, 28, r->fn_version);
                bind_text_uncopied(st, 29, r->schedule);
                bind_text_uncopied(st, 30, r->limits_json);
        }
}

int store_run_exec_locked(Store *s, const char *sql, const RunRecord *r, const char *arg21, bool retry_full) {
        sqlite3_stmt *st = store_stmt(s, sql);
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db);
        if (st) {
                store_run_bind(st, r);
                if (arg21)
                        bind_text_uncopied(st, 21, arg21);
                rc = sqlite3_step(st);
                if (retry_full && (rc & 0xff) == SQLITE_FULL && store_reserve_release(s)) {
                        sqlite3_reset(st);
                        rc = sqlite3_step(st);
                }
                store_stmt_done(s, st);
        }
        int changes = sqlite3_changes(s->db);
        /* Space came back: make the reserve again (looked at every 10 s at
         * most: a statvfs per write would show in profiles). */
        if (rc == SQLITE_DONE && s->reserve_released && now_monotonic() - s->reserve_checked > 10 * USEC_PER_SEC) {
                s->reserve_checked = now_monotonic();
                store_reserve_make(s);
        }
        if (rc != SQLITE_DONE)
                return store_rc_errno(rc);
        return changes;
}

int store_run_exec(Store *s, const char *sql, const RunRecord *r, const char *arg21) {
        store_lock(s);
        int k = store_run_exec_locked(s, sql, r, arg21, true);
        pthread_mutex_unlock(&s->lock);
        return k;
}

char *store_col_text(sqlite3_stmt *st, int i) {
        const unsigned char *t = sqlite3_column_text(st, i);
        return t ? xstrdup((const char *) t) : NULL;
}

RunRecord *store_run_from_row(sqlite3_stmt *st) {
        RunRecord *r = xcalloc(1, sizeof(RunRecord));
        r->id = store_col_text(st, 0);
        r->tenant = store_col_text(st, 1);
        r->filename = store_col_text(st, 2);
        r->function = store_col_text(st, 3);
        r->args_json = store_col_text(st, 4);
        r->kwargs_json = store_col_text(st, 5);
        r->status = store_col_text(st, 6);
        r->exit_code = sqlite3_column_int(st, 7);
        r->value_json = store_col_text(st, 8);
        r->value_repr = store_col_text(st, 9);
        r->error_type = store_col_text(st, 10);
        r->error_message = store_col_text(st, 11);
        r->traceback = store_col_text(st, 12);
        r->timings_json = store_timings_col(st, 13);
        r->log_path = store_log_path_col(st, 14, r->id);
        r->created = (usec_t) sqlite3_column_int64(st, 15);
        r->started = store_time_decode(sqlite3_column_int64(st, 16), r->created);
        r->finished = store_time_decode(sqlite3_column_int64(st, 17), r->created);
        r->attempt = sqlite3_column_int(st, 18);
        r->max_attempts = sqlite3_column_int(st, 19);
        r->outputs_json = store_col_text(st, 20);
        r->fn_name = store_col_text(st, 21);
        r->fn_version = sqlite3_column_int(st, 22);
        r->schedule = store_col_text(st, 23);
        r->limits_json = store_col_text(st, 24);
        return r;
}

int store_kv_get(Store *s, const char *ns, const char *key, char **ret_value) {
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM kv WHERE ns=?1 AND key=?2", -1, &st, NULL);
        int r = -ENOENT;
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, ns);
                store_bind_text(st, 2, key);
                if (sqlite3_step(st) == SQLITE_ROW) {
                        *ret_value = store_col_text(st, 0);
                        r = 0;
                }
                sqlite3_finalize(st);
        } else
                r = store_sqlite_errno(rc);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int store_kv_put(Store *s, const char *ns, const char *key, const char *value) {
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db,
                                    value ? "INSERT INTO kv (ns, key, value, updated) VALUES (?1,?2,?3,?4) "
                                            "ON CONFLICT(ns, key) DO UPDATE SET value=?3, updated=?4"
                                          : "DELETE FROM kv WHERE ns=?1 AND key=?2",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, ns);
                store_bind_text(st, 2, key);
                if (value) {
                        store_bind_text(st, 3, value);
                        sqlite3_bind_int64(st, 4, (sqlite3_int64) now_realtime());
                }
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? 0 : (store_sqlite_errno(rc) ?: -EIO);
}

int store_kv_keys(Store *s, const char *ns, size_t limit, char ***ret_keys) {
        /* ?2 is store_list_ids()'s name, which this listing has none of. */
        return store_list_ids(s, "SELECT key FROM kv WHERE ns=?1 AND ?2 IS NULL ORDER BY updated DESC LIMIT ?3", ns,
                              NULL, limit, ret_keys);
}

int store_kv_prune(Store *s, const char *ns, usec_t before) {
        assert(s && ns);
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "DELETE FROM kv WHERE ns=?1 AND updated < ?2", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, ns);
                sqlite3_bind_int64(st, 2, (sqlite3_int64) before);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? 0 : (store_sqlite_errno(rc) ?: -EIO);
}

int store_list_ids(Store *s, const char *sql, const char *tenant, const char *name, size_t limit, char ***ret) {
        char **v = NULL;
        store_lock(s);
        sqlite3_stmt *st = store_stmt(s, sql);
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db);
        if (st) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                sqlite3_bind_int64(st, 3, (sqlite3_int64) limit);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        _cleanup_free_ char *id = store_col_text(st, 0);
                        v = strv_append(v, id);
                }
                store_stmt_done(s, st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                strv_free(v);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        *ret = v;
        return 0;
}
