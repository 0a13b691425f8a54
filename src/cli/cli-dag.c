/* `dag run|resume|status|logs|ls|cancel` and `chain`, written once against
 * a Backend: both backends answer with the API's DAG object, and the view
 * draws it.
 *
 * The pipeline is parsed here first (dag_parse() reads the task files and
 * checks references and cycles; nothing runs), so a broken pipeline fails
 * the same way on both paths and the parsed shape (depth, dependencies)
 * lays out the tree. Where the cursor can move (a TTY, TERM is not dumb)
 * the task tree is redrawn in place on stderr; elsewhere each state
 * change is one line. Results go to stdout: the leaf task's result (an
 * object of leaf results when there are several), or the DAG with --json.
 * `chain a.py b.py` is a linear pipeline built in memory (DESIGN §8). */
#include <jansson.h>

#include "data.h"
#include "pkg.h"
#include "shared.h"
#include "cli-backend.h"

#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_CYAN "\033[36m"
#define C_RESET "\033[0m"

/* A pipeline's name as a listing shows it: its `name:` is the user's text,
 * and its control bytes (an escape sequence, a tab) are spelled out so
 * that listing DAG runs never drives the terminal ("-": none). */
static void dag_name_shown(const char *name, char buf[static 256]) {
        (void) str_escape_controls(name ?: "-", false, buf, 256);
}

static const char dag_help[] =
        "Usage: pysprinter dag run PIPELINE.yaml [--param NAME=VALUE]… [OPTIONS]\n"
        "       pysprinter dag resume ID [OPTIONS]   run the tasks of ID that did not finish (embedded)\n"
        "       pysprinter dag status ID [--json]    per-task state, duration, run id (also: dag show ID)\n"
        "       pysprinter dag logs ID TASK          the output of TASK's last run (and its traceback)\n"
        "       pysprinter dag ls [--json|-q] [-n N] [--status STATE[,STATE...]]\n"
        "                                            recent DAG runs (in those states: validating,\n"
        "                                            running, succeeded, failed, cancelled, invalid,\n"
        "                                            deps_failed; --status may repeat)\n"
        "       pysprinter dag cancel ID             stop a DAG run in flight\n"
        "\n"
        "Every task (file, function, arguments, requirements, datasets) is validated\n"
        "before the first one runs. Tasks whose dependencies are done run concurrently.\n"
        "A task whose (source, function, arguments, lock, datasets) ran before reuses the\n"
        "stored result.\n"
        "\n"
        "Options:\n"
        "  --param NAME=VALUE    set ${params.NAME} (VALUE read like YAML: 5, true, text)\n"
        "  --concurrency N       tasks running at once (default: the file's, else 4)\n"
        "  --no-cache            run every task, even when a stored result exists\n"
        "  --keep-going          after a failure, still run what does not depend on it\n"
        "  --sandbox MODE        full (default) or none (trusted code only; embedded)\n"
        "  --json                print the DAG run (tasks, states, results) as JSON\n"
        "  --detach              print the DAG run's id and return; it goes on (`dag status\n"
        "                        ID` shows it, `dag cancel ID` stops it)\n"
        "  --idempotency-key KEY with --server: the same KEY again within 24 h starts\n"
        "                        nothing and shows KEY's first DAG run (refused embedded)\n"
        "  -q, --quiet           no progress: results and errors only\n"
        "  --index-url URL, --find-links DIR   package index settings, as for run\n"
        "  --server URL          run on a pysprinterd (also PYSPRINTER_SERVER)\n"
        "\n"
        "Exit codes: 0 all tasks succeeded, 3 the pipeline is invalid, otherwise the exit\n"
        "code of the first task that failed (1 raised, 4 dependencies, 5 limit), 130 cancelled.\n";

static const char chain_help[] = "Usage: pysprinter chain FILE[::FUNC] FILE[::FUNC]… [RUN OPTIONS] [ARGUMENTS]\n"
                                 "\n"
                                 "A linear pipeline (steps step1, step2, …): the first file gets ARGUMENTS (as\n"
                                 "for run), each next one gets the previous result as its first positional\n"
                                 "argument. Every word FILE.py or FILE::FUNC is a step, wherever it stands\n"
                                 "(`chain t.py::f -a 1 t.py::g`); pass such a word as a value with -a V,\n"
                                 "--NAME V or after --. Prints the last result (--json: as compact JSON);\n"
                                 "stops at the first failure with that step's exit code. Runs as a DAG run:\n"
                                 "`pysprinter dag logs ID stepN` shows a step's output. Run options:\n"
                                 "--timeout, --memory, --max-procs, --max-output, --network, --data,\n"
                                 "--secret, --env (every step), --output-data (the last step's\n"
                                 "output_dir(); with --data of the same name every step reads the version\n"
                                 "current at the start), --no-cache (run every step again), --sandbox,\n"
                                 "--json, -q,\n"
                                 "--idempotency-key KEY (with --server: the same KEY again within 24 h runs\n"
                                 "nothing and shows KEY's first chain; refused embedded).\n";

/* ---- the view ---------------------------------------------------------------- */

typedef struct View {
        bool cursor, color, quiet;
        bool header;        /* "dag ID (name)" printed */
        bool progress;      /* "validating…" on the line */
        size_t drawn;       /* lines of the tree on screen */
        json_t *seen;       /* task name -> the state last reported (line mode) */
        json_t *leaves;     /* the names of the tasks nothing depends on */
        /* Resuming: when the resume began (realtime µs). A task that
         * finished before it is kept from the run resumed: it did not run
         * now, so no "running" line is made up for it. */
        usec_t since;
} View;

static usec_t jusec(json_t *o, const char *k) {
        json_int_t v = json_integer_value(json_object_get(o, k));
        return v > 0 ? (usec_t) v : 0;
}

static json_t *task_of(json_t *dag, const char *name) {
        json_t *t;
        size_t i;
        json_array_foreach(json_object_get(dag, "tasks"), i, t) if (streq(json_get_string(t, "name") ?: "", name)) return t;
        return NULL;
}

static bool state_is(json_t *t, const char *s) {
        return streq(json_get_string(t, "state") ?: "pending", s);
}

static bool state_done(json_t *t) {
        return !state_is(t, "pending") && !state_is(t, "running");
}

