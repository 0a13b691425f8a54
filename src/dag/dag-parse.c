/* Pipeline files: YAML (src/shared's walker and its one scalar rule) ->
 * Dag, the reference grammar, dependency edges, cycle detection. Everything
 * a user wrote is checked here, with FILE:LINE:COL in the message, before
 * anything runs. */

#include <assert.h>

#include "dag-internal.h"

#define MAX_JSON_NODES 1000000 /* alias expansion ("billion laughs") cap */
#define MAX_REF_DEPTH 32

static const char *const state_names[_DAG_TASK_STATE_MAX] = {
        [DAG_TASK_PENDING] = "pending",     [DAG_TASK_RUNNING] = "running", [DAG_TASK_SUCCEEDED] = "succeeded",
        [DAG_TASK_CACHED] = "cached",       [DAG_TASK_FAILED] = "failed",   [DAG_TASK_SKIPPED] = "skipped",
        [DAG_TASK_CANCELLED] = "cancelled",
};

const char *dag_task_state_to_string(DagTaskState s) {
        return s >= 0 && s < _DAG_TASK_STATE_MAX ? state_names[s] : "unknown";
}

DagTaskState dag_task_state_from_string(const char *s) {
        for (int i = 0; i < _DAG_TASK_STATE_MAX; i++)
                if (s && streq(s, state_names[i]))
                        return (DagTaskState) i;
        return DAG_TASK_PENDING;
}

bool dag_task_state_is_done(DagTaskState s) {
        return s != DAG_TASK_PENDING && s != DAG_TASK_RUNNING;
}

/* ---- scalars, durations, sizes ---- */

json_t *dag_scalar_value(const char *s) {
        /* JSON first for --param x='[1, 2]' (a plain YAML scalar cannot
         * start with '[' or '{', so the rule never sees these). */
        if (*s == '[' || *s == '{') {
                json_t *v = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (v)
                        return v;
        }
        json_t *v;
        _cleanup_free_ char *ignored = NULL;
        /* A command line cannot quote: what JSON cannot hold (.inf) stays
         * the text the user typed. */
        if (yaml_scalar_to_json(s, strlen(s), true, &v, &ignored) < 0)
                return json_string(s);
        return v;
}

int dag_parse_duration_ms(const char *s, uint64_t *ret) {
        /* 0 is a valid backoff. */
        return parse_duration_ms(s, true, ret);
}

int dag_parse_size(const char *s, uint64_t *ret) {
        return parse_size(s, ret);
}

/* ---- references ---- */

void ref_done(Ref *r) {
        free(r->task);
        strv_free(r->path);
        *r = (Ref) {};
}

static bool ident_ok(const char *s, size_t n) {
        if (n == 0 || n > 128)
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];
                bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                          (i > 0 && ((ch >= '0' && ch <= '9') || ch == '-'));
                if (!ok)
                        return false;
        }
        return true;
}

/* Parses the inside of ${…}. */
static int ref_parse(const char *s, size_t n, Ref *ret, char **ret_error) {
        _cleanup_free_ char *body = xstrndup(s, n);
        Ref r = {};
        char *p = body;
        char *dot = strchr(p, '.');
        size_t first = dot ? (size_t) (dot - p) : strlen(p);
        if (!ident_ok(p, first)) {
                *ret_error = xasprintf("'${%s}' is not a reference (${task}, ${task.key} or ${params.name})", body);
                return -EINVAL;
        }
        r.task = xstrndup(p, first);
        p = dot ? dot + 1 : NULL;
        int depth = 0;
        while (p) {
                dot = strchr(p, '.');
                size_t k = dot ? (size_t) (dot - p) : strlen(p);
                if (k == 0 || ++depth > MAX_REF_DEPTH) {
                        *ret_error = xasprintf("'${%s}' has an empty or too deep key path", body);
                        ref_done(&r);
                        return -EINVAL;
                }
                _cleanup_free_ char *key = xstrndup(p, k);
                r.path = strv_append(r.path, key);
                p = dot ? dot + 1 : NULL;
        }
        if (streq(r.task, "params")) {
                if (!r.path || r.path[1]) {
                        *ret_error = xasprintf("'${%s}': a parameter is referenced as ${params.NAME}", body);
                        ref_done(&r);
                        return -EINVAL;
                }
                free(r.task);
                r.task = xstrdup(r.path[0]);
                strv_free(r.path);
                r.path = NULL;
                r.param = true;
        }
        *ret = r;
        return 0;
}

bool template_is_whole_ref(const char *s) {
        size_t n = strlen(s);
        return n > 3 && startswith(s, "${") && s[n - 1] == '}' && !memchr(s + 2, '}', n - 3) &&
               !memchr(s + 2, '$', n - 3);
}

/* Scans a string: calls fn for each reference; when out is given, builds
 * the substituted string (embedded references stringified). */
