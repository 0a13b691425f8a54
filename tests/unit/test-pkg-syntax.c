/* Unit tests of the pkg syntax layer: PEP 503 names, PEP 440 versions and
 * specifiers, PEP 508 markers and requirements, the seed requirement form,
 * PEP 427 wheel names and PEP 425 tag priorities. Table-driven; most rows
 * come from the PEPs' own examples and from the reference implementation's
 * documented behaviour. tests/e2e/test_pkg_syntax_crosscheck.py adds
 * thousands of generated rows checked against `packaging` itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "basic.h"
#include "pkg.h"

/* ---- names --------------------------------------------------------------- */

static void test_name_valid(void **state) {
        static const char *const valid[] = {
                "a", "A", "0", "requests", "Django", "zope.interface", "typing_extensions", "ruamel.yaml",
                "a-b", "a_b", "a.b", "a--b", "a-_.b", "x1", "1x", "Flask-SQLAlchemy", "backports.zoneinfo",
                "py2neo", "abc123def",
        };
        static const char *const invalid[] = {
                "", "-a", "a-", ".a", "a.", "_a", "a_", "a b", "a/b", "a@b", "a;b", "a[b]", "./pkg", "../x",
                "/tmp/x", "--index-url", "-e", "https://x", "git+https://x/y", "é", "a\tb", "a\nb", "a:b",
                "a==1", "a>1", "a,b", "~a", "a!",
        };
        for (size_t i = 0; i < ELEMENTSOF(valid); i++) {
                if (!pkg_name_is_valid(valid[i]))
                        fail_msg("'%s' should be a valid name", valid[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
                if (pkg_name_is_valid(invalid[i]))
                        fail_msg("'%s' should be an invalid name", invalid[i]);
        }
        assert_false(pkg_name_is_valid(NULL));
}

static void test_name_normalize(void **state) {
        static const struct {
                const char *in, *out;
        } rows[] = {
                /* PEP 503's examples: all of these are "friendly-bard". */
                { "friendly-bard", "friendly-bard" },
                { "Friendly-Bard", "friendly-bard" },
                { "FRIENDLY-BARD", "friendly-bard" },
                { "friendly.bard", "friendly-bard" },
                { "friendly_bard", "friendly-bard" },
                { "friendly--bard", "friendly-bard" },
                { "FrIeNdLy-._.-bArD", "friendly-bard" },
                { "Django", "django" },
                { "zope.interface", "zope-interface" },
                { "typing_extensions", "typing-extensions" },
                { "a", "a" },
                { "A1_b2.C3", "a1-b2-c3" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *n = pkg_name_normalize(rows[i].in);
                if (!streq(n, rows[i].out))
                        fail_msg("normalize('%s') = '%s', want '%s'", rows[i].in, n, rows[i].out);
        }
}

/* ---- versions ------------------------------------------------------------ */

static const struct {
        const char *in, *normalized;
} version_rows[] = {
        /* Release segments */
        { "1", "1" },
        { "1.0", "1.0" },
        { "1.0.0", "1.0.0" },
        { "2012.10", "2012.10" },
        { "1.2.3.4.5.6", "1.2.3.4.5.6" },
        { "01.02.03", "1.2.3" },
        { "0", "0" },
        { "00", "0" },
        { "1.00010", "1.10" },
        { "123456789012345678901234567890", "123456789012345678901234567890" },
        /* Epochs */
        { "1!1.0", "1!1.0" },
        { "0!1.0", "1.0" },
        { "00!1.0", "1.0" },
        { "2014!2014.1", "2014!2014.1" },
        /* Pre-releases and their spellings (PEP 440 "Pre-release spelling",
         * "Pre-release separators", "Implicit pre-release number") */
        { "1.0a1", "1.0a1" },
        { "1.0b2", "1.0b2" },
        { "1.0rc3", "1.0rc3" },
        { "1.0c1", "1.0rc1" },
        { "1.0alpha1", "1.0a1" },
        { "1.0beta1", "1.0b1" },
        { "1.0pre1", "1.0rc1" },
        { "1.0preview1", "1.0rc1" },
        { "1.0.a1", "1.0a1" },
        { "1.0-a1", "1.0a1" },
        { "1.0_a1", "1.0a1" },
        { "1.0a.1", "1.0a1" },
        { "1.0a-1", "1.0a1" },
        { "1.0a_1", "1.0a1" },
        { "1.0-alpha-1", "1.0a1" },
        { "1.0.beta.2", "1.0b2" },
        { "1.0a", "1.0a0" },
        { "1.0rc", "1.0rc0" },
        { "1.0-pre", "1.0rc0" },
        { "1.0a.", "1.0a0" },
        { "1.0a01", "1.0a1" },
        /* Post-releases (spellings, separators, implicit number, implicit
         * post-release "1.0-1") */
        { "1.0.post1", "1.0.post1" },
        { "1.0post1", "1.0.post1" },
        { "1.0-post1", "1.0.post1" },
        { "1.0_post1", "1.0.post1" },
        { "1.0.post.1", "1.0.post1" },
        { "1.0.post-1", "1.0.post1" },
        { "1.0.post", "1.0.post0" },
        { "1.0.r1", "1.0.post1" },
        { "1.0rev1", "1.0.post1" },
        { "1.0-r", "1.0.post0" },
        { "1.0-1", "1.0.post1" },
        { "1.0-01", "1.0.post1" },
        { "1.0a1-1", "1.0a1.post1" },
        /* Development releases */
        { "1.0.dev1", "1.0.dev1" },
        { "1.0dev1", "1.0.dev1" },
        { "1.0-dev1", "1.0.dev1" },
        { "1.0_dev1", "1.0.dev1" },
        { "1.0.dev", "1.0.dev0" },
        { "1.0.dev.2", "1.0.dev2" },
        { "1.0a1.dev2", "1.0a1.dev2" },
        { "1.0.post1.dev2", "1.0.post1.dev2" },
        { "1.0a1.post2.dev3", "1.0a1.post2.dev3" },
        { "1.0rc1-post2-dev3", "1.0rc1.post2.dev3" },
        /* Local versions */
        { "1.0+abc", "1.0+abc" },
        { "1.0+abc.5", "1.0+abc.5" },
        { "1.0+ABC", "1.0+abc" },
        { "1.0+abc-5", "1.0+abc.5" },
        { "1.0+abc_5", "1.0+abc.5" },
        { "1.0+5", "1.0+5" },
        { "1.0+05", "1.0+5" },
        { "1.0+ubuntu-1", "1.0+ubuntu.1" },
        { "1.0+cu118", "1.0+cu118" },
        { "1!1.0a1.post2.dev3+local.7", "1!1.0a1.post2.dev3+local.7" },
        /* Leading "v", case, surrounding whitespace */
        { "v1.0", "1.0" },
        { "V1.0", "1.0" },
        { "v1!2.0", "1!2.0" },
        { "1.0RC1", "1.0rc1" },
        { "1.0.POST1", "1.0.post1" },
        { "1.0.DEV1", "1.0.dev1" },
        { "1.0A1", "1.0a1" },
        { " 1.0 ", "1.0" },
        { "\t1.0\n", "1.0" },
};

static void test_version_normalize(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(version_rows); i++) {
                PkgVersion *v = NULL;
                _cleanup_free_ char *s = NULL;
                if (pkg_version_parse(version_rows[i].in, &v) < 0)
                        fail_msg("'%s' should parse", version_rows[i].in);
                s = pkg_version_to_string(v);
                if (!streq(s, version_rows[i].normalized))
                        fail_msg("'%s' normalises to '%s', want '%s'", version_rows[i].in, s,
                                 version_rows[i].normalized);
                /* The normal form parses back to itself and compares equal. */
                {
                        PkgVersion *w = NULL;
                        _cleanup_free_ char *t = NULL;
                        assert_int_equal(pkg_version_parse(s, &w), 0);
                        t = pkg_version_to_string(w);
                        assert_string_equal(s, t);
                        assert_int_equal(pkg_version_compare(v, w), 0);
                        pkg_version_free(w);
                }
                pkg_version_free(v);
        }
}

static void test_version_invalid(void **state) {
        static const char *const rows[] = {
                "", " ", "a", "v", "1.", ".1", "1..0", "1.0.", "1,0", "1 0", "1.0 a1", "1.0a1a1", "1.0ab",
                "1.0.dev1.post1", "1.0-", "1.0--1", "1.0+", "1.0+.", "1.0+a..b", "1.0+a.", "1.0++a", "1.0+a+b",
                "1.0+é", "!1.0", "1!", "1!!1.0", "1!v1.0", "vv1.0", "1.0*", "1.*", "1.0-dev-dev", "1.0.post1.post2",
                "1.0a1b1", "1.0rc1rc2", "1.0gamma1", "1.0-foo", "one", "1.0.x", "1.0_", "==1.0", ">=1", "1.0;",
                "1.0)", "-1.0", "+1.0", "1.0+a b", "1e3", "0x10", "1.0a1.dev1.dev2", "1.0\x01",
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgVersion *v = NULL;
                if (pkg_version_parse(rows[i], &v) >= 0) {
                        _cleanup_free_ char *s = pkg_version_to_string(v);
                        pkg_version_free(v);
                        fail_msg("'%s' should be invalid, parsed as '%s'", rows[i], s);
                }
        }
}

/* Strictly increasing (PEP 440's ordering examples and packaging's test
 * list, plus epochs and huge numbers). */
static const char *const version_chain[] = {
        "0.1",
        "1.0.dev456",
        "1.0a1",
        "1.0a2.dev456",
        "1.0a12.dev456",
        "1.0a12",
        "1.0b1.dev456",
        "1.0b2",
        "1.0b2.post345.dev456",
        "1.0b2.post345",
        "1.0b2-346",
        "1.0c1.dev456",
        "1.0c1",
        "1.0rc2",
        "1.0c3",
        "1.0",
        "1.0+abc",
        "1.0+abc.5",
        "1.0+abc.7",
        "1.0+5",
        "1.0+6",
        "1.0.post456.dev34",
        "1.0.post456",
        "1.0.post457",
        "1.0.15",
        "1.1.dev1",
        "1.1a1",
        "1.1",
        "1.2",
        "1.10",
        "2",
        "2.0.1",
        "10",
        "18446744073709551616",
        "1!0.1",
        "1!1.0",
        "2!0",
};

/* A version's cap holds for its normal form: "1-0" prints as "1.post0", so
 * an input just under the cap whose normal form is over it is refused
 * rather than printed as something that does not parse (fuzz-requirement). */
static void test_version_cap_holds_for_the_normal_form(void **state) {
        char in[300];
        PkgVersion *v = NULL;
        /* 254 characters: "1-0+" and 250 local ones; normal form 258. */
        snprintf(in, sizeof(in), "1-0+%0250d", 0);
        memset(in + 4, 'a', 250);
        assert_int_equal(strlen(in), 254);
        assert_int_equal(pkg_version_parse(in, &v), -EINVAL);
        /* Under the cap either way: parses, and its normal form parses. */
        snprintf(in, sizeof(in), "1.post0+%0240d", 0);
        memset(in + 8, 'a', 240);
        assert_int_equal(pkg_version_parse(in, &v), 0);
        _cleanup_free_ char *n = pkg_version_to_string(v);
        PkgVersion *w = NULL;
        assert_int_equal(pkg_version_parse(n, &w), 0);
        pkg_version_free(v);
        pkg_version_free(w);
}

static void test_version_ordering_chain(void **state) {
        size_t n = ELEMENTSOF(version_chain);
        PkgVersion *v[ELEMENTSOF(version_chain)];

        for (size_t i = 0; i < n; i++)
                assert_int_equal(pkg_version_parse(version_chain[i], &v[i]), 0);
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                        int c = pkg_version_compare(v[i], v[j]);
                        int want = i < j ? -1 : i > j ? 1 : 0;
                        if ((c > 0) - (c < 0) != want)
                                fail_msg("compare('%s', '%s') = %d, want %d", version_chain[i], version_chain[j],
                                         c, want);
                }
        for (size_t i = 0; i < n; i++)
                pkg_version_free(v[i]);
}

static void test_version_equal(void **state) {
        static const struct {
                const char *a, *b;
        } rows[] = {
                { "1", "1.0" },          { "1.0", "1.0.0.0" },      { "1.0a", "1.0a0" },
                { "1.0alpha1", "1.0a1" }, { "1.0c1", "1.0rc1" },     { "1.0-1", "1.0.post1" },
                { "1.0.r", "1.0post0" },  { "v1.0", "1.0" },         { "0!1.0", "1.0" },
                { "1.0+ABC", "1.0+abc" }, { "1.0+a-b", "1.0+a.b" },  { "1.0+01", "1.0+1" },
                { "01.0", "1.0" },        { "1.0.dev", "1.0.dev0" }, { "1.0PREVIEW2", "1.0rc2" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgVersion *a = NULL, *b = NULL;
                assert_int_equal(pkg_version_parse(rows[i].a, &a), 0);
                assert_int_equal(pkg_version_parse(rows[i].b, &b), 0);
                if (pkg_version_compare(a, b) != 0)
                        fail_msg("'%s' should equal '%s'", rows[i].a, rows[i].b);
                pkg_version_free(a);
                pkg_version_free(b);
        }
}

static void test_version_prerelease(void **state) {
        static const struct {
                const char *v;
                bool pre;
        } rows[] = {
                { "1.0", false },     { "1.0a1", true },          { "1.0b1", true },      { "1.0rc1", true },
                { "1.0.dev0", true }, { "1.0.post1", false },     { "1.0.post1.dev1", true }, { "1.0+local", false },
                { "1.0a1+local", true }, { "1!1.0", false },      { "1.0c1", true },      { "1.0-1", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgVersion *v = NULL;
                assert_int_equal(pkg_version_parse(rows[i].v, &v), 0);
                if (pkg_version_is_prerelease(v) != rows[i].pre)
                        fail_msg("is_prerelease('%s') != %d", rows[i].v, rows[i].pre);
                pkg_version_free(v);
        }
}

/* ---- specifiers ----------------------------------------------------------- */

typedef struct ContainsRow {
        const char *spec, *version;
        bool prereleases, expected;
} ContainsRow;

static const ContainsRow contains_rows[] = {
        /* == and != , with trailing-zero insensitivity */
        { "==1.0", "1.0", false, true },
        { "==1.0", "1", false, true },
        { "==1.0", "1.0.0", false, true },
        { "==1.0", "1.1", false, false },
        { "==1.0", "1.0.post1", false, false },
        { "==1.0", "1.0a1", true, false },
        { "==1.0", "1!1.0", false, false },
        { "==1!1.0", "1!1.0", false, true },
        { "!=1.0", "1.1", false, true },
        { "!=1.0", "1.0", false, false },
        { "!=1.0", "1.0.0", false, false },
        { "==2.0.0", "2", false, true },
        /* Local versions: a specifier without one ignores the candidate's;
         * with one it must match exactly. */
        { "==1.0", "1.0+local", false, true },
        { "==1.0", "1.0+abc.5", false, true },
        { "!=1.0", "1.0+local", false, false },
        { "==1.0+local", "1.0+local", false, true },
        { "==1.0+local", "1.0", false, false },
        { "==1.0+local", "1.0+other", false, false },
        { "==1.0+LOCAL", "1.0+local", false, true },
        { "!=1.0+local", "1.0", false, true },
        { "!=1.0+local", "1.0+local", false, false },
        { "<=1.0", "1.0+local", false, true },
        { ">=1.0", "1.0+local", false, true },
        { "<1.0", "1.0+local", false, false },
        { ">1.0", "1.0+local", false, false },
        { ">1.0", "1.0.1+local", false, true },
        /* Prefix matching */
        { "==1.*", "1", false, true },
        { "==1.*", "1.0", false, true },
        { "==1.*", "1.9.9", false, true },
        { "==1.*", "2.0", false, false },
        { "==1.*", "0.9", false, false },
        { "==1.0.*", "1.0", false, true },
        { "==1.0.*", "1", false, true },
        { "==1.0.*", "1.0.5", false, true },
        { "==1.0.*", "1.0+local", false, true },
        { "==1.0.*", "1.0.post1", false, true },
        { "==1.0.*", "1.0.0a1", true, true },
        { "==1.0.*", "1.0a1", false, false },
        { "==1.0.*", "1.1", false, false },
        { "==1.0.*", "1.01", false, false },
        { "==1.0.0.*", "1", false, true },
        { "==1.1.*", "1.10", false, false },
        { "==2.*", "1!2.0", false, false },
        { "==1!2.*", "1!2.3", false, true },
        { "==1!2.0.*", "1!2", false, true }, /* packaging 23.0 disagrees (epoch quirk) */
        { "!=1.*", "1.5", false, false },
        { "!=1.*", "2.0", false, true },
        { "!=1.0.*", "1.0.1", false, false },
        { "!=1.0.*", "1.1", false, true },
        /* ~= (PEP 440's own equivalences) */
        { "~=2.2", "2.2", false, true },
        { "~=2.2", "2.3", false, true },
        { "~=2.2", "2.9.9", false, true },
        { "~=2.2", "3.0", false, false },
        { "~=2.2", "2.1", false, false },
        { "~=2.2", "2.2.post3", false, true },
        { "~=2.2.0", "2.2.0", false, true },
        { "~=2.2.0", "2.2.9", false, true },
        { "~=2.2.0", "2.3", false, false },
        { "~=1.4.5", "1.4.5", false, true },
        { "~=1.4.5", "1.4.6", false, true },
        { "~=1.4.5", "1.5.0", false, false },
        { "~=1.4.5a4", "1.4.5a4", false, true },
        { "~=1.4.5a4", "1.4.5", false, true },
        { "~=1.4.5a4", "1.4.6a1", false, true },
        { "~=1.4.5a4", "1.4.5a3", true, false },
        { "~=1.4.5a4", "1.5", false, false },
        { "~=2.2.post3", "2.2.post3", false, true },
        { "~=2.2.post3", "2.2", false, false },
        { "~=2.2.post3", "2.3", false, true },
        { "~=2.2.post3", "3.0", false, false },
        { "~=1.4.5.0", "1.4.5.0", false, true },
        { "~=1.4.5.0", "1.4.5.9", false, true },
        { "~=1.4.5.0", "1.4.6", false, false },
        { "~=2.2", "2.2+local", false, true },
        { "~=1!2.2", "1!2.5", false, true },
        { "~=1!2.2", "2.5", false, false },
        { "~=2.2", "2.3.dev1", false, false },
        { "~=2.2", "2.3.dev1", true, true },
        /* <= and >= */
        { "<=2.0", "2.0", false, true },
        { "<=2.0", "2.0.post1", false, false },
        { "<=2.0", "1.9", false, true },
        { "<=2.0", "2.1", false, false },
        { ">=2.0", "2.0", false, true },
        { ">=2.0", "2.0.post1", false, true },
        { ">=2.0", "1.9", false, false },
        { ">=2.0", "3.0", false, true },
        { ">=2.0", "2.0rc1", true, false },
        { ">=2.0rc1", "2.0rc1", false, true },
        { ">=2.0rc1", "2.0", false, true },
        { ">=2.0.dev1", "2.0.dev1", false, true },
        /* < excludes pre-releases of the named version... */
        { "<2.0", "1.9", false, true },
        { "<2.0", "2.0", false, false },
        { "<2.0", "2.0a1", true, false },
        { "<2.0", "2.0.dev1", true, false },
        { "<2.0", "2.0rc1", true, false },
        { "<2.0", "1.9a1", true, true },
        { "<2.0", "1.9a1", false, false },
        { "<2.0", "2.0.post1", false, false },
        { "<2.0", "1!1.0", false, false },
        { "<2.0", "1.99+local", false, true },
        /* ...unless it is itself a pre-release */
        { "<2.0rc1", "2.0a1", true, true },
        { "<2.0rc1", "2.0a1", false, false },
        { "<2.0rc1", "2.0b1", true, true },
        { "<2.0rc1", "2.0rc1", true, false },
        { "<2.0rc1", "2.0.dev1", true, true },
        { "<2.0.post1", "2.0", false, true },
        /* > excludes post-releases and local versions of the named one */
        { ">2.0", "2.1", false, true },
        { ">2.0", "2.0", false, false },
        { ">2.0", "2.0.post1", false, false },
        { ">2.0", "2.0+local", false, false },
        { ">2.0", "2.0.1", false, true },
        { ">2.0", "2.0.1.post1", false, true },
        { ">2.0", "2.1a1", true, true },
        { ">2.0", "2.1a1", false, false },
        { ">2.0.post1", "2.0.post2", false, true },
        { ">2.0.post1", "2.0.post1", false, false },
        { ">2.0.post1", "2.0.post1+l", false, false },
        { ">2.0a1", "2.0a2", true, true },
        { ">2.0a1", "2.0a2", false, false },
        { ">2.0a1", "2.0", false, true },
        { ">1!1.0", "1!1.1", false, true },
        { ">1!1.0", "2.0", false, false },
        /* === compares the normalised text, case-insensitively */
        { "===1.0", "1.0", false, true },
        { "===1.0", "1.0.0", false, false },
        { "===1.0", "1", false, false },
        { "===1.0+LOCAL", "1.0+local", false, true },
        { "===1.0a1", "1.0a1", false, true },
        { "===foobar", "1.0", false, false },
        /* Pre-release admission for sets */
        { "", "1.0", false, true },
        { "", "1.0a1", false, false },
        { "", "1.0a1", true, true },
        { ">=1.0", "1.1a1", false, false },
        { ">=1.0", "1.1a1", true, true },
        { ">=1.0a1", "1.1a1", false, true },
        { ">=1.0a1", "1.1.dev1", false, true },
        { "==1.0a1", "1.0a1", false, true },
        { "<=1.0a1", "1.0a1", false, true },
        { "~=1.0a1", "1.0a2", false, true },
        { "===1.0a1", "1.0a1", false, true },
        { "!=1.0a1", "1.1a1", false, false },
        { "<1.0a1", "0.9a1", false, false },
        { ">1.0a1", "1.1a1", false, false },
        { ">=1.0,<2", "1.5a1", false, false },
        { ">=1.0,<2,!=1.5a1", "1.6a1", false, false },
        { ">=1.0a1,<2", "1.5a1", false, true },
        { ">=1.0,<2,==1.*", "1.5a1", false, false },
        { ">=1.0,<2,>=1.0b1", "1.5a1", false, true },
        /* Sets */
        { ">=1.0,<2.0", "1.5", false, true },
        { ">=1.0,<2.0", "2.0", false, false },
        { ">=1.0,<2.0", "0.9", false, false },
        { ">=1.0, <2.0, !=1.5", "1.5", false, false },
        { ">=1.0, <2.0, !=1.5.*", "1.5.3", false, false },
        { ">=1.0, <2.0, !=1.5.*", "1.6", false, true },
        { ">=2,<3", "2.28.1", false, true },
        { ">=2,<3", "3.0", false, false },
        { "~=2.28, !=2.28.0", "2.28.1", false, true },
        { "~=2.28, !=2.28.0", "2.28.0", false, false },
        { " >= 1.0 , < 2 ", "1.5", false, true },
        { "==1.0,!=1.0", "1.0", false, false },
        { ">=v1.0", "1.0", false, true },
        { "==1.0.*,>=1.0.2", "1.0.1", false, false },
        { "==1.0.*,>=1.0.2", "1.0.3", false, true },
};

static void test_specifier_contains(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(contains_rows); i++) {
                const ContainsRow *row = &contains_rows[i];
                PkgSpecifierSet *s = NULL;
                PkgVersion *v = NULL;
                _cleanup_free_ char *err = NULL;

                if (pkg_specifier_set_parse(row->spec, &s, &err) < 0)
                        fail_msg("'%s' should parse: %s", row->spec, err);
                assert_int_equal(pkg_version_parse(row->version, &v), 0);
                if (pkg_specifier_set_contains(s, v, row->prereleases) != row->expected)
                        fail_msg("'%s' contains '%s' (prereleases=%d) should be %d", row->spec, row->version,
                                 row->prereleases, row->expected);
                pkg_specifier_set_free(s);
                pkg_version_free(v);
        }
}

static void test_specifier_invalid(void **state) {
        static const char *const rows[] = {
                "1.0", ">>1.0", "=>1.0", "=<1.0", "=1.0", "<>1.0", "~1.0", "~=1", "~=1.0+local", "~=1.*",
                ">=1.*", "<1.*", "<=1.0+local", ">=1.0+local", "<1.0+local", ">1.0+local", "==1.*.0", "==1.0a1.*",
                "==1.0.post1.*", "==1.0+local.*", "==*", "==.*", ">=", "==", "!=", ">= 1.0 2.0", ">=1.0,", ",>=1.0",
                ">=1.0,,<2", ">=1.0;", ">=1.0)", "(>=1.0)", ">=abc", "== 1 .0", "a>=1.0", ">=1.0 <2.0", "=== a b",
                ">=1.0.dev1.post1",
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgSpecifierSet *s = NULL;
                _cleanup_free_ char *err = NULL;
                if (pkg_specifier_set_parse(rows[i], &s, &err) >= 0) {
                        pkg_specifier_set_free(s);
                        fail_msg("'%s' should be an invalid specifier", rows[i]);
                }
                assert_non_null(err);
        }
}

static void test_specifier_to_string(void **state) {
        static const struct {
                const char *in, *out;
        } rows[] = {
                { "", "" },
                { ">=1.0", ">=1.0" },
                { "<2, >=1.0", "<2,>=1.0" },
                { ">= 1.0 ,< 2", "<2,>=1.0" },
                { "==1.0.*", "==1.0.*" },
                { "~=2.2-1", "~=2.2.post1" },
                { ">=V1.0ALPHA", ">=1.0a0" },
                { "===Foo", "===Foo" },
                { ">=1,>=1", ">=1" },
                { "!=1.0+Local_1", "!=1.0+local.1" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgSpecifierSet *s = NULL;
                _cleanup_free_ char *t = NULL;
                assert_int_equal(pkg_specifier_set_parse(rows[i].in, &s, NULL), 0);
                t = pkg_specifier_set_to_string(s);
                if (!streq(t, rows[i].out))
                        fail_msg("'%s' -> '%s', want '%s'", rows[i].in, t, rows[i].out);
                pkg_specifier_set_free(s);
        }
}

static void test_specifier_allows_prereleases(void **state) {
        static const struct {
                const char *spec;
                bool pre;
        } rows[] = {
                { "", false },         { ">=1.0", false },     { ">=1.0a1", true },   { "<=1.0a1", true },
                { "==1.0a1", true },   { "~=1.0a1", true },    { "===1.0a1", true },  { "!=1.0a1", false },
                { "<1.0a1", false },   { ">1.0a1", false },    { "==1.0.*", false },  { ">=1.0.dev0", true },
                { ">=1,<2a1", false }, { ">=1,<=2a1", true },  { "===foo", false },   { ">=1.0.post1", false },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgSpecifierSet *s = NULL;
                assert_int_equal(pkg_specifier_set_parse(rows[i].spec, &s, NULL), 0);
                if (pkg_specifier_set_allows_prereleases(s) != rows[i].pre)
                        fail_msg("allows_prereleases('%s') != %d", rows[i].spec, rows[i].pre);
                pkg_specifier_set_free(s);
        }
}

/* ---- markers --------------------------------------------------------------- */

static const PkgMarkerEnv test_env = {
        .os_name = "posix",
        .sys_platform = "linux",
        .platform_machine = "x86_64",
        .platform_python_implementation = "CPython",
        .platform_release = "6.1.0-13-amd64",
        .platform_system = "Linux",
        .platform_version = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1",
        .python_version = "3.11",
        .python_full_version = "3.11.2",
        .implementation_name = "cpython",
        .implementation_version = "3.11.2",
};

static void test_marker_evaluate(void **state) {
        static const struct {
                const char *marker, *extra;
                bool expected;
        } rows[] = {
                { "python_version >= '3.8'", NULL, true },
                { "python_version < '3.8'", NULL, false },
                { "python_version == '3.11'", NULL, true },
                { "python_version > '3.9'", NULL, true },        /* as versions: 3.11 > 3.9 */
                { "python_version > '3.11'", NULL, false },
                { "python_version ~= '3.8'", NULL, true },
                { "python_version == '3.*'", NULL, true },
                { "python_version != '3.11.*'", NULL, false },
                { "python_full_version >= '3.11.1'", NULL, true },
                { "python_full_version < '3.11.2'", NULL, false },
                { "python_full_version === '3.11.2'", NULL, true },
                { "'3.8' <= python_version", NULL, true },
                { "'3.12' <= python_version", NULL, false },
                { "os_name == 'posix'", NULL, true },
                { "os_name == \"nt\"", NULL, false },
                { "os.name == 'posix'", NULL, true },
                { "sys_platform == 'linux'", NULL, true },
                { "sys.platform == 'win32'", NULL, false },
                { "sys_platform != 'win32'", NULL, true },
                { "platform_machine == 'x86_64'", NULL, true },
                { "platform.machine in 'x86_64 aarch64'", NULL, true },
                { "platform_machine not in 'arm64 aarch64'", NULL, true },
                { "platform_system == 'Linux'", NULL, true },
                { "platform_system == 'linux'", NULL, false },
                { "platform_python_implementation == 'CPython'", NULL, true },
                { "python_implementation == 'PyPy'", NULL, false },
                { "implementation_name == 'cpython'", NULL, true },
                { "implementation_version >= '3'", NULL, true },
                { "platform_release >= '6'", NULL, true },       /* not a version: string compare */
                { "platform_release < '10'", NULL, false },      /* string compare: '6' > '1' */
                { "'linux' in sys_platform", NULL, true },
                { "'win' in sys_platform", NULL, false },
                { "'SMP' in platform_version", NULL, true },
                { "extra == 'socks'", "socks", true },
                { "extra == 'socks'", NULL, false },
                { "extra == 'socks'", "other", false },
                { "extra == 'Foo_Bar'", "foo-bar", true },        /* PEP 685 */
                { "extra == 'foo.bar'", "Foo__Bar", true },
                { "extra != 'socks'", NULL, true },
                { "python_version >= '3.8' and os_name == 'posix'", NULL, true },
                { "python_version >= '3.8' and os_name == 'nt'", NULL, false },
                { "python_version < '3.8' or os_name == 'posix'", NULL, true },
                { "python_version < '3.8' or os_name == 'nt'", NULL, false },
                { "os_name == 'nt' and python_version < '3' or sys_platform == 'linux'", NULL, true },
                { "os_name == 'nt' and (python_version < '3' or sys_platform == 'linux')", NULL, false },
                { "sys_platform == 'linux' or os_name == 'nt' and python_version < '3'", NULL, true },
                { "(sys_platform == 'linux' or os_name == 'nt') and python_version < '3'", NULL, false },
                { "((python_version >= '3'))", NULL, true },
                { "(extra == 'a' or extra == 'b') and python_version > '3'", "b", true },
                { "python_version>='3.8'and os_name=='posix'", NULL, true },
                { "  python_version  >=  '3.8'  ", NULL, true },
                { "python_version == '3.11.0'", NULL, true },   /* versions: 3.11 == 3.11.0 */
                { "'abc' == 'abc'", NULL, true },
                { "'abc' < 'abd'", NULL, true },
                { "'2.0' ~= '2.0'", NULL, true },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgMarker *m = NULL;
                _cleanup_free_ char *err = NULL;
                if (pkg_marker_parse(rows[i].marker, &m, &err) < 0)
                        fail_msg("'%s' should parse: %s", rows[i].marker, err);
                if (pkg_marker_evaluate(m, &test_env, rows[i].extra) != rows[i].expected)
                        fail_msg("'%s' (extra=%s) should be %d", rows[i].marker, rows[i].extra ?: "(null)",
                                 rows[i].expected);
                pkg_marker_free(m);
        }
}

static void test_marker_invalid(void **state) {
        static const char *const rows[] = {
                "",
                "python_version",
                "python_version >=",
                "python_version >= 3.8",
                "python_version >= '3.8",
                "python_versions >= '3.8'",
                "pythonversion >= '3.8'",
                "python_version => '3.8'",
                "python_version = '3.8'",
                "python_version >= '3.8' and",
                "python_version >= '3.8' or or os_name == 'nt'",
                "(python_version >= '3.8'",
                "python_version >= '3.8')",
                "python_version >= '3.8' && os_name == 'nt'",
                "os_name notin 'posix'",
                "os_name not 'posix'",
                "os_name is 'posix'",
                "foo == 'bar'",
                "'a' 'b'",
                "python_version >= '3.8' andos_name == 'nt'",
                "()",
                "os_name == 'posix' ; os_name == 'nt'",
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgMarker *m = NULL;
                _cleanup_free_ char *err = NULL;
                if (pkg_marker_parse(rows[i], &m, &err) >= 0) {
                        pkg_marker_free(m);
                        fail_msg("'%s' should be an invalid marker", rows[i]);
                }
                assert_non_null(err);
        }
}

static void test_marker_env_default(void **state) {
        PkgMarkerEnv env;
        PkgMarker *m = NULL;

        pkg_marker_env_default(&env, "3.11.2");
        assert_string_equal(env.python_version, "3.11");
        assert_string_equal(env.python_full_version, "3.11.2");
        assert_string_equal(env.implementation_version, "3.11.2");
        assert_string_equal(env.os_name, "posix");
        assert_string_equal(env.sys_platform, "linux");
        assert_string_equal(env.platform_system, "Linux");
        assert_string_equal(env.implementation_name, "cpython");
        assert_true(strlen(env.platform_machine) > 0);
        assert_true(strlen(env.platform_release) > 0);
        assert_int_equal(pkg_marker_parse("python_version >= '3.8' and sys_platform == 'linux'", &m, NULL), 0);
        assert_true(pkg_marker_evaluate(m, &env, NULL));
        pkg_marker_free(m);
}

/* ---- requirements -------------------------------------------------------- */

static void test_requirement_valid(void **state) {
        static const struct {
                const char *in, *normalized, *name;
        } rows[] = {
                { "requests", "requests", "requests" },
                { "Requests", "requests", "Requests" },
                { "requests>=2", "requests>=2", "requests" },
                { "requests >= 2", "requests>=2", "requests" },
                { "requests>=2,<3", "requests<3,>=2", "requests" },
                { "requests (>=2,<3)", "requests<3,>=2", "requests" },
                { "requests(>=2, <3)", "requests<3,>=2", "requests" },
                { "requests [socks]", "requests[socks]", "requests" },
                { "requests[socks,security]>=2", "requests[security,socks]>=2", "requests" },
                { "requests[ socks , Security ] >=2", "requests[security,socks]>=2", "requests" },
                { "requests[]", "requests", "requests" },
                { "zope.interface>=5", "zope-interface>=5", "zope.interface" },
                { "Typing_Extensions~=4.0", "typing-extensions~=4.0", "Typing_Extensions" },
                { "name==1.0.*", "name==1.0.*", "name" },
                { "name===arbitrary", "name===arbitrary", "name" },
                { "name; python_version < '3.8'", "name; python_version < \"3.8\"", "name" },
                { "name>=1.0; python_version < '3.8'", "name>=1.0; python_version < \"3.8\"", "name" },
                { "name (>=1.0) ; os_name == 'nt' and extra == 'x'",
                  "name>=1.0; os_name == \"nt\" and extra == \"x\"", "name" },
                { "name[a]>=1;extra=='a'", "name[a]>=1; extra == \"a\"", "name" },
                { "  name  ", "name", "name" },
                { "name ; sys.platform == 'win32'", "name; sys_platform == \"win32\"", "name" },
                { "name; (os_name == 'a' or os_name == 'b') and python_version > '3'",
                  "name; (os_name == \"a\" or os_name == \"b\") and python_version > \"3\"", "name" },
                { "a", "a", "a" },
                { "A.B-C_D", "a-b-c-d", "A.B-C_D" },
                { "name>=1.0a1", "name>=1.0a1", "name" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL, *s = NULL;
                if (pkg_requirement_parse(rows[i].in, &r, &err) < 0)
                        fail_msg("'%s' should parse: %s", rows[i].in, err);
                s = pkg_requirement_to_string(r);
                if (!streq(s, rows[i].normalized))
                        fail_msg("'%s' -> '%s', want '%s'", rows[i].in, s, rows[i].normalized);
                assert_string_equal(r->name, rows[i].name);
                assert_non_null(r->specifiers);
                pkg_requirement_free(r);
        }
}

static void test_requirement_invalid(void **state) {
        static const struct {
                const char *in, *message_part;
        } rows[] = {
                { "", "not a valid package name" },
                { "name @ https://example.com/x.whl", "direct URL" },
                { "name@https://example.com/x.whl", "direct URL" },
                { "name [extra] @ file:///tmp/x", "direct URL" },
                { "https://example.com/x.whl", "" },
                { "./local/dir", "" },
                { "/abs/path", "" },
                { "-e .", "" },
                { "--index-url=http://x", "" },
                { "name>=", "" },
                { "name>>1", "" },
                { "name 1.0", "" },
                { "name==1.0 foo", "" },
                { "name (>=1.0", "missing ')'" },
                { "name[extra", "" },
                { "name[extra,]", "" },
                { "name[,extra]", "" },
                { "name[-x]", "invalid extra" },
                { "name; ", "" },
                { "name; python_version >>= '3'", "invalid marker" },
                { "name; foo == 'bar'", "invalid marker" },
                { "-name", "" },
                { "name-", "" },
                { "na me", "" },
                { "name>=1.0,,<2", "" },
                { "name (>=1.0) extra", "unexpected text" },
                { "name;;python_version>'3'", "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL;
                if (pkg_requirement_parse(rows[i].in, &r, &err) >= 0) {
                        pkg_requirement_free(r);
                        fail_msg("'%s' should be an invalid requirement", rows[i].in);
                }
                assert_non_null(err);
                if (!strstr(err, rows[i].message_part))
                        fail_msg("message for '%s' is '%s', expected to contain '%s'", rows[i].in, err,
                                 rows[i].message_part);
        }
}

/* ---- the seed's @requirements({key: value}) form -------------------------- */

static void test_seed_valid(void **state) {
        static const struct {
                const char *key, *value, *normalized;
        } rows[] = {
                { "requests", "", "requests" },
                { "requests", NULL, "requests" },
                { "requests", "2.28.1", "requests==2.28.1" },
                { "requests", " 2.28.1 ", "requests==2.28.1" },
                { "requests", "v2.28", "requests==2.28" },
                { "requests", "2.28.1+local", "requests==2.28.1+local" },
                { "requests", "2.0a1", "requests==2.0a1" },
                { "requests", ">=2,<3", "requests<3,>=2" },
                { "requests", ">=2, <3", "requests<3,>=2" },
                { "requests", "~=2.28", "requests~=2.28" },
                { "requests", "==2.*", "requests==2.*" },
                { "requests", "!=2.0", "requests!=2.0" },
                { "requests", "<3", "requests<3" },
                { "requests[socks]", ">=2,<3", "requests[socks]>=2,<3" },
                { "requests[socks,security]", "", "requests[security,socks]" },
                { "Requests", "", "requests" },
                { "zope.interface", "5.0", "zope-interface==5.0" },
                { "typing_extensions", "", "typing-extensions" },
                { "logzero", "", "logzero" },
                { "a", "1", "a==1" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL, *s = NULL;
                if (pkg_requirement_from_seed(rows[i].key, rows[i].value, &r, &err) < 0)
                        fail_msg("seed %s: %s should be valid: %s", rows[i].key, rows[i].value ?: "(null)", err);
                s = pkg_requirement_to_string(r);
                /* Specifiers come out sorted; compare on the sorted form. */
                {
                        PkgRequirement *w = NULL;
                        _cleanup_free_ char *ws = NULL;
                        assert_int_equal(pkg_requirement_parse(rows[i].normalized, &w, NULL), 0);
                        ws = pkg_requirement_to_string(w);
                        if (!streq(s, ws))
                                fail_msg("seed %s: %s -> '%s', want '%s'", rows[i].key, rows[i].value ?: "(null)",
                                         s, ws);
                        pkg_requirement_free(w);
                }
                assert_null(r->marker);
                assert_non_null(r->specifiers);
                pkg_requirement_free(r);
        }
}

static void test_seed_invalid_key(void **state) {
        static const char *const keys[] = {
                "--index-url=http://evil",
                "--index-url",
                "--extra-index-url=https://evil.example/simple",
                "-i",
                "-e",
                "-e .",
                "-r requirements.txt",
                "-rrequirements.txt",
                "--find-links=/tmp",
                "--pre",
                "./pkg",
                "../x",
                "/tmp/x",
                ".",
                "..",
                "~/x",
                "pkg/sub",
                "C:\\x",
                "file:///tmp/x",
                "git+https://github.com/x/y",
                "git+ssh://git@github.com/x/y.git",
                "https://example.com/x.whl",
                "http://x",
                "hg+https://x",
                "requests @ https://x",
                "requests@https://x",
                "requests @ file:///x",
                "@",
                "requests;python_version>'3'",
                "requests; os_name=='nt'",
                ";",
                "requests ",
                " requests",
                "requests socks",
                "req\tuests",
                "requests\n",
                "requests\r",
                "",
                "requests>=2",
                "requests==2.0",
                "requests (>=2)",
                "requests[socks",
                "requests[socks]]",
                "requests[soc ks]",
                "requests[ socks]",
                "requests [socks]",
                "requests[--x]",
                "requests[socks];x",
                "-",
                "_",
                "requests-",
                "é",
                "requests!",
                "requests$(id)",
                "requests`id`",
                "requests|sh",
                "requests&&x",
                "requests'",
                "\"requests\"",
                "re*",
                "requests#egg",
                "requests?x=1",
                "%2e%2e",
        };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL, *want = NULL;
                if (pkg_requirement_from_seed(keys[i], "", &r, &err) >= 0) {
                        pkg_requirement_free(r);
                        fail_msg("seed key '%s' should be rejected", keys[i]);
                }
                assert_non_null(err);
                /* The message names the key. */
                want = xasprintf("'%s'", keys[i]);
                if (!strstr(err, want))
                        fail_msg("message '%s' does not name the key '%s'", err, keys[i]);
        }
        /* The exact message the CLI shows for the classic attack. */
        {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL;
                assert_int_equal(pkg_requirement_from_seed("--index-url=http://evil", "", &r, &err), -EINVAL);
                assert_string_equal(err, "invalid requirement name '--index-url=http://evil': not a package name "
                                         "(options, paths and URLs are not allowed)");
        }
        /* NULL key */
        {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL;
                assert_int_equal(pkg_requirement_from_seed(NULL, "", &r, &err), -EINVAL);
                assert_non_null(err);
        }
}

static void test_seed_invalid_value(void **state) {
        static const char *const values[] = {
                ">>2",         "=>2",          "2.x",         "latest",          "*",
                "any",         ">=2 <3",       "@ https://x", "https://x/y.whl", "--pre",
                "-e",          ">=2,",         ",",           "==2.*.1",         "~=2",
                ">=1.0+local", "2.28.1 extra", "(>=2)",       "==2.0 || ==3.0",  "^2.0",
                "~2.0",        "2.0-",         "../x",
        };
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL, *want = NULL;
                if (pkg_requirement_from_seed("requests", values[i], &r, &err) >= 0) {
                        _cleanup_free_ char *s = pkg_requirement_to_string(r);
                        pkg_requirement_free(r);
                        fail_msg("seed value '%s' should be rejected, got '%s'", values[i], s);
                }
                want = xasprintf("invalid version specifier for 'requests': '%s'", values[i]);
                if (!streq(err, want))
                        fail_msg("message '%s', want '%s'", err, want);
        }
}

/* A PEP 508 marker after the value's ';' (the key stays a bare name). */
static void test_seed_marker(void **state) {
        static const struct {
                const char *value, *normalized;
        } rows[] = {
                { ">=300; sys_platform == 'win32'", "pywin32>=300; sys_platform == \"win32\"" },
                { ">=2;python_version>'3'", "pywin32>=2; python_version > \"3\"" },
                { "; sys_platform == \"win32\"", "pywin32; sys_platform == \"win32\"" },
                { " 300 ; os_name=='nt'", "pywin32==300; os_name == \"nt\"" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgRequirement *r = NULL, *w = NULL;
                _cleanup_free_ char *err = NULL, *s = NULL, *ws = NULL;
                if (pkg_requirement_from_seed("pywin32", rows[i].value, &r, &err) < 0)
                        fail_msg("seed value '%s' should be valid: %s", rows[i].value, err);
                assert_non_null(r->marker);
                s = pkg_requirement_to_string(r);
                assert_int_equal(pkg_requirement_parse(rows[i].normalized, &w, NULL), 0);
                ws = pkg_requirement_to_string(w);
                if (!streq(s, ws))
                        fail_msg("seed value '%s' -> '%s', want '%s'", rows[i].value, s, ws);
                pkg_requirement_free(w);
                pkg_requirement_free(r);
        }
        static const char *const bad[] = { ">=2;", ">=2; nope == 'x'", "; python_version >", ">=2; a; b" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL, *want = NULL;
                if (pkg_requirement_from_seed("pywin32", bad[i], &r, &err) >= 0) {
                        pkg_requirement_free(r);
                        fail_msg("seed value '%s' should be rejected", bad[i]);
                }
                want = xasprintf("invalid marker for 'pywin32': '%s'", bad[i]);
                if (!startswith(err, want))
                        fail_msg("message '%s', want '%s…'", err, want);
        }
        /* The marker written into the key, as pip's requirement: refused,
         * saying where it goes. */
        {
                PkgRequirement *r = NULL;
                _cleanup_free_ char *err = NULL;
                assert_int_equal(pkg_requirement_from_seed("pywin32; sys_platform==\"win32\"", "", &r, &err), -EINVAL);
                assert_string_equal(err, "invalid requirement name 'pywin32; sys_platform==\"win32\"': a marker goes "
                                         "in the value, as in {'pywin32': '; sys_platform==\"win32\"'}");
        }
}

/* ---- wheel names and tags -------------------------------------------------- */

static void test_wheel_name(void **state) {
        static const struct {
                const char *file, *name, *version, *build, *py, *abi, *plat;
        } rows[] = {
                { "requests-2.28.1-py3-none-any.whl", "requests", "2.28.1", NULL, "py3", "none", "any" },
                { "six-1.16.0-py2.py3-none-any.whl", "six", "1.16.0", NULL, "py2.py3", "none", "any" },
                { "numpy-1.26.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "numpy", "1.26.0",
                  NULL, "cp311", "cp311", "manylinux_2_17_x86_64.manylinux2014_x86_64" },
                { "zope.interface-5.0-cp311-cp311-linux_x86_64.whl", "zope.interface", "5.0", NULL, "cp311",
                  "cp311", "linux_x86_64" },
                { "typing_extensions-4.8.0-py3-none-any.whl", "typing_extensions", "4.8.0", NULL, "py3", "none",
                  "any" },
                { "pkg-1.0-1-py3-none-any.whl", "pkg", "1.0", "1", "py3", "none", "any" },
                { "pkg-1.0-2abc-py3-none-any.whl", "pkg", "1.0", "2abc", "py3", "none", "any" },
                { "cryptography-41.0.4-cp37-abi3-manylinux_2_28_x86_64.whl", "cryptography", "41.0.4", NULL, "cp37",
                  "abi3", "manylinux_2_28_x86_64" },
                { "Pkg-1.0a1.post2-py3-none-any.whl", "Pkg", "1.0a1.post2", NULL, "py3", "none", "any" },
        };
        static const char *const invalid[] = {
                "requests-2.28.1-py3-none-any.zip",
                "requests-2.28.1-py3-none.whl",
                "requests-py3-none-any.whl",
                "requests-2.28.1-1-2-py3-none-any.whl",
                "requests-notaversion-py3-none-any.whl",
                "req__uests-1.0-py3-none-any.whl",
                "-1.0-py3-none-any.whl",
                "pkg-1.0-abc-py3-none-any.whl",
                "pkg-1.0--none-any.whl",
                "pkg-1.0-py3-none-.whl",
                "pkg/x-1.0-py3-none-any.whl",
                ".whl",
                "",
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                PkgWheelName *w = NULL;
                if (pkg_wheel_name_parse(rows[i].file, &w) < 0)
                        fail_msg("'%s' should parse", rows[i].file);
                assert_string_equal(w->name, rows[i].name);
                assert_string_equal(w->version, rows[i].version);
                if (rows[i].build)
                        assert_string_equal(w->build, rows[i].build);
                else
                        assert_null(w->build);
                assert_string_equal(w->python_tag, rows[i].py);
                assert_string_equal(w->abi_tag, rows[i].abi);
                assert_string_equal(w->platform_tag, rows[i].plat);
                pkg_wheel_name_free(w);
        }
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
                PkgWheelName *w = NULL;
                if (pkg_wheel_name_parse(invalid[i], &w) >= 0) {
                        pkg_wheel_name_free(w);
                        fail_msg("'%s' should be an invalid wheel name", invalid[i]);
                }
        }
}

static int sign(int x) {
        return (x > 0) - (x < 0);
}

static void test_wheel_build_compare(void **state) {
        /* PEP 427: (leading number, rest), no build tag first. */
        static const struct {
                const char *a, *b;
                int want;
        } rows[] = {
                { "2", "1", 1 },   { "1", "2", -1 },
                { "10", "9", 1 },  { "9", "10", -1 },
                { "1", "1", 0 },   { "01", "1", 0 },
                { "1a", "1", 1 },  { "1", "1a", -1 },
                { "1b", "1a", 1 }, { "2", "10abc", -1 },
                { "1", NULL, 1 },  { NULL, "0", -1 },
                { NULL, NULL, 0 }, { "123456789012345678901234567890", "99", 1 },
                { "0", "00", 0 },
        };
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                int got = sign(pkg_wheel_build_compare(rows[i].a, rows[i].b));
                if (got != rows[i].want)
                        fail_msg("build %s vs %s: %d, want %d", rows[i].a ?: "(none)", rows[i].b ?: "(none)", got,
                                 rows[i].want);
        }
}

static bool machine_is_x86_64_glibc(void) {
#ifdef __GLIBC__
        PkgTags *t = NULL;
        bool r;
        if (pkg_tags_for_interpreter("3.11", &t) < 0)
                return false;
        r = pkg_tags_wheel_priority(t, "x-1-cp311-cp311-linux_x86_64.whl") >= 0;
        pkg_tags_free(t);
        return r;
#else
        return false;
#endif
}

static void stream_into_buf(void *userdata, const void *data, size_t n) {
        assert_true(n > 0 && n <= 4096);
        assert_int_equal(buf_append(userdata, data, n), 0);
}

static void test_tags_priority(void **state) {
        PkgTags *t = NULL;
        _cleanup_free_ char *fp = NULL;
        int any, py3, abi3, exact, compressed;

        assert_int_equal(pkg_tags_for_interpreter("3.11", &t), 0);
        fp = pkg_tags_fingerprint(t);
        assert_true(startswith(fp, "cp311-cp311-"));
        assert_true(endswith(fp, "\npy30-none-any"));
        /* The direct fingerprint is the tag set's, byte for byte. */
        static const char *const versions[] = { "3.8", "3.11", "3.11.2", "3.12.1", "3.99" };
        for (size_t i = 0; i < ELEMENTSOF(versions); i++) {
                PkgTags *vt = NULL;
                _cleanup_free_ char *want = NULL, *got = NULL;
                assert_int_equal(pkg_tags_for_interpreter(versions[i], &vt), 0);
                want = pkg_tags_fingerprint(vt);
                pkg_tags_free(vt);
                assert_int_equal(pkg_tags_fingerprint_for_interpreter(versions[i], &got), 0);
                assert_string_equal(got, want);
                /* And the streamed text, in pieces of at most 4 KiB. */
                Buf streamed;
                buf_init(&streamed, SIZE_MAX / 2);
                assert_int_equal(pkg_tags_fingerprint_stream(versions[i], stream_into_buf, &streamed), 0);
                assert_string_equal(streamed.data, want);
                buf_free(&streamed);
        }
        static const char *const bad[] = { "2.7", "3.7", "3.100", "3.11x", "3", "" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *none = NULL;
                assert_int_equal(pkg_tags_fingerprint_for_interpreter(bad[i], &none), -EINVAL);
                assert_null(none);
                assert_int_equal(pkg_tags_fingerprint_stream(bad[i], stream_into_buf, NULL), -EINVAL);
        }

        any = pkg_tags_wheel_priority(t, "six-1.16.0-py2.py3-none-any.whl");
        py3 = pkg_tags_wheel_priority(t, "x-1.0-py3-none-any.whl");
        assert_true(any >= 0);
        assert_int_equal(any, py3); /* py2 is not supported, py3 is */
        assert_true(pkg_tags_wheel_priority(t, "x-1.0-cp311-none-any.whl") < py3);
        assert_true(pkg_tags_wheel_priority(t, "x-1.0-py311-none-any.whl") < py3);
        assert_true(pkg_tags_wheel_priority(t, "x-1.0-py310-none-any.whl") > py3);
        assert_int_equal(pkg_tags_wheel_priority(t, "x-1.0-py2-none-any.whl"), -1);
        assert_int_equal(pkg_tags_wheel_priority(t, "x-1.0-cp27-cp27mu-manylinux1_x86_64.whl"), -1);
        assert_int_equal(pkg_tags_wheel_priority(t, "x-1.0-cp311-cp311-win_amd64.whl"), -1);
        assert_int_equal(pkg_tags_wheel_priority(t, "x-1.0-cp311-cp311-macosx_11_0_arm64.whl"), -1);
        assert_int_equal(pkg_tags_wheel_priority(t, "x-1.0-cp312-cp312-any.whl"), -1);
        assert_int_equal(pkg_tags_wheel_priority(t, "not a wheel"), -1);
        assert_int_equal(pkg_tags_wheel_priority(t, "x-notaversion-py3-none-any.whl"), -1);
        /* bare tag triples are accepted too */
        assert_int_equal(pkg_tags_wheel_priority(t, "py3-none-any"), py3);
        assert_int_equal(pkg_tags_wheel_priority(t, "PY3-NONE-ANY"), py3);

        if (machine_is_x86_64_glibc()) {
                exact = pkg_tags_wheel_priority(t, "x-1-cp311-cp311-manylinux_2_17_x86_64.whl");
                abi3 = pkg_tags_wheel_priority(t, "x-1-cp37-abi3-manylinux_2_17_x86_64.whl");
                compressed = pkg_tags_wheel_priority(
                        t, "x-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl");
                assert_true(exact >= 0 && abi3 > exact && py3 > abi3);
                assert_int_equal(compressed, exact);
                assert_true(pkg_tags_wheel_priority(t, "x-1-cp311-cp311-manylinux2014_x86_64.whl") == exact + 1);
                assert_true(pkg_tags_wheel_priority(t, "x-1-cp311-cp311-manylinux1_x86_64.whl") > exact);
                assert_true(pkg_tags_wheel_priority(t, "x-1-cp311-cp311-linux_x86_64.whl") > exact);
                assert_true(pkg_tags_wheel_priority(t, "x-1-cp32-abi3-linux_x86_64.whl") >= 0);
                assert_int_equal(pkg_tags_wheel_priority(t, "x-1-cp311-cp311-manylinux_2_999_x86_64.whl"), -1);
                assert_int_equal(pkg_tags_wheel_priority(t, "x-1-cp311-cp311-manylinux_2_17_aarch64.whl"), -1);
                assert_int_equal(pkg_tags_wheel_priority(t, "x-1-cp311-cp311-musllinux_1_1_x86_64.whl"), -1);
        }
        pkg_tags_free(t);

        assert_int_equal(pkg_tags_for_interpreter("2.7", &t), -EINVAL);
        assert_int_equal(pkg_tags_for_interpreter("3", &t), -EINVAL);
        assert_int_equal(pkg_tags_for_interpreter("3.x", &t), -EINVAL);
        assert_int_equal(pkg_tags_for_interpreter("3.11.2", &t), 0);
        pkg_tags_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_valid),
                cmocka_unit_test(test_name_normalize),
                cmocka_unit_test(test_version_normalize),
                cmocka_unit_test(test_version_cap_holds_for_the_normal_form),
                cmocka_unit_test(test_version_invalid),
                cmocka_unit_test(test_version_ordering_chain),
                cmocka_unit_test(test_version_equal),
                cmocka_unit_test(test_version_prerelease),
                cmocka_unit_test(test_specifier_contains),
                cmocka_unit_test(test_specifier_invalid),
                cmocka_unit_test(test_specifier_to_string),
                cmocka_unit_test(test_specifier_allows_prereleases),
                cmocka_unit_test(test_marker_evaluate),
                cmocka_unit_test(test_marker_invalid),
                cmocka_unit_test(test_marker_env_default),
                cmocka_unit_test(test_requirement_valid),
                cmocka_unit_test(test_requirement_invalid),
                cmocka_unit_test(test_seed_valid),
                cmocka_unit_test(test_seed_invalid_key),
                cmocka_unit_test(test_seed_invalid_value),
                cmocka_unit_test(test_seed_marker),
                cmocka_unit_test(test_wheel_name),
                cmocka_unit_test(test_wheel_build_compare),
                cmocka_unit_test(test_tags_priority),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
