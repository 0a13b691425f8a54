/* Deployed functions' HTTP endpoints (docs/endpoints.md): whether a
 * function answers at /fn/{tenant}/{name}, and to whom. Kept beside the
 * function's versions: a new deploy keeps its endpoint unless it says. */
#include <assert.h>

#include "store-internal.h"

int store_endpoint_put_in_tx(Store *s, const char *tenant, const char *name, int mode) {
        if (!tenant || !name)
                return -EINVAL;
        /* An upsert, not a replace: a URL whose mode changes keeps its
         * CORS settings (cors_json); its removal takes them. */
        sqlite3_stmt *st = store_stmt(s, mode ? "INSERT INTO endpoints (tenant, name, mode) VALUES (?1, ?2, ?3)"
                                                " ON CONFLICT (tenant, name) DO UPDATE SET mode = excluded.mode"
                                              : "DELETE FROM endpoints WHERE tenant=?1 AND name=?2");
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db);
        if (st) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                if (mode)
                        sqlite3_bind_int(st, 3, mode);
                rc = sqlite3_step(st);
                store_stmt_done(s, st);
        }
        return rc == SQLITE_DONE ? 0 : (store_sqlite_errno(rc) ?: -EIO);
}

int store_endpoint_put(Store *s, const char *tenant, const char *name, int mode) {
        store_lock(s);
        int k = store_endpoint_put_in_tx(s, tenant, name, mode);
        pthread_mutex_unlock(&s->lock);
        return k;
}

int store_endpoint_get(Store *s, const char *tenant, const char *name, int *ret_mode) {
        store_lock(s);
        int k = store_endpoint_get_in_tx(s, tenant, name, ret_mode);
        pthread_mutex_unlock(&s->lock);
        return k;
}

int store_endpoint_get_in_tx(Store *s, const char *tenant, const char *name, int *ret_mode) {
        int mode = 0;
        sqlite3_stmt *st = store_stmt(s, "SELECT mode FROM endpoints WHERE tenant=?1 AND name=?2");
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db);
        if (st) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        mode = sqlite3_column_int(st, 0);
                store_stmt_done(s, st);
        }
        if (rc == SQLITE_ROW) {
                *ret_mode = mode;
                return 0;
        }
        return rc == SQLITE_DONE ? -ENOENT : (store_sqlite_errno(rc) ?: -EIO);
}

int store_endpoint_cors_put(Store *s, const char *tenant, const char *name, const char *cors_json) {
        if (!tenant || !name)
                return -EINVAL;
        store_lock(s);
        sqlite3_stmt *st = store_stmt(s, "UPDATE endpoints SET cors_json=?3 WHERE tenant=?1 AND name=?2");
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db), changes = 0;
        if (st) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                if (cors_json)
                        store_bind_text(st, 3, cors_json);
                else
                        sqlite3_bind_null(st, 3);
                rc = sqlite3_step(st);
                changes = sqlite3_changes(s->db);
                store_stmt_done(s, st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_sqlite_errno(rc) ?: -EIO;
        return changes ? 0 : -ENOENT;
}

int store_endpoint_cors_get(Store *s, const char *tenant, const char *name, int *ret_mode, char **ret_cors_json) {
        assert(ret_mode && ret_cors_json);
        int mode = 0;
        char *cors = NULL;
        store_lock(s);
        sqlite3_stmt *st = store_stmt(s, "SELECT mode, cors_json FROM endpoints WHERE tenant=?1 AND name=?2");
        int rc = st ? SQLITE_OK : sqlite3_errcode(s->db);
        if (st) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        mode = sqlite3_column_int(st, 0);
                        const char *c = (const char *) sqlite3_column_text(st, 1);
                        cors = c ? xstrdup(c) : NULL;
                }
                store_stmt_done(s, st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc == SQLITE_ROW) {
                *ret_mode = mode;
                *ret_cors_json = cors;
                return 0;
        }
        return rc == SQLITE_DONE ? -ENOENT : (store_sqlite_errno(rc) ?: -EIO);
}
