/* Secrets (docs/secrets.md): per tenant, sealed with AES-256-GCM
 * (shared.h seal_*) before they reach SQLite, or the backend
 * store_secrets_use() gave (Redis in a cluster). A row holds nonce ||
 * ciphertext || tag; the key lives in a file beside the database (the
 * caller loads it), so a copy of the database alone reveals names and
 * dates, never values. The run records never hold a value: a run names
 * its secrets, and the engine's caller opens them when the run starts. */
#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <unistd.h>

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

/* What the key check seals: nothing secret, under its own authenticated
 * data (no tenant holds a name with a NUL byte). */
#define KEY_CHECK_AAD "\0pysprinter secrets key check"

static int key_check(Store *s, const uint8_t *key, bool record);

static char *next_key_path(const char *path) {
        return xasprintf("%s.next", path);
}

static bool opens_check(const uint8_t *key, const uint8_t *check, size_t len) {
        char *v = NULL;
        size_t n;
        int r = seal_decrypt(key, KEY_CHECK_AAD, sizeof KEY_CHECK_AAD - 1, check, len, &v, &n);
        free(v);
        return r == 0;
}

/* Which of path.next (a rotation's next key), path's and key opens the
 * key check: into ret, true; false when none does (path may be NULL). */
static bool key_for_check(const char *path, const uint8_t *key, const uint8_t *check, size_t len,
                          uint8_t ret[static SEAL_KEY_SIZE]) {
        if (path) {
                _cleanup_free_ char *next = next_key_path(path);
                const char *files[] = { next, path };
                for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                        _cleanup_free_ char *err = NULL;
                        if (seal_key_read(files[i], ret, &err) == 0 && opens_check(ret, check, len))
                                return true;
                }
        }
        if (opens_check(key, check, len)) {
                memcpy(ret, key, SEAL_KEY_SIZE);
                return true;
        }
        explicit_bzero(ret, SEAL_KEY_SIZE);
        return false;
}

/* A cluster's set on a node that knows its key file: sealed with the key
 * that opens the cluster's key check as it is now — the next key once a
 * rotation swapped the check, before the node's own file was renamed —
 * and written only if the check is still that one (secret_put.lua): a
 * set racing the swap seals again. The first set records the file's. */
static int cluster_seal_put(Store *s, const uint8_t *key, const char *path, const char *tenant, const char *name,
                            const char *value, size_t len, usec_t now) {
        size_t aad_len;
        _cleanup_free_ char *aad = aad_of(tenant, name, &aad_len);
        for (int attempt = 0; attempt < 8; attempt++) {
                _cleanup_free_ uint8_t *kept = NULL, *box = NULL;
                size_t kept_len = 0, box_len;
                int r = s->secrets->ops->key_check(s->secrets, NULL, 0, &kept, &kept_len);
                if (r == -ENOENT) {
                        r = key_check(s, key, true);
                        if (r < 0)
                                return r;
                        r = s->secrets->ops->key_check(s->secrets, NULL, 0, &kept, &kept_len);
                }
                if (r < 0)
                        return r;
                uint8_t k[SEAL_KEY_SIZE];
                if (!key_for_check(path, key, kept, kept_len, k))
                        return -EKEYREJECTED;
                r = seal_encrypt(k, aad, aad_len, value, len, &box, &box_len);
                explicit_bzero(k, sizeof k);
                if (r < 0)
                        return r;
                r = s->secrets->ops->put(s->secrets, tenant, name, box, box_len, now, kept, kept_len);
                if (r != -ESTALE)
                        return r;
        }
        return -ESTALE;
}

