/* The one config checker: startup, SIGHUP reload and `pysprinterd
 * --check-config FILE` (docs/operations.md "Checking a config").
 *
 * daemon_config_load() does the typed walk and names the bad key
 * ('server.max_body_bytes', 'tokens[1].token'); this file turns that name
 * back into the line it sits on, from libyaml's node marks, and adds the
 * checks that need the machine (the data directory). */
#include <assert.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <yaml.h>

#include "daemon.h"

/* The node at a key path like "tokens[1].token" or "tenants.a.maxima.x"
 * in doc: the 1-based line of the deepest part of the path that exists
 * (the key's line for a mapping entry). 0 when nothing matches. */
static size_t line_of(yaml_document_t *doc, const char *keypath) {
        yaml_node_t *node = yaml_document_get_root_node(doc);
        size_t line = 0;
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
                yaml_node_t *next = NULL;
                if (*part && node->type == YAML_MAPPING_NODE) {
                        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
                             p++) {
                                yaml_node_t *k = yaml_document_get_node(doc, p->key);
                                if (k && k->type == YAML_SCALAR_NODE && streq((const char *) k->data.scalar.value, part)) {
                                        line = k->start_mark.line + 1;
                                        next = yaml_document_get_node(doc, p->value);
                                }
                        }
                }
                if (next && index >= 0) {
                        if (next->type != YAML_SEQUENCE_NODE ||
                            index >= next->data.sequence.items.top - next->data.sequence.items.start)
                                return line;
                        next = yaml_document_get_node(doc, next->data.sequence.items.start[index]);
                        if (next)
                                line = next->start_mark.line + 1;
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

static size_t line_in_file(const char *text, size_t len, const char *keypath) {
        yaml_parser_t parser;
        yaml_document_t doc;
        size_t line = 0;
        if (!keypath || !yaml_parser_initialize(&parser))
                return 0;
        yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
        if (yaml_parser_load(&parser, &doc)) {
                line = line_of(&doc, keypath);
                yaml_document_delete(&doc);
        }
        yaml_parser_delete(&parser);
        return line;
}

/* "PATH: msg" -> "PATH:LINE: msg" when the key the message names is found;
 * messages that already carry a line (YAML syntax) are kept. */
static char *with_line(const char *path, const char *text, size_t len, const char *msg) {
        _cleanup_free_ char *prefix = xasprintf("%s: ", path);
        const char *body = startswith(msg, prefix) ? msg + strlen(prefix) : msg;
        if (!startswith(msg, prefix)) /* "PATH:N: …" already, or no path at all */
                return xstrdup(msg);
        _cleanup_free_ char *key = message_key(body);
        size_t line = line_in_file(text, len, key);
        return line ? xasprintf("%s:%zu: %s", path, line, body) : xasprintf("%s:1: %s", path, body);
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
                        size_t line = line_in_file(text, len, "data_dir");
                        *ret_error = xasprintf("%s:%zu: 'data_dir' %s %s", path, line ?: 1, cfg->data_dir, why);
                        return r;
                }
        }
        return 0;
}
