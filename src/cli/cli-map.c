/* `pysprinter map FILE --over inputs.jsonl [--concurrency N]`: one call of
 * FILE's function per input line, N at a time, written once over the
 * Backend (embedded or a server). `pysprinter invoke NAME[::VERSION]
 * --over inputs.jsonl` is the same map over a deployed function: only how
 * one call is started differs (MapJob.call, a RunRequest with the file's
 * source or the deployed name and version). Each line is one call's arguments: a JSON
 * array is its positional arguments, an object its keyword arguments,
 * anything else its one positional argument. Results go to stdout as JSON
 * lines in input order, each as soon as every earlier one is out; a
 * progress bar is drawn on stderr when it is a terminal. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic.h"
#include "cli-backend.h"
#include "cli.h"
#include "data.h"
#include "shared.h"
#include "store.h"

#define MAP_MAX_INPUT_BYTES (256u << 20)
#define MAP_MAX_INPUTS 1000000u
#define MAP_MAX_CONCURRENCY 256u
/* Calls in flight against a server, at most: each holds a connection (its
 * output stream) and a daemon admits 64 from one address by default
 * (server.max_connections_per_ip), resetting the ones past it; half of
 * that leaves room for each call's submit and other clients. */
#define MAP_MAX_REMOTE_CONCURRENCY 32u
/* How long a server may turn every submit away before the calls fail. */
#define MAP_REFUSED_USEC (60 * USEC_PER_SEC)

static const char map_help[] =
        "Usage: pysprinter map FILE[::FUNC] --over INPUTS.jsonl [--concurrency N] [options]\n"
        "\n"
        "Calls the function once per line of INPUTS (- for stdin), N calls at a time\n"
        "(default 4), embedded or against --server. A line holding a JSON array gives\n"
        "the positional arguments, an object the keyword arguments, any other JSON\n"
        "value the one positional argument. Blank lines are skipped.\n"
        "\n"
        "Prints one JSON line per input, in input order:\n"
        "  {\"index\": I, \"run_id\": \"r…\", \"status\": \"succeeded\", \"result\": …}\n"
        "  {\"index\": I, \"run_id\": \"r…\", \"status\": \"failed\", \"error\": {\"type\", \"message\"}}\n"
        "The functions' own output goes to stderr. A progress bar is drawn on a terminal.\n"
        "Exit status: 0 when every call succeeded, else the first failed call's code.\n"
        "\n"
        "Options: those of `pysprinter run` (--timeout, --memory, --data, --sandbox,\n"
        "--index-url, …), except arguments (-a, --NAME), which come from INPUTS.\n"
        "\n"
        "A deployed function is mapped by invoke, the same way:\n"
        "  pysprinter invoke NAME[::VERSION] --over INPUTS.jsonl [-j N]\n";

typedef struct MapJob {
        Backend *b;
        const RunArgs *a;
        const char *shown; /* the target as messages name it ("<stdin>::f" for FILE -) */
        /* How one call is started: a file's source (source, source_len,
         * filename) or a deployed function (deployed, version). Each call
         * is this request with its own arguments. */
        RunRequest call;
        char **args_json;    /* per input, engine format */
        char **kwargs_json;
        json_t **runs;       /* per input: the final run object until its line is printed */
        int *codes;          /* per input: the backend's error code when no run */
        int *exits;          /* per input: the call's exit code (0: it succeeded) */
        bool *ended;         /* per input: the call is over (its line may be printed) */
        char **errors;
        size_t n, next, done, failed;
        /* Against a server: this map's part of each call's Idempotency-Key,
         * and since when the server has turned every submit away (0: it
         * took the last one). */
        char *key;
        usec_t refused_since;
        bool bar; /* a progress bar is drawn on stderr (a terminal) */
        /* The lines printed so far; while paced (the main thread prints),
         * a call starts only once every line that can be printed is: a
         * reader gone (`map … | head -1`) is seen at that write, before
         * the next call starts (docs/cli.md: map starts none it had not). */
        size_t printed;
        bool paced;
        usec_t t0;
        pthread_mutex_t lock;
        pthread_cond_t cond;
} MapJob;

