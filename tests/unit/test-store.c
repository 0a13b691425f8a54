/* Unit tests for src/store: run records, prefixes, tenants, lost runs, kv. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>

#include <dirent.h>
#include <errno.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <limits.h>
#include <pthread.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
#include <sqlite3.h>

#include "store.h"
#include "store-internal.h" /* store_writer_set_commit_hook() */

static char dir[] = "/tmp/store-test-XXXXXX";

static Store *open_fresh(void) {
        static int n;
        _cleanup_free_ char *path = xasprintf("%s/db%d.sqlite", dir, n++);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        return s;
}

/* ---- secrets and tokens ---- */

static void test_secrets_per_tenant_and_bound_to_row(void **state) {
        static int n = 100;
        _cleanup_free_ char *path = xasprintf("%s/db%d.sqlite", dir, n++);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        uint8_t key[32] = { 7 };
        assert_int_equal(store_secret_set(s, key, "alice", "API_KEY", "v1", 2), 0);
        assert_int_equal(store_secret_set(s, key, "alice", "API_KEY", "value-2", 7), 0); /* replaces */
        assert_int_equal(store_secret_set(s, key, "alice", "bad-name", "v", 1), -EINVAL);
        assert_int_equal(store_secret_set(s, key, "alice", "BIG", "v", SECRET_MAX_BYTES + 1), -EFBIG);
        char *v = NULL;
        size_t len = 0;
        assert_int_equal(store_secret_get(s, key, "alice", "API_KEY", &v, &len), 0);
        assert_int_equal(len, 7);
        assert_string_equal(v, "value-2");
        free(v);
        /* Another tenant: not found, not listed, not deletable. */
        assert_int_equal(store_secret_get(s, key, "bob", "API_KEY", &v, &len), -ENOENT);
        SecretInfo *list = NULL;
        size_t nl = 0;
        assert_int_equal(store_secret_list(s, "bob", &list, &nl), 0);
        assert_int_equal(nl, 0);
        secret_info_list_free(list, nl);
        assert_int_equal(store_secret_delete(s, "bob", "API_KEY"), -ENOENT);
        assert_int_equal(store_secret_list(s, "alice", &list, &nl), 0);
        assert_int_equal(nl, 1);
        assert_string_equal(list[0].name, "API_KEY");
        assert_true(list[0].updated >= list[0].created && list[0].created > 0);
        secret_info_list_free(list, nl);
        /* Another key does not open it. */
        uint8_t other[32] = { 8 };
        assert_int_equal(store_secret_get(s, other, "alice", "API_KEY", &v, &len), -EBADMSG);
        /* Each failure says what to do, in the one wording of every path. */
        char *why = store_secret_error("API_KEY", -EBADMSG);
        assert_non_null(strstr(why, "sealed with another key"));
        free(why);
        why = store_secret_error("API_KEY", -ENOENT);
        assert_string_equal(why, "no secret named 'API_KEY' (pysprinter secret set API_KEY)");
        free(why);
        /* A row moved to another tenant (someone with write access to the
         * database file) does not open there: the tenant is authenticated. */
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "UPDATE secrets SET tenant='bob'", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        assert_int_equal(store_secret_get(s, key, "bob", "API_KEY", &v, &len), -EBADMSG);
        assert_int_equal(store_secret_delete(s, "bob", "API_KEY"), 0);
        assert_int_equal(store_secret_delete(s, "bob", "API_KEY"), -ENOENT);
        store_close(s);
}

/* A backend of one slot (store.h SecretStoreOps): what a cluster's Redis
 * is to the store. */
typedef struct OneSecret {
        SecretStore base;
        char *tenant, *name;
        uint8_t *box, *check;
        size_t len, check_len;
        usec_t updated;
} OneSecret;

static int one_put(SecretStore *ss, const char *tenant, const char *name, const uint8_t *box, size_t len, usec_t now,
                   const uint8_t *check, size_t check_len) {
        OneSecret *o = (OneSecret *) ss;
        (void) check;
        (void) check_len;
        free(o->tenant);
        free(o->name);
        free(o->box);
        o->tenant = xstrdup(tenant);
        o->name = xstrdup(name);
        o->box = (uint8_t *) xmemdupz(box, len);
        o->len = len;
        o->updated = now;
        return 0;
}

static int one_get(SecretStore *ss, const char *tenant, const char *name, uint8_t **ret, size_t *ret_len) {
        OneSecret *o = (OneSecret *) ss;
        if (!o->name || !streq(o->tenant, tenant) || !streq(o->name, name))
                return -ENOENT;
        *ret = (uint8_t *) xmemdupz((const char *) o->box, o->len);
        *ret_len = o->len;
        return 0;
}

static int one_list(SecretStore *ss, const char *tenant, SecretInfo **ret, size_t *ret_n) {
        OneSecret *o = (OneSecret *) ss;
        *ret = NULL;
        *ret_n = 0;
        if (o->name && streq(o->tenant, tenant)) {
                *ret = xcalloc(1, sizeof(SecretInfo));
                (*ret)[0] = (SecretInfo){ xstrdup(o->name), o->updated, o->updated };
                *ret_n = 1;
        }
        return 0;
}

static int one_remove(SecretStore *ss, const char *tenant, const char *name) {
        OneSecret *o = (OneSecret *) ss;
        if (!o->name || !streq(o->tenant, tenant) || !streq(o->name, name))
                return -ENOENT;
        free(o->name);
        o->name = NULL;
        return 0;
}

static int one_each(SecretStore *ss, SecretEachFn fn, void *userdata) {
        OneSecret *o = (OneSecret *) ss;
        if (o->name)
                fn(o->tenant, o->name, o->box, o->len, userdata);
        return 0;
}

static int one_key_check(SecretStore *ss, const uint8_t *check, size_t len, uint8_t **ret, size_t *ret_len) {
        OneSecret *o = (OneSecret *) ss;
        if (!o->check && !check)
                return -ENOENT;
        if (!o->check) {
                o->check = (uint8_t *) xmemdupz(check, len);
                o->check_len = len;
        }
        *ret = (uint8_t *) xmemdupz((const char *) o->check, o->check_len);
        *ret_len = o->check_len;
        return 0;
}

static void one_free(SecretStore *ss) {
        OneSecret *o = (OneSecret *) ss;
        free(o->tenant);
        free(o->name);
        free(o->box);
        free(o->check);
        free(o);
}

static const SecretStoreOps one_ops = {
        .name = "one",
        .put = one_put,
        .get = one_get,
        .list = one_list,
        .remove = one_remove,
        .each = one_each,
        .key_check = one_key_check,
        .free = one_free,
};

/* store_secrets_use(): the backend gets sealed boxes only, the table is
 * not read any more, and a key other than the one the backend's key check
 * names may read but not set. */
/* store_secrets_rotate_key(): every row re-sealed with the new key file,
 * dates kept; a holder of the old key in memory still opens (the key
 * file's fallback) and seals with the file's key; a row no key opens
 * stops the rotation before anything changes. */
static void key_write(const char *path, const uint8_t k[32]) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, k, 32), 32);
        close(fd);
}

static void key_read(const char *path, uint8_t k[32]) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, k, 32), 32);
        close(fd);
}

/* A store whose secrets another key sealed (a database restored without
 * its key) takes no set under the key in use: two keys in one store would
 * open with neither alone. Replacing the secret that does not open is the
 * fix, and allowed; after it, sets work again. */
static void test_secrets_set_refused_under_another_key(void **state) {
        (void) state;
        uint8_t lost[32] = { 1 }, mine[32] = { 2 };
        Store *s = open_fresh();
        assert_int_equal(store_secret_set(s, lost, "alice", "A", "one", 3), 0);
        assert_int_equal(store_secret_set(s, lost, "alice", "A", "uno", 3), 0);
        assert_int_equal(store_secret_set(s, mine, "bob", "B", "two", 3), -ENOKEY);
        SecretInfo *v = NULL;
        size_t n = 0;
        assert_int_equal(store_secret_list(s, "bob", &v, &n), 0);
        assert_int_equal(n, 0);
        secret_info_list_free(v, n);
        _cleanup_free_ char *why = store_secret_error("B", -ENOKEY);
        assert_non_null(strstr(why, "sealed with another key"));
        assert_int_equal(store_secret_set(s, mine, "alice", "A", "one", 3), 0);
        assert_int_equal(store_secret_set(s, mine, "bob", "B", "two", 3), 0);
        store_close(s);
}

static void test_secrets_key_rotation(void **state) {
        (void) state;
        static int n = 0;
        _cleanup_free_ char *key_path = xasprintf("%s/rot%d.key", dir, n++), *next = xasprintf("%s.next", key_path);
        _cleanup_free_ char *err = NULL;
        uint8_t key[32] = { 1, 2, 3 }, fresh[32];
        key_write(key_path, key);
        Store *s = open_fresh();
        assert_int_equal(store_secret_set(s, key, "alice", "A", "one", 3), 0);
        assert_int_equal(store_secret_set(s, key, "bob", "B", "two", 3), 0);
        SecretInfo *before = NULL, *after = NULL;
        size_t nb = 0, na = 0, rotated = 0;
        assert_int_equal(store_secret_list(s, "alice", &before, &nb), 0);
        store_secrets_key_file(s, key_path);
        assert_int_equal(store_secrets_rotate_key(s, key_path, &rotated, &err), 0);
        assert_int_equal(rotated, 2);
        assert_int_equal(access(next, F_OK), -1);
        key_read(key_path, fresh);
        assert_memory_not_equal(fresh, key, 32);
        assert_int_equal(store_secret_list(s, "alice", &after, &na), 0);
        assert_int_equal(na, 1);
        assert_int_equal(after[0].updated, before[0].updated);
        secret_info_list_free(before, nb);
        secret_info_list_free(after, na);
        char *v = NULL;
        size_t len = 0, bad = 0, total = 0;
        /* The old key in memory: opened through the file. */
        assert_int_equal(store_secret_get(s, key, "bob", "B", &v, &len), 0);
        assert_string_equal(v, "two");
        free(v);
        /* A set with the old key in memory is sealed with the file's. */
        assert_int_equal(store_secret_set(s, key, "alice", "C", "three", 5), 0);
        store_secrets_key_file(s, NULL);
        assert_int_equal(store_secret_get(s, fresh, "alice", "C", &v, &len), 0);
        assert_string_equal(v, "three");
        free(v);
        assert_int_equal(store_secret_get(s, key, "alice", "C", &v, &len), -EBADMSG);
        assert_int_equal(store_secret_count_unopenable(s, fresh, &bad, &total), 0);
        assert_int_equal(bad, 0);
        assert_int_equal(total, 3);
        /* A row sealed with yet another key: nothing rotated. A set under
         * that key is refused (-ENOKEY: two keys in one store), so the row
         * is made as a restore makes it: sealed bytes that no key here
         * opens (C's box under D's name, which its aad does not open). */
        uint8_t other[32] = { 9 };
        assert_int_equal(store_secret_set(s, other, "bob", "D", "four", 4), -ENOKEY);
        store_lock(s);
        assert_int_equal(sqlite3_exec(s->db,
                                      "INSERT INTO secrets (tenant, name, sealed, created, updated) SELECT 'bob', "
                                      "'D', sealed, created, updated FROM secrets WHERE tenant='alice' AND name='C'",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        pthread_mutex_unlock(&s->lock);
        free(err);
        err = NULL;
        assert_int_equal(store_secrets_rotate_key(s, key_path, &rotated, &err), -EKEYREJECTED);
        assert_non_null(strstr(err, "bob/D"));
        uint8_t still[32];
        key_read(key_path, still);
        assert_memory_equal(still, fresh, 32);
        store_close(s);
}

static void test_secrets_in_another_backend(void **state) {
        Store *s = open_fresh(), *t = open_fresh();
        uint8_t key[32] = { 7 }, other[32] = { 8 };
        assert_int_equal(store_secret_set(s, key, "alice", "LOCAL", "local", 5), 0);
        OneSecret *o = xcalloc(1, sizeof(OneSecret));
        o->base.ops = &one_ops;
        assert_int_equal(store_secrets_use(s, &o->base, key), 0);
        char *v = NULL;
        size_t len = 0, bad = 0, total = 0;
        assert_int_equal(store_secret_get(s, key, "alice", "LOCAL", &v, &len), -ENOENT);
        assert_null(o->check); /* recorded by the first set, not before */
        assert_int_equal(store_secret_set(s, key, "alice", "API_KEY", "plain-value", 11), 0);
        assert_non_null(o->check);
        assert_non_null(o->box);
        assert_null(memmem(o->box, o->len, "plain-value", 11));
        assert_int_equal(store_secret_get(s, key, "alice", "API_KEY", &v, &len), 0);
        assert_string_equal(v, "plain-value");
        free(v);
        SecretInfo *list = NULL;
        size_t nl = 0;
        assert_int_equal(store_secret_list(s, "alice", &list, &nl), 0);
        assert_int_equal(nl, 1);
        assert_string_equal(list[0].name, "API_KEY");
        secret_info_list_free(list, nl);
        assert_int_equal(store_secret_count_unopenable(s, other, &bad, &total), 0);
        assert_int_equal(bad, 1);
        assert_int_equal(total, 1);

        /* A second store (another node) on the same backend with another
         * key: it reads (and cannot open), it does not set. */
        OneSecret *shared = xcalloc(1, sizeof(OneSecret));
        *shared = *o;
        shared->tenant = xstrdup(o->tenant);
        shared->name = xstrdup(o->name);
        shared->box = (uint8_t *) xmemdupz(o->box, o->len);
        shared->check = (uint8_t *) xmemdupz(o->check, o->check_len);
        assert_int_equal(store_secrets_use(t, &shared->base, other), -EKEYREJECTED);
        assert_int_equal(store_secret_get(t, other, "alice", "API_KEY", &v, &len), -EBADMSG);
        assert_int_equal(store_secret_set(t, other, "alice", "API_KEY", "x", 1), -EKEYREJECTED);
        char *why = store_secret_error("API_KEY", -EKEYREJECTED);
        assert_non_null(strstr(why, "secrets.key"));
        free(why);
        assert_int_equal(store_secret_delete(s, "alice", "API_KEY"), 0);
        assert_int_equal(store_secret_delete(s, "alice", "API_KEY"), -ENOENT);
        store_close(s);
        store_close(t);
}

/* A token backend holding one token (store.h TokenStoreOps). */
typedef struct OneToken {
        TokenStore base;
        TokenRecord t;
        bool held;
        usec_t touched;
} OneToken;

static void token_copy(const TokenRecord *from, TokenRecord *to) {
        *to = (TokenRecord){ .id = xstrdup(from->id),
                             .sha256 = xstrdup(from->sha256),
                             .tenant = xstrdup(from->tenant),
                             .role = xstrdup(from->role),
                             .created = from->created,
                             .expires = from->expires };
}

static int onet_insert(TokenStore *ts, const TokenRecord *t) {
        OneToken *o = (OneToken *) ts;
        token_record_done(&o->t);
        token_copy(t, &o->t);
        o->held = true;
        return 0;
}

static int onet_find(TokenStore *ts, const char *hash, TokenRecord *ret) {
        OneToken *o = (OneToken *) ts;
        if (!o->held || !streq(o->t.sha256, hash))
                return -ENOENT;
        token_copy(&o->t, ret);
        return 0;
}

static int onet_list(TokenStore *ts, TokenRecord **ret, size_t *ret_n) {
        OneToken *o = (OneToken *) ts;
        *ret = o->held ? xcalloc(1, sizeof(TokenRecord)) : NULL;
        *ret_n = o->held;
        if (o->held)
                token_copy(&o->t, &(*ret)[0]);
        return 0;
}

static int onet_revoke(TokenStore *ts, const char *id, char **ret_id) {
        OneToken *o = (OneToken *) ts;
        if (!o->held || !startswith(o->t.id, id))
                return -ENOENT;
        o->held = false;
        if (ret_id)
                *ret_id = xstrdup(o->t.id);
        return 0;
}

static int onet_touch(TokenStore *ts, const char *id, usec_t now) {
        OneToken *o = (OneToken *) ts;
        if (!o->held || !streq(o->t.id, id))
                return -ENOENT;
        o->touched = now;
        return 0;
}

static void onet_free(TokenStore *ts) {
        OneToken *o = (OneToken *) ts;
        token_record_done(&o->t);
        free(o);
}

static const TokenStoreOps one_token_ops = {
        .name = "one",
        .insert = onet_insert,
        .find = onet_find,
        .list = onet_list,
        .revoke = onet_revoke,
        .touch = onet_touch,
        .free = onet_free,
};

/* store_tokens_use(): new tokens go to the backend; the table's (a node's
 * own) still authenticate, list (by creation) and revoke. */
static void test_tokens_in_another_backend(void **state) {
        Store *s = open_fresh();
        TokenRecord mine = { .id = (char *) "aaaa00000001",
                             .sha256 = (char *) "11",
                             .tenant = (char *) "alice",
                             .role = (char *) "user",
                             .created = 2 };
        TokenRecord theirs = { .id = (char *) "bbbb00000002",
                               .sha256 = (char *) "22",
                               .tenant = (char *) "bob",
                               .role = (char *) "admin",
                               .created = 1 };
        assert_int_equal(store_token_insert(s, &mine), 0);
        OneToken *o = xcalloc(1, sizeof(OneToken));
        o->base.ops = &one_token_ops;
        store_tokens_use(s, &o->base);
        assert_int_equal(store_token_insert(s, &theirs), 0);
        assert_true(o->held);
        TokenRecord t = {};
        assert_int_equal(store_token_find(s, "22", &t), 0);
        assert_string_equal(t.tenant, "bob");
        token_record_done(&t);
        assert_int_equal(store_token_find(s, "11", &t), 0);
        assert_string_equal(t.tenant, "alice");
        token_record_done(&t);
        assert_int_equal(store_token_touch(s, "bbbb00000002", 5 * USEC_PER_SEC), 0);
        assert_int_equal(o->touched, 5 * USEC_PER_SEC);
        TokenRecord *v = NULL;
        size_t n = 0;
        assert_int_equal(store_token_list(s, &v, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0].id, "bbbb00000002");
        assert_string_equal(v[1].id, "aaaa00000001");
        token_record_list_free(v, n);
        char *full = NULL;
        assert_int_equal(store_token_revoke(s, "bbbb", &full), 0);
        assert_string_equal(full, "bbbb00000002");
        free(full);
        assert_false(o->held);
        assert_int_equal(store_token_revoke(s, "aaaa", NULL), 0);
        assert_int_equal(store_token_find(s, "11", &t), -ENOENT);
        store_close(s);
}

static void test_tokens_find_touch_revoke(void **state) {
        Store *s = open_fresh();
        TokenRecord a = { .id = (char *) "abcdef012345", .sha256 = (char *) "11", .tenant = (char *) "alice",
                          .role = (char *) "user", .created = 1 };
        TokenRecord b = { .id = (char *) "abcd99999999", .sha256 = (char *) "22", .tenant = (char *) "bob",
                          .role = (char *) "admin", .created = 2, .expires = 5 };
        assert_int_equal(store_token_insert(s, &a), 0);
        assert_int_equal(store_token_insert(s, &b), 0);
        TokenRecord t = {};
        assert_int_equal(store_token_find(s, "22", &t), 0);
        assert_string_equal(t.tenant, "bob");
        assert_int_equal(t.expires, 5);
        token_record_done(&t);
        assert_int_equal(store_token_find(s, "33", &t), -ENOENT);
        /* last_used is written at most once a minute */
        assert_int_equal(store_token_touch(s, "abcdef012345", 100 * USEC_PER_SEC), 0);
        assert_int_equal(store_token_touch(s, "abcdef012345", 110 * USEC_PER_SEC), 0);
        assert_int_equal(store_token_find(s, "11", &t), 0);
        assert_int_equal(t.last_used, 100 * USEC_PER_SEC);
        token_record_done(&t);
        /* a prefix: ambiguous, too short, unique */
        assert_int_equal(store_token_revoke(s, "abcd", NULL), -EEXIST);
        assert_int_equal(store_token_revoke(s, "abc", NULL), -ENOENT);
        assert_int_equal(store_token_revoke(s, "abcd%", NULL), -ENOENT); /* no LIKE wildcards from users */
        _cleanup_free_ char *whole = NULL;
        assert_int_equal(store_token_revoke(s, "abcde", &whole), 0);
        assert_string_equal(whole, "abcdef012345");
        assert_int_equal(store_token_find(s, "11", &t), -ENOENT);
        TokenRecord *v = NULL;
        size_t n = 0;
        assert_int_equal(store_token_list(s, &v, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].id, "abcd99999999");
        token_record_list_free(v, n);
        store_close(s);
}

static void insert(Store *s, const char *id, const char *tenant, const char *status, usec_t created) {
        RunRecord r = { .id = (char *) id, .tenant = (char *) tenant, .filename = (char *) "f.py",
                        .status = (char *) status, .exit_code = -1, .created = created };
        assert_int_equal(store_run_insert(s, &r), 0);
}

static void test_insert_get_update(void **state) {
        Store *s = open_fresh();
        insert(s, "rabc1", "t1", "running", 1);
        RunRecord dup = { .id = (char *) "rabc1", .status = (char *) "running", .created = 1 };
        assert_int_equal(store_run_insert(s, &dup), -EEXIST);
        RunRecord *got = NULL;
        assert_int_equal(store_run_get(s, NULL, "rabc1", &got), 0);
        assert_string_equal(got->status, "running");
        assert_string_equal(got->tenant, "t1");
        free(got->status);
        got->status = xstrdup("succeeded");
        got->exit_code = 0;
        got->value_json = xstrdup("[1,2]");
        assert_null(got->outputs_json);
        got->outputs_json = xstrdup("{\"parts\":3}");
        assert_int_equal(store_run_update(s, got), 0);
        run_record_free(got);
        assert_int_equal(store_run_get(s, "t1", "rabc1", &got), 0);
        assert_string_equal(got->status, "succeeded");
        assert_string_equal(got->value_json, "[1,2]");
        /* The datasets its output_dir() became, in the API's run object. */
        assert_string_equal(got->outputs_json, "{\"parts\":3}");
        _cleanup_free_ char *api = run_record_to_json(got, NULL);
        assert_non_null(strstr(api, "\"outputs\":{\"parts\":3}"));
        assert_int_equal(got->exit_code, 0);
        run_record_free(got);
        RunRecord missing = { .id = (char *) "nope", .status = (char *) "x" };
        assert_int_equal(store_run_update(s, &missing), -ENOENT);
        store_close(s);
}

/* The run object's text carries the stored timings text as it is (no
 * parse and re-print of its reals, issue 15) in the place and spelling the
 * jansson object gives; text that is not one flat object of names and
 * numbers/true/false/null takes the parse-and-print way. */
static char *timings_of(const char *api) {
        const char *p = strstr(api, ",\"timings\":"), *q = p ? strstr(p, ",\"outputs\":") : NULL;
        assert_non_null(q);
        return strndup(p + 11, (size_t) (q - p - 11));
}

/* The run object's fields before "timings" are written as text (round 7):
 * byte for byte what jansson's object and json_dumps() give, for every kind
 * of record — errors with members missing, escapes and unicode, results of
 * each JSON type and non-JSON text, arguments in both engine forms, and
 * strings that are not UTF-8 (the jansson way then). */
static void test_run_object_head_text_is_jansson(void **state) {
        (void) state;
        const char *values[] = { NULL, "2", "-3", "0", "-0", "123456789012345678", "1234567890123456789012",
                                 "2.5", "0.1", "1e300", "\"h\\u00e9\\n\"", "[1,{\"a\":null}]", "{\"$bytes\":\"AA==\"}",
                                 "true", "not json", "007", "" };
        const char *args[] = { NULL, "[]", "[{\"value\":1},{\"raw\":\"x\"}]", "[{\"value\":{\"k\":[0.1,-0.0]}}]", "junk" };
        const char *kwargs[] = { NULL, "{}", "{\"a\":{\"value\":\"\\u2028\"},\"b\":{\"raw\":\"2\"}}", "[1]" };
        const char *texts[] = { NULL, "plain", "h\xc3\xa9llo \"q\" \\ \n\t\x01\x7f \xe2\x80\xa8 \xf0\x9f\x98\x80", "bad \xff utf8" };
        size_t n = 0;
        for (size_t v = 0; v < ELEMENTSOF(values); v++)
                for (size_t a = 0; a < ELEMENTSOF(args); a++)
                        for (size_t t = 0; t < ELEMENTSOF(texts); t++) {
                                RunRecord r = { .id = (char *) "r1", .status = t == 0 ? NULL : (char *) "failed",
                                                .exit_code = (int) t - 1, .filename = (char *) texts[(t + 1) % 4],
                                                .function = (char *) texts[t], .args_json = (char *) args[a],
                                                .kwargs_json = (char *) kwargs[(a + v) % 4], .value_json = (char *) values[v],
                                                .value_repr = (char *) texts[(t + 2) % 4], .error_type = (char *) texts[(v + t) % 4],
                                                .error_message = (char *) texts[(v + t + 1) % 4],
                                                .traceback = (char *) texts[(v + 2 * t) % 4],
                                                .timings_json = (char *) "{\"cold\":false}", .attempt = 1, .max_attempts = 3,
                                                .created = 1764528723123456ULL };
                                for (int ph = 0; ph < 2; ph++) {
                                        const char *phase = ph ? "run" : NULL;
                                        _cleanup_free_ char *got = run_record_to_json(&r, phase);
                                        json_t *j = run_record_json(&r, phase);
                                        _cleanup_free_ char *want =
                                                json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
                                        json_decref(j);
                                        assert_non_null(got);
                                        if (!streq(got, want))
                                                fail_msg("value %zu args %zu text %zu phase %d:\n%s\n%s", v, a, t, ph, got, want);
                                        n++;
                                }
                        }
        assert_true(n > 600);
}

static void test_run_object_splices_timings(void **state) {
        (void) state;
        static const struct {
                const char *stored, *shown;
        } cases[] = {
                { "{\"run_ms\":0.01,\"total_ms\":12.5,\"cold\":false}", "{\"run_ms\":0.01,\"total_ms\":12.5,\"cold\":false}" },
                { "{\"run_ms\":0.010,\"x\":-1e-5,\"y\":null,\"cold\":true}", "{\"run_ms\":0.010,\"x\":-1e-5,\"y\":null,\"cold\":true}" },
                { "{}", "{}" },
                /* Not taken as is: the jansson object's spelling. */
                { "{\"a\": 1}", "{\"a\":1}" },
                { "{\"a\":\"s\"}", "{\"a\":\"s\"}" },
                { "{\"a\":01}", "\"{\\\"a\\\":01}\"" },
                { "{\"a\":1}x", "\"{\\\"a\\\":1}x\"" },
                { "{\"a\":1,}", "\"{\\\"a\\\":1,}\"" },
                { "{\"a\":tru}", "\"{\\\"a\\\":tru}\"" },
                { "{\"a\":1.}", "\"{\\\"a\\\":1.}\"" },
                { NULL, "null" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                RunRecord r = { .id = (char *) "r1", .status = (char *) "succeeded", .exit_code = 0,
                                .value_json = (char *) "2.5", .timings_json = (char *) cases[i].stored,
                                .outputs_json = (char *) "{\"parts\":3}", .attempt = 1, .max_attempts = 1 };
                _cleanup_free_ char *api = run_record_to_json(&r, NULL);
                assert_non_null(api);
                _cleanup_free_ char *t = timings_of(api);
                assert_string_equal(t, cases[i].shown);
                /* The whole text parses, to the object the jansson way gives. */
                json_t *a = json_loads(api, 0, NULL), *b = run_record_json(&r, NULL);
                assert_non_null(a);
                assert_true(json_equal(a, b));
                assert_non_null(strstr(api, "\"result\":2.5,"));
                assert_non_null(strstr(api, ",\"outputs\":{\"parts\":3},\"attempt\":1,"));
                json_decref(a);
                json_decref(b);
                /* Without outputs, with and without timestamps: the same
                 * object again. */
                r.outputs_json = NULL;
                for (int ts = 0; ts < 2; ts++) {
                        r.created = ts ? 1764528723123456ULL : 0;
                        r.started = ts ? 1764528723223456ULL : 0;
                        r.finished = ts ? 1764528723323456ULL : 0;
                        _cleanup_free_ char *api2 = run_record_to_json(&r, "running");
                        a = json_loads(api2, 0, NULL);
                        b = run_record_json(&r, "running");
                        assert_non_null(a);
                        assert_true(json_equal(a, b));
                        if (ts)
                                assert_string_equal(json_string_value(json_object_get(a, "created_at")),
                                                    "2025-11-30T18:52:03.123Z");
                        else
                                assert_true(json_is_null(json_object_get(a, "created_at")));
                        json_decref(a);
                        json_decref(b);
                }
        }
}

static void test_prefix_and_tenants(void **state) {
        Store *s = open_fresh();
        insert(s, "r100", "a", "running", 1);
        insert(s, "r101", "a", "running", 2);
        insert(s, "r200", "b", "running", 3);
        RunRecord *got = NULL;
        assert_int_equal(store_run_get(s, NULL, "r2", &got), 0);
        assert_string_equal(got->id, "r200");
        run_record_free(got);
        assert_int_equal(store_run_get(s, NULL, "r10", &got), -EEXIST);
        assert_int_equal(store_run_get(s, "b", "r100", &got), -ENOENT); /* other tenant */
        assert_int_equal(store_run_get(s, NULL, "r1%", &got), -ENOENT); /* no wildcards */
        assert_int_equal(store_run_get(s, NULL, "r1_0", &got), -ENOENT);
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, "a", NULL, 10, &v, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0]->id, "r101"); /* newest first */
        run_record_list_free(v, n);
        assert_int_equal(store_run_list(s, NULL, NULL, 1, &v, &n), 0);
        assert_int_equal(n, 1);
        run_record_list_free(v, n);
        store_close(s);
}

/* Paging: the runs after a cursor run, in the list's own order (created,
 * then id, descending: runs of one microsecond are neither skipped nor
 * repeated), for one tenant or all, with states too. */
static void test_run_list_before(void **state) {
        Store *s = open_fresh();
        insert(s, "r1", "a", "failed", 10);
        insert(s, "r2", "a", "succeeded", 20);
        insert(s, "r3", "a", "succeeded", 20); /* same time as r2 */
        insert(s, "r4", "b", "failed", 25);
        insert(s, "r5", "a", "failed", 30);
        static const struct {
                const char *tenant, *before, *states[3];
                size_t limit;
                const char *want;
        } rows[] = {
                { "a", "r5", { NULL }, 10, "r3 r2 r1" },
                { "a", "r3", { NULL }, 10, "r2 r1" },
                { "a", "r3", { NULL }, 1, "r2" },
                { "a", "r2", { NULL }, 10, "r1" },
                { "a", "r1", { NULL }, 10, "" },
                { "a", "r5", { "failed", NULL }, 10, "r1" },
                { NULL, "r5", { NULL }, 10, "r4 r3 r2 r1" },
                { NULL, "r4", { "failed", NULL }, 10, "r1" },
                { "a", "rnone", { NULL }, 10, "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                RunRecord **v = NULL;
                size_t n = 0;
                RunFilter f = { .statuses = rows[i].states[0] ? (char *const *) rows[i].states : NULL };
                assert_int_equal(store_run_list_before(s, 0, rows[i].tenant, &f, rows[i].before, rows[i].limit, &v, &n),
                                 0);
                char got[64] = "";
                for (size_t j = 0; j < n; j++) {
                        strcat(got, j ? " " : "");
                        strcat(got, v[j]->id);
                }
                assert_string_equal(got, rows[i].want);
                run_record_list_free(v, n);
        }
        store_close(s);
}

/* The states are filtered in the walk: the newest N runs in them, however
 * many newer runs are in others (GET /v1/runs?status=failed&limit=1), one
 * state or several (?status=failed,killed). */
static void test_run_list_by_status(void **state) {
        Store *s = open_fresh();
        insert(s, "r1", "a", "failed", 1);
        insert(s, "r2", "b", "failed", 2);
        insert(s, "r3", "a", "killed", 3);
        for (int i = 0; i < 5; i++) {
                char id[8];
                snprintf(id, sizeof id, "r%d", 10 + i);
                insert(s, id, i % 2 ? "a" : "b", "succeeded", 10 + (usec_t) i);
        }
        static const struct {
                const char *tenant;
                const char *states[3];
                size_t limit;
                const char *want[4];
        } rows[] = {
                { "a", { "failed" }, 1, { "r1" } },
                { NULL, { "failed" }, 5, { "r2", "r1" } },
                { NULL, { "succeeded" }, 3, { "r14", "r13", "r12" } },
                { NULL, { "lost" }, 3, {} },
                { NULL, { "failed", "killed" }, 5, { "r3", "r2", "r1" } },
                { NULL, { "killed", "failed" }, 2, { "r3", "r2" } },
                { "a", { "killed", "failed" }, 5, { "r3", "r1" } },
                { "b", { "killed", "lost" }, 5, {} },
                { "a", { "failed", "succeeded" }, 2, { "r13", "r11" } },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                RunRecord **v = NULL;
                size_t n = 0;
                RunFilter f = { .statuses = (char *const *) rows[i].states };
                assert_int_equal(store_run_list(s, rows[i].tenant, &f, rows[i].limit, &v, &n), 0);
                size_t want = 0;
                while (want < ELEMENTSOF(rows[i].want) && rows[i].want[want])
                        want++;
                assert_int_equal(n, want);
                for (size_t k = 0; k < n; k++)
                        assert_string_equal(v[k]->id, rows[i].want[k]);
                run_record_list_free(v, n);
        }
        store_close(s);
}

/* The ids store_run_list() (store_run_list_before() with before) lists
 * under f are want's, space-separated, and run_filter_match() keeps each. */
static void assert_listed(Store *s, const char *tenant, const RunFilter *f, const char *before, size_t limit,
                          const char *want) {
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(before ? store_run_list_before(s, 0, tenant, f, before, limit, &v, &n)
                                : store_run_list(s, tenant, f, limit, &v, &n),
                         0);
        char got[64] = "";
        for (size_t j = 0; j < n; j++) {
                strcat(got, j ? " " : "");
                strcat(got, v[j]->id);
                assert_true(run_filter_match(f, v[j]));
        }
        assert_string_equal(got, want);
        run_record_list_free(v, n);
}

/* By origin (GET /v1/runs?function=&schedule=, `ps --function/--schedule`):
 * a deployed function's runs, any version, a schedule's, both, with the
 * states and a cursor too, for one tenant or all; the schema has the
 * schedule's index (migration 26). */
static void test_run_list_by_origin(void **state) {
        Store *s = open_fresh();
        insert(s, "r1", "a", "succeeded", 1); /* tick v1 */
        insert(s, "r2", "a", "failed", 2);    /* tick v2, nightly */
        insert(s, "r3", "a", "succeeded", 3); /* ad hoc */
        insert(s, "r4", "b", "succeeded", 4); /* tick v1 (b's) */
        insert(s, "r5", "a", "succeeded", 5); /* other v1, nightly */
        insert(s, "r6", "a", "succeeded", 6); /* tick v2 */
        store_lock(s);
        assert_int_equal(sqlite3_exec(s->db,
                                      "UPDATE runs SET fn_name='tick', fn_version=1 WHERE id IN ('r1','r4');"
                                      "UPDATE runs SET fn_name='tick', fn_version=2 WHERE id IN ('r2','r6');"
                                      "UPDATE runs SET fn_name='other', fn_version=1 WHERE id='r5';"
                                      "UPDATE runs SET schedule='nightly' WHERE id IN ('r2','r5');",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_stmt *st = NULL;
        assert_int_equal(
                sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE name='runs_schedule'", -1, &st, NULL),
                SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->lock);
        static const struct {
                const char *tenant, *fn, *sched, *state, *before;
                size_t limit;
                const char *want;
        } rows[] = {
                { "a", "tick", NULL, NULL, NULL, 10, "r6 r2 r1" },
                { NULL, "tick", NULL, NULL, NULL, 10, "r6 r4 r2 r1" },
                { "a", "tick", NULL, NULL, NULL, 1, "r6" },
                { "a", NULL, "nightly", NULL, NULL, 10, "r5 r2" },
                { NULL, NULL, "nightly", NULL, NULL, 10, "r5 r2" },
                { "a", "tick", "nightly", NULL, NULL, 10, "r2" },
                { "a", "tick", NULL, "failed", NULL, 10, "r2" },
                { "a", "tick", NULL, NULL, "r6", 10, "r2 r1" },
                { NULL, "tick", NULL, NULL, "r4", 10, "r2 r1" },
                { "b", NULL, "nightly", NULL, NULL, 10, "" },
                { "a", "nope", NULL, NULL, NULL, 10, "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                char *states[] = { (char *) rows[i].state, NULL };
                RunFilter f = { .statuses = rows[i].state ? states : NULL,
                                .fn_name = rows[i].fn,
                                .schedule = rows[i].sched };
                assert_listed(s, rows[i].tenant, &f, rows[i].before, rows[i].limit, rows[i].want);
        }
        store_close(s);
}

/* By text (GET /v1/runs?q=, `ps --grep`, the dashboard's search): a part
 * of the id, file name, function, deployed function or schedule, ASCII
 * letters in either case, filtered in the walk (the newest N that have
 * it, however old), and run_filter_match() keeps the same runs. */
static void test_run_list_by_text(void **state) {
        Store *s = open_fresh();
        insert(s, "rOld1", "a", "succeeded", 1);
        insert(s, "r2", "a", "failed", 2);
        insert(s, "r3", "a", "succeeded", 3);
        insert(s, "r4", "b", "succeeded", 4);
        insert(s, "r5", "a", "succeeded", 5);
        store_lock(s);
        assert_int_equal(sqlite3_exec(s->db,
                                      "UPDATE runs SET function='Needle' WHERE id='rOld1';"
                                      "UPDATE runs SET filename='Report.py', function='main' WHERE id='r2';"
                                      "UPDATE runs SET fn_name='tick', fn_version=1 WHERE id IN ('r3','r4');"
                                      "UPDATE runs SET schedule='nightly' WHERE id='r5';",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        pthread_mutex_unlock(&s->lock);
        static const struct {
                const char *tenant, *text, *state, *before;
                size_t limit;
                const char *want;
        } rows[] = {
                { "a", "needle", NULL, NULL, 1, "rOld1" }, /* the function, past newer runs */
                { "a", "NEEDLE", NULL, NULL, 10, "rOld1" }, { "a", "old", NULL, NULL, 10, "rOld1" }, /* the id */
                { "a", "report", NULL, NULL, 10, "r2" },                                             /* the file */
                { "a", "TICK", NULL, NULL, 10, "r3" }, /* the deployed function */
                { NULL, "tick", NULL, NULL, 10, "r4 r3" },  { "a", "night", NULL, NULL, 10, "r5" }, /* the schedule */
                { "a", "f.py", NULL, NULL, 2, "r5 r3" },    { "a", "f.py", "failed", NULL, 10, "" },
                { "a", ".py", "failed", NULL, 10, "r2" },   { "a", "f.py", NULL, "r3", 10, "rOld1" },
                { "a", "%", NULL, NULL, 10, "" }, /* no wildcards */
                { "a", "_", NULL, NULL, 10, "" },           { "a", "nothing", NULL, NULL, 10, "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                char *states[] = { (char *) rows[i].state, NULL };
                RunFilter f = { .statuses = rows[i].state ? states : NULL, .text = rows[i].text };
                assert_listed(s, rows[i].tenant, &f, rows[i].before, rows[i].limit, rows[i].want);
        }
        /* The C test alone, on the runs it leaves out. */
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, NULL, NULL, 10, &v, &n), 0);
        assert_int_equal(n, 5);
        size_t kept = 0;
        for (size_t j = 0; j < n; j++)
                kept += run_filter_text_match("TiCk", v[j]);
        assert_int_equal(kept, 2);
        assert_true(run_filter_text_match("", v[0]));
        assert_true(run_filter_text_match(NULL, v[0]));
        run_record_list_free(v, n);
        store_close(s);
}

/* The search index (store-search.c, migration 27) changes no answer: for
 * many texts (shorter than a trigram, in other cases, not ASCII, quotes,
 * wildcards, none found, common ones), each tenant and limit, the list is
 * the newest runs run_filter_text_match() keeps — while the index holds
 * none, some (a chunk of 40 per search) or all of the runs, after
 * searched fields of indexed runs change, runs (the newest too, whose
 * rowid SQLite gives again) are deleted and added, with the walk taking
 * the common texts (a low candidate cap), and after a VACUUM. */
static const char *const search_names[] = {
        "etl/Load_Orders.py", "main", "handler_7", "Straße.py", "ÉTÉ",  "été",    "naïve_bayes",         "x\"y'z",
        "100%_done.py",       "a_b",  "NIGHTLY",   "nightly-2", "tick", "TiCkEr", "日本語のファイル.py", "résumé",
};
static const char *const search_texts[] = {
        "a",
        "A",
        "é",
        "ab",
        "_",
        "%",
        "\"",
        "ti",
        "tic",
        "TICK",
        "ticker",
        "load_",
        "LOAD_ORDERS",
        "orders.py",
        "straße",
        "STRASSE",
        "STRAßE",
        "été",
        "ÉTÉ",
        "Été",
        "té",
        "naïve",
        "NAÏVE",
        "x\"y",
        "\"y'",
        "'z",
        "100%",
        "%_d",
        "a_b",
        "night",
        "ghtly-",
        "日本語",
        "本語の",
        "ファイル.py",
        "résumé",
        "RÉSUMÉ",
        "sum",
        "s00",
        "r01",
        "S01",
        "nothing-has-this",
        "zzz",
        "f.py",
        ".py",
        "py",
        "handler_",
        "_7",
};

static void search_insert(Store *s, int i) {
        char id[32], sql[512];
        snprintf(id, sizeof(id), "s%03d%s", i, i % 5 ? "" : "Xq");
        insert(s, id, i % 3 ? "a" : "b", i % 7 ? "succeeded" : "failed", 1000 + (usec_t) i);
        size_t n = ELEMENTSOF(search_names);
        char *q[4];
        for (int k = 0; k < 4; k++)
                q[k] = sqlite3_mprintf("%Q", search_names[(size_t) (i / 2 + k * 5) % n]);
        snprintf(sql, sizeof(sql), "UPDATE runs SET filename=%s, function=%s, fn_name=%s, schedule=%s WHERE id='%s'",
                 i % 4 ? q[0] : "NULL", q[1], i % 2 ? q[2] : "NULL", i % 3 ? "NULL" : q[3], id);
        for (int k = 0; k < 4; k++)
                sqlite3_free(q[k]);
        store_lock(s);
        assert_int_equal(sqlite3_exec(s->db, sql, NULL, NULL, NULL), SQLITE_OK);
        pthread_mutex_unlock(&s->lock);
}

static void search_exec(Store *s, const char *sql) {
        store_lock(s);
        assert_int_equal(sqlite3_exec(s->db, sql, NULL, NULL, NULL), SQLITE_OK);
        pthread_mutex_unlock(&s->lock);
}

static void assert_search_is_the_walk(Store *s) {
        RunRecord **all = NULL;
        size_t n_all = 0;
        assert_int_equal(store_run_list(s, NULL, NULL, 100000, &all, &n_all), 0);
        const char *tenants[] = { "a", "b", NULL };
        const size_t limits[] = { 3, 1000 };
        for (size_t t = 0; t < ELEMENTSOF(search_texts); t++)
                for (size_t w = 0; w < ELEMENTSOF(tenants); w++)
                        for (size_t l = 0; l < ELEMENTSOF(limits); l++) {
                                RunFilter f = { .text = search_texts[t] };
                                RunRecord **v = NULL;
                                size_t n = 0;
                                assert_int_equal(store_run_list(s, tenants[w], &f, limits[l], &v, &n), 0);
                                size_t k = 0;
                                for (size_t j = 0; j < n_all && k < limits[l]; j++) {
                                        if ((tenants[w] && !streq(all[j]->tenant, tenants[w])) ||
                                            !run_filter_text_match(search_texts[t], all[j]))
                                                continue;
                                        if (k >= n || !streq(v[k]->id, all[j]->id))
                                                fail_msg("q=%s tenant=%s limit=%zu: #%zu is %s, the walk's %s",
                                                         search_texts[t], tenants[w] ?: "(any)", limits[l], k,
                                                         k < n ? v[k]->id : "(none)", all[j]->id);
                                        k++;
                                }
                                if (k != n)
                                        fail_msg("q=%s tenant=%s: %zu runs, the walk's %zu", search_texts[t],
                                                 tenants[w] ?: "(any)", n, k);
                                run_record_list_free(v, n);
                        }
        /* With other filters too. */
        char *failed[] = { (char *) "failed", NULL };
        RunFilter f = { .statuses = failed, .text = "tick", .fn_name = "tick" };
        RunRecord **v = NULL;
        size_t n = 0, k = 0;
        assert_int_equal(store_run_list(s, "a", &f, 1000, &v, &n), 0);
        for (size_t j = 0; j < n_all; j++)
                if (streq(all[j]->tenant, "a") && run_filter_match(&f, all[j]))
                        assert_string_equal(v[k++]->id, all[j]->id);
        assert_int_equal(k, n);
        run_record_list_free(v, n);
        run_record_list_free(all, n_all);
}

static int64_t search_mark(Store *s) {
        store_lock(s);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(s->db,
                                            "SELECT CAST(value AS INTEGER) - (SELECT max(rowid) FROM runs) "
                                            "FROM kv WHERE ns='search' AND key='rowid'",
                                            -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        int64_t m = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->lock);
        return m;
}

static Store *open_at(char **ret_path);

static void test_run_search_index_answers_as_the_walk(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        for (int i = 0; i < 240; i++)
                search_insert(s, i);
        store_close(s);
        /* Its runs recorded before the index (schema 26): migrated, they
         * are found as before. */
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db,
                                      "DROP TRIGGER runs_search_delete; DROP TRIGGER runs_search_update;"
                                      "DROP TABLE runs_search; DELETE FROM kv WHERE ns = 'search';"
                                      "ALTER TABLE endpoints DROP COLUMN cors_json;"
                                      "PRAGMA user_version = 26;",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(db);
        assert_int_equal(store_open(path, &s), 0);
        s->search_chunk = 40;
        assert_search_is_the_walk(s); /* the index fills as it goes */
        assert_int_equal(search_mark(s), 0);
        /* Searched fields of indexed runs change; runs go, the newest too
         * (its rowid is given again), and come. */
        search_exec(s, "UPDATE runs SET function='renamed_tick' WHERE rowid % 9 = 0;"
                       "UPDATE runs SET schedule=NULL, fn_name='Fresh' WHERE rowid % 11 = 0;"
                       "DELETE FROM runs WHERE rowid % 13 = 0 OR rowid > 230;");
        assert_true(search_mark(s) <= 0);
        for (int i = 300; i < 330; i++)
                search_insert(s, i);
        s->search_chunk = 7;
        assert_search_is_the_walk(s);
        s->search_candidates_max = 5; /* every common text walks */
        assert_search_is_the_walk(s);
        s->search_candidates_max = 0;
        assert_int_equal(search_mark(s), 0);
        search_exec(s, "DELETE FROM runs WHERE rowid % 5 = 0; VACUUM;");
        assert_search_is_the_walk(s);
        /* The index gives a rare text's few runs, not every run. */
        _cleanup_free_ char *m = store_search_match("LOAD_ORDERS");
        assert_string_equal(m, "\"LOA\" AND \"OAD\" AND \"AD_\" AND \"D_O\" AND \"_OR\" AND \"ORD\" AND \"RDE\" AND "
                               "\"DER\" AND \"ERS\"");
        assert_null(store_search_match("ab"));
        assert_null(store_search_match("é\xff"));
        assert_null(store_search_match("\xc0\xafxyz")); /* overlong '/' */
        _cleanup_free_ char *q = store_search_match("x\"y'");
        assert_string_equal(q, "\"x\"\"y\" AND \"\"\"y'\"");
        _cleanup_free_ char *found = NULL;
        store_lock(s);
        assert_int_equal(store_search_candidates(s, m, &found), 0);
        pthread_mutex_unlock(&s->lock);
        json_t *j = json_loads(found, 0, NULL);
        assert_non_null(j);
        RunRecord **v = NULL;
        size_t n = 0, have = 0;
        assert_int_equal(store_run_list(s, NULL, NULL, 100000, &v, &n), 0);
        for (size_t i = 0; i < n; i++)
                have += run_filter_text_match("LOAD_ORDERS", v[i]);
        assert_true(have > 0 && json_array_size(j) >= have && json_array_size(j) < n / 4);
        run_record_list_free(v, n);
        json_decref(j);
        /* A collection indexes the tail (a dry run does not), 8 runs a
         * transaction here, and removes the runs of functions that are not
         * deployed (those with an fn_name): the answers stay the walk's. */
        for (int i = 400; i < 450; i++)
                search_insert(s, i);
        RetentionConfig rc;
        retention_config_init(&rc);
        rc.batch_rows = 2;
        rc.batch_pause_usec = 0;
        GcStats dry = {}, wet = {};
        assert_int_equal(store_gc(s, &rc, dir, 2000, true, NULL, &dry), 0);
        assert_true(search_mark(s) < 0);
        assert_int_equal(store_gc(s, &rc, dir, 2000, false, NULL, &wet), 0);
        assert_true(wet.runs > 0);
        assert_int_equal(search_mark(s), 0);
        retention_config_done(&rc);
        s->search_chunk = 1;
        assert_search_is_the_walk(s);
        store_close(s);
}

static void test_mark_lost(void **state) {
        Store *s = open_fresh();
        insert(s, "r1", "a", "running", 1);
        insert(s, "r2", "a", "queued", 2);
        insert(s, "r3", "a", "succeeded", 3);
        assert_int_equal(store_runs_mark_lost(s, "the daemon restarted"), 2);
        RunRecord *got = NULL;
        assert_int_equal(store_run_get(s, NULL, "r1", &got), 0);
        assert_string_equal(got->status, "lost");
        assert_string_equal(got->error_message, "the daemon restarted");
        run_record_free(got);
        assert_int_equal(store_run_get(s, NULL, "r3", &got), 0);
        assert_string_equal(got->status, "succeeded");
        run_record_free(got);
        store_close(s);
}

static void test_kv(void **state) {
        Store *s = open_fresh();
        char *v = NULL;
        assert_int_equal(store_kv_get(s, "lock", "k", &v), -ENOENT);
        assert_int_equal(store_kv_put(s, "lock", "k", "v1"), 0);
        assert_int_equal(store_kv_put(s, "lock", "k", "v2"), 0);
        assert_int_equal(store_kv_get(s, "lock", "k", &v), 0);
        assert_string_equal(v, "v2");
        free(v);
        assert_int_equal(store_kv_get(s, "other", "k", &v), -ENOENT);
        assert_int_equal(store_kv_put(s, "lock", "k", NULL), 0);
        assert_int_equal(store_kv_get(s, "lock", "k", &v), -ENOENT);
        /* prune: only the namespace's keys put before the time */
        assert_int_equal(store_kv_put(s, "lock", "old", "1"), 0);
        assert_int_equal(store_kv_put(s, "other", "old", "1"), 0);
        usec_t cut = now_realtime() + 1;
        assert_int_equal(store_kv_prune(s, "lock", cut - 3600 * USEC_PER_SEC), 0);
        assert_int_equal(store_kv_get(s, "lock", "old", &v), 0);
        free(v);
        assert_int_equal(store_kv_prune(s, "lock", cut), 0);
        assert_int_equal(store_kv_get(s, "lock", "old", &v), -ENOENT);
        assert_int_equal(store_kv_get(s, "other", "old", &v), 0);
        free(v);
        store_close(s);
}

static void test_kv_keys(void **state) {
        Store *s = open_fresh();
        char **keys = NULL;
        assert_int_equal(store_kv_keys(s, "tenant-env", 10, &keys), 0);
        assert_null(keys);
        assert_int_equal(store_kv_put(s, "tenant-env", "a:1", "1"), 0);
        assert_int_equal(store_kv_put(s, "tenant-env", "b:2", "1"), 0);
        assert_int_equal(store_kv_put(s, "lock", "c:3", "1"), 0);
        assert_int_equal(store_kv_keys(s, "tenant-env", 10, &keys), 0);
        assert_int_equal(strv_length(keys), 2);
        assert_true(strv_contains(keys, "a:1") && strv_contains(keys, "b:2"));
        strv_free(keys);
        /* Bounded: at most limit keys. */
        assert_int_equal(store_kv_keys(s, "tenant-env", 1, &keys), 0);
        assert_int_equal(strv_length(keys), 1);
        strv_free(keys);
        store_close(s);
}

static void test_reopen_keeps_data(void **state) {
        _cleanup_free_ char *path = xasprintf("%s/reopen.sqlite", dir);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        insert(s, "rkeep", "a", "running", 1);
        store_close(s);
        assert_int_equal(store_open(path, &s), 0); /* migrations are idempotent */
        RunRecord *got = NULL;
        assert_int_equal(store_run_get(s, NULL, "rkeep", &got), 0);
        run_record_free(got);
        store_close(s);
}

static void submit(RunQueue *q, const char *id, int max_attempts, usec_t created) {
        RunRecord r = { .id = (char *) id, .tenant = (char *) "a", .filename = (char *) "f.py",
                        .created = created, .max_attempts = max_attempts };
        assert_int_equal(run_queue_submit(q, &r, "{\"source\":\"x\"}"), 0);
}

static RunRecord *get(Store *s, const char *id) {
        RunRecord *got = NULL;
        assert_int_equal(store_run_get(s, NULL, id, &got), 0);
        return got;
}

static void test_queue_start_is_fenced(void **state) {
        Store *s = open_fresh();
        RunQueue *q = run_queue_sqlite_new(s);
        submit(q, "rq1", 3, 1);
        _cleanup_(run_record_freep) RunRecord *r = get(s, "rq1");
        assert_string_equal(r->status, "queued");
        assert_int_equal(r->attempt, 0);
        assert_int_equal(r->max_attempts, 3);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "rq1", 5, &attempt), 0);
        assert_int_equal(attempt, 1);
        /* Started already: a second starter loses. */
        assert_int_equal(run_queue_start(q, "rq1", 6, &attempt), -ESTALE);
        RunRecord fin = { .id = (char *) "rq1", .status = (char *) "succeeded", .exit_code = 0,
                          .value_json = (char *) "1", .finished = 9 };
        /* An old attempt's late completion is dropped. */
        assert_int_equal(run_queue_finish(q, &fin, 0), -ESTALE);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        /* Ended: nothing finishes it twice, nothing cancels it. */
        assert_int_equal(run_queue_finish(q, &fin, 1), -ESTALE);
        assert_int_equal(run_queue_cancel(q, "rq1", "late"), -ESTALE);
        _cleanup_(run_record_freep) RunRecord *done = get(s, "rq1");
        assert_string_equal(done->status, "succeeded");
        assert_int_equal(done->started, 5);
        run_queue_free(q);
        store_close(s);
}

/* A failed attempt's retry (a Lambda Event invocation): back to queued
 * with its attempt kept, fenced by it; the next start counts one more, a
 * restart meanwhile finds it queued. */
static void test_queue_requeue(void **state) {
        Store *s = open_fresh();
        RunQueue *q = run_queue_sqlite_new(s);
        submit(q, "rt1", 3, 1);
        int attempt = 0;
        /* Not running: nothing to put back. */
        assert_int_equal(run_queue_requeue(q, "rt1", 0), -ESTALE);
        assert_int_equal(run_queue_start(q, "rt1", 5, &attempt), 0);
        assert_int_equal(attempt, 1);
        assert_int_equal(run_queue_requeue(q, "rt1", 2), -ESTALE);
        assert_int_equal(run_queue_requeue(q, "rt1", 1), 0);
        _cleanup_(run_record_freep) RunRecord *r = get(s, "rt1");
        assert_string_equal(r->status, "queued");
        assert_int_equal(r->attempt, 1);
        assert_int_equal(run_queue_requeue(q, "rt1", 1), -ESTALE);
        PendingRun *v = NULL;
        size_t n = 0, lost = 0;
        assert_int_equal(run_queue_recover(q, "lost", &v, &n, &lost), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].id, "rt1");
        pending_run_list_free(v, n);
        assert_int_equal(run_queue_start(q, "rt1", 7, &attempt), 0);
        assert_int_equal(attempt, 2);
        RunRecord fin = { .id = (char *) "rt1", .status = (char *) "failed", .exit_code = 1, .finished = 9 };
        assert_int_equal(run_queue_finish(q, &fin, 1), -ESTALE);
        assert_int_equal(run_queue_finish(q, &fin, 2), 0);
        _cleanup_(run_record_freep) RunRecord *done = get(s, "rt1");
        assert_string_equal(done->status, "failed");
        assert_int_equal(done->attempt, 2);
        run_queue_free(q);
        store_close(s);
}

static void test_queue_cancel_before_start(void **state) {
        Store *s = open_fresh();
        RunQueue *q = run_queue_sqlite_new(s);
        submit(q, "rc1", 3, 1);
        assert_int_equal(run_queue_cancel(q, "rc1", "cancelled"), 0);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "rc1", 2, &attempt), -ESTALE);
        _cleanup_(run_record_freep) RunRecord *r = get(s, "rc1");
        assert_string_equal(r->status, "cancelled");
        assert_int_equal(r->exit_code, 5);
        run_queue_free(q);
        store_close(s);
}

static void submit_running(RunQueue *q, const char *id, int max_attempts, usec_t created) {
        RunRecord r = { .id = (char *) id, .tenant = (char *) "a", .filename = (char *) "f.py",
                        .status = (char *) "running", .created = created, .started = created + 1,
                        .max_attempts = max_attempts };
        assert_int_equal(run_queue_submit(q, &r, "{\"source\":\"x\"}"), 0);
}

/* WAL frames committed so far: each write transaction adds its pages. */
static sqlite3_int64 wal_frames(const char *path) {
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        struct stat st;
        return stat(wal, &st) < 0 ? 0 : (st.st_size - 32) / (4096 + 24);
}

/* A run that starts at once is recorded running by its submit (issue 15
 * c): its start writes nothing, its finish is fenced by attempt 1, a crash
 * queues it again with that attempt counted (as after a start commit), a
 * cancel before it began still ends it; a run that must never run twice
 * (max_attempts 1) is recorded queued, its start waited as before. */
static void test_queue_submit_started(void **state) {
        _cleanup_free_ char *path = xasprintf("%s/started.sqlite", dir);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        RunQueue *q = run_queue_sqlite_new(s);
        submit_running(q, "rs1", 3, 10);
        _cleanup_(run_record_freep) RunRecord *r = get(s, "rs1");
        assert_string_equal(r->status, "running");
        assert_int_equal(r->attempt, 1);
        assert_int_equal(r->started, 11);
        assert_int_equal(store_flush(s), 0);
        sqlite3_int64 before = wal_frames(path);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "rs1", 12, &attempt), 0);
        assert_int_equal(attempt, 1);
        assert_int_equal(store_flush(s), 0);
        assert_int_equal(wal_frames(path), before); /* nothing written */
        RunRecord fin = { .id = (char *) "rs1", .status = (char *) "succeeded", .exit_code = 0,
                          .value_json = (char *) "1", .started = 12, .finished = 13 };
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        _cleanup_(run_record_freep) RunRecord *done = get(s, "rs1");
        assert_string_equal(done->status, "succeeded");
        assert_int_equal(done->started, 12);
        /* Cancelled before it began: ended by its finish (attempt 1). */
        submit_running(q, "rs2", 3, 20);
        RunRecord can = { .id = (char *) "rs2", .status = (char *) "cancelled", .exit_code = 5, .finished = 21 };
        assert_int_equal(run_queue_finish(q, &can, 1), 0);
        assert_int_equal(run_queue_start(q, "rs2", 22, &attempt), -ESTALE);
        _cleanup_(run_record_freep) RunRecord *c = get(s, "rs2");
        assert_string_equal(c->status, "cancelled");
        /* Retries 0: recorded queued; its start is the waited one. */
        submit_running(q, "rs-once", 1, 30);
        _cleanup_(run_record_freep) RunRecord *once = get(s, "rs-once");
        assert_string_equal(once->status, "queued");
        assert_int_equal(once->attempt, 0);
        /* A crash: rs3 (submitted running, never finished) runs again as
         * attempt 2; rs-once never started, so it is queued, not lost. */
        submit_running(q, "rs3", 3, 40);
        PendingRun *v = NULL;
        size_t n = 0, lost = 0;
        assert_int_equal(run_queue_recover(q, "the daemon stopped", &v, &n, &lost), 0);
        assert_int_equal(lost, 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0].id, "rs-once");
        assert_string_equal(v[1].id, "rs3");
        assert_int_equal(v[1].attempt, 1);
        pending_run_list_free(v, n);
        assert_int_equal(run_queue_start(q, "rs3", 50, &attempt), 0);
        assert_int_equal(attempt, 2);
        run_queue_free(q);
        store_close(s);
}

