/* YAML -> JSON with one scalar rule (the YAML 1.2 core schema; see
 * shared.h and docs/internals/yaml.md), and a walker over libyaml's
 * document tree that keeps each node's line and column, for parsers that
 * must point at the offending line (DAG files). Every document is checked
 * for keys given twice when it is loaded, so no reader has a "last wins". */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <yaml.h>

#include "shared.h"

struct YamlDoc {
        yaml_document_t doc;
        char *filename;
        size_t budget; /* nodes yaml_doc_json may still build */
};

/* A YamlNode is a yaml_node_t seen through an opaque name. */
static const yaml_node_t *Y(const YamlNode *n) {
        return (const yaml_node_t *) n;
}
static const YamlNode *N(const yaml_node_t *n) {
        return (const YamlNode *) n;
}

/* ---- the scalar rule ---- */

static bool span_all(const char *s, size_t n, const char *set) {
        for (size_t i = 0; i < n; i++)
                if (!s[i] || !strchr(set, s[i]))
                        return false;
        return true;
}

static bool is_one_of(const char *s, const char *const *words) {
        for (; *words; words++)
                if (streq(s, *words))
                        return true;
        return false;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_core_float(const char *s) {
        const char *p = s + (*s == '-' || *s == '+');
        size_t ip = strspn(p, "0123456789");
        p += ip;
        if (*p == '.') {
                size_t fp = strspn(p + 1, "0123456789");
                if (ip == 0 && fp == 0)
                        return false;
                p += 1 + fp;
        } else if (ip == 0)
                return false;
        if (*p == 'e' || *p == 'E') {
                p++;
                p += (*p == '-' || *p == '+');
                size_t ep = strspn(p, "0123456789");
                if (ep == 0)
                        return false;
                p += ep;
        }
        return *p == 0;
}

static int out_of_range(const char *s, char **ret_error) {
        *ret_error = xasprintf("'%s' is out of range for a JSON number (quote it to keep the text)", s);
        return -EINVAL;
}

static int plain_scalar(const char *s, json_t **ret, char **ret_error) {
        static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
        static const char *const trues[] = { "true", "True", "TRUE", NULL };
        static const char *const falses[] = { "false", "False", "FALSE", NULL };
        static const char *const infs[] = { ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
                                            "-.inf", "-.Inf", "-.INF", NULL };
        static const char *const nans[] = { ".nan", ".NaN", ".NAN", NULL };

        if (is_one_of(s, nulls)) {
                *ret = json_null();
                return 0;
        }
        if (is_one_of(s, trues) || is_one_of(s, falses)) {
                *ret = json_boolean(is_one_of(s, trues));
                return 0;
        }
        const char *digits = s + (*s == '-' || *s == '+');
        int base = 0;
        const char *from = NULL;
        if (*digits && span_all(digits, strlen(digits), "0123456789"))
                base = 10, from = s;
        else if (startswith(s, "0o") && s[2] && span_all(s + 2, strlen(s + 2), "01234567"))
                base = 8, from = s + 2;
        else if (startswith(s, "0x") && s[2] && span_all(s + 2, strlen(s + 2), "0123456789abcdefABCDEF"))
                base = 16, from = s + 2;
        if (base) {
                char *end;
                errno = 0;
                long long v = strtoll(from, &end, base);
                if (errno == ERANGE)
                        return out_of_range(s, ret_error);
                *ret = json_integer(v);
                return 0;
        }
        if (is_core_float(s)) {
                char *end;
                errno = 0;
                double v = strtod(s, &end);
                /* Underflow to 0 or a denormal is still the nearest value. */
                if (!isfinite(v))
                        return out_of_range(s, ret_error);
                *ret = json_real(v);
                return 0;
        }
        if (is_one_of(s, infs) || is_one_of(s, nans)) {
                *ret_error = xasprintf("'%s' is a YAML float JSON cannot hold (quote it to keep the text)", s);
                return -EINVAL;
        }
        *ret = json_string(s);
        return 0;
}

int yaml_scalar_to_json(const char *text, size_t len, bool plain, json_t **ret, char **ret_error) {
        assert(text);
        assert(ret);
        /* A plain scalar cannot hold NUL; quoted ones can ("\0"). */
        if (!plain || memchr(text, 0, len)) {
                json_t *v = json_stringn(text, len);
                if (!v) {
                        *ret_error = xstrdup("a string that is not valid UTF-8");
                        return -EINVAL;
                }
                *ret = v;
                return 0;
        }
        _cleanup_free_ char *s = xstrndup(text, len);
        return plain_scalar(s, ret, ret_error);
}

/* ---- keys given twice ---- */

/* One key of one mapping: its text once quotes and escapes are read (what
 * every reader compares: `a`, 'a' and "\x61" are one key), its pair's
 * place in the mapping and the node that says where the pair is written. */
typedef struct SeenKey {
        const char *text;
        size_t len;
        size_t pair;
        const yaml_node_t *at;
} SeenKey;

/* By text, then by place, so that equal keys sit together, first first. */
static int seen_key_cmp(const void *a, const void *b) {
        const SeenKey *x = a, *y = b;
        int c = memcmp(x->text, y->text, MIN(x->len, y->len));
        if (c != 0)
                return c;
        if (x->len != y->len)
                return x->len < y->len ? -1 : 1;
        return x->pair < y->pair ? -1 : x->pair > y->pair;
}

static bool same_text(const SeenKey *x, const SeenKey *y) {
        return x->len == y->len && memcmp(x->text, y->text, x->len) == 0;
}

/* A node that starts before `from` is not written here: libyaml resolves
 * an alias (*k) to the node it names, anchored earlier in the file, and
 * keeps no mark of the alias itself. */
static bool written_from(const yaml_node_t *n, size_t from) {
        return n && n->start_mark.index >= from;
}

/* Collects map's scalar keys into keys (room for all of its pairs) with
 * where each pair is written: the key, or for a key that is an alias the
 * value when that is written in place, else the anchor (the best mark
 * libyaml leaves). Keys that are not scalars are left to the readers,
 * which refuse them. -> how many were collected. */
static size_t collect_keys(yaml_document_t *doc, const yaml_node_t *map, SeenKey *keys) {
        size_t n = 0, from = map->start_mark.index, pair = 0;
        for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++, pair++) {
                const yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
                const yaml_node_t *at = k;
                if (written_from(k, from))
                        from = k->end_mark.index;
                else if (written_from(v, from))
                        at = v;
                if (written_from(v, from))
                        from = v->end_mark.index;
                if (!k || k->type != YAML_SCALAR_NODE)
                        continue;
                keys[n++] = (SeenKey){ .text = (const char *) k->data.scalar.value,
                                       .len = k->data.scalar.length,
                                       .pair = pair,
                                       .at = at };
        }
        return n;
}

