/* The `run` and `validate` verbs on the embedded engine. */
#include <signal.h>

#include "cli.h"
#include "cli-remote.h"
#include "data.h"

static const char run_help[] =
        "Usage: pysprinter run FILE[::FUNC] [OPTIONS] [ARGUMENTS]\n"
        "\n"
        "Validate FILE, install its @requirements, run the function in a sandbox and\n"
        "print its result (JSON; a str prints as itself).\n"
        "\n"
        "Arguments:\n"
        "  -a VALUE              positional argument (repeatable, in order)\n"
        "  --NAME VALUE, -NAME VALUE, --NAME=VALUE\n"
        "                        keyword argument NAME\n"
        "  -k NAME=VALUE         keyword argument, whatever NAME is (a, k, json, timeout…)\n"
        "  --json-args '[…]'     positional arguments as JSON values\n"
        "  --json-kwargs '{…}'   keyword arguments as JSON values\n"
        "  Values are converted by the parameter's annotation (int, float, bool, str,\n"
        "  list, dict, tuple, Optional[...]); unannotated parameters get strings.\n"
        "\n"
        "Options:\n"
        "  --json                print the result as compact JSON (always quoted)\n"
        "  --timeout DURATION    wall-clock limit (default 60s; 500ms, 2m…)\n"
        "  --memory SIZE         memory limit (default 512M)\n"
        "  --max-procs N         process limit (default 64)\n"
        "  --max-output SIZE     stdout+stderr limit (default 10M)\n"
        "  --network             allow outbound network access\n"
        "  --sandbox MODE        full (default) or none (trusted code only)\n"
        "  --index-url URL       package index (default PyPI; PIP_INDEX_URL honoured)\n"
        "  --find-links DIR      also look for wheels in DIR (repeatable)\n"
        "  --server URL          run on a pysprinterd (also PYSPRINTER_SERVER)\n"
        "\n"
        "Exit codes: 0 ok, 1 function raised, 2 usage, 3 validation, 4 dependencies,\n"
        "5 killed by a limit, 6 server unreachable/auth, 7 internal.\n";

static const char validate_help[] =
        "Usage: pysprinter validate FILE[::FUNC] [ARGUMENTS]\n"
        "\n"
        "Check FILE without running it: syntax, the target function, its\n"
        "@requirements, and the arguments against its signature. Takes the same\n"
        "arguments as `run`. Exit 0 when valid, 3 when not.\n";

/* Index settings: the flags, else the environment (the package manager
 * reads PYSPRINTER_INDEX_URL and pip's variables), else the config file. */
static void index_from_config(const RunArgs *a, char **ret_index, char ***ret_extra, char ***ret_links) {
        *ret_index = NULL;
        *ret_extra = *ret_links = NULL;
        if ((!a || !a->index_url) && !getenv("PYSPRINTER_INDEX_URL") && !getenv("PIP_INDEX_URL"))
                *ret_index = cli_config_value("index_url");
        if (!getenv("PIP_EXTRA_INDEX_URL")) {
                _cleanup_free_ char *v = cli_config_value("extra_index_url");
                if (v && *v)
                        *ret_extra = strv_append(NULL, v);
        }
        if ((!a || !a->find_links) && !getenv("PIP_FIND_LINKS")) {
                _cleanup_free_ char *v = cli_config_value("find_links");
                if (v && *v)
                        *ret_links = strv_append(NULL, v);
        }
}

int cli_engine_open(const RunArgs *a, Engine **ret) {
        _cleanup_free_ char *cfg_index = NULL;
        _cleanup_strv_free_ char **cfg_extra = NULL, **cfg_links = NULL;
        index_from_config(a, &cfg_index, &cfg_extra, &cfg_links);
        EngineConfig cfg = {
                /* One run per CLI process: a spare child would be wasted. */
                .no_spares = true,
                .index_url = a && a->index_url ? a->index_url : cfg_index,
                .extra_index_urls = cfg_extra,
                .find_links = a && a->find_links ? a->find_links : cfg_links,
        };
        _cleanup_free_ char *err = NULL;
        int r = engine_new(&cfg, ret, &err);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err ? err : strerror(-r));
                return EXIT_INTERNAL;
        }
        return 0;
}

