/* Deployed functions' HTTP endpoints (docs/endpoints.md): whether a
 * function answers at /fn/{tenant}/{name}, and to whom. Kept beside the
 * function's versions: a new deploy keeps its endpoint unless it says. */
#include "store-internal.h"

int store_endpoint_put_in_tx(Store *s, const char *tenant, const char *name, int mode) {
        if (!tenant || !name)
                return -EINVAL;
        sqlite3_stmt *st = store_stmt(s, mode ? "INSERT OR REPLACE INTO endpoints (tenant, name, mode) VALUES (?1, ?2, ?3)"
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
