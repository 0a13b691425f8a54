/* PEP 440 versions: parsing, normalisation and ordering.
 *
 * The grammar is the one of `packaging.version.VERSION_PATTERN` (the
 * reference implementation): case-insensitive, optional leading "v",
 * alternate pre-release spellings, optional separators, implicit numbers,
 * implicit post-releases ("1.0-1"), local labels. The parser below is a
 * greedy hand-written equivalent of that regular expression: every optional
 * separator the regex could leave unconsumed is followed by a component that
 * itself starts with an optional separator, so greedy choice never rejects a
 * string the regex accepts (the cross-check test verifies this). */
#include "basic.h"
#include "pkg-internal.h"

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool is_lower_alnum(char c) {
        return is_digit(c) || (c >= 'a' && c <= 'z');
}

static bool is_sep(char c) {
        return c == '-' || c == '_' || c == '.';
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int pkg_num_compare(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        int r;

        if (la != lb)
                return la < lb ? -1 : 1;
        r = strcmp(a, b);
        return r < 0 ? -1 : r > 0 ? 1 : 0;
}

/* Digit run at s[*p..]: returns a normalised copy (no leading zeros) and
 * advances *p, or NULL if there is no digit. */
static char *take_num(const char *s, size_t *p) {
        size_t i = *p, start;

        if (!is_digit(s[i]))
                return NULL;
        while (s[i] == '0' && is_digit(s[i + 1]))
                i++;
        start = i;
        while (is_digit(s[i]))
                i++;
        *p = i;
        return xstrndup(s + start, i - start);
}

static bool take_word(const char *s, size_t *p, const char *w) {
        size_t n = strlen(w);

        if (!strneq(s + *p, w, n))
                return false;
        *p += n;
        return true;
}

PkgVersion *pkg_version_free(PkgVersion *v) {
        if (!v)
                return NULL;
        free(v->epoch);
        for (size_t i = 0; i < v->n_release; i++)
                free(v->release[i]);
        free(v->release);
        free(v->pre_num);
        free(v->post);
        free(v->dev);
        strv_free(v->local);
        free(v);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgVersion *, pkg_version_free);

int pkg_version_parse_full(const char *input, bool allow_local, PkgVersion **ret) {
        _cleanup_(pkg_version_freep) PkgVersion *v = NULL;
        _cleanup_free_ char *s = NULL;
        size_t n, p = 0;

        if (!input)
                return -EINVAL;
        /* Leading/trailing whitespace is allowed by the reference grammar. */
        while (is_space(*input))
                input++;
        n = strlen(input);
        while (n > 0 && is_space(input[n - 1]))
                n--;
        if (n == 0 || n > PKG_VERSION_MAX)
                return -EINVAL;
        s = xstrndup(input, n);
        for (size_t i = 0; i < n; i++) {
                if (s[i] >= 'A' && s[i] <= 'Z')
                        s[i] = (char) (s[i] - 'A' + 'a');
                else if ((unsigned char) s[i] >= 0x80 || s[i] == 0)
                        return -EINVAL;
        }

        v = xcalloc(1, sizeof(*v));
        v->pre = PKG_PRE_NONE;

        if (s[p] == 'v')
                p++;

        /* Epoch: digits followed by '!'. */
        {
                size_t q = p;
                while (is_digit(s[q]))
                        q++;
                if (q > p && s[q] == '!') {
                        v->epoch = take_num(s, &p);
                        p++;
                } else
                        v->epoch = xstrdup("0");
        }

        /* Release: N(.N)* — a dot belongs to the release only if a digit
         * follows it; otherwise it is a separator of what comes next. */
        for (;;) {
                char *num = take_num(s, &p);
                if (!num)
                        return -EINVAL;
                v->release = xrealloc(v->release, (v->n_release + 1) * sizeof(char *));
                v->release[v->n_release++] = num;
                if (s[p] == '.' && is_digit(s[p + 1]))
                        p++;
                else
                        break;
        }

        /* Pre-release: [-_.]? (alpha|beta|preview|pre|rc|a|b|c) [-_.]? N? */
        {
                static const struct {
                        const char *word;
                        PkgPreKind kind;
                } pre_words[] = {
                        { "preview", PKG_PRE_RC }, { "alpha", PKG_PRE_A }, { "beta", PKG_PRE_B },
                        { "pre", PKG_PRE_RC },     { "rc", PKG_PRE_RC },   { "a", PKG_PRE_A },
                        { "b", PKG_PRE_B },        { "c", PKG_PRE_RC },
                };
                size_t q = p;
                if (is_sep(s[q]))
                        q++;
                for (size_t i = 0; i < ELEMENTSOF(pre_words); i++)
                        if (take_word(s, &q, pre_words[i].word)) {
                                v->pre = pre_words[i].kind;
                                break;
                        }
                if (v->pre != PKG_PRE_NONE) {
                        if (is_sep(s[q]))
                                q++;
                        v->pre_num = take_num(s, &q);
                        if (!v->pre_num)
                                v->pre_num = xstrdup("0");
                        p = q;
                }
        }

        /* Post-release: -N | [-_.]? (post|rev|r) [-_.]? N? */
        if (s[p] == '-' && is_digit(s[p + 1])) {
                p++;
                v->post = take_num(s, &p);
        } else {
                size_t q = p;
                if (is_sep(s[q]))
                        q++;
                if (take_word(s, &q, "post") || take_word(s, &q, "rev") || take_word(s, &q, "r")) {
                        if (is_sep(s[q]))
                                q++;
                        v->post = take_num(s, &q);
                        if (!v->post)
                                v->post = xstrdup("0");
                        p = q;
                }
        }

        /* Development release: [-_.]? dev [-_.]? N? */
        {
                size_t q = p;
                if (is_sep(s[q]))
                        q++;
                if (take_word(s, &q, "dev")) {
                        if (is_sep(s[q]))
                                q++;
                        v->dev = take_num(s, &q);
                        if (!v->dev)
                                v->dev = xstrdup("0");
                        p = q;
                }
        }

        /* Local version label: + [a-z0-9]+ ([-_.][a-z0-9]+)* */
        if (s[p] == '+') {
                if (!allow_local)
                        return -EINVAL;
                p++;
                for (;;) {
                        size_t start = p;
                        bool numeric = true;
                        while (is_lower_alnum(s[p])) {
                                if (!is_digit(s[p]))
                                        numeric = false;
                                p++;
                        }
                        if (p == start)
                                return -EINVAL;
                        if (numeric) {
                                size_t q = start;
                                _cleanup_free_ char *num = take_num(s, &q);
                                v->local = strv_append(v->local, num);
                        } else {
                                _cleanup_free_ char *seg = xstrndup(s + start, p - start);
                                v->local = strv_append(v->local, seg);
                        }
                        if (is_sep(s[p]) && is_lower_alnum(s[p + 1]))
                                p++;
                        else
                                break;
                }
        }

        if (s[p] != 0)
                return -EINVAL;
        /* The cap holds for the normal form too ("1-0" is "1.post0"): a
         * version we print must parse again (found by fuzz-requirement). */
        _cleanup_free_ char *normal = pkg_version_to_string(v);
        if (!normal || strlen(normal) > PKG_VERSION_MAX)
                return -EINVAL;

        *ret = TAKE_PTR(v);
        return 0;
}

int pkg_version_parse(const char *s, PkgVersion **ret_version) {
        return pkg_version_parse_full(s, true, ret_version);
}

static int release_compare(const PkgVersion *a, const PkgVersion *b) {
        size_t n = MAX(a->n_release, b->n_release);

        /* Comparing with zero padding is the same as the reference's
         * "strip trailing zeros, compare tuples". */
        for (size_t i = 0; i < n; i++) {
                const char *x = i < a->n_release ? a->release[i] : "0";
                const char *y = i < b->n_release ? b->release[i] : "0";
                int r = pkg_num_compare(x, y);
                if (r != 0)
                        return r;
        }
        return 0;
}

int pkg_version_compare_base(const PkgVersion *a, const PkgVersion *b) {
        int r = pkg_num_compare(a->epoch, b->epoch);
        if (r != 0)
                return r;
        return release_compare(a, b);
}

/* Rank of the pre-release slot: a dev-only release sorts before every
 * pre-release of the same release (1.0.dev0 < 1.0a0), a final after. */
static int pre_rank(const PkgVersion *v) {
        if (v->pre == PKG_PRE_NONE && !v->post && v->dev)
                return 0;
        if (v->pre != PKG_PRE_NONE)
                return 1;
        return 2;
}

static bool seg_numeric(const char *s) {
        return is_digit(s[0]);  /* numeric segments were stored as digits only */
}

static int local_compare(char **a, char **b) {
        size_t i;

        if (!a || !b)
                return (a ? 1 : 0) - (b ? 1 : 0);
        for (i = 0; a[i] && b[i]; i++) {
                bool na = seg_numeric(a[i]) && strspn(a[i], "0123456789") == strlen(a[i]);
                bool nb = seg_numeric(b[i]) && strspn(b[i], "0123456789") == strlen(b[i]);
                int r;
                if (na && nb)
                        r = pkg_num_compare(a[i], b[i]);
                else if (na != nb)
                        r = na ? 1 : -1;  /* numeric segments sort after alphanumeric */
                else {
                        r = strcmp(a[i], b[i]);
                        r = r < 0 ? -1 : r > 0 ? 1 : 0;
                }
                if (r != 0)
                        return r;
        }
        return (a[i] ? 1 : 0) - (b[i] ? 1 : 0);
}

static int compare_public(const PkgVersion *a, const PkgVersion *b) {
        int r, ra, rb;

        r = pkg_version_compare_base(a, b);
        if (r != 0)
                return r;

        ra = pre_rank(a);
        rb = pre_rank(b);
        if (ra != rb)
                return ra < rb ? -1 : 1;
        if (ra == 1) {
                if (a->pre != b->pre)
                        return a->pre < b->pre ? -1 : 1;
                r = pkg_num_compare(a->pre_num, b->pre_num);
                if (r != 0)
                        return r;
        }

        /* No post-release sorts before any post-release. */
        if (!a->post != !b->post)
                return a->post ? 1 : -1;
        if (a->post) {
                r = pkg_num_compare(a->post, b->post);
                if (r != 0)
                        return r;
        }

        /* No dev-release sorts after any dev-release. */
        if (!a->dev != !b->dev)
                return a->dev ? -1 : 1;
        if (a->dev) {
                r = pkg_num_compare(a->dev, b->dev);
                if (r != 0)
                        return r;
        }
        return 0;
}

int pkg_version_compare_public(const PkgVersion *a, const PkgVersion *b) {
        return compare_public(a, b);
}

int pkg_version_compare(const PkgVersion *a, const PkgVersion *b) {
        int r = compare_public(a, b);
        if (r != 0)
                return r;
        return local_compare(a->local, b->local);
}

bool pkg_version_is_prerelease(const PkgVersion *v) {
        return v->pre != PKG_PRE_NONE || v->dev;
}

bool pkg_version_is_postrelease(const PkgVersion *v) {
        return v->post;
}

bool pkg_version_has_local(const PkgVersion *v) {
        return v->local;
}

char *pkg_version_to_string(const PkgVersion *v) {
        static const char *const pre_names[] = { "a", "b", "rc" };
        Buf b;

        /* The cap is generous: a parsed version is at most PKG_VERSION_MAX
         * characters plus what normalisation adds ("post", "dev"). */
        buf_init(&b, 4 * PKG_VERSION_MAX);
        if (!streq(v->epoch, "0"))
                (void) buf_printf(&b, "%s!", v->epoch);
        for (size_t i = 0; i < v->n_release; i++)
                (void) buf_printf(&b, "%s%s", i > 0 ? "." : "", v->release[i]);
        if (v->pre != PKG_PRE_NONE)
                (void) buf_printf(&b, "%s%s", pre_names[v->pre], v->pre_num);
        if (v->post)
                (void) buf_printf(&b, ".post%s", v->post);
        if (v->dev)
                (void) buf_printf(&b, ".dev%s", v->dev);
        if (v->local)
                for (size_t i = 0; v->local[i]; i++)
                        (void) buf_printf(&b, "%c%s", i == 0 ? '+' : '.', v->local[i]);
        return buf_steal(&b);
}
