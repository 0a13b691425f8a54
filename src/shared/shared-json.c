/* The JSON walkers every module wrote for itself: stored text as a value,
 * "the string under key or NULL", and typed reads whose errors name the key
 * the user wrote. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shared.h"

static const char *skip_space(const char *p);

json_t *json_parse_or_string(const char *text) {
        if (!text)
                return json_null();
        /* JSON_ALLOW_NUL: results may hold "\u0000", which jansson refuses
         * to read back without it. */
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        return j ?: json_string(text) ?: json_null();
}

json_t *json_parse_or_string_take(char **text) {
        assert(text);
        _cleanup_free_ char *t = TAKE_PTR(*text);
        const char *end;
        /* One string literal with nothing but white space after it, which
         * json_loads() reads as that string: decoded here instead. */
        if (t && json_literal_decode(t, NULL, &end) >= 0 && !*skip_space(end)) {
                ssize_t n = json_literal_decode(t, t, &end);
                return json_stringn_nocheck(t, (size_t) n) ?: json_null();
        }
        return json_parse_or_string(t);
}

const char *json_get_string(const json_t *o, const char *key) {
        assert(key);
        return json_string_value(json_object_get(o, key));
}

json_int_t json_get_integer(const json_t *o, const char *key, json_int_t def) {
        assert(key);
        json_t *v = json_object_get(o, key);
        return json_is_integer(v) ? json_integer_value(v) : def;
}

int json_want_uint(const json_t *v, const char *key, uint64_t *ret, char **ret_error) {
        assert(key);
        assert(ret);
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
                *ret_error = xasprintf("'%s' must be a non-negative integer", key);
                return -EINVAL;
        }
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

int json_want_bool(const json_t *v, const char *key, bool *ret, char **ret_error) {
        assert(key);
        assert(ret);
        if (!json_is_boolean(v)) {
                /* The one surprise of YAML 1.2 for YAML 1.1 users. */
                *ret_error = json_is_string(v) ? xasprintf("'%s' must be true or false (not '%s')", key,
                                                           json_string_value(v))
                                               : xasprintf("'%s' must be true or false", key);
                return -EINVAL;
        }
        *ret = json_is_true(v);
        return 0;
}

int json_want_string(const json_t *v, const char *key, char **ret, char **ret_error) {
        assert(key);
        assert(ret);
        if (!json_is_string(v)) {
                *ret_error = xasprintf("'%s' must be a string", key);
                return -EINVAL;
        }
        free(*ret);
        *ret = xstrdup(json_string_value(v));
        return 0;
}

int json_want_strv(const json_t *v, const char *key, char ***ret, char **ret_error) {
        assert(key);
        assert(ret);
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
        *ret = l ?: xcalloc(1, sizeof(char *));
        return 0;
}

json_t *json_strv_new(char *const *v) {
        json_t *a = json_array();
        for (char *const *s = v; s && *s; s++)
                json_array_append_new(a, json_string(*s));
        return a;
}

json_t *json_raw_kwarg_item(const json_t *v) {
        if (json_is_true(v))
                return json_pack("{sb}", "bare", true);
        bool words = json_is_array(v) && json_array_size(v) > 0;
        size_t i;
        json_t *w;
        json_array_foreach(v, i, w)
                words = words && json_is_string(w);
        if (!json_is_string(v) && !words)
                return NULL;
        return json_pack("{sO}", "raw", (json_t *) v);
}

const char *json_error_text(const json_error_t *e) {
        assert(e);
        if (json_error_code(e) == json_error_null_character)
                return "a string holds \\u0000 (NUL), which is not accepted here";
        /* jansson's "too big integer": Python's json (and so Lambda's
         * runtime) reads any integer; the daemon, its store and clients
         * read 64 bits (docs/python.md), so say that and what to do. */
        if (json_error_code(e) == json_error_numeric_overflow && strstr(e->text, "integer"))
                return "an integer beyond 64 bits (JSON integers are read as -2**63 .. 2**63-1 here): send it as a "
                       "string";
        return e->text;
}

