/* Tokens without editing YAML (docs/secrets.md "Tokens"):
 * `pysprinterd token create|ls|revoke` on the daemon's machine and, for
 * admin tokens, /v1/tokens over the API. A token is shown once, when it is
 * made; the database keeps its sha256 only. The daemon looks a bearer
 * token up here when the config's `tokens:` do not match it, so a new or
 * revoked token counts from the next request, without SIGHUP. */
#include <assert.h>
#include <getopt.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "cluster.h"
#include "daemon.h"

/* store_token_touch() writes a use only when the last is a minute old
 * (store-tokens.c, token_touch.lua): the caller skips it before then. */
#define TOKEN_TOUCH_EVERY_USEC (60 * USEC_PER_SEC)

static const char *role_name(TokenRole r) {
        return r == TOKEN_ROLE_ADMIN ? "admin" : r == TOKEN_ROLE_READONLY ? "readonly" : "user";
}

static int role_parse(const char *s, TokenRole *ret) {
        if (streq(s, "user"))
                *ret = TOKEN_ROLE_USER;
        else if (streq(s, "readonly"))
                *ret = TOKEN_ROLE_READONLY;
        else if (streq(s, "admin"))
                *ret = TOKEN_ROLE_ADMIN;
        else
                return -EINVAL;
        return 0;
}

/* The longest expiry: a century. Longer (up to 100000000d was taken) put
 * the expiry in the year 275817, which `token ls` cut to
 * "275817-08-19T16:38:"; such a token is meant to be "never". */
#define TOKEN_EXPIRES_MAX_S (36500ULL * 86400)

/* "30d", "12h", "90m", "3600s", "3600" -> microseconds, at most
 * TOKEN_EXPIRES_MAX_S; 0 for "never". */
static int expires_parse(const char *s, usec_t *ret) {
        if (streq(s, "never") || streq(s, "0")) {
                *ret = 0;
                return 0;
        }
        char *end;
        errno = 0;
        unsigned long long n = strtoull(s, &end, 10);
        if (errno || end == s || n == 0 || n > 100000000ULL)
                return -EINVAL;
        usec_t unit = streq(end, "d") ? 86400 : streq(end, "h") ? 3600 : streq(end, "m") ? 60
                      : (streq(end, "s") || !*end) ? 1 : 0;
        if (!unit || n * unit > TOKEN_EXPIRES_MAX_S)
                return -EINVAL;
        *ret = (usec_t) n * unit * USEC_PER_SEC;
        return 0;
}

/* A new token for tenant: "pst_" and 64 hex digits (256 random bits),
 * recorded by its sha256 with a 12-digit public id. *ret_token is the
 * only copy of the token. */
static int token_make(Store *s, const char *tenant, TokenRole role, usec_t ttl, TokenRecord *ret,
                      char **ret_token) {
        _cleanup_free_ char *rnd = NULL, *id = NULL;
        int r = random_hex(32, &rnd);
        if (r < 0)
                return r;
        r = random_hex(6, &id);
        if (r < 0)
                return r;
        char *token = xasprintf("pst_%s", rnd);
        explicit_bzero(rnd, strlen(rnd));
        char hash[SHA256_HEX_SIZE];
        sha256_hex(token, strlen(token), hash);
        usec_t now = now_realtime();
        TokenRecord t = {
                .id = TAKE_PTR(id), .sha256 = xstrdup(hash), .tenant = xstrdup(tenant),
                .role = xstrdup(role_name(role)), .created = now, .expires = ttl ? now + ttl : 0,
        };
        r = store_token_insert(s, &t);
        if (r < 0) {
                token_record_done(&t);
                free(token);
                return r;
        }
        *ret = t;
        *ret_token = token;
        return 0;
}

static bool tenant_name_valid(const char *s) {
        /* The config's rule for a token's tenant. */
        return function_name_is_valid(s);
}

int daemon_token_lookup(Daemon *d, const char *token, TokenRole *ret_role, char *tenant_buf, size_t size) {
        assert(token);
        uint8_t sha[SHA256_DIGEST_SIZE];
        sha256_digest(token, strlen(token), sha);
        return daemon_token_lookup_hash(d, sha, ret_role, tenant_buf, size);
}

