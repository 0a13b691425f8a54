/* Request body parsing: everything a client sends passes through here before
 * anything else looks at it, so it is the fuzzer's target
 * (fuzz/fuzz-request.c). */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>

#include "daemon.h"

/* jansson's own depth cap is 2048; a cheaper, stricter pre-scan bounds the
 * nesting and the number of values before the parser allocates anything. */
static int json_prescan(const char *s, size_t len, const RequestCaps *caps, char **ret_error) {
        size_t depth = 0, values = 0;
        bool in_str = false;

        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (in_str) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                switch (c) {
                case '"':
                        in_str = true;
                        values++;
                        break;
                case '[':
                case '{':
                        depth++;
                        values++;
                        if (depth > caps->max_depth) {
                                *ret_error = xasprintf("JSON nested deeper than %zu levels", caps->max_depth);
                                return -EINVAL;
                        }
                        break;
                case ']':
                case '}':
                        if (depth > 0)
                                depth--;
                        break;
                case ',':
                        values++;
                        break;
                default:
                        break;
                }
                if (values > caps->max_values) {
                        *ret_error = xasprintf("JSON has more than %zu values", caps->max_values);
                        return -EINVAL;
                }
        }
        return 0;
}

static bool json_holds_nul(json_t *v) {
        size_t i;
        const char *k;
        json_t *x;
        if (json_is_string(v))
                return memchr(json_string_value(v), 0, json_string_length(v)) != NULL;
        json_array_foreach(v, i, x)
                if (json_holds_nul(x))
                        return true;
        json_object_foreach(v, k, x)
                if (json_holds_nul(x))
                        return true;
        return false;
}

static bool member_may_hold_nul(const RequestCaps *caps, const char *member) {
        for (const char *const *m = caps->nul_members; m && *m; m++)
                if (streq(*m, member))
                        return true;
        return false;
}

/* jansson keeps "\u0000" in a string only with JSON_ALLOW_NUL, and C that
 * reads a name with json_string_value() would see it cut at the NUL: so it
 * is let in where caps say and refused elsewhere, naming the field. (The
 * prescan bounds the depth of this walk.) */
int request_json_nul_check(json_t *j, const RequestCaps *caps, char **ret_error) {
        const char *k;
        json_t *v;
        if (caps->nul_anywhere)
                return 0;
        if (!json_is_object(j)) {
                if (!json_holds_nul(j))
                        return 0;
                *ret_error = xstrdup(
                        "the body holds a NUL character (\\u0000) in a string, which is not accepted here");
                return -EINVAL;
        }
        json_object_foreach(j, k, v)
                if (!member_may_hold_nul(caps, k) && json_holds_nul(v)) {
                        *ret_error = xasprintf("field '%s' holds a NUL character (\\u0000), which is not accepted here",
                                               k);
                        return -EINVAL;
                }
        return 0;
}

int request_json_parse(const char *body, size_t len, const RequestCaps *caps, void **ret_json, char **ret_error) {
        json_error_t jerr;
        int r;

        if (len == 0) {
                *ret_error = xstrdup("request body is empty; expected a JSON object");
                return -EINVAL;
        }
        r = json_prescan(body, len, caps, ret_error);
        if (r < 0)
                return r;
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!j) {
                const char *why = json_error_text(&jerr), *near = caps->no_quote ? strstr(why, " near ") : NULL;
                *ret_error = xasprintf("invalid JSON at line %d column %d: %.*s", jerr.line, jerr.column,
                                       near ? (int) (near - why) : (int) strlen(why), why);
                return -EINVAL;
        }
        /* The walk only when the text can hold a NUL (a few bytes of
         * memmem() on every invoke). */
        if (memmem(body, len, "\\u0000", 6)) {
                r = request_json_nul_check(j, caps, ret_error);
                if (r < 0) {
                        json_decref(j);
                        return r;
                }
        }
        *ret_json = j;
        return 0;
}

typedef enum FieldType {
        F_STRING,
        F_INT,
        F_POSITIVE,
        F_BOOL,
        F_OBJECT,
        F_ARRAY,
        F_ANY
} FieldType;

typedef struct Field {
        const char *name;
        FieldType type;
        bool required;
} Field;