/* The secrets table's put (SecretStoreOps.put's contract), s->lock held. */
static int sql_put_locked(Store *s, const char *tenant, const char *name, const uint8_t *box, size_t box_len,
                          usec_t now) {
        sqlite3_stmt *st;
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
                if (full)
                        return -EDQUOT;
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
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

/* The key a set seals with when s knows its key file: a rotation's next
 * key while one is under way (its file exists), else the file's key, else
 * the caller's (the file unreadable: as before there was a file to read). */
static void seal_key_now(Store *s, const uint8_t *key, uint8_t ret[static SEAL_KEY_SIZE]) {
        _cleanup_free_ char *next = next_key_path(s->secrets_key_path), *e1 = NULL, *e2 = NULL;
        if (seal_key_read(next, ret, &e1) == 0 || seal_key_read(s->secrets_key_path, ret, &e2) == 0)
                return;
        memcpy(ret, key, SEAL_KEY_SIZE);
}

/* Whether a secret other than (tenant, name) in the secrets table opens
 * with none of the keys a set may seal with — sealing (the one this set
 * uses), key (the caller's), the key file's and its rotation's next key
 * (path, NULL: none known) —, s->lock held: a database restored without
 * its key. A set then would leave two keys in one store, which no single
 * key backup opens (docs/secrets.md): -ENOKEY, else 0. */
static int sql_foreign_locked(Store *s, const uint8_t *sealing, const uint8_t *key, const char *path,
                              const char *tenant, const char *name) {
        uint8_t keys[4][SEAL_KEY_SIZE];
        size_t n_keys = 0;
        memcpy(keys[n_keys++], sealing, SEAL_KEY_SIZE);
        memcpy(keys[n_keys++], key, SEAL_KEY_SIZE);
        if (path) {
                _cleanup_free_ char *next = next_key_path(path), *e1 = NULL, *e2 = NULL;
                if (seal_key_read(path, keys[n_keys], &e1) == 0)
                        n_keys++;
                if (seal_key_read(next, keys[n_keys], &e2) == 0)
                        n_keys++;
        }
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT tenant, name, sealed FROM secrets WHERE NOT (tenant=?1 AND name=?2) "
                                    "ORDER BY rowid",
                                    -1, &st, NULL);
        bool foreign = false;
        if (rc == SQLITE_OK) {
                store_bind_text(st, 1, tenant);
                store_bind_text(st, 2, name);
                while (!foreign && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                        _cleanup_free_ char *t = store_col_text(st, 0), *nm = store_col_text(st, 1);
                        size_t aad_len, len;
                        _cleanup_free_ char *aad = aad_of(t ?: "", nm ?: "", &aad_len);
                        const uint8_t *box = sqlite3_column_blob(st, 2);
                        size_t box_len = (size_t) sqlite3_column_bytes(st, 2);
                        foreign = true;
                        for (size_t i = 0; i < n_keys && foreign; i++) {
                                char *v = NULL;
                                if (seal_decrypt(keys[i], aad, aad_len, box, box_len, &v, &len) == 0) {
                                        explicit_bzero(v, len);
                                        foreign = false;
                                }
                                free(v);
                        }
                }
                sqlite3_finalize(st);
        }
        explicit_bzero(keys, sizeof keys);
        if (foreign)
                return -ENOKEY;
        return rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
}

/* Seals value and writes it to the secrets table. With a key file known
 * (store_secrets_key_file()), the key is chosen inside the write
 * transaction: a rotation (store_secrets_rotate_key()) re-seals in one
 * transaction of its own after making its next key, so a set either
 * commits before it (and is re-sealed) or sees the next key (or the
 * rotated file) — never a value sealed with the old key after the
 * rotation, which no key would open once the old one is gone. */