static void submit_keyed(RunQueue *q, const char *id, const char *tenant, const char *request, bool running,
                         usec_t created) {
        RunRecord r = { .id = (char *) id, .tenant = (char *) tenant, .filename = (char *) "f.py",
                        .status = (char *) (running ? "running" : "queued"), .created = created,
                        .started = running ? created + 1 : 0, .max_attempts = 3 };
        assert_int_equal(run_queue_submit(q, &r, request), 0);
}

/* Idempotency-Key on a single node (migration 17): the submit keeps the
 * request's key with the run, through both submit statements; the oldest
 * run with the key since the cut-off is found, per tenant; a run without
 * one (or a request that is no JSON object with the key) has none; the
 * key outlives the request (dropped at the run's end) and a reopen. */
static void test_run_find_idempotent(void **state) {
        _cleanup_free_ char *path = xasprintf("%s/idem.sqlite", dir);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        RunQueue *q = run_queue_sqlite_new(s);
        submit_keyed(q, "ik1", "a", "{\"source\":\"x\",\"idem_key\":\"order-42\"}", false, 100);
        submit_keyed(q, "ik2", "a", "{\"source\":\"x\",\"idem_key\":\"order-42\"}", true, 200);
        submit_keyed(q, "ik3", "b", "{\"idem_key\":\"order-42\",\"source\":\"x\"}", true, 300);
        submit_keyed(q, "ik4", "a", "{\"source\":\"\\\"idem_key\\\"\"}", true, 400);
        submit_keyed(q, "ik5", "a", "not json \"idem_key\"", true, 500);
        char *id = NULL;
        assert_int_equal(store_run_find_idempotent(s, "a", "order-42", 0, &id), 0);
        assert_string_equal(id, "ik1");
        free(id);
        id = NULL;
        assert_int_equal(store_run_find_idempotent(s, "a", "order-42", 150, &id), 0);
        assert_string_equal(id, "ik2");
        free(id);
        id = NULL;
        assert_int_equal(store_run_find_idempotent(s, "b", "order-42", 0, &id), 0);
        assert_string_equal(id, "ik3");
        free(id);
        id = NULL;
        assert_int_equal(store_run_find_idempotent(s, "a", "order-42", 201, &id), -ENOENT);
        assert_int_equal(store_run_find_idempotent(s, "c", "order-42", 0, &id), -ENOENT);
        assert_int_equal(store_run_find_idempotent(s, "a", "order-4", 0, &id), -ENOENT);
        assert_null(id);
        /* The key stays after the run ended (its request is dropped then). */
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "ik1", 110, &attempt), 0);
        RunRecord fin = { .id = (char *) "ik1", .status = (char *) "succeeded", .started = 110, .finished = 120 };
        assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
        run_queue_free(q);
        store_close(s);
        s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_run_find_idempotent(s, "a", "order-42", 0, &id), 0);
        assert_string_equal(id, "ik1");
        free(id);
        store_close(s);
}

/* The CLI's embedded --idempotency-key: the first insert of a key keeps
 * it (store_run_find_idempotent() finds it, as the daemon's submits'); a
 * second one of the tenant within the window writes nothing and names the
 * first; another tenant, another key, or a run past the window inserts;
 * two stores on one file (two CLI processes) agree. */
static void test_run_insert_idempotent(void **state) {
        _cleanup_free_ char *path = xasprintf("%s/idem-insert.sqlite", dir);
        Store *s = NULL, *s2 = NULL;
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_open(path, &s2), 0);
        RunRecord r = { .id = (char *) "ii1",
                        .tenant = (char *) "local",
                        .filename = (char *) "f.py",
                        .status = (char *) "running",
                        .exit_code = -1,
                        .created = 1000,
                        .started = 1000,
                        .max_attempts = 1 };
        char *first = NULL;
        assert_int_equal(store_run_insert_idempotent(s, &r, "k1", 500, &first), 0);
        assert_null(first);
        assert_int_equal(store_run_find_idempotent(s, "local", "k1", 0, &first), 0);
        assert_string_equal(first, "ii1");
        free(first);
        first = NULL;
        _cleanup_(run_record_freep) RunRecord *got = get(s, "ii1");
        assert_string_equal(got->status, "running");
        assert_int_equal(got->started, 1000);
        /* The same key, another store on the file: the first run, nothing written. */
        r.id = (char *) "ii2";
        r.created = r.started = 1400;
        assert_int_equal(store_run_insert_idempotent(s2, &r, "k1", 500, &first), 1);
        assert_string_equal(first, "ii1");
        free(first);
        first = NULL;
        RunRecord *none = NULL;
        assert_int_equal(store_run_get(s, NULL, "ii2", &none), -ENOENT);
        /* Another tenant, another key: new runs. */
        r.tenant = (char *) "other";
        assert_int_equal(store_run_insert_idempotent(s, &r, "k1", 500, &first), 0);
        r.id = (char *) "ii3";
        r.tenant = (char *) "local";
        assert_int_equal(store_run_insert_idempotent(s, &r, "k2", 500, &first), 0);
        /* Past the window the key names a new run; from then on that one. */
        r.id = (char *) "ii4";
        r.created = r.started = 1600;
        assert_int_equal(store_run_insert_idempotent(s2, &r, "k1", 500, &first), 0);
        r.id = (char *) "ii5";
        r.created = r.started = 1700;
        assert_int_equal(store_run_insert_idempotent(s, &r, "k1", 500, &first), 1);
        assert_string_equal(first, "ii4");
        free(first);
        assert_null(none);
        store_close(s2);
        store_close(s);
}

/* A crash leaves runs queued and running: recovery queues again what may
 * run again, in submission order, and ends the rest lost. */
static void test_queue_recover(void **state) {
        Store *s = open_fresh();
        RunQueue *q = run_queue_sqlite_new(s);
        int attempt;
        submit(q, "rr-queued", 3, 1);
        submit(q, "rr-running", 3, 2);
        submit(q, "rr-once", 1, 3);       /* retries: 0 */
        submit(q, "rr-spent", 2, 4);
        insert(s, "rr-old", "a", "running", 5); /* no request kept (an older database) */
        assert_int_equal(run_queue_start(q, "rr-running", 10, &attempt), 0);
        assert_int_equal(run_queue_start(q, "rr-once", 10, &attempt), 0);
        assert_int_equal(run_queue_start(q, "rr-spent", 10, &attempt), 0);
        PendingRun *v = NULL;
        size_t n = 0, lost = 0;
        assert_int_equal(run_queue_recover(q, "the daemon stopped", &v, &n, &lost), 0);
        assert_int_equal(n, 3);
        assert_int_equal(lost, 2);
        assert_string_equal(v[0].id, "rr-queued");
        assert_string_equal(v[1].id, "rr-running");
        assert_int_equal(v[1].attempt, 1);
        assert_string_equal(v[1].request_json, "{\"source\":\"x\"}");
        assert_string_equal(v[2].id, "rr-spent");
        pending_run_list_free(v, n);
        _cleanup_(run_record_freep) RunRecord *once = get(s, "rr-once");
        assert_string_equal(once->status, "lost");
        assert_string_equal(once->error_message, "the daemon stopped (attempt 1 of 1)");
        _cleanup_(run_record_freep) RunRecord *old = get(s, "rr-old");
        assert_string_equal(old->status, "lost");
        /* The second attempt of the re-queued run starts and is current. */
        assert_int_equal(run_queue_start(q, "rr-running", 20, &attempt), 0);
        assert_int_equal(attempt, 2);
        /* A second crash now uses up rr-spent's attempts. */
        assert_int_equal(run_queue_start(q, "rr-spent", 20, &attempt), 0);
        assert_int_equal(run_queue_recover(q, "stopped again", &v, &n, &lost), 0);
        assert_int_equal(lost, 1);
        assert_int_equal(n, 2);
        pending_run_list_free(v, n);
        run_queue_free(q);
        store_close(s);
}

/* An embedded run whose CLI is gone ends lost; a live owner's run and a
 * run without an owner (a daemon's) stay running. */
static void test_orphaned_runs_are_marked_lost(void **state) {
        Store *s = open_fresh();
        uint64_t me;
        assert_int_equal(pid_start_time(getpid(), &me), 0);
        insert(s, "rlive", "local", "running", 1);
        insert(s, "rdead", "local", "running", 2);
        insert(s, "rreused", "local", "queued", 3);
        insert(s, "rdaemon", "local", "running", 4);
        insert(s, "rdone", "local", "succeeded", 5);
        assert_int_equal(store_run_set_owner(s, "rlive", getpid(), me), 0);
        /* pid_max is at most 2^22: this pid cannot exist. */
        assert_int_equal(store_run_set_owner(s, "rdead", 1 << 23, 1), 0);
        /* Our pid with another start time: the pid was reused. */
        assert_int_equal(store_run_set_owner(s, "rreused", getpid(), me + 1), 0);
        assert_int_equal(store_run_set_owner(s, "rdone", 1 << 23, 1), 0);
        assert_int_equal(store_run_set_owner(s, "nope", getpid(), me), -ENOENT);
        /* Out of descriptors, no owner can be looked at: none is taken for
         * gone (before, every owned run was marked lost). */
        struct rlimit old;
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
        int fds[4096], n = 0;
        struct rlimit low = { .rlim_cur = 64, .rlim_max = old.rlim_max };
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
        while (n < (int) ELEMENTSOF(fds) && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
                n++;
        int marked = store_runs_mark_orphaned(s, "gone");
        while (n > 0)
                close(fds[--n]);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
        assert_int_equal(marked, 0);
        assert_int_equal(store_runs_mark_orphaned(s, "gone"), 2);
        static const struct {
                const char *id, *status;
        } want[] = { { "rlive", "running" }, { "rdead", "lost" }, { "rreused", "lost" },
                     { "rdaemon", "running" }, { "rdone", "succeeded" } };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                RunRecord *got = NULL;
                assert_int_equal(store_run_get(s, NULL, want[i].id, &got), 0);
                assert_string_equal(got->status, want[i].status);
                if (streq(want[i].status, "lost")) {
                        assert_non_null(strstr(got->error_message, "gone (pid "));
                        assert_int_equal(got->exit_code, 7);
                }
                run_record_free(got);
        }
        assert_int_equal(store_runs_mark_orphaned(s, "gone"), 0);
        store_close(s);
}

/* ---- retention (store-retention.c) ---------------------------------------- */

static size_t count_runs(Store *s) {
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, NULL, NULL, 100000, &v, &n), 0);
        run_record_list_free(v, n);
        return n;
}

/* Ages by the given clock, per tenant overrides, never queued or running,
 * in batches smaller than the work; a dry run counts what a real one then
 * removes and removes nothing. */
static void test_gc_by_age(void **state) {
        Store *s = open_fresh();
        usec_t now = 1000 * 86400 * USEC_PER_SEC;
        char id[32];
        for (int i = 0; i < 25; i++) {
                snprintf(id, sizeof(id), "old-%d", i);
                insert(s, id, "alice", "succeeded", now - 40 * 86400 * USEC_PER_SEC + (usec_t) i);
        }
        insert(s, "old-queued", "alice", "queued", now - 90 * 86400 * USEC_PER_SEC);
        insert(s, "old-running", "alice", "running", now - 90 * 86400 * USEC_PER_SEC);
        insert(s, "young", "alice", "failed", now - 5 * 86400 * USEC_PER_SEC);
        insert(s, "bob-young", "bob", "succeeded", now - 5 * 86400 * USEC_PER_SEC);
        RetentionConfig rc;
        retention_config_init(&rc);
        rc.batch_rows = 7;
        rc.batch_pause_usec = 0;
        rc.tenants = xcalloc(1, sizeof(RetentionTenant));
        rc.tenants[0] = (RetentionTenant){ xstrdup("bob"),
                                           { .max_age_usec = 2 * 86400 * USEC_PER_SEC, .set = RETENTION_SET_MAX_AGE } };
        rc.n_tenants = 1;

        GcStats dry = {}, wet = {};
        assert_int_equal(store_gc(s, &rc, dir, now, true, NULL, &dry), 0);
        assert_int_equal(dry.runs, 26);
        assert_int_equal(count_runs(s), 29);
        assert_int_equal(store_gc(s, &rc, dir, now, false, NULL, &wet), 0);
        assert_int_equal(wet.runs, 26);
        assert_int_equal(count_runs(s), 3);
        RunRecord *r = NULL;
        assert_int_equal(store_run_get(s, NULL, "old-queued", &r), 0);
        run_record_free(r);
        assert_int_equal(store_run_get(s, NULL, "old-running", &r), 0);
        run_record_free(r);
        assert_int_equal(store_run_get(s, NULL, "young", &r), 0);
        run_record_free(r);
        assert_int_equal(store_run_get(s, NULL, "bob-young", &r), -ENOENT);
        retention_config_done(&rc);
        store_close(s);
}

/* Staging leftovers of puts a crash cut ($DATA/data/tmp/): one no write
 * touched for an hour goes, read-only trees included; one whose newest
 * file was written within the hour is a put in progress and stays, even
 * when its top directory is old. A dry run counts and removes nothing. */
static void test_gc_data_staging(void **state) {
        Store *s = open_fresh();
        _cleanup_free_ char *home = xasprintf("%s/staging-home", dir);
        _cleanup_free_ char *tmp = xasprintf("%s/data/tmp", home);
        _cleanup_free_ char *cut = xasprintf("%s/cut.upload", tmp), *ro = xasprintf("%s/ro", tmp),
                            *ro_file = xasprintf("%s/ro/a.bin", tmp), *busy = xasprintf("%s/busy", tmp),
                            *busy_file = xasprintf("%s/busy/b.bin", tmp);
        assert_int_equal(mkdir_p(ro, 0755), 0);
        assert_int_equal(mkdir_p(busy, 0755), 0);
        assert_int_equal(write_file_atomic(cut, "0123456789", 10, 0600), 0);
        assert_int_equal(write_file_atomic(ro_file, "abc", 3, 0444), 0);
        assert_int_equal(write_file_atomic(busy_file, "xyz", 3, 0600), 0);
        usec_t now = now_realtime();
        struct timespec old[2] = { { .tv_sec = (time_t) (now / USEC_PER_SEC) - 7200 },
                                   { .tv_sec = (time_t) (now / USEC_PER_SEC) - 7200 } };
        const char *aged[] = { cut, ro_file, ro, busy };
        for (size_t i = 0; i < ELEMENTSOF(aged); i++)
                assert_int_equal(utimensat(AT_FDCWD, aged[i], old, 0), 0);
        assert_int_equal(chmod(ro, 0555), 0);
        RetentionConfig rc;
        retention_config_init(&rc);
        rc.batch_pause_usec = 0;
        GcStats dry = {}, wet = {};
        assert_int_equal(store_gc(s, &rc, home, now, true, NULL, &dry), 0);
        assert_true(dry.data_bytes > 0);
        assert_int_equal(access(cut, F_OK), 0);
        assert_int_equal(store_gc(s, &rc, home, now, false, NULL, &wet), 0);
        assert_int_equal(wet.data_bytes, dry.data_bytes);
        assert_int_equal(wet.data_objects, 0);
        assert_int_equal(access(cut, F_OK), -1);
        assert_int_equal(access(ro, F_OK), -1);
        assert_int_equal(access(busy_file, F_OK), 0);
        retention_config_done(&rc);
        store_close(s);
}

/* An object a killed collection left moved aside (.gc-<hash>) goes at the
 * next collection; one a live collection holds (its flock) stays. */