static const char *state_mark(const char *s) {
        if (streq(s, "running"))
                return "▶";
        if (streq(s, "succeeded") || streq(s, "cached"))
                return "✓";
        if (streq(s, "failed"))
                return "✗";
        if (streq(s, "skipped"))
                return "-";
        if (streq(s, "cancelled"))
                return "!";
        return "·";
}

static const char *state_color(const char *s) {
        if (streq(s, "running"))
                return C_CYAN;
        if (streq(s, "succeeded") || streq(s, "cached"))
                return C_GREEN;
        if (streq(s, "failed") || streq(s, "cancelled"))
                return C_RED;
        return C_DIM;
}

/* A task's run time so far ("" for a memo hit or a task not started). */
static void task_duration(json_t *t, char buf[static 32]) {
        usec_t s = jusec(t, "started_us"), f = jusec(t, "finished_us");
        buf[0] = 0;
        if (!s || state_is(t, "cached"))
                return;
        if (!f)
                f = state_done(t) ? s : now_realtime();
        format_duration_us(f > s ? f - s : 0, buf);
}

/* A succeeded task's error is a note on its success: its result had no
 * JSON view and dependents got its repr (a chain's next step a string
 * "<m.A object at 0x…>"), or a dataset's warning. Said, as `run` warns of
 * a repr result: before, the view said only "succeeded". */
static bool shows_error(json_t *t) {
        return json_get_string(t, "error") && (state_is(t, "failed") || state_is(t, "skipped") ||
                                               state_is(t, "cancelled") || state_is(t, "succeeded"));
}

/* One line of the tree (no newline). */
static void tree_line(View *v, Dag *shape, size_t i, json_t *t, Buf *b) {
        DagTaskInfo ti;
        dag_task_info(shape, i, &ti);
        const char *st = json_get_string(t, "state") ?: "pending";
        char dur[32];
        task_duration(t, dur);
        buf_printf(b, "%*s%s%s %s%s", 2 * ti.depth, "", v->color ? state_color(st) : "", state_mark(st), ti.name,
                   v->color ? C_RESET : "");
        int pad = 24 - 2 * ti.depth - (int) strlen(ti.name);
        buf_printf(b, "%*s %-9s %8s", pad > 0 ? pad : 1, "", st, dur);
        json_int_t attempts = json_integer_value(json_object_get(t, "attempts"));
        if (attempts > 1)
                buf_printf(b, "  attempt %lld", (long long) attempts);
        if (ti.n_deps > 1) {
                buf_appends(b, v->color ? C_DIM "  after " : "  after ");
                for (size_t k = 0; k < ti.n_deps; k++) {
                        DagTaskInfo di;
                        dag_task_info(shape, ti.deps[k], &di);
                        buf_printf(b, "%s%s", k ? ", " : "", di.name);
                }
                if (v->color)
                        buf_appends(b, C_RESET);
        }
        if (shows_error(t))
                buf_printf(b, "  %.100s", json_get_string(t, "error"));
}

/* Tasks in tree order: by depth, then file order. */
static void redraw(View *v, Dag *shape, json_t *dag) {
        size_t n = dag_n_tasks(shape);
        Buf b;
        buf_init(&b, 1 << 20);
        if (v->drawn)
                buf_printf(&b, "\033[%zuA", v->drawn);
        size_t k = 0;
        for (int depth = 0; k < n; depth++)
                for (size_t i = 0; i < n; i++) {
                        DagTaskInfo ti;
                        dag_task_info(shape, i, &ti);
                        if (ti.depth != depth)
                                continue;
                        buf_appends(&b, "\r\033[K");
                        tree_line(v, shape, i, task_of(dag, ti.name), &b);
                        buf_appends(&b, "\n");
                        k++;
                }
        fputs(b.data ?: "", stderr);
        fflush(stderr);
        v->drawn = n;
        buf_free(&b);
}

/* One line per task state change: what a pipe (or TERM=dumb) gets. */
static void report_changes(View *v, json_t *dag) {
        json_t *t;
        size_t i;
        json_array_foreach(json_object_get(dag, "tasks"), i, t) {
                const char *name = json_get_string(t, "name"), *st = json_get_string(t, "state") ?: "pending";
                const char *prev = name ? json_get_string(v->seen, name) : NULL;
                if (!name || streq(st, "pending") || (prev && streq(prev, st)))
                        continue;
                /* A server is polled: a task that ran between two looks is
                 * seen done, never running. Its line comes first anyway, as
                 * the embedded path (which sees every change) prints it. A
                 * memo hit never ran: pending, then cached, on both paths
                 * (dag-run.c report()). */
                usec_t finished = jusec(t, "finished_us");
                bool kept = v->since && finished && finished < v->since;
                /* A task that failed before it ran (its arguments could
                 * not be made) has no run: it was never running. */
                bool ran = (streq(st, "succeeded") || streq(st, "failed")) && !kept && json_get_string(t, "run_id");
                if (ran && !(prev && streq(prev, "running")))
                        fprintf(stderr, "%s: running\n", name);
                json_object_set_new(v->seen, name, json_string(st));
                char dur[32] = "";
                if (state_done(t))
                        task_duration(t, dur);
                fprintf(stderr, "%s: %s%s%s%s%s\n", name, st, *dur ? " " : "", dur, shows_error(t) ? ": " : "",
                        shows_error(t) ? json_get_string(t, "error") : "");
        }
        fflush(stderr);
}

/* The names of the tasks nothing depends on: whose results a run prints. */
static json_t *leaf_names(Dag *shape) {
        json_t *names = json_array();
        for (size_t i = 0; i < dag_n_tasks(shape); i++) {
                DagTaskInfo ti;
                dag_task_info(shape, i, &ti);
                if (ti.n_dependents == 0)
                        json_array_append_new(names, json_string(ti.name));
        }
        return names;
}

