/* PEP 427 wheel file names:
 *   {name}-{version}(-{build})?-{python tag}-{abi tag}-{platform tag}.whl
 * The name is escaped (runs of [-_.] become '_'), the build tag starts with
 * a digit, and each tag may be a '.'-separated compressed set. */
#include "basic.h"
#include "pkg-internal.h"

PkgWheelName *pkg_wheel_name_free(PkgWheelName *w) {
        if (!w)
                return NULL;
        free(w->name);
        free(w->version);
        free(w->build);
        free(w->python_tag);
        free(w->abi_tag);
        free(w->platform_tag);
        free(w);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgWheelName *, pkg_wheel_name_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgVersion *, pkg_version_free);

static bool is_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool all_of(const char *s, size_t n, const char *extra) {
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]) && !strchr(extra, s[i]))
                        return false;
        return true;
}

int pkg_wheel_name_parse(const char *filename, PkgWheelName **ret) {
        _cleanup_(pkg_wheel_name_freep) PkgWheelName *w = NULL;
        _cleanup_(pkg_version_freep) PkgVersion *v = NULL;
        const char *dash[6];
        size_t n, ndash = 0;

        if (!filename || !endswith(filename, ".whl"))
                return -EINVAL;
        n = strlen(filename) - 4;
        if (n > 1024)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (filename[i] == '-') {
                        if (ndash == ELEMENTSOF(dash))
                                return -EINVAL;
                        dash[ndash++] = filename + i;
                }
        if (ndash != 4 && ndash != 5)
                return -EINVAL;

        w = xcalloc(1, sizeof(*w));
        w->name = xstrndup(filename, (size_t) (dash[0] - filename));
        w->version = xstrndup(dash[0] + 1, (size_t) (dash[1] - dash[0] - 1));
        if (ndash == 5) {
                w->build = xstrndup(dash[1] + 1, (size_t) (dash[2] - dash[1] - 1));
                /* Build tag: a number, optionally followed by a string. */
                if (!(w->build[0] >= '0' && w->build[0] <= '9') || !all_of(w->build, strlen(w->build), "._"))
                        return -EINVAL;
        }
        w->python_tag = xstrndup(dash[ndash - 3] + 1, (size_t) (dash[ndash - 2] - dash[ndash - 3] - 1));
        w->abi_tag = xstrndup(dash[ndash - 2] + 1, (size_t) (dash[ndash - 1] - dash[ndash - 2] - 1));
        w->platform_tag = xstrndup(dash[ndash - 1] + 1, (size_t) (filename + n - dash[ndash - 1] - 1));

        /* The escaped name has no '-' (we split on it) and, per PEP 427,
         * no "__" left after escaping. */
        if (!*w->name || strstr(w->name, "__") || !all_of(w->name, strlen(w->name), "._"))
                return -EINVAL;
        if (pkg_version_parse(w->version, &v) < 0)
                return -EINVAL;
        if (!*w->python_tag || !*w->abi_tag || !*w->platform_tag ||
            !all_of(w->python_tag, strlen(w->python_tag), "._") || !all_of(w->abi_tag, strlen(w->abi_tag), "._") ||
            !all_of(w->platform_tag, strlen(w->platform_tag), "._"))
                return -EINVAL;

        *ret = TAKE_PTR(w);
        return 0;
}

int pkg_wheel_build_compare(const char *a, const char *b) {
        if (!a || !b)
                return (a != NULL) - (b != NULL);
        /* The leading numbers compared as numbers of any length: without
         * their leading zeros, the longer is larger, else the text decides. */
        a += strspn(a, "0");
        b += strspn(b, "0");
        size_t na = strspn(a, "0123456789"), nb = strspn(b, "0123456789");
        if (na != nb)
                return na < nb ? -1 : 1;
        int c = strncmp(a, b, na);
        if (c != 0)
                return c;
        return strcmp(a + na, b + nb);
}