static void test_gc_data_object_aside(void **state) {
        Store *s = open_fresh();
        _cleanup_free_ char *home = xasprintf("%s/aside-home", dir);
        _cleanup_free_ char *left = xasprintf("%s/data/objects/.gc-left", home),
                            *file = xasprintf("%s/data/objects/.gc-left/a.bin", home),
                            *held = xasprintf("%s/data/objects/.gc-held", home);
        assert_int_equal(mkdir_p(left, 0755), 0);
        assert_int_equal(mkdir_p(held, 0755), 0);
        assert_int_equal(write_file_atomic(file, "abc", 3, 0444), 0);
        assert_int_equal(chmod(left, 0555), 0);
        int fd = open(held, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(flock(fd, LOCK_EX), 0);
        RetentionConfig rc;
        retention_config_init(&rc);
        rc.batch_pause_usec = 0;
        GcStats st = {};
        assert_int_equal(store_gc(s, &rc, home, now_realtime(), false, NULL, &st), 0);
        assert_int_equal(st.data_objects, 1);
        assert_int_equal(access(left, F_OK), -1);
        assert_int_equal(access(held, F_OK), 0);
        close(fd);
        retention_config_done(&rc);
        store_close(s);
}

/* An override's fields replace the defaults' only where the config wrote
 * them; a written 0 is "keep forever", not "the default's". */
static void test_gc_tenant_policy(void **state) {
        RetentionConfig rc;
        retention_config_init(&rc);
        rc.tenants = xcalloc(3, sizeof(RetentionTenant));
        rc.tenants[0] = (RetentionTenant){ xstrdup("t"), { .max_log_bytes = 5, .set = RETENTION_SET_MAX_LOG_BYTES } };
        rc.tenants[1] = (RetentionTenant){ xstrdup("forever"),
                                           { .set = RETENTION_SET_MAX_AGE | RETENTION_SET_MAX_LOG_BYTES } };
        rc.tenants[2] = (RetentionTenant){ xstrdup("unset"), {} };
        rc.n_tenants = 3;
        RetentionPolicy p = retention_policy_for(&rc, "t");
        assert_int_equal(p.max_log_bytes, 5);
        assert_int_equal(p.max_age_usec, RETENTION_DEFAULT_MAX_AGE_USEC);
        p = retention_policy_for(&rc, "forever");
        assert_int_equal(p.max_log_bytes, 0);
        assert_int_equal(p.max_age_usec, 0);
        p = retention_policy_for(&rc, "unset");
        assert_int_equal(p.max_log_bytes, RETENTION_DEFAULT_MAX_LOG_BYTES);
        assert_int_equal(p.max_age_usec, RETENTION_DEFAULT_MAX_AGE_USEC);
        p = retention_policy_for(&rc, "other");
        assert_int_equal(p.max_log_bytes, RETENTION_DEFAULT_MAX_LOG_BYTES);
        retention_config_done(&rc);
}

/* ---- schema and backup (store-migrate.c, store-backup.c) ------------------ */

static void test_backup_restore(void **state) {
        _cleanup_free_ char *path = xasprintf("%s/live.sqlite", dir);
        _cleanup_free_ char *backup = xasprintf("%s/live-backup.sqlite", dir);
        _cleanup_free_ char *other = xasprintf("%s/restored.sqlite", dir);
        _cleanup_free_ char *err = NULL, *val = NULL;
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        assert_int_equal(store_kv_put(s, "x", "y", "z"), 0);
        /* Online: the store stays open while it is copied. Its journal
         * holds nothing to replay. */
        size_t replayed = 1;
        assert_int_equal(store_backup(path, backup, &replayed, &err), 0);
        assert_int_equal(replayed, 0);
        store_close(s);
        int v = 0;
        assert_int_equal(store_file_schema_version(backup, &v), 0);
        assert_int_equal(v, store_schema_version());
        /* A backup never overwrites a file. */
        free(err);
        err = NULL;
        assert_int_equal(store_backup(path, backup, NULL, &err), -EEXIST);
        free(err);
        err = NULL;
        assert_int_equal(store_restore(backup, other, &err), 0);
        assert_int_equal(store_open(other, &s), 0);
        assert_int_equal(store_kv_get(s, "x", "y", &val), 0);
        assert_string_equal(val, "z");
        store_close(s);
        /* Something that is not a database is refused. */
        _cleanup_free_ char *junk = xasprintf("%s/junk", dir);
        assert_int_equal(write_file_atomic(junk, "hello", 5, 0600), 0);
        free(err);
        err = NULL;
        assert_true(store_restore(junk, other, &err) < 0);
        assert_non_null(err);
}

/* The scheduler's write is fenced by the next fire time it read: a pause
 * or another scheduler in between wins, and a fire records its run. */
static void test_schedule_advance_is_fenced(void **state) {
        Store *s = open_fresh();
        ScheduleRecord r = { .tenant = (char *) "t", .name = (char *) "n", .function = (char *) "f",
                             .spec = (char *) "@hourly", .tz = (char *) "UTC", .catch_up = 1, .next_fire = 3600 };
        assert_int_equal(store_schedule_insert(s, &r), 0);
        assert_int_equal(store_schedule_insert(s, &r), -EEXIST);
        ScheduleRecord fire = r;
        fire.next_fire = 7200;
        fire.last_fire = 3600;
        fire.last_run_id = (char *) "r1";
        assert_int_equal(store_schedule_advance(s, &fire, 1800), -ESTALE);   /* read another state */
        assert_int_equal(store_schedule_advance(s, &fire, 3600), 0);
        assert_int_equal(store_schedule_advance(s, &fire, 3600), -ESTALE);   /* a second scheduler */
        ScheduleRecord paused = fire;
        paused.paused = true;
        assert_int_equal(store_schedule_update(s, &paused), 0);
        ScheduleRecord late = fire;
        late.next_fire = 10800;
        late.last_run_id = (char *) "r2";
        assert_int_equal(store_schedule_advance(s, &late, 7200), -ESTALE);   /* paused meanwhile */
        ScheduleRecord *got = NULL;
        assert_int_equal(store_schedule_get(s, "t", "n", &got), 0);
        assert_true(got->paused);
        assert_int_equal(got->next_fire, 7200);
        assert_string_equal(got->last_run_id, "r1");
        schedule_record_free(got);
        char **ids = NULL;
        assert_int_equal(store_schedule_runs(s, "t", "n", 10, &ids), 0);
        assert_non_null(ids);
        assert_string_equal(ids[0], "r1");
        assert_null(ids[1]);
        strv_free(ids);
        assert_int_equal(store_schedule_delete(s, "t", "n"), 0);
        assert_int_equal(store_schedule_delete(s, "t", "n"), -ENOENT);
        /* A schedule added again under that name is a new one: the runs
         * of the one removed are not its history (a stack's delete too). */
        assert_int_equal(store_schedule_insert(s, &r), 0);
        ids = NULL;
        assert_int_equal(store_schedule_runs(s, "t", "n", 10, &ids), 0);
        assert_null(ids);
        assert_int_equal(store_schedule_advance(s, &fire, 3600), 0);
        assert_int_equal(store_tx_begin(s), 0);
        assert_int_equal(store_schedule_delete_in_tx(s, "t", "n"), 0);
        assert_int_equal(store_tx_end(s, true), 0);
        assert_int_equal(store_schedule_insert(s, &r), 0);
        assert_int_equal(store_schedule_runs(s, "t", "n", 10, &ids), 0);
        assert_null(ids);
        store_close(s);
}

/* An edit (pause, resume, a stack's update) writes what was read before a
 * fire that lands in between: it keeps that fire's run and, unless the
 * timing changed, its next fire time (written back, the fire time ran
 * twice and the schedule forgot its run). */
static void test_schedule_edit_keeps_a_fire_in_between(void **state) {
        Store *s = open_fresh();
        ScheduleRecord r = { .tenant = (char *) "t",
                             .name = (char *) "n",
                             .function = (char *) "f",
                             .spec = (char *) "@hourly",
                             .tz = (char *) "UTC",
                             .catch_up = 1,
                             .next_fire = 3600 };
        assert_int_equal(store_schedule_insert(s, &r), 0);
        ScheduleRecord edit = r; /* read before the fire */
        edit.allow_overlap = true;
        ScheduleRecord fire = r;
        fire.next_fire = 7200;
        fire.last_fire = 3600;
        fire.last_run_id = (char *) "r1";
        assert_int_equal(store_schedule_advance(s, &fire, 3600), 0);
        assert_int_equal(store_tx_begin(s), 0);
        assert_int_equal(store_schedule_update_in_tx(s, &edit, false), 0);
        assert_int_equal(store_tx_end(s, true), 0);
        ScheduleRecord *got = NULL;
        assert_int_equal(store_schedule_get(s, "t", "n", &got), 0);
        assert_true(got->allow_overlap);
        assert_int_equal(got->next_fire, 7200);
        assert_int_equal(got->last_fire, 3600);
        assert_string_equal(got->last_run_id, "r1");
        got = schedule_record_free(got);
        /* A new timing is written; the fire state still stays. */
        edit.spec = (char *) "@daily";
        edit.next_fire = 86400;
        assert_int_equal(store_tx_begin(s), 0);
        assert_int_equal(store_schedule_update_in_tx(s, &edit, true), 0);
        assert_int_equal(store_tx_end(s, true), 0);
        assert_int_equal(store_schedule_get(s, "t", "n", &got), 0);
        assert_int_equal(got->next_fire, 86400);
        assert_string_equal(got->last_run_id, "r1");
        got = schedule_record_free(got);
        /* A pause read before the fire. */
        edit.paused = true;
        assert_int_equal(store_schedule_update(s, &edit), 0);
        assert_int_equal(store_schedule_get(s, "t", "n", &got), 0);
        assert_true(got->paused);
        assert_int_equal(got->last_fire, 3600);
        assert_string_equal(got->last_run_id, "r1");
        got = schedule_record_free(got);
        store_close(s);
}

/* A schedule keeps the tags of its newest STORE_SCHEDULE_RUNS_MAX runs,
 * the most it ever lists: one row per fire, forever, grew the table by
 * 86,400 rows a day for an `--every 1s` schedule. */
static void test_schedule_runs_keep_the_newest(void **state) {
        Store *s = open_fresh();
        ScheduleRecord r = { .tenant = (char *) "t",
                             .name = (char *) "n",
                             .function = (char *) "f",
                             .spec = (char *) "@every 1s",
                             .tz = (char *) "UTC",
                             .catch_up = 1,
                             .next_fire = 1 };
        assert_int_equal(store_schedule_insert(s, &r), 0);
        ScheduleRecord other = r;
        other.name = (char *) "o";
        assert_int_equal(store_schedule_insert(s, &other), 0);
        other.last_fire = 1;
        other.last_run_id = (char *) "o1";
        other.next_fire = 2;
        assert_int_equal(store_schedule_advance(s, &other, 1), 0);
        for (int i = 1; i <= STORE_SCHEDULE_RUNS_MAX + 50; i++) {
                _cleanup_free_ char *id = xasprintf("r%d", i);
                ScheduleRecord fire = r;
                fire.last_fire = i;
                fire.last_run_id = id;
                fire.next_fire = i + 1;
                assert_int_equal(store_schedule_advance(s, &fire, i), 0);
        }
        char **ids = NULL;
        assert_int_equal(store_schedule_runs(s, "t", "n", 1000, &ids), 0);
        assert_int_equal(strv_length(ids), STORE_SCHEDULE_RUNS_MAX);
        assert_string_equal(ids[0], "r150");
        assert_string_equal(ids[STORE_SCHEDULE_RUNS_MAX - 1], "r51");
        strv_free(ids);
        /* Newest is the last fired, though the clock went back. */
        ScheduleRecord back = r;
        back.last_fire = 7;
        back.last_run_id = (char *) "back";
        back.next_fire = 8;
        assert_int_equal(store_schedule_advance(s, &back, STORE_SCHEDULE_RUNS_MAX + 51), 0);
        assert_int_equal(store_schedule_runs(s, "t", "n", 1000, &ids), 0);
        assert_int_equal(strv_length(ids), STORE_SCHEDULE_RUNS_MAX);
        assert_string_equal(ids[0], "back");
        assert_string_equal(ids[1], "r150");
        strv_free(ids);
        /* Another schedule's are its own. */
        assert_int_equal(store_schedule_runs(s, "t", "o", 1000, &ids), 0);
        assert_int_equal(strv_length(ids), 1);
        strv_free(ids);
        store_close(s);
        (void) state;
}

/* A fire's state and its run's tag are one write: while a scheduler
 * fires, a reader that sees a schedule's last run finds it in the
 * schedule's runs (two separate writes let a GET fall between them). */
#define FIRES 400
static void *schedule_firer(void *arg) {
        Store *s = arg;
        for (int i = 1; i <= FIRES; i++) {
                char id[16];
                snprintf(id, sizeof id, "r%d", i);
                ScheduleRecord fire = { .tenant = (char *) "t", .name = (char *) "n", .function = (char *) "f",
                                        .spec = (char *) "@hourly", .tz = (char *) "UTC", .next_fire = (i + 1) * 3600,
                                        .last_fire = i * 3600, .last_run_id = id };
                assert_int_equal(store_schedule_advance(s, &fire, i * 3600), 0);
        }
        return NULL;
}

static void test_schedule_last_run_is_in_its_runs(void **state) {
        Store *s = open_fresh();
        ScheduleRecord r = { .tenant = (char *) "t", .name = (char *) "n", .function = (char *) "f",
                             .spec = (char *) "@hourly", .tz = (char *) "UTC", .next_fire = 3600 };
        assert_int_equal(store_schedule_insert(s, &r), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, schedule_firer, s), 0);
        char last[16];
        snprintf(last, sizeof last, "r%d", FIRES);
        bool done = false;
        while (!done) {
                ScheduleRecord *got = NULL;
                assert_int_equal(store_schedule_get(s, "t", "n", &got), 0);
                done = got->last_run_id && streq(got->last_run_id, last);
                if (got->last_run_id) {
                        char **ids = NULL;
                        assert_int_equal(store_schedule_runs(s, "t", "n", 1, &ids), 0);
                        assert_non_null(ids);
                        assert_non_null(ids[0]);
                        /* Newest first: the last run, or one fired since. */
                        assert_true(atoi(ids[0] + 1) >= atoi(got->last_run_id + 1));
                        strv_free(ids);
                }
                schedule_record_free(got);
        }
        pthread_join(t, NULL);
        store_close(s);
}

/* A version number names one content for good: `NAME@2` pinned in a
 * pipeline, or recorded as what a memoised DAG task produced, must not come
 * to mean other bytes. Removing the newest version, or the whole dataset,
 * used to hand its number to the next put. */
static void dataset_numbers_never_come_back(DatasetStore *ds) {
        const char *h1 = "1111111111111111111111111111111111111111111111111111111111111111";
        const char *h2 = "2222222222222222222222222222222222222222222222222222222222222222";
        const char *h3 = "3333333333333333333333333333333333333333333333333333333333333333";
        DatasetRecord d = {
                .tenant = (char *) "t1", .name = (char *) "nums", .kind = (char *) "file", .source = (char *) "x.txt"
        };
        int v = 0;
        bool is_new = false;
        assert_int_equal(ds->ops->put(ds, &d), 0);
        assert_int_equal(ds->ops->add_version(ds, "t1", "nums", h1, 1, 1, &v, &is_new), 0);
        assert_int_equal(v, 1);
        assert_int_equal(ds->ops->add_version(ds, "t1", "nums", h2, 1, 1, &v, &is_new), 0);
        assert_int_equal(v, 2);
        assert_int_equal(ds->ops->remove(ds, "t1", "nums", 2), 0);
        assert_int_equal(ds->ops->add_version(ds, "t1", "nums", h3, 1, 1, &v, &is_new), 0);
        assert_int_equal(v, 3);
        assert_true(is_new);
        /* The content of a removed version comes back under a new number. */
        assert_int_equal(ds->ops->add_version(ds, "t1", "nums", h2, 1, 1, &v, &is_new), 0);
        assert_int_equal(v, 4);
        /* Nor after the whole dataset went and came back. */
        assert_int_equal(ds->ops->remove(ds, "t1", "nums", 0), 0);
        assert_int_equal(ds->ops->put(ds, &d), 0);
        assert_int_equal(ds->ops->add_version(ds, "t1", "nums", h1, 1, 1, &v, &is_new), 0);
        assert_int_equal(v, 5);
        /* Numbers are per (tenant, name). */
        DatasetRecord other = {
                .tenant = (char *) "t2", .name = (char *) "nums", .kind = (char *) "file", .source = (char *) "x.txt"
        };
        assert_int_equal(ds->ops->put(ds, &other), 0);
        assert_int_equal(ds->ops->add_version(ds, "t2", "nums", h1, 1, 1, &v, &is_new), 0);
        assert_int_equal(v, 1);
}

static void test_dataset_numbers_never_come_back(void **state) {
        Store *s = open_fresh();
        DatasetStore *ds = dataset_store_sqlite_new(s);
        dataset_numbers_never_come_back(ds);
        dataset_store_free(ds);
        store_close(s);
}

/* The SQLite FunctionStore's URL calls are the endpoints table's: a new
 * version keeps the URL, mode 0 removes it (the daemon removes it with
 * the function, which the table does not follow by itself). */
static void test_function_store_url(void **state) {
        Store *s = open_fresh();
        FunctionStore *fs = function_store_sqlite_new(s);
        FunctionRecord f = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        int v = 0, mode = -1;
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_url_get(fs, "t", "a", &mode), -ENOENT);
        assert_int_equal(function_store_url_put(fs, "t", "a", 2), 0);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_url_get(fs, "t", "a", &mode), 0);
        assert_int_equal(mode, 2);
        assert_int_equal(function_store_url_get(fs, "u", "a", &mode), -ENOENT);
        assert_int_equal(store_endpoint_get(s, "t", "a", &mode), 0);
        assert_int_equal(function_store_url_put(fs, "t", "a", 1), 0);
        assert_int_equal(function_store_url_get(fs, "t", "a", &mode), 0);
        assert_int_equal(mode, 1);
        assert_int_equal(function_store_url_put(fs, "t", "a", 0), 0);
        assert_int_equal(function_store_url_get(fs, "t", "a", &mode), -ENOENT);
        function_store_free(fs);
        store_close(s);
}

/* A version's signature and docstring (migration 20): written by a put,
 * read by describe alone, never by a get (every invoke's); a version
 * without them (deployed before) describes as NULL, NULL. */
static void test_function_signature_and_doc(void **state) {
        Store *s = open_fresh();
        FunctionStore *fs = function_store_sqlite_new(s);
        FunctionRecord f = { .tenant = (char *) "t",
                             .name = (char *) "a",
                             .source = (char *) "def a(n: int = 1):\n    \"Doc.\"\n",
                             .signature = (char *) "a(n: int = 1)",
                             .doc = (char *) "Doc." };
        FunctionRecord old = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        int v = 0;
        assert_int_equal(function_store_put(fs, &old, &v), 0);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(v, 2);
        FunctionRecord *got = NULL;
        assert_int_equal(function_store_get(fs, "t", "a", 0, &got), 0);
        assert_null(got->signature);
        assert_null(got->doc);
        function_record_free(got);
        char *sig = NULL, *doc = NULL;
        assert_int_equal(function_store_describe(fs, "t", "a", 2, &sig, &doc), 0);
        assert_string_equal(sig, "a(n: int = 1)");
        assert_string_equal(doc, "Doc.");
        free(sig);
        free(doc);
        sig = doc = (char *) "unset";
        assert_int_equal(function_store_describe(fs, "t", "a", 1, &sig, &doc), 0);
        assert_null(sig);
        assert_null(doc);
        assert_int_equal(function_store_describe(fs, "t", "a", 3, &sig, &doc), -ENOENT);
        assert_int_equal(function_store_describe(fs, "u", "a", 1, &sig, &doc), -ENOENT);
        function_store_free(fs);
        store_close(s);
}

/* A version keeps the lock of its deploy (FunctionRecord.lock_json): every
 * get hands it back, as the invoke path needs it; a version without one
 * has NULL. */
static void test_function_lock_kept(void **state) {
        Store *s = open_fresh();
        FunctionStore *fs = function_store_sqlite_new(s);
        const char *lock = "{\"version\":1,\"requirements\":[\"tinypkg>=1.0\"],\"packages\":[]}";
        FunctionRecord f = { .tenant = (char *) "t",
                             .name = (char *) "a",
                             .source = (char *) "def a(): pass\n",
                             .lock_json = (char *) lock };
        FunctionRecord none = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        int v = 0;
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_put(fs, &none, &v), 0);
        FunctionRecord *got = NULL;
        assert_int_equal(function_store_get(fs, "t", "a", 1, &got), 0);
        assert_string_equal(got->lock_json, lock);
        function_record_free(got);
        assert_int_equal(function_store_get(fs, "t", "a", 0, &got), 0);
        assert_int_equal(got->version, 2);
        assert_null(got->lock_json);
        function_record_free(got);
        function_store_free(fs);
        store_close(s);
}

/* A version's lock changes only by compare and set, only that version's
 * (its wheels found at other URLs: store_function_lock_update()). */
static void test_function_lock_update(void **state) {
        Store *s = open_fresh();
        FunctionRecord f = { .tenant = (char *) "t",
                             .name = (char *) "a",
                             .source = (char *) "def a(): pass\n",
                             .lock_json = (char *) "{\"old\":1}" };
        int v = 0;
        assert_int_equal(store_function_put(s, &f, &v), 0);
        assert_int_equal(store_function_put(s, &f, &v), 0);
        assert_int_equal(store_function_lock_update(s, "t", "a", 1, "{\"other\":1}", "{\"new\":1}"), -ESTALE);
        assert_int_equal(store_function_lock_update(s, "t", "a", 3, "{\"old\":1}", "{\"new\":1}"), -ESTALE);
        assert_int_equal(store_function_lock_update(s, "t", "a", 1, "{\"old\":1}", "{\"new\":1}"), 0);
        assert_int_equal(store_function_lock_update(s, "t", "a", 1, "{\"old\":1}", "{\"new\":2}"), -ESTALE);
        FunctionRecord *got = NULL;
        assert_int_equal(store_function_get(s, "t", "a", 1, &got), 0);
        assert_string_equal(got->lock_json, "{\"new\":1}");
        assert_string_equal(got->source, "def a(): pass\n");
        function_record_free(got);
        assert_int_equal(store_function_get(s, "t", "a", 2, &got), 0);
        assert_string_equal(got->lock_json, "{\"old\":1}");
        function_record_free(got);
        store_close(s);
}

/* What the storage quota counts (daemon-quota.c): every version's code, in
 * bytes (not characters), per tenant; a deleted version's no more. And the
 * datasets' distinct content: a hash two versions or two names share counts
 * once, one the put would add counts unless held already. */
static void test_tenant_stored_bytes(void **state) {
        Store *s = open_fresh();
        uint64_t n = 7;
        assert_int_equal(store_function_code_bytes(s, "t", &n), 0);
        assert_int_equal(n, 0);
        FunctionRecord f = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        FunctionRecord g = { .tenant = (char *) "t",
                             .name = (char *) "b",
                             .source = (char *) "def b(): return '\xc3\xa9'\n" };
        FunctionRecord o = { .tenant = (char *) "other", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        int v = 0;
        assert_int_equal(store_function_put(s, &f, &v), 0);
        assert_int_equal(store_function_put(s, &f, &v), 0);
        assert_int_equal(store_function_put(s, &g, &v), 0);
        assert_int_equal(store_function_put(s, &o, &v), 0);
        assert_int_equal(store_function_code_bytes(s, "t", &n), 0);
        assert_int_equal(n, 2 * strlen(f.source) + strlen(g.source));
        assert_int_equal(store_function_delete_version(s, "t", "a", 1), 0);
        assert_int_equal(store_function_code_bytes(s, "t", &n), 0);
        assert_int_equal(n, strlen(f.source) + strlen(g.source));
        assert_int_equal(store_function_delete(s, "t", "b"), 0);
        assert_int_equal(store_function_code_bytes(s, "t", &n), 0);
        assert_int_equal(n, strlen(f.source));
        assert_int_equal(store_function_code_bytes(s, "other", &n), 0);
        assert_int_equal(n, strlen(o.source));

        DatasetRecord d = {
                .tenant = (char *) "t", .name = (char *) "x", .kind = (char *) "file", .source = (char *) "-"
        };
        DatasetRecord e = {
                .tenant = (char *) "t", .name = (char *) "y", .kind = (char *) "file", .source = (char *) "-"
        };
        bool is_new = false;
        assert_int_equal(store_dataset_put(s, &d), 0);
        assert_int_equal(store_dataset_put(s, &e), 0);
        assert_int_equal(store_dataset_add_version(s, "t", "x", "h1", 100, 1, &v, &is_new), 0);
        assert_int_equal(store_dataset_add_version(s, "t", "x", "h2", 30, 1, &v, &is_new), 0);
        assert_int_equal(store_dataset_add_version(s, "t", "y", "h1", 100, 1, &v, &is_new), 0);
        assert_int_equal(store_dataset_tenant_bytes(s, "t", NULL, 0, &n), 0);
        assert_int_equal(n, 130);
        assert_int_equal(store_dataset_tenant_bytes(s, "t", "h2", 30, &n), 0);
        assert_int_equal(n, 130);
        assert_int_equal(store_dataset_tenant_bytes(s, "t", "h3", 5, &n), 0);
        assert_int_equal(n, 135);
        assert_int_equal(store_dataset_tenant_bytes(s, "other", "h1", 100, &n), 0);
        assert_int_equal(n, 100);
        assert_int_equal(store_dataset_delete(s, "t", "x", 0), 0);
        assert_int_equal(store_dataset_tenant_bytes(s, "t", NULL, 0, &n), 0);
        assert_int_equal(n, 100);
        store_close(s);
}

/* One version deleted alone (functions rm NAME:V): only it goes, never the
 * latest (nor so the only one), another tenant's namesake is untouched,
 * and the next deploy's number is never one given before. */
static void test_function_delete_version(void **state) {
        Store *s = open_fresh();
        FunctionStore *fs = function_store_sqlite_new(s);
        FunctionRecord f = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        FunctionRecord other = { .tenant = (char *) "u", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        int v = 0;
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_delete_version(fs, "t", "a", 1), -EBUSY); /* the only one */
        for (int i = 0; i < 2; i++)
                assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(function_store_put(fs, &other, &v), 0);
        assert_int_equal(function_store_put(fs, &other, &v), 0);
        assert_int_equal(function_store_delete_version(fs, "t", "a", 3), -EBUSY);
        assert_int_equal(function_store_delete_version(fs, "t", "a", 9), -ENOENT);
        assert_int_equal(function_store_delete_version(fs, "t", "b", 1), -ENOENT);
        assert_int_equal(function_store_delete_version(fs, "t", "a", 2), 0);
        assert_int_equal(function_store_delete_version(fs, "t", "a", 2), -ENOENT);
        FunctionRecord *got = NULL;
        assert_int_equal(function_store_get(fs, "t", "a", 2, &got), -ENOENT);
        assert_int_equal(function_store_get(fs, "u", "a", 2, &got), 0);
        function_record_free(got);
        int *vs = NULL;
        size_t n = 0;
        assert_int_equal(function_store_versions(fs, "t", "a", &vs, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(vs[0], 1);
        assert_int_equal(vs[1], 3);
        free(vs);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(v, 4);
        assert_int_equal(function_store_delete_version(fs, "t", "a", 3), 0);
        assert_int_equal(function_store_get(fs, "t", "a", 0, &got), 0);
        assert_int_equal(got->version, 4);
        function_record_free(got);
        function_store_free(fs);
        store_close(s);
}

/* A URL's CORS settings (docs/endpoints.md "CORS"): only a URL has them,
 * a mode change keeps them (an upsert, not a replace), the URL's removal
 * takes them, and null removes them alone. */
static void test_endpoint_cors(void **state) {
        Store *s = open_fresh();
        int mode = 0;
        char *cors = NULL;
        assert_int_equal(store_endpoint_cors_put(s, "t", "a", "{\"AllowOrigins\":[\"*\"]}"), -ENOENT);
        assert_int_equal(store_endpoint_cors_get(s, "t", "a", &mode, &cors), -ENOENT);
        assert_int_equal(store_endpoint_put(s, "t", "a", 2), 0);
        assert_int_equal(store_endpoint_cors_get(s, "t", "a", &mode, &cors), 0);
        assert_int_equal(mode, 2);
        assert_null(cors);
        assert_int_equal(store_endpoint_cors_put(s, "t", "a", "{\"AllowOrigins\":[\"*\"]}"), 0);
        assert_int_equal(store_endpoint_put(s, "t", "a", 1), 0);
        assert_int_equal(store_endpoint_cors_get(s, "t", "a", &mode, &cors), 0);
        assert_int_equal(mode, 1);
        assert_string_equal(cors, "{\"AllowOrigins\":[\"*\"]}");
        free(cors);
        cors = NULL;
        assert_int_equal(store_endpoint_cors_put(s, "t", "a", NULL), 0);
        assert_int_equal(store_endpoint_cors_get(s, "t", "a", &mode, &cors), 0);
        assert_null(cors);
        assert_int_equal(store_endpoint_cors_put(s, "t", "a", "{}"), 0);
        assert_int_equal(store_endpoint_put(s, "t", "a", 0), 0);
        assert_int_equal(store_endpoint_put(s, "t", "a", 2), 0);
        assert_int_equal(store_endpoint_cors_get(s, "t", "a", &mode, &cors), 0);
        assert_null(cors);
        store_close(s);
}

/* Aliases (store.h "FunctionAlias"): each names an existing version,
 * keeps it from a delete, and goes with the function. */
static void test_function_aliases(void **state) {
#define T "t"
        Store *s = open_fresh();
        FunctionStore *fs = function_store_sqlite_new(s);
        FunctionRecord f = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        int v = 0;
        bool created = false;
        for (int i = 0; i < 3; i++)
                assert_int_equal(function_store_put(fs, &f, &v), 0);
        /* The version must be there, checked with the write. */
        assert_int_equal(function_store_alias_put(fs, T, "a", "prod", 9, NULL, ALIAS_PUT_ANY, NULL), -ENOENT);
        assert_int_equal(function_store_alias_put(fs, "other", "a", "prod", 1, NULL, ALIAS_PUT_ANY, NULL), -ENOENT);
        assert_int_equal(function_store_alias_put(fs, T, "a", "prod", 1, "blue", ALIAS_PUT_ANY, &created), 0);
        assert_true(created);
        assert_int_equal(function_store_alias_put(fs, T, "a", "prod", 2, "green", ALIAS_PUT_ANY, &created), 0);
        assert_false(created);
        assert_int_equal(function_store_alias_put(fs, T, "a", "prod", 1, NULL, ALIAS_PUT_CREATE, NULL), -EEXIST);
        assert_int_equal(function_store_alias_put(fs, T, "a", "beta", 1, NULL, ALIAS_PUT_UPDATE, NULL), -ESRCH);
        assert_int_equal(function_store_alias_put(fs, T, "a", "beta", 1, NULL, ALIAS_PUT_CREATE, &created), 0);
        assert_true(created);
        FunctionAlias a = {};
        assert_int_equal(function_store_alias_get(fs, T, "a", "prod", &a), 0);
        assert_string_equal(a.alias, "prod");
        assert_int_equal(a.version, 2);
        assert_string_equal(a.description, "green");
        assert_true(a.updated > 0);
        function_alias_done(&a);
        assert_int_equal(function_store_alias_get(fs, "other", "a", "prod", &a), -ENOENT);
        assert_int_equal(function_store_alias_get(fs, T, "a", "nope", &a), -ENOENT);
        FunctionAlias *list = NULL;
        size_t n = 0;
        assert_int_equal(function_store_alias_list(fs, T, "a", &list, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(list[0].alias, "beta");
        assert_int_equal(list[0].version, 1);
        assert_string_equal(list[0].description, "");
        assert_string_equal(list[1].alias, "prod");
        function_alias_list_free(list, n);
        /* A version an alias points at stays; so does the latest. */
        assert_int_equal(function_store_delete_version(fs, T, "a", 2), -EMLINK);
        assert_int_equal(function_store_delete_version(fs, T, "a", 1), -EMLINK);
        assert_int_equal(function_store_delete_version(fs, T, "a", 3), -EBUSY);
        assert_int_equal(function_store_alias_delete(fs, T, "a", "beta"), 0);
        assert_int_equal(function_store_alias_delete(fs, T, "a", "beta"), -ENOENT);
        assert_int_equal(function_store_delete_version(fs, T, "a", 1), 0);
        /* The function's delete takes its aliases: a new version 1 is not
         * what they named. */
        assert_int_equal(function_store_delete(fs, T, "a"), 0);
        assert_int_equal(function_store_alias_list(fs, T, "a", &list, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(function_store_put(fs, &f, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(function_store_alias_get(fs, T, "a", "prod", &a), -ENOENT);
        assert_int_equal(function_store_delete_version(fs, T, "a", 1), -EBUSY);
        function_store_free(fs);
        store_close(s);
#undef T
}

/* A stack's writes share one transaction: a failure anywhere in it leaves
 * nothing of it; a commit keeps all of it (docs/stack.md). */
static void test_tx_all_or_nothing(void **state) {
        Store *s = open_fresh();
        FunctionRecord f = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        ScheduleRecord r = { .tenant = (char *) "t", .name = (char *) "n", .function = (char *) "a",
                             .spec = (char *) "@hourly", .tz = (char *) "UTC", .next_fire = 3600 };
        int v = 0;
        assert_int_equal(store_function_put(s, &f, &v), 0);
        assert_int_equal(v, 1);

        /* A second version, an endpoint, a schedule — then a failing write
         * (the schedule again: -EEXIST): rolled back, all of it. */
        assert_int_equal(store_tx_begin(s), 0);
        assert_int_equal(store_function_put_in_tx(s, &f, &v), 0);
        assert_int_equal(v, 2);
        assert_int_equal(store_endpoint_put_in_tx(s, "t", "a", 2), 0);
        assert_int_equal(store_schedule_insert_in_tx(s, &r), 0);
        assert_int_equal(store_schedule_insert_in_tx(s, &r), -EEXIST);
        assert_int_equal(store_tx_end(s, false), 0);
        int *vs = NULL, mode = 0;
        size_t n = 0;
        ScheduleRecord *got = NULL;
        assert_int_equal(store_function_versions(s, "t", "a", &vs, &n), 0);
        assert_int_equal(n, 1);
        free(vs);
        assert_int_equal(store_endpoint_get(s, "t", "a", &mode), -ENOENT);
        assert_int_equal(store_schedule_get(s, "t", "n", &got), -ENOENT);

        /* The same writes committed: all of them are there. */
        assert_int_equal(store_tx_begin(s), 0);
        assert_int_equal(store_function_put_in_tx(s, &f, &v), 0);
        assert_int_equal(store_endpoint_put_in_tx(s, "t", "a", 2), 0);
        assert_int_equal(store_schedule_insert_in_tx(s, &r), 0);
        assert_int_equal(store_tx_end(s, true), 0);
        assert_int_equal(store_function_versions(s, "t", "a", &vs, &n), 0);
        assert_int_equal(n, 2);
        free(vs);
        assert_int_equal(store_endpoint_get(s, "t", "a", &mode), 0);
        assert_int_equal(mode, 2);
        assert_int_equal(store_schedule_get(s, "t", "n", &got), 0);
        schedule_record_free(got);

        /* Deletes in one transaction too; the store is usable after. */
        assert_int_equal(store_tx_begin(s), 0);
        assert_int_equal(store_schedule_delete_in_tx(s, "t", "n"), 0);
        assert_int_equal(store_endpoint_put_in_tx(s, "t", "a", 0), 0);
        assert_int_equal(store_function_delete_in_tx(s, "t", "a"), 0);
        assert_int_equal(store_function_delete_in_tx(s, "t", "a"), -ENOENT);
        assert_int_equal(store_tx_end(s, true), 0);
        FunctionRecord *fr = NULL;
        assert_int_equal(store_function_get(s, "t", "a", 0, &fr), -ENOENT);
        assert_int_equal(store_schedule_get(s, "t", "n", &got), -ENOENT);
        store_close(s);
}

/* A get inside the transaction reads the write connection, so it sees the
 * transaction's own writes; a get outside reads the last commit. Both
 * answer -ENOENT for a name with no version. */
static void test_function_get_in_tx(void **state) {
        Store *s = open_fresh();
        FunctionRecord f = { .tenant = (char *) "t", .name = (char *) "a", .source = (char *) "def a(): pass\n" };
        FunctionRecord *got = NULL;
        int v = 0;
        assert_int_equal(store_function_put(s, &f, &v), 0);

        assert_int_equal(store_tx_begin(s), 0);
        f.source = (char *) "def a(): return 2\n";
        assert_int_equal(store_function_put_in_tx(s, &f, &v), 0);
        assert_int_equal(v, 2);
        assert_int_equal(store_function_get_in_tx(s, "t", "a", &got), 0);
        assert_int_equal(got->version, 2);
        assert_string_equal(got->source, "def a(): return 2\n");
        function_record_free(got);
        got = NULL;
        assert_int_equal(store_function_get_in_tx(s, "t", "b", &got), -ENOENT);
        assert_int_equal(store_function_get_in_tx(s, "u", "a", &got), -ENOENT);
        assert_null(got);
        assert_int_equal(store_tx_end(s, false), 0);

        assert_int_equal(store_function_get(s, "t", "a", 0, &got), 0);
        assert_int_equal(got->version, 1);
        assert_string_equal(got->source, "def a(): pass\n");
        function_record_free(got);
        assert_int_equal(store_function_get(s, "t", "a", 1, &got), 0);
        assert_int_equal(got->version, 1);
        function_record_free(got);
        got = NULL;
        assert_int_equal(store_function_get(s, "t", "a", 2, &got), -ENOENT);
        assert_int_equal(store_function_get(s, "t", "b", 0, &got), -ENOENT);
        assert_null(got);
        store_close(s);
}

/* ---- the dashboard's reads (docs/ui.md): a run's lock, where data is used ---- */

static void submit_req(RunQueue *q, const char *id, const char *tenant, usec_t created, const char *request) {
        RunRecord r = { .id = (char *) id, .tenant = (char *) tenant, .filename = (char *) "f.py",
                        .created = created, .max_attempts = 1 };
        assert_int_equal(run_queue_submit(q, &r, request), 0);
}

static void test_run_lock_and_dataset_usage(void **state) {
        Store *s = open_fresh();
        RunQueue *q = run_queue_sqlite_new(s);
        submit_req(q, "u1", "t", 1, "{\"source\":\"x\",\"data\":[\"numbers\"]}");
        submit_req(q, "u2", "t", 2, "{\"source\":\"x\",\"data\":[\"other\",\"numbers@2\"],\"fn_name\":\"g\"}");
        submit_req(q, "u3", "t", 3, "{\"source\":\"x\",\"data\":[\"numbers2\"]}");   /* another name */
        submit_req(q, "u4", "u", 4, "{\"source\":\"x\",\"data\":[\"numbers\"]}");    /* another tenant */
        submit_req(q, "u5", "t", 5, "{\"source\":\"x\"}");

        DatasetRunUse *v = NULL;
        size_t n = 0;
        assert_int_equal(store_dataset_runs(s, "t", "numbers", 10, &v, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0].run_id, "u2");          /* newest first */
        assert_string_equal(v[0].ref, "numbers@2");
        assert_string_equal(v[0].fn_name, "g");          /* the submit's INSERT fills it */
        assert_string_equal(v[1].run_id, "u1");
        assert_null(v[1].fn_name);
        dataset_run_use_list_free(v, n);
        assert_int_equal(store_dataset_runs(s, "t", "numbers", 1, &v, &n), 0);
        assert_int_equal(n, 1);
        dataset_run_use_list_free(v, n);
        /* Kept after the run ends and its request is dropped. */
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "u1", 6, &attempt), 0);
        RunRecord end = { .id = (char *) "u1", .status = (char *) "succeeded", .exit_code = 0, .finished = 7 };
        assert_int_equal(run_queue_finish(q, &end, attempt), 0);
        assert_int_equal(store_dataset_runs(s, "t", "numbers", 10, &v, &n), 0);
        assert_int_equal(n, 2);
        dataset_run_use_list_free(v, n);

        /* The lock goes with the final write; a later update without one
         * keeps it. */
        char *lock = (char *) "x";
        assert_int_equal(store_run_get_lock(s, "t", "u5", &lock), 0);
        assert_null(lock);
        assert_int_equal(run_queue_start(q, "u5", 8, &attempt), 0);
        RunRecord fin = { .id = (char *) "u5", .status = (char *) "succeeded", .exit_code = 0, .finished = 9,
                          .lock_json = (char *) "{\"packages\":[]}" };
        assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
        assert_int_equal(store_run_get_lock(s, "t", "u5", &lock), 0);
        assert_string_equal(lock, "{\"packages\":[]}");
        free(lock);
        fin.lock_json = NULL;
        assert_int_equal(store_run_update(s, &fin), 0);
        assert_int_equal(store_run_get_lock(s, "t", "u5", &lock), 0);
        assert_string_equal(lock, "{\"packages\":[]}");
        free(lock);
        assert_int_equal(store_run_get_lock(s, "u", "u5", &lock), -ENOENT);   /* per tenant */
        run_queue_free(q);
        store_close(s);
}

/* ---- group commit (store-writer.c) ---- */

static Store *open_at(char **ret_path) {
        static int n = 200;
        char *path = xasprintf("%s/db%d.sqlite", dir, n++);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        *ret_path = path;
        return s;
}

/* What a second connection (another process, a restart) sees of id. */
static char *committed_status(sqlite3 *db, const char *id, int *ret_attempt) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT status, attempt FROM runs WHERE id=?1", -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        char *status = NULL;
        if (sqlite3_step(st) == SQLITE_ROW) {
                status = xstrdup((const char *) sqlite3_column_text(st, 0));
                if (ret_attempt)
                        *ret_attempt = sqlite3_column_int(st, 1);
        }
        sqlite3_finalize(st);
        return status;
}

#define GC_THREADS 8
#define GC_RUNS 60

typedef struct Submitter {
        RunQueue *q;
        Store *s;
        const char *path;
        int index;
        int not_committed;  /* waiters released before their record was readable elsewhere */
} Submitter;

static void *submitter(void *p) {
        Submitter *w = p;
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(w->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 10000);
        for (int i = 0; i < GC_RUNS; i++) {
                _cleanup_free_ char *id = xasprintf("g%d-%d", w->index, i);
                RunRecord r = { .id = id, .tenant = (char *) "a", .filename = (char *) "f.py", .created = 1,
                                .max_attempts = 3 };
                assert_int_equal(run_queue_submit(w->q, &r, "{\"source\":\"x\"}"), 0);
                _cleanup_free_ char *st1 = committed_status(db, id, NULL);
                if (!st1 || !streq(st1, "queued"))
                        w->not_committed++;
                int attempt = 0;
                assert_int_equal(run_queue_start(w->q, id, 2, &attempt), 0);
                assert_int_equal(attempt, 1);
                RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3 };
                assert_int_equal(run_queue_finish(w->q, &fin, attempt), 0);
                _cleanup_free_ char *st2 = committed_status(db, id, NULL);
                if (!st2 || !streq(st2, "succeeded"))
                        w->not_committed++;
        }
        sqlite3_close(db);
        return NULL;
}

static void test_group_commit_batches_and_releases_after_commit(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        uint64_t before = store_commits(s);
        pthread_t t[GC_THREADS];
        Submitter w[GC_THREADS];
        for (int i = 0; i < GC_THREADS; i++) {
                w[i] = (Submitter) { .q = q, .s = s, .path = path, .index = i };
                assert_int_equal(pthread_create(&t[i], NULL, submitter, &w[i]), 0);
        }
        for (int i = 0; i < GC_THREADS; i++) {
                pthread_join(t[i], NULL);
                /* Every submit and finish was readable through another
                 * connection when its caller got the answer. */
                assert_int_equal(w[i].not_committed, 0);
        }
        assert_int_equal(store_flush(s), 0);
        uint64_t commits = store_commits(s) - before;
        unsigned writes = GC_THREADS * GC_RUNS * 3; /* submit, start, finish */
        print_message("group commit: %u writes in %llu transactions\n", writes, (unsigned long long) commits);
        assert_true(commits > 0);
        assert_true(commits < writes);
        run_queue_free(q);
        store_close(s);
}

static void test_writer_flushes_unwaited_starts_on_close(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        char ids[50][16];
        for (int i = 0; i < 50; i++) {
                snprintf(ids[i], sizeof(ids[i]), "fl%d", i);
                submit(q, ids[i], 3, 1);
        }
        /* The last allowed attempt (retries: 0) starts durably: a crash
         * during it must end it lost, never run it twice. */
        submit(q, "once", 1, 1);
        int once = 0;
        assert_int_equal(run_queue_start(q, "once", 2, &once), 0);
        assert_int_equal(once, 1);
        sqlite3 *db0 = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db0, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        _cleanup_free_ char *st0 = committed_status(db0, "once", NULL);
        assert_string_equal(st0, "running");
        sqlite3_close(db0);
        int attempt = 0;
        for (int i = 0; i < 50; i++)
                assert_int_equal(run_queue_start(q, ids[i], 2, &attempt), 0);
        run_queue_free(q);
        store_close(s);   /* nobody waited for the starts: close commits them */
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        for (int i = 0; i < 50; i++) {
                int a = 0;
                _cleanup_free_ char *st = committed_status(db, ids[i], &a);
                assert_non_null(st);
                assert_string_equal(st, "running");
                assert_int_equal(a, 1);
        }
        sqlite3_close(db);
}

/* Voluntary context switches of every thread of this process but the
 * calling one and the checkpointer (here: the store's writer thread). */
static long other_threads_switches(void) {
        long total = 0;
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || atol(de->d_name) == (long) gettid())
                        continue;
                _cleanup_free_ char *path = xasprintf("/proc/self/task/%s/status", de->d_name);
                _cleanup_free_ char *text = NULL;
                if (read_file(path, 1 << 16, &text, NULL) < 0 || strstr(text, "Name:\tstore-ckpt\n"))
                        continue;
                const char *v = strstr(text, "\nvoluntary_ctxt_switches:");
                if (v)
                        total += atol(v + strlen("\nvoluntary_ctxt_switches:"));
        }
        closedir(d);
        return total;
}

/* An invoke enqueues its start (nobody waits) and then commits its finish
 * itself, taking the start along: the writer thread has nothing to do and
 * must not be woken for each start (a wake-up is two context switches). */
#define WAKE_RUNS 300
static void test_writer_not_woken_per_unwaited_write(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        /* The first start makes the writer thread. */
        submit(q, "w-first", 3, 1);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "w-first", 2, &attempt), 0);
        assert_int_equal(store_flush(s), 0);
        long before = other_threads_switches();
        usec_t t0 = now_monotonic();
        for (int i = 0; i < WAKE_RUNS; i++) {
                char id[32];
                snprintf(id, sizeof(id), "w%d", i);
                submit(q, id, 3, 1);
                assert_int_equal(run_queue_start(q, id, 2, &attempt), 0);
                RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3 };
                assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
        }
        usec_t elapsed = now_monotonic() - t0;
        long wakes = other_threads_switches() - before;
        print_message("writer: %ld context switches over %d start+finish in %.1f ms\n", wakes, WAKE_RUNS,
                      elapsed / 1000.0);
        /* At most a periodic look (every 2 ms) while starts keep coming,
         * never one per start. */
        assert_true(wakes < WAKE_RUNS / 3 && wakes <= (long) (elapsed / 1000) + 4);
        /* A start nobody takes along is still committed by the writer. */
        submit(q, "w-alone", 3, 1);
        assert_int_equal(run_queue_start(q, "w-alone", 2, &attempt), 0);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 10000);
        usec_t deadline = now_monotonic() + 10 * USEC_PER_SEC;
        bool running = false;
        while (!running && now_monotonic() < deadline) {
                _cleanup_free_ char *st = committed_status(db, "w-alone", NULL);
                running = st && streq(st, "running");
                if (!running)
                        usleep(1000);
        }
        sqlite3_close(db);
        assert_true(running);
        run_queue_free(q);
        store_close(s);
}

