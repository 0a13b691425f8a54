/* `dag run|resume|status|logs|ls` and `chain` on the embedded engine.
 *
 * On a TTY the task tree is redrawn in place on stderr (state and duration
 * per task), then a summary; in a pipe each state change is one plain
 * line. Results go to stdout: the leaf task's result (an object of leaf
 * results when there are several), or the whole run with --json. */
#include <jansson.h>
#include <signal.h>
#include <time.h>

#include "cli-backend.h"
#include "dag.h"
#include "data.h"
#include "store.h"

#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_YELLOW "\033[33m"
#define C_CYAN "\033[36m"
#define C_RESET "\033[0m"

static const char dag_help[] =
        "Usage: pysprinter dag run PIPELINE.yaml [--param NAME=VALUE]… [OPTIONS]\n"
        "       pysprinter dag resume ID [OPTIONS]   run the tasks of ID that did not finish\n"
        "       pysprinter dag status ID [--json]    per-task state, duration, run id\n"
        "       pysprinter dag logs ID TASK          the output of TASK's last run\n"
        "       pysprinter dag ls [--json] [-n N]    recent DAG runs\n"
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
        "  --sandbox MODE        full (default) or none (trusted code only)\n"
        "  --json                print the run (tasks, states, results) as JSON\n"
        "  --index-url URL, --find-links DIR   package index settings, as for run\n"
        "\n"
        "Exit codes: 0 all tasks succeeded, 3 the pipeline is invalid, otherwise the exit\n"
        "code of the first task that failed (1 raised, 4 dependencies, 5 limit), 130 cancelled.\n";

static const char chain_help[] =
        "Usage: pysprinter chain FILE[::FUNC] FILE[::FUNC]… [RUN OPTIONS] [ARGUMENTS]\n"
        "\n"
        "Runs the files in order: the first gets ARGUMENTS (as for run), each next one\n"
        "gets the previous result as its first positional argument. Prints the last\n"
        "result. Stops at the first failure with that step's exit code.\n";

typedef struct View {
        bool tty, color, json;
        size_t drawn;       /* lines of the tree on screen */
        usec_t t0;
} View;

static const char *state_mark(DagTaskState s, bool cached) {
        switch (s) {
        case DAG_TASK_PENDING:
                return "·";
        case DAG_TASK_RUNNING:
                return "▶";
        case DAG_TASK_SUCCEEDED:
        case DAG_TASK_CACHED:
                return "✓";
        case DAG_TASK_FAILED:
                return "✗";
        case DAG_TASK_SKIPPED:
                return "-";
        case DAG_TASK_CANCELLED:
                return "!";
        default:
                return "?";
        }
}

static const char *state_color(DagTaskState s) {
        switch (s) {
        case DAG_TASK_RUNNING:
                return C_CYAN;
        case DAG_TASK_SUCCEEDED:
        case DAG_TASK_CACHED:
                return C_GREEN;
        case DAG_TASK_FAILED:
        case DAG_TASK_CANCELLED:
                return C_RED;
        default:
                return C_DIM;
        }
}

#define fmt_dur format_duration_us

static usec_t task_dur(const DagTaskInfo *ti) {
        if (!ti->started)
                return 0;
        usec_t end = ti->finished ? ti->finished : now_realtime();
        return end > ti->started ? end - ti->started : 0;
}

/* One line of a task (no newline). */
static void task_line(View *v, Dag *d, size_t i, Buf *b) {
        DagTaskInfo ti;
        dag_task_info(d, i, &ti);
        char dur[32] = "";
        if (ti.started && ti.state != DAG_TASK_CACHED)
                fmt_dur(task_dur(&ti), dur);
        const char *col = v->color ? state_color(ti.state) : "";
        buf_printf(b, "%*s%s%s %s%s", 2 * ti.depth, "", col, state_mark(ti.state, ti.cached), ti.name, v->color ? C_RESET : "");
        int pad = 24 - 2 * ti.depth - (int) strlen(ti.name);
        buf_printf(b, "%*s %-9s %8s", pad > 0 ? pad : 1, "", dag_task_state_to_string(ti.state), dur);
        if (ti.attempts > 1)
                buf_printf(b, "  attempt %d", ti.attempts);
        if (ti.n_deps > 1) {
                buf_appends(b, v->color ? C_DIM "  after " : "  after ");
                for (size_t k = 0; k < ti.n_deps; k++) {
                        DagTaskInfo di;
                        dag_task_info(d, ti.deps[k], &di);
                        buf_printf(b, "%s%s", k ? ", " : "", di.name);
                }
                if (v->color)
                        buf_appends(b, C_RESET);
        }
        if (ti.error && (ti.state == DAG_TASK_FAILED || ti.state == DAG_TASK_SKIPPED || ti.state == DAG_TASK_CANCELLED))
                buf_printf(b, "  %.100s", ti.error);
}

