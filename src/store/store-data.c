/* The data catalog: datasets (tenant, name) and their versions. A version
 * is a content hash; the bytes live in the data module's object store, so
 * several versions (and tenants) may share one content. */
#include <assert.h>
#include <sqlite3.h>

#include "store-internal.h"

DatasetRecord *dataset_record_free(DatasetRecord *d) {
        if (!d)
                return NULL;
        free(d->tenant);
        free(d->name);
        free(d->kind);
        free(d->source);
        free(d->etag);
        free(d->last_modified);
        free(d->hash);
        free(d);
        return NULL;
}

void dataset_record_list_free(DatasetRecord **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                dataset_record_free(v[i]);
        free(v);
}

void dataset_version_list_free(DatasetVersion *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i].hash);
        free(v);
}

#define DS_SELECT                                                                                            \
        "SELECT d.tenant, d.name, d.kind, d.source, d.current, d.etag, d.last_modified, d.checked, d.created, " \
        "v.hash, v.size, v.files, (SELECT COUNT(*) FROM dataset_versions c WHERE c.tenant=d.tenant AND "   \
        "c.name=d.name) FROM datasets d LEFT JOIN dataset_versions v ON v.tenant=d.tenant AND "             \
        "v.name=d.name AND v.version=d.current "

static DatasetRecord *dataset_from_row(sqlite3_stmt *st) {
        DatasetRecord *d = xcalloc(1, sizeof(DatasetRecord));
        d->tenant = store_col_text(st, 0);
        d->name = store_col_text(st, 1);
        d->kind = store_col_text(st, 2);
        d->source = store_col_text(st, 3);
        d->current = sqlite3_column_int(st, 4);
        d->etag = store_col_text(st, 5);
        d->last_modified = store_col_text(st, 6);
        d->checked = (usec_t) sqlite3_column_int64(st, 7);
        d->created = (usec_t) sqlite3_column_int64(st, 8);
        d->hash = store_col_text(st, 9);
        d->size = (uint64_t) sqlite3_column_int64(st, 10);
        d->files = (uint64_t) sqlite3_column_int64(st, 11);
        d->n_versions = sqlite3_column_int(st, 12);
        return d;
}

int store_dataset_get(Store *s, const char *tenant, const char *name, DatasetRecord **ret) {
        sqlite3_stmt *st;
        DatasetRecord *d = NULL;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, DS_SELECT "WHERE d.tenant=?1 AND d.name=?2", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant ? tenant : "local");
                store_bind_text(st, 2, name);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        d = dataset_from_row(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (!d)
                return rc == SQLITE_DONE ? -ENOENT : store_rc_errno(rc);
        *ret = d;
        return 0;
}

int store_dataset_list(Store *s, const char *tenant, DatasetRecord ***ret, size_t *ret_n) {
        sqlite3_stmt *st;
        DatasetRecord **v = NULL;
        size_t n = 0;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, DS_SELECT "WHERE d.tenant=?1 ORDER BY d.name", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant ? tenant : "local");
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof(*v));
                        v[n++] = dataset_from_row(st);
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                dataset_record_list_free(v, n);
                return store_rc_errno(rc);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int store_dataset_put(Store *s, const DatasetRecord *d) {
        if (!d->name || !d->kind || !d->source)
                return -EINVAL;
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db,
                                    "INSERT INTO datasets (tenant, name, kind, source, etag, last_modified, checked, created) "
                                    "VALUES (?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT (tenant, name) DO UPDATE SET "
                                    "kind=excluded.kind, source=excluded.source, etag=excluded.etag, "
                                    "last_modified=excluded.last_modified, checked=excluded.checked",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, d->tenant ? d->tenant : "local");
                store_bind_text(st, 2, d->name);
                store_bind_text(st, 3, d->kind);
                store_bind_text(st, 4, d->source);
                store_bind_text(st, 5, d->etag);
                store_bind_text(st, 6, d->last_modified);
                sqlite3_bind_int64(st, 7, (sqlite3_int64) d->checked);
                sqlite3_bind_int64(st, 8, (sqlite3_int64) (d->created ? d->created : now_realtime()));
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