static const char *field_type_name(FieldType t) {
        switch (t) {
        case F_STRING:
                return "a string";
        case F_INT:
                return "a non-negative integer";
        case F_POSITIVE:
                return "a positive integer";
        case F_BOOL:
                return "a boolean";
        case F_OBJECT:
                return "an object";
        case F_ARRAY:
                return "an array";
        case F_ANY:
        default:
                return "a JSON value";
        }
}

static bool field_type_ok(FieldType t, json_t *v) {
        switch (t) {
        case F_STRING:
                return json_is_string(v);
        case F_INT:
                return json_is_integer(v) && json_integer_value(v) >= 0;
        case F_POSITIVE:
                return json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= INT32_MAX;
        case F_BOOL:
                return json_is_boolean(v);
        case F_OBJECT:
                return json_is_object(v);
        case F_ARRAY:
                return json_is_array(v);
        case F_ANY:
        default:
                return true;
        }
}

/* Checks obj against a field table: unknown fields, missing required ones
 * and wrong types are errors naming "prefix.field". */
static int check_fields(json_t *obj, const char *prefix, const Field *fields, size_t n, char **ret_error) {
        const char *key;
        json_t *v;

        if (!json_is_object(obj)) {
                *ret_error = prefix ? xasprintf("field '%s' must be an object", prefix)
                                    : xstrdup("request body must be a JSON object");
                return -EINVAL;
        }
        json_object_foreach(obj, key, v) {
                const Field *f = NULL;
                for (size_t i = 0; i < n; i++)
                        if (streq(fields[i].name, key))
                                f = &fields[i];
                if (!f) {
                        *ret_error = prefix ? xasprintf("unknown field '%s.%s'", prefix, key)
                                            : xasprintf("unknown field '%s'", key);
                        return -EINVAL;
                }
                if (!field_type_ok(f->type, v)) {
                        *ret_error = prefix ? xasprintf("field '%s.%s' must be %s", prefix, key, field_type_name(f->type))
                                            : xasprintf("field '%s' must be %s", key, field_type_name(f->type));
                        return -EINVAL;
                }
        }
        for (size_t i = 0; i < n; i++)
                if (fields[i].required && !json_object_get(obj, fields[i].name)) {
                        *ret_error = prefix ? xasprintf("missing required field '%s.%s'", prefix, fields[i].name)
                                            : xasprintf("missing required field '%s'", fields[i].name);
                        return -EINVAL;
                }
        return 0;
}

static const Field limits_fields[] = {
        { "timeout_ms", F_INT, false },
        { "memory_bytes", F_INT, false },
        { "max_procs", F_INT, false },
        { "max_output_bytes", F_INT, false },
        { "network", F_BOOL, false },
};

/* Types only: what the tenant may have is the caller's check
 * (daemon_limits_grant), answered 403 rather than 400. */
static int parse_limits(json_t *obj, RunLimits *ret, char **ret_error) {
        RunLimits l = {};
        int r;

        if (!obj) {
                *ret = l;
                return 0;
        }
        r = check_fields(obj, "limits", limits_fields, ELEMENTSOF(limits_fields), ret_error);
        if (r < 0)
                return r;

        struct {
                const char *name;
                uint64_t *field;
        } t[] = {
                { "timeout_ms", &l.timeout_ms },
                { "memory_bytes", &l.memory_bytes },
                { "max_procs", &l.max_procs },
                { "max_output_bytes", &l.max_output_bytes },
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                json_t *v = json_object_get(obj, t[i].name);
                if (v)
                        *t[i].field = (uint64_t) json_integer_value(v);
        }
        /* The CLI's bounds: past them the kernel refused the cgroup write
         * and the run went on under other limits than it asked for. */
        if (l.memory_bytes && l.memory_bytes < RUN_MIN_MEMORY_BYTES) {
                *ret_error = xasprintf("field 'limits.memory_bytes' must be 0 (the default) or at least %llu (16 MiB)",
                                       (unsigned long long) RUN_MIN_MEMORY_BYTES);
                return -EINVAL;
        }
        if (l.max_procs > RUN_MAX_PROCS) {
                *ret_error = xasprintf("field 'limits.max_procs' must be 0 (the default) or at most %llu",
                                       (unsigned long long) RUN_MAX_PROCS);
                return -EINVAL;
        }
        json_t *net = json_object_get(obj, "network");
        if (net) {
                l.network = json_is_true(net);
                l.network_off = json_is_false(net);
        }
        *ret = l;
        return 0;
}