static int sql_seal_put(Store *s, const uint8_t *key, const char *tenant, const char *name, const char *value,
                        size_t len, usec_t now) {
        size_t aad_len;
        _cleanup_free_ char *aad = aad_of(tenant, name, &aad_len);
        _cleanup_free_ uint8_t *box = NULL;
        size_t box_len;
        store_lock(s);
        bool pick = s->secrets_key_path != NULL;
        pthread_mutex_unlock(&s->lock);
        if (!pick) {
                int r = seal_encrypt(key, aad, aad_len, value, len, &box, &box_len);
                if (r < 0)
                        return r;
                r = store_tx_begin(s);
                if (r < 0)
                        return r;
                r = sql_foreign_locked(s, key, key, NULL, tenant, name);
                if (r >= 0)
                        r = sql_put_locked(s, tenant, name, box, box_len, now);
                int e = store_tx_end(s, r >= 0);
                return r < 0 ? r : e;
        }
        int r = store_tx_begin(s);
        if (r < 0)
                return r;
        uint8_t k[SEAL_KEY_SIZE];
        seal_key_now(s, key, k);
        r = sql_foreign_locked(s, k, key, s->secrets_key_path, tenant, name);
        if (r >= 0)
                r = seal_encrypt(k, aad, aad_len, value, len, &box, &box_len);
        explicit_bzero(k, sizeof k);
        if (r >= 0)
                r = sql_put_locked(s, tenant, name, box, box_len, now);
        int e = store_tx_end(s, r >= 0);
        return r < 0 ? r : e;
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
        usec_t now = now_realtime();
        if (!s->secrets)
                return sql_seal_put(s, key, tenant, name, value, len, now);
        /* The first set in a cluster records its key's check; every set
         * compares with the one kept (store_secrets_use()). */
        store_lock(s);
        bool checked = s->secrets_key_checked, foreign = s->secrets_key_foreign;
        _cleanup_free_ char *path = s->secrets_key_path ? xstrdup(s->secrets_key_path) : NULL;
        pthread_mutex_unlock(&s->lock);
        if (path)
                return cluster_seal_put(s, key, path, tenant, name, value, len, now);
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
        return s->secrets->ops->put(s->secrets, tenant, name, box, box_len, now, NULL, 0);
}

void store_secrets_key_file(Store *s, const char *path) {
        assert(s);
        store_lock(s);
        free(s->secrets_key_path);
        s->secrets_key_path = path ? xstrdup(path) : NULL;
        s->secrets_key_alt_set = false;
        pthread_mutex_unlock(&s->lock);
}

/* Opens box with key; when that key does not open it and s knows its key
 * file, with the key that last did (a rotation's), then with the file's
 * key and its rotation's next key as they are now: a process that loaded
 * the key before a rotation (a running daemon, an embedded run) goes on
 * opening what the rotation re-sealed. The key that opened is remembered. */
static int open_box(Store *s, const uint8_t *key, const char *aad, size_t aad_len, const uint8_t *box, size_t len,
                    char **ret, size_t *ret_len) {
        int r = seal_decrypt(key, aad, aad_len, box, len, ret, ret_len);
        if (r != -EBADMSG)
                return r;
        uint8_t k[SEAL_KEY_SIZE];
        _cleanup_free_ char *path = NULL;
        store_lock(s);
        bool alt = s->secrets_key_alt_set;
        if (alt)
                memcpy(k, s->secrets_key_alt, sizeof k);
        if (s->secrets_key_path)
                path = xstrdup(s->secrets_key_path);
        pthread_mutex_unlock(&s->lock);
        if (alt && seal_decrypt(k, aad, aad_len, box, len, ret, ret_len) == 0) {
                explicit_bzero(k, sizeof k);
                return 0;
        }
        if (!path) {
                explicit_bzero(k, sizeof k);
                return r;
        }
        _cleanup_free_ char *next = next_key_path(path);
        const char *files[] = { path, next };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *err = NULL;
                if (seal_key_read(files[i], k, &err) < 0 || seal_decrypt(k, aad, aad_len, box, len, ret, ret_len) < 0)
                        continue;
                store_lock(s);
                memcpy(s->secrets_key_alt, k, sizeof k);
                s->secrets_key_alt_set = true;
                pthread_mutex_unlock(&s->lock);
                explicit_bzero(k, sizeof k);
                return 0;
        }
        explicit_bzero(k, sizeof k);
        return r;
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
        return open_box(s, key, aad, aad_len, box, box_len, ret_value, ret_len);
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
        Store *s; /* NULL: the key only, failures kept in failed (s's lock held) */
        const uint8_t *key;
        size_t bad, total;
        struct Failed {
                char *tenant, *name;
                uint8_t *box;
                size_t len;
        } * failed;
        size_t n_failed;
} Unopenable;