/* Tasks in tree order: by depth, then file order. */
static size_t *tree_order(Dag *d) {
        size_t n = dag_n_tasks(d);
        size_t *o = xcalloc(n ? n : 1, sizeof(size_t));
        size_t k = 0;
        for (int depth = 0; k < n; depth++)
                for (size_t i = 0; i < n; i++) {
                        DagTaskInfo ti;
                        dag_task_info(d, i, &ti);
                        if (ti.depth == depth)
                                o[k++] = i;
                }
        return o;
}

static void redraw(View *v, Dag *d) {
        Buf b;
        buf_init(&b, 1 << 20);
        if (v->drawn)
                buf_printf(&b, "\033[%zuA", v->drawn);
        size_t n = dag_n_tasks(d);
        _cleanup_free_ size_t *o = tree_order(d);
        for (size_t k = 0; k < n; k++) {
                buf_appends(&b, "\r\033[K");
                task_line(v, d, o[k], &b);
                buf_appends(&b, "\n");
        }
        fputs(b.data ?: "", stderr);
        fflush(stderr);
        v->drawn = n;
        buf_free(&b);
}

static void on_event(const Dag *cd, const DagEvent *ev, void *ud) {
        View *v = ud;
        Dag *d = (Dag *) cd;
        switch (ev->type) {
        case DAG_EVENT_VALIDATING:
                if (v->tty)
                        fprintf(stderr, "validating %zu task%s…\r", dag_n_tasks(d), dag_n_tasks(d) == 1 ? "" : "s");
                break;
        case DAG_EVENT_STARTED:
                fprintf(stderr, "%sdag %s (%s)%s\n", v->tty ? "\r\033[K" : "", dag_id(d), dag_name(d), "");
                if (v->tty)
                        redraw(v, d);
                break;
        case DAG_EVENT_TASK:
                if (v->tty)
                        redraw(v, d);
                else {
                        DagTaskInfo ti;
                        dag_task_info(d, ev->task, &ti);
                        if (ti.state == DAG_TASK_PENDING)
                                break;
                        char d32[32] = "", dur[40] = "";
                        if (dag_task_state_is_done(ti.state) && ti.started && ti.state != DAG_TASK_CACHED) {
                                fmt_dur(task_dur(&ti), d32);
                                snprintf(dur, sizeof(dur), " %s", d32);
                        }
                        fprintf(stderr, "%s: %s%s%s%s\n", ti.name, dag_task_state_to_string(ti.state),
                                dur, ti.error && ti.state != DAG_TASK_SUCCEEDED ? ": " : "",
                                ti.error && ti.state != DAG_TASK_SUCCEEDED ? ti.error : "");
                        fflush(stderr);
                }
                break;
        case DAG_EVENT_TICK:
                if (v->tty)
                        redraw(v, d);
                break;
        case DAG_EVENT_WARNING:
                fprintf(stderr, "pysprinter: warning: %s\n", ev->message);
                break;
        default:
                break;
        }
}

