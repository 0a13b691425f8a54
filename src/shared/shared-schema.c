/* A small JSON Schema checker over YAML nodes, so each mistake is reported
 * at its line and column (docs/stack.md). The schema is a JSON Schema
 * document (draft 2020-12 keywords, a subset); the instance is a YAML node,
 * read with the project's one scalar rule (yaml_scalar_to_json).
 *
 * Supported: type (a name or a list), enum, const, properties, required,
 * additionalProperties (false or a schema), propertyNames, maxProperties,
 * items, minItems, maxItems, uniqueItems, minLength, maxLength, pattern (POSIX
 * extended, searched as JSON Schema does), minimum, maximum, oneOf, anyOf,
 * $ref to "#/$defs/NAME", description/title/$schema/$id/default/examples
 * (ignored), and the formats "duration" (parse_duration_ms), "size"
 * (parse_size), "cron" (cron_parse) and "every" (cron_parse of "@every S"). Any other keyword is a mistake of
 * the schema (-ENOTSUP), so the file never claims what is not checked. */
#include <assert.h>
#include <regex.h>

#include "shared.h"

#define SCHEMA_MAX_ERRORS 20

typedef struct Checker {
        const json_t *root;   /* for $ref */
        YamlDoc *doc;
        char **errors;        /* NULL: counting only (inside oneOf/anyOf) */
        size_t n_errors;
        int schema_error;     /* a mistake of the schema itself */
        char *schema_message;
} Checker;

/* Characters (code points) of UTF-8 text: its non-continuation bytes. */
static size_t utf8_length(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                n += ((unsigned char) *s & 0xC0) != 0x80;
        return n;
}

static void report(Checker *c, const YamlNode *n, const char *fmt, ...) _printf_(3, 4);

static void report(Checker *c, const YamlNode *n, const char *fmt, ...) {
        c->n_errors++;
        if (!c->errors || c->n_errors > SCHEMA_MAX_ERRORS)
                return;
        va_list ap;
        va_start(ap, fmt);
        char *m = NULL;
        (void) yaml_node_verror(c->doc, n, &m, fmt, ap);
        va_end(ap);
        c->errors = strv_append(c->errors, m);
        free(m);
}

/* A mistake whose text names its place already (yaml_doc_json's). */
static void report_placed(Checker *c, const char *m) {
        c->n_errors++;
        if (c->errors && c->n_errors <= SCHEMA_MAX_ERRORS)
                c->errors = strv_append(c->errors, m);
}

/* A mistake of the schema, not of the file: "the schema: WHAT 'DETAIL'". */
static void schema_mistake(Checker *c, const char *what, const char *detail) {
        if (c->schema_error)
                return;
        c->schema_error = -ENOTSUP;
        c->schema_message = xasprintf("the schema: %s '%s'", what, detail);
}

/* The node as a JSON value (a scalar by the core-schema rule); NULL when
 * the scalar cannot be one (reported). */
static json_t *node_value(Checker *c, const YamlNode *n) {
        _cleanup_free_ char *err = NULL;
        json_t *v = NULL;
        if (yaml_doc_json(c->doc, n, &v, &err) < 0) {
                /* Its place is in err: it was said twice ("f.yaml:4:14:
                 * f.yaml:4:14: … is out of range"). */
                report_placed(c, err ?: "invalid");
                return NULL;
        }
        return v;
}

static const char *node_type(Checker *c, const YamlNode *n, json_t **ret_value) {
        *ret_value = NULL;
        switch (yaml_node_kind(n)) {
        case YAML_KIND_MAPPING:
                return "object";
        case YAML_KIND_SEQUENCE:
                return "array";
        case YAML_KIND_SCALAR:
        default: {
                json_t *v = node_value(c, n);
                *ret_value = v;
                if (!v)
                        return NULL;
                return json_is_null(v)      ? "null"
                       : json_is_boolean(v) ? "boolean"
                       : json_is_integer(v) ? "integer"
                       : json_is_real(v)    ? "number"
                                            : "string";
        }
        }
}

static bool type_matches(const char *want, const char *have) {
        return streq(want, have) || (streq(want, "number") && streq(have, "integer"));
}

