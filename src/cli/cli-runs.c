/* The run verbs, each written once against a Backend: run, validate,
 * invoke, ps, show, logs, deploy, functions, workers (and `server`). */
#include <ctype.h>
#include <sys/stat.h>

#include "cli-backend.h"
#include "shared.h"

static const char run_help[] =
        "Usage: pysprinter run FILE[::FUNC] [OPTIONS] [ARGUMENTS]\n"
        "\n"
        "Validate FILE, install its @requirements, run the function in a sandbox and\n"
        "print its result (JSON; a str prints as itself).\n"
        "\n"
        "Arguments:\n"
        "  -a VALUE              positional argument (repeatable, in order)\n"
        "  --NAME VALUE, -NAME VALUE, --NAME=VALUE\n"
        "                        keyword argument NAME (again: one more element of a\n"
        "                        list parameter, --xs 1 --xs 2)\n"
        "  -k NAME=VALUE         keyword argument, whatever NAME is (a, k, json, timeout…)\n"
        "  --json-args '[…]'     positional arguments as JSON values\n"
        "  --json-kwargs '{…}'   keyword arguments as JSON values\n"
        "  FILE --help           the function's own usage: signature and docstring\n"
        "  Values are converted by the parameter's annotation (int, float, bool, str,\n"
        "  list, dict, tuple, Optional[...]); unannotated parameters get strings.\n"
        "\n"
        "Options:\n"
        "  --json                print the result as compact JSON (always quoted); the\n"
        "                        function's own stdout goes to stderr\n"
        "  --output-file FILE    write the function's stdout and stderr to FILE\n"
        "  --detach              print the run's id and return; the run goes on (`logs -f\n"
        "                        ID` follows it, `cancel ID` stops it)\n"
        "  --idempotency-key KEY the same KEY again within 24 h starts nothing: the\n"
        "                        command shows KEY's first run (1..200 visible ASCII)\n"
        "  -q, --quiet           no progress, no notes: the result and errors only\n"
        "  --timeout DURATION    wall-clock limit (default 60s; 500ms, 2m…)\n"
        "  --memory SIZE         memory limit (default 512M)\n"
        "  --max-procs N         process and thread limit (default 64)\n"
        "  --max-output SIZE     stdout+stderr limit (default 10M)\n"
        "  --network             allow outbound network access\n"
        "  --no-network          no network even where the server's default grants it\n"
        "  --sandbox MODE        full (default) or none (trusted code only)\n"
        "  --data NAME[@V]       mount dataset NAME read-only at /data/NAME (repeatable)\n"
        "  --output-data NAME    store what the run wrote to output_dir() (/out) as the next\n"
        "                        version of dataset NAME when it succeeds (docs/data.md)\n"
        "  --secret NAME         the tenant's secret NAME as env var NAME (repeatable; docs/secrets.md)\n"
        "  --env KEY=VALUE       set an environment variable for the function (repeatable)\n"
        "  --index-url URL       package index (default PyPI; PIP_INDEX_URL honoured)\n"
        "  --find-links DIR      also look for wheels in DIR (repeatable)\n"
        "  --allow-sdist         allow building packages from source distributions\n"
        "  --no-cache            resolve again instead of using a cached lock\n"
        "  --server URL          run on a pysprinterd (also PYSPRINTER_SERVER)\n"
        "  --token TOKEN         the server's bearer token (also PYSPRINTER_TOKEN)\n"
        "\n"
        "Exit codes: 0 ok, 1 function raised, 2 usage, 3 validation, 4 dependencies,\n"
        "5 killed by a limit or cancelled, 6 server unreachable/auth, 7 internal,\n"
        "130 interrupted (Ctrl-C: the run is cancelled; its record says 5).\n";

static const char validate_help[] =
        "Usage: pysprinter validate FILE[::FUNC] [ARGUMENTS]\n"
        "\n"
        "Check FILE without running it: syntax, the target function, its\n"
        "@requirements (resolved: an unresolvable one is exit 4), and the arguments\n"
        "against its signature. Takes the same arguments as `run`. Exit 0 when\n"
        "valid, 3 when not, 4 when a requirement cannot be resolved.\n";

static const char lock_help[] =
        "Usage: pysprinter lock FILE[::FUNC] [--json] [--no-cache] [--index-url URL] [--find-links DIR]…\n"
        "\n"
        "Resolve FILE's @requirements and print the lock: every package with its\n"
        "version, wheel and sha256 (--json: also its URL, an index's credentials\n"
        "hidden). Installs nothing, and downloads no wheel when the index serves\n"
        "PEP 658 metadata. The lock is cached: the same requirements against the\n"
        "same index answer from the cache. With a server, it is resolved there,\n"
        "against the server's index.\n"
        "\n"
        "  --json      print the lock as JSON (for machines)\n"
        "  --no-cache  resolve against the index again, not from the cached lock\n";

static const char invoke_help[] =
        "Usage: pysprinter invoke NAME[::VERSION] [--payload JSON | --payload-file FILE | -]\n"
        "       pysprinter invoke NAME[::VERSION] [-a V]… [--NAME V]… [--json]\n"
        "       pysprinter invoke NAME[::VERSION] --over INPUTS.jsonl [-j N] [options]\n"
        "\n"
        "Invoke a deployed function on the server. --payload sends a Lambda-style\n"
        "event (handler(event, context)); --payload-file reads it from FILE, and '-'\n"
        "from stdin. Otherwise arguments are as for `pysprinter run`. --detach prints\n"
        "the run's id and returns (`pysprinter logs -f ID` follows it).\n"
        "--idempotency-key KEY: the same KEY again within 24 h starts nothing and\n"
        "shows KEY's first run, as `run --idempotency-key` does.\n"
        "VERSION is a version number or $LATEST; NAME:VERSION (Lambda's spelling)\n"
        "works too.\n"
        "\n"
        "--over INPUTS.jsonl maps the function over INPUTS (- for stdin) as\n"
        "`pysprinter map FILE --over` does: one call per line, N at a time (-j,\n"
        "--concurrency; default 4), a JSON array as the positional arguments, an\n"
        "object as the keyword arguments, any other value as the one argument\n"
        "(a Lambda handler's event: [EVENT] for an object). One JSON line per\n"
        "input, in input order, as map prints them; exit status the first failed\n"
        "call's. Limits and --data apply to every call; not with --payload.\n"
        "\n"
        "NAME[::VERSION] --help prints the deployed function's usage: its signature\n"
        "and docstring, as `pysprinter run FILE --help` prints a file's.\n";

/* Prints a usage error and the hint to --help; returns EXIT_USAGE. */
static int usage_error(const char *verb, const char *msg) {
        cli_error("%s", msg);
        fprintf(stderr, "Try 'pysprinter %s --help'.\n", verb);
        return EXIT_USAGE;
}

static bool is_help_word(const char *w) {
        return streq(w, "--help") || streq(w, "-h");
}

/* The first word names a FILE (or stdin's source: `-`, `-::FUNC`), so a
 * --help after it asks for the function's usage. */
static bool is_file_word(const char *w) {
        return w[0] != '-' || streq(w, "-") || startswith(w, "-::");
}

bool cli_help_asked(int argc, char **argv) {
        for (int i = 0; i < argc && !streq(argv[i], "--"); i++)
                if (is_help_word(argv[i]))
                        return true;
        return false;
}

/* argv without its help words (those before "--"). Caller frees the array
 * (not the words, argv's). */
static char **without_help(int argc, char **argv, int *ret_argc) {
        char **out = xcalloc((size_t) argc + 1, sizeof(char *));
        int n = 0;
        bool values = false;
        for (int i = 0; i < argc; i++) {
                values |= streq(argv[i], "--");
                if (values || !is_help_word(argv[i]))
                        out[n++] = argv[i];
        }
        *ret_argc = n;
        return out;
}

/* A keyword argument spelled like a runner option ("--timout 5") that the
 * function has no parameter for is a typo: say which option was meant, and
 * return exit 2 (0 when run's refusal is not of a suspect). Only when the
 * validation refuses that very name (runner.py's "unexpected keyword
 * argument 'NAME'"): any other message quoting it ("argument 'timout': …",
 * a positional value 'n') is the run's own error, exit 3. */
int cli_suspect_refused(char *const *suspects, const json_t *run) {
        const char *msg = json_string_value(json_object_get(json_object_get(run, "error"), "message"));
        for (char *const *s = suspects; msg && s && *s; s++) {
                _cleanup_free_ char *quoted = xasprintf("unexpected keyword argument '%s'", *s);
                const char *at = strstr(msg, quoted);
                if (at) {
                        _cleanup_free_ char *dashed = xasprintf("--%s", *s);
                        for (char *p = dashed + 2; *p; p++)
                                if (*p == '_')
                                        *p = '-';
                        /* The validation's list of the parameters follows
                         * (" (parameters: a, b)"): the name may be one of
                         * them mistyped rather than the option. */
                        cli_error("unknown option '%s' (did you mean %s?); the function has no parameter '%s'%s",
                                  dashed, cli_runner_option_near(dashed) ?: "?", *s, at + strlen(quoted));
                        return EXIT_USAGE;
                }
        }
        return 0;
}

/* The answer of a validation of q before q runs (describe: the
 * function's description, nothing resolved; a deployed function's object),
 * printing nothing; NULL when it failed: the real run says why. */
static json_t *validation_before(Backend *b, const RunRequest *q, bool describe) {
        RunRequest v = *q;
        v.validate_only = true;
        v.describe_only = describe;
        v.payload = NULL;
        v.detach = false;
        Renderer quiet;
        renderer_init(&quiet, false);
        /* The parser's warnings are the run's to print, once. */
        quiet.no_output = true;
        json_t *ans = NULL;
        int r = b->ops->run(b, &v, &quiet, &ans);
        renderer_done(&quiet);
        if (r < 0) {
                json_decref(ans);
                return NULL;
        }
        return ans;
}

/* cli_suspect_refused() before a file's run, by a validation of its arguments.
 * A deployed function's (invoke) is validated by the invoke itself, which
 * runs nothing when the arguments are refused: run_and_render() asks then. */
static int check_suspects(Backend *b, RunRequest *q) {
        if (!q->a->suspects || q->lock_only || q->describe_only || q->deployed) /* these check no arguments */
                return 0;
        json_t *run = validation_before(b, q, false);
        int code = run ? cli_suspect_refused(q->a->suspects, run) : 0;
        json_decref(run);
        return code;
}

/* s as a shell word: as it is when the shell leaves it so, else in single
 * quotes (a ' as '\''). Caller frees. */
