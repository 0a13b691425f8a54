/* The run/invoke argument grammar of DESIGN §1:
 *   FILE[::FUNC]  -a V (positional, repeatable)  --NAME V | -NAME V |
 *   --NAME=V (keyword)  -k NAME=V (always keyword)  --json-args '[…]'
 *   --json-kwargs '{…}'  plus the runner's own options.
 * Bare words after FILE are positional values too; in chain's grammar a
 * bare word naming a step (FILE.py, FILE::FUNC) starts the next step. */
#include <ctype.h>
#include <limits.h>
#include <jansson.h>
#include <strings.h>

#include "cli.h"
#include "pkg.h"
#include "shared.h"
#include "store.h"

#define MAX_ARGS 4096

typedef enum OptKind { OPT_FLAG, OPT_VALUE } OptKind;

typedef struct Ctx {
        RunArgs *a;
        json_t *args, *kwargs;
        char **error;
        /* The runner option being read, when its refusal (no value, a
         * value to a flag, `--env prod`) may have been meant for a
         * parameter of that name. */
        char hint_param[32];
} Ctx;

static _printf_(2, 0) int usage(Ctx *c, const char *fmt, const char *word) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        *c->error = xasprintf(fmt, word);
#pragma GCC diagnostic pop
        return -EINVAL;
}

/* data_name_valid()'s rule for the n bytes at s (this library does not
 * link src/data/). */
static bool dataset_name_ok(const char *s, size_t n) {
        bool ok = n > 0 && n <= 64 && isalnum((unsigned char) s[0]);
        for (size_t i = 0; ok && i < n; i++)
                ok = isalnum((unsigned char) s[i]) || strchr("._-", s[i]);
        return ok;
}

/* NAME or NAME@VERSION, VERSION 1..1000000000: data_parse_ref()'s rule. */
static bool dataset_ref_ok(const char *ref) {
        const char *at = strchr(ref, '@');
        if (!dataset_name_ok(ref, at ? (size_t) (at - ref) : strlen(ref)))
                return false;
        if (!at)
                return true;
        char *end;
        errno = 0;
        long v = strtol(at + 1, &end, 10);
        return !errno && end != at + 1 && !*end && v >= 1 && v <= 1000000000 && isdigit((unsigned char) at[1]);
}

int cli_sandbox_mode_parse(const char *val, SandboxMode *ret_mode, char **ret_error) {
        if (streq(val, "none"))
                *ret_mode = SANDBOX_MODE_NONE;
        else if (streq(val, "full") || streq(val, "default"))
                *ret_mode = SANDBOX_MODE_FULL;
        else {
                *ret_error = xasprintf("--sandbox is 'full' (the default) or 'none', got '%s'",
                                       utf8_is_valid(val) ? val : "?");
                return -EINVAL;
        }
        return 0;
}

char *cli_env_assignment_error(const char *word) {
        const char *sep = strchr(word, '=');
        _cleanup_free_ char *key = sep ? xstrndup(word, (size_t) (sep - word)) : NULL;
        if (!key || !secret_name_is_valid(key))
                return xasprintf("--env needs KEY=VALUE (KEY: [A-Za-z_][A-Za-z0-9_]{0,127}), got '%s'",
                                 utf8_is_valid(word) ? word : "?");
        /* Another value used to vanish from the run unsaid. */
        if (!utf8_is_valid(sep + 1))
                return xasprintf("--env %s: the value is not UTF-8", key);
        return NULL;
}

int cli_parse_duration_ms(const char *s, uint64_t *ret) {
        return parse_duration_ms(s, false, ret);
}

int cli_parse_size(const char *s, uint64_t *ret) {
        return parse_size(s, ret);
}

int cli_parse_bytes(const char *s, uint64_t *ret) {
        assert(s && ret);
        if (*s && s[strspn(s, "0123456789")] == 0) {
                char *end = NULL;
                errno = 0;
                unsigned long long v = strtoull(s, &end, 10);
                if (errno || v > (1ULL << 60))
                        return -ERANGE;
                *ret = v;
                return 0;
        }
        return parse_size(s, ret);
}

/* KEY=VALUE onto the run's --env: one given again replaces the first (the
 * last wins, as a daemon's JSON object keeps it), within the limits a
 * daemon sets (docs/api.md), which embedded runs keep too. 1 when added. */
static int env_add(Ctx *c, const char *kv) {
        RunArgs *a = c->a;
        size_t klen = (size_t) (strchr(kv, '=') - kv), total = strlen(kv) + 1;
        char **slot = NULL;
        for (char **e = a->env; e && *e; e++) {
                if (strneq(*e, kv, klen + 1))
                        slot = e;
                else
                        total += strlen(*e) + 1;
        }
        if (!slot && strv_length(a->env) >= RUN_ENV_MAX_ENTRIES)
                return usage(c, "at most 64 --env variables%s", "");
        if (total > RUN_ENV_MAX_BYTES)
                return usage(c, "the --env variables hold more than 64 KiB%s", "");
        if (slot) {
                free(*slot);
                *slot = xstrdup(kv);
        } else
                a->env = strv_append(a->env, kv);
        return 1;
}

