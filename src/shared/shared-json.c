/* The JSON walkers every module wrote for itself: stored text as a value,
 * "the string under key or NULL", and typed reads whose errors name the key
 * the user wrote. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
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

int json_bytes_marker_decode(const json_t *v, uint8_t **ret, size_t *ret_len) {
        assert(ret);
        assert(ret_len);
        if (!json_is_object(v) || json_object_size(v) != 1)
                return 0;
        const char *b64 = json_get_string(v, "$bytes");
        if (!b64)
                return 0;
        size_t n = strlen(b64);
        if (n % 4 != 0 || n > INT_MAX)
                return -EINVAL;
        uint8_t *out = malloc(n / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        /* EVP_DecodeBlock counts the padding as zero bytes: take them off. */
        int len = n ? EVP_DecodeBlock(out, (const unsigned char *) b64, (int) n) : 0;
        if (len < 0) {
                free(out);
                return -EINVAL;
        }
        size_t pad = (n >= 1 && b64[n - 1] == '=') + (n >= 2 && b64[n - 2] == '=');
        *ret_len = (size_t) len - pad;
        out[*ret_len] = 0;
        *ret = out;
        return 1;
}

int json_buf_append_string(Buf *b, const char *s) {
        if (!s)
                return buf_append(b, "null", 4);
        int r = buf_append(b, "\"", 1);
        const char *run = s;
        for (const char *p = s; r >= 0 && *p; p++) {
                unsigned char ch = (unsigned char) *p;
                if (ch >= 0x20 && ch != '"' && ch != '\\')
                        continue;
                /* Copy the run of plain bytes before it in one append. */
                r = buf_append(b, run, (size_t) (p - run));
                char esc[8];
                size_t n = 2;
                esc[0] = '\\';
                switch (ch) {
                case '"': esc[1] = '"'; break;
                case '\\': esc[1] = '\\'; break;
                case '\b': esc[1] = 'b'; break;
                case '\f': esc[1] = 'f'; break;
                case '\n': esc[1] = 'n'; break;
                case '\r': esc[1] = 'r'; break;
                case '\t': esc[1] = 't'; break;
                default: {
                        static const char hex[] = "0123456789ABCDEF";
                        memcpy(esc + 1, "u00", 3);
                        esc[4] = hex[ch >> 4];
                        esc[5] = hex[ch & 15];
                        n = 6;
                }
                }
                if (r >= 0)
                        r = buf_append(b, esc, n);
                run = p + 1;
        }
        if (r >= 0)
                r = buf_append(b, run, strlen(run));
        if (r >= 0)
                r = buf_append(b, "\"", 1);
        return r;
}

int json_buf_append_member(Buf *b, const char *member, const char *s) {
        int r = buf_appends(b, member);
        return r < 0 ? r : json_buf_append_string(b, s);
}