static char *shell_quote(const char *s) {
        if (*s && !s[strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-")])
                return xstrdup(s);
        Buf b;
        buf_init(&b, SIZE_MAX);
        buf_appends(&b, "'");
        for (const char *p = s; *p; p++)
                buf_appends(&b, *p == '\'' ? "'\\''" : (char[]){ *p, 0 });
        buf_appends(&b, "'");
        char *out = xstrdup(b.data);
        buf_free(&b);
        return out;
}

/* Whether source may declare a parameter name: the word (an identifier's
 * bytes, a non-ASCII letter's among them, on neither side) followed, past
 * blanks, by what follows a parameter's name (':', '=', ',', ')', the
 * line's end) — not `import json` nor `json.dumps`. A cheap "no" before a
 * validation is asked for the function's parameters. */
static bool source_has_param_word(const char *source, size_t len, const char *name) {
        size_t n = strlen(name);
        for (const char *p = source, *end = source + len; p && (size_t) (end - p) >= n;) {
                p = memmem(p, (size_t) (end - p), name, n);
                if (!p)
                        break;
#define WORD_BYTE(c) (isalnum((unsigned char) (c)) || (c) == '_' || (unsigned char) (c) >= 0x80)
                const char *q = p + n;
                while (q < end && (*q == ' ' || *q == '\t'))
                        q++;
                if ((p == source || !WORD_BYTE(p[-1])) && (q == end || strchr(":=,)\r\n", *q)))
                        return true;
#undef WORD_BYTE
                p++;
        }
        return false;
}

/* The runner options the verb may not ask a deployed function's object
 * for: an invoke's everyday ones, which would cost each call a request. */
static bool everyday_invoke_option(const char *param) {
        static const char *const everyday[] = { "server", "token",       "json",           "quiet",
                                                "detach", "output_file", "idempotency_key" };
        for (size_t k = 0; k < ELEMENTSOF(everyday); k++)
                if (streq(param, everyday[k]))
                        return true;
        return false;
}

/* `--timeout 7` where the function has a parameter `timeout`: the option
 * was taken (docs/cli.md), the parameter keeps its default, and a user who
 * meant it sees nothing wrong but the result. The function's parameters
 * come from a description (nothing resolved, nothing of the file runs),
 * asked only when the source has the word at all; the same line embedded
 * and against a server, as both answer the same description. */
void cli_warn_shadowed(Backend *b, const RunRequest *q) {
        assert(b && q && q->a);
        const RunArgs *a = q->a;
        if (a->quiet || cli_globals.quiet || q->lock_only || q->describe_only)
                return;
        /* The run's options, then the global ones after FILE (--verbose):
         * an invoke's are everyday ones all. */
        _cleanup_strv_free_ char **given = NULL;
        for (char **t = a->shadowing; t && *t; t++)
                given = strv_append(given, *t);
        for (char **t = q->deployed ? NULL : cli_globals.shadowing; t && *t; t++)
                given = strv_append(given, *t);
        bool ask = false;
        for (char **t = given; t && t[0] && t[1] && t[2]; t += 3)
                ask = ask || (q->deployed ? !everyday_invoke_option(t[0])
                                          : q->source && source_has_param_word(q->source, q->source_len, t[0]));
        if (!ask)
                return;
        json_t *ans = validation_before(b, q, true);
        if (!ans)
                return;
        json_t *params = json_object_get(ans, "parameters");
        const char *fn = json_get_string(ans, "function") ?: q->deployed ?: "?";
        for (char **t = given; t[0] && t[1] && t[2]; t += 3) {
                bool has = false;
                size_t i;
                json_t *p;
                json_array_foreach(params, i, p)
                        has = has || (json_is_string(p) && streq(json_string_value(p), t[0]));
                /* Once per parameter (--find-links twice is one line). */
                for (char **u = given; has && u < t; u += 3)
                        has = !streq(u[0], t[0]);
                if (!has)
                        continue;
                _cleanup_free_ char *k = xasprintf("%s=%s", t[0], t[2]);
                _cleanup_free_ char *quoted = shell_quote(k);
                cli_warning("%s was taken as the runner's option, not as %s()'s parameter '%s': give that as -k %s",
                            t[1], fn, t[0], quoted);
        }
        json_decref(ans);
}

int cli_check_source(const char *file, const char *source, size_t len) {
        _cleanup_free_ char *msg = engine_source_error(path_base_name(file), source, len);
        if (!msg)
                return 0;
        json_t *run = json_pack("{s:s, s:i, s:{s:s, s:s}}", "status", "invalid", "exit_code", EXIT_VALIDATION, "error",
                                "type", "ValidationError", "message", msg);
        if (!run) {
                cli_error("%s", msg); /* a file name that is not UTF-8 either */
                return EXIT_VALIDATION;
        }
        Renderer rd;
        renderer_init(&rd, false);
        int code = renderer_run_outcome(&rd, run);
        renderer_done(&rd);
        json_decref(run);
        return code;
}

/* The lock `pysprinter lock` prints: its JSON as the engine wrote it, or
 * one line of requirements and two lines per package. */
static void print_lock(const char *target, json_t *lock, bool json) {
        json_t *pk = json_object_get(lock, "packages");
        /* What pip says as it installs ("Ignoring pywin32: markers
         * 'sys_platform == "win32"' don't match your environment"): a
         * requirement that is in the file and not in the lock is what
         * a user reads the lock to find out about. On stderr, as pip's
         * log, so the lock on stdout stays the lock; uv says nothing,
         * and neither does `run`. */
        size_t i;
        json_t *v;
        if (!cli_globals.quiet)
                json_array_foreach(json_object_get(lock, "ignored"), i, v)
                        fprintf(stderr, "pysprinter: ignoring %s: markers '%s' don't match this interpreter\n",
                                json_get_string(v, "name") ?: "?", json_get_string(v, "marker") ?: "");
        if (json) {
                _cleanup_free_ char *text = json_dumps(lock, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
                puts(text ?: "null");
                return;
        }
        if (json_array_size(pk) == 0) {
                printf("%s: no requirements\n", target);
                return;
        }
        printf("# %s: ", target);
        json_array_foreach(json_object_get(lock, "requirements"), i, v)
                printf("%s%s", i ? ", " : "", json_string_value(v) ?: "");
        printf("\n");
        json_array_foreach(pk, i, v)
                printf("%-24s %-14s %s\n    sha256:%s\n", json_get_string(v, "name") ?: "",
                       json_get_string(v, "version") ?: "", json_get_string(v, "filename") ?: "",
                       json_get_string(v, "sha256") ?: "");
}

/* The signature ans shows (a validation's answer, a function object), or
 * what it has of one: a version deployed before signatures were kept has
 * its parameters' names ("f(a, b, *args)"), an older one its name. Caller
 * frees. */
static char *shown_signature(json_t *ans) {
        const char *sig = json_get_string(ans, "signature"), *fn = json_get_string(ans, "function") ?: "?";
        json_t *params = json_object_get(ans, "parameters");
        if (sig || !json_is_array(params))
                return xstrdup(sig ?: fn);
        Buf b;
        buf_init(&b, 64 * 1024);
        buf_printf(&b, "%s(", fn);
        size_t i;
        json_t *p;
        json_array_foreach(params, i, p)
                buf_printf(&b, "%s%s", i ? ", " : "", json_string_value(p) ?: "?");
        buf_printf(&b, ")");
        char *s = xstrdup(b.data);
        buf_free(&b);
        return s;
}

/* The parameters whose --NAME is the runner's option (`verbose`,
 * `timeout`): `--timeout 9` sets the run's limit and the parameter keeps
 * its default, silently; only -k reaches it (docs/cli.md). */
static void print_shadowed_params(json_t *params) {
        size_t i, n = 0, k = 0;
        json_t *p;
        json_array_foreach(params, i, p)
                if (json_is_string(p) && cli_param_is_shadowed(json_string_value(p)))
                        n++;
        if (n == 0)
                return;
        json_array_foreach(params, i, p) {
                const char *name = json_string_value(p);
                if (!name || !cli_param_is_shadowed(name))
                        continue;
                printf("%s--", k == 0 ? "" : k + 1 == n ? " and " : ", ");
                for (const char *c = name; *c; c++)
                        putchar(*c == '_' ? '-' : *c);
                k++;
        }
        printf(n == 1 ? " is the runner's option here: give this parameter as\n"
                      : " are the runner's options here: give these parameters as\n");
        k = 0;
        json_array_foreach(params, i, p) {
                const char *name = json_string_value(p);
                if (name && cli_param_is_shadowed(name))
                        printf("%s-k %s=VALUE", k++ ? ", " : "", name);
        }
        putchar('\n');
}

/* `run FILE --help`, `invoke NAME --help`: the function's own usage, from
 * its validation's answer or its deployed version's object (signature and
 * docstring; nothing of the file runs), then where the verb's options
 * are. */
static void print_function_help(const char *verb, const char *target, json_t *ans, bool json) {
        if (json) {
                render_json(ans);
                return;
        }
        printf("Usage: pysprinter %s %s [OPTIONS] [ARGUMENTS]\n\n", verb, target);
        _cleanup_free_ char *sig = shown_signature(ans);
        printf("  %s\n", sig);
        const char *doc = json_get_string(ans, "doc");
        if (doc && *doc) {
                /* Indented as a block under the signature, each line. */
                putchar('\n');
                for (const char *p = doc; *p;) {
                        size_t n = strcspn(p, "\n");
                        printf(n ? "    %.*s\n" : "\n", (int) n, p);
                        p += n + (p[n] == '\n');
                }
        }
        printf("\nArguments: -a VALUE (positional, in order), --NAME VALUE (keyword); a bool\n"
               "parameter is a flag (--NAME alone; --no-NAME: False). Values are converted by\n"
               "the annotation.\n");
        print_shadowed_params(json_object_get(ans, "parameters"));
        printf("Options (limits, --data, %s, --server…): pysprinter %s --help\n",
               streq(verb, "invoke") ? "--payload" : "--secret", verb);
}

/* The top-level module a failed run could not import ("No module named
 * 'helper.sub'": "helper"), or NULL. Caller frees. */
static char *missing_module(json_t *run) {
        json_t *err = json_object_get(run, "error");
        const char *type = json_get_string(err, "type"), *msg = json_get_string(err, "message");
        static const char prefix[] = "No module named '";
        if (!type || !streq(type, "ModuleNotFoundError") || !msg)
                return NULL;
        /* The message is "ModuleNotFoundError: No module named 'x'". */
        if (startswith(msg, type) && startswith(msg + strlen(type), ": "))
                msg += strlen(type) + 2;
        if (!startswith(msg, prefix))
                return NULL;
        const char *name = msg + strlen(prefix);
        _cleanup_free_ char *top = xstrndup(name, strcspn(name, ".'"));
        return identifier_is_valid(top) ? TAKE_PTR(top) : NULL;
}

/* A run gets its file alone (a server never sees its directory): a module
 * the file imports from beside it is missing there, and the worker's hint
 * (declare it in @requirements) would install whatever PyPI project has
 * that name. The CLI, which sees the directory on both paths, says so. */
static void note_local_module(const char *file, json_t *run) {
        _cleanup_free_ char *module = missing_module(run);
        if (!module)
                return;
        const char *slash = strrchr(file, '/');
        _cleanup_free_ char *dir = slash ? xstrndup(file, (size_t) (slash - file) + (slash == file)) : xstrdup(".");
        _cleanup_free_ char *py = xasprintf("%s.py", module);
        _cleanup_free_ char *py_path = path_join(dir, py), *pkg_path = path_join(dir, module);
        struct stat st;
        _cleanup_free_ char *kind = NULL;
        if (stat(py_path, &st) == 0 && S_ISREG(st.st_mode))
                kind = xstrdup(py);
        else if (stat(pkg_path, &st) == 0 && S_ISDIR(st.st_mode))
                kind = xasprintf("the package %s/", module);
        else
                return;
        const char *base = path_base_name(file);
        cli_error("note: '%s' is %s beside %s, which the run does not get (a run has its file alone): put what it "
                  "needs into %s; it is no package to declare in @requirements",
                  module, kind, base, base);
}

/* Runs (or validates, or invokes) q on b and renders it; verb names the
 * verb in a function's usage (describe_only). */
static int run_and_render(Backend *b, RunRequest *q, const char *verb) {
        const RunArgs *a = q->a;
        int code = check_suspects(b, q);
        if (code)
                return code;
        cli_warn_shadowed(b, q);
        Renderer rd;
        renderer_init(&rd, a->json_output);
        _cleanup_fclose_ FILE *out = NULL;
        if (a->output_file) {
                out = fopen(a->output_file, "we");
                if (!out) {
                        cli_error("cannot write %s: %s", a->output_file, strerror(errno));
                        renderer_done(&rd);
                        return EXIT_USAGE;
                }
                rd.out = out;
                rd.tty_out = false;
        }
        json_t *run = NULL;
        /* Its result is only rendered (renderer_run_outcome()). */
        q->hold_result = !q->validate_only && !q->detach;
        /* Ctrl-C: the embedded backend cancels in its own handler; a
         * remote run's requests stop and the run is cancelled on the server. */
        cli_catch_interrupt();
        int r = b->ops->run(b, q, &rd, &run);
        if (r < 0) {
                renderer_done(&rd);
                return backend_fail(b, r);
        }
        /* Embedded, this is the detached child at the run's end: its
         * parent printed the run long ago — unless the caller interrupted
         * it first (cli-detach.c): then its run was cancelled and it ends
         * as a foreground `run` does, on the caller's stderr. */
        if (q->detach && (b->remote || !cli_interrupted)) {
                renderer_done(&rd);
                /* A server answers a fresh submit with its run queued:
                 * one that has ended is a key's earlier run. */
                if (b->remote)
                        cli_print_detached(run, a->json_output, false, a->idempotency_key != NULL);
                json_decref(run);
                return 0;
        }
        /* Output to a file is the function's, both streams; a write that
         * failed (a full disk) is the command's failure, said below. */
        int out_error = !out ? 0 : fflush(out) != 0 ? errno : ferror(out) ? (rd.out_errno ?: EIO) : 0;
        renderer_done(&rd);
        const char *status = json_string_value(json_object_get(run, "status")) ?: "";
        /* A deployed function's usage is its function object (no run
         * status): it was found, or b->ops->run failed. */
        /* The source read from stdin is named as the run names it
         * (`<stdin>:2:12: SyntaxError`), not "-: ok". */
        _cleanup_free_ char *shown = a->file && streq(a->file, "-") && a->target[0] == '-'
                                             ? xasprintf("<stdin>%s", a->target + 1)
                                             : xstrdup(a->target);
        if (q->describe_only && (q->deployed || streq(status, "succeeded"))) {
                print_function_help(verb, a->target, run, a->json_output);
                code = 0;
        } else if (q->lock_only && streq(status, "succeeded")) {
                print_lock(shown, json_object_get(run, "lock"), a->json_output);
                code = 0;
        } else if (q->validate_only && a->json_output) {
                /* The validation's answer, valid or not (docs/api.md
                 * POST /v1/validate); a refusal's message is on stderr too. */
                render_json(run);
                code = streq(status, "succeeded") ? 0 : renderer_run_outcome(&rd, run);
        } else if (q->validate_only && streq(status, "succeeded")) {
                if (!a->quiet && !cli_globals.quiet)
                        printf("%s: ok (%s)\n", shown, json_string_value(json_object_get(run, "function")) ?: "?");
                code = 0;
        } else if (q->deployed && streq(status, "invalid") && (code = cli_suspect_refused(a->suspects, run))) {
                /* `invoke NAME --timout 3`: run's words and exit 2 (it was
                 * the ValidationError of a keyword 'timout', exit 3). */
        } else {
                code = renderer_run_outcome(&rd, run);
                if (!q->deployed && a->file)
                        note_local_module(a->file, run);
        }
        if (out_error && !cli_interrupted) {
                cli_error("cannot write %s: %s", a->output_file, strerror(out_error));
                code = code ?: EXIT_INTERNAL;
        }
        json_decref(run);
        return cli_interrupted ? EXIT_INTERRUPTED : code;
}

static int parse_or_fail(const char *verb, int argc, char **argv, RunArgs *a) {
        _cleanup_free_ char *err = NULL;
        if (cli_parse_run_args(argc, argv, a, &err) < 0)
                return usage_error(verb, err);
        a->json_output = a->json_output || cli_globals.json;
        a->quiet = a->quiet || cli_globals.quiet;
        return 0;
}

typedef enum RunVerb {
        VERB_RUN,
        VERB_VALIDATE,
        VERB_LOCK
} RunVerb;

/* `lock` resolves the requirements alone: a word the run grammar took for
 * an argument of the function is a mistake there (a mistyped option,
 * `--index-ur URL`, was dropped, and the default index asked), said with
 * the option meant when one is near. NULL when there is none. */
static char *lock_arguments_error(const RunArgs *a) {
        json_error_t e;
        _cleanup_(json_decrefp) json_t *args = json_loads(a->args_json ?: "[]", JSON_ALLOW_NUL, &e);
        _cleanup_(json_decrefp) json_t *kwargs = json_loads(a->kwargs_json ?: "{}", JSON_ALLOW_NUL, &e);
        const char *key = json_object_size(kwargs) ? json_object_iter_key(json_object_iter(kwargs)) : NULL;
        if (key) {
                _cleanup_free_ char *dashed = xasprintf("--%s", key);
                for (char *p = dashed + 2; *p; p++)
                        if (*p == '_')
                                *p = '-';
                const char *near = cli_runner_option_near(dashed);
                if (near)
                        return xasprintf("unknown option '%s' (did you mean %s?)", dashed, near);
                return xasprintf("lock takes no arguments of the function (it resolves the requirements alone), "
                                 "got '%s'",
                                 dashed);
        }
        json_t *first = json_array_get(args, 0);
        if (!first)
                return NULL;
        const char *raw = json_string_value(json_object_get(first, "raw"));
        _cleanup_free_ char *text = raw ? NULL : json_dumps(json_object_get(first, "value"), JSON_ENCODE_ANY);
        return xasprintf("lock takes no arguments of the function (it resolves the requirements alone), got '%s'",
                         raw ?: text ?: "?");
}

/* run, validate and lock: one file, its arguments, one backend. */
static int run_or_validate(int argc, char **argv, RunVerb kind) {
        static const char *const verbs[] = { "run", "validate", "lock" };
        static const char *const helps[] = { run_help, validate_help, lock_help };
        const char *verb = verbs[kind];
        bool validate_only = kind != VERB_RUN;
        /* --help after a FILE: the function's usage (run and validate). */
        bool describe = cli_help_asked(argc, argv) && kind != VERB_LOCK && argc > 0 && is_file_word(argv[0]);
        if (cli_help_asked(argc, argv) && !describe) {
                fputs(helps[kind], stdout);
                return 0;
        }
        _cleanup_free_ char **words = describe ? without_help(argc, argv, &argc) : NULL;
        if (describe)
                argv = words;
        RunArgs a;
        int code = parse_or_fail(verb, argc, argv, &a);
        if (code)
                return code;
        if (kind == VERB_LOCK) {
                _cleanup_free_ char *why = lock_arguments_error(&a);
                if (why) {
                        run_args_done(&a);
                        return usage_error(verb, why);
                }
        }
        _cleanup_free_ char *source = NULL;
        size_t len = 0;
        Backend *b = NULL;
        bool detach = a.detach && !describe;
        _cleanup_free_ char *server = detach ? cli_server() : NULL;
        if (a.detach && kind != VERB_RUN) {
                run_args_done(&a);
                return usage_error(verb, "--detach is run's and invoke's: a validation answers at once");
        }
        if (a.idempotency_key && kind != VERB_RUN) {
                run_args_done(&a);
                return usage_error(verb, "--idempotency-key is run's and invoke's: a validation starts no run");
        }
        a.worker_now = true;
        if (cli_read_source(a.file, &source, &len) < 0)
                code = EXIT_USAGE;
        else if (detach && !server && (code = cli_detach_fork(a.json_output, false)) >= 0) {
                /* The parent's part ends here; the child goes on. */
                run_args_done(&a);
                return code;
        } else {
                a.worker_env_likely = kind == VERB_RUN && !describe && cli_source_declares_requirements(source, len);
                code = backend_open(&a, &b);
        }
        if (!code && b->remote)
                code = cli_check_source(cli_source_name(a.file), source, len);
        if (!code) {
                /* A lock or a function's usage runs no code of the file:
                 * no note about its sandbox, only about what a server
                 * ignores. */
                if ((kind != VERB_LOCK && !describe) || b->remote)
                        backend_note_options(b, &a, a.sandbox, "this code runs");
                RunRequest q = { .a = &a,
                                 .source = source,
                                 .source_len = len,
                                 .filename = cli_source_name(a.file),
                                 .validate_only = validate_only || describe,
                                 .lock_only = kind == VERB_LOCK,
                                 .describe_only = describe,
                                 .detach = detach };
                code = run_and_render(b, &q, verb);
        }
        backend_free(b);
        run_args_done(&a);
        return code;
}

int verb_run(int argc, char **argv) {
        return run_or_validate(argc, argv, VERB_RUN);
}

int verb_validate(int argc, char **argv) {
        return run_or_validate(argc, argv, VERB_VALIDATE);
}

int verb_lock(int argc, char **argv) {
        return run_or_validate(argc, argv, VERB_LOCK);
}

const char *cli_source_name(const char *file) {
        return streq(file, "-") ? "<stdin>" : file;
}

int cli_read_source(const char *file, char **ret, size_t *ret_len) {
        /* "-": the source on stdin, as `python3 -` and `uv run -` read it. */
        int r = read_file(streq(file, "-") ? "/dev/stdin" : file, RUN_MAX_SOURCE_BYTES, ret, ret_len);
        /* Stdin is named as the run names it ("- is larger…" read as a
         * file called "-"). */
        if (r == -EFBIG)
                cli_error("%s is larger than the 4 MiB source limit", cli_source_name(file));
        else if (r < 0)
                cli_error("cannot read %s: %s", cli_source_name(file), strerror(-r));
        return r;
}

/* What `invoke --payload-file F` and `invoke -` read at most. The event's
 * real cap is the server's (server.max_body_bytes, 12 MiB by default;
 * Lambda's 6 MB): over it the server's 413 says so in its words. This one
 * only bounds the CLI's memory; the 4 MiB source cap refused events Lambda
 * and the daemon take. */
#define INVOKE_MAX_PAYLOAD_BYTES (256u << 20)

/* --payload JSON, --payload-file FILE, or '-' (stdin): the event. */
static int take_payload(int *argc, char **argv, json_t **ret) {
        _cleanup_free_ char *text = NULL;
        int j = 0;
        for (int i = 0; i < *argc; i++) {
                const char *w = argv[i];
                size_t len = 0;
                int r = 0;
                if ((streq(w, "--payload") || streq(w, "--payload-file")) && i + 1 >= *argc)
                        return usage_error("invoke", streq(w, "--payload") ? "--payload needs a JSON value"
                                                                          : "--payload-file needs a file");
                free(text);
                text = NULL;
                const char *from = NULL; /* the file's name */
                if (streq(w, "--payload"))
                        text = xstrdup(argv[++i]);
                else if (startswith(w, "--payload="))
                        text = xstrdup(w + 10);
                else if (streq(w, "--payload-file") || startswith(w, "--payload-file=")) {
                        const char *f = from = w[14] == '=' ? w + 15 : argv[++i];
                        r = read_file(f, INVOKE_MAX_PAYLOAD_BYTES, &text, &len);
                        if (r < 0) {
                                cli_error("cannot read %s: %s", f, r == -EFBIG ? "larger than 256 MiB" : strerror(-r));
                                return EXIT_USAGE;
                        }
                } else if (streq(w, "-") && j > 0) {
                        r = read_file("/dev/stdin", INVOKE_MAX_PAYLOAD_BYTES, &text, &len);
                        if (r < 0) {
                                cli_error("cannot read the payload from stdin: %s",
                                          r == -EFBIG ? "larger than 256 MiB" : strerror(-r));
                                return EXIT_USAGE;
                        }
                } else {
                        argv[j++] = argv[i];
                        continue;
                }
                json_error_t e;
                json_decref(*ret);
                *ret = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
                if (!*ret) {
                        /* Where, in the file's own name when it came
                         * from one: jansson's line and column. */
                        _cleanup_free_ char *m = cli_json_error(from ?: "the payload", text, &e);
                        if (!from && !text[strspn(text, " \t\r\n")]) {
                                free(m);
                                m = xstrdup("the payload is empty: give a JSON value (--payload '{}' for an "
                                            "empty event)");
                        }
                        return usage_error("invoke", m);
                }
        }
        *argc = j;
        return 0;
}

/* Whether a --payload invoke was also given what the Lambda path has no
 * place for (it would be dropped without a word). */
static bool payload_has_company(const RunArgs *a) {
        const RunLimits *l = &a->limits;
        return (a->args_json && !streq(a->args_json, "[]")) || (a->kwargs_json && !streq(a->kwargs_json, "{}")) ||
               l->timeout_ms || l->memory_bytes || l->max_procs || l->max_output_bytes || l->network ||
               l->network_off || a->data;
}

int cli_invoke_name(int argc, char **argv, char **ret_name, long *ret_version, char **ret_alias) {
        assert(argc >= 0 && ret_name && ret_version && ret_alias);
        /* No NAME (`invoke "$FN"` with an unset variable, `invoke ::3`):
         * the run grammar would ask for a file, which invoke takes none of. */
        if (argc == 0 || !*argv[0] || startswith(argv[0], ":"))
                return usage_error("invoke", "invoke needs a deployed function's NAME (see `pysprinter functions`)");
        /* NAME::VERSION (NAME:VERSION): the version is ours, not the run
         * grammar's ::FUNC. */
        char *name = NULL, *alias = NULL;
        long version = 0;
        if (argv[0][0] != '-' && strchr(argv[0], ':') && cli_parse_deployed_ref(argv[0], &name, &version, &alias) < 0)
                return usage_error("invoke", CLI_VERSION_REFUSED);
        *ret_name = name;
        *ret_version = version;
        *ret_alias = alias;
        return 0;
}

int verb_invoke(int argc, char **argv) {
        /* --help after a NAME: the deployed function's usage (a server's
         * business, as the invoke is); alone, invoke's own. */
        bool describe = cli_help_asked(argc, argv) && argc > 0 && argv[0][0] != '-';
        if (cli_help_asked(argc, argv) && !describe) {
                fputs(invoke_help, stdout);
                return 0;
        }
        _cleanup_free_ char **words = describe ? without_help(argc, argv, &argc) : NULL;
        if (describe)
                argv = words;
        /* The usage names the version when one was asked for. */
        _cleanup_free_ char *shown = describe ? xstrdup(argv[0]) : NULL;
        json_t *payload = NULL;
        int code = take_payload(&argc, argv, &payload);
        if (code)
                return code;
        long version = 0;
        _cleanup_free_ char *name = NULL, *alias = NULL;
        code = cli_invoke_name(argc, argv, &name, &version, &alias);
        if (code) {
                json_decref(payload);
                return code;
        }
        if (name)
                argv[0] = name;
        RunArgs a;
        code = parse_or_fail("invoke", argc, argv, &a);
        if (code) {
                json_decref(payload);
                return code;
        }
        /* Refused here, before any backend: the same words embedded and
         * against a server. */
        _cleanup_free_ char *refused = cli_invoke_option_error(&a, "invoke", false);
        if (refused) {
                json_decref(payload);
                run_args_done(&a);
                return usage_error("invoke", refused);
        }
        if (payload && a.idempotency_key) {
                json_decref(payload);
                run_args_done(&a);
                return usage_error("invoke", "--idempotency-key cannot go with --payload: a Lambda-style invoke "
                                             "takes no Idempotency-Key (Lambda has none)");
        }
        if (payload && payload_has_company(&a)) {
                json_decref(payload);
                run_args_done(&a);
                return usage_error("invoke", "--payload is the whole event: put the arguments in it; a Lambda-style "
                                             "invoke runs with its deploy's limits, so -a, --NAME, --timeout, "
                                             "--memory, --max-procs, --max-output, --network and --data cannot go "
                                             "with it");
        }
        if (shown) {
                free(a.target);
                a.target = TAKE_PTR(shown);
        }
        Backend *b = NULL;
        /* Embedded, the backend says invoke needs a server: no engine
         * (nor home) is opened to say it. */
        code = backend_open_listing(false, &b);
        if (!code) {
                RunRequest q = { .a = &a,
                                 .deployed = a.file,
                                 .version = version,
                                 .alias = alias,
                                 .payload = describe ? NULL : payload,
                                 .validate_only = describe,
                                 .describe_only = describe,
                                 .detach = a.detach && !describe };
                code = run_and_render(b, &q, "invoke");
        }
        backend_free(b);
        json_decref(payload);
        run_args_done(&a);
        return code;
}

/* ---- ps / show / logs ---------------------------------------------------- */

static void run_target(json_t *run, char buf[static 256]) {
        const char *f = json_string_value(json_object_get(run, "filename"));
        const char *fn = json_string_value(json_object_get(run, "function"));
        /* Never "file.py::?": a run that failed before its function was
         * known shows the file alone. A file's name may hold any byte but
         * '/': its control bytes are spelled out (\xNN), so a name made
         * of escape sequences neither drives the terminal of whoever
         * lists the runs nor breaks the columns. */
        _cleanup_free_ char *t = xasprintf("%s%s%s", f ?: "-", fn ? "::" : "", fn ?: "");
        (void) str_escape_controls(t, false, buf, 256);
}

/* The run's own time, from its start to its end, or so far while it runs
 * ("-" for a run that never started), as the dashboard and a Lambda's
 * Duration count it: a wait for a slot is not the run's (run_queued()).
 * An ended run that has its timings.total_ms is that total, as the
 * dashboard's Duration is (runDuration() in ui/lib.js): the timestamps
 * are whole milliseconds, and a warm invoke that began and ended within
 * one read "0ms". */
static void run_duration(json_t *run, char buf[static 32]) {
        usec_t s = cli_parse_timestamp(json_string_value(json_object_get(run, "started_at")));
        usec_t f = cli_parse_timestamp(json_string_value(json_object_get(run, "finished_at")));
        json_t *total = json_object_get(json_object_get(run, "timings"), "total_ms");
        if (s && f && json_is_number(total) && json_number_value(total) >= 0 && json_number_value(total) < 1e12) {
                format_duration_us((usec_t) (json_number_value(total) * 1000.0 + 0.5), buf);
                return;
        }
        if (!f && streq(json_string_value(json_object_get(run, "status")) ?: "", "running"))
                f = now_realtime(); /* the stuck run an operator looks for shows how long */
        if (!s || !f || f < s)
                snprintf(buf, 32, "-");
        else
                format_duration_us(f - s, buf);
}

/* How long the run waited before it started (or, never started, before it
 * ended): false while it is still queued. Shown whatever its length, so
 * that show prints the same lines for a run embedded and on a server. */
static bool run_queued(json_t *run, char buf[static 32]) {
        usec_t c = cli_parse_timestamp(json_string_value(json_object_get(run, "created_at")));
        usec_t s = cli_parse_timestamp(json_string_value(json_object_get(run, "started_at")));
        if (!s)
                s = cli_parse_timestamp(json_string_value(json_object_get(run, "finished_at")));
        if (!c || !s || s < c)
                return false;
        format_duration_us(s - c, buf);
        return true;
}

/* Where the run came from, for ps's FUNCTION column: the deployed
 * function and version an invoke (or a schedule's fire) ran, NAME@N;
 * NAME alone for a run recorded before versions were kept; "-" for an
 * ad-hoc run. Control bytes spelled out, as run_target() does. */
static void run_origin(json_t *run, char buf[static 160]) {
        const char *fn = json_string_value(json_object_get(run, "fn_name"));
        json_t *v = json_object_get(run, "fn_version");
        _cleanup_free_ char *t = !fn                  ? xstrdup("-")
                                 : json_is_integer(v) ? xasprintf("%s@%" JSON_INTEGER_FORMAT, fn, json_integer_value(v))
                                                      : xstrdup(fn);
        (void) str_escape_controls(t, false, buf, 160);
}

static void run_exit(json_t *run, char buf[static 16]) {
        json_t *ec = json_object_get(run, "exit_code");
        snprintf(buf, 16, json_is_integer(ec) ? "%lld" : "-", (long long) json_integer_value(ec));
}

/* GET /v1/runs's most. */
#define PS_MAX_RUNS 10000

int verb_ps(int argc, char **argv) {
        bool json;
        long limit;
        _cleanup_strv_free_ char **status = NULL;
        if (cli_help_asked(argc, argv)) {
                printf("Usage: pysprinter ps [--json] [-n N] [--status STATE[,STATE...]] [--before RUN]\n"
                       "                     [--function NAME] [--schedule NAME] [--grep TEXT]\n\n"
                       "List the most recent runs (default 20). FUNCTION is the deployed function\n"
                       "and version a run was invoked from (NAME@N), `-` for an ad-hoc run.\n\n"
                       "  -n, --limit N    the newest N runs (1 to 10000)\n"
                       "  --before RUN     the runs listed after RUN (an id or a prefix): the\n"
                       "                   next page, past any limit\n"
                       "  --function NAME  the newest N runs of deployed function NAME (any version;\n"
                       "                   its invokes and its schedules' fires)\n"
                       "  --schedule NAME  the newest N runs schedule NAME fired\n"
                       "  --grep TEXT      the newest N runs with TEXT in their id, file name,\n"
                       "                   function, deployed function or schedule (ASCII letters\n"
                       "                   in either case; the dashboard's search)\n"
                       "  --status STATE   the newest N runs in STATE, or in any of several\n"
                       "                   (failed,killed; the option may repeat):\n"
                       "                   queued, running, succeeded, failed, invalid, deps_failed,\n"
                       "                   killed, cancelled, error, lost\n"
                       "  -q, --quiet      the runs' ids alone, one per line\n"
                       "  --json           the API's run objects, as one array\n");
                return 0;
        }
        int k = cli_take_status(&argc, argv, "ps", "ps", run_status_table(), RUN_STATUS_NAMES, &status);
        if (k)
                return k;
        /* --before RUN (or --before=RUN): taken out before the common
         * list options are read. */
        const char *before = NULL;
        RunFilter filter = { .statuses = status };
        static const struct {
                const char *name, *needs;
        } takes[] = {
                { "--before", "--before needs a run's id (or a prefix of one)" },
                { "--function", "--function needs a deployed function's name" },
                { "--schedule", "--schedule needs a schedule's name" },
                { "--grep", "--grep needs a text (a part of a run's id, file or function name)" },
        };
        const char **values[] = { &before, &filter.fn_name, &filter.schedule, &filter.text };
        int kept = 0;
        for (int i = 0; i < argc; i++) {
                size_t t = 0;
                while (t < ELEMENTSOF(takes) && !streq(argv[i], takes[t].name) &&
                       !(startswith(argv[i], takes[t].name) && argv[i][strlen(takes[t].name)] == '='))
                        t++;
                if (t == ELEMENTSOF(takes)) {
                        argv[kept++] = argv[i];
                        continue;
                }
                size_t len = strlen(takes[t].name);
                const char *v = argv[i][len] == '=' ? argv[i] + len + 1 : i + 1 < argc ? argv[++i] : NULL;
                if (!v || !*v)
                        return usage_error("ps", takes[t].needs);
                *values[t] = v;
        }
        /* --function as invoke names a function (an ARN too), every version. */
        _cleanup_free_ char *fname = NULL;
        if (filter.fn_name) {
                _cleanup_free_ char *refused = cli_parse_function_name(filter.fn_name, "ps --function", &fname);
                if (refused)
                        return usage_error("ps", refused);
                filter.fn_name = fname;
        }
        /* As the server refuses it (GET /v1/runs?q=), before either path
         * reads a run. */
        if (filter.text && strlen(filter.text) > RUN_FILTER_TEXT_MAX) {
                _cleanup_free_ char *m = xasprintf("--grep takes at most %d bytes", RUN_FILTER_TEXT_MAX);
                return usage_error("ps", m);
        }
        argc = kept;
        k = cli_parse_list_args(argc, argv, "ps", PS_MAX_RUNS, &json, &limit);
        if (k)
                return k;
        Backend *b = NULL;
        int code = backend_open_listing(true, &b);
        if (code)
                return code;
        json_t *runs = NULL;
        int r = b->ops->run_list(b, limit, &filter, before, &runs);
        if (r < 0)
                code = backend_fail(b, r);
        else if (json || cli_globals.json)
                render_json(runs);
        else if (render_list_keys(runs, "id"))
                ; /* `pysprinter logs $(pysprinter ps -q -n 1)` */
        else {
                /* FUNCTION as wide as its longest (a deployed function's
                 * name is at most 64 bytes), so that TARGET stays a column. */
                size_t i;
                json_t *run;
                int width = (int) strlen("FUNCTION");
                json_array_foreach(runs, i, run) {
                        char origin[160];
                        run_origin(run, origin);
                        width = MAX(width, (int) strlen(origin));
                }
                printf("%-18s %-11s %4s %-19s %8s  %-*s  %s\n", "ID", "STATUS", "EXIT", "CREATED", "DURATION", width,
                       "FUNCTION", "TARGET");
                json_array_foreach(runs, i, run) {
                        char created[32], dur[32], ec[16], target[256], origin[160];
                        format_local_time(json_string_value(json_object_get(run, "created_at")), created);
                        run_duration(run, dur);
                        run_exit(run, ec);
                        run_target(run, target);
                        run_origin(run, origin);
                        printf("%-18s %-11s %4s %-19s %8s  %-*s  %s\n",
                               json_string_value(json_object_get(run, "id")) ?: "?",
                               json_string_value(json_object_get(run, "status")) ?: "?", ec, created, dur, width,
                               origin, target);
                }
        }
        json_decref(runs);
        backend_free(b);
        return code;
}

#define NO_RUN_EMPTY "no run '' (see `pysprinter ps`)"

/* `show RUN`, `logs RUN [-f]`: RUN is an id or a unique prefix. */
static int one_run_args(const char *verb, int argc, char **argv, bool *json, bool *follow, const char **ret_id) {
        *ret_id = NULL;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json") && json)
                        *json = true;
                else if (follow && (streq(argv[i], "-f") || streq(argv[i], "--follow")))
                        *follow = true;
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        printf("Usage: pysprinter %s RUN%s\n%s\nRUN is a run id or a unique prefix of one "
                               "(see `pysprinter ps`).\n%s",
                               verb, follow ? " [-f]" : " [--json]",
                               follow ? "       pysprinter logs --function NAME [-f]\n" : "",
                               follow ? "Replays the run's stdout and stderr to the streams they were written to;\n"
                                        "-f follows a run still running (embedded or on a server) until it ends.\n"
                                        "No --json: the record is `pysprinter show RUN --json`.\n"
                                        "--function NAME: the output of the deployed function's last 10 invocations,\n"
                                        "each line tagged [RUN-ID]; with -f, then every new invocation's as it runs\n"
                                        "(a server is needed).\n"
                                      : "");
                        return -1;
                } else if (!*ret_id && argv[i][0] != '-')
                        *ret_id = argv[i];
                else {
                        _cleanup_free_ char *m = xasprintf("%s: unexpected argument '%s'", verb, argv[i]);
                        return usage_error(verb, m);
                }
        }
        if (!*ret_id) {
                _cleanup_free_ char *m = xasprintf("%s needs a run id (see `pysprinter ps`)", verb);
                return usage_error(verb, m);
        }
        /* An empty RUN (an unset shell variable) names no run on either
         * path: a daemon would read GET /v1/runs/ as its list, which
         * `show` printed as a run with exit 0. */
        if (!**ret_id) {
                cli_error(NO_RUN_EMPTY);
                return EXIT_USAGE;
        }
        return 0;
}

static void show_value(const char *label, json_t *v) {
        _cleanup_free_ char *t = cli_json_text(v);
        _cleanup_free_ char *f = json_reformat(t, 0);
        printf("%-10s %s\n", label, f);
}

/* The limits the run was given (the run object's "limits"), one line;
 * nothing for a run whose record has none (0: none of that kind). */
static void show_limits(json_t *l) {
        if (!json_is_object(l))
                return;
        json_int_t t = json_integer_value(json_object_get(l, "timeout_ms")),
                   m = json_integer_value(json_object_get(l, "memory_bytes")),
                   p = json_integer_value(json_object_get(l, "max_procs")),
                   o = json_integer_value(json_object_get(l, "max_output_bytes"));
        char ts[32] = "none", ms[32] = "none", os[32] = "none", ps[32] = "none";
        if (p > 0)
                snprintf(ps, sizeof(ps), "%" JSON_INTEGER_FORMAT, p);
        if (t > 0)
                format_duration_us((usec_t) t * USEC_PER_MSEC, ts);
        if (m > 0)
                format_size((uint64_t) m, ms);
        if (o > 0)
                format_size((uint64_t) o, os);
        printf("%-10s timeout %s, memory %s, processes %s, output %s, network %s\n", "limits:", ts, ms, ps, os,
               json_is_true(json_object_get(l, "network")) ? "on" : "off");
}

int verb_show(int argc, char **argv) {
        bool json = cli_globals.json;
        const char *id;
        int code = one_run_args("show", argc, argv, &json, NULL, &id);
        if (code)
                return code < 0 ? 0 : code;
        Backend *b = NULL;
        code = backend_open_listing(true, &b);
        if (code)
                return code;
        json_t *run = NULL;
        int r = b->ops->run_get(b, id, &run);
        if (r < 0)
                code = backend_fail(b, r);
        else if (json)
                render_json(run);
        else {
                char created[32], dur[32], ec[16], target[256];
                format_local_time(json_string_value(json_object_get(run, "created_at")), created);
                run_duration(run, dur);
                run_exit(run, ec);
                run_target(run, target);
                printf("%-10s %s\n%-10s %s\n%-10s %s\n%-10s %s\n%-10s %s\n%-10s %s\n", "id:",
                       json_string_value(json_object_get(run, "id")) ?: "?", "target:", target, "status:",
                       json_string_value(json_object_get(run, "status")) ?: "?", "exit code:", ec, "created:", created,
                       "duration:", dur);
                char queued[32];
                if (run_queued(run, queued))
                        printf("%-10s %s\n", "queued:", queued);
                /* Where it came from, as Lambda's and Modal's consoles
                 * show each invocation's function and version. */
                const char *fn_name = json_string_value(json_object_get(run, "fn_name"));
                json_t *fn_version = json_object_get(run, "fn_version");
                if (fn_name && json_is_integer(fn_version))
                        printf("%-10s %s v%" JSON_INTEGER_FORMAT "\n", "deployed:", fn_name,
                               json_integer_value(fn_version));
                else if (fn_name)
                        printf("%-10s %s\n", "deployed:", fn_name);
                const char *schedule = json_string_value(json_object_get(run, "schedule"));
                if (schedule)
                        printf("%-10s %s\n", "schedule:", schedule);
                show_limits(json_object_get(run, "limits"));
                /* The arguments as the user gave them. */
                show_value("args:", json_object_get(run, "args") ?: json_array());
                show_value("kwargs:", json_object_get(run, "kwargs") ?: json_object());
                const char *repr = json_string_value(json_object_get(run, "result_repr"));
                json_t *res = json_object_get(run, "result");
                if (repr)
                        printf("%-10s %s (repr; not JSON)\n", "result:", repr);
                else if (res && !json_is_null(res))
                        show_value("result:", res);
                json_t *err = json_object_get(run, "error");
                const char *type = json_string_value(json_object_get(err, "type"));
                const char *msg = json_string_value(json_object_get(err, "message"));
                const char *tb = json_string_value(json_object_get(err, "traceback"));
                if (msg) {
                        size_t tl = type ? strlen(type) : 0;
                        bool typed = type && strneq(msg, type, tl) && msg[tl] == ':';
                        printf("%-10s %s%s%s\n", "error:", type && !typed ? type : "", type && !typed ? ": " : "", msg);
                }
                if (tb)
                        printf("traceback:\n%s", tb);
        }
        json_decref(run);
        backend_free(b);
        return code;
}

/* ---- cancel ------------------------------------------------------------------ */

/* `VERB RUN... [--json]` (cancel, wait): the ids moved to argv's front,
 * their count; -EXIT_USAGE after saying why, 0 after the help. */
static int take_run_ids(const char *verb, const char *help, int argc, char **argv, bool *json) {
        int n = 0;
        if (cli_help_asked(argc, argv)) {
                fputs(help, stdout);
                return 0;
        }
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        *json = true;
                else if (argv[i][0] != '-')
                        argv[n++] = argv[i];
                else {
                        _cleanup_free_ char *m = xasprintf("%s: unexpected argument '%s'", verb, argv[i]);
                        return -usage_error(verb, m);
                }
        }
        if (n == 0) {
                _cleanup_free_ char *m = xasprintf("%s needs a run id (see `pysprinter ps`)", verb);
                return -usage_error(verb, m);
        }
        return n;
}