static void count_one(const char *tenant, const char *name, const uint8_t *box, size_t len, void *userdata) {
        Unopenable *u = userdata;
        size_t aad_len, n;
        _cleanup_free_ char *aad = aad_of(tenant ?: "", name ?: "", &aad_len);
        char *v = NULL;
        int r = u->s ? open_box(u->s, u->key, aad, aad_len, box, len, &v, &n)
                     : seal_decrypt(u->key, aad, aad_len, box, len, &v, &n);
        if (r >= 0) {
                explicit_bzero(v, n);
                free(v);
                u->total++;
        } else if (!u->s) {
                /* Tried again once the lock is released: open_box() takes it. */
                u->failed = xrealloc(u->failed, (u->n_failed + 1) * sizeof *u->failed);
                u->failed[u->n_failed++] = (struct Failed){ xstrdup(tenant ?: ""), xstrdup(name ?: ""),
                                                            (uint8_t *) xmemdupz(box, len), len };
        } else {
                u->bad++;
                u->total++;
        }
}

int store_secret_count_unopenable(Store *s, const uint8_t *key, size_t *ret_n, size_t *ret_total) {
        assert(s);
        assert(key);
        Unopenable u = { .s = s, .key = key };
        int rc = SQLITE_DONE;
        if (s->secrets) {
                int r = s->secrets->ops->each(s->secrets, count_one, &u);
                if (r < 0)
                        return r;
        } else {
                sqlite3_stmt *st;
                u.s = NULL;
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
                u.s = s;
                for (size_t i = 0; i < u.n_failed; i++) {
                        count_one(u.failed[i].tenant, u.failed[i].name, u.failed[i].box, u.failed[i].len, &u);
                        free(u.failed[i].tenant);
                        free(u.failed[i].name);
                        free(u.failed[i].box);
                }
                free(u.failed);
        }
        if (rc != SQLITE_DONE)
                return store_rc_errno(rc);
        *ret_n = u.bad;
        *ret_total = u.total;
        return 0;
}

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
        /* Or the key files' (store_secrets_key_file()): a node whose next
         * key a rotation made the cluster's is not foreign. */
        store_lock(s);
        _cleanup_free_ char *path = s->secrets_key_path ? xstrdup(s->secrets_key_path) : NULL;
        pthread_mutex_unlock(&s->lock);
        uint8_t k[SEAL_KEY_SIZE];
        bool opens = key_for_check(path, key, kept, kept_len, k);
        explicit_bzero(k, sizeof k);
        store_lock(s);
        s->secrets_key_checked = true;
        s->secrets_key_foreign = !opens;
        pthread_mutex_unlock(&s->lock);
        return opens ? 0 : -EKEYREJECTED;
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
        if (r == -ENOKEY)
                return xasprintf("cannot set secret '%s': secrets in this store were sealed with another key than "
                                 "the one in use (a database restored without its secrets.key?), and two keys in "
                                 "one store would open with neither alone: restore the key backed up with this "
                                 "database (docs/operations.md \"Backup and restore\"), or set again or remove "
                                 "each secret that `pysprinter secret ls` marks as not opening",
                                 name);
        if (r == -EKEYREJECTED)
                return xasprintf("cannot set secret '%s': this node's secrets.key is not the one the cluster's "
                                 "secrets are sealed with (give every node the same key: docs/cluster.md "
                                 "\"Secrets\")",
                                 name);
        return xasprintf("secret '%s' cannot be opened: %s", name, strerror(-r));
}