static json_t *task_json(Dag *d, size_t i) {
        DagTaskInfo ti;
        dag_task_info(d, i, &ti);
        char s1[32], s2[32];
        json_t *o = json_pack("{s:s, s:s, s:s?, s:i, s:b, s:i}", "state", dag_task_state_to_string(ti.state), "file",
                              ti.file, "run_id", ti.run_id, "attempts", ti.attempts, "cached", ti.cached, "exit_code",
                              ti.exit_code);
        if (ti.started)
                json_object_set_new(o, "started", json_string(format_timestamp(ti.started, s1)));
        if (ti.finished)
                json_object_set_new(o, "finished", json_string(format_timestamp(ti.finished, s2)));
        json_object_set_new(o, "started_us", json_integer((json_int_t) ti.started));
        json_object_set_new(o, "finished_us", json_integer((json_int_t) ti.finished));
        if (ti.started && ti.finished)
                json_object_set_new(o, "duration_ms", json_real((double) (ti.finished - ti.started) / 1000.0));
        json_t *deps = json_array();
        for (size_t k = 0; k < ti.n_deps; k++) {
                DagTaskInfo di;
                dag_task_info(d, ti.deps[k], &di);
                json_array_append_new(deps, json_string(di.name));
        }
        json_object_set_new(o, "depends", deps);
        if (ti.value_json) {
                json_t *v = json_loads(ti.value_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (v)
                        json_object_set_new(o, "result", v);
        }
        if (ti.error)
                json_object_set_new(o, "error", json_string(ti.error));
        return o;
}

static void print_results(View *v, Dag *d) {
        size_t n = dag_n_tasks(d);
        if (v->json) {
                json_t *tasks = json_object();
                for (size_t i = 0; i < n; i++) {
                        DagTaskInfo ti;
                        dag_task_info(d, i, &ti);
                        json_object_set_new(tasks, ti.name, task_json(d, i));
                }
                json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:o}", "id", dag_id(d) ?: "", "name", dag_name(d), "status",
                                      dag_status(d), "exit_code", dag_exit_code(d), "tasks", tasks);
                _cleanup_free_ char *t = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(o);
                puts(t);
                return;
        }
        if (dag_exit_code(d) != 0)
                return;
        /* The leaves' results: one leaf prints like `run`. The stored JSON
         * text is printed verbatim (re-encoding would respell floats). */
        Buf b;
        buf_init(&b, SIZE_MAX / 4);
        size_t n_leaves = 0;
        const char *only = NULL;
        for (size_t i = 0; i < n; i++) {
                DagTaskInfo ti;
                dag_task_info(d, i, &ti);
                if (ti.n_dependents != 0)
                        continue;
                json_t *name = json_string(ti.name);
                _cleanup_free_ char *qn = json_dumps(name, JSON_ENCODE_ANY);
                json_decref(name);
                buf_printf(&b, "%s%s: %s", n_leaves ? ", " : "{", qn, ti.value_json ?: "null");
                only = ti.value_json ?: "null";
                n_leaves++;
        }
        buf_appends(&b, "}");
        cli_print_value_text(n_leaves == 1 ? only : b.data, isatty(STDOUT_FILENO));
        buf_free(&b);
}

static void print_summary(View *v, Dag *d) {
        size_t n = dag_n_tasks(d), counts[_DAG_TASK_STATE_MAX] = {};
        for (size_t i = 0; i < n; i++) {
                DagTaskInfo ti;
                dag_task_info(d, i, &ti);
                counts[ti.state]++;
        }
        char dur[32];
        fmt_dur(now_realtime() - v->t0, dur);
        Buf b;
        buf_init(&b, 4096);
        for (int s = DAG_TASK_SUCCEEDED; s < _DAG_TASK_STATE_MAX; s++)
                if (counts[s])
                        buf_printf(&b, ", %zu %s", counts[s], dag_task_state_to_string((DagTaskState) s));
        fprintf(stderr, "%s%s%s: %zu task%s%s in %s (dag %s)\n", v->color ? (dag_exit_code(d) ? C_RED : C_GREEN) : "",
                dag_status(d), v->color ? C_RESET : "", n, n == 1 ? "" : "s", b.data ?: "", dur, dag_id(d) ?: "-");
        buf_free(&b);
        /* The failures in full: where to look next. */
        for (size_t i = 0; i < n; i++) {
                DagTaskInfo ti;
                dag_task_info(d, i, &ti);
                if (ti.state == DAG_TASK_FAILED)
                        fprintf(stderr, "  %s failed (exit %d): %s\n    output: pysprinter dag logs %s %s\n", ti.name,
                                ti.exit_code, ti.error ?: "?", dag_id(d) ?: "-", ti.name);
        }
}

static Dag *running_dag;

static void on_interrupt(int sig) {
        if (running_dag)
                dag_cancel(running_dag);
}

typedef struct DagArgs {
        char *file;
        char *resume;
        char **params;
        unsigned concurrency;
        bool no_cache, keep_going, json;
        SandboxMode sandbox;
        RunArgs ra;   /* index settings only */
} DagArgs;