static const json_t *resolve_ref(Checker *c, const json_t *schema) {
        const char *ref = json_string_value(json_object_get(schema, "$ref"));
        if (!ref)
                return schema;
        if (!startswith(ref, "#/$defs/")) {
                schema_mistake(c, "unsupported $ref (only #/$defs/NAME)", ref);
                return NULL;
        }
        const json_t *t = json_object_get(json_object_get(c->root, "$defs"), ref + 8);
        if (!t)
                schema_mistake(c, "$ref names nothing", ref);
        return t;
}

static void check(Checker *c, const json_t *schema, const YamlNode *n);

/* How many mistakes n has against schema, reporting none. */
static size_t count_mistakes(Checker *c, const json_t *schema, const YamlNode *n) {
        Checker sub = { .root = c->root, .doc = c->doc };
        check(&sub, schema, n);
        if (sub.schema_error && !c->schema_error) {
                c->schema_error = sub.schema_error;
                c->schema_message = TAKE_PTR(sub.schema_message);
        }
        free(sub.schema_message);
        return sub.n_errors;
}

static const char *const known_keywords[] = {
        "type",          "enum",          "const",   "properties",  "required", "additionalProperties",
        "propertyNames", "maxProperties", "items",   "minItems",    "maxItems", "uniqueItems",
        "minLength",     "maxLength",     "pattern", "minimum",     "maximum",  "oneOf",
        "anyOf",         "$ref",          "format",  "description", "title",    "$schema",
        "$id",           "$defs",         "default", "examples",    "$comment", NULL,
};

static bool keyword_known(const char *k) {
        for (size_t i = 0; known_keywords[i]; i++)
                if (streq(k, known_keywords[i]))
                        return true;
        return false;
}

static void check_format(Checker *c, const char *format, const char *s, const YamlNode *n) {
        uint64_t x;
        _cleanup_free_ char *err = NULL;
        if (streq(format, "duration")) {
                if (parse_duration_ms(s, false, &x) < 0)
                        report(c, n, "'%s' is not a duration (30, 2.5s, 500ms, 5m, 1h)", s);
        } else if (streq(format, "size")) {
                if (parse_size(s, &x) < 0)
                        report(c, n, "'%s' is not a size (256M, 1G, 512K)", s);
        } else if (streq(format, "cron") || streq(format, "every")) {
                /* cron_parse's own message says what is wrong with it. */
                CronSpec cs;
                bool every = streq(format, "every");
                _cleanup_free_ char *spec = every ? xasprintf("@every %s", s) : xstrdup(s);
                if (cron_parse(spec, &cs, &err) < 0)
                        report(c, n, "%s%s", every ? "" : "not a cron expression: ", err ?: "invalid");
        } else
                schema_mistake(c, "unsupported format", format);
}

static void check_string(Checker *c, const json_t *schema, const char *s, const YamlNode *n) {
        json_t *v;
        size_t len = utf8_length(s);
        if ((v = json_object_get(schema, "minLength")) && len < (size_t) json_integer_value(v))
                report(c, n, "'%s' is shorter than %lld characters", s, (long long) json_integer_value(v));
        if ((v = json_object_get(schema, "maxLength")) && len > (size_t) json_integer_value(v))
                report(c, n, "'%s' is longer than %lld characters", s, (long long) json_integer_value(v));
        const char *pat = json_string_value(json_object_get(schema, "pattern"));
        if (pat) {
                regex_t re;
                if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) != 0) {
                        schema_mistake(c, "not a POSIX extended regular expression", pat);
                        return;
                }
                if (regexec(&re, s, 0, NULL, 0) != 0)
                        report(c, n, "'%s' does not match %s", s, pat);
                regfree(&re);
        }
        const char *format = json_string_value(json_object_get(schema, "format"));
        if (format)
                check_format(c, format, s, n);
}

static void check_number(Checker *c, const json_t *schema, const json_t *value, const YamlNode *n) {
        json_t *v;
        double x = json_number_value(value);
        if ((v = json_object_get(schema, "minimum")) && x < json_number_value(v))
                report(c, n, "%s is below the minimum %g", yaml_node_scalar(n), json_number_value(v));
        if ((v = json_object_get(schema, "maximum")) && x > json_number_value(v))
                report(c, n, "%s is above the maximum %g", yaml_node_scalar(n), json_number_value(v));
}