static int scan_string(const char *s, int (*fn)(const Ref *r, void *ud), void *ud,
                       json_t *(*lookup)(const Ref *r, void *ud, char **ret_error), Buf *out, char **ret_error) {
        const char *p = s;
        while (*p) {
                if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
                        if (out)
                                buf_appends(out, "${");
                        p += 3;
                        continue;
                }
                if (p[0] == '$' && p[1] == '{') {
                        const char *close = strchr(p + 2, '}');
                        if (!close) {
                                *ret_error = xasprintf("unterminated reference in '%s' (write $${ for a literal ${)", s);
                                return -EINVAL;
                        }
                        Ref r = {};
                        int k = ref_parse(p + 2, (size_t) (close - p - 2), &r, ret_error);
                        if (k < 0)
                                return k;
                        if (fn) {
                                k = fn(&r, ud);
                                if (k < 0) {
                                        ref_done(&r);
                                        return k;
                                }
                        }
                        if (out) {
                                json_t *v = lookup(&r, ud, ret_error);
                                if (!v) {
                                        ref_done(&r);
                                        return -ENOENT;
                                }
                                if (json_is_string(v))
                                        buf_append(out, json_string_value(v), json_string_length(v));
                                else {
                                        _cleanup_free_ char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                                        buf_appends(out, t ?: "null");
                                }
                        }
                        ref_done(&r);
                        p = close + 1;
                        continue;
                }
                if (out)
                        buf_append(out, p, 1);
                p++;
        }
        return 0;
}