int daemon_token_lookup_hash(Daemon *d, const uint8_t sha[static 32], TokenRole *ret_role, char *tenant_buf,
                             size_t size) {
        assert(d);
        assert(sha);
        if (!d->store)
                return -EPERM;
        static const char hexd[] = "0123456789abcdef";
        char hash[SHA256_HEX_SIZE];
        for (size_t i = 0; i < 32; i++) {
                hash[2 * i] = hexd[sha[i] >> 4];
                hash[2 * i + 1] = hexd[sha[i] & 15];
        }
        hash[64] = 0;
        TokenRecord t = {};
        int r = store_token_find(d->store, hash, &t);
        if (r == -ECONNREFUSED || r == -ECOMM) /* Redis (cluster-conn.c): a read, safe to ask again */
                return -ECONNREFUSED;
        if (r < 0)
                return -EPERM;
        usec_t now = now_realtime();
        TokenRole role;
        if ((t.expires && now >= t.expires) || role_parse(t.role, &role) < 0) {
                token_record_done(&t);
                return -EPERM;
        }
        /* The last use is written at most once a minute (both backends'
         * own rule): the record says when it last was, so a token used
         * again within the minute costs no write statement, nor a Redis
         * round trip in a cluster, per request. */
        if (now - t.last_used >= TOKEN_TOUCH_EVERY_USEC)
                (void) store_token_touch(d->store, t.id, now);
        *ret_role = role;
        snprintf(tenant_buf, size, "%s", t.tenant);
        token_record_done(&t);
        return 0;
}

/* ---- the API ------------------------------------------------------------ */

static json_t *time_or_null(usec_t t) {
        char buf[32];
        return t ? json_string(format_timestamp(t, buf)) : json_null();
}

static json_t *token_json(const TokenRecord *t) {
        return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "id", t->id, "tenant", t->tenant, "role", t->role,
                         "created_at", time_or_null(t->created), "expires_at", time_or_null(t->expires),
                         "last_used_at", time_or_null(t->last_used));
}

static struct MHD_Response *admin_only(const DaemonCall *call, unsigned *ret_status) {
        if (call->role == TOKEN_ROLE_ADMIN)
                return NULL;
        return daemon_call_error(call, 403, "forbidden", ret_status, "managing tokens needs an admin token");
}

struct MHD_Response *daemon_api_tokens_list(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *deny = admin_only(call, ret_status);
        if (deny)
                return deny;
        TokenRecord *v = NULL;
        size_t n = 0;
        int r = store_token_list(call->d->store, &v, &n);
        if (r < 0)
                return daemon_call_errno(call, r, "tokens", ret_status);
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, token_json(&v[i]));
        token_record_list_free(v, n);
        return daemon_call_json(call, 200, json_pack("{s:o}", "tokens", arr), ret_status);
}

/* NULL, or why body (a JSON value) is not a token request: not an object,
 * a field other than tenant, role and expires, or one that is not a
 * string. json_get_string() reads a wrong type as absent, and an absent
 * "expires" is "never": {"expires": 3600} made a token that never expires. */
static char *token_fields_check(json_t *body) {
        if (!json_is_object(body))
                return xstrdup("request body must be a JSON object");
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v) {
                if (!streq(key, "tenant") && !streq(key, "role") && !streq(key, "expires"))
                        return xasprintf("unknown field '%s' (tenant, role, expires)", key);
                if (!json_is_string(v))
                        return xasprintf("field '%s' must be a string", key);
        }
        return NULL;
}

/* POST /v1/tokens {"tenant", "role"?, "expires"?: "30d"}: 201 with the
 * token, the one time it is shown. */