/* Tests only (tests/e2e/test_explore_keys.py): the rotation stops at the
 * named point, says so on stderr, and waits to be killed there. */
static void rotate_stall(const char *point) {
        const char *want = getenv("PYSPRINTER_TEST_ROTATE_STALL");
        if (!want || !streq(want, point))
                return;
        fprintf(stderr, "rotate-key: stalled %s\n", point);
        fflush(stderr);
        for (;;)
                pause();
}

char *store_secrets_rotation_unfinished(const char *key_path) {
        assert(key_path);
        char *next = next_key_path(key_path);
        if (access(next, F_OK) == 0)
                return next;
        free(next);
        return NULL;
}

typedef struct SealedRow {
        char *tenant, *name;
        uint8_t *box;
        size_t len;
} SealedRow;

/* Re-seals every row of the secrets table that opens under old with next
 * (those that open under next already were re-sealed by a rotation killed
 * before its rename), in the transaction s holds. -EKEYREJECTED when a row
 * opens under neither: *ret_error counts and names them. */
static int reseal_locked(Store *s, const uint8_t *old, const uint8_t *next, size_t *ret_n, char **ret_error) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(s->db, "SELECT tenant, name, sealed FROM secrets ORDER BY tenant, name", -1, &st,
                                    NULL);
        if (rc != SQLITE_OK)
                return store_sqlite_errno(rc);
        SealedRow *rows = NULL;
        size_t n = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                rows = xrealloc(rows, (n + 1) * sizeof *rows);
                size_t len = (size_t) sqlite3_column_bytes(st, 2);
                rows[n++] = (SealedRow){ store_col_text(st, 0), store_col_text(st, 1),
                                         (uint8_t *) xmemdupz(sqlite3_column_blob(st, 2), len), len };
        }
        sqlite3_finalize(st);
        int r = rc == SQLITE_DONE ? 0 : store_rc_errno(rc);
        size_t bad = 0, done = 0;
        _cleanup_free_ char *names = NULL;
        for (size_t i = 0; r >= 0 && i < n; i++) {
                size_t aad_len, vlen;
                _cleanup_free_ char *aad = aad_of(rows[i].tenant, rows[i].name, &aad_len);
                char *v = NULL;
                if (seal_decrypt(next, aad, aad_len, rows[i].box, rows[i].len, &v, &vlen) == 0) {
                        explicit_bzero(v, vlen);
                        free(v);
                        done++;
                        continue;
                }
                if (seal_decrypt(old, aad, aad_len, rows[i].box, rows[i].len, &v, &vlen) < 0) {
                        if (bad++ < 5) {
                                char *more = xasprintf("%s%s%s/%s", names ?: "", names ? ", " : "", rows[i].tenant,
                                                       rows[i].name);
                                free(names);
                                names = more;
                        }
                        continue;
                }
                _cleanup_free_ uint8_t *box = NULL;
                size_t box_len;
                r = seal_encrypt(next, aad, aad_len, v, vlen, &box, &box_len);
                explicit_bzero(v, vlen);
                free(v);
                if (r < 0)
                        break;
                /* The value is the same: `updated` (a DAG task's memo key
                 * holds it) does not change. */
                rc = sqlite3_prepare_v2(s->db, "UPDATE secrets SET sealed=?3 WHERE tenant=?1 AND name=?2", -1, &st,
                                        NULL);
                if (rc == SQLITE_OK) {
                        store_bind_text(st, 1, rows[i].tenant);
                        store_bind_text(st, 2, rows[i].name);
                        sqlite3_bind_blob(st, 3, box, (int) box_len, SQLITE_TRANSIENT);
                        rc = sqlite3_step(st);
                        sqlite3_finalize(st);
                }
                if (rc != SQLITE_DONE && rc != SQLITE_OK)
                        r = store_rc_errno(rc);
                done++;
        }
        for (size_t i = 0; i < n; i++) {
                free(rows[i].tenant);
                free(rows[i].name);
                free(rows[i].box);
        }
        free(rows);
        if (r >= 0 && bad > 0) {
                *ret_error = xasprintf("%zu secret(s) open with neither the current key nor the next one (%s%s): "
                                       "they were sealed with another key (a database restored without its key?); "
                                       "nothing was rotated. Restore the key they were sealed with, or set or "
                                       "remove them (tenant/name above), then rotate",
                                       bad, names, bad > 5 ? ", …" : "");
                return -EKEYREJECTED;
        }
        if (r >= 0)
                *ret_n = done;
        return r;
}