/* One statement with text/int binds (?1..?3 text, ?4 integer; binds a
 * statement does not use are ignored), run to completion; the first result
 * column (an integer) goes to *ret_int when ret_int is given and a row
 * came. Called with the lock held. */
static int step_one(Store *s, const char *sql, const char *t1, const char *t2, const char *t3, int64_t i4,
                    int64_t *ret_int, bool *ret_row) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_rc_errno(rc);
        store_bind_text(st, 1, t1);
        store_bind_text(st, 2, t2);
        store_bind_text(st, 3, t3);
        sqlite3_bind_int64(st, 4, i4);
        bool row = false;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (!row && ret_int)
                        *ret_int = sqlite3_column_int64(st, 0);
                row = true;
        }
        sqlite3_finalize(st);
        if (ret_row)
                *ret_row = row;
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

/* kv's namespace of each (tenant, name)'s highest version ever,
 * "TENANT/NAME" (neither holds a '/'). */
#define DATASET_LAST_NS "dataset-last-version"

int store_dataset_add_version(Store *s, const char *tenant, const char *name, const char *hash, uint64_t size,
                              uint64_t files, int *ret_version, bool *ret_new) {
        const char *t = tenant ? tenant : "local";
        int64_t version = 0;
        bool row = false, is_new = false;
        store_lock(s);
        /* IMMEDIATE: two concurrent puts of one name must not take the same
         * number. */
        int r = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EBUSY;
        if (r < 0)
                goto out;
        r = step_one(s, "SELECT version FROM dataset_versions WHERE tenant=?1 AND name=?2 AND hash=?3 "
                        "ORDER BY version DESC LIMIT 1",
                     t, name, hash, 0, &version, &row);
        if (r < 0)
                goto rollback;
        if (!row) {
                /* Past every number the name ever had: a removed version's
                 * number (or a removed dataset's) is never handed out again,
                 * so NAME@N names one content for good (a pipeline pinned to
                 * it, a memoised DAG task's output). The highest is kept in
                 * kv, which `data rm` does not touch. */
                _cleanup_free_ char *key = xasprintf("%s/%s", t, name);
                r = step_one(s,
                             "SELECT MAX(COALESCE((SELECT CAST(value AS INTEGER) FROM kv WHERE ns='" DATASET_LAST_NS
                             "' AND key=?3), 0), COALESCE((SELECT MAX(version) FROM dataset_versions WHERE "
                             "tenant=?1 AND name=?2), 0)) + 1",
                             t, name, key, 0, &version, NULL);
                if (r >= 0)
                        r = step_one(s,
                                     "INSERT INTO kv (ns, key, value, updated) VALUES ('" DATASET_LAST_NS
                                     "', ?3, CAST(?4 AS TEXT), CAST(strftime('%s','now') AS INTEGER) * 1000000) "
                                     "ON CONFLICT (ns, key) DO UPDATE SET value=excluded.value, "
                                     "updated=excluded.updated",
                                     t, name, key, version, NULL, NULL);
                if (r < 0)
                        goto rollback;
                sqlite3_stmt *st;
                int rc = sqlite3_prepare_v2(s->db,
                                            "INSERT INTO dataset_versions (tenant, name, version, hash, size, files, "
                                            "created) VALUES (?1,?2,?3,?4,?5,?6,?7)",
                                            -1, &st, NULL);
                if (rc == SQLITE_OK) {
                        store_bind_text(st, 1, t);
                        store_bind_text(st, 2, name);
                        sqlite3_bind_int64(st, 3, version);
                        store_bind_text(st, 4, hash);
                        sqlite3_bind_int64(st, 5, (sqlite3_int64) size);
                        sqlite3_bind_int64(st, 6, (sqlite3_int64) files);
                        sqlite3_bind_int64(st, 7, (sqlite3_int64) now_realtime());
                        rc = sqlite3_step(st);
                        sqlite3_finalize(st);
                }
                if (rc != SQLITE_DONE) {
                        r = store_rc_errno(rc);
                        goto rollback;
                }
                is_new = true;
        }
        r = step_one(s, "UPDATE datasets SET current=?4 WHERE tenant=?1 AND name=?2", t, name, NULL, version,
                     NULL, NULL);
        if (r < 0)
                goto rollback;
        if (sqlite3_changes(s->db) == 0) {
                r = -ENOENT;
                goto rollback;
        }
        if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
                r = -EIO;
                goto rollback;
        }
        pthread_mutex_unlock(&s->lock);
        *ret_version = (int) version;
        if (ret_new)
                *ret_new = is_new;
        return 0;
