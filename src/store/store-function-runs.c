/* The runs of a deployed function (`pysprinter logs --function`): runs
 * carry the function's name in runs.fn_name (migration 8's trigger), which
 * outlives the request retention drops. */
#include "store-internal.h"

int store_function_run_ids(Store *s, const char *tenant, const char *name, size_t limit, char ***ret) {
        char **v = NULL;
        pthread_mutex_lock(&s->lock);
        sqlite3_stmt *st = store_stmt(s, "SELECT id FROM runs WHERE tenant=?1 AND fn_name=?2 "
                                         "ORDER BY created DESC, id DESC LIMIT ?3");
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