static const char cancel_help[] = "Usage: pysprinter cancel RUN... [--json]\n"
                                  "\n"
                                  "Cancel runs in flight: each is killed with its whole process tree and ends\n"
                                  "\"cancelled\" (its own `run` prints that and exits 5). RUN is a run id or a\n"
                                  "unique prefix of one (see `pysprinter ps`). One line per run: \"run ID: STATUS\"\n"
                                  "once it ended (or as it stands after 10 s: the cancel stands); a run that had\n"
                                  "ended, or none of that id, is said on stderr. Embedded, the run belongs to\n"
                                  "the CLI process that started it, which is asked to cancel that one run.\n"
                                  "\n"
                                  "  --json   each run's object (docs/api.md), one per line\n"
                                  "\n"
                                  "Exit codes: 0 every run cancelled, else the first failure's: 2 a run that had\n"
                                  "ended or is unknown, 6 server unreachable/auth.\n";

int verb_cancel(int argc, char **argv) {
        bool json = cli_globals.json;
        int n = take_run_ids("cancel", cancel_help, argc, argv, &json);
        if (n <= 0)
                return -n;
        Backend *b = NULL;
        /* A home without a database has no run to cancel: it says so
         * without creating one. */
        int code = backend_open_listing(true, &b);
        if (code)
                return code;
        /* Every run gets its line; the first failure's code is the exit. */
        for (int i = 0; i < n; i++) {
                json_t *run = NULL;
                if (!*argv[i]) {
                        /* As show's and logs': DELETE /v1/runs/ is no run. */
                        cli_error(NO_RUN_EMPTY);
                        code = code ?: EXIT_USAGE;
                        continue;
                }
                int r = b->ops->run_cancel(b, argv[i], &run);
                if (r < 0) {
                        int k = backend_fail(b, r);
                        code = code ?: k;
                } else if (json)
                        render_json(run);
                else
                        printf("run %s: %s\n", json_string_value(json_object_get(run, "id")) ?: argv[i],
                               json_string_value(json_object_get(run, "status")) ?: "?");
                fflush(stdout);
                json_decref(run);
        }
        backend_free(b);
        return code;
}