static void on_view(Dag *shape, json_t *dag, void *userdata) {
        View *v = userdata;
        /* Kept for the results: a resumed run's shape is the backend's,
         * loaded from the store and gone when it returns. */
        if (!v->leaves && shape)
                v->leaves = leaf_names(shape);
        if (v->quiet)
                return;
        if (!dag) {
                if (v->cursor) {
                        fprintf(stderr, "validating %zu task%s…\r", dag_n_tasks(shape), dag_n_tasks(shape) == 1 ? "" : "s");
                        fflush(stderr);
                        v->progress = true;
                }
                return;
        }
        if (!json_get_string(dag, "id"))
                return;
        if (!v->header) {
                v->header = true;
                char name[256];
                dag_name_shown(json_get_string(dag, "name") ?: dag_name(shape), name);
                fprintf(stderr, "%sdag %s (%s)\n", v->progress ? "\r\033[K" : "", json_get_string(dag, "id"), name);
                v->progress = false;
        }
        if (v->cursor)
                redraw(v, shape, dag);
        else
                report_changes(v, dag);
}

/* The tree is redrawn in place only where the cursor can move: a pipe
 * and TERM=dumb get the line-per-change view. */
static void view_init(View *v) {
        *v = (View){ .cursor = cli_stderr_can_redraw(), .quiet = cli_globals.quiet, .seen = json_object() };
        v->color = v->cursor && !cli_no_color();
}

static void view_done(View *v) {
        if (v->progress)
                fputs("\r\033[K", stderr);
        json_decref(v->seen);
        json_decref(v->leaves);
}

/* ---- outcome ------------------------------------------------------------------ */

int cli_dag_exit_code(json_t *dag) {
        const char *status = json_get_string(dag, "status") ?: "";
        if (streq(status, "invalid"))
                return EXIT_VALIDATION;
        if (streq(status, "deps_failed"))
                return EXIT_DEPENDENCY;
        json_t *t, *first = NULL;
        size_t i;
        bool cancelled = streq(status, "cancelled"), unfinished = false;
        json_array_foreach(json_object_get(dag, "tasks"), i, t) {
                cancelled = cancelled || state_is(t, "cancelled");
                if (state_is(t, "failed") && (!first || jusec(t, "finished_us") < jusec(first, "finished_us")))
                        first = t;
                unfinished = unfinished || (!state_is(t, "succeeded") && !state_is(t, "cached"));
        }
        if (cancelled)
                return EXIT_INTERRUPTED;
        if (first) {
                json_int_t c = json_integer_value(json_object_get(first, "exit_code"));
                return c > 0 ? (int) c : EXIT_RAISED;
        }
        return unfinished ? EXIT_RAISED : 0;
}

static void print_summary(json_t *dag, int code, usec_t t0, bool color) {
        static const char *const order[] = { "succeeded", "cached", "failed", "skipped", "cancelled" };
        json_t *counts = json_object_get(dag, "counts"), *t;
        size_t n = json_array_size(json_object_get(dag, "tasks")), i;
        const char *id = json_get_string(dag, "id") ?: "-";
        char dur[32];
        format_duration_us(now_realtime() - t0, dur);
        if (!cli_globals.quiet) {
                Buf b;
                buf_init(&b, 4096);
                for (size_t k = 0; k < ELEMENTSOF(order); k++) {
                        json_int_t c = json_integer_value(json_object_get(counts, order[k]));
                        if (c)
                                buf_printf(&b, ", %lld %s", (long long) c, order[k]);
                }
                fprintf(stderr, "%s%s%s: %zu task%s%s in %s (dag %s)\n", color ? (code ? C_RED : C_GREEN) : "",
                        json_get_string(dag, "status") ?: "?", color ? C_RESET : "", n, n == 1 ? "" : "s", b.data ?: "", dur, id);
                buf_free(&b);
        }
        /* The failures in full, and where to look next: errors, so -q too.
         * A task that failed before it ran (its arguments could not be
         * made) has no run, so no output for `dag logs` to show. */
        json_array_foreach(json_object_get(dag, "tasks"), i, t) {
                if (!state_is(t, "failed"))
                        continue;
                const char *name = json_get_string(t, "name") ?: "?";
                fprintf(stderr, "  %s failed (exit %lld): %s\n", name,
                        (long long) json_integer_value(json_object_get(t, "exit_code")),
                        json_get_string(t, "error") ?: "?");
                if (json_get_string(t, "run_id"))
                        fprintf(stderr, "    output: pysprinter dag logs %s %s\n", id, name);
        }
}

/* --json: {id, name, status, exit_code, tasks: {NAME: task}}, each task the
 * API's task object without its name, with its file and dependencies when
 * the pipeline was parsed here (shape). */
static void print_dag_json(json_t *dag, Dag *shape) {
        json_t *tasks = json_object(), *t;
        size_t i;
        json_array_foreach(json_object_get(dag, "tasks"), i, t) {
                const char *name = json_get_string(t, "name");
                if (!name)
                        continue;
                /* Shallow: the task's result is shared, not copied. */
                json_t *o = json_copy(t);
                json_object_del(o, "name");
                for (size_t k = 0; shape && k < dag_n_tasks(shape); k++) {
                        DagTaskInfo ti;
                        dag_task_info(shape, k, &ti);
                        if (!streq(ti.name, name))
                                continue;
                        json_t *deps = json_array();
                        for (size_t j = 0; j < ti.n_deps; j++) {
                                DagTaskInfo di;
                                dag_task_info(shape, ti.deps[j], &di);
                                json_array_append_new(deps, json_string(di.name));
                        }
                        json_object_set_new(o, "file", json_string(ti.file));
                        json_object_set_new(o, "depends", deps);
                }
                json_object_set_new(tasks, name, o);
        }
        json_t *o = json_object();
        json_object_set(o, "id", json_object_get(dag, "id") ?: json_null());
        json_object_set(o, "name", json_object_get(dag, "name") ?: json_null());
        json_object_set(o, "status", json_object_get(dag, "status") ?: json_null());
        json_object_set_new(o, "exit_code", json_integer(cli_dag_exit_code(dag)));
        json_object_set_new(o, "tasks", tasks);
        render_json(o);
        json_decref(o);
}

/* The leaves' results: one leaf prints like `run` (compact JSON with
 * json), several as an object. */
static void print_leaf_results(json_t *dag, json_t *names, bool json) {
        json_t *leaves = json_object(), *only = NULL, *n;
        size_t i;
        json_array_foreach(names, i, n) {
                json_t *r = json_object_get(task_of(dag, json_string_value(n)), "result") ?: json_null();
                json_object_set(leaves, json_string_value(n), r);
                only = r;
        }
        render_value(json_object_size(leaves) == 1 ? only : leaves, json, isatty(STDOUT_FILENO));
        json_decref(leaves);
}

