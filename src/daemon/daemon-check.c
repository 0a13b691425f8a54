/* The one config checker: startup, SIGHUP reload and `pysprinterd
 * --check-config FILE` (docs/operations.md "Checking a config").
 *
 * daemon_config_load() does the typed walk and names the bad key
 * ('server.max_body_bytes', 'tokens[1].token'); this file turns that name
 * back into the line it sits on, with src/shared's YAML walker (the same
 * reader the config was loaded with: keys are unique in it), and adds the
 * checks that need the machine (the data directory). */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "daemon.h"

/* The node at a key path like "tokens[1].token" or "tenants.a.maxima.x"
 * in doc: the 1-based line of the deepest part of the path that exists
 * (the key's line for a mapping entry). 0 when nothing matches. */
static unsigned line_of(YamlDoc *doc, const char *keypath) {
        const YamlNode *node = yaml_doc_root(doc);
        unsigned line = 0;
        _cleanup_free_ char *copy = xstrdup(keypath);
        for (char *part = copy, *dot; part && node; part = dot ? dot + 1 : NULL) {
                dot = strchr(part, '.');
                if (dot)
                        *dot = 0;
                char *bracket = strchr(part, '[');
                long index = -1;
                if (bracket) {
                        index = strtol(bracket + 1, NULL, 10);
                        *bracket = 0;
                }
                const YamlNode *next = NULL;
                if (*part && yaml_node_kind(node) == YAML_KIND_MAPPING)
                        for (size_t i = 0; !next && i < yaml_node_count(node); i++) {
                                const YamlNode *k = yaml_node_key(doc, node, i);
                                const char *name = yaml_node_scalar(k);
                                if (name && streq(name, part)) {
                                        line = yaml_node_line(k);
                                        next = yaml_node_value(doc, node, i);
                                }
                        }
                if (next && index >= 0) {
                        if (yaml_node_kind(next) != YAML_KIND_SEQUENCE || (size_t) index >= yaml_node_count(next))
                                return line;
                        next = yaml_node_item(doc, next, (size_t) index);
                        if (next)
                                line = yaml_node_line(next);
                }
                node = next;
        }
        return line;
}

/* The first 'quoted' key path of a loader message. */
static char *message_key(const char *msg) {
        const char *a = strchr(msg, '\'');
        const char *b = a ? strchr(a + 1, '\'') : NULL;
        return b && b > a + 1 ? xstrndup(a + 1, (size_t) (b - a - 1)) : NULL;
}

static unsigned line_in_file(const char *text, size_t len, const char *path, const char *keypath) {
        _cleanup_(yaml_doc_freep) YamlDoc *doc = NULL;
        _cleanup_free_ char *err = NULL;
        if (!keypath || yaml_doc_load(text, len, path, 0, &doc, &err) < 0)
                return 0;
        return line_of(doc, keypath);
}

/* "PATH: msg" -> "PATH:LINE: msg" when the key the message names is found;
 * messages that already carry a line (YAML syntax) are kept. */
static char *with_line(const char *path, const char *text, size_t len, const char *msg) {
        _cleanup_free_ char *prefix = xasprintf("%s: ", path);
        const char *body = startswith(msg, prefix) ? msg + strlen(prefix) : msg;
        if (!startswith(msg, prefix)) /* "PATH:N: …" already, or no path at all */
                return xstrdup(msg);
        _cleanup_free_ char *key = message_key(body);
        unsigned line = line_in_file(text, len, path, key);
        return xasprintf("%s:%u: %s", path, line ?: 1, body);
}

/* The data directory must be usable by the daemon: an existing directory
 * it can read, write and enter, or a path whose nearest existing parent
 * lets it create one. */
static int check_data_dir(const char *dir, char **ret_why) {
        struct stat st;
        if (stat(dir, &st) == 0) {
                if (!S_ISDIR(st.st_mode)) {
                        *ret_why = xstrdup("is not a directory");
                        return -ENOTDIR;
                }
                if (access(dir, R_OK | W_OK | X_OK) < 0) {
                        int r = -errno;
                        *ret_why = xasprintf("is not readable and writable by this user: %s", strerror(-r));
                        return r;
                }
                return 0;
        }
        if (errno != ENOENT) {
                int r = -errno;
                *ret_why = xasprintf("cannot be read: %s", strerror(-r));
                return r;
        }
        _cleanup_free_ char *parent = xstrdup(dir);
        for (;;) {
                char *slash = strrchr(parent, '/');
                if (!slash || slash == parent) {
                        parent[slash ? 1 : 0] = 0;
                        break;
                }
                *slash = 0;
                if (stat(parent, &st) == 0)
                        break;
        }
        const char *p = *parent ? parent : ".";
        if (access(p, W_OK | X_OK) < 0) {
                int r = -errno;
                *ret_why = xasprintf("does not exist and cannot be created under %s: %s", p, strerror(-r));
                return r;
        }
        return 0;
}

/* A tenant's maxima only lower the global ones (daemon_config_grant()):
 * one above limits.maxima is capped to it without a word where the
 * operator meant to grant more. A warning for each. */
