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

const char *json_error_text(const json_error_t *e) {
        assert(e);
        if (json_error_code(e) == json_error_null_character)
                return "a string holds \\u0000 (NUL), which is not accepted here";
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

static size_t utf8_put(uint32_t v, char *out) {
        char b[4];
        size_t n;
        if (v < 0x80) {
                b[0] = (char) v;
                n = 1;
        } else if (v < 0x800) {
                b[0] = (char) (0xC0 | (v >> 6));
                b[1] = (char) (0x80 | (v & 0x3F));
                n = 2;
        } else if (v < 0x10000) {
                b[0] = (char) (0xE0 | (v >> 12));
                b[1] = (char) (0x80 | ((v >> 6) & 0x3F));
                b[2] = (char) (0x80 | (v & 0x3F));
                n = 3;
        } else {
                b[0] = (char) (0xF0 | (v >> 18));
                b[1] = (char) (0x80 | ((v >> 12) & 0x3F));
                b[2] = (char) (0x80 | ((v >> 6) & 0x3F));
                b[3] = (char) (0x80 | (v & 0x3F));
                n = 4;
        }
        if (out)
                memcpy(out, b, n);
        return n;
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
                n += utf8_put(cp, out ? out + n : NULL);
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

/* An object member's "KEY" and its colon: the byte past them, or NULL.
 * jansson refuses a key that holds a NUL ("\u0000"). */
static const char *skip_key(const char *p) {
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
        p = skip_space(end);
        return *p == ':' ? p + 1 : NULL;
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

/* The value at p: the byte past it, or NULL when jansson refuses it.
 * Iterative: a deep text does not recurse. */
static const char *skip_value(const char *p) {
        bool object[JSON_TEXT_MAX_DEPTH]; /* [i]: the container i deep is an object */
        size_t depth = 0;
        bool want_key = false;
        for (;;) {
                p = skip_space(p);
                if (want_key) {
                        p = skip_key(p);
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
                        p = skip_space(p + 1);
                        if (*p != (obj ? '}' : ']')) {
                                object[depth++] = obj;
                                want_key = obj;
                                continue;
                        }
                        p++;
                } else {
                        p = skip_scalar(p);
                        if (!p)
                                return NULL;
                }
                /* A whole value: the next item or member, or the end of
                 * its containers. */
                for (;;) {
                        if (depth == 0)
                                return p;
                        bool obj = object[depth - 1];
                        p = skip_space(p);
                        if (*p == ',') {
                                p++;
                                want_key = obj;
                                break;
                        }
                        if (*p != (obj ? '}' : ']'))
                                return NULL;
                        p++;
                        depth--;
                }
        }
}

bool json_text_loadable(const char *text) {
        assert(text);
        const char *p = skip_value(text);
        return p && *skip_space(p) == 0;
}
