/* pysprinter schedule add|ls|show|rm|pause|resume (docs/schedules.md): a
 * deployed function fired by the server on a cron expression or an
 * interval. Written once over the Backend; the embedded engine has no
 * scheduler, so it answers that a server is needed. */
#include <jansson.h>
#include <stdio.h>

#include "shared.h"
#include "cli-backend.h"

static const char schedule_help[] =
        "Usage: pysprinter schedule add NAME (--cron EXPR | --every DURATION) [--tz TZ]\n"
        "                               [--catch-up none|one] [--allow-overlap] [--paused]\n"
        "                               (FUNCTION[::VERSION] [ARG…] [-a V]… [--NAME V]…\n"
        "                                | --dag FILE [--param NAME=VALUE]…)\n"
        "       pysprinter schedule ls [--json|-q]\n"
        "       pysprinter schedule show|rm|pause|resume NAME\n"
        "\n"
        "Fire a deployed function or a DAG file on a schedule (needs a server). Each\n"
        "fire is an ordinary run (or DAG run), listed by `ps` (`dag ls`) and `schedule show`.\n"
        "\n"
        "  --cron EXPR        5 fields \"MIN HOUR DOM MON DOW\" or @hourly, @daily, @weekly,\n"
        "                     @monthly, @yearly\n"
        "  --every DURATION   an interval: 30s, 10m, 1h (on multiples since the epoch)\n"
        "  --tz TZ            UTC (default), a fixed offset (+02:00, -0530) or an IANA\n"
        "                     zone (Europe/Paris): a wall time skipped by daylight\n"
        "                     saving fires at the end of the gap, a repeated one once\n"
        "  --catch-up MODE    one (default): a fire time missed while the server was down\n"
        "                     runs once at start; none: it is skipped\n"
        "  --allow-overlap    start a run even when the previous one still runs\n"
        "  --paused           create it paused (schedule resume NAME starts it)\n"
        "  --dag FILE         fire this DAG file: it and the task files it names are\n"
        "                     read now and kept by the server (later edits do not apply)\n"
        "  --param NAME=VALUE the DAG's ${params.NAME} (with --dag)\n"
        "\n"
        "Words right after FUNCTION are positional arguments; options after it are\n"
        "as for `pysprinter invoke` (-a V, --NAME V, -k NAME=V, --json-args…), and\n"
        "each fire is invoked with its limits and datasets (--timeout, --memory,\n"
        "--max-procs, --max-output, --network, --no-network, --data NAME); the other\n"
        "run options are refused.\n";

static int schedule_usage(const char *msg) {
        cli_error("%s", msg);
        fprintf(stderr, "Try 'pysprinter schedule --help'.\n");
        return EXIT_USAGE;
}

static const char *opt_value(int argc, char **argv, int *i) {
        if (*i + 1 >= argc)
                return NULL;
        return argv[++*i];
}

/* --dag FILE: the DAG file and the task files it names, read and checked
 * now (as `dag run` does) and sent as the POST /v1/dags body the server
 * keeps: later edits to the files do not change the schedule. */
static int dag_body(const char *file, char **params, json_t **ret) {
        _cleanup_free_ char *text = NULL, *err = NULL, *base = NULL;
        size_t len = 0;
        int r = read_file(file, DAG_MAX_FILE_BYTES, &text, &len);
        if (r < 0) {
                cli_error("cannot read %s: %s", file,
                          r == -EFBIG ? "larger than the 1 MiB pipeline limit" : strerror(-r));
                return r == -EFBIG ? EXIT_VALIDATION : EXIT_USAGE;
        }
        const char *slash = strrchr(file, '/');
        base = slash ? xstrndup(file, (size_t) (slash - file) + 1) : xstrdup(".");
        Dag *d = NULL;
        r = dag_parse(text, len, file, base, params, &d, &err);
        if (r >= 0 && (r = dag_check_params(d, params, &err)) < 0)
                d = dag_free(d);
        if (r < 0) {
                cli_error("%s", err ?: strerror(-r));
                return r == -ENOENT ? EXIT_USAGE : EXIT_VALIDATION;
        }
        DagRequest q = { .dag = d, .text = text, .len = len, .filename = file, .base_dir = base, .params = params };
        r = dag_request_body(&q, ret, &err);
        dag_free(d);
        if (r < 0) {
                cli_error("%s", err ?: strerror(-r));
                return r == -ENOENT ? EXIT_USAGE : EXIT_VALIDATION;
        }
        return 0;
}

/* schedule add: its own options, then FUNCTION and the invoke arguments
 * (or --dag FILE and no FUNCTION); *ret_args: FUNCTION's, parsed (left
 * as it was for --dag), for the caller to run_args_done(). */