typedef struct BlockedWriter {
        RunQueue *q;
        atomic_bool started, done; /* read by the test while the writer sets them */
        int result;
} BlockedWriter;

static void *blocked_writer(void *p) {
        BlockedWriter *b = p;
        b->started = true;
        RunRecord r = { .id = (char *) "bw-1", .tenant = (char *) "a", .filename = (char *) "f.py", .created = 1,
                        .max_attempts = 1 };
        b->result = run_queue_submit(b->q, &r, "{\"source\":\"x\"}");
        b->done = true;
        return NULL;
}

/* A run's answer and a function's lookup (every invoke) read through a
 * connection of their own: they do not wait behind a write that waits for
 * SQLite's lock (here another process's transaction; in the daemon a
 * group commit in progress). */
static void test_reads_do_not_wait_for_the_writer(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        submit(q, "bw-0", 1, 1);
        sqlite3 *other = NULL;
        assert_int_equal(sqlite3_open_v2(path, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        BlockedWriter b = { .q = q };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, blocked_writer, &b), 0);
        while (!b.started)
                ;
        /* Reads for a while the writer is stuck on the lock (its busy
         * timeout is 10 s): each must answer from the last commit. */
        usec_t t0 = now_monotonic();
        unsigned reads = 0;
        while (now_monotonic() - t0 < 300 * USEC_PER_MSEC) {
                RunRecord *r = NULL;
                assert_int_equal(store_run_get(s, NULL, "bw-0", &r), 0);
                assert_string_equal(r->status, "queued");
                run_record_free(r);
                reads++;
        }
        bool writer_done_early = b.done;
        assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(other);
        pthread_join(t, NULL);
        assert_false(writer_done_early); /* the reads did not wait for it */
        assert_int_equal(b.result, 0);
        assert_true(reads > 1);
        RunRecord *r = NULL;
        assert_int_equal(store_run_get(s, NULL, "bw-1", &r), 0);
        run_record_free(r);
        run_queue_free(q);
        store_close(s);
}

static void test_lock_text_stored_once(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        const char *lock_a = "{\"packages\":[{\"name\":\"requests\",\"version\":\"2.31.0\"}]}";
        const char *lock_b = "{\"packages\":[]}";
        for (int i = 0; i < 6; i++) {
                char id[16];
                snprintf(id, sizeof(id), "lk%d", i);
                submit(q, id, 1, 1);
                int attempt = 0;
                assert_int_equal(run_queue_start(q, id, 2, &attempt), 0);
                RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3,
                                  .lock_json = (char *) (i == 5 ? lock_b : lock_a) };
                assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
        }
        for (int i = 0; i < 6; i++) {
                char id[16], *lock = NULL;
                snprintf(id, sizeof(id), "lk%d", i);
                assert_int_equal(store_run_get_lock(s, "a", id, &lock), 0);
                assert_string_equal(lock, i == 5 ? lock_b : lock_a);
                free(lock);
        }
        run_queue_free(q);
        store_close(s);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db,
                                            "SELECT (SELECT count(*) FROM locks), "
                                            "(SELECT count(*) FROM runs WHERE lock_json IS NOT NULL), "
                                            "(SELECT count(DISTINCT lock_sha256) FROM runs)",
                                            -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(st, 0), 2);   /* two distinct texts */
        assert_int_equal(sqlite3_column_int(st, 1), 0);   /* no run carries the text */
        assert_int_equal(sqlite3_column_int(st, 2), 2);
        sqlite3_finalize(st);
        sqlite3_close(db);
}


/* ---- WAL checkpoints off the request path (store-checkpoint.c) ----
 * A wrapper of SQLite's default VFS (the real one does the I/O) that counts
 * the syncs of the database file itself, by thread: only a checkpoint
 * syncs it in WAL mode. The wrapper patches the opened file's method table
 * (the unix VFS's file methods never look at it) and keeps whether the file
 * is a main database after the real file's bytes. */
static sqlite3_vfs *real_vfs;
static sqlite3_vfs counting_vfs;
static _Atomic unsigned db_syncs_total;
static _Thread_local unsigned db_syncs_here;
static struct {
        const sqlite3_io_methods *real;
        sqlite3_io_methods patched;
} patched[8];
static pthread_mutex_t patched_lock = PTHREAD_MUTEX_INITIALIZER;

static bool *file_is_db(sqlite3_file *f) {
        return (bool *) ((char *) f + real_vfs->szOsFile);
}

static int counting_sync(sqlite3_file *f, int flags) {
        const sqlite3_io_methods *real = NULL;
        pthread_mutex_lock(&patched_lock);
        for (size_t i = 0; i < ELEMENTSOF(patched); i++)
                if (f->pMethods == &patched[i].patched)
                        real = patched[i].real;
        pthread_mutex_unlock(&patched_lock);
        if (*file_is_db(f)) {
                db_syncs_total++;
                db_syncs_here++;
        }
        return real->xSync(f, flags);
}

static int counting_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out) {
        (void) v;
        int rc = real_vfs->xOpen(real_vfs, name, f, flags, out);
        *file_is_db(f) = (flags & SQLITE_OPEN_MAIN_DB) != 0;
        if (rc != SQLITE_OK || !f->pMethods)
                return rc;
        pthread_mutex_lock(&patched_lock);
        size_t i = 0;
        while (i < ELEMENTSOF(patched) && patched[i].real && patched[i].real != f->pMethods)
                i++;
        assert_true(i < ELEMENTSOF(patched));
        if (!patched[i].real) {
                patched[i].real = f->pMethods;
                patched[i].patched = *f->pMethods;
                patched[i].patched.xSync = counting_sync;
        }
        f->pMethods = &patched[i].patched;
        pthread_mutex_unlock(&patched_lock);
        return rc;
}

static void counting_vfs_install(void) {
        if (real_vfs)
                return;
        real_vfs = sqlite3_vfs_find(NULL);
        counting_vfs = *real_vfs;
        counting_vfs.zName = "counting";
        counting_vfs.szOsFile = real_vfs->szOsFile + (int) sizeof(bool);
        counting_vfs.xOpen = counting_open;
        assert_int_equal(sqlite3_vfs_register(&counting_vfs, 1), SQLITE_OK);
}

static off_t file_size(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Run PREFIX+i through the queue: submitted, started and ended. */
static void run_through(RunQueue *q, const char *prefix, int i) {
        char id[32];
        snprintf(id, sizeof(id), "%s%d", prefix, i);
        submit(q, id, 3, 1);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, id, 2, &attempt), 0);
        RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3 };
        assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
}

#define CKPT_INVOKES 20000

static void test_wal_checkpoints_off_the_request_path_and_bounded(void **state) {
        counting_vfs_install();
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        RunQueue *q = run_queue_sqlite_new(s);
        db_syncs_here = 0;
        off_t wal_max = 0;
        for (int i = 0; i < CKPT_INVOKES; i++) {
                run_through(q, "ck", i);
                if (i % 50 == 0 && file_size(wal) > wal_max)
                        wal_max = file_size(wal);
        }
        StoreCheckpointStats cs;
        store_checkpoint_stats(s, &cs);
        uint64_t checkpoints = cs.checkpoints, capped = cs.capped;
        print_message("%d invokes: %u database syncs, %u by the writing thread; %llu checkpoints by the thread "
                      "(%llu capped), %llu in a commit; writers held off %.1f ms in all, %.2f ms at most; WAL at "
                      "most %lld KiB\n",
                      CKPT_INVOKES, (unsigned) db_syncs_total, db_syncs_here, (unsigned long long) checkpoints,
                      (unsigned long long) capped, (unsigned long long) cs.inline_checkpoints,
                      cs.stall_total_usec / 1e3, cs.stall_max_usec / 1e3, (long long) wal_max / 1024);
        /* The thread checkpointed (synced the database); a thread that
         * commits a run's record synced it only in the short pass that
         * restarts the WAL (once per ~16000 frames: the writers waited for
         * it when the thread ran it holding their lock) and in the
         * backstop's checkpoints (none on a machine whose disk keeps up):
         * 208 syncs here when SQLite checkpointed in the commits. */
        assert_true(checkpoints >= 1);
        assert_true(db_syncs_total > db_syncs_here);
        assert_true(db_syncs_here <= cs.inline_checkpoints + capped);
        assert_true(cs.inline_checkpoints <= checkpoints);
        /* And the WAL was reused from its start again and again: it stays
         * under the backstop (32000 frames of 4 KiB) plus one batch,
         * instead of growing with the runs (~840 MiB after these 20000
         * when it is never reused). */
        assert_true(wal_max > 0);
        assert_true(wal_max <= 33000 * (4096 + 24));
        run_queue_free(q);
        store_close(s);
}

/* ---- the WAL's restart waits for no database write-back (round 7) ----
 * SQLite syncs the database only in a checkpoint that copies every frame:
 * the WAL-restarting pass a commit runs with the writers held off. The
 * checkpointer writes the pages its passes copied back as it goes and
 * waits for them before it asks for a restart, so that pass's sync finds
 * none left (before: every page of the ~16 passes since the last restart,
 * 1–6 MiB, written back while an invoke waited). */
static void test_wal_restart_finds_database_written_back(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        StoreCheckpointStats cs = {};
        for (int i = 0; i < CKPT_INVOKES && cs.capped < 2; i++) {
                char id[32];
                snprintf(id, sizeof(id), "rw%d", i);
                submit(q, id, 3, 1);
                int attempt = 0;
                assert_int_equal(run_queue_start(q, id, 2, &attempt), 0);
                RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3 };
                assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
                if (i % 100 == 0)
                        store_checkpoint_stats(s, &cs);
        }
        store_checkpoint_stats(s, &cs);
        print_message("restarts %llu (backstop %llu): database pages unwritten at a restart, at most %llu; "
                      "writers held off %.2f ms at most\n",
                      (unsigned long long) cs.capped, (unsigned long long) cs.inline_checkpoints,
                      (unsigned long long) cs.restart_dirty_max, cs.stall_max_usec / 1e3);
        if (cs.restart_dirty_max == UINT64_MAX) {
                run_queue_free(q);
                store_close(s);
                skip(); /* no cachestat(2) */
        }
        assert_true(cs.capped >= 1);
        assert_true(cs.restart_dirty_max <= 16);
        run_queue_free(q);
        store_close(s);
}

/* Bytes this process's threads other than the checkpointer had read from
 * the disk (/proc/self/task/TID/io read_bytes: counted in the thread that
 * submitted the read), or -1 where the kernel does not count them. */
static long long reads_outside_checkpointer(void) {
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        long long sum = -1;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *cpath = xasprintf("/proc/self/task/%s/comm", de->d_name);
                _cleanup_free_ char *comm = NULL;
                if (read_file(cpath, 256, &comm, NULL) >= 0 && startswith(comm, "store-ckpt"))
                        continue;
                _cleanup_free_ char *ipath = xasprintf("/proc/self/task/%s/io", de->d_name);
                _cleanup_free_ char *io = NULL;
                const char *p;
                if (read_file(ipath, 4096, &io, NULL) < 0 || !(p = strstr(io, "read_bytes: ")))
                        continue;
                sum = (sum < 0 ? 0 : sum) + atoll(p + strlen("read_bytes: "));
        }
        closedir(d);
        return sum;
}

/* What one measure of a bound found: the bound kept, the bound exceeded,
 * or the case the bound is about did not arise (another process's load
 * kept it from happening), which judges nothing. */
typedef enum Measure {
        MEASURE_OVER,
        MEASURE_WITHIN,
        MEASURE_UNJUDGED,
} Measure;

/* Round 9 (the tail): a commit into a reused WAL writes frames (4120
 * bytes: not page-aligned) over pages written one cap earlier; where the
 * kernel evicted them meanwhile (memory reclaim: DAMON's pageout here
 * takes pages idle for seconds), ext4 reads each block back before the
 * partial write (ext4_block_write_begin), in the committing thread, i.e.
 * an invoke's: measured 0.3–3 ms per commit for the first commits after a
 * WAL restart. The checkpointer reads the WAL ahead of the writes. Here
 * the old frames ahead of the writes are evicted (as reclaim would) just
 * after a restart; until the next one the committing threads read
 * (almost) nothing of it back from the disk. */
static Measure wal_reuse_read_little(void) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        RunQueue *q = run_queue_sqlite_new(s);
        StoreCheckpointStats cs = {};
        long long reads0 = -1, evicted_at = 0, evicted = 0;
        for (int i = 0; i < CKPT_INVOKES * 2 && cs.capped < 2; i++) {
                char id[32];
                snprintf(id, sizeof(id), "wr%d", i);
                submit(q, id, 3, 1);
                int attempt = 0;
                assert_int_equal(run_queue_start(q, id, 2, &attempt), 0);
                RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3 };
                assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
                if (i % 50)
                        continue;
                store_checkpoint_stats(s, &cs);
                if (cs.capped == 1 && reads0 < 0) {
                        /* Restarted: the writes are near the WAL's start.
                         * Evict the old frames from 16 MiB on (clean: the
                         * restart synced them), as reclaim would have. */
                        int fd = open(wal, O_RDONLY | O_CLOEXEC);
                        assert_true(fd >= 0);
                        evicted_at = 16 << 20;
                        evicted = file_size(wal) - evicted_at;
                        assert_int_equal(posix_fadvise(fd, evicted_at, 0, POSIX_FADV_DONTNEED), 0);
                        close(fd);
                        reads0 = reads_outside_checkpointer();
                        if (reads0 < 0) {
                                run_queue_free(q);
                                store_close(s);
                                skip(); /* no per-thread I/O accounting */
                        }
                }
        }
        long long reads = reads_outside_checkpointer() - reads0;
        print_message("restarts %llu (backstop %llu); read from the disk by the committing threads after the "
                      "eviction: %lld KiB (WAL %lld MiB)\n", (unsigned long long) cs.capped,
                      (unsigned long long) cs.inline_checkpoints, reads / 1024, (long long) file_size(wal) >> 20);
        assert_true(cs.capped >= 2);
        assert_true(reads0 >= 0);
        assert_true(evicted >= 32 << 20);
        /* Before: the whole evicted span was read back by the commits
         * (52 MiB of ~53). After: none on a quiet machine; under load a
         * checkpointer starved at SCHED_IDLE lets the writes overtake its
         * read-ahead for a while (measured 0.5–4.7 MiB at load average 10
         * with other tests running): at most an eighth. */
        run_queue_free(q);
        store_close(s);
        return reads < evicted / 8 ? MEASURE_WITHIN : MEASURE_OVER;
}

static void within_bound_in_three_tries(Measure (*measure)(void));

/* Taken again up to three times in all before it fails: a checkpointer
 * starved for long by other work on the machine (ASan's suites beside it,
 * CI74 and CI77 with helpers' tests running) read 21 MiB back once; a
 * store that does not read ahead reads the whole span every time. */
static void test_wal_reuse_reads_nothing_in_the_committing_thread(void **state) {
        (void) state;
        within_bound_in_three_tries(wal_reuse_read_little);
}

/* ---- the checkpointer is a background thread (round 6: the tail) ----
 * The scheduling policy of the thread named name in this process, as
 * /proc/self/task/TID/stat shows it (field 41), or -1 without one. */
static int thread_policy(const char *name) {
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        int policy = -1;
        struct dirent *de;
        _cleanup_free_ char *want = xasprintf("Name:\t%s\n", name);
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *spath = xasprintf("/proc/self/task/%s/status", de->d_name);
                _cleanup_free_ char *status = NULL;
                if (read_file(spath, 1 << 16, &status, NULL) < 0 || !strstr(status, want))
                        continue;
                _cleanup_free_ char *path = xasprintf("/proc/self/task/%s/stat", de->d_name);
                _cleanup_free_ char *stat = NULL;
                assert_int_equal(read_file(path, 1 << 16, &stat, NULL) >= 0, 1);
                /* After the command's ")": field 3 onwards; policy is 41. */
                const char *p = strrchr(stat, ')');
                assert_non_null(p);
                p += 2;
                for (int field = 3; field < 41 && p; field++) {
                        p = strchr(p, ' ');
                        if (p)
                                p++;
                }
                assert_non_null(p);
                policy = atoi(p);
        }
        closedir(d);
        return policy;
}

/* A checkpoint pass (4–7 ms of WAL and database syncs, ~0.6 ms of it on a
 * CPU submitting the writeback) must not delay a run: measured, the
 * slowest 1% of sequential invokes right after a busy spell were the
 * instance or the request thread woken on the CPU the checkpointer held.
 * At SCHED_IDLE any other thread that wakes takes the CPU at once. */
static void test_checkpointer_runs_at_idle_priority(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        assert_int_equal(thread_policy("store-ckpt"), SCHED_IDLE);
        /* This thread (the writers') is untouched. */
        assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
        store_close(s);
}

/* Round 16: the host charges this VM per disk request more than per
 * byte, and a checkpoint pass's requests are mostly fixed (the
 * database's hot pages, each a small write, and two flushes). The
 * checkpointer runs a pass once ~4000 frames have arrived, not at
 * SQLite's 1000: a WAL of 3000 frames is left alone (base16 checkpointed
 * it three times), and one past 4000 is checkpointed. */
static int wal_frames_on_disk(const char *wal) {
        off_t size = file_size(wal);
        return size > 32 ? (int) ((size - 32) / (4096 + 24)) : 0;
}

static void test_checkpoint_waits_for_4000_frames(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        RunQueue *q = run_queue_sqlite_new(s);
        StoreCheckpointStats cs;
        int i = 0;
        bool looked = false;
        for (bool past = false; !past; i++) {
                run_through(q, "cw", i);
                int frames = wal_frames_on_disk(wal);
                if (frames >= 3000 && !looked) {
                        /* Time for a pass the trigger would have asked for. */
                        usleep(300 * 1000);
                        store_checkpoint_stats(s, &cs);
                        assert_int_equal(cs.checkpoints, 0);
                        looked = true;
                }
                past = frames >= 4200;
        }
        /* At SCHED_IDLE the pass may wait for a loaded machine's CPUs. */
        for (int t = 0; t < 2000; t++) {
                store_checkpoint_stats(s, &cs);
                if (cs.checkpoints > 0)
                        break;
                usleep(10 * 1000);
        }
        print_message("%d runs, %d WAL frames: %llu checkpoints\n", i, wal_frames_on_disk(wal),
                      (unsigned long long) cs.checkpoints);
        assert_true(cs.checkpoints >= 1);
        run_queue_free(q);
        store_close(s);
}

/* Round 16: the host charges this VM for bursts of bytes to its disk
 * (the daemon's own requests replayed: 0.23-0.34% of the time paused as
 * recorded, 0.05% spread evenly). The checkpointer starts the WAL's
 * write-back every 256 frames as the commits append, not all at once at
 * its pass: 1800 frames committed and no pass yet (base16 made its pass
 * at 1000 and left the next 800 dirty), and at most ~2 spans' pages of
 * the WAL are dirty. */
static uint64_t dirty_pages_of(const char *path) {
        struct {
                uint64_t off, len;
        } range = { 0, 0 };
        struct {
                uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
        } cs = {};
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || syscall(451 /* cachestat */, fd, &range, &cs, 0) < 0)
                return UINT64_MAX;
        return cs.nr_dirty;
}

static void test_wal_written_back_as_frames_arrive(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        struct statfs fs;
        if (statfs(dir, &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
                store_close(s);
                skip(); /* tmpfs: nothing is ever written back */
        }
        RunQueue *q = run_queue_sqlite_new(s);
        for (int i = 0; wal_frames_on_disk(wal) < 1800; i++) {
                run_through(q, "wb", i);
        }
        /* The checkpointer runs at SCHED_IDLE: under a loaded machine (the
         * suite's other tests) its next span may wait. Base16 left ~800
         * frames dirty for the kernel's 30 s expiry, so a wait of
         * seconds still tells them apart. */
        uint64_t dirty = UINT64_MAX;
        for (int t = 0; t < 100; t++) {
                usleep(100 * 1000);
                dirty = dirty_pages_of(wal);
                if (dirty == UINT64_MAX || dirty <= 2 * 256 + 16)
                        break;
        }
        StoreCheckpointStats cs;
        store_checkpoint_stats(s, &cs);
        print_message("%d WAL frames, %llu checkpoints, %llu of its pages dirty\n", wal_frames_on_disk(wal),
                      (unsigned long long) cs.checkpoints, (unsigned long long) dirty);
        if (dirty == UINT64_MAX) {
                run_queue_free(q);
                store_close(s);
                skip(); /* no cachestat(2): Linux < 6.5 */
        }
        assert_int_equal(cs.checkpoints, 0);
        assert_true(dirty <= 2 * 256 + 16);
        run_queue_free(q);
        store_close(s);
}

/* Round 17: the host pauses this VM for bursts of the daemon's bytes at
 * a granularity of ~100-200 ms (bench/disk_replay.py burst=N), and a
 * pass's database pages were the largest: round 16 wrote them a MiB per
 * 50 ms, ~20 MiB/s against the daemon's mean of ~7. Under commits at a
 * steady pace, the checkpointer now writes them back in step with the
 * appends: within any 100 ms, at most 128 of them (base17: all ~230 of
 * them at once; a sampler reads the database file's dirty
 * pages every 2 ms, and what left them within 100 ms is the write-back
 * started then). */
#define EVEN_SAMPLES 8000
typedef struct EvenSampler {
        const char *path;
        atomic_bool stop;
        int n;
        uint64_t dirty[EVEN_SAMPLES];
        usec_t at[EVEN_SAMPLES];
} EvenSampler;

static void *even_sampler(void *p) {
        EvenSampler *e = p;
        while (!atomic_load(&e->stop) && e->n < EVEN_SAMPLES) {
                e->dirty[e->n] = dirty_pages_of(e->path);
                e->at[e->n++] = now_monotonic();
                usleep(2000);
        }
        return NULL;
}

/* A run with a request and a value of the daemon's order of size, its id
 * anywhere in the key's range: a pass's copy touches many pages, as the
 * daemon's runs do (~2800 a pass at wrk -c8). */
/* Run id through the queue as run_through() does, submitted with body
 * and ended with value. */
static void run_with_value(RunQueue *q, const char *id, const char *body, const char *value) {
        RunRecord r = { .id = (char *) id, .tenant = (char *) "a", .filename = (char *) "f.py", .created = 1,
                        .max_attempts = 1 };
        assert_int_equal(run_queue_submit(q, &r, body), 0);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, id, 2, &attempt), 0);
        RunRecord fin = { .id = (char *) id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3,
                          .value_json = (char *) value };
        assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
}

static void run_sized(RunQueue *q, int i) {
        char id[32], body[1600], value[800];
        snprintf(id, sizeof(id), "ev%08lx%d", random(), i);
        snprintf(body, sizeof(body), "{\"source\":\"%01500d\"}", i);
        snprintf(value, sizeof(value), "\"%0700d\"", i);
        run_with_value(q, id, body, value);
}

/* A run whose value spans a dozen overflow pages: a pass's copy then
 * leaves the database about as many new pages per frame as the daemon's
 * (~0.9), side by side at the file's end. */
static void run_big(RunQueue *q, int i) {
        char id[32], value[48 * 1024];
        snprintf(id, sizeof(id), "big%08d", i);
        snprintf(value, sizeof(value), "\"%0*d\"", (int) sizeof(value) - 3, i);
        run_with_value(q, id, "{}", value);
}

/* The most of the sampled file's pages that left the dirty ones within
 * any 100 ms (~50 samples), and the most dirty at once. */
/* A pass's pages are written back over seconds, so no 100 ms holds more
 * than three quarters of the most that were dirty at once: here ~40%
 * (50-63 of 130-160), base17 all of them at once (a MiB per 50 ms). A
 * share of the most rather than a number of pages: on a loaded machine
 * (meson runs the suites side by side) a late tick or sampler puts a third
 * share in one window (130 pages against a bound of 128, once in round
 * 18), and the most itself moves with the pass. At least 64 dirty at once
 * (a walk, not one write: pace_db_begin()), or the test saw no pass. */
#define LEFT_IN_100MS_MAX(most) ((most) * 3 / 4)

static uint64_t most_written_back_in_100ms(const EvenSampler *e, uint64_t *ret_most) {
        uint64_t most = 0, left = 0;
        for (int k = 0; k < e->n; k++) {
                if (e->dirty[k] != UINT64_MAX && e->dirty[k] > most)
                        most = e->dirty[k];
                uint64_t gone = 0;
                /* By the samples' clock, not their count: a sampler
                 * held up on a loaded machine (ASan's CI beside the e2e
                 * suite) takes 50 samples over more than 100 ms. */
                for (int j = k + 1; j < e->n && e->at[j] - e->at[k] <= 100 * USEC_PER_MSEC; j++)
                        if (e->dirty[j] < e->dirty[j - 1])
                                gone += e->dirty[j - 1] - e->dirty[j];
                if (gone > left)
                        left = gone;
        }
        usec_t gap = 0;
        for (int k = 1; k < e->n; k++)
                gap = MAX(gap, e->at[k] - e->at[k - 1]);
        print_message("the sampler's largest gap between two samples: %llu us\n", (unsigned long long) gap);
        *ret_most = most;
        return left;
}

/* Whether the checkpointer kept its tick (the longest gap between two
 * under 150 ms, 50 ms when on time). It runs at SCHED_IDLE, and beside
 * the other suites (meson runs them side by side) it can get no CPU for
 * long: its late tick then writes the share of every frame appended
 * meanwhile at once, and the 100 ms bound is not judged (said). On a
 * quiet machine the tick is kept, and an all-at-once write-back still
 * fails the test. */
static bool ticks_kept(const StoreCheckpointStats *cs) {
        print_message("the checkpointer's longest gap between two ticks: %llu ms\n",
                      (unsigned long long) (cs->db_tick_gap_max_usec / USEC_PER_MSEC));
        if (cs->db_tick_gap_max_usec < 150 * USEC_PER_MSEC)
                return true;
        print_message("the checkpointer was starved: the 100 ms bound is not judged\n");
        return false;
}

/* A store where pages are written back and cachestat(2) tells which
 * are dirty; the test skipped otherwise. */
static Store *open_written_back(char **ret_path, char **ret_wal) {
        struct statfs fs;
        if (statfs(dir, &fs) == 0 && fs.f_type == TMPFS_MAGIC)
                skip(); /* tmpfs: nothing is ever written back */
        Store *s = open_at(ret_path);
        *ret_wal = xasprintf("%s-wal", *ret_path);
        if (dirty_pages_of(*ret_path) == UINT64_MAX) {
                store_close(s);
                skip(); /* no cachestat(2): Linux < 6.5 */
        }
        return s;
}

static Measure written_back_at_the_append_rate(void) {
        _cleanup_free_ char *path = NULL, *wal = NULL;
        Store *s = open_written_back(&path, &wal);
        RunQueue *q = run_queue_sqlite_new(s);
        static EvenSampler e;
        e = (EvenSampler) { .path = path };
        pthread_t t;
        /* A database of some MiBs first, as fast as it goes (8200 frames:
         * two passes), then ~2000 frames a second, the daemon's order at wrk -c8: the
         * next pass at 4000 frames, and 3000 more after it. */
        StoreCheckpointStats cs = {};
        int i = 0;
        for (; wal_frames_on_disk(wal) < 8200; i++)
                run_sized(q, i);
        usec_t t0 = now_monotonic();
        int f0 = wal_frames_on_disk(wal);
        bool sampling = false;
        /* Up to the pass at 12000 frames and most of the way to the next:
         * from there (the cap's last 4000) a pass comes every 1000 (round
         * 18). Stopping at 12400 left the sampler too little of that
         * pass's copy to see (127 dirty pages against 128, once). */
        for (; wal_frames_on_disk(wal) < 12900; i++) {
                /* From half a second in: the first tick after the fast
                 * part writes in step with it. */
                if (!sampling && wal_frames_on_disk(wal) - f0 >= 1000) {
                        assert_int_equal(pthread_create(&t, NULL, even_sampler, &e), 0);
                        sampling = true;
                }
                run_sized(q, i);
                while ((now_monotonic() - t0) * 2000 / USEC_PER_SEC < (usec_t) (wal_frames_on_disk(wal) - f0))
                        usleep(1000);
        }
        atomic_store(&e.stop, true);
        pthread_join(t, NULL);
        store_checkpoint_stats(s, &cs);
        uint64_t most = 0, left = most_written_back_in_100ms(&e, &most);
        print_message("%llu checkpoints; the database's dirty pages at most %llu, at most %llu written back "
                      "within 100 ms (%d samples)\n",
                      (unsigned long long) cs.checkpoints, (unsigned long long) most, (unsigned long long) left, e.n);
        /* The case the bound is about: passes that copied pages in, seen
         * dirty. Beside other suites' writes the kernel's own flusher now
         * and then wrote the file back first (at most 2 pages seen dirty,
         * once): that measure judges nothing, and is taken again. */
        bool the_case = cs.checkpoints >= 2 && most >= 64;
        if (!the_case)
                print_message("the case is not met (2 checkpoints, 64 dirty pages): not judged\n");
        /* The daemon's whole stream is ~740 KiB per 100 ms at wrk -c8;
         * base17 wrote a MiB per 50 ms, or all at once. */
        bool within = !ticks_kept(&cs) || left <= LEFT_IN_100MS_MAX(most);
        run_queue_free(q);
        store_close(s);
        return !the_case ? MEASURE_UNJUDGED : within ? MEASURE_WITHIN : MEASURE_OVER;
}

/* Over the bound (or the case it bounds not met), the measure is taken
 * again, up to three times in all, before the test fails: on a loaded
 * machine (the other suites beside it, or another process's writes
 * pushing the kernel into writing back every dirty page) the whole file
 * was seen written back in one window now and then with the
 * checkpointer's tick on time, twice in a row once (round 36); a
 * write-back all at once by the store fails every time. */
static void within_bound_in_three_tries(Measure (*measure)(void)) {
        int over = 0;
        for (int tries = 1; tries <= 3; tries++) {
                Measure m = measure();
                if (m == MEASURE_WITHIN)
                        return;
                over += m == MEASURE_OVER;
                print_message(m == MEASURE_OVER ? "over the bound: measured once more\n"
                                                : "the case did not arise: measured once more\n");
        }
        /* Three measures on a machine too busy for the case to arise (CI
         * of round 53: no pass ended in the database's sync, three times,
         * with the other suites beside it) judge nothing either way. */
        if (over == 0) {
                print_message("the case did not arise in three measures: not judged here\n");
                skip();
        }
        fail_msg("over the bound in %d of three measures", over);
}

static void test_database_written_back_at_the_append_rate(void **state) {
        (void) state;
        within_bound_in_three_tries(written_back_at_the_append_rate);
}

/* Round 17: SQLite syncs the database at the end of a pass that copied
 * every frame (no commit came during it), and that sync sent every page
 * the pass had copied in at once: ~10 MiB in one 100 ms at wrk -c8,
 * every ~15 s, the largest burst left. The checkpointer's own database
 * file now has it write them back on its tick first; the sync finds few.
 * Commits at ~2000 frames a second; near each pass due (3850 frames
 * after the last) one run per 100 ms, and once it is surely due (4000)
 * none until it is done, so that it copies every frame and syncs: the
 * sync finds at most 16 of the database's pages dirty (main at e1c2c3f:
 * every page the pass copied in, 120-400 here), and within any 100 ms at
 * most 128 of them are written back; the WAL still restarts after. */
static void commit_paced(RunQueue *q, const char *wal, int *i, int f0, usec_t t0) {
        run_sized(q, (*i)++);
        while ((now_monotonic() - t0) * 2000 / USEC_PER_SEC < (usec_t) (wal_frames_on_disk(wal) - f0))
                usleep(1000);
}

/* Commits paused until the pass due is done (at most 10 s). */
static void quiet_until_a_pass(Store *s, uint64_t passes) {
        StoreCheckpointStats cs;
        for (int t = 0; t < 200; t++) {
                store_checkpoint_stats(s, &cs);
                if (cs.checkpoints != passes)
                        return;
                usleep(50 * 1000);
        }
}

