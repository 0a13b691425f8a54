/* PEP 508 requirements, and the seed's @requirements({key: value}) form.
 *
 *   requirement = name ws* extras? ws* (('(' specs ')') | specs)? ws* (';' marker)?
 *   extras      = '[' ws* (name (ws* ',' ws* name)*)? ws* ']'
 *
 * Direct references (`name @ url`) are refused: DESIGN §4 only installs
 * from the configured index, and a URL in a user's file must never make us
 * fetch from an arbitrary place. */
#include "basic.h"
#include "pkg-internal.h"

PkgRequirement *pkg_requirement_free(PkgRequirement *r) {
        if (!r)
                return NULL;
        free(r->name);
        free(r->normalized);
        strv_free(r->extras);
        pkg_specifier_set_free(r->specifiers);
        pkg_marker_free(r->marker);
        free(r);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgRequirement *, pkg_requirement_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgVersion *, pkg_version_free);

static bool is_ws(char c) {
        return c == ' ' || c == '\t';
}

static bool is_name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.';
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Parses "name" or "name[extra,…]" at s[*p]; on success fills the name,
 * normalised name and extras of r and advances *p. Does not skip trailing
 * text. Returns -EINVAL with *ret_what set to a static reason. */
static int parse_name_extras(const char *s, size_t *p, PkgRequirement *r, const char **ret_what) {
        size_t i = *p, start = i;
        _cleanup_free_ char *name = NULL;
        _cleanup_strv_free_ char **extras = NULL;

        while (is_name_char(s[i]))
                i++;
        name = xstrndup(s + start, i - start);
        if (!pkg_name_is_valid(name)) {
                *ret_what = "not a valid package name";
                return -EINVAL;
        }
        while (is_ws(s[i]))
                i++;
        if (s[i] == '[') {
                i++;
                for (;;) {
                        size_t es;
                        _cleanup_free_ char *extra = NULL;

                        while (is_ws(s[i]))
                                i++;
                        if (s[i] == ']' && !extras)
                                break;
                        es = i;
                        while (is_name_char(s[i]))
                                i++;
                        extra = xstrndup(s + es, i - es);
                        if (!pkg_name_is_valid(extra)) {
                                *ret_what = "invalid extra name";
                                return -EINVAL;
                        }
                        {
                                _cleanup_free_ char *norm = pkg_name_normalize(extra);
                                if (!strv_contains(extras, norm))
                                        extras = strv_append(extras, norm);
                        }
                        while (is_ws(s[i]))
                                i++;
                        if (s[i] == ',') {
                                i++;
                                continue;
                        }
                        if (s[i] == ']')
                                break;
                        *ret_what = "expected ',' or ']' in extras";
                        return -EINVAL;
                }
                i++; /* ']' */
                if (extras)
                        qsort(extras, strv_length(extras), sizeof(char *), cmp_str);
        } else {
                /* Back up so that trailing whitespace is left to the caller. */
                i = start + strlen(name);
        }

        r->normalized = pkg_name_normalize(name);
        r->name = TAKE_PTR(name);
        r->extras = TAKE_PTR(extras);
        *p = i;
        return 0;
}

int pkg_requirement_parse(const char *s, PkgRequirement **ret_req, char **ret_error) {
        _cleanup_(pkg_requirement_freep) PkgRequirement *r = NULL;
        _cleanup_free_ char *spec_text = NULL, *err = NULL;
        const char *what = NULL;
        size_t p = 0;
        int k;

        if (!s || strlen(s) > PKG_REQUIREMENT_MAX) {
                if (ret_error)
                        *ret_error = xasprintf("invalid requirement: missing or longer than %d bytes",
                                               PKG_REQUIREMENT_MAX);
                return -EINVAL;
        }

        r = xcalloc(1, sizeof(*r));
        while (is_ws(s[p]))
                p++;
        k = parse_name_extras(s, &p, r, &what);
        if (k < 0) {
                if (ret_error)
                        *ret_error = xasprintf("invalid requirement '%s': %s", s, what);
                return k;
        }
        while (is_ws(s[p]))
                p++;

        if (s[p] == '@') {
                if (ret_error)
                        *ret_error = xasprintf("invalid requirement '%s': direct URL references (name @ url) "
                                               "are not allowed; install from the package index",
                                               s);
                return -EINVAL;
        }

        if (s[p] == '(') {
                const char *close = strchr(s + p, ')');
                if (!close) {
                        if (ret_error)
                                *ret_error = xasprintf("invalid requirement '%s': missing ')'", s);
                        return -EINVAL;
                }
                spec_text = xstrndup(s + p + 1, (size_t) (close - (s + p + 1)));
                p = (size_t) (close - s) + 1;
        } else {
                size_t end = strcspn(s + p, ";");
                spec_text = xstrndup(s + p, end);
                p += end;
        }
        /* Without parentheses the specifiers run to ';' or the end. With an
         * empty spec and trailing words ("foo bar") the set parser rejects
         * the words. */
        k = pkg_specifier_set_parse(spec_text, &r->specifiers, &err);
        if (k < 0) {
                if (ret_error)
                        *ret_error = xasprintf("invalid requirement '%s': %s", s, err);
                return k;
        }

        while (is_ws(s[p]))
                p++;
        if (s[p] == ';') {
                _cleanup_free_ char *merr = NULL;
                const char *m = s + p + 1;
                while (is_ws(*m))
                        m++;
                k = pkg_marker_parse(m, &r->marker, &merr);
                if (k < 0) {
                        if (ret_error)
                                *ret_error = xasprintf("invalid requirement '%s': %s", s, merr);
                        return k;
                }
        } else if (s[p] != 0) {
                if (ret_error)
                        *ret_error = xasprintf("invalid requirement '%s': unexpected text '%s'", s, s + p);
                return -EINVAL;
        }

        *ret_req = TAKE_PTR(r);
        return 0;
}

