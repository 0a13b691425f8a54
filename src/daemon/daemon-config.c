/* The daemon's YAML configuration. src/shared turns it into jansson values
 * (the YAML 1.2 core schema, the same rule as DAG files:
 * docs/internals/yaml.md) so one typed walk checks every key and names the
 * bad one. */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "daemon.h"
#include "data.h"
#include "pkg.h"

/* Here, where the config is read, so that --check-config and a SIGHUP
 * refuse what the start would (daemon-http.c binds with it). */
int listen_address_parse(const char *s, void *ret_sockaddr_storage, size_t *ret_len, bool *ret_is_loopback) {
        struct sockaddr_storage ss = {};
        _cleanup_free_ char *host = NULL;
        const char *port;
        bool loopback;

        if (s[0] == '[') {
                const char *e = strchr(s, ']');
                if (!e || e[1] != ':')
                        return -EINVAL;
                host = xstrndup(s + 1, (size_t) (e - s - 1));
                port = e + 2;
        } else {
                const char *colon = strrchr(s, ':');
                if (!colon)
                        return -EINVAL;
                host = xstrndup(s, (size_t) (colon - s));
                port = colon + 1;
        }
        char *end;
        unsigned long p = strtoul(port, &end, 10);
        if (!*port || *end || p > 65535)
                return -EINVAL;
        if (!*host || streq(host, "localhost")) {
                bool empty = !*host;
                free(host);
                host = xstrdup(empty ? "0.0.0.0" : "127.0.0.1");
        }

        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t) p);
                loopback = (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
                *ret_len = sizeof(*in4);
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) p);
                loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
                *ret_len = sizeof(*in6);
        } else
                return -EINVAL;
        memcpy(ret_sockaddr_storage, &ss, sizeof(ss));
        *ret_is_loopback = loopback;
        return 0;
}

void daemon_config_init(DaemonConfig *cfg) {
        static uint64_t generations;
        *cfg = (DaemonConfig){
                .generation = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED),
                .listen = xstrdup("127.0.0.1:8080"),
                .max_body_bytes = 12U << 20,
                .max_json_depth = 64,
                .max_json_values = 1000000,
                .max_concurrent_runs = 8,
                .max_concurrent_per_tenant = 4,
                .max_queued_runs = 256,
                .max_queued_per_tenant = UINT_MAX,
                .max_connections = 1024,
                .max_connections_per_ip = 64,
                .endpoint_rate = 10,
                .endpoint_burst = 20,
                .read_timeout_s = 30,
                .request_deadline_s = 60,
                .max_wait_s = 3600,
                .max_attempts = 3,
                .max_retries = -1,
                .event_retry_delay_ms = 60000,
                .metrics_public = true,
                .sandbox = SANDBOX_MODE_FULL,
                .pool_spares = 2,
        };
        retention_config_init(&cfg->retention);
}

static void token_done(DaemonToken *t) {
        free(t->tenant);
        free(t->access_key_id);
        if (t->secret_access_key)
                OPENSSL_cleanse(t->secret_access_key, strlen(t->secret_access_key));
        free(t->secret_access_key);
        *t = (DaemonToken) {};
}

static void tokens_free(DaemonToken *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                token_done(&v[i]);
        free(v);
}

static void tenants_free(DaemonTenant *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i].name);
        free(v);
}

void daemon_config_done(DaemonConfig *cfg) {
        free(cfg->listen);
        free(cfg->data_dir);
        tokens_free(cfg->tokens, cfg->n_tokens);
        tenants_free(cfg->tenants, cfg->n_tenants);
        strv_free(cfg->data_url_allow);
        free(cfg->cluster_secret);
        free(cfg->secrets_key_file);
        free(cfg->cluster_redis_password);
        free(cfg->index_url);
        strv_free(cfg->extra_index_urls);
        strv_free(cfg->find_links);
        strv_free(cfg->allow_packages);
        strv_free(cfg->deny_packages);
        retention_config_done(&cfg->retention);
        strv_free(cfg->warnings);
        *cfg = (DaemonConfig) {};
}

/* A mapping whose keys are strings or lists of strings (section.KEY);
 * unknown keys are refused. */
typedef struct StrvKey {
        const char *name;
        char ***strv;           /* a list, or */
        char **string;          /* a string */
} StrvKey;

/* A bad index URL is the operator's typo: refused at load (and by
 * --check-config) instead of failing every run that has a requirement. */
static int check_index_urls(const DaemonConfig *cfg, char **ret_error) {
        _cleanup_free_ char *why = NULL;
        if (cfg->index_url && pkg_index_url_check(cfg->index_url, &why) < 0) {
                *ret_error = xasprintf("index.url: %s", why);
                return -EINVAL;
        }
        for (char **u = cfg->extra_index_urls; u && *u; u++)
                if (pkg_index_url_check(*u, &why) < 0) {
                        *ret_error = xasprintf("index.extra_urls: %s", why);
                        return -EINVAL;
                }
        return 0;
}