static Measure database_sync_paced(void) {
        _cleanup_free_ char *path = NULL, *wal = NULL;
        Store *s = open_written_back(&path, &wal);
        RunQueue *q = run_queue_sqlite_new(s);
        static EvenSampler e;
        e = (EvenSampler) { .path = path };
        StoreCheckpointStats cs = {};
        int i = 0;
        /* One pass's worth as fast as it goes, its pages written back. */
        for (; wal_frames_on_disk(wal) < 4200; i++)
                run_sized(q, i);
        for (int t = 0; t < 100 && dirty_pages_of(path) > 16; t++)
                usleep(100 * 1000);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, even_sampler, &e), 0);
        usec_t t0 = now_monotonic();
        int f0 = wal_frames_on_disk(wal), last_pass = f0, quiet = 0;
        store_checkpoint_stats(s, &cs);
        uint64_t passes = cs.checkpoints;
        /* Passes at ~8000 and ~12000 frames: past 12000 (the cap's last
         * 4000) they come every 1000 (round 18), not every 4000 as this
         * loop keeps quiet around. */
        while (wal_frames_on_disk(wal) < 12500 && e.n < EVEN_SAMPLES && cs.db_syncs < 2) {
                int since = wal_frames_on_disk(wal) - last_pass;
                if (since < 3850) {
                        commit_paced(q, wal, &i, f0, t0);
                } else {
                        /* One run (~5 frames), then quiet while the pass
                         * it may have called for runs. */
                        if (since < 4000)
                                run_sized(q, i++);
                        if (wal_frames_on_disk(wal) - last_pass >= 4000)
                                quiet_until_a_pass(s, passes);
                        else
                                usleep(100 * 1000);
                        quiet++;
                        t0 = now_monotonic();
                        f0 = wal_frames_on_disk(wal);
                }
                store_checkpoint_stats(s, &cs);
                if (cs.checkpoints != passes) {
                        passes = cs.checkpoints;
                        last_pass = wal_frames_on_disk(wal);
                }
        }
        atomic_store(&e.stop, true);
        pthread_join(t, NULL);
        uint64_t most = 0, left = most_written_back_in_100ms(&e, &most);
        store_checkpoint_stats(s, &cs);
        print_message("%llu checkpoints, %llu ended in the database's sync (dirty pages at its copy's end at most "
                      "%llu, at the sync %llu), %d quiet steps; the database's dirty pages at most %llu, at most "
                      "%llu written back within 100 ms (%d samples)\n",
                      (unsigned long long) cs.checkpoints, (unsigned long long) cs.db_syncs,
                      (unsigned long long) cs.db_sync_copied_max, (unsigned long long) cs.db_sync_found_max, quiet,
                      (unsigned long long) most, (unsigned long long) left, e.n);
        assert_true(most >= 64);
        /* The pages written back within a 100 ms window are the kernel's
         * too: other processes' writes past its dirty threshold make it
         * write back every dirty page at once, ours included (CI runs of
         * round 36 saw 160 of 160, three measures in a row, beside other
         * work; alone, 43). Printed, not judged; what the store does is
         * judged below: its sync finds at most 16 pages dirty (a store
         * that left the copied pages to the sync finds 120-400). */
        if (ticks_kept(&cs) && left > LEFT_IN_100MS_MAX(most))
                print_message("note: %llu written back within 100 ms, over %llu\n", (unsigned long long) left,
                              (unsigned long long) LEFT_IN_100MS_MAX(most));
        /* No pass that copied every frame (a commit came during each, on
         * a loaded machine: this loop's quiet steps came late): the case
         * did not arise, measured once more. */
        Measure m = MEASURE_WITHIN;
        if (cs.db_syncs == 0) {
                print_message("no pass ended in the database's sync\n");
                m = MEASURE_UNJUDGED;
        }
        assert_true(cs.db_sync_found_max <= 16);
        /* And the WAL still restarts, at the same pace (at most 20 s). */
        t0 = now_monotonic();
        f0 = wal_frames_on_disk(wal);
        for (int k = 0; cs.capped + cs.inline_checkpoints == 0 && k < 40000; k++) {
                commit_paced(q, wal, &i, f0, t0);
                store_checkpoint_stats(s, &cs);
        }
        assert_true(cs.capped >= 1);
        assert_int_equal(cs.inline_checkpoints, 0);
        run_queue_free(q);
        store_close(s);
        return m;
}

static void test_database_sync_paced(void **state) {
        (void) state;
        within_bound_in_three_tries(database_sync_paced);
}

/* Round 20: the host charges this VM per write request as well as per
 * byte. A pass's new pages are the database file's last ones, side by
 * side; the walk counted and wrote them a 64 KiB step per call, so that
 * every request was 64 KiB at most. Steps dirty one after another now go
 * as one range (up to a MiB), the pacing still counted per step: over a
 * pass's walk at the daemon's append rate the ranges average more than a
 * step (base: 64 KiB at most, each). */
static void test_database_pages_side_by_side_written_back_as_one_range(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL, *wal = NULL;
        Store *s = open_written_back(&path, &wal);
        RunQueue *q = run_queue_sqlite_new(s);
        int i = 0;
        for (; wal_frames_on_disk(wal) < 4200; i++)
                run_big(q, i);
        usec_t t0 = now_monotonic();
        int f0 = wal_frames_on_disk(wal);
        while (wal_frames_on_disk(wal) - f0 < 2000) {
                run_big(q, i++);
                while ((now_monotonic() - t0) * 2000 / USEC_PER_SEC < (usec_t) (wal_frames_on_disk(wal) - f0))
                        usleep(1000);
        }
        /* What the walk wrote while the commits came: once they stop, a
         * tick's share is its floor, a step. */
        StoreCheckpointStats cs;
        store_checkpoint_stats(s, &cs);
        print_message("%llu checkpoints; the walk wrote back %llu ranges, %llu KiB\n",
                      (unsigned long long) cs.checkpoints, (unsigned long long) cs.db_writeback_ranges,
                      (unsigned long long) cs.db_writeback_bytes / 1024);
        /* Starved at SCHED_IDLE (two spinners beside it), the pass or its
         * walk may not have run yet: then there is nothing to judge. On a
         * quiet machine the walk has written 6-9 MiB by now. */
        if (cs.db_writeback_bytes >= 1024 * 1024)
                assert_true(cs.db_writeback_bytes / cs.db_writeback_ranges > 64 * 1024);
        else
                print_message("the walk was starved: not judged\n");
        run_queue_free(q);
        store_close(s);
}

/* Round 18: the WAL's restart was a burst. The pass that reached the cap
 * (16000 frames) had copied a pass's 4000 frames; their database pages,
 * ~11 MiB at wrk -c8, then went out at two per appended frame (twice the
 * daemon's mean rate, for ~2 s) so that up to four tail passes could
 * shrink the uncopied tail before the backstop's pass, each a sync of the
 * WAL and often of the database: ~7 flushes and ~30 MiB in the 3 s around
 * each restart at wrk -c8 (docs/internals/performance-log.md "the WAL's restart without
 * a burst"). Now the last 4000 frames before the cap are copied by a pass
 * every 1000: commits at ~2000 frames a second, the daemon's order at wrk
 * -c8, from an empty WAL until it restarted: the pass that reached the cap
 * copied at most 3000 frames (base18: 4000 or more, by construction), and
 * the restart needed no in-line checkpoint. */
static void test_wal_restart_is_not_a_burst(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        RunQueue *q = run_queue_sqlite_new(s);
        StoreCheckpointStats cs = {};
        int i = 0;
        usec_t t0 = now_monotonic();
        for (int k = 0; cs.capped + cs.inline_checkpoints == 0 && k < 60000; k++) {
                commit_paced(q, wal, &i, 0, t0);
                store_checkpoint_stats(s, &cs);
        }
        print_message("restarts %llu (backstop in-line %llu): the pass at the cap copied %llu frames, tail passes "
                      "%llu, syncs %llu; writers held off %.2f ms at most\n",
                      (unsigned long long) cs.capped, (unsigned long long) cs.inline_checkpoints,
                      (unsigned long long) cs.restart_pass_frames_max,
                      (unsigned long long) cs.restart_tail_passes_max, (unsigned long long) cs.restart_syncs_max,
                      cs.stall_max_usec / 1e3);
        assert_true(cs.capped >= 1);
        assert_int_equal(cs.inline_checkpoints, 0);
        assert_true(cs.restart_pass_frames_max >= 1);
        assert_true(cs.restart_pass_frames_max <= 3000);
        run_queue_free(q);
        store_close(s);
}

/* Round 11: a commit that appends to the WAL past its allocated blocks
 * takes the WAL inode's i_data_sem for writing (ext4's delayed
 * allocation), and waits while the checkpointer's sync writes back earlier
 * frames under it (allocating their blocks, reading bitmaps): 4–162 ms per
 * invoke in the recordings. The WAL's span up to its restart is allocated
 * when the store opens: the file's size (what SQLite reads) stays, its
 * blocks are there before the first commit. */
static void test_wal_blocks_allocated_before_the_commits(void **state) {
        (void) state;
        struct statfs fs;
        assert_int_equal(statfs(dir, &fs), 0);
        if (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC)
                skip(); /* allocating there would take memory: the store does not */
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        struct stat st;
        assert_int_equal(stat(wal, &st), 0);
        /* The cap (16000 frames of 24 + 4096 bytes) and a quarter more. */
        assert_true((long long) st.st_blocks * 512 >= 20000LL * (24 + 4096));
        assert_true(st.st_size < (1 << 20));
        /* Still SQLite's WAL: commits land and a reopen reads them. */
        RunQueue *q = run_queue_sqlite_new(s);
        submit(q, "prealloc1", 3, 1);
        run_queue_free(q);
        store_close(s);
        assert_int_equal(store_open(path, &s), 0);
        run_record_free(get(s, "prealloc1"));
        store_close(s);
}

/* What SCHED_IDLE costs: under sustained load the thread gets only the
 * CPU nobody else wants. Two threads spinning at normal priority on this
 * 2-CPU machine plus the writer leave it none at times: the WAL must stay
 * bounded all the same, and the thread must still do the checkpoints (it
 * regains normal priority when it falls behind, where it may; else the
 * commits' backstop checkpoints). */
static _Atomic bool hogs_stop;
static void *hog(void *p) {
        (void) p;
        volatile unsigned long x = 0;
        while (!hogs_stop)
                x++;
        return NULL;
}

#define HOG_RUNS 20000
static void test_wal_bounded_with_the_checkpointer_starved(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        RunQueue *q = run_queue_sqlite_new(s);
        pthread_t hogs[2];
        hogs_stop = false;
        for (size_t i = 0; i < ELEMENTSOF(hogs); i++)
                assert_int_equal(pthread_create(&hogs[i], NULL, hog, NULL), 0);
        off_t wal_max = 0;
        for (int i = 0; i < HOG_RUNS; i++) {
                char id[32];
                snprintf(id, sizeof(id), "hg%d", i);
                submit(q, id, 3, 1);
                int attempt = 0;
                assert_int_equal(run_queue_start(q, id, 2, &attempt), 0);
                RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3 };
                assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
                if (i % 50 == 0 && file_size(wal) > wal_max)
                        wal_max = file_size(wal);
        }
        hogs_stop = true;
        for (size_t i = 0; i < ELEMENTSOF(hogs); i++)
                pthread_join(hogs[i], NULL);
        StoreCheckpointStats cs;
        store_checkpoint_stats(s, &cs);
        print_message("%d runs beside 2 spinning threads: %llu checkpoints by the thread, %llu WAL restarts, "
                      "%llu in a commit (backstop); WAL at most %lld KiB\n",
                      HOG_RUNS, (unsigned long long) cs.checkpoints, (unsigned long long) cs.capped,
                      (unsigned long long) cs.inline_checkpoints, (long long) wal_max / 1024);
        assert_true(cs.checkpoints >= 1);
        assert_true(cs.capped >= 1);
        assert_true(wal_max > 0);
        assert_true(wal_max <= 33000 * (4096 + 24));
        run_queue_free(q);
        store_close(s);
}

/* ---- the queries on runs use an index (migration 16 dropped runs_created) ----
 * Every connection the store opens gets a profile hook (an auto extension)
 * that adds up SQLite's own count of full-scan steps of each SELECT on
 * runs: a query that walks a whole table or index, filtering as it goes,
 * counts a step per row it passes. Among 300 runs of one tenant, listing
 * another tenant's 3 must not walk the 300. */
static atomic_long scan_steps, vm_steps;

static int profile_hook(unsigned type, void *ctx, void *p, void *x) {
        sqlite3_stmt *st = p;
        const char *sql = sqlite3_sql(st);
        int n = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
        int vm = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 1);
        if (sql && strstr(sql, "FROM runs") && (startswith(sql, "SELECT") || startswith(sql, "WITH"))) {
                atomic_fetch_add(&scan_steps, n);
                atomic_fetch_add(&vm_steps, vm);
        }
        return 0;
}

static int hook_connection(sqlite3 *db, char **err, const void *api) {
        sqlite3_trace_v2(db, SQLITE_TRACE_PROFILE, profile_hook, NULL);
        return SQLITE_OK;
}

static long scans_of(void) {
        atomic_store(&vm_steps, 0);
        return atomic_exchange(&scan_steps, 0);
}

static void test_runs_queries_use_an_index(void **state) {
        assert_int_equal(sqlite3_auto_extension((void (*)(void)) hook_connection), SQLITE_OK);
        Store *s = open_fresh();
        RunQueue *q = run_queue_sqlite_new(s);
        char id[32];
        for (int i = 0; i < 300; i++) {
                snprintf(id, sizeof(id), "big%03d", i);
                submit_req(q, id, "big", 100 + i, "{\"fn_name\":\"f\"}");
        }
        submit_req(q, "old-g", "big", 50, "{\"fn_name\":\"g\"}");   /* older than every f */
        submit_req(q, "small1", "small", 1, "{\"fn_name\":\"g\"}");
        submit_req(q, "small2", "small", 2, "{\"source\":\"x\"}");
        submit_req(q, "small3", "small", 500, "{\"fn_name\":\"g\"}");
        (void) scans_of();

        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, "small", NULL, 20, &v, &n), 0);
        long steps = scans_of();
        print_message("list of one tenant: %ld full-scan steps\n", steps);
        assert_int_equal(n, 3);
        assert_string_equal(v[0]->id, "small3");         /* newest first */
        assert_string_equal(v[2]->id, "small1");
        assert_true(steps < 10);
        run_record_list_free(v, n);

        /* Every tenant's: each tenant's newest, merged, newest first. */
        assert_int_equal(store_run_list(s, NULL, NULL, 4, &v, &n), 0);
        steps = scans_of();
        print_message("list of every tenant: %ld full-scan steps\n", steps);
        assert_int_equal(n, 4);
        assert_string_equal(v[0]->id, "small3");
        assert_string_equal(v[1]->id, "big299");
        assert_string_equal(v[3]->id, "big297");
        assert_true(steps < 20);
        run_record_list_free(v, n);

        char **ids = NULL;
        assert_int_equal(store_function_run_ids(s, "small", "g", 10, &ids), 0);
        assert_true(scans_of() < 10);
        assert_string_equal(ids[0], "small3");
        assert_string_equal(ids[1], "small1");
        assert_null(ids[2]);
        strv_free(ids);
        /* One run of g among 300 of f, in the same tenant: a seek in
         * runs_fn_name, not a walk of the tenant's runs (3000+ VM steps). */
        assert_int_equal(store_function_run_ids(s, "big", "g", 10, &ids), 0);
        long vm = atomic_load(&vm_steps);
        print_message("runs of a function: %ld VM steps\n", vm);
        assert_true(scans_of() < 10);
        assert_true(vm < 200);
        assert_string_equal(ids[0], "old-g");
        assert_null(ids[1]);
        strv_free(ids);

        /* The recovery's list of queued runs: runs_pending. */
        int attempt = 0;
        for (int i = 0; i < 300; i++) {
                snprintf(id, sizeof(id), "big%03d", i);
                assert_int_equal(run_queue_start(q, id, 1000, &attempt), 0);
                RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 1001 };
                assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
        }
        assert_int_equal(store_flush(s), 0);
        (void) scans_of();
        PendingRun *pv = NULL;
        size_t pn = 0;
        assert_int_equal(run_queue_recover(q, "lost", &pv, &pn, NULL), 0);
        steps = scans_of();
        print_message("recovery: %ld full-scan steps, %zu queued\n", steps, pn);
        assert_int_equal(pn, 4);
        assert_true(steps < 10);
        pending_run_list_free(pv, pn);

        run_queue_free(q);
        store_close(s);
        sqlite3_cancel_auto_extension((void (*)(void)) hook_connection);
}

/* ---- a run's row: its bytes, and what reads give back (round 15) ----
 * Every page of a run's row reaches the disk twice (the WAL, then the
 * checkpoint). The engine's timings object is ~181 bytes of a trivial
 * run's ~355: the row keeps its values only, and every read gives the
 * text back as the engine wrote it; any other timings text is kept as it
 * is. */
#define ENGINE_TIMINGS "{\"validate_ms\":0.0,\"resolve_ms\":0.003,\"install_ms\":0.0,\"start_ms\":0.098," \
                       "\"run_ms\":0.031,\"total_ms\":0.14,\"queue_ms\":0.017,\"acquire_ms\":0.0,"        \
                       "\"fork_ms\":0.098,\"reply_ms\":1.5e-05,\"cold\":false}"

/* SQL expression expr over run id's row as the database file holds it
 * (another connection: what the store wrote, not what it reads back), as
 * an integer and as text (ret_text may be NULL; the caller frees it). */
static sqlite3_int64 stored_value(const char *path, const char *expr, const char *id, char **ret_text) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        _cleanup_free_ char *sql = xasprintf("SELECT %s FROM runs WHERE id=?1", expr);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        sqlite3_int64 v = sqlite3_column_int64(st, 0);
        if (ret_text)
                *ret_text = xstrdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static long stored_length(const char *path, const char *col, const char *id) {
        _cleanup_free_ char *expr = xasprintf("length(CAST(%s AS BLOB))", col);
        return (long) stored_value(path, expr, id, NULL);
}

static void test_run_row_keeps_timings_values_only(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        const char *texts[] = {
                ENGINE_TIMINGS,
                "{\"validate_ms\":0.0,\"run_ms\":0.5}",                   /* other names: kept */
                "{\"resolve_ms\":0.003,\"validate_ms\":0.0,\"install_ms\":0.0,\"start_ms\":0.098,\"run_ms\":0.031,"
                "\"total_ms\":0.14,\"queue_ms\":0.017,\"acquire_ms\":0.0,\"fork_ms\":0.098,\"reply_ms\":0.0,"
                "\"cold\":true}",                                           /* another order: kept */
                "[1,2]",                                                    /* an array: kept */
                "{\"validate_ms\":\"x\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                char id[16];
                snprintf(id, sizeof(id), "tm%zu", i);
                RunRecord r = { .id = id, .tenant = (char *) "a", .filename = (char *) "f.py",
                                .status = (char *) "succeeded", .exit_code = 0, .timings_json = (char *) texts[i],
                                .created = 1 + i, .started = 2, .finished = 3, .max_attempts = 1 };
                assert_int_equal(store_run_insert(s, &r), 0);
        }
        assert_int_equal(store_flush(s), 0);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                char id[16];
                snprintf(id, sizeof(id), "tm%zu", i);
                _cleanup_(run_record_freep) RunRecord *got = get(s, id);
                assert_string_equal(got->timings_json, texts[i]);
        }
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, "a", NULL, 10, &v, &n), 0);
        assert_int_equal(n, ELEMENTSOF(texts));
        assert_string_equal(v[n - 1]->timings_json, ENGINE_TIMINGS);
        run_record_list_free(v, n);
        long packed = stored_length(path, "timings_json", "tm0");
        print_message("the engine's timings: %zu bytes of text, %ld stored\n", strlen(ENGINE_TIMINGS), packed);
        assert_true(packed <= 70);
        assert_int_equal(stored_length(path, "timings_json", "tm1"), (long) strlen(texts[1]));
        store_close(s);
}

/* Round 21: the engine's timings, each value spelled as format_ms() spells
 * it, are kept as a BLOB of their microseconds (~11 bytes against ~58 of
 * the values' text) and read back byte for byte; any other spelling keeps
 * round 15's array of texts, any other object its text; rows written in
 * those forms before read back as they were. */
static void exec_on(const char *path, const char *sql);

static void set_stored_timings(const char *path, const char *id, const char *sql_value) {
        _cleanup_free_ char *sql = xasprintf("UPDATE runs SET timings_json=%s WHERE id='%s'", sql_value, id);
        exec_on(path, sql);
}

#define T_HEAD "{\"validate_ms\":"
#define T_MID(v) ",\"resolve_ms\":0.001,\"install_ms\":0.0,\"start_ms\":0.044,\"run_ms\":" v \
                 ",\"total_ms\":0.056,\"queue_ms\":0.006,\"acquire_ms\":0.0,\"fork_ms\":0.044,\"reply_ms\":0.0,\"cold\":"

static void test_run_row_keeps_engine_timings_as_microseconds(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        static const struct {
                const char *text, *type;
                long max_len;
        } cases[] = {
                /* As a trivial invoke's: 11 bytes. */
                { T_HEAD "0.0" T_MID("0.007") "false}", "blob", 11 },
                { T_HEAD "0.0" T_MID("0.007") "true}", "blob", 11 },
                /* Long runs, 2 h, more digits than a double holds exactly. */
                { T_HEAD "12.5" T_MID("7200000.001") "false}", "blob", 20 },
                /* Each varint's byte boundaries (2^7, 2^14 us). */
                { T_HEAD "0.128" T_MID("16.384") "false}", "blob", 16 },
                { T_HEAD "0.127" T_MID("16.383") "false}", "blob", 16 },
                { T_HEAD "1.0" T_MID("99999999999999.999") "false}", "blob", 24 },
                /* Spelled otherwise: round 15's array of the texts. */
                { T_HEAD "0.010" T_MID("0.007") "false}", "text", 70 },
                { T_HEAD "0.0" T_MID("1.5e-05") "false}", "text", 70 },
                { T_HEAD "0.0" T_MID("0.0001") "false}", "text", 70 },
                { T_HEAD "0.0" T_MID("007.0") "false}", "text", 200 }, /* not JSON: as it is */
                { T_HEAD "0.0" T_MID("-1.0") "false}", "text", 70 },
                { T_HEAD "0.0" T_MID("1") "false}", "text", 70 },
                { T_HEAD "0.0" T_MID("1.") "false}", "text", 200 },
                { T_HEAD "0.0" T_MID("1234567890123456.0") "false}", "text", 80 },
                { T_HEAD "0.0" T_MID("0.007") "null}", "text", 70 },
                { T_HEAD "0.0" T_MID("null") "false}", "text", 70 },
                /* Another object: as it is. */
                { "{\"run_ms\":0.007,\"cold\":false}", "text", 40 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char id[16];
                snprintf(id, sizeof(id), "tb%zu", i);
                RunRecord r = { .id = id, .tenant = (char *) "a", .filename = (char *) "f.py",
                                .status = (char *) "succeeded", .exit_code = 0, .timings_json = (char *) cases[i].text,
                                .created = 1 + i, .started = 2, .finished = 3, .max_attempts = 1 };
                assert_int_equal(store_run_insert(s, &r), 0);
        }
        assert_int_equal(store_flush(s), 0);
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, "a", NULL, 100, &v, &n), 0);
        assert_int_equal(n, ELEMENTSOF(cases));
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char id[16];
                snprintf(id, sizeof(id), "tb%zu", i);
                _cleanup_(run_record_freep) RunRecord *got = get(s, id);
                assert_string_equal(got->timings_json, cases[i].text);
                /* Lists read rows the same way (newest first). */
                assert_string_equal(v[n - 1 - i]->timings_json, cases[i].text);
                long len = stored_length(path, "timings_json", id);
                if (i == 0)
                        print_message("the engine's timings: %zu bytes of text, %ld stored\n", strlen(cases[i].text),
                                      len);
                _cleanup_free_ char *type = NULL;
                (void) stored_value(path, "typeof(timings_json)", id, &type);
                assert_string_equal(type, cases[i].type);
                if (len > cases[i].max_len)
                        fail_msg("case %zu: %ld bytes stored", i, len);
        }
        run_record_list_free(v, n);
        /* Rows an older pysprinter wrote: the array of texts, the object
         * itself; and a blob this store did not write reads as no timings. */
        set_stored_timings(path, "tb0", "'[0.0,0.001,0.0,0.044,0.007,0.056,0.006,0.0,0.044,0.0,false]'");
        set_stored_timings(path, "tb1", "'" T_HEAD "0.0" T_MID("0.007") "true}'");
        set_stored_timings(path, "tb2", "x'0401'");
        set_stored_timings(path, "tb3", "x'02000000000000000000'");
        set_stored_timings(path, "tb4", "x'0200000000000000000000ff'");
        _cleanup_(run_record_freep) RunRecord *old0 = get(s, "tb0");
        assert_string_equal(old0->timings_json, cases[0].text);
        _cleanup_(run_record_freep) RunRecord *old1 = get(s, "tb1");
        assert_string_equal(old1->timings_json, cases[1].text);
        for (const char *const *id = (const char *const[]) { "tb2", "tb3", "tb4", NULL }; *id; id++) {
                _cleanup_(run_record_freep) RunRecord *bad = get(s, *id);
                assert_null(bad->timings_json);
        }
        store_close(s);
}

/* The engine's log path of a run (DATA_DIR/logs/ID.log, DATA_DIR the
 * database's directory) is kept as '' and read back whole: by a get, by
 * the usage walk and by retention, which removes the file. NULL stays "no
 * log", another path stays as it is. */
static void test_run_row_keeps_default_log_path_empty(void **state) {
        _cleanup_free_ char *home = xasprintf("%s/lphome", dir);
        _cleanup_free_ char *logs = xasprintf("%s/logs", home);
        _cleanup_free_ char *path = xasprintf("%s/pysprinter.db", home);
        _cleanup_free_ char *log1 = xasprintf("%s/lp1.log", logs);
        assert_int_equal(mkdir_p(logs, 0700), 0);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        usec_t now = 1000 * 86400 * USEC_PER_SEC, old = now - 40 * 86400 * USEC_PER_SEC;
        const char *paths[] = { log1, "/elsewhere/lp2.log", NULL };
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                char id[16];
                snprintf(id, sizeof(id), "lp%zu", i + 1);
                RunRecord r = { .id = id, .tenant = (char *) "t", .filename = (char *) "f.py",
                                .status = (char *) "succeeded", .exit_code = 0, .log_path = (char *) paths[i],
                                .created = old + i, .started = old + i, .finished = old + i, .max_attempts = 1 };
                assert_int_equal(store_run_insert(s, &r), 0);
        }
        assert_int_equal(write_file_atomic(log1, "0123456789", 10, 0600), 0);
        assert_int_equal(store_flush(s), 0);
        assert_int_equal(stored_length(path, "log_path", "lp1"), 0);
        assert_int_equal(stored_length(path, "log_path", "lp2"), (long) strlen(paths[1]));
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                char id[16];
                snprintf(id, sizeof(id), "lp%zu", i + 1);
                _cleanup_(run_record_freep) RunRecord *got = get(s, id);
                if (paths[i])
                        assert_string_equal(got->log_path, paths[i]);
                else
                        assert_null(got->log_path);
        }
        StoreUsage u = {};
        assert_int_equal(store_usage(s, home, &u), 0);
        assert_int_equal(u.log_bytes, 10);
        store_usage_done(&u);
        RetentionConfig rc;
        retention_config_init(&rc);
        rc.batch_pause_usec = 0;
        GcStats st = {};
        assert_int_equal(store_gc(s, &rc, home, now, false, NULL, &st), 0);
        assert_int_equal(st.runs, 3);
        assert_int_equal(st.logs, 1);
        assert_int_equal(access(log1, F_OK), -1);
        retention_config_done(&rc);
        store_close(s);
}

/* The usage walk of /metrics (every 30 s in the daemon, over a store of
 * perhaps millions of runs) reads on a connection of its own: it finishes
 * while another thread holds the write connection's lock, as a group
 * commit does (it took that lock for each batch of 2,000 rows, and every
 * answered invoke waited behind it). Its figures: runs and log bytes per
 * tenant over more than one batch, a default-path log found by listing the
 * logs directory, a log elsewhere by its path, an orphan log not counted. */
typedef struct UsageWalk {
        Store *s;
        const char *home;
        StoreUsage u;
        int r;
        atomic_bool done;
} UsageWalk;

static void *usage_walker(void *p) {
        UsageWalk *w = p;
        w->r = store_usage(w->s, w->home, &w->u);
        atomic_store(&w->done, true);
        return NULL;
}

#define USAGE_RUNS 2500
static void test_usage_walk_needs_no_write_lock(void **state) {
        _cleanup_free_ char *home = xasprintf("%s/usagehome", dir);
        _cleanup_free_ char *logs = xasprintf("%s/logs", home);
        _cleanup_free_ char *path = xasprintf("%s/pysprinter.db", home);
        _cleanup_free_ char *elsewhere = xasprintf("%s/elsewhere.log", home);
        assert_int_equal(mkdir_p(logs, 0700), 0);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        for (int i = 0; i < USAGE_RUNS; i++) {
                char id[32];
                snprintf(id, sizeof(id), "uw%05d", i);
                _cleanup_free_ char *log = xasprintf("%s/%s.log", logs, id);
                /* Every 100th run of tenant b printed 7 bytes; run 1 of
                 * tenant a logged elsewhere (5 bytes); run 3 has no log. */
                const char *tenant = i % 2 ? "a" : "b";
                const char *lp = i == 1 ? elsewhere : i == 3 ? NULL : log;
                RunRecord r = { .id = id, .tenant = (char *) tenant, .filename = (char *) "f.py",
                                .status = (char *) "succeeded", .log_path = (char *) lp, .created = 1000 + i,
                                .started = 1000 + i, .finished = 1000 + i, .max_attempts = 1 };
                assert_int_equal(store_run_insert(s, &r), 0);
                if (i % 100 == 0)
                        assert_int_equal(write_file_atomic(log, "printed", 7, 0600), 0);
        }
        assert_int_equal(write_file_atomic(elsewhere, "12345", 5, 0600), 0);
        _cleanup_free_ char *orphan = xasprintf("%s/nosuchrun.log", logs);
        assert_int_equal(write_file_atomic(orphan, "orphan", 6, 0600), 0);
        assert_int_equal(store_flush(s), 0);

        UsageWalk w = { .s = s, .home = home };
        pthread_t t;
        store_lock(s);
        assert_int_equal(pthread_create(&t, NULL, usage_walker, &w), 0);
        for (int i = 0; i < 1000 && !atomic_load(&w.done); i++)
                usleep(10 * 1000);
        bool done = atomic_load(&w.done);
        pthread_mutex_unlock(&s->lock);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_true(done); /* not behind the lock */
        assert_int_equal(w.r, 0);

        assert_int_equal(w.u.n_tenants, 2);
        for (size_t i = 0; i < w.u.n_tenants; i++) {
                const UsageTenant *ut = &w.u.tenants[i];
                assert_int_equal(ut->runs, USAGE_RUNS / 2);
                assert_int_equal(ut->log_bytes, streq(ut->tenant, "a") ? 5 : (USAGE_RUNS / 100) * 7);
        }
        assert_int_equal(w.u.log_bytes, 5 + (USAGE_RUNS / 100) * 7);
        store_usage_done(&w.u);
        store_close(s);
}

/* runs_tenant_created is written by every run: appended in created order,
 * its pages must end up full (a descending index got every entry at the
 * left end of the tenant's range, where SQLite splits a full page in
 * halves: half of its bytes were empty). A database made before keeps its
 * runs and lists them the same. */
static void index_fill(const char *path, const char *name, long *ret_pages, long *ret_unused) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), sum(unused) FROM dbstat WHERE name=?1", -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        *ret_pages = sqlite3_column_int64(st, 0);
        *ret_unused = sqlite3_column_int64(st, 1);
        sqlite3_finalize(st);
        sqlite3_close(db);
}

static void exec_on(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

#define FILL_RUNS 4000
static void test_tenant_index_pages_stay_full(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        for (int i = 0; i < FILL_RUNS; i++) {
                char id[32];
                snprintf(id, sizeof(id), "fill%05d", i);
                submit(q, id, 1, 1000 + (usec_t) i);
        }
        assert_int_equal(store_flush(s), 0);
        run_queue_free(q);
        store_close(s);
        long pages, unused;
        index_fill(path, "runs_tenant_created", &pages, &unused);
        print_message("runs_tenant_created: %ld pages for %d runs, %ld%% of their bytes unused\n", pages, FILL_RUNS,
                      unused * 100 / (pages * 4096));
        assert_true(unused * 4 < pages * 4096);

        /* The same database as schema 17 left it: migrated, the same list. */
        exec_on(path, "DROP TRIGGER runs_search_delete; DROP TRIGGER runs_search_update; DROP TABLE runs_search;"
                      "DELETE FROM kv WHERE ns = 'search';"
                      "DROP INDEX runs_schedule;"
                      "DROP INDEX runs_tenant_created; CREATE INDEX runs_tenant_created ON runs(tenant, created DESC);"
                      "ALTER TABLE functions DROP COLUMN signature; ALTER TABLE functions DROP COLUMN doc;"
                      "ALTER TABLE functions DROP COLUMN lock_json;"
                      "ALTER TABLE runs DROP COLUMN owner_pidns;"
                      "ALTER TABLE runs DROP COLUMN fn_version; ALTER TABLE runs DROP COLUMN schedule;"
                      "ALTER TABLE runs DROP COLUMN limits_json;"
                      "ALTER TABLE endpoints DROP COLUMN cors_json;"
                      "PRAGMA user_version=17;");
        assert_int_equal(store_open(path, &s), 0);
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, "a", NULL, 3, &v, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(v[0]->id, "fill03999");
        assert_string_equal(v[2]->id, "fill03997");
        run_record_list_free(v, n);
        store_close(s);
        index_fill(path, "runs_tenant_created", &pages, &unused);
        assert_true(unused * 4 < pages * 4096);
}

/* What one run writes to the WAL: its submit, start and finish, counted as
 * WAL frames (pages) before any checkpoint. Every page written is synced,
 * copied and synced again by a checkpoint later: an index no query needs
 * (runs.status alone: the queries by status use runs_pending) cost ~2
 * pages per status change. */
#define FRAME_RUNS 40
static void test_wal_pages_per_run(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        RunQueue *q = run_queue_sqlite_new(s);
        submit(q, "wp-warm", 3, 1);
        assert_int_equal(store_flush(s), 0);
        off_t before = file_size(wal);
        for (int i = 0; i < FRAME_RUNS; i++) {
                char id[32];
                snprintf(id, sizeof(id), "wp%d", i);
                submit(q, id, 3, 1);
                int attempt = 0;
                assert_int_equal(run_queue_start(q, id, 2, &attempt), 0);
                RunRecord fin = { .id = id, .status = (char *) "succeeded", .exit_code = 0, .finished = 3 };
                assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
        }
        assert_int_equal(store_flush(s), 0);
        double frames = (double) (file_size(wal) - before) / (4096 + 24) / FRAME_RUNS;
        print_message("%.1f WAL pages per run (submit, start, finish)\n", frames);
        assert_true(frames > 0);
        /* 9 with the index on status, 7 with runs_created */
        assert_true(frames <= 6.5);
        run_queue_free(q);
        store_close(s);
}

/* ---- one write per synchronous run (issue 15 b, round 7) ----
 * A run whose caller hears its id only with its end is submitted without
 * waiting (run_queue_submit_deferred); its finish replaces the submit when
 * that is still queued. */

/* deferred: run_queue_submit_deferred(), else the waited submit. */
static void submit_sync(RunQueue *q, const char *id, usec_t created, bool deferred) {
        RunRecord r = { .id = (char *) id,
                        .tenant = (char *) "a",
                        .filename = (char *) "f.py",
                        .args_json = (char *) "[1]",
                        .status = (char *) "running",
                        .created = created,
                        .started = created + 1,
                        .max_attempts = 3,
                        .log_path = (char *) "/logs/x.log",
                        .fn_name = (char *) "fx",
                        .fn_version = 1,
                        .schedule = (char *) "nightly",
                        .limits_json = (char *) "{\"timeout_ms\":1}" };
        const char *request = "{\"fn_name\":\"fx\",\"fn_version\":1}";
        assert_int_equal(deferred ? run_queue_submit_deferred(q, &r, request) : run_queue_submit(q, &r, request), 0);
}

static void submit_deferred(RunQueue *q, const char *id, usec_t created) {
        submit_sync(q, id, created, true);
}

static RunRecord ended(const char *id, int finished) {
        return (RunRecord) { .id = (char *) id, .function = (char *) "main", .status = (char *) "succeeded",
                             .exit_code = 0, .value_json = (char *) "42", .value_repr = (char *) "42",
                             .timings_json = (char *) "{\"run_ms\":1.0}", .started = 15, .finished = finished,
                             .outputs_json = (char *) "{\"o\":1}", .lock_json = (char *) "{\"packages\":[]}" };
}

static void assert_ended_with_everything(Store *s, const char *id, int finished) {
        _cleanup_(run_record_freep) RunRecord *r = get(s, id);
        assert_string_equal(r->status, "succeeded");
        assert_int_equal(r->exit_code, 0);
        assert_string_equal(r->function, "main");
        assert_string_equal(r->value_json, "42");
        assert_string_equal(r->value_repr, "42");
        assert_string_equal(r->timings_json, "{\"run_ms\":1.0}");
        assert_string_equal(r->outputs_json, "{\"o\":1}");
        assert_string_equal(r->filename, "f.py");
        /* Its origin, whichever way its end went (the journal's too). */
        assert_string_equal(r->fn_name, "fx");
        assert_int_equal(r->fn_version, 1);
        assert_string_equal(r->schedule, "nightly");
        assert_string_equal(r->limits_json, "{\"timeout_ms\":1}");
        assert_string_equal(r->args_json, "[1]");
        assert_string_equal(r->log_path, "/logs/x.log");
        assert_int_equal(r->created, 10);
        assert_int_equal(r->started, 15);
        assert_int_equal(r->finished, finished);
        assert_int_equal(r->attempt, 1);
        assert_int_equal(r->max_attempts, 3);
        _cleanup_free_ char *lock = NULL;
        assert_int_equal(store_run_get_lock(s, "a", id, &lock), 0);
        assert_string_equal(lock, "{\"packages\":[]}");
        /* The function's runs list it (fn_name from the request). */
        char **ids = NULL;
        assert_int_equal(store_function_run_ids(s, "a", "fx", 100, &ids), 0);
        bool found = false;
        for (char **i = ids; i && *i; i++)
                found = found || streq(*i, id);
        strv_free(ids);
        assert_true(found);
}

/* Not pending any more: the request went with the end. */
static void assert_not_pending(RunQueue *q, const char *id) {
        PendingRun *v = NULL;
        size_t n = 0, lost = 0;
        assert_int_equal(run_queue_recover(q, "stopped", &v, &n, &lost), 0);
        for (size_t i = 0; i < n; i++)
                assert_string_not_equal(v[i].id, id);
        pending_run_list_free(v, n);
}

static void test_deferred_submit_finished_within_linger_is_one_write(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        submit(q, "dw-warm", 3, 1);
        assert_int_equal(store_flush(s), 0);
        store_writer_set_linger(s, 3600 * USEC_PER_SEC); /* the finish comes "within" it */
        uint64_t commits = store_commits(s);
        sqlite3_int64 frames = wal_frames(path);
        submit_deferred(q, "dw1", 10);
        /* Not durable yet: nobody has its id. */
        RunRecord *none = NULL;
        assert_int_equal(store_run_get(s, NULL, "dw1", &none), -ENOENT);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "dw1", 14, &attempt), 0);
        assert_int_equal(attempt, 1);
        RunRecord fin = ended("dw1", 20);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        /* One statement in one transaction; the ended row's pages only. */
        assert_int_equal(store_commits(s) - commits, 1);
        sqlite3_int64 one = wal_frames(path) - frames;
        assert_ended_with_everything(s, "dw1", 20);
        /* Against a submit that commits before its finish: fewer pages.
         * The same run (a schedule's fire of a deployed function: its
         * index entries, runs_fn_name's and runs_schedule's, are written
         * either way). */
        store_writer_set_linger(s, 0);
        frames = wal_frames(path);
        commits = store_commits(s);
        submit_sync(q, "dw-two", 10, false);
        RunRecord fin2 = ended("dw-two", 21);
        assert_int_equal(run_queue_finish(q, &fin2, 1), 0);
        assert_int_equal(store_commits(s) - commits, 2);
        sqlite3_int64 two = wal_frames(path) - frames;
        print_message("WAL frames per run: deferred submit + finish %lld, waited submit then finish %lld\n",
                      (long long) one, (long long) two);
        assert_true(one >= 1 && one < two);
        /* Ended: a second finish and a cancel are refused. */
        assert_int_equal(run_queue_finish(q, &fin, 1), -ESTALE);
        assert_int_equal(run_queue_cancel(q, "dw1", "late"), -ESTALE);
        assert_not_pending(q, "dw1");
        run_queue_free(q);
        store_close(s);
}