int json_bytes_marker_decode(const json_t *v, uint8_t **ret, size_t *ret_len) {
        assert(ret);
        assert(ret_len);
        if (!json_is_object(v) || json_object_size(v) != 1)
                return 0;
        const char *b64 = json_get_string(v, "$bytes");
        if (!b64)
                return 0;
        char *out;
        int r = base64_decode(b64, strlen(b64), &out, ret_len);
        if (r < 0)
                return r;
        *ret = (uint8_t *) out;
        return 1;
}

/* The bytes each input byte becomes inside a JSON string, as json_dumps()
 * writes it: 1 as is (UTF-8 continuation and lead bytes included), 2 for
 * the short escapes, 6 for the other control characters (\u00XX). */
static const unsigned char json_escape_len[256] = {
        [0x00 ... 0x07] = 6, ['\b'] = 2, ['\t'] = 2, ['\n'] = 2, [0x0b] = 6, ['\f'] = 2, ['\r'] = 2,
        [0x0e ... 0x1f] = 6, [0x20 ... 0x21] = 1, ['"'] = 2, [0x23 ... 0x5b] = 1, ['\\'] = 2, [0x5d ... 0xff] = 1,
};

/* Two passes: the escaped length first, then the bytes written in place
 * into one buf_extend(). A JSON text held as a string (a queued request's
 * args and Lambda context) has a quote every few bytes, and an append per
 * escape cost ~4k instructions per such string (docs/internals/performance-log.md,
 * round 10b). */
int json_buf_append_string(Buf *b, const char *s) {
        if (!s)
                return buf_append(b, "null", 4);
        size_t n = 2, len = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++, len++)
                n += json_escape_len[*p];
        char *o;
        int r = buf_extend(b, n, &o);
        if (r < 0)
                return r;
        *o++ = '"';
        if (n == len + 2) {
                memcpy(o, s, len);
                o += len;
        }
        else
                for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                        unsigned char ch = *p;
                        if (json_escape_len[ch] == 1) {
                                *o++ = (char) ch;
                                continue;
                        }
                        *o++ = '\\';
                        switch (ch) {
                        case '"': *o++ = '"'; break;
                        case '\\': *o++ = '\\'; break;
                        case '\b': *o++ = 'b'; break;
                        case '\f': *o++ = 'f'; break;
                        case '\n': *o++ = 'n'; break;
                        case '\r': *o++ = 'r'; break;
                        case '\t': *o++ = 't'; break;
                        default: {
                                static const char hex[] = "0123456789ABCDEF";
                                memcpy(o, "u00", 3);
                                o[3] = hex[ch >> 4];
                                o[4] = hex[ch & 15];
                                o += 5;
                        }
                        }
                }
        *o = '"';
        return 0;
}

int json_buf_append_member(Buf *b, const char *member, const char *s) {
        int r = buf_appends(b, member);
        return r < 0 ? r : json_buf_append_string(b, s);
}

/* The UTF-8 sequence at p as jansson's stream reads it (utf8_check_first
 * and utf8_check_full): its length, or 0 when it is not one (an overlong
 * form, a surrogate, past U+10FFFF, a stray continuation byte). */
static size_t utf8_sequence(const unsigned char *p) {
        unsigned c = p[0];
        size_t n;
        uint32_t v;
        if (c < 0x80)
                return 1;
        if (c < 0xC2 || c > 0xF4)
                return 0;
        n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        v = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xC0) != 0x80)
                        return 0;
                v = (v << 6) | (p[i] & 0x3F);
        }
        if ((n == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)))
                return 0;
        return n;
}

static int hex4(const char *p) {
        int v = 0;
        for (int i = 0; i < 4; i++) {
                char c = p[i];
                int d = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
                if (d < 0)
                        return -1;
                v = v * 16 + d;
        }
        return v;
}