static Engine *running_engine;
static const char *running_id;

static void on_interrupt(int sig) {
        /* Ctrl-C cancels the run; the engine reports it and we exit after. */
        if (running_engine && running_id)
                (void) engine_cancel(running_engine, running_id);
}

int cli_read_source(const char *file, char **ret, size_t *ret_len) {
        int r = read_file(file, RUN_MAX_SOURCE_BYTES, ret, ret_len);
        if (r == -EFBIG)
                fprintf(stderr, "pysprinter: %s is larger than the 4 MiB source limit\n", file);
        else if (r < 0)
                fprintf(stderr, "pysprinter: cannot read %s: %s\n", file, strerror(-r));
        return r;
}

static int run_or_validate(int argc, char **argv, bool validate_only) {
        RunArgs a;
        _cleanup_free_ char *err = NULL;
        if (cli_parse_run_args(argc, argv, &a, &err) < 0) {
                fprintf(stderr, "pysprinter: %s\nTry 'pysprinter %s --help'.\n", err, validate_only ? "validate" : "run");
                return EXIT_USAGE;
        }
        if (a.help) {
                fputs(validate_only ? validate_help : run_help, stdout);
                run_args_done(&a);
                return 0;
        }
        _cleanup_free_ char *source = NULL;
        size_t len = 0;
        if (cli_read_source(a.file, &source, &len) < 0) {
                run_args_done(&a);
                return EXIT_USAGE;
        }
        _cleanup_free_ char *server = cli_remote_server(a.server);
        if (server) {
                int rc = cli_remote_run(server, &a, source, len, validate_only);
                run_args_done(&a);
                return rc;
        }
        Engine *e = NULL;
        int r = cli_engine_open(&a, &e);
        if (r) {
                run_args_done(&a);
                return r;
        }
        if (a.sandbox == SANDBOX_MODE_NONE)
                fprintf(stderr, "pysprinter: warning: --sandbox=none: this code runs WITHOUT isolation, "
                                "with your user's access to files and network\n");
        /* --data NAME[@VERSION]: resolved to read-only content dirs. */
        _cleanup_strv_free_ char **mounts = NULL;
        if (a.data) {
                DataCatalog *dc = NULL;
                r = cli_data_open(e, &dc);
                _cleanup_free_ char *derr = NULL, *dwarn = NULL;
                if (r == 0 && data_resolve_mounts(dc, NULL, a.data, &mounts, NULL, &dwarn, &derr) < 0) {
                        fprintf(stderr, "pysprinter: %s\n", derr);
                        r = EXIT_VALIDATION;
                }
                if (dwarn)
                        fprintf(stderr, "pysprinter: warning: %s\n", dwarn);
                data_catalog_free(dc);
                if (r) {
                        engine_free(e);
                        run_args_done(&a);
                        return r;
                }
        }
        RunSpec spec = {
                .data = mounts,
                .source = source,
                .source_len = len,
                .filename = a.file,
                .function = a.function,
                .args_json = a.args_json,
                .kwargs_json = a.kwargs_json,
                .limits = a.limits,
                .sandbox = a.sandbox,
                .validate_only = validate_only,
                .no_record = validate_only,
        };
        Renderer rd;
        renderer_init(&rd, a.json_output);
        _cleanup_free_ char *id = id_new("r");
        spec.run_id = id;
        running_engine = e;
        running_id = id;
        struct sigaction sa = { .sa_handler = on_interrupt };
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        RunResult *res = NULL;
        r = engine_run(e, &spec, renderer_event, &rd, &res);
        running_engine = NULL;
        renderer_done(&rd);
        int code;
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", strerror(-r));
                code = EXIT_INTERNAL;
        } else if (validate_only && res->status == RUN_SUCCEEDED) {
                if (!a.quiet)
                        printf("%s: ok (%s)\n", a.target, res->function ?: "?");
                code = 0;
        } else
                code = renderer_result(&rd, res);
        run_result_free(res);
        engine_free(e);
        run_args_done(&a);
        return code;
}

int verb_run(int argc, char **argv) {
        return run_or_validate(argc, argv, false);
}

int verb_validate(int argc, char **argv) {
        return run_or_validate(argc, argv, true);
}