rollback:
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
        pthread_mutex_unlock(&s->lock);
        return r;
}

int store_dataset_versions(Store *s, const char *tenant, const char *name, DatasetVersion **ret, size_t *ret_n) {
        sqlite3_stmt *st;
        DatasetVersion *v = NULL;
        size_t n = 0;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT version, hash, size, files, created FROM dataset_versions WHERE tenant=?1 "
                                    "AND name=?2 ORDER BY version",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant ? tenant : "local");
                store_bind_text(st, 2, name);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof(*v));
                        v[n] = (DatasetVersion) {
                                .version = sqlite3_column_int(st, 0),
                                .hash = store_col_text(st, 1),
                                .size = (uint64_t) sqlite3_column_int64(st, 2),
                                .files = (uint64_t) sqlite3_column_int64(st, 3),
                                .created = (usec_t) sqlite3_column_int64(st, 4),
                        };
                        n++;
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                dataset_version_list_free(v, n);
                return store_rc_errno(rc);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int store_dataset_version_get(Store *s, const char *tenant, const char *name, int version, DatasetVersion *ret) {
        sqlite3_stmt *st;
        DatasetVersion v = {};
        bool found = false;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db,
                                    version > 0 ? "SELECT version, hash, size, files, created FROM dataset_versions "
                                                  "WHERE tenant=?1 AND name=?2 AND version=?3"
                                                : "SELECT v.version, v.hash, v.size, v.files, v.created FROM datasets d "
                                                  "JOIN dataset_versions v ON v.tenant=d.tenant AND v.name=d.name AND "
                                                  "v.version=d.current WHERE d.tenant=?1 AND d.name=?2",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant ? tenant : "local");
                store_bind_text(st, 2, name);
                if (version > 0)
                        sqlite3_bind_int(st, 3, version);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        found = true;
                        v = (DatasetVersion) {
                                .version = sqlite3_column_int(st, 0),
                                .hash = store_col_text(st, 1),
                                .size = (uint64_t) sqlite3_column_int64(st, 2),
                                .files = (uint64_t) sqlite3_column_int64(st, 3),
                                .created = (usec_t) sqlite3_column_int64(st, 4),
                        };
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (!found)
                return rc == SQLITE_DONE ? -ENOENT : store_rc_errno(rc);
        *ret = v;
        return 0;
}

