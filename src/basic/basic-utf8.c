/* UTF-8 checks over user-supplied text (source files, names). */
#include "basic.h"

#include <assert.h>

/* Length of the valid UTF-8 sequence starting at s[0..n), 0 when it is not
 * one. RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF —
 * what CPython's decoder and jansson both refuse. */
static size_t utf8_sequence_length(const unsigned char *s, size_t n) {
        unsigned char c = s[0];
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */

        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
                len = 3;
                if (c == 0xE0)
                        lo = 0xA0; /* overlong */
                else if (c == 0xED)
                        hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
                len = 4;
                if (c == 0xF0)
                        lo = 0x90; /* overlong */
                else if (c == 0xF4)
                        hi = 0x8F; /* above U+10FFFF */
        } else
                return 0;
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
        return len;
}

size_t utf8_invalid_offset(const char *s, size_t n) {
        assert(s || n == 0);
        const unsigned char *u = (const unsigned char *) s;
        size_t i = 0;
        while (i < n) {
                size_t k = utf8_sequence_length(u + i, n - i);
                if (k == 0)
                        return i;
                i += k;
        }
        return n;
}

/* The sequence length a lead byte announces; 0 for a continuation byte
 * or one that never begins a sequence. */
static size_t utf8_announced_length(unsigned char c) {
        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                return 2;
        if (c >= 0xE0 && c <= 0xEF)
                return 3;
        if (c >= 0xF0 && c <= 0xF4)
                return 4;
        return 0;
}

size_t utf8_complete_prefix(const char *s, size_t n) {
        assert(s || n == 0);
        const unsigned char *u = (const unsigned char *) s;
        /* The last lead byte is at most 3 bytes from the end when its
         * sequence is cut short (a sequence is at most 4 bytes). */
        for (size_t back = 1; back <= 3 && back <= n; back++) {
                unsigned char c = u[n - back];
                if ((c & 0xC0) == 0x80)
                        continue;
                size_t want = utf8_announced_length(c);
                return want > back ? n - back : n;
        }
        return n;
}

char *utf8_replace_invalid(const char *s, size_t n, size_t *ret_len) {
        assert(s || n == 0);
        /* At worst every byte becomes the 3 bytes of U+FFFD. */
        char *out = xmalloc(3 * n + 1), *p = out;
        size_t i = 0;
        while (i < n) {
                size_t ok = utf8_invalid_offset(s + i, n - i);
                memcpy(p, s + i, ok);
                p += ok;
                i += ok;
                if (i < n) {
                        memcpy(p, "\xef\xbf\xbd", 3);
                        p += 3;
                        i++;
                }
        }
        *p = 0;
        if (ret_len)
                *ret_len = (size_t) (p - out);
        return out;
}

bool utf8_is_valid(const char *s) {
        assert(s);
        size_t n = strlen(s);
        return utf8_invalid_offset(s, n) == n;
}

bool utf8_is_valid_or_null(const char *s) {
        return !s || utf8_is_valid(s);
}

void utf8_line_col(const char *s, size_t offset, size_t *ret_line, size_t *ret_col) {
        assert(s || offset == 0);
        assert(ret_line && ret_col);
        size_t line = 1, col = 1;
        for (size_t i = 0; i < offset; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c == '\n') {
                        line++;
                        col = 1;
                } else if ((c & 0xC0) != 0x80) /* continuation bytes do not start a character */
                        col++;
        }
        *ret_line = line;
        *ret_col = col;
}

bool identifier_is_valid(const char *s) {
        if (!*s || (*s >= '0' && *s <= '9') || !utf8_is_valid(s))
                return false;
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;
                if (!(ch == '_' || ch >= 0x80 || ((ch | 32) >= 'a' && (ch | 32) <= 'z') || (ch >= '0' && ch <= '9')))
                        return false;
        }
        return true;
}

size_t str_escape_controls(const char *s, bool keep_tab, char *buf, size_t size) {
        assert(s && buf && size > 0);
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                char esc[5];
                size_t k;
                if ((*p >= 0x20 && *p != 0x7f) || (*p == '\t' && keep_tab)) {
                        esc[0] = (char) *p;
                        k = 1;
                } else if (*p == '\n' || *p == '\r' || *p == '\t') {
                        esc[0] = '\\';
                        esc[1] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
                        k = 2;
                } else
                        k = (size_t) snprintf(esc, sizeof(esc), "\\x%02x", *p);
                if (n + k >= size) {
                        n = utf8_complete_prefix(buf, n); /* no character cut in two */
                        break;
                }
                memcpy(buf + n, esc, k);
                n += k;
        }
        buf[n] = 0;
        return n;
}

size_t utf8_encode(uint32_t v, char *out) {
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