/* ---- dag run / resume / chain --------------------------------------------------- */

typedef struct DagArgs {
        char *file;
        char *resume;
        char **params;
        unsigned concurrency;
        bool no_cache, keep_going, json, detach;
        char *idempotency_key; /* --idempotency-key KEY (with --server only: key_needs_server()) */
        SandboxMode sandbox;
        RunArgs ra;   /* index settings only */
} DagArgs;

static void dag_args_done(DagArgs *a) {
        free(a->file);
        free(a->resume);
        free(a->idempotency_key);
        strv_free(a->params);
        free(a->ra.index_url);
        strv_free(a->ra.find_links);
}

static int parse_dag_args(int argc, char **argv, bool resume, DagArgs *a) {
        *a = (DagArgs) { .json = cli_globals.json };
        for (int i = 0; i < argc; i++) {
                const char *w = argv[i];
                const char *eq = startswith(w, "--") ? strchr(w, '=') : NULL;
                _cleanup_free_ char *opt = eq ? xstrndup(w, (size_t) (eq - w)) : xstrdup(w);
                bool needs = streq(opt, "--param") || streq(opt, "-p") || streq(opt, "--concurrency") ||
                             streq(opt, "-j") || streq(opt, "--sandbox") || streq(opt, "--index-url") ||
                             streq(opt, "--find-links") || (!resume && streq(opt, "--idempotency-key"));
                const char *val = eq ? eq + 1 : needs && i + 1 < argc ? argv[++i] : NULL;
                if (needs && !val) {
                        cli_error("%s needs a value", opt);
                        return -EINVAL;
                }
                if (streq(opt, "--param") || streq(opt, "-p")) {
                        /* A usage mistake (exit 2) on every path, not the
                         * pipeline's (exit 3) found after it was read. */
                        if (val[0] == '=' || !strchr(val, '=')) {
                                cli_error("%s needs NAME=VALUE, got '%s'", opt, val);
                                return -EINVAL;
                        }
                        a->params = strv_append(a->params, val);
                } else if (streq(opt, "--concurrency") || streq(opt, "-j")) {
                        char *end;
                        long c = strtol(val, &end, 10);
                        if (*end || c < 1 || c > DAG_MAX_CONCURRENCY) {
                                cli_error("--concurrency needs a number from 1 to %d", DAG_MAX_CONCURRENCY);
                                return -EINVAL;
                        }
                        a->concurrency = (unsigned) c;
                } else if (streq(opt, "--no-cache"))
                        a->no_cache = true;
                else if (streq(opt, "--keep-going") || streq(opt, "-k"))
                        a->keep_going = true;
                else if (streq(opt, "--json"))
                        a->json = true;
                else if (streq(opt, "--detach"))
                        a->detach = true;
                else if (!resume && streq(opt, "--idempotency-key")) {
                        /* run's rule and words (cli-args.c); the key is not echoed. */
                        if (!idempotency_key_is_valid(val)) {
                                cli_error("--idempotency-key takes " IDEMPOTENCY_KEY_RULE);
                                return -EINVAL;
                        }
                        free(a->idempotency_key);
                        a->idempotency_key = xstrdup(val);
                } else if (streq(opt, "--sandbox")) {
                        _cleanup_free_ char *why = NULL;
                        if (cli_sandbox_mode_parse(val, &a->sandbox, &why) < 0) {
                                cli_error("%s", why);
                                return -EINVAL;
                        }
                } else if (streq(opt, "--index-url")) {
                        _cleanup_free_ char *why = NULL;
                        if (pkg_index_url_check(val, &why) < 0) {
                                cli_error("--index-url: %s", why);
                                return -EINVAL;
                        }
                        free(a->ra.index_url);
                        a->ra.index_url = xstrdup(val);
                } else if (streq(opt, "--find-links"))
                        a->ra.find_links = strv_append(a->ra.find_links, val);
                else if (w[0] == '-' && w[1]) {
                        cli_error("dag: unknown option '%s'", w);
                        return -EINVAL;
                } else if (!resume && !a->file)
                        a->file = xstrdup(w);
                else if (resume && !a->resume)
                        a->resume = xstrdup(w);
                else {
                        cli_error("dag: unexpected argument '%s'", w);
                        return -EINVAL;
                }
        }
        if (!resume && !a->file)
                cli_error("dag run needs a pipeline file");
        else if (resume && !a->resume)
                cli_error("dag resume needs a DAG run id");
        else
                return 0;
        return -EINVAL;
}

/* A chain's pipeline is built in memory (chain_pipeline()): a message about
 * it names no file the user wrote. "chain.yaml:1:83: task 'step2': …", as
 * the parser and the validation (here or a server's) put it, is "chain:
 * task 'step2': …". A later step's missing argument cannot be given with
 * -a or --NAME (they are the first step's): its hint says what can be
 * done. Caller frees. */
static char *chain_message(const char *msg) {
        static const char prefix[] = "chain.yaml:", digits[] = "0123456789";
        if (!startswith(msg, prefix) || !strchr(digits, msg[strlen(prefix)]) || !msg[strlen(prefix)])
                return xstrdup(msg);
        const char *p = msg + strlen(prefix);
        p += strspn(p, digits);
        if (p[0] == ':' && p[1] && strchr(digits, p[1]))
                p += 1 + strspn(p + 1, digits);
        if (!startswith(p, ": "))
                return xstrdup(msg);
        p += 2;
        long n = startswith(p, "task 'step") ? strtol(p + strlen("task 'step"), NULL, 10) : 0;
        if (n > 1 && endswith(p, RUN_ARGUMENT_HINT))
                return xasprintf("chain: %.*s (a chain gives step%ld one argument, step%ld's result: give its other "
                                 "parameters defaults)",
                                 (int) (strlen(p) - strlen(RUN_ARGUMENT_HINT)), p, n, n - 1);
        return xasprintf("chain: %s", p);
}

/* A DAG run's --idempotency-key goes to a server as POST /v1/dags's
 * Idempotency-Key header, which the server keeps per tenant for 24 h.
 * Embedded DAG runs keep no keys: taken and ignored, a retried command
 * would run the pipeline twice; refused (exit 2) before anything runs.
 * Returns 0, or EXIT_USAGE once said why. */