int store_dataset_delete(Store *s, const char *tenant, const char *name, int version) {
        const char *t = tenant ? tenant : "local";
        bool row = false;
        store_lock(s);
        int r = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EBUSY;
        if (r < 0)
                goto out;
        r = step_one(s, "SELECT 1 FROM datasets WHERE tenant=?1 AND name=?2", t, name, NULL, 0, NULL, &row);
        if (r < 0)
                goto rollback;
        if (!row) {
                r = -ENOENT;
                goto rollback;
        }
        if (version <= 0) {
                r = step_one(s, "DELETE FROM dataset_versions WHERE tenant=?1 AND name=?2", t, name, NULL, 0,
                             NULL, NULL);
                if (r >= 0)
                        r = step_one(s, "DELETE FROM datasets WHERE tenant=?1 AND name=?2", t, name, NULL, 0,
                                     NULL, NULL);
                if (r < 0)
                        goto rollback;
        } else {
                r = step_one(s, "DELETE FROM dataset_versions WHERE tenant=?1 AND name=?2 AND version=?4", t,
                             name, NULL, version, NULL, NULL);
                if (r < 0)
                        goto rollback;
                if (sqlite3_changes(s->db) == 0) {
                        r = -ENOENT;
                        goto rollback;
                }
                /* The current version went: the newest remaining takes over
                 * (0 when none is left; the dataset row stays, empty). */
                r = step_one(s, "UPDATE datasets SET current=(SELECT COALESCE(MAX(version), 0) FROM dataset_versions "
                                "WHERE tenant=?1 AND name=?2) WHERE tenant=?1 AND name=?2 AND current=?4",
                             t, name, NULL, version, NULL, NULL);
                if (r < 0)
                        goto rollback;
        }
        if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
                r = -EIO;
                goto rollback;
        }
        pthread_mutex_unlock(&s->lock);
        return 0;
rollback:
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
        pthread_mutex_unlock(&s->lock);
        return r;
}

int store_dataset_hash_refs(Store *s, const char *hash, uint64_t *ret_count) {
        int64_t n = 0;
        store_lock(s);
        int r = step_one(s, "SELECT COUNT(*) FROM dataset_versions WHERE hash=?1", hash, NULL, NULL, 0, &n,
                         NULL);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
                return r;
        *ret_count = (uint64_t) n;
        return 0;
}

int store_dataset_tenant_bytes(Store *s, const char *tenant, const char *extra_hash, uint64_t extra_size,
                               uint64_t *ret) {
        int64_t total = 0;
        bool row = false;
        const char *t = tenant ? tenant : "local";
        store_lock(s);
        int r = step_one(s, "SELECT COALESCE(SUM(size), 0) FROM (SELECT hash, MAX(size) AS size FROM dataset_versions "
                            "WHERE tenant=?1 GROUP BY hash)",
                         t, NULL, NULL, 0, &total, NULL);
        if (r >= 0 && extra_hash)
                r = step_one(s, "SELECT 1 FROM dataset_versions WHERE tenant=?1 AND hash=?2 LIMIT 1", t,
                             extra_hash, NULL, 0, NULL, &row);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
                return r;
        if (extra_hash && !row)
                total += (int64_t) extra_size;
        *ret = (uint64_t) total;
        return 0;
}

/* ---- where a dataset is used ---------------------------------------------- */

void dataset_run_use_list_free(DatasetRunUse *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(v[i].run_id);
                free(v[i].status);
                free(v[i].function);
                free(v[i].fn_name);
                free(v[i].ref);
                free(v[i].dag_id);
                free(v[i].task);
        }
        free(v);
}

/* A ref names the dataset as "NAME" or "NAME@VERSION" (data_parse_ref). */
#define REF_MATCHES(col) "(" col " = ?2 OR substr(" col ", 1, length(?2) + 1) = ?2 || '@')"

