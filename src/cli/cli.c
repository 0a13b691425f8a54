/* pysprinter: the command line. Verbs are a table; global options go
 * anywhere on the line; the backend (embedded or a server) is chosen
 * once; errors become exit codes through one table. */
#include <malloc.h>
#include <signal.h>

#include "config.h"
#include "cli-backend.h"

typedef struct Verb {
        const char *name;
        int (*fn)(int argc, char **argv);
        const char *summary;
} Verb;

static const Verb verbs[] = {
        { "run", verb_run, "run a function: run FILE[::FUNC] [-a V]… [--NAME V]…" },
        { "validate", verb_validate, "check a file and its arguments without running it" },
        { "ps", verb_ps, "list recent runs" },
        { "show", verb_show, "show one run's record" },
        { "logs", verb_logs, "print a run's output again" },
        { "cancel", verb_cancel, "cancel runs in flight: cancel RUN…" },
        { "wait", verb_wait, "wait for detached runs to end and print their results: wait RUN…" },
        { "dag", verb_dag, "run a pipeline: dag run|resume|status|logs|ls|cancel" },
        { "chain", verb_chain, "run files in a row, each result the next's first argument" },
        { "map", verb_map, "call a function once per input line: map FILE --over INPUTS.jsonl [--concurrency N]" },
        { "data", verb_data, "named, versioned datasets: data put|ls|get|rm" },
        { "secret", verb_secret, "the tenant's secrets, seen by runs as env vars: secret set|ls|rm|rotate-key" },
        { "lock", verb_lock, "resolve a file's requirements and print the lock" },
        { "env", verb_env, "environments: env ls|prepare|prune|verify" },
        { "gc", verb_gc, "remove old runs, logs and unreferenced data (retention)" },
        { "deploy", verb_deploy, "deploy a function to a server: deploy FILE[::FUNC] --name N" },
        { "invoke", verb_invoke_or_over,
          "invoke a deployed function: invoke NAME [--payload JSON] [-a V]… | --over INPUTS.jsonl" },
        { "functions", verb_functions, "a server's deployed functions: functions [ls|show|rm]" },
        { "schedule", verb_schedule,
          "fire a deployed function on a cron/interval: schedule add|ls|show|rm|pause|resume" },
        { "workers", verb_workers, "a server's warm workers and instances" },
        { "cluster", verb_cluster, "a server's cluster: cluster status, cluster drain NODE" },
        { "server", verb_server, "run pysprinterd (the HTTP daemon) with these options" },
        { "init", verb_init, "write a starter function, its test and a pipeline: init [DIR]" },
        { "completion", verb_completion, "print a shell completion script: completion bash|zsh|fish" },
};

const char *cli_verb(size_t i, const char **ret_summary) {
        if (i >= ELEMENTSOF(verbs))
                return NULL;
        if (ret_summary)
                *ret_summary = verbs[i].summary;
        return verbs[i].name;
}