int template_walk(json_t *v, int (*fn)(const Ref *r, void *ud), void *ud, char **ret_error) {
        if (json_is_string(v))
                return scan_string(json_string_value(v), fn, ud, NULL, NULL, ret_error);
        if (json_is_array(v)) {
                size_t i;
                json_t *item;
                json_array_foreach(v, i, item) {
                        int r = template_walk(item, fn, ud, ret_error);
                        if (r < 0)
                                return r;
                }
        } else if (json_is_object(v)) {
                const char *k;
                json_t *item;
                json_object_foreach(v, k, item) {
                        int r = template_walk(item, fn, ud, ret_error);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

json_t *template_subst(json_t *v, json_t *(*lookup)(const Ref *r, void *ud, char **ret_error), void *ud,
                       char **ret_error) {
        if (json_is_string(v)) {
                const char *s = json_string_value(v);
                if (template_is_whole_ref(s)) {
                        Ref r = {};
                        if (ref_parse(s + 2, strlen(s) - 3, &r, ret_error) < 0)
                                return NULL;
                        json_t *got = lookup(&r, ud, ret_error);
                        ref_done(&r);
                        return got ? json_deep_copy(got) : NULL;
                }
                if (!strstr(s, "${"))
                        return json_incref(v);
                Buf b;
                buf_init(&b, RUN_MAX_ARGS_BYTES);
                if (scan_string(s, NULL, ud, lookup, &b, ret_error) < 0) {
                        buf_free(&b);
                        return NULL;
                }
                json_t *out = json_stringn(b.data ?: "", b.len);
                buf_free(&b);
                return out;
        }
        if (json_is_array(v)) {
                json_t *out = json_array();
                size_t i;
                json_t *item;
                json_array_foreach(v, i, item) {
                        json_t *s = template_subst(item, lookup, ud, ret_error);
                        if (!s) {
                                json_decref(out);
                                return NULL;
                        }
                        json_array_append_new(out, s);
                }
                return out;
        }
        if (json_is_object(v)) {
                json_t *out = json_object();
                const char *k;
                json_t *item;
                json_object_foreach(v, k, item) {
                        json_t *s = template_subst(item, lookup, ud, ret_error);
                        if (!s) {
                                json_decref(out);
                                return NULL;
                        }
                        json_object_set_new(out, k, s);
                }
                return out;
        }
        return json_incref(v);
}

/* ---- YAML ---- */

typedef struct Yaml {
        YamlDoc *doc;
        char **error;
        DagLoadFn load;
        void *load_userdata;
} Yaml;

static _printf_(3, 4) int yerr(Yaml *y, const YamlNode *n, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = yaml_node_verror(y->doc, n, y->error, fmt, ap);
        va_end(ap);
        return r;
}

static const char *yscalar(const YamlNode *n) {
        return yaml_node_scalar(n);
}

static bool yis(const YamlNode *n, YamlKind k) {
        return n && yaml_node_kind(n) == k;
}

/* The subtree's JSON (src/shared's scalar rule); NULL with *y->error set. */
static json_t *yjson(Yaml *y, const YamlNode *n) {
        json_t *v;
        if (yaml_doc_json(y->doc, n, &v, y->error) < 0)
                return NULL;
        return v;
}

/* ---- tasks ---- */

static void task_done(Task *t) {
        free(t->name);
        free(t->file);
        free(t->path);
        free(t->source);
        free(t->function);
        json_decref(t->args);
        json_decref(t->kwargs);
        json_decref(t->raw_kwargs);
        strv_free(t->data);
        free(t->outputs);
        free(t->data_producer);
        strv_free(t->secrets);
        strv_free(t->env);
        free(t->deps);
        free(t->run_id);
        json_decref(t->value);
        free(t->value_json);
        free(t->error);
        free(t->memo_key);
}

Dag *dag_free(Dag *d) {
        if (!d)
                return NULL;
        d->lock_fd = fd_close(d->lock_fd);
        for (size_t i = 0; i < d->n; i++)
                task_done(&d->tasks[i]);
        free(d->tasks);
        free(d->name);
        free(d->filename);
        free(d->base_dir);
        free(d->text);
        json_decref(d->params);
        json_decref(d->declared_params);
        free(d->params_json);
        free(d->id);
        free(d->tenant);
        strv_free(d->data_pins);
        pthread_mutex_destroy(&d->lock);
        pthread_cond_destroy(&d->cond);
        free(d);
        return NULL;
}

size_t dag_n_tasks(const Dag *d) {
        return d->n;
}

const char *dag_name(const Dag *d) {
        return d->name;
}

const char *dag_id(const Dag *d) {
        return d->id;
}

static ssize_t task_index(const Dag *d, const char *name) {
        for (size_t i = 0; i < d->n; i++)
                if (streq(d->tasks[i].name, name))
                        return (ssize_t) i;
        return -1;
}

static void add_dep(Task *t, size_t dep) {
        for (size_t i = 0; i < t->n_deps; i++)
                if (t->deps[i] == dep)
                        return;
        t->deps = xrealloc(t->deps, (t->n_deps + 1) * sizeof(size_t));
        t->deps[t->n_deps++] = dep;
}

static int parse_limits(Yaml *y, const YamlNode *n, Task *t) {
        if (!yis(n, YAML_KIND_MAPPING))
                return yerr(y, n, "task '%s': limits must be a mapping (timeout, memory, max_procs, max_output, network)",
                            t->name);
        for (size_t i = 0; i < yaml_node_count(n); i++) {
                const YamlNode *kn = yaml_node_key(y->doc, n, i), *vn = yaml_node_value(y->doc, n, i);
                const char *k = yscalar(kn), *v = yscalar(vn);
                if (!k || !v)
                        return yerr(y, kn, "task '%s': limits take scalar values", t->name);
                int r = 0;
                if (streq(k, "timeout"))
                        r = dag_parse_duration_ms(v, &t->limits.timeout_ms);
                else if (streq(k, "memory")) {
                        r = dag_parse_size(v, &t->limits.memory_bytes);
                        /* The CLI's --memory floor (a run below it was
                         * killed before its code ran, or on a server's
                         * spare not limited at all). */
                        if (r >= 0 && t->limits.memory_bytes < RUN_MIN_MEMORY_BYTES)
                                return yerr(y, vn, "task '%s': limit 'memory' must be at least 16M, got '%s'", t->name,
                                            v);
                } else if (streq(k, "max_output") || streq(k, "max-output"))
                        r = dag_parse_size(v, &t->limits.max_output_bytes);
                else if (streq(k, "max_procs") || streq(k, "max-procs")) {
                        char *end;
                        errno = 0;
                        unsigned long long x = strtoull(v, &end, 10);
                        r = errno || *end || x == 0 || v[0] == '-' ? -EINVAL : 0;
                        if (r >= 0 && x > RUN_MAX_PROCS)
                                return yerr(y, vn,
                                            "task '%s': limit 'max_procs' must be a number from 1 to %llu, got '%s'",
                                            t->name, (unsigned long long) RUN_MAX_PROCS, v);
                        t->limits.max_procs = x;
                } else if (streq(k, "network")) {
                        json_t *b = yjson(y, vn);
                        if (!b)
                                return -EINVAL;
                        if (!json_is_boolean(b)) {
                                json_decref(b);
                                return yerr(y, vn, "task '%s': limit 'network' must be true or false (not '%s')",
                                            t->name, v);
                        }
                        t->limits.network = json_is_true(b);
                        t->limits.network_off = !t->limits.network;
                        json_decref(b);
                } else
                        return yerr(y, kn, "task '%s': unknown limit '%s' (timeout, memory, max_procs, max_output, network)",
                                    t->name, k);
                if (r < 0)
                        return yerr(y, vn, "task '%s': bad value '%s' for limit '%s'", t->name, v, k);
        }
        return 0;
}

static int parse_retries(Yaml *y, const YamlNode *n, Task *t) {
        const char *count = NULL, *backoff = NULL;
        const YamlNode *at = n;
        if (yis(n, YAML_KIND_SCALAR))
                count = yscalar(n);
        else if (yis(n, YAML_KIND_MAPPING)) {
                for (size_t i = 0; i < yaml_node_count(n); i++) {
                        const char *k = yscalar(yaml_node_key(y->doc, n, i));
                        const char *v = yscalar(yaml_node_value(y->doc, n, i));
                        if (k && streq(k, "count"))
                                count = v;
                        else if (k && streq(k, "backoff"))
                                backoff = v;
                        else
                                return yerr(y, yaml_node_key(y->doc, n, i), "task '%s': retries takes count and backoff",
                                            t->name);
                        at = yaml_node_value(y->doc, n, i);
                }
        } else
                return yerr(y, n, "task '%s': retries is a number or {count: N, backoff: DURATION}", t->name);
        if (count) {
                char *end;
                errno = 0;
                long v = strtol(count, &end, 10);
                if (errno || *end || end == count || v < 0 || v > DAG_MAX_RETRIES)
                        return yerr(y, at, "task '%s': retries must be a number from 0 to %d", t->name, DAG_MAX_RETRIES);
                t->retries = (int) v;
        }
        if (backoff && dag_parse_duration_ms(backoff, &t->backoff_ms) < 0)
                return yerr(y, at, "task '%s': bad backoff '%s' (e.g. 500ms, 2s)", t->name, backoff);
        return 0;
}

static int string_list(Yaml *y, const YamlNode *n, const char *what, const char *task, char ***ret) {
        char **v = NULL;
        if (yis(n, YAML_KIND_SCALAR)) {
                v = strv_append(v, yscalar(n));
        } else if (yis(n, YAML_KIND_SEQUENCE)) {
                for (size_t i = 0; i < yaml_node_count(n); i++) {
                        const YamlNode *it = yaml_node_item(y->doc, n, i);
                        const char *s = yscalar(it);
                        if (!s) {
                                strv_free(v);
                                return yerr(y, it ?: n, "task '%s': %s must be a list of names", task, what);
                        }
                        v = strv_append(v, s);
                }
        } else
                return yerr(y, n, "task '%s': %s must be a list of names", task, what);
        strv_free(*ret); /* NULL: yaml_doc_load() refuses a key given twice */
        *ret = v;
        return 0;
}

/* `env:` — a mapping of variable names to scalars; a number or a bool is
 * passed as it is written in JSON (5, true). */
static int parse_env(Yaml *y, const YamlNode *n, Task *t) {
        json_t *v = yjson(y, n);
        if (!v)
                return -EINVAL;
        if (!json_is_object(v)) {
                json_decref(v);
                return yerr(y, n, "task '%s': env must be a mapping of NAME: value", t->name);
        }
        char **env = NULL;
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
                _cleanup_free_ char *text = json_is_string(x) ? xstrdup(json_string_value(x))
                                            : (json_is_number(x) || json_is_boolean(x)) ? json_dumps(x, JSON_ENCODE_ANY)
                                                                                       : NULL;
                if (!secret_name_is_valid(k) || !text) {
                        /* The message names k, which v owns: v goes after
                         * it (found by fuzz/fuzz-dag.c). */
                        int r = yerr(y, n,
                                     "task '%s': env maps names ([A-Za-z_][A-Za-z0-9_]{0,127}) to scalar values; "
                                     "'%s' is not one",
                                     t->name, k);
                        json_decref(v);
                        strv_free(env);
                        return r;
                }
                _cleanup_free_ char *kv = xasprintf("%s=%s", k, text);
                env = strv_append(env, kv);
        }
        json_decref(v);
        strv_free(t->env);
        t->env = env;
        return 0;
}

static int parse_task(Yaml *y, Dag *d, Task *t, const YamlNode *n, char ***ret_depends) {
        if (!yis(n, YAML_KIND_MAPPING))
                return yerr(y, n, "task '%s' must be a mapping (file, function, args, kwargs, …)", t->name);
        char **depends = NULL;
        int r = 0;
        for (size_t i = 0; i < yaml_node_count(n) && r >= 0; i++) {
                const YamlNode *kn = yaml_node_key(y->doc, n, i), *vn = yaml_node_value(y->doc, n, i);
                const char *k = yscalar(kn);
                if (!k || !vn) {
                        r = yerr(y, kn ?: n, "task '%s': keys must be names", t->name);
                        break;
                }
                if (streq(k, "name"))
                        continue;
                if (streq(k, "file")) {
                        const char *v = yscalar(vn);
                        if (!v || !*v)
                                r = yerr(y, vn, "task '%s': file must be a path", t->name);
                        else {
                                /* FILE::FUNC like the run verb. */
                                const char *sep = strstr(v, "::");
                                free(t->file); /* NULL: yaml_doc_load() refuses a key given twice */
                                t->file = sep ? xstrndup(v, (size_t) (sep - v)) : xstrdup(v);
                                if (sep && sep[2] && t->function && !streq(t->function, sep + 2))
                                        r = yerr(y, vn,
                                                 "task '%s': file names function '%s' and function: '%s'; "
                                                 "give one",
                                                 t->name, sep + 2, t->function);
                                else if (sep && sep[2]) {
                                        free(t->function);
                                        t->function = xstrdup(sep + 2);
                                }
                        }
                } else if (streq(k, "function")) {
                        const char *v = yscalar(vn);
                        if (!v || !ident_ok(v, strlen(v)) || strchr(v, '-'))
                                r = yerr(y, vn, "task '%s': function must be a Python identifier", t->name);
                        /* Set: by file's FILE::FUNC (a key is given once).
                         * Which one won depended on the keys' order. */
                        else if (t->function && !streq(t->function, v))
                                r = yerr(y, vn, "task '%s': file names function '%s' and function: '%s'; give one",
                                         t->name, t->function, v);
                        else {
                                free(t->function);
                                t->function = xstrdup(v);
                        }
                } else if (streq(k, "args")) {
                        json_t *v = yjson(y, vn);
                        if (!v)
                                r = -EINVAL;
                        else if (!json_is_array(v)) {
                                json_t *a = json_array();
                                json_array_append_new(a, v);
                                v = a;
                        }
                        json_decref(t->args);
                        t->args = v;
                } else if (streq(k, "kwargs")) {
                        json_t *v = yjson(y, vn);
                        if (!v)
                                r = -EINVAL;
                        else if (!json_is_object(v)) {
                                json_decref(v);
                                r = yerr(y, vn, "task '%s': kwargs must be a mapping of name: value", t->name);
                        } else {
                                json_decref(t->kwargs);
                                t->kwargs = v;
                        }
                } else if (streq(k, "raw_kwargs")) {
                        /* The API's raw_kwargs (docs/api.md), as a chain
                         * writes a flag given without a value (`--no-x`):
                         * kwargs has no spelling for one. */
                        json_t *v = yjson(y, vn);
                        const char *key;
                        json_t *item;
                        if (!v)
                                r = -EINVAL;
                        else if (!json_is_object(v))
                                r = yerr(y, vn, "task '%s': raw_kwargs must be a mapping of name: value", t->name);
                        else
                                json_object_foreach(v, key, item) {
                                        json_t *e = json_raw_kwarg_item(item);
                                        if (!e || !identifier_is_valid(key)) {
                                                r = yerr(y, vn,
                                                         e ? "task '%s': raw_kwargs: '%s' is not a Python identifier"
                                                           : "task '%s': raw_kwargs '%s' must be a string, a non-empty "
                                                             "list of strings (the option given once per element), "
                                                             "or true for a flag given without a value",
                                                         t->name, key);
                                                json_decref(e);
                                                break;
                                        }
                                        json_decref(e);
                                }
                        if (r >= 0) {
                                json_decref(t->raw_kwargs);
                                t->raw_kwargs = v;
                        } else
                                json_decref(v);
                } else if (streq(k, "limits"))
                        r = parse_limits(y, vn, t);
                else if (streq(k, "retries"))
                        r = parse_retries(y, vn, t);
                else if (streq(k, "data"))
                        r = string_list(y, vn, "data", t->name, &t->data);
                else if (streq(k, "outputs")) {
                        /* One dataset per task (a list of one is accepted):
                         * a run has one output dir. */
                        _cleanup_strv_free_ char **o = NULL;
                        r = string_list(y, vn, "outputs", t->name, &o);
                        if (r >= 0 && strv_length(o) != 1)
                                r = yerr(y, vn, "task '%s': outputs takes one dataset name", t->name);
                        else if (r >= 0 && !data_name_valid(o[0]))
                                r = yerr(y, vn, "task '%s': '%s' is not a dataset name ([A-Za-z0-9][A-Za-z0-9._-]*)",
                                         t->name, o[0]);
                        else if (r >= 0) {
                                free(t->outputs);
                                t->outputs = xstrdup(o[0]);
                        }
                }
                else if (streq(k, "secrets"))
                        r = string_list(y, vn, "secrets", t->name, &t->secrets);
                else if (streq(k, "env"))
                        r = parse_env(y, vn, t);
                else if (streq(k, "depends") || streq(k, "depends_on") || streq(k, "after"))
                        r = string_list(y, vn, "depends", t->name, &depends);
                else
                        r = yerr(y, kn,
                                 "task '%s': unknown key '%s' (file, function, args, kwargs, raw_kwargs, limits, "
                                 "retries, data, outputs, secrets, env, depends)",
                                 t->name, k);
        }
        if (r >= 0 && !t->file)
                r = yerr(y, n, "task '%s' has no file", t->name);
        const char *rk;
        json_t *rv;
        json_object_foreach(t->raw_kwargs, rk, rv)
                if (r >= 0 && json_object_get(t->kwargs, rk))
                        r = yerr(y, n, "task '%s': keyword argument '%s' given in both raw_kwargs and kwargs", t->name,
                                 rk);
        for (char **p = t->secrets; r >= 0 && p && *p; p++)
                if (!secret_name_is_valid(*p))
                        r = yerr(y, n, "task '%s': '%s' is not a secret's name ([A-Za-z_][A-Za-z0-9_]{0,127})", t->name,
                                 *p);
        for (char **p = t->data; r >= 0 && p && *p; p++) {
                _cleanup_free_ char *nm = NULL;
                int ver;
                if (data_parse_ref(*p, &nm, &ver) < 0)
                        r = yerr(y, n, "task '%s': '%s' is not a dataset name (NAME or NAME@VERSION)", t->name, *p);
        }
        if (r >= 0) {
                t->path = t->file[0] == '/' ? xstrdup(t->file) : path_join(d->base_dir, t->file);
                _cleanup_free_ char *err = NULL;
                r = y->load(d->base_dir, t->file, y->load_userdata, &t->source, &t->source_len, &err);
                if (r < 0)
                        r = yerr(y, n, "task '%s': %s", t->name, err ?: strerror(-r));
        }
        if (r < 0) {
                strv_free(depends);
                return r;
        }
        *ret_depends = depends;
        return 0;
}

typedef struct RefCtx {
        Dag *d;
        Task *t;
        Yaml *y;
        const YamlNode *n;
} RefCtx;

static int collect_ref(const Ref *r, void *ud) {
        RefCtx *c = ud;
        if (r->param) {
                if (!json_object_get(c->d->params, r->task))
                        return yerr(c->y, c->n, "task '%s': unknown parameter '%s' (give it with --param %s=VALUE or "
                                                "declare it under params:)",
                                    c->t->name, r->task, r->task);
                return 0;
        }
        ssize_t i = task_index(c->d, r->task);
        if (i < 0)
                return yerr(c->y, c->n, "task '%s': reference to unknown task '%s'", c->t->name, r->task);
        if (&c->d->tasks[i] == c->t)
                return yerr(c->y, c->n, "task '%s' references its own result", c->t->name);
        add_dep(c->t, (size_t) i);
        return 0;
}

/* Depth-first search for a cycle; names it in order. */
static int find_cycle(Yaml *y, const YamlNode **defs, Dag *d, size_t i, int *color, size_t *stack, size_t depth) {
        color[i] = 1;
        stack[depth] = i;
        Task *t = &d->tasks[i];
        for (size_t k = 0; k < t->n_deps; k++) {
                size_t j = t->deps[k];
                if (color[j] == 1) {
                        /* stack holds i's ancestors in "depends on" order:
                         * print it as execution order (dependency first). */
                        Buf b;
                        buf_init(&b, 64 * 1024);
                        size_t from = 0;
                        while (stack[from] != j)
                                from++;
                        for (size_t s = depth + 1; s-- > from;)
                                buf_printf(&b, "%s -> ", d->tasks[stack[s]].name);
                        buf_printf(&b, "%s", d->tasks[i].name);
                        /* FILE:LINE:COL of the cycle's first named task
                         * (i), like every other refusal. */
                        (void) yerr(y, defs[i], "the tasks form a cycle: %s", b.data);
                        buf_free(&b);
                        return -ELOOP;
                }
                if (color[j] == 0) {
                        int r = find_cycle(y, defs, d, j, color, stack, depth + 1);
                        if (r < 0)
                                return r;
                }
        }
        color[i] = 2;
        return 0;
}

static int compute_depth(Dag *d, size_t i, int *memo) {
        if (memo[i] >= 0)
                return memo[i];
        int best = 0;
        for (size_t k = 0; k < d->tasks[i].n_deps; k++)
                best = MAX(best, compute_depth(d, d->tasks[i].deps[k], memo) + 1);
        memo[i] = best;
        return best;
}

static int apply_params(Dag *d, char *const *params, char **ret_error) {
        json_t *given = json_object();
        for (char *const *p = params; p && *p; p++) {
                const char *eq = strchr(*p, '=');
                if (!eq || eq == *p) {
                        json_decref(given);
                        *ret_error = xasprintf("--param needs NAME=VALUE, got '%s'", *p);
                        return -EINVAL;
                }
                _cleanup_free_ char *name = xstrndup(*p, (size_t) (eq - *p));
                if (!ident_ok(name, strlen(name))) {
                        json_decref(given);
                        *ret_error = xasprintf("--param: '%s' is not a parameter name", name);
                        return -EINVAL;
                }
                json_object_set_new(given, name, json_string(eq + 1));
                json_object_set_new(d->params, name, dag_scalar_value(eq + 1));
        }
        d->params_json = json_dumps(given, JSON_COMPACT);
        json_decref(given);
        return 0;
}

static int param_ref(const Ref *r, void *ud) {
        /* Stops the walk (-EEXIST) at a reference to the parameter named ud. */
        return r->param && streq(r->task, ud) ? -EEXIST : 0;
}

/* Whether a task's arguments reference ${params.name}. */
static bool param_used(Dag *d, const char *name) {
        for (size_t i = 0; i < d->n; i++) {
                _cleanup_free_ char *err = NULL;
                if (template_walk(d->tasks[i].args, param_ref, (void *) name, &err) == -EEXIST ||
                    template_walk(d->tasks[i].kwargs, param_ref, (void *) name, &err) == -EEXIST)
                        return true;
        }
        return false;
}

int dag_check_params(Dag *d, char *const *params, char **ret_error) {
        assert(d && ret_error);
        json_t *declared = d->declared_params;
        for (char *const *p = params; p && *p; p++) {
                _cleanup_free_ char *name = xstrndup(*p, strcspn(*p, "="));
                if (json_object_get(declared, name) || param_used(d, name))
                        continue;
                Buf b;
                buf_init(&b, 64 * 1024);
                const char *k;
                json_t *v;
                json_object_foreach(declared, k, v)
                        buf_printf(&b, "%s%s", b.len ? ", " : "", k);
                *ret_error = xasprintf("cannot set parameter '%s': %s has no parameter of that name (%s%s)", name,
                                       d->filename,
                                       b.len ? "its parameters: " : "it declares none under params:", b.data ?: "");
                buf_free(&b);
                return -ENOENT;
        }
        return 0;
}

int dag_parse(const char *text, size_t len, const char *filename, const char *base_dir, char *const *params,
              Dag **ret, char **ret_error) {
        return dag_parse_with(text, len, filename, base_dir, params, NULL, NULL, ret, ret_error);
}

int dag_parse_with(const char *text, size_t len, const char *filename, const char *base_dir, char *const *params,
                   DagLoadFn load, void *load_userdata, Dag **ret, char **ret_error) {
        if (len > DAG_MAX_FILE_BYTES) {
                *ret_error = xasprintf("%s: larger than the %llu byte pipeline limit", filename,
                                       (unsigned long long) DAG_MAX_FILE_BYTES);
                return -EFBIG;
        }
        Dag *d = xcalloc(1, sizeof(Dag));
        d->lock_fd = -EBADF;
        pthread_mutex_init(&d->lock, NULL);
        pthread_cond_init(&d->cond, NULL);
        d->filename = xstrdup(filename ?: "<pipeline>");
        d->base_dir = xstrdup(base_dir ?: ".");
        d->text = xstrndup(text, len);
        d->params = json_object();
        d->status = "pending";
        Yaml y = { .error = ret_error, .load = load ?: dag_load_any, .load_userdata = load_userdata };
        int r = yaml_doc_load(text, len, d->filename, MAX_JSON_NODES, &y.doc, ret_error);
        if (r < 0) {
                dag_free(d);
                return r;
        }
        const YamlNode *root = yaml_doc_root(y.doc);
        const YamlNode *tasks_node = NULL;
        char ***depends = NULL;
        if (!yis(root, YAML_KIND_MAPPING)) {
                r = yerr(&y, root, "a pipeline is a mapping with a 'tasks:' key");
                goto out;
        }
        for (size_t i = 0; i < yaml_node_count(root) && r >= 0; i++) {
                const YamlNode *kn = yaml_node_key(y.doc, root, i), *vn = yaml_node_value(y.doc, root, i);
                const char *k = yscalar(kn);
                if (!k || !vn)
                        r = yerr(&y, kn, "top-level keys must be names");
                else if (streq(k, "tasks"))
                        tasks_node = vn;
                else if (streq(k, "name")) {
                        const char *v = yscalar(vn);
                        free(d->name);
                        d->name = v ? xstrdup(v) : NULL;
                } else if (streq(k, "concurrency")) {
                        const char *v = yscalar(vn);
                        char *end = NULL;
                        long c = v ? strtol(v, &end, 10) : 0;
                        if (!v || *end || c < 1 || c > DAG_MAX_CONCURRENCY)
                                r = yerr(&y, vn, "concurrency must be a number from 1 to %d", DAG_MAX_CONCURRENCY);
                        d->concurrency = (unsigned) c;
                } else if (streq(k, "params")) {
                        json_t *v = yis(vn, YAML_KIND_SCALAR) && !*yscalar(vn) ? json_object() : yjson(&y, vn);
                        if (!v)
                                r = -EINVAL;
                        else if (!json_is_object(v)) {
                                json_decref(v);
                                r = yerr(&y, vn, "params must be a mapping of name: default value");
                        } else {
                                json_decref(d->params);
                                d->params = v;
                        }
                } else if (streq(k, "description") || streq(k, "version"))
                        continue;
                else
                        r = yerr(&y, kn, "unknown top-level key '%s' (name, params, concurrency, tasks)", k);
        }
        if (r < 0)
                goto out;
        if (!d->name) {
                d->name = xstrdup(path_base_name(d->filename));
        }
        if (!yis(tasks_node, YAML_KIND_MAPPING) && !yis(tasks_node, YAML_KIND_SEQUENCE)) {
                r = yerr(&y, tasks_node ?: root, "the pipeline needs 'tasks:', a mapping of task name: definition");
                goto out;
        }
        size_t n = yaml_node_count(tasks_node);
        if (n == 0 || n > DAG_MAX_TASKS) {
                r = yerr(&y, tasks_node, "a pipeline has 1 to %d tasks (this one has %zu)", DAG_MAX_TASKS, n);
                goto out;
        }
        d->tasks = xcalloc(n, sizeof(Task));
        depends = xcalloc(n, sizeof(char **));
        const YamlNode **defs = xcalloc(n, sizeof(YamlNode *));
        /* Names first, so references may point forward. */
        for (size_t i = 0; i < n && r >= 0; i++) {
                Task *t = &d->tasks[i];
                const char *name = NULL;
                const YamlNode *def;
                if (yis(tasks_node, YAML_KIND_MAPPING)) {
                        name = yscalar(yaml_node_key(y.doc, tasks_node, i));
                        def = yaml_node_value(y.doc, tasks_node, i);
                } else {
                        def = yaml_node_item(y.doc, tasks_node, i);
                        for (size_t k = 0; yis(def, YAML_KIND_MAPPING) && k < yaml_node_count(def); k++) {
                                const char *key = yscalar(yaml_node_key(y.doc, def, k));
                                if (key && streq(key, "name"))
                                        name = yscalar(yaml_node_value(y.doc, def, k));
                        }
                }
                defs[i] = def;
                d->n = i; /* the tasks named so far, for the duplicate check */
                t->line = (int) yaml_node_line(def);
                if (!name || !ident_ok(name, strlen(name)) || streq(name, "params")) {
                        r = yerr(&y, def ?: tasks_node, "task name '%s' is not valid (letters, digits, '_', '-'; not 'params')",
                                 name ?: "");
                        break;
                }
                ssize_t first = task_index(d, name);
                if (first >= 0) {
                        /* As a key given twice in a mapping says it. */
                        r = yerr(&y, def, "task '%s' is defined twice (first at line %d)", name, d->tasks[first].line);
                        break;
                }
                t->name = xstrdup(name);
                d->n = i + 1;
                t->args = json_array();
                t->kwargs = json_object();
                t->backoff_ms = DAG_DEFAULT_BACKOFF_MS;
                t->exit_code = -1;
        }
        for (size_t i = 0; i < n && r >= 0; i++)
                r = parse_task(&y, d, &d->tasks[i], defs[i], &depends[i]);
        d->declared_params = json_copy(d->params);
        if (r >= 0)
                r = apply_params(d, params, ret_error);
        /* Dependencies: references, then depends:. */
        for (size_t i = 0; i < n && r >= 0; i++) {
                Task *t = &d->tasks[i];
                RefCtx c = { .d = d, .t = t, .y = &y, .n = defs[i] };
                r = template_walk(t->args, collect_ref, &c, ret_error);
                if (r >= 0)
                        r = template_walk(t->kwargs, collect_ref, &c, ret_error);
                if (r == -EINVAL && *ret_error && !startswith(*ret_error, d->filename)) {
                        /* A malformed reference: put the location in front. */
                        char *m = *ret_error;
                        *ret_error = NULL;
                        r = yerr(&y, defs[i], "task '%s': %s", t->name, m);
                        free(m);
                }
                for (size_t j = 0; r >= 0 && t->outputs && j < i; j++)
                        if (d->tasks[j].outputs && streq(d->tasks[j].outputs, t->outputs))
                                r = yerr(&y, defs[i], "two tasks output the dataset '%s' ('%s' and '%s')",
                                         t->outputs, d->tasks[j].name, t->name);
                /* data: NAME that another task's outputs: produces is a
                 * dependency on it, and mounts the version it produced. */
                size_t nd = strv_length(t->data);
                t->data_producer = xcalloc(nd + 1, sizeof(ssize_t));
                for (size_t k = 0; r >= 0 && k < nd; k++) {
                        _cleanup_free_ char *nm = NULL;
                        int ver = 0;
                        t->data_producer[k] = -1;
                        if (data_parse_ref(t->data[k], &nm, &ver) < 0 || ver > 0)
                                continue;
                        for (size_t j = 0; j < n; j++)
                                if (d->tasks[j].outputs && streq(d->tasks[j].outputs, nm)) {
                                        if (j == i)
                                                r = yerr(&y, defs[i], "task '%s' reads the dataset '%s' it outputs",
                                                         t->name, nm);
                                        else if (t->data_producer[k] >= 0)
                                                r = yerr(&y, defs[i], "two tasks output the dataset '%s'", nm);
                                        else {
                                                t->data_producer[k] = (ssize_t) j;
                                                add_dep(t, j);
                                        }
                                }
                }
                for (char **p = depends[i]; r >= 0 && p && *p; p++) {
                        ssize_t j = task_index(d, *p);
                        if (j < 0)
                                r = yerr(&y, defs[i], "task '%s' depends on unknown task '%s'", t->name, *p);
                        else if ((size_t) j == i)
                                r = yerr(&y, defs[i], "task '%s' depends on itself", t->name);
                        else
                                add_dep(t, (size_t) j);
                }
        }
        if (r >= 0) {
                int *color = xcalloc(n, sizeof(int));
                size_t *stack = xcalloc(n + 1, sizeof(size_t));
                for (size_t i = 0; i < n && r >= 0; i++)
                        if (color[i] == 0)
                                r = find_cycle(&y, defs, d, i, color, stack, 0);
                free(stack);
                if (r >= 0) {
                        int *memo = color;
                        for (size_t i = 0; i < n; i++)
                                memo[i] = -1;
                        for (size_t i = 0; i < n; i++) {
                                d->tasks[i].depth = compute_depth(d, i, memo);
                                for (size_t k = 0; k < d->tasks[i].n_deps; k++)
                                        d->tasks[d->tasks[i].deps[k]].n_dependents++;
                        }
                }
                free(color);
        }
        free(defs);
out:
        if (depends)
                for (size_t i = 0; i < d->n; i++)
                        strv_free(depends[i]);
        free(depends);
        yaml_doc_free(y.doc);
        if (r < 0) {
                dag_free(d);
                return r == -ELOOP ? -EINVAL : r;
        }
        *ret = d;
        return 0;
}