static int key_needs_server(const char *verb, const char *key) {
        if (!key)
                return 0;
        _cleanup_free_ char *server = cli_server();
        if (server)
                return 0;
        cli_error("%s: --idempotency-key needs --server URL: embedded DAG runs keep no keys (docs/cli.md "
                  "\"--idempotency-key\")",
                  verb);
        return EXIT_USAGE;
}

/* Runs q on b, draws it, prints its outcome; returns the exit code. json:
 * the DAG run as JSON, or with results_only (chain) its result as JSON. */
static int run_dag(Backend *b, DagRequest *q, bool json, bool results_only) {
        View v;
        view_init(&v);
        usec_t t0 = now_realtime();
        json_t *dag = NULL;
        /* (cli_interrupted is not reset: a detached child keeps a signal
         * its parent forwarded before this, cli-detach.c.) */
        cli_interrupt_handled = false;
        cli_catch_interrupt();
        if (q->resume_id)
                v.since = t0;
        int r = b->ops->dag_run(b, q, on_view, &v, &dag);
        if (r < 0) {
                view_done(&v);
                if (results_only && b->error) {
                        _cleanup_free_ char *m = chain_message(b->error);
                        backend_set_error(b, "%s", m);
                }
                return backend_fail(b, r);
        }
        if (q->detach && (b->remote || !cli_interrupted)) {
                /* Embedded, this is the detached child at the end: its
                 * parent printed the DAG run when it was recorded (unless
                 * interrupted first: it ends as `dag run` does). */
                view_done(&v);
                if (b->remote)
                        cli_print_detached(dag, json, true, false);
                json_decref(dag);
                return 0;
        }
        int code = cli_dag_exit_code(dag);
        print_summary(dag, code, t0, v.color);
        if (json && !results_only)
                print_dag_json(dag, q->dag);
        else if (code == 0 && v.leaves)
                print_leaf_results(dag, v.leaves, json);
        view_done(&v);
        json_decref(dag);
        return code;
}

static int dag_run_verb(int argc, char **argv, bool resume) {
        DagArgs a;
        if (parse_dag_args(argc, argv, resume, &a) < 0) {
                dag_args_done(&a);
                return EXIT_USAGE;
        }
        _cleanup_free_ char *text = NULL, *err = NULL, *base = NULL, *server = NULL;
        size_t len = 0;
        Dag *d = NULL;
        Backend *b = NULL;
        int code = key_needs_server("dag run", a.idempotency_key);
        if (code)
                goto out;
        if (!resume) {
                int r = read_file(a.file, DAG_MAX_FILE_BYTES, &text, &len);
                if (r < 0) {
                        cli_error("cannot read %s: %s", a.file,
                                  r == -EFBIG ? "larger than the 1 MiB pipeline limit" : strerror(-r));
                        code = r == -EFBIG ? EXIT_VALIDATION : EXIT_USAGE;
                        goto out;
                }
                const char *slash = strrchr(a.file, '/');
                base = slash ? xstrndup(a.file, (size_t) (slash - a.file) + 1) : xstrdup(".");
                r = dag_parse(text, len, a.file, base, a.params, &d, &err);
                if (r >= 0)
                        r = dag_check_params(d, a.params, &err);
                if (r < 0) {
                        cli_error("%s", err ?: strerror(-r));
                        code = r == -ENOENT ? EXIT_USAGE : EXIT_VALIDATION;
                        goto out;
                }
        }
        server = a.detach ? cli_server() : NULL;
        if (a.detach && !server) {
                /* The parent's part ends here; the child goes on. */
                code = cli_detach_fork(a.json, true);
                if (code >= 0)
                        goto out;
        }
        a.ra.worker_now = true;
        a.ra.sandbox = a.sandbox;
        code = backend_open(&a.ra, &b);
        if (code)
                goto out;
        backend_note_options(b, &a.ra, a.sandbox, "these tasks run");
        DagRequest q = { .dag = d,
                         .text = text,
                         .len = len,
                         .filename = a.file,
                         .base_dir = base,
                         .params = a.params,
                         .concurrency = a.concurrency,
                         .keep_going = a.keep_going,
                         .no_cache = a.no_cache,
                         .sandbox = a.sandbox,
                         .resume_id = a.resume,
                         .idempotency_key = a.idempotency_key,
                         .detach = a.detach };
        code = run_dag(b, &q, a.json, false);
out:
        backend_free(b);
        dag_free(d);
        dag_args_done(&a);
        return code;
}

/* ---- dag status / logs / ls / cancel ---------------------------------------------- */

static int dag_status_verb(Backend *b, int argc, char **argv, bool json) {
        if (argc != 1) {
                cli_error("usage: dag status ID [--json]");
                return EXIT_USAGE;
        }
        json_t *dag = NULL;
        int r = b->ops->dag_get(b, argv[0], &dag);
        if (r < 0)
                return backend_fail(b, r);
        const char *status = json_get_string(dag, "status") ?: "?";
        if (json)
                print_dag_json(dag, NULL);
        else {
                char name[256];
                dag_name_shown(json_get_string(dag, "name"), name);
                printf("dag %s (%s): %s\n", json_get_string(dag, "id") ?: argv[0], name, status);
                if (json_get_string(dag, "error"))
                        printf("error: %s\n", json_get_string(dag, "error"));
                printf("%-24s %-10s %9s %8s  %s\n", "TASK", "STATE", "DURATION", "ATTEMPTS", "RUN");
                json_t *t;
                size_t i;
                json_array_foreach(json_object_get(dag, "tasks"), i, t) {
                        char dur[32];
                        task_duration(t, dur);
                        printf("%-24s %-10s %9s %8lld  %s", json_get_string(t, "name") ?: "?", json_get_string(t, "state") ?: "pending",
                               *dur ? dur : "-", (long long) json_integer_value(json_object_get(t, "attempts")),
                               json_get_string(t, "run_id") ?: "-");
                        if (json_get_string(t, "error") && !state_is(t, "succeeded"))
                                printf("  %s", json_get_string(t, "error"));
                        putchar('\n');
                }
        }
        /* An ended run's code is `dag run`'s for it (a cancelled one 130,
         * a failed one its first failed task's); one still going is 0. */
        bool ended = streq(status, "succeeded") || streq(status, "failed") || streq(status, "cancelled") ||
                     streq(status, "invalid") || streq(status, "deps_failed");
        int code = ended ? cli_dag_exit_code(dag) : 0;
        json_decref(dag);
        return code;
}