/* ---- wait: a detached run's end, as `run` would have shown it ------------- */

static const char wait_help[] = "Usage: pysprinter wait RUN... [--json]\n"
                                "\n"
                                "Wait for runs to end (a `run --detach`'s, an `invoke --detach`'s, a scheduled\n"
                                "one's) and print each one's end as its own `run` would have: the result on\n"
                                "stdout, the traceback or error on stderr. Its output is not replayed (that is\n"
                                "`pysprinter logs RUN`). RUN is a run id or a unique prefix of one. Ctrl-C stops\n"
                                "waiting and leaves the runs running (`pysprinter cancel RUN` stops one).\n"
                                "\n"
                                "  --json   each result as JSON, as `run --json` prints it\n"
                                "\n"
                                "Exit code: the first run's (in the order given) that did not succeed, as its\n"
                                "`run` would have exited (1 raised, 3 invalid, 5 limit or cancelled, ...), else 0;\n"
                                "2 a run that is unknown, 6 server unreachable/auth, 130 interrupted.\n";

/* Waits for run id to end (following its log with the output dropped:
 * the one way both backends tell a run's end, its owner gone included)
 * and prints its end into rd; returns its exit code, or a failure's. */
static int wait_one(Backend *b, const char *id, bool json) {
        Renderer rd;
        renderer_init(&rd, json);
        rd.no_output = true;
        json_t *run = NULL;
        int r = b->ops->run_logs(b, id, true, &rd);
        if (r >= 0)
                r = b->ops->run_get(b, id, &run);
        int code = r < 0 ? backend_fail(b, r) : renderer_run_outcome(&rd, run);
        renderer_done(&rd);
        json_decref(run);
        return code;
}