static int schedule_add_body(int argc, char **argv, json_t **ret, RunArgs *ret_args) {
        json_t *body = json_object();
        int i = 0;
        const char *v, *dag_file = NULL;
        _cleanup_strv_free_ char **params = NULL;
        if (argc < 1 || argv[0][0] == '-') {
                json_decref(body);
                return schedule_usage("schedule add needs a NAME");
        }
        json_object_set_new(body, "name", json_string(argv[0]));
        for (i = 1; i < argc && argv[i][0] == '-'; i++) {
                /* "--cron EXPR" or "--cron=EXPR", as the invoke options
                 * after FUNCTION and `dag run`'s take them. */
                const char *eq = startswith(argv[i], "--") ? strchr(argv[i], '=') : NULL;
                _cleanup_free_ char *w = eq ? xstrndup(argv[i], (size_t) (eq - argv[i])) : xstrdup(argv[i]);
                const char *key = streq(w, "--cron")       ? "cron"
                                  : streq(w, "--every")    ? "every"
                                  : streq(w, "--tz")       ? "tz"
                                  : streq(w, "--catch-up") ? "catch_up"
                                                           : NULL;
                bool takes = key || streq(w, "--dag") || streq(w, "--param") || streq(w, "-p");
                if (eq && !takes) {
                        json_decref(body);
                        _cleanup_free_ char *m = streq(w, "--allow-overlap") || streq(w, "--paused")
                                                         ? xasprintf("%s takes no value", w)
                                                         : xasprintf("schedule add: unknown option '%s'", argv[i]);
                        return schedule_usage(m);
                }
                if (takes && !(v = eq ? eq + 1 : opt_value(argc, argv, &i))) {
                        json_decref(body);
                        _cleanup_free_ char *m = xasprintf("%s needs a value", w);
                        return schedule_usage(m);
                }
                if (key)
                        json_object_set_new(body, key, json_string(v));
                else if (takes) {
                        if (streq(w, "--dag"))
                                dag_file = v;
                        else
                                params = strv_append(params, v);
                } else if (streq(w, "--allow-overlap"))
                        json_object_set_new(body, "allow_overlap", json_true());
                else if (streq(w, "--paused"))
                        json_object_set_new(body, "paused", json_true());
                else {
                        json_decref(body);
                        _cleanup_free_ char *m = xasprintf("schedule add: unknown option '%s'", w);
                        return schedule_usage(m);
                }
        }
        if (!json_object_get(body, "cron") == !json_object_get(body, "every")) {
                json_decref(body);
                return schedule_usage("schedule add needs one of --cron EXPR and --every DURATION");
        }
        if (dag_file || params) {
                if (!dag_file || i < argc) {
                        json_decref(body);
                        return schedule_usage(dag_file ? "schedule add --dag FILE takes no FUNCTION or arguments"
                                                       : "--param goes with --dag FILE");
                }
                json_t *dag = NULL;
                int code = dag_body(dag_file, params, &dag);
                if (code) {
                        json_decref(body);
                        return code;
                }
                json_object_set_new(body, "dag", dag);
                *ret = body;
                return 0;
        }
        if (i >= argc) {
                json_decref(body);
                return schedule_usage("schedule add needs the FUNCTION (or --dag FILE) to fire");
        }
        /* FUNCTION::VERSION pins a version, as invoke's NAME::VERSION. */
        _cleanup_free_ char *fname = NULL;
        long version = 0;
        if (cli_parse_deployed_name(argv[i], &fname, &version) < 0) {
                json_decref(body);
                return schedule_usage(CLI_VERSION_REFUSED);
        }
        /* A name no function can have is no deployed function, in the
         * words of one that is not deployed (the server said "field
         * 'function' must name a deployed function"; "" was "no file given
         * in ''"), as invoke and `functions show` say it. */
        if (!function_name_is_valid(fname)) {
                json_decref(body);
                cli_error("no deployed function '%s' (see `pysprinter functions`)", fname);
                return EXIT_USAGE;
        }
        json_object_set_new(body, "function", json_string(fname));
        if (version)
                json_object_set_new(body, "version", json_integer(version));
        /* Bare words right after FUNCTION are positional: "-a WORD" each. */
        char **rest = strv_append(NULL, fname);
        int j = i + 1;
        for (; j < argc && argv[j][0] != '-'; j++) {
                rest = strv_append(rest, "-a");
                rest = strv_append(rest, argv[j]);
        }
        for (; j < argc; j++)
                rest = strv_append(rest, argv[j]);
        RunArgs a;
        _cleanup_free_ char *err = NULL, *refused = NULL;
        int n = (int) strv_length(rest), code = 0;
        if (cli_parse_run_args(n, rest, &a, &err) < 0)
                code = schedule_usage(err);
        else {
                /* Each fire is an invoke: what an invoke carries (arguments,
                 * limits, --data) is the schedule's; any other option would
                 * be dropped, so it is refused by name. */
                refused = cli_invoke_option_error(&a, "schedule add", true);
                if (refused)
                        code = schedule_usage(refused);
                else if (a.help) {
                        fputs(schedule_help, stdout);
                        code = -1;
                } else if (cli_args_to_api(body, &a) < 0)
                        code = schedule_usage("a raw (-a) argument cannot follow a typed one");
                /* A refusal of one of them is said as invoke says it,
                 * and a shadowed parameter as invoke says it too. */
                if (code)
                        run_args_done(&a);
                else
                        *ret_args = a;
        }
        strv_free(rest);
        if (code) {
                json_decref(body);
                return code;
        }
        *ret = body;
        return 0;
}