static int parse_dag_args(int argc, char **argv, bool resume, DagArgs *a) {
        *a = (DagArgs) {};
        for (int i = 0; i < argc; i++) {
                const char *w = argv[i];
                const char *val = NULL;
                const char *eq = startswith(w, "--") ? strchr(w, '=') : NULL;
                _cleanup_free_ char *opt = eq ? xstrndup(w, (size_t) (eq - w)) : xstrdup(w);
#define NEED_VALUE()                                                                              \
        do {                                                                                      \
                if (eq)                                                                           \
                        val = eq + 1;                                                             \
                else if (i + 1 < argc)                                                            \
                        val = argv[++i];                                                          \
                else {                                                                            \
                        fprintf(stderr, "pysprinter: %s needs a value\n", opt);                 \
                        return -EINVAL;                                                           \
                }                                                                                 \
        } while (0)
                if (streq(opt, "--param") || streq(opt, "-p")) {
                        NEED_VALUE();
                        a->params = strv_append(a->params, val);
                } else if (streq(opt, "--concurrency") || streq(opt, "-j")) {
                        NEED_VALUE();
                        char *end;
                        long c = strtol(val, &end, 10);
                        if (*end || c < 1 || c > DAG_MAX_CONCURRENCY) {
                                fprintf(stderr, "pysprinter: --concurrency needs a number from 1 to %d\n", DAG_MAX_CONCURRENCY);
                                return -EINVAL;
                        }
                        a->concurrency = (unsigned) c;
                } else if (streq(opt, "--no-cache"))
                        a->no_cache = true;
                else if (streq(opt, "--keep-going") || streq(opt, "-k"))
                        a->keep_going = true;
                else if (streq(opt, "--json"))
                        a->json = true;
                else if (streq(opt, "--sandbox")) {
                        NEED_VALUE();
                        if (streq(val, "none"))
                                a->sandbox = SANDBOX_MODE_NONE;
                        else if (streq(val, "full"))
                                a->sandbox = SANDBOX_MODE_FULL;
                        else {
                                fprintf(stderr, "pysprinter: --sandbox is full or none\n");
                                return -EINVAL;
                        }
                } else if (streq(opt, "--index-url")) {
                        NEED_VALUE();
                        free(a->ra.index_url);
                        a->ra.index_url = xstrdup(val);
                } else if (streq(opt, "--find-links")) {
                        NEED_VALUE();
                        a->ra.find_links = strv_append(a->ra.find_links, val);
                } else if (w[0] == '-' && w[1]) {
                        fprintf(stderr, "pysprinter: dag: unknown option '%s'\n", w);
                        return -EINVAL;
                } else if (!a->file && !resume)
                        a->file = xstrdup(w);
                else if (!a->resume && resume)
                        a->resume = xstrdup(w);
                else {
                        fprintf(stderr, "pysprinter: dag: unexpected argument '%s'\n", w);
                        return -EINVAL;
                }
#undef NEED_VALUE
        }
        if (!resume && !a->file) {
                fprintf(stderr, "pysprinter: dag run needs a pipeline file\n");
                return -EINVAL;
        }
        if (resume && !a->resume) {
                fprintf(stderr, "pysprinter: dag resume needs a DAG run id\n");
                return -EINVAL;
        }
        return 0;
}

static void dag_args_done(DagArgs *a) {
        free(a->file);
        free(a->resume);
        strv_free(a->params);
        free(a->ra.index_url);
        strv_free(a->ra.find_links);
}