ssize_t json_literal_decode(const char *s, char *out, const char **ret_end) {
        assert(s && ret_end);
        if (*s != '"')
                return -EINVAL;
        const char *p = s + 1;
        size_t n = 0;
        for (;;) {
                unsigned char c = (unsigned char) *p;
                if (c == '"')
                        break;
                if (c < 0x20) /* a control character, or the text's end */
                        return -EINVAL;
                if (c < 0x80 && c != '\\') {
                        if (out)
                                out[n] = (char) c;
                        n++;
                        p++;
                        continue;
                }
                if (c != '\\') {
                        size_t k = utf8_sequence((const unsigned char *) p);
                        if (k == 0)
                                return -EINVAL;
                        if (out)
                                memmove(out + n, p, k);
                        n += k;
                        p += k;
                        continue;
                }
                char e = p[1];
                const char *simple = strchr("\"\\/bfnrt", e);
                if (e && simple) {
                        if (out)
                                out[n] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
                        n++;
                        p += 2;
                        continue;
                }
                if (e != 'u')
                        return -EINVAL;
                int v = hex4(p + 2);
                if (v < 0)
                        return -EINVAL;
                p += 6;
                uint32_t cp = (uint32_t) v;
                if (v >= 0xD800 && v <= 0xDBFF) {
                        int v2 = p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
                        if (v2 < 0xDC00 || v2 > 0xDFFF)
                                return -EINVAL;
                        p += 6;
                        cp = (((uint32_t) v - 0xD800) << 10) + ((uint32_t) v2 - 0xDC00) + 0x10000;
                } else if (v >= 0xDC00 && v <= 0xDFFF)
                        return -EINVAL;
                n += utf8_encode(cp, out ? out + n : NULL);
        }
        *ret_end = p + 1;
        return (ssize_t) n;
}

static const char *skip_space(const char *p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                p++;
        return p;
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* A number as jansson's lexer reads it: NULL when it refuses it (no digit,
 * a leading zero, an integer beyond 64 bits, a real that overflows). */
static const char *skip_number(const char *p) {
        const char *start = p;
        if (*p == '-')
                p++;
        if (*p == '0') {
                p++;
                if (is_digit(*p))
                        return NULL;
        } else if (is_digit(*p)) {
                while (is_digit(*p))
                        p++;
        } else
                return NULL;
        if (*p != '.' && *p != 'e' && *p != 'E') {
                /* No leading zeros: 20 digits are past INT64_MAX. */
                char tmp[32];
                size_t len = (size_t) (p - start);
                if (len >= sizeof(tmp))
                        return NULL;
                memcpy(tmp, start, len);
                tmp[len] = 0;
                errno = 0;
                (void) strtoll(tmp, NULL, 10);
                return errno == ERANGE ? NULL : p;
        }
        if (*p == '.') {
                p++;
                if (!is_digit(*p))
                        return NULL;
                while (is_digit(*p))
                        p++;
        }
        if (*p == 'e' || *p == 'E') {
                p++;
                if (*p == '+' || *p == '-')
                        p++;
                if (!is_digit(*p))
                        return NULL;
                while (is_digit(*p))
                        p++;
        }
        /* The C locale's strtod() reads exactly the token (the CLI and the
         * daemon never call setlocale()). */
        errno = 0;
        double d = strtod(start, NULL);
        if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
                return NULL;
        return p;
}

/* Where walk_value() writes what it reads (NULL: it only checks): each
 * piece as json_dump_callback() hands it over for the parsed value. */
typedef struct JsonEmit {
        json_dump_callback_t cb;
        void *data;
        size_t flags;
        bool failed;
} JsonEmit;

static void emit(JsonEmit *e, const char *piece, size_t n) {
        if (e && !e->failed && e->cb(piece, n, e->data) < 0)
                e->failed = true;
}

/* v dumped through e (taken). */
static void emit_value(JsonEmit *e, json_t *v) {
        if (!v || json_dump_callback(v, e->cb, e->data, e->flags | JSON_ENCODE_ANY) < 0)
                e->failed = true;
        json_decref(v);
}

/* The scalar text [p, end), which jansson reads, as jansson dumps what it
 * reads: most of it is already spelled so (a string without an escape,
 * an integer, a word) and goes out as it is; escapes and reals go through
 * jansson itself, one scalar at a time. */