/* Refuses a document in which a mapping has a key twice, at any depth:
 * "FILE:LINE:COL: duplicate key 'k' (first at line N)", LINE:COL the
 * second one. With several, the one whose second key comes first in the
 * file. Each mapping node is looked at once (an alias of a mapping is the
 * same node), its keys sorted: O(n log n) for a mapping of n keys,
 * whatever the keys are. */
static int check_unique_keys(YamlDoc *d, char **ret_error) {
        yaml_document_t *doc = &d->doc;
        size_t most = 0;
        for (const yaml_node_t *m = doc->nodes.start; m < doc->nodes.top; m++)
                if (m->type == YAML_MAPPING_NODE)
                        most = MAX(most, (size_t) (m->data.mapping.pairs.top - m->data.mapping.pairs.start));
        if (most < 2)
                return 0;
        _cleanup_free_ SeenKey *keys = xcalloc(most, sizeof(*keys));
        SeenKey first = {}, again = {};
        for (const yaml_node_t *m = doc->nodes.start; m < doc->nodes.top; m++) {
                if (m->type != YAML_MAPPING_NODE)
                        continue;
                size_t n = collect_keys(doc, m, keys);
                if (n < 2)
                        continue;
                qsort(keys, n, sizeof(*keys), seen_key_cmp);
                for (size_t i = 0, j; i < n; i = j) {
                        for (j = i + 1; j < n && same_text(&keys[i], &keys[j]); j++)
                                ;
                        if (j - i >= 2 && (!again.at || keys[i + 1].at->start_mark.index < again.at->start_mark.index))
                                first = keys[i], again = keys[i + 1];
                }
        }
        if (!again.at)
                return 0;
        unsigned line = (unsigned) first.at->start_mark.line + 1;
        if (first.at->start_mark.line == again.at->start_mark.line)
                return yaml_node_error(d, N(again.at), ret_error, "duplicate key '%s' (first at line %u, column %u)",
                                       again.text, line, (unsigned) first.at->start_mark.column + 1);
        return yaml_node_error(d, N(again.at), ret_error, "duplicate key '%s' (first at line %u)", again.text, line);
}

