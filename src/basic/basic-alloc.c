/* Allocation and string helpers. */
#include "basic.h"

#include <assert.h>
#include <ctype.h>
#include <strings.h>

static _noreturn_ void oom(void) {
        static const char msg[] = "pysprinter: out of memory\n";
        (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
        abort();
}

void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n ? n : 1, size ? size : 1);
        if (!p)
                oom();
        return p;
}

void *xrealloc(void *p, size_t n) {
        void *q = realloc(p, n ? n : 1);
        if (!q)
                oom();
        return q;
}

char *xstrdup(const char *s) {
        char *p = strdup(s);
        if (!p)
                oom();
        return p;
}

char *xstrdup_or_null(const char *s) {
        return s ? xstrdup(s) : NULL;
}

char *xstrndup(const char *s, size_t n) {
        char *p = strndup(s, n);
        if (!p)
                oom();
        return p;
}

char *xmemdupz(const void *data, size_t n) {
        char *p = xmalloc(n + 1);
        if (n > 0)
                memcpy(p, data, n);
        p[n] = 0;
        return p;
}

char *xasprintf(const char *fmt, ...) {
        va_list ap;
        char *p;
        va_start(ap, fmt);
        int r = vasprintf(&p, fmt, ap);
        va_end(ap);
        if (r < 0)
                oom();
        return p;
}

bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool endswith(const char *s, const char *suffix) {
        size_t ls = strlen(s), lx = strlen(suffix);
        return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

char *strstrip(char *s) {
        char *start = s;
        while (*start && isspace((unsigned char) *start))
                start++;
        size_t n = strlen(start);
        while (n > 0 && isspace((unsigned char) start[n - 1]))
                n--;
        memmove(s, start, n);
        s[n] = 0;
        return s;
}

size_t strv_length(char *const *v) {
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

char **strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
        return NULL;
}

void strv_freep(char ***v) {
        strv_free(*v);
}

char **strv_append(char **v, const char *s) {
        size_t n = strv_length(v);
        v = xrealloc(v, (n + 2) * sizeof(char *));
        v[n] = xstrdup(s);
        v[n + 1] = NULL;
        return v;
}

char **strv_append_take(char **v, char *s) {
        size_t n = strv_length(v);
        v = xrealloc(v, (n + 2) * sizeof(char *));
        v[n] = s;
        v[n + 1] = NULL;
        return v;
}

bool strv_contains(char *const *v, const char *s) {
        for (size_t i = 0; v && v[i]; i++)
                if (streq(v[i], s))
                        return true;
        return false;
}

int strv_extend_choices(char ***set, const char *list, const char *const *names, bool any_case, char **ret_bad) {
        assert(set && list && names && ret_bad);
        char **v = NULL;
        for (const char *p = list;; p++) {
                size_t len = strcspn(p, ",");
                const char *hit = NULL;
                for (size_t i = 0; names[i] && !hit; i++)
                        if (strlen(names[i]) == len &&
                            (any_case ? strncasecmp(p, names[i], len) : strncmp(p, names[i], len)) == 0)
                                hit = names[i];
                if (!hit) {
                        strv_free(v);
                        *ret_bad = xstrndup(p, len);
                        return -EINVAL;
                }
                if (!strv_contains(*set, hit) && !strv_contains(v, hit))
                        v = strv_append(v, hit);
                p += len;
                if (!*p)
                        break;
        }
        for (size_t i = 0; v && v[i]; i++)
                *set = strv_append(*set, v[i]);
        strv_free(v);
        return 0;
}
