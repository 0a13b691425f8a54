/* Package verbs: `lock` (print a file's resolved lock), `env ls` and
 * `env prune` (environments in the data dir). */
#include <time.h>

#include "cli.h"
#include "pkg.h"

static const char lock_help[] =
        "Usage: pysprinter lock FILE[::FUNC] [--json] [--no-cache] [--index-url URL] [--find-links DIR]…\n"
        "\n"
        "Resolve FILE's @requirements and print the lock: every package with its\n"
        "version, wheel, URL and sha256. The lock is cached; the same requirements\n"
        "against the same index answer from the cache. The environment is also\n"
        "installed into the store, so a following `run` starts at once.\n"
        "\n"
        "  --json      print the lock as JSON (for machines)\n"
        "  --no-cache  resolve against the index again, not from the cached lock\n";

static const char env_help[] =
        "Usage: pysprinter env ls [--json]\n"
        "       pysprinter env prune [--budget SIZE]\n"
        "       pysprinter env prepare [--index-url URL] [--find-links DIR]… [--time] REQ…\n"
        "\n"
        "prepare  resolve and install PEP 508 requirements (\"requests==2.28.1\");\n"
        "       print the environment's store dirs in sys.path order (--time: the\n"
        "       microseconds it took, on stderr)\n"
        "ls     environments (cached locks) with their store size and last use\n"
        "prune  remove least recently used environments until the package store fits\n"
        "       SIZE (default 0: every environment no running process uses), then\n"
        "       every store dir no remaining environment references\n";

typedef struct LockCapture {
        Renderer *rd;
        char *lock_json;
} LockCapture;

static void lock_event(const RunEvent *ev, void *userdata) {
        LockCapture *lc = userdata;
        if (ev->type == RUN_EVENT_PROGRESS && ev->data && ev->phase && streq(ev->phase, "resolve")) {
                free(lc->lock_json);
                lc->lock_json = xstrndup(ev->data, ev->len);
        }
        renderer_event(ev, lc->rd);
}

/* These verbs have no server form yet: they act on this machine's package
 * store and index settings. Said aloud with a server configured, where
 * every other verb acts on the server. */
static void note_local(const char *verb) {
        _cleanup_free_ char *server = cli_server();
        if (server)
                cli_warning("%s acts on this machine's package store and index, not on the server (it has no "
                            "server form yet)",
                            verb);
}

int verb_lock(int argc, char **argv) {
        RunArgs a;
        _cleanup_free_ char *err = NULL;
        if (cli_parse_run_args(argc, argv, &a, &err) < 0) {
                fprintf(stderr, "pysprinter: %s\nTry 'pysprinter lock --help'.\n", err);
                return EXIT_USAGE;
        }
        if (a.help) {
                fputs(lock_help, stdout);
                run_args_done(&a);
                return 0;
        }
        _cleanup_free_ char *source = NULL;
        size_t len = 0;
        int r = cli_read_source(a.file, &source, &len);
        if (r < 0) {
                run_args_done(&a);
                return EXIT_USAGE;
        }
        a.json_output = a.json_output || cli_globals.json;
        note_local("lock");
        Engine *e = NULL;
        r = cli_engine_open(&a, &e);
        if (r) {
                run_args_done(&a);
                return r;
        }
        RunSpec spec = {
                .source = source,
                .source_len = len,
                .filename = a.file,
                .function = a.function,
                .args_json = a.args_json,
                .kwargs_json = a.kwargs_json,
                .sandbox = a.sandbox,
                .validate_only = true,
                .resolve_only = true, /* a lock installs nothing */
                .no_cache = a.no_cache,
                /* A lock is the requirements' business: no arguments. */
                .skip_argument_check = true,
                .no_record = true,
        };
        Renderer rd;
        renderer_init(&rd, a.json_output);
        LockCapture lc = { .rd = &rd };
        RunResult *res = NULL;
        r = engine_run(e, &spec, lock_event, &lc, &res);
        renderer_done(&rd);
        int code = 0;
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", strerror(-r));
                code = EXIT_INTERNAL;
        } else if (res->status != RUN_SUCCEEDED) {
                fprintf(stderr, "%s\n", res->error_message ?: run_status_to_string(res->status));
                code = res->exit_code;
        }
        else if (!lc.lock_json) {
                /* No requirements: the empty lock. */
                if (a.json_output)
                        puts("{\"version\":1,\"requirements\":[],\"packages\":[]}");
                else
                        printf("%s: no requirements\n", a.target);
        } else if (a.json_output)
                puts(lc.lock_json);
        else {
                PkgLock *l = NULL;
                _cleanup_free_ char *perr = NULL;
                if (pkg_lock_from_json(lc.lock_json, &l, &perr) < 0) {
                        fprintf(stderr, "pysprinter: %s\n", perr);
                        code = EXIT_INTERNAL;
                } else {
                        printf("# %s: ", a.target);
                        for (char **q = l->requirements; q && *q; q++)
                                printf("%s%s", q == l->requirements ? "" : ", ", *q);
                        printf("\n");
                        for (size_t i = 0; i < l->n_entries; i++)
                                printf("%-24s %-14s %s\n    sha256:%s\n", l->entries[i].name, l->entries[i].version,
                                       l->entries[i].filename, l->entries[i].sha256);
                        pkg_lock_free(l);
                }
        }
        free(lc.lock_json);
        run_result_free(res);
        engine_free(e);
        run_args_done(&a);
        return code;
}