static void usage(FILE *f) {
        fprintf(f, "Usage: pysprinter [GLOBAL OPTIONS] VERB [OPTIONS]\n\n"
                   "Run Python functions with their pip dependencies, in a sandbox.\n\nVerbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
        fprintf(f, "\nGlobal options (before or after the verb):\n"
                   "  --server URL   use a pysprinterd (also PYSPRINTER_SERVER)\n"
                   "  --token T      its bearer token (also PYSPRINTER_TOKEN)\n"
                   "  --json         machine-readable output\n"
                   "  --no-color     no colours (also NO_COLOR)\n"
                   "  -q, --quiet    only results and errors\n"
                   "  -v, --verbose  more detail\n"
                   "  --help         this help (VERB --help for a verb's)\n"
                   "  --version      print the version\n"
                   "\nData lives in $PYSPRINTER_HOME (default $XDG_DATA_HOME/pysprinter).\n"
                   "Exit codes: 0 ok, 1 raised, 2 usage, 3 validation, 4 dependencies, 5 limit,\n"
                   "6 server unreachable/auth, 7 internal, 130 interrupted (docs/cli.md).\n");
}

/* ---- global options ---- */

static bool takes_value(const char *w) {
        static const char *const v[] = { "-a", "-k", "--json-args", "--json-kwargs", "-p", "--param", "--payload" };
        for (size_t i = 0; i < ELEMENTSOF(v); i++)
                if (streq(w, v[i]))
                        return true;
        return false;
}

int cli_take_globals(int *argc, char **argv, CliGlobals *g, char **ret_error) {
        int j = 0, bare = 0;
        bool rest = false;
        for (int i = 0; i < *argc; i++) {
                const char *w = argv[i];
                char **slot = NULL;
                /* After the verb and its FILE, `--verbose` may have been
                 * meant for a parameter `verbose` (never --server, --token:
                 * a warning would show their values; nor -q: it keeps
                 * warnings out). */
                if (bare >= 2 && (streq(w, "--json") || streq(w, "--no-color") || streq(w, "--no-colour") ||
                                  streq(w, "--verbose") || streq(w, "-v"))) {
                        _cleanup_free_ char *param = xstrdup(w + (w[1] == '-' ? 2 : 1));
                        for (char *p = param; *p; p++)
                                if (*p == '-')
                                        *p = '_';
                        g->shadowing = strv_append(g->shadowing, param);
                        g->shadowing = strv_append(g->shadowing, w);
                        g->shadowing = strv_append(g->shadowing, "true");
                }
                if (rest || streq(w, "--")) {
                        rest = true;
                        argv[j++] = argv[i];
                        continue;
                }
                if (takes_value(w) && i + 1 < *argc) {
                        argv[j++] = argv[i++];
                        argv[j++] = argv[i];
                        continue;
                }
                if (streq(w, "--server") || startswith(w, "--server="))
                        slot = &g->server;
                else if (streq(w, "--token") || startswith(w, "--token="))
                        slot = &g->token;
                if (slot) {
                        const char *eq = strchr(w, '=');
                        if (!eq && i + 1 >= *argc) {
                                *ret_error = xasprintf("%s needs a value", w);
                                return -EINVAL;
                        }
                        free(*slot);
                        *slot = xstrdup(eq ? eq + 1 : argv[++i]);
                } else if (streq(w, "--json"))
                        g->json = true;
                else if (streq(w, "--no-color") || streq(w, "--no-colour"))
                        g->no_color = true;
                else if (streq(w, "-q") || streq(w, "--quiet"))
                        g->quiet = true;
                else if (streq(w, "-v") || streq(w, "--verbose"))
                        g->verbose = true;
                else {
                        bare += w[0] != '-' || streq(w, "-");
                        argv[j++] = argv[i];
                }
        }
        *argc = j;
        argv[j] = NULL;
        return 0;
}

int cli_subverb_help(int argc, char **argv, const char *help) {
        for (int i = 0; i < argc; i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h") || (i == 0 && streq(argv[i], "help"))) {
                        fputs(help, stdout);
                        return 0;
                }
        if (argc >= 1)
                return -1;
        fputs(help, stderr);
        return EXIT_USAGE;
}

/* ---- backends and exit codes ---- */

/* writes: the verb adds to the home (a run, a put), which a home on a
 * read-only file system refuses at once (cli_engine_open()). */
static int backend_open_for(const RunArgs *a, bool writes, Backend **ret) {
        _cleanup_free_ char *server = cli_server(), *err = NULL;
        if (server) {
                int r = backend_http_new(server, ret, &err);
                if (r < 0) {
                        cli_error("%s", err ?: strerror(-r));
                        return cli_exit_code(r);
                }
                return 0;
        }
        Engine *e = NULL;
        int code = cli_engine_open(a, writes, &e);
        if (code)
                return code;
        return backend_engine_new(e, ret);
}

int backend_open(const RunArgs *a, Backend **ret) {
        return backend_open_for(a, true, ret);
}

int backend_open_listing(bool records, Backend **ret) {
        _cleanup_free_ char *server = cli_server();
        if (server)
                return backend_open(NULL, ret);
        _cleanup_free_ char *home = data_dir_default();
        if (records && engine_home_has_records(home))
                return backend_open_for(NULL, false, ret);
        return backend_engine_new(NULL, ret);
}

void backend_note_options(const Backend *b, const RunArgs *a, SandboxMode sandbox, const char *what) {
        if (!b->remote) {
                if (sandbox == SANDBOX_MODE_NONE)
                        cli_warning("--sandbox=none: %s WITHOUT isolation, with your user's access to files and "
                                    "network",
                                    what);
                return;
        }
        if (sandbox == SANDBOX_MODE_NONE)
                cli_warning("--sandbox is the server's setting; ignored with --server");
        if (a->index_url || a->find_links)
                cli_warning("%s the server's setting (its config's index:); ignored with --server",
                            a->index_url && a->find_links ? "--index-url and --find-links are"
                            : a->index_url                ? "--index-url is"
                                                          : "--find-links is");
}

Backend *backend_free(Backend *b) {
        if (b) {
                b->ops->free(b);
                free(b->error);
                free(b);
        }
        return NULL;
}

static int cli_main(int argc, char **argv) {
        _cleanup_free_ char *err = NULL;
        /* Global options anywhere: `pysprinter --server URL run f.py` and
         * `pysprinter run f.py --server URL` mean the same. */
        int n = argc - 1;
        if (cli_take_globals(&n, argv + 1, &cli_globals, &err) < 0) {
                cli_error("%s", err);
                return EXIT_USAGE;
        }
        argc = n + 1;
        if (argc < 2) {
                usage(stderr);
                return EXIT_USAGE;
        }
        const char *verb = argv[1];
        /* `help VERB` is `VERB --help`, as git, cargo and uv have it. */
        static char help_flag[] = "--help";
        char *verb_help[] = { argv[0], argv[argc > 2 ? 2 : 1], help_flag, NULL };
        if (streq(verb, "help") && argc > 2) {
                verb = verb_help[1];
                argc = 3;
                argv = verb_help;
        }
        if (streq(verb, "--help") || streq(verb, "-h") || streq(verb, "help")) {
                usage(stdout);
                return 0;
        }
        if (streq(verb, "--version") || streq(verb, "-V") || streq(verb, "version")) {
                printf("pysprinter %s\n", PYSPRINTER_VERSION);
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, verb))
                        return verbs[i].fn(argc - 2, argv + 2);
        /* The verb meant, as `run --timout` names --timeout (git: "the
         * most similar command is"): one edit for a word under 5
         * letters, two from 5 on. The usage is a pointer away, not 45
         * lines of stderr. */
        const char *near = NULL;
        size_t best = strlen(verb) >= 5 ? 3 : 2;
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                size_t d = cli_edit_distance(verb, verbs[i].name);
                if (d < best) {
                        best = d;
                        near = verbs[i].name;
                }
        }
        if (near)
                cli_error("unknown verb '%s' (did you mean %s?)", verb, near);
        else
                cli_error("unknown verb '%s'", verb);
        fputs("Try 'pysprinter --help'.\n", stderr);
        return EXIT_USAGE;
}

int main(int argc, char **argv) {
#ifdef M_MMAP_THRESHOLD
        /* A result or a log of many megabytes is read, parsed and dropped,
         * often on a task's thread (an arena of its own). glibc's threshold
         * slides up to the largest block freed (up to 32 MiB): after the
         * first, such blocks came from the heap and stayed in the RSS once
         * freed (a DAG run of a 15 MB result: ~110 MB RSS for ~65 MB of
         * live heap). Fixed, they are mapped and unmapped. */
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
        tz_local_pin();
        log_set_prefix("pysprinter");
        cli_output_watch();
        return cli_finish(cli_main(argc, argv));
}
