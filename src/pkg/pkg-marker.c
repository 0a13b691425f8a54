/* PEP 508 environment markers: parsing and evaluation.
 *
 *   marker   = and_expr ('or' and_expr)*
 *   and_expr = atom ('and' atom)*
 *   atom     = '(' marker ')' | value op value
 *   value    = VARIABLE | 'string' | "string"
 *   op       = '===' | '==' | '~=' | '!=' | '<=' | '>=' | '<' | '>' | 'in' | 'not' 'in'
 *
 * Evaluation compares as PEP 440 versions when the right-hand side makes a
 * valid specifier with the operator and the left-hand side is a version;
 * otherwise as strings (Python's operators). `extra` values are compared
 * after PEP 503 normalisation (PEP 685). */
#include <pthread.h>
#include <sys/utsname.h>

#include "basic.h"
#include "pkg-internal.h"

typedef enum MarkerKind { M_AND, M_OR, M_CMP } MarkerKind;

typedef enum MarkerOp {
        MOP_ARBITRARY, MOP_EQ, MOP_COMPATIBLE, MOP_NE, MOP_LE, MOP_GE, MOP_LT, MOP_GT, MOP_IN, MOP_NOT_IN,
} MarkerOp;

static const char *const mop_str[] = {
        [MOP_ARBITRARY] = "===", [MOP_EQ] = "==", [MOP_COMPATIBLE] = "~=", [MOP_NE] = "!=",
        [MOP_LE] = "<=",         [MOP_GE] = ">=", [MOP_LT] = "<",          [MOP_GT] = ">",
        [MOP_IN] = "in",         [MOP_NOT_IN] = "not in",
};

typedef enum MarkerVar {
        VAR_NONE = -1, /* a literal string */
        VAR_OS_NAME,
        VAR_SYS_PLATFORM,
        VAR_PLATFORM_MACHINE,
        VAR_PLATFORM_PYTHON_IMPLEMENTATION,
        VAR_PLATFORM_RELEASE,
        VAR_PLATFORM_SYSTEM,
        VAR_PLATFORM_VERSION,
        VAR_PYTHON_VERSION,
        VAR_PYTHON_FULL_VERSION,
        VAR_IMPLEMENTATION_NAME,
        VAR_IMPLEMENTATION_VERSION,
        VAR_EXTRA,
} MarkerVar;

static const struct {
        const char *name;
        MarkerVar var;
} var_names[] = {
        /* Longest first where one name is a prefix of another. */
        { "python_full_version", VAR_PYTHON_FULL_VERSION },
        { "python_version", VAR_PYTHON_VERSION },
        { "os_name", VAR_OS_NAME },
        { "os.name", VAR_OS_NAME },
        { "sys_platform", VAR_SYS_PLATFORM },
        { "sys.platform", VAR_SYS_PLATFORM },
        { "platform_release", VAR_PLATFORM_RELEASE },
        { "platform_system", VAR_PLATFORM_SYSTEM },
        { "platform_version", VAR_PLATFORM_VERSION },
        { "platform.version", VAR_PLATFORM_VERSION },
        { "platform_machine", VAR_PLATFORM_MACHINE },
        { "platform.machine", VAR_PLATFORM_MACHINE },
        { "platform_python_implementation", VAR_PLATFORM_PYTHON_IMPLEMENTATION },
        { "platform.python_implementation", VAR_PLATFORM_PYTHON_IMPLEMENTATION },
        { "python_implementation", VAR_PLATFORM_PYTHON_IMPLEMENTATION },
        { "implementation_name", VAR_IMPLEMENTATION_NAME },
        { "implementation_version", VAR_IMPLEMENTATION_VERSION },
        { "extra", VAR_EXTRA },
};

static const char *const var_canonical[] = {
        [VAR_OS_NAME] = "os_name",
        [VAR_SYS_PLATFORM] = "sys_platform",
        [VAR_PLATFORM_MACHINE] = "platform_machine",
        [VAR_PLATFORM_PYTHON_IMPLEMENTATION] = "platform_python_implementation",
        [VAR_PLATFORM_RELEASE] = "platform_release",
        [VAR_PLATFORM_SYSTEM] = "platform_system",
        [VAR_PLATFORM_VERSION] = "platform_version",
        [VAR_PYTHON_VERSION] = "python_version",
        [VAR_PYTHON_FULL_VERSION] = "python_full_version",
        [VAR_IMPLEMENTATION_NAME] = "implementation_name",
        [VAR_IMPLEMENTATION_VERSION] = "implementation_version",
        [VAR_EXTRA] = "extra",
};

