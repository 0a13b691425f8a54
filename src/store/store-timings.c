/* A run's timings as the runs table keeps them. The engine writes one flat
 * object with the same eleven names in the same order for every run
 * (timings_json() in engine-run.c): 181 bytes of a trivial run's ~355, two
 * thirds of them the names. Such an object is kept as the JSON array of its
 * values, each value's text as the engine spelled it ([0.0,0.003,…,false]:
 * ~60 bytes), and given back as the object on every read, byte for byte:
 * the answers splice that text (store-json.c), so a parse and a print
 * (which would respell the reals) cannot stand in for it. Any other text
 * (older records, other names, another order) is kept as it is. Every page
 * of a run's row reaches the disk twice, in the WAL and at the checkpoint
 * (docs/performance.md "Invoke path: bytes to the disk per invoke (round
 * 15)"). */
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

bool store_timings_pack(const char *t, char *buf, size_t size) {
        if (!t || *t++ != '{')
                return false;
        size_t n = 0;
        buf[n++] = '[';
        for (size_t i = 0; i < ELEMENTSOF(timings_keys); i++) {
                if ((i > 0 && !skip(&t, ",")) || !skip(&t, "\"") || !skip(&t, timings_keys[i]) || !skip(&t, "\":"))
                        return false;
                const char *v = t;
                if (!store_json_scalar_at(&t) || n + (size_t) (t - v) + 2 >= size)
                        return false;
                n = (size_t) ((char *) mempcpy(buf + n, v, (size_t) (t - v)) - buf);
                buf[n++] = i + 1 < ELEMENTSOF(timings_keys) ? ',' : ']';
        }
        if (!streq(t, "}"))
                return false;
        buf[n] = 0;
        return true;
}

char *store_timings_unpack(const char *stored) {
        if (!stored || stored[0] != '[')
                return stored ? xstrdup(stored) : NULL;
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