static void emit_scalar(JsonEmit *e, const char *p, const char *end) {
        size_t n = (size_t) (end - p);
        if (!e || e->failed)
                return;
        if (*p == '"') {
                if (!memchr(p, '\\', n)) {
                        /* Its bytes are UTF-8 without a control character
                         * (checked): jansson writes them as they are. */
                        emit(e, "\"", 1);
                        if (n > 2)
                                emit(e, p + 1, n - 2);
                        emit(e, "\"", 1);
                } else
                        emit_value(e, json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL));
        } else if (*p == '-' || is_digit(*p)) {
                if (memchr(p, '.', n) || memchr(p, 'e', n) || memchr(p, 'E', n))
                        emit_value(e, json_real(strtod(p, NULL)));
                else if (n == 2 && p[0] == '-' && p[1] == '0')
                        emit(e, "0", 1);
                else
                        emit(e, p, n);
        } else
                emit(e, p, n);
}

/* An object member's "KEY" and its colon: the byte past them, or NULL.
 * jansson refuses a key that holds a NUL ("\u0000"). */
static const char *skip_key(const char *p, JsonEmit *e) {
        const char *end;
        ssize_t n = json_literal_decode(p, NULL, &end);
        if (n < 0)
                return NULL;
        if (memmem(p, (size_t) (end - p), "\\u0000", 6)) {
                _cleanup_free_ char *k = xmalloc((size_t) n + 1);
                (void) json_literal_decode(p, k, &end);
                if (memchr(k, 0, (size_t) n))
                        return NULL;
        }
        /* jansson dumps a key as it dumps a string value. */
        emit_scalar(e, p, end);
        p = skip_space(end);
        if (*p != ':')
                return NULL;
        emit(e, ":", 1);
        return p + 1;
}

/* A scalar at p: the byte past it, or NULL when jansson refuses it. */
static const char *skip_scalar(const char *p) {
        const char *end;
        if (*p == '"')
                return json_literal_decode(p, NULL, &end) < 0 ? NULL : end;
        if (*p == '-' || is_digit(*p))
                return skip_number(p);
        /* jansson reads a whole run of letters as the word. */
        const char *w = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
                p++;
        size_t n = (size_t) (p - w);
        if ((n == 4 && (strneq(w, "true", 4) || strneq(w, "null", 4))) || (n == 5 && strneq(w, "false", 5)))
                return p;
        return NULL;
}

/* The value at p: the byte past it, or NULL when jansson refuses it; with
 * e, written through it as it is read. Iterative: a deep text does not
 * recurse. */
static const char *walk_value(const char *p, JsonEmit *e) {
        bool object[JSON_TEXT_MAX_DEPTH]; /* [i]: the container i deep is an object */
        size_t depth = 0;
        bool want_key = false;
        for (;;) {
                p = skip_space(p);
                if (want_key) {
                        p = skip_key(p, e);
                        if (!p)
                                return NULL;
                        want_key = false;
                        continue;
                }
                /* jansson's parse_value() counts the value itself. */
                if (depth + 1 > JSON_TEXT_MAX_DEPTH)
                        return NULL;
                if (*p == '{' || *p == '[') {
                        bool obj = *p == '{';
                        emit(e, p, 1);
                        p = skip_space(p + 1);
                        if (*p != (obj ? '}' : ']')) {
                                object[depth++] = obj;
                                want_key = obj;
                                continue;
                        }
                        emit(e, p, 1);
                        p++;
                } else {
                        const char *start = p;
                        p = skip_scalar(p);
                        if (!p)
                                return NULL;
                        emit_scalar(e, start, p);
                }
                /* A whole value: the next item or member, or the end of
                 * its containers. */
                for (;;) {
                        if (depth == 0)
                                return p;
                        bool obj = object[depth - 1];
                        p = skip_space(p);
                        if (*p == ',') {
                                emit(e, ",", 1);
                                p++;
                                want_key = obj;
                                break;
                        }
                        if (*p != (obj ? '}' : ']'))
                                return NULL;
                        emit(e, p, 1);
                        p++;
                        depth--;
                }
        }
}

static const char *skip_value(const char *p) {
        return walk_value(p, NULL);
}

bool json_text_loadable(const char *text) {
        assert(text);
        const char *p = skip_value(text);
        return p && *skip_space(p) == 0;
}