static void rows_free(SealedRow *rows, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(rows[i].tenant);
                free(rows[i].name);
                free(rows[i].box);
        }
        free(rows);
}

typedef struct RowList {
        SealedRow *v;
        size_t n;
} RowList;

static void collect_row(const char *tenant, const char *name, const uint8_t *box, size_t len, void *userdata) {
        RowList *l = userdata;
        l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
        l->v[l->n++] = (SealedRow){ xstrdup(tenant), xstrdup(name), (uint8_t *) xmemdupz(box, len), len };
}

/* How a row opens: 2 with next, 1 with old (its value into *ret, wiped
 * and freed by the caller), 0 with neither. */
static int row_opens(const SealedRow *row, const uint8_t *old, const uint8_t *next, char **ret, size_t *ret_len) {
        size_t aad_len;
        _cleanup_free_ char *aad = aad_of(row->tenant, row->name, &aad_len);
        char *v = NULL;
        size_t n;
        if (seal_decrypt(next, aad, aad_len, row->box, row->len, &v, &n) == 0) {
                explicit_bzero(v, n);
                free(v);
                return 2;
        }
        if (seal_decrypt(old, aad, aad_len, row->box, row->len, &v, &n) < 0)
                return 0;
        *ret = v;
        *ret_len = n;
        return 1;
}

/* The rotation of a cluster's secrets (in Redis, store_secrets_use()):
 * every node holds key_path.next already (the operator copied it). First
 * a look that every secret opens (else nothing changes), then the
 * cluster's key check is swapped to next's — from then on every node
 * seals a set with next (cluster_seal_put()) — then each box is re-sealed
 * with next only if it is still the one read (secret_cas.lua). Killed
 * anywhere, every box opens with old or next, which every node falls back
 * to; run again, it goes on. */
