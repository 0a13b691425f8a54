/* The daemon's YAML configuration. libyaml builds a node tree, which is turned
 * into jansson values so one typed walk checks every key and names the bad
 * one. Plain scalars that look like integers or booleans become those;
 * quoted scalars stay strings. */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <yaml.h>

#include "daemon.h"

void sha256_hex(const void *data, size_t n, char out[static 65]) {
        uint8_t md[32];
        unsigned mdlen = 0;
        EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL);
        for (size_t i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void daemon_config_init(DaemonConfig *cfg) {
        *cfg = (DaemonConfig) {
                .listen = xstrdup("127.0.0.1:8080"),
                .max_body_bytes = 12U << 20,
                .max_json_depth = 64,
                .max_json_values = 1000000,
                .max_concurrent_runs = 8,
                .max_concurrent_per_tenant = 4,
                .max_queued_runs = 256,
                .max_connections = 1024,
                .read_timeout_s = 30,
                .max_wait_s = 3600,
                .max_attempts = 3,
                .metrics_public = true,
                .sandbox = SANDBOX_MODE_FULL,
        };
}

void daemon_config_done(DaemonConfig *cfg) {
        free(cfg->listen);
        free(cfg->data_dir);
        for (size_t i = 0; i < cfg->n_tokens; i++)
                free(cfg->tokens[i].tenant);
        free(cfg->tokens);
        free(cfg->index_url);
        strv_free(cfg->extra_index_urls);
        strv_free(cfg->find_links);
        strv_free(cfg->allow_packages);
        strv_free(cfg->deny_packages);
        *cfg = (DaemonConfig) {};
}

static json_t *yaml_node_to_json(yaml_document_t *doc, yaml_node_t *node, int depth) {
        if (!node || depth > 32)
                return NULL;
        switch (node->type) {
        case YAML_SCALAR_NODE: {
                const char *v = (const char *) node->data.scalar.value;
                size_t n = node->data.scalar.length;
                if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
                        if (n == 0 || streq(v, "~") || streq(v, "null"))
                                return json_null();
                        if (streq(v, "true") || streq(v, "yes") || streq(v, "on"))
                                return json_true();
                        if (streq(v, "false") || streq(v, "no") || streq(v, "off"))
                                return json_false();
                        char *end;
                        errno = 0;
                        long long x = strtoll(v, &end, 10);
                        if (errno == 0 && end != v && *end == 0)
                                return json_integer(x);
                }
                return json_stringn(v, n);
        }
        case YAML_SEQUENCE_NODE: {
                json_t *a = json_array();
                for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
                        json_t *c = yaml_node_to_json(doc, yaml_document_get_node(doc, *it), depth + 1);
                        if (!c) {
                                json_decref(a);
                                return NULL;
                        }
                        json_array_append_new(a, c);
                }
                return a;
        }
        case YAML_MAPPING_NODE: {
                json_t *o = json_object();
                for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
                        yaml_node_t *k = yaml_document_get_node(doc, p->key);
                        if (!k || k->type != YAML_SCALAR_NODE) {
                                json_decref(o);
                                return NULL;
                        }
                        json_t *c = yaml_node_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1);
                        if (!c) {
                                json_decref(o);
                                return NULL;
                        }
                        json_object_set_new(o, (const char *) k->data.scalar.value, c);
                }
                return o;
        }
        case YAML_NO_NODE:
        default:
                return NULL;
        }
}

static int want_uint(json_t *v, const char *key, uint64_t *ret, char **ret_error) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
                *ret_error = xasprintf("'%s' must be a non-negative integer", key);
                return -EINVAL;
        }
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int want_string(json_t *v, const char *key, char **ret, char **ret_error) {
        if (!json_is_string(v)) {
                *ret_error = xasprintf("'%s' must be a string", key);
                return -EINVAL;
        }
        free(*ret);
        *ret = xstrdup(json_string_value(v));
        return 0;
}

static int want_strv(json_t *v, const char *key, char ***ret, char **ret_error) {
        char **l = NULL;
        size_t i;
        json_t *x;

        if (!json_is_array(v)) {
                *ret_error = xasprintf("'%s' must be a list of strings", key);
                return -EINVAL;
        }
        json_array_foreach(v, i, x) {
                if (!json_is_string(x)) {
                        strv_free(l);
                        *ret_error = xasprintf("'%s[%zu]' must be a string", key, i);
                        return -EINVAL;
                }
                l = strv_append(l, json_string_value(x));
        }
        strv_free(*ret);
        *ret = l ? l : xcalloc(1, sizeof(char *));
        return 0;
}