struct MHD_Response *daemon_api_token_create(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *deny = admin_only(call, ret_status);
        if (deny)
                return deny;
        RequestCaps caps = daemon_call_caps(call);
        json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        if (request_json_parse(call->body, call->body_len, &caps, (void **) &j, &err) < 0)
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", err ?: "invalid JSON");
        const char *tenant = json_get_string(j, "tenant"), *role_s = json_get_string(j, "role"),
                   *expires = json_get_string(j, "expires");
        TokenRole role = TOKEN_ROLE_USER;
        usec_t ttl = 0;
        const char *bad = NULL;
        _cleanup_free_ char *bad_field = token_fields_check(j);
        if (bad_field)
                bad = bad_field;
        else if (!tenant || !tenant_name_valid(tenant))
                bad = "'tenant' must be a name ([A-Za-z0-9_-]{1,64})";
        else if (role_s && role_parse(role_s, &role) < 0)
                bad = "'role' is user, readonly or admin";
        else if (expires && expires_parse(expires, &ttl) < 0)
                bad = "'expires' is a duration such as \"30d\", \"12h\", \"90m\", \"3600s\" (at most \"36500d\"), or "
                      "\"never\"";
        if (bad) {
                json_decref(j);
                return daemon_call_error(call, 400, "bad_request", ret_status, "%s", bad);
        }
        TokenRecord t = {};
        _cleanup_free_ char *token = NULL;
        int r = token_make(call->d->store, tenant, role, ttl, &t, &token);
        json_decref(j);
        if (r < 0)
                return daemon_call_errno(call, r, "token", ret_status);
        json_t *ans = token_json(&t);
        json_object_set_new(ans, "token", json_string(token));
        explicit_bzero(token, strlen(token));
        token_record_done(&t);
        return daemon_call_json(call, 201, ans, ret_status);
}

struct MHD_Response *daemon_api_token_revoke(const DaemonCall *call, unsigned *ret_status) {
        struct MHD_Response *deny = admin_only(call, ret_status);
        if (deny)
                return deny;
        const char *id = call->seg[2];
        _cleanup_free_ char *full = NULL;
        int r = store_token_revoke(call->d->store, id, &full);
        if (r == -ENOENT)
                return daemon_call_error(call, 404, "not_found", ret_status, "no token with id '%s'", id);
        if (r == -EEXIST)
                return daemon_call_error(call, 409, "conflict", ret_status, "'%s' names more than one token", id);
        if (r < 0)
                return daemon_call_errno(call, r, "token", ret_status);
        /* The token's id, not the prefix that named it. */
        return daemon_call_json(call, 200, json_pack("{s:s, s:b}", "id", full, "revoked", true), ret_status);
}

/* ---- pysprinterd token … ----------------------------------------------- */

static const char token_usage[] =
        "usage: pysprinterd token create --tenant NAME [--role user|readonly|admin] [--expires 30d]\n"
        "       pysprinterd token ls [--json]\n"
        "       pysprinterd token revoke ID\n"
        "  (each also takes --config FILE and --data-dir DIR; docs/secrets.md \"Tokens\")\n"
        "  --redis URL   a cluster's tokens (in its Redis; docs/cluster.md \"Tokens\"), as the nodes'\n"
        "                --redis (the password: the URL's or the config's cluster.redis_password)\n";

static int token_cli_create(Store *s, const char *tenant, const char *role_s, const char *expires, bool json) {
        TokenRole role = TOKEN_ROLE_USER;
        usec_t ttl = 0;
        if (!tenant || !tenant_name_valid(tenant)) {
                log_error("token create needs --tenant NAME ([A-Za-z0-9_-]{1,64})");
                return EXIT_USAGE;
        }
        if (role_s && role_parse(role_s, &role) < 0) {
                log_error("--role is user, readonly or admin, got '%s'", role_s);
                return EXIT_USAGE;
        }
        if (expires && expires_parse(expires, &ttl) < 0) {
                log_error("--expires is a duration such as 30d, 12h, 90m, 3600s (at most 36500d), or never; got '%s'",
                          expires);
                return EXIT_USAGE;
        }
        TokenRecord t = {};
        _cleanup_free_ char *token = NULL;
        int r = token_make(s, tenant, role, ttl, &t, &token);
        if (r < 0) {
                log_error("cannot record the token: %s", strerror(-r));
                return EXIT_INTERNAL;
        }
        if (json) {
                json_t *j = token_json(&t);
                json_object_set_new(j, "token", json_string(token));
                _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
                json_decref(j);
                printf("%s\n", text);
        } else {
                printf("%s\n", token);
                fprintf(stderr, "token %s for tenant %s (%s)%s: shown once, keep it now\n", t.id, t.tenant, t.role,
                        t.expires ? ", expires" : "");
        }
        explicit_bzero(token, strlen(token));
        token_record_done(&t);
        return 0;
}