static int env_ls(int argc, char **argv) {
        bool json = cli_globals.json || (argc > 0 && streq(argv[0], "--json"));
        _cleanup_free_ char *data = data_dir_default();
        PkgEnvInfo *infos = NULL;
        size_t n = 0;
        _cleanup_free_ char *err = NULL;
        int r = pkg_env_list(data, &infos, &n, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err);
                return EXIT_INTERNAL;
        }
        if (!json && n == 0)
                printf("no environments in %s\n", data);
        else if (!json)
                printf("%-12s %8s  %-24s %-6s %s\n", "ENV", "SIZE", "LAST USED", "IN USE", "REQUIREMENTS");
        if (json)
                printf("[");
        for (size_t i = 0; i < n; i++) {
                char ts[32];
                format_timestamp(infos[i].last_used, ts);
                char size[32];
                format_size(infos[i].size_bytes, size);
                Buf reqs;
                buf_init(&reqs, 1 << 20);
                for (char **q = infos[i].requirements; q && *q; q++) {
                        if (json)
                                buf_printf(&reqs, "%s\"%s\"", q == infos[i].requirements ? "" : ",", *q);
                        else
                                buf_printf(&reqs, "%s%s", q == infos[i].requirements ? "" : ", ", *q);
                }
                if (json)
                        printf("%s{\"key\":\"%s\",\"size_bytes\":%llu,\"last_used\":\"%s\",\"in_use\":%s,"
                               "\"requirements\":[%s]}",
                               i ? "," : "", infos[i].key, (unsigned long long) infos[i].size_bytes, ts,
                               infos[i].in_use ? "true" : "false", reqs.data ? reqs.data : "");
                else
                        printf("%-12.12s %8s  %-24s %-6s %s\n", infos[i].key, size, ts, infos[i].in_use ? "yes" : "no",
                               reqs.data ? reqs.data : "");
                buf_free(&reqs);
        }
        if (json)
                printf("]\n");
        pkg_env_info_free_many(infos, n);
        return 0;
}