/* The key's name as written, for messages: the YAML keys are scalars. */
static const char *key_text(const YamlNode *k) {
        return yaml_node_scalar(k) ?: "?";
}

static void check_object(Checker *c, const json_t *schema, const YamlNode *n) {
        const json_t *props = json_object_get(schema, "properties"), *addl = json_object_get(schema, "additionalProperties");
        const json_t *names = json_object_get(schema, "propertyNames"), *max = json_object_get(schema, "maxProperties");
        size_t count = yaml_node_count(n), i;
        if (max && count > (size_t) json_integer_value(max))
                report(c, n, "has more than %lld keys", (long long) json_integer_value(max));
        for (i = 0; i < count; i++) {
                const YamlNode *k = yaml_node_key(c->doc, n, i), *v = yaml_node_value(c->doc, n, i);
                const char *key = key_text(k);
                const json_t *sub = json_object_get(props, key);
                if (names)
                        check(c, names, k);
                if (sub)
                        check(c, sub, v);
                else if (json_is_false(addl))
                        report(c, k, "unknown key '%s'", key);
                else if (json_is_object(addl))
                        check(c, addl, v);
        }
        size_t j;
        json_t *req;
        json_array_foreach(json_object_get(schema, "required"), j, req) {
                const char *want = json_string_value(req);
                bool found = false;
                for (i = 0; i < count && !found; i++)
                        found = streq(key_text(yaml_node_key(c->doc, n, i)), want);
                if (!found)
                        report(c, n, "missing required key '%s'", want);
        }
}

static void check_array(Checker *c, const json_t *schema, const YamlNode *n) {
        const json_t *items = json_object_get(schema, "items"), *v;
        size_t count = yaml_node_count(n);
        if ((v = json_object_get(schema, "minItems")) && count < (size_t) json_integer_value(v))
                report(c, n, "needs at least %lld items", (long long) json_integer_value(v));
        if ((v = json_object_get(schema, "maxItems")) && count > (size_t) json_integer_value(v))
                report(c, n, "has more than %lld items", (long long) json_integer_value(v));
        bool unique = json_is_true(json_object_get(schema, "uniqueItems"));
        for (size_t i = 0; i < count; i++) {
                const YamlNode *item = yaml_node_item(c->doc, n, i);
                if (items)
                        check(c, items, item);
                if (!unique)
                        continue;
                json_t *a = node_value(c, item);
                for (size_t j = 0; a && j < i; j++) {
                        json_t *b = node_value(c, yaml_node_item(c->doc, n, j));
                        bool same = b && json_equal(a, b);
                        json_decref(b);
                        if (same) {
                                report(c, item, "repeats an earlier item");
                                break;
                        }
                }
                json_decref(a);
        }
}

static char *type_list(const json_t *type) {
        if (json_is_string(type))
                return xstrdup(json_string_value(type));
        _cleanup_free_ char *s = NULL;
        size_t i;
        json_t *t;
        json_array_foreach(type, i, t) {
                char *next = s ? xasprintf("%s or %s", s, json_string_value(t)) : xstrdup(json_string_value(t));
                free(s);
                s = next;
        }
        return TAKE_PTR(s) ?: xstrdup("?");
}