static int parse_limits(json_t *o, const char *key, RunLimits *l, char **ret_error) {
        const char *k;
        json_t *v;
        int r;

        if (!json_is_object(o)) {
                *ret_error = xasprintf("'%s' must be a mapping", key);
                return -EINVAL;
        }
        json_object_foreach(o, k, v) {
                _cleanup_free_ char *full = xasprintf("%s.%s", key, k);
                if (streq(k, "timeout_ms"))
                        r = want_uint(v, full, &l->timeout_ms, ret_error);
                else if (streq(k, "memory_bytes"))
                        r = want_uint(v, full, &l->memory_bytes, ret_error);
                else if (streq(k, "max_procs"))
                        r = want_uint(v, full, &l->max_procs, ret_error);
                else if (streq(k, "max_output_bytes"))
                        r = want_uint(v, full, &l->max_output_bytes, ret_error);
                else if (streq(k, "network")) {
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

static int parse_tokens(DaemonConfig *cfg, json_t *a, char **ret_error) {
        size_t i;
        json_t *t;

        if (!json_is_array(a)) {
                *ret_error = xstrdup("'tokens' must be a list of {tenant, token|token_sha256, role}");
                return -EINVAL;
        }
        for (size_t j = 0; j < cfg->n_tokens; j++)
                free(cfg->tokens[j].tenant);
        free(cfg->tokens);
        cfg->tokens = xcalloc(json_array_size(a) + 1, sizeof(DaemonToken));
        cfg->n_tokens = 0;

        json_array_foreach(a, i, t) {
                DaemonToken tok = {};
                const char *k;
                json_t *v;
                bool have = false;

                if (!json_is_object(t)) {
                        *ret_error = xasprintf("'tokens[%zu]' must be a mapping", i);
                        return -EINVAL;
                }
                json_object_foreach(t, k, v) {
                        if (!json_is_string(v)) {
                                *ret_error = xasprintf("'tokens[%zu].%s' must be a string", i, k);
                                free(tok.tenant);
                                return -EINVAL;
                        }
                        const char *s = json_string_value(v);
                        if (streq(k, "tenant")) {
                                free(tok.tenant);
                                tok.tenant = xstrdup(s);
                        } else if (streq(k, "token")) {
                                if (strlen(s) < 16) {
                                        *ret_error = xasprintf("'tokens[%zu].token' must be at least 16 characters", i);
                                        free(tok.tenant);
                                        return -EINVAL;
                                }
                                uint8_t md[32];
                                unsigned mdlen = 0;
                                EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL);
                                memcpy(tok.sha256, md, 32);
                                have = true;
                        } else if (streq(k, "token_sha256")) {
                                if (hex_decode32(s, tok.sha256) < 0) {
                                        *ret_error = xasprintf("'tokens[%zu].token_sha256' must be 64 hex digits", i);
                                        free(tok.tenant);
                                        return -EINVAL;
                                }
                                have = true;
                        } else if (streq(k, "role")) {
                                if (streq(s, "user"))
                                        tok.role = TOKEN_ROLE_USER;
                                else if (streq(s, "readonly"))
                                        tok.role = TOKEN_ROLE_READONLY;
                                else if (streq(s, "admin"))
                                        tok.role = TOKEN_ROLE_ADMIN;
                                else {
                                        *ret_error = xasprintf("'tokens[%zu].role' must be user, readonly or admin", i);
                                        free(tok.tenant);
                                        return -EINVAL;
                                }
                        } else {
                                *ret_error = xasprintf("unknown key 'tokens[%zu].%s'", i, k);
                                free(tok.tenant);
                                return -EINVAL;
                        }
                }
                if (!have || !tok.tenant || !function_name_is_valid(tok.tenant)) {
                        *ret_error = xasprintf("'tokens[%zu]' needs 'tenant' ([A-Za-z0-9_-]{1,64}) and 'token' or 'token_sha256'", i);
                        free(tok.tenant);
                        return -EINVAL;
                }
                cfg->tokens[cfg->n_tokens++] = tok;
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
                        { "max_connections", &cfg->max_connections, NULL, 4, 100000 },
                        { "read_timeout_s", &cfg->read_timeout_s, NULL, 1, 86400 },
                        { "max_wait_s", &cfg->max_wait_s, NULL, 1, 86400 * 7 },
                        { "max_attempts", &cfg->max_attempts, NULL, 1, RUN_MAX_RETRIES + 1 },
                };
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                        if (!streq(t[i].name, k))
                                continue;
                        found = true;
                        r = want_uint(v, full, &x, ret_error);
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

/* pool: spares, memory_budget_mb, worker_idle_s, instance_ttl_s */
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
                int r = want_uint(v, full, &x, ret_error);
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
                else {
                        *ret_error = xasprintf("unknown key or value out of range: '%s'", full);
                        return -EINVAL;
                }
        }
        return 0;
}

int daemon_config_parse(DaemonConfig *cfg, const char *text, size_t len, const char *path, char **ret_error) {
        yaml_parser_t parser;
        yaml_document_t doc;
        json_t *root = NULL;
        _cleanup_free_ char *err = NULL;
        const char *k;
        json_t *v;
        int r = 0;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
        if (!yaml_parser_load(&parser, &doc)) {
                *ret_error = xasprintf("%s:%zu: %s", path, parser.problem_mark.line + 1,
                                       parser.problem ? parser.problem : "YAML syntax error");
                yaml_parser_delete(&parser);
                return -EINVAL;
        }
        yaml_node_t *top = yaml_document_get_root_node(&doc);
        if (top)
                root = yaml_node_to_json(&doc, top, 0);
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        if (!top) /* empty file: all defaults */
                return 0;
        if (!json_is_object(root)) {
                json_decref(root);
                *ret_error = xasprintf("%s: the top level must be a mapping", path);
                return -EINVAL;
        }

        json_object_foreach(root, k, v) {
                if (streq(k, "listen"))
                        r = want_string(v, k, &cfg->listen, &err);
                else if (streq(k, "data_dir"))
                        r = want_string(v, k, &cfg->data_dir, &err);
                else if (streq(k, "tokens"))
                        r = parse_tokens(cfg, v, &err);
                else if (streq(k, "server"))
                        r = parse_server(cfg, v, &err);
                else if (streq(k, "limits")) {
                        if (!json_is_object(v)) {
                                err = xstrdup("'limits' must be a mapping with 'defaults' and 'maxima'");
                                r = -EINVAL;
                        } else {
                                const char *k2;
                                json_t *v2;
                                json_object_foreach(v, k2, v2) {
                                        if (streq(k2, "defaults"))
                                                r = parse_limits(v2, "limits.defaults", &cfg->defaults, &err);
                                        else if (streq(k2, "maxima"))
                                                r = parse_limits(v2, "limits.maxima", &cfg->maxima, &err);
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
                        const char *k2;
                        json_t *v2;
                        if (!json_is_object(v)) {
                                err = xstrdup("'index' must be a mapping");
                                r = -EINVAL;
                        } else
                                json_object_foreach(v, k2, v2) {
                                        if (streq(k2, "url"))
                                                r = want_string(v2, "index.url", &cfg->index_url, &err);
                                        else if (streq(k2, "extra_urls"))
                                                r = want_strv(v2, "index.extra_urls", &cfg->extra_index_urls, &err);
                                        else if (streq(k2, "find_links"))
                                                r = want_strv(v2, "index.find_links", &cfg->find_links, &err);
                                        else {
                                                err = xasprintf("unknown key 'index.%s'", k2);
                                                r = -EINVAL;
                                        }
                                        if (r < 0)
                                                break;
                                }
                } else if (streq(k, "packages")) {
                        const char *k2;
                        json_t *v2;
                        if (!json_is_object(v)) {
                                err = xstrdup("'packages' must be a mapping with 'allow' and/or 'deny'");
                                r = -EINVAL;
                        } else
                                json_object_foreach(v, k2, v2) {
                                        if (streq(k2, "allow"))
                                                r = want_strv(v2, "packages.allow", &cfg->allow_packages, &err);
                                        else if (streq(k2, "deny"))
                                                r = want_strv(v2, "packages.deny", &cfg->deny_packages, &err);
                                        else {
                                                err = xasprintf("unknown key 'packages.%s'", k2);
                                                r = -EINVAL;
                                        }
                                        if (r < 0)
                                                break;
                                }
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

const DaemonToken *daemon_config_find_token(const DaemonConfig *cfg, const char *token) {
        uint8_t md[32];
        unsigned mdlen = 0;
        const DaemonToken *found = NULL;

        EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL);
        /* Compare against every entry so the time does not depend on which
         * one matches. */
        for (size_t i = 0; i < cfg->n_tokens; i++)
                if (CRYPTO_memcmp(md, cfg->tokens[i].sha256, 32) == 0)
                        found = &cfg->tokens[i];
        return found;
}
