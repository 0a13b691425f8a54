/* pkg-syntax-oracle: a test-only line protocol over the pkg syntax layer,
 * so tests/e2e/test_pkg_syntax_crosscheck.py can compare thousands of
 * generated cases against the reference implementation (`packaging`).
 *
 * Input: one command per line, fields separated by TAB:
 *   normalize V          -> normalised version, or "invalid"
 *   prerelease V         -> 0|1, or "invalid"
 *   compare V1 V2        -> -1|0|1, or "invalid"
 *   contains SPEC V PRE  -> 0|1 (PRE 0|1: accept pre-releases), or "invalid"
 *   specnorm SPEC        -> normalised set, or "invalid"
 *   allowspre SPEC       -> 0|1, or "invalid"
 *   name N               -> "<valid 0|1> <normalised>"
 *   req R                -> normalised requirement, or "invalid: <message>"
 *   seed KEY VALUE       -> normalised requirement, or "invalid: <message>"
 *   marker M EXTRA PYVER -> 0|1 against the running machine with python
 *                           full version PYVER, or "invalid"
 *   tags PYVER           -> count N, then N lines with one tag each
 *   wheel FILENAME       -> "name version build|- py abi plat", or "invalid"
 *   priority PYVER FILE  -> integer (-1 if unsupported)
 *   unescape HEX         -> the hex of the bytes HEX, HTML-unescaped as an
 *                           index page's attribute value (pip: html.unescape)
 * Output: one line per command (tags: N+1 lines), flushed per line. */
#include "basic.h"
#include "pkg.h"
#include "pkg-internal.h"
#include "pkg-mgr.h"

#define LINE_MAX_BYTES 65536

static void out(const char *fmt, ...) _printf_(1, 2);
static void out(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
}