int verb_wait(int argc, char **argv) {
        bool json = cli_globals.json;
        int n = take_run_ids("wait", wait_help, argc, argv, &json);
        if (n <= 0)
                return -n;
        Backend *b = NULL;
        int code = backend_open_listing(true, &b);
        if (code)
                return code;
        cli_catch_interrupt();
        /* Every run is waited for; the first that did not succeed gives
         * the exit code (map's rule), Ctrl-C ends the wait at once. */
        for (int i = 0; i < n && !cli_interrupted; i++) {
                if (!*argv[i]) {
                        cli_error(NO_RUN_EMPTY);
                        code = code ?: EXIT_USAGE;
                        continue;
                }
                int k = wait_one(b, argv[i], json);
                code = code ?: k;
        }
        if (cli_interrupted)
                code = EXIT_INTERRUPTED;
        backend_free(b);
        return code;
}

/* ---- logs --function: every invocation of a deployed function ------------- */

typedef struct Tail {
        char *id;
        size_t printed;         /* bytes of its log already shown */
        bool ended_before;      /* the run had ended at the previous look */
        bool done;
} Tail;

static bool run_ended(json_t *run) {
        const char *st = json_string_value(json_object_get(run, "status"));
        return st && !streq(st, "queued") && !streq(st, "running");
}