static int add_kwarg(Ctx *c, const char *name, size_t n, json_t *value) {
        _cleanup_free_ char *key = xstrndup(name, n);
        /* --arg-name is accepted for arg_name, as most CLIs do. */
        for (char *p = key; *p; p++)
                if (*p == '-')
                        *p = '_';
        if (!identifier_is_valid(key)) {
                json_decref(value);
                return usage(c, "'%s' is not a valid parameter name", key);
        }
        if (!value) /* raw() of a value that is not UTF-8 */
                return usage(c, "argument '%s': the value is not UTF-8", key);
        json_t *prev = json_object_get(c->kwargs, key);
        json_t *prev_raw = json_object_get(prev, "raw"), *raw_value = json_object_get(value, "raw");
        if (prev_raw && raw_value) {
                /* --NAME V given again (or -k NAME=V): one more element,
                 * as argparse's action='append' and Typer's list[str]
                 * have it; the function's signature decides whether the
                 * parameter takes several (runner.py: a list or tuple
                 * does, any other is a validation error). */
                if (json_is_string(prev_raw)) {
                        json_t *list = json_pack("[O]", prev_raw);
                        json_object_set_new(prev, "raw", list);
                        prev_raw = list;
                }
                if (json_array_size(prev_raw) >= MAX_ARGS) {
                        json_decref(value);
                        return usage(c, "keyword argument '%s' given too many times", key);
                }
                json_array_append(prev_raw, raw_value);
                json_decref(value);
                return 0;
        }
        if (prev && json_is_true(json_object_get(prev, "bare")) && json_is_true(json_object_get(value, "bare"))) {
                /* `--flag --flag`: the flag said again, one. Moved to the
                 * end: the last of `--flag` and `--no-flag` wins, and
                 * runner.py _bind() reads which came last from the
                 * order (`--flag --no-flag --flag` is flag=True). */
                json_object_del(c->kwargs, key);
                json_object_set_new(c->kwargs, key, value);
                return 0;
        }
        if (prev) {
                json_decref(value);
                return usage(c, "keyword argument '%s' given twice", key);
        }
        if (json_object_size(c->kwargs) >= MAX_ARGS) {
                json_decref(value);
                return usage(c, "too many keyword arguments%s", "");
        }
        json_object_set_new(c->kwargs, key, value);
        return 0;
}

/* {"raw": v}; NULL when v is not UTF-8, which arguments travel in (JSON
 * text): add_positional() and add_kwarg() refuse it, where it used to
 * vanish and the run said the argument was missing. */
static json_t *raw(const char *v) {
        return json_pack("{s:s}", "raw", v);
}

static int add_positional(Ctx *c, json_t *item) {
        if (!item) {
                char nth[24];
                snprintf(nth, sizeof nth, "%zu", json_array_size(c->args) + 1);
                return usage(c, "positional argument %s: the value is not UTF-8", nth);
        }
        if (json_array_size(c->args) >= MAX_ARGS) {
                json_decref(item);
                return usage(c, "too many positional arguments%s", "");
        }
        /* The API carries raw values (raw_args) before typed ones (args):
         * an order it cannot say is refused here, for every backend, not
         * run embedded and refused by the server's. */
        size_t n = json_array_size(c->args);
        if (json_object_get(item, "raw") && n > 0 && json_object_get(json_array_get(c->args, n - 1), "value")) {
                json_decref(item);
                return usage(c, "give -a values before --json-args values%s", "");
        }
        json_array_append_new(c->args, item);
        return 0;
}

char *cli_json_error(const char *what, const char *text, const json_error_t *e) {
        assert(what && text && e);
        if (!text[strspn(text, " \t\r\n")])
                return xasprintf("%s is empty: give a JSON value", what);
        /* jansson counts columns in characters, from 1: where an editor
         * puts the cursor. */
        return xasprintf("%s is not JSON: line %d, column %d: %s", what, e->line, e->column, json_error_text(e));
}