static int token_cli_ls(Store *s, bool json) {
        TokenRecord *v = NULL;
        size_t n = 0;
        int r = store_token_list(s, &v, &n);
        if (r < 0) {
                log_error("cannot read the tokens: %s", strerror(-r));
                return EXIT_INTERNAL;
        }
        json_t *arr = json_array();
        if (!json)
                printf("%-12s %-20s %-8s %-20s %-20s %s\n", "ID", "TENANT", "ROLE", "CREATED", "EXPIRES", "LAST USED");
        for (size_t i = 0; i < n; i++) {
                if (json) {
                        json_array_append_new(arr, token_json(&v[i]));
                        continue;
                }
                char c[32], e[32], u[32];
                printf("%-12s %-20s %-8s %-20.19s %-20.19s %.19s\n", v[i].id, v[i].tenant, v[i].role,
                       format_timestamp(v[i].created, c), v[i].expires ? format_timestamp(v[i].expires, e) : "never",
                       v[i].last_used ? format_timestamp(v[i].last_used, u) : "never");
        }
        if (json) {
                _cleanup_free_ char *text = json_dumps(arr, JSON_COMPACT);
                printf("%s\n", text);
        }
        json_decref(arr);
        token_record_list_free(v, n);
        return 0;
}

int daemon_token_main(int argc, char **argv) {
        enum {
                ARG_CONFIG = 0x100,
                ARG_DATA_DIR,
                ARG_TENANT,
                ARG_ROLE,
                ARG_EXPIRES,
                ARG_JSON,
                ARG_REDIS
        };
        static const struct option options[] = {
                { "config", required_argument, NULL, ARG_CONFIG },
                { "data-dir", required_argument, NULL, ARG_DATA_DIR },
                { "tenant", required_argument, NULL, ARG_TENANT },
                { "role", required_argument, NULL, ARG_ROLE },
                { "expires", required_argument, NULL, ARG_EXPIRES },
                { "json", no_argument, NULL, ARG_JSON },
                { "redis", required_argument, NULL, ARG_REDIS },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *config = getenv("PYSPRINTER_DAEMON_CONFIG"), *data_dir = NULL, *tenant = NULL, *role = NULL,
                   *expires = NULL, *redis = NULL;
        bool json = false;
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_CONFIG: config = optarg; break;
                case ARG_DATA_DIR: data_dir = optarg; break;
                case ARG_TENANT: tenant = optarg; break;
                case ARG_ROLE: role = optarg; break;
                case ARG_EXPIRES: expires = optarg; break;
                case ARG_JSON: json = true; break;
                case ARG_REDIS:
                        redis = optarg;
                        break;
                case 'h': fputs(token_usage, stdout); return 0;
                default: fputs(token_usage, stderr); return EXIT_USAGE;
                }
        }
        const char *sub = optind < argc ? argv[optind] : NULL;
        bool create = sub && streq(sub, "create"), ls = sub && (streq(sub, "ls") || streq(sub, "list")),
             revoke = sub && streq(sub, "revoke");
        int want = revoke ? 2 : 1;
        if ((!create && !ls && !revoke) || argc - optind != want) {
                fputs(token_usage, stderr);
                return EXIT_USAGE;
        }
        DaemonConfig cfg;
        _cleanup_free_ char *err = NULL;
        daemon_config_init(&cfg);
        if (config && *config && daemon_config_check(&cfg, config, &err) < 0) {
                log_error("%s", err);
                daemon_config_done(&cfg);
                return EXIT_USAGE;
        }
        _cleanup_free_ char *dir = data_dir ? xstrdup(data_dir) : cfg.data_dir ? xstrdup(cfg.data_dir)
                                                                               : data_dir_default();
        /* A cluster's tokens are its Redis's, reached as the nodes reach it
         * (--redis URL, the config's cluster.redis_password). Before, the
         * command had no --redis: the operator could make, list and revoke
         * only a node's own, which authenticate on that node alone. */
        RunQueue *q = NULL;
        if (redis) {
                ClusterOptions co = {
                        .url = redis,
                        .password = cfg.cluster_redis_password,
                        .node_id = "pysprinterd-token",
                        .client = true,
                };
                int k = cluster_queue_new(&co, &q, &err);
                if (k < 0) {
                        log_error("%s", err);
                        daemon_config_done(&cfg);
                        return EXIT_INTERNAL;
                }
        }
        daemon_config_done(&cfg);
        int r = mkdir_p(dir, 0750);
        _cleanup_free_ char *db = path_join(dir, "pysprinter.db");
        /* Held shared until exit, as engines do (store_home_lock): a
         * restore meanwhile would undo the change. */
        _cleanup_close_ int lock = r < 0 ? r : store_home_lock(dir, false);
        if (lock == -EWOULDBLOCK) {
                _cleanup_free_ char *why = store_home_lock_message(dir, lock);
                log_error("%s", why);
                run_queue_free(q);
                return EXIT_USAGE;
        }
        Store *s = NULL;
        if (r >= 0)
                r = lock < 0 ? lock : store_open(db, &s);
        if (r < 0) {
                _cleanup_free_ char *why = store_open_message(db, r);
                log_error("%s", why);
                run_queue_free(q);
                return EXIT_INTERNAL;
        }
        /* As a node's API does: made in Redis; listed and revoked in
         * Redis and in this data directory's database. */
        if (q)
                store_tokens_use(s, cluster_token_store_new(q));
        int code;
        if (create)
                code = token_cli_create(s, tenant, role, expires, json);
        else if (ls)
                code = token_cli_ls(s, json);
        else {
                r = store_token_revoke(s, argv[optind + 1], NULL);
                code = 0;
                if (r == -ENOENT || r == -EEXIST) {
                        log_error(r == -ENOENT ? "no token with id '%s' (pysprinterd token ls)"
                                               : "'%s' names more than one token: give more of its id",
                                  argv[optind + 1]);
                        code = EXIT_USAGE;
                } else if (r < 0) {
                        log_error("cannot revoke: %s", strerror(-r));
                        code = EXIT_INTERNAL;
                } else
                        printf("revoked %s\n", argv[optind + 1]);
        }
        store_close(s);
        run_queue_free(q); /* after the store: its token store uses q */
        return code;
}

