/* Shortest round-trip spelling of the real numbers in a JSON text.
 *
 * jansson prints reals with a fixed precision: 17 digits is exact but
 * spells 0.1 as 0.10000000000000001, fewer digits loses values. Printing
 * with 17 and then respelling each real with the fewest digits that parse
 * back to the same double gives what Python's json (and a user) expects. */
#include "basic.h"

#include <math.h>

static int atoi_safe(const char *s) {
        char *end;
        long v = strtol(s, &end, 10);
        return (int) MAX(MIN(v, 1000L), -1000L);
}

/* Python's repr() of a float: the fewest significant digits that read
 * back as v, in fixed notation for exponents -4..15, else as 1.5e+16. */
static size_t shortest(double v, char out[static 32]) {
        int p;
        char e[40];
        for (p = 1; p <= 17; p++) {
                snprintf(e, sizeof(e), "%.*e", p - 1, v);
                if (strtod(e, NULL) == v)
                        break;
        }
        if (p > 17)
                p = 17;
        const char *ep = strchr(e, 'e');
        int x = ep ? atoi_safe(ep + 1) : 0;
        int n;
        if (x >= -4 && x < 16) {
                int decimals = p - 1 - x;
                n = snprintf(out, 32, "%.*f", decimals > 0 ? decimals : 0, v);
                if (n > 0 && n + 2 < 32 && !strchr(out, '.')) {
                        memcpy(out + n, ".0", 3);
                        n += 2;
                }
        } else
                n = snprintf(out, 32, "%.*e", p - 1, v);
        return n > 0 && n < 32 ? (size_t) n : (size_t) snprintf(out, 32, "%.17g", v);
}

/* A real already spelled the way shortest() would: fixed notation, an
 * integer part of at most 16 digits without leading zeros, at most three
 * zeros after "0.", no trailing zero after the point but ".0", and at most
 * 15 significant digits. Any decimal of <= 15 significant digits reads back
 * and prints again as itself (DBL_DIG), so no shorter spelling exists.
 * Most reals in our answers (timings in ms, exact to the µs) are such, and
 * respelling each costs up to 17 snprintf + strtod (issue 15). */
static bool already_shortest(const char *s, size_t len) {
        const char *p = s, *end = s + len;
        if (p < end && *p == '-')
                p++;
        const char *ip = p;
        while (p < end && *p >= '0' && *p <= '9')
                p++;
        size_t int_len = (size_t) (p - ip);
        if (int_len == 0 || int_len > 16 || (int_len > 1 && *ip == '0') || p >= end || *p != '.')
                return false;
        const char *fp = ++p;
        while (p < end && *p >= '0' && *p <= '9')
                p++;
        size_t frac_len = (size_t) (p - fp);
        if (p != end || frac_len == 0 || (frac_len > 1 && fp[frac_len - 1] == '0'))
                return false;
        size_t sig;
        if (int_len == 1 && *ip == '0') {
                size_t z = 0;
                while (z < frac_len && fp[z] == '0')
                        z++;
                if (z == frac_len)
                        return true; /* 0.0 */
                if (z > 3)
                        return false; /* below 1e-4: shortest() uses an exponent */
                sig = frac_len - z;
        } else
                sig = int_len + (frac_len == 1 && *fp == '0' ? 0 : frac_len);
        return sig <= 15;
}

static bool number_char(char c) {
        return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

/* Copies in to b with its reals respelled; b NULL: only says whether some
 * real would be (true at the first). */
static bool shorten_reals(const char *in, Buf *b) {
        /* Copies the text in runs between the reals it respells: most
         * answers have none to respell (round 7: an invoke's answer went
         * through here a byte range at a time, ~15k instructions). */
        const char *copied = in, *p = in;
        for (;;) {
                /* To the next string or number. */
                while (*p && *p != '"' && *p != '-' && !(*p >= '0' && *p <= '9'))
                        p++;
                if (!*p)
                        break;
                if (*p == '"') {
                        for (p++; *p && *p != '"'; p++)
                                if (*p == '\\' && p[1])
                                        p++;
                        if (*p)
                                p++;
                        continue;
                }
                const char *s = p;
                bool real = false;
                for (; number_char(*p); p++)
                        if (*p == '.' || *p == 'e' || *p == 'E')
                                real = true;
                size_t len = (size_t) (p - s);
                if (!real || already_shortest(s, len) || len >= 64)
                        continue;
                char tmp[64], *end;
                memcpy(tmp, s, len);
                tmp[len] = 0;
                double v = strtod(tmp, &end);
                if (*end != 0 || !isfinite(v))
                        continue;
                char out[32];
                size_t n = shortest(v, out);
                if (!b) {
                        if (n != len || memcmp(out, s, len) != 0)
                                return true;
                        continue;
                }
                buf_append(b, copied, (size_t) (s - copied));
                buf_append(b, out, n);
                copied = p;
        }
        if (b)
                buf_append(b, copied, (size_t) (p - copied));
        return false;
}

char *json_shorten_reals(const char *in) {
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        (void) shorten_reals(in, &b);
        return buf_steal(&b);
}

char *json_shorten_reals_take(char *in) {
        if (!in || !shorten_reals(in, NULL))
                return in;
        char *s = json_shorten_reals(in);
        free(in);
        return s;
}