/* The run watcher's batch (store_finish_hold()): its finishes are queued,
 * not waited for, nothing is durable before the release, and the release
 * commits them all in ONE transaction and tells each one's result as
 * store_run_finish() would have. */
typedef struct HeldResults {
        char ids[8][16];
        int results[8];
        size_t n;
} HeldResults;

static void held_result(const char *id, int result, void *userdata) {
        HeldResults *h = userdata;
        assert_true(h->n < ELEMENTSOF(h->ids));
        snprintf(h->ids[h->n], sizeof(h->ids[h->n]), "%s", id);
        h->results[h->n++] = result;
}

static void test_held_finishes_commit_as_one_transaction(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        store_writer_set_linger(s, 3600 * USEC_PER_SEC); /* the writer's thread commits nothing */
        /* Three runs recorded running (their submits committed), one whose
         * deferred submit is still queued. */
        const char *ids[] = { "hf1", "hf2", "hf3", "hf4" };
        for (size_t i = 0; i < 3; i++) {
                submit_deferred(q, ids[i], 10);
                assert_int_equal(run_queue_reveal(q, ids[i]), 0);
        }
        submit_deferred(q, "hf4", 10);
        uint64_t commits = store_commits(s);

        store_finish_hold(s);
        for (size_t i = 0; i < 4; i++) {
                RunRecord fin = ended(ids[i], 20);
                assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        }
        /* An attempt that is not current: refused, but only the release
         * can tell. */
        RunRecord stale = ended("hf2", 21);
        assert_int_equal(run_queue_finish(q, &stale, 2), 0);
        /* Nothing durable yet. */
        assert_int_equal(store_commits(s) - commits, 0);
        _cleanup_(run_record_freep) RunRecord *r1 = get(s, "hf1");
        assert_string_equal(r1->status, "running");
        RunRecord *none = NULL;
        assert_int_equal(store_run_get(s, NULL, "hf4", &none), -ENOENT);

        HeldResults h = {};
        store_finish_release(s, held_result, &h);
        assert_int_equal(store_commits(s) - commits, 1);
        assert_int_equal(h.n, 5);
        for (size_t i = 0; i < 4; i++) {
                assert_string_equal(h.ids[i], ids[i]);
                assert_int_equal(h.results[i], 0);
                assert_ended_with_everything(s, ids[i], 20);
        }
        assert_string_equal(h.ids[4], "hf2");
        assert_int_equal(h.results[4], -ESTALE);
        /* Held no more: a finish is waited for again. */
        RunRecord again = ended("hf1", 22);
        assert_int_equal(run_queue_finish(q, &again, 1), -ESTALE);
        run_queue_free(q);
        store_close(s);
}

/* A synchronous run that waits for an instance (round 10): its deferred
 * submit says queued; its start turns the still queued submit into the
 * started one, and its end replaces that: one commit. Committed queued
 * already (it waited longer than the linger), its start is a deferred
 * UPDATE its end replaces: one more commit, not two. */
static void test_queued_synchronous_run_start_and_end_are_one_write(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        store_writer_set_linger(s, 3600 * USEC_PER_SEC);
        RunRecord r = { .id = (char *) "qs1",
                        .tenant = (char *) "a",
                        .filename = (char *) "f.py",
                        .args_json = (char *) "[1]",
                        .status = (char *) "queued",
                        .created = 10,
                        .max_attempts = 3,
                        .log_path = (char *) "/logs/x.log",
                        .fn_name = (char *) "fx",
                        .fn_version = 1,
                        .schedule = (char *) "nightly",
                        .limits_json = (char *) "{\"timeout_ms\":1}" };
        uint64_t commits = store_commits(s);
        assert_int_equal(run_queue_submit_deferred(q, &r, "{\"fn_name\":\"fx\",\"fn_version\":1}"), 0);
        assert_int_equal(store_commits(s) - commits, 0); /* deferred, as a started one */
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "qs1", 15, &attempt), 0);
        assert_int_equal(attempt, 1);
        RunRecord fin = ended("qs1", 20);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_int_equal(store_commits(s) - commits, 1);
        assert_ended_with_everything(s, "qs1", 20);

        /* Committed queued first (the linger passed while it waited). */
        r.id = (char *) "qs2";
        assert_int_equal(run_queue_submit_deferred(q, &r, "{\"fn_name\":\"fx\",\"fn_version\":1}"), 0);
        assert_int_equal(run_queue_reveal(q, "qs2"), 0);
        _cleanup_(run_record_freep) RunRecord *queued = get(s, "qs2");
        assert_string_equal(queued->status, "queued");
        assert_int_equal(queued->attempt, 0);
        commits = store_commits(s);
        assert_int_equal(run_queue_start(q, "qs2", 15, &attempt), 0);
        assert_int_equal(attempt, 1);
        RunRecord fin2 = ended("qs2", 21);
        assert_int_equal(run_queue_finish(q, &fin2, 1), 0);
        assert_int_equal(store_commits(s) - commits, 1);
        assert_ended_with_everything(s, "qs2", 21);
        assert_not_pending(q, "qs2");
        /* Ended: a second finish is refused. */
        assert_int_equal(run_queue_finish(q, &fin2, 1), -ESTALE);
        run_queue_free(q);
        store_close(s);
}

static void test_deferred_submit_committed_by_linger_then_updated(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        store_writer_set_linger(s, 1000); /* 1 ms */
        uint64_t commits = store_commits(s);
        submit_deferred(q, "dl1", 10);
        /* The writer's thread commits it as running by itself. */
        usec_t deadline = now_monotonic() + 10 * USEC_PER_SEC;
        RunRecord *r = NULL;
        while (store_run_get(s, NULL, "dl1", &r) < 0) {
                assert_true(now_monotonic() < deadline);
                usleep(1000);
        }
        assert_string_equal(r->status, "running");
        assert_int_equal(r->attempt, 1);
        run_record_free(r);
        assert_int_equal(store_commits(s) - commits, 1);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "dl1", 14, &attempt), 0);
        assert_int_equal(attempt, 1);
        RunRecord fin = ended("dl1", 22);
        /* An older attempt's end is refused, the current one's written. */
        assert_int_equal(run_queue_finish(q, &fin, 0), -ESTALE);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_int_equal(store_commits(s) - commits, 3); /* INSERT, refused UPDATE, UPDATE */
        assert_ended_with_everything(s, "dl1", 22);
        assert_not_pending(q, "dl1");
        run_queue_free(q);
        store_close(s);
}

/* The voluntary context switches of this process's store writer threads:
 * how often they slept and were woken (by their timer or a signal). */
static uint64_t writer_thread_wakeups(void) {
        uint64_t n = 0;
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));) {
                if (e->d_name[0] == '.')
                        continue;
                char path[300], comm[32] = "";
                snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                bool writer = fgets(comm, sizeof(comm), f) && streq(comm, "store-writer\n");
                fclose(f);
                snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
                f = writer ? fopen(path, "re") : NULL;
                char line[256];
                unsigned long long v;
                while (f && fgets(line, sizeof(line), f))
                        if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1)
                                n += v;
                if (f)
                        fclose(f);
        }
        closedir(d);
        return n;
}

/* Short runs one after another: each finish takes its deferred submit
 * along, the writer thread has nothing to commit and looks less and less
 * often (a look every 2 ms was ~450 wake-ups a second for nothing); a run
 * that then outlasts the linger is still committed by the writer alone. */
/* Short runs for 300 ms: how often the writer thread woke meanwhile
 * (*ret_n: how many runs). */
static uint64_t writer_wakeups_over_short_runs(RunQueue *q, int *ret_n) {
        static int k;
        char id[32];
        int n = 0;
        uint64_t wakes0 = writer_thread_wakeups();
        usec_t t0 = now_monotonic(), end = t0 + 300 * USEC_PER_MSEC;
        for (usec_t now = t0; now < end; now = now_monotonic(), n++) {
                snprintf(id, sizeof(id), "wk%d-%d", k, n);
                submit_deferred(q, id, 10);
                int attempt = 0;
                assert_int_equal(run_queue_start(q, id, 14, &attempt), 0);
                RunRecord fin = ended(id, 20);
                assert_int_equal(run_queue_finish(q, &fin, attempt), 0);
                usleep(200);
        }
        k++;
        *ret_n = n;
        return writer_thread_wakeups() - wakes0;
}

static void test_writer_sleeps_while_finishes_take_the_starts(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        /* Its thread started (the first deferred submit starts it). */
        submit_deferred(q, "wk-first", 10);
        int attempt = 0;
        assert_int_equal(run_queue_start(q, "wk-first", 14, &attempt), 0);
        RunRecord first = ended("wk-first", 20);
        assert_int_equal(run_queue_finish(q, &first, attempt), 0);
        /* Measured again, three times at most: on a loaded machine the
         * writer also sleeps on the store's lock, a voluntary switch as
         * well (once 40+ at load 20); a look every 2 ms is ~150 each time. */
        int n = 0;
        uint64_t wakes = UINT64_MAX;
        for (int tries = 0; tries < 3 && wakes >= 40; tries++) {
                wakes = writer_wakeups_over_short_runs(q, &n);
                print_message("%d short runs in 300 ms: the writer thread woke %llu times\n", n,
                              (unsigned long long) wakes);
                assert_true(n > 100);
        }
        assert_true(wakes < 40);

        submit_deferred(q, "wk-long", 10);
        usec_t queued = now_monotonic(), deadline = queued + 10 * USEC_PER_SEC;
        RunRecord *r = NULL;
        while (store_run_get(s, NULL, "wk-long", &r) < 0) {
                assert_true(now_monotonic() < deadline);
                usleep(500);
        }
        usec_t waited = now_monotonic() - queued;
        print_message("a lingering start was committed after %.1f ms\n", (double) waited / USEC_PER_MSEC);
        assert_string_equal(r->status, "running");
        run_record_free(r);
        assert_true(waited >= 2 * USEC_PER_MSEC);
        assert_true(waited < USEC_PER_SEC); /* at most 32 ms, quiet */
        run_queue_free(q);
        store_close(s);
}

/* Before its id is shown, a deferred run is committed (reveal); a finish
 * of an attempt that is not the queued submit's does not replace it; a
 * crash then finds it running and runs it again as attempt 2. */
static void test_deferred_submit_reveal_fence_and_recovery(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        store_writer_set_linger(s, 3600 * USEC_PER_SEC);
        submit_deferred(q, "dr1", 10);
        assert_int_equal(run_queue_reveal(q, "dr1"), 0);
        /* What another process (a restart) sees. */
        sqlite3 *db;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        int attempt = 0;
        _cleanup_free_ char *st = committed_status(db, "dr1", &attempt);
        assert_string_equal(st, "running");
        assert_int_equal(attempt, 1);
        sqlite3_close(db);
        /* A late end of attempt 2 (never started) is refused, queued or not. */
        submit_deferred(q, "dr2", 10);
        RunRecord fin = ended("dr2", 30);
        assert_int_equal(run_queue_finish(q, &fin, 2), -ESTALE);
        _cleanup_(run_record_freep) RunRecord *r2 = get(s, "dr2");
        assert_string_equal(r2->status, "running");
        /* A running run is not cancelled as a queued one. */
        assert_int_equal(run_queue_cancel(q, "dr2", "cancel"), -ESTALE);
        /* Crash: close (nothing queued is lost on a clean close) and
         * recover in a new store: both run again as attempt 2. */
        run_queue_free(q);
        store_close(s);
        assert_int_equal(store_open(path, &s), 0);
        q = run_queue_sqlite_new(s);
        PendingRun *v = NULL;
        size_t n = 0, lost = 0;
        assert_int_equal(run_queue_recover(q, "the daemon stopped", &v, &n, &lost), 0);
        assert_int_equal(lost, 0);
        assert_int_equal(n, 2);
        assert_string_equal(v[0].id, "dr1");
        assert_int_equal(v[0].attempt, 1);
        assert_string_equal(v[0].request_json, "{\"fn_name\":\"fx\",\"fn_version\":1}");
        pending_run_list_free(v, n);
        assert_int_equal(run_queue_start(q, "dr1", 40, &attempt), 0);
        assert_int_equal(attempt, 2);
        /* The first attempt's late end is dropped; the second's written. */
        RunRecord fin1 = ended("dr1", 41);
        assert_int_equal(run_queue_finish(q, &fin1, 1), -ESTALE);
        assert_int_equal(run_queue_finish(q, &fin1, 2), 0);
        _cleanup_(run_record_freep) RunRecord *r1 = get(s, "dr1");
        assert_string_equal(r1->status, "succeeded");
        assert_int_equal(r1->attempt, 2);
        run_queue_free(q);
        store_close(s);
}

/* A run that must never run twice (max_attempts 1) is not deferred. */
static void test_deferred_submit_not_for_retries_0(void **state) {
        Store *s = open_fresh();
        RunQueue *q = run_queue_sqlite_new(s);
        store_writer_set_linger(s, 3600 * USEC_PER_SEC);
        RunRecord r = { .id = (char *) "do1", .tenant = (char *) "a", .filename = (char *) "f.py",
                        .status = (char *) "running", .created = 1, .max_attempts = 1 };
        assert_int_equal(run_queue_submit_deferred(q, &r, "{\"source\":\"x\"}"), 0);
        _cleanup_(run_record_freep) RunRecord *got = get(s, "do1"); /* durable at once */
        assert_string_equal(got->status, "queued");
        assert_int_equal(got->attempt, 0);
        run_queue_free(q);
        store_close(s);
}

/* A replacement that cannot be stored (here: a row of that id written by
 * another process, gone again before the retry) fails the finish, and the
 * submit goes back to the queue: the retried finish (the daemon's
 * unwritten runs) still finds it and ends the run, not -ESTALE on nothing. */
static void external_exec(const char *path, const char *sql) {
        sqlite3 *db;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

static void test_deferred_submit_failed_replacement_retries(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        store_writer_set_linger(s, 3600 * USEC_PER_SEC);
        submit_deferred(q, "df1", 10);
        external_exec(path, "INSERT INTO runs (id, tenant, filename, status, exit_code, created, attempt, "
                            "max_attempts) VALUES ('df1','b','g.py','running',-1,10,1,3)");
        RunRecord fin = ended("df1", 20);
        assert_true(run_queue_finish(q, &fin, 1) < 0);
        external_exec(path, "DELETE FROM runs WHERE id='df1'");
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_ended_with_everything(s, "df1", 20);
        run_queue_free(q);
        store_close(s);
}

/* ---- a run's start and end kept relative to its created (round 21) ----
 * started and finished are stored as created - t - 1 (negative: a few µs
 * in 1 byte instead of 8) when t >= created, 0 and a t before created as
 * they are; rows written before (absolute, >= 0) read as they did. The
 * times as a daemon writes them: a deployed function's invoke starts ~7 µs
 * after its created and ends ~63 µs after. */

#define TC ((usec_t) 1796207470224231ULL)

/* Column col of id's committed row: an integer (asserted), its value. */
static sqlite3_int64 stored_time(const char *path, const char *col, const char *id) {
        _cleanup_free_ char *type = NULL, *expr = xasprintf("typeof(%s)", col);
        (void) stored_value(path, expr, id, &type);
        assert_string_equal(type, "integer");
        return stored_value(path, col, id, NULL);
}

static void assert_stored(const char *path, const char *col, const char *id, sqlite3_int64 want) {
        sqlite3_int64 v = stored_time(path, col, id);
        if (v != want)
                fail_msg("%s of %s stored as %lld, not %lld", col, id, (long long) v, (long long) want);
}

/* id read back through the store with exactly these times, its row
 * holding started_stored and finished_stored. */
static void assert_times(Store *s, const char *path, const char *id, usec_t created, usec_t started, usec_t finished,
                         sqlite3_int64 started_stored, sqlite3_int64 finished_stored) {
        assert_int_equal(store_flush(s), 0);
        _cleanup_(run_record_freep) RunRecord *r = get(s, id);
        assert_int_equal(r->created, created);
        assert_int_equal(r->started, started);
        assert_int_equal(r->finished, finished);
        assert_stored(path, "started", id, started_stored);
        assert_stored(path, "finished", id, finished_stored);
}

/* id ended now (a cancel, a lost run: the store's clock) after t0, its
 * end stored relative to created, small, and read back as stored. */
static void assert_ended_now(Store *s, const char *path, const char *id, usec_t created, usec_t t0) {
        assert_int_equal(store_flush(s), 0);
        _cleanup_(run_record_freep) RunRecord *r = get(s, id);
        assert_int_equal(r->created, created);
        assert_true(r->finished >= t0 && r->finished <= now_realtime());
        sqlite3_int64 v = stored_time(path, "finished", id);
        assert_true(v < 0 && v > -(sqlite3_int64) (60 * USEC_PER_SEC));
        assert_int_equal(created + (usec_t) -v - 1, r->finished);
}

static void test_run_times_stored_relative_to_created(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunRecord r = { .id = (char *) "tr1", .tenant = (char *) "a", .filename = (char *) "f.py",
                        .function = (char *) "handler", .status = (char *) "succeeded", .exit_code = 0,
                        .value_json = (char *) "2", .created = TC, .started = TC + 7, .finished = TC + 63,
                        .attempt = 1, .max_attempts = 1 };
        assert_int_equal(store_run_insert(s, &r), 0);
        /* 1 byte each in the record, not 8. */
        assert_times(s, path, "tr1", TC, TC + 7, TC + 63, -8, -64);
        /* The API's run object as before: started_at, finished_at to the µs. */
        _cleanup_(run_record_freep) RunRecord *got = get(s, "tr1");
        _cleanup_free_ char *want = run_record_to_json(&r, NULL), *have = run_record_to_json(got, NULL);
        assert_string_equal(have, want);
        assert_non_null(strstr(have, "\"finished_at\":\"2026-12-02T"));
        /* A 10 s run: its end in 4 bytes. */
        r.id = (char *) "tr2";
        r.finished = TC + 10 * USEC_PER_SEC;
        assert_int_equal(store_run_insert(s, &r), 0);
        assert_times(s, path, "tr2", TC, TC + 7, TC + 10 * USEC_PER_SEC, -8, -(sqlite3_int64) (10 * USEC_PER_SEC) - 1);
        /* A list reads them the same way. */
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, "a", NULL, 10, &v, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(v[i]->started, TC + 7);
                assert_int_equal(v[i]->finished, streq(v[i]->id, "tr1") ? TC + 63 : TC + 10 * USEC_PER_SEC);
        }
        run_record_list_free(v, n);
        store_close(s);
}

/* Rows an older pysprinter wrote (absolute times) read exactly as before,
 * and a new end of such a row (relative) beside its absolute start too. */
static void test_run_times_of_old_rows_read_as_before(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        unsigned long long c = TC;
        _cleanup_free_ char *sql = xasprintf(
                "INSERT INTO runs (id, tenant, filename, status, exit_code, created, started, finished, attempt, "
                "max_attempts) VALUES ('to1','a','f.py','succeeded',0,%llu,%llu,%llu,1,1),"
                "('to2','a','f.py','queued',-1,%llu,0,0,0,3),('to3','a','f.py','running',-1,%llu,%llu,0,1,3)",
                c, c + 7, c + 63, c, c, c + 7);
        external_exec(path, sql);
        assert_times(s, path, "to1", TC, TC + 7, TC + 63, TC + 7, TC + 63);
        assert_times(s, path, "to2", TC, 0, 0, 0, 0);
        assert_times(s, path, "to3", TC, TC + 7, 0, TC + 7, 0);
        _cleanup_(run_record_freep) RunRecord *old = get(s, "to1");
        _cleanup_free_ char *api = run_record_to_json(old, NULL);
        assert_non_null(strstr(api, "\"started_at\":\"2026-12-02T"));
        RunQueue *q = run_queue_sqlite_new(s);
        RunRecord fin = { .id = (char *) "to3", .status = (char *) "succeeded", .exit_code = 0, .finished = TC + 63 };
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_times(s, path, "to3", TC, TC + 7, TC + 63, TC + 7, -64);
        run_queue_free(q);
        store_close(s);
}

/* A time at created is relative (-1); one before it (the clock stepped
 * back) and 0 (not started, not ended) stay as they are. */
static void test_run_times_at_and_before_created(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        static const struct {
                const char *id;
                usec_t created, started, finished;
                sqlite3_int64 started_stored, finished_stored;
        } c[] = {
                { "te-at", TC, TC, TC, -1, -1 },
                { "te-back", TC, TC - 5, TC - 1, (sqlite3_int64) TC - 5, (sqlite3_int64) TC - 1 },
                { "te-back-start", TC, TC - 5, TC + 63, (sqlite3_int64) TC - 5, -64 },
                { "te-unstarted", TC, 0, TC + 63, 0, -64 }, /* cancelled before it began */
                { "te-running", TC, TC + 7, 0, -8, 0 },
                { "te-no-created", 0, 5, 9, -6, -10 }, /* the other tests' tiny times */
        };
        for (size_t i = 0; i < ELEMENTSOF(c); i++) {
                RunRecord r = { .id = (char *) c[i].id, .tenant = (char *) "a", .filename = (char *) "f.py",
                                .status = (char *) "succeeded", .exit_code = 0, .created = c[i].created,
                                .started = c[i].started, .finished = c[i].finished, .max_attempts = 1 };
                assert_int_equal(store_run_insert(s, &r), 0);
                assert_times(s, path, c[i].id, c[i].created, c[i].started, c[i].finished, c[i].started_stored,
                             c[i].finished_stored);
        }
        store_close(s);
}

/* Every statement that writes started or finished stores them relative:
 * the INSERTs (created: the record's) and the UPDATEs (created: the
 * row's; a finish's or a start's record has none). */
static void test_run_times_relative_on_every_write_path(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        const char *request = "{\"fn_name\":\"fx\",\"fn_version\":1}";
        int attempt = 0;
        RunRecord r = { .tenant = (char *) "a", .filename = (char *) "f.py", .created = TC, .max_attempts = 3 };
        RunRecord fin = { .status = (char *) "succeeded", .exit_code = 0, .value_json = (char *) "2",
                          .finished = TC + 63 };

        /* The deferred submit (started at once) replaced by the ended
         * INSERT: one commit. */
        store_writer_set_linger(s, 3600 * USEC_PER_SEC);
        r.id = fin.id = (char *) "tw-ended-insert";
        r.status = (char *) "running";
        r.started = fin.started = TC + 7;
        uint64_t commits = store_commits(s);
        assert_int_equal(run_queue_submit_deferred(q, &r, request), 0);
        assert_int_equal(run_queue_start(q, r.id, TC + 7, &attempt), 0);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_int_equal(store_commits(s) - commits, 1);
        assert_times(s, path, r.id, TC, TC + 7, TC + 63, -8, -64);

        /* Its queued deferred submit turned into the started one by its
         * start, then replaced by its end (which gives no start). */
        r.id = fin.id = (char *) "tw-queued-insert";
        r.status = (char *) "queued";
        r.started = fin.started = 0;
        commits = store_commits(s);
        assert_int_equal(run_queue_submit_deferred(q, &r, request), 0);
        assert_int_equal(run_queue_start(q, r.id, TC + 7, &attempt), 0);
        assert_int_equal(attempt, 1);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_int_equal(store_commits(s) - commits, 1);
        assert_times(s, path, r.id, TC, TC + 7, TC + 63, -8, -64);

        /* Committed queued, its deferred start and its end as one UPDATE. */
        r.id = fin.id = (char *) "tw-start-end";
        assert_int_equal(run_queue_submit_deferred(q, &r, request), 0);
        assert_int_equal(run_queue_reveal(q, r.id), 0);
        assert_times(s, path, r.id, TC, 0, 0, 0, 0);
        commits = store_commits(s);
        assert_int_equal(run_queue_start(q, r.id, TC + 7, &attempt), 0);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_int_equal(store_commits(s) - commits, 1);
        assert_times(s, path, r.id, TC, TC + 7, TC + 63, -8, -64);

        /* Its start committed, then the finish's UPDATE: keeping that
         * start (none given) or writing the one given. */
        store_writer_set_linger(s, 0);
        for (int given = 0; given < 2; given++) {
                r.id = fin.id = (char *) (given ? "tw-finish-given" : "tw-finish");
                assert_int_equal(run_queue_submit(q, &r, request), 0);
                assert_int_equal(run_queue_start(q, r.id, TC + 7, &attempt), 0);
                assert_times(s, path, r.id, TC, TC + 7, 0, -8, 0);
                fin.started = given ? TC + 9 : 0;
                assert_int_equal(run_queue_finish(q, &fin, 1), 0);
                assert_times(s, path, r.id, TC, given ? TC + 9 : TC + 7, TC + 63, given ? -10 : -8, -64);
        }
        fin.started = 0;

        /* Submitted running (waited), its start answered from memory. */
        r.id = fin.id = (char *) "tw-submit-started";
        r.status = (char *) "running";
        r.started = TC + 7;
        assert_int_equal(run_queue_submit(q, &r, request), 0);
        assert_times(s, path, r.id, TC, TC + 7, 0, -8, 0);
        assert_int_equal(run_queue_start(q, r.id, TC + 8, &attempt), 0);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_times(s, path, r.id, TC, TC + 7, TC + 63, -8, -64);

        /* Retries 0: the waited start (UPDATE … RETURNING). */
        r.id = fin.id = (char *) "tw-once";
        r.status = (char *) "queued";
        r.started = 0;
        r.max_attempts = 1;
        assert_int_equal(run_queue_submit(q, &r, request), 0);
        assert_int_equal(run_queue_start(q, r.id, TC + 7, &attempt), 0);
        assert_times(s, path, r.id, TC, TC + 7, 0, -8, 0);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_times(s, path, r.id, TC, TC + 7, TC + 63, -8, -64);
        r.max_attempts = 3;

        /* The embedded engine's INSERT and UPDATE (which leaves created). */
        RunRecord e = { .id = (char *) "tw-update", .tenant = (char *) "a", .filename = (char *) "f.py",
                        .status = (char *) "running", .exit_code = -1, .created = TC, .started = TC + 7,
                        .max_attempts = 1 };
        assert_int_equal(store_run_insert(s, &e), 0);
        assert_times(s, path, e.id, TC, TC + 7, 0, -8, 0);
        e.status = (char *) "succeeded";
        e.exit_code = 0;
        e.finished = TC + 63;
        e.created = 0;
        assert_int_equal(store_run_update(s, &e), 0);
        assert_times(s, path, e.id, TC, TC + 7, TC + 63, -8, -64);

        /* The journal's two statements (an end written beside the batch
         * holding its run's submit or start, and their replay): the
         * ended upsert with no row, over the queued row, and the fenced
         * end over the started row. */
        assert_int_equal(store_flush(s), 0);
        RunRecord j = { .id = (char *) "tw-upsert", .tenant = (char *) "a", .filename = (char *) "f.py",
                        .function = (char *) "handler", .status = (char *) "succeeded", .exit_code = 0,
                        .value_json = (char *) "2", .created = TC, .started = TC + 7, .finished = TC + 63,
                        .attempt = 1, .max_attempts = 3 };
        assert_int_equal(store_run_exec(s, store_run_ended_upsert_sql, &j, NULL), 1);
        assert_times(s, path, j.id, TC, TC + 7, TC + 63, -8, -64);
        r.id = j.id = (char *) "tw-upsert-row";
        assert_int_equal(run_queue_submit(q, &r, request), 0);
        assert_int_equal(store_flush(s), 0);
        assert_int_equal(store_run_exec(s, store_run_ended_upsert_sql, &j, NULL), 1);
        assert_times(s, path, j.id, TC, TC + 7, TC + 63, -8, -64);
        r.id = j.id = (char *) "tw-end-update";
        assert_int_equal(run_queue_submit(q, &r, request), 0);
        assert_int_equal(run_queue_start(q, r.id, TC + 7, &attempt), 0);
        assert_int_equal(store_flush(s), 0);
        j.created = j.started = 0;
        assert_int_equal(store_run_exec(s, store_run_end_update_sql, &j, NULL), 1);
        assert_times(s, path, j.id, TC, TC + 7, TC + 63, -8, -64);

        /* Ended by the store's clock: a cancel, the recovery's two lost
         * runs (attempts used up; queued with no request), a run of a
         * dead owner, and store_runs_mark_lost(). Created a moment ago. */
        usec_t t0 = now_realtime(), c = t0 - 1000;
        r.created = c;
        r.id = (char *) "tw-cancel";
        assert_int_equal(run_queue_submit(q, &r, request), 0);
        assert_int_equal(run_queue_cancel(q, r.id, "cancelled"), 0);
        assert_ended_now(s, path, r.id, c, t0);
        r.id = (char *) "tw-lost-running";
        r.max_attempts = 1;
        assert_int_equal(run_queue_submit(q, &r, request), 0);
        assert_int_equal(run_queue_start(q, r.id, c + 7, &attempt), 0);
        RunRecord orphan = { .tenant = (char *) "a", .filename = (char *) "f.py", .status = (char *) "queued",
                             .exit_code = -1, .created = c, .max_attempts = 1 };
        orphan.id = (char *) "tw-lost-queued";
        assert_int_equal(store_run_insert(s, &orphan), 0); /* no request kept */
        PendingRun *pv = NULL;
        size_t pn = 0, lost = 0;
        assert_int_equal(run_queue_recover(q, "the daemon stopped", &pv, &pn, &lost), 0);
        pending_run_list_free(pv, pn);
        assert_int_equal(lost, 2);
        assert_ended_now(s, path, "tw-lost-running", c, t0);
        assert_stored(path, "started", "tw-lost-running", -8);
        assert_ended_now(s, path, "tw-lost-queued", c, t0);
        orphan.id = (char *) "tw-orphan";
        orphan.status = (char *) "running";
        orphan.started = c + 7;
        assert_int_equal(store_run_insert(s, &orphan), 0);
        assert_int_equal(store_run_set_owner(s, orphan.id, 1 << 23, 1), 0); /* no such pid */
        assert_int_equal(store_runs_mark_orphaned(s, "gone"), 1);
        assert_ended_now(s, path, orphan.id, c, t0);
        assert_stored(path, "started", orphan.id, -8);
        orphan.id = (char *) "tw-mark-lost";
        assert_int_equal(store_run_insert(s, &orphan), 0);
        assert_int_equal(store_runs_mark_lost(s, "the daemon restarted"), 1);
        assert_ended_now(s, path, orphan.id, c, t0);
        assert_stored(path, "started", orphan.id, -8);
        run_queue_free(q);
        store_close(s);
}


/* ---- the store's VFS (store-vfs.c): a WAL frame in one write ---------- */

static void vfs_exec(sqlite3 *db, const char *sql) {
        char *err = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
        if (rc != SQLITE_OK)
                fail_msg("%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

static long long vfs_int(sqlite3 *db, const char *sql) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        long long v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static char *vfs_text(sqlite3 *db, const char *sql) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        char *v = xstrdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return v;
}

static sqlite3 *vfs_db(const char *path, const char *vfs) {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
        sqlite3_busy_timeout(db, 10000);
        vfs_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0");
        return db;
}

/* Transactions [from, to) of one row each, over several pages (a 3000-byte
 * blob: the index and the table both change). */
static void vfs_insert(sqlite3 *db, int from, int to) {
        for (int i = from; i < to; i++) {
                _cleanup_free_ char *sql =
                        xasprintf("INSERT INTO t (k, v) VALUES (%d, zeroblob(3000) || randomblob(%d))", i, i % 50 + 1);
                vfs_exec(db, sql);
        }
}

/* What SQLite reads back through the plain unix VFS is what it wrote
 * through ours; the frames went out joined. */
static void test_vfs_joins_frames_plain_unix_reads_them(void **state) {
        (void) state;
        assert_string_equal(store_vfs(), STORE_VFS_NAME);
        _cleanup_free_ char *path = xasprintf("%s/vfs-plain.sqlite", dir);
        sqlite3 *db = vfs_db(path, store_vfs());
        vfs_exec(db, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB); CREATE INDEX t_v ON t(v)");
        uint64_t before = store_vfs_joined_writes();
        vfs_insert(db, 0, 300);
        /* At least a table page and an index page per transaction. */
        assert_true(store_vfs_joined_writes() - before >= 600);
        /* Another connection, plain "unix", reads the WAL as it is. */
        sqlite3 *plain = vfs_db(path, "unix");
        assert_int_equal(vfs_int(plain, "SELECT count(*) FROM t"), 300);
        assert_int_equal(vfs_int(plain, "SELECT sum(length(v)) FROM t"), vfs_int(db, "SELECT sum(length(v)) FROM t"));
        _cleanup_free_ char *ok = vfs_text(plain, "PRAGMA integrity_check");
        assert_string_equal(ok, "ok");
        sqlite3_close(plain);
        sqlite3_close(db);
}

/* A checkpoint, a WAL restarted from its start (frames overwrite older
 * ones), then a kill -9 of the writer with nothing closed: a plain
 * connection recovers every committed row from the WAL, integrity ok. */
static void test_vfs_restart_then_crash_recovers(void **state) {
        (void) state;
        _cleanup_free_ char *path = xasprintf("%s/vfs-crash.sqlite", dir);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                sqlite3 *db = vfs_db(path, store_vfs());
                vfs_exec(db, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB); CREATE INDEX t_v ON t(v)");
                vfs_insert(db, 0, 200);
                int log = 0, ckpt = 0;
                if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, &log, &ckpt) != SQLITE_OK ||
                    log != ckpt)
                        _exit(3);
                vfs_insert(db, 200, 260); /* these restart the WAL */
                /* A passive checkpoint of part of the new WAL, then more. */
                if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt) != SQLITE_OK)
                        _exit(4);
                vfs_insert(db, 260, 300);
                vfs_exec(db, "DELETE FROM t WHERE k % 7 = 0");
                raise(SIGKILL);
                _exit(5);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* The WAL is there, bigger than its header: recovery has work. */
        _cleanup_free_ char *wal = xasprintf("%s-wal", path);
        struct stat stw;
        assert_int_equal(stat(wal, &stw), 0);
        assert_true(stw.st_size > 32);
        sqlite3 *plain = vfs_db(path, "unix");
        assert_int_equal(vfs_int(plain, "SELECT count(*) FROM t"), 300 - 43);
        assert_int_equal(vfs_int(plain, "SELECT count(*) FROM t WHERE length(CAST(v AS BLOB)) = 3001 + k % 50"), 300 - 43);
        _cleanup_free_ char *ok = vfs_text(plain, "PRAGMA integrity_check");
        assert_string_equal(ok, "ok");
        /* And through ours after a full checkpoint into the database. */
        vfs_exec(plain, "PRAGMA wal_checkpoint(TRUNCATE)");
        sqlite3_close(plain);
        sqlite3 *db = vfs_db(path, store_vfs());
        assert_int_equal(vfs_int(db, "SELECT max(k) FROM t"), 299);
        _cleanup_free_ char *ok2 = vfs_text(db, "PRAGMA integrity_check");
        assert_string_equal(ok2, "ok");
        sqlite3_close(db);
}

/* The held header: written by whatever call comes next on the file, so
 * the file is always as without the shim when anyone looks. */
