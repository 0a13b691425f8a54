/* Environment: an allow-list, and the old strings wiped.
 *
 * clearenv() only drops the pointers; the strings the kernel placed on
 * the initial stack stay there, and /proc/PID/environ reads exactly that
 * region. A run that reads /proc/1/environ would see the engine's secrets
 * if we stopped at clearenv(), so the region is zeroed as well. */
#include "sandbox-internal.h"

extern char **environ;

static const char *const allowed[] = {
        "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_NUMERIC", "LC_TIME", "LC_COLLATE", "TZ",
        "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONIOENCODING",
        "PYTHONUTF8",
};

/* The [env_start, env_end) region of the initial stack, from
 * /proc/self/stat fields 50 and 51. Only strings there are wiped: strings
 * setenv() made belong to glibc, which may reuse them. */
static int env_region(uintptr_t *ret_start, uintptr_t *ret_end) {
        _cleanup_free_ char *s = NULL;
        int r = read_file("/proc/self/stat", 8192, &s, NULL);
        if (r < 0)
                return r;
        char *p = strrchr(s, ')');
        if (!p)
                return -EINVAL;
        /* p+2 is field 3; walk to field 50. */
        p += 2;
        for (int f = 3; f < 50 && p; f++) {
                p = strchr(p, ' ');
                if (p)
                        p++;
        }
        unsigned long long a, b;
        if (!p || sscanf(p, "%llu %llu", &a, &b) != 2 || a >= b)
                return -EINVAL;
        *ret_start = (uintptr_t) a;
        *ret_end = (uintptr_t) b;
        return 0;
}

int sandbox_env_scrub(void) {
        uintptr_t lo = 0, hi = 0;
        (void) env_region(&lo, &hi);
        /* clearenv() frees the environ array (not its strings) when setenv()
         * grew it: walk a copy of the pointers. */
        char **old = NULL;
        for (char **e = environ; e && *e; e++) {
                size_t n = strv_length(old);
                old = xrealloc(old, (n + 2) * sizeof(char *));
                old[n] = *e;
                old[n + 1] = NULL;
        }
        char **keep = NULL;
        for (char **e = old; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                if (!eq)
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
                        if ((size_t) (eq - *e) == strlen(allowed[i]) && strneq(*e, allowed[i], eq - *e)) {
                                keep = strv_append(keep, *e);
                                break;
                        }
        }
        if (clearenv() != 0) {
                free(old);
                strv_free(keep);
                return -ENOMEM;
        }
        for (char **e = old; e && *e; e++)
                if ((uintptr_t) *e >= lo && (uintptr_t) *e < hi)
                        explicit_bzero(*e, strlen(*e));
        free(old);
        for (char **e = keep; e && *e; e++) {
                char *eq = strchr(*e, '=');
                *eq = 0;
                setenv(*e, eq + 1, 1);
        }
        strv_free(keep);
        setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
        setenv("HOME", "/tmp", 1);
        setenv("TMPDIR", "/tmp", 1);
        setenv("USER", "root", 1);
        if (!getenv("LANG"))
                setenv("LANG", "C.UTF-8", 1);
        return 0;
}