/* The output of a task's last run, and a failed task's traceback. */
static int dag_logs_verb(Backend *b, int argc, char **argv) {
        if (argc != 2) {
                cli_error("usage: dag logs ID TASK");
                return EXIT_USAGE;
        }
        json_t *dag = NULL;
        int r = b->ops->dag_get(b, argv[0], &dag);
        if (r < 0)
                return backend_fail(b, r);
        int code = EXIT_USAGE;
        json_t *t = task_of(dag, argv[1]);
        const char *run_id = json_get_string(t, "run_id");
        if (!t)
                cli_error("DAG run %s has no task '%s'", json_get_string(dag, "id") ?: argv[0], argv[1]);
        else if (!run_id)
                cli_error("task '%s' has not run (%s)", argv[1], json_get_string(t, "state") ?: "pending");
        else {
                if (json_is_true(json_object_get(t, "cached")) && !cli_globals.quiet)
                        cli_warning("%s was a memo hit; this is the output of run %s", argv[1], run_id);
                r = cli_run_log_print(b, run_id, false);
                code = r < 0 ? backend_fail(b, r) : 0;
        }
        json_decref(dag);
        return code;
}

static int dag_ls_verb(Backend *b, long limit, char *const *statuses, bool json) {
        json_t *list = NULL, *g;
        int r = b->ops->dag_list(b, limit, statuses, &list);
        if (r < 0)
                return backend_fail(b, r);
        bool table = !json && !render_list_keys(list, "id");
        if (json)
                render_json(list);
        else if (table && json_array_size(list))
                printf("%-18s %-10s %-19s %9s  %s\n", "ID", "STATUS", "CREATED", "DURATION", "NAME");
        size_t i;
        if (table)
                json_array_foreach(list, i, g) {
                        char created[32], dur[32] = "-", name[256];
                        format_local_time(json_get_string(g, "created_at"), created);
                        dag_name_shown(json_get_string(g, "name"), name);
                        json_t *ms = json_object_get(g, "duration_ms");
                        if (json_is_number(ms))
                                format_duration_us((usec_t) (json_number_value(ms) * 1000.0), dur);
                        printf("%-18s %-10s %-19s %9s  %s\n", json_get_string(g, "id") ?: "?",
                               json_get_string(g, "status") ?: "?", created, dur, name);
                }
        json_decref(list);
        return 0;
}

static int dag_cancel_verb(Backend *b, int argc, char **argv, bool json) {
        if (argc != 1) {
                cli_error("usage: dag cancel ID");
                return EXIT_USAGE;
        }
        json_t *dag = NULL;
        int r = b->ops->dag_cancel(b, argv[0], &dag);
        if (r < 0)
                return backend_fail(b, r);
        if (json)
                print_dag_json(dag, NULL);
        else
                printf("dag %s: %s\n", json_get_string(dag, "id") ?: argv[0], json_get_string(dag, "status") ?: "?");
        json_decref(dag);
        return 0;
}

int verb_dag(int argc, char **argv) {
        int code = cli_subverb_help(argc, argv, dag_help);
        if (code >= 0)
                return code;
        const char *sub = argv[0];
        if (streq(sub, "run") || streq(sub, "resume"))
                return dag_run_verb(argc - 1, argv + 1, streq(sub, "resume"));
        bool is_ls = streq(sub, "ls") || streq(sub, "list");
        if (!is_ls && !streq(sub, "status") && !streq(sub, "get") && !streq(sub, "show") && !streq(sub, "logs") && !streq(sub, "cancel")) {
                cli_error("dag: unknown command '%s' (run, resume, status, logs, ls, cancel)", sub);
                return EXIT_USAGE;
        }
        bool json = cli_globals.json;
        long limit = 20;
        int n = 0;
        _cleanup_strv_free_ char **statuses = NULL;
        if (is_ls) {
                int rest = argc - 1;
                int k = cli_take_status(&rest, argv + 1, "dag ls", "dag", dag_status_table(), DAG_STATUS_NAMES,
                                        &statuses);
                if (k)
                        return k;
                k = cli_parse_list_args(rest, argv + 1, "dag ls", 10000, &json, &limit);
                if (k)
                        return k;
                json = json || cli_globals.json;
        } else
                for (int i = 1; i < argc; i++) {
                        if (streq(argv[i], "--json") && !streq(sub, "logs"))
                                json = true;
                        else if (n == 0 && argv[i][0] == '-' && argv[i][1]) {
                                /* No DAG run's id starts with '-': a typo of
                                 * an option, not "no DAG run '--jsn'". */
                                cli_error("dag %s: unknown option '%s' (usage: %s)", sub, argv[i],
                                          streq(sub, "logs") ? "dag logs ID TASK" : "dag status|cancel ID [--json]");
                                return EXIT_USAGE;
                        } else
                                argv[1 + n++] = argv[i];
                }
        /* An empty ID (an unset shell variable) names no DAG run on either
         * path: a daemon would read GET /v1/dags/ as its list and print it
         * as an empty DAG run with exit 0. */
        if (!is_ls && n >= 1 && !*argv[1]) {
                cli_error("no DAG run '' (see `pysprinter dag ls`)");
                return EXIT_USAGE;
        }
        Backend *b = NULL;
        code = backend_open_listing(true, &b);
        if (code)
                return code;
        if (is_ls)
                code = dag_ls_verb(b, limit, statuses, json);
        else if (streq(sub, "logs"))
                code = dag_logs_verb(b, n, argv + 1);
        else if (streq(sub, "cancel"))
                code = dag_cancel_verb(b, n, argv + 1, json);
        else
                code = dag_status_verb(b, n, argv + 1, json);
        backend_free(b);
        return code;
}

/* ---- chain: a linear DAG built in memory ------------------------------------------ */

/* A run-grammar argument ({"raw": s} or {"value": v}) as a pipeline value:
 * a string is converted by the parameter's annotation there too, so a raw
 * value stays a string ("${" spelled "$${" so it is not a reference). A
 * flag given without a value ({"bare": true}) is no kwargs value: the
 * caller puts it in raw_kwargs. */