/* Prints what t's log gained since the last call, each line tagged with
 * the run id; a partial last line waits for its end unless the run ended. */
static int tail_print(Backend *b, Tail *t) {
        json_t *run = NULL;
        int r = b->ops->run_get(b, t->id, &run);
        if (r < 0)
                return r;
        bool ended = run_ended(run);
        json_decref(run);
        Buf log;
        r = b->ops->run_log_text(b, t->id, &log);
        if (r < 0)
                return r;
        size_t end = log.len;
        if (!ended)
                while (end > t->printed && log.data[end - 1] != '\n')
                        end--;
        for (size_t i = t->printed; i < end;) {
                size_t n = 0;
                while (i + n < end && log.data[i + n] != '\n')
                        n++;
                /* The line's bytes as written, a NUL too (%.*s stopped there). */
                printf("[%s] ", t->id);
                fwrite(log.data + i, 1, n, stdout);
                putchar('\n');
                i += n + 1;
        }
        fflush(stdout);
        t->printed = end > t->printed ? end : t->printed;
        /* One more look after the end is seen: the record can say ended a
         * moment before the last of its log is where this reads it. */
        t->done = ended && t->ended_before;
        t->ended_before = ended;
        buf_free(&log);
        return 0;
}

/* The last LOGS_FUNCTION_RECENT invocations' output, oldest first; with
 * follow, then every new invocation's as it runs, until Ctrl-C. Polls
 * twice a second: one list and one log request per active run. */
#define LOGS_FUNCTION_RECENT 10
static int logs_function(const char *name, bool follow) {
        Backend *b = NULL;
        int code = backend_open_listing(false, &b);
        if (code)
                return code;
        Tail *tails = NULL;
        size_t n = 0;
        char **seen = NULL;
        int r = 0;
        cli_catch_interrupt();
        for (bool first = true;; first = false) {
                json_t *runs = NULL;
                r = b->ops->function_runs(b, name, first ? LOGS_FUNCTION_RECENT : 50, &runs);
                if (r < 0)
                        break;
                /* No runs: a name the tenant never deployed (a typo,
                 * another tenant's function) is refused as invoke refuses
                 * it, rather than printing nothing or following nothing
                 * for ever. A deleted function's runs still list. */
                if (first && json_array_size(runs) == 0) {
                        json_t *fn = NULL;
                        r = b->ops->function(b, "GET", name, 0, &fn);
                        json_decref(fn);
                        if (r < 0) {
                                json_decref(runs);
                                break;
                        }
                }
                /* newest first from the server: added oldest first */
                for (size_t i = json_array_size(runs); i-- > 0;) {
                        const char *id = json_string_value(json_object_get(json_array_get(runs, i), "id"));
                        if (!id || strv_contains(seen, id))
                                continue;
                        seen = strv_append(seen, id);
                        tails = xrealloc(tails, (n + 1) * sizeof(Tail));
                        tails[n++] = (Tail) { .id = xstrdup(id) };
                }
                json_decref(runs);
                for (size_t i = 0; i < n && r >= 0 && !cli_interrupted; i++)
                        if (!tails[i].done)
                                r = tail_print(b, &tails[i]);
                if (r < 0 || !follow || cli_interrupted)
                        break;
                usleep(500 * 1000);
                if (cli_interrupted)
                        break;
        }
        if (r < 0)
                code = backend_fail(b, r);
        else if (cli_interrupted)
                code = 130;
        for (size_t i = 0; i < n; i++)
                free(tails[i].id);
        free(tails);
        strv_free(seen);
        backend_free(b);
        return code;
}

int cli_run_log_print(Backend *b, const char *id, bool follow) {
        Renderer rd;
        renderer_init(&rd, false);
        /* A run's log replays its output to the streams it was written to. */
        rd.out = stdout;
        int r = b->ops->run_logs(b, id, follow, &rd);
        renderer_done(&rd);
        if (r < 0)
                return r;
        /* The traceback is what an uncaught exception prints on stderr,
         * as python3 f.py would: part of what the run showed its user. */
        json_t *run = NULL;
        r = b->ops->run_get(b, id, &run);
        if (r < 0)
                return r;
        const char *tb = json_get_string(json_object_get(run, "error"), "traceback");
        if (streq(json_get_string(run, "status") ?: "", "failed") && tb)
                fputs(tb, stderr);
        json_decref(run);
        return 0;
}

int verb_logs(int argc, char **argv) {
        bool follow = false;
        const char *id;
        for (int i = 0; i < argc; i++)
                if (streq(argv[i], "--function") || startswith(argv[i], "--function=")) {
                        const char *name = argv[i][10] == '=' ? argv[i] + 11 : i + 1 < argc ? argv[i + 1] : NULL;
                        int rest = argv[i][10] == '=' ? 1 : 2;
                        if (!name || !*name)
                                return usage_error("logs", "--function needs a deployed function's NAME");
                        for (int j = 0; j < argc; j++) {
                                if (j == i) {
                                        j += rest - 1;
                                        continue;
                                }
                                if (streq(argv[j], "-f") || streq(argv[j], "--follow"))
                                        follow = true;
                                else {
                                        _cleanup_free_ char *m = xasprintf("logs: unexpected argument '%s'", argv[j]);
                                        return usage_error("logs", m);
                                }
                        }
                        if (cli_globals.json)
                                return usage_error("logs", "logs has no --json");
                        _cleanup_free_ char *fname = NULL,
                                            *refused = cli_parse_function_name(name, "logs --function", &fname);
                        if (refused)
                                return usage_error("logs", refused);
                        return logs_function(fname, follow);
                }
        int code = one_run_args("logs", argc, argv, NULL, &follow, &id);
        if (code)
                return code < 0 ? 0 : code;
        /* A log is the function's own bytes, not a document: it has no
         * JSON form (the record is `show RUN --json`). */
        if (cli_globals.json)
                return usage_error("logs", "logs has no --json: it replays the run's output as written; "
                                           "`pysprinter show RUN --json` prints the run's record");
        Backend *b = NULL;
        code = backend_open_listing(true, &b);
        if (code)
                return code;
        cli_catch_interrupt();
        int r = cli_run_log_print(b, id, follow);
        if (r < 0)
                code = backend_fail(b, r);
        backend_free(b);
        return code;
}

/* ---- deploy / functions / workers ------------------------------------------ */

/* A positive decimal count, at most 1e6. */
static int parse_count(const char *s, uint64_t *ret) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || x > 1000000)
                return -EINVAL;
        *ret = x;
        return 0;
}

/* deploy's CORS options (docs/endpoints.md "CORS"), into *cors: Lambda's
 * Cors object, built item by item (--cors-origin, --cors-method,
 * --cors-header, --cors-expose, --cors-max-age, --cors-credentials) or
 * given whole (--cors JSON), or JSON null (--no-cors). 1 when argv[*i] is
 * one (its value taken: *i moves past it), 0 when it is not, -EINVAL with
 * *ret_error. *kind says which of the three ways was used: they do not mix.
 * The server checks the values (origins, header names, the max age). */
static int deploy_cors_option(int argc, char **argv, int *i, json_t **cors, int *kind, char **ret_error) {
        static const struct {
                const char *opt, *key;
        } item[] = {
                { "--cors-origin", "AllowOrigins" }, { "--cors-method", "AllowMethods" },
                { "--cors-header", "AllowHeaders" }, { "--cors-expose", "ExposeHeaders" },
                { "--cors-max-age", "MaxAge" },      { "--cors", NULL },
        };
        const char *a = argv[*i], *val = NULL;
        int which = -1;
        for (size_t j = 0; j < ELEMENTSOF(item) && which < 0; j++) {
                size_t n = strlen(item[j].opt);
                if (streq(a, item[j].opt)) {
                        which = (int) j;
                        val = *i + 1 < argc ? argv[++*i] : NULL;
                } else if (strneq(a, item[j].opt, n) && a[n] == '=') {
                        which = (int) j;
                        val = a + n + 1;
                }
        }
        bool cred = streq(a, "--cors-credentials"), none = streq(a, "--no-cors");
        if (which < 0 && !cred && !none)
                return 0;
        /* 1: item by item, 2: --cors JSON, 3: --no-cors. */
        int k = none ? 3 : which >= 0 && !item[which].key ? 2 : 1;
        if (*kind && *kind != k) {
                *ret_error = xstrdup(*kind == 3 || k == 3
                                             ? "deploy: --no-cors cannot go with other CORS options"
                                             : "deploy: --cors JSON cannot go with --cors-origin and the like: give "
                                               "the whole object, or the items");
                return -EINVAL;
        }
        *kind = k;
        if (none) {
                json_decref(*cors);
                *cors = json_null();
                return 1;
        }
        if (which >= 0 && !val) {
                *ret_error = xasprintf("deploy: %s needs a value", item[which].opt);
                return -EINVAL;
        }
        if (k == 2) {
                json_error_t e;
                json_t *j = json_loads(val, 0, &e);
                if (!json_is_object(j)) {
                        json_decref(j);
                        *ret_error = xstrdup("deploy: --cors needs a JSON object in Lambda's Cors shape, such as "
                                             "'{\"AllowOrigins\": [\"https://app.example\"], \"MaxAge\": 300}'");
                        return -EINVAL;
                }
                json_decref(*cors);
                *cors = j;
                return 1;
        }
        if (!*cors)
                *cors = json_object();
        if (cred)
                json_object_set_new(*cors, "AllowCredentials", json_true());
        else if (streq(item[which].key, "MaxAge")) {
                uint64_t x = 0;
                if (!streq(val, "0") && parse_count(val, &x) < 0) {
                        *ret_error = xasprintf(
                                "deploy: --cors-max-age needs a number of seconds (0 to 86400), got '%s'", val);
                        return -EINVAL;
                }
                json_object_set_new(*cors, "MaxAge", json_integer((json_int_t) x));
        } else {
                json_t *list = json_object_get(*cors, item[which].key);
                if (!list)
                        json_object_set_new(*cors, item[which].key, list = json_array());
                json_t *v = json_string(val);
                if (!v) {
                        *ret_error = xasprintf("deploy: %s: not valid UTF-8", item[which].opt);
                        return -EINVAL;
                }
                json_array_append_new(list, v);
        }
        return 1;
}