static void check(Checker *c, const json_t *schema, const YamlNode *n) {
        schema = resolve_ref(c, schema);
        if (!schema || c->schema_error)
                return;
        if (json_is_true(schema))
                return;
        if (!json_is_object(schema)) {
                schema_mistake(c, "a schema must be an object or true", "?");
                return;
        }
        const char *key;
        json_t *kv;
        json_object_foreach((json_t *) schema, key, kv) if (!keyword_known(key)) {
                schema_mistake(c, "unsupported keyword", key);
                return;
        }

        json_t *value = NULL;
        const char *have = node_type(c, n, &value);
        if (!have)
                return;
        const json_t *type = json_object_get(schema, "type");
        if (type) {
                bool ok = false;
                size_t i;
                json_t *t;
                if (json_is_string(type))
                        ok = type_matches(json_string_value(type), have);
                json_array_foreach(type, i, t) ok = ok || type_matches(json_string_value(t), have);
                if (!ok) {
                        _cleanup_free_ char *want = type_list(type);
                        if (value && !json_is_null(value))
                                report(c, n, "'%s' is a%s %s, expected %s", yaml_node_scalar(n),
                                       have[0] == 'i' ? "n" : "", have, want);
                        else
                                report(c, n, "expected %s, found %s", want, have);
                        json_decref(value);
                        return;
                }
        }
        const json_t *en = json_object_get(schema, "enum"), *cn = json_object_get(schema, "const");
        if (en || cn) {
                json_t *v = value ? json_incref(value) : node_value(c, n);
                bool ok = !en;
                size_t i;
                json_t *e;
                json_array_foreach(en, i, e) ok = ok || json_equal(e, v);
                if (cn && !json_equal(cn, v))
                        ok = false;
                if (!ok) {
                        _cleanup_free_ char *allowed = json_dumps(en ?: cn, JSON_COMPACT | JSON_ENCODE_ANY);
                        report(c, n, "%s is not one of %s", yaml_node_scalar(n) ?: "this value", allowed);
                }
                json_decref(v);
        }
        if (streq(have, "string"))
                check_string(c, schema, json_string_value(value), n);
        else if (streq(have, "integer") || streq(have, "number"))
                check_number(c, schema, value, n);
        else if (streq(have, "object"))
                check_object(c, schema, n);
        else if (streq(have, "array"))
                check_array(c, schema, n);
        json_decref(value);

        const json_t *one = json_object_get(schema, "oneOf"), *any = json_object_get(schema, "anyOf");
        if (one || any) {
                size_t i, matched = 0, best = SIZE_MAX, best_i = 0;
                json_t *s;
                json_array_foreach(one ?: any, i, s) {
                        size_t m = count_mistakes(c, s, n);
                        if (m == 0)
                                matched++;
                        /* On a tie, the alternative of the node's own type
                         * says more than "expected integer". */
                        const char *t = json_string_value(json_object_get(s, "type"));
                        if (m < best || (m == best && t && type_matches(t, have))) {
                                best = m;
                                best_i = i;
                        }
                }
                if (one && matched > 1) {
                        const char *d = json_string_value(json_object_get(json_array_get(one, 0), "description"));
                        report(c, n, "matches more than one alternative%s%s", d ? ": " : "", d ?: "");
                } else if (matched == 0) {
                        /* The nearest alternative's mistakes say the most. */
                        const char *d = json_string_value(json_object_get(json_array_get(one ?: any, best_i),
                                                                          "description"));
                        if (d)
                                report(c, n, "%s", d);
                        else
                                check(c, json_array_get(one ?: any, best_i), n);
                }
        }
}

int schema_check_yaml(const json_t *schema, YamlDoc *doc, const YamlNode *n, char **ret_error) {
        assert(schema && doc && ret_error);
        if (!n)
                n = yaml_doc_root(doc);
        if (!n) {
                *ret_error = xasprintf("%s: the file is empty", yaml_doc_filename(doc));
                return -EINVAL;
        }
        Checker c = { .root = schema, .doc = doc, .errors = NULL };
        /* A non-NULL list marks "reporting" (count_mistakes passes none). */
        c.errors = xcalloc(1, sizeof(char *));
        check(&c, schema, n);
        if (c.schema_error) {
                *ret_error = TAKE_PTR(c.schema_message);
                strv_free(c.errors);
                return c.schema_error;
        }
        if (c.n_errors == 0) {
                strv_free(c.errors);
                return 0;
        }
        _cleanup_free_ char *joined = NULL;
        for (char **e = c.errors; *e; e++) {
                char *next = joined ? xasprintf("%s\n%s", joined, *e) : xstrdup(*e);
                free(joined);
                joined = next;
        }
        if (c.n_errors > SCHEMA_MAX_ERRORS)
                *ret_error = xasprintf("%s\n%s: … and %zu more", joined, yaml_doc_filename(doc),
                                       c.n_errors - SCHEMA_MAX_ERRORS);
        else
                *ret_error = TAKE_PTR(joined);
        strv_free(c.errors);
        return -EINVAL;
}