static json_t *pipeline_value(json_t *arg) {
        json_t *raw = json_object_get(arg, "raw");
        if (!json_is_string(raw))
                return json_incref(json_object_get(arg, "value") ?: json_null());
        Buf b;
        buf_init(&b, RUN_MAX_SOURCE_BYTES);
        for (const char *p = json_string_value(raw); *p; p++)
                buf_appends(&b, startswith(p, "${") ? "$$" : (char[]) { *p, 0 });
        json_t *s = json_string(b.data ?: "");
        buf_free(&b);
        return s ?: json_string("");
}

static json_t *chain_limits(const RunLimits *l) {
        json_t *o = json_object();
        char v[64];
        if (l->timeout_ms) {
                snprintf(v, sizeof(v), "%llums", (unsigned long long) l->timeout_ms);
                json_object_set_new(o, "timeout", json_string(v));
        }
        if (l->memory_bytes) {
                snprintf(v, sizeof(v), "%lluB", (unsigned long long) l->memory_bytes);
                json_object_set_new(o, "memory", json_string(v));
        }
        if (l->max_output_bytes) {
                snprintf(v, sizeof(v), "%lluB", (unsigned long long) l->max_output_bytes);
                json_object_set_new(o, "max_output", json_string(v));
        }
        if (l->max_procs) {
                snprintf(v, sizeof(v), "%llu", (unsigned long long) l->max_procs);
                json_object_set_new(o, "max_procs", json_string(v));
        }
        if (l->network || l->network_off)
                json_object_set_new(o, "network", json_string(l->network ? "true" : "false"));
        return o;
}

/* The pipeline of `chain F1 F2 …` as JSON text (JSON is YAML's flow
 * style, which dag_parse() reads). */
