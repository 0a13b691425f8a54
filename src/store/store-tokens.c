/* Bearer tokens made by `pysprinterd token create` or POST /v1/tokens
 * (docs/secrets.md "Tokens"). Only the token's sha256 is stored; the daemon
 * looks a presented token up here when its config's tokens do not match,
 * so a new or revoked token counts from the next request, no SIGHUP. In a
 * cluster the API's tokens are a backend's (store_tokens_use(): Redis);
 * the table keeps those `pysprinterd token` made on the node. */
#include <assert.h>

#include "store-internal.h"

void token_record_done(TokenRecord *t) {
        if (!t)
                return;
        free(t->id);
        free(t->sha256);
        free(t->tenant);
        free(t->role);
        *t = (TokenRecord) {};
}

void token_record_list_free(TokenRecord *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                token_record_done(&v[i]);
        free(v);
}

#define TOKEN_COLUMNS "id, sha256, tenant, role, created, expires, last_used"

static void token_from_row(sqlite3_stmt *st, TokenRecord *t) {
        t->id = store_col_text(st, 0);
        t->sha256 = store_col_text(st, 1);
        t->tenant = store_col_text(st, 2);
        t->role = store_col_text(st, 3);
        t->created = (usec_t) sqlite3_column_int64(st, 4);
        t->expires = (usec_t) sqlite3_column_int64(st, 5);
        t->last_used = (usec_t) sqlite3_column_int64(st, 6);
}

static int sql_insert(Store *s, const TokenRecord *t) {
        assert(s);
        assert(t && t->id && t->sha256 && t->tenant && t->role);
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "INSERT INTO tokens (" TOKEN_COLUMNS ") VALUES (?1,?2,?3,?4,?5,?6,0)", -1,
                                    &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, t->id);
                store_bind_text(st, 2, t->sha256);
                store_bind_text(st, 3, t->tenant);
                store_bind_text(st, 4, t->role);
                sqlite3_bind_int64(st, 5, (sqlite3_int64) t->created);
                sqlite3_bind_int64(st, 6, (sqlite3_int64) t->expires);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

static int sql_find(Store *s, const char *hash, TokenRecord *ret) {
        assert(s);
        assert(hash);
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "SELECT " TOKEN_COLUMNS " FROM tokens WHERE sha256=?1", -1, &st, NULL);
        int r = -ENOENT;
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, hash);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        token_from_row(st, ret);
                        r = 0;
                } else if (rc != SQLITE_DONE)
                        r = store_rc_errno(rc);
                sqlite3_finalize(st);
        } else
                r = store_sqlite_errno(rc);
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int sql_list(Store *s, TokenRecord **ret, size_t *ret_n) {
        assert(s);
        TokenRecord *v = NULL;
        size_t n = 0;
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY created, id", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof *v);
                        v[n] = (TokenRecord) {};
                        token_from_row(st, &v[n++]);
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                token_record_list_free(v, n);
                return store_rc_errno(rc);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int sql_revoke(Store *s, const char *id, char **ret_id) {
        assert(s);
        if (!id || strlen(id) < 4 || strlen(id) > 64 || strspn(id, "0123456789abcdef") != strlen(id))
                return -ENOENT;
        _cleanup_free_ char *like = xasprintf("%s%%", id), *full = NULL;
        sqlite3_stmt *st;
        store_lock(s);
        int r = 0, n = 0;
        int rc = sqlite3_prepare_v2(s->db, "SELECT id FROM tokens WHERE id LIKE ?1 LIMIT 2", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, like);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                        if (n++ == 0)
                                full = store_col_text(st, 0);
                sqlite3_finalize(st);
        }
        if (rc != SQLITE_DONE)
                r = store_rc_errno(rc);
        else if (n == 0)
                r = -ENOENT;
        else if (n > 1)
                r = -EEXIST;
        else {
                rc = sqlite3_prepare_v2(s->db, "DELETE FROM tokens WHERE id=?1", -1, &st, NULL);
                if (rc == SQLITE_OK) {
                        store_bind_text(st, 1, full);
                        rc = sqlite3_step(st);
                        sqlite3_finalize(st);
                }
                r = rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
        }
        pthread_mutex_unlock(&s->lock);
        if (r >= 0 && ret_id)
                *ret_id = TAKE_PTR(full);
        return r;
}

static int sql_touch(Store *s, const char *id, usec_t now) {
        assert(s);
        assert(id);
        sqlite3_stmt *st;
        store_lock(s);
        /* Once a minute at most: a busy client must not turn every request
         * into a database write. */
        int rc = sqlite3_prepare_v2(s->db, "UPDATE tokens SET last_used=?2 WHERE id=?1 AND last_used < ?2 - 60000000",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, id);
                sqlite3_bind_int64(st, 2, (sqlite3_int64) now);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

int store_token_insert(Store *s, const TokenRecord *t) {
        assert(s);
        return s->tokens ? s->tokens->ops->insert(s->tokens, t) : sql_insert(s, t);
}

int store_token_find(Store *s, const char *hash, TokenRecord *ret) {
        assert(s);
        int r = s->tokens ? s->tokens->ops->find(s->tokens, hash, ret) : -ENOENT;
        return r == -ENOENT ? sql_find(s, hash, ret) : r;
}

static int cmp_created(const void *a, const void *b) {
        const TokenRecord *x = a, *y = b;
        return x->created != y->created ? (x->created > y->created) - (x->created < y->created) : strcmp(x->id, y->id);
}

int store_token_list(Store *s, TokenRecord **ret, size_t *ret_n) {
        assert(s);
        TokenRecord *v = NULL, *w = NULL;
        size_t n = 0, m = 0;
        int r = sql_list(s, &v, &n);
        if (r < 0 || !s->tokens) {
                if (r >= 0) {
                        *ret = v;
                        *ret_n = n;
                }
                return r;
        }
        r = s->tokens->ops->list(s->tokens, &w, &m);
        if (r < 0) {
                token_record_list_free(v, n);
                return r;
        }
        v = xrealloc(v, (n + m + 1) * sizeof *v);
        if (m)
                memcpy(v + n, w, m * sizeof *w);
        free(w);
        n += m;
        if (n > 1)
                qsort(v, n, sizeof *v, cmp_created);
        *ret = v;
        *ret_n = n;
        return 0;
}

int store_token_revoke(Store *s, const char *id, char **ret_id) {
        assert(s);
        int r = s->tokens ? s->tokens->ops->revoke(s->tokens, id, ret_id) : -ENOENT;
        return r == -ENOENT ? sql_revoke(s, id, ret_id) : r;
}

int store_token_touch(Store *s, const char *id, usec_t now) {
        assert(s);
        int r = s->tokens ? s->tokens->ops->touch(s->tokens, id, now) : -ENOENT;
        return r == -ENOENT ? sql_touch(s, id, now) : r;
}

void store_tokens_use(Store *s, TokenStore *ts) {
        assert(s && ts);
        if (s->tokens)
                s->tokens->ops->free(s->tokens);
        s->tokens = ts;
}