static void test_vfs_held_header_written_by_the_next_call(void **state) {
        (void) state;
        sqlite3_vfs *vfs = sqlite3_vfs_find(store_vfs());
        assert_non_null(vfs);
        _cleanup_free_ char *db = xasprintf("%s/vfs-file.sqlite", dir);
        _cleanup_free_ char *path = xasprintf("%s-wal", db);
        int fd = open(db, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        sqlite3_file *f = calloc(1, (size_t) vfs->szOsFile);
        int out = 0;
        assert_int_equal(vfs->xOpen(vfs, path, f, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_WAL, &out),
                         SQLITE_OK);
        unsigned char want[2048] = {}, hdr[24], page[100];
        size_t end = 0;
#define PUT(buf, n, off)                                                                        \
        do {                                                                                    \
                assert_int_equal(f->pMethods->xWrite(f, buf, n, off), SQLITE_OK);               \
                memcpy(want + (off), buf, n);                                                   \
                end = MAX(end, (size_t) (off) + (n));                                           \
        } while (0)
        memset(hdr, 'h', sizeof(hdr));
        memset(page, 'p', sizeof(page));
        unsigned char wh[32];
        memset(wh, 'W', sizeof(wh));
        PUT(wh, 32, 0);
        /* Held, then seen by xFileSize. */
        PUT(hdr, 24, 32);
        sqlite3_int64 size = 0;
        assert_int_equal(f->pMethods->xFileSize(f, &size), SQLITE_OK);
        assert_int_equal(size, 56);
        /* Held, then joined with the page right after it. */
        uint64_t before = store_vfs_joined_writes();
        hdr[0] = '1';
        PUT(hdr, 24, 56);
        PUT(page, 100, 80);
        assert_int_equal(store_vfs_joined_writes() - before, 1);
        /* Held, then read back. */
        hdr[0] = '2';
        PUT(hdr, 24, 180);
        unsigned char got[2048];
        assert_int_equal(f->pMethods->xRead(f, got, 24, 180), SQLITE_OK);
        assert_memory_equal(got, hdr, 24);
        /* Held, then a write elsewhere: written first, not joined. */
        hdr[0] = '3';
        PUT(hdr, 24, 300);
        page[0] = 'q';
        PUT(page, 100, 1000);
        assert_int_equal(store_vfs_joined_writes() - before, 1);
        /* Held, then synced; held, then truncated past it; held, then closed. */
        hdr[0] = '4';
        PUT(hdr, 24, 400);
        assert_int_equal(f->pMethods->xSync(f, SQLITE_SYNC_NORMAL), SQLITE_OK);
        hdr[0] = '5';
        PUT(hdr, 24, 1200);
        assert_int_equal(f->pMethods->xTruncate(f, 1210), SQLITE_OK);
        end = 1210;
        memset(want + 1210, 0, sizeof(want) - 1210);
        hdr[0] = '6';
        PUT(hdr, 24, 1300);
        assert_int_equal(f->pMethods->xClose(f), SQLITE_OK);
#undef PUT
        free(f);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        ssize_t n = read(fd, got, sizeof(got));
        close(fd);
        assert_int_equal(n, (ssize_t) end);
        assert_memory_equal(got, want, end);
}

/* ---- group commit: a waiting caller is woken when its write is done or
 * when it is first in line to lead the next commit, not by every commit ---- */

struct wake_writer {
        Store *s;
        const char *id;
        size_t value_size;
};

static void *wake_writer_main(void *p) {
        struct wake_writer *w = p;
        _cleanup_free_ char *value = NULL;
        if (w->value_size > 0) {
                value = xmalloc(w->value_size + 1);
                memset(value, '7', w->value_size);
                value[w->value_size] = 0;
        }
        RunRecord r = { .id = (char *) w->id, .tenant = (char *) "a", .filename = (char *) "f.py",
                        .status = (char *) "succeeded", .exit_code = 0, .created = 1, .value_json = value };
        assert_int_equal(store_run_insert(w->s, &r), 0);
        return NULL;
}

static void wait_writer_state(Store *s, bool leading, unsigned waiting) {
        usec_t deadline = now_monotonic() + 20 * USEC_PER_SEC;
        for (;;) {
                bool l = false;
                unsigned w = 0;
                store_writer_state(s, &l, &w);
                if (l == leading && w == waiting)
                        return;
                assert_true(now_monotonic() < deadline);
                (void) sched_yield();
        }
}

static void test_group_commit_wakes_only_whom_it_concerns(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        /* Another connection holds the write lock: the first caller leads
         * and waits in BEGIN; three more queue behind it, the first of
         * them with a large record (its commit takes a while). */
        uint64_t idle0 = store_writer_idle_wakeups(s), commits0 = store_commits(s);
        sqlite3 *blk = vfs_db(path, "unix");
        vfs_exec(blk, "BEGIN IMMEDIATE");
        struct wake_writer w[4] = {
                { s, "rwake0", 0 }, { s, "rwake1", 32 << 20 }, { s, "rwake2", 0 }, { s, "rwake3", 0 },
        };
        pthread_t t[4];
        assert_int_equal(pthread_create(&t[0], NULL, wake_writer_main, &w[0]), 0);
        wait_writer_state(s, true, 0);
        for (int i = 1; i < 4; i++) {
                assert_int_equal(pthread_create(&t[i], NULL, wake_writer_main, &w[i]), 0);
                wait_writer_state(s, true, (unsigned) i);
        }
        vfs_exec(blk, "COMMIT");
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        uint64_t idle = store_writer_idle_wakeups(s) - idle0, commits = store_commits(s) - commits0;
        print_message("%llu commits, %llu idle wake-ups\n", (unsigned long long) commits, (unsigned long long) idle);
        /* The first commit ended: its caller and the first in line woke,
         * the two behind slept on until the large commit took theirs (woken
         * by every commit, they woke into it and slept again). */
        assert_int_equal(commits, 2);
        assert_int_equal(idle, 0);
        assert_int_equal(vfs_int(blk, "SELECT count(*) FROM runs WHERE id LIKE 'rwake%'"), 4);
        sqlite3_close(blk);
        store_close(s);
}

/* ---- the ended-runs journal (round 12, store.h) ----
 * A synchronous run's end is one append to the journal, committed later
 * in a batch; recover (the daemon's start) replays what a crash left. */

/* The journal's files' total size. */
static off_t journal_size(const char *path) {
        off_t n = 0;
        for (int i = 0; i < 2; i++) {
                _cleanup_free_ char *j = xasprintf("%s-ended.%d", path, i);
                struct stat st;
                if (stat(j, &st) == 0)
                        n += st.st_size;
        }
        return n;
}

/* A queue over s with the journal on (the daemon's start turns it on),
 * its batches held off for an hour. */
static RunQueue *journaling_queue(Store *s) {
        RunQueue *q = run_queue_sqlite_new(s);
        assert_int_equal(store_journal_start(s, true, NULL), 0);
        store_journal_set_linger(s, 3600 * USEC_PER_SEC);
        store_writer_set_linger(s, 3600 * USEC_PER_SEC);
        return q;
}

/* The same with the default lingers (the writer's 2 ms, the journal's
 * 50 ms): the writer's thread commits by itself. */
static RunQueue *journaling_queue_default_lingers(Store *s) {
        RunQueue *q = journaling_queue(s);
        store_journal_set_linger(s, 0);
        store_writer_set_linger(s, 0);
        return q;
}

/* n synchronous runs ended through the journal: submitted deferred and
 * finished, every other one through the run watcher's held finishes;
 * every third one's submit committed first (a run that outlived the
 * linger: its end is journaled as the finish's fenced UPDATE). */
static void end_journaled(Store *s, RunQueue *q, const char *prefix, int n) {
        /* First: their commits take whatever is queued along. */
        for (int i = 2; i < n; i += 3) {
                _cleanup_free_ char *id = xasprintf("%s%d", prefix, i);
                submit_sync(q, id, 10, false);
        }
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *id = xasprintf("%s%d", prefix, i);
                if (i % 3 != 2)
                        submit_deferred(q, id, 10);
                RunRecord fin = ended(id, 20);
                if (i % 2 == 0) {
                        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
                        continue;
                }
                store_finish_hold(s);
                assert_int_equal(run_queue_finish(q, &fin, 1), 0);
                store_finish_release(s, NULL, NULL);
        }
}

/* Runs child(path, arg) in a child process that kills itself -9 at the
 * end (it _exit()s non-zero when something fails). */
static void in_child_killed(void (*child)(const char *path, void *arg), const char *path, void *arg) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                child(path, arg);
                kill(getpid(), SIGKILL);
                _exit(5);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
                /* The child's own failure went to its output above. */
                fail_msg("the child was to kill itself -9; it %s %d", WIFSIGNALED(status) ? "died of signal" : "exited",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* What a child killed -9 does before (in_child_killed()'s arg). */
typedef struct {
        const char *prefix; /* its runs' ids: prefix0.., or the one id */
        int n;
        bool commit_first;
        int holds;          /* BatchHolds */
        unsigned commits_passed;
} CrashCase;

static void journaled_ends_child(const char *path, void *arg) {
        const CrashCase *a = arg;
        const char *prefix = a->prefix;
        int n = a->n;
        bool commit_first = a->commit_first;
        Store *s = NULL;
        if (store_open(path, &s) < 0)
                _exit(1);
        RunQueue *q = journaling_queue(s);
        end_journaled(s, q, prefix, n);
        /* Answered with no commit of their ends: the journal
         * holds them all. */
        if (store_journal_bytes(s) == 0 || store_journal_pending(s) != (unsigned) n)
                _exit(2);
        if (commit_first) {
                /* The batch committed, the journal not emptied
                 * yet: its files kept aside and put back. */
                for (int i = 0; i < 2; i++) {
                        _cleanup_free_ char *cmd =
                                xasprintf("cp %s-ended.%d %s-ended.%d.keep", path, i, path, i);
                        if (system(cmd) != 0)
                                _exit(3);
                }
                (void) store_flush(s);
                for (int i = 0; i < 2; i++) {
                        _cleanup_free_ char *cmd =
                                xasprintf("mv %s-ended.%d.keep %s-ended.%d", path, i, path, i);
                        if (system(cmd) != 0)
                                _exit(4);
                }
        }
}

/* In a child killed -9 right after its runs ended through the journal,
 * no batch committed: what a restart must find. */
static void crash_after_journaled_ends(const char *path, const char *prefix, int n, bool commit_first) {
        CrashCase a = { .prefix = prefix, .n = n, .commit_first = commit_first };
        in_child_killed(journaled_ends_child, path, &a);
}

/* Opens path, replays its journal (store_journal_start(), as recover
 * does) and finds prefix0..n-1 ended, the journal emptied. */
static void replay_finds_all_ended(const char *path, const char *prefix, int n, size_t expect_replayed) {
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        size_t replayed = 0;
        assert_int_equal(store_journal_start(s, true, &replayed), 0);
        assert_int_equal(replayed, expect_replayed);
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *id = xasprintf("%s%d", prefix, i);
                assert_ended_with_everything(s, id, 20);
        }
        assert_int_equal(journal_size(path), 0);
        store_close(s);
}

/* The recovery after a restart: the runs ended, not pending, so nothing
 * runs again and nothing is lost. */
static void assert_recovers_nothing_pending(RunQueue *q) {
        PendingRun *v = NULL;
        size_t n = 0, lost = 0;
        assert_int_equal(run_queue_recover(q, "stopped", &v, &n, &lost), 0);
        assert_int_equal(n, 0);
        assert_int_equal(lost, 0);
        pending_run_list_free(v, n);
}

static void test_journaled_ends_survive_a_crash_before_their_batch(void **state) {
        _cleanup_free_ char *path = NULL;
        store_close(open_at(&path));
        crash_after_journaled_ends(path, "jc", 6, false);
        assert_true(journal_size(path) > 0);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        /* Opening replays nothing: only the runs' owner does (the daemon). */
        RunRecord *none = NULL;
        assert_int_equal(store_run_get(s, NULL, "jc0", &none), -ENOENT);
        assert_int_equal(store_journal_start(s, true, NULL), 0);
        RunQueue *q = run_queue_sqlite_new(s);
        assert_recovers_nothing_pending(q);
        for (int i = 0; i < 6; i++) {
                _cleanup_free_ char *id = xasprintf("jc%d", i);
                assert_ended_with_everything(s, id, 20);
        }
        assert_int_equal(journal_size(path), 0);
        run_queue_free(q);
        store_close(s);
}

static void test_journal_replay_after_its_batch_committed_is_idempotent(void **state) {
        _cleanup_free_ char *path = NULL;
        store_close(open_at(&path));
        crash_after_journaled_ends(path, "ji", 4, true);
        assert_true(journal_size(path) > 0);
        /* Each one's INSERT finds its row: skipped, nothing fails. */
        replay_finds_all_ended(path, "ji", 4, 4);
}

static void test_journal_torn_last_record_is_skipped(void **state) {
        _cleanup_free_ char *path = NULL;
        store_close(open_at(&path));
        crash_after_journaled_ends(path, "jt", 3, false);
        /* A crash in the middle of a fourth record's write: its length
         * says more than is there, or its bytes fail the checksum. */
        _cleanup_free_ char *j0 = xasprintf("%s-ended.0", path);
        struct stat st;
        assert_int_equal(stat(j0, &st), 0);
        assert_true(st.st_size > 12);
        int fd = open(j0, O_RDWR | O_APPEND);
        assert_true(fd >= 0);
        uint8_t buf[4096];
        assert_int_equal(pread(fd, buf, 64, 0), 64);
        assert_int_equal(write(fd, buf, 64), 64); /* a record's first 64 bytes */
        close(fd);
        replay_finds_all_ended(path, "jt", 3, 3);
}

static void test_journaled_run_read_before_its_batch(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue(s);
        uint64_t commits = store_commits(s);
        end_journaled(s, q, "jr", 2);
        assert_int_equal(store_commits(s), commits);
        /* This process's reads see them at once (the batch is committed
         * first); a list too. */
        assert_ended_with_everything(s, "jr0", 20);
        assert_ended_with_everything(s, "jr1", 20);
        assert_true(store_commits(s) > commits);
        /* Committed and emptied: the files' pages never reach the disk. */
        assert_int_equal(journal_size(path), 0);
        /* A finish of a committed row (a run that outlived the linger)
         * is journaled too, as its fenced UPDATE; a second one is refused
         * by the fence as before, without a write. */
        submit_running(q, "jr-two", 3, 10);
        uint64_t bytes = store_journal_bytes(s);
        commits = store_commits(s);
        RunRecord fin = ended("jr-two", 21);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        assert_true(store_journal_bytes(s) > bytes);
        assert_int_equal(store_commits(s), commits);
        bytes = store_journal_bytes(s);
        assert_int_equal(run_queue_finish(q, &fin, 1), -ESTALE);
        assert_int_equal(store_journal_bytes(s), bytes);
        _cleanup_(run_record_freep) RunRecord *two = get(s, "jr-two");
        assert_string_equal(two->status, "succeeded");
        assert_int_equal(two->finished, 21);
        run_queue_free(q);
        store_close(s);
        assert_int_equal(journal_size(path), 0);
}

static void test_journal_batches_many_runs_in_one_commit(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue(s);
        store_journal_set_linger(s, 20 * USEC_PER_MSEC);
        store_writer_set_linger(s, 0);
        uint64_t commits = store_commits(s);
        for (int i = 0; i < 40; i++) {
                _cleanup_free_ char *id = xasprintf("jb%d", i);
                submit_deferred(q, id, 10);
                RunRecord fin = ended(id, 20);
                assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        }
        /* The writer's thread commits them by itself, in few batches. */
        for (int i = 0; i < 500 && journal_size(path) > 0; i++)
                usleep(10 * 1000);
        assert_int_equal(journal_size(path), 0);
        uint64_t batches = store_commits(s) - commits;
        print_message("40 journaled ends: %llu commits\n", (unsigned long long) batches);
        assert_true(batches >= 1 && batches <= 5);
        assert_ended_with_everything(s, "jb39", 20);
        run_queue_free(q);
        store_close(s);
}


/* ---- the journal's batch (round 17) ----
 * A batch is STORE_JOURNAL_MAX_RECORDS ends or STORE_JOURNAL_LINGER_USEC:
 * one commit for all of them, none before it is full or due. */

/* n synchronous runs prefix0..n-1 ended through the journal (submitted
 * deferred, finished while their submit is still queued). */
static void end_deferred(RunQueue *q, const char *prefix, int from, int to) {
        for (int i = from; i < to; i++) {
                _cleanup_free_ char *id = xasprintf("%s%d", prefix, i);
                submit_deferred(q, id, 10);
                RunRecord fin = ended(id, 20);
                assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        }
}

/* Until the journal's records are committed (at most 5 s). */
static void wait_journal_committed(Store *s) {
        for (int i = 0; i < 5000 && store_journal_pending(s) > 0; i++)
                usleep(1000);
        assert_int_equal(store_journal_pending(s), 0);
}

static void test_journal_batch_holds_its_records_until_full(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue(s); /* the batch's time held off */
        uint64_t commits = store_commits(s);
        end_deferred(q, "jn", 0, STORE_JOURNAL_MAX_RECORDS - 1);
        usleep(50 * 1000);
        /* Not full yet: all of them still in the journal, nothing committed. */
        assert_int_equal(store_journal_pending(s), STORE_JOURNAL_MAX_RECORDS - 1);
        assert_int_equal(store_commits(s), commits);
        /* The last one fills it: the writer's thread commits it, in one go. */
        end_deferred(q, "jn", STORE_JOURNAL_MAX_RECORDS - 1, STORE_JOURNAL_MAX_RECORDS);
        wait_journal_committed(s);
        assert_int_equal(store_commits(s), commits + 1);
        _cleanup_(run_record_freep) RunRecord *first = get(s, "jn0"), *last = NULL;
        _cleanup_free_ char *last_id = xasprintf("jn%d", STORE_JOURNAL_MAX_RECORDS - 1);
        last = get(s, last_id);
        assert_string_equal(first->status, "succeeded");
        assert_string_equal(last->status, "succeeded");
        assert_string_equal(last->value_json, "42");
        run_queue_free(q);
        store_close(s);
}

static void test_journal_batch_waits_its_linger(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        /* The defaults: the writer looks every few ms (an hour's linger
         * would leave it asleep past the journal's time). */
        RunQueue *q = journaling_queue_default_lingers(s);
        uint64_t commits = store_commits(s);
        usec_t t0 = now_monotonic();
        end_deferred(q, "jw", 0, 5);
        wait_journal_committed(s);
        /* One batch, committed no sooner than the linger after its first end
         * (the writer may commit later, never earlier). */
        usec_t waited = now_monotonic() - t0;
        print_message("5 journaled ends committed after %llu ms\n", (unsigned long long) (waited / USEC_PER_MSEC));
        assert_true(waited >= STORE_JOURNAL_LINGER_USEC);
        assert_int_equal(store_commits(s), commits + 1);
        run_queue_free(q);
        store_close(s);
}

static void test_get_of_another_run_leaves_the_batch_pending(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue(s);
        submit_sync(q, "jg-old", 5, false); /* committed */
        end_deferred(q, "jgp", 0, 3);
        uint64_t commits = store_commits(s);
        /* A run with nothing pending reads as committed, without a commit:
         * the journal's batch stays whole. */
        _cleanup_(run_record_freep) RunRecord *old = get(s, "jg-old");
        assert_int_equal(store_commits(s), commits);
        assert_int_equal(store_journal_pending(s), 3);
        /* A journaled one (by its id, or a prefix of it) is committed
         * first and read ended, as before. */
        _cleanup_(run_record_freep) RunRecord *r = get(s, "jgp1");
        assert_string_equal(r->status, "succeeded");
        assert_true(store_commits(s) > commits);
        assert_int_equal(store_journal_pending(s), 0);
        end_deferred(q, "jgq", 0, 1);
        _cleanup_(run_record_freep) RunRecord *p = NULL;
        assert_int_equal(store_run_get(s, NULL, "jgq", &p), 0);
        assert_string_equal(p->status, "succeeded");
        run_queue_free(q);
        store_close(s);
}

/* ---- a synchronous run's submit rides with the journal's batch (round 18) ----
 * Its caller has no id before its answer: a run that outlasts the
 * writer's 2 ms linger no longer has its submit committed alone; it
 * waits for the next commit (the journal's, under load), and at most the
 * journal's linger. */

/* Run id is committed running; then q and s closed. */
static void assert_running_then_close(Store *s, RunQueue *q, const char *id) {
        _cleanup_(run_record_freep) RunRecord *r = get(s, id);
        assert_string_equal(r->status, "running");
        run_queue_free(q);
        store_close(s);
}

static void test_outlasting_synchronous_runs_add_no_commits(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue_default_lingers(s);
        uint64_t commits = store_commits(s);
        usec_t t0 = now_monotonic();
        int n = 0;
        for (; now_monotonic() - t0 < 200 * USEC_PER_MSEC; n++) {
                _cleanup_free_ char *id = xasprintf("jo%d", n);
                submit_deferred(q, id, 10);
                usleep(5 * 1000); /* outlasts the writer's linger */
                RunRecord fin = ended(id, 20);
                assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        }
        uint64_t during = store_commits(s) - commits;
        print_message("%d runs of 5 ms in %llu ms: %llu commits\n", n,
                      (unsigned long long) ((now_monotonic() - t0) / USEC_PER_MSEC), (unsigned long long) during);
        assert_true(n >= 10);
        /* The journal's batches only (one each 50 ms): base18 committed
         * each run's submit alone, 2 ms after it. */
        assert_true(during <= (now_monotonic() - t0) / STORE_JOURNAL_LINGER_USEC + 2);
        assert_int_equal(store_flush(s), 0);
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *id = xasprintf("jo%d", i);
                assert_ended_with_everything(s, id, 20);
        }
        run_queue_free(q);
        store_close(s);
}

static void test_lone_synchronous_submit_waits_the_journals_linger(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue_default_lingers(s);
        uint64_t commits = store_commits(s);
        /* Taken before the submit: the linger counts from the record's
         * queueing inside it, and a submit descheduled after that (ASan,
         * a loaded CI) made the wait look shorter than the linger. */
        usec_t queued = now_monotonic();
        submit_deferred(q, "jl", 10);
        /* No read here: a read commits what is pending. */
        while (store_commits(s) == commits) {
                assert_true(now_monotonic() - queued < 10 * USEC_PER_SEC);
                usleep(500);
        }
        usec_t waited = now_monotonic() - queued;
        print_message("a lone synchronous run's submit committed after %.1f ms\n", (double) waited / USEC_PER_MSEC);
        assert_true(waited >= STORE_JOURNAL_LINGER_USEC); /* base18: 2 ms */
        assert_true(waited < USEC_PER_SEC);
        assert_running_then_close(s, q, "jl");
}

/* ---- a list asks the writer's thread for the journal's batch (round 18) ----
 * A list from an HTTP request commits nothing in its own thread: it asks,
 * the writer's thread commits what was queued then (not lowered), calls
 * the settled hook, and the list reads every run ended before it asked. */

typedef struct {
        pthread_t thread;
        int policy;
        atomic_uint commits, settled;
} SettleSeen;

static void settle_commit_seen(void *p) {
        SettleSeen *w = p;
        w->thread = pthread_self();
        w->policy = sched_getscheduler(0);
        w->commits++;
}

static void settle_hook_seen(void *p) {
        SettleSeen *w = p;
        w->settled++;
}

static void test_list_asks_the_writers_thread_for_the_batch(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue(s); /* nothing commits by itself */
        SettleSeen seen = {};
        store_set_settled_hook(s, settle_hook_seen, &seen);
        end_deferred(q, "js", 0, 3);
        store_writer_set_commit_hook(s, settle_commit_seen, &seen);
        uint64_t ticket = store_runs_settle_ask(s);
        assert_true(ticket > 0);
        for (int i = 0; i < 5000 && !store_runs_settled(s, ticket); i++)
                usleep(1000);
        assert_true(store_runs_settled(s, ticket));
        /* One commit, by another thread (the writer's), not lowered to
         * SCHED_IDLE as the writer's own batches are; then the hook. */
        assert_int_equal(seen.commits, 1);
        assert_false(pthread_equal(seen.thread, pthread_self()));
        assert_int_not_equal(seen.policy, SCHED_IDLE);
        for (int i = 0; i < 5000 && seen.settled == 0; i++)
                usleep(1000);
        assert_int_equal(seen.settled, 1);
        assert_int_equal(store_journal_pending(s), 0);
        /* Ends journaled after the ask: the list reads what it asked for
         * and commits nothing more (they wait for their own batch). */
        end_deferred(q, "jt", 0, 2);
        uint64_t commits = store_commits(s);
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list_settled(s, ticket, NULL, NULL, 100, &v, &n), 0);
        assert_int_equal(store_commits(s), commits);
        assert_int_equal(store_journal_pending(s), 2);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(v[i]->status, "succeeded");
        run_record_list_free(v, n);
        /* Nothing journaled pending: nothing to wait for. */
        assert_int_equal(store_flush(s), 0);
        assert_int_equal(store_runs_settle_ask(s), 0);
        store_writer_set_commit_hook(s, NULL, NULL);
        run_queue_free(q);
        store_close(s);
}

/* A reveal commits only when the run's write is still queued: a list
 * during a load shows runs whose records are committed (beyond its limit,
 * or committed for its ask) and committed the journal's batch for each. */
static void test_reveal_of_a_committed_run_commits_nothing(void **state) {
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue(s);
        submit_sync(q, "rv-old", 5, false); /* committed */
        end_deferred(q, "rvj", 0, 3);
        uint64_t commits = store_commits(s);
        assert_int_equal(run_queue_reveal(q, "rv-old"), 0);
        assert_int_equal(store_commits(s), commits);
        assert_int_equal(store_journal_pending(s), 3);
        submit_deferred(q, "rv-new", 10);
        assert_int_equal(run_queue_reveal(q, "rv-new"), 0);
        assert_true(store_commits(s) > commits);
        assert_running_then_close(s, q, "rv-new");
}

/* ---- a run's end does not wait for the writer's batch (round 13) ----
 * The run watcher ends every warm invoke; at wrk -c8 it slept up to 15 ms
 * in the finish until the batch under way committed, when that batch held
 * a write of the run (its submit, its start). Now such an end is
 * journaled at once as a record that needs nothing of that batch, and a
 * crash at any point replays it. */

/* A batch's COMMIT held back (store_writer_set_commit_hook()): the
 * commits numbered above pass wait until the gate lets them. */
typedef struct {
        pthread_mutex_t m;
        pthread_cond_t c;
        unsigned calls, pass;
} CommitGate;

static void gate_hook(void *p) {
        CommitGate *g = p;
        pthread_mutex_lock(&g->m);
        g->calls++;
        pthread_cond_broadcast(&g->c);
        while (g->calls > g->pass)
                pthread_cond_wait(&g->c, &g->m);
        pthread_mutex_unlock(&g->m);
}

static void gate_init(CommitGate *g, Store *s) {
        *g = (CommitGate) {};
        pthread_mutex_init(&g->m, NULL);
        pthread_cond_init(&g->c, NULL);
        store_writer_set_commit_hook(s, gate_hook, g);
}

/* Until n commits reached the gate. */
static void gate_wait_calls(CommitGate *g, unsigned n) {
        pthread_mutex_lock(&g->m);
        while (g->calls < n)
                pthread_cond_wait(&g->c, &g->m);
        pthread_mutex_unlock(&g->m);
}

static void gate_pass(CommitGate *g, unsigned n) {
        pthread_mutex_lock(&g->m);
        g->pass = n;
        pthread_cond_broadcast(&g->c);
        pthread_mutex_unlock(&g->m);
}

static void *flush_thread(void *p) {
        (void) store_flush(p);
        return NULL;
}

typedef struct {
        RunQueue *q;
        const char *id;
        int result;
        atomic_bool done;
} FinishCall;

static void *finish_thread(void *p) {
        FinishCall *f = p;
        RunRecord fin = ended(f->id, 20);
        f->result = run_queue_finish(f->q, &fin, 1);
        atomic_store(&f->done, true);
        return NULL;
}

/* How the batch under way holds the run when its end comes. */
typedef enum {
        BATCH_HOLDS_SUBMIT,             /* its deferred submit (started at once) */
        BATCH_HOLDS_QUEUED_SUBMIT,      /* its deferred queued submit; its start queued behind */
        BATCH_HOLDS_START,              /* its start; the queued submit committed before */
} BatchHolds;

/* Run id brought to the point where the batch under way (a store_flush()
 * in *ret_flusher, held at its COMMIT by g) holds what `holds` says. */
static void run_in_held_batch(Store *s, RunQueue *q, CommitGate *g, const char *id, BatchHolds holds,
                              pthread_t *ret_flusher) {
        RunRecord r = { .id = (char *) id,
                        .tenant = (char *) "a",
                        .filename = (char *) "f.py",
                        .args_json = (char *) "[1]",
                        .status = (char *) "running",
                        .created = 10,
                        .started = 11,
                        .max_attempts = 3,
                        .log_path = (char *) "/logs/x.log",
                        .fn_name = (char *) "fx",
                        .fn_version = 1,
                        .schedule = (char *) "nightly",
                        .limits_json = (char *) "{\"timeout_ms\":1}" };
        if (holds != BATCH_HOLDS_SUBMIT)
                r.status = (char *) "queued";
        assert_int_equal(run_queue_submit_deferred(q, &r, "{\"fn_name\":\"fx\",\"fn_version\":1}"), 0);
        int attempt = 0;
        if (holds == BATCH_HOLDS_START) {
                assert_int_equal(store_flush(s), 0);
                assert_int_equal(run_queue_start(q, id, 14, &attempt), 0);
        }
        gate_init(g, s);
        assert_int_equal(pthread_create(ret_flusher, NULL, flush_thread, s), 0);
        gate_wait_calls(g, 1);
        if (holds == BATCH_HOLDS_QUEUED_SUBMIT)
                assert_int_equal(run_queue_start(q, id, 14, &attempt), 0);
        if (holds != BATCH_HOLDS_SUBMIT)
                assert_int_equal(attempt, 1);
}

/* The run's finish while the batch is held: it must return at once (on
 * base it slept until that commit, which never comes: the gate is opened
 * after 10 s so that the test fails instead of hanging; a bound that
 * short only a stalled machine reaches is no test of "at once"). */
static void finish_beside_held_batch(RunQueue *q, CommitGate *g, const char *id) {
        FinishCall f = { .q = q, .id = id };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, finish_thread, &f), 0);
        for (int i = 0; i < 10000 && !atomic_load(&f.done); i++)
                usleep(1000);
        bool returned = atomic_load(&f.done);
        if (!returned)
                gate_pass(g, UINT_MAX);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_true(returned);
        assert_int_equal(f.result, 0);
}

static const char *const batch_holds_name[] = { "submit", "queued-submit", "start" };

static void test_end_does_not_wait_for_the_batch_holding_its_run(void **state) {
        for (BatchHolds holds = 0; holds < ELEMENTSOF(batch_holds_name); holds++) {
                _cleanup_free_ char *path = NULL;
                Store *s = open_at(&path);
                RunQueue *q = journaling_queue(s);
                CommitGate g;
                pthread_t flusher;
                _cleanup_free_ char *id = xasprintf("bw-%s", batch_holds_name[holds]);
                run_in_held_batch(s, q, &g, id, holds, &flusher);
                uint64_t bytes = store_journal_bytes(s);
                finish_beside_held_batch(q, &g, id);
                /* Durable by the journal, not by a commit. */
                assert_true(store_journal_bytes(s) > bytes);
                assert_int_equal(store_journal_pending(s), 1);
                gate_pass(&g, UINT_MAX);
                assert_int_equal(pthread_join(flusher, NULL), 0);
                assert_ended_with_everything(s, id, 20);
                assert_not_pending(q, id);
                /* A second end of it is refused by the fence. */
                RunRecord fin = ended(id, 30);
                assert_int_equal(run_queue_finish(q, &fin, 1), -ESTALE);
                store_writer_set_commit_hook(s, NULL, NULL);
                run_queue_free(q);
                store_close(s);
                assert_int_equal(journal_size(path), 0);
        }
}

static void end_beside_batch_child(const char *path, void *arg) {
        const CrashCase *a = arg;
        Store *s = NULL;
        if (store_open(path, &s) < 0)
                _exit(1);
        RunQueue *q = journaling_queue(s);
        /* Not on the stack: the held commit's thread waits on it until the
         * process dies, after this function returned and the kill's call
         * wrote over its frame. The suspected cause of a journal seen
         * emptied after the kill (1 in ~10 runs of the suite, once in CI):
         * the child saw it hold the end and the held batch at its gate
         * just before returning; only that batch's commit empties it. */
        static CommitGate g;
        pthread_t flusher;
        run_in_held_batch(s, q, &g, a->prefix, (BatchHolds) a->holds, &flusher);
        finish_beside_held_batch(q, &g, a->prefix);
        gate_pass(&g, a->commits_passed);
        gate_wait_calls(&g, a->commits_passed + 1);
}

/* killed -9 with the batch holding the run uncommitted (commits_passed
 * 0), or committed with the end's own batch held (1). */
static void crash_with_end_beside_batch(const char *path, const char *id, BatchHolds holds, unsigned commits_passed) {
        CrashCase a = { .prefix = id, .holds = (int) holds, .commits_passed = commits_passed };
        in_child_killed(end_beside_batch_child, path, &a);
}

/* For each point of a crash beside a batch: a new database at path whose
 * process was killed -9 there with run id's end journaled, then check. */
static void at_each_crash_beside_a_batch(const char *prefix, void (*check)(const char *path, const char *id)) {
        for (BatchHolds holds = 0; holds < ELEMENTSOF(batch_holds_name); holds++)
                for (unsigned passed = 0; passed < 2; passed++) {
                        _cleanup_free_ char *path = NULL;
                        store_close(open_at(&path));
                        _cleanup_free_ char *id = xasprintf("%s-%s-%u", prefix, batch_holds_name[holds], passed);
                        crash_with_end_beside_batch(path, id, holds, passed);
                        check(path, id);
                }
}

static void restart_finds_it_ended(const char *path, const char *id) {
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        size_t replayed = 0;
        assert_int_equal(store_journal_start(s, true, &replayed), 0);
        assert_int_equal(replayed, 1);
        RunQueue *q = run_queue_sqlite_new(s);
        assert_recovers_nothing_pending(q);
        assert_ended_with_everything(s, id, 20);
        assert_int_equal(journal_size(path), 0);
        run_queue_free(q);
        store_close(s);
}

/* ---- the writer's own batches at SCHED_IDLE (round 13) ----
 * A journal batch nobody waits for runs at SCHED_IDLE, so a woken
 * instance takes the CPU from it at once; whoever waits for it (for the
 * connection's lock, for the commit under way) gives it normal priority
 * back first, so nobody waits for a thread that may get no CPU. */

typedef struct {
        CommitGate g;
        atomic_int policy, tid;
} PolicyGate;

static void policy_gate_hook(void *p) {
        PolicyGate *pg = p;
        atomic_store(&pg->policy, sched_getscheduler(0));
        atomic_store(&pg->tid, (int) gettid());
        gate_hook(&pg->g);
}

static void *lowering_probe(void *p) {
        struct sched_param sp = {};
        *(bool *) p = sched_setscheduler(0, SCHED_IDLE, &sp) == 0 && sched_setscheduler(0, SCHED_OTHER, &sp) == 0;
        return NULL;
}

/* Whether this process may lower a thread and raise it again (root, or
 * RLIMIT_NICE): else the writer keeps its priority. */
static bool lowering_allowed_here(void) {
        bool ok = false;
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, lowering_probe, &ok), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        return ok;
}

/* Until tid's policy is want (2 s at most). */
static bool policy_becomes(pid_t tid, int want) {
        for (int i = 0; i < 2000; i++) {
                if (sched_getscheduler(tid) == want)
                        return true;
                usleep(1000);
        }
        return false;
}

static void *kv_get_thread(void *p) {
        _cleanup_free_ char *v = NULL;
        (void) store_kv_get(p, "ns", "k", &v);
        return NULL;
}

/* One journaled end, committed by the writer thread itself (its journal
 * linger short), held at the gate inside the batch. */
static void writer_batch_held(Store *s, RunQueue *q, PolicyGate *pg, const char *id) {
        store_writer_set_commit_hook(s, NULL, NULL); /* no batch under way */
        *pg = (PolicyGate) {};
        pthread_mutex_init(&pg->g.m, NULL);
        pthread_cond_init(&pg->g.c, NULL);
        store_writer_set_commit_hook(s, policy_gate_hook, pg);
        submit_deferred(q, id, 10);
        RunRecord fin = ended(id, 20);
        assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        store_journal_set_linger(s, 20 * USEC_PER_MSEC);
        gate_wait_calls(&pg->g, 1);
        assert_int_equal(atomic_load(&pg->tid), store_writer_tid(s));
}

/* A store journaling through q whose writer's lowered batch is raised
 * after bound. */
static Store *open_with_starve_bound(char **path, RunQueue **q, usec_t bound) {
        Store *s = open_at(path);
        *q = journaling_queue(s);
        store_writer_set_starve_bound(s, bound);
        return s;
}

static void test_the_writers_batch_runs_lowered_and_is_raised_for_its_waiters(void **state) {
        (void) state;
        int lowered = lowering_allowed_here() ? SCHED_IDLE : SCHED_OTHER;
        _cleanup_free_ char *path = NULL;
        RunQueue *q = NULL;
        /* Only the waiters raise it here, not the starvation bound. */
        Store *s = open_with_starve_bound(&path, &q, 3600 * USEC_PER_SEC);

        /* A thread that wants the connection while the batch holds it. */
        PolicyGate pg;
        writer_batch_held(s, q, &pg, "prio1");
        pid_t writer = store_writer_tid(s);
        assert_int_equal(atomic_load(&pg.policy), lowered);
        assert_int_equal(sched_getscheduler(writer), lowered);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, kv_get_thread, s), 0);
        assert_true(policy_becomes(writer, SCHED_OTHER));
        gate_pass(&pg.g, UINT_MAX);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_ended_with_everything(s, "prio1", 20);

        /* A thread that waits for the commit under way. */
        writer_batch_held(s, q, &pg, "prio2");
        assert_int_equal(atomic_load(&pg.policy), lowered);
        assert_int_equal(pthread_create(&t, NULL, flush_thread, s), 0);
        assert_true(policy_becomes(writer, SCHED_OTHER));
        gate_pass(&pg.g, UINT_MAX);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_ended_with_everything(s, "prio2", 20);
        /* Between batches: normal priority. */
        assert_true(policy_becomes(writer, SCHED_OTHER));

        store_writer_set_commit_hook(s, NULL, NULL);
        run_queue_free(q);
        store_close(s);
}

static void test_end_beside_a_batch_survives_a_crash_at_each_point(void **state) {
        at_each_crash_beside_a_batch("bc", restart_finds_it_ended);
}

/* ---- the backup holds the journal's runs (round 14, store-backup.c) ----
 * pysprinterd backup runs as another process: the ends still only in
 * the daemon's journal are replayed into its copy. */

/* The backup of path (a database whose journal holds runs a crashed
 * process answered) at path.bak, checked: path and its journal as they
 * were, no file of the copy's own store beside it, n records replayed. */
static char *backup_of_journaled(const char *path, size_t n) {
        off_t held = journal_size(path);
        assert_true(held > 0);
        char *dest = xasprintf("%s.bak", path);
        _cleanup_free_ char *err = NULL;
        size_t replayed = 0;
        assert_int_equal(store_backup(path, dest, &replayed, &err), 0);
        assert_int_equal(replayed, n);
        assert_int_equal(journal_size(path), held);
        assert_int_equal(journal_size(dest), 0);
        _cleanup_free_ char *reserve = xasprintf("%s.partial-reserve", dest);
        assert_int_equal(access(reserve, F_OK), -1);
        return dest;
}

/* The backup at dest, opened as a restore's daemon would: every run
 * ended with everything, nothing pending, no replay of its own. */
static void backup_has_all_ended(const char *dest, const char *prefix, int n) {
        Store *s = NULL;
        assert_int_equal(store_open(dest, &s), 0);
        RunQueue *q = run_queue_sqlite_new(s);
        assert_recovers_nothing_pending(q);
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *id = n > 1 ? xasprintf("%s%d", prefix, i) : xstrdup(prefix);
                assert_ended_with_everything(s, id, 20);
        }
        run_queue_free(q);
        store_close(s);
}

/* Round 14: with the CPUs full of other work and nobody in the process
 * waiting, a lowered batch would get no CPU for as long as that lasts, and
 * another process would see answered runs `running`. A batch lowered for
 * longer than the bound gets normal priority back with no store call at
 * all: here the batch is held inside its commit and nothing else touches
 * the store. */
static void test_the_writers_lowered_batch_is_raised_after_the_bound_with_no_other_call(void **state) {
        (void) state;
        bool lowering = lowering_allowed_here();
        _cleanup_free_ char *path = NULL;
        RunQueue *q = NULL;
        Store *s = open_with_starve_bound(&path, &q, 1 * USEC_PER_MSEC);

        /* Each batch is lowered again, and raised again by the bound. */
        static const char *const ids[] = { "bound1", "bound2" };
        for (unsigned i = 0; i < ELEMENTSOF(ids); i++) {
                PolicyGate pg;
                writer_batch_held(s, q, &pg, ids[i]);
                assert_true(policy_becomes(store_writer_tid(s), SCHED_OTHER));
                assert_int_equal(store_writer_bound_raises(s), lowering ? i + 1 : 0);
                gate_pass(&pg.g, UINT_MAX);
                assert_int_equal(store_flush(s), 0);
                assert_ended_with_everything(s, ids[i], 20);
        }

        store_writer_set_commit_hook(s, NULL, NULL);
        run_queue_free(q);
        store_close(s);
}

/* Until the writer's lowered batches offered their CPU n times (2 s at
 * most). */
static bool writer_yields_reach(Store *s, uint64_t n) {
        for (int i = 0; i < 2000; i++) {
                if (store_writer_yields(s) >= n)
                        return true;
                usleep(1000);
        }
        return false;
}

/* Round 14 (tail14): a thread woken onto the CPU of the lowered batch
 * waited for the whole batch (~1 ms, up to its slice) — the kernel did not
 * switch to it at its wake-up — so the batch offers its CPU between
 * records. 64 ends journaled, then committed by the writer thread in its
 * own batch: it offered the CPU at least every 8 records, and every run
 * ended with everything. */
static void test_the_writers_lowered_batch_offers_its_cpu_between_records(void **state) {
        (void) state;
        bool lowering = lowering_allowed_here();
        _cleanup_free_ char *path = NULL;
        RunQueue *q = NULL;
        Store *s = open_with_starve_bound(&path, &q, 3600 * USEC_PER_SEC);
        enum { N = 64 };
        for (int i = 0; i < N; i++) {
                _cleanup_free_ char *id = xasprintf("yield%d", i);
                submit_deferred(q, id, 10);
                RunRecord fin = ended(id, 20);
                assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        }
        assert_int_equal(store_writer_yields(s), 0);
        store_journal_set_linger(s, 1 * USEC_PER_MSEC);
        if (lowering)
                assert_true(writer_yields_reach(s, N / 8 - 1));
        assert_int_equal(store_flush(s), 0);
        if (!lowering)
                assert_int_equal(store_writer_yields(s), 0);
        for (int i = 0; i < N; i++) {
                _cleanup_free_ char *id = xasprintf("yield%d", i);
                assert_ended_with_everything(s, id, 20);
        }
        run_queue_free(q);
        store_close(s);
}