/* ---- documents ---- */

int yaml_doc_load(const char *text, size_t len, const char *filename, size_t max_nodes, YamlDoc **ret,
                  char **ret_error) {
        assert(text || len == 0);
        assert(ret);
        yaml_parser_t parser;
        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) (text ?: ""), len);
        YamlDoc *d = xcalloc(1, sizeof(*d));
        d->filename = xstrdup(filename ?: "<yaml>");
        d->budget = max_nodes ?: YAML_DEFAULT_MAX_NODES;
        if (!yaml_parser_load(&parser, &d->doc)) {
                int r = parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
                /* A crontab line written plain (a cron every five minutes)
                 * reads as an alias: a plain value that starts with '*'
                 * names an anchor. */
                bool alias = (parser.problem && strstr(parser.problem, "alias")) ||
                             (parser.context && strstr(parser.context, "alias"));
                *ret_error = xasprintf("%s:%zu:%zu: YAML error: %s%s%s%s", d->filename, parser.problem_mark.line + 1,
                                       parser.problem_mark.column + 1, parser.problem ?: "syntax error",
                                       parser.context ? " " : "", parser.context ?: "",
                                       alias ? " (a value that starts with '*' is an alias in YAML: quote it, "
                                               "as in cron: \"*/5 * * * *\")"
                                             : "");
                yaml_parser_delete(&parser);
                free(d->filename);
                free(d);
                return r;
        }
        yaml_parser_delete(&parser);
        int r = check_unique_keys(d, ret_error);
        if (r < 0) {
                yaml_doc_free(d);
                return r;
        }
        *ret = d;
        return 0;
}

YamlDoc *yaml_doc_free(YamlDoc *d) {
        if (!d)
                return NULL;
        yaml_document_delete(&d->doc);
        free(d->filename);
        free(d);
        return NULL;
}

const YamlNode *yaml_doc_root(YamlDoc *d) {
        assert(d);
        return N(yaml_document_get_root_node(&d->doc));
}

const char *yaml_doc_filename(const YamlDoc *d) {
        assert(d);
        return d->filename;
}

YamlKind yaml_node_kind(const YamlNode *n) {
        assert(n);
        switch (Y(n)->type) {
        case YAML_SEQUENCE_NODE:
                return YAML_KIND_SEQUENCE;
        case YAML_MAPPING_NODE:
                return YAML_KIND_MAPPING;
        case YAML_SCALAR_NODE:
        case YAML_NO_NODE:
        default:
                return YAML_KIND_SCALAR;
        }
}

unsigned yaml_node_line(const YamlNode *n) {
        return n ? (unsigned) Y(n)->start_mark.line + 1 : 0;
}

unsigned yaml_node_column(const YamlNode *n) {
        return n ? (unsigned) Y(n)->start_mark.column + 1 : 0;
}

const char *yaml_node_scalar(const YamlNode *n) {
        return n && Y(n)->type == YAML_SCALAR_NODE ? (const char *) Y(n)->data.scalar.value : NULL;
}

