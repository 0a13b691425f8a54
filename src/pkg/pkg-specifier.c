/* PEP 440 version specifiers and specifier sets.
 *
 * Matching follows PEP 440 and, where the PEP leaves room, the reference
 * implementation (`packaging.specifiers`): local labels are ignored unless
 * the specifier has one, `<V` excludes pre-releases of V unless V is one,
 * `>V` excludes post-releases and local versions of V, and a set excludes
 * pre-releases unless asked or one of its specifiers names one. */
#include "basic.h"
#include "pkg-internal.h"

typedef enum SpecOp {
        OP_COMPATIBLE, /* ~= */
        OP_ARBITRARY,  /* === */
        OP_EQ,         /* == */
        OP_NE,         /* != */
        OP_LE,         /* <= */
        OP_GE,         /* >= */
        OP_LT,         /* < */
        OP_GT,         /* > */
} SpecOp;

static const char *const op_str[] = {
        [OP_COMPATIBLE] = "~=", [OP_ARBITRARY] = "===", [OP_EQ] = "==", [OP_NE] = "!=",
        [OP_LE] = "<=",         [OP_GE] = ">=",         [OP_LT] = "<",  [OP_GT] = ">",
};

typedef struct Spec {
        SpecOp op;
        bool wildcard;       /* ==V.* / !=V.* */
        char *text;          /* version as written (for ===, the arbitrary string) */
        PkgVersion *version; /* NULL for === whose text is not a version */
} Spec;

struct PkgSpecifierSet {
        Spec *specs;
        size_t n;
};

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void spec_done(Spec *s) {
        free(s->text);
        pkg_version_free(s->version);
}

PkgSpecifierSet *pkg_specifier_set_free(PkgSpecifierSet *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                spec_done(&s->specs[i]);
        free(s->specs);
        free(s);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgSpecifierSet *, pkg_specifier_set_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgVersion *, pkg_version_free);

/* Parses one specifier from s[0..n) (already stripped). */
static int spec_parse(const char *s, size_t n, Spec *ret) {
        static const struct {
                const char *str;
                SpecOp op;
        } ops[] = {
                /* Longest first: "===" before "==", "<=" before "<". */
                { "===", OP_ARBITRARY }, { "~=", OP_COMPATIBLE }, { "==", OP_EQ }, { "!=", OP_NE },
                { "<=", OP_LE },         { ">=", OP_GE },         { "<", OP_LT },  { ">", OP_GT },
        };
        _cleanup_(pkg_version_freep) PkgVersion *v = NULL;
        _cleanup_free_ char *text = NULL;
        SpecOp op = OP_EQ;
        bool found = false, wildcard = false;
        size_t p = 0;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                size_t l = strlen(ops[i].str);
                if (n >= l && strneq(s, ops[i].str, l)) {
                        op = ops[i].op;
                        p = l;
                        found = true;
                        break;
                }
        }
        if (!found)
                return -EINVAL;
        while (p < n && is_space(s[p]))
                p++;
        /* "===" with nothing after it is valid in the reference grammar
         * (and matches nothing); every other operator needs a version. */
        if (p == n && op != OP_ARBITRARY)
                return -EINVAL;
        text = xstrndup(s + p, n - p);
        for (const char *c = text; *c; c++)
                if (is_space(*c) || *c == ';' || *c == ')' || *c == ',' || *c == '(')
                        return -EINVAL;

        if (op == OP_ARBITRARY) {
                /* Anything goes; remember the version if it is one so that
                 * "===1.0a1" still counts as naming a pre-release. */
                (void) pkg_version_parse_full(text, true, &v);
        } else if ((op == OP_EQ || op == OP_NE) && endswith(text, ".*")) {
                /* Prefix match: only v? (E!)? N(.N)* may precede ".*". */
                _cleanup_free_ char *prefix = xstrndup(text, strlen(text) - 2);
                const char *c = prefix;
                if (*c == 'v' || *c == 'V')
                        c++;
                if (strspn(c, "0123456789!.") != strlen(c))
                        return -EINVAL;
                r = pkg_version_parse_full(prefix, false, &v);
                if (r < 0)
                        return r;
                if (v->pre != PKG_PRE_NONE || v->post || v->dev)
                        return -EINVAL;
                wildcard = true;
        } else {
                r = pkg_version_parse_full(text, op == OP_EQ || op == OP_NE, &v);
                if (r < 0)
                        return r;
                if (op == OP_COMPATIBLE && v->n_release < 2)
                        return -EINVAL;
        }

        *ret = (Spec) {
                .op = op,
                .wildcard = wildcard,
                .text = TAKE_PTR(text),
                .version = TAKE_PTR(v),
        };
        return 0;
}

int pkg_specifier_set_parse(const char *s, PkgSpecifierSet **ret_set, char **ret_error) {
        _cleanup_(pkg_specifier_set_freep) PkgSpecifierSet *set = NULL;
        const char *p;

        if (!s)
                s = "";
        if (strlen(s) > PKG_SPECIFIER_MAX) {
                if (ret_error)
                        *ret_error = xasprintf("version specifier too long (%zu bytes, at most %d)",
                                               strlen(s), PKG_SPECIFIER_MAX);
                return -EINVAL;
        }

        set = xcalloc(1, sizeof(*set));
        p = s;
        while (is_space(*p))
                p++;
        if (*p == 0) {
                *ret_set = TAKE_PTR(set);
                return 0;
        }

        for (;;) {
                const char *end = strchrnul(p, ',');
                const char *a = p, *b = end;
                Spec spec;
                int r;

                while (a < b && is_space(*a))
                        a++;
                while (b > a && is_space(b[-1]))
                        b--;
                r = a == b ? -EINVAL : spec_parse(a, (size_t) (b - a), &spec);
                if (r < 0) {
                        if (ret_error) {
                                if (a == b)
                                        *ret_error = xasprintf("invalid version specifier '%s': empty item", s);
                                else
                                        *ret_error = xasprintf("invalid version specifier '%.*s' in '%s'",
                                                               (int) (b - a), a, s);
                        }
                        return -EINVAL;
                }
                set->specs = xrealloc(set->specs, (set->n + 1) * sizeof(Spec));
                set->specs[set->n++] = spec;
                if (*end == 0)
                        break;
                p = end + 1;
        }

        *ret_set = TAKE_PTR(set);
        return 0;
}