/* The next fire time on the schedule's wall clock ("2026-03-29 03:00
 * +02:00"); a server without next_fire_local gives UTC. */
static void local_time(json_t *o, const char *key, char buf[static 32]) {
        const char *l = json_string_value(json_object_get(o, "next_fire_local"));
        const char *t = json_string_value(json_object_get(o, key));
        if (l && strlen(l) >= 25)
                snprintf(buf, 32, "%.10s %.5s %s", l, l + 11, l + 19);
        else if (t)
                format_local_time(t, buf);
        else
                snprintf(buf, 32, "-");
}

#define SCHEDULE_COLUMNS 5

/* One row of `schedule ls`: its cells, and the note printed below it. */
typedef struct ScheduleRow {
        char *cell[SCHEDULE_COLUMNS];
        const char *note;
} ScheduleRow;

static void schedule_row(json_t *s, ScheduleRow *row) {
        char next[32];
        if (json_is_true(json_object_get(s, "paused")))
                snprintf(next, sizeof(next), "paused");
        else
                local_time(s, "next_fire_at", next);
        const char *tz = json_string_value(json_object_get(s, "tz"));
        bool zoned = tz && !streq(tz, "UTC");
        const char *dagf = json_string_value(json_object_get(json_object_get(s, "dag"), "file"));
        json_t *last = json_object_get(s, "last_run");
        row->cell[0] = xstrdup(json_string_value(json_object_get(s, "name")) ?: "?");
        row->cell[1] = dagf ? xasprintf("dag:%s", dagf)
                            : xstrdup(json_string_value(json_object_get(s, "function")) ?: "?");
        row->cell[2] = xasprintf("%s%s%s", json_string_value(json_object_get(s, "schedule")) ?: "?", zoned ? " " : "",
                                 zoned ? tz : "");
        row->cell[3] = xstrdup(next);
        row->cell[4] = json_is_object(last) ? xasprintf("%s %s", json_string_value(json_object_get(last, "id")) ?: "?",
                                                        json_string_value(json_object_get(last, "status")) ?: "?")
                                            : xstrdup("-");
        row->note = json_string_value(json_object_get(s, "note"));
}

static void print_cells(char *const *cell, const int *width) {
        for (size_t c = 0; c + 1 < SCHEDULE_COLUMNS; c++)
                printf("%-*s ", width[c], cell[c]);
        printf("%s\n", cell[SCHEDULE_COLUMNS - 1]);
}

/* Each column as wide as its widest cell (a schedule with its time zone,
 * "0 2 * * sun America/New_York", pushed the later columns out of line). */
static void print_list(json_t *list) {
        static const char *const header[SCHEDULE_COLUMNS] = { "NAME", "FUNCTION", "SCHEDULE", "NEXT", "LAST RUN" };
        int width[SCHEDULE_COLUMNS] = { 20, 16, 18, 23, 0 };
        size_t n = json_array_size(list);
        ScheduleRow *rows = xcalloc(n + 1, sizeof(ScheduleRow));
        for (size_t i = 0; i < n; i++) {
                schedule_row(json_array_get(list, i), &rows[i]);
                for (size_t c = 0; c < SCHEDULE_COLUMNS; c++)
                        width[c] = MAX(width[c], (int) strlen(rows[i].cell[c]));
        }
        print_cells((char *const *) header, width);
        for (size_t i = 0; i < n; i++) {
                print_cells(rows[i].cell, width);
                if (rows[i].note)
                        printf("  note: %s\n", rows[i].note);
                for (size_t c = 0; c < SCHEDULE_COLUMNS; c++)
                        free(rows[i].cell[c]);
        }
        free(rows);
}