struct PkgMarker {
        MarkerKind kind;
        PkgMarker *left, *right; /* M_AND / M_OR */
        MarkerVar lvar, rvar;    /* M_CMP */
        char *lstr, *rstr;       /* literals when the side is VAR_NONE */
        MarkerOp op;
};

PkgMarker *pkg_marker_free(PkgMarker *m) {
        if (!m)
                return NULL;
        pkg_marker_free(m->left);
        pkg_marker_free(m->right);
        free(m->lstr);
        free(m->rstr);
        free(m);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PkgMarker *, pkg_marker_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgSpecifierSet *, pkg_specifier_set_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(PkgVersion *, pkg_version_free);

typedef struct Parser {
        const char *s;
        size_t p;
        unsigned depth;
        char *error;
} Parser;

#define MARKER_MAX_DEPTH 64

static bool word_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static void skip_ws(Parser *ps) {
        while (ps->s[ps->p] == ' ' || ps->s[ps->p] == '\t')
                ps->p++;
}

/* Keyword at the cursor with word boundaries on both sides. */
static bool peek_word(Parser *ps, const char *w) {
        size_t n = strlen(w);
        return strneq(ps->s + ps->p, w, n) && !word_char(ps->s[ps->p + n]);
}

static int fail(Parser *ps, const char *what) {
        if (!ps->error)
                ps->error = xasprintf("invalid marker '%s': %s at position %zu", ps->s, what, ps->p + 1);
        return -EINVAL;
}

static int parse_or(Parser *ps, PkgMarker **ret);

static int parse_value(Parser *ps, MarkerVar *ret_var, char **ret_str) {
        char c = ps->s[ps->p];

        skip_ws(ps);
        c = ps->s[ps->p];
        if (c == '\'' || c == '"') {
                const char *end = strchr(ps->s + ps->p + 1, c);
                if (!end)
                        return fail(ps, "unterminated string");
                *ret_str = xstrndup(ps->s + ps->p + 1, (size_t) (end - (ps->s + ps->p + 1)));
                *ret_var = VAR_NONE;
                ps->p = (size_t) (end - ps->s) + 1;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(var_names); i++) {
                size_t n = strlen(var_names[i].name);
                /* A '.' is part of a dotted alias, so the boundary check
                 * also refuses a following '.'. */
                if (strneq(ps->s + ps->p, var_names[i].name, n) && !word_char(ps->s[ps->p + n]) &&
                    ps->s[ps->p + n] != '.') {
                        ps->p += n;
                        *ret_var = var_names[i].var;
                        *ret_str = NULL;
                        return 0;
                }
        }
        return fail(ps, "expected a marker variable or a quoted string");
}

static int parse_op(Parser *ps, MarkerOp *ret) {
        static const struct {
                const char *str;
                MarkerOp op;
        } ops[] = {
                { "===", MOP_ARBITRARY }, { "==", MOP_EQ }, { "~=", MOP_COMPATIBLE }, { "!=", MOP_NE },
                { "<=", MOP_LE },         { ">=", MOP_GE }, { "<", MOP_LT },          { ">", MOP_GT },
        };

        skip_ws(ps);
        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                size_t n = strlen(ops[i].str);
                if (strneq(ps->s + ps->p, ops[i].str, n)) {
                        ps->p += n;
                        *ret = ops[i].op;
                        return 0;
                }
        }
        if (peek_word(ps, "in")) {
                ps->p += 2;
                *ret = MOP_IN;
                return 0;
        }
        if (peek_word(ps, "not")) {
                ps->p += 3;
                if (ps->s[ps->p] != ' ' && ps->s[ps->p] != '\t')
                        return fail(ps, "expected whitespace after 'not'");
                skip_ws(ps);
                if (!peek_word(ps, "in"))
                        return fail(ps, "expected 'in' after 'not'");
                ps->p += 2;
                *ret = MOP_NOT_IN;
                return 0;
        }
        return fail(ps, "expected a comparison operator");
}