static int dag_run_verb(int argc, char **argv, bool resume) {
        DagArgs a;
        if (parse_dag_args(argc, argv, resume, &a) < 0) {
                dag_args_done(&a);
                return EXIT_USAGE;
        }
        Engine *e = NULL;
        int r = cli_engine_open(&a.ra, &e);
        if (r) {
                dag_args_done(&a);
                return r;
        }
        DataCatalog *dc = NULL;
        r = cli_data_open(e, &dc);
        if (r) {
                engine_free(e);
                dag_args_done(&a);
                return r;
        }
        Dag *d = NULL;
        _cleanup_free_ char *err = NULL;
        DagOptions o = {
                .concurrency = a.concurrency,
                .no_cache = a.no_cache,
                .keep_going = a.keep_going,
                .sandbox = a.sandbox,
        };
        int code = 0;
        if (resume) {
                DagRunRecord *rec = NULL;
                r = dag_load(engine_store(e), NULL, a.resume, &d, &rec, &err);
                if (r >= 0) {
                        if (rec->status && streq(rec->status, "running") && rec->owner) {
                                pid_t pid = (pid_t) strtol(rec->owner, NULL, 10);
                                if (pid > 0 && pid != getpid() && kill(pid, 0) == 0) {
                                        err = xasprintf("DAG run %s is still being run by process %d", rec->id, (int) pid);
                                        r = -EBUSY;
                                }
                        }
                        json_t *opts = rec->options_json ? json_loads(rec->options_json, 0, NULL) : NULL;
                        if (opts) {
                                const char *sb = json_string_value(json_object_get(opts, "sandbox"));
                                if (sb && streq(sb, "none") && !a.sandbox)
                                        o.sandbox = SANDBOX_MODE_NONE;
                                o.keep_going = o.keep_going || json_is_true(json_object_get(opts, "keep_going"));
                                json_decref(opts);
                        }
                        /* The full id, alive past the record. */
                        free(a.resume);
                        a.resume = xstrdup(rec->id);
                        o.resume_id = a.resume;
                        dag_run_record_free(rec);
                }
        } else {
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                r = read_file(a.file, DAG_MAX_FILE_BYTES, &text, &len);
                if (r < 0)
                        err = xasprintf("cannot read %s: %s", a.file,
                                        r == -EFBIG ? "larger than the 1 MiB pipeline limit" : strerror(-r));
                else {
                        const char *slash = strrchr(a.file, '/');
                        _cleanup_free_ char *base = slash ? xstrndup(a.file, (size_t) (slash - a.file) + 1) : xstrdup(".");
                        r = dag_parse(text, len, a.file, base, a.params, &d, &err);
                }
        }
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", err ?: strerror(-r));
                code = r == -ENOENT || r == -EBUSY ? EXIT_USAGE : EXIT_VALIDATION;
                goto out;
        }
        if (o.sandbox == SANDBOX_MODE_NONE)
                fprintf(stderr, "pysprinter: warning: --sandbox=none: these tasks run WITHOUT isolation, "
                                "with your user's access to files and network\n");
        /* The tree is redrawn in place only where the cursor can move:
         * TERM=dumb gets the plain line-per-change view. */
        const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
        bool dumb = term && streq(term, "dumb");
        View v = { .tty = isatty(STDERR_FILENO) && !dumb, .json = a.json || cli_globals.json, .t0 = now_realtime() };
        v.color = v.tty && !(nc && *nc) && !cli_globals.no_color;
        running_dag = d;
        struct sigaction sa = { .sa_handler = on_interrupt };
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        r = dag_run(d, e, dc, &o, on_event, &v, &err);
        running_dag = NULL;
        if (r < 0) {
                if (v.tty)
                        fputs("\r\033[K", stderr);
                fprintf(stderr, "pysprinter: %s\n", err ?: strerror(-r));
                code = r == -ENOPKG ? EXIT_DEPENDENCY : r == -EINVAL || r == -ENOENT ? EXIT_VALIDATION : EXIT_INTERNAL;
                goto out;
        }
        if (v.tty)
                redraw(&v, d);
        print_summary(&v, d);
        print_results(&v, d);
        code = dag_exit_code(d);
out:
        dag_free(d);
        data_catalog_free(dc);
        engine_free(e);
        dag_args_done(&a);
        return code;
}