int verb_schedule(int argc, char **argv) {
        if (argc == 0 || streq(argv[0], "--help") || streq(argv[0], "-h") || streq(argv[0], "help")) {
                fputs(schedule_help, argc ? stdout : stderr);
                return argc ? 0 : EXIT_USAGE;
        }
        const char *sub = argv[0];
        json_t *body = NULL;
        RunArgs fa = {}; /* schedule add FUNCTION's arguments */
        _cleanup_free_ char *path = NULL;
        const char *method = "GET";
        for (int i = 1; i < argc && !streq(sub, "add"); i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(schedule_help, stdout);
                        return 0;
                }
        if (streq(sub, "add")) {
                if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                        fputs(schedule_help, stdout);
                        return 0;
                }
                int code = schedule_add_body(argc - 1, argv + 1, &body, &fa);
                if (code)
                        return code < 0 ? 0 : code; /* -1: the help, asked after FUNCTION */
                method = "POST";
                path = xstrdup("");
        } else if (streq(sub, "ls") || streq(sub, "list")) {
                if (argc > 1)
                        return schedule_usage("schedule ls takes no arguments");
                path = xstrdup("");
        } else if (streq(sub, "show") || streq(sub, "rm") || streq(sub, "pause") || streq(sub, "resume")) {
                if (argc != 2 || argv[1][0] == '-') {
                        _cleanup_free_ char *m = xasprintf("schedule %s needs exactly one NAME", sub);
                        return schedule_usage(m);
                }
                /* Before the name becomes part of a path: "" would be GET
                 * /v1/schedules (the list, exit 0), and a '/' or ".."
                 * another route ("no such endpoint"). */
                if (!function_name_is_valid(argv[1])) {
                        cli_error("'%s' is not a schedule name ([A-Za-z0-9_-]{1,64})", argv[1]);
                        return EXIT_USAGE;
                }
                _cleanup_free_ char *e = http_escape(argv[1]);
                if (streq(sub, "rm"))
                        method = "DELETE";
                else if (!streq(sub, "show"))
                        method = "POST";
                path = streq(sub, "pause") || streq(sub, "resume") ? xasprintf("/%s/%s", e, sub) : xasprintf("/%s", e);
        } else {
                _cleanup_free_ char *m = xasprintf("unknown schedule command '%s' (add, ls, show, rm, pause, resume)",
                                                   sub);
                return schedule_usage(m);
        }

        /* Embedded, every schedule verb is "needs a server": no engine. */
        Backend *b = NULL;
        int code = backend_open_listing(false, &b);
        if (code) {
                json_decref(body);
                run_args_done(&fa);
                return code;
        }
        if (fa.file) {
                /* Each fire is an invoke: what invoke says of a shadowed
                 * parameter (`--timeout 7` for `timeout`) is said here. */
                RunRequest q = { .a = &fa,
                                 .deployed = fa.file,
                                 .version = (long) json_integer_value(json_object_get(body, "version")) };
                cli_warn_shadowed(b, &q);
        }
        json_t *ans = NULL;
        int r = b->ops->schedule(b, method, path, body, &ans);
        json_decref(body);
        if (r == -EBADMSG && ans) {
                /* Arguments the function refuses: the same lines and exit
                 * code as `invoke` with them (its refused run's outcome). */
                code = cli_suspect_refused(fa.suspects, ans);
                if (!code) {
                        Renderer rd;
                        renderer_init(&rd, false);
                        code = renderer_run_outcome(&rd, ans);
                        renderer_done(&rd);
                }
        } else if (r < 0)
                code = backend_fail(b, r);
        else if (cli_globals.json)
                render_json(streq(sub, "ls") || streq(sub, "list") ? json_object_get(ans, "schedules") : ans);
        else if (streq(sub, "ls") || streq(sub, "list")) {
                if (!render_list_keys(json_object_get(ans, "schedules"), "name"))
                        print_list(json_object_get(ans, "schedules"));
        } else if (streq(sub, "rm"))
                printf("deleted schedule %s\n", argv[1]);
        else if (streq(sub, "show")) {
                _cleanup_free_ char *t = cli_json_text(ans);
                _cleanup_free_ char *f = json_reformat(t, 2);
                puts(f);
        } else {
                char next[32];
                local_time(ans, "next_fire_at", next);
                printf("%s %s: %s, next %s\n", streq(sub, "add") ? "created schedule" : "schedule",
                       json_string_value(json_object_get(ans, "name")) ?: "?",
                       json_is_true(json_object_get(ans, "paused")) ? "paused" : "active",
                       json_is_true(json_object_get(ans, "paused")) ? "-" : next);
        }
        json_decref(ans);
        backend_free(b);
        run_args_done(&fa);
        return code;
}