static int env_prune(int argc, char **argv) {
        uint64_t budget = 0;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--budget") && i + 1 < argc) {
                        if (cli_parse_size(argv[++i], &budget) < 0) {
                                fprintf(stderr, "pysprinter: invalid size '%s'\n", argv[i]);
                                return EXIT_USAGE;
                        }
                } else if (startswith(argv[i], "--budget=")) {
                        if (cli_parse_size(argv[i] + 9, &budget) < 0) {
                                fprintf(stderr, "pysprinter: invalid size '%s'\n", argv[i] + 9);
                                return EXIT_USAGE;
                        }
                } else {
                        fprintf(stderr, "pysprinter: unknown option '%s'\n%s", argv[i], env_help);
                        return EXIT_USAGE;
                }
        }
        _cleanup_free_ char *data = data_dir_default();
        uint64_t freed = 0;
        size_t removed = 0;
        _cleanup_free_ char *err = NULL;
        int r = pkg_env_prune(data, budget, &freed, &removed, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err);
                return EXIT_INTERNAL;
        }
        char size[32];
        format_size(freed, size);
        printf("removed %zu environment%s, freed %s\n", removed, removed == 1 ? "" : "s", size);
        return 0;
}

static int env_prepare(int argc, char **argv) {
        const char *index_url = NULL;
        char **find_links = NULL;
        bool timing = false;
        PkgRequirement **reqs = NULL;
        size_t n = 0;
        int code = 0;
        for (int i = 0; i < argc && code == 0; i++) {
                if (streq(argv[i], "--index-url") && i + 1 < argc)
                        index_url = argv[++i];
                else if (streq(argv[i], "--find-links") && i + 1 < argc)
                        find_links = strv_append(find_links, argv[++i]);
                else if (streq(argv[i], "--time"))
                        timing = true;
                else if (argv[i][0] == '-') {
                        fprintf(stderr, "pysprinter: unknown option '%s'\n%s", argv[i], env_help);
                        code = EXIT_USAGE;
                } else {
                        _cleanup_free_ char *err = NULL;
                        reqs = xrealloc(reqs, (n + 1) * sizeof(PkgRequirement *));
                        if (pkg_requirement_parse(argv[i], &reqs[n], &err) < 0) {
                                fprintf(stderr, "pysprinter: %s\n", err ? err : "invalid requirement");
                                code = EXIT_USAGE;
                        } else
                                n++;
                }
        }
        usec_t t0 = now_monotonic();
        PkgIndexConfig *cfg = NULL;
        PkgEnv *env = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_free_ char *data = data_dir_default();
        if (code == 0 && pkg_index_config_new(index_url, NULL, find_links, &cfg, &err) < 0) {
                fprintf(stderr, "pysprinter: %s\n", err);
                code = EXIT_USAGE;
        }
        if (code == 0) {
                PkgEnvOptions o = { .data_dir = data, .index = cfg };
                if (pkg_env_prepare(&o, reqs, n, &env, &err) < 0) {
                        fprintf(stderr, "pysprinter: %s\n", err ? err : "dependency resolution failed");
                        code = EXIT_DEPENDENCY;
                }
        }
        usec_t dt = now_monotonic() - t0;
        if (code == 0) {
                for (char **d = env->store_dirs; d && *d; d++)
                        puts(*d);
                if (timing)
                        fprintf(stderr, "ready in %llu us (%s)\n", (unsigned long long) dt,
                                env->cached ? "cached lock" : "resolved");
        }
        pkg_env_free(env);
        pkg_index_config_free(cfg);
        for (size_t i = 0; i < n; i++)
                pkg_requirement_free(reqs[i]);
        free(reqs);
        strv_free(find_links);
        return code;
}

int verb_env(int argc, char **argv) {
        if (argc < 1 || streq(argv[0], "--help") || streq(argv[0], "-h")) {
                fputs(env_help, argc < 1 ? stderr : stdout);
                return argc < 1 ? EXIT_USAGE : 0;
        }
        static const struct {
                const char *name;
                int (*verb)(int argc, char **argv);
        } verbs[] = { { "ls", env_ls }, { "list", env_ls }, { "prune", env_prune }, { "prepare", env_prepare } };
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[0], verbs[i].name)) {
                        _cleanup_free_ char *verb = xasprintf("env %s", argv[0]);
                        note_local(verb);
                        return verbs[i].verb(argc - 1, argv + 1);
                }
        fprintf(stderr, "pysprinter: unknown env command '%s'\n%s", argv[0], env_help);
        return EXIT_USAGE;
}