static int dag_status_verb(int argc, char **argv) {
        const char *id = NULL;
        bool json = false;
        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else if (!id)
                        id = argv[i];
                else {
                        fprintf(stderr, "pysprinter: usage: dag status ID [--json]\n");
                        return EXIT_USAGE;
                }
        }
        if (!id) {
                fprintf(stderr, "pysprinter: usage: dag status ID [--json]\n");
                return EXIT_USAGE;
        }
        Engine *e = NULL;
        int r = cli_engine_open(NULL, &e);
        if (r)
                return r;
        Store *s = engine_store(e);
        DagRunRecord *rec = NULL;
        r = store_dag_get(s, NULL, id, &rec);
        if (r < 0) {
                fprintf(stderr, "pysprinter: %s\n", r == -ENOENT ? "no such DAG run (see: pysprinter dag ls)"
                                                    : r == -EEXIST ? "ambiguous id; give more of it"
                                                                   : strerror(-r));
                engine_free(e);
                return EXIT_USAGE;
        }
        DagTaskRecord **t = NULL;
        size_t n = 0;
        (void) store_dag_tasks(s, rec->id, &t, &n);
        char b1[32], b2[32];
        if (json) {
                json_t *tasks = json_object();
                for (size_t i = 0; i < n; i++) {
                        json_t *o = json_pack("{s:s, s:s?, s:i, s:b, s:i, s:I, s:I}", "state", t[i]->state, "run_id",
                                              t[i]->run_id, "attempts", t[i]->attempts, "cached", t[i]->cached,
                                              "exit_code", t[i]->exit_code, "started_us", (json_int_t) t[i]->started,
                                              "finished_us", (json_int_t) t[i]->finished);
                        if (t[i]->started && t[i]->finished)
                                json_object_set_new(o, "duration_ms",
                                                    json_real((double) (t[i]->finished - t[i]->started) / 1000.0));
                        json_t *v = t[i]->value_json ? json_loads(t[i]->value_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
                        if (v)
                                json_object_set_new(o, "result", v);
                        if (t[i]->error)
                                json_object_set_new(o, "error", json_string(t[i]->error));
                        json_object_set_new(tasks, t[i]->name, o);
                }
                json_t *o = json_pack("{s:s, s:s?, s:s?, s:s, s:s, s:s?, s:o}", "id", rec->id, "name", rec->name, "file",
                                      rec->file, "status", rec->status, "created", format_timestamp(rec->created, b1),
                                      "finished", rec->finished ? format_timestamp(rec->finished, b2) : NULL, "tasks", tasks);
                _cleanup_free_ char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(o);
                puts(txt);
        } else {
                printf("dag %s (%s): %s\n", rec->id, rec->name ?: "-", rec->status);
                printf("%-24s %-10s %9s %8s  %s\n", "TASK", "STATE", "DURATION", "ATTEMPTS", "RUN");
                for (size_t i = 0; i < n; i++) {
                        char dur[32] = "-";
                        if (t[i]->started && t[i]->finished && t[i]->finished >= t[i]->started)
                                fmt_dur(t[i]->finished - t[i]->started, dur);
                        printf("%-24s %-10s %9s %8d  %s", t[i]->name, t[i]->state, dur, t[i]->attempts, t[i]->run_id ?: "-");
                        if (t[i]->error && !streq(t[i]->state, "succeeded"))
                                printf("  %s", t[i]->error);
                        putchar('\n');
                }
        }
        int code = streq(rec->status, "succeeded") ? 0 : streq(rec->status, "running") ? 0 : 1;
        dag_task_record_list_free(t, n);
        dag_run_record_free(rec);
        engine_free(e);
        return code;
}

static void replay_event(const RunEvent *ev, void *userdata) {
        if (ev->type == RUN_EVENT_OUTPUT) {
                FILE *f = ev->stream == 2 ? stderr : stdout;
                fwrite(ev->data, 1, ev->len, f);
        }
}

static int dag_logs_verb(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "pysprinter: usage: dag logs ID TASK\n");
                return EXIT_USAGE;
        }
        Engine *e = NULL;
        int r = cli_engine_open(NULL, &e);
        if (r)
                return r;
        Store *s = engine_store(e);
        DagRunRecord *rec = NULL;
        int code = EXIT_USAGE;
        r = store_dag_get(s, NULL, argv[0], &rec);
        if (r < 0) {
                fprintf(stderr, "pysprinter: no such DAG run '%s'\n", argv[0]);
                engine_free(e);
                return EXIT_USAGE;
        }
        DagTaskRecord **t = NULL;
        size_t n = 0;
        (void) store_dag_tasks(s, rec->id, &t, &n);
        const DagTaskRecord *task = NULL;
        for (size_t i = 0; i < n; i++)
                if (streq(t[i]->name, argv[1]))
                        task = t[i];
        if (!task)
                fprintf(stderr, "pysprinter: DAG run %s has no task '%s'\n", rec->id, argv[1]);
        else if (!task->run_id)
                fprintf(stderr, "pysprinter: task '%s' has not run (%s)\n", task->name, task->state);
        else {
                RunRecord *run = NULL;
                r = store_run_get(s, NULL, task->run_id, &run);
                if (r < 0)
                        fprintf(stderr, "pysprinter: no run %s recorded for task '%s'\n", task->run_id, task->name);
                else if (!run->log_path || access(run->log_path, F_OK) < 0) {
                        /* A task that printed nothing has no log: nothing to show. */
                        code = 0;
                        if (run->traceback)
                                fputs(run->traceback, stderr);
                } else {
                        if (task->cached)
                                fprintf(stderr, "pysprinter: %s was a memo hit; this is the output of run %s\n",
                                        task->name, task->run_id);
                        r = engine_log_replay(run->log_path, replay_event, NULL);
                        fflush(stdout);
                        code = r < 0 && r != -ENOENT ? EXIT_INTERNAL : 0;
                        /* A failed task's traceback is part of what went wrong. */
                        if (run->traceback)
                                fputs(run->traceback, stderr);
                        if (r < 0)
                                fprintf(stderr, "pysprinter: cannot read %s: %s\n", run->log_path, strerror(-r));
                }
                run_record_free(run);
        }
        dag_task_record_list_free(t, n);
        dag_run_record_free(rec);
        engine_free(e);
        return code;
}

