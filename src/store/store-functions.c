/* Deployed functions: every deploy of (tenant, name) is a new immutable
 * version; the latest one is what an invoke without a version runs. */
#include <assert.h>

#include "store-internal.h"

#define FN_COLUMNS                                                                                                  \
        "tenant, name, version, filename, function, source, requirements_json, limits_json, description, created, " \
        "params_json, env_json, lock_json"

static FunctionRecord *function_from_row(sqlite3_stmt *st) {
        FunctionRecord *f = xcalloc(1, sizeof(FunctionRecord));
        f->tenant = store_col_text(st, 0);
        f->name = store_col_text(st, 1);
        f->version = sqlite3_column_int(st, 2);
        f->filename = store_col_text(st, 3);
        f->function = store_col_text(st, 4);
        f->source = store_col_text(st, 5);
        f->source_len = f->source ? (size_t) sqlite3_column_bytes(st, 5) : 0;
        f->requirements_json = store_col_text(st, 6);
        f->limits_json = store_col_text(st, 7);
        f->description = store_col_text(st, 8);
        f->created = (usec_t) sqlite3_column_int64(st, 9);
        f->params_json = store_col_text(st, 10);
        f->env_json = store_col_text(st, 11);
        f->lock_json = store_col_text(st, 12);
        return f;
}

int store_tx_begin(Store *s) {
        assert(s);
        store_lock(s);
        /* IMMEDIATE: the write lock is taken now, so two writers (two
         * deploys of one name) never both read the same next version. */
        int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                pthread_mutex_unlock(&s->lock);
                return store_rc_errno(rc);
        }
        return 0;
}

int store_tx_end(Store *s, bool commit) {
        assert(s);
        int rc = commit ? sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) : SQLITE_OK;
        if (!commit || rc != SQLITE_OK)
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_OK ? 0 : store_rc_errno(rc);
}

int store_function_put_in_tx(Store *s, const FunctionRecord *f, int *ret_version) {
        sqlite3_stmt *st = NULL;
        int rc, version;

        if (!f->tenant || !f->name || !f->source)
                return -EINVAL;
        rc = sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(version), 0) FROM functions WHERE tenant=?1 AND name=?2",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                goto fail;
        store_bind_text(st, 1, f->tenant);
        store_bind_text(st, 2, f->name);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                goto fail;
        version = sqlite3_column_int(st, 0) + 1;
        sqlite3_finalize(st);
        st = NULL;

        rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO functions (" FN_COLUMNS ", signature, doc) "
                                "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                goto fail;
        store_bind_text(st, 1, f->tenant);
        store_bind_text(st, 2, f->name);
        sqlite3_bind_int(st, 3, version);
        store_bind_text(st, 4, f->filename ? f->filename : "main.py");
        store_bind_text(st, 5, f->function);
        sqlite3_bind_text(st, 6, f->source, (int) (f->source_len ? f->source_len : strlen(f->source)),
                          SQLITE_TRANSIENT);
        store_bind_text(st, 7, f->requirements_json);
        store_bind_text(st, 8, f->limits_json);
        store_bind_text(st, 9, f->description);
        sqlite3_bind_int64(st, 10, (sqlite3_int64) (f->created ? f->created : now_realtime()));
        store_bind_text(st, 11, f->params_json);
        store_bind_text(st, 12, f->env_json);
        store_bind_text(st, 13, f->lock_json);
        store_bind_text(st, 14, f->signature);
        store_bind_text(st, 15, f->doc);
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                goto fail;
        sqlite3_finalize(st);
        *ret_version = version;
        return 0;
fail:
        sqlite3_finalize(st);
        return store_rc_errno(rc);
}

int store_function_put(Store *s, const FunctionRecord *f, int *ret_version) {
        int version = 0;
        int k = store_tx_begin(s);
        if (k < 0)
                return k;
        k = store_function_put_in_tx(s, f, &version);
        int e = store_tx_end(s, k >= 0);
        if (k < 0)
                return k;
        if (e < 0)
                return e;
        *ret_version = version;
        return 0;
}

/* The SELECTs of a get, one per shape: store_stmt() and store_read()
 * cache statements by the SQL's address. */
static const char fn_get_latest_sql[] = "SELECT " FN_COLUMNS " FROM functions WHERE tenant=?1 AND name=?2 "
                                        "ORDER BY version DESC LIMIT 1";
static const char fn_get_version_sql[] = "SELECT " FN_COLUMNS
                                         " FROM functions WHERE tenant=?1 AND name=?2 AND version=?3";