/* out (taken) as compact JSON text into *ret_json, NULL when it is empty;
 * -ENOMEM with *ret_error when jansson cannot encode it (never silently
 * dropped: a run without its arguments would be another call). */
static int dump_nonempty(json_t *out, const char *field, char **ret_json, char **ret_error) {
        bool empty = json_is_array(out) ? json_array_size(out) == 0 : json_object_size(out) == 0;
        char *s = empty ? NULL : json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(out);
        if (!empty && !s) {
                *ret_error = xasprintf("field '%s' cannot be encoded", field);
                return -ENOMEM;
        }
        *ret_json = s;
        return 0;
}

/* Builds the engine's argument format: raw strings first (converted by the
 * parameter's annotation, like the CLI's -a), then typed values. */
static int build_args(json_t *args, json_t *raw_args, char **ret_json, char **ret_error) {
        json_t *out = json_array();
        size_t i;
        json_t *v;

        json_array_foreach(raw_args, i, v) {
                if (!json_is_string(v)) {
                        json_decref(out);
                        *ret_error = xasprintf("field 'raw_args[%zu]' must be a string", i);
                        return -EINVAL;
                }
                json_array_append_new(out, json_pack("{sO}", "raw", v));
        }
        json_array_foreach(args, i, v)
                json_array_append_new(out, json_pack("{sO}", "value", v));
        return dump_nonempty(out, "args", ret_json, ret_error);
}

static int build_kwargs(json_t *kwargs, json_t *raw_kwargs, char **ret_json, char **ret_error) {
        json_t *out = json_object();
        const char *key;
        json_t *v;

        json_object_foreach(raw_kwargs, key, v) {
                json_t *item = json_raw_kwarg_item(v);
                if (!item) {
                        json_decref(out);
                        *ret_error = xasprintf("field 'raw_kwargs.%s' must be a string, a non-empty array of strings "
                                               "(the option given once per element), or true for a flag given "
                                               "without a value",
                                               key);
                        return -EINVAL;
                }
                if (!identifier_is_valid(key)) {
                        json_decref(item);
                        json_decref(out);
                        *ret_error = xasprintf("field 'raw_kwargs': '%s' is not a Python identifier", key);
                        return -EINVAL;
                }
                json_object_set_new(out, key, item);
        }
        json_object_foreach(kwargs, key, v) {
                if (!identifier_is_valid(key)) {
                        json_decref(out);
                        *ret_error = xasprintf("field 'kwargs': '%s' is not a Python identifier", key);
                        return -EINVAL;
                }
                if (json_object_get(out, key)) {
                        json_decref(out);
                        *ret_error = xasprintf("keyword argument '%s' given in both 'raw_kwargs' and 'kwargs'", key);
                        return -EINVAL;
                }
                json_object_set_new(out, key, json_pack("{sO}", "value", v));
        }
        return dump_nonempty(out, "kwargs", ret_json, ret_error);
}

void run_request_done(RunRequest *r) {
        if (r->fn)
                function_record_free(r->fn);
        else
                free(r->source);
        free(r->filename);
        free(r->function);
        free(r->args_json);
        free(r->kwargs_json);
        free(r->name);
        free(r->description);
        free(r->requirements_json);
        free(r->context_json);
        free(r->cors_json);
        strv_free(r->data);
        free(r->output_data);
        strv_free(r->secrets);
        strv_free(r->env);
        *r = (RunRequest) {};
}

