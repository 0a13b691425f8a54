/* `pysprinter gc`: the retention collection (docs/operations.md
 * "Retention") over the local home, the same engine_gc() the daemon runs. */
#include "cli.h"
#include "store.h"

static const char gc_help[] = "Usage: pysprinter gc [--dry-run] [--max-age-days N] [--max-log-bytes SIZE]\n"
                              "                     [--env-max-idle-days N] [--json]\n"
                              "\n"
                              "Removes finished runs older than N days (default 30; 0: keep forever) and\n"
                              "the oldest runs beyond SIZE of logs (bytes, or 512M, 1G; default 1G; 0: no\n"
                              "limit), DAG runs with their runs, memo entries whose run is gone, data\n"
                              "objects no dataset references, package store dirs no environment\n"
                              "references and the cancel requests (`cancel` asks) of runs no longer in\n"
                              "flight. Never a queued or running run. --env-max-idle-days N also removes\n"
                              "the environments no process uses that were not used for N days (default\n"
                              "0: none; `env prune` removes them by size).\n"
                              "--dry-run prints what would go (package store dirs too) and removes\n"
                              "nothing. With a server configured it is refused (exit 2): the server\n"
                              "collects its own store. So is a home a pysprinterd serves: `pysprinterd\n"
                              "gc` collects it with the retention of the daemon's config.\n";

int verb_gc(int argc, char **argv) {
        RetentionConfig rc;
        bool dry_run = false;
        retention_config_init(&rc);
        rc.batch_pause_usec = 0; /* nothing else waits on this process's store */
        for (int i = 0; i < argc; i++) {
                /* --NAME VALUE or --NAME=VALUE, as every verb's options. */
                const char *eq = startswith(argv[i], "--max-") || startswith(argv[i], "--env-") ? strchr(argv[i], '=')
                                                                                                : NULL;
                _cleanup_free_ char *name = eq ? xstrndup(argv[i], (size_t) (eq - argv[i])) : xstrdup(argv[i]);
                bool takes = streq(name, "--max-age-days") || streq(name, "--max-log-bytes") ||
                             streq(name, "--env-max-idle-days");
                const char *v = eq ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
                char *end = NULL;
                if (takes && !v) {
                        cli_error("%s needs a value\n%s", name, gc_help);
                        return EXIT_USAGE;
                }
                if (takes && !eq)
                        i++;
                if (streq(name, "--dry-run"))
                        dry_run = true;
                else if (streq(name, "--max-age-days") || streq(name, "--env-max-idle-days")) {
                        bool env = streq(name, "--env-max-idle-days");
                        unsigned long long days = strtoull(v, &end, 10);
                        if (!*v || *end || *v == '-' || days > 100000) {
                                cli_error("%s takes a whole number of days (0: %s)", name,
                                          env ? "no environment goes by age" : "keep forever");
                                return EXIT_USAGE;
                        }
                        if (env)
                                rc.env_max_idle_usec = days * 86400 * USEC_PER_SEC;
                        else
                                rc.defaults.max_age_usec = days * 86400 * USEC_PER_SEC;
                } else if (streq(name, "--max-log-bytes")) {
                        if (cli_parse_bytes(v, &rc.defaults.max_log_bytes) < 0) {
                                cli_error("--max-log-bytes takes a number of bytes or a size like 512M, 1G (0: no "
                                          "limit), not '%s'",
                                          v);
                                return EXIT_USAGE;
                        }
                } else if (streq(argv[i], "-h") || streq(argv[i], "--help")) {
                        fputs(gc_help, stdout);
                        return 0;
                } else {
                        cli_error("unknown option '%s'\n%s", argv[i], gc_help);
                        return EXIT_USAGE;
                }
        }
        /* The server has no gc route: its own collector (retention: in its
         * config) or `pysprinterd gc` on its host collects its store. Going
         * on would collect this machine's home instead of the server named,
         * where every other verb acts on the server. */
        _cleanup_free_ char *server = cli_server();
        if (server) {
                cli_error("gc has no server form: it collects only the embedded engine's home, and %s collects its "
                          "own store (retention: in its config, or `pysprinterd gc` on its host); `pysprinter gc "
                          "--server ''` collects this machine's home",
                          server);
                return EXIT_USAGE;
        }
        /* A daemon serving this home collects it with the retention of
         * its config (per-tenant ages, a tenant kept forever); the CLI's
         * defaults would remove what the operator keeps. `pysprinterd gc`
         * reads that config. A stopped daemon's home is the CLI's to
         * collect, as before. */
        _cleanup_free_ char *home = data_dir_default();
        pid_t daemon = 0;
        if (store_home_daemon(home, &daemon, NULL)) {
                cli_error("%s is served by pysprinterd (pid %d), which collects it with the retention of its config; "
                          "`pysprinterd gc --data-dir %s` (with `--dry-run` to look first) collects it now with that "
                          "config, where this command would apply its own defaults to every tenant",
                          home, (int) daemon, home);
                return EXIT_USAGE;
        }
        GcStats st = {};
        /* A home without a database has no runs, DAG runs or datasets to
         * collect, dry run or not: it is collected without opening an
         * engine, which would create the home (only a package store that
         * `env prepare` filled can be there). */
        Engine *e = NULL;
        if (engine_home_has_records(home)) {
                int code = cli_engine_open(NULL, true, &e);
                if (code)
                        return code;
        }
        _cleanup_free_ char *err = NULL;
        int r = engine_gc(e ? engine_store(e) : NULL, e ? engine_data_dir(e) : home, &rc, dry_run, NULL, &st, &err);
        engine_free(e);
        if (r < 0) {
                cli_error("%s", err);
                return EXIT_INTERNAL;
        }
        _cleanup_free_ char *summary = gc_stats_summary(&st, dry_run, cli_globals.json);
        fputs(summary, stdout);
        return 0;
}