int verb_deploy(int argc, char **argv) {
        for (int i = 0; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "-f") || streq(argv[i], "--file") || startswith(argv[i], "--file="))
                        return cli_deploy_stack(argc, argv);
        const char *target = NULL, *name = NULL, *description = NULL;
        _cleanup_strv_free_ char **secrets = NULL, **env = NULL;
        json_t *url = NULL, *limits = json_object(), *cors = NULL;
        int cors_kind = 0;
        for (int i = 0; i < argc; i++) {
                _cleanup_free_ char *cors_error = NULL;
                int ck = deploy_cors_option(argc, argv, &i, &cors, &cors_kind, &cors_error);
                if (ck < 0) {
                        json_decref(limits);
                        json_decref(url);
                        json_decref(cors);
                        return usage_error("deploy", cors_error);
                }
                if (ck > 0)
                        continue;
                /* --timeout/--memory/--max-procs/--max-output and
                 * --network/--no-network: the function's limits (granted
                 * again at each invoke by the tenant's config), spelt as
                 * `run` takes them (--OPT=VALUE too). A function
                 * behind a URL or the Lambda route gets no limits but its
                 * deploy's, so a deploy that could not say --network left
                 * it without the network for good. */
                static const char *const lim[] = { "--timeout", "--memory", "--max-procs", "--max-output" };
                int li = -1;
                const char *val = NULL;
                for (int j = 0; j < 4; j++) {
                        size_t n = strlen(lim[j]);
                        if (streq(argv[i], lim[j])) {
                                li = j;
                                val = i + 1 < argc ? argv[++i] : NULL;
                        } else if (strneq(argv[i], lim[j], n) && argv[i][n] == '=') {
                                li = j;
                                val = argv[i] + n + 1;
                        }
                }
                if (li >= 0) {
                        uint64_t x = 0;
                        int k = !val      ? -EINVAL
                                : li == 0 ? cli_parse_duration_ms(val, &x)
                                : li == 2 ? parse_count(val, &x)
                                          : cli_parse_size(val, &x);
                        if (k < 0 || x == 0 || (li == 1 && x < RUN_MIN_MEMORY_BYTES) ||
                            (li == 2 && x > RUN_MAX_PROCS)) {
                                json_decref(limits);
                                json_decref(url);
                                /* run's words for the same options */
                                static const char *const want[] = {
                                        "--timeout needs a duration such as 30, 2.5s, 500ms or 5m",
                                        "--memory needs a size of at least 16M such as 256M or 1G",
                                        "--max-procs needs a number from 1 to 100000",
                                        "--max-output needs a size such as 10M or 512K",
                                };
                                _cleanup_free_ char *m = xasprintf("%s, got '%s'", want[li], val ? val : "");
                                return usage_error("deploy", m);
                        }
                        static const char *const field[] = { "timeout_ms", "memory_bytes", "max_procs",
                                                             "max_output_bytes" };
                        json_object_set_new(limits, field[li], json_integer((json_int_t) x));
                } else if (streq(argv[i], "--network") || streq(argv[i], "--no-network")) {
                        json_object_set_new(limits, "network", json_boolean(streq(argv[i], "--network")));
                } else if (streq(argv[i], "--url") || streq(argv[i], "--public") || streq(argv[i], "--no-url")) {
                        /* --public is --url for anyone, in either order;
                         * --no-url beside either says two things. */
                        bool off = streq(argv[i], "--no-url"), was_off = url && json_is_false(url);
                        if (url && off != was_off) {
                                json_decref(limits);
                                json_decref(url);
                                return usage_error("deploy", "deploy: --no-url cannot go with --url or --public");
                        }
                        if (off || streq(argv[i], "--public") || !url) {
                                json_decref(url);
                                url = off                          ? json_false()
                                      : streq(argv[i], "--public") ? json_string("public")
                                                                   : json_true();
                        }
                } else if ((streq(argv[i], "--secret") || streq(argv[i], "--env")) && i + 1 < argc) {
                        /* Checked as run's are (cli-args.c); sent as the
                         * request's "secrets" and "env" (docs/secrets.md). */
                        bool secret = streq(argv[i], "--secret");
                        const char *v = argv[++i];
                        _cleanup_free_ char *bad =
                                !secret ? cli_env_assignment_error(v)
                                : secret_name_is_valid(v)
                                        ? NULL
                                        : xstrdup("--secret needs a secret's name ([A-Za-z_][A-Za-z0-9_]{0,127})");
                        if (bad) {
                                json_decref(limits);
                                json_decref(url);
                                return usage_error("deploy", bad);
                        }
                        if (secret)
                                secrets = strv_append(secrets, v);
                        else
                                env = strv_append(env, v);
                } else if (streq(argv[i], "--name") && i + 1 < argc)
                        name = argv[++i];
                else if (startswith(argv[i], "--name="))
                        name = argv[i] + 7;
                else if (streq(argv[i], "--description") && i + 1 < argc)
                        description = argv[++i];
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        printf("Usage: pysprinter deploy FILE[::FUNC] [--name NAME] [--description TEXT]\n"
                               "                         [--secret NAME]... [--env KEY=VALUE]...\n"
                               "                         [--url [--public] | --no-url] [--timeout D] [--memory S]\n"
                               "                         [--max-procs N] [--max-output S] [--network | --no-network]\n"
                               "                         [--cors-origin O]... [--cors-method M]... [--cors-header "
                               "H]...\n"
                               "                         [--cors-expose H]... [--cors-max-age S] [--cors-credentials]\n"
                               "                         [--cors JSON | --no-cors] [--json]\n"
                               "       pysprinter deploy -f STACK.yaml [--prune] [--dry-run] [--json]\n\n"
                               "Deploy a function to the server; each deploy is a new version. NAME defaults\n"
                               "to the file's stem. An unknown package is exit 4, as for run.\n\n"
                               "  --secret NAME  its runs see the secret as the variable NAME (docs/secrets.md)\n"
                               "  --env K=V      and the variable K\n"
                               "  --url          answer HTTP at /fn/TENANT/NAME[/path] (a bearer token of the\n"
                               "                 tenant); --public: anyone, rate-limited per address;\n"
                               "                 --no-url removes it; without either a redeploy keeps it\n"
                               "  --cors-origin O  the URL's CORS settings (Lambda's Cors, docs/endpoints.md):\n"
                               "                 an origin (scheme://host[:port], or *) that may read it;\n"
                               "                 --cors-method M, --cors-header H (allowed request header),\n"
                               "                 --cors-expose H (a response header pages read),\n"
                               "                 --cors-max-age S (0-86400), --cors-credentials; each list\n"
                               "                 option repeats. --cors JSON: the whole object, as Lambda's\n"
                               "                 ('{\"AllowOrigins\": [\"*\"]}'). A redeploy without them keeps\n"
                               "                 the URL's; --no-cors removes them\n"
                               "  --timeout D    the function's wall-clock limit (30s, 2m)\n"
                               "  --memory S     its memory limit (256M, 1G)\n"
                               "  --max-procs N  its process limit\n"
                               "  --max-output S its output limit (10M)\n"
                               "  --network      its runs reach the host's network, if the tenant is granted it\n"
                               "                 (--no-network: not even where the server's default gives it)\n"
                               "  -f STACK.yaml  deploy a stack file's functions, schedules and URLs in one\n"
                               "                 transaction (docs/stack.md; deploy -f x --help)\n");
                        json_decref(limits);
                        json_decref(url);
                        return 0;
                } else if (!target && argv[i][0] != '-')
                        target = argv[i];
                else {
                        _cleanup_free_ char *m = xasprintf("deploy: unexpected argument '%s'", argv[i]);
                        json_decref(limits);
                        json_decref(url);
                        return usage_error("deploy", m);
                }
        }
        if (!target) {
                json_decref(limits);
                json_decref(url);
                return usage_error("deploy", "deploy needs FILE[::FUNC]");
        }
        /* Freed with req below once attached; before that, on the early
         * returns, they are small and the process ends. */
        const char *sep = strstr(target, "::");
        _cleanup_free_ char *file = sep ? xstrndup(target, (size_t) (sep - target)) : xstrdup(target);
        _cleanup_free_ char *source = NULL, *stem = NULL;
        size_t len;
        if (cli_read_source(file, &source, &len) < 0)
                return EXIT_USAGE;
        const char *base = path_base_name(file);
        if (!name) {
                stem = xstrdup(base);
                char *dot = strrchr(stem, '.');
                if (dot)
                        *dot = 0;
                name = stem;
        }
        Backend *b = NULL;
        int code = cli_check_source(file, source, len);
        if (!code) /* embedded: "needs a server", nothing opened */
                code = backend_open_listing(false, &b);
        if (code)
                return code;
        json_t *req = json_pack("{s:s, s:s%, s:s}", "name", name, "source", source, len, "filename", base), *ans = NULL;
        if (!req) {
                cli_error("deploy: the name or description is not valid UTF-8");
                backend_free(b);
                return EXIT_USAGE;
        }
        if (secrets)
                json_object_set_new(req, "secrets", json_strv_new(secrets));
        json_t *envo = env ? json_object() : NULL;
        for (char **e = env; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                _cleanup_free_ char *k = xstrndup(*e, (size_t) (eq - *e));
                json_object_set_new(envo, k, json_string(eq + 1));
        }
        if (envo)
                json_object_set_new(req, "env", envo);
        if ((sep && sep[2] && json_object_set_new(req, "function", json_string(sep + 2)) < 0) ||
            (description && json_object_set_new(req, "description", json_string(description)) < 0)) {
                cli_error("deploy: the function name or description is not valid UTF-8");
                json_decref(req);
                backend_free(b);
                return EXIT_USAGE;
        }
        if (url)
                json_object_set_new(req, "url", url);
        if (cors)
                json_object_set_new(req, "cors", cors);
        if (json_object_size(limits))
                json_object_set(req, "limits", limits);
        json_decref(limits);
        int r = b->ops->deploy(b, req, &ans);
        if (r >= 0)
                renderer_answer_warnings(NULL, ans);
        if (r == -EBADMSG || r == -ENOPKG) {
                /* The validation's message as `run` prints it. */
                fprintf(stderr, "%s\n", b->error ?: "invalid");
                code = cli_exit_code(r);
        } else if (r < 0)
                code = backend_fail(b, r);
        else if (cli_globals.json)
                render_json(ans);
        else
                printf("deployed %s version %lld (%s::%s)\n", json_string_value(json_object_get(ans, "name")) ?: name,
                       (long long) json_integer_value(json_object_get(ans, "version")), base,
                       json_string_value(json_object_get(ans, "function")) ?: "-");
        _cleanup_free_ char *address = r >= 0 ? cli_endpoint_text(b, json_object_get(ans, "url")) : NULL;
        if (address && !cli_globals.json)
                printf("url: %s\n", address);
        json_decref(req);
        json_decref(ans);
        backend_free(b);
        return code;
}

/* `functions alias NAME ALIAS VERSION` (set or move), `functions alias rm
 * NAME ALIAS`, `functions aliases NAME` (docs/cli.md "Aliases"). */