bool yaml_node_is_plain(const YamlNode *n) {
        return n && Y(n)->type == YAML_SCALAR_NODE && Y(n)->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

size_t yaml_node_count(const YamlNode *n) {
        if (!n)
                return 0;
        if (Y(n)->type == YAML_SEQUENCE_NODE)
                return (size_t) (Y(n)->data.sequence.items.top - Y(n)->data.sequence.items.start);
        if (Y(n)->type == YAML_MAPPING_NODE)
                return (size_t) (Y(n)->data.mapping.pairs.top - Y(n)->data.mapping.pairs.start);
        return 0;
}

const YamlNode *yaml_node_item(YamlDoc *d, const YamlNode *seq, size_t i) {
        assert(d);
        if (!seq || Y(seq)->type != YAML_SEQUENCE_NODE || i >= yaml_node_count(seq))
                return NULL;
        return N(yaml_document_get_node(&d->doc, Y(seq)->data.sequence.items.start[i]));
}

const YamlNode *yaml_node_key(YamlDoc *d, const YamlNode *map, size_t i) {
        assert(d);
        if (!map || Y(map)->type != YAML_MAPPING_NODE || i >= yaml_node_count(map))
                return NULL;
        return N(yaml_document_get_node(&d->doc, Y(map)->data.mapping.pairs.start[i].key));
}

const YamlNode *yaml_node_value(YamlDoc *d, const YamlNode *map, size_t i) {
        assert(d);
        if (!map || Y(map)->type != YAML_MAPPING_NODE || i >= yaml_node_count(map))
                return NULL;
        return N(yaml_document_get_node(&d->doc, Y(map)->data.mapping.pairs.start[i].value));
}

/* ---- conversion ---- */

int yaml_node_verror(const YamlDoc *d, const YamlNode *n, char **ret_error, const char *fmt, va_list ap) {
        assert(d);
        assert(ret_error);
        _cleanup_free_ char *m = NULL;
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        *ret_error = n ? xasprintf("%s:%u:%u: %s", d->filename, yaml_node_line(n), yaml_node_column(n), m ?: "error")
                       : xasprintf("%s: %s", d->filename, m ?: "error");
        return -EINVAL;
}

int yaml_node_error(const YamlDoc *d, const YamlNode *n, char **ret_error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = yaml_node_verror(d, n, ret_error, fmt, ap);
        va_end(ap);
        return r;
}

static int node_json(YamlDoc *d, const YamlNode *n, unsigned depth, json_t **ret, char **ret_error) {
        if (depth > YAML_MAX_DEPTH)
                return yaml_node_error(d, n, ret_error, "nested more than %d levels deep", YAML_MAX_DEPTH);
        if (d->budget == 0)
                return yaml_node_error(d, n, ret_error, "the document is too large (aliases count each time they are used)");
        d->budget--;
        const yaml_node_t *y = Y(n);
        switch (y->type) {
        case YAML_SCALAR_NODE: {
                _cleanup_free_ char *m = NULL;
                int r = yaml_scalar_to_json((const char *) y->data.scalar.value, y->data.scalar.length,
                                            y->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, ret, &m);
                if (r < 0)
                        return yaml_node_error(d, n, ret_error, "%s", m);
                return 0;
        }
        case YAML_SEQUENCE_NODE: {
                json_t *a = json_array();
                for (size_t i = 0; i < yaml_node_count(n); i++) {
                        json_t *v;
                        const YamlNode *c = yaml_node_item(d, n, i);
                        int r = c ? node_json(d, c, depth + 1, &v, ret_error)
                                  : yaml_node_error(d, n, ret_error, "a broken sequence item");
                        if (r < 0) {
                                json_decref(a);
                                return r;
                        }
                        json_array_append_new(a, v);
                }
                *ret = a;
                return 0;
        }
        case YAML_MAPPING_NODE: {
                json_t *o = json_object();
                for (size_t i = 0; i < yaml_node_count(n); i++) {
                        const YamlNode *k = yaml_node_key(d, n, i), *c = yaml_node_value(d, n, i);
                        const char *key = yaml_node_scalar(k);
                        json_t *v;
                        int r;
                        /* JSON keys are strings: a key that is a list or a
                         * mapping has no JSON spelling. A NUL would cut it. */
                        if (!key || strlen(key) != Y(k)->data.scalar.length)
                                r = yaml_node_error(d, k ?: n, ret_error, "mapping keys must be plain strings");
                        else if (!c)
                                r = yaml_node_error(d, k, ret_error, "a broken mapping value");
                        else
                                r = node_json(d, c, depth + 1, &v, ret_error);
                        if (r < 0) {
                                json_decref(o);
                                return r;
                        }
                        json_object_set_new(o, key, v);
                }
                *ret = o;
                return 0;
        }
        case YAML_NO_NODE:
        default:
                return yaml_node_error(d, n, ret_error, "unexpected YAML node");
        }
}

int yaml_doc_json(YamlDoc *d, const YamlNode *n, json_t **ret, char **ret_error) {
        assert(d);
        assert(ret);
        if (!n)
                n = yaml_doc_root(d);
        if (!n) { /* an empty document */
                *ret = json_null();
                return 0;
        }
        return node_json(d, n, 0, ret, ret_error);
}

int yaml_to_json(const char *text, size_t len, const char *filename, json_t **ret, char **ret_error) {
        _cleanup_(yaml_doc_freep) YamlDoc *d = NULL;
        int r = yaml_doc_load(text, len, filename, 0, &d, ret_error);
        if (r < 0)
                return r;
        return yaml_doc_json(d, NULL, ret, ret_error);
}
