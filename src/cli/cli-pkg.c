/* Package verbs: `env ls`, `env prepare`, `env prune` and `env verify`
 * (environments in the data dir). `lock` is a run-family verb (cli-runs.c). */
#include <time.h>

#include "cli-backend.h"
#include "pkg.h"
#include "shared.h"

static const char env_help[] = "Usage: pysprinter env ls [--json]\n"
                               "       pysprinter env prune [--budget SIZE] [--dry-run] [--json]\n"
                               "       pysprinter env prepare [--index-url URL] [--find-links DIR]… [--time] REQ…\n"
                               "       pysprinter env verify [--repair] [--json]\n"
                               "\n"
                               "prepare  resolve and install PEP 508 requirements (\"requests==2.28.1\");\n"
                               "       print the environment's store dirs in sys.path order (--time: the\n"
                               "       microseconds it took, on stderr)\n"
                               "ls     environments (cached locks) with their store size and last use; with\n"
                               "       --server, the server's (a tenant sees the ones its runs resolved)\n"
                               "prune  remove least recently used environments until the package store fits\n"
                               "       SIZE (default 0: every environment no running process uses), then\n"
                               "       every store dir no remaining environment references (--dry-run: say\n"
                               "       what would go, remove nothing)\n"
                               "verify check every installed package against its wheel's RECORD (each\n"
                               "       file's hash and size); exit 1 when one is damaged (--repair: remove\n"
                               "       the damaged ones, the next run installs them again)\n"
                               "prepare, prune and verify act on this machine's package store, also with\n"
                               "--server.\n";

/* prepare, prune and verify have no server form (the API has no route for them):
 * they act on this machine's package store and index settings. Said aloud
 * with a server configured, where every other verb acts on the server. */
static void note_local(const char *verb) {
        _cleanup_free_ char *server = cli_server();
        if (server)
                cli_warning("%s acts on this machine's package store and index, not on the server (it has no "
                            "server form yet)",
                            verb);
}

/* The environments of GET /v1/envs (docs/api.md), embedded or on a
 * server: the same columns from the same objects. */
static int env_ls(int argc, char **argv) {
        bool json = cli_globals.json;
        for (int i = 0; i < argc; i++) {
                if (!streq(argv[i], "--json")) {
                        fprintf(stderr, "pysprinter: env ls: unexpected argument '%s'\n%s", argv[i], env_help);
                        return EXIT_USAGE;
                }
                json = true;
        }
        Backend *b = NULL;
        int code = backend_open_listing(false, &b);
        if (code)
                return code;
        json_t *ans = NULL, *envs, *e;
        int r = b->ops->envs(b, &ans);
        if (r < 0) {
                code = backend_fail(b, r);
                backend_free(b);
                return code;
        }
        envs = json_object_get(ans, "envs");
        /* A server names its store only to an admin. */
        const char *where = json_get_string(ans, "data_dir");
        if (json)
                render_json(envs ?: json_array());
        else if (json_array_size(envs) == 0)
                printf("no environments in %s\n", where ?: "the server's package store");
        else
                printf("%-12s %10s  %-24s %-6s %s\n", "ENV", "SIZE", "LAST USED", "IN USE", "REQUIREMENTS");
        size_t i;
        if (!json)
                json_array_foreach(envs, i, e) {
                        char size[32];
                        format_size((uint64_t) json_integer_value(json_object_get(e, "size_bytes")), size);
                        printf("%-12.12s %10s  %-24s %-6s ", json_get_string(e, "key") ?: "?", size,
                               json_get_string(e, "last_used") ?: "-",
                               /* absent: not this token's to know (docs/api.md) */
                               !json_object_get(e, "in_use")                ? "-"
                               : json_is_true(json_object_get(e, "in_use")) ? "yes"
                                                                            : "no");
                        size_t k;
                        json_t *q;
                        json_array_foreach(json_object_get(e, "requirements"), k, q)
                                printf("%s%s", k ? ", " : "", json_string_value(q) ?: "");
                        /* A deployed version's lock shares its requirements
                         * with its deploy's resolution: which one is which. */
                        if (streq(json_get_string(e, "kind") ?: "", "pinned")) {
                                printf(" (pinned by a deployed version: ");
                                json_array_foreach(json_object_get(e, "packages"), k, q)
                                        printf("%s%s", k ? ", " : "", json_string_value(q) ?: "");
                                putchar(')');
                        }
                        putchar('\n');
                }
        json_decref(ans);
        backend_free(b);
        return 0;
}