static int parse_json_args(Ctx *c, const char *text, bool keyword) {
        json_error_t e;
        /* A value may hold "\u0000": Python's str does. */
        json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (!v) {
                *c->error = cli_json_error(keyword ? "--json-kwargs" : "--json-args", text, &e);
                return -EINVAL;
        }
        if (keyword ? !json_is_object(v) : !json_is_array(v)) {
                json_decref(v);
                return usage(c, keyword ? "--json-kwargs needs a JSON object, got: %s"
                                        : "--json-args needs a JSON array, got: %s", text);
        }
        if (keyword) {
                const char *k;
                json_t *item;
                json_object_foreach(v, k, item) {
                        int r = add_kwarg(c, k, strlen(k), json_pack("{s:O}", "value", item));
                        if (r < 0) {
                                json_decref(v);
                                return r;
                        }
                }
        } else {
                size_t i;
                json_t *item;
                json_array_foreach(v, i, item) {
                        int r = add_positional(c, json_pack("{s:O}", "value", item));
                        if (r < 0) {
                                json_decref(v);
                                return r;
                        }
                }
        }
        json_decref(v);
        return 0;
}

/* The runner's own options: a word that is one always means the option. */
static const struct {
const char *name;
OptKind kind;
} opts[] = {
        { "-a", OPT_VALUE },
        { "-k", OPT_VALUE },
        { "--json-args", OPT_VALUE },
        { "--json-kwargs", OPT_VALUE },
        { "--json", OPT_FLAG },
        { "--timeout", OPT_VALUE },
        { "--memory", OPT_VALUE },
        { "--max-procs", OPT_VALUE },
        { "--max-output", OPT_VALUE },
        { "--network", OPT_FLAG },
        { "--no-network", OPT_FLAG },
        { "--sandbox", OPT_VALUE },
        { "--index-url", OPT_VALUE },
        { "--find-links", OPT_VALUE },
        { "--server", OPT_VALUE },
        { "--quiet", OPT_FLAG },
        { "-q", OPT_FLAG },
        { "--help", OPT_FLAG },
        { "-h", OPT_FLAG },
        { "--data", OPT_VALUE },
        { "--allow-sdist", OPT_FLAG },
        { "--no-cache", OPT_FLAG },
        { "--output-file", OPT_VALUE },
        { "--token", OPT_VALUE },
        { "--detach", OPT_FLAG },
        { "--secret", OPT_VALUE },
        { "--env", OPT_VALUE },
        { "--output-data", OPT_VALUE },
        { "--idempotency-key", OPT_VALUE },
};

bool cli_param_is_shadowed(const char *param) {
        assert(param);
        _cleanup_free_ char *dashed = xasprintf("--%s", param);
        for (char *p = dashed + 2; *p; p++)
                if (*p == '_')
                        *p = '-';
        /* The global options cli_take_globals() takes anywhere on the
         * line that the table below does not hold. */
        static const char *const globals[] = { "--verbose", "--no-color", "--no-colour" };
        for (size_t k = 0; k < ELEMENTSOF(globals); k++)
                if (streq(dashed, globals[k]))
                        return true;
        for (size_t k = 0; k < ELEMENTSOF(opts); k++)
                if (startswith(opts[k].name, "--") && streq(dashed, opts[k].name))
                        return true;
        return false;
}

size_t cli_edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        if (la > 64 || lb > 64)
                return SIZE_MAX;
        size_t prev[65], cur[65];
        for (size_t j = 0; j <= lb; j++)
                prev[j] = j;
        for (size_t i = 1; i <= la; i++) {
                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
                        cur[j] = MIN(sub, MIN(prev[j] + 1, cur[j - 1] + 1));
                }
                memcpy(prev, cur, sizeof(size_t) * (lb + 1));
        }
        return prev[lb];
}

const char *cli_runner_option_near(const char *word) {
        const char *best = NULL;
        /* Only long options: "-x" is one edit from every short option.
         * Two edits for a word of 5 letters or more, one below: "--n"
         * is two from "--env", and was taken for it. */
        if (!startswith(word, "--"))
                return NULL;
        size_t best_d = strlen(word + 2) >= 5 ? 3 : 2;
        for (size_t k = 0; k < ELEMENTSOF(opts); k++) {
                if (!startswith(opts[k].name, "--"))
                        continue;
                size_t d = cli_edit_distance(word, opts[k].name);
                if (d < best_d) {
                        best_d = d;
                        best = opts[k].name;
                }
        }
        return best;
}

/* The runner's own options. Returns 1 if word was one (consuming *i),
 * 0 if not, <0 on a usage error. */