int json_text_dump(const char *text, size_t flags, json_dump_callback_t callback, void *data) {
        assert(text && callback);
        /* Compact, unindented: the pieces between values are one byte. */
        assert(flags & JSON_COMPACT);
        assert(!(flags & (JSON_INDENT(31) | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH)));
        if (!json_text_loadable(text))
                return -EINVAL;
        JsonEmit e = { .cb = callback, .data = data, .flags = flags };
        (void) walk_value(text, &e);
        return e.failed ? -EIO : 0;
}

bool json_text_names_member(const char *text, const char *key) {
        assert(text && key);
        if (!json_text_loadable(text))
                return false;
        /* The text reads (checked above): the walk trusts its grammar. */
        const char *p = skip_space(text);
        if (*p != '{')
                return false;
        size_t kl = strlen(key);
        for (p = skip_space(p + 1); *p == '"'; p = skip_space(skip_space(p) + 1)) {
                const char *end;
                ssize_t n = json_literal_decode(p, NULL, &end);
                if ((size_t) n == kl) {
                        _cleanup_free_ char *name = xmalloc((size_t) n + 1);
                        (void) json_literal_decode(p, name, &end);
                        if (memcmp(name, key, kl) == 0)
                                return true;
                }
                p = skip_value(skip_space(skip_space(end) + 1)); /* past ':' and the value */
                if (*skip_space(p) != ',')
                        return false;
        }
        return false;
}

/* The held value's one key: "\0json", a NUL first (5 bytes). */
static const char HELD_KEY[] = "\0json";
#define HELD_KEY_LEN (sizeof(HELD_KEY) - 1)

/* JSON_HELD_MIN, or PYSPRINTER_TEST_HELD_MIN: the tests hold small
 * values too, to compare their bytes. */
static size_t held_min(void) {
        static size_t min; /* read once; threads that race store the same */
        size_t m = __atomic_load_n(&min, __ATOMIC_RELAXED);
        if (!m) {
                const char *e = secure_getenv("PYSPRINTER_TEST_HELD_MIN");
                uint64_t v;
                m = e && parse_uint64(e, &v) >= 0 && v > 0 ? (size_t) v : JSON_HELD_MIN;
                __atomic_store_n(&min, m, __ATOMIC_RELAXED);
        }
        return m;
}

