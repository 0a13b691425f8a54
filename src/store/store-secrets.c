/* Secrets (docs/secrets.md): per tenant, sealed with AES-256-GCM
 * (shared.h seal_*) before they reach SQLite, or the backend
 * store_secrets_use() gave (Redis in a cluster). A row holds nonce ||
 * ciphertext || tag; the key lives in a file beside the database (the
 * caller loads it), so a copy of the database alone reveals names and
 * dates, never values. The run records never hold a value: a run names
 * its secrets, and the engine's caller opens them when the run starts. */
#include <assert.h>
#include <ctype.h>

#include "shared.h"
#include "store-internal.h"

bool secret_name_is_valid(const char *name) {
        if (!name || !*name || strlen(name) > 128)
                return false;
        if (!(isalpha((unsigned char) name[0]) || name[0] == '_'))
                return false;
        for (const char *p = name; *p; p++)
                if (!(isalpha((unsigned char) *p) || isdigit((unsigned char) *p) || *p == '_'))
                        return false;
        return true;
}

void secret_info_list_free(SecretInfo *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i].name);
        free(v);
}

/* "tenant\0name": binds the sealed box to its row. */
static char *aad_of(const char *tenant, const char *name, size_t *ret_len) {
        size_t a = strlen(tenant), b = strlen(name);
        char *s = xmalloc(a + b + 2);
        memcpy(s, tenant, a + 1);
        memcpy(s + a + 1, name, b + 1);
        *ret_len = a + 1 + b;
        return s;
}

static int key_check(Store *s, const uint8_t *key, bool record);

/* The secrets table's put (SecretStoreOps.put's contract). */
static int sql_put(Store *s, const char *tenant, const char *name, const uint8_t *box, size_t box_len, usec_t now) {
        sqlite3_stmt *st;
        store_lock(s);
        /* A new name counts against the tenant's SECRET_MAX_COUNT: every
         * other thing a tenant makes is capped, and 64 KiB a secret
         * unbounded let one tenant fill the daemon's database. */
        int rc = sqlite3_prepare_v2(s->db, "SELECT count(*), sum(name = ?2) FROM secrets WHERE tenant=?1", -1, &st,
                                    NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                rc = sqlite3_step(st);
                bool full = rc == SQLITE_ROW && sqlite3_column_int64(st, 0) >= SECRET_MAX_COUNT &&
                            sqlite3_column_int64(st, 1) == 0;
                sqlite3_finalize(st);
                if (full) {
                        pthread_mutex_unlock(&s->lock);
                        return -EDQUOT;
                }
        }
        rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO secrets (tenant, name, sealed, created, updated) VALUES (?1,?2,?3,?4,?4) "
                                "ON CONFLICT(tenant, name) DO UPDATE SET sealed=?3, updated=?4",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                sqlite3_bind_blob(st, 3, box, (int) box_len, SQLITE_TRANSIENT);
                sqlite3_bind_int64(st, 4, (sqlite3_int64) now);
                rc = sqlite3_step(st);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

int store_secret_set(Store *s, const uint8_t *key, const char *tenant, const char *name, const char *value,
                     size_t len) {
        assert(s);
        assert(key);
        assert(tenant);
        if (!secret_name_is_valid(name))
                return -EINVAL;
        if (len > SECRET_MAX_BYTES)
                return -EFBIG;
        /* The first set in a cluster records its key's check; every set
         * compares with the one kept (store_secrets_use()). */
        store_lock(s);
        bool checked = s->secrets_key_checked, foreign = s->secrets_key_foreign;
        pthread_mutex_unlock(&s->lock);
        if (s->secrets && !checked) {
                int k = key_check(s, key, true);
                if (k < 0 && k != -EKEYREJECTED)
                        return k;
                foreign = k == -EKEYREJECTED;
        }
        if (foreign)
                return -EKEYREJECTED;
        size_t aad_len;
        _cleanup_free_ char *aad = aad_of(tenant, name, &aad_len);
        _cleanup_free_ uint8_t *box = NULL;
        size_t box_len;
        int r = seal_encrypt(key, aad, aad_len, value, len, &box, &box_len);
        if (r < 0)
                return r;
        usec_t now = now_realtime();
        if (s->secrets)
                return s->secrets->ops->put(s->secrets, tenant, name, box, box_len, now);
        return sql_put(s, tenant, name, box, box_len, now);
}

/* The secrets table's get (SecretStoreOps.get's contract). */
static int sql_get(Store *s, const char *tenant, const char *name, uint8_t **ret_box, size_t *ret_len) {
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "SELECT sealed FROM secrets WHERE tenant=?1 AND name=?2", -1, &st, NULL);
        int r = -ENOENT;
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        size_t len = (size_t) sqlite3_column_bytes(st, 0);
                        uint8_t *box = xmalloc(len + 1);
                        if (len)
                                memcpy(box, sqlite3_column_blob(st, 0), len);
                        *ret_box = box;
                        *ret_len = len;
                        r = 0;
                } else if (rc != SQLITE_DONE)
                        r = store_rc_errno(rc);
                sqlite3_finalize(st);
        } else
                r = store_sqlite_errno(rc);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int store_secret_get(Store *s, const uint8_t *key, const char *tenant, const char *name, char **ret_value,
                     size_t *ret_len) {
        assert(s);
        assert(key);
        assert(tenant);
        if (!secret_name_is_valid(name))
                return -ENOENT;
        _cleanup_free_ uint8_t *box = NULL;
        size_t box_len = 0;
        int r = s->secrets ? s->secrets->ops->get(s->secrets, tenant, name, &box, &box_len)
                           : sql_get(s, tenant, name, &box, &box_len);
        if (r < 0)
                return r;
        size_t aad_len;
        _cleanup_free_ char *aad = aad_of(tenant, name, &aad_len);
        return seal_decrypt(key, aad, aad_len, box, box_len, ret_value, ret_len);
}