static int functions_alias(int argc, char **argv) {
        bool list = streq(argv[0], "aliases"), rm = !list && argc > 1 && streq(argv[1], "rm");
        const char *words[3] = {};
        size_t n = 0, want = list ? 1 : rm ? 2 : 3;
        for (int i = rm ? 2 : 1; i < argc; i++) {
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        printf("Usage: pysprinter functions alias NAME ALIAS VERSION   point ALIAS at VERSION (create "
                               "or move)\n"
                               "       pysprinter functions alias rm NAME ALIAS        delete ALIAS\n"
                               "       pysprinter functions aliases NAME [--json]      list NAME's aliases\n"
                               "An alias is %s; invoke NAME::ALIAS runs the version it points at.\n",
                               FUNCTION_ALIAS_RULE);
                        return 0;
                }
                if (argv[i][0] == '-' || n == want) {
                        _cleanup_free_ char *m = xasprintf("functions %s: unexpected argument '%s'", argv[0], argv[i]);
                        return usage_error("functions", m);
                }
                words[n++] = argv[i];
        }
        if (n < want) {
                const char *u = list ? "functions aliases NAME"
                                : rm ? "functions alias rm NAME ALIAS"
                                     : "functions alias NAME ALIAS VERSION";
                _cleanup_free_ char *m = xasprintf("usage: %s", u);
                return usage_error("functions", m);
        }
        long version = 0;
        if (!list && !rm) {
                const char *v = words[2];
                if (!(v[0] >= '1' && v[0] <= '9') || v[strspn(v, "0123456789")] || strlen(v) > 10 ||
                    (version = strtol(v, NULL, 10)) > INT32_MAX)
                        return usage_error("functions", "functions alias: VERSION must be a version number (1, 2, …)");
        }
        if (!list && !function_alias_name_is_valid(words[1])) {
                _cleanup_free_ char *m = xasprintf("functions alias: '%s' cannot name an alias: an alias is %s",
                                                   words[1], FUNCTION_ALIAS_RULE);
                return usage_error("functions", m);
        }
        Backend *b = NULL;
        int code = backend_open_listing(false, &b);
        if (code)
                return code;
        json_t *ans = NULL;
        int r = b->ops->alias(b, list ? "GET" : rm ? "DELETE" : "PUT", words[0], list ? NULL : words[1], version, &ans);
        if (r < 0)
                code = backend_fail(b, r);
        else if (cli_globals.json)
                render_json(list ? json_object_get(ans, "aliases") : ans);
        else if (list) {
                printf("%-24s %7s  %s\n", "ALIAS", "VERSION", "DESCRIPTION");
                size_t i;
                json_t *a;
                json_array_foreach(json_object_get(ans, "aliases"), i, a)
                        printf("%-24s %7lld  %s\n", json_string_value(json_object_get(a, "name")) ?: "?",
                               (long long) json_integer_value(json_object_get(a, "version")),
                               json_string_value(json_object_get(a, "description")) ?: "");
        } else if (rm)
                printf("deleted alias %s of %s\n", words[1], words[0]);
        else
                printf("%s::%s -> version %ld\n", words[0], words[1], version);
        json_decref(ans);
        backend_free(b);
        return code;
}

int verb_functions(int argc, char **argv) {
        if (argc > 0 && (streq(argv[0], "alias") || streq(argv[0], "aliases")))
                return functions_alias(argc, argv);
        const char *sub = "ls", *name = NULL;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        printf("Usage: pysprinter functions [ls|show NAME[:VERSION]|rm NAME[:VERSION]] [--json]\n"
                               "       pysprinter functions alias NAME ALIAS VERSION | alias rm NAME ALIAS | aliases "
                               "NAME\n"
                               "NAME may be a Lambda ARN or partial ARN, as for invoke. rm NAME deletes the\n"
                               "function with every version; rm NAME:VERSION that version alone (not the latest).\n"
                               "ls -q: the functions' names alone, one per line. An alias points at a version\n"
                               "(invoke NAME::ALIAS runs it); see `functions alias --help`.\n");
                        return 0;
                } else if (i == 0 && (streq(argv[i], "ls") || streq(argv[i], "show") || streq(argv[i], "rm")))
                        sub = argv[i];
                else if (i == 0 && argv[i][0] != '-') {
                        _cleanup_free_ char *m = xasprintf(
                                "functions: unknown subcommand '%s' (ls, show NAME, rm NAME, alias, aliases NAME)",
                                argv[i]);
                        return usage_error("functions", m);
                } else if (!name && argv[i][0] != '-' && !streq(sub, "ls"))
                        name = argv[i];
                else {
                        _cleanup_free_ char *m = xasprintf("functions: unexpected argument '%s'", argv[i]);
                        return usage_error("functions", m);
                }
        }
        if (!streq(sub, "ls") && !name) {
                _cleanup_free_ char *m = xasprintf("functions %s needs a NAME", sub);
                return usage_error("functions", m);
        }
        /* NAME, NAME:VERSION, NAME::VERSION, a Lambda ARN or partial ARN:
         * what invoke and schedule add take, through their parser. */
        long version = 0;
        _cleanup_free_ char *parsed = NULL, *refused = NULL;
        if (name && cli_parse_deployed_name(name, &parsed, &version) < 0)
                refused = xstrdup(CLI_VERSION_REFUSED);
        else if (name && streq(sub, "rm") && endswith(name, ":$LATEST"))
                /* rm NAME deletes every version, rm NAME:N version N: a
                 * $LATEST read as "no version" would delete them all. */
                refused = xasprintf("functions rm: $LATEST cannot be deleted alone: `functions rm %s` deletes the "
                                    "function with every version, `functions rm %s:N` one older version",
                                    parsed, parsed);
        if (refused)
                return usage_error("functions", refused);
        if (name)
                name = parsed;
        Backend *b = NULL;
        int code = backend_open_listing(false, &b);
        if (code)
                return code;
        json_t *ans = NULL;
        int r = b->ops->function(b, streq(sub, "rm") ? "DELETE" : "GET", streq(sub, "ls") ? NULL : name, version, &ans);
        json_t *list = json_object_get(ans, "functions");
        /* rm: the schedules that fire it, on stderr (as deploy's). */
        if (r >= 0 && streq(sub, "rm"))
                renderer_answer_warnings(NULL, ans);
        if (r < 0)
                code = backend_fail(b, r);
        else if (cli_globals.json)
                render_json(streq(sub, "ls") ? list : ans);
        else if (streq(sub, "ls") && render_list_keys(list, "name"))
                ; /* `functions ls -q`: the names alone */
        else if (streq(sub, "ls")) {
                printf("%-24s %7s  %-24s  %s\n", "NAME", "VERSION", "FUNCTION", "DEPLOYED");
                size_t i;
                json_t *f;
                json_array_foreach(list, i, f) {
                        char t[32];
                        format_local_time(json_string_value(json_object_get(f, "created_at")), t);
                        printf("%-24s %7lld  %-24s  %s\n", json_string_value(json_object_get(f, "name")) ?: "?",
                               (long long) json_integer_value(json_object_get(f, "version")),
                               json_string_value(json_object_get(f, "function")) ?: "-", t);
                }
        } else if (streq(sub, "rm") && version > 0)
                printf("deleted %s version %ld\n", name, version);
        else if (streq(sub, "rm"))
                printf("deleted %s\n", name);
        else {
                _cleanup_free_ char *t = cli_json_text(ans);
                _cleanup_free_ char *f = json_reformat(t, 2);
                puts(f);
        }
        json_decref(ans);
        backend_free(b);
        return code;
}

int verb_workers(int argc, char **argv) {
        if (cli_help_asked(argc, argv)) {
                printf("Usage: pysprinter workers [--json] [--server URL]\n\n"
                       "Show the daemon's warm workers (one per environment) and your deployed\n"
                       "functions' warm instances. The embedded CLI keeps no workers between runs.\n");
                return 0;
        }
        if (argc > 0) {
                _cleanup_free_ char *m = xasprintf("workers: unexpected argument '%s'", argv[0]);
                return usage_error("workers", m);
        }
        Backend *b = NULL;
        int code = backend_open_listing(false, &b);
        if (code)
                return code;
        json_t *ans = NULL;
        int r = b->ops->workers(b, &ans);
        if (r < 0)
                code = backend_fail(b, r);
        else if (cli_globals.json)
                render_json(ans);
        else {
                /* No totals: the daemon's metrics are an admin's (docs/api.md). */
                json_t *p = json_object_get(ans, "pool");
                char pss[32], budget[32];
                format_size((uint64_t) json_integer_value(json_object_get(p, "pss_bytes")), pss);
                format_size((uint64_t) json_integer_value(json_object_get(p, "memory_budget")), budget);
                if (json_is_object(p))
                        printf("%lld workers (%lld busy), %lld instances, PSS %s of %s budget; "
                               "%lld warm / %lld cold acquisitions, %lld evictions\n\n",
                               (long long) json_integer_value(json_object_get(p, "workers")),
                               (long long) json_integer_value(json_object_get(p, "busy")),
                               (long long) json_integer_value(json_object_get(p, "instances")), pss, budget,
                               (long long) json_integer_value(json_object_get(p, "hits")),
                               (long long) json_integer_value(json_object_get(p, "misses")),
                               (long long) json_integer_value(json_object_get(p, "evictions")));
                printf("%-9s %8s %5s %10s %8s  %s\n", "KIND", "PID", "BUSY", "PSS", "IDLE", "ENV / FUNCTION");
                size_t i;
                json_t *w;
                json_array_foreach(json_object_get(ans, "workers"), i, w) {
                        const char *kind = json_string_value(json_object_get(w, "kind")) ?: "?";
                        _cleanup_free_ char *what = NULL;
                        if (streq(kind, "instance"))
                                what = xstrdup(json_string_value(json_object_get(w, "function")) ?: "?");
                        else
                                what = xasprintf("%zu store dirs, %lld modules pre-imported%s",
                                                 json_array_size(json_object_get(w, "sys_path")),
                                                 (long long) json_integer_value(json_object_get(w, "imported")),
                                                 json_array_size(json_object_get(w, "failed_imports")) ? " (some failed: see --json)" : "");
                        /* A field the daemon does not give this token (a
                         * shared worker's pid, runs, memory and idle time
                         * are an admin's: docs/api.md) is a dash, not 0. */
                        json_t *pid = json_object_get(w, "pid"), *busy = json_object_get(w, "busy");
                        json_t *wpss_j = json_object_get(w, "pss_bytes"), *idle_j = json_object_get(w, "idle_s");
                        char wpid[24] = "-", wbusy[24] = "-", wpss[32] = "-", idle[32] = "-";
                        if (pid)
                                snprintf(wpid, sizeof(wpid), "%lld", (long long) json_integer_value(pid));
                        if (busy)
                                snprintf(wbusy, sizeof(wbusy), "%lld",
                                         (long long) (json_is_boolean(busy) ? json_is_true(busy)
                                                                            : json_integer_value(busy)));
                        if (wpss_j)
                                format_size((uint64_t) json_integer_value(wpss_j), wpss);
                        if (idle_j)
                                format_duration_us((usec_t) (json_number_value(idle_j) * 1e6), idle);
                        printf("%-9s %8s %5s %10s %8s  %s\n", kind, wpid, wbusy, wpss, idle, what);
                }
        }
        json_decref(ans);
        backend_free(b);
        return code;
}

int verb_server(int argc, char **argv) {
        _cleanup_free_ char *dir = NULL;
        char **args = xcalloc((size_t) argc + 2, sizeof(char *));
        args[0] = (char *) "pysprinterd";
        for (int i = 0; i < argc; i++)
                args[i + 1] = argv[i];
        /* Beside this binary when installed, the build tree's layout when
         * run from it, else $PATH. */
        if (exe_dir(&dir) >= 0) {
                _cleanup_free_ char *a = path_join(dir, "pysprinterd");
                _cleanup_free_ char *b = path_join(dir, "..", "daemon", "pysprinterd");
                execv(a, args);
                execv(b, args);
        }
        execvp("pysprinterd", args);
        cli_error("cannot start pysprinterd: %s", strerror(errno));
        free(args);
        return EXIT_INTERNAL;
}
