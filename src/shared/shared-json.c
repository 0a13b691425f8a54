/* The JSON walkers every module wrote for itself: stored text as a value,
 * "the string under key or NULL", and typed reads whose errors name the key
 * the user wrote. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "shared.h"

json_t *json_parse_or_string(const char *text) {
        if (!text)
                return json_null();
        /* JSON_ALLOW_NUL: results may hold "\u0000", which jansson refuses
         * to read back without it. */
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        return j ?: json_string(text) ?: json_null();
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
