/* Durations, sizes and integers as users and peers write them (CLI flags,
 * DAG files, config, Redis replies). */
#include <ctype.h>
#include <limits.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "basic.h"

int parse_duration_ms(const char *s, bool allow_zero, uint64_t *ret) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || !isfinite(v) || v < 0 || (!allow_zero && v == 0))
                return -EINVAL;
        double mult;
        if (streq(end, "ms"))
                mult = 1;
        else if (streq(end, "") || streq(end, "s"))
                mult = 1000;
        else if (streq(end, "m") || streq(end, "min"))
                mult = 60000;
        else if (streq(end, "h"))
                mult = 3600000;
        else
                return -EINVAL;
        double ms = v * mult;
        if ((!allow_zero && ms < 1) || ms > 7 * 24 * 3600e3)
                return -ERANGE;
        *ret = (uint64_t) ms;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || !isfinite(v) || v <= 0)
                return -EINVAL;
        static const struct {
                const char *suffix;
                double mult;
        } units[] = {
                { "", 1 << 20 },    { "b", 1 },      { "k", 1 << 10 },  { "kb", 1e3 },
                { "kib", 1 << 10 }, { "m", 1 << 20 }, { "mb", 1e6 },    { "mib", 1 << 20 },
                { "g", 1 << 30 },   { "gb", 1e9 },   { "gib", 1 << 30 },
        };
        char lower[8];
        size_t n = strlen(end);
        if (n >= sizeof(lower))
                return -EINVAL;
        for (size_t i = 0; i <= n; i++)
                lower[i] = (char) (end[i] >= 'A' && end[i] <= 'Z' ? end[i] + 32 : end[i]);
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(lower, units[i].suffix)) {
                        double b = v * units[i].mult;
                        if (b < 1 || b > 1e15)
                                return -ERANGE;
                        *ret = (uint64_t) b;
                        return 0;
                }
        return -EINVAL;
}

int parse_int(const char *s, int *ret) {
        /* strtol would skip leading space; a number is only the number. */
        if (!s || !(*s == '-' || (*s >= '0' && *s <= '9')))
                return -EINVAL;
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (*end || end == s)
                return -EINVAL;
        if (errno == ERANGE || x < INT_MIN || x > INT_MAX)
                return -ERANGE;
        *ret = (int) x;
        return 0;
}

int parse_uint64(const char *s, uint64_t *ret) {
        /* strtoull would skip leading space and take "-1" as a huge number. */
        if (!s || !(*s >= '0' && *s <= '9'))
                return -EINVAL;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (*end)
                return -EINVAL;
        if (errno == ERANGE)
                return -ERANGE;
        *ret = (uint64_t) x;
        return 0;
}

bool idempotency_key_is_valid(const char *key) {
        if (!key)
                return false;
        size_t n = 0;
        for (const char *p = key; *p; p++, n++)
                if (*p < '!' || *p > '~' || n >= IDEMPOTENCY_KEY_MAX)
                        return false;
        return n > 0;
}

bool function_name_is_valid(const char *name) {
        size_t n = strlen(name);
        if (n == 0 || n > 64)
                return false;
        for (const char *p = name; *p; p++)
                if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-'))
                        return false;
        return true;
}

bool function_alias_name_is_valid(const char *name) {
        if (!name)
                return false;
        size_t n = strlen(name);
        if (n == 0 || n > 128 || strspn(name, "0123456789") == n)
                return false;
        for (const char *p = name; *p; p++)
                if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-'))
                        return false;
        return true;
}

char *format_size(uint64_t n, char buf[static 32]) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double) n;
        size_t u = 0;
        while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, 32, "%" PRIu64 " B", n);
        else
                snprintf(buf, 32, "%.1f %s", v, units[u]);
        return buf;
}