static int cluster_rotate(Store *s, const uint8_t *old, const uint8_t *next, size_t *ret_n, char **ret_error) {
        SecretStore *ss = s->secrets;
        RowList l = {};
        int r = ss->ops->each(ss, collect_row, &l);
        size_t bad = 0;
        _cleanup_free_ char *names = NULL;
        for (size_t i = 0; r >= 0 && i < l.n; i++) {
                char *v = NULL;
                size_t n = 0;
                int o = row_opens(&l.v[i], old, next, &v, &n);
                if (v) {
                        explicit_bzero(v, n);
                        free(v);
                }
                if (o == 0 && bad++ < 5) {
                        char *more = xasprintf("%s%s%s/%s", names ?: "", names ? ", " : "", l.v[i].tenant, l.v[i].name);
                        free(names);
                        names = more;
                }
        }
        rows_free(l.v, l.n);
        if (r < 0) {
                *ret_error = xasprintf("cannot read the cluster's secrets: %s", strerror(-r));
                return r;
        }
        if (bad > 0) {
                *ret_error = xasprintf("%zu secret(s) open with neither the current key nor the next one (%s%s): "
                                       "nothing was rotated. Set or remove them (tenant/name above), then rotate",
                                       bad, names, bad > 5 ? ", …" : "");
                return -EKEYREJECTED;
        }
        /* The key check: the next key's, unless it is already. */
        _cleanup_free_ uint8_t *kept = NULL, *mine = NULL;
        size_t kept_len = 0, mine_len;
        r = ss->ops->key_check(ss, NULL, 0, &kept, &kept_len);
        if (r < 0 && r != -ENOENT) {
                *ret_error = xasprintf("cannot read the cluster's key check: %s", strerror(-r));
                return r;
        }
        if (r >= 0 && !opens_check(next, kept, kept_len)) {
                if (!opens_check(old, kept, kept_len)) {
                        *ret_error = xstrdup("this machine's secrets key is not the one the cluster's secrets are "
                                             "sealed with (docs/cluster.md \"Secrets\"): nothing was rotated");
                        return -EKEYREJECTED;
                }
                r = seal_encrypt(next, KEY_CHECK_AAD, sizeof KEY_CHECK_AAD - 1, "ok", 2, &mine, &mine_len);
                if (r >= 0)
                        r = ss->ops->cas(ss, NULL, NULL, kept, kept_len, mine, mine_len);
                if (r < 0) {
                        *ret_error = xasprintf("cannot swap the cluster's key check: %s", strerror(-r));
                        return r;
                }
        }
        rotate_stall("after-swap");
        /* The boxes, read again: a set before the swap is sealed with old. */
        l = (RowList){};
        r = ss->ops->each(ss, collect_row, &l);
        size_t done = 0;
        for (size_t i = 0; r >= 0 && i < l.n; i++) {
                SealedRow *row = &l.v[i];
                for (int attempt = 0; attempt < 8; attempt++) {
                        char *v = NULL;
                        size_t n = 0;
                        int o = row_opens(row, old, next, &v, &n);
                        if (o != 1) {
                                /* Under next already (a set after the swap),
                                 * or one no key opens: set after our look
                                 * by a node with another key (refused). */
                                done += o == 2;
                                break;
                        }
                        size_t aad_len;
                        _cleanup_free_ char *aad = aad_of(row->tenant, row->name, &aad_len);
                        _cleanup_free_ uint8_t *box = NULL;
                        size_t box_len;
                        r = seal_encrypt(next, aad, aad_len, v, n, &box, &box_len);
                        explicit_bzero(v, n);
                        free(v);
                        if (r >= 0)
                                r = ss->ops->cas(ss, row->tenant, row->name, row->box, row->len, box, box_len);
                        if (r != -ESTALE) {
                                done += r >= 0;
                                break;
                        }
                        /* Set or removed meanwhile: read it again. */
                        free(row->box);
                        row->box = NULL;
                        row->len = 0;
                        r = ss->ops->get(ss, row->tenant, row->name, &row->box, &row->len);
                        if (r == -ENOENT) {
                                r = 0;
                                break;
                        }
                        if (r < 0)
                                break;
                }
        }
        rows_free(l.v, l.n);
        if (r < 0) {
                *ret_error = xasprintf("cannot re-seal the cluster's secrets: %s (run the rotation again: it goes on)",
                                       strerror(-r));
                return r;
        }
        *ret_n = done;
        return 0;
}

/* The next key cannot be made beside key_path: its directory is on a
 * read-only file system (a Kubernetes secret volume, a ro bind). */
static char *read_only_error(const char *key_path) {
        return xasprintf("cannot rotate %s: it is on a read-only file system (a Kubernetes secret volume?), and a "
                         "rotation writes its next key beside it (%s.next) and renames it over it; copy the key "
                         "(mode 0600) to a writable path, name that path as secrets.key_file in the daemon's "
                         "config, rotate, then put the new key where the volume's source is",
                         key_path, key_path);
}