static int dag_ls_verb(int argc, char **argv) {
        bool json;
        long limit;
        int k = cli_parse_list_args(argc, argv, "dag ls", 100000, &json, &limit);
        if (k < 0) {
                printf("Usage: pysprinter dag ls [--json] [-n N]\n");
                return 0;
        }
        if (k)
                return k;
        Engine *e = NULL;
        int r = cli_engine_open(NULL, &e);
        if (r)
                return r;
        DagRunRecord **v = NULL;
        size_t n = 0;
        r = store_dag_list(engine_store(e), NULL, (size_t) limit, &v, &n);
        if (r < 0) {
                fprintf(stderr, "pysprinter: cannot read the store: %s\n", strerror(-r));
                engine_free(e);
                return EXIT_INTERNAL;
        }
        json_t *arr = json_array();
        char b[32];
        if (!json && n)
                printf("%-18s %-10s %-19s %9s  %s\n", "ID", "STATUS", "CREATED", "DURATION", "NAME");
        for (size_t i = 0; i < n; i++) {
                DagTaskRecord **t = NULL;
                size_t nt = 0;
                (void) store_dag_tasks(engine_store(e), v[i]->id, &t, &nt);
                if (json)
                        json_array_append_new(arr, json_pack("{s:s, s:s?, s:s?, s:s, s:s, s:i}", "id", v[i]->id, "name",
                                                             v[i]->name, "file", v[i]->file, "status", v[i]->status,
                                                             "created", format_timestamp(v[i]->created, b), "tasks",
                                                             (int) nt));
                else {
                        time_t sec = (time_t) (v[i]->created / USEC_PER_SEC);
                        struct tm tm;
                        localtime_r(&sec, &tm);
                        strftime(b, sizeof(b), "%Y-%m-%d %H:%M:%S", &tm);
                        char dur[32] = "-";
                        if (v[i]->finished && v[i]->finished >= v[i]->created)
                                fmt_dur(v[i]->finished - v[i]->created, dur);
                        printf("%-18s %-10s %-19s %9s  %s (%zu tasks)\n", v[i]->id, v[i]->status, b, dur,
                               v[i]->name ?: "-", nt);
                }
                dag_task_record_list_free(t, nt);
        }
        if (json) {
                _cleanup_free_ char *t = json_dumps(arr, JSON_COMPACT);
                puts(t);
        }
        json_decref(arr);
        dag_run_record_list_free(v, n);
        engine_free(e);
        return 0;
}

/* With a server (--server, PYSPRINTER_SERVER or the config file): the same
 * verbs over HTTP (cli-remote-dag.c). */
static int dag_remote_verb(const char *server, const char *sub, int argc, char **argv) {
        if (!streq(sub, "run"))
                return cli_remote_dag(server, sub, argc, argv);
        DagArgs a;
        if (parse_dag_args(argc, argv, false, &a) < 0) {
                dag_args_done(&a);
                return EXIT_USAGE;
        }
        if (a.sandbox || a.ra.index_url || a.ra.find_links)
                fprintf(stderr, "pysprinter: note: --sandbox, --index-url and --find-links are the server's "
                                "settings; ignored with --server\n");
        int code = cli_remote_dag_run(server, a.file, a.params, a.concurrency, a.keep_going, a.no_cache, a.json);
        dag_args_done(&a);
        return code;
}