static void warn_tenant_maxima(DaemonConfig *cfg, const char *path, const char *text, size_t len) {
        for (size_t i = 0; i < cfg->n_tenants; i++) {
                const DaemonTenant *t = &cfg->tenants[i];
                const struct {
                        const char *key;
                        uint64_t tenant, global;
                } v[] = {
                        { "timeout_ms", t->maxima.timeout_ms, cfg->maxima.timeout_ms },
                        { "memory_bytes", t->maxima.memory_bytes, cfg->maxima.memory_bytes },
                        { "max_procs", t->maxima.max_procs, cfg->maxima.max_procs },
                        { "max_output_bytes", t->maxima.max_output_bytes, cfg->maxima.max_output_bytes },
                };
                for (size_t j = 0; j < ELEMENTSOF(v); j++) {
                        if (!v[j].global || v[j].tenant <= v[j].global)
                                continue;
                        _cleanup_free_ char *key = xasprintf("tenants.%s.maxima.%s", t->name, v[j].key);
                        unsigned line = line_in_file(text, len, path, key);
                        cfg->warnings = strv_append_take(
                                cfg->warnings,
                                xasprintf("%s:%u: '%s' (%" PRIu64 ") is above 'limits.maxima.%s' (%" PRIu64
                                          "): a tenant's maxima only lower the global ones, so %s's runs get at "
                                          "most %" PRIu64 "; raise 'limits.maxima.%s' to grant more",
                                          path, line ?: 1, key, v[j].tenant, v[j].key, v[j].global, t->name,
                                          v[j].global, v[j].key));
                }
        }
}

/* retries: a tenant's cap above the global one is capped to it (as
 * warn_tenant_maxima()), and server.max_attempts is only the default, so
 * one above the cap's attempts is lowered to it without a word. */
static void warn_retries(DaemonConfig *cfg, const char *path, const char *text, size_t len) {
        for (size_t i = 0; i < cfg->n_tenants; i++) {
                const DaemonTenant *t = &cfg->tenants[i];
                if (cfg->max_retries < 0 || t->max_retries <= cfg->max_retries)
                        continue;
                _cleanup_free_ char *key = xasprintf("tenants.%s.maxima.retries", t->name);
                unsigned line = line_in_file(text, len, path, key);
                cfg->warnings = strv_append_take(
                        cfg->warnings,
                        xasprintf("%s:%u: '%s' (%d) is above 'limits.maxima.retries' (%d): a tenant's maxima only "
                                  "lower the global ones, so %s's runs get at most %d; raise "
                                  "'limits.maxima.retries' to grant more",
                                  path, line ?: 1, key, t->max_retries, cfg->max_retries, t->name, cfg->max_retries));
        }
        if (cfg->max_retries >= 0 && (int) cfg->max_attempts - 1 > cfg->max_retries) {
                unsigned line = line_in_file(text, len, path, "server.max_attempts");
                cfg->warnings = strv_append_take(
                        cfg->warnings,
                        xasprintf("%s:%u: 'server.max_attempts' (%u) is more than 1 + 'limits.maxima.retries' "
                                  "(%d): it is only the default, lowered to the grant, so runs get at most %d "
                                  "attempts",
                                  path, line ?: 1, cfg->max_attempts, cfg->max_retries, cfg->max_retries + 1));
        }
}

int daemon_config_check_key(const DaemonConfig *cfg, const char *path, char **ret_error) {
        assert(cfg && path && ret_error);
        if (!cfg->secrets_key_file)
                return 0;
        _cleanup_free_ char *key = seal_key_path(cfg->secrets_key_file), *why = NULL, *text = NULL;
        uint8_t k[SEAL_KEY_SIZE];
        int r = seal_key_read(key, k, &why);
        explicit_bzero(k, sizeof k);
        if (r >= 0)
                return 0;
        size_t len = 0;
        unsigned line = read_file(path, 1 << 20, &text, &len) >= 0 ? line_in_file(text, len, path, "secrets.key_file")
                                                                   : 0;
        *ret_error = xasprintf("%s:%u: 'secrets.key_file': %s (a start refuses it%s)", path, line ?: 1, why,
                               r == -ENOENT ? "; it is never created: copy the key every node uses there" : "");
        return r;
}

int daemon_config_check(DaemonConfig *cfg, const char *path, char **ret_error) {
        assert(cfg && path && ret_error);
        _cleanup_free_ char *text = NULL, *err = NULL;
        size_t len = 0;
        int r = read_file(path, 1 << 20, &text, &len);
        if (r < 0) {
                *ret_error = xasprintf("%s: %s", path, strerror(-r));
                return r;
        }
        r = daemon_config_parse(cfg, text, len, path, &err);
        if (r < 0) {
                *ret_error = with_line(path, text, len, err ? err : strerror(-r));
                return r;
        }
        if (cfg->data_dir) {
                _cleanup_free_ char *why = NULL;
                r = check_data_dir(cfg->data_dir, &why);
                if (r < 0) {
                        unsigned line = line_in_file(text, len, path, "data_dir");
                        *ret_error = xasprintf("%s:%u: 'data_dir' %s %s", path, line ?: 1, cfg->data_dir, why);
                        return r;
                }
        }
        warn_tenant_maxima(cfg, path, text, len);
        warn_retries(cfg, path, text, len);
        return 0;
}