static void one_line(char *line) {
        char *f[8] = {};
        size_t n = 0;
        char *p = line;

        while (n < ELEMENTSOF(f)) {
                f[n++] = p;
                p = strchr(p, '\t');
                if (!p)
                        break;
                *p++ = 0;
        }
#define NEED(k)                                  \
        do {                                     \
                if (n < (k)) {                   \
                        out("usage");            \
                        return;                  \
                }                                \
        } while (0)

        if (streq(f[0], "normalize") || streq(f[0], "prerelease")) {
                PkgVersion *v = NULL;
                NEED(2);
                if (pkg_version_parse(f[1], &v) < 0) {
                        out("invalid");
                        return;
                }
                if (streq(f[0], "normalize")) {
                        char *s = pkg_version_to_string(v);
                        out("%s", s);
                        free(s);
                } else
                        out("%d", pkg_version_is_prerelease(v) ? 1 : 0);
                pkg_version_free(v);
        } else if (streq(f[0], "compare")) {
                PkgVersion *a = NULL, *b = NULL;
                NEED(3);
                if (pkg_version_parse(f[1], &a) < 0 || pkg_version_parse(f[2], &b) < 0)
                        out("invalid");
                else {
                        int r = pkg_version_compare(a, b);
                        out("%d", r < 0 ? -1 : r > 0 ? 1 : 0);
                }
                pkg_version_free(a);
                pkg_version_free(b);
        } else if (streq(f[0], "contains") || streq(f[0], "specnorm") || streq(f[0], "allowspre")) {
                PkgSpecifierSet *s = NULL;
                PkgVersion *v = NULL;
                NEED(2);
                if (pkg_specifier_set_parse(f[1], &s, NULL) < 0) {
                        out("invalid");
                        return;
                }
                if (streq(f[0], "specnorm")) {
                        char *t = pkg_specifier_set_to_string(s);
                        out("%s", t);
                        free(t);
                } else if (streq(f[0], "allowspre"))
                        out("%d", pkg_specifier_set_allows_prereleases(s) ? 1 : 0);
                else if (n < 4 || pkg_version_parse(f[2], &v) < 0)
                        out("invalid");
                else
                        out("%d", pkg_specifier_set_contains(s, v, streq(f[3], "1")) ? 1 : 0);
                pkg_version_free(v);
                pkg_specifier_set_free(s);
        } else if (streq(f[0], "name")) {
                char *norm;
                NEED(2);
                norm = pkg_name_normalize(f[1]);
                out("%d %s", pkg_name_is_valid(f[1]) ? 1 : 0, norm);
                free(norm);
        } else if (streq(f[0], "req") || streq(f[0], "seed")) {
                PkgRequirement *r = NULL;
                char *err = NULL;
                int k;
                NEED(2);
                if (streq(f[0], "req"))
                        k = pkg_requirement_parse(f[1], &r, &err);
                else
                        k = pkg_requirement_from_seed(f[1], n > 2 ? f[2] : "", &r, &err);
                if (k < 0)
                        out("invalid: %s", err ?: "?");
                else {
                        char *s = pkg_requirement_to_string(r);
                        out("%s", s);
                        free(s);
                }
                free(err);
                pkg_requirement_free(r);
        } else if (streq(f[0], "marker")) {
                PkgMarker *m = NULL;
                PkgMarkerEnv env;
                NEED(4);
                if (pkg_marker_parse(f[1], &m, NULL) < 0) {
                        out("invalid");
                        return;
                }
                pkg_marker_env_default(&env, f[3]);
                out("%d", pkg_marker_evaluate(m, &env, *f[2] ? f[2] : NULL) ? 1 : 0);
                pkg_marker_free(m);
#ifndef ORACLE_NO_TAGS
        } else if (streq(f[0], "tags")) {
                PkgTags *t = NULL;
                char *fp;
                NEED(2);
                if (pkg_tags_for_interpreter(f[1], &t) < 0) {
                        out("invalid");
                        return;
                }
                /* The fingerprint is the newline-separated tag list. */
                fp = pkg_tags_fingerprint(t);
                {
                        size_t count = 0;
                        for (const char *c = fp; *c; c++)
                                count += *c == '\n';
                        out("%zu", count + (*fp != 0));
                }
                out("%s", fp);
                free(fp);
                pkg_tags_free(t);
        } else if (streq(f[0], "priority")) {
                PkgTags *t = NULL;
                NEED(3);
                if (pkg_tags_for_interpreter(f[1], &t) < 0) {
                        out("invalid");
                        return;
                }
                out("%d", pkg_tags_wheel_priority(t, f[2]));
                pkg_tags_free(t);
        } else if (streq(f[0], "wheel")) {
                PkgWheelName *w = NULL;
                NEED(2);
                if (pkg_wheel_name_parse(f[1], &w) < 0) {
                        out("invalid");
                        return;
                }
                out("%s %s %s %s %s %s", w->name, w->version, w->build ?: "-", w->python_tag, w->abi_tag,
                    w->platform_tag);
                pkg_wheel_name_free(w);
#endif
        } else if (streq(f[0], "unescape")) {
                NEED(2);
                size_t len = strlen(f[1]) / 2;
                _cleanup_free_ char *raw = xmalloc(len + 1);
                for (size_t i = 0; i < len; i++) {
                        unsigned x = 0;
                        if (sscanf(f[1] + 2 * i, "%2x", &x) != 1) {
                                out("invalid");
                                return;
                        }
                        raw[i] = (char) x;
                }
                _cleanup_free_ char *u = pkg_html_unescape(raw, len);
                Buf b;
                buf_init(&b, 8 * len + 16);
                for (const char *c = u; *c; c++)
                        buf_printf(&b, "%02x", (unsigned char) *c);
                _cleanup_free_ char *hex = buf_steal(&b);
                out("%s", hex);
        } else
                out("usage");
#undef NEED
}

int main(int argc, char **argv) {
        _cleanup_free_ char *line = xmalloc(LINE_MAX_BYTES);

        while (fgets(line, LINE_MAX_BYTES, stdin)) {
                size_t l = strlen(line);
                if (l > 0 && line[l - 1] == '\n')
                        line[--l] = 0;
                one_line(line);
        }
        return 0;
}