int store_secret_list(Store *s, const char *tenant, SecretInfo **ret, size_t *ret_n) {
        assert(s);
        assert(tenant);
        if (s->secrets)
                return s->secrets->ops->list(s->secrets, tenant, ret, ret_n);
        SecretInfo *v = NULL;
        size_t n = 0;
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "SELECT name, created, updated FROM secrets WHERE tenant=?1 ORDER BY name",
                                    -1, &st, NULL);
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        v = xrealloc(v, (n + 1) * sizeof *v);
                        v[n].name = store_col_text(st, 0);
                        v[n].created = (usec_t) sqlite3_column_int64(st, 1);
                        v[n].updated = (usec_t) sqlite3_column_int64(st, 2);
                        n++;
                }
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE) {
                secret_info_list_free(v, n);
                return store_rc_errno(rc);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int store_secret_delete(Store *s, const char *tenant, const char *name) {
        assert(s);
        assert(tenant);
        if (s->secrets)
                return s->secrets->ops->remove(s->secrets, tenant, name);
        sqlite3_stmt *st;
        store_lock(s);
        int rc = sqlite3_prepare_v2(s->db, "DELETE FROM secrets WHERE tenant=?1 AND name=?2", -1, &st, NULL);
        int changed = 0;
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                rc = sqlite3_step(st);
                changed = sqlite3_changes(s->db);
                sqlite3_finalize(st);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc != SQLITE_DONE)
                return store_rc_errno(rc);
        return changed > 0 ? 0 : -ENOENT;
}

typedef struct Unopenable {
        const uint8_t *key;
        size_t bad, total;
} Unopenable;

static void count_one(const char *tenant, const char *name, const uint8_t *box, size_t len, void *userdata) {
        Unopenable *u = userdata;
        size_t aad_len, n;
        _cleanup_free_ char *aad = aad_of(tenant ?: "", name ?: "", &aad_len);
        char *v = NULL;
        u->total++;
        if (seal_decrypt(u->key, aad, aad_len, box, len, &v, &n) < 0)
                u->bad++;
        else {
                explicit_bzero(v, n);
                free(v);
        }
}

int store_secret_count_unopenable(Store *s, const uint8_t *key, size_t *ret_n, size_t *ret_total) {
        assert(s);
        assert(key);
        Unopenable u = { .key = key };
        int rc = SQLITE_DONE;
        if (s->secrets) {
                int r = s->secrets->ops->each(s->secrets, count_one, &u);
                if (r < 0)
                        return r;
        } else {
                sqlite3_stmt *st;
                store_lock(s);
                rc = sqlite3_prepare_v2(s->db, "SELECT tenant, name, sealed FROM secrets", -1, &st, NULL);
                if (rc == SQLITE_OK) {
                        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                                _cleanup_free_ char *tenant = store_col_text(st, 0), *name = store_col_text(st, 1);
                                count_one(tenant, name, sqlite3_column_blob(st, 2),
                                          (size_t) sqlite3_column_bytes(st, 2), &u);
                        }
                        sqlite3_finalize(st);
                }
                pthread_mutex_unlock(&s->lock);
        }
        if (rc != SQLITE_DONE)
                return store_rc_errno(rc);
        *ret_n = u.bad;
        *ret_total = u.total;
        return 0;
}