int store_secrets_rotate_key(Store *s, const char *key_path, size_t *ret_n, char **ret_error) {
        assert(s);
        assert(key_path);
        assert(ret_error);
        uint8_t old[SEAL_KEY_SIZE], next[SEAL_KEY_SIZE];
        _cleanup_free_ char *next_path = next_key_path(key_path), *err = NULL;
        int r = seal_key_read(key_path, old, &err);
        if (r < 0) {
                *ret_error = r == -ENOENT ? xasprintf("%s: no key there: no secret has been sealed with one (is the "
                                                      "data directory right?)",
                                                      key_path)
                                          : TAKE_PTR(err);
                return r;
        }
        /* The next key: made now (0600, linked into place whole), or the
         * one a rotation killed midway made — the rows it committed are
         * sealed with it. Until the rename below, every opener falls back
         * to it (open_box()) and every set seals with it (seal_key_now()).
         * A cluster's is the operator's to give every node first: made
         * here, it is said so and nothing else is done. */
        r = s->secrets ? seal_key_read(next_path, next, &err) : seal_key_load(next_path, next, &err);
        if (r == -ENOENT) {
                free(err);
                err = NULL;
                r = seal_key_load(next_path, next, &err);
                explicit_bzero(old, sizeof old);
                explicit_bzero(next, sizeof next);
                if (r < 0) {
                        *ret_error = r == -EROFS ? read_only_error(key_path) : TAKE_PTR(err);
                        return r;
                }
                *ret_error = xasprintf("made the next key %s: copy it (mode 0600) to every node of the cluster, "
                                       "beside its key file as <key file>.next, then run this again "
                                       "(docs/cluster.md \"Secrets\")",
                                       next_path);
                return -EAGAIN;
        }
        if (r < 0) {
                explicit_bzero(old, sizeof old);
                *ret_error = r == -EROFS ? read_only_error(key_path) : TAKE_PTR(err);
                return r;
        }
        size_t n = 0;
        if (s->secrets)
                r = cluster_rotate(s, old, next, &n, ret_error);
        else
                r = store_tx_begin(s);
        if (r >= 0 && !s->secrets) {
                /* The commit reaches the disk before the rename: after a
                 * power cut the file never names a key the rows are not
                 * sealed with. */
                sqlite3_exec(s->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
                /* The file's key read again, now that no other rotation
                 * commits: one that renamed its next key over it since
                 * our first read left the rows sealed with that key. */
                _cleanup_free_ char *again = NULL;
                (void) seal_key_read(key_path, old, &again);
                r = reseal_locked(s, old, next, &n, ret_error);
                if (r >= 0)
                        rotate_stall("before-commit");
                int e = store_tx_end(s, r >= 0);
                if (r >= 0 && e < 0)
                        r = e;
                store_lock(s);
                sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
                pthread_mutex_unlock(&s->lock);
        }
        explicit_bzero(old, sizeof old);
        if (r < 0) {
                explicit_bzero(next, sizeof next);
                if (!*ret_error)
                        *ret_error = xasprintf("cannot re-seal the secrets: %s", strerror(-r));
                return r;
        }
        rotate_stall("before-rename");
        /* The one step that retires the old key: atomic, the file names
         * the old key or the new one, never neither. A rotation run at
         * the same time may have renamed it first: then the file holds
         * the same next key, and this one is done too. */
        if (rename(next_path, key_path) < 0) {
                r = -errno;
                uint8_t now_key[SEAL_KEY_SIZE];
                bool same = r == -ENOENT && seal_key_read(key_path, now_key, &err) == 0 &&
                            memcmp(now_key, next, sizeof next) == 0;
                explicit_bzero(now_key, sizeof now_key);
                explicit_bzero(next, sizeof next);
                if (same) {
                        *ret_n = n;
                        return 0;
                }
                *ret_error = xasprintf("cannot move %s to %s: %s (every secret is sealed with it: run the "
                                       "rotation again)",
                                       next_path, key_path, strerror(-r));
                return r;
        }
        explicit_bzero(next, sizeof next);
        _cleanup_free_ char *dir = xstrdup(key_path);
        char *slash = strrchr(dir, '/');
        if (slash)
                *(slash == dir ? slash + 1 : slash) = 0;
        _cleanup_close_ int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
                (void) fsync(dfd);
        *ret_n = n;
        return 0;
}