int store_dataset_runs(Store *s, const char *tenant, const char *name, size_t limit, DatasetRunUse **ret,
                       size_t *ret_n) {
        assert(s && tenant && name && ret && ret_n);
        store_runs_settle(s);
        sqlite3_stmt *st;
        store_lock(s);
        /* runs_data (tenant, created) holds only runs that mounted something:
         * the scan walks those newest first and stops at the limit. */
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT r.id, r.status, r.function, r.fn_name, j.value, t.dag_id, t.name, r.created "
                                    "FROM runs r JOIN json_each(r.data_json) j "
                                    "LEFT JOIN dag_tasks t ON t.run_id = r.id "
                                    "WHERE r.tenant = ?1 AND r.data_json IS NOT NULL AND json_valid(r.data_json) AND "
                                    REF_MATCHES("j.value") " ORDER BY r.created DESC, r.id DESC LIMIT ?3",
                                    -1, &st, NULL);
        if (rc != SQLITE_OK) {
                pthread_mutex_unlock(&s->lock);
                return store_sqlite_errno(rc);
        }
        store_bind_text(st, 1, tenant);
        store_bind_text(st, 2, name);
        sqlite3_bind_int64(st, 3, (sqlite3_int64) limit);
        DatasetRunUse *v = NULL;
        size_t n = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                v = xrealloc(v, (n + 1) * sizeof(DatasetRunUse));
                v[n++] = (DatasetRunUse) {
                        .run_id = store_col_text(st, 0),
                        .status = store_col_text(st, 1),
                        .function = store_col_text(st, 2),
                        .fn_name = store_col_text(st, 3),
                        .ref = store_col_text(st, 4),
                        .dag_id = store_col_text(st, 5),
                        .task = store_col_text(st, 6),
                        .created = (usec_t) sqlite3_column_int64(st, 7),
                };
        }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                dataset_run_use_list_free(v, n);
                return store_sqlite_errno(rc) ?: -EIO;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- the SQLite DatasetStore (store.h): the calls above ------------------ */

typedef struct SqliteDatasets {
        DatasetStore base;
        Store *store;
} SqliteDatasets;

static Store *ds_store(DatasetStore *ds) {
        return ((SqliteDatasets *) ds)->store;
}
static int sd_get(DatasetStore *ds, const char *tenant, const char *name, DatasetRecord **ret) {
        return store_dataset_get(ds_store(ds), tenant, name, ret);
}
static int sd_list(DatasetStore *ds, const char *tenant, DatasetRecord ***ret, size_t *ret_n) {
        return store_dataset_list(ds_store(ds), tenant, ret, ret_n);
}
static int sd_put(DatasetStore *ds, const DatasetRecord *d) {
        return store_dataset_put(ds_store(ds), d);
}
static int sd_add_version(DatasetStore *ds, const char *tenant, const char *name, const char *hash, uint64_t size,
                          uint64_t files, int *ret_version, bool *ret_new) {
        return store_dataset_add_version(ds_store(ds), tenant, name, hash, size, files, ret_version, ret_new);
}
static int sd_versions(DatasetStore *ds, const char *tenant, const char *name, DatasetVersion **ret, size_t *ret_n) {
        return store_dataset_versions(ds_store(ds), tenant, name, ret, ret_n);
}
static int sd_version_get(DatasetStore *ds, const char *tenant, const char *name, int version, DatasetVersion *ret) {
        return store_dataset_version_get(ds_store(ds), tenant, name, version, ret);
}
static int sd_remove(DatasetStore *ds, const char *tenant, const char *name, int version) {
        return store_dataset_delete(ds_store(ds), tenant, name, version);
}
static int sd_hash_refs(DatasetStore *ds, const char *hash, uint64_t *ret_count) {
        return store_dataset_hash_refs(ds_store(ds), hash, ret_count);
}
static int sd_tenant_bytes(DatasetStore *ds, const char *tenant, const char *extra_hash, uint64_t extra_size,
                           uint64_t *ret) {
        return store_dataset_tenant_bytes(ds_store(ds), tenant, extra_hash, extra_size, ret);
}
static void sd_free(DatasetStore *ds) {
        free(ds);
}

static const DatasetStoreOps sqlite_dataset_ops = {
        .name = "sqlite",
        .get = sd_get,
        .list = sd_list,
        .put = sd_put,
        .add_version = sd_add_version,
        .versions = sd_versions,
        .version_get = sd_version_get,
        .remove = sd_remove,
        .hash_refs = sd_hash_refs,
        .tenant_bytes = sd_tenant_bytes,
        .free = sd_free,
};

DatasetStore *dataset_store_sqlite_new(Store *s) {
        SqliteDatasets *d = xcalloc(1, sizeof(SqliteDatasets));
        d->base.ops = &sqlite_dataset_ops;
        d->store = s;
        return &d->base;
}