static int runner_option(Ctx *c, int argc, char **argv, int *i) {
        const char *w = argv[*i];
        RunArgs *a = c->a;
        const char *eq = strchr(w, '=');
        size_t n = eq ? (size_t) (eq - w) : strlen(w);
        size_t k;
        for (k = 0; k < ELEMENTSOF(opts); k++)
                if (strlen(opts[k].name) == n && strneq(w, opts[k].name, n))
                        break;
        if (k == ELEMENTSOF(opts))
                return 0;
        const char *name = opts[k].name;
        const char *val = NULL;
        /* Which options were given, as spelled here: a verb refuses the
         * ones it has no place for by name (cli_invoke_option_error()). */
        if (!streq(name, "-a") && !streq(name, "-k") && !startswith(name, "--json-"))
                a->options = strv_append(a->options, name);
        /* A --NAME option a function's parameter may share the name of
         * (`timeout`, `env`): always the option (docs/cli.md); remembered
         * so that the verb can say so when the function has one, and a
         * value refused here says how such a parameter is given. */
        bool shadows = startswith(name, "--") && !startswith(name, "--json-") && !streq(name, "--help") &&
                       !streq(name, "--token") && !streq(name, "--server"); /* their values are not echoed */
        _cleanup_free_ char *param = NULL;
        if (shadows) {
                param = xstrdup(name + 2);
                for (char *p = param; *p; p++)
                        if (*p == '-')
                                *p = '_';
                snprintf(c->hint_param, sizeof c->hint_param, "%s", param);
        }
        if (opts[k].kind == OPT_VALUE) {
                if (eq)
                        val = eq + 1;
                else if (*i + 1 < argc)
                        val = argv[++*i];
                else
                        return usage(c, "option %s needs a value", name);
        } else if (eq)
                return usage(c, "option %s takes no value", name);
        /* Past here a refused value is the option's: said in its own
         * words, but for --env's below. */
        c->hint_param[0] = 0;
        if (shadows) {
                _cleanup_free_ char *shown = eq || !val ? xstrdup(w) : xasprintf("%s %s", w, val);
                a->shadowing = strv_append(a->shadowing, param);
                a->shadowing = strv_append(a->shadowing, shown);
                a->shadowing = strv_append(a->shadowing, val ?: "true");
        }

        uint64_t u;
        if (streq(name, "-a"))
                return add_positional(c, raw(val)) ?: 1;
        if (streq(name, "-k")) {
                const char *e = strchr(val, '=');
                if (!e)
                        return usage(c, "-k needs NAME=VALUE, got '%s'", val);
                return add_kwarg(c, val, (size_t) (e - val), raw(e + 1)) ?: 1;
        }
        if (streq(name, "--json-args"))
                return parse_json_args(c, val, false) ?: 1;
        if (streq(name, "--json-kwargs"))
                return parse_json_args(c, val, true) ?: 1;
        if (streq(name, "--json"))
                a->json_output = true;
        else if (streq(name, "--timeout")) {
                if (cli_parse_duration_ms(val, &u) < 0)
                        return usage(c, "--timeout needs a duration such as 30, 2.5s, 500ms or 5m, got '%s'", val);
                a->limits.timeout_ms = u;
        } else if (streq(name, "--memory")) {
                if (cli_parse_size(val, &u) < 0 || u < RUN_MIN_MEMORY_BYTES)
                        return usage(c, "--memory needs a size of at least 16M such as 256M or 1G, got '%s'", val);
                a->limits.memory_bytes = u;
        } else if (streq(name, "--max-output")) {
                if (cli_parse_size(val, &u) < 0)
                        return usage(c, "--max-output needs a size such as 10M or 512K, got '%s'", val);
                a->limits.max_output_bytes = u;
        } else if (streq(name, "--max-procs")) {
                char *end;
                errno = 0;
                unsigned long long v = strtoull(val, &end, 10);
                if (errno || *end || v < 1 || v > RUN_MAX_PROCS || val[0] == '-')
                        return usage(c, "--max-procs needs a number from 1 to 100000, got '%s'", val);
                a->limits.max_procs = v;
        } else if (streq(name, "--network")) {
                a->limits.network = true;
                a->limits.network_off = false;
        } else if (streq(name, "--no-network")) {
                a->limits.network = false;
                a->limits.network_off = true;
        }
        else if (streq(name, "--sandbox")) {
                _cleanup_free_ char *why = NULL;
                if (cli_sandbox_mode_parse(val, &a->sandbox, &why) < 0)
                        return usage(c, "%s", why);
        } else if (streq(name, "--index-url")) {
                _cleanup_free_ char *why = NULL;
                if (pkg_index_url_check(val, &why) < 0)
                        return usage(c, "--index-url: %s", why);
                free(a->index_url);
                a->index_url = xstrdup(val);
        } else if (streq(name, "--find-links"))
                a->find_links = strv_append(a->find_links, val);
        else if (streq(name, "--data")) {
                /* data_parse_ref()'s rule, checked before any backend: a
                 * daemon said it in other words ("field 'data[0]' must
                 * be…"), and a name that is not UTF-8 left the request's
                 * JSON without a word, the run going on without its data. */
                if (!dataset_ref_ok(val))
                        return usage(c, "--data needs a dataset reference (NAME or NAME@VERSION), got '%s'", val);
                a->data = strv_append(a->data, val);
        } else if (streq(name, "--output-data")) {
                if (!dataset_name_ok(val, strlen(val)))
                        return usage(c, "--output-data needs a dataset name ([A-Za-z0-9][A-Za-z0-9._-]*), got '%s'", val);
                free(a->output_data);
                a->output_data = xstrdup(val);
        } else if (streq(name, "--secret")) {
                if (!secret_name_is_valid(val))
                        return usage(c, "--secret needs a secret's name ([A-Za-z_][A-Za-z0-9_]{0,127}), got '%s'", val);
                /* A name given twice is one; the limits are a daemon's
                 * (docs/api.md), said here so both paths say the same. */
                if (strv_contains(a->secrets, val))
                        return 1;
                if (strv_length(a->secrets) >= RUN_ENV_MAX_ENTRIES)
                        return usage(c, "at most 64 --secret names%s", "");
                a->secrets = strv_append(a->secrets, val);
        } else if (streq(name, "--env")) {
                char *e = cli_env_assignment_error(val);
                if (e) {
                        /* `--env prod`: no KEY=, a parameter's value. */
                        if (!strchr(val, '='))
                                snprintf(c->hint_param, sizeof c->hint_param, "env");
                        *c->error = e;
                        return -EINVAL;
                }
                return env_add(c, val);
        } else if (streq(name, "--server")) {
                free(a->server);
                a->server = xstrdup(val);
        } else if (streq(name, "--quiet") || streq(name, "-q"))
                a->quiet = true;
        else if (streq(name, "--help") || streq(name, "-h"))
                a->help = true;
        else if (streq(name, "--allow-sdist"))
                a->allow_sdist = true;
        else if (streq(name, "--no-cache"))
                a->no_cache = true;
        else if (streq(name, "--detach"))
                a->detach = true;
        else if (streq(name, "--idempotency-key")) {
                /* The daemon's rule, checked before any backend: a bad key
                 * reads the same embedded and against a server. The key is
                 * not echoed: it may hold what a terminal would act on. */
                if (!idempotency_key_is_valid(val))
                        return usage(c, "--idempotency-key takes " IDEMPOTENCY_KEY_RULE "%s", "");
                free(a->idempotency_key);
                a->idempotency_key = xstrdup(val);
        } else if (streq(name, "--output-file")) {
                free(a->output_file);
                a->output_file = xstrdup(val);
        }
        /* --token is a global option (cli_take_globals); seen here only
         * when it was the value-less last word. */
        return 1;
}