/* ---- access keys (SigV4) by their digest ---- */

/* daemon.h. */
void daemon_access_key_sha256(const char *access_key_id, const char *secret_access_key,
                              uint8_t ret[static SHA256_DIGEST_SIZE]) {
        Sha256Small h;
        sha256_small_init(&h);
        sha256_small_update(&h, access_key_id, strlen(access_key_id) + 1);
        sha256_small_update(&h, secret_access_key, strlen(secret_access_key));
        sha256_small_final(&h, ret);
        OPENSSL_cleanse(&h, sizeof(h));
}

/* daemon.h. */
int daemon_access_key_by_sha256(Daemon *d, const uint8_t sha[static SHA256_DIGEST_SIZE], TokenRole *ret_role,
                                char *ret_tenant, size_t tenant_size) {
        int r = -ENOENT;
        pthread_rwlock_rdlock(&d->cfg_lock);
        for (size_t i = 0; i < d->cfg.n_tokens && r < 0; i++) {
                const DaemonToken *t = &d->cfg.tokens[i];
                if (!t->access_key_id || !t->secret_access_key)
                        continue;
                uint8_t h[SHA256_DIGEST_SIZE];
                daemon_access_key_sha256(t->access_key_id, t->secret_access_key, h);
                if (CRYPTO_memcmp(h, sha, sizeof(h)) != 0)
                        continue;
                *ret_role = t->role;
                snprintf(ret_tenant, tenant_size, "%s", t->tenant);
                r = 0;
        }
        pthread_rwlock_unlock(&d->cfg_lock);
        return r;
}