int verb_dag(int argc, char **argv) {
        /* A global --json (taken off the line by cli_take_globals, which
         * left its slot free) is this verb's --json too. */
        if (cli_globals.json)
                argv[argc++] = (char *) "--json";
        /* --server anywhere (`dag --server URL ls` too), else the
         * environment or the config file. */
        _cleanup_free_ char *server = cli_server();
        if (argc < 1 || streq(argv[0], "--help") || streq(argv[0], "-h") || streq(argv[0], "help")) {
                fputs(dag_help, argc < 1 ? stderr : stdout);
                return argc < 1 ? EXIT_USAGE : 0;
        }
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(dag_help, stdout);
                        return 0;
                }
        const char *sub = argv[0];
        if (server)
                return dag_remote_verb(server, sub, argc - 1, argv + 1);
        if (streq(sub, "run"))
                return dag_run_verb(argc - 1, argv + 1, false);
        if (streq(sub, "resume"))
                return dag_run_verb(argc - 1, argv + 1, true);
        if (streq(sub, "status"))
                return dag_status_verb(argc - 1, argv + 1);
        if (streq(sub, "logs"))
                return dag_logs_verb(argc - 1, argv + 1);
        if (streq(sub, "ls") || streq(sub, "list"))
                return dag_ls_verb(argc - 1, argv + 1);
        fprintf(stderr, "pysprinter: dag: unknown command '%s' (run, resume, status, logs, ls)\n", sub);
        return EXIT_USAGE;
}

/* ---- chain ---- */

/* Each file's result is the next one's first positional argument: the
 * first gets the arguments given, the last one's result is printed. Over
 * the Backend, so a server runs it the same way. */
int verb_chain(int argc, char **argv) {
        int n_files = 0;
        while (n_files < argc && argv[n_files][0] != '-')
                n_files++;
        for (int i = 0; i < argc; i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(chain_help, stdout);
                        return 0;
                }
        if (n_files < 1) {
                fputs(chain_help, stderr);
                return EXIT_USAGE;
        }
        /* The first file with the options and arguments, parsed like run. */
        char **first = xcalloc((size_t) (argc - n_files) + 2, sizeof(char *));
        first[0] = argv[0];
        for (int i = n_files; i < argc; i++)
                first[1 + i - n_files] = argv[i];
        RunArgs a;
        _cleanup_free_ char *err = NULL;
        int r = cli_parse_run_args(1 + argc - n_files, first, &a, &err);
        free(first);
        if (r < 0) {
                cli_error("%s", err);
                fprintf(stderr, "Try 'pysprinter chain --help'.\n");
                return EXIT_USAGE;
        }
        a.json_output = a.json_output || cli_globals.json;
        Backend *b = NULL;
        int code = backend_open(&a, &b);
        _cleanup_free_ char *prev = NULL;
        json_t *run = NULL;
        for (int i = 0; !code && i < n_files; i++) {
                const char *target = argv[i];
                const char *sep = strstr(target, "::");
                _cleanup_free_ char *file = sep ? xstrndup(target, (size_t) (sep - target)) : xstrdup(target);
                _cleanup_free_ char *source = NULL, *fn = NULL;
                size_t len = 0;
                if (cli_read_source(file, &source, &len) < 0) {
                        code = EXIT_USAGE;
                        break;
                }
                /* Steps after the first: their own ::FUNC, the previous
                 * result as the only argument, the same limits. */
                RunArgs step = { .function = sep && sep[2] ? xstrdup(sep + 2) : NULL, .limits = a.limits,
                                 .sandbox = a.sandbox, .data = a.data };
                RunRequest q = { .a = i == 0 ? &a : &step, .source = source, .source_len = len, .filename = file,
                                 .prev_result = i == 0 ? NULL : prev };
                Renderer rd;
                renderer_init(&rd, a.json_output);
                json_decref(run);
                run = NULL;
                r = b->ops->run(b, &q, &rd, &run);
                renderer_done(&rd);
                free(step.function);
                if (r < 0) {
                        code = backend_fail(b, r);
                        break;
                }
                const char *status = json_string_value(json_object_get(run, "status")) ?: "";
                if (!streq(status, "succeeded") || i + 1 == n_files) {
                        code = renderer_run_outcome(&rd, run);
                        if (code)
                                cli_error("chain stopped at step %d (%s)", i + 1, target);
                        break;
                }
                if (json_is_string(json_object_get(run, "result_repr"))) {
                        cli_error("chain step %d (%s) returned a value JSON cannot hold (%s); it cannot be passed on",
                                  i + 1, target, json_string_value(json_object_get(run, "result_repr")));
                        code = EXIT_RAISED;
                        break;
                }
                free(prev);
                prev = cli_json_text(json_object_get(run, "result") ?: json_null());
        }
        json_decref(run);
        backend_free(b);
        run_args_done(&a);
        return cli_interrupted ? EXIT_INTERRUPTED : code;
}