/* FILE[::FUNC]: a file, and a function name that is an identifier. */
static int check_target(Ctx *c, const char *w) {
        const char *sep = strstr(w, "::");
        if (sep && !identifier_is_valid(sep + 2))
                return usage(c, "'%s' is not a valid function name after '::'", sep + 2);
        if (!*w || sep == w)
                return usage(c, "no file given in '%s'", w);
        return 0;
}

static int set_target(Ctx *c, const char *w) {
        RunArgs *a = c->a;
        int r = check_target(c, w);
        if (r < 0)
                return r;
        a->target = xstrdup(w);
        const char *sep = strstr(w, "::");
        if (sep) {
                a->file = xstrndup(w, (size_t) (sep - w));
                a->function = xstrdup(sep + 2);
        } else
                a->file = xstrdup(w);
        return 0;
}

/* A word the run grammar reads as an option or a keyword (or `--`), not
 * as a value: "-" and negative numbers are values, "-.5" too (no
 * parameter's name starts with '.'), and so is "-::FUNC", stdin's source
 * with its function named (nor with ':'). So are "-inf", "-infinity" and
 * "-nan" in any case, which float() reads: `--x -inf` was the flag --x
 * and a keyword 'inf' (`--inf` still names such a parameter). */
static bool is_option_word(const char *w) {
        const char *num = w[1] == '.' ? w + 2 : w + 1;
        if (w[0] == '-' && (!strcasecmp(w + 1, "inf") || !strcasecmp(w + 1, "infinity") || !strcasecmp(w + 1, "nan")))
                return false;
        return w[0] == '-' && w[1] && !(*num >= '0' && *num <= '9') && !startswith(w, "-::");
}

/* A bare word that names a step of chain's grammar: FILE.py, FILE::FUNC. */
static bool is_step_word(const char *w) {
        assert(w);
        return strstr(w, "::") || (endswith(w, ".py") && !streq(w, ".py"));
}

