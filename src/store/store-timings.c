/* A run's timings as the runs table keeps them. The engine writes one flat
 * object with the same eleven names in the same order for every run
 * (timings_json() in engine-run.c): 181 bytes of a trivial run's ~355, two
 * thirds of them the names. Every page of a run's row reaches the disk
 * twice, in the WAL and at the checkpoint (docs/internals/performance-log.md "Invoke
 * path: bytes to the disk per invoke (round 15)"), and on a disk home the
 * host charges ~1 ms of -c8 p99 per KiB written per invoke (round 20).
 *
 * So such an object is kept as little as gives it back byte for byte (the
 * answers splice that text, store-json.c: a parse and a print, which would
 * respell the reals, cannot stand in for it):
 * - a BLOB of its values as microseconds (round 21: ~11 bytes against ~58)
 *   when each value is spelled as format_ms() spells it, which is how the
 *   engine writes them: a format byte (1 << 1, | 1 when cold) and the ten
 *   values as LEB128 varints;
 * - else the JSON array of its values' texts ([0.0,0.003,…,false], round
 *   15), for the same names with other spellings;
 * - any other text (older records, other names, another order) as it is.
 * Rows written in an older form stay readable: each read looks at the
 * column's type and first byte. */
#include "store-internal.h"

static const char *const timings_keys[] = {
        "validate_ms", "resolve_ms", "install_ms", "start_ms", "run_ms", "total_ms",
        "queue_ms",    "acquire_ms", "fork_ms",    "reply_ms", "cold",
};

static bool json_number_at(const char **pp) {
        const char *p = *pp;
        if (*p == '-')
                p++;
        if (*p == '0')
                p++;
        else if (*p >= '1' && *p <= '9')
                while (*p >= '0' && *p <= '9')
                        p++;
        else
                return false;
        if (*p == '.') {
                if (!(*++p >= '0' && *p <= '9'))
                        return false;
                while (*p >= '0' && *p <= '9')
                        p++;
        }
        if (*p == 'e' || *p == 'E') {
                p++;
                if (*p == '+' || *p == '-')
                        p++;
                if (!(*p >= '0' && *p <= '9'))
                        return false;
                while (*p >= '0' && *p <= '9')
                        p++;
        }
        *pp = p;
        return true;
}

bool store_json_scalar_at(const char **pp) {
        static const char *const words[] = { "true", "false", "null" };
        /* Most values are numbers: a word is tried from its first letter
         * only (each run's timings pass here ~20 times per invoke). */
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (**pp == words[i][0] && startswith(*pp, words[i])) {
                        *pp += strlen(words[i]);
                        return true;
                }
        return json_number_at(pp);
}

static bool skip(const char **pp, const char *s) {
        if (!startswith(*pp, s))
                return false;
        *pp += strlen(s);
        return true;
}

#define TIMINGS_BINARY_FORMAT 1
#define TIMINGS_MS_VALUES (ELEMENTSOF(timings_keys) - 1) /* the last is "cold" */

/* The microseconds of v (n bytes) when format_ms() spells them so: the
 * whole part's digits without a leading zero (but "0"), a dot, one to
 * three digits of fraction, the last not a zero unless it is the only
 * one. Checked by its form, not by spelling the value again: the writer
 * packs ten values per run. */
static bool canonical_ms(const char *v, size_t n, usec_t *ret_us) {
        const char *dot = memchr(v, '.', n);
        /* Whole part: at most 15 digits, so that the microseconds fit. */
        if (!dot || dot == v || dot - v > 15 || (dot - v > 1 && v[0] == '0'))
                return false;
        size_t frac = n - (size_t) (dot - v) - 1;
        if (frac < 1 || frac > 3 || (frac > 1 && v[n - 1] == '0'))
                return false;
        usec_t us = 0;
        for (const char *p = v; p < v + n; p++)
                if (p == dot)
                        continue;
                else if (*p >= '0' && *p <= '9')
                        us = us * 10 + (usec_t) (*p - '0');
                else
                        return false;
        for (size_t i = frac; i < 3; i++)
                us *= 10;
        *ret_us = us;
        return true;
}