static const Field run_fields[] = {
        { "source", F_STRING, true },       { "filename", F_STRING, false }, { "function", F_STRING, false },
        { "args", F_ARRAY, false },         { "kwargs", F_OBJECT, false },   { "raw_args", F_ARRAY, false },
        { "raw_kwargs", F_OBJECT, false },  { "limits", F_OBJECT, false },   { "data", F_ARRAY, false },
        { "retries", F_INT, false },        { "secrets", F_ARRAY, false },   { "env", F_OBJECT, false },
        { "output_data", F_STRING, false }, { "no_cache", F_BOOL, false },
};
static const Field validate_fields[] = {
        { "source", F_STRING, true },      { "filename", F_STRING, false }, { "function", F_STRING, false },
        { "args", F_ARRAY, false },        { "kwargs", F_OBJECT, false },   { "raw_args", F_ARRAY, false },
        { "raw_kwargs", F_OBJECT, false }, { "lock", F_BOOL, false },       { "no_cache", F_BOOL, false },
        { "describe", F_BOOL, false },
};
static const Field deploy_fields[] = {
        { "name", F_STRING, true },          { "source", F_STRING, true },  { "filename", F_STRING, false },
        { "function", F_STRING, false },     { "limits", F_OBJECT, false }, { "description", F_STRING, false },
        { "requirements", F_OBJECT, false }, { "retries", F_INT, false },   { "secrets", F_ARRAY, false },
        { "env", F_OBJECT, false },          { "url", F_ANY, false },       { "cors", F_ANY, false },
};
static const Field invoke_fields[] = {
        { "args", F_ARRAY, false },        { "kwargs", F_OBJECT, false }, { "raw_args", F_ARRAY, false },
        { "raw_kwargs", F_OBJECT, false }, { "limits", F_OBJECT, false }, { "version", F_POSITIVE, false },
        { "data", F_ARRAY, false },        { "retries", F_INT, false },
};

static int dup_string(json_t *obj, const char *key, size_t max, char **ret, char **ret_error) {
        json_t *v = json_object_get(obj, key);
        if (!v)
                return 0;
        size_t n = json_string_length(v);
        if (n > max) {
                *ret_error = xasprintf("field '%s' is longer than %zu bytes", key, max);
                return -EINVAL;
        }
        if (memchr(json_string_value(v), 0, n)) {
                *ret_error = xasprintf("field '%s' contains a NUL byte", key);
                return -EINVAL;
        }
        *ret = xstrndup(json_string_value(v), n);
        return 0;
}

/* data.h's rule (data_name_valid), kept here so request parsing — the
 * fuzzer's target — links nothing beyond basic: NAME is
 * [A-Za-z0-9][A-Za-z0-9._-]{0,63}, VERSION a positive integer. */