/* run's grammar; with chain, the steps too (cli_parse_chain_args). */
static int parse_args(int argc, char **argv, bool chain, RunArgs *ret, char **ret_error) {
        RunArgs a = { .sandbox = SANDBOX_MODE_FULL };
        Ctx c = { .a = &a, .args = json_array(), .kwargs = json_object(), .error = ret_error };
        int r = 0;
        bool only_values = false;
        for (int i = 0; i < argc && r >= 0; i++) {
                const char *w = argv[i];
                /* Values become JSON strings (UTF-8 only): refuse here
                 * rather than lose the word later. */
                if (!utf8_is_valid(w)) {
                        r = usage(&c, "an argument is not valid UTF-8%s", "");
                        break;
                }
                if (!only_values && streq(w, "--")) {
                        only_values = true;
                        continue;
                }
                if (only_values || !is_option_word(w)) {
                        /* A bare word: the target first, positional values
                         * after (chain: a step's name is the next step). */
                        if (!a.target) {
                                r = set_target(&c, w);
                                if (chain)
                                        a.steps = strv_append(a.steps, w);
                        } else if (chain && !only_values && is_step_word(w)) {
                                r = check_target(&c, w);
                                if (r >= 0)
                                        a.steps = strv_append(a.steps, w);
                        } else
                                r = add_positional(&c, raw(w));
                        continue;
                }
                c.hint_param[0] = 0;
                r = runner_option(&c, argc, argv, &i);
                if (r < 0 && c.hint_param[0] && *ret_error) {
                        /* `--env prod` meant for a parameter `env`. */
                        char *e = xasprintf("%s (a parameter '%s' of the function is given as -k %s=VALUE)", *ret_error,
                                            c.hint_param, c.hint_param);
                        free(*ret_error);
                        *ret_error = e;
                }
                if (r != 0)
                        continue;
                /* --NAME V, -NAME V, --NAME=V: a keyword argument. */
                const char *name = w + (w[1] == '-' ? 2 : 1);
                const char *eq = strchr(name, '=');
                _cleanup_free_ char *flag = eq ? xstrndup(w, (size_t) (eq - w)) : xstrdup(w);
                const char *near = cli_runner_option_near(flag);
                /* --NAME with no value after it (the end, or an option
                 * next): a flag, true for a bool parameter (`--verbose`);
                 * the worker refuses it for any other annotation. */
                bool bare = !eq && (i + 1 >= argc || is_option_word(argv[i + 1]));
                /* chain: `--no-NAME` before a word naming a step is the
                 * flag (click's and Typer's --no-NAME takes no value),
                 * the word the next step: `chain a.py --no-x b.py`. A
                 * parameter no_NAME takes such a word as --no-NAME=WORD. */
                if (chain && !eq && !bare && (startswith(name, "no-") || startswith(name, "no_")) &&
                    is_step_word(argv[i + 1]))
                        bare = true;
                if (near && !eq && i + 1 >= argc) {
                        /* "--jsn" at the end: a typo, not a keyword without value. */
                        *ret_error = xasprintf("unknown option '%s' (did you mean %s?)", w, near);
                        r = -EINVAL;
                        break;
                }
                if (near) {
                        /* Maybe a parameter of the function; the verb asks
                         * the validation before it calls it a typo. */
                        _cleanup_free_ char *key = eq ? xstrndup(name, (size_t) (eq - name)) : xstrdup(name);
                        for (char *p = key; *p; p++)
                                if (*p == '-')
                                        *p = '_';
                        a.suspects = strv_append(a.suspects, key);
                }
                if (eq)
                        r = add_kwarg(&c, name, (size_t) (eq - name), raw(eq + 1));
                else if (bare)
                        r = add_kwarg(&c, name, strlen(name), json_pack("{s:b}", "bare", true));
                else
                        r = add_kwarg(&c, name, strlen(name), raw(argv[++i]));
        }
        if (r >= 0 && !a.target && !a.help)
                r = usage(&c, "no file given%s", "");
        if (r >= 0 && chain) {
                /* A chain's step is a pipeline task, whose arguments are
                 * one word or a typed value each: no list of words. */
                const char *key;
                json_t *v;
                json_object_foreach(c.kwargs, key, v) {
                        if (json_is_array(json_object_get(v, "raw"))) {
                                *ret_error = xasprintf("chain takes --%s once (a list as JSON: --%s '[1, 2]')", key,
                                                       key);
                                r = -EINVAL;
                                break;
                        }
                }
        }
        if (r < 0) {
                json_decref(c.args);
                json_decref(c.kwargs);
                run_args_done(&a);
                return r;
        }
        a.args_json = json_dumps(c.args, JSON_COMPACT);
        a.kwargs_json = json_dumps(c.kwargs, JSON_COMPACT);
        json_decref(c.args);
        json_decref(c.kwargs);
        if (!a.args_json || !a.kwargs_json) {
                /* Only a value jansson cannot write (checked above: none
                 * should be left). */
                *ret_error = xstrdup("the arguments cannot be written as JSON");
                run_args_done(&a);
                return -EINVAL;
        }
        *ret = a;
        return 0;
}