static char *chain_pipeline(char **files, int n_files, const RunArgs *a) {
        json_t *tasks = json_object(), *v;
        for (int i = 0; i < n_files; i++) {
                const char *sep = strstr(files[i], "::");
                _cleanup_free_ char *file = sep ? xstrndup(files[i], (size_t) (sep - files[i])) : xstrdup(files[i]);
                _cleanup_free_ char *name = xasprintf("step%d", i + 1), *prev = xasprintf("${step%d}", i);
                json_t *t = json_pack("{s:s}", "file", file), *args = json_array();
                if (!t) {
                        json_decref(args);
                        json_decref(tasks);
                        return NULL;
                }
                if (sep && sep[2])
                        json_object_set_new(t, "function", json_string(sep + 2));
                if (i > 0)
                        json_array_append_new(args, json_string(prev));
                else {
                        json_t *given = a->args_json ? json_loads(a->args_json, JSON_ALLOW_NUL, NULL) : NULL,
                               *kw = json_object();
                        json_t *kwgiven = a->kwargs_json ? json_loads(a->kwargs_json, JSON_ALLOW_NUL, NULL) : NULL;
                        json_t *bare = json_object();
                        size_t k;
                        const char *key;
                        json_array_foreach(given, k, v) json_array_append_new(args, pipeline_value(v));
                        /* `--flag`, `--no-flag`: true in raw_kwargs, as the
                         * API has it (cli_args_to_api()), in the order given:
                         * the worker lets the later of the two win. */
                        json_object_foreach(kwgiven, key, v)
                                json_object_set_new(json_is_true(json_object_get(v, "bare")) ? bare : kw, key,
                                                    json_is_true(json_object_get(v, "bare")) ? json_true()
                                                                                             : pipeline_value(v));
                        json_object_set_new(t, "kwargs", kw);
                        if (json_object_size(bare))
                                json_object_set(t, "raw_kwargs", bare);
                        json_decref(bare);
                        json_decref(given);
                        json_decref(kwgiven);
                }
                json_object_set_new(t, "args", args);
                json_t *limits = chain_limits(&a->limits);
                if (json_object_size(limits))
                        json_object_set(t, "limits", limits);
                json_decref(limits);
                if (a->data)
                        json_object_set_new(t, "data", json_strv_new(a->data));
                /* run's --secret and --env apply to every step, as --data
                 * does; --output-data to the last (the chain's result). */
                if (a->secrets)
                        json_object_set_new(t, "secrets", json_strv_new(a->secrets));
                if (a->env) {
                        json_t *env = json_object();
                        for (char **e = a->env; *e; e++) {
                                const char *eq = strchr(*e, '=');
                                _cleanup_free_ char *k = eq ? xstrndup(*e, (size_t) (eq - *e)) : xstrdup(*e);
                                json_object_set_new(env, k, json_string(eq ? eq + 1 : ""));
                        }
                        json_object_set_new(t, "env", env);
                }
                if (a->output_data && i == n_files - 1)
                        json_object_set_new(t, "outputs", json_string(a->output_data));
                json_object_set_new(tasks, name, t);
        }
        json_t *p = json_pack("{s:s, s:o}", "name", "chain", "tasks", tasks);
        char *text = p ? json_dumps(p, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(p);
        return text;
}

/* The directory a chain's steps are read from. A chain has no pipeline
 * file whose directory holds its tasks: the user names each step where it
 * is (`chain ../lib/a.py /srv/b.py`), and `run` reads such a file on both
 * paths. When a step is not inside the working directory (dag_file_check(),
 * the rule a pipeline sent to a server is held to, which refused such a
 * chain with --server only), every step is named relative to the deepest
 * directory holding them all, read through symlinks, embedded and with
 * --server alike. Rewrites steps in place; returns the directory (caller
 * frees), "." with the steps as written when all are inside or one cannot
 * be resolved (dag_parse() then says why). */
static char *chain_base_dir(char **steps) {
        bool inside = true;
        for (char **s = steps; s && *s && inside; s++) {
                const char *sep = strstr(*s, "::");
                _cleanup_free_ char *file = sep ? xstrndup(*s, (size_t) (sep - *s)) : xstrdup(*s), *why = NULL;
                inside = dag_file_check(".", file, &why) >= 0;
        }
        if (inside)
                return xstrdup(".");
        _cleanup_strv_free_ char **real = NULL;
        for (char **s = steps; *s; s++) {
                const char *sep = strstr(*s, "::");
                _cleanup_free_ char *file = sep ? xstrndup(*s, (size_t) (sep - *s)) : xstrdup(*s);
                char *r = realpath(file, NULL);
                if (!r)
                        return xstrdup(".");
                real = strv_append_take(real, r);
        }
        /* The deepest directory holding them all ("/" is length 0). */
        size_t common = (size_t) (strrchr(real[0], '/') - real[0]);
        for (char **r = real; *r; r++)
                while (common > 0 && !(strneq(*r, real[0], common) && (*r)[common] == '/')) {
                        const char *up = memrchr(real[0], '/', common);
                        common = up ? (size_t) (up - real[0]) : 0;
                }
        for (size_t i = 0; steps[i]; i++) {
                const char *sep = strstr(steps[i], "::");
                char *named = xasprintf("%s%s", real[i] + common + 1, sep ?: "");
                free(steps[i]);
                steps[i] = named;
        }
        return common ? xstrndup(real[0], common) : xstrdup("/");
}

/* The index in a->data of the dataset --output-data names, read at its
 * current version (no @VERSION); -1 when there is none. */
static ssize_t chain_reads_its_output(const RunArgs *a) {
        for (size_t k = 0; a->output_data && a->data && a->data[k]; k++) {
                _cleanup_free_ char *name = NULL;
                int version = 0;
                if (data_parse_ref(a->data[k], &name, &version) >= 0 && version == 0 && streq(name, a->output_data))
                        return (ssize_t) k;
        }
        return -1;
}

/* `chain … --data X --output-data X`, as `run f.py --data X --output-data
 * X`: every step reads X as it is now and the last stores X's next
 * version. In a pipeline, a task's `data: X` where a task outputs X is the
 * version that task produced (docs/dag.md "Outputs between tasks"): the
 * last step would read its own output and the steps before it would wait
 * for it (refused, exit 3). So the steps read X at its current version,
 * named: a->data[k] becomes X@VERSION. Returns 0, else the exit code once
 * said why. */
static int chain_pin_output(Backend *b, RunArgs *a, size_t k) {
        json_t *info = NULL;
        int r = b->ops->data_info(b, a->output_data, &info);
        if (r == -ENOENT) {
                /* run's words (data_use()) for a --data it cannot find. */
                cli_error("no dataset named '%s' (add it with: pysprinter data put %s PATH|URL)", a->output_data,
                          a->output_data);
                return EXIT_VALIDATION;
        }
        if (r < 0)
                return backend_fail(b, r);
        json_int_t version = json_integer_value(json_object_get(info, "current_version"));
        json_decref(info);
        if (version > 0) {
                free(a->data[k]);
                a->data[k] = xasprintf("%s@%lld", a->output_data, (long long) version);
        }
        return 0;
}

/* The arguments on a chain's line are its first step's (`chain a.py
 * --n 3 b.py`): a runner option there that has the name of one of that
 * function's parameters (`--timeout 7`) is said as run says it. Its
 * source is read again, quietly: dag_parse() read it and said what it
 * could not read; stdin ("-") is no file to read twice. */
static void chain_warn_shadowed(Backend *b, const RunArgs *a) {
        _cleanup_free_ char *source = NULL;
        size_t len = 0;
        if ((!a->shadowing && !cli_globals.shadowing) || streq(a->file, "-") ||
            read_file(a->file, RUN_MAX_SOURCE_BYTES, &source, &len) < 0)
                return;
        RunRequest q = { .a = a, .source = source, .source_len = len, .filename = a->file };
        cli_warn_shadowed(b, &q);
}

int verb_chain(int argc, char **argv) {
        for (int i = 0; i < argc; i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(chain_help, stdout);
                        return 0;
                }
        if (argc < 1) {
                fputs(chain_help, stderr);
                return EXIT_USAGE;
        }
        /* The steps, the options and the first step's arguments: run's
         * grammar, where a word naming a step starts the next one. */
        RunArgs a;
        _cleanup_free_ char *err = NULL, *text = NULL, *base = NULL;
        if (cli_parse_chain_args(argc, argv, &a, &err) < 0) {
                cli_error("%s", err);
                fprintf(stderr, "Try 'pysprinter chain --help'.\n");
                return EXIT_USAGE;
        }
        Dag *d = NULL;
        Backend *b = NULL;
        int code = 0;
        if (a.output_file || a.detach) {
                /* A chain prints its last result; its steps' output is
                 * `dag logs ID stepN`, not a stream to send to a file. */
                cli_error(a.detach ? "chain: --detach is run's and invoke's: a chain prints its last result"
                                   : "chain: --output-file is run's option (see `pysprinter dag logs ID stepN`)");
                run_args_done(&a);
                return EXIT_USAGE;
        }
        code = key_needs_server("chain", a.idempotency_key);
        if (code) {
                run_args_done(&a);
                return code;
        }
        ssize_t k = chain_reads_its_output(&a);
        if (k >= 0) {
                a.worker_now = true;
                code = backend_open(&a, &b);
                if (!code)
                        code = chain_pin_output(b, &a, (size_t) k);
                if (code)
                        goto out;
        }
        base = chain_base_dir(a.steps);
        text = chain_pipeline(a.steps, (int) strv_length(a.steps), &a);
        if (!text) {
                cli_error("chain: a file name or argument is not valid UTF-8");
                code = EXIT_USAGE;
                goto out;
        }
        int r = dag_parse(text, strlen(text), "chain.yaml", base, NULL, &d, &err);
        if (r < 0) {
                _cleanup_free_ char *m = chain_message(err ?: strerror(-r));
                cli_error("%s", m);
                code = r == -ENOENT ? EXIT_USAGE : EXIT_VALIDATION;
                goto out;
        }
        a.worker_now = true;
        code = b ? 0 : backend_open(&a, &b);
        if (code)
                goto out;
        backend_note_options(b, &a, a.sandbox, "these tasks run");
        chain_warn_shadowed(b, &a);
        DagRequest q = { .dag = d,
                         .text = text,
                         .len = strlen(text),
                         .filename = "chain.yaml",
                         .base_dir = base,
                         .sandbox = a.sandbox,
                         .idempotency_key = a.idempotency_key,
                         .no_cache = a.no_cache };
        code = run_dag(b, &q, a.json_output || cli_globals.json, true);
out:
        backend_free(b);
        dag_free(d);
        run_args_done(&a);
        return code;
}