/* What the key check seals: nothing secret, under its own authenticated
 * data (no tenant holds a name with a NUL byte). */
#define KEY_CHECK_AAD "\0pysprinter secrets key check"

/* Compares key with the backend's key check, recording key's own first
 * when record and none is kept: 0 the same, -EKEYREJECTED another,
 * -ENOENT none kept (not record). Remembers a verdict for later sets. */
static int key_check(Store *s, const uint8_t *key, bool record) {
        _cleanup_free_ uint8_t *mine = NULL, *kept = NULL;
        size_t mine_len, kept_len;
        int r = seal_encrypt(key, KEY_CHECK_AAD, sizeof KEY_CHECK_AAD - 1, "ok", 2, &mine, &mine_len);
        if (r < 0)
                return r;
        r = s->secrets->ops->key_check(s->secrets, record ? mine : NULL, mine_len, &kept, &kept_len);
        if (r < 0)
                return r;
        char *v = NULL;
        size_t n;
        r = seal_decrypt(key, KEY_CHECK_AAD, sizeof KEY_CHECK_AAD - 1, kept, kept_len, &v, &n);
        free(v);
        if (r < 0 && r != -EBADMSG)
                return r;
        store_lock(s);
        s->secrets_key_checked = true;
        s->secrets_key_foreign = r == -EBADMSG;
        pthread_mutex_unlock(&s->lock);
        return r == -EBADMSG ? -EKEYREJECTED : 0;
}

int store_secrets_use(Store *s, SecretStore *ss, const uint8_t *key) {
        assert(s && ss && key);
        if (s->secrets)
                s->secrets->ops->free(s->secrets);
        s->secrets = ss;
        s->secrets_key_checked = s->secrets_key_foreign = false;
        int r = key_check(s, key, false);
        return r == -ENOENT ? 0 : r;
}

int store_secrets_env(Store *s, const uint8_t *key, const char *tenant, char *const *names, char *const *env,
                      char ***ret_env, char **ret_error) {
        assert(s && key && tenant && ret_env && ret_error);
        char **out = NULL;
        for (char *const *e = env; e && *e; e++)
                out = strv_append(out, *e);
        for (char *const *n = names; n && *n; n++) {
                _cleanup_free_ char *v = NULL;
                size_t len;
                int r = store_secret_get(s, key, tenant, *n, &v, &len);
                if (r < 0) {
                        store_env_free(out);
                        *ret_error = store_secret_error(*n, r);
                        return r;
                }
                char *kv = xasprintf("%s=%s", *n, v);
                out = strv_append(out, kv);
                explicit_bzero(kv, strlen(kv));
                free(kv);
                explicit_bzero(v, len);
        }
        *ret_env = out;
        return 0;
}

void store_env_free(char **env) {
        for (char **e = env; e && *e; e++)
                explicit_bzero(*e, strlen(*e));
        strv_free(env);
}

char *store_secret_error(const char *name, int r) {
        if (r == -ENOENT)
                return xasprintf("no secret named '%s' (pysprinter secret set %s)", name, name);
        if (r == -EDQUOT)
                return xasprintf("cannot add secret '%s': a tenant holds at most %d secrets (remove one with: "
                                 "pysprinter secret rm NAME)",
                                 name, SECRET_MAX_COUNT);
        if (r == -EBADMSG)
                return xasprintf("secret '%s' cannot be opened: it was sealed with another key (a different "
                                 "secrets.key?)",
                                 name);
        if (r == -EKEYREJECTED)
                return xasprintf("cannot set secret '%s': this node's secrets.key is not the one the cluster's "
                                 "secrets are sealed with (give every node the same key: docs/cluster.md "
                                 "\"Secrets\")",
                                 name);
        return xasprintf("secret '%s' cannot be opened: %s", name, strerror(-r));
}