/* A database whose process, killed -9, left prefix0..n-1 in its journal
 * (commit_first: their batch committed too), backed up: every one of
 * them in the backup. Returns the backup's path. */
static char *backup_after_journaled_crash(char **ret_path, const char *prefix, int n, bool commit_first) {
        store_close(open_at(ret_path));
        crash_after_journaled_ends(*ret_path, prefix, n, commit_first);
        char *dest = backup_of_journaled(*ret_path, (size_t) n);
        backup_has_all_ended(dest, prefix, n);
        return dest;
}

static void test_backup_holds_the_runs_only_in_the_journal(void **state) {
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ char *dest = backup_after_journaled_crash(&path, "bj", 6, false);
        /* Not replayed into the database backed up: only its daemon does. */
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        RunRecord *none = NULL;
        assert_int_equal(store_run_get(s, NULL, "bj0", &none), -ENOENT);
        store_close(s);
}

static void test_backup_replays_a_committed_journal_harmlessly(void **state) {
        _cleanup_free_ char *path = NULL;
        /* The batch committed, its files not emptied yet. */
        _cleanup_free_ char *dest = backup_after_journaled_crash(&path, "bq", 4, true);
        /* The same copy replayed twice more into the backup: nothing
         * fails, nothing changes. */
        StoreJournalCopy j;
        assert_int_equal(store_journal_copy(path, &j), 0);
        Store *s = NULL;
        assert_int_equal(store_open(dest, &s), 0);
        for (int i = 0; i < 2; i++) {
                size_t replayed = 0;
                assert_int_equal(store_journal_replay_copy(s, &j, &replayed), 0);
                assert_int_equal(replayed, 4);
        }
        store_close(s);
        store_journal_copy_free(&j);
        backup_has_all_ended(dest, "bq", 4);
}

static void backup_holds_it_ended(const char *path, const char *id) {
        _cleanup_free_ char *dest = backup_of_journaled(path, 1);
        backup_has_all_ended(dest, id, 1);
}

static void test_backup_holds_ends_journaled_beside_a_batch(void **state) {
        /* The records of kinds 4 and 5 (round 13): the whole ended record,
         * or the start and end of a row whose start was in flight. */
        at_each_crash_beside_a_batch("bb", backup_holds_it_ended);
}

/* ---- the request's fields a run keeps (round 13) ----
 * fn_name, data_json and idem_key come from the request's text: what the
 * SQL's json_valid()/json_extract() made of it before, for every request,
 * including texts that are not JSON. */

static const char *const request_texts[] = {
        "{\"fn_name\":\"fx\",\"fn_version\":1}",
        "{\"v\":1,\"filename\":\"b.py\",\"lambda\":false,\"fn_version\":3,\"limits\":{\"timeout_ms\":1000,"
        "\"memory_bytes\":0,\"max_procs\":0,\"max_output_bytes\":0,\"network\":false},\"source_ref\":true,"
        "\"function\":\"handler\",\"args_json\":\"[{\\\"value\\\":1}]\",\"fn_name\":\"benchfn\","
        "\"context_json\":\"{\\\"a\\\":[1,2.5e3,-0.5,1E-2,null,true]}\"}",
        "{\"fn_name\":\"f\",\"idem_key\":\"k-1\"}",
        "{\"idem_key\":\"k-2\"}",
        "{\"fn_name\":\"f\",\"data\":[\"ds1\",\"ds2@3\"]}",
        "{ \"fn_name\" : \"f\" ,\n \"data\" : [ \"a\" , \"b\" ] , \"idem_key\" : \"k 3\" }",
        "\n\t{\"fn_name\":\"a\"}\r ",
        "{\"fn_name\":\"f\\u00e9\\n\\\"\"}",
        "{\"fn\\u005fname\":\"x\"}",
        "{\"idem\\u005fkey\":\"x\",\"fn_name\":\"y\"}",
        "{\"fn_name\":\"a\",\"fn_name\":\"b\"}",
        "{\"x\":{\"fn_name\":\"a\",\"idem_key\":\"k\"}}",
        "{\"fn_name\":12}",
        "{\"fn_name\":null,\"idem_key\":true}",
        "{\"fn_name\":{\"a\":[1]},\"data\":\"one\"}",
        "{\"fn_name\":\"a\",\"x\":\"\\\"idem_key\\\"\"}",
        "{\"fn_name\":\"h\xc3\xa9llo\"}",
        "{\"fn_name\":\"a\",\"d\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{}",
        "[\"fn_name\",\"a\"]",
        "\"fn_name\"",
        "42",
        "",
        "not json",
        "{\"fn_name\":\"a\"",
        "{\"fn_name\":\"a\",}",
        "{\"fn_name\":\"a\"} x",
        "{\"fn_name\":\"a\x01\"}",
        "{\"fn_name\":\"a\",\"n\":01}",
        "{\"fn_name\":\"a\",\"n\":1.}",
        "{\"fn_name\":\"a\",\"n\":.5}",
        "{\"fn_name\":\"a\",\"n\":+1}",
        "{\"fn_name\":\"a\\x\"}",
        "{\"fn_name\":\"a\\u12\"}",
        "{\"fn_name\":'a'}",
        "{fn_name:\"a\"}",
        "{\"fn_name\":\"a\",\"t\":tru}",
        "{\"fn_name\":\"a\",\"v\":[1,]}",
        "{\"fn_name\":\"a\"\x0b}",
        "{\"fn_name\":\"a\",\"l\":{\"t\":2,\"n\"",
        NULL, /* a run with no request */
};

/* What the SQL before round 13 stored from request, as quote()d text
 * (NULL or 'text': the columns are TEXT, which turns a number into its
 * text as CAST does). */
static char *old_request_field(sqlite3 *db, const char *request, const char *path, bool idem) {
        _cleanup_free_ char *sql =
                xasprintf("SELECT quote(CAST(CASE WHEN %s json_valid(?1) THEN json_extract(?1, '%s') END AS TEXT))",
                          idem ? "instr(?1, '\"idem_key\"') > 0 AND" : "", path);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (request)
                sqlite3_bind_text(st, 1, request, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        char *v = xstrdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return v;
}

static char *stored_field(sqlite3 *db, const char *id, const char *column) {
        _cleanup_free_ char *sql = xasprintf("SELECT quote(%s) FROM runs WHERE id=?1", column);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        char *v = xstrdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return v;
}

static void assert_field_as_before(sqlite3 *db, const char *id, const char *request, const char *column,
                                   const char *path, bool idem) {
        _cleanup_free_ char *want = old_request_field(db, request, path, idem);
        _cleanup_free_ char *got = stored_field(db, id, column);
        if (!streq(want, got))
                fail_msg("%s of %s from request [%s]: stored %s, the old SQL %s", column, id,
                         request ? request : "(null)", got, want);
}

static void test_request_fields_stored_as_the_old_sql_did(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = run_queue_sqlite_new(s);
        store_writer_set_linger(s, 3600 * USEC_PER_SEC);
        for (size_t i = 0; i < ELEMENTSOF(request_texts); i++) {
                const char *request = request_texts[i];
                /* The three INSERTs that read the request: a queued
                 * submit, a submit started at once, and a run's ended
                 * record replacing its deferred submit. */
                _cleanup_free_ char *queued = xasprintf("rq%zu", i), *started = xasprintf("rs%zu", i),
                                    *ended_id = xasprintf("re%zu", i);
                RunRecord r = { .id = queued, .tenant = (char *) "a", .filename = (char *) "f.py",
                                .status = (char *) "queued", .created = 10, .max_attempts = 1 };
                assert_int_equal(run_queue_submit(q, &r, request), 0);
                r.id = started;
                r.status = (char *) "running";
                r.max_attempts = 3;
                assert_int_equal(run_queue_submit(q, &r, request), 0);
                r.id = ended_id;
                assert_int_equal(run_queue_submit_deferred(q, &r, request), 0);
                RunRecord fin = ended(ended_id, 20);
                assert_int_equal(run_queue_finish(q, &fin, 1), 0);
        }
        assert_int_equal(store_flush(s), 0);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        for (size_t i = 0; i < ELEMENTSOF(request_texts); i++) {
                const char *request = request_texts[i];
                _cleanup_free_ char *queued = xasprintf("rq%zu", i), *started = xasprintf("rs%zu", i),
                                    *ended_id = xasprintf("re%zu", i);
                const char *ids[] = { queued, started, ended_id };
                for (size_t k = 0; k < ELEMENTSOF(ids); k++) {
                        assert_field_as_before(db, ids[k], request, "fn_name", "$.fn_name", false);
                        assert_field_as_before(db, ids[k], request, "data_json", "$.data", false);
                }
                assert_field_as_before(db, queued, request, "idem_key", "$.idem_key", true);
                assert_field_as_before(db, started, request, "idem_key", "$.idem_key", true);
                /* The ended record never kept the key (as before). */
                _cleanup_free_ char *idem = stored_field(db, ended_id, "idem_key");
                assert_string_equal(idem, "NULL");
        }
        sqlite3_close(db);
        run_queue_free(q);
        store_close(s);
}


/* ---- the request's fields given by the caller (round 14) ----
 * The daemon wrote the request from its fn_name, idem_key and data, and
 * gives them with the record (RunRecord.request_given): the INSERTs bind
 * them instead of reading them back out of the text. The stored row must
 * be what reading them gives, byte for byte. */

typedef struct {
        const char *fn_name, *idem_key;
        const char *const *data; /* NULL-terminated; NULL: no "data" key */
} RequestCase;

static const char *const data_none[] = { NULL };
static const char *const data_two[] = { "ds1", "ds2@3", NULL };
static const char *const data_odd[] = { "a\"b", "c\\d", "\x01\t\n", "h\xc3\xa9llo", "\xe2\x80\xa8", "/", NULL };

static const RequestCase request_cases[] = {
        { NULL, NULL, NULL },
        { "f", NULL, NULL },
        { NULL, "k-1", NULL },
        { "f", "order-42", data_two },
        { "", "", data_none },
        { "a\"b\\c\n\t\x01\x1f/", "k\"\\\x7f", data_odd },
        { "h\xc3\xa9llo \xe2\x80\xa8 \xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", NULL },
        { "{\"fn_name\":1}", "null", NULL },
        { "12", "true", data_two },
        { "null", NULL, data_odd },
};

/* The request as the daemon writes it (drun_request_json_jansson(): keys
 * in its order, JSON_COMPACT). */
static char *case_request(const RequestCase *c) {
        json_t *j = json_pack("{s:i, s:s, s:b, s:i, s:{s:I}}", "v", 1, "filename", "f.py", "lambda", 0,
                              "fn_version", 1, "limits", "timeout_ms", (json_int_t) 1000);
        assert_non_null(j);
        json_object_set_new(j, "source", json_string("print(1)"));
        if (c->fn_name)
                json_object_set_new(j, "fn_name", json_string(c->fn_name));
        if (c->idem_key)
                json_object_set_new(j, "idem_key", json_string(c->idem_key));
        if (c->data) {
                json_t *a = json_array();
                for (const char *const *d = c->data; *d; d++)
                        json_array_append_new(a, json_string(*d));
                json_object_set_new(j, "data", a);
        }
        char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        assert_non_null(text);
        return text;
}

static void case_give(RunRecord *r, const RequestCase *c) {
        r->request_given = true;
        r->request_fn_name = (char *) c->fn_name;
        r->request_idem_key = (char *) c->idem_key;
        r->request_has_data = c->data != NULL;
}

/* Every column of id's row but id, each as its type and its bytes. */
static char *row_but_id(sqlite3 *db, const char *id) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT * FROM runs WHERE id=?1", -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_ROW)
                fail_msg("no row %s", id);
        char *row = xstrdup("");
        for (int i = 0; i < sqlite3_column_count(st); i++) {
                if (streq(sqlite3_column_name(st, i), "id"))
                        continue;
                int type = sqlite3_column_type(st, i);
                const char *text = (const char *) sqlite3_column_text(st, i);
                int n = sqlite3_column_bytes(st, i);
                char *next = xasprintf("%s|%s:%d:%.*s", row, sqlite3_column_name(st, i), type, n, text ? text : "");
                free(row);
                row = next;
        }
        sqlite3_finalize(st);
        return row;
}

static void assert_rows_equal(sqlite3 *db, const char *given, const char *read) {
        _cleanup_free_ char *a = row_but_id(db, given), *b = row_but_id(db, read);
        if (!streq(a, b))
                fail_msg("row %s (fields given) differs from %s (read from the request):\n%s\n%s", given, read,
                         a, b);
}

/* The three INSERTs that keep the fields (a queued submit, one started at
 * once, a run's ended record replacing its deferred submit, journaled),
 * each case written twice: "g" with its fields given, "r" without. */
static void write_case(Store *s, RunQueue *q, const char *kind, size_t i, bool give) {
        RequestCase c = request_cases[i];
        _cleanup_free_ char *request = case_request(&c);
        _cleanup_free_ char *queued = xasprintf("%sq%s%zu", kind, give ? "g" : "r", i),
                            *started = xasprintf("%ss%s%zu", kind, give ? "g" : "r", i),
                            *ended_id = xasprintf("%se%s%zu", kind, give ? "g" : "r", i);
        RunRecord r = { .id = queued, .tenant = (char *) "a", .filename = (char *) "f.py",
                        .status = (char *) "queued", .created = 10, .max_attempts = 1 };
        if (give)
                case_give(&r, &c);
        if (q) {
                assert_int_equal(run_queue_submit(q, &r, request), 0);
                r.id = started;
                r.status = (char *) "running";
                r.max_attempts = 3;
                assert_int_equal(run_queue_submit(q, &r, request), 0);
        }
        r.id = ended_id;
        r.status = (char *) "running";
        r.max_attempts = 3;
        RunQueue *eq = q ? q : run_queue_sqlite_new(s);
        assert_int_equal(run_queue_submit_deferred(eq, &r, request), 0);
        RunRecord fin = ended(ended_id, 20);
        assert_int_equal(run_queue_finish(eq, &fin, 1), 0);
        if (!q)
                run_queue_free(eq);
}

static void test_request_fields_given_store_the_same_row(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue(s);
        for (size_t i = 0; i < ELEMENTSOF(request_cases); i++) {
                write_case(s, q, "x", i, true);
                write_case(s, q, "x", i, false);
        }
        assert_true(store_journal_bytes(s) > 0);
        assert_int_equal(store_flush(s), 0);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        for (size_t i = 0; i < ELEMENTSOF(request_cases); i++) {
                const RequestCase *c = &request_cases[i];
                for (const char *k = "qse"; *k; k++) {
                        _cleanup_free_ char *g = xasprintf("x%cg%zu", *k, i), *r = xasprintf("x%cr%zu", *k, i);
                        assert_rows_equal(db, g, r);
                        /* And what the caller gave is what is kept. */
                        _cleanup_free_ char *fn = stored_field(db, g, "fn_name");
                        _cleanup_free_ char *want = c->fn_name ? xasprintf("'%s'", c->fn_name) : xstrdup("NULL");
                        if (!strchr(c->fn_name ? c->fn_name : "", '\''))
                                assert_string_equal(fn, want);
                        _cleanup_free_ char *data = stored_field(db, g, "data_json");
                        assert_true(streq(data, "NULL") == !c->data);
                }
                _cleanup_free_ char *g = xasprintf("xqg%zu", i), *idem = stored_field(db, g, "idem_key");
                _cleanup_free_ char *want = c->idem_key ? xasprintf("'%s'", c->idem_key) : xstrdup("NULL");
                assert_string_equal(idem, want);
        }
        sqlite3_close(db);
        run_queue_free(q);
        store_close(s);
}

static void given_ends_child(const char *path, void *arg) {
        (void) arg;
        Store *s = NULL;
        if (store_open(path, &s) < 0)
                _exit(1);
        RunQueue *q = journaling_queue(s);
        /* Only the ended records (a waited submit's commit would take
         * the journaled ones queued before it along). */
        for (size_t i = 0; i < ELEMENTSOF(request_cases); i++)
                write_case(s, NULL, "j", i, true);
        run_queue_free(q);
        /* The ends journaled, nothing committed: the replay writes them. */
        if (store_journal_pending(s) != ELEMENTSOF(request_cases))
                _exit(2);
}

/* A crash after ends whose submits gave their fields: the journal's
 * records carry the request (not the fields: its format is unchanged) and
 * the replay reads them from it, which stores the same row. */
static void test_request_fields_given_replay_the_same_row(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL;
        store_close(open_at(&path));
        in_child_killed(given_ends_child, path, NULL);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        size_t replayed = 0;
        assert_int_equal(store_journal_start(s, true, &replayed), 0);
        assert_int_equal(replayed, ELEMENTSOF(request_cases));
        for (size_t i = 0; i < ELEMENTSOF(request_cases); i++)
                write_case(s, NULL, "j", i, false);
        assert_int_equal(store_flush(s), 0);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        for (size_t i = 0; i < ELEMENTSOF(request_cases); i++) {
                _cleanup_free_ char *g = xasprintf("jeg%zu", i), *r = xasprintf("jer%zu", i);
                assert_rows_equal(db, g, r);
        }
        sqlite3_close(db);
        store_close(s);
}

/* Finishes merge their end into their run's queued submit and encode its
 * journal record without the queue lock (round 14), while other threads
 * drain the queue, commit batches and look at it: every run ends, once,
 * with everything, and the journal empties. */
typedef struct {
        Store *s;
        RunQueue *q;
        char prefix[16];
        int n;
        atomic_bool *done;
} ClaimWorker;

static void *claim_worker(void *p) {
        ClaimWorker *w = p;
        end_journaled(w->s, w->q, w->prefix, w->n);
        return NULL;
}

/* Drains the queue (as a reveal, a read of the runs and a close do)
 * until the finishers are done. */
static void *claim_drainer(void *p) {
        ClaimWorker *w = p;
        while (!atomic_load(w->done))
                (void) store_flush(w->s);
        return NULL;
}

static void test_finishes_journal_beside_drains(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL;
        Store *s = open_at(&path);
        RunQueue *q = journaling_queue(s);
        /* Batches and looks at the pace of a busy daemon. */
        store_journal_set_linger(s, 1 * USEC_PER_MSEC);
        store_writer_set_linger(s, 200);
        enum { THREADS = 4, RUNS = 150 };
        pthread_t th[THREADS], drainer;
        ClaimWorker w[THREADS];
        atomic_bool done = false;
        for (int t = 0; t < THREADS; t++) {
                w[t] = (ClaimWorker) { .s = s, .q = q, .n = RUNS, .done = &done };
                snprintf(w[t].prefix, sizeof(w[t].prefix), "cw%d-", t);
                assert_int_equal(pthread_create(&th[t], NULL, claim_worker, &w[t]), 0);
        }
        assert_int_equal(pthread_create(&drainer, NULL, claim_drainer, &w[0]), 0);
        for (int t = 0; t < THREADS; t++)
                pthread_join(th[t], NULL);
        atomic_store(&done, true);
        pthread_join(drainer, NULL);
        assert_true(store_journal_bytes(s) > 0);
        assert_int_equal(store_flush(s), 0);
        for (int t = 0; t < THREADS; t++)
                for (int i = 0; i < RUNS; i++) {
                        _cleanup_free_ char *id = xasprintf("cw%d-%d", t, i);
                        _cleanup_(run_record_freep) RunRecord *r = get(s, id);
                        assert_string_equal(r->status, "succeeded");
                        assert_string_equal(r->value_json, "42");
                        assert_string_equal(r->args_json, "[1]");
                        assert_string_equal(r->log_path, "/logs/x.log");
                        assert_int_equal(r->started, 15);
                        assert_int_equal(r->finished, 20);
                        assert_int_equal(r->attempt, 1);
                }
        run_queue_free(q);
        store_close(s);
        assert_int_equal(journal_size(path), 0);
}

/* ---- a journal as base14 (main at f9de9be) left it ----
 * Built here byte by byte from the format store-journal.c documents, not
 * by its code: u32 payload length, u64 FNV-1a of the payload; the payload
 * is int64 kind, exit_code, created, started, finished, attempt,
 * max_attempts, then 17 texts (u32 length, UINT32_MAX: NULL; the bytes):
 * id, tenant, filename, function, args_json, kwargs_json, status,
 * value_json, value_repr, error_type, error_message, traceback,
 * timings_json, log_path, outputs_json, lock_json, the request. Kinds: 1
 * the ended INSERT, 4 the ended upsert (the two that read the request). */
static void old_put(uint8_t **p, size_t *n, const void *v, size_t len) {
        *p = xrealloc(*p, *n + len);
        memcpy(*p + *n, v, len);
        *n += len;
}

static void old_put_text(uint8_t **p, size_t *n, const char *t) {
        uint32_t len = t ? (uint32_t) strlen(t) : UINT32_MAX;
        old_put(p, n, &len, sizeof(len));
        if (t)
                old_put(p, n, t, len);
}

static void old_record(int fd, int64_t kind, const char *id, const char *request) {
        uint8_t *p = NULL;
        size_t n = 0;
        int64_t ints[] = { kind, 0, 10, 15, 20, 1, 3 };
        old_put(&p, &n, ints, sizeof(ints));
        const char *texts[] = { id, "a", "f.py", "main", "[1]", NULL, "succeeded", "42", "42", NULL, NULL, NULL,
                                "{\"run_ms\":1.0}", "/logs/x.log", "{\"o\":1}", "{\"packages\":[]}", request };
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                old_put_text(&p, &n, texts[i]);
        uint32_t len = (uint32_t) n;
        uint64_t h = 14695981039346656037ULL;
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ULL;
        assert_int_equal(write(fd, &len, sizeof(len)), sizeof(len));
        assert_int_equal(write(fd, &h, sizeof(h)), sizeof(h));
        assert_int_equal(write(fd, p, n), (ssize_t) n);
        free(p);
}

static void test_journal_of_base14_replays(void **state) {
        (void) state;
        _cleanup_free_ char *path = NULL;
        store_close(open_at(&path));
        _cleanup_free_ char *j0 = xasprintf("%s-ended.0", path), *j1 = xasprintf("%s-ended.1", path);
        int fd = open(j0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        const char *request = "{\"v\":1,\"fn_name\":\"fx\",\"idem_key\":\"k\",\"data\":[\"d1\",\"d\\\"2\"]}";
        old_record(fd, 1, "old1", request);
        old_record(fd, 4, "old4", request);
        old_record(fd, 1, "old5", "not json");
        close(fd);
        fd = open(j1, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        old_record(fd, 4, "old6", NULL);
        close(fd);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        size_t replayed = 0;
        assert_int_equal(store_journal_start(s, true, &replayed), 0);
        assert_int_equal(replayed, 4);
        assert_int_equal(journal_size(path), 0);
        for (const char *const *id = (const char *const[]) { "old1", "old4", "old5", "old6", NULL }; *id; id++) {
                _cleanup_(run_record_freep) RunRecord *r = get(s, *id);
                assert_string_equal(r->status, "succeeded");
                assert_string_equal(r->value_json, "42");
                assert_string_equal(r->log_path, "/logs/x.log");
                assert_int_equal(r->attempt, 1);
                /* A record from before the origin was kept: none. */
                assert_int_equal(r->fn_version, 0);
                assert_null(r->schedule);
                assert_null(r->limits_json);
        }
        store_close(s);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        const char *want[][4] = {
                { "old1", "'fx'", "'[\"d1\",\"d\\\"2\"]'", "NULL" },
                { "old4", "'fx'", "'[\"d1\",\"d\\\"2\"]'", "NULL" },
                { "old5", "NULL", "NULL", "NULL" },
                { "old6", "NULL", "NULL", "NULL" },
        };
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                _cleanup_free_ char *fn = stored_field(db, want[i][0], "fn_name"),
                                    *data = stored_field(db, want[i][0], "data_json"),
                                    *idem = stored_field(db, want[i][0], "idem_key");
                assert_string_equal(fn, want[i][1]);
                assert_string_equal(data, want[i][2]);
                assert_string_equal(idem, want[i][3]);
        }
        sqlite3_close(db);
}

/* An authorizer that refuses reading PRAGMA user_version (its second
 * argument NULL), as a locked or unreadable database fails that read. */
static int deny_user_version_read(void *data, int action, const char *a, const char *b, const char *c, const char *d) {
        (void) data, (void) c, (void) d;
        return action == SQLITE_PRAGMA && a && strcasecmp(a, "user_version") == 0 && !b ? SQLITE_DENY : SQLITE_OK;
}

/* A schema version that cannot be read fails the migration with a clear
 * message; it was taken for 0, and every step replayed from schema 1 on
 * a database that had them all. */
static void test_migrate_unreadable_version(void **state) {
        (void) state;
        _cleanup_free_ char *path = xasprintf("%s/unreadable-version.sqlite", dir);
        Store *s = NULL;
        assert_int_equal(store_open(path, &s), 0);
        store_close(s);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(store_db_schema_version(db), store_schema_version());
        sqlite3_set_authorizer(db, deny_user_version_read, NULL);
        char *err = NULL;
        int r = store_migrate(db, &err);
        assert_int_equal(r, -EACCES);
        assert_non_null(err);
        assert_non_null(strstr(err, "schema version (PRAGMA user_version) could not be read: not authorized"));
        assert_null(strstr(err, "upgraded to schema 1"));
        free(err);
        sqlite3_set_authorizer(db, NULL, NULL);
        assert_int_equal(store_db_schema_version(db), store_schema_version());
        sqlite3_close(db);
        assert_int_equal(store_open(path, &s), 0);
        store_close(s);
}

/* A listing's entry leaves out a value whose stored text is over
 * RUN_LIST_VALUE_MAX bytes (null, named in "elided"), keeps one of exactly
 * that many, and is the whole object when it left nothing out. */
static void test_run_record_elide(void **state) {
        (void) state;
        char *at = xmalloc(RUN_LIST_VALUE_MAX + 2), *over = xmalloc(RUN_LIST_VALUE_MAX + 3);
        memset(at, 'a', RUN_LIST_VALUE_MAX);
        at[0] = at[RUN_LIST_VALUE_MAX - 1] = '"';
        at[RUN_LIST_VALUE_MAX] = 0;
        memset(over, 'b', RUN_LIST_VALUE_MAX + 1);
        over[0] = over[RUN_LIST_VALUE_MAX] = '"';
        over[RUN_LIST_VALUE_MAX + 1] = 0;
        RunRecord r = { .id = (char *) "r1",
                        .status = (char *) "succeeded",
                        .exit_code = 0,
                        .args_json = (char *) "[{\"value\":1}]",
                        .kwargs_json = (char *) "{}",
                        .value_json = at,
                        .attempt = 1,
                        .max_attempts = 1 };
        RunRecord s;
        assert_int_equal(run_record_elide(&r, &s), 0);
        json_t *j = run_record_json(&s, NULL), *whole = run_record_json(&r, NULL);
        run_json_mark_elided(j, 0);
        assert_true(json_equal(j, whole));
        assert_null(json_object_get(j, "elided"));
        json_decref(j);
        json_decref(whole);
        r.value_json = over;
        r.kwargs_json = over;
        unsigned mask = run_record_elide(&r, &s);
        assert_non_null(r.value_json); /* r itself is untouched */
        j = run_record_json(&s, NULL);
        run_json_mark_elided(j, mask);
        assert_true(json_is_null(json_object_get(j, "kwargs")));
        assert_true(json_is_null(json_object_get(j, "result")));
        assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "args"), 0)), 1);
        _cleanup_free_ char *names = json_dumps(json_object_get(j, "elided"), JSON_COMPACT);
        assert_string_equal(names, "[\"kwargs\",\"result\"]");
        json_decref(j);
        /* The error's message and traceback alike, its type kept; and a
         * message with no type still has its (null) place. */
        r.value_json = at;
        r.kwargs_json = (char *) "{}";
        r.error_type = (char *) "ValueError";
        r.error_message = over;
        r.traceback = over;
        mask = run_record_elide(&r, &s);
        j = run_record_json(&s, NULL);
        run_json_mark_elided(j, mask);
        _cleanup_free_ char *err = json_dumps(json_object_get(j, "error"), JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(err, "{\"message\":null,\"traceback\":null,\"type\":\"ValueError\"}");
        _cleanup_free_ char *names2 = json_dumps(json_object_get(j, "elided"), JSON_COMPACT);
        assert_string_equal(names2, "[\"error.message\",\"error.traceback\"]");
        json_decref(j);
        r.error_type = NULL;
        r.traceback = NULL;
        mask = run_record_elide(&r, &s);
        j = run_record_json(&s, NULL);
        run_json_mark_elided(j, mask);
        assert_true(json_is_object(json_object_get(j, "error")));
        assert_true(json_is_null(json_object_get(json_object_get(j, "error"), "message")));
        json_decref(j);
        free(at);
        free(over);
}

/* A listing's read leaves the values a listing elides unread (NULL,
 * named in RunRecord.elided), at exactly the bound run_record_elide()
 * keeps; a get reads them whole. */
static void test_run_list_leaves_large_values_unread(void **state) {
        (void) state;
        Store *s = open_fresh();
        char *at = xmalloc(RUN_LIST_VALUE_MAX + 1), *over = xmalloc(RUN_LIST_VALUE_MAX + 2);
        memset(at, 'a', RUN_LIST_VALUE_MAX);
        at[RUN_LIST_VALUE_MAX] = 0;
        memset(over, 'b', RUN_LIST_VALUE_MAX + 1);
        over[RUN_LIST_VALUE_MAX + 1] = 0;
        RunRecord r = { .id = (char *) "rbig1",
                        .tenant = (char *) "t",
                        .filename = (char *) "f.py",
                        .status = (char *) "failed",
                        .exit_code = 1,
                        .created = 5,
                        .args_json = (char *) "[{\"value\":1}]",
                        .kwargs_json = over,
                        .value_repr = at,
                        .error_type = (char *) "ValueError",
                        .error_message = over,
                        .traceback = at };
        assert_int_equal(store_run_insert(s, &r), 0);
        RunRecord **v = NULL;
        size_t n = 0;
        assert_int_equal(store_run_list(s, "t", NULL, 10, &v, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(v[0]->elided, (1u << 1) | (1u << 4)); /* kwargs, error.message */
        assert_null(v[0]->kwargs_json);
        assert_null(v[0]->error_message);
        assert_string_equal(v[0]->args_json, "[{\"value\":1}]");
        assert_string_equal(v[0]->value_repr, at);
        assert_string_equal(v[0]->traceback, at);
        assert_string_equal(v[0]->error_type, "ValueError");
        RunRecord sum;
        assert_int_equal(run_record_elide(v[0], &sum), (1u << 1) | (1u << 4));
        run_record_list_free(v, n);
        RunRecord *got = NULL;
        assert_int_equal(store_run_get(s, NULL, "rbig1", &got), 0);
        assert_int_equal(got->elided, 0);
        assert_string_equal(got->kwargs_json, over);
        assert_string_equal(got->error_message, over);
        run_record_free(got);
        store_close(s);
        free(at);
        free(over);
}

int main(void) {
        assert_non_null(mkdtemp(dir));
        /* Before any Store: the store's VFS wraps the default one, this. */
        counting_vfs_install();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_insert_get_update),
                cmocka_unit_test(test_run_record_elide),
                cmocka_unit_test(test_run_list_leaves_large_values_unread),
                cmocka_unit_test(test_migrate_unreadable_version),
                cmocka_unit_test(test_prefix_and_tenants),
                cmocka_unit_test(test_run_list_by_status),
                cmocka_unit_test(test_run_list_by_origin),
                cmocka_unit_test(test_run_list_by_text),
                cmocka_unit_test(test_run_search_index_answers_as_the_walk),
                cmocka_unit_test(test_run_list_before),
                cmocka_unit_test(test_mark_lost),
                cmocka_unit_test(test_orphaned_runs_are_marked_lost),
                cmocka_unit_test(test_kv),
                cmocka_unit_test(test_kv_keys),
                cmocka_unit_test(test_reopen_keeps_data),
                cmocka_unit_test(test_queue_start_is_fenced),
                cmocka_unit_test(test_queue_requeue),
                cmocka_unit_test(test_queue_cancel_before_start),
                cmocka_unit_test(test_queue_recover),
                cmocka_unit_test(test_queue_submit_started),
                cmocka_unit_test(test_run_find_idempotent),
                cmocka_unit_test(test_run_insert_idempotent),
                cmocka_unit_test(test_gc_by_age),
                cmocka_unit_test(test_gc_data_staging),
                cmocka_unit_test(test_gc_data_object_aside),
                cmocka_unit_test(test_gc_tenant_policy),
                cmocka_unit_test(test_backup_restore),
                cmocka_unit_test(test_secrets_per_tenant_and_bound_to_row),
                cmocka_unit_test(test_secrets_in_another_backend),
                cmocka_unit_test(test_secrets_set_refused_under_another_key),
                cmocka_unit_test(test_secrets_key_rotation),
                cmocka_unit_test(test_tokens_in_another_backend),
                cmocka_unit_test(test_tokens_find_touch_revoke),
                cmocka_unit_test(test_schedule_advance_is_fenced),
                cmocka_unit_test(test_schedule_edit_keeps_a_fire_in_between),
                cmocka_unit_test(test_schedule_runs_keep_the_newest),
                cmocka_unit_test(test_schedule_last_run_is_in_its_runs),
                cmocka_unit_test(test_function_lock_update),
                cmocka_unit_test(test_tenant_stored_bytes),
                cmocka_unit_test(test_function_delete_version),
                cmocka_unit_test(test_endpoint_cors),
                cmocka_unit_test(test_function_aliases),
                cmocka_unit_test(test_tx_all_or_nothing),
                cmocka_unit_test(test_function_get_in_tx),
                cmocka_unit_test(test_function_signature_and_doc),
                cmocka_unit_test(test_function_lock_kept),
                cmocka_unit_test(test_function_store_url),
                cmocka_unit_test(test_dataset_numbers_never_come_back),
                cmocka_unit_test(test_run_lock_and_dataset_usage),
                cmocka_unit_test(test_group_commit_batches_and_releases_after_commit),
                cmocka_unit_test(test_writer_flushes_unwaited_starts_on_close),
                cmocka_unit_test(test_lock_text_stored_once),
                cmocka_unit_test(test_writer_not_woken_per_unwaited_write),
                cmocka_unit_test(test_reads_do_not_wait_for_the_writer),
                cmocka_unit_test(test_wal_checkpoints_off_the_request_path_and_bounded),
                cmocka_unit_test(test_checkpointer_runs_at_idle_priority),
                cmocka_unit_test(test_checkpoint_waits_for_4000_frames),
                cmocka_unit_test(test_wal_written_back_as_frames_arrive),
                cmocka_unit_test(test_database_written_back_at_the_append_rate),
                cmocka_unit_test(test_database_sync_paced),
                cmocka_unit_test(test_database_pages_side_by_side_written_back_as_one_range),
                cmocka_unit_test(test_wal_restart_is_not_a_burst),
                cmocka_unit_test(test_wal_blocks_allocated_before_the_commits),
                cmocka_unit_test(test_wal_restart_finds_database_written_back),
                cmocka_unit_test(test_wal_reuse_reads_nothing_in_the_committing_thread),
                cmocka_unit_test(test_wal_bounded_with_the_checkpointer_starved),
                cmocka_unit_test(test_wal_pages_per_run),
                cmocka_unit_test(test_runs_queries_use_an_index),
                cmocka_unit_test(test_run_object_splices_timings),
                cmocka_unit_test(test_run_object_head_text_is_jansson),
                cmocka_unit_test(test_deferred_submit_finished_within_linger_is_one_write),
                cmocka_unit_test(test_held_finishes_commit_as_one_transaction),
                cmocka_unit_test(test_queued_synchronous_run_start_and_end_are_one_write),
                cmocka_unit_test(test_deferred_submit_committed_by_linger_then_updated),
                cmocka_unit_test(test_writer_sleeps_while_finishes_take_the_starts),
                cmocka_unit_test(test_deferred_submit_reveal_fence_and_recovery),
                cmocka_unit_test(test_deferred_submit_not_for_retries_0),
                cmocka_unit_test(test_deferred_submit_failed_replacement_retries),
                cmocka_unit_test(test_run_times_stored_relative_to_created),
                cmocka_unit_test(test_run_times_of_old_rows_read_as_before),
                cmocka_unit_test(test_run_times_at_and_before_created),
                cmocka_unit_test(test_run_times_relative_on_every_write_path),
                cmocka_unit_test(test_group_commit_wakes_only_whom_it_concerns),
                cmocka_unit_test(test_vfs_joins_frames_plain_unix_reads_them),
                cmocka_unit_test(test_vfs_restart_then_crash_recovers),
                cmocka_unit_test(test_vfs_held_header_written_by_the_next_call),
                cmocka_unit_test(test_journaled_ends_survive_a_crash_before_their_batch),
                cmocka_unit_test(test_journal_replay_after_its_batch_committed_is_idempotent),
                cmocka_unit_test(test_journal_torn_last_record_is_skipped),
                cmocka_unit_test(test_journaled_run_read_before_its_batch),
                cmocka_unit_test(test_journal_batches_many_runs_in_one_commit),
                cmocka_unit_test(test_journal_batch_holds_its_records_until_full),
                cmocka_unit_test(test_journal_batch_waits_its_linger),
                cmocka_unit_test(test_get_of_another_run_leaves_the_batch_pending),
                cmocka_unit_test(test_outlasting_synchronous_runs_add_no_commits),
                cmocka_unit_test(test_lone_synchronous_submit_waits_the_journals_linger),
                cmocka_unit_test(test_list_asks_the_writers_thread_for_the_batch),
                cmocka_unit_test(test_reveal_of_a_committed_run_commits_nothing),
                cmocka_unit_test(test_end_does_not_wait_for_the_batch_holding_its_run),
                cmocka_unit_test(test_end_beside_a_batch_survives_a_crash_at_each_point),
                cmocka_unit_test(test_backup_holds_the_runs_only_in_the_journal),
                cmocka_unit_test(test_backup_replays_a_committed_journal_harmlessly),
                cmocka_unit_test(test_backup_holds_ends_journaled_beside_a_batch),
                cmocka_unit_test(test_request_fields_stored_as_the_old_sql_did),
                cmocka_unit_test(test_the_writers_batch_runs_lowered_and_is_raised_for_its_waiters),
                cmocka_unit_test(test_the_writers_lowered_batch_is_raised_after_the_bound_with_no_other_call),
                cmocka_unit_test(test_the_writers_lowered_batch_offers_its_cpu_between_records),
                cmocka_unit_test(test_request_fields_given_store_the_same_row),
                cmocka_unit_test(test_request_fields_given_replay_the_same_row),
                cmocka_unit_test(test_journal_of_base14_replays),
                cmocka_unit_test(test_run_row_keeps_timings_values_only),
                cmocka_unit_test(test_run_row_keeps_engine_timings_as_microseconds),
                cmocka_unit_test(test_run_row_keeps_default_log_path_empty),
                cmocka_unit_test(test_usage_walk_needs_no_write_lock),
                cmocka_unit_test(test_tenant_index_pages_stay_full),
                cmocka_unit_test(test_finishes_journal_beside_drains),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        rm_rf(dir);
        return r;
}