/* Past blanks (spaces, tabs) from p, up to end. */
static const char *skip_blanks(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        return p;
}

/* Past word at p (then blanks), or NULL if p does not hold it. */
static const char *skip_word(const char *p, const char *end, const char *word) {
        size_t n = strlen(word);
        if ((size_t) (end - p) < n || memcmp(p, word, n) != 0)
                return NULL;
        return skip_blanks(p + n, end);
}

/* Whether the line at p (up to end, its newline excluded) is
 * `@requirements(` or `@pysprinter.requirements(`, blanks allowed
 * between the tokens as Python allows them. */
static bool line_is_requirements_decorator(const char *p, const char *end) {
        p = skip_word(skip_blanks(p, end), end, "@");
        if (!p)
                return false;
        const char *q = skip_word(p, end, "pysprinter");
        if (q && (q = skip_word(q, end, ".")))
                p = q;
        p = skip_word(p, end, "requirements");
        return p && p < end && *p == '(';
}

bool cli_source_declares_requirements(const char *source, size_t len) {
        assert(source || len == 0);
        const char *end = source + len;
        for (const char *line = source; line < end;) {
                const char *nl = memchr(line, '\n', (size_t) (end - line));
                const char *eol = nl ?: end;
                if (line_is_requirements_decorator(line, eol))
                        return true;
                line = nl ? nl + 1 : end;
        }
        return false;
}

int cli_parse_run_args(int argc, char **argv, RunArgs *ret, char **ret_error) {
        return parse_args(argc, argv, false, ret, ret_error);
}

int cli_parse_chain_args(int argc, char **argv, RunArgs *ret, char **ret_error) {
        return parse_args(argc, argv, true, ret, ret_error);
}

/* The run options an invocation of a deployed function has no place for
 * (the invoke API's body takes arguments, limits, data and a version), and
 * why: a verb that got one and went on would drop it without a word. */
static const struct {
        const char *name;
        const char *why;
        bool scheduled_only; /* a fire has no terminal; an invoke does */
} not_invoked[] = {
        { "--sandbox", "a deployed function runs in the server's sandbox" },
        { "--index-url", "a deployed function's requirements were resolved when it was deployed" },
        { "--find-links", "a deployed function's requirements were resolved when it was deployed" },
        { "--allow-sdist", "a deployed function's requirements were resolved when it was deployed" },
        { "--no-cache", "a deployed function's requirements were resolved when it was deployed" },
        { "--secret", "an invocation uses the secrets and env its function was deployed with (deploy --secret/--env)" },
        { "--env", "an invocation uses the secrets and env its function was deployed with (deploy --secret/--env)" },
        { "--output-data", "an invocation stores no output dataset (`run --output-data` does)" },
        { "--output-file", "a fire prints nowhere (`pysprinter logs RUN` shows a fired run's output)", true },
        { "--detach", "every fire goes on without anyone waiting (`pysprinter schedule show NAME` lists its runs)",
          true },
        { "--idempotency-key", "one key would name the first fire's run for every fire after it", true },
};

char *cli_invoke_option_error(const RunArgs *a, const char *verb, bool scheduled) {
        assert(a && verb);
        for (char **o = a->options; o && *o; o++)
                for (size_t k = 0; k < ELEMENTSOF(not_invoked); k++)
                        if (streq(*o, not_invoked[k].name) && (scheduled || !not_invoked[k].scheduled_only))
                                return xasprintf("%s cannot go with %s: %s", *o, verb, not_invoked[k].why);
        return NULL;
}

int cli_parse_deployed_name(const char *word, char **ret_name, long *ret_version) {
        return cli_parse_deployed_ref(word, ret_name, ret_version, NULL);
}

int cli_parse_deployed_ref(const char *word, char **ret_name, long *ret_version, char **ret_alias) {
        assert(word && ret_name && ret_version);
        /* Lambda's ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:V])
         * and partial ARN (ACCOUNT:function:NAME[:V]) name NAME[:V] as
         * the daemon's Lambda route reads them: any region and account. */
        const char *arn = strstr(word, ":function:");
        if (arn)
                word = arn + strlen(":function:");
        const char *sep = strstr(word, "::");
        size_t skip = 2;
        if (!sep) {
                sep = strchr(word, ':');
                skip = 1;
        }
        long version = 0;
        _cleanup_free_ char *alias = NULL;
        if (sep && ret_alias && function_alias_name_is_valid(sep + skip))
                alias = xstrdup(sep + skip);
        else if (sep && !streq(sep + skip, "$LATEST")) {
                const char *v = sep + skip;
                /* strtol() would take " 1", "+1" and "01", which name no
                 * version on the daemon's routes. */
                if (!(v[0] >= '1' && v[0] <= '9') || v[strspn(v, "0123456789")])
                        return -EINVAL;
                errno = 0;
                version = strtol(v, NULL, 10);
                if (errno || version > INT_MAX)
                        return -EINVAL;
        }
        *ret_name = sep ? xstrndup(word, (size_t) (sep - word)) : xstrdup(word);
        *ret_version = version;
        if (ret_alias)
                *ret_alias = TAKE_PTR(alias);
        return 0;
}

