/* PEP 503 / PEP 508 distribution names. */
#include <ctype.h>

#include "basic.h"
#include "pkg.h"

static bool name_alnum(char c) {
        /* ASCII only on purpose: isalnum() would follow the locale. */
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool name_sep(char c) {
        return c == '-' || c == '_' || c == '.';
}

bool pkg_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > 256)
                return false;
        if (!name_alnum(name[0]) || !name_alnum(name[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_alnum(name[i]) && !name_sep(name[i]))
                        return false;
        return true;
}

char *pkg_name_normalize(const char *name) {
        size_t n = strlen(name), j = 0;
        char *out = xmalloc(n + 1);

        for (size_t i = 0; i < n;) {
                if (name_sep(name[i])) {
                        while (i < n && name_sep(name[i]))
                                i++;
                        out[j++] = '-';
                } else {
                        char c = name[i++];
                        out[j++] = (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
                }
        }
        out[j] = 0;
        return out;
}