static int env_prune(int argc, char **argv) {
        uint64_t budget = 0;
        bool dry_run = false;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--dry-run"))
                        dry_run = true;
                else if (streq(argv[i], "--budget") && i + 1 < argc) {
                        if (cli_parse_bytes(argv[++i], &budget) < 0) {
                                fprintf(stderr, "pysprinter: invalid size '%s'\n", argv[i]);
                                return EXIT_USAGE;
                        }
                } else if (startswith(argv[i], "--budget=")) {
                        if (cli_parse_bytes(argv[i] + 9, &budget) < 0) {
                                fprintf(stderr, "pysprinter: invalid size '%s'\n", argv[i] + 9);
                                return EXIT_USAGE;
                        }
                } else if (streq(argv[i], "--budget")) {
                        fprintf(stderr, "pysprinter: --budget needs a value\n%s", env_help);
                        return EXIT_USAGE;
                } else {
                        fprintf(stderr, "pysprinter: unknown option '%s'\n%s", argv[i], env_help);
                        return EXIT_USAGE;
                }
        }
        _cleanup_free_ char *data = data_dir_default();
        uint64_t freed = 0;
        size_t removed = 0;
        _cleanup_free_ char *err = NULL;
        int r = pkg_env_prune(data, budget, 0, dry_run, &freed, &removed, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err);
                return EXIT_INTERNAL;
        }
        if (cli_globals.json) {
                /* As `gc --json` answers: what a script reads, where the
                 * global --json printed the sentence before. */
                json_t *j = json_pack("{sbsIsI}", "dry_run", dry_run, "environments", (json_int_t) removed,
                                      "freed_bytes", (json_int_t) freed);
                render_json(j);
                json_decref(j);
                return 0;
        }
        char size[32];
        format_size(freed, size);
        printf("%s %zu environment%s, %s %s\n", dry_run ? "would remove" : "removed", removed, removed == 1 ? "" : "s",
               dry_run ? "would free" : "freed", size);
        return 0;
}

/* `env verify [--repair]`: pkg_store_verify(), one line per damaged
 * package, then the count; exit 1 while a damaged one stays. */
static int env_verify(int argc, char **argv) {
        bool repair = false, json = cli_globals.json;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--repair"))
                        repair = true;
                else if (streq(argv[i], "--json"))
                        json = true;
                else {
                        fprintf(stderr, "pysprinter: unknown option '%s'\n%s", argv[i], env_help);
                        return EXIT_USAGE;
                }
        }
        _cleanup_free_ char *data = data_dir_default();
        _cleanup_free_ char *err = NULL;
        size_t checked = 0, n = 0, removed = 0;
        PkgDamaged *damaged = NULL;
        int r = pkg_store_verify(data, repair, &checked, &damaged, &n, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err);
                return EXIT_INTERNAL;
        }
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++) {
                const PkgDamaged *d = &damaged[i];
                removed += d->removed;
                if (json) {
                        json_t *o = json_pack("{s:s, s:o, s:o, s:s, s:b}", "sha256", d->sha256, "name",
                                              d->name ? json_string(d->name) : json_null(), "version",
                                              d->version ? json_string(d->version) : json_null(), "problem",
                                              d->problem ?: "", "removed", d->removed);
                        json_array_append_new(list, o);
                        continue;
                }
                printf("damaged: %s %s (%.12s): %s\n", d->name ?: "?", d->version ?: "?", d->sha256, d->problem ?: "?");
                if (repair && !d->removed)
                        fprintf(stderr, "pysprinter: cannot remove %s/store/%s; remove it by hand\n", data, d->sha256);
        }
        if (json) {
                json_t *j = json_pack("{s:I, s:o, s:I}", "checked", (json_int_t) checked, "damaged", list, "repaired",
                                      (json_int_t) removed);
                render_json(j);
                json_decref(j);
        } else {
                json_decref(list);
                printf("checked %zu package%s, %zu damaged", checked, checked == 1 ? "" : "s", n);
                if (repair)
                        printf(", %zu removed\n", removed);
                else
                        printf(n ? " (pysprinter env verify --repair removes them; the next run installs them "
                                   "again)\n"
                                 : "\n");
        }
        pkg_damaged_free_many(damaged, n);
        return removed < n ? 1 : 0;
}

static int env_prepare(int argc, char **argv) {
        const char *index_url = NULL;
        char **find_links = NULL;
        bool timing = false;
        PkgRequirement **reqs = NULL;
        size_t n = 0;
        int code = 0;
        for (int i = 0; i < argc && code == 0; i++) {
                _cleanup_free_ char *why = NULL;
                if (streq(argv[i], "--index-url") && i + 1 < argc) {
                        index_url = argv[++i];
                        if (pkg_index_url_check(index_url, &why) < 0) {
                                fprintf(stderr, "pysprinter: --index-url: %s\n", why);
                                code = EXIT_USAGE;
                        }
                } else if (streq(argv[i], "--find-links") && i + 1 < argc)
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
        } verbs[] = { { "ls", env_ls },
                      { "list", env_ls },
                      { "prune", env_prune },
                      { "prepare", env_prepare },
                      { "verify", env_verify } };
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[0], verbs[i].name)) {
                        _cleanup_free_ char *verb = xasprintf("env %s", argv[0]);
                        if (verbs[i].verb != env_ls)
                                note_local(verb);
                        return verbs[i].verb(argc - 1, argv + 1);
                }
        fprintf(stderr, "pysprinter: unknown env command '%s'\n%s", argv[0], env_help);
        return EXIT_USAGE;
}