/* ==E!R.* : same epoch, and v's release zero-padded to R's length starts
 * with R. Pre/post/dev/local parts of v do not matter. */
static bool prefix_match(const PkgVersion *v, const PkgVersion *prefix, size_t prefix_len) {
        if (pkg_num_compare(v->epoch, prefix->epoch) != 0)
                return false;
        for (size_t i = 0; i < prefix_len; i++) {
                const char *x = i < v->n_release ? v->release[i] : "0";
                if (pkg_num_compare(x, prefix->release[i]) != 0)
                        return false;
        }
        return true;
}

static bool spec_equal(const Spec *s, const PkgVersion *v) {
        if (s->wildcard)
                return prefix_match(v, s->version, s->version->n_release);
        /* A specifier without a local label ignores the candidate's. */
        if (!s->version->local)
                return pkg_version_compare_public(v, s->version) == 0;
        return pkg_version_compare(v, s->version) == 0;
}

static bool spec_contains(const Spec *s, const PkgVersion *v) {
        const PkgVersion *sv = s->version;

        switch (s->op) {
        case OP_ARBITRARY: {
                _cleanup_free_ char *str = pkg_version_to_string(v);
                return strcasecmp(str, s->text) == 0;
        }
        case OP_EQ:
                return spec_equal(s, v);
        case OP_NE:
                return !spec_equal(s, v);
        case OP_LE:
                return pkg_version_compare_public(v, sv) <= 0;
        case OP_GE:
                return pkg_version_compare_public(v, sv) >= 0;
        case OP_COMPATIBLE:
                /* ~=V.N is >=V.N, ==V.*: the prefix is the release minus its
                 * last component, whatever suffixes V.N carries. */
                return pkg_version_compare_public(v, sv) >= 0 && prefix_match(v, sv, sv->n_release - 1);
        case OP_LT:
                if (pkg_version_compare(v, sv) >= 0)
                        return false;
                /* <3.1 must not match 3.1.dev0 or 3.1a1, unless the
                 * specifier is itself a pre-release. */
                if (!pkg_version_is_prerelease(sv) && pkg_version_is_prerelease(v) &&
                    pkg_version_compare_base(v, sv) == 0)
                        return false;
                return true;
        case OP_GT:
                if (pkg_version_compare(v, sv) <= 0)
                        return false;
                /* >3.1 must not match 3.1.post1 (unless it names a post
                 * release) nor 3.1+local. */
                if (!pkg_version_is_postrelease(sv) && pkg_version_is_postrelease(v) &&
                    pkg_version_compare_base(v, sv) == 0)
                        return false;
                if (pkg_version_has_local(v) && pkg_version_compare_base(v, sv) == 0)
                        return false;
                return true;
        default:
                return false;
        }
}

static bool spec_names_prerelease(const Spec *s) {
        switch (s->op) {
        case OP_EQ:
        case OP_GE:
        case OP_LE:
        case OP_COMPATIBLE:
        case OP_ARBITRARY:
                return s->version && pkg_version_is_prerelease(s->version);
        case OP_NE:
        case OP_LT:
        case OP_GT:
        default:
                return false;
        }
}

bool pkg_specifier_set_allows_prereleases(const PkgSpecifierSet *s) {
        for (size_t i = 0; i < s->n; i++)
                if (spec_names_prerelease(&s->specs[i]))
                        return true;
        return false;
}

bool pkg_specifier_set_contains(const PkgSpecifierSet *s, const PkgVersion *v, bool prereleases) {
        if (pkg_version_is_prerelease(v) && !prereleases && !pkg_specifier_set_allows_prereleases(s))
                return false;
        for (size_t i = 0; i < s->n; i++)
                if (!spec_contains(&s->specs[i], v))
                        return false;
        return true;
}

static char *spec_to_string(const Spec *s) {
        _cleanup_free_ char *v = NULL;

        if (s->op == OP_ARBITRARY || !s->version)
                return xasprintf("%s%s", op_str[s->op], s->text);
        v = pkg_version_to_string(s->version);
        return xasprintf("%s%s%s", op_str[s->op], v, s->wildcard ? ".*" : "");
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

char *pkg_specifier_set_to_string(const PkgSpecifierSet *s) {
        _cleanup_strv_free_ char **items = NULL;
        size_t n = 0;
        Buf b;

        for (size_t i = 0; i < s->n; i++) {
                _cleanup_free_ char *str = spec_to_string(&s->specs[i]);
                if (!strv_contains(items, str)) {
                        items = strv_append(items, str);
                        n++;
                }
        }
        /* Sorted and de-duplicated: the text is a cache key, so ">=1,<2" and
         * "<2, >=1.0" must give the same string. */
        if (n > 1)
                qsort(items, n, sizeof(char *), cmp_str);
        buf_init(&b, SIZE_MAX);
        for (size_t i = 0; i < n; i++)
                (void) buf_printf(&b, "%s%s", i > 0 ? "," : "", items[i]);
        return buf_steal(&b);
}