/* store_function_get() on the read connection, or with in_tx on the write
 * connection with s->lock held (store_function_get_in_tx()). */
static int function_get(Store *s, bool in_tx, const char *tenant, const char *name, int version, FunctionRecord **ret) {
        assert(s && ret);
        FunctionRecord *f = NULL;
        const char *sql = version > 0 ? fn_get_version_sql : fn_get_latest_sql;
        sqlite3_stmt *st = in_tx ? store_stmt(s, sql) : store_read(s, sql);
        int rc = st ? SQLITE_OK : in_tx ? sqlite3_errcode(s->db) : SQLITE_IOERR;
        if (st) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                if (version > 0)
                        sqlite3_bind_int(st, 3, version);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        f = function_from_row(st);
                if (in_tx)
                        store_stmt_done(s, st);
                else
                        store_read_done(s, st);
        }
        if (f) {
                *ret = f;
                return 0;
        }
        return rc == SQLITE_DONE ? -ENOENT : (store_sqlite_errno(rc) ?: -EIO);
}

int store_function_get(Store *s, const char *tenant, const char *name, int version, FunctionRecord **ret) {
        /* Every invoke looks its function up: on the read connection. */
        return function_get(s, false, tenant, name, version, ret);
}

int store_function_get_in_tx(Store *s, const char *tenant, const char *name, FunctionRecord **ret) {
        assert(tenant && name);
        /* The write connection, whose transaction holds the write lock:
         * what it reads no other writer can change before the commit. */
        return function_get(s, true, tenant, name, 0, ret);
}