char *pkg_requirement_to_string(const PkgRequirement *r) {
        _cleanup_free_ char *spec = NULL, *marker = NULL;
        Buf b;

        buf_init(&b, SIZE_MAX);
        (void) buf_appends(&b, r->normalized);
        if (r->extras && r->extras[0]) {
                (void) buf_appends(&b, "[");
                for (size_t i = 0; r->extras[i]; i++)
                        (void) buf_printf(&b, "%s%s", i > 0 ? "," : "", r->extras[i]);
                (void) buf_appends(&b, "]");
        }
        if (r->specifiers) {
                spec = pkg_specifier_set_to_string(r->specifiers);
                (void) buf_appends(&b, spec);
        }
        if (r->marker) {
                marker = pkg_marker_to_string(r->marker);
                (void) buf_printf(&b, "; %s", marker);
        }
        return buf_steal(&b);
}

int pkg_requirement_from_seed(const char *key, const char *value, PkgRequirement **ret_req, char **ret_error) {
        _cleanup_(pkg_requirement_freep) PkgRequirement *r = NULL;
        _cleanup_free_ char *v = NULL;
        const char *what = NULL;
        size_t p = 0;
        int k;

        if (!key || !*key) {
                if (ret_error)
                        *ret_error = xstrdup("invalid requirement name '': empty package name");
                return -EINVAL;
        }

        r = xcalloc(1, sizeof(*r));
        /* The key must be exactly name[extras]: no surrounding whitespace, no
         * specifier, no marker, no URL. Anything else could be an option, a
         * path or a URL smuggled into a pip-like command line. */
        k = strlen(key) > PKG_NAME_MAX ? -EINVAL : parse_name_extras(key, &p, r, &what);
        if (k >= 0 && key[p] == ';') {
                /* pip's 'name; marker' written as the key: say where it goes. */
                if (ret_error) {
                        _cleanup_free_ char *name = strstrip(xstrndup(key, p)),
                                            *marker = strstrip(xstrdup(key + p + 1));
                        *ret_error = xasprintf("invalid requirement name '%s': a marker goes in the value, "
                                               "as in {'%s': '; %s'}",
                                               key, name, marker);
                }
                return -EINVAL;
        }
        if (k < 0 || key[p] != 0) {
                if (ret_error)
                        *ret_error = xasprintf("invalid requirement name '%s': not a package name "
                                               "(options, paths and URLs are not allowed)",
                                               key);
                return -EINVAL;
        }
        /* parse_name_extras tolerates blanks inside the brackets and between
         * the name and '['; the seed key form does not. */
        if (strpbrk(key, " \t")) {
                if (ret_error)
                        *ret_error = xasprintf("invalid requirement name '%s': not a package name "
                                               "(options, paths and URLs are not allowed)",
                                               key);
                return -EINVAL;
        }

        v = xstrdup(value ?: "");
        /* "specs; marker": PEP 508's marker goes after the ';' of the
         * value, the key staying a bare name ('pywin32': '>=300;
         * sys_platform == "win32"'; '; …' for any version). */
        char *semi = strchr(v, ';');
        if (semi) {
                _cleanup_free_ char *merr = NULL;
                *semi = 0;
                if (strlen(value) > PKG_REQUIREMENT_MAX ||
                    pkg_marker_parse(strstrip(semi + 1), &r->marker, &merr) < 0) {
                        if (ret_error)
                                *ret_error = xasprintf("invalid marker for '%s': '%s'%s%s", key, value,
                                                       merr ? ": " : "", merr ?: "");
                        return -EINVAL;
                }
        }
        strstrip(v);
        if (*v) {
                _cleanup_(pkg_version_freep) PkgVersion *ver = NULL;
                _cleanup_free_ char *err = NULL, *text = NULL;

                /* A bare version means exactly that version. */
                if (pkg_version_parse(v, &ver) >= 0)
                        text = xasprintf("==%s", v);
                else
                        text = xstrdup(v);
                if (strlen(v) > PKG_SPECIFIER_MAX || strchr(v, '@') ||
                    pkg_specifier_set_parse(text, &r->specifiers, &err) < 0) {
                        if (ret_error)
                                *ret_error = xasprintf("invalid version specifier for '%s': '%s'", key,
                                                       value);
                        return -EINVAL;
                }
        }

        if (!r->specifiers) {
                k = pkg_specifier_set_parse("", &r->specifiers, NULL);
                if (k < 0)
                        return k;
        }

        *ret_req = TAKE_PTR(r);
        return 0;
}

static int strcmp_ptr(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

char **pkg_requirements_sorted(PkgRequirement *const *reqs, size_t n) {
        char **v = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
                char *s = pkg_requirement_to_string(reqs[i]);
                v[i] = s ? s : xstrdup(reqs[i]->normalized);
        }
        qsort(v, n, sizeof(char *), strcmp_ptr);
        return v;
}
