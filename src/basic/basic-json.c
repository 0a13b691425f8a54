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

char *json_shorten_reals(const char *in) {
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        for (const char *p = in; *p;) {
                if (*p == '"') {
                        const char *s = p++;
                        while (*p && *p != '"') {
                                if (*p == '\\' && p[1])
                                        p++;
                                p++;
                        }
                        if (*p)
                                p++;
                        buf_append(&b, s, (size_t) (p - s));
                        continue;
                }
                if (*p == '-' || (*p >= '0' && *p <= '9')) {
                        const char *s = p;
                        bool real = false;
                        while (*p && strchr("+-0123456789.eE", *p)) {
                                if (*p == '.' || *p == 'e' || *p == 'E')
                                        real = true;
                                p++;
                        }
                        char tmp[64];
                        size_t len = (size_t) (p - s);
                        if (real && len < sizeof(tmp)) {
                                memcpy(tmp, s, len);
                                tmp[len] = 0;
                                char *end;
                                double v = strtod(tmp, &end);
                                if (*end == 0 && isfinite(v)) {
                                        char out[32];
                                        size_t n = shortest(v, out);
                                        buf_append(&b, out, n);
                                        continue;
                                }
                        }
                        buf_append(&b, s, len);
                        continue;
                }
                buf_append(&b, p, 1);
                p++;
        }
        return buf_steal(&b);
}