static int parse_string_keys(json_t *v, const char *section, const char *not_mapping, const StrvKey *keys,
                             size_t n_keys, char **ret_error) {
        const char *k;
        json_t *item;
        if (!json_is_object(v)) {
                *ret_error = xstrdup(not_mapping);
                return -EINVAL;
        }
        json_object_foreach(v, k, item) {
                _cleanup_free_ char *name = xasprintf("%s.%s", section, k);
                const StrvKey *key = NULL;
                for (size_t i = 0; i < n_keys && !key; i++)
                        if (streq(keys[i].name, k))
                                key = &keys[i];
                if (!key) {
                        *ret_error = xasprintf("unknown key '%s'", name);
                        return -EINVAL;
                }
                int r = key->strv ? json_want_strv(item, name, key->strv, ret_error)
                                  : json_want_string(item, name, key->string, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* retries: where a maxima's `retries` goes (0..RUN_MAX_RETRIES); NULL: the
 * mapping takes none (limits.defaults: server.max_attempts is the default). */
static int parse_limits(json_t *o, const char *key, RunLimits *l, int *retries, char **ret_error) {
        const char *k;
        json_t *v;
        int r;

        if (!json_is_object(o)) {
                *ret_error = xasprintf("'%s' must be a mapping", key);
                return -EINVAL;
        }
        json_object_foreach(o, k, v) {
                _cleanup_free_ char *full = xasprintf("%s.%s", key, k);
                if (streq(k, "timeout_ms")) {
                        r = json_want_uint(v, full, &l->timeout_ms, ret_error);
                        if (r >= 0 && l->timeout_ms > RUN_MAX_TIMEOUT_MS) {
                                *ret_error = xasprintf("'%s' must be at most %llu (7 days)", full,
                                                       (unsigned long long) RUN_MAX_TIMEOUT_MS);
                                return -EINVAL;
                        }
                } else if (streq(k, "memory_bytes")) {
                        /* The bounds a request has (RUN_MIN_MEMORY_BYTES,
                         * RUN_MAX_PROCS): a default or maximum past them was
                         * every run's, and the kernel refused it. */
                        r = json_want_uint(v, full, &l->memory_bytes, ret_error);
                        if (r >= 0 && l->memory_bytes && l->memory_bytes < RUN_MIN_MEMORY_BYTES) {
                                *ret_error = xasprintf("'%s' must be 0 or at least %llu (16 MiB)", full,
                                                       (unsigned long long) RUN_MIN_MEMORY_BYTES);
                                return -EINVAL;
                        }
                } else if (streq(k, "max_procs")) {
                        r = json_want_uint(v, full, &l->max_procs, ret_error);
                        if (r >= 0 && l->max_procs > RUN_MAX_PROCS) {
                                *ret_error = xasprintf("'%s' must be at most %llu", full,
                                                       (unsigned long long) RUN_MAX_PROCS);
                                return -EINVAL;
                        }
                } else if (streq(k, "max_output_bytes"))
                        r = json_want_uint(v, full, &l->max_output_bytes, ret_error);
                else if (retries && streq(k, "retries")) {
                        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                            json_integer_value(v) > RUN_MAX_RETRIES) {
                                *ret_error = xasprintf("'%s' must be an integer from 0 to %d", full, RUN_MAX_RETRIES);
                                return -EINVAL;
                        }
                        *retries = (int) json_integer_value(v);
                        r = 0;
                } else if (streq(k, "network")) {
                        if (!json_is_boolean(v)) {
                                *ret_error = xasprintf("'%s' must be true or false", full);
                                return -EINVAL;
                        }
                        l->network = json_is_true(v);
                        r = 0;
                } else {
                        *ret_error = xasprintf("unknown key '%s'", full);
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int hex_decode32(const char *s, uint8_t out[32]) {
        if (strlen(s) != 64)
                return -EINVAL;
        for (size_t i = 0; i < 32; i++) {
                unsigned x;
                if (!isxdigit((unsigned char) s[2 * i]) || !isxdigit((unsigned char) s[2 * i + 1]))
                        return -EINVAL;
                if (sscanf(s + 2 * i, "%2x", &x) != 1)
                        return -EINVAL;
                out[i] = (uint8_t) x;
        }
        return 0;
}

/* Whether a client can send s as a bearer token: no space or tab at
 * either end (the header's value is trimmed), no control character. */
static bool token_is_sendable(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || isspace((unsigned char) s[0]) || isspace((unsigned char) s[n - 1]))
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

/* tokens: [{tenant, token | token_sha256 | access_key_id + secret_access_key, role}] */
static int parse_token(json_t *t, size_t i, DaemonToken *tok, char **ret_error) {
        const char *k;
        json_t *v;

        if (!json_is_object(t)) {
                *ret_error = xasprintf("'tokens[%zu]' must be a mapping", i);
                return -EINVAL;
        }
        json_object_foreach(t, k, v) {
                if (!json_is_string(v)) {
                        *ret_error = xasprintf("'tokens[%zu].%s' must be a string", i, k);
                        return -EINVAL;
                }
                const char *s = json_string_value(v);
                if (streq(k, "tenant")) {
                        free(tok->tenant);
                        tok->tenant = xstrdup(s);
                } else if (streq(k, "token")) {
                        if (strlen(s) < 16) {
                                *ret_error = xasprintf("'tokens[%zu].token' must be at least 16 characters", i);
                                return -EINVAL;
                        }
                        /* A client's "Bearer TOKEN" is read trimmed, and a
                         * header holds no control character: such a token
                         * (`token: |` keeps its newline) could never match. */
                        if (!token_is_sendable(s)) {
                                *ret_error = xasprintf(
                                        "'tokens[%zu].token' must not have spaces at its ends or control "
                                        "characters (a YAML block scalar, 'token: |', keeps its newline)",
                                        i);
                                return -EINVAL;
                        }
                        uint8_t md[32];
                        unsigned mdlen = 0;
                        EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL);
                        memcpy(tok->sha256, md, 32);
                        tok->has_token = true;
                } else if (streq(k, "token_sha256")) {
                        if (hex_decode32(s, tok->sha256) < 0) {
                                *ret_error = xasprintf("'tokens[%zu].token_sha256' must be 64 hex digits", i);
                                return -EINVAL;
                        }
                        tok->has_token = true;
                } else if (streq(k, "access_key_id")) {
                        /* AWS key ids are [A-Z0-9]{16,128}; anything in the
                         * credential scope's alphabet is accepted. */
                        if (strlen(s) < 4 || strlen(s) > 128 || strpbrk(s, "/, =\t")) {
                                *ret_error = xasprintf("'tokens[%zu].access_key_id' must be 4..128 characters without '/', ',', '=' or spaces", i);
                                return -EINVAL;
                        }
                        free(tok->access_key_id);
                        tok->access_key_id = xstrdup(s);
                } else if (streq(k, "secret_access_key")) {
                        if (strlen(s) < 16) {
                                *ret_error = xasprintf("'tokens[%zu].secret_access_key' must be at least 16 characters", i);
                                return -EINVAL;
                        }
                        free(tok->secret_access_key);
                        tok->secret_access_key = xstrdup(s);
                } else if (streq(k, "role")) {
                        if (streq(s, "user"))
                                tok->role = TOKEN_ROLE_USER;
                        else if (streq(s, "readonly"))
                                tok->role = TOKEN_ROLE_READONLY;
                        else if (streq(s, "admin"))
                                tok->role = TOKEN_ROLE_ADMIN;
                        else {
                                *ret_error = xasprintf("'tokens[%zu].role' must be user, readonly or admin", i);
                                return -EINVAL;
                        }
                } else {
                        *ret_error = xasprintf("unknown key 'tokens[%zu].%s'", i, k);
                        return -EINVAL;
                }
        }
        if (!!tok->access_key_id != !!tok->secret_access_key) {
                *ret_error = xasprintf("'tokens[%zu]': 'access_key_id' and 'secret_access_key' go together", i);
                return -EINVAL;
        }
        if ((!tok->has_token && !tok->access_key_id) || !tok->tenant || !function_name_is_valid(tok->tenant)) {
                *ret_error = xasprintf("'tokens[%zu]' needs 'tenant' ([A-Za-z0-9_-]{1,64}) and 'token', 'token_sha256' "
                                       "or 'access_key_id' + 'secret_access_key'",
                                       i);
                return -EINVAL;
        }
        return 0;
}

/* The index of an entry already holding tok's bearer token (token or
 * token_sha256 alike: both are kept as the hash), else cfg->n_tokens. */
static size_t token_twin(const DaemonConfig *cfg, const DaemonToken *tok) {
        if (tok->has_token)
                for (size_t i = 0; i < cfg->n_tokens; i++)
                        if (cfg->tokens[i].has_token && memcmp(cfg->tokens[i].sha256, tok->sha256, 32) == 0)
                                return i;
        return cfg->n_tokens;
}

static int parse_tokens(DaemonConfig *cfg, json_t *a, char **ret_error) {
        size_t i;
        json_t *t;

        if (!json_is_array(a)) {
                *ret_error = xstrdup("'tokens' must be a list of {tenant, token|token_sha256, role}");
                return -EINVAL;
        }
        tokens_free(cfg->tokens, cfg->n_tokens);
        cfg->tokens = xcalloc(json_array_size(a) + 1, sizeof(DaemonToken));
        cfg->n_tokens = 0;

        json_array_foreach(a, i, t) {
                DaemonToken tok = {};
                int r = parse_token(t, i, &tok, ret_error);
                if (r < 0) {
                        token_done(&tok);
                        return r;
                }
                if (tok.access_key_id && daemon_config_find_access_key(cfg, tok.access_key_id)) {
                        *ret_error = xasprintf("'tokens[%zu].access_key_id' is used twice", i);
                        token_done(&tok);
                        return -EINVAL;
                }
                /* One token, two entries: which tenant (or role) it acts as
                 * would depend on which lookup ran (login and the session
                 * disagreed). */
                size_t twin = token_twin(cfg, &tok);
                if (twin < cfg->n_tokens) {
                        *ret_error = xasprintf("'tokens[%zu]' is the same token as 'tokens[%zu]'", i, twin);
                        token_done(&tok);
                        return -EINVAL;
                }
                cfg->tokens[cfg->n_tokens++] = tok;
        }
        return 0;
}

/* A size in bytes: a positive integer or a size string ("512M", "1G"). */
static int want_stored_bytes(json_t *v, const char *key, uint64_t *ret, char **ret_error) {
        uint64_t x = 0;
        if (json_is_integer(v) && json_integer_value(v) > 0)
                x = (uint64_t) json_integer_value(v);
        else if (!json_is_string(v) || parse_size(json_string_value(v), &x) < 0)
                x = 0;
        if (x == 0) {
                *ret_error = xasprintf("'%s' must be a number of bytes (at least 1) or a size like \"512M\", \"1G\"",
                                       key);
                return -EINVAL;
        }
        *ret = x;
        return 0;
}

/* tenants: {NAME: {network: bool, maxima: {timeout_ms, memory_bytes, retries,
 * max_procs, max_output_bytes}, max_stored_bytes: SIZE}} — what the operator
 * grants each tenant. */
static int parse_tenants(DaemonConfig *cfg, json_t *o, char **ret_error) {
        const char *name;
        json_t *v;

        if (!json_is_object(o)) {
                *ret_error = xstrdup("'tenants' must be a mapping of tenant name to {network, maxima}");
                return -EINVAL;
        }
        tenants_free(cfg->tenants, cfg->n_tenants);
        cfg->tenants = xcalloc(json_object_size(o) + 1, sizeof(DaemonTenant));
        cfg->n_tenants = 0;
        json_object_foreach(o, name, v) {
                DaemonTenant t = { .network = -1, .max_retries = -1 };
                const char *k;
                json_t *x;
                int r = 0;

                if (!function_name_is_valid(name)) {
                        *ret_error = xasprintf("'tenants.%s': a tenant name is [A-Za-z0-9_-]{1,64}", name);
                        return -EINVAL;
                }
                if (!json_is_object(v)) {
                        *ret_error = xasprintf(
                                "'tenants.%s' must be a mapping with 'network', 'maxima' and/or 'max_stored_bytes'",
                                name);
                        return -EINVAL;
                }
                json_object_foreach(v, k, x) {
                        _cleanup_free_ char *full = xasprintf("tenants.%s.%s", name, k);
                        if (streq(k, "network")) {
                                if (!json_is_boolean(x)) {
                                        *ret_error = xasprintf("'%s' must be true or false", full);
                                        return -EINVAL;
                                }
                                t.network = json_is_true(x);
                        } else if (streq(k, "max_stored_bytes")) {
                                r = want_stored_bytes(x, full, &t.max_stored_bytes, ret_error);
                                if (r < 0)
                                        return r;
                        } else if (streq(k, "maxima")) {
                                r = parse_limits(x, full, &t.maxima, &t.max_retries, ret_error);
                                if (r < 0)
                                        return r;
                                if (t.maxima.network) {
                                        *ret_error = xasprintf("'%s.network': say 'tenants.%s.network'", full, name);
                                        return -EINVAL;
                                }
                        } else {
                                *ret_error = xasprintf("unknown key '%s'", full);
                                return -EINVAL;
                        }
                }
                t.name = xstrdup(name);
                cfg->tenants[cfg->n_tenants++] = t;
        }
        return 0;
}

/* cluster: {secret: S, redis_password: P} — secret: what the nodes of a
 * cluster show each other on the internal routes; at least 16 characters.
 * redis_password: what a node AUTHs to Redis with when --redis's URL names
 * none (a config file can be 0600; a command line is anyone's to read). */
static int parse_cluster(DaemonConfig *cfg, json_t *o, char **ret_error) {
        const char *k;
        json_t *v;
        if (!json_is_object(o)) {
                *ret_error = xstrdup("'cluster' must be a mapping");
                return -EINVAL;
        }
        json_object_foreach(o, k, v) {
                if (streq(k, "redis_password")) {
                        if (!json_is_string(v) || !*json_string_value(v)) {
                                *ret_error = xstrdup("'cluster.redis_password' must be a non-empty string");
                                return -EINVAL;
                        }
                        free(cfg->cluster_redis_password);
                        cfg->cluster_redis_password = xstrdup(json_string_value(v));
                        continue;
                }
                if (!streq(k, "secret")) {
                        *ret_error = xasprintf("unknown key 'cluster.%s'", k);
                        return -EINVAL;
                }
                if (!json_is_string(v) || strlen(json_string_value(v)) < 16 || strpbrk(json_string_value(v), " \r\n")) {
                        *ret_error = xstrdup("'cluster.secret' must be a string of at least 16 characters without spaces");
                        return -EINVAL;
                }
                free(cfg->cluster_secret);
                cfg->cluster_secret = xstrdup(json_string_value(v));
        }
        return 0;
}

/* secrets: {key_file: PATH} — the secrets' key (docs/secrets.md) read
 * from PATH, an absolute path, instead of $DATA/secrets.key; never
 * created there: a cluster's nodes all need the one key. */
static int parse_secrets(DaemonConfig *cfg, json_t *o, char **ret_error) {
        const char *k;
        json_t *v;
        if (!json_is_object(o)) {
                *ret_error = xstrdup("'secrets' must be a mapping");
                return -EINVAL;
        }
        json_object_foreach(o, k, v) {
                if (!streq(k, "key_file")) {
                        *ret_error = xasprintf("unknown key 'secrets.%s'", k);
                        return -EINVAL;
                }
                if (!json_is_string(v) || json_string_value(v)[0] != '/') {
                        *ret_error = xstrdup("'secrets.key_file' must be an absolute path");
                        return -EINVAL;
                }
                free(cfg->secrets_key_file);
                cfg->secrets_key_file = xstrdup(json_string_value(v));
        }
        return 0;
}

/* data: {max_bytes: N, url_allow: [CIDR…], max_output_bytes: N,
 * max_output_files: N} */
static int parse_data(DaemonConfig *cfg, json_t *o, char **ret_error) {
        const char *k;
        json_t *v;

        if (!json_is_object(o)) {
                *ret_error = xstrdup("'data' must be a mapping");
                return -EINVAL;
        }
        json_object_foreach(o, k, v) {
                /* max_bytes: a version's cap, uploads included
                 * (docs/data.md); 0 (absent): PYSPRINTER_DATA_MAX_BYTES,
                 * else 10 GiB. max_output_bytes, max_output_files: a run's
                 * output_dir() caps (docs/data.md "Outputs"); 0: the
                 * engine's (its environment, else its default). */
                uint64_t *u = streq(k, "max_bytes")          ? &cfg->data_max_bytes
                              : streq(k, "max_output_bytes") ? &cfg->max_out_bytes
                              : streq(k, "max_output_files") ? &cfg->max_out_files
                                                             : NULL;
                if (u) {
                        _cleanup_free_ char *full = xasprintf("data.%s", k);
                        int r = json_want_uint(v, full, u, ret_error);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!streq(k, "url_allow")) {
                        *ret_error = xasprintf("unknown key 'data.%s'", k);
                        return -EINVAL;
                }
                int r = json_want_strv(v, "data.url_allow", &cfg->data_url_allow, ret_error);
                if (r < 0)
                        return r;
                for (size_t i = 0; cfg->data_url_allow[i]; i++)
                        if (data_cidr_valid(cfg->data_url_allow[i]) < 0) {
                                *ret_error = xasprintf("'data.url_allow[%zu]': '%s' is not an address or CIDR "
                                                       "(e.g. 10.0.0.0/8, fd00::/8)",
                                                       i, cfg->data_url_allow[i]);
                                return -EINVAL;
                        }
        }
        return 0;
}

static int parse_server(DaemonConfig *cfg, json_t *o, char **ret_error) {
        const char *k;
        json_t *v;
        int r = 0;

        if (!json_is_object(o)) {
                *ret_error = xstrdup("'server' must be a mapping");
                return -EINVAL;
        }
        json_object_foreach(o, k, v) {
                _cleanup_free_ char *full = xasprintf("server.%s", k);
                uint64_t x = 0;
                struct {
                        const char *name;
                        unsigned *u;
                        size_t *z;
                        uint64_t min, max;
                } t[] = {
                        { "max_body_bytes", NULL, &cfg->max_body_bytes, 1024, 1ULL << 32 },
                        { "max_json_depth", NULL, &cfg->max_json_depth, 2, 1000 },
                        { "max_json_values", NULL, &cfg->max_json_values, 16, 100000000 },
                        { "max_concurrent_runs", &cfg->max_concurrent_runs, NULL, 1, 100000 },
                        { "max_concurrent_per_tenant", &cfg->max_concurrent_per_tenant, NULL, 1, 100000 },
                        { "max_queued_runs", &cfg->max_queued_runs, NULL, 0, 1000000 },
                        { "max_queued_per_tenant", &cfg->max_queued_per_tenant, NULL, 0, 1000000 },
                        { "max_connections", &cfg->max_connections, NULL, 4, 100000 },
                        { "max_connections_per_ip", &cfg->max_connections_per_ip, NULL, 1, 100000 },
                        { "http_threads", &cfg->http_threads, NULL, 0, DAEMON_HTTP_THREADS_MAX },
                        { "read_timeout_s", &cfg->read_timeout_s, NULL, 1, 86400 },
                        { "request_deadline_s", &cfg->request_deadline_s, NULL, 1, 86400 },
                        { "max_wait_s", &cfg->max_wait_s, NULL, 1, 86400 * 7 },
                        { "max_attempts", &cfg->max_attempts, NULL, 1, RUN_MAX_RETRIES + 1 },
                        { "event_retry_delay_ms", &cfg->event_retry_delay_ms, NULL, 0, 3600000 },
                        { "endpoint_rate", &cfg->endpoint_rate, NULL, 1, 1000000 },
                        { "endpoint_burst", &cfg->endpoint_burst, NULL, 1, 1000000 },
                };
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                        if (!streq(t[i].name, k))
                                continue;
                        found = true;
                        r = json_want_uint(v, full, &x, ret_error);
                        if (r < 0)
                                return r;
                        if (x < t[i].min || x > t[i].max) {
                                *ret_error = xasprintf("'%s' must be between %" PRIu64 " and %" PRIu64, full,
                                                       t[i].min, t[i].max);
                                return -EINVAL;
                        }
                        if (t[i].u)
                                *t[i].u = (unsigned) x;
                        else
                                *t[i].z = (size_t) x;
                }
                if (found)
                        continue;
                if (streq(k, "metrics_public")) {
                        if (!json_is_boolean(v)) {
                                *ret_error = xasprintf("'%s' must be true or false", full);
                                return -EINVAL;
                        }
                        cfg->metrics_public = json_is_true(v);
                } else if (streq(k, "sandbox")) {
                        if (!json_is_string(v) ||
                            !(streq(json_string_value(v), "full") || streq(json_string_value(v), "none"))) {
                                *ret_error = xasprintf("'%s' must be full or none", full);
                                return -EINVAL;
                        }
                        cfg->sandbox = streq(json_string_value(v), "none") ? SANDBOX_MODE_NONE : SANDBOX_MODE_FULL;
                } else {
                        *ret_error = xasprintf("unknown key '%s'", full);
                        return -EINVAL;
                }
        }
        return 0;
}

/* A relative data_dir is the config file's neighbour, as a Compose file's
 * paths are: the daemon's working directory is / under systemd, and a
 * relative path there named a directory at the root. A path given on the
 * command line (--data-dir) stays relative to where it is typed. */
static int data_dir_beside_config(const char *config_path, char **data_dir, char **ret_error) {
        if (!*data_dir || (*data_dir)[0] == '/')
                return 0;
        if (!**data_dir) {
                *ret_error = xstrdup("'data_dir' must not be empty");
                return -EINVAL;
        }
        _cleanup_free_ char *copy = xstrdup(config_path);
        char *slash = strrchr(copy, '/');
        const char *base = slash ? (slash == copy ? "/" : (*slash = 0, copy)) : ".";
        _cleanup_free_ char *real = realpath(base, NULL);
        if (!real) {
                *ret_error = xasprintf("'data_dir' %s is relative to the config file's directory, which cannot be "
                                       "resolved: %s",
                                       *data_dir, strerror(errno));
                return -EINVAL;
        }
        char *abs = path_join(real, *data_dir);
        free(*data_dir);
        *data_dir = abs;
        return 0;
}

/* pool: spares, memory_budget_mb, worker_idle_s, instance_ttl_s,
 * env_idle_s, validation_cache_mb */
static int parse_pool(DaemonConfig *cfg, json_t *o, char **ret_error) {
        if (!json_is_object(o)) {
                *ret_error = xstrdup("'pool' must be a mapping");
                return -EINVAL;
        }
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
                _cleanup_free_ char *full = xasprintf("pool.%s", k);
                uint64_t x = 0;
                int r = json_want_uint(v, full, &x, ret_error);
                if (r < 0)
                        return r;
                if (streq(k, "spares") && x <= 16)
                        cfg->pool_spares = (unsigned) x;
                else if (streq(k, "memory_budget_mb") && x >= 1 && x <= (1ULL << 24))
                        cfg->pool_memory_budget = x << 20;
                else if (streq(k, "worker_idle_s") && x >= 1)
                        cfg->pool_worker_idle_s = x;
                else if (streq(k, "instance_ttl_s") && x >= 1)
                        cfg->pool_instance_ttl_s = x;
                else if (streq(k, "env_idle_s") && x >= 1 && x <= UINT32_MAX)
                        cfg->pool_env_idle_s = x;
                else if (streq(k, "validation_cache_mb") && x >= 1 && x <= (1ULL << 20))
                        cfg->pool_validation_cache_bytes = x << 20;
                else {
                        *ret_error = xasprintf("unknown key or value out of range: '%s'", full);
                        return -EINVAL;
                }
        }
        return 0;
}

int daemon_config_parse(DaemonConfig *cfg, const char *text, size_t len, const char *path, char **ret_error) {
        json_t *root = NULL;
        _cleanup_free_ char *err = NULL;
        const char *k;
        json_t *v;
        int r = 0;

        r = yaml_to_json(text, len, path, &root, ret_error);
        if (r < 0)
                return r;
        if (json_is_null(root)) { /* empty file: all defaults */
                cfg->empty_file = true;
                return 0;
        }
        if (!json_is_object(root)) {
                json_decref(root);
                *ret_error = xasprintf("%s: the top level must be a mapping", path);
                return -EINVAL;
        }

        json_object_foreach(root, k, v) {
                if (streq(k, "listen")) {
                        r = json_want_string(v, k, &cfg->listen, &err);
                        /* The start's own parser: a file --check-config
                         * passes must not fail the start on its address. */
                        struct sockaddr_storage ss;
                        size_t sl;
                        bool loopback;
                        if (r >= 0 && listen_address_parse(cfg->listen, &ss, &sl, &loopback) < 0) {
                                err = xasprintf("'listen' must be HOST:PORT or [V6]:PORT (a port up to 65535), "
                                                "not '%s'",
                                                cfg->listen);
                                r = -EINVAL;
                        }
                } else if (streq(k, "data_dir")) {
                        r = json_want_string(v, k, &cfg->data_dir, &err);
                        if (r >= 0)
                                r = data_dir_beside_config(path, &cfg->data_dir, &err);
                } else if (streq(k, "tokens"))
                        r = parse_tokens(cfg, v, &err);
                else if (streq(k, "tenants"))
                        r = parse_tenants(cfg, v, &err);
                else if (streq(k, "data"))
                        r = parse_data(cfg, v, &err);
                else if (streq(k, "cluster"))
                        r = parse_cluster(cfg, v, &err);
                else if (streq(k, "secrets"))
                        r = parse_secrets(cfg, v, &err);
                else if (streq(k, "server"))
                        r = parse_server(cfg, v, &err);
                else if (streq(k, "disk") && json_is_object(v) && json_object_get(v, "max_stored_bytes")) {
                        /* disk.max_stored_bytes is the daemon's (storage
                         * per tenant), the rest the collector's. */
                        r = want_stored_bytes(json_object_get(v, "max_stored_bytes"), "disk.max_stored_bytes",
                                              &cfg->max_stored_bytes, &err);
                        json_t *rest = json_copy(v);
                        json_object_del(rest, "max_stored_bytes");
                        if (r >= 0)
                                r = daemon_gc_config_parse(&cfg->retention, k, rest, &err);
                        json_decref(rest);
                } else if (streq(k, "retention") || streq(k, "disk"))
                        r = daemon_gc_config_parse(&cfg->retention, k, v, &err);
                else if (streq(k, "limits")) {
                        if (!json_is_object(v)) {
                                err = xstrdup("'limits' must be a mapping with 'defaults' and 'maxima'");
                                r = -EINVAL;
                        } else {
                                const char *k2;
                                json_t *v2;
                                json_object_foreach(v, k2, v2) {
                                        if (streq(k2, "defaults"))
                                                r = parse_limits(v2, "limits.defaults", &cfg->defaults, NULL, &err);
                                        else if (streq(k2, "maxima"))
                                                r = parse_limits(v2, "limits.maxima", &cfg->maxima, &cfg->max_retries,
                                                                 &err);
                                        else {
                                                err = xasprintf("unknown key 'limits.%s'", k2);
                                                r = -EINVAL;
                                        }
                                        if (r < 0)
                                                break;
                                }
                        }
                } else if (streq(k, "pool")) {
                        r = parse_pool(cfg, v, &err);
                } else if (streq(k, "index")) {
                        const StrvKey keys[] = {
                                { "url", NULL, &cfg->index_url },
                                { "extra_urls", &cfg->extra_index_urls, NULL },
                                { "find_links", &cfg->find_links, NULL },
                        };
                        r = parse_string_keys(v, "index", "'index' must be a mapping", keys, ELEMENTSOF(keys), &err);
                        if (r >= 0)
                                r = check_index_urls(cfg, &err);
                } else if (streq(k, "packages")) {
                        const StrvKey keys[] = {
                                { "allow", &cfg->allow_packages, NULL },
                                { "deny", &cfg->deny_packages, NULL },
                        };
                        r = parse_string_keys(v, "packages", "'packages' must be a mapping with 'allow' and/or 'deny'",
                                              keys, ELEMENTSOF(keys), &err);
                } else {
                        err = xasprintf("unknown key '%s'", k);
                        r = -EINVAL;
                }
                if (r < 0)
                        break;
        }
        json_decref(root);
        if (r < 0) {
                *ret_error = xasprintf("%s: %s", path, err ? err : strerror(-r));
                return r;
        }
        return 0;
}

int daemon_config_load(DaemonConfig *cfg, const char *path, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r;

        r = read_file(path, 1 << 20, &text, &len);
        if (r < 0) {
                *ret_error = xasprintf("%s: %s", path, strerror(-r));
                return r;
        }
        return daemon_config_parse(cfg, text, len, path, ret_error);
}

unsigned daemon_config_queued_per_tenant(const DaemonConfig *cfg) {
        assert(cfg);
        if (cfg->max_queued_per_tenant != UINT_MAX)
                return cfg->max_queued_per_tenant;
        return cfg->max_queued_runs / 2 + cfg->max_queued_runs % 2;
}

const DaemonToken *daemon_config_find_token(const DaemonConfig *cfg, const char *token) {
        uint8_t md[SHA256_DIGEST_SIZE];
        const DaemonToken *found = NULL;

        /* The shared one-shot digest (built-in below 64 KiB): EVP_Digest()
         * with EVP_sha256() fetched the algorithm from the provider on
         * every request (~5k instructions, docs/internals/performance-log.md "Invoke
         * path: round 7"). No branch of SHA-256 depends on the data. */
        sha256_digest(token, strlen(token), md);
        /* Compare against every entry so the time does not depend on which
         * one matches. */
        for (size_t i = 0; i < cfg->n_tokens; i++)
                if (CRYPTO_memcmp(md, cfg->tokens[i].sha256, 32) == 0 && cfg->tokens[i].has_token)
                        found = &cfg->tokens[i];
        return found;
}

const DaemonToken *daemon_config_find_token_memo(const DaemonConfig *cfg, const char *token, TokenMemo *memo) {
        TokenMemo seen = { .generation = cfg->generation, .len = strlen(token) };
        if (seen.len <= sizeof(seen.bytes)) {
                memcpy(seen.bytes, token, seen.len);
                /* Whole (bytes, length, generation) in one constant-time
                 * compare: no early exit on the first differing byte. */
                seen.index = memo->index;
                if (CRYPTO_memcmp(&seen, memo, sizeof(seen)) == 0 && memo->index < cfg->n_tokens)
                        return &cfg->tokens[memo->index];
        }
        const DaemonToken *t = daemon_config_find_token(cfg, token);
        if (t && seen.len <= sizeof(seen.bytes)) {
                seen.index = (size_t) (t - cfg->tokens);
                *memo = seen;
        }
        OPENSSL_cleanse(&seen, sizeof(seen));
        return t;
}

const DaemonToken *daemon_config_find_access_key(const DaemonConfig *cfg, const char *access_key_id) {
        for (size_t i = 0; i < cfg->n_tokens; i++)
                if (cfg->tokens[i].access_key_id && streq(cfg->tokens[i].access_key_id, access_key_id))
                        return &cfg->tokens[i];
        return NULL;
}

static const DaemonTenant *find_tenant(const DaemonConfig *cfg, const char *tenant) {
        for (size_t i = 0; i < cfg->n_tenants; i++)
                if (streq(cfg->tenants[i].name, tenant))
                        return &cfg->tenants[i];
        return NULL;
}

/* The lower of two caps where 0 means "none". */
static uint64_t cap_min(uint64_t a, uint64_t b) {
        if (!a)
                return b;
        if (!b)
                return a;
        return MIN(a, b);
}

bool daemon_limits_clamp(const DaemonConfig *cfg, const char *tenant, RunLimits *limits) {
        assert(cfg);
        assert(tenant);
        assert(limits);
        const DaemonTenant *t = find_tenant(cfg, tenant);
        bool lowered = false;
        struct {
                uint64_t *value, max;
        } f[] = {
                { &limits->timeout_ms, cap_min(cfg->maxima.timeout_ms, t ? t->maxima.timeout_ms : 0) },
                { &limits->memory_bytes, cap_min(cfg->maxima.memory_bytes, t ? t->maxima.memory_bytes : 0) },
                { &limits->max_procs, cap_min(cfg->maxima.max_procs, t ? t->maxima.max_procs : 0) },
                { &limits->max_output_bytes,
                  cap_min(cfg->maxima.max_output_bytes, t ? t->maxima.max_output_bytes : 0) },
        };
        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                if (f[i].max && (*f[i].value == 0 || *f[i].value > f[i].max)) {
                        *f[i].value = f[i].max;
                        lowered = true;
                }
        /* The ceiling no config raises only lowers: a 0 (a record of a
         * binary whose grant left the default to the engine) stays the
         * engine's default, not 7 days. */
        if (limits->timeout_ms > RUN_MAX_TIMEOUT_MS) {
                limits->timeout_ms = RUN_MAX_TIMEOUT_MS;
                lowered = true;
        }
        bool network_granted = t && t->network >= 0 ? t->network == 1 : cfg->maxima.network;
        if (limits->network && !network_granted) {
                limits->network = false;
                lowered = true;
        }
        return lowered;
}

int daemon_limits_grant(const DaemonConfig *cfg, const char *tenant, const RunLimits *asked, RunLimits *ret,
                        char **ret_error) {
        assert(cfg);
        assert(tenant);
        assert(asked);
        const DaemonTenant *t = find_tenant(cfg, tenant);
        RunLimits out = {};
        struct {
                const char *name;
                uint64_t asked, def, max;
                uint64_t *out;
                uint64_t global; /* limits.maxima's (0: none) */
        } f[] = {
                { "timeout_ms", asked->timeout_ms, cfg->defaults.timeout_ms ?: RUN_DEFAULT_TIMEOUT_MS,
                  cap_min(RUN_MAX_TIMEOUT_MS, cap_min(cfg->maxima.timeout_ms, t ? t->maxima.timeout_ms : 0)),
                  &out.timeout_ms, cap_min(RUN_MAX_TIMEOUT_MS, cfg->maxima.timeout_ms) },
                { "memory_bytes", asked->memory_bytes, cfg->defaults.memory_bytes ?: RUN_DEFAULT_MEMORY_BYTES,
                  cap_min(cfg->maxima.memory_bytes, t ? t->maxima.memory_bytes : 0), &out.memory_bytes,
                  cfg->maxima.memory_bytes },
                { "max_procs", asked->max_procs, cfg->defaults.max_procs ?: RUN_DEFAULT_MAX_PROCS,
                  cap_min(cfg->maxima.max_procs, t ? t->maxima.max_procs : 0), &out.max_procs, cfg->maxima.max_procs },
                { "max_output_bytes", asked->max_output_bytes,
                  cfg->defaults.max_output_bytes ?: RUN_DEFAULT_MAX_OUTPUT_BYTES,
                  cap_min(cfg->maxima.max_output_bytes, t ? t->maxima.max_output_bytes : 0), &out.max_output_bytes,
                  cfg->maxima.max_output_bytes },
        };
        for (size_t i = 0; i < ELEMENTSOF(f); i++) {
                if (f[i].out == &out.timeout_ms && f[i].asked > RUN_MAX_TIMEOUT_MS) {
                        /* No config grants more: the operator cannot help. */
                        *ret_error = xasprintf("limits.timeout_ms is %" PRIu64 ", above %llu (7 days), the longest "
                                               "a run may have",
                                               f[i].asked, (unsigned long long) RUN_MAX_TIMEOUT_MS);
                        return -EPERM;
                }
                if (f[i].max && f[i].asked > f[i].max) {
                        /* The key that binds: a tenant's maxima only lower
                         * the global ones, so asking for a higher
                         * `tenants.NAME.maxima` would not help when
                         * `limits.maxima` is the lower. */
                        bool tenant_binds = f[i].max != f[i].global;
                        *ret_error = tenant_binds ? xasprintf("limits.%s is %" PRIu64 ", above the %" PRIu64
                                                              " this tenant may have (ask the operator: config "
                                                              "'tenants.%s.maxima')",
                                                              f[i].name, f[i].asked, f[i].max, tenant)
                                                  : xasprintf("limits.%s is %" PRIu64 ", above the %" PRIu64
                                                              " this tenant may have (ask the operator: config "
                                                              "'limits.maxima')",
                                                              f[i].name, f[i].asked, f[i].max);
                        return -EPERM;
                }
                /* An absent limit is the default, lowered to the tenant's
                 * maximum: a smaller grant is never exceeded by defaulting.
                 * Filled here from the config of the moment, maximum or
                 * not: the engine's own defaults are those of the start,
                 * and a SIGHUP's `limits.defaults` would never reach it. */
                *f[i].out = f[i].asked ? f[i].asked : f[i].max ? MIN(f[i].def, f[i].max) : f[i].def;
        }
        bool network_granted = t && t->network >= 0 ? t->network == 1 : cfg->maxima.network;
        if (asked->network && !network_granted) {
                *ret_error = xasprintf("limits.network: this tenant may not give its runs network access (the "
                                       "operator grants it with config 'tenants.%s.network: true')",
                                       tenant);
                return -EPERM;
        }
        /* An explicit `network: false` lowers a default that grants it. */
        out.network = asked->network || (!asked->network_off && cfg->defaults.network && network_granted);
        *ret = out;
        return 0;
}

int daemon_retries_max(const DaemonConfig *cfg, const char *tenant, bool *ret_tenant_binds) {
        assert(cfg);
        assert(tenant);
        const DaemonTenant *t = find_tenant(cfg, tenant);
        int global = cfg->max_retries;
        bool tenant_binds = t && t->max_retries >= 0 && (global < 0 || t->max_retries < global);
        if (ret_tenant_binds)
                *ret_tenant_binds = tenant_binds;
        return tenant_binds ? t->max_retries : global;
}

int daemon_retries_grant(const DaemonConfig *cfg, const char *tenant, int asked, int *ret_max_attempts,
                         char **ret_error) {
        assert(cfg);
        assert(tenant);
        assert(ret_max_attempts);
        bool tenant_binds;
        int max = daemon_retries_max(cfg, tenant, &tenant_binds);
        if (max >= 0 && asked > max) {
                /* The key that binds, as daemon_limits_grant() names it. */
                *ret_error = tenant_binds ? xasprintf("retries is %d, above the %d this tenant may have (ask the "
                                                      "operator: config 'tenants.%s.maxima')",
                                                      asked, max, tenant)
                                          : xasprintf("retries is %d, above the %d this tenant may have (ask the "
                                                      "operator: config 'limits.maxima')",
                                                      asked, max);
                return -EPERM;
        }
        /* None asked: server.max_attempts, lowered to the grant. */
        *ret_max_attempts = asked >= 0 ? asked + 1
                            : max >= 0 ? MIN((int) cfg->max_attempts, max + 1)
                                       : (int) cfg->max_attempts;
        return 0;
}

int daemon_retries_clamp(const DaemonConfig *cfg, const char *tenant, int max_attempts) {
        assert(cfg);
        assert(tenant);
        int max = daemon_retries_max(cfg, tenant, NULL);
        int want = max_attempts > 0 ? max_attempts : (int) cfg->max_attempts;
        return max >= 0 ? MIN(want, max + 1) : want;
}

uint64_t daemon_stored_cap(const DaemonConfig *cfg, const char *tenant, const char **ret_key) {
        assert(cfg && tenant);
        const DaemonTenant *t = find_tenant(cfg, tenant);
        const char *key;
        uint64_t cap;
        if (t && t->max_stored_bytes) {
                key = "tenants.NAME.max_stored_bytes";
                cap = t->max_stored_bytes;
        } else if (cfg->max_stored_bytes) {
                key = "disk.max_stored_bytes";
                cap = cfg->max_stored_bytes;
        } else {
                /* The data catalog's older knob, read as it reads it. */
                bool set = false;
                cap = data_tenant_max_bytes_from_env(&set);
                key = set ? "PYSPRINTER_DATA_TENANT_MAX_BYTES" : "disk.max_stored_bytes, default";
        }
        if (ret_key)
                *ret_key = key;
        return cap;
}