static size_t leb128_put(uint8_t *p, usec_t v) {
        size_t n = 0;
        do {
                p[n++] = (uint8_t) ((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
                v >>= 7;
        } while (v > 0);
        return n;
}

static bool leb128_get(const uint8_t **pp, const uint8_t *end, usec_t *ret) {
        usec_t v = 0;
        for (unsigned shift = 0; *pp < end && shift < 64; shift += 7) {
                uint8_t b = *(*pp)++;
                v |= (usec_t) (b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

/* The binary form of the values (vals[i], lens[i]) into buf, or 0 when one
 * is not as format_ms() spells it. */
static size_t pack_binary(const char *const vals[], const size_t lens[], uint8_t *buf, size_t size) {
        size_t last = ELEMENTSOF(timings_keys) - 1, n = 0;
        bool cold = lens[last] == 4 && memcmp(vals[last], "true", 4) == 0;
        if (!cold && !(lens[last] == 5 && memcmp(vals[last], "false", 5) == 0))
                return 0;
        /* 1 + 10 varints of at most 9 bytes (values below 10^18). */
        _Static_assert(1 + TIMINGS_MS_VALUES * 9 <= STORE_TIMINGS_PACKED_MAX, "room for the binary form");
        if (size < 1 + TIMINGS_MS_VALUES * 9)
                return 0;
        buf[n++] = (uint8_t) (TIMINGS_BINARY_FORMAT << 1 | (cold ? 1 : 0));
        for (size_t i = 0; i < TIMINGS_MS_VALUES; i++) {
                usec_t us;
                if (!canonical_ms(vals[i], lens[i], &us))
                        return 0;
                n += leb128_put(buf + n, us);
        }
        return n;
}

StoreTimingsForm store_timings_pack(const char *t, char *buf, size_t size, size_t *ret_len) {
        if (!t || *t++ != '{')
                return STORE_TIMINGS_AS_IS;
        const char *vals[ELEMENTSOF(timings_keys)];
        size_t lens[ELEMENTSOF(timings_keys)];
        for (size_t i = 0; i < ELEMENTSOF(timings_keys); i++) {
                if ((i > 0 && !skip(&t, ",")) || !skip(&t, "\"") || !skip(&t, timings_keys[i]) || !skip(&t, "\":"))
                        return STORE_TIMINGS_AS_IS;
                vals[i] = t;
                if (!store_json_scalar_at(&t))
                        return STORE_TIMINGS_AS_IS;
                lens[i] = (size_t) (t - vals[i]);
        }
        if (!streq(t, "}"))
                return STORE_TIMINGS_AS_IS;
        size_t n = pack_binary(vals, lens, (uint8_t *) buf, size);
        if (n > 0) {
                *ret_len = n;
                return STORE_TIMINGS_BINARY;
        }
        n = 0;
        buf[n++] = '[';
        for (size_t i = 0; i < ELEMENTSOF(timings_keys); i++) {
                if (n + lens[i] + 2 >= size)
                        return STORE_TIMINGS_AS_IS;
                n = (size_t) ((char *) mempcpy(buf + n, vals[i], lens[i]) - buf);
                buf[n++] = i + 1 < ELEMENTSOF(timings_keys) ? ',' : ']';
        }
        buf[n] = 0;
        *ret_len = n;
        return STORE_TIMINGS_VALUES;
}

/* The object again from the binary form, or NULL when blob is not one
 * this store wrote. */
static char *unpack_binary(const uint8_t *blob, size_t len) {
        if (len < 1 || blob[0] >> 1 != TIMINGS_BINARY_FORMAT)
                return NULL;
        const uint8_t *p = blob + 1, *end = blob + len;
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        for (size_t i = 0; i < TIMINGS_MS_VALUES; i++) {
                usec_t us;
                char ms[FORMAT_MS_MAX];
                if (!leb128_get(&p, end, &us)) {
                        buf_free(&b);
                        return NULL;
                }
                (void) buf_appends(&b, i ? ",\"" : "{\"");
                (void) buf_appends(&b, timings_keys[i]);
                (void) buf_append(&b, "\":", 2);
                (void) buf_append(&b, ms, format_ms(us, ms));
        }
        if (p != end) {
                buf_free(&b);
                return NULL;
        }
        (void) buf_appends(&b, blob[0] & 1 ? ",\"cold\":true}" : ",\"cold\":false}");
        return buf_steal(&b);
}

/* The object again from the array of its values' texts, or stored as it
 * is. */
static char *unpack_values(const char *stored) {
        if (stored[0] != '[')
                return xstrdup(stored);
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        const char *p = stored + 1;
        for (size_t i = 0; i < ELEMENTSOF(timings_keys); i++) {
                const char *v = p;
                if (!store_json_scalar_at(&p) || *p != (i + 1 < ELEMENTSOF(timings_keys) ? ',' : ']')) {
                        /* Not one this store packed: as it is. */
                        buf_free(&b);
                        return xstrdup(stored);
                }
                (void) buf_appends(&b, i ? ",\"" : "{\"");
                (void) buf_appends(&b, timings_keys[i]);
                (void) buf_append(&b, "\":", 2);
                (void) buf_append(&b, v, (size_t) (p - v));
                p++;
        }
        if (*p) {
                buf_free(&b);
                return xstrdup(stored);
        }
        (void) buf_append(&b, "}", 1);
        return buf_steal(&b);
}

char *store_timings_col(sqlite3_stmt *st, int col) {
        int type = sqlite3_column_type(st, col);
        if (type == SQLITE_NULL)
                return NULL;
        if (type == SQLITE_BLOB)
                return unpack_binary(sqlite3_column_blob(st, col), (size_t) sqlite3_column_bytes(st, col));
        return unpack_values((const char *) sqlite3_column_text(st, col));
}