char *cli_parse_function_name(const char *word, const char *what, char **ret_name) {
        assert(word && what && ret_name);
        _cleanup_free_ char *name = NULL;
        long version = 0;
        if (cli_parse_deployed_name(word, &name, &version) < 0)
                return xstrdup(CLI_VERSION_REFUSED);
        if (version > 0)
                return xasprintf("%s takes every version of '%s': name the function without a version", what, name);
        *ret_name = TAKE_PTR(name);
        return NULL;
}

bool cli_over_given(int argc, char **argv) {
        assert(argc == 0 || argv);
        for (int i = 0; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--over") || startswith(argv[i], "--over="))
                        return true;
        return false;
}

const char *cli_payload_word(int argc, char **argv) {
        assert(argc == 0 || argv);
        for (int i = 0; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--over"))
                        i++; /* its value: `--over -` is the inputs on stdin */
                else if (streq(argv[i], "--payload") || startswith(argv[i], "--payload=") ||
                         streq(argv[i], "--payload-file") || startswith(argv[i], "--payload-file=") ||
                         (i > 0 && streq(argv[i], "-")))
                        return argv[i];
        return NULL;
}

void run_args_done(RunArgs *a) {
        free(a->target);
        free(a->file);
        free(a->function);
        free(a->args_json);
        free(a->kwargs_json);
        free(a->index_url);
        strv_free(a->find_links);
        strv_free(a->data);
        free(a->output_data);
        free(a->idempotency_key);
        strv_free(a->secrets);
        strv_free(a->env);
        free(a->server);
        free(a->output_file);
        strv_free(a->suspects);
        strv_free(a->steps);
        strv_free(a->options);
        strv_free(a->shadowing);
        *a = (RunArgs) {};
}

int cli_parse_states(const char *word, const char *const *names, const char *names_text, char ***set,
                     char **ret_error) {
        assert(names && names_text && set && ret_error);
        _cleanup_free_ char *bad = NULL;
        if (!word) {
                *ret_error = xasprintf("--status needs a state (%s)", names_text);
                return -EINVAL;
        }
        if (strv_extend_choices(set, word, names, true, &bad) < 0) {
                *ret_error = xasprintf("unknown state '%s' (%s)", bad, names_text);
                return -EINVAL;
        }
        return 0;
}

/* A list verb's usage error: what, then where its usage is (as run's). */
static int list_usage_error(const char *verb, const char *msg) {
        fprintf(stderr, "pysprinter: %s: %s\nTry 'pysprinter %s --help'.\n", verb, msg, verb);
        return EXIT_USAGE;
}

int cli_parse_list_args(int argc, char **argv, const char *verb, long max, bool *ret_json, long *ret_limit) {
        *ret_json = false;
        *ret_limit = 20;
        for (int i = 0; i < argc; i++) {
                /* getopt_long's spellings, as map's -j and ps's --status
                 * take them: -n N, -nN, --limit N, --limit=N. */
                const char *w = argv[i], *value = NULL, *opt = NULL;
                if (streq(w, "-n") || streq(w, "--limit")) {
                        opt = w;
                        value = i + 1 < argc ? argv[++i] : NULL;
                } else if (startswith(w, "--limit=")) {
                        opt = "--limit";
                        value = w + strlen("--limit=");
                } else if (startswith(w, "-n") && w[2] != '-') {
                        opt = "-n";
                        value = w + 2;
                }
                if (streq(w, "--json"))
                        *ret_json = true;
                else if (opt) {
                        char *end = NULL;
                        errno = 0;
                        long v = value && *value ? strtol(value, &end, 10) : 0;
                        if (!value || !*value || *end || errno || v < 1 || v > max) {
                                _cleanup_free_ char *msg =
                                        value ? xasprintf("%s needs a number from 1 to %ld, got '%s'", opt, max, value)
                                              : xasprintf("%s needs a number from 1 to %ld", opt, max);
                                return list_usage_error(verb, msg);
                        }
                        *ret_limit = v;
                } else if (streq(w, "--help") || streq(w, "-h"))
                        return -1;
                else {
                        _cleanup_free_ char *msg = xasprintf("unexpected argument '%s'", w);
                        return list_usage_error(verb, msg);
                }
        }
        return 0;
}