int store_function_describe(Store *s, const char *tenant, const char *name, int version, char **ret_signature,
                            char **ret_doc) {
        assert(s && tenant && name && version > 0 && ret_signature && ret_doc);
        /* Not FN_COLUMNS: a get (every invoke's) never reads these two. */
        sqlite3_stmt *st = store_read(
                s, "SELECT signature, doc FROM functions WHERE tenant=?1 AND name=?2 AND version=?3");
        if (!st)
                return -EIO;
        store_bind_text(st, 1, tenant);
        store_bind_text(st, 2, name);
        sqlite3_bind_int(st, 3, version);
        int rc = sqlite3_step(st);
        char *sig = rc == SQLITE_ROW ? store_col_text(st, 0) : NULL;
        char *doc = rc == SQLITE_ROW ? store_col_text(st, 1) : NULL;
        store_read_done(s, st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -ENOENT : (store_sqlite_errno(rc) ?: -EIO);
        *ret_signature = sig;
        *ret_doc = doc;
        return 0;
}

int store_function_list(Store *s, const char *tenant, FunctionRecord ***ret, size_t *ret_n) {
        sqlite3_stmt *st;
        FunctionRecord **v = NULL;
        size_t n = 0;
        int rc;

        store_lock(s);
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT " FN_COLUMNS " FROM functions f WHERE tenant=?1 AND version = "
                                "(SELECT MAX(version) FROM functions g WHERE g.tenant=f.tenant AND g.name=f.name) "
                                "ORDER BY name",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof(FunctionRecord *));
                        v[n++] = function_from_row(st);
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                function_record_list_free(v, n);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int store_function_code_bytes(Store *s, const char *tenant, uint64_t *ret) {
        sqlite3_stmt *st;
        int rc;
        uint64_t total = 0;

        assert(s && tenant && ret);
        store_lock(s);
        /* length() of a BLOB is its bytes; of TEXT, its characters. */
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT COALESCE(SUM(length(CAST(source AS BLOB))), 0) FROM functions WHERE tenant=?1",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        total = (uint64_t) sqlite3_column_int64(st, 0);
                        rc = SQLITE_DONE;
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        *ret = total;
        return 0;
}

int store_function_versions(Store *s, const char *tenant, const char *name, int **ret, size_t *ret_n) {
        sqlite3_stmt *st;
        int *v = NULL;
        size_t n = 0;
        int rc;

        store_lock(s);
        rc = sqlite3_prepare_v2(s->db, "SELECT version FROM functions WHERE tenant=?1 AND name=?2 ORDER BY version",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof(int));
                        v[n++] = sqlite3_column_int(st, 0);
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                free(v);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        if (n == 0)
                return -ENOENT;
        *ret = v;
        *ret_n = n;
        return 0;
}

int store_function_delete_in_tx(Store *s, const char *tenant, const char *name) {
        sqlite3_stmt *st;
        int rc, changes = 0;

        rc = sqlite3_prepare_v2(s->db, "DELETE FROM functions WHERE tenant=?1 AND name=?2", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
                changes = sqlite3_changes(s->db);
        }
        /* Its aliases go with it: a new deploy of the name starts again
         * at version 1, which an old alias must not name. */
        if (rc == SQLITE_DONE) {
                rc = sqlite3_prepare_v2(s->db, "DELETE FROM function_aliases WHERE tenant=?1 AND name=?2", -1, &st,
                                        NULL);
                if (rc == SQLITE_OK) {
                        store_bind_text(st, 1, tenant);
                        store_bind_text(st, 2, name);
                        rc = sqlite3_step(st);
                        sqlite3_finalize(st);
                }
        }
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        return changes > 0 ? 0 : -ENOENT;
}

int store_function_delete(Store *s, const char *tenant, const char *name) {
        store_lock(s);
        int k = store_function_delete_in_tx(s, tenant, name);
        pthread_mutex_unlock(&s->lock);
        return k;
}

int store_function_delete_version(Store *s, const char *tenant, const char *name, int version) {
        assert(s && tenant && name && version > 0);
        sqlite3_stmt *st;
        int rc, changes = 0, latest = 0, aliased = 0;
        store_lock(s);
        /* One statement: the latest cannot become this version between a
         * check and the delete (a version is only ever added above it),
         * nor an alias come to point at it (s->lock orders the writes). */
        rc = sqlite3_prepare_v2(s->db,
                                "DELETE FROM functions WHERE tenant=?1 AND name=?2 AND version=?3 AND version < "
                                "(SELECT MAX(version) FROM functions WHERE tenant=?1 AND name=?2) AND NOT EXISTS "
                                "(SELECT 1 FROM function_aliases WHERE tenant=?1 AND name=?2 AND version=?3)",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                sqlite3_bind_int(st, 3, version);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
                changes = sqlite3_changes(s->db);
        }
        /* Nothing deleted: tell "no such version" from "the latest" and
         * from "an alias points at it". */
        if (rc == SQLITE_DONE && changes == 0) {
                rc = sqlite3_prepare_v2(s->db,
                                        "SELECT MAX(version), EXISTS (SELECT 1 FROM functions WHERE tenant=?1 AND "
                                        "name=?2 AND version=?3), EXISTS (SELECT 1 FROM function_aliases WHERE "
                                        "tenant=?1 AND name=?2 AND version=?3) FROM functions WHERE tenant=?1 AND "
                                        "name=?2",
                                        -1, &st, NULL);
                if (rc == SQLITE_OK) {
                        store_bind_text(st, 1, tenant);
                        store_bind_text(st, 2, name);
                        sqlite3_bind_int(st, 3, version);
                        rc = sqlite3_step(st);
                        if (rc == SQLITE_ROW) {
                                latest = sqlite3_column_int(st, 0);
                                aliased = sqlite3_column_int(st, 1) && sqlite3_column_int(st, 2);
                                rc = SQLITE_DONE;
                        }
                        sqlite3_finalize(st);
                }
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        if (changes > 0)
                return 0;
        return latest == version ? -EBUSY : aliased ? -EMLINK : -ENOENT;
}

int store_function_lock_update(Store *s, const char *tenant, const char *name, int version, const char *old_lock,
                               const char *new_lock) {
        assert(s && tenant && name && version > 0 && old_lock && new_lock);
        sqlite3_stmt *st;
        int rc, changes = 0;
        store_lock(s);
        rc = sqlite3_prepare_v2(s->db,
                                "UPDATE functions SET lock_json=?5 WHERE tenant=?1 AND name=?2 AND version=?3 "
                                "AND lock_json=?4",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                sqlite3_bind_int(st, 3, version);
                store_bind_text(st, 4, old_lock);
                store_bind_text(st, 5, new_lock);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
                changes = sqlite3_changes(s->db);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        return changes > 0 ? 0 : -ESTALE;
}

/* ---- aliases (store.h "FunctionAlias") ------------------------------------ */

void function_alias_done(FunctionAlias *a) {
        free(a->alias);
        free(a->description);
        a->alias = a->description = NULL;
}

void function_alias_list_free(FunctionAlias *v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                function_alias_done(&v[i]);
        free(v);
}

static void alias_from_row(sqlite3_stmt *st, FunctionAlias *ret) {
        ret->alias = store_col_text(st, 0);
        ret->version = sqlite3_column_int(st, 1);
        ret->description = store_col_text(st, 2) ?: xstrdup("");
        ret->updated = (usec_t) sqlite3_column_int64(st, 3);
}

int store_function_alias_put(Store *s, const char *tenant, const char *name, const char *alias, int version,
                             const char *description, AliasPut mode, bool *ret_created) {
        assert(s && tenant && name && alias && version > 0);
        sqlite3_stmt *st;
        int rc, exists = 0, there = 0;
        store_lock(s);
        /* Under s->lock: no version delete comes between the check and
         * the write (store_function_delete_version() takes it too). */
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT EXISTS (SELECT 1 FROM functions WHERE tenant=?1 AND name=?2 AND version=?4), "
                                "EXISTS (SELECT 1 FROM function_aliases WHERE tenant=?1 AND name=?2 AND alias=?3)",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                store_bind_text(st, 3, alias);
                sqlite3_bind_int(st, 4, version);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        exists = sqlite3_column_int(st, 0);
                        there = sqlite3_column_int(st, 1);
                        rc = SQLITE_DONE;
                }
                sqlite3_finalize(st);
        }
        int k = rc != SQLITE_DONE                    ? store_sqlite_errno(rc) ?: -EIO
                : !exists                            ? -ENOENT
                : there && mode == ALIAS_PUT_CREATE  ? -EEXIST
                : !there && mode == ALIAS_PUT_UPDATE ? -ESRCH
                                                     : 0;
        if (k >= 0) {
                rc = sqlite3_prepare_v2(s->db,
                                        "INSERT OR REPLACE INTO function_aliases (tenant, name, alias, version, "
                                        "description, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                        -1, &st, NULL);
                if (rc == SQLITE_OK) {
                        store_bind_text(st, 1, tenant);
                        store_bind_text(st, 2, name);
                        store_bind_text(st, 3, alias);
                        sqlite3_bind_int(st, 4, version);
                        store_bind_text(st, 5, description ?: "");
                        sqlite3_bind_int64(st, 6, (sqlite3_int64) now_realtime());
                        rc = sqlite3_step(st);
                        sqlite3_finalize(st);
                }
                if (rc != SQLITE_DONE)
                        k = store_sqlite_errno(rc) ?: -EIO;
        }
        pthread_mutex_unlock(&s->lock);
        if (k >= 0 && ret_created)
                *ret_created = !there;
        return k;
}

int store_function_alias_get(Store *s, const char *tenant, const char *name, const char *alias, FunctionAlias *ret) {
        assert(s && tenant && name && alias && ret);
        sqlite3_stmt *st;
        int rc;
        store_lock(s);
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT alias, version, description, updated FROM function_aliases WHERE tenant=?1 "
                                "AND name=?2 AND alias=?3",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                store_bind_text(st, 3, alias);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        alias_from_row(st, ret);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc == SQLITE_ROW)
                return 0;
        return rc == SQLITE_DONE ? -ENOENT : store_sqlite_errno(rc) ?: -EIO;
}

int store_function_alias_list(Store *s, const char *tenant, const char *name, FunctionAlias **ret, size_t *ret_n) {
        assert(s && tenant && name && ret && ret_n);
        sqlite3_stmt *st;
        FunctionAlias *v = NULL;
        size_t n = 0;
        int rc;
        store_lock(s);
        rc = sqlite3_prepare_v2(s->db,
                                "SELECT alias, version, description, updated FROM function_aliases WHERE tenant=?1 "
                                "AND name=?2 ORDER BY alias",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof(FunctionAlias));
                        alias_from_row(st, &v[n++]);
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                function_alias_list_free(v, n);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int store_function_alias_delete(Store *s, const char *tenant, const char *name, const char *alias) {
        assert(s && tenant && name && alias);
        sqlite3_stmt *st;
        int rc, changes = 0;
        store_lock(s);
        rc = sqlite3_prepare_v2(s->db, "DELETE FROM function_aliases WHERE tenant=?1 AND name=?2 AND alias=?3", -1, &st,
                                NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                store_bind_text(st, 3, alias);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
                changes = sqlite3_changes(s->db);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        return changes > 0 ? 0 : -ENOENT;
}

/* ---- the SQLite FunctionStore (store.h): the calls above ---------------- */

typedef struct SqliteFunctions {
        FunctionStore base;
        Store *store;
} SqliteFunctions;

static Store *fs_store(FunctionStore *fs) {
        return ((SqliteFunctions *) fs)->store;
}
static int sf_put(FunctionStore *fs, const FunctionRecord *f, int *ret_version) {
        return store_function_put(fs_store(fs), f, ret_version);
}
static int sf_get(FunctionStore *fs, const char *tenant, const char *name, int version, FunctionRecord **ret) {
        return store_function_get(fs_store(fs), tenant, name, version, ret);
}
static int sf_describe(FunctionStore *fs, const char *tenant, const char *name, int version, char **ret_signature,
                       char **ret_doc) {
        return store_function_describe(fs_store(fs), tenant, name, version, ret_signature, ret_doc);
}
static int sf_list(FunctionStore *fs, const char *tenant, FunctionRecord ***ret, size_t *ret_n) {
        return store_function_list(fs_store(fs), tenant, ret, ret_n);
}
static int sf_versions(FunctionStore *fs, const char *tenant, const char *name, int **ret, size_t *ret_n) {
        return store_function_versions(fs_store(fs), tenant, name, ret, ret_n);
}
static int sf_remove(FunctionStore *fs, const char *tenant, const char *name) {
        return store_function_delete(fs_store(fs), tenant, name);
}
static int sf_remove_version(FunctionStore *fs, const char *tenant, const char *name, int version) {
        return store_function_delete_version(fs_store(fs), tenant, name, version);
}
static int sf_url_put(FunctionStore *fs, const char *tenant, const char *name, int mode) {
        return store_endpoint_put(fs_store(fs), tenant, name, mode);
}
static int sf_url_get(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode) {
        return store_endpoint_get(fs_store(fs), tenant, name, ret_mode);
}
static int sf_url_cors_put(FunctionStore *fs, const char *tenant, const char *name, const char *cors_json) {
        return store_endpoint_cors_put(fs_store(fs), tenant, name, cors_json);
}
static int sf_url_cors_get(FunctionStore *fs, const char *tenant, const char *name, int *ret_mode,
                           char **ret_cors_json) {
        return store_endpoint_cors_get(fs_store(fs), tenant, name, ret_mode, ret_cors_json);
}
static int sf_lock_update(FunctionStore *fs, const char *tenant, const char *name, int version, const char *old_lock,
                          const char *new_lock) {
        return store_function_lock_update(fs_store(fs), tenant, name, version, old_lock, new_lock);
}
static int sf_code_bytes(FunctionStore *fs, const char *tenant, uint64_t *ret) {
        return store_function_code_bytes(fs_store(fs), tenant, ret);
}
static int sf_alias_put(FunctionStore *fs, const char *tenant, const char *name, const char *alias, int version,
                        const char *description, AliasPut mode, bool *ret_created) {
        return store_function_alias_put(fs_store(fs), tenant, name, alias, version, description, mode, ret_created);
}
static int sf_alias_get(FunctionStore *fs, const char *tenant, const char *name, const char *alias,
                        FunctionAlias *ret) {
        return store_function_alias_get(fs_store(fs), tenant, name, alias, ret);
}
static int sf_alias_list(FunctionStore *fs, const char *tenant, const char *name, FunctionAlias **ret, size_t *ret_n) {
        return store_function_alias_list(fs_store(fs), tenant, name, ret, ret_n);
}
static int sf_alias_delete(FunctionStore *fs, const char *tenant, const char *name, const char *alias) {
        return store_function_alias_delete(fs_store(fs), tenant, name, alias);
}
static void sf_free(FunctionStore *fs) {
        free(fs);
}

static const FunctionStoreOps sqlite_function_ops = {
        .name = "sqlite",
        .put = sf_put,
        .get = sf_get,
        .describe = sf_describe,
        .list = sf_list,
        .versions = sf_versions,
        .remove = sf_remove,
        .remove_version = sf_remove_version,
        .url_put = sf_url_put,
        .url_get = sf_url_get,
        .url_cors_put = sf_url_cors_put,
        .url_cors_get = sf_url_cors_get,
        .lock_update = sf_lock_update,
        .code_bytes = sf_code_bytes,
        .alias_put = sf_alias_put,
        .alias_get = sf_alias_get,
        .alias_list = sf_alias_list,
        .alias_delete = sf_alias_delete,
        .free = sf_free,
};

FunctionStore *function_store_sqlite_new(Store *s) {
        SqliteFunctions *f = xcalloc(1, sizeof(SqliteFunctions));
        f->base.ops = &sqlite_function_ops;
        f->store = s;
        return &f->base;
}