/* A byte below 0x20 or 0x7f: what a name shown in a listing must not hold. */
static bool has_control_char(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

static bool data_ref_is_valid(const char *ref) {
        size_t n = strcspn(ref, "@");
        if (n == 0 || n > 64 || !isalnum((unsigned char) ref[0]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!isalnum((unsigned char) ref[i]) && !strchr("._-", ref[i]))
                        return false;
        if (!ref[n])
                return true;
        const char *v = ref + n + 1;
        if (!*v || strlen(v) > 9 || *v == '0')
                return false;
        for (; *v; v++)
                if (!isdigit((unsigned char) *v))
                        return false;
        return true;
}

/* "data": ["NAME", "NAME@VERSION", …]: names checked here, resolved per
 * tenant when the run starts (daemon-runs.c). */
static int parse_data_refs(json_t *a, char ***ret, char **ret_error) {
        size_t i;
        json_t *v;
        char **refs = NULL;
        if (!a)
                return 0;
        if (json_array_size(a) > 64) {
                *ret_error = xstrdup("field 'data' names more than 64 datasets");
                return -EINVAL;
        }
        json_array_foreach(a, i, v) {
                if (!json_is_string(v) || !data_ref_is_valid(json_string_value(v))) {
                        *ret_error = xasprintf("field 'data[%zu]' must be a dataset name \"NAME\" or \"NAME@VERSION\"", i);
                        strv_free(refs);
                        return -EINVAL;
                }
                if (strv_contains(refs, json_string_value(v)))
                        continue;
                refs = strv_append(refs, json_string_value(v));
        }
        *ret = refs;
        return 0;
}

/* An environment variable's name, which a secret's name also is
 * (store.h secret_name_is_valid, repeated so this file links basic only). */
static bool env_name_is_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > 128 || !(isalpha((unsigned char) s[0]) || s[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!isalnum((unsigned char) s[i]) && s[i] != '_')
                        return false;
        return true;
}

/* "secrets": ["NAME", …] and "env": {"KEY": "VALUE", …}. */
static int parse_env(json_t *secrets, json_t *env, char ***ret_secrets, char ***ret_env, char **ret_error) {
        size_t i, total = 0;
        json_t *v;
        const char *k;
        if (json_array_size(secrets) > RUN_ENV_MAX_ENTRIES || json_object_size(env) > RUN_ENV_MAX_ENTRIES) {
                *ret_error = xasprintf("fields 'secrets' and 'env' hold at most %d entries each", RUN_ENV_MAX_ENTRIES);
                return -EINVAL;
        }
        json_array_foreach(secrets, i, v) {
                if (!json_is_string(v) || !env_name_is_valid(json_string_value(v))) {
                        *ret_error = xasprintf(
                                "field 'secrets[%zu]' must be a secret's name ([A-Za-z_][A-Za-z0-9_]{0,127})", i);
                        return -EINVAL;
                }
                if (!strv_contains(*ret_secrets, json_string_value(v)))
                        *ret_secrets = strv_append(*ret_secrets, json_string_value(v));
        }
        json_object_foreach(env, k, v) {
                if (!env_name_is_valid(k) || !json_is_string(v) ||
                    memchr(json_string_value(v), 0, json_string_length(v))) {
                        *ret_error = xasprintf(
                                "field 'env' maps names ([A-Za-z_][A-Za-z0-9_]{0,127}) to strings without "
                                "NUL bytes: '%.64s' is not one",
                                k);
                        return -EINVAL;
                }
                total += strlen(k) + json_string_length(v) + 2;
                if (total > RUN_ENV_MAX_BYTES) {
                        *ret_error = xasprintf("field 'env' is larger than %u bytes", RUN_ENV_MAX_BYTES);
                        return -EINVAL;
                }
                _cleanup_free_ char *kv = xasprintf("%s=%s", k, json_string_value(v));
                *ret_env = strv_append(*ret_env, kv);
        }
        return 0;
}

/* JSON text is UTF-8, yet a client that pasted a Latin-1 file into its body
 * should hear what the CLI says ("file:line:col: not valid UTF-8", a
 * validation error), not "invalid JSON". So each invalid byte B crosses the
 * JSON parser as the private-use character U+10FF00+B (bytes F4 8F BE|BF
 * 80..BF) and is put back in "source" afterwards, where the engine's check
 * finds it. Returns NULL when the body is valid UTF-8. */
static char *body_escape_invalid_utf8(const char *body, size_t len, size_t *ret_len, size_t *ret_n) {
        size_t bad = utf8_invalid_offset(body, len);
        if (bad == len)
                return NULL;
        Buf b;
        buf_init(&b, 4 * len + 1);
        size_t n = 0;
        while (bad < len) {
                unsigned char c = (unsigned char) body[bad];
                unsigned char esc[4] = { 0xF4, 0x8F, (unsigned char) (0xBE | (c >> 6 & 1)), (unsigned char) (0x80 | (c & 0x3F)) };
                buf_append(&b, body, bad);
                buf_append(&b, esc, sizeof(esc));
                n++;
                body += bad + 1;
                len -= bad + 1;
                bad = utf8_invalid_offset(body, len);
        }
        buf_append(&b, body, len);
        *ret_len = b.len;
        *ret_n = n;
        return buf_steal(&b);
}

/* Puts the escaped bytes back in s[0..*len), in place (NULs kept); returns
 * how many and shortens *len. The NUL after s stops a cut escape. */
static size_t source_unescape_invalid_utf8(char *s, size_t *len) {
        size_t n = 0;
        char *w = s;
        const unsigned char *r = (const unsigned char *) s, *end = r + *len;
        while (r < end) {
                if (r[0] == 0xF4 && r[1] == 0x8F && (r[2] & 0xFE) == 0xBE && (r[3] & 0xC0) == 0x80) {
                        *w++ = (char) (0x80 | (r[2] & 1) << 6 | (r[3] & 0x3F));
                        r += 4;
                        n++;
                } else
                        *w++ = (char) *r++;
        }
        *w = 0;
        *len = (size_t) (w - s);
        return n;
}

/* "source" with its length: it may hold NUL bytes, which the engine's
 * check then names (as it does for the CLI's own file). */
static int dup_source(json_t *obj, char **ret, size_t *ret_len, char **ret_error) {
        json_t *v = json_object_get(obj, "source");
        if (!v)
                return 0;
        size_t n = json_string_length(v);
        if (n > RUN_MAX_SOURCE_BYTES) {
                *ret_error = xasprintf("field 'source' is longer than %llu bytes",
                                       (unsigned long long) RUN_MAX_SOURCE_BYTES);
                return -EINVAL;
        }
        *ret = xmemdupz(json_string_value(v), n);
        *ret_len = n;
        return 0;
}

int request_parse(RequestKind kind, const char *body, size_t len, const RequestCaps *caps, RunRequest *ret,
                  char **ret_error) {
        RunRequest req = {};
        json_t *j = NULL;
        size_t escaped_len = 0, n_escaped = 0;
        _cleanup_free_ char *escaped = body_escape_invalid_utf8(body, len, &escaped_len, &n_escaped);
        int r;

        /* Python's str holds NUL: an argument may. A source with one is
         * refused by the engine's check, in the words the CLI prints. */
        static const char *const nul_members[] = { "source", "args", "kwargs", "raw_args", "raw_kwargs", NULL };
        RequestCaps c = *caps;
        c.nul_members = nul_members;
        r = request_json_parse(escaped ?: body, escaped ? escaped_len : len, &c, (void **) &j, ret_error);
        if (r < 0)
                return r;

        static const struct {
                const Field *fields;
                size_t n;
        } kinds[] = {
                [REQUEST_RUN] = { run_fields, ELEMENTSOF(run_fields) },
                [REQUEST_VALIDATE] = { validate_fields, ELEMENTSOF(validate_fields) },
                [REQUEST_DEPLOY] = { deploy_fields, ELEMENTSOF(deploy_fields) },
                [REQUEST_INVOKE] = { invoke_fields, ELEMENTSOF(invoke_fields) },
        };
        r = (size_t) kind < ELEMENTSOF(kinds) ? check_fields(j, NULL, kinds[kind].fields, kinds[kind].n, ret_error)
                                              : -EINVAL;
        if (r < 0)
                goto fail;

        r = dup_source(j, &req.source, &req.source_len, ret_error);
        if (r < 0)
                goto fail;
        /* Invalid bytes anywhere but in the source are a bad request. */
        if (n_escaped > 0 && (!req.source || source_unescape_invalid_utf8(req.source, &req.source_len) != n_escaped)) {
                *ret_error = xstrdup("the request body is not valid UTF-8");
                r = -EINVAL;
                goto fail;
        }
        r = dup_string(j, "filename", 4096, &req.filename, ret_error);
        if (r < 0)
                goto fail;
        r = dup_string(j, "function", 256, &req.function, ret_error);
        if (r < 0)
                goto fail;
        if (req.function && !identifier_is_valid(req.function)) {
                *ret_error = xasprintf("field 'function': '%s' is not a Python identifier", req.function);
                r = -EINVAL;
                goto fail;
        }
        if (req.filename && (!*req.filename || has_control_char(req.filename))) {
                *ret_error = xstrdup("field 'filename' must be a non-empty name without control characters "
                                     "(a line break, a tab, an escape sequence)");
                r = -EINVAL;
                goto fail;
        }
        r = dup_string(j, "name", 64, &req.name, ret_error);
        if (r < 0)
                goto fail;
        if (req.name && !function_name_is_valid(req.name)) {
                *ret_error = xasprintf("field 'name': '%s' is not a valid function name ([A-Za-z0-9_-]{1,64})",
                                       req.name);
                r = -EINVAL;
                goto fail;
        }
        r = dup_string(j, "description", 1024, &req.description, ret_error);
        if (r < 0)
                goto fail;
        /* deploy's HTTP endpoint (docs/endpoints.md): absent keeps it. */
        json_t *url = json_object_get(j, "url");
        req.url = ENDPOINT_KEEP;
        if (url) {
                if (json_is_boolean(url))
                        req.url = json_is_true(url) ? ENDPOINT_TOKEN : ENDPOINT_NONE;
                else if (json_is_string(url) && streq(json_string_value(url), "public"))
                        req.url = ENDPOINT_PUBLIC;
                else {
                        *ret_error = xstrdup("field 'url' must be true, false or \"public\"");
                        r = -EINVAL;
                        goto fail;
                }
        }
        /* The URL's CORS settings (docs/endpoints.md "CORS"): absent keeps
         * them, null removes them; only a URL has them. */
        json_t *cors = json_object_get(j, "cors");
        if (cors) {
                req.cors_set = true;
                if (!json_is_null(cors) && (r = daemon_cors_parse(cors, &req.cors_json, ret_error)) < 0)
                        goto fail;
                if (req.cors_json && req.url == ENDPOINT_NONE) {
                        *ret_error = xstrdup("field 'cors' needs a URL: it cannot go with \"url\": false");
                        r = -EINVAL;
                        goto fail;
                }
        }

        json_t *reqs = json_object_get(j, "requirements");
        if (reqs) {
                const char *k;
                json_t *v;
                json_object_foreach(reqs, k, v)
                        if (!json_is_string(v)) {
                                *ret_error = xasprintf("field 'requirements.%s' must be a string (a version specifier)", k);
                                r = -EINVAL;
                                goto fail;
                        }
                req.requirements_json = json_dumps(reqs, JSON_COMPACT);
                if (!req.requirements_json) {
                        *ret_error = xstrdup("field 'requirements' cannot be encoded");
                        r = -ENOMEM;
                        goto fail;
                }
        }

        r = build_args(json_object_get(j, "args"), json_object_get(j, "raw_args"), &req.args_json, ret_error);
        if (r < 0)
                goto fail;
        r = build_kwargs(json_object_get(j, "kwargs"), json_object_get(j, "raw_kwargs"), &req.kwargs_json, ret_error);
        if (r < 0)
                goto fail;
        if ((req.args_json && strlen(req.args_json) > RUN_MAX_ARGS_BYTES) ||
            (req.kwargs_json && strlen(req.kwargs_json) > RUN_MAX_ARGS_BYTES)) {
                *ret_error = xasprintf("arguments are larger than %llu bytes", (unsigned long long) RUN_MAX_ARGS_BYTES);
                r = -EINVAL;
                goto fail;
        }
        r = parse_limits(json_object_get(j, "limits"), &req.limits, ret_error);
        if (r < 0)
                goto fail;
        r = parse_data_refs(json_object_get(j, "data"), &req.data, ret_error);
        if (r < 0)
                goto fail;
        r = parse_env(json_object_get(j, "secrets"), json_object_get(j, "env"), &req.secrets, &req.env, ret_error);
        if (r < 0)
                goto fail;
        const char *od = json_string_value(json_object_get(j, "output_data"));
        if (od) {
                if (strchr(od, '@') || !data_ref_is_valid(od)) {
                        *ret_error = xstrdup("field 'output_data' is not a valid dataset name "
                                             "([A-Za-z0-9][A-Za-z0-9._-]*, at most 64 characters)");
                        r = -EINVAL;
                        goto fail;
                }
                req.output_data = xstrdup(od);
        }
        req.no_cache = json_is_true(json_object_get(j, "no_cache"));
        req.lock_only = json_is_true(json_object_get(j, "lock"));
        req.describe_only = json_is_true(json_object_get(j, "describe"));
        if (req.lock_only && req.describe_only) {
                *ret_error = xstrdup("fields 'lock' and 'describe' ask for different answers: give one");
                r = -EINVAL;
                goto fail;
        }
        json_t *retries = json_object_get(j, "retries");
        if (retries) {
                if (json_integer_value(retries) < 0 || json_integer_value(retries) > RUN_MAX_RETRIES) {
                        *ret_error = xasprintf("field 'retries' must be an integer from 0 to %d", RUN_MAX_RETRIES);
                        r = -EINVAL;
                        goto fail;
                }
                req.max_attempts = (int) json_integer_value(retries) + 1;
        }
        json_t *ver = json_object_get(j, "version");
        if (ver) /* F_POSITIVE: 1 to INT32_MAX */
                req.version = (int) json_integer_value(ver);

        json_decref(j);
        *ret = req;
        return 0;
fail:
        json_decref(j);
        run_request_done(&req);
        return r;
}

/* ---- what the Lambda API reads from a request -------------------------------- */

/* params_json as the worker writes it, ["name", …] of ASCII names without
 * escapes: its item count and plain (unstarred, non-empty) names without
 * parsing it into jansson values (a json_loads() per Lambda invoke was
 * ~4k instructions; docs/internals/performance-log.md, round 10b). -EINVAL for anything
 * else, which jansson then reads. */
static int params_scan(const char *s, size_t *ret_n, size_t *ret_plain) {
        static const char ws[] = " \t\r\n";
        size_t n = 0, plain = 0;
        s += strspn(s, ws);
        if (*s++ != '[')
                return -EINVAL;
        s += strspn(s, ws);
        if (*s != ']')
                for (;;) {
                        if (*s++ != '"')
                                return -EINVAL;
                        const char *e = s;
                        for (; *e != '"'; e++)
                                if ((unsigned char) *e < 0x20 || (unsigned char) *e >= 0x80 || *e == '\\')
                                        return -EINVAL; /* NUL (the end) included */
                        n++;
                        plain += e > s && *s != '*';
                        s = e + 1;
                        s += strspn(s, ws);
                        if (*s == ']')
                                break;
                        if (*s++ != ',')
                                return -EINVAL;
                        s += strspn(s, ws);
                }
        s++;
        s += strspn(s, ws);
        if (*s)
                return -EINVAL;
        *ret_n = n;
        *ret_plain = plain;
        return 0;
}

LambdaCall lambda_call_rule(const char *params_json) {
        size_t n = 0, plain = 0, i;
        if (params_json && params_scan(params_json, &n, &plain) < 0) {
                json_t *a = json_loads(params_json, 0, NULL), *v;
                n = json_array_size(a);
                plain = 0;
                json_array_foreach(a, i, v) {
                        const char *p = json_string_value(v);
                        if (p && *p && *p != '*')
                                plain++;
                }
                json_decref(a);
        }
        if (plain == 2 && n == 2)
                return LAMBDA_CALL_EVENT_CONTEXT;
        if (plain == 1 && n == 1)
                return LAMBDA_CALL_EVENT;
        return LAMBDA_CALL_KWARGS;
}

int lambda_function_ref_parse(const char *ref, char **ret_name, char **ret_qualifier) {
        assert(ref);
        _cleanup_strv_free_ char **parts = NULL;
        const char *name, *qualifier = NULL;
        size_t n = 0;

        /* Split on ':' keeping empty items (strv helpers drop them). */
        for (const char *p = ref;;) {
                const char *c = strchr(p, ':');
                _cleanup_free_ char *item = c ? xstrndup(p, (size_t) (c - p)) : xstrdup(p);
                parts = strv_append(parts, item);
                n++;
                if (!c || n > 8)
                        break;
                p = c + 1;
        }
        if (streq(parts[0], "arn")) {
                /* arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] */
                if ((n != 7 && n != 8) || !streq(parts[2], "lambda") || !streq(parts[5], "function"))
                        return -EINVAL;
                name = parts[6];
                qualifier = n == 8 ? parts[7] : NULL;
        } else if ((n == 3 || n == 4) && streq(parts[1], "function")) {
                /* Lambda's partial ARN, ACCOUNT:function:NAME[:QUALIFIER],
                 * the account 12 digits. */
                if (strlen(parts[0]) != 12 || strspn(parts[0], "0123456789") != 12)
                        return -EINVAL;
                name = parts[2];
                qualifier = n == 4 ? parts[3] : NULL;
        } else if (n <= 2) {
                name = parts[0];
                qualifier = n == 2 ? parts[1] : NULL;
        } else
                return -EINVAL;
        if (!function_name_is_valid(name) || (qualifier && !*qualifier))
                return -EINVAL;
        *ret_name = xstrdup(name);
        *ret_qualifier = qualifier ? xstrdup(qualifier) : NULL;
        return 0;
}