/* One line's JSON as the engine's argument encoding. */
static int line_arguments(json_t *v, char **ret_args, char **ret_kwargs) {
        json_t *args = json_array(), *kwargs = json_object();
        if (json_is_array(v)) {
                size_t i;
                json_t *x;
                json_array_foreach(v, i, x)
                        json_array_append_new(args, json_pack("{s:O}", "value", x));
        } else if (json_is_object(v)) {
                const char *k;
                json_t *x;
                json_object_foreach(v, k, x)
                        json_object_set_new(kwargs, k, json_pack("{s:O}", "value", x));
        } else
                json_array_append_new(args, json_pack("{s:O}", "value", v));
        *ret_args = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
        *ret_kwargs = json_dumps(kwargs, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(args);
        json_decref(kwargs);
        return *ret_args && *ret_kwargs ? 0 : -ENOMEM;
}

/* Reads INPUTS into job->args_json/kwargs_json; exit code or 0. */
static int read_inputs(const char *path, MapJob *job) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = streq(path, "-") ? read_fd_all(STDIN_FILENO, MAP_MAX_INPUT_BYTES, &text, &len)
                                 : read_file(path, MAP_MAX_INPUT_BYTES, &text, &len);
        if (r < 0) {
                cli_error("cannot read %s: %s", path, r == -EFBIG ? "larger than 256 MiB" : strerror(-r));
                return EXIT_USAGE;
        }
        size_t lineno = 0;
        for (char *p = text; p < text + len;) {
                char *nl = memchr(p, '\n', (size_t) (text + len - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (text + len - p);
                lineno++;
                json_error_t jerr;
                bool blank = strspn(p, " \t\r") >= n;
                if (!blank) {
                        if (job->n >= MAP_MAX_INPUTS) {
                                cli_error("%s: more than %u inputs", path, MAP_MAX_INPUTS);
                                return EXIT_USAGE;
                        }
                        json_t *v = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
                        if (!v) {
                                cli_error("%s:%zu: not JSON: %s", path, lineno, json_error_text(&jerr));
                                return EXIT_USAGE;
                        }
                        /* An object's keys are keyword names: checked here
                         * as `run` checks --NAME, so a bad line runs
                         * nothing, embedded or on a server (which answers
                         * such a name with a 400). */
                        const char *k;
                        size_t klen;
                        json_t *x;
                        json_object_keylen_foreach(v, k, klen, x) if (klen != strlen(k) || !identifier_is_valid(k)) {
                                cli_error("%s:%zu: '%s' is not a valid parameter name", path, lineno, k);
                                json_decref(v);
                                return EXIT_USAGE;
                        }
                        job->args_json = xrealloc(job->args_json, (job->n + 1) * sizeof(char *));
                        job->kwargs_json = xrealloc(job->kwargs_json, (job->n + 1) * sizeof(char *));
                        r = line_arguments(v, &job->args_json[job->n], &job->kwargs_json[job->n]);
                        json_decref(v);
                        if (r < 0) {
                                cli_error("%s:%zu: cannot encode the arguments", path, lineno);
                                return EXIT_INTERNAL;
                        }
                        job->n++;
                }
                p += n + 1;
        }
        return 0;
}

static bool run_in_flight(json_t *run) {
        const char *s = json_get_string(run, "status") ?: "";
        return streq(s, "queued") || streq(s, "running");
}

/* The run as it ended. A remote run's event stream can break off before
 * its end (the backend then reads the record, which may still say
 * running): map's line must be the outcome, so poll the record. */
static int wait_until_ended(Backend *b, json_t **run) {
        while (run_in_flight(*run) && !cli_interrupted) {
                const char *id = json_get_string(*run, "id");
                if (!id)
                        return 0;
                usleep(50 * 1000);
                json_t *again = NULL;
                int r = b->ops->run_get(b, id, &again);
                if (r < 0)
                        return r;
                json_decref(*run);
                *run = again;
        }
        return 0;
}

static void draw_progress(MapJob *job, usec_t t0);

/* A call's whole lines of output: on the terminal that holds the progress
 * bar, the bar is erased first and drawn again below them (before, the
 * lines began on the bar's own line: "[....] 0/6  failed 0  0msline 2"). */
static void map_write_lines(void *userdata, FILE *f, const char *data, size_t len) {
        MapJob *job = userdata;
        pthread_mutex_lock(&job->lock);
        if (job->bar && f == stderr)
                fputs("\r\033[K", stderr);
        fwrite(data, 1, len, f);
        if (job->bar && f == stderr)
                draw_progress(job, job->t0);
        pthread_mutex_unlock(&job->lock);
}

/* One call. A server past its connections (server.max_connections_per_ip:
 * 64 by default, where --concurrency goes to 256) resets the ones over,
 * unread: such a call is submitted again, after a pause, while the server
 * takes other calls of the map (for MAP_REFUSED_USEC after it took the
 * last). The call's Idempotency-Key makes that safe: a submit the server
 * did read cannot start a second run, the server answers with the first. */
static int map_submit(MapJob *job, Backend *b, const RunRequest *q, Renderer *rd, json_t **ret) {
        for (unsigned k = 0;; k++) {
                int r = b->ops->run(b, q, rd, ret);
                bool refused = r == -ECONNREFUSED && !*ret && job->key && !cli_interrupted;
                pthread_mutex_lock(&job->lock);
                if (!refused)
                        job->refused_since = 0;
                else if (!job->refused_since)
                        job->refused_since = now_monotonic();
                bool again = refused && now_monotonic() - job->refused_since < MAP_REFUSED_USEC;
                pthread_mutex_unlock(&job->lock);
                if (!again)
                        return r;
                free(b->error);
                b->error = NULL;
                /* 50 ms, doubling to 1 s, spread so the calls turned away
                 * together do not come back together. */
                usec_t pause = (50 * USEC_PER_MSEC) << MIN(k, 4u);
                usleep((useconds_t) (pause / 2 + (usec_t) rand() % (pause / 2 + 1)));
        }
}

static void *map_thread(void *userdata) {
        MapJob *job = userdata;
        /* The backend's state is shared (the engine, which runs calls from
         * many threads like a DAG does; the server's URL and token), but
         * its last-error slot and its lazily opened data catalog are per
         * caller: each thread works on its own copy of the struct. */
        Backend mine = *job->b;
        mine.error = NULL;
        for (;;) {
                pthread_mutex_lock(&job->lock);
                while (job->paced && !cli_interrupted && job->printed < job->n && job->ended[job->printed])
                        pthread_cond_wait(&job->cond, &job->lock);
                /* A reader that left while no line was due (a later call
                 * ended first) is asked of the pipe: no call starts for
                 * nobody. As a failed write, this cancels the calls in
                 * flight (cli_output_check()). */
                if (job->paced && !cli_interrupted)
                        cli_output_check();
                size_t i = job->next;
                bool stop = i >= job->n || cli_interrupted;
                if (!stop)
                        job->next++;
                else
                        pthread_cond_broadcast(&job->cond); /* the printer may be waiting for no call */
                pthread_mutex_unlock(&job->lock);
                if (stop)
                        break;
                RunArgs a = *job->a;
                a.args_json = job->args_json[i];
                a.kwargs_json = job->kwargs_json[i];
                /* Its result is only printed (print_line()): held. */
                RunRequest q = job->call;
                q.a = &a;
                q.hold_result = true;
                /* Each call has its own renderer: the function's output
                 * goes to stderr as it is written, undecorated. */
                Renderer rd;
                renderer_init(&rd, true);
                rd.tty_err = rd.cursor = rd.color = false;
                rd.whole_lines = true;
                rd.write_lines = map_write_lines;
                rd.write_lines_userdata = job;
                json_t *run = NULL;
                _cleanup_free_ char *key = job->key ? xasprintf("%s-%zu", job->key, i) : NULL;
                a.idempotency_key = key;
                int r = map_submit(job, &mine, &q, &rd, &run);
                renderer_done(&rd);
                if (r >= 0)
                        r = wait_until_ended(&mine, &run);
                pthread_mutex_lock(&job->lock);
                job->runs[i] = run;
                job->codes[i] = r;
                if (r < 0)
                        job->errors[i] = xstrdup(mine.error ?: strerror(-r));
                if (r < 0)
                        job->exits[i] = cli_exit_code(r);
                else if (!streq(json_get_string(run, "status") ?: "", "succeeded")) {
                        json_t *ec = json_object_get(run, "exit_code");
                        job->exits[i] = json_is_integer(ec) && json_integer_value(ec) ? (int) json_integer_value(ec)
                                                                                      : 1;
                }
                if (job->exits[i])
                        job->failed++;
                job->ended[i] = true;
                job->done++;
                pthread_cond_broadcast(&job->cond);
                pthread_mutex_unlock(&job->lock);
        }
        free(mine.error);
        if (mine.catalog != job->b->catalog)
                data_catalog_free(mine.catalog);
        return NULL;
}

/* The JSON line of input i. */
static void print_line(MapJob *job, size_t i) {
        json_t *run = job->runs[i];
        json_t *o = json_pack("{s:I}", "index", (json_int_t) i);
        if (!run) {
                json_object_set_new(o, "status", json_string("error"));
                json_object_set_new(o, "error", json_pack("{s:s, s:s}", "type", "ClientError", "message",
                                                          job->errors[i] ?: "?"));
        } else {
                const char *id = json_get_string(run, "id"), *status = json_get_string(run, "status");
                if (id)
                        json_object_set_new(o, "run_id", json_string(id));
                json_object_set_new(o, "status", json_string(status ?: "error"));
                if (streq(status ?: "", "succeeded")) {
                        json_object_set(o, "result", json_object_get(run, "result") ?: json_null());
                        if (json_get_string(run, "result_repr"))
                                json_object_set(o, "result_repr", json_object_get(run, "result_repr"));
                } else {
                        json_t *err = json_object_get(run, "error");
                        json_object_set_new(o, "error", json_pack("{s:s?, s:s?}", "type", json_get_string(err, "type"),
                                                                  "message", json_get_string(err, "message")));
                }
        }
        render_json(o);
        json_decref(o);
        /* Printed: only its exit code is needed any more. A million calls
         * (or a few with large results) must not all stay in memory. */
        json_decref(run);
        job->runs[i] = NULL;
        free(job->errors[i]);
        job->errors[i] = NULL;
}

static void draw_progress(MapJob *job, usec_t t0) {
        enum { WIDTH = 30 };
        size_t filled = job->n ? job->done * WIDTH / job->n : WIDTH;
        char bar[WIDTH + 1];
        for (size_t k = 0; k < WIDTH; k++)
                bar[k] = k < filled ? '#' : '.';
        bar[WIDTH] = 0;
        char dur[32];
        format_duration_us(now_monotonic() - t0, dur);
        fprintf(stderr, "\r\033[K[%s] %zu/%zu  failed %zu  %s", bar, job->done, job->n, job->failed, dur);
        fflush(stderr);
}

/* The value of map's option w (--over, --concurrency, -j) when w is
 * one, in any of getopt_long's spellings: "--over F", "--over=F", "-j N",
 * "-jN"; *i moves past a separate value. NULL with *ret_missing when the
 * value is not there; NULL when w is none of them. */
static const char *map_option_value(int argc, char **argv, int *i, const char *name, bool *ret_missing) {
        const char *w = argv[*i];
        size_t n = strlen(name);
        if (!strneq(w, name, n))
                return NULL;
        if (w[n] == '=')
                return w + n + 1;
        if (w[n])
                return streq(name, "-j") ? w + n : NULL; /* -jN */
        if (*i + 1 >= argc) {
                *ret_missing = true;
                return NULL;
        }
        return argv[++*i];
}

/* Takes --over and --concurrency out of argv (they are map's, not run's). */
static int take_map_options(int *argc, char **argv, const char **ret_over, unsigned *ret_conc) {
        int out = 0;
        for (int i = 0; i < *argc; i++) {
                const char *w = argv[i];
                bool missing = false;
                const char *over = map_option_value(*argc, argv, &i, "--over", &missing);
                const char *conc = over || missing ? NULL
                                                   : map_option_value(*argc, argv, &i, "--concurrency", &missing);
                if (!over && !conc && !missing)
                        conc = map_option_value(*argc, argv, &i, "-j", &missing);
                if (missing) {
                        cli_error("option %s needs a value", w);
                        return EXIT_USAGE;
                }
                if (over)
                        *ret_over = over;
                else if (conc) {
                        char *end;
                        errno = 0;
                        unsigned long v = strtoul(conc, &end, 10);
                        if (errno || *end || !*conc || conc[0] == '-' || v < 1 || v > MAP_MAX_CONCURRENCY) {
                                cli_error("--concurrency must be 1..%u, not '%s'", MAP_MAX_CONCURRENCY, conc);
                                return EXIT_USAGE;
                        }
                        *ret_conc = (unsigned) v;
                } else
                        argv[out++] = argv[i];
        }
        *argc = out;
        return 0;
}

static int run_map(Backend *b, MapJob *job, unsigned conc) {
        pthread_mutex_init(&job->lock, NULL);
        pthread_cond_init(&job->cond, NULL);
        job->runs = xcalloc(job->n ?: 1, sizeof(json_t *));
        job->codes = xcalloc(job->n ?: 1, sizeof(int));
        job->errors = xcalloc(job->n ?: 1, sizeof(char *));
        job->exits = xcalloc(job->n ?: 1, sizeof(int));
        job->ended = xcalloc(job->n ?: 1, sizeof(bool));
        job->b = b;
        if (b->remote && conc > MAP_MAX_REMOTE_CONCURRENCY) {
                if (!cli_globals.quiet)
                        cli_error("note: --concurrency %u with a server: %u calls at a time (each holds one of the "
                                  "connections the server admits from this address)",
                                  conc, MAP_MAX_REMOTE_CONCURRENCY);
                conc = MAP_MAX_REMOTE_CONCURRENCY;
        }
        unsigned nt = conc < job->n ? conc : (unsigned) job->n;
        pthread_t *th = xcalloc(nt ?: 1, sizeof(pthread_t));
        unsigned started = 0;
        cli_catch_interrupt();
        /* Redrawn in place: not where the cursor cannot move (TERM=dumb
         * got "\r\033[K[....] 0/6" before every line). */
        bool bar = cli_stderr_can_redraw() && !cli_globals.quiet;
        usec_t t0 = now_monotonic();
        job->bar = bar;
        job->t0 = t0;
        job->paced = true;
        for (; started < nt; started++)
                if (pthread_create(&th[started], NULL, map_thread, job) != 0)
                        break;
        if (started == 0 && job->n > 0) {
                job->paced = false; /* nobody prints while it runs */
                map_thread(job);    /* no thread could start: run them here, one by one */
        }
        pthread_mutex_lock(&job->lock);
        for (;;) {
                bool any = false;
                while (job->printed < job->n && job->ended[job->printed]) {
                        if (bar)
                                fputs("\r\033[K", stderr);
                        print_line(job, job->printed++);
                        if (bar)
                                draw_progress(job, t0);
                        any = true;
                }
                if (any)
                        pthread_cond_broadcast(&job->cond); /* the calls waiting for these lines */
                if (job->printed >= job->n || (job->done >= job->next && (cli_interrupted || job->next >= job->n)))
                        break;
                if (bar)
                        draw_progress(job, t0);
                pthread_cond_wait(&job->cond, &job->lock);
        }
        pthread_mutex_unlock(&job->lock);
        for (unsigned k = 0; k < started; k++)
                pthread_join(th[k], NULL);
        free(th);
        if (bar) {
                fputs("\r\033[K", stderr);
                fflush(stderr);
        }
        int code = 0;
        for (size_t i = 0; i < job->n && !code; i++)
                if (job->ended[i])
                        code = job->exits[i];
        if (!cli_globals.quiet && job->n && job->done < job->n)
                fprintf(stderr, "%s: interrupted: %zu of %zu calls ran, %zu failed\n", job->shown, job->done, job->n,
                        job->failed);
        else if (!cli_globals.quiet && job->n)
                fprintf(stderr, "%s: %zu call%s, %zu failed\n", job->shown, job->n, job->n == 1 ? "" : "s",
                        job->failed);
        return cli_interrupted ? EXIT_INTERRUPTED : code;
}

/* A file that cannot run with any input (a syntax error, no such
 * function, a source a server cannot take, a server that is away) fails
 * once, as `run` says it, before any call: not once per input line, each
 * a recorded run. The check is run's describe: the file parsed and its
 * function found, nothing resolved, no argument looked at, no run. For a
 * deployed function it is `invoke NAME --help`'s: the version's function
 * object, or invoke's own error (no such function or version, no server). */
static int map_check_target(Backend *b, const MapJob *job, const RunArgs *a) {
        if (b->remote && !job->call.deployed) {
                int code = cli_check_source(job->call.filename, job->call.source, job->call.source_len);
                if (code)
                        return code;
        }
        RunRequest q = job->call;
        q.a = a;
        q.validate_only = q.describe_only = true;
        Renderer rd;
        renderer_init(&rd, false);
        rd.no_output = true;
        json_t *ans = NULL;
        cli_catch_interrupt();
        int r = b->ops->run(b, &q, &rd, &ans), code = 0;
        if (r < 0)
                code = backend_fail(b, r);
        else if (!q.deployed && !streq(json_get_string(ans, "status") ?: "", "succeeded"))
                code = renderer_run_outcome(&rd, ans); /* a function object has no status: found */
        renderer_done(&rd);
        json_decref(ans);
        return cli_interrupted ? EXIT_INTERRUPTED : code;
}

/* A dataset the calls name that is not there (or not that version) fails
 * every call alike: said once, in run's words and with its exit code,
 * before any call. Before, each input was a line of its own, and not the
 * same line: through a daemon a recorded run's DataError, embedded a
 * ClientError with no run. */
static int map_check_data(Backend *b, const RunArgs *a) {
        for (char **d = a->data; d && *d; d++) {
                json_t *info = NULL;
                int r = b->ops->data_info(b, *d, &info);
                json_decref(info);
                if (r == -ENOENT) {
                        /* data_info()'s words are `data ls`'s ("data: …"). */
                        const char *e = b->error ?: "";
                        cli_error("%s", startswith(e, "data: ") ? e + strlen("data: ") : e);
                        return EXIT_VALIDATION;
                }
                if (r < 0)
                        return backend_fail(b, r);
        }
        return 0;
}

/* A --secret the tenant does not hold fails every call alike, as a missing
 * dataset does: said once, in run's words ("no secret named …") and with
 * its exit code (2), before any call. Before, each input printed its own
 * ClientError line. */
static int map_check_secrets(Backend *b, const RunArgs *a) {
        if (!a->secrets)
                return 0;
        json_t *list = NULL;
        int r = b->ops->secret_list(b, &list);
        if (r < 0)
                return backend_fail(b, r);
        int code = 0;
        for (char **n = a->secrets; n && *n && !code; n++) {
                bool held = false;
                size_t i;
                json_t *v;
                json_array_foreach(list, i, v)
                        held = held || streq(json_string_value(json_object_get(v, "name")) ?: "", *n);
                if (!held) {
                        _cleanup_free_ char *e = store_secret_error(*n, -ENOENT);
                        cli_error("%s", e);
                        code = EXIT_USAGE;
                }
        }
        json_decref(list);
        return code;
}

static void map_job_done(MapJob *job) {
        for (size_t i = 0; i < job->n; i++) {
                free(job->args_json[i]);
                free(job->kwargs_json[i]);
                if (job->runs)
                        json_decref(job->runs[i]);
                if (job->errors)
                        free(job->errors[i]);
        }
        free(job->args_json);
        free(job->kwargs_json);
        free(job->runs);
        free(job->codes);
        free(job->exits);
        free(job->ended);
        free(job->errors);
        free(job->key);
}

/* `map --function NAME`: the value, or NULL. */
static const char *function_word(int argc, char **argv) {
        for (int i = 0; i < argc && !streq(argv[i], "--"); i++) {
                if (startswith(argv[i], "--function="))
                        return argv[i] + strlen("--function=");
                if (streq(argv[i], "--function"))
                        return i + 1 < argc ? argv[i + 1] : "NAME";
        }
        return NULL;
}

/* What map takes from neither a run's nor an invoke's options, said as the
 * verb is spelled: NULL, or the message (static). */
static const char *map_option_refused(const RunArgs *a, bool deployed) {
        if (!streq(a->args_json ?: "[]", "[]") || !streq(a->kwargs_json ?: "{}", "{}"))
                return deployed ? "invoke --over takes the arguments from --over, not from the command line"
                                : "map takes the arguments from --over, not from the command line";
        if (a->detach)
                return deployed ? "--detach cannot go with --over: each call's result is printed as it ends"
                                : "map: --detach is run's and invoke's: map prints each call's result as it ends";
        if (a->idempotency_key)
                return deployed ? "--idempotency-key cannot go with --over: one key would name one run of many"
                                : "map: --idempotency-key is run's and invoke's: one key would name one run of many";
        /* Each call's output goes to stderr as it comes, the results to
         * stdout: a file for "the" output has no one call to hold. Before,
         * it was taken and nothing was written to it. */
        if (a->output_file)
                return deployed ? "--output-file cannot go with --over: the results are on stdout (`> FILE`), the "
                                  "calls' output on stderr"
                                : "map: --output-file is run's option: map's results are on stdout (`> FILE`), "
                                  "the calls' output on stderr";
        return NULL;
}

/* map FILE and invoke NAME --over: the same map, started by deployed or
 * not. verb names the verb in the hint to its help. */
static int map_main(int argc, char **argv, bool deployed) {
        const char *verb = deployed ? "invoke" : "map";
        const char *over = NULL;
        unsigned conc = 4;
        int code = take_map_options(&argc, argv, &over, &conc);
        if (code)
                return code;
        if (!over) {
                cli_error("map needs --over INPUTS.jsonl (one JSON line of arguments per call)");
                fprintf(stderr, "Try 'pysprinter map --help'.\n");
                return EXIT_USAGE;
        }
        const char *w = deployed ? cli_payload_word(argc, argv) : NULL;
        if (w) {
                cli_error("%.*s cannot go with --over: each line of INPUTS is one call's arguments (a Lambda "
                          "handler's event: a line [EVENT])",
                          streq(w, "-") ? (int) strlen("'-' (the payload on stdin)") : (int) strcspn(w, "="),
                          streq(w, "-") ? "'-' (the payload on stdin)" : w);
                fprintf(stderr, "Try 'pysprinter invoke --help'.\n");
                return EXIT_USAGE;
        }
        w = deployed ? NULL : function_word(argc, argv);
        if (w) {
                /* A deployed function is mapped by invoke, which names
                 * deployed functions; map names files. */
                cli_error("map calls a file's function; a deployed function's calls are `pysprinter invoke %s "
                          "--over INPUTS.jsonl [-j N]`",
                          w);
                fprintf(stderr, "Try 'pysprinter invoke --help'.\n");
                return EXIT_USAGE;
        }
        /* NAME[::VERSION]: the version is invoke's, not the run grammar's
         * ::FUNC. The messages name it as given. */
        _cleanup_free_ char *name = NULL, *word = deployed && argc > 0 ? xstrdup(argv[0]) : NULL;
        long version = 0;
        _cleanup_free_ char *alias = NULL;
        if (deployed && (code = cli_invoke_name(argc, argv, &name, &version, &alias)))
                return code;
        if (name)
                argv[0] = name;
        RunArgs a;
        _cleanup_free_ char *err = NULL, *source = NULL;
        /* cli_parse_run_args reads argv from index 0 as the verb's words. */
        if (cli_parse_run_args(argc, argv, &a, &err) < 0) {
                cli_error("%s", err);
                fprintf(stderr, "Try 'pysprinter %s --help'.\n", verb);
                return EXIT_USAGE;
        }
        MapJob job = { .a = &a };
        Backend *b = NULL;
        size_t len = 0;
        _cleanup_free_ char *refused = deployed ? cli_invoke_option_error(&a, "invoke", false) : NULL;
        const char *why = refused ?: map_option_refused(&a, deployed);
        if (why) {
                cli_error("%s", why);
                if (deployed)
                        fprintf(stderr, "Try 'pysprinter invoke --help'.\n");
                code = EXIT_USAGE;
        } else if (!deployed && streq(a.file, "-") && streq(over, "-")) {
                /* The source would take all of stdin, leaving no input:
                 * map would run nothing and say nothing. */
                cli_error("map: the source (FILE -) and the inputs (--over -) cannot both come from stdin");
                code = EXIT_USAGE;
        } else if (!deployed && cli_read_source(a.file, &source, &len) < 0)
                code = EXIT_USAGE;
        else
                code = read_inputs(over, &job);
        a.worker_now = true;
        /* invoke's backend: embedded, it says invoke needs a server with
         * no engine (nor home) opened to say it (map_check_target()). */
        if (!code)
                code = deployed ? backend_open_listing(false, &b) : backend_open(&a, &b);
        /* The source read from stdin is named as a run names it. */
        _cleanup_free_ char *shown = deployed                                   ? xstrdup(word)
                                     : streq(a.file, "-") && a.target[0] == '-' ? xasprintf("<stdin>%s", a.target + 1)
                                                                                : xstrdup(a.target);
        job.shown = shown;
        job.call = deployed ? (RunRequest){ .deployed = a.file, .version = version, .alias = alias }
                            : (RunRequest){ .source = source, .source_len = len, .filename = cli_source_name(a.file) };
        /* Checked with no input too: `map FILE --over /dev/null` said
         * nothing of a FILE that cannot run, exit 0. */
        if (!code)
                code = map_check_target(b, &job, &a);
        if (!code)
                code = map_check_data(b, &a);
        if (!code)
                code = map_check_secrets(b, &a);
        if (!code && b->remote) {
                _cleanup_free_ char *hex = NULL;
                if (random_hex(8, &hex) >= 0)
                        job.key = xasprintf("map-%s", hex);
        }
        if (!code) {
                if (!deployed)
                        backend_note_options(b, &a, a.sandbox, "this code runs");
                code = run_map(b, &job, conc);
        }
        map_job_done(&job);
        backend_free(b);
        run_args_done(&a);
        return code;
}

int verb_map(int argc, char **argv) {
        for (int i = 0; i < argc; i++)
                if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(map_help, stdout);
                        return 0;
                }
        return map_main(argc, argv, false);
}

int verb_invoke_or_over(int argc, char **argv) {
        /* --help (invoke's, or after NAME the function's usage) is invoke's
         * whatever else is given. */
        if (cli_help_asked(argc, argv) || !cli_over_given(argc, argv))
                return verb_invoke(argc, argv);
        return map_main(argc, argv, true);
}