json_t *json_held_new(const char *text, size_t len) {
        assert(text);
        size_t i = 0;
        while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r'))
                i++;
        /* A small value costs less as nodes than as its text walked at
         * each print; what is held is what would be many nodes. */
        if (len < held_min() || i == len || (text[i] != '[' && text[i] != '{') || memchr(text, 0, len))
                return NULL;
        /* A marker a reader looks for, or a key spelled with an escape that
         * could be one: parsed, as before. */
        if (memmem(text, len, "\"$bytes\"", 8) || memmem(text, len, "\"$pickle\"", 9) ||
            memmem(text, len, "\\u0024", 6))
                return NULL;
        json_t *s = json_stringn_nocheck(text, len);
        if (!s || !json_text_loadable(json_string_value(s))) {
                json_decref(s);
                return NULL;
        }
        json_t *o = json_object();
        if (!o || json_object_setn_new_nocheck(o, HELD_KEY, HELD_KEY_LEN, s) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

json_t *json_held_or_parse(const char *text) {
        json_t *held = text ? json_held_new(text, strlen(text)) : NULL;
        return held ?: json_parse_or_string(text);
}

json_t *json_held_or_parse_take(char **text) {
        assert(text);
        json_t *held = *text ? json_held_new(*text, strlen(*text)) : NULL;
        if (!held)
                return json_parse_or_string_take(text);
        free(*text);
        *text = NULL;
        return held;
}

const char *json_held_text(const json_t *v) {
        if (!json_is_object(v) || json_object_size(v) != 1)
                return NULL;
        return json_string_value(json_object_getn(v, HELD_KEY, HELD_KEY_LEN));
}

/* Whether v is or holds a held value. */
static bool has_held(const json_t *v) {
        if (json_held_text(v))
                return true;
        if (json_is_array(v)) {
                for (size_t i = 0; i < json_array_size(v); i++)
                        if (has_held(json_array_get(v, i)))
                                return true;
        } else if (json_is_object(v)) {
                const char *k;
                json_t *x;
                json_object_foreach((json_t *) v, k, x)
                        if (has_held(x))
                                return true;
        }
        return false;
}

int json_dump_held(const json_t *v, size_t flags, json_dump_callback_t callback, void *data) {
        assert(v && callback);
        const char *held = json_held_text(v);
        if (held)
                return json_text_dump(held, flags, callback, data);
        /* What holds none is jansson's to write, as it always was. */
        if (!has_held(v))
                return json_dump_callback(v, callback, data, flags | JSON_ENCODE_ANY) < 0 ? -EIO : 0;
        /* A container: its members as jansson's compact dump writes them
         * (insertion order), each held value from its text. */
        bool obj = json_is_object(v);
        if (callback(obj ? "{" : "[", 1, data) < 0)
                return -EIO;
        if (obj) {
                const char *key;
                size_t key_len, i = 0;
                json_t *x;
                json_object_keylen_foreach((json_t *) v, key, key_len, x) {
                        json_t *k = json_stringn_nocheck(key, key_len);
                        int r = (i++ && callback(",", 1, data) < 0) || !k ||
                                                json_dump_callback(k, callback, data, flags | JSON_ENCODE_ANY) < 0 ||
                                                callback(":", 1, data) < 0
                                        ? -EIO
                                        : json_dump_held(x, flags, callback, data);
                        json_decref(k);
                        if (r < 0)
                                return r;
                }
        } else {
                for (size_t i = 0; i < json_array_size(v); i++) {
                        if (i && callback(",", 1, data) < 0)
                                return -EIO;
                        int r = json_dump_held(json_array_get(v, i), flags, callback, data);
                        if (r < 0)
                                return r;
                }
        }
        return callback(obj ? "}" : "]", 1, data) < 0 ? -EIO : 0;
}

int json_buf_dump(const char *piece, size_t size, void *data) {
        return buf_append(data, piece, size) < 0 ? -1 : 0;
}

/* v as text in an allocation of its size: by json_dump_short() (short)
 * or json_dump_held() with flags. NULL when jansson failed. */
static char *dumps_with(const json_t *v, size_t flags, bool short_reals) {
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        int r = short_reals ? json_dump_short(v, false, json_buf_dump, &b)
                            : json_dump_held(v, flags, json_buf_dump, &b);
        if (r < 0) {
                buf_free(&b);
                return NULL;
        }
        return buf_steal_fit(&b);
}

char *json_dumps_held(const json_t *v, size_t flags) {
        if (!v)
                return NULL;
        if (!has_held(v))
                return json_dumps(v, flags | JSON_ENCODE_ANY);
        return dumps_with(v, flags, false);
}

/* json_dump_short()'s writer: jansson hands each real, each quote that
 * opens or closes a string and each "," and ":" as a piece of its own
 * (and json_text_dump() does the same), so outside strings a real is
 * respelled as json_shorten_reals() would respell it in the whole text,
 * and "," and ":" are spaced as the CLI's json_reformat(…, 0) spaces
 * them. */
typedef struct ShortStream {
        json_dump_callback_t out;
        void *data;
        bool spaced;
        bool in_string;
} ShortStream;

static int short_write(const char *piece, size_t size, void *userdata) {
        ShortStream *o = userdata;
        if (size == 1 && piece[0] == '"')
                o->in_string = !o->in_string;
        else if (!o->in_string && size == 1 && o->spaced && (piece[0] == ',' || piece[0] == ':'))
                return o->out(piece[0] == ',' ? ", " : ": ", 2, o->data);
        else if (!o->in_string && size < 64 &&
                 (memchr(piece, '.', size) || memchr(piece, 'e', size) || memchr(piece, 'E', size))) {
                char tmp[64];
                memcpy(tmp, piece, size);
                tmp[size] = 0;
                _cleanup_free_ char *t = json_shorten_reals(tmp);
                return o->out(t, strlen(t), o->data);
        }
        return o->out(piece, size, o->data);
}

int json_dump_short(const json_t *v, bool spaced, json_dump_callback_t out, void *data) {
        assert(v && out);
        ShortStream o = { .out = out, .data = data, .spaced = spaced };
        return json_dump_held(v, JSON_COMPACT | JSON_REAL_PRECISION(17), short_write, &o);
}

char *json_dumps_short(const json_t *v) {
        return v ? dumps_with(v, 0, true) : NULL;
}

/* The scalar text [p, end), which jansson reads, as the value it reads. */
static json_t *scalar_value(const char *p, const char *end) {
        size_t n = (size_t) (end - p);
        if (*p == '"') {
                if (!memchr(p, '\\', n))
                        return json_stringn_nocheck(p + 1, n - 2);
                _cleanup_free_ char *s = xmalloc(n);
                const char *e;
                ssize_t k = json_literal_decode(p, s, &e);
                return k < 0 ? NULL : json_stringn_nocheck(s, (size_t) k);
        }
        if (*p == '-' || is_digit(*p)) {
                if (memchr(p, '.', n) || memchr(p, 'e', n) || memchr(p, 'E', n))
                        return json_real(strtod(p, NULL));
                return json_integer((json_int_t) strtoll(p, NULL, 10));
        }
        return *p == 't' ? json_true() : *p == 'f' ? json_false() : json_null();
}

json_t *json_loads_held(const char *text, size_t len, const char *key) {
        assert(text && key);
        if (strlen(text) != len || !json_text_loadable(text))
                return NULL;
        /* The text reads (checked above): the walk below trusts its grammar. */
        json_t **stack = xcalloc(JSON_TEXT_MAX_DEPTH, sizeof(json_t *));
        size_t depth = 0;
        json_t *root = NULL;
        _cleanup_free_ char *name = NULL; /* the member whose value comes next */
        size_t name_len = 0;
        bool want_key = false;
        const char *p = text;
        for (;;) {
                p = skip_space(p);
                if (want_key) {
                        const char *end;
                        ssize_t n = json_literal_decode(p, NULL, &end);
                        free(name);
                        name = xmalloc((size_t) n + 1);
                        (void) json_literal_decode(p, name, &end);
                        name[n] = 0;
                        name_len = (size_t) n;
                        p = skip_space(end) + 1; /* past ':' */
                        want_key = false;
                        continue;
                }
                json_t *v = NULL;
                bool open = false;
                if ((*p == '{' || *p == '[') && depth > 0 && json_is_object(stack[depth - 1]) &&
                    name_len == strlen(key) && memcmp(name, key, name_len) == 0) {
                        const char *end = skip_value(p);
                        v = json_held_new(p, (size_t) (end - p));
                        if (v)
                                p = end;
                }
                if (!v && (*p == '{' || *p == '[')) {
                        v = *p == '{' ? json_object() : json_array();
                        open = true;
                        p++;
                } else if (!v) {
                        const char *end = skip_scalar(p);
                        v = scalar_value(p, end);
                        p = end;
                }
                if (!v)
                        goto fail;
                if (depth == 0)
                        root = v;
                else if (json_is_object(stack[depth - 1])) {
                        if (json_object_setn_new_nocheck(stack[depth - 1], name, name_len, v) < 0)
                                goto fail;
                } else if (json_array_append_new(stack[depth - 1], v) < 0)
                        goto fail;
                if (open) {
                        stack[depth++] = v;
                        p = skip_space(p);
                        want_key = json_is_object(v) && *p != '}';
                        if (*p != '}' && *p != ']')
                                continue;
                }
                /* A whole value: the next item or member, or the end of
                 * its containers. */
                for (;;) {
                        p = skip_space(p);
                        if (depth == 0) {
                                free(stack);
                                return root;
                        }
                        if (*p == ',') {
                                p++;
                                want_key = json_is_object(stack[depth - 1]);
                                break;
                        }
                        p++; /* '}' or ']' */
                        depth--;
                }
        }
fail:
        free(stack);
        json_decref(root);
        return NULL;
}