static int parse_atom(Parser *ps, PkgMarker **ret) {
        _cleanup_(pkg_marker_freep) PkgMarker *m = NULL;
        int r;

        skip_ws(ps);
        if (ps->s[ps->p] == '(') {
                if (++ps->depth > MARKER_MAX_DEPTH)
                        return fail(ps, "too deeply nested");
                ps->p++;
                r = parse_or(ps, &m);
                if (r < 0)
                        return r;
                skip_ws(ps);
                if (ps->s[ps->p] != ')')
                        return fail(ps, "expected ')'");
                ps->p++;
                ps->depth--;
                *ret = TAKE_PTR(m);
                return 0;
        }

        m = xcalloc(1, sizeof(*m));
        m->kind = M_CMP;
        r = parse_value(ps, &m->lvar, &m->lstr);
        if (r < 0)
                return r;
        r = parse_op(ps, &m->op);
        if (r < 0)
                return r;
        r = parse_value(ps, &m->rvar, &m->rstr);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

static int parse_binary(Parser *ps, const char *word, MarkerKind kind, int (*sub)(Parser *, PkgMarker **),
                        PkgMarker **ret) {
        _cleanup_(pkg_marker_freep) PkgMarker *left = NULL;
        int r;

        r = sub(ps, &left);
        if (r < 0)
                return r;
        for (;;) {
                _cleanup_(pkg_marker_freep) PkgMarker *right = NULL;
                PkgMarker *node;

                skip_ws(ps);
                if (!peek_word(ps, word))
                        break;
                ps->p += strlen(word);
                r = sub(ps, &right);
                if (r < 0)
                        return r;
                node = xcalloc(1, sizeof(*node));
                node->kind = kind;
                node->left = TAKE_PTR(left);
                node->right = TAKE_PTR(right);
                left = node;
        }
        *ret = TAKE_PTR(left);
        return 0;
}

static int parse_and(Parser *ps, PkgMarker **ret) {
        return parse_binary(ps, "and", M_AND, parse_atom, ret);
}

static int parse_or(Parser *ps, PkgMarker **ret) {
        return parse_binary(ps, "or", M_OR, parse_and, ret);
}

int pkg_marker_parse(const char *s, PkgMarker **ret_marker, char **ret_error) {
        _cleanup_(pkg_marker_freep) PkgMarker *m = NULL;
        Parser ps = { .s = s };
        int r;

        if (!s || strlen(s) > PKG_MARKER_MAX) {
                if (ret_error)
                        *ret_error = xasprintf("invalid marker: missing or longer than %d bytes", PKG_MARKER_MAX);
                return -EINVAL;
        }
        r = parse_or(&ps, &m);
        if (r >= 0) {
                skip_ws(&ps);
                if (ps.s[ps.p] != 0)
                        r = fail(&ps, "unexpected text");
        }
        if (r < 0) {
                if (ret_error)
                        *ret_error = TAKE_PTR(ps.error);
                free(ps.error);
                return r;
        }
        *ret_marker = TAKE_PTR(m);
        return 0;
}

static const char *env_value(const PkgMarkerEnv *env, MarkerVar var, const char *extra) {
        const char *v = NULL;

        switch (var) {
        case VAR_OS_NAME: v = env->os_name; break;
        case VAR_SYS_PLATFORM: v = env->sys_platform; break;
        case VAR_PLATFORM_MACHINE: v = env->platform_machine; break;
        case VAR_PLATFORM_PYTHON_IMPLEMENTATION: v = env->platform_python_implementation; break;
        case VAR_PLATFORM_RELEASE: v = env->platform_release; break;
        case VAR_PLATFORM_SYSTEM: v = env->platform_system; break;
        case VAR_PLATFORM_VERSION: v = env->platform_version; break;
        case VAR_PYTHON_VERSION: v = env->python_version; break;
        case VAR_PYTHON_FULL_VERSION: v = env->python_full_version; break;
        case VAR_IMPLEMENTATION_NAME: v = env->implementation_name; break;
        case VAR_IMPLEMENTATION_VERSION: v = env->implementation_version; break;
        case VAR_EXTRA: v = extra; break;
        case VAR_NONE:
        default: break;
        }
        return v ?: "";
}

static bool compare_strings(MarkerOp op, const char *l, const char *r) {
        int c = strcmp(l, r);

        switch (op) {
        case MOP_EQ: return c == 0;
        case MOP_NE: return c != 0;
        case MOP_LE: return c <= 0;
        case MOP_GE: return c >= 0;
        case MOP_LT: return c < 0;
        case MOP_GT: return c > 0;
        case MOP_IN: return strstr(r, l) != NULL;
        case MOP_NOT_IN: return strstr(r, l) == NULL;
        /* ~= has no meaning on strings; === is identity (case-insensitive
         * like the specifier form). */
        case MOP_ARBITRARY: return strcasecmp(l, r) == 0;
        case MOP_COMPATIBLE:
        default: return false;
        }
}

static bool evaluate_cmp(const PkgMarker *m, const PkgMarkerEnv *env, const char *extra) {
        const char *l = m->lvar == VAR_NONE ? m->lstr : env_value(env, m->lvar, extra);
        const char *r = m->rvar == VAR_NONE ? m->rstr : env_value(env, m->rvar, extra);
        _cleanup_free_ char *ln = NULL, *rn = NULL;

        if (m->lvar == VAR_EXTRA || m->rvar == VAR_EXTRA) {
                /* PEP 685: extras compare by their normalised names. */
                l = ln = pkg_name_normalize(l);
                r = rn = pkg_name_normalize(r);
        }

        if (m->op != MOP_IN && m->op != MOP_NOT_IN) {
                _cleanup_(pkg_specifier_set_freep) PkgSpecifierSet *set = NULL;
                _cleanup_(pkg_version_freep) PkgVersion *lv = NULL;
                _cleanup_free_ char *spec = xasprintf("%s%s", mop_str[m->op], r);

                /* A comma would turn the right side into a set of several
                 * specifiers, which a single value can never mean. */
                if (!strchr(r, ',') && pkg_specifier_set_parse(spec, &set, NULL) >= 0 &&
                    pkg_version_parse(l, &lv) >= 0)
                        return pkg_specifier_set_contains(set, lv, true);
        }
        return compare_strings(m->op, l, r);
}

bool pkg_marker_evaluate(const PkgMarker *m, const PkgMarkerEnv *env, const char *extra) {
        switch (m->kind) {
        case M_AND: return pkg_marker_evaluate(m->left, env, extra) && pkg_marker_evaluate(m->right, env, extra);
        case M_OR: return pkg_marker_evaluate(m->left, env, extra) || pkg_marker_evaluate(m->right, env, extra);
        case M_CMP: return evaluate_cmp(m, env, extra);
        default: return false;
        }
}

static void marker_format(const PkgMarker *m, Buf *b, bool parens) {
        if (m->kind == M_CMP) {
                if (m->lvar == VAR_NONE)
                        (void) buf_printf(b, "%c%s%c", strchr(m->lstr, '"') ? '\'' : '"', m->lstr,
                                          strchr(m->lstr, '"') ? '\'' : '"');
                else
                        (void) buf_appends(b, var_canonical[m->lvar]);
                (void) buf_printf(b, " %s ", mop_str[m->op]);
                if (m->rvar == VAR_NONE)
                        (void) buf_printf(b, "%c%s%c", strchr(m->rstr, '"') ? '\'' : '"', m->rstr,
                                          strchr(m->rstr, '"') ? '\'' : '"');
                else
                        (void) buf_appends(b, var_canonical[m->rvar]);
                return;
        }
        if (parens)
                (void) buf_appends(b, "(");
        /* An 'or' inside an 'and' needs parentheses; everything else keeps
         * its meaning without. */
        marker_format(m->left, b, m->kind == M_AND && m->left->kind == M_OR);
        (void) buf_appends(b, m->kind == M_AND ? " and " : " or ");
        marker_format(m->right, b,
                      m->right->kind != M_CMP && (m->kind == M_AND || m->right->kind == M_AND ||
                                                  m->right->kind == M_OR));
        if (parens)
                (void) buf_appends(b, ")");
}

/* Normalised text of a marker (variables by their PEP 508 names, strings
 * double-quoted). Caller frees. */
char *pkg_marker_to_string(const PkgMarker *m) {
        Buf b;

        buf_init(&b, SIZE_MAX);
        marker_format(m, &b, false);
        return buf_steal(&b);
}

static struct utsname uts;
static pthread_once_t uts_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static char **interned = NULL;

static void uts_init(void) {
        if (uname(&uts) < 0)
                memset(&uts, 0, sizeof(uts));
}

/* Strings derived from the caller's version must outlive the env struct,
 * which only holds borrowed pointers: keep one copy of each for the life
 * of the process (a handful of interpreter versions at most). */
static const char *intern(const char *s) {
        const char *found = NULL;

        pthread_mutex_lock(&intern_lock);
        for (size_t i = 0; interned && interned[i]; i++)
                if (streq(interned[i], s)) {
                        found = interned[i];
                        break;
                }
        if (!found) {
                interned = strv_append(interned, s);
                found = interned[strv_length(interned) - 1];
        }
        pthread_mutex_unlock(&intern_lock);
        return found;
}

void pkg_marker_env_default(PkgMarkerEnv *env, const char *python_full_version) {
        const char *full = python_full_version ?: "";
        const char *dot1, *dot2;
        _cleanup_free_ char *short_version = NULL;

        pthread_once(&uts_once, uts_init);

        /* python_version is "major.minor" of the full version. */
        dot1 = strchr(full, '.');
        dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        short_version = dot2 ? xstrndup(full, (size_t) (dot2 - full)) : xstrdup(full);

        *env = (PkgMarkerEnv) {
                .os_name = "posix",
                .sys_platform = "linux",
                .platform_machine = uts.machine,
                .platform_python_implementation = "CPython",
                .platform_release = uts.release,
                .platform_system = uts.sysname,
                .platform_version = uts.version,
                .python_version = intern(short_version),
                .python_full_version = intern(full),
                .implementation_name = "cpython",
                .implementation_version = intern(full),
        };
}
